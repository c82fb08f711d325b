"""The compiled timing scheduler (timing/columns.py + timing/compiled.py, with the
compiled dependency maps of timing/compiled_deps.py) against the Python scheduler: the same timeline, event by event, on varied small kernels; the lane and
busy-window primitives against theirs on random histories."""
import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from kernel_helpers import tutorial_run  # noqa: E402
from benchmarks.fidelity import strided_stores  # noqa: E402
from trnsim import nki  # noqa: E402
import trnsim.nki.isa as nisa  # noqa: E402
import trnsim.nki.language as nl  # noqa: E402
from trnsim.chips import load_chip  # noqa: E402
from trnsim.timing import compiled  # noqa: E402
from trnsim.timing.scheduler import _BusyWindow, _Lane, _Scheduler  # noqa: E402

REL = 1e-9


def _same(program, chip_name):
    chip = load_chip(chip_name)
    for issue in (getattr(program, "issue", None), None):
        ref = _Scheduler(program, chip, issue, {}).run()
        got = compiled.schedule_compiled(program, chip, issue)
        assert got is not None
        assert got.order == ref.order
        assert got.total_time == pytest.approx(ref.total_time, rel=REL)
        assert len(got.throttle) == len(ref.throttle)
        assert [x for r in got.throttle for x in r] == pytest.approx(
            [x for r in ref.throttle for x in r], rel=REL)
        assert len(got.events) == len(ref.events)
        for a, b in zip(ref.events, got.events):
            assert (a.index, a.core, a.track, a.waits, a.cost, tuple(a.dma_engines),
                    a.moved) == (b.index, b.core, b.track, b.waits, b.cost,
                                 tuple(b.dma_engines), b.moved), a.index
            assert (b.start, b.end, b.done, b.ready) == pytest.approx(
                (a.start, a.end, a.done, a.ready), rel=REL), a.index


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
@pytest.mark.parametrize("variant", ["tiled", "hoisted", "block_free", "block_mnk"])
def test_matmul_tutorial(variant, chip):
    run = tutorial_run(variant, chip)
    _same(run.program, chip)


@nki.jit
def mixed(x, w, seed=0, dge=True):
    """Random partitions (DMA engine subsets), queues, DGE modes, PE tiles, folded PSUM
    memsets, explicit order and reused buffers (WAR / WAW)."""
    rng = np.random.default_rng(seed)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    wt = nl.ndarray(w.shape, dtype=w.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=wt, src=w)
    prev = None
    for j in range(x.shape[1] // 64):
        p = int(rng.choice([4, 16, 40, 128]))
        t = nl.ndarray((128, 64), dtype=x.dtype, buffer=nl.sbuf)
        modes = [nisa.dge_mode.none, nisa.dge_mode.hwdge, nisa.dge_mode.swdge]
        mode = modes[j % 3] if dge else modes[0]  # DGE modes from NeuronCore-v3 on
        nisa.dma_copy(dst=t[0:p, :], src=x[0:p, j * 64:(j + 1) * 64], dge_mode=mode)
        acc = nl.ndarray((64, 64), dtype=nl.float32, buffer=nl.psum)
        nisa.memset(dst=acc, value=0.0)
        q = 64 * int(rng.integers(0, 2))
        kw = dict(tile_position=(q, q), tile_size=(64, 64)) if rng.random() < 0.5 else {}
        nisa.nc_matmul(dst=acc, stationary=wt[q:q + 64, :], moving=t[q:q + 64, :], **kw)
        u = nl.ndarray((128, 64), dtype=x.dtype, buffer=nl.sbuf)
        ins = nisa.activation(dst=u[0:64, :], op=nl.exp, data=acc)
        if prev is not None and ins is not None and rng.random() < 0.3:
            ins.depends_on(prev)
        prev = ins
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0,
                           engine=nisa.gpsimd_engine if j % 2 else nisa.vector_engine)
        nisa.dma_copy(dst=out[:, j * 64:(j + 1) * 64], src=t)
    return out


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mixed_kernel(seed, chip):
    x = np.zeros((128, 64 * 24), ml_dtypes.bfloat16)
    w = np.zeros((128, 64), ml_dtypes.bfloat16)
    _, run = trnsim.run_kernel(mixed, (x, w), {"seed": seed, "dge": chip != "trn1"},
                               chip=chip, numerics=False)
    _same(run.program, chip)




def test_strided_stores():
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 256), np.float32),),
                               chip="trn2", numerics=False)
    _same(run.program, "trn2")


