"""Hoisting (trnsim/compiler/hoist.py) takes the sources' bytes of the plain loads it
visits as the first and last executions of a line in a block of copies off the block's
numbers (`_visited`'s `vetted`), and compares their operands only should a load repeat
those bytes: the bounds are the ones their own operands give, such copies whose operands
are made when first read (machine/record.py `deferred_instructions`) stay so, and the program
is the one hoisting gives visiting every copy."""
from __future__ import annotations

import ml_dtypes
import numpy as np

from trnsim.compiler import hoist
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.machine.record import _Deferred
from trnsim.machine.runtime import Run


def _recorded(monkeypatch):
    """The matmul tutorial's tiled step as recorded (expanded, not compiled): blocks of
    copies whose loads move, their operands made when first read."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    bf16 = ml_dtypes.bfloat16
    return run_legacy(tiled, (np.zeros((4096, 512), bf16), np.zeros((4096, 2048), bf16)),
                      {}, chip="trn1", numerics=False)[1].program


def _vetted(program) -> tuple:
    vetted: dict = {}
    visited = list(hoist._visited(program.copied, program.instructions,
                                  program.allocations, vetted))
    by_id = {id(ins): ins for ins in visited}
    return vetted, [by_id[k] for k in vetted]


def test_the_vetted_bounds_are_the_copies_own_sources(monkeypatch):
    vetted, copies = _vetted(_recorded(monkeypatch))
    assert len(copies) >= 16
    for ins in copies:
        src, _ = hoist._ends(ins.reads, ins.writes)  # (their own operands, made here)
        assert vetted[id(ins)] == (src.lo, src.hi)


def test_hoisting_makes_no_vetted_copy_s_operands(monkeypatch):
    program = _recorded(monkeypatch)
    _, copies = _vetted(program)
    assert copies and all(isinstance(ins, _Deferred) for ins in copies)
    assert hoist.hoist_invariant_loads(program) is program  # (no load repeats)
    assert all(isinstance(ins, _Deferred) for ins in copies)
    every = _recorded(monkeypatch)
    every.copied = []  # (every copy visited, its operands read)
    assert hoist.hoist_invariant_loads(every) is every
    assert [(i.index, i.opcode, i.reads, i.writes) for i in program.instructions] == \
        [(i.index, i.opcode, i.reads, i.writes) for i in every.instructions]
