"""`nki.isa.NkiScalar`, `scalar_load`, `scalar_store` (NKI 0.7): one integer computed on
the device, the successor of VirtualRegister.

What the NKI 0.7 docs state (docs/nki: nki.isa.NkiScalar, scalar_load, scalar_store,
"NKI Scalar Values"), and what trnsim does with it:
- a scalar comes from `scalar_load` of a 1x1 int32 (or int64) tensor in SBUF or HBM and
  goes back with `scalar_store` into a tile of the same width;
- its width is fixed at creation: int32 arithmetic wraps (100000 * 100000 ==
  1410065408; INT32_MAX + 1 == INT32_MIN) instead of widening;
- `+`, `-` (binary and unary) and `*` work at both widths, against a Python int or a
  scalar of the same dtype, and return a new scalar;
- comparisons of int32 scalars are traced but their result cannot be used; at int64
  they are rejected;
- a scalar works where a register does: as `scalar_offset`, in `nl.ds`, and (int32
  only) as an `nl.fori_loop` bound.

NkiScalar derives from trnsim's VirtualRegister so every place that reads a register
(offsets, loop bounds, `nl.ds`) reads a scalar too. Each operation is recorded as a
`scalar_op` instruction on the Sync engine (the sequencer's ALU), like the register
instructions.
"""
from __future__ import annotations

import operator

import numpy as np

from .base import Instr
from .registers import VirtualRegister, _Unknown
from ..machine.errors import NkiValidationError, describe
from ..machine.tensor import NkiTensor

_REG_ENGINE = "sync"
_WIDTH = {"int32": 32, "int64": 64}


def _dtype_name(dtype) -> str:
    name = "int32" if dtype is None else str(getattr(dtype, "name", dtype))
    if name not in _WIDTH:
        raise NkiValidationError(f"NkiScalar dtype must be nl.int32 or nl.int64, got {name}",
                                 op="NkiScalar")
    return name


def _wrap(value: int, bits: int) -> int:
    """Two's-complement wrap of `value` to `bits` bits (what the device ALU produces)."""
    m = 1 << bits
    v = int(value) % m
    return v - m if v >= m // 2 else v


class NkiScalar(VirtualRegister):
    """One integer computed on the device (see the module docstring).

    `state` is the value (an int, wrapped to the width of `dtype`); `dtype` is nl.int32
    (default) or nl.int64; `is_comparison` marks the result of a comparison, which
    can be traced but not used."""

    def __init__(self, state, dtype=None, is_comparison=False):
        name = _dtype_name(dtype)
        if state is not None and not isinstance(state, _Unknown):
            if isinstance(state, (bool, np.bool_)) or not isinstance(
                    state, (int, np.integer)):
                raise NkiValidationError(f"NkiScalar(state): {state!r} is not an integer",
                                         op="NkiScalar")
            state = _wrap(state, _WIDTH[name])
        super().__init__(None)
        self._value = state
        self._dtype = name
        self.is_comparison = bool(is_comparison)

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def value(self) -> int:
        if self.is_comparison:
            raise NkiValidationError(
                f"scalar {self.name} is the result of a comparison: NKI traces comparisons "
                "of scalars but their result cannot be used", op="NkiScalar")
        return super().value

    def __bool__(self) -> bool:
        raise NkiValidationError(
            f"scalar {self.name} has no Python truth value: its value exists only on the "
            "device (branch on it with nl.while_loop)", op="NkiScalar")

    # -- arithmetic -----------------------------------------------------------
    def _operand(self, other, op: str):
        if isinstance(other, NkiScalar):
            if other.dtype != self.dtype:
                raise NkiValidationError(
                    f"scalar {op}: dtypes differ ({self.dtype} and {other.dtype}); a scalar's "
                    "width is fixed at creation", op="scalar_op")
            return other.value, [other.name]
        if isinstance(other, VirtualRegister):
            raise NkiValidationError(f"scalar {op}: mixing an NkiScalar with a "
                                     "VirtualRegister is not supported", op="scalar_op")
        if isinstance(other, (bool, np.bool_)) or not isinstance(other, (int, np.integer)):
            return None, None
        return int(other), []

    def _binary(self, other, fn, op: str, swap=False, compare=False):
        b, reads = self._operand(other, op)
        if reads is None:
            return NotImplemented
        if compare and self.dtype == "int64":
            raise NkiValidationError(f"scalar {op}: comparisons of int64 scalars are rejected "
                                     "(only +, - and * exist at 64 bits)", op="scalar_op")
        a = self.value
        result = fn(b, a) if swap else fn(a, b)
        out = NkiScalar(int(result), self.dtype, is_comparison=compare)
        _record(op, [self.name] + reads, out, imm=None if reads else b)
        return out

    def __add__(self, other):
        return self._binary(other, operator.add, "add")

    def __radd__(self, other):
        return self._binary(other, operator.add, "add", swap=True)

    def __sub__(self, other):
        return self._binary(other, operator.sub, "subtract")

    def __rsub__(self, other):
        return self._binary(other, operator.sub, "subtract", swap=True)

    def __mul__(self, other):
        return self._binary(other, operator.mul, "multiply")

    def __rmul__(self, other):
        return self._binary(other, operator.mul, "multiply", swap=True)

    def __neg__(self):
        out = NkiScalar(-self.value, self.dtype)
        _record("negate", [self.name], out)
        return out

    def __pos__(self):
        return self

    def __lt__(self, other):
        return self._binary(other, operator.lt, "less", compare=True)

    def __le__(self, other):
        return self._binary(other, operator.le, "less_equal", compare=True)

    def __gt__(self, other):
        return self._binary(other, operator.gt, "greater", compare=True)

    def __ge__(self, other):
        return self._binary(other, operator.ge, "greater_equal", compare=True)

    def __eq__(self, other):
        return self._binary(other, operator.eq, "equal", compare=True)

    def __ne__(self, other):
        return self._binary(other, operator.ne, "not_equal", compare=True)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        v = self._value
        shown = "uninitialized" if v is None else repr(v)
        cmp = ", comparison" if self.is_comparison else ""
        return f"NkiScalar({self.name}={shown}, {self.dtype}{cmp})"


