"""The compiled timing scheduler's per-program arrays against plain references: the
issue order as an array (timing/scheduler.py `order_array`, whatever sequence holds
the order) and `columns.supported`'s look for a collective, made per distinct engine
object."""
import numpy as np
import pytest

pytest.importorskip("numba")

from kernel_helpers import tutorial_run  # noqa: E402
from trnsim.timing import columns  # noqa: E402
from trnsim.timing.scheduler import _Scheduler  # noqa: E402


def test_the_issue_order_array_is_the_order_item_by_item(monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    run = tutorial_run("tiled", "trn2")
    program, n = run.program, len(run.program)
    issue = program.issue
    assert list(issue.order) != list(range(n))  # (the compiler moved some)
    for given, expected in ((issue, list(issue.order)), (None, list(range(n)))):
        order = _Scheduler(program, run.chip, given, {}).order_array
        assert order.dtype == np.int64 and order.tolist() == expected
    sched = _Scheduler(program, run.chip, issue, {})
    sched.order = list(reversed(issue.order))  # (any other sequence)
    assert sched.order_array.tolist() == list(reversed(issue.order))


def test_a_collective_engine_is_found_by_its_name_not_its_object(monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    run = tutorial_run("tiled", "trn2")
    program = run.program
    assert columns.supported(_Scheduler(program, run.chip, program.issue, {}))
    ins = program.instructions[len(program) // 2]
    was = ins.engine
    ins.engine = "".join(["c", "c"])  # (equal to "cc", another object)
    try:
        sched = _Scheduler(program, run.chip, program.issue, {})
        assert not columns.supported(sched)
        assert [sched.engine_of[i] for i in sched.engine_numbers[0]].count("cc") == 1
    finally:
        ins.engine = was
