"""A loop's plan (machine/expand.py): the affine (or periodic) model of its iterations
from the sampled ones, checked against its last iteration, from which the other
iterations are appended to the record (machine/expand_copy.py makes the copies)."""
from __future__ import annotations

import functools
import operator

import numpy as np

from .expand_copy import Copier
from .expand_parts import Mark, operand_columns, snapshot
from .frame_state import (carried_tensors, growing_lists, rebound_locals, retarget,
                          retarget_block, set_locals, tensor_core)
from .gc_pause import gc_paused


# instructions copied at once (Plan.expand: whole iterations, at least one): a block's
# new objects -- its ints, operands, instructions -- stay in the CPU's caches while the
# copies are put together (tiled matmul's 26 iterations of 3,120 instructions in one
# block: 2.8 us per copy; an iteration at a time: 2.2)
_COPIES = 4096


def _iteration(run, m0: "Mark", m1: "Mark", int_names: list, list_names: list,
               rebound: set):
    """(structure, numbers, how many numbers each instruction has) of the iteration
    between two marks, with the HBM cursor, the frame's ints and its lists' lengths at
    its start (the structure: the record's, the state of the frame's other locals but
    those it rebinds to new objects, the lists' names, the ints' names); (None, None,
    None) when its frame changed otherwise."""
    loc = m0.locals
    if loc.keys() != m1.locals.keys() or any(type(loc[k]) is not int for k in int_names):
        return None, None, None
    ints = [m0.hbm] + [loc[k] for k in int_names] + [m0.lists[k][1] for k in list_names]
    key, nums, sizes = snapshot(run, m0.instructions, m1.instructions, m0.allocations,
                                m1.allocations, m0.fences, m1.fences, ints)
    others = tuple(sorted((k, v) for k, v in loc.items()
                          if type(v) is not int and k not in rebound))
    return (key, others, tuple(list_names), tuple(int_names)), nums, sizes


def _with_first(run, zero: "Mark", m1: "Mark", structure: tuple, rows: list):
    """The rows of samples 1, 2, ... (`rows`, arrays of as many numbers) after a row for
    iteration 0, as one array: its record's numbers and the HBM cursor at its start
    from the record between `zero` (the record's state before it) and `m1`, the frame's
    one step of the samples before theirs (before iteration 0 it may hold what the code
    before the loop left); None when its record has another structure or it leaves a
    deferred legacy result pending. (Filled in place: an outer loop's rows are wide.)"""
    key, nums, _ = snapshot(run, zero.instructions, m1.instructions, zero.allocations,
                            m1.allocations, zero.fences, m1.fences, [zero.hbm])
    if key != structure or zero.pending or zero.shared != m1.shared:
        return None
    out = np.empty((len(rows) + 1, len(rows[0])), dtype=np.int64)
    for at, row in enumerate(rows, 1):
        out[at] = row
    k = len(nums)  # (the record's numbers and the HBM cursor; the frame's, one step back)
    out[0, :k] = nums
    out[0, k:] = 2 * out[1, k:] - out[2, k:]
    return out


def _carried_from_entry(entry: "Mark", after_first: "Mark") -> dict:
    """{a tile made before the loop: the model's in its place} for the tiles a body that
    carries tiles to the next iteration read in iteration 0, which its carried locals
    held at the loop's entry (the online-softmax state of flash attention), where each
    later iteration reads those the iteration before it made: the tile one step back
    from the one iteration 0 made (`_with_carried`)."""
    made = after_first.allocations - entry.allocations
    back = {}
    after = after_first.tensors
    for name, was in entry.tensors.items():
        now = after.get(name)
        if now is was or now is None:
            continue
        was, now = tensor_core(was), tensor_core(now)
        if 0 <= was.storage.alloc < entry.allocations \
                and entry.allocations <= now.storage.alloc < after_first.allocations:
            back[was.storage.alloc] = now.storage.alloc - made
    return back


def _with_carried(row: np.ndarray, back: dict, ops: np.ndarray, step: np.ndarray,
                  made: int) -> bool:
    """Iteration 0's numbers `row` as the model of the later ones states them: its
    reads of the tiles `back` maps (`_carried_from_entry`; operands `ops`, whose ids
    move by an iteration's `made` allocations: `step`, by column) those of the tiles one
    step back, which the iterations the model is checked by confirm with the rest.
    Returns whether it read any."""
    read = False
    for c, aid in zip(ops.tolist(), row[ops].tolist()):
        if aid in back and step[c] == made:
            row[c] = back[aid]
            read = True
    return read


