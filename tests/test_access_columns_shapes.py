"""timing/access_columns.py works out the rows form of each HBM access once per
distinct (pattern, bytes, contiguous bytes, dtype), telling patterns apart by object
first: accesses sharing one pattern object but not its bytes or dtype, and equal
patterns that are distinct objects, read in chunks of a few accesses, must each get
deps.rows_form of their own fields."""
import itertools

import numpy as np
import pytest

from trnsim.machine.access import Access
from trnsim.machine.record import Instruction
from trnsim.timing import access_columns
from trnsim.timing.costs import itemsize
from trnsim.timing.deps import rows_form


def rows_forms(cols, rows) -> list:
    """The rows forms of the accesses at `rows` of the columns `cols`, each as
    [has one, pitch, first byte, rows, bytes per row] (deps.rows_form's fields)."""
    acc = cols.acc
    out = np.zeros((len(rows), 5), np.int64)
    form = cols.column(access_columns.FORM)[rows]
    has = form >= 0
    out[has, 0], out[has, 2] = 1, acc[rows, access_columns.LO][has]
    out[has, 1] = cols.forms[form[has], access_columns.PITCH]
    out[has, 3] = cols.forms[form[has], access_columns.ROWS]
    out[has, 4] = cols.forms[form[has], access_columns.RUN]
    return out.tolist()


def _hbm(pattern, nbytes, cbytes, dtype, lo=0, hi=4096):
    return Access("in", "r", "hbm", 0, "t", dtype, (1,), pattern, 0, 0, 1, lo, hi, 1,
                  nbytes, cbytes)


def _sbuf(lo):
    return Access("out", "w", "sbuf", 0, "s", "float32", (1,), ((1, 1),), 0, 0, 128, lo,
                  lo + 64, 16, 2048, 64)


def _accesses():
    shared_rows = ((512, 4), (1, 64))  # one object, read with several byte counts
    yield _hbm(shared_rows, 1024, 256, "float32")  # rows: pitch 2048
    yield _hbm(shared_rows, 1024, 256, "bfloat16")  # rows: pitch 1024
    yield _hbm(shared_rows, 1024, 128, "float32")  # no form: runs not as wide
    yield _hbm(shared_rows, 4096, 1024, "float32")  # one run by its span
    yield _hbm(((512, 4), (1, 64)), 1024, 256, "float32")  # equal, another object
    yield _hbm(((7, 1), (1, 1)), 4, 4, "float32", 0, 2048)  # no dimension over one
    yield _hbm(((-512, 4), (1, 64)), 1024, 256, "float32")  # negative stride: none
    yield _hbm(((0, 1), (512, 8), (1, 16)), 512, 64, "int8", 100, 4000)  # rows


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 14])
def test_rows_forms_by_shape(chunk, monkeypatch):
    monkeypatch.setattr(access_columns, "_CHUNK", chunk)
    hbm = list(_accesses()) * 2
    instrs = [Instruction(i, 0, "dma", "dma_copy", (a,), (_sbuf(64 * i),), None)
              for i, a in enumerate(hbm)]
    cols = access_columns.build(instrs)
    forms = []
    for a in hbm:
        f = rows_form(a, itemsize(a.dtype))
        forms.append([int(f is not None), *(f or (0, 0, 0, 0))])
    assert rows_forms(cols, cols.ptr[:-1]) == forms
    assert len(set(map(tuple, forms))) == 6  # (the cases above differ)
    # the forms table: the distinct (pitch, rows, bytes per row) in value order
    assert cols.forms.tolist() == sorted(map(list, {(f[1], *f[3:]) for f in forms if f[0]}))
    assert (cols.column(access_columns.MAP)[cols.wptr] == 0).all()
    assert cols.spaces == ["hbm", "sbuf"]
