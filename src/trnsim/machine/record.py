"""The instruction record: what every executed instruction did, enough for the timing
model to derive dependencies (overlapping accesses) and costs without the kernel."""
from __future__ import annotations

from dataclasses import dataclass, field

from .access import Access
from .errors import SourceLocation

ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")


@dataclass(slots=True)
class Instruction:
    """One executed instruction. `attrs` may be shared by the copies loop expansion
    makes (machine/expand.py): replace an instruction's attrs, never change them in
    place."""
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
        w = self.writes
        return w[0].bytes if len(w) == 1 else sum(a.bytes for a in w)

    def to_dict(self) -> dict:
        """A JSON-ready form (for dumps and traces)."""
        return {"index": self.index, "core": self.core, "engine": self.engine,
                "queue": self.queue, "opcode": self.opcode,
                "location": str(self.location) if self.location else None,
                "reads": [a._asdict() for a in self.reads],
                "writes": [a._asdict() for a in self.writes],
                "attrs": {k: _jsonable(v) for k, v in self.attrs.items()}}

    def __str__(self) -> str:
        ops = ", ".join(f"{a.mode}:{a.role}={a.dtype}{list(a.shape)}@{a.space}"
                        for a in self.accesses)
        return f"[{self.index}] core{self.core} {self.engine}.{self.opcode}({ops}) {self.location}"


def dma_site(ins: Instruction) -> tuple:
    """A key of a DMA's queue quicker to make than its (core, queue name, source line):
    its core, queue and location object. A loop's copies share the object, and the
    program keeps it alive, so its id stays its own while a pass reads the program;
    equal keys mean the same queue (the converse need not hold: use it as a memo)."""
    return (ins.core, ins.queue, id(ins.location))


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(getattr(v, "value", v))


@dataclass(slots=True)
class Allocation:
    """An on-chip tensor the kernel declared (`nl.ndarray` and friends), as the
    compiler's allocator sees it.

    Automatic tensors (no `address=`) live at virtual addresses [vaddr, vaddr +
    row_bytes) of their memory while the kernel runs; their accesses carry the
    allocation's id (`Access.alloc`), and the allocation pass (trnsim.compiler) gives
    each of their blocks physical space from its first access to its last. A block is
    `block_bytes` of each partition: a whole tensor in the current API, one index of
    the block dims of a legacy `nl.ndarray((B, nl.par_dim(P), F))`. Explicitly placed
    tensors are already physical (`explicit`, at `vaddr`); the pass keeps other tensors
    out of their bytes while they are in use."""
    id: int
    space: str  # 'sbuf' | 'psum'
    core: int
    name: str
    shape_desc: str  # e.g. "float32[16, 4, 128, 2048]"
    dtype: str
    site: SourceLocation | None
    vaddr: int
    row_bytes: int
    block_bytes: int
    partition: int
    partitions: int
    explicit: bool
    declared_at: int  # index of the first instruction recorded after the declaration

    def field_values(self) -> list:
        """Its fields in order: `Allocation(*values)` is a copy (loop expansion's)."""
        return [getattr(self, name) for name in self.__slots__]

    @property
    def blocks(self) -> int:
        return -(-self.row_bytes // self.block_bytes)

    def label(self, block: int) -> str:
        name = self.name or "<unnamed>"
        return name if self.blocks == 1 else f"{name}[block {block}]"


@dataclass
class Program:
    """The ordered instructions of one kernel run (all cores), the on-chip tensors it
    declared (`allocations`, by id), the points the compiler may not reorder across
    (`fences`: (core, index of the first instruction after the fence)), and once the
    compiler model has run, its memory plan (`memory`: trnsim.compiler.plan.MemoryPlan)
    and issue order (`issue`: trnsim.compiler.schedule.IssueOrder)."""
    chip: object
    lnc: int = 1
    instructions: list[Instruction] = field(default_factory=list)
    allocations: dict[int, Allocation] = field(default_factory=dict)
    memory: object = None
    fences: list = field(default_factory=list)
    issue: object = None

    def fence(self, core: int) -> None:
        """Nothing recorded from now on moves before what was recorded until now."""
        self.fences.append((core, len(self.instructions)))

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
