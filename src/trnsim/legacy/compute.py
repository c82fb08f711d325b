"""`neuronxcc.nki.language` compute and utility functions (legacy NKI 0.1) on trnsim's
core: elementwise, activations, reductions, softmax, rms_norm, matmul, transpose,
selection, random numbers, gathers, atomic read-modify-write, loop reductions.

Each function only translates. It works out the result's shape and dtype (the legacy
type promotion) and returns a `Pending` result (legacy/ops.py) whose instruction(s) run
straight into the kernel's destination or into a fresh tile; calls without a result run
now. The instructions are those of the current-API tile functions
(trnsim/language/math.py, their destination-passing `*_into` forms), so both API
generations share one implementation of every composition and numerics choice.

Conventions
- Operands: tiles (SBUF/PSUM), indexed tiles, pending results, and Python/NumPy scalars.
- Binary ops broadcast numpy-style: along free axes a scalar or a [P, 1] tile on either
  side is a tensor_scalar operand, other free-axis broadcasts read a stride-0 view; a
  one-partition tile ([1, F]) is first broadcast across partitions as nl.broadcast_to
  does (the legacy docs allow it, noting it costs more than a free-axis broadcast).
- dtype: `dtype=` if given, else the legacy promotion of the inputs (nki-api.md §4):
  (float, int) -> the float, fp16 + bf16 -> fp32, e4m3 + e5m2 -> bf16, int8 + uint8 ->
  int16, int32 + uint32 -> fp32; weakly typed Python scalars count as uint8 (bool),
  int32 (int) or float32 (float), NumPy scalars as their own type.
- mask: an affine predicate; masked-off elements are neither read, computed nor stored
  (rectangular constraints narrow the instruction, the rest restricts the write).
  Operations whose outputs depend on whole rows (reductions, softmax, rms_norm) or that
  move elements between axes (matmul, transpose, gathers) take rectangular masks only.
"""
from __future__ import annotations

import builtins as _b
import inspect
import operator
from functools import partial

import numpy as np

from ..isa import without_handles as core  # (legacy calls discard the handle)
from ..machine import runtime
from ..machine.errors import UnsupportedError, kernel_location
from ..machine.tensor import MemoryRegion, NkiTensor
from ..language import math as cm
from ..language.checks import fail as _fail
from ..language.checks import free_size as _free
from ..language.checks import promote
from ..language.checks import reduce_axes as _axes
from ..language.checks import reduced_shape as _reduced_shape
from ..language.checks import weak_dtype as _weak_dtype
from ..numerics.dtypes import DType, as_dtype, bfloat16, float32, uint32
from .indexing import mgrid
from .ops import Grid, Pending, flush, psum_written, result_op, run_masked
from .tensor import Access, LTensor, as_predicate

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum

_SCALARS = (bool, int, float, np.number, np.bool_)


# -- helpers ------------------------------------------------------------------------
def _is_tile(v) -> bool:
    return isinstance(v, (LTensor, Access))


def _is_scalar(v) -> bool:
    return isinstance(v, _SCALARS) and not isinstance(v, np.ndarray)


def _tile(fname, role, v):
    """A tile operand, as given (LTensor, Access or Pending)."""
    if not _is_tile(v):
        _fail(fname, f"{role} must be a tile, got {type(v).__name__} {v!r}")
    if isinstance(v, LTensor) and not isinstance(v, Pending) and v.par_axis != 0 \
            and v.core.on_chip:
        _fail(fname, f"{role} {v.name!r} of shape {v.shape} has block dimensions before its "
                     "partition dimension; index a block (t[i]) to use it as an operand")
    return v


def _access(v) -> Access:
    """A tile as an Access (a pending result is run first)."""
    if isinstance(v, Access):
        return v
    if isinstance(v, Pending):
        return LTensor(v.core).full()
    return v.full()


def _shape(v) -> tuple:
    return tuple(v.shape)


def _operand_dtype(v) -> DType:
    return as_dtype(v.dtype) if _is_tile(v) else _weak_dtype(v)


def _out_dtype(dtype, default) -> DType:
    return as_dtype(default if dtype is None else dtype)


def _rectangular(fname, mask):
    """Raise unless `mask` constrains each axis on its own (a bound per clause)."""
    mask = as_predicate(mask)
    if mask is not None and mask.restrict({}):
        _fail(fname, "the mask must be rectangular here (each clause bounds one index, e.g. "
                     "(i_p < 64) & (i_f < 256)): every output element of this operation "
                     "depends on several input elements", UnsupportedError)
    return mask


def _composite(into):
    """A multi-instruction `into(dst, **operands)` run under a legacy mask. With a
    non-rectangular mask the composition runs over the mask's bounding box into a
    scratch tile and one tensor_copy writes the masked elements (intermediates are never
    partially written)."""
    def run(dst, **operands):
        r = runtime.active_run()
        masked = r.dst_mask
        if masked is None:
            into(dst, **operands)
            return
        r.dst_mask = None
        try:
            tmp = r.new_tensor(dst.shape, dst.dtype, sbuf, "nl.masked")
            into(tmp, **operands)
        finally:
            r.dst_mask = masked
        core.tensor_copy(dst=dst, src=tmp)
    run.__name__ = getattr(into, "__name__", "composite")
    return run


# mask spans for operations whose operands do not line up with the result ----------
class _Spans:
    """Per grid position of an operand, the range its mask leaves. A mask axis narrows
    the operand axis that is that axis; a mask axis no operand (nor the destination)
    uses narrows, by grid position, any axis of its size (tiles with fresh axes)."""

    def __init__(self, mask, *operands):
        self.narrowed = {}
        if mask is not None:
            mask.restrict(self.narrowed)
        owned = set()
        for x in operands:
            if isinstance(x, Access):
                owned.update(a for idx in x.indices for a in idx.terms)
        self.loose = {a: r for a, r in self.narrowed.items() if a not in owned}

    def __call__(self, x) -> list:
        shape = _shape(x)
        axes = {}
        if isinstance(x, Access):
            for idx in x.indices:
                for a in idx.terms:
                    axes.setdefault(a.position, a)
        out = []
        for p, n in enumerate(shape):
            a = axes.get(p)
            if a is not None and a in self.narrowed:
                lo, hi = self.narrowed[a]
                out.append((_b.max(lo, 0), _b.min(hi, n)))
                continue
            lo, hi = 0, n
            for m, (m_lo, m_hi) in self.loose.items():
                if m.position == p and m.size == n and n > 1:
                    lo, hi = _b.max(lo, m_lo), _b.min(hi, m_hi)
            out.append((lo, hi))
        return out


