"""Legacy tensors and tiles: a core NkiTensor seen with legacy indexing.

A legacy tensor may have *block* dimensions before its partition dimension
(`nl.ndarray((4, nl.par_dim(128), 512))`): they are laid out inside each partition, so a
block tile is one core tensor whose partition dim is not first. Indexing a legacy tensor
gives an `Access` (the tensor plus one affine Index per dim), resolved into a core view
when an instruction runs, after the instruction's mask has narrowed its ranges.
"""
from __future__ import annotations

import math

import numpy as np

from ..machine.errors import NkiValidationError
from ..machine.tensor import NkiTensor, is_plain, slice_in_range, unit_slice_bounds
from .indexing import (Axis, Index, Predicate, first_axes, front_dims, grid_axes,
                       kept_2d, key_to_indices, partition_kept, pattern_of, resolve,
                       resolve_whole)


class par_dim:
    """`nl.par_dim(n)`: marks the partition dimension in an on-chip shape."""

    def __init__(self, size):
        self.size = int(size)

    def __index__(self):
        return self.size

    def __int__(self):
        return self.size

    def __repr__(self):
        return f"par_dim({self.size})"


class Operators:
    """Python operators on tiles map to nki.language functions (no partition broadcast)."""

    __array_ufunc__ = None  # `np.float32(2) * tile` defers to the tile's reflected operator

    def _nl(self, name, *args):
        from . import language
        return getattr(language, name)(*args)

    def __add__(self, o): return self._nl("add", self, o)
    def __radd__(self, o): return self._nl("add", o, self)
    def __sub__(self, o): return self._nl("subtract", self, o)
    def __rsub__(self, o): return self._nl("subtract", o, self)
    def __mul__(self, o): return self._nl("multiply", self, o)
    def __rmul__(self, o): return self._nl("multiply", o, self)
    def __truediv__(self, o): return self._nl("divide", self, o)
    def __rtruediv__(self, o): return self._nl("divide", o, self)
    def __pow__(self, o): return self._nl("power", self, o)
    def __neg__(self): return self._nl("negative", self)
    def __and__(self, o): return self._nl("bitwise_and", self, o)
    def __or__(self, o): return self._nl("bitwise_or", self, o)
    def __xor__(self, o): return self._nl("bitwise_xor", self, o)
    def __invert__(self): return self._nl("invert", self)
    def __lshift__(self, o): return self._nl("left_shift", self, o)
    def __rshift__(self, o): return self._nl("right_shift", self, o)
    def __lt__(self, o): return self._nl("less", self, o)
    def __le__(self, o): return self._nl("less_equal", self, o)
    def __gt__(self, o): return self._nl("greater", self, o)
    def __ge__(self, o): return self._nl("greater_equal", self, o)
    def __eq__(self, o): return self._nl("equal", self, o)
    def __ne__(self, o): return self._nl("not_equal", self, o)
    __hash__ = object.__hash__


