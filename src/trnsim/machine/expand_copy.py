"""The copies loop expansion appends (machine/expand.py): a plan's template iteration
-- its allocations, fences and instructions -- made again from blocks of rows of
numbers, as flat lists in record order."""
from __future__ import annotations

import bisect
import collections
import functools
import itertools
import operator
import weakref

import numpy as np

from .access import Access
from .allocations import Allocations, allocation_fields
from .record import (Allocation, Instruction, constructed, copy_columns,
                     deferred_instructions, fits_int32, held_reads, held_writes,
                     identities, pending_operands, set_operands)

repeat = itertools.repeat
_new_access = tuple.__new__  # (an Access from its 18 fields, as machine/access.py makes them)


_ID, _VADDR = Allocation.__slots__.index("id"), Allocation.__slots__.index("vaddr")
# (a getter per field: ~30% quicker than one of all six and a transposition)
_STATICS = [operator.attrgetter(f) for f in ("core", "engine", "opcode", "location", "attrs",
                                             "queue")]
# an Access's fields a moving operand's copies keep (all but offset, partitions, lo, hi,
# alloc)
_KEPT = (*range(8), *range(13, 17))
_KEPT_FIELDS = operator.itemgetter(*_KEPT)
# blocks of at least this many copies (and _SMALL_PLACES moving operands) make each
# moving operand's copies, then each reads or writes tuple's, at once; smaller ones (a
# wide template copied a few times) every tuple of a group at once
_BY_COLUMN = 32
# blocks of at least this many copies give an allocation declared just before an
# instruction that instruction's index object (`_declared`: its NumPy calls cost more
# than the ints they save in smaller ones)
_SHARED_DECLARATIONS = 256
# blocks of at least this many allocations (copies times the template's) keep them as
# columns (machine/allocations.py: an outer loop's Copier reads them as columns; fewer
# would be read, by hoisting, at about 1 us each, before their columns would save much)
_ALLOCATION_COLUMNS = 64
assert Allocation.__slots__[0] == "id" and Allocation.__slots__[-1] == "declared_at"
# an instruction's structure key's (machine/expand_parts.py `instruction_parts`): its
# engine, opcode, number of reads, operands (an Access's fields role..pattern, ...)
_ENGINE, _OPCODE, _N_READS, _OPERANDS = map(operator.itemgetter, (1, 2, 5, 6))
_SPACE = 2  # (an operand key's)
_EXPLICIT = operator.itemgetter(-1)  # (an allocation's key's: `allocation_key`)


