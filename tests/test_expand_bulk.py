"""Loop expansion's bulk copies (machine/expand.py, _Copier): copies whose integer
attributes move with the iteration get attrs of their own, the others share the
template's; the record stays that of a full run."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand_plan
from test_expand import _both, _record, _run, _stats, indexed_tiles, tiled_matmul


@nki.jit
def prioritized(x):
    """Each iteration's load has a DMA priority that cycles with the iteration."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for j in nl.affine_range(x.shape[1] // 8):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8], priority=j % 4)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=t, priority=1)
    return out


def test_copies_with_moving_attributes_match_the_full_run(monkeypatch):
    x = np.ones((128, 8 * 40), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(prioritized, x, chip="trn3"))
    assert _stats(fast).loops == 1 and _stats(fast).fallbacks == 0
    loads = fast.program.instructions[0::2]
    assert [i.attrs["priority"] for i in loads] == [j % 4 for j in range(40)]
    stores = fast.program.instructions[1::2]
    assert len({id(i.attrs) for i in stores}) < len(stores)  # shared where they are equal


@nki.jit
def uneven_middle(x):
    """Three loops; the middle one's last two iterations add a copy its samples never
    made, so it falls back (the record is cut back and its iterations run again) while
    the outer loop samples and expands over it."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for a in nl.affine_range(8):
        for b in nl.affine_range(12):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            for c in nl.affine_range(16):
                col = ((a * 12 + b) * 16 + c) % (x.shape[1] // 8) * 8
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])
            if b >= 10:
                nisa.dma_copy(dst=out[:, a * 8:a * 8 + 8], src=t)
    return out


def test_outer_snapshots_over_a_fallen_back_loop_match_the_full_run(monkeypatch):
    x = np.ones((128, 8 * 64), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(uneven_middle, x))
    st = _stats(fast)
    assert st.fallbacks >= 1 and st.loops >= 1


@nki.jit
def fixed_operand(x, w):
    """Each iteration adds a tile made before the loop to its own tile: one read moves
    with the iteration, the other stays the template's."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    fixed = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=fixed, src=w)
    for j in nl.affine_range(x.shape[1] // 8):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
        nisa.tensor_tensor(dst=t, data1=t, data2=fixed, op=nl.add)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=t)
    return out


@pytest.mark.parametrize("iterations", [20, 80])  # (blocks of fewer copies than
def test_copies_of_moving_and_fixed_reads_match_the_full_run(monkeypatch, iterations):
    # expand_copy._BY_COLUMN rebuild their reads tuple by tuple, larger ones by column)
    x = np.ones((128, 8 * iterations), np.float32)
    w = np.ones((128, 8), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(fixed_operand, x, w))
    st = _stats(fast)
    assert (st.loops, st.fallbacks, st.iterations) == (1, 0, iterations - 6)
    adds = [i for i in fast.program.instructions if i.opcode == "tensor_tensor"]
    assert len(adds) == iterations
    assert len({i.reads[0] for i in adds}) == iterations  # each iteration's own tile
    assert len({i.reads[1] for i in adds}) == 1  # the fixed one


@pytest.mark.parametrize("copies", [1, 7])  # (an iteration, or two, per block)
def test_copies_made_a_few_iterations_at_a_time_match_the_full_run(monkeypatch, copies):
    # blocks of expand_plan._COPIES instructions: the lists the body grows, the blocks
    # the outer loops' snapshots take, the last (shorter) block of an expansion
    x = np.ones((128, 8 * 20), np.float32)
    w = np.ones((128, 8), np.float32)
    whole = _run(fixed_operand, x, w)
    monkeypatch.setattr(expand_plan, "_COPIES", copies)
    full, fast = _both(monkeypatch, lambda: _run(fixed_operand, x, w))
    assert _record(fast) == _record(whole)
    assert _stats(fast).iterations == 14
    full, fast = _both(monkeypatch, lambda: _run(indexed_tiles, np.ones((128, 128), np.float32)))
    assert _stats(fast).iterations == 20  # (the first loop grows `tiles` block by block)
    lhsT, rhs = np.ones((2048, 256), np.float32), np.ones((2048, 4096), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(tiled_matmul, lhsT, rhs))
    st = _stats(fast)
    assert st.loops >= 2 and st.fallbacks == 0 and st.instructions > len(full.program) // 2
