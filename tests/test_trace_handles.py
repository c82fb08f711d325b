"""trnsim.isa.without_handles (the instruction calls the legacy front end makes) against
the handle-returning trnsim.isa functions: the same record, the same dtype check, no
handle."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
import trnsim.nki.language as nl
from trnsim import isa
from trnsim.isa.misc import NkiInstruction


def _record(api):
    handles = []

    def k(x):
        t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        handles.append(api.dma_copy(dst=t, src=x))
        handles.append(api.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0))
        handles.append(api.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0,
                                         dtype=nl.float32))  # redundant, accepted
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
        handles.append(api.dma_copy(dst=out, src=t))
        return out

    out, run = trnsim.run_kernel(k, (np.arange(256, dtype=np.float32).reshape(128, 2),),
                                 chip="trn2")
    return out, run.program.instructions, handles


def _fields(ins):
    return (ins.index, ins.core, ins.engine, ins.opcode, ins.reads, ins.writes, ins.attrs)


def test_same_record_and_values_without_the_handle():
    out, record, handles = _record(isa)
    out_free, record_free, handles_free = _record(isa.without_handles)
    assert [_fields(i) for i in record_free] == [_fields(i) for i in record]
    np.testing.assert_array_equal(out_free, out)
    np.testing.assert_array_equal(out, np.arange(256).reshape(128, 2) * 2 + 1)
    assert all(isinstance(h, NkiInstruction) for h in handles)
    assert [h.handle for h in handles] == list(record)
    assert handles_free == [None] * 4


def test_redundant_dtype_checked_the_same_way():
    def k(api, x):
        t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        api.dma_copy(dst=t, src=x)
        api.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0, dtype="not a dtype")

    x = np.zeros((128, 2), np.float32)
    messages = []
    for api in (isa, isa.without_handles):
        with pytest.raises(Exception) as e:
            trnsim.run_kernel(lambda x: k(api, x), (x,), chip="trn2")
        messages.append((type(e.value), str(e.value)))
    assert messages[0] == messages[1]
    assert "dtype=" in messages[0][1]
