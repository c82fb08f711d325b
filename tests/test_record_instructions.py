"""record.instructions makes Instructions from columns of their fields as calling the
class would (loop expansion's copies: machine/expand_copy.py Copier.append)."""
from __future__ import annotations

import dataclasses
import pickle

from trnsim.machine.access import Access
from trnsim.machine.record import Instruction, instructions


def test_instructions_from_columns_are_the_class_calls():
    a = tuple.__new__(Access, range(18))
    columns = [list(range(5)), [0, 1, 0, 1, 0], ["tensor", "vector", "dma", "sync", "gpsimd"],
               ["op"] * 5, [(a,), (), (a, a), (), (a,)], [(), (a,), (), (a,), ()],
               [None] * 5, [{"k": i} for i in range(5)], [None, None, "q0", None, "q1"]]
    made = instructions(*columns)
    want = list(map(Instruction, *columns))
    assert made == want and all(type(i) is Instruction for i in made)
    assert [dataclasses.astuple(i) for i in made] == [dataclasses.astuple(i) for i in want]
    assert all(x.attrs is y.attrs and x.reads is y.reads for x, y in zip(made, want))
    assert pickle.loads(pickle.dumps(made)) == want
    made[2].engine = "scalar"  # (fields set in place, as the compiler model does)
    assert made[2].engine == "scalar" and instructions(*[[] for _ in columns]) == []
