"""Regression tests for fixes found by running public NKI kernels (current `nki` API) on
trnsim. Each test is a small kernel of our own that reproduces the pattern a public
kernel relies on; expected values come from NumPy references written here.

- ISA calls accept a redundant `dtype=` equal to dst.dtype (and reject any other),
  keeping the documented signature.
- `nl.tile_size.gemm_moving_fmax` is 512 (one fp32 PSUM bank) on every generation;
  NeuronCore-v4's larger nc_matmul moving limit stays an instruction limit.
- `nl.shared_constant` accepts the path of a `.npy` file, as documented.
- `nisa.nc_version` members are ordered (against each other and generation numbers).
"""
from __future__ import annotations

import inspect

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, NkiValidationError
from kernel_helpers import load, store

BF16 = ml_dtypes.bfloat16


def run(kernel, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)


def bf16_rne(x):
    """fp32 -> bf16 round-to-nearest-even, by bit arithmetic (independent of trnsim)."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return (b.astype(np.uint32) << 16).view(np.float32)


# -- redundant dtype= ----------------------------------------------------------------
def k_matmul_evict(lhsT, rhs, pass_dtype):
    """PSUM fp32 result evicted to a bf16 SBUF tile, passing dtype= as older kernels do."""
    a, b = load(lhsT), load(rhs)
    ps = nl.ndarray((lhsT.shape[1], rhs.shape[1]), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(ps, a, b)
    sb = nl.ndarray(ps.shape, nl.bfloat16, buffer=nl.sbuf)
    if pass_dtype == "kw":
        nisa.tensor_copy(dst=sb, src=ps, dtype=nl.bfloat16)
    elif pass_dtype == "positional-dst":
        nisa.tensor_copy(sb, ps, dtype=np.dtype(BF16))   # dst given positionally
    else:
        nisa.tensor_copy(dst=sb, src=ps)
    return store(sb)


@pytest.mark.parametrize("how", ["kw", "positional-dst", "none"])
def test_tensor_copy_accepts_dtype_equal_to_dst(how):
    rng = np.random.default_rng(1)
    lhsT = rng.integers(-4, 5, (32, 16)).astype(np.float32)
    rhs = (rng.standard_normal((32, 24)) * 3).astype(np.float32)
    out, r = run(k_matmul_evict, lhsT, rhs, how)
    exp = bf16_rne(lhsT.T.astype(np.float64) @ rhs.astype(np.float64))
    assert out.dtype == BF16
    np.testing.assert_array_equal(out.astype(np.float32), exp)
    assert [i.opcode for i in r.program].count("tensor_copy") == 1


def k_evict_mismatch(x):
    s = load(x)
    d = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=d, src=s, dtype=nl.bfloat16)  # dst is fp32: contradictory
    return store(d)


def test_dtype_differing_from_dst_is_ignored_with_a_warning():
    # The SDK's own hoisted-load matmul tutorial passes dtype=bf16 for an fp32 dst and
    # its documented copy drops the argument: the instruction writes dst.dtype.
    x = np.full((8, 8), 1.00390625, np.float32)  # not representable in bf16
    with pytest.warns(NkiNumericsWarning) as w:
        out, _ = run(k_evict_mismatch, x)
    msg = str(w[0].message)
    assert "tensor_copy" in msg and "bfloat16" in msg and "float32" in msg
    assert "ignored" in msg and "test_conformance_fixes.py" in msg  # kernel line
    np.testing.assert_array_equal(out, x)  # written as fp32, not rounded to bf16
    with pytest.raises(NkiValidationError, match="ignored"):
        trnsim.run_kernel(k_evict_mismatch, (x,), strict=True)


def k_tensor_tensor_dtype(a, b):
    x, y = load(a), load(b)
    d = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=d, data1=x, data2=y, op=nl.add, dtype=nl.float32)
    return store(d)


def test_other_dst_instructions_accept_redundant_dtype_too():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 16, 10)).astype(np.float32)
    out, _ = run(k_tensor_tensor_dtype, a, b)
    np.testing.assert_array_equal(out, (a + b).astype(np.float32))


def test_documented_signatures_unchanged():
    for fn in (nisa.tensor_copy, nisa.tensor_tensor, nisa.activation, nisa.nc_matmul):
        params = inspect.signature(fn).parameters
        assert "dtype" not in params and "dst" in params


def k_no_dst_with_dtype(a):
    s = load(a)
    v = nl.ndarray((a.shape[0], 8), nl.float32, buffer=nl.sbuf)
    i = nl.ndarray((a.shape[0], 8), nl.uint32, buffer=nl.sbuf)
    nisa.topk(val_dst=v, idx_dst=i, src=s, n=8, dtype=nl.float32)  # no `dst`: not tolerated
    return store(v)


def test_dtype_still_rejected_where_there_is_no_dst():
    with pytest.raises(TypeError):
        run(k_no_dst_with_dtype, np.zeros((4, 16), np.float32), chip="trn3")


def test_redundant_dtype_with_numerics_off_records_instruction():
    rng = np.random.default_rng(3)
    lhsT, rhs = rng.standard_normal((2, 16, 16)).astype(np.float32)
    _, r = run(k_matmul_evict, lhsT, rhs, "kw", numerics=False)
    assert [i.opcode for i in r.program].count("tensor_copy") == 1


# -- nl.tile_size.gemm_moving_fmax -----------------------------------------------------
@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_gemm_moving_fmax_is_one_psum_bank(chip):
    seen = {}

    def k(a):
        seen["mov"] = nl.tile_size.gemm_moving_fmax
        seen["bank"] = nl.tile_size.psum_bank_fmax
        return store(load(a))

    run(k, np.zeros((2, 2), np.float32), chip=chip)
    assert seen["mov"] == 512 == seen["bank"]


def k_wide_matmul(lhsT, rhs):
    a, b = load(lhsT), load(rhs)
    ps = nl.ndarray((lhsT.shape[1], rhs.shape[1]), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=a, moving=b)
    sb = nl.ndarray(ps.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sb, src=ps)
    return store(sb)


def test_trn3_nc_matmul_still_takes_moving_wider_than_the_tile_constant():
    rng = np.random.default_rng(4)
    lhsT = rng.integers(-3, 4, (64, 32)).astype(np.float32)
    rhs = rng.integers(-3, 4, (64, 1024)).astype(np.float32)
    out, _ = run(k_wide_matmul, lhsT, rhs, chip="trn3")
    np.testing.assert_array_equal(out, lhsT.T @ rhs)
    with pytest.raises(NkiValidationError):
        run(k_wide_matmul, lhsT, rhs, chip="trn2")  # 1024 > 512 before NeuronCore-v4


# -- nl.shared_constant from a .npy path --------------------------------------------
def k_const(path):
    c = nl.shared_constant(path)
    s = nl.ndarray(c.shape, c.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=s, src=c)
    return store(s)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.float16, np.uint8])
def test_shared_constant_loads_npy_file(tmp_path, dtype):
    data = (np.arange(8 * 6).reshape(8, 6) - 20).astype(dtype)
    path = tmp_path / "const.npy"
    np.save(path, data)
    out, _ = run(k_const, str(path))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, data)
    out2, _ = run(k_const, path)  # a pathlib.Path works too
    np.testing.assert_array_equal(out2, data)


def test_shared_constant_bad_path_or_dtype(tmp_path):
    with pytest.raises(ValueError, match="npy"):
        run(k_const, str(tmp_path / "missing.npy"))
    p = tmp_path / "f64.npy"
    np.save(p, np.zeros((2, 2), np.float64))  # float64 is not a device dtype
    with pytest.raises(TypeError):
        run(k_const, str(p))


# -- nc_version ordering -------------------------------------------------------------
def k_by_generation(a):
    s = load(a)
    d = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
    v = nisa.get_nc_version()
    if v >= nisa.nc_version.gen4:
        scale = 4.0
    elif v > nisa.nc_version.gen2 and v >= 3:
        scale = 3.0
    else:
        scale = 2.0
    nisa.tensor_scalar(dst=d, data=s, op0=nl.multiply, operand0=scale)
    return store(d)


@pytest.mark.parametrize("chip,scale", [("trn1", 2.0), ("trn2", 3.0), ("trn3", 4.0)])
def test_nc_version_ordering_in_kernel(chip, scale):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    out, _ = run(k_by_generation, a, chip=chip)
    np.testing.assert_array_equal(out, a * scale)


def test_nc_version_comparisons():
    g2, g3, g4 = nisa.nc_version.gen2, nisa.nc_version.gen3, nisa.nc_version.gen4
    assert g2 < g3 < g4 and g4 > g2 and g3 <= g3 and g3 >= g3 and not g3 < g3
    assert g3 >= 3 and g3 <= 3 and g2 < 3 and not g4 <= 3 and 2 < g3
    assert sorted([g4, g2, g3]) == [g2, g3, g4]
    assert g3 == nisa.nc_version(3) and g3 != 3  # equality stays the Enum's
    with pytest.raises(TypeError):
        _ = g3 < "gen4"
    with pytest.raises(TypeError):
        _ = g3 < True


def test_dma_transpose_of_fp32_in_the_default_mode():
    # Only the hardware-DGE and indirect transposes need 2-byte dtypes.
    def k(a):
        s = load(a)
        t = nl.ndarray((a.shape[1], a.shape[0]), a.dtype, buffer=nl.sbuf)
        nisa.dma_transpose(dst=t, src=s)
        return store(t)
    a = np.arange(24 * 40, dtype=np.float32).reshape(24, 40)
    out, _ = run(k, a)
    np.testing.assert_array_equal(out, a.T)


def test_empty_nl_ds_view_is_allowed_but_not_accessed():
    def k(a):
        s = load(a)
        empty = s[:, nl.ds(4, 0)]
        assert empty.shape == (a.shape[0], 0)
        nisa.tensor_copy(dst=empty, src=empty)
    with pytest.raises(NkiValidationError, match="is empty"):
        run(k, np.zeros((4, 8), np.float32))


def test_nkiobject_dataclass_with_plain_class_attributes():
    from dataclasses import dataclass

    @dataclass
    class Section(nl.NKIObject):
        index = None
        offset = 0
        scale: float = 1.0

    s = Section(index=3, offset=128)
    assert (s.index, s.offset, s.scale) == (3, 128, 1.0)
    assert Section().offset == 0
