"""The compiler model: what neuronx-cc does between the kernel's instructions and the
engines, as passes over the recorded Program (Program -> Program), chained here.

- hoist: a loop-invariant load is issued once, not every iteration.
- allocation: on-chip blocks get physical SBUF/PSUM space from first to last use;
  what does not fit spills to HBM (save and reload DMAs in the program).
- schedule: the order each engine issues its instructions in (list scheduling across
  independent iterations), `Program.issue`.
"""
from __future__ import annotations

from ..machine.gc_pause import gc_paused
from .allocation import allocate
from .hoist import hoist_invariant_loads
from .plan import MemoryPlan
from .schedule import IssueOrder, order_instructions

__all__ = ["compile_program", "hoist_invariant_loads", "allocate", "order_instructions",
           "MemoryPlan", "IssueOrder"]


def compile_program(program):
    """The program as the compiler would emit it (see each pass)."""
    with gc_paused():
        program = allocate(hoist_invariant_loads(program))
        program.issue = order_instructions(program)
    return program
