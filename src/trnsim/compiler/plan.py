"""What the compiler model's allocator decided (trnsim.compiler.allocation): where
each on-chip block lived and when, the spills, and the memory in use over time."""
from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..machine.record import Allocation


@dataclass(slots=True)
class Placement:
    """One stay of a block at one physical address: instructions [first, last] of the
    compiled program (last is None while it is still there)."""
    alloc: int
    block: int
    start: int
    size: int  # bytes per partition it holds (footprint)
    first: int
    last: int | None = None


@dataclass(slots=True)
class Spill:
    kind: str  # 'save' | 'reload'
    alloc: int
    block: int
    bytes: int
    index: int  # the DMA's index in the compiled program


class Steps(Sequence):
    """A step series: (instruction index, value) pairs, kept in two arrays (a list of
    tuples took ~90 bytes a step; the allocator notes one at every placement and
    release)."""
    __slots__ = ("at", "value")

    def __init__(self, steps=()):
        self.at, self.value = array("q"), array("q")
        for at, value in steps:
            self.note(at, value)

    def note(self, at: int, value: int) -> None:
        """`value` from instruction `at` on (replacing a step noted at `at` already)."""
        if self.at and self.at[-1] == at:
            self.value[-1] = value
        else:
            self.at.append(at)
            self.value.append(value)

    def __len__(self) -> int:
        return len(self.at)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return list(zip(self.at[k], self.value[k]))
        return self.at[k], self.value[k]

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Steps({list(self)!r})"


_CHUNK = 1 << 16  # placements made from columns at a time


@dataclass(slots=True, eq=False)
class PlacementColumns:
    """Placements as int64 arrays, one entry per placement in order (the compiled
    allocator makes them in bulk; most runs never read a Placement)."""
    alloc: np.ndarray
    block: np.ndarray
    start: np.ndarray
    size: np.ndarray
    first: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return len(self.alloc)

    def placements(self) -> list[Placement]:
        """The same placements as Placement objects."""
        out: list[Placement] = []
        for c in range(0, len(self), _CHUNK):  # (a chunk's fields as lists at a time)
            part = slice(c, c + _CHUNK)
            out += map(Placement, self.alloc[part].tolist(), self.block[part].tolist(),
                       self.start[part].tolist(), self.size[part].tolist(),
                       self.first[part].tolist(), self.last[part].tolist())
        return out


@dataclass(eq=False)
class MemoryPlan:
    """What the allocator decided: every block's placements over time (explicitly placed
    tensors too, as one placement each), the spills, and per (space, core) the bytes per
    partition its blocks hold after each instruction (`usage`: a step series of
    (instruction index, bytes)) and their peak (explicit tensors not counted).

    `placements` is a list the Python allocator appends to; a plan made with
    `placement_columns` (the compiled allocator's) makes that list from them when it is
    first read, and pickles the columns alone."""
    allocations: dict[int, Allocation]
    capacity: dict[tuple, int]
    spills: list[Spill] = field(default_factory=list)
    usage: dict[tuple, Steps] = field(default_factory=dict)
    peak: dict[tuple, int] = field(default_factory=dict)
    placement_columns: PlacementColumns | None = field(default=None, repr=False)
    _placements: list[Placement] | None = field(default=None, init=False, repr=False)

    @property
    def placements(self) -> list[Placement]:
        if self._placements is None:
            columns = self.placement_columns
            self._placements = [] if columns is None else columns.placements()
        return self._placements

    def __eq__(self, other) -> bool:
        if not isinstance(other, MemoryPlan):
            return NotImplemented
        return (self.allocations == other.allocations and self.capacity == other.capacity
                and self.placements == other.placements and self.spills == other.spills
                and self.usage == other.usage and self.peak == other.peak)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.placement_columns is not None:
            state["_placements"] = None  # (made again from the columns when read)
        return state

    def spill_bytes(self, kind: str) -> int:
        return sum(s.bytes for s in self.spills if s.kind == kind)

    def tensors(self) -> list[dict]:
        """Per allocation: its blocks' placements and its spill bytes (a table for
        people: `profile.memory_table()`)."""
        rows = []
        by_alloc: dict[int, list] = {}
        for p in self.placements:
            by_alloc.setdefault(p.alloc, []).append(p)
        for aid, alloc in self.allocations.items():
            spills = [s for s in self.spills if s.alloc == aid]
            rows.append({
                "tensor": alloc.name or "<unnamed>", "shape": alloc.shape_desc,
                "space": alloc.space, "core": alloc.core, "allocated_at": str(alloc.site or ""),
                "explicit": alloc.explicit, "blocks": alloc.blocks,
                "block_bytes_per_partition": alloc.block_bytes,
                "placements": [(p.block, p.start, p.first, p.last)
                               for p in by_alloc.get(aid, [])],
                "spill_save_bytes": sum(s.bytes for s in spills if s.kind == "save"),
                "spill_reload_bytes": sum(s.bytes for s in spills if s.kind == "reload")})
        return rows
