"""The folded PSUM memsets (scheduler.py `_folded_memsets`) found by a numba walk over
the program's access columns (access_columns.py), where the compiled paths run: the
Python walk tests every PSUM access against every pending memset, which on a blocked
matmul (a block of accumulators zeroed, then each written by its matmuls) is most of
the timing scheduler's set-up.

    folded = folded_memsets(program, memsets, matmuls)   # {memset: matmul}

The same dict, in the same order: the walk starts at each foldable memset (one of 0
with one direct PSUM write; a walk from any other memset changes nothing), keeps the
pending memsets in insertion order and ends where none is pending.
"""
from __future__ import annotations

from operator import attrgetter, itemgetter

import numpy as np

from ..machine.compiled import jit
from ..machine.record import held_writes
from .access_columns import HI, LO, MAP, P_HI, P_LO, SIGNATURE, SPACE, access_columns
from .instruction_columns import instruction_columns
from .scheduler import numbered

_INDIRECT = attrgetter("indirect")
_FIRST = itemgetter(0)


def folded_memsets(program, memsets, matmuls) -> dict:
    """scheduler.py `_folded_memsets(program.instructions, memsets)` (`matmuls`: the
    indices of the instructions whose opcode is a matmul's; both int arrays or
    lists)."""
    cols = access_columns(program)
    if "psum" not in cols.spaces or not len(memsets):
        return {}
    instrs = program.instructions
    n = len(instrs)
    # foldable: one write, to PSUM, not indirect, of a value 0 (read once per attrs
    # dict: loop copies share theirs)
    at = np.asarray(memsets, np.int64)
    psum = cols.spaces.index("psum")
    one = (cols.ptr[at + 1] - cols.wptr[at] == 1)
    at = at[one][cols.shared[SPACE, cols.source[cols.wptr[at[one]]]] == psum]
    heads, which = numbered(instruction_columns(program).ids("attrs", at), True)
    zero = np.array([_zero(instrs[int(at[h])].attrs) for h in heads.tolist()], bool)
    at = at[zero[which]]
    # not indirect: read once per signature number of the write (equal numbers: equal
    # indirect values, access_columns.py)
    heads, which = numbered(cols.shared[SIGNATURE, cols.source[cols.wptr[at]]], True)
    indirect = np.fromiter(map(_INDIRECT, map(_FIRST, map(held_writes, map(
        instrs.__getitem__, at[heads].tolist())))), bool, len(heads))[which]
    foldable = np.zeros(n, np.uint8)
    foldable[at[~indirect]] = 1
    matmul = np.zeros(n, np.uint8)
    matmul[matmuls] = 1
    m, j = _walk(cols.acc, cols.shared, cols.source, cols.ptr, cols.wptr, psum, matmul,
                 foldable, max(1, int(foldable.sum())))
    return dict(zip(m.tolist(), j.tolist()))


def _zero(attrs) -> bool:
    """A memset's value is 0 (as `_folded_memsets` reads it)."""
    try:
        return float(attrs.get("value", 1)) == 0.0
    except (TypeError, ValueError):
        return False


@jit
def _walk(acc, shared, source, ptr, wptr, psum, matmul, foldable, cap):
    """(memsets, the matmuls they fold into), in the order found (cap: at least one,
    and the foldable memsets; acc, shared, source: the access columns'). Pending
    memset e: box key[e] (on-chip map, p_lo, p_hi, lo, hi), memset of[e], live[e] (a
    popped one stays, dead, until the walk ends)."""
    n = ptr.size - 1
    key = np.empty((cap, 5), np.int64)
    of = np.empty(cap, np.int64)
    live = np.zeros(cap, np.uint8)
    out_m = np.empty(cap, np.int64)
    out_j = np.empty(cap, np.int64)
    nout = 0
    done = 0
    for start in np.flatnonzero(foldable):
        if start < done:
            continue
        used = 0  # entries (live or dead) in insertion order
        alive = 0
        j = start
        while j < n:
            for r in range(ptr[j], ptr[j + 1]):
                if shared[SPACE, source[r]] != psum:
                    continue
                write = r >= wptr[j]
                mp = shared[MAP, source[r]]
                for e in range(used):
                    if live[e] and key[e, 0] == mp and key[e, 1] < acc[r, P_HI] \
                            and acc[r, P_LO] < key[e, 2] and key[e, 3] < acc[r, HI] \
                            and acc[r, LO] < key[e, 4]:
                        live[e] = 0
                        alive -= 1
                        if write and matmul[j] and acc[r, P_LO] <= key[e, 1] \
                                and key[e, 2] <= acc[r, P_HI] and acc[r, LO] <= key[e, 3] \
                                and key[e, 4] <= acc[r, HI]:
                            out_m[nout] = of[e]
                            out_j[nout] = j
                            nout += 1
            if foldable[j]:
                w = wptr[j]
                box = (shared[MAP, source[w]], acc[w, P_LO], acc[w, P_HI], acc[w, LO],
                       acc[w, HI])
                e = 0
                while e < used and not (live[e] and key[e, 0] == box[0]
                                        and key[e, 1] == box[1] and key[e, 2] == box[2]
                                        and key[e, 3] == box[3] and key[e, 4] == box[4]):
                    e += 1
                if e == used:  # a new key (else the pending one's memset is this one)
                    if used == cap:  # drop the dead entries, keeping the order
                        used = 0
                        for x in range(cap):
                            if live[x]:
                                key[used] = key[x]
                                of[used] = of[x]
                                live[used] = 1
                                used += 1
                        live[used:] = 0
                        e = used
                    for c in range(5):
                        key[e, c] = box[c]
                    live[e] = 1
                    used += 1
                    alive += 1
                of[e] = j
            j += 1
            if alive == 0:
                break
        done = j
    return out_m[:nout], out_j[:nout]
