"""Legacy NKI index expressions and masks, resolved onto core tensor views.

`nl.arange(128)[:, None]` is an *axis*: values 0..127 placed at position 0 of a 2-D
index grid. Arithmetic on axes builds affine `Index` expressions
(`512 * i + nl.arange(512)[None, :]`); comparisons build `Predicate`s, and `&` joins
them into a mask. Indexing a tensor with one expression per dimension gives a view whose
shape is the index grid and whose strides are the sums of the tensor strides times the
axis coefficients, so any affine legacy index is one core `NkiTensor` view.

A mask restricts each axis it constrains alone to a sub-range *before* the view is
built (masked-off elements are neither read, computed nor stored, and may lie out of
bounds); constraints on several axes at once are kept as a residual boolean mask.
"""
from __future__ import annotations

import itertools
import operator

import numpy as np

from ..machine.errors import NkiValidationError, OutOfBoundsError
from ..machine.tensor import DynamicSlice, NkiTensor, is_plain

_ids = itertools.count()


class Axis:
    """One dimension of an index grid: values start..stop-1 at `position` of `ndim`."""

    def __init__(self, size: int, position: int, ndim: int, start: int = 0):
        self.id = next(_ids)
        self.size, self.position, self.ndim, self.start = int(size), position, ndim, int(start)

    @staticmethod
    def plain(size: int, position: int, ndim: int) -> "Axis":
        """`Axis(size, position, ndim)` of an int `size`, made without the conversions
        (a whole tile's axes are made for every operand that uses the tile)."""
        a = object.__new__(Axis)
        a.id = next(_ids)
        a.size, a.position, a.ndim, a.start = size, position, ndim, 0
        return a

    def __repr__(self):
        return f"Axis#{self.id}({self.start}..{self.start + self.size}@{self.position}/{self.ndim})"


def _shape_of(axes) -> tuple:
    ndim = max((a.ndim for a in axes), default=0)
    shape = [1] * ndim
    for a in axes:
        if shape[a.position] not in (1, a.size) and a.size != 1:
            raise NkiValidationError(f"index axes of sizes {shape[a.position]} and {a.size} "
                                     f"do not broadcast at position {a.position}")
        shape[a.position] = max(shape[a.position], a.size)
    return tuple(shape)


class Index:
    """An affine index: const + sum(coef * axis value)."""

    def __init__(self, terms: dict | None = None, const: int = 0):
        self.terms = dict(terms or {})  # Axis -> coefficient
        self.const = const

    @staticmethod
    def owning(terms: dict, const: int) -> "Index":
        """An Index that takes `terms` without copying it (no Index changes its terms once
        made, so Indexes may share them: an mgrid component's int offsets do)."""
        idx = object.__new__(Index)
        idx.terms, idx.const = terms, const
        return idx

    @staticmethod
    def of(x) -> "Index":
        if isinstance(x, Index):
            return x
        if isinstance(x, (int, np.integer)) or hasattr(x, "__index__"):
            return Index({}, int(x.__index__() if hasattr(x, "__index__") else x))
        raise NkiValidationError(f"cannot use {x!r} in an index expression")

    @property
    def axes(self):
        return list(self.terms)

    @property
    def shape(self) -> tuple:
        return _shape_of(self.terms)

    def _combine(self, other, sign=1):
        if type(other) is int:  # `k * 128 + i_p`: a constant offset (Index.of's, made here)
            # the terms shared, not copied (no Index changes its terms once made): the
            # offsets of one mgrid component all have the same terms, so one Pattern
            return Index.owning(self.terms, self.const + sign * other)
        o = Index.of(other)
        terms = dict(self.terms)
        for a, c in o.terms.items():
            terms[a] = terms.get(a, 0) + sign * c
        # an axis whose coefficient cancels still spans the grid (numpy broadcasting:
        # `i - i` has the shape of `i`; every `nl.mgrid` component has the full shape)
        return Index(terms, self.const + sign * o.const)

    def __add__(self, other):
        if type(other) is int:  # (what _combine makes of it, without the calls)
            idx = object.__new__(Index)
            idx.terms, idx.const = self.terms, self.const + other
            return idx
        return self._combine(other)

    __radd__ = __add__

    def __sub__(self, other):
        return self._combine(other, -1)

    def __rsub__(self, other):
        return Index.of(other)._combine(self, -1)

    def __neg__(self):
        return Index({a: -c for a, c in self.terms.items()}, -self.const)

    def __mul__(self, k):
        if isinstance(k, Index):
            if k.terms and self.terms:
                raise NkiValidationError("index expressions must be affine: a product of "
                                         "two aranges is not")
            k, base = (k.const, self) if not k.terms else (self.const, k)
            return base * k
        k = int(k)
        return Index({a: c * k for a, c in self.terms.items()}, self.const * k)

    __rmul__ = __mul__

    def __floordiv__(self, k):
        raise NkiValidationError("index expressions must be affine: '//' on an arange is not "
                                 "supported; use a multi-dimensional index instead")

    def _cmp(self, op, other):
        return Predicate([(self - Index.of(other), op)])

    def __lt__(self, other):
        return self._cmp("<", other)

    def __le__(self, other):
        return self._cmp("<=", other)

    def __gt__(self, other):
        return self._cmp(">", other)

    def __ge__(self, other):
        return self._cmp(">=", other)

    def values(self, ranges: dict | None = None) -> np.ndarray:
        """The index values over the grid (optionally with restricted axis ranges)."""
        shape = _shape_of(self.terms)
        out = np.full(shape, self.const, dtype=np.int64)
        for a, c in self.terms.items():
            lo, hi = (ranges or {}).get(a, (0, a.size))
            sh = [1] * len(shape)
            sh[a.position] = hi - lo
            out = out + c * (a.start + np.arange(lo, hi)).reshape(sh)
        return out

    def bounds(self, ranges: dict) -> tuple[int, int]:
        lo = hi = self.const
        for a, c in self.terms.items():
            r0, r1 = ranges.get(a, (0, a.size))
            v0, v1 = c * (a.start + r0), c * (a.start + r1 - 1)
            lo += min(v0, v1)
            hi += max(v0, v1)
        return lo, hi

    def __repr__(self):
        parts = [f"{c}*{a!r}" for a, c in self.terms.items()] + [str(self.const)]
        return "Index(" + " + ".join(parts) + ")"


