"""`nki.jit`, `Kernel` and `nki.simulate`.

There is no device here: a kernel called with host arrays runs on the simulated
NeuronCore of the target chip (NEURON_PLATFORM_TARGET_OVERRIDE, default trn2). A
`@nki.jit` function called from inside another kernel is inlined, as the compiler does.
"""
from __future__ import annotations

import functools
import os

from ..machine import runtime
from ..machine.launch import run_kernel


class Kernel:
    """A `@nki.jit` kernel. `kernel[lnc]` selects the logical-core count (1 or 2)."""

    def __init__(self, fn, lnc: int = 1, **options):
        self.fn = fn
        self.lnc = lnc
        self.options = options
        self.schedule = options.get("schedule")
        self.address_rotation = options.get("address_rotation")
        functools.update_wrapper(self, fn)

    def __getitem__(self, grid):
        lnc = grid[0] if isinstance(grid, tuple) and len(grid) == 1 else grid
        if not isinstance(lnc, int) or lnc not in (1, 2):
            raise ValueError(f"kernel[{grid!r}]: the current NKI launches kernel[lnc] with "
                             "lnc 1 or 2 (SPMD grids are the legacy neuronxcc.nki API)")
        return Kernel(self.fn, lnc, **self.options)

    def __call__(self, *args, **kwargs):
        if runtime._active:  # called from inside a running kernel: inline it
            return self.fn(*args, **kwargs)
        outputs, _ = run_kernel(self.fn, args, kwargs, lnc=self.lnc)
        return outputs

    def __repr__(self):
        return f"<nki Kernel {getattr(self.fn, '__name__', self.fn)} lnc={self.lnc}>"


def jit(fn=None, **kwargs):
    """Wrap a kernel function; usable as `@jit` or `@jit(...)`."""
    if fn is None:
        return lambda f: Kernel(f, **kwargs)
    return Kernel(fn, **kwargs)


class Simulated:
    """`nki.simulate(kernel)`: a callable that runs the kernel on the simulator and
    returns NumPy arrays or torch tensors to match its inputs."""

    def __init__(self, kernel, chip=None, numerics=True, strict=None):
        self.kernel = kernel if isinstance(kernel, Kernel) else Kernel(kernel)
        self.chip = chip
        self.numerics = numerics
        self.strict = _env_flag("TRNSIM_STRICT") if strict is None else strict
        self.last_run = None

    def __getitem__(self, lnc):
        return Simulated(self.kernel[lnc], self.chip, self.numerics, self.strict)

    def __call__(self, *args, **kwargs):
        outputs, self.last_run = run_kernel(self.kernel.fn, args, kwargs,
                                            lnc=self.kernel.lnc, chip=self.chip,
                                            numerics=self.numerics, strict=self.strict)
        return outputs


def simulate(kernel):
    return Simulated(kernel)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
