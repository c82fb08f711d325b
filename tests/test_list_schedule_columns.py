"""The list scheduler's set-up columns (trnsim/compiler/schedule.py, compiled_schedule.py)
against straightforward references: each instruction's resource and stream number
(`_resources`), the edges by producer (the compiled `successor_csr` against the NumPy
one) and the DMA figures the compiled issue loop takes (read off `dma_costs` by
identity, an unpriced transfer priced afresh)."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki
from trnsim.compiler import schedule
from trnsim.compiler.schedule import _ListScheduler, resource_of
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program


def _random_instructions(rng, n):
    """Instructions on two cores and every engine; DMAs on three queues (one of them
    None: qSyncIO) from a few source locations, two of them equal objects apart (one
    queue, other sites), and none."""
    here = SourceLocation("k.py", 3)
    locations = [here, SourceLocation("k.py", 3), SourceLocation("k.py", 9), None]
    instrs = []
    for i in range(n):
        engine = str(rng.choice(["vector", "scalar", "gpsimd", "tensor", "sync", "dma"]))
        queue = rng.choice([None, "qSyncIO", "qAct"]) if engine == "dma" else None
        loc = locations[int(rng.integers(0, len(locations)))]
        instrs.append(Instruction(i, int(rng.integers(0, 2)), engine, "op", (), (), loc,
                                  {}, queue))
    return instrs


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_resources_against_resource_of(seed, compiled):
    if compiled:  # (streams numbered by compiled_deps.numbered_rows)
        pytest.importorskip("numba")
    instrs = _random_instructions(np.random.default_rng(seed), 300)
    ls = _ListScheduler.__new__(_ListScheduler)
    ls.program = Program(chip="trn2", instructions=instrs)
    ls.instrs, ls._canon, ls.compiled = instrs, {}, compiled
    ls._resources()
    res = ls.res
    again = _ListScheduler.__new__(_ListScheduler)  # (the DMA queues kept on the program)
    again.program, again.instrs, again._canon, again.compiled = ls.program, instrs, {}, \
        compiled
    again._resources()
    assert again.stream_no.tolist() == ls.stream_no.tolist()
    assert again.stream_res == ls.stream_res
    ref = [resource_of(ins) for ins in instrs]
    first_use = list(dict.fromkeys(ref))
    assert res == ref
    assert ls.stream_res == first_use
    assert ls.stream_no.dtype == np.int64
    assert ls.stream_no.tolist() == [first_use.index(r) for r in ref]
    # one tuple per resource, shared by its instructions and its stream
    canon = {id(r) for r in ls.stream_res}
    assert all(id(r) in canon for r in res) and len(canon) == len(first_use)


@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_compiled_successor_csr(n):
    pytest.importorskip("numba")
    from trnsim.compiler import compiled_schedule
    rng = np.random.default_rng(n)
    found = [sorted(set(rng.integers(0, i, int(rng.integers(0, 5))).tolist())) if i
             else [] for i in range(n)]
    prods = np.array([p for f in found for p in rng.permutation(f)], np.int32)
    kinds = rng.integers(0, 4, len(prods)).astype(np.uint8)
    npred = np.array([len(f) for f in found], np.int64)
    ref = schedule.successor_csr(prods, kinds, npred.tolist(), n)
    got = compiled_schedule.successor_csr(prods, kinds, npred, n)
    assert (got[1].dtype, got[2].dtype) == (np.int32, np.uint8)
    for a, b in zip(ref, got):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@nki.jit
def _loads(x):
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    for j in range(x.shape[1] // 64):
        p = (16, 128, 40)[j % 3]
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t[0:p, :], src=x[0:p, j * 64:(j + 1) * 64])
        u = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=u, src=t)
        nisa.dma_copy(dst=out[:, j * 64:(j + 1) * 64], src=u)
    return out


@pytest.mark.parametrize("unpriced", [False, True])
def test_compiled_dma_figures(unpriced, monkeypatch):
    pytest.importorskip("numba")
    from trnsim.compiler import compiled_schedule
    from trnsim.timing.costs import dma_costs
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    x = np.zeros((128, 64 * 6), np.float32)
    _, run = trnsim.run_kernel(_loads, (x,), chip="trn2", numerics=False)
    program = run.program
    ls = _ListScheduler(program, program.chip, "asap", 64)
    costs = dma_costs(program, ls.cost)
    dmas = [i for i, ins in enumerate(program.instructions) if ins.engine == "dma"]
    if unpriced:  # as priced while the engine was another
        costs[dmas[1]] = None
    args = compiled_schedule._arrays(ls)
    ix, table = args[0], args[3]  # (a DMA's figures: its row of the price table)
    figures = table[ix[dmas, compiled_schedule.X_PRICE]]
    cost = ls.cost.dma.cost
    for i, row in zip(dmas, figures):
        c = cost(program.instructions[i])
        assert tuple(row) == (c["dge_ns"], c["data_ns"], float(len(c["engines"])))
    assert len({tuple(row[1:]) for row in figures}) > 1