class LTensor(Operators):
    """A legacy tensor (HBM tensor or on-chip tile) over a core NkiTensor `core`."""

    def __init__(self, core: NkiTensor, par_axis: int = 0):
        self.core = core
        self.par_axis = par_axis  # which dim is the partition dim (on chip)

    shape = property(lambda self: self.core.shape)
    dtype = property(lambda self: self.core.dtype)
    buffer = property(lambda self: self.core.buffer)
    name = property(lambda self: self.core.name)
    ndim = property(lambda self: self.core.ndim)
    itemsize = property(lambda self: self.core.dtype.itemsize)

    def __repr__(self):
        return f"LTensor({self.core!r})"

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key) -> "Access":
        if key is ... and type(self) is LTensor and self.core.ndim:
            return self.full()  # `t[...]`: what the general path makes of `t[:, ..., :]`
        if isinstance(key, Predicate):  # operand masking: `t[i_f < 64]`
            return self.full()[key]
        if type(key) is int:  # `blk[k]`: what the general path makes of it, as `blk[k,]`
            key = (key,)
        if type(key) is tuple and is_plain(key):  # no runtime, indirect or advanced index
            view = sizes = None
            if type(self) is LTensor:
                core = self.core
                view = _sliced_view(key, core)
                if view is None:
                    view = _int_key_view(key, core, self.par_axis)
                    if view is None:
                        sizes = _slice_sizes(key, self)
            if view is not None:  # (its indices made when first asked: __getattr__)
                access = object.__new__(Access)
                access.tensor, access._shape, access._view = self, view.shape, view
            elif sizes is not None:
                access = object.__new__(Access)
                access.tensor, access._shape = self, sizes
            else:
                access = Access(self, key_to_indices(key, self.shape))
            access.advanced = False
            access.plain_key = key
            return access
        if type(key) is tuple:
            access = _affine_access(self, key)
            if access is not None:
                return access
        key, dynamic = _dynamic_key(key, self.shape)
        key, indirect, indirect_dim = _indirect_key(key)
        access = Access(self, key_to_indices(key, self.shape), indirect, indirect_dim)
        # advanced indexing (nl.arange / nl.mgrid expressions): the access is an access
        # pattern over an index grid of its own (see compute._reduction_axes)
        access.advanced = any(isinstance(k, Index) and k.terms
                              for k in (key if isinstance(key, tuple) else (key,)))
        if dynamic is not None:
            access.dynamic = dynamic
        return access

    def __setitem__(self, key, value):
        if isinstance(value, Access) and value.__dict__.pop("_accumulated", False) \
                and value.tensor is self:
            return  # the store Python makes after `t[key] += x`: already done in place
        # (an affine key's access made here: what self[key] makes of it)
        target = _affine_access(self, key) if type(self) is LTensor and type(key) is tuple \
            else None
        ops.assign(self[key] if target is None else target, value)

    def __iadd__(self, other):
        ops.accumulate_into(self.full(), other)
        return self

    def full(self) -> "Access":
        """`self[:, ..., :]`: every element, one axis per dim, its own to the shape
        (`_whole_indices`)."""
        if type(self) is LTensor:  # (its shape is its core's: normal ints)
            core = self.core
            return whole_access(self, core, core.shape, core.shape)
        ndim = self.ndim
        shape = self.shape
        if type(self).__getitem__ is not LTensor.__getitem__ or len(shape) != ndim:
            return self[(slice(None),) * ndim]
        return whole_access(self, self.core, shape, None)

    def view_all(self) -> NkiTensor:
        """The whole tensor as a core view (blocks not allowed on chip)."""
        if self.core.on_chip and self.par_axis != 0:
            raise NkiValidationError(
                f"tile {self.name!r} of shape {self.shape} has block dimensions before its "
                "partition dimension; index the blocks before using it as an operand")
        return self.core

    # nt.tensor methods
    def reshape(self, shape):
        return LTensor(self.core.reshape(tuple(shape)))

    def view(self, dtype):
        return LTensor(self.core.view(dtype), self.par_axis)

    def astype(self, dtype):
        from . import language
        return language.copy(self, dtype=dtype)

    def assert_shape(self, shape):
        if tuple(shape) != tuple(self.shape):
            raise NkiValidationError(f"expected shape {tuple(shape)}, tensor has {self.shape}")
        return self

    def broadcast_to(self, shape):
        from . import language
        return language.broadcast_to(self, shape=shape)

    def expand_dims(self, axis):
        return LTensor(self.core.expand_dim(axis), self.par_axis)


def whole_access(tensor: LTensor, core: NkiTensor, shape: tuple, normal) -> "Access":
    """`tensor.full()` of a tensor of `shape` over `core` (as many dims), `normal` its
    shape where known to be a tuple of ints."""
    indices = _WHOLE_INDICES.get(shape)
    if indices is None:
        indices = _whole_indices(shape)
    access = object.__new__(Access)  # (Access(tensor, list(indices)): no indirect index)
    access.tensor, access.indices = tensor, list(indices)
    access.advanced = False
    access.shares_terms = True
    if len(shape) > 1 or not core.on_chip:  # (resolve_shape changes only 1-D tiles)
        access._shape = normal or tuple(map(int, shape))
    access.whole = shape == core.shape
    return access


