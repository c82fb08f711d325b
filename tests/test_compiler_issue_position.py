"""IssueOrder.position (compiler/schedule.py): where each instruction comes in the
issue order, as an array("l")."""
import random
from array import array

import pytest

from trnsim.compiler.schedule import IssueOrder


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_position_inverts_the_order(n):
    order = list(range(n))
    random.Random(n).shuffle(order)
    pos = IssueOrder(order).position()
    assert isinstance(pos, array) and pos.typecode == "l"
    assert len(pos) == n
    assert [order[p] for p in pos] == list(range(n))
