"""Legacy tensors and tiles: a core NkiTensor seen with legacy indexing.

A legacy tensor may have *block* dimensions before its partition dimension
(`nl.ndarray((4, nl.par_dim(128), 512))`): they are laid out inside each partition, so a
block tile is one core tensor whose partition dim is not first. Indexing a legacy tensor
gives an `Access` (the tensor plus one affine Index per dim), resolved into a core view
when an instruction runs, after the instruction's mask has narrowed its ranges.
"""
from __future__ import annotations

import math

from ..machine.errors import NkiValidationError
from ..machine.tensor import NkiTensor
from .indexing import Index, Predicate, grid_axes, key_to_indices, resolve


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
        return Access(self, key_to_indices(key, self.shape))

    def __setitem__(self, key, value):
        from .ops import assign
        assign(self[key], value)

    def __iadd__(self, other):
        from .ops import accumulate_into
        accumulate_into(self.full(), other)
        return self

    def full(self) -> "Access":
        return self[(slice(None),) * self.ndim]

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


class Access(Operators):
    """`tensor[index...]`: a legacy tensor with one affine Index per dimension."""

    def __init__(self, tensor: LTensor, indices: list[Index]):
        self.tensor, self.indices = tensor, indices

    @property
    def axes(self):
        return grid_axes(self.indices)

    @property
    def shape(self) -> tuple:
        return resolve_shape(self)

    dtype = property(lambda self: self.tensor.dtype)
    buffer = property(lambda self: self.tensor.buffer)
    name = property(lambda self: self.tensor.name)

    def __getitem__(self, key):
        return LTensor(self.view())[key]

    def __setitem__(self, key, value):
        LTensor(self.view())[key] = value

    def __iadd__(self, other):
        from .ops import accumulate_into
        accumulate_into(self, other)
        return self

    def view(self, ranges: dict | None = None) -> NkiTensor:
        return resolve(self.tensor.core, self.indices, ranges or {})

    def __repr__(self):
        return f"Access({self.tensor.name!r}, {self.indices})"


def resolve_shape(access: Access) -> tuple:
    axes = access.axes
    ndim = max([a.ndim for a in axes] + [0])
    shape = [1] * ndim
    for a in axes:
        shape[a.position] = a.size
    if access.tensor.core.on_chip and ndim < 2:
        shape = [1] * (2 - ndim) + shape
    return tuple(shape) or (1,)


def as_predicate(mask) -> Predicate | None:
    if mask is None or isinstance(mask, Predicate):
        return mask
    raise NkiValidationError(f"mask must be an affine predicate such as (i_p < 64) & "
                             f"(i_f < 256), got {mask!r}")


def numel(shape) -> int:
    return math.prod(shape)


__all__ = ["LTensor", "Access", "par_dim"]
