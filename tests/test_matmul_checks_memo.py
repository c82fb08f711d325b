"""nc_matmul keeps the result of its checks, the operand checks included (memory, shape,
partitions), per operand shapes, dtypes, memories and settings (isa/matmul.py
`_CHECKED`): a kept result gives the record and values that the checks give from
scratch, and a call whose operands differ in any of them is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import matmul
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh


def _kernel(a, b, forget):
    out = nl.ndarray((128, 3 * 64), nl.float32, buffer=nl.shared_hbm)
    s = nl.ndarray((64, 128), nl.float32, buffer=nl.sbuf)
    m = nl.ndarray((64, 64), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=s, src=a)
    nisa.dma_copy(dst=m, src=b)
    accs = [nl.ndarray((128, 64), nl.float32, buffer=nl.psum) for _ in range(2)]
    for i in range(3):
        for acc in accs:  # (two accumulation groups, alternating)
            if forget:
                matmul._CHECKED.clear()
            nisa.nc_matmul(dst=acc, stationary=s, moving=m)
    if forget:
        matmul._CHECKED.clear()
    nisa.nc_matmul(dst=accs[0][:, 0:32], stationary=s, moving=m[:, 0:32])
    for i, acc in enumerate(accs + [accs[0]]):
        res = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=res, src=acc)
        nisa.dma_copy(dst=out[:, i * 64:(i + 1) * 64], src=res)
    return out


@pytest.mark.parametrize("numerics", [True, False])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(numerics):
    rng = np.random.default_rng(3)
    a = rng.integers(-4, 5, (64, 128)).astype(np.float32)
    b = rng.integers(-4, 5, (64, 64)).astype(np.float32)
    kept, records = kept_as_fresh(_kernel, (a, b), numerics=numerics)
    matmuls = [r[2] for r in records if r[1] == "nc_matmul"]
    assert [r["accumulate"] for r in matmuls] == [False, False] + [True] * 4 + [True]
    if numerics:
        ab = a.T.astype(np.float64) @ b
        np.testing.assert_array_equal(kept[:, 64:128], 3 * ab)
        np.testing.assert_array_equal(kept[:, :32], 4 * ab[:, :32])
        np.testing.assert_array_equal(kept[:, 32:64], 3 * ab[:, 32:])


def test_operands_that_differ_are_checked_again():
    def kernel(a):
        s = nl.ndarray((64, 128), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=a)
        acc = nl.ndarray((128, 128), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=acc, stationary=s, moving=s)  # kept
        in_psum = nl.ndarray((64, 128), nl.float32, buffer=nl.psum)
        dst_sbuf = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        for kw, match in ((dict(dst=acc, stationary=in_psum, moving=s), "'stationary'"),
                          (dict(dst=acc, stationary=s, moving=in_psum), "'moving'"),
                          (dict(dst=dst_sbuf, stationary=s, moving=s), "'dst'"),
                          (dict(dst=acc, stationary=s, moving=np.zeros((64, 128))),
                           "NKI tensor")):
            with pytest.raises(NkiValidationError, match=match):
                nisa.nc_matmul(**kw)
        return nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)

    trnsim.run_kernel(kernel, (np.ones((64, 128), np.float32),), numerics=False)
