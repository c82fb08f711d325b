"""Elementwise arithmetic on arena tiles runs row by row (machine/access.row_loops) and
the arenas' row pitch is skewed off the cache sets (machine/memory.py): neither may
change a value. References are NumPy on contiguous copies, or loops written here."""
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.access import row_loops

from kernel_helpers import bits, load, store

SPECIALS = np.array([np.nan, -np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-40, -1e-42, 1e-45,
                     3.4e38, -3.4e38, 88.7, -103.0, 1.0], np.float32)


def _awkward(shape, seed):
    """Random values with NaN (a payload one too), +-0.0, +-inf, subnormals and values
    near fp32 overflow scattered through them."""
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape)).astype(np.float32)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=min(flat.size, 5 * SPECIALS.size), replace=False)
    flat[idx] = np.resize(SPECIALS, idx.size)
    flat[idx[0]] = np.array([0x7FC01234], np.uint32).view(np.float32)[0]
    return x


def _in_arena(x, pitch_elems, column=3):
    """`x` copied into rows `pitch_elems` apart: a tile of a bigger array, as an arena's."""
    arena = np.full((x.shape[0], pitch_elems), np.float32(7), np.float32)
    view = arena[:, column:column + x.shape[1]]
    view[...] = x
    return view


def test_row_loops_sets_the_buffer_for_strided_rows_only_and_restores_it():
    before = np.getbufsize()
    tile = _in_arena(np.ones((128, 777), np.float32), 8208)
    with row_loops(tile, np.float32(2)):
        assert np.getbufsize() == 768  # a multiple of 16 no longer than a row
    assert np.getbufsize() == before
    for arrays in ((np.ones((128, 777), np.float32),),  # contiguous
                   (_in_arena(np.ones((128, 100), np.float32), 8208),),  # short rows
                   (np.ones((128, 1000), np.float32)[:, ::2],),  # no contiguous run
                   (None, 1.5)):
        with row_loops(*arrays):
            assert np.getbufsize() == before


@pytest.mark.parametrize("cols", [256, 300, 777, 2047, 4100])
def test_elementwise_results_in_row_loops_are_those_of_contiguous_arrays(cols):
    """Bit for bit, NaN payloads and signs included: a NaN column or constant against
    NaNs in the tile is the case where NumPy's loops could pick another NaN."""
    x, y = _awkward((128, cols), cols), _awkward((128, cols), cols + 1)
    column = _awkward((128, 1), cols + 2)
    xv, yv = _in_arena(x, 2 * cols + 40), _in_arena(y, 4160)
    exp64 = lambda a: np.exp(a, out=np.empty(a.shape, np.float32), dtype=np.float64,
                             casting="same_kind")
    cases = {  # name: (function, its operands as strided tiles, as contiguous arrays)
        "add": (np.add, (xv, yv), (x, y)),
        "divide": (np.divide, (yv, xv), (y, x)),
        "maximum": (np.maximum, (xv, y), (x, y)),
        "multiply by a column": (np.multiply, (xv, column), (x, column)),
        "column minus": (np.subtract, (column, xv), (column, x)),
        "NaN constant": (np.multiply, (np.float32(-np.nan), xv), (np.float32(-np.nan), x)),
        "exp in float64": (exp64, (xv,), (x,)),
        "where": (lambda a, b: np.where(np.abs(a) > np.abs(b), a, b), (xv, yv), (x, y)),
    }
    with np.errstate(all="ignore"):
        for name, (f, tiles, arrays) in cases.items():
            with row_loops(*tiles):
                got = f(*tiles)
            np.testing.assert_array_equal(bits(got), bits(f(*arrays)), err_msg=name)
        for name, (f, tiles, arrays) in cases.items():
            if name != "exp in float64" and name != "where":  # a ufunc into arena rows
                out = _in_arena(np.zeros((128, cols), np.float32), cols + 16)
                with row_loops(*tiles, out):
                    f(*tiles, out=out)
                np.testing.assert_array_equal(bits(out), bits(f(*arrays)), err_msg=name)
        acc = _in_arena(x, 2 * cols + 40)
        with row_loops(acc, y):
            np.add(acc, y, out=acc)
        np.testing.assert_array_equal(bits(acc), bits(x + y), err_msg="in place")


