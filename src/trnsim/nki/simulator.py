"""`nki.simulator`: the simulator API as vLLM calls it,
`nki.simulator.simulate_kernel(func, args, kwargs, lnc)`, plus `simulate`."""
from .jit import Simulated, simulate, simulate_kernel  # noqa: F401

__all__ = ["simulate_kernel", "simulate", "Simulated"]
