"""The compiled dependency maps' segment rooms (trnsim/timing/compiled_deps.py: every
map's segments in its own stretch of one flat array per field, a map more than half
full getting its room doubled apart from the others, `_more_segments`), and the maps
giving what the Python maps give where one map holds far more segments than the others
and every capacity starts at its smallest."""
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from trnsim.timing import compiled_deps as cd  # noqa: E402

from test_compiler_deps_compiled import _same_edges  # noqa: E402


def _state(rooms, used):
    """cnt and the four segment fields for maps with these rooms and segment counts;
    segment g of map mp holds (1000 * mp + g, ..., field f adds f)."""
    cnt = np.zeros(cd.SEGS + 2 * len(rooms) + 2, np.int64)
    fields = [np.full(sum(rooms), -7, np.int64) for _ in range(4)]
    at = 0
    for mp, (room, n) in enumerate(zip(rooms, used)):
        cnt[cd.SEGS + 2 * mp], cnt[cd.SEGS + 2 * mp + 1] = at + n, at
        for f, a in enumerate(fields):
            a[at:at + n] = 1000 * mp + np.arange(n) + 100_000 * f
        at += room
    cnt[cd.SEGS + 2 * len(rooms) + 1] = at
    return cnt, fields


def test_more_segments_doubles_only_the_maps_over_half_full():
    rooms, used = [4, 8, 2, 16], [3, 4, 0, 15]  # maps 0 and 3 over half full
    cnt, fields = _state(rooms, used)
    cnt[cd.HALF_FULL] = 1
    grown = cd._more_segments(cnt, *fields)
    want_rooms = [8, 8, 2, 32]  # (15 of 16: doubled once is enough, 15 of 32)
    starts = np.concatenate([[0], np.cumsum(want_rooms)])
    for mp, n in enumerate(used):
        assert cnt[cd.SEGS + 2 * mp + 1] == starts[mp]
        assert cnt[cd.SEGS + 2 * mp] == starts[mp] + n
        for f, a in enumerate(grown):
            got = a[starts[mp]:starts[mp] + n]
            assert got.tolist() == [1000 * mp + g + 100_000 * f for g in range(n)]
    assert cnt[cd.SEGS + 2 * len(rooms) + 1] == starts[-1] == grown[0].size
    assert cnt[cd.HALF_FULL] == 0


def test_more_segments_doubles_until_half_full_at_most():
    cnt, fields = _state([2], [2])  # full: doubled to 4 (2 of 4 is not over half)
    cd._more_segments(cnt, *fields)
    assert cnt[cd.SEGS + 3] == 4


@trnsim.nki.jit
def _many_columns_few_tiles(x):
    """A row-pitched matrix copied one narrow column block at a time through one SBUF
    tile: its pitch's map gets a segment per block, the SBUF map one."""
    import trnsim.nki.isa as nisa
    import trnsim.nki.language as nl
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    t = nl.ndarray((128, 4), nl.float32, buffer=nl.sbuf)
    for j in nl.sequential_range(x.shape[1] // 4):
        nisa.dma_copy(dst=t, src=x[:, j * 4:(j + 1) * 4])
        nisa.dma_copy(dst=out[:, j * 4:(j + 1) * 4], src=t)
    return out


def _run():
    return trnsim.run_kernel(_many_columns_few_tiles, (np.zeros((128, 4 * 300), np.float32),),
                             chip="trn2", numerics=False)[1]


def test_one_map_outgrowing_the_others_matches_the_python_maps(monkeypatch):
    _same_edges(_run().program, "trn2", monkeypatch)


def test_one_map_outgrowing_the_others_from_the_smallest_rooms():
    """Every capacity at 1: each map's room doubled on its own, many times."""
    program = _run().program
    tkey = list(range(len(program)))
    ref = cd.list_edges(program, tkey, [])
    got = cd.list_edges(program, tkey, [], caps=(1, 1, 1, 1, 1))
    for a, b in zip(ref, got):
        assert a.tolist() == b.tolist()
