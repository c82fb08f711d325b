"""The nki.simulate correctness fixes of the NKI 0.4.0-0.6.0 release notes (Neuron
2.30.0-2.32.0), each checked on the current API (trnsim.nki.isa / language) against a
NumPy reference written here.

Release notes: https://awsdocs-neuron.readthedocs-hosted.com/en/v2.33.0/_sources/release-notes/components/nki.rst
(sections nki-2-32-0-rn, nki-2-31-0-rn, nki-2-30-0-rn; quoted above each test).
"""
import inspect
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, UnsupportedError
from kernel_helpers import load, store

BF16 = ml_dtypes.bfloat16


def run(kernel, *args, chip="trn2"):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out, _ = trnsim.run_kernel(kernel, args, chip=chip)
    return out, [w for w in seen]


# -- 0.6.0: "fp32-to-integer casts match hardware (round to nearest, ties to even;
#    saturate to the destination range) instead of numpy's default behavior." ---------
# The note does not say what NaN becomes: trnsim writes 0 (docs/numerics.md, Casts).
def ref_int(f, dtype):
    """RNE then saturation, NaN -> 0, computed in float64 from the fp32 values."""
    info = np.iinfo(dtype)
    f = np.asarray(f, np.float32).astype(np.float64)
    return np.clip(np.where(np.isnan(f), 0.0, np.rint(f)), info.min, info.max).astype(dtype)


VALUES = np.array([[0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -3.51, 126.5, 127.5, 128.5,
                    -128.5, -129.5, 254.5, 255.5, 256.5, 32766.5, 32767.5, -32768.5,
                    65535.5, 2.0 ** 31, -2.0 ** 31 - 256, 2.0 ** 32, 1e10, -1e10,
                    np.inf, -np.inf, np.nan, -0.0, 1e-30]], np.float32)
INTS = [nl.int8, nl.uint8, nl.int16, nl.uint16, nl.int32, nl.uint32]


def _tile(shape, dt):
    return nl.ndarray(shape, dt, buffer=nl.sbuf)


def _paths(dt):
    """Each instruction that casts its fp32 result to the int dtype `dt`."""
    def tensor_copy(engine):
        def k(a):
            d = _tile(a.shape, dt)
            nisa.tensor_copy(dst=d, src=load(a), engine=engine)
            return store(d)
        return k

    def activation(a):
        d = _tile(a.shape, dt)
        nisa.activation(dst=d, op=nl.copy, data=load(a))
        return store(d)

    def tensor_tensor(a):
        z = _tile(a.shape, nl.float32)
        nisa.memset(dst=z, value=0.0)
        d = _tile(a.shape, dt)
        nisa.tensor_tensor(dst=d, data1=load(a), data2=z, op=nl.add)
        return store(d)

    def tensor_scalar(a):
        d = _tile(a.shape, dt)
        nisa.tensor_scalar(dst=d, data=load(a), op0=nl.multiply, operand0=1.0)
        return store(d)

    def dma_copy_to_sbuf(a):
        d = _tile(a.shape, dt)
        nisa.dma_copy(dst=d, src=a)
        return store(d)

    def dma_copy_to_hbm(a):
        o = nl.ndarray(a.shape, dt, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=load(a))
        return o

    def dma_compute(a):
        o = nl.ndarray(a.shape, dt, buffer=nl.shared_hbm)
        nisa.dma_compute(dst=o, srcs=[load(a)], reduce_op=nl.add)
        return o

    return {"tensor_copy[vector]": tensor_copy(nisa.engine.vector),
            "tensor_copy[gpsimd]": tensor_copy(nisa.engine.gpsimd),
            "tensor_copy[scalar]": tensor_copy(nisa.engine.scalar),
            "activation": activation, "tensor_tensor": tensor_tensor,
            "tensor_scalar": tensor_scalar, "dma_copy[hbm->sbuf]": dma_copy_to_sbuf,
            "dma_copy[sbuf->hbm]": dma_copy_to_hbm, "dma_compute": dma_compute}


@pytest.mark.parametrize("path", list(_paths(nl.int32)))
@pytest.mark.parametrize("dt", INTS, ids=str)
def test_float_to_int_casts_round_to_nearest_even_and_saturate(dt, path):
    kernel = _paths(dt)[path]
    with np.errstate(over="ignore"):
        for src in (VALUES, VALUES.astype(BF16), VALUES.astype(np.float16)):
            out, _ = run(kernel, src)
            want = ref_int(src.astype(np.float32), out.dtype)
            assert out.dtype == np.dtype(str(dt))
            np.testing.assert_array_equal(out, want, err_msg=f"{path} {src.dtype} -> {dt}")


def test_float_to_int_cast_is_not_numpy_truncation():
    out, _ = run(_paths(nl.int32)["tensor_copy[vector]"], VALUES)
    assert list(out[0, :6]) == [0, 2, 2, 0, -2, -2]  # numpy's astype gives 0 1 2 0 -1 -2
    assert out[0, VALUES[0].tolist().index(1e10)] == 2 ** 31 - 1
    assert out[0, np.flatnonzero(np.isnan(VALUES[0]))[0]] == 0  # NaN: trnsim's choice


