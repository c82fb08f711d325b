"""The fields of a Program's instructions that the compiler model's passes and the
timing scheduler number (core, engine, opcode, DMA queue, source location, attrs), as
arrays, from rows made once per program and kept on it:

    cols = instruction_columns(program)   # cached on the program (`_instruction_columns`)
    cols.core()                           # each instruction's core, int64 (kept)
    cols.ids("opcode")                    # id() of each one's opcode object (identities:
                                          # `.base` the objects, an object array)

A loop copy's core, engine, opcode, queue and location are its template's objects
(machine/expand_copy.py `Copier.append` repeats the template's fields): the copies of a
block the program still holds where it was noted (Program.copied, CopiedBlock.held_by)
take their template's rows, and only the other instructions are read. So do their
attrs, but where the loop moves numbers in them (CopyTemplate.own_attrs: those copies'
are read) or a block notes that some were replaced since (CopiedBlock.attrs_replaced:
every copy's is read).

The rows describe the instructions as they stand when first asked for, and are kept
while the program's instruction list is the same object and length, as the scheduler's
other caches (timing/scheduler.py `cores_and_opcodes`): no pass changes an
instruction's core, opcode, queue or location. The engines and attrs, which the
compiler model changes (the list scheduler gives floating instructions an engine, the
passes rewrite order edges into new attrs dicts), are kept only as one pass hands them
to the next (`hand`, `taken_ids`): the compiled allocation hands the attrs it read and
the engines to the list scheduler, which hands the engines it assigned to the timing
scheduler; a pass that finds none handed reads them. (A caller that changes an
instruction's engine in place between the compiler model and the timing scheduler
takes the handed ones first, `taken_ids`: else that scheduler reads those.)
"""
from __future__ import annotations

import numpy as np

from ..machine.record import identities

# the fields kept as the identities of their objects (the core is kept as an int)
FIELDS = ("engine", "opcode", "queue", "location", "attrs")


class InstructionColumns:
    """The columns of the instructions `instrs` (see the module). `read`: the positions
    of the instructions read, `row`: each instruction's number among them (a copy's its
    template's), both None where every instruction is read; `attrs_read`, `attrs_row`
    those of the attrs; `index_read`: the positions of the instructions whose index
    may differ from their position, None where any may (a copy of a block noted
    numbered holds its position: CopiedBlock.numbered)."""
    __slots__ = ("instrs", "n", "read", "row", "attrs_read", "attrs_row", "index_read",
                 "_core", "_handed")

    def __init__(self, instrs: list, blocks=()):
        self.instrs, self.n = instrs, len(instrs)
        (self.read, self.row), (self.attrs_read, self.attrs_row), self.index_read = \
            _rows(instrs, blocks)
        self._core = None
        self._handed: dict = {}  # engine, attrs -> identities a pass handed on

    def core(self) -> np.ndarray:
        """Each instruction's core (int64)."""
        if self._core is None:
            if self.row is None:
                self._core = np.fromiter(_fields(self.instrs, "core"), np.int64, self.n)
            else:
                self._core = np.fromiter(self._objects("core", self.read), np.int64,
                                         len(self.read))[self.row]
        return self._core

    def ids(self, name: str, at: np.ndarray | None = None) -> np.ndarray:
        """identities of the `name` (a FIELDS item) objects of each instruction, or of
        those at the positions `at` (an int array), read now (the passes that ask keep
        what they number of them)."""
        read, row = (self.attrs_read, self.attrs_row) if name == "attrs" else \
            (self.read, self.row)
        if row is not None:
            objects = np.fromiter(self._objects(name, read), object, len(read))
            return np.frombuffer(objects[row if at is None else row[at]], np.intp)
        if at is not None and 3 * len(at) <= self.n:  # (few of many: only those)
            return identities(_fields([self.instrs[i] for i in at.tolist()], name),
                              len(at))
        ids = identities(_fields(self.instrs, name), self.n)
        return ids if at is None else ids[at]

    def carried(self, instrs: list) -> "InstructionColumns":
        """These columns for `instrs`, the same instructions in the same order (a pass
        that made a new list of them and changed none of their kept fields; their attrs
        it may have replaced: read when asked for)."""
        out = object.__new__(InstructionColumns)
        out.instrs, out.n, out.read, out.row = instrs, self.n, self.read, self.row
        out.attrs_read = out.attrs_row = out.index_read = None
        out._core, out._handed = self._core, {}
        return out

    def hand(self, name: str, ids: np.ndarray) -> None:
        """Hand the next pass `ids`: the identities of each instruction's `name` (engine
        or attrs) as they stand now."""
        self._handed[name] = ids

    def __deepcopy__(self, memo):
        """None: the columns hold the identities of these instructions' objects, not of
        a copy's (which makes its own when asked)."""
        return None

    def __reduce__(self):
        return _dropped, ()

    def _objects(self, name: str, read: np.ndarray) -> list:
        """The field `name` of the instructions at `read`."""
        instrs = self.instrs
        return _fields([instrs[i] for i in read.tolist()], name)


