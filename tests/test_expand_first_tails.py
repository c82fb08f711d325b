"""Iteration 0 predicted (machine/expand_first.py) in a loop whose last iteration differs
alone (machine/expand_tail.py), shaped as causal flash attention's key-chunk loop: a
function called once per entry runs a sequential loop whose trip count grows with the
entry, carries a tile from one iteration to the next (iteration 0 reads the one made
before the loop), makes temporaries in SBUF and PSUM in a function it calls, and ends
with an iteration that does one more instruction. Every record and timeline is that of
a full run (TRNSIM_EXPAND=0), and every tile's virtual address that of the expanded run
without predictions."""
from __future__ import annotations

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand, expand_first
from test_expand import _both, _expanded_counts, _run, _stats

ENTRIES = 16


def _step(x, acc, col: int, tail: bool):
    """acc + the block of x at `col`, through temporaries (an SBUF and a PSUM tile, dead
    once it returns); the tail adds the block once more."""
    t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x[:, col:col + 8])
    u = nl.ndarray((128, 8), nl.float32, buffer=nl.psum)
    nisa.tensor_copy(dst=u, src=t)
    new = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=new, data1=acc, data2=u, op=nl.add)
    for _ in (0,) * 30:
        nisa.tensor_scalar(dst=new, data=new, op0=nl.multiply, operand0=1.0)
    if tail:
        nisa.tensor_tensor(dst=new, data1=new, data2=t, op=nl.add)
    return new


