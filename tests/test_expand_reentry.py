"""A loop entered again after it expanded (machine/expand.py) reuses what it derived
from its last model (expand_copy.Layout) only while its samples repeat that model: an
entry whose structure or step changes is modelled afresh, and every record is that of
a full run."""
from __future__ import annotations

import types

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand_copy
from test_expand import (_both, _expanded_counts, _raised_both_ways, _run, _scale,
                         _stats)


def _blocks(blocks, body):
    """`blocks` entries (too few to expand) of a 16-iteration loop `body(x, out, b, j)`."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(blocks):
            for j in nl.affine_range(16):
                body(x, out, b, j)
        return out
    return kernel


def _layouts_made(monkeypatch):
    """A list that counts the Layouts made from now on."""
    made = []
    real = expand_copy.Layout.__init__

    def counted(self, *args):
        made.append(self)
        real(self, *args)
    monkeypatch.setattr(expand_copy.Layout, "__init__", counted)
    return made


def test_a_loop_entered_again_with_its_model_reuses_its_layout(monkeypatch):
    x = np.ones((128, 8 * 16 * 4), np.float32)
    made = _layouts_made(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(
        _blocks(4, lambda x, out, b, j: _scale(x, out, j, col=(b * 16 + j) * 8)), x))
    st = _stats(fast)
    # the full run makes none; the expanded one a layout for its first entry, which
    # entries 1 and 2 reuse, and one for entry 3, whose iteration 0 theirs predict
    # (machine/expand_first.py: a layout of its own, whose moving numbers include those
    # that move from one entry to the next)
    assert (st.loops, st.fallbacks, st.predicted, len(made)) == (4, 0, 1, 2)
    (key, drift, layout), = st.known.values()
    assert layout is made[0]
    (firsts,) = st.firsts.values()
    assert firsts.layout is made[1]


def test_a_structure_that_changes_between_entries_is_modelled_afresh(monkeypatch):
    def body(x, out, b, j):
        _scale(x, out, j, col=(b * 16 + j) * 8)
        if b == 1:  # entry 1 does one more instruction per iteration
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, j * 8:j * 8 + 8])
    x = np.ones((128, 8 * 16 * 4), np.float32)
    made = _layouts_made(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(_blocks(4, body), x))
    st = _stats(fast)
    # entries 0, 1 and 2 differ from the model before them; entry 3 repeats entry 2's
    assert (st.loops, st.fallbacks, len(made)) == (4, 0, 3)


def test_a_step_that_changes_between_entries_is_modelled_afresh(monkeypatch):
    steps = (1, 2, 2, 1)
    x = np.ones((128, 8 * 16 * 8), np.float32)
    made = _layouts_made(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(_blocks(4, lambda x, out, b, j: _scale(
        x, out, j, col=(b * 16 + j * steps[b]) * 8)), x))
    st = _stats(fast)
    # entries 1 and 3 miss the model of their iteration 0 (its step) and are sampled
    # afresh: 10 iterations appended; entry 2 repeats entry 1's model: 14
    assert (st.loops, st.fallbacks, st.remodelled) == (4, 0, 2)
    assert st.iterations == 10 + 10 + 14 + 10
    # a new step moves the same numbers (the same layout fits again)
    assert len(made) == 1


def test_an_entry_whose_last_iterations_differ_falls_back_and_forgets_its_model(
        monkeypatch):
    def body(x, out, b, j):
        _scale(x, out, j, col=(b * 16 + j) * 8)
        if b == 1 and j >= 14:  # (the last alone would be checked by the one before it)
            _scale(x, out, 0)
    x = np.ones((128, 8 * 16 * 4), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocks(4, body), x))
    st = _stats(fast)
    # entry 1 falls back; entry 2 is sampled afresh, entry 3 repeats its model
    assert (st.loops, st.fallbacks) == (3, 1)
    assert st.iterations == 10 + 10 + 14


def test_a_layout_fits_only_the_numbers_it_was_made_for(monkeypatch):
    x = np.ones((128, 8 * 16 * 2), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(
        _blocks(2, lambda x, out, b, j: _scale(x, out, j, col=(b * 16 + j) * 8)), x))
    (_, _, layout), = _stats(fast).known.values()
    rows = np.zeros((2, len(layout.moves)), np.int64)
    plan = types.SimpleNamespace(record_numbers=layout.record_numbers, rows=rows,
                                 drift=layout.drift)
    assert layout.fits(plan, layout.width)
    assert not layout.fits(plan, layout.width + 1)
    plan.drift = layout.drift.copy()  # another array of the same drift: by its moves
    assert layout.fits(plan, layout.width)
    plan.drift = layout.drift + ~layout.moves  # every number moves
    assert not layout.fits(plan, layout.width)
    plan.drift, plan.record_numbers = layout.drift, layout.record_numbers + 1
    assert not layout.fits(plan, layout.width)


def test_entries_of_other_lengths_reuse_the_layout_for_their_own_counts(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(4):
            for j in nl.affine_range((16, 20, 20, 12)[b]):
                _scale(x, out, j, col=(b * 20 + j) * 8)
        return out
    x = np.ones((128, 8 * 20 * 4), np.float32)
    made = _layouts_made(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # (the first entry runs iterations 0-4, the others 0, and each its last one)
    assert (st.loops, st.fallbacks, len(made)) == (4, 0, 1)
    assert st.iterations == 10 + 18 + 18 + 10


class _Note:
    """An object a blocked kernel makes once per block (as the legacy front end's
    deferred results are): another object at each entry of the inner loop."""

    def __init__(self, scale):
        self.scale = scale


def _noted(blocks, scale_of):
    """A blocked kernel whose inner loop's frame holds a `_Note(scale_of(b))` made by
    the block before it."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        note = None
        for b in nl.affine_range(blocks):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
            note = _Note(scale_of(b))
        return note and out
    return kernel


