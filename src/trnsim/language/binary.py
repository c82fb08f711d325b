"""Elementwise binary tile functions (add ... right_shift) and their destination-passing
form `binary_into`.

Current API: tiles of one shape (tensor_tensor), a tile and a scalar, or a tile and a
per-partition [P, 1] tile (tensor_scalar); nothing else is broadcast, in particular not
across partitions. Result dtype: `dtype` if given, else the promotion of two tiles, else
the tile's dtype (an integer tile with a Python float gives float32 for arithmetic)."""
from __future__ import annotations

from .. import isa as _isa
from ..machine.errors import describe
from ..numerics.dtypes import as_dtype
from .checks import fail, free_size, is_tile, promote, scalar_dtype
from .tiles import Result, bcast, out

_BITVEC = ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift")
_COMPARE = ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal")


def _is_column_of(y, x) -> bool:
    """y holds one value per partition of x (a tensor_scalar operand for x)."""
    return y.shape[0] == x.shape[0] and free_size(y.shape) == 1


def pair_shape(x, y):
    """The shape of the current API's binary result of tiles x and y: their shape, or
    the other's where one is a [P, 1] column; None for any other pair."""
    if x.shape == y.shape or _is_column_of(y, x):
        return tuple(x.shape)
    if _is_column_of(x, y):
        return tuple(y.shape)
    return None


def result_shape(fname, x, y) -> tuple:
    """pair_shape(x, y), or the current API's error."""
    shape = pair_shape(x, y)
    if shape is not None:
        return shape
    fail(fname, f"x {describe(x)} and y {describe(y)} must have the same shape: binary ops "
                "do not broadcast in the current NKI (only a scalar or a "
                f"[{x.shape[0]}, 1] tile is broadcast along the free axis; tiles are never "
                "broadcast across partitions)")


def binary_into(dst, x, y, op, broadcast=True, fname=None):
    """dst = op(x, y): tensor_tensor for tiles of one shape; tensor_scalar for a scalar or
    a [P, 1] tile on either side. With `broadcast` (the legacy API), other broadcasts
    along free axes (same rank) read a stride-0 view; without, they are the current
    API's error, naming `fname` (default: op's). Never across partitions."""
    if is_tile(x) and is_tile(y):
        if x.shape == y.shape:
            _isa.tensor_tensor(dst=out(dst), data1=x, data2=y, op=op)
        elif _is_column_of(y, x):
            _isa.tensor_scalar(dst=out(dst), data=x, op0=op, operand0=y)
        elif _is_column_of(x, y):
            _isa.tensor_scalar(dst=out(dst), data=y, op0=op, operand0=x, reverse0=True)
        elif not broadcast:
            result_shape(fname or op.__name__, x, y)
        elif not _stride0_into(dst, x, y, op):
            fail(getattr(op, "__name__", str(op)),
                 f"x {describe(x)} and y {describe(y)} do not broadcast to dst "
                 f"{describe(dst)} along free axes (tiles are never broadcast across "
                 "partitions)")
        return
    tile, scalar, reverse = (x, y, False) if is_tile(x) else (y, x, True)
    _isa.tensor_scalar(dst=out(dst), data=tile, op0=op, operand0=scalar, reverse0=reverse)


def _stride0_into(dst, x, y, op) -> bool:
    """dst = op(x, y) over stride-0 views of x and y broadcast to dst along free axes;
    False (nothing issued) when they do not broadcast to dst."""
    if not x.shape[0] == y.shape[0] or not x.ndim == y.ndim == dst.ndim:
        return False
    bx, by = bcast(x, dst.shape), bcast(y, dst.shape)
    if not bx.shape == by.shape == tuple(dst.shape):
        return False
    _isa.tensor_tensor(dst=out(dst), data1=bx, data2=by, op=op)
    return True


def _binary(fn, x, y, dtype):
    """The current API's `fn(x, y, dtype)`: checks, result shape and dtype, then
    binary_into a new SBUF tile."""
    fname = fn.__name__
    if not is_tile(x) and not is_tile(y):
        fail(fname, f"at least one of x, y must be a tile; got {x!r} and {y!r}")
    if fname in _BITVEC:
        for role, v in (("x", x), ("y", y)):
            if is_tile(v) and not v.dtype.is_int:
                fail(fname, f"{role} {describe(v)}: inputs must be integer typed")
    if is_tile(x) and is_tile(y):
        out_dtype = as_dtype(dtype) if dtype is not None else promote(x.dtype, y.dtype)
        shape = result_shape(fname, x, y)
    else:
        tile, scalar = (x, y) if is_tile(x) else (y, x)
        if not isinstance(scalar, (int, float)) and not hasattr(scalar, "__float__"):
            fail(fname, f"operand {scalar!r} must be a tile or a scalar number")
        arithmetic = fname not in _COMPARE + _BITVEC and not fname.startswith("logical")
        out_dtype = (as_dtype(dtype) if dtype is not None
                     else scalar_dtype(tile.dtype, scalar, arithmetic))
        shape = tile.shape
    result = Result(shape, out_dtype, fname)
    binary_into(result, x, y, fn, broadcast=False)
    return result.tile


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


__all__ = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "abs_max", "abs_min",
           "power", "fmod", "mod", "equal", "not_equal", "greater", "greater_equal", "less",
           "less_equal", "logical_and", "logical_or", "logical_xor", "bitwise_and",
           "bitwise_or", "bitwise_xor", "left_shift", "right_shift"]
