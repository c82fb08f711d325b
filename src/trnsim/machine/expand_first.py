"""Iteration 0 of a loop entered again, appended rather than run (machine/expand.py).

A loop entered again whose iteration 0 repeated its model (the inner loop of a blocked
kernel) runs iteration 0 and the last for real. Its entries' iteration 0 numbers (the
record's, the HBM cursor, the frame's ints and lists' lengths: `Plan.rows[0]`) are
affine in the state at their entry (the record's counts, the HBM cursor, the frame's
ints, its lists' lengths: `basis`) where the kernel indexes affinely: an entry whose
basis is an affine combination of earlier entries' is predicted as the same combination
of their rows; where fewer were noted than the state has independent moves (causal flash
attention's record counts, query tile and trip count), by each number's class in their
rows (`_Classes`: the same in all, or moved by a whole multiple of one term's move),
where the classes agree. Such an entry appends iteration 0 too, copied from the last entry whose
iteration 0 ran (its `_Template`, still in the record), and the iteration that checks
its model (the last, or the one before a last that differs alone) checks the prediction
as it checks the model (every number of the record and the frame's ints it leaves);
where the last misses, the one before it checks it (as `expand._expanding` does a
model), and where that misses too, the record is rolled back to the entry, which then
runs as before.

A body that carries tiles to the next iteration reads in iteration 0 those its carried
locals hold at the entry (causal flash attention's online-softmax state, made before
the loop: `Plan.carried_in`), which the model's row takes for the tiles one step back:
the copy of iteration 0 reads the tiles those locals hold at this entry (`_EntryRead`:
views of the template's), the later ones those its model gives. The frame's ints the
body binds before reading them (absent at the entry of a function called for each
entry: flash attention's `ki`, `k0`) are no part of the basis.

The virtual address of an on-chip tensor (not a number of the model: copies take their
template's) depends on which tensors are alive when it is placed, which the Python
objects' lifetimes decide. Iteration 0's are placed as the body would place them, one
after another from the entry's placement (`_positions`): the tensors the body rebinds
each iteration (`res_psum = nl.zeros(...)`, held until the entry ends, as the model's
carried tensors are) are placed there, the others (temporaries of the functions the
body calls, dead by the iteration's end) only move the memory's cursor past them.
Where the placements in turn wrap around no further than the entry's cursor, no
temporary freed meanwhile could have made room for a later one; an entry that ran its
iteration 0 tells whether the placements in turn are the body's (`fit`: the tensors
the carried ones replace, freed as the body rebinds them, may have made room for the
later ones). Left to the rest: loops whose lists grow, with direct allocations, or on
more than one logical core."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .allocations import allocation_fields
from .expand_parts import snapshot
from .expand_plan import _NARROW, Plan, _carried_from_entry, same_model
from .frame_state import copied_storage, over_storage, tensor_core
from .record import Allocation

GIVE_UP = 2  # predictions a loop's last iterations missed after which it predicts none
_HISTORY = 12  # entries a loop's predictions combine at most
# (the Copier's allocation fields', `allocation_fields`)
_VADDR, _CORE, _SPACE, _ROW_BYTES = map(Allocation.__slots__.index,
                                        ("vaddr", "core", "space", "row_bytes"))
# instructions an iteration records at least for its loop's entries to be predicted: a
# prediction (~50 us) costs about what one legacy instruction run for real and the
# model it checks do (block_free's loops of one load or matmul: 2-4% slower)
BODY = 2


class _Template:
    """What a prediction copies: the last entry whose iteration 0 ran for real, as its
    plan had it (no object of the run's but the record's, whose identity tells that the
    template is still there)."""
    __slots__ = ("key", "drift", "template", "local_names", "sizes", "rebound", "index",
                 "indexing", "operand_ids", "row", "carried", "ends", "placing", "fits",
                 "bound", "entry_reads")

    def __init__(self, run, plan, placing, carried, bound, entry_reads):
        for name in ("key", "drift", "template", "local_names", "sizes", "rebound",
                     "index", "indexing", "operand_ids"):
            setattr(self, name, getattr(plan, name))
        self.row = plan.rows[0].copy()
        p = run.program
        i0, i1, a0, _, _, _ = plan.template
        self.ends = (p.instructions[i0], p.instructions[i1 - 1], p.allocations.get(a0))
        # [(storage or None, the memory, the aligned bytes)] of its allocations in turn
        # (the storages, of the carried tensors only: copies no memory places, which
        # those tensors are over)
        self.placing = placing
        self.carried = carried  # [(local, tensor over a storage of its own)]
        self.fits = False  # whether its allocations were placed where `fit` said
        self.bound = bound  # the frame's ints the body binds before reading them
        self.entry_reads = entry_reads  # [_EntryRead]

    def still_there(self, p) -> bool:
        i0, i1, a0, a1, _, f1 = self.template
        first, last, alloc = self.ends
        return len(p.instructions) >= i1 and p.instructions[i0] is first \
            and p.instructions[i1 - 1] is last and len(p.fences) >= f1 \
            and (a1 == a0 or p.allocations.get(a0) is alloc)


class _Predicted(Plan):
    """A model of iteration 0 alone whose row is predicted (`first`), with the template
    of an earlier entry, whose numbers are `rows[-1]` (what the Copier reads as its
    template's: their differences from `first` are moving columns to it), and the
    addresses of iteration 0's allocations (`vaddrs`), which its copies share. `zero`:
    iteration 0's own numbers where it reads tiles carried into the loop (the model's
    row takes them for those one step back: `_EntryRead`), else None."""

    def __init__(self, *args, first: np.ndarray, zero, vaddrs: list):
        super().__init__(*args)
        self.first = first
        self.zero = zero
        self.vaddrs = vaddrs
        self.last_sampled = 0

    def _narrow(self) -> tuple:
        if self._lists is None:
            self._lists = (self.first.tolist(), self.drift.tolist()) \
                if self.rows.shape[1] <= _NARROW and self.zero is None else ()
        return self._lists

    def row(self, iterations: np.ndarray, cols=slice(None)) -> np.ndarray:
        out = self.first[cols] + self.drift[cols] * iterations[:, None]
        if self.zero is not None:
            out[iterations == 0] = self.zero[cols]
        return out

    def row_at(self, iteration: int, cols=slice(None)) -> np.ndarray:
        if iteration == 0 and self.zero is not None:
            return self.zero[cols].copy()
        return self.first[cols] + self.drift[cols] * iteration

    def _copier(self, run):
        copier = super()._copier(run)
        if self.vaddrs:  # (the copies' addresses: iteration 0's)
            fields = copier.alloc_fields = list(copier.alloc_fields)
            fields[_VADDR] = self.vaddrs
        return copier


def placements(run) -> list:
    """Where the run's on-chip memories place their next tensors (`restore_placements`
    returns them there: an entry rolled back places as if it had not run)."""
    return [(m, m.placement()) for c in run.cores for m in (c.sbuf, c.psum)]


def restore_placements(saved: list) -> None:
    for memory, placement in saved:
        memory.restore_placement(placement)


def basis(start, local_names, list_names) -> list | None:
    """The state at an entry a prediction combines (see the module docstring): the
    record's counts, the HBM cursor, the frame's ints and lists' lengths; None where
    one is missing."""
    loc, lists = start.locals, start.lists
    ints = [loc.get(k) for k in local_names]
    if any(type(v) is not int for v in ints) or any(k not in lists for k in list_names):
        return None
    return [start.instructions, start.allocations, start.fences, start.hbm, *ints,
            *(lists[k][1] for k in list_names)]


class FirstIterations:
    """A loop's entries whose iteration 0 is known (`ExpansionStats.firsts`): their bases
    and rows, and the last one whose iteration 0 ran for real (`_Template`)."""
    __slots__ = ("key", "bases", "rows", "solver", "classes", "template", "misses",
                 "layout", "expected")

    def __init__(self):
        self.key = None
        self.bases: list = []
        self.rows: list = []
        self.solver = None  # (see _solver)
        self.classes = None  # (see _Classes)
        self.template = None
        self.misses = 0
        self.layout = None  # the Copier's Layout of the last prediction
        self.expected = None  # (see fit)

    def fit(self) -> None:
        """Before an entry runs its iteration 0: where the template's allocations would
        be placed now in turn, each kept, which `note` compares with the entry's."""
        t = self.template
        self.expected = None
        if t is not None and t.placing:
            self.expected = _positions(t.placing)

    def note(self, run, plan, start) -> None:
        """Note an entry that ran its iteration 0 for real and matched its model of it
        alone: the template of the next predictions. (One predicted is not noted: the
        entries noted combine to it.)"""
        expected, self.expected = self.expected, None
        if plan.per_iteration < BODY or plan.growing or plan.period != 1:
            return
        names = _basis_names(plan.local_names, start)
        b = basis(start, names, plan.key[2])
        if b is None:
            return
        # (the frame's other locals, whose objects an entry may rebind, `predict` checks
        # against the loop's model by their states)
        key = (plan.key[0], plan.key[2], plan.key[3], names, plan.carried_in)
        if key != self.key:
            self.key, self.bases, self.rows, self.template = key, [], [], None
        self.bases.append(b)
        self.rows.append(plan.rows[0])
        del self.bases[:-_HISTORY], self.rows[:-_HISTORY]
        self.solver = self.classes = None
        self.template = _template(run, plan, start, frozenset(plan.local_names) - set(names))
        if self.template is not None and self.template.placing:
            fields = allocation_fields(run.program.allocations, range(*plan.template[2:4]))
            self.template.fits = expected == fields[_VADDR]

    def predict(self, run, start, known) -> _Predicted | None:
        """The plan of an entry (`start`: the full mark at it) whose iteration 0 the
        earlier entries predict, or None. Its carried tensors, if any, are placed."""
        t = self.template
        if t is None or len(self.rows) < 2 or self.misses >= GIVE_UP or run.lnc > 1 \
                or (t.placing and not t.fits) or not t.still_there(run.program):
            return None
        names = _basis_names(t.local_names, start)
        if names != self.key[3]:
            return None
        key = _entry_key(t, start)
        if key[3] != tuple(t.local_names) or not same_model(key, known[0]):
            return None
        b = basis(start, names, t.key[2])
        if b is None:
            return None
        if self.solver is None:
            self.solver = _solver(self.bases, self.rows)
        first = _combined(self.solver, b)
        if first is None:
            if self.classes is None:
                self.classes = _Classes(self.bases, self.rows)
            first = self.classes.predicted(b)
            if first is None:
                return None
        zero = None
        if t.entry_reads:
            zero = first.copy()
            for read in t.entry_reads:
                alloc = read.alloc(start)
                if alloc is None:
                    return None
                zero[read.column] = alloc
        n = len(first) - 1 - len(t.local_names) - len(t.key[2])
        first[n] = start.hbm
        vaddrs, carried = [], t.carried
        if t.placing:
            vaddrs = _positions(t.placing)
            if vaddrs is None:
                return None
            placed = _place(t.placing, vaddrs)
            now = {id(st): own for (st, _, _), own in zip(t.placing, placed)
                   if st is not None}
            carried = [(name, over_storage(x, now[id(tensor_core(x).storage)]))
                       for name, x in carried]
        # (rows: those of the entries noted, the prediction's, the template's last, whose
        # differences mark moving columns as the Copier's layout reads them: the same
        # columns from one prediction to the next, which keep its layout)
        rows = np.vstack((*self.rows, first, t.row))
        # (a drift of its own: `Layout.fits` takes one with the drift its layout was made
        # for to move the same numbers, which another entry's template need not)
        plan = _Predicted(rows, 1, t.drift.copy(), t.key, t.template,
                          t.local_names, [], carried, first=first, zero=zero,
                          vaddrs=vaddrs)
        plan.sizes, plan.rebound, plan.index = t.sizes, t.rebound, t.index
        plan.indexing, plan.operand_ids = t.indexing, t.operand_ids
        plan.made_before = start.allocations
        plan.checks_frame, plan.after_first = True, _after_first(start, t.bound)
        plan.layout = self.layout
        return plan


