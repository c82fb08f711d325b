"""nki.language tile functions: elementwise, activations, reductions, softmax, rms_norm,
dropout, matmul, transpose, where, broadcast_to, expand_dims, and the op constants.

Each function allocates its result (SBUF, or PSUM for `matmul`/`transpose`) and is
built only from `trnsim.isa` instructions, so semantics live in one place and every
step appears in the record. The same functions are the operator identities kernels
pass as `op=` to ISA instructions (`op=nl.add`, `op=nl.exp`): the ISA resolves them by
`__name__`, so each function keeps its nl name.

Conventions (numerics choices are listed in docs/numerics.md):
- Binary ops take tiles of the same shape (tensor_tensor), or a tile and a scalar, or
  a tile and a per-partition `[P, 1]` tile (tensor_scalar). Anything else is an error:
  the current NKI does not broadcast, in particular not across partitions.
- Result dtype: `dtype` if given; otherwise the tile's dtype (two tiles: the legacy NKI
  promotion; an integer tile with a Python float scalar gives float32 for arithmetic).
- Intermediates of multi-instruction functions are float32 SBUF tiles.
"""
from __future__ import annotations

from ... import isa as _isa
from ...isa.enums import reduce_cmd as _reduce_cmd
from ...machine.errors import NkiValidationError, describe
from ...machine.tensor import NkiTensor
from ...numerics.dtypes import DType, as_dtype, bfloat16, float32, int16, int32, uint8
from .core import ndarray, private_hbm, psum, sbuf

# fp32 just below pi, so m - pi stays inside the Scalar Engine's sin range [-pi, pi].
_PI_LO = float.fromhex("0x1.921fb4p+1")  # 3.1415925 (pi in fp32 rounds up to 3.1415927)
_TWO_PI_LO = 2.0 * _PI_LO


class _NamedOp:
    """An operator constant (`nl.bypass`, `nl.prelu`, `nl.average`): no callable
    semantics of its own, resolved by name by the ISA."""

    def __init__(self, name: str, doc: str):
        self.__name__ = name
        self.name = name
        self.__doc__ = doc

    def __repr__(self) -> str:
        return f"nl.{self.__name__}"


bypass = _NamedOp("bypass", "No-op operator that passes data through unchanged (op0/op1 of "
                            "tensor-scalar instructions, activate2).")
prelu = _NamedOp("prelu", "Parametric ReLU activation (op of activation/activate2; slope "
                          "from relu_param).")
average = _NamedOp("average", "Average reduction operator (op of tensor_partition_reduce).")


# -- helpers --------------------------------------------------------------
def _fail(fname: str, message: str):
    raise NkiValidationError(message, op=f"nl.{fname}")


def _is_tile(v) -> bool:
    return isinstance(v, NkiTensor)


def _need_tile(fname, role, v):
    if not _is_tile(v):
        _fail(fname, f"{role} must be an NKI tile, got {type(v).__name__} {v!r}")
    return v


def _new(shape, dtype, fname, buffer=sbuf, tmp=False):
    return ndarray(tuple(shape), as_dtype(dtype), buffer,
                   f"nl.{fname}" + (".tmp" if tmp else ""))


def _free(t: NkiTensor) -> int:
    n = 1
    for s in t.shape[1:]:
        n *= s
    return n


def _promote(a: DType, b: DType) -> DType:
    """Legacy NKI type promotion of two tile dtypes (nki-api.md §4)."""
    if a == b:
        return a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.is_float:
        if a.is_fp8 and b.is_fp8:
            return bfloat16
        if a.itemsize != b.itemsize:
            return a if a.itemsize > b.itemsize else b
        return float32  # fp16 with bf16, tf32 with fp32
    # both integer (bool_ counts as unsigned)
    sa, sb = a.kind == "int", b.kind == "int"
    if sa == sb:
        return a if a.itemsize >= b.itemsize else b
    signed, unsigned = (a, b) if sa else (b, a)
    if signed.itemsize > unsigned.itemsize:
        return signed
    return {1: int16, 2: int32}.get(unsigned.itemsize, float32)


def _scalar_dtype(tile_dtype: DType, scalar, arithmetic: bool) -> DType:
    """Weak scalar: the tile's dtype, except an integer tile with a Python float scalar
    in an arithmetic op, which gives float32 (legacy NKI: weak floats are fp32)."""
    if arithmetic and tile_dtype.is_int and isinstance(scalar, float):
        return float32
    return tile_dtype


_BITVEC = ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift", "invert")
_COMPARE = ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal")


def _binary(fn, x, y, dtype):
    """Elementwise `fn(x, y)` on tiles/scalars through tensor_tensor / tensor_scalar."""
    fname = fn.__name__
    xt, yt = _is_tile(x), _is_tile(y)
    if not xt and not yt:
        _fail(fname, f"at least one of x, y must be a tile; got {x!r} and {y!r}")
    arith = fname not in _COMPARE
    if fname in _BITVEC:
        for role, v in (("x", x), ("y", y)):
            if _is_tile(v) and not v.dtype.is_int:
                _fail(fname, f"{role} {describe(v)}: inputs must be integer typed")
    if xt and yt:
        out_dtype = as_dtype(dtype) if dtype is not None else _promote(x.dtype, y.dtype)
        if x.shape == y.shape:
            out = _new(x.shape, out_dtype, fname)
            _isa.tensor_tensor(dst=out, data1=x, data2=y, op=fn)
            return out
        if y.shape[0] == x.shape[0] and _free(y) == 1:
            out = _new(x.shape, out_dtype, fname)
            _isa.tensor_scalar(dst=out, data=x, op0=fn, operand0=y)
            return out
        if x.shape[0] == y.shape[0] and _free(x) == 1:
            out = _new(y.shape, out_dtype, fname)
            _isa.tensor_scalar(dst=out, data=y, op0=fn, operand0=x, reverse0=True)
            return out
        _fail(fname, f"x {describe(x)} and y {describe(y)} must have the same shape: "
                     "binary ops do not broadcast in the current NKI (only a scalar or a "
                     f"[{x.shape[0]}, 1] tile is broadcast along the free axis; tiles are "
                     "never broadcast across partitions)")
    tile, scalar, reverse = (x, y, False) if xt else (y, x, True)
    if not isinstance(scalar, (int, float)) and not hasattr(scalar, "__float__"):
        _fail(fname, f"operand {scalar!r} must be a tile or a scalar number")
    out_dtype = as_dtype(dtype) if dtype is not None else _scalar_dtype(
        tile.dtype, scalar, arith and fname not in _BITVEC and not fname.startswith("logical"))
    out = _new(tile.shape, out_dtype, fname)
    _isa.tensor_scalar(dst=out, data=tile, op0=fn, operand0=scalar, reverse0=reverse)
    return out


