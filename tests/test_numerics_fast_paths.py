"""The numerics fast paths: bf16 casts on the bits, the matmul accumulation modes
(TRNSIM_MATMUL_ACCUMULATION), in-place PSUM accumulation, reads without copies, and the
initialized-flags kept only where something reads them.

References are NumPy / ml_dtypes / math.fsum code written here.
"""
import math
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, UninitializedReadError
from trnsim.numerics.cast import bf16_to_fp32, cast, fp32_to_bf16, to_fp32
from trnsim.numerics.dtypes import bfloat16, float32

from kernel_helpers import load, store

BF16 = ml_dtypes.bfloat16


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("NEURON_PLATFORM_TARGET_OVERRIDE", "TRNSIM_MATMUL_ACCUMULATION",
                "TRNSIM_STRICT"):
        monkeypatch.delenv(var, raising=False)


def _bits(a):
    a = np.asarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


# -- bf16 casts ------------------------------------------------------------------------
def _fp32_patterns():
    """Every bf16 high half with low halves at and around the rounding boundaries (ties,
    just below / above), so every exponent, NaN, inf and subnormal is covered."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234, 0x4000, 0xC000],
                    np.uint32)
    return (hi[:, None] | lows[None, :]).reshape(-1).view(np.float32)


def test_fp32_to_bf16_is_ml_dtypes_rne_bit_for_bit():
    f = _fp32_patterns()
    with np.errstate(invalid="ignore", over="ignore"):
        want = f.astype(BF16)
    np.testing.assert_array_equal(_bits(fp32_to_bf16(f)), _bits(want))
    # through cast(), from a strided view and from float64 (rounded to fp32 first)
    v = f.reshape(-1, 9)[:, ::2]
    np.testing.assert_array_equal(_bits(cast(v, bfloat16)), _bits(want.reshape(-1, 9)[:, ::2]))
    x64 = np.random.default_rng(0).standard_normal(10_000) * 1e4
    np.testing.assert_array_equal(_bits(cast(x64, bfloat16)),
                                  _bits(x64.astype(np.float32).astype(BF16)))


def test_fp32_to_bf16_rounding_cases():
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -7)  # bf16 spacing at 1
    cases = {one + ulp / 2: one,                      # tie, even below
             one + ulp + ulp / 2: one + 2 * ulp,      # tie, even above
             np.finfo(np.float32).max: np.inf,          # rounds past bf16's max
             np.float32(-0.0): -0.0}
    for x, want in cases.items():
        got = fp32_to_bf16(np.array([x], np.float32)).astype(np.float64)[0]
        assert got == want and math.copysign(1, got) == math.copysign(1, want), (x, got)
    scalar = cast(np.float32(1.5), bfloat16)
    assert scalar.shape == () and float(scalar) == 1.5
    nan = fp32_to_bf16(np.array([np.nan, -np.nan], np.float32))
    assert list(_bits(nan)) == [0x7FC0, 0xFFC0]


def test_bf16_to_fp32_every_pattern():
    b = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(BF16)
    np.testing.assert_array_equal(_bits(bf16_to_fp32(b)), _bits(b.astype(np.float32)))
    np.testing.assert_array_equal(_bits(to_fp32(b.reshape(256, 256)[::3, 1::2])),
                                  _bits(b.reshape(256, 256)[::3, 1::2].astype(np.float32)))
    assert to_fp32(np.array(2.5, BF16)).dtype == np.float32


def test_cast_copy_flag():
    x = np.arange(4, dtype=np.float32)
    assert cast(x, float32, copy=False) is x
    y = cast(x, float32)
    assert y is not x and not np.shares_memory(x, y)


# -- matmul accumulation modes ---------------------------------------------------------
TK, TM, TN = 128, 128, 512


@nki.jit
def tiled_matmul(lhsT, rhs):
    """result = lhsT.T @ rhs, one nc_matmul per (m, n, k) tile accumulated in PSUM."""
    K, M = lhsT.shape
    _, N = rhs.shape
    result = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    for m in nl.affine_range(M // TM):
        for n in nl.affine_range(N // TN):
            acc = nl.ndarray((TM, TN), dtype=nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // TK):
                a = nl.ndarray((TK, TM), dtype=lhsT.dtype, buffer=nl.sbuf)
                b = nl.ndarray((TK, TN), dtype=rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=a, src=lhsT[k * TK:(k + 1) * TK, m * TM:(m + 1) * TM])
                nisa.dma_copy(dst=b, src=rhs[k * TK:(k + 1) * TK, n * TN:(n + 1) * TN])
                nisa.nc_matmul(dst=acc, stationary=a, moving=b)
            out = nl.ndarray((TM, TN), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=out, src=acc)
            nisa.dma_copy(dst=result[m * TM:(m + 1) * TM, n * TN:(n + 1) * TN], src=out)
    return result


def _run_mode(monkeypatch, mode, *args, kernel=tiled_matmul, chip="trn2"):
    if mode is None:
        monkeypatch.delenv("TRNSIM_MATMUL_ACCUMULATION", raising=False)
    else:
        monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", mode)
    out, _ = trnsim.run_kernel(kernel, args, chip=chip)
    return np.asarray(out)


def _exact_tiled(lhsT, rhs):
    """The exact mode's rule, written out: per K tile the float64 sum of the exact
    products rounded once to fp32, the tiles added in fp32 in k order."""
    a, b = np.asarray(lhsT, np.float64), np.asarray(rhs, np.float64)
    acc = np.zeros((a.shape[1], b.shape[1]), np.float32)
    for k in range(0, a.shape[0], TK):
        acc = acc + (a[k:k + TK].T @ b[k:k + TK]).astype(np.float32)
    return acc


@pytest.mark.parametrize("dtype, lo, hi, scale", [
    (BF16, -16, 17, 2.0 ** -10),     # |product| <= 2^8 * 2^-20, K=2048: sums < 2^(24+q)
    (np.float32, -64, 65, 1.0),      # products to 2^12, 2048 of them: < 2^23
    (np.float16, -32, 33, 2.0 ** 5),
    (ml_dtypes.float8_e4m3, -8, 9, 0.5),
])
def test_fp32_mode_equals_exact_when_every_partial_sum_is_fp32(monkeypatch, dtype, lo, hi,
                                                               scale):
    """Integers times a power of two: every product is a multiple of q = scale^2 and
    the sum of |products| of an output is at most K * max|a| * max|b| < 2^24 * q, so
    every partial sum in any order is an fp32 number and both modes give the exact
    result."""
    rng = np.random.default_rng(1)
    K, M, N = 2048, 128, 1024
    lhsT = (rng.integers(lo, hi, (K, M)) * scale).astype(dtype)
    rhs = (rng.integers(lo, hi, (K, N)) * scale).astype(dtype)
    exact_sum = np.asarray(lhsT, np.float64).T @ np.asarray(rhs, np.float64)
    assert K * (max(-lo, hi - 1) * scale) ** 2 <= 2 ** 24 * scale ** 2  # the premise
    want = exact_sum.astype(np.float32)
    assert np.array_equal(want.astype(np.float64), exact_sum)  # representable: exact
    for mode in (None, "exact", "fp32"):
        np.testing.assert_array_equal(_bits(_run_mode(monkeypatch, mode, lhsT, rhs)),
                                      _bits(want), err_msg=str(mode))


def test_fp32_mode_one_hot_moving_is_exact(monkeypatch):
    """One nonzero product per output (a permutation as moving): each sum is one
    product plus zeros, an fp32 number in any order."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((TK, TM)).astype(np.float32)
    perm = np.eye(TK, dtype=np.float32)[rng.permutation(TK)]
    rhs = np.concatenate([perm] * (TN // TK), axis=1)
    want = (a.astype(np.float64).T @ rhs.astype(np.float64)).astype(np.float32)
    for mode in ("exact", "fp32"):
        np.testing.assert_array_equal(_bits(_run_mode(monkeypatch, mode, a, rhs)),
                                      _bits(want))


def test_exact_is_default_and_fp32_differs_within_the_documented_bound(monkeypatch):
    rng = np.random.default_rng(3)
    K, M, N = 512, 128, 512
    lhsT = rng.standard_normal((K, M)).astype(np.float32)
    rhs = rng.standard_normal((K, N)).astype(np.float32)
    want = _exact_tiled(lhsT, rhs)
    default = _run_mode(monkeypatch, None, lhsT, rhs)
    exact = _run_mode(monkeypatch, "exact", lhsT, rhs)
    fast = _run_mode(monkeypatch, "fp32", lhsT, rhs)
    np.testing.assert_array_equal(_bits(default), _bits(want))
    np.testing.assert_array_equal(_bits(exact), _bits(want))
    assert not np.array_equal(fast, exact)  # general data: the sum order shows
    # per output: |fp32 - exact| <= K * 2^-24 * sum_k |a_k b_k| (fp32 sums of K terms,
    # plus the exact mode's own roundings of the 4 tile sums and their fp32 adds)
    abs_sum = np.abs(lhsT.astype(np.float64)).T @ np.abs(rhs.astype(np.float64))
    err = np.abs(fast.astype(np.float64) - exact.astype(np.float64))
    assert (err <= (K + 8) * 2.0 ** -24 * abs_sum).all()
    # ... and, typically, a few ulps
    ulps = err / np.spacing(np.abs(exact)).astype(np.float64)
    assert np.median(ulps) <= 2


def test_exact_mode_rounds_the_exact_sum_once():
    """Single-tile matmul in exact mode against math.fsum (the exact sum) on data whose
    sum needs more than fp32's 24 bits but fits float64: bf16 magnitudes in [2^-5, 2^6),
    so every product is a multiple of 2^-24 below 2^12 (43 bits with K = 128's carries)."""
    rng = np.random.default_rng(4)

    def values(shape):
        mag = rng.uniform(1, 2, shape) * 2.0 ** rng.integers(-5, 6, shape)
        return (mag * rng.choice([-1, 1], shape)).astype(BF16)
    a, b = values((128, 16)), values((128, 32))
    out, _ = trnsim.run_kernel(tiled_single, (a, b), chip="trn2")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = np.array([[math.fsum(a64[:, i] * b64[:, j]) for j in range(32)]
                     for i in range(16)]).astype(np.float32)
    np.testing.assert_array_equal(_bits(out), _bits(want))


@nki.jit
def tiled_single(a, b):
    sa, sb = load(a), load(b)
    ps = nl.ndarray((a.shape[1], b.shape[1]), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
    return store(ps)


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", "fp16")
    with pytest.raises(ValueError, match="TRNSIM_MATMUL_ACCUMULATION"):
        trnsim.run_kernel(tiled_single, (np.ones((4, 4), np.float32),) * 2, chip="trn2")


# -- PSUM accumulation in place ----------------------------------------------------------
@nki.jit
def accumulate_halves(a, b, c):
    """PSUM tile [M, 2N]: matmul a.b into both column halves (views), then c.b into the
    left half only (accumulating there), and a whole-tile accumulate=True of a.b."""
    K, M = a.shape
    _, N = b.shape
    sa, sb, sc = (nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf) for x in (a, b, c))
    for s, x in ((sa, a), (sb, b), (sc, c)):
        nisa.dma_copy(dst=s, src=x)
    ps = nl.ndarray((M, 2 * N), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps[:, 0:N], stationary=sa, moving=sb)
    nisa.nc_matmul(dst=ps[:, N:2 * N], stationary=sa, moving=sb)
    nisa.nc_matmul(dst=ps[:, 0:N], stationary=sc, moving=sb)
    both = nl.ndarray((K, 2 * N), b.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=both[:, 0:N], src=sb)
    nisa.tensor_copy(dst=both[:, N:2 * N], src=sb)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=both, accumulate=True)
    return store(ps)


@pytest.mark.parametrize("mode", ["exact", "fp32"])
def test_psum_accumulation_into_views(monkeypatch, mode):
    rng = np.random.default_rng(5)
    a, c = (rng.integers(-4, 5, (32, 16)).astype(np.float32) for _ in range(2))
    b = rng.integers(-4, 5, (32, 24)).astype(np.float32)
    ab, cb = a.T @ b, c.T @ b  # small integers: exact in fp32 in any order
    want = np.concatenate([ab + cb + ab, ab + ab], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _run_mode(monkeypatch, mode, a, b, c, kernel=accumulate_halves)
    np.testing.assert_array_equal(got, want)


# -- reads without copies -------------------------------------------------------------
@nki.jit
def overlapping_ops(x):
    """In-place and overlapping operations on one SBUF tile."""
    t = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    nisa.tensor_copy(dst=t[:, 1:8], src=t[:, 0:7])            # shift right by one
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
    nisa.tensor_tensor(dst=t[:, 0:4], data1=t[:, 4:8], data2=t[:, 0:4], op=nl.add)
    m = nl.ndarray((x.shape[0], 1), x.dtype, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=m, op=nl.maximum, data=t, axis=1)
    nisa.activation(dst=t, op=nl.exp, data=t, bias=m, scale=-1.0)
    out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=t)
    return out


def test_overlapping_and_in_place_operations_see_the_old_values():
    x = np.random.default_rng(6).standard_normal((16, 8)).astype(np.float32)
    t = x.copy()
    t[:, 1:8] = x[:, 0:7].copy()
    t = t * np.float32(2)
    t[:, 0:4] = t[:, 4:8] + t[:, 0:4]
    m = t.max(axis=1, keepdims=True)
    want = np.exp((t * np.float32(-1) + m).astype(np.float64)).astype(np.float32)
    out, _ = trnsim.run_kernel(overlapping_ops, (x,), chip="trn2")
    np.testing.assert_array_equal(out, want)


# -- initialized-flags --------------------------------------------------------------------
@nki.jit
def partial_write_then_read(x):
    """Writes the left half of an SBUF tile, then reads all of it."""
    P = x.shape[0]
    t = nl.ndarray((P, 8), nl.float32, buffer=nl.sbuf, name="half")
    nisa.dma_copy(dst=t[:, 0:4], src=x)
    nisa.tensor_scalar(dst=t[:, 0:4], data=t[:, 0:4], op0=nl.add, operand0=1.0)
    out = nl.ndarray((P, 8), nl.float32, buffer=nl.shared_hbm)
    u = nl.ndarray((P, 8), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=u, src=t)
    nisa.dma_copy(dst=out, src=u)
    return out


def test_partial_write_then_read_non_strict_reads_the_fill():
    x = np.ones((16, 4), np.float32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out, _ = trnsim.run_kernel(partial_write_then_read, (x,), chip="trn2")
    assert (out[:, 0:4] == 2).all() and np.isnan(out[:, 4:8]).all()
    # not strict: one UninitializedReadWarning (tests/test_uninitialized_reads.py), no error
    assert [w.category for w in seen] == [trnsim.UninitializedReadWarning]


def test_partial_write_then_read_strict_raises(monkeypatch):
    x = np.ones((16, 4), np.float32)
    with pytest.raises(UninitializedReadError, match="'half'") as ei:
        trnsim.run_kernel(partial_write_then_read, (x,), chip="trn2", strict=True)
    assert ei.value.op == "tensor_copy"
    monkeypatch.setenv("TRNSIM_STRICT", "1")
    with pytest.raises(UninitializedReadError, match="'half'"):
        trnsim.run_kernel(partial_write_then_read, (x,), chip="trn2")


@nki.jit
def psum_partly_written(a, b):
    """A PSUM tile written in its left half by a copy, then accumulate=True over all."""
    K, M = a.shape
    _, N = b.shape
    sa, sb = load(a), load(b)
    ps = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    z = nl.ndarray((M, N // 2), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=z, value=0.0)
    nisa.tensor_copy(dst=ps[:, 0:N // 2], src=z)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=True)
    return store(ps)


def test_psum_flags_kept_without_strict_for_the_accumulate_check():
    a = np.ones((8, 4), np.float32)
    b = np.ones((8, 6), np.float32)
    with pytest.warns(NkiNumericsWarning, match="never written"):
        out, _ = trnsim.run_kernel(psum_partly_written, (a, b), chip="trn2")
    assert (out[:, 0:3] == 8).all() and np.isnan(out[:, 3:6]).all()


# -- fresh tiles: the fill written only when read ------------------------------------------
@nki.jit
def fresh_tiles(x):
    """Tiles written whole (C-order, permuted, and through a dtype view), one written with
    a view of as many bytes as the tile that repeats one column, and one never written."""
    P, F = x.shape
    whole = load(x)
    permuted = nl.ndarray((P, F), x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=permuted.ap([[F, P], [1, F // 2], [F // 2, 2]]),
                     src=whole.ap([[F, P], [2, F // 2], [1, 2]]))
    as_ints = nl.ndarray((P, F), x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=as_ints.view(nl.int32), src=whole.view(nl.int32))
    repeated = nl.ndarray((P, F), x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=repeated.ap([[F, P], [0, F]]), src=whole)
    never = nl.ndarray((P, F), x.dtype, buffer=nl.sbuf)
    return tuple(store(t) for t in (whole, permuted, as_ints, repeated, never))


def test_fresh_tiles_hold_the_fill_until_written():
    x = np.random.default_rng(7).standard_normal((8, 6)).astype(np.float32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        (whole, permuted, as_ints, repeated, never), _ = trnsim.run_kernel(
            fresh_tiles, (x,), chip="trn2")
    np.testing.assert_array_equal(whole, x)
    i, j = np.meshgrid(np.arange(3), np.arange(2), indexing="ij")
    want = np.empty_like(x)
    want[:, (i + 3 * j).ravel()] = x[:, (2 * i + j).ravel()]
    np.testing.assert_array_equal(permuted, want)
    np.testing.assert_array_equal(as_ints, x)
    assert (repeated[:, 0] == x[:, -1]).all() and np.isnan(repeated[:, 1:]).all()
    assert np.isnan(never).all()
    assert [w.category for w in seen] == [trnsim.UninitializedReadWarning]


@nki.jit
def overlapping_dma(x):
    """DMA copies whose source and destination overlap in one SBUF tile and one HBM
    tensor (the copy reads the memory in place)."""
    P, F = x.shape
    t = load(x)
    nisa.dma_copy(dst=t[:, 1:F], src=t[:, 0:F - 1])
    h = nl.ndarray((P, F), x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=h, src=t)
    nisa.dma_copy(dst=h[0:P - 1, :], src=h[1:P, :])
    return h


def test_overlapping_dma_copies_the_old_values():
    x = np.random.default_rng(8).standard_normal((8, 6)).astype(np.float32)
    want = x.copy()
    want[:, 1:] = x[:, :-1].copy()
    want[:-1] = want[1:].copy()
    out, _ = trnsim.run_kernel(overlapping_dma, (x,), chip="trn2")
    np.testing.assert_array_equal(out, want)


@nki.jit
def accumulate_then_read(a, b):
    """Two accumulating matmuls into one PSUM tile, read back."""
    sa, sb = load(a), load(b)
    ps = nl.ndarray((a.shape[1], b.shape[1]), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
    return store(ps)


def test_psum_accumulation_keeps_every_byte_initialized_for_strict_reads():
    a = np.ones((8, 4), np.float32)
    b = np.ones((8, 6), np.float32)
    out, _ = trnsim.run_kernel(accumulate_then_read, (a, b), chip="trn2", strict=True)
    assert (out == 16).all()


# -- activation functions that are one float64 ufunc ---------------------------------------
@pytest.mark.parametrize("name", ["exp", "tanh", "log", "arctan", "sqrt", "sign", "abs"])
def test_ufunc_activations_round_the_float64_result_once(name):
    from trnsim.isa.activation_funcs import ACTIVATIONS
    x = (np.arange(0, 1 << 32, 65537, dtype=np.uint64).astype(np.uint32)
         .view(np.float32).reshape(64, -1))
    f = getattr(np, "absolute" if name == "abs" else name)
    with np.errstate(all="ignore"):
        want = f(x.astype(np.float64)).astype(np.float32)
    got = ACTIVATIONS[name](x[:, ::2])  # a strided input too
    np.testing.assert_array_equal(_bits(got), _bits(want[:, ::2]))
    assert got.dtype == np.float32 and got.shape == (64, x.shape[1] // 2 + x.shape[1] % 2)


@nki.jit
def many_live_tiles(x):
    """More live SBUF tiles than the physical SBUF holds, each written with its own
    value, then all read back."""
    tiles = []
    for i in range(120):
        t = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=t, data=load(x), op0=nl.add, operand0=float(i))
        tiles.append(t)
    half = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)  # written in part after the growth
    nisa.tensor_copy(dst=half[:, 0:x.shape[1] // 2], src=tiles[0][:, 0:x.shape[1] // 2])
    return tuple(store(t) for t in tiles[::17]) + (store(half),)


def test_many_live_tiles_keep_their_values():
    x = np.random.default_rng(9).standard_normal((128, 512)).astype(np.float32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        outs, run = trnsim.run_kernel(many_live_tiles, (x,), chip="trn2")
    for i, got in zip(range(0, 120, 17), outs[:-1]):
        np.testing.assert_array_equal(got, x + np.float32(i))
    np.testing.assert_array_equal(outs[-1][:, :256], x[:, :256])
    assert np.isnan(outs[-1][:, 256:]).all()
    assert [w.category for w in seen] == [trnsim.UninitializedReadWarning]


@pytest.mark.parametrize("k, m, n", [(128, 64, 100), (128, 1, 512), (128, 128, 1),
                                     (64, 1, 1), (1, 32, 32)])
def test_fp32_mode_from_tiles_in_place_is_the_gemm_of_contiguous_copies(monkeypatch, k, m,
                                                                         n):
    """The fp32 mode is NumPy's matmul of contiguous fp32 operands, bit for bit, whatever
    the shape (vector shapes go to gemv, whose strided kernels sum in another order)."""
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", "fp32")
    rng = np.random.default_rng(10)
    a = (rng.standard_normal((k, m)) * 10.0 ** rng.integers(-3, 3, (k, m))).astype(np.float32)
    b = (rng.standard_normal((k, n)) * 10.0 ** rng.integers(-3, 3, (k, n))).astype(np.float32)
    out, _ = trnsim.run_kernel(tiled_single, (a, b), chip="trn2")
    want = np.matmul(np.ascontiguousarray(a).T, np.ascontiguousarray(b))
    np.testing.assert_array_equal(_bits(out), _bits(want))


@nki.jit
def gram(a):
    """stationary and moving the same SBUF tile (a.T @ a)."""
    sa = load(a)
    ps = nl.ndarray((a.shape[1], a.shape[1]), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sa)
    return store(ps)


def test_fp32_mode_gram_matrix_is_the_gemm_of_contiguous_copies(monkeypatch):
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", "fp32")
    rng = np.random.default_rng(11)
    a = (rng.standard_normal((128, 96)) * 10.0 ** rng.integers(-3, 3, (128, 96))).astype(
        np.float32)
    out, _ = trnsim.run_kernel(gram, (a,), chip="trn2")
    np.testing.assert_array_equal(_bits(out), _bits(np.matmul(np.array(a).T, np.array(a))))


# -- accumulator folds ---------------------------------------------------------------
@pytest.mark.parametrize("op", ["add", "subtract", "multiply"])
@pytest.mark.parametrize("p,f", [(1, 37), (2, 5), (7, 300), (127, 100), (128, 1024), (128, 1)])
def test_fold_is_the_sequential_fp32_chain_bit_for_bit(op, p, f):
    """The accumulator registers fold each lane in element order, one fp32 operation per
    element; checked against that loop written out per lane, NaN rows (with payloads
    and signs) and a lane of -0.0s included."""
    from trnsim.isa.accumulate import fold
    rng = np.random.default_rng(p * 1000 + f)
    v = (rng.standard_normal((p, f)) * 4).astype(np.float32)
    specials = np.array([np.inf, -np.inf, -0.0, 3e38, np.nan, -np.nan], np.float32)
    payload_nans = np.array([0x7FC00001, 0xFFC00123], np.uint32).view(np.float32)
    pick = rng.random(v.shape)
    v[pick < 0.05] = rng.choice(specials, int((pick < 0.05).sum()))
    v[pick > 0.99] = rng.choice(payload_nans, int((pick > 0.99).sum()))
    start = rng.standard_normal(p).astype(np.float32)
    v[p // 2], start[p // 2] = -0.0, -0.0  # a lane of -0.0s: their sum is -0.0
    ufunc = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}[op]
    want = np.empty(p, np.float32)
    with np.errstate(all="ignore"):
        got = fold(op, v, start)
        for i in range(p):
            reg = start[i:i + 1].copy()
            for x in v[i]:
                reg = ufunc(reg, np.float32(x))
            want[i] = reg[0]
    assert np.array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("op", ["add", "subtract", "multiply"])
@pytest.mark.parametrize("shape", [(1, 9), (128, 1), (127, 300), (64, 3, 40)])
def test_tensor_reduce_fold_is_the_sequential_fp32_chain_bit_for_bit(op, shape):
    """tensor_reduce folds the trailing axis of each lane in element order from its
    first element, one fp32 operation per element (subtract: x0 + -x1 + -x2 ...)."""
    from trnsim.isa.reduce import fold_fp32
    rng = np.random.default_rng(sum(shape))
    v = (rng.standard_normal(shape) * 4).astype(np.float32)
    pick = rng.random(shape)
    specials = np.array([np.inf, -np.inf, -0.0, np.nan, -np.nan], np.float32)
    v[pick < 0.05] = rng.choice(specials, int((pick < 0.05).sum()))
    v[(0,) * (len(shape) - 1)] = -0.0  # a lane of -0.0s
    ufunc = np.multiply if op == "multiply" else np.add
    rows = v.reshape(-1, shape[-1])
    if op == "subtract":
        rows = np.concatenate([rows[:, :1], -rows[:, 1:]], axis=1)
    want = np.empty(len(rows), np.float32)
    with np.errstate(all="ignore"):
        got = fold_fp32(op, v)
        for i, row in enumerate(rows):
            reg = row[:1].copy()
            for x in row[1:]:
                reg = ufunc(reg, np.float32(x))
            want[i] = reg[0]
    assert np.array_equal(_bits(got), _bits(want.reshape(shape[:-1])))
