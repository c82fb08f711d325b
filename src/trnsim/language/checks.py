"""Operand rules of the tile functions, shared by both API generations (nki.language
and the legacy front end, trnsim/legacy/compute.py): errors, tile checks, dtype
promotion, the dtype of scalar operands, and reduction axes and shapes."""
from __future__ import annotations

import numpy as np

from ..machine.errors import NkiValidationError, describe
from ..machine.tensor import NkiTensor
from ..numerics.dtypes import DType, as_dtype, bfloat16, float32, int16, int32, uint8


def fail(fname: str, message: str, cls=NkiValidationError):
    raise cls(message, op=f"nl.{fname}")


def is_tile(v) -> bool:
    return isinstance(v, NkiTensor)


def need_tile(fname, role, v):
    if not is_tile(v):
        fail(fname, f"{role} must be an NKI tile, got {type(v).__name__} {v!r}")
    return v


def free_size(shape) -> int:
    """Elements per partition of a tile of `shape`."""
    n = 1
    for s in shape[1:]:
        n *= s
    return n


# -- dtypes ----------------------------------------------------------------------
def promote(a, b) -> DType:
    """Legacy NKI type promotion of two tile dtypes (nki-api.md §4)."""
    a, b = as_dtype(a), as_dtype(b)
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


def scalar_dtype(tile_dtype: DType, scalar, arithmetic: bool) -> DType:
    """Current API, a tile with a weak scalar: the tile's dtype, except an integer tile
    with a Python float scalar in an arithmetic op, which gives float32 (weak floats
    are fp32)."""
    if arithmetic and tile_dtype.is_int and isinstance(scalar, float):
        return float32
    return tile_dtype


def weak_dtype(s) -> DType:
    """Legacy API, the dtype a scalar operand takes part in promotion with: Python
    scalars are weakly typed (bool -> uint8, int -> int32, float -> float32), NumPy
    scalars keep their own type."""
    if isinstance(s, (bool, np.bool_)) and not isinstance(s, np.generic):
        return uint8
    if isinstance(s, np.generic):
        return as_dtype(s.dtype)
    if isinstance(s, int):
        return int32
    return float32


# -- reductions ------------------------------------------------------------------
def reduce_axes(fname, shape, axis, what=None) -> tuple:
    """`axis` (int or sequence; negatives allowed) as sorted trailing free axes of a
    tile of `shape`. Errors name the tile as `what` (default: by its shape)."""
    raw = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis) if axis is not None \
        else ()
    if not raw:
        fail(fname, f"axis={axis!r}: give the free axis (or axes) to reduce")
    nd = len(shape)
    tile = what or f"a tile of shape {tuple(shape)}"
    axes = set()
    for a in raw:
        a2 = int(a) + nd if int(a) < 0 else int(a)
        if not 0 <= a2 < nd:
            fail(fname, f"axis {a} is out of range for {tile}")
        axes.add(a2)
    axes = tuple(sorted(axes))
    if 0 in axes:
        fail(fname, f"axis={axis!r} includes the partition dimension (0)"
                    + (f" of {what}" if what else "") + "; only free dimensions can be reduced")
    if axes != tuple(range(axes[0], nd)):
        fail(fname, f"axis={axis!r} on {tile}: the axes must be the last contiguous free "
                    f"dimension(s), e.g. {tuple(range(1, nd))} or ({nd - 1},)")
    return axes


def tile_axes(fname, x, axis) -> tuple:
    """reduce_axes of tile x (current API: errors describe x)."""
    need_tile(fname, "x", x)
    return reduce_axes(fname, x.shape, axis, describe(x))


def kept_shape(shape, axes) -> tuple:
    return tuple(1 if d in axes else s for d, s in enumerate(shape))


def reduced_shape(shape, axes, keepdims) -> tuple:
    if keepdims:
        return kept_shape(shape, axes)
    out = tuple(s for d, s in enumerate(shape) if d not in axes)
    return out + (1,) * (2 - len(out)) if len(out) < 2 else out


def count(shape, axes) -> int:
    n = 1
    for d in axes:
        n *= shape[d]
    return n