def _basis_names(local_names, start) -> tuple:
    """The frame's ints of a loop's model bound at an entry (`start`): those the body
    binds before reading them are not, at a function's first entry of the loop."""
    loc = start.locals
    return tuple(k for k in local_names if k in loc)


def _after_first(start, bound):
    """The state at an entry (`start`) as the later iterations' checks read that after
    iteration 0 (`Plan._unchanged`: the frame's objects but its ints): with the ints
    `bound`, which the body binds before reading them (their values the model's)."""
    if not bound:
        return start
    return start.entering(SimpleNamespace(locals=dict.fromkeys(bound, 0)))


class _EntryRead:
    """A read by iteration 0 of a tile a carried local (`local`) holds at the entry, in
    the record's numbers' `column` (its allocation id), which the model's row takes for
    the tile one step back: a later entry's iteration 0 reads the tile that local holds
    at its entry, where it is a view alike (`_view`: then its other numbers are the
    template's)."""
    __slots__ = ("column", "local", "view")

    def __init__(self, column: int, local: str, view: tuple):
        self.column, self.local, self.view = column, local, view

    def alloc(self, start) -> int | None:
        """The allocation iteration 0 reads at the entry `start`, or None where the tile
        its local holds is no view like the template's."""
        x = start.tensors.get(self.local)
        if x is None or _view(x) != self.view:
            return None
        return tensor_core(x).storage.alloc