_OPERANDS = operator.itemgetter(6)  # an instruction's structure's operands
_NO_COLUMNS = np.zeros(0, dtype=np.int64)
_NO_COLUMNS.setflags(write=False)
_NARROW = 256  # (see Plan._narrow)


def same_model(key, last) -> bool:
    """Whether an iteration's structure key (`_iteration`) repeats `last`, that of the
    loop's last entry: the same record structure and lists, the frame's ints and other
    locals in the same state but for the identities of objects (what the loop around
    it rebinds between entries: the result of its previous iteration). The frame may
    hold locals `last` lacks: those the code after the loop bound since (`res_sb =
    nl.copy(res_psum)` after a loop over K tiles), which its body did not read then;
    their ints keep a step of 0 in its model (`_widened`), and the marks watch them as
    any other local."""
    if key == last:
        return True
    if key[0] != last[0] or key[2] != last[2] or not set(last[3]).issubset(key[3]):
        return False
    if len(key[1]) == len(last[1]):
        return _alike(key[1], last[1])
    now = dict(key[1])
    return all(name in now and _alike(now[name], was) for name, was in last[1])


def _widened(drift: np.ndarray, last: tuple, key: tuple) -> np.ndarray:
    """`drift`, the step of the model whose structure is `last`, for an iteration of
    structure `key` (`same_model`): a step of 0 for the frame's ints `last` lacks."""
    was, now = last[3], key[3]
    if was == now:
        return drift
    at = len(drift) - len(last[2]) - len(was)  # (the ints, between the HBM cursor
    steps = dict(zip(was, drift[at:at + len(was)].tolist()))  # and the lists' lengths)
    return np.concatenate((drift[:at], np.array([steps.get(k, 0) for k in now], np.int64),
                           drift[at + len(was):]))


_IDENTIFIED = ("id", "object", "array", "generator")  # frame_state's states: tag, id, ...


def _alike(a, b) -> bool:
    """Whether two frame_state states are equal but for the objects' identities."""
    if a == b:
        return True
    if type(a) is not tuple or type(b) is not tuple or len(a) != len(b):
        return False
    if len(a) >= 2 and a[0] in _IDENTIFIED and a[0] == b[0] and type(a[1]) is int:
        a, b = a[2:], b[2:]
    return all(map(_alike, a, b))


