"""IssueOrder.order is an Indices (an array("l")) that reads as the list of ints it
was made of: equal to it, iterated, indexed, pickled and turned into arrays alike."""
from __future__ import annotations

import pickle
from array import array

import numpy as np

from trnsim.compiler.schedule import Indices, IssueOrder


def test_an_issue_order_reads_as_its_list():
    listed = [4, 0, 3, 1, 2]
    io = IssueOrder(listed)
    assert type(io.order) is Indices and io.order.itemsize == array("l").itemsize
    assert io.order == listed and not io.order != listed
    assert io.order != [4, 0, 3] and io.order != listed[::-1]
    assert list(io.order) == listed and tuple(io.order) == tuple(listed)
    assert [io.order[k] for k in range(5)] == listed and len(io.order) == 5
    assert np.asarray(io.order, np.int64).tolist() == listed
    assert io == IssueOrder(list(listed)) and io != IssueOrder(range(5))
    again = pickle.loads(pickle.dumps(io))
    assert again == io and type(again.order) is Indices
    assert list(io.position()) == [1, 3, 4, 2, 0]
