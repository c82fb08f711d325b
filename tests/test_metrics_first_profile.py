"""What a newcomer's first profile must get right (issue #7, item 4), on small kernels run
through the real timing model. Expected values are computed by hand from the published
figures (hardware.md §1, Neuron Explorer's profile-schema-reference.rst) and the kernels'
shapes, not from trnsim's code: see docs/metrics.md for each definition.

- the roofline classifies a kernel against the bandwidth its core's DMA engines reach,
  not one HBM stack's (Explorer's peak_flops_bandwidth_ratio keeps the stack);
- mfu_max_achievable_estimated_percent never exceeds 100%;
- dma_queue_count counts the DMA queues the timeline draws;
- a load of 2-byte contiguous runs gets the inefficient-DMA insight, ranked above
  "Tensor Engine starved";
- MFU/HFU are Explorer's: FLOPs over the BF16 peak, so fp32 matmuls stay under 25%;
- nki.benchmark-shaped latency adds the chip's per-launch overhead.
"""
import inspect

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki

BF16 = ml_dtypes.bfloat16
PE = 128 * 128  # processing elements of the Tensor Engine
TE_CLOCK = {"trn1": 2.8e9, "trn2": 2.4e9, "trn3": 2.4e9}  # hardware.md §1 'TensorE clock'
STACK_BW = {"trn1": 410e9, "trn2": 725e9, "trn3": 4.9e12 / 4}  # one HBM stack (§1, §5)
DMA_BW = {"trn1": 272e9, "trn2": 368e9, "trn3": 528e9}  # 16 DMA engines per core (§1)


@nki.jit
def hoisted_matmul(lhsT, rhs):
    """out[M, N] (fp32) = lhsT.T @ rhs, K = M = N = 512: every operand tile is loaded once
    (4 + 4 loads of [128, 512]), 4 x 4 matmuls, 4 stores of [128, 512] fp32."""
    K, M = lhsT.shape
    _, N = rhs.shape
    out = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    a_tiles, b_tiles = [], []
    for k in range(K // 128):
        a = nl.ndarray((128, M), dtype=lhsT.dtype, buffer=nl.sbuf)
        b = nl.ndarray((128, N), dtype=rhs.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, 0:M])
        nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, 0:N])
        a_tiles.append(a)
        b_tiles.append(b)
    for m in range(M // 128):
        acc = nl.ndarray((128, N), dtype=nl.float32, buffer=nl.psum)
        for k in range(K // 128):
            nisa.nc_matmul(dst=acc, stationary=a_tiles[k][:, m * 128:(m + 1) * 128],
                           moving=b_tiles[k])
        o = nl.ndarray((128, N), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=o, src=acc)
        nisa.dma_copy(dst=out[m * 128:(m + 1) * 128, 0:N], src=o)
    return out


@nki.jit
def even_columns_matmul(w, x):
    """out = w.T @ x[:, 0::2]: the even columns of x loaded straight from HBM, one
    2-byte element per contiguous run (an interleave that belongs on chip)."""
    K, M = w.shape
    _, N2 = x.shape
    N = N2 // 2
    out = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    acc = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.psum)
    for k in nl.sequential_range(K // 128):
        w_sb = nl.ndarray((128, M), dtype=w.dtype, buffer=nl.sbuf)
        x_sb = nl.ndarray((128, N), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=w_sb, src=w[k * 128:(k + 1) * 128, 0:M])
        nisa.dma_copy(dst=x_sb, src=x[k * 128:(k + 1) * 128, 0:N2:2])  # the 2-byte runs
        nisa.nc_matmul(dst=acc, stationary=w_sb, moving=x_sb)
    o = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=o, src=acc)
    nisa.dma_copy(dst=out, src=o)
    return out


def _line_of(fn, text):
    src, first = inspect.getsourcelines(fn.fn if hasattr(fn, "fn") else fn)
    return first + next(i for i, line in enumerate(src) if text in line)


@pytest.fixture(scope="module")
def mm_inputs():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((512, 512)).astype(BF16),
            rng.standard_normal((512, 512)).astype(BF16))


