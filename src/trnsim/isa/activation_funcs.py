"""The Scalar Engine's activation functions (the `op=` of activation, activation_reduce,
activate2), with their documented valid input ranges.

A kernel names a function as the `nki.language` function (`nl.exp`, looked up by its
`__name__`), a NumPy ufunc (`np.exp`, `np.tanh`), or a string ("exp").

Numerics: the hardware evaluates piecewise polynomials; trnsim evaluates the exact
function in float64 on the fp32 input and rounds the result to fp32 (RNE). Inputs
outside a function's documented valid range (log, sin, arctan, sqrt, rsqrt,
reciprocal) are reported with `ins.warn` (an error in strict mode). Outside its range
`sin` reproduces the hardware's behaviour (no range reduction: the boundary
polynomial is extrapolated, so sin(9.0) ~ 27.65); the other functions still return
their exact value there, where the hardware's output is undefined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..machine.access import row_loops

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_2_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_GELU_SIGMOID_K = 1.702

_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x.copy()
    return _erf_scalar(x).astype(np.float64)


def _sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sin_hw(x):
    """sin on [-pi, pi]; outside, the cubic about +-pi extrapolated (no range
    reduction), as the public NKI docs describe for the Scalar Engine."""
    x = np.asarray(x, dtype=np.float64)
    out = np.sin(x)
    a = np.abs(x)
    over = a > math.pi
    if over.any():
        d = a[over] - math.pi
        out[over] = np.sign(x[over]) * (-d + d ** 3 / 6.0)
    return out


def _gelu(x, p):
    return 0.5 * x * (1.0 + _erf(x / _SQRT2))


def _gelu_dx(x, p):
    return 0.5 * (1.0 + _erf(x / _SQRT2)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _gelu_tanh(x, p):
    return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _gelu_sigmoid(x, p):
    return x * _sigmoid(_GELU_SIGMOID_K * x)


def _gelu_sigmoid_dx(x, p):
    s = _sigmoid(_GELU_SIGMOID_K * x)
    return s + _GELU_SIGMOID_K * x * s * (1.0 - s)


def _silu_dx(x, p):
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _mish(x, p):
    return x * np.tanh(_softplus(x))


def _recip(x, p):
    return 1.0 / x


def _rsqrt(x, p):
    return 1.0 / np.sqrt(x)


@dataclass(frozen=True)
class ActFunc:
    """One activation function: `fn(x, param)` on float64 arrays (`param` is the
    PReLU slope / relu_param, broadcastable to x), or a NumPy ufunc applied in float64,
    and its valid input range [lo, hi] (`symmetric`: the range is +-[lo, hi], i.e. on
    |x|)."""
    name: str
    fn: Callable
    lo: float = -math.inf
    hi: float = math.inf
    symmetric: bool = False
    range_text: str = "[-inf, inf]"

    @property
    def limited(self) -> bool:
        return self.lo != -math.inf or self.hi != math.inf

    def out_of_range(self, x: np.ndarray) -> np.ndarray:
        """Mask of (non-NaN) inputs outside the valid range."""
        v = np.abs(x) if self.symmetric else x
        with np.errstate(invalid="ignore"):
            return (v < self.lo) | (v > self.hi)

    def __call__(self, x, param=0.0, ins=None, out=None) -> np.ndarray:
        """Apply to fp32 input `x`; returns fp32 (in `out` when given: an fp32 array of
        x's shape). Out-of-range inputs are reported through `ins.warn` when an
        instruction is given."""
        x32 = np.asarray(x, dtype=np.float32)
        if ins is not None and self.limited:
            bad = self.out_of_range(x32)
            if bad.any():
                first = float(x32[bad].reshape(-1)[0])
                ins.warn(f"op={self.name}: {int(bad.sum())} of {x32.size} inputs (after "
                         f"scale/bias) are outside its valid input range "
                         f"{self.range_text} (e.g. {first!r}); the Scalar Engine "
                         "produces invalid results there")
        if out is None:
            out = np.empty(x32.shape, np.float32)
        with row_loops(x32, out, errors="ignore"):
            if isinstance(self.fn, np.ufunc):  # float64 in buffered chunks, no temporaries
                return self.fn(x32, out=out, dtype=np.float64, casting="same_kind")
            y = self.fn(x32.astype(np.float64), np.asarray(param, dtype=np.float64))
            np.copyto(out, np.asarray(y, dtype=np.float64), casting="same_kind")
            return out


def _u(f):
    """A unary float64 function, ignoring the parameter (a ufunc as it is)."""
    return f if isinstance(f, np.ufunc) else lambda x, p: f(x)


_TABLE = [
    ActFunc("copy", _u(lambda x: x)),
    ActFunc("square", _u(lambda x: x * x)),
    ActFunc("sigmoid", _u(_sigmoid)),
    ActFunc("relu", _u(lambda x: np.maximum(x, 0.0))),
    ActFunc("prelu", lambda x, p: np.where(x >= 0, x, p * x)),
    ActFunc("gelu", _gelu),
    ActFunc("gelu_dx", _gelu_dx),
    ActFunc("gelu_apprx_tanh", _gelu_tanh),
    ActFunc("gelu_apprx_sigmoid", _gelu_sigmoid),
    ActFunc("gelu_apprx_sigmoid_dx", _gelu_sigmoid_dx),
    ActFunc("silu", _u(lambda x: x * _sigmoid(x))),
    ActFunc("silu_dx", _silu_dx),
    ActFunc("tanh", _u(np.tanh)),
    ActFunc("softplus", _u(_softplus)),
    ActFunc("mish", _mish),
    ActFunc("erf", _u(_erf)),
    ActFunc("erf_dx", _u(lambda x: _2_OVER_SQRT_PI * np.exp(-x * x))),
    ActFunc("exp", _u(np.exp)),
    ActFunc("log", _u(np.log), 2.0 ** -64, 2.0 ** 64, range_text="[2^-64, 2^64]"),
    ActFunc("sin", _u(_sin_hw), -math.pi, math.pi, range_text="[-PI, PI]"),
    ActFunc("arctan", _u(np.arctan), -math.pi / 2, math.pi / 2, range_text="[-PI/2, PI/2]"),
    ActFunc("sqrt", _u(np.sqrt), 2.0 ** -116, 2.0 ** 118, range_text="[2^-116, 2^118]"),
    ActFunc("rsqrt", _rsqrt, 2.0 ** -87, 2.0 ** 97, range_text="[2^-87, 2^97]"),
    ActFunc("reciprocal", _recip, 2.0 ** -42, 2.0 ** 42, symmetric=True,
            range_text="+-[2^-42, 2^42]"),
    ActFunc("sign", _u(np.sign)),
    ActFunc("abs", _u(np.abs)),
]
ACTIVATIONS: dict[str, ActFunc] = {f.name: f for f in _TABLE}

# Other spellings: NumPy ufunc names, legacy names, the ALU no-op.
_ALIASES = {
    "identity": "copy", "bypass": "copy", "absolute": "abs", "fabs": "abs",
    "atan": "arctan", "exponential": "exp", "swish": "silu", "logistic": "sigmoid",
    "expit": "sigmoid",
}


def activation_name(op) -> str:
    """The name an op is given by: a string, or the `__name__` (or `name`) of an nl
    function, NumPy ufunc, or enum-like object."""
    if op is None:
        return "copy"
    if isinstance(op, str):
        return op.removeprefix("nl.").removeprefix("np.").removeprefix("numpy.")
    for attr in ("__name__", "name"):
        name = getattr(op, attr, None)
        if isinstance(name, str):
            return name
    raise TypeError(f"not an activation function: {op!r}")


def activation_fn(op) -> ActFunc:
    """Resolve `op` to its table entry; KeyError (naming the supported functions) when
    it is not an activation function of the Scalar Engine."""
    name = activation_name(op)
    key = _ALIASES.get(name, name)
    found = ACTIVATIONS.get(key)
    if found is None:
        raise KeyError(f"{name!r} is not a Scalar Engine activation function; supported: "
                       f"{', '.join(ACTIVATIONS)}")
    return found


__all__: list[str] = []
