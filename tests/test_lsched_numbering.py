"""The list scheduler's numbering of distinct values by a hash table
(timing/compiled_deps.py numbered_rows, compiler/schedule.py `numbered`) against a dict
of rows and np.unique's sort, and the compute pricing with the scheduler's own
engine / opcode / attrs numbers (timing/costs.py compute_costs `ids`) against the same
pricing reading them off the instructions."""
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from benchmarks.fidelity import strided_stores  # noqa: E402
from trnsim.compiler import schedule  # noqa: E402
from trnsim.machine.record import identities  # noqa: E402
from trnsim.timing import costs  # noqa: E402
from trnsim.timing.compiled_deps import numbered_rows  # noqa: E402
from trnsim.timing.scheduler import by_identity  # noqa: E402


def _as_met(rows) -> tuple:
    """(first, which) by a dict: each distinct row's first index, each row's number."""
    number: dict = {}
    which = [number.setdefault(r, len(number)) for r in rows]
    first = {}
    for j, g in enumerate(which):
        first.setdefault(g, j)
    return list(first.values()), which


@pytest.mark.parametrize("m, width, values", [(0, 1, 3), (1, 2, 3), (500, 1, 7),
                                               (500, 3, 2), (2000, 5, 50),
                                               (5000, 1, 3000)])
def test_numbered_rows_against_a_dict(m, width, values):
    keys = np.random.default_rng(m + width).integers(-values, values, (m, width))
    keys[: m // 3] <<= 40  # (bits the slot mask does not see but through the hash)
    first, which = numbered_rows(keys)
    want_first, want_which = _as_met(map(tuple, keys.tolist()))
    assert first.tolist() == want_first and which.tolist() == want_which


@pytest.mark.parametrize("compiled", [False, True])
def test_numbered_as_by_identity(compiled):
    objects = [[] for _ in range(9)]
    items = [objects[k] for k in np.random.default_rng(3).integers(0, 9, 400).tolist()]
    ids = identities(items)
    first, which = schedule.numbered(ids, compiled)
    want_first, want_which = by_identity(items, ids)
    assert first.tolist() == want_first.tolist() and which.tolist() == want_which.tolist()


def test_compute_costs_with_the_callers_numbers(monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    seen = []
    real = costs.compute_costs

    def both(model, program, at, ids=None):
        given = real(model, program, at, ids)
        # (now: the list scheduler then assigns floating instructions other engines)
        read = real(model, program, at)
        one_by_one = [model.compute(program.instructions[k]) for k in at.tolist()]
        seen.append((ids, given, read, one_by_one))
        return given
    monkeypatch.setattr(schedule, "compute_costs", both)
    trnsim.run_kernel(strided_stores, (np.ones((128, 8 * 80), np.float32),),
                      chip="trn2", numerics=False)
    (ids, given, read, one_by_one), = seen
    assert ids is not None and len(given)
    assert all(map(lambda x, y, z: x is y is z, given, read, one_by_one))


def test_attrs_values_by_name_where_dicts_lack_some():
    """costs._values: each dict's value of each name by identity, _ABSENT's where it
    has none (a name no dict has too), as dict.get reads them one by one."""
    a, b = object(), object()
    dicts = [{"op": a}, {"op": b, "value": a}, {}, {"op": a, "k": None}]
    for names in (("op", "value", "n", "k"), ("op", "n")):
        want = [[id(d.get(name, costs._ABSENT[0])) for name in names] for d in dicts]
        assert costs._values(dicts, names).tolist() == want
    assert costs._values(dicts[1:2], ("op", "value")).tolist() == [[id(b), id(a)]]
