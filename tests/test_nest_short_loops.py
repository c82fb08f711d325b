"""A short loop with a heavy body (machine/expand.py: fewer than MIN_ITERATIONS, entered
for the first time) is modelled from samples 1 and 2 when its iteration 0's record
continues their step (expand.FEW), its last iteration checking the frame as well;
where iteration 0 does not, it samples as other loops do. A loop whose last iteration
differs alone has its model checked by the one before it. Every record is that of a
full run."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.language as nl
from trnsim.machine import expand, expand_parts, expand_plan
from test_expand import _both, _run, _scale, _stats


def _short(body, blocks=8):
    """A loop of `blocks` iterations (fewer than MIN_ITERATIONS) whose body is
    `body(x, out, b)`."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(blocks):
            body(x, out, b)
        return out
    return kernel


_TILES = tuple(range(24))  # (a tuple: iterated without expansion)


def _tiles(x, out, b, first=0):
    for j in _TILES:  # 72 instructions: heavy
        _scale(x, out, None, col=(first + b * 24 + j) * 8)


X = np.ones((128, 8 * 24 * 8 + 8 * 24), np.float32)


def test_iteration_0_on_the_samples_step_leaves_iterations_0_to_2_and_the_last_to_run(
        monkeypatch):
    _, fast = _both(monkeypatch, lambda: _run(_short(_tiles), X))
    st = _stats(fast)
    assert expand.FEW == 2 and expand.MIN_ITERATIONS > 8
    assert (st.loops, st.iterations, st.instructions) == (1, 4, 4 * 72)
    assert (st.declined, st.fallbacks, st.remodelled) == (0, 0, 0)


def test_an_iteration_0_of_another_structure_is_sampled_as_other_loops_are(monkeypatch):
    def body(x, out, b):
        _tiles(x, out, b)
        if b == 0:
            _scale(x, out, None, col=0)
    _, fast = _both(monkeypatch, lambda: _run(_short(body), X))
    st = _stats(fast)
    assert (st.loops, st.iterations) == (1, 2)  # iterations 0-4 and 7 ran


def test_an_iteration_0_off_the_samples_step_is_sampled_as_other_loops_are(monkeypatch):
    def body(x, out, b):  # iteration 0's tiles one block further on: off the step
        _tiles(x, out, b, first=24 if b == 0 else 0)
    _, fast = _both(monkeypatch, lambda: _run(_short(body), X))
    st = _stats(fast)
    assert (st.remodelled, st.fallbacks, st.loops, st.iterations) == (0, 0, 1, 2)


def test_a_double_buffered_loop_is_seen_before_anything_is_appended(monkeypatch):
    """Tiles a block apart in turn (`% 2`): iterations 0-2 are not on one step, and
    neither are 1-4: the loop declines without appending."""
    def body(x, out, b):
        _tiles(x, out, 0, first=24 * (b % 2))
    _, fast = _both(monkeypatch, lambda: _run(_short(body), X))
    st = _stats(fast)
    assert (st.loops, st.declined, st.remodelled, st.fallbacks) == (0, 1, 0, 0)


def test_ints_the_body_sets_or_carries_are_those_of_a_full_run(monkeypatch):
    """An int set before it is read (stale before iteration 0), and one counted across
    iterations and read after the loop: the model's, checked by the last iteration."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        count = 0
        for b in nl.affine_range(8):
            first = b * 24
            _tiles(x, out, 0, first=first)
            count += 3
        _scale(x, out, None, col=count * 8)
        return out
    _, fast = _both(monkeypatch, lambda: _run(kernel, X))
    st = _stats(fast)
    assert (st.loops, st.iterations, st.remodelled) == (1, 4, 0)


def test_a_last_iteration_that_leaves_an_int_off_the_model_is_run_after_the_check(
        monkeypatch):
    """The count's step changes in the last iteration: its record matches, the frame
    does not, so the model is checked by iteration 6 (3-5 appended) and 7 runs after
    it."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        count = 0
        for b in nl.affine_range(8):
            _tiles(x, out, b)
            count += 1 if b < 7 else 2
        _scale(x, out, None, col=count * 8)
        return out
    _, fast = _both(monkeypatch, lambda: _run(kernel, X))
    st = _stats(fast)
    assert (st.remodelled, st.loops, st.iterations) == (0, 1, 3)


def test_iteration_0_of_a_loop_around_expanded_ones_takes_their_copies_as_blocks(
        monkeypatch):
    """The snapshot of iteration 0 of a short loop around an inner one that expanded
    reads the inner copies as blocks, and equals the one made item by item."""
    real = expand_parts.snapshot
    spans = []

    def snapshot(run, *args):
        st = run.expansion
        blocks = sum(1 for k, v in st.copied_blocks.items() if args[0] <= k and v[0] < args[1])
        key, nums, sizes = real(run, *args)
        kept = st.parts, st.copied_blocks, st.copied_alloc_blocks
        st.parts, st.copied_blocks, st.copied_alloc_blocks = {}, {}, {}
        try:
            ref = real(run, *args)
        finally:
            st.parts, st.copied_blocks, st.copied_alloc_blocks = kept
        assert key == ref[0] and np.array_equal(nums, ref[1]) and sizes == ref[2]
        spans.append((args[1] - args[0], blocks))
        return key, nums, sizes
    monkeypatch.setattr(expand_plan, "snapshot", snapshot)

    def body(x, out, b):
        for j in nl.affine_range(24):
            _scale(x, out, None, col=(b * 24 + j) * 8)
    _, fast = _both(monkeypatch, lambda: _run(_short(body), X))
    st = _stats(fast)
    assert st.remodelled == 0 and st.fallbacks == 0
    # the outer loop's iteration 0: 72 instructions, the inner copies among them as a block
    assert (72, 1) in spans


def test_a_sample_that_changes_an_object_of_the_frame_is_not_modelled(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        seen = {}
        for b in nl.affine_range(8):
            _tiles(x, out, b)
            seen["last"] = b
        _scale(x, out, None, col=seen["last"] * 8)
        return out
    _, fast = _both(monkeypatch, lambda: _run(kernel, X))
    st = _stats(fast)
    # (seen before expanding: not by the last iteration, which would sample afresh)
    assert (st.loops, st.declined, st.remodelled) == (0, 1, 0)


def test_a_last_iteration_that_differs_alone_is_run_after_the_one_that_checks(
        monkeypatch):
    """Each entry's last iteration adds a copy (a tail; flash attention's diagonal): the
    model is checked by the one before it, and in the next entry straight away."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(2):  # (too few to expand)
            for j in nl.affine_range(16):
                _scale(x, out, None, col=(b * 16 + j) * 8)
                if j == 15:
                    _scale(x, out, None, col=b * 8)
        return out
    x = np.ones((128, 8 * 16 * 2), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entry 0: samples 1-4, 5-13 appended, 14 checks, 15 runs; entry 1: iteration 0
    # repeats the model, 1-13 appended, 14 checks, 15 runs
    assert (st.loops, st.fallbacks, st.remodelled) == (2, 0, 0)
    assert st.iterations == 9 + 13 and len(st.last_differs) == 1


def test_a_short_light_loop_entered_again_with_a_model_expands(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(2):  # (too few to expand)
            for j in nl.affine_range(16 if b == 0 else 8):  # 3 instructions: light
                _scale(x, out, None, col=(b * 16 + j) * 8)
        return out
    x = np.ones((128, 8 * 16 * 2), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entry 0: 5-14 appended; entry 1 (8 iterations): iteration 0 repeats the model,
    # 1-6 appended
    assert (st.loops, st.iterations, st.remodelled) == (2, 10 + 6, 0)
