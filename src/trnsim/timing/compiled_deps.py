"""Stage 3 of the compiled scheduler (experiment): the on-chip dependency maps
(deps.SpaceMap, unfiltered: the SBUF / PSUM of every core) compiled with numba, so that
collecting an instruction's dependencies calls no Python per on-chip access. HBM
accesses still go through the Python MemoryMaps (deps.HbmMap); their producers are
passed in as lists, in access order.

`collect(sched)` gives what the `_Scheduler._collect` loop of columns.build_columns
gives: the same dependencies in the same order (the order `_collect`'s dict found them
in), and it records every instruction's track. The maps of every (space, core) share
one byte axis (map m's bytes at m << 40), so one sorted segment array serves them all.

State (`st`): cnt (segments, Recs, writer cells, tracks); segments g: [glo[g], ghi[g])
in byte order, Recs from ghd[g] linked by R[r, NEXT]; Rec r: partitions
[R[r, PLO], R[r, PHI]), its writers a persistent list from R[r, W] (cells WC: value,
previous; a copied Rec shares them, as Python's copies share the writers tuple), its
readers RD[r * T: r * T + R[r, RDN]] (track, instruction) in insertion order, a slot per
track. Only the general paths of SpaceMap.read / write are ported: its fast paths and
_RecIndex are shortcuts to the same producers and the same Rec order.
"""
from __future__ import annotations

import numpy as np

from .columns import ORDER, QUEUE, RAW, WAR, WAW, _dense

try:
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

OP_READ, OP_WRITE, OP_RAW, OP_WAW, OP_WAR, OP_ORDER = range(6)
MAP_SHIFT = 40
PLO, PHI, NEXT, W, RDN = range(5)


def collect(sched, spaces: dict, caps=None):
    """(dptr, dprod, dkind, dspace) for `sched`'s instructions in issue order, as
    build_columns makes them (space codes added to `spaces`); records sched.track.
    caps: the first capacities tried (segments, Recs, writer cells)."""
    n = len(sched.instrs)
    order, skip, tkey, optr, ops, lprod = _ops(sched, spaces)
    if caps is None:  # (np.empty: untouched capacity costs address space only)
        caps = (4 * len(ops) + 64, 8 * len(ops) + 64, 4 * len(ops) + 64)
    caps = np.array(caps, np.int64)
    ntracks = len(sched.engines) + len(sched.queues)
    while True:
        try:
            return _collect(n, order, skip, tkey, optr, ops, lprod, ntracks, caps)
        except IndexError:  # a capacity was too small: again with more
            caps *= 4


def _ops(sched, spaces):
    """The accesses in issue order as ops (kind, map, p_lo, p_hi, lo, hi, dense or list
    start, space code; list ops: their producers lprod[start:ops[o, 6]])."""
    instrs = sched.instrs
    n = len(instrs)
    maps, folded, track, track_of = sched.maps, sched.folded, sched.track, sched._track_of
    skip = np.zeros(n, np.uint8)
    tkey = np.zeros(n, np.int64)
    optr = [0]
    ops: list = []  # flat, 8 per op
    lprod: list = []
    onchip: dict = {}  # (space, core) -> (map id, space code)
    hbm = _dense(spaces, "hbm")
    put = ops.extend
    for i in sched.order:
        ins = instrs[i]
        trk = track_of(ins)
        track[i] = trk
        t = tkey[i] = trk.id
        if i in folded:
            skip[i] = 1
            optr.append(len(ops) >> 3)
            continue
        for a in ins.reads:
            sp = a.space
            if sp == "hbm":
                _list_op(ops, lprod, OP_RAW, maps.read(a, i, t), hbm)
                continue
            m = onchip.get((sp, a.core)) or _new_map(onchip, spaces, sp, a.core)
            put((OP_READ, m[0], a.p_lo, a.p_hi, a.lo, a.hi, 0, m[1]))
        for a in ins.writes:
            sp = a.space
            if sp == "hbm":
                waw, war = maps.write(a, i, t)
                _list_op(ops, lprod, OP_WAW, waw, hbm)
                _list_op(ops, lprod, OP_WAR, war, hbm)
                continue
            m = onchip.get((sp, a.core)) or _new_map(onchip, spaces, sp, a.core)
            p_lo, p_hi, lo, hi = a.p_lo, a.p_hi, a.lo, a.hi
            put((OP_WRITE, m[0], p_lo, p_hi, lo, hi, a.bytes >= (p_hi - p_lo) * (hi - lo),
                 m[1]))
        deps_on = ins.attrs.get("depends_on")
        if deps_on:
            _list_op(ops, lprod, OP_ORDER, [p for p in deps_on if 0 <= p < n and p != i], 0)
        optr.append(len(ops) >> 3)
    return (np.asarray(sched.order, np.int64), skip, tkey, np.array(optr, np.int64),
            np.array(ops, np.int64).reshape(-1, 8), np.array(lprod, np.int64))


