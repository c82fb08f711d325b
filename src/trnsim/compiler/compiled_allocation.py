"""The allocation pass (compiler/allocation.py) over columns, its walk compiled with
numba, for programs in which every block fits where the policy places it.

    program = allocate_compiled(program)   # None: use the Python allocator

The virtual accesses become arrays (bulk conversion), each block's first and last use
come from NumPy, and `_walk` places and frees the blocks exactly as `_Allocator.run`
does with its Arenas (compiler/arena.py: next-fit with the cursor, else the free space
released longest ago, PSUM footprints, explicit tensors' reservations, usage steps;
Arena's heap of released spans as a sorted queue of just its valid entries, which a
search reads without popping, and Arena.taken read off the busy spans).
The moment a block would need an eviction (and so spills, reloads or compaction) the
walk stops and `allocate_compiled` returns None before anything was changed: the whole
program then goes through the Python allocator. Without spills no instruction is
inserted, so the output keeps every index; the physical accesses are computed in bulk.
The virtual accesses are read once, as the access columns of timing/access_columns.py
(those of loop expansion's copies made from the blocks noted on the program, which the
pass takes), and the allocated program is handed on with its own (`_access_columns`:
the virtual columns at the physical bytes), which the list and timing schedulers read;
the physical Access objects are made when first read (`_Unplaced`), which a timing-only
profile never does.
"""
from __future__ import annotations

import weakref
from array import array
from collections import deque
from itertools import chain, repeat, starmap
from operator import add, attrgetter

import numpy as np

from ..machine.access import with_bytes, with_bytes_all
from ..machine.allocations import allocation_columns
from ..machine.compiled import inline, jit, no_refcount
from ..machine.record import (Instruction, MadeWhenRead, Program, fits_int32, held_reads,
                              held_writes, identities_of_copies, pending_operands,
                              run_starts)
from ..timing import access_columns
from ..timing.instruction_columns import instruction_columns
from .arena import Arena
from .plan import MemoryPlan, PlacementColumns, Steps

FALLBACK = -1
_CHUNK = 1 << 11  # accesses moved per chunk (the virtual and physical ones of a chunk
# are alive together)




# -- the compiled walk (arena.py's Arena on flat arrays, one region per arena) ---------
# `_walk` makes the arrays; its loop (`_place_all`) allocates none and is compiled
# without numba's reference counting (an atomic increment and decrement per array
# argument of each call), as compiled_schedule.py's issue loop, with every helper inlined
# into it (a call passes each array as a struct of seven words): ~150 -> ~65 ns an event
# on the matmul tutorial's step 1, ~240 -> ~75 on kernel-optimization step 2, ~90 -> ~40
# on the strided kernel; the first compile takes no longer

@inline
def _bisect_lo(lo, off, n, key):
    """First k in [0, n) with lo[off + k] >= key (bisect_left by (key,))."""
    a, b = 0, n
    while a < b:
        m = (a + b) >> 1
        if lo[off + m] < key:
            a = m + 1
        else:
            b = m
    return a


@inline
def _splice(lo, hi, when, off, n, k0, k1, nlo, nhi, nwhen, nnew):
    """Replace items [k0, k1) of the n at off by the nnew of nlo/nhi/nwhen; returns the
    new count."""
    shift = nnew - (k1 - k0)
    if shift > 0:
        for j in range(n - 1, k1 - 1, -1):
            lo[off + j + shift] = lo[off + j]
            hi[off + j + shift] = hi[off + j]
            when[off + j + shift] = when[off + j]
    elif shift < 0:
        for j in range(k1, n):
            lo[off + j + shift] = lo[off + j]
            hi[off + j + shift] = hi[off + j]
            when[off + j + shift] = when[off + j]
    for x in range(nnew):
        lo[off + k0 + x], hi[off + k0 + x], when[off + k0 + x] = nlo[x], nhi[x], nwhen[x]
    return n + shift


