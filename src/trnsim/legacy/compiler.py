"""`neuronxcc.nki.compiler` (legacy NKI 0.1): SBUF/PSUM allocation control and
compiler directives, on trnsim's core.

Allocation
----------
A tensor's `buffer=` may be
- `nl.sbuf` / `nl.psum`, `ncc.sbuf` / `ncc.psum`, or `ncc.sbuf.auto_alloc()` /
  `ncc.psum.auto_alloc()`: automatic allocation (trnsim's allocator: next-fit over the
  arena, space reused once a tensor is dead; see trnsim.machine.memory);
- `ncc.sbuf.alloc(func)` / `ncc.psum.alloc(func)`: direct allocation. `func(idx,
  pdim_size, fdim_size)` is evaluated for every logical block index `idx` of the tensor
  (the dims before `nl.par_dim`) and returns the physical tile's `(start_partition,
  byte_addr)` in SBUF, or `(bank_id, start_partition, byte_addr)` in PSUM. Each
  logical block becomes one core tensor placed at that address (core `address=`);
  blocks that map to the same location alias its bytes, so with modulo allocation
  block 2 overwrites block 0's data, as on the device (and, being a new logical tile,
  a matmul into it starts a new PSUM accumulation group);
- `ncc.sbuf.mod_alloc(base_addr=, base_partition=, num_par_tiles=, num_free_tiles=)` /
  `ncc.psum.mod_alloc(base_bank=, base_addr=, base_partition=, num_bank_tiles=, ...)`:
  direct allocation with the documented modulo scheme: block index `idx` is reduced
  modulo the tile counts (each count defaults to 1, i.e. all blocks share one tile),
  linearised row-major, and scaled by the tile size (pdim_size partitions, fdim_size
  bytes, or one PSUM bank).

A direct-allocated tensor with block dimensions is indexed block by block with integers
(`t[i]`, `t[i, j, i_p, i_f]`); each block is an ordinary tile.

Checked here: the start-partition rules (64 < P: 0; 32 < P <= 64: 0 or 64; P <= 32:
0/32/64/96), SBUF byte addresses aligned to the chip's SBUF alignment and inside the
usable SBUF, a PSUM tile within one 2 KiB bank and banks in range, and the mod_alloc
restrictions documented for the current release (base_partition 0; PSUM base_addr 0,
num_par_tiles and num_free_tiles empty or all ones).
Not checked (the simulator keeps running where the compiler would refuse): mixing
automatic and direct allocation in one kernel, and lifetime conflicts between logical
tiles that share a physical tile (the later write simply overwrites the earlier one,
as the hardware would).

Directives
----------
`allocation_scope`, `enable_stack_allocator`, `multi_buffer` and
`skip_middle_end_transformations` steer the Neuron compiler's scheduler and allocator;
trnsim's compiler model (trnsim.compiler) has no counterpart, so they are accepted and
change nothing (each says so below). `with no_reorder():` keeps its instructions in
program order.
`force_auto_alloc` is honoured: direct allocations in the kernel fall back to automatic
allocation.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import types

import numpy as np

from ..machine import runtime
from ..machine.errors import NkiValidationError, OutOfBoundsError
from ..machine.tensor import MemoryRegion
from .indexing import Index
from .tensor import LTensor, par_dim

__all__ = ["sbuf", "psum", "allocation_scope", "enable_stack_allocator", "force_auto_alloc",
           "multi_buffer", "no_reorder", "skip_middle_end_transformations"]


# -- allocation markers -----------------------------------------------------------
class _Auto:
    """`buffer=ncc.sbuf.auto_alloc()`: automatic allocation in `region`."""

    direct = False

    def __init__(self, region: MemoryRegion):
        self.region = region

    def legacy_ndarray(self, shape, dtype, name=""):
        from .creation import ndarray
        return ndarray(shape, dtype, buffer=self.region, name=name)

    def __str__(self):
        return str(self.region)

    def __repr__(self):
        return f"ncc.{self.region}.auto_alloc()"


def _split_shape(shape):
    """(block dims, partition size, free dims) of a legacy on-chip shape."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    par = next((i for i, s in enumerate(shape) if isinstance(s, par_dim)), 0)
    dims = tuple(int(s) for s in shape)
    if len(dims) - par < 2:
        raise NkiValidationError(
            f"on-chip tensor shape {dims} needs a partition dimension and at least one free "
            "dimension after it", op="ndarray")
    return dims[:par], dims[par], dims[par + 1:]