# -- 0.6.0: "nc_find_index8 unmatched slots now return all-ones, matching hardware
#    (previously returned 0, a valid index). Duplicate search values now advance through
#    successive occurrences, instead of all mapping to the first match." --------------
def ref_find_index8(data, vals, dtype):
    out = np.full(vals.shape, np.iinfo(dtype).max, dtype=dtype)  # all ones
    for p in range(data.shape[0]):
        taken = set()
        for i in range(8):
            for j in np.flatnonzero(data[p] == vals[p, i]):
                if j not in taken:
                    taken.add(j)
                    out[p, i] = j
                    break
    return out


@pytest.mark.parametrize("dt", [nl.uint32, nl.uint16], ids=str)
def test_find_index8_misses_are_all_ones_and_duplicates_advance(dt):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 6, (16, 32)).astype(np.float32)
    vals = np.concatenate([data[:, [3, 3, 3]], np.full((16, 2), 99.0, np.float32),
                           data[:, [0, 7, 0]]], axis=1)  # duplicates and misses

    def kern(d, v):
        idx = nl.ndarray((16, 8), dt, buffer=nl.sbuf)
        nisa.nc_find_index8(dst=idx, data=load(d), vals=load(v))
        return store(idx)
    out, _ = run(kern, data, vals)
    want = ref_find_index8(data, vals, out.dtype)
    np.testing.assert_array_equal(out, want)
    full = 0xFFFFFFFF if dt is nl.uint32 else 0xFFFF
    assert (out[:, 3:5] == full).all()
    assert (out[:, 0] != out[:, 1]).all()  # the duplicate took the next occurrence


# -- 0.6.0: "nc_match_replace8 iterates values in reverse to match hardware tie-break
#    ordering when the search values contain duplicates." ---------------------------
def test_match_replace8_visits_duplicate_values_in_reverse():
    data = np.array([[5, 1, 5, 2, 5, 3, 4, 6, 7, 8]], np.float32)
    vals = np.array([[5, 9, 5, 0, 0, 0, 0, 0]], np.float32)  # 5 twice, 9 and 0 missing

    def kern(d, v):
        dst = nl.ndarray(d.shape, nl.float32, buffer=nl.sbuf)
        idx = nl.ndarray((1, 8), nl.uint32, buffer=nl.sbuf)
        nisa.nc_match_replace8(dst=dst, data=load(d), vals=load(v), imm=-1.0, dst_idx=idx)
        return store(dst), store(idx)
    (dst, idx), _ = run(kern, data, vals)
    want_idx = np.full(8, 0xFFFFFFFF, np.uint32)
    want = data.copy()
    taken = set()
    for i in reversed(range(8)):  # i = 7 .. 0, each taking the next free occurrence
        for j in np.flatnonzero(data[0] == vals[0, i]):
            if j not in taken:
                taken.add(j)
                want_idx[i], want[0, j] = j, -1.0
                break
    np.testing.assert_array_equal(dst, want)
    np.testing.assert_array_equal(idx[0], want_idx)
    assert idx[0, 2] == 0 and idx[0, 0] == 2  # vals[2] is visited first


# -- 0.6.0: "nc_matmul accumulation into overlapping PSUM regions (the convolution
#    pattern) accumulates correctly; previously each write was treated as a first write,
#    so the overlap was not accumulated." --------------------------------------------
def test_overlapping_psum_accumulation_sums_every_contribution():
    K, M, W, TAPS = 64, 32, 16, 3
    rng = np.random.default_rng(2)
    w = rng.integers(-4, 5, (TAPS, K, M)).astype(np.float32)
    x = rng.integers(-4, 5, (K, W + TAPS - 1)).astype(np.float32)

    def kern(w, x):
        xs = load(x)
        ps = nl.ndarray((M, W + TAPS - 1), nl.float32, buffer=nl.psum)
        for t in range(TAPS):  # tap t writes output columns [t, t + W)
            wt = nl.ndarray((K, M), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=wt, src=w[t])
            nisa.nc_matmul(dst=ps[:, t:t + W], stationary=wt, moving=xs[:, 0:W])
        return store(ps)
    out, seen = run(kern, w, x)
    want = np.zeros((M, W + TAPS - 1))
    for t in range(TAPS):  # every contribution added, each column's first one included
        want[:, t:t + W] += w[t].astype(np.float64).T @ x[:, 0:W]
    np.testing.assert_array_equal(out, want.astype(np.float32))
    assert not seen


