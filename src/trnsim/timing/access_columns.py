"""The memory accesses of a Program as NumPy columns, made once per program and kept on
it, for the compiled dependency maps (trnsim/timing/compiled_deps.py) of both passes
that walk the physical accesses: the compiler model's list scheduler
(trnsim/compiler/schedule.py, in program order) and the timing scheduler (in issue
order).

    cols = access_columns(program)   # cached on the program (`_access_columns`)

Per access (rows of `acc`, each instruction's reads then its writes, in program order):
the box (p_lo, p_hi, lo, hi); it writes every byte of it (dense) where its bytes are
(p_hi - p_lo) * (hi - lo) or more.
Instruction i's accesses are acc[ptr[i]:ptr[i + 1]], its writes from wptr[i].
`source`: per access the number of an access equal to it but in its offset, box and
alloc (a copy's operand, CopyTemplate: its template's; else its own object's), the
Access objects read numbered in order of first occurrence (int32; traced instructions
that read one tile whole share its Access object: one number).
`shared` holds by that number (SHARED) what those accesses share: the
bytes, contiguous bytes, the id() of the role (an object the accesses keep alive:
equal ids, equal values) and the first dimension of the shape (-1: none; for the DMA
pricing, timing/costs.py dma_costs), the HBM rows form (deps.rows_form: -1 none, else
its row of `forms`: (row pitch, rows, bytes per row), the distinct ones in value order;
its first byte is the access's lo), the on-chip map (a number per (space, core); -1: HBM), the space (a
number per name, `spaces`) and the signature: a number per distinct value of (role,
space, dtype, pattern, indirect, elements per partition), the fields of an operand
that the compute pricing reads (timing/costs.py compute_costs: equal numbers, equal
memo key parts); `column(k)` gives one by row. (By row, with dense, they
took 64 bytes an access, 128 an instruction of a strided loop-expanded kernel.)

The columns describe the instructions as they stand when first asked for: the compiler
passes that change accesses (hoist, allocation) make a new Program, and the cache is
dropped where the program's instruction list is another object or another length. The
compiled allocation (compiler/compiled_allocation.py) makes the columns of the virtual
accesses once (`build_with_allocs`) and hands the program it makes over with its
columns already made (`moved`), so they are not read again. It reads only the accesses
outside loop expansion's copies: the rows of a block of copies (Program.copied,
machine/record.py CopiedBlock) are its template's rows, made before them, with the
numbers of the operands that move (`_copy_block`, a numba core).
"""
from __future__ import annotations

from itertools import chain
from operator import attrgetter, eq, itemgetter

import numpy as np

from ..machine.access import Access
from ..machine import compiled
from ..machine.compiled import jit
from .costs import itemsize
from .scheduler import numbered
from ..machine.record import (_Deferred, copies_of_one_class, distinct_rows, held_reads,
                               held_writes, identities)

ACC = ("p_lo", "p_hi", "lo", "hi")
P_LO, P_HI, LO, HI = range(len(ACC))
PITCH, ROWS, RUN = range(3)  # the columns of `forms`
SHARED = ("bytes", "contiguous_bytes", "role", "shape", "form", "map", "space",
          "signature")
BYTES, CONTIGUOUS, ROLE, SHAPE, FORM, MAP, SPACE, SIGNATURE = range(len(SHARED))
_READS, _WRITES = attrgetter("reads"), attrgetter("writes")