def _check_start_partition(start: int, pdim: int, where: str):
    if pdim > 64:
        allowed = (0,)
    elif pdim > 32:
        allowed = (0, 64)
    else:
        allowed = (0, 32, 64, 96)
    if start not in allowed:
        raise NkiValidationError(
            f"{where}: start_partition {start} is not allowed for a tile of {pdim} "
            f"partitions (allowed: {', '.join(map(str, allowed))}; 64 < P <= 128 starts at "
            "0, 32 < P <= 64 at 0 or 64, P <= 32 at 0/32/64/96)", op="ndarray")


def _traced_once(run):
    """Inside `nl.affine_range` / `nl.sequential_range` loops (legacy/language.py
    `_LoopRange`): the dict of placements (block idx -> location) of this direct
    allocation as the loops' first iterations computed it -- the compiler traces such a
    loop body once, so one allocation statement has one placement whatever Python state
    (an address counter advanced in the body) says in later iterations. None outside
    such loops. An allocation is identified by the kernel call stack of the statement and
    its occurrence count within the innermost loop's current iteration."""
    loops = getattr(run, "legacy_loops", None)
    if not loops:
        return None
    import sys
    from ..machine.errors import _is_machinery
    stack, f = [], sys._getframe(2)
    while f is not None:
        path = f.f_code.co_filename
        if not _is_machinery(os.path.abspath(path)):
            stack.append((path, f.f_lineno))
        f = f.f_back
    counts = loops[-1]["counts"]
    key = tuple(stack)
    n = counts.get(key, 0)
    counts[key] = n + 1
    memo = run.__dict__.setdefault("legacy_alloc_memo", {})
    first = all(lp["iteration"] == 0 for lp in loops)
    if first or (key, n) not in memo:
        memo[(key, n)] = {}
    return memo[(key, n)]


def _call_alloc(func, idx, pdim, fdim_bytes):
    """func(idx, pdim_size, fdim_size), by the documented parameter names when func takes
    them (SDK kernels pass `functools.partial(f, bank_map=...)` of a
    `f(bank_map, idx, pdim_size, fdim_size)`), else positionally."""
    import inspect
    names = ("idx", "pdim_size", "fdim_size")
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    if all(n in params and params[n].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                              inspect.Parameter.KEYWORD_ONLY)
           for n in names):
        return func(idx=idx, pdim_size=pdim, fdim_size=fdim_bytes)
    return func(idx, pdim, fdim_bytes)


class _Direct:
    """`buffer=ncc.sbuf.alloc(func)` / `ncc.psum.alloc(func)` (and mod_alloc)."""

    direct = True

    def __init__(self, region: MemoryRegion, func, desc: str):
        if not callable(func):
            raise NkiValidationError(f"ncc.{region}.alloc(func): func must be callable, got "
                                     f"{func!r}", op="ndarray")
        self.region, self.func, self.desc = region, func, desc

    def __str__(self):
        return str(self.region)

    def __repr__(self):
        return self.desc

    def _location(self, idx, pdim, fdim_bytes, tname, chip):
        """(start_partition, byte address in the arena) of logical block `idx`."""
        where = f"{self.desc} for tensor {tname!r} block {idx}"
        loc = _call_alloc(self.func, idx, pdim, fdim_bytes)
        try:
            loc = tuple(int(v) for v in loc)
        except TypeError:
            loc = ()
        if self.region is MemoryRegion.psum:
            if len(loc) != 3:
                raise NkiValidationError(f"{where}: the allocation function must return "
                                         f"(bank_id, start_partition, byte_addr), got "
                                         f"{_call_alloc(self.func, idx, pdim, fdim_bytes)!r}", op="ndarray")
            bank, part, addr = loc
            bank_bytes = chip.core.psum_bank_bytes
            banks = chip.core.psum_bytes_per_partition // bank_bytes
            if not 0 <= bank < banks:
                raise NkiValidationError(f"{where}: PSUM bank {bank} out of range (the chip "
                                         f"has {banks} banks)", op="ndarray")
            if addr < 0 or addr + fdim_bytes > bank_bytes:
                raise NkiValidationError(
                    f"{where}: a physical PSUM tile must lie within one {bank_bytes}-byte "
                    f"bank per partition; byte_addr {addr} + {fdim_bytes} bytes ends at byte "
                    f"{addr + fdim_bytes}", op="ndarray")
            _check_start_partition(part, pdim, where)
            return part, bank * bank_bytes + addr
        if len(loc) != 2:
            raise NkiValidationError(f"{where}: the allocation function must return "
                                     f"(start_partition, byte_addr), got "
                                     f"{_call_alloc(self.func, idx, pdim, fdim_bytes)!r}", op="ndarray")
        part, addr = loc
        _check_start_partition(part, pdim, where)
        align = chip.core.sbuf_align_bytes
        if addr % align:
            raise NkiValidationError(f"{where}: byte_addr {addr} is not aligned to "
                                     f"sbuf_min_align ({align} bytes)", op="ndarray")
        return part, addr

    def legacy_ndarray(self, shape, dtype, name=""):
        run = runtime.active_run()
        if getattr(run, "legacy_force_auto_alloc", False):
            return _Auto(self.region).legacy_ndarray(shape, dtype, name)
        from .ops import flush
        from ..numerics.dtypes import as_dtype
        flush()
        blocks, pdim, free = _split_shape(shape)
        dtype = as_dtype(dtype)
        fdim_bytes = math.prod(free) * dtype.itemsize
        tiles = {}
        replay = _traced_once(run)
        for idx in np.ndindex(*blocks) if blocks else [()]:
            idx = tuple(int(i) for i in idx)
            if replay is not None and idx in replay:
                loc = replay[idx]
            else:
                loc = self._location(idx, pdim, fdim_bytes, name, run.chip)
                if replay is not None:
                    replay[idx] = loc
            # One core tensor per logical block, at its physical tile's address: blocks
            # on one physical tile alias its bytes, and each block is its own tensor (a
            # new logical tile starts a new PSUM accumulation group, as on the device).
            label = name if not blocks else f"{name or 'tensor'}{list(idx)}"
            tiles[idx] = LTensor(run.new_tensor((pdim,) + free, dtype, self.region, label,
                                                address=loc))
        if not blocks:
            return tiles[()]
        return BlockTensor(blocks, pdim, free, tiles, name)


