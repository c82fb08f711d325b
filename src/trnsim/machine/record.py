"""The instruction record: what every executed instruction did, enough for the timing
model to derive dependencies (overlapping accesses) and costs without the kernel."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from .access import Access
from .errors import SourceLocation

ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")
_INT32 = 1 << 31


def fits_int32(values: np.ndarray) -> bool:
    """Whether `values` (an int array) has items and all of them fit int32."""
    return bool(values.size) and bool(-_INT32 <= values.min() and values.max() < _INT32)


def identities(objects, count: int = -1) -> np.ndarray:
    """id() of each of `objects` (a list, or an iterable of `count` items), read off an
    object array's pointers: map(id, ...) would make an int object per item (~4x
    slower). The array keeps the objects alive, so equal ids mean the same object; it
    is the result's `.base` (where a caller wants the objects as an array too)."""
    if count < 0:
        count = len(objects)
    return np.frombuffer(np.fromiter(objects, object, count), np.intp)


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal items of the 1-d array `values` starts (0 for none)."""
    return np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))


def distinct_rows(keys: np.ndarray) -> tuple:
    """(first, inverse): the distinct rows of the int array `keys`, each as the index
    of its first row (lexsort is stable), and each row's number among them
    (np.unique(axis=0), quicker)."""
    order = np.lexsort(keys.T)
    ordered = keys[order]
    starts = np.ones(len(keys), np.bool_)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    inverse = np.empty(len(keys), np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return order[starts], inverse


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


def constructed(cls: type, fields) -> list:
    """Objects of the dataclass `cls` from columns of their fields (lists, in the
    fields' order): `list(map(cls, *fields))`, ~30% quicker (loop expansion's copies):
    each made by object.__new__, then given its fields by cls.__init__, which map calls
    with no tuple of arguments."""
    made = list(map(_new, repeat(cls, len(fields[0]))))
    deque(map(cls.__init__, made, *fields), 0)
    return made


_new = object.__new__


# An instruction's reads and writes tuples as it holds them, past the properties a
# subclass puts over them: an allocated program's instructions whose physical accesses
# are made when first read (compiler/compiled_allocation.py `_Unplaced`) hold their
# virtual ones until then, which differ from them in lo and hi alone, and loop copies
# whose operands are made when first read (`deferred_instructions`) their template's,
# which differ from theirs in the offset, box and alloc of the operands that move (and,
# in a DMA, in no partition: machine/expand_copy.py `Layout.lazy`). For readers of no
# operand's place (the cost model).
_READS, _WRITES = Instruction.reads, Instruction.writes  # (the slots)
held_reads, held_writes = _READS.__get__, _WRITES.__get__
_set_reads, _set_writes = _READS.__set__, _WRITES.__set__


def _made_when_read(name: str) -> property:
    """The Instruction field `name` (a slot), the pending state made before any use."""
    slot = getattr(Instruction, name)

    def get(self):
        self._pending.make(self)
        return slot.__get__(self)

    def set(self, value):
        self._pending.make(self)
        slot.__set__(self, value)

    def delete(self):
        self._pending.make(self)
        slot.__delete__(self)
    return property(get, set, delete)


class MadeWhenRead(Instruction):
    """An Instruction whose reads and writes are made when first read (a subclass per
    batch of them, its class attribute `_pending` the batch's pending state): reading
    either field, or the whole instruction (equality, repr, copies, pickles), has
    `_pending.make(self)` make them first, and it is an Instruction again; what is made
    of one, e.g. by dataclasses.replace, is an Instruction. Its death calls
    `_pending.let_go()`. (A class is a cycle, which the collector practically never
    frees after a profile, machine/gc_pause.py: `_pending` must hold no instruction.)"""
    __slots__ = ()
    _pending: object
    reads = _made_when_read("reads")
    writes = _made_when_read("writes")

    def __new__(cls, *args, **kwargs):
        return Instruction(*args, **kwargs)

    def __eq__(self, other):
        self._pending.make(self)
        return self == other

    def __repr__(self):
        self._pending.make(self)
        return repr(self)

    def __reduce_ex__(self, protocol):
        self._pending.make(self)
        return self.__reduce_ex__(protocol)

    def __del__(self):
        self._pending.let_go()


class _Deferred(MadeWhenRead):
    """A loop copy whose reads and writes are not made yet (a subclass per block of
    copies, `_pending` the block's: machine/expand_copy.py `_PendingOperands`,
    `deferred_instructions`): it holds its template's tuples until they are made (those
    of its copy of the template, or of every copy of its block: `_PendingOperands.make`).
    Its death counts down the block's copies left to make (`_PendingOperands.died`).
    An allocation that moves every copy of a block still of its class gives the class
    its pending move (`_pending`, `__del__`: compiler/compiled_allocation.py
    `_PendingMove.take_blocks`), in place of giving each copy another class."""
    __slots__ = ()


def deferred_instructions(pending, fields) -> tuple:
    """(Instructions from columns of their fields, as `constructed` makes them, copies
    holding their template's reads and writes whose own are made when first read:
    `pending.make(ins)` sets them (`set_operands`) on `ins`, or on more of them,
    `pending.make()` on all that are not made yet; their class). Made of their class at
    once (Instruction.__init__ sets their reads and writes through the slots, which the
    class holds until they are made, then MadeWhenRead's properties): giving each its
    class after cost ~30 ns a copy. (Its `__del__` is `pending.died` itself: a bound
    method is called with no argument, one Python call a death instead of two.)"""
    cls = type("_Deferred", (_Deferred,), {"__slots__": (), "_pending": pending,
                                           "__del__": pending.died,
                                           "reads": _READS, "writes": _WRITES})
    made = constructed(cls, fields)
    del cls.reads, cls.writes
    return made, cls


def set_operands(instrs: list, reads, writes, deferred: type) -> int:
    """Give `instrs` their reads and writes (iterables in order), and those still of the
    class `deferred` (deferred_instructions') their class back: Instruction. Returns how
    many it gave it back."""
    deque(map(_set_reads, instrs, reads), 0)
    deque(map(_set_writes, instrs, writes), 0)
    if set(map(type, instrs)) != {deferred}:  # (some given another class since)
        instrs = [ins for ins in instrs if type(ins) is deferred]
    deque(map(setattr, instrs, repeat("__class__"), repeat(Instruction)), 0)
    return len(instrs)


def compared_operands(ins) -> tuple:
    """The reads and writes of `ins`, for a pass that compares them and keeps none: a
    loop copy whose own are not made yet may give equal ones made apart, leaving its
    own to be made when first read (machine/expand_copy.py `_PendingOperands.peek`)."""
    if _of_a_block(type(ins)):
        return ins._pending.peek(ins)
    return ins.reads, ins.writes


_FEW = 64  # (instructions whose classes pending_operands reads as a set: quicker than
# their runs' NumPy calls)


def pending_operands(instrs: list, of_one_class=()) -> tuple:
    """The pending operands (`deferred_instructions`) of the deferred copies among
    `instrs`, each with the number of its copies there (a list of the two), and where
    those lie: rows of (start, stop, the pending's number) of runs of `instrs`, None
    where there are none. `of_one_class`: (start, stop, class) of spans of `instrs`
    (in order, none overlapping) whose instructions are all of that class, known to the
    caller (timing/access_columns.py `AccessColumns.one_class`): not read again.
    For a pass that gives them another class over their held tuples (the allocation's
    `_Unplaced`, compiler/compiled_allocation.py), which has them made (`.give`) before
    it reads those tuples."""
    n = len(instrs)
    if not n:
        return [], None
    if n <= _FEW and not of_one_class \
            and not any(map(_of_a_block, set(map(type, instrs)))):
        return [], None  # (a loop's template of a few instructions, none a copy)
    starts, types = _class_runs(instrs, of_one_class)
    if not any(map(_of_a_block, set(types))):
        return [], None
    pendings, number, runs = [], {}, []
    for s, e, t in zip(starts, starts[1:] + [n], types):
        if _of_a_block(t):
            if t not in number:
                number[t] = len(pendings)
                pendings.append([t._pending, 0])
            pendings[number[t]][1] += e - s
            runs.append((s, e, number[t]))
    return pendings, np.array(runs, np.int64)


def identities_of_copies(instrs: list, of_one_class) -> np.ndarray:
    """identities(instrs) (an array of its own), those of the copies in the spans
    `of_one_class` (pending_operands') of a block's class that their block still makes
    not read: its ids of its copies (`_PendingOperands.ids`, in record order) from the
    span's first copy's on, where the span's last copy's is where it ends (a block the
    program holds where it was noted holds its copies in order between its ends, as
    the access columns read them: timing/access_columns.py)."""
    n = len(instrs)
    ids = np.empty(n, np.intp)
    at = 0
    for s, e, kept in [*_kept_identities(instrs, of_one_class), (n, n, None)]:
        if s > at:
            ids[at:s] = identities(instrs[at:s] if s - at < n else instrs, s - at)
        if kept is not None:
            ids[s:e] = kept
        at = e
    return ids


def _kept_identities(instrs: list, of_one_class) -> list:
    """(start, stop, the ids its block keeps of them) of the spans of `of_one_class`
    whose copies' ids their block keeps (identities_of_copies)."""
    out = []
    for s, e, cls in of_one_class:
        if e <= s or not _of_a_block(cls) or cls._pending.ids is None:
            continue
        block = cls._pending
        k = block.run_at(instrs, s, e)
        if k >= 0:
            out.append((s, e, block.ids[k:k + e - s]))
    return out


def copies_of_one_class(instrs: list, s: int, e: int) -> type | None:
    """The class of instrs[s:e] where their block knows them for its copies all still
    of its class, in a row (`_PendingOperands.run_at`, `all_of_class`: none read), else
    None (their classes are to be read)."""
    cls = type(instrs[s])
    if not _of_a_block(cls) or cls._pending.ids is None:
        return None
    block = cls._pending
    k = block.run_at(instrs, s, e)
    return cls if k >= 0 and block.all_of_class(k, k + e - s) else None


def _class_runs(instrs: list, of_one_class) -> tuple:
    """(where each run of instructions of one class starts, its class) of `instrs`, the
    classes of those in the spans `of_one_class` (pending_operands) not read."""
    n, starts, types, at = len(instrs), [], [], 0
    for s, e, cls in [*of_one_class, (n, n, None)]:
        if s > at:  # (the classes of those between: read, as identities, for their runs)
            kinds = identities(map(type, instrs[at:s] if s - at < n else instrs), s - at)
            first = run_starts(kinds)
            starts += (first + at).tolist()
            types += kinds.base[first].tolist()
        if e > s:
            starts.append(s)
            types.append(cls)
        at = e
    joined = [k for k in range(len(types)) if not k or types[k] is not types[k - 1]]
    return [starts[k] for k in joined], [types[k] for k in joined]


def _of_a_block(cls: type) -> bool:
    """Whether `cls` is a block's class of deferred copies that its block still makes
    (not one an allocation's pending move took over: compiler/compiled_allocation.py
    `_PendingMove.take_blocks`)."""
    return issubclass(cls, _Deferred) and cls._pending.deferred is cls


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


@dataclass(slots=True)
class CopyTemplate:
    """The template iteration that copies (CopiedBlock) repeat: its instructions from
    `start` on (`first` the first of them), the reads and writes tuples they held
    (`held_reads`: a loop copy's its template's where its own were not made), and the
    positions among their accesses (each instruction's reads, then its writes) of the
    operands each copy has its own of (`moving`: every other operand of a copy is the
    template's object, and a moving one differs from it only in its offset, box and
    alloc). `kept`: per number of a moving operand (p_lo, p_hi, lo, hi, alloc) its
    column in a block's `numbers`, -1 where it is the template's in every copy.
    `own_attrs`: the positions among its instructions whose copies may have attrs of
    their own (the loop moves numbers in them); every other copy's attrs are its
    template's object until replaced (`attrs_replaced`)."""
    start: int
    first: Instruction
    reads: list
    writes: list
    moving: object  # an int64 array
    kept: object  # an int64 array
    own_attrs: tuple = ()

    def held_by(self, instrs: list) -> bool:
        """Whether `instrs` hold its instructions where it was noted (its first one, and
        the reads and writes its last one holds: a pass that changes accesses makes
        new tuples)."""
        s, e = self.start, self.start + len(self.reads)
        if s < 0 or e > len(instrs) or instrs[s] is not self.first:
            return False
        last = instrs[e - 1]
        return held_reads(last) is self.reads[-1] and held_writes(last) is self.writes[-1]


@dataclass(slots=True)
class CopiedBlock:
    """`copies` copies of a template iteration appended by loop expansion, from
    instruction `start` on: per copy and moving operand (rows copy by copy) those of
    its p_lo, p_hi, lo, hi and alloc that move (`numbers`, CopyTemplate.kept; lo and
    hi relative to the allocation's vaddr where alloc >= 0). `first` and `last`: the
    block's end instructions, by which a reader checks that the record still holds the
    block where it was noted. `attrs_replaced`: some instruction of it or of its
    template had its attrs replaced since it was noted (`attrs_replaced`), so that its
    copies' attrs are read one by one. `numbered`: its copies' indices are their
    positions (checked when noted; a pass that renumbers them in place numbers them
    so: compiler/hoist.py)."""
    start: int
    copies: int
    template: CopyTemplate
    numbers: object  # an int array (int32 where the numbers fit), a row per operand
    first: Instruction
    last: Instruction
    attrs_replaced: bool = False
    numbered: bool = False

    @property
    def stop(self) -> int:
        """The index after its last instruction."""
        return self.start + self.copies * len(self.template.reads)

    @property
    def spans(self) -> tuple:
        """(start, stop) of its template's instructions and of its own."""
        t = self.template
        return (t.start, t.start + len(t.reads)), (self.start, self.stop)

    def held_by(self, instrs: list) -> bool:
        """Whether `instrs` hold it and its template (before it) where they were noted."""
        s, e, t = self.start, self.stop, self.template
        return 0 <= s and e <= len(instrs) and instrs[s] is self.first \
            and instrs[e - 1] is self.last and t.start + len(t.reads) <= s \
            and t.held_by(instrs)


def attrs_replaced(blocks: list, at: int) -> None:
    """Note on the blocks of copies `blocks` (Program.copied) that the instruction at
    position `at` had its attrs replaced: those holding it, or whose template does,
    read their copies' attrs one by one from now on (timing/instruction_columns.py;
    a copy's attrs are otherwise taken to be its template's object, or where
    CopyTemplate.own_attrs says they may move, read)."""
    if not blocks or at >= blocks[-1].stop:  # (after every block: the newest as a rule)
        return
    for b in blocks:
        if any(start <= at < stop for start, stop in b.spans):
            b.attrs_replaced = True


def copy_columns(moving, moves: list) -> tuple:
    """(CopyTemplate.moving, CopyTemplate.kept, the columns of an operand's six numbers
    a CopiedBlock keeps) of the operands at `moving`, those of their numbers `moves`
    marks moving (Program.note_copies; `moving`: a list or an array of positions)."""
    kept = np.where(moves[1:], np.cumsum(moves[1:]) - 1, -1)
    return np.array(moving, np.int64), kept, 1 + np.flatnonzero(kept >= 0)


@dataclass
class Program:
    """The ordered instructions of one kernel run (all cores), the on-chip tensors it
    declared (`allocations`, by id), the points the compiler may not reorder across
    (`fences`: (core, index of the first instruction after the fence)), and once the
    compiler model has run, its memory plan (`memory`: trnsim.compiler.plan.MemoryPlan)
    and issue order (`issue`: trnsim.compiler.schedule.IssueOrder). `copied`: the blocks
    of copies loop expansion appended (CopiedBlock), from which the access columns
    (timing/access_columns.py) are made without reading every access; the pass that
    makes them empties it."""
    chip: object
    lnc: int = 1
    instructions: list[Instruction] = field(default_factory=list)
    allocations: dict[int, Allocation] = field(default_factory=dict)
    memory: object = None
    fences: list = field(default_factory=list)
    issue: object = None
    copied: list = field(default_factory=list, repr=False, compare=False)

    def fence(self, core: int) -> None:
        """Nothing recorded from now on moves before what was recorded until now."""
        self.fences.append((core, len(self.instructions)))

    def append(self, ins: Instruction) -> None:
        self.instructions.append(ins)

    def note_copies(self, made: list, templates: list, reads: list, writes: list,
                    moving: list, moves: list, numbers, columns: tuple | None = None,
                    own_attrs: tuple = (), indices: np.ndarray | None = None) -> None:
        """Note the copies `made` (just appended) of the instructions `templates` (their
        reads and writes tuples `reads`, `writes`; the operands at `moving` each copy's
        own, their numbers the rows of `numbers`: offset, p_lo, p_hi, lo, hi, alloc, as
        machine/expand_parts.py snapshot lists an operand's, those `moves` marks the
        ones that change) as a CopiedBlock. `columns`: copy_columns(moving, moves), where
        the caller keeps it; `own_attrs`: CopyTemplate.own_attrs; `indices`: the
        copies' indices (an int array), where the caller has them as one."""
        blocks = self.copied
        start = len(self.instructions) - len(made)
        while blocks and blocks[-1].stop > start:  # (rolled back: expand_parts.Mark)
            blocks.pop()
        moving, kept, taken = columns or copy_columns(moving, moves)
        template = blocks[-1].template if blocks else None
        if template is None or template.reads is not reads:
            template = CopyTemplate(templates[0].index, templates[0], reads, writes,
                                    moving, kept, tuple(own_attrs))
        numbers = numbers.take(taken, axis=1)
        numbers = np.ascontiguousarray(numbers, np.int32 if fits_int32(numbers) else np.int64)
        numbered = indices is not None and np.array_equal(
            indices, np.arange(start, start + len(made)))
        blocks.append(CopiedBlock(start, len(made) // len(templates), template, numbers,
                                  made[0], made[-1], numbered=numbered))

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
