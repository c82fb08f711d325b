"""The compiled exp (isa/exp_fp32.py) against np.exp's float64 rounded to fp32, bit for
bit: on ranges of consecutive fp32 inputs (every input was checked once, see the
module), on inputs whose float64 exp lies next to an fp32 rounding boundary, and
through the activation and exponential instructions against their NumPy route
(TRNSIM_COMPILED=0) with every form of scale and bias and special values."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import exp_fp32
from trnsim.machine import compiled
from kernel_helpers import load, store

pytestmark = pytest.mark.skipif(not compiled.numba_available(), reason="needs numba")

_SPECIALS = np.array([0x7FC00001, 0xFFC12345, 0x7FA00000, 0x7F800000, 0xFF800000, 0x0,
                      0x80000000, 0x1, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF], np.uint32)


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _numpy_exp(t):
    with np.errstate(all="ignore"):
        return np.exp(t.astype(np.float64)).astype(np.float32)


def _compiled_exp(t, scale=None, bias=None):
    """exp_rows, then the rows it leaves by NumPy (as its callers do)."""
    out = np.full(t.shape, np.nan, np.float32)
    assert exp_fp32.applies(t, out, scale, bias)
    redo = exp_fp32.exp_rows(t, out, scale, bias)
    out[redo] = _numpy_exp(_affine(t[redo], _rows(scale, redo), _rows(bias, redo)))
    return out, redo


def _rows(v, rows):
    return v[rows] if isinstance(v, np.ndarray) and v.ndim else v


def _affine(x, scale, bias):
    with np.errstate(all="ignore"):
        t = x if scale is None else x * scale
        return t if bias is None else t + bias


def _consecutive(first: float, count: int) -> np.ndarray:
    """`count` consecutive fp32 values up from `first` (by their bits)."""
    start = int(np.float32(first).view(np.uint32))
    return (np.arange(count, dtype=np.uint64) + start).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("first", [0.0, -0.0, 1e-8, -1e-8, 0.25, -0.7, 10.0, -30.0, -86.5,
                                   -95.0, -103.9, 88.6, 88.71, 3e38, -3e38])
def test_consecutive_inputs_give_numpys_bits(monkeypatch, first):
    monkeypatch.setenv(compiled.ENV, "1")
    t = _consecutive(first, 1 << 16).reshape(64, 1024)
    got, _ = _compiled_exp(t)
    np.testing.assert_array_equal(_bits(got), _bits(_numpy_exp(t)))


# All the fp32 inputs whose float64 np.exp (glibc's exp) lies within 4 ulps of an fp32
# rounding boundary, found by a scan of every input: where a faster exp could round
# otherwise.
_NEAR_A_BOUNDARY = np.array([0x377EFF81, 0x38E69CC1, 0x39C6BE5B, 0xB3000000, 0xBAE0E25C,
                             0xBBF0EDF1, 0xC16912CD], np.uint32).view(np.float32)


def test_inputs_next_to_a_rounding_boundary_go_to_numpy(monkeypatch):
    monkeypatch.setenv(compiled.ENV, "1")
    n = len(_NEAR_A_BOUNDARY)
    t = np.tile(np.linspace(-5, 5, 256, dtype=np.float32), (n, 1))
    t[np.arange(n), 3 * np.arange(n)] = _NEAR_A_BOUNDARY
    got, redo = _compiled_exp(t)
    np.testing.assert_array_equal(_bits(got), _bits(_numpy_exp(t)))
    assert list(redo) == list(range(n))


def test_scale_bias_and_specials_give_numpys_bits(monkeypatch):
    monkeypatch.setenv(compiled.ENV, "1")
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((16, 300)) * 20).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 200, replace=False)] = rng.choice(
        _SPECIALS, 200).view(np.float32)
    scale = (rng.standard_normal((16, 1)) * 2).astype(np.float32)
    bias = (rng.standard_normal((16, 1)) * 5).astype(np.float32)
    scale[3], bias[4] = 0.0, -np.inf
    for s, b in ((None, None), (scale, None), (None, bias), (scale, bias),
                 (np.float32(0.5), np.float32(-3.0))):
        got, _ = _compiled_exp(x, s, b)
        np.testing.assert_array_equal(_bits(got), _bits(_numpy_exp(_affine(x, s, b))))


def test_what_the_compiled_exp_takes(monkeypatch):
    monkeypatch.setenv(compiled.ENV, "1")
    x, out = np.zeros((4, 8), np.float32), np.zeros((4, 8), np.float32)
    assert exp_fp32.applies(x, out, None, np.zeros((4, 1), np.float32))
    assert not exp_fp32.applies(x, x, None, None)  # in place: NumPy's overlap handling
    assert not exp_fp32.applies(x, out, np.float32(np.nan), None)  # (which NaN wins)
    assert not exp_fp32.applies(x[:, ::2], out[:, :4], None, None)
    assert not exp_fp32.applies(x.astype(np.float64), out, None, None)
    monkeypatch.setenv(compiled.ENV, "0")
    assert not exp_fp32.applies(x, out, None, None)


def _activation_kernel(out_dtype, scale, bias_kind, in_place, p):
    def k(x, b):
        xs = load(x)
        bt = load(b)
        y = xs if in_place else nl.ndarray((p, x.shape[1]), out_dtype, buffer=nl.sbuf)
        bias = {"none": None, "const": -2.5, "tensor": bt[:p]}[bias_kind]
        s = nl.ndarray((p, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y[:p] if in_place else y, op=nl.exp, data=xs[:p], bias=bias,
                        scale=bt[:p] if scale == "tensor" else scale,
                        reduce_op=nl.add, reduce_res=s,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        return store(y), store(s)
    return k


def _both_ways(monkeypatch, run):
    monkeypatch.setenv(compiled.ENV, "0")
    python = run()
    monkeypatch.setenv(compiled.ENV, "1")
    return python, run()


@pytest.mark.parametrize("out_dtype,scale,bias_kind,in_place,p", [
    (nl.float32, 1.0, "tensor", False, 128), (nl.float32, 0.75, "none", False, 100),
    (nl.float32, "tensor", "const", False, 128), (nl.bfloat16, 1.0, "tensor", False, 64),
    (nl.float32, 1.0, "tensor", True, 128), (nl.float32, -1.5, "tensor", False, 128)])
def test_activation_exp_gives_the_numpy_route_bits(monkeypatch, out_dtype, scale,
                                                   bias_kind, in_place, p):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((128, 512)) * 30).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 500, replace=False)] = rng.choice(
        _SPECIALS, 500).view(np.float32)
    b = (rng.standard_normal((128, 1)) * 4).astype(np.float32)
    b[9] = np.nan if bias_kind == "tensor" and scale == 1.0 else b[9]
    kernel = _activation_kernel(out_dtype, scale, bias_kind, in_place, p)

    def run():
        (y, s), _ = trnsim.run_kernel(kernel, (x, b), chip="trn2")
        return np.asarray(y).view(np.uint8).copy(), _bits(s).copy()
    (py_y, py_s), (c_y, c_s) = _both_ways(monkeypatch, run)
    np.testing.assert_array_equal(c_y, py_y)
    np.testing.assert_array_equal(c_s, py_s)


def test_exponential_gives_the_numpy_route_bits(monkeypatch):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((128, 384)) * 30).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 300, replace=False)] = rng.choice(
        _SPECIALS, 300).view(np.float32)
    m = x.max(axis=1, keepdims=True)

    def kernel(x, m):
        xs, ms = load(x), load(m)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.exponential(dst=y, src=xs, max_value=ms)
        return store(y)

    def run():
        y, _ = trnsim.run_kernel(kernel, (x, m), chip="trn3")
        return _bits(y).copy()
    python, fast = _both_ways(monkeypatch, run)
    np.testing.assert_array_equal(fast, python)
