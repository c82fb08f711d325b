"""Loop expansion's snapshots (machine/expand_parts.snapshot) take the instructions and
allocations of a block of copies (the iterations an inner loop appended) at once, from
the numbers they were made from: every snapshot of a nested kernel's run must be
the one made item by item from the record alone. (The Layout of a loop around an
inner one is derived from such a snapshot, so the records of the runs, compared with
full runs, check that too.)"""
from __future__ import annotations

import numpy as np

from trnsim.machine import expand_parts, expand_plan
from test_expand import _both, _run, _scale, _stats, tiled_matmul
from test_expand_reentry import _blocks


def _item_by_item(run, *args):
    """The snapshot with no blocks of copies and no cached parts: every instruction's and
    allocation's structure and numbers read from the record."""
    st = run.expansion
    kept = st.parts, st.alloc_parts, st.copied_blocks, st.copied_alloc_blocks
    st.parts, st.alloc_parts, st.copied_blocks, st.copied_alloc_blocks = {}, {}, {}, {}
    try:
        return REAL(run, *args)
    finally:
        st.parts, st.alloc_parts, st.copied_blocks, st.copied_alloc_blocks = kept


REAL = expand_parts.snapshot


def _checked(monkeypatch):
    """Snapshots checked against `_item_by_item`; returns a list of how many blocks of
    copies each span holds (instructions, allocations)."""
    seen = []

    def snapshot(run, *args):
        st = run.expansion
        rows = sum(1 for k, v in st.copied_blocks.items() if args[0] <= k and v[0] < args[1])
        allocs = sum(1 for k, v in st.copied_alloc_blocks.items()
                     if args[2] <= k and v[0] < args[3])
        key, nums, sizes = REAL(run, *args)
        ref_key, ref_nums, ref_sizes = _item_by_item(run, *args)
        assert key == ref_key
        assert nums.dtype == ref_nums.dtype and np.array_equal(nums, ref_nums)
        assert sizes == ref_sizes
        seen.append((rows, allocs))
        return key, nums, sizes
    monkeypatch.setattr(expand_parts, "snapshot", snapshot)
    monkeypatch.setattr(expand_plan, "snapshot", snapshot)
    return seen


def test_snapshots_of_nested_loops_equal_those_made_item_by_item(monkeypatch):
    seen = _checked(monkeypatch)
    lhsT = np.ones((4096, 256), np.float32)  # n's body is heavy enough to expand
    rhs = np.ones((4096, 4096), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(tiled_matmul, lhsT, rhs))
    assert _stats(fast).loops >= 2
    # the outer loop's samples hold blocks of the inner loop's copies, with allocations
    assert any(rows and allocs for rows, allocs in seen)


def test_snapshots_of_a_loop_entered_again_equal_those_made_item_by_item(monkeypatch):
    seen = _checked(monkeypatch)
    x = np.ones((128, 8 * 16 * 16), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(
        _blocks(16, lambda x, out, b, j: _scale(x, out, j, col=(b * 16 + j) * 8)), x))
    assert _stats(fast).fallbacks == 0
    assert any(allocs for _, allocs in seen)
