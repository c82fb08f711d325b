"""Tensor Engine: nisa.nc_matmul and nisa.nc_transpose.

References are NumPy code written here: the exact product of the input values (float64)
compared within fp32 tolerance; transposes compared bit for bit.
"""
import inspect
import os
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, NkiValidationError, UnsupportedError

HERE = os.path.abspath(__file__)
BF16, FP16 = ml_dtypes.bfloat16, np.float16
E4M3, E4M3FN, E5M2 = ml_dtypes.float8_e4m3, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("NEURON_PLATFORM_TARGET_OVERRIDE", raising=False)


def run(kernel, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)


def ref_matmul(a, b):
    """stationary[K, M].T @ moving[K, N] of the exact stored values."""
    return np.asarray(a, np.float64).T @ np.asarray(b, np.float64)


def assert_fp32_close(out, ref):
    ref = np.asarray(ref, np.float64)
    scale = np.abs(ref).max() + 1e-30
    np.testing.assert_allclose(out, ref, rtol=4e-7 * 4, atol=scale * 2 ** -22)


def line_of(fn, text):
    src, start = inspect.getsourcelines(fn)
    for i, line in enumerate(src):
        if text in line:
            return start + i
    raise AssertionError(text)


# -- kernels -------------------------------------------------------------------------
@nki.jit
def matmul_kernel(a, b, dst_dtype=nl.float32):
    """One nc_matmul of HBM inputs a[K, M], b[K, N] (any shape with K first)."""
    sa = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    sb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sa, src=a)
    nisa.dma_copy(dst=sb, src=b)
    m = int(np.prod(a.shape[1:]))
    n = int(np.prod(b.shape[1:]))
    ps = nl.ndarray((m, n), dtype=dst_dtype, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
    res = nl.ndarray((m, n), dtype=dst_dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res, src=ps)
    out = nl.ndarray((m, n), dtype=dst_dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=res)
    return out


def make_case_kernel(st_shape, st_dtype, mv_shape, mv_dtype, dst_shape, dst_dtype,
                     dst_buf=nl.psum, mv_buf=nl.sbuf, **kw):
    """A kernel that builds its operands on chip (memset 1) and calls nc_matmul once."""
    def kernel():
        s = nl.ndarray(st_shape, dtype=st_dtype, buffer=nl.sbuf)
        m = nl.ndarray(mv_shape, dtype=mv_dtype, buffer=mv_buf)
        nisa.memset(dst=s, value=1)
        nisa.memset(dst=m, value=1)
        d = nl.ndarray(dst_shape, dtype=dst_dtype, buffer=dst_buf)
        nisa.nc_matmul(dst=d, stationary=s, moving=m, **kw)  # THE MATMUL
        return None
    return kernel


def expect_error(kernel, chip, *fragments, cls=NkiValidationError):
    with pytest.raises(cls) as ei:
        run(kernel, chip=chip)
    msg = str(ei.value)
    assert "nc_matmul" in msg
    line = line_of(make_case_kernel, "# THE MATMUL")
    assert f"{HERE}:{line}" in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return ei.value


# -- numerics ------------------------------------------------------------------------
DTYPE_PAIRS = [
    (np.float32, np.float32), (BF16, BF16), (FP16, FP16), (BF16, FP16), (E4M3, E4M3),
    (E5M2, E5M2), (E4M3, E5M2), (BF16, E5M2),
]


@pytest.mark.parametrize("sd,md", DTYPE_PAIRS, ids=lambda d: np.dtype(d).name)
def test_matmul_matches_exact_product(sd, md):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((128, 96)) * 2).astype(sd)
    b = (rng.standard_normal((128, 512)) * 2).astype(md)
    out, _ = run(matmul_kernel, a, b)
    assert out.dtype == np.float32 and out.shape == (96, 512)
    assert_fp32_close(out, ref_matmul(a, b))