class Layout:
    """Where a template iteration's numbers lie and which of them move: what a Copier
    derives from its plan's structure, drift and moving columns alone, kept with the
    loop's model (`ExpansionStats.known`) so that a loop entered again with the same
    model reuses it (`fits`)."""

    def __init__(self, plan, moves: np.ndarray, width: int):
        structure = plan.key[0]  # the instructions', the allocations', the fences'
        # (read off their keys, machine/expand_parts.py `instruction_parts`: the
        # template's own operands may be made when first read)
        keys = self.keys = list(structure[:width])
        self.sizes = plan.sizes
        size = np.array(self.sizes, dtype=np.int64)
        at = np.cumsum(size) - size  # where each instruction's numbers start
        self.starts, self.stops = at.tolist(), (at + size).tolist()
        n_read = np.fromiter(map(_N_READS, keys), np.int64, width)
        self.operands = n_ops, cols = plan.operands
        self.index_cols = at + 6 * n_ops
        self.moves = moves
        self.drift = plan.drift
        self.width = width
        self.record_numbers = plan.record_numbers
        self.operand_ids = plan.operand_ids  # (the structure's: see Plan._made)
        self._positions = None  # (see positions)
        self._one_copy = None
        owner = np.repeat(np.arange(width), n_ops)
        first = np.cumsum(n_ops) - n_ops
        moving = self._operands_moving(moves, cols, n_read, n_ops, owner, first)
        # copies whose operands are made when first read (Copier.append) hold their
        # template's meanwhile, which the cost model reads (machine/record.py
        # `held_reads`): a DMA's price reads its operands' partitions, so not where
        # they move
        dma = np.fromiter(map(operator.eq, map(_ENGINE, keys), repeat("dma")), bool, width)
        self.lazy = bool(len(self.moving)) and not (
            dma[owner[moving]] & moves[self.moving[:, 1:3]].any(axis=1)).any()
        # hoisting reads every copy of a load (HBM to SBUF) unless each reads other bytes
        # than the one before (compiler/hoist.py `_visited`), and peeks at a wide
        # template's (`_PendingOperands.peek`): a narrow one's block is made at once
        # where a load's source does not move (else where it stays in a block:
        # `loads_move`)
        self.load_sources = []
        if width < _WIDE:
            single = np.flatnonzero(dma & (n_read == 1) & (n_ops == 2)).tolist()
            loads = [k for b, k in zip(single, first[single].tolist())
                     if _is_load(keys[b])]
            among = dict(zip(self.moving_at, range(len(self.moving_at))))
            self.load_sources = [among[k] for k in loads if k in among]
            self.lazy &= len(self.load_sources) == len(loads)
        # (instruction, its attributes' numbers, their key) where they move
        moved = np.concatenate(([0], np.cumsum(moves)))
        lo, hi = self.index_cols + 1, at + size
        some = np.flatnonzero(moved[hi] > moved[lo])
        self.moving_attrs = [(b, slice(start, stop), keys[b][-1]) for b, start, stop
                             in zip(some.tolist(), lo[some].tolist(), hi[some].tolist())]
        _, _, a_start, a_stop, f_start, f_stop = plan.template
        n_allocs = a_stop - a_start
        self.alloc_keys = list(structure[width:width + n_allocs])
        self.explicit = np.fromiter(map(_EXPLICIT, self.alloc_keys), bool, n_allocs)
        self.any_explicit = bool(self.explicit.any())
        n_fences = f_stop - f_start
        first = plan.record_numbers - 3 * n_allocs - n_fences
        self.alloc_cols = first + 3 * np.arange(n_allocs, dtype=np.int64)
        self.declared_cols = self.alloc_cols + 1
        self.fence_cols = first + 3 * n_allocs + np.arange(n_fences)

    def _operands_moving(self, moves, cols, n_read, n_ops, owner, base) -> np.ndarray:
        """The template operands that may move (their numbers' columns, positions among
        all operands, and which of the six numbers move for any of them); the reads or
        writes tuples holding one, grouped by side (0 reads, 1 writes) and size: their
        instructions and each operand's source in a copy (its index among the moving
        operands, or ~its index among all the template's operands). `cols`: where each
        operand's numbers lie. Returns the moving operands' positions."""
        nth = np.arange(len(owner)) - base[owner]
        moves_op = moves[cols].any(axis=1)
        moving = np.flatnonzero(moves_op)
        self.moving = cols[moving]
        self.moving_at = moving.tolist()
        # (see same_operands: the kinds, the fields they were found for, each operand's
        # kind's first)
        self._same = self._same_fields = self._same_rows = None
        self.fields_moving = moves[self.moving].any(axis=0).tolist()
        self.copy_columns = copy_columns(moving, self.fields_moving)
        self.operand_moves = moves[self.moving[:, :3]]  # (offset, p_lo, p_hi)
        source = np.where(moves_op, np.cumsum(moves_op) - 1, ~np.arange(len(owner)))
        write = nth >= n_read[owner]
        self.tuples = []
        for side, first, size in ((0, base, n_read), (1, base + n_read, n_ops - n_read)):
            held = np.zeros(self.width, dtype=bool)
            held[owner[moving[write[moving] == side]]] = True
            for k in np.unique(size[held]).tolist():
                b = np.flatnonzero(held & (size == k))
                self.tuples.append((side, b, source[first[b][:, None] + np.arange(k)]))
        return moving

    def same_operands(self, nums: np.ndarray, fields: np.ndarray):
        """Which moving operands have the same fields but their numbers (`fields`: a
        row per operand, of the id() of each field object it keeps and the kept offset,
        partitions) and equal numbers in every copy of a block (`nums`: (copies,
        operands, 6)): (the first of each kind, each operand's kind), None where few are
        equal. Kept for the next block, which it fits when its rows agree (its numbers
        alone where its fields are the same array: the same Copier's)."""
        same = self._same
        if same is not None and same[0] is None:
            return None
        numbers = nums.transpose(1, 0, 2).reshape(len(fields), -1)
        if same is not None:
            if self._same_fields is fields:
                if (numbers[self._same_rows] == numbers).all():
                    return same
            else:
                key = np.column_stack((fields, numbers))
                if (key[self._same_rows] == key).all():
                    self._same_fields = fields
                    return same
        first, kind = self._same = _kinds(np.column_stack((fields, numbers)))
        if first is None:
            return None
        self._same_fields, self._same_rows = fields, first[kind]
        return self._same

    def positions(self, n: int, same=None, keep: bool = True) -> list:
        """For a block of n copies of the template (kept for the last n and `same` asked
        to `keep`; one copy's with no kinds kept apart, for good: the first and last
        copies of a block whose operands are made when first read, `_PendingOperands`),
        each group of `tuples`: its side, the copies' flat positions, for each of its
        operands their sources in a pool of the copies' moving operands (copy r's j-th
        at r * m + j, or r * k + its kind where `same` (see same_operands) gives k
        kinds) followed by the template's operands, and where kinds make enough tuples
        of the same sources (`_kinds`), only the distinct ones and which of them each
        position takes (else None)."""
        if n == 1 and same is None:
            if self._one_copy is None:
                self._one_copy = self._positions_of(1, None)
            return self._one_copy
        kept = self._positions
        if kept is not None and kept[0] == n and kept[1] is same:
            return kept[2]
        out = self._positions_of(n, same)
        if keep:
            self._positions = (n, same, out)
        return out

    def _positions_of(self, n: int, same) -> list:
        m = len(self.moving)
        at, k = (np.arange(m), m) if same is None else (same[1], len(same[0]))
        rows = np.arange(n)[:, None]
        out = []
        for side, b, src in self.tuples:
            where = (rows * self.width + b).ravel().tolist()
            sources = np.column_stack([np.where(j >= 0, rows * k + at[np.maximum(j, 0)],
                                                n * k + ~j).ravel() for j in src.T])
            first, taken = _kinds(sources) if same is not None else (None, None)
            if first is not None:
                sources, taken = sources[first], taken.tolist()
            out.append((side, where, sources.T.tolist(), taken))
        return out

    def drop_positions(self) -> None:
        """Let go of the positions and kinds kept for the last block (lists as long as
        its copies, the template's fields: the kernel has returned, and the layout is
        kept with its loop's model)."""
        self._positions = self._same = self._same_fields = self._same_rows = None

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
    whose numbers cannot move (`_moves`) is the template's (immutable) Access, and so is
    a tuple of reads or writes where none can; the others are made for every copy, in a
    block of enough moving operands when first read (`_PendingOperands`; Layout.lazy).
    `layout`: a Layout made for an earlier entry of the same loop, used when it fits
    this plan."""

    def __init__(self, run, plan, layout: "Layout | None" = None):  # plan: a Plan
        p = run.program
        start, end, a_start, a_stop, f_start, f_stop = plan.template
        tmpl = self.templates = p.instructions[start:end]
        if layout is None or not layout.fits(plan, len(tmpl)):
            layout = Layout(plan, _moves(plan), len(tmpl))
        self.layout = lay = layout
        self.keys, self.starts, self.stops = lay.keys, lay.starts, lay.stops
        self.index_cols, self.moving = lay.index_cols, lay.moving
        self.last = last = plan.rows[-1]  # (the template's numbers)
        self.moving_attrs = [(b, span, last[span].tolist(), key)
                             for b, span, key in lay.moving_attrs]
        self.own_attrs = tuple(b for b, _, _ in lay.moving_attrs)
        statics = [list(map(field, tmpl)) for field in _STATICS]
        # (core, engine, opcode, reads, writes, ...: the tuples the template holds, a
        # loop copy's among them its own template's where its own are not made yet)
        statics[3:3] = list(map(held_reads, tmpl)), list(map(held_writes, tmpl))
        self.statics = statics
        self.operands = Operands(lay, tmpl, statics[3], statics[4])
        # (the template's allocations' fields, a list per field: a block of copies' read
        # as columns)
        self.alloc_fields = allocation_fields(p.allocations, range(a_start, a_stop)) \
            if a_stop > a_start else []
        self.template_ids = self.alloc_fields[_ID] if self.alloc_fields else []
        self.vaddrs = self.alloc_fields[_VADDR] if self.alloc_fields else []
        self.alloc_keys, self.alloc_cols = lay.alloc_keys, lay.alloc_cols
        self.explicit = lay.explicit
        self.fence_cores = [core for core, _ in p.fences[f_start:f_stop]]
        self.fence_cols = lay.fence_cols

    @functools.cached_property
    def fields(self) -> np.ndarray | None:
        """For Layout.same_operands: `_operand_fields` of the moving operands."""
        if not self.layout.moving_at:
            return None
        return _operand_fields(self.operands, self.last[self.moving[:, :3]])

    def append(self, p, values: np.ndarray, stats) -> list:
        """Append the copies for the rows of `values` (noting them in `stats`, when
        given, as blocks a snapshot takes at once); returns the ids of the allocations
        made."""
        n = len(values)
        indices = values.take(self.index_cols, axis=1).ravel()
        index = indices.tolist()
        ids = self._allocations(p, values, index, stats)
        if len(self.fence_cores):
            p.fences.extend(zip(self.fence_cores * n,
                                values.take(self.fence_cols, axis=1).ravel().tolist()))
        core, engine, opcode, reads, writes, location, attrs, queue = self.statics
        # the moving operands' numbers (copy r's j-th at r * m + j; `take`: columns read
        # ~3-20x quicker than by indexing, which is slow for few wide rows)
        nums = values.take(self.moving, axis=1).reshape(-1, 6)
        attrs = self._attrs(values, attrs)
        lazy = self.layout.lazy and len(nums) >= _LAZY and self._loads_move(nums, n)
        by_column = n >= _BY_COLUMN and len(nums) >= _SMALL_PLACES
        if lazy:  # (the template's tuples, held until first read)
            reads, writes = reads * n, writes * n
        else:
            reads, writes = self.operands.make(nums, n, p.allocations,
                                               self._same(nums, n, by_column), by_column)
        fields = [index, core * n, engine * n, opcode * n, reads, writes, location * n,
                  attrs, queue * n]
        if lazy and index:
            # (the kinds of equal operands found when first made: most blocks never are)
            placed = self.last[self.moving[:, :3]] \
                if self._kinds_wanted(len(nums), by_column) else None
            made = _PendingOperands(self.operands, nums, n, p.allocations, placed,
                                    by_column, p).copies(fields)
        else:
            made = constructed(Instruction, fields)
        p.instructions.extend(made)
        if made:  # (for the access columns: timing/access_columns.py)
            p.note_copies(made, self.templates, self.statics[3], self.statics[4],
                          self.layout.moving_at, self.layout.fields_moving, nums,
                          self.layout.copy_columns, self.own_attrs, indices)
        if stats is not None and made:  # (numbers: where they lie in `values`)
            stats.copied_blocks[len(p.instructions) - len(made)] = (
                len(p.instructions) - 1, made[-1], self.keys, self.layout.sizes, n, values,
                self.starts[0], self.stops[-1])
        return ids

    def _allocations(self, p, values: np.ndarray, index: list, stats) -> list:
        if not self.template_ids:
            return []
        n = len(values)
        allocs = p.allocations
        ids = values.take(self.alloc_cols, axis=1).ravel()
        vaddr = np.where(self.explicit, values.take(self.alloc_cols + 2, axis=1),
                         self.vaddrs).ravel() if self.layout.any_explicit else None
        in_order = bool((np.diff(ids) == 1).all())  # (ids[0], ids[0] + 1, ...)
        if len(ids) >= _ALLOCATION_COLUMNS and in_order and ids[0] >= (
                allocs.top() if type(allocs) is Allocations else max(allocs, default=-1) + 1):
            if type(allocs) is not Allocations:  # (kept as columns from the first on)
                allocs = p.allocations = Allocations(allocs)
            declared = values.take(self.layout.declared_cols, axis=1).ravel()
            allocs.add_block(int(ids[0]), self.alloc_fields, declared.astype(np.int64),
                             vaddr if vaddr is None else vaddr.astype(np.int64))
            ids = ids.tolist()
        else:
            ids = ids.tolist()
            args = [f * n for f in self.alloc_fields]
            args[0] = ids
            args[-1] = self._declared(values, index) if n >= _SHARED_DECLARATIONS \
                else values.take(self.layout.declared_cols, axis=1).ravel().tolist()
            if vaddr is not None:
                args[_VADDR] = vaddr.tolist()
            made = constructed(Allocation, args)
            if type(allocs) is Allocations:
                allocs.add(ids, made)
            else:
                allocs.update(zip(ids, made))
        if stats is not None and in_order:
            # the block's allocations at once, for `snapshot`: their numbers are the rows'
            # (id, declared_at, vaddr where explicit: 0 elsewhere, no drift); its last
            # allocation (made from its columns, where kept so) tells that it is still
            # in the record
            cols = self.alloc_cols
            stats.copied_alloc_blocks[ids[0]] = (
                ids[-1], allocs[ids[-1]], self.alloc_keys, n, values, int(cols[0]),
                int(cols[-1]) + 3)
        return ids

    def _declared(self, values: np.ndarray, index: list) -> list:
        """The copies' declared_at (copy r's i-th allocation at r * k + i): where it is
        the index of one instruction of the copy in every row (an allocation declared
        just before it), that instruction's int object (`index`: the copies' indices)."""
        declared = values.take(self.layout.declared_cols, axis=1)
        width = len(self.templates)
        if not width:
            return declared.ravel().tolist()
        indices = values.take(self.index_cols, axis=1)
        at = np.searchsorted(indices[0], declared[0]).clip(0, width - 1)
        hit = (indices.take(at, axis=1) == declared).all(axis=0).tolist()
        columns = [index[b::width] if h else declared[:, i].tolist()
                   for i, (b, h) in enumerate(zip(at.tolist(), hit))]
        return columns[0] if len(columns) == 1 else \
            list(itertools.chain.from_iterable(zip(*columns)))

    def _attrs(self, values: np.ndarray, attrs: list) -> list:
        """The copies' attrs (a flat list), those with numbers that move their own."""
        n, width = len(values), len(self.templates)
        attrs = attrs * n
        for b, span, same, key in self.moving_attrs:
            template = attrs[b]
            for r, nums in enumerate(values[:, span].tolist()):
                if nums != same:
                    attrs[r * width + b] = _attrs_with(template, key, nums)
        return attrs

    def _loads_move(self, nums: np.ndarray, n: int) -> bool:
        """Whether each load's source (Layout.load_sources) reads other bytes in each
        copy than in the one before."""
        at = self.layout.load_sources
        if not at:
            return True
        src = nums.reshape(n, len(self.moving), 6)[:, :, 3:5].take(at, axis=1)
        return bool((src[1:] != src[:-1]).any(axis=2).all())

    def _same(self, nums: np.ndarray, n: int, by_column: bool):
        """The kinds of equal moving operands Operands._in_record_order makes one Access
        per (Layout.same_operands, asked in record order: it keeps the last block's), None
        where it makes them all, or where Operands._by_operand makes them (`by_column`)."""
        if not self._kinds_wanted(len(nums), by_column):
            return None
        return self.layout.same_operands(nums.reshape(n, len(self.moving), 6), self.fields)

    def _kinds_wanted(self, operands: int, by_column: bool) -> bool:
        """Whether a block of that many moving operands' copies looks for kinds of equal
        ones (`_same`)."""
        return bool(len(self.moving)) and not by_column and operands >= _SAME_OPERANDS


