"""timing/costs.py dma_costs prices the one-read-one-write transfers of a program that
has its access columns (timing/access_columns.py) once per distinct row of what the
pricing reads (opcode and attrs by identity, the accesses' fields off the columns):
every instruction must get the very dict `DmaCost.cost` gives it one by one (the memo
shares them), on varied synthetic transfers where each key field differs alone, and
on recorded kernels whose columns the compiled allocation handed over."""
import itertools

import numpy as np
import pytest

from trnsim.chips import load_chip
from trnsim.machine.access import Access, copy_with
from trnsim.machine.record import Instruction, Program, distinct_rows
from trnsim.timing import access_columns, costs
from trnsim.timing.costs import cost_model, dma_costs

pytest.importorskip("numba")
from kernel_helpers import tutorial_run  # noqa: E402


def _one_by_one(program, model) -> list:
    cost = model.dma.cost
    return [cost(ins) if ins.engine == "dma" else None for ins in program.instructions]


def _priced_by_columns(program, model) -> list:
    program.__dict__.pop("_priced", None)
    assert access_columns.kept_columns(program) is not None
    return dma_costs(program, model)


def _same_dicts(got, want) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g is w, i


def _sbuf(role, p_lo=0, p_hi=128, nbytes=4096, run=32, shape=(128, 8)):
    return Access(role, "r" if role != "dst" else "w", "sbuf", 0, "t", "float32", shape,
                  ((8, 1), (1, 8)), 0, p_lo, p_hi, 0, nbytes // max(1, p_hi - p_lo),
                  8, nbytes, run)


def _hbm(role, nbytes=4096, run=32, shape=(128, 8)):
    return Access(role, "r" if role != "dst" else "w", "hbm", 0, "h", "float32", shape,
                  ((8, 128), (1, 8)), 0, 0, 1, 0, nbytes, 8, nbytes, run)


def _varied_transfers() -> list:
    """(opcode, attrs, reads, writes): a base load and store, each key field changed
    alone, HBM -> HBM copies differing in their first dimension only, transfers of
    other shapes (an indirect offset read, two writes) and copies of equal values
    but other objects."""
    shared = {"dge_mode": "hwdge"}
    load = ("dma_copy", shared, (_hbm("src"),), (_sbuf("dst"),))
    store = ("dma_copy", shared, (_sbuf("src"),), (_hbm("dst"),))
    out = [load, store]
    w, r = load[3][0], load[2][0]
    for field, value in [("bytes", 2048), ("contiguous_bytes", 4), ("p_lo", 32),
                         ("p_hi", 64), ("shape", (64, 16)), ("space", "psum")]:
        out.append(("dma_copy", shared, (r,), (copy_with(w, **{field: value}),)))
    for field, value in [("role", "indirect_offset"), ("bytes", 1024),
                         ("contiguous_bytes", 8), ("space", "sbuf")]:
        out.append(("dma_copy", shared, (copy_with(r, **{field: value}),), (w,)))
    sr, sw = store[2][0], store[3][0]
    for field, value in [("p_lo", 16), ("p_hi", 96)]:
        out.append(("dma_copy", shared, (copy_with(sr, **{field: value}),), (sw,)))
    out += [("dma_transpose", shared, (r,), (w,)),
            ("dma_copy", {"dge_mode": "swdge"}, (r,), (w,)),
            ("dma_copy", {"dge_mode": "hwdge", "dst_rmw_op": "add"}, (r,), (w,)),
            ("dma_copy", {"dge_mode": "hwdge", "bytes": 512}, (r,), (w,))]
    for rows in (1, 16, 128):
        out.append(("dma_copy", shared, (_hbm("src"),), (_hbm("dst", shape=(rows, 8)),)))
    out.append(("dma_copy", shared, (_hbm("dst", shape=()),), (_hbm("dst", shape=()),)))
    out += [("dma_copy", shared, (r, copy_with(r, role="indirect_offset")), (w,)),
            ("dma_copy", shared, (r,), (w, copy_with(w, p_lo=64))),
            ("dma_copy", dict(shared), (_hbm("src"),), (_sbuf("dst", shape=(128, 8)),))]
    return out


