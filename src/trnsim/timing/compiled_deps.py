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

All maps share one byte axis (map m's bytes at m << 48: the on-chip maps, then the flat
HBM map, then one per row pitch in the order they appear).

State (`st`): cnt (segments, Recs, writer cells, keys below which a reader key is its
instruction's own, row pitches, on-chip maps, reader cells, the readers' count a
write or query leaves, as its writers' count is returned; from SEGS: each map's
segment count); segments g of map mp: [glo[mp, g], ghi[mp, g]) in byte order, Recs
from ghd[mp, g] linked by R[r, NEXT] (a row per map: a segment added or merged away
shifts only its map's later ones); Rec r: partitions (rows,
in a pitched map) [R[r, PLO], R[r, PHI]), its writers a persistent list from R[r, W]
(cells WC: value, previous; a copied Rec shares them, as Python's copies share the
writers tuple), its readers RD[R[r, RDS]: + R[r, RDN]] (key, instruction) in insertion
order, a block of R[r, RDC] reader cells (moved to a block twice as large when full);
the row pitches; the maps' boxes (deps._grow: accesses, writes); scratch: _home's
boxes, _uncovered's spans and gaps. Only the general paths of SpaceMap.read / write / query are ported:
its fast paths, _RecIndex and the access boxes are shortcuts to the same producers and
the same Rec order.
"""
from __future__ import annotations

import numpy as np

from .access_columns import (HAS_FORM, HI, LO, MAP, PITCH, ROWS, RUN, SPACE,
                             access_columns)
from .columns import ORDER, QUEUE, RAW, WAR, WAW, _dense

from ..machine.compiled import jit

MAP_SHIFT = 48
MAX_PITCHES = 64  # row pitches of the HBM maps (more: the Python scheduler)
PLO, PHI, NEXT, W, RDN, RDS, RDC = range(7)
UNIQUE, READERS, NREAD, SEGS = 3, 6, 7, 8  # (cnt's fields: see the module doc)


def collect(sched, spaces: dict, caps=None):
    """(dptr, dprod, dkind, dspace) for `sched`'s instructions in issue order, as
    build_columns makes them (space codes added to `spaces`); records sched.track.
    caps: the first capacities tried (segments, Recs, writer cells, reader cells,
    producers of one access).
    OverflowError: addresses the compiled maps do not hold (the Python scheduler)."""
    cols = access_columns(sched.program)
    n = len(sched.instrs)
    instrs, track, track_of = sched.instrs, sched.track, sched._track_of
    tkey = np.zeros(n, np.int64)
    for i in sched.order:
        trk = track[i] = track_of(instrs[i])
        tkey[i] = trk.id
    skip = np.zeros(n, np.uint8)
    skip[list(sched.folded)] = 1
    extra = [(i, [p for p in d if 0 <= p < n and p != i])
             for i, d in cols.depends_on if not skip[i]]
    remap = np.array([_dense(spaces, s) for s in cols.spaces] or [0], np.int64)
    ntracks = len(sched.engines) + len(sched.queues)
    return _run(cols, np.asarray(sched.order, np.int64), skip, tkey, 0, extra, remap,
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


def _run(cols, order, skip, tkey, unique, extra, remap, ntracks, first, caps):
    """_collect over the columns `cols` (extra: (instruction, its ORDER producers) in
    instruction order), with more capacity while it runs out."""
    acc = cols.acc
    if len(acc) and (acc[:, LO].min() < 0 or acc[:, HI].max() >= 1 << MAP_SHIFT):
        raise OverflowError(f"byte addresses beyond [0, 2**{MAP_SHIFT})")
    n = len(order)
    eptr = np.zeros(n + 1, np.int64)
    eprod = []
    for i, prods in extra:
        eptr[i + 1] = len(prods)
        eprod.extend(prods)
    np.cumsum(eptr, out=eptr)
    eprod = np.array(eprod, np.int64)
    m = len(acc)
    if caps is None:  # (np.empty: untouched capacity costs address space only)
        caps = (4 * m + 64, 8 * m + 64, 4 * m + 64, 8 * m + 64, 4 * m + 64)
    caps = np.array(caps, np.int64)
    nmaps = len(cols.maps)
    pitched = ((acc[:, MAP] < 0) & (acc[:, HAS_FORM] != 0) & (acc[:, PITCH] != 0)
               & (acc[:, ROWS] > 1) & (acc[:, RUN] <= acc[:, PITCH]))  # (as _home)
    npitch = min(len(np.unique(acc[pitched, PITCH])), MAX_PITCHES)
    while True:
        try:
            return _collect(order, skip, tkey, unique, acc, cols.ptr, cols.wptr, remap,
                            eptr, eprod, nmaps, npitch, ntracks, first, caps)
        except IndexError:  # a capacity was too small: again with more
            caps *= 4


# The helpers below _collect take its arrays and keep none: compiled without numba's
# reference counting (each array argument and view otherwise costs an atomic increment
# and decrement), they allocate no array and return none; what does not fit raises
# IndexError (_run: again with more capacity). The larger ones called once per access
# are inlined by numba: a call passes every array of `st` field by field (over a
# hundred arguments; inlined, the maps took 40% less time on the matmul tutorial's
# step 1 in benchmarks/compiled_speed.py).
helper = jit(_nrt=False, error_model="numpy")
helper_inline = jit(_nrt=False, error_model="numpy", inline="always")


@jit
def _collect(order, skip, tkey, unique, acc, ptr, wptr, remap, eptr, eprod, nmaps,
             npitch, ntracks, first, caps):
    """The dependencies of the instructions in the walk `order`, by position: (dptr,
    producers, kinds, space codes). first: each producer's first kind (the list
    scheduler), else `_merge`'s rules and track order (the timing scheduler)."""
    n = order.size
    boxes = np.empty((nmaps + 1 + MAX_PITCHES, 2, 4), np.int64)
    boxes[:, :, 0::2] = np.iinfo(np.int64).max  # empty: no access, no write yet
    boxes[:, :, 1::2] = np.iinfo(np.int64).min
    segs = (nmaps + 1 + npitch, caps[0])  # a row per map
    cnt = np.zeros(SEGS + segs[0], np.int64)
    cnt[UNIQUE], cnt[5] = unique, nmaps
    st = (cnt, np.empty(segs, np.int64), np.empty(segs, np.int64),
          np.empty(segs, np.int64), np.empty((caps[1], 7), np.int64),
          np.empty((caps[3], 2), np.int64), np.empty((caps[2], 2), np.int64),
          np.empty(MAX_PITCHES, np.int64), boxes, np.zeros((2, 4), np.int64),
          np.empty((caps[1], 2), np.int64), np.empty((caps[1] + 1, 2), np.int64))
    seen = np.zeros(n + 1, np.int64)  # _hit's stamps
    dptr = np.zeros(n + 1, np.int64)
    out = np.empty((max(16, 4 * n), 3), np.int64)  # producer, kind, space
    slot = np.full(n, -1, np.int64)
    last = np.full(ntracks, -1, np.int64)
    bw = np.empty(caps[4], np.int64)
    br = np.empty(caps[4], np.int64)
    m = 0
    for k in range(n):
        i = order[k]
        m0 = m
        if not skip[i]:  # (a folded memset: no access, no track order)
            tk = tkey[i]
            for a in range(ptr[i], ptr[i + 1]):
                space = remap[acc[a, SPACE]]
                nr = 0
                if a < wptr[i]:
                    nw = _access(st, acc, a, False, i, tk, bw, br, ptr, wptr, seen)
                else:
                    nw = _access(st, acc, a, True, i, tk, bw, br, ptr, wptr, seen)
                    nr = st[0][NREAD]
                if m + nw + nr + 1 > out.shape[0]:
                    out = _grown(out, m + nw + nr + 1)
                m = _merge(bw, 0, nw, RAW if a < wptr[i] else WAW, space, slot, out, m,
                           first)
                m = _merge(br, 0, nr, WAR, space, slot, out, m, first)
            if m + eptr[i + 1] - eptr[i] + 1 > out.shape[0]:
                out = _grown(out, m + eptr[i + 1] - eptr[i] + 1)
            m = _merge(eprod, eptr[i], eptr[i + 1], ORDER, 0, slot, out, m, first)
            if ntracks:
                p = last[tk]
                last[tk] = i
                if p >= 0 and slot[p] < 0:
                    m = _add(p, QUEUE, 0, slot, out, m)
        for x in range(m0, m):
            slot[out[x, 0]] = -1
        dptr[k + 1] = m
    return dptr, out[:m, 0].copy(), out[:m, 1].copy(), out[:m, 2].copy()


