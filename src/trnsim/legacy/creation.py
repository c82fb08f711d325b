"""`nl.ndarray`: legacy tensors as core tensors (a block tensor's blocks laid out inside
each partition, or, in PSUM, one logical tile each). A module of its own, not part of
`language.py`, because the pending results of `ops.py` allocate their tiles with it and
`language.py` imports `ops.py`."""
from __future__ import annotations

import math

from ..isa import without_handles as core_isa
from ..machine import runtime
from ..machine.tensor import MemoryRegion, NkiTensor
from ..numerics.dtypes import as_dtype
from .compiler import BlockTensor
from .ops import flush
from .tensor import LTensor, par_dim

sbuf = MemoryRegion.sbuf


def ndarray(shape, dtype, *, buffer=None, name="", **kwargs):
    """A tensor; on chip, dims before `nl.par_dim(n)` are block dimensions laid out
    inside each partition."""
    run = runtime.active_run()
    flush(run)
    buffer = sbuf if buffer is None else buffer
    # nki.compiler allocators (legacy/compiler.py); (a failed hasattr raises and catches
    # an AttributeError: not asked of the plain buffers)
    if type(buffer) is not MemoryRegion and hasattr(buffer, "legacy_ndarray"):
        return buffer.legacy_ndarray(shape, dtype, name)
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    par = None
    for i, s in enumerate(shape):
        if isinstance(s, par_dim):
            par = i
            break
    dims = tuple(map(int, shape))
    region = buffer if isinstance(buffer, MemoryRegion) else MemoryRegion(str(buffer))
    if region.space == "hbm" or not par:
        return LTensor(run.new_tensor(dims, dtype, region, name))
    blocks, p, free = dims[:par], dims[par], dims[par + 1:]
    if region.space == "psum":
        return _logical_tiles(run, blocks, p, free, dtype, region, name)
    inner = math.prod(free)
    core = run.new_tensor((p, math.prod(blocks) * inner), dtype, region, name,
                          block_bytes=inner * as_dtype(dtype).itemsize, declared_shape=dims)
    block_strides = [inner * math.prod(blocks[i + 1:]) for i in range(len(blocks))]
    free_strides = [math.prod(free[i + 1:]) for i in range(len(free))]
    view = NkiTensor(dims, core.dtype, core.storage, core.buffer, core.name,
                     strides=tuple(block_strides) + (core.row_elems,) + tuple(free_strides),
                     offset=0)
    return LTensor(view, par_axis=par)


class _LazyTiles(dict):
    """Logical tile index -> tile, each allocated (and, once the tensor is filled,
    initialized) when first used."""

    def __init__(self, make):
        super().__init__()
        self.make = make
        self.fill = None  # the value of nl.zeros / nl.full
        self.born = -1  # the allocation id of the first tile (made with the tensor)

    def __missing__(self, idx):
        if self.born >= 0:  # (not the first tile, made with the tensor)
            runtime.active_run().untracked_changes.append(self.born)
        tile = self[idx] = self.make(idx)
        if self.fill is not None:
            core_isa.memset(dst=tile.core, value=self.fill)
        return tile


def _logical_tiles(run, blocks, p, free, dtype, region, name):
    """An automatically allocated PSUM tensor with block dimensions: each block is a
    *logical* tile ("the block dimension describes how many (P, F) logical tiles this
    tensor has, but does not reflect the number of physical tiles being allocated", the
    nki.compiler docs) with its own buffer, allocated when the kernel first uses it (and,
    with compiler liveness, freed after its last use: legacy/jit.py). Eight 2 KiB banks
    could not hold the tensors SDK kernels declare (`nl.ndarray((n_q, n_kv,
    nl.par_dim(128), 512), buffer=nl.psum)`) all at once. Blocks are indexed with
    integers, as with direct allocation."""
    free = tuple(free)

    def make(idx):
        label = f"{name or 'psum'}{list(idx)}"
        return LTensor(run.new_tensor((p,) + free, dtype, region, label))

    tiles = _LazyTiles(make)
    first = tiles[(0,) * len(blocks)]  # the first block gives the tensor its dtype
    tiles.born = first.core.storage.alloc
    return BlockTensor(blocks, p, free, tiles, name)