class Arange:
    """`nl.arange(...)` before it is placed with `[:, None]` / `[None, :]`."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        slots = [k for k in key if k is not None]
        if len(slots) != 1 or not (isinstance(slots[0], slice) and slots[0] == slice(None)):
            raise NkiValidationError("place an arange with [:, None] or [None, :]")
        pos = next(i for i, k in enumerate(key) if k is not None)
        return Index({Axis(self.stop - self.start, pos, len(key), self.start): 1})

    def _one_d(self, *_):
        raise NkiValidationError(
            "Expected arange to be at least 2-D: place it with nl.arange(n)[:, None] (partition) "
            "or nl.arange(n)[None, :] (free); a 1-D arange cannot index a tile")

    __add__ = __radd__ = __mul__ = __rmul__ = __sub__ = __rsub__ = _one_d
    __lt__ = __le__ = __gt__ = __ge__ = _one_d


def arange(*args):
    if len(args) == 1:
        return Arange(0, int(args[0]))
    if len(args) == 2:
        return Arange(int(args[0]), int(args[1]))
    raise NkiValidationError("arange(stop) or arange(start, stop)")


class _Grid(tuple):
    """What `nl.mgrid[...]` returns: a tuple of indices with .p .x .y .z names."""

    p = property(lambda self: self[0])
    x = property(lambda self: self[1])
    y = property(lambda self: self[2])
    z = property(lambda self: self[3])


class _MGrid:
    """`nl.mgrid[0:128, 0:512]`: like numpy.mgrid, a *dense* mesh grid: every component
    spans the whole grid (shape (128, 512)), varying along its own axis only."""

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        n = len(key)
        axes, steps, starts = [], [], []
        for pos, s in enumerate(key):
            start = 0 if s.start is None else int(s.start)
            step = 1 if s.step is None else int(s.step)
            size = len(range(start, int(s.stop), step))
            axes.append(Axis(size, pos, n, 0))
            steps.append(step)
            starts.append(start)
        return _Grid(Index({a: (steps[i] if j == i else 0) for j, a in enumerate(axes)},
                           starts[i]) for i in range(n))


mgrid = _MGrid()


class Predicate:
    """A conjunction of affine constraints `expr OP 0` (a legacy mask)."""

    def __init__(self, clauses, never: bool = False):
        self.clauses = list(clauses)
        self.always_false = never  # a compile-time False mask: nothing runs

    @staticmethod
    def never() -> "Predicate":
        return Predicate([], never=True)

    def __and__(self, other):
        if other is None or other is True or (isinstance(other, np.bool_) and other):
            return self
        if other is False or isinstance(other, np.bool_):
            return Predicate.never()
        return Predicate(self.clauses + other.clauses,
                         self.always_false or other.always_false)

    __rand__ = __and__

    def restrict(self, ranges: dict) -> list:
        """Narrow `ranges` (Axis -> (lo, hi)) by the single-axis clauses, in place.
        Returns the clauses over several axes (the residual mask)."""
        rest = []
        for expr, op in self.clauses:
            varying = {a: c for a, c in expr.terms.items() if c}
            if len(varying) != 1:
                rest.append((expr, op))
                continue
            (a, c), = varying.items()
            lo, hi = ranges.get(a, (0, a.size))
            # c * (a.start + j) + const OP 0: linear in j, so the j that satisfy it are
            # one run of consecutive values, from x_lo - a.start to x_hi - a.start
            x_lo, x_hi = _solved(c, expr.const, op)
            first = lo if x_lo is None else max(lo, x_lo - a.start)
            stop = hi if x_hi is None else min(hi, x_hi - a.start)
            ranges[a] = (first, stop) if first < stop else (lo, lo)
        return rest

    def evaluate(self, ranges: dict, shape) -> np.ndarray:
        m = np.ones(shape, dtype=bool)
        for expr, op in self.clauses:
            m &= np.broadcast_to(_OPS[op](expr.values(ranges), 0), shape)
        return m


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _solved(c: int, k: int, op: str) -> tuple:
    """The ints x with `c * x + k OP 0` (c nonzero) as (least, past the greatest), None
    where unbounded."""
    if c < 0:  # (-c) * x + (-k) OP' 0, OP' the flipped comparison
        c, k, op = -c, -k, _FLIPPED[op]
    if op == "<":  # x < -k / c
        return None, -(k // c)
    if op == "<=":
        return None, (-k) // c + 1
    if op == ">":
        return (-k) // c + 1, None
    return -(k // c), None  # ">="


def key_to_indices(key, shape) -> list[Index]:
    """One Index per tensor dim from a legacy index tuple: ints, slices, nl.ds and
    Ellipsis (basic: each slice becomes a new axis, in order), or arange/mgrid
    expressions (advanced: every dim indexed by an int or an expression)."""
    key = key if isinstance(key, tuple) else (key,)
    ndim = len(shape)
    plain = is_plain(key)
    if not plain and any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1:]
    if len(key) > ndim:
        raise NkiValidationError(f"too many indices ({len(key)}) for a {ndim}-D tensor")
    if not plain:
        for k in key:
            if isinstance(k, Arange):
                k._one_d()
        if any(isinstance(k, Index) and k.terms for k in key):  # advanced
            if len(key) < ndim or any(isinstance(k, (slice, DynamicSlice)) for k in key):
                raise NkiValidationError(
                    "mixing basic indexing (slices, nl.ds, omitted dims) with advanced "
                    "indexing (nl.arange / nl.mgrid) in one access is not supported; index "
                    "every dimension with an integer or an arange expression")
            return [Index.of(k) for k in key]
    key = key + (slice(None),) * (ndim - len(key))
    total = 0
    for k in key:
        if isinstance(k, (slice, DynamicSlice)):
            total += 1
    out, pos = [], 0
    for d, k in enumerate(key):
        if type(k) is int:
            out.append(Index.owning({}, k))
            continue
        if isinstance(k, slice):
            step = 1 if k.step is None else int(k.step)
            if step < 1:
                raise NkiValidationError(f"slice step {step}: only positive steps")
            start = 0 if k.start is None else int(k.start)
            stop = shape[d] if k.stop is None else int(k.stop)
            start += shape[d] if start < 0 else 0
            stop += shape[d] if stop < 0 else 0
            size = len(range(start, stop, step))
        elif isinstance(k, DynamicSlice):
            start, size, step = Index.of(k.start).const, int(k.size), int(k.step)
        else:
            out.append(Index.of(k))
            continue
        out.append(Index.owning({Axis.plain(size, pos, total): step}, start))  # (int size)
        pos += 1
    return out


def grid_axes(indices) -> list[Axis]:
    """Distinct axes of an access, one per grid position (later ones at an occupied
    position are zipped with the first)."""
    seen = first_axes([idx.terms for idx in indices])[0]
    return [seen[p] for p in sorted(seen)]


def first_axes(terms) -> tuple:
    """(grid position -> the first axis at it, the grid's rank: the most dims of those
    axes) of the indices' terms dicts `terms` (in order, each in its order)."""
    first, ndim = {}, 0
    for t in terms:
        for a in t:
            if a.position not in first:
                first[a.position] = a
                if a.ndim > ndim:
                    ndim = a.ndim
    return first, ndim


