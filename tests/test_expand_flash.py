"""Loop expansion on flash attention (src/trnsim/kernels/attention.py): its loop over key
chunks is short (at most 8 iterations), entered once per pair of query tiles with a
trip count that grows with them (causal), carries the online-softmax state from one
iteration to the next and ends with a narrower, masked chunk. machine/expand.py models
it once an entry has enough iterations (iteration 0 and FEW samples; iteration 0 reads
the state made before the loop, which the model takes as the tiles one step back) and
reuses that model in the later entries (iteration 0 runs, the one before the last
checks the model, or, once the last iterations of earlier entries predict this one's,
the last: machine/expand_tail.py). Every record, compiled program and timeline is that
of a full run (TRNSIM_EXPAND=0)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.kernels import attention
from trnsim.machine import expand, expand_tail
from test_expand import _both, _raised_both_ways, _run, _stats

BF16 = ml_dtypes.bfloat16


def _shapes(S):
    return (1, 1, 128, S), (1, 1, 128, S), (1, 1, S, 128)  # q, k, v


def _flash(S, causal, data=None):
    q, k, v = data if data is not None else [np.zeros(s, BF16) for s in _shapes(S)]
    return dict(q=q, k=k, v=v, causal=causal)


def _timing_only(kwargs):
    return trnsim.run_kernel(attention.flash_attention_fwd, (), kwargs=kwargs, chip="trn2",
                             numerics=False)[1]


@pytest.mark.parametrize("S, chunk, causal, iterations, by_tail, predicted", [
    # 512-key chunks: query pairs 6 and 7 enter it with 4 chunks, ..., 14 and 15 with
    # 8; 6 notes it, 7 makes the model from iterations 0..2 (none left to append: its
    # last misses the model and is noted as a tail) and 8.. run iteration 0 alone and
    # append up to the one before the last; the diagonal chunk has two structures (odd
    # and even pairs), seen twice by pair 10: 11, 13 and 15 append the one before the
    # last too (its accesses those of 10's, 12's and 14's check), checked by the last;
    # 11..15, whose iteration 0 that of 8..10 predict (machine/expand_first.py: by their
    # numbers' classes), append it too
    (4096, 512, True, 2 * (2 + 3 + 4 + 5) + 3 + 5, 3, 5),
    # the bench's shape: pairs 12..15 enter it with 4 chunks, ..., 28..31 with 8; 12
    # notes it, 13 makes the model, 14 and 15 append one iteration each; four diagonal
    # structures, seen twice by pair 20: 21..23, 25..27 and 29..31 (not 24 and 28, the
    # first of 7 and of 8 chunks); 17..31 append their iteration 0 too (predicted by
    # 14..16's)
    (8192, attention.K_CHUNK, True, 2 + 4 * (2 + 3 + 4 + 5) + 9 + 15, 9, 15),
    (4096, 512, False, 28, 0, 0),  # no triangle: the loop over query pairs expands too
])
def test_flash_attention_expands_its_key_chunk_loop_to_a_full_runs_record(
        monkeypatch, S, chunk, causal, iterations, by_tail, predicted):
    monkeypatch.setattr(attention, "K_CHUNK", chunk)
    _, fast = _both(monkeypatch, lambda: _timing_only(_flash(S, causal)))
    st = _stats(fast)
    assert st.iterations == iterations
    assert (st.fallbacks, st.remodelled, st.left_early) == (0, 0, 0)
    assert _tail_checks(st) == by_tail
    assert all(t.misses == 0 for t in st.tails.values())
    assert st.predicted == predicted
    assert all(f.misses == 0 for f in st.firsts.values())


def _tail_checks(st) -> int:
    """Entries whose last iteration checked the model by the tails' prediction (each
    notes its tail again: the latest of each structure it counts)."""
    return sum(t.checked for t in st.tails.values())


@pytest.mark.parametrize("causal", [True, False])
def test_flash_attention_numerics_are_those_of_a_full_run(monkeypatch, causal):
    rng = np.random.default_rng(0)
    S = 1024
    data = [rng.standard_normal(s).astype(BF16) for s in _shapes(S)]
    outs = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        got, _ = trnsim.run_kernel(attention.flash_attention_fwd, (),
                                   kwargs=_flash(S, causal, data), chip="trn2")
        outs.append(np.asarray(got).tobytes())
    assert outs[0] == outs[1]


def _triangle(Q, short_by=0, shift=0, entry_view=False, odd_tail=None, group=1,
              failing_tail=None):
    """Flash attention's loop shape, smaller: entry q of the inner loop has q + 2
    iterations, each adds a block of x (blocks shift * q, shift * q + 1, ...) to the
    tile the previous one made (carried: rebound each iteration), 40 instructions, and
    the last one adds another block (the diagonal's mask). x is `short_by` columns short
    of the last entry's block. `entry_view`: tiles of 64 partitions, the loop starting
    from the lower half of a tile of 128 (read in iteration 0 at other partitions than
    the tiles one step back the model takes it for). `odd_tail`: an entry whose last
    iteration adds the carried tile instead (the same structure, other numbers).
    `group`: entries q of q // group + 2 iterations (flash attention's pairs of query
    tiles in a key chunk). `failing_tail`: an entry whose last iteration raises."""
    rows = 64 if entry_view else 128

    @nki.jit
    def kernel(x):
        out = nl.ndarray((rows, 8 * Q), nl.float32, buffer=nl.hbm)
        for q in nl.affine_range(Q):
            acc = nl.ndarray((128 if entry_view else rows, 8), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=acc, value=0.0)
            if entry_view:
                acc = acc[64:, :]
            scale = nl.ndarray((rows, 1), nl.float32, buffer=nl.sbuf)  # (made after acc:
            nisa.memset(dst=scale, value=1.0)  # iteration 0 reads acc off the step)
            last = q // group + 1
            for k in nl.sequential_range(last + 1):
                col = (k + shift * q) * 8
                t = nl.ndarray((rows, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # x short: here
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0)
                new = nl.ndarray((rows, 8), nl.float32, buffer=nl.sbuf)
                nisa.tensor_tensor(dst=new, data1=acc, data2=t, op=nl.add)
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=new, data=new, op0=nl.multiply, operand0=1.0)
                if k == last:
                    nisa.tensor_tensor(dst=new, data1=new, op=nl.add,
                                       data2=acc if q == odd_tail else t)
                    if q == failing_tail:
                        raise ValueError(f"entry {q}'s last iteration fails here")
                acc = new
            nisa.dma_copy(dst=out[:, q * 8:(q + 1) * 8], src=acc)
        return out
    blocks = (Q - 1) // group + 2 + shift * (Q - 1)
    return kernel, np.zeros((rows, 8 * blocks - short_by), np.float32)


def test_a_growing_inner_loop_whose_last_iteration_differs_reuses_its_model(monkeypatch):
    kernel, x = _triangle(12)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entries of 4 iterations and more (q >= 2): q = 2's body is noted, q = 3 samples
    # iterations 1 and 2, whose step iteration 0 continues (its reads of acc, made
    # before the loop, stand for those of the tile one step back) and appends 3, which
    # the last iteration (it differs) does not confirm: 3 runs and checks the model,
    # and the last runs again; q = 4.. run iteration 0 alone, append 1..q - 1 from it
    # and check q before the last. (Their last iterations would predict the later ones', but no entry ran
    # iteration q in full before entry q: its reads of x there were never checked, and
    # it is not appended: expand_tail.places) Entries q = 7.. append iteration 0 too,
    # which those of q = 4..6 predict (by their state at entry: q, the record's counts)
    assert len(st.last_differs) == 1 and st.remodelled == 0 and st.fallbacks == 0
    assert st.predicted == 5
    assert st.iterations == sum(q - 1 for q in range(4, 12)) + 5
    assert _tail_checks(st) == 0
    assert len(fast.program) == len(full.program) == sum(
        4 + 40 * (q + 2) for q in range(12))  # (2 memsets, the last add, the store)


def _without_tails(monkeypatch, go):
    """`go()`'s expanded run where no tail predicts an entry's last iteration."""
    monkeypatch.setenv(expand.ENV, "1")
    with monkeypatch.context() as m:
        m.setattr(expand_tail.Tails, "predicts", lambda self, plan, last: False)
        return go()


def test_entries_of_equal_trip_counts_check_their_model_by_the_last_iteration(
        monkeypatch):
    """Entries in pairs of equal trip counts (q // 2 + 2): q = 4 notes the loop, 5 makes
    the model (its last iteration, the only one after its samples, misses it and is
    noted) and 6 reuses it, checking it by the iteration before the last and noting the
    last (one structure, at two indices); from then on the second entry of each pair,
    whose iteration before the last the first ran in full, appends it too and checks
    the model by the last (the frame's q as the model has it, the other numbers moving
    with the record or the index as in the tails noted)."""
    kernel, x = _triangle(16, group=2)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    (tails,) = st.tails.values()
    assert (tails.checked, tails.misses) == (5, 0)  # entries 7, 9, 11, 13 and 15
    base = _stats(_without_tails(monkeypatch, lambda: _run(kernel, x)))
    assert _tail_checks(base) == 0
    assert (st.loops, st.iterations) == (base.loops, base.iterations + 5)
    assert (st.fallbacks, st.remodelled) == (0, 0)


@pytest.mark.parametrize("odd_tail", [13, 15])
def test_a_last_iteration_off_its_tails_prediction_is_checked_by_the_one_before(
        monkeypatch, odd_tail):
    """Entry `odd_tail`'s last iteration adds another tile than the earlier tails: it
    misses their prediction, and the entry appends again up to the one before the last,
    which checks the model (the last runs again); the later entries' tails are predicted
    from the earlier ones, which the odd one does not join."""
    kernel, x = _triangle(16, group=2, odd_tail=odd_tail)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    (tails,) = st.tails.values()
    assert (tails.misses, tails.checked) == (1, 4)  # (7, 9, 11 and 13 or 15)
    base = _stats(_without_tails(monkeypatch, lambda: _run(kernel, x)))
    assert st.iterations == base.iterations + 4
    assert (st.fallbacks, st.remodelled) == (0, 0)


def _failed_as_a_full_run(monkeypatch, kernel, x) -> str:
    """The error message of `kernel(x)`, the same without loop expansion and with it,
    where the expanded run left an expanded loop in its last iteration and ran again
    in full."""
    left_early = expand._left_early[0]
    messages = [(type(e), str(e))
                for e in _raised_both_ways(monkeypatch, lambda: _run(kernel, x))]
    assert expand._left_early[0] == left_early + 1
    assert messages[0] == messages[1]
    return messages[1][1]


@pytest.mark.parametrize("short_by", [4, 12])
def test_an_error_in_a_late_entry_points_at_its_line_as_in_a_full_run(monkeypatch,
                                                                      short_by):
    """x ends 4 columns into the last entry's last block (its last iteration fails,
    checking the entry's model by the earlier tails' prediction), or 12 (the last
    iteration of the entry before it)."""
    kernel, x = _triangle(12, short_by)
    message = _failed_as_a_full_run(monkeypatch, kernel, x)
    assert "x short: here" in message


def test_an_access_out_of_bounds_before_a_predicted_tail_is_a_full_runs(monkeypatch):
    """Entries in pairs of equal trip counts whose last iteration reads block 0 of x and
    the others blocks q + k: entry 15's iteration before the last reads block 22, past
    x's end. Its tail would be predicted, but entry 14 ran that iteration at block 21,
    so it runs for real (expand_tail.places) and fails as in a full run."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 16), nl.float32, buffer=nl.hbm)
        for q in nl.affine_range(16):
            acc = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=acc, value=0.0)
            last = q // 2 + 1
            for k in nl.sequential_range(last + 1):
                col = (0 if k == last else q + k) * 8
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # x short: here
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0)
                new = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.tensor_tensor(dst=new, data1=acc, data2=t, op=nl.add)
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=new, data=new, op0=nl.multiply, operand0=1.0)
                acc = new
            nisa.dma_copy(dst=out[:, q * 8:(q + 1) * 8], src=acc)
        return out
    x = np.zeros((128, 22 * 8), np.float32)
    message = _failed_as_a_full_run(monkeypatch, kernel, x)
    assert "index range [176, 183]" in message and "x short: here" in message


