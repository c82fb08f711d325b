"""NKI kernels as PyTorch operators on a simulated NeuronCore, with torch-neuronx's API:

    @nki.jit
    def add_kernel(a, b): ...

    @trnsim.torch.nki_op("mylib::add", mutates_args=())
    def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return trnsim.torch.wrap_nki(add_kernel)[1](a, b)     # or add_kernel(a, b)

`nki_op` registers the function as a `torch.library` custom operator: its CPU (and any
device's) implementation runs the function, whose kernel calls run on the simulator
with numerics on and give torch tensors; its fake implementation runs the same function
on fake tensors, where each kernel call is traced timing-only (shapes and dtypes, no
values: machine/launch.py), so `torch.compile` sees the operator as one node and
`torch.library.opcheck` passes. The returned `CustomOpDef` takes
`register_autograd(backward, setup_context=...)` for training (the backward may call
other NKI operators) and the rest of torch.library's registrations.

Mirrored from torch-neuronx: `nki_op(name, mutates_args=...)` around a function that
calls kernels, `wrap_nki(kernel)[lnc](...)` (and `[grid]` for legacy `neuronxcc.nki`
kernels' SPMD grids), direct `@nki.jit` calls with torch tensors, in-place updates
declared in `mutates_args`. Not mirrored: torch-neuronx's `wrap_nki` is a higher-order
operator that torch.compile captures outside an `nki_op`; here a kernel call inside
`torch.compile` outside an `nki_op` (`wrap_nki`, or calling the `@nki.jit` kernel) is a
graph break and runs eagerly, so register an `nki_op` to keep the kernel in the graph.
(Importing this module marks kernel launches `torch.compiler.disable`: without it
Dynamo would trace into the simulator's Python.) There is no `neuron` device: kernels return
CPU tensors, whatever device their inputs are on. A symbolic size (dynamic shapes) is
specialized to its value: the fake implementation traces the kernel at that shape.

Chip: kernels run on $NEURON_PLATFORM_TARGET_OVERRIDE's chip, else trn2; `chip=` of
`nki_op` or `wrap_nki`, or the `on_chip(chip)` context, select another.
"""
from __future__ import annotations

import contextlib
import functools

import torch

from ..nki.jit import Kernel, Simulated, chip_context, default_chip

on_chip = chip_context  # `with trnsim.torch.on_chip("trn3"): y = op(x)`


def nki_op(name: str, fn=None, /, *, mutates_args=(), device_types=None, schema=None,
           chip=None):
    """Register `fn` (type-annotated, as for `torch.library.custom_op`) as the custom
    operator `name` ("namespace::op"). `mutates_args`: the names of the arguments the
    kernels write in place. `chip`: the simulated chip its kernels run on (None: the
    `on_chip` context, else the environment, else trn2). Returns the
    `torch.library.CustomOpDef`; usable as `@nki_op(name, ...)` or `nki_op(name, fn)`."""

    def register(fn):
        sig = schema if schema is not None else torch.library.infer_schema(
            fn, mutates_args=mutates_args)
        impl = fn if chip is None else _on(fn, chip)
        op = torch.library.custom_op(name, impl, mutates_args=mutates_args,
                                     device_types=device_types, schema=sig)
        op.register_fake(impl)  # kernels called with fake tensors trace timing-only
        return op

    return register if fn is None else register(fn)


def _on(fn, chip):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with chip_context(chip):
            return fn(*args, **kwargs)
    return run


class wrap_nki:
    """`wrap_nki(kernel)[lnc](*args)`: call an NKI kernel (`@nki.jit`, a plain kernel
    function, or a legacy `neuronxcc.nki` kernel) with torch tensors on the simulated
    chip. `[lnc]` (1 or 2; `(lnc,)` too) picks the logical-core count; a legacy
    kernel takes its SPMD grid (`[2, 4]`). `chip`: as for `nki_op`."""

    def __init__(self, kernel, chip=None):
        self.kernel = kernel if _is_legacy(kernel) or isinstance(kernel, Kernel) \
            else Kernel(getattr(kernel, "fn", kernel))
        self.chip = chip
        functools.update_wrapper(self, getattr(self.kernel, "fn", self.kernel),
                                 updated=())

    def __getitem__(self, grid):
        grid = tuple(grid) if isinstance(grid, list) else grid
        return wrap_nki(self.kernel[grid], self.chip)

    @torch.compiler.disable  # the simulator is Python and NumPy: never traced
    def __call__(self, *args, **kwargs):
        with chip_context(self.chip) if self.chip is not None else contextlib.nullcontext():
            if isinstance(self.kernel, Kernel):
                return Simulated(self.kernel, chip=self.chip)(*args, **kwargs)
            return _call_legacy(self.kernel, args, kwargs, self.chip)

    def __repr__(self):
        return f"wrap_nki({self.kernel!r})"


def _launches_run_eagerly():
    from ..legacy.jit import LegacyKernel
    for cls in (Kernel, Simulated, LegacyKernel):
        if not getattr(cls.__call__, "_torchdynamo_disable", False):
            cls.__call__ = torch.compiler.disable(cls.__call__)


_launches_run_eagerly()


def _is_legacy(kernel) -> bool:
    from ..legacy.jit import LegacyKernel
    return isinstance(kernel, LegacyKernel)


def _call_legacy(k, args, kwargs, chip):
    from ..legacy.jit import run_legacy
    from ..machine.launch import _find, _fake_torch
    fake = _find((args, kwargs), _fake_torch)
    outputs, k.last_run = run_legacy(
        k.fn, args, kwargs, k.grid,
        chip=chip or k.options.get("platform_target") or default_chip(),
        numerics=not fake, force_auto_alloc=bool(k.options.get("force_auto_alloc")))
    return outputs


__all__ = ["nki_op", "wrap_nki", "on_chip"]
