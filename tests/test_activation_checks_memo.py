"""activation keeps the result of its checks per operand shapes, dtypes, memories,
function, constants and reduce settings (isa/activation.py `_ACTIVATION_CHECKED`): a
kept result gives the record (its reads of scale and bias tiles included) and the values
that the checks give from scratch, and any call that differs is checked again."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa.activation import _ACTIVATION_CHECKED
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import kept_as_fresh


def _calls(col):
    """The keyword arguments of each call; `col` a [128, 1] fp32 tile."""
    add = dict(reduce_op=nl.add, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    return [
        dict(op=nl.exp, bias=col, scale=1.0, **add),
        dict(op=nl.exp, bias=col, scale=1.0, **add),  # kept, reads col again
        dict(op=nl.exp, bias=col, scale=0.5, **add),  # another constant
        dict(op=nl.exp, bias=None, scale=col),
        dict(op=nl.exp, bias=None, scale=col),  # kept
        dict(op=nl.tanh, bias=col, scale=2.0),
        dict(op=nl.exp, bias=col, scale=1.0, reduce_op=nl.add,
             reduce_cmd=nisa.reduce_cmd.reduce),  # folds onto the registers
    ]


def _kernel(x, forget):
    n = len(_calls(None))
    out = nl.ndarray((128, n * 9), nl.float32, buffer=nl.shared_hbm)
    col = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=col, src=x[:, 0:1])
    for i, kw in enumerate(_calls(col)):
        data = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=data, src=x[:, 0:8])
        dst = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        res = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        if forget:
            _ACTIVATION_CHECKED.clear()
        nisa.activation(dst=dst, data=data, reduce_res=res, **kw)
        nisa.dma_copy(dst=out[:, i * 9:i * 9 + 8], src=dst)
        nisa.dma_copy(dst=out[:, i * 9 + 8:i * 9 + 9], src=res)
    return out


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_kept_checks_give_the_record_and_values_of_fresh_ones(chip):
    x = np.random.default_rng(3).standard_normal((128, 8)).astype(np.float32)
    kept, records = kept_as_fresh(_kernel, (x,), chip=chip)
    np.testing.assert_allclose(kept[:, 0:8], np.exp(x + x[:, 0:1]), rtol=1e-6)
    acts = [r for r in records if r[1] == "activation"]
    assert len(acts) == len(_calls(None))
    assert [len(r[3]) for r in acts[:5]] == [2, 2, 2, 2, 2]  # data and the [P, 1] tile


def test_calls_that_differ_are_checked_again():
    def kernel(x):
        data = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=data, src=x)
        dst = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        col16 = nl.ndarray((128, 1), nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(col16, 1.0)
        nisa.activation(dst=dst, op=nl.exp, data=data, bias=col16)  # kept
        nisa.activation(dst=dst, op=nl.exp, data=data, bias=0.5)  # kept on trn2
        for bad, match in ((dict(op=nl.exp, scale=col16), "float32"),
                           (dict(op=nl.exp, bias=0.5, reduce_op=nl.add,
                                 reduce_cmd=nisa.reduce_cmd.load_reduce), "load_reduce"),
                           (dict(op=nl.exp, bias=0.5, reduce_op=nl.maximum,
                                 reduce_cmd=nisa.reduce_cmd.reset_reduce), "not supported"),
                           (dict(op="no_such_function", bias=0.5), "no_such_function")):
            with pytest.raises(NkiValidationError, match=match):
                nisa.activation(dst=dst, data=data, **bad)
        wide = nl.ndarray((128, 16), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="elements"):
            nisa.activation(dst=wide, op=nl.exp, data=data, bias=col16)
        return None

    trnsim.run_kernel(kernel, (np.zeros((128, 8), np.float32),), chip="trn2")
    trnsim.run_kernel(lambda x: kernel_trn1(x), (np.zeros((128, 8), np.float32),),
                      chip="trn1")


def kernel_trn1(x):
    """The constant bias kept on trn2 is checked again on trn1 (NeuronCore-v2: a bias
    must be a tile)."""
    data = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=data, src=x)
    dst = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    with pytest.raises(NkiValidationError, match="constant bias"):
        nisa.activation(dst=dst, op=nl.exp, data=data, bias=0.5)
    return None
