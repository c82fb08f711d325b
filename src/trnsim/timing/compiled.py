"""The timing scheduler's core compiled with numba, over the columns of columns.py.

    timeline = schedule_compiled(program, chip, issue)   # None: use the Python scheduler

`_core` replays `_Scheduler` (scheduler.py) on
arrays, operation for operation in the same float order, for programs without
cross-core synchronisation groups, collectives or fabric times (those need the
deferral of `_Scheduler._visit`: `schedule_compiled` returns None for them): engine
tracks, PE cells and LoadStationary hiding, the warm-up throttle (the `_BusyWindow`
decisions and the recorded ramps), DMA queues and DGE units, the DMA engines' and HBM
stacks' `_Lane` gap booking with HORIZON forgetting. The Timeline keeps the core's
arrays as EventColumns (timeline.py): its Events are made only when read.
"""
from __future__ import annotations

import numpy as np

from ..machine.compiled import inline, jit, no_refcount

from .columns import (DMA, FOLDED, KINDS, QUEUE, RAW, ROW, TENSOR, WAR, arrays, build_columns,
                      supported, tracks)
from .timeline import EventColumns, Moved, Timeline

# scheduler.py's constants, written again: numba's disk cache would not see a change
# made there (tests/test_timing_compiled.py checks they are equal)
HORIZON = 2e6  # _Lane.HORIZON
NOISE = 1e-3  # _BusyWindow.NOISE
LANE_KEEP = 512  # _Lane.KEEP
# _core's helpers are inlined into its pass over the instructions (machine/compiled.py
# `inline`): that halved the core's time for a second or two of numba's first compile.
# The pass allocates no array and is compiled without numba's reference counting
# (_core holds the arrays, as timing/compiled_deps.py _collect): its atomic increments
# and decrements were a third of the core's time (0.13-0.18 -> 0.07-0.12 us an
# instruction on the speed cases).
ST_LAST_START, ST_LAST_END, ST_HAS_END, ST_RAMP, ST_HAS_RAMP, ST_TOTAL, ST_FIELDS = range(7)



def schedule_compiled(program, chip, issue):
    """The Timeline of `program` (see scheduler.schedule), or None where the compiled
    core does not model the program."""
    from .scheduler import _Scheduler
    sched = _Scheduler(program, chip, issue, {})
    if not supported(sched):
        return None
    try:
        col = build_columns(sched)
    except OverflowError:  # addresses beyond the compiled maps' byte axis
        return None
    names, sem, lat, tdma = tracks(sched)
    out = run_core(sched, col, sem, lat, tdma)
    return build_timeline(sched, col, out, names)


def run_core(sched, col, sem, lat, tdma):
    """The timing core on `col` and the tracks' semaphore and latency ns and DMA flags
    (columns.tracks); its output arrays."""
    c = sched.cost.dma
    cfg = sched.throttle_cfg or (0.0, 0.0, 0.0, 0.0)
    consts = np.array([c.fixed, c.interval, *cfg, 1.0 if sched.throttle_cfg else 0.0])
    ints = np.array([sched.ncells, c.engines, max(1, c.dge_instances),
                     len(col.tensor_cores), len(col.dma_cores), len(col.stacks)],
                    dtype=np.int64)
    return _core(*arrays(col), sem, lat, tdma, consts, ints)


def build_timeline(sched, col, out, names) -> Timeline:
    """The Timeline of the core's output `out` (track names: `names`), its events kept
    as columns (made into Events only when read)."""
    start, end, done, ready, frac, lsflag, wsel, wcount = out[:8]
    n = col.n
    order = col.order
    # (int32, as the edge positions: fewer fresh pages to fault in)
    wfirst = np.empty(n, np.int32)
    wfirst[order] = np.asarray(col.dptr, np.int64)[:-1]
    moved = np.zeros(n, np.int32)
    if sched.moved:
        at, by = Moved.columns(sched.moved)
        moved[at] = by
    lsi = ROW.index("ls")
    cols = EventColumns(
        n=n, core=sched.core_of,
        track=np.asarray(col.track, np.int64), names=names, start=start,
        end=end, ready=ready, done=done, moved=moved, row=np.asarray(col.row, np.int64),
        terms=col.terms, engines=col.dma_engines, folded=col.folded, wfirst=wfirst,
        wcount=wcount, wsel=wsel,
        dprod=col.dprod, dkind=col.dkind, dspace=col.dspace, kinds=KINDS,
        spaces=list(col.spaces), ls_shown=lsflag.view(np.bool_),
        ls_ns=[r[lsi] for r in col.table], throttle=frac)
    total = float(end.max()) if n else 0.0
    throttle = sorted(map(tuple, out[-1].tolist()))
    return Timeline.of_columns(sched.chip, cols, total, throttle,
                               "program" if isinstance(sched.order, range) else "compiler")


