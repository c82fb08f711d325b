"""A loop entered again whose iteration 0 misses its last model (a first-iteration
special case: here an extra store, or a PSUM accumulator's first write) is checked on
iteration 1 alone (machine/expand.py): the model's step is then checked by the last
iteration, with the frame's ints and objects, and every record is that of a full
run."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.language as nl
from test_expand import _both, _run, _scale, _stats, tiled_matmul


def _entries(steps, first_extra=True, note_at=None):
    """A blocked kernel: entry b of its inner loop (16 iterations) stores columns
    `steps[b]` apart, iteration 0 one more (`first_extra`); at iteration `note_at` of
    entry 1 it changes a dict of the frame, which the store after the loop reads."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        note = {}
        for b in nl.affine_range(len(steps)):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j * steps[b]) * 8)
                if first_extra and j == 0:
                    _scale(x, out, j, col=(b * 16 + 1) * 8)
                if b == 1 and j == note_at:
                    note["seen"] = True
            _scale(x, out, None, col=len(note) * 8)
        return out
    return kernel


def test_entries_whose_first_iteration_differs_run_iterations_0_1_and_the_last(
        monkeypatch):
    x = np.ones((128, 8 * 16 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_entries((1, 1, 1)), x))
    st = _stats(fast)
    # the first entry samples 1-4; the others run 0, 1 and 15: 13 appended each
    assert (st.loops, st.fallbacks, st.remodelled) == (3, 0, 0)
    assert st.iterations == 10 + 13 + 13


def test_a_step_that_changes_is_caught_by_the_last_iteration_and_remodelled(monkeypatch):
    x = np.ones((128, 8 * 16 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_entries((1, 2, 2)), x))
    st = _stats(fast)
    # entry 1 steps by 2: one sample cannot tell, its last iteration misses the model and
    # the entry is sampled afresh (1-4: 10 appended); entry 2 repeats entry 1's model
    assert (st.loops, st.fallbacks, st.remodelled) == (3, 0, 1)
    assert st.iterations == 10 + 10 + 13


def test_an_object_the_sample_changes_is_not_modelled_from_it(monkeypatch):
    x = np.ones((128, 8 * 16 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_entries((1, 1, 1), note_at=1), x))
    st = _stats(fast)
    # entry 1's iteration 1 changes the dict: its one sample stands for nothing, and the
    # samples 1-2 after it decline (the change shows between them)
    assert (st.loops, st.declined, st.remodelled) == (2, 1, 0)


def test_an_object_the_last_iteration_changes_samples_the_entry_afresh(monkeypatch):
    x = np.ones((128, 8 * 16 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_entries((1, 1, 1), note_at=15), x))
    st = _stats(fast)
    # entry 1's last iteration leaves the dict changed: the entry is sampled afresh,
    # where the change (not undone) shows between its samples
    assert (st.loops, st.declined, st.remodelled) == (2, 1, 1)


def test_an_accumulation_loop_entered_again_runs_iterations_0_1_and_the_last(
        monkeypatch):
    lhsT = np.ones((2048, 128), np.float32)
    rhs = np.ones((2048, 512 * 4), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(tiled_matmul, lhsT, rhs))
    st = _stats(fast)
    # matmuls into a PSUM tile made before their k loop: iteration 0 writes it first.
    # m has 1 iteration and n 4 (each runs, none expands); k (16) samples 1-4 on its
    # first entry, then iteration 1 alone: 13 appended
    assert (st.loops, st.fallbacks, st.remodelled) == (4, 0, 0)
    assert st.iterations == 10 + 3 * 13
