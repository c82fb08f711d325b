"""The compiler model's list scheduler (schedule.py `_ListScheduler.run`) compiled with
numba, over arrays.

    io = issue_order(ls)   # an IssueOrder, or None: run the Python list scheduler

`_core` replays `run` operation for operation: the streams' `waiting` / `now` heaps
with heapq's own sift algorithm and tuple order (float first, then the ints); for the
lazily validated top heap, whose first current entry is the least of the streams' bests
(start, index, stream), a tournament tree over the streams; windows with `later`
released in arrival order, fence segments, engine assignment with the candidates'
estimates worked out here in Python (in `_assign`'s candidate order, `shared_port`
applied), the DMA queues' estimate and every float sum in the same order.
`issue_order` then applies the assignments to the record (`ins.engine`) and to `ls`
(its streams, `ls.est`) as `_assign` does.

Falls back (returns None) for a program with a non-finite estimate, DMA time or stream
constant (a NaN would order heap tuples by identity in Python), or a floating
instruction that could go to a DMA stream or has no candidate.
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from ..machine.compiled import inline, jit, no_refcount
from ..timing.costs import dma_cost_identities, dma_costs
from ..timing.compiled_deps import numbered_rows
from ..timing.scheduler import identities
from ..timing.timeline import Moved

_RAW, _WAR = 0, 2  # schedule.py's edge kinds (_RAW, _WAW, _WAR, _ORDER)
# per-instruction int columns (X_PRICE: a DMA's row of the price table, whose columns
# are P_DGE, P_DATA, P_NENG; X_NPRED: -1 once issued; floating: X_CAND0 < X_CAND1,
# its candidate rows); the floats are arrays of their own: `ready`, `prio` (of
# critical_path only) and `est` (the list scheduler's): the fewer columns, the fewer
# fresh pages their first touch faults in
X_STREAM, X_POS, X_NPRED, X_PRICE, X_SEG, X_ARRIVAL, X_NEXT, X_CAND0, X_CAND1, \
    X_COLS = range(10)
P_DGE, P_DATA, P_NENG = range(3)  # a DMA's DGE time, data time and number of engines
# per-stream float and int columns
S_FREE, S_QUEUED, S_QNEXT, S_BEST, S_SEM, S_LAT, S_FCOLS = range(7)
T_HEAD, T_NIDS, T_IDBASE, T_LIMIT, T_DMA, T_BEST, T_HAS_BEST, T_WSIZE, T_NSIZE, \
    T_LATER, T_HBASE, T_CORE, T_COLS = range(13)



def issue_order(ls):
    """The IssueOrder `ls.run()` would return (applying its engine assignments to the
    record), or None where `_core` does not model the program."""
    from .schedule import _LONG, Indices, IssueOrder
    args = _arrays(ls)
    if args is None:
        return None
    ix, streams = args[0], args[-1]
    was = ix[:, X_STREAM].copy()  # a floating instruction's default engine's stream
    order, end, moved_i, moved_d, nmoved = _core(*args[:-1])
    del args  # (the heaps and the other inputs: not on top of the order's list below)
    # an assigned instruction moved where its stream is another (of its core): another
    # engine (its estimate there: set in ls.est by _core; one assigned its default
    # engine keeps its own: `_arrays` made that candidate's of it)
    moved_to = np.flatnonzero(ix[:, X_STREAM] != was)
    instrs = ls.instrs
    engines = [streams[k][1] for k in ix[moved_to, X_STREAM].tolist()]
    for i, e in zip(moved_to.tolist(), engines):
        instrs[i].engine = e
    ls.reassigned = (moved_to, engines)
    # (ls.res, made only where read, follows the streams)
    ls.stream_res, ls.stream_no = streams, ix[:, X_STREAM].astype(np.int64)
    vars(ls).pop("res", None)
    moved = Moved(moved_i[:nmoved].copy(), moved_d[:nmoved].copy())
    del ix, was
    # (the order's bytes as they are, copied once: no int object per instruction)
    issued = Indices()
    issued.frombytes(memoryview(order.astype(_LONG, copy=False)).cast("B"))
    return IssueOrder(issued, ls.heuristic, ls.window, float(end), moved)


def _arrays(ls):
    """The arguments of `_core` (and the streams' resources, last), or None."""
    instrs = ls.instrs
    n = len(instrs)
    cost = ls.cost
    flt = np.frombuffer(ls.floating, np.uint8).astype(bool)
    # streams: the distinct resources in order of first use, then the floating
    # instructions' other candidate engines (run() numbers them interleaved: a stream's
    # number only breaks ties between top-heap entries of one instruction, which share
    # their stream)
    stream = ls.stream_no
    numbered = list(ls.stream_res)
    by_key = {r: k for k, r in enumerate(numbered)}
    if len(by_key) != len(numbered):  # ls.res not canonical: a stream numbered twice
        return None
    # the candidates (stream, estimate) of each floating instruction, once per group:
    # equal core, default engine and candidate engines (by value: traced instructions
    # each have their own tuple) and equal cost model result on the default engine
    # (ls.signed: their ids, of results the program's priced(...).compute keeps alive:
    # none reused) give equal candidates where every other candidate is a compute
    # engine (costed by signature); an instruction with any other candidate, or
    # without a result, is a group of its own
    at = np.flatnonzero(flt)
    sig = ls.signed[at]
    kinds: dict = {}  # candidate engines (a tuple) -> their number
    dicts, candidates = numbered_rows(ls.attrs_ids[at].reshape(len(at), 1))
    candidates = np.fromiter([kinds.setdefault(tuple(a["engines"]), len(kinds))
                              for a in ls.attrs[at[dicts]].tolist()], np.int64,
                             len(dicts))[candidates]  # (each attrs dict read once)
    heads, which = numbered_rows(np.column_stack((ls.cores[at], ls.engine_ids[at],
                                                  candidates, sig)))
    del dicts, candidates
    at = at.tolist()
    plans: dict = {}  # (core, default engine, candidates) -> [(engine, stream)]
    g_streams, g_ests = [], []  # per group: its candidates' streams and estimates
    group = np.empty(len(heads), np.int64)  # each shared group's number
    own: dict = {}  # position in `at` -> the number of its own group
    members = None  # per group: its positions in `at`
    est, cost_of, eng = ls.est, ls._cost_of, cost.eng
    for h, f in enumerate(heads.tolist()):
        ins = instrs[at[f]]
        engines = ins.attrs["engines"]
        key = (ins.core, ins.engine, engines if type(engines) is tuple else tuple(engines))
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = _plan(ls, key, by_key, numbered)
            if not plan:
                return None
        shared = sig[f] != id(None) and all(e in eng for e, _ in plan)
        if not shared and members is None:
            members = np.split(np.argsort(which, kind="stable"),
                               np.cumsum(np.bincount(which, minlength=len(heads)))[:-1])
        for m in [f] if shared else members[h].tolist():
            i = at[m]
            ins = instrs[i]
            default = ins.engine
            ks, cs = [], []
            for e, k in plan:
                if e == default:
                    c = est[i]  # (made by _cost_of with this engine in __init__)
                else:
                    ins.engine = e
                    try:
                        c = cost_of(ins)
                    finally:
                        ins.engine = default
                ks.append(k)
                cs.append(c)
            if shared:
                group[h] = len(g_streams)
            else:
                own[m] = len(g_streams)
            g_streams.append(ks)
            g_ests.append(cs)
    cand_g = group[which]
    cand_g[list(own)] = list(own.values())
    cand_i = at
    nst = len(numbered)
    # DMA transfers: the cost model's figures, once per distinct cost (dicts are shared);
    # before ix and ready, so that pricing's peak of memory is not on top of theirs
    dma = np.array([r[1] == "dma" for r in numbered], bool)  # (the added streams too)
    dmas = np.flatnonzero(dma[stream])
    priced = dma_costs(ls.program, cost, dmas, (ls.opcode_codes, ls.attrs_ids), True)
    info = dma_cost_identities(ls.program, cost, dmas)
    unpriced = dmas[info == id(None)]  # (priced while its engine was another)
    if len(unpriced):
        priced = list(priced)
        for i in unpriced.tolist():
            priced[i] = cost.dma.cost(instrs[i])
        info = identities(priced)[dmas]
    # (each DMA's row of `table`)
    one, price_row = numbered_rows(info.reshape(len(info), 1))
    del info
    infos = [priced[i] for i in dmas[one].tolist()]
    del priced
    table = np.array([(x["dge_ns"], x["data_ns"], len(x["engines"])) for x in infos],
                     np.float64).reshape(-1, 3)
    # candidates: instruction i's are rows X_CAND0..X_CAND1 of (cand_stream, cand_est)
    glen = np.fromiter(map(len, g_streams), np.int64, len(g_streams))
    gstart = np.zeros(len(glen), np.int64)
    np.cumsum(glen[:-1], out=gstart[1:])
    cg = cand_g
    lens = glen[cg]
    # row r of the candidates: row r - (first row of its instruction) of its group's
    rows = np.repeat(gstart[cg] - (np.cumsum(lens) - lens), lens) + np.arange(lens.sum())
    ncand = int(glen.sum())
    if max(n, ncand) > np.iinfo(np.int32).max:  # (the int columns are int32)
        return None
    cand_stream = np.fromiter(chain.from_iterable(g_streams), np.int64, ncand)[rows]
    cand_est = np.fromiter(chain.from_iterable(g_ests), np.float64, ncand)[rows]
    # cores (each stream's resource starts with its core)
    cores: dict = {}
    stream_core = np.array([cores.setdefault(r[0], len(cores)) for r in numbered], np.int64)
    ix, ready, ids, nids, idbase = _instruction_columns(
        stream, flt, np.asarray(ls.npred, np.int32), np.asarray(cand_i, np.int64), lens,
        nst, dmas, price_row)
    del dmas, price_row  # (this and the dels below: temporaries, not alive with the heaps)
    # fence segments
    nc = max(1, len(cores))
    seg_base = np.zeros(nc, np.int64)
    left = np.zeros(1, np.int64)
    cur_seg = np.zeros(nc, np.int64)
    if ls.fenced:
        ix[:, X_SEG] = ls.seg
        nseg = np.zeros(nc, np.int64)
        for (c, k) in ls.left:
            nseg[cores[c]] = max(nseg[cores[c]], k + 1)
        np.cumsum(nseg[:-1], out=seg_base[1:])
        left = np.zeros(max(1, int(nseg.sum())), np.int64)
        for (c, k), v in ls.left.items():
            left[seg_base[cores[c]] + k] = v
        for c, k in ls.cur_seg.items():
            cur_seg[cores[c]] = k
    sf = np.zeros((nst, S_FCOLS))
    si = np.zeros((nst, T_COLS), np.int64)
    lat: dict = {}
    for k, r in enumerate(numbered):
        sf[k, S_SEM] = cost.semaphore_ns(r[1])
        if not dma[k]:
            e = r[1]
            if e not in lat:
                lat[e] = cost.latency_ns(e)
            sf[k, S_LAT] = lat[e]
    si[:, T_NIDS] = nids
    si[:, T_IDBASE] = idbase
    si[:, T_DMA] = dma
    si[:, T_LIMIT] = np.where(dma, 1, ls.window)
    si[:, T_CORE] = stream_core
    # heap room: a stream's own instructions and the floating ones that may go there
    cap = nids + np.bincount(cand_stream, minlength=nst).astype(np.int64)
    si[1:, T_HBASE] = np.cumsum(cap)[:-1]
    c = cost.dma
    consts = np.array([c.fixed, c.interval, float(max(1, c.engines))])
    est = ls.est
    if not (np.isfinite(est).all() and np.isfinite(table).all()
            and np.isfinite(cand_est).all() and np.isfinite(sf).all()
            and np.isfinite(consts).all()):
        return None
    start, succ, kind = ls._csr
    room = max(1, int(cap.sum()))
    return (ix, ready, est, table, sf, si, ids, start, succ, kind, cand_stream, cand_est,
            seg_base, left, cur_seg, consts, np.zeros(room), np.zeros(room, np.int32),
            np.zeros(room), np.zeros(room, np.int32), bool(ls.fenced),
            ls.heuristic == "critical_path", numbered)


def _plan(ls, key, by_key, numbered) -> list:
    """[(engine, stream)]: the candidates `_assign` weighs for a floating instruction of
    `key` (core, default engine, candidate engines), in its order; empty where the
    compiled core does not model them (a DMA engine, or no candidate). Numbers the
    candidates' streams."""
    core, default, engines = key
    plan = []
    for e in engines:
        r = (core, e)
        k = by_key.get(r)
        if k is None:
            k = by_key[r] = len(numbered)
            numbered.append(r)
        if ls.shared_port and {e, default} == {"vector", "gpsimd"}:
            continue
        if e == "dma" or default == "dma":
            return []
        plan.append((e, k))
    return plan


@jit
def _instruction_columns(stream, flt, npred, cand_at, cand_lens, nst, dmas, price_row):
    """(ix, ready: _core's per-instruction columns but X_SEG, ids, nids, idbase: each
    stream's instructions in program order, floating ones with no place there, at
    ids[idbase[k]:idbase[k] + nids[k]]) of each instruction's stream, floating flag,
    npred, candidate rows (the floating instructions `cand_at` have cand_lens rows
    each, in order) and each DMA's (`dmas`) row of the price table (`price_row`).
    int32: indices of instructions, candidates, streams and prices; a third of the
    issue loop's own memory at int64."""
    n = len(stream)
    nids = np.zeros(nst, np.int64)
    fixed = 0
    for i in range(n):
        if not flt[i]:
            nids[stream[i]] += 1
            fixed += 1
    idbase = np.zeros(nst, np.int64)
    for k in range(1, nst):
        idbase[k] = idbase[k - 1] + nids[k - 1]
    placed = np.zeros(nst, np.int64)
    ids = np.empty(fixed, np.int32)
    ix = np.zeros((n, X_COLS), np.int32)
    ready = np.zeros(n)
    rows = 0  # candidate rows so far
    q = 0  # next floating instruction of cand_at
    for i in range(n):
        k = stream[i]
        ix[i, X_STREAM] = k
        ix[i, X_NPRED] = npred[i]
        ix[i, X_ARRIVAL] = -1
        ix[i, X_NEXT] = -1
        ix[i, X_CAND0] = rows
        if q < len(cand_at) and cand_at[q] == i:
            rows += cand_lens[q]
            q += 1
        ix[i, X_CAND1] = rows
        if not flt[i]:
            p = placed[k]
            ix[i, X_POS] = p
            ids[idbase[k] + p] = i
            placed[k] = p + 1
    for d in range(len(dmas)):
        ix[dmas[d], X_PRICE] = price_row[d]
    return ix, ready, ids, nids, idbase


@jit
def successor_csr(prods, kinds, npred, n):
    """schedule.py `successor_csr` by a counting sort (one pass over the edges, where
    the stable argsort took ~4x as long): the same arrays."""
    start = np.zeros(n + 1, np.int64)
    for p in prods:
        start[p + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    at = start[:-1].copy()  # per producer: where its next successor goes
    consumers = np.empty(len(prods), np.int32)
    kind = np.empty(len(prods), np.uint8)
    e = 0
    for c in range(n):
        for _ in range(npred[c]):
            p = prods[e]
            consumers[at[p]] = c
            kind[at[p]] = kinds[e]
            at[p] += 1
            e += 1
    return start, consumers, kind


# _core holds the arrays; its issue loop (_issue_all) and the helpers that loop calls
# allocate none and are compiled without numba's reference counting: with it, each
# array passed to a helper cost an atomic increment and decrement, most of the loop's
# time (the core ~0.22 -> ~0.07 us an instruction on step 1, as timing/compiled_deps.py
# _walk). The widest helpers (_available, _push_best) are inlined into the loop
# (machine/compiled.py `inline`: ~0.21 -> ~0.16 us, with reference counting);
# inlining the heap helpers too tripled the first compile (~6 -> ~20 s) for no gain


# -- heaps of (key, index) pairs at key[base:base+size], idx[...]: heapq's sift
@no_refcount
def _sift_down2(key, idx, base, startpos, pos):
    nk = key[base + pos]
    ni = idx[base + pos]
    while pos > startpos:
        pp = (pos - 1) >> 1
        pk = key[base + pp]
        pi = idx[base + pp]
        if nk < pk or (nk == pk and ni < pi):
            key[base + pos] = pk
            idx[base + pos] = pi
            pos = pp
            continue
        break
    key[base + pos] = nk
    idx[base + pos] = ni

@no_refcount
def _push2(key, idx, base, size, k, j):
    """heappush; returns the new size."""
    key[base + size] = k
    idx[base + size] = j
    _sift_down2(key, idx, base, 0, size)
    return size + 1

@no_refcount
def _pop2(key, idx, base, size):
    """heappop (the caller read the top); returns the new size."""
    size -= 1
    if size > 0:
        key[base] = key[base + size]
        idx[base] = idx[base + size]
        pos = 0
        nk = key[base]
        ni = idx[base]
        child = 1
        while child < size:
            right = child + 1
            if right < size:
                ck, ci = key[base + child], idx[base + child]
                rk, ri = key[base + right], idx[base + right]
                if not (ck < rk or (ck == rk and ci < ri)):
                    child = right
            key[base + pos] = key[base + child]
            idx[base + pos] = idx[base + child]
            pos = child
            child = 2 * pos + 1
        key[base + pos] = nk
        idx[base + pos] = ni
        _sift_down2(key, idx, base, 0, pos)
    return size

# -- the top heap: a tournament tree over the streams of their bests
@no_refcount
def _before(a, b, sf, si):
    """Stream a's best (start, index, stream) comes before stream b's (heapq's tuple
    order; -1: no best, last)."""
    if b < 0:
        return a >= 0
    if a < 0:
        return False
    fa, fb = sf[a, S_BEST], sf[b, S_BEST]
    if fa != fb:
        return fa < fb
    ia, ib = si[a, T_BEST], si[b, T_BEST]
    if ia != ib:
        return ia < ib
    return a < b

@no_refcount
def _offer(k, sf, si, tree, leaves):
    """Stream k's best changed: replay the tree's matches on its path to the root
    (tree[1]: the stream with the least best, -1 where none has one)."""
    node = leaves + k
    tree[node] = k if si[k, T_HAS_BEST] else -1
    node >>= 1
    while node >= 1:
        a, b = tree[2 * node], tree[2 * node + 1]
        tree[node] = a if _before(a, b, sf, si) else b
        node >>= 1

@inline
def _push_best(k, prio, sf, si, wkey, widx, nkey, nidx, use_prio, tree, leaves):
    """_ListScheduler._push_best for stream k."""
    base = si[k, T_HBASE]
    free = sf[k, S_FREE]
    ws = si[k, T_WSIZE]
    ns = si[k, T_NSIZE]
    while ws > 0 and wkey[base] <= free:
        j = widx[base]
        ws = _pop2(wkey, widx, base, ws)
        ns = _push2(nkey, nidx, base, ns, -prio[j] if use_prio else 0.0, j)
    si[k, T_WSIZE] = ws
    si[k, T_NSIZE] = ns
    if ns > 0:
        bf, bi = free, nidx[base]
    elif ws > 0:
        bf, bi = wkey[base], widx[base]
    else:
        if si[k, T_HAS_BEST]:
            si[k, T_HAS_BEST] = 0
            _offer(k, sf, si, tree, leaves)
        return
    if si[k, T_HAS_BEST] == 0 or bf != sf[k, S_BEST] or bi != si[k, T_BEST]:
        si[k, T_HAS_BEST] = 1
        sf[k, S_BEST] = bf
        si[k, T_BEST] = bi
        _offer(k, sf, si, tree, leaves)

@inline
def _available(i, ix, ready, prio, est, sf, si, cand_stream, cand_est, cur_seg, held,
               fenced, wkey, widx, nkey, nidx, use_prio, tree, leaves, arrivals):
    """_ListScheduler._available (with `_assign`); returns `arrivals`."""
    if fenced:
        c = si[ix[i, X_STREAM], T_CORE]
        if ix[i, X_SEG] != cur_seg[c]:
            if held[c, 0] < 0:
                held[c, 0] = i
            else:
                ix[held[c, 1], X_NEXT] = i
            held[c, 1] = i
            ix[i, X_NEXT] = -1
            return arrivals
    if ix[i, X_CAND0] < ix[i, X_CAND1]:  # floating
        r = ready[i]
        k = -1
        best = 0.0
        e = 0.0
        for c in range(ix[i, X_CAND0], ix[i, X_CAND1]):
            kk = cand_stream[c]
            free = sf[kk, S_FREE]
            m = r if r > free else free  # max(free, ready)
            fin = m + sf[kk, S_QUEUED] + cand_est[c]
            if k < 0 or fin < best:
                k, best, e = kk, fin, cand_est[c]
        ix[i, X_STREAM] = k
        est[i] = e
    else:
        k = ix[i, X_STREAM]
        if ix[i, X_POS] >= si[k, T_HEAD] + si[k, T_LIMIT]:
            ix[i, X_ARRIVAL] = arrivals
            si[k, T_LATER] += 1
            return arrivals + 1
    base = si[k, T_HBASE]
    si[k, T_WSIZE] = _push2(wkey, widx, base, si[k, T_WSIZE], ready[i], i)
    sf[k, S_QUEUED] += est[i]
    _push_best(k, prio, sf, si, wkey, widx, nkey, nidx, use_prio, tree, leaves)
    return arrivals

@no_refcount
def _issue_all(ix, ready, prio, est, table, sf, si, ids, start, succ, kind, cand_stream,
               cand_est, seg_base, left, cur_seg, consts, wkey, widx, nkey, nidx, fenced,
               use_prio, held, dma_free, tree, leaves, come, order):
    """_core's issue loop (from the instructions ready at the start): `order` filled;
    returns (how many issued, the estimate)."""
    n = ix.shape[0]
    fixed, interval, engines = consts[0], consts[1], consts[2]
    arrivals = np.int64(0)  # (not a literal 0: one specialisation of each callee)
    for i in range(n):
        if ix[i, X_NPRED] == 0:
            arrivals = _available(i, ix, ready, prio, est, sf, si, cand_stream, cand_est,
                                  cur_seg, held, fenced, wkey, widx, nkey, nidx, use_prio,
                                  tree, leaves, arrivals)
    count = 0
    end = 0.0
    while tree[1] >= 0:
        k = tree[1]
        st, i = sf[k, S_BEST], si[k, T_BEST]
        base = si[k, T_HBASE]
        if si[k, T_NSIZE] > 0:
            si[k, T_NSIZE] = _pop2(nkey, nidx, base, si[k, T_NSIZE])
        else:
            si[k, T_WSIZE] = _pop2(wkey, widx, base, si[k, T_WSIZE])
        order[count] = i
        count += 1
        # _issue
        ei = est[i]
        sf[k, S_QUEUED] -= ei
        if si[k, T_DMA]:
            q = sf[k, S_QNEXT]
            p = ix[i, X_PRICE]
            t = (q if q > st else st) + table[p, P_DGE]
            data = table[p, P_DATA]
            share = data * table[p, P_NENG] / engines
            c = si[k, T_CORE]
            d0 = t + fixed
            if dma_free[c] > d0:
                d0 = dma_free[c]
            dma_free[c] = d0 + share
            fin = d0 + share
            alt = t + fixed + data
            if alt > fin:
                fin = alt
            sf[k, S_QNEXT] = st + (data if data > interval else interval)
            sf[k, S_FREE] = sf[k, S_QNEXT]
            done = fin
        else:
            fin = st + ei
            sf[k, S_FREE] = fin
            done = fin + sf[k, S_LAT]
        if fin > end:
            end = fin
        # _after_issue: the window slides past the issued head
        ix[i, X_NPRED] = -1  # issued
        idbase = si[k, T_IDBASE]
        nids = si[k, T_NIDS]
        h0 = h = si[k, T_HEAD]
        while h < nids and ix[ids[idbase + h], X_NPRED] < 0:
            h += 1
        si[k, T_HEAD] = h
        if si[k, T_LATER] > 0 and h > h0:
            limit = si[k, T_LIMIT]
            m = 0
            for p in range(h0 + limit, min(h + limit, nids)):
                j = ids[idbase + p]
                if ix[j, X_ARRIVAL] >= 0:  # in `later`: by arrival (insertion sort)
                    a = ix[j, X_ARRIVAL]
                    q2 = m
                    while q2 > 0 and ix[come[q2 - 1], X_ARRIVAL] > a:
                        come[q2] = come[q2 - 1]
                        q2 -= 1
                    come[q2] = j
                    m += 1
            for q2 in range(m):
                j = come[q2]
                ix[j, X_ARRIVAL] = -1
            si[k, T_LATER] -= m
            for q2 in range(m):
                j = come[q2]
                si[k, T_WSIZE] = _push2(wkey, widx, base, si[k, T_WSIZE],
                                        ready[j], j)
                sf[k, S_QUEUED] += est[j]
                _push_best(k, prio, sf, si, wkey, widx, nkey, nidx, use_prio, tree,
                           leaves)
        # successors
        for e in range(start[i], start[i + 1]):
            s = succ[e]
            o = ix[s, X_STREAM]
            kd = kind[e]
            if kd == _WAR:
                t2 = done if o != k else 0.0
            elif o == k:
                t2 = done if kd == _RAW else 0.0
            else:
                t2 = done + sf[o, S_SEM]
            if t2 > ready[s]:
                ready[s] = t2
            ix[s, X_NPRED] -= 1
            if ix[s, X_NPRED] == 0:
                arrivals = _available(s, ix, ready, prio, est, sf, si, cand_stream,
                                      cand_est, cur_seg, held, fenced, wkey, widx, nkey,
                                      nidx, use_prio, tree, leaves, arrivals)
        if fenced:  # _segment_done
            c = si[k, T_CORE]
            sg = ix[i, X_SEG]
            left[seg_base[c] + sg] -= 1
            if left[seg_base[c] + sg] == 0 and cur_seg[c] == sg:
                cur_seg[c] += 1
                j = held[c, 0]
                held[c, 0] = -1
                held[c, 1] = -1
                while j >= 0:
                    nxt = ix[j, X_NEXT]
                    arrivals = _available(j, ix, ready, prio, est, sf, si, cand_stream,
                                          cand_est, cur_seg, held, fenced, wkey, widx, nkey,
                                          nidx, use_prio, tree, leaves, arrivals)
                    j = nxt
        _push_best(k, prio, sf, si, wkey, widx, nkey, nidx, use_prio, tree, leaves)
    return count, end


@jit
def _core(ix, ready, est, table, sf, si, ids, start, succ, kind, cand_stream, cand_est,
          seg_base, left, cur_seg, consts, wkey, widx, nkey, nidx, fenced, use_prio):
    """_ListScheduler.run on arrays; returns (order, the estimate, moved indices, their
    moves, how many). Updates ix[:, X_STREAM] and est of the floating instructions
    assigned."""
    n = ix.shape[0]
    # critical_path's priorities, 0.0 where not yet made: a successor before its
    # predecessor (a cycle, which never issues) reads that, as _critical_path's list does
    prio = np.zeros(n if use_prio else 0)
    if use_prio:  # _critical_path
        for i in range(n - 1, -1, -1):
            tail = 0.0
            for e in range(start[i], start[i + 1]):
                p = prio[succ[e]]
                if p > tail:
                    tail = p
            prio[i] = tail + est[i]
    ncore = cur_seg.shape[0]
    held = np.full((ncore, 2), -1, np.int64)  # per core: first, last held (X_NEXT)
    dma_free = np.zeros(ncore)
    # run()'s top heap pops the least current entry, which is the least of the
    # streams' bests: the tree keeps that
    leaves = 1
    while leaves < sf.shape[0]:
        leaves *= 2
    tree = np.full(2 * leaves, -1, np.int32)
    come = np.empty(n, np.int64)  # scratch: instructions a window slide releases
    order = np.empty(n, np.int64)
    count, end = _issue_all(ix, ready, prio, est, table, sf, si, ids, start, succ, kind,
                            cand_stream, cand_est, seg_base, left, cur_seg, consts, wkey,
                            widx, nkey, nidx, fenced, use_prio, held, dma_free, tree,
                            leaves, come, order)
    if count != n:  # a fence or window cycle would be a bug: keep every instruction
        for i in range(n):
            if ix[i, X_NPRED] >= 0:
                order[count] = i
                count += 1
    # moved: places each fixed instruction moved up its stream
    issued_on = np.zeros(sf.shape[0], np.int64)
    moved_i = np.empty(n, np.int64)
    moved_d = np.empty(n, np.int64)
    nmoved = 0
    for q in range(n):
        i = order[q]
        if ix[i, X_CAND0] < ix[i, X_CAND1]:  # floating
            continue
        k = ix[i, X_STREAM]
        if ix[i, X_POS] != issued_on[k]:
            moved_i[nmoved] = i
            moved_d[nmoved] = ix[i, X_POS] - issued_on[k]
            nmoved += 1
        issued_on[k] += 1
    return order, end, moved_i, moved_d, nmoved
