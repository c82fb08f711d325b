"""Copier.fields (machine/expand_copy.py) reads the fields of each distinct Access
object its moving operands hold once, and spreads them to the operands holding it: the
rows are those read operand by operand (the id() of each kept field object, then the
template's offset and partitions), for the copiers of a loop around inner loops too,
whose template holds its inner copies' shared template tuples."""
from __future__ import annotations

import numpy as np

from test_nested_copies_pending import _recorded


def _fields_by_operand(copier) -> np.ndarray:
    held = copier.operands.held_accesses
    rows = [[id(a[f]) for f in (*range(8), *range(13, 17))]
            for a in map(held.__getitem__, copier.layout.moving_at)]
    return np.column_stack((np.array(rows, np.int64).reshape(-1, 12),
                            copier.last[copier.moving[:, :3]]))


def test_fields_are_those_read_operand_by_operand():
    copiers = []
    run = _recorded("matmul", copiers=copiers)
    assert len(run.program.instructions) > 0
    shared = False
    checked = 0
    for copier in copiers:
        if not copier.layout.moving_at:
            assert copier.fields is None
            continue
        got = copier.fields
        assert got.dtype == np.int64
        assert np.array_equal(got, _fields_by_operand(copier))
        held = copier.operands.held_accesses
        accesses = list(map(held.__getitem__, copier.layout.moving_at))
        shared |= len({id(a) for a in accesses}) < len(accesses)
        checked += 1
    assert checked and shared  # (an outer template's operands share Access objects)
