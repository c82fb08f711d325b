"""Elementwise unary tile functions and their destination-passing form `unary_into`:
Scalar Engine activations (exp ... erf_dx) and copy; Vector Engine arithmetic (negative,
invert, logical_not, floor, ceil, trunc); range-reduced trigonometry (sin, cos, tan,
arctan). Result dtype: `dtype` if given, else x's; intermediates are fp32."""
from __future__ import annotations

from .. import isa as _isa
from ..machine.errors import describe
from ..numerics.dtypes import float32
from .binary import add, bitwise_xor, divide, fmod, logical_xor, mod, multiply, subtract
from .checks import fail, need_tile
from .tiles import Result, new, out, ts, tt

# fp32 just below pi, so m - pi stays inside the Scalar Engine's sin range [-pi, pi].
_PI_LO = float.fromhex("0x1.921fb4p+1")  # 3.1415925 (pi in fp32 rounds up to 3.1415927)
_TWO_PI_LO = 2.0 * _PI_LO


# one tensor_scalar each: (op0, operand0)
_VECTOR = {"negative": (multiply, -1.0), "invert": (bitwise_xor, -1),
           "logical_not": (logical_xor, 1.0)}

# x - op(x, divisor) (_round_into): (divisor, op)
_ROUNDING = {"floor": (1.0, mod), "ceil": (-1.0, mod), "trunc": (1.0, fmod)}


def unary_into(dst, x, op):
    """dst = op(x) for the unary nl function `op` (given by function or name)."""
    name = op if isinstance(op, str) else op.__name__
    if name in _VECTOR:
        op0, operand0 = _VECTOR[name]
        _isa.tensor_scalar(dst=out(dst), data=x, op0=op0, operand0=operand0)
    elif name in _ROUNDING:
        _round_into(dst, x, *_ROUNDING[name], name)
    elif name in ("sin", "cos"):
        _sine_into(dst, x, 0.0 if name == "sin" else _PI_LO / 2, name)
    elif name == "tan":
        _tan_into(dst, x)
    elif name == "arctan":
        _arctan_into(dst, x)
    elif name == "copy":
        _isa.tensor_copy(dst=out(dst), src=x)
    else:
        _isa.activation(dst=out(dst), op=op, data=x)


def _unary(fn, x, dtype):
    """The current API's `fn(x, dtype)`: unary_into a new SBUF tile."""
    need_tile(fn.__name__, "x", x)
    result = Result(x.shape, dtype if dtype is not None else x.dtype, fn.__name__)
    unary_into(result, x, fn)
    return result.tile


# -- Vector Engine arithmetic -------------------------------------------------------
def _round_into(dst, x, divisor, op, fname):
    """dst = x - op(x, divisor), the remainder kept in fp32: one scalar_tensor_tensor
    (two instructions when x is in PSUM, since data and operand1 cannot both be)."""
    if x.space == "psum":
        r = ts(fname, x, float32, op, divisor)
        _isa.tensor_tensor(dst=out(dst), data1=x, data2=r, op=subtract)
        return
    _isa.scalar_tensor_tensor(dst=out(dst), data=x, op0=op, operand0=divisor, op1=subtract,
                              operand1=x, reverse1=True)


def negative(x, dtype=None):
    """-x (tensor_scalar multiply by -1)."""
    return _unary(negative, x, dtype)


def invert(x, dtype=None):
    """Bitwise NOT: XOR with all ones (integer tiles)."""
    need_tile("invert", "x", x)
    if not x.dtype.is_int:
        fail("invert", f"x {describe(x)}: input must be integer typed")
    return _unary(invert, x, dtype)


def logical_not(x, dtype=None):
    """1 - x for boolean-like tiles: XOR with 1 (logical)."""
    return _unary(logical_not, x, dtype)


def floor(x, dtype=None):
    """Largest integer <= x: x - mod(x, 1)."""
    return _unary(floor, x, dtype)


def ceil(x, dtype=None):
    """Smallest integer >= x: x - mod(x, -1) (mod has the divisor's sign)."""
    return _unary(ceil, x, dtype)


def trunc(x, dtype=None):
    """x rounded toward zero: x - fmod(x, 1)."""
    return _unary(trunc, x, dtype)


# -- trigonometry --------------------------------------------------------------------
def _bias(fname, value: float, partitions: int):
    """A constant activation bias: the constant itself on NeuronCore-v3+, a memset
    [P, 1] fp32 tile on NeuronCore-v2 (which takes only tensor biases)."""
    from ..machine.runtime import active_run
    if active_run().chip.generation >= 3:
        return value
    t = new((partitions, 1), float32, fname, tmp=True)
    _isa.memset(dst=t, value=value)
    return t


def _sine_into(dst, x, shift, fname):
    """sin(x + shift) over the full input range: m = mod(x + pi + shift, 2pi) (one
    tensor_scalar), then the Scalar Engine's sin of m - pi (the activation's bias),
    whose argument lies in [-pi, pi) as the activation requires. pi is taken as the
    fp32 value just below pi so the argument never leaves that range; x = 0 maps to
    exactly 0."""
    m = ts(fname, x, float32, add, _PI_LO + shift, op1=mod, operand1=_TWO_PI_LO)
    _isa.activation(dst=out(dst), op=sin, data=m, bias=_bias(fname, -_PI_LO, x.shape[0]))


def _tan_into(dst, x):
    s = Result(x.shape, float32, "tan")
    _sine_into(s, x, 0.0, "tan")
    c = Result(x.shape, float32, "tan")
    _sine_into(c, x, _PI_LO / 2, "tan")
    _isa.tensor_tensor(dst=out(dst), data1=s.tile, data2=c.tile, op=divide)


