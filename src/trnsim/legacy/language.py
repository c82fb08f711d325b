"""`neuronxcc.nki.language` (legacy NKI 0.1) on trnsim's core: tensors, indexing,
loads and stores. Compute functions come from `legacy/compute.py`."""
from __future__ import annotations

import math
import sys

import numpy as np

from ..isa import without_handles as core_isa
from ..chips import load_chip
from ..machine import expand, runtime
from ..machine.errors import NkiValidationError
from ..machine.tensor import DynamicSlice, MemoryRegion, NkiTensor
from ..numerics.dtypes import as_dtype
from ..numerics.dtypes import (bfloat16, bool_, float8_e4m3, float8_e5m2, float16,  # noqa: F401
                               float32, int8, int16, int32, tfloat32, uint8, uint16, uint32)
from .compiler import BlockTensor
from .creation import _LazyTiles, ndarray  # noqa: F401 - nl.ndarray
from .indexing import arange, mgrid  # noqa: F401
from .jit import nc, num_programs, program_id, program_ndim, spmd_dim  # noqa: F401
from .ops import Pending, result_op, run_masked
from .tensor import Access, LTensor, par_dim  # noqa: F401 - nl.par_dim

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
def _filled(shape, dtype, buffer, name, value):
    """A new tensor holding `value`. The blocks of an automatically allocated block
    tensor are initialized lazily, each when the kernel first touches it (the compiler's
    lazy initialization): a block takes space only while it is in use."""
    t = ndarray(shape, dtype, buffer=buffer, name=name)
    if t.core.on_chip and t.par_axis == 0:
        core_isa.memset(dst=t.core, value=value)
    elif isinstance(t, BlockTensor) and isinstance(t.tiles, _LazyTiles):
        t.tiles.fill = value
        for tile in t.tiles.values():
            core_isa.memset(dst=tile.core, value=value)
    elif t.core.on_chip and not isinstance(t, BlockTensor):
        _fill_blocks_lazily(t, value)
    elif t.core.on_chip:
        for block in np.ndindex(*t.shape[:t.par_axis]):
            core_isa.memset(dst=t[block].view(), value=value)
    else:
        from ..language.tensors import fill_hbm
        fill_hbm(t.core, value)
    return t


