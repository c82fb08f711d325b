"""How a legacy (return-style, masked) call becomes one core instruction.

Every legacy op is `result_op(core_fn, shape, dtype, buffer, mask, operands...)`: it
returns a `Pending` result that has not run yet. The pending instruction runs
- straight into a destination when the very next thing the kernel does is assign it
  (`buf[i, ...] = nl.load(...)`) or accumulate it (`psum[...] += nisa.nc_matmul(a, b)`),
  as the legacy compiler writes results in place;
- otherwise into a fresh tile, as soon as anything else happens (the next legacy call,
  a use of the result, or the kernel's return), so program order is always kept.

Masks: single-axis constraints narrow the instruction's grid before any operand view is
built; what remains (e.g. `i_f <= i_p`) restricts the destination write.
"""
from __future__ import annotations

import inspect
from types import FunctionType

from ..isa import without_handles as core_isa
from ..machine import runtime
from ..machine.access import describe_access
from ..machine.errors import NkiValidationError, kernel_location
from ..machine.tensor import MemoryRegion, NkiTensor
from .indexing import Predicate
from .tensor import Access, LTensor, as_predicate, whole_access


class Grid:
    """The index grid an instruction runs over, narrowed by its mask.

    A mask axis narrows the operand axis that *is* that axis, and, by grid position,
    an operand axis of the same size (a tile indexed with fresh axes). Axes of other
    sizes at that position (a reduced, gathered or transposed output, a [P, 1] scalar
    operand, a matmul operand) are left whole."""

    def __init__(self, shape, mask=None):
        self.shape = tuple(shape)
        self.residual: Predicate | None = None
        self.narrowed: dict = {}  # mask Axis -> (lo, hi) its single-axis clauses cut it to
        if mask is not None:
            mask = as_predicate(mask)
        self.never = mask is not None and mask.always_false
        if mask is not None:
            narrowed = {}
            rest = mask.restrict(narrowed)
            self.residual = Predicate(rest) if rest else None
            self.narrowed = _cutting(narrowed)

    @staticmethod
    def unmasked(shape) -> "Grid":
        """`Grid(shape)`, one per shape (a grid without a mask never changes)."""
        shape = tuple(shape)
        grid = _UNMASKED.get(shape)
        if grid is None:
            if len(_UNMASKED) >= 1024:
                _UNMASKED.clear()
            grid = _UNMASKED[shape] = Grid(shape)
        return grid

    _pos = None

    @property
    def pos(self) -> dict:
        """Grid position -> the range the mask leaves of it (made when first asked: an
        instruction without a mask never asks)."""
        if self._pos is None:
            self._pos = {p: self.span(p, n) for p, n in enumerate(self.shape)}
        return self._pos

    def span(self, position, size, axis=None) -> tuple[int, int]:
        """The range the mask leaves of an axis of `size` elements at grid `position`
        (`axis`: the operand's own Axis, when it has one)."""
        if axis is not None and axis in self.narrowed:
            return self.narrowed[axis]
        lo, hi = 0, size
        for a, (a_lo, a_hi) in self.narrowed.items():
            if a.position == position and a.size == size:
                lo, hi = max(lo, a_lo), min(hi, a_hi)
        return lo, hi

    @property
    def empty(self) -> bool:
        if not self.narrowed:  # (every axis whole: (0, n))
            return self.never or min(self.shape, default=1) <= 0
        return self.never or any(hi <= lo for lo, hi in self.pos.values())

    def view(self, x):
        """The core view of operand `x` over the narrowed grid (scalars pass through)."""
        if isinstance(x, Pending):
            x = x.tile
        if isinstance(x, Access):
            if not self.narrowed:  # no mask: every axis whole, what views take by default
                return x.view({})
            ranges = {a: self.span(a.position, a.size, a)
                      for idx in x.indices for a in idx.terms}
            return x.view(ranges)
        if isinstance(x, LTensor):
            x = x.view_all()
        if isinstance(x, NkiTensor):
            if not self.narrowed:
                return x
            key = tuple(slice(*self.span(d, n)) for d, n in enumerate(x.shape))
            return x[key] if any(k != slice(0, n) for k, n in zip(key, x.shape)) else x
        return x

    def dst_mask(self):
        """The residual mask over the narrowed grid, or None."""
        if self.residual is None:
            return None
        ranges = {}
        for expr, _ in self.residual.clauses:
            for a in expr.terms:
                ranges[a] = self.span(a.position, a.size, a)
        shape = tuple(hi - lo for lo, hi in self.pos.values())
        return self.residual.evaluate(ranges, shape)


_UNMASKED: dict = {}  # shape -> `Grid.unmasked(shape)`


def _cutting(narrowed: dict) -> dict:
    """The ranges of `narrowed` (Axis -> (lo, hi)) that leave out part of their axis. A
    range left whole narrows nothing (`Grid.span` gives the same without it), so a mask
    that cuts nothing (most iterations of a masked loop) leaves its grid with no
    narrowed axis, and the instruction takes the unmasked paths."""
    return {a: r for a, r in narrowed.items() if r != (0, a.size)}


