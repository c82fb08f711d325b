"""OCP microscaling (MX) on NeuronCore-v4: `quantize_mx` (Vector Engine) and
`nc_matmul_mx` (Tensor Engine).

Layout (trainium3_arch.rst, nki.isa docs). An MX data tile is [K, F] in an x4 type: K
partitions, each x4 element holding 4 values of the contraction dimension, so a tile
contracts 4K values. A scaling group is 8 partitions x 1 x4 element (32 values) and has
one e8m0 scale. Scales live in the SBUF quadrant of their group: group g (data partitions
8g..8g+7, data starting on a quadrant boundary) has its scale at partition
32*(g // 4) + g % 4 of the scale tile (whose first partition may sit 0, 4, 8 or 12
partitions into the data's first quadrant, to pack several scale tiles in one), free
index = the x4 element's. A K=32 tile's scales are a [4, F] tile; larger ones need
32*(K/32 - 1) + 4 partitions.

Numerics: quantize_mx as documented (see numerics/mx.py for the rounding and special
values). nc_matmul_mx dequantizes both operands exactly (value x 2^(scale-127)), sums the
products in float64 and rounds once to fp32, then stores to PSUM like nc_matmul
(overwrite or fp32 accumulate; RNE to bf16 for a bf16 dst).
"""
from __future__ import annotations

import numpy as np

from ..machine.errors import UnsupportedError, describe
from ..machine.tensor import NkiTensor
from ..numerics import mx as mxnum
from ..numerics.cast import to_fp32
from ..numerics.dtypes import (bfloat16, float4_e2m1fn_x4, float8_e4m3fn_x4, float8_e5m2_x4,
                               float8_e8m0fnu, float16, float32, uint8)
from .base import Instr, free_size
from .matmul import check_dst, check_indirect, check_moving_fmax, check_tiling, psum_store

_MX_DATA = (float8_e5m2_x4, float8_e4m3fn_x4, float4_e2m1fn_x4)
_MX_QUANT_OUT = (float8_e5m2_x4, float8_e4m3fn_x4)
_SCALE_TYPES = (float8_e8m0fnu, uint8)
_QUADRANT = 32
_SCALE_OFFSETS = (0, 4, 8, 12)


def _require_mx(ins: Instr):
    if ins.generation < 4 or not ins.chip.core.tensor.supports_mx:
        ins.fail(f"{ins.opcode} (MX microscaling) needs NeuronCore-v4 (trn3); target "
                 f"{ins.chip.name} is NeuronCore-v{ins.generation}", UnsupportedError)


def start_partition(t: NkiTensor) -> int:
    """The first SBUF partition of an on-chip view (its static offset)."""
    return t.storage.partition + t.offset // t.row_elems


def _two_d(ins: Instr, role: str, t: NkiTensor) -> NkiTensor:
    if t.ndim == 2:
        return t
    try:
        return t.reshape((t.shape[0], free_size(t)))
    except Exception:  # noqa: BLE001 - reported as the op's own error
        ins.fail(f"operand {role!r} {describe(t)}: its free dims must be contiguous")


