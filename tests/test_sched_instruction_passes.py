"""The schedulers' passes over every instruction against plain references: the core,
opcode and track numbers (timing/scheduler.py `cores_and_opcodes`, `streams`), the
compiled timing scheduler's rows (timing/columns.py `_price`: one per (result, track),
numbered as the issue order meets them) and the compute results it takes from the list
scheduler (`_computes_priced`)."""
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from benchmarks import fidelity as fb  # noqa: E402
from kernel_helpers import tutorial_run  # noqa: E402
from trnsim.timing import columns  # noqa: E402
from trnsim.timing.costs import priced  # noqa: E402
from trnsim.timing.scheduler import _Scheduler, cores_and_opcodes, numbered, streams  # noqa: E402


def _runs(monkeypatch):
    """A matmul tutorial (folded memsets, matmuls) and a strided kernel (compute
    instructions the list scheduler moves to another engine)."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    _, strided = trnsim.run_kernel(fb.strided_stores, (np.zeros((128, 8 * 64), np.float32),),
                                   chip="trn2", numerics=False)
    return [tutorial_run("tiled", "trn2"), strided]


def _first_met(keys) -> list:
    """Each key's number, the distinct keys numbered in order of first occurrence."""
    seen: dict = {}
    return [seen.setdefault(k, len(seen)) for k in keys]


def test_cores_opcodes_and_tracks_as_read_one_by_one(monkeypatch):
    for run in _runs(monkeypatch):
        program = run.program
        instrs = program.instructions
        for name in ("_dma_queues", "_cores_and_opcodes"):
            vars(program).pop(name, None)
        cores, codes, names = cores_and_opcodes(program)
        assert cores.tolist() == [ins.core for ins in instrs]
        assert [names[c] for c in codes.tolist()] == [ins.opcode for ins in instrs]
        engines = [ins.engine for ins in instrs]
        track = numbered(streams(program, engines, cores), True)[1]
        keys = [(ins.core, id(ins.engine), id(ins.queue), id(ins.location))
                if ins.engine == "dma" else (ins.core, id(ins.engine)) for ins in instrs]
        assert track.tolist() == _first_met(keys)


def test_rows_are_numbered_as_the_issue_order_meets_them(monkeypatch):
    for run in _runs(monkeypatch):
        program = run.program
        sched = _Scheduler(program, run.chip, program.issue, {})
        col = columns.Columns(len(sched.instrs))
        columns._price(sched, col)
        res, own, folded = columns._results(sched)
        keys = {i: (id(res[i]), int(col.track[i])) for i in range(col.n)}
        keys.update((i, ("own", i)) for i in own)
        keys.update((i, "folded") for i in folded.tolist())  # (one row, shared)
        order = sched.order_array.tolist()
        assert col.row[order].tolist() == _first_met(keys[i] for i in order)
        assert len(col.table) == int(col.row.max()) + 1


def test_compute_results_taken_as_one_by_one(monkeypatch):
    """Each compute instruction the list scheduler priced gets the result on its
    engine now (the cost model's memo: the same object), but a folded memset."""
    folded = moved = 0
    for run in _runs(monkeypatch):
        program = run.program
        sched = _Scheduler(program, run.chip, program.issue, {})
        instrs, cost = sched.instrs, sched.cost
        group, results, engines = priced(program, cost).compute
        rest = [k for k, ins in enumerate(instrs) if ins.engine in cost.eng]
        res = np.empty(len(instrs), object)
        left = columns._computes_priced(sched, res, rest, columns._folded_mask(sched),
                                        group, results, engines).tolist()
        expected_left = [k for k in rest if group[k] < 0 or k in sched.folded]
        assert left == expected_left
        assert all(res[k] is cost.compute(instrs[k]) for k in rest if k not in left)
        assert all(res[k] is None for k in left)
        folded += sum(group[k] >= 0 for k in left)
        moved += sum(group[k] >= 0 and engines[group[k]] != instrs[k].engine for k in rest)
    assert folded and moved  # (both cases met)
