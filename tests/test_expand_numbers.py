"""A snapshot's numbers (machine/expand_parts.py `_Numbers`): runs of ints and the
numbers [:rows, start:stop] of blocks of copies, gathered as one int64 array in the
order they were added, each block row by row."""
from __future__ import annotations

import numpy as np

from trnsim.machine.expand_parts import _Numbers


def _expected(pieces) -> list:
    """The numbers one by one, read item by item (no NumPy slicing)."""
    out = []
    for piece in pieces:
        if piece[0] == "ints":
            out += piece[1]
        else:
            _, rows, block, start, stop = piece
            for r in range(rows):
                for c in range(start, stop):
                    out.append(int(block[r, c]))
    return out


def _gathered(pieces) -> np.ndarray:
    nums = _Numbers()
    for piece in pieces:
        if piece[0] == "ints":
            nums.add(piece[1])
        else:
            nums.add_block(*piece[1:])
    return nums.array()


def _block(rows, width, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-(1 << 62), 1 << 62, (rows, width), dtype=np.int64)


CASES = {
    "ints only": [("ints", [3, -1, 1 << 60]), ("ints", [7])],
    "nothing": [],
    "a block only": [("block", 3, _block(3, 5, 0), 1, 4)],
    "ints and blocks": [("ints", [1, 2]), ("block", 2, _block(4, 6, 1), 0, 6),
                        ("ints", [9]), ("block", 4, _block(4, 3, 2), 2, 3),
                        ("block", 1, _block(2, 7, 3), 3, 7), ("ints", [5, 6, 7])],
    "blocks back to back, ints last empty": [
        ("block", 2, _block(2, 4, 4), 1, 3), ("block", 3, _block(5, 4, 5), 0, 2),
        ("ints", [])],
    "a block of no rows": [("ints", [4]), ("block", 0, _block(2, 3, 6), 0, 3),
                           ("ints", [8])],
}


def test_numbers_gathered_equal_those_read_one_by_one():
    for name, pieces in CASES.items():
        got = _gathered(pieces)
        assert got.dtype == np.int64, name
        assert got.tolist() == _expected(pieces), name


def test_numbers_differ_where_one_number_of_a_block_does():
    pieces = CASES["ints and blocks"]
    before = _gathered(pieces).tolist()
    pieces[3][2][1, 2] += 1  # (row 1, column 2: inside [:4, 2:3])
    after = _gathered(pieces).tolist()
    assert after == _expected(pieces)
    assert sum(a != b for a, b in zip(before, after)) == 1