def _act(fn, x, dtype, **kw):
    """One Scalar Engine activation instruction: out = fn(x * scale + bias)."""
    fname = fn.__name__
    _need_tile(fname, "x", x)
    out = _new(x.shape, dtype if dtype is not None else x.dtype, fname)
    _isa.activation(dst=out, op=fn, data=x, **kw)
    return out


def _ts(fname, x, out_dtype, op0, operand0, reverse0=False, op1=None, operand1=None,
        reverse1=False, tmp=False, shape=None):
    out = _new(shape or x.shape, out_dtype, fname, tmp=tmp)
    _isa.tensor_scalar(dst=out, data=x, op0=op0, operand0=operand0, reverse0=reverse0, op1=op1,
                  operand1=operand1, reverse1=reverse1)
    return out


def _tt(fname, a, b, op, out_dtype, tmp=False):
    out = _new(a.shape, out_dtype, fname, tmp=tmp)
    _isa.tensor_tensor(dst=out, data1=a, data2=b, op=op)
    return out


def _axes(fname, x: NkiTensor, axis) -> tuple:
    """Normalise `axis` (int or sequence; negatives allowed) to sorted trailing free axes."""
    _need_tile(fname, "x", x)
    raw = (axis,) if isinstance(axis, int) else tuple(axis) if axis is not None else None
    if not raw:
        _fail(fname, f"axis={axis!r}: give the free axis (or axes) to reduce")
    nd = x.ndim
    axes = []
    for a in raw:
        a = int(a)
        a2 = a + nd if a < 0 else a
        if not 0 <= a2 < nd:
            _fail(fname, f"axis {a} is out of range for {describe(x)}")
        axes.append(a2)
    axes = tuple(sorted(set(axes)))
    if 0 in axes:
        _fail(fname, f"axis={axis!r} includes the partition dimension (0) of {describe(x)}; "
                     "only free dimensions can be reduced")
    if axes != tuple(range(axes[0], nd)):
        _fail(fname, f"axis={axis!r} on {describe(x)}: the axes must be the last contiguous "
                     f"free dimension(s), e.g. {tuple(range(1, nd))} or ({nd - 1},)")
    return axes


def _kept(shape, axes) -> tuple:
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def _reduced(shape, axes, keepdims) -> tuple:
    if keepdims:
        return _kept(shape, axes)
    out = tuple(s for d, s in enumerate(shape) if d not in axes)
    return out + (1,) * (2 - len(out)) if len(out) < 2 else out


def _count(shape, axes) -> int:
    n = 1
    for d in axes:
        n *= shape[d]
    return n


def _whole_free(x, axes) -> bool:
    return axes == tuple(range(1, x.ndim))


def _column(t: NkiTensor) -> NkiTensor:
    """A keepdims reduction result over all free axes as a [P, 1] view."""
    return t if t.ndim == 2 else t.reshape((t.shape[0], 1))


def _bcast(t: NkiTensor, shape) -> NkiTensor:
    """Stride-0 view of a keepdims result over the free axes of `shape`."""
    for d in range(1, t.ndim):
        if t.shape[d] == 1 and shape[d] != 1:
            t = t.broadcast(d, shape[d])
    return t


def _per_row(fname, x, r, op, out_dtype, axes, tmp=False):
    """out = op(x, r) with r a keepdims reduction result broadcast over `axes`."""
    if _whole_free(x, axes):
        return _ts(fname, x, out_dtype, op, _column(r), tmp=tmp)
    return _tt(fname, x, _bcast(r, x.shape), op, out_dtype, tmp=tmp)


def _to_sbuf(fname, x):
    """x itself when in SBUF, else a copy into SBUF (engines that cannot read PSUM)."""
    if x.space == "sbuf":
        return x
    if x.space == "hbm":
        t = _new(x.shape, x.dtype, fname, tmp=True)
        _isa.dma_copy(dst=t, src=x)
        return t
    t = _new(x.shape, x.dtype, fname, tmp=True)
    _isa.tensor_copy(dst=t, src=x)
    return t


# -- elementwise binary -----------------------------------------------------
def add(x, y, dtype=None):
    """x + y, elementwise (tensor_tensor, or tensor_scalar with a scalar / [P,1] tile)."""
    return _binary(add, x, y, dtype)


def subtract(x, y, dtype=None):
    """x - y, elementwise."""
    return _binary(subtract, x, y, dtype)


def multiply(x, y, dtype=None):
    """x * y, elementwise."""
    return _binary(multiply, x, y, dtype)


def divide(x, y, dtype=None):
    """x / y, elementwise (fp32 division)."""
    return _binary(divide, x, y, dtype)


def maximum(x, y, dtype=None):
    """max(x, y), elementwise."""
    return _binary(maximum, x, y, dtype)


def minimum(x, y, dtype=None):
    """min(x, y), elementwise."""
    return _binary(minimum, x, y, dtype)


def abs_max(x, y, dtype=None):
    """x if |x| > |y| else y (the signed value), elementwise (NeuronCore-v4)."""
    return _binary(abs_max, x, y, dtype)


def abs_min(x, y, dtype=None):
    """x if |x| < |y| else y (the signed value), elementwise (NeuronCore-v4)."""
    return _binary(abs_min, x, y, dtype)


def power(x, y, dtype=None):
    """x ** y, elementwise."""
    return _binary(power, x, y, dtype)


def fmod(x, y, dtype=None):
    """Remainder of x / y with the sign of x (C fmod), elementwise."""
    return _binary(fmod, x, y, dtype)


