"""A narrow period-1 plan (machine/expand_plan.py `Plan._narrow`) predicts single
iterations' numbers and checks its operands' ids with Python ints: every answer is the
one its NumPy path gives for the same plan (the path of wider plans)."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim.machine import expand_plan
from trnsim.machine.expand_plan import Plan


def _plan(rng, width: int, samples: int) -> Plan:
    """A period-1 plan of `samples` rows of `width` numbers (two frame ints, one list),
    some of whose columns are operand ids (-1: no allocation) that step or stay."""
    rows = rng.integers(-50, 200, size=(samples, width))
    drift = rng.integers(-3, 4, size=width)
    ops = np.sort(rng.choice(width - 3, size=min(6, width - 3), replace=False))
    rows[:, ops] = np.where(rng.random(len(ops)) < 0.3, -1, rng.integers(0, 40, len(ops)))
    drift[ops] = rng.choice([0, 1, 2, -1], size=len(ops))
    plan = Plan(rows, 1, drift, ((), (), ("tiles",)), (0, 1, 0, 0, 0, 0), ["i", "k"], [], [])
    plan.operand_ids = ops
    plan.indexing = ops[drift[ops] != 0]
    plan.made_before = 30
    plan.last_sampled = int(rng.integers(0, samples + 1))
    return plan


def _answers(plan: Plan, first: int, last: int) -> tuple:
    rn = plan.record_numbers
    return (plan.indexes_made_before(first, last), plan._ids_keep_signs(first, last),
            plan._numbers_at(last, rn), plan._numbers_at(last + 1, rn + 1, rn + 3))


@pytest.mark.parametrize("seed", range(40))
def test_narrow_plans_answer_as_numpy_does(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    plan = _plan(rng, int(rng.integers(8, 40)), int(rng.integers(1, 4)))
    first = int(rng.integers(0, 5))
    last = first + int(rng.integers(0, 40))
    assert plan._narrow()
    narrow = _answers(plan, first, last)
    monkeypatch.setattr(expand_plan, "_NARROW", 0)
    plan._lists = None
    assert not plan._narrow()
    assert _answers(plan, first, last) == narrow
    ends = plan._ends(first, last, plan.operand_ids)  # (a hand count of the same)
    ids = plan.rows[-1, plan.operand_ids]
    step = plan.drift[plan.operand_ids]
    assert np.array_equal(ends, [ids + step * (k - plan.last_sampled) for k in (first, last)])