def _fill_blocks_lazily(t: LTensor, value) -> None:
    """Memset each block of SBUF block tensor `t` just before the first instruction that
    accesses it (machine/access.py calls `storage.lazy_fill`)."""
    st = t.core.storage
    flat = NkiTensor(st.base_shape, st.base_dtype, st, t.core.buffer, t.core.name)
    block = flat.shape[1] // math.prod(t.shape[:t.par_axis])  # elements per block
    nbytes = block * st.base_dtype.itemsize
    pending = set(range(flat.shape[1] // block))

    def fill(lo, hi):
        hit = sorted(pending.intersection(range(lo // nbytes, -(-hi // nbytes))))
        if hit:
            runtime.active_run().untracked_changes.append(st.alloc)
        pending.difference_update(hit)
        if not pending:
            st.lazy_fill = None
        for b in hit:
            core_isa.memset(dst=flat[:, b * block:(b + 1) * block], value=value)

    st.lazy_fill = fill


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
def _expect_hbm(x: Access, operand: str, op: str) -> None:
    space = x.tensor.core.space
    if space != "hbm":
        raise NkiValidationError(f"Expected operand '{operand}' of '{op}' to be in address "
                                 f"space 'hbm', but got a tile in '{space}' instead.", op=op)


def load(src, *, mask=None, dtype=None, **kwargs):
    """HBM -> a new SBUF tile. A one-dimensional access (`A[c0:c1, j]`) loads as a
    [n, 1] tile: its one dimension is the partition dimension (a tile is at least 2-D)."""
    if type(src) is not Access:
        src = as_access(src)
    _expect_hbm(src, "src", "load")
    shape = tuple(src.shape)
    if len(shape) == 1:
        shape = shape + (1,)
    return result_op(core_isa.dma_copy, shape, dtype or src.dtype, sbuf, mask, src=src)


def store(dst, value, *, mask=None, **kwargs):
    """SBUF (or PSUM, through an SBUF copy) -> HBM."""
    dst = as_access(dst)
    _expect_hbm(dst, "dst", "store")
    if isinstance(value, Pending):
        value.core  # noqa: B018 - materialize before the store
    if getattr(value, "buffer", None) == psum:
        value = copy(value)
    run_masked(core_isa.dma_copy, dst, mask, src=value)


def copy(src, *, mask=None, dtype=None, **kwargs):
    """A new SBUF tile holding src (cast to dtype)."""
    src = as_access(src) if isinstance(src, (LTensor, Access)) else src
    return result_op(core_isa.tensor_copy, src.shape, dtype or src.dtype, sbuf, mask, src=src)


# -- loops ------------------------------------------------------------------
expand.register_loop_module(__file__)


class _LoopRange:
    """`nl.affine_range` / `nl.sequential_range`: the body runs for every index, in
    order. The legacy compiler traces such a loop's body once, with a symbolic index (only
    `nl.static_range` and Python loops unroll); while the body runs, the run keeps a loop
    frame (`run.legacy_loops`: current iteration, and per call stack how many direct
    allocations it made in this iteration) so that a direct allocation made in a later
    iteration takes the placement the first iteration computed (legacy/compiler.py):
    kernels advance a Python address counter inside such loops (`cur_addr += size`)."""

    def __init__(self, *args, sequential: bool = False):
        self.range = range(*args)
        self.sequential = sequential  # iterations carry a dependency: fenced in order

    def __len__(self):
        return len(self.range)

    def __getitem__(self, i):
        return self.range[i]

    def __iter__(self):
        run = runtime.current_run()
        if run is None:
            return iter(self.range)
        return self._iterations(run, expand.is_for_statement(sys._getframe(1)))

    def _iterations(self, run, for_statement):
        loops = run.__dict__.setdefault("legacy_loops", [])
        frame = {"iteration": 0, "counts": {}}
        loops.append(frame)
        core = runtime.current_core().id

        def before(n):
            frame["iteration"], frame["counts"] = n, {}
            if self.sequential:
                run.program.fence(core)
        try:
            yield from expand.iterate(self.range, before, for_statement)
            if self.sequential:
                run.program.fence(core)
        finally:
            if frame in loops:
                loops.remove(frame)


def affine_range(*args, **kwargs):
    """Parallel loop: the body runs for every index, in order, on the simulator."""
    return _LoopRange(*args)


def sequential_range(*args, **kwargs):
    """Sequential loop: the body runs for every index, in order; the compiler model keeps
    each iteration's instructions after the previous iteration's (a fence per iteration)."""
    return _LoopRange(*args, sequential=True)


def static_range(*args):
    return range(*args)


def static_cast(input_data, dtype):
    """A tile cast to `dtype` (a copy), or a scalar / host array converted at trace
    time (NumPy astype semantics)."""
    if isinstance(input_data, (LTensor, Access)):
        return copy(input_data, dtype=dtype)
    return np.asarray(input_data).astype(as_dtype(dtype).np)[()]


def _chip():
    run = runtime.current_run()
    return run.chip if run is not None else load_chip()


class _TileSizes(type):
    """Lets kernels read `nl.tile_size.pmax` on the class, as legacy kernels do."""

    pmax = property(lambda cls: _chip().core.partitions)
    psum_fmax = property(lambda cls: _chip().core.psum_bank_bytes // 4)
    gemm_stationary_fmax = property(lambda cls: _chip().core.tensor.stationary_fmax)
    gemm_moving_fmax = property(lambda cls: _chip().core.tensor.moving_fmax_fp32)
    bn_stats_fmax = property(lambda cls: 512)
    psum_min_align = property(lambda cls: _chip().core.psum_bank_bytes)
    sbuf_min_align = property(lambda cls: _chip().core.sbuf_align_bytes)
    total_available_sbuf_size = property(
        lambda cls: _chip().core.sbuf_usable_bytes_per_partition)


class tile_size(metaclass=_TileSizes):
    """Legacy hardware tile sizes of the target chip (class-level properties)."""

    @property
    def pmax(self):
        return type(self).pmax

    @property
    def psum_fmax(self):
        return type(self).psum_fmax

    @property
    def gemm_stationary_fmax(self):
        return type(self).gemm_stationary_fmax

    @property
    def gemm_moving_fmax(self):
        return type(self).gemm_moving_fmax

    @property
    def bn_stats_fmax(self):
        return type(self).bn_stats_fmax

    @property
    def psum_min_align(self):
        return type(self).psum_min_align

    @property
    def sbuf_min_align(self):
        return type(self).sbuf_min_align

    @property
    def total_available_sbuf_size(self):
        return type(self).total_available_sbuf_size


from .compute import *  # noqa: E402,F401,F403 - compute functions (legacy/compute.py)
