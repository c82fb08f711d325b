"""The shortcuts of machine/access.py's numerics paths give what the long ways give: a
view's memory layout looked up by what it depends on (`_layout`), and the ufunc buffer
size set through NumPy's settings variable (`row_loops`)."""
import numpy as np

import trnsim
import trnsim.nki.language as nl
from trnsim.machine import access
from trnsim.machine.access import _layout, _work_out_layout, row_loops


def _views(x):
    """Views of SBUF and PSUM tiles of several partition counts and of an HBM input:
    slices, steps, reshapes, other dtypes."""
    views = []
    for buffer in (nl.sbuf, nl.psum):
        for parts in (128, 64, 1):
            t = nl.ndarray((parts, 256), nl.float32, buffer=buffer)
            views += [t, t[:, 3:200], t[:, ::4], t[0:parts // 2 or 1, 7:9],
                      t.reshape((parts, 4, 64))[:, 1:3, ::2], t.view(nl.bfloat16)[:, 5:300]]
    views += [x, x[3:70, 1:9], x[:, ::3], x.reshape((64, 256))[5:9]]
    return views


def test_layouts_looked_up_are_those_worked_out_from_scratch():
    box = {}

    def kernel(x):
        first = _views(x)
        again = _views(x)  # new views and tiles: looked up, not worked out
        access._LAYOUTS.clear()
        box["seen"] = [(_layout(v), _work_out_layout(v)) for v in first]
        box["again"] = [(_layout(v), _work_out_layout(v)) for v in again]
        moved = again[1]
        moved.storage.column += 64  # the same view at another place of the arena
        box["moved"] = (_layout(moved), _work_out_layout(moved))

    trnsim.run_kernel(kernel, (np.zeros((128, 128), np.float32),))
    for got, want in box["seen"] + box["again"]:
        assert got == want
    assert box["seen"] == box["again"]
    got, want = box["moved"]
    assert got == want and want is not None


def test_a_layout_depends_on_the_partitions_and_size_of_its_storage():
    """Views alike but for their storage's partitions (on chip) or size (HBM): moved
    down, the one over the smaller storage leaves it (no layout)."""
    box = {}

    def kernel(big, small):
        pairs = [(nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)[0:64],
                  nl.ndarray((64, 256), nl.float32, buffer=nl.sbuf)[0:64]),
                 (big[0:32], small[0:32])]
        access._LAYOUTS.clear()
        got = []
        for inside, outside in pairs:
            for v in (inside, outside):
                v.offset += 40 * 256 if v.storage.on_chip else 40 * 128
                got.append(_layout(v))
        box["got"] = got

    trnsim.run_kernel(kernel, (np.zeros((128, 128), np.float32),
                               np.zeros((64, 128), np.float32)))
    sbuf_in, sbuf_out, hbm_in, hbm_out = box["got"]
    assert sbuf_in is not None and hbm_in is not None
    assert sbuf_out is None and hbm_out is None


def test_row_loops_keeps_the_error_modes_and_restores_every_setting():
    tile = np.ones((128, 1040), np.float32)[:, :777]
    with np.errstate(over="raise", invalid="ignore"):
        before = (np.getbufsize(), np.geterr())
        with row_loops(tile, tile):
            assert np.getbufsize() == 768
            assert np.geterr() == before[1]
            np.setbufsize(4096)  # (changed inside: undone on the way out too)
        assert (np.getbufsize(), np.geterr()) == before
    try:
        with row_loops(tile, tile):
            raise KeyError
    except KeyError:
        pass
    assert np.getbufsize() == 8192
