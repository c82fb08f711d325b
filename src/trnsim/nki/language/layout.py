"""Selection and layout tile functions: where, expand_dims, broadcast_to, transpose and
matmul, with their destination-passing forms (where_into, broadcast_into,
transpose_into, matmul_into)."""
from __future__ import annotations

from ... import isa as _isa
from ...machine.errors import describe
from ...numerics.dtypes import as_dtype, float32, uint8
from .binary import add, not_equal
from .checks import fail, free_size, is_tile, need_tile, promote
from .core import ndarray, private_hbm
from .tiles import Result, aliases, bcast, new, out, psum, to_sbuf, ts
from .unary import copy

_UNSIGNED = ("uint8", "uint16", "uint32", "bool_")


# -- where ---------------------------------------------------------------------------
def where_into(dst, condition, x, y):
    """dst = x where condition is nonzero, else y (tiles of dst's shape or scalars):
    predicate = (condition != 0) as uint8 (tensor_scalar; an unsigned condition is its
    own predicate), dst = y (tensor_copy or memset), then tensor_copy_predicated of x.
    When dst shares memory with x, x is copied first and y is written where the
    predicate is zero, so neither input is overwritten before it is read."""
    if str(condition.dtype) in _UNSIGNED and not aliases(condition, dst):
        pred = condition
    else:
        pred = ts("where", condition, uint8, not_equal, 0.0)

    def as_dst_dtype(v):
        if is_tile(v) and v.dtype != dst.dtype:
            t = new(v.shape, dst.dtype, "where", tmp=True)
            _isa.tensor_copy(dst=t, src=v)
            return t
        return v

    first, second, reverse = y, x, False
    if aliases(x, dst):
        first, second, reverse = x, y, True
    if not isinstance(dst, Result):
        # An existing dst may share memory with `second`: convert it before dst is
        # written (a fresh Result cannot; its conversion follows the first write).
        second = as_dst_dtype(second)
    if is_tile(first):
        _isa.tensor_copy(dst=out(dst), src=first)
    else:
        _isa.memset(dst=out(dst), value=first)
    _isa.tensor_copy_predicated(dst=out(dst), src=as_dst_dtype(second), predicate=pred,
                                reverse_pred=reverse)


def where(condition, x, y, dtype=None):
    """x where condition is nonzero, else y (each a tile of condition's shape, or a
    scalar); see where_into."""
    need_tile("where", "condition", condition)
    for role, v in (("x", x), ("y", y)):
        if is_tile(v) and v.shape != condition.shape:
            fail("where", f"{role} {describe(v)} must have the shape of condition "
                          f"{describe(condition)} (no broadcasting)")
        if not is_tile(v) and not isinstance(v, (int, float)):
            fail("where", f"{role} must be a tile or a scalar, got {v!r}")
    if dtype is not None:
        out_dtype = as_dtype(dtype)
    elif is_tile(x) and is_tile(y):
        out_dtype = promote(x.dtype, y.dtype)
    elif is_tile(x) or is_tile(y):
        out_dtype = (x if is_tile(x) else y).dtype
    else:
        out_dtype = condition.dtype
    result = Result(condition.shape, out_dtype, "where")
    where_into(result, condition, x, y)
    return result.tile


