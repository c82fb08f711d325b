"""The example kernels in examples/ run on trn1, trn2 and trn3 and match NumPy
references written here, independently of the examples' own `reference()`."""

import ml_dtypes
import numpy as np
import pytest

from trnsim import nki
from trnsim.examples import load_example

CHIPS = ["trn1", "trn2", "trn3"]
BF16 = ml_dtypes.bfloat16


_load = load_example


@pytest.fixture(scope="module")
def ex():
    return {n: _load(n) for n in ("tensor_add", "softmax", "rmsnorm", "layernorm")}


def _sim(kernel, chip):
    return nki.Simulated(kernel, chip=chip)


def _check(got, want_fp32, dtype):
    """got (in dtype) against an fp32 reference: fp32 to a few ulp; bf16 to the bf16
    rounding of the reference, within one bf16 ulp."""
    assert got.dtype == np.dtype(dtype)
    g = got.astype(np.float32)
    if dtype == np.float32:
        np.testing.assert_allclose(g, want_fp32, rtol=2e-6, atol=2e-6)
    else:
        np.testing.assert_allclose(g, want_fp32.astype(BF16).astype(np.float32),
                                   rtol=2 ** -7, atol=1e-6)


def _rand(rng, shape, dtype, scale=1.0, shift=0.0):
    return (shift + scale * rng.standard_normal(shape)).astype(np.float32).astype(dtype)


# -- my references (fp32 math on the stored input values) ------------------------
def _softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _rmsnorm(x, w, eps):
    x = x.astype(np.float64)
    ms = (x ** 2).mean(axis=1, keepdims=True)
    return (x / np.sqrt(ms + eps) * w.astype(np.float64)).astype(np.float32)


def _layernorm(x, g, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps) * g.astype(np.float64)
            + b.astype(np.float64)).astype(np.float32)


# -- tests ---------------------------------------------------------------------
@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 512), (200, 700), (5, 3)])
def test_tensor_add(ex, chip, dtype, shape):
    rng = np.random.default_rng([CHIPS.index(chip), *shape])
    a, b = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    sim = _sim(ex["tensor_add"].tensor_add_kernel, chip)
    c = sim(a, b)
    want = a.astype(np.float32) + b.astype(np.float32)
    if dtype == np.float32:
        np.testing.assert_array_equal(c, want)
    else:  # one RNE rounding of the exact fp32 sum
        np.testing.assert_array_equal(c.view(np.uint16), want.astype(BF16).view(np.uint16))
    rows, cols = shape
    n_tiles = -(-rows // 128) * -(-cols // 512)
    ops = sim.last_run.program.opcodes()
    assert ops.count("tensor_tensor") == n_tiles and ops.count("dma_copy") == 3 * n_tiles
    assert sim.last_run.chip.name == chip


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 64), (130, 300), (7, 1)])
def test_softmax(ex, chip, dtype, shape):
    rng = np.random.default_rng(1)
    x = _rand(rng, shape, dtype, scale=4.0)
    sim = _sim(ex["softmax"].softmax_kernel, chip)
    y = sim(x)
    _check(y, _softmax(x), dtype)
    np.testing.assert_allclose(y.astype(np.float32).sum(axis=1), 1.0,
                               rtol=0, atol=1e-5 if dtype == np.float32 else 2e-2)
    engines = {i.opcode: i.engine for i in sim.last_run.program}
    assert engines["activation"] == "scalar" and engines["tensor_reduce"] == "vector"


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 256), (150, 96), (3, 40)])
def test_rmsnorm(ex, chip, dtype, shape):
    rng = np.random.default_rng(2)
    x = _rand(rng, shape, dtype, scale=2.0)
    w = _rand(rng, shape[1:], dtype, scale=0.2, shift=1.0)
    y = _sim(ex["rmsnorm"].rmsnorm_kernel, chip)(x, w)
    _check(y, _rmsnorm(x, w, 1e-6), dtype)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 512), (140, 1100), (4, 33)])
def test_layernorm(ex, chip, dtype, shape):
    rng = np.random.default_rng(3)
    x = _rand(rng, shape, dtype, scale=1.5, shift=3.0)  # a mean far from 0
    g = _rand(rng, shape[1:], dtype, scale=0.2, shift=1.0)
    b = _rand(rng, shape[1:], dtype, scale=0.3)
    sim = _sim(ex["layernorm"].layernorm_kernel, chip)
    y = sim(x, g, b)
    want = _layernorm(x, g, b, 1e-5)
    if dtype == np.float32:
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    else:
        _check(y, want, dtype)
    ops = sim.last_run.program.opcodes()
    row_tiles, chunks = -(-shape[0] // 128), -(-shape[1] // 512)
    assert ops.count("bn_stats") == row_tiles * chunks
    assert ops.count("bn_aggr") == row_tiles


@pytest.mark.parametrize("name", ["tensor_add", "softmax", "rmsnorm", "layernorm"])
def test_main_runs(ex, name, capsys):
    err = ex[name].main("trn2")
    assert err < 1e-5
    assert name in capsys.readouterr().out


def test_example_references_agree_with_mine(ex):
    rng = np.random.default_rng(4)
    x = _rand(rng, (9, 40), np.float32, scale=2.0, shift=1.0)
    w, b = _rand(rng, (40,), np.float32), _rand(rng, (40,), np.float32)
    np.testing.assert_allclose(ex["softmax"].reference(x), _softmax(x), rtol=1e-6)
    np.testing.assert_allclose(ex["rmsnorm"].reference(x, w), _rmsnorm(x, w, 1e-6),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex["layernorm"].reference(x, w, b), _layernorm(x, w, b, 1e-5),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ex["tensor_add"].reference(x, w[None, :].repeat(9, 0)),
                                  x + w)


def test_load_example_registers_the_module_while_it_runs(tmp_path, monkeypatch):
    """A dataclass under postponed annotations looks its module up in sys.modules."""
    import trnsim.examples as examples
    (tmp_path / "with_dataclass.py").write_text(
        "from __future__ import annotations\nfrom dataclasses import dataclass\n\n\n"
        "@dataclass\nclass Point:\n    x: int\n")
    monkeypatch.setattr(examples, "EXAMPLES", tmp_path)
    assert examples.load_example("with_dataclass").Point(3).x == 3
