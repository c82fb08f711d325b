"""Dependencies through memory: the last writer and the readers since of every byte
range of every memory, as interval maps (one per SBUF/PSUM of a core, one for the HBM
all cores share), so that each access finds the instructions it must wait for without
comparing it against every earlier one.

An on-chip access covers partitions [p_lo, p_hi) x bytes [lo, hi) of its memory (its
bounding box); an HBM access the bytes [lo, hi) of the shared virtual address space, or,
in row form, an exact box of rows x bytes within a row (HbmMap).

- read:  RAW on the last writer of every overlapping part.
- write: WAW on the last writer, WAR on every reader since (the latest reader of each
  engine track: an engine finishes its instructions in order).

Writes split the map exactly at their bounds (byte and partition), so a tile rewritten in
a loop depends only on what touched that tile; reads never split: a read is recorded on
every overlapping part, and reads of memory nobody wrote extend the neighbouring
read-only part, so large inputs read tile by tile stay a handful of entries. (A later
write to part of such a range then waits for all of its readers: a conservative
dependency, never a missing one.) Not so in HBM, whose producers are then filtered by
the accesses' exact overlap: a later reader recorded on bytes it did not read would be
dropped there, and with it the earlier reader of its track it stood for. So in HBM a
read splits the segments it straddles at its bounds, as writes do, splits the Recs
whose partitions it covers only some of where it would replace another reader of its
own track there, and extends a read-only part only where it replaces none.
"""
from __future__ import annotations

from bisect import bisect_right

from .costs import itemsize


def _producers(r, idx, waw: list, war: list) -> None:
    """Append Rec r's writers (WAW) and readers (WAR) other than instruction idx."""
    for w in r.writers:
        if w != idx:
            waw.append(w)
    for v in r.readers.values():
        if v != idx:
            war.append(v)


def _rewrite(r, mine: tuple, waw: list, war: list) -> None:
    """A dense write of exactly Rec r's box: its producers (`_producers`), then the
    writer is the Rec's only writer, with no readers. (A Rec belongs to one segment:
    rewritten in place.)"""
    _producers(r, mine[0], waw, war)
    r.writers = mine
    if r.readers:
        r.readers = {}


class Rec:
    """One partition range of a byte segment: its last writers and the readers since.

    A write that covers every byte of its box replaces the writers; a strided one (a
    box with holes) is added to them, since it may have left some bytes to the earlier
    writers."""
    __slots__ = ("p_lo", "p_hi", "writers", "readers")

    def __init__(self, p_lo, p_hi, writers, readers):
        self.p_lo = p_lo
        self.p_hi = p_hi
        self.writers = writers  # tuple of instruction indices
        self.readers = readers  # {track key: instruction index}

    def copy(self, p_lo=None, p_hi=None):
        return Rec(self.p_lo if p_lo is None else p_lo, self.p_hi if p_hi is None else p_hi,
                   self.writers, dict(self.readers))


_INDEXED = 8  # a segment with this many Recs gets an index (_RecIndex)


class _RecIndex:
    """The Recs of one segment by exact partition range (`exact`), and in partition
    order (`recs`, their `los` and `his`: the ranges are disjoint, so one order sorts
    both ends), to find the Recs an access overlaps by bisection."""
    __slots__ = ("exact", "los", "his", "recs")

    def __init__(self, seg):
        self.exact = {(r.p_lo, r.p_hi): r for r in seg}
        self.recs = sorted(seg, key=_p_lo)
        self.los = [r.p_lo for r in self.recs]
        self.his = [r.p_hi for r in self.recs]

    def add(self, r) -> None:
        self.exact[(r.p_lo, r.p_hi)] = r
        k = bisect_right(self.los, r.p_lo)
        self.los.insert(k, r.p_lo)
        self.his.insert(k, r.p_hi)
        self.recs.insert(k, r)

    def append(self, seg: list, r) -> None:
        """Append Rec r (overlapping none of the segment's) to the segment `seg`."""
        seg.append(r)
        self.add(r)

    def _first(self, p_lo) -> int:
        """Position of the first Rec (in partition order) ending after p_lo."""
        return bisect_right(self.his, p_lo)

    def at_most(self, n: int, p_lo, p_hi) -> bool:
        """Whether at most n Recs overlap partitions [p_lo, p_hi)."""
        k = self._first(p_lo) + n
        return not (k < len(self.los) and self.los[k] < p_hi)

    def overlapping(self, p_lo, p_hi) -> list:
        """The Recs overlapping partitions [p_lo, p_hi), in partition order."""
        los, k = self.los, self._first(p_lo)
        end = bisect_right(los, p_hi - 1, k)
        return self.recs[k:end]