def _meet(*ranges):
    return (_b.max(r[0] for r in ranges), _b.min(r[1] for r in ranges))


def _view_at(x, spans) -> NkiTensor:
    """The core view of tile `x` over per-grid-position ranges."""
    if isinstance(x, Access):
        shape = x.shape
        return x.view({a: spans[a.position] for idx in x.indices for a in idx.terms
                       if a.position < len(spans) and a.size == shape[a.position]})
    t = x.core if isinstance(x, Pending) else x.view_all()
    key = tuple(slice(lo, hi) for lo, hi in spans)
    return t[key] if any((lo, hi) != (0, n) for (lo, hi), n in zip(spans, t.shape)) else t


def _mapped(fname, core_fn, shape, dtype, buffer, mask, operands, build, accumulates=False,
            whole=None, settings=None):
    """A Pending result for an operation whose operands map onto the result through
    `build(spans, dst) -> kwargs for core_fn (or None: nothing left to compute)`.
    `whole`: build's operand Accesses by keyword, for an operation whose every view is
    whole when nothing narrows it (no mask, a destination of the result's shape, no
    operand mask, none empty): it then runs with each view made straight, and
    `settings` (build's other keywords)."""
    mask = _rectangular(fname, mask)
    for v in operands:
        if isinstance(v, Pending):
            v.core  # noqa: B018 - run inputs before this instruction is pending
    shape = tuple(int(s) for s in shape)
    if mask is None and whole is not None:
        execute = partial(_run_whole, core_fn, shape, whole, settings, operands, build,
                          accumulates)
    else:
        execute = partial(_run_mapped, core_fn, mask, operands, build, accumulates)
    return Pending(execute, shape, as_dtype(dtype), buffer, "", accumulates)


def _run_mapped(core_fn, mask, operands, build, accumulates, dst, accumulate):
    """Run a `_mapped` operation into `dst` (accumulating when asked)."""
    flush()
    spans = _Spans(mask, dst, *operands)
    kw = build(spans, dst)
    if kw is None:
        return
    if accumulates:
        kw["accumulate"] = _accumulating(kw.get("dst"), accumulate)
    core_fn(**kw)


def _run_whole(core_fn, shape, whole, settings, operands, build, accumulates, dst,
               accumulate):
    """`_run_mapped(core_fn, None, operands, build, accumulates, dst, accumulate)` for a
    `_mapped` operation with `whole` operands: each view made straight when every span
    is whole (the view an Access takes by default)."""
    if tuple(dst.shape) != shape or 0 in shape or not _whole_operands(dst, whole.values()):
        _run_mapped(core_fn, None, operands, build, accumulates, dst, accumulate)
        return
    flush()
    d = dst.view({})
    kw = {name: a.view({}) for name, a in whole.items()}
    if settings:
        kw.update(settings)
    if accumulates:
        kw["accumulate"] = _accumulating(d, accumulate)
    core_fn(dst=d, **kw)


def _whole_operands(dst, accesses) -> bool:
    """Whether `dst` and each of `accesses` is an Access with no operand mask (its view
    over its whole axes is then its default view) and no empty axis."""
    for a in (dst, *accesses):
        if type(a) is not Access or a.operand_mask is not None or 0 in a.shape:
            return False
    return True


def _accumulating(d, accumulate) -> bool:
    """Whether an accumulating instruction adds into its destination view `d`: `psum +=
    matmul` onto PSUM nothing wrote starts the group (ops.psum_written)."""
    return bool(accumulate) and not (
        isinstance(d, NkiTensor) and d.space == "psum" and not psum_written(d))


# -- elementwise binary -------------------------------------------------------------
_BITVEC = ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift")


def _binary_shape(fname, xs, ys) -> tuple:
    if xs == ys:
        return xs
    if xs[0] != ys[0]:
        # the legacy API broadcasts a one-partition tile across partitions (numpy rules;
        # "more expensive than broadcasting in free dimension", the nl.add docs note)
        if 1 not in (xs[0], ys[0]):
            _fail(fname, f"shapes {xs} and {ys} do not broadcast along the partition "
                         "dimension (dimension 0): one of them must have 1 partition")
        p = _b.max(xs[0], ys[0])
        return _binary_shape(fname, (p,) + tuple(xs[1:]), (p,) + tuple(ys[1:]))
    if _free(ys) == 1:
        return xs
    if _free(xs) == 1:
        return ys
    if len(xs) == len(ys):
        try:
            return tuple(np.broadcast_shapes(xs, ys))
        except ValueError:
            pass
    _fail(fname, f"shapes {xs} and {ys} do not broadcast along the free axes")


def _binary_core(dst, x, y, op):
    p = dst.shape[0]
    cm.binary_into(dst, _across_partitions(x, p), _across_partitions(y, p), op)


def _across_partitions(v, p):
    """A one-partition tile operand broadcast to `p` partitions into a fresh SBUF tile
    (nl.broadcast_to's composition, on chip: a Tensor Engine matmul with a ones vector,
    or a Vector Engine partition shuffle for integers; nki/language/layout.py)."""
    if not isinstance(v, NkiTensor) or v.shape[0] == p:
        return v
    tmp = runtime.active_run().new_tensor((p,) + tuple(v.shape[1:]), v.dtype, sbuf,
                                          "nl.broadcast_to")
    cm.broadcast_into(tmp, v)
    return tmp


def _binary(fn, x, y, dtype, mask):
    fname = fn.__name__
    xt, yt = _is_tile(x), _is_tile(y)
    for role, v in (("x", x), ("y", y)):
        if not _is_tile(v) and not _is_scalar(v):
            _fail(fname, f"{role} must be a tile or a scalar, got {type(v).__name__} {v!r}")
    if not xt and not yt:
        _fail(fname, f"at least one of x, y must be a tile; got {x!r} and {y!r}")
    if xt:
        _tile(fname, "x", x)
    if yt:
        _tile(fname, "y", y)
    if fname in _BITVEC:
        for role, v in (("x", x), ("y", y)):
            if not _operand_dtype(v).is_int:
                _fail(fname, f"{role} ({_operand_dtype(v)}) must be of an integer type")
    if xt and yt:
        shape = _binary_shape(fname, _shape(x), _shape(y))
    else:
        shape = _shape(x if xt else y)
    out = _out_dtype(dtype, promote(_operand_dtype(x), _operand_dtype(y)))
    return result_op(_binary_core, shape, out, sbuf, mask, x=x, y=y, op=fn)