def _view(x) -> tuple:
    """What an access of tensor object `x` takes of it but its allocation: its type, view
    and storage's memory and shape."""
    t = tensor_core(x)
    st = t.storage
    return (type(x), t.shape, t.strides, t.offset, str(t.dtype), t.dyn is None,
            st.memory, st.partitions, st.row_bytes)


def _entry_reads(run, plan, start) -> list | None:
    """The `_EntryRead`s of the entry of `plan` (its iteration 0 ran for real from
    `start`): where its record's numbers differ from its model's row, which takes its
    reads of the tiles its carried locals held at the entry for those of the tiles one
    step back (`expand_plan._with_carried`); None where they differ otherwise."""
    _, nums, _ = snapshot(run, *plan.template)
    back = _carried_from_entry(start, plan.after_first)
    held = {tensor_core(x).storage.alloc: name for name, x in start.tensors.items()}
    made = plan.template[3] - plan.template[2]
    reads = [_EntryRead(c, held[a], _view(start.tensors[held[a]]))
             for c, a in zip(plan.operand_ids.tolist(), nums[plan.operand_ids].tolist())
             if a in back and plan.drift[c] == made]
    model = plan.rows[0][:len(nums)].copy()
    for read in reads:
        model[read.column] = nums[read.column]
    return reads if np.array_equal(model, nums) else None


