"""record.constructed makes Instructions and Allocations from columns of their fields
as calling the class would, and record.deferred_instructions copies whose reads and
writes are made when first read (loop expansion's copies: machine/expand_copy.py
Copier.append)."""
from __future__ import annotations

import dataclasses
import pickle

from trnsim.machine.access import Access
from trnsim.machine.record import (Allocation, Instruction, _Deferred, constructed,
                                    deferred_instructions, held_reads, held_writes,
                                    set_operands)


def test_instructions_from_columns_are_the_class_calls():
    a = tuple.__new__(Access, range(18))
    columns = [list(range(5)), [0, 1, 0, 1, 0], ["tensor", "vector", "dma", "sync", "gpsimd"],
               ["op"] * 5, [(a,), (), (a, a), (), (a,)], [(), (a,), (), (a,), ()],
               [None] * 5, [{"k": i} for i in range(5)], [None, None, "q0", None, "q1"]]
    made = constructed(Instruction, columns)
    want = list(map(Instruction, *columns))
    assert made == want and all(type(i) is Instruction for i in made)
    assert [dataclasses.astuple(i) for i in made] == [dataclasses.astuple(i) for i in want]
    assert all(x.attrs is y.attrs and x.reads is y.reads for x, y in zip(made, want))
    assert pickle.loads(pickle.dumps(made)) == want
    made[2].engine = "scalar"  # (fields set in place, as the compiler model does)
    assert made[2].engine == "scalar" and constructed(Instruction, [[] for _ in columns]) == []


class _Pending:
    """A block's pending operands as record.deferred_instructions uses them: `make` gives
    a copy its own reads and writes (here: each read doubled), `died` counts deaths."""

    def __init__(self):
        self.made, self.dead, self.deferred = [], 0, None

    def make(self, ins):
        self.made.append(ins.index)
        set_operands([ins], [held_reads(ins) * 2], [held_writes(ins)], self.deferred)

    def died(self):
        self.dead += 1


def test_deferred_instructions_hold_their_template_tuples_until_read():
    a = tuple.__new__(Access, range(18))
    columns = [[0, 1, 2], [0] * 3, ["tensor"] * 3, ["op"] * 3, [(a,)] * 3, [()] * 3,
               [None] * 3, [{}] * 3, [None] * 3]
    pending = _Pending()
    made, cls = deferred_instructions(pending, columns)
    pending.deferred = cls
    assert all(type(i) is cls for i in made) and issubclass(cls, _Deferred)
    assert "reads" not in vars(cls) and "writes" not in vars(cls)  # (the properties)
    assert [held_reads(i) for i in made] == columns[4] and not pending.made
    assert made[1].reads == (a, a) and pending.made == [1] and type(made[1]) is Instruction
    assert made[0].writes == () and pending.made == [1, 0]
    assert made[2] == Instruction(2, 0, "tensor", "op", (a, a), (), None, {}, None)
    assert pending.made == [1, 0, 2] and all(type(i) is Instruction for i in made)
    made, cls = deferred_instructions(pending, columns)
    del made
    assert pending.dead == 3


def test_allocations_from_columns_are_the_class_calls():
    fields = [list(range(3)), ["sbuf", "psum", "sbuf"], [0] * 3, ["a", "b", ""],
              ["float32[128, 8]"] * 3, ["float32"] * 3, [None] * 3, [0, 64, 128], [32] * 3,
              [32] * 3, [0] * 3, [128] * 3, [False, True, False], [5, 6, 7]]
    made = constructed(Allocation, fields)
    assert made == list(map(Allocation, *fields))
    assert all(type(a) is Allocation for a in made) and made[1].explicit is True
