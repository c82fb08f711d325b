"""MX microscaling: x4 packing, nisa.quantize_mx and nisa.nc_matmul_mx (NeuronCore-v4).

The references here are independent NumPy: bytes assembled by hand, the scale exponent
from log2/floor, dequantization as value * 2**(byte - 127)."""
import os
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from trnsim.numerics import mx
from trnsim.numerics.dtypes import float8_e4m3fn_x4

HERE = os.path.abspath(__file__)
BF16 = ml_dtypes.bfloat16
E4M3FN, E5M2, E2M1 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float4_e2m1fn
EMAX = {"e4m3fn": 8, "e5m2": 15}
ELEM = {"e4m3fn": E4M3FN, "e5m2": E5M2, "e2m1": E2M1}
X4 = {"e4m3fn": nl.float8_e4m3fn_x4, "e5m2": nl.float8_e5m2_x4, "e2m1": nl.float4_e2m1fn_x4}
MAXV = {"e4m3fn": 448.0, "e5m2": 57344.0}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("NEURON_PLATFORM_TARGET_OVERRIDE", raising=False)


# -- independent references --------------------------------------------------------------
def ref_pack(codes_u8, bits):
    """[..., 4] element codes (uint8) -> packed ints, value j at bits [bits*j, bits*j+bits)."""
    out = np.zeros(codes_u8.shape[:-1], dtype=np.uint64)
    for j in range(4):
        out |= (codes_u8[..., j].astype(np.uint64) & ((1 << bits) - 1)) << (bits * j)
    return out.astype(np.uint32 if bits == 8 else np.uint16)