# -- _Lane k: its intervals are L[k, h:t] (start, end) with (h, t) = lim[k];
# forgetting moves h. The row after the lanes' holds in column 1 a bound of their
# tails (_insert raises it, _roomier sets it): the pass (_pass) stops before a DMA
# transfer while it is a full lane's (testing every lane there was a quarter of the
# core's time on the matmul tutorial); _core then compacts full lanes or grows every
# lane (_roomier) and resumes.
@jit
def _roomier(L, lim):
    """L with room for one more interval at the tail of every lane: full lanes
    compacted in place where half their room is forgotten, else every lane's room
    doubled (a copy); the bound of the tails (lim's last row) set to their most."""
    grow = False
    top = 0
    for k in range(L.shape[0]):
        h, t = lim[k, 0], lim[k, 1]
        if t == L.shape[1]:
            if 2 * h >= L.shape[1]:  # compact in place
                for j in range(t - h):
                    L[k, j] = L[k, h + j]
                t -= h
                lim[k, 0], lim[k, 1] = 0, t
            else:
                grow = True
        top = max(top, t)
    lim[L.shape[0], 1] = top
    if not grow:
        return L
    grown = np.empty((L.shape[0], 2 * L.shape[1], 2))
    grown[:, :L.shape[1]] = L
    return grown

@inline
def _insert(L, lim, k, i, s, e):
    """Insert [s, e) at position i of lane k (which has room: _pass stops before an
    instruction while a lane is full)."""
    for j in range(lim[k, 1], i, -1):
        L[k, j, 0], L[k, j, 1] = L[k, j - 1, 0], L[k, j - 1, 1]
    L[k, i, 0] = s
    L[k, i, 1] = e
    lim[k, 1] += 1
    if lim[k, 1] > lim[L.shape[0], 1]:  # (the bound of the tails)
        lim[L.shape[0], 1] = lim[k, 1]

@inline
def _delete(L, lim, k, i):
    for j in range(i, lim[k, 1] - 1):
        L[k, j, 0], L[k, j, 1] = L[k, j + 1, 0], L[k, j + 1, 1]
    lim[k, 1] -= 1

@inline
def _forget(L, lim, k):
    """Drop the intervals more than HORIZON behind the latest booking."""
    h, t = lim[k, 0], lim[k, 1]
    last = L[k, t - 1, 1]
    if t - h > LANE_KEEP and L[k, h, 1] <= last - HORIZON:
        lim[k, 0] = h + np.searchsorted(L[k, h:t, 1], last - HORIZON, side="right")

@inline
def _book(L, lim, k, t, d):
    """_Lane.book on lane k: the end."""
    h, n = lim[k, 0], lim[k, 1]
    if n == h or t >= L[k, n - 1, 1]:  # after every booking
        e = t + d
        if n > h and L[k, n - 1, 1] == t:
            L[k, n - 1, 1] = e
        else:
            _insert(L, lim, k, n, t, e)
        _forget(L, lim, k)
        return e
    i = h + np.searchsorted(L[k, h:n, 1], t, side="right")
    s = t
    while i < n and L[k, i, 0] < s + d:
        if L[k, i, 1] > s:
            s = L[k, i, 1]
        i += 1
    e = s + d
    if i > h and L[k, i - 1, 1] >= s:
        if i < n and L[k, i, 0] <= e:
            L[k, i - 1, 1] = L[k, i, 1]
            _delete(L, lim, k, i)
        else:
            L[k, i - 1, 1] = e
    elif i < n and L[k, i, 0] <= e:
        L[k, i, 0] = s
    else:
        _insert(L, lim, k, i, s, e)
    _forget(L, lim, k)
    return e

@inline
def _dma_book(L, lim, shared, dc, neng, mask, t, d):
    """_DmaState.book: lane dc*(neng+1) is the shared lane, the engines' follow;
    the latest end."""
    base = dc * (neng + 1)
    if shared[dc]:
        if mask == (1 << neng) - 1:
            return _book(L, lim, base, t, d)
        for x in range(1, neng + 1):  # each engine gets a copy of the shared lane
            for j in range(lim[base, 1]):  # (element by element: no temporary)
                L[base + x, j, 0], L[base + x, j, 1] = L[base, j, 0], L[base, j, 1]
            lim[base + x, 0], lim[base + x, 1] = lim[base, 0], lim[base, 1]
        shared[dc] = 0
    done = t
    for x in range(neng):
        if (mask >> x) & 1:
            y = _book(L, lim, base + 1 + x, t, d)
            if y > done:
                done = y
    return done

