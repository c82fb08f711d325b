"""trnsim.kernels.norms (transpose, softmax, rmsnorm, layernorm, rmsnorm_quant_fp8,
rope, swiglu_mlp) against references written here in NumPy (fp32 math, float64 where
noted; bf16 via ml_dtypes), with numerics on, on trn1 / trn2 / trn3 where the
instructions exist.

Tolerances. The kernels compute in fp32 and round once to the output dtype, so:
* fp32 outputs: the kernel and NumPy sum in different orders and the Scalar Engine's
  exp / rsqrt are not NumPy's, a few fp32 ulps of the row's magnitude -> rtol 2e-5 /
  atol 2e-5 * max|ref| (measured errors are ~1e-6 relative);
* bf16 outputs: the fp32 results differ by a few fp32 ulps, which can flip the one
  rounding to bf16 -> at most one bf16 ulp (2^-8 relative to the value, half-ulp
  each side) -> rtol 2^-7;
* transposes move bits -> exact;
* fp8: q is compared with NumPy's quantization of the fp32 reference; a near-tie may
  round to the neighbour, so q * scale must be within one e4m3 ulp (2^-3 relative) of
  the reference value and almost all q must match exactly.
"""
import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.kernels  # noqa: F401  (installs compat: `import nki` -> trnsim)
from trnsim.kernels import norms as K

BF16 = ml_dtypes.bfloat16
RNG = np.random.default_rng(2024)
CHIPS = ("trn1", "trn2", "trn3")


def run(kernel, *args, chip="trn2", **kwargs):
    out, _ = trnsim.run_kernel(kernel, args, kwargs, chip=chip, strict=True)
    return out


def f32(a):
    return np.asarray(a, np.float32)


def close(got, want, dtype):
    got, want = f32(got), f32(want)
    assert got.shape == want.shape
    if dtype == BF16:
        np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=1e-6 * np.abs(want).max())
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def randn(shape, dtype, scale=1.0, shift=0.0):
    return (shift + scale * RNG.standard_normal(shape)).astype(dtype)


# ----------------------------------------------------------------------------- references

def ref_softmax(x):
    x = f32(x).astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def ref_rmsnorm(x, g, eps):
    x = f32(x).astype(np.float64)
    return (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * f32(g)).astype(np.float32)


def ref_layernorm(x, g, b, eps):
    x = f32(x).astype(np.float64)
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return ((x - m) / np.sqrt(v + eps) * f32(g) + f32(b)).astype(np.float32)


def ref_rope(x, cos, sin, D):
    x = f32(x)
    T = x.shape[0]
    h2 = D // 2
    c, s = f32(cos)[:, None, :h2], f32(sin)[:, None, :h2]
    v = x.reshape(T, -1, D)
    v1, v2 = v[..., :h2], v[..., h2:]
    return np.concatenate([v1 * c - v2 * s, v2 * c + v1 * s], -1).reshape(x.shape)


def ref_swiglu(x, wg, wu, wd):
    xf = f32(x).astype(np.float64)
    g = xf @ f32(wg)
    u = xf @ f32(wu)
    act = (g / (1 + np.exp(-g)) * u).astype(np.float32).astype(x.dtype)  # rounded like the kernel
    return f32(act).astype(np.float64) @ f32(wd)


# ------------------------------------------------------------------------------ transpose

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(300, 200), (130, 700)])
def test_transpose_is_exact(chip, dtype, shape):
    x = randn(shape, dtype)
    out = run(K.transpose, x, chip=chip)
    assert out.dtype == x.dtype and out.shape == shape[::-1]
    assert np.array_equal(out.view(np.uint8), np.ascontiguousarray(x.T).view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
def test_transpose_several_row_blocks(dtype):
    x = randn((2100, 130), dtype)  # DMA path: 2048 + 52 rows; PE path: 4 x 512 + 52
    out = run(K.transpose, x, chip="trn2")
    assert np.array_equal(out.view(np.uint8), np.ascontiguousarray(x.T).view(np.uint8))


# -------------------------------------------------------------------------------- softmax

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype,shape", [(np.float32, (300, 640)), (BF16, (129, 1000)),
                                         (np.float32, (517, 64))],
                         ids=["fp32-grouped", "bf16-odd", "fp32-narrow"])