class BlockTensor(LTensor):
    """A direct-allocated tensor with block dimensions: one core tensor per logical block,
    placed at its physical tile (blocks on one tile alias its bytes); `t[i, ...]`
    indexes logical block i (an integer per block dim)."""

    def __init__(self, blocks, pdim, free, tiles: dict, name=""):
        first = next(iter(tiles.values()))
        super().__init__(first.core, par_axis=len(blocks))
        self.blocks, self.tiles, self._name = tuple(blocks), tiles, name
        self._shape = tuple(blocks) + (pdim,) + tuple(free)

    shape = property(lambda self: self._shape)
    ndim = property(lambda self: len(self._shape))
    name = property(lambda self: self._name)

    def __repr__(self):
        locs = {(t.core.storage.partition, t.core.storage.address) for t in self.tiles.values()}
        return (f"BlockTensor({self._name!r}, {self.dtype}{list(self._shape)}, "
                f"{len(locs)} physical tiles)")

    def block(self, idx) -> LTensor:
        """The tile holding logical block `idx` (a tuple of ints)."""
        return self.tiles[tuple(idx)]

    def _split_key(self, key):
        key = key if isinstance(key, tuple) else (key,)
        nb = len(self.blocks)
        head, rest = key[:nb], key[nb:]
        idx = []
        for d, k in enumerate(head):
            if isinstance(k, Index) and not k.terms:
                k = k.const
            if k is Ellipsis or not isinstance(k, (int, np.integer)) or isinstance(k, bool):
                raise NkiValidationError(
                    f"direct-allocated tensor {self._name!r} of shape {self._shape}: index "
                    f"its {nb} block dimension(s) with integers (got {k!r} for dimension {d}); "
                    "each logical block is a separate physical tile", op="index")
            k = int(k)
            if not 0 <= k < self.blocks[d]:
                raise OutOfBoundsError(
                    f"Out-of-bound access for tensor {self._name or '<unnamed>'} on dimension "
                    f"{d}: index range [{k}, {k}] exceed dimension size of {self.blocks[d]}",
                    op="index")
            idx.append(k)
        if len(idx) < nb:
            raise NkiValidationError(
                f"direct-allocated tensor {self._name!r} of shape {self._shape}: index all "
                f"{nb} block dimensions (got {len(idx)})", op="index")
        return tuple(idx), rest

    def __getitem__(self, key):
        idx, rest = self._split_key(key)
        tile = self.tiles[idx]
        return tile[rest] if rest else tile.full()

    def __setitem__(self, key, value):
        idx, rest = self._split_key(key)
        tile = self.tiles[idx]
        tile[rest if rest else (slice(None),) * tile.ndim] = value

    def _whole(self, what):
        raise NkiValidationError(f"{what} of direct-allocated tensor {self._name!r} with block "
                                 f"dimensions {self.blocks}: index a block first", op=what)

    def reshape(self, shape):
        self._whole("reshape")

    def view(self, dtype):
        self._whole("view")

    def expand_dims(self, axis):
        self._whole("expand_dims")

    def broadcast_to(self, shape):
        self._whole("broadcast_to")


