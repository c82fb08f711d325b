"""The compiled dependency maps' guesses of the segment a byte address falls in
(timing/compiled_deps.py `_first`, `hints`): whatever a hint holds (stale after
segments were inserted before it, another address's, out of the map's range), `_first`
gives the first segment ending after the address, as a scan of the segments does; and
on a program whose segments keep shifting under the hints and outnumber them, both
dependency passes give what their Python maps give."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.chips import load_chip  # noqa: E402
from trnsim.timing import compiled_deps as cd  # noqa: E402

from test_compiler_deps_compiled import _same_edges  # noqa: E402
from test_timing_compiled import _same  # noqa: E402


def _maps(bounds_per_map, room):
    """(cnt, glo, ghi) of maps whose segments are `bounds_per_map` ([(lo, hi), ...] in
    byte order, map mp's at its byte base), each map's room `room` segments."""
    nmaps = len(bounds_per_map)
    cnt = np.zeros(cd.SEGS + 2 * nmaps + 2, np.int64)
    # (the room past a map's segments holds what np.empty left: here past any address)
    glo = np.zeros(nmaps * room, np.int64)
    ghi = np.full(nmaps * room, (nmaps + 1) << cd.MAP_SHIFT, np.int64)
    for mp, bounds in enumerate(bounds_per_map):
        start = mp * room
        cnt[cd.SEGS + 2 * mp + 1] = start
        cnt[cd.SEGS + 2 * mp] = start + len(bounds)
        for g, (lo, hi) in enumerate(bounds):
            glo[start + g], ghi[start + g] = (mp << cd.MAP_SHIFT) + lo, (mp << cd.MAP_SHIFT) + hi
    cnt[cd.SEGS + 2 * nmaps + 1] = nmaps * room
    return cnt, glo, ghi


def _scan(cnt, glo, ghi, lo) -> int:
    mp = lo >> cd.MAP_SHIFT
    start, end = cnt[cd.SEGS + 2 * mp + 1], cnt[cd.SEGS + 2 * mp]
    return next((g for g in range(start, end) if ghi[g] > lo), end)


def _segments(rng, count) -> list:
    """`count` disjoint segments in byte order, gaps between some."""
    edges = np.cumsum(rng.integers(1, 64, 2 * count))
    return [(int(edges[2 * k]), int(edges[2 * k + 1])) for k in range(count)]


def test_first_whatever_the_hints_hold():
    rng = np.random.default_rng(0)
    maps = [_segments(rng, 300), _segments(rng, 5), []]
    cnt, glo, ghi = _maps(maps, 400)
    probes = [(mp << cd.MAP_SHIFT) + int(x) for mp in range(3)
              for x in rng.integers(0, 40 * 64, 500)]
    want = [_scan(cnt, glo, ghi, lo) for lo in probes]
    for hints in (np.full(cd.HINTS, -1, np.int64), np.zeros(8, np.int64)):
        for _ in range(2):  # (the second time: the hints the first left)
            assert [cd._first(cnt, glo, ghi, lo, hints) for lo in probes] == want
    few = probes[::10]
    for h in range(-1, 3 * 400 + 1):  # every hint, any map's or past the segments
        hints = np.full(4, h, np.int64)
        assert [cd._first(cnt, glo, ghi, lo, hints.copy()) for lo in few] == want[::10]
    # segments inserted before the hinted ones: each hint now names another segment
    hints = np.full(64, -1, np.int64)
    for lo in probes:
        cd._first(cnt, glo, ghi, lo, hints)
    shifted = [[(lo + 3000, hi + 3000) for lo, hi in bounds] for bounds in maps]
    cnt, glo, ghi = _maps([_segments(rng, 7) + s for s in shifted], 400)
    probes += [p + 3000 for p in probes]
    assert [cd._first(cnt, glo, ghi, lo, hints) for lo in probes] == \
        [_scan(cnt, glo, ghi, lo) for lo in probes]


def _sbuf(mode, lo, width, p_lo=0, p_hi=32):
    n = width // 4
    return Access("x", mode, "sbuf", 0, "t", "float32", (p_hi - p_lo, n), ((n, 1),), 0,
                  p_lo, p_hi, lo, lo + width, n, (p_hi - p_lo) * n * 4, n * 4)


def _shifting_program(count):
    """Vector writes of `count` tiles placed from the top of SBUF down (each a segment
    before the others: every later segment's number shifts), each then read with
    tiles written before it, and a read across several of them; more tiles than
    hints."""
    instrs = []

    def add(reads, writes):
        instrs.append(Instruction(len(instrs), 0, "vector", "tensor_copy", tuple(reads),
                                  tuple(writes), None, {}, None))
    top = 16 * (count + 2)
    for k in range(count):
        lo = top - 16 * (k + 1)
        add([], [_sbuf("w", lo, 16)])
        add([_sbuf("r", lo, 16), _sbuf("r", lo + 16 * (k % 7 + 1), 16)],
            [_sbuf("w", lo, 8, 0, 16)])
        if k % 97 == 0:
            add([_sbuf("r", lo + 4, 16 * 5)], [])
    return Program(load_chip("trn2"), 1, instrs)


def test_dependencies_on_shifting_segments(monkeypatch):
    program = _shifting_program(cd.HINTS + 500)
    _same_edges(program, "trn2", monkeypatch)
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    _same(program, "trn2")
