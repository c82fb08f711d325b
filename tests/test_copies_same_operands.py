"""Loop expansion's copies share one Access among a copy's equal moving operands
(machine/expand_copy.py, Layout.same_operands): records as plain tracing makes them."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand_copy

from test_expand import _both, _run, _stats


@nki.jit
def tile_read_in_an_inner_loop(x):
    """Each outer iteration loads a tile and reads it four times in every inner
    iteration: the outer loop's template holds the inner loop's copies, whose reads of
    the tile are equal and move with the outer iteration."""
    out = nl.ndarray((128, 128), nl.float32, buffer=nl.hbm)
    for i in nl.affine_range(16):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, i * 8:i * 8 + 8])
        for j in nl.affine_range(64):
            o = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=o, data1=t, data2=t, op=nl.add)
            nisa.tensor_tensor(dst=o, data1=t, data2=t, op=nl.multiply)
        nisa.dma_copy(dst=out[:, i * 8:i * 8 + 8], src=t)
    return out


def test_equal_operands_of_a_copy_are_one_access_and_the_record_is_unchanged(monkeypatch):
    x = np.ones((128, 128), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(tile_read_in_an_inner_loop, x))
    assert _stats(fast).instructions > len(full.program) // 2
    reads = [a for ins in fast.program.instructions if ins.opcode == "tensor_tensor"
             for a in ins.reads]
    copied = reads[-512:-256]  # the outer iteration before the last (which runs), a copy
    assert len(set(map(id, copied))) == len(set(copied)) == 2  # (data1, data2)
    assert reads == [a for ins in full.program.instructions if ins.opcode == "tensor_tensor"
                     for a in ins.reads]


def test_kinds_of_rows():
    key = np.array([[1, 5, 7], [2, 5, 7], [1, 5, 7], [2, 5, 7], [1, 5, 7], [1, 5, 8]],
                   np.int64)
    first, kind = expand_copy._kinds(key)
    assert (key[first][kind] == key).all()
    assert sorted(first.tolist()) == [0, 1, 5]
    assert kind[0] == kind[2] == kind[4] and kind[1] == kind[3]
    assert len(set(kind.tolist())) == 3
    assert expand_copy._kinds(np.arange(12, dtype=np.int64).reshape(4, 3)) == (None, None)


def test_kinds_of_rows_whose_differences_cancel_under_column_weights():
    """Rows (3, 5) and (5, 4) differ by (2, -1): a mix weighing columns 1, 2, 3, ...
    times one constant gave both one value, and the block no kinds at all."""
    key = np.array([[3, 5], [5, 4]] * 4, np.int64)
    first, kind = expand_copy._kinds(key)
    assert first is not None
    assert sorted(first.tolist()) == [0, 1]
    assert kind.tolist() == [kind[0], kind[1]] * 4 and kind[0] != kind[1]
