"""The compiled allocation walk's release of a block (trnsim/compiler/compiled_allocation.py
`_place_all`): it looks for the block's busy span where the span went when placed, and
bisects where a placement since split or joined spans before it and so moved it. The
walk over random events against compiler/arena.py's Arena replaying them."""
import numpy as np
import pytest

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation as ca  # noqa: E402
from trnsim.compiler.arena import Arena  # noqa: E402


def _events(rng, n_blocks: int):
    """Blocks of random sizes, each placed then released later, a few alive at once
    (events: block, instruction, 1 placed / 0 released, in instruction order)."""
    events, live, at = [], [], 0
    for b in range(n_blocks):
        events.append((b, at, 1))
        live.append(b)
        while live and (len(live) > 6 or rng.random() < 0.5):
            events.append((live.pop(int(rng.integers(0, len(live)))), at, 0))
        at += 1
    events += [(b, at, 0) for b in live]
    return np.array(events, np.int32).T


def _replayed(sizes, events, capacity, align):
    """Each block's start as Arena places it (_Allocator.place and release), None where
    one finds no room (an eviction: the walk falls back)."""
    arena = Arena("sbuf", 0, capacity, align, "tiny")
    start = {}
    for b, i, placed in events.T.tolist():
        if placed:
            s = arena.find(int(sizes[b]), [])
            if s is None:
                return None
            start[b] = (s, arena.footprint(s, int(sizes[b])))
            arena.occupy(s, s + start[b][1])
            arena.cursor = s + start[b][1]
        else:
            s, size = start[b]
            arena.vacate(s, s + size, i)
    return [start[b][0] for b in range(len(sizes))]


@pytest.mark.parametrize("seed", range(8))
def test_releases_find_their_spans_as_the_arena(seed):
    rng = np.random.default_rng(seed)
    capacity, align, n = 4096, 64, 400
    # sizes of one to eight alignments, some not a multiple: cooling spans split and
    # are used up across several, so spans before a resident block come and go
    sizes = (rng.integers(1, 9, n) * align - rng.choice([0, 0, 16], n)).astype(np.int64)
    ev_block, ev_at, ev_place = _events(rng, n)
    start, size, order = (np.zeros(n, np.int64) for _ in range(3))
    notes = (ev_block.copy(), ev_at.copy(), ev_place.copy())
    got = ca._walk(ev_block, ev_at, ev_place, np.zeros(n, np.int64), sizes,
                   np.zeros(n, np.int64), np.array([capacity], np.int64),
                   np.array([align], np.int64), *(np.zeros(0, np.int64) for _ in range(5)),
                   np.array([0, capacity // align + 2], np.int64), Arena.CANDIDATES,
                   start, size, order, *notes, np.zeros(1, np.int64))
    want = _replayed(sizes, np.stack([ev_block, ev_at, ev_place]), capacity, align)
    if want is None:
        assert got == ca.FALLBACK
    else:  # (every release found its span: no fallback)
        assert got == len(ev_block) and start.tolist() == want


def test_most_random_walks_place_every_block():
    placed = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n = 400
        sizes = (rng.integers(1, 9, n) * 64 - rng.choice([0, 0, 16], n)).astype(np.int64)
        placed += _replayed(sizes, np.stack(_events(rng, n)), 4096, 64) is not None
    assert placed >= 6