class AccessColumns:
    """acc, ptr, wptr, forms (see the module doc); spaces: the space names by number;
    maps: (space, core) by on-chip map number; depends_on: (instruction, its
    depends_on) for the instructions that have one; inert: compiled_deps.inert_reads;
    one_class: (start, stop, class) of the blocks of copies whose rows were made from
    their template's all of whose copies are of one class of copies not made yet
    (machine/record.py `_Deferred`), as they were read, in order (the allocation's
    machine/record.py `pending_operands` reads no copy's class again)."""
    __slots__ = ("instrs", "n", "acc", "ptr", "wptr", "forms", "spaces", "maps",
                 "depends_on", "shared", "source", "inert", "one_class")

    def column(self, k: int) -> np.ndarray:
        """shared's field k (BYTES ... SPACE) of each access, by row."""
        by_number = self.shared[k]
        return by_number if len(by_number) == len(self.source) else by_number[self.source]

    def hbm_code(self) -> int:
        """The number of the space "hbm" (-1: no HBM access)."""
        return self.spaces.index("hbm") if "hbm" in self.spaces else -1


def access_columns(program) -> AccessColumns:
    """The access columns of `program` (made on first use, then kept on it)."""
    cols = kept_columns(program)
    if cols is None:
        cols = program._access_columns = build(program.instructions)
    return cols


def taken_blocks(program) -> list:
    """The blocks of copies noted on `program` (machine/record.py CopiedBlock), which
    it then lets go of (read once: the passes after change the accesses)."""
    blocks = getattr(program, "copied", None) or []
    if blocks:
        program.copied = []
    return blocks


def kept_columns(program):
    """The access columns kept on `program` where they still describe it, else None."""
    instrs = program.instructions
    cols = getattr(program, "_access_columns", None)
    if cols is None or cols.instrs is not instrs or cols.n != len(instrs):
        return None
    return cols


def build(instrs) -> AccessColumns:
    """The access columns of the instructions `instrs` (indexed by position)."""
    cols = _build(instrs, False, (), None)[0]
    cols.depends_on = depends_on(instrs)
    return cols


def build_with_allocs(instrs, blocks=(), vaddr=None) -> tuple:
    """For the allocation pass (compiler/compiled_allocation.py), which reads the
    virtual accesses and hands on the columns of the physical ones (`moved`):
    (build(instrs) but its `depends_on`, which `moved` sets, each access's `alloc`, an
    array by row). `blocks`: copies among the instructions (CopiedBlock,
    `taken_blocks`), whose rows are made from their templates' rows and their numbers
    (`vaddr`: the allocations' by id) by a numba core, not read."""
    return _build(instrs, True, blocks, vaddr)


def moved(cols: AccessColumns, instrs, rows, lo, hi, orders) -> AccessColumns:
    """`cols`, changed in place into what build(instrs) gives, where `instrs` are the
    instructions `cols` describe after a pass that moved their on-chip accesses at
    `rows` to bytes [lo, hi), may have renumbered their order edges (`orders`:
    depends_on(instrs)) and changed nothing else."""
    _set_bytes(cols.acc, rows, lo, hi)
    cols.instrs = instrs
    cols.depends_on = orders
    return cols


@jit
def _set_bytes(acc, rows, lo, hi):
    """acc[rows, LO], acc[rows, HI] = lo, hi in one pass (NumPy's two scatters into the
    strided columns took ~4x as long: ~0.33 against ~0.09 ms per 119k rows)."""
    for j in range(rows.shape[0]):
        r = rows[j]
        acc[r, LO] = lo[j]
        acc[r, HI] = hi[j]


def depends_on(instrs, ids=None) -> list:
    """(instruction, its attrs' depends_on) for the instructions that have one (each
    attrs dict read once: loop copies share theirs). ids: identities of their attrs,
    where the caller has them."""
    n = len(instrs)
    if not n:
        return []
    if ids is None:
        ids = identities([ins.attrs for ins in instrs], n)
    attrs = ids.base
    first, which = numbered(ids, compiled.wanted(n))
    has = np.fromiter([bool(attrs[i].get("depends_on")) for i in first.tolist()], bool,
                      len(first))
    if not has.any():  # (as a rule: none has one)
        return []
    return [(i, attrs[i]["depends_on"]) for i in np.flatnonzero(has[which]).tolist()]


