"""Parts of the compiled allocation (compiler/compiled_allocation.py) against the NumPy
they stand for: the first use of each block per instruction (`_first_uses`, as
np.unique's first indices) and the instruction of each access row (as a search of the
pointers)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation  # noqa: E402


def _unique_first(keys):
    first = np.unique(keys, return_index=True)[1]
    first.sort(kind="stable")
    return first


@pytest.mark.parametrize("longest", [0, 1, 2, 5, compiled_allocation._RUN_COMPARED,
                                     compiled_allocation._RUN_COMPARED + 3])
def test_first_uses_are_numpy_unique_first_indices(longest):
    rng = np.random.default_rng(longest)
    sizes = rng.integers(1, longest + 1, 300) if longest else np.zeros(0, np.int64)
    if longest:
        sizes[7] = longest
    ins = np.repeat(np.arange(len(sizes)) * 2, sizes)  # (instructions without uses too)
    blocks = rng.integers(0, 4, len(ins))  # (a block met again in one instruction)
    keys = ins * 4 + blocks
    got = compiled_allocation._first_uses(keys, ins)
    want = _unique_first(keys)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    if longest > 1:
        assert len(want) < len(keys)


def test_row_instructions_are_the_search_of_the_pointers():
    ptr = np.array([0, 2, 2, 2, 5, 6, 6, 9])  # (instructions without accesses too)
    rows = np.arange(9)
    got = compiled_allocation._row_instructions(ptr)
    want = np.searchsorted(ptr, rows, "right") - 1
    assert got.dtype == want.dtype and np.array_equal(got, want)
