"""Selection and layout tile functions: where, expand_dims, broadcast_to, transpose and
matmul, with their destination-passing forms (where_into, broadcast_into,
transpose_into, matmul_into)."""
from __future__ import annotations

from .. import isa as _isa
from ..machine.errors import describe
from ..numerics.dtypes import as_dtype, float32, uint8
from .binary import add, not_equal
from .checks import fail, free_size, is_tile, need_tile, promote
from ..isa.matmul import MATMUL_INPUTS
from ..isa.misc import start_partition
from .tensors import ndarray, private_hbm, tile_size
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
    """dst = x broadcast to dst.shape (same rank; each dim equal or from 1).

    Along free axes: one `tensor_copy` from a stride-0 view of x (an access pattern
    with step 0 costs nothing extra: "free-dimension broadcast can often be folded into
    the actual computation instruction", nki/guides/tutorials/fused_mamba.rst).

    Along the partition axis (x has one partition): on chip, with no HBM traffic, by
    `_partition_broadcast` (the Tensor Engine matmul with a ones vector for float
    dtypes, the Vector Engine partition shuffle for others). x's free dims are
    flattened; when the free axes broadcast too, the partition broadcast fills a
    temporary [P, x's free shape] tile and a `tensor_copy` from its stride-0 view fills
    dst."""
    shape = tuple(dst.shape)
    if shape[0] == x.shape[0]:
        _isa.tensor_copy(dst=out(dst), src=bcast(x, shape))
        return
    dst = out(dst)
    p, fx = shape[0], free_size(x.shape)
    src = to_sbuf("broadcast_to", x)
    if not src.is_contiguous():
        t = new(src.shape, src.dtype, "broadcast_to", tmp=True)
        _isa.tensor_copy(dst=t, src=src)
        src = t
    row = src.reshape((1, fx))
    target = None
    if tuple(x.shape[1:]) == shape[1:] and dst.is_contiguous():
        target = dst.reshape((p, fx))
    if target is None:
        tmp = new((p, fx), dst.dtype, "broadcast_to", tmp=True)
        _partition_broadcast(tmp, row)
        _isa.tensor_copy(dst=dst, src=bcast(tmp.reshape((p,) + tuple(x.shape[1:])), shape))
        return
    _partition_broadcast(target, row)


def _partition_broadcast(dst, x):
    """dst[P, F] = x[1, F] on every partition (both 2-D, x in SBUF). Lane-wise engines
    cannot move data across partitions, so this takes an instruction that can:

    - a Tensor Engine input dtype (fp32/tf32/bf16/fp16/fp8): the matmul with a ones
      vector that "NKI invokes under the hood" for `broadcast_to` (ARCH1 =
      nki/guides/architecture/trainium_inferentia2_arch.rst, TensorE "Alternative Use
      Case"; the "PE broadcast" path of nki-library's down_projection_mx_shard_H):
      `memset` ones[1, P] = 1 (the stationary constant), then per PSUM bank of F (512
      fp32) `nc_matmul(psum[P, f] = ones.T @ x[:, chunk], is_stationary_onezero=True)`
      and a `tensor_copy` PSUM -> dst (the eviction, which also casts to dst's dtype).
      Exact: K = 1, so each element is x * 1, representable in the fp32 PSUM.
    - other dtypes (integers, which a matmul through fp32 would round above 2^24): the
      Vector Engine's 32-partition shuffle with an all-zero mask ("broadcast partition[0]
      to partition[0-31] using a SM of 32 zeros", ARCH1 "Cross-partition Data Movement";
      nki-library's `stream_shuffle_broadcast`): one bit-exact `nc_stream_shuffle` per
      32-partition group, into a temporary (then `tensor_copy`) when dst's dtype differs
      or dst does not start on a 32-partition boundary. A source row that does not
      start on one either cannot be shuffled; it goes to a private HBM row and back with
      partition stride 0 (one DMA each way), the only case that leaves the chip."""
    p, f = dst.shape[0], dst.shape[1]
    if x.dtype in MATMUL_INPUTS:
        ones = new((1, p), x.dtype, "broadcast_to.ones", tmp=True)
        _isa.memset(dst=ones, value=1.0)
        bank = tile_size.psum_fmax
        for a in range(0, f, bank):
            b = min(f, a + bank)
            t = new((p, b - a), float32, "broadcast_to", buffer=psum, tmp=True)
            _isa.nc_matmul(dst=t, stationary=ones, moving=x[:, a:b],
                           is_stationary_onezero=True, accumulate=False)
            _isa.tensor_copy(dst=dst[:, a:b], src=t)
        return
    if start_partition(x) % 32:
        row = ndarray(x.shape, x.dtype, private_hbm, "nl.broadcast_to.row")
        _isa.dma_copy(dst=row, src=x)
        _isa.dma_copy(dst=dst, src=row.broadcast(0, p))
        return
    target = dst
    if dst.dtype != x.dtype or start_partition(dst) % 32:
        target = new((p, f), x.dtype, "broadcast_to", tmp=True)
    for g in range(0, p, 32):
        _isa.nc_stream_shuffle(dst=target[g:min(p, g + 32)], src=x[0:1],
                               shuffle_mask=[0] * 32)
    if target is not dst:
        _isa.tensor_copy(dst=dst, src=target)


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