def instruction_columns(program) -> InstructionColumns:
    """The instruction columns of `program` (made on first use, from the blocks of
    copies noted on it, then kept on it)."""
    instrs = program.instructions
    cols = getattr(program, "_instruction_columns", None)
    if cols is None or cols.instrs is not instrs or cols.n != len(instrs):
        cols = program._instruction_columns = InstructionColumns(
            instrs, getattr(program, "copied", None) or ())
    return cols


def taken_ids(program, name: str) -> np.ndarray:
    """The identities of each of `program`'s instructions' `name` (engine or attrs): as
    the pass before handed them on (taken: the next pass reads them again), else read."""
    cols = getattr(program, "_instruction_columns", None)
    instrs = program.instructions
    if cols is not None and cols.instrs is instrs and cols.n == len(instrs):
        ids = cols._handed.pop(name, None)
        if ids is not None:
            return ids
    return identities(_fields(instrs, name), len(instrs))


def _dropped() -> None:
    """What unpickles in place of InstructionColumns (see its __deepcopy__)."""
    return None


def _fields(instrs: list, name: str) -> list:
    """The field `name` of each of `instrs` (a comprehension per field reads the slots in
    half map(attrgetter(...))'s time)."""
    if name == "engine":
        return [ins.engine for ins in instrs]
    if name == "opcode":
        return [ins.opcode for ins in instrs]
    if name == "attrs":
        return [ins.attrs for ins in instrs]
    if name == "core":
        return [ins.core for ins in instrs]
    if name == "queue":
        return [ins.queue for ins in instrs]
    if name == "location":
        return [ins.location for ins in instrs]
    raise KeyError(name)


def _rows(instrs: list, blocks) -> tuple:
    """((read, row), (attrs_read, attrs_row), index_read) of InstructionColumns for
    `instrs` and the blocks of copies `blocks` (CopiedBlock) they hold where noted, no
    two overlapping, in order: a copy's row is its template's, made before it (an outer
    loop's template may hold copies), and so is its attrs' but where they may be its
    own."""
    n, end = len(instrs), 0
    source = None  # each instruction's position among the instructions read
    attrs = None  # the attrs', where they part from `source` (else `source` itself)
    numbered = []  # (the held blocks noted numbered)
    for b in sorted(blocks, key=_start):
        if b.start < end or not b.held_by(instrs):
            continue
        if source is None:
            source = attrs = np.arange(n)
        t = b.template
        w = len(t.reads)
        taken = np.tile(source[t.start:t.start + w], b.copies)
        if attrs is not source or b.attrs_replaced or t.own_attrs:
            if attrs is source:
                attrs = source.copy()
            if b.attrs_replaced:
                own = np.arange(b.start, b.stop)
            else:
                own = np.tile(attrs[t.start:t.start + w], b.copies)
                if t.own_attrs:
                    at = list(t.own_attrs)
                    own.reshape(b.copies, w)[:, at] = \
                        np.arange(b.start, b.stop).reshape(b.copies, w)[:, at]
            attrs[b.start:b.stop] = own
        source[b.start:b.stop] = taken
        if b.numbered:
            numbered.append(b)
        end = b.stop
    if source is None:
        return (None, None), (None, None), None
    index_read = None
    # (few copies: reading every index is then quicker)
    if 2 * sum(b.stop - b.start for b in numbered) >= n:
        unnumbered = np.ones(n, bool)
        for b in numbered:
            unnumbered[b.start:b.stop] = False
        index_read = np.flatnonzero(unnumbered)
    rows = _read_and_rows(source)
    return rows, rows if attrs is source else _read_and_rows(attrs), index_read


def _read_and_rows(source: np.ndarray) -> tuple:
    """(read, row) where each instruction takes the row of the one at `source` (the
    instructions read: those that are their own source), (None, None) where most are."""
    n = len(source)
    read = np.flatnonzero(source == np.arange(n))
    if 2 * len(read) > n:  # (few copies: reading every instruction is then quicker)
        return None, None
    number = np.empty(n, np.int32 if n < 1 << 31 else np.int64)
    number[read] = np.arange(len(read))
    return read, number[source]


def _start(block) -> int:
    return block.start
