"""The timing model on small hand-computable programs.

Every expectation is computed here from the chip figures (trnsim/chips/*.json, read
through load_chip) with the formulas of hardware.md, independently of the scheduler:
  - a DMA transfer of a [P, F] tile: fixed cost + (bytes on the busiest of the
    ceil(P / 8) engines) / (per-engine bandwidth x b / (b + element overhead)), b the
    contiguous bytes per row; a queue starts its next transfer max(issue interval, data
    time) later;
  - Vector/Scalar: max(MIN_II, N) cycles; a producer on another engine adds the
    consumer's semaphore wait (dependent_issue_overhead_cycles); a result is visible
    dependency_latency_cycles after its instruction ends;
  - TensorE: max(N_moving, 64) cycles per matmul (4x for fp32), the LoadStationary
    (M / 4 cycles) in front when the engine was idle.
"""
import math

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.chips import load_chip
from trnsim.timing import Timeline, schedule


def timeline(kernel, args, chip="trn1", lnc=1, **kwargs):
    if lnc > 1:
        _, run = trnsim.run_kernel(kernel, args, kwargs, chip=chip, numerics=False, lnc=lnc)
    else:
        _, run = trnsim.run_kernel(kernel, args, kwargs, chip=chip, numerics=False)
    tl = schedule(run.program)
    assert isinstance(tl, Timeline)
    assert [e.index for e in tl.events] == list(range(len(run.program)))
    return run.program, tl


def by_opcode(program, tl, opcode):
    return [tl.events[i.index] for i in program if i.opcode == opcode]


def dma_ns(chip, partitions, row_bytes, contiguous=None):
    """Data time of one [partitions, row_bytes] transfer on its busiest engine."""
    d = chip.core.dma
    b = contiguous or row_bytes
    eff = b / (b + d.extras["element_overhead_bytes"])
    engines = min(d.engines, math.ceil(partitions / d.partitions_per_engine))
    per_engine = math.ceil(partitions / engines) * row_bytes
    return per_engine / (d.bandwidth_per_engine / 1e9 * eff)


# -- DMA -------------------------------------------------------------------------------
@nki.jit
def two_loads(a, b):
    ta = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    tb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ta, src=a)
    nisa.dma_copy(dst=tb, src=b)


@nki.jit
def load_then_store(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=t)
    return out


def test_independent_dmas_overlap():
    chip = load_chip("trn1")
    a = np.zeros((128, 64), np.float32)  # 256 B per partition: small, latency-bound
    program, tl = timeline(two_loads, (a, a.copy()))
    e1, e2 = by_opcode(program, tl, "dma_copy")
    fixed = chip.core.dma.fixed_cost_ns
    d = dma_ns(chip, 128, 256)
    assert e1.track != e2.track  # two DMA instructions: two queues
    assert e1.start == 0 and e2.start == 0
    assert e1.end == pytest.approx(fixed + d)
    # both use all 16 engines: the second's data follows the first's on each engine
    assert e2.end == pytest.approx(fixed + 2 * d)
    assert tl.total_time == pytest.approx(fixed + 2 * d)
    assert tl.total_time < 2 * (fixed + d)  # not serialized
    assert set(e1.dma_engines) == set(range(16))


def test_dependent_dmas_serialize():
    chip = load_chip("trn1")
    a = np.zeros((128, 512), np.float32)  # 2 KiB per partition
    program, tl = timeline(load_then_store, (a,))
    load, store = by_opcode(program, tl, "dma_copy")
    fixed = chip.core.dma.fixed_cost_ns
    d = dma_ns(chip, 128, 2048)
    assert load.end == pytest.approx(fixed + d)
    assert store.start == pytest.approx(load.end)  # RAW through the SBUF tile
    assert store.end == pytest.approx(2 * (fixed + d))
    assert [w.producer for w in store.waits] == [load.index]
    assert store.waits[0].kind == "RAW" and store.waits[0].space == "sbuf"


@nki.jit
def four_partition_load(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)


