"""Casts between the engines' fp32 compute type and storage dtypes.

The engines read every operand into fp32 (or exact integers for integer-only ops),
compute, and cast on write with round-to-nearest-even. Choices the public
documents leave open are listed in docs/numerics.md; each is made here once.
"""
from __future__ import annotations

import numpy as np

from .dtypes import DType, as_dtype, tfloat32


def to_fp32(values: np.ndarray) -> np.ndarray:
    """Read stored values into the engines' fp32 compute type (exact for every
    device float type; integers above 2**24 round, as on the fp32 datapath)."""
    return np.asarray(values).astype(np.float32, copy=False)


def round_tf32(x: np.ndarray) -> np.ndarray:
    """Round fp32 to tf32 (10 mantissa bits) with round-to-nearest-even; NaN/inf kept."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    lsb = (bits >> 13) & 1
    rounded = ((bits + 0x0FFF + lsb) & ~np.uint64(0x1FFF)).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isfinite(x), out, x)


def cast(values, dst) -> np.ndarray:
    """Cast computed values (fp32, or exact integers) to `dst`'s storage type.

    float -> float: through fp32 with RNE; fp8 overflow follows the format's own
    rule (inf for e4m3/e5m2, NaN for e4m3fn, as ml_dtypes does), no saturation.
    float -> int: RNE, saturating to the integer range, NaN -> 0.
    int -> int: two's-complement wrap-around.
    """
    dst = as_dtype(dst)
    v = np.asarray(values)
    if dst.kind == "x4":
        raise TypeError(f"cannot cast values to packed type {dst}: use quantize_mx")
    if dst.is_float:
        with np.errstate(over="ignore"):  # overflow to inf/NaN is the format's rule
            f32 = v.astype(np.float32)
            if dst is tfloat32:
                return round_tf32(f32)
            return f32.astype(dst.np)
    if dst.kind == "bool":
        return (v != 0).astype(np.uint8)
    info = np.iinfo(dst.np)
    if v.dtype.kind == "f":
        f = v.astype(np.float32).astype(np.float64)
        f = np.where(np.isnan(f), 0.0, np.rint(f))
        return np.clip(f, info.min, info.max).astype(dst.np)
    if v.dtype.kind == "b":
        return v.astype(dst.np)
    return v.astype(np.int64).astype(dst.np)  # wraps modulo 2**bits


def cast_like_storage(values, dst: DType) -> np.ndarray:
    """Bit-exact when `values` already has dst's storage type, else `cast`."""
    v = np.asarray(values)
    if v.dtype == dst.np and dst is not tfloat32:
        return v
    return cast(v, dst)