# -- views and broadcasts ------------------------------------------------------------
def expand_dims(x, axis):
    """A view of x with a size-1 axis inserted at `axis` (int or sequence)."""
    need_tile("expand_dims", "x", x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    nd = x.ndim + len(axes)
    norm = sorted(a + nd if a < 0 else a for a in axes)
    view = x
    for a in norm:
        if a == 0 and x.on_chip:
            fail("expand_dims", f"axis 0 is the partition dimension of {describe(x)}; "
                                "a new axis can only be inserted among the free axes")
        view = view.expand_dim(a)
    return view


def broadcast_into(dst, x):
    """dst = x broadcast to dst.shape (same rank; each dim equal or from 1): a
    tensor_copy from a stride-0 view along free axes. Engines work lane by lane, so a
    partition broadcast goes through memory: x is written to a private HBM row and read
    back with partition stride 0 (one DMA each way)."""
    shape = tuple(dst.shape)
    dst = out(dst)
    if shape[0] != x.shape[0]:
        src = to_sbuf("broadcast_to", x) if x.space == "psum" else x
        row = ndarray(x.shape, x.dtype, private_hbm, "nl.broadcast_to.row")
        _isa.dma_copy(dst=row, src=src)
        view = row
        for d in range(len(shape)):
            if row.shape[d] == 1 and shape[d] != 1:
                view = view.broadcast(d, shape[d])
        _isa.dma_copy(dst=dst, src=view)
        return
    _isa.tensor_copy(dst=dst, src=bcast(x, shape))


def broadcast_to(x, shape, dtype=None):
    """x broadcast to `shape` (same rank; each dimension equal or from 1); see
    broadcast_into. x itself when it has that shape and dtype already."""
    need_tile("broadcast_to", "x", x)
    shape = tuple(int(s) for s in shape)
    if len(shape) != x.ndim:
        fail("broadcast_to", f"target shape {shape} must have the rank of {describe(x)}")
    for d, (a, b) in enumerate(zip(x.shape, shape)):
        if a != b and a != 1:
            fail("broadcast_to", f"cannot broadcast {describe(x)} to {shape}: dimension {d} "
                                 f"is {a}, neither {b} nor 1")
    out_dtype = as_dtype(dtype) if dtype is not None else x.dtype
    if shape == x.shape:
        return x if out_dtype == x.dtype else copy(x, out_dtype)
    result = Result(shape, out_dtype, "broadcast_to")
    broadcast_into(result, x)
    return result.tile


# -- Tensor Engine -------------------------------------------------------------------
def transpose_into(dst, x):
    """dst[F, P] = x[P, F] (x's free dimensions flattened): nc_transpose on the Tensor
    Engine into PSUM, through a PSUM tile and a tensor_copy when dst is not a PSUM tile
    of x's dtype."""
    src = to_sbuf("transpose", x)
    if src.ndim != 2:
        src = src.reshape((src.shape[0], free_size(src.shape)))
    if dst.space == "psum" and dst.dtype == src.dtype:
        _isa.nc_transpose(dst=out(dst), data=src)
        return
    t = new((src.shape[1], src.shape[0]), src.dtype, "transpose", buffer=psum)
    _isa.nc_transpose(dst=t, data=src)
    _isa.tensor_copy(dst=out(dst), src=t)


def _transposed(x, dtype) -> Result:
    return Result((free_size(x.shape), x.shape[0]), dtype, "transpose", buffer=psum)


def transpose(x, dtype=None):
    """Swap the partition and free dimension of a 2-D tile (nc_transpose into PSUM)."""
    need_tile("transpose", "x", x)
    result = _transposed(x, dtype if dtype is not None else x.dtype)
    transpose_into(result, x)
    return result.tile


def matmul_into(dst, x, y, transpose_x=False, accumulate=None):
    """dst = x @ y (x.T @ y with transpose_x) on the Tensor Engine, fp32. Without
    transpose_x, x [M, K] is first transposed (transpose_into a PSUM tile, copied back
    to SBUF) so its contraction dimension sits on the partitions. `accumulate` as
    nc_matmul's; a dst outside PSUM gets the result through a PSUM tile (copied, or
    added when accumulating)."""
    if transpose_x:
        stationary = to_sbuf("matmul", x)
    else:
        xt = _transposed(x, x.dtype)
        transpose_into(xt, x)
        stationary = new(xt.shape, x.dtype, "matmul", tmp=True)
        _isa.tensor_copy(dst=stationary, src=xt.tile)
    moving = to_sbuf("matmul", y)
    if dst.space == "psum":
        _isa.nc_matmul(dst=out(dst), stationary=stationary, moving=moving,
                       accumulate=accumulate)
        return
    t = new(dst.shape, float32, "matmul", buffer=psum, tmp=True)
    _isa.nc_matmul(dst=t, stationary=stationary, moving=moving, accumulate=False)
    dst = out(dst)
    if accumulate:
        _isa.tensor_tensor(dst=dst, data1=dst, data2=t, op=add)
    else:
        _isa.tensor_copy(dst=dst, src=t)


def matmul(x, y, transpose_x=False):
    """x @ y (or x.T @ y with transpose_x=True) on the Tensor Engine, fp32 into PSUM
    (see matmul_into)."""
    need_tile("matmul", "x", x)
    need_tile("matmul", "y", y)
    if x.ndim != 2:
        fail("matmul", f"x {describe(x)} must be a 2-D tile")
    k_x, m = (x.shape[0], x.shape[1]) if transpose_x else (x.shape[1], x.shape[0])
    if k_x != y.shape[0]:
        what = "partition" if transpose_x else "free"
        fail("matmul", f"contraction mismatch: x {describe(x)} {what} dimension {k_x} must "
                       f"equal y {describe(y)} partition dimension {y.shape[0]}"
                       + ("" if transpose_x else " (x @ y with transpose_x=False)"))
    result = Result((m,) + tuple(y.shape[1:]), float32, "matmul", buffer=psum)
    matmul_into(result, x, y, transpose_x)
    return result.tile


__all__ = ["where", "expand_dims", "broadcast_to", "transpose", "matmul"]
