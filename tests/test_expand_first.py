"""Loop expansion of an entry whose iteration 0 its loop's earlier entries predict
(machine/expand_first.py): iteration 0 is appended too, the last iteration checks the
prediction, a miss rolls the entry back to run as before, and every record and timeline
is the full run's (TRNSIM_EXPAND=0)."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand, expand_first
from kernel_helpers import tutorial_run
from test_expand import _both, _expanded_counts, _raised_both_ways, _run, _stats


def _entries(blocks, shift_entry=None, short_by=0):
    """`blocks` entries of a 16-iteration loop; iteration j of entry b scales columns
    (b * 16 + j) * 8 .. + 8 of x (a tile it makes: one allocation, rebound each
    iteration) into columns j * 8 .. + 8 of out, except entry `shift_entry`, which reads
    4 columns further (which no int of the frame at its entry shows: not what the
    entries before it predict); x may end `short_by` columns early."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16), nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(blocks):
            for j in nl.affine_range(16):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                col = (b * 16 + j) * 8 + (4 if b == shift_entry else 0)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # x short here
                nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
                nisa.dma_copy(dst=out[:, j * 8:j * 8 + 8], src=t)
        return out
    return kernel, np.ones((128, 8 * 16 * blocks + 4 - short_by), np.float32)


def test_later_entries_append_their_first_iteration(monkeypatch):
    kernel, x = _entries(6)
    expanded = _expanded_counts(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entry 0 samples 1..4 and appends 5..14; entries 1 and 2 run iteration 0 and
    # append 1..14 (entry 1 is the first noted; entry 2's is the second, and its tile
    # was placed where the placement at its entry said); entries 3-5 are affine
    # combinations of the entries before them: they append 0..14 and run 15 alone
    assert expanded == [10, 14, 14, 15, 15, 15]
    assert (st.predicted, st.fallbacks, st.declined) == (3, 0, 0)
    assert st.iterations == 10 + 14 + 14 + 3 * 15
    assert st.instructions == st.iterations * 3


def test_a_predicted_entry_places_its_tiles_where_running_it_would(monkeypatch):
    """The virtual addresses of the tiles (which the model's numbers leave out) are
    those of the same expanded run without predictions, iteration 0's placed at the
    entry and the last iteration's after it."""
    kernel, x = _entries(6)
    monkeypatch.setenv(expand.ENV, "1")
    runs = []
    for body in (expand_first.BODY, 10 ** 9):  # (then no entry is noted: none predicted)
        monkeypatch.setattr(expand_first, "BODY", body)
        runs.append(_run(kernel, x))
    predicted, plain = runs
    assert (_stats(predicted).predicted, _stats(plain).predicted) == (3, 0)
    vaddrs = [[(a.id, a.vaddr) for a in r.program.allocations.values()] for r in runs]
    assert vaddrs[0] == vaddrs[1]
    assert len({v for _, v in vaddrs[0]}) > 1  # (tiles placed apart: a real check)


def test_an_entry_off_its_prediction_falls_back_to_run_its_first_iteration(monkeypatch):
    kernel, x = _entries(6, shift_entry=5)
    expanded = _expanded_counts(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entry 5 reads 4 columns further than entries 0-4 predict: its last iteration
    # misses the prediction (15 appended, rolled back), and so does the one before it,
    # which checks it next as in a loop whose last iteration differs alone (14), and
    # the entry runs iteration 0 and appends 1..14 from it as an entry not predicted
    # does
    assert expanded == [10, 14, 14, 15, 15, 15, 14, 14]
    assert (st.predicted, st.fallbacks, st.declined) == (2, 0, 0)
    (firsts,) = st.firsts.values()
    assert firsts.misses == 1
    assert st.iterations == 10 + 14 + 14 + 2 * 15 + 14


def test_an_error_in_the_last_iteration_of_a_predicted_entry_is_the_full_runs(
        monkeypatch):
    # x ends 8 columns early: the last iteration of entry 5 (predicted) reads past it
    kernel, x = _entries(6, short_by=8)
    expanded = _expanded_counts(monkeypatch)
    errors = _raised_both_ways(monkeypatch, lambda: _run(kernel, x))
    assert expanded == [10, 14, 14, 15, 15, 15]  # (then the kernel ran again, unexpanded)
    (full, fast) = [(type(e), str(e), e.location.line) for e in errors]
    assert fast == full
    assert "x short here" in fast[1]


def test_tiles_of_two_memories_are_placed_in_turn(monkeypatch):
    """A body making an SBUF and a PSUM tile (both rebound each iteration): entries 3-5
    are predicted as in `_entries`, and every tile is where the run without predictions
    places it."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16), nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(6):
            for j in nl.affine_range(16):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, (b * 16 + j) * 8:(b * 16 + j) * 8 + 8])
                u = nl.ndarray((128, 8), nl.float32, buffer=nl.psum)
                nisa.tensor_copy(dst=u, src=t)
                nisa.tensor_copy(dst=t, src=u)
                nisa.dma_copy(dst=out[:, j * 8:j * 8 + 8], src=t)
        return out
    x = np.ones((128, 8 * 16 * 6), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    monkeypatch.setattr(expand_first, "BODY", 10 ** 9)
    plain = _run(kernel, x)
    assert (_stats(fast).predicted, _stats(plain).predicted) == (3, 0)
    vaddrs = [[(a.id, a.space, a.vaddr) for a in r.program.allocations.values()]
              for r in (fast, plain)]
    assert vaddrs[0] == vaddrs[1]
    assert {s for _, s, _ in vaddrs[0]} == {"sbuf", "psum"}


def test_the_tutorials_m_tile_loop_in_psum_is_predicted(monkeypatch):
    """The legacy tutorial's block_mnk (examples/legacy/matmul_tutorial.py) at K 4096
    (4 K blocks, run in full: `expand._learning`), 16 M tiles in one block, 2 N tiles:
    its loop over the M tiles (a PSUM tile from `nl.zeros`, 8 matmuls and an add an
    iteration) is entered 4 x 2 times. Entry 1 samples; entries 2-4 run iteration 0
    (2 and 3 are the first noted; 4, the first of K block 1 with N tile 1, is off the
    line of those two); entries 5-8 are combinations of 2-4 and append iteration 0.
    Records and timelines are the full run's, the tiles' addresses those of the run
    without predictions."""
    def go():
        return tutorial_run("block_mnk", "trn1", 4096, 2048, 1024)
    _, fast = _both(monkeypatch, go)
    assert (_stats(fast).predicted, _stats(fast).fallbacks) == (4, 0)
    monkeypatch.setattr(expand_first, "BODY", 10 ** 9)
    plain = go()
    assert _stats(plain).predicted == 0
    assert [(a.id, a.vaddr) for a in fast.program.allocations.values()] == \
        [(a.id, a.vaddr) for a in plain.program.allocations.values()]