class Pattern:
    """What `resolve`, with no ranges, reads of a list of indices besides their
    constants: the first axis at each grid position (`first`), the grid's rank, and per
    index (lo, hi, start, steps): the range of its non-constant part over whole axes,
    that part's value at the first element, and its (grid position, coefficient) pairs
    of nonzero coefficient. `layouts`: per tensor layout, what `resolve_whole` makes of
    it (`layout`)."""

    __slots__ = ("terms", "first", "ndim", "sizes", "any_empty", "dims", "layouts")

    def __init__(self, terms: list):
        self.terms = terms  # (held: the memo's key is their ids)
        self.first, self.ndim = first, ndim = first_axes(terms)
        sizes = [1] * ndim
        for p, a in first.items():
            sizes[p] = a.size
        self.sizes = tuple(sizes)
        self.any_empty = any(a.size <= 0 for a in first.values())
        dims = []
        for t in terms:
            lo = hi = start = 0
            steps = []
            for a, c in t.items():
                if not c:
                    continue
                v0, low, high = _term_range(c, a.start, a.start + a.size - 1)
                lo, hi, start = lo + low, hi + high, start + v0
                steps.append((a.position, c))
            dims.append((lo, hi, start, tuple(steps)))
        self.dims = dims
        self.layouts: dict = {}

    def layout(self, tensor_strides: tuple, tensor_shape: tuple) -> tuple:
        """(shape, strides, per index (tensor stride, lo, hi, start, dim size)) of the
        view of a tensor of these strides and shape (before a grid of fewer than 2 dims
        is kept 2-D on chip), kept per layout."""
        key = (tensor_strides, tensor_shape)
        layout = self.layouts.get(key)
        if layout is None:
            strides = [0] * self.ndim
            checks = []
            for (lo, hi, start, steps), s, n in zip(self.dims, tensor_strides, tensor_shape):
                for p, c in steps:
                    strides[p] += s * c
                checks.append((s, lo, hi, start, n))
            if len(self.layouts) >= 64:
                self.layouts.clear()
            layout = self.layouts[key] = (self.sizes, tuple(strides), checks)
        return layout


