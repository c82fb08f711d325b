"""The dependency interval maps (trnsim/timing/deps.py) against a byte-by-byte reference:
they may add conservative dependencies but must never miss one, and on tile-shaped
accesses (whole rectangles) they find exactly the true ones."""
import itertools
import random
from types import SimpleNamespace as NS

import pytest

from trnsim.timing.deps import HbmMap, MemoryMaps, SpaceMap, hbm_overlap


class Reference:
    """Per (partition, byte): the last writer and the readers since (all of them)."""

    def __init__(self):
        self.writer = {}
        self.readers = {}

    def access(self, p_lo, p_hi, lo, hi, idx, write):
        deps = set()
        for cell in itertools.product(range(p_lo, p_hi), range(lo, hi)):
            w = self.writer.get(cell)
            if w is not None:
                deps.add(w)  # RAW, or WAW for a write
            if write:
                deps |= self.readers.get(cell, set())  # WAR
                self.writer[cell] = idx
                self.readers[cell] = set()
            else:
                self.readers.setdefault(cell, set()).add(idx)
        deps.discard(idx)
        return deps


def _run(ops, dense_only=True):
    m, ref = SpaceMap(), Reference()
    for idx, (p_lo, p_hi, lo, hi, write) in enumerate(ops):
        got = []
        if write:
            war = []
            m.write(p_lo, p_hi, lo, hi, idx, ("core0", f"t{idx % 3}"), got, war)
            got += war
        else:
            m.read(p_lo, p_hi, lo, hi, idx, ("core0", f"t{idx % 3}"), got)
        yield set(got), ref.access(p_lo, p_hi, lo, hi, idx, write), idx


def _random_ops(rng, n, parts=8, nbytes=64):
    ops = []
    for _ in range(n):
        p_lo = rng.randrange(parts)
        p_hi = rng.randrange(p_lo + 1, parts + 1)
        lo = rng.randrange(nbytes)
        hi = rng.randrange(lo + 1, nbytes + 1)
        ops.append((p_lo, p_hi, lo, hi, rng.random() < 0.5))
    return ops


@pytest.mark.parametrize("seed", range(12))
def test_never_misses_a_dependency(seed):
    rng = random.Random(seed)
    for got, want, idx in _run(_random_ops(rng, 40)):
        # each engine track keeps only its latest reader: a write waits for that one,
        # which (in order) ends after the earlier readers of the same track
        tracks = {}
        for d in want:
            tracks.setdefault(d % 3, set()).add(d)
        for t, ds in tracks.items():
            assert max(ds) in got or any(g % 3 == t and g > max(ds) for g in got), \
                (seed, idx, got, want)


def test_tiles_give_exactly_the_true_dependencies():
    # a loop over 4 tiles of 16 bytes per partition, each loaded, read twice, reloaded
    ops = []
    for rep in range(3):
        for t in range(4):
            lo, hi = 16 * t, 16 * (t + 1)
            ops += [(0, 8, lo, hi, True), (0, 8, lo, hi, False), (0, 8, lo, hi, False)]
    for got, want, idx in _run(ops):
        assert got == want, idx


def test_partition_halves_are_independent():
    m = SpaceMap()
    deps = []
    m.write(0, 64, 0, 512, 0, "a", deps, [])
    m.write(64, 128, 0, 512, 1, "b", deps, [])
    assert deps == []  # different partitions of the same bytes
    raw = []
    m.read(32, 96, 0, 512, 2, "c", raw)
    assert sorted(raw) == [0, 1]
    raw = []
    m.read(0, 10, 0, 16, 3, "c", raw)
    assert raw == [0]


def test_strided_write_keeps_earlier_writers():
    m = SpaceMap()
    m.write(0, 1, 0, 100, 0, "a", [], [])
    m.write(0, 1, 0, 100, 1, "b", [], [], dense=False)  # a box with holes
    raw = []
    m.read(0, 1, 10, 20, 2, "c", raw)
    assert sorted(raw) == [0, 1]
    waw = []
    m.write(0, 1, 0, 100, 3, "d", waw, [])  # dense: replaces both
    raw = []
    m.read(0, 1, 10, 20, 4, "c", raw)
    assert sorted(waw) == [0, 1] and raw == [3]


