"""The record between two iteration boundaries as loop expansion (machine/expand.py)
compares iterations: the marks (the record's counts and the loop frame's state at a
boundary), and a span of the record as its structure key (what must repeat: opcodes,
engines, queues, kernel lines, operand shapes and dtypes, other attributes) and its
numbers (what may move by a fixed step: instruction and allocation ids, byte ranges,
partitions, element offsets, fences, the HBM cursor)."""
from __future__ import annotations

import numpy as np

from .errors import SourceLocation
from .frame_state import PLAIN, frame_lists, frame_values, hashable, set_locals


# -- the state at an iteration boundary ------------------------------------------------
class Mark:
    __slots__ = ("instructions", "allocations", "fences", "hbm", "shared", "pending",
                 "untracked", "locals", "lists", "tensors", "held")

    def __init__(self, run, frame, before: "Mark | None" = None, lists_only=False):
        """The state now; `before`: the mark before it (see frame_values). `lists_only`:
        of the frame's state only its lists (what `Plan.matches` reads)."""
        p = run.program
        self.instructions = len(p.instructions)
        self.allocations = len(p.allocations)
        self.fences = len(p.fences)
        self.hbm = run.hbm._next
        self.shared = len(run._shared)
        self.pending = getattr(run, "legacy_pending", None) is not None
        self.untracked = len(run.untracked_changes)
        if lists_only:
            self.locals, self.lists, self.tensors, self.held = {}, frame_lists(frame), {}, []
        else:
            self.locals, self.lists, self.tensors, self.held = frame_values(
                frame, before.locals if before is not None else None)

    def restore(self, run, frame):
        """Roll the record back to this mark (and the frame's numbers)."""
        p = run.program
        del p.instructions[self.instructions:]
        for k in [k for k in p.allocations if k >= self.allocations]:
            del p.allocations[k]
        del p.fences[self.fences:]
        run.hbm._next = self.hbm
        for lst, n, _ in self.lists.values():
            del lst[n:]
        set_locals(frame, {**{k: v for k, v in self.locals.items() if type(v) is int},
                           **self.tensors})


_INT = (None, 1)


def _attr_parts(attrs: dict, nums: list):
    """Structure key of an attrs dict; its int values (and nonempty lists or tuples of
    ints) go to nums, keyed (name, (None, 1)) or (name, (their type, length))."""
    key = []
    for k, v in attrs.items():
        t = type(v)
        if t is int:
            key.append((k, _INT))
            nums.append(v)
        elif t in PLAIN:
            key.append((k, "=", v))
        elif (t is list or t is tuple) and v and all(type(x) is int for x in v):
            key.append((k, (t, len(v))))
            nums.extend(v)
        elif t is np.ndarray:
            key.append((k, "nd", v.shape, str(v.dtype), v.tobytes()))
        else:
            key.append((k, "=", hashable(v)))
    return tuple(key)


def instruction_parts(ins, allocs, cache: dict):
    """(structure, numbers) of one instruction, cached by index (nested loops look at
    the same instructions once per level; an expanded copy's are its template's
    structure and its row's numbers: expand_copy.Copier.append)."""
    got = cache.get(ins.index)
    if got is not None and got[0] is ins:
        return got[1], got[2]
    acc = []
    nums = []
    for a in ins.reads + ins.writes:
        base = allocs[a.alloc].vaddr if a.alloc >= 0 else 0
        acc.append((a.role, a.mode, a.space, a.core, a.tensor, a.dtype, a.shape,
                    a.pattern, a.elems_per_partition, a.bytes, a.contiguous_bytes,
                    a.indirect, a.alloc >= 0))
        nums += (a.offset, a.p_lo, a.p_hi, a.lo - base, a.hi - base, a.alloc)
    nums.append(ins.index)
    key = (ins.core, ins.engine, ins.opcode, ins.queue, _site(ins.location), len(ins.reads),
           tuple(acc), _attr_parts(ins.attrs, nums))
    cache[ins.index] = (ins, key, nums)
    return key, nums


def allocation_key(al, cache: dict):
    """Structure key of an allocation, cached by id (a copy's is its template's)."""
    got = cache.get(al.id)
    if got is not None and got[0] is al:
        return got[1]
    key = ("alloc", al.space, al.core, al.name, al.shape_desc, al.dtype, _site(al.site),
           al.row_bytes, al.block_bytes, al.partition, al.partitions, al.explicit)
    cache[al.id] = (al, key)
    return key


_SITES: dict = {}  # (file, line, function) -> the first SourceLocation seen there


def _site(loc):
    """One SourceLocation object per place in keys, so that keys compare them by
    identity (a dataclass's __eq__ runs Python code)."""
    if type(loc) is not SourceLocation:
        return loc
    return _SITES.setdefault((loc.file, loc.line, loc.function), loc)


