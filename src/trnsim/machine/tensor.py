"""NkiTensor: a view (shape, strides, offset, dtype) onto a Storage.

Element address = offset + sum(strides * index), in elements of the view's dtype.
On chip, an element address e lives in partition `storage.partition + e // row_elems`
at byte `storage.address + (e % row_elems) * itemsize`, where row_elems is the
storage's bytes per partition over the itemsize; so a (P, F...) tensor has partition
stride prod(F), as in NKI. In HBM, e is at byte e * itemsize of the tensor's buffer.

View rules (the NkiTensor reference, the NKI language guide and the access-pattern
deep dive):
- on chip (SBUF/PSUM) a view stays at least 2-D with the partition dim at position 0;
  an integer on dim 0 keeps it at size 1, an integer on a free dim drops it unless that
  leaves fewer than 2 dims (then the last indexed free dim stays at size 1); the
  partition dim cannot be stepped, moved, split, merged or broadcast;
- in HBM an integer drops its dim (the result stays at least 1-D);
- static indices are bounds-checked (OutOfBoundsError names tensor, dim, range, size);
- a runtime index (`select(dim, tensor)`, `vector_select`, `.ap(scalar_offset=|
  vector_offset=)`, `.indirect`) makes the view indirect (`t.dyn`), resolved by the
  instruction that consumes it; only one per view, and its dim is frozen.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np

from ..numerics.dtypes import DType, as_dtype
from .errors import NkiValidationError, OutOfBoundsError, describe


class NKIObject:
    """Base class for NKI kernel dataclasses and configuration objects.

    NKI translates such classes "using the object's dictionary", so plain class
    attributes are fields even without annotations: a subclass gets an annotation for
    each, and a `@dataclass` on it then takes them as keyword arguments."""

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        notes = cls.__dict__.get("__annotations__", {})
        for name, value in list(vars(cls).items()):
            if (not name.startswith("__") and name not in notes and not callable(value)
                    and not isinstance(value, (property, staticmethod, classmethod))):
                notes[name] = Any
        cls.__annotations__ = notes


class MemoryRegion(Enum):
    sbuf = "sbuf"
    psum = "psum"
    private_hbm = "private_hbm"
    shared_hbm = "shared_hbm"

    def __init__(self, value):
        # the memory it lives in: an attribute, not a property (read for every access)
        self.space = value if value in ("sbuf", "psum") else "hbm"
        self._text = value  # str(region) (the enum's `value` is a property: Python code)

    def __str__(self) -> str:
        return self._text

    # by identity, as members compare (Enum's hash of the name is a Python call: one per
    # new tile, `Run.new_tensor`'s kinds of tile)
    __hash__ = object.__hash__


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
    if type(v) is int:
        return v
    if isinstance(v, (bool, np.bool_)):
        raise NkiValidationError(f"index {v!r} is a bool, not an integer")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if hasattr(v, "__index__"):
        return v.__index__()
    raise NkiValidationError(f"index {v!r} is not an integer")


class Indirect:
    """A runtime offset, resolved when an instruction reads or writes the view.

    kind 'scalar': one runtime value (a 1-element SBUF tensor, or a register) times
        `scale` elements, added to every element.
    kind 'vector': per position i along view dim 0, `rows[i] * scale` elements, where
        `rows` is the index tensor flattened column-major (`index.T.flatten()`), so a
        (P, 1) index gives row index[i, 0] to position i.
    kind 'ti' (tensor indirection, NeuronCore-v4): view element [p, i] is at free
        offset `index[i % group, i // group] * scale` of partition p.
    `bound`: the runtime index must lie in [0, bound) (None: no index bound, only the
    address is checked). `dim`: the dim of the tensor the index selects (informative).
    """

    def __init__(self, index, scale: int, kind: str, dim: int, bound: int | None = None,
                 group: int = 16):
        self.index, self.scale, self.kind, self.dim = index, int(scale), kind, dim
        self.bound = None if bound is None else int(bound)
        self.group = group

    @property
    def index_is_tensor(self) -> bool:
        return isinstance(self.index, NkiTensor)

    def __repr__(self):
        name = describe(self.index) if self.index_is_tensor else repr(self.index)
        return f"Indirect({self.kind}, index={name}, scale={self.scale}, bound={self.bound})"


_PLAIN = frozenset((int, slice))


def is_plain(key: tuple) -> bool:
    """Whether every index of `key` is an int or a slice (no Ellipsis, bool, arange,
    index expression, nl.ds or tile)."""
    for k in key:
        if type(k) not in _PLAIN:
            return False
    return True


def _is_full(k) -> bool:
    return isinstance(k, slice) and k.start is None and k.stop is None and k.step in (None, 1)


def _kept_dims(ndim: int, ints: list, on_chip: bool) -> list:
    """The dims a view keeps of an index with ints at dims `ints`: those dims are
    dropped (on chip, the partition dim kept, and the last ones kept while fewer than
    2 dims would remain; in HBM, the last kept where every dim is an int)."""
    if on_chip:
        drop = [d for d in ints if d != 0]
        while ndim - len(drop) < 2 and drop:
            drop.pop()
    else:
        drop = list(ints)
        if len(drop) == ndim:
            drop.pop()
    return [d for d in range(ndim) if d not in drop]


def _dropped(shape: tuple, strides: tuple, ints: list, on_chip: bool) -> tuple:
    """(shape, strides) of the dims `_kept_dims` keeps."""
    if len(ints) == 1 and len(shape) > 2:  # (the usual `t[:, i, :]`: at least 2 dims left)
        d = ints[0]
        if d == 0 and on_chip:
            return shape, strides
        return shape[:d] + shape[d + 1:], strides[:d] + strides[d + 1:]
    keep = _kept_dims(len(shape), ints, on_chip)
    return tuple([shape[d] for d in keep]), tuple([strides[d] for d in keep])


class _ViewMeta(type):
    """Lets the simulator build a view in one call, `NkiTensor(shape, dtype, storage,
    buffer, name, strides=, offset=, indirect=)`, while `NkiTensor.__init__` keeps the
    public signature of the NKI reference."""

    def __call__(cls, *args, strides=None, offset=0, indirect=None, **kwargs):
        t = super().__call__(*args, **kwargs)
        if strides is not None:
            t.strides = tuple(int(s) for s in strides)
        t.offset = int(offset)
        t.dyn = indirect
        return t


def unit_slice_bounds(k, n: int) -> tuple | None:
    """(start, stop) of `k` over a dim of size n, negative bounds counted from its end
    (not clamped to it), where k is a unit-step slice with int or no bounds, else None."""
    if type(k) is not slice or k.step is not None:
        return None
    start, stop = k.start, k.stop
    if start is None:
        start = 0
    elif type(start) is not int:
        return None
    elif start < 0:
        start += n
    if stop is None:
        stop = n
    elif type(stop) is not int:
        return None
    elif stop < 0:
        stop += n
    return start, stop


def slice_in_range(k, n: int) -> tuple | None:
    """`unit_slice_bounds(k, n)` where they lie in the dim and leave it not empty, else
    None."""
    bounds = unit_slice_bounds(k, n)
    if bounds is not None and 0 <= bounds[0] < bounds[1] <= n:
        return bounds
    return None


class NkiTensor(NKIObject, metaclass=_ViewMeta):
    """NKI tensor with shape-based view operations sharing one storage."""

    def __init__(self, shape, dtype, storage, buffer=MemoryRegion.sbuf, name=""):
        self.shape = tuple(int(s) for s in shape)
        self.dtype: DType = as_dtype(dtype)
        self.storage = storage
        self.buffer = as_region(buffer)
        self.name = name or (storage.name if storage is not None else "")
        self.strides = _row_major(self.shape)
        self.offset = 0
        self.dyn: Indirect | None = None

    @staticmethod
    def view_of(shape: tuple, dtype: DType, storage, buffer: MemoryRegion, name: str,
                strides: tuple, offset: int, dyn: "Indirect | None" = None) -> "NkiTensor":
        """The view with these parts, already normal (tuples of ints, a DType, a
        MemoryRegion): what the constructor makes of them, without its conversions."""
        t = object.__new__(NkiTensor)
        t.shape, t.dtype, t.storage, t.buffer = shape, dtype, storage, buffer
        t.name = name or (storage.name if storage is not None else "")
        t.strides, t.offset, t.dyn = strides, offset, dyn
        return t

    @staticmethod
    def over(storage, shape: tuple, dtype: DType, buffer: MemoryRegion,
             name: str) -> "NkiTensor":
        """The row-major tensor of `shape` over all of `storage`, from normal parts (as
        `view_of`): what `NkiTensor(shape, dtype, storage, buffer, name)` makes."""
        return NkiTensor.view_of(shape, dtype, storage, buffer, name, _row_major(shape), 0)

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
        ind = f", indirect={self.dyn!r}" if self.dyn is not None else ""
        return f"NkiTensor({describe(self)}, strides={self.strides}, offset={self.offset}{ind})"

    def __len__(self) -> int:
        return self.shape[0]

    def __bool__(self) -> bool:
        """True when every element is nonzero, so the documented idiom
        `assert nl.equal(c, expected)` checks values (always True without numerics)."""
        from . import runtime
        from .access import read_raw
        run = runtime.current_run()
        if run is not None and not run.options.numerics:
            return True
        return bool(np.all(read_raw(self) != 0))

    def _derive(self, shape, strides, offset=None, dtype=None, indirect="same"):
        return NkiTensor.view_of(
            tuple(map(int, shape)), as_dtype(dtype or self.dtype),
            self.storage, self.buffer, self.name, tuple(map(int, strides)),
            self.offset if offset is None else int(offset),
            self.dyn if indirect == "same" else indirect)

    def _fail(self, msg: str, cls=NkiValidationError):
        raise cls(f"{msg} (tensor {describe(self)})")

    def _dim(self, dim: int) -> int:
        d = _int(dim)
        d = d + self.ndim if d < 0 else d
        if not 0 <= d < self.ndim:
            self._fail(f"dimension {dim} out of range for a {self.ndim}-D tensor")
        return d

    def _keep_partition_dim(self, dim: int, what: str):
        if dim == 0 and self.on_chip:
            self._fail(f"{what} cannot change the partition dimension (dim 0) of an "
                       "on-chip tensor")
        if dim == 0 and self._vector_indirect:
            self._fail(f"{what} cannot change dimension 0 of a vector-indirect view "
                       "(its rows are selected at runtime)")

    @property
    def _vector_indirect(self) -> bool:
        return self.dyn is not None and self.dyn.kind == "vector"

    def _no_ti(self, what: str):
        if self.dyn is not None and self.dyn.kind == "ti":
            self._fail(f"{what} is not supported on a tensor-indirection view (.indirect)")

    # -- indexing ---------------------------------------------------------
    def __getitem__(self, key) -> "NkiTensor":
        if type(key) is tuple and self.dyn is None:
            if len(key) == 2 and len(self.shape) == 2:
                # the usual `t[:, a:b]` (rows whole, a unit-step slice with int or no
                # bounds in range) made here; any other key takes the general path
                rows, k = key
                if _is_full(rows):
                    p, n = self.shape
                    bounds = slice_in_range(k, n)
                    if bounds is not None and p > 0:
                        start, stop = bounds
                        return NkiTensor.view_of(
                            (p, stop - start), self.dtype, self.storage, self.buffer,
                            self.name, self.strides, self.offset + start * self.strides[1])
            elif len(key) == 3 and len(self.shape) == 3:
                view = self._middle(key)
                if view is not None:
                    return view
        if not isinstance(key, tuple):
            key = (key,)
        if self.dyn is None and len(key) <= len(self.shape):
            view = self._sliced(key, True)  # (None for any key of other indices)
            if view is not None:
                return view
            if is_plain(key):
                return self._index_static(
                    key + (slice(None),) * (len(self.shape) - len(key)))[0]
        n_ell = sum(1 for k in key if k is Ellipsis)
        if n_ell > 1:
            self._fail("an index can hold only one Ellipsis (...)")
        if n_ell:
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            fill = self.ndim - (len(key) - 1)
            if fill < 0:
                self._fail(f"too many indices ({len(key) - 1}) for a {self.ndim}-D tensor")
            key = key[:i] + (slice(None),) * fill + key[i + 1:]
        if len(key) > self.ndim:
            self._fail(f"too many indices ({len(key)}) for a {self.ndim}-D tensor")
        key = tuple(key) + (slice(None),) * (self.ndim - len(key))
        if self.dyn is not None and self.dyn.kind == "ti" and not all(map(_is_full, key)):
            self._no_ti("indexing")
        dyn = [d for d, k in enumerate(key) if isinstance(k, NkiTensor)]
        if len(dyn) > 1:
            self._fail("only one runtime (tensor) index per view")
        if not dyn:
            return self._index_static(key)[0]
        d = dyn[0]
        index = key[d]
        view, kept = self._index_static(key[:d] + (slice(None),) + key[d + 1:])
        nd = kept.index(d) if d in kept else None
        if not view.on_chip and nd == 0 and index.size > 1:
            return view.vector_select(0, index)
        return view.select(nd, index)

    def _middle(self, key):
        """`_sliced(key, True)` of a static 3-D view for the usual `t[:, i, :]` (the
        first and last dims whole, i an int in range), else None."""
        rows, i, cols = key
        if type(i) is not int or not _is_full(rows) or not _is_full(cols):
            return None
        (p, n, f), (sp, sn, sf) = self.shape, self.strides
        if i < 0:
            i += n
        if not (0 <= i < n and p > 0 and f > 0):
            return None
        return NkiTensor.view_of((p, f), self.dtype, self.storage, self.buffer, self.name,
                                 (sp, sf), self.offset + i * sn)

    def _sliced(self, key, with_ints=False):
        """`_index_static(key)[0]` for a static view and a key of unit-step slices with
        int bounds (and, `with_ints`, ints), all in range (the dims past the key whole),
        or None for any other key (the general path takes it, and raises its errors).
        (The legacy front end drops a view's int dims its own way: it asks for slices.)"""
        shape, strides, offset, ints = [], [], self.offset, None
        for k, n, s in zip(key, self.shape, self.strides):
            if type(k) is int and with_ints:
                if k < 0:
                    k += n
                if not 0 <= k < n:
                    return None
                d = len(shape)  # (this dim)
                ints = [d] if ints is None else ints + [d]
                offset += k * s
                shape.append(1)
                strides.append(s)
                continue
            if _is_full(k):
                if n <= 0:  # (a whole dim: bounds 0 and n)
                    return None
                shape.append(n)
                strides.append(s)
                continue
            bounds = slice_in_range(k, n)
            if bounds is None:
                return None
            start, stop = bounds
            shape.append(stop - start)
            strides.append(s)
            offset += start * s
        rest = len(key)
        shape = tuple(shape) + self.shape[rest:]
        strides = tuple(strides) + self.strides[rest:]
        if ints is not None:
            shape, strides = _dropped(shape, strides, ints, self.on_chip)
        return NkiTensor.view_of(shape, self.dtype, self.storage, self.buffer, self.name,
                                 strides, offset)

    def _index_static(self, key):
        """Apply a full-length key of ints, slices and nl.ds; returns the view and the
        dims of self it keeps, in order."""
        shape, strides, offset, ints = [], [], self.offset, []
        for d, k in enumerate(key):
            n, s = self.shape[d], self.strides[d]
            if d == 0 and self.dyn is not None and self._vector_indirect and not _is_full(k):
                self._fail("dimension 0 of a vector-indirect view is selected at runtime "
                           "and cannot be indexed or sliced")
            if isinstance(k, DynamicSlice):
                start, size, step = _int(k.start), _int(k.size), _int(k.step)
                if size < 0:
                    self._fail(f"nl.ds size {size} on dimension {d} must not be negative")
                start += n if start < 0 else 0
                self._check_step(d, step)
                if size:  # an empty view is allowed; instructions refuse to access one
                    self._check_range(d, start, start + (size - 1) * step)
                shape.append(size), strides.append(s * step)
                offset += start * s
            elif isinstance(k, slice):
                start, stop, step = k.start, k.stop, k.step
                step = 1 if step is None else _int(step)
                if step != 1:
                    self._check_step(d, step)
                # (_int inline for plain ints, the usual bounds)
                start = 0 if start is None else start if type(start) is int else _int(start)
                stop = n if stop is None else stop if type(stop) is int else _int(stop)
                start += n if start < 0 else 0
                stop += n if stop < 0 else 0
                if start < 0 or start >= n or stop > n:
                    self._oob(d, start, max(start, stop - 1))
                if stop <= start:
                    self._fail(f"empty slice {start}:{stop} on dimension {d}")
                shape.append(stop - start if step == 1 else len(range(start, stop, step)))
                strides.append(s * step)
                offset += start * s
            elif k is None:
                self._fail("None / np.newaxis indices are not supported; use expand_dim")
            else:
                i = _int(k)
                i += n if i < 0 else 0
                self._check_range(d, i, i)
                offset += i * s
                shape.append(1), strides.append(s)
                ints.append(d)
        if not ints:
            return self._derive(shape, strides, offset), range(len(shape))
        keep = _kept_dims(len(shape), ints, self.on_chip)
        return self._derive([shape[d] for d in keep], [strides[d] for d in keep], offset), keep

    def _check_step(self, dim: int, step: int):
        if step < 1:
            self._fail(f"slice step {step} on dimension {dim}: only positive steps")
        if step != 1 and dim == 0 and self.on_chip:
            self._fail(f"slice step {step} on the partition dimension: on-chip access "
                       "must cover consecutive partitions (strided access is only "
                       "supported along the free dimensions)")

    # `view[key] = value` issues an instruction: the instruction set installs how
    # (trnsim/isa/__init__.py), which keeps the machine layer below the ISA.
    assign = None

    def __setitem__(self, key, value):
        NkiTensor.assign(self[key], value)

    def _check_range(self, dim: int, lo: int, hi: int):
        if lo < 0 or hi >= self.shape[dim]:
            self._oob(dim, lo, hi)

    def _oob(self, dim: int, lo: int, hi: int):
        raise OutOfBoundsError(
            f"Out-of-bound access for tensor {self.name or '<unnamed>'} on dimension "
            f"{dim}: index range [{lo}, {hi}] exceed dimension size of {self.shape[dim]} "
            f"({describe(self)})")

    def slice(self, dim, start, end, step=1):
        d = self._dim(dim)
        key = [slice(None)] * self.ndim
        key[d] = slice(start, end, step)
        return self[tuple(key)]

    def select(self, dim, index):
        d = self._dim(dim)
        if not isinstance(index, NkiTensor):
            if d == 0 and self._vector_indirect:
                self._fail("dimension 0 of a vector-indirect view cannot be selected")
            self._no_ti("select")
            key = [slice(None)] * self.ndim
            key[d] = _int(index)
            return self[tuple(key)]
        if self.dyn is not None:
            self._fail("only one dynamic select per tensor (this view is already "
                       "indirect; check is_indirect())")
        if self.on_chip and d == 0:
            self._fail("dynamic select on the partition dimension (dim 0) of an on-chip "
                       "tensor")
        _check_index_tensor(self, index, "select index")
        if index.size != 1:
            self._fail(f"dynamic select takes a single runtime index ({describe(index)} "
                       "has more than one element); use vector_select for a "
                       "per-partition gather")
        ind = Indirect(index, self.strides[d], "scalar", d, self.shape[d])
        keep = [i for i in range(self.ndim) if i != d]
        shape = [self.shape[i] for i in keep]
        strides = [self.strides[i] for i in keep]
        if self.on_chip and len(shape) < 2:
            shape.insert(d, 1), strides.insert(d, self.strides[d])
        elif not shape:
            shape, strides = [1], [self.strides[d]]
        return self._derive(shape, strides, indirect=ind)

    def vector_select(self, dim, vector_offset):
        if self._dim(dim) != 0:
            self._fail("vector_select only on dimension 0")
        if self.on_chip:
            self._fail("vector_select is only supported on HBM tensors")
        if self.dyn is not None:
            self._fail("only one dynamic select per tensor (this view is already "
                       "indirect; check is_indirect())")
        _check_index_tensor(self, vector_offset, "vector_offset")
        if vector_offset.ndim < 2 or math.prod(vector_offset.shape[1:]) != 1:
            self._fail(f"vector_offset {describe(vector_offset)} must have shape "
                       "(num_partitions, 1)")
        n = vector_offset.shape[0]
        return self._derive((n,) + self.shape[1:], (0,) + self.strides[1:],
                            indirect=Indirect(vector_offset, self.strides[0], "vector", 0,
                                              self.shape[0]))

    def indirect(self, index, num_elem=None):
        """Tensor indirection (NeuronCore-v4): a (P, num_elem) view whose column i is
        free-dim offset index[i % G, i // G] of every partition (G = 16; the
        instruction's engine may use another group size)."""
        if not self.on_chip:
            self._fail("indirect (tensor indirection) views are on-chip only")
        if self.dyn is not None:
            self._fail("this view is already indirect")
        _check_index_tensor(self, index, "indirect index")
        flat = self if self.ndim == 2 else self.flatten_dims(1, self.ndim - 1)
        group = 16
        kcols = math.prod(index.shape[1:])
        n = min(index.size, group * kcols) if num_elem is None else _int(num_elem)
        if n < 1 or n > group * kcols or min(n, group) > index.shape[0]:
            self._fail(f"num_elem={n}: offset i is read from index[i % {group}, i // "
                       f"{group}], which {describe(index)} does not hold for every i < {n}")
        return flat._derive((flat.shape[0], n), (flat.strides[0], 0),
                            indirect=Indirect(index, flat.strides[1], "ti", 1, flat.shape[1],
                                              group))

    # -- reshaping --------------------------------------------------------
    def permute(self, dims):
        self._no_ti("permute")
        dims = tuple(self._dim(d) for d in dims)
        if sorted(dims) != list(range(self.ndim)):
            self._fail(f"permute dims {dims} are not a permutation of range({self.ndim})")
        if self.on_chip and dims[0] != 0:
            self._fail("permute must keep the partition dimension first on chip")
        if self._vector_indirect and dims[0] != 0:
            self._fail("permute must keep the indirect dimension (dim 0) first after "
                       "vector_select")
        return self._derive([self.shape[d] for d in dims], [self.strides[d] for d in dims])

    def broadcast(self, dim, size):
        self._no_ti("broadcast")
        d = self._dim(dim)
        if self.shape[d] != 1:
            self._fail(f"broadcast needs dimension {d} of size 1, it has {self.shape[d]}")
        self._keep_partition_dim(d, "broadcast")
        size = _int(size)
        if size < 1:
            self._fail(f"broadcast size {size} must be positive")
        shape, strides = list(self.shape), list(self.strides)
        shape[d], strides[d] = size, 0
        return self._derive(shape, strides)

    def expand_dim(self, dim):
        self._no_ti("expand_dim")
        d = _int(dim)
        d = d + self.ndim + 1 if d < 0 else d
        if not 0 <= d <= self.ndim:
            self._fail(f"expand_dim position {dim} out of range for a {self.ndim}-D tensor")
        self._keep_partition_dim(d, "expand_dim")
        shape, strides = list(self.shape), list(self.strides)
        stride = self.strides[d] * self.shape[d] if d < self.ndim else 1
        shape.insert(d, 1), strides.insert(d, stride)
        return self._derive(shape, strides)

    def squeeze_dim(self, dim):
        self._no_ti("squeeze_dim")
        d = self._dim(dim)
        if self.shape[d] != 1:
            self._fail(f"squeeze_dim needs dimension {d} of size 1, it has {self.shape[d]}")
        self._keep_partition_dim(d, "squeeze_dim")
        if self.on_chip and self.ndim <= 2:
            self._fail("squeeze_dim would leave an on-chip tensor with fewer than 2 dims")
        if self.ndim == 1:
            self._fail("squeeze_dim cannot remove the only dimension")
        keep = [i for i in range(self.ndim) if i != d]
        return self._derive([self.shape[i] for i in keep], [self.strides[i] for i in keep])

    def reshape_dim(self, dim, shape):
        self._no_ti("reshape_dim")
        d = self._dim(dim)
        shape = _infer(tuple(shape), self.shape[d], self)
        if d == 0 and len(shape) != 1:
            self._keep_partition_dim(0, "reshape_dim (splitting dim 0)")
        inner = _row_major(shape)
        new_strides = [self.strides[d] * s for s in inner]
        return self._derive(self.shape[:d] + shape + self.shape[d + 1:],
                            self.strides[:d] + tuple(new_strides) + self.strides[d + 1:])

    def flatten_dims(self, start_dim, end_dim):
        self._no_ti("flatten_dims")
        a, b = self._dim(start_dim), self._dim(end_dim)
        if b < a:
            self._fail(f"flatten_dims({start_dim}, {end_dim}): end before start")
        if a == b:
            return self._derive(self.shape, self.strides)
        if a == 0:
            self._keep_partition_dim(0, "flatten_dims (merging dim 0)")
        big = [i for i in range(a, b + 1) if self.shape[i] != 1]
        for i, j in zip(big, big[1:]):
            if self.strides[i] != self.strides[j] * self.shape[j]:
                self._fail(f"flatten_dims({a}, {b}): dimensions {i} and {j} are not "
                           f"contiguous in memory (strides {self.strides})")
        n = math.prod(self.shape[a:b + 1])
        stride = self.strides[big[-1]] if big else 1
        return self._derive(self.shape[:a] + (n,) + self.shape[b + 1:],
                            self.strides[:a] + (stride,) + self.strides[b + 1:])

    def reshape(self, shape):
        self._no_ti("reshape")
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        shape = _infer(tuple(shape), self.size, self)
        if self.on_chip and (len(shape) < 2 or shape[0] != self.shape[0]):
            self._fail(f"reshape to {shape} must keep the partition dimension "
                       f"({self.shape[0]}) first and at least 2 dims on chip")
        if self._vector_indirect and shape[0] != self.shape[0]:
            self._fail(f"reshape to {shape} must keep dimension 0 ({self.shape[0]}) of a "
                       "vector-indirect view")
        if self.on_chip or self._vector_indirect:
            # dim 0 maps to itself; the free dims reshape among themselves
            rest = _nocopy_reshape(self.shape[1:], self.strides[1:], shape[1:])
            strides = None if rest is None else (self.strides[0],) + rest
        else:
            strides = _nocopy_reshape(self.shape, self.strides, shape)
        if strides is None:
            self._fail(f"cannot reshape to {shape}: the view's layout (strides "
                       f"{self.strides}) is not compatible without a copy")
        return self._derive(shape, strides)

    def rearrange(self, src_pattern, dst_pattern, fixed_sizes=None):
        self._no_ti("rearrange")
        src_pattern, dst_pattern = tuple(src_pattern), tuple(dst_pattern)
        if len(src_pattern) != self.ndim:
            self._fail(f"rearrange: source pattern {src_pattern} has {len(src_pattern)} "
                       f"entries for a {self.ndim}-D tensor")
        sizes = {k: _int(v) for k, v in dict(fixed_sizes or {}).items()}
        flat_names = []
        for d, part in enumerate(src_pattern):
            names = tuple(part) if isinstance(part, (tuple, list)) else (part,)
            known = math.prod(sizes[n] for n in names if n in sizes)
            unknown = [n for n in names if n not in sizes]
            if len(unknown) > 1:
                self._fail(f"rearrange: sizes of {unknown} are ambiguous; give fixed_sizes")
            if unknown:
                if known == 0 or self.shape[d] % known:
                    self._fail(f"rearrange: dimension {d} of size {self.shape[d]} does not "
                               f"split into {names} with sizes {sizes}")
                sizes[unknown[0]] = self.shape[d] // known
            if math.prod(sizes[n] for n in names) != self.shape[d]:
                self._fail(f"rearrange: {names} sizes {[sizes[n] for n in names]} do not "
                           f"multiply to dimension {d} of size {self.shape[d]}")
            flat_names += names
        if len(set(flat_names)) != len(flat_names):
            self._fail(f"rearrange: repeated name in {src_pattern}")
        order = []
        for part in dst_pattern:
            order += list(part) if isinstance(part, (tuple, list)) else [part]
        if sorted(order) != sorted(flat_names):
            self._fail(f"rearrange: destination {dst_pattern} must use exactly the names "
                       f"of {src_pattern}")
        view = self
        for d in reversed(range(len(src_pattern))):
            part = src_pattern[d]
            if isinstance(part, (tuple, list)) and len(part) != 1:
                view = view.reshape_dim(d, tuple(sizes[n] for n in part))
        view = view.permute(tuple(flat_names.index(n) for n in order))
        pos = 0
        for part in dst_pattern:
            if isinstance(part, (tuple, list)) and len(part) > 1:
                view = view.flatten_dims(pos, pos + len(part) - 1)
            pos += 1
        return view

    # -- reinterpretation -------------------------------------------------
    def view(self, dtype):
        dtype = as_dtype(dtype)
        if self.dyn is not None:
            self._fail(f"view({dtype}) is not supported after a dynamic / vector select")
        old, new = self.dtype.itemsize, dtype.itemsize
        if self.on_chip and self.storage.row_bytes % new:
            self._fail(f"view({dtype}): {self.storage.row_bytes} bytes per partition are "
                       f"not a whole number of {new}-byte elements")
        if old == new:
            return self._derive(self.shape, self.strides, dtype=dtype)
        if self.strides[-1] != 1 and self.shape[-1] != 1:
            self._fail(f"view({dtype}) needs a contiguous last dimension (stride "
                       f"{self.strides[-1]})")
        if new < old:
            r = old // new
            return self._derive(self.shape[:-1] + (self.shape[-1] * r,),
                                tuple(s * r for s in self.strides[:-1]) + (1,),
                                self.offset * r, dtype=dtype)
        r = new // old
        if self.shape[-1] % r or self.offset % r or any(s % r for s in self.strides[:-1]):
            self._fail(f"view({dtype}): last dimension {self.shape[-1]}, offset "
                       f"{self.offset} and strides {self.strides[:-1]} must be multiples "
                       f"of {r}")
        return self._derive(self.shape[:-1] + (self.shape[-1] // r,),
                            tuple(s // r for s in self.strides[:-1]) + (1,),
                            self.offset // r, dtype=dtype)

    def ap(self, pattern, offset=None, scalar_offset=None, vector_offset=None,
           indirect_dim=0, dtype=None):
        """An explicit access pattern [[stride, count], ...] over this tensor's storage
        (not composed with the view's shape or strides). `offset` (elements of `dtype`)
        is added to the view's own offset; None keeps the view's offset.
        `scalar_offset`/`vector_offset` add `index * strides[indirect_dim]` (this
        tensor's stride, i.e. prod(shape[indirect_dim+1:]) for a fresh tensor)."""
        dtype = as_dtype(dtype) if dtype is not None else self.dtype
        old, new = self.dtype.itemsize, dtype.itemsize
        try:
            pattern = [(int(p[0]), int(p[1])) for p in pattern]
        except (TypeError, ValueError, IndexError):
            self._fail(f"ap pattern {pattern!r} must be a list of [stride, count] pairs")
        if not pattern:
            self._fail("ap pattern is empty")
        if any(n < 1 for _, n in pattern):
            self._fail(f"ap pattern {pattern}: every count must be positive")
        if (self.offset * old) % new:
            self._fail(f"ap(dtype={dtype}): view offset {self.offset} ({self.dtype}) is not "
                       f"a whole number of {dtype} elements")
        base = self.offset * old // new + (0 if offset is None else _int(offset))
        strides = tuple(p[0] for p in pattern)
        shape = tuple(p[1] for p in pattern)
        view = NkiTensor(shape, dtype, self.storage, self.buffer, self.name, strides=strides,
                         offset=base)
        if self.on_chip:
            if self.storage.row_bytes % new:
                self._fail(f"ap(dtype={dtype}): {self.storage.row_bytes} bytes per partition "
                           f"are not a whole number of {new}-byte elements")
            if shape[0] > 1 and strides[0] != view.row_elems:
                self._fail(f"ap pattern {[list(p) for p in pattern]}: on chip the first "
                           f"(partition) stride must equal the {view.row_elems} elements per "
                           "partition of the storage (consecutive partitions)")
        if scalar_offset is not None and vector_offset is not None:
            self._fail("ap: scalar_offset and vector_offset are mutually exclusive")
        if scalar_offset is None and vector_offset is None:
            return view
        d = self._dim(indirect_dim)
        if (self.strides[d] * old) % new:
            self._fail(f"ap(dtype={dtype}): stride {self.strides[d]} of indirect_dim {d} is "
                       f"not a whole number of {dtype} elements")
        scale = self.strides[d] * old // new
        if vector_offset is not None:
            if d != 0:
                self._fail("vector_offset supports only indirect_dim=0")
            if self.on_chip:
                self._fail("vector_offset indexing needs the indexed tensor in HBM")
            _check_index_tensor(self, vector_offset, "vector_offset")
            if vector_offset.size < shape[0]:
                self._fail(f"vector_offset {describe(vector_offset)} holds fewer than the "
                           f"{shape[0]} indices the pattern's first dimension needs")
            # the pattern's leading stride is ignored: each row's start is index * scale
            view.strides = (0,) + strides[1:]
            view.dyn = Indirect(vector_offset, scale, "vector", d, self.shape[d])
            return view
        if isinstance(scalar_offset, NkiTensor):
            _check_index_tensor(self, scalar_offset, "scalar_offset")
            if scalar_offset.size != 1:
                self._fail(f"scalar_offset {describe(scalar_offset)} must be a (1, 1) tensor")
        elif not hasattr(scalar_offset, "__index__"):
            self._fail(f"scalar_offset {scalar_offset!r} must be a (1, 1) SBUF tensor or a "
                       "register")
        elif isinstance(scalar_offset, (int, np.integer)):  # a constant: fold it in
            view.offset += int(scalar_offset) * scale
            return view
        view.dyn = Indirect(scalar_offset, scale, "scalar", d, self.shape[d])
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


def _check_index_tensor(t: NkiTensor, index, role: str):
    if not isinstance(index, NkiTensor):
        t._fail(f"{role} must be an SBUF tensor of integer indices, got "
                f"{type(index).__name__}")
    if index.space != "sbuf":
        t._fail(f"{role} {describe(index)} must be in SBUF")
    if not index.dtype.is_int:
        t._fail(f"{role} {describe(index)} must have an integer dtype (int32 / uint32)")
    if index.dyn is not None:
        t._fail(f"{role} {describe(index)} cannot itself be indirect")


def _row_major(shape) -> tuple:
    strides = _ROW_MAJOR.get(shape)
    if strides is None:
        acc, out = 1, []
        for n in reversed(shape):
            out.append(acc)
            acc *= n
        strides = tuple(reversed(out))
        if len(_ROW_MAJOR) >= 4096:
            _ROW_MAJOR.clear()
        _ROW_MAJOR[shape] = strides
    return strides


_ROW_MAJOR: dict = {}  # shape (a tuple of ints) -> its row-major strides


def _infer(shape: tuple, total: int, t: NkiTensor) -> tuple:
    shape = tuple(_int(s) for s in shape)
    if shape.count(-1) > 1:
        t._fail(f"reshape {shape}: at most one -1")
    if any(s < 1 and s != -1 for s in shape):
        t._fail(f"reshape {shape}: sizes must be positive")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if total % known:
            t._fail(f"cannot reshape {total} elements into {shape}")
        shape = tuple(total // known if s == -1 else s for s in shape)
    if math.prod(shape) != total:
        t._fail(f"cannot reshape {total} elements into {shape}")
    return tuple(int(s) for s in shape)


def _nocopy_reshape(old_shape, old_strides, new_shape):
    """NumPy's no-copy reshape: new strides, or None when the layout forbids it."""
    olds = [(n, s) for n, s in zip(old_shape, old_strides) if n != 1]
    news = list(new_shape)
    nonunit = [i for i, n in enumerate(news) if n != 1]
    out = {}
    oi = nk = 0
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
    # size-1 dims: the stride that keeps the layout row-major-looking
    strides = [0] * len(news)
    nxt = 1
    for i in reversed(range(len(news))):
        if i in out:
            strides[i] = out[i]
            nxt = out[i] * news[i]
        else:
            strides[i] = nxt
    return tuple(strides)