@jit
def _grown(out, rows):
    """out with room for at least `rows` rows."""
    grown = np.empty((max(rows, 2 * out.shape[0]), 3), np.int64)
    grown[:out.shape[0]] = out
    return grown


@helper
def _access(st, acc, a, write, idx, tk, bw, br, ptr, wptr, seen):
    """Access a of instruction idx in the maps: the count of its producers in bw (the
    writers: RAW, or WAW for a write); a write's readers (WAR) in br, their count in
    cnt[7]."""
    h = acc[a]
    if not write:
        if h[MAP] >= 0:
            base = h[MAP] << MAP_SHIFT
            return _read(st, h[0], h[1], base + h[2], base + h[3], idx, tk, False, bw, 0)
        nw = _hbm_read(st, h, idx, tk, bw)
        return _hit(h, bw, nw, wptr, ptr[1:], acc, seen, idx)
    if h[MAP] >= 0:
        base = h[MAP] << MAP_SHIFT
        return _write(st, h[0], h[1], base + h[2], base + h[3], idx, tk, h[4] != 0, bw,
                      0, br, 0)
    nw = _hbm_write(st, h, idx, tk, bw, br)
    nw = _hit(h, bw, nw, wptr, ptr[1:], acc, seen, idx)
    st[0][NREAD] = _hit(h, br, st[0][NREAD], ptr[:-1], wptr, acc, seen, idx)
    return nw


