"""The list scheduler's compute pricing once per loop copy signature
(timing/costs.py compute_costs, by the access columns' `source` rows,
timing/access_columns.py): the same result objects as CostModel.compute one by one,
with far fewer calls on loop-expanded kernels; one by one again where a key is
unhashable (each instruction its own result, as the memo then gives)."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
from benchmarks.fidelity import strided_stores
from trnsim.compiler import schedule
from trnsim.machine.access import Access
from trnsim.machine.record import held_reads, held_writes
from trnsim.timing import access_columns, costs

pytest.importorskip("numba")
from test_blockcols_columns import entered_again, odd_tiles  # noqa: E402

_SIG = ("space", "role", "dtype", "pattern", "elems_per_partition", "indirect", "shape")


def _source_rows_alike(program) -> None:
    """The accesses of one `source` number have the same fields but their offset, box
    and alloc."""
    cols = access_columns.kept_columns(program)
    flat = [a for ins in program.instructions for a in (*held_reads(ins), *held_writes(ins))]
    assert len(flat) == len(cols.source)
    at = [Access._fields.index(f) for f in _SIG]
    first: dict = {}  # number -> its first access
    for a, s in zip(flat, cols.source.tolist()):
        b = first.setdefault(s, a)
        assert [a[k] for k in at] == [b[k] for k in at]


@pytest.fixture
def priced(monkeypatch):
    """Runs a kernel (compiled paths); per compute_costs call of the list scheduler,
    (results, the results one by one, CostModel.compute calls it made)."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    seen = []
    real = costs.compute_costs

    def check(model, program, at, ids=None):
        calls = []
        one = model.compute
        model.compute = lambda ins: calls.append(ins) or one(ins)
        try:
            got = real(model, program, at, ids)
        finally:
            del model.compute
        _source_rows_alike(program)
        want = [model.compute(program.instructions[k]) for k in at.tolist()]
        seen.append((got, want, len(calls)))
        return got
    monkeypatch.setattr(schedule, "compute_costs", check)
    return seen


@pytest.mark.parametrize("kernel, shape", [(strided_stores, (128, 8 * 80)),
                                           (odd_tiles, (100 * 60, 41)),
                                           (entered_again, (256, 8 * 40))])
def test_same_results_fewer_calls(priced, kernel, shape):
    trnsim.run_kernel(kernel, (np.ones(shape, np.float32),), chip="trn2", numerics=False)
    assert priced
    for got, want, calls in priced:
        assert len(got) == len(want) and all(map(lambda x, y: x is y, got, want))
        assert calls * 5 < len(want)


def test_unhashable_key_one_by_one(monkeypatch):
    """An attrs value the memo key cannot hold: every instruction computed afresh."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    kept = []
    real = costs.compute_costs

    def grab(model, program, at, ids=None):
        kept.append((model, program, at))
        return real(model, program, at, ids)
    monkeypatch.setattr(schedule, "compute_costs", grab)
    trnsim.run_kernel(strided_stores, (np.ones((128, 8 * 80), np.float32),),
                      chip="trn2", numerics=False)
    model, program, at = kept[0]
    instrs = program.instructions
    shared = {**instrs[int(at[-1])].attrs, "value": [2.0]}
    for k in at.tolist():
        instrs[k].attrs = shared
    got = costs.compute_costs(model, program, at)
    assert len({id(r) for r in got}) == len(at)
    assert [r[0] for r in got] == [model.compute(instrs[k])[0] for k in at.tolist()]


_SMALL_PROFILE = """
import sys
import numpy as np
import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

@trnsim.nki.jit
def scale(x):
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
    nisa.dma_copy(dst=out, src=t)
    return out

trnsim.profile(scale, np.zeros((128, 64), np.float32), numerics=False, cache=False)
print("numba" in sys.modules)
"""


def test_a_small_program_is_priced_without_loading_numba():
    """Programs under the compiled paths' size run the Python passes, which have no
    access columns: their compute pricing must not import them (and numba: ~60 MB and
    ~0.2 CPU-s a process, paid by every rank of profile_ranks' processes)."""
    import os
    import subprocess
    import sys

    from trnsim.machine import compiled

    out = subprocess.run([sys.executable, "-c", _SMALL_PROFILE], capture_output=True,
                         text=True, check=True, env={**os.environ, compiled.ENV: "auto"})
    assert out.stdout.strip() == "False"