@pytest.mark.parametrize("at_once", [None, 5])
def test_varied_transfers_get_their_own_dicts(at_once, monkeypatch):
    """(at_once: the transfers grouped a block at a time, blocks smaller than the
    program)"""
    if at_once is not None:
        monkeypatch.setattr(costs, "_PRICED_AT_ONCE", at_once)
    model = cost_model(load_chip("trn2"))
    transfers = _varied_transfers()
    instrs = []
    # every transfer several times, interleaved with compute, in a shuffled order
    order = np.random.default_rng(0).permutation(len(transfers) * 3) % len(transfers)
    for k in order.tolist():
        op, attrs, reads, writes = transfers[k]
        instrs.append(Instruction(len(instrs), 0, "dma", op, reads, writes, None, attrs,
                                  "q0"))
        a = _sbuf("dst")
        instrs.append(Instruction(len(instrs), 0, "vector", "memset", (), (a,), None, {}))
    program = Program(load_chip("trn2"), 1, instrs)
    program._access_columns = access_columns.build(instrs)
    want = _one_by_one(program, model)
    _same_dicts(_priced_by_columns(program, model), want)
    # the fields changed alone give other costs (they are in the key for a reason)
    assert len({id(x) for x in want if x is not None}) > len(transfers) // 2


@pytest.mark.parametrize("grouped", [True, False])
def test_cost_identities_of_the_dicts(grouped):
    """dma_cost_identities: the ids of the very dicts one by one gives, read off the
    grouped results for its first caller, off the list after (or without columns)."""
    model = cost_model(load_chip("trn2"))
    instrs = []
    for op, attrs, reads, writes in _varied_transfers() * 2:
        instrs.append(Instruction(len(instrs), 0, "dma", op, reads, writes, None, attrs,
                                  "q0"))
        instrs.append(Instruction(len(instrs), 0, "vector", "memset", (), (_sbuf("dst"),),
                                  None, {}))
    program = Program(load_chip("trn2"), 1, instrs)
    if grouped:
        program._access_columns = access_columns.build(instrs)
    want = np.array([id(x) for x in _one_by_one(program, model)], np.intp)
    dma_costs(program, model, keep_groups=True)
    at = np.arange(0, len(instrs), 2)[::-1]  # (the transfers, in another order)
    assert (costs.priced(program, model).dma_groups is not None) == grouped
    assert np.array_equal(costs.dma_cost_identities(program, model, at), want[at])
    assert costs.priced(program, model).dma_groups is None  # (taken)
    assert np.array_equal(costs.dma_cost_identities(program, model, at), want[at])
    program.__dict__.pop("_priced")
    dma_costs(program, model)  # (not kept unless asked)
    assert costs.priced(program, model).dma_groups is None


def test_without_columns_one_by_one():
    model = cost_model(load_chip("trn2"))
    op, attrs, reads, writes = _varied_transfers()[0]
    program = Program(load_chip("trn2"), 1,
                      [Instruction(0, 0, "dma", op, reads, writes, None, attrs, "q0")])
    assert access_columns.kept_columns(program) is None
    _same_dicts(dma_costs(program, model), _one_by_one(program, model))


@pytest.mark.parametrize("variant, chip", [("tiled", "trn1"), ("block_mnk", "trn2")])
def test_recorded_kernels(variant, chip):
    """The allocated program's handed-over columns (the virtual accesses' `sizes`)
    are build()'s and price as one by one."""
    program = tutorial_run(variant, chip).program
    cols = access_columns.kept_columns(program)
    assert cols is not None
    built = access_columns.build(program.instructions)
    for k in range(len(access_columns.SHARED)):
        assert np.array_equal(cols.column(k), built.column(k))
    model = cost_model(program.chip)
    _same_dicts(_priced_by_columns(program, model), _one_by_one(program, model))
    assert sum(ins.engine == "dma" for ins in program.instructions) > 10


def test_distinct_rows():
    keys = np.array(list(itertools.product([3, 1], [0, 2], [5, 5]))
                    * 2, np.int64)[::-1].copy()
    first, inverse = distinct_rows(keys)
    assert len(first) == 4
    for i, k in enumerate(inverse.tolist()):
        assert np.array_equal(keys[first[k]], keys[i])
        assert (inverse == k).sum() == 4