_PATTERNS: dict = {}  # tuple of the ids of indices' terms dicts -> their Pattern


def pattern_of(indices, key: tuple | None = None) -> Pattern:
    """The Pattern of `indices`, kept per identity of their terms dicts (`key`: their
    ids; whole-tile accesses share their indices, and an mgrid component's offsets its
    terms)."""
    if key is None:
        key = tuple([id(idx.terms) for idx in indices])
    p = _PATTERNS.get(key)
    if p is None:
        if len(_PATTERNS) >= 4096:
            _PATTERNS.clear()
        p = _PATTERNS[key] = Pattern([idx.terms for idx in indices])
    return p


def resolve(tensor, indices, ranges: dict, par_axis: int = 0, pattern: Pattern | None = None):
    """The core view of `tensor` for one Index per dim, with axes restricted to `ranges`
    (Axis -> (lo, hi)). Bounds are checked on the restricted ranges only. An on-chip
    view keeps 2 dims: a single remaining axis is the partition dim (`t[:, k]` is [P, 1])
    when it indexes the partition dim `par_axis`, else a free dim (`t[k, :]` is [1, F]).
    With no ranges, `pattern` (the indices' Pattern) gives what depends on their axes."""
    if pattern is not None and not ranges:
        return resolve_whole(tensor, indices, par_axis, pattern)
    axes, ndim = first_axes([idx.terms for idx in indices])
    shape = [1] * ndim
    empty = False
    for p, a in axes.items():
        lo, hi = ranges.get(a, (0, a.size)) if ranges else (0, a.size)
        shape[p] = hi - lo
        empty = empty or hi <= lo
    strides = [0] * ndim
    offset = tensor.offset
    tensor_strides = tensor.strides
    for d, idx in enumerate(indices):
        s = tensor_strides[d]
        lo = hi = start = idx.const  # the index's range, and its value at the first element
        for a, c in idx.terms.items():
            if not c:  # (an mgrid component's other axes: no part in its values)
                continue
            if ranges and a in ranges:
                r0, r1 = ranges[a]
                v0, low, high = _term_range(c, a.start + r0, a.start + r1 - 1)
            else:
                v0, low, high = _term_range(c, a.start, a.start + a.size - 1)
            lo, hi, start = lo + low, hi + high, start + v0
            strides[a.position] += s * c
        if not empty and (lo < 0 or hi >= tensor.shape[d]):
            _out_of_bounds(tensor, d, lo, hi)
        offset += s * start
    if ndim < 2 and tensor.on_chip:
        shape, strides = kept_2d(shape, strides, tensor.row_elems,
                                 partition_kept(indices, par_axis))
    elif ndim == 0:
        shape, strides = [1], [1]
    return NkiTensor.view_of(tuple(shape), tensor.dtype, tensor.storage, tensor.buffer,
                             tensor.name, tuple(strides), offset, tensor.dyn)


