"""The record between two iteration boundaries as loop expansion (machine/expand.py)
compares iterations: the marks (the record's counts and the loop frame's state at a
boundary), and a span of the record as its structure key (what must repeat: opcodes,
engines, queues, kernel lines, operand shapes and dtypes, other attributes) and its
numbers (what may move by a fixed step: instruction and allocation ids, byte ranges,
partitions, element offsets, fences, the HBM cursor)."""
from __future__ import annotations

import operator

import numpy as np

from .access import Access
from .errors import SourceLocation, interned
from .frame_state import (PLAIN, frame_lists, frame_tensors, frame_values, hashable,
                          set_locals)


# -- the state at an iteration boundary ------------------------------------------------
class Mark:
    __slots__ = ("instructions", "allocations", "fences", "hbm", "shared", "pending",
                 "untracked", "locals", "lists", "tensors", "held")

    def __init__(self, run, frame, before: "Mark | None" = None, lists_only=False,
                 tensors_only=False):
        """The state now; `before`: the mark before it (see frame_values). `lists_only`:
        of the frame's state only its lists (what `Plan.matches` reads); `tensors_only`:
        only its tensors (at a loop's entry: those it may carry, `_carried_from_entry`)."""
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
        elif tensors_only:
            self.locals, self.lists, self.tensors, self.held = {}, {}, frame_tensors(frame), []
        else:
            self.locals, self.lists, self.tensors, self.held = frame_values(
                frame, before.locals if before is not None else None)

    def entering(self, after: "Mark") -> "Mark":
        """This mark (the state before a loop's iteration 0) with the locals that `after`
        (the state after it) has and it lacks: those the body binds before it reads them
        (`k0 = ki * KC`), which a model of the later iterations states as each of them
        finds them."""
        missing = after.locals.keys() - self.locals.keys()
        if not missing:
            return self
        m = Mark.__new__(Mark)
        for name in Mark.__slots__:
            setattr(m, name, getattr(self, name))
        m.locals = {**self.locals, **{k: after.locals[k] for k in missing}}
        return m

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
_PLAIN = frozenset(PLAIN)


def _attr_parts(attrs: dict, nums: list):
    """Structure key of an attrs dict; its int values (and nonempty lists or tuples of
    ints) go to nums, keyed (name, (None, 1)) or (name, (their type, length))."""
    key = []
    for k, v in attrs.items():
        t = type(v)
        if t is int:
            key.append((k, _INT))
            nums.append(v)
        elif t in _PLAIN:
            key.append((k, "=", v))
        elif (t is list or t is tuple) and v and _ONLY_INTS.issuperset(map(type, v)):
            key.append((k, (t, len(v))))
            nums.extend(v)
        elif t is np.ndarray:
            key.append((k, "nd", v.shape, str(v.dtype), v.tobytes()))
        else:
            key.append((k, "=", hashable(v)))
    return tuple(key)


_ONLY_INTS = frozenset((int,))


# an operand's structure: its fields role..pattern, elems_per_partition..indirect and
# whether it has an allocation; its numbers: offset, p_lo, p_hi, lo and hi (relative to
# its allocation), alloc
_ACCESS_FIELDS = ("role", "mode", "space", "core", "tensor", "dtype", "shape", "pattern",
                  "offset", "p_lo", "p_hi", "lo", "hi", "elems_per_partition", "bytes",
                  "contiguous_bytes", "indirect", "alloc")
assert Access._fields == _ACCESS_FIELDS
_OWNED, _UNOWNED = (True,), (False,)
# an operand's structure fields: role..pattern, elems_per_partition..indirect
_STRUCTURE = operator.itemgetter(*range(8), *range(13, 17))


def instruction_parts(ins, allocs, cache: dict, bases: dict | None = None):
    """(structure, numbers) of one instruction, cached by index (nested loops look at
    the same instructions once per level; a snapshot takes expanded copies by blocks).
    `bases`: {allocation id: its vaddr} read so far by the caller (a snapshot's
    instructions share their allocations; `allocs` may look them up in Python)."""
    got = cache.get(ins.index)
    if got is not None and got[0] is ins:
        return got[1], got[2]
    if bases is None:
        bases = {}
    acc = []
    nums = []
    for a in ins.reads + ins.writes:  # (Access fields by position: see _ACCESS_FIELDS)
        aid = a[17]
        if aid >= 0:
            base = bases.get(aid)
            if base is None:
                base = bases[aid] = allocs[aid].vaddr
            acc.append(_STRUCTURE(a) + _OWNED)
            nums += (a[8], a[9], a[10], a[11] - base, a[12] - base, aid)
        else:
            acc.append(_STRUCTURE(a) + _UNOWNED)
            nums += a[8:13]
            nums.append(aid)
    nums.append(ins.index)
    key = (ins.core, ins.engine, ins.opcode, ins.queue, _site(ins.location), len(ins.reads),
           tuple(acc), _attr_parts(ins.attrs, nums))
    cache[ins.index] = (ins, key, nums)
    return key, nums