def test_large_read_only_inputs_stay_few_segments():
    m = SpaceMap()
    # the tiles of a [K, N] input read one [128, 512] box at a time (strided boxes)
    row = 8192 * 2
    for k in range(16):
        for n in range(16):
            lo = k * 128 * row + n * 1024
            m.read(0, 1, lo, lo + 127 * row + 1024, k * 16 + n, ("c", "q"), [])
    assert len(m) < 40


def _hbm_access(base, rows, row_stride, row_bytes, isz):
    shape = (rows, row_bytes // isz)
    return NS(lo=base, hi=base + (rows - 1) * row_stride + row_bytes, bytes=rows * row_bytes,
              pattern=((row_stride // isz, rows), (1, row_bytes // isz)),
              contiguous_bytes=row_bytes if rows > 0 else 0, shape=shape)


def _bytes_of(a):
    R = a.pattern[0][0] * 4
    return {a.lo + i * R + j for i in range(a.pattern[0][1]) for j in range(a.contiguous_bytes)}


def test_hbm_overlap_of_tiles_of_one_matrix():
    # [8, 64] fp32 matrix (row pitch 256 B): column tiles [8, 16] are disjoint
    tiles = [_hbm_access(64 * j, 8, 256, 64, 4) for j in range(4)]
    for a, b in itertools.combinations(tiles, 2):
        assert not hbm_overlap(a, b, 4, 4)
    for a in tiles:
        assert hbm_overlap(a, a, 4, 4)
    # a row block overlaps every column tile it crosses
    rows = NS(lo=256 * 2, hi=256 * 4, bytes=512, pattern=((1, 128),), contiguous_bytes=512)
    assert all(hbm_overlap(rows, t, 4, 4) for t in tiles)


@pytest.mark.parametrize("seed", range(8))
def test_hbm_overlap_matches_bytes(seed):
    rng = random.Random(seed)
    for _ in range(50):
        a = _hbm_access(4 * rng.randrange(64), rng.randrange(1, 5), 256, 4 * rng.randrange(1, 17), 4)
        b = _hbm_access(4 * rng.randrange(64), rng.randrange(1, 5), 256, 4 * rng.randrange(1, 17), 4)
        truth = bool(_bytes_of(a) & _bytes_of(b))
        got = hbm_overlap(a, b, 4, 4)
        assert got or not truth  # never misses
        if a.contiguous_bytes + (a.lo % 256) <= 256 and b.contiguous_bytes + (b.lo % 256) <= 256:
            assert got == truth  # exact when no row wraps


def _random_hbm_access(rng, pitch_choices=(256, 192, 64)):
    """A contiguous run or a row-form access (some wrapping past a row end), fp32."""
    if rng.random() < 0.3:
        lo = 4 * rng.randrange(256)
        n = 4 * rng.randrange(1, 96)
        return NS(lo=lo, hi=lo + n, bytes=n, pattern=((1, n // 4),), contiguous_bytes=n,
                  p_lo=0, p_hi=1)
    pitch = rng.choice(pitch_choices)
    a = _hbm_access(4 * rng.randrange(256), rng.randrange(2, 6), pitch,
                    4 * rng.randrange(1, pitch // 4 + 1), 4)
    a.p_lo, a.p_hi = 0, 1
    return a


@pytest.mark.parametrize("seed", range(10))
def test_hbm_map_never_misses_a_dependency(seed):
    """Row-form accesses live in per-pitch maps, the rest in the flat one: every true
    dependency (byte-by-byte reference) must still be among the candidates."""
    rng = random.Random(seed)
    m, ref = HbmMap(), Reference()
    for idx in range(120):
        a = _random_hbm_access(rng)
        write = rng.random() < 0.5
        got = []
        track = ("core0", idx)  # a track each: every reader is kept, as the reference does
        if write:
            war = []
            m.write(a, 4, idx, track, got, war)
            got += war
        else:
            m.read(a, 4, idx, track, got)
        truth = set()
        for b in (_bytes_of(a) if len(a.pattern) > 1 else set(range(a.lo, a.hi))):
            truth |= ref.access(0, 1, b, b + 1, idx, write)
        assert idx not in got
        assert truth <= set(got), (seed, idx, truth - set(got))


def test_column_block_stores_cost_linear_dependency_work():
    """Column tiles stored into a row-major matrix, then read back: each read depends
    on its own store only, and the candidates the maps hand out grow linearly with the
    number of tiles (a flat map gives every store's bounding box every row: quadratic)."""
    def candidates(n, cols=8):
        pitch = n * cols * 4
        m, total = HbmMap(), 0
        for step, write in enumerate((True, False)):
            for j in range(n):
                a = _hbm_access(j * cols * 4, 128, pitch, cols * 4, 4)
                a.p_lo, a.p_hi = 0, 1
                out, war = [], []
                idx = step * n + j
                if write:
                    m.write(a, 4, idx, ("c", "q"), out, war)
                else:
                    m.read(a, 4, idx, ("c", "q"), out)
                    assert out == [j]  # its own store, nothing else
                total += len(out) + len(war)
        return total
    assert candidates(64) == 64 and candidates(256) == 256



def test_a_write_waits_for_a_read_of_its_bytes_whose_track_read_on():
    """Two reads of neighbouring HBM ranges from one queue (one track), then a write to
    the first range: it waits for the first read. Merging the second read into the
    first's read-only part kept the queue's later reader only, which the exact-overlap
    filter then dropped: no WAR at all."""
    def run(lo, hi, idx, track, write=False):
        n = hi - lo
        a = NS(space="hbm", core=0, dtype="float32", lo=lo, hi=hi, p_lo=0, p_hi=1,
               bytes=n, pattern=((1, n // 4),), contiguous_bytes=n)
        return maps.write(a, idx, track) if write else maps.read(a, idx, track)
    maps = MemoryMaps()
    run(0, 400, 0, "queue")
    run(400, 800, 1, "queue")
    assert run(0, 200, 2, "other", write=True) == ([], [0])


@pytest.mark.parametrize("seed", range(10))
def test_hbm_writes_wait_for_the_latest_overlapping_reader_of_each_track(seed):
    """With readers sharing tracks (one per DMA queue), the exactly filtered HBM
    producers must hold, per track, the latest reader of any byte the write overwrites
    since that byte's last write, or a later reader of that track (which stands for
    the earlier ones). A read recorded on a part of the map it read only some of
    (a merged read-only part, a wider segment, a Rec of more rows) used to replace the
    track's earlier reader there, which the exact filter then dropped with it."""
    rng = random.Random(seed)
    maps, ref, track_of = MemoryMaps(), Reference(), {}
    for idx in range(150):
        a = _random_hbm_access(rng)
        a.space, a.dtype, a.core = "hbm", "float32", 0
        track = ("core0", rng.choice("qrs"))
        write = rng.random() < 0.3
        pending = set()
        for b in (_bytes_of(a) if len(a.pattern) > 1 else range(a.lo, a.hi)):
            if write:
                pending |= ref.readers.get((0, b), set())
            ref.access(0, 1, b, b + 1, idx, write)
        if not write:
            maps.read(a, idx, track)
            track_of[idx] = track
            continue
        _, war = maps.write(a, idx, track)
        latest = {}
        for r in pending - {idx}:
            latest[track_of[r]] = max(latest.get(track_of[r], -1), r)
        for t, r in latest.items():
            assert any(w >= r and track_of[w] == t for w in war), (seed, idx, t, r, war)