def mod(x, y, dtype=None):
    """Remainder of x / y with the sign of y (Python %), elementwise."""
    return _binary(mod, x, y, dtype)


def equal(x, y, dtype=None):
    """1 where x == y, else 0."""
    return _binary(equal, x, y, dtype)


def not_equal(x, y, dtype=None):
    """1 where x != y, else 0."""
    return _binary(not_equal, x, y, dtype)


def greater(x, y, dtype=None):
    """1 where x > y, else 0."""
    return _binary(greater, x, y, dtype)


def greater_equal(x, y, dtype=None):
    """1 where x >= y, else 0."""
    return _binary(greater_equal, x, y, dtype)


def less(x, y, dtype=None):
    """1 where x < y, else 0."""
    return _binary(less, x, y, dtype)


def less_equal(x, y, dtype=None):
    """1 where x <= y, else 0."""
    return _binary(less_equal, x, y, dtype)


def logical_and(x, y, dtype=None):
    """1 where x and y are both nonzero, else 0."""
    return _binary(logical_and, x, y, dtype)


def logical_or(x, y, dtype=None):
    """1 where x or y is nonzero, else 0."""
    return _binary(logical_or, x, y, dtype)


def logical_xor(x, y, dtype=None):
    """1 where exactly one of x, y is nonzero, else 0."""
    return _binary(logical_xor, x, y, dtype)


def bitwise_and(x, y, dtype=None):
    """x & y on the integer bit patterns."""
    return _binary(bitwise_and, x, y, dtype)


def bitwise_or(x, y, dtype=None):
    """x | y on the integer bit patterns."""
    return _binary(bitwise_or, x, y, dtype)


def bitwise_xor(x, y, dtype=None):
    """x ^ y on the integer bit patterns."""
    return _binary(bitwise_xor, x, y, dtype)


def left_shift(x, y, dtype=None):
    """x << y (logical), integer tiles."""
    return _binary(left_shift, x, y, dtype)


def right_shift(x, y, dtype=None):
    """x >> y (logical), integer tiles."""
    return _binary(right_shift, x, y, dtype)


def invert(x, dtype=None):
    """Bitwise NOT: XOR with all ones (integer tiles)."""
    _need_tile("invert", "x", x)
    if not x.dtype.is_int:
        _fail("invert", f"x {describe(x)}: input must be integer typed")
    return _ts("invert", x, dtype if dtype is not None else x.dtype, bitwise_xor, -1)


def logical_not(x, dtype=None):
    """1 - x for boolean-like tiles: XOR with 1 (logical)."""
    _need_tile("logical_not", "x", x)
    return _ts("logical_not", x, dtype if dtype is not None else x.dtype, logical_xor, 1.0)


# -- unary: Scalar Engine activations -------------------------------------
def exp(x, dtype=None):
    """e ** x (Scalar Engine)."""
    return _act(exp, x, dtype)


def log(x, dtype=None):
    """Natural logarithm (Scalar Engine; valid input range [2^-64, 2^64])."""
    return _act(log, x, dtype)


def sqrt(x, dtype=None):
    """Square root (Scalar Engine)."""
    return _act(sqrt, x, dtype)


def rsqrt(x, dtype=None):
    """1 / sqrt(x) (Scalar Engine)."""
    return _act(rsqrt, x, dtype)


def reciprocal(x, dtype=None):
    """1 / x (Scalar Engine)."""
    return _act(reciprocal, x, dtype)


def square(x, dtype=None):
    """x * x (Scalar Engine)."""
    return _act(square, x, dtype)


def abs(x, dtype=None):
    """|x| (Scalar Engine)."""
    return _act(abs, x, dtype)


def sign(x, dtype=None):
    """-1, 0 or 1 by the sign of x (Scalar Engine)."""
    return _act(sign, x, dtype)


def tanh(x, dtype=None):
    """Hyperbolic tangent (Scalar Engine)."""
    return _act(tanh, x, dtype)


def sigmoid(x, dtype=None):
    """1 / (1 + e^-x) (Scalar Engine)."""
    return _act(sigmoid, x, dtype)


def relu(x, dtype=None):
    """max(x, 0) (Scalar Engine)."""
    return _act(relu, x, dtype)


def gelu(x, dtype=None):
    """GELU, x * Phi(x) (Scalar Engine)."""
    return _act(gelu, x, dtype)


def gelu_apprx_sigmoid(x, dtype=None):
    """GELU approximated with a sigmoid (Scalar Engine)."""
    return _act(gelu_apprx_sigmoid, x, dtype)


def gelu_apprx_tanh(x, dtype=None):
    """GELU approximated with tanh (Scalar Engine)."""
    return _act(gelu_apprx_tanh, x, dtype)


def gelu_dx(x, dtype=None):
    """Derivative of GELU (Scalar Engine)."""
    return _act(gelu_dx, x, dtype)


def gelu_apprx_sigmoid_dx(x, dtype=None):
    """Derivative of the sigmoid-approximated GELU (Scalar Engine)."""
    return _act(gelu_apprx_sigmoid_dx, x, dtype)


def silu(x, dtype=None):
    """x * sigmoid(x) (Scalar Engine)."""
    return _act(silu, x, dtype)


def silu_dx(x, dtype=None):
    """Derivative of SiLU (Scalar Engine)."""
    return _act(silu_dx, x, dtype)


def softplus(x, dtype=None):
    """log(1 + e^x) (Scalar Engine)."""
    return _act(softplus, x, dtype)


def mish(x, dtype=None):
    """x * tanh(softplus(x)) (Scalar Engine)."""
    return _act(mish, x, dtype)


def erf(x, dtype=None):
    """Error function (Scalar Engine)."""
    return _act(erf, x, dtype)


def erf_dx(x, dtype=None):
    """Derivative of erf, 2/sqrt(pi) * e^(-x^2) (Scalar Engine)."""
    return _act(erf_dx, x, dtype)


def copy(x, dtype=None):
    """A copy of x in SBUF (tensor_copy; cast through fp32 when dtype differs).
    Also the Scalar Engine's identity activation (`op=nl.copy`)."""
    _need_tile("copy", "x", x)
    out = _new(x.shape, dtype if dtype is not None else x.dtype, "copy")
    _isa.tensor_copy(dst=out, src=x)
    return out