def _p_lo(r) -> int:
    return r.p_lo


class SpaceMap:
    """Non-overlapping byte segments [los[i], his[i]), each a list of Recs with disjoint
    partition ranges.

    `wbox` bounds every write recorded so far and `abox` every access, as (p_lo, p_hi,
    lo, hi): no Rec with writers lies outside wbox and none at all outside abox, so a
    query outside them (an HBM access looking up another row pitch's map) returns at
    once instead of walking every segment.

    `exact[id(seg)]` is (seg, its _RecIndex) for a long segment an access has looked up
    (dropped when the segment is replaced): a tile of a matrix stored row-tile by
    row-tile (a segment of a row-pitch map with a Rec per row tile) finds its Rec, or
    that it has none yet, without a walk of the others -- a walk per new tile made
    writing a [heads x rows] matrix quadratic in its row tiles."""
    __slots__ = ("los", "his", "recs", "exact", "wbox", "abox", "filtered")

    def __init__(self, filtered: bool = False):
        self.los: list[int] = []
        self.his: list[int] = []
        self.recs: list[list[Rec]] = []
        self.exact: dict = {}
        self.wbox = None
        self.abox = None
        # producers are filtered by exact overlap afterwards (HBM): a reader may not
        # stand for an earlier one of its track on bytes it did not read (module doc)
        self.filtered = filtered

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
        b = self.abox
        if b is None or p_lo < b[0] or p_hi > b[1] or lo < b[2] or hi > b[3]:
            self.abox = _grow(b, p_lo, p_hi, lo, hi)
        los, his, recs = self.los, self.his, self.recs
        i = bisect_right(los, lo) - 1  # the first segment ending after lo
        if i < 0:
            i = 0
        elif his[i] <= lo:
            i += 1
        elif los[i] == lo and his[i] == hi and p_lo < p_hi:
            seg = recs[i]  # fast path: one segment [lo, hi) of one Rec of [p_lo, p_hi)
            if len(seg) == 1 and seg[0].p_lo == p_lo and seg[0].p_hi == p_hi:
                r = seg[0]
                for w in r.writers:
                    if w != idx:
                        out.append(w)
                r.readers[tkey] = idx
                return
        if self.filtered:  # a read recorded on a whole part must have read all of it
            i = self._split_around(i, lo, hi)[0]
        cur = lo
        n = len(los)
        while i < n and los[i] < hi:
            if los[i] > cur:  # a gap nobody touched yet: a read-only segment
                if self._extend_readonly(i, cur, los[i], p_lo, p_hi, idx, tkey):
                    pass
                else:
                    self._insert(i, cur, los[i], [Rec(p_lo, p_hi, (), {tkey: idx})])
                    i += 1
                    n += 1
            seg = recs[i]
            ix = None
            if len(seg) >= _INDEXED and p_lo < p_hi:
                hit = self.exact.get(id(seg))
                ix = hit[1] if hit is not None else self._index(seg)
                r = ix.exact.get((p_lo, p_hi))
                if r is not None:  # the only Rec overlapping the access
                    for w in r.writers:
                        if w != idx:
                            out.append(w)
                    r.readers[tkey] = idx
                    cur = his[i]
                    i += 1
                    continue
                if ix.at_most(0, p_lo, p_hi):  # partitions nobody touched yet
                    ix.append(seg, Rec(p_lo, p_hi, (), {tkey: idx}))
                    cur = his[i]
                    i += 1
                    continue
            if self.filtered and p_lo < p_hi:
                self._narrow(seg, ix, p_lo, p_hi, idx, tkey)
                if ix is not None and id(seg) not in self.exact:
                    ix = None
            covered = 0
            for r in seg:
                r_lo, r_hi = r.p_lo, r.p_hi
                if r_lo < p_hi and p_lo < r_hi:
                    for w in r.writers:
                        if w != idx:
                            out.append(w)
                    r.readers[tkey] = idx
                    covered += (r_hi if r_hi < p_hi else p_hi) - (r_lo if r_lo > p_lo else p_lo)
            if covered < p_hi - p_lo:
                n0 = len(seg)
                _fill_partitions(seg, p_lo, p_hi, idx, tkey)
                if ix is not None:
                    for r in seg[n0:]:
                        ix.add(r)
            cur = his[i]
            i += 1
        if cur < hi:
            if not self._extend_readonly(i, cur, hi, p_lo, p_hi, idx, tkey):
                self._insert(i, cur, hi, [Rec(p_lo, p_hi, (), {tkey: idx})])

    def _extend_readonly(self, i, lo, hi, p_lo, p_hi, idx, tkey) -> bool:
        """Grow the read-only segment just before position i (ending at lo) to hi."""
        j = i - 1
        if j < 0 or self.his[j] != lo:
            return False
        seg = self.recs[j]
        if len(seg) != 1:
            return False
        r = seg[0]
        if r.writers or r.p_lo != p_lo or r.p_hi != p_hi:
            return False
        if self.filtered and r.readers.get(tkey, idx) != idx:
            return False
        self.his[j] = hi
        r.readers[tkey] = idx
        return True

    def _insert(self, i, lo, hi, seg):
        self.los.insert(i, lo)
        self.his.insert(i, hi)
        self.recs.insert(i, seg)

    def _index(self, seg) -> "_RecIndex":
        """The index of segment `seg`'s Recs (built afresh, kept in `exact`)."""
        ix = _RecIndex(seg)
        self.exact[id(seg)] = (seg, ix)
        return ix

    def query(self, p_lo, p_hi, lo, hi, idx, writers: list, readers: list | None) -> None:
        """Append the writers (and, given a list, the readers) of every part of the
        box other than instruction `idx`, recording nothing."""
        b = self.abox if readers is not None else self.wbox
        if b is None or not (b[0] < p_hi and p_lo < b[1] and b[2] < hi and lo < b[3]):
            return
        los, recs = self.los, self.recs
        i = self._first(lo)
        n = len(los)
        while i < n and los[i] < hi:
            seg = recs[i]
            i += 1
            if len(seg) >= _INDEXED and p_lo < p_hi:
                hit = self.exact.get(id(seg))
                ix = hit[1] if hit is not None else self._index(seg)
                if ix.at_most(1, p_lo, p_hi):  # (one at most: no order to keep)
                    seg = ix.overlapping(p_lo, p_hi)
            for r in seg:
                if r.p_lo < p_hi and p_lo < r.p_hi:
                    writers.extend(w for w in r.writers if w != idx)
                    if readers is not None:
                        readers.extend(v for v in r.readers.values() if v != idx)

    # -- writes -----------------------------------------------------------------
    def write(self, p_lo, p_hi, lo, hi, idx, tkey, waw: list, war: list,
              dense: bool = True) -> None:
        """Record a write; append the writers (WAW) and readers (WAR) it waits for.
        `dense`: it writes every byte of its box (else it joins the earlier writers)."""
        b = self.wbox
        if b is None or p_lo < b[0] or p_hi > b[1] or lo < b[2] or hi > b[3]:
            self.wbox = _grow(b, p_lo, p_hi, lo, hi)
            self.abox = _grow(self.abox, p_lo, p_hi, lo, hi)
        los, his, recs = self.los, self.his, self.recs
        i = bisect_right(los, lo) - 1  # the first segment ending after lo
        if i < 0:
            i = 0
        elif his[i] <= lo:
            i += 1
        n = len(los)
        mine = (idx,)
        # fast paths: exactly one segment [lo, hi) holding a Rec of exactly [p_lo, p_hi)
        # (which the general path below replaces by a Rec of this write, at the end)
        if dense and i < n and los[i] == lo and his[i] == hi:
            seg = recs[i]
            if len(seg) == 1 and seg[0].p_lo == p_lo and seg[0].p_hi == p_hi:
                _rewrite(seg[0], mine, waw, war)
                return
            if len(seg) >= _INDEXED and p_lo < p_hi:
                hit = self.exact.get(id(seg))
                ix = hit[1] if hit is not None else self._index(seg)
                r = ix.exact.get((p_lo, p_hi))
                if r is not None:
                    seg.remove(r)  # last, where the general path would put it
                    seg.append(r)
                    _rewrite(r, mine, waw, war)
                    return
                if ix.at_most(0, p_lo, p_hi):  # a new tile: last, as the general path
                    ix.append(seg, Rec(p_lo, p_hi, mine, {}))
                    return
        i, j = self._split_around(i, lo, hi)
        n = len(los)
        # now segments i..j-1 lie inside [lo, hi); fill the gaps and update
        cur = lo
        k = i
        clean = dense
        while k < j:
            if los[k] > cur:
                self._insert(k, cur, los[k], [Rec(p_lo, p_hi, mine, {})])
                k += 1
                j += 1
            seg = recs[k]
            new = []
            for r in seg:
                if r.p_lo < p_hi and p_lo < r.p_hi:
                    _producers(r, idx, waw, war)
                    if r.p_lo < p_lo:
                        new.append(r.copy(p_hi=p_lo))
                    if r.p_hi > p_hi:
                        new.append(r.copy(p_lo=p_hi))
                    if not dense:  # the part inside keeps its writers and readers
                        inside = r.copy(p_lo=max(r.p_lo, p_lo), p_hi=min(r.p_hi, p_hi))
                        if idx not in inside.writers:
                            inside.writers = inside.writers + mine
                        new.append(inside)
                else:
                    new.append(r)
            if dense:
                if new:
                    clean = False
                new.append(Rec(p_lo, p_hi, mine, {}))
            else:
                _fill_written(new, p_lo, p_hi, mine)
            if len(seg) >= _INDEXED:
                self.exact.pop(id(seg), None)
            recs[k] = new
            cur = his[k]
            k += 1
        if cur < hi:
            self._insert(k, cur, hi, [Rec(p_lo, p_hi, mine, {})])
            k += 1
            j += 1
        if clean and j - i > 1:  # one segment for the whole write
            del los[i + 1:j], his[i:j - 1], recs[i + 1:j]  # (this write's new lists)

    def _split_around(self, i, lo, hi) -> tuple[int, int]:
        """Split the segments straddling lo and hi (i: the first ending after lo);
        returns the positions [i, j) of the segments inside [lo, hi)."""
        los, his = self.los, self.his
        n = len(los)
        if i < n and los[i] < lo:
            self._split(i, lo)
            i += 1
            n += 1
        j = i
        while j < n and los[j] < hi:
            j += 1
        if j > i and his[j - 1] > hi:
            self._split(j - 1, hi)
        return i, j

    def _narrow(self, seg, ix, p_lo, p_hi, idx, tkey) -> None:
        """Split the Recs of `seg` that straddle partitions [p_lo, p_hi) where a read of
        them would replace another reader of its track (filtered maps: see
        `filtered`). Only the first and last Recs the read overlaps can straddle."""
        over = ix.overlapping(p_lo, p_hi) if ix is not None else sorted(
            (r for r in seg if r.p_lo < p_hi and p_lo < r.p_hi), key=_p_lo)
        for r in {id(x): x for x in over[:1] + over[-1:]}.values():
            if (r.p_lo < p_lo or r.p_hi > p_hi) and r.readers.get(tkey, idx) != idx:
                parts = [r.copy(p_hi=p_lo)] if r.p_lo < p_lo else []
                parts.append(r.copy(p_lo=max(r.p_lo, p_lo), p_hi=min(r.p_hi, p_hi)))
                if r.p_hi > p_hi:
                    parts.append(r.copy(p_lo=p_hi))
                k = seg.index(r)
                seg[k:k + 1] = parts
                self.exact.pop(id(seg), None)

    def _split(self, i, at):
        """Split segment i at byte `at` (inside it)."""
        seg = self.recs[i]
        self.los.insert(i + 1, at)
        self.his.insert(i + 1, self.his[i])
        self.his[i] = at
        self.recs.insert(i + 1, [r.copy() for r in seg])


