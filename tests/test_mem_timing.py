"""The timing scheduler's memory savings keep its results: the compiled dependency edges
are narrow (producers int32, kinds and spaces int8) with the Python collection's
values, and a _Scheduler makes the Python walk's per-instruction state only when it
walks."""
import numpy as np
import pytest

import trnsim
from trnsim.chips import load_chip
from trnsim.machine import compiled as machine_compiled
from trnsim.timing import columns, compiled_deps
from trnsim.timing.compiled import schedule_compiled
from trnsim.timing.scheduler import _Scheduler

from benchmarks.fidelity import strided_stores

pytestmark = pytest.mark.skipif(not machine_compiled.numba_available(),
                                reason="the compiled paths need numba")


@pytest.fixture(scope="module")
def program():
    _, run = trnsim.run_kernel(strided_stores, (np.ones((128, 256), np.float32),),
                               chip="trn2", numerics=False)
    return run.program, load_chip(run.program.chip)


def test_edges_are_narrow_with_the_python_collections_values(program):
    program, chip = program
    sched = _Scheduler(program, chip, program.issue, {})
    spaces = {"": 0}
    dptr, dprod, dkind, dspace = compiled_deps.collect(sched, spaces)
    assert dprod.dtype == np.int32 and dkind.dtype == dspace.dtype == np.int8
    ref = _Scheduler(program, chip, program.issue, {})
    names = list(spaces)
    got = [[(p, columns.KINDS[k], names[s]) for p, k, s in
            zip(dprod[a:b].tolist(), dkind[a:b].tolist(), dspace[a:b].tolist())]
           for a, b in zip(dptr[:-1].tolist(), dptr[1:].tolist())]
    want = [[(p, kind, space) for p, (kind, space) in
             ref._collect(ref.instrs[i]).items()] for i in ref.order]
    assert got == want


def test_walk_state_is_made_only_by_the_walk(program):
    program, chip = program
    walk = ("track", "maps", "end", "done", "events", "resolved")
    sched = _Scheduler(program, chip, program.issue, {})
    columns.build_columns(sched)  # what the compiled scheduler reads
    assert not set(walk) & set(vars(sched))
    timeline = sched.run()
    assert set(walk) <= set(vars(sched))
    fast = schedule_compiled(program, chip, program.issue)
    assert [(e.index, e.track, e.start, e.end, e.waits) for e in timeline.events] == \
        [(e.index, e.track, e.start, e.end, e.waits) for e in fast.events]
