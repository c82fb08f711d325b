"""`nki.jit`, `Kernel`, `nki.simulate` and the simulator entry points public test
suites call (`nki.cpu_simulate`, `nki.simulator.simulate_kernel`).

There is no device here: every kernel call runs on the simulated NeuronCore, whether
through `nki.simulate(kernel)(...)` or by calling the `@nki.jit` kernel directly (so
`NKI_SIMULATOR=1`, which routes `@nki.jit` calls to AWS's simulator, changes nothing).
NumPy inputs give NumPy outputs; torch tensors give torch tensors. A `@nki.jit`
function called from inside another kernel is inlined, as the compiler does.

Run settings, read at call time:
- target chip: the `chip=` of `Simulated`, else the innermost `chip_context(chip)`
  (the framework bridges', e.g. `trnsim.torch.on_chip`), else $NKI_NC_VERSION (set per test by
  nki-library's simulation harness: gen2|gen3|gen4), else
  $NEURON_PLATFORM_TARGET_OVERRIDE (trn1|inf2|gen2|trn2|gen3|trn3|gen4), else trn2;
- strict mode (uninitialized reads and numerics hazards raise): `strict=` of
  `Simulated`, else $TRNSIM_STRICT=1.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

from ..machine import hooks, runtime
from ..machine.launch import run_kernel

_NC_VERSION_ENV = "NKI_NC_VERSION"
_CHIP = contextvars.ContextVar("trnsim_chip", default=None)


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
        return Kernel(self.fn, _lnc(grid), **self.options)

    def __call__(self, *args, **kwargs):
        if runtime._active:  # called from inside a running kernel: inline it
            return self.fn(*args, **kwargs)
        return Simulated(self)(*args, **kwargs)

    def __repr__(self):
        return f"<nki Kernel {getattr(self.fn, '__name__', self.fn)} lnc={self.lnc}>"


def _lnc(grid) -> int:
    lnc = grid[0] if isinstance(grid, tuple) and len(grid) == 1 else grid
    if isinstance(lnc, bool) or not isinstance(lnc, int) or lnc not in (1, 2):
        raise ValueError(f"kernel[{grid!r}]: the current NKI launches kernel[lnc] with "
                         "lnc 1 or 2 (SPMD grids are the legacy neuronxcc.nki API)")
    return lnc


def jit(fn=None, **kwargs):
    """Wrap a kernel function; usable as `@jit` or `@jit(...)`."""
    if fn is None:
        return lambda f: Kernel(f, **kwargs)
    return Kernel(fn, **kwargs)


def _as_kernel(kernel) -> Kernel:
    if isinstance(kernel, Kernel):
        return kernel
    if isinstance(kernel, Simulated):
        return kernel.kernel
    if not callable(kernel):
        raise TypeError(f"cannot simulate {kernel!r}: pass an @nki.jit kernel or a function")
    return Kernel(kernel)


class Simulated:
    """`nki.simulate(kernel)`: a callable that runs the kernel on the simulator and
    returns NumPy arrays or torch tensors to match its inputs. `sim[lnc]` selects the
    logical-core count. `chip`, `numerics` and `strict` are trnsim extensions
    (None: from the environment, see the module docstring). After a call,
    `last_run` holds the Run (its `program` is the instruction record)."""

    def __init__(self, kernel, chip=None, numerics=True, strict=None):
        self.kernel = _as_kernel(kernel)
        self.chip = chip
        self.numerics = numerics
        self.strict = strict
        self.last_run = None

    def __getitem__(self, lnc):
        return Simulated(self.kernel[lnc], self.chip, self.numerics, self.strict)

    def __call__(self, *args, **kwargs):
        outputs, self.last_run = run_kernel(
            self.kernel.fn, args, kwargs, lnc=self.kernel.lnc,
            chip=self.chip if self.chip is not None else default_chip(),
            numerics=self.numerics,
            strict=self.strict)
        if os.environ.get("TRNSIM_PROFILE_DIR"):  # write this call's profile there
            hooks.autosave(self.last_run, self.kernel.fn, outputs)
        return outputs

    def __repr__(self):
        return f"<nki.simulate({self.kernel!r})>"


def simulate(kernel):
    """Create a CPU-simulated version of an NKI kernel (`nki.simulate(k)(args)`,
    `nki.simulate(k[2])(args)`)."""
    return Simulated(kernel)


def cpu_simulate(kernel):
    """nki-library's entry point: `nki.cpu_simulate(kernel)[lnc](**inputs)`."""
    return Simulated(kernel)


def simulate_kernel(func, args=(), kwargs=None, lnc=1):
    """vLLM's entry point, `nki.simulator.simulate_kernel(func, args, kwargs, lnc)`:
    run `func(*args, **kwargs)` with `lnc` logical cores and return its outputs."""
    return Simulated(_as_kernel(func)[int(lnc or 1)])(*(args or ()), **(kwargs or {}))


def multi_rank_simulate(kernel, *, world_size: int, per_rank_inputs, chip=None,
                        numerics: bool = True, strict=None) -> list:
    """Run `kernel` on `world_size` ranks in one process (NKI 0.7's
    `nki.multi_rank_simulate`): rank r runs `kernel(*args, **kwargs)` with its pair of
    `per_rank_inputs` (a sequence in rank order, or a mapping rank -> (args, kwargs)).
    Returns each rank's outputs, in rank order. Tensor arguments may differ between
    ranks in value, not in shape or dtype. `chip`, `numerics`, `strict`: as
    nki.simulate's (trnsim extensions)."""
    from ..machine.ranks import run_ranks
    k = _as_kernel(kernel)
    if chip is None and isinstance(kernel, Simulated):
        chip = kernel.chip
    outputs, _ = run_ranks(k.fn, per_rank_inputs, world_size=world_size, lnc=k.lnc,
                           chip=chip if chip is not None else default_chip(),
                           numerics=numerics, strict=strict)
    return outputs


@contextlib.contextmanager
def chip_context(chip):
    """Kernel calls inside run on `chip` (a name, a path to a chip JSON file, or None:
    the environment's) unless they name their own."""
    token = _CHIP.set(chip)
    try:
        yield
    finally:
        _CHIP.reset(token)


def default_chip():
    """The target chip the context or the environment selects (None: the loader's
    default)."""
    if _CHIP.get() is not None:
        return _CHIP.get()
    for var in (_NC_VERSION_ENV, "NEURON_PLATFORM_TARGET_OVERRIDE"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None