def test_an_error_in_a_last_iteration_checking_by_its_tail_is_a_full_runs(monkeypatch):
    """Entry 15 (pairs of equal trip counts) checks its model by its last iteration,
    which raises: the kernel runs again in full and raises there."""
    kernel, x = _triangle(16, group=2, failing_tail=15)
    message = _failed_as_a_full_run(monkeypatch, kernel, x)
    assert "entry 15's last iteration fails here" in message


def test_an_error_in_an_appended_iteration_of_a_late_entry_is_a_full_runs(monkeypatch):
    """Entry q reads blocks 3q..4q + 1 of x, which ends before block 38: entry 10
    (blocks 30..41) fails at its iteration 8, which expansion appended from its
    iteration 0 alone; its check (iteration 10) fails too, and the kernel runs again in
    full, which reports iteration 8's access."""
    kernel, x = _triangle(12, 8 * 8, shift=3)
    assert x.shape[1] == 38 * 8
    message = _failed_as_a_full_run(monkeypatch, kernel, x)
    assert "index range [304, 311]" in message and "x short: here" in message


def test_a_carried_tile_read_off_the_models_step_at_entry_is_remodelled(monkeypatch):
    """The loop starts from a view at other partitions than the tiles it carries: the
    model of iteration 0 alone (its reads of that view taken for those of the tile one
    step back) misses at its check, the entry is sampled afresh, and the later ones
    sample iteration 1 (`zero_misses`): every record is a full run's."""
    kernel, x = _triangle(12, entry_view=True)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.remodelled, st.fallbacks, len(st.zero_misses)) == (1, 0, 1)
    assert st.iterations > 0


