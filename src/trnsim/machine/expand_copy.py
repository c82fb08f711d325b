"""The copies loop expansion appends (machine/expand.py): a plan's template iteration
-- its allocations, fences and instructions -- made again from blocks of rows of
numbers, as flat lists in record order."""
from __future__ import annotations

import collections
import itertools

import numpy as np

from .access import with_place
from .expand_parts import allocation_key, instruction_parts, numbers_size
from .record import Allocation, Instruction

repeat = itertools.repeat


_VADDR = Allocation.__slots__.index("vaddr")
assert Allocation.__slots__[0] == "id" and Allocation.__slots__[-1] == "declared_at"


class Layout:
    """Where a template iteration's numbers lie and which of them move: what a Copier
    derives from its plan's structure, drift and moving columns alone, kept with the
    loop's model (`ExpansionStats.known`) so that a loop entered again with the same
    model reuses it (`fits`)."""

    def __init__(self, run, plan, moves: np.ndarray, tmpl: list):
        p, stats = run.program, run.expansion
        parts = [instruction_parts(ins, p.allocations, stats.parts) for ins in tmpl]
        self.keys = [key for key, _ in parts]
        size = np.array([numbers_size(nums) for _, nums in parts], dtype=np.int64)
        at = np.cumsum(size) - size  # where each instruction's numbers start
        self.starts, self.stops = at.tolist(), (at + size).tolist()
        n_read = np.array([len(t.reads) for t in tmpl], dtype=np.int64)
        n_ops = n_read + [len(t.writes) for t in tmpl]
        self.index_cols = at + 6 * n_ops
        self.moves = moves
        self.drift = plan.drift
        self.width = len(tmpl)
        self.record_numbers = plan.record_numbers
        self.operand_ids = plan.operand_ids  # (the structure's: see Plan._made)
        self.n_accesses = int(n_ops.sum())
        self._positions = None  # (rows, positions(rows))
        self._operands_moving(moves, at, n_read, n_ops)
        # (instruction, its attributes' numbers, their key) where they move
        moved = np.concatenate(([0], np.cumsum(moves)))
        lo, hi = (self.index_cols + 1).tolist(), (at + size).tolist()
        self.moving_attrs = [(b, slice(lo[b], hi[b]), self.keys[b][-1])
                             for b in np.flatnonzero(moved[hi] > moved[lo]).tolist()]
        start, end, a_start, a_stop, f_start, f_stop = plan.template
        allocs = [p.allocations[i] for i in range(a_start, a_stop)]
        self.alloc_keys = [allocation_key(al, stats.alloc_parts) for al in allocs]
        self.explicit = np.array([al.explicit for al in allocs], dtype=bool)
        n_fences = f_stop - f_start
        first = plan.record_numbers - 3 * len(allocs) - n_fences
        self.alloc_cols = first + 3 * np.arange(len(allocs), dtype=np.int64)
        self.fence_cols = first + 3 * len(allocs) + np.arange(n_fences)

    def _operands_moving(self, moves, at, n_read, n_ops) -> None:
        """The template operands that may move: their numbers' columns and positions
        among all operands; the instructions whose reads or writes they are in, and
        where."""
        owner = np.repeat(np.arange(self.width), n_ops)
        base = np.cumsum(n_ops) - n_ops
        nth = np.arange(len(owner)) - base[owner]
        cols = (at[owner] + 6 * nth)[:, None] + np.arange(6)
        moving = np.flatnonzero(moves[cols].any(axis=1))
        self.moving = cols[moving]
        self.moving_at = moving
        read = nth[moving] < n_read[owner[moving]]
        b = _distinct(owner[moving][read])
        self.read_spans = (b, base[b], base[b] + n_read[b])
        b = _distinct(owner[moving][~read])
        self.write_spans = (b, base[b] + n_read[b], base[b] + n_ops[b])

    def positions(self, n: int):
        """For a block of n copies of the template (kept for the last n asked): where
        each moving operand lies among the copies' operands; for their reads and for
        their writes, the copies whose tuple is rebuilt (flat positions) and the spans
        of operands it is made of (starts, stops); each copy's row."""
        if self._positions is None or self._positions[0] != n:
            rows = np.arange(n)[:, None]
            first = rows * self.n_accesses
            spans = [((rows * self.width + b).ravel().tolist(),
                      (first + lo).ravel().tolist(), (first + hi).ravel().tolist())
                     for b, lo, hi in (self.read_spans, self.write_spans)]
            self._positions = (n, ((first + self.moving_at).ravel(), spans,
                                   np.repeat(rows.ravel(), self.width).tolist()))
        return self._positions[1]

    def fits(self, plan, width: int) -> bool:
        """Whether this layout is that of `plan` (whose structure is that of the plan
        it was made for: Plan.derive checked it)."""
        if width != self.width or plan.record_numbers != self.record_numbers:
            return False
        # a period-1 model with the drift it was made for (Plan.derive hands it on)
        # moves the same numbers
        return plan.drift is self.drift or np.array_equal(_moves(plan), self.moves)


