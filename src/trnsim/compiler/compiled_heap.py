"""A min-heap of (a, b, c) triples held in three arrays from position `off`, compiled:
heapq's push and pop (the same sift order), for the compiled allocation's free spaces
(by release time, compiler/compiled_allocation.py). (The compiled list scheduler keeps
its own heaps of pairs and a tournament tree: compiler/compiled_schedule.py.)"""
from __future__ import annotations

from ..machine.compiled import jit


@jit
def _less(ak, ai, aj, bk, bi, bj):
    if ak != bk:
        return ak < bk
    if ai != bi:
        return ai < bi
    return aj < bj


@jit
def _sift_down(a, b, c, off, startpos, pos):
    """heapq._siftdown: the item at pos moves up towards startpos."""
    na, nb, nc = a[off + pos], b[off + pos], c[off + pos]
    while pos > startpos:
        parent = (pos - 1) >> 1
        q = off + parent
        if _less(na, nb, nc, a[q], b[q], c[q]):
            a[off + pos], b[off + pos], c[off + pos] = a[q], b[q], c[q]
            pos = parent
            continue
        break
    a[off + pos], b[off + pos], c[off + pos] = na, nb, nc


@jit
def push(a, b, c, off, n, x, y, z):
    """heappush of (x, y, z) onto the n items at off; returns the new count."""
    a[off + n], b[off + n], c[off + n] = x, y, z
    _sift_down(a, b, c, off, 0, n)
    return n + 1


@jit
def pop(a, b, c, off, n):
    """heappop of the n items at off (the caller read the least, at off); returns the
    new count."""
    n -= 1
    if n > 0:
        a[off], b[off], c[off] = a[off + n], b[off + n], c[off + n]
        na, nb, nc = a[off], b[off], c[off]
        pos, child = 0, 1
        while child < n:  # heapq._siftup
            right = child + 1
            if right < n and not _less(a[off + child], b[off + child], c[off + child],
                                       a[off + right], b[off + right], c[off + right]):
                child = right
            a[off + pos], b[off + pos], c[off + pos] = \
                a[off + child], b[off + child], c[off + child]
            pos = child
            child = 2 * pos + 1
        a[off + pos], b[off + pos], c[off + pos] = na, nb, nc
        _sift_down(a, b, c, off, 0, pos)
    return n
