"""OCP microscaling (MX) data: the packed x4 element types and the e8m0 block scales.

Packing (as NKI's x4 types hold them in memory):
- `float8_e5m2_x4` / `float8_e4m3fn_x4`: one little-endian uint32 holds 4 fp8 codes,
  value j in byte j (bits 8j..8j+7).
- `float4_e2m1fn_x4`: one little-endian uint16 holds 4 fp4 codes, value j in bits
  4j..4j+3.
So viewing an x4 tensor's bytes as the element type (two fp4 codes per byte, low nibble
first) lists the values in order.

Scales (`float8_e8m0fnu`, or `uint8` holding the same byte): byte b means 2^(b - 127);
0xFF is NaN. One scale covers a group of 32 values: 8 partitions x 4 values per
partition (the 4 values of one x4 element).

`quantize_mx` computes the scale as 2^(floor(log2 amax) - (Emax - 1)) (twice the OCP
sample algorithm's scale, so the largest value never saturates), Emax = 8 for e4m3fn and
15 for e5m2; an all-zero group gets 2^-127.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .dtypes import DType, as_dtype

GROUP_PARTITIONS = 8  # partitions per scaling group
GROUP_ELEMENTS = 4  # values per partition per scaling group (one x4 element)
SCALE_BIAS = 127
SCALE_NAN = 0xFF

# Element formats: (ml_dtypes type, bits per code, Emax (largest unbiased exponent),
# largest finite value).
_FORMATS = {
    "float8_e5m2_x4": (ml_dtypes.float8_e5m2, 8, 15, 57344.0),
    "float8_e4m3fn_x4": (ml_dtypes.float8_e4m3fn, 8, 8, 448.0),
    "float4_e2m1fn_x4": (ml_dtypes.float4_e2m1fn, 4, 2, 6.0),
}


def _fmt(dtype):
    d = as_dtype(dtype)
    if str(d) not in _FORMATS:
        raise TypeError(f"{d} is not a packed MX (x4) dtype; use one of {', '.join(_FORMATS)}")
    return d, _FORMATS[str(d)]


def element_type(dtype) -> np.dtype:
    """The ml_dtypes type of each of the 4 values of an x4 dtype."""
    return np.dtype(_fmt(dtype)[1][0])


def emax(dtype) -> int:
    """Largest unbiased exponent of the element format (8 e4m3fn, 15 e5m2, 2 e2m1fn)."""
    return _fmt(dtype)[1][2]


def max_normal(dtype) -> float:
    return _fmt(dtype)[1][3]


def pack_x4(values: np.ndarray, dtype) -> np.ndarray:
    """Pack `values` (last axis of length 4; any float type, rounded RNE to the element
    format unless already of it) into the storage type of x4 `dtype`: shape [..., 4]
    -> [...]."""
    d, (elem, bits, _, _) = _fmt(dtype)
    v = np.asarray(values)
    if v.shape[-1:] != (4,):
        raise ValueError(f"pack_x4 needs a last axis of 4 values, got shape {v.shape}")
    if v.dtype != np.dtype(elem):
        v = v.astype(np.float32).astype(elem)
    codes = np.ascontiguousarray(v).view(np.uint8).astype(np.uint32)
    if bits == 4:
        codes &= 0xF
    shifts = (np.arange(4, dtype=np.uint32) * bits)
    return (codes << shifts).sum(axis=-1, dtype=np.uint32).astype(d.np)


def unpack_x4(raw: np.ndarray, dtype) -> np.ndarray:
    """The 4 values held by each x4 element: [...] (storage type) -> [..., 4] of the
    element's ml_dtypes type (bit-exact)."""
    d, (elem, bits, _, _) = _fmt(dtype)
    r = np.asarray(raw).astype(np.uint32)
    shifts = (np.arange(4, dtype=np.uint32) * bits)
    codes = (r[..., None] >> shifts) & np.uint32((1 << bits) - 1)
    return codes.astype(np.uint8).view(elem)


def unpack_x4_fp32(raw: np.ndarray, dtype) -> np.ndarray:
    """The 4 values of each x4 element as fp32 (exact): [...] -> [..., 4]."""
    return unpack_x4(raw, dtype).astype(np.float32)


def scale_values(raw: np.ndarray) -> np.ndarray:
    """e8m0 scale bytes (uint8 or float8_e8m0fnu storage) -> float64 2^(b-127); 0xFF -> NaN."""
    b = np.asarray(raw)
    b = np.ascontiguousarray(b).view(np.uint8) if b.dtype.itemsize == 1 else b.astype(np.uint8)
    out = np.ldexp(1.0, b.astype(np.int64) - SCALE_BIAS)
    return np.where(b == SCALE_NAN, np.nan, out)


def quantize_groups(values: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Quantize [P, F] values (P a multiple of 8, F of 4) in 8x4 groups.

    Returns (packed [P, F//4] in dtype's storage type, scale bytes [P//8, F//4] uint8).
    Scale 2^(floor(log2 amax) - (Emax - 1)), clamped to [2^-127, 2^127]; an all-zero
    group gets 2^-127; a group holding NaN or +-Inf gets the NaN scale (0xFF) and NaN
    values. Values are divided by the scale exactly, clipped to +-max normal and rounded
    to the element format with RNE."""
    d, (elem, _, e_max, vmax) = _fmt(dtype)
    v = np.asarray(values).astype(np.float64)
    P, F = v.shape
    if P % GROUP_PARTITIONS or F % GROUP_ELEMENTS:
        raise ValueError(f"quantize_groups needs [8k, 4j] values, got {v.shape}")
    g = v.reshape(P // 8, 8, F // 4, 4)
    finite = np.isfinite(g).all(axis=(1, 3))
    amax = np.where(np.isfinite(g), np.abs(g), 0.0).max(axis=(1, 3))
    _, e = np.frexp(amax)  # amax = m * 2^e, m in [0.5, 1): floor(log2 amax) = e - 1
    s = np.clip(e - 1 - (e_max - 1), -SCALE_BIAS, SCALE_BIAS)
    s = np.where(amax == 0, -SCALE_BIAS, s)
    scale_bytes = np.where(finite, s + SCALE_BIAS, SCALE_NAN).astype(np.uint8)
    q = g / np.ldexp(1.0, s)[:, None, :, None]
    q = np.clip(q, -vmax, vmax)
    q = np.where(finite[:, None, :, None], q, np.nan)
    q = q.astype(np.float32).astype(elem).reshape(P, F // 4, 4)
    return pack_x4(q, d), scale_bytes


def dequantize_groups(packed: np.ndarray, scale_bytes: np.ndarray, dtype) -> np.ndarray:
    """Inverse of `quantize_groups`: packed [P, F4] and scales [P//8, F4] -> float64
    [P, F4*4]."""
    vals = unpack_x4(packed, dtype).astype(np.float64)  # [P, F4, 4]
    sc = np.repeat(scale_values(scale_bytes), GROUP_PARTITIONS, axis=0)  # [P, F4]
    out = vals * sc[:, :, None]
    return out.reshape(vals.shape[0], -1)


def is_x4(dtype) -> bool:
    return isinstance(dtype, DType) and dtype.is_x4 or str(dtype) in _FORMATS


__all__ = ["GROUP_PARTITIONS", "GROUP_ELEMENTS", "SCALE_BIAS", "SCALE_NAN", "element_type",
           "emax", "max_normal", "pack_x4", "unpack_x4", "unpack_x4_fp32", "scale_values",
           "quantize_groups", "dequantize_groups", "is_x4"]