def _scale_view(ins: Instr, role: str, scale, data_role: str, data: NkiTensor) -> NkiTensor:
    """Validate an MX scale tile against its data tile and return the view of exactly the
    scale bytes used: [K/32 quadrants, 4, F]."""
    ins.operand(role, scale, ("sbuf",))
    if scale.dtype not in _SCALE_TYPES:
        ins.fail(f"{role} {describe(scale)} must be float8_e8m0fnu (or uint8)")
    k, f = data.shape[0], free_size(data)
    sc = _two_d(ins, role, scale)
    if sc.shape[1] != f:
        ins.fail(f"{role} {describe(scale)} must have {f} elements per partition, one scale "
                 f"per x4 element of {data_role} {describe(data)}")
    nq = k // _QUADRANT
    need = _QUADRANT * (nq - 1) + 4
    if sc.shape[0] < need:
        ins.fail(f"{role} {describe(scale)} has {sc.shape[0]} partitions; {data_role} with "
                 f"K={k} partitions needs its scales on {need} (4 partitions in each of "
                 f"{nq} SBUF quadrants: allocate [{k if k > _QUADRANT else 4}, {f}])")
    if data.dyn is None and scale.dyn is None:
        d0, s0 = start_partition(data), start_partition(scale)
        if d0 % _QUADRANT:
            ins.fail(f"{data_role} {describe(data)} starts at partition {d0}; MX data must "
                     "start on an SBUF quadrant boundary (a multiple of 32)")
        if s0 - d0 not in _SCALE_OFFSETS:
            ins.fail(f"{role} {describe(scale)} starts at partition {s0}, {data_role} at "
                     f"{d0}: scales must sit in their data's quadrants, at offset 0, 4, 8 or "
                     "12 within each")
    elif (data.dyn is None) != (scale.dyn is None):
        ins.fail(f"{data_role} and {role} must both use tensor indirection (with the same "
                 "index) or neither")
    sp, sf = sc.strides
    return NkiTensor((nq, 4, f), sc.dtype, sc.storage, sc.buffer, sc.name,
                     strides=(_QUADRANT * sp, sp, sf), offset=sc.offset, indirect=sc.dyn)


def _scale_bytes(raw: np.ndarray) -> np.ndarray:
    """[nq, 4, F] scale storage -> [K/8, F] uint8 bytes, group order."""
    return np.ascontiguousarray(raw).view(np.uint8).reshape(-1, raw.shape[-1])


# -- quantize_mx ------------------------------------------------------------------
def quantize_mx(dst, src, dst_scale, name=None):
    """Quantize bf16/fp16 `src` [P, F] to MXFP8 `dst` [P, F/4] (x4) with one e8m0 scale per
    8-partition x 4-element group in `dst_scale` (quadrant layout), on the Vector Engine."""
    with Instr("quantize_mx", None, default="vector") as ins:
        _require_mx(ins)
        ins.operand("src", src, ("sbuf",))
        ins.operand("dst", dst, ("sbuf",))
        ins.require(src.dtype in (bfloat16, float16),
                    f"src {describe(src)} must be bfloat16 or float16")
        if dst.dtype is float4_e2m1fn_x4:
            ins.fail(f"dst {describe(dst)}: quantize_mx produces MXFP8 only "
                     "(float8_e5m2_x4 or float8_e4m3fn_x4), not float4_e2m1fn_x4")
        ins.require(dst.dtype in _MX_QUANT_OUT,
                    f"dst {describe(dst)} must be float8_e5m2_x4 or float8_e4m3fn_x4")
        ins.same_partitions(("src", src), ("dst", dst))
        p, f = src.shape[0], free_size(src)
        if p % _QUADRANT:
            ins.fail(f"src {describe(src)}: partition size {p} must be a multiple of 32 "
                     "(at most 128)")
        if f % 4:
            ins.fail(f"src {describe(src)}: free size {f} must be a multiple of 4")
        if free_size(dst) * 4 != f:
            ins.fail(f"dst {describe(dst)} must have {f // 4} x4 elements per partition "
                     f"(src free size {f} / 4)")
        view = _scale_view(ins, "dst_scale", dst_scale, "dst", dst)
        ins.attrs.update(P=p, F=f, src_dtype=str(src.dtype), dst_dtype=str(dst.dtype),
                         scale_dtype=str(dst_scale.dtype))
        if name is not None:
            ins.attrs["name"] = name
        raw = ins.read("src", src)
        if raw is None:
            ins.write("dst", dst, None)
            ins.write("dst_scale", view, None)
            return
        packed, scales = mxnum.quantize_groups(to_fp32(raw).reshape(p, f), dst.dtype)
        ins.write("dst", dst, packed.reshape(dst.shape), raw=True)
        ins.write("dst_scale", view, scales.reshape(view.shape).view(view.dtype.np), raw=True)


