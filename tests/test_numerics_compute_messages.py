"""The checks that now format their message only where they raise (isa/reduce.py `_axes`
and the op check of tensor_reduce, isa/activation.py `resolve_reduce_op`,
isa/elementwise.py `_op_in` and `_check_operand_given`): each error, word for word."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError


def _message(body, shape=(128, 4, 8)):
    def kernel(x):
        t = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x)
        body(t)
        return None
    with pytest.raises(NkiValidationError) as e:
        trnsim.run_kernel(kernel, (np.zeros(shape, np.float32),), chip="trn2")
    return e.value.bare_message


def _reduce(axis, op=nl.maximum, dst_shape=(128, 1)):
    def body(t):
        d = nl.ndarray(dst_shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=d, op=op, data=t, axis=axis)
    return body


@pytest.mark.parametrize("axis, message", [
    (5, "axis 5 is out of range for a 3-D data tile"),
    ((2, 2), "axis=(2, 2) repeats an axis"),
    ((0, 1, 2), "axis=(0, 1, 2): axis 0 is the partition axis and cannot be reduced by "
                "tensor_reduce (use nc_transpose, a matmul against ones, or "
                "tensor_partition_reduce)"),
    (1, "axis=1: the reduced axes must be the last contiguous free axes, ending at the "
        "final axis 2 (e.g. (2,) or (1, 2))"),
])
def test_tensor_reduce_axis_messages(axis, message):
    assert _message(_reduce(axis)) == message


def test_tensor_reduce_op_message():
    assert _message(_reduce((1, 2), op=nl.divide)) == (
        "op=divide is not a reduction operator; use one of add, subtract, multiply, "
        "maximum, minimum, abs_max, abs_min, logical_and, logical_or, logical_xor, "
        "bitwise_and, bitwise_or, bitwise_xor")


def test_activation_reduce_op_message():
    def body(t):
        d = nl.ndarray(t.shape, dtype=nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((128, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=d, op=nl.exp, data=t, reduce_op=nl.maximum, reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
    assert _message(body) == ("reduce_op=maximum is not supported by the Scalar Engine "
                              "activation instruction; use nl.add")


def test_op_in_message():
    def body(t):
        d = nl.ndarray(t.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_cumulative(dst=d, src=t, op0=nl.multiply, op1=nl.divide,
                                      imm0=1.0, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    assert _message(body, (128, 8)) == ("op1=divide is not supported by "
                                        "tensor_scalar_cumulative; use nl.add / "
                                        "nl.subtract / nl.multiply / nl.maximum / "
                                        "nl.minimum")


@pytest.mark.parametrize("op, operand, message", [
    (nl.multiply, None, "operand0 is required by the binary operator multiply"),
    (nl.abs, 2.0, "operand0 must be None or 0 with the unary operator abs"),
])
def test_operand_given_messages(op, operand, message):
    def body(t):
        d = nl.ndarray(t.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=d, data=t, op0=op, operand0=operand)
    assert _message(body, (128, 8)) == message