# -- the nki.compiler.sbuf / nki.compiler.psum modules ------------------------------
class _AllocModule(types.ModuleType):
    """`ncc.sbuf` / `ncc.psum`: a module of allocation functions that is also, used as a
    `buffer=`, automatic allocation (the documented alias of `auto_alloc()`)."""

    region: MemoryRegion

    def legacy_ndarray(self, shape, dtype, name=""):
        return _Auto(self.region).legacy_ndarray(shape, dtype, name)

    def __str__(self):
        return str(self.region)


def _modulo(idx, counts, scale, base, what):
    """base + scale * row-major linear index of (idx mod counts); counts () = all 1."""
    counts = tuple(int(c) for c in counts) if counts else (1,) * len(idx)
    if not idx:
        # a tensor without block dimensions is one physical tile: the documented reference
        # modulo function (which mod_alloc "is equivalent to") zips any counts away, and
        # SDK tutorials pass num_free_tiles=(n,) for such tensors
        counts = ()
    if len(counts) != len(idx):
        raise NkiValidationError(f"{what}={counts} must be empty or have one entry per block "
                                 f"dimension ({len(idx)})", op="ndarray")
    if any(c < 1 for c in counts):
        raise NkiValidationError(f"{what}={counts}: tile counts must be positive", op="ndarray")
    linear = 0
    for i, c in zip(idx, counts):
        linear = linear * c + i % c
    return base + linear * scale


def _sbuf_alloc(func):
    r"""Allocate SBUF space for each logical block of a tensor with `func(idx, pdim_size,
    fdim_size) -> (start_partition, byte_addr)` (see this module's docstring)."""
    return _Direct(MemoryRegion.sbuf, func, f"ncc.sbuf.alloc({getattr(func, '__name__', func)})")


def _sbuf_mod_alloc(*, base_addr, base_partition=0, num_par_tiles=(), num_free_tiles=()):
    r"""Modulo allocation in SBUF: block `idx` goes to partition `base_partition +
    lin(idx % num_par_tiles) * pdim_size`, byte `base_addr + lin(idx % num_free_tiles) *
    fdim_size` (`lin` = row-major linear index; an empty tuple means one tile)."""
    if int(base_partition) != 0:
        raise NkiValidationError(f"ncc.sbuf.mod_alloc: base_partition={base_partition}; it "
                                 "must be 0 in the current release", op="ndarray")
    npar, nfree = tuple(num_par_tiles), tuple(num_free_tiles)

    def func(idx, pdim_size, fdim_size):
        return (_modulo(idx, npar, pdim_size, int(base_partition), "num_par_tiles"),
                _modulo(idx, nfree, fdim_size, int(base_addr), "num_free_tiles"))

    return _Direct(MemoryRegion.sbuf, func,
                   f"ncc.sbuf.mod_alloc(base_addr={base_addr}, num_par_tiles={npar}, "
                   f"num_free_tiles={nfree})")


def _sbuf_auto_alloc():
    r"""Automatic SBUF allocation (what `buffer=nl.sbuf` means)."""
    return _Auto(MemoryRegion.sbuf)


def _psum_alloc(func):
    r"""Allocate PSUM space for each logical block of a tensor with `func(idx, pdim_size,
    fdim_size) -> (bank_id, start_partition, byte_addr)`; a tile stays within one bank."""
    return _Direct(MemoryRegion.psum, func, f"ncc.psum.alloc({getattr(func, '__name__', func)})")


def _psum_mod_alloc(*, base_bank, base_addr=0, base_partition=0, num_bank_tiles=(),
                    num_par_tiles=(), num_free_tiles=()):
    r"""Modulo allocation in PSUM: block `idx` goes to bank `base_bank +
    lin(idx % num_bank_tiles)`; base_addr and base_partition must be 0 and num_par_tiles /
    num_free_tiles empty or all ones in the current release."""
    if int(base_addr) != 0 or int(base_partition) != 0:
        raise NkiValidationError(
            f"ncc.psum.mod_alloc: base_addr={base_addr}, base_partition={base_partition}; "
            "both must be 0 in the current release", op="ndarray")
    for what, v in (("num_par_tiles", num_par_tiles), ("num_free_tiles", num_free_tiles)):
        if any(int(c) != 1 for c in v):
            raise NkiValidationError(f"ncc.psum.mod_alloc: {what}={tuple(v)} must be empty or "
                                     "(1, 1, ...) in the current release", op="ndarray")
    nbank = tuple(num_bank_tiles)

    def func(idx, pdim_size, fdim_size):
        return (_modulo(idx, nbank, 1, int(base_bank), "num_bank_tiles"), 0, 0)

    return _Direct(MemoryRegion.psum, func,
                   f"ncc.psum.mod_alloc(base_bank={base_bank}, num_bank_tiles={nbank})")