def test_fp32_products_are_exact_then_rounded_once():
    # 1 + 2^-23 squared = 1 + 2^-22 + 2^-46: the product is exact before the fp32 round;
    # summing (1+e)^2 - 1 - 2e cancels to 2^-46, which a bf16 or per-product-fp32 path loses
    a = np.array([[1 + 2.0 ** -23], [-1.0], [-(2.0 ** -22)]], dtype=np.float32)
    b = np.array([[1 + 2.0 ** -23], [1.0], [1.0]], dtype=np.float32)
    out, _ = run(matmul_kernel, a, b)
    assert out[0, 0] == np.float32(2.0 ** -46)


def test_tf32_operands_are_rounded_to_10_mantissa_bits():
    @nki.jit
    def k(a, b):
        sa = nl.ndarray(a.shape, dtype=nl.tfloat32, buffer=nl.sbuf)
        sb = nl.ndarray(b.shape, dtype=nl.tfloat32, buffer=nl.sbuf)
        nisa.dma_copy(dst=sa, src=a)  # fp32 -> tf32 cast (RNE) on the way in
        nisa.dma_copy(dst=sb, src=b)
        ps = nl.ndarray((a.shape[1], b.shape[1]), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
        r = nl.ndarray(ps.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=r, src=ps)
        o = nl.ndarray(ps.shape, dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=r)
        return o

    a = np.array([[1 + 2.0 ** -12]], dtype=np.float32)  # rounds to 1.0 in tf32
    b = np.array([[3.0]], dtype=np.float32)
    out, run_ = run(k, a, b)
    assert out[0, 0] == 3.0
    mm = [i for i in run_.program if i.opcode == "nc_matmul"][0]
    assert mm.attrs["stationary_dtype"] == "tfloat32"


def test_e4m3fn_and_bf16_dst_on_trn3():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 32)).astype(E4M3FN)
    b = rng.standard_normal((64, 1024)).astype(E4M3FN)  # N = 1024 > 512: fine on trn3
    out, _ = run(matmul_kernel, a, b, chip="trn3")
    assert_fp32_close(out, ref_matmul(a, b))
    out16, _ = trnsim.run_kernel(matmul_kernel, (a, b), {"dst_dtype": nl.bfloat16},
                                 chip="trn3")
    assert out16.dtype == BF16
    # fp32 accumulation, one RNE to bf16 on the PSUM write
    assert np.array_equal(out16.view(np.uint16),
                          ref_matmul(a, b).astype(np.float32).astype(BF16).view(np.uint16))


def test_nan_and_inf_propagate():
    a = np.ones((4, 2), dtype=np.float32)
    b = np.ones((4, 3), dtype=np.float32)
    a[1, 0] = np.inf
    b[2, 2] = np.nan
    out, _ = run(matmul_kernel, a, b)
    assert np.isposinf(out[0, 0]) and np.isposinf(out[0, 1])
    assert np.isnan(out[0, 2]) and np.isnan(out[1, 2])
    assert out[1, 0] == 4.0


# -- accumulation ----------------------------------------------------------------------
@nki.jit
def k_loop_kernel(a, b, mode="none", garbage=1000.0):
    """Sum over K tiles of 128 into one PSUM tile that first holds `garbage`."""
    K, M = a.shape
    _, N = b.shape
    ps = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.psum)
    nisa.memset(dst=ps, value=garbage)  # a non-matmul write: no accumulation group yet
    for i in range(K // 128):
        sa = nl.ndarray((128, M), dtype=a.dtype, buffer=nl.sbuf)
        sb = nl.ndarray((128, N), dtype=b.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sa, src=a[i * 128:(i + 1) * 128, :])
        nisa.dma_copy(dst=sb, src=b[i * 128:(i + 1) * 128, :])
        if mode == "none":
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
        elif mode == "explicit":
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=(i > 0))
        else:  # always overwrite
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=False)
    res = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res, src=ps)
    out = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=res)
    return out


