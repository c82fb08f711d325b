"""A plan of period > 1 (machine/expand_plan.py `Plan.row`) gives each iteration the
numbers of the sampled iteration in its phase, moved by the drift once per period:
checked number by number against that reading, for all columns and for a choice of
them (the path that takes columns before rows)."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim.machine.expand_plan import Plan


def _by_hand(rows, drift, period: int, iteration: int, col: int) -> int:
    samples = len(rows)
    s = samples - (samples - iteration) % period
    return int(rows[s - 1, col] + drift[col] * ((iteration - s) // period))


@pytest.mark.parametrize("seed", range(20))
def test_period_rows_match_a_reading_by_hand(seed):
    rng = np.random.default_rng(seed)
    period = int(rng.integers(2, 5))
    samples, width = period + int(rng.integers(1, 3)), int(rng.integers(4, 1600))
    rows = rng.integers(-50, 200, size=(samples, width))
    drift = rng.integers(-3, 4, size=width)
    plan = Plan(rows, period, drift, ((), (), ()), (0, 1, 0, 0, 0, 0), ["i"], [], [])
    iterations = np.sort(rng.integers(0, 60, size=int(rng.integers(1, 9))))
    cols = np.sort(rng.choice(width, size=int(rng.integers(1, min(width, 50))),
                              replace=False))
    for pick in (cols, slice(None), slice(1, None, 2)):
        got = plan.row(iterations, pick)
        at = np.arange(width)[pick]
        want = [[_by_hand(rows, drift, period, i, c) for c in at.tolist()]
                for i in iterations.tolist()]
        assert got.tolist() == want