def _psum_auto_alloc():
    r"""Automatic PSUM allocation (what `buffer=nl.psum` means)."""
    return _Auto(MemoryRegion.psum)


def _alloc_module(region: MemoryRegion, funcs: dict) -> _AllocModule:
    name = f"{__name__}.{region}"
    mod = _AllocModule(name, f"`neuronxcc.nki.compiler.{region}`: {region.name.upper()} "
                             "allocation (alloc, mod_alloc, auto_alloc); used as `buffer=`, "
                             "automatic allocation.")
    mod.region = region
    for public, fn in funcs.items():
        fn.__name__ = fn.__qualname__ = public
        fn.__module__ = name
        setattr(mod, public, fn)
    mod.__all__ = list(funcs)
    sys.modules.setdefault(name, mod)
    return sys.modules[name]


sbuf = _alloc_module(MemoryRegion.sbuf, {"alloc": _sbuf_alloc, "mod_alloc": _sbuf_mod_alloc,
                                         "auto_alloc": _sbuf_auto_alloc})
psum = _alloc_module(MemoryRegion.psum, {"alloc": _psum_alloc, "mod_alloc": _psum_mod_alloc,
                                         "auto_alloc": _psum_auto_alloc})


# -- directives -----------------------------------------------------------------
class _Directive(contextlib.ContextDecorator):
    """A compiler directive object: usable as `with d:`, as a decorator, and as
    `directives=d` of a loop. It changes nothing on the simulator."""

    def __init__(self, kind, **params):
        self.kind, self.params = kind, params

    def __enter__(self):
        if self.kind == "no_reorder":
            self._order = runtime.program_order()
            self._order.__enter__()
        return self

    def __exit__(self, *exc):
        order = self.__dict__.pop("_order", None)
        if order is not None:
            order.__exit__(*exc)
        return False

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.kind}({args})"


def allocation_scope():
    r"""An allocation scope (`with ncc.allocation_scope(): ...`). The simulator frees a
    tensor's space once the tensor is dead, whatever the scope, so this is a no-op."""
    return _Directive("allocation_scope")


def multi_buffer(factor=2):
    r"""A multi-buffering directive for a loop (`directives=ncc.multi_buffer(3)`). A no-op
    on the simulator: its allocator already rotates a loop's tiles through free space
    (next-fit), and its scheduler interleaves iterations as far as that reuse allows."""
    if int(factor) < 1:
        raise NkiValidationError(f"multi_buffer(factor={factor}): factor must be >= 1")
    return _Directive("multi_buffer", factor=int(factor))


def no_reorder():
    r"""An operation-order guard (`with ncc.no_reorder():`): the instructions inside keep
    their program order in the compiler model's scheduler. As a loop's
    `directives=ncc.no_reorder()` it is accepted and changes nothing."""
    return _Directive("no_reorder")


def _decorator(func, wrap):
    """Apply `wrap` to func, or return a decorator when func is None."""
    if func is None:
        return wrap
    return wrap(func)


def enable_stack_allocator(func=None, log_level=50):
    r"""Ask the compiler for its stack allocator. A no-op on the simulator, which places
    tensors with its own allocator (trnsim.machine.memory); returns the kernel unchanged."""
    return _decorator(func, lambda f: f)


def skip_middle_end_transformations(func=None):
    r"""Skip the compiler's middle-end transformations. A no-op: the simulator runs the
    kernel as written; returns the kernel unchanged."""
    return _decorator(func, lambda f: f)


def force_auto_alloc(func=None):
    r"""Run the kernel with automatic allocation: any direct allocation
    (`ncc.sbuf.alloc`, `mod_alloc`, PSUM variants) inside it is ignored and the tensor is
    placed by the automatic allocator. Honoured by the simulator."""

    def wrap(f):
        from .jit import LegacyKernel
        if isinstance(f, LegacyKernel):
            return f.with_options(force_auto_alloc=True)

        @functools.wraps(f)
        def inner(*args, **kwargs):
            if runtime.current_run() is None:
                return LegacyKernel(f, force_auto_alloc=True)(*args, **kwargs)
            run = runtime.active_run()
            saved = getattr(run, "legacy_force_auto_alloc", False)
            run.legacy_force_auto_alloc = True
            try:
                return f(*args, **kwargs)
            finally:
                run.legacy_force_auto_alloc = saved
        return inner

    return _decorator(func, wrap)
