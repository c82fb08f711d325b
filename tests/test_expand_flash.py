"""Loop expansion on flash attention (src/trnsim/kernels/attention.py): its loop over key
chunks is short (at most 8 iterations), entered once per pair of query tiles with a
trip count that grows with them (causal), carries the online-softmax state from one
iteration to the next and ends with a narrower, masked chunk. machine/expand.py models
it once an entry has enough iterations (FEW + 1 samples: iteration 0 reads the state
made before the loop) and reuses that model in the later entries (iteration 0 and one
sample run, the one before the last checks the model). Every record, compiled program
and timeline is that of a full run (TRNSIM_EXPAND=0)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.kernels import attention
from trnsim.machine import expand
from test_expand import _both, _run, _stats

BF16 = ml_dtypes.bfloat16


def _shapes(S):
    return (1, 1, 128, S), (1, 1, 128, S), (1, 1, S, 128)  # q, k, v


def _flash(S, causal, data=None):
    q, k, v = data if data is not None else [np.zeros(s, BF16) for s in _shapes(S)]
    return dict(q=q, k=k, v=v, causal=causal)


def _timing_only(kwargs):
    return trnsim.run_kernel(attention.flash_attention_fwd, (), kwargs=kwargs, chip="trn2",
                             numerics=False)[1]


@pytest.mark.parametrize("S, chunk, causal, expanded", [
    # 512-key chunks: 8 entries of 5.. chunks; the first of 6 makes the model
    (4096, 512, True, 608),
    (8192, attention.K_CHUNK, True, 1904),  # the bench's shape
    (4096, 512, False, 4000),  # no triangle: the loop over query pairs expands too
])
def test_flash_attention_expands_its_key_chunk_loop_to_a_full_runs_record(
        monkeypatch, S, chunk, causal, expanded):
    monkeypatch.setattr(attention, "K_CHUNK", chunk)
    _, fast = _both(monkeypatch, lambda: _timing_only(_flash(S, causal)))
    st = _stats(fast)
    assert st.instructions >= expanded
    assert (st.fallbacks, st.left_early) == (0, 0)


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


def _triangle(Q, short_by=0):
    """Flash attention's loop shape, smaller: entry q of the inner loop has q + 2
    iterations, each adds a block of x to the tile the previous one made (carried:
    rebound each iteration), 40 instructions, and the last one adds another block
    (the diagonal's mask). x is `short_by` columns short of the last entry's block."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * Q), nl.float32, buffer=nl.hbm)
        for q in nl.affine_range(Q):
            acc = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=acc, value=0.0)
            scale = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)  # (made after acc:
            nisa.memset(dst=scale, value=1.0)  # iteration 0 reads acc off the step)
            last = q + 1
            for k in nl.sequential_range(last + 1):
                t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=x[:, k * 8:(k + 1) * 8])  # x short: here
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0)
                new = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
                nisa.tensor_tensor(dst=new, data1=acc, data2=t, op=nl.add)
                for _ in (0,) * 19:
                    nisa.tensor_scalar(dst=new, data=new, op0=nl.multiply, operand0=1.0)
                if k == last:
                    nisa.tensor_tensor(dst=new, data1=new, data2=t, op=nl.add)
                acc = new
            nisa.dma_copy(dst=out[:, q * 8:(q + 1) * 8], src=acc)
        return out
    return kernel, np.zeros((128, 8 * (Q + 1) - short_by), np.float32)


def test_a_growing_inner_loop_whose_last_iteration_differs_reuses_its_model(monkeypatch):
    kernel, x = _triangle(12)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    # entries of 5 iterations and more (q >= 3): q = 3's body is noted, q = 4 samples
    # iterations 1..3 and checks 4 before 5 (its last iteration differs); q = 5 appends
    # 1.. from iteration 0 alone, which misses (iteration 0 reads acc, off the step),
    # and samples afresh; q = 6.. run iterations 0 and 1 and check the one before the
    # last: q - 2 appended each
    assert len(st.last_differs) == 1 and st.remodelled == 1 and st.fallbacks == 0
    assert st.iterations == sum(q + 2 - 4 for q in range(6, 12))
    assert len(fast.program) == len(full.program) == sum(
        4 + 40 * (q + 2) for q in range(12))  # (2 memsets, the last add, the store)


@pytest.mark.parametrize("short_by", [4, 12])
def test_an_error_in_a_late_entry_points_at_its_line_as_in_a_full_run(monkeypatch,
                                                                      short_by):
    """x ends 4 columns into the last entry's last block (its last iteration fails), or
    12 (the last iteration of the entry before it, which also checks the last entry's
    model)."""
    kernel, x = _triangle(12, short_by)
    messages = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        left_early = expand._left_early[0]
        with pytest.raises(Exception) as err:
            _run(kernel, x)
        messages.append((type(err.value), str(err.value)))
    # (the expanded run left an expanded loop in its last iteration: run again in full)
    assert expand._left_early[0] == left_early + 1
    assert messages[0] == messages[1]
    assert "x short: here" in messages[1][1]


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