def _new_map(onchip, spaces, space, core):
    m = onchip[(space, core)] = (len(onchip), _dense(spaces, space))
    return m


def _list_op(ops, lprod, kind, prods, space):
    if prods:
        ops.extend((kind, 0, 0, 0, 0, len(lprod), len(lprod) + len(prods), space))
        lprod.extend(prods)


if njit is not None:
    jit = njit(cache=True, nogil=True)

    @jit
    def _collect(n, order, skip, tkey, optr, ops, lprod, ntracks, caps):
        st = (np.array([0, 0, 0, ntracks], np.int64), np.empty(caps[0], np.int64),
              np.empty(caps[0], np.int64), np.empty(caps[0], np.int64),
              np.empty((caps[1], 5), np.int64), np.empty((caps[1] * ntracks, 2), np.int64),
              np.empty((caps[2], 2), np.int64))
        dptr = np.zeros(n + 1, np.int64)
        out = np.empty((max(16, 4 * n), 3), np.int64)  # producer, kind, space
        slot = np.full(n, -1, np.int64)
        last = np.full(ntracks, -1, np.int64)
        bw = np.empty(64, np.int64)
        br = np.empty(64, np.int64)
        m = 0
        for k in range(n):
            i = order[k]
            m0 = m
            if not skip[i]:  # (a folded memset: no access, no track order)
                tk = tkey[i]
                for o in range(optr[k], optr[k + 1]):
                    kind, space = ops[o, 0], ops[o, 7]
                    if kind == OP_READ:
                        nw, bw = _read(st, ops[o], i, tk, bw)
                        m, out = _merge(bw[:nw], RAW, space, slot, out, m)
                    elif kind == OP_WRITE:
                        nw, nr, bw, br = _write(st, ops[o], i, tk, bw, br)
                        m, out = _merge(bw[:nw], WAW, space, slot, out, m)
                        m, out = _merge(br[:nr], WAR, space, slot, out, m)
                    else:
                        m, out = _merge(lprod[ops[o, 5]:ops[o, 6]], _note(kind), space,
                                        slot, out, m)
                p = last[tk]
                last[tk] = i
                if p >= 0 and slot[p] < 0:
                    m, out = _add(p, QUEUE, 0, slot, out, m)
            for x in range(m0, m):
                slot[out[x, 0]] = -1
            dptr[k + 1] = m
        return dptr, out[:m, 0].copy(), out[:m, 1].copy(), out[:m, 2].copy()

    @jit
    def _note(kind):
        if kind == OP_WAW:
            return WAW
        if kind == OP_WAR:
            return WAR
        if kind == OP_ORDER:
            return ORDER
        return RAW

    @jit
    def _add(p, kind, space, slot, out, m):
        if m == out.shape[0]:
            grown = np.empty((2 * m, 3), np.int64)
            grown[:m] = out
            out = grown
        slot[p] = m
        out[m, 0], out[m, 1], out[m, 2] = p, kind, space
        return m + 1, out

    @jit
    def _merge(prods, kind, space, slot, out, m):
        """_collect's rules: a RAW replaces any other kind, a WAW / order a WAR, a WAR
        is only added (a replaced note keeps its place). slot[p]: p's row (-1: none
        yet, this instruction)."""
        for p in prods:
            s = slot[p]
            if s < 0:
                m, out = _add(p, kind, space, slot, out, m)
            elif kind == RAW:
                if out[s, 1] != RAW:
                    out[s, 1], out[s, 2] = RAW, space
            elif kind != WAR and out[s, 1] == WAR:
                out[s, 1], out[s, 2] = kind, space
        return m, out

    # -- producers into growable buffers ----------------------------------------------
    @jit
    def _push(buf, nb, v):
        if nb == buf.size:
            grown = np.empty(2 * nb, np.int64)
            grown[:nb] = buf
            buf = grown
        buf[nb] = v
        return buf, nb + 1

    @jit
    def _writers_out(st, r, idx, buf, nb):
        """Append Rec r's writers other than idx, oldest first."""
        WC = st[6]
        c = st[4][r, W]
        n0 = nb
        while c >= 0:
            if WC[c, 0] != idx:
                buf, nb = _push(buf, nb, WC[c, 0])
            c = WC[c, 1]
        buf[n0:nb] = buf[n0:nb][::-1].copy()
        return buf, nb

    @jit
    def _readers_out(st, r, idx, buf, nb):
        R, RD, T = st[4], st[5], st[0][3]
        for x in range(r * T, r * T + R[r, RDN]):
            if RD[x, 1] != idx:
                buf, nb = _push(buf, nb, RD[x, 1])
        return buf, nb

    # -- Recs and writer cells --------------------------------------------------------
    @jit
    def _cell(st, value, prev):
        cnt, WC = st[0], st[6]
        c = cnt[2]
        if c == WC.shape[0]:
            raise IndexError("writer cells")
        WC[c, 0], WC[c, 1] = value, prev
        cnt[2] = c + 1
        return c

    @jit
    def _rec(st, p_lo, p_hi, w):
        cnt, R = st[0], st[4]
        r = cnt[1]
        if r == R.shape[0]:
            raise IndexError("Recs")
        R[r, PLO], R[r, PHI], R[r, NEXT], R[r, W], R[r, RDN] = p_lo, p_hi, -1, w, 0
        cnt[1] = r + 1
        return r

    @jit
    def _copy(st, r, p_lo, p_hi):
        """Rec.copy: same writers, a copy of the readers."""
        R, RD, T = st[4], st[5], st[0][3]
        c = _rec(st, p_lo, p_hi, R[r, W])
        nrd = R[r, RDN]
        RD[c * T:c * T + nrd] = RD[r * T:r * T + nrd]
        R[c, RDN] = nrd
        return c

    @jit
    def _set_reader(st, r, tk, idx):
        """r.readers[tk] = idx (an existing track keeps its place)."""
        R, RD, T = st[4], st[5], st[0][3]
        for x in range(r * T, r * T + R[r, RDN]):
            if RD[x, 0] == tk:
                RD[x, 1] = idx
                return
        x = r * T + R[r, RDN]
        RD[x, 0], RD[x, 1] = tk, idx
        R[r, RDN] += 1

    @jit
    def _has_writer(st, r, idx):
        WC = st[6]
        c = st[4][r, W]
        while c >= 0:
            if WC[c, 0] == idx:
                return True
            c = WC[c, 1]
        return False

    # -- segments -------------------------------------------------------------------
    @jit
    def _first(st, lo):
        """The first segment ending after lo."""
        n, glo, ghi = st[0][0], st[1], st[2]
        i = np.searchsorted(glo[:n], lo, side="right") - 1
        if i < 0:
            return 0
        return i if ghi[i] > lo else i + 1

    @jit
    def _insert_seg(st, i, lo, hi, head):
        cnt, glo, ghi, ghd = st[0], st[1], st[2], st[3]
        n = cnt[0]
        if n == glo.size:
            raise IndexError("segments")
        for j in range(n, i, -1):
            glo[j], ghi[j], ghd[j] = glo[j - 1], ghi[j - 1], ghd[j - 1]
        glo[i], ghi[i], ghd[i] = lo, hi, head
        cnt[0] = n + 1

    @jit
    def _split(st, i, at):
        """Split segment i at byte `at`: the part after it gets copies of the Recs."""
        R = st[4]
        head = -1
        tail = -1
        r = st[3][i]
        while r >= 0:
            c = _copy(st, r, R[r, PLO], R[r, PHI])
            if tail < 0:
                head = c
            else:
                R[tail, NEXT] = c
            tail = c
            r = R[r, NEXT]
        _insert_seg(st, i + 1, at, st[2][i], head)
        st[2][i] = at

    @jit
    def _split_around(st, i, lo, hi):
        glo, ghi = st[1], st[2]
        n = st[0][0]
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

    @jit
    def _link(st, head, tail, r):
        """Append Rec r to the list head..tail; returns (head, tail)."""
        st[4][r, NEXT] = -1
        if head < 0:
            return r, r
        st[4][tail, NEXT] = r
        return head, r

    @jit
    def _tail(st, head):
        x = head
        while x >= 0 and st[4][x, NEXT] >= 0:
            x = st[4][x, NEXT]
        return x

    @jit
    def _uncovered(st, head, p_lo, p_hi):
        """The partition ranges of [p_lo, p_hi) no Rec of the list covers (rows)."""
        R = st[4]
        spans = np.empty((8, 2), np.int64)
        ns = 0
        r = head
        while r >= 0:
            if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                if ns == spans.shape[0]:
                    grown = np.empty((2 * ns, 2), np.int64)
                    grown[:ns] = spans
                    spans = grown
                a, b = R[r, PLO], R[r, PHI]
                x = ns  # insertion, sorted by (a, b)
                while x > 0 and (spans[x - 1, 0] > a or (spans[x - 1, 0] == a
                                                         and spans[x - 1, 1] > b)):
                    spans[x] = spans[x - 1]
                    x -= 1
                spans[x, 0], spans[x, 1] = a, b
                ns += 1
            r = R[r, NEXT]
        gaps = np.empty((ns + 1, 2), np.int64)
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
        return gaps[:ng]

    # -- reads ------------------------------------------------------------------------
    @jit
    def _extend_readonly(st, i, lo, hi, p_lo, p_hi, idx, tk):
        """Grow the read-only segment just before position i (ending at lo) to hi."""
        R, ghi = st[4], st[2]
        j = i - 1
        if j < 0 or ghi[j] != lo:
            return False
        r = st[3][j]
        if r < 0 or R[r, NEXT] >= 0:
            return False
        if R[r, W] >= 0 or R[r, PLO] != p_lo or R[r, PHI] != p_hi:
            return False
        ghi[j] = hi
        _set_reader(st, r, tk, idx)
        return True

    @jit
    def _readonly_seg(st, i, lo, hi, p_lo, p_hi, idx, tk):
        r = _rec(st, p_lo, p_hi, -1)
        _set_reader(st, r, tk, idx)
        _insert_seg(st, i, lo, hi, r)

    @jit
    def _read(st, op, idx, tk, buf):
        """SpaceMap.read: (count of the writers in buf, buf)."""
        base = op[1] << MAP_SHIFT
        p_lo, p_hi, lo, hi = op[2], op[3], base + op[4], base + op[5]
        R, glo, ghi = st[4], st[1], st[2]
        nb = 0
        i = _first(st, lo)
        cur = lo
        while i < st[0][0] and glo[i] < hi:
            if glo[i] > cur:  # a gap nobody touched yet: a read-only segment
                if not _extend_readonly(st, i, cur, glo[i], p_lo, p_hi, idx, tk):
                    _readonly_seg(st, i, cur, glo[i], p_lo, p_hi, idx, tk)
                    i += 1
            covered = 0
            r = st[3][i]
            while r >= 0:
                if R[r, PLO] < p_hi and p_lo < R[r, PHI]:
                    buf, nb = _writers_out(st, r, idx, buf, nb)
                    _set_reader(st, r, tk, idx)
                    covered += min(R[r, PHI], p_hi) - max(R[r, PLO], p_lo)
                r = R[r, NEXT]
            if covered < p_hi - p_lo:
                head = st[3][i]
                tail = _tail(st, head)
                for g in _uncovered(st, head, p_lo, p_hi):
                    c = _rec(st, g[0], g[1], -1)
                    _set_reader(st, c, tk, idx)
                    head, tail = _link(st, head, tail, c)
                st[3][i] = head
            cur = ghi[i]
            i += 1
        if cur < hi:
            if not _extend_readonly(st, i, cur, hi, p_lo, p_hi, idx, tk):
                _readonly_seg(st, i, cur, hi, p_lo, p_hi, idx, tk)
        return nb, buf

    # -- writes -----------------------------------------------------------------------
    @jit
    def _write(st, op, idx, tk, bw, br):
        """SpaceMap.write: (count of writers in bw, of readers in br, bw, br)."""
        base = op[1] << MAP_SHIFT
        p_lo, p_hi, lo, hi, dense = op[2], op[3], base + op[4], base + op[5], op[6] != 0
        R, glo, ghi, ghd = st[4], st[1], st[2], st[3]
        nw = 0
        nr = 0
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
                    bw, nw = _writers_out(st, r, idx, bw, nw)
                    br, nr = _readers_out(st, r, idx, br, nr)
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
                for g in _uncovered(st, head, p_lo, p_hi):
                    head, tail = _link(st, head, tail, _rec(st, g[0], g[1], mine))
            ghd[k] = head
            cur = ghi[k]
            k += 1
        if cur < hi:
            _insert_seg(st, k, cur, hi, _rec(st, p_lo, p_hi, mine))
            k += 1
            j += 1
        if clean and j - i > 1:  # one segment for the whole write
            _merge_segs(st, i, j)
        return nw, nr, bw, br

    @jit
    def _merge_segs(st, i, j):
        """Segments i..j-1 become one: [glo[i], ghi[j - 1]) with segment i's Recs."""
        cnt, glo, ghi, ghd = st[0], st[1], st[2], st[3]
        ghi[i] = ghi[j - 1]
        d = j - i - 1
        n = cnt[0]
        for x in range(i + 1, n - d):
            glo[x], ghi[x], ghd[x] = glo[x + d], ghi[x + d], ghd[x + d]
        cnt[0] = n - d
