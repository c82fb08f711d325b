"""Iteration 0 predicted by its numbers' classes (machine/expand_first.py `_Classes`):
entries of a loop whose trip count grows every other entry, so that the record's counts
at an entry move apart from the frame's ints and no affine combination of the few
entries noted gives the next entry's state. Every record and timeline is the full
run's (TRNSIM_EXPAND=0), and every tile's virtual address that of the expanded run
without predictions."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand, expand_first
from test_expand import _both, _run, _stats
from test_expand_first_tails import _vaddrs, _without_predictions

ENTRIES = 16


def _growing(shifted=None):
    """ENTRIES entries q of a loop of 12 + q // 2 iterations; iteration j of entry q
    scales block q + j of x into block j of out, except entry `shifted`, which reads
    every block 4 columns further (which no int of its frame at its entry shows)."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 24), nl.float32, buffer=nl.hbm)
        for q in nl.affine_range(ENTRIES):
            n = 12 + q // 2
            for j in nl.affine_range(n):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                col = (q + j) * 8 + (4 if q == shifted else 0)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])
                nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
                nisa.dma_copy(dst=out[:, j * 8:j * 8 + 8], src=t)
        return out
    return kernel, np.ones((128, 8 * 48), np.float32)


def _by_classes(monkeypatch) -> list:
    """Whether each entry `_Classes` was asked for was predicted by it, in order."""
    asked = []
    real = expand_first._Classes.predicted

    def predicted(self, b):
        out = real(self, b)
        asked.append(out is not None)
        return out
    monkeypatch.setattr(expand_first._Classes, "predicted", predicted)
    return asked


def _without_classes(monkeypatch, go):
    """`go()`'s expanded run where only affine combinations of the entries noted predict."""
    monkeypatch.setenv(expand.ENV, "1")
    with monkeypatch.context() as m:
        m.setattr(expand_first._Classes, "predicted", lambda self, b: None)
        return go()


def test_entries_the_classes_predict_append_their_first_iteration(monkeypatch):
    kernel, x = _growing()
    asked = _by_classes(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entry 0 samples; 1.. run iteration 0 (from entry 2 on, two noted): entry 2 moves
    # the trip count, which entries 1 and 2 did not (declined, noted); entries 4..15 are
    # predicted from 1..3 by the classes, none by an affine combination of them
    assert asked[-13:] == [False] + [True] * 12
    (firsts,) = st.firsts.values()
    assert (st.predicted, firsts.misses, st.fallbacks) == (12, 0, 0)
    assert len(firsts.rows) == 3
    affine = _without_classes(monkeypatch, lambda: _run(kernel, x))
    assert _stats(affine).predicted == 11  # (from entry 5 on: four entries noted)
    assert st.iterations == _stats(affine).iterations + 1
    plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
    assert _stats(plain).predicted == 0
    assert st.iterations == _stats(plain).iterations + st.predicted
    assert _vaddrs(fast) == _vaddrs(plain)


def test_an_entry_off_the_classes_runs_its_first_iteration(monkeypatch):
    """Entry 8 reads every block 4 columns further than its classes predict: the last
    iteration misses the prediction, the entry is rolled back (record, placements,
    frame) and runs iteration 0 as an entry not predicted; its row, noted, follows no
    class of the others', so no later entry is predicted."""
    kernel, x = _growing(shifted=8)
    asked = _by_classes(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    (firsts,) = st.firsts.values()
    assert (st.predicted, firsts.misses, st.fallbacks) == (4, 1, 0)
    assert asked[-12:] == [True] * 5 + [False] * 7
    plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
    assert st.iterations == _stats(plain).iterations + st.predicted
    assert _vaddrs(fast) == _vaddrs(plain)


def test_classes_predict_only_what_the_noted_entries_tell():
    """Rows of (a count, a multiple of an int, a constant) over bases (the count, the
    int, another int): a number follows the one term whose move it repeats, or a
    whole multiple of it; where two terms moved alike in the noted entries (which of
    them a number follows they do not tell) and apart now, or a term none of them
    moved moves now, nothing is predicted."""
    bases = [[10, 1, 5], [14, 2, 5], [25, 4, 5]]
    rows = [[11, 8, 3], [15, 16, 3], [26, 32, 3]]
    classes = expand_first._Classes(bases, rows)
    assert classes.predicted([30, 5, 5]).tolist() == [31, 40, 3]
    assert classes.predicted([30, 5, 6]) is None  # (the third term moves: never before)
    alike = expand_first._Classes([[10, 1, 5], [12, 3, 5]], [[11, 8, 3], [13, 10, 3]])
    assert alike.predicted([14, 5, 5]).tolist() == [15, 12, 3]  # (moving alike still)
    assert alike.predicted([16, 4, 5]) is None
    unfit = expand_first._Classes(bases, [[0, 0, 0], [1, 0, 0], [3, 1, 0]])
    assert unfit.predicted([30, 5, 5]) is None  # (the second number follows no term)