def _grow(box, p_lo, p_hi, lo, hi):
    """The bounding box of `box` (or None) and [p_lo, p_hi) x [lo, hi)."""
    if box is None:
        return (p_lo, p_hi, lo, hi)
    return (min(p_lo, box[0]), max(p_hi, box[1]), min(lo, box[2]), max(hi, box[3]))


def _uncovered(seg: list, p_lo, p_hi):
    """The partition ranges of [p_lo, p_hi) no Rec of `seg` covers."""
    spans = sorted((r.p_lo, r.p_hi) for r in seg if r.p_lo < p_hi and p_lo < r.p_hi)
    cur = p_lo
    for a, b in spans:
        if a > cur:
            yield cur, a
        cur = max(cur, b)
    if cur < p_hi:
        yield cur, p_hi


def _fill_partitions(seg: list, p_lo, p_hi, idx, tkey) -> None:
    """Add read-only Recs for the partitions of [p_lo, p_hi) no Rec of `seg` covers."""
    for a, b in list(_uncovered(seg, p_lo, p_hi)):
        seg.append(Rec(a, b, (), {tkey: idx}))


def _fill_written(seg: list, p_lo, p_hi, writers) -> None:
    """Add Recs written by `writers` for the partitions of [p_lo, p_hi) not covered."""
    for a, b in list(_uncovered(seg, p_lo, p_hi)):
        seg.append(Rec(a, b, writers, {}))