def _k_loop_ref(a, b):
    """fp32 PSUM accumulation of fp32-rounded tile products."""
    acc = np.zeros((a.shape[1], b.shape[1]), np.float32)
    for i in range(a.shape[0] // 128):
        acc = acc + ref_matmul(a[i * 128:(i + 1) * 128], b[i * 128:(i + 1) * 128]).astype(
            np.float32)
    return acc


@pytest.mark.parametrize("mode", ["none", "explicit"])
def test_k_loop_accumulates_and_first_write_overwrites(mode):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((512, 64)).astype(BF16)
    b = rng.standard_normal((512, 256)).astype(BF16)
    out, run_ = trnsim.run_kernel(k_loop_kernel, (a, b), {"mode": mode}, chip="trn2")
    np.testing.assert_array_equal(out, _k_loop_ref(a, b))  # the memset 1000 is gone
    flags = [i.attrs["accumulate"] for i in run_.program if i.opcode == "nc_matmul"]
    assert flags == [False, True, True, True]


def test_accumulate_false_overwrites_every_time():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((256, 32)).astype(np.float32)
    b = rng.standard_normal((256, 64)).astype(np.float32)
    out, _ = trnsim.run_kernel(k_loop_kernel, (a, b), {"mode": "overwrite"}, chip="trn2")
    np.testing.assert_array_equal(out, ref_matmul(a[128:], b[128:]).astype(np.float32))


@nki.jit
def group_kernel(a, b, steps):
    """Run `steps` on one PSUM tile: ('mm', accumulate) or ('memset', v) or ('copy',)."""
    K, M = a.shape
    _, N = b.shape
    sa = nl.ndarray((K, M), dtype=a.dtype, buffer=nl.sbuf)
    sb = nl.ndarray((K, N), dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sa, src=a)
    nisa.dma_copy(dst=sb, src=b)
    ps = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.psum)
    tmp = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
    for step in steps:
        if step[0] == "mm":
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=step[1])
        elif step[0] == "memset":
            nisa.memset(dst=ps, value=step[1])
        else:
            nisa.memset(dst=tmp, value=step[1])
            nisa.tensor_copy(dst=ps, src=tmp)
    res = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res, src=ps)
    out = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=res)
    return out


@pytest.mark.parametrize("steps,expect", [
    ([("mm", None), ("mm", None), ("mm", None)], lambda p: p + p + p),
    ([("mm", None), ("mm", False)], lambda p: p),
    ([("mm", None), ("memset", 5.0), ("mm", None)], lambda p: p),  # memset ends the group
    ([("mm", None), ("copy", 5.0), ("mm", None)], lambda p: p),
    ([("memset", 5.0), ("mm", True)], lambda p: p + 5),  # v4 may accumulate onto memset
    ([("mm", None), ("mm", True), ("mm", None)], lambda p: p + p + p),
])
def test_accumulation_groups(steps, expect):
    a = np.arange(8 * 4, dtype=np.float32).reshape(8, 4) / 8
    b = np.arange(8 * 6, dtype=np.float32).reshape(8, 6) / 4
    p = ref_matmul(a, b).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is undefined on trn3
        out, _ = trnsim.run_kernel(group_kernel, (a, b, steps), chip="trn3")
    np.testing.assert_array_equal(out, expect(p))