def _whole_indices(shape: tuple) -> tuple:
    """One Index per dim over the whole of `shape`, each a fresh axis at its position,
    kept per shape: every whole-tile access of a shape shares them (they never change,
    and only a mask's own axes, never these, are matched by identity: ops.Grid)."""
    ndim = len(shape)
    indices = tuple(Index.owning({Axis(n, d, ndim): 1}, 0) for d, n in enumerate(shape))
    if len(_WHOLE_INDICES) >= 1024:
        _WHOLE_INDICES.clear()
    _WHOLE_INDICES[shape] = indices
    return indices


_WHOLE_INDICES: dict = {}  # shape -> `_whole_indices(shape)`
_NO_TERMS: dict = {}  # the terms of an int index of an advanced key (never changed: Index)
_CONSTANTS: dict = {}  # int -> its Index over _NO_TERMS, shared (no Index changes once made)


def _sliced_view(key: tuple, core: NkiTensor) -> NkiTensor | None:
    """`core[key]` as `Access.view` makes it for a key of unit-step slices, all in range,
    no longer than the core's rank (a static core of 2 dims or more, or in HBM: what
    `resolve` makes of it is the core's slicing, of the slices' sizes), else None."""
    shape = core.shape
    if core.dyn is not None or len(key) > len(shape) or (len(shape) < 2 and core.on_chip):
        return None
    return core._sliced(key)


def _int_key_view(key: tuple, core: NkiTensor, par_axis: int) -> NkiTensor | None:
    """`resolve(core, key_to_indices(key, core.shape), {}, par_axis)` for a key of ints
    and unit-step slices with int or no bounds (`blk[k, 0:128, 0:512]`, `blk[k]`), every
    index in range and no slice empty, or None for any other key (the general path takes
    it, and raises its errors where it did)."""
    shape = core.shape
    if len(key) > len(shape):
        return None
    sizes, strides, offset = [], [], core.offset
    partition_kept = False  # (indexing.partition_kept: the partition dim is sliced)
    for d, (k, n, s) in enumerate(zip(key, shape, core.strides)):
        if type(k) is int:
            if not 0 <= k < n:
                return None
            offset += k * s
            continue
        bounds = slice_in_range(k, n)
        if bounds is None:
            return None
        start, stop = bounds
        sizes.append(stop - start)
        strides.append(s)
        offset += start * s
        partition_kept = partition_kept or d == par_axis
    for d in range(len(key), len(shape)):  # (the dims past the key: whole)
        if shape[d] <= 0:
            return None
        sizes.append(shape[d])
        strides.append(core.strides[d])
        partition_kept = partition_kept or d == par_axis
    ndim = len(sizes)
    if ndim < 2 and core.on_chip:  # (what resolve keeps of a grid under 2 dims)
        sizes, strides = kept_2d(sizes, strides, core.row_elems, partition_kept)
    elif ndim == 0:
        sizes, strides = [1], [1]
    return NkiTensor.view_of(tuple(sizes), core.dtype, core.storage, core.buffer, core.name,
                             tuple(strides), offset, core.dyn)


def _slice_sizes(key: tuple, tensor: LTensor) -> tuple | None:
    """The shape of `tensor[key]` for a key of unit-step slices with int or no bounds,
    no longer than the tensor's rank (what `key_to_indices` cannot fail on, and whose
    shape `resolve_shape` gives as the slices' sizes), or None for any other key."""
    shape = tensor.core.shape
    if len(key) > len(shape) or (len(shape) < 2 and tensor.core.on_chip):
        return None
    sizes = []
    for k, n in zip(key, shape):
        bounds = unit_slice_bounds(k, n)
        if bounds is None:
            return None
        start, stop = bounds
        sizes.append(stop - start if stop > start else 0)
    return tuple(sizes) + shape[len(key):]