class Copier:
    """Makes the copies of a plan's template iteration -- its allocations, fences and
    instructions -- from blocks of rows of numbers (in the order `snapshot` lists
    them), as flat lists in record order (the template's items for one iteration, then
    for the next): a copy's field is its template's unless the row gives it. An operand
    a copy has at the template's place is the template's (immutable) Access, and so is
    its tuple of reads or writes when no operand there can move. `layout`: a Layout
    made for an earlier entry of the same loop, used when it fits this plan."""

    def __init__(self, run, plan, layout: "Layout | None" = None):  # plan: a Plan
        p = run.program
        start, end, a_start, a_stop, f_start, f_stop = plan.template
        tmpl = self.templates = p.instructions[start:end]
        if layout is None or not layout.fits(plan, len(tmpl)):
            layout = Layout(run, plan, _moves(plan), tmpl)
        self.layout = lay = layout
        self.keys, self.starts, self.stops = lay.keys, lay.starts, lay.stops
        self.index_cols, self.moving = lay.index_cols, lay.moving
        self.accesses = list(itertools.chain.from_iterable(
            t.reads + t.writes for t in tmpl))
        self.moving_tmpl = [self.accesses[i] for i in lay.moving_at.tolist()]
        last = plan.rows[-1]
        self.moving_same = last[lay.moving]
        self.moving_attrs = [(b, span, last[span].tolist(), key)
                             for b, span, key in lay.moving_attrs]
        self.statics = [list(f) for f in zip(*[
            (t.core, t.engine, t.opcode, t.reads, t.writes, t.location, t.attrs, t.queue)
            for t in tmpl])] if tmpl else [[]] * 8
        allocs = [p.allocations[i] for i in range(a_start, a_stop)]
        self.template_ids = [al.id for al in allocs]
        self.alloc_keys, self.alloc_cols = lay.alloc_keys, lay.alloc_cols
        self.alloc_fields = [list(f) for f in zip(*(al.field_values() for al in allocs))]
        self.explicit = lay.explicit
        self.vaddrs = np.array([al.vaddr for al in allocs], dtype=np.int64)
        self.fence_cores = [core for core, _ in p.fences[f_start:f_stop]]
        self.fence_cols = lay.fence_cols

    def append(self, p, values: np.ndarray, stats) -> list:
        """Append the copies for the rows of `values` (keeping their parts in `stats`
        when given); returns the ids of the allocations made."""
        n = len(values)
        ids = self._allocations(p, values, stats)
        if len(self.fence_cores):
            p.fences.extend(zip(self.fence_cores * n,
                                values[:, self.fence_cols].ravel().tolist()))
        core, engine, opcode, reads, writes, location, attrs, queue = self.statics
        reads, writes, attrs = self._operands(values, p.allocations, reads, writes, attrs)
        index = values[:, self.index_cols].ravel().tolist()
        made = list(map(Instruction, index, core * n, engine * n, opcode * n, reads, writes,
                        location * n, attrs, queue * n))
        p.instructions.extend(made)
        if stats is not None and made:  # (numbers: where they lie in `values`)
            width = len(self.templates)
            rows = self.layout.positions(n)[2]
            stats.parts.update(zip(index, zip(made, self.keys * n, zip(
                repeat(values), rows, self.starts * n, self.stops * n))))
            at = range(len(p.instructions) - len(made), len(p.instructions), width)
            stats.copied_rows.update(zip(at, zip(
                [a + width - 1 for a in at], made[width - 1::width], repeat(self.keys),
                repeat(values), range(n), repeat(self.starts[0]), repeat(self.stops[-1]))))
        return ids

    def _allocations(self, p, values: np.ndarray, stats) -> list:
        if not self.template_ids:
            return []
        n = len(values)
        cols = values[:, self.alloc_cols]
        ids = cols.ravel().tolist()
        args = [f * n for f in self.alloc_fields]
        args[0] = ids
        args[-1] = values[:, self.alloc_cols + 1].ravel().tolist()
        if self.explicit.any():
            args[_VADDR] = np.where(self.explicit, values[:, self.alloc_cols + 2],
                                    self.vaddrs).ravel().tolist()
        made = list(map(Allocation, *args))
        p.allocations.update(zip(ids, made))
        if stats is not None:
            stats.alloc_parts.update(zip(ids, zip(made, self.alloc_keys * n)))
        return ids

    def _operands(self, values: np.ndarray, allocs: dict, reads: list, writes: list,
                  attrs: list):
        """The copies' reads, writes and attrs (flat lists)."""
        n, width = len(values), len(self.templates)
        reads, writes, attrs = reads * n, writes * n, attrs * n
        if len(self.moving):
            ops = self.accesses * n
            # the operands whose numbers are not the template's, at their places
            nums = values[:, self.moving]
            moved = np.flatnonzero((nums != self.moving_same).any(axis=2))
            placed = _places(nums.reshape(-1, 6)[moved], allocs)
            tmpl = map(self.moving_tmpl.__getitem__, (moved % len(self.moving)).tolist())
            at, spans, _ = self.layout.positions(n)
            _put(ops, at[moved], map(with_place, tmpl, *placed))
            for out, (where, starts, stops) in zip((reads, writes), spans):
                collections.deque(map(out.__setitem__, where, map(tuple, map(
                    ops.__getitem__, map(slice, starts, stops)))), maxlen=0)
        for b, span, same, key in self.moving_attrs:
            template = attrs[b]
            for r, nums in enumerate(values[:, span].tolist()):
                if nums != same:
                    attrs[r * width + b] = _attrs_with(template, key, nums)
        return reads, writes, attrs


