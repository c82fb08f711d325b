"""What a loop entry states cheaply (machine/frame_state.py, machine/expand_parts.py)
must be what the general rules state: a trnsim object by its attributes and its
class's plain attributes, a legacy tensor as a tensor, the locals rebound at every
mark, and an instruction's structure and numbers by its operands' named fields."""
from __future__ import annotations

import sys
import types

import numpy as np

from trnsim.legacy import language as lnl
from trnsim.legacy.jit import run_legacy
from trnsim.legacy.indexing import Index
from trnsim.machine import frame_state
from trnsim.machine.expand_parts import instruction_parts


def _by_the_rules(v):
    """A trnsim object's state as `_state` describes it at depth 1: its attributes (by
    value or identity), then its class's plain attributes."""
    own = tuple((a, x if type(x) in (str, bool, float, type(None), int, bytes)
                 else ("id", id(x))) for a, x in vars(v).items())
    shared = tuple((a, x) for a, x in vars(type(v)).items()
                   if type(x) in (str, bool, float, type(None), int))
    return (type(v).__name__, own + shared)


def test_a_frame_states_trnsim_objects_by_their_attributes():
    ix, _ = lnl.mgrid[0:128, 0:64]
    assert isinstance(ix, Index)
    frame = sys._getframe()
    state, _, tensors, held = frame_state.frame_values(frame)
    assert state["ix"] == ("object", id(ix), _by_the_rules(ix))
    assert frame_state._state(ix, 3, {}) == _by_the_rules(ix)
    assert ix in held and "ix" not in tensors


def test_a_legacy_tensor_in_a_frame_is_a_tensor():
    seen = []

    def kernel(x):
        seen.append(frame_state.frame_values(sys._getframe()))
        return x
    run_legacy(kernel, (np.zeros((128, 8), np.float32),), {}, chip="trn2", numerics=False)
    state, _, tensors, _ = seen[0]
    assert "x" in tensors and "x" not in state
    assert frame_state.tensor_core(tensors["x"]) is not None


def _rebound_by_pairs(marks) -> set:
    """rebound_locals as every consecutive pair of marks tells it."""
    out = set()
    for k, v in marks[0].locals.items():
        if type(v) is tuple and v and v[0] == "object":
            ids = [m.locals.get(k, (None, None))[1] for m in marks]
            if all(a != b for a, b in zip(ids, ids[1:])):
                out.add(k)
    return out


def test_rebound_locals_are_those_bound_anew_at_every_mark():
    def mark(n, **objects):  # (objects by their ids; `n` an int local)
        return types.SimpleNamespace(locals={
            "n": n, **{k: ("object", v, None) for k, v in objects.items()}})
    marks = [mark(5, a=1, b=1, c=1, d=1), mark(6, a=2, b=2, c=1, d=2),
             mark(7, a=3, b=2, c=2), mark(8, a=4, b=3, c=3, d=1)]
    assert frame_state.rebound_locals(marks) == _rebound_by_pairs(marks) == {"a", "d"}
    assert frame_state.rebound_locals(marks[:2]) == _rebound_by_pairs(marks[:2]) \
        == {"a", "b", "d"}


def _parts_by_name(ins, allocs):
    """An instruction's operands' structure and numbers, field by field."""
    acc, nums = [], []
    for a in ins.reads + ins.writes:
        base = allocs[a.alloc].vaddr if a.alloc >= 0 else 0
        acc.append((a.role, a.mode, a.space, a.core, a.tensor, a.dtype, a.shape,
                    a.pattern, a.elems_per_partition, a.bytes, a.contiguous_bytes,
                    a.indirect, a.alloc >= 0))
        nums += (a.offset, a.p_lo, a.p_hi, a.lo - base, a.hi - base, a.alloc)
    return tuple(acc), nums


def test_an_instructions_parts_read_its_operands_fields():
    def kernel(x):
        t = lnl.ndarray((128, 8), dtype=lnl.float32, buffer=lnl.sbuf)
        t[...] = lnl.load(x)
        lnl.store(x, value=lnl.exp(t))
        return x
    _, run = run_legacy(kernel, (np.zeros((128, 8), np.float32),), {}, chip="trn2",
                        numerics=False)
    p = run.program
    kinds = set()
    for ins in p.instructions:
        key, nums = instruction_parts(ins, p.allocations, {})
        acc, operand_nums = _parts_by_name(ins, p.allocations)
        assert key[6] == acc
        assert nums[:len(operand_nums)] == operand_nums
        assert nums[len(operand_nums)] == ins.index
        kinds.update(a.alloc >= 0 for a in ins.reads + ins.writes)
    assert kinds == {True, False}  # operands in HBM and in an allocation


def test_a_front_end_module_registered_later_is_skipped_at_once():
    from trnsim.machine import expand
    name = "/nowhere/front_end.py"
    assert not expand._in_loop_files(name)  # (the answer is kept)
    expand.register_loop_module(name)
    try:
        assert expand._in_loop_files(name)
    finally:
        expand._LOOP_FILES.discard(name)
        expand._IN_LOOP_FILES.clear()
    assert not expand._in_loop_files(name)
