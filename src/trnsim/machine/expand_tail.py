"""The last iteration of a loop entered again whose last iteration differs alone (a
tail; causal flash attention's diagonal chunk, narrower and masked), predicted from
the last iterations of its earlier entries, so that it checks the entry's model by
itself: the iteration before it is appended too (machine/expand.py).

A tail is stated by its structure (its record's, the frame's int and list names) and
its numbers (its record's, then the HBM cursor at its start, the frame's ints and its
lists' lengths after it), with its basis: the record's counts (instructions,
allocations, fences) at its start and after the entry's iteration 0, the HBM cursor at
its start and its index. Two earlier tails of the same structure at two indices give
each number's class: the same in both, or moved by the same amount as one of the
basis's counts, or (a frame int) as the model has it after the tail, or moved by a
multiple of the index's move; the tail of this entry is predicted from the later of
them by its own basis. Its iteration runs for real from the model's state, and a
prediction it misses (another structure, a number off its class) sends the entry back
to the check by the iteration before it, as a last iteration that misses the model
does. The iteration before the tail is appended only where an earlier entry ran it
for real with the same moving accesses (`places`)."""
from __future__ import annotations

import numpy as np

from .expand_parts import Mark, snapshot

# entries whose tail missed its prediction after which the loop's tails are not
# predicted (nor noted) any more: each miss runs the last iterations twice
GIVE_UP = 2
# structures of tails a loop notes at most: a loop whose tails keep changing (each
# noted costs a look at its record) stops there
_STRUCTURES = 8
_RAN = 64  # places of iterations run for real a loop keeps (see places)


class Tails:
    """A loop's tails (`ExpansionStats.tails`): the two latest of each structure at two
    indices, and how many checked an entry's model by their prediction, or missed it."""
    __slots__ = ("seen", "checked", "misses", "ran")

    def __init__(self):
        self.seen: dict = {}  # structure -> [(numbers, basis, modelled)], the latest last
        self.checked = 0
        self.misses = 0
        self.ran: set = set()  # (see places)

    def predicts(self, plan, last: int) -> bool:
        """Whether this entry's last iteration is to check its model by a prediction:
        every structure seen was seen twice (the loop's tails cycle through them), few
        predictions missed, and the iteration before the last, which is then appended,
        makes its moving accesses where an earlier entry's ran for real (`places`)."""
        return self.misses < GIVE_UP and bool(self.seen) \
            and all(len(x) == 2 for x in self.seen.values()) \
            and places(plan, last - 1) in self.ran

    def note_ran(self, plan, index: int) -> None:
        """Note the places of iteration `index`, which ran for real as the model has it."""
        if len(self.ran) >= _RAN:
            self.ran.clear()
        self.ran.add(places(plan, index))

    def note_state(self, run, plan, mark: Mark, end: Mark, entry: Mark, index: int) -> None:
        """Note the tail between `mark` and `end` (see `state`)."""
        got = state(run, plan, mark, end, entry, index)
        if got is not None:
            self.note(self.seen.get(got[0]), *got)

    def note(self, seen, key, numbers: np.ndarray, basis: np.ndarray,
             modelled: np.ndarray) -> None:
        """Note a tail of structure `key`; `seen`: those of it noted so far
        (`self.seen.get(key)`, which the caller looked up: a structure's key is hashed
        and compared item by item, ~20 us for flash attention's)."""
        if seen is None:
            if len(self.seen) >= _STRUCTURES:
                self.misses = GIVE_UP
                return
            seen = self.seen[key] = []
        tail = (numbers, basis, modelled)
        if seen and seen[-1][1][-1] == basis[-1]:
            seen[-1] = tail  # (two at one index do not show its step)
        else:
            seen.append(tail)
            del seen[:-2]

    @staticmethod
    def predicted(seen, key, basis: np.ndarray, modelled: np.ndarray):
        """The numbers of a tail of structure `key` with this basis (and the frame's ints
        the model has after it: `modelled`), or None where two tails of it were not seen
        (`seen`: those noted) or a number of theirs follows none of the classes."""
        if seen is None or len(seen) < 2:
            return None
        (n0, b0, m0), (n1, b1, m1) = seen
        moved, moves, now = n1 - n0, b1 - b0, basis - b1
        # each class's move between the two seen tails, and from the later to this one;
        # then, for the frame's ints, the model's values after the tail (the ints of the
        # loop around: its index); the index's multiples last (a class that fits stands
        # for the number's)
        classes = np.concatenate(([0], moves[:-1]))
        ahead = np.concatenate(([0], now[:-1]))
        fits = moved[:, None] == classes[None, :]
        found = fits.any(axis=1)
        out = n1 + ahead[fits.argmax(axis=1)]
        at = len(n1) - len(key[2]) - len(key[1])
        ints = slice(at, at + len(key[1]))
        as_model = ~found[ints] & (n0[ints] == m0) & (n1[ints] == m1)
        out[ints] = np.where(as_model, modelled, out[ints])
        found[ints] |= as_model
        rest = np.flatnonzero(~found)
        if len(rest):
            step = moves[-1]
            if step == 0 or (moved[rest] % step).any():
                return None
            out[rest] = n1[rest] + moved[rest] // step * now[-1]
        return out