# -- unary: Vector Engine arithmetic --------------------------------------
def negative(x, dtype=None):
    """-x (tensor_scalar multiply by -1)."""
    _need_tile("negative", "x", x)
    return _ts("negative", x, dtype if dtype is not None else x.dtype, multiply, -1.0)


def _round(fname, x, dtype, divisor, op):
    """x - op(x, divisor), with the remainder kept in fp32: one scalar_tensor_tensor
    (two instructions when x is in PSUM, since data and operand1 cannot both be)."""
    _need_tile(fname, "x", x)
    out_dtype = dtype if dtype is not None else x.dtype
    if x.space == "psum":
        r = _ts(fname, x, float32, op, divisor, tmp=True)
        return _tt(fname, x, r, subtract, out_dtype)
    out = _new(x.shape, out_dtype, fname)
    _isa.scalar_tensor_tensor(dst=out, data=x, op0=op, operand0=divisor, op1=subtract,
                              operand1=x, reverse1=True)
    return out


def floor(x, dtype=None):
    """Largest integer <= x: x - mod(x, 1)."""
    return _round("floor", x, dtype, 1.0, mod)


def ceil(x, dtype=None):
    """Smallest integer >= x: x - mod(x, -1) (mod has the divisor's sign)."""
    return _round("ceil", x, dtype, -1.0, mod)


def trunc(x, dtype=None):
    """x rounded toward zero: x - fmod(x, 1)."""
    return _round("trunc", x, dtype, 1.0, fmod)


# -- trigonometry ------------------------------------------------------------
def _bias(fname, value: float, partitions: int):
    """A constant activation bias: the constant itself on NeuronCore-v3+, a memset
    [P, 1] fp32 tile on NeuronCore-v2 (which takes only tensor biases)."""
    from ...machine.runtime import active_run
    if active_run().chip.generation >= 3:
        return value
    t = _new((partitions, 1), float32, fname, tmp=True)
    _isa.memset(dst=t, value=value)
    return t


def _sine(fname, x, shift, dtype):
    """sin(x + shift) over the full input range: m = mod(x + pi + shift, 2pi) (one
    tensor_scalar), then the Scalar Engine's sin of m - pi (the activation's bias),
    whose argument lies in [-pi, pi) as the activation requires. pi is taken as the
    fp32 value just below pi so the argument never leaves that range; x = 0 maps to
    exactly 0."""
    m = _ts(fname, x, float32, add, _PI_LO + shift, op1=mod, operand1=_TWO_PI_LO, tmp=True)
    out = _new(x.shape, dtype, fname)
    _isa.activation(dst=out, op=sin, data=m, bias=_bias(fname, -_PI_LO, x.shape[0]))
    return out


def sin(x, dtype=None):
    """Sine over the full input range (range reduction, then the Scalar Engine's sin)."""
    _need_tile("sin", "x", x)
    return _sine("sin", x, 0.0, dtype if dtype is not None else x.dtype)


def cos(x, dtype=None):
    """Cosine as sin(x + pi/2), range-reduced like sin."""
    _need_tile("cos", "x", x)
    return _sine("cos", x, _PI_LO / 2, dtype if dtype is not None else x.dtype)


def tan(x, dtype=None):
    """sin(x) / cos(x), each range-reduced, divided in fp32."""
    _need_tile("tan", "x", x)
    s = _sine("tan", x, 0.0, float32)
    c = _sine("tan", x, _PI_LO / 2, float32)
    return _tt("tan", s, c, divide, dtype if dtype is not None else x.dtype)


def arctan(x, dtype=None):
    """Inverse tangent over the full input range. The Scalar Engine's arctan is valid
    on [-pi/2, pi/2], so the argument is first halved in angle:
    arctan(x) = 2 * arctan(x / (1 + sqrt(1 + x^2))), whose argument lies in (-1, 1)."""
    _need_tile("arctan", "x", x)
    sq = _tt("arctan", x, x, multiply, float32, tmp=True)
    sq1 = _ts("arctan", sq, float32, add, 1.0, tmp=True)
    r = _new(x.shape, float32, "arctan", tmp=True)
    _isa.activation(dst=r, op=sqrt, data=sq1)
    d = _ts("arctan", r, float32, add, 1.0, tmp=True)
    t = _tt("arctan", x, d, divide, float32, tmp=True)
    a = _new(x.shape, float32, "arctan", tmp=True)
    _isa.activation(dst=a, op=arctan, data=t)
    return _ts("arctan", a, dtype if dtype is not None else x.dtype, multiply, 2.0)


# -- reductions --------------------------------------------------------------
def _reduce(fname, op, x, axis, dtype, keepdims, negate=False, out_dtype=None):
    axes = _axes(fname, x, axis)
    out = _new(_reduced(x.shape, axes, keepdims),
               out_dtype or (dtype if dtype is not None else x.dtype), fname)
    _isa.tensor_reduce(dst=out, op=op, data=x, axis=axes, negate=negate, keepdims=keepdims)
    return out


def sum(x, axis, dtype=None, keepdims=False):
    """Sum over the trailing free axes `axis` (tensor_reduce add, fp32)."""
    return _reduce("sum", add, x, axis, dtype, keepdims)


def max(x, axis, dtype=None, keepdims=False):
    """Maximum over the trailing free axes `axis`."""
    return _reduce("max", maximum, x, axis, dtype, keepdims)


def min(x, axis, dtype=None, keepdims=False):
    """Minimum over the trailing free axes `axis`."""
    return _reduce("min", minimum, x, axis, dtype, keepdims)


def prod(x, axis, dtype=None, keepdims=False):
    """Product over the trailing free axes `axis`."""
    return _reduce("prod", multiply, x, axis, dtype, keepdims)


def all(x, axis, dtype=None):
    """1 where every element along `axis` is nonzero, else 0 (logical_and reduction)."""
    return _reduce("all", logical_and, x, axis, dtype, False)


def mean(x, axis, dtype=None, keepdims=False):
    """Arithmetic mean over `axis`: an fp32 sum, then a multiply by 1/n."""
    axes = _axes("mean", x, axis)
    s = _reduce("mean", add, x, axes, None, keepdims, out_dtype=float32)
    n = _count(x.shape, axes)
    return _ts("mean", s, dtype if dtype is not None else x.dtype, multiply, 1.0 / n)


