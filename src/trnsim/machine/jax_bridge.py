"""JAX bridge: a `@nki.jit` kernel called with jax arrays returns jax arrays.

    y = rmsnorm(x, gamma)                      # x, gamma: jax arrays
    y = jax.jit(lambda x, g: rmsnorm(x, g))(x, gamma)

launch.py routes a call with any jax array (a tracer under `jax.jit` too) here.
The output shapes and dtypes come from a timing-only trace of the kernel on zero-stride
stand-ins of the arrays (no values); the numerics run goes through `jax.pure_callback`,
so it works eagerly, under `jax.jit` and under `jax.vmap` (one kernel call per batch
element). Arguments other than jax arrays (NumPy arrays, numbers, strings) are passed to
the kernel as they are, at trace time.

Limits: jax arrays are immutable, so a kernel's writes into an input are not seen by
the caller (return what it computes); the kernel's outputs must be arrays; no
differentiation rule is attached (`jax.grad` through a kernel call fails). The Run
returned with the outputs is that of the timing-only trace, which has the same
instruction record as the numerics run unless the kernel branches on values.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def run_jax(run_kernel, fn, args, kwargs, *, lnc, chip, numerics, strict):
    """`run_kernel(fn, args, kwargs, ...)` for arguments holding jax arrays: returns
    (jax outputs, the timing-only Run)."""
    leaves, tree = jax.tree_util.tree_flatten((tuple(args), dict(kwargs or {})))
    dyn = [i for i, v in enumerate(leaves) if isinstance(v, jax.Array)]

    def rebuild(arrays):
        vals = list(leaves)
        for i, a in zip(dyn, arrays):
            vals[i] = a
        return jax.tree_util.tree_unflatten(tree, vals)

    stand_ins = [np.broadcast_to(np.zeros((), leaves[i].dtype), leaves[i].shape)
                 for i in dyn]
    a, k = rebuild(stand_ins)
    traced, run = run_kernel(fn, a, k, lnc=lnc, chip=chip, numerics=False, strict=strict)
    if not numerics:
        return jax.tree_util.tree_map(lambda o: jnp.zeros(o.shape, o.dtype), traced), run

    def spec(o):
        if not isinstance(o, np.ndarray):
            raise TypeError(f"kernel {getattr(fn, '__name__', fn)} returned {o!r}: called "
                            "with jax arrays, a kernel must return arrays")
        return jax.ShapeDtypeStruct(o.shape, o.dtype)

    def host(*arrays):
        a, k = rebuild([np.asarray(x) for x in arrays])
        out, _ = run_kernel(fn, a, k, lnc=lnc, chip=chip, numerics=True, strict=strict)
        return out

    out = jax.pure_callback(host, jax.tree_util.tree_map(spec, traced),
                            *[leaves[i] for i in dyn], vmap_method="sequential")
    return out, run
