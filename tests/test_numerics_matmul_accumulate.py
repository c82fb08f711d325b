"""PSUM accumulation (isa/matmul.py's psum_store) gives, bit for bit, the fp32 add of
the matmuls' separate results, NaN payloads included, in both accumulation modes; and a
matmul operand enters the GEMM with the values to_fp32 gives."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa.matmul import _readonly_fp32
from trnsim.numerics.cast import to_fp32

from kernel_helpers import bits, load, store


@nki.jit
def separate_and_accumulated(a, b, c):
    """a.T @ b and a.T @ c into PSUM tiles of their own, and the two accumulated into one
    (an accumulation group, then accumulate=True onto its first half)."""
    at, bt, ct = load(a), load(b), load(c)
    M, N = a.shape[1], b.shape[1]
    first = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    second = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    both = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    again = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=first, stationary=at, moving=bt)
    nisa.nc_matmul(dst=second, stationary=at, moving=ct)
    nisa.nc_matmul(dst=both, stationary=at, moving=bt)
    nisa.nc_matmul(dst=both, stationary=at, moving=ct)
    nisa.nc_matmul(dst=again, stationary=at, moving=bt, accumulate=False)
    nisa.nc_matmul(dst=again[:, 0:N // 2], stationary=at, moving=ct[:, 0:N // 2],
                   accumulate=True)
    return store(first), store(second), store(both), store(again)


def _with_specials(shape, seed):
    """Small integers (every sum exact, whatever the GEMM's order), with NaNs of
    several payloads, +-inf and -0.0 in a few columns: outputs where both matmuls give
    a NaN, one does, or neither."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-8, 9, shape).astype(np.float32)
    payloads = np.array([0x7FC01234, 0xFFC00077, 0x7FA00001, 0x7F800000, 0xFF800000,
                         0x80000000], np.uint32)
    for col in rng.choice(shape[1], 5, replace=False):
        rows = rng.choice(shape[0], 2, replace=False)
        x.view(np.uint32)[rows, col] = payloads[rng.integers(0, payloads.size, 2)]
    return x


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # (inf + -inf)
@pytest.mark.parametrize("mode", ["exact", "fp32"])
def test_accumulating_is_the_fp32_add_of_the_separate_results(monkeypatch, mode):
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", mode)
    a = _with_specials((128, 128), 1)
    b, c = _with_specials((128, 300), 2), _with_specials((128, 300), 3)
    (first, second, both, again), run = trnsim.run_kernel(separate_and_accumulated, (a, b, c))
    assert np.isnan(first).sum() > 100 and (np.isnan(first) & np.isnan(second)).sum() > 10
    with np.errstate(invalid="ignore"):
        # row by row, as PSUM rows are added (docs/internals.md: where both are NaN, NumPy's
        # vectorised body keeps the first payload and its scalar tail the second, so one
        # flat add of the whole tile differs at the rows' ends: which outputs are NaN in
        # both matmuls, and with which payloads, depends on the BLAS kernel)
        want_both = np.stack([np.add(f, s) for f, s in zip(first, second)])
        want_again = first.copy()
        want_again[:, :150] = np.add(first[:, :150], second[:, :150])
    np.testing.assert_array_equal(bits(both), bits(want_both))
    np.testing.assert_array_equal(bits(again), bits(want_again))
    flags = [i.attrs["accumulate"] for i in run.program if i.opcode == "nc_matmul"]
    assert flags == [False, False, False, True, False, True]


@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16,
                                   ml_dtypes.float8_e4m3, ml_dtypes.float8_e5m2])
def test_an_operand_read_for_the_gemm_has_to_fp32s_values(dtype):
    raw = _with_specials((16, 24), 4).astype(dtype)
    got = _readonly_fp32(raw)
    np.testing.assert_array_equal(bits(got), bits(to_fp32(raw)))
    if dtype is np.float32:  # the memory itself, read-only
        assert np.shares_memory(got, raw) and not got.flags.writeable
    else:
        assert not np.shares_memory(got, raw)
