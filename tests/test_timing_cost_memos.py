"""The cost model's identity memos: a matmul's cost by its attrs dict, and a program's
transfers and compute instructions priced once for both the list scheduler and the
timing scheduler (timing/costs.py `priced`, `dma_costs`)."""
import pickle

import numpy as np
import pytest

from trnsim.chips import load_chip
from trnsim.legacy import isa as nisa
from trnsim.legacy import jit as lj
from trnsim.legacy import language as nl
from trnsim.machine.record import Program
from trnsim.timing.costs import CostModel, cost_model, dma_costs, priced


def _tiled(x, y):
    out = nl.ndarray((16, 24), dtype=nl.float32, buffer=nl.shared_hbm)
    ps = nl.ndarray((nl.par_dim(16), 24), dtype=nl.float32, buffer=nl.psum)
    for kk in nl.affine_range(4):
        ps[...] += nisa.nc_matmul(nl.load(x[kk]), nl.load(y[kk]))
    nl.store(out, nl.copy(ps))
    return out


def _program():
    a = np.zeros((4, 32, 16), np.float32)
    b = np.zeros((4, 32, 24), np.float32)
    _, run = lj.run_legacy(_tiled, (a, b), {}, chip="trn2", numerics=False)
    return run.program


def test_matmul_cost_is_kept_by_attrs_and_follows_new_attrs():
    program = _program()
    mms = [i for i in program if i.opcode == "nc_matmul"]
    assert len(mms) == 4
    model = CostModel(load_chip("trn2"))
    first = model.matmul(mms[0])
    assert all(model.matmul(i) == first for i in mms)
    ins = mms[1]
    ins.attrs = {**ins.attrs}  # an equal new dict: the same signature, the same result
    assert model.matmul(ins) is first
    ins.attrs = {**ins.attrs, "N": 4 * ins.attrs["N"]}  # another cost
    wider = model.matmul(ins)
    assert wider[0] > first[0]
    assert wider == model._matmul(ins)
    assert model.matmul(mms[0]) is first


def test_dma_costs_priced_once_per_program_and_model():
    program = _program()
    chip = load_chip("trn2")
    model = cost_model(chip)
    costs = dma_costs(program, model)
    assert len(costs) == len(program.instructions)
    for ins, c in zip(program, costs):
        assert (c is None) == (ins.engine != "dma")
        if c is not None:
            assert c == model.dma.cost(ins)
    assert dma_costs(program, model) is costs
    other = CostModel(chip)  # another model: priced again, to equal figures
    again = dma_costs(program, other)
    assert again is not costs and again == costs
    program.instructions = list(program.instructions)  # another list: priced again
    assert dma_costs(program, other) is not again


def test_dma_costs_not_pickled():
    program = _program()
    model = cost_model(load_chip("trn2"))
    costs = dma_costs(program, model)
    copy = pickle.loads(pickle.dumps(program))
    assert isinstance(copy, Program)
    assert copy._priced.model is None and copy._priced.dma is None
    fresh = dma_costs(copy, model)
    assert fresh == costs


def _zeros(x):
    out = nl.ndarray((128, 512), dtype=nl.bfloat16, buffer=nl.shared_hbm)
    z = nl.zeros((128, 512), dtype=nl.bfloat16, buffer=nl.sbuf)
    nl.store(out, z)
    return out


def test_compute_cost_follows_new_attrs():
    _, run = lj.run_legacy(_zeros, (np.zeros((1,), np.float32),), {}, chip="trn2",
                           numerics=False)
    (ins,) = [i for i in run.program if i.opcode == "memset"]
    model = CostModel(load_chip("trn2"))
    zero_ns, terms = model.compute(ins)
    assert model.compute(ins)[0] == zero_ns
    ins.attrs = {**ins.attrs, "value": 1.0}  # not a zero fill: twice the passes
    ns, _ = model.compute(ins)
    assert ns == 2 * zero_ns
    assert (ns, terms["N"]) == (model._compute(ins)[0], 512)


def test_list_scheduler_compute_results_kept_for_the_timing(monkeypatch):
    pytest.importorskip("numba")
    from trnsim.compiler import compile_program
    from trnsim.timing import schedule
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    _, run = lj.run_legacy(_zeros, (np.zeros((1,), np.float32),), {}, chip="trn2",
                           numerics=False)
    program = compile_program(run.program) if run.program.issue is None else run.program
    model = cost_model(load_chip("trn2"))
    entry = priced(program, model)
    group, results, engines = entry.compute
    kept = [(ins, (engines[group[k]], results[group[k]]) if group[k] >= 0 else None)
            for k, ins in enumerate(program) if ins.engine in model.eng]
    assert kept and all(hit is not None for _, hit in kept)
    for ins, (engine, res) in kept:
        if engine == ins.engine:
            assert res is model.compute(ins)
    timeline = schedule(program)
    assert [e.index for e in timeline.events] == list(range(len(program)))