def test_small_partition_dma_uses_one_engine():
    # hardware.md DMA example 1: A[4, 4096] bf16 (32 KiB) moves on a single engine
    chip = load_chip("trn2")
    a = np.zeros((4, 4096), ml_dtypes.bfloat16)
    program, tl = timeline(four_partition_load, (a,), chip="trn2")
    (e,) = by_opcode(program, tl, "dma_copy")
    assert e.dma_engines == (0,)
    data = 32768 / (23 * 8192 / (8192 + chip.core.dma.extras["element_overhead_bytes"]))
    assert e.end - e.start == pytest.approx(chip.core.dma.fixed_cost_ns + data)
    assert data == pytest.approx(1416, rel=0.05)  # the measured 1416 ns


@nki.jit
def many_loads(a):
    for i in range(a.shape[0]):  # a different tile each time (a repeated one is hoisted)
        t = nl.ndarray(a.shape[1:], dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[i])


def test_queue_issue_interval_bounds_small_transfers():
    for name in ("trn1", "trn2"):
        chip = load_chip(name)
        a = np.zeros((6, 128, 32), np.float32)  # 128 B per partition
        program, tl = timeline(many_loads, (a,), chip=name)
        ev = by_opcode(program, tl, "dma_copy")
        assert len({e.track for e in ev}) == 1  # one DMA instruction in a loop: one queue
        step = max(chip.core.dma.extras["queue_issue_interval_ns"], dma_ns(chip, 128, 128))
        assert [e.start for e in ev] == pytest.approx([k * step for k in range(6)])


# -- compute engines -------------------------------------------------------------------
@nki.jit
def one_activation(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    u = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.activation(dst=u, op=nl.exp, data=t)


@pytest.mark.parametrize("free,partitions", [(64, 128), (16, 128), (64, 32), (1024, 128)])
def test_activation_costs_max_of_floor_and_elements(free, partitions):
    chip = load_chip("trn1")
    sc = chip.core.scalar
    a = np.zeros((partitions, free), np.float32)
    program, tl = timeline(one_activation, (a,))
    (act,) = by_opcode(program, tl, "activation")
    (load,) = by_opcode(program, tl, "dma_copy")
    cycles = max(sc.min_ii_cycles, free)  # fewer partitions: same cost (one lane each)
    assert act.duration == pytest.approx(cycles / sc.clock_hz * 1e9)
    if free == 64:
        assert act.duration == pytest.approx(64 / 1.4)  # the 64-cycle floor at 1.4 GHz
    # it waits for the load, plus the ScalarE semaphore wait on another engine
    assert act.start == pytest.approx(load.end + sc.dependent_issue_overhead_cycles
                                      / sc.clock_hz * 1e9)


@nki.jit
def dependent_chain(a, n=4):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    for _ in range(n):
        nisa.activation(dst=t, op=nl.exp, data=t)


def test_dependent_one_element_instructions_issue_every_264_cycles():
    # hardware.md §2 rule 4 / PERF Opt #5a: dependent 1-element ScalarE instructions
    # issue every 189 ns = 264 cycles on NC-v2
    program, tl = timeline(dependent_chain, (np.zeros((128, 1), np.float32),))
    acts = by_opcode(program, tl, "activation")
    gaps = [b.start - a.start for a, b in zip(acts, acts[1:])]
    assert gaps == pytest.approx([264 / 1.4] * 3)
    assert gaps[0] == pytest.approx(189, abs=0.5)


@nki.jit
def war_reuse(a, b, reuse=True):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    u = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.activation(dst=u, op=nl.exp, data=t)  # reads t for a long time
    v = t if reuse else nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=v, src=b)  # overwrites t: write-after-read


def test_war_hazard_through_reused_address_delays_the_writer():
    chip = load_chip("trn1")
    a = np.zeros((128, 8192), ml_dtypes.bfloat16)
    program, tl = timeline(war_reuse, (a, a.copy()))
    load1, load2 = by_opcode(program, tl, "dma_copy")
    (act,) = by_opcode(program, tl, "activation")
    assert act.duration == pytest.approx(8192 / chip.core.scalar.clock_hz * 1e9)
    assert load2.start == pytest.approx(act.end)  # waits for the reader to finish
    assert load2.waits[0].producer == act.index and load2.waits[0].kind == "WAR"
    # the same program writing a fresh tile does not wait
    program, tl = timeline(war_reuse, (a, a.copy()), reuse=False)
    load1, load2 = by_opcode(program, tl, "dma_copy")
    assert load2.start == 0
    assert not load2.waits