# -- nc_matmul_mx -----------------------------------------------------------------
def _mx_values(ins: Instr, role: str, t: NkiTensor, scale_role: str, scale_view: NkiTensor):
    """Dequantized [4K, F] float64 values (contraction on axis 0), or None."""
    raw = ins.read(role, t)
    sraw = ins.read(scale_role, scale_view)
    if raw is None:
        return None
    k, f = t.shape[0], free_size(t)
    vals = mxnum.unpack_x4(raw.reshape(k, f), t.dtype).astype(np.float64)  # [K, F, 4]
    scales = mxnum.scale_values(_scale_bytes(sraw))  # [K/8, F]
    vals = vals * np.repeat(scales, mxnum.GROUP_PARTITIONS, axis=0)[:, :, None]
    return vals.transpose(0, 2, 1).reshape(4 * k, f)


def nc_matmul_mx(dst, stationary, moving, stationary_scale, moving_scale, tile_position=None,
                 tile_size=None, accumulate=None, name=None):
    """dst[M, N] = dequant(stationary)[4K, M].T @ dequant(moving)[4K, N] for MXFP8/MXFP4 x4
    tiles [K, M] and [K, N] with e8m0 scales, on the Tensor Engine (SBUF -> PSUM)."""
    with Instr("nc_matmul_mx", None, default="tensor") as ins:
        _require_mx(ins)
        ins.operand("stationary", stationary, ("sbuf",))
        ins.operand("moving", moving, ("sbuf",))
        ins.operand("dst", dst, ("psum",))
        te = ins.chip.core.tensor
        for role, t in (("stationary", stationary), ("moving", moving)):
            ins.require(t.dtype in _MX_DATA,
                        f"{role} {describe(t)} must be float8_e5m2_x4, float8_e4m3fn_x4 or "
                        "float4_e2m1fn_x4 (use nc_matmul for unpacked types)")
        ins.require(dst.dtype in (float32, bfloat16),
                    f"dst {describe(dst)} must be float32 or bfloat16")
        ins.same_partitions(("stationary", stationary), ("moving", moving))
        (sr, sc), (rs, cs) = check_tiling(ins, tile_position, tile_size, row_only=True)
        check_indirect(ins, sr != 0, ("dst", dst), ("stationary", stationary),
                       ("moving", moving))
        k = stationary.shape[0]
        if k % _QUADRANT or k > min(te.contraction_max, rs):
            ins.fail(f"stationary {describe(stationary)} and moving {describe(moving)}: "
                     f"partition size K={k} must be a multiple of 32 and at most "
                     f"{min(te.contraction_max, rs)}"
                     + (f" (tile_size row_size={rs})" if rs < te.rows else ""))
        m, n = free_size(stationary), free_size(moving)
        if m % 2 or m > te.stationary_fmax:
            ins.fail(f"stationary {describe(stationary)}: free size M={m} must be even and at "
                     f"most {te.stationary_fmax}")
        check_moving_fmax(ins, moving, n, dst)
        check_dst(ins, dst, m, n)
        s_view = _scale_view(ins, "stationary_scale", stationary_scale, "stationary",
                             stationary)
        m_view = _scale_view(ins, "moving_scale", moving_scale, "moving", moving)
        ins.attrs.update(
            K=k, contraction=4 * k, M=m, N=n, stationary_dtype=str(stationary.dtype),
            moving_dtype=str(moving.dtype), dst_dtype=str(dst.dtype),
            scale_dtypes=(str(stationary_scale.dtype), str(moving_scale.dtype)),
            tile_position=(sr, sc), tile_size=(rs, cs), perf_mode="mx")
        if name is not None:
            ins.attrs["name"] = name
        s64 = _mx_values(ins, "stationary", stationary, "stationary_scale", s_view)
        m64 = _mx_values(ins, "moving", moving, "moving_scale", m_view)

        def compute():
            with np.errstate(invalid="ignore", over="ignore"):
                return (s64.T @ m64).astype(np.float32).reshape(dst.shape), False

        psum_store(ins, dst, compute, accumulate)


__all__ = ["nc_matmul_mx", "quantize_mx"]