def test_accumulate_true_on_never_written_psum_warns():
    a = np.ones((4, 2), np.float32)
    b = np.ones((4, 2), np.float32)
    with pytest.warns(NkiNumericsWarning, match="accumulate=True"):
        out, _ = trnsim.run_kernel(group_kernel, (a, b, [("mm", True)]), chip="trn3")
    assert np.isnan(out).all()  # fresh PSUM holds NaN; NaN + x = NaN
    # accumulate=True adds onto what PSUM holds: a memset location is written, on every
    # generation (legacy `psum += nc_matmul(...)` onto nl.zeros relies on it)
    for chip in ("trn1", "trn2"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, _ = trnsim.run_kernel(group_kernel, (a, b, [("memset", 3.0), ("mm", True)]),
                                       chip=chip)
        np.testing.assert_array_equal(out, ref_matmul(a, b).astype(np.float32) + 3.0)


def test_new_psum_tile_at_a_reused_address_starts_a_new_group():
    @nki.jit
    def k(a, b):
        K, M = a.shape
        _, N = b.shape
        sa = nl.ndarray((K, M), dtype=a.dtype, buffer=nl.sbuf)
        sb = nl.ndarray((K, N), dtype=b.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sa, src=a)
        nisa.dma_copy(dst=sb, src=b)
        out = nl.ndarray((9 * M, N), dtype=nl.float32, buffer=nl.shared_hbm)
        addrs = []
        for i in range(9):  # 8 banks: next-fit wraps to bank 0 on the ninth
            ps = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.psum)
            addrs.append(ps.storage.address)
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb)
            r = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=r, src=ps)
            nisa.dma_copy(dst=out[i * M:(i + 1) * M, :], src=r)
            del ps
        assert len(set(addrs)) < 9  # the allocator did reuse a bank
        return out

    a = np.ones((8, 4), np.float32)
    b = np.full((8, 2), 2.0, np.float32)
    out, _ = run(k, a, b)
    np.testing.assert_array_equal(out, np.full((36, 2), 16.0, np.float32))


def test_column_slices_are_separate_groups():
    @nki.jit
    def k(a, b):
        ps = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.psum)
        sa = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
        sb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sa, src=a)
        nisa.dma_copy(dst=sb, src=b)
        nisa.nc_matmul(dst=ps[:, 0:3], stationary=sa, moving=sb[:, 0:3])
        nisa.nc_matmul(dst=ps[:, 0:3], stationary=sa, moving=sb[:, 0:3])  # accumulates
        nisa.nc_matmul(dst=ps[:, 3:6], stationary=sa, moving=sb[:, 3:6])  # first write
        r = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=r, src=ps)
        o = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=r)
        return o

    a = np.ones((8, 4), np.float32)
    b = np.ones((8, 6), np.float32)
    out, _ = run(k, a, b)
    np.testing.assert_array_equal(out[:, :3], 16.0)
    np.testing.assert_array_equal(out[:, 3:], 8.0)


def test_interleaved_strided_groups_keep_their_marks():
    @nki.jit
    def k(a, b):
        ps = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.psum)
        sa = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
        sb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sa, src=a)
        nisa.dma_copy(dst=sb, src=b)
        nisa.nc_matmul(dst=ps[:, 0::2], stationary=sa, moving=sb)  # even columns: new
        nisa.nc_matmul(dst=ps[:, 1::2], stationary=sa, moving=sb)  # odd columns: new
        nisa.nc_matmul(dst=ps[:, 0::2], stationary=sa, moving=sb)  # even: accumulate
        r = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=r, src=ps)
        o = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=r)
        return o

    a = np.ones((8, 4), np.float32)
    b = np.ones((8, 3), np.float32)
    out, r = run(k, a, b)
    np.testing.assert_array_equal(out[:, 0::2], 16.0)
    np.testing.assert_array_equal(out[:, 1::2], 8.0)
    assert [i.attrs["accumulate"] for i in r.program if i.opcode == "nc_matmul"] == [
        False, False, True]


# -- limits ----------------------------------------------------------------------------------
def test_k_256_rejected():
    def kernel():
        s = nl.ndarray((128, 2, 16), dtype=nl.bfloat16, buffer=nl.sbuf)
        m = nl.ndarray((128, 2, 16), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1)
        nisa.memset(dst=m, value=1)
        s256 = s.ap([[32, 256], [1, 16]])  # a 256-partition view
        m256 = m.ap([[32, 256], [1, 16]])
        d = nl.ndarray((16, 16), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=d, stationary=s256, moving=m256)  # K=256
        return None

    with pytest.raises(NkiValidationError) as ei:
        run(kernel)
    msg = str(ei.value)
    assert "nc_matmul" in msg and "256" in msg and "128" in msg
    assert f"{HERE}:{line_of(kernel, '# K=256')}" in msg