def var(x, axis, dtype=None, keepdims=False):
    """Population variance over `axis` (two passes in fp32: mean, then the mean of the
    squared deviations). As documented, the result always has the keepdims shape."""
    axes = _axes("var", x, axis)
    n = _count(x.shape, axes)
    s = _reduce("var", add, x, axes, None, True, out_dtype=float32)
    neg_mean = _ts("var", s, float32, multiply, -1.0 / n, tmp=True)
    d = _per_row("var", x, neg_mean, add, float32, axes, tmp=True)
    d2 = _tt("var", d, d, multiply, float32, tmp=True)
    ss = _reduce("var", add, d2, axes, None, True, out_dtype=float32)
    return _ts("var", ss, dtype if dtype is not None else x.dtype, multiply, 1.0 / n,
               shape=ss.shape)


def softmax(x, axis=-1, dtype=None):
    """exp(x - max) / sum(exp(x - max)) over the trailing free axes `axis`.

    Over all free axes: tensor_reduce (negated max), one activation(exp) with the
    [P,1] bias and an add-reduction into reduce_res, and a tensor_scalar divide."""
    axes = _axes("softmax", x, axis)
    out_dtype = dtype if dtype is not None else x.dtype
    neg_max = _reduce("softmax", maximum, x, axes, None, True, negate=True,
                      out_dtype=float32)
    if _whole_free(x, axes):
        e = _new(x.shape, float32, "softmax", tmp=True)
        total = _new((x.shape[0], 1), float32, "softmax", tmp=True)
        _isa.activation(dst=e, op=exp, data=x, bias=_column(neg_max), scale=1.0, reduce_op=add,
                   reduce_res=total, reduce_cmd=_reduce_cmd.reset_reduce)
        return _ts("softmax", e, out_dtype, divide, total)
    shifted = _per_row("softmax", x, neg_max, add, float32, axes, tmp=True)
    e = _new(x.shape, float32, "softmax", tmp=True)
    _isa.activation(dst=e, op=exp, data=shifted)
    total = _reduce("softmax", add, e, axes, None, True, out_dtype=float32)
    return _per_row("softmax", e, total, divide, out_dtype, axes)


def rms_norm(x, w, axis, n, epsilon=1e-06, dtype=None, compute_dtype=None):
    """x / sqrt(sum(x^2, axis) / n + epsilon) * w.

    Sum of squares (tensor_tensor + tensor_reduce, fp32), mean + epsilon (tensor_scalar),
    rsqrt (activation), then the scaling by the per-row factor and by w (in
    `compute_dtype`, default float32) and the cast to `dtype` (default x.dtype)."""
    axes = _axes("rms_norm", x, axis)
    _need_tile("rms_norm", "w", w)
    cdt = as_dtype(compute_dtype) if compute_dtype is not None else float32
    sq = _tt("rms_norm", x, x, multiply, float32, tmp=True)
    ss = _reduce("rms_norm", add, sq, axes, None, True, out_dtype=float32)
    ms = _ts("rms_norm", ss, float32, multiply, 1.0 / float(n), op1=add,
             operand1=float(epsilon), tmp=True, shape=ss.shape)
    inv = _new(ss.shape, float32, "rms_norm", tmp=True)
    _isa.activation(dst=inv, op=rsqrt, data=ms)
    out_dtype = dtype if dtype is not None else x.dtype
    if (compute_dtype is None and _whole_free(x, axes) and w.shape == x.shape
            and not (x.space == "psum" and w.space == "psum")):
        out = _new(x.shape, out_dtype, "rms_norm")
        _isa.scalar_tensor_tensor(dst=out, data=x, op0=multiply, operand0=_column(inv),
                                  op1=multiply, operand1=w)
        return out
    y = _per_row("rms_norm", x, inv, multiply, cdt, axes, tmp=True)
    return _binary_named("rms_norm", multiply, y, w, out_dtype)


def _binary_named(fname, fn, x, y, dtype):
    """_binary with errors naming the calling nl function."""
    try:
        return _binary(fn, x, y, dtype)
    except NkiValidationError as e:
        if e.op == f"nl.{fn.__name__}":
            _fail(fname, e.bare_message)
        raise


def dropout(x, rate, dtype=None):
    """Zero each element with probability `rate` (a constant or a [P,1] tile) on the
    Vector Engine (nisa.dropout); kept elements are not rescaled."""
    _need_tile("dropout", "x", x)
    out = _new(x.shape, x.dtype, "dropout")
    _isa.dropout(dst=out, data=x, prob=rate)
    if dtype is not None and as_dtype(dtype) != x.dtype:
        return copy(out, dtype)
    return out


def random_seed(seed):
    """Seed the Vector Engine PRNG from a [1,1] 32-bit tile (nisa.set_rng_seed)."""
    _need_tile("random_seed", "seed", seed)
    _isa.set_rng_seed(src_seeds=seed)


# -- layout / selection ------------------------------------------------------
def where(condition, x, y, dtype=None):
    """x where condition is nonzero, else y (each a tile of condition's shape, or a scalar).

    predicate = (condition != 0) as uint8 (tensor_scalar), out = y (tensor_copy or
    memset), then tensor_copy_predicated(out, x, predicate)."""
    _need_tile("where", "condition", condition)
    for role, v in (("x", x), ("y", y)):
        if _is_tile(v) and v.shape != condition.shape:
            _fail("where", f"{role} {describe(v)} must have the shape of condition "
                           f"{describe(condition)} (no broadcasting)")
        if not _is_tile(v) and not isinstance(v, (int, float)):
            _fail("where", f"{role} must be a tile or a scalar, got {v!r}")
    if dtype is not None:
        out_dtype = as_dtype(dtype)
    elif _is_tile(x) and _is_tile(y):
        out_dtype = _promote(x.dtype, y.dtype)
    elif _is_tile(x) or _is_tile(y):
        out_dtype = (x if _is_tile(x) else y).dtype
    else:
        out_dtype = condition.dtype
    if str(condition.dtype) in ("uint8", "uint16", "uint32", "bool_"):
        pred = condition
    else:
        pred = _ts("where", condition, uint8, not_equal, 0.0, tmp=True)
    out = _new(condition.shape, out_dtype, "where")
    if _is_tile(y):
        _isa.tensor_copy(dst=out, src=y)
    else:
        _isa.memset(dst=out, value=y)
    src = x
    if _is_tile(x) and x.dtype != out_dtype:
        src = _new(x.shape, out_dtype, "where", tmp=True)
        _isa.tensor_copy(dst=src, src=x)
    _isa.tensor_copy_predicated(dst=out, src=src, predicate=pred)
    return out


