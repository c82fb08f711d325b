"""Loop expansion's two ways of making the moving operands of its copies
(machine/expand_copy.py): operand by operand for large blocks (`Operands._by_operand`),
in record order for small ones (`Operands._in_record_order`). Both give the record of a
full run; the first shares one int object among the copies of a byte bound that keeps
its value (each iteration's own tile: the copies of its allocation share its virtual
address), and an allocation's declaration point with the instruction it precedes. The
loops' models kept after the kernel returns hold no positions nor sampled rows."""
from __future__ import annotations

import numpy as np

from benchmarks.fidelity import strided_stores
from trnsim.machine import expand_copy
from trnsim.machine.runtime import Run
from test_expand import _both, _record, _run, _stats

ITERATIONS = 80


def _expanded(monkeypatch):
    x = np.ones((128, 8 * ITERATIONS), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(strided_stores, x))
    st = _stats(fast)
    assert (st.loops, st.fallbacks, st.iterations) == (1, 0, ITERATIONS - 6)
    return fast


def test_both_ways_of_copying_give_the_full_run(monkeypatch):
    by_operand = _expanded(monkeypatch)  # (74 copies of 6 moving operands: by operand)
    monkeypatch.setattr(expand_copy, "_BY_COLUMN", 10 ** 9)
    in_record_order = _expanded(monkeypatch)
    assert _record(by_operand) == _record(in_record_order)


def test_copies_share_the_bounds_that_keep_their_value(monkeypatch):
    monkeypatch.setattr(Run, "compile", lambda self: None)  # (the record's virtual bounds)
    run = _run(strided_stores, np.ones((128, 8 * ITERATIONS), np.float32))
    assert _stats(run).iterations == ITERATIONS - 6
    scales = run.program.instructions[1::3]
    copies = scales[5:-1]  # (iterations 0 and 1..4 sampled, the last one run for real)
    tile = run.program.allocations[copies[0].reads[0].alloc]
    assert [i.reads[0].lo for i in copies] == [tile.vaddr] * len(copies)
    assert [i.writes[0].hi - i.writes[0].lo for i in copies] == [32] * len(copies)
    shared = copies[expand_copy._SINGLES:]  # (the first copies read are made alone:
    # expand_copy._PendingOperands)
    for bound in ("lo", "hi"):
        for side in ("reads", "writes"):
            assert len({id(getattr(getattr(i, side)[0], bound)) for i in shared}) == 1
    assert len({i.reads[0].alloc for i in copies}) == len(copies)  # each its own tile
    loads = run.program.instructions[0::3]
    assert [i.reads[0].lo for i in loads] == [32 * j for j in range(ITERATIONS)]


def test_copies_share_their_declaration_points_with_the_instructions(monkeypatch):
    """An allocation declared just before an instruction has that instruction's index
    as its declared_at: a large block's copies share the int object
    (`Copier._declared`)."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    # (as objects: larger blocks keep them as columns, machine/allocations.py)
    monkeypatch.setattr(expand_copy, "_ALLOCATION_COLUMNS", 10 ** 9)
    iterations = expand_copy._SHARED_DECLARATIONS + 50  # (one block of copies)
    x = np.ones((128, 8 * iterations), np.float32)
    run = _run(strided_stores, x)
    p = run.program
    copied = range(5, iterations - 1)
    for at in (0, 1):  # t before its load, u before the scaling
        made = [p.instructions[3 * j + at] for j in copied]
        tiles = [p.allocations[i.writes[0].alloc] for i in made]
        assert [t.declared_at for t in tiles] == [i.index for i in made]
        assert all(t.declared_at is i.index for t, i in zip(tiles, made))
    monkeypatch.setattr(expand_copy, "_SHARED_DECLARATIONS", 10 ** 9)
    assert _record(run) == _record(_run(strided_stores, x))  # (each its own int)


def test_models_kept_after_the_kernel_hold_neither_positions_nor_samples(monkeypatch):
    """A small block's positions (`Layout.positions`, lists as long as its copies) are
    kept while the kernel runs, not with the loop's model after it returns; the model's
    drift is an array of its own, not a row of the sampled iterations' differences."""
    x = np.ones((128, 8 * 20), np.float32)  # (14 copies: one small block)
    kept = []
    real = expand_copy.Layout.positions

    def positions(self, n, same=None, keep=True):
        kept.append(self)
        return real(self, n, same, keep)
    monkeypatch.setattr(expand_copy.Layout, "positions", positions)
    _, fast = _both(monkeypatch, lambda: _run(strided_stores, x))
    (_, drift, layout), = _stats(fast).known.values()
    assert kept and all(k is layout for k in kept)
    assert layout._positions is None
    assert drift.base is None and drift.shape == layout.moves.shape