@pytest.mark.parametrize("chip,case,fragments,cls", [
    ("trn2", dict(st_shape=(128, 129), st_dtype=nl.bfloat16, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(128, 8), dst_dtype=nl.float32),
     ("M=129", "128"), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 513),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 513), dst_dtype=nl.float32),
     ("N=513", "512"), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.float32, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.float32),
     ("float32",), NkiValidationError),
    ("trn3", dict(st_shape=(128, 8), st_dtype=nl.float8_e4m3, mv_shape=(128, 8),
                  mv_dtype=nl.float8_e4m3fn, dst_shape=(8, 8), dst_dtype=nl.float32),
     ("cannot be mixed",), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.float8_e4m3fn, mv_shape=(128, 8),
                  mv_dtype=nl.float8_e4m3fn, dst_shape=(8, 8), dst_dtype=nl.float32),
     ("float8_e4m3fn", "NeuronCore-v4"), UnsupportedError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.float32,
                  dst_buf=nl.sbuf),
     ("'dst'", "'psum'", "'sbuf'"), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.float32,
                  mv_buf=nl.psum),
     ("'moving'", "'sbuf'", "'psum'"), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.bfloat16),
     ("bfloat16", "NeuronCore-v4"), UnsupportedError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.int8, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.float32),
     ("int8", "not a Tensor Engine input type"), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(64, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 8), dst_dtype=nl.float32),
     ("mismatch",), NkiValidationError),
    ("trn2", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 8),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 16), dst_dtype=nl.float32),
     ("[8, 8]",), NkiValidationError),
    ("trn3", dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 4097),
                  mv_dtype=nl.bfloat16, dst_shape=(8, 4096), dst_dtype=nl.float32),
     ("N=4097", "4096"), NkiValidationError),
], ids=["M129", "N513", "fp32-bf16-mix", "e4m3-e4m3fn-mix", "e4m3fn-trn2", "dst-sbuf",
        "moving-psum", "bf16-dst-trn2", "int8-input", "K-mismatch", "dst-shape",
        "N4097-trn3"])
def test_limit_errors(chip, case, fragments, cls):
    err = expect_error(make_case_kernel(**case), chip, *fragments, cls=cls)
    assert isinstance(err, cls)


def test_large_n_allowed_on_trn3_only():
    case = dict(st_shape=(128, 8), st_dtype=nl.bfloat16, mv_shape=(128, 1024),
                mv_dtype=nl.bfloat16, dst_shape=(8, 1024), dst_dtype=nl.float32)
    run(make_case_kernel(**case), chip="trn3")  # fine
    expect_error(make_case_kernel(**case), "trn2", "N=1024", "512")
    case16 = dict(case, mv_shape=(128, 8192), dst_shape=(8, 8192), dst_dtype=nl.bfloat16)
    run(make_case_kernel(**case16), chip="trn3")  # bf16 dst: up to 8192


def test_dst_crossing_a_psum_bank_rejected_on_trn2():
    def kernel():
        s = nl.ndarray((128, 8), dtype=nl.bfloat16, buffer=nl.sbuf)
        m = nl.ndarray((128, 512), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1)
        nisa.memset(dst=m, value=1)
        d = nl.ndarray((8, 1024), dtype=nl.float32, buffer=nl.psum)  # two banks
        nisa.nc_matmul(dst=d[:, 256:768], stationary=s, moving=m)
        return None

    with pytest.raises(NkiValidationError, match="bank"):
        run(kernel)
    run(kernel, chip="trn3")  # a v4 matmul may span banks


# -- double_row ---------------------------------------------------------------------------
@nki.jit
def double_row_kernel(a, b):
    """a[128, 2, M], b[128, 2, N] fp8 -> [M, N] with perf_mode=double_row."""
    sa = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    sb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sa, src=a)
    nisa.dma_copy(dst=sb, src=b)
    ps = nl.ndarray((a.shape[2], b.shape[2]), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, perf_mode=nisa.matmul_perf_mode.double_row)
    res = nl.ndarray(ps.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=res, src=ps)
    out = nl.ndarray(ps.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=res)
    return out


