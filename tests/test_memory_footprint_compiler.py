"""What the compiler model keeps while it works and after: the allocator drops each
block's state at its last use, the memory plan's usage series is compact and reads as
(index, bytes) steps, and the list scheduler's successor lists keep each producer's
successors in program order. These are the Python passes' (TRNSIM_COMPILED=0: the
compiled paths hold their state in arrays). (Peak memory figures: benchmarks/memory.py.)"""
import numpy as np
import pytest

import trnsim
from trnsim.compiler import allocation, schedule
from trnsim.compiler.plan import Steps

from benchmarks.fidelity import strided_stores  # column tiles: two tensors per iteration


@pytest.fixture(autouse=True)
def python_passes(monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "0")


def _capture(monkeypatch, cls):
    seen = []
    run = cls.run

    def wrapped(self):
        seen.append(self)
        return run(self)
    monkeypatch.setattr(cls, "run", wrapped)
    return seen


def test_allocator_forgets_every_block_after_its_last_use(monkeypatch):
    seen = _capture(monkeypatch, allocation._Allocator)
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 256), np.float32),), chip="trn2",
                               numerics=False)
    (alloc,) = seen
    assert all(b is None for row in alloc.blocks.values() for b in row)
    assert all(t is None for t in alloc.touched)
    assert len(run.program.memory.placements) == 2 * 32


def test_physical_offsets_are_shared_int_objects():
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 4096), np.float32),), chip="trn2",
                               numerics=False)
    sbuf = [a for ins in run.program for a in ins.accesses if a.space == "sbuf"]
    by_value = {}
    for a in sbuf:
        for v in (a.lo, a.hi):
            assert by_value.setdefault(v, v) is v


def test_usage_steps_read_as_a_list_of_index_bytes_pairs():
    s = Steps([(0, 0)])
    s.note(3, 64)
    s.note(3, 128)  # the same instruction again: its step is replaced
    s.note(5, 0)
    assert list(s) == [(0, 0), (3, 128), (5, 0)]
    assert s == [(0, 0), (3, 128), (5, 0)]
    assert s[-1] == (5, 0) and s[1:] == [(3, 128), (5, 0)] and len(s) == 3


def test_plan_usage_follows_placements():
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 256), np.float32),), chip="trn2",
                               numerics=False)
    plan = run.program.memory
    usage = plan.usage[("sbuf", 0)]
    assert usage[0][0] == 0 and usage[-1][1] == 0
    assert max(v for _, v in usage) == plan.peak[("sbuf", 0)]
    indices = [i for i, _ in usage]
    assert indices == sorted(set(indices))


def test_successors_keep_program_order_per_producer(monkeypatch):
    seen = _capture(monkeypatch, schedule._ListScheduler)
    trnsim.run_kernel(strided_stores, (np.zeros((128, 256), np.float32),), chip="trn2",
                      numerics=False)
    (ls,) = seen
    n = len(ls.instrs)
    assert len(ls.succ) == n
    preds = [0] * n
    for p in range(n):
        succ = [s for s, _ in ls.succ[p]]
        assert succ == sorted(set(succ)) and all(s > p for s in succ)
        assert all(kind in range(4) for _, kind in ls.succ[p])
        for s in succ:
            preds[s] += 1
    assert sum(preds) > 0
    # the successors are the record's own index ints (no int object per edge)
    assert all(s is ls.instrs[s].index for pairs in ls.succ for s, _ in pairs)
