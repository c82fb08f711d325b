"""The list scheduler's compute and matmul pricing of traced instructions (each with its
own attrs dict and accesses, not loop copies sharing them): once per distinct row of
the objects the cost reads (timing/costs.py compute_costs, by the access columns'
signature numbers, timing/access_columns.py; matmul_costs, by the attrs values), the
same result objects as CostModel.compute / matmul one by one, with far fewer calls;
one by one again where a key is unhashable."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.compiler import schedule
from trnsim.kernels.attention import flash_attention_fwd
from trnsim.machine.access import Access
from trnsim.machine.record import held_reads, held_writes
from trnsim.timing import access_columns, costs

pytest.importorskip("numba")

_SIG = ("role", "space", "dtype", "pattern", "indirect", "elems_per_partition")


def _flash(monkeypatch):
    """Causal flash attention, timing-only, every loop iteration traced."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    monkeypatch.setenv("TRNSIM_EXPAND", "0")
    bf = ml_dtypes.bfloat16
    d, s = 128, 4096
    args = dict(q=np.zeros((1, 1, d, s), bf), k=np.zeros((1, 1, d, s), bf),
                v=np.zeros((1, 1, s, d), bf), causal=True)
    return trnsim.run_kernel(flash_attention_fwd, (), kwargs=args, chip="trn2",
                             numerics=False)[1]


def _counted(model, name, monkeypatch) -> list:
    """The instructions model.<name> is called with from now on."""
    calls = []
    one = getattr(model, name)
    monkeypatch.setattr(model, name, lambda ins: calls.append(ins) or one(ins))
    return calls


@pytest.fixture
def priced(monkeypatch):
    """Per call of the list scheduler's compute_costs and matmul_costs: (what it
    gave, the results one by one, the cost model calls it made), by function name."""
    seen = {"compute": [], "matmul": []}

    def checked(real, name):
        def check(model, program_or_instrs, at, *rest):
            instrs = getattr(program_or_instrs, "instructions", program_or_instrs)
            with monkeypatch.context() as m:
                calls = _counted(model, name, m)
                got = real(model, program_or_instrs, at, *rest)
            want = [getattr(model, name)(instrs[k]) for k in at.tolist()]
            seen[name].append((got, want, len(calls)))
            return got
        return check
    monkeypatch.setattr(schedule, "compute_costs", checked(costs.compute_costs, "compute"))
    monkeypatch.setattr(schedule, "matmul_costs", checked(costs.matmul_costs, "matmul"))
    return seen


def test_traced_results_as_one_by_one_fewer_calls(priced, monkeypatch):
    run = _flash(monkeypatch)
    instrs = run.program.instructions
    # (traced: the attrs dicts are nearly all their own)
    assert len({id(ins.attrs) for ins in instrs}) > 0.8 * len(instrs)
    for name in ("compute", "matmul"):
        assert priced[name], name
        for got, want, calls in priced[name]:
            assert len(got) == len(want) > 100
            assert all(map(lambda x, y: x is y, got, want)), name
            assert calls * 10 < len(want), (name, calls, len(want))


def test_equal_signature_numbers_equal_fields(monkeypatch):
    """Accesses share a signature number exactly where their compute-cost fields are
    equal."""
    run = _flash(monkeypatch)
    program = run.program
    cols = access_columns.kept_columns(program)
    flat = [a for ins in program.instructions for a in (*held_reads(ins), *held_writes(ins))]
    numbers = cols.column(access_columns.SIGNATURE).tolist()
    assert len(flat) == len(numbers)
    at = [Access._fields.index(f) for f in _SIG]
    by_number, by_values = {}, {}
    for a, s in zip(flat, numbers):
        fields = tuple(a[k] for k in at)
        assert fields == by_number.setdefault(s, fields)
        assert s == by_values.setdefault(fields, s)
    assert len(by_number) * 50 < len(flat)


def _matmuls(monkeypatch):
    run = _flash(monkeypatch)
    instrs = run.program.instructions
    at = np.array([k for k, ins in enumerate(instrs) if ins.engine == "tensor"])
    return costs.cost_model(run.chip), instrs, at