def add(x, y, *, dtype=None, mask=None, **kwargs):
    """x + y, elementwise (tensor_tensor; tensor_scalar with a scalar or [P, 1] tile)."""
    return _binary(add, x, y, dtype, mask)


def subtract(x, y, *, dtype=None, mask=None, **kwargs):
    """x - y, elementwise."""
    return _binary(subtract, x, y, dtype, mask)


def multiply(x, y, *, dtype=None, mask=None, **kwargs):
    """x * y, elementwise."""
    return _binary(multiply, x, y, dtype, mask)


def divide(x, y, *, dtype=None, mask=None, **kwargs):
    """x / y, elementwise (fp32 division)."""
    return _binary(divide, x, y, dtype, mask)


def maximum(x, y, *, dtype=None, mask=None, **kwargs):
    """max(x, y), elementwise."""
    return _binary(maximum, x, y, dtype, mask)


def minimum(x, y, *, dtype=None, mask=None, **kwargs):
    """min(x, y), elementwise."""
    return _binary(minimum, x, y, dtype, mask)


def power(x, y, *, dtype=None, mask=None, **kwargs):
    """x ** y, elementwise."""
    return _binary(power, x, y, dtype, mask)


def fmod(x, y, dtype=None, mask=None, **kwargs):
    """Remainder of x / y with the sign of x (C fmod), elementwise."""
    return _binary(fmod, x, y, dtype, mask)


def mod(x, y, dtype=None, mask=None, **kwargs):
    """Remainder of x / y with the sign of y (Python %), elementwise."""
    return _binary(mod, x, y, dtype, mask)