# -- Tensor Engine (per core c): st[c] its scalars (ST_*), cellt[c] when each PE
# cell is free, its _BusyWindow spans[c, head:tail] (head, tail = wn[c]) and its
# recorded throttle ramps thr[c, :thn[c]] (start, end, fraction)
@inline
def _below(spans, wn, st, c, lo, t, threshold, last_end):
    """_BusyWindow.below."""
    h = wn[c, 0]
    while h < wn[c, 1] and spans[c, h, 1] <= lo:
        st[c, ST_TOTAL] -= spans[c, h, 1] - spans[c, h, 0]
        h += 1
    wn[c, 0] = h
    if last_end <= t:
        used = st[c, ST_TOTAL]
        for j in range(h, wn[c, 1]):
            s, e = spans[c, j, 0], spans[c, j, 1]
            if s >= lo:
                break
            used -= (e - s) - (e - lo if e > lo else 0.0)
        if used < threshold - NOISE:
            return True
        if used > threshold + NOISE:
            return False
    used = 0.0
    for j in range(h, wn[c, 1]):
        s, e = spans[c, j, 0], spans[c, j, 1]
        used += min(e, t) - max(s, lo) if e > lo else 0.0
    return used < threshold

@inline
def _start_ramp(thr, thn, st, c, t, f0, ramp):
    """_Scheduler._start_ramp."""
    n = thn[c]
    if n and thr[c, n - 1, 1] > t:  # cut a ramp still recorded ahead
        while n and thr[c, n - 1, 0] >= t:
            n -= 1
        if n:
            thr[c, n - 1, 1] = t
    st[c, ST_RAMP] = t
    st[c, ST_HAS_RAMP] = 1.0
    step = ramp / 6
    for k in range(6):
        thr[c, n, 0] = t + k * step
        thr[c, n, 1] = t + (k + 1) * step
        thr[c, n, 2] = f0 + (1.0 - f0) * (k + 0.5) / 6
        n += 1
    thn[c] = n

@inline
def _throttle(spans, wn, thr, thn, st, c, t, occ, cfg):
    """_Scheduler._throttle: the fraction of peak for an instruction at t."""
    f0, ramp, window, floor = cfg[0], cfg[1], cfg[2], cfg[3]
    if not st[c, ST_HAS_RAMP]:
        _start_ramp(thr, thn, st, c, t, f0, ramp)
    elif t - st[c, ST_RAMP] >= ramp and _below(spans, wn, st, c, t - window, t,
                                               floor * window, st[c, ST_LAST_END]):
        _start_ramp(thr, thn, st, c, t, f0, ramp)
    x = t - st[c, ST_RAMP]
    if x >= ramp:
        return 1.0
    f = f0 + (1.0 - f0) * x / ramp
    d = occ / f
    xm = min(ramp, x + d / 2)
    return f0 + (1.0 - f0) * xm / ramp

@inline
def _tensor(st, cellt, spans, wn, thr, thn, c, mask, ready, mm, ls, cfg):
    """_Scheduler._tensor: (start, end, fraction of peak, LoadStationary shown)."""
    busy = -np.inf
    for x in range(cellt.shape[1]):
        if (mask >> x) & 1 and cellt[c, x] > busy:
            busy = cellt[c, x]
    s = max(ready, st[c, ST_LAST_START], busy)
    idle = (not st[c, ST_HAS_END]) or s > st[c, ST_LAST_END] + 1e-9
    occ = mm + (ls if idle else 0.0)
    f = _throttle(spans, wn, thr, thn, st, c, s, occ, cfg) if cfg[4] else 1.0
    e = s + occ / f
    for x in range(cellt.shape[1]):
        if (mask >> x) & 1:
            cellt[c, x] = e
    st[c, ST_LAST_START] = s
    if not st[c, ST_HAS_END] or e > st[c, ST_LAST_END]:
        st[c, ST_LAST_END] = e
        st[c, ST_HAS_END] = 1.0
    spans[c, wn[c, 1], 0] = s
    spans[c, wn[c, 1], 1] = e
    wn[c, 1] += 1
    st[c, ST_TOTAL] += e - s
    return s, e, f, idle and ls != 0.0

