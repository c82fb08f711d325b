"""timing/compiled_deps.py keeps its reader and writer cells as int32: a program whose
reader keys, or a walk whose cells, int32 cannot number is declined (OverflowError: the
Python pass then runs) before anything is written into them."""
import numpy as np
import pytest

pytest.importorskip("numba")

from benchmarks.fidelity import strided_stores  # noqa: E402
import trnsim  # noqa: E402
from trnsim.timing import access_columns, compiled_deps  # noqa: E402


def _program():
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 16), np.float32),),
                               chip="trn2", numerics=False)
    return run.program


def test_reader_keys_past_int32_are_declined():
    program = _program()
    n = len(program.instructions)
    tkey = np.arange(n, dtype=np.int64)
    compiled_deps.list_edges(program, tkey, [])  # (within int32: walked)
    tkey[-1] = 1 << 31
    with pytest.raises(OverflowError, match="reader keys"):
        compiled_deps.list_edges(program, tkey, [])


def test_cells_past_int32_are_declined():
    assert compiled_deps._cells(1 << 31) == 1 << 31
    with pytest.raises(OverflowError, match="cells"):
        compiled_deps._cells((1 << 31) + 1)
    program = _program()
    n = len(program.instructions)
    with pytest.raises(OverflowError, match="cells"):
        compiled_deps.list_edges(program, np.arange(n), [],
                                 caps=(64, 64, (1 << 31) + 1, 64, 256))
    assert access_columns.kept_columns(program) is not None  # (the columns stay)