def _operand_fields(operands: "Operands", placed: np.ndarray) -> np.ndarray:
    """What each moving operand's copies keep, objects by identity (as access columns
    read the role's and shape's: timing/access_columns.py), and the kept offset,
    partitions (`placed`: the template's numbers: a template operand held where its own
    is not made yet keeps the other objects, `Operands`)."""
    held = operands.held_accesses
    accesses = list(map(held.__getitem__, operands.layout.moving_at))
    # the fields of each distinct Access object (few: an outer loop's template holds
    # its inner copies' template tuples), spread to the operands holding it
    _, first, which = np.unique(identities(accesses), return_index=True,
                                return_inverse=True)
    kept = map(_KEPT_FIELDS, map(accesses.__getitem__, first.tolist()))
    ids = identities(itertools.chain.from_iterable(kept), len(_KEPT) * len(first))
    return np.concatenate((ids.reshape(len(first), len(_KEPT))[which], placed), axis=1)


class Operands:
    """What a Copier makes its copies' moving operands from: its layout and template
    iteration's operands, no instruction (a block whose operands are made when first
    read holds it, `_PendingOperands`, and must not keep its template alive). A loop
    copy among the template's instructions (a loop's template holds its inner loops'
    copies) whose own reads and writes are not made yet holds its template's (`held`,
    machine/record.py `deferred_instructions`: the same objects but for the offset, box and
    alloc of the operands that move), which the copies hold meanwhile too; its own are
    taken when its block gives them (`given`: a pass may replace them after), or made
    from its block's numbers when first needed (`own`; a pending block of these copies
    keeps that block's numbers until it lets go: `_PendingOperands.holds`)."""

    def __init__(self, layout: Layout, templates: list, reads: list, writes: list):
        self.layout, self.width = layout, len(templates)
        self.moving = layout.moving
        self.held = (reads, writes)  # (the tuples the template holds)
        self._kept_first = (None, None)  # (the kinds' firsts, their `kept` fields)
        self._reads, self._writes = list(reads), list(writes)  # (own: None not known)
        self._waiting = []  # (block, positions there, here) of copies not given theirs
        self._wanted = []  # per such block: {position there: here}, made when first given
        pendings, runs = pending_operands(templates)
        if runs is None:
            return
        for j, (pending, _) in enumerate(pendings):
            mine = runs[runs[:, 2] == j].tolist()
            at = np.concatenate([np.arange(s, e) for s, e, _ in mine]).tolist()
            ks = pending.positions(list(map(templates.__getitem__, at))).tolist()
            for s, e, _ in mine:
                self._reads[s:e] = self._writes[s:e] = [None] * (e - s)
            pending.dependents.append((weakref.ref(self), j))
            self._waiting.append((pending, ks, at))
            self._wanted.append((ks, at))

    def waiting(self) -> list:
        """(block, positions there, positions here) of the template's copies whose own
        reads and writes are not known yet."""
        return self._waiting

    def own(self) -> tuple:
        """The template's own reads and writes tuples (lists)."""
        for pending, ks, at in self._waiting:
            missing = [(k, b) for k, b in zip(ks, at) if self._reads[b] is None]
            if missing:
                there, here = zip(*missing)
                reads, writes = pending.own(there)
                _put(self._reads, here, reads)
                _put(self._writes, here, writes)
        self._waiting = []
        return self._reads, self._writes

    def given(self, j: int, ks: list, reads: list, writes: list) -> None:
        """The copies at positions `ks` of the j-th block among the template's
        instructions are given `reads`, `writes`."""
        wanted = self._wanted[j]
        if type(wanted) is tuple:  # (a dict only for blocks that give: most never do)
            wanted = self._wanted[j] = dict(zip(*wanted))
        for b, r, w in zip(map(wanted.get, ks), reads, writes):
            if b is not None:
                self._reads[b], self._writes[b] = r, w

    @property
    def reads(self) -> list:
        return self.own()[0]

    @property
    def writes(self) -> list:
        return self.own()[1]

    @functools.cached_property
    def accesses(self) -> list:
        """The template's own operands (each instruction's reads, then its writes)."""
        return _flat(*self.own())

    @functools.cached_property
    def held_accesses(self) -> list:
        """`accesses` as the template holds them."""
        return _flat(*self.held)

    @functools.cached_property
    def kept(self) -> list:
        """The moving operands' fields as their copies start from (Access's, by
        field): read when first made one by one, not by operand (`_by_operand`)."""
        return [list(f) for f in zip(*map(self.accesses.__getitem__,
                                          self.layout.moving_at))] or [[]] * 18

    @functools.cached_property
    def _operand_starts(self) -> list:
        """Where each template instruction's operands (its reads, then its writes) start
        among all of them, and where the last one's end."""
        return [0, *itertools.accumulate(map(operator.add, *map(map, repeat(len),
                                                                self.held)))]

    def one(self, nums: np.ndarray, b: int, allocs: dict) -> tuple:
        """The reads and writes of one copy of template instruction b (`nums`: that
        copy's moving operands' numbers, a row each), as `make` makes them."""
        lo, hi = self._operand_starts[b], self._operand_starts[b + 1]
        at = self.layout.moving_at
        j0, j1 = bisect.bisect_left(at, lo), bisect.bisect_left(at, hi)
        own = self.own() if self._reads[b] is None else (self._reads, self._writes)
        reads, writes = own[0][b], own[1][b]
        if j0 == j1:
            return reads, writes
        ops = list(reads + writes)
        moving = self.layout.fields_moving
        part = nums[j0:j1]  # (made as _made makes them)
        for q, place, a_lo, a_hi, aid in zip(at[j0:j1], part[:, :3].tolist(),
                                             *_places_small(part, allocs)):
            a = ops[q - lo]
            ops[q - lo] = _new_access(Access, (
                *a[:8], *[x if move else a[8 + f] for f, (x, move)
                          in enumerate(zip(place, moving))],
                a_lo, a_hi, *a[13:17], aid))
        split = len(reads)  # (a tuple with no moving operand is the template's)
        return (tuple(ops[:split]) if at[j0] - lo < split else reads,
                tuple(ops[split:]) if at[j1 - 1] - lo >= split else writes)

    def make(self, nums: np.ndarray, n: int, allocs: dict, same, by_column: bool,
             keep: bool = True) -> tuple:
        """The reads and writes of n copies (flat lists; `nums`: their moving operands'
        numbers; `same`: their kinds, Copier._same; `by_column`: made an operand at a
        time, `_by_operand`, which shares none of a copy's; `keep`: their positions,
        Layout.positions)."""
        width = self.width
        reads, writes = self.own()
        reads, writes = reads * n, writes * n
        if len(self.moving):
            sides = (reads, writes)
            if by_column:
                # each tuple's column at once (copy r's at r * width + b) from each moving
                # operand's copies
                made = self._by_operand(nums, n, allocs)
                accesses = self.accesses
                for side, bs, sources in self.layout.tuples:
                    out = sides[side]
                    for b, src in zip(bs.tolist(), sources.tolist()):
                        out[b::width] = list(zip(*[made[j] if j >= 0 else
                                                   repeat(accesses[~j], n) for j in src]))
            else:  # every tuple of a group at once, from a pool by position
                made = self._in_record_order(nums, n, allocs, same)
                pool = made + self.accesses
                for side, where, sources, taken in self.layout.positions(n, same, keep):
                    made = zip(*[map(pool.__getitem__, j) for j in sources])
                    if taken is not None:  # (one tuple of equal kinds' Accesses)
                        made = map(list(made).__getitem__, taken)
                    _put(sides[side], where, made)
        return reads, writes

    def _in_record_order(self, nums: np.ndarray, n: int, allocs: dict, same) -> list:
        """The moving operands' copies from their numbers' rows (copy r's j-th at
        r * m + j), or where `same` gives kinds of equal operands of a copy
        (Layout.same_operands), one Access (immutable) per kind (copy r's at
        r * k + kind)."""
        if same is None:
            return self._made(nums, n, self.kept, allocs)
        m = len(self.moving)
        first = same[0]
        if self._kept_first[0] is not first:
            at = first.tolist()
            self._kept_first = (first, [list(map(f.__getitem__, at)) for f in self.kept])
        return self._made(nums.reshape(n, m, 6).take(first, axis=1).reshape(-1, 6), n,
                          self._kept_first[1], allocs)

    def _made(self, nums: np.ndarray, n: int, kept: list, allocs: dict) -> list:
        """Operands from their numbers' rows (copy r's j-th at r * m + j; `kept`: their
        fields as they start from, by field)."""
        lo, hi, alloc = _places(nums, allocs)
        place = [nums[:, f].tolist() if self.layout.fields_moving[f]
                 else kept[8 + f] * n for f in range(3)]
        return list(map(_new_access, repeat(Access), zip(
            *[f * n for f in kept[:8]], *place, lo, hi, *[f * n for f in kept[13:17]],
            alloc)))

    def _by_operand(self, nums: np.ndarray, n: int, allocs: dict) -> list:
        """Each moving operand's n copies (a list per operand) from their numbers' rows:
        a field that keeps its value is the template's object, or the same int object
        for every copy where a byte bound is the same (an operand of each iteration's
        own tile: its allocation's copies share the template's virtual address)."""
        m = len(self.moving)
        lo, hi, alloc = _places_arrays(nums, allocs)
        bounds = []
        for x in (lo.reshape(n, m), hi.reshape(n, m)):
            same = (x == x[0]).all(axis=0).tolist()
            bounds.append([repeat(v) if s else col for v, s, col in
                           zip(x[0].tolist(), same, x.T.tolist())])
        place = nums[:, :3].reshape(n, m, 3).transpose(1, 2, 0).tolist()
        accesses, moves = self.accesses, self.layout.operand_moves.tolist()
        out = []
        for j, at in enumerate(self.layout.moving_at):
            a = accesses[at]
            out.append(list(map(_new_access, repeat(Access), zip(
                *map(repeat, a[:8]), *[col if move else repeat(a[8 + f]) for f, (col, move)
                                       in enumerate(zip(place[j], moves[j]))],
                bounds[0][j], bounds[1][j], *map(repeat, a[13:17]), alloc[j::m]))))
        return out


