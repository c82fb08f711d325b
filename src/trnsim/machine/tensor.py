"""NkiTensor: a view (shape, strides, offset, dtype) onto a Storage.

Element address = offset + sum(strides * index), in elements of the view's dtype.
On chip, an element address e lives in partition `storage.partition + e // row_elems`
at byte `storage.address + (e % row_elems) * itemsize`, where row_elems is the
storage's bytes per partition over the itemsize; so a (P, F...) tensor has partition
stride prod(F), as in NKI. In HBM, e is at byte e * itemsize of the tensor's buffer.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np

from ..numerics.dtypes import DType, as_dtype
from .errors import NkiValidationError, OutOfBoundsError, describe


class NKIObject:
    """Base class for NKI kernel dataclasses and configuration objects."""

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)


class MemoryRegion(Enum):
    sbuf = "sbuf"
    psum = "psum"
    private_hbm = "private_hbm"
    shared_hbm = "shared_hbm"

    def __str__(self) -> str:
        return self.value

    @property
    def space(self) -> str:
        return self.value if self.value in ("sbuf", "psum") else "hbm"


def as_region(buffer) -> MemoryRegion:
    if isinstance(buffer, MemoryRegion):
        return buffer
    name = str(buffer)
    if name == "hbm":
        return MemoryRegion.private_hbm
    try:
        return MemoryRegion(name)
    except ValueError:
        raise NkiValidationError(f"unknown buffer {buffer!r}; use nl.sbuf, nl.psum, "
                                 "nl.hbm, nl.private_hbm or nl.shared_hbm") from None


class DynamicSlice:
    """`nl.ds(start, size)`: `size` elements from `start` (an int or a register)."""

    def __init__(self, start, size, step=1):
        self.start, self.size, self.step = start, size, step

    def __repr__(self):
        return f"ds({self.start}, {self.size})"


def _int(v) -> int:
    """An index that may be a virtual register or a 1-element value."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    if hasattr(v, "__index__"):
        return v.__index__()
    raise NkiValidationError(f"index {v!r} is not an integer")


class Indirect:
    """A runtime offset: `index` (an SBUF tensor) times `scale` elements, added to
    every element ('scalar') or per position along view dim 0 ('vector')."""

    def __init__(self, index: "NkiTensor", scale: int, kind: str, dim: int):
        self.index, self.scale, self.kind, self.dim = index, scale, kind, dim