def test_double_row_equals_k256_product():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((256, 64)).astype(E4M3)  # logical [K=256, M]
    y = rng.standard_normal((256, 512)).astype(E5M2)  # logical [K=256, N]
    # first half of the contraction in [:, 0, :], second half in [:, 1, :]
    a = np.ascontiguousarray(x.reshape(2, 128, 64).transpose(1, 0, 2))
    b = np.ascontiguousarray(y.reshape(2, 128, 512).transpose(1, 0, 2))
    out, run_ = run(double_row_kernel, a, b)
    assert_fp32_close(out, ref_matmul(x, y))
    mm = [i for i in run_.program if i.opcode == "nc_matmul"][0]
    assert mm.attrs["perf_mode"] == "double_row" and mm.attrs["contraction"] == 256


def test_double_row_unsupported_on_trn1_and_fp8_only():
    a = np.ones((128, 2, 4), E4M3)
    with pytest.raises(UnsupportedError, match="double_row"):
        run(double_row_kernel, a, a, chip="trn1")
    with pytest.raises(NkiValidationError, match="fp8"):
        run(double_row_kernel, a.astype(BF16), a.astype(BF16))
    with pytest.raises(NkiValidationError, match=r"\[K, 2"):
        run(double_row_kernel, np.ones((128, 3, 4), E4M3), np.ones((128, 3, 4), E4M3))
    with pytest.raises(NkiValidationError, match="column tiling"):
        run(make_case_kernel((128, 2, 8), nl.float8_e4m3, (128, 2, 8), nl.float8_e4m3,
                             (8, 8), nl.float32, perf_mode=nisa.matmul_perf_mode.double_row,
                             tile_position=(0, 64), tile_size=(128, 64)))


# -- tiling ----------------------------------------------------------------------------------
def test_row_tiling_limits_k_and_validates_position():
    ok = dict(st_shape=(64, 8), st_dtype=nl.bfloat16, mv_shape=(64, 8), mv_dtype=nl.bfloat16,
              dst_shape=(8, 8), dst_dtype=nl.float32)
    _, r = run(make_case_kernel(**ok, tile_position=(64, 0), tile_size=(64, 128)))
    mm = [i for i in r.program if i.opcode == "nc_matmul"][0]
    assert mm.attrs["tile_position"] == (64, 0) and mm.attrs["tile_size"] == (64, 128)
    big = dict(ok, st_shape=(128, 8), mv_shape=(128, 8))
    expect_error(make_case_kernel(**big, tile_position=(0, 0), tile_size=(64, 128)), "trn2",
                 "K=128", "row_size=64")
    expect_error(make_case_kernel(**ok, tile_position=(32, 0), tile_size=(64, 128)), "trn2",
                 "multiple of row_size")
    expect_error(make_case_kernel(**ok, tile_position=(64, 0)), "trn2", "both")
    expect_error(make_case_kernel(**ok, tile_position=(0, 0), tile_size=(32, 128)), "trn1",
                 "row_size=32", cls=UnsupportedError)
    run(make_case_kernel(**dict(ok, st_shape=(32, 8), mv_shape=(32, 8)),
                         tile_position=(96, 0), tile_size=(32, 128)))
    expect_error(make_case_kernel(**dict(ok, st_shape=(64, 64), dst_shape=(64, 8)),
                                  tile_position=(0, 32), tile_size=(64, 32)),
                 "trn2", "M=64", "column_size=32")


