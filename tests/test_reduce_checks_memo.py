"""tensor_reduce keeps the result of its checks per operand shapes, dtypes, memories and
settings (isa/reduce.py `_CHECKED`), as dma_copy and nc_matmul do: a kept result gives
the record and the values the checks give from scratch, and any call whose operands or
settings differ is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import reduce as reduce_isa
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh

CALLS = [  # (op, axis, negate, keepdims, dst free shape, data free shape)
    (nl.maximum, 1, True, False, (1,), (64,)),
    (nl.add, 1, False, False, (1,), (64,)),
    (np.minimum, (2,), False, True, (4,), (4, 16)),
    ("abs_max", (1, 2), True, False, (1,), (4, 16)),
    (nl.maximum, 1, True, False, (1,), (64,)),  # the first again
]


def _kernel(x, forget):
    out = nl.ndarray((128, len(CALLS)), nl.float32, buffer=nl.shared_hbm)
    for i, (op, axis, negate, keepdims, dshape, shape) in enumerate(CALLS):
        data = nl.ndarray((128,) + shape, nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=data, src=x[:, :int(np.prod(shape))].reshape((128,) + shape))
        dst = nl.ndarray((128,) + dshape, nl.float32, buffer=nl.sbuf)
        if forget:
            reduce_isa._CHECKED.clear()
        nisa.tensor_reduce(dst=dst, op=op, data=data, axis=axis, negate=negate,
                           keepdims=keepdims)
        nisa.dma_copy(dst=out[:, i:i + 1], src=dst.reshape((128, -1))[:, 0:1])
    return out


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(chip):
    x = np.random.default_rng(1).standard_normal((128, 64)).astype(np.float32)
    kept, records = kept_as_fresh(_kernel, (x,), chip=chip)
    np.testing.assert_array_equal(kept[:, 0], -x.max(axis=1))
    attrs = [r[2] for r in records if r[1] == "tensor_reduce"]
    assert len(attrs) == len(CALLS)
    assert attrs[0] == attrs[-1] and attrs[0] is not attrs[-1]


def test_calls_that_differ_are_checked_again():
    def kernel(x):
        data = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=data, src=x)
        dst = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=dst, op=nl.maximum, data=data, axis=1)  # kept: valid
        for bad, match in ((dict(op=nl.maximum, axis=0), "partition axis"),
                           (dict(op=nl.bitwise_or, axis=1), "integer data"),
                           (dict(op=nl.maximum, axis=[1, 1]), "repeats an axis")):
            with pytest.raises(NkiValidationError, match=match):
                nisa.tensor_reduce(dst=dst, data=data, **bad)
        wide = nl.ndarray((128, 2), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="elements per partition"):
            nisa.tensor_reduce(dst=wide, op=nl.maximum, data=data, axis=1)
        return None

    trnsim.run_kernel(kernel, (np.zeros((128, 64), np.float32),))