def snapshot(run, start: int, stop: int, a_start: int, a_stop: int, f_start: int,
              f_stop: int, extra: list = ()):
    """(structure, numbers: an int64 array) of the record between two marks (an Access's
    byte range relative to its automatic allocation), the numbers `extra` last."""
    p = run.program
    allocs = p.allocations
    stats = run.expansion
    cache = stats.parts
    key = []
    nums = _Numbers()
    instructions, blocks = p.instructions, stats.copied_blocks
    at = start
    while at < stop:
        hit = blocks.get(at)
        if hit is not None and hit[0] < stop and instructions[hit[0]] is hit[1]:
            key += hit[2] * hit[3]  # a block of copies, still in the record
            nums.add_block(*hit[3:])
            at = hit[0] + 1
        else:
            k, n = instruction_parts(instructions[at], allocs, cache)
            key.append(k)
            nums.add(n)
            at += 1
    alloc_cache, blocks = stats.alloc_parts, stats.copied_alloc_blocks
    plain = []
    aid = a_start
    while aid < a_stop:
        hit = blocks.get(aid)
        if hit is not None and hit[0] < a_stop and allocs.get(hit[0]) is hit[1]:
            key += hit[2] * hit[3]  # the allocations of a block of copies
            if plain:
                nums.add(plain)
                plain = []
            nums.add_block(*hit[3:])
            aid = hit[0] + 1
            continue
        al = allocs[aid]
        got = alloc_cache.get(aid)
        key.append(got[1] if got is not None and got[0] is al
                   else allocation_key(al, alloc_cache))
        plain += (aid, al.declared_at, al.vaddr if al.explicit else 0)
        aid += 1
    for core, idx in p.fences[f_start:f_stop]:
        key.append(("fence", core))
        plain.append(idx)
    plain += extra
    nums.add(plain)
    return tuple(key), nums.array()


class _Numbers:
    """A snapshot's numbers as they are gathered: lists of ints, and slices [r0:r1,
    start:stop] of the blocks of numbers copies were made from (`Copier.append`), taken
    from the blocks at the end; consecutive slices of a block are taken as one."""
    __slots__ = ("pieces", "plain", "rows")

    def __init__(self):
        self.pieces, self.plain, self.rows = [], [], None

    def add(self, n) -> None:
        """Append a list of ints, or a copy's (block, row, start, stop)."""
        if type(n) is list:
            if self.rows is not None:
                self.pieces.append(tuple(self.rows))
                self.rows = None
            self.plain += n
        else:
            block, row, start, stop = n
            self.add_block(1, block, start, stop, row)

    def add_block(self, rows: int, block: np.ndarray, start: int, stop: int,
                  first: int = 0) -> None:
        """Append block[first:first + rows, start:stop], row by row."""
        cur = self.rows
        if cur is not None and cur[0] is block:
            if cur[2] == first and cur[3] == start and cur[4] == stop:  # the next rows
                cur[2] = first + rows
                return
            if rows == 1 and cur[2] == first + 1 and cur[1] == first and cur[4] == start:
                cur[4] = stop  # the next numbers of the same row
                return
        if cur is not None:
            self.pieces.append(tuple(cur))
        elif self.plain:
            self.pieces.append(self.plain)
            self.plain = []
        self.rows = [block, first, first + rows, start, stop]

    def array(self) -> np.ndarray:
        pieces = self.pieces
        if self.rows is not None:
            pieces.append(tuple(self.rows))
        elif self.plain or not pieces:
            pieces.append(self.plain)
        if len(pieces) == 1 and type(pieces[0]) is list:
            return np.array(pieces[0], np.int64)
        return np.concatenate([x[0][x[1]:x[2], x[3]:x[4]].ravel() if type(x) is tuple
                               else np.array(x, np.int64) for x in pieces])


def numbers_size(nums) -> int:
    """How many numbers an instruction's parts have (a copy's: (block, row, start, stop)
    in the block of rows it was made from)."""
    return len(nums) if type(nums) is list else nums[3] - nums[2]


def operand_allocations(run, start: int, stop: int) -> list:
    """Where the allocation ids of the operands of instructions start..stop lie in
    their numbers (as `snapshot` lists them: six numbers per operand, the id last, then
    the instruction's index and its attributes' numbers)."""
    p = run.program
    cols, pos = [], 0
    for ins in p.instructions[start:stop]:
        n = len(ins.reads) + len(ins.writes)
        cols += range(pos + 5, pos + 6 * n, 6)
        pos += numbers_size(instruction_parts(ins, p.allocations, run.expansion.parts)[1])
    return cols
