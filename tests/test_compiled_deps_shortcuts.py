"""The compiled dependency maps' shortcuts (trnsim/timing/compiled_deps.py: a segment
of one Rec that is the access's box, a dense write that keeps no Rec it meets, the
cache of a long segment's Rec by segment version, the capacities grown as they fill)
against the Python maps they stand in for (trnsim/timing/deps.py, through the list
scheduler's MemoryMaps pass and the timing scheduler's `_collect`), on random programs
made to take them: SBUF tiles of several widths and partition ranges written over
each other (splits on one side, on both, inside one segment), holey writes, and HBM
tiles of row-pitched matrices read and stored by two DMA queues (segments of many row
tiles, stores that append to one and stores that replace a Rec of one)."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.chips import load_chip  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing import compiled_deps  # noqa: E402
from trnsim.timing.scheduler import _Scheduler  # noqa: E402

from test_compiler_deps_compiled import _same_edges  # noqa: E402
from test_timing_compiled import _python_dependencies  # noqa: E402

PARTITIONS = ((0, 128), (0, 64), (64, 128), (32, 96))
MATRICES = ((0, 64), (1 << 20, 128))  # (base byte, columns of float32): two row pitches
ROWS = 64


def _sbuf(mode, rng, holey=False):
    p_lo, p_hi = PARTITIONS[rng.integers(len(PARTITIONS))]
    lo = 64 * int(rng.integers(24))
    hi = lo + 64 * int(rng.integers(1, 4))
    n = (hi - lo) // 4
    nbytes = (p_hi - p_lo) * (hi - lo) // (2 if holey else 1)
    return Access("x", mode, "sbuf", 0, "t", "float32", (p_hi - p_lo, n), ((n, 1),), 0,
                  p_lo, p_hi, lo, hi, n, nbytes, (hi - lo) // (2 if holey else 1))


def _hbm_tile(mode, rng):
    """A tile of one of MATRICES: 8 rows (now and then 12, across two row tiles) of a
    16- or 32-column block."""
    base, cols = MATRICES[rng.integers(len(MATRICES))]
    rows = 12 if rng.random() < 0.3 else 8
    r0 = 8 * int(rng.integers(ROWS // 8 - 1))
    w = 16 if rng.random() < 0.7 else 32
    return _tile(mode, base, cols, r0, rows, w * int(rng.integers(cols // w)), w)


def _tile(mode, base, cols, r0, rows, c0, w):
    """Rows [r0, r0 + rows) x columns [c0, c0 + w) of a float32 matrix at `base`."""
    lo = base + 4 * (r0 * cols + c0)
    hi = base + 4 * ((r0 + rows - 1) * cols + c0 + w)
    return Access("x", mode, "hbm", 0, "t", "float32", (rows, w), ((cols, rows), (1, w)),
                  0, 0, 1, lo, hi, rows * w, 4 * rows * w, 4 * w)


def _program(seed, n=600) -> Program:
    rng = np.random.default_rng(seed)
    instrs = []
    for i in range(n):
        kind = rng.integers(6)
        queue = None
        if kind <= 1:  # load a tile
            engine, reads, writes = "dma", [_hbm_tile("r", rng)], [_sbuf("w", rng)]
        elif kind == 2:  # store one
            engine, reads, writes = "dma", [_sbuf("r", rng)], [_hbm_tile("w", rng)]
        else:
            engine = ("vector", "scalar", "gpsimd")[kind - 3]
            reads = [_sbuf("r", rng) for _ in range(1 + rng.integers(2))]
            writes = [_sbuf("w", rng, holey=rng.random() < 0.2)]
        if engine == "dma":
            queue = "qSyncIO" if rng.random() < 0.5 else "qAct"
        instrs.append(Instruction(i, 0, engine, "op", tuple(reads), tuple(writes), None,
                                  {}, queue))
    return Program(load_chip("trn2"), 1, instrs)


@pytest.mark.parametrize("seed", range(4))
def test_list_edges_as_the_python_pass(seed, monkeypatch):
    _same_edges(_program(seed), "trn2", monkeypatch)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("caps", [None, (2, 2, 2, 2, 2)])
def test_collect_as_the_python_scheduler(seed, caps):
    program = _program(seed)
    chip = load_chip("trn2")
    ref = _python_dependencies(_Scheduler(program, chip, None, {}))
    spaces = {"": 0}
    got = compiled_deps.collect(_Scheduler(program, chip, None, {}), spaces, caps=caps)
    names = list(spaces)
    assert [x.tolist() for x in got[:3]] == list(ref[:3])
    assert [names[x] for x in got[3]] == ref[3]


def test_capacities_grow_in_one_pass(monkeypatch):
    """Capacities far below the program's needs, none so small that one access
    outgrows it: the walk grows them as it goes (one run of the numba core), and the
    edges are those of ample capacities."""
    program = _program(7)
    n = len(program.instructions)
    tkey = list(range(n))
    ample = compiled_deps.list_edges(program, tkey, [], caps=(4096,) * 5)
    runs = []
    real = compiled_deps._collect

    def counted(*args):
        runs.append(args[-1].copy())
        return real(*args)
    monkeypatch.setattr(compiled_deps, "_collect", counted)
    small = compiled_deps.list_edges(program, tkey, [], caps=(64, 64, 64, 64, 64))
    assert len(runs) == 1
    for a, b in zip(ample, small):
        assert a.tolist() == b.tolist()


def _same_both_ways(program, monkeypatch):
    _same_edges(program, "trn2", monkeypatch)
    chip = load_chip("trn2")
    ref = _python_dependencies(_Scheduler(program, chip, None, {}))
    got = compiled_deps.collect(_Scheduler(program, chip, None, {}), {"": 0})
    assert [x.tolist() for x in got[:3]] == list(ref[:3])


def test_a_cached_rec_split_by_a_read_is_found_no_more(monkeypatch):
    """A row tile read alone (cached: its segment holds ten), then split where a read
    of 12 rows by the same queue straddles it; a read of the tile again must record
    itself on both parts, which a store then waits for."""
    tile = lambda mode, r0, rows=8: _tile(mode, 0, 64, r0, rows, 0, 16)  # noqa: E731
    sb = lambda mode, lo: Access("x", mode, "sbuf", 0, "t", "float32", (8, 16),  # noqa: E731
                                 ((16, 1),), 0, 0, 8, lo, lo + 64, 16, 512, 64)
    steps = [(tile("r", 8 * k), "qSyncIO") for k in range(10)]
    steps += [(tile("r", 16), "qAct"), (tile("r", 8, 12), "qAct"), (tile("r", 16), "qSyncIO")]
    instrs = [Instruction(i, 0, "dma", "op", (a,), (sb("w", 64 * i),), None, {}, q)
              for i, (a, q) in enumerate(steps)]
    n = len(instrs)
    instrs.append(Instruction(n, 0, "dma", "op", (sb("r", 0),), (tile("w", 16),), None,
                              {}, "qSyncIO"))
    _same_both_ways(Program(load_chip("trn2"), 1, instrs), monkeypatch)