@nki.jit
def explicit_order(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    u = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    i1 = nisa.memset(dst=t, value=0.0, engine=nisa.vector_engine)
    i2 = nisa.memset(dst=u, value=0.0, engine=nisa.gpsimd_engine)
    if i1 is not None and i2 is not None:
        i2.depends_on(i1)


def test_explicit_depends_on_orders_engines():
    chip = load_chip("trn2")
    program, tl = timeline(explicit_order, (np.zeros((128, 256), np.float32),), chip="trn2")
    if "depends_on" not in program.instructions[1].attrs:
        pytest.skip("memset returns no instruction handle")
    m1, m2 = tl.events[0], tl.events[1]
    g = chip.core.gpsimd
    lat = chip.core.vector.extras["dependency_latency_cycles"] / chip.core.vector.clock_hz * 1e9
    assert m2.start == pytest.approx(m1.end + lat + g.dependent_issue_overhead_cycles
                                     / g.clock_hz * 1e9)
    assert m2.waits[0].kind == "order"


# -- Tensor Engine ---------------------------------------------------------------------
@nki.jit
def load_and_matmul(lhsT, rhs, n_mm=1):
    a = nl.ndarray(lhsT.shape, dtype=lhsT.dtype, buffer=nl.sbuf)
    b = nl.ndarray(rhs.shape, dtype=rhs.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=lhsT)
    nisa.dma_copy(dst=b, src=rhs)
    acc = nl.ndarray((lhsT.shape[1], rhs.shape[1]), dtype=nl.float32, buffer=nl.psum)
    for _ in range(n_mm):
        nisa.nc_matmul(dst=acc, stationary=a, moving=b)
    out = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=out, src=acc)


def test_matmul_waits_for_its_loads():
    chip = load_chip("trn1")
    te = chip.core.tensor
    lhsT = np.zeros((128, 128), ml_dtypes.bfloat16)
    rhs = np.zeros((128, 512), ml_dtypes.bfloat16)
    program, tl = timeline(load_and_matmul, (lhsT, rhs))
    la, lb = by_opcode(program, tl, "dma_copy")
    (mm,) = by_opcode(program, tl, "nc_matmul")
    (cp,) = by_opcode(program, tl, "tensor_copy")
    sem = te.extras["dependent_issue_overhead_cycles"] / te.clock_hz * 1e9
    assert mm.ready == pytest.approx(max(la.end, lb.end) + sem)
    assert mm.start == pytest.approx(mm.ready)
    assert {w.producer for w in mm.waits} == {la.index, lb.index}
    # an idle engine loads the stationary (M / 4 cycles) before the MultiplyMoving
    assert mm.duration == pytest.approx((512 + 128 / 4) / te.clock_hz * 1e9)
    # the copy out of PSUM waits for the matmul's result plus its own semaphore wait
    v = chip.core.vector
    lat = te.extras["dependency_latency_cycles"] / te.clock_hz * 1e9
    assert cp.start == pytest.approx(mm.end + lat + v.dependent_issue_overhead_cycles
                                     / v.clock_hz * 1e9)
    assert cp.duration == pytest.approx(512 / v.clock_hz * 1e9)


def _steady_matmul_ns(chip, dtype, n_mm=40, k=128, m=128, n=512):
    lhsT = np.zeros((k, m), dtype)
    rhs = np.zeros((k, n), dtype)
    program, tl = timeline(load_and_matmul, (lhsT, rhs), chip=chip, n_mm=n_mm)
    mms = by_opcode(program, tl, "nc_matmul")
    for x, y in zip(mms, mms[1:]):  # back to back
        assert y.start == pytest.approx(x.end)
    return mms