def equal(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x == y, else 0."""
    return _binary(equal, x, y, dtype, mask)


def not_equal(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x != y, else 0."""
    return _binary(not_equal, x, y, dtype, mask)


def greater(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x > y, else 0."""
    return _binary(greater, x, y, dtype, mask)


def greater_equal(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x >= y, else 0."""
    return _binary(greater_equal, x, y, dtype, mask)


def less(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x < y, else 0."""
    return _binary(less, x, y, dtype, mask)


def less_equal(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x <= y, else 0."""
    return _binary(less_equal, x, y, dtype, mask)


def logical_and(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x and y are both nonzero, else 0."""
    return _binary(logical_and, x, y, dtype, mask)


def logical_or(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where x or y is nonzero, else 0."""
    return _binary(logical_or, x, y, dtype, mask)


def logical_xor(x, y, *, dtype=bool, mask=None, **kwargs):
    """1 where exactly one of x, y is nonzero, else 0."""
    return _binary(logical_xor, x, y, dtype, mask)


def bitwise_and(x, y, *, dtype=None, mask=None, **kwargs):
    """x & y on the integer bit patterns."""
    return _binary(bitwise_and, x, y, dtype, mask)


def bitwise_or(x, y, *, dtype=None, mask=None, **kwargs):
    """x | y on the integer bit patterns."""
    return _binary(bitwise_or, x, y, dtype, mask)


def bitwise_xor(x, y, *, dtype=None, mask=None, **kwargs):
    """x ^ y on the integer bit patterns."""
    return _binary(bitwise_xor, x, y, dtype, mask)


def left_shift(x, y, *, dtype=None, mask=None, **kwargs):
    """x << y (logical), integer tiles."""
    return _binary(left_shift, x, y, dtype, mask)


def right_shift(x, y, *, dtype=None, mask=None, **kwargs):
    """x >> y (logical), integer tiles."""
    return _binary(right_shift, x, y, dtype, mask)


# -- elementwise unary ---------------------------------------------------------------
_COMPOSITE_UNARY = ("floor", "ceil", "trunc", "sin", "cos", "tan", "arctan")


def _unary_core(dst, x, op):
    cm.unary_into(dst, x, op)


_unary_composite = _composite(_unary_core)


def _unary(fn, x, dtype, mask, default=None):
    fname = fn.__name__
    _tile(fname, "x", x)
    if fname == "invert" and not as_dtype(x.dtype).is_int:
        _fail(fname, f"x ({x.dtype}) must be of an integer type")
    out = _out_dtype(dtype, x.dtype if default is None else default)
    run = _unary_composite if fname in _COMPOSITE_UNARY else _unary_core
    return result_op(run, _shape(x), out, sbuf, mask, x=x, op=fn)


def abs(x, *, dtype=None, mask=None, **kwargs):  # noqa: A001 - NKI name
    """|x| (Scalar Engine)."""
    return _unary(abs, x, dtype, mask)


def negative(x, *, dtype=None, mask=None, **kwargs):
    """-x (tensor_scalar multiply by -1)."""
    return _unary(negative, x, dtype, mask)


def sign(x, *, dtype=None, mask=None, **kwargs):
    """-1, 0 or 1 by the sign of x (Scalar Engine)."""
    return _unary(sign, x, dtype, mask)


def trunc(x, *, dtype=None, mask=None, **kwargs):
    """x rounded toward zero: x - fmod(x, 1)."""
    return _unary(trunc, x, dtype, mask)


def floor(x, *, dtype=None, mask=None, **kwargs):
    """Largest integer <= x: x - mod(x, 1)."""
    return _unary(floor, x, dtype, mask)


def ceil(x, *, dtype=None, mask=None, **kwargs):
    """Smallest integer >= x: x - mod(x, -1)."""
    return _unary(ceil, x, dtype, mask)


def exp(x, *, dtype=None, mask=None, **kwargs):
    """e ** x (Scalar Engine)."""
    return _unary(exp, x, dtype, mask)


def log(x, *, dtype=None, mask=None, **kwargs):
    """Natural logarithm (Scalar Engine; valid input range [2^-64, 2^64])."""
    return _unary(log, x, dtype, mask)


def sqrt(x, *, dtype=None, mask=None, **kwargs):
    """Square root (Scalar Engine)."""
    return _unary(sqrt, x, dtype, mask)


def rsqrt(x, *, dtype=None, mask=None, **kwargs):
    """1 / sqrt(x) (Scalar Engine)."""
    return _unary(rsqrt, x, dtype, mask)


def reciprocal(x, *, dtype=None, mask=None, **kwargs):
    """1 / x (Scalar Engine)."""
    return _unary(reciprocal, x, dtype, mask)


def square(x, *, dtype=None, mask=None, **kwargs):
    """x * x (Scalar Engine)."""
    return _unary(square, x, dtype, mask)


def sin(x, *, dtype=None, mask=None, **kwargs):
    """Sine over the full input range (range reduction, then the Scalar Engine's sin)."""
    return _unary(sin, x, dtype, mask)


def cos(x, *, dtype=None, mask=None, **kwargs):
    """Cosine as sin(x + pi/2), range-reduced like sin."""
    return _unary(cos, x, dtype, mask)


def tan(x, *, dtype=None, mask=None, **kwargs):
    """sin(x) / cos(x), each range-reduced, divided in fp32."""
    return _unary(tan, x, dtype, mask)


def arctan(x, *, dtype=None, mask=None, **kwargs):
    """Inverse tangent over the full input range (argument halving, then the Scalar
    Engine's arctan)."""
    return _unary(arctan, x, dtype, mask)


def tanh(x, *, dtype=None, mask=None, **kwargs):
    """Hyperbolic tangent (Scalar Engine)."""
    return _unary(tanh, x, dtype, mask)


def sigmoid(x, *, dtype=None, mask=None, **kwargs):
    """1 / (1 + e^-x) (Scalar Engine)."""
    return _unary(sigmoid, x, dtype, mask)


def relu(x, *, dtype=None, mask=None, **kwargs):
    """max(x, 0) (Scalar Engine)."""
    return _unary(relu, x, dtype, mask)


def gelu(x, *, dtype=None, mask=None, **kwargs):
    """GELU, x * Phi(x) (Scalar Engine)."""
    return _unary(gelu, x, dtype, mask)


def gelu_apprx_sigmoid(x, *, dtype=None, mask=None, **kwargs):
    """GELU approximated with a sigmoid (Scalar Engine)."""
    return _unary(gelu_apprx_sigmoid, x, dtype, mask)


def gelu_apprx_tanh(x, *, dtype=None, mask=None, **kwargs):
    """GELU approximated with tanh (Scalar Engine)."""
    return _unary(gelu_apprx_tanh, x, dtype, mask)


def gelu_dx(x, *, dtype=None, mask=None, **kwargs):
    """Derivative of GELU (Scalar Engine)."""
    return _unary(gelu_dx, x, dtype, mask)


def silu(x, *, dtype=None, mask=None, **kwargs):
    """x * sigmoid(x) (Scalar Engine)."""
    return _unary(silu, x, dtype, mask)


def silu_dx(x, *, dtype=None, mask=None, **kwargs):
    """Derivative of SiLU (Scalar Engine)."""
    return _unary(silu_dx, x, dtype, mask)


def softplus(x, *, dtype=None, mask=None, **kwargs):
    """log(1 + e^x) (Scalar Engine)."""
    return _unary(softplus, x, dtype, mask)


def mish(x, *, dtype=None, mask=None, **kwargs):
    """x * tanh(softplus(x)) (Scalar Engine)."""
    return _unary(mish, x, dtype, mask)


def erf(x, *, dtype=None, mask=None, **kwargs):
    """Error function (Scalar Engine)."""
    return _unary(erf, x, dtype, mask)


def erf_dx(x, *, dtype=None, mask=None, **kwargs):
    """Derivative of erf, 2/sqrt(pi) * e^(-x^2) (Scalar Engine)."""
    return _unary(erf_dx, x, dtype, mask)


def invert(x, *, dtype=None, mask=None, **kwargs):
    """Bitwise NOT (XOR with all ones), integer tiles."""
    return _unary(invert, x, dtype, mask)


def logical_not(x, *, dtype=bool, mask=None, **kwargs):
    """1 where x is zero, else 0."""
    return _unary(logical_not, x, dtype, mask)


# -- reductions ------------------------------------------------------------------------
def _reduction_axes(name, x, shape, axis):
    """(axes, perm): the reduced free axes, and None when they are the trailing ones, else
    the free-dim order that moves them last (kept axes first, in order). The axes must be
    the trailing free axes of a tile (the nl.sum docs), but the SDK's legacy
    average_pool2d tutorial reduces non-trailing axes of an *advanced-indexed access
    pattern*, `nl.sum(t[i0, k*i1 + i2, k*i3 + i4], axis=[2, 4])`: the grid of such an
    access is only the order its elements are read in, so the engines read it through the
    reordered access pattern and reduce its trailing axes."""
    raw = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis) if axis is not None \
        else ()
    nd = len(shape)
    norm = sorted({int(a) + nd if int(a) < 0 else int(a) for a in raw if -nd <= int(a) < nd})
    if (not getattr(x, "advanced", False) or not raw or len(norm) != len(set(raw))
            or 0 in norm or norm == list(range(norm[0], nd))):
        return _axes(name, shape, axis), None  # trailing axes, or the error it raises
    kept = [d for d in range(1, nd) if d not in norm]
    return tuple(norm), (0, *kept, *norm)


def _reduce(name, x, axis, dtype, mask, keepdims, default=None):
    _tile(name, "x", x)
    shape = _shape(x)
    axes, perm = _reduction_axes(name, x, shape, axis)
    mask = _rectangular(name, mask)
    out = _out_dtype(dtype, x.dtype if default is None else default)
    trailing = axes if perm is None else tuple(range(len(shape) - len(axes), len(shape)))

    def run(dst, x):
        if perm is not None:  # reduce the trailing axes of the reordered access pattern
            x = x.permute(perm)
            dst = dst.permute(perm) if keepdims else dst
        cm.reduce_into(dst, x, name, trailing, keepdims)
    run.__name__ = name
    return result_op(run, _reduced_shape(shape, axes, keepdims), out, sbuf, mask, x=x)


def sum(x, axis, *, dtype=None, mask=None, keepdims=False, **kwargs):  # noqa: A001
    """Sum over the trailing free axes `axis` (tensor_reduce add, fp32)."""
    return _reduce("sum", x, axis, dtype, mask, keepdims)


def max(x, axis, *, dtype=None, mask=None, keepdims=False, **kwargs):  # noqa: A001
    """Maximum over the trailing free axes `axis`."""
    return _reduce("max", x, axis, dtype, mask, keepdims)


def min(x, axis, *, dtype=None, mask=None, keepdims=False, **kwargs):  # noqa: A001
    """Minimum over the trailing free axes `axis`."""
    return _reduce("min", x, axis, dtype, mask, keepdims)


def prod(x, axis, *, dtype=None, mask=None, keepdims=False, **kwargs):
    """Product over the trailing free axes `axis`."""
    return _reduce("prod", x, axis, dtype, mask, keepdims)


def mean(x, axis, *, dtype=None, mask=None, keepdims=False, **kwargs):
    """Arithmetic mean over `axis`: an fp32 sum times 1/n (float32 result for integer
    inputs, as documented)."""
    default = float32 if as_dtype(_tile("mean", "x", x).dtype).is_int else None
    return _reduce("mean", x, axis, dtype, mask, keepdims, default)


def var(x, axis, *, dtype=None, mask=None, **kwargs):
    """Population variance over `axis` (two passes in fp32: mean, then the mean of the
    squared deviations); the reduced axes are removed."""
    return _reduce("var", x, axis, dtype, mask, False)


def all(x, axis, *, dtype=bool, mask=None, **kwargs):  # noqa: A001
    """1 where every element along `axis` is nonzero, else 0 (logical_and reduction)."""
    return _reduce("all", x, axis, dtype, mask, False)


def softmax(x, axis, *, dtype=None, compute_dtype=None, mask=None, **kwargs):
    """exp(x - max) / sum(exp(x - max)) over the trailing free axes `axis`; intermediates
    are fp32, the result is `dtype` (or `compute_dtype`, which the legacy API treats
    the same), default x.dtype."""
    _tile("softmax", "x", x)
    axes = _axes("softmax", _shape(x), axis)
    mask = _rectangular("softmax", mask)
    out = _out_dtype(dtype if dtype is not None else compute_dtype, x.dtype)

    def run(dst, x):
        cm.softmax_into(dst, x, axes)
    return result_op(run, _shape(x), out, sbuf, mask, x=x)


def rms_norm(x, w, axis, n, epsilon=1e-06, *, dtype=None, compute_dtype=None, mask=None,
             **kwargs):
    """x / sqrt(sum(x^2, axis) / n + epsilon) * w. Sum of squares and rsqrt in fp32; the
    scaling by w in `compute_dtype` (or `dtype`: the legacy API treats them the same;
    default fp32); result `dtype`, default x.dtype."""
    _tile("rms_norm", "x", x)
    _tile("rms_norm", "w", w)
    axes = _axes("rms_norm", _shape(x), axis)
    mask = _rectangular("rms_norm", mask)
    given = compute_dtype if compute_dtype is not None else dtype
    cdt = None if given is None or as_dtype(given) == float32 else as_dtype(given)
    out = _out_dtype(given, x.dtype)

    def run(dst, x, w):
        cm.rms_norm_into(dst, x, w, axes, n, epsilon, cdt)
    return result_op(run, _shape(x), out, sbuf, mask, x=x, w=w)


# -- matmul, transpose, data layout ------------------------------------------------
def matmul(x, y, *, transpose_x=False, mask=None, **kwargs):
    """x @ y (x.T @ y with transpose_x=True) on the Tensor Engine: an fp32 result in
    PSUM; `psum[...] += nl.matmul(...)` accumulates in place. Without transpose_x, x is
    transposed first (nc_transpose to PSUM, copied back to SBUF)."""
    _tile("matmul", "x", x)
    _tile("matmul", "y", y)
    xs, ys = _shape(x), _shape(y)
    if len(xs) != 2 or len(ys) != 2:
        _fail("matmul", f"x {xs} and y {ys} must be 2-D tiles")
    k_x, m = (xs[0], xs[1]) if transpose_x else (xs[1], xs[0])
    if k_x != ys[0]:
        what = "partition" if transpose_x else "free"
        _fail("matmul", f"contraction mismatch: x {what} dimension {k_x} (x shape {xs}) must "
                        f"equal y's partition dimension {ys[0]} (y shape {ys})")
    x_acc, y_acc = _access(x), _access(y)

    def build(spans, dst):
        sx, sy, sd = spans(x_acc), spans(y_acc), spans(dst)
        k = _meet(sx[0] if transpose_x else sx[1], sy[0])
        mm = _meet(sx[1] if transpose_x else sx[0], sd[0])
        nn = _meet(sy[1], sd[1])
        if _b.any(hi <= lo for lo, hi in (k, mm, nn)):
            return None
        return dict(dst=_view_at(dst, [mm, nn]),
                    x=_view_at(x_acc, [k, mm] if transpose_x else [mm, k]),
                    y=_view_at(y_acc, [k, nn]), transpose_x=bool(transpose_x))

    return _mapped("matmul", cm.matmul_into, (m, ys[1]), float32, psum, mask, (x, y), build,
                   accumulates=True, whole=dict(x=x_acc, y=y_acc),
                   settings=dict(transpose_x=bool(transpose_x)))


def transpose(x, *, dtype=None, mask=None, **kwargs):
    """Swap the partition and free dimension of a 2-D tile (nc_transpose on the Tensor
    Engine into PSUM; a different dtype adds a cast)."""
    _tile("transpose", "x", x)
    xs = _shape(x)
    if len(xs) != 2:
        _fail("transpose", f"x of shape {xs} must be a 2-D tile")
    x_acc = _access(x)

    def build(spans, dst):
        sx, sd = spans(x_acc), spans(dst)
        p, f = _meet(sx[0], sd[1]), _meet(sx[1], sd[0])
        if p[1] <= p[0] or f[1] <= f[0]:
            return None
        return dict(dst=_view_at(dst, [f, p]), x=_view_at(x_acc, [p, f]))

    return _mapped("transpose", cm.transpose_into, (xs[1], xs[0]),
                   _out_dtype(dtype, x.dtype), psum, mask, (x,), build, whole=dict(x=x_acc))


def _load_transpose_core(dst, src):
    if src.dtype == dst.dtype and src.dtype.itemsize == 2 and not src.dtype.is_x4:
        core.dma_transpose(dst=dst, src=src)
    else:  # other dtypes: one DMA reading src with swapped strides (a cast if needed)
        core.dma_copy(dst=dst, src=src.permute((1, 0)))


def load_transpose2d(src, *, mask=None, dtype=None, **kwargs):
    """HBM [N, M] -> a new SBUF tile [M, N]: a DMA transpose (dma_transpose) for 2-byte
    dtypes, otherwise one DMA reading src transposed (swapped strides)."""
    if not _is_tile(src):
        _fail("load_transpose2d", f"src must be an HBM tensor, got {type(src).__name__}")
    ss = _shape(src)
    if len(ss) != 2:
        _fail("load_transpose2d", f"src of shape {ss} must be 2-D")
    s_acc = _access(src)
    if s_acc.tensor.core.on_chip:
        _fail("load_transpose2d", f"Expected operand 'src' of 'load_transpose2d' to be in "
                                  f"address space 'hbm', but got a tile in "
                                  f"'{s_acc.tensor.core.space}' instead.")

    def build(spans, dst):
        sx, sd = spans(s_acc), spans(dst)
        a, b = _meet(sx[0], sd[1]), _meet(sx[1], sd[0])
        if a[1] <= a[0] or b[1] <= b[0]:
            return None
        return dict(dst=_view_at(dst, [b, a]), src=_view_at(s_acc, [a, b]))

    return _mapped("load_transpose2d", _load_transpose_core, (ss[1], ss[0]),
                   _out_dtype(dtype, src.dtype), sbuf, mask, (src,), build,
                   whole=dict(src=s_acc))


def _gather_core(dst, data, indices):
    if dst.dtype == data.dtype:
        core.nc_n_gather(dst=dst, data=data, indices=indices)
        return
    tmp = runtime.active_run().new_tensor(dst.shape, data.dtype, sbuf, "nl.gather_flattened")
    core.nc_n_gather(dst=tmp, data=data, indices=indices)
    core.tensor_copy(dst=dst, src=tmp)


def gather_flattened(data, indices, *, mask=None, dtype=None, **kwargs):
    """out[p, j...] = data[p, flat(indices[p, j...])] over data's flattened free dims
    (nc_n_gather on GpSimd; uint32 indices). A mask narrows the partitions and the
    indices; data's free dims are always read whole."""
    _tile("gather_flattened", "data", data)
    _tile("gather_flattened", "indices", indices)
    ds_, is_ = _shape(data), _shape(indices)
    if ds_[0] != is_[0]:
        _fail("gather_flattened", f"data {ds_} and indices {is_} must have the same number "
                                  "of partitions")
    d_acc, i_acc = _access(data), _access(indices)

    def build(spans, dst):
        si, sd = spans(i_acc), spans(dst)
        out = [_meet(a, b) for a, b in zip(si, sd)]
        p = _meet(out[0], spans(d_acc)[0])
        out[0] = p
        if _b.any(hi <= lo for lo, hi in out):
            return None
        return dict(dst=_view_at(dst, out), indices=_view_at(i_acc, out),
                    data=_view_at(d_acc, [p] + [(0, n) for n in ds_[1:]]))

    return _mapped("gather_flattened", _gather_core, is_, _out_dtype(dtype, data.dtype),
                   sbuf, mask, (data, indices), build)


def _where_into(dst, condition, x, y):
    cm.where_into(dst, condition, x, y)


def where(condition, x, y, *, dtype=None, mask=None, **kwargs):
    """x where condition is nonzero, else y (tiles of condition's shape, or scalars):
    predicate (condition != 0 as uint8, unless already unsigned), a copy of y, then
    tensor_copy_predicated of x."""
    _tile("where", "condition", condition)
    shape = _shape(condition)
    for role, v in (("x", x), ("y", y)):
        if _is_tile(v):
            _tile("where", role, v)
            if _shape(v) != shape:
                _fail("where", f"{role} of shape {_shape(v)} must have the shape of condition "
                               f"{shape}")
        elif not _is_scalar(v):
            _fail("where", f"{role} must be a tile or a scalar, got {v!r}")
    out = _out_dtype(dtype, promote(_operand_dtype(x), _operand_dtype(y)))
    return result_op(_composite(_where_into), shape, out, sbuf, mask, condition=condition,
                     x=x, y=y)


def _broadcast_into(dst, x):
    cm.broadcast_into(dst, x)


def broadcast_to(src, *, shape, **kwargs):
    """src broadcast to `shape` (same rank; each dim equal or from 1), in SBUF: along
    free axes a tensor_copy from a stride-0 view, across partitions a DMA through HBM.
    Returns src itself when the shape is already `shape`."""
    _tile("broadcast_to", "src", src)
    shape = tuple(int(s) for s in shape)
    ss = _shape(src)
    if ss == shape:
        return src
    if len(shape) != len(ss):
        _fail("broadcast_to", f"target shape {shape} must have the rank of src {ss}")
    for d, (a, b) in enumerate(zip(ss, shape)):
        if a != b and a != 1:
            _fail("broadcast_to", f"cannot broadcast {ss} to {shape}: dimension {d} is {a}, "
                                  f"neither {b} nor 1")
    return result_op(_composite(_broadcast_into), shape, src.dtype, sbuf, None, x=src)


def expand_dims(data, axis):
    """A view of `data` with size-1 axes inserted after its last axis (the legacy API
    supports new axes after the last index only)."""
    _tile("expand_dims", "data", data)
    t = data.core if isinstance(data, Pending) else (
        data.view() if isinstance(data, Access) else data.view_all())
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = t.ndim + len(axes)
    norm = sorted(int(a) + nd if int(a) < 0 else int(a) for a in axes)
    for a in norm:
        if a < t.ndim:
            _fail("expand_dims", f"axis {a}: new axes go after the last index of the "
                                 f"{t.ndim}-D tile (axis >= {t.ndim})")
        if a > t.ndim:
            _fail("expand_dims", f"axis {a} is out of range for a {nd}-D result")
        t = t.expand_dim(a)
    return LTensor(t)


# -- random numbers ---------------------------------------------------------------------
def _dropout_core(dst, x, rate):
    if isinstance(rate, NkiTensor) and rate.shape[0] != x.shape[0]:
        col = runtime.active_run().new_tensor((x.shape[0], 1), rate.dtype, sbuf,
                                              "nl.dropout.rate")
        cm.broadcast_into(col, rate.reshape((rate.shape[0], 1)))
        rate = col
    cm.dropout_into(dst, x, rate)


def dropout(x, rate, *, dtype=None, mask=None, **kwargs):
    """Zero each element with probability `rate` (a scalar, or a tile with one element or
    one per partition) on the Vector Engine (nisa.dropout); kept elements are not
    rescaled."""
    _tile("dropout", "x", x)
    if _is_tile(rate):
        _tile("dropout", "rate", rate)
        if _free(_shape(rate)) != 1:
            _fail("dropout", f"rate of shape {_shape(rate)} must hold one value (per "
                             "partition)")
    elif not _is_scalar(rate):
        _fail("dropout", f"rate must be a number or a tile, got {rate!r}")
    return result_op(_composite(_dropout_core), _shape(x), _out_dtype(dtype, x.dtype), sbuf,
                     mask, x=x, rate=rate)


def _rand_core(dst):
    r = runtime.active_run()
    if r.chip.generation >= 4:
        core.rand2(dst=dst, min=0.0, max=1.0)
        return
    bits = r.new_tensor(dst.shape, uint32, sbuf, "nl.rand.bits")
    core.rng(dst=bits)
    core.tensor_scalar(dst=bits, data=bits, op0=right_shift, operand0=8)
    core.tensor_scalar(dst=dst, data=bits, op0=multiply, operand0=2.0 ** -24)


def rand(shape, dtype=np.float32, **kwargs):
    """A tile of uniform random values in [0, 1) from the Vector Engine PRNG (rand2 on
    NeuronCore-v4; before, rng bits: the top 24 of 32 bits times 2^-24), as nl.rand of
    the current API."""
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    return result_op(_composite(_rand_core), shape, as_dtype(dtype), sbuf, None)


def _seed_tile(seed):
    if _is_tile(seed):
        return seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        _fail("random_seed", f"seed must be a 32-bit integer or a [1, 1] tile, got {seed!r}")
    value = int(seed)
    if not -2 ** 31 <= value < 2 ** 32:
        _fail("random_seed", f"seed {value} does not fit 32 bits")
    from .creation import ndarray
    t = ndarray((1, 1), uint32, buffer=sbuf, name="nl.random_seed")
    core.memset(dst=t.core, value=value & 0xFFFFFFFF)
    return t


def random_seed(seed, *, mask=None, **kwargs):
    """Seed the Vector Engine PRNG (nisa.set_rng_seed) from a 32-bit value: a [1, 1]
    tile, or a Python integer (memset into a [1, 1] uint32 tile first)."""
    flush()
    t = _seed_tile(seed)

    def run(dst):
        core.set_rng_seed(src_seeds=dst)
    run_masked(run, _access(t), mask)


# -- data movement with side effects -------------------------------------------------
def atomic_rmw(dst, value, op, *, mask=None, **kwargs):
    """dst = op(dst, value) on HBM, as one DMA read-modify-write (dma_compute with
    srcs [dst, value]); dst may be indexed indirectly (`t[idx_tile, i_f]`). Only add is
    supported (as documented)."""
    from ..isa.ops import alu
    if not _is_tile(dst):
        _fail("atomic_rmw", f"dst must be an (indexed) HBM tensor, got {type(dst).__name__}")
    try:
        name = alu(op).name
    except (KeyError, TypeError):
        _fail("atomic_rmw", f"op={op!r} is not an ALU operator")
    if name != "add":
        _fail("atomic_rmw", f"op={name}: only np.add / nl.add is supported", UnsupportedError)
    dst = _access(dst)
    if dst.tensor.core.on_chip:
        _fail("atomic_rmw", f"dst {dst.name!r} is in {dst.buffer}; atomic_rmw updates HBM")
    if _is_tile(value):
        _tile("atomic_rmw", "value", value)
        if isinstance(value, Pending):
            value.core  # noqa: B018

    def rmw(dst, value):
        r = runtime.active_run()
        if not isinstance(value, NkiTensor):
            shape = dst.shape if dst.ndim >= 2 else (1,) + tuple(dst.shape)
            t = r.new_tensor(shape, float32, sbuf, "nl.atomic_rmw.value")
            core.memset(dst=t, value=value)
            value = t
        elif value.space == "psum":
            t = r.new_tensor(value.shape, value.dtype, sbuf, "nl.atomic_rmw.value")
            core.tensor_copy(dst=t, src=value)
            value = t
        core.dma_compute(dst=dst, srcs=[dst, value], reduce_op=add)

    run_masked(rmw, dst, mask, value=value)


def _loop_position(fname, loop_indices) -> tuple:
    idx = loop_indices if isinstance(loop_indices, (list, tuple)) else (loop_indices,)
    try:
        return tuple(operator.index(i) for i in idx)
    except TypeError:
        _fail(fname, f"loop_indices={loop_indices!r} must be loop indices (integers from "
                     "nl.affine_range / sequential_range)")


def loop_reduce(x, op, loop_indices, *, dtype=None, mask=None, **kwargs):
    """Reduce x with `op` across the iterations of the loops `loop_indices`. The
    destination tile is also the rhs input of `op` (the legacy docs: `b =
    nl.loop_reduce(a, ...)` is `b = nisa.tensor_tensor(data1=b, data2=a, op)`):
    - assigned to a tile (`acc[i, ...] = nl.loop_reduce(x, ...)`), the result is
      `acc[i, ...] = op(acc[i, ...], x)`, one tensor_tensor into the target;
    - otherwise (`b = nl.loop_reduce(x, ...)`), one accumulator tile per call site:
      acc = op(acc, x), started over (acc = x, a tensor_copy) on the first call and
      whenever the loop indices do not advance (a new run of the loops); the same tile
      object is returned on every iteration of one run."""
    _tile("loop_reduce", "x", x)
    where_ = _loop_position("loop_reduce", loop_indices)
    out_dtype = _out_dtype(dtype, x.dtype)
    if isinstance(x, Pending):
        x.core  # noqa: B018 - materialize the input before this result is pending
    shape = _shape(x)
    r = runtime.active_run()
    site = kernel_location(2)
    key = (site.file if site else None, site.line if site else None,
           getattr(r, "instance", ()))

    def into_target(dst, accumulate):
        run_masked(core.tensor_tensor, dst, mask, data1=dst, data2=x, op=op)

    def per_site():
        state = getattr(r, "_legacy_loop_reduce", None)
        if state is None:
            state = r._legacy_loop_reduce = {}
        entry = state.get(key)
        if (entry is None or not where_ > entry[0] or entry[1].shape != shape
                or entry[1].dtype != out_dtype):
            from .creation import ndarray
            acc = ndarray(shape, out_dtype, buffer=sbuf, name="nl.loop_reduce")
            run_masked(core.tensor_copy, acc.full(), mask, src=x)
        else:
            acc = entry[1]
            run_masked(core.tensor_tensor, acc.full(), mask, data1=acc.full(), data2=x, op=op)
        state[key] = (where_, acc)
        return acc

    return _LoopReduce(into_target, per_site, shape, out_dtype)


class _LoopReduce(Pending):
    """nl.loop_reduce's pending result: run into the tile it is assigned to (that tile
    is op's other input), else into its call site's accumulator tile."""

    def __init__(self, execute, per_site, shape, dtype):
        super().__init__(execute, shape, dtype, sbuf, "nl.loop_reduce")
        self._per_site = per_site
        self._acc = None

    def materialize(self):
        run = runtime.active_run()
        self._claim(run)
        if not self.done:
            from .ops import _issued_at
            with _issued_at(self.site, run):
                self._acc = self._per_site()
            self._core = self._acc.core

    @property
    def tile(self):
        return self._acc if self._acc is not None else LTensor(self.core)


def all_reduce(x, op, program_axes, *, dtype=None, mask=None, parallel_reduce=True,
               asynchronous=False, **kwargs):
    """Reduction across SPMD programs: collectives are not simulated yet."""
    _fail("all_reduce", "collective all_reduce across SPMD programs is not supported by "
                        "trnsim yet (collectives are a later milestone)", UnsupportedError)


def device_print(prefix, x, *, mask=None, **kwargs):
    """Print `prefix` and the values of tile x (the mask-narrowed part) on stdout, as the
    legacy simulator did; nothing is printed without numerics. Not an instruction: the
    record is unchanged."""
    from ..machine.access import read_raw
    flush()
    if not _is_tile(x):
        print(prefix, x)
        return
    if isinstance(x, Pending):
        x.core  # noqa: B018
    view = Grid(_shape(x), as_predicate(mask)).view(_access(x))
    if runtime.active_run().options.numerics:
        print(prefix, read_raw(view))


# -- constants and utilities -------------------------------------------------------------
class _MinValue(float):
    """A dtype's `min` constant: a float usable wherever a number is, that also reads as
    the documented (self) method."""

    __signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)])

    def __call__(self, *_):
        return float(self)