def test_softmax(chip, dtype, shape):
    x = randn(shape, dtype, scale=4.0, shift=50.0)  # large offset: needs the max-subtract
    out = run(K.softmax, x, chip=chip)
    want = ref_softmax(x)
    close(out, want.astype(dtype), dtype)
    np.testing.assert_allclose(f32(out).sum(-1), 1.0, rtol=2e-2 if dtype == BF16 else 1e-5)


def test_softmax_wide_rows_stream_in_chunks():
    x = randn((5, K.RESIDENT_COLS + 300), np.float32, scale=3.0)
    close(run(K.softmax, x), ref_softmax(x), np.float32)


# ------------------------------------------------------------------------------- rmsnorm

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype,shape", [(np.float32, (300, 640)), (BF16, (200, 1024)),
                                         (np.float32, (5, 96))],
                         ids=["fp32-grouped", "bf16-odd", "fp32-tiny"])
def test_rmsnorm(chip, dtype, shape):
    x = randn(shape, dtype, scale=2.0)
    g = randn(shape[1], np.float32, scale=0.2, shift=1.0)
    out = run(K.rmsnorm, x, g, 1e-6, chip=chip)
    assert out.dtype == x.dtype
    close(out, ref_rmsnorm(x, g, 1e-6).astype(dtype), dtype)


def test_rmsnorm_wide_rows_stream_in_chunks():
    cols = K.RESIDENT_COLS + 200
    x = randn((130, cols), np.float32)
    g = randn(cols, np.float32, scale=0.2, shift=1.0)
    close(run(K.rmsnorm, x, g, 1e-5), ref_rmsnorm(x, g, 1e-5), np.float32)


def test_rmsnorm_rejects_a_gamma_of_the_wrong_size():
    with pytest.raises(AssertionError, match="gamma"):
        run(K.rmsnorm, randn((8, 64), np.float32), randn(32, np.float32))


# ----------------------------------------------------------------------------- layernorm

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype,shape", [(np.float32, (300, 1100)), (BF16, (131, 768))],
                         ids=["fp32-grouped", "bf16-odd"])
def test_layernorm(chip, dtype, shape):
    x = randn(shape, dtype, scale=1.5, shift=3.0)  # offset: mean matters
    g = randn(shape[1], np.float32, scale=0.2, shift=1.0)
    b = randn(shape[1], np.float32, scale=0.1)
    out = run(K.layernorm, x, g, b, 1e-5, chip=chip)
    close(out, ref_layernorm(x, g, b, 1e-5).astype(dtype), dtype)


def test_layernorm_wide_rows_stream_in_chunks():
    cols = K.RESIDENT_COLS + 700
    x = randn((3, cols), np.float32, shift=1.0)
    g = randn(cols, np.float32, scale=0.2, shift=1.0)
    b = randn(cols, np.float32, scale=0.1)
    close(run(K.layernorm, x, g, b, 1e-5), ref_layernorm(x, g, b, 1e-5), np.float32)


# --------------------------------------------------------------------- rmsnorm_quant_fp8

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype,shape", [(np.float32, (300, 640)), (BF16, (77, 512))],
                         ids=["fp32-grouped", "bf16-odd"])
def test_rmsnorm_quant_fp8(chip, dtype, shape):
    x = randn(shape, dtype, scale=2.0)
    x[3] = 0  # an all-zero row: scale floors at 1e-12 / 240, q = 0
    g = randn(shape[1], np.float32, scale=0.3, shift=1.0)
    q, scale = run(K.rmsnorm_quant_fp8, x, g, 1e-6, chip=chip)
    assert q.dtype == ml_dtypes.float8_e4m3 and scale.shape == (shape[0], 1)
    y = ref_rmsnorm(x, g, 1e-6)
    want_scale = np.maximum(np.abs(y).max(-1, keepdims=True), 1e-12) / 240.0
    np.testing.assert_allclose(scale, want_scale, rtol=1e-5)
    qf = f32(q)
    assert np.abs(qf).max() <= 240.0 and np.all(qf[3] == 0)
    want_q = f32((y / want_scale).astype(ml_dtypes.float8_e4m3))
    assert np.mean(qf == want_q) > 0.99
    # within one e4m3 ulp (2^-3 relative; subnormals: 2^-9 in q units)
    assert np.all(np.abs(qf * scale - y) <= 2 ** -3 * np.abs(y) + 2 ** -9 * want_scale)