def _template(run, plan, start, bound) -> _Template | None:
    """The template of the entry of `plan` (its iteration 0 ran for real from `start`),
    or None where it makes an allocation placed explicitly, where a tensor the body
    rebinds each iteration (`Plan.carried`) is over none of its allocations or
    memories, where one of its other allocations may outlive it (`_temporaries_die`),
    or where its reads of the tiles carried into the loop are not as its model's row
    states them but for their allocations (`_entry_reads`)."""
    _, _, a0, a1, _, _ = plan.template
    if any(k[0] == "alloc" and k[-1] for k in plan.key[0]):
        return None  # (direct allocations: the legacy front end places them by iteration 0)
    storages = {tensor_core(x).storage.alloc: tensor_core(x).storage
                for _, x in plan.carried}
    if any(not a0 <= a < a1 or st.memory is None for a, st in storages.items()):
        return None
    if len(storages) < a1 - a0 and not _temporaries_die(plan, a0, a1):
        return None
    own = {id(st): copied_storage(st) for st in storages.values()}
    placing = []
    if a1 > a0:  # (the allocations' fields as columns: a loop's copies make none)
        fields = allocation_fields(run.program.allocations, range(a0, a1))
        cores = run.cores
        for a, core, space, size in zip(range(a0, a1), fields[_CORE], fields[_SPACE],
                                        fields[_ROW_BYTES]):
            st = storages.get(a)
            if st is not None:
                placing.append((own[id(st)], st.memory, st.memory.aligned(st.row_bytes)))
            else:
                memory = getattr(cores[core], space)
                placing.append((None, memory, memory.aligned(size)))
    entry_reads = _entry_reads(run, plan, start) if plan.carried_in else []
    if entry_reads is None:
        return None
    carried = [(name, over_storage(x, own[id(tensor_core(x).storage)]))
               for name, x in plan.carried]
    return _Template(run, plan, placing, carried, bound, entry_reads)


