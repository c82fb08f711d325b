"""Virtual registers: 32-bit scalars held by the engine sequencers, used for dynamic
loop bounds, while-loop conditions and runtime offsets (`nl.ds(reg, n)`,
`.ap(scalar_offset=reg)`).

The simulator executes eagerly, so a register holds a concrete Python int and works
wherever NKI accepts one: as an index (`__index__`), in `nl.ds`, as a select index,
as a `scalar_offset`, as `nl.dynamic_range`/`nl.fori_loop` bounds and as a `while`
condition (`__bool__`). Every register instruction is recorded on the Sync engine
(SP): the public docs leave the engine to the compiler ("registers ... across the
appropriate engine sequencers"), and SP is the engine that sequences control flow.

Timing-only runs (numerics off) do not compute memory, so a register loaded from
memory has no known value there; using such a value raises UnsupportedError.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ..machine.errors import NkiValidationError, UnsupportedError, describe
from ..machine.runtime import active_run
from ..machine.tensor import NKIObject, NkiTensor
from .base import Instr

_REG_ENGINE = "sync"
_I32_MIN, _U32_MAX = -(1 << 31), (1 << 32) - 1
_counters: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Unknown:
    """The value of a register loaded from memory in a timing-only run."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self):
        return "<unknown>"


def _next_name() -> str:
    try:
        run = active_run()
    except NkiValidationError:
        return "r?"
    n = _counters.get(run, 0)
    _counters[run] = n + 1
    return f"r{n}"