def test_fp32_matmul_costs_4x_bf16():
    chip = load_chip("trn1")
    bf = _steady_matmul_ns("trn1", ml_dtypes.bfloat16)
    f32 = _steady_matmul_ns("trn1", np.float32)
    assert bf[-1].duration == pytest.approx(512 / chip.core.tensor.clock_hz * 1e9)
    assert f32[-1].duration == pytest.approx(4 * bf[-1].duration)


def test_short_moving_is_floored_at_64_cycles():
    chip = load_chip("trn1")
    mms = _steady_matmul_ns("trn1", ml_dtypes.bfloat16, n=8)
    assert mms[-1].duration == pytest.approx(64 / chip.core.tensor.clock_hz * 1e9)


def test_throttle_ramp_on_trn2_not_on_trn1():
    t1 = _steady_matmul_ns("trn1", ml_dtypes.bfloat16)
    _, tl1 = timeline(load_and_matmul, (np.zeros((128, 128), ml_dtypes.bfloat16),
                                        np.zeros((128, 512), ml_dtypes.bfloat16)), n_mm=40)
    assert tl1.throttle == []
    assert all(e.duration == pytest.approx(t1[-1].duration) for e in t1[1:])
    chip = load_chip("trn2")
    cfg = chip.core.tensor.warmup_throttle
    lhsT = np.zeros((128, 128), ml_dtypes.bfloat16)
    rhs = np.zeros((128, 512), ml_dtypes.bfloat16)
    program, tl = timeline(load_and_matmul, (lhsT, rhs), chip="trn2", n_mm=40)
    mms = by_opcode(program, tl, "nc_matmul")
    full = 512 / chip.core.tensor.clock_hz * 1e9
    first = mms[0]
    ramp0 = first.start
    # the first matmul runs near start_fraction of peak (its LoadStationary included)
    assert first.duration > (512 + 32) / chip.core.tensor.clock_hz * 1e9 / 0.6
    assert tl.throttle and tl.throttle[0][0] == pytest.approx(ramp0)
    assert tl.throttle[0][2] == pytest.approx(cfg["start_fraction"], abs=0.05)
    assert tl.throttle[-1][1] == pytest.approx(ramp0 + cfg["ramp_ns"])
    # durations shrink along the ramp, and are full speed once it is over
    early = [e.duration for e in mms[1:5]]
    assert early == sorted(early, reverse=True)
    late = [e for e in mms if e.start >= ramp0 + cfg["ramp_ns"]]
    assert late and all(e.duration == pytest.approx(full) for e in late)
    assert sum(e.duration for e in mms) > len(mms) * full


@nki.jit
def fp8_matmuls(lhsT, rhs, double_row=False, n_mm=40):
    a = nl.ndarray(lhsT.shape, dtype=lhsT.dtype, buffer=nl.sbuf)
    b = nl.ndarray(rhs.shape, dtype=rhs.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=lhsT)
    nisa.dma_copy(dst=b, src=rhs)
    acc = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
    mode = nisa.matmul_perf_mode.double_row if double_row else nisa.matmul_perf_mode.none
    for _ in range(n_mm):
        if double_row:
            nisa.nc_matmul(dst=acc, stationary=a, moving=b, perf_mode=mode)
        else:
            for j in range(2):  # the same 256-row contraction as two K=128 matmuls
                nisa.nc_matmul(dst=acc, stationary=a[:, j, :], moving=b[:, j, :])