def test_an_object_rebound_between_entries_in_the_same_state_keeps_the_model(
        monkeypatch):
    x = np.ones((128, 8 * 16 * 4), np.float32)
    made = _layouts_made(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(_noted(4, lambda b: 1.0), x))
    st = _stats(fast)
    # entry 1 (the first with a note) is modelled afresh; entries 2 and 3 repeat its
    # model (and layout) though their notes are other objects
    assert (st.loops, st.fallbacks, len(made)) == (4, 0, 2)
    assert st.iterations == 10 + 10 + 14 + 14


def test_an_object_rebound_between_entries_in_another_state_is_modelled_afresh(
        monkeypatch):
    x = np.ones((128, 8 * 16 * 4), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_noted(4, lambda b: float(b)), x))
    st = _stats(fast)
    assert (st.loops, st.fallbacks) == (4, 0)
    assert st.iterations == 4 * 10


def test_an_entry_whose_first_iteration_differs_is_checked_on_one_sample(monkeypatch):
    """Iteration 0 stands for the samples of a loop entered again only when it repeats
    the model (a first-iteration special case does not): iteration 1 is sampled then
    (tests/test_expand_one_sample.py)."""
    def body(x, out, b, j):
        _scale(x, out, j, col=(b * 16 + j) * 8)
        if j == 0:
            _scale(x, out, j, col=(b * 16 + 1) * 8)
    x = np.ones((128, 8 * 16 * 2), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocks(2, body), x))
    st = _stats(fast)
    assert (st.loops, st.fallbacks) == (2, 0)
    assert st.iterations == 10 + 13  # the second entry: 0, 1 and 15 run


