"""Byte-addressed memories: each core's SBUF and PSUM arenas (partitions x bytes per
partition) with a liveness-driven allocator, and HBM tensors with their own buffers in
one virtual address space (so accesses can be compared for dependencies)."""
from __future__ import annotations

import functools
import gc
import itertools
import weakref
from dataclasses import dataclass

import numpy as np

from ..numerics.dtypes import DType
from .errors import CapacityError, SourceLocation

INT_FILL = 4  # what the reference simulator writes into fresh integer tensors
_MAX_LISTED = 24  # live tensors listed in a capacity error


@functools.lru_cache(maxsize=256)
def _fill_row(dtype: DType, nbytes: int) -> np.ndarray:
    """The fill pattern repeated over `nbytes` (read-only; shared)."""
    row = np.resize(fill_pattern(dtype), nbytes)
    row.flags.writeable = False
    return row


def fill_pattern(dtype: DType) -> np.ndarray:
    """The bytes fresh memory of this dtype holds: NaN for floats, a sentinel for ints."""
    if dtype.is_float:
        return np.array([np.nan], dtype=np.float32).astype(dtype.np).view(np.uint8)
    return np.array([INT_FILL], dtype=dtype.np).view(np.uint8)


@dataclass(eq=False)
class Storage:
    """The memory under a tensor and all its views.

    On-chip: partitions [partition, partition + partitions) x bytes [address,
    address + row_bytes) of `memory`. HBM: bytes [0, row_bytes) of its own buffer,
    placed at `address` in the core group's virtual HBM address space."""
    space: str  # 'sbuf' | 'psum' | 'hbm'
    name: str
    core: int
    address: int
    row_bytes: int
    partition: int = 0
    partitions: int = 1
    memory: "OnChipMemory | None" = None
    buf: np.ndarray | None = None  # HBM only: this tensor's bytes
    init: np.ndarray | None = None  # HBM only: which bytes were written
    buffer_name: str = ""  # the NKI buffer it was created in (e.g. shared_hbm)
    base_shape: tuple = ()  # shape of the tensor it was created as
    base_dtype: DType | None = None
    site: SourceLocation | None = None

    @property
    def on_chip(self) -> bool:
        return self.space != "hbm"

    @property
    def data(self) -> np.ndarray:
        return self.memory.data if self.on_chip else self.buf

    @property
    def initialized(self) -> np.ndarray:
        return self.memory.init if self.on_chip else self.init

    @property
    def arena_row_bytes(self) -> int:
        """Bytes between consecutive partitions in `data` (on-chip only)."""
        return self.memory.bytes_per_partition


@dataclass
class _Block:
    start: int
    size: int  # bytes per partition the allocation holds (its footprint)
    name: str
    shape_desc: str
    site: SourceLocation | None
    explicit: bool
    p_lo: int = 0
    p_hi: int = 0
    nbytes: int = 0  # bytes per partition the tensor itself covers


class LivenessPlanError(RuntimeError):
    """A run did not follow the liveness plan of its probe run (an allocation was
    accessed after the last use the probe recorded); see OnChipMemory.last_use."""