class Pending(LTensor):
    """The result of a legacy call that has not been written anywhere yet."""

    def __init__(self, execute, shape, dtype, buffer, name, accumulates=False):
        self._execute = execute  # execute(dst_access_or_view, accumulate: bool)
        self.accumulates = accumulates  # can add into its destination (matmul)
        self._shape, self._dtype, self._buffer, self._name = tuple(shape), dtype, buffer, name
        self._core = None
        self._target = None  # the Access it ran into (its view is resolved when used)
        self.site = kernel_location(2)
        run = runtime.active_run()
        if run.legacy_pending is not None:
            flush(run)
        run.legacy_pending = self

    @property
    def core(self) -> NkiTensor:
        if self._core is None:
            if self._target is not None:  # a masked write may leave the target's unmasked
                self._core = self._target.view()  # view out of bounds: resolved on use only
            else:
                self.materialize()
        return self._core

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)
    buffer = property(lambda self: self._buffer)
    name = property(lambda self: self._name)
    par_axis = 0
    unmasked = None  # (core_fn, operands) of an unmasked result_op: `materialize` runs it

    @property
    def tile(self) -> LTensor:
        return LTensor(self.core)

    def full(self) -> Access:
        """LTensor.full of the result's tile (it runs first), read off its fields."""
        core = self.core
        shape = self._shape
        if len(shape) != core.ndim:
            return self[(slice(None),) * core.ndim]
        return whole_access(self, core, shape, None)

    @property
    def done(self) -> bool:
        return self._core is not None or self._target is not None

    def _claim(self, run):
        if run.legacy_pending is self:
            run.legacy_pending = None

    def materialize(self):
        """Run into a fresh tile of the result's shape."""
        run = runtime.active_run()
        if run.legacy_pending is self:  # (self._claim(run))
            run.legacy_pending = None
        if self._core is None and self._target is None:  # (not self.done)
            # the instructions (and the tile) are the kernel line's that asked for them
            saved, run.issue_site = run.issue_site, self.site
            try:
                tile = _new_tile(run, self._shape, self._dtype, self._buffer, self._name)
                core = self._core = tile.core
                if self.unmasked is not None and len(core.shape) > 1 and min(core.shape) > 0:
                    # (the tile's whole view is its core: what run_masked makes of
                    # `tile.full()`)
                    core_fn, operands = self.unmasked
                    if run.legacy_pending is not None:
                        flush(run)
                    _run_whole(run, core_fn, core, operands, False)
                else:
                    self._execute(tile.full(), False)
            finally:
                run.issue_site = saved

    def run_into(self, target: Access, accumulate: bool):
        """Run with `target` as destination (accumulating when asked)."""
        if self._core is not None or self._target is not None or (
                accumulate and not self.accumulates):  # (self.done or ...)
            return False
        run = runtime.active_run()
        if run.legacy_pending is self:  # (self._claim(run))
            run.legacy_pending = None
        saved, run.issue_site = run.issue_site, self.site  # (as materialize)
        try:
            self._execute(target, accumulate)
        finally:
            run.issue_site = saved
        self._target = target
        return True


def _new_tile(run, shape: tuple, dtype, buffer, name) -> LTensor:
    """`ndarray(shape, dtype, buffer=buffer, name=name)`, what it does for a shape of
    ints in a plain memory region written out (every pending result allocates one)."""
    if type(buffer) is MemoryRegion:
        for n in shape:
            if type(n) is not int:
                return ndarray(shape, dtype, buffer=buffer, name=name)
        if run.legacy_pending is not None:
            flush(run)
        return LTensor(run.new_tensor(shape, dtype, buffer, name))
    return ndarray(shape, dtype, buffer=buffer, name=name)


class _issued_at:
    """Attribute the instructions run inside to the kernel line that asked for them."""

    def __init__(self, site, run):
        self.site = site
        self.run = run

    def __enter__(self):
        self.saved, self.run.issue_site = self.run.issue_site, self.site

    def __exit__(self, *exc):
        self.run.issue_site = self.saved


def flush(run=None) -> None:
    """Run the pending result (if any) into a fresh tile."""
    run = run or runtime.active_run()
    p = getattr(run, "legacy_pending", None)
    if p is not None:
        run.legacy_pending = None
        p.materialize()


def result_op(core_fn, shape, dtype, buffer, mask, name="", **operands):
    """A pending `core_fn(dst=..., **operands)` producing a tile of `shape`/`dtype`.
    Operand values that are tensors/accesses are viewed over the masked grid."""
    if mask is not None:
        mask = as_predicate(mask)
    for v in operands.values():
        if isinstance(v, Pending):
            v.core  # noqa: B018 - materialize inputs before this instruction is pending

    def execute(dst, accumulate):
        run_masked(core_fn, dst, mask, accumulate=accumulate, **operands)

    pending = Pending(execute, shape, dtype, buffer, name, _accumulates(core_fn))
    if mask is None:
        pending.unmasked = (core_fn, operands)
    return pending


