"""Tile and block grids (NKI 0.7): `nl.tiles`, `nl.blocks`, `nl.alloc_tiles`,
`nl.alloc_blocks` and the views they return, `NkiGrid` / `NkiTileGrid` / `NkiBlockGrid`.

The documented model (docs/nki: nki.language.tiles, blocks, alloc_tiles, alloc_blocks,
NkiGrid, NkiTileGrid, NkiBlockGrid; tutorials "Tile-grid fundamentals" and
"Block-grid fundamentals"):
- `tile_shape` (rank >= 2) applies to the trailing dimensions of a tensor; the leading
  dimensions stay untiled (one grid coordinate per slab). A grid's `shape` counts tiles
  (blocks for a block grid) per coordinate; the last tile or block along a dimension
  may be partial and is clamped to the exact extent (`element_shape`, `is_remainder`).
- `blocks` groups `block_shape` tiles per block: `shape` counts blocks, `tile_shape`
  stays the compute grain, `index_step_elements` is tile_shape * block_shape.
- Indexing a grid with an int consumes that coordinate, a slice keeps it; the result is
  a grid of the same kind. An int on an untiled dimension also drops that element
  dimension (a slab). Views allocate nothing and move nothing.
- `.data` is the selection as one NkiTensor operand for nki.isa instructions, when one
  access pattern represents it exactly (`is_data_representable`).
- `alloc_tiles` / `alloc_blocks` allocate one backing tensor: in HBM with the compact
  logical extent (`element_shape`), in SBUF/PSUM with a dense rank-two capacity layout.

The capacity layout is trnsim's reading of "dense rank-two": a 2-D on-chip tensor of
tile_shape[0] partitions whose free dimension holds one full tile after another, in
row-major order of tile coordinates (untiled leading dimensions count as coordinates
too), each tile row-major over tile_shape[1:]; a partial tile still takes a full tile's
room. So element e of the grid lives at
    partition e[k] % t[0]
    free      L(e) * prod(t[1:]) + rowmajor(e[k+1:] % t[1:])
with k the first tiled dimension and L(e) the row-major index of e's tile coordinate.
A selection is representable when those addresses are affine in its element indices
with the partition dimension first (e.g. one tile, or a full row of full tiles).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ...language.tensors import ndarray
from ...machine.errors import NkiValidationError
from ...machine.tensor import MemoryRegion, NKIObject, NkiTensor, as_region


def _shape_arg(value, role: str, api: str, minimum: int = 1) -> tuple:
    if not isinstance(value, tuple) or not all(type(v) is int for v in value):
        raise TypeError(f"{api}: {role} must be a tuple of Python ints, got {value!r}")
    if any(v <= 0 for v in value):
        raise ValueError(f"{api}: {role} {value} must have positive entries")
    if len(value) < minimum:
        raise ValueError(f"{api}: {role} {value} needs at least {minimum} dimensions")
    return value


class _Store:
    """The storage behind a grid: `tensor` plus how logical elements map onto it."""

    def __init__(self, tensor: NkiTensor, element_shape: tuple, capacity_tile=None):
        self.tensor = tensor
        self.element_shape = tuple(element_shape)
        self.capacity_tile = capacity_tile  # None: tensor has the logical shape

    def _flat(self, lo, hi) -> np.ndarray:
        """Storage element offsets (partition * row_elems + free) of the box [lo, hi)."""
        t = self.capacity_tile
        n, k = len(self.element_shape), len(self.element_shape) - len(t)
        full = tuple(self.element_shape[:k]) + tuple(
            -(-e // s) for e, s in zip(self.element_shape[k:], t))
        idx = np.ix_(*[np.arange(a, b) for a, b in zip(lo, hi)])
        coord = [idx[d] if d < k else idx[d] // t[d - k] for d in range(n)]
        within = [idx[d] % t[d - k] for d in range(k, n)]
        lin = 0
        for d in range(n):
            lin = lin * full[d] + coord[d]
        free = 0
        for d in range(1, len(t)):
            free = free * t[d] + within[d]
        free = lin * math.prod(t[1:]) + free
        return within[0] * self.tensor.row_elems + free

    def view(self, lo, hi, drop) -> Optional[NkiTensor]:
        """The NkiTensor for the box [lo, hi) with the dims in `drop` removed, or None
        when no single access pattern represents it."""
        n = len(self.element_shape)
        if self.capacity_tile is None:
            key = tuple(lo[d] if d in drop else slice(lo[d], hi[d]) for d in range(n))
            return self.tensor[key]
        k = n - len(self.capacity_tile)
        keep = [d for d in range(n) if d not in drop]
        if keep[0] != k:  # the partition dimension must come first
            return None
        flat = self._flat(lo, hi).reshape([hi[d] - lo[d] for d in keep])
        shape = flat.shape
        origin = int(flat.reshape(-1)[0])
        strides = []
        for ax, size in enumerate(shape):
            if size == 1:
                strides.append(self.tensor.row_elems if ax == 0 else 1)
                continue
            step = [0] * len(shape)
            step[ax] = 1
            strides.append(int(flat[tuple(step)]) - origin)
        grids = np.indices(shape)
        expect = origin + sum(g * s for g, s in zip(grids, strides))
        if not np.array_equal(expect, flat):
            return None
        if len(shape) > 1 and shape[0] > 1 and strides[0] != self.tensor.row_elems:
            return None
        return self.tensor._derive(shape, tuple(strides), offset=self.tensor.offset + origin)


class NkiGrid(NKIObject):
    """Base class of tensor views organized into tiles (NkiTileGrid) or blocks
    (NkiBlockGrid); made by nl.tiles / nl.blocks / nl.alloc_tiles / nl.alloc_blocks."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)

    @classmethod
    def _make(cls, store: _Store, lo, hi, drop, tile_shape, block_shape=None):
        g = cls.__new__(cls)
        g._store, g._lo, g._hi = store, tuple(lo), tuple(hi)
        g._drop = frozenset(drop)
        g._tile = tuple(tile_shape)
        g._block = None if block_shape is None else tuple(block_shape)
        k = len(lo) - len(tile_shape)
        cell = g._cell()
        # grid coordinates: (element dim, step); untiled dims step 1, minus consumed ones
        g._coords = [(d, 1) for d in range(k) if d not in g._drop] + [
            (k + j, cell[j]) for j in range(len(tile_shape))]
        g._consumed = set()
        return g

    def _cell(self) -> tuple:
        if self._block is None:
            return self._tile
        return tuple(t * b for t, b in zip(self._tile, self._block))

    # -- attributes -----------------------------------------------------------
    @property
    def buffer(self) -> MemoryRegion:
        return self._store.tensor.buffer

    @property
    def dtype(self):
        return self._store.tensor.dtype

    @property
    def tile_shape(self) -> tuple:
        return self._tile

    @property
    def shape(self) -> tuple:
        return tuple(-(-(self._hi[d] - self._lo[d]) // s) for d, s in self._live_coords())

    @property
    def element_shape(self) -> tuple:
        return tuple(self._hi[d] - self._lo[d] for d in range(len(self._lo))
                     if d not in self._drop)

    @property
    def index_step_elements(self) -> tuple:
        return tuple(s for _, s in self._live_coords())

    @property
    def is_remainder(self) -> bool:
        """Whether the selection holds a partial (clamped) tile or block."""
        k = len(self._lo) - len(self._tile)
        return any((self._hi[k + j] - self._lo[k + j]) % c
                   for j, c in enumerate(self._cell()))

    @property
    def is_data_representable(self) -> bool:
        return self._store.view(self._lo, self._hi, self._drop) is not None

    @property
    def data(self) -> NkiTensor:
        v = self._store.view(self._lo, self._hi, self._drop)
        if v is None:
            raise NkiValidationError(
                f"grid selection {self.element_shape} of a {self.buffer} tile grid cannot be "
                "one tensor operand (no single access pattern with the partition dimension "
                "first covers it; check is_data_representable, and move it tile by tile)",
                op="NkiGrid.data")
        return v

    def _live_coords(self):
        return [c for i, c in enumerate(self._coords) if i not in self._consumed]

    # -- indexing ---------------------------------------------------------------
    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        live = [i for i in range(len(self._coords)) if i not in self._consumed]
        if len(key) > len(live):
            raise IndexError(f"too many indices ({len(key)}) for a grid of shape {self.shape}")
        lo, hi = list(self._lo), list(self._hi)
        drop, consumed = set(self._drop), set(self._consumed)
        for k, ci in zip(key, live):
            d, step = self._coords[ci]
            count = -(-(hi[d] - lo[d]) // step)
            if isinstance(k, slice):
                a, b, s = k.indices(count)
                if s != 1:
                    raise IndexError("grid slices take step 1")
                b = max(a, b)
                if a == b:
                    raise IndexError(f"empty grid slice {k} of {count} coordinates")
                lo[d], hi[d] = lo[d] + a * step, min(lo[d] + b * step, hi[d])
            elif hasattr(k, "__index__") and not isinstance(k, bool):
                i = k.__index__()
                i = i + count if i < 0 else i
                if not 0 <= i < count:
                    raise IndexError(f"grid index {k} out of range for {count} coordinates")
                lo[d], hi[d] = lo[d] + i * step, min(lo[d] + (i + 1) * step, hi[d])
                consumed.add(ci)
                if step == 1 and d < len(lo) - len(self._tile):
                    drop.add(d)
            else:
                raise TypeError(f"grid index {k!r}: use ints and slices")
        g = type(self)._make(self._store, lo, hi, drop, self._tile, self._block)
        # coordinates of the new grid: the old ones that are still live
        g._coords = [c for i, c in enumerate(self._coords) if i not in consumed]
        return g

    def __repr__(self) -> str:
        blk = f", block_shape={self._block}" if self._block is not None else ""
        return (f"{type(self).__name__}(shape={self.shape}, tile_shape={self._tile}{blk}, "
                f"element_shape={self.element_shape}, {self.dtype}, {self.buffer})")


class NkiTileGrid(NkiGrid):
    """A tensor view navigated in tile coordinates (see nl.tiles)."""


class NkiBlockGrid(NkiGrid):
    """A tensor view navigated in block coordinates: each block groups `block_shape`
    tiles (see nl.blocks)."""

    @property
    def block_shape(self) -> tuple:
        return self._block


def _region(source, api: str):
    """(store, lo, hi, drop, tile_shape) of a tensor or grid source."""
    if isinstance(source, NkiGrid):
        return source._store, source._lo, source._hi, source._drop, source._tile
    if isinstance(source, NkiTensor):
        store = _Store(source, source.shape)
        return store, (0,) * source.ndim, source.shape, frozenset(), None
    raise TypeError(f"{api}: source must be an NkiTensor, NkiTileGrid or NkiBlockGrid, got "
                    f"{type(source).__name__}")


def _tile_arg(tile_shape, inherited, live_rank: int, api: str) -> tuple:
    if tile_shape is None:
        if inherited is None:
            raise ValueError(f"{api}: tile_shape is required when source is a tensor")
        return inherited
    t = _shape_arg(tile_shape, "tile_shape", api, minimum=2)
    if len(t) > live_rank:
        raise ValueError(f"{api}: tile_shape {t} has more dimensions than the source "
                         f"({live_rank})")
    return t


def tiles(source, *, tile_shape: Optional[tuple] = None) -> NkiTileGrid:
    """A grid of `tile_shape` tiles over `source` (a tensor, or a tile/block grid whose
    selection is re-tiled; tile_shape defaults to the grid's)."""
    store, lo, hi, drop, inherited = _region(source, "tiles")
    t = _tile_arg(tile_shape, inherited, len(lo) - len(drop), "tiles")
    return NkiTileGrid._make(store, lo, hi, drop, t)


def blocks(source, *, tile_shape: Optional[tuple] = None, block_shape: tuple) -> NkiBlockGrid:
    """A grid of blocks, each `block_shape` tiles of `tile_shape` (tile_shape defaults
    to the source grid's)."""
    store, lo, hi, drop, inherited = _region(source, "blocks")
    t = _tile_arg(tile_shape, inherited, len(lo) - len(drop), "blocks")
    b = _shape_arg(block_shape, "block_shape", "blocks")
    if len(b) != len(t):
        raise ValueError(f"blocks: block_shape {b} must have the rank of tile_shape {t}")
    return NkiBlockGrid._make(store, lo, hi, drop, t, b)


def _alloc(api, tile_shape, element_shape, buffer, dtype, address, name):
    t = _shape_arg(tile_shape, "tile_shape", api, minimum=2)
    e = _shape_arg(element_shape, "element_shape", api)
    if len(t) > len(e):
        raise ValueError(f"{api}: tile_shape {t} has more dimensions than element_shape {e}")
    if not isinstance(buffer, MemoryRegion):
        raise TypeError(f"{api}: buffer must be an NKI MemoryRegion (nl.sbuf, nl.psum, "
                        f"nl.shared_hbm, ...), got {buffer!r}")
    region = as_region(buffer)
    if region.space == "hbm":
        store = _Store(ndarray(e, dtype, region, name, address), e)
    else:
        k = len(e) - len(t)
        n_tiles = math.prod(e[:k]) * math.prod(-(-x // s) for x, s in zip(e[k:], t))
        backing = ndarray((t[0], n_tiles * math.prod(t[1:])), dtype, region, name, address)
        store = _Store(backing, e, capacity_tile=t)
    return store, t, e


def alloc_tiles(*, tile_shape: tuple, element_shape: tuple, buffer: MemoryRegion, dtype: str,
                address: Optional[tuple] = None, name: str = "") -> NkiTileGrid:
    """New uninitialized storage for `element_shape` elements as a grid of tiles (HBM:
    the compact logical extent; SBUF/PSUM: the capacity layout, module docstring)."""
    store, t, e = _alloc("alloc_tiles", tile_shape, element_shape, buffer, dtype, address,
                         name)
    return NkiTileGrid._make(store, (0,) * len(e), e, (), t)


def alloc_blocks(*, tile_shape: tuple, block_shape: tuple, element_shape: tuple,
                 buffer: MemoryRegion, dtype: str, address: Optional[tuple] = None,
                 name: str = "") -> NkiBlockGrid:
    """alloc_tiles' storage, navigated in blocks of `block_shape` tiles."""
    b = _shape_arg(block_shape, "block_shape", "alloc_blocks")
    if len(b) != len(_shape_arg(tile_shape, "tile_shape", "alloc_blocks", minimum=2)):
        raise ValueError(f"alloc_blocks: block_shape {b} must have the rank of tile_shape "
                         f"{tile_shape}")
    store, t, e = _alloc("alloc_blocks", tile_shape, element_shape, buffer, dtype, address,
                         name)
    return NkiBlockGrid._make(store, (0,) * len(e), e, (), t, b)


def grid_like(x: NkiGrid, dtype=None, buffer=None, name=""):
    """New storage shaped like the grid selection `x`, as a grid of the same kind and
    tile (block) shape (nl.empty_like on a grid). When one tensor can hold the selection
    (in HBM, or on chip with the partition dimension first and at most pmax partitions)
    that tensor backs the grid, so the whole selection stays one operand (`.data`);
    otherwise the storage is alloc_tiles' / alloc_blocks' capacity layout."""
    from .core import tile_size
    region = as_region(x.buffer if buffer is None else buffer)
    dtype = x.dtype if dtype is None else dtype
    shape = x.element_shape
    tile = x.tile_shape
    plain = region.space == "hbm" or (len(shape) == len(tile) and shape[0] <= tile_size.pmax)
    if plain:
        t = ndarray(shape, dtype, region, name)
        if isinstance(x, NkiBlockGrid):
            return blocks(t, tile_shape=tile, block_shape=x.block_shape)
        return tiles(t, tile_shape=tile)
    if isinstance(x, NkiBlockGrid):
        return alloc_blocks(tile_shape=tile, block_shape=x.block_shape, element_shape=shape,
                            buffer=region, dtype=dtype, name=name)
    return alloc_tiles(tile_shape=tile, element_shape=shape, buffer=region, dtype=dtype,
                       name=name)


__all__ = ["NkiGrid", "NkiTileGrid", "NkiBlockGrid", "tiles", "blocks", "alloc_tiles",
           "alloc_blocks"]