class OnChipMemory:
    """One core's SBUF or PSUM: a (partitions, bytes_per_partition) byte arena.

    Tensors without an explicit address are placed next-fit at `align`-byte
    boundaries (a PSUM tile starts on a bank boundary and holds the rest of its last
    bank, so a [128, 1] fp32 PSUM tile takes a whole 2 KiB bank): the search starts
    just past the most recent automatic allocation and wraps around to the start of
    the arena, so freed space is reused as late as possible. A tile allocated in a loop
    body therefore gets a different buffer in each iteration while space lasts (the
    rotating buffers the compiler gives a loop so that iterations can overlap), and
    comes back to the first one only when the arena is used up. A tensor's space is
    reused only after the tensor (and every view of it) is dead -- garbage-collected,
    the way the compiler reuses a buffer after its last use. Fresh space holds the
    fill pattern (NaN / 4) and counts as unwritten for strict mode.

    A tensor with an explicit `address=` is placed exactly there, may overlap other
    tensors (that is how kernels alias memory), and keeps the bytes of any live
    tensor it overlaps; automatic placements avoid it while it lives."""

    def __init__(self, space: str, core: int, partitions: int, bytes_per_partition: int,
                 align: int, chip_name: str):
        self.space = space
        self.core = core
        self.partitions = partitions
        self.bytes_per_partition = bytes_per_partition
        self.align = align
        self.chip_name = chip_name
        self.data = np.zeros((partitions, bytes_per_partition), dtype=np.uint8)
        self.init = np.zeros((partitions, bytes_per_partition), dtype=bool)
        self._blocks: dict[int, _Block] = {}
        self._dead: list[int] = []  # filled by finalizers; reaped before each use
        self._ids = itertools.count()
        self.peak_bytes = 0
        self._cursor = 0  # next-fit: where the search for the next placement starts
        # Compiler (last-use) liveness, used by the legacy front end (legacy/jit.py).
        # With a `clock` (the index the next recorded instruction will get), a probe run
        # notes the last instruction that accesses each allocation (`last_touch`, by
        # allocation ordinal; `log`: each allocation's size). A later run of the same
        # kernel given that plan (`last_use`, `plan_log`) frees an allocation once its
        # last instruction has been recorded, as the compiler's allocator reuses a
        # buffer after its last use, rather than when the tensor is garbage-collected.
        # `unbounded` (probe runs, numerics off) places what does not fit at address 0, over
        # other tensors (nothing reads data in a probe run; only accesses are noted).
        self.clock = None
        self.last_touch: dict[int, int] = {}
        self.log: list[tuple[int, str]] = []
        self.last_use: dict[int, float] | None = None
        self.plan_log: list[tuple[int, str]] | None = None
        self.expired: set[int] = set()  # freed by the plan: no access may follow
        self.unbounded = False
        # Fresh space gets the fill pattern and counts as unwritten; a run without
        # numerics never reads memory values, and turns this off (runtime.Run).
        self.fill_fresh = True

    def _reap(self) -> None:
        """Free the blocks of tensors that died. (Finalizers only queue the id, so a
        collection during an iteration over the blocks cannot change them.)"""
        while self._dead:
            self._blocks.pop(self._dead.pop(), None)

    def live_bytes(self) -> int:
        self._reap()
        return sum(b.size for b in self._blocks.values() if not b.explicit)

    def live(self) -> list[_Block]:
        """The live allocations, by address."""
        self._reap()
        return sorted(self._blocks.values(), key=lambda b: (b.start, b.p_lo))

    def _footprint(self, start: int, nbytes: int) -> int:
        """Bytes per partition an allocation of `nbytes` at `start` holds: up to the
        next alignment boundary (the rest of a PSUM bank), clipped at the arena end."""
        end = -(-(start + nbytes) // self.align) * self.align
        return min(end, self.bytes_per_partition) - start

    def note_access(self, storage: Storage) -> None:
        """An instruction being built accesses `storage` (see `clock`)."""
        if self.clock is None:
            return
        bid = getattr(storage, "block_id", None)
        if bid is None:
            return
        if bid in self.expired:
            raise LivenessPlanError(
                f"{self.space} tensor {storage.name or '<unnamed>'!r} (allocation {bid}) was "
                "accessed after the last use its liveness plan recorded")
        self.last_touch[bid] = self.clock()

    def _expire(self, shape_desc: str, nbytes: int) -> None:
        """With a liveness plan: free the allocations past their last use. The plan
        stops applying (from here on) if this run's allocations diverge from it."""
        if self.last_use is None:
            return
        ordinal = len(self.log)
        plan = self.plan_log
        if plan is not None and (ordinal >= len(plan) or plan[ordinal] != (nbytes, shape_desc)):
            self.last_use = self.plan_log = None
            return
        now = self.clock()
        for bid in [b for b in self._blocks if self.last_use.get(b, float("inf")) < now]:
            del self._blocks[bid]
            self.expired.add(bid)

    def allocate(self, storage: Storage, dtype: DType, shape, address=None) -> None:
        self._reap()
        nbytes = storage.row_bytes
        shape_desc = f"{dtype}[{', '.join(map(str, shape))}]"
        self._expire(shape_desc, nbytes)
        self.log.append((nbytes, shape_desc))
        explicit = address is not None
        if not explicit:
            start = self._next_fit(nbytes)
            if start is None and not self.unbounded:  # (a probe run's placement is moot)
                gc.collect()  # dead tensors caught in reference cycles
                self._reap()
                start = self._next_fit(nbytes)
            if start is None and self.unbounded and nbytes <= self.bytes_per_partition:
                start = 0  # probe run (numerics off): overlap what is there, nothing reads it
            if start is None:
                self._overflow(storage, dtype, shape, nbytes)
            self._cursor = start + self._footprint(start, nbytes)
        else:
            start = int(address)
            if start % self.align and self.space == "psum":
                raise CapacityError(
                    f"PSUM tensor {storage.name or '<unnamed>'!r} "
                    f"{dtype}[{', '.join(map(str, shape))}] at address {start} is not "
                    f"bank-aligned (PSUM addresses are multiples of the {self.align}-byte "
                    "bank per partition)", op="ndarray", location=storage.site)
            if start < 0 or start + nbytes > self.bytes_per_partition:
                raise CapacityError(
                    f"tensor {storage.name or '<unnamed>'!r} "
                    f"{dtype}[{', '.join(map(str, shape))}] at address {start} with "
                    f"{nbytes} bytes per partition ends at byte {start + nbytes}, past the "
                    f"{self.bytes_per_partition} bytes of {self.space.upper()} per partition "
                    f"on {self.chip_name}", op="ndarray", location=storage.site)
        storage.address = start
        block_id = next(self._ids)
        storage.block_id = block_id
        rows = slice(storage.partition, storage.partition + storage.partitions)
        cols = slice(start, start + nbytes)
        # Explicitly placed tensors alias: keep the bytes of live tensors they overlap.
        kept = []
        if explicit:
            for b in list(self._blocks.values()):
                lo, hi = max(start, b.start), min(start + nbytes, b.start + b.nbytes)
                plo = max(storage.partition, b.p_lo)
                phi = min(storage.partition + storage.partitions, b.p_hi)
                if lo < hi and plo < phi:
                    r, c = slice(plo, phi), slice(lo, hi)
                    kept.append((r, c, self.data[r, c].copy(), self.init[r, c].copy()))
        if self.fill_fresh:
            self.data[rows, cols] = _fill_row(dtype, nbytes)
            self.init[rows, cols] = False
            for r, c, data, init in kept:
                self.data[r, c] = data
                self.init[r, c] = init
        self._blocks[block_id] = _Block(
            start, self._footprint(start, nbytes), storage.name, shape_desc, storage.site,
            explicit,
            storage.partition, storage.partition + storage.partitions, nbytes)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes())
        weakref.finalize(storage, self._dead.append, block_id)

    def _gaps(self) -> list[tuple[int, int]]:
        """The free [lo, hi) byte ranges per partition, by address (lo aligned)."""
        taken = sorted((b.start, b.start + b.size) for b in list(self._blocks.values()))
        gaps, cursor = [], 0
        for lo, hi in taken:
            if lo > cursor:
                gaps.append((cursor, lo))
            cursor = max(cursor, -(-hi // self.align) * self.align)
        if cursor < self.bytes_per_partition:
            gaps.append((cursor, self.bytes_per_partition))
        return gaps

    def _next_fit(self, nbytes: int) -> int | None:
        """The first aligned start at or after the cursor where `nbytes` fit, else
        (wrapping around) the first from the arena start; None when no gap fits."""
        gaps = self._gaps()
        cursor = -(-self._cursor // self.align) * self.align
        for lo, hi in gaps:
            start = max(lo, cursor)
            if hi - start >= nbytes:
                return start
        for lo, hi in gaps:
            if hi - lo >= nbytes:
                return lo
        return None

    def _overflow(self, storage: Storage, dtype: DType, shape, nbytes: int):
        live = self.live()
        used = sum(b.size for b in live)
        if self.space == "psum":
            banks = -(-nbytes // self.align)
            need = (f"needs {banks} PSUM bank{'s' if banks > 1 else ''} ({nbytes} bytes per "
                    f"partition, a bank is {self.align})")
            held = (f"{used // self.align} of {self.bytes_per_partition // self.align} banks "
                    f"are held by {len(live)} live tensor{'s' if len(live) != 1 else ''}")
        else:
            need = f"needs {nbytes} bytes per partition"
            held = (f"{used} of the {self.bytes_per_partition} usable bytes per partition "
                    f"are held by {len(live)} live tensor{'s' if len(live) != 1 else ''}")
        shown = live
        if len(live) > _MAX_LISTED:  # the largest ones, in address order
            big = sorted(live, key=lambda b: -b.size)[:_MAX_LISTED]
            shown = [b for b in live if any(b is x for x in big)]
        lines = [f"    {b.name or '<unnamed>'} {b.shape_desc}: {b.size} B/partition at byte "
                 f"{b.start}" + (f", allocated at {b.site}" if b.site else "")
                 + (" (explicit address)" if b.explicit else "") for b in shown]
        if len(shown) < len(live):
            rest = [b for b in live if not any(b is x for x in shown)]
            lines.append(f"    ... and {len(rest)} smaller tensors holding "
                         f"{sum(b.size for b in rest)} B/partition")
        raise CapacityError(
            f"{self.space.upper()} overflow on {self.chip_name} core {self.core}: tensor "
            f"{storage.name or '<unnamed>'!r} {dtype}[{', '.join(map(str, shape))}] {need}, "
            f"but {held} and no free gap fits " + (
                "(even with compiler liveness: each tensor's space freed after its last "
                "use)" if self.last_use is not None else
                "(space is reused only once a tensor is dead, i.e. no longer referenced)")
            + ":\n" + "\n".join(lines), op="ndarray",
            location=storage.site)


class HbmSpace:
    """Virtual HBM addresses for a group of cores; each tensor keeps its own buffer."""

    ALIGN = 512

    def __init__(self):
        self._next = 0

    def place(self, nbytes: int) -> int:
        addr = self._next
        self._next += -(-max(nbytes, 1) // self.ALIGN) * self.ALIGN
        return addr