@helper
def _add(p, kind, space, slot, out, m):
    slot[p] = m
    out[m, 0], out[m, 1], out[m, 2] = p, kind, space
    return m + 1


@helper
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
            if out[s, 1] != RAW:
                out[s, 1], out[s, 2] = RAW, space
        elif kind != WAR and out[s, 1] == WAR:
            out[s, 1], out[s, 2] = kind, space
    return m

# -- producers into buffers ---------------------------------------------------------
@helper
def _push(buf, nb, v):
    if nb == buf.size:
        raise IndexError("producers")
    buf[nb] = v
    return nb + 1

@helper
def _writers_out(st, r, idx, buf, nb):
    """Append Rec r's writers other than idx, oldest first; the new count."""
    WC = st[6]
    c = st[4][r, W]
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
def _readers_out(st, r, idx, buf, nb):
    R, RD = st[4], st[5]
    for x in range(R[r, RDS], R[r, RDS] + R[r, RDN]):
        if RD[x, 1] != idx:
            nb = _push(buf, nb, RD[x, 1])
    return nb

# -- Recs and writer cells --------------------------------------------------------
@helper
def _cell(st, value, prev):
    cnt, WC = st[0], st[6]
    c = cnt[2]
    if c == WC.shape[0]:
        raise IndexError("writer cells")
    WC[c, 0], WC[c, 1] = value, prev
    cnt[2] = c + 1
    return c

@helper
def _rec(st, p_lo, p_hi, w):
    cnt, R = st[0], st[4]
    r = cnt[1]
    if r == R.shape[0]:
        raise IndexError("Recs")
    R[r, PLO], R[r, PHI], R[r, NEXT], R[r, W] = p_lo, p_hi, -1, w
    R[r, RDN], R[r, RDS], R[r, RDC] = 0, 0, 0
    cnt[1] = r + 1
    return r

@helper
def _reader_cells(st, size):
    """A block of `size` reader cells; its first."""
    cnt = st[0]
    x = cnt[READERS]
    if x + size > st[5].shape[0]:
        raise IndexError("reader cells")
    cnt[READERS] = x + size
    return x

@helper_inline
def _move_readers(RD, x, y, nrd):
    """RD[x:x + nrd] = RD[y:y + nrd] (blocks apart)."""
    for d in range(nrd):
        RD[x + d, 0], RD[x + d, 1] = RD[y + d, 0], RD[y + d, 1]