def _build(instrs, with_alloc: bool, blocks, vaddr) -> tuple:
    """(the columns but depends_on, `with_alloc`: an array by row of each access's
    alloc, else None)."""
    n = len(instrs)
    spans = _spans(instrs, blocks, vaddr) if len(blocks) else []
    ptr, wptr, read, one_class = _pointers(instrs, spans)
    if read is None:
        return _build(instrs, with_alloc, (), vaddr)
    cols = AccessColumns()
    cols.instrs, cols.n, cols.ptr, cols.wptr = instrs, n, ptr, wptr
    cols.one_class = one_class
    # the accesses outside the blocks are read; a copy's columns are its template's, which
    # come before it, so the spaces and maps are all met there first
    code: dict = {}  # space name -> its number, in the order met
    part = _Part(read, code, with_alloc)
    del read
    cols.spaces = list(code)
    cols.maps, cols.forms = part.finish(cols.spaces)
    part.by_row()
    if not spans:
        cols.acc, cols.shared, alloc = part.acc, part.shared, part.alloc
        cols.source = part.source
    else:
        rows = [(r0, r1) for r0, r1 in
                ((int(ptr[a]), int(ptr[b])) for a, b in _gaps(spans, n)) if r1 > r0]
        alloc = _copied(cols, part, rows, spans, vaddr)
        if alloc is False:
            return _build(instrs, with_alloc, (), vaddr)
    return cols, alloc


def _pointers(instrs, spans: list) -> tuple:
    """(ptr, wptr, the accesses of the instructions outside the blocks `spans` in row
    order, a list: None where the copies have in all another number of accesses than
    their templates, AccessColumns.one_class), the copies' numbers of reads and writes
    their templates'. The copies' accesses are counted, not listed."""
    n = len(instrs)
    counts = np.empty((n, 2), np.int64)
    read: list = []
    for a, b in _gaps(spans, n):
        sides = [None] * (2 * (b - a))  # each instruction's reads, then its writes
        sides[::2] = map(_READS, instrs[a:b])
        sides[1::2] = map(_WRITES, instrs[a:b])
        counts[a:b] = np.fromiter(map(len, sides), np.int64, 2 * (b - a)).reshape(-1, 2)
        read += chain.from_iterable(sides)
    # (a copy's accesses counted off the tuples it holds: its own may not be made yet,
    # machine/record.py `deferred_instructions`; copies all of one class of those hold their
    # template's, as many: counted off it, without a call per copy)
    copied, one_class = 0, []
    for block, s, e in spans:  # (in order: a template's instructions come before)
        t, w = block.template.start, (e - s) // block.copies
        counts[s:e].reshape(block.copies, -1, 2)[:] = counts[t:t + w]
        kind = copies_of_one_class(instrs, s, e)
        if kind is None:  # (not known to its block: read)
            copies = instrs[s:e]
            kinds = set(map(type, copies))
            if len(kinds) == 1 and issubclass(only := kinds.pop(), _Deferred):
                kind = only
        if kind is not None:
            copied += int(counts[t:t + w].sum()) * block.copies
            one_class.append((s, e, kind))
        else:
            copied += sum(map(len, map(held_reads, copies))) + \
                sum(map(len, map(held_writes, copies)))
    ends = np.cumsum(counts.ravel())  # (each instruction's reads end, then its writes)
    del counts
    ptr = np.zeros(n + 1, np.int64)
    ptr[1:] = ends[1::2]
    read = read if len(read) + copied == ptr[-1] else None
    return ptr, ends[::2].copy(), read, one_class


