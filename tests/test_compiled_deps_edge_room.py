"""The compiled dependency maps' edges (trnsim/timing/compiled_deps.py): producers int32,
kinds and space codes int8, in room for an edge per access and two per instruction
that grows where a program has more (every reader of a wide box written a column at a
time); both passes' edges then as the Python maps find them."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.chips import load_chip  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing import access_columns, compiled_deps  # noqa: E402

from test_compiler_deps_compiled import _same_edges  # noqa: E402
from test_timing_compiled import _same  # noqa: E402

COLUMNS = 40


def _sbuf(mode, lo, hi):
    n = (hi - lo) // 4
    return Access("x", mode, "sbuf", 0, "t", "float32", (64, n), ((n, 1),), 0, 0, 64,
                  lo, hi, n, 64 * n * 4, n * 4)


def _fan_in() -> Program:
    """COLUMNS writes of a column each, then COLUMNS reads of every column: each read
    has COLUMNS producers (RAW), each later write too (WAR and WAW)."""
    engines = ("vector", "scalar", "gpsimd")
    spec = [((), (_sbuf("w", 4 * c, 4 * c + 4),)) for c in range(COLUMNS)]
    spec += [((_sbuf("r", 0, 4 * COLUMNS),), (_sbuf("w", 4096 + 4 * k, 4100 + 4 * k),))
             for k in range(COLUMNS)]
    spec += [((), (_sbuf("w", 0, 4 * COLUMNS),))]
    instrs = [Instruction(i, 0, engines[i % 3], "op", r, w, None, {}, None)
              for i, (r, w) in enumerate(spec)]
    return Program(load_chip("trn2"), 1, instrs)


def test_edges_past_their_first_room_as_the_python_maps_find_them(monkeypatch):
    program = _fan_in()
    n, accesses = len(program), len(access_columns.access_columns(program).acc)
    dptr, prods, kinds = compiled_deps.list_edges(program, list(range(n)), [])
    assert len(prods) > 2 * n + accesses + 16  # (the first room: outgrown)
    assert prods.dtype == np.int32 and kinds.dtype == np.int8
    assert np.diff(dptr)[COLUMNS:].tolist() == [COLUMNS] * COLUMNS + [2 * COLUMNS]
    _same_edges(program, "trn2", monkeypatch)
    _same(program, "trn2")


def test_space_codes_past_int8_are_declined():
    program = _fan_in()
    cols = access_columns.access_columns(program)
    n = len(program)
    remap = np.array([0, 1 << 7], np.int64)
    with pytest.raises(OverflowError):
        compiled_deps._run(cols, np.arange(n), np.zeros(n, np.uint8),
                           np.zeros(n, np.int64), 0, [], remap, 3, False, None)