def allocation_key(al, cache: dict):
    """Structure key of an allocation, cached by id."""
    got = cache.get(al.id)
    if got is not None and got[0] is al:
        return got[1]
    key = ("alloc", al.space, al.core, al.name, al.shape_desc, al.dtype, _site(al.site),
           al.row_bytes, al.block_bytes, al.partition, al.partitions, al.explicit)
    cache[al.id] = (al, key)
    return key


def _site(loc):
    """One SourceLocation object per place (errors.interned), or `loc` if it is not
    one."""
    if type(loc) is not SourceLocation:
        return loc
    if _INTERNED.get(id(loc)) is loc:  # (most are: machine/errors.py kernel_location)
        return loc
    got = interned(loc)
    if got is loc:
        _INTERNED[id(loc)] = loc
    return got


# id -> the SourceLocation interned for its place (errors.interned keeps each, so an id
# here stays its object's)
_INTERNED: dict = {}


def snapshot(run, start: int, stop: int, a_start: int, a_stop: int, f_start: int,
              f_stop: int, extra: list = ()):
    """(structure, numbers: an int64 array, how many numbers each instruction has) of
    the record between two marks (an Access's byte range relative to its automatic
    allocation), the numbers `extra` last. The structure lists the instructions', then
    the allocations', then the fences'."""
    p = run.program
    allocs = p.allocations
    stats = run.expansion
    cache = stats.parts
    key, sizes = [], []
    nums = _Numbers()
    plain = nums.plain  # (the instructions' numbers go straight in: a call each costs)
    instructions, blocks = p.instructions, stats.copied_blocks
    bases = {}
    at = start
    while at < stop:
        hit = blocks.get(at)
        if hit is not None and hit[0] < stop and instructions[hit[0]] is hit[1]:
            key += hit[2] * hit[4]  # a block of copies, still in the record
            sizes += hit[3] * hit[4]
            nums.add_block(*hit[4:])
            plain = nums.plain
            at = hit[0] + 1
        else:
            k, n = instruction_parts(instructions[at], allocs, cache, bases)
            key.append(k)
            sizes.append(len(n))
            plain += n
            at += 1
    alloc_cache, blocks = stats.alloc_parts, stats.copied_alloc_blocks
    aid = a_start
    while aid < a_stop:
        hit = blocks.get(aid)
        if hit is not None and hit[0] < a_stop and allocs.get(hit[0]) is hit[1]:
            key += hit[2] * hit[3]  # the allocations of a block of copies
            nums.add_block(*hit[3:])
            aid = hit[0] + 1
            continue
        al = allocs[aid]
        got = alloc_cache.get(aid)
        key.append(got[1] if got is not None and got[0] is al
                   else allocation_key(al, alloc_cache))
        nums.add((aid, al.declared_at, al.vaddr if al.explicit else 0))
        aid += 1
    for core, idx in p.fences[f_start:f_stop]:
        key.append(("fence", core))
        nums.add((idx,))
    nums.add(extra)
    return tuple(key), nums.array(), sizes


class _Numbers:
    """A snapshot's numbers as they are gathered: runs of ints, and the numbers
    [:rows, start:stop] of the blocks copies were made from (`Copier.append`), taken
    from the blocks at the end."""
    __slots__ = ("pieces", "plain")

    def __init__(self):
        self.pieces, self.plain = [], []

    def add(self, n) -> None:
        self.plain += n

    def add_block(self, rows: int, block: np.ndarray, start: int, stop: int) -> None:
        if self.plain:
            self.pieces.append(self.plain)
            self.plain = []
        self.pieces.append((block, rows, start, stop))

    def array(self) -> np.ndarray:
        pieces = self.pieces
        if self.plain or not pieces:
            pieces.append(self.plain)
        if len(pieces) == 1 and type(pieces[0]) is list:
            return np.array(pieces[0], np.int64)
        # each block's numbers copied once, into their place (not raveled, then joined)
        sizes = [x[1] * (x[3] - x[2]) if type(x) is tuple else len(x) for x in pieces]
        out = np.empty(sum(sizes), np.int64)
        at = 0
        for x, n in zip(pieces, sizes):
            if type(x) is tuple:
                block, rows, start, stop = x
                out[at:at + n].reshape(rows, stop - start)[...] = block[:rows, start:stop]
            else:
                out[at:at + n] = np.array(x, np.int64)
            at += n
        return out


def operand_columns(sizes, n_ops) -> np.ndarray:
    """Where the six numbers of each operand of a span of instructions lie in their
    numbers (as `snapshot` lists them: six per operand, reads then writes, then the
    instruction's index and its attributes' numbers): one row per operand in record
    order. `sizes`: how many numbers each instruction has, `n_ops`: its operands."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n_ops = np.asarray(n_ops, dtype=np.int64)
    at = np.cumsum(sizes) - sizes
    owner = np.repeat(np.arange(len(sizes)), n_ops)
    nth = np.arange(len(owner)) - (np.cumsum(n_ops) - n_ops)[owner]
    return (at[owner] + 6 * nth)[:, None] + np.arange(6)