@pytest.fixture(scope="module")
def hoisted(mm_inputs):
    return {chip: trnsim.profile(hoisted_matmul, *mm_inputs, chip=chip)
            for chip in ("trn1", "trn2", "trn3")}


# 2*512^3 FLOPs over 512 KiB + 512 KiB read and 1 MiB (fp32) written
FLOPS = 2 * 512 ** 3
HBM_BYTES = 2 * 512 * 512 * 2 + 512 * 512 * 4
AI = FLOPS / HBM_BYTES  # 128 FLOP/B


def test_hoisted_matmul_traffic_is_what_the_kernel_moves(hoisted, mm_inputs):
    ref = mm_inputs[0].astype(np.float64).T @ mm_inputs[1].astype(np.float64)
    for prof in hoisted.values():
        np.testing.assert_allclose(prof.outputs, ref, rtol=1e-3, atol=1e-3)
        s = prof.summary
        assert s["model_flops"] == FLOPS
        assert s["hbm_read_bytes"] + s["hbm_write_bytes"] == HBM_BYTES
        assert s["mm_arithmetic_intensity"] == pytest.approx(AI)


def test_roofline_uses_the_bandwidth_the_core_reaches(hoisted):
    """(a) AI = 128 FLOP/B sits between trn2's stack ridge (78.6 T / 725 G = 108.5) and its
    DMA ridge (78.6 T / 368 G = 213.7): the kernel is memory-bound (the simulation agrees:
    its DMA queues are busy longer than the Tensor Engine), and Explorer's ratio stays
    the stack's."""
    prof = hoisted["trn2"]
    s = prof.summary
    peak = 2 * PE * TE_CLOCK["trn2"]
    assert s["peak_flops_bandwidth_ratio"] == pytest.approx(peak / STACK_BW["trn2"])
    assert s["peak_flops_bandwidth_ratio"] < AI  # the stack roof would say compute-bound
    assert s["roofline_bandwidth"] == pytest.approx(DMA_BW["trn2"])
    assert s["roofline_ridge_point"] == pytest.approx(peak / DMA_BW["trn2"])
    assert s["roofline_arithmetic_intensity"] == pytest.approx(AI)  # bf16: weight 1
    assert s["roofline_memory_bound"] is True
    assert s["roofline_max_achievable_percent"] == pytest.approx(
        100 * AI / (peak / DMA_BW["trn2"]))
    # memory-bound: the roofline time is the HBM bytes at the core's DMA bandwidth
    assert s["roofline_time"] == pytest.approx(HBM_BYTES / DMA_BW["trn2"])
    assert s["total_time"] > s["roofline_time"]
    assert s["dma_active_time"] > s["tensor_engine_active_time"]
    # the report's roofline draws the same roof and puts the kernel on its memory side
    from trnsim.profile.report import _roofline_svg
    svg, info = _roofline_svg(prof)
    assert info["bw"] == pytest.approx(DMA_BW["trn2"])
    assert info["ridge"] == pytest.approx(peak / DMA_BW["trn2"])
    assert "memory-bound side" in svg
    # on trn1 a core's DMA (272 GB/s) is also below its stack (410 GB/s)
    s1 = hoisted["trn1"].summary
    assert s1["roofline_bandwidth"] == pytest.approx(DMA_BW["trn1"])


def test_mfu_max_achievable_never_exceeds_100(hoisted):
    """(b) Explorer: (model_flops / HBM bytes) / (max ops/s / max HBM bandwidth), the best
    utilization achievable, so at most 100%: trn2 128/108.5 and trn3 128/64.2 are capped;
    trn1 128/223.8 = 57.2% is below the ridge and stays as computed."""
    for chip in ("trn2", "trn3"):
        assert AI > 2 * PE * TE_CLOCK[chip] / STACK_BW[chip]
        assert hoisted[chip].summary["mfu_max_achievable_estimated_percent"] == 100.0
    ratio1 = 2 * PE * TE_CLOCK["trn1"] / STACK_BW["trn1"]  # 223.78, the published figure
    assert hoisted["trn1"].summary["mfu_max_achievable_estimated_percent"] == pytest.approx(
        100 * AI / ratio1)


