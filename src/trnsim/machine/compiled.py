"""Whether the compiled paths run, and the decorator that compiles them.

The compiler model's allocation and list scheduling (compiler/compiled_allocation.py,
compiler/compiled_schedule.py) and the timing scheduler with its dependency maps
(timing/compiled.py, timing/compiled_deps.py over timing/access_columns.py) each have a
numba core over arrays that gives exactly what the Python pass it stands in for gives:
benchmarks/scheduler_oracle.py compares every timeline, issue order and compiled record
of the test corpus both ways, and tests/test_*_compiled.py kernel by kernel.

They need numba (`pip install 'trnsim[fast]'`) and run, by env TRNSIM_COMPILED:
- unset or "auto": for programs of at least MIN_INSTRUCTIONS instructions;
- "1": for every program (the tests and the oracle);
- "0": never.
A program a core does not model (spills, collectives, synchronisation groups: each
module says which) goes through the Python pass whatever the setting. One numerics core
has its own "auto" rule: the in-order fold of isa/lane_fold.py runs where numba is
loaded already (by a compiled pass: loading it costs more than the folds save).
"""
from __future__ import annotations

import functools
import os

ENV = "TRNSIM_COMPILED"
# Below this the Python passes are as fast (a compiled pass costs ~1 ms a program
# however small). The first compiled program of a process also pays ~0.4 s of CPU for
# loading numba and the cached machine code.
MIN_INSTRUCTIONS = 64


def mode() -> str:
    """TRNSIM_COMPILED: "0", "1" or anything else (auto)."""
    return os.environ.get(ENV, "auto").strip().lower()


def wanted(instructions: int) -> bool:
    """Whether a program of this many instructions takes the compiled paths."""
    mode_ = mode()
    if mode_ == "0":
        return False
    if mode_ != "1" and instructions < MIN_INSTRUCTIONS:
        return False
    return numba_available()


@functools.cache
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def jit(f=None, **options):
    """f compiled by numba (cached on disk, no GIL, and numba's `options`), or f itself
    without numba (its module is then never called: `wanted` is False). As @jit or
    @jit(**options); one set of options per function (numba's disk cache does not key
    on them)."""
    if f is None:
        return functools.partial(jit, **options)
    if not numba_available():
        return f
    from numba import njit
    return njit(cache=True, nogil=True, **options)(f)


# A helper compiled into each compiled caller: a call of a compiled function costs
# numba's reference counting on each array argument (an atomic increment and
# decrement), which the inlined calls' pairs prune (benchmarks/compiled_speed.py).
inline = jit(inline="always")
# A function that allocates no array, compiled without numba's reference counting
# (`_nrt=False`, a private numba option: pyproject.toml bounds numba's version): its
# callers hold the arrays, and its own calls and loops pay no atomic increments.
no_refcount = jit(_nrt=False)