# -- DMA ------------------------------------------------------------------------
@inline
def _dma(L, lim, shared, dge, free, tr, swtrk, dc, stack_lane, mask, ready,
         dge_ns, dn, hbm_ns, neng, fixed, interval):
    """_Scheduler._dma: (issue, done); stack_lane < 0: no HBM traffic."""
    issue = ready if ready > free[tr] else free[tr]
    t = issue
    if dge_ns:
        if swtrk >= 0:  # descriptors written by GpSimd software
            s = max(t, free[swtrk])
            free[swtrk] = s + dge_ns
        else:  # the first free hardware DGE unit
            u = 0
            for x in range(1, dge.shape[1]):
                if dge[dc, x] < dge[dc, u]:
                    u = x
            s = max(t, dge[dc, u])
            dge[dc, u] = s + dge_ns
        t = s + dge_ns
    data_ready = t + fixed
    fin = data_ready
    if dn > 0:
        fin = _dma_book(L, lim, shared, dc, neng, mask, data_ready, dn)
    if stack_lane >= 0:
        sf = _book(L, lim, stack_lane, data_ready, hbm_ns)
        if sf > fin:
            fin = sf
    free[tr] = issue + max(interval, dn)
    return issue, fin

# -- dependencies ---------------------------------------------------------------
@inline
def _ready(k, tr, is_dma, sem, dptr, dprod, dkind, track, visited, end, done,
           wsel, wt, bt, bj):
    """_Scheduler._ready: the ready time; the waits' dependency positions go to
    wsel[dptr[k]:], latest first (a stable sort, as Python's); returns (ready,
    count)."""
    ready = 0.0
    j0 = dptr[k]
    nw = 0
    for j in range(j0, dptr[k + 1]):
        kd = dkind[j]
        if kd == QUEUE:
            continue
        p = dprod[j]
        if visited[p] and track[p] == tr:
            if not is_dma and kd != RAW:
                continue
            t = end[p] if kd == WAR else done[p]
        else:
            t = (end[p] if kd == WAR else done[p]) + sem
        if t > ready:
            ready = t
        wt[nw] = t
        wsel[j0 + nw] = j
        nw += 1
    _sort_waits(wt, wsel, j0, nw, bt, bj)
    return ready, nw

@inline
def _sort_waits(wt, wsel, j0, nw, bt, bj):
    """Sort wsel[j0:j0 + nw] by wt[:nw], latest first, stably: insertion sort on
    runs of 16, then bottom-up merges (no quadratic case; bt, bj: scratch as large
    as wt)."""
    for a0 in range(0, nw, 16):
        for a in range(a0 + 1, min(a0 + 16, nw)):
            t, j = wt[a], wsel[j0 + a]
            x = a
            while x > a0 and wt[x - 1] < t:
                wt[x] = wt[x - 1]
                wsel[j0 + x] = wsel[j0 + x - 1]
                x -= 1
            wt[x] = t
            wsel[j0 + x] = j
    width = 16
    if nw <= width:
        return
    while width < nw:
        for lo in range(0, nw, 2 * width):
            mid, hi = min(lo + width, nw), min(lo + 2 * width, nw)
            a, b = lo, mid
            for x in range(lo, hi):  # the left run wins ties: stable
                if b >= hi or (a < mid and wt[a] >= wt[b]):
                    bt[x], bj[x] = wt[a], wsel[j0 + a]
                    a += 1
                else:
                    bt[x], bj[x] = wt[b], wsel[j0 + b]
                    b += 1
        for x in range(nw):
            wt[x] = bt[x]
            wsel[j0 + x] = bj[x]
        width *= 2

# -- the pass over the instructions ------------------------------------------------
@inline
def _full(L, lim):
    """Whether some lane may have no room for one more interval."""
    return lim[L.shape[0], 1] == L.shape[1]