class Plan:
    """The model of a loop's iterations from its sampled ones: every number of an
    iteration (its record's, the HBM allocation cursor, the frame's ints and its lists'
    lengths at its start) is that of the sampled iteration `period` iterations back plus
    `drift`. A list that grows gets, for each expanded iteration, copies of the tensors
    the iteration's template appended, over that iteration's allocations."""

    def __init__(self, rows, period, drift, key, template, local_names, growing, carried):
        self.rows = rows  # (samples, numbers) of the sampled iterations 1..samples
        self.last_sampled = len(rows)  # the iteration of the last row (0: see derive)
        # a model of iteration 0 alone (derive) checks the frame's state the last
        # iteration leaves (`matches`): no sampled iteration showed how a body changes it
        self.checks_frame = False
        self.index = None  # (then the loop index's name, whose value before 0 is stale,
        self.after_first = None  # and the state after iteration 0, which the expanded
        # iterations left as it was)
        self.rebound = set()  # the locals rebound at each mark (see rebound_locals)
        # (a model of iteration 0 alone: whether it read tiles carried into the loop,
        # which its row states as those one step back: `_carried_from_entry`)
        self.carried_in = False
        self.period = period
        self.drift = drift
        self.key = key
        self.template = template  # (start, stop, a_start, a_stop, f_start, f_stop)
        self.per_iteration = template[1] - template[0]
        self.local_names = local_names
        self.growing = growing  # [(list, [tensor the template iteration appended])]
        self.list_count = len(key[2])
        # numbers of the record (then the HBM cursor, the frame's ints, its lists' lengths)
        self.record_numbers = rows.shape[1] - 1 - len(local_names) - self.list_count
        self.carried = carried  # [(local, tensor of the template iteration)]
        # (the template's allocation ids, those of the last expanded iteration's copies)
        self.last_ids = None
        self.indexing = _NO_COLUMNS  # see indexes_made_before
        self.operand_ids = _NO_COLUMNS  # operands' allocation columns
        self.made_before = 0  # allocations made before the sampled iterations
        self.layout = None  # the Copier's Layout (see expand_copy.Layout)
        self.sizes = []  # how many numbers each instruction of the template has
        self._lists = None  # (see _narrow)

    @classmethod
    def derive(cls, run, marks, core, periods, known=None, start=None, first=None):
        """(plan or None, whether more samples could give a plan) from the iterations
        between `marks` (the states before iterations 1, 2, ..., samples + 1). `known`:
        (key, drift, layout) of this loop's last expansion (period 1), which the samples
        must repeat; the plan then starts from its layout (one sample, which shows no
        step of its own: the last iteration checks the frame's state, as for `start`).
        `start`: (the state before iteration 0, the loop index's name) when iteration
        0 alone (`marks`: the state before iteration 1) is to repeat `known`: the model
        is then `known`'s from iteration 0 on, and the last iteration checks the
        frame's state as the samples would have (`matches`). `first`: (the record's
        state before iteration 0, the loop index's name) when iteration 0's record is
        to make up for samples too few for a model (machine/expand.py's FEW): the
        record's numbers are modelled from iteration 0 on, the frame's from the samples
        (before iteration 0 it may hold what the code before the loop left), which the
        last iteration checks (`matches`)."""
        if first is not None:
            zero, index = first
            plan, more = cls._derived(run, marks, core, periods, None, zero)
            if plan is not None and not plan._unchanged(marks[0], marks[-1]):
                return None, True  # (a sample changed an object of the frame)
            if plan is not None:
                plan.last_sampled = len(marks) - 1
                plan.index, plan.checks_frame, plan.after_first = index, True, marks[-1]
            return plan, more
        if start is None:
            plan, more = cls._derived(run, marks, core, periods, known)
            if plan is not None and known is not None and len(marks) == 2:
                # one sample repeats `known`: no step of its own, as with `start`
                plan.checks_frame, plan.after_first = True, marks[1]
                if not plan._unchanged(marks[0], marks[1]):
                    return None, True
            return plan, more
        state, index = start
        if state is None or known is None or len(marks) != 1:
            return None, True
        marks = [state.entering(marks[0]), *marks]
        plan, _ = cls._derived(run, marks, core, periods, known)
        if plan is not None:
            plan._ints_from_first(marks[1])
            back = _carried_from_entry(state, marks[1])
            if back:
                ops = plan.operand_ids
                plan.carried_in = _with_carried(plan.rows[0], back, ops, plan.drift,
                                                marks[1].allocations - state.allocations)
            plan.last_sampled, plan.index, plan.checks_frame = 0, index, True
            plan.after_first = marks[1]
            # an object iteration 0 changed: so may every iteration (and the last one's
            # change would not be undone if it then missed the model)
            if not plan._unchanged(marks[0], marks[1]):
                plan = None
        return plan, plan is None

    def _ints_from_first(self, after_first: "Mark") -> None:
        """A model of iteration 0 alone: the frame's ints at its start become those after
        it less one step. Before iteration 0 they hold what the code before the loop left
        (an earlier entry's last values of the locals the body sets before reading them:
        `row = (kb * 8 + kk) * 128` in an inner loop), which need not be one step behind;
        an int the body reads first is then predicted alike, and an iteration that does
        not step it by the model misses at the last iteration's check (`_frame_left`)."""
        now = after_first.locals
        after = [now.get(k) for k in self.local_names]
        if all(type(v) is int for v in after):
            cols = slice(self.record_numbers + 1, self.record_numbers + 1 + len(after))
            self.rows[0, cols] = np.array(after, dtype=np.int64) - self.drift[cols]

    @classmethod
    def _derived(cls, run, marks, core, periods, known, zero=None):
        older = marks[0].allocations  # tensors made before the sampled iterations
        changed = run.untracked_changes[marks[0].untracked:marks[-1].untracked]
        if any(m.pending for m in marks) or len({m.shared for m in marks}) > 1 \
                or any(a < older for a in changed):
            return None, False
        p = run.program
        if run.lnc > 1:  # (a run of one logical core records every instruction on it)
            for ins in p.instructions[marks[0].instructions:marks[-1].instructions]:
                if ins.core != core:
                    return None, False
        names = sorted(k for k, v in marks[0].locals.items() if type(v) is int)
        rebound = rebound_locals(marks)
        first = marks[0].lists  # lists rebound by each iteration are like its tensors
        list_names = sorted(k for k in first if all(
            k in m.lists and m.lists[k][0] is first[k][0] for m in marks))
        keys, rows = [], []
        for m0, m1 in zip(marks, marks[1:]):
            if m1.instructions == m0.instructions:
                return None, False  # an empty body: nothing to gain
            k, n, sizes = _iteration(run, m0, m1, names, list_names, rebound)
            if k is None:
                return None, False
            keys.append(k)
            rows.append(n)
        if any(k != keys[0] for k in keys[1:]) or len({len(r) for r in rows}) > 1:
            return None, False
        if zero is None:
            a = np.array(rows, dtype=np.int64)
        else:
            a = _with_first(run, zero, marks[0], keys[0][0], rows)
            if a is None:
                return None, True
            back = _carried_from_entry(zero, marks[0])
            if back and len(a) > 2:  # (the samples' step)
                n_ops = np.fromiter(map(len, map(_OPERANDS, keys[0][0][:len(sizes)])),
                                    np.int64, len(sizes))
                ops = operand_columns(sizes, n_ops)[:, 5]
                _with_carried(a[0], back, ops, a[2] - a[1],
                              marks[0].allocations - zero.allocations)
        if known is not None:  # the model this loop had when it last expanded
            key, drift, layout = known
            if not same_model(keys[0], key):
                return None, True
            drift = _widened(drift, key, keys[0])
            if a.shape[1] != len(drift) \
                    or (len(a) > 1 and not (a[1:] - a[:-1] == drift).all()):
                return None, True
            return cls._made(run, marks, a, 1, drift, keys[0], sizes, names, list_names,
                             rebound, layout), False
        for period in periods:
            if len(a) - period < 2:
                continue
            d = a[period:] - a[:-period]
            if (d == d[0]).all():  # (its row alone: the loop's model keeps the drift)
                return cls._made(run, marks, a, period, d[0].copy(), keys[0], sizes, names,
                                 list_names, rebound), False
        return None, True

    @classmethod
    def _made(cls, run, marks, rows, period, drift, key, sizes, names, list_names,
              rebound, layout=None):
        """The plan of a loop whose sampled iterations (`rows`) are affine, or None
        (`sizes`: how many numbers each instruction of the last one has; `rebound`: the
        locals rebound at every mark); `layout`: that of the last expansion of a loop of
        the same structure."""
        growing = growing_lists(marks, list_names)
        if growing is None:
            return None
        m0, m1 = marks[-2], marks[-1]
        plan = cls(rows, period, drift, key,
                   (m0.instructions, m1.instructions, m0.allocations, m1.allocations,
                    m0.fences, m1.fences), names, growing, carried_tensors(marks))
        # an operand's tensor is the same one every time, one an iteration a fixed
        # number back made (its id advances by what each makes), or else one of the
        # tensors made before the samples that the loop indexes (tiles[k]):
        # `indexes_made_before` checks those ids name such tensors
        made = marks[1].allocations - marks[0].allocations  # each iteration's
        plan.sizes = sizes
        # (an instruction's operands: those its structure lists, `instruction_parts`)
        ops = layout.operand_ids if layout is not None else plan.operands[1][:, 5]
        step = drift[ops]  # (np.isin may build a table spanning the values)
        plan.indexing = ops[(step != 0) & (step != period * made)]
        plan.operand_ids = ops
        plan.made_before = marks[0].allocations
        plan.layout = layout
        plan.rebound = rebound
        return plan

    @functools.cached_property
    def operands(self) -> tuple:
        """(how many operands each template instruction has, where each operand's six
        numbers lie: `operand_columns`), from its structure (`instruction_parts`): its
        layout's, made for a plan of the same structure (a loop entered again: each
        entry's template is another iteration 0)."""
        layout = self.layout
        if layout is not None and layout.sizes == self.sizes:
            return layout.operands
        n_ops = np.fromiter(map(len, map(_OPERANDS, self.key[0][:self.per_iteration])),
                            np.int64, self.per_iteration)
        return n_ops, operand_columns(self.sizes, n_ops)

    def indexes_made_before(self, first: int, last: int) -> bool:
        """Whether, in every iteration first..last, the operands that index tensors made
        before the samples name one of them. (Ids that merely look affine over the
        samples -- a list of 8 tiles made each iteration, tile i % 8 used -- name other
        tensors, or none, later; an indexing the samples cannot tell from i % 8 is left
        to the last iteration's check.) Each phase of the period is affine, so the
        first and last period of iterations bound it."""
        if not len(self.indexing):
            return True
        ends = self._narrow_ends(first, last, self.indexing)
        if ends is not None:
            return all(0 <= x < self.made_before for x in ends)
        ids = self._ends(first, last, self.indexing)
        return bool(((ids >= 0) & (ids < self.made_before)).all())

    def _ids_keep_signs(self, first: int, last: int) -> bool:
        """Whether each operand has an allocation in iterations first and last exactly
        where it has one in the template (its id keeps its sign)."""
        ids = self.operand_ids
        ends = self._narrow_ends(first, last, ids)
        if ends is None:
            return bool(((self._ends(first, last, ids) >= 0) == (self.rows[-1, ids] >= 0)).all())
        row = self._narrow()[0]
        signs = [row[c] >= 0 for c in ids.tolist()] * 2
        return all((x >= 0) == s for x, s in zip(ends, signs))

    def _narrow(self) -> tuple:
        """(the last sampled row, the drift) as lists of Python ints for a period-1 plan
        of at most _NARROW numbers an iteration (NumPy's calls cost more than Python's
        arithmetic on so few: a loop of one DMA or matmul entered for every tile of the
        loop around it), else (). Read once the plan is derived."""
        if self._lists is None:
            self._lists = (self.rows[-1].tolist(), self.drift.tolist()) \
                if self.period == 1 and self.rows.shape[1] <= _NARROW else ()
        return self._lists

    def _narrow_ends(self, first: int, last: int, cols) -> list | None:
        """The numbers `cols` of iterations first and last (a list: the first's, then the
        last's) of a narrow plan (`_narrow`), else None."""
        lists = self._narrow()
        if not lists:
            return None
        row, drift = lists
        at = cols.tolist()
        return [row[c] + drift[c] * (k - self.last_sampled) for k in (first, last) for c in at]

    def _numbers_at(self, iteration: int, lo: int, hi: int | None = None) -> list:
        """The numbers lo:hi of one iteration (`row_at`) as a list."""
        lists = self._narrow()
        if not lists:
            return self.row_at(iteration, slice(lo, hi)).tolist()
        row, drift = lists
        k = iteration - self.last_sampled
        return [a + d * k for a, d in zip(row[lo:hi], drift[lo:hi])]

    def _ends(self, first: int, last: int, cols) -> np.ndarray:
        """The numbers `cols` of the first and last period of iterations first..last,
        which bound those of all of them (each phase of the period is affine)."""
        p = self.period
        if p == 1:
            return self.row(np.array((first, last), dtype=np.int64), cols)
        ends = set(range(first, min(first + p, last + 1)))
        ends.update(range(max(first, last + 1 - p), last + 1))
        return self.row(np.array(sorted(ends), dtype=np.int64), cols)

    def row(self, iterations: np.ndarray, cols=slice(None)) -> np.ndarray:
        """The numbers (those `cols` selects) of each iteration in `iterations` (loop
        positions)."""
        samples, p = len(self.rows), self.period
        if p == 1:
            return self.rows[-1, cols] + self.drift[cols] * \
                (iterations - self.last_sampled)[:, None]
        s = samples - (samples - iterations) % p  # a sampled iteration in phase
        if type(cols) is slice:
            rows, drift = self.rows[:, cols], self.drift[cols]
        else:  # (take: fancy indexing of wide rows' columns is slow)
            rows, drift = self.rows.take(cols, axis=1), self.drift.take(cols)
        return rows.take(s - 1, axis=0) + drift * ((iterations - s) // p)[:, None]

    def row_at(self, iteration: int, cols=slice(None)) -> np.ndarray:
        """The numbers (those `cols` selects) of one iteration (`row`)."""
        if self.period == 1:
            return self.rows[-1, cols] + self.drift[cols] * (iteration - self.last_sampled)
        return self.row(np.array([iteration]), cols)[0]

    # -- expansion ---------------------------------------------------------------------
    def expand(self, run, first: int, stop: int) -> None:
        """Append iterations first .. stop - 1."""
        # (none appended, after an expansion rolled back: the frame holds the tensors the
        # last iteration run made, not those of the removed copies: see prepare_last)
        self.last_ids = None
        if stop <= first:
            return
        stats = run.expansion
        copier = self._copier(run)
        self.layout = copier.layout
        # the copies are noted as blocks for the snapshots of a loop around this one,
        # with the template's structure (an operand's says whether it has an allocation:
        # its id must keep its sign)
        keep = stats.watching > 1 and self._ids_keep_signs(first, stop - 1)
        with gc_paused():  # (only new, acyclic objects: a collection would find nothing)
            # a block of iterations at a time: the Python ints of a row that the record
            # does not keep are freed, and their memory reused, before the next block
            rows = max(1, _COPIES // max(1, self.per_iteration))
            for lo in range(first, stop, rows):
                values = self.row(np.arange(lo, min(lo + rows, stop), dtype=np.int64))
                made = copier.append(run.program, values, stats if keep else None)
                self._grow(copier.template_ids, made)

    def _copier(self, run) -> Copier:
        return Copier(run, self, self.layout)

    def _grow(self, template_ids: list, made: list) -> None:
        """Note the last iteration's allocations; extend the growing lists by each
        iteration's copies of what the template appended (`made`: the copies' ids)."""
        k = len(template_ids)
        if not k:
            return
        self.last_ids = (template_ids, made[-k:])
        if not self.growing:
            return
        if len({id(lst) for lst, _ in self.growing}) < len(self.growing):
            for at in range(0, len(made), k):  # (a list bound to two names: in turn)
                now = dict(zip(template_ids, made[at:at + k]))
                storages = {}
                for lst, appended in self.growing:
                    lst.extend(retarget(x, now, storages) for x in appended)
            return
        columns = {a: made[i::k] for i, a in enumerate(template_ids)}
        storages = {}
        for lst, appended in self.growing:
            copies = [retarget_block(x, columns, storages) for x in appended]
            grown = [None] * (len(copies) * len(made) // k)
            for j, items in enumerate(copies):  # (iteration by iteration)
                grown[j::len(copies)] = items
            lst.extend(grown)

    def _frame_left(self, end: "Mark", last: int) -> bool:
        """Whether the last iteration (until `end`, a full mark) left the frame's ints
        where the model puts them after it (but the loop index, which the model does not
        know) and its other locals in the state it found them in: that after iteration
        0 (the expanded iterations ran no Python; the lists grew by tiles, which their
        state leaves out)."""
        first = self.record_numbers + 1
        ints = self._numbers_at(last + 1, first, first + len(self.local_names))
        now = end.locals
        if any(type(now.get(k)) is not int or (now[k] != v and k != self.index)
               for k, v in zip(self.local_names, ints)):
            return False
        return self._unchanged(self.after_first, end)

    def _unchanged(self, m0: "Mark", m1: "Mark") -> bool:
        """Whether the frame's locals but its ints and those each iteration rebinds are
        in the same state at two full marks."""
        was, now = m0.locals, m1.locals
        return was.keys() == now.keys() and all(
            was[k] == now[k] for k, v in was.items()
            if type(v) is not int and k not in self.rebound)

    def prepare_last(self, run, frame, last: int) -> None:
        """The HBM cursor and the frame's ints as iteration `last` starts with them."""
        row = self._numbers_at(last, self.record_numbers)
        run.hbm._next = row[0]
        values = dict(zip(self.local_names, row[1:1 + len(self.local_names)]))
        if self.last_ids is not None and self.carried:
            # tensors the iteration before the last one made, over its allocations
            ids, storages = dict(zip(*self.last_ids)), {}
            values.update((name, retarget(x, ids, storages))
                          for name, x in self.carried)
        set_locals(frame, values)

    def matches(self, run, mark: "Mark", last: int, frame=None) -> bool:
        """Whether iteration `last`, run for real after `mark`, recorded the prediction
        (and, where the plan `checks_frame`, left the frame's ints as predicted and its
        other state as it found it)."""
        names = self.key[2]
        expected = self.row_at(last)
        lengths = [mark.lists[k][1] if k in mark.lists else -1 for k in names]
        if lengths != expected[len(expected) - len(names):].tolist():
            return False
        end = Mark(run, frame if self.checks_frame else None)
        if end.pending or end.shared != mark.shared:
            return False
        if self.checks_frame and not self._frame_left(end, last):
            return False
        key, nums, _ = snapshot(run, mark.instructions, end.instructions, mark.allocations,
                                end.allocations, mark.fences, end.fences)
        return key == self.key[0] and np.array_equal(nums, expected[:self.record_numbers])
