"""timing/compiled_deps.py keeps its Recs, reader and writer cells as int32: a program
whose reader keys or partitions (an HBM row pitch's map: rows), or a walk whose cells,
int32 cannot number is declined (OverflowError: the Python pass then runs) before
anything is written into them."""
import numpy as np
import pytest

pytest.importorskip("numba")

from benchmarks.fidelity import strided_stores  # noqa: E402
import trnsim  # noqa: E402
from trnsim.chips import load_chip  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing import access_columns, compiled_deps  # noqa: E402

from test_compiler_deps_compiled import assert_declined_for_the_python_pass  # noqa: E402


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


def _strided(base) -> Program:
    """DMAs writing and reading two rows of 16 bytes, 32 bytes apart, of HBM from
    `base` (a row pitch's map: its rows are the bytes over 32)."""
    def rows(mode, lo):
        return Access("x", mode, "hbm", 0, "t", "float32", (2, 4), ((8, 2), (1, 4)), 0,
                      0, 1, lo, lo + 48, 8, 32, 16)
    spec = [((), (rows("w", base),)), ((rows("r", base + 16),), (rows("w", base),)),
            ((rows("r", base),), ())]
    instrs = [Instruction(i, 0, "dma", "dma_copy", r, w, None, {}, "qSyncIO")
              for i, (r, w) in enumerate(spec)]
    return Program(load_chip("trn2"), 1, instrs)


def test_hbm_rows_past_int32_are_declined(monkeypatch):
    low, high = _strided(1 << 20), _strided(32 << 31)  # (row 2**31 of a pitch of 32)
    # (1's read misses 0's bytes, its write overwrites them: WAW; 2 reads 1's: RAW)
    assert compiled_deps.list_edges(low, [3, 3, 3], [])[1].tolist() == [0, 1]
    with pytest.raises(OverflowError, match="rows"):
        compiled_deps.list_edges(high, [3, 3, 3], [])
    assert_declined_for_the_python_pass(high, monkeypatch)
