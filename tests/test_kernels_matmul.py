"""trnsim.kernels.matmul: the bf16/fp32, fp8 double-row and MXFP8 matmul kernels against
NumPy references written here (exact products of the input values summed in float64;
fp8 values taken exactly from ml_dtypes; MX quantization re-derived from the OCP rule),
on the chips where their instructions exist; plus timing-only checks that the blocked
tiling keeps the Tensor Engine busy."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.kernels.matmul as mm
import nki.language as nl

BF16 = ml_dtypes.bfloat16
FP32_OUT = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("NEURON_PLATFORM_TARGET_OVERRIDE", raising=False)
    monkeypatch.delenv("TRNSIM_MATMUL_ACCUMULATION", raising=False)


def run(kernel, *args, chip, **kwargs):
    return trnsim.profile(kernel, *args, chip=chip, cache=False, **kwargs).outputs


def exact(lhsT, rhs):
    """lhsT.T @ rhs of the exact input values, in float64."""
    return np.asarray(lhsT, np.float64).T @ np.asarray(rhs, np.float64)


def assert_bf16_close(out, ref64):
    """`out` (bf16) is ref64 rounded to bf16, give or take one bf16 ulp (the kernel rounds
    an fp32 accumulator, whose last bits may differ from the float64 reference)."""
    assert out.dtype == BF16
    ref = ref64.astype(np.float32)
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2 ** -7,
                               atol=2 ** -7 * np.abs(ref).max() * 1e-3)


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


# -- bf16 / fp32 -------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
@pytest.mark.parametrize("K,M,N,resident", [
    (256, 1024, 1024, True),    # 2 blocks of 4 stationary tiles, rhs resident
    (384, 256, 1024, False),    # one block of 2 tiles, rhs streamed in 3 k-tiles
    (64, 96, 200, False),       # K < 128, M < 128, N < 512: one partial tile each
])
def test_matmul_bf16_fp32_out(chip, K, M, N, resident, monkeypatch):
    if not resident:
        monkeypatch.setattr(mm, "RESIDENT_RHS_BYTES", 0)
    rng = np.random.default_rng(K + M + N)
    a, b = rand(rng, (K, M), BF16), rand(rng, (K, N), BF16)
    out = run(mm.matmul, a, b, out_dtype=nl.float32, chip=chip)
    assert out.dtype == np.float32 and out.shape == (M, N)
    np.testing.assert_allclose(out, exact(a, b).astype(np.float32), **FP32_OUT)


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_matmul_bf16_out_streamed_rhs(chip, monkeypatch):
    monkeypatch.setattr(mm, "RESIDENT_RHS_BYTES", 0)
    rng = np.random.default_rng(1)
    a, b = rand(rng, (512, 1024), BF16), rand(rng, (512, 512), BF16)
    out = run(mm.matmul, a, b, chip=chip)
    assert_bf16_close(out, exact(a, b))


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_matmul_fp32_bias_relu(chip):
    rng = np.random.default_rng(2)
    a, b = rand(rng, (256, 256), np.float32), rand(rng, (256, 1024), np.float32)
    bias = rand(rng, (1024,), np.float32, 4.0)
    out = run(mm.matmul, a, b, bias=bias, activation=nl.relu, chip=chip)
    assert out.dtype == np.float32
    ref = np.maximum(exact(a, b) + bias, 0.0).astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    assert (out[ref == 0] == 0).all()


@pytest.mark.parametrize("whole_bias", [True, False])
def test_matmul_bf16_bias_no_activation(whole_bias, monkeypatch):
    if not whole_bias:   # the bias loaded tile by tile instead of once
        monkeypatch.setattr(mm, "BIAS_BYTES", 0)
    rng = np.random.default_rng(3)
    a, b = rand(rng, (128, 128), BF16), rand(rng, (128, 1024), BF16)
    bias = rand(rng, (1, 1024), BF16, 10.0)
    out = run(mm.matmul, a, b, bias=bias, chip="trn2")
    assert_bf16_close(out, exact(a, b) + bias.astype(np.float64))


# M and N remainders: the output is split into up to four regions (full tiles, the last
# partial row tile, the last partial column tile, the corner), each exact; a K remainder
# is a last contraction tile of fewer partitions
@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
@pytest.mark.parametrize("K,M,N", [(256, 7, 100), (128, 200, 700), (384, 1000, 1536),
                                   (64, 1, 1), (256, 130, 513), (300, 1, 700),
                                   (1000, 7, 100), (200, 130, 513)])
def test_matmul_remainders(chip, K, M, N):
    rng = np.random.default_rng(K * M + N)
    a, b = rand(rng, (K, M), BF16), rand(rng, (K, N), BF16)
    out = run(mm.matmul, a, b, out_dtype=nl.float32, chip=chip)
    assert out.shape == (M, N)
    np.testing.assert_allclose(out, exact(a, b).astype(np.float32), **FP32_OUT)


@pytest.mark.parametrize("whole_bias", [True, False])
def test_matmul_remainders_with_bias_and_activation(whole_bias, monkeypatch):
    if not whole_bias:
        monkeypatch.setattr(mm, "BIAS_BYTES", 0)
    rng = np.random.default_rng(11)
    a, b = rand(rng, (300, 300), np.float32), rand(rng, (300, 600), np.float32)
    bias = rand(rng, (600,), np.float32, 4.0)
    out = run(mm.matmul, a, b, bias=bias, activation=nl.relu, chip="trn2")
    ref = np.maximum(exact(a, b) + bias, 0.0).astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


# double_row K remainders: a [ceil(r/2), 2, .] last tile, an odd r's pad row memset to 0
@pytest.mark.parametrize("chip", ["trn2", "trn3"])
@pytest.mark.parametrize("K,M,N", [(512, 200, 700), (300, 7, 100), (255, 130, 1),
                                   (64, 1, 513), (1001, 1000, 100)])
def test_matmul_fp8_remainders(chip, K, M, N):
    dt = ml_dtypes.float8_e4m3
    rng = np.random.default_rng(12 + K)
    a, b = rand(rng, (K, M), dt, 2.0), rand(rng, (K, N), dt, 2.0)
    out = run(mm.matmul_fp8, a, b, scale=0.5, out_dtype=nl.float32, chip=chip)
    assert out.shape == (M, N)
    np.testing.assert_allclose(out, (0.5 * exact(a, b)).astype(np.float32), **FP32_OUT)


def test_divisible_shapes_are_one_region():
    """A divisible shape is one region: its tiling is the one before remainders were
    handled (docs/kernels.md's matmul rows kept their latencies to the 0.1 us)."""
    regions = mm._regions(4096, 8192)
    assert regions == [(0, 4096, 0, 8192)]
    assert mm._regions(200, 700) == [(0, 128, 0, 512), (0, 128, 512, 188),
                                      (128, 72, 0, 512), (128, 72, 512, 188)]


# -- fp8 double row ----------------------------------------------------------------------
FP8 = {"e4m3": (ml_dtypes.float8_e4m3, ("trn2", "trn3")),
       "e5m2": (ml_dtypes.float8_e5m2, ("trn2", "trn3")),
       "e4m3fn": (ml_dtypes.float8_e4m3fn, ("trn3",))}


@pytest.mark.parametrize("fmt,chip", [(f, c) for f, (_, cs) in FP8.items() for c in cs])
def test_matmul_fp8_double_row(fmt, chip):
    dt = FP8[fmt][0]
    rng = np.random.default_rng(4)
    a, b = rand(rng, (512, 640), dt, 2.0), rand(rng, (512, 1024), dt, 2.0)
    out = run(mm.matmul_fp8, a, b, scale=0.125, out_dtype=nl.float32, chip=chip)
    np.testing.assert_allclose(out, (0.125 * exact(a, b)).astype(np.float32), **FP32_OUT)


@pytest.mark.parametrize("K,M,N,dt,chip,seed", [
    (256, 256, 512, ml_dtypes.float8_e4m3, "trn2", 5),
    (301, 7, 700, ml_dtypes.float8_e4m3fn, "trn3", 13),   # K, M and N remainders
])
def test_matmul_fp8_bias_silu_bf16_out(K, M, N, dt, chip, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, (K, M), dt), rand(rng, (K, N), dt)
    bias = rand(rng, (N,), np.float32)
    out = run(mm.matmul_fp8, a, b, scale=0.25, bias=bias, activation=nl.silu, chip=chip)
    x = 0.25 * exact(a, b) + bias
    ref = x / (1.0 + np.exp(-x))
    assert out.dtype == BF16
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=2 ** -6, atol=1e-2)


