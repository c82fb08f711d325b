"""The pricing shared by the compiler's list scheduler and the compiled timing scheduler
(timing/costs.py `priced`): transfers grouped by compiled_deps.transfer_heads, compute
results kept by group for the timing scheduler's columns (timing/columns.py
`_results`), each against a plain reference."""
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from benchmarks import fidelity as fb  # noqa: E402
from trnsim.timing import access_columns as ac  # noqa: E402
from trnsim.timing import columns  # noqa: E402
from trnsim.timing.compiled_deps import transfer_heads, transfer_sides  # noqa: E402
from trnsim.timing.costs import priced  # noqa: E402
from trnsim.timing.scheduler import _Scheduler  # noqa: E402


def _first_equal(rows) -> list:
    """Per row (a tuple, or None), the position of the first equal row (-1: None)."""
    seen: dict = {}
    return [-1 if r is None else seen.setdefault(r, j) for j, r in enumerate(rows)]


def test_transfer_heads_against_a_dict_of_rows():
    rng = np.random.default_rng(7)
    n = 300
    counts = rng.integers(0, 3, (n, 2))  # reads, writes per instruction
    counts[rng.random(n) < 0.8] = 1  # mostly one of each
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts.sum(axis=1), out=ptr[1:])
    wptr = ptr[:-1] + counts[:, 0]
    m = int(ptr[-1])
    acc = rng.integers(0, 2, (m, len(ac.ACC)))  # few values: many equal rows
    # (shared by access number: rows share few numbers, as loop copies their templates')
    shared = rng.integers(0, 2, (len(ac.SHARED), m // 2 + 1))
    source = rng.integers(0, 4, m).astype(np.int32)
    op, attrs = rng.integers(0, 2, n), rng.integers(0, 2, n)
    at = np.sort(rng.choice(n, 200, replace=False))
    one, first = transfer_heads(at, ptr, wptr, acc, source, transfer_sides(shared),
                                op, attrs)
    sizes = shared[:, source]  # (by row)
    rows = []
    for i in at.tolist():
        r, w = ptr[i], wptr[i]
        if (w - r, ptr[i + 1] - w) != (1, 1):
            rows.append(None)
            continue
        rows.append((op[i], attrs[i], sizes[ac.SPACE, w], sizes[ac.BYTES, w],
                     sizes[ac.CONTIGUOUS, w], acc[w, ac.P_LO], acc[w, ac.P_HI],
                     sizes[ac.SHAPE, w], sizes[ac.ROLE, r], sizes[ac.SPACE, r],
                     sizes[ac.BYTES, r], sizes[ac.CONTIGUOUS, r], acc[r, ac.P_LO],
                     acc[r, ac.P_HI]))
    assert one.tolist() == [r is not None for r in rows]
    assert first.tolist() == _first_equal(rows)
    assert len(set(first[one].tolist())) < one.sum()  # rows were shared


def _strided(monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    _, run = trnsim.run_kernel(fb.strided_stores, (np.zeros((128, 8 * 64), np.float32),),
                               chip="trn2", numerics=False)
    return run


def test_transfers_priced_as_one_by_one(monkeypatch):
    run = _strided(monkeypatch)
    program = run.program
    sched = _Scheduler(program, run.chip, program.issue, {})
    dma = priced(program, sched.cost).dma
    transfers = [k for k, ins in enumerate(program.instructions) if ins.engine == "dma"]
    assert len(transfers) == 128
    for k, ins in enumerate(program.instructions):
        if ins.engine == "dma":
            assert dma[k] is sched.cost.dma.cost(ins)  # (the memo's dict)
        else:
            assert dma[k] is None


def test_timing_takes_the_list_schedulers_compute_results(monkeypatch):
    run = _strided(monkeypatch)
    program = run.program
    instrs = program.instructions
    sched = _Scheduler(program, run.chip, program.issue, {})
    group, results, engines = priced(program, sched.cost).compute
    compute = [k for k, ins in enumerate(instrs) if ins.engine in sched.cost.eng]
    assert compute and (group[compute] >= 0).all()
    # the list scheduler moved some to another engine than it priced them on
    moved = [k for k in compute if engines[group[k]] != instrs[k].engine]
    assert moved and len(moved) < len(compute)
    res, own, folded = columns._results(sched)
    assert own == [] and not len(folded)
    assert all(res[k] is sched.cost.compute(instrs[k]) for k in compute)
