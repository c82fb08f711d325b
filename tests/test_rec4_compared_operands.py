"""The operands a pass that only compares them reads of a loop copy whose own are made
when first read (machine/record.py `compared_operands`, machine/expand_copy.py
`_PendingOperands.peek`): equal to the copy's own, made later, and made apart for a
wide template's copies, which keep waiting for their own; hoisting reads its loads so
(compiler/hoist.py), and compiles the program it would have compiled from copies made
at once."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from trnsim.compiler import hoist
from trnsim.machine import expand_copy
from trnsim.machine.record import _Deferred, compared_operands
from trnsim.machine.runtime import Run
from trnsim.timing import schedule

from test_expand import _run, tiled_matmul


def _args():
    """(16 iterations of n around 16 of k: copies of an n iteration, 50 instructions)"""
    return np.zeros((2048, 128), np.float32), np.zeros((2048, 8192), np.float32)


def _recorded(monkeypatch, compile_it: bool):
    with monkeypatch.context() as m:
        if not compile_it:
            m.setattr(Run, "compile", lambda self: None)
        return _run(tiled_matmul, *_args())


def _wide_copies(program) -> list:
    return [i for i in program.instructions if isinstance(i, _Deferred)
            and type(i)._pending.width >= expand_copy._WIDE]


def test_peeked_operands_equal_the_copies_own_and_make_none(monkeypatch):
    monkeypatch.setattr(expand_copy, "_PEEKS", 10 ** 9)
    program = _recorded(monkeypatch, compile_it=False).program
    wide = _wide_copies(program)
    assert len(wide) > 100
    peeked = [compared_operands(ins) for ins in wide]
    assert _wide_copies(program) == wide  # (none made: all still waiting)
    assert peeked == [(ins.reads, ins.writes) for ins in wide]
    assert not _wide_copies(program)


def test_only_the_first_peeks_of_a_block_are_made_apart(monkeypatch):
    program = _recorded(monkeypatch, compile_it=False).program
    wide = _wide_copies(program)
    pending = type(wide[0])._pending
    mine = [i for i in wide if type(i)._pending is pending]
    assert len(mine) > expand_copy._PEEKS + 1
    for ins in mine[:expand_copy._PEEKS]:
        compared_operands(ins)
    assert all(isinstance(i, _Deferred) for i in mine)
    compared_operands(mine[expand_copy._PEEKS])  # (then made as when read)
    assert not isinstance(mine[expand_copy._PEEKS], _Deferred)


def test_a_plain_instruction_gives_its_own_tuples(monkeypatch):
    program = _recorded(monkeypatch, compile_it=False).program
    ins = program.instructions[0]
    assert not isinstance(ins, _Deferred)
    reads, writes = compared_operands(ins)
    assert reads is ins.reads and writes is ins.writes


@pytest.mark.parametrize("peeks", [0, expand_copy._PEEKS])
def test_hoisting_compiles_the_program_of_copies_made_at_once(monkeypatch, peeks):
    monkeypatch.setattr(expand_copy, "_PEEKS", peeks)
    # (every copy visited: read as a block, the end copies' loads are read off its
    # numbers, not compared)
    monkeypatch.setattr(hoist, "_MANY", float("inf"))
    peeked = []  # (copies still waiting for their own operands once compared)
    real = hoist.compared_operands

    def compared(ins):
        out = real(ins)
        peeked.append(isinstance(ins, _Deferred))
        return out
    monkeypatch.setattr(hoist, "compared_operands", compared)
    lazy = _recorded(monkeypatch, compile_it=True)
    assert any(peeked) == bool(peeks)
    monkeypatch.setattr(expand_copy, "_LAZY", float("inf"))
    eager = _recorded(monkeypatch, compile_it=True)
    for run in (lazy, eager):
        run.timeline = list(schedule(run.program, run.chip).events)
    assert lazy.timeline == eager.timeline
    assert list(lazy.program.issue.order) == list(eager.program.issue.order)
    assert pickle.dumps(lazy.program.instructions) == pickle.dumps(eager.program.instructions)