def test_overlapping_psum_accumulation_with_explicit_flags():
    K, M = 32, 16
    a = np.ones((K, M), np.float32)
    b = np.arange(K * 12, dtype=np.float32).reshape(K, 12) % 7

    def kern(a, b):
        sa, sb = load(a), load(b)
        ps = nl.ndarray((M, 12), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=False)
        nisa.nc_matmul(dst=ps[:, 2:8], stationary=sa, moving=sb[:, 0:6], accumulate=True)
        nisa.nc_matmul(dst=ps[:, 4:10], stationary=sa, moving=sb[:, 6:12], accumulate=True)
        return store(ps)
    out, seen = run(kern, a, b)
    s = a.T @ b
    want = s.copy()
    want[:, 2:8] += s[:, 0:6]
    want[:, 4:10] += s[:, 6:12]
    np.testing.assert_array_equal(out, want)
    assert not seen


# -- 0.5.0: "nc_matmul with >2D operands in conv-style kernels" (and 0.4.0: "3D+ operand
#    shapes now copies all elements") ---------------------------------------------------
def test_matmul_with_3d_moving_and_dst():
    rng = np.random.default_rng(3)
    a = rng.integers(-3, 4, (64, 32)).astype(np.float32)
    b = rng.integers(-3, 4, (64, 4, 8)).astype(np.float32)

    def kern(a, b):
        ps = nl.ndarray((32, 4, 8), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=ps, stationary=load(a), moving=load(b))
        return store(ps)
    out, _ = run(kern, a, b)
    want = (a.T @ b.reshape(64, 32)).reshape(32, 4, 8)
    np.testing.assert_array_equal(out, want)


# -- 0.5.0: "The CPU simulator now emits a warning when nc_matmul with accumulate=True
#    is used on uninitialized PSUM (undefined behavior on hardware)." ----------------
def _accumulate_kernel(first):
    def kern(a, b):
        sa, sb = load(a), load(b)
        ps = nl.ndarray((16, 8), nl.float32, buffer=nl.psum, name="acc")
        if first is not None:
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=first)
        nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=True)  # <acc>
        return store(ps)
    return kern


def test_accumulate_onto_never_written_psum_warns():
    a, b = np.ones((32, 16), np.float32), np.ones((32, 8), np.float32)
    _, seen = run(_accumulate_kernel(None), a, b)
    assert len(seen) == 1 and seen[0].category is NkiNumericsWarning
    assert "accumulate=True" in str(seen[0].message) and "never written" in str(seen[0].message)
    assert "'acc'" in str(seen[0].message)
    out, seen = run(_accumulate_kernel(False), a, b)
    assert not seen and (out == 64).all()  # started by accumulate=False: no warning
    with pytest.raises(trnsim.NkiValidationError, match="never written"):
        trnsim.run_kernel(_accumulate_kernel(None), (a, b), chip="trn2", strict=True)


# -- 0.4.0: "nki.isa.dma_compute no longer applies a fictional additive scale mode that
#    the hardware does not support." The API reference: dst = reduce_op(srcs[0] *
#    scales[0], ...), "all values in scales must be 1.0 (or scales can be None which
#    defaults to all 1.0)". ------------------------------------------------------------
def test_dma_compute_has_no_scale_mode():
    params = list(inspect.signature(nisa.dma_compute).parameters)
    assert params[:5] == ["dst", "srcs", "reduce_op", "scales", "unique_indices"]
    assert inspect.signature(nisa.dma_compute).parameters["scales"].default is None
    rng = np.random.default_rng(4)
    x, y = (rng.standard_normal((8, 16)).astype(np.float32) for _ in range(2))

    def kern(x, y, scales):
        o = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        nisa.dma_compute(dst=o, srcs=[load(x), load(y)], reduce_op=nl.add, scales=scales)
        return o
    for scales in (None, [1.0, 1.0]):
        out, _ = run(kern, x, y, scales)
        np.testing.assert_array_equal(out, x + y)  # a plain fp32 sum: nothing added
    for scales in ([2.0, 1.0], [0.0, 0.0]):
        with pytest.raises(UnsupportedError, match="scale 1.0"):
            trnsim.run_kernel(kern, (x, y, scales), chip="trn2")


# -- 0.4.0: "dma_copy with oob_mode=oob_mode.skip no longer casts integer tiles to
#    float32 in the OOB skip path -- integer bit patterns are now preserved." ---------
def test_oob_skip_gather_keeps_integer_bits():
    data = (np.arange(10 * 4, dtype=np.int64) * 123457 + 2 ** 24 + 1).astype(np.int32)
    data = data.reshape(10, 4)
    idx = np.array([[2], [10], [9], [0]], np.int32)

    def kern(d, i):
        it = load(i)
        t = nl.ndarray((4, 4), nl.int32, buffer=nl.sbuf)
        nisa.memset(dst=t, value=-7)
        nisa.dma_copy(dst=t, src=d.ap([[4, 4], [1, 4]], vector_offset=it),
                      oob_mode=nisa.oob_mode.skip)
        return store(t)
    out, _ = run(kern, data, idx)
    want = np.full((4, 4), -7, np.int32)
    for r, j in enumerate(idx[:, 0]):
        if 0 <= j < 10:
            want[r] = data[j]
    np.testing.assert_array_equal(out, want)  # odd values above 2**24: not through fp32