@helper
def _copy(st, r, p_lo, p_hi):
    """Rec.copy: same writers, a copy of the readers."""
    R, RD = st[4], st[5]
    c = _rec(st, p_lo, p_hi, R[r, W])
    nrd = R[r, RDN]
    if nrd:
        x = _reader_cells(st, nrd)
        _move_readers(RD, x, R[r, RDS], nrd)
        R[c, RDS], R[c, RDN], R[c, RDC] = x, nrd, nrd
    return c

@helper
def _set_reader(st, r, tk, idx):
    """r.readers[tk] = idx (an existing key keeps its place). A key of the
    instruction's own (below cnt[UNIQUE]) is only ever set while that instruction
    is recorded, so where it is there it is the last."""
    R, RD = st[4], st[5]
    s, nrd = R[r, RDS], R[r, RDN]
    if tk < st[0][UNIQUE]:
        if nrd and RD[s + nrd - 1, 0] == tk:
            return
    else:
        for x in range(s, s + nrd):
            if RD[x, 0] == tk:
                RD[x, 1] = idx
                return
    if nrd == R[r, RDC]:  # full: a block twice as large
        cap = max(4, 2 * nrd)
        x = _reader_cells(st, cap)
        _move_readers(RD, x, s, nrd)
        s = R[r, RDS] = x
        R[r, RDC] = cap
    RD[s + nrd, 0], RD[s + nrd, 1] = tk, idx
    R[r, RDN] = nrd + 1

@helper
def _has_writer(st, r, idx):
    WC = st[6]
    c = st[4][r, W]
    while c >= 0:
        if WC[c, 0] == idx:
            return True
        c = WC[c, 1]
    return False

# -- segments -------------------------------------------------------------------
@helper
def _first(st, lo):
    """The first segment ending after lo."""
    mp = lo >> MAP_SHIFT
    glo, ghi = st[1][mp], st[2][mp]
    a, b = 0, st[0][SEGS + mp]  # the last segment starting at or before lo: a - 1
    while a < b:
        c = (a + b) >> 1
        if glo[c] <= lo:
            a = c + 1
        else:
            b = c
    i = a - 1
    if i < 0:
        return 0
    return i if ghi[i] > lo else i + 1

@helper
def _insert_seg(st, i, lo, hi, head):
    mp = lo >> MAP_SHIFT
    cnt, glo, ghi, ghd = st[0], st[1][mp], st[2][mp], st[3][mp]
    n = cnt[SEGS + mp]
    if n == glo.size:
        raise IndexError("segments")
    for j in range(n, i, -1):
        glo[j], ghi[j], ghd[j] = glo[j - 1], ghi[j - 1], ghd[j - 1]
    glo[i], ghi[i], ghd[i] = lo, hi, head
    cnt[SEGS + mp] = n + 1

@helper_inline
def _split(st, i, at):
    """Split segment i at byte `at`: the part after it gets copies of the Recs."""
    mp = at >> MAP_SHIFT
    R, ghi = st[4], st[2][mp]
    head = -1
    tail = -1
    r = st[3][mp, i]
    while r >= 0:
        c = _copy(st, r, R[r, PLO], R[r, PHI])
        if tail < 0:
            head = c
        else:
            R[tail, NEXT] = c
        tail = c
        r = R[r, NEXT]
    _insert_seg(st, i + 1, at, ghi[i], head)
    ghi[i] = at

@helper_inline
def _split_around(st, i, lo, hi):
    mp = lo >> MAP_SHIFT
    glo, ghi = st[1][mp], st[2][mp]
    n = st[0][SEGS + mp]
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

@helper
def _link(st, head, tail, r):
    """Append Rec r to the list head..tail; returns (head, tail)."""
    st[4][r, NEXT] = -1
    if head < 0:
        return r, r
    st[4][tail, NEXT] = r
    return head, r

@helper
def _tail(st, head):
    x = head
    while x >= 0 and st[4][x, NEXT] >= 0:
        x = st[4][x, NEXT]
    return x

