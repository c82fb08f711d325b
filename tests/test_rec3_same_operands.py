"""Layout.same_operands (machine/expand_copy.py) keeps a block's kinds of equal moving
operands for the next block, checking that block's numbers alone while the fields are
the same array (the same Copier's) and fields and numbers otherwise: its kinds are
always those `_kinds` finds in the block's rows (fields and numbers) themselves. A
copy's reads or writes tuples of the same kinds are one tuple, and the record is that
of plain tracing."""
from __future__ import annotations

import types

import numpy as np

from trnsim.machine import expand_copy
from trnsim.machine.runtime import Run

from test_copies_same_operands import tile_read_in_an_inner_loop
from test_expand import _both, _run

M, N = 8, 3  # moving operands, copies


def _layout():
    return types.SimpleNamespace(_same=None, _same_fields=None, _same_rows=None)


def _kinds_of(layout, nums, fields):
    return expand_copy.Layout.same_operands(layout, nums, fields)


def _expected(nums, fields):
    return expand_copy._kinds(np.column_stack((fields, nums.transpose(1, 0, 2).reshape(M, -1))))


def _agree(got, nums, fields):
    first, kind = _expected(nums, fields)
    if first is None:
        return got is None
    return got is not None and (got[0][got[1]] == first[kind]).all()


def test_kinds_kept_while_they_fit_and_found_again_where_not():
    rng = np.random.default_rng(3)
    fields = np.repeat(np.arange(4, dtype=np.int64)[:, None], 2, axis=0).reshape(M, 1)
    fields = np.column_stack((fields, np.zeros((M, 2), np.int64)))  # operands 2k, 2k+1 alike
    pairs = rng.integers(0, 1000, (N, M // 2, 6))
    nums = np.repeat(pairs, 2, axis=1)  # equal numbers within each pair
    layout = _layout()
    got = _kinds_of(layout, nums, fields)
    assert _agree(got, nums, fields) and len(got[0]) == M // 2
    # the next block: other numbers, the same pairs equal (numbers alone checked)
    nums2 = np.repeat(rng.integers(0, 1000, (N, M // 2, 6)), 2, axis=1)
    assert _kinds_of(layout, nums2, fields) is got
    # a pair's numbers differ in one copy: found again
    nums3 = nums2.copy()
    nums3[1, 3, 0] += 1
    got3 = _kinds_of(layout, nums3, fields)
    assert got3 is not got and _agree(got3, nums3, fields) and len(got3[0]) == M // 2 + 1
    # another Copier's fields array, equal: kept (fields and numbers checked)
    nums4 = nums3.copy()
    nums4[:, 3] += 7
    assert _kinds_of(layout, nums4, fields.copy()) is got3
    # fields that tell a pair apart: found again
    fields5 = fields.copy()
    fields5[0, 0] = 99
    got5 = _kinds_of(layout, nums4, fields5)
    assert got5 is not got3 and _agree(got5, nums4, fields5) and len(got5[0]) == M // 2 + 2


def test_operands_mostly_distinct_share_nothing_from_then_on():
    fields = np.zeros((M, 3), np.int64)
    nums = np.arange(N * M * 6, dtype=np.int64).reshape(N, M, 6)
    layout = _layout()
    assert _kinds_of(layout, nums, fields) is None
    assert _kinds_of(layout, np.zeros((N, M, 6), np.int64), fields) is None


def test_tuples_of_the_same_kinds_in_a_copy_are_one_tuple(monkeypatch):
    x = np.ones((128, 128), np.float32)
    _both(monkeypatch, lambda: _run(tile_read_in_an_inner_loop, x))  # (records equal)
    monkeypatch.setattr(Run, "compile", lambda self: None)  # (its passes make new tuples)
    reads = [ins.reads for ins in _run(tile_read_in_an_inner_loop, x).program.instructions
             if ins.opcode == "tensor_tensor"]
    copied = reads[-256:-128]  # the outer iteration before the last (which runs), a copy
    assert len(set(map(id, copied))) == 1
