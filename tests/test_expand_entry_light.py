"""A short loop with a light body (a blocked kernel's innermost K loop), entered often
(machine/expand.py `REENTERED`), is sampled once and its later entries that repeat the
model run only their first and last iterations: every record, timeline and error is
still that of a full run."""
from __future__ import annotations

import numpy as np
import pytest

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand
from test_expand import _both, _run, _stats


def _blocked(blocks, inner, body):
    """`blocks` entries of an `inner`-iteration loop (too short to expand on its own,
    with a light body) `body(x, out, b, k)`."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(blocks):
            for k in nl.affine_range(inner):
                body(x, out, b, k)
        return out
    return kernel


def _copy(x, out, col):
    t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x[:, col:col + 8])
    nisa.dma_copy(dst=out[:, col:col + 8], src=t)


def test_a_light_loop_entered_often_expands_from_its_third_entry(monkeypatch):
    x = np.ones((128, 8 * 8 * 6), np.float32)
    kernel = _blocked(6, 8, lambda x, out, b, k: _copy(x, out, (b * 8 + k) * 8))
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entries 0-1 run every iteration; entry 2 samples (0-4 and 7 run), entries 3-5
    # repeat its model (0 and 7 run)
    assert (st.loops, st.fallbacks, st.declined) == (4, 0, 0)
    assert st.iterations == 2 + 3 * 6


def test_ints_the_body_sets_from_the_block_index_change_between_entries(monkeypatch):
    def body(x, out, b, k):
        row = (b * 8 + k) * 8  # (set before it is read: last entry's value is stale)
        _copy(x, out, row)
    x = np.ones((128, 8 * 8 * 5), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocked(5, 8, body), x))
    st = _stats(fast)
    assert (st.loops, st.fallbacks) == (3, 0)


def test_a_body_that_diverges_on_a_later_entry_falls_back_to_the_full_record(
        monkeypatch):
    def body(x, out, b, k):
        _copy(x, out, (b * 8 + k) * 8)
        if b == 4 and k >= 5:  # entry 4's iterations 5.. (expanded from its model)
            _copy(x, out, k * 8)
    x = np.ones((128, 8 * 8 * 6), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocked(6, 8, body), x))
    st = _stats(fast)
    # entry 4's last iteration misses its model of iteration 0: it is sampled afresh,
    # and misses again (its samples 5-6 differ from 1-4): every iteration runs; entry 5
    # is sampled afresh
    assert (st.loops, st.remodelled, st.fallbacks) == (3, 1, 1)


def test_an_error_in_the_last_iteration_of_a_later_entry_points_at_its_line(
        monkeypatch):
    def body(x, out, b, k):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        col = (b * 8 + k) * 8
        nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # the last entry's last tile is short
        nisa.dma_copy(dst=out[:, col:col + 8], src=t)
    x = np.ones((128, 8 * 8 * 6 - 4), np.float32)
    expanded = []
    real = expand.Plan.expand
    monkeypatch.setattr(expand.Plan, "expand", lambda self, run, first, stop:
                        expanded.append(stop - first) or real(self, run, first, stop))
    messages = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        with pytest.raises(Exception) as err:
            _run(_blocked(6, 8, body), x)
        messages.append((type(err.value), str(err.value)))
    # entries 2-5 expanded (the last of them then failed in its last iteration)
    assert expanded[-1] == 6 and len(expanded) == 4
    assert messages[0] == messages[1]
    assert "the last entry's last tile is short" in messages[1][1]


def test_an_error_in_the_first_iteration_of_a_later_entry_is_that_of_a_full_run(
        monkeypatch):
    def body(x, out, b, k):
        if b == 4 and k == 0:
            raise ValueError(f"stopped in block {b}, iteration {k}")
        _copy(x, out, (b * 8 + k) * 8)
    x = np.ones((128, 8 * 8 * 6), np.float32)
    messages = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        with pytest.raises(ValueError) as err:
            _run(_blocked(6, 8, body), x)
        messages.append(str(err.value))
    assert messages == ["stopped in block 4, iteration 0"] * 2
