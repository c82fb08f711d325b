"""nki.language data movement: load / store between HBM and SBUF, the transposing
load, and the flattened gather. Each is a thin wrapper over the ISA instruction that
does the work (dma_copy, nc_n_gather), so checks, numerics and the record are the
instruction's."""
from __future__ import annotations

from ...machine.errors import NkiValidationError, describe
from ...machine.tensor import NkiTensor
from ...numerics.dtypes import as_dtype
from .core import ndarray, sbuf


def _tensor(x, role: str, op: str) -> NkiTensor:
    if not isinstance(x, NkiTensor):
        raise NkiValidationError(f"{role} must be an NKI tensor, got {type(x).__name__}",
                                 op=op)
    return x


def _from_hbm(src: NkiTensor, op: str):
    if src.on_chip:
        raise NkiValidationError(f"src {describe(src)} must be an HBM tensor; copy on-chip "
                                 "tiles with nisa.tensor_copy", op=op)
    if src.ndim < 2:
        raise NkiValidationError(
            f"src {describe(src)} is 1-D; an SBUF tile needs a partition dimension: load "
            f"src.reshape(({src.shape[0]}, 1)) or src.reshape((1, {src.shape[0]}))", op=op)


def load(src, dtype=None):
    """A new SBUF tile with the values of the HBM tensor `src` (cast to `dtype` through
    fp32 when given): `nisa.dma_copy` into a fresh `nl.ndarray`."""
    from ...isa import dma_copy
    src = _tensor(src, "src", "load")
    _from_hbm(src, "load")
    dst = ndarray(src.shape, as_dtype(dtype) if dtype is not None else src.dtype, sbuf,
                  name=(src.name + "_sb") if src.name else "")
    dma_copy(dst=dst, src=src)
    return dst


def store(dst, value):
    """Write the SBUF tile `value` into the HBM tensor `dst` (`nisa.dma_copy`)."""
    from ...isa import dma_copy
    dst = _tensor(dst, "dst", "store")
    value = _tensor(value, "value", "store")
    if dst.on_chip:
        raise NkiValidationError(f"dst {describe(dst)} must be an HBM tensor; copy between "
                                 "on-chip tiles with nisa.tensor_copy", op="store")
    dma_copy(dst=dst, src=value)


def load_transpose2d(src, dtype=None):
    """A new SBUF tile holding the 2-D HBM tensor `src` [K, M] transposed to [M, K]:
    a `nisa.dma_copy` from the transposed (element-strided) view of src, which is why
    its bandwidth is far below a contiguous load."""
    from ...isa import dma_copy
    src = _tensor(src, "src", "load_transpose2d")
    _from_hbm(src, "load_transpose2d")
    if src.ndim != 2:
        raise NkiValidationError(f"src {describe(src)} must be 2-D", op="load_transpose2d")
    view = src.permute((1, 0))
    dst = ndarray(view.shape, as_dtype(dtype) if dtype is not None else src.dtype, sbuf,
                  name=(src.name + "_T") if src.name else "")
    dma_copy(dst=dst, src=view)
    return dst


def gather_flattened(data, indices, axis=0, dtype=None):
    """result[p, j...] = data[p, flat(indices[p, j...])]: per partition, gather from the
    flattened free dimensions of `data` (`nisa.nc_n_gather` on GpSimd). The result has
    the shape of `indices` (uint32) and dtype `dtype` (default data.dtype, cast through
    a tensor_copy when different)."""
    from ... import isa
    data = _tensor(data, "data", "gather_flattened")
    indices = _tensor(indices, "indices", "gather_flattened")
    if axis not in (0, -1, data.ndim - 1):
        raise NkiValidationError(
            f"axis={axis}: gather_flattened gathers within each partition along the "
            "flattened free dimensions (axis=0, the default)", op="gather_flattened")
    gather = getattr(isa, "nc_n_gather", None)
    if gather is None:
        from ...machine.errors import UnsupportedError
        raise UnsupportedError("gather_flattened needs nisa.nc_n_gather, which this build "
                               "does not provide yet", op="gather_flattened")
    out = ndarray(indices.shape, data.dtype, sbuf)
    gather(dst=out, data=data, indices=indices)
    if dtype is None or as_dtype(dtype) == data.dtype:
        return out
    cast = ndarray(indices.shape, as_dtype(dtype), sbuf)
    isa.tensor_copy(dst=cast, src=out)
    return cast


__all__ = ["load", "store", "load_transpose2d", "gather_flattened"]