@no_refcount
def _pass(k0, order, dptr, dprod, dkind, track, row, kind, tcore, dcore, stack, cells,
          dmask, swtrk, hashbm, dur, mm, ls, dge_ns, data_ns, hbm_ns, sem, lat, tdma,
          fixed, interval, cfg, ncells, neng, ndc, start, end, done, ready_at, frac,
          lsflag, visited, wsel, wcnt, wt, bt, bj, free, st, cellt, spans, wn, thr, thn,
          L, lim, shared, dge):
    """_core's pass over the instructions from position k0, until the end or a DMA
    transfer while a lane is full (a DMA adds at most one interval to a lane); the
    position it stopped at."""
    n = track.size
    for k in range(k0, n):
        i = order[k]
        tr = track[i]
        ro = row[i]
        ki = kind[ro]
        if ki == DMA and _full(L, lim):
            return k
        r, nw = _ready(k, tr, tdma[tr] != 0, sem[tr], dptr, dprod, dkind, track,
                       visited, end, done, wsel, wt, bt, bj)
        wcnt[i] = nw
        if ki == DMA:
            lane = ndc * (neng + 1) + stack[ro] if hashbm[ro] else -1
            s, e = _dma(L, lim, shared, dge, free, tr, swtrk[ro], dcore[ro], lane,
                        dmask[ro], r, dge_ns[ro], data_ns[ro], hbm_ns[ro], neng, fixed,
                        interval)
            d = e
        elif ki == TENSOR:
            s, e, f, shown = _tensor(st, cellt, spans, wn, thr, thn, tcore[ro],
                                     cells[ro], r, mm[ro], ls[ro], cfg)
            frac[i] = f
            lsflag[i] = shown
            d = e + lat[tr]
        elif ki == FOLDED:  # no engine time
            s = max(r, free[tr])
            e = d = s
        else:
            s = r if r > free[tr] else free[tr]
            e = s + dur[ro]
            free[tr] = e
            d = e + lat[tr]
        start[i], end[i], done[i], ready_at[i] = s, e, d, r
        visited[i] = 1
    return n


@jit
def _core(order, dptr, dprod, dkind, track, row, kind, tcore, dcore, stack, cells,
          dmask, swtrk, hashbm, dur, mm, ls, dge_ns, data_ns, hbm_ns, sem, lat, tdma,
          consts, ints):
    """The timeline of the columns (instruction i's row: row[i]; ROW order)."""
    n = track.size
    fixed, interval, cfg = consts[0], consts[1], consts[2:]
    ncells, neng, ndge, ntc, ndc, nst = ints[0], ints[1], ints[2], ints[3], \
        ints[4], ints[5]
    start, end, done, ready_at = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    frac = np.ones(n)
    lsflag = np.zeros(n, np.uint8)  # (read as bools)
    visited = np.zeros(n, np.uint8)
    wsel = np.zeros(dprod.size, np.int32)  # (edge positions: collect's are int32)
    wcnt = np.zeros(n, np.int32)  # (by instruction index: the timeline's column)
    deg = 1
    for k in range(n):
        deg = max(deg, dptr[k + 1] - dptr[k])
    wt = np.empty(deg)
    free = np.zeros(sem.size)
    # Tensor Engine state per core (sized for every tensor instruction on each)
    nt = 1
    for i in range(n):
        if kind[row[i]] == TENSOR:
            nt += 1
    ntc1 = max(ntc, 1)
    st = np.zeros((ntc1, ST_FIELDS))
    cellt = np.zeros((ntc1, ncells))
    spans = np.empty((ntc1, nt, 2))
    wn = np.zeros((ntc1, 2), np.int64)
    thr = np.empty((ntc1, 6 * nt + 6, 3))
    thn = np.zeros(ntc1, np.int64)
    # DMA: per core neng + 1 lanes (shared, engines) and the DGE units; a lane per
    # HBM stack after them
    nlanes = ndc * (neng + 1) + nst
    L = np.empty((nlanes, 64, 2))
    lim = np.zeros((nlanes + 1, 2), np.int64)  # (and the bound of the tails)
    shared = np.ones(max(ndc, 1), np.uint8)
    dge = np.zeros((max(ndc, 1), ndge))
    bt, bj = np.empty(deg), np.empty(deg, wsel.dtype)
    k = 0
    while True:
        k = _pass(k, order, dptr, dprod, dkind, track, row, kind, tcore, dcore, stack,
                  cells, dmask, swtrk, hashbm, dur, mm, ls, dge_ns, data_ns, hbm_ns, sem,
                  lat, tdma, fixed, interval, cfg, ncells, neng, ndc, start, end, done,
                  ready_at, frac, lsflag, visited, wsel, wcnt, wt, bt, bj, free, st,
                  cellt, spans, wn, thr, thn, L, lim, shared, dge)
        if k == n:
            break
        L = _roomier(L, lim)
    return (start, end, done, ready_at, frac, lsflag, wsel, wcnt,
            _ramps(thr, thn, ntc))

@jit
def _ramps(thr, thn, ntc):
    """The cores' recorded ramps, one after another."""
    out = np.empty((thn[:ntc].sum(), 3))
    x = 0
    for c in range(ntc):
        out[x:x + thn[c]] = thr[c, :thn[c]]
        x += thn[c]
    return out
