"""A `@nki.jit` kernel called with jax arrays returns jax arrays equal (bit for bit) to
the same kernel's NumPy result, eagerly, under jax.jit and under jax.vmap; the NumPy
results themselves are checked against independent references in test_kernels_norms.py
and here against NumPy (fp32 matmul: a different summation order -> rtol 1e-5)."""
import ml_dtypes
import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import trnsim  # noqa: E402
import trnsim.kernels  # noqa: E402,F401
from trnsim import nki  # noqa: E402
from trnsim.kernels import matmul, norms  # noqa: E402

RNG = np.random.default_rng(7)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def test_eager_call_returns_jax_arrays_equal_to_numpy():
    x, g = randn(128, 256), randn(256)
    y = norms.rmsnorm(jnp.asarray(x), jnp.asarray(g))
    assert isinstance(y, jax.Array) and y.dtype == jnp.float32
    assert np.array_equal(np.asarray(y), norms.rmsnorm(x, g))


def test_bf16_and_lnc2():
    lhsT, rhs = randn(128, 128, dtype=ml_dtypes.bfloat16), randn(128, 256, dtype=ml_dtypes.bfloat16)
    want = nki.simulate(matmul.matmul[2])(lhsT, rhs)
    got = matmul.matmul[2](jnp.asarray(lhsT), jnp.asarray(rhs))
    assert got.dtype == jnp.bfloat16 and np.array_equal(np.asarray(got), want)


def test_under_jit_with_static_arguments():
    x, w = randn(128, 128), randn(128, 64)

    @jax.jit
    def f(x, w):
        p = norms.softmax(x)
        return matmul.matmul(p.T, w, out_dtype=np.float32) + 1.0

    got = np.asarray(f(jnp.asarray(x), jnp.asarray(w)))
    p = norms.softmax(x)
    want = matmul.matmul(np.ascontiguousarray(p.T), w, out_dtype=np.float32) + 1.0
    assert np.array_equal(got, want)
    e = np.exp(x - x.max(-1, keepdims=True))
    np.testing.assert_allclose(got, (e / e.sum(-1, keepdims=True)) @ w + 1.0,
                               rtol=1e-5, atol=1e-5)


def test_vmap_runs_the_kernel_per_element():
    xs = randn(2, 128, 64)
    got = jax.vmap(norms.softmax)(jnp.asarray(xs))
    assert np.array_equal(np.asarray(got), np.stack([norms.softmax(x) for x in xs]))


def test_timing_only_and_profile_run():
    x = jnp.asarray(randn(128, 64))
    sim = nki.simulate(norms.softmax)
    sim.numerics = False
    y = sim(x)
    assert isinstance(y, jax.Array) and y.shape == (128, 64) and not np.asarray(y).any()
    assert sim.last_run is not None and len(sim.last_run.program) > 0
    assert trnsim.profile(norms.softmax, np.asarray(x), numerics=False).total_time > 0