def _copied(cols: AccessColumns, part, rows: list, spans: list, vaddr):
    """Set the columns `cols` (but spaces and maps) from those of the accesses read
    (`part`, read with their allocs, rows `rows`) and the blocks' copies (`spans`);
    returns the alloc column, False where _copy_block declines."""
    m = int(cols.ptr[-1])
    ptr = cols.ptr
    acc = cols.acc = np.empty((m, len(ACC)), np.int64)
    shared = cols.shared = part.shared  # (by the number of each access read: its place)
    source = cols.source = np.empty(m, np.int32)
    alloc = np.empty(m, np.int64)
    at = 0
    for r0, r1 in rows:  # (slices: fancy indexing copies rows far slower)
        acc[r0:r1] = part.acc[at:at + r1 - r0]
        source[r0:r1] = part.source[at:at + r1 - r0]
        alloc[r0:r1] = part.alloc[at:at + r1 - r0]
        at += r1 - r0
    for block, s, _ in spans:  # (in order: a template's rows come before its copies')
        t = block.template
        t0, r = int(ptr[t.start]), int(ptr[s])
        w = int(ptr[t.start + len(t.reads)]) - t0
        if not _copy_block(acc, shared, source, alloc, r, block.copies, t0, w, t.moving,
                           block.numbers, t.kept, vaddr):
            return False
    return alloc