@helper
def _uncovered(st, head, p_lo, p_hi):
    """The partition ranges of [p_lo, p_hi) no Rec of the list covers (rows), in
    st[11]; their count."""
    R, spans, gaps = st[4], st[10], st[11]
    ns = 0
    r = head
    while r >= 0:
        if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
            a, b = R[r, PLO], R[r, PHI]
            x = ns  # insertion, sorted by (a, b)
            while x > 0 and (spans[x - 1, 0] > a or (spans[x - 1, 0] == a
                                                     and spans[x - 1, 1] > b)):
                spans[x, 0], spans[x, 1] = spans[x - 1, 0], spans[x - 1, 1]
                x -= 1
            spans[x, 0], spans[x, 1] = a, b
            ns += 1
        r = R[r, NEXT]
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

# -- reads ------------------------------------------------------------------------
@helper
def _extend_readonly(st, i, lo, hi, p_lo, p_hi, idx, tk, filtered):
    """Grow the read-only segment just before position i (ending at lo) to hi."""
    mp = lo >> MAP_SHIFT
    R, ghi = st[4], st[2][mp]
    j = i - 1
    if j < 0 or ghi[j] != lo:
        return False
    r = st[3][mp, j]
    if r < 0 or R[r, NEXT] >= 0:
        return False
    if R[r, W] >= 0 or R[r, PLO] != p_lo or R[r, PHI] != p_hi:
        return False
    if filtered:
        v = _reader(st, r, tk)
        if v != -1 and v != idx:
            return False
    ghi[j] = hi
    _set_reader(st, r, tk, idx)
    return True

@helper_inline
def _readonly_seg(st, i, lo, hi, p_lo, p_hi, idx, tk):
    r = _rec(st, p_lo, p_hi, -1)
    _set_reader(st, r, tk, idx)
    _insert_seg(st, i, lo, hi, r)

@helper_inline
def _read(st, p_lo, p_hi, lo, hi, idx, tk, filtered, buf, nb):
    """SpaceMap.read: the writers appended to buf[:nb]; the new count."""
    mp = lo >> MAP_SHIFT
    R, glo, ghi, ghd, gaps = st[4], st[1][mp], st[2][mp], st[3][mp], st[11]
    _grow(st[8], lo >> MAP_SHIFT, 0, p_lo, p_hi, lo, hi)
    i = _first(st, lo)
    if filtered:  # a read recorded on a whole part must have read all of it
        i = _split_around(st, i, lo, hi)[0]
    cur = lo
    while i < st[0][SEGS + mp] and glo[i] < hi:
        if glo[i] > cur:  # a gap nobody touched yet: a read-only segment
            if not _extend_readonly(st, i, cur, glo[i], p_lo, p_hi, idx, tk, filtered):
                _readonly_seg(st, i, cur, glo[i], p_lo, p_hi, idx, tk)
                i += 1
        if filtered and p_lo < p_hi:
            _narrow(st, mp, i, p_lo, p_hi, idx, tk)
        covered = 0
        r = ghd[i]
        while r >= 0:
            if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                nb = _writers_out(st, r, idx, buf, nb)
                _set_reader(st, r, tk, idx)
                covered += min(R[r, PHI], p_hi) - max(R[r, PLO], p_lo)
            r = R[r, NEXT]
        if covered < p_hi - p_lo:
            head = ghd[i]
            tail = _tail(st, head)
            for g in range(_uncovered(st, head, p_lo, p_hi)):
                c = _rec(st, gaps[g, 0], gaps[g, 1], -1)
                _set_reader(st, c, tk, idx)
                head, tail = _link(st, head, tail, c)
            ghd[i] = head
        cur = ghi[i]
        i += 1
    if cur < hi:
        if not _extend_readonly(st, i, cur, hi, p_lo, p_hi, idx, tk, filtered):
            _readonly_seg(st, i, cur, hi, p_lo, p_hi, idx, tk)
    return nb