def _temporaries_die(plan, a0: int, a1: int) -> bool:
    """Whether the allocations a0..a1 of iteration 0 that no carried tensor is over died
    with it, as far as its frame tells: no other tensor of the frame after it is over
    one, and no other object the frame rebinds each iteration (a pending legacy result)
    may hold one."""
    if plan.rebound:
        return False
    carried = {name for name, _ in plan.carried}
    return not any(name not in carried and a0 <= tensor_core(x).storage.alloc < a1
                   for name, x in plan.after_first.tensors.items())


def _positions(placing: list) -> list | None:
    """Where the body would place the allocations of `placing` now, in turn: where each
    memory would place them one after another, none freed (`placed_in_turn`), where
    that is where the body places them, whatever it frees meanwhile: its placements wrap
    around no further than where they started (a tensor freed behind them is passed by
    again only past that); None where not, or where one would need the arena to grow."""
    sizes: dict = {}  # memory -> the sizes placed there, in turn
    for _, memory, size in placing:
        sizes.setdefault(memory, []).append(size)
    where = {}
    for memory, placed in sizes.items():
        at = memory.placed_in_turn(placed)
        if at is None:
            return None
        cursor, width = memory.placement()
        base = memory.virtual_base
        travel = 0  # (the bytes its cursor moves on, wrapping from width to base)
        for start, size in zip(at, placed):
            travel += (start - cursor if start >= cursor else width - cursor + start - base) \
                + size
            cursor = start + size
        if travel > width - base:
            return None
        where[memory] = iter(at)
    return [next(where[memory]) for _, memory, _ in placing]


def _place(placing: list, at: list) -> list:
    """Place the storages of `placing` (those of the carried tensors) at `at`, and move
    each memory's cursor past its last allocation of `placing` (the temporaries the
    body would have freed since); returns the storages placed (None for a
    temporary)."""
    ends = {}
    placed = []
    for (st, memory, size), start in zip(placing, at):
        ends[memory] = start + size
        if st is None:
            placed.append(None)
            continue
        own = copied_storage(st)
        # (placed at `start`, which is free: the first fit from there)
        memory.restore_placement((start, memory.placement()[1]))
        memory.place_virtual(own, st.base_dtype, size)
        placed.append(own)
    for memory, end in ends.items():
        memory.restore_placement((end, memory.placement()[1]))
    return placed


