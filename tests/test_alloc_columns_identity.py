"""timing/access_columns.py tells the HBM accesses' shapes apart by the identity of
their pattern and dtype objects, then by value: equal dtype names or patterns held by
distinct objects, and one pattern object read with several dtypes, must each get
deps.rows_form of their own fields, whatever the chunks they are read in."""
import pytest

from trnsim.machine.access import Access
from trnsim.machine.record import Instruction
from trnsim.timing import access_columns
from trnsim.timing.costs import itemsize
from trnsim.timing.deps import rows_form

from test_access_columns_shapes import rows_forms


def _named(name: str) -> str:
    """`name` as a string object of its own (not the interned one)."""
    return "".join(list(name))


def _hbm(pattern, dtype):
    return Access("in", "r", "hbm", 0, "t", dtype, (1,), pattern, 0, 0, 1, 0, 4096, 1,
                  1024, 256)


def _accesses():
    rows = ((512, 4), (1, 64))
    for dtype in ("float32", _named("float32"), "bfloat16", _named("bfloat16"), "int8"):
        yield _hbm(rows, dtype)
        yield _hbm(((512, 4), (1, 64)), dtype)  # an equal pattern, another object


@pytest.mark.parametrize("chunk", [1, 3, 1 << 14])
def test_rows_forms_by_identity_then_value(chunk, monkeypatch):
    monkeypatch.setattr(access_columns, "_CHUNK", chunk)
    hbm = list(_accesses())
    assert hbm[0].dtype is not hbm[2].dtype and hbm[0].dtype == hbm[2].dtype
    sbuf = Access("out", "w", "sbuf", 0, "s", "float32", (1,), ((1, 1),), 0, 0, 128, 0,
                  64, 16, 2048, 64)
    instrs = [Instruction(i, 0, "dma", "dma_copy", (a,), (sbuf,), None)
              for i, a in enumerate(hbm)]
    cols = access_columns.build(instrs)
    expected = []
    for a in hbm:
        f = rows_form(a, itemsize(a.dtype))
        expected.append([int(f is not None), *(f or (0, 0, 0, 0))])
    assert rows_forms(cols, cols.ptr[:-1]) == expected
    assert len(set(map(tuple, expected))) == 3  # (pitch by dtype: 2048, 1024, 512)