def test_matmul_fp8_uses_double_row_and_needs_v3():
    a, b = np.zeros((256, 128), ml_dtypes.float8_e4m3), np.zeros((256, 512),
                                                                  ml_dtypes.float8_e4m3)
    _, run_ = trnsim.run_kernel(mm.matmul_fp8, (a, b), chip="trn2", numerics=False)
    mms = [i for i in run_.program if i.opcode == "nc_matmul"]
    assert len(mms) == 1 and mms[0].attrs["perf_mode"] == "double_row"
    assert mms[0].attrs["contraction"] == 256
    with pytest.raises(Exception, match="double_row needs NeuronCore-v3"):
        run(mm.matmul_fp8, a, b, chip="trn1", numerics=False)


# -- MXFP8 -------------------------------------------------------------------------------
def mx_dequant(x):
    """What MXFP8 (e4m3fn) quantization keeps of x [K, C]: in each 512-row tile, the 32
    values {128 j + p : j < 4, p in 8g .. 8g+7} of a column share the scale
    2^(floor(log2 max|v|) - 7) (e4m3fn's largest exponent 8, minus one so the largest
    value never saturates: quantize_mx's rule in docs/numerics.md), each value / scale
    rounded to e4m3fn (clipped to 448)."""
    x = np.asarray(x, np.float64)
    K, C = x.shape
    out = np.empty_like(x)
    for t in range(K // 512):
        for g in range(16):
            rows = [t * 512 + 128 * j + p for j in range(4) for p in range(8 * g, 8 * g + 8)]
            blk = x[rows]                                      # [32, C]
            amax = np.abs(blk).max(axis=0)
            e = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1))) - 7, -127)
            scale = 2.0 ** np.maximum(e, -127)
            q = np.clip(blk / scale, -448, 448).astype(ml_dtypes.float8_e4m3fn)
            out[rows] = q.astype(np.float64) * scale
    return out