def ref_quantize(x, fmt):
    """[P, F] -> (element values [P, F] float64, scale bytes [P/8, F/4])."""
    x = np.asarray(x, np.float64)
    P, F = x.shape
    g = x.reshape(P // 8, 8, F // 4, 4)
    amax = np.abs(g).max(axis=(1, 3))
    scale_bytes = np.zeros(amax.shape, np.uint8)
    qs = np.empty_like(g)
    for i in range(P // 8):
        for j in range(F // 4):
            if amax[i, j] == 0:
                e = -127
            else:
                e = max(int(np.floor(np.log2(amax[i, j]))) - (EMAX[fmt] - 1), -127)
            scale_bytes[i, j] = e + 127
            q = np.clip(g[i, :, j, :] / 2.0 ** e, -MAXV[fmt], MAXV[fmt])
            qs[i, :, j, :] = q.astype(np.float32).astype(ELEM[fmt]).astype(np.float64)
    return qs.reshape(P, F), scale_bytes


def scatter_rows(group_rows):
    """Scale partition of each group g in the quadrant layout: 32*(g//4) + g%4."""
    return np.array([32 * (g // 4) + g % 4 for g in range(group_rows)])


# -- numerics/mx: packing ------------------------------------------------------------------
@pytest.mark.parametrize("fmt,bits", [("e4m3fn", 8), ("e5m2", 8), ("e2m1", 4)])
def test_pack_unpack_round_trip(fmt, bits):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1 << bits, size=(16, 8, 4), dtype=np.uint8)
    if fmt == "e4m3fn":
        codes[(codes & 0x7F) == 0x7F] = 0  # skip the NaN codes for the value compare
    vals = codes.view(ELEM[fmt])
    packed = mx.pack_x4(vals, X4[fmt])
    assert packed.dtype == (np.uint32 if bits == 8 else np.uint16)
    np.testing.assert_array_equal(packed, ref_pack(codes, bits))
    back = mx.unpack_x4(packed, X4[fmt])
    np.testing.assert_array_equal(back.view(np.uint8), codes)
    np.testing.assert_array_equal(mx.unpack_x4_fp32(packed, X4[fmt]),
                                  vals.astype(np.float32))


def test_fp8_x4_is_the_little_endian_byte_view():
    v = np.array([[1.0, -2.0, 0.5, 448.0]], np.float32).astype(E4M3FN)
    packed = mx.pack_x4(v, float8_e4m3fn_x4)
    assert packed[0] == v.view(np.uint32)[0, 0]


def test_scale_values():
    b = np.array([0, 1, 127, 130, 254, 255], np.uint8)
    v = mx.scale_values(b)
    np.testing.assert_array_equal(v[:5], [2.0 ** -127, 2.0 ** -126, 1.0, 8.0, 2.0 ** 127])
    assert np.isnan(v[5])


# -- quantize_mx ------------------------------------------------------------------------
@nki.jit
def quantize_kernel(x, fmt, scale_offset=0, scale_dtype=nl.float8_e8m0fnu):
    """quantize_mx of x [P, F] (bf16/fp16); returns (packed data, the whole scale tile)."""
    P, F = x.shape
    sx = nl.ndarray((P, F), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sx, src=x)
    q = nl.ndarray((P, F // 4), dtype=X4[fmt], buffer=nl.sbuf)
    tile = nl.ndarray((128, F // 4), dtype=nl.uint8, buffer=nl.sbuf)
    nisa.memset(dst=tile, value=0)
    scale = tile[scale_offset:, :] if scale_dtype == nl.uint8 else \
        tile[scale_offset:, :].view(nl.float8_e8m0fnu)
    nisa.quantize_mx(dst=q, src=sx, dst_scale=scale)
    q_out = nl.ndarray((P, F // 4), dtype=X4[fmt], buffer=nl.shared_hbm)
    nisa.dma_copy(dst=q_out, src=q)
    s_out = nl.ndarray((128, F // 4), dtype=nl.uint8, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=s_out, src=tile)
    return q_out, s_out


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
@pytest.mark.parametrize("P", [32, 128])
def test_quantize_mx_matches_reference(fmt, P):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((P, 64)) * np.exp(rng.uniform(-8, 8, (P, 1)))).astype(BF16)
    x[8:16, 4:8] = 0  # an all-zero group
    (q, s), r = trnsim.run_kernel(quantize_kernel, (x, fmt), chip="trn3")
    vals, sbytes = ref_quantize(x, fmt)
    codes = vals.astype(np.float32).astype(ELEM[fmt]).view(np.uint8).reshape(P, 16, 4)
    np.testing.assert_array_equal(q.view(np.uint32), ref_pack(codes, 8))
    rows = scatter_rows(P // 8)
    np.testing.assert_array_equal(s[rows], sbytes)
    assert s[1, 1] == 0 + 127 - 127  # the zero group: 2^-127 is byte 0
    others = np.setdiff1d(np.arange(128), rows)
    assert not s[others].any()  # nothing written outside the scale partitions
    assert [i.engine for i in r.program if i.opcode == "quantize_mx"] == ["vector"]


def test_quantize_mx_round_trip_and_offset_scales():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 32)).astype(np.float16)
    (q, s), _ = trnsim.run_kernel(quantize_kernel, (x, "e4m3fn", 8, nl.uint8), chip="trn3")
    rows = 8 + scatter_rows(8)
    sc = 2.0 ** (s[rows].astype(np.float64) - 127)
    vals = q.view(np.uint32).view(E4M3FN).astype(np.float64).reshape(64, 32)
    deq = vals * np.repeat(np.repeat(sc, 8, axis=0), 4, axis=1)
    # e4m3fn keeps 3 mantissa bits: error <= 2^-4 relative to each value (normal range)
    np.testing.assert_allclose(deq, x.astype(np.float64), rtol=2 ** -4, atol=1e-6)


def test_quantize_mx_special_values():
    x = np.ones((32, 8), np.float32).astype(BF16)
    x[0, 0] = np.nan
    x[8, 4] = np.inf
    (q, s), _ = trnsim.run_kernel(quantize_kernel, (x, "e5m2"), chip="trn3")
    assert s[0, 0] == 0xFF and s[1, 1] == 0xFF  # non-finite groups: NaN scale
    assert s[0, 1] == 127 - 14  # amax 1: 2^(0 - 14)
    vals = q.view(np.uint32).view(E5M2).astype(np.float32).reshape(32, 8)
    assert np.isnan(vals[0:8, 0:4]).all() and np.isnan(vals[8:16, 4:8]).all()
    assert (vals[0:8, 4:8] == 2.0 ** 14).all()


def test_quantize_mx_errors():
    x = np.ones((32, 16), BF16)
    with pytest.raises(UnsupportedError, match="NeuronCore-v4") as ei:
        trnsim.run_kernel(quantize_kernel, (x, "e4m3fn"), chip="trn2")
    assert "quantize_mx" in str(ei.value) and HERE in str(ei.value)
    with pytest.raises(NkiValidationError, match="not float4"):
        trnsim.run_kernel(quantize_kernel, (x, "e2m1"), chip="trn3")
    with pytest.raises(NkiValidationError, match="bfloat16 or float16"):
        trnsim.run_kernel(quantize_kernel, (x.astype(np.float32), "e4m3fn"), chip="trn3")
    with pytest.raises(NkiValidationError, match="multiple of 32"):
        trnsim.run_kernel(quantize_kernel, (np.ones((16, 16), BF16), "e4m3fn"), chip="trn3")
    with pytest.raises(NkiValidationError, match="offset 0, 4, 8 or"):
        trnsim.run_kernel(quantize_kernel, (x, "e4m3fn", 2), chip="trn3")


# -- nc_matmul_mx ----------------------------------------------------------------------------
def make_mx(rng, K, F, fmt, scale_lo=120, scale_hi=134):
    """Random MX operand: packed [K, F] codes and contiguous scale bytes [K/8, F]."""
    bits = 4 if fmt == "e2m1" else 8
    codes = rng.integers(0, 1 << bits, size=(K, F, 4), dtype=np.uint8)
    if fmt == "e4m3fn":
        codes[(codes & 0x7F) == 0x7F] = 0  # no NaN codes
    if fmt == "e5m2":
        codes[(codes & 0x7C) == 0x7C] = 0  # no Inf/NaN codes
    packed = ref_pack(codes, bits)
    scales = rng.integers(scale_lo, scale_hi, size=(K // 8, F), dtype=np.uint8)
    values = codes.view(ELEM[fmt]).astype(np.float64)
    logical = values * 2.0 ** (np.repeat(scales, 8, axis=0)[:, :, None].astype(np.float64) - 127)
    # the 4 values of an x4 element are separate contraction rows: [K, F, 4] -> [4K, F]
    return packed, scales, logical.transpose(0, 2, 1).reshape(4 * K, F)


@nki.jit
def mx_matmul_kernel(a, a_scale, b, b_scale, fa, fb, dst_dtype=nl.float32, repeat=1):
    """nc_matmul_mx of host-packed data (uint32/uint16 viewed as x4) with contiguous
    host scales [K/8, F] spread into the SBUF quadrant layout."""
    K, M = a.shape
    _, N = b.shape

    def load(data, scale, fmt, F):
        d = nl.ndarray((K, F), dtype=X4[fmt], buffer=nl.sbuf)
        nisa.dma_copy(dst=d, src=data.view(X4[fmt]))
        s = nl.ndarray((K if K > 32 else 4, F), dtype=nl.float8_e8m0fnu, buffer=nl.sbuf)
        sv = scale.view(nl.float8_e8m0fnu)
        for q in range(K // 32):
            nisa.dma_copy(dst=s[32 * q:32 * q + 4, :], src=sv[4 * q:4 * q + 4, :])
        return d, s

    sa, ssa = load(a, a_scale, fa, M)
    sb, ssb = load(b, b_scale, fb, N)
    ps = nl.ndarray((M, N), dtype=dst_dtype, buffer=nl.psum)
    for _ in range(repeat):
        nisa.nc_matmul_mx(dst=ps, stationary=sa, moving=sb, stationary_scale=ssa,
                          moving_scale=ssb)
    r = nl.ndarray((M, N), dtype=dst_dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=r, src=ps)
    out = nl.ndarray((M, N), dtype=dst_dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=r)
    return out


@pytest.mark.parametrize("fa,fb,K", [("e4m3fn", "e4m3fn", 128), ("e5m2", "e4m3fn", 64),
                                     ("e2m1", "e5m2", 32), ("e2m1", "e2m1", 128)])
def test_nc_matmul_mx_matches_dequantized_product(fa, fb, K):
    rng = np.random.default_rng(3)
    a, asc, A = make_mx(rng, K, 64, fa)
    b, bsc, B = make_mx(rng, K, 256, fb)
    out, r = trnsim.run_kernel(mx_matmul_kernel, (a, asc, b, bsc, fa, fb), chip="trn3")
    ref = A.T @ B
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=np.abs(ref).max() * 2 ** -22)
    mm = [i for i in r.program if i.opcode == "nc_matmul_mx"][0]
    assert mm.engine == "tensor" and mm.attrs["K"] == K and mm.attrs["contraction"] == 4 * K
    assert mm.attrs["M"] == 64 and mm.attrs["N"] == 256
    roles = [x.role for x in mm.reads]
    assert roles == ["stationary", "stationary_scale", "moving", "moving_scale"]


def test_nc_matmul_mx_bf16_dst_and_accumulation():
    rng = np.random.default_rng(4)
    a, asc, A = make_mx(rng, 32, 16, "e4m3fn")
    b, bsc, B = make_mx(rng, 32, 32, "e4m3fn")
    out, _ = trnsim.run_kernel(mx_matmul_kernel, (a, asc, b, bsc, "e4m3fn", "e4m3fn"),
                               {"dst_dtype": nl.bfloat16, "repeat": 2}, chip="trn3")
    once = (A.T @ B).astype(np.float32).astype(BF16)
    twice = (once.astype(np.float32) + (A.T @ B).astype(np.float32)).astype(BF16)
    np.testing.assert_array_equal(out.view(np.uint16), twice.view(np.uint16))


def test_nc_matmul_mx_errors():
    rng = np.random.default_rng(5)
    a, asc, _ = make_mx(rng, 32, 16, "e4m3fn")
    args = (a, asc, a, asc, "e4m3fn", "e4m3fn")
    with pytest.raises(UnsupportedError, match="NeuronCore-v4") as ei:
        trnsim.run_kernel(mx_matmul_kernel, args, chip="trn2")
    assert "nc_matmul_mx" in str(ei.value) and HERE in str(ei.value)
    with pytest.raises(UnsupportedError):
        trnsim.run_kernel(mx_matmul_kernel, args, chip="trn1")

    def kernel(case):
        d = nl.ndarray((case.get("K", 32), case.get("M", 16)), dtype=case.get("dt", X4["e4m3fn"]),
                       buffer=nl.sbuf)
        nisa.memset(dst=d, value=0)
        s = nl.ndarray((case.get("SP", 4), case.get("M", 16)), dtype=nl.uint8, buffer=nl.sbuf)
        nisa.memset(dst=s, value=127)
        ps = nl.ndarray((case.get("M", 16), case.get("M", 16)), dtype=nl.float32,
                        buffer=nl.psum)
        nisa.nc_matmul_mx(dst=ps, stationary=d, moving=d, stationary_scale=s,
                          moving_scale=s, **case.get("kw", {}))
        return None

    cases = [
        (dict(K=48, SP=128), "multiple of 32"),
        (dict(M=15), "even"),
        (dict(K=64, SP=4), "needs its scales on 36"),
        (dict(dt=nl.bfloat16), "float8_e5m2_x4"),
        (dict(K=64, SP=128, kw=dict(tile_position=(0, 0), tile_size=(32, 128))),
         "row_size=32"),
        (dict(kw=dict(tile_position=(0, 64), tile_size=(32, 64))), "row tiling"),
    ]
    for case, frag in cases:
        with pytest.raises(NkiValidationError, match=frag):
            trnsim.run_kernel(kernel, (case,), chip="trn3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trnsim.run_kernel(kernel, (dict(K=32, SP=4, kw=dict(tile_position=(96, 0),
                                                            tile_size=(32, 128))),),
                          chip="trn3")


def test_mx_numerics_off_records_the_same_program():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 16)).astype(BF16)
    _, r1 = trnsim.run_kernel(quantize_kernel, (x, "e4m3fn"), chip="trn3")
    _, r2 = trnsim.run_kernel(quantize_kernel, (x, "e4m3fn"), chip="trn3", numerics=False)
    assert [str(i) for i in r1.program] == [str(i) for i in r2.program]
    a, asc, _ = make_mx(rng, 32, 16, "e2m1")
    args = (a, asc, a, asc, "e2m1", "e2m1")
    _, r3 = trnsim.run_kernel(mx_matmul_kernel, args, chip="trn3", numerics=False)
    assert "nc_matmul_mx" in [i.opcode for i in r3.program]