# -- record and numerics off -------------------------------------------------------------
def test_record_attrs_and_numerics_off():
    a = np.ones((128, 2, 16), E4M3)
    b = np.ones((128, 2, 64), E4M3)
    for numerics in (True, False):
        _, r = run(double_row_kernel, a, b, numerics=numerics)
        mm = [i for i in r.program if i.opcode == "nc_matmul"][0]
        assert mm.engine == "tensor"
        assert mm.attrs["K"] == 128 and mm.attrs["M"] == 16 and mm.attrs["N"] == 64
        assert mm.attrs["stationary_dtype"] == "float8_e4m3"
        assert mm.attrs["dst_dtype"] == "float32"
        assert mm.attrs["is_transpose"] is False and mm.attrs["is_moving_onezero"] is False
        assert mm.attrs["accumulate"] is False
        assert [a_.role for a_ in mm.reads] == ["stationary", "moving"]
        assert [a_.role for a_ in mm.writes] == ["dst"]
    _, r = run(k_loop_kernel, np.ones((256, 4), np.float32), np.ones((256, 4), np.float32),
               numerics=False)
    assert [i.attrs["accumulate"] for i in r.program if i.opcode == "nc_matmul"] == [False,
                                                                                     True]


def test_onezero_hint_warns_on_other_values():
    def kernel(flag_ok):
        s = nl.ndarray((8, 4), dtype=nl.float32, buffer=nl.sbuf)
        m = nl.ndarray((8, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1 if flag_ok else 3)
        nisa.memset(dst=m, value=2)
        d = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=d, stationary=s, moving=m, is_stationary_onezero=True)
        return None

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(kernel, True)
    with pytest.warns(NkiNumericsWarning, match="onezero"):
        run(kernel, False)


# -- transpose ----------------------------------------------------------------------------
@nki.jit
def transpose_kernel(x, engine, via_matmul=False):
    P, F = x.shape
    sx = nl.ndarray((P, F), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=sx, src=x)
    buf = nl.sbuf if engine == "vector" else nl.psum
    t = nl.ndarray((F, P), dtype=x.dtype, buffer=buf)
    if via_matmul:
        ident = nl.ndarray((P, P), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=ident, src=nl.shared_identity_matrix(P, dtype=x.dtype))
        nisa.nc_matmul(dst=t, stationary=sx, moving=ident, is_transpose=True)
    elif engine is None:
        nisa.nc_transpose(dst=t, data=sx)
    else:
        nisa.nc_transpose(dst=t, data=sx, engine=getattr(nisa.engine, engine))
    r = nl.ndarray((F, P), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=r, src=t)
    out = nl.ndarray((F, P), dtype=x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=r)
    return out


def _special(shape, dtype, seed=6):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x.flat[0], x.flat[5], x.flat[7], x.flat[9] = np.nan, np.inf, -np.inf, -0.0
    return x.astype(dtype)


def _bits(a):
    return np.ascontiguousarray(a).view(f"u{a.dtype.itemsize}")


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
@pytest.mark.parametrize("dtype", [BF16, np.float32, E4M3, np.int16])
def test_pe_transpose_bit_exact_v3_plus(chip, dtype):
    x = _special((96, 128), dtype) if dtype != np.int16 else \
        np.arange(96 * 128, dtype=np.int16).reshape(96, 128)
    out, r = run(transpose_kernel, x, "tensor", chip=chip)
    assert np.array_equal(_bits(out), _bits(x.T))
    tr = [i for i in r.program if i.opcode == "nc_transpose"][0]
    assert tr.engine == "tensor" and tr.attrs["is_transpose"] is True


def test_matmul_transpose_mode_with_identity_bit_exact():
    x = _special((64, 32), BF16)
    out, r = run(transpose_kernel, x, "tensor", True)
    assert np.array_equal(_bits(out), _bits(x.T))
    mm = [i for i in r.program if i.opcode == "nc_matmul"][0]
    assert mm.attrs["is_transpose"] is True


