"""tensor_tensor, tensor_copy and reciprocal keep the result of their checks per
opcode, chip, engine, operator and operand shapes, dtypes and memories
(isa/elementwise.py `_IO_CHECKED`): a kept result gives the record and the values that
the checks give from scratch, and a call that differs in any of them is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import elementwise
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh

SHAPE = (128, 8)


def _tile(dtype=nl.float32, buffer=nl.sbuf, shape=SHAPE):
    return nl.ndarray(shape, dtype, buffer=buffer)


def _kernel(x, xi, forget):
    out = nl.ndarray((128, 9 * 8), nl.float32, buffer=nl.shared_hbm)
    a, ai = _tile(), _tile(nl.int32)
    nisa.dma_copy(dst=a, src=x)
    nisa.dma_copy(dst=ai, src=xi)
    calls = [
        lambda d: nisa.reciprocal(dst=d, data=a),
        lambda d: nisa.tensor_copy(dst=d, src=a),  # the same operands as reciprocal's
        lambda d: nisa.tensor_copy(dst=d, src=a),  # kept
        lambda d: nisa.tensor_copy(dst=d, src=a, engine=nisa.engine.scalar),  # via fp32
        lambda d: nisa.tensor_tensor(dst=d, data1=a, data2=a, op=nl.add),
        lambda d: nisa.tensor_tensor(dst=d, data1=a, data2=a, op=nl.add),  # kept
        lambda d: nisa.tensor_tensor(dst=d, data1=a, data2=a, op=nl.multiply),
        lambda d: nisa.tensor_tensor(dst=d, data1=ai, data2=ai, op=nl.bitwise_and),
        lambda d: nisa.tensor_tensor(dst=d, data1=ai, data2=ai, op=nl.add,
                                     engine=nisa.engine.gpsimd),  # integer arithmetic
    ]
    for i, call in enumerate(calls):
        dst = _tile(nl.int32 if i >= 7 else nl.float32)
        if forget:
            elementwise._IO_CHECKED.clear()
        call(dst)
        res = _tile()
        nisa.tensor_copy(dst=res, src=dst)
        nisa.dma_copy(dst=out[:, i * 8:(i + 1) * 8], src=res)
    return out


@pytest.mark.parametrize("numerics", [True, False])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(numerics):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(SHAPE) * 7).astype(np.float32)
    xi = rng.integers(-1000, 1000, SHAPE).astype(np.int32)
    kept, records = kept_as_fresh(_kernel, (x, xi), numerics=numerics)
    copies = [r[2]["bit_exact"] for r in records if r[1] == "tensor_copy"]
    assert copies[1:7:2] == [True, True, False]  # the calls' own copies
    if numerics:
        np.testing.assert_array_equal(kept[:, 0:8], np.float32(1) / x)
        for i in (1, 2, 3):
            np.testing.assert_array_equal(kept[:, i * 8:(i + 1) * 8], x)
        np.testing.assert_array_equal(kept[:, 40:48], x + x)
        np.testing.assert_array_equal(kept[:, 56:64], xi.astype(np.float32))
        np.testing.assert_array_equal(kept[:, 64:72], (2 * xi).astype(np.float32))


def test_calls_that_differ_are_checked_again():
    def kernel(x):
        a, dst = _tile(), _tile()
        nisa.dma_copy(dst=a, src=x)
        in_psum, ai = _tile(buffer=nl.psum), _tile(nl.int32)
        nisa.tensor_copy(dst=in_psum, src=a)
        vector = nisa.engine.vector
        nisa.tensor_tensor(dst=dst, data1=in_psum, data2=a, op=nl.add)  # kept
        nisa.tensor_tensor(dst=dst, data1=a, data2=a, op=nl.add, engine=vector)  # kept
        bad = [
            (dict(dst=dst, data1=in_psum, data2=in_psum, op=nl.add), "both be in PSUM"),
            (dict(dst=dst, data1=a, data2=a, op=nl.power, engine=vector), "GpSimd"),
            (dict(dst=ai, data1=ai, data2=ai, op=nl.bitwise_and), None),  # kept
            (dict(dst=dst, data1=a, data2=a, op=nl.bitwise_and), "integer dtypes"),
            (dict(dst=_tile(shape=(128, 4)), data1=a, data2=a, op=nl.add), "differ in"),
        ]
        for kw, match in bad:
            if match is None:
                nisa.tensor_tensor(**kw)
                continue
            with pytest.raises(NkiValidationError, match=match):
                nisa.tensor_tensor(**kw)
        nisa.tensor_tensor(dst=dst, data1=a, data2=a, op=nl.power,
                           engine=nisa.engine.gpsimd)  # kept
        with pytest.raises(NkiValidationError, match="GpSimd"):  # the engine
            nisa.tensor_tensor(dst=dst, data1=a, data2=a, op=nl.power,
                               engine=nisa.engine.vector)
        nisa.tensor_copy(dst=dst, src=a)  # kept
        with pytest.raises(NkiValidationError, match="differ in"):
            nisa.tensor_copy(dst=_tile(shape=(128, 4)), src=a)
        nisa.reciprocal(dst=dst, data=a)  # kept
        with pytest.raises(NkiValidationError, match="partitions"):
            nisa.reciprocal(dst=_tile(shape=(64, 8)), data=a)
        return nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)

    trnsim.run_kernel(kernel, (np.ones(SHAPE, np.float32),), numerics=False)


def test_a_check_of_another_chip_is_made_again():
    def kernel(x):
        a, dst = _tile(), _tile()
        nisa.dma_copy(dst=a, src=x)
        nisa.tensor_copy(dst=dst, src=a, engine=nisa.engine.scalar)
        return nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)

    x = np.ones(SHAPE, np.float32)
    trnsim.run_kernel(kernel, (x,), chip="trn2", numerics=False)  # kept for trn2
    with pytest.raises(Exception, match="Scalar Engine of NeuronCore-v2"):
        trnsim.run_kernel(kernel, (x,), chip="trn1", numerics=False)