@nki.jit
def strided_arithmetic(x, y, s):
    """Arithmetic on column slices of SBUF tiles (strided views of the arena)."""
    xt, yt, st = load(x), load(y), load(s)
    w = x.shape[1] - 5
    tt = nl.ndarray((x.shape[0], w), nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=tt, data1=xt[:, 2:2 + w], data2=yt[:, 5:5 + w], op=nl.subtract)
    ts = nl.ndarray((x.shape[0], w), nl.bfloat16, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=ts, data=xt[:, 1:1 + w], op0=nl.multiply, operand0=st,
                       op1=nl.add, operand1=0.375)
    ex = nl.ndarray((x.shape[0], w), nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=ex, op=nl.exp, data=yt[:, 0:w], bias=st, scale=0.5)
    wide = nl.ndarray((x.shape[0], w + 9), nl.float32, buffer=nl.sbuf)  # fp32: into dst
    nisa.memset(dst=wide, value=7.0)
    nisa.tensor_scalar(dst=wide[:, 4:4 + w], data=xt[:, 1:1 + w], op0=nl.multiply,
                       operand0=st, op1=nl.subtract, operand1=0.375, reverse1=True)
    return store(tt), store(ts), store(ex), store(wide)


@pytest.mark.parametrize("cols", [261, 300, 1029])
def test_instructions_on_strided_tiles_match_a_per_element_reference(cols):
    x, y = _awkward((128, cols), 2 * cols), _awkward((128, cols), 2 * cols + 1)
    s = _awkward((128, 1), 7)
    (tt, ts, ex, wide), _ = trnsim.run_kernel(strided_arithmetic, (x, y, s), chip="trn2")
    w = cols - 5
    want_tt = np.empty((128, w), np.float32)
    want_ts = np.empty((128, w), np.float32)
    want_ex = np.empty((128, w), np.float32)
    want_wide = np.full((128, w + 9), np.float32(7))
    with np.errstate(all="ignore"):
        for p in range(128):  # one element at a time, as NumPy scalars
            for j in range(w):
                want_tt[p, j] = x[p, 2 + j] - y[p, 5 + j]
                want_ts[p, j] = x[p, 1 + j] * s[p, 0] + np.float32(0.375)
                v = y[p, j] * np.float32(0.5) + s[p, 0]
                want_ex[p, j] = np.float32(np.exp(np.float64(v)))
                want_wide[p, 4 + j] = np.float32(0.375) - x[p, 1 + j] * s[p, 0]
    _same_values(tt, want_tt)
    _same_values(ts, want_ts.astype(ts.dtype))
    _same_values(ex, want_ex)
    _same_values(wide, want_wide)