class _MinMeta(type):
    @property
    def min(cls):  # noqa: A003 - `nl.fp32.min` on the class
        return cls._MIN


class fp32(metaclass=_MinMeta):
    """FP32 constants: `nl.fp32.min` is the bit pattern 0xff7fffff, the most negative
    finite fp32 value (-3.4028235e38)."""
    _MIN = _MinValue(float(np.finfo(np.float32).min))

    @property
    def min(self):  # noqa: A003
        """FP32 bit pattern 0xff7fffff, the minimum (most negative) FP32 value."""
        return self._MIN


class bfp16(metaclass=_MinMeta):
    """BFLOAT16 constants: `nl.bfp16.min` is the value of the documented bit pattern
    0xff80 (bfloat16 -inf)."""
    _MIN = _MinValue(float(np.array([0xFF80], np.uint16).view(bfloat16.np)[0]))

    @property
    def min(self):  # noqa: A003
        """BFLOAT16 bit pattern 0xff80."""
        return self._MIN


def finfo(dtype):
    """Machine limits of a float dtype (NumPy/ml_dtypes finfo of its storage type:
    .min, .max, .eps, .tiny, .bits ...)."""
    import ml_dtypes
    d = as_dtype(dtype)
    if not d.is_float:
        _fail("finfo", f"finfo of {d}: not a floating-point dtype (use np.iinfo)")
    return ml_dtypes.finfo(d.np)


