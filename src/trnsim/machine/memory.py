"""Byte-addressed memories: each core's SBUF and PSUM arenas (partitions x bytes per
partition) with a liveness-driven allocator, and HBM tensors with their own buffers in
one virtual address space (so accesses can be compared for dependencies)."""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np

from ..numerics.dtypes import DType
from .errors import CapacityError, SourceLocation

INT_FILL = 4  # what the reference simulator writes into fresh integer tensors


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
    size: int
    name: str
    shape_desc: str
    site: SourceLocation | None
    explicit: bool


class OnChipMemory:
    """One core's SBUF or PSUM: a (partitions, bytes_per_partition) byte arena.

    Tensors without an explicit address are placed first-fit; a tensor's space is
    reused only after the tensor (and every view of it) is dead, the way the compiler
    reuses a buffer after its last use."""

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
        self._ids = itertools.count()
        self.peak_bytes = 0

    def live_bytes(self) -> int:
        return sum(b.size for b in self._blocks.values() if not b.explicit)

    def allocate(self, storage: Storage, dtype: DType, shape, address=None) -> None:
        size = storage.row_bytes
        if address is None:
            size = -(-size // self.align) * self.align
            start = self._first_fit(size)
            if start is None:
                self._overflow(storage, dtype, shape, size)
        else:
            start = int(address)
            if start % self.align and self.space == "psum":
                raise CapacityError(
                    f"PSUM tensor {storage.name!r} at address {start} is not bank-aligned "
                    f"({self.align} bytes per partition per bank)", op="ndarray")
            if start < 0 or start + size > self.bytes_per_partition:
                raise CapacityError(
                    f"tensor {storage.name!r} at address {start} with {size} bytes per "
                    f"partition ends past the {self.bytes_per_partition} bytes of "
                    f"{self.space.upper()} per partition on {self.chip_name}", op="ndarray")
        storage.address = start
        block_id = next(self._ids)
        self._blocks[block_id] = _Block(start, size, storage.name,
                                        f"{dtype}[{', '.join(map(str, shape))}]",
                                        storage.site, address is not None)
        self.peak_bytes = max(self.peak_bytes, self.live_bytes())
        rows = slice(storage.partition, storage.partition + storage.partitions)
        cols = slice(start, start + storage.row_bytes)
        pattern = fill_pattern(dtype)
        self.data[rows, cols] = np.resize(pattern, storage.row_bytes)
        self.init[rows, cols] = False
        weakref.finalize(storage, self._blocks.pop, block_id, None)

    def _first_fit(self, size: int) -> int | None:
        taken = sorted((b.start, b.start + b.size) for b in self._blocks.values())
        cursor = 0
        for lo, hi in taken:
            if lo - cursor >= size:
                return cursor
            cursor = max(cursor, -(-hi // self.align) * self.align)
        return cursor if self.bytes_per_partition - cursor >= size else None

    def _overflow(self, storage: Storage, dtype: DType, shape, size: int):
        live = sorted(self._blocks.values(), key=lambda b: -b.size)
        lines = [f"    {b.name or '<unnamed>'} {b.shape_desc}: {b.size} B/partition at "
                 f"{b.start}" + (f" (allocated at {b.site})" if b.site else "") for b in live]
        used = sum(b.size for b in live)
        unit = "banks" if self.space == "psum" else "bytes"
        raise CapacityError(
            f"{self.space.upper()} overflow on {self.chip_name} core {self.core}: tensor "
            f"{storage.name or '<unnamed>'!r} {dtype}[{', '.join(map(str, shape))}] needs "
            f"{size} bytes per partition, but {used} of {self.bytes_per_partition} are "
            f"held by {len(live)} live tensors and no free gap fits ({unit} are reused "
            f"only once a tensor is dead):\n" + "\n".join(lines), op="ndarray",
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
