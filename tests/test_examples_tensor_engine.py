"""The Tensor Engine example kernels (examples/tiled_matmul.py, pe_transpose.py,
mx_matmul.py) against NumPy references written here."""

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
from trnsim.machine.errors import UnsupportedError
from trnsim.examples import load_example

ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"


load = load_example


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_tiled_matmul(chip):
    mod = load("tiled_matmul")
    rng = np.random.default_rng(0)
    lhsT = rng.standard_normal((384, 256)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((384, 1024)).astype(ml_dtypes.bfloat16)
    out, run = trnsim.run_kernel(mod.tiled_matmul_kernel, (lhsT, rhs), chip=chip)
    exact = lhsT.astype(np.float64).T @ rhs.astype(np.float64)
    np.testing.assert_allclose(out, exact, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mod.reference(lhsT, rhs), exact, rtol=1e-6, atol=1e-5)
    mms = [i for i in run.program if i.opcode == "nc_matmul"]
    assert len(mms) == (384 // 128) * (256 // 128) * (1024 // 512)
    # each PSUM tile: the first K step overwrites, the others accumulate
    assert [i.attrs["accumulate"] for i in mms[:3]] == [False, True, True]
    assert all(i.attrs["K"] == 128 and i.attrs["M"] == 128 and i.attrs["N"] == 512
               for i in mms)


def test_tiled_matmul_main_via_simulate(monkeypatch):
    monkeypatch.setenv(ENV, "trn2")
    mod = load("tiled_matmul")
    out = mod.main(K=256, M=128, N=512)
    assert out.shape == (128, 512)


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_pe_transpose(chip):
    mod = load("pe_transpose")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 136)).astype(np.float32)
    out, run = trnsim.run_kernel(mod.pe_transpose_kernel, (x,), chip=chip)
    assert np.array_equal(out, x.T)
    assert all(i.engine == "tensor" for i in run.program if i.opcode == "nc_transpose")


def test_pe_transpose_bit_exact_specials_and_main(monkeypatch):
    mod = load("pe_transpose")
    x = np.random.default_rng(2).standard_normal((130, 70)).astype(ml_dtypes.bfloat16)
    x[0, 0], x[129, 69], x[64, 3] = np.nan, -np.inf, -0.0
    out = nki.simulate(mod.pe_transpose_kernel)(x)  # default target: trn2 (bit-exact)
    assert np.array_equal(out.view(np.uint16), np.ascontiguousarray(x.T).view(np.uint16))
    mod.main(P=128, F=64)


def test_mx_matmul_on_trn3():
    mod = load("mx_matmul")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((512, 128)).astype(ml_dtypes.bfloat16)
    y = rng.standard_normal((512, 512)).astype(ml_dtypes.bfloat16)
    out, run = trnsim.run_kernel(mod.mx_matmul_kernel, (x, y), chip="trn3")
    ref = mod.reference(x, y)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)
    # an MXFP8 product: close to the bf16 product, not equal to it
    exact = x.astype(np.float64).T @ y.astype(np.float64)
    rel = np.abs(out - exact).max() / np.abs(exact).max()
    assert 1e-4 < rel < 0.1
    ops = [i.opcode for i in run.program]
    assert ops.count("quantize_mx") == 2 and ops.count("nc_matmul_mx") == 1


def test_mx_reference_is_mx_quantization():
    mod = load("mx_matmul")
    # values exactly representable after MX quantization come back unchanged
    x = np.zeros((512, 4))
    x[0, 0], x[128, 0], x[5, 1] = 1.5, -0.75, 448.0
    y = np.eye(512, 4)
    y[128, 0] = 1.0
    ref = mod.reference(x, y)
    assert ref[0, 0] == 1.5 - 0.75 and ref[1, 1] == 0.0


def test_mx_matmul_main_and_unsupported_before_trn3():
    mod = load("mx_matmul")
    mod.main(K=512, M=128, N=512)
    x = np.ones((512, 128), ml_dtypes.bfloat16)
    y = np.ones((512, 512), ml_dtypes.bfloat16)
    with pytest.raises(UnsupportedError):
        trnsim.run_kernel(mod.mx_matmul_kernel, (x, y), chip="trn2")
