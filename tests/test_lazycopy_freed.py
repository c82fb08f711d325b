"""Loop copies whose operands are made when first read die with their program without
the cyclic collector: their block's pending operands (machine/expand_copy.py
`_PendingOperands`), which their per-block class (a cycle) holds, hold no instruction,
and let go of what makes them (the template's accesses, the numbers, the allocations)
once no copy is left to make, as the allocation's pending move does
(compiler/compiled_allocation.py `_PendingMove`, which counts the copies it took). With
the collector off, a record or profile whose copies were never read leaves no
instruction alive once dropped."""
import gc

import numpy as np
import pytest

import trnsim
from trnsim.machine import expand_copy
from trnsim.machine.record import Instruction, _Deferred
from trnsim.machine.runtime import Run
from trnsim.profile.profile import Profile

from benchmarks.fidelity import strided_stores


def _instructions() -> int:
    # (by type(): isinstance would ask a weak proxy among them for its referent)
    return sum(issubclass(type(o), Instruction) for o in gc.get_objects())


@pytest.fixture
def pendings(monkeypatch):
    """The pending operands of the blocks recorded from now on, and the collector off."""
    made = []
    deferred = expand_copy._PendingOperands.copies

    def noted(pending, fields):
        made.append(pending)
        return deferred(pending, fields)
    monkeypatch.setattr(expand_copy._PendingOperands, "copies", noted)
    gc.collect()
    gc.disable()
    try:
        yield made
    finally:
        gc.enable()


def _let_go(made: list) -> bool:
    return all(p.live == 0 and p.operands is None and p.nums is None and p.allocs is None
               for p in made)


def _strided():
    return trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 512), np.float32),),
                             chip="trn2", numerics=False)[1]


def test_a_record_never_read_dies_with_its_program(monkeypatch, pendings):
    monkeypatch.setattr(Run, "compile", lambda self: None)
    before = _instructions()
    run = _strided()
    deferred = sum(isinstance(i, _Deferred) for i in run.program.instructions)
    assert pendings and deferred > 0.9 * len(run.program.instructions)
    assert not _let_go(pendings)
    del run
    assert _instructions() == before
    assert _let_go(pendings)


def test_a_timing_only_profile_dies_with_its_run(pendings):
    before = _instructions()
    run = _strided()
    p = Profile.from_run(run)
    p.summary, p.insights  # noqa: B018 - the summary and insights run too
    moves = {type(i)._pending for i in run.program.instructions
             if type(i) is not Instruction}
    # (the allocation took the copies, none made: it counts them for their blocks)
    assert moves and all(m.deferred for m in moves) and not _let_go(pendings)
    del run, p
    assert _instructions() == before
    assert _let_go(pendings) and not any(m.deferred for m in moves)


def test_a_block_made_lets_go_at_once(monkeypatch, pendings):
    monkeypatch.setattr(Run, "compile", lambda self: None)
    run = _strided()
    run.program.instructions[len(run.program.instructions) // 2].reads  # noqa: B018
    assert sum(p.operands is None for p in pendings) == 1
