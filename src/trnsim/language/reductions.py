"""Reductions over the trailing free axes (sum, max, min, prod, all, mean, var), softmax
and rms_norm, with their destination-passing forms (reduce_into, softmax_into,
rms_norm_into). Intermediates are fp32; sums are tensor_reduce additions."""
from __future__ import annotations

from .. import isa as _isa
from ..isa.enums import reduce_cmd as _reduce_cmd
from ..numerics.dtypes import as_dtype, float32
from .binary import (add, binary_into, divide, logical_and, maximum, minimum, multiply,
                     pair_shape)
from .checks import count, fail, need_tile, reduced_shape, tile_axes
from .tiles import Result, bcast, column, new, out, ts, tt, whole_free
from .unary import exp, rsqrt

_REDUCE_OPS = {"sum": add, "max": maximum, "min": minimum, "prod": multiply,
               "all": logical_and}


def _reduced(fname, op, x, axes, keepdims, negate=False):
    """An fp32 reduction of x over `axes` (tensor_reduce), named after the function."""
    t = new(reduced_shape(x.shape, axes, keepdims), float32, fname)
    _isa.tensor_reduce(dst=t, op=op, data=x, axis=axes, negate=negate, keepdims=keepdims)
    return t


def _per_row_into(dst, x, r, op, axes):
    """dst = op(x, r), r a keepdims reduction result broadcast over `axes`: tensor_scalar
    with r as a [P, 1] column over all free axes, else tensor_tensor on a stride-0 view."""
    if whole_free(x, axes):
        _isa.tensor_scalar(dst=out(dst), data=x, op0=op, operand0=column(r))
    else:
        _isa.tensor_tensor(dst=out(dst), data1=x, data2=bcast(r, x.shape), op=op)


def _per_row(fname, x, r, op, dtype, axes):
    t = Result(x.shape, dtype, fname, tmp=True)
    _per_row_into(t, x, r, op, axes)
    return t.tile


def reduce_into(dst, x, name, axis, keepdims=False):
    """dst = the `name` reduction (sum, max, min, prod, all, mean, var) of x over the
    trailing free axes `axis`; dst holds the reduced elements in any layout."""
    axes = tile_axes(name, x, axis)
    if name in _REDUCE_OPS:
        _isa.tensor_reduce(dst=out(dst), op=_REDUCE_OPS[name], data=x, axis=axes,
                           keepdims=keepdims)
        return
    n = count(x.shape, axes)
    if name == "mean":
        s = _reduced("mean", add, x, axes, keepdims)
        _isa.tensor_scalar(dst=out(dst), data=s, op0=multiply, operand0=1.0 / n)
        return
    if name != "var":
        fail(name, f"{name!r} is not a reduction")
    s = _reduced("var", add, x, axes, True)
    neg_mean = ts("var", s, float32, multiply, -1.0 / n)
    d = _per_row("var", x, neg_mean, add, float32, axes)
    d2 = tt("var", d, d, multiply, float32)
    ss = _reduced("var", add, d2, axes, True)
    _isa.tensor_scalar(dst=out(dst), data=ss, op0=multiply, operand0=1.0 / n)


def _reduction(name, x, axis, dtype, keepdims):
    """The current API's reduction `name`: reduce_into a new SBUF tile."""
    axes = tile_axes(name, x, axis)
    result = Result(reduced_shape(x.shape, axes, keepdims),
                    dtype if dtype is not None else x.dtype, name)
    reduce_into(result, x, name, axes, keepdims)
    return result.tile


def sum(x, axis, dtype=None, keepdims=False):
    """Sum over the trailing free axes `axis` (tensor_reduce add, fp32)."""
    return _reduction("sum", x, axis, dtype, keepdims)


def max(x, axis, dtype=None, keepdims=False):
    """Maximum over the trailing free axes `axis`."""
    return _reduction("max", x, axis, dtype, keepdims)


def min(x, axis, dtype=None, keepdims=False):
    """Minimum over the trailing free axes `axis`."""
    return _reduction("min", x, axis, dtype, keepdims)


def prod(x, axis, dtype=None, keepdims=False):
    """Product over the trailing free axes `axis`."""
    return _reduction("prod", x, axis, dtype, keepdims)


def all(x, axis, dtype=None):
    """1 where every element along `axis` is nonzero, else 0 (logical_and reduction)."""
    return _reduction("all", x, axis, dtype, False)


def mean(x, axis, dtype=None, keepdims=False):
    """Arithmetic mean over `axis`: an fp32 sum, then a multiply by 1/n."""
    return _reduction("mean", x, axis, dtype, keepdims)


