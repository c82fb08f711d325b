"""The compiled allocation takes over a block of loop copies whose operands are not
made yet, all of which it moves, by giving the block's class its pending move
(compiler/compiled_allocation.py `_PendingMove.take_blocks`), not each copy another
class: the copies keep their class, a read makes their physical accesses as an
_Unplaced's, and the allocated program equals the one made from copies made at once,
however it is read; the move and the blocks let go once every copy is made or dead."""
from __future__ import annotations

import gc
import pickle

import pytest

from trnsim.compiler.compiled_allocation import _Unplaced
from trnsim.machine import compiled, expand_copy
from trnsim.machine.record import Instruction, _Deferred

from test_lazycopy_operands import _recorded

pytest.importorskip("numba")


def _noted(monkeypatch) -> list:
    """The pending operands of the blocks recorded from now on."""
    made = []
    copies = expand_copy._PendingOperands.copies

    def noted(pending, fields):
        made.append(pending)
        return copies(pending, fields)
    monkeypatch.setattr(expand_copy._PendingOperands, "copies", noted)
    return made


def _compiled(monkeypatch, name: str, lazy: bool = True):
    monkeypatch.setenv(compiled.ENV, "1")
    return _recorded(monkeypatch, name, lazy, compile_it=True).program


def _blocks(instrs) -> dict:
    """The copies of each block class among `instrs`, by class."""
    out = {}
    for ins in instrs:
        if isinstance(ins, _Deferred):
            out.setdefault(type(ins), []).append(ins)
    return out


@pytest.mark.parametrize("name", ["affine", "periodic", "matmul", "same_operands"])
def test_whole_blocks_keep_their_class_and_read_as_the_eager_program(monkeypatch, name):
    eager = _compiled(monkeypatch, name, lazy=False)
    made = _noted(monkeypatch)
    lazy = _compiled(monkeypatch, name)
    blocks = _blocks(lazy.instructions)
    assert blocks
    moves = {cls._pending for cls in blocks}
    assert len(moves) == 1  # (the program's move, none of the blocks' own)
    move = moves.pop()
    assert all(cls in move.classes and cls.__del__ == move.let_go for cls in blocks)
    taken = sum(map(len, blocks.values()))
    assert taken == sum(count for block, count in move.deferred
                        if block.deferred in blocks)
    # (every other instruction it moves is an _Unplaced of its own)
    assert all(type(i) is Instruction or isinstance(i, (_Unplaced, _Deferred))
               for i in lazy.instructions)
    assert pickle.dumps(lazy.instructions) == pickle.dumps(eager.instructions)
    assert not _blocks(lazy.instructions) and not move.deferred
    # (each block counted each copy down once: given back by it, not by the move too)
    assert all(p.live == 0 for p in made)


@pytest.mark.parametrize("name", ["affine", "matmul"])
def test_taken_copies_read_one_by_one_some_dying_first(monkeypatch, name):
    """The program's list changed: each taken copy is made alone when read (virtual,
    then physical), as the eager one; the others die unread; the move and every block
    let go at the last."""
    eager = {i.index: (i.reads, i.writes) for i in
             _compiled(monkeypatch, name, lazy=False).instructions}
    made = _noted(monkeypatch)
    gc.collect()
    gc.disable()
    try:
        lazy = _compiled(monkeypatch, name)
        instrs = lazy.instructions[::-1]  # (not where the pass left them)
        del lazy
        blocks = _blocks(instrs)
        move = next(iter(blocks))._pending
        read = [mine[k] for mine in blocks.values() for k in (0, len(mine) // 2)]
        del blocks
        got = {i.index: (i.reads, i.writes) for i in read}
        assert got == {k: eager[k] for k in got}
        assert move.rows is not None and all(type(i) is Instruction for i in read)
        del instrs, read
        assert move.rows is None and not move.deferred
        assert all(p.live == 0 and p.nums is None for p in made)
    finally:
        gc.enable()


@pytest.mark.parametrize("elsewhere", [False, True])
def test_a_block_is_taken_where_the_move_holds_all_its_copies_not_made(monkeypatch,
                                                                        elsewhere):
    """Each block's first copy read before the allocation (made alone): the block is
    taken all the same, its other copies all moved; one of its copies not made held
    elsewhere too (counted as such), it is not, and those the move holds become
    _Unplaced. Either way the program reads as the eager one."""
    from trnsim.machine.runtime import Run
    eager = _compiled(monkeypatch, "affine", lazy=False)
    made = _noted(monkeypatch)
    real = Run.compile
    first = []

    def read_then_compile(run):
        for mine in _blocks(run.program.instructions).values():
            first.append(mine[0].reads)
        if elsewhere:
            for p in made:
                p.alive += 1
        real(run)
    monkeypatch.setattr(Run, "compile", read_then_compile)
    lazy = _compiled(monkeypatch, "affine")
    assert first and made
    blocks = _blocks(lazy.instructions)
    unplaced = [i for i in lazy.instructions if isinstance(i, _Unplaced)]
    if elsewhere:
        assert not blocks and len(unplaced) >= sum(p.n * p.width - 1 for p in made)
    else:
        assert len(blocks) == len(made)
        assert all(len(mine) == p.alive < p.n * p.width
                   for p, mine in zip(made, blocks.values()))
    assert pickle.dumps(lazy.instructions) == pickle.dumps(eager.instructions)