# -- writes -----------------------------------------------------------------------
@helper_inline
def _write(st, p_lo, p_hi, lo, hi, idx, tk, dense, bw, nw, br, nr):
    """SpaceMap.write: the writers (WAW) appended to bw[:nw], the readers (WAR) to
    br[:nr]; the writers' count (the readers' in cnt[7])."""
    mp = lo >> MAP_SHIFT
    R, glo, ghi, ghd, gaps = st[4], st[1][mp], st[2][mp], st[3][mp], st[11]
    _grow(st[8], lo >> MAP_SHIFT, 0, p_lo, p_hi, lo, hi)
    _grow(st[8], lo >> MAP_SHIFT, 1, p_lo, p_hi, lo, hi)
    mine = _cell(st, idx, -1)
    i, j = _split_around(st, _first(st, lo), lo, hi)
    cur = lo
    k = i
    clean = dense
    while k < j:
        if glo[k] > cur:
            _insert_seg(st, k, cur, glo[k], _rec(st, p_lo, p_hi, mine))
            k += 1
            j += 1
        head = tail = -1
        kept = 0
        r = ghd[k]
        while r >= 0:
            nxt = R[r, NEXT]
            if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                nw = _writers_out(st, r, idx, bw, nw)
                nr = _readers_out(st, r, idx, br, nr)
                if R[r, PLO] < p_lo:
                    head, tail = _link(st, head, tail, _copy(st, r, R[r, PLO], p_lo))
                    kept += 1
                if R[r, PHI] > p_hi:
                    head, tail = _link(st, head, tail, _copy(st, r, p_hi, R[r, PHI]))
                    kept += 1
                if not dense:  # the part inside keeps its writers and readers
                    c = _copy(st, r, max(R[r, PLO], p_lo), min(R[r, PHI], p_hi))
                    if not _has_writer(st, c, idx):
                        R[c, W] = _cell(st, idx, R[c, W])
                    head, tail = _link(st, head, tail, c)
                    kept += 1
            else:
                head, tail = _link(st, head, tail, r)
                kept += 1
            r = nxt
        if dense:
            if kept:
                clean = False
            head, tail = _link(st, head, tail, _rec(st, p_lo, p_hi, mine))
        else:
            for g in range(_uncovered(st, head, p_lo, p_hi)):
                head, tail = _link(st, head, tail, _rec(st, gaps[g, 0], gaps[g, 1],
                                                        mine))
        ghd[k] = head
        cur = ghi[k]
        k += 1
    if cur < hi:
        _insert_seg(st, k, cur, hi, _rec(st, p_lo, p_hi, mine))
        k += 1
        j += 1
    if clean and j - i > 1:  # one segment for the whole write
        _merge_segs(st, mp, i, j)
    st[0][NREAD] = nr
    return nw

@helper
def _merge_segs(st, mp, i, j):
    """Segments i..j-1 of map mp become one: [glo[i], ghi[j - 1]) with segment i's
    Recs."""
    cnt, glo, ghi, ghd = st[0], st[1][mp], st[2][mp], st[3][mp]
    ghi[i] = ghi[j - 1]
    d = j - i - 1
    n = cnt[SEGS + mp]
    for x in range(i + 1, n - d):
        glo[x], ghi[x], ghd[x] = glo[x + d], ghi[x + d], ghd[x + d]
    cnt[SEGS + mp] = n - d

# -- filtered maps (HBM) ------------------------------------------------------------
@helper
def _reader(st, r, tk):
    """r.readers.get(tk, -1), or -1 for an instruction's own key (whose reader,
    where there is one, is that instruction: what callers treat as none)."""
    R, RD = st[4], st[5]
    if tk < st[0][UNIQUE]:
        return -1
    for x in range(R[r, RDS], R[r, RDS] + R[r, RDN]):
        if RD[x, 0] == tk:
            return RD[x, 1]
    return -1

@helper_inline
def _narrow(st, mp, g, p_lo, p_hi, idx, tk):
    """SpaceMap._narrow on segment g: split the first and the last Rec the read
    overlaps (in partition order) where they straddle it and another reader of its
    track would be replaced."""
    R = st[4]
    first = last = -1
    r = st[3][mp, g]
    while r >= 0:
        if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
            if first < 0 or R[r, PLO] < R[first, PLO]:
                first = r
            if last < 0 or R[r, PLO] > R[last, PLO]:
                last = r
        r = R[r, NEXT]
    _narrow_rec(st, mp, g, first, p_lo, p_hi, idx, tk)
    if last != first:
        _narrow_rec(st, mp, g, last, p_lo, p_hi, idx, tk)

