"""The dependency maps (deps.py) compiled with
numba, so that collecting an instruction's dependencies calls no Python per access: the
on-chip SpaceMaps (the SBUF / PSUM of every core), the HbmMap (a filtered flat map and a
map per row pitch, queried across) and MemoryMaps' exact-overlap filter of HBM producers
(`_hit`). They read the program's access columns (access_columns.py), which both of
their users share:

- `collect(sched)`, the timing scheduler (columns.build_columns): what
  `_Scheduler._collect` gives, the same dependencies in the same order (the order
  `_collect`'s dict finds them in), walking in issue order with track ids as reader
  keys; it records every instruction's track.
- `list_edges(program, tkey, extra)`, the compiler model's list scheduler
  (compiler/schedule.py `_ListScheduler._dependencies`): each instruction's producers
  and the first kind found for each, in program order with its reader keys (an
  instruction's own index for compute engines: no two share one).

(With them, hash-table passes of the pricing and the list scheduler: `transfer_heads`,
the transfers priced alike, and `numbered_rows`, the distinct rows of an int array.)

All maps share one byte axis (map m's bytes at m << 48: the on-chip maps, then the flat
HBM map, then one per row pitch in the order they appear).

State (`st`): cnt (counts, named by RECS ... SEGS: Recs, writer cells, keys below
which a reader key is its instruction's own, row pitches, on-chip maps, reader cells,
the readers' count a write or query leaves, as its writers' count is returned, the
most producers of one access, the last segment version, the most spans of one
segment, whether a map's segments fill more than half their room, the most Recs,
reader or writer cells one instruction took; from SEGS, per map:
one past its last segment, its first); segments g, numbered across the maps (map mp's
from _start(cnt, mp) to _end(cnt, mp), room up to _start(cnt, mp + 1), each map's
room doubled apart as it fills: _more_segments): [glo[g], ghi[g]) in byte order,
Recs from ghd[g] linked by R[r, NEXT], version gver[g] (new whenever a Rec leaves the
list); Rec r: partitions (rows, in a pitched map) [R[r, PLO], R[r, PHI]), its writers a
persistent list from R[r, W] (cells WC: value, previous; a copied Rec shares them, as
Python's copies share the writers tuple), its readers RD[R[r, RDS]: + R[r, RDN]] (key,
instruction) in insertion order, a block of R[r, RDC] reader cells (moved to a block
twice as large when full); the row pitches; the HBM maps' boxes (deps._grow: accesses,
writes; only _query reads them, so the on-chip maps' are left empty); scratch: _home's
boxes, the spans and gaps of _uncovered; a cache of the Rec of a long segment that a
read found alone in its partitions, by (segment version, partitions) (_cached); the
segment _first last found for a byte address, by a hash of it (`hints`: a guess it
checks). Ported are the general paths of SpaceMap.read / write / query
and, of their fast paths, those that save the most here (a segment of one Rec that is
the access's box; a dense write that keeps no Rec it meets: _clean_write; the cache,
for _RecIndex's exact lookup): each a shortcut to the same producers and the same Rec
order.
"""
from __future__ import annotations

import numpy as np

from .access_columns import (BYTES, CONTIGUOUS, FORM, HI, LO, MAP, P_HI, P_LO,
                             PITCH, ROLE, ROWS, RUN, SHAPE, SPACE, access_columns)
from .columns import ORDER, QUEUE, RAW, WAR, WAW, _dense

from ..machine.compiled import jit

MAP_SHIFT = 48
MAX_PITCHES = 64  # row pitches of the HBM maps (more: the Python scheduler)
CACHE_AFTER = 8  # a read that walked this many Recs of a segment caches the one it found
# the Recs a set of the cache holds, least recent out (one a set: the matmul
# tutorial's HBM tiles evicted each other, each miss a walk of the segment's 64 Recs;
# four: its walks ~10% faster)
WAYS = 4
# _first's guesses, by a hash of the byte address (a power of two): on the tutorial's
# and the speed cases' maps a bisection was a sixth of the maps' time, and the tile
# buffers they read and write are few (the maps ~10-20% faster)
HINTS = 4096
PLO, PHI, NEXT, W, RDN, RDS, RDC = range(7)
# the Recs, reader cells (key, instruction) and writer cells (instruction, previous
# cell) are int32, half the bytes (_run checks the keys, instructions and partitions
# fit; _cells the numbers of Recs and cells)
_MOST_CELLS = 1 << 31
# cnt's fields (the module doc): the Recs, writer cells, the key below which a reader
# key is its instruction's own, row pitches, on-chip maps, reader cells, the readers'
# count a write or query leaves, the most producers of one access, the last segment
# version, the most spans of one segment (_add_span), whether a map's segments fill
# more than half their room, the most Recs, reader or writer cells one instruction
# took (_tight); from SEGS each map's end and start (_end, _start)
(RECS, WRITER_CELLS, UNIQUE, PITCHES, ONCHIP_MAPS, READERS, NREAD, MOST_PRODUCERS,
 VER, MOST_SPANS, HALF_FULL, MOST_TAKEN, SEGS) = range(13)


def collect(sched, spaces: dict, caps=None):
    """(dptr, dprod, dkind, dspace) for `sched`'s instructions in issue order, as
    build_columns makes them (space codes added to `spaces`); makes the tracks
    (sched.track_ids).
    caps: the first capacities tried (segments of each map, Recs, writer cells,
    reader cells, producers of one access and spans of one segment).
    OverflowError: addresses the compiled maps do not hold (the Python scheduler)."""
    cols = access_columns(sched.program)
    n = len(sched.instrs)
    tkey = sched.track_ids
    skip = np.zeros(n, np.uint8)
    skip[np.fromiter(sched.folded, np.int64, len(sched.folded))] = 1
    extra = [(i, [p for p in d if 0 <= p < n and p != i])
             for i, d in cols.depends_on if not skip[i]]
    remap = np.array([_dense(spaces, s) for s in cols.spaces] or [0], np.int64)
    ntracks = len(sched.engines) + len(sched.queues)
    return _run(cols, sched.order_array, skip, tkey, 0, extra, remap,
                ntracks, False, caps)


def list_edges(program, tkey, extra, caps=None):
    """(dptr, prods, kinds): instruction i's producers prods[dptr[i]:dptr[i + 1]], each
    once with the first kind found (RAW, then per write WAW and WAR, then the `extra`
    ones: (instruction, its ORDER producers, each earlier than it), by instruction),
    as the list scheduler's MemoryMaps pass finds them in program order. tkey: each
    instruction's reader key, below len(program) its own index. OverflowError:
    addresses the compiled maps do not hold (the Python pass)."""
    cols = access_columns(program)
    n = cols.n
    return _run(cols, np.arange(n, dtype=np.int64), np.zeros(n, np.uint8),
                np.asarray(tkey, np.int64), n, extra,
                np.zeros(max(1, len(cols.spaces)), np.int64), 0, True,
                caps)[:3]


