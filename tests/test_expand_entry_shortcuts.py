"""Shortcuts in loop expansion's fixed cost per loop entry give what the plain
computation gives: the instruction parts (machine/expand_parts.py: a snapshot's
allocation bases read once per allocation, kernel locations known to be interned taken
as they are, the int-sequence test of an attrs value), on a record's instructions and
on values that differ from the common case in one type; and iteration 0's row of a
heavy loop's model filled in place (machine/expand_plan.py `_with_first`)."""
from __future__ import annotations

import types

import numpy as np

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand_parts, expand_plan
from trnsim.machine.errors import SourceLocation, interned


@nki.jit
def _shared_tiles(x):
    """Instructions that read and write the same tiles (one allocation read by several
    of them) at offsets inside them."""
    out = nl.ndarray((128, 512), nl.float32, buffer=nl.hbm)
    a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    b = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=x)
    for k in range(4):
        nisa.tensor_tensor(dst=b[:, k * 128:(k + 1) * 128], data1=a[:, k * 128:(k + 1) * 128],
                           data2=a[:, 0:128], op=nl.add)
    nisa.dma_copy(dst=out, src=b)
    return out


def _record():
    x = np.ones((128, 512), np.float32)
    return trnsim.run_kernel(_shared_tiles, (x,), chip="trn2", numerics=False)[1]


def _by_hand(ins, allocs) -> list:
    """An instruction's operand numbers as instruction_parts lists them: offset,
    partitions, the byte range relative to the allocation's vaddr, its id."""
    out = []
    for a in ins.reads + ins.writes:
        base = allocs[a.alloc].vaddr if a.alloc >= 0 else 0
        out += [a.offset, a.p_lo, a.p_hi, a.lo - base, a.hi - base, a.alloc]
    return out


def test_bases_shared_over_a_span_give_each_instructions_own_numbers():
    run = _record()
    p = run.program
    bases = {}
    shared = [expand_parts.instruction_parts(ins, p.allocations, {}, bases)
              for ins in p.instructions]
    alone = [expand_parts.instruction_parts(ins, p.allocations, {})
             for ins in p.instructions]
    assert shared == alone
    # several instructions read one allocation at other byte ranges of it
    assert len(bases) < sum(a.alloc >= 0 for ins in p.instructions
                            for a in ins.reads + ins.writes)
    for ins, (_, nums) in zip(p.instructions, shared):
        ops = _by_hand(ins, p.allocations)
        assert nums[:len(ops)] == ops and nums[len(ops)] == ins.index
    # a stale base (another vaddr under the same id) would show: the ranges move by it
    aid = next(a.alloc for a in p.instructions[1].reads if a.alloc >= 0)
    wrong = {aid: p.allocations[aid].vaddr + 64}
    _, nums = expand_parts.instruction_parts(p.instructions[1], p.allocations, {}, wrong)
    assert nums != alone[1][1]


def test_snapshot_equals_its_instructions_parts_one_by_one():
    run = _record()
    p = run.program
    key, nums, sizes = expand_parts.snapshot(run, 0, len(p.instructions), 0,
                                             len(p.allocations), 0, len(p.fences))
    parts = [expand_parts.instruction_parts(ins, p.allocations, {}) for ins in p.instructions]
    assert list(key[:len(parts)]) == [k for k, _ in parts]
    assert sizes == [len(n) for _, n in parts]
    flat = [x for _, n in parts for x in n]
    assert nums[:len(flat)].tolist() == flat


def test_site_is_the_interned_location():
    run = _record()
    loc = run.program.instructions[1].location
    assert expand_parts._site(loc) is interned(loc) is loc
    assert expand_parts._site(loc) is loc  # (known now)
    equal = SourceLocation(loc.file, loc.line, loc.function)
    assert equal is not loc and expand_parts._site(equal) is loc
    elsewhere = SourceLocation(loc.file, loc.line + 10_000, loc.function)
    assert expand_parts._site(elsewhere) is interned(elsewhere)
    assert expand_parts._site(None) is None and expand_parts._site("x.py:3") == "x.py:3"


def test_attrs_int_sequences_and_their_near_misses():
    attrs = {"tile": (0, 2), "axes": [1], "empty": (), "flags": (True, 0), "mixed": (1, 2.0),
             "big": (2**70, 3), "n": 5, "flag": True, "name": "x", "scale": 1.5,
             "shape": np.arange(3)}
    nums = []
    key = expand_parts._attr_parts(attrs, nums)
    assert key[:4] == (("tile", (tuple, 2)), ("axes", (list, 1)), ("empty", "=", ()),
                       ("flags", "=", (True, 0)))
    assert key[4] == ("mixed", "=", (1, 2.0))
    assert key[5] == ("big", (tuple, 2)) and key[6] == ("n", (None, 1))
    assert key[7:10] == (("flag", "=", True), ("name", "=", "x"), ("scale", "=", 1.5))
    assert key[10][:4] == ("shape", "nd", (3,), str(np.arange(3).dtype))
    assert nums == [0, 2, 1, 2**70, 3, 5]


def _mark(instructions, hbm, pending=False, shared=0):
    return types.SimpleNamespace(instructions=instructions, allocations=0, fences=0,
                                 hbm=hbm, pending=pending, shared=shared)


def _first_row_by_vstack(rows: list, nums: np.ndarray) -> np.ndarray:
    """The plain computation: the samples' step back from sample 1, the record's
    numbers and HBM cursor of iteration 0 over it."""
    a = np.array(rows, dtype=np.int64)
    row = 2 * a[0] - a[1]
    row[:len(nums)] = nums
    return np.vstack((row, a))


def test_first_row_in_place_equals_the_step_back(monkeypatch):
    structure = ("a", "b")
    nums = np.array([7, -3, 2**40, 99], np.int64)  # (the record's numbers, the HBM cursor)
    monkeypatch.setattr(expand_plan, "snapshot", lambda *args: (structure, nums, [2, 1]))
    rng = np.random.default_rng(0)
    for samples in (2, 3):
        rows = [rng.integers(-2**50, 2**50, 9, dtype=np.int64) for _ in range(samples)]
        got = expand_plan._with_first(None, _mark(0, 99), _mark(5, 0), structure, rows)
        want = _first_row_by_vstack(rows, nums)
        assert got.dtype == want.dtype and got.shape == (samples + 1, 9)
        assert np.array_equal(got, want)
        # the frame's numbers (after the record's and the cursor) are one step back
        assert got[0, 4:].tolist() == (2 * rows[0][4:] - rows[1][4:]).tolist()
    rows = [np.arange(9, dtype=np.int64), np.arange(9, dtype=np.int64) + 5]
    assert expand_plan._with_first(None, _mark(0, 99), _mark(5, 0), ("a", "c"), rows) is None
    assert expand_plan._with_first(None, _mark(0, 99, pending=True), _mark(5, 0), structure,
                                   rows) is None
    assert expand_plan._with_first(None, _mark(0, 99, shared=1), _mark(5, 0), structure,
                                   rows) is None