class _PendingOperands:
    """The reads and writes of a block of copies, kept as their moving operands' numbers
    until one of them is first read (machine/record.py `deferred_instructions`), then made
    as the Copier would have made them when it appended them: from the same numbers
    and allocations, and kinds of equal operands found for the block as
    Layout.same_operands finds them (`same`, looked for where `placed` is given: the
    template's offset and partitions of the moving operands, `_operand_fields`). The
    Copier shares an Access or a tuple between copies only where it is the
    template's, so a copy's alone may be made (as one copy of a block, `by_column`
    or not: the same objects shared): in a block of many copies its first and last
    copy are when read first (hoisting visits those of a block where it need not
    visit all, compiler/hoist.py `_visited`), all the others at once where the
    program still lists them where the append left them, else the one read alone
    (the rest of its copy kept for the others: `stash`). A pass that only compares
    them may have a few of a wide template's copies' made apart (`peek`). It holds
    no instruction (their class, which holds it, is in a cycle that only the
    collector frees): their ids, and the program weakly; and it lets go of what
    makes them once none is left to make (`live`: those of their class, those the
    allocation took, which it counts back: compiler/compiled_allocation.py, and the
    pending blocks of an outer loop's copies whose template holds some not made yet:
    `holds`)."""
    __slots__ = ("operands", "nums", "n", "width", "allocs", "placed", "same", "by_column",
                 "ids", "program", "start", "index0", "deferred", "live", "alive",
                 "singles", "row_made", "stash", "peeks", "dependents", "holds", "given",
                 "reclassed")

    def __init__(self, operands: Operands, nums, n, allocs, placed, by_column, program):
        self.operands, self.n, self.allocs, self.placed = operands, n, allocs, placed
        self.same = None
        self.width, self.by_column = operands.width, by_column
        self.nums = nums.astype(np.int32) if fits_int32(nums) else nums.copy()
        # (its copies, `copies`, are appended to the program next)
        self.program, self.start = weakref.ref(program), len(program.instructions)
        self.ids = self.index0 = self.deferred = None
        self.live = 0
        self.alive = 0  # (its copies still of its class)
        self.singles = 0
        self.row_made = None  # (per copy: its operands made)
        self.given = None  # (per copy: given its operands, no longer of its class)
        # (some of its copies given another class by an allocation's move: `all_of_class`)
        self.reclassed = False
        self.stash = {}  # position -> (reads, writes) of one of a copy made, not given yet
        self.peeks = 0
        # (the Operands, weakly, of loops whose template holds some of the copies, with
        # their positions: Operands.given)
        self.dependents = []
        # the blocks whose copies in the template are not given theirs yet: each counts
        # this one as one of them (`live`) until it lets go
        self.holds = [pending for pending, _, _ in operands.waiting()]
        for pending in self.holds:
            pending.live += 1

    def copies(self, fields: list) -> list:
        """The block's copies, of its class, from columns of their fields (index, core,
        ..., their reads and writes their template's: record.deferred_instructions)."""
        made, self.deferred = deferred_instructions(self, fields)
        self.ids = identities(made).copy()
        self.index0 = made[0].index
        self.live += len(made)
        self.alive = len(made)
        return made

    def make(self, ins) -> None:
        """Make the reads and writes of `ins`, a copy of the block (of its class)."""
        k = self.position(ins)
        if k in self.stash:
            self.give([ins], [k])
            return
        w = self.width
        r = k // w
        if self.singles < _SINGLES and self.n >= _BY_COLUMN and r in (0, self.n - 1):
            self.singles += 1
        else:
            listed = self._listed_block()
            if listed is not None:
                self.give(*listed)
                return
        row = self._in_place(r * w, (r + 1) * w)
        if row is not None and self._of_class(row):
            self.give(row, np.arange(r * w, (r + 1) * w))
        else:
            self.give([ins], [k])

    def give(self, instrs: list, ks) -> None:
        """Give `instrs`, the copies at positions `ks` not given theirs yet, their reads
        and writes: those stashed, the others made with their copies (the rest of which
        is stashed)."""
        stash, w, parts = self.stash, self.width, []
        ks = np.asarray(ks, np.int64)
        if stash:
            held = np.fromiter(map(stash.__contains__, ks.tolist()), bool, len(ks))
            if held.any():
                taken = ks[held].tolist()
                got = list(map(stash.pop, taken))
                parts.append((list(itertools.compress(instrs, held)), taken,
                              [x[0] for x in got], [x[1] for x in got]))
                instrs, ks = list(itertools.compress(instrs, ~held)), ks[~held]
        if len(ks):
            rows = np.unique(ks // w)
            reads, writes = self._made(rows)
            at = (rows[:, None] * w + np.arange(w)).ravel()
            if np.array_equal(at, ks):
                parts.append((instrs, ks, reads, writes))
            else:
                mine = np.searchsorted(at, ks)
                parts.append((instrs, ks, list(map(reads.__getitem__, mine.tolist())),
                              list(map(writes.__getitem__, mine.tolist()))))
                others = np.ones(len(at), bool)
                others[mine] = False
                for i, k in zip(np.flatnonzero(others).tolist(), at[others].tolist()):
                    stash[k] = (reads[i], writes[i])
        for ref, j in self.dependents:
            outer = ref()
            if outer is not None:
                for _, at, reads, writes in parts:
                    outer.given(j, np.asarray(at).tolist(), reads, writes)
        if self.given is None:
            self.given = np.zeros(len(self.ids), bool)
        for _, at, _, _ in parts:
            self.given[np.asarray(at, np.int64)] = True
        reverted = sum(set_operands(instrs, reads, writes, self.deferred)
                       for instrs, _, reads, writes in parts)
        self.alive -= reverted
        if not stash and self.row_made.all():
            self._let_go_all()
        self.let_go(reverted)

    def own(self, ks) -> tuple:
        """The reads and writes (lists) of the copies at positions `ks`, none given
        theirs yet, as `give` gives them: stashed (made with their copies) until it
        does."""
        stash, w = self.stash, self.width
        rows = sorted({k // w for k in ks if k not in stash})
        if rows:
            rows = np.array(rows, np.int64)
            reads, writes = self._made(rows)
            at = (rows[:, None] * w + np.arange(w)).ravel().tolist()
            stash.update(zip(at, zip(reads, writes)))
        got = list(map(stash.__getitem__, ks))
        return [x[0] for x in got], [x[1] for x in got]

    def peek(self, ins) -> tuple:
        """The reads and writes `make` gives `ins`, a copy of the block (of its class):
        made apart, equal to those and not given to it, for the first _PEEKS asked of a
        template of at least _WIDE instructions (a copy's others may never be read:
        hoisting's visits of a loop around inner loops), else its own."""
        k = self.position(ins)
        if k not in self.stash and self.width >= _WIDE and self.peeks < _PEEKS:
            self.peeks += 1
            r, b = divmod(k, self.width)
            m = len(self.operands.moving)
            return self.operands.one(self.nums[r * m:(r + 1) * m], b, self.allocs)
        return ins.reads, ins.writes

    def run_at(self, instrs: list, s: int, e: int) -> int:
        """Where among its copies instrs[s:e], copies of its class, start where its
        copies from the first one's on are there in a row (as far as its ends tell: a
        block the program holds where it was noted holds its copies in order between
        its ends, as the access columns read them, timing/access_columns.py), else -1.
        Not after it let go (`ids`)."""
        k = self.position(instrs[s])
        k1 = k + e - s
        return k if k1 <= len(self.ids) and self.ids[k1 - 1] == id(instrs[e - 1]) else -1

    def all_of_class(self, k: int, k1: int) -> bool:
        """Whether its copies k..k1 are all still of its class: none given its operands
        (`give`), nor another class (an allocation's move that did not take the block:
        compiler/compiled_allocation.py `_PendingMove.take_blocks`)."""
        return not self.reclassed and (self.given is None or not self.given[k:k1].any())

    def position(self, ins) -> int:
        """Where `ins` is among the block's copies (in record order, numbered in order
        where no pass has renumbered them otherwise)."""
        k, ids = ins.index - self.index0, self.ids
        if 0 <= k < len(ids) and ids[k] == id(ins):
            return k
        return int(np.flatnonzero(ids == id(ins))[0])

    def positions(self, instrs: list) -> np.ndarray:
        """`position` of each of `instrs`."""
        ids, of = self.ids, identities(instrs)
        if np.array_equal(of, ids):
            return np.arange(len(ids))
        order = np.argsort(ids)
        return order[np.searchsorted(ids, of, sorter=order)]

    def died(self) -> None:
        """One of its copies of its class died."""
        self.alive -= 1
        self.live -= 1
        if not self.live:
            self._let_go_all()

    def let_go(self, count: int = 1) -> None:
        """`count` of them are not of their class any more (given their operands, or
        taken by the allocation, which counts them here until it no longer needs them),
        or died."""
        self.live -= count
        if not self.live:
            self._let_go_all()

    def _let_go_all(self) -> None:
        self.operands = self.nums = self.allocs = self.placed = self.same = self.ids = None
        self.program = self.row_made = self.stash = self.given = None
        self.dependents = ()
        holds, self.holds = self.holds, ()
        for pending in holds:
            pending.let_go()

    def _made(self, rows: np.ndarray) -> tuple:
        """The reads and writes (flat lists) of the copies `rows` (ascending)."""
        n, ops = len(rows), self.operands
        nums = self.nums if n == self.n else \
            self.nums.reshape(self.n, -1, 6)[rows].reshape(-1, 6)
        # (positions not kept: the appends' blocks' are, while the kernel runs)
        made = ops.make(nums.astype(np.int64), n, self.allocs, self._same(),
                        self.by_column and n > 1, keep=False)
        if self.row_made is None:
            self.row_made = np.zeros(self.n, bool)
        self.row_made[rows] = True
        return made

    def _same(self):
        """The kinds of the block's equal moving operands (found when first asked for:
        Layout.same_operands' for its numbers), None where it has none."""
        if self.placed is not None:
            fields = _operand_fields(self.operands, self.placed)
            m = len(fields)
            numbers = self.nums.reshape(self.n, m, 6).transpose(1, 0, 2).reshape(m, -1)
            first, kind = _kinds(np.column_stack((fields, numbers)))
            self.same = None if first is None else (first, kind)
            self.placed = None
        return self.same

    def _in_place(self, lo: int, hi: int) -> list | None:
        """The program's instructions where the append left copies lo to hi, where
        those are still there, else None."""
        program = self.program()
        if program is None:
            return None
        instrs = program.instructions[self.start + lo:self.start + hi]
        if len(instrs) != hi - lo or \
                not np.array_equal(identities(instrs), self.ids[lo:hi]):
            return None
        return instrs

    def _of_class(self, instrs: list) -> bool:
        """Whether all of `instrs` are of the block's class (not given theirs yet)."""
        return set(map(type, instrs)) == {self.deferred}

    def _listed_block(self):
        """(the copies not given theirs yet, their positions) where the program still
        lists them where the append left them, else None."""
        instrs = self._in_place(0, len(self.ids))
        if instrs is None:
            return None
        if self.row_made is None:
            ks = np.arange(len(instrs))
        else:
            ks = np.flatnonzero(np.repeat(~self.row_made, self.width))
            if self.stash:
                ks = np.union1d(ks, list(self.stash))
            instrs = list(map(instrs.__getitem__, ks.tolist()))
        return (instrs, ks) if self._of_class(instrs) else None


# blocks of fewer moving operands make them at once (a class per block costs more)
_LAZY = 64
_SINGLES = 2  # copies of a block made one by one (its first and last) before the rest
# of a template of at least _WIDE instructions, the first _PEEKS of its copies peeked at
# are made apart, one by one
_WIDE = 16
_PEEKS = 16


def _is_load(key: tuple) -> bool:
    """Whether an instruction's structure key is that of a load: a DMA copy from HBM
    to SBUF (one read, one write)."""
    ops = _OPERANDS(key)
    return _OPCODE(key) == "dma_copy" and ops[0][_SPACE] == "hbm" \
        and ops[1][_SPACE] == "sbuf"


def _moves(plan) -> np.ndarray:
    """Which of a plan's numbers move: all but those with no drift that every phase of
    the period sampled the same."""
    return ~((plan.drift == 0) & (plan.rows == plan.rows[-1]).all(axis=0))


# blocks of at least this many moving operands make one Access per kind of equal ones
# (Layout.same_operands), unless more than _DISTINCT of them (as a share) differ
_SAME_OPERANDS = 256
_DISTINCT = 0.9


@functools.cache
def _mix(width: int) -> np.ndarray:
    """Odd 64-bit multipliers drawn independently, one a column of a key `_kinds` mixes.
    (Multiples 1, 2, 3, ... of one constant mixed rows whose differences, weighed so,
    sum to 0, e.g. one greater by 2 in its first column and less by 1 in its second:
    told apart again by the row check, such a block found no kinds at all.)"""
    drawn = np.random.default_rng(width).integers(0, 2**64, width, dtype=np.uint64)
    return drawn | np.uint64(1)


def _kinds(key: np.ndarray):
    """(the first of each kind of equal rows of `key`, each row's kind), or (None, None)
    where more than _DISTINCT of them differ (rows told apart by a mix of their
    numbers, which must then match)."""
    _, first, kind = np.unique(key.view(np.uint64) @ _mix(key.shape[1]), return_index=True,
                               return_inverse=True)
    if len(first) > _DISTINCT * len(key) or not (key[first][kind] == key).all():
        return None, None
    return first, kind


def _flat(reads: list, writes: list) -> list:
    """The operands of instructions whose reads and writes tuples are `reads`, `writes`,
    in order (each instruction's reads, then its writes)."""
    return list(itertools.chain.from_iterable(itertools.chain.from_iterable(
        zip(reads, writes))))


def _put(out: list, where: list, items) -> None:
    """out[i] = item for each position of `where` and item of `items`."""
    collections.deque(map(out.__setitem__, where, items), maxlen=0)


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


def _places(nums: np.ndarray, allocs: dict):
    """(lo, hi, allocation) columns of operands from their numbers (rows of offset,
    partitions, byte range relative to the allocation, its id): the byte range made
    absolute, and one int object per allocation for its id."""
    if len(nums) < _SMALL_PLACES:
        return _places_small(nums, allocs)
    lo, hi, alloc = _places_arrays(nums, allocs)
    return lo.tolist(), hi.tolist(), alloc


def _places_arrays(nums: np.ndarray, allocs: dict):
    """`_places` with NumPy, its byte ranges as int64 arrays."""
    aid = nums[:, 5]
    first = int(aid.min())
    if first < 0:  # (some or all without an allocation: HBM)
        owned = aid >= 0
        if not owned.any():
            return nums[:, 3], nums[:, 4], aid.tolist()
        ids, at = _lookup(aid[owned], int(aid[owned].min()))
    else:
        owned = None
        ids, at = _lookup(aid, first)
    vaddr, names = _vaddrs_and_ids(allocs, ids)
    vaddr = vaddr[at]
    if owned is None:
        base = vaddr
    else:
        base = np.zeros(len(nums), dtype=np.int64)
        base[owned] = vaddr
    if owned is None:
        alloc = list(map(names.__getitem__, at.tolist()))
    elif (aid[~owned] == -1).all():  # (HBM's -1 as one more name: one pass)
        where = np.full(len(nums), len(names), dtype=np.int64)
        where[owned] = at
        names.append(-1)
        alloc = list(map(names.__getitem__, where.tolist()))
    else:
        alloc = aid.tolist()
        _put(alloc, np.flatnonzero(owned).tolist(), map(names.__getitem__, at.tolist()))
    return nums[:, 3] + base, nums[:, 4] + base, alloc


# fewer operands than this are placed one by one (NumPy's calls cost more than the loop)
_SMALL_PLACES = 256


def _places_small(nums: np.ndarray, allocs: dict):
    """`_places`, operand by operand (the columns of numbers changed in place)."""
    lo, hi, alloc = nums[:, 3:].T.tolist()
    if isinstance(allocs, Allocations):  # (its copies' columns read, none made)
        owned = [aid for aid in alloc if aid >= 0]
        vaddr, names = allocs.vaddrs_and_ids(owned)
        allocs = dict(zip(owned, map(_Place, vaddr.tolist(), names)))
    for i, aid in enumerate(alloc):
        if aid >= 0:
            al = allocs[aid]
            base = al.vaddr
            lo[i] += base
            hi[i] += base
            alloc[i] = al.id
    return lo, hi, alloc


_Place = collections.namedtuple("_Place", "vaddr id")


def _vaddrs_and_ids(allocs, ids) -> tuple:
    """(vaddr of each allocation of `ids`: an int64 array, its id object: a list)."""
    if isinstance(allocs, Allocations):
        return allocs.vaddrs_and_ids(ids)
    made = [allocs[i] for i in ids]
    return np.array([al.vaddr for al in made], dtype=np.int64), [al.id for al in made]


def _lookup(x: np.ndarray, lo: int):
    """(values, where each item of `x` is among them), `lo`: x's least: the range x
    spans when it is dense (allocation ids are: every id below the record's count is an
    allocation), its distinct values otherwise (np.unique sorts)."""
    span = int(x.max()) - lo + 1
    if span <= 4 * len(x) + 64:
        return range(lo, lo + span), x - lo
    ids, at = np.unique(x, return_inverse=True)
    return ids.tolist(), at