# -- exact overlap of strided HBM accesses -------------------------------------------
def rows_form(a, itemsize: int):
    """(row pitch R, first byte, rows, bytes per row) of an HBM access that is `rows`
    runs of `bytes per row` contiguous bytes every R bytes (R = 0: one contiguous run),
    or None for other patterns."""
    span = a.hi - a.lo
    if a.bytes >= span:
        return (0, a.lo, 1, span)
    for s0, n0 in a.pattern:  # the outermost dimension of more than one element
        if n0 > 1:
            break
    else:
        return (0, a.lo, 1, span)
    inner = a.bytes // n0
    if s0 <= 0 or a.contiguous_bytes != inner:
        return None
    return (s0 * itemsize, a.lo, n0, inner)


def _rows_vs_run(f, lo, hi) -> bool:
    """Whether rows form f touches bytes [lo, hi)."""
    R, s, n, L = f
    if R == 0:
        return s < hi and lo < s + L
    # rows i with s + i*R < hi and lo < s + i*R + L
    i_min = max(0, (lo - s - L) // R + 1)
    i_max = min(n - 1, -(-(hi - s) // R) - 1)
    return i_min <= i_max


def hbm_overlap(a, b, isz_a: int, isz_b: int) -> bool:
    """Whether two HBM accesses share a byte (exact for contiguous and row-strided
    accesses, conservative -- True -- otherwise)."""
    if not (a.lo < b.hi and b.lo < a.hi):
        return False
    return _forms_overlap(rows_form(a, isz_a), rows_form(b, isz_b))


def _forms_overlap(fa, fb) -> bool:
    """hbm_overlap of two accesses whose byte ranges meet, given their rows forms."""
    if fa is None or fb is None:
        return True
    if fa[0] == 0:
        return _rows_vs_run(fb, fa[1], fa[1] + fa[3])
    if fb[0] == 0:
        return _rows_vs_run(fa, fb[1], fb[1] + fb[3])
    R = fa[0]
    if fb[0] != R or fa[3] > R or fb[3] > R:
        return True
    ra, ca = divmod(fa[1], R)
    rb, cb = divmod(fb[1], R)
    if ca + fa[3] > R or cb + fb[3] > R:
        return True
    return ra < rb + fb[2] and rb < ra + fa[2] and ca < cb + fb[3] and cb < ca + fa[3]


class HbmMap:
    """Dependencies through HBM (one map for all cores).

    An access in row form (rows of one contiguous run every R bytes, e.g. a tile stored
    into a column block of a row-major tensor) lives in a two-dimensional map for its
    row pitch R: rows (address // R) by bytes within the row (address % R), where it is
    one exact box (two where its run wraps past a row end). In the flat byte map its
    bounding box would span every row, so each such store would be checked against
    every earlier one and their writers would pile up: quadratic in the number of
    stores. Other accesses live in the flat map. An access is recorded in its own map
    and looks up the others with a covering box; callers filter the producers with
    `hbm_overlap`, so the dependencies stay exact."""
    __slots__ = ("flat", "pitched")

    def __init__(self):
        self.flat = SpaceMap(filtered=True)
        self.pitched: dict[int, SpaceMap] = {}

    @staticmethod
    def _home(f):
        """(row pitch, boxes (row lo, row hi, byte lo, byte hi)) of an access of rows
        form f, or None for the flat map."""
        if f is None or f[0] == 0 or f[2] <= 1 or f[3] > f[0]:
            return None
        pitch, first, rows, run = f
        r0, c = divmod(first, pitch)
        if c + run <= pitch:
            return pitch, ((r0, r0 + rows, c, c + run),)
        return pitch, ((r0, r0 + rows, c, pitch), (r0 + 1, r0 + rows + 1, 0, c + run - pitch))

    def _query_others(self, a, pitch, idx, writers: list, readers: list | None) -> None:
        """Query every map but the access's own (row pitch `pitch`, None: the flat map)
        with a box covering the access. (Callers skip the call where there is no other
        map with an access in it.)"""
        lo, hi = a.lo, a.hi
        if pitch is not None:
            self.flat.query(a.p_lo, a.p_hi, lo, hi, idx, writers, readers)
        for r, m in self.pitched.items():
            if r == pitch:
                continue
            r0, r1 = lo // r, (hi - 1) // r
            if r0 == r1:
                m.query(r0, r0 + 1, lo % r, (hi - 1) % r + 1, idx, writers, readers)
            else:
                m.query(r0, r1 + 1, 0, r, idx, writers, readers)

    def read(self, a, isz: int, idx, tkey, out: list, form=False) -> None:
        """Record a read; append the writers it may depend on (RAW) to `out`.
        `form`: the access's rows_form, when the caller has it."""
        home = self._home(rows_form(a, isz) if form is False else form)
        if home is None:
            self.flat.read(a.p_lo, a.p_hi, a.lo, a.hi, idx, tkey, out)
            pitch = None
        else:
            pitch, boxes = home
            m = self.pitched.get(pitch)
            if m is None:
                m = self.pitched[pitch] = SpaceMap(filtered=True)
            for r0, r1, c0, c1 in boxes:
                m.read(r0, r1, c0, c1, idx, tkey, out)
        if len(self.pitched) > (pitch is not None) or (pitch is not None and self.flat.abox):
            self._query_others(a, pitch, idx, out, None)

    def write(self, a, isz: int, idx, tkey, waw: list, war: list, form=False) -> None:
        """Record a write; append the writers (WAW) and readers (WAR) it may wait for."""
        home = self._home(rows_form(a, isz) if form is False else form)
        if home is None:
            dense = a.bytes >= (a.p_hi - a.p_lo) * (a.hi - a.lo)
            self.flat.write(a.p_lo, a.p_hi, a.lo, a.hi, idx, tkey, waw, war, dense)
            pitch = None
        else:
            pitch, boxes = home
            m = self.pitched.get(pitch)
            if m is None:
                m = self.pitched[pitch] = SpaceMap(filtered=True)
            for r0, r1, c0, c1 in boxes:
                m.write(r0, r1, c0, c1, idx, tkey, waw, war, True)
        if len(self.pitched) > (pitch is not None) or (pitch is not None and self.flat.abox):
            self._query_others(a, pitch, idx, waw, war)


class MemoryMaps:
    """The dependency maps of one program's run: a SpaceMap per on-chip memory of each
    core and one HbmMap. HBM producers come back deduplicated and filtered by the exact
    overlap of the accesses (`hbm_overlap`); on-chip ones as their maps give them."""
    __slots__ = ("onchip", "hbm", "hbm_reads", "hbm_writes")

    def __init__(self):
        self.onchip: dict = {}  # (space, core) -> SpaceMap
        self.hbm = HbmMap()
        self.hbm_reads: dict = {}  # instruction -> its HBM reads, (access, rows form)
        self.hbm_writes: dict = {}  # instruction -> its HBM writes, (access, rows form)

    def _new_onchip(self, a) -> SpaceMap:
        m = self.onchip[(a.space, a.core)] = SpaceMap()
        return m

    def read(self, a, idx, tkey) -> list:
        """Record access `a` (a read of instruction idx); its producers (RAW)."""
        out: list = []
        if a.space != "hbm":
            m = self.onchip.get((a.space, a.core))
            if m is None:
                m = self._new_onchip(a)
            m.read(a.p_lo, a.p_hi, a.lo, a.hi, idx, tkey, out)
            return out
        f = rows_form(a, itemsize(a.dtype))
        self.hbm.read(a, 0, idx, tkey, out, f)
        self.hbm_reads.setdefault(idx, []).append((a, f))
        return self._hit(a, f, out, self.hbm_writes)

    def write(self, a, idx, tkey) -> tuple[list, list]:
        """Record access `a` (a write of instruction idx); (WAW producers, WAR readers)."""
        waw: list = []
        war: list = []
        if a.space != "hbm":
            p_lo, p_hi, lo, hi = a.p_lo, a.p_hi, a.lo, a.hi
            m = self.onchip.get((a.space, a.core))
            if m is None:
                m = self._new_onchip(a)
            m.write(p_lo, p_hi, lo, hi, idx, tkey, waw, war,
                    a.bytes >= (p_hi - p_lo) * (hi - lo))
            return waw, war
        f = rows_form(a, itemsize(a.dtype))
        self.hbm.write(a, 0, idx, tkey, waw, war, f)
        self.hbm_writes.setdefault(idx, []).append((a, f))
        return self._hit(a, f, waw, self.hbm_writes), self._hit(a, f, war, self.hbm_reads)

    @staticmethod
    def _hit(a, f, candidates, accesses) -> list:
        """The candidates (once each) with an access in `accesses` sharing a byte with a
        (of rows form f)."""
        if not candidates:
            return candidates
        lo, hi = a.lo, a.hi
        out = []
        for p in candidates if len(candidates) == 1 else dict.fromkeys(candidates):
            for b, fb in accesses.get(p, ()):
                if lo < b.hi and b.lo < hi and _forms_overlap(f, fb):
                    out.append(p)
                    break
        return out
