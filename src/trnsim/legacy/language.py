"""`neuronxcc.nki.language` (legacy NKI 0.1) on trnsim's core: tensors, indexing,
loads and stores. Compute functions come from `legacy/compute.py`."""
from __future__ import annotations

import math

import numpy as np

from ..machine import runtime
from ..machine.errors import NkiValidationError
from ..machine.tensor import DynamicSlice, MemoryRegion, NkiTensor
from ..numerics.dtypes import (bfloat16, bool_, float8_e4m3, float8_e5m2, float16,  # noqa: F401
                               float32, int8, int16, int32, tfloat32, uint8, uint16, uint32)
from .indexing import arange, mgrid  # noqa: F401
from .jit import nc, num_programs, program_id, program_ndim, spmd_dim  # noqa: F401
from .ops import Pending, flush, result_op, run_masked
from .tensor import Access, LTensor, par_dim

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum
hbm = MemoryRegion.private_hbm
private_hbm = MemoryRegion.private_hbm
shared_hbm = MemoryRegion.shared_hbm


def _wrap_arg(x):
    if isinstance(x, NkiTensor):
        return LTensor(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap_arg(v) for v in x)
    if isinstance(x, dict):
        return {k: _wrap_arg(v) for k, v in x.items()}
    return x


def as_access(x) -> Access:
    """A tensor operand as an Access (a whole tile, or an indexed one)."""
    if isinstance(x, Access):
        return x
    if isinstance(x, LTensor):
        return x.full()
    raise NkiValidationError(f"expected a tensor or an indexed tensor, got {type(x).__name__}")


# -- creation -------------------------------------------------------------
def ndarray(shape, dtype, *, buffer=None, name="", **kwargs):
    """A tensor; on chip, dims before `nl.par_dim(n)` are block dimensions laid out
    inside each partition."""
    flush()
    buffer = sbuf if buffer is None else buffer
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    par = next((i for i, s in enumerate(shape) if isinstance(s, par_dim)), None)
    dims = tuple(int(s) for s in shape)
    run = runtime.active_run()
    region = buffer if isinstance(buffer, MemoryRegion) else MemoryRegion(str(buffer))
    if region.space == "hbm" or not par:
        return LTensor(run.new_tensor(dims, dtype, region, name))
    blocks, p, free = dims[:par], dims[par], dims[par + 1:]
    inner = math.prod(free)
    core = run.new_tensor((p, math.prod(blocks) * inner), dtype, region, name)
    block_strides = [inner * math.prod(blocks[i + 1:]) for i in range(len(blocks))]
    free_strides = [math.prod(free[i + 1:]) for i in range(len(free))]
    view = NkiTensor(dims, core.dtype, core.storage, core.buffer, core.name,
                     strides=tuple(block_strides) + (core.row_elems,) + tuple(free_strides),
                     offset=0)
    return LTensor(view, par_axis=par)


def _filled(shape, dtype, buffer, name, value):
    from ..isa import memset
    t = ndarray(shape, dtype, buffer=buffer, name=name)
    if t.core.on_chip and t.par_axis == 0:
        memset(dst=t.core, value=value)
    elif t.core.on_chip:
        for block in np.ndindex(*t.shape[:t.par_axis]):
            memset(dst=t[block].view(), value=value)
    else:
        from ..nki.language.core import _fill_hbm
        _fill_hbm(t.core, value)
    return t


def zeros(shape, dtype, *, buffer=None, name="", **kwargs):
    return _filled(shape, dtype, buffer, name, 0)


def ones(shape, dtype, *, buffer=None, name="", **kwargs):
    return _filled(shape, dtype, buffer, name, 1)


def full(shape, fill_value, dtype, *, buffer=None, name="", **kwargs):
    return _filled(shape, dtype, buffer, name, fill_value)


def zeros_like(a, dtype=None, *, buffer=None, name="", **kwargs):
    return zeros(a.shape, dtype or a.dtype, buffer=buffer or a.buffer, name=name)


def empty_like(a, dtype=None, *, buffer=None, name="", **kwargs):
    return ndarray(a.shape, dtype or a.dtype, buffer=buffer or a.buffer, name=name)


def ds(start, size):
    return DynamicSlice(start, size)


# -- data movement ----------------------------------------------------------
def load(src, *, mask=None, dtype=None, **kwargs):
    """HBM -> a new SBUF tile."""
    from ..isa import dma_copy
    src = as_access(src)
    return result_op(dma_copy, src.shape, dtype or src.dtype, sbuf, mask, src=src)


def store(dst, value, *, mask=None, **kwargs):
    """SBUF (or PSUM, through an SBUF copy) -> HBM."""
    from ..isa import dma_copy
    dst = as_access(dst)
    if isinstance(value, Pending):
        value.core  # noqa: B018 - materialize before the store
    if getattr(value, "buffer", None) == psum:
        value = copy(value)
    run_masked(dma_copy, dst, mask, src=value)


def copy(src, *, mask=None, dtype=None, **kwargs):
    """A new SBUF tile holding src (cast to dtype)."""
    from ..isa import tensor_copy
    src = as_access(src) if isinstance(src, (LTensor, Access)) else src
    return result_op(tensor_copy, src.shape, dtype or src.dtype, sbuf, mask, src=src)


# -- loops ------------------------------------------------------------------
def affine_range(*args, **kwargs):
    """Parallel loop: the body runs for every index, in order, on the simulator."""
    return range(*args)


def sequential_range(*args, **kwargs):
    return range(*args)


def static_range(*args):
    return range(*args)


def static_cast(input_data, dtype):
    return copy(input_data, dtype=dtype)


class tile_size:
    """Legacy hardware tile sizes."""
    pmax = 128
    psum_fmax = 512
    gemm_stationary_fmax = 128
    gemm_moving_fmax = 512
    bn_stats_fmax = 512
    psum_min_align = 2048
    sbuf_min_align = 32

    @classmethod
    def total_available_sbuf_size(cls):
        return runtime.active_run().chip.core.sbuf_usable_bytes_per_partition \
            if runtime._active else 192 * 1024