def _moves(plan) -> np.ndarray:
    """Which of a plan's numbers move: all but those with no drift that every phase of
    the period sampled the same."""
    return ~((plan.drift == 0) & (plan.rows == plan.rows[-1]).all(axis=0))


def _distinct(x: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique hashes them first)."""
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


def _put(out: list, where: np.ndarray, items) -> None:
    """out[i] = item for each position of `where` (flattened) and item of `items`."""
    collections.deque(map(out.__setitem__, where.ravel().tolist(), items), maxlen=0)


def _attrs_with(attrs: dict, key: tuple, numbers: list) -> dict:
    """A copy of `attrs` with its numbers (keyed as `_attr_parts` keys them) replaced."""
    out = dict(attrs)
    at = 0
    for k, *entry in key:
        if len(entry) == 1:  # (name, (None or sequence type, length))
            seq, n = entry[0]
            out[k] = numbers[at] if seq is None else seq(numbers[at:at + n])
            at += n
    return out


def _places(nums: np.ndarray, allocs: dict) -> list:
    """Columns (offset, p_lo, p_hi, lo, hi, allocation) of operands from their numbers
    (rows of offset, partitions, byte range relative to the allocation, its id): the
    byte range made absolute, and one int object per allocation for its id."""
    aid = nums[:, 5]
    owned = np.flatnonzero(aid >= 0)
    out = nums.T.tolist()
    if len(owned):
        ids, at = _lookup(aid[owned])
        made = [allocs[i] for i in ids]
        base = np.array([al.vaddr for al in made], dtype=np.int64)[at]
        for col in (3, 4):
            _put(out[col], owned, (nums[owned, col] + base).tolist())
        _put(out[5], owned, map([al.id for al in made].__getitem__, at.tolist()))
    return out


def _lookup(x: np.ndarray):
    """(values, where each item of `x` is among them): the range x spans when it is
    dense (allocation ids are: every id below the record's count is an allocation), its
    distinct values otherwise (np.unique sorts)."""
    lo = int(x.min())
    span = int(x.max()) - lo + 1
    if span <= 4 * len(x) + 64:
        return range(lo, lo + span), x - lo
    ids, at = np.unique(x, return_inverse=True)
    return ids.tolist(), at
