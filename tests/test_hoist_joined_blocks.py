"""Hoisting (trnsim/compiler/hoist.py) looks at a run of blocks of copies of one
template that follow one another as one block (`_joined`: the matmul tutorial's outer
loops append their copies one block each): the program it gives is the one it gives
visiting every instruction, and its visits are no more than those of the blocks looked
at one by one."""
from __future__ import annotations

from collections import Counter

import ml_dtypes
import numpy as np
import pytest

from benchmarks import fidelity
from trnsim.compiler import hoist
from trnsim.legacy import jit as legacy_jit
from trnsim.machine.runtime import Run

SHAPE = (8192, 4096, 1024)  # (K, M, N): outer loops whose copies come a block each


def _recorded(monkeypatch, variant):
    """The tutorial step's program as recorded (expanded, not compiled)."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    K, M, N = SHAPE
    kernel = fidelity._legacy_tutorial().VARIANTS[variant]
    args = (np.zeros((K, M), ml_dtypes.bfloat16), np.zeros((K, N), ml_dtypes.bfloat16))
    return legacy_jit.run_legacy(kernel.fn, args, {}, chip="trn1", numerics=False)[1].program


def _described(program):
    return [(i.index, i.opcode, i.reads, i.writes, sorted(i.attrs.items(), key=str))
            for i in program.instructions], program.fences


def _looked_at(program):
    held = [b for b in program.copied if b.held_by(program.instructions)]
    copies = Counter()
    for b in held:
        copies[b.template.start, len(b.template.reads)] += b.copies
    return held, copies


@pytest.mark.parametrize("variant", ["tiled", "hoisted"])
def test_joined_blocks_hoist_as_visiting_every_copy(monkeypatch, variant):
    by_blocks = _recorded(monkeypatch, variant)
    held, copies = _looked_at(by_blocks)
    joined = hoist._joined(held, copies)
    one_by_one = [b for b in held if b.copies * len(b.template.reads) >= hoist._MANY
                  and copies[b.template.start, len(b.template.reads)] >= hoist._FEW_COPIES]
    assert len(joined) < len(one_by_one)  # (some blocks were joined)
    for b in joined:  # a joined block's copies: those of the blocks it joins, in order
        parts = [o for o in one_by_one if b.start <= o.start and o.stop <= b.stop]
        assert sum(o.copies for o in parts) == b.copies
        assert parts[0].start == b.start and parts[-1].last is b.last
        assert (b.numbers == np.concatenate([o.numbers for o in parts])).all()
    visited = list(hoist._visited(by_blocks.copied, by_blocks.instructions,
                                  by_blocks.allocations, {}))
    monkeypatch.setattr(hoist, "_joined", lambda held, copies: one_by_one)
    apart = list(hoist._visited(by_blocks.copied, by_blocks.instructions,
                                by_blocks.allocations, {}))
    assert len(visited) < len(apart) < len(by_blocks.instructions)
    assert {id(i) for i in visited} <= {id(i) for i in apart}
    monkeypatch.undo()
    every = _recorded(monkeypatch, variant)
    every.copied = []
    hoisted, reference = (hoist.hoist_invariant_loads(p) for p in (by_blocks, every))
    assert _described(hoisted) == _described(reference)