def _kernel(shifted=None, odd_tail=None, view_entry=None):
    """ENTRIES entries q of a loop of q // 2 + 2 iterations (pairs of equal trip counts,
    as flash attention's query tiles share a key chunk), iteration k reading block k of
    x; entry `shifted` reads every block 4 columns further (which no int of its frame
    at its entry shows), entry `odd_tail`'s last iteration skips its extra add, entry
    `view_entry` starts from the right half of a wider tile (which only iteration 0
    reads)."""
    def row(x, out, q: int):
        if q == view_entry:
            wide = nl.ndarray((128, 16), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=wide, value=0.0)
            acc = wide[:, 8:16]
        else:
            acc = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=acc, value=0.0)
        last = q // 2 + 1
        for k in nl.sequential_range(last + 1):
            col = k * 8 + (4 if q == shifted else 0)
            acc = _step(x, acc, col, k == last and q != odd_tail)
        nisa.dma_copy(dst=out[:, q * 8:(q + 1) * 8], src=acc)

    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * ENTRIES), nl.float32, buffer=nl.hbm)
        for q in nl.affine_range(ENTRIES):
            row(x, out, q)
        return out
    return kernel, np.ones((128, 8 * (ENTRIES // 2 + 2) + 4), np.float32)


def _without_predictions(monkeypatch, go):
    """`go()`'s expanded run where no entry is noted for a prediction."""
    monkeypatch.setenv(expand.ENV, "1")
    with monkeypatch.context() as m:
        m.setattr(expand_first, "BODY", 10 ** 9)
        return go()


def _vaddrs(run) -> list:
    return [(a.id, a.space, a.vaddr) for a in run.program.allocations.values()]


def test_entries_whose_last_iteration_differs_append_their_first_iteration(monkeypatch):
    kernel, x = _kernel()
    expanded = _expanded_counts(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    appended = list(expanded)
    plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
    base = _stats(plain)
    # entries 4.. (4 iterations and more) expand, the same ones either way, and their
    # last iteration differs alone; from entry 6 on, those that run iteration 0 are
    # noted, and 10.. are predicted by 6..9 (by their state at entry: q, last and the
    # record's counts; k and col, which the body binds, left out): iterations 0.. are
    # appended, up to the one before the last (even entries) or, where the tails
    # predict the last, up to it (odd ones, whose iteration before the last the even
    # entry before them ran)
    assert base.predicted == 0 and st.last_differs == base.last_differs != set()
    assert st.predicted == 6
    assert st.loops == base.loops
    assert st.iterations == base.iterations + st.predicted
    assert appended[-st.predicted:] == [q // 2 + 1 - (q % 2 == 0)
                                        for q in range(ENTRIES - st.predicted, ENTRIES)]
    (firsts,) = st.firsts.values()
    (tails,) = st.tails.values()
    assert firsts.misses == 0 and tails.misses == 0
    # (the odd entries' tails are predicted: the last iteration checks the model, the
    # one before it appended too; the even ones' the one before the last checks)
    assert tails.checked == base.tails[next(iter(base.tails))].checked > 0
    # the temporaries too are placed where the body places them: in PSUM, around
    assert _vaddrs(fast) == _vaddrs(plain)
    psum = {v for _, s, v in _vaddrs(fast) if s == "psum"}
    assert len(psum) > 1


def test_an_entry_off_its_prediction_runs_its_first_iteration(monkeypatch):
    """Entry 12 reads every block 4 columns further than entries before it predict: the
    iteration that checks its model misses the prediction, the entry is rolled back
    (record, placements, frame) and runs iteration 0 as an entry not predicted."""
    kernel, x = _kernel(shifted=12)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
    (firsts,) = st.firsts.values()
    # (10 and 11 predicted; 13.. not: entry 12's iteration 0, noted, is off the others'
    # combination, which no combination of theirs now gives)
    assert firsts.misses == 1
    assert (st.predicted, st.fallbacks) == (2, 0)
    assert st.iterations == _stats(plain).iterations + st.predicted
    assert _vaddrs(fast) == _vaddrs(plain)


def test_a_tail_off_its_prediction_in_a_predicted_entry_is_checked_before(monkeypatch):
    """Entry 13's last iteration skips the add the others' make: it misses the tails'
    prediction, and the entry, its iteration 0 still appended, is checked by the
    iteration before the last as `expand._expanding` would (the last runs again)."""
    kernel, x = _kernel(odd_tail=13)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    (firsts,) = st.firsts.values()
    (tails,) = st.tails.values()
    assert (firsts.misses, tails.misses) == (0, 1)
    # (10..15: entry 14's record counts at entry, off the entries noted by the
    # instruction 13's tail left out, are no affine combination of theirs, but its
    # numbers' classes predict it, and 15 by them too: expand_first._Classes)
    assert st.predicted == 6
    plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
    assert _vaddrs(fast) == _vaddrs(plain)


def test_an_entry_starting_from_another_view_runs_its_first_iteration(monkeypatch):
    """Entry 12's carried tile at its entry is half of a wider one: its iteration 0
    reads other bytes of its allocation than the tiles the earlier entries' did, which
    no later iteration shows. It is not predicted (expand_first._EntryRead: the tile
    at entry is no view like the template's) but runs iteration 0, and the entries
    after it are predicted again."""
    kernel, x = _kernel(view_entry=12)
    predicted = []
    real = expand._predicted

    def noted(run, rng, *args):
        done = yield from real(run, rng, *args)
        predicted.append(done)
        return done
    monkeypatch.setattr(expand, "_predicted", noted)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    (firsts,) = st.firsts.values()
    assert (firsts.misses, st.fallbacks) == (0, 0)
    # (entries 7.. try; 10, 11, 13, 14 and 15 are predicted)
    assert predicted[-9:] == [False] * 3 + [True] * 2 + [False] + [True] * 3
    assert st.predicted == 5


def test_a_predicted_entry_whose_last_iteration_first_differs_is_checked_before(
        monkeypatch):
    """Six entries of a 16-iteration loop as in test_expand_first.py's (entries 3-5
    predicted), the last iteration of entry 5 doing one more instruction: it misses
    the prediction, and the one before it, appended again from iteration 0, checks it
    (as `expand._expanding` does a model's): entry 5 is predicted all the same, and the
    loop is noted as one whose last iteration differs alone."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16), nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(6):
            for j in nl.affine_range(16):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                col = (b * 16 + j) * 8
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])
                nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
                if b == 5 and j == 15:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
                nisa.dma_copy(dst=out[:, j * 8:j * 8 + 8], src=t)
        return out
    x = np.ones((128, 8 * 16 * 6), np.float32)
    expanded = _expanded_counts(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert expanded == [10, 14, 14, 15, 15, 15, 14]
    (firsts,) = st.firsts.values()
    assert (st.predicted, firsts.misses, st.fallbacks) == (3, 0, 0)
    assert len(st.last_differs) == 1
    assert st.iterations == 10 + 14 + 14 + 15 + 15 + 14


class _Holder:
    def __init__(self, tile):
        self.tile = tile


def _scaled_blocks(held: bool):
    """Six entries of a 16-iteration loop whose body scales a block of x through a tile
    made in a function it calls, which the body keeps (`held`: in an object it rebinds
    each iteration) or lets die."""
    def scaled(x, col):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, col:col + 8])
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
        return t

    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16), nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(6):
            for j in nl.affine_range(16):
                t = scaled(x, (b * 16 + j) * 8)
                nisa.dma_copy(dst=out[:, j * 8:j * 8 + 8], src=t)
                box = _Holder(t) if held else None
                t = None
        return out, box
    return kernel, np.ones((128, 8 * 16 * 6), np.float32)


def test_a_tile_an_object_of_the_frame_may_hold_is_no_temporary(monkeypatch):
    """Entries whose iteration 0 makes a tile no local holds once it ends (a temporary:
    not placed, its space passed by) are predicted; where an object the body rebinds
    each iteration may hold it (it outlives the iteration), they are not."""
    counts = []
    for held in (False, True):
        kernel, x = _scaled_blocks(held)
        _, fast = _both(monkeypatch, lambda: _run(kernel, x))
        plain = _without_predictions(monkeypatch, lambda: _run(kernel, x))
        assert _vaddrs(fast) == _vaddrs(plain)
        counts.append(_stats(fast).predicted)
    assert counts == [3, 0]
