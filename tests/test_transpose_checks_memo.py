"""nc_transpose on the Tensor Engine keeps the result of its checks per operand shapes,
dtypes and memories (isa/matmul.py `_PE_TRANSPOSE_CHECKED`), dst's PSUM bank checked
on every call: a kept result gives the record and the values that the checks give from
scratch, and any call that differs (or a dst across a bank) is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import matmul
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh

_SHAPES = [((128, 128), nl.bfloat16), ((128, 128), nl.bfloat16),  # kept
           ((64, 32), nl.float32), ((64, 32), nl.float32),  # kept
           ((32, 128), nl.bfloat16), ((128, 128), nl.bfloat16)]  # kept again


def _kernel(x, forget):
    out = nl.ndarray((128, 128 * len(_SHAPES)), nl.float32, buffer=nl.shared_hbm)
    zeros = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=zeros, value=0.0)
    for i, ((p, f), dtype) in enumerate(_SHAPES):
        nisa.dma_copy(dst=out[:, i * 128:(i + 1) * 128], src=zeros)
        wide = nl.ndarray((p, f), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=wide, src=x[i:i + p, 0:f])
        data = nl.ndarray((p, f), dtype, buffer=nl.sbuf)
        nisa.tensor_copy(dst=data, src=wide)
        dst = nl.ndarray((f, p), dtype, buffer=nl.psum)
        if forget:
            matmul._PE_TRANSPOSE_CHECKED.clear()
        nisa.nc_transpose(dst=dst, data=data)
        res = nl.ndarray((f, p), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=res, src=dst)
        nisa.dma_copy(dst=out[0:f, i * 128:i * 128 + p], src=res)
    return out


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(chip):
    x = np.random.default_rng(4).standard_normal((140, 128)).astype(np.float32)
    kept, records = kept_as_fresh(_kernel, (x,), chip=chip)
    transposes = [r for r in records if r[1] == "nc_transpose"]
    assert len(transposes) == len(_SHAPES)
    assert [(r[2]["K"], r[2]["M"], r[2]["stationary_dtype"]) for r in transposes] == \
        [(p, f, str(dtype)) for (p, f), dtype in _SHAPES]
    # fp32 is exact either way: the transpose of what was loaded
    np.testing.assert_array_equal(kept[0:32, 256:320], x[2:66, 0:32].T)


def test_calls_that_differ_are_checked_again():
    def kernel(x):
        data = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(dst=data, value=1.0)
        banks = nl.ndarray((128, 2048), nl.bfloat16, buffer=nl.psum)  # two 2 KiB banks
        nisa.nc_transpose(dst=banks[:, 0:128], data=data)
        nisa.nc_transpose(dst=banks[:, 896:1024], data=data)  # kept: up to the bank's end
        with pytest.raises(NkiValidationError, match="PSUM bank boundary"):
            nisa.nc_transpose(dst=banks[:, 960:1088], data=data)  # same shapes, across
        wrong = nl.ndarray((128, 128), nl.float32, buffer=nl.psum)
        with pytest.raises(NkiValidationError, match="must have the dtype of data"):
            nisa.nc_transpose(dst=wrong, data=data)
        in_psum = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.psum)
        with pytest.raises(NkiValidationError, match="address space"):
            nisa.nc_transpose(dst=banks[:, 0:128], data=in_psum, engine=nisa.tensor_engine)
        tall = nl.ndarray((128, 64), nl.bfloat16, buffer=nl.psum)
        with pytest.raises(NkiValidationError, match="must be"):
            nisa.nc_transpose(dst=tall, data=data)
        return None

    trnsim.run_kernel(kernel, (np.zeros((128, 8), np.float32),), chip="trn2")