def test_matmul_attrs_without_some_values(monkeypatch):
    """Attrs dicts that lack a value the key reads (read as absent, not as None):
    the same results as one by one."""
    model, instrs, at = _matmuls(monkeypatch)
    sizes = (128, 256, 384, 512)
    for j, k in enumerate(at.tolist()):
        attrs = dict(instrs[k].attrs)
        del attrs[("perf_mode", "tile_size", "is_transpose")[j % 3]]
        if j % 2:
            attrs["is_moving_onezero"] = None
        attrs["N"] = sizes[j // 3 % 4]
        instrs[k].attrs = attrs
    calls = _counted(model, "matmul", monkeypatch)
    got = costs.matmul_costs(model, instrs, at, True)
    assert 0 < len(calls) * 20 < len(at)
    want = [model.matmul(instrs[k]) for k in at.tolist()]
    assert all(map(lambda x, y: x is y, got, want))
    assert len({id(r) for r in got}) >= 12


def test_matmul_unhashable_key_one_by_one(monkeypatch):
    """An attrs value the memo key cannot hold: each dict's result its own, as one by
    one gives; and the Python paths' call (not fast) one by one."""
    model, instrs, at = _matmuls(monkeypatch)
    mode = ["none"]  # (the same object in every dict: their rows are equal)
    for k in at.tolist():
        instrs[k].attrs = {**instrs[k].attrs, "perf_mode": mode}
    got = costs.matmul_costs(model, instrs, at, True)
    assert len({id(r) for r in got}) == len(at)
    assert [r[0] for r in got] == [model.matmul(instrs[k])[0] for k in at.tolist()]
    calls = _counted(model, "matmul", monkeypatch)
    costs.matmul_costs(model, instrs, at, False)
    assert len(calls) == len(at)


def test_traced_transfers_priced_as_one_by_one(monkeypatch):
    """Traced transfers (each its own attrs dict): the list scheduler's DMA prices
    are DmaCost.cost's dicts one by one, made with far fewer calls."""
    from benchmarks.fidelity import strided_stores
    from trnsim.timing.costs import priced

    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    monkeypatch.setenv("TRNSIM_EXPAND", "0")
    calls = []
    one = costs.DmaCost.cost
    monkeypatch.setattr(costs.DmaCost, "cost", lambda self, ins: calls.append(ins) or
                        one(self, ins))
    _, run = trnsim.run_kernel(strided_stores, (np.ones((128, 8 * 64), np.float32),),
                               chip="trn2", numerics=False)
    program = run.program
    model = costs.cost_model(run.chip)
    got = priced(program, model).dma
    transfers = [k for k, ins in enumerate(program.instructions) if ins.engine == "dma"]
    assert len({id(program.instructions[k].attrs) for k in transfers}) == len(transfers)
    assert len(calls) * 20 < len(transfers)
    for k, ins in enumerate(program.instructions):
        assert got[k] is (model.dma.cost(ins) if k in transfers else None)


def test_traced_floating_candidates_costed_once_per_group(monkeypatch):
    """Traced engine-agnostic instructions (each its own attrs and candidates tuple):
    the compiled list scheduler costs their other candidates once per group of equal
    candidates and cost result, and issues as the Python one does."""
    from benchmarks.fidelity import strided_stores
    from test_compiler_schedule_compiled import _same
    from trnsim.compiler import compiled_schedule

    monkeypatch.setenv("TRNSIM_EXPAND", "0")
    _, run = trnsim.run_kernel(strided_stores, (np.ones((128, 8 * 64), np.float32),),
                               chip="trn2", numerics=False)
    program = run.program
    floating = [ins for ins in program.instructions
                if len(ins.attrs.get("engines", ()) or ()) > 1]
    assert len({id(ins.attrs["engines"]) for ins in floating}) == len(floating) > 50
    seen = _same(program, "trn2", monkeypatch)
    assert seen["floating"] > 50
    calls = []
    real = compiled_schedule._arrays

    def counted(ls):
        with monkeypatch.context() as m:
            made = _counted(ls.cost, "compute", m)
            out = real(ls)
        calls.extend(made)
        return out
    monkeypatch.setattr(compiled_schedule, "_arrays", counted)
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    schedule._ListScheduler(program, run.chip, "critical_path", 64).run()
    assert 0 < len(calls) * 10 < len(floating)