def _most_partition(acc, forms) -> int:
    """A bound of the partitions (rows, in a row pitch's map: _home) the Recs of the
    accesses `acc` (HBM rows forms: `forms`) can hold."""
    most = int(acc[:, P_HI].max())
    pitched = forms[:, PITCH][forms[:, PITCH] > 0] if len(forms) else forms[:0, 0]
    if len(pitched):
        most = max(most, int(acc[:, HI].max()) // int(pitched.min()) + 2)
    return most


def _run(cols, order, skip, tkey, unique, extra, remap, ntracks, first, caps):
    """_collect over the columns `cols` (extra: (instruction, its ORDER producers) in
    instruction order), again with more capacity where one access outgrew it."""
    acc = cols.acc
    if len(acc) and (acc[:, LO].min() < 0 or acc[:, HI].max() >= 1 << MAP_SHIFT):
        raise OverflowError(f"byte addresses beyond [0, 2**{MAP_SHIFT})")
    if len(acc) and _most_partition(acc, cols.forms) >= _MOST_CELLS:  # (Recs: int32)
        raise OverflowError("partitions or HBM rows of 2**31 or more")
    n = len(order)
    if n >= 1 << 31:  # (the producers are int32)
        raise OverflowError("2**31 instructions or more")
    if len(tkey) and tkey.max() >= 1 << 31:  # (reader keys are int32 in the maps)
        raise OverflowError("reader keys of 2**31 or more")
    if remap.max() >= 1 << 7:  # (the edges' space codes are int8)
        raise OverflowError("128 memory spaces or more")
    eptr = np.zeros(n + 1, np.int64)
    eprod = []
    for i, prods in extra:
        eptr[i + 1] = len(prods)
        eprod.extend(prods)
    np.cumsum(eptr, out=eptr)
    eprod = np.array(eprod, np.int64)
    m = len(acc)
    if caps is None:  # (the maps grow as they fill: see _collect)
        caps = (64, m // 2 + 64, m // 4 + 64, m // 2 + 64, 256)
    caps = np.maximum(np.array(caps, np.int64), 1)
    nmaps = len(cols.maps)
    inert = inert_reads(cols)
    while True:
        _cells(max(int(caps[2]), int(caps[3])))
        try:
            return _collect(order, skip, tkey, unique, acc, cols.shared, cols.source,
                            cols.forms, cols.ptr, cols.wptr, inert, remap, eptr, eprod,
                            nmaps, ntracks, first, caps)
        except IndexError:  # one access needed more than was free: again with more
            caps *= 4


def inert_reads(cols) -> np.ndarray:
    """Per access of the columns `cols`, 1 where it is an HBM read the walks may leave
    out of the maps, as if it were not there: one whose bytes no write can meet, in any
    map, in any walk order. Made once and kept on the columns (both walks ask).

    A read records itself in its home map (HbmMap._home: the flat map or its row
    pitch's) and finds writers; recorded, it is a reader only writes can report, and it
    changes only the segments and Recs of its own map where they overlap its box: a
    write reaches a map's rows (a row pitch's map; bytes in the flat one) through its
    own box or the box _query_others covers there, [lo // pitch, (hi - 1) // pitch]. So
    a read may go where it, and every access of its map whose rows overlap its rows (a
    chain of them: a Rec's rows lie within its maker's), reach no rows a write
    reaches: its Recs then hold no writer and are never visited by a write, and the
    producers of every other access come out the same and in the same order. (In the
    flat map touching bytes chain too: a read extends the read-only segment it
    touches.) The matmul tutorial's HBM reads, its input tiles, are all such reads."""
    inert = getattr(cols, "inert", None)
    if inert is None:
        inert = cols.inert = _inert_reads(cols)
    return inert


def _inert_reads(cols) -> np.ndarray:
    inert = np.zeros(len(cols.acc), np.uint8)
    # each access's home map: its form's row pitch (as _pitched), 0 the flat map
    forms = cols.forms
    pitches = forms[:, PITCH]
    homes = np.where((pitches != 0) & (forms[:, ROWS] > 1) & (forms[:, RUN] <= pitches),
                     pitches, 0)
    hbm, write, home, lo, hi = _hbm_accesses(cols.ptr, cols.wptr, cols.acc, cols.shared,
                                             cols.source, homes)
    if not len(hbm):
        return inert
    wlo, whi = lo[write], np.maximum(hi[write], lo[write] + 1)
    for pitch in sorted(set(homes.tolist()) | {0}):
        mine = np.flatnonzero(home == pitch)
        if not len(mine):
            continue
        if pitch:  # rows
            quiet = _unreached(lo[mine] // pitch, (hi[mine] - 1) // pitch + 1,
                               wlo // pitch, (whi - 1) // pitch + 1, False)
        else:
            quiet = _unreached(lo[mine], hi[mine], wlo, whi, True)
        quiet &= ~write[mine] & (hi[mine] > lo[mine])
        inert[hbm[mine[quiet]]] = 1
    return inert


@jit
def _hbm_accesses(ptr, wptr, acc, shared, source, homes):
    """(at, write, home, lo, hi) of the HBM accesses (in row order): their rows, whether
    each is a write, its home map's row pitch (homes: by form; 0, the flat map, for
    none) and its bytes [lo, hi)."""
    hbm = np.empty(len(acc), np.int64)
    m = 0
    for a in range(len(acc)):
        if shared[MAP, source[a]] < 0:
            hbm[m] = a
            m += 1
    write = np.empty(m, np.bool_)
    home = np.empty(m, np.int64)
    lo = np.empty(m, np.int64)
    hi = np.empty(m, np.int64)
    i = 0
    for j in range(m):
        a = hbm[j]
        while ptr[i + 1] <= a:  # (the access's instruction)
            i += 1
        write[j] = a >= wptr[i]
        f = shared[FORM, source[a]]
        home[j] = homes[f] if f >= 0 else 0
        lo[j], hi[j] = acc[a, LO], acc[a, HI]
    return hbm[:m].copy(), write, home, lo, hi


def _unreached(a_lo, a_hi, r_lo, r_hi, touching) -> np.ndarray:
    """Per interval [a_lo, a_hi), whether its chain of overlapping intervals (touching
    ones too, if `touching`) holds none of the reached intervals [r_lo, r_hi)."""
    k = len(a_lo)
    lo, hi = np.concatenate((a_lo, r_lo)), np.concatenate((a_hi, r_hi))
    by = np.argsort(lo, kind="stable")
    ends = np.maximum.accumulate(hi[by])
    new = np.ones(len(by), bool)
    new[1:] = lo[by][1:] > ends[:-1] if touching else lo[by][1:] >= ends[:-1]
    chain = np.empty(len(by), np.int64)
    chain[by] = np.cumsum(new) - 1
    reached = np.zeros(chain.max() + 1, bool)
    reached[chain[k:]] = True
    return ~reached[chain[:k]]


# _collect holds the arrays and grows them; _walk and the helpers below it take them
# and keep none: compiled without numba's reference counting (each array argument and
# view otherwise costs an atomic increment and decrement), they allocate no array and
# return none; what does not fit raises IndexError (_run: again with more capacity).
# A call passes every array field by field (st's fourteen arrays: over a hundred
# arguments), so the larger helpers called once per access (_hbm_access, _merge) are
# inlined and the others take only the arrays they use: each cut the maps' time by a
# tenth to a half (benchmarks/compiled_speed.py), inlining at some seconds of numba's
# first compile each.
helper = jit(_nrt=False, error_model="numpy")
helper_inline = jit(_nrt=False, error_model="numpy", inline="always")


@jit
def _collect(order, skip, tkey, unique, acc, shared, source, forms, ptr, wptr, inert,
             remap, eptr, eprod, nmaps, ntracks, first, caps):
    """The dependencies of the instructions in the walk `order`, by position: (dptr,
    producers, kinds, space codes). first: each producer's first kind (the list
    scheduler), else `_merge`'s rules and track order (the timing scheduler)."""
    n = order.size
    boxes = np.empty((nmaps + 1 + MAX_PITCHES, 2, 4), np.int64)
    boxes[:, :, 0::2] = np.iinfo(np.int64).max  # empty: no access, no write yet
    boxes[:, :, 1::2] = np.iinfo(np.int64).min
    nseg = nmaps + 1 + _pitches(shared, forms)  # the maps
    cnt = np.zeros(SEGS + 2 * nseg + 2, np.int64)
    cnt[UNIQUE], cnt[ONCHIP_MAPS] = unique, nmaps
    for mp in range(nseg + 1):  # (map nseg: the end of the last one's room)
        cnt[SEGS + 2 * mp] = cnt[SEGS + 2 * mp + 1] = mp * caps[0]
    segs = nseg * caps[0]
    st = (cnt, np.empty(segs, np.int64), np.empty(segs, np.int64),
          np.empty(segs, np.int64), np.empty((caps[1], 7), np.int32),
          np.empty((caps[3], 2), np.int32), np.empty((caps[2], 2), np.int32),
          np.empty(MAX_PITCHES, np.int64), boxes, np.zeros((2, 4), np.int64),
          np.empty((caps[4], 2), np.int64), np.empty((caps[4] + 1, 2), np.int64),
          np.empty(segs, np.int64), np.full((_cache_size(acc.shape[0]), 2), -1, np.int64),
          np.full(HINTS, -1, np.int64))
    seen = np.zeros(n + 1, np.int64)  # _hit's stamps
    dptr = np.zeros(n + 1, np.int64)
    # the edges: producers (int32: _run checks n < 2**31) and notes (kind, space: int8,
    # _run checks the space codes), a quarter of int64's bytes; room for an edge per
    # access and two per instruction (the kernels have fewer: growing faults in and
    # copies what it holds, while untouched room is address space only)
    room = 2 * n + acc.shape[0] + 16
    out = (np.empty(room, np.int32), np.empty((2, room), np.int8))
    slot = np.full(n, -1, np.int64)
    last = np.full(ntracks, -1, np.int64)
    bw = np.empty(caps[4], np.int64)
    br = np.empty(caps[4], np.int64)
    k = m = 0
    while True:
        k, m = _walk(st, k, m, order, skip, tkey, acc, shared, source, forms, ptr, wptr,
                     inert, remap, eptr, eprod, ntracks, first, seen, dptr, out, slot, last,
                     bw, br)
        if k == n:
            break
        # (each test _walk stops on, with what grows: one must have stopped it)
        cnt, R, RD, WC = st[0], st[4], st[5], st[6]
        grew = False
        need = _out_rows(order[k], n, ptr, eptr, bw)
        if out[0].size - m < need:
            room = 2 * out[0].size + need
            out = (_more(out[0], m, room), _more_columns(out[1], m, room))
            grew = True
        if 2 * cnt[MOST_PRODUCERS] > bw.size:
            bw, br = np.empty(2 * bw.size, np.int64), np.empty(2 * bw.size, np.int64)
            grew = True
        if _tight(cnt, RECS, R.shape[0]):
            st = st[:4] + (_more(R, cnt[RECS], _cells(2 * R.shape[0])),) + st[5:]
            grew = True
        if 2 * cnt[MOST_SPANS] > st[10].shape[0]:
            rows = 2 * st[10].shape[0]
            st = st[:10] + (np.empty((rows, 2), np.int64),
                            np.empty((rows + 1, 2), np.int64)) + st[12:]
            grew = True
        if cnt[HALF_FULL]:
            g = _more_segments(cnt, st[1], st[2], st[3], st[12])
            st = (cnt, g[0], g[1], g[2]) + st[4:12] + (g[3],) + st[13:]
            grew = True
        if _tight(cnt, READERS, RD.shape[0]):
            st = st[:5] + (_more(RD, cnt[READERS], _cells(2 * RD.shape[0])),) + st[6:]
            grew = True
        if _tight(cnt, WRITER_CELLS, WC.shape[0]):
            st = st[:6] + (_more(WC, cnt[WRITER_CELLS], _cells(2 * WC.shape[0])),) + st[7:]
            grew = True
        if not grew:  # (a stop test _walk has and this growth lacks: never loop)
            raise RuntimeError("compiled_deps: _walk stopped with nothing to grow")
    # (views: the rows' untouched ends take address space, not memory)
    return dptr, out[0][:m], out[1][0, :m], out[1][1, :m]


@jit
def _more(a, used, rows):
    """A copy of a's first `used` rows with room for `rows` rows."""
    grown = np.empty((rows,) + a.shape[1:], a.dtype)
    grown[:used] = a[:used]
    return grown


@jit
def _cells(rows):
    """`rows` Recs, reader or writer cells, where int32 numbers them all (a Rec holds
    the number of the next, a writer cell of the one before it)."""
    if rows > _MOST_CELLS:
        raise OverflowError("more Recs, reader or writer cells than int32 numbers them")
    return rows


@jit
def _more_columns(a, used, cols):
    """A copy of a's first `used` columns with room for `cols` columns."""
    grown = np.empty((a.shape[0], cols), a.dtype)
    grown[:, :used] = a[:, :used]
    return grown


@jit
def _pitches(shared, forms):
    """How many row pitches the HBM accesses (by number: `shared`) have maps for
    (_home), at most MAX_PITCHES."""
    seen = np.empty(MAX_PITCHES, np.int64)
    n = 0
    for a in range(shared.shape[1]):
        if shared[MAP, a] < 0 and _pitched(shared[FORM, a], forms):
            pitch = forms[shared[FORM, a], PITCH]
            j = 0
            while j < n and seen[j] != pitch:
                j += 1
            if j == n:
                seen[n] = pitch
                n += 1
                if n == MAX_PITCHES:
                    break
    return n


@jit
def _more_segments(cnt, glo, ghi, ghd, gver):
    """The segment arrays again, each map whose segments fill more than half its room
    (cnt[HALF_FULL]) with that room doubled (as many times as it takes), the others
    with theirs; cnt's starts and ends moved to match."""
    nseg = (cnt.size - SEGS - 2) // 2
    room = np.empty(nseg, np.int64)
    for mp in range(nseg):
        room[mp] = _start(cnt, mp + 1) - _start(cnt, mp)
        while 2 * (_end(cnt, mp) - _start(cnt, mp)) > room[mp]:
            room[mp] *= 2
    total = room.sum()
    lo, hi, hd, ver = (np.empty(total, np.int64), np.empty(total, np.int64),
                       np.empty(total, np.int64), np.empty(total, np.int64))
    at = 0
    for mp in range(nseg):
        a, b = _start(cnt, mp), _end(cnt, mp)
        lo[at:at + b - a], hi[at:at + b - a] = glo[a:b], ghi[a:b]
        hd[at:at + b - a], ver[at:at + b - a] = ghd[a:b], gver[a:b]
        cnt[SEGS + 2 * mp], cnt[SEGS + 2 * mp + 1] = at + b - a, at
        at += room[mp]
    cnt[SEGS + 2 * nseg + 1] = at
    cnt[HALF_FULL] = 0
    return lo, hi, hd, ver


@jit
def _cache_size(m):
    """Slots of the cache of Recs by exact box (_cached): a power of two, from 256
    to 16,384 (about a quarter of the accesses), in sets of WAYS."""
    size = 256
    while size < min(m // 4, 1 << 14):
        size *= 2
    return size


@helper
def _walk(st, k, m, order, skip, tkey, acc, shared, source, forms, ptr, wptr, inert, remap,
          eptr, eprod, ntracks, first, seen, dptr, out, slot, last, bw, br):
    """_collect's walk from position k (m: the producers found so far), until its end
    or an instruction before which a capacity is short (the tests _collect's growth
    repeats, one per capacity); (k, m) then."""
    cnt = st[0]
    n = order.size
    while k < n:
        i = order[k]
        if (out[0].size - m < _out_rows(i, n, ptr, eptr, bw)
                or 2 * cnt[MOST_PRODUCERS] > bw.size or _tight(cnt, RECS, st[4].shape[0])
                or _tight(cnt, READERS, st[5].shape[0])
                or _tight(cnt, WRITER_CELLS, st[6].shape[0])
                or 2 * cnt[MOST_SPANS] > st[10].shape[0] or cnt[HALF_FULL]):
            return k, m
        m0 = m
        taken = cnt[RECS] + cnt[READERS] + cnt[WRITER_CELLS]
        if not skip[i]:  # (a folded memset: no access, no track order)
            tk = tkey[i]
            for a in range(ptr[i], ptr[i + 1]):
                s = source[a]
                if inert[a]:  # (its map still numbered where it would be first)
                    _home(cnt, st[7], st[9], acc[a], shared[FORM, s], forms)
                    continue
                space = remap[shared[SPACE, s]]
                write = a >= wptr[i]
                nr = 0
                mp = shared[MAP, s]
                if mp < 0:
                    nw = _hbm_access(st, acc, shared, source, forms, a, write, i, tk, bw,
                                     br, ptr, wptr, seen)
                    if write:
                        nr = cnt[NREAD]
                else:
                    base = mp << MAP_SHIFT
                    lo, hi = base + acc[a, LO], base + acc[a, HI]
                    if write:
                        nw = _write(st, acc[a, P_LO], acc[a, P_HI], lo, hi, i, tk,
                                    _dense_at(acc, shared, s, a), bw, 0, br, 0)
                        nr = cnt[NREAD]
                    else:
                        nw = _read(st, acc[a, P_LO], acc[a, P_HI], lo, hi, i, tk, False,
                                   bw, 0)
                cnt[MOST_PRODUCERS] = max(cnt[MOST_PRODUCERS], nw, nr)
                m = _merge(bw, 0, nw, WAW if write else RAW, space, slot, out, m, first)
                m = _merge(br, 0, nr, WAR, space, slot, out, m, first)
            m = _merge(eprod, eptr[i], eptr[i + 1], ORDER, 0, slot, out, m, first)
            if ntracks:
                p = last[tk]
                last[tk] = i
                if p >= 0 and slot[p] < 0:
                    m = _add(p, QUEUE, 0, slot, out, m)
        for x in range(m0, m):
            slot[out[0][x]] = -1
        taken = cnt[RECS] + cnt[READERS] + cnt[WRITER_CELLS] - taken
        cnt[MOST_TAKEN] = max(cnt[MOST_TAKEN], taken)
        k += 1
        dptr[k] = m
    return k, m


@helper_inline
def _tight(cnt, used, rows):
    """Whether fewer than an eighth of the `rows` of the Recs, reader or writer cells
    (used: their count's field) are free, or not twice what one instruction took at
    most (a test _collect's growth repeats)."""
    return cnt[used] + 2 * cnt[MOST_TAKEN] + rows // 8 > rows


@helper_inline
def _out_rows(i, n, ptr, eptr, bw):
    """The most rows instruction i can add to _collect's `out`: each producer once, at
    most what its accesses' buffers hold (bw and br: as large), its order producers and
    its track's last."""
    return min(n + 1, 2 * bw.size * (ptr[i + 1] - ptr[i]) + eptr[i + 1] - eptr[i] + 1)


@helper_inline
def _hbm_access(st, acc, shared, source, forms, a, write, idx, tk, bw, br, ptr, wptr,
                seen):
    """HbmMap.read / write of HBM access a of instruction idx, then MemoryMaps._hit:
    the count of its producers in bw (the writers: RAW, or WAW for a write); a write's
    readers (WAR) in br, their count in cnt[NREAD]."""
    cnt, home = st[0], st[9]
    h = acc[a]
    fh = shared[FORM, source[a]]
    own, nbox = _home(cnt, st[7], home, h, fh, forms)
    if own < 0:  # the flat map: the access's own box
        home[0, 0], home[0, 1], home[0, 2], home[0, 3] = h[P_LO], h[P_HI], h[LO], h[HI]
        nbox = 1
    b = _map_base(cnt, own)
    nw = nr = 0
    for x in range(nbox):
        lo, hi = b + home[x, 2], b + home[x, 3]
        if write:
            nw = _write(st, home[x, 0], home[x, 1], lo, hi, idx, tk,
                        own >= 0 or _dense_at(acc, shared, source[a], a), bw, nw, br, nr)
            nr = cnt[NREAD]
        else:
            nw = _read(st, home[x, 0], home[x, 1], lo, hi, idx, tk, True, bw, nw)
    nw = _query_others(st, h, own, idx, bw, nw, br, nr, write)
    nw = _hit(h, fh, bw, nw, wptr, ptr[1:], acc, shared, source, forms, seen, idx)
    if write:
        cnt[NREAD] = _hit(h, fh, br, cnt[NREAD], ptr[:-1], wptr, acc, shared, source,
                          forms, seen, idx)
    return nw


@helper_inline
def _dense_at(acc, shared, number, a):
    """Whether access a (of that number) writes every byte of its box."""
    return shared[BYTES, number] >= (acc[a, P_HI] - acc[a, P_LO]) * (acc[a, HI] - acc[a, LO])


@helper_inline
def _add(p, kind, space, slot, out, m):
    slot[p] = m
    out[0][m] = p
    out[1][0, m], out[1][1, m] = kind, space
    return m + 1


@helper_inline
def _merge(prods, lo, hi, kind, space, slot, out, m, first):
    """Add the producers prods[lo:hi] of kind `kind` (out has room for them); the new
    count. first: a producer keeps the kind it was first found with; else _collect's
    rules: a RAW replaces any other kind, a WAW / order a WAR, a WAR is only added (a
    replaced note keeps its place). slot[p]: p's row (-1: none yet, this
    instruction)."""
    for x in range(lo, hi):
        p = prods[x]
        s = slot[p]
        if s < 0:
            m = _add(p, kind, space, slot, out, m)
        elif first:
            continue
        elif kind == RAW:
            if out[1][0, s] != RAW:
                out[1][0, s], out[1][1, s] = RAW, space
        elif kind != WAR and out[1][0, s] == WAR:
            out[1][0, s], out[1][1, s] = kind, space
    return m

# -- producers into buffers ---------------------------------------------------------
@helper_inline
def _push(buf, nb, v):
    if nb == buf.size:
        raise IndexError("producers")
    buf[nb] = v
    return nb + 1

@helper
def _writers_out(R, WC, r, idx, buf, nb):
    """Append Rec r's writers other than idx, oldest first; the new count."""
    c = R[r, W]
    n0 = nb
    while c >= 0:
        if WC[c, 0] != idx:
            nb = _push(buf, nb, WC[c, 0])
        c = WC[c, 1]
    a, b = n0, nb - 1
    while a < b:  # newest first: reverse
        buf[a], buf[b] = buf[b], buf[a]
        a += 1
        b -= 1
    return nb

@helper
def _readers_out(R, RD, r, idx, buf, nb):
    for x in range(R[r, RDS], R[r, RDS] + R[r, RDN]):
        if RD[x, 1] != idx:
            nb = _push(buf, nb, RD[x, 1])
    return nb

# -- Recs and writer cells --------------------------------------------------------
@helper
def _cell(cnt, WC, value, prev):
    c = cnt[WRITER_CELLS]
    if c == WC.shape[0]:
        raise IndexError("writer cells")
    WC[c, 0], WC[c, 1] = value, prev
    cnt[WRITER_CELLS] = c + 1
    return c

@helper
def _rec(cnt, R, p_lo, p_hi, w):
    r = cnt[RECS]
    if r == R.shape[0]:
        raise IndexError("Recs")
    R[r, PLO], R[r, PHI], R[r, NEXT], R[r, W] = p_lo, p_hi, -1, w
    R[r, RDN], R[r, RDS], R[r, RDC] = 0, 0, 0
    cnt[RECS] = r + 1
    return r

@helper_inline
def _reader_cells(cnt, RD, size):
    """A block of `size` reader cells; its first."""
    x = cnt[READERS]
    if x + size > RD.shape[0]:
        raise IndexError("reader cells")
    cnt[READERS] = x + size
    return x

@helper_inline
def _move_readers(RD, x, y, nrd):
    """RD[x:x + nrd] = RD[y:y + nrd] (blocks apart)."""
    for d in range(nrd):
        RD[x + d, 0], RD[x + d, 1] = RD[y + d, 0], RD[y + d, 1]

@helper
def _copy(cnt, R, RD, r, p_lo, p_hi):
    """Rec.copy: same writers, a copy of the readers."""
    c = _rec(cnt, R, p_lo, p_hi, R[r, W])
    nrd = R[r, RDN]
    if nrd:
        x = _reader_cells(cnt, RD, nrd)
        _move_readers(RD, x, R[r, RDS], nrd)
        R[c, RDS], R[c, RDN], R[c, RDC] = x, nrd, nrd
    return c

@helper
def _set_reader(cnt, R, RD, r, tk, idx):
    """r.readers[tk] = idx (an existing key keeps its place). A key of the
    instruction's own (below cnt[UNIQUE]) is only ever set while that instruction
    is recorded, so where it is there it is the last."""
    s, nrd = R[r, RDS], R[r, RDN]
    if tk < cnt[UNIQUE]:
        if nrd and RD[s + nrd - 1, 0] == tk:
            return
    else:
        for x in range(s, s + nrd):
            if RD[x, 0] == tk:
                RD[x, 1] = idx
                return
    if nrd == R[r, RDC]:  # full: a block twice as large
        cap = max(4, 2 * nrd)
        x = _reader_cells(cnt, RD, cap)
        _move_readers(RD, x, s, nrd)
        s = R[r, RDS] = x
        R[r, RDC] = cap
    RD[s + nrd, 0], RD[s + nrd, 1] = tk, idx
    R[r, RDN] = nrd + 1

@helper
def _has_writer(R, WC, r, idx):
    c = R[r, W]
    while c >= 0:
        if WC[c, 0] == idx:
            return True
        c = WC[c, 1]
    return False

# -- segments -------------------------------------------------------------------
@helper_inline
def _start(cnt, mp):
    """Map mp's first segment (segments are numbered across the maps: _collect)."""
    return cnt[SEGS + 2 * mp + 1]

@helper_inline
def _end(cnt, mp):
    """One past map mp's last segment."""
    return cnt[SEGS + 2 * mp]

@helper_inline
def _set_end(cnt, mp, end):
    """Map mp's segments end at `end`; note where they fill more than half its room."""
    cnt[SEGS + 2 * mp] = end
    if 2 * (end - _start(cnt, mp)) > _start(cnt, mp + 1) - _start(cnt, mp):
        cnt[HALF_FULL] = 1

@helper_inline
def _version(cnt):
    """A new segment version: a segment gets one when made and whenever a Rec leaves
    its list (so a Rec cached with a version is in that segment's list: _cached)."""
    cnt[VER] += 1
    return cnt[VER]

@helper
def _first(cnt, glo, ghi, lo, hints):
    """The first segment ending after lo: the one hints keeps for lo where it still
    is (the segments are in byte order, so that is the one whose predecessor ends at
    or before lo), else found by bisection (and kept)."""
    mp = lo >> MAP_SHIFT
    start, end = _start(cnt, mp), _end(cnt, mp)
    slot = ((lo * -7046029254386353131) >> 40) & (hints.size - 1)
    h = hints[slot]
    if start <= h < end and ghi[h] > lo and (h == start or ghi[h - 1] <= lo):
        return h
    a, b = start, end  # the last segment starting at or before lo: a - 1
    while a < b:
        c = (a + b) >> 1
        if glo[c] <= lo:
            a = c + 1
        else:
            b = c
    i = a - 1
    if i < start:
        i = start
    elif ghi[i] <= lo:
        i += 1
    hints[slot] = i
    return i

@helper_inline
def _shift_segs(glo, ghi, ghd, gver, frm, n, d):
    """Move the segments frm..n-1 d places (later: d > 0, earlier: d < 0)."""
    if d > 0:
        for x in range(n - 1, frm - 1, -1):
            glo[x + d], ghi[x + d], ghd[x + d] = glo[x], ghi[x], ghd[x]
            gver[x + d] = gver[x]
    elif d < 0:
        for x in range(frm, n):
            glo[x + d], ghi[x + d], ghd[x + d] = glo[x], ghi[x], ghd[x]
            gver[x + d] = gver[x]

@helper
def _insert_seg(cnt, glo, ghi, ghd, gver, i, lo, hi, head):
    mp = lo >> MAP_SHIFT
    n = _end(cnt, mp)
    if n == _start(cnt, mp + 1):
        raise IndexError("segments")
    _shift_segs(glo, ghi, ghd, gver, i, n, 1)
    glo[i], ghi[i], ghd[i] = lo, hi, head
    gver[i] = _version(cnt)
    _set_end(cnt, mp, n + 1)

@helper
def _copies(cnt, R, RD, r):
    """Copies of the Recs of the list from r, in its order; the first (-1: none)."""
    head = tail = -1
    while r >= 0:
        c = _copy(cnt, R, RD, r, R[r, PLO], R[r, PHI])
        if tail < 0:
            head = c
        else:
            R[tail, NEXT] = c
        tail = c
        r = R[r, NEXT]
    return head

@helper_inline
def _split(st, i, at):
    """Split segment i at byte `at`: the part after it gets copies of the Recs."""
    cnt, ghi, ghd = st[0], st[2], st[3]
    _insert_seg(cnt, st[1], ghi, ghd, st[12], i + 1, at, ghi[i],
                _copies(cnt, st[4], st[5], ghd[i]))
    ghi[i] = at

@helper_inline
def _split_around(st, i, lo, hi):
    mp = lo >> MAP_SHIFT
    glo, ghi = st[1], st[2]
    n = _end(st[0], mp)
    if i < n and glo[i] < lo:
        _split(st, i, lo)
        i += 1
        n += 1
    j = i
    while j < n and glo[j] < hi:
        j += 1
    if j > i and ghi[j - 1] > hi:
        _split(st, j - 1, hi)
    return i, j

@helper_inline
def _link(R, head, tail, r):
    """Append Rec r to the list head..tail; returns (head, tail)."""
    R[r, NEXT] = -1
    if head < 0:
        return r, r
    R[tail, NEXT] = r
    return head, r

@helper
def _add_span(spans, ns, a, b):
    """Insert the partition range [a, b) into spans[:ns], sorted by (a, b); ns + 1."""
    if ns == spans.shape[0]:
        raise IndexError("spans")
    x = ns
    while x > 0 and (spans[x - 1, 0] > a or (spans[x - 1, 0] == a
                                             and spans[x - 1, 1] > b)):
        spans[x, 0], spans[x, 1] = spans[x - 1, 0], spans[x - 1, 1]
        x -= 1
    spans[x, 0], spans[x, 1] = a, b
    return ns + 1

@helper
def _gaps(spans, ns, gaps, p_lo, p_hi):
    """The partition ranges of [p_lo, p_hi) the sorted spans[:ns] leave out, in gaps;
    their count."""
    ng = 0
    cur = p_lo
    for x in range(ns):
        if spans[x, 0] > cur:
            gaps[ng, 0], gaps[ng, 1] = cur, spans[x, 0]
            ng += 1
        cur = max(cur, spans[x, 1])
    if cur < p_hi:
        gaps[ng, 0], gaps[ng, 1] = cur, p_hi
        ng += 1
    return ng

@helper
def _uncovered(cnt, R, spans, gaps, head, p_lo, p_hi):
    """The partition ranges of [p_lo, p_hi) no Rec of the list covers, in gaps; their
    count."""
    ns = 0
    r = head
    while r >= 0:
        if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
            ns = _add_span(spans, ns, R[r, PLO], R[r, PHI])
        r = R[r, NEXT]
    cnt[MOST_SPANS] = max(cnt[MOST_SPANS], ns)
    return _gaps(spans, ns, gaps, p_lo, p_hi)

# -- reads ------------------------------------------------------------------------
@helper
def _extend_readonly(cnt, ghi, ghd, R, RD, i, lo, hi, p_lo, p_hi, idx, tk, filtered):
    """Grow the read-only segment just before position i (ending at lo) to hi."""
    j = i - 1
    if j < _start(cnt, lo >> MAP_SHIFT) or ghi[j] != lo:
        return False
    r = ghd[j]
    if r < 0 or R[r, NEXT] >= 0:
        return False
    if R[r, W] >= 0 or R[r, PLO] != p_lo or R[r, PHI] != p_hi:
        return False
    if filtered:
        v = _reader(cnt, R, RD, r, tk)
        if v != -1 and v != idx:
            return False
    ghi[j] = hi
    _set_reader(cnt, R, RD, r, tk, idx)
    return True

@helper
def _readonly_seg(cnt, glo, ghi, ghd, gver, R, RD, i, lo, hi, p_lo, p_hi, idx, tk, filtered):
    """A read-only segment [lo, hi) at position i, or the one before it grown to hi; 1
    where a segment was inserted, else 0."""
    if _extend_readonly(cnt, ghi, ghd, R, RD, i, lo, hi, p_lo, p_hi, idx, tk, filtered):
        return 0
    r = _rec(cnt, R, p_lo, p_hi, -1)
    _set_reader(cnt, R, RD, r, tk, idx)
    _insert_seg(cnt, glo, ghi, ghd, gver, i, lo, hi, r)
    return 1

@helper_inline
def _read(st, p_lo, p_hi, lo, hi, idx, tk, filtered, buf, nb):
    """SpaceMap.read: the writers appended to buf[:nb]; the new count."""
    cnt, glo, ghi, ghd, R, RD, WC = st[0], st[1], st[2], st[3], st[4], st[5], st[6]
    spans, gaps, gver, cache = st[10], st[11], st[12], st[13]
    mp = lo >> MAP_SHIFT
    if mp >= cnt[ONCHIP_MAPS]:  # (only the HBM maps' boxes are read: _query)
        _grow(st[8], mp, 0, p_lo, p_hi, lo, hi)
    i = _first(cnt, glo, ghi, lo, st[14])
    r = ghd[i] if (p_lo < p_hi and i < _end(cnt, mp) and glo[i] <= lo
                       and hi <= ghi[i]) else -1
    if (r >= 0 and R[r, NEXT] < 0 and R[r, PLO] <= p_lo and p_hi <= R[r, PHI]
            and (not filtered or (glo[i] == lo and ghi[i] == hi
                                  and R[r, PLO] == p_lo and R[r, PHI] == p_hi))):
        # one segment of one Rec holding the box (in a filtered map: both exactly the
        # box, which it would split otherwise): what follows does the same
        nb = _writers_out(R, WC, r, idx, buf, nb)
        _set_reader(cnt, R, RD, r, tk, idx)
    else:
        if filtered:  # a read recorded on a whole part must have read all of it
            i = _split_around(st, i, lo, hi)[0]
        cur = lo
        while i < _end(cnt, mp) and glo[i] < hi:
            if glo[i] > cur:  # a gap nobody touched yet: a read-only segment
                i += _readonly_seg(cnt, glo, ghi, ghd, gver, R, RD, i, cur, glo[i], p_lo,
                                   p_hi, idx, tk, filtered)
            r = _cached(cache, gver, R, i, p_lo, p_hi) if p_lo < p_hi else -1
            if r >= 0:  # the only Rec of the segment the read overlaps
                nb = _writers_out(R, WC, r, idx, buf, nb)
                _set_reader(cnt, R, RD, r, tk, idx)
            else:
                if filtered and p_lo < p_hi:
                    _narrow(st, i, p_lo, p_hi, idx, tk)
                nb = _read_seg(cnt, ghd, gver, R, RD, WC, spans, gaps, cache, i, p_lo,
                               p_hi, idx, tk, buf, nb)
            cur = ghi[i]
            i += 1
        if cur < hi:
            _readonly_seg(cnt, glo, ghi, ghd, gver, R, RD, i, cur, hi, p_lo, p_hi, idx, tk,
                          filtered)
    return nb

@helper
def _read_seg(cnt, ghd, gver, R, RD, WC, spans, gaps, cache, i, p_lo, p_hi, idx,
              tk, buf, nb):
    """_read on segment i: the writers of the Recs it overlaps appended to buf[:nb],
    read-only Recs for the partitions none covers; the new count. A long segment's
    only Rec overlapping the read, of exactly its partitions, is cached."""
    covered = ns = walked = 0
    tail = only = -1
    r = ghd[i]
    while r >= 0:
        a, b = R[r, PLO], R[r, PHI]
        if a < p_hi and p_lo < b:
            nb = _writers_out(R, WC, r, idx, buf, nb)
            _set_reader(cnt, R, RD, r, tk, idx)
            covered += min(b, p_hi) - max(a, p_lo)
            ns = _add_span(spans, ns, a, b)
            only = r
        tail = r
        walked += 1
        r = R[r, NEXT]
    cnt[MOST_SPANS] = max(cnt[MOST_SPANS], ns)
    if covered < p_hi - p_lo:  # read-only Recs for the partitions left
        head = ghd[i]
        for g in range(_gaps(spans, ns, gaps, p_lo, p_hi)):
            only = _rec(cnt, R, gaps[g, 0], gaps[g, 1], -1)
            _set_reader(cnt, R, RD, only, tk, idx)
            head, tail = _link(R, head, tail, only)
            ns += 1
        ghd[i] = head
    if walked >= CACHE_AFTER and ns == 1 and R[only, PLO] == p_lo and R[only, PHI] == p_hi:
        _cache_put(cache, gver[i], p_lo, p_hi, only)
    return nb


@helper_inline
def _cache_slot(cache, version, p_lo, p_hi):
    """The first slot of the set of WAYS slots the key (version, p_lo, p_hi) may be
    kept in (most recent first)."""
    h = version * 1000003 ^ p_lo * 8191 ^ p_hi
    return (h ^ (h >> 17)) & (cache.shape[0] - WAYS)


@helper_inline
def _cache_put(cache, version, p_lo, p_hi, r):
    """Keep Rec r for (version, p_lo, p_hi) first in its set (the set's last, least
    recent, leaves)."""
    s = _cache_slot(cache, version, p_lo, p_hi)
    for x in range(s + WAYS - 1, s, -1):
        cache[x, 0], cache[x, 1] = cache[x - 1, 0], cache[x - 1, 1]
    cache[s, 0], cache[s, 1] = version, r


@helper_inline
def _cached(cache, gver, R, i, p_lo, p_hi):
    """The Rec cached for partitions [p_lo, p_hi) of segment i (the only one of its
    Recs they overlap: the Recs of a segment are disjoint), or -1."""
    v = gver[i]
    s = _cache_slot(cache, v, p_lo, p_hi)
    for x in range(s, s + WAYS):
        r = cache[x, 1]
        if cache[x, 0] == v and R[r, PLO] == p_lo and R[r, PHI] == p_hi:
            return r
    return -1

# -- writes -----------------------------------------------------------------------
@helper_inline
def _write(st, p_lo, p_hi, lo, hi, idx, tk, dense, bw, nw, br, nr):
    """SpaceMap.write: the writers (WAW) appended to bw[:nw], the readers (WAR) to
    br[:nr]; the writers' count (the readers' in cnt[NREAD])."""
    cnt, glo, ghi, ghd, R, RD, WC = st[0], st[1], st[2], st[3], st[4], st[5], st[6]
    spans, gaps, gver = st[10], st[11], st[12]
    mp = lo >> MAP_SHIFT
    if mp >= cnt[ONCHIP_MAPS]:  # (only the HBM maps' boxes are read: _query)
        _grow(st[8], mp, 0, p_lo, p_hi, lo, hi)
        _grow(st[8], mp, 1, p_lo, p_hi, lo, hi)
    i = _first(cnt, glo, ghi, lo, st[14])
    r = ghd[i] if (dense and i < _end(cnt, mp) and glo[i] == lo
                       and ghi[i] == hi) else -1
    if r >= 0 and R[r, NEXT] < 0 and R[r, PLO] == p_lo and R[r, PHI] == p_hi:
        # one segment of one Rec, both exactly the access's: the Rec rewritten in
        # place (what follows puts a Rec of the write alone in its place)
        nw = _writers_out(R, WC, r, idx, bw, nw)
        nr = _readers_out(R, RD, r, idx, br, nr)
        R[r, W] = _cell(cnt, WC, idx, -1)
        R[r, RDN] = 0
    elif dense and _inside(R, ghd, glo, i, _end(cnt, mp), p_lo, p_hi, lo, hi):
        nw = _clean_write(cnt, glo, ghi, ghd, gver, R, RD, WC, i, p_lo, p_hi, lo, hi, idx,
                          bw, nw, br, nr)
        nr = cnt[NREAD]
    else:
        mine = _cell(cnt, WC, idx, -1)
        i, j = _split_around(st, i, lo, hi)
        cur = lo
        k = i
        clean = dense
        while k < j:
            if glo[k] > cur:
                _insert_seg(cnt, glo, ghi, ghd, gver, k, cur, glo[k],
                            _rec(cnt, R, p_lo, p_hi, mine))
                k += 1
                j += 1
            head = tail = -1
            kept = 0
            left = False  # whether a Rec leaves the list (replaced by its parts)
            r = ghd[k]
            while r >= 0:
                nxt = R[r, NEXT]
                if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                    left = True
                    nw = _writers_out(R, WC, r, idx, bw, nw)
                    nr = _readers_out(R, RD, r, idx, br, nr)
                    if R[r, PLO] < p_lo:
                        head, tail = _link(R, head, tail,
                                           _copy(cnt, R, RD, r, R[r, PLO], p_lo))
                        kept += 1
                    if R[r, PHI] > p_hi:
                        head, tail = _link(R, head, tail,
                                           _copy(cnt, R, RD, r, p_hi, R[r, PHI]))
                        kept += 1
                    if not dense:  # the part inside keeps its writers and readers
                        c = _copy(cnt, R, RD, r, max(R[r, PLO], p_lo),
                                  min(R[r, PHI], p_hi))
                        if not _has_writer(R, WC, c, idx):
                            R[c, W] = _cell(cnt, WC, idx, R[c, W])
                        head, tail = _link(R, head, tail, c)
                        kept += 1
                else:
                    head, tail = _link(R, head, tail, r)
                    kept += 1
                r = nxt
            if dense:
                if kept:
                    clean = False
                head, tail = _link(R, head, tail, _rec(cnt, R, p_lo, p_hi, mine))
            else:
                for g in range(_uncovered(cnt, R, spans, gaps, head, p_lo, p_hi)):
                    head, tail = _link(R, head, tail,
                                       _rec(cnt, R, gaps[g, 0], gaps[g, 1], mine))
            ghd[k] = head
            if left:
                gver[k] = _version(cnt)
            cur = ghi[k]
            k += 1
        if cur < hi:
            _insert_seg(cnt, glo, ghi, ghd, gver, k, cur, hi,
                        _rec(cnt, R, p_lo, p_hi, mine))
            k += 1
            j += 1
        if clean and j - i > 1:  # one segment for the whole write
            _merge_segs(cnt, glo, ghi, ghd, gver, mp, i, j)
    cnt[NREAD] = nr
    return nw


@helper
def _inside(R, ghd, glo, i, n, p_lo, p_hi, lo, hi):
    """Whether every Rec of the segments from i that start before hi overlaps
    partitions [p_lo, p_hi) and lies inside them (a dense write of the box then keeps
    none of them: _clean_write)."""
    while i < n and glo[i] < hi:
        r = ghd[i]
        while r >= 0:
            a, b = R[r, PLO], R[r, PHI]
            if not (a < p_hi and p_lo < b and p_lo <= a and b <= p_hi):
                return False
            r = R[r, NEXT]
        i += 1
    return True

@helper
def _clean_write(cnt, glo, ghi, ghd, gver, R, RD, WC, i, p_lo, p_hi, lo, hi, idx, bw, nw, br,
                 nr):
    """_write where it keeps no Rec of the segments it meets (_inside; i: the first
    ending after lo): there the general path splits them at lo and hi, gives each part
    inside a Rec of the write and merges those into one segment [lo, hi); here the
    same segments in one move of the later ones. The writers' count (the readers' in
    cnt[NREAD])."""
    mp = lo >> MAP_SHIFT
    n = _end(cnt, mp)
    j = i
    while j < n and glo[j] < hi:
        r = ghd[j]
        while r >= 0:
            nw = _writers_out(R, WC, r, idx, bw, nw)
            nr = _readers_out(R, RD, r, idx, br, nr)
            r = R[r, NEXT]
        j += 1
    cnt[NREAD] = nr
    left = j > i and glo[i] < lo  # segment i keeps its part before lo
    right = j > i and ghi[j - 1] > hi  # segment j - 1's part after hi: its Recs
    r_hi = ghi[j - 1] if right else hi
    r_head = ghd[j - 1] if right else -1
    if right and left and j - 1 == i:  # (the part before lo keeps them: copies)
        r_head = _copies(cnt, R, RD, r_head)
    new = _rec(cnt, R, p_lo, p_hi, _cell(cnt, WC, idx, -1))
    d = left + 1 + right - (j - i)
    if n + d > _start(cnt, mp + 1):
        raise IndexError("segments")
    _shift_segs(glo, ghi, ghd, gver, j, n, d)
    x = i
    if left:  # (its Recs stay: so does its version)
        ghi[x] = lo
        x += 1
    glo[x], ghi[x], ghd[x] = lo, hi, new
    gver[x] = _version(cnt)
    if right:
        glo[x + 1], ghi[x + 1], ghd[x + 1] = hi, r_hi, r_head
        gver[x + 1] = _version(cnt)
    _set_end(cnt, mp, n + d)
    return nw

@helper
def _merge_segs(cnt, glo, ghi, ghd, gver, mp, i, j):
    """Segments i..j-1 of map mp become one: [glo[i], ghi[j - 1]) with segment
    i's Recs."""
    ghi[i] = ghi[j - 1]
    d = j - i - 1
    n = _end(cnt, mp)
    _shift_segs(glo, ghi, ghd, gver, j, n, -d)
    _set_end(cnt, mp, n - d)

# -- filtered maps (HBM) ------------------------------------------------------------
@helper
def _reader(cnt, R, RD, r, tk):
    """r.readers.get(tk, -1), or -1 for an instruction's own key (whose reader,
    where there is one, is that instruction: what callers treat as none)."""
    if tk < cnt[UNIQUE]:
        return -1
    for x in range(R[r, RDS], R[r, RDS] + R[r, RDN]):
        if RD[x, 0] == tk:
            return RD[x, 1]
    return -1

@helper_inline
def _narrow(st, g, p_lo, p_hi, idx, tk):
    """SpaceMap._narrow on segment g: split the first and the last Rec the read
    overlaps (in partition order) where they straddle it and another reader of its
    track would be replaced."""
    cnt, ghd, R, RD = st[0], st[3], st[4], st[5]
    first = last = -1
    r = ghd[g]
    while r >= 0:
        if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
            if first < 0 or R[r, PLO] < R[first, PLO]:
                first = r
            if last < 0 or R[r, PLO] > R[last, PLO]:
                last = r
        r = R[r, NEXT]
    _narrow_rec(cnt, ghd, st[12], R, RD, g, first, p_lo, p_hi, idx, tk)
    if last != first:
        _narrow_rec(cnt, ghd, st[12], R, RD, g, last, p_lo, p_hi, idx, tk)

@helper
def _narrow_rec(cnt, ghd, gver, R, RD, g, r, p_lo, p_hi, idx, tk):
    if r < 0 or not (R[r, PLO] < p_lo or R[r, PHI] > p_hi):
        return
    v = _reader(cnt, R, RD, r, tk)
    if v == -1 or v == idx:
        return
    gver[g] = _version(cnt)
    head = tail = -1
    if R[r, PLO] < p_lo:
        head, tail = _link(R, head, tail, _copy(cnt, R, RD, r, R[r, PLO], p_lo))
    head, tail = _link(R, head, tail, _copy(cnt, R, RD, r, max(R[r, PLO], p_lo),
                                            min(R[r, PHI], p_hi)))
    if R[r, PHI] > p_hi:
        head, tail = _link(R, head, tail, _copy(cnt, R, RD, r, p_hi, R[r, PHI]))
    R[tail, NEXT] = R[r, NEXT]  # the parts take r's place
    if ghd[g] == r:
        ghd[g] = head
        return
    x = ghd[g]
    while R[x, NEXT] != r:
        x = R[x, NEXT]
    R[x, NEXT] = head

@helper_inline
def _query(st, p_lo, p_hi, lo, hi, idx, bw, nw, br, nr, readers):
    """SpaceMap.query: the writers (and readers) of the box, recording nothing; the
    writers' count (the readers' in cnt[NREAD])."""
    b, x, y = st[8], lo >> MAP_SHIFT, 0 if readers else 1
    st[0][NREAD] = nr
    if not (b[x, y, 0] < p_hi and p_lo < b[x, y, 1] and b[x, y, 2] < hi
            and lo < b[x, y, 3]):
        return nw  # nothing outside the map's box
    return _query_walk(st, p_lo, p_hi, lo, hi, idx, bw, nw, br, nr, readers)

@helper
def _query_walk(st, p_lo, p_hi, lo, hi, idx, bw, nw, br, nr, readers):
    cnt, glo, ghd, R = st[0], st[1], st[3], st[4]
    mp = lo >> MAP_SHIFT
    i = _first(cnt, glo, st[2], lo, st[14])
    while i < _end(cnt, mp) and glo[i] < hi:
        r = ghd[i]
        i += 1
        while r >= 0:
            if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                nw = _writers_out(R, st[6], r, idx, bw, nw)
                if readers:
                    nr = _readers_out(R, st[5], r, idx, br, nr)
            r = R[r, NEXT]
    cnt[NREAD] = nr
    return nw

@helper_inline
def _map_base(cnt, j):
    """Byte base of the HBM map j (-1: the flat map, else the j-th row pitch)."""
    return (cnt[ONCHIP_MAPS] + 1 + j) << MAP_SHIFT

@helper
def _home(cnt, pitches, boxes, h, f, forms):
    """HbmMap._home of HBM access h (a row of acc; f: its form): (index of its row
    pitch's map, -1: the flat map; how many of the boxes it has, in `boxes`)."""
    if not _pitched(f, forms):
        return -1, 0
    pitch, first, rows, run = forms[f, PITCH], h[LO], forms[f, ROWS], forms[f, RUN]
    j = 0
    while j < cnt[PITCHES] and pitches[j] != pitch:
        j += 1
    if j == cnt[PITCHES]:
        if j == pitches.size:
            raise OverflowError("too many row pitches")
        pitches[j] = pitch
        cnt[PITCHES] = j + 1
    r0, c = first // pitch, first % pitch
    if c + run <= pitch:
        boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3] = r0, r0 + rows, c, c + run
        return j, 1
    boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3] = r0, r0 + rows, c, pitch
    boxes[1, 0], boxes[1, 1] = r0 + 1, r0 + rows + 1
    boxes[1, 2], boxes[1, 3] = 0, c + run - pitch
    return j, 2

@helper_inline
def _pitched(f, forms):
    """Whether an HBM access of form f lies in a row pitch's map (_home), not the
    flat one: rows of at most a pitch each."""
    return f >= 0 and forms[f, PITCH] != 0 and forms[f, ROWS] > 1 and \
        forms[f, RUN] <= forms[f, PITCH]

@helper_inline
def _query_others(st, h, own, idx, bw, nw, br, nr, readers):
    """HbmMap._query_others: every map but the access's own (own: its pitch's
    index, -1 the flat map), in the order the maps were made; the writers' count
    (the readers' in cnt[NREAD])."""
    cnt = st[0]
    lo, hi = h[LO], h[HI]
    cnt[NREAD] = nr
    if own >= 0:
        b = _map_base(cnt, -1)
        nw = _query(st, h[P_LO], h[P_HI], b + lo, b + hi, idx, bw, nw, br, cnt[NREAD],
                    readers)
    for j in range(cnt[PITCHES]):
        if j == own:
            continue
        r = st[7][j]
        b = _map_base(cnt, j)
        r0, r1 = lo // r, (hi - 1) // r
        if r0 == r1:
            nw = _query(st, r0, r0 + 1, b + lo % r, b + (hi - 1) % r + 1, idx, bw, nw,
                        br, cnt[NREAD], readers)
        else:
            nw = _query(st, r0, r1 + 1, b, b + r, idx, bw, nw, br, cnt[NREAD], readers)
    return nw

# -- exact overlap of HBM accesses (deps.hbm_overlap) ---------------------------------
@helper
def _hit(h, fh, buf, nb, starts, ends, acc, shared, source, forms, seen, idx):
    """MemoryMaps._hit: the candidates buf[:nb] (once each, first first) with an
    HBM access in acc[starts[p]:ends[p]] sharing a byte with h (fh: its form), kept in
    buf; their count."""
    out = 0
    stamp = seen[-1] = seen[-1] + 1  # (seen: a stamp per instruction, the last one)
    for x in range(nb):
        p = buf[x]
        if nb > 1:
            if seen[p] == stamp:
                continue
            seen[p] = stamp
        for a in range(starts[p], ends[p]):
            b = acc[a]
            s = source[a]
            if shared[MAP, s] < 0 and h[LO] < b[HI] and b[LO] < h[HI] and \
                    _forms_overlap(h, fh, b, shared[FORM, s], forms):
                buf[out] = p
                out += 1
                break
    return out

@helper
def _forms_overlap(a, fa, b, fb, forms):
    """deps._forms_overlap of two accesses' rows forms (rows of acc, of forms fa and
    fb: rows of `forms`; their first bytes their lo)."""
    if fa < 0 or fb < 0:
        return True
    if forms[fa, PITCH] == 0:
        return _rows_vs_run(forms, fb, b[LO], a[LO], a[LO] + forms[fa, RUN])
    if forms[fb, PITCH] == 0:
        return _rows_vs_run(forms, fa, a[LO], b[LO], b[LO] + forms[fb, RUN])
    R = forms[fa, PITCH]
    a_run, b_run = forms[fa, RUN], forms[fb, RUN]
    if forms[fb, PITCH] != R or a_run > R or b_run > R:
        return True
    ra, ca = a[LO] // R, a[LO] % R
    rb, cb = b[LO] // R, b[LO] % R
    if ca + a_run > R or cb + b_run > R:
        return True
    return ra < rb + forms[fb, ROWS] and rb < ra + forms[fa, ROWS] and \
        ca < cb + b_run and cb < ca + a_run

@helper
def _rows_vs_run(forms, f, s, lo, hi):
    """Whether the rows of form f from byte s meet bytes [lo, hi)."""
    R, n, L = forms[f, PITCH], forms[f, ROWS], forms[f, RUN]
    if R == 0:
        return s < hi and lo < s + L
    i_min = max(0, (lo - s - L) // R + 1)
    i_max = min(n - 1, -(-(hi - s) // R) - 1)
    return i_min <= i_max

@helper_inline
def _grow(boxes, x, y, p_lo, p_hi, lo, hi):
    """deps._grow in place of boxes[x, y] (p_lo, p_hi, lo, hi)."""
    boxes[x, y, 0] = min(boxes[x, y, 0], p_lo)
    boxes[x, y, 1] = max(boxes[x, y, 1], p_hi)
    boxes[x, y, 2] = min(boxes[x, y, 2], lo)
    boxes[x, y, 3] = max(boxes[x, y, 3], hi)


@jit
def transfer_sides(shared):
    """(write, read): per access number of the access columns (`shared`), a number for
    the fields DMA pricing reads of a transfer's write (space, bytes, contiguous bytes
    and the shape's first dimension) and of its read (role, space, bytes, contiguous
    bytes): equal numbers, equal fields (transfer_heads' rows)."""
    m = shared.shape[1]
    write = np.empty((m, 4), np.int64)
    read = np.empty((m, 4), np.int64)
    for a in range(m):
        write[a, 0], write[a, 1] = shared[SPACE, a], shared[BYTES, a]
        write[a, 2], write[a, 3] = shared[CONTIGUOUS, a], shared[SHAPE, a]
        read[a, 0], read[a, 1] = shared[ROLE, a], shared[SPACE, a]
        read[a, 2], read[a, 3] = shared[BYTES, a], shared[CONTIGUOUS, a]
    rows = np.arange(m)
    return _numbered_rows(write, rows)[1], _numbered_rows(read, rows)[1]


@jit
def transfer_heads(at, ptr, wptr, acc, source, sides, op, attrs):
    """(one, first) of the instructions `at` (DMAs; op, attrs: a number per
    instruction for its opcode and its attrs values DMA pricing reads; acc, source:
    the access columns'; sides: transfer_sides of their `shared`): which have one read
    and one write, and for those the position in `at` of the first with the same row
    of the fields DMA pricing reads (costs.py `_dma_costs_grouped`): op, attrs, the
    write's space, bytes, contiguous bytes, partitions and shape, the read's role,
    space, bytes, contiguous bytes and partitions (the role by identity, the shape by
    its first dimension; the access number's fields by their transfer_sides number),
    the rows hashed; -1 for the others."""
    m = len(at)
    keys = np.zeros((m, 8), np.int64)
    one = np.zeros(m, np.bool_)
    first = np.full(m, -1, np.int64)
    for j in range(m):
        i = at[j]
        r, w = ptr[i], wptr[i]
        if w - r != 1 or ptr[i + 1] - w != 1:
            continue
        one[j] = True
        k = keys[j]
        k[0], k[1], k[2], k[3] = op[i], attrs[i], sides[0][source[w]], sides[1][source[r]]
        k[4], k[5], k[6], k[7] = acc[w, P_LO], acc[w, P_HI], acc[r, P_LO], acc[r, P_HI]
    rows = np.flatnonzero(one)
    heads, which = _numbered_rows(keys, rows)
    first[rows] = rows[heads][which]
    return one, first


@jit
def numbered_rows(keys):
    """(first, which): the distinct rows of the 2-D int array `keys`, each as the
    index of its first occurrence (increasing), and each row's number among them (in
    that order): what np.unique's sorting gives renumbered in order of first occurrence
    (scheduler.py numbered_as_met), by a hash table."""
    if keys.shape[1] == 1:  # (most callers: identities of objects)
        return _numbered_values(keys[:, 0])
    return _numbered_rows(keys, np.arange(keys.shape[0]))


@jit
def _numbered_values(values):
    """numbered_rows of a single column: its values kept in the table beside their
    numbers (one read a probe, not three) and the table kept at most a quarter full
    (shorter probes): ~4x as fast on the identity columns of the matmul tutorial."""
    m = len(values)
    size = 64  # (slots: grown fourfold when over a quarter full)
    table = np.full(size, -1, np.int64)  # a group number per used slot
    held = np.empty(size, np.int64)  # the value of each used slot
    first = np.empty(m, np.int64)
    which = np.empty(m, np.int64)
    count = 0
    for j in range(m):
        v = values[j]
        s = _value_hash(v) & (size - 1)
        while True:
            g = table[s]
            if g < 0:
                table[s] = count
                held[s] = v
                first[count] = j
                which[j] = count
                count += 1
                if 4 * count > size:
                    size *= 4
                    table = np.full(size, -1, np.int64)
                    held = np.empty(size, np.int64)
                    for q in range(count):
                        u = values[first[q]]
                        t = _value_hash(u) & (size - 1)
                        while table[t] >= 0:
                            t = (t + 1) & (size - 1)
                        table[t] = q
                        held[t] = u
                break
            if held[s] == v:
                which[j] = g
                break
            s = (s + 1) & (size - 1)
    return first[:count].copy(), which


@helper_inline
def _value_hash(v):
    """A hash of one int whose low bits mix in its high ones (identities are aligned:
    their low bits alone are all alike)."""
    h = v * 0x1E3779B97F4A7C15
    return h ^ (h >> 29)


@jit
def _numbered_rows(keys, rows):
    """numbered_rows of keys[rows] (positions in `rows`)."""
    m = len(rows)
    size = 64  # (slots: grown fourfold while over half full; few rows are distinct)
    table = np.full(size, -1, np.int64)  # a group number per used slot
    first = np.empty(m, np.int64)
    which = np.empty(m, np.int64)
    count = 0
    for j in range(m):
        row = rows[j]
        s = _row_hash(keys, row) & (size - 1)
        while True:
            g = table[s]
            if g < 0:
                table[s] = count
                first[count] = j
                which[j] = count
                count += 1
                if 2 * count > size:
                    size *= 4
                    table = _rehashed(keys, rows, first, count, size)
                break
            if _same_rows(keys, rows[first[g]], row):
                which[j] = g
                break
            s = (s + 1) & (size - 1)
    return first[:count].copy(), which


@helper_inline
def _row_hash(keys, row):
    """A hash of keys[row]: each column times its own odd multiplier (products that
    do not wait on each other), summed and mixed."""
    h = 0
    mul = 0x1E3779B97F4A7C15
    for c in range(keys.shape[1]):
        h += keys[row, c] * mul
        mul += 0x232BE59BD9B4E01A
    h ^= h >> 31
    h *= 0x1D6E8FEB86659FD9
    return h ^ (h >> 29)


@helper_inline
def _same_rows(keys, a, b):
    for c in range(keys.shape[1]):
        if keys[a, c] != keys[b, c]:
            return False
    return True


@jit
def _rehashed(keys, rows, first, count, size):
    """The table of _numbered_rows' first `count` groups in `size` slots."""
    table = np.full(size, -1, np.int64)
    for g in range(count):
        s = _row_hash(keys, rows[first[g]]) & (size - 1)
        while table[s] >= 0:
            s = (s + 1) & (size - 1)
        table[s] = g
    return table
