"""The instruction record: what every executed instruction did, enough for the timing
model to derive dependencies (overlapping accesses) and costs without the kernel."""
from __future__ import annotations

from dataclasses import dataclass, field

from .access import Access
from .errors import SourceLocation

ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")


@dataclass
class Instruction:
    index: int
    core: int
    engine: str  # one of ENGINES, or 'dma' (see `queue`)
    opcode: str
    reads: tuple[Access, ...]
    writes: tuple[Access, ...]
    location: SourceLocation | None
    attrs: dict = field(default_factory=dict)
    queue: str | None = None  # DMA queue name for DMA instructions

    @property
    def accesses(self) -> tuple[Access, ...]:
        return self.reads + self.writes

    @property
    def bytes_moved(self) -> int:
        return sum(a.bytes for a in self.writes)

    def __str__(self) -> str:
        ops = ", ".join(f"{a.mode}:{a.role}={a.dtype}{list(a.shape)}@{a.space}"
                        for a in self.accesses)
        return f"[{self.index}] core{self.core} {self.engine}.{self.opcode}({ops}) {self.location}"


@dataclass
class Program:
    """The ordered instructions of one kernel run (all cores)."""
    chip: object
    lnc: int = 1
    instructions: list[Instruction] = field(default_factory=list)

    def append(self, ins: Instruction) -> None:
        self.instructions.append(ins)

    def __len__(self) -> int:
        return len(self.instructions)

    def __iter__(self):
        return iter(self.instructions)

    def by_engine(self, engine: str) -> list[Instruction]:
        return [i for i in self.instructions if i.engine == engine]

    def opcodes(self) -> list[str]:
        return [i.opcode for i in self.instructions]
