"""ALU operators (the `op=` of tensor_tensor, tensor_scalar, reductions ...).

Kernels pass `nl.add`, `nl.maximum`, ... (the nki.language functions), legacy NumPy
ufuncs (`np.add`, `np.amax`) or names. All arithmetic is fp32; bitvec operators act on
the raw integer bits. Comparisons give 1.0 / 0.0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class AluOp:
    name: str
    fn: Callable
    kind: str  # 'arith' | 'bitvec' | 'compare' | 'logical'
    identity: float | None = None  # reduction identity, where the op reduces
    unary: bool = False  # one operand (abs, square, relu, rsqrt, reciprocal, invert)
    ufunc: np.ufunc | None = None  # fn as one NumPy ufunc of fp32 operands (takes out=)

    def __call__(self, a, b):
        return self.fn(a, b)


def _f(x):
    return np.asarray(x, dtype=np.float32)


def _cmp(fn):
    return lambda a, b: fn(_f(a), _f(b)).astype(np.float32)


def _abs_max(a, b):
    """The signed value of larger magnitude; y on a tie (nki.language.abs_max docs)."""
    a, b = _f(a), _f(b)
    return np.where(np.abs(a) > np.abs(b), a, b).astype(np.float32)


def _abs_min(a, b):
    """The signed value of smaller magnitude; y on a tie (nki.language.abs_min docs)."""
    a, b = _f(a), _f(b)
    return np.where(np.abs(a) < np.abs(b), a, b).astype(np.float32)


def _logical_shift_right(a, b):
    bits = a.dtype.itemsize * 8
    ua = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    sh = np.asarray(b).astype(np.int64)
    out = np.where(sh >= bits, 0, ua.astype(np.uint64) >> np.clip(sh, 0, 63).astype(np.uint64))
    return out.astype(ua.dtype).view(a.dtype)


def _shift_left(a, b):
    bits = a.dtype.itemsize * 8
    ua = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    sh = np.asarray(b).astype(np.int64)
    out = np.where(sh >= bits, 0, ua.astype(np.uint64) << np.clip(sh, 0, 63).astype(np.uint64))
    return (out & ((1 << bits) - 1)).astype(ua.dtype).view(a.dtype)


def _pow(a, b):
    with np.errstate(all="ignore"):
        return np.power(_f(a), _f(b))


def _div(a, b):
    with np.errstate(all="ignore"):
        return np.divide(_f(a), _f(b))


def _rsqrt(a):
    with np.errstate(all="ignore"):
        return np.float32(1) / np.sqrt(_f(a))


def _fmod(a, b):
    with np.errstate(all="ignore"):
        return np.fmod(_f(a), _f(b))


def _mod(a, b):
    with np.errstate(all="ignore"):
        return np.mod(_f(a), _f(b))


_OPS = [
    AluOp("add", lambda a, b: _f(a) + _f(b), "arith", 0.0, ufunc=np.add),
    AluOp("subtract", lambda a, b: _f(a) - _f(b), "arith", ufunc=np.subtract),
    AluOp("multiply", lambda a, b: _f(a) * _f(b), "arith", 1.0, ufunc=np.multiply),
    AluOp("divide", _div, "arith", ufunc=np.divide),
    AluOp("maximum", lambda a, b: np.maximum(_f(a), _f(b)), "arith", -np.inf,
          ufunc=np.maximum),
    AluOp("minimum", lambda a, b: np.minimum(_f(a), _f(b)), "arith", np.inf,
          ufunc=np.minimum),
    AluOp("abs_max", _abs_max, "arith", 0.0),
    AluOp("abs_min", _abs_min, "arith", np.inf),
    AluOp("power", _pow, "arith"),
    AluOp("fmod", _fmod, "arith"),
    AluOp("mod", _mod, "arith"),
    AluOp("bypass", lambda a, b: _f(a), "arith"),
    AluOp("equal", _cmp(np.equal), "compare"),
    AluOp("not_equal", _cmp(np.not_equal), "compare"),
    AluOp("greater", _cmp(np.greater), "compare"),
    AluOp("greater_equal", _cmp(np.greater_equal), "compare"),
    AluOp("less", _cmp(np.less), "compare"),
    AluOp("less_equal", _cmp(np.less_equal), "compare"),
    AluOp("logical_and", lambda a, b: ((_f(a) != 0) & (_f(b) != 0)).astype(np.float32),
          "logical", 1.0),
    AluOp("logical_or", lambda a, b: ((_f(a) != 0) | (_f(b) != 0)).astype(np.float32),
          "logical", 0.0),
    AluOp("logical_xor", lambda a, b: ((_f(a) != 0) ^ (_f(b) != 0)).astype(np.float32),
          "logical", 0.0),
    AluOp("bitwise_and", np.bitwise_and, "bitvec"),
    AluOp("bitwise_or", np.bitwise_or, "bitvec"),
    AluOp("bitwise_xor", np.bitwise_xor, "bitvec"),
    AluOp("left_shift", _shift_left, "bitvec"),
    AluOp("right_shift", _logical_shift_right, "bitvec"),
    # unary operators of the ALU table (the second operand is ignored)
    AluOp("abs", lambda a, b=None: np.abs(_f(a)), "arith", unary=True),
    AluOp("square", lambda a, b=None: _f(a) * _f(a), "arith", unary=True),
    AluOp("relu", lambda a, b=None: np.maximum(_f(a), np.float32(0)), "arith", unary=True),
    AluOp("rsqrt", lambda a, b=None: _rsqrt(a), "arith", unary=True),
    AluOp("reciprocal", lambda a, b=None: _div(np.float32(1), _f(a)), "arith", unary=True),
    AluOp("invert", lambda a, b=None: np.invert(a), "bitvec", unary=True),
]
ALU = {op.name: op for op in _OPS}
_ALIASES = {
    "sub": "subtract", "mul": "multiply", "max": "maximum", "min": "minimum",
    "amax": "maximum", "amin": "minimum", "true_divide": "divide", "pow": "power",
    "logical_shift_left": "left_shift", "logical_shift_right": "right_shift",
    "arith_shift_left": "left_shift", "remainder": "mod", "sum": "add", "prod": "multiply",
    "absolute": "abs", "bitwise_not": "invert", "bitwise_invert": "invert",
}


def op_name(op) -> str:
    """The name of an operator given as an nl function, a NumPy ufunc or a string."""
    if op is None:
        return "bypass"
    if isinstance(op, str):
        return op
    name = getattr(op, "__name__", None) or getattr(op, "name", None)
    if name is None:
        raise TypeError(f"not an operator: {op!r}")
    return name


def alu(op) -> AluOp:
    name = op_name(op)
    name = _ALIASES.get(name, name)
    found = ALU.get(name)
    if found is None:
        raise KeyError(name)
    return found


def apply_alu(op: AluOp, a: np.ndarray, b, a_dtype=None, b_dtype=None):
    """Apply `op`. Arithmetic on fp32 values; bitvec ops on the raw integer bits (a and
    b must then be the raw stored arrays)."""
    if op.kind == "bitvec":
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.view(np.dtype(f"u{a.dtype.itemsize}"))
        b = np.asarray(b)
        if b.dtype.kind == "f":
            b = b.astype(np.int64) if b.ndim == 0 else b.view(np.dtype(f"u{b.dtype.itemsize}"))
        return op.fn(a, b.astype(a.dtype) if op.name.startswith("bitwise") else b)
    return op.fn(a, b)
