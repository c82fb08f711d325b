"""Fresh memory holds the fill pattern (NaN for floats, 4 for integers) however it is
kept: a kernel's HBM outputs lay it down lazily, only in the 4 KiB blocks an access
touches (machine/memory.py's `Unwritten`), and the on-chip arenas of finished runs are
reused by later runs (machine/memory.py's `_arena`). The expected values below are
built with NumPy from the pattern and the writes the kernels make."""
import warnings

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki
from trnsim.machine import memory
from trnsim.numerics.dtypes import as_dtype


def _run(kernel, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the kernels read memory they never wrote)
        return trnsim.run_kernel(kernel, args, chip="trn2")[0]


def _bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


@nki.jit
def half_written(x):
    """Writes two tiles of a [256, 512] output (one of them strided), copies a never-
    written span of the output into a third, and leaves the rest alone."""
    o = nl.ndarray((256, 512), nl.float32, buffer=nl.shared_hbm)
    t = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    nisa.dma_copy(dst=o[0:128, 128:256], src=t)
    nisa.dma_copy(dst=o[128:256, 0:128], src=t)
    u = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=u, src=o[0:128, 64:192])  # half never written: NaN there
    nisa.dma_copy(dst=o[128:256, 384:512], src=u)
    return o


def test_partly_written_output_holds_the_fill_pattern_elsewhere():
    x = np.arange(128 * 128, dtype=np.float32).reshape(128, 128) - 5000.5
    want = np.full((256, 512), np.nan, np.float32)
    want[0:128, 128:256] = x
    want[128:256, 0:128] = x
    want[128:256, 384:512] = want[0:128, 64:192]
    got = _run(half_written, x)
    np.testing.assert_array_equal(_bits(got), _bits(want))


@nki.jit
def int_output_row(x):
    o = nl.ndarray((4, 3000), nl.int32, buffer=nl.shared_hbm)
    t = nl.ndarray((1, 1000), nl.int32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    nisa.dma_copy(dst=o[2:3, 1500:2500], src=t)  # starts and ends inside a block
    return o


def test_integer_output_holds_four_where_unwritten():
    x = np.arange(1000, dtype=np.int32).reshape(1, 1000) * -3
    want = np.full((4, 3000), memory.INT_FILL, np.int32)
    want[2, 1500:2500] = x[0]
    np.testing.assert_array_equal(_run(int_output_row, x), want)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float8_e4m3", "int16"])
def test_unwritten_fills_only_what_an_access_needs(dtype):
    dt = as_dtype(dtype)
    nbytes = 5 * memory.Unwritten.BLOCK + 8  # (a short last block)
    buf, lazy = memory.fresh_hbm(nbytes, dt)
    buf[:] = 0xAB  # stands for whatever fresh memory holds
    pattern = np.resize(memory.fill_pattern(dt), nbytes)
    lazy.before(100, 200)  # a read in block 0: block 0 filled
    lazy.before(4096 + 10, 3 * 4096 + 20, covered=True)  # a write of every byte
    assert not lazy.done
    B = memory.Unwritten.BLOCK
    np.testing.assert_array_equal(buf[:B], pattern[:B])
    np.testing.assert_array_equal(buf[B:B + 10], pattern[B:B + 10])  # around the write:
    np.testing.assert_array_equal(buf[3 * B + 20:4 * B], pattern[3 * B + 20:4 * B])  # filled
    assert (buf[2 * B:3 * B] == 0xAB).all()  # inside it: left for the write
    assert (buf[4 * B:] == 0xAB).all()  # untouched
    lazy.before(4 * B, nbytes, covered=True)  # the rest, the short block included
    assert lazy.done
    assert (buf[4 * B:] == 0xAB).all()


@nki.jit
def write_a_tile(x):
    t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    o = nl.ndarray((128, 512), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=o, src=t)
    return o


@nki.jit
def read_a_fresh_tile(x):
    t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    o = nl.ndarray((128, 512), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=o, src=t)  # never written: the fill pattern
    return o


def test_a_later_run_sees_the_fill_pattern_not_an_earlier_runs_values():
    x = np.ones((128, 512), np.float32)
    for _ in range(3):  # (the arenas of the first runs are there to be reused)
        np.testing.assert_array_equal(_run(write_a_tile, x), x)
        got = _run(read_a_fresh_tile, x)
        np.testing.assert_array_equal(_bits(got), _bits(np.full_like(x, np.nan)))


def test_an_arena_with_a_live_view_is_not_reused():
    shape = (3, 777)  # (a shape no run uses)
    data = np.zeros(shape, np.uint8)
    view = data[1:, 5:]
    memory._recycle(data)
    assert not any(a is data for a in memory._SPARE_ARENAS)
    del view
    memory._recycle(data)
    assert memory._arena(*shape) is data
    assert memory._arena(*shape) is not data  # (taken: a fresh one)


def test_the_spare_arenas_are_bounded():
    shapes = [(2, 100 + i) for i in range(memory._MAX_SPARES + 3)]
    for shape in shapes:
        memory._recycle(np.zeros(shape, np.uint8))
    assert [a.shape for a in memory._SPARE_ARENAS] == shapes[-memory._MAX_SPARES:]