def test_dma_queue_count_is_the_timelines_queues(hoisted):
    """(c) loads and stores go to different queues; the summary counts every queue track
    the timeline draws (it said 1 while three were drawn)."""
    for prof in hoisted.values():
        tracks = {e.track for e in prof.timeline.events if e.track.startswith("dma:")}
        assert len(tracks) > 1
        assert prof.summary["dma_queue_count"] == len(tracks)


def test_two_byte_runs_get_the_inefficient_dma_insight_first():
    """(d) 4 loads of x[128 rows, 0:1024:2] bf16: 131072 B each in 2-byte runs."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((512, 128)).astype(BF16)
    x = rng.standard_normal((512, 1024)).astype(BF16)
    prof = trnsim.profile(even_columns_matmul, w, x)
    ref = w.astype(np.float64).T @ x.astype(np.float64)[:, 0::2]
    np.testing.assert_allclose(prof.outputs, ref, rtol=1e-3, atol=1e-3)
    top = prof.insights[0]
    assert top.rule == "inefficient_dma"
    assert "4 DMA transfers (512 KiB)" in top.message and "runs of 2 B" in top.message
    line = _line_of(even_columns_matmul, "0:N2:2")
    assert top.locations[0].endswith(f":{line}")
    assert "strided SBUF view" in top.recommendation and "on chip" in top.recommendation
    rules = [i.rule for i in prof.all_insights]
    if "engine_starvation" in rules:  # still reported, below, and pointing at the loads
        starved = prof.all_insights[rules.index("engine_starvation")]
        assert rules.index("engine_starvation") > 0
        assert "2 B contiguous runs" in starved.recommendation


def test_contiguous_loads_do_not_fire_inefficient_dma(hoisted):
    # 1024 B runs ([128, 512] bf16 rows): above the 256 B overhead-bound size
    for prof in hoisted.values():
        assert "inefficient_dma" not in [i.rule for i in prof.all_insights]


def test_fp32_matmul_utilization_is_explorers(mm_inputs):
    """Explorer's MFU/HFU divide the FLOPs themselves (2 * MACs) by the BF16 peak; fp32
    runs at a quarter of that rate, so it cannot pass 25%. adjusted_* are x4 (BF16
    equivalent)."""
    a, b = (m.astype(np.float32) for m in mm_inputs)
    prof = trnsim.profile(hoisted_matmul, a, b, chip="trn2")
    s = prof.summary
    peak = 2 * PE * TE_CLOCK["trn2"]
    assert s["hardware_flops"] == s["model_flops"] == FLOPS
    assert s["adjusted_hardware_flops"] == 4 * FLOPS
    assert s["mfu_estimated_percent"] == pytest.approx(100 * FLOPS / (peak * s["total_time"]))
    assert s["hfu_estimated_percent"] == pytest.approx(s["mfu_estimated_percent"])
    assert s["mfu_estimated_percent"] <= 25.0
    # fp32 traffic doubles the bytes; the BF16-equivalent roofline intensity is x4
    hbm = 2 * 512 * 512 * 4 + 512 * 512 * 4
    assert s["roofline_arithmetic_intensity"] == pytest.approx(4 * FLOPS / hbm)


def test_benchmark_latency_adds_the_launch_overhead(hoisted):
    """nki.benchmark-shaped latency = device time (Explorer's total_time) + the chip's
    launch_overhead_ns (1300 ns, a choice: one DMA fixed cost)."""
    for chip, prof in hoisted.items():
        assert prof.chip.extras["launch_overhead_ns"] == 1300
        lat = prof.benchmark_result.nc_latency.get_latency_percentile(50)
        assert lat == pytest.approx(prof.total_time * 1e6 + 1.3)
        assert prof.summary["total_time"] == pytest.approx(prof.total_time)
