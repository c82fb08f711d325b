"""A block of loop copies whose operands are made when first read
(machine/expand_copy.py `_PendingOperands`) looks for its kinds of equal moving operands
then, not when appended: a timing-only record leaves most such blocks unmade. Made, a
copy's equal operands are one Access per kind, and the record is the eager one's."""
from __future__ import annotations

import pickle

import numpy as np

from trnsim.machine import expand_copy
from trnsim.machine.record import _Deferred
from trnsim.machine.runtime import Run

from test_copies_same_operands import tile_read_in_an_inner_loop
from test_expand import _run


def _recorded(monkeypatch, lazy: bool):
    with monkeypatch.context() as m:
        m.setattr(Run, "compile", lambda self: None)
        if not lazy:
            m.setattr(expand_copy, "_LAZY", float("inf"))
        return _run(tile_read_in_an_inner_loop, np.ones((128, 128), np.float32)).program


def _blocks(instrs) -> dict:
    blocks = {}
    for ins in instrs:
        if isinstance(ins, _Deferred):
            blocks.setdefault(type(ins)._pending, []).append(ins)
    return blocks


def test_kinds_are_looked_for_when_a_block_is_first_made(monkeypatch):
    eager = _recorded(monkeypatch, lazy=False)
    program = _recorded(monkeypatch, lazy=True)
    wanting = [(pending, mine) for pending, mine in _blocks(program.instructions).items()
               if pending.placed is not None]
    assert len(wanting) == 1  # (the outer loop's: its template holds the inner copies)
    pending, mine = wanting[0]
    assert pending.same is None and len(mine) == pending.n * pending.width
    moving, width = len(pending.operands.moving), pending.width
    found = []
    real = expand_copy._kinds
    monkeypatch.setattr(expand_copy, "_kinds", lambda key: found.append(len(key)) or real(key))
    mine[len(mine) // 2].reads  # (a middle copy: the whole block made)
    assert found[0] == moving  # (the block's operands; then its tuples' sources)
    # each copy's inner reads of its tile are two Accesses (data1, data2), each kind one
    # object, as the eager record makes them
    reads = [a for ins in mine[:width] if ins.opcode == "tensor_tensor"
             for a in ins.reads]
    assert len(reads) == 256 and len(set(map(id, reads))) == len(set(reads)) == 2
    assert program.instructions == eager.instructions
    assert pickle.dumps(program.instructions) == pickle.dumps(eager.instructions)
