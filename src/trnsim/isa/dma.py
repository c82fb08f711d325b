"""DMA instructions: copies between HBM and SBUF (and within either), with an
on-the-fly cast through fp32, and gather/scatter through indirect views."""
from __future__ import annotations

import numpy as np

from ..machine.errors import describe
from .base import Instr
from .enums import dge_mode as DgeMode, engine as Engine, oob_mode as OobMode

_DMA_SPACES = ("hbm", "sbuf", "psum")


def _dma_instr(opcode, engine, dge, **attrs) -> Instr:
    ins = Instr(opcode, None, default="dma", dge_mode=getattr(dge, "value", str(dge)), **attrs)
    ins.queue = _queue_name(engine, dge)
    return ins


def _queue_name(engine, dge) -> str:
    """The DMA queue a transfer is issued on, named as the profiler names them."""
    e = getattr(engine, "value", str(engine))
    if getattr(dge, "value", None) == "swdge" or e == "gpsimd":
        return "qGpSimdDynamic"
    if e in ("scalar", "vector", "tensor"):
        return f"q{e.capitalize()}IO"
    return "qSyncIO"


def dma_copy(dst, src, priority=None, oob_mode=OobMode.error, dge_mode=DgeMode.unknown,
             engine=Engine.unknown, name=None):
    """Copy src to dst (equal element counts); dtype changes go through fp32."""
    with _dma_instr("dma_copy", engine, dge_mode) as ins:
        ins.operand("dst", dst, _DMA_SPACES)
        ins.operand("src", src, ("hbm", "sbuf"))
        ins.same_elements("src", src, "dst", dst, per_partition=False)
        if src.dtype.is_x4 or dst.dtype.is_x4:
            ins.require(src.dtype == dst.dtype,
                        f"cannot cast packed MX data ({src.dtype} -> {dst.dtype}) in a DMA")
        if getattr(dge_mode, "value", None) == "hwdge":
            ins.require(src.dtype == dst.dtype, f"dge_mode=hwdge needs equal dtypes, got "
                        f"src {describe(src)} and dst {describe(dst)}")
        skip = getattr(oob_mode, "value", oob_mode) == "skip"
        raw = ins.read("src", src)
        if raw is None:
            ins.write("dst", dst, None)
            return
        values = raw.reshape(dst.shape)
        if src.dtype.np == dst.dtype.np:
            ins.write("dst", dst, values, raw=True, skip_oob=skip)
        elif src.dtype.is_int and dst.dtype.is_int:
            ins.write("dst", dst, values.astype(np.int64), skip_oob=skip)
        else:
            ins.write("dst", dst, values.astype(np.float32), skip_oob=skip)


__all__ = ["dma_copy"]