def test_short_entries_that_decline_cost_one_try_per_length(monkeypatch):
    """Entries of 5 iterations whose blocks are not affine (k * k) decline once (FEW
    samples off the step, FEW + 1 more than they have), the next ones of 5 run in full
    and do not count towards GIVE_UP: the loop's entries of 12 still expand."""
    trips = (5,) * 8 + (12, 12)

    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8), nl.float32, buffer=nl.hbm)
        for trip in trips:  # (a tuple: iterated without expansion)
            for k in nl.sequential_range(trip):
                col = (k * k if trip == 5 else k) * 8
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])
                for _ in (0,) * 32:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0)
                nisa.dma_copy(dst=out, src=t)
        return out
    _, fast = _both(monkeypatch, lambda: _run(kernel, np.zeros((128, 8 * 17), np.float32)))
    st = _stats(fast)
    assert (st.declined, st.fallbacks, st.remodelled) == (1, 0, 0)
    # the first entry of 12 samples 1..4 and checks 11; the second appends 1..10
    assert (st.loops, st.iterations) == (2, 6 + 10)


def _equal_trips(entries, trip, short_by=0):
    """`entries` entries of a sequential loop of `trip` iterations (33 instructions
    each); entry e reads blocks e..e + trip - 1 of x, which ends `short_by` columns
    early."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8), nl.float32, buffer=nl.hbm)
        for e in tuple(range(entries)):  # (a tuple: iterated without expansion)
            for k in nl.sequential_range(trip):
                col = (e + k) * 8
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, col:col + 8])  # x short: here
                for _ in (0,) * 31:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0)
                nisa.dma_copy(dst=out, src=t)
        return out
    return kernel, np.zeros((128, 8 * (entries + trip - 1) - short_by), np.float32)


def test_entries_too_short_to_append_after_the_samples_make_the_model(monkeypatch):
    """Entries of FEW + 2 iterations: the first notes the loop's body, the second runs
    iteration 0, samples 1..FEW and runs the last, which confirms the model (none is
    appended: `expand._learning`); the next two run iteration 0, append 1..FEW from
    it and check the model by the last; the last two, which those two predict
    (machine/expand_first.py), append 0..FEW too. Every record is a full run's."""
    assert expand._LEARNING == expand.FEW + 2 == 4
    kernel, x = _equal_trips(6, 4)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert (st.loops, st.iterations, st.instructions) == (4, 2 * 2 + 2 * 3, 10 * 33)
    assert st.predicted == 2
    assert (st.declined, st.fallbacks, st.remodelled) == (0, 0, 0)
    assert not st.last_differs and not st.tails
    # entries of FEW + 1 iterations have none to append after iteration 0 either way
    kernel, x = _equal_trips(6, 3)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert fast.__dict__.get("expansion") is None or _stats(fast).iterations == 0


def test_an_error_in_a_late_entry_after_a_model_made_without_appending(monkeypatch):
    """x ends a block early: the last entry's last iteration, which checks the model
    the second entry made, fails, and the kernel runs again in full and fails there."""
    kernel, x = _equal_trips(6, 4, short_by=8)
    message = _failed_as_a_full_run(monkeypatch, kernel, x)
    assert "index range [64, 71]" in message and "x short: here" in message