def _same_values(got, want):
    """Bit for bit, except that a NaN need only be a NaN: which operand's NaN a scalar
    NumPy operation returns is not the vector loops' choice (the first test pins those
    bits against the vector loops)."""
    nan = np.isnan(want.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(bits(got)[~nan], bits(want)[~nan])


def test_arena_and_tile_pitches_are_off_the_64k_cache_period():
    """Rows of the arena and of a virtual tensor's own array (memory.py's `_tile`) are
    an odd number of cache lines apart: never a multiple of 64 KiB, and not adjacent
    (NumPy then loops over them row by row, as the NaN choices above assume)."""
    from trnsim.machine.memory import OnChipMemory, _tile
    mem = OnChipMemory("sbuf", 0, 128, 196608, 64, "trn2")
    assert mem.row_bytes % 65536 and mem.row_bytes % 64 == 0
    assert mem.row_bytes >= mem.virtual_base
    assert mem.data.shape == (128, mem.row_bytes)
    for nbytes in (4, 512, 1200, 8192, 65536):
        pitch = _tile(128, nbytes).shape[1]
        assert pitch > nbytes and pitch % 128 == 64


@nki.jit
def accumulate_two(a, b):
    """Two matmuls into one PSUM tile of 300-element rows (the second adds in place)."""
    at, bt = load(a), load(b)
    ps = nl.ndarray((64, 300), nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=ps, stationary=at[:, 0:64], moving=bt[:, 0:300])
    nisa.nc_matmul(dst=ps, stationary=at[:, 64:128], moving=bt[:, 300:600])
    return store(ps)


@pytest.mark.parametrize("mode", ["exact", "fp32"])
def test_psum_accumulation_on_long_rows_is_the_fp32_sum(monkeypatch, mode):
    """Integer-valued operands (every sum exact, so the GEMM's order does not matter),
    with inf and a column of -0.0 products: the second matmul's fp32 result added to
    the first in fp32, element by element."""
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", mode)
    rng = np.random.default_rng(12)
    a = rng.integers(-8, 9, (128, 128)).astype(np.float32)
    b = rng.integers(-8, 9, (128, 600)).astype(np.float32)
    a[5, 70] = np.inf
    b[:, 7] = -0.0
    a[:, :64] *= np.float32(2.0 ** -20)
    out, _ = trnsim.run_kernel(accumulate_two, (a, b), chip="trn2")
    with np.errstate(all="ignore"):
        first = (a[:, 0:64].astype(np.float64).T @ b[:, 0:300]).astype(np.float32)
        second = (a[:, 64:128].astype(np.float64).T @ b[:, 300:600]).astype(np.float32)
    want = np.empty_like(first)
    for i, j in np.ndindex(*want.shape):
        want[i, j] = first[i, j] + second[i, j]
    _same_values(out, want)


# -- activation results computed straight into dst (Instr.write_into) ------------------
@nki.jit
def activations_into(x, b):
    """exp with bias into: an SBUF tile, a 3-D tile, a column slice of a wider tile,
    PSUM, and the data tile itself; each one summed into the accumulator registers."""
    P, F = x.shape
    xt, bt = load(x), load(b)
    whole = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    cube = nl.ndarray((P, 4, F // 4), nl.float32, buffer=nl.sbuf)
    wide = nl.ndarray((P, F + 40), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=wide, value=7.0)
    ps = nl.ndarray((P, 512), nl.float32, buffer=nl.psum)
    sums = []
    for dst, data in ((whole, xt), (cube, xt.reshape((P, 4, F // 4))),
                      (wide[:, 17:17 + F], xt), (ps, xt[:, 0:512]), (xt, xt)):
        r = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=dst, op=nl.exp, data=data, bias=bt, scale=0.5,
                        reduce_op=nl.add, reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        sums.append(store(r))
    return (store(whole), store(cube), store(wide), store(ps), store(xt)) + tuple(sums)


@pytest.mark.parametrize("strict", [False, True])
def test_activation_into_dst_matches_the_per_element_function_and_sum(strict):
    """Values bit for bit against exp(float64) per element, register sums against the
    sequential fp32 chain; strict mode reads every dst back (its flags were set)."""
    rng = np.random.default_rng(13)
    x = (2 * rng.standard_normal((128, 600))).astype(np.float32)
    x[3, 5], x[9, 100], x[20, 7] = np.float32(1e-42), np.float32(-0.0), np.float32(200.0)
    b = rng.standard_normal((128, 1)).astype(np.float32)
    outs, _ = trnsim.run_kernel(activations_into, (x, b), chip="trn2", strict=strict)
    whole, cube, wide, ps, inplace, *sums = outs
    with np.errstate(all="ignore"):
        v = x * np.float32(0.5) + b
        want = np.exp(v.astype(np.float64)).astype(np.float32)
    for got, w in ((whole, want), (cube.reshape(128, -1), want), (wide[:, 17:617], want),
                   (ps, want[:, 0:512]), (inplace, want)):
        _same_values(got, w)
    assert (wide[:, :17] == 7).all() and (wide[:, 617:] == 7).all()  # untouched
    for got, w in zip(sums, (want, want, want, want[:, 0:512], want)):
        chain = np.zeros(128, np.float32)
        for j in range(w.shape[1]):
            chain = chain + w[:, j]
        _same_values(got.reshape(-1), chain)