def var(x, axis, dtype=None, keepdims=False):
    """Population variance over `axis` (two passes in fp32: mean, then the mean of the
    squared deviations). As documented, the result always has the keepdims shape."""
    return _reduction("var", x, axis, dtype, True)


# -- softmax, rms_norm -----------------------------------------------------------------
def softmax_into(dst, x, axis):
    """dst = exp(x - max) / sum(exp(x - max)) over the trailing free axes `axis`.

    Over all free axes: tensor_reduce (negated max), one activation(exp) with the
    [P,1] bias and an add-reduction into reduce_res, and a tensor_scalar divide."""
    axes = tile_axes("softmax", x, axis)
    neg_max = _reduced("softmax", maximum, x, axes, True, negate=True)
    if whole_free(x, axes):
        e = new(x.shape, float32, "softmax", tmp=True)
        total = new((x.shape[0], 1), float32, "softmax", tmp=True)
        _isa.activation(dst=e, op=exp, data=x, bias=column(neg_max), scale=1.0,
                        reduce_op=add, reduce_res=total,
                        reduce_cmd=_reduce_cmd.reset_reduce)
        _isa.tensor_scalar(dst=out(dst), data=e, op0=divide, operand0=total)
        return
    shifted = _per_row("softmax", x, neg_max, add, float32, axes)
    e = new(x.shape, float32, "softmax", tmp=True)
    _isa.activation(dst=e, op=exp, data=shifted)
    total = _reduced("softmax", add, e, axes, True)
    _per_row_into(dst, e, total, divide, axes)


def softmax(x, axis=-1, dtype=None):
    """exp(x - max) / sum(exp(x - max)) over the trailing free axes `axis` (see
    softmax_into)."""
    axes = tile_axes("softmax", x, axis)
    result = Result(x.shape, dtype if dtype is not None else x.dtype, "softmax")
    softmax_into(result, x, axes)
    return result.tile


def rms_norm_into(dst, x, w, axis, n, epsilon=1e-06, compute_dtype=None, broadcast=True):
    """dst = x / sqrt(sum(x^2, axis) / n + epsilon) * w.

    Sum of squares (tensor_tensor + tensor_reduce, fp32), mean + epsilon (tensor_scalar),
    rsqrt (activation), then the scaling by the per-row factor and by w: one
    scalar_tensor_tensor, or (with a `compute_dtype`, other axes or another w shape) a
    scaling in compute_dtype (default float32) and binary_into(dst, ., w) (`broadcast`
    as there)."""
    axes = tile_axes("rms_norm", x, axis)
    need_tile("rms_norm", "w", w)
    cdt = as_dtype(compute_dtype) if compute_dtype is not None else float32
    sq = tt("rms_norm", x, x, multiply, float32)
    ss = _reduced("rms_norm", add, sq, axes, True)
    ms = ts("rms_norm", ss, float32, multiply, 1.0 / float(n), op1=add,
            operand1=float(epsilon), shape=ss.shape)
    inv = new(ss.shape, float32, "rms_norm", tmp=True)
    _isa.activation(dst=inv, op=rsqrt, data=ms)
    if (compute_dtype is None and whole_free(x, axes) and w.shape == x.shape
            and not (x.space == "psum" and w.space == "psum")):
        _isa.scalar_tensor_tensor(dst=out(dst), data=x, op0=multiply, operand0=column(inv),
                                  op1=multiply, operand1=w)
        return
    y = _per_row("rms_norm", x, inv, multiply, cdt, axes)
    binary_into(dst, y, w, multiply, broadcast=broadcast, fname="rms_norm")


def rms_norm(x, w, axis, n, epsilon=1e-06, dtype=None, compute_dtype=None):
    """x / sqrt(sum(x^2, axis) / n + epsilon) * w (see rms_norm_into); the scaling in
    `compute_dtype` (default float32), the result in `dtype` (default x.dtype). w has
    x's shape or is a [P, 1] column (no other broadcasting)."""
    axes = tile_axes("rms_norm", x, axis)
    need_tile("rms_norm", "w", w)
    shape = pair_shape(x, w) or x.shape  # (a bad w fails once the scaling is reached)
    result = Result(shape, dtype if dtype is not None else x.dtype, "rms_norm")
    rms_norm_into(result, x, w, axes, n, epsilon, compute_dtype, broadcast=False)
    return result.tile


__all__ = ["sum", "max", "min", "prod", "all", "mean", "var", "softmax", "rms_norm"]
