"""nki.language dynamic control flow: loops whose bounds or condition live in virtual
registers (or, from NKI 0.7, NkiScalars) and run as hardware loops on the device.

NKI 0.7 removed `nl.dynamic_range` (deprecated in 0.6; use `fori_loop`). trnsim keeps
accepting it, as 0.6 kernels spell it, with a DeprecationWarning: the name conflicts with
nothing in 0.7.

The simulator executes eagerly: bounds are read (once, at loop entry) from the
registers' current values and the body runs once per iteration. Each loop-condition
check is recorded as a `branch` instruction on the Sync engine (attrs: loop kind,
loop id, iteration, taken) so the timing model can charge the sequencer's branches.
"""
from __future__ import annotations

import warnings

from ...isa.registers import VirtualRegister, _record_branch, as_int, dynamic_loop
from ...machine.errors import NkiValidationError
from ...isa.scalar import NkiScalar

# A data-dependent while loop that never reaches 0 would hang the simulator.
MAX_WHILE_ITERATIONS = 1 << 20


def _step(step, api: str) -> int:
    if isinstance(step, VirtualRegister):
        raise NkiValidationError(f"{api}: step must be a compile-time positive integer, "
                                 f"not a VirtualRegister ({step.name})", op=api)
    if isinstance(step, bool) or not isinstance(step, int) or step <= 0:
        raise NkiValidationError(f"{api}: step must be a compile-time positive integer, "
                                 f"got {step!r}", op=api)
    return step


def _bound(x, role: str, api: str) -> int:
    if x is None:
        raise NkiValidationError(f"{api}: {role} is None", op=api)
    try:
        return as_int(x, f"{api}({role})")
    except NkiValidationError as e:
        if e.op:
            raise
        raise type(e)(e.bare_message, op=api) from None


def _reads(*xs):
    return [x.name for x in xs if isinstance(x, VirtualRegister)]


def _counted(kind: str, lower, upper, step, make=VirtualRegister):
    """Yield a fresh register (`make(i)`) per iteration of range(lower, upper, step),
    recording each loop-condition check."""
    step = _step(step, kind)
    for role, x in (("lower", lower), ("upper", upper)):
        if isinstance(x, NkiScalar) and x.dtype != "int32":
            raise NkiValidationError(
                f"{kind}: {role} is an {x.dtype} scalar; a loop bound must be 32-bit (the "
                "loop's compare-and-branch has no 64-bit form)", op=kind)
    lo, hi = _bound(lower, "start" if kind == "dynamic_range" else "lower", kind), \
        _bound(upper, "stop" if kind == "dynamic_range" else "upper", kind)
    regs = _reads(lower, upper)
    with dynamic_loop() as loop:
        for n, i in enumerate(range(lo, hi, step)):
            _record_branch(kind, regs, True, loop=loop.id, iteration=n)
            yield make(i)
        _record_branch(kind, regs, False, loop=loop.id, iteration=len(range(lo, hi, step)))


def dynamic_range(start, stop=None, step=1):
    """A dynamic (hardware) loop: `for i in nl.dynamic_range(reg)`. `start`/`stop` are
    ints or VirtualRegisters (one argument is the stop, start 0); `step` is a
    compile-time positive int. The loop variable is a VirtualRegister.

    Removed in NKI 0.7 (use fori_loop); kept here, with a DeprecationWarning, so 0.6
    kernels run unmodified."""
    warnings.warn("nl.dynamic_range was removed in NKI 0.7: use nl.fori_loop(lower, upper, "
                  "body_fun); trnsim still runs it as in NKI 0.6", DeprecationWarning,
                  stacklevel=2)
    if stop is None:
        start, stop = 0, start
    return _counted("dynamic_range", start, stop, step)


def fori_loop(lower, upper, body_fun, step=1):
    """Call `body_fun(i)` for i in range(lower, upper, step), `i` passed by value
    (writing it does not change the loop). As in NKI 0.7, `i` is an int32 NkiScalar
    unless a bound is a VirtualRegister, when it is a VirtualRegister (NKI 0.6).
    Returns None."""
    if not callable(body_fun):
        raise NkiValidationError(f"fori_loop: body_fun must be callable, got "
                                 f"{type(body_fun).__name__}", op="fori_loop")
    legacy = any(isinstance(x, VirtualRegister) and not isinstance(x, NkiScalar)
                 for x in (lower, upper))
    make = VirtualRegister if legacy else (lambda i: NkiScalar(i, "int32"))
    for i in _counted("fori_loop", lower, upper, step, make):
        body_fun(i)
    return None


def while_loop(init, body_fun):
    """`r = init; while r != 0: r = body_fun(r)`, checking before each iteration;
    `body_fun` gets the condition as a VirtualRegister (by value) and returns the next
    condition register. Returns None."""
    if not callable(body_fun):
        raise NkiValidationError(f"while_loop: body_fun must be callable, got "
                                 f"{type(body_fun).__name__}", op="while_loop")
    if not isinstance(init, (VirtualRegister, int)) or isinstance(init, bool):
        raise NkiValidationError(f"while_loop: init must be a VirtualRegister, got "
                                 f"{type(init).__name__}", op="while_loop")
    cond = init
    with dynamic_loop() as loop:
        n = 0
        while True:
            value = _bound(cond, "condition", "while_loop")
            taken = value != 0
            _record_branch("while_loop", _reads(cond), taken, loop=loop.id, iteration=n)
            if not taken:
                return None
            if n >= MAX_WHILE_ITERATIONS:
                raise NkiValidationError(
                    f"while_loop ran {n} iterations without its condition register "
                    "reaching 0 (the simulator stops here; check that body_fun updates and "
                    "returns the condition)", op="while_loop")
            nxt = body_fun(VirtualRegister(value))
            if not isinstance(nxt, (VirtualRegister, int)) or isinstance(nxt, bool):
                raise NkiValidationError(
                    "while_loop: body_fun must return the next condition register (a "
                    f"VirtualRegister), got {type(nxt).__name__}", op="while_loop")
            cond = nxt
            n += 1


__all__ = ["dynamic_range", "fori_loop", "while_loop"]