class NkiTensor(NKIObject):
    """NKI tensor with shape-based view operations sharing one storage."""

    def __init__(self, shape, dtype, storage, buffer=MemoryRegion.sbuf, name: str = "",
                 *, strides=None, offset: int = 0, indirect: Indirect | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype: DType = as_dtype(dtype)
        self.storage = storage
        self.buffer = as_region(buffer)
        self.name = name or (storage.name if storage is not None else "")
        self.strides = tuple(strides) if strides is not None else _row_major(self.shape)
        self.offset = int(offset)
        self.dyn = indirect

    # -- basic properties -------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def on_chip(self) -> bool:
        return self.buffer.space != "hbm"

    @property
    def space(self) -> str:
        return self.buffer.space

    @property
    def row_elems(self) -> int:
        """Elements of this view's dtype per partition (on chip) or in total (HBM)."""
        return self.storage.row_bytes // self.dtype.itemsize

    @property
    def reinterpret_cast(self):
        return self.view

    def __repr__(self) -> str:
        return f"NkiTensor({describe(self)}, strides={self.strides}, offset={self.offset})"

    def __len__(self) -> int:
        return self.shape[0]

    def _derive(self, shape, strides, offset=None, dtype=None, indirect="same"):
        return NkiTensor(shape, dtype or self.dtype, self.storage, self.buffer, self.name,
                         strides=strides, offset=self.offset if offset is None else offset,
                         indirect=self.dyn if indirect == "same" else indirect)

    def _fail(self, msg: str, cls=NkiValidationError):
        raise cls(f"{msg} (tensor {describe(self)})")

    def _dim(self, dim: int) -> int:
        d = dim + self.ndim if dim < 0 else dim
        if not 0 <= d < self.ndim:
            self._fail(f"dimension {dim} out of range for a {self.ndim}-D tensor")
        return d

    def _keep_partition_dim(self, dim: int, what: str):
        if self.on_chip and dim == 0:
            self._fail(f"{what} cannot change the partition dimension (dim 0) of an "
                       "on-chip tensor")

    # -- indexing ---------------------------------------------------------
    def __getitem__(self, key) -> "NkiTensor":
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            fill = self.ndim - (len(key) - 1)
            key = key[:i] + (slice(None),) * fill + key[i + 1:]
        if len(key) > self.ndim:
            self._fail(f"too many indices ({len(key)}) for a {self.ndim}-D tensor")
        key = key + (slice(None),) * (self.ndim - len(key))
        shape, strides, offset, drop = [], [], self.offset, []
        for d, k in enumerate(key):
            n, s = self.shape[d], self.strides[d]
            if isinstance(k, NkiTensor):
                if any(not (isinstance(x, slice) and x == slice(None))
                       for j, x in enumerate(key) if j != d):
                    self._fail("a tensor index must be the only non-full index")
                return self.select(d, k)
            if isinstance(k, DynamicSlice):
                start, size, step = _int(k.start), _int(k.size), _int(k.step)
                self._check_range(d, start, start + (size - 1) * step)
                shape.append(size), strides.append(s * step)
                offset += start * s
            elif isinstance(k, slice):
                step = 1 if k.step is None else _int(k.step)
                if step < 1:
                    self._fail(f"slice step {step} on dimension {d}: only positive steps")
                start = 0 if k.start is None else _int(k.start)
                stop = n if k.stop is None else _int(k.stop)
                start += n if start < 0 else 0
                stop += n if stop < 0 else 0
                if stop <= start:
                    self._fail(f"empty slice {start}:{stop} on dimension {d}")
                self._check_range(d, start, stop - 1)
                shape.append(len(range(start, stop, step))), strides.append(s * step)
                offset += start * s
            else:
                i = _int(k)
                i += n if i < 0 else 0
                self._check_range(d, i, i)
                offset += i * s
                shape.append(1), strides.append(s)
                drop.append(d)
        if self.on_chip:
            drop = [d for d in drop if d != 0]
            while len(shape) - len(drop) < 2 and drop:
                drop.pop()
        elif len(drop) == len(shape):
            drop.pop()
        keep = [d for d in range(len(shape)) if d not in drop]
        return self._derive([shape[d] for d in keep], [strides[d] for d in keep], offset)

    def __setitem__(self, key, value):
        from ..isa import tensor_copy, memset
        dst = self[key]
        if isinstance(value, NkiTensor):
            tensor_copy(dst=dst, src=value)
        else:
            memset(dst=dst, value=value)

    def _check_range(self, dim: int, lo: int, hi: int):
        n = self.shape[dim]
        if lo < 0 or hi >= n:
            raise OutOfBoundsError(
                f"Out-of-bound access for tensor {self.name or '<unnamed>'} on dimension "
                f"{dim}: index range [{lo}, {hi}] exceed dimension size of {n}")

    def slice(self, dim, start, end, step=1):
        d = self._dim(dim)
        key = [slice(None)] * self.ndim
        key[d] = slice(start, end, step)
        return self[tuple(key)]

    def select(self, dim, index):
        d = self._dim(dim)
        if isinstance(index, NkiTensor):
            if self.dyn is not None:
                self._fail("only one dynamic select per tensor (it is already indirect)")
            if self.on_chip and d == 0:
                self._fail("dynamic select on the partition dimension of an on-chip tensor")
            keep = [i for i in range(self.ndim) if i != d]
            return self._derive([self.shape[i] for i in keep], [self.strides[i] for i in keep],
                                indirect=Indirect(index, self.strides[d], "scalar", d))
        i = _int(index)
        i += self.shape[d] if i < 0 else 0
        self._check_range(d, i, i)
        keep = [j for j in range(self.ndim) if j != d]
        return self._derive([self.shape[j] for j in keep], [self.strides[j] for j in keep],
                            self.offset + i * self.strides[d])

    def vector_select(self, dim, vector_offset):
        if self._dim(dim) != 0:
            self._fail("vector_select only on dimension 0")
        if self.on_chip:
            self._fail("vector_select is only supported on HBM tensors")
        if self.dyn is not None:
            self._fail("only one dynamic select per tensor (it is already indirect)")
        n = vector_offset.shape[0]
        return self._derive((n,) + self.shape[1:], (0,) + self.strides[1:],
                            indirect=Indirect(vector_offset, self.strides[0], "vector", 0))

    def indirect(self, index, num_elem=None):
        return self.vector_select(0, index)

    # -- reshaping --------------------------------------------------------
    def permute(self, dims):
        dims = tuple(self._dim(d) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            self._fail(f"permute dims {dims} are not a permutation of range({self.ndim})")
        if self.on_chip and dims[0] != 0:
            self._fail("permute must keep the partition dimension first on chip")
        return self._derive([self.shape[d] for d in dims], [self.strides[d] for d in dims])

    def broadcast(self, dim, size):
        d = self._dim(dim)
        if self.shape[d] != 1:
            self._fail(f"broadcast needs dimension {d} of size 1, it has {self.shape[d]}")
        self._keep_partition_dim(d, "broadcast")
        shape, strides = list(self.shape), list(self.strides)
        shape[d], strides[d] = int(size), 0
        return self._derive(shape, strides)

    def expand_dim(self, dim):
        d = dim + self.ndim + 1 if dim < 0 else dim
        self._keep_partition_dim(d, "expand_dim")
        shape, strides = list(self.shape), list(self.strides)
        shape.insert(d, 1), strides.insert(d, 0)
        return self._derive(shape, strides)

    def squeeze_dim(self, dim):
        d = self._dim(dim)
        if self.shape[d] != 1:
            self._fail(f"squeeze_dim needs dimension {d} of size 1, it has {self.shape[d]}")
        self._keep_partition_dim(d, "squeeze_dim")
        keep = [i for i in range(self.ndim) if i != d]
        return self._derive([self.shape[i] for i in keep], [self.strides[i] for i in keep])

    def reshape_dim(self, dim, shape):
        d = self._dim(dim)
        shape = _infer(tuple(shape), self.shape[d], self)
        if self.on_chip and d == 0 and len(shape) != 1:
            self._fail("reshape_dim cannot split the partition dimension")
        inner = _row_major(shape)
        new_strides = [self.strides[d] * s for s in inner]
        return self._derive(self.shape[:d] + shape + self.shape[d + 1:],
                            self.strides[:d] + tuple(new_strides) + self.strides[d + 1:])

    def flatten_dims(self, start_dim, end_dim):
        a, b = self._dim(start_dim), self._dim(end_dim)
        if self.on_chip and a == 0:
            self._fail("flatten_dims cannot merge the partition dimension")
        for i in range(a, b):
            if self.shape[i] != 1 and self.strides[i] != self.strides[i + 1] * self.shape[i + 1]:
                self._fail(f"flatten_dims({a}, {b}): dimensions are not contiguous in memory")
        n = math.prod(self.shape[a:b + 1])
        return self._derive(self.shape[:a] + (n,) + self.shape[b + 1:],
                            self.strides[:a] + (self.strides[b],) + self.strides[b + 1:])

    def reshape(self, shape):
        if isinstance(shape, int):
            shape = (shape,)
        shape = _infer(tuple(shape), self.size, self)
        if self.on_chip and shape[0] != self.shape[0]:
            self._fail(f"reshape to {shape} must keep the partition dimension "
                       f"({self.shape[0]}) on chip")
        strides = _nocopy_reshape(self.shape, self.strides, shape)
        if strides is None:
            self._fail(f"cannot reshape to {shape}: the view's layout (strides "
                       f"{self.strides}) is not compatible without a copy")
        return self._derive(shape, strides)

    def rearrange(self, src_pattern, dst_pattern, fixed_sizes=None):
        sizes = dict(fixed_sizes or {})
        flat_names = []
        for d, part in enumerate(src_pattern):
            names = part if isinstance(part, tuple) else (part,)
            known = math.prod(sizes[n] for n in names if n in sizes)
            unknown = [n for n in names if n not in sizes]
            if len(unknown) > 1:
                self._fail(f"rearrange: sizes of {unknown} are ambiguous; give fixed_sizes")
            if unknown:
                sizes[unknown[0]] = self.shape[d] // known
            flat_names += names
        view = self
        for d in reversed(range(len(src_pattern))):
            part = src_pattern[d]
            if isinstance(part, tuple):
                view = view.reshape_dim(d, tuple(sizes[n] for n in part))
        order = []
        for part in dst_pattern:
            order += list(part if isinstance(part, tuple) else (part,))
        view = view.permute(tuple(flat_names.index(n) for n in order))
        pos = 0
        for part in dst_pattern:
            if isinstance(part, tuple) and len(part) > 1:
                view = view.flatten_dims(pos, pos + len(part) - 1)
            pos += 1
        return view

    # -- reinterpretation -------------------------------------------------
    def view(self, dtype):
        dtype = as_dtype(dtype)
        old, new = self.dtype.itemsize, dtype.itemsize
        if old == new:
            return self._derive(self.shape, self.strides, dtype=dtype)
        if self.strides[-1] != 1 and self.shape[-1] != 1:
            self._fail(f"view({dtype}) needs a contiguous last dimension")
        if new < old:
            r = old // new
            return self._derive(self.shape[:-1] + (self.shape[-1] * r,),
                                tuple(s * r for s in self.strides[:-1]) + (1,),
                                self.offset * r, dtype=dtype)
        r = new // old
        if self.shape[-1] % r or self.offset % r or any(s % r for s in self.strides[:-1]):
            self._fail(f"view({dtype}): last dimension {self.shape[-1]}, offset and strides "
                       f"must be multiples of {r}")
        return self._derive(self.shape[:-1] + (self.shape[-1] // r,),
                            tuple(s // r for s in self.strides[:-1]) + (1,),
                            self.offset // r, dtype=dtype)

    def ap(self, pattern, offset=None, scalar_offset=None, vector_offset=None,
           indirect_dim=0, dtype=None):
        dtype = as_dtype(dtype) if dtype is not None else self.dtype
        base = self.offset if offset is None else self.offset + int(offset)
        if dtype.itemsize != self.dtype.itemsize:
            base = base * self.dtype.itemsize // dtype.itemsize
        strides = tuple(int(p[0]) for p in pattern)
        shape = tuple(int(p[1]) for p in pattern)
        view = NkiTensor(shape, dtype, self.storage, self.buffer, self.name, strides=strides,
                         offset=base)
        if self.on_chip and len(shape) > 1 and shape[0] > 1 and strides[0] % view.row_elems:
            self._fail(f"ap pattern {pattern}: on chip the first (partition) stride must be "
                       f"a multiple of the {view.row_elems} elements per partition")
        if scalar_offset is not None or vector_offset is not None:
            base_shape = self.storage.base_shape
            scale = math.prod(base_shape[indirect_dim + 1:])
            scale = scale * self.storage.base_dtype.itemsize // dtype.itemsize
            if vector_offset is not None:
                if indirect_dim != 0:
                    self._fail("vector_offset only with indirect_dim=0")
                if self.on_chip:
                    self._fail("vector_offset indexing needs the indexed tensor in HBM")
                view.dyn = Indirect(vector_offset, scale, "vector", 0)
            else:
                view.dyn = Indirect(scalar_offset, scale, "scalar", indirect_dim)
        return view

    # -- queries ------------------------------------------------------------
    def get_pattern(self):
        return [[s, n] for s, n in zip(self.strides, self.shape)]

    def is_contiguous(self) -> bool:
        dims = range(1 if self.on_chip else 0, self.ndim)
        expect = 1
        for d in reversed(dims):
            if self.shape[d] != 1 and self.strides[d] != expect:
                return False
            expect *= self.shape[d]
        return True

    def is_indirect(self) -> bool:
        return self.dyn is not None


def _row_major(shape) -> tuple:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def _infer(shape: tuple, total: int, t: NkiTensor) -> tuple:
    if shape.count(-1) > 1:
        t._fail(f"reshape {shape}: at most one -1")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape = tuple(total // known if s == -1 else s for s in shape)
    if math.prod(shape) != total:
        t._fail(f"cannot reshape {total} elements into {shape}")
    return tuple(int(s) for s in shape)


def _nocopy_reshape(old_shape, old_strides, new_shape):
    """NumPy's no-copy reshape: new strides, or None when the layout forbids it."""
    olds = [(n, s) for n, s in zip(old_shape, old_strides) if n != 1]
    news = [n for n in new_shape]
    new_strides = [0] * len(news)
    oi = ni = 0
    nonunit = [i for i, n in enumerate(news) if n != 1]
    out = {}
    oj = 0
    nk = 0
    while oi < len(olds) and nk < len(nonunit):
        np_ = news[nonunit[nk]]
        op_ = olds[oi][0]
        oj, nj = oi + 1, nk + 1
        while np_ != op_:
            if np_ < op_:
                if nj >= len(nonunit):
                    return None
                np_ *= news[nonunit[nj]]
                nj += 1
            else:
                if oj >= len(olds):
                    return None
                op_ *= olds[oj][0]
                oj += 1
        for k in range(oi, oj - 1):
            if olds[k][1] != olds[k + 1][0] * olds[k + 1][1]:
                return None
        stride = olds[oj - 1][1]
        for k in range(nj - 1, nk - 1, -1):
            out[nonunit[k]] = stride
            stride *= news[nonunit[k]]
        oi, nk = oj, nj
    if nk != len(nonunit) or oi != len(olds):
        return None
    for i, n in enumerate(news):
        new_strides[i] = out.get(i, 0 if n == 1 else None)
    return tuple(new_strides)