def _arctan_into(dst, x):
    """arctan(x) = 2 * arctan(x / (1 + sqrt(1 + x^2))), whose argument lies in (-1, 1),
    inside the [-pi/2, pi/2] the Scalar Engine's arctan is valid on."""
    sq = tt("arctan", x, x, multiply, float32)
    sq1 = ts("arctan", sq, float32, add, 1.0)
    r = new(x.shape, float32, "arctan", tmp=True)
    _isa.activation(dst=r, op=sqrt, data=sq1)
    d = ts("arctan", r, float32, add, 1.0)
    t = tt("arctan", x, d, divide, float32)
    a = new(x.shape, float32, "arctan", tmp=True)
    _isa.activation(dst=a, op=arctan, data=t)
    _isa.tensor_scalar(dst=out(dst), data=a, op0=multiply, operand0=2.0)


def sin(x, dtype=None):
    """Sine over the full input range (range reduction, then the Scalar Engine's sin)."""
    return _unary(sin, x, dtype)


def cos(x, dtype=None):
    """Cosine as sin(x + pi/2), range-reduced like sin."""
    return _unary(cos, x, dtype)


def tan(x, dtype=None):
    """sin(x) / cos(x), each range-reduced, divided in fp32."""
    return _unary(tan, x, dtype)


def arctan(x, dtype=None):
    """Inverse tangent over the full input range. The Scalar Engine's arctan is valid
    on [-pi/2, pi/2], so the argument is first halved in angle:
    arctan(x) = 2 * arctan(x / (1 + sqrt(1 + x^2))), whose argument lies in (-1, 1)."""
    return _unary(arctan, x, dtype)


# -- Scalar Engine activations ------------------------------------------------------
def exp(x, dtype=None):
    """e ** x (Scalar Engine)."""
    return _unary(exp, x, dtype)


def log(x, dtype=None):
    """Natural logarithm (Scalar Engine; valid input range [2^-64, 2^64])."""
    return _unary(log, x, dtype)


def sqrt(x, dtype=None):
    """Square root (Scalar Engine)."""
    return _unary(sqrt, x, dtype)


def rsqrt(x, dtype=None):
    """1 / sqrt(x) (Scalar Engine)."""
    return _unary(rsqrt, x, dtype)


def reciprocal(x, dtype=None):
    """1 / x (Scalar Engine)."""
    return _unary(reciprocal, x, dtype)


def square(x, dtype=None):
    """x * x (Scalar Engine)."""
    return _unary(square, x, dtype)


def abs(x, dtype=None):
    """|x| (Scalar Engine)."""
    return _unary(abs, x, dtype)


def sign(x, dtype=None):
    """-1, 0 or 1 by the sign of x (Scalar Engine)."""
    return _unary(sign, x, dtype)


def tanh(x, dtype=None):
    """Hyperbolic tangent (Scalar Engine)."""
    return _unary(tanh, x, dtype)


def sigmoid(x, dtype=None):
    """1 / (1 + e^-x) (Scalar Engine)."""
    return _unary(sigmoid, x, dtype)


def relu(x, dtype=None):
    """max(x, 0) (Scalar Engine)."""
    return _unary(relu, x, dtype)


def gelu(x, dtype=None):
    """GELU, x * Phi(x) (Scalar Engine)."""
    return _unary(gelu, x, dtype)


def gelu_apprx_sigmoid(x, dtype=None):
    """GELU approximated with a sigmoid (Scalar Engine)."""
    return _unary(gelu_apprx_sigmoid, x, dtype)


def gelu_apprx_tanh(x, dtype=None):
    """GELU approximated with tanh (Scalar Engine)."""
    return _unary(gelu_apprx_tanh, x, dtype)


def gelu_dx(x, dtype=None):
    """Derivative of GELU (Scalar Engine)."""
    return _unary(gelu_dx, x, dtype)


def gelu_apprx_sigmoid_dx(x, dtype=None):
    """Derivative of the sigmoid-approximated GELU (Scalar Engine)."""
    return _unary(gelu_apprx_sigmoid_dx, x, dtype)


def silu(x, dtype=None):
    """x * sigmoid(x) (Scalar Engine)."""
    return _unary(silu, x, dtype)


def silu_dx(x, dtype=None):
    """Derivative of SiLU (Scalar Engine)."""
    return _unary(silu_dx, x, dtype)


def softplus(x, dtype=None):
    """log(1 + e^x) (Scalar Engine)."""
    return _unary(softplus, x, dtype)


def mish(x, dtype=None):
    """x * tanh(softplus(x)) (Scalar Engine)."""
    return _unary(mish, x, dtype)


def erf(x, dtype=None):
    """Error function (Scalar Engine)."""
    return _unary(erf, x, dtype)


def erf_dx(x, dtype=None):
    """Derivative of erf, 2/sqrt(pi) * e^(-x^2) (Scalar Engine)."""
    return _unary(erf_dx, x, dtype)


def copy(x, dtype=None):
    """A copy of x in SBUF (tensor_copy; cast through fp32 when dtype differs).
    Also the Scalar Engine's identity activation (`op=nl.copy`)."""
    return _unary(copy, x, dtype)


__all__ = ["negative", "invert", "logical_not", "floor", "ceil", "trunc",
           "sin", "cos", "tan", "arctan",
           "exp", "log", "sqrt", "rsqrt", "reciprocal", "square", "abs", "sign", "tanh",
           "sigmoid", "relu", "gelu", "gelu_apprx_sigmoid", "gelu_apprx_tanh", "gelu_dx",
           "gelu_apprx_sigmoid_dx", "silu", "silu_dx", "softplus", "mish", "erf", "erf_dx",
           "copy"]
