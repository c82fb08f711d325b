"""A loop copier's layout (machine/expand_copy.py `Layout`) read off its plan's
structure keys equals the one read off the template's instructions, and a layout keeps
one copy's positions apart from its blocks'."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand_copy
from trnsim.machine.runtime import Run

from test_expand import _run
from test_lazycopy_operands import KERNELS


@nki.jit
def placed_tiles(x):
    """An explicitly placed tile declared in each iteration."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for j in nl.affine_range(x.shape[1] // 8):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf, address=4096)
        nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=t)
    return out


CASES = {**KERNELS,
         "placed": (placed_tiles, lambda: (np.zeros((128, 8 * 300), np.float32),))}


def _copiers(monkeypatch, name) -> list:
    """(layout, template instructions, template allocations) of each Copier made while
    `name` records."""
    seen = []
    real = expand_copy.Copier.__init__

    def init(self, run, plan, layout=None):
        real(self, run, plan, layout)
        _, _, a_start, a_stop, _, _ = plan.template
        allocs = [run.program.allocations[i] for i in range(a_start, a_stop)]
        seen.append((self.layout, list(self.templates), allocs))
    monkeypatch.setattr(expand_copy.Copier, "__init__", init)
    monkeypatch.setattr(Run, "compile", lambda self: None)
    kernel, args = CASES[name]
    _run(kernel, *args())
    assert seen
    return seen


@pytest.mark.parametrize("name", list(CASES))
def test_a_layout_read_off_the_structure_is_the_instructions_one(monkeypatch, name):
    for layout, tmpl, allocs in _copiers(monkeypatch, name):
        n_ops = np.array([len(t.reads) + len(t.writes) for t in tmpl], dtype=np.int64)
        assert layout.width == len(tmpl)
        assert layout.index_cols.tolist() == (np.array(layout.starts) + 6 * n_ops).tolist()
        first = (np.cumsum(n_ops) - n_ops).tolist()
        loads = [first[b] for b, t in enumerate(tmpl) if t.engine == "dma"
                 and t.opcode == "dma_copy" and len(t.reads) == len(t.writes) == 1
                 and t.reads[0].space == "hbm" and t.writes[0].space == "sbuf"]
        among = {k: j for j, k in enumerate(layout.moving_at)}
        if len(tmpl) >= expand_copy._WIDE:  # (hoisting peeks at a wide one's copies)
            loads = []
        assert layout.load_sources == [among[k] for k in loads if k in among]
        owner = np.repeat(np.arange(len(tmpl)), n_ops)[layout.moving_at]
        dma = np.array([tmpl[b].engine == "dma" for b in owner.tolist()], dtype=bool)
        partitions_move = layout.moves[layout.moving[:, 1:3]].any(axis=1)
        assert layout.lazy == (bool(layout.moving_at) and not (dma & partitions_move).any()
                               and len(layout.load_sources) == len(loads))
        assert layout.explicit.tolist() == [al.explicit for al in allocs]
        assert layout.any_explicit == any(al.explicit for al in allocs)
    if name == "placed":
        assert layout.any_explicit


def test_one_copys_positions_are_kept_apart_from_a_blocks(monkeypatch):
    (layout, _, _), *_ = _copiers(monkeypatch, "affine")
    block = layout.positions(6)
    one = layout.positions(1)
    assert layout.positions(6) is block and layout.positions(1) is one
    for (side, where, sources, taken), (side1, where1, sources1, taken1) in zip(block, one):
        # (copy 0 of a block: its first positions, its sources counted for 6 copies)
        k = len(where1)
        m = len(layout.moving)
        assert (side1, where1, taken, taken1) == (side, where[:k], None, None)
        for col, col1 in zip(sources, sources1):
            assert [j if j < m else j - 5 * m for j in col[:k]] == col1
    assert layout.positions(3, keep=False) == layout._positions_of(3, None)
    assert layout.positions(6) is block  # (not replaced by what it was not to keep)
