"""The memory accesses of a Program as NumPy columns, made once per program and kept on
it, for the compiled dependency maps (trnsim/timing/compiled_deps.py) of both passes
that walk the physical accesses: the compiler model's list scheduler
(trnsim/compiler/schedule.py, in program order) and the timing scheduler (in issue
order).

    cols = access_columns(program)   # cached on the program (`_access_columns`)

Per access (rows of `acc`, each instruction's reads then its writes, in program order):
the box (p_lo, p_hi, lo, hi), whether it writes every byte of it (dense), its HBM rows
form (deps.rows_form: has one, row pitch, first byte, rows, bytes per row), its
on-chip map (a number per (space, core); -1: HBM) and its space (a number per name,
`spaces`). Instruction i's accesses are acc[ptr[i]:ptr[i + 1]], its writes from
wptr[i]. The first ten columns are the layout compiled_deps reads an HBM access in.

The columns describe the instructions as they stand when first asked for: the compiler
passes that change accesses (hoist, allocation) make a new Program, and the cache is
dropped where the program's instruction list is another object or another length.
"""
from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np

from .costs import itemsize

ACC = ("p_lo", "p_hi", "lo", "hi", "dense", "has_form", "pitch", "first", "rows", "run",
       "map", "space")
P_LO, P_HI, LO, HI, DENSE, HAS_FORM, PITCH, FIRST, ROWS, RUN, MAP, SPACE = range(len(ACC))
_READS, _WRITES, _ATTRS = attrgetter("reads"), attrgetter("writes"), attrgetter("attrs")


class AccessColumns:
    """acc, ptr, wptr (see the module doc); spaces: the space names by number; maps:
    (space, core) by on-chip map number; depends_on: (instruction, its depends_on) for
    the instructions that have one."""
    __slots__ = ("instrs", "n", "acc", "ptr", "wptr", "spaces", "maps", "depends_on")

    def hbm_code(self) -> int:
        """The number of the space "hbm" (-1: no HBM access)."""
        return self.spaces.index("hbm") if "hbm" in self.spaces else -1


def access_columns(program) -> AccessColumns:
    """The access columns of `program` (made on first use, then kept on it)."""
    instrs = program.instructions
    cols = getattr(program, "_access_columns", None)
    if cols is None or cols.instrs is not instrs or cols.n != len(instrs):
        cols = build(instrs)
        program._access_columns = cols
    return cols


def build(instrs) -> AccessColumns:
    """The access columns of the instructions `instrs` (indexed by position)."""
    n = len(instrs)
    reads = list(map(_READS, instrs))
    writes = list(map(_WRITES, instrs))
    nr = np.fromiter(map(len, reads), np.int64, n)
    nw = np.fromiter(map(len, writes), np.int64, n)
    cols = AccessColumns()
    cols.instrs, cols.n = instrs, n
    cols.ptr = np.zeros(n + 1, np.int64)
    np.cumsum(nr + nw, out=cols.ptr[1:])
    cols.wptr = cols.ptr[:-1] + nr
    flat = list(chain.from_iterable(chain.from_iterable(zip(reads, writes))))
    m = len(flat)
    acc = cols.acc = np.zeros((m, len(ACC)), np.int64)
    cols.spaces, cols.maps = [], []
    cols.depends_on = [(i, d) for i, d in enumerate(a.get("depends_on")
                                                   for a in map(_ATTRS, instrs)) if d]
    if not m:
        return cols
    # Access fields: 2 space, 3 core, 5 dtype, 7 pattern, 9-12 p_lo p_hi lo hi,
    # 14 bytes, 15 contiguous_bytes (machine/access.py)
    f = list(zip(*flat))
    names = cols.spaces = list(dict.fromkeys(f[2]))
    code = {s: k for k, s in enumerate(names)}
    space = np.fromiter(map(code.__getitem__, f[2]), np.int64, m)
    for k, c in zip((P_LO, P_HI, LO, HI), (9, 10, 11, 12)):
        acc[:, k] = f[c]
    nbytes = np.array(f[14], np.int64)
    acc[:, DENSE] = nbytes >= (acc[:, P_HI] - acc[:, P_LO]) * (acc[:, HI] - acc[:, LO])
    acc[:, SPACE] = space
    hbm = space == code.get("hbm", -1)
    core = np.array(f[3], np.int64)
    onchip = ~hbm
    if onchip.any():
        keys = space[onchip] * (int(core.max()) + 1) + core[onchip]
        uniq, acc[onchip, MAP] = np.unique(keys, return_inverse=True)
        width = int(core.max()) + 1
        cols.maps = [(names[k // width], k % width) for k in uniq.tolist()]
    acc[hbm, MAP] = -1
    if hbm.any():
        _rows_forms(acc, np.flatnonzero(hbm), f, nbytes)
    return cols


def _rows_forms(acc, at, f, nbytes) -> None:
    """Fill the rows form columns of the HBM accesses `at` (deps.rows_form, by the
    shape of each distinct (pattern, bytes, contiguous bytes, dtype))."""
    memo: dict = {}
    shapes = []
    for key in zip(map(f[7].__getitem__, at), map(f[14].__getitem__, at),
                   map(f[15].__getitem__, at), map(f[5].__getitem__, at)):
        s = memo.get(key, False)
        if s is False:
            s = memo[key] = _shape(*key)
        shapes.append(s)
    lo, hi = acc[at, LO], acc[at, HI]
    one_run = nbytes[at] >= hi - lo
    form = np.zeros((len(at), 4), np.int64)  # pitch, first, rows, run
    has = np.ones(len(at), np.int64)
    for x, s in enumerate(shapes):
        if one_run[x] or s == 0:
            continue
        if s is None:
            has[x] = 0
        else:
            form[x, 0], form[x, 2], form[x, 3] = s
    run = one_run | (form[:, 2] == 0) & (has == 1)
    form[run, 0], form[run, 2], form[run, 3] = 0, 1, (hi - lo)[run]
    form[:, 1] = lo
    form[has == 0] = 0
    acc[at, HAS_FORM] = has
    acc[at, PITCH:RUN + 1] = form


def _shape(pattern, nbytes, cbytes, dtype):
    """The part of deps.rows_form that depends on the access's shape alone, for an
    access that is not one run by its byte span: 0 (one run), None (no rows form) or
    (row pitch, rows, bytes per row)."""
    for s0, n0 in pattern:  # the outermost dimension of more than one element
        if n0 > 1:
            break
    else:
        return 0
    inner = nbytes // n0
    if s0 <= 0 or cbytes != inner:
        return None
    return (s0 * itemsize(dtype), n0, inner)
