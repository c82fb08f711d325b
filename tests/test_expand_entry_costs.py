"""What loop expansion reuses from an earlier entry of a loop entered again
(machine/expand.py) must be what the entry's own plan gives: its operands (where
each operand's numbers lie) from the layout made for a plan of the same structure as
from its own structure."""
from __future__ import annotations

import numpy as np

from trnsim.kernels import attention
from trnsim.machine import expand_tail
from trnsim.machine.expand_parts import operand_columns
from test_expand import _both, _stats
from test_expand_flash import _flash, _timing_only

REAL_PLACES = expand_tail.places


def _flash_run(monkeypatch):
    monkeypatch.setattr(attention, "K_CHUNK", 512)
    _, fast = _both(monkeypatch, lambda: _timing_only(_flash(4096, True)))
    return fast


def _own_operands(plan) -> tuple:
    """A plan's operands from its own structure and sizes."""
    n_ops = np.array([len(k[6]) for k in plan.key[0][:plan.per_iteration]], np.int64)
    return n_ops, operand_columns(plan.sizes, n_ops)


def test_a_plans_operands_from_an_earlier_entrys_layout_are_its_own(monkeypatch):
    plans = []

    def places(plan, index):
        plans.append(plan)
        return REAL_PLACES(plan, index)
    monkeypatch.setattr(expand_tail, "places", places)
    fast = _flash_run(monkeypatch)
    assert _stats(fast).fallbacks == 0
    from_layout = 0
    for plan in plans:
        n_ops, cols = plan.operands
        own_n_ops, own_cols = _own_operands(plan)
        assert np.array_equal(n_ops, own_n_ops) and np.array_equal(cols, own_cols)
        from_layout += plan.layout is not None and plan.operands is plan.layout.operands
    assert from_layout > 1  # (entries after the first of a model)
