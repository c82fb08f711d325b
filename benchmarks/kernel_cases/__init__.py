"""The rows of docs/kernels.md: one KernelCase per (kernel, shape, dtype), each
profiled timing-only on its chips by benchmarks/kernels.py. One module per kernel
family (matmul.py, norms.py, attention.py, moe.py) defines `CASES`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class KernelCase:
    name: str                 # "flash attention fwd, causal"
    kernel: Callable          # the @nki.jit kernel (from trnsim.kernels.<family>)
    inputs: Callable          # () -> dict of keyword arguments (numpy arrays, scalars)
    shape: str                # "B=1 H=8 S=8192 d=128"
    dtype: str                # "bf16"
    chips: tuple = ("trn2", "trn3")
    target: str = ""          # the target for this row, if any
    kwargs: dict = field(default_factory=dict)  # extra trnsim.profile options (lnc, ...)
