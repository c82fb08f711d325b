"""The shortcuts of the numerics data path (machine/access.py, machine/memory.py) give
what the long ways give: layouts looked up by strides and shape for views at any offset
(a sliding window, fresh tiles), a 0-d value stored without broadcasting it first, the
row-major test, and row_loops setting the error modes with the buffer size."""
import random

import numpy as np
import pytest

import trnsim
import trnsim.nki.language as nl
from trnsim.machine import access
from trnsim.machine.access import _layout, _work_out_layout, row_loops, write_raw
from trnsim.machine.memory import row_major


def _in_kernel(fn, *inputs):
    box = {}

    def kernel(*args):
        box["r"] = fn(*args)
    trnsim.run_kernel(kernel, inputs or (np.zeros((64, 96), np.float32),))
    return box["r"]


def _random_views(rng: random.Random, t, count: int):
    """Views of `t` at random offsets, strides and shapes (some reaching outside its
    storage, some with a negative stride), built from its own parts."""
    views = []
    n = t.storage.row_bytes // t.dtype.itemsize
    for _ in range(count):
        ndim = rng.choice((1, 2, 3)) if not t.on_chip else rng.choice((2, 3))
        shape = tuple(rng.choice((1, 2, 3, 7, 16)) for _ in range(ndim))
        strides = [rng.choice((0, 1, 2, 5, 16, n, -1)) for _ in range(ndim)]
        if t.on_chip:
            strides[0] = n
        offset = rng.randrange(-3, 3 * n)
        views.append(type(t).view_of(shape, t.dtype, t.storage, t.buffer, t.name,
                                     tuple(strides), offset))
    return views


def test_layouts_looked_up_for_views_at_any_offset_are_those_worked_out():
    """Many views over the same strides and shapes (so most are looked up) on SBUF,
    PSUM and HBM storages of several dtypes: each the layout worked out from scratch."""
    rng = random.Random(7)

    def body(x):
        access._LAYOUTS.clear()
        bases = [nl.ndarray((parts, 48), dtype, buffer=buffer)
                 for buffer in (nl.sbuf, nl.psum) for parts in (128, 5)
                 for dtype in (nl.float32, nl.bfloat16, nl.int8)]
        bases += [x, x.view(nl.bfloat16)]
        pairs = []
        for _ in range(3):  # the same random parts again: looked up
            r = random.Random(rng.random())
            for base in bases:
                for v in _random_views(r, base, 60):
                    pairs.append((_layout(v), _work_out_layout(v), _layout(v)))
        return pairs

    pairs = _in_kernel(body)
    assert sum(got is not None for got, _, _ in pairs) > len(pairs) // 4
    assert sum(got is None for got, _, _ in pairs) > len(pairs) // 10
    for got, want, again in pairs:
        assert got == want == again


def test_a_window_sliding_over_an_input_reads_each_place():
    """Slices at every offset of an HBM input (one layout's parts, many offsets) read
    the values there."""
    x = np.arange(64 * 96, dtype=np.float32).reshape(64, 96)

    def body(t):
        return [(r, c, access.read_raw(t[r:r + 8, c:c + 5]))
                for r in range(0, 56, 3) for c in range(0, 91, 7)]

    for r, c, got in _in_kernel(body, x):
        np.testing.assert_array_equal(got, x[r:r + 8, c:c + 5])


SPECIALS = np.array([0x7FC00001, 0xFFC12345, 0x7F800000, 0x80000000, 0x00000001,
                     0x3F800000, 0xFF800000, 0x807FFFFF], dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("dtype", [nl.float32, nl.bfloat16, nl.int32, nl.uint8])
def test_a_0d_value_is_stored_as_its_broadcast(dtype):
    """write_raw of a 0-d value (NaN payloads, -0.0, subnormals, infinities) gives the
    bytes of writing it broadcast, on tiles, strided views and HBM."""
    def body(x):
        got, want = [], []
        for value in SPECIALS:
            for buffer in (nl.sbuf, nl.shared_hbm):
                a = nl.ndarray((16, 24), dtype, buffer=buffer)
                b = nl.ndarray((16, 24), dtype, buffer=buffer)
                isz = a.dtype.itemsize  # (the value's top bytes: bf16 keeps its class)
                raw = np.frombuffer(value.tobytes()[4 - isz:], a.dtype.np).reshape(())
                for key in ((slice(None), slice(None)), (slice(2, 9), slice(1, 23, 3))):
                    write_raw(a[key], raw)
                    write_raw(b[key], np.broadcast_to(raw, b[key].shape).copy())
                got.append(access.read_raw(a).view(np.uint8))
                want.append(access.read_raw(b).view(np.uint8))
        return got, want

    got, want = _in_kernel(body)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_row_major_is_the_elementwise_test():
    """The fast test (the strides of a whole tile) agrees with walking the dims."""
    rng = random.Random(3)

    def walk(t):
        step = 1
        for s, n in zip(reversed(t.strides), reversed(t.shape)):
            if n != 1 and s != step:
                return False
            step *= n
        return True

    def body(x):
        t = nl.ndarray((16, 48), nl.float32, buffer=nl.sbuf)
        views = _random_views(rng, t, 400) + _random_views(rng, x, 400)
        views += [t, x, t[:, 0:1], x[3:4, :], t.reshape((16, 4, 12))]
        return [(row_major(v), walk(v)) for v in views]

    results = _in_kernel(body)
    assert any(got for got, _ in results)
    for got, want in results:
        assert got == want


@pytest.mark.parametrize("cols", [777, 40])
def test_row_loops_with_errors_is_errstate_then_row_loops(cols):
    """row_loops(errors=) leaves NumPy in the state np.errstate(all=) and then
    row_loops do, for strided tiles (buffer changed) and short rows (unchanged), and
    restores the settings, also on an exception."""
    tile = np.ones((128, 1040), np.float32)[:, :cols]
    with np.errstate(over="raise", invalid="warn"):
        before = (np.getbufsize(), np.geterr())
        with np.errstate(all="ignore"), row_loops(tile, tile):
            want = (np.getbufsize(), np.geterr())
        with row_loops(tile, tile, errors="ignore"):
            got = (np.getbufsize(), np.geterr())
        assert got == want
        assert (np.getbufsize(), np.geterr()) == before
        with pytest.raises(KeyError):
            with row_loops(tile, tile, errors="ignore"):
                raise KeyError
        assert (np.getbufsize(), np.geterr()) == before
