"""IssueOrder.moved as the compiled list scheduler hands it on (timing/timeline.py
`Moved`: its two arrays, a dict made only where read as one): the same mapping as the
dict of its items, and the same timeline as the dict handed to the timing scheduler."""
import pickle
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("numba")

from kernel_helpers import tutorial_run  # noqa: E402
from trnsim.compiler.schedule import IssueOrder  # noqa: E402
from trnsim.timing import schedule  # noqa: E402
from trnsim.timing.timeline import Moved  # noqa: E402


def test_moved_reads_as_the_dict_of_its_arrays():
    at, by = np.array([7, 2, 5], np.int64), np.array([3, -1, 1], np.int64)
    moved, ref = Moved(at, by), {7: 3, 2: -1, 5: 1}
    assert moved == ref and ref == moved and moved != {7: 3}
    assert list(moved.items()) == list(ref.items())  # (issue order: the dict's)
    assert len(moved) == 3 and bool(moved) and not Moved(at[:0], by[:0])
    assert moved[2] == -1 and moved.get(5, 0) == 1 and moved.get(4, 0) == 0
    assert 7 in moved and 4 not in moved
    with pytest.raises(KeyError):
        moved[4]
    assert repr(moved) == repr(ref)
    again = pickle.loads(pickle.dumps(moved))
    assert type(again) is Moved and list(again.items()) == list(ref.items())
    assert IssueOrder([0, 1], moved=moved) == IssueOrder([0, 1], moved=dict(ref))
    for kind in (moved, ref):
        got_at, got_by = Moved.columns(kind)
        assert got_at.tolist() == [7, 2, 5] and got_by.tolist() == [3, -1, 1]
    empty = Moved.columns({})
    assert empty[0].dtype == np.int64 and len(empty[0]) == len(empty[1]) == 0


def test_timeline_of_the_arrays_is_the_timeline_of_the_dict():
    run = tutorial_run("tiled", "trn1")
    issue = run.program.issue
    assert type(issue.moved) is Moved and len(issue.moved) > 0  # (the compiled pass's)
    got = schedule(run.program, run.chip)
    run.program.issue = replace(issue, moved=dict(issue.moved.items()))
    ref = schedule(run.program, run.chip)
    by_index = {e.index: e.moved for e in ref.events}
    assert [(e.index, e.moved) for e in got.events] == \
        [(e.index, by_index[e.index]) for e in got.events]
    assert {e.index: e.moved for e in got.events if e.moved} == dict(issue.moved.items())
    assert got.total_time == ref.total_time
