"""Dependencies through memory: the last writer and the readers since of every byte
range of every memory, as interval maps (one per SBUF/PSUM of a core, one for the HBM
all cores share), so that each access finds the instructions it must wait for without
comparing it against every earlier one.

An on-chip access covers partitions [p_lo, p_hi) x bytes [lo, hi) of its memory (its
bounding box); an HBM access the bytes [lo, hi) of the shared virtual address space.

- read:  RAW on the last writer of every overlapping part.
- write: WAW on the last writer, WAR on every reader since (the latest reader of each
  engine track: an engine finishes its instructions in order).

Writes split the map exactly at their bounds (byte and partition), so a tile rewritten in
a loop depends only on what touched that tile; reads never split: a read is recorded on
every overlapping part, and reads of memory nobody wrote extend the neighbouring
read-only part, so large inputs read tile by tile stay a handful of entries. (A later
write to part of such a range then waits for all of its readers: a conservative
dependency, never a missing one.)
"""
from __future__ import annotations

from bisect import bisect_right


class Rec:
    """One partition range of a byte segment: its last writer and the readers since."""
    __slots__ = ("p_lo", "p_hi", "writer", "readers")

    def __init__(self, p_lo, p_hi, writer, readers):
        self.p_lo = p_lo
        self.p_hi = p_hi
        self.writer = writer  # instruction index or None
        self.readers = readers  # {track key: instruction index}

    def copy(self, p_lo=None, p_hi=None):
        return Rec(self.p_lo if p_lo is None else p_lo, self.p_hi if p_hi is None else p_hi,
                   self.writer, dict(self.readers))


class SpaceMap:
    """Non-overlapping byte segments [los[i], his[i]), each a list of Recs."""
    __slots__ = ("los", "his", "recs")

    def __init__(self):
        self.los: list[int] = []
        self.his: list[int] = []
        self.recs: list[list[Rec]] = []

    def __len__(self):
        return len(self.los)

    def _first(self, lo: int) -> int:
        """Index of the first segment that ends after `lo`."""
        i = bisect_right(self.los, lo) - 1
        if i < 0:
            return 0
        return i if self.his[i] > lo else i + 1

    # -- reads ------------------------------------------------------------------
    def read(self, p_lo, p_hi, lo, hi, idx, tkey, out: list) -> None:
        """Record a read; append the writers it depends on (RAW) to `out`."""
        los, his, recs = self.los, self.his, self.recs
        i = self._first(lo)
        cur = lo
        n = len(los)
        while i < n and los[i] < hi:
            if los[i] > cur:  # a gap nobody touched yet: a read-only segment
                if self._extend_readonly(i, cur, los[i], p_lo, p_hi, idx, tkey):
                    pass
                else:
                    self._insert(i, cur, los[i], [Rec(p_lo, p_hi, None, {tkey: idx})])
                    i += 1
                    n += 1
            seg = recs[i]
            covered = 0
            for r in seg:
                if r.p_lo < p_hi and p_lo < r.p_hi:
                    if r.writer is not None and r.writer != idx:
                        out.append(r.writer)
                    r.readers[tkey] = idx
                    covered += min(r.p_hi, p_hi) - max(r.p_lo, p_lo)
            if covered < p_hi - p_lo:
                _fill_partitions(seg, p_lo, p_hi, idx, tkey)
            cur = his[i]
            i += 1
        if cur < hi:
            if not self._extend_readonly(i, cur, hi, p_lo, p_hi, idx, tkey):
                self._insert(i, cur, hi, [Rec(p_lo, p_hi, None, {tkey: idx})])

    def _extend_readonly(self, i, lo, hi, p_lo, p_hi, idx, tkey) -> bool:
        """Grow the read-only segment just before position i (ending at lo) to hi."""
        j = i - 1
        if j < 0 or self.his[j] != lo:
            return False
        seg = self.recs[j]
        if len(seg) != 1:
            return False
        r = seg[0]
        if r.writer is not None or r.p_lo != p_lo or r.p_hi != p_hi:
            return False
        self.his[j] = hi
        r.readers[tkey] = idx
        return True

    def _insert(self, i, lo, hi, seg):
        self.los.insert(i, lo)
        self.his.insert(i, hi)
        self.recs.insert(i, seg)

    # -- writes -----------------------------------------------------------------
    def write(self, p_lo, p_hi, lo, hi, idx, tkey, waw: list, war: list) -> None:
        """Record a write; append the writers (WAW) and readers (WAR) it waits for."""
        los, his, recs = self.los, self.his, self.recs
        i = self._first(lo)
        n = len(los)
        # fast path: exactly one segment [lo, hi) holding one matching partition range
        if i < n and los[i] == lo and his[i] == hi:
            seg = recs[i]
            if len(seg) == 1 and seg[0].p_lo == p_lo and seg[0].p_hi == p_hi:
                r = seg[0]
                if r.writer is not None and r.writer != idx:
                    waw.append(r.writer)
                for v in r.readers.values():
                    if v != idx:
                        war.append(v)
                seg[0] = Rec(p_lo, p_hi, idx, {})
                return
        # split the segments straddling lo and hi
        if i < n and los[i] < lo:
            self._split(i, lo)
            i += 1
            n += 1
        j = i
        while j < n and los[j] < hi:
            j += 1
        if j > i and his[j - 1] > hi:
            self._split(j - 1, hi)
            n += 1
        # now segments i..j-1 lie inside [lo, hi); fill the gaps and update
        cur = lo
        k = i
        clean = True
        while k < j:
            if los[k] > cur:
                self._insert(k, cur, los[k], [Rec(p_lo, p_hi, idx, {})])
                k += 1
                j += 1
            seg = recs[k]
            new = []
            for r in seg:
                if r.p_lo < p_hi and p_lo < r.p_hi:
                    if r.writer is not None and r.writer != idx:
                        waw.append(r.writer)
                    for v in r.readers.values():
                        if v != idx:
                            war.append(v)
                    if r.p_lo < p_lo:
                        new.append(r.copy(p_hi=p_lo))
                    if r.p_hi > p_hi:
                        new.append(r.copy(p_lo=p_hi))
                else:
                    new.append(r)
            if new:
                clean = False
            new.append(Rec(p_lo, p_hi, idx, {}))
            recs[k] = new
            cur = his[k]
            k += 1
        if cur < hi:
            self._insert(k, cur, hi, [Rec(p_lo, p_hi, idx, {})])
            k += 1
            j += 1
        if clean and j - i > 1:  # one segment for the whole write
            del los[i + 1:j], his[i:j - 1], recs[i + 1:j]

    def _split(self, i, at):
        """Split segment i at byte `at` (inside it)."""
        seg = self.recs[i]
        self.los.insert(i + 1, at)
        self.his.insert(i + 1, self.his[i])
        self.his[i] = at
        self.recs.insert(i + 1, [r.copy() for r in seg])


def _fill_partitions(seg: list, p_lo, p_hi, idx, tkey) -> None:
    """Add read-only Recs for the partitions of [p_lo, p_hi) no Rec of `seg` covers."""
    spans = sorted((r.p_lo, r.p_hi) for r in seg if r.p_lo < p_hi and p_lo < r.p_hi)
    cur = p_lo
    for a, b in spans:
        if a > cur:
            seg.append(Rec(cur, a, None, {tkey: idx}))
        cur = max(cur, b)
    if cur < p_hi:
        seg.append(Rec(cur, p_hi, None, {tkey: idx}))
