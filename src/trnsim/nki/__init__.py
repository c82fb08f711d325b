"""The current NKI API (`import nki`), running on trnsim's simulated NeuronCore."""
from . import collectives, isa, language, typing  # noqa: F401
from . import dtype, simulator  # noqa: F401
from .jit import Kernel, Simulated, cpu_simulate, jit, simulate  # noqa: F401

__all__ = ["jit", "simulate", "Kernel", "isa", "language", "typing"]