class Access(Operators):
    """`tensor[index...]`: a legacy tensor with one affine Index per dimension."""

    def __init__(self, tensor: LTensor, indices: list[Index], indirect: "Access | None" = None,
                 indirect_dim: int = 0):
        self.tensor, self.indices = tensor, indices
        self.indirect = indirect  # index tile selecting rows of a dim at run time (HBM)
        self.indirect_dim = indirect_dim  # that dim (the dims before it are integers)

    indirect = None
    indirect_dim = 0

    def __getattr__(self, name):
        """(Only asked for attributes an Access does not have.) The indices of a
        plain-key access (LTensor.__getitem__): made when first needed, most loads
        never asking for them (their view is the core's slicing of the key)."""
        if name == "indices":
            key = self.__dict__.get("plain_key")
            if key is not None:
                self.indices = indices = key_to_indices(key, self.tensor.shape)
                return indices
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def axes(self):
        return grid_axes(self.indices)

    _shape = None

    @property
    def shape(self) -> tuple:
        """The access's shape (computed once: its tensor and indices do not change)."""
        if self._shape is None:
            self._shape = resolve_shape(self)
        return self._shape

    @property
    def dtype(self):
        tensor = self.tensor  # (a plain tensor's: its core's, read at once)
        return tensor.core.dtype if type(tensor) is LTensor else tensor.dtype

    @property
    def buffer(self):
        tensor = self.tensor
        return tensor.core.buffer if type(tensor) is LTensor else tensor.buffer

    name = property(lambda self: self.tensor.name)

    operand_mask = None  # `access[predicate]` (operand masking, the legacy mask docs)
    shares_terms = False  # its indices' terms are kept by others too: its Pattern is kept
    _pattern = None
    plain_key = None  # the key of ints and slices it was made from, if it was
    _view = None  # its view, where made with it (a plain key in range: _sliced_view,
    # _int_key_view)
    whole = False  # made by LTensor.full: one axis per dim over all of it
    dynamic = None  # (tensor dim, offset tile Access): a runtime offset (_dynamic_key)

    def __getitem__(self, key):
        if isinstance(key, Predicate):
            # operand masking: the predicate narrows this operand's own axes (its
            # single-axis clauses, matched like an instruction mask: the axis itself, or
            # by grid position an axis of the same size)
            acc = Access(self.tensor, self.indices, self.indirect, self.indirect_dim)
            acc.__dict__.update({k: v for k, v in self.__dict__.items()
                                 if k in ("dynamic", "advanced")})
            acc.operand_mask = key if self.operand_mask is None else self.operand_mask & key
            return acc
        return LTensor(self.view(), self._par_position())[key]

    def pattern(self):
        """The Pattern of its indices where they are shared (made once), else None."""
        p = self._pattern
        if p is None and self.shares_terms:
            p = self._pattern = pattern_of(self.indices)
        return p

    def narrow(self, ranges: dict) -> dict:
        """`ranges` (Axis -> (lo, hi)) further narrowed by this access's operand mask."""
        if self.operand_mask is None:
            return ranges
        grid = ops.Grid((), self.operand_mask)
        if grid.residual is not None:
            raise NkiValidationError("an operand mask must bound each index on its own (e.g. "
                                     "t[i_f < 64]), not relate several indices")
        out = dict(ranges)
        for idx in self.indices:
            for a in idx.terms:
                lo, hi = out.get(a, (0, a.size))
                n0, n1 = grid.span(a.position, a.size, a)
                out[a] = (max(lo, n0), min(hi, n1))
        return out

    def __setitem__(self, key, value):
        LTensor(self.view(), self._par_position())[key] = value

    def _par_position(self) -> int:
        """Where the partition dim of an on-chip tensor lies in this access's view (a
        block tensor indexed by its block only, `t[b]`, keeps its partition dim after
        the remaining block dims); 0 when the partition dim is indexed by an integer."""
        par = self.tensor.par_axis
        if not par or par >= len(self.indices):
            return 0
        pos = [a.position for a, c in self.indices[par].terms.items() if c]
        return min(pos) if pos else 0

    def __iadd__(self, other):
        ops.accumulate_into(self, other)
        self._accumulated = True  # Python then stores the result back: t[key] = self
        return self

    # nt.tensor methods on an indexed tile (`t[i, :, 0].broadcast_to((P, F))`): those of
    # the tile the access views
    ndim = property(lambda self: len(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)

    def _as_tile(self) -> LTensor:
        return LTensor(self.view(), self._par_position())

    def broadcast_to(self, shape):
        return self._as_tile().broadcast_to(shape)

    def astype(self, dtype):
        return self._as_tile().astype(dtype)

    def reshape(self, shape):
        return self._as_tile().reshape(shape)

    def expand_dims(self, axis):
        return self._as_tile().expand_dims(axis)

    def assert_shape(self, shape):
        if tuple(shape) != tuple(self.shape):
            raise NkiValidationError(f"expected shape {tuple(shape)}, tensor has {self.shape}")
        return self

    def view(self, ranges: dict | None = None) -> NkiTensor:
        """The core view over `ranges` (Axis -> (lo, hi)); with a dtype instead
        (`t[...].view(nl.int32)`, the nt.tensor method), the tile reinterpreted."""
        if ranges is not None and not isinstance(ranges, dict):
            return self._as_tile().view(ranges)
        if not ranges and self.operand_mask is None:
            if self.whole:
                core = self.tensor.core
                if core.ndim > 1 or not core.on_chip:  # what `resolve` makes of it
                    return core
            if self._view is not None:
                return self._view
            if self._pattern is not None:  # (an affine or whole access: no runtime or
                # indirect index)
                tensor = self.tensor
                return resolve_whole(tensor.core, self.indices, tensor.par_axis,
                                     self._pattern)
            if self.plain_key is not None:
                core = self.tensor.core
                if core.dyn is None:  # (unit-step slices in bounds: what `resolve` makes)
                    view = core._sliced(self.plain_key)
                    if view is not None:
                        return view
        ranges = ranges or {}
        if self.operand_mask is not None:
            ranges = self.narrow(ranges)
        if self.dynamic is not None:
            return _dynamic_view(self, ranges)
        if self.indirect is not None:
            return self._indirect_view(ranges)
        return resolve(self.tensor.core, self.indices, ranges, self.tensor.par_axis,
                       self.pattern())

    def _indirect_view(self, ranges: dict) -> NkiTensor:
        """`t[idx_tile, ...]` (or `t[b, idx_tile, ...]`): rows of the indexed dim picked by
        the index tile's values at run time (a core vector_select view of the tensor with
        its leading integer-indexed dims fixed), the other dims indexed as usual."""
        d = self.indirect_dim
        (a, _), = self.indices[d].terms.items()
        lo, _hi = ranges.get(a, (0, a.size))
        base = self.tensor.core
        if d:
            base = base[tuple(idx.const for idx in self.indices[:d])]
        base = base.vector_select(0, self.indirect.view(ranges))
        first = Index({a: 1}, -(a.start + lo))
        return resolve(base, [first] + list(self.indices[d + 1:]), ranges,
                       self.tensor.par_axis)

    def __add__(self, o):
        if isinstance(o, Index):  # `offsets[0, i] + nl.arange(n)[None, :]`: a runtime offset
            return DynamicOffset(self, o)
        return super().__add__(o)

    def __repr__(self):
        return f"Access({self.tensor.name!r}, {self.indices})"


class DynamicOffset:
    """`tile[...] + index`: the runtime value of a one-element tile plus an affine index,
    indexing one dimension of a tensor (legacy dynamic copies, `tensor_copy_dynamic_*`)."""

    def __init__(self, value: Access, index: Index):
        self.value, self.index = value, index

    def __add__(self, o):
        return DynamicOffset(self.value, self.index + o)

    __radd__ = __add__

    def __sub__(self, o):
        return DynamicOffset(self.value, self.index - o)


def _dynamic_key(key, shape):
    """Take a runtime offset out of a legacy key: a DynamicOffset on any dim, or a
    one-element tile on a dim other than the first. Returns the key with that dim
    indexed by its static part, and (tensor dim, offset tile Access) or None."""
    key = key if isinstance(key, tuple) else (key,)
    found = [(i, k) for i, k in enumerate(key) if isinstance(k, DynamicOffset) or (
        i > 0 and isinstance(k, (LTensor, Access)) and not _gathers(key, i))]
    if not found:
        return key, None
    if len(found) > 1:
        raise NkiValidationError("a runtime (tile-valued) offset may index one dimension only")
    (i, k), = found
    value, static = (k.value, k.index) if isinstance(k, DynamicOffset) else (k, Index({}, 0))
    if isinstance(value, LTensor):
        value.core  # noqa: B018 - a pending offset tile runs first
        value = LTensor(value.core).full()
    dim = i
    if Ellipsis in key[:i]:
        dim = i + len(shape) - len(key) + 1
    return key[:i] + (static,) + key[i + 1:], (dim, value)


def _dynamic_view(access: Access, ranges: dict) -> NkiTensor:
    """The static view of `access` with its runtime offset attached (a core scalar
    Indirect: the offset tile's value, in elements of the indexed dim)."""
    from ..machine.tensor import Indirect
    dim, value = access.dynamic
    core = access.tensor.core
    if core.dyn is not None or access.indirect is not None:
        raise NkiValidationError("a runtime offset cannot be combined with another runtime "
                                 "index on the same tensor")
    off = value.view()
    if off.size != 1:
        raise NkiValidationError(f"a runtime offset must be a one-element tile, got shape "
                                 f"{off.shape}")
    view = resolve(core, access.indices, ranges, access.tensor.par_axis)
    hi = access.indices[dim].bounds(ranges)[1]
    view.dyn = Indirect(off, core.strides[dim], "scalar", dim, core.shape[dim] - hi)
    return view


def resolve_shape(access: Access) -> tuple:
    """The shape of `access`: the size of the first axis at each grid position (as
    `grid_axes`), kept at least 2-D on chip."""
    core = access.tensor.core  # (a pending tensor runs here, whatever the shape)
    pattern = access.pattern()
    if pattern is not None:
        ndim, shape = pattern.ndim, pattern.sizes
        if ndim >= 2:
            return shape
        shape = list(shape)
    else:
        first, ndim = first_axes([idx.terms for idx in access.indices])
        shape = [1] * ndim
        for p, a in first.items():
            shape[p] = a.size
    if ndim < 2 and core.on_chip:
        front = front_padding(access, ndim)
        shape = [1] * front + shape + [1] * (2 - ndim - front)
    return tuple(shape) or (1,)


def front_padding(access: Access, ndim: int | None = None) -> int:
    """How many dims of size 1 `resolve_shape` puts before the axes of an on-chip access
    of fewer than 2 grid dims (`ndim`, read off its indices where not given): an axis at
    grid position p is then dim p + that of its shape (`row[0, :]` of a [2, F] tile is
    [1, F], its axis at position 0; none where the one axis indexes the partition dim:
    `t[:, k]` is [P, 1])."""
    if ndim is None:
        pattern = access.pattern()
        ndim = pattern.ndim if pattern is not None else \
            first_axes([idx.terms for idx in access.indices])[1]
    if ndim >= 2 or not access.tensor.core.on_chip:
        return 0
    return front_dims(ndim, partition_kept(access.indices, access.tensor.par_axis))


def _affine_access(tensor: LTensor, key: tuple) -> Access | None:
    """`tensor[key]` for a key that indexes each dim with an int or an Index, one of
    them an arange expression (`t[k, i_p, 128 * m + i_f]`: advanced indexing, nothing
    else), with its Pattern (what the general path makes of it, no runtime or indirect
    index); None for any other key."""
    shape = tensor.core.shape if type(tensor) is LTensor else tensor.shape
    if len(key) != len(shape):
        return None
    indices, ids = [], []
    varying = False
    for k in key:
        if type(k) is Index:
            terms = k.terms
            if terms:
                varying = True
            indices.append(k)
        elif type(k) is int:
            terms = _NO_TERMS
            idx = _CONSTANTS.get(k)
            if idx is None:
                if len(_CONSTANTS) >= 4096:
                    _CONSTANTS.clear()
                idx = _CONSTANTS[k] = Index.owning(terms, k)
            indices.append(idx)
        else:
            return None
        ids.append(id(terms))
    if not varying:
        return None
    access = object.__new__(Access)  # (Access(tensor, indices), its fields set here)
    access.tensor, access.indices, access.indirect, access.indirect_dim = tensor, indices, None, 0
    access.advanced = True
    access.shares_terms = True
    pattern = access._pattern = pattern_of(indices, tuple(ids))
    if pattern is not None and pattern.ndim >= 2 and type(tensor) is LTensor:
        # what resolve_shape gives (its tensor's core there already: nothing runs)
        access._shape = pattern.sizes
    return access


def _is_int_key(k) -> bool:
    return isinstance(k, (int, np.integer)) or (isinstance(k, Index) and not k.terms)


def _gathers(key, i) -> bool:
    """Whether the tile at key[i] (i > 0) is a gather index (indirect DMA rows of dim i,
    the dims before it fixed by integers: `t[b, idx_tile, i_f]`) rather than a one-element
    runtime offset."""
    k = key[i]
    return all(_is_int_key(j) for j in key[:i]) and math.prod(k.shape) > 1


def _indirect_key(key):
    """Split an index tile off a legacy key (`t[idx_tile, i_f]`, `t[idx[i_p, 0], i_f]`,
    `t[b, idx_tile, i_f]`): it indexes the first dim not fixed by an integer. Returns the
    key with that dim indexed by the tile's partition axis, the tile as an Access, and
    the dim."""
    key = key if isinstance(key, tuple) else (key,)
    tiles = [i for i, k in enumerate(key) if isinstance(k, (LTensor, Access))]
    if not tiles:
        return key, None, 0
    d = tiles[0]
    if len(tiles) > 1 or not all(_is_int_key(j) for j in key[:d]):
        raise NkiValidationError("an index tile (indirect indexing) may index only the "
                                 "first dimension not fixed by an integer index")
    idx = key[d]
    if isinstance(idx, LTensor):
        idx.core  # noqa: B018 - a pending index tile runs first
        idx = LTensor(idx.core).full()
    axis = next((a for a in grid_axes(idx.indices) if a.position == 0), None)
    if axis is None:
        raise NkiValidationError("an index tile must have its partition dimension indexed")
    return key[:d] + (Index({axis: 1}),) + key[d + 1:], idx, d


def as_predicate(mask) -> Predicate | None:
    """A legacy `mask=`: an affine predicate, None, or a compile-time constant bool
    (`mask=True` runs the instruction unmasked; `mask=False` does not run it)."""
    if mask is None or isinstance(mask, Predicate):
        return mask
    if isinstance(mask, (bool, np.bool_)):
        return None if mask else Predicate.never()
    raise NkiValidationError(f"mask must be an affine predicate such as (i_p < 64) & "
                             f"(i_f < 256), got {mask!r}")


def numel(shape) -> int:
    return math.prod(shape)


__all__ = ["LTensor", "Access", "par_dim"]

# (ops.py imports this module: imported last, not inside the methods that use it, where
# the import machinery would run on every call)
from . import ops  # noqa: E402