def test_double_row_fp8_is_2x():
    chip = load_chip("trn2")
    lhsT = np.zeros((128, 2, 128), ml_dtypes.float8_e4m3)
    rhs = np.zeros((128, 2, 512), ml_dtypes.float8_e4m3)
    p1, t1 = timeline(fp8_matmuls, (lhsT, rhs), chip="trn2", double_row=True)
    p2, t2 = timeline(fp8_matmuls, (lhsT, rhs), chip="trn2", double_row=False)
    m1, m2 = by_opcode(p1, t1, "nc_matmul"), by_opcode(p2, t2, "nc_matmul")
    assert len(m2) == 2 * len(m1)
    full = 512 / chip.core.tensor.clock_hz * 1e9
    # a double-row matmul (contraction 256) takes what one K=128 matmul takes
    assert m1[-1].duration == pytest.approx(full) and m2[-1].duration == pytest.approx(full)
    # so the same contraction takes half the Tensor Engine time once warmed up
    w1 = sum(e.duration for e in m1[len(m1) // 2:])
    w2 = sum(e.duration for e in m2[len(m2) // 2:])
    assert w2 / w1 == pytest.approx(2.0)


@nki.jit
def tiled_pe(lhsT, rhs, tiled=True):
    a = nl.ndarray(lhsT.shape, dtype=lhsT.dtype, buffer=nl.sbuf)
    b = nl.ndarray(rhs.shape, dtype=rhs.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=lhsT)
    nisa.dma_copy(dst=b, src=rhs)
    for i in range(2):
        acc = nl.ndarray((64, 512), dtype=nl.float32, buffer=nl.psum)
        kw = dict(tile_position=(64 * i, 64 * i), tile_size=(64, 64)) if tiled else {}
        nisa.nc_matmul(dst=acc, stationary=a[64 * i:64 * (i + 1), :],
                       moving=b[64 * i:64 * (i + 1), :], **kw)


def test_pe_tiles_on_disjoint_quadrants_run_concurrently():
    lhsT = np.zeros((128, 64), ml_dtypes.bfloat16)
    rhs = np.zeros((128, 512), ml_dtypes.bfloat16)
    p, t = timeline(tiled_pe, (lhsT, rhs))
    m1, m2 = by_opcode(p, t, "nc_matmul")
    assert m2.start == pytest.approx(m1.start)  # side by side on the array
    p, t = timeline(tiled_pe, (lhsT, rhs), tiled=False)
    m1, m2 = by_opcode(p, t, "nc_matmul")
    assert m2.start == pytest.approx(m1.end)  # the whole array: one after the other


# -- cores ------------------------------------------------------------------------------
@nki.jit
def per_core_work(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    core = nl.program_id()
    n = nl.num_programs()
    rows = a.shape[0] // n
    r0 = core * rows
    t = nl.ndarray((rows, a.shape[1]), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a[r0:r0 + rows, :])
    u = nl.ndarray((rows, a.shape[1]), dtype=a.dtype, buffer=nl.sbuf)
    for _ in range(4):
        nisa.activation(dst=u, op=nl.exp, data=t)
    nisa.dma_copy(dst=out[r0:r0 + rows, :], src=u)
    return out


def test_lnc2_cores_run_concurrently():
    a = np.zeros((128, 2048), np.float32)
    p1, t1 = timeline(per_core_work, (a,), chip="trn2")
    p2, t2 = timeline(per_core_work, (np.zeros((256, 2048), np.float32),), chip="trn2",
                      lnc=2)
    assert {e.core for e in t2.events} == {0, 1}
    acts = {c: [e for i, e in zip(p2, t2.events) if i.opcode == "activation" and e.core == c]
            for c in (0, 1)}
    # each core's Scalar Engine works at the same time as the other's
    assert acts[0][0].start == pytest.approx(acts[1][0].start)
    # twice the data on two cores takes about what one core takes on half of it (the
    # two cores share one HBM stack on trn2, whose bandwidth covers both)
    assert t2.total_time == pytest.approx(t1.total_time, rel=0.05)


@nki.jit
def barrier_kernel(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    core = nl.program_id()
    t = nl.ndarray((128, a.shape[1]), dtype=a.dtype, buffer=nl.sbuf)
    for _ in range(1 + 7 * core):  # core 1's GpSimd is busy 8x longer
        nisa.memset(dst=t, value=0.0, engine=nisa.gpsimd_engine)
    nisa.core_barrier(data=out, cores=(0, 1))
    nisa.memset(dst=t, value=1.0, engine=nisa.gpsimd_engine)
    nisa.dma_copy(dst=out[128 * core:128 * (core + 1), :], src=t)
    return out


def test_core_barrier_waits_for_the_slowest_core():
    chip = load_chip("trn2")
    p, t = timeline(barrier_kernel, (np.zeros((256, 1024), np.float32),), chip="trn2", lnc=2)
    bars = {i.core: t.events[i.index] for i in p if i.opcode == "core_barrier"}
    sets = {c: [t.events[i.index] for i in p if i.opcode == "memset" and i.core == c]
            for c in (0, 1)}
    g = chip.core.gpsimd
    one = 1024 / g.clock_hz * 1e9  # a memset of 1024 fp32 elements per partition
    assert sets[0][0].duration == pytest.approx(one)
    # both barriers start when core 1 (the slow one) arrives, and end together
    assert bars[1].start == pytest.approx(8 * one)
    assert bars[0].start == pytest.approx(bars[1].start)
    assert bars[0].end == pytest.approx(bars[1].end)
    assert bars[0].end - bars[0].start == pytest.approx(
        g.min_ii_cycles / g.clock_hz * 1e9 + chip.core.dma.fixed_cost_ns)
    # what follows on each core's GpSimd runs after the barrier
    assert sets[0][-1].start == pytest.approx(bars[0].end)
    assert sets[1][-1].start == pytest.approx(bars[1].end)


# -- memory: HBM strided tiles and PSUM -------------------------------------------------
@nki.jit
def store_tiles(a):
    out = nl.ndarray((128, 2048), dtype=a.dtype, buffer=nl.shared_hbm)
    t = nl.ndarray((128, 512), dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    for j in range(4):  # four column tiles of one output: disjoint, strided in HBM
        nisa.dma_copy(dst=out[:, 512 * j:512 * (j + 1)], src=t)
    return out


def test_stores_to_disjoint_strided_hbm_tiles_do_not_wait_for_each_other():
    p, t = timeline(store_tiles, (np.zeros((128, 512), np.float32),))
    load, *stores = by_opcode(p, t, "dma_copy")
    for s in stores:
        assert [w.producer for w in s.waits] == [load.index]  # RAW on the tile only



@nki.jit
def store_over_loaded_tile(x):
    """Load four column tiles of x from one queue, then store the last one over the
    first (in place): the store must wait until the first load has read its bytes."""
    tiles = []
    for j in range(4):
        t = nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 256:(j + 1) * 256])
        tiles.append(t)
    nisa.dma_copy(dst=x[:, 0:256], src=tiles[3])
    return x


def test_an_in_place_store_waits_for_the_load_of_its_bytes():
    p, t = timeline(store_over_loaded_tile, (np.zeros((128, 1024), np.float32),))
    first, *_, store = by_opcode(p, t, "dma_copy")
    assert (first.index, "WAR", "hbm") in store.waits
    assert store.start >= first.end

# -- the Tensor Engine throttle's utilization window ----------------------------------
def test_busy_window_decides_as_summing_its_intervals():
    """_BusyWindow.below (a running sum, the walk only near the threshold) against the
    sum of each interval's part inside [lo, t], over random engines' histories: start
    order, some intervals still running at t, thresholds on both sides and exactly at
    the covered length."""
    from trnsim.timing.scheduler import _BusyWindow

    rng = np.random.default_rng(7)
    for _ in range(200):
        w = _BusyWindow()
        spans, s = [], 0.0
        for _ in range(int(rng.integers(1, 80))):
            s += float(rng.choice([0.0, rng.uniform(0, 90)]))
            e = s + float(rng.uniform(1, 120))
            spans.append((s, e))
            w.add(s, e)
        t = s + float(rng.choice([0.0, rng.uniform(0, 200)]))
        lo = t - float(rng.uniform(100, 3000))
        last_end = max(e for _, e in spans)
        covered = sum(max(0.0, min(e, t) - max(a, lo)) for a, e in spans)
        for threshold in (covered, covered * 0.5, covered * 1.5, covered + 1e-9,
                          covered - 1e-9, 0.0):
            assert w.below(lo, t, threshold, last_end) == (covered < threshold) or \
                abs(covered - threshold) < 1e-6  # (a tie within rounding: either)