def gemm_grid():
    """Index grid of a matmul result (and moving operand) tile: `nl.mgrid[0:pmax,
    0:gemm_moving_fmax]` (.p: partition index, .x: free index)."""
    from .language import tile_size
    return mgrid[0:tile_size.pmax, 0:tile_size.gemm_moving_fmax]


def gemm_stationary_grid():
    """Index grid of a matmul stationary operand tile: `nl.mgrid[0:pmax,
    0:gemm_stationary_fmax]`."""
    from .language import tile_size
    return mgrid[0:tile_size.pmax, 0:tile_size.gemm_stationary_fmax]


def shared_constant(constant, dtype=None, **kwargs):
    """A shared-HBM tensor holding a host array known at trace time (cast to `dtype`
    when given, RNE)."""
    from ..numerics.cast import cast
    from ..numerics.dtypes import dtype_of_array
    arr = np.ascontiguousarray(constant)
    if dtype is None:
        d = dtype_of_array(arr)
        data = arr.astype(d.np)
    else:
        d = as_dtype(dtype)
        data = cast(arr.astype(np.float32), d) if d.is_float else arr.astype(d.np)
    flush()
    r = runtime.active_run()
    t = r.hbm_tensor(np.ascontiguousarray(data).reshape(-1).view(np.uint8).copy(),
                     arr.shape or (1,), d, MemoryRegion.shared_hbm, "shared_constant",
                     initialized=True)
    return LTensor(t)


def shared_identity_matrix(n, dtype=np.uint8, **kwargs):
    """An n x n identity matrix in shared HBM (like shared_constant)."""
    return shared_constant(np.eye(int(n), dtype=np.float32), dtype=dtype)


__all__ = [
    "add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "fmod", "mod",
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
    "logical_or", "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift",
    "right_shift",
    "abs", "negative", "sign", "trunc", "floor", "ceil", "exp", "log", "sqrt", "rsqrt",
    "reciprocal", "square", "sin", "cos", "tan", "arctan", "tanh", "sigmoid", "relu", "gelu",
    "gelu_apprx_sigmoid", "gelu_apprx_tanh", "gelu_dx", "silu", "silu_dx", "softplus",
    "mish", "erf", "erf_dx", "invert", "logical_not",
    "sum", "max", "min", "prod", "mean", "var", "all", "softmax", "rms_norm",
    "matmul", "transpose", "load_transpose2d", "gather_flattened", "where", "broadcast_to",
    "expand_dims", "dropout", "rand", "random_seed", "atomic_rmw", "loop_reduce",
    "all_reduce", "device_print", "fp32", "bfp16", "finfo", "gemm_grid",
    "gemm_stationary_grid", "shared_constant", "shared_identity_matrix",
]
