"""The `neuronxcc.nki` top-level module (legacy NKI 0.1) on trnsim:
`jit`, `trace`, `baremetal`, `benchmark`, `profile`, `simulate_kernel`, the `tensor`
class, `FrameworkKernel`, and the submodules `language`, `isa`, `typing`, `compiler`.

    import trnsim.compat; trnsim.compat.install()
    import neuronxcc.nki as nki              # this module
    from neuronxcc import nki                # the same
    import neuronxcc.nki.language as nl
"""
from __future__ import annotations

from ..machine.errors import UnsupportedError
from . import compiler, isa, language, typing  # noqa: F401 - nki.language etc.
from .jit import (BenchmarkResult, LegacyKernel, baremetal, benchmark, jit,  # noqa: F401
                  profile, simulate_kernel, trace)
from .typing import tensor

__all__ = ["jit", "trace", "baremetal", "benchmark", "profile", "simulate_kernel", "tensor",
           "FrameworkKernel", "language", "isa", "typing", "compiler"]


class FrameworkKernel:
    r"""Base class a framework integration derives from to emit a NKI kernel as an XLA
    custom call (`translate_to_neuron_dtype`, `is_framework_tensor`,
    `map_framework_tensor` are the subclass's to implement).

    On trnsim there is no HLO: `dump_config` raises UnsupportedError. Calling the object
    runs its kernel on the simulator with the given (NumPy or torch) arguments."""

    def __init__(self, func_name=None, func=None, grid=(), **kwargs):
        self.func_name = func_name or getattr(func, "__name__", None)
        self.func = func
        self.grid = tuple(grid) if isinstance(grid, (tuple, list)) else (grid,)
        self.options = kwargs
        self.enable_cache = kwargs.get("enable_cache", False)

    def dump_config(self, *args, **kwargs):
        r"""Returns the `backend_config` of the XLA custom call -- not available on the
        simulator (there is no Neuron compiler to serialise the kernel)."""
        raise UnsupportedError(
            f"FrameworkKernel.dump_config ({self.func_name}): trnsim runs NKI kernels on a "
            "simulated NeuronCore and produces no XLA custom-call backend_config; call the "
            "kernel directly (or through nki.simulate_kernel) instead", op="dump_config")

    def is_framework_tensor(self, t):
        r"""Whether `t` is a framework tensor (to be implemented by the framework)."""
        raise NotImplementedError("FrameworkKernel.is_framework_tensor is implemented by a "
                                  "framework-specific subclass")

    def map_framework_tensor(self, t):
        r"""(shape, dtype) of a framework tensor (to be implemented by the framework)."""
        raise NotImplementedError("FrameworkKernel.map_framework_tensor is implemented by a "
                                  "framework-specific subclass")

    def translate_to_neuron_dtype(self, _dtype):
        r"""The NKI dtype of a framework dtype (to be implemented by the framework)."""
        raise NotImplementedError("FrameworkKernel.translate_to_neuron_dtype is implemented "
                                  "by a framework-specific subclass")

    def __call__(self, *args, **kwargs):
        if self.func is None:
            raise TypeError("FrameworkKernel has no kernel function (func=)")
        kernel = LegacyKernel(self.func)
        if self.grid:
            kernel = kernel[self.grid]
        return kernel(*args, **kwargs)