def _accumulates(core_fn) -> bool:
    """Whether an instruction function takes `accumulate` (a `+=` can fold into it).
    A function with no attributes of its own (no `__wrapped__` or `__signature__`) has
    its code's parameters: kept by its code, so that a compute op's closure, made anew
    on every call (legacy/compute.py), is neither inspected nor kept once per call."""
    key = core_fn.__code__ if type(core_fn) is FunctionType and not core_fn.__dict__ \
        else core_fn
    takes = _ACCUMULATES.get(key)
    if takes is None:
        takes = _ACCUMULATES[key] = "accumulate" in inspect.signature(core_fn).parameters
    return takes


_ACCUMULATES: dict = {}  # code object or instruction function -> `_accumulates`


def run_masked(core_fn, dst, mask, accumulate=False, **operands):
    """Run `core_fn(dst=view, **views)` over the grid of `dst`, narrowed by `mask`."""
    run = runtime.active_run()
    if run.legacy_pending is not None:
        flush(run)
    if mask is None:  # (what the grid below gives without a mask: every view whole)
        if min(dst.shape, default=1) <= 0:
            return
        _run_whole(run, core_fn, dst, operands, accumulate)
        return
    grid = Grid(dst.shape, mask)
    if grid.empty:
        return
    kwargs = {k: grid.view(v) for k, v in operands.items()}
    if accumulate:
        kwargs["accumulate"] = True
    run.dst_mask = grid.dst_mask()
    try:
        core_fn(dst=grid.view(dst), **kwargs)
    finally:
        run.dst_mask = None


def _run_whole(run, core_fn, dst, operands: dict, accumulate: bool) -> None:
    """`core_fn(dst=..., **operands)` over the whole views of dst and the operands
    (made in that order: the operands first), unmasked."""
    kwargs = {k: whole_view(v) for k, v in operands.items()}
    if accumulate:
        kwargs["accumulate"] = True
    run.dst_mask = None
    try:
        core_fn(dst=whole_view(dst), **kwargs)
    finally:
        run.dst_mask = None


def whole_view(x):
    """`Grid(shape).view(x)`: the core view of operand `x` with no mask."""
    if type(x) is Access:  # (the usual operand: what the isinstance below takes)
        return x.view({})
    if isinstance(x, Pending):
        x = x.tile
    if isinstance(x, Access):
        return x.view({})
    if isinstance(x, LTensor):
        return x.view_all()
    return x


def assign(target: Access, value):
    """`tile[...] = value`: run a pending value straight into the target, else copy."""
    if isinstance(value, Pending) and value.run_into(target, accumulate=False):
        return
    flush()
    dst = target.view()
    if not isinstance(value, (LTensor, Access, NkiTensor)):
        core_isa.memset(dst=dst, value=value)
        return
    src = value.view() if isinstance(value, Access) else (
        value.view_all() if isinstance(value, LTensor) else value)
    if dst.on_chip and src.on_chip:
        core_isa.tensor_copy(dst=dst, src=src)
    else:
        core_isa.dma_copy(dst=dst, src=src)


def psum_written(view: NkiTensor) -> bool:
    """Whether an instruction has written any byte of the PSUM view `view` since its
    tensor was allocated. `psum[...] += nc_matmul(...)` onto PSUM nothing wrote starts the
    accumulation group (the compiler emits the group's first matmul with the overwrite
    flag: SDK kernels accumulate into a fresh `nl.ndarray(..., buffer=psum)` this way);
    onto written PSUM it accumulates."""
    boxes = view.storage.__dict__.get("written_boxes")  # (set on first write: access.py)
    if not boxes:
        return False
    a = describe_access(view, "dst", "r")
    p_lo, p_hi, a_lo, a_hi = a.p_lo, a.p_hi, a.lo, a.hi
    for p0, p1, lo, hi in boxes:
        if p0 < p_hi and p_lo < p1 and lo < a_hi and a_lo < hi:
            return True
    return False


def accumulate_into(target: Access, value):
    """`psum[...] += x`: a pending matmul accumulates in place; anything else is added."""
    if isinstance(value, Pending) and value.run_into(target, accumulate=True):
        return
    flush()
    dst = target.view()
    src = value.view() if isinstance(value, Access) else (
        value.view_all() if isinstance(value, LTensor) else value)
    if not isinstance(src, NkiTensor):
        core_isa.tensor_scalar(dst=dst, data=dst, op0="add", operand0=src)
        return
    if dst.space == "psum" and src.space == "psum":
        raise NkiValidationError("`+=` between two PSUM tiles: copy one to SBUF first")
    core_isa.tensor_tensor(dst=dst, data1=dst, data2=src, op="add")


# (creation.py imports this module: imported last, not inside `materialize`, where the
# import machinery would run on every call)
from .creation import ndarray  # noqa: E402
