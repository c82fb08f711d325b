"""The current NKI API (`import nki`), running on trnsim's simulated NeuronCore."""
from . import collectives, isa, language, typing  # noqa: F401
from . import dtype, simulator  # noqa: F401
from .jit import Kernel, Simulated, cpu_simulate, jit, multi_rank_simulate, simulate  # noqa: F401

__all__ = ["jit", "simulate", "multi_rank_simulate", "Kernel", "isa", "language", "typing"]
