"""Loop expansion declines sampled iterations that recorded different numbers of
instructions, allocations or fences without their snapshots (machine/expand.py
`_sizes_differ`): Plan.derive would decline them too, their structures differing. Its
answer is checked against the snapshots' structures, and the runs against those that
take the snapshots and against full runs (TRNSIM_EXPAND=0)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.kernels import attention
from trnsim.machine import expand, expand_parts, expand_plan, runtime
from test_expand import _both, _run, _stats


def _growing(n: int, same_sizes: bool = False):
    """A loop of `n` iterations; iteration i scales a tile i % 4 + 1 times (with
    `same_sizes`, twice, by another operation when i is odd: the same number of
    instructions, another structure)."""

    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * n), nl.float32, buffer=nl.hbm)
        for i in nl.affine_range(n):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, i * 8:i * 8 + 8])
            if same_sizes:
                op = nl.add if i % 2 else nl.multiply
                for _ in (0, 1):
                    nisa.tensor_scalar(dst=t, data=t, op0=op, operand0=2.0)
            else:
                for _ in (0,) * (i % 4 + 1):
                    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
            nisa.dma_copy(dst=out[:, i * 8:i * 8 + 8], src=t)
        return out
    return kernel


def _snapshots(monkeypatch) -> list:
    """The spans (instructions) Plan.derive's snapshots take, as they are taken."""
    spans = []
    real = expand_plan.snapshot

    def snapshot(run, start, stop, *rest):
        spans.append(stop - start)
        return real(run, start, stop, *rest)
    monkeypatch.setattr(expand_plan, "snapshot", snapshot)
    return spans


def _checked_sizes(monkeypatch) -> list:
    """`_sizes_differ`, each answer that the iterations differ checked against their
    snapshots' structures (not all the same); returns how many iterations each such
    answer covered."""
    seen = []
    real = expand._sizes_differ

    def sizes_differ(marks):
        got = real(marks)
        if got:
            run = runtime.current_run()
            keys = {expand_parts.snapshot(run, a.instructions, b.instructions,
                                          a.allocations, b.allocations, a.fences,
                                          b.fences)[0]
                    for a, b in zip(marks, marks[1:])}
            assert len(keys) > 1
            seen.append(len(marks) - 1)
        return got
    monkeypatch.setattr(expand, "_sizes_differ", sizes_differ)
    return seen


def test_samples_of_other_sizes_decline_without_a_snapshot(monkeypatch):
    x = np.ones((128, 8 * 16), np.float32)
    spans = _snapshots(monkeypatch)
    declines = _checked_sizes(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(_growing(16), x))
    st = _stats(fast)
    assert (st.loops, st.declined) == (0, 1)
    assert declines == [4]  # iterations 1..4 (SAMPLES), of 2, 3, 4 and 1 scalings
    assert spans == []
    # with the snapshots, the same decline: one snapshot per sample (2 DMAs and 2, 3, 4
    # and 1 scalings)
    spans.clear()
    monkeypatch.setattr(expand, "_sizes_differ", lambda marks: False)
    _, slow = _both(monkeypatch, lambda: _run(_growing(16), x))
    assert (_stats(slow).loops, _stats(slow).declined) == (0, 1)
    assert spans == [4, 5, 6, 3]


def test_samples_of_one_size_and_other_structures_are_declined_by_their_snapshots(
        monkeypatch):
    x = np.ones((128, 8 * 16), np.float32)
    spans = _snapshots(monkeypatch)
    declines = _checked_sizes(monkeypatch)
    _, fast = _both(monkeypatch, lambda: _run(_growing(16, same_sizes=True), x))
    st = _stats(fast)
    assert declines == []
    assert spans == [4, 4, 4, 4]
    assert (st.loops, st.declined) == (0, 1)  # (period 1 only: another opcode each time)


@pytest.mark.parametrize("S", [4096, 8192])
def test_flash_attention_expands_as_with_every_snapshot(monkeypatch, S):
    """Causal flash attention's loop over query pairs (key-chunk loops that grow) is
    declined by its sizes; everything else it expands as when each sample is looked at."""
    shapes = (1, 1, 128, S), (1, 1, 128, S), (1, 1, S, 128)
    kw = dict(zip("qkv", (np.zeros(s, ml_dtypes.bfloat16) for s in shapes)), causal=True)

    def go():
        return trnsim.run_kernel(attention.flash_attention_fwd, (), kwargs=kw, chip="trn2",
                                 numerics=False)[1]
    declines = _checked_sizes(monkeypatch)
    _, fast = _both(monkeypatch, go)
    assert declines == [4]
    monkeypatch.setattr(expand, "_sizes_differ", lambda marks: False)
    _, slow = _both(monkeypatch, go)
    a, b = _stats(fast), _stats(slow)
    assert (a.loops, a.iterations, a.instructions, a.declined, a.fallbacks) \
        == (b.loops, b.iterations, b.instructions, b.declined, b.fallbacks)
    assert a.declined == 1 and a.instructions > 0