class _Part:
    """The columns of some accesses (`acc`, `shared`, `core`, `alloc`: None unless
    `with_alloc`), read from them in order, their spaces numbered by `code`: the box,
    sizes, core and alloc at first, the rest once the numbering of spaces and maps is
    known (`finish`). Each distinct Access object is read once (traced instructions
    share the one access of a whole tile: causal flash attention's 20k accesses are 14k
    objects): `source`, each access's object's number, its columns' place in `shared`;
    `by_row` then makes `acc` and `alloc` a row per access (`core`, which `finish`
    alone reads, stays per object: no caller reads it by row)."""

    def __init__(self, accesses: list, code: dict, with_alloc: bool):
        from .compiled_deps import numbered_rows  # (it imports this module)

        ids = identities(accesses)
        first, source = numbered_rows(ids.reshape(len(ids), 1))
        self.source = source.astype(np.int32)
        if len(first) < len(accesses):
            accesses = ids.base[first].tolist()
        del ids
        m = len(accesses)
        acc = self.acc = np.zeros((m, len(ACC)), np.int64)
        shared = self.shared = np.empty((len(SHARED), m), np.int64)
        self.core = np.empty(m, np.int64)
        self.alloc = np.empty(m, np.int64) if with_alloc else None
        # (column, Access field) of the ints read: the box, bytes, contiguous bytes,
        # core, alloc
        ints = [(acc[:, k], _FIELD[ACC[k]]) for k in range(P_LO, HI + 1)]
        ints += [(shared[BYTES], _BYTES), (shared[CONTIGUOUS], _CBYTES)]
        ints.append((self.core, _CORE))
        if with_alloc:
            ints.append((self.alloc, _ALLOC))
        shapes = _Shapes()
        signatures = _Signatures()
        hbm = []
        # a chunk of accesses at a time, transposed (each field a tuple: the fastest way
        # to read them found), its int fields made arrays
        for c in range(0, m, _CHUNK):
            fields_of = list(zip(*accesses[c:c + _CHUNK]))
            e = c + len(fields_of[0])
            for column, k in ints:
                column[c:e] = np.fromiter(fields_of[k], np.int64, e - c)
            spaces = _numbers(fields_of[_SPACE], code, e - c)
            shared[SPACE, c:e] = spaces
            shared[ROLE, c:e] = identities(fields_of[_ROLE])
            shared[SHAPE, c:e] = _first_dims(fields_of[_SHAPE])
            shared[SIGNATURE, c:e] = signatures.numbers(fields_of, shared[:, c:e])
            if "hbm" in code:
                at = np.flatnonzero(spaces == code["hbm"])
                shapes.add(fields_of, at.tolist())
                hbm.append(at + c)
            del fields_of
        at = self.hbm = np.concatenate(hbm) if hbm else np.zeros(0, np.int64)
        self.shape = shapes.table(shared[BYTES, at], shared[CONTIGUOUS, at])

    def by_row(self) -> None:
        """`acc` and `alloc` made a row per access (after `finish`, which reads them
        per object)."""
        if len(self.acc) != len(self.source):
            self.acc = self.acc[self.source]
            if self.alloc is not None:
                self.alloc = self.alloc[self.source]

    def finish(self, names: list) -> tuple:
        """The map and the HBM rows forms, the spaces numbered as `names`; returns the
        on-chip maps, (space, core) by number, and the forms table."""
        acc, shared = self.acc, self.shared
        nbytes = shared[BYTES]
        shared[FORM] = -1
        onchip = np.ones(len(acc), bool)
        onchip[self.hbm] = False
        core = self.core[onchip]
        width = int(core.max()) + 1 if len(core) else 1
        keys = shared[SPACE, onchip] * width + core
        used = np.zeros(len(names) * width, bool)  # (np.unique without its sort)
        used[keys] = True
        shared[MAP, onchip] = (np.cumsum(used) - 1)[keys]
        shared[MAP, self.hbm] = -1
        forms = _rows_forms(acc, shared[FORM], self.hbm, self.shape, nbytes[self.hbm])
        return [(names[k // width], k % width) for k in np.flatnonzero(used).tolist()], forms


@jit
def _copy_block(acc, shared, source, alloc, r, n, t, w, positions, numbers, kept, vaddr):
    """Fill rows r.. of the n copies of a block whose template's w rows from t are
    made: each copy's rows (and sources) its template's, then the box and alloc of the
    moving operands (at `positions` among them) from their numbers (CopiedBlock.numbers,
    its columns `kept`: CopyTemplate.kept); in HBM its rows form is the template's (its
    first byte is lo), as are its bytes and byte span. False
    (some rows made) where a moving HBM access's byte span is not its template's, or
    the template's allocation is not in `vaddr`."""
    m = len(positions)
    for c in range(n):
        d = r + c * w
        for i in range(w):
            for f in range(acc.shape[1]):
                acc[d + i, f] = acc[t + i, f]
            source[d + i] = source[t + i]
            alloc[d + i] = alloc[t + i]
        for j in range(m):
            row, src, k = d + positions[j], t + positions[j], c * m + j
            was = alloc[src]  # (the template's numbers: lo and hi relative to its vaddr)
            base = 0
            if was >= 0 and (kept[2] < 0 or kept[3] < 0):
                if was >= len(vaddr):
                    return False
                base = vaddr[was]
            p_lo = numbers[k, kept[0]] if kept[0] >= 0 else acc[src, P_LO]
            p_hi = numbers[k, kept[1]] if kept[1] >= 0 else acc[src, P_HI]
            lo = numbers[k, kept[2]] if kept[2] >= 0 else acc[src, LO] - base
            hi = numbers[k, kept[3]] if kept[3] >= 0 else acc[src, HI] - base
            aid = numbers[k, kept[4]] if kept[4] >= 0 else was
            if aid >= 0:
                lo += vaddr[aid]
                hi += vaddr[aid]
            if shared[MAP, source[src]] == -1 and hi - lo != acc[src, HI] - acc[src, LO]:
                return False
            acc[row, P_LO], acc[row, P_HI], acc[row, LO], acc[row, HI] = p_lo, p_hi, lo, hi
            alloc[row] = aid
    return True


def _spans(instrs, blocks, vaddr) -> list:
    """(block, its first instruction, its end) of the `blocks` the instructions still
    hold where they were noted (CopiedBlock.held_by), no two overlapping and their
    allocations in `vaddr`, in order."""
    out, end = [], 0
    for b in sorted(blocks, key=_START):
        at = b.template.kept[4]
        if b.start >= end and b.held_by(instrs) and not (
                at >= 0 and len(b.numbers) and int(b.numbers[:, at].max()) >= len(vaddr)):
            out.append((b, b.start, b.stop))
            end = b.stop
    return out


def _gaps(spans: list, n: int) -> list:
    """The ranges of instructions 0..n outside the spans."""
    ends = [0] + [e for _, _, e in spans]
    starts = [s for _, s, _ in spans] + [n]
    return [(a, b) for a, b in zip(ends, starts) if b > a]


def _numbers(names, code: dict, n: int):
    """The numbers of `names` (n of them) by `code`, names not met before added."""
    try:
        return np.fromiter(map(code.__getitem__, names), np.int64, n)
    except KeyError:  # names not met before (few: all known after the first chunk)
        for name in dict.fromkeys(names):
            code.setdefault(name, len(code))
        return np.fromiter(map(code.__getitem__, names), np.int64, n)


# positions of the Access fields read (machine/access.py): the box; core and bytes;
# alloc; space; role and shape; what rows_form reads besides lo and hi
_FIELD = {name: k for k, name in enumerate(Access._fields)}
_CORE, _BYTES, _ALLOC, _SPACE = (_FIELD[f] for f in ("core", "bytes", "alloc", "space"))
_EPP, _INDIRECT = _FIELD["elems_per_partition"], _FIELD["indirect"]
_START = attrgetter("start")
_ROLE, _SHAPE = _FIELD["role"], _FIELD["shape"]
_PATTERN, _CBYTES, _DTYPE = (_FIELD[f] for f in ("pattern", "contiguous_bytes", "dtype"))
_SIGNATURE_FIELDS = (_ROLE, _SPACE, _DTYPE, _PATTERN, _INDIRECT, _EPP)
_FIRST = itemgetter(0)
_ONE_RUN, _NO_FORM, _ROWS = range(3)
_CHUNK = 1 << 12  # accesses read at a time (larger chunks read slower: cache)


class _Signatures:
    """The signature numbers of the accesses of a build (see the module doc), a chunk
    at a time: the chunk's distinct rows of (role, space, dtype, pattern, indirect
    objects, elements per partition) found by a hash table over their ids, then
    numbered by value across the chunks (few are distinct): equal values, as the
    compute memo's key compares them, one number."""

    def __init__(self):
        self.code: dict = {}  # the fields' values (a tuple) -> their number

    def numbers(self, fields_of, shared) -> np.ndarray:
        """The numbers of the transposed chunk `fields_of`, whose role and space numbers
        are set in its columns `shared`."""
        from .compiled_deps import numbered_rows  # (it imports this module)

        keys = np.empty((shared.shape[1], 6), np.int64)
        keys[:, 0], keys[:, 1] = shared[ROLE], shared[SPACE]
        for j, f in enumerate((_DTYPE, _PATTERN, _INDIRECT), 2):
            keys[:, j] = identities(fields_of[f])
        keys[:, 5] = np.fromiter(fields_of[_EPP], np.int64, len(keys))
        first, which = numbered_rows(keys)
        code = self.code
        at = first.tolist()
        values = zip(*(map(fields_of[f].__getitem__, at) for f in _SIGNATURE_FIELDS))
        number = np.fromiter([code.setdefault(row, len(code)) for row in values], np.int64,
                             len(at))
        return number[which]


def _first_dims(shapes: tuple) -> np.ndarray:
    """The first dimension of each of `shapes` (-1 for an empty shape), an array."""
    try:
        return np.fromiter(map(_FIRST, shapes), np.int64, len(shapes))
    except IndexError:  # (an empty shape among them: rare)
        return np.fromiter([s[0] if len(s) else -1 for s in shapes], np.int64, len(shapes))


class _Shapes:
    """The shape part of deps.rows_form (`_shape`) of each HBM access, in the row order
    of the HBM accesses, computed once per distinct (pattern, bytes, contiguous bytes,
    dtype): the patterns and dtypes told apart first by object (the record's copies
    share theirs), with NumPy, then by value. The accesses must stay alive meanwhile
    (the ids of their patterns and dtypes are compared)."""

    def __init__(self):
        self.patterns: list = []  # per chunk its HBM accesses' patterns
        self.dtypes: list = []  # and their dtypes

    def add(self, fields_of, at: list) -> None:
        """Note the HBM accesses at positions `at` of the transposed chunk `fields_of`."""
        if not at:
            return
        pick = itemgetter(*at) if len(at) > 1 else (lambda column: (column[at[0]],))
        self.patterns.append(pick(fields_of[_PATTERN]))
        self.dtypes.append(pick(fields_of[_DTYPE]))

    def table(self, nbytes, cbytes):
        """(kind, row pitch, rows, bytes per row) by HBM access (`nbytes`, `cbytes`: the
        HBM accesses' bytes and contiguous bytes)."""
        if not self.patterns:
            return np.zeros((0, 4), np.int64)
        patterns = list(chain.from_iterable(self.patterns))
        dtypes = list(chain.from_iterable(self.dtypes))
        keys = np.column_stack((_value_numbers(patterns), nbytes, cbytes,
                                identities(dtypes)))
        first, inverse = distinct_rows(keys)
        by_value: dict = {}  # (pattern, bytes, contiguous bytes, dtype) -> its shape
        shapes = []
        for x, (_, nbytes, cbytes, _) in zip(first.tolist(), keys[first].tolist()):
            value = (patterns[x], nbytes, cbytes, dtypes[x])
            if value not in by_value:
                by_value[value] = _shape(*value)
            shapes.append(by_value[value])
        shapes = np.array(shapes, np.int64).reshape(-1, 4)
        return shapes[inverse]


def _value_numbers(objects: list) -> np.ndarray:
    """Numbers of `objects` (hashable), equal where the values are: their hashes where
    no two unequal ones share one (traced accesses' patterns are each their own object,
    of few values), else their ids."""
    from .compiled_deps import numbered_rows  # (it imports this module)

    hashes = np.fromiter(map(hash, objects), np.int64, len(objects))
    first, which = numbered_rows(hashes.reshape(len(hashes), 1))
    heads = np.fromiter(map(objects.__getitem__, first.tolist()), object, len(first))
    if all(map(eq, objects, heads[which].tolist())):
        return hashes
    return identities(objects)


def _rows_forms(acc, form_of, at, shape, nbytes):
    """Set the form (`form_of`: by row of acc) of the HBM accesses at rows `at` of acc
    (deps.rows_form, from their shape part, `shape`: _shape's tuple by access, and their
    bytes); returns the forms table."""
    lo, hi = acc[at, LO], acc[at, HI]
    kind = np.where(nbytes >= hi - lo, _ONE_RUN, shape[:, 0])
    form = np.zeros((len(at), 3), np.int64)  # pitch, rows, run
    run = kind == _ONE_RUN
    form[run, ROWS], form[run, RUN] = 1, (hi - lo)[run]
    rows = kind == _ROWS
    form[rows] = shape[rows, 1:]
    has = run | rows
    form = form[has]
    # (columns reversed: lexsort's last key is its first, so the forms come in value order)
    first, number = distinct_rows(form[:, ::-1])
    form_of[at[has]] = number
    return form[first]


def _shape(pattern, nbytes, cbytes, dtype) -> tuple:
    """The part of deps.rows_form that depends on the access's shape alone, for an
    access that is not one run by its byte span: (kind, row pitch, rows, bytes per
    row), kind _ONE_RUN (no dimension of more than one element), _NO_FORM or _ROWS."""
    for s0, n0 in pattern:  # the outermost dimension of more than one element
        if n0 > 1:
            break
    else:
        return (_ONE_RUN, 0, 0, 0)
    inner = nbytes // n0
    if s0 <= 0 or cbytes != inner:
        return (_NO_FORM, 0, 0, 0)
    return (_ROWS, s0 * itemsize(dtype), n0, inner)
