"""The instruction record: what every executed instruction did, enough for the timing
model to derive dependencies (overlapping accesses) and costs without the kernel."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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

    def to_dict(self) -> dict:
        """A JSON-ready form (for dumps and traces)."""
        return {"index": self.index, "core": self.core, "engine": self.engine,
                "queue": self.queue, "opcode": self.opcode,
                "location": str(self.location) if self.location else None,
                "reads": [asdict(a) for a in self.reads],
                "writes": [asdict(a) for a in self.writes],
                "attrs": {k: _jsonable(v) for k, v in self.attrs.items()}}

    def __str__(self) -> str:
        ops = ", ".join(f"{a.mode}:{a.role}={a.dtype}{list(a.shape)}@{a.space}"
                        for a in self.accesses)
        return f"[{self.index}] core{self.core} {self.engine}.{self.opcode}({ops}) {self.location}"


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(getattr(v, "value", v))


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

    def write_jsonl(self, path) -> None:
        """One JSON object per instruction."""
        import json
        with open(path, "w") as f:
            for ins in self.instructions:
                f.write(json.dumps(ins.to_dict()) + "\n")