@helper
def _narrow_rec(st, mp, g, r, p_lo, p_hi, idx, tk):
    R = st[4]
    if r < 0 or not (R[r, PLO] < p_lo or R[r, PHI] > p_hi):
        return
    v = _reader(st, r, tk)
    if v == -1 or v == idx:
        return
    head = tail = -1
    if R[r, PLO] < p_lo:
        head, tail = _link(st, head, tail, _copy(st, r, R[r, PLO], p_lo))
    head, tail = _link(st, head, tail, _copy(st, r, max(R[r, PLO], p_lo),
                                             min(R[r, PHI], p_hi)))
    if R[r, PHI] > p_hi:
        head, tail = _link(st, head, tail, _copy(st, r, p_hi, R[r, PHI]))
    R[tail, NEXT] = R[r, NEXT]  # the parts take r's place
    if st[3][mp, g] == r:
        st[3][mp, g] = head
        return
    x = st[3][mp, g]
    while R[x, NEXT] != r:
        x = R[x, NEXT]
    R[x, NEXT] = head

@helper
def _query(st, p_lo, p_hi, lo, hi, idx, bw, nw, br, nr, readers):
    """SpaceMap.query: the writers (and readers) of the box, recording nothing; the
    writers' count (the readers' in cnt[7])."""
    mp = lo >> MAP_SHIFT
    R, glo, ghd, b = st[4], st[1][mp], st[3][mp], st[8]
    x, y = mp, 0 if readers else 1  # nothing outside: return at once
    st[0][NREAD] = nr
    if not (b[x, y, 0] < p_hi and p_lo < b[x, y, 1] and b[x, y, 2] < hi
            and lo < b[x, y, 3]):
        return nw
    i = _first(st, lo)
    while i < st[0][SEGS + mp] and glo[i] < hi:
        r = ghd[i]
        i += 1
        while r >= 0:
            if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                nw = _writers_out(st, r, idx, bw, nw)
                if readers:
                    nr = _readers_out(st, r, idx, br, nr)
            r = R[r, NEXT]
    st[0][NREAD] = nr
    return nw

@helper
def _map_base(st, j):
    """Byte base of the HBM map j (-1: the flat map, else the j-th row pitch)."""
    return (st[0][5] + 1 + j) << MAP_SHIFT

@helper
def _home(st, h):
    """HbmMap._home: (index of its row pitch's map, -1: the flat map; how many of the
    boxes st[9] it has)."""
    boxes = st[9]  # (scratch)
    pitch, first, rows, run = h[6], h[7], h[8], h[9]
    if not h[5] or pitch == 0 or rows <= 1 or run > pitch:
        return -1, 0
    cnt, pitches = st[0], st[7]
    j = 0
    while j < cnt[4] and pitches[j] != pitch:
        j += 1
    if j == cnt[4]:
        if j == pitches.size:
            raise OverflowError("too many row pitches")
        pitches[j] = pitch
        cnt[4] = j + 1
    r0, c = first // pitch, first % pitch
    if c + run <= pitch:
        boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3] = r0, r0 + rows, c, c + run
        return j, 1
    boxes[0, 0], boxes[0, 1], boxes[0, 2], boxes[0, 3] = r0, r0 + rows, c, pitch
    boxes[1, 0], boxes[1, 1] = r0 + 1, r0 + rows + 1
    boxes[1, 2], boxes[1, 3] = 0, c + run - pitch
    return j, 2

@helper_inline
def _query_others(st, h, own, idx, bw, nw, br, nr, readers):
    """HbmMap._query_others: every map but the access's own (own: its pitch's
    index, -1 the flat map), in the order the maps were made; the writers' count
    (the readers' in cnt[7])."""
    lo, hi = h[2], h[3]
    st[0][NREAD] = nr
    if own >= 0:
        b = _map_base(st, -1)
        nw = _query(st, h[0], h[1], b + lo, b + hi, idx, bw, nw, br, st[0][NREAD],
                    readers)
    for j in range(st[0][4]):
        if j == own:
            continue
        r = st[7][j]
        b = _map_base(st, j)
        r0, r1 = lo // r, (hi - 1) // r
        if r0 == r1:
            nw = _query(st, r0, r0 + 1, b + lo % r, b + (hi - 1) % r + 1, idx, bw, nw,
                        br, st[0][NREAD], readers)
        else:
            nw = _query(st, r0, r1 + 1, b, b + r, idx, bw, nw, br, st[0][NREAD], readers)
    return nw