def _counted(steps):
    """A blocked kernel whose inner loop counts in an int by `steps[b]` a turn, the
    count read only after the loop (by the store after it)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(len(steps)):
            count = 0
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
                count += steps[b]
            _scale(x, out, None, col=count * 8)
        return out
    return kernel


def test_an_int_whose_step_changes_between_entries_is_modelled_afresh(monkeypatch):
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_counted((1, 2, 2)), x))
    st = _stats(fast)
    # entry 1's count steps by 2: its last iteration leaves the count off the model's,
    # and the entry is sampled afresh
    assert (st.loops, st.fallbacks, st.remodelled) == (3, 0, 1)
    assert st.iterations == 10 + 10 + 14


def test_an_int_the_body_sets_before_reading_keeps_the_model(monkeypatch):
    """An int the body sets before it reads it holds, before iteration 0, what the last
    entry left (here 16 columns behind, not one step): not a change of step. Each entry
    after the first is modelled from its iteration 0 alone, and the int after the loop
    is the full run's (the store after it reads it)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                col = (b * 32 + j) * 8
                _scale(x, out, j, col=col)
            _scale(x, out, None, col=col + 8)
        return out
    x = np.ones((128, 8 * 32 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.fallbacks, st.remodelled) == (3, 0, 0)
    assert st.iterations == 10 + 14 + 14


def test_an_entry_that_changes_an_object_each_iteration_is_not_expanded(monkeypatch):
    """An entry whose body changes an object of the frame each iteration, as no earlier
    entry's did (entry 1 here), is not modelled from its iteration 0 alone, which shows
    the change: it declines on its samples, and the count after the loop is 16."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        seen = {}
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
                if b == 1:
                    seen["n"] = seen.get("n", 0) + 1
            _scale(x, out, None, col=seen.get("n", 0) * 8)
        return out
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.declined, st.remodelled) == (2, 1, 0)


def test_an_index_a_closure_reads_is_the_loop_index_all_the_same(monkeypatch):
    """The loop index's value before iteration 0 (an earlier entry's) is not modelled,
    also when a closure in the body reads it (a cell, not a plain local)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                col = (lambda: (b * 16 + j) * 8)()
                _scale(x, out, j, col=col)
        return out
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.remodelled, st.iterations) == (3, 0, 10 + 14 + 14)


def test_an_object_the_last_iteration_changes_samples_the_entry_afresh(monkeypatch):
    """An entry modelled from its iteration 0 alone does not know how its body changes
    the frame's objects: one its last iteration changes (here only that iteration, and
    the same way again when it runs once more) makes the entry sampled afresh (where it
    declines: the change, not undone, shows between its first samples)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        note = {}
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
                if b == 1 and j == 15:
                    note["last"] = True
            _scale(x, out, None, col=len(note) * 8)
        return out
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.declined, st.fallbacks, st.remodelled) == (2, 1, 0, 1)
    assert st.iterations == 10 + 10


def test_locals_bound_after_the_loop_since_its_last_entry_keep_the_model(monkeypatch):
    """Names the code after the inner loop binds (an int, a string) are in the frame at
    the inner loop's later entries but not at its first: the model of its first entry
    still stands (their ints stepping by 0), and the later entries run iterations 0
    and 15 alone (a model without them would sample the second entry afresh: 10
    appended, not 14)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
            done = (b + 1) * 16
            tag = "block"
            _scale(x, out, None, col=(done - 1) * 8 + len(tag) - 5)
        return out
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.declined, st.fallbacks, st.remodelled) == (3, 0, 0, 0)
    assert st.iterations == 10 + 14 + 14
    assert st.instructions == 3 * st.iterations


def test_an_int_bound_since_that_the_body_steps_misses_and_is_modelled_afresh(
        monkeypatch):
    """An int bound after the loop's first entry that its body then steps (here from
    its second entry on) is not one step of 0: the last iteration leaves it off the
    model, and the entry is sampled afresh; the third entry keeps the second's model."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j) * 8)
                if b > 0:
                    count += 1  # noqa: F821 - bound after the first entry
            count = 0
            _scale(x, out, None, col=(b * 16 + 15) * 8)
        return out
    x = np.ones((128, 8 * 16 * 3), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.declined, st.fallbacks, st.remodelled) == (3, 0, 0, 1)
    assert st.iterations == 10 + 10 + 14


def test_an_error_in_the_last_iteration_of_an_entry_with_names_bound_since(monkeypatch):
    """The third entry, modelled from the first's model with the names bound since,
    reads past x in its last iteration: the error is the full run's, at its line."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16 * 3), nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(3):
            for j in nl.affine_range(16):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                col = (b * 16 + j) * 8
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # x is 4 columns short
                nisa.dma_copy(dst=out[:, col:col + 8], src=t)
            done = b
        return out
    x = np.zeros((128, 8 * 16 * 3 - 4), np.float32)
    expanded = _expanded_counts(monkeypatch)
    messages = [(type(e), str(e), e.location.line)
                for e in _raised_both_ways(monkeypatch, lambda: _run(kernel, x))]
    assert expanded == [10, 14, 14]  # the third entry's last iteration failed
    assert messages[0] == messages[1]
    assert "x is 4 columns short" in messages[1][1]