@pytest.mark.parametrize("K,M,N", [(512, 256, 1024), (1024, 128, 512)])
def test_matmul_mxfp8(K, M, N):
    rng = np.random.default_rng(K + M)
    a, b = rand(rng, (K, M), BF16), rand(rng, (K, N), BF16)
    out = run(mm.matmul_mxfp8, a, b, out_dtype=nl.float32, chip="trn3")
    ref = mx_dequant(a).T @ mx_dequant(b)
    np.testing.assert_allclose(out, ref.astype(np.float32), **FP32_OUT)
    # and it is an approximation of the bf16 product, within MXFP8's few percent
    full = exact(a, b)
    assert np.abs(out - full).max() < 0.1 * np.abs(full).max()


def test_matmul_mxfp8_bias_relu_bf16_out():
    rng = np.random.default_rng(6)
    a, b = rand(rng, (512, 128), BF16), rand(rng, (512, 2048), BF16)
    bias = rand(rng, (2048,), np.float32, 8.0)
    out = run(mm.matmul_mxfp8, a, b, bias=bias, activation=nl.relu, chip="trn3")
    ref = np.maximum(mx_dequant(a).T @ mx_dequant(b) + bias, 0)
    assert_bf16_close(out, ref)


def mx_dequant_padded(x):
    """mx_dequant of x with zero rows appended up to a multiple of 512 (what the kernel
    quantizes for a partial last contraction tile)."""
    x = np.asarray(x, np.float64)
    return mx_dequant(np.pad(x, ((0, -x.shape[0] % 512), (0, 0))))