@helper
def _hbm_read(st, h, idx, tk, bw):
    """HbmMap.read of HBM access h: the count of the candidates in bw."""
    own, nbox = _home(st, h)
    b = _map_base(st, own)
    boxes = st[9]
    nw = 0
    if own < 0:
        nw = _read(st, h[0], h[1], b + h[2], b + h[3], idx, tk, True, bw, nw)
    for x in range(nbox):
        nw = _read(st, boxes[x, 0], boxes[x, 1], b + boxes[x, 2], b + boxes[x, 3], idx,
                   tk, True, bw, nw)
    return _query_others(st, h, own, idx, bw, nw, bw, 0, False)

@helper
def _hbm_write(st, h, idx, tk, bw, br):
    """HbmMap.write of HBM access h: the count of the writers in bw (of the readers
    in br: cnt[7])."""
    own, nbox = _home(st, h)
    b = _map_base(st, own)
    boxes = st[9]
    nw = 0
    st[0][NREAD] = 0
    if own < 0:
        nw = _write(st, h[0], h[1], b + h[2], b + h[3], idx, tk, h[4] != 0, bw, nw, br,
                    0)
    for x in range(nbox):
        nw = _write(st, boxes[x, 0], boxes[x, 1], b + boxes[x, 2], b + boxes[x, 3], idx,
                    tk, True, bw, nw, br, st[0][NREAD])
    return _query_others(st, h, own, idx, bw, nw, br, st[0][NREAD], True)

# -- exact overlap of HBM accesses (deps.hbm_overlap) ---------------------------------
@helper
def _hit(h, buf, nb, starts, ends, acc, seen, idx):
    """MemoryMaps._hit: the candidates buf[:nb] (once each, first first) with an
    HBM access in acc[starts[p]:ends[p]] sharing a byte with h, kept in buf; their
    count."""
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
            if b[MAP] < 0 and h[2] < b[3] and b[2] < h[3] and _forms_overlap(h, b):
                buf[out] = p
                out += 1
                break
    return out

@helper
def _forms_overlap(a, b):
    """deps._forms_overlap of two accesses' rows forms (a[5]: it has one; a[6:10]:
    pitch, first byte, rows, bytes per row)."""
    if not a[5] or not b[5]:
        return True
    if a[6] == 0:
        return _rows_vs_run(b, a[7], a[7] + a[9])
    if b[6] == 0:
        return _rows_vs_run(a, b[7], b[7] + b[9])
    R = a[6]
    if b[6] != R or a[9] > R or b[9] > R:
        return True
    ra, ca = a[7] // R, a[7] % R
    rb, cb = b[7] // R, b[7] % R
    if ca + a[9] > R or cb + b[9] > R:
        return True
    return ra < rb + b[8] and rb < ra + a[8] and ca < cb + b[9] and cb < ca + a[9]

@helper
def _rows_vs_run(f, lo, hi):
    R, s, n, L = f[6], f[7], f[8], f[9]
    if R == 0:
        return s < hi and lo < s + L
    i_min = max(0, (lo - s - L) // R + 1)
    i_max = min(n - 1, -(-(hi - s) // R) - 1)
    return i_min <= i_max

@helper
def _grow(boxes, x, y, p_lo, p_hi, lo, hi):
    """deps._grow in place of boxes[x, y] (p_lo, p_hi, lo, hi)."""
    boxes[x, y, 0] = min(boxes[x, y, 0], p_lo)
    boxes[x, y, 1] = max(boxes[x, y, 1], p_hi)
    boxes[x, y, 2] = min(boxes[x, y, 2], lo)
    boxes[x, y, 3] = max(boxes[x, y, 3], hi)