def test_matmul_transpose_mode_fp32_dst_and_non_identity_moving():
    def kernel(moving_value):
        s = nl.ndarray((4, 3), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(dst=s, value=-2.5)
        m = nl.ndarray((4, 4), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=m, src=nl.shared_identity_matrix(4, dtype=nl.bfloat16))
        if moving_value is not None:
            nisa.memset(dst=m[0:1, :], value=moving_value)
        d = nl.ndarray((3, 4), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=d, stationary=s, moving=m, is_transpose=True)
        r = nl.ndarray((3, 4), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=r, src=d)
        o = nl.ndarray((3, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=r)
        return o

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = run(kernel, None)
    np.testing.assert_array_equal(out, np.full((3, 4), -2.5, np.float32))
    with pytest.warns(NkiNumericsWarning, match="one-hot"):
        out, _ = run(kernel, 2.0)  # row 0 of moving = 2: no column is one-hot any more
    # columns 1..3 are then matmuls: -2.5*2 + -2.5*1 ; column 0: -2.5*2
    np.testing.assert_array_equal(out[:, 0], -5.0)
    np.testing.assert_array_equal(out[:, 1:], -7.5)


def test_pe_transpose_on_trn1_is_a_matmul():
    x = np.random.default_rng(7).standard_normal((16, 8)).astype(np.float32)
    out, _ = run(transpose_kernel, x, "tensor", chip="trn1")
    assert np.array_equal(out, x.T)  # finite values: exact (x*1 + 0s)
    x[3, 2] = np.nan
    x[5, 6] = -0.0
    out, _ = run(transpose_kernel, x, "tensor", chip="trn1")
    # NaN spreads along the output row of its column (0*NaN = NaN); -0.0 + 0 = +0.0
    assert np.isnan(out[2]).all() and not np.isnan(np.delete(out, 2, axis=0)).any()
    assert out[6, 5] == 0 and not np.signbit(out[6, 5])
    with pytest.raises(NkiValidationError, match="vector_engine"):
        run(transpose_kernel, np.ones((4, 4), np.int16), "tensor", chip="trn1")


@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int32])
def test_vector_transpose_bit_exact(dtype):
    x = _special((32, 24), dtype) if dtype != np.int32 else \
        np.arange(32 * 24, dtype=np.int32).reshape(32, 24)
    out, r = run(transpose_kernel, x, "vector", chip="trn1")
    assert np.array_equal(_bits(out), _bits(x.T))
    assert [i.engine for i in r.program if i.opcode == "nc_transpose"] == ["vector"]


def test_transpose_limits_and_default_engine():
    with pytest.raises(NkiValidationError, match=r"at most \[32, 32\]") as ei:
        run(transpose_kernel, np.ones((64, 8), np.float32), "vector")
    assert "nc_transpose" in str(ei.value) and HERE in str(ei.value)
    # default: SBUF -> PSUM goes to the Tensor Engine
    _, r = run(transpose_kernel, np.ones((64, 8), np.float32), None)
    assert [i.engine for i in r.program if i.opcode == "nc_transpose"] == ["tensor"]

    def kernel():
        s = nl.ndarray((8, 8), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1)
        d = nl.ndarray((8, 8), dtype=nl.bfloat16, buffer=nl.psum)
        nisa.nc_transpose(dst=d, data=s, engine=nisa.tensor_engine)
        return None

    with pytest.raises(NkiValidationError, match="dtype of data"):
        run(kernel)


# -- property test -----------------------------------------------------------------------
_PAIRS = [(np.float32, np.float32), (BF16, BF16), (FP16, BF16), (E4M3, BF16),
          (E5M2, E4M3), (FP16, FP16)]


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 128), m=st.integers(1, 128), n=st.integers(1, 512),
       pair=st.sampled_from(range(len(_PAIRS))), seed=st.integers(0, 2 ** 16))
def test_matmul_property(k, m, n, pair, seed):
    sd, md = _PAIRS[pair]
    rng = np.random.default_rng(seed)
    a = rng.uniform(-4, 4, (k, m)).astype(sd)
    b = rng.uniform(-4, 4, (k, n)).astype(md)
    out, _ = run(matmul_kernel, a, b)
    assert out.shape == (m, n)
    assert_fp32_close(out, ref_matmul(a, b))