@nki.jit
def barrier_kernel(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    t = nl.ndarray((64, a.shape[1]), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a[0:64, :])
    nisa.core_barrier(data=out, cores=(0, 1))
    return out


def test_synchronisation_groups_fall_back():
    _, run = trnsim.run_kernel(barrier_kernel, (np.zeros((128, 64), np.float32),),
                               chip="trn2", numerics=False, lnc=2)
    chip = load_chip("trn2")
    if not _Scheduler(run.program, chip).groups:
        pytest.skip("no synchronisation group recorded")
    assert compiled.schedule_compiled(run.program, chip, None) is None


def test_lane_books_as_the_python_lane():
    """_book against _Lane.book: gaps filled, neighbours merged, HORIZON forgetting,
    the lane compacted and grown, the bound of its tail kept."""
    rng = np.random.default_rng(3)
    forgot = 0
    for _ in range(20):
        lane = _Lane()
        L = np.empty((1, 4, 2))
        lim = np.zeros((2, 2), np.int64)  # (the lane's, then the bound of its tail)
        t = 0.0
        for _ in range(3000):
            t += float(rng.choice([0.0, rng.uniform(0, 4000)]))
            at = t - float(rng.choice([0.0, rng.uniform(0, 8000)]))
            d = float(rng.choice([rng.uniform(0, 1000), 0.0]))
            L = compiled._roomier(L, lim)  # (as _core before each transfer)
            e = compiled._book(L, lim, 0, at, d)
            assert e == lane.book(at, d)
            h, n = lim[0]
            assert L[0, h:n, 0].tolist() == lane.starts and L[0, h:n, 1].tolist() == lane.ends
            assert lim[1, 1] >= n  # (_pass tests the bound for a full lane)
            forgot = max(forgot, h)
    assert forgot  # HORIZON forgetting was exercised


def test_busy_window_decides_as_the_python_window():
    rng = np.random.default_rng(7)
    for _ in range(100):
        w = _BusyWindow()
        n = int(rng.integers(1, 80))
        spans = np.empty((1, n, 2))
        s = 0.0
        for j in range(n):
            s += float(rng.choice([0.0, rng.uniform(0, 90)]))
            e = s + float(rng.uniform(1, 120))
            w.add(s, e)
            spans[0, j] = s, e
        wn = np.array([[0, n]])
        st = np.zeros((1, compiled.ST_FIELDS))
        st[0, compiled.ST_TOTAL] = w.total
        t = s + float(rng.choice([0.0, rng.uniform(0, 200)]))
        lo = t - float(rng.uniform(100, 3000))
        last_end = float(spans[0, :, 1].max())
        for threshold in (0.0, 500.0, 1500.0, 3000.0):
            assert compiled._below(spans, wn, st, 0, lo, t, threshold, last_end) == \
                w.below(lo, t, threshold, last_end)
            assert st[0, compiled.ST_TOTAL] == w.total


@pytest.mark.parametrize("count", [1, 2, 5, 16, 17, 200])
def test_waits_sorted_latest_first_stably(count):
    """_ready orders the waits as _Scheduler._ready's stable sort (ties in record
    order), few (insertion) and many (merge sort)."""
    rng = np.random.default_rng(count)
    done = rng.choice([10.0, 20.0, 30.0], size=count)  # many ties
    end = done.copy()
    dprod = np.arange(count, dtype=np.int64)
    dkind = np.zeros(count, np.int64)  # RAW
    dptr = np.array([0, count], np.int64)
    track = np.zeros(count + 1, np.int64)
    visited = np.ones(count + 1, np.uint8)
    wsel = np.zeros(count, np.int64)
    ready, nw = compiled._ready(0, 1, False, 0.0, dptr, dprod, dkind, track, visited, end,
                                done, wsel, np.empty(count), np.empty(count),
                                np.empty(count, wsel.dtype))
    assert ready == done.max() and nw == count
    assert wsel.tolist() == sorted(range(count), key=lambda j: -done[j])


@nki.jit
def random_tiles(x, seed=0):
    """Copies between random boxes of two SBUF tiles and a PSUM tile: partial
    partitions and bytes, strided (holey) writes, reads of bytes nobody wrote."""
    rng = np.random.default_rng(seed)
    a = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    b = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a[0:64, 0:256], src=x[0:64, 0:256])
    engines = [nisa.vector_engine, nisa.scalar_engine, nisa.gpsimd_engine]
    for _ in range(60):
        p0 = int(rng.integers(0, 4)) * 32
        p1 = p0 + int(rng.integers(1, 5 - p0 // 32)) * 32
        w = int(rng.choice([16, 32, 64, 128]))
        c0, c1 = (int(v) * 16 for v in rng.integers(0, (512 - w) // 16, size=2))
        src, dst = (a, b) if rng.random() < 0.5 else (b, a)
        step = 2 if rng.random() < 0.25 else 1
        nisa.tensor_copy(dst=dst[p0:p1, c1:c1 + w:step], src=src[p0:p1, c0:c0 + w:step],
                         engine=engines[int(rng.integers(0, 3))])
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=b)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_onchip_boxes(seed):
    _, run = trnsim.run_kernel(random_tiles, (np.zeros((128, 512), np.float32),),
                               {"seed": seed}, chip="trn2", numerics=False)
    _same(run.program, "trn2")


def _python_dependencies(sched):
    """(dptr, producers, kind codes, space names) of the Python scheduler's own
    `_collect`, in issue order: what compiled_deps.collect must give."""
    from trnsim.timing import columns
    dptr, prods, kinds, spaces = [0], [], [], []
    for i in sched.order:
        for p, (kind, space) in sched._collect(sched.instrs[i]).items():
            prods.append(p)
            kinds.append(columns.KINDS.index(kind))
            spaces.append(space)
        dptr.append(len(prods))
    return dptr, prods, kinds, spaces


@pytest.mark.parametrize("caps", [None, (2, 2, 2, 2, 2)])
def test_compiled_maps_as_the_python_collect(caps):
    """The compiled maps find the Python scheduler's dependencies in its order; with
    capacities too small for the program they run again with more."""
    from trnsim.timing import compiled_deps
    _, run = trnsim.run_kernel(random_tiles, (np.zeros((128, 512), np.float32),),
                               {"seed": 0}, chip="trn2", numerics=False)
    chip = load_chip("trn2")
    ref = _python_dependencies(_Scheduler(run.program, chip, None, {}))
    sched = _Scheduler(run.program, chip, None, {})
    spaces = {"": 0}
    dptr, dprod, dkind, dspace = compiled_deps.collect(sched, spaces, caps=caps)
    names = list(spaces)
    assert (dptr.tolist(), dprod.tolist(), dkind.tolist()) == ref[:3]
    assert [names[x] for x in dspace] == ref[3]


def test_constants_are_the_python_schedulers():
    assert (compiled.HORIZON, compiled.LANE_KEEP, compiled.NOISE) == (
        _Lane.HORIZON, _Lane.KEEP, _BusyWindow.NOISE)