def places(plan, index: int) -> tuple:
    """The index and the numbers (offset, partitions, byte range, allocation) of the
    operands of iteration `index` that move from one iteration to the next, as the
    model has them. An appended iteration's accesses are not checked as a real one's
    are: those of the appended ones lie between those of iteration 0 and of the last
    one appended (affine), which must both have run for real, or as here, in an earlier
    entry, made the same accesses of the same tensors (an access out of bounds there
    would have failed)."""
    ops = plan.operands[1]
    cols = ops[plan.drift[ops[:, :5]].any(axis=1)].ravel()
    return index, tuple(cols.tolist()), tuple(plan.row_at(index, cols).tolist())


def state(run, plan, mark: Mark, end: Mark, entry: Mark, index: int):
    """(structure, numbers, basis, the frame's ints the model has after it) of the
    iteration `index` between `mark` (its start: the record's counts, the HBM cursor)
    and `end` (a full mark after it); `entry`: the state after the entry's iteration 0.
    None where a frame int is no int after it."""
    ints = [end.locals.get(k) for k in plan.local_names]
    if any(type(v) is not int for v in ints):
        return None
    names = plan.key[2]
    lengths = [end.lists[k][1] if k in end.lists else -1 for k in names]
    key, nums, _ = snapshot(run, mark.instructions, end.instructions, mark.allocations,
                            end.allocations, mark.fences, end.fences,
                            [mark.hbm, *ints, *lengths])
    basis = np.array((mark.instructions, mark.allocations, mark.fences, entry.instructions,
                      entry.allocations, entry.fences, mark.hbm, index), dtype=np.int64)
    first = plan.record_numbers + 1
    modelled = np.array(plan._numbers_at(index + 1, first, first + len(ints)),
                        dtype=np.int64)
    return (key, tuple(plan.local_names), names), nums, basis, modelled


def matches(run, plan, tails: Tails, mark: Mark, entry: Mark, last: int, frame) -> bool:
    """Whether the last iteration, run for real after `mark` from the state the model
    gives it (`Plan.prepare_last`), found the lists as the model has them, recorded the
    tail predicted for it and left the frame as the tail did (and, where the plan
    `checks_frame`, its other state as it found it after iteration 0)."""
    names = plan.key[2]
    expected = plan.row_at(last)
    lengths = [mark.lists[k][1] if k in mark.lists else -1 for k in names]
    if lengths != expected[len(expected) - len(names):].tolist():
        return False
    end = Mark(run, frame)
    if end.pending or end.shared != mark.shared:
        return False
    if plan.checks_frame and not plan._unchanged(plan.after_first, end):
        return False
    got = state(run, plan, mark, end, entry, last)
    if got is None:
        return False
    seen = tails.seen.get(got[0])
    predicted = Tails.predicted(seen, got[0], *got[2:])
    if predicted is None or not np.array_equal(predicted, got[1]):
        return False
    tails.checked += 1
    tails.note(seen, *got)
    return True
