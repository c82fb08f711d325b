"""The current NKI API (`import nki`), running on trnsim's simulated NeuronCore."""
from . import isa, language, typing  # noqa: F401
from .jit import Kernel, Simulated, jit, simulate  # noqa: F401

__all__ = ["jit", "simulate", "Kernel", "isa", "language", "typing"]