@inline
def _next_fit(tlo, thi, off, n, size, cursor, limit, align):
    """machine/memory.py next_fit over the sorted spans at off (base 0); -1: none."""
    p0 = -(-cursor // align) * align
    if p0 < 0:
        p0 = 0
    for attempt in range(2):
        p = p0 if attempt == 0 else 0
        i = _bisect_lo(tlo, off, n, p)
        if i > 0 and thi[off + i - 1] > p:
            i -= 1
        while p + size <= limit:
            if i == n or tlo[off + i] - p >= size:
                return p
            q = -(-thi[off + i] // align) * align
            if q > p:
                p = q
            i += 1
    return -1


@inline
def _merged(alo, ahi, aoff, an, rlo, rhi, rn, olo, ohi):
    """allocation.merged(spans + reserved) into olo/ohi (sorted, disjoint; touching
    spans joined); returns its length. The reserved spans rlo/rhi are sorted by lo."""
    n, i, j = 0, 0, 0
    while i < an or j < rn:
        if j == rn or (i < an and alo[aoff + i] <= rlo[j]):
            lo, hi = alo[aoff + i], ahi[aoff + i]
            i += 1
        else:
            lo, hi = rlo[j], rhi[j]
            j += 1
        if n and lo <= ohi[n - 1]:
            if hi > ohi[n - 1]:
                ohi[n - 1] = hi
        else:
            olo[n], ohi[n] = lo, hi
            n += 1
    return n


@inline
def _resident(blo, bhi, bwhen, off, n, olo, ohi):
    """Arena.taken (the busy spans that are not cooling) into olo/ohi; its length."""
    m = 0
    for k in range(off, off + n):
        if bwhen[k] < 0:
            olo[m], ohi[m] = blo[k], bhi[k]
            m += 1
    return m


@inline
def _window_age_busy(s, size, capacity, blo, bhi, bwhen, boff, bn):
    """Arena._window_age without reserved bytes: the resident blocks are the busy
    spans that are not cooling; -2 for None."""
    e = s + size
    if s < 0 or e > capacity:
        return -2
    return _busy_age(s, e, blo, bhi, bwhen, boff, bn, True)


@inline
def _window_age(s, size, capacity, tlo, thi, toff, tn, blo, bhi, bwhen, boff, bn):
    """Arena._window_age over the resident spans tlo/thi (with reserved bytes); -2 for
    None."""
    e = s + size
    if s < 0 or e > capacity:
        return -2
    k = _bisect_lo(tlo, toff, tn, e) - 1
    if k >= 0 and thi[toff + k] > s:
        return -2
    return _busy_age(s, e, blo, bhi, bwhen, boff, bn, False)


@inline
def _busy_age(s, e, blo, bhi, bwhen, boff, bn, resident_blocks):
    """The latest release time of the busy spans over bytes [s, e) (-1: none cooling);
    -2 where `resident_blocks` and one of them is resident (not cooling)."""
    k = _bisect_lo(blo, boff, bn, s)
    if k > 0 and bhi[boff + k - 1] > s:
        k -= 1
    age = -1
    while k < bn and blo[boff + k] < e:
        w = bwhen[boff + k]
        if w < 0 and resident_blocks:
            return -2
        if w > age:
            age = w
        k += 1
    return age


@inline
def _bisect_age(qw, qlo, h, t, w, lo):
    """First k in [h, t) with (qw, qlo)[k] >= (w, lo)."""
    while h < t:
        m = (h + t) >> 1
        if qw[m] < w or (qw[m] == w and qlo[m] < lo):
            h = m + 1
        else:
            t = m
    return h


@inline
def _queue_open(qw, qlo, qhi, qoff, qh, qt, a, k):
    """Room for one entry before the queue's item k (qh[a] <= k <= qt[a]): the shorter
    side moves by one, the whole window to the middle of its region when that side is
    against the region's edge; returns the free index."""
    h, t = qh[a], qt[a]
    if k - h <= t - k and h > qoff[a]:
        for j in range(h, k):
            qw[j - 1], qlo[j - 1], qhi[j - 1] = qw[j], qlo[j], qhi[j]
        qh[a] = h - 1
        return k - 1
    if t == qoff[a + 1]:
        if h == qoff[a]:  # (not reached: the region holds twice the spans there can be)
            return -1
        _queue_center(qw, qlo, qhi, qoff, qh, qt, a)
        k += qh[a] - h
        t = qt[a]
    for j in range(t, k, -1):
        qw[j], qlo[j], qhi[j] = qw[j - 1], qlo[j - 1], qhi[j - 1]
    qt[a] = t + 1
    return k


@inline
def _queue_center(qw, qlo, qhi, qoff, qh, qt, a):
    h, t = qh[a], qt[a]
    n = t - h
    c = qoff[a] + (qoff[a + 1] - qoff[a] - n) // 2
    if c < h:
        for j in range(n):
            qw[c + j], qlo[c + j], qhi[c + j] = qw[h + j], qlo[h + j], qhi[h + j]
    elif c > h:
        for j in range(n - 1, -1, -1):
            qw[c + j], qlo[c + j], qhi[c + j] = qw[h + j], qlo[h + j], qhi[h + j]
    qh[a], qt[a] = c, c + n


@inline
def _queue_close(qw, qlo, qhi, qh, qt, a, k):
    """The queue's item k removed (the shorter side moves by one)."""
    h, t = qh[a], qt[a]
    if k - h < t - 1 - k:
        for j in range(k, h, -1):
            qw[j], qlo[j], qhi[j] = qw[j - 1], qlo[j - 1], qhi[j - 1]
        qh[a] = h + 1
    else:
        for j in range(k, t - 1):
            qw[j], qlo[j], qhi[j] = qw[j + 1], qlo[j + 1], qhi[j + 1]
        qt[a] = t - 1


@jit
def _walk(ev_block, ev_at, ev_place, blk_arena, blk_bytes, blk_last, capacity, align,
          ex_arena, ex_first, ex_last, ex_lo, ex_hi, span_off, candidates,
          start_out, size_out, order_out, note_arena, note_at, note_used, peak):
    """Place and free the blocks in event order (ev_place 1: placed for instruction
    ev_at; 0: freed after it) as _Allocator.run does; fills start/size_out per block,
    order_out (blocks in placement order), the usage notes and peak per arena. Returns
    the number of notes, or FALLBACK where a block does not fit (an eviction) or the
    Python allocator would raise. Note e is written once event e is read (one per
    event), so the note arrays may be the event arrays."""
    na = capacity.shape[0]
    nspan = span_off[na]
    blo = np.empty(nspan, np.int64)
    bhi = np.empty(nspan, np.int64)
    bwhen = np.empty(nspan, np.int64)  # release time of a cooling span, -1: resident
    # the cooling spans by (release, lo, hi): Arena's heap without its stale entries,
    # the window [qh, qt) of a region twice the spans an arena can have
    qoff = 2 * span_off + 2 * np.arange(na + 1)
    qw = np.empty(qoff[na], np.int64)
    qlo = np.empty(qoff[na], np.int64)
    qhi = np.empty(qoff[na], np.int64)
    qh = (qoff[:na] + qoff[1:]) // 2
    qt = qh.copy()
    nb = np.zeros(na, np.int64)
    cursor = np.zeros(na, np.int64)
    no_fresh = np.full(na, -1, np.int64)
    used = np.zeros(na, np.int64)
    nex = ex_arena.shape[0]
    mcap = 1 + nex
    for a in range(na):
        mcap = max(mcap, span_off[a + 1] - span_off[a] + nex + 1)
    mblo = np.empty(mcap, np.int64)
    mbhi = np.empty(mcap, np.int64)
    mtlo = np.empty(mcap, np.int64)
    mthi = np.empty(mcap, np.int64)
    xlo = np.empty(mcap, np.int64)
    xhi = np.empty(mcap, np.int64)
    rlo = np.empty(nex + 1, np.int64)
    rhi = np.empty(nex + 1, np.int64)
    new_lo = np.empty(3, np.int64)
    new_hi = np.empty(3, np.int64)
    new_when = np.empty(3, np.int64)
    at_span = np.full(start_out.shape[0], -1, np.int64)
    return _place_all(ev_block, ev_at, ev_place, blk_arena, blk_bytes, blk_last, capacity,
                      align, ex_arena, ex_first, ex_last, ex_lo, ex_hi, span_off, candidates,
                      start_out, size_out, order_out, note_arena, note_at, note_used, peak,
                      blo, bhi, bwhen, qoff, qw, qlo, qhi, qh, qt, nb, cursor, no_fresh, used,
                      mblo, mbhi, mtlo, mthi, xlo, xhi, rlo, rhi, new_lo, new_hi, new_when,
                      at_span)


@no_refcount
def _place_all(ev_block, ev_at, ev_place, blk_arena, blk_bytes, blk_last, capacity, align,
               ex_arena, ex_first, ex_last, ex_lo, ex_hi, span_off, candidates,
               start_out, size_out, order_out, note_arena, note_at, note_used, peak,
               blo, bhi, bwhen, qoff, qw, qlo, qhi, qh, qt, nb, cursor, no_fresh, used,
               mblo, mbhi, mtlo, mthi, xlo, xhi, rlo, rhi, new_lo, new_hi, new_when,
               at_span):
    """`_walk`'s loop over the events, over the arrays it made (`at_span`: per block
    placed, where its busy span went then)."""
    nex = ex_arena.shape[0]
    nnotes = 0
    nplaced = 0
    for e in range(ev_block.shape[0]):
        b = ev_block[e]
        a = blk_arena[b]
        i = ev_at[e]
        so = span_off[a]
        cap_spans = span_off[a + 1] - so
        if ev_place[e] == 0:  # release: Arena.vacate, then note at the next position
            lo, hi = start_out[b], start_out[b] + size_out[b]
            # where its span went when placed, unless an occupy moved it since: the
            # busy spans are disjoint and not empty, so the one at lo is the bisection's
            # (the release's bisection was a fifth of the walk on the matmul tutorial's
            # tiled step: hundreds of cooling spans, few occupies that move any)
            k = at_span[b]
            if k < 0 or k >= nb[a] or blo[so + k] != lo:
                k = _bisect_lo(blo, so, nb[a], lo)
            if k == nb[a] or blo[so + k] != lo or bhi[so + k] != hi or bwhen[so + k] >= 0:
                return FALLBACK  # (not resident: Arena.taken has no such span)
            bwhen[so + k] = i
            # (after every entry but those of the same release with a higher lo)
            k = qt[a]
            while k > qh[a] and qw[k - 1] == i and qlo[k - 1] > lo:
                k -= 1
            k = _queue_open(qw, qlo, qhi, qoff, qh, qt, a, k)
            if k < 0:
                return FALLBACK
            qw[k], qlo[k], qhi[k] = i, lo, hi
            used[a] -= size_out[b]
            at = i + 1
        else:  # placement: Arena.find (no reserved list when no explicit tensor is live)
            size = blk_bytes[b]
            cap, al = capacity[a], align[a]
            if size <= 0:
                return FALLBACK
            nres = 0
            for x in range(nex):
                if ex_arena[x] == a and ex_first[x] <= blk_last[b] and ex_last[x] >= i:
                    lo, hi = ex_lo[x], ex_hi[x]
                    k = nres  # insertion sort by (lo, hi): few
                    while k > 0 and (rlo[k - 1] > lo or (rlo[k - 1] == lo and rhi[k - 1] > hi)):
                        rlo[k], rhi[k] = rlo[k - 1], rhi[k - 1]
                        k -= 1
                    rlo[k], rhi[k] = lo, hi
                    nres += 1
            if nres:
                fb = _merged(blo, bhi, so, nb[a], rlo, rhi, nres, mblo, mbhi)
                nr = _resident(blo, bhi, bwhen, so, nb[a], xlo, xhi)
                ft = _merged(xlo, xhi, 0, nr, rlo, rhi, nres, mtlo, mthi)
                fblo, fbhi, fbo = mblo, mbhi, 0
                ftlo, fthi, fto = mtlo, mthi, 0
            else:
                fb, ft = nb[a], -1  # (Arena.taken: made where needed)
                fblo, fbhi, fbo = blo, bhi, so
                ftlo, fthi, fto = mtlo, mthi, 0
            start = -1
            best_q = -1  # (the queue entry of the cooling span placed in, if any)
            if nres or no_fresh[a] < 0 or size < no_fresh[a]:
                start = _next_fit(fblo, fbhi, fbo, fb, size, cursor[a], cap, al)
                if start < 0 and nres == 0:
                    no_fresh[a] = size
            if start < 0:
                # the oldest cooling spans, as Arena.find pops them (skipping the
                # stale entries, which the queue never holds)
                best_age, best_s = -2, -1
                for q in range(qh[a], min(qt[a], qh[a] + candidates)):
                    w, slo, shi = qw[q], qlo[q], qhi[q]
                    exact = nres == 0 and shi - slo == size and slo % al == 0
                    last = (shi - size) // al * al
                    for t in range(2):
                        if t == 0 and last == slo:
                            continue
                        s = slo if t == 0 else last
                        if exact:
                            age = w
                        elif nres == 0:
                            age = _window_age_busy(s, size, cap, blo, bhi, bwhen, so,
                                                   nb[a])
                        else:
                            age = _window_age(s, size, cap, ftlo, fthi, fto, ft,
                                              blo, bhi, bwhen, so, nb[a])
                        if age != -2 and (best_age == -2 or age < best_age):
                            best_age, best_s, best_q = age, s, q
                    if best_age != -2 and best_age == w:
                        break
                if best_age != -2:
                    start = best_s
                else:
                    if ft < 0:
                        ft = _resident(blo, bhi, bwhen, so, nb[a], mtlo, mthi)
                    start = _next_fit(ftlo, fthi, fto, ft, size, cursor[a], cap, al)
            if start < 0:
                return FALLBACK  # an eviction: the Python allocator
            end = -(-(start + size) // al) * al
            if end > cap:
                end = cap
            lo, hi = start, end
            # Arena.occupy: the cooling spans there are used up (the parts of the first
            # and last outside [lo, hi) stay cooling); busy's spans are disjoint, so the
            # overlapped ones are a run [k0, k1) that the parts and the new span replace
            n = nb[a]
            k0 = _bisect_lo(blo, so, n, lo)
            if k0 > 0 and bhi[so + k0 - 1] > lo:
                k0 -= 1
            k1 = k0
            while k1 < n and blo[so + k1] < hi:
                if bwhen[so + k1] < 0:
                    return FALLBACK  # a resident span (Python: KeyError)
                k1 += 1
            nnew = 0
            if k1 > k0 and blo[so + k0] < lo:
                new_lo[nnew], new_hi[nnew], new_when[nnew] = blo[so + k0], lo, bwhen[so + k0]
                nnew += 1
            new_lo[nnew], new_hi[nnew], new_when[nnew] = lo, hi, -1
            nnew += 1
            if k1 > k0 and bhi[so + k1 - 1] > hi:
                new_lo[nnew], new_hi[nnew], new_when[nnew] = hi, bhi[so + k1 - 1], \
                    bwhen[so + k1 - 1]
                nnew += 1
            if n - (k1 - k0) + nnew > cap_spans:
                return FALLBACK
            # the queue: each used-up span's entry goes, its parts outside [lo, hi) take
            # its place (no cooling span's lo lies between theirs)
            for x in range(k0, k1):
                w, slo, shi = bwhen[so + x], blo[so + x], bhi[so + x]
                # (the chosen candidate's entry where it is this span, as a rule: the
                # queue's entries are unique, else a bisection)
                if qh[a] <= best_q < qt[a] and qw[best_q] == w and qlo[best_q] == slo \
                        and qhi[best_q] == shi:
                    q = best_q
                else:
                    q = _bisect_age(qw, qlo, qh[a], qt[a], w, slo)
                if q == qt[a] or qw[q] != w or qlo[q] != slo or qhi[q] != shi:
                    return FALLBACK  # (not reached: every cooling span has its entry)
                if slo < lo:
                    qhi[q] = lo
                    if shi > hi:
                        q = _queue_open(qw, qlo, qhi, qoff, qh, qt, a, q + 1)
                        if q < 0:
                            return FALLBACK
                        qw[q], qlo[q], qhi[q] = w, hi, shi
                elif shi > hi:
                    qlo[q] = hi
                else:
                    _queue_close(qw, qlo, qhi, qh, qt, a, q)
            nb[a] = _splice(blo, bhi, bwhen, so, n, k0, k1, new_lo, new_hi, new_when, nnew)
            at_span[b] = k0 + (new_lo[0] < lo)  # (after the part left of it, if any)
            cursor[a] = hi
            used[a] += hi - lo
            start_out[b], size_out[b] = lo, hi - lo
            order_out[nplaced] = b
            nplaced += 1
            at = i
        if used[a] > peak[a]:
            peak[a] = used[a]
        note_arena[nnotes], note_at[nnotes], note_used[nnotes] = a, at, used[a]
        nnotes += 1
    return nnotes


# -- columns in, program out ---------------------------------------------------------

class _Columns:
    """The program's access columns (timing/access_columns.py: each instruction's reads,
    then its writes; loop expansion's copies from their blocks, `vaddr`: the allocations'
    by id) and what the pass reads besides: each access's alloc id and, by its
    `source`, its space's number (`hbm`: HBM's)."""

    def __init__(self, program: Program, vaddr):
        self.access, self.alloc = access_columns.build_with_allocs(
            program.instructions, access_columns.taken_blocks(program), vaddr)
        access = self.access
        self.lo, self.hi = access.acc[:, access_columns.LO], access.acc[:, access_columns.HI]
        self.space, self.source = access.shared[access_columns.SPACE], access.source
        self.hbm = access.hbm_code()


class _Allocs:
    """The allocations' fields as arrays indexed by id (`arena`: the arena's number in
    `keys`, -1 for none; `declared`: the explicit tensors' declared_at, which the pass
    reads of them alone)."""

    def __init__(self, allocs: dict, keys: list):
        aids, (space, core, explicit, vaddr, block_bytes, row_bytes) = allocation_columns(
            allocs, {"space": object, "core": np.int64, "explicit": np.bool_,
                     "vaddr": np.int64, "block_bytes": np.int64, "row_bytes": np.int64})
        self.valid = not len(aids) or (aids.min() >= 0 and aids.max() <= 4 * len(aids) + 1024)
        self.width = int(aids.max()) + 1 if len(aids) and self.valid else 0
        width = max(self.width, 1)  # (an id-0 row to index when there is none)
        self.arena = np.full(width, -1, np.int64)
        self.declared = np.zeros(width, np.int64)
        self.blocks = np.zeros(width, np.int64)  # (their rows' blocks)
        if self.width and len(aids) == width and (aids == np.arange(width)).all():
            # (ids 0..n-1 in order, as a rule: the columns are the tables)
            self.explicit, self.vaddr, self.block_bytes, self.row_bytes = \
                explicit, vaddr, block_bytes, row_bytes
        else:  # (an id not declared: not explicit, one block of 0 bytes)
            self.explicit = np.zeros(width, np.bool_)
            self.vaddr = np.zeros(width, np.int64)
            self.block_bytes = np.ones(width, np.int64)
            self.row_bytes = np.zeros(width, np.int64)
            if self.width:
                for column, values in ((self.explicit, explicit), (self.vaddr, vaddr),
                                       (self.block_bytes, block_bytes),
                                       (self.row_bytes, row_bytes)):
                    column[aids] = values
        if not self.width:
            return
        in_space = _in_spaces(space, [sp for sp, _ in keys])
        for n, (sp, c) in enumerate(keys):
            self.arena[aids[in_space[sp] & (core == c)]] = n
        ex = np.flatnonzero(self.explicit)
        self.declared[ex] = np.fromiter(
            map(attrgetter("declared_at"), map(allocs.__getitem__, ex.tolist())), np.int64,
            len(ex))
        if (self.block_bytes <= 0).any():
            self.valid = False
            return
        self.blocks = -(-self.row_bytes // self.block_bytes)
        # (a block's bytes and an access's width in it as int32, `_Uses`: no such tensor
        # fits on chip; the Python allocator reports it)
        if (self.blocks * self.block_bytes >= 1 << 31).any():
            self.valid = False


def _in_spaces(space, names) -> dict:
    """name -> which items of `space` (an object array) equal it, for each of `names`:
    by identity where an item is the name's own object (as a rule: both are literals,
    interned; NumPy's per-item comparison took ~0.4 ms per name at 66k allocations),
    the other items by value. The objects' ids are read off the array's pointers, as
    machine/record.py `identities` reads them."""
    ids = np.frombuffer(space, np.intp)
    found = {name: ids == id(name) for name in names}
    other = ~np.logical_or.reduce(list(found.values()), initial=False)
    if other.any():
        for name, hits in found.items():
            hits[other] = space[other] == name
    return found


class _Uses:
    """Which blocks each access covers and the walk's events: per instruction the
    blocks first used there, then those last used there, each in the order the
    instruction names them (`mine` of _Allocator.scan). `valid` False: an access the
    Python pass would not handle as a block access (an unknown id, an empty range).
    Per block access (rows `pos`) what its physical bytes follow from (_physical): its
    first block, its offset from that block's start and its width, and for those over
    several blocks (`multi`) their count and block bytes; the explicit tensors
    (`ex_ids`, in order of first access, and `ex_last`, each one's last instruction).
    Numba passes over the accesses (`_block_uses`). Rows, instructions, blocks and
    bytes within a block are int32 (a fresh page costs more than its use: these are
    the pass's largest arrays); `_Allocs` and the sizes checked here keep them below
    2**31."""

    def __init__(self, cols: _Columns, al: _Allocs):
        self.valid = False
        base = self.base = np.zeros(len(al.blocks) + 1, np.int64)
        np.cumsum(al.blocks, out=base[1:])
        self.nblocks = int(base[-1])
        if max(self.nblocks, len(cols.alloc), len(cols.access.ptr)) >= 1 << 31:
            return
        made = _block_uses(cols.alloc, cols.space, cols.source, cols.hbm, cols.lo, cols.hi,
                           cols.access.ptr, al.width, al.explicit, al.arena, al.vaddr,
                           al.block_bytes, al.blocks, base)
        if made is None:
            return  # (an alloc id the program does not declare, Python: KeyError; empty
            # or out-of-range blocks: the Python allocator's own behaviour)
        (self.ex_ids, self.ex_last, self.pos, self.first_block, self.offset, self.width,
         self.multi, self.multi_nb, self.multi_bb, self.touched, self.first, self.last,
         self.placements, self.ev_block, self.ev_at, self.ev_place) = made
        self.blk_alloc = np.repeat(np.arange(len(al.blocks), dtype=np.int64), al.blocks)
        self.valid = True


@jit
def _block_uses(aid, space, source, hbm, lo, hi, ptr, ntables, explicit, arena, vaddr,
                block_bytes, blocks, base):
    """_Uses' columns: of the explicit tensors' accesses (on chip: alloc id >= 0 and
    space[source[row]] not `hbm`) ex_ids and ex_last, and of the automatic tensors', in
    row order (instructions in order: instruction k's rows from ptr[k]), (pos,
    first_block, offset, width, multi, multi_nb, multi_bb, touched (the instructions
    with such an access), first, last, placements, ev_block, ev_at, ev_place); None
    where an on-chip access's alloc id is past the tables (`ntables` ids), an explicit
    tensor's or automatic tensor's allocation has no arena or an automatic one's bytes
    cover no block or blocks past its own.
    Each (instruction, block) is used once, at its first access there (a block met
    again within an instruction: its last use is that instruction); the events of an
    instruction are its placements, then its releases, each in that order."""
    m = aid.shape[0]
    ex_last = np.zeros(blocks.shape[0], np.int64)
    nexp = 0
    for i in range(ntables):
        if explicit[i]:
            nexp += 1
    ex_ids = np.empty(nexp, np.int64)  # in order of first access
    ex_seen = np.zeros(max(ntables, 1), np.bool_)
    nex = 0
    n = 0  # (the block accesses counted first: their columns are made at their size)
    k = 0
    for a in range(m):
        i = aid[a]
        if i < 0 or space[source[a]] == hbm:
            continue
        if i >= ntables or arena[i] < 0:
            return None
        if explicit[i]:
            while ptr[k + 1] <= a:
                k += 1
            ex_last[i] = k  # (rows in instruction order: the last is the latest)
            if not ex_seen[i]:
                ex_seen[i] = True
                ex_ids[nex] = i
                nex += 1
        else:
            n += 1
    ex_ids = ex_ids[:nex]
    pos = np.empty(n, np.int32)
    first_block = np.empty(n, np.int32)
    offset = np.empty(n, np.int32)
    width = np.empty(n, np.int32)
    nbl = base[base.shape[0] - 1]
    first = np.full(nbl, -1, np.int32)
    last = np.full(nbl, -1, np.int32)  # (so far: the instruction that used it last)
    j = 0
    k = -1
    ntouched = 0
    nmulti = 0
    used = 0
    for a in range(m):
        i = aid[a]
        if i < 0 or space[source[a]] == hbm or explicit[i]:
            continue
        rel_lo = lo[a] - vaddr[i]
        w = hi[a] - lo[a]
        bb = block_bytes[i]
        if rel_lo >= 0 and w > 0 and rel_lo + w <= bb:  # (as a rule: in the first
            b0, b1 = 0, 1  # block; its divisions were ~10% of this function)
        else:
            b0 = rel_lo // bb
            b1 = -(-(rel_lo + w) // bb)
        if b1 - b0 <= 0 or b0 < 0 or b1 > blocks[i]:
            return None
        if k < 0 or ptr[k + 1] <= a:
            ntouched += 1
            k = max(k, 0)
            while ptr[k + 1] <= a:
                k += 1
        pos[j], first_block[j], offset[j], width[j] = a, base[i] + b0, rel_lo - b0 * bb, w
        j += 1
        if b1 - b0 > 1:
            nmulti += 1
        for g in range(base[i] + b0, base[i] + b1):
            if last[g] != k:
                if first[g] < 0:
                    first[g] = k
                    used += 1
                last[g] = k
    multi = np.empty(nmulti, np.int32)
    multi_nb = np.empty(nmulti, np.int64)
    multi_bb = np.empty(nmulti, np.int64)
    if nmulti:
        nmulti = 0
        for j in range(n):
            bb = block_bytes[aid[pos[j]]]
            nb = -(-(offset[j] + width[j]) // bb)
            if nb > 1:
                multi[nmulti], multi_nb[nmulti], multi_bb[nmulti] = j, nb, bb
                nmulti += 1
    # (each block used has one placement and one release)
    ev_block = np.empty(2 * used, np.int32)
    ev_at = np.empty(2 * used, np.int32)
    ev_place = np.empty(2 * used, np.int32)
    touched = np.empty(ntouched, np.int32)
    seen = np.full(nbl, -1, np.int32)  # k: placed at k, -2 - k: released at k
    ne = 0
    s = 0
    k = 0
    t = 0  # (the next of `multi`)
    for nt in range(ntouched):  # one instruction's block accesses [s, e) at a time
        while ptr[k + 1] <= pos[s]:
            k += 1
        touched[nt] = k
        e = s + 1
        while e < n and pos[e] < ptr[k + 1]:
            e += 1
        t0 = t
        for release in range(2):
            t = t0
            for j in range(s, e):
                nb = 1
                if t < multi.shape[0] and multi[t] == j:
                    nb = multi_nb[t]
                    t += 1
                for g in range(first_block[j], first_block[j] + nb):
                    if release == 0 and first[g] == k and seen[g] != k:
                        seen[g] = k
                        ev_block[ne], ev_at[ne], ev_place[ne] = g, k, 1
                        ne += 1
                    elif release == 1 and last[g] == k and seen[g] != -2 - k:
                        seen[g] = -2 - k
                        ev_block[ne], ev_at[ne], ev_place[ne] = g, k, 0
                        ne += 1
        s = e
    return (ex_ids, ex_last, pos, first_block, offset, width, multi, multi_nb, multi_bb,
            touched, first, last, used, ev_block, ev_at, ev_place)


def allocate_compiled(program: Program) -> Program | None:
    """allocation.allocate(program) computed over columns, or None (program untouched)
    where a block would need an eviction, or the walk meets what it does not model."""
    core = program.chip.core
    keys, caps, aligns = [], [], []
    for c in range(program.lnc):
        keys += [("sbuf", c), ("psum", c)]
        caps += [core.sbuf_usable_bytes_per_partition, core.psum_bytes_per_partition]
        aligns += [core.sbuf_align_bytes, core.psum_bank_bytes]
    al = _Allocs(program.allocations, keys)
    if not al.valid or max(caps) >= 1 << 31:  # (physical bytes as int32: _physical)
        return None
    # (the instruction columns first: made from the blocks of copies the access
    # columns take)
    fields = instruction_columns(program)
    cols = _Columns(program, al.vaddr)
    u = _Uses(cols, al)
    if not u.valid:
        return None
    access = cols.access
    del cols
    placed = _place(u, al, np.array(caps, np.int64), np.array(aligns, np.int64))
    if placed is None:
        return None
    start, size, order, notes, peak = placed
    plan = _plan(program, u, al, keys, caps, start, size, order, notes, peak)
    lo, hi = _physical(u, start, size)
    rows, touched = u.pos, u.touched
    # what the walk and the plan read dies here, before the physical accesses are made
    del u, al, placed, start, size, order, notes, peak
    # the indices are set to the positions unless they are already (in which case no
    # instruction is listed twice: it would have two indices); read here, next to the
    # rewrite's passes over the instructions, while their objects are in the caches
    instrs = program.instructions
    at = fields.index_read  # (the others' are their positions: noted so)
    if at is None:
        renumber = not np.array_equal(
            np.fromiter([ins.index for ins in instrs], np.int64, len(instrs)),
            np.arange(len(instrs)))
    else:
        renumber = not np.array_equal(
            np.fromiter([instrs[i].index for i in at.tolist()], np.int64, len(at)), at)
    if renumber and len(set(map(id, instrs))) != len(instrs):
        return None  # an instruction listed twice: the Python pass maps it twice
    return _rewrite(program, fields, access, rows, touched, lo, hi, plan, renumber)


def _place(u: _Uses, al: _Allocs, capacity, align):
    """(start, size per block, blocks in placement order, (arena, at, used) notes, peak
    per arena) from the walk, or None where it stops."""
    na = len(capacity)
    blk_arena = al.arena[u.blk_alloc]
    per_arena = np.bincount(blk_arena[u.first >= 0], minlength=na)
    span_off = np.zeros(na + 1, np.int64)
    # busy spans are disjoint and aligned, and an occupy adds at most two
    np.cumsum(np.minimum(capacity // align + 2, 2 * per_arena + 2), out=span_off[1:])
    x = u.ex_ids
    start = np.zeros(u.nblocks, np.int64)
    size = np.zeros(u.nblocks, np.int64)
    order = np.zeros(u.nblocks, np.int64)
    peak = np.zeros(na, np.int64)
    # the walk notes event e's usage when done with it, so the notes overwrite the events
    notes = (u.ev_block, u.ev_at, u.ev_place)
    n = _walk(u.ev_block, u.ev_at, u.ev_place, blk_arena, al.block_bytes[u.blk_alloc],
              u.last, capacity, align, al.arena[x], al.declared[x], u.ex_last[x],
              al.vaddr[x], al.vaddr[x] + al.row_bytes[x], span_off,
              Arena.CANDIDATES, start, size, order, *notes, peak)
    u.ev_block = u.ev_at = u.ev_place = None
    if n == FALLBACK:
        return None
    return start, size, order[:u.placements], tuple(a[:n] for a in notes), peak


def _plan(program, u: _Uses, al: _Allocs, keys, caps, start, size, order, notes,
          peak) -> MemoryPlan:
    """The MemoryPlan _Allocator.run would make, its placements as columns."""
    x, of = u.ex_ids, u.blk_alloc[order]  # explicit tensors first, then the blocks
    columns = PlacementColumns(*map(_narrow, (
        np.concatenate((x, of)), np.concatenate((np.zeros_like(x), order - u.base[of])),
        np.concatenate((al.vaddr[x], start[order])),
        np.concatenate((al.row_bytes[x], size[order])),
        np.concatenate((al.declared[x], u.first[order])),
        np.concatenate((u.ex_last[x], u.last[order])))))
    plan = MemoryPlan(program.allocations, {k: int(c) for k, c in zip(keys, caps)},
                      placement_columns=columns)
    at, used, bounds = _usage_steps(*notes, len(keys))
    for n, k in enumerate(keys):
        part = slice(bounds[n], bounds[n + 1])
        steps = Steps()
        steps.at, steps.value = _int_array(at[part]), _int_array(used[part])
        plan.usage[k] = steps
        plan.peak[k] = int(peak[n])
    return plan


@jit
def _usage_steps(note_arena, note_at, note_used, na):
    """Each arena's step series (Arena.usage: from (0, 0), a note at the index of the
    step before replacing it) from the walk's notes (in order): (at, used), arena a's
    steps at [bounds[a], bounds[a + 1])."""
    count = np.ones(na, np.int64)
    for e in range(note_arena.shape[0]):
        count[note_arena[e]] += 1
    bounds = np.zeros(na + 1, np.int64)
    bounds[1:] = np.cumsum(count)
    at = np.zeros(bounds[na], np.int64)
    used = np.zeros(bounds[na], np.int64)
    end = bounds[:na].copy()  # (each arena's last step; its (0, 0) to start)
    for e in range(note_arena.shape[0]):
        a = note_arena[e]
        if note_at[e] != at[end[a]]:
            end[a] += 1
            at[end[a]] = note_at[e]
        used[end[a]] = note_used[e]
    n = 0
    for a in range(na):  # (the steps packed)
        for k in range(bounds[a], end[a] + 1):
            at[n], used[n] = at[k], used[k]
            n += 1
        bounds[a] = n - (end[a] + 1 - bounds[a])
    bounds[na] = n
    return at[:n], used[:n], bounds


def _narrow(values: np.ndarray) -> np.ndarray:
    """An int array as int32 where its values fit (the plan keeps a column per
    placement: half the bytes)."""
    if not len(values) or fits_int32(values):
        return values.astype(np.int32)
    return values


def _int_array(values: np.ndarray) -> array:
    """An int array as an array("i") where its values fit, else array("q")."""
    values = _narrow(values)
    return array("i" if values.dtype == np.int32 else "q", values.tobytes())


def _physical(u: _Uses, start, size) -> tuple:
    """Each block access's physical bytes [lo, hi) (_Allocator.physical), int32 (bytes
    of an arena), made in u.offset and u.width (which it consumes: fresh pages cost
    more than the adds)."""
    plo, phi = u.offset, u.width
    plo += start.astype(np.int32)[u.first_block]
    phi += plo
    for j, nb, bb in zip(u.multi.tolist(), u.multi_nb.tolist(), u.multi_bb.tolist()):
        g = u.first_block[j] + np.arange(nb)
        st = start[g]
        if not (st == st[0] + np.arange(len(g)) * bb).all():
            plo[j], phi[j] = st.min(), (st + size[g]).max()  # scattered blocks: their box
    u.offset = u.width = None
    return plo, phi


def _rewrite(program, fields, access, rows, touched, lo, hi, plan, renumber) -> Program:
    """The program with each block access (`rows` of the columns `access`; touched:
    their instructions, each once) at its physical bytes [lo, hi), indices set and
    order edges copied as _Allocator.run does (no instruction was inserted, so every
    index stays), and its access columns (made from the virtual ones:
    timing/access_columns.py `moved`), which the physical Access objects are made from
    when first read (`_defer_move`), and instruction columns (`fields`, the program's:
    timing/instruction_columns.py), which hand the list scheduler the attrs and
    engines."""
    instrs = program.instructions
    if renumber:
        deque(map(setattr, instrs, repeat("index"), range(len(instrs))), 0)
    renumbered = range(len(instrs) + 1)
    orders = []  # as _Allocator.run: a new list in new attrs
    attrs = fields.ids("attrs")
    for i, dep in access_columns.depends_on(instrs, attrs):
        ins = instrs[i]
        new = [renumbered[d] for d in dep]
        ins.attrs = attrs.base[i] = {**ins.attrs, "depends_on": new}
        orders.append((i, new))
    out = list(instrs)
    allocated = Program(program.chip, program.lnc, out, program.allocations, plan,
                        [(c, renumbered[at]) for c, at in program.fences])
    allocated._access_columns = access_columns.moved(access, out, rows, lo, hi, orders)
    allocated._instruction_columns = fields = fields.carried(out)
    fields.hand("attrs", attrs)
    fields.hand("engine", fields.ids("engine"))
    _defer_move(allocated, rows, touched)
    return allocated


def _defer_move(program, rows, touched) -> None:
    """Give each instruction of the allocated `program` with an access at `rows` of its
    access columns (`touched`: those instructions) its physical accesses when first read:
    until then it holds its virtual reads and writes, as an _Unplaced of this program
    (or, a loop copy whose own are not made yet, its template's, of its block's class,
    which the move takes where it moves every copy of that class: `take_blocks`).
    The passes after the allocation read the access columns, and the cost model the
    operands' fields other than lo and hi (machine/record.py `held_reads`), so a
    timing-only profile never makes them."""
    if not len(rows):
        return
    instrs = program.instructions
    cols = program._access_columns
    # (the blocks of copies the access columns found all of one class: not read again)
    one_class, cols.one_class = cols.one_class, []
    if len(touched) == len(instrs):  # (as a rule: each has an on-chip access)
        mine, ids = instrs, identities_of_copies(instrs, one_class)
    else:
        objects = np.fromiter(instrs, object, len(instrs))[touched]
        mine, ids, one_class = objects.tolist(), np.frombuffer(objects, np.intp).copy(), ()
        del objects
    pending = _PendingMove(program, ids, rows)
    pending.deferred, pending.runs = pending_operands(mine, one_class)
    # (its `__del__` is `pending.let_go` itself, as a loop copy's is: machine/record.py
    # `deferred_instructions`)
    unplaced = type("_Unplaced", (_Unplaced,), {"__slots__": (), "_pending": pending,
                                                "__del__": pending.let_go})
    pending.classes = {unplaced}
    at = 0
    for start, stop in pending.take_blocks():  # (their copies keep their class)
        deque(map(setattr, mine[at:start], repeat("__class__"), repeat(unplaced)), 0)
        at = stop
    deque(map(setattr, mine[at:] if at else mine, repeat("__class__"), repeat(unplaced)),
          0)


class _PendingMove:
    """The rows of an allocated program's access columns that moved, from which the
    physical accesses of its instructions (`ids`: their identities) are made: kept
    until one of them is first read, or the last of them dies (then let go of at once:
    their class, a cycle, waits for the collector). It holds no instruction (an object
    array in a cycle is one the collector cannot see through), and the program weakly:
    the first read makes them all (`_move`) where the program still lists them where
    the pass left them, else the one read, and from then on each as it is read,
    sharing the Access objects as `_move` does."""

    def __init__(self, program, ids, rows):
        self.program = weakref.ref(program)
        self.ids = ids  # (id() of each of them, an intp array of its own)
        cols = program._access_columns  # (its arrays: it holds the instructions)
        self.cols = (cols.acc, cols.ptr, cols.wptr)
        # (int32, _Uses.pos; a copy made now: the rows outlive the pass, and where they
        # were made, among its columns, they kept ~3 MiB more on the strided memory
        # kernel's profile peak, benchmarks/memory.py)
        self.rows = rows.copy()
        # `let_go`, once per one of them made or dead: a countdown whose last step lets
        # go of this state (`_let_go_all`, and again on any step after: it lets go
        # once), C calls but the last (a death's `__del__` is it: ~30 ns, against ~60
        # for a Python method). No generator: the collector may close one caught in a
        # cycle before the deaths it finalizes with it call it (StopIteration there)
        self.let_go = chain(repeat(None, len(ids) - 1),
                            starmap(self._let_go_all, repeat(()))).__next__
        self.made: dict | None = None  # (id(virtual), lo, hi) -> (virtual, its Access)
        self.slot: dict | None = None  # id(instruction) -> its number among them
        self.spans = None  # (their positions, their first rows (and len(rows)))
        # the loop copies among them whose virtual accesses are not made yet, made
        # first (machine/record.py pending_operands: their held tuples are templates'),
        # as [their block's pending operands, how many], and where they lie; counted by
        # their blocks until let go of (or given theirs)
        self.deferred, self.runs = [], None
        self.classes: set = set()  # (of the instructions it makes: `take_blocks`)

    def take_blocks(self) -> list:
        """Give this move the class of each block of loop copies all of whose copies not
        made yet it holds: reading one then makes it here, and its death counts down here,
        as an _Unplaced's (one class changed, not each copy's; machine/record.py
        `_Deferred`). Returns the (start, stop) among them of those blocks' runs, in
        order."""
        taken = set()
        for j, (block, count) in enumerate(self.deferred):
            cls = block.deferred
            if count == block.alive:  # (all those still of its class are here)
                cls._pending, cls.__del__ = self, self.let_go
                self.classes.add(cls)
                taken.add(j)
            else:  # (its copies here are given this move's class: _defer_move)
                block.reclassed = True
        if not taken:
            return []
        return [(s, e) for s, e, j in self.runs.tolist() if j in taken]

    def make(self, ins) -> None:
        """Make the physical accesses of `ins`, an _Unplaced of this pending move (and
        of all the others where their program still lists them in place)."""
        if self.made is None:
            rows = self.rows
            ins_of = np.searchsorted(self.cols[1], rows, "right") - 1
            at = run_starts(ins_of)
            touched = ins_of[at]
            program = self.program()
            instrs = program.instructions if program is not None else ()
            if len(instrs) > touched[-1]:
                mine = np.fromiter(instrs, object, len(instrs))[touched]
                if np.array_equal(np.frombuffer(mine, np.intp), self.ids) and \
                        set(map(type, mine)) <= self.classes:
                    self._copies_made(mine)
                    self._all(mine, touched)
                    return
            self.made, self.slot = {}, dict(zip(self.ids.tolist(), range(len(self.ids))))
            self.spans = (touched.tolist(), at.tolist() + [len(rows)])
        k = self.slot[id(ins)]
        self._copy_made(ins, k)
        touched, at = self.spans
        self._one(ins, touched[k], at[k], at[k + 1])

    def _let_go_all(self) -> None:
        """Let go of this state (once: a later call finds nothing to let go of)."""
        self.cols = self.rows = self.made = self.slot = self.ids = self.spans = None
        # (their blocks count them no more; no module global read: this may run as the
        # interpreter exits)
        for pending, count in self.deferred:
            pending.let_go(count)
        self.deferred, self.runs = [], None

    def _copies_made(self, mine) -> None:
        """Make the virtual accesses of the loop copies among `mine` (an object array:
        all of them) that are not made yet."""
        if not self.deferred:
            return
        s, e, j = self.runs.T
        size = e - s
        slots = _ranges(s, size)
        owner = np.repeat(j, size)
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(1, len(self.deferred)))
        for entry, at in zip(self.deferred, np.split(slots[order], cuts)):
            pending, copies = entry[0], mine[at].tolist()
            pending.give(copies, pending.positions(copies))
            if pending.deferred._pending is self:  # (given back by their block)
                entry[1] = 0

    def _copy_made(self, ins, k: int) -> None:
        """Make those of `ins`, the k-th of them, where it is such a copy."""
        runs = self.runs
        if runs is None:
            return
        j = int(np.searchsorted(runs[:, 0], k, "right")) - 1
        if j >= 0 and k < runs[j, 1]:
            entry = self.deferred[runs[j, 2]]
            pending = entry[0]
            taken = type(ins) is pending.deferred  # (its block's class: given back there)
            pending.give([ins], [pending.position(ins)])
            entry[1] -= taken

    def _all(self, mine, touched) -> None:
        (acc, ptr, wptr), rows = self.cols, self.rows.astype(np.int64)
        self._let_go_all()
        deque(map(setattr, mine.tolist(), repeat("__class__"), repeat(Instruction)), 0)
        objs = np.empty(int(ptr[-1]), object)  # (the virtual accesses, at their rows)
        sizes = ptr[touched + 1] - ptr[touched]
        at = _ranges(ptr[touched], sizes)
        objs[at] = np.fromiter(chain.from_iterable(map(
            add, map(held_reads, mine.tolist()), map(held_writes, mine.tolist()))),
            object, len(at))
        del at
        _move(mine, objs, ptr, wptr, rows, acc[rows, access_columns.LO],
              acc[rows, access_columns.HI])

    def _one(self, ins, i, r0, r1) -> None:
        """Make those of `ins`, instruction i, whose moved accesses are rows[r0:r1]."""
        (acc, ptr, wptr), rows = self.cols, self.rows[r0:r1].tolist()
        first, split = int(ptr[i]), int(wptr[i])
        accesses = list(held_reads(ins) + held_writes(ins))
        made = self.made
        for r in rows:
            v = accesses[r - first]
            key = (id(v), int(acc[r, access_columns.LO]), int(acc[r, access_columns.HI]))
            hit = made.get(key)
            if hit is None:
                hit = made[key] = (v, with_bytes(v, key[1], key[2]))
            accesses[r - first] = hit[1]
        ins.__class__ = Instruction
        if rows[0] < split:
            ins.reads = tuple(accesses[:split - first])
        if rows[-1] >= split:
            ins.writes = tuple(accesses[split - first:])
        self.let_go()


def _ranges(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The positions starts[i], ..., starts[i] + sizes[i] - 1 of each range i, in order."""
    return np.repeat(starts - np.cumsum(sizes) + sizes, sizes) + np.arange(int(sizes.sum()))


class _Unplaced(MadeWhenRead):
    """An Instruction of an allocated program whose physical accesses are not made yet
    (a subclass per program, `_pending` its move): it holds its virtual reads and
    writes until they are."""
    __slots__ = ()
    _pending: _PendingMove


def _move(mine, objs, ptr, wptr, rows, lo, hi) -> None:
    """Each instruction of `mine` (an object array: those with an access at `rows`, in
    program order) gets new reads and writes tuples with the accesses at `rows` (of
    `objs`, an object array of the accesses in the row order of access columns of
    pointers ptr and wptr) at bytes [lo, hi): a chunk of instructions at a time, so
    that the virtual accesses die as it goes (`objs` is emptied).
    One new Access per (virtual Access object, lo, hi), and as _Allocator one int
    object per byte value."""
    k = len(rows)
    ins_of = np.searchsorted(ptr, rows, "right") - 1
    # (the accesses and instructions as object arrays: fancy indexing in C)
    ids = np.frombuffer(objs, np.intp)[rows]  # (id() of each: the array's pointers)
    group, first, shared = _distinct(ids, lo, hi)
    del ids
    again = ~first
    made = np.empty(len(shared), object) if again.any() else None
    lo, hi = _int_objects(lo, hi)
    # chunks of whole instructions of about _CHUNK moved accesses
    at = run_starts(ins_of)
    touched = ins_of[at]
    cut = np.unique(np.searchsorted(at, np.arange(0, k, _CHUNK), "right") - 1)
    read = rows < wptr[ins_of]  # (an instruction keeps its reads or writes tuple where
    # none of them moves)
    del ins_of
    sides = [(name, np.flatnonzero(np.logical_or.reduceat(moves, at)), start[touched],
              stop[touched] - start[touched])
             for name, moves, start, stop in (("reads", read, ptr[:-1], wptr),
                                              ("writes", ~read, wptr, ptr[1:]))]
    del read
    for t0, t1 in zip(cut.tolist(), [*cut[1:].tolist(), len(at)]):
        r0, r1 = at[t0], (at[t1] if t1 < len(at) else k)
        new = np.flatnonzero(first[r0:r1]) + r0
        places = rows[new]
        news = np.fromiter(with_bytes_all(objs[places].tolist(), lo[new].tolist(),
                                          hi[new].tolist()), object, len(new))
        objs[places] = news
        if made is not None:
            keep = shared[group[new]]
            made[group[new[keep]]] = news[keep]
            met = np.flatnonzero(again[r0:r1]) + r0
            objs[rows[met]] = made[group[met]]
        del news
        for name, moving, start, size in sides:
            sel = moving[np.searchsorted(moving, t0):np.searchsorted(moving, t1)]
            _set_tuples(mine[sel], name, objs, start[sel], size[sel])
        objs[ptr[touched[t0]]:ptr[touched[t1 - 1] + 1]] = None


def _set_tuples(instrs, name, objs, start, size) -> None:
    """Set attribute `name` of each of `instrs` (an object array) to the tuple of the
    `size` items of `objs` from `start`: the tuples of one size at a time, made by zip
    over their columns."""
    for n in np.unique(size).tolist():
        of = size == n
        p = start[of]
        deque(map(setattr, instrs[of].tolist(), repeat(name),
                  zip(*[objs[p + j].tolist() for j in range(n)])), 0)


def _int_objects(lo, hi) -> tuple:
    """lo and hi (physical bytes: from 0 to the arena's capacity) as object arrays
    holding one int object per value."""
    top = int(max(lo.max(), hi.max())) + 1
    seen = np.zeros(top, np.bool_)
    seen[lo] = seen[hi] = True
    values = np.flatnonzero(seen)
    table = np.empty(top, object)
    table[values] = values.tolist()
    return table[lo], table[hi]


def _distinct(ids, lo, hi) -> tuple:
    """The distinct (object id, lo, hi) of the rows: (per row its group's number,
    whether the row is the group's first; per group whether it has more rows)."""
    k = len(ids)
    order = np.argsort(ids, kind="stable")
    same = ids[order[1:]] == ids[order[:-1]]
    if same.any():  # the rows of an object met more than once, by (lo, hi) among them
        run = np.zeros(k, np.bool_)
        run[1:] |= same
        run[:-1] |= same
        sub = order[run]
        order[run] = sub[np.lexsort((hi[sub], lo[sub], ids[sub]))]
    starts = np.ones(k, np.bool_)
    starts[1:] = ((ids[order[1:]] != ids[order[:-1]]) | (lo[order[1:]] != lo[order[:-1]])
                  | (hi[order[1:]] != hi[order[:-1]]))
    group = np.empty(k, np.int64)
    group[order] = np.cumsum(starts) - 1
    starts = np.flatnonzero(starts)
    first = np.zeros(k, np.bool_)
    first[np.minimum.reduceat(order, starts)] = True
    shared = np.diff(starts, append=k) > 1
    return group, first, shared