def _record(op: str, reads: list, out: NkiScalar, imm=None):
    attrs = dict(op=op, reg_reads=list(reads), reg_writes=[out.name])
    if imm is not None:
        attrs["imm"] = int(imm)
    with Instr("scalar_op", None, default=_REG_ENGINE, **attrs):
        pass


def _one_by_one(ins: Instr, role: str, t):
    if not isinstance(t, NkiTensor):
        ins.fail(f"{role} must be a 1x1 tensor, got {type(t).__name__}")
    ins.operand(role, t, buffers=("sbuf", "hbm"))
    ins.require(t.size == 1, f"{role} {describe(t)} must be a 1x1 tensor (one element)")
    name = str(t.dtype)
    ins.require(name in _WIDTH, f"{role} {describe(t)} must have dtype nl.int32 or nl.int64 "
                "(unsigned dtypes are not accepted; use the signed dtype of the same width)")
    return name


def scalar_load(src):
    """An NkiScalar holding the single value of the 1x1 int32/int64 tensor `src` (SBUF or
    HBM); its dtype is src's."""
    with Instr("scalar_load", None, default=_REG_ENGINE) as ins:
        dtype = _one_by_one(ins, "src", src)
        raw = ins.read("src", src)
        if raw is None:
            value = _Unknown(describe(src))
        else:
            value = int(np.asarray(raw).reshape(-1)[0])
        out = NkiScalar(value, dtype)
        ins.attrs["reg_writes"] = [out.name]
    return out


def scalar_store(dst, value):
    """Write the NkiScalar `value` into the 1x1 tensor `dst` of the same width."""
    with Instr("scalar_store", None, default=_REG_ENGINE) as ins:
        if not isinstance(value, NkiScalar):
            ins.fail(f"value must be an NkiScalar (from nisa.scalar_load), got "
                     f"{type(value).__name__}; write a compile-time constant with nisa.memset")
        dtype = _one_by_one(ins, "dst", dst)
        ins.require(dtype == value.dtype, f"dst {describe(dst)} is {dtype} but the scalar is "
                    f"{value.dtype}; store at the scalar's own width")
        ins.attrs["reg_reads"] = [value.name]
        if not ins.numerics:
            ins.write("dst", dst, None)
            return
        v = value.value
        ins.write("dst", dst, np.array([v], dtype=dst.dtype.np).reshape(dst.shape), raw=True)


__all__ = ["NkiScalar", "scalar_load", "scalar_store"]