def expand_dims(x, axis):
    """A view of x with a size-1 axis inserted at `axis` (int or sequence)."""
    _need_tile("expand_dims", "x", x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    norm = sorted(a + nd if a < 0 else a for a in axes)
    out = x
    for a in norm:
        if a == 0 and x.on_chip:
            _fail("expand_dims", f"axis 0 is the partition dimension of {describe(x)}; "
                                 "a new axis can only be inserted among the free axes")
        out = out.expand_dim(a)
    return out


def broadcast_to(x, shape, dtype=None):
    """x broadcast to `shape` (same rank; each dimension equal or from 1).

    Free-axis broadcast: tensor_copy from a stride-0 view. Partition broadcast (x has
    one partition): an SBUF-to-SBUF DMA reading that partition for every row."""
    _need_tile("broadcast_to", "x", x)
    shape = tuple(int(s) for s in shape)
    if len(shape) != x.ndim:
        _fail("broadcast_to", f"target shape {shape} must have the rank of {describe(x)}")
    for d, (a, b) in enumerate(zip(x.shape, shape)):
        if a != b and a != 1:
            _fail("broadcast_to", f"cannot broadcast {describe(x)} to {shape}: dimension {d} "
                                  f"is {a}, neither {b} nor 1")
    out_dtype = as_dtype(dtype) if dtype is not None else x.dtype
    if shape == x.shape:
        return x if out_dtype == x.dtype else copy(x, out_dtype)
    out = _new(shape, out_dtype, "broadcast_to")
    if shape[0] != x.shape[0]:
        # Engines work lane by lane, so a partition broadcast goes through memory: the
        # row is written to a private HBM scratch and read back with partition stride 0.
        src = _to_sbuf("broadcast_to", x) if x.space == "psum" else x
        row = ndarray(x.shape, x.dtype, private_hbm, "nl.broadcast_to.row")
        _isa.dma_copy(dst=row, src=src)
        view = row
        for d in range(len(shape)):
            if row.shape[d] == 1 and shape[d] != 1:
                view = view.broadcast(d, shape[d])
        _isa.dma_copy(dst=out, src=view)
        return out
    _isa.tensor_copy(dst=out, src=_bcast(x, shape))
    return out


def transpose(x, dtype=None):
    """Swap the partition and free dimension of a 2-D tile (nc_transpose into PSUM)."""
    _need_tile("transpose", "x", x)
    src = _to_sbuf("transpose", x)
    if src.ndim != 2:
        src = src.reshape((src.shape[0], _free(src)))
    t = _new((src.shape[1], src.shape[0]), x.dtype, "transpose", buffer=psum)
    _isa.nc_transpose(dst=t, data=src)
    if dtype is not None and as_dtype(dtype) != x.dtype:
        out = _new(t.shape, dtype, "transpose", buffer=psum)
        _isa.tensor_copy(dst=out, src=t)
        return out
    return t


def matmul(x, y, transpose_x=False):
    """x @ y (or x.T @ y with transpose_x=True) on the Tensor Engine, fp32 into PSUM.

    Without transpose_x, x [M, K] is first transposed (nc_transpose to PSUM, copied
    back to SBUF) so its contraction dimension sits on the partitions."""
    _need_tile("matmul", "x", x)
    _need_tile("matmul", "y", y)
    if x.ndim != 2:
        _fail("matmul", f"x {describe(x)} must be a 2-D tile")
    k_x = x.shape[0] if transpose_x else x.shape[1]
    if k_x != y.shape[0]:
        what = "partition" if transpose_x else "free"
        _fail("matmul", f"contraction mismatch: x {describe(x)} {what} dimension {k_x} must "
                        f"equal y {describe(y)} partition dimension {y.shape[0]}"
                        + ("" if transpose_x else " (x @ y with transpose_x=False)"))
    if transpose_x:
        stationary = _to_sbuf("matmul", x)
    else:
        xt = transpose(x)
        stationary = _new(xt.shape, x.dtype, "matmul", tmp=True)
        _isa.tensor_copy(dst=stationary, src=xt)
    moving = _to_sbuf("matmul", y)
    out = _new((stationary.shape[1],) + tuple(y.shape[1:]), float32, "matmul", buffer=psum)
    _isa.nc_matmul(dst=out, stationary=stationary, moving=moving)
    return out


__all__ = [
    "bypass", "prelu", "average",
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "abs_max", "abs_min",
    "power", "fmod", "mod", "equal", "not_equal", "greater", "greater_equal", "less",
    "less_equal", "logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and",
    "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift",
    "exp", "log", "sqrt", "rsqrt", "reciprocal", "square", "abs", "sign", "tanh", "sigmoid",
    "relu", "gelu", "gelu_apprx_sigmoid", "gelu_apprx_tanh", "gelu_dx",
    "gelu_apprx_sigmoid_dx", "silu", "silu_dx", "softplus", "mish", "erf", "erf_dx", "copy",
    "negative", "floor", "ceil", "trunc", "sin", "cos", "tan", "arctan",
    "sum", "max", "min", "prod", "all", "mean", "var", "softmax", "rms_norm", "dropout",
    "random_seed", "where", "expand_dims", "broadcast_to", "transpose", "matmul",
]


# -- destination-passing forms -------------------------------------------------
# The same compositions as the functions above, writing their final instruction into a
# given `dst` (a view of the right shape; its dtype is the output dtype). The legacy
# front end (trnsim/legacy/compute.py) runs its return-style calls through these, so
# both API generations share one implementation. Not part of the nki.language API.

def binary_into(dst, x, y, op):
    """dst = op(x, y): tensor_tensor for tiles of one shape; tensor_scalar for a scalar or
    a [P, 1] tile on either side; tensor_tensor over a stride-0 view for any other
    broadcast along free axes (same rank). Never broadcast across partitions."""
    fname = getattr(op, "__name__", str(op))
    xt, yt = _is_tile(x), _is_tile(y)
    if not xt and not yt:
        _fail(fname, f"at least one of x, y must be a tile; got {x!r} and {y!r}")
    if xt and yt:
        if x.shape == y.shape:
            _isa.tensor_tensor(dst=dst, data1=x, data2=y, op=op)
            return
        if x.shape[0] == y.shape[0] and _free(y) == 1:
            _isa.tensor_scalar(dst=dst, data=x, op0=op, operand0=y)
            return
        if x.shape[0] == y.shape[0] and _free(x) == 1:
            _isa.tensor_scalar(dst=dst, data=y, op0=op, operand0=x, reverse0=True)
            return
        if x.shape[0] == y.shape[0] and x.ndim == y.ndim == dst.ndim:
            bx, by = _bcast(x, dst.shape), _bcast(y, dst.shape)
            if bx.shape == by.shape == tuple(dst.shape):
                _isa.tensor_tensor(dst=dst, data1=bx, data2=by, op=op)
                return
        _fail(fname, f"x {describe(x)} and y {describe(y)} do not broadcast to dst "
                     f"{describe(dst)} along free axes (tiles are never broadcast across "
                     "partitions)")
    tile, scalar, reverse = (x, y, False) if xt else (y, x, True)
    _isa.tensor_scalar(dst=dst, data=tile, op0=op, operand0=scalar, reverse0=reverse)


def _round_into(dst, x, divisor, op):
    if x.space == "psum":
        r = _ts("round", x, float32, op, divisor, tmp=True)
        _isa.tensor_tensor(dst=dst, data1=x, data2=r, op=subtract)
        return
    _isa.scalar_tensor_tensor(dst=dst, data=x, op0=op, operand0=divisor, op1=subtract,
                              operand1=x, reverse1=True)


def _sine_into(dst, x, shift):
    m = _ts("sin", x, float32, add, _PI_LO + shift, op1=mod, operand1=_TWO_PI_LO, tmp=True)
    _isa.activation(dst=dst, op=sin, data=m, bias=_bias("sin", -_PI_LO, x.shape[0]))


def unary_into(dst, x, op):
    """dst = op(x) for the unary nl function `op` (given by function or name)."""
    name = op if isinstance(op, str) else op.__name__
    if name == "negative":
        _isa.tensor_scalar(dst=dst, data=x, op0=multiply, operand0=-1.0)
    elif name == "invert":
        _isa.tensor_scalar(dst=dst, data=x, op0=bitwise_xor, operand0=-1)
    elif name == "logical_not":
        _isa.tensor_scalar(dst=dst, data=x, op0=logical_xor, operand0=1.0)
    elif name in ("floor", "ceil", "trunc"):
        divisor, rop = {"floor": (1.0, mod), "ceil": (-1.0, mod), "trunc": (1.0, fmod)}[name]
        _round_into(dst, x, divisor, rop)
    elif name in ("sin", "cos"):
        _sine_into(dst, x, 0.0 if name == "sin" else _PI_LO / 2)
    elif name == "tan":
        s = _new(x.shape, float32, "tan", tmp=True)
        c = _new(x.shape, float32, "tan", tmp=True)
        _sine_into(s, x, 0.0)
        _sine_into(c, x, _PI_LO / 2)
        _isa.tensor_tensor(dst=dst, data1=s, data2=c, op=divide)
    elif name == "arctan":
        sq = _tt("arctan", x, x, multiply, float32, tmp=True)
        sq1 = _ts("arctan", sq, float32, add, 1.0, tmp=True)
        r = _new(x.shape, float32, "arctan", tmp=True)
        _isa.activation(dst=r, op=sqrt, data=sq1)
        d = _ts("arctan", r, float32, add, 1.0, tmp=True)
        t = _tt("arctan", x, d, divide, float32, tmp=True)
        a = _new(x.shape, float32, "arctan", tmp=True)
        _isa.activation(dst=a, op=arctan, data=t)
        _isa.tensor_scalar(dst=dst, data=a, op0=multiply, operand0=2.0)
    elif name == "copy":
        _isa.tensor_copy(dst=dst, src=x)
    else:
        _isa.activation(dst=dst, op=op, data=x)


_REDUCE_OPS = {"sum": add, "max": maximum, "min": minimum, "prod": multiply,
               "all": logical_and}


def reduce_into(dst, x, name, axis, keepdims=False):
    """dst = the `name` reduction (sum, max, min, prod, all, mean, var) of x over the
    trailing free axes `axis`; dst holds the reduced elements in any layout."""
    axes = _axes(name, x, axis)
    if name in _REDUCE_OPS:
        _isa.tensor_reduce(dst=dst, op=_REDUCE_OPS[name], data=x, axis=axes,
                           keepdims=keepdims)
        return
    n = _count(x.shape, axes)
    if name == "mean":
        s = _reduce("mean", add, x, axes, None, keepdims, out_dtype=float32)
        _isa.tensor_scalar(dst=dst, data=s, op0=multiply, operand0=1.0 / n)
        return
    if name != "var":
        _fail(name, f"{name!r} is not a reduction")
    s = _reduce("var", add, x, axes, None, True, out_dtype=float32)
    neg_mean = _ts("var", s, float32, multiply, -1.0 / n, tmp=True)
    d = _per_row("var", x, neg_mean, add, float32, axes, tmp=True)
    d2 = _tt("var", d, d, multiply, float32, tmp=True)
    ss = _reduce("var", add, d2, axes, None, True, out_dtype=float32)
    _isa.tensor_scalar(dst=dst, data=ss, op0=multiply, operand0=1.0 / n)


def softmax_into(dst, x, axis):
    """dst = softmax of x over the trailing free axes `axis` (see softmax)."""
    axes = _axes("softmax", x, axis)
    neg_max = _reduce("softmax", maximum, x, axes, None, True, negate=True,
                      out_dtype=float32)
    e = _new(x.shape, float32, "softmax", tmp=True)
    if _whole_free(x, axes):
        total = _new((x.shape[0], 1), float32, "softmax", tmp=True)
        _isa.activation(dst=e, op=exp, data=x, bias=_column(neg_max), scale=1.0,
                        reduce_op=add, reduce_res=total,
                        reduce_cmd=_reduce_cmd.reset_reduce)
        _isa.tensor_scalar(dst=dst, data=e, op0=divide, operand0=total)
        return
    shifted = _per_row("softmax", x, neg_max, add, float32, axes, tmp=True)
    _isa.activation(dst=e, op=exp, data=shifted)
    total = _reduce("softmax", add, e, axes, None, True, out_dtype=float32)
    _isa.tensor_tensor(dst=dst, data1=e, data2=_bcast(total, x.shape), op=divide)


def rms_norm_into(dst, x, w, axis, n, epsilon=1e-06, compute_dtype=None):
    """dst = x / sqrt(sum(x^2, axis) / n + epsilon) * w (see rms_norm)."""
    axes = _axes("rms_norm", x, axis)
    _need_tile("rms_norm", "w", w)
    sq = _tt("rms_norm", x, x, multiply, float32, tmp=True)
    ss = _reduce("rms_norm", add, sq, axes, None, True, out_dtype=float32)
    ms = _ts("rms_norm", ss, float32, multiply, 1.0 / float(n), op1=add,
             operand1=float(epsilon), tmp=True, shape=ss.shape)
    inv = _new(ss.shape, float32, "rms_norm", tmp=True)
    _isa.activation(dst=inv, op=rsqrt, data=ms)
    if (compute_dtype is None and _whole_free(x, axes) and w.shape == x.shape
            and not (x.space == "psum" and w.space == "psum")):
        _isa.scalar_tensor_tensor(dst=dst, data=x, op0=multiply, operand0=_column(inv),
                                  op1=multiply, operand1=w)
        return
    cdt = as_dtype(compute_dtype) if compute_dtype is not None else float32
    y = _per_row("rms_norm", x, inv, multiply, cdt, axes, tmp=True)
    binary_into(dst, y, w, multiply)


def where_into(dst, condition, x, y):
    """dst = x where condition is nonzero, else y (tiles of dst's shape or scalars).
    When dst shares memory with x, x is copied first and y is written where the
    predicate is zero, so neither input is overwritten before it is read."""
    if str(condition.dtype) in ("uint8", "uint16", "uint32", "bool_") and not (
            condition.storage is dst.storage):
        pred = condition
    else:
        pred = _ts("where", condition, uint8, not_equal, 0.0, tmp=True)

    def as_dst_dtype(v):
        if _is_tile(v) and v.dtype != dst.dtype:
            t = _new(v.shape, dst.dtype, "where", tmp=True)
            _isa.tensor_copy(dst=t, src=v)
            return t
        return v

    first, second, reverse = y, x, False
    if _is_tile(x) and x.storage is dst.storage:
        first, second, reverse = x, y, True
    second = as_dst_dtype(second)
    if _is_tile(first):
        _isa.tensor_copy(dst=dst, src=first)
    else:
        _isa.memset(dst=dst, value=first)
    _isa.tensor_copy_predicated(dst=dst, src=second, predicate=pred, reverse_pred=reverse)


def broadcast_into(dst, x):
    """dst = x broadcast to dst.shape (same rank; each dim equal or from 1): a
    tensor_copy from a stride-0 view along free axes; across partitions, a DMA through a
    private HBM row read back with partition stride 0 (see broadcast_to)."""
    shape = tuple(dst.shape)
    if shape[0] != x.shape[0]:
        src = _to_sbuf("broadcast_to", x) if x.space == "psum" else x
        row = ndarray(x.shape, x.dtype, private_hbm, "nl.broadcast_to.row")
        _isa.dma_copy(dst=row, src=src)
        view = row
        for d in range(len(shape)):
            if row.shape[d] == 1 and shape[d] != 1:
                view = view.broadcast(d, shape[d])
        _isa.dma_copy(dst=dst, src=view)
        return
    _isa.tensor_copy(dst=dst, src=_bcast(x, shape))


def transpose_into(dst, x):
    """dst[F, P] = x[P, F] (nc_transpose on the Tensor Engine into PSUM; through a PSUM
    tile and a tensor_copy when dst is not a PSUM tile of x's dtype)."""
    src = _to_sbuf("transpose", x)
    if src.ndim != 2:
        src = src.reshape((src.shape[0], _free(src)))
    if dst.space == "psum" and dst.dtype == src.dtype:
        _isa.nc_transpose(dst=dst, data=src)
        return
    t = _new((src.shape[1], src.shape[0]), src.dtype, "transpose", buffer=psum, tmp=True)
    _isa.nc_transpose(dst=t, data=src)
    _isa.tensor_copy(dst=dst, src=t)


def matmul_into(dst, x, y, transpose_x=False, accumulate=None):
    """dst = x @ y (x.T @ y with transpose_x) on the Tensor Engine (see matmul);
    `accumulate` as nc_matmul's. A dst outside PSUM gets the result through a PSUM tile
    (copied, or added when accumulating)."""
    if transpose_x:
        stationary = _to_sbuf("matmul", x)
    else:
        src = _to_sbuf("matmul", x)
        xt = _new((src.shape[1], src.shape[0]), src.dtype, "matmul", buffer=psum, tmp=True)
        _isa.nc_transpose(dst=xt, data=src)
        stationary = _new(xt.shape, x.dtype, "matmul", tmp=True)
        _isa.tensor_copy(dst=stationary, src=xt)
    moving = _to_sbuf("matmul", y)
    if dst.space == "psum":
        _isa.nc_matmul(dst=dst, stationary=stationary, moving=moving, accumulate=accumulate)
        return
    t = _new(dst.shape, float32, "matmul", buffer=psum, tmp=True)
    _isa.nc_matmul(dst=t, stationary=stationary, moving=moving, accumulate=False)
    if accumulate:
        _isa.tensor_tensor(dst=dst, data1=dst, data2=t, op=add)
    else:
        _isa.tensor_copy(dst=dst, src=t)