def _check32(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if not isinstance(value, (int, np.integer)):
        raise NkiValidationError(f"{what}: {value!r} is not an integer (registers hold "
                                 "32-bit integers)")
    v = int(value)
    if not _I32_MIN <= v <= _U32_MAX:
        raise NkiValidationError(f"{what}: {v} does not fit a 32-bit register "
                                 f"([{_I32_MIN}, {_U32_MAX}])")
    return v


class VirtualRegister(NKIObject):
    """A virtual register on an engine sequencer (see the module docstring).

    `state` is the initial value (an int) or None for an unwritten register; a
    `frozen` register is read-only (register_move/register_load into it fail)."""

    def __init__(self, state=None, frozen=False):
        if state is not None and not isinstance(state, _Unknown):
            state = _check32(state, "VirtualRegister(state)")
        self._value = state
        self.frozen = bool(frozen)
        self.name = _next_name()

    # -- value ------------------------------------------------------------
    @property
    def value(self) -> int:
        """The register's current value (errors name the register and why it has none)."""
        v = self._value
        if v is None:
            raise NkiValidationError(
                f"register {self.name} is read before any value was written to it "
                "(register_alloc() without a value; use register_move or register_load "
                "first)")
        if isinstance(v, _Unknown):
            raise UnsupportedError(
                f"register {self.name} was loaded from {v.source} in a timing-only run "
                "(numerics=False), where memory values are not computed, so its value "
                "(a loop bound, condition or offset) is unknown; run with numerics=True")
        return v

    @property
    def is_known(self) -> bool:
        return self._value is not None and not isinstance(self._value, _Unknown)

    def _set(self, value, what: str):
        if self.frozen:
            raise NkiValidationError(f"{what}: register {self.name} is frozen (read-only)")
        self._value = value

    def __index__(self) -> int:
        return self.value

    def __int__(self) -> int:
        return self.value

    def __bool__(self) -> bool:
        """`while reg:` / `if reg:` branch on the register (recorded as a branch)."""
        taken = self.value != 0
        _record_branch("branch", [self.name], taken)
        return taken

    def _no_compare(self, other):
        raise TypeError(
            f"register {self.name} cannot be compared in Python: its value exists only on "
            "the device (use it as a loop bound, while condition or offset, or store it "
            "with register_store and compute on the tensor)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _no_compare
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        v = self._value
        shown = "uninitialized" if v is None else repr(v)
        return f"VirtualRegister({self.name}={shown}{', frozen' if self.frozen else ''})"


def _record_branch(kind: str, reg_reads: list, taken: bool, **attrs):
    """Record one branch of the sequencer (a loop-condition check or `if/while reg`)."""
    try:
        active_run()
    except NkiValidationError:
        return
    with Instr("branch", None, default=_REG_ENGINE, kind=kind, reg_reads=list(reg_reads),
               taken=bool(taken), **attrs):
        pass


def as_int(x, what: str) -> int:
    """An int or a register's value, for loop bounds and offsets."""
    if isinstance(x, VirtualRegister):
        return x.value
    return _check32(x, what)


def _src_value(ins: Instr, src: NkiTensor) -> int | _Unknown:
    """Read the single 32-bit (or narrower) value of `src` into a register value:
    integers keep their value (sign/zero extended), float types give their raw bits."""
    ins.operand("src", src, buffers=("sbuf", "hbm"))
    ins.require(src.size == 1, f"source {describe(src)} must hold exactly one element "
                "(shape [1] or [1, 1])")
    ins.require(src.dtype.itemsize <= 4 and not src.dtype.is_x4,
                f"source {describe(src)}: a register loads a scalar of at most 32 bits")
    raw = ins.read("src", src)
    if raw is None:
        return _Unknown(describe(src))
    x = np.asarray(raw).reshape(-1)[:1]
    if src.dtype.is_int:
        return int(x[0])
    ins.warn(f"register_load from float tensor {describe(src)} loads its raw bits, not "
             "its value (load an integer tensor for loop bounds and offsets)")
    return int(x.view(np.dtype(f"u{src.dtype.itemsize}"))[0])


def _reg(role: str, r, ins: Instr) -> VirtualRegister:
    if not isinstance(r, VirtualRegister):
        ins.fail(f"{role} must be a VirtualRegister (from nisa.register_alloc), got "
                 f"{type(r).__name__}")
    return r


def register_alloc(x=None):
    """Allocate a virtual register, optionally initialised with an int (or, as kernels
    in the NKI library do, loaded from a one-element tensor)."""
    if isinstance(x, NkiTensor):
        with Instr("register_load", None, default=_REG_ENGINE) as ins:
            reg = VirtualRegister()
            reg._value = _src_value(ins, x)
            ins.attrs["reg_writes"] = [reg.name]
        return reg
    if x is None:
        return VirtualRegister()
    with Instr("register_move", None, default=_REG_ENGINE) as ins:
        v = _check32(x, "register_alloc(x)")
        reg = VirtualRegister(v)
        ins.attrs.update(reg_writes=[reg.name], imm=v)
    return reg


def register_move(dst, src):
    """dst = src, a compile-time integer or another register."""
    with Instr("register_move", None, default=_REG_ENGINE) as ins:
        _reg("dst", dst, ins)
        if isinstance(src, VirtualRegister):
            value = src._value
            if value is None:
                ins.fail(f"source register {src.name} has no value yet")
            ins.attrs.update(reg_reads=[src.name])
        else:
            value = _check32(src, "register_move(src)")
            ins.attrs["imm"] = value
        ins.attrs["reg_writes"] = [dst.name]
        dst._set(value, "register_move")


def register_load(dst, src):
    """dst = the single value of `src` (a one-element SBUF or HBM tensor)."""
    with Instr("register_load", None, default=_REG_ENGINE) as ins:
        _reg("dst", dst, ins)
        if not isinstance(src, NkiTensor):
            ins.fail(f"src must be a one-element tensor, got {type(src).__name__}")
        value = _src_value(ins, src)
        ins.attrs["reg_writes"] = [dst.name]
        dst._set(value, "register_load")


def register_store(dst, src):
    """Write the register's 32 bits into the one-element tensor `dst`: integer dtypes
    get the value (wrapped to their width), float dtypes get the raw bits."""
    with Instr("register_store", None, default=_REG_ENGINE) as ins:
        _reg("src", src, ins)
        if not isinstance(dst, NkiTensor):
            ins.fail(f"dst must be a one-element tensor, got {type(dst).__name__}")
        ins.operand("dst", dst, buffers=("sbuf", "hbm"))
        ins.require(dst.size == 1, f"destination {describe(dst)} must hold exactly one "
                    "element (shape [1] or [1, 1])")
        ins.require(dst.dtype.itemsize <= 4 and not dst.dtype.is_x4,
                    f"destination {describe(dst)}: a register stores at most 32 bits")
        ins.attrs["reg_reads"] = [src.name]
        if not ins.numerics:
            ins.write("dst", dst, None)
            return
        v = src.value
        width = dst.dtype.itemsize * 8
        bits = np.array([v & ((1 << width) - 1)], dtype=np.uint64).astype(
            np.dtype(f"u{dst.dtype.itemsize}"))
        ins.write("dst", dst, bits.view(dst.dtype.np).reshape(dst.shape), raw=True)


# -- dynamic-loop nesting (for NkiInstruction.depends_on) ------------------------
class _LoopState(threading.local):
    def __init__(self):
        self.stack: list[int] = []
        self.next_id = 0


_loops = _LoopState()


def loop_path() -> tuple:
    """Ids of the dynamic loops (fori_loop/while_loop/dynamic_range) enclosing the
    current instruction on this core, outermost first."""
    return tuple(_loops.stack)


class dynamic_loop:
    """Context manager marking the body of a dynamic (register-controlled) loop."""

    def __init__(self):
        _loops.next_id += 1
        self.id = _loops.next_id

    def __enter__(self):
        _loops.stack.append(self.id)
        return self

    def __exit__(self, *exc):
        _loops.stack.pop()
        return False


__all__ = ["VirtualRegister", "register_alloc", "register_move", "register_load",
           "register_store"]