@pytest.mark.parametrize("K,M,N", [(300, 7, 100), (1000, 200, 700), (64, 1, 1),
                                   (512, 130, 513), (700, 1000, 512)])
def test_matmul_mxfp8_remainders(K, M, N):
    rng = np.random.default_rng(K + M + N)
    a, b = rand(rng, (K, M), BF16), rand(rng, (K, N), BF16)
    out = run(mm.matmul_mxfp8, a, b, out_dtype=nl.float32, chip="trn3")
    assert out.shape == (M, N)
    ref = mx_dequant_padded(a).T @ mx_dequant_padded(b)
    np.testing.assert_allclose(out, ref.astype(np.float32), **FP32_OUT)


def test_matmul_mxfp8_remainders_bias_relu():
    rng = np.random.default_rng(7)
    a, b = rand(rng, (700, 7), BF16), rand(rng, (700, 600), BF16)
    bias = rand(rng, (600,), np.float32, 8.0)
    out = run(mm.matmul_mxfp8, a, b, bias=bias, activation=nl.relu, chip="trn3")
    assert_bf16_close(out, np.maximum(mx_dequant_padded(a).T @ mx_dequant_padded(b)
                                      + bias, 0))


def test_matmul_mxfp8_needs_trn3():
    a, b = np.zeros((512, 128), BF16), np.zeros((512, 512), BF16)
    with pytest.raises(Exception, match="NeuronCore-v4"):
        run(mm.matmul_mxfp8, a, b, chip="trn2", numerics=False)


# -- timing only: the blocked tiling keeps the Tensor Engine busy -------------------------
def test_blocked_bf16_keeps_tensor_engine_busy():
    """K=M=2048, N=4096 bf16 on trn2: 2 K M N FLOPs are 437 us at the PE's peak. rhs
    (128 KiB per partition) is too big to keep whole, so it streams once per block of 4
    resident stationary tiles; each stationary tile is loaded once and each streamed
    512-column moving tile serves 4 matmuls, so the DMA needs ~2/3 of its bandwidth and
    overlaps the matmuls. What is left is the first block's load, the last block's
    epilogue and the Tensor Engine's ~3 us warm-up: a few percent. (A kernel that loads
    both operands per matmul, examples/tiled_matmul.py, is DMA-bound well below this.)"""
    K, M, N = 2048, 2048, 4096
    p = trnsim.profile(mm.matmul, np.zeros((K, M), BF16), np.zeros((K, N), BF16),
                       chip="trn2", numerics=False, cache=False)
    s = p.summary
    assert s["matmul_instruction_count"] == (K // 128) * (M // 128) * (N // 512)
    assert s["spill_save_bytes"] == 0 and s["spill_reload_bytes"] == 0
    # lhsT read once; rhs once per 512-row block of lhsT (4 blocks); result written once
    assert s["hbm_read_bytes"] == K * M * 2 + K * N * 2 * (M // 512)
    assert s["hbm_write_bytes"] == M * N * 2
    assert s["tensor_engine_active_time_percent"] > 90
    assert s["mfu_estimated_percent"] > 85


def test_fp8_and_mx_speedups_over_bf16():
    """The lower-precision kernels do 2x (fp8 double row) and 4x (MX) the contraction
    per PE cycle; on a compute-bound shape they must come out well ahead of bf16 (bars
    below the ideal: DMA of the bf16 output and the on-chip quantization remain)."""
    K, M, N = 1024, 2048, 2048

    def t(kernel, dt, chip):
        return trnsim.profile(kernel, np.zeros((K, M), dt), np.zeros((K, N), dt),
                              chip=chip, numerics=False, cache=False).total_time

    bf16_trn2 = t(mm.matmul, BF16, "trn2")
    assert bf16_trn2 / t(mm.matmul_fp8, ml_dtypes.float8_e4m3, "trn2") > 1.6
    assert t(mm.matmul, BF16, "trn3") / t(mm.matmul_mxfp8, BF16, "trn3") > 2.5