def _term_range(c: int, first: int, last: int) -> tuple:
    """(value at the first element, least, greatest) of `c * a` over an axis's values
    `first`..`last`."""
    v0, v1 = c * first, c * last
    return (v0, v0, v1) if v0 <= v1 else (v0, v1, v0)


def _out_of_bounds(tensor, d: int, lo: int, hi: int):
    raise OutOfBoundsError(
        f"Out-of-bound access for tensor {tensor.name or '<unnamed>'} on dimension {d}: "
        f"index range [{lo}, {hi}] exceed dimension size of {tensor.shape[d]}")


def resolve_whole(tensor, indices, par_axis: int, pattern: Pattern):
    """`resolve(tensor, indices, {}, par_axis)`, the axes' part read off `pattern`."""
    if len(tensor.strides) < len(indices):  # (resolve fails where it reads past them)
        return resolve(tensor, indices, {}, par_axis)
    layout = pattern.layouts.get((tensor.strides, tensor.shape))
    if layout is None:
        layout = pattern.layout(tensor.strides, tensor.shape)
    shape, strides, checks = layout
    offset = tensor.offset
    check = not pattern.any_empty
    for d, (s, lo, hi, start, n) in enumerate(checks):
        const = indices[d].const
        if check and (const + lo < 0 or const + hi >= n):
            _out_of_bounds(tensor, d, const + lo, const + hi)
        offset += s * (const + start)
    ndim = pattern.ndim
    if ndim < 2 and tensor.on_chip:
        shape, strides = kept_2d(shape, strides, tensor.row_elems,
                                 partition_kept(indices, par_axis))
    elif ndim == 0:
        shape, strides = (1,), (1,)
    return NkiTensor.view_of(shape, tensor.dtype, tensor.storage, tensor.buffer,
                             tensor.name, strides, offset, tensor.dyn)


def partition_kept(indices, par_axis: int = 0) -> bool:
    """Whether the partition dim of an on-chip access is indexed by an axis."""
    return par_axis < len(indices) and bool(indices[par_axis].terms)


def front_dims(ndim: int, partition_kept: bool) -> int:
    """The dims of size 1 an on-chip view of a grid of `ndim` < 2 dims, kept 2-D, has
    before its axes: none where its one axis indexes the partition dim (`t[:, k]` is
    [P, 1], the dim behind it), else 2 - ndim (`t[k, :]` is [1, F])."""
    return 0 if ndim == 1 and partition_kept else 2 - ndim


def kept_2d(shape, strides, row_elems: int, partition_kept: bool) -> tuple:
    """(shape, strides) of an on-chip view of a grid under 2 dims, kept 2-D as tuples
    (`front_dims`): a dim in front steps a partition row, one behind an element."""
    front = front_dims(len(shape), partition_kept)
    back = 2 - len(shape) - front
    return ((1,) * front + tuple(shape) + (1,) * back,
            (row_elems,) * front + tuple(strides) + (1,) * back)


def empty_range(ranges: dict) -> bool:
    return any(hi <= lo for lo, hi in ranges.values())


__all__ = ["Axis", "Index", "Arange", "arange", "mgrid", "Predicate", "key_to_indices",
           "resolve", "grid_axes"]
