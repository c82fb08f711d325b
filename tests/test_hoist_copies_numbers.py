"""Hoisting's reading of a block of loop copies (trnsim/compiler/hoist.py): the numbers
`_copies_numbers` gives per copy of a line's loads (source lo, hi and alloc,
destination alloc, taken field by field off the block's numbers) are those the copies'
own operands hold, and `_each_moves` tells whether each load reads other bytes than the
one before it as a row-by-row comparison does."""
from __future__ import annotations

from collections import Counter

import ml_dtypes
import numpy as np
import pytest

from trnsim.compiler import hoist
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.machine.runtime import Run

from test_comp4_hoist import _numbers_one_by_one  # (by its definition, element by element)


def _recorded(monkeypatch, variant):
    """A matmul tutorial step as recorded (expanded, not compiled)."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    fn = load_example("legacy/matmul_tutorial").VARIANTS[variant].fn
    bf16 = ml_dtypes.bfloat16
    return run_legacy(fn, (np.zeros((4096, 512), bf16), np.zeros((4096, 2048), bf16)),
                      {}, chip="trn1", numerics=False)[1].program


def test_the_copies_numbers_are_their_own_operands(monkeypatch):
    program = _recorded(monkeypatch, "tiled")
    instrs = program.instructions
    held = [b for b in program.copied if b.held_by(instrs)]
    copies = Counter()
    for b in held:
        copies[b.template.start, len(b.template.reads)] += b.copies
    lines_of = hoist._TemplateLines(instrs, held).of
    rows = 0
    for b in hoist._joined(held, copies):
        w = len(b.template.reads)
        for where, places, template, _ in lines_of(b.template.start, w).values():
            numbers = hoist._copies_numbers(b, places, template)
            at = (b.start + np.arange(b.copies)[:, None] * w + where).ravel()
            assert numbers.shape == (len(at), 4)
            for k, row in zip(at.tolist(), numbers.tolist()):
                src, dst = hoist._ends(instrs[k].reads, instrs[k].writes)
                assert src.alloc < 0  # (HBM sources: their lo and hi absolute)
                assert row == [src.lo, src.hi, src.alloc, dst.alloc]
            rows += len(at)
    assert rows >= 64  # (blocks whose loads move were read)


@pytest.mark.parametrize("bounds", [
    [(0, 8), (8, 16), (16, 24)],  # each moves
    [(0, 8), (0, 8), (16, 24)],  # a repeat
    [(0, 8), (0, 9), (1, 9)],  # one of lo and hi moves
    [(0, 8), (16, 24), (0, 8)],  # back to earlier bytes: not a repeat of the one before
    [(5, 6)],
])
def test_each_moves_is_the_rowwise_comparison(bounds):
    numbers = np.array([(lo, hi, -1, 3) for lo, hi in bounds], np.int64)
    expected = all(bounds[k] != bounds[k - 1] for k in range(1, len(bounds)))
    assert hoist._each_moves(numbers) is expected


@pytest.mark.parametrize("kept", [
    [0, 1, 2, 3, 4],  # every field kept
    [0, 1, 2, 3, -1],  # allocs do not move
    [-1, -1, 0, -1, 1],  # hi does not move
    [0, 1, -1, -1, -1],  # none of the fields read moves
])
@pytest.mark.parametrize("places", [
    [(1, 2), (5, 7)],  # every operand moves
    [(1, 2), (3, 7), (9, 8)],  # a source that does not move, a load none of whose do
    [(0, 9)],
])
def test_the_copies_numbers_where_some_do_not_move(kept, places):
    """Rows and fields that move in some rows only, or in none: the template's value
    where they do not (the filling the whole-column gathers skip)."""
    class Template:
        moving = np.array([1, 2, 5, 7])

    Template.kept = np.array(kept)
    copies = 3
    rng = np.random.default_rng(0)
    numbers = rng.integers(0, 1000, (copies * len(Template.moving) + 2, 5))

    class Block:
        template = Template

    Block.copies, Block.numbers = copies, numbers
    places = np.array(places, np.int64)
    template = -rng.integers(1, 1000, (len(places), 4))
    got = hoist._copies_numbers(Block, places, template)
    assert got.tolist() == _numbers_one_by_one(Block, places, template).tolist()
