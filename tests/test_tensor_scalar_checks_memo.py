"""tensor_scalar keeps the result of its checks per operand shapes, dtypes, memories,
operators, constants and engine (isa/elementwise.py `_SCALAR_CHECKED`): a kept result
gives the record (its reads of [P, 1] operand tiles included) and the values that the
checks give from scratch, and any call that differs is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import elementwise
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh


def _calls(col):
    """(dtype, keyword arguments) of each call; `col` a [128, 1] fp32 tile."""
    return [
        (nl.float32, dict(op0=nl.multiply, operand0=1.5)),
        (nl.float32, dict(op0=nl.multiply, operand0=1.5)),  # kept
        (nl.float32, dict(op0=nl.multiply, operand0=2.5)),  # another constant
        (nl.float32, dict(op0=nl.subtract, operand0=col, reverse0=True)),
        (nl.float32, dict(op0=nl.subtract, operand0=col, reverse0=True)),  # kept, reads col
        (nl.float32, dict(op0=nl.add, operand0=col, op1=nl.maximum, operand1=0.0)),
        (nl.float32, dict(op0="abs", operand0=None)),
        (nl.float32, dict(op0=nl.multiply, operand0=0.5, engine=nisa.engine.scalar)),
        (nl.int32, dict(op0=nl.add, operand0=3)),  # exact integer arithmetic
        (nl.int32, dict(op0=nl.add, operand0=3.0)),  # integral: the same
        (nl.int32, dict(op0=nl.add, operand0=3.5)),  # through fp32
        (nl.int32, dict(op0=nl.bitwise_and, operand0=6)),
    ]


def _kernel(x, forget):
    n = len(_calls(None))
    out = nl.ndarray((128, n * 8), nl.float32, buffer=nl.shared_hbm)
    col = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=col, src=x[:, 0:1])
    for i, (dtype, kw) in enumerate(_calls(col)):
        data = nl.ndarray((128, 8), dtype, buffer=nl.sbuf)
        nisa.tensor_copy(dst=data, src=_loaded(x))
        dst = nl.ndarray((128, 8), dtype, buffer=nl.sbuf)
        if forget:
            elementwise._SCALAR_CHECKED.clear()
        nisa.tensor_scalar(dst=dst, data=data, **kw)
        res = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=res, src=dst)
        nisa.dma_copy(dst=out[:, i * 8:(i + 1) * 8], src=res)
    return out


def _loaded(x):
    t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x[:, 0:8])
    return t


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(chip):
    x = (np.random.default_rng(2).standard_normal((128, 8)) * 20).astype(np.float32)
    kept, records = kept_as_fresh(_kernel, (x,), chip=chip)
    np.testing.assert_array_equal(kept[:, 8:16], x * np.float32(1.5))
    scalar = [r for r in records if r[2].get("op0") is not None]
    assert len(scalar) == len(_calls(None))
    assert [r[2]["int_exact"] for r in scalar[8:]] == [True, True, False, True]
    assert [len(r[3]) for r in scalar[3:5]] == [2, 2]  # the [P, 1] tile read each time


def test_calls_that_differ_are_checked_again():
    def kernel(x):
        data = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=data, src=x)
        dst = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=dst, data=data, op0=nl.multiply, operand0=2.0)  # kept
        nisa.tensor_scalar(dst=dst, data=data, op0=nl.maximum, operand0=0.0)  # (vector)
        with pytest.raises(NkiValidationError, match="Scalar Engine"):  # (trn2: v3)
            nisa.tensor_scalar(dst=dst, data=data, op0=nl.maximum, operand0=0.0,
                               engine=nisa.engine.scalar)
        for bad, match in ((dict(op0=nl.multiply, operand0=None), "required"),
                           (dict(op0="abs", operand0=2.0), "None or 0"),
                           (dict(op0=nl.bitwise_and, operand0=2), "integer dtypes"),
                           (dict(op0=nl.multiply, operand0=2.0, operand1=1.0),
                            "operand1 must be None"),
                           (dict(op0=nl.multiply, operand0="2"), "number")):
            with pytest.raises(NkiValidationError, match=match):
                nisa.tensor_scalar(dst=dst, data=data, **bad)
        wide = nl.ndarray((128, 16), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="elements per partition"):
            nisa.tensor_scalar(dst=wide, data=data, op0=nl.multiply, operand0=2.0)
        return None

    trnsim.run_kernel(kernel, (np.zeros((128, 8), np.float32),))
