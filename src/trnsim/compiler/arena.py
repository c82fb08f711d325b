"""One core's SBUF or PSUM as the allocator (trnsim.compiler.allocation) sees it:
resident blocks, and free space that remembers when each part was last released."""
from __future__ import annotations

import bisect
import heapq

from ..machine.memory import next_fit
from .plan import Steps


class Arena:
    """One core's SBUF or PSUM during the pass: its resident blocks, and its free space
    with the time each part was last released (`cooling`: span -> instruction index),
    so that a placement takes space that was never used, else the space released
    longest ago (a buffer just read by the previous iteration is reused last, which
    keeps false write-after-read waits out of the loop's pipeline)."""

    CANDIDATES = 4  # cooling spans tried, oldest first, before settling

    def __init__(self, space: str, core: int, capacity: int, align: int, chip_name: str):
        self.space, self.core, self.capacity, self.align = space, core, capacity, align
        self.chip_name = chip_name
        self.resident: dict = {}  # its blocks (allocation._Block), in placement order
        self.taken: list[tuple[int, int]] = []  # resident [start, end), sorted
        self.busy: list[tuple[int, int]] = []  # resident or cooling spans, sorted
        self.cooling: dict[tuple[int, int], int] = {}
        self.heap: list[tuple[int, tuple[int, int]]] = []  # (released at, span)
        self.explicit: list[tuple[int, int, int, int]] = []  # (first, last, lo, hi)
        self.cursor = 0
        self.no_fresh = None  # a size no never-used gap holds (they only shrink)
        self.used = 0
        self.peak = 0
        self.usage = Steps([(0, 0)])

    def footprint(self, start: int, nbytes: int) -> int:
        end = -(-(start + nbytes) // self.align) * self.align
        return min(end, self.capacity) - start

    def note(self, index: int) -> None:
        used = self.used
        if used > self.peak:
            self.peak = used
        self.usage.note(index, used)

    # -- free space -------------------------------------------------------------------
    def occupy(self, lo: int, hi: int) -> None:
        """A block now holds [lo, hi): cooling spans there are used up (their parts
        outside it stay cooling)."""
        busy = self.busy
        k = bisect.bisect_left(busy, (lo,))
        if k and busy[k - 1][1] > lo:
            k -= 1
        while k < len(busy) and busy[k][0] < hi:
            span = busy.pop(k)
            when = self.cooling.pop(span)  # (a resident span never overlaps a new one)
            for part in ((span[0], lo), (hi, span[1])):
                if part[0] < part[1]:
                    self._cool(part, when)
                    if part[0] < lo:
                        k += 1
        bisect.insort(busy, (lo, hi))
        bisect.insort(self.taken, (lo, hi))

    def vacate(self, lo: int, hi: int, when: int) -> None:
        self.taken.remove((lo, hi))
        self.cooling[(lo, hi)] = when
        heapq.heappush(self.heap, (when, (lo, hi)))

    def _cool(self, span, when) -> None:
        bisect.insort(self.busy, span)
        self.cooling[span] = when
        heapq.heappush(self.heap, (when, span))

    def find(self, size: int, reserved: list) -> int | None:
        """Where `size` bytes go: never-used space (next-fit), else the window of free
        space released longest ago; None when no free window fits."""
        busy, taken = self.busy, self.taken
        if reserved:
            busy, taken = merged(busy + reserved), merged(taken + reserved)
        if reserved or self.no_fresh is None or size < self.no_fresh:
            start = next_fit(busy, size, self.cursor, 0, self.capacity, self.align)
            if start is not None:
                return start
            if not reserved:
                self.no_fresh = size
        best, tried = None, []
        while self.heap and len(tried) < self.CANDIDATES:
            when, span = heapq.heappop(self.heap)
            if self.cooling.get(span) != when:
                continue  # stale: used up since
            tried.append((when, span))
            # a window that is exactly one cooling span holds nothing else (busy spans
            # are disjoint; reserved bytes aside): its age is that span's release
            exact = not reserved and span[1] - span[0] == size and span[0] % self.align == 0
            last = (span[1] - size) // self.align * self.align
            for s in (span[0], last) if last != span[0] else (last,):
                age = when if exact else self._window_age(s, size, taken)
                if age is not None and (best is None or age < best[0]):
                    best = (age, s)
            if best is not None and best[0] == when:
                break  # nothing older is left to find
        for item in tried:
            heapq.heappush(self.heap, item)
        if best is not None:
            return best[1]
        return next_fit(taken, size, self.cursor, 0, self.capacity, self.align)

    def _window_age(self, s: int, size: int, taken: list) -> int | None:
        """The latest release among the cooling spans in [s, s + size), or None if the
        window leaves the memory or holds a resident block."""
        e = s + size
        if s < 0 or e > self.capacity:
            return None
        k = bisect.bisect_left(taken, (e,)) - 1
        if k >= 0 and taken[k][1] > s:
            return None
        busy = self.busy
        k = bisect.bisect_left(busy, (s,))
        if k and busy[k - 1][1] > s:
            k -= 1
        age = -1
        while k < len(busy) and busy[k][0] < e:
            age = max(age, self.cooling.get(busy[k], -1))
            k += 1
        return age


def merged(spans: list) -> list:
    """Overlapping [lo, hi) spans merged, sorted."""
    out: list = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