# ---------------------------------------------------------------------------------- rope

def ref_rope_torch_bf16(x, cos, sin, D):
    """HF apply_rotary_pos_emb as PyTorch eager runs it on bf16 tensors: cos/sin cast
    to bf16, q * cos + rotate_half(q) * sin with every product and sum rounded to bf16
    (a bf16 op computes in fp32 and rounds once)."""
    T = x.shape[0]
    h2 = D // 2
    r = lambda a: f32(np.asarray(a, np.float32).astype(BF16))  # noqa: E731
    c, s = r(f32(cos)[:, None, :h2]), r(f32(sin)[:, None, :h2])
    v = f32(x).reshape(T, -1, D)
    v1, v2 = v[..., :h2], v[..., h2:]
    o1 = r(r(v1 * c) + r(-(v2 * s)))
    o2 = r(r(v2 * c) + r(v1 * s))
    return np.concatenate([o1, o2], -1).reshape(x.shape).astype(BF16)


def rope_tables(T, D):
    ang = np.arange(T)[:, None] * (10000.0 ** (-np.arange(D // 2) / (D // 2)))[None]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


@pytest.mark.parametrize("chip", CHIPS)
def test_rope_fp32(chip):
    T, H, D = 200, 4, 64
    x = randn((T, H * D), np.float32)
    cos, sin = rope_tables(T, D)
    out = run(K.rope, x, cos, sin, chip=chip)
    close(out, ref_rope(x, cos, sin, D), np.float32)


@pytest.mark.parametrize("chip", CHIPS)
def test_rope_bf16_rounds_like_torch_bit_for_bit(chip):
    T, H, D = 200, 4, 64
    x = randn((T, H * D), BF16, scale=3.0)
    cos, sin = rope_tables(T, D)
    out = run(K.rope, x, cos, sin, chip=chip)
    want = ref_rope_torch_bf16(x, cos, sin, D)
    assert np.array_equal(out.view(np.uint16), want.view(np.uint16))


def test_rope_bf16_with_fp32_math_rounds_once():
    T, H, D = 130, 2, 128
    x = randn((T, H * D), BF16)
    cos, sin = rope_tables(T, D)
    out = run(K.rope, x, cos, sin, torch_rounding=False)
    close(out, ref_rope(x, cos, sin, D).astype(BF16), BF16)


def test_rope_torch_rounding_needs_a_16_bit_x():
    x = randn((8, 64), np.float32)
    cos, sin = rope_tables(8, 64)
    with pytest.raises(ValueError, match="torch_rounding"):
        run(K.rope, x, cos, sin, torch_rounding=True)


def test_rope_hf_full_tables_one_head():
    T, D = 130, 128
    x = randn((T, D), np.float32)
    ang = np.arange(T)[:, None] * (10000.0 ** (-np.arange(D // 2) / (D // 2)))[None]
    cos = np.cos(np.concatenate([ang, ang], -1)).astype(np.float32)  # HF cat(freqs, freqs)
    sin = np.sin(np.concatenate([ang, ang], -1)).astype(np.float32)
    out = run(K.rope, x, cos, sin, head_dim=D)
    close(out, ref_rope(x, cos, sin, D), np.float32)


def test_rope_rejects_a_width_that_is_not_whole_heads():
    with pytest.raises(ValueError, match="multiple of head_dim"):
        run(K.rope, randn((8, 100), np.float32), randn((8, 32), np.float32),
            randn((8, 32), np.float32))


# ---------------------------------------------------------------------------- swiglu_mlp

@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype,T", [(BF16, 200), (np.float32, 130)], ids=["bf16", "fp32"])
def test_swiglu_mlp(chip, dtype, T):
    H, I = 256, 384
    x = randn((T, H), dtype)
    wg = randn((H, I), dtype, scale=1 / 16)
    wu = randn((H, I), dtype, scale=1 / 16)
    wd = randn((I, H), dtype, scale=1 / 20)
    out = run(K.swiglu_mlp, x, wg, wu, wd, chip=chip)
    want = ref_swiglu(x, wg, wu, wd)
    if dtype == BF16:
        # act is rounded to bf16 by both; the fp32 accumulations differ in order and
        # silu's rounding can flip an act element by one bf16 ulp: a few bf16 ulps of
        # the output scale
        np.testing.assert_allclose(f32(out), want, rtol=2 ** -6, atol=2 ** -8 * np.abs(want).max())
    else:
        np.testing.assert_allclose(f32(out), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_swiglu_mlp_multiple_token_blocks():
    H, I, T = 128, 256, 600  # two token blocks (512 + 88)
    x = randn((T, H), BF16)
    wg, wu = randn((H, I), BF16, scale=0.1), randn((H, I), BF16, scale=0.1)
    wd = randn((I, H), BF16, scale=0.1)
    out = run(K.swiglu_mlp, x, wg, wu, wd, chip="trn2")
    want = ref_swiglu(x, wg, wu, wd)
    np.testing.assert_allclose(f32(out), want, rtol=2 ** -6, atol=2 ** -8 * np.abs(want).max())


def test_swiglu_mlp_rejects_hidden_not_multiple_of_128():
    x = randn((16, 100), BF16)
    with pytest.raises(ValueError, match="multiples of 128"):
        run(K.swiglu_mlp, x, randn((100, 128), BF16), randn((100, 128), BF16),
            randn((128, 100), BF16))


def test_swiglu_mlp_streams_weights_that_do_not_fit(monkeypatch):
    monkeypatch.setattr(K, "MLP_WEIGHT_BYTES", 0)  # force the re-read-per-block path
    H, I, T = 128, 256, 520
    x = randn((T, H), BF16)
    wg, wu = randn((H, I), BF16, scale=0.1), randn((H, I), BF16, scale=0.1)
    wd = randn((I, H), BF16, scale=0.1)
    out = run(K.swiglu_mlp, x, wg, wu, wd, chip="trn3")
    want = ref_swiglu(x, wg, wu, wd)
    np.testing.assert_allclose(f32(out), want, rtol=2 ** -6, atol=2 ** -8 * np.abs(want).max())


@pytest.mark.parametrize("kernel", ["softmax", "rmsnorm", "layernorm", "quant"])
def test_widest_resident_rows_fit_in_sbuf(kernel):
    """RESIDENT_COLS fp32 columns, with a partial row tile: the resident path's tiles
    must fit in SBUF together."""
    cols = K.RESIDENT_COLS
    x = randn((130, cols), np.float32)
    g = randn(cols, np.float32, scale=0.2, shift=1.0)
    b = randn(cols, np.float32, scale=0.1)
    if kernel == "softmax":
        close(run(K.softmax, x), ref_softmax(x), np.float32)
    elif kernel == "rmsnorm":
        close(run(K.rmsnorm, x, g, 1e-6), ref_rmsnorm(x, g, 1e-6), np.float32)
    elif kernel == "layernorm":
        close(run(K.layernorm, x, g, b, 1e-5), ref_layernorm(x, g, b, 1e-5), np.float32)
    else:
        q, scale = run(K.rmsnorm_quant_fp8, x, g, 1e-6)
        y = ref_rmsnorm(x, g, 1e-6)
        np.testing.assert_allclose(scale[:, 0], np.abs(y).max(-1) / 240.0, rtol=1e-5)


def test_rmsnorm_quant_fp8_wide_rows_stream_in_chunks():
    cols = K.RESIDENT_COLS + 100
    x = randn((3, cols), BF16)
    g = randn(cols, np.float32, scale=0.2, shift=1.0)
    q, scale = run(K.rmsnorm_quant_fp8, x, g, 1e-6)
    y = ref_rmsnorm(x, g, 1e-6)
    np.testing.assert_allclose(scale[:, 0], np.abs(y).max(-1) / 240.0, rtol=1e-5)
    assert np.all(np.abs(f32(q) * scale - y) <= 2 ** -3 * np.abs(y) + 2 ** -9 * scale)
