"""The timing scheduler's core compiled with numba, over the columns of columns.py.

    timeline = schedule_compiled(program, chip, issue)   # None: use the Python scheduler

Stage 2 of the compiled scheduler: `_core` replays `_Scheduler` (scheduler.py) on
arrays, operation for operation in the same float order, for programs without
cross-core synchronisation groups, collectives or fabric times (those need the
deferral of `_Scheduler._visit`: `schedule_compiled` returns None for them): engine
tracks, PE cells and LoadStationary hiding, the warm-up throttle (the `_BusyWindow`
decisions and the recorded ramps), DMA queues and DGE units, the DMA engines' and HBM
stacks' `_Lane` gap booking with HORIZON forgetting. The Events and the Timeline are
then built in Python (`_events`).
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
    from numba.typed import List
except ImportError:  # pragma: no cover - the Python scheduler runs instead
    njit = None

from .columns import DMA, FOLDED, KINDS, ROW, TENSOR, arrays, build_columns, supported, tracks
from .timeline import Event, Timeline, Wait

_new_wait = tuple.__new__
RAW, WAW, WAR, ORDER, QUEUE = range(5)
HORIZON = 2e6  # _Lane.HORIZON
NOISE = 1e-3  # _BusyWindow.NOISE
LANE_KEEP = 512  # _Lane forgets only beyond this many intervals


def available() -> bool:
    return njit is not None


def schedule_compiled(program, chip, issue):
    """The Timeline of `program` (see scheduler.schedule), or None where the compiled
    core does not model the program."""
    if njit is None:
        return None
    from .scheduler import _Scheduler
    sched = _Scheduler(program, chip, issue, {})
    if not supported(sched):
        return None
    col = build_columns(sched)
    out = run_core(sched, col)
    return build_timeline(sched, col, out)


def run_core(sched, col):
    """Stage 2: the timing core on `col`; its output arrays."""
    names, sem, lat, tdma = tracks(sched)
    cost = sched.cost
    c = cost.dma
    cfg = sched.throttle_cfg or (0.0, 0.0, 0.0, 0.0)
    consts = np.array([c.fixed, c.interval, *cfg], dtype=np.float64)
    ints = np.array([sched.ncells, c.engines, max(1, c.dge_instances),
                     len(col.tensor_cores), len(col.dma_cores), len(col.stacks),
                     1 if sched.throttle_cfg else 0], dtype=np.int64)
    return _core(*arrays(col), sem, lat, tdma, consts, ints)


def build_timeline(sched, col, out) -> Timeline:
    events, total = _events(sched, col, out)
    ts, te, tf = out[-3:]
    throttle = sorted(zip(ts.tolist(), te.tolist(), tf.tolist()))
    return Timeline(sched.chip, events, total, throttle,
                    "program" if isinstance(sched.order, range) else "compiler")


def _events(sched, col, out):
    """The Events (Python objects) from the core's arrays."""
    start, end, done, ready, frac, lsflag, wsel, wcnt = (x.tolist() for x in out[:8])
    names = tracks(sched)[0]
    instrs = sched.instrs
    moved = sched.moved
    terms, engines, trk, row = col.terms, col.dma_engines, col.track, col.row
    kind = [r[0] for r in col.table]
    ls = [r[ROW.index("ls")] for r in col.table]
    dptr, dprod, dkind, dspace = col.dptr, col.dprod, col.dkind, col.dspace
    spaces = list(col.spaces)
    events = [None] * col.n
    for k, i in enumerate(col.order.tolist()):
        j0 = dptr[k]
        waits = tuple([_new_wait(Wait, (dprod[j], KINDS[dkind[j]], spaces[dspace[j]]))
                       for j in wsel[j0:j0 + wcnt[k]]]) if wcnt[k] else ()
        r = row[i]
        t = terms[r]
        if kind[r] == TENSOR:
            if lsflag[i]:
                t = {**t, "load_stationary_ns": ls[r]}
            if frac[i] < 1.0:
                t = {**t, "throttle": frac[i]}
        events[i] = Event(i, instrs[i].core, names[trk[i]], start[i], end[i], ready[i],
                          waits, t, engines[r], done[i], moved.get(i, 0))
    return events, max(end, default=0.0)


