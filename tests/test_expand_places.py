"""Loop expansion places the moving operands of its copies (machine/expand_copy._places)
one by one when there are few, with NumPy when there are many: both give the same byte
ranges and share each allocation's id object."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim.machine import expand_copy
from trnsim.machine.record import Allocation


def _allocations(n: int) -> dict:
    return {i: Allocation(i, "sbuf", 0, f"t{i}", "float32[128, 8]", "float32", None,
                          4096 + 64 * i, 32, 32, 0, 128, False, i) for i in range(n)}


def _operands(rng, n: int, allocs: dict, hbm_share: float) -> np.ndarray:
    """Rows of (offset, p_lo, p_hi, lo, hi, allocation id): a share of them in HBM (-1),
    the others' ids scattered or dense."""
    nums = rng.integers(0, 1000, size=(n, 6))
    ids = rng.integers(0, len(allocs), size=n)
    nums[:, 5] = np.where(rng.random(n) < hbm_share, -1, ids)
    return nums


@pytest.mark.parametrize("n", [1, 5, 40, 300, 2000])
@pytest.mark.parametrize("hbm_share", [0.0, 0.5, 1.0])
def test_few_operands_are_placed_as_many_are(monkeypatch, n, hbm_share):
    rng = np.random.default_rng(n)
    allocs = _allocations(3000)
    nums = _operands(rng, n, allocs, hbm_share)
    small = expand_copy._places_small(nums, allocs)
    monkeypatch.setattr(expand_copy, "_SMALL_PLACES", 0)
    large = expand_copy._places(nums, allocs)
    assert small == large
    # worked out by hand: an owned operand's bytes move by its allocation's vaddr
    owned = nums[:, 5] >= 0
    base = np.where(owned, 4096 + 64 * nums[:, 5], 0)
    assert small[0] == (nums[:, 3] + base).tolist()
    assert small[1] == (nums[:, 4] + base).tolist()
    for got in (small, large):
        for aid, own in zip(got[2], owned.tolist()):
            assert aid is allocs[aid].id if own else aid == -1


def test_other_negative_ids_are_kept_as_they_are(monkeypatch):
    """An operand without an allocation keeps its own (negative) id, whatever it is:
    the NumPy path's one-pass lookup is for -1 alone."""
    rng = np.random.default_rng(7)
    allocs = _allocations(300)
    nums = _operands(rng, 600, allocs, 0.5)
    nums[::7, 5] = -2
    monkeypatch.setattr(expand_copy, "_SMALL_PLACES", 0)
    lo, hi, ids = expand_copy._places(nums, allocs)
    want = [int(a) if a < 0 else allocs[int(a)].id for a in nums[:, 5]]
    assert ids == want
    assert ids.count(-2) == len(nums[::7]) and -1 in ids
    base = np.where(nums[:, 5] >= 0, 4096 + 64 * nums[:, 5], 0)
    assert lo == (nums[:, 3] + base).tolist() and hi == (nums[:, 4] + base).tolist()
