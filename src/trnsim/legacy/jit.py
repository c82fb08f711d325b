"""Legacy entry points: `nki.jit(mode=...)`, `baremetal`, `simulate_kernel`,
`benchmark`, `profile`, and SPMD grids `kernel[g0, g1](...)`.

Every mode runs on the simulator (there is no device here). SPMD instances run one
after another on one simulated NeuronCore; each sees its own `nl.program_id(axis)`,
and `shared_hbm` tensors are shared by all of them.
"""
from __future__ import annotations

import functools
import itertools

from ..machine import runtime
from ..machine.errors import NkiValidationError, UnsupportedError
from ..machine.launch import HostArgs, param_names
from ..machine.runtime import Options, Run, activate
from .ops import flush
from .tensor import LTensor

MODES = ("jax", "torchxla", "baremetal", "benchmark", "simulation", "auto")


class nc:
    """`nl.nc(n)`: a launch-grid dimension spread over n physical NeuronCores."""

    def __init__(self, n):
        self.n = int(n)

    def __mul__(self, k):
        return spmd_dim(self, k)

    __rmul__ = lambda self, k: spmd_dim(k, self)  # noqa: E731


class spmd_dim:
    """`nl.spmd_dim(a, b)`: a grid dimension of size a*b (one may be an `nc`)."""

    def __init__(self, *sizes):
        self.sizes = sizes

    def __index__(self):
        n = 1
        for s in self.sizes:
            n *= s.n if isinstance(s, nc) else int(s)
        return n


def _grid_size(g) -> int:
    if isinstance(g, nc):
        return g.n
    return g.__index__() if hasattr(g, "__index__") else int(g)


class LegacyKernel:
    """A `neuronxcc.nki.jit` kernel; `kernel[g0, g1, ...]` sets its SPMD launch grid."""

    def __init__(self, fn, mode="auto", grid=(), **options):
        if mode not in MODES:
            raise ValueError(f"nki.jit mode={mode!r}; one of {', '.join(MODES)}")
        self.fn, self.mode, self.grid, self.options = fn, mode, tuple(grid), options
        functools.update_wrapper(self, fn)

    def __getitem__(self, grid):
        grid = grid if isinstance(grid, tuple) else (grid,)
        return LegacyKernel(self.fn, self.mode, tuple(_grid_size(g) for g in grid),
                            **self.options)

    def __call__(self, *args, **kwargs):
        if runtime._active:  # a kernel calling another kernel: inline it
            return self.fn(*args, **kwargs)
        outputs, run = run_legacy(self.fn, args, kwargs, self.grid,
                                  chip=self.options.get("platform_target"))
        if self.mode == "benchmark":
            self.benchmark_result = BenchmarkResult(run)
        return outputs


def run_legacy(fn, args=(), kwargs=None, grid=(), *, chip=None, numerics=True, strict=None):
    """Run a legacy kernel over its SPMD grid. Returns (host outputs, the Run)."""
    from .language import _wrap_arg
    if strict is None:
        import os
        strict = os.environ.get("TRNSIM_STRICT", "").strip().lower() in ("1", "true", "yes")
    run = Run(chip, 1, Options(numerics=numerics, strict=strict))
    host = HostArgs(run)
    outputs = None
    with activate(run):
        names = param_names(fn, len(args))
        dargs = [_wrap_arg(host.to_device(a, n)) for a, n in zip(args, names)]
        dkwargs = {k: _wrap_arg(host.to_device(v, k)) for k, v in (kwargs or {}).items()}
        for point in itertools.product(*(range(g) for g in grid)) if grid else [()]:
            run.instance = point
            run.grid = grid
            result = fn(*dargs, **dkwargs)
            flush(run)
            if outputs is None:
                outputs = host.to_host(_unwrap(result))
    host.write_back()
    return outputs, run


def _unwrap(r):
    if isinstance(r, LTensor):
        return r.core
    if isinstance(r, (list, tuple)):
        return type(r)(_unwrap(v) for v in r)
    return r


def jit(func=None, mode="auto", **kwargs):
    if func is None:
        return lambda f: LegacyKernel(f, mode, **kwargs)
    return LegacyKernel(func, mode, **kwargs)


def _as_kernel(kernel) -> LegacyKernel:
    return kernel if isinstance(kernel, LegacyKernel) else LegacyKernel(kernel)


def baremetal(kernel=None, **kwargs):
    """NumPy in, NumPy out (here: on the simulator)."""
    if kernel is None:
        return lambda k: baremetal(k, **kwargs)
    return LegacyKernel(_as_kernel(kernel).fn, "baremetal", _as_kernel(kernel).grid)


def simulate_kernel(kernel, *args, **kwargs):
    k = _as_kernel(kernel)
    outputs, _ = run_legacy(k.fn, args, kwargs, k.grid)
    return outputs


class _Latency:
    def __init__(self, run):
        self.run = run

    def get_latency_percentile(self, p):
        raise UnsupportedError(
            "simulated latency needs trnsim's timing model, which is not built yet; the "
            "kernel ran and its instruction record is in benchmark_result.run.program",
            op="benchmark")


class BenchmarkResult:
    """Shaped like nki.benchmark's result: `.nc_latency.get_latency_percentile(p)`."""

    def __init__(self, run):
        self.run = run
        self.nc_latency = _Latency(run)


def benchmark(kernel=None, warmup=10, iters=100, **kwargs):
    """`@nki.benchmark(warmup=, iters=)`: runs once on the simulator; the result's
    latency comes from the timing model (an UnsupportedError until it exists)."""
    if kernel is None:
        return lambda k: benchmark(k, warmup, iters, **kwargs)
    k = _as_kernel(kernel)
    return LegacyKernel(k.fn, "benchmark", k.grid, **kwargs)


def profile(kernel=None, working_directory=None, **kwargs):
    """`@nki.profile`: runs on the simulator (profiles come with the timing model)."""
    if kernel is None:
        return lambda k: profile(k, working_directory, **kwargs)
    k = _as_kernel(kernel)
    return LegacyKernel(k.fn, "baremetal", k.grid)


def program_id(axis):
    run = runtime.active_run()
    if not run.grid:
        return 0
    if not 0 <= axis < len(run.grid):
        raise NkiValidationError(f"program_id({axis}): the launch grid {run.grid} has "
                                 f"{len(run.grid)} dimensions")
    return run.instance[axis]


def num_programs(axes=None):
    run = runtime.active_run()
    grid = run.grid or (1,)
    if axes is None:
        n = 1
        for g in grid:
            n *= g
        return n
    if isinstance(axes, (tuple, list)):
        n = 1
        for a in axes:
            n *= grid[a]
        return n
    return grid[axes]


def program_ndim():
    return len(runtime.active_run().grid)