if njit is not None:
    jit = njit(cache=True, nogil=True)

    # -- _Lane k: its intervals are S[k][h:t], E[k][h:t] with (h, t) = lim[k]; forgetting
    # moves h (amortised: the arrays are compacted when they fill), not the intervals
    @jit
    def _make_room(S, E, lim, k):
        """Room for one more interval at the tail of lane k."""
        h, t = lim[k, 0], lim[k, 1]
        st, en = S[k], E[k]
        if 2 * h >= st.size:  # compact in place
            for j in range(t - h):
                st[j] = st[h + j]
                en[j] = en[h + j]
        else:
            s2 = np.empty(2 * st.size)
            e2 = np.empty(2 * st.size)
            s2[:t - h] = st[h:t]
            e2[:t - h] = en[h:t]
            S[k], E[k] = s2, e2
        lim[k, 0], lim[k, 1] = 0, t - h

    @jit
    def _insert(S, E, lim, k, i, s, e):
        """Insert [s, e) at absolute position i of lane k."""
        if lim[k, 1] == S[k].size:
            h = lim[k, 0]
            _make_room(S, E, lim, k)
            i -= h
        st, en = S[k], E[k]
        for j in range(lim[k, 1], i, -1):
            st[j] = st[j - 1]
            en[j] = en[j - 1]
        st[i] = s
        en[i] = e
        lim[k, 1] += 1

    @jit
    def _delete(S, E, lim, k, i):
        st, en = S[k], E[k]
        for j in range(i, lim[k, 1] - 1):
            st[j] = st[j + 1]
            en[j] = en[j + 1]
        lim[k, 1] -= 1

    @jit
    def _forget(E, lim, k):
        """Drop the intervals more than HORIZON behind the latest booking."""
        h, t = lim[k, 0], lim[k, 1]
        en = E[k]
        if t - h > LANE_KEEP and en[h] <= en[t - 1] - HORIZON:
            lim[k, 0] = h + np.searchsorted(en[h:t], en[t - 1] - HORIZON, side="right")

    @jit
    def _book(S, E, lim, k, t, d):
        """_Lane.book on lane k."""
        h, n = lim[k, 0], lim[k, 1]
        st, en = S[k], E[k]
        if n == h or t >= en[n - 1]:  # after every booking
            e = t + d
            if n > h and en[n - 1] == t:
                en[n - 1] = e
            else:
                _insert(S, E, lim, k, n, t, e)
            _forget(E, lim, k)
            return e
        i = h + np.searchsorted(en[h:n], t, side="right")
        s = t
        while i < n and st[i] < s + d:
            if en[i] > s:
                s = en[i]
            i += 1
        e = s + d
        if i > h and en[i - 1] >= s:
            if i < n and st[i] <= e:
                en[i - 1] = en[i]
                _delete(S, E, lim, k, i)
            else:
                en[i - 1] = e
        elif i < n and st[i] <= e:
            st[i] = s
        else:
            _insert(S, E, lim, k, i, s, e)
        _forget(E, lim, k)
        return e

    @jit
    def _dma_book(S, E, lim, shared, dc, neng, mask, t, d):
        """_DmaState.book: lane dc*(neng+1) is the shared lane, the engines' follow."""
        base = dc * (neng + 1)
        if shared[dc]:
            if mask == (1 << neng) - 1:
                return _book(S, E, lim, base, t, d)
            for x in range(1, neng + 1):  # each engine gets a copy of the shared lane
                S[base + x] = S[base].copy()
                E[base + x] = E[base].copy()
                lim[base + x, 0], lim[base + x, 1] = lim[base, 0], lim[base, 1]
            shared[dc] = 0
        done = t
        for x in range(neng):
            if (mask >> x) & 1:
                y = _book(S, E, lim, base + 1 + x, t, d)
                if y > done:
                    done = y
        return done

    # -- Tensor Engine: _BusyWindow and the throttle --------------------------------
    @jit
    def _below(bs, be, head, tail, total, c, lo, t, threshold, last_end):
        """_BusyWindow.below for core c's window bs/be[c, head[c]:tail[c]]."""
        h = head[c]
        while h < tail[c] and be[c, h] <= lo:
            total[c] -= be[c, h] - bs[c, h]
            h += 1
        head[c] = h
        if last_end <= t:
            used = total[c]
            for j in range(h, tail[c]):
                s, e = bs[c, j], be[c, j]
                if s >= lo:
                    break
                used -= (e - s) - (e - lo if e > lo else 0.0)
            if used < threshold - NOISE:
                return True
            if used > threshold + NOISE:
                return False
        used = 0.0
        for j in range(h, tail[c]):
            s, e = bs[c, j], be[c, j]
            used += min(e, t) - max(s, lo) if e > lo else 0.0
        return used < threshold

    @jit
    def _start_ramp(tr_s, tr_e, tr_f, tr_n, ramp_at, c, t, f0, ramp):
        n = tr_n[c]
        if n and tr_e[c, n - 1] > t:  # cut a ramp still recorded ahead
            while n and tr_s[c, n - 1] >= t:
                n -= 1
            if n:
                tr_e[c, n - 1] = t
        ramp_at[c] = t
        step = ramp / 6
        for k in range(6):
            tr_s[c, n] = t + k * step
            tr_e[c, n] = t + (k + 1) * step
            tr_f[c, n] = f0 + (1.0 - f0) * (k + 0.5) / 6
            n += 1
        tr_n[c] = n

    @jit
    def _ready(k, tr, is_dma, sem, dptr, dprod, dkind, track, visited, end, done,
               wsel, wt):
        """_Scheduler._ready: the ready time; the waits' dependency positions go to
        wsel[dptr[k]:], latest first (stable); returns (ready, count)."""
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
            # stable insertion, latest first
            x = nw
            while x > 0 and wt[x - 1] < t:
                wt[x] = wt[x - 1]
                wsel[j0 + x] = wsel[j0 + x - 1]
                x -= 1
            wt[x] = t
            wsel[j0 + x] = j
            nw += 1
        return ready, nw

    @jit
    def _core(order, dptr, dprod, dkind, track, row, kind, tcore, dcore, stack, cells,
              dmask, swtrk, hashbm, dur, mm, ls, dge_ns, data_ns, hbm_ns, sem, lat, tdma,
              consts, ints):
        """The timeline of the columns (instruction i's row: row[i]; ROW order)."""
        n = track.size
        fixed, interval, f0, ramp, window, floor = consts[0], consts[1], consts[2], \
            consts[3], consts[4], consts[5]
        ncells, neng, ndge, ntc, ndc, nst, throttled = ints[0], ints[1], ints[2], \
            ints[3], ints[4], ints[5], ints[6]
        allcells = (1 << ncells) - 1
        start = np.zeros(n)
        end = np.zeros(n)
        done = np.zeros(n)
        ready_at = np.zeros(n)
        frac_out = np.ones(n)
        lsflag = np.zeros(n, np.int64)
        visited = np.zeros(n, np.uint8)
        wsel = np.zeros(dprod.size, np.int64)
        wcnt = np.zeros(n, np.int64)
        maxdeg = 1
        for k in range(n):
            maxdeg = max(maxdeg, dptr[k + 1] - dptr[k])
        wt = np.empty(maxdeg)
        free = np.zeros(sem.size)
        # Tensor Engine state per core
        ntensor = 1
        for i in range(n):
            if kind[row[i]] == TENSOR:
                ntensor += 1
        tcells = np.zeros((max(ntc, 1), ncells))
        last_start = np.zeros(max(ntc, 1))
        last_end = np.zeros(max(ntc, 1))
        has_end = np.zeros(max(ntc, 1), np.uint8)
        ramp_at = np.zeros(max(ntc, 1))
        has_ramp = np.zeros(max(ntc, 1), np.uint8)
        bs = np.empty((max(ntc, 1), ntensor))
        be = np.empty((max(ntc, 1), ntensor))
        head = np.zeros(max(ntc, 1), np.int64)
        tail = np.zeros(max(ntc, 1), np.int64)
        total = np.zeros(max(ntc, 1))
        tr_s = np.empty((max(ntc, 1), 6 * ntensor + 6))
        tr_e = np.empty((max(ntc, 1), 6 * ntensor + 6))
        tr_f = np.empty((max(ntc, 1), 6 * ntensor + 6))
        tr_n = np.zeros(max(ntc, 1), np.int64)
        # DMA: per core neng + 1 lanes and the DGE units; then one lane per HBM stack
        S = List()
        E = List()
        nlanes = ndc * (neng + 1) + nst
        for _ in range(nlanes):
            S.append(np.empty(16))
            E.append(np.empty(16))
        lim = np.zeros((nlanes, 2), np.int64)
        shared = np.ones(max(ndc, 1), np.uint8)
        dge = np.zeros((max(ndc, 1), ndge))
        for k in range(n):
            i = order[k]
            tr = track[i]
            ro = row[i]
            r, nw = _ready(k, tr, tdma[tr] != 0, sem[tr], dptr, dprod, dkind, track,
                           visited, end, done, wsel, wt)
            wcnt[k] = nw
            ki = kind[ro]
            if ki == DMA:
                issue = r if r > free[tr] else free[tr]
                t = issue
                g = dge_ns[ro]
                if g:
                    if swtrk[ro] >= 0:
                        s = max(t, free[swtrk[ro]])
                        free[swtrk[ro]] = s + g
                    else:
                        dc = dcore[ro]
                        u = 0
                        for x in range(1, ndge):
                            if dge[dc, x] < dge[dc, u]:
                                u = x
                        s = max(t, dge[dc, u])
                        dge[dc, u] = s + g
                    t = s + g
                data_ready = t + fixed
                dn = data_ns[ro]
                fin = data_ready
                if dn > 0:
                    fin = _dma_book(S, E, lim, shared, dcore[ro], neng, dmask[ro],
                                    data_ready, dn)
                if hashbm[ro]:
                    sf = _book(S, E, lim, ndc * (neng + 1) + stack[ro], data_ready,
                               hbm_ns[ro])
                    if sf > fin:
                        fin = sf
                free[tr] = issue + max(interval, dn)
                start[i], end[i], done[i] = issue, fin, fin
            elif ki == TENSOR:
                c = tcore[ro]
                m = cells[ro]
                busy = -np.inf
                for x in range(ncells):
                    if (m >> x) & 1 and tcells[c, x] > busy:
                        busy = tcells[c, x]
                s = max(r, last_start[c], busy)
                idle = (not has_end[c]) or s > last_end[c] + 1e-9
                occ = mm[ro] + (ls[ro] if idle else 0.0)
                if idle and ls[ro]:
                    lsflag[i] = 1
                f = 1.0
                if throttled:
                    if not has_ramp[c]:
                        has_ramp[c] = 1
                        _start_ramp(tr_s, tr_e, tr_f, tr_n, ramp_at, c, s, f0, ramp)
                    elif s - ramp_at[c] >= ramp and _below(
                            bs, be, head, tail, total, c, s - window, s, floor * window,
                            last_end[c]):
                        _start_ramp(tr_s, tr_e, tr_f, tr_n, ramp_at, c, s, f0, ramp)
                    x0 = s - ramp_at[c]
                    if x0 < ramp:
                        f1 = f0 + (1.0 - f0) * x0 / ramp
                        d = occ / f1
                        xm = min(ramp, x0 + d / 2)
                        f = f0 + (1.0 - f0) * xm / ramp
                frac_out[i] = f
                e = s + occ / f
                for x in range(ncells):
                    if (m >> x) & 1:
                        tcells[c, x] = e
                last_start[c] = s
                if not has_end[c] or e > last_end[c]:
                    last_end[c] = e
                    has_end[c] = 1
                bs[c, tail[c]] = s
                be[c, tail[c]] = e
                tail[c] += 1
                total[c] += e - s
                start[i], end[i], done[i] = s, e, e + lat[tr]
            elif ki == FOLDED:
                s = max(r, free[tr])
                start[i], end[i], done[i] = s, s, s
            else:
                s = r if r > free[tr] else free[tr]
                e = s + dur[ro]
                free[tr] = e
                start[i], end[i], done[i] = s, e, e + lat[tr]
            ready_at[i] = r
            visited[i] = 1
        nt = 0
        for c in range(ntc):
            nt += tr_n[c]
        ts = np.empty(nt)
        te = np.empty(nt)
        tf = np.empty(nt)
        x = 0
        for c in range(ntc):
            for j in range(tr_n[c]):
                ts[x], te[x], tf[x] = tr_s[c, j], tr_e[c, j], tr_f[c, j]
                x += 1
        return start, end, done, ready_at, frac_out, lsflag, wsel, wcnt, ts, te, tf