def _entry_key(t, start) -> tuple:
    """The structure key (`expand_plan._iteration`) an iteration 0 starting at `start`
    would have, with the record's of the template `t`."""
    others = tuple(sorted((k, v) for k, v in start.locals.items()
                          if type(v) is not int and k not in t.rebound))
    names = tuple(sorted({k for k, v in start.locals.items() if type(v) is int} | t.bound))
    return t.key[0], others, t.key[2], names


def _solver(bases: list, rows: list) -> tuple:
    """What `_combined` solves with, made once for the entries noted: their bases'
    differences from the last one's and its pseudo-inverse, the rows' differences."""
    base = np.array(bases, dtype=np.float64)
    d = (base[:-1] - base[-1]).T
    last = rows[-1]
    return (d, np.linalg.pinv(d), base[-1], last,
            np.array(rows[:-1], dtype=np.float64) - last)


def _combined(solver: tuple, b: list) -> np.ndarray | None:
    """The noted rows' affine combination whose bases' is `b`, or None where `b` is no
    such combination or it is not whole."""
    d, inverse, base, last, moved = solver
    want = np.array(b, dtype=np.float64) - base
    x = inverse @ want
    if np.abs(d @ x - want).max(initial=0) > 1e-6:
        return None
    got = last + x @ moved
    out = np.rint(got)
    if np.abs(got - out).max(initial=0) > 1e-3:
        return None
    return out.astype(np.int64)


class _Classes:
    """Each number of the noted entries' rows classed by one term of their bases (as
    machine/expand_tail.py classes a tail's numbers): the same in every entry, or moved
    by a whole multiple of one term's move. An entry whose basis is no affine
    combination of the noted ones' (fewer noted than its state has independent moves:
    causal flash attention's record counts, q0 and trip count) is predicted so where
    every number's classes agree on it and it moves no term the noted entries never
    moved (any number may follow that one)."""
    __slots__ = ("bases", "rows", "base", "still", "row", "term", "times", "others",
                 "whole")

    def __init__(self, bases: list, rows: list):
        self.bases = np.array(bases, dtype=np.int64)
        self.rows = rows
        self.base = self.bases[-1]
        self.still = ~(self.bases[1:] != self.bases[0]).any(axis=0)
        self.term = None  # (see _classify: made for the first entry that moves no
        # term the noted entries never moved)

    def _classify(self) -> None:
        """Each number's first class (`term`: the same where none moved, else a term's,
        by `times` its move; -1 where it follows none: `whole` tells there is none) and
        the others it fits."""
        row = np.array(self.rows, dtype=np.int64)
        self.row = row[-1]
        moves, moved = self.bases[:-1] - self.base, row[:-1] - self.row
        term = np.where(moved.any(axis=0), -1, 0)
        times = np.zeros(row.shape[1], dtype=np.int64)
        others = []  # (numbers, term, multiple) of the classes after the first
        for j in np.flatnonzero(~self.still):
            move = moves[:, j]
            pivot = np.abs(move).argmax()
            multiple = moved[pivot] // move[pivot]
            fits = (moved == multiple * move[:, None]).all(axis=0) & (multiple != 0)
            first = fits & (term < 0)
            term[first], times[first] = j, multiple[first]
            again = np.flatnonzero(fits & ~first)
            if len(again):
                others.append((again, j, multiple[again]))
        self.term, self.times, self.others = term, times, others
        self.whole = not (term < 0).any()

    def predicted(self, b: list) -> np.ndarray | None:
        """The row of an entry whose basis is `b`, or None where it moves a term the
        noted entries never moved, a number of the noted rows follows no class, or its
        classes disagree."""
        now = np.array(b, dtype=np.int64) - self.base
        if now[self.still].any():
            return None
        if self.term is None:
            self._classify()
        if not self.whole:
            return None
        shift = self.times * now[self.term]
        for numbers, j, multiple in self.others:
            if (multiple * now[j] != shift[numbers]).any():
                return None
        return self.row + shift
