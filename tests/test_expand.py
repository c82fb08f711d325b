"""Loop expansion (trnsim/machine/expand.py): a timing-only run that traces a few
iterations and expands the rest records exactly what running every iteration records,
and declines or falls back wherever it cannot know that."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.legacy import isa as lisa
from trnsim.legacy import language as lnl
from trnsim.legacy.jit import run_legacy
from trnsim.machine import expand
from trnsim.timing import schedule


def _record(run):
    """Everything the record says, allocations without their virtual addresses (which
    only name space; the compiled accesses carry the physical ones)."""
    p = run.program
    instrs = [(i.index, i.core, i.engine, i.opcode, i.queue, i.location,
               sorted(i.attrs.items(), key=str), [sorted(a._asdict().items()) for a in
                                                  i.reads + i.writes])
              for i in p.instructions]
    allocs = [sorted((f.name, getattr(a, f.name)) for f in dataclasses.fields(a)
                     if f.name != "vaddr" or a.explicit)
              for a in p.allocations.values()]
    return instrs, allocs, list(p.fences)


def _both(monkeypatch, go):
    """(full run, expanded run) of `go()` -> Run, with their timelines' events."""
    out = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        run = go()
        tl = schedule(run.program, run.chip)
        out.append((run, [(e.index, e.start, e.end) for e in tl.events]))
    (full, ev_full), (fast, ev_fast) = out
    assert _record(fast) == _record(full)
    assert ev_fast == ev_full
    return full, fast


def _raised_both_ways(monkeypatch, go) -> list:
    """The exceptions `go()` raises without loop expansion and with it, in that order
    (it must raise in both)."""
    errors = []
    for flag in ("0", "1"):
        monkeypatch.setenv(expand.ENV, flag)
        with pytest.raises(Exception) as err:
            go()
        errors.append(err.value)
    return errors


def _expanded_counts(monkeypatch) -> list:
    """The number of iterations each model appends from now on (`Plan.expand`), in
    order: filled as the runs go."""
    expanded = []
    real_expand = expand.Plan.expand
    monkeypatch.setattr(expand.Plan, "expand",
                        lambda self, run, first, stop: expanded.append(stop - first)
                        or real_expand(self, run, first, stop))
    return expanded


def _stats(run):
    return getattr(run, "expansion", None) or expand.ExpansionStats()


def _run(kernel, *args, chip="trn2"):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=False)[1]


# -- kernels -----------------------------------------------------------------------
@nki.jit
def tiled_matmul(lhsT, rhs):
    K, M = lhsT.shape
    _, N = rhs.shape
    out = nl.ndarray((M, N), nl.float32, buffer=nl.hbm)
    for m in nl.affine_range(M // 128):
        for n in nl.affine_range(N // 512):
            acc = nl.ndarray((128, 512), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // 128):
                a = nl.ndarray((128, 128), lhsT.dtype, buffer=nl.sbuf)
                b = nl.ndarray((128, 512), rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, m * 128:(m + 1) * 128])
                nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, n * 512:(n + 1) * 512])
                nisa.nc_matmul(dst=acc, stationary=a, moving=b)
            o = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=o, src=acc)
            nisa.dma_copy(dst=out[m * 128:(m + 1) * 128, n * 512:(n + 1) * 512], src=o)
    return out


def _columns(body):
    """A kernel over 8-column tiles of x [128, W] whose loop body is `body(j, x, out)`."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        body(x, out)
        return out
    return kernel


def _scale(x, out, j, col=None):
    col = j * 8 if col is None else col
    t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x[:, col:col + 8])
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
    nisa.dma_copy(dst=out[:, col:col + 8], src=t)


# -- exact expansion -----------------------------------------------------------------
def test_nested_affine_loops_expand_to_the_full_record(monkeypatch):
    lhsT = np.ones((2048, 256), np.float32)
    rhs = np.ones((2048, 4096), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(tiled_matmul, lhsT, rhs))
    st = _stats(fast)
    # k (16 iterations) inside n (8): both expand; only iterations 0-4 and the last run
    assert st.loops >= 2 and st.fallbacks == 0
    assert st.instructions > len(full.program) // 2
    assert not hasattr(full, "expansion")


@nki.jit
def plain_range_matmul(lhsT, rhs):
    K, M = lhsT.shape
    _, N = rhs.shape
    out = nl.ndarray((M, N), nl.float32, buffer=nl.hbm)
    for n in range(N // 512):
        acc = nl.ndarray((128, 512), nl.float32, buffer=nl.psum)
        for k in range(K // 128):
            a = nl.ndarray((128, 128), lhsT.dtype, buffer=nl.sbuf)
            b = nl.ndarray((128, 512), rhs.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, 0:128])
            nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, n * 512:(n + 1) * 512])
            nisa.nc_matmul(dst=acc, stationary=a, moving=b)
        o = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=o, src=acc)
        nisa.dma_copy(dst=out[0:128, n * 512:(n + 1) * 512], src=o)
    return out


def test_plain_range_loops_expand_unless_asked_not_to(monkeypatch):
    lhsT = np.ones((2048, 128), np.float32)
    rhs = np.ones((2048, 4096), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(plain_range_matmul, lhsT, rhs))
    assert _stats(fast).loops >= 2
    assert "range" not in globals()  # the module's globals are restored after the run
    monkeypatch.setenv(expand.ENV, "affine")
    assert _stats(_run(plain_range_matmul, lhsT, rhs)).loops == 0


def _blocked(scales_per_tile, blocks=8):
    """`blocks` blocks (8: a short loop) of 6 column tiles (too short to expand), each
    tile scaled `scales_per_tile` times: 18 x scales_per_tile instructions per block."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(blocks):
            for j in nl.affine_range(6):
                for _ in nl.static_range(scales_per_tile):
                    _scale(x, out, b * 6 + j)
        return out
    return kernel


def test_a_short_loop_expands_only_when_its_body_is_heavy(monkeypatch):
    x = np.ones((128, 8 * 6 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocked(4), x))  # 72 instructions a block
    st = _stats(fast)
    # iterations 0-2 and 7 run (iteration 0's record continues the step of samples 1
    # and 2: expand.FEW): 3 to 6 are appended, 4 x 72 instructions
    assert (st.loops, st.iterations, st.instructions) == (1, 4, 4 * 72)
    assert expand.HEAVY_BODY <= 72
    _, fast = _both(monkeypatch, lambda: _run(_blocked(1), x))  # 18 a block: light
    assert _stats(fast).loops == 0


def test_a_long_loop_with_a_heavy_body_samples_as_few_as_a_short_one(monkeypatch):
    x = np.ones((128, 16 * 6 * 8), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_blocked(4, blocks=16), x))
    st = _stats(fast)
    # iterations 0-2 and 15 run (expand.FEW), not 0-4: 3 to 14 are appended
    assert expand.MIN_ITERATIONS <= 16
    assert (st.loops, st.iterations, st.instructions) == (1, 12, 12 * 72)
    _, fast = _both(monkeypatch, lambda: _run(_blocked(1, blocks=16), x))
    st = _stats(fast)  # 18 a block: light, sampled as before (0-4 and 15 run)
    assert (st.loops, st.iterations, st.instructions) == (1, 10, 10 * 18)


def _reentered(stride_of_block):
    """2 blocks (too few to expand) of a 16-iteration loop over column tiles: the inner
    loop is entered twice, its tiles `stride_of_block(b)` tiles apart."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(2):
            for j in nl.affine_range(16):
                _scale(x, out, j, col=(b * 16 + j * stride_of_block(b)) * 8)
        return out
    return kernel


def test_a_loop_entered_again_is_checked_against_its_model_on_fewer_samples(monkeypatch):
    x = np.ones((128, 8 * 48), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(_reentered(lambda b: 1), x))
    st = _stats(fast)
    # first entry: iterations 0-4 and 15 run, 10 appended; the second's iteration 0
    # repeats its model's structure, so 0 and 15 run, 14 appended, and its last
    # iteration confirms the model's step
    assert (st.loops, st.iterations, st.fallbacks, st.remodelled) == (2, 10 + 14, 0, 0)
    # a second entry with another step is modelled afresh from its own samples
    _, fast = _both(monkeypatch, lambda: _run(_reentered(lambda b: 1 + b), x))
    st = _stats(fast)
    assert (st.loops, st.iterations, st.fallbacks) == (2, 10 + 10, 0)


def test_legacy_sequential_range_keeps_its_fences(monkeypatch):
    def kernel(x):
        out = lnl.ndarray(x.shape, dtype=x.dtype, buffer=lnl.shared_hbm)
        for j in lnl.sequential_range(x.shape[1] // 64):
            t = lnl.load(x[:, j * 64:(j + 1) * 64])
            lnl.store(out[:, j * 64:(j + 1) * 64], value=lisa.activation(op=lnl.exp, data=t))
        return out
    x = np.zeros((128, 64 * 20), np.float32)
    full, fast = _both(monkeypatch,
                       lambda: run_legacy(kernel, (x,), {}, chip="trn2", numerics=False)[1])
    assert _stats(fast).iterations == 20 - 6
    assert len(full.program.fences) >= 20


def test_a_tile_each_iteration_makes_and_first_writes_does_not_decline(monkeypatch):
    """The legacy tutorial's `res_psum = nl.zeros(..., buffer=nl.psum)` per (m, n): its
    first writes change state beside the record, but only of the iteration's own tile."""
    from trnsim.examples import load_example
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    lhsT = np.zeros((2048, 128), np.float32)
    rhs = np.zeros((2048, 512 * 16), np.float32)
    _, fast = _both(monkeypatch, lambda: run_legacy(tiled, (lhsT, rhs), {}, chip="trn1",
                                                    numerics=False)[1])
    assert _stats(fast).declined == 0 and _stats(fast).loops == 1 + 6


@nki.jit
def partition_buffers(x):
    """A double buffer over partitions (`bufs[j % 2]`: partition j % 2)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    bufs = nl.ndarray((2, 128, 8), nl.float32, buffer=nl.sbuf)
    for j in nl.affine_range(x.shape[1] // 8):
        nisa.dma_copy(dst=bufs[j % 2], src=x[:, j * 8:(j + 1) * 8])
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=bufs[j % 2])
    return out


def test_periodic_operands_expand_with_their_period(monkeypatch):
    """A double buffer (`bufs[j % 2]`) moves its operand with period 2."""
    x = np.zeros((128, 8 * 40), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(partition_buffers, x))
    st = _stats(fast)
    assert st.loops == 1 and st.iterations == 40 - 10  # 0-8 and the last run


def test_loop_carried_int_is_advanced_for_the_code_after_the_loop(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        col = 0
        for _ in nl.affine_range(x.shape[1] // 8 - 1):
            _scale(x, out, None, col)
            col += 8
        _scale(x, out, None, col)  # the last tile, at the column the loop left
        return out
    x = np.zeros((128, 8 * 30), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 1
    last = fast.program.instructions[-1]
    assert last.writes[0].offset == 8 * 29


def test_a_tensor_carried_from_one_iteration_to_the_next(monkeypatch):
    """`acc = nl.add(acc, t)`: each iteration reads the tile the one before made."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8), nl.float32, buffer=nl.hbm)
        acc = nl.zeros((128, 8), nl.float32, buffer=nl.sbuf)
        for j in range(x.shape[1] // 8):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
            acc = nl.add(acc, t)
        nisa.dma_copy(dst=out, src=acc)
        return out
    x = np.zeros((128, 8 * 24), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 1 and _stats(fast).fallbacks == 0
    adds = [i for i in fast.program if i.opcode == "tensor_tensor"]
    # every add reads the accumulator the previous add wrote
    assert all(b.reads[0].alloc == a.writes[0].alloc for a, b in zip(adds, adds[1:]))


# -- declining and falling back ------------------------------------------------------
def test_a_branch_seen_in_the_samples_declines(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for j in nl.affine_range(x.shape[1] // 8):
            _scale(x, out, j)
            if j == 3:
                _scale(x, out, j)
        return out
    x = np.zeros((128, 8 * 20), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 0 and _stats(fast).declined == 1


def test_a_loop_that_declined_twice_is_not_tried_again(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(5):
            for j in nl.affine_range(16):
                _scale(x, out, b * 16 + j)
                if j == 3:
                    _scale(x, out, b * 16 + j)
        return out
    x = np.zeros((128, 8 * 16 * 5), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert expand.GIVE_UP == 2
    assert _stats(fast).loops == 0 and _stats(fast).declined == 2  # of 5 inner loops


def test_a_short_loop_found_light_twice_runs_plain_at_once(monkeypatch):
    """An inner loop of 8 iterations (short) of 3 instructions (light) entered 5 times:
    its first GIVE_UP entries look at iteration 0 and run the rest; the later ones run
    every iteration at once. The outer loop's entries of 16 (long) are not held back by
    it: the last one's iterations are appended. Records as without expansion."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for b in nl.affine_range(5):
            for j in nl.affine_range(8):
                _scale(x, out, b * 8 + j)
        for j in nl.affine_range(16):
            _scale(x, out, 40 + j)
        return out
    x = np.zeros((128, 8 * 56), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    st = _stats(fast)
    assert 8 < expand.MIN_ITERATIONS <= 16 and 3 * 8 < expand.HEAVY_BODY
    assert list(st.light_sites.values()) == [expand.GIVE_UP]  # (of 5 entries)
    # the last loop: iterations 0-4 and 15 run, 5..14 appended
    assert (st.loops, st.iterations, st.instructions) == (1, 10, 10 * 3)


def test_different_last_iterations_fall_back(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        n = x.shape[1] // 8
        for j in nl.affine_range(n):
            _scale(x, out, j)
            if j >= n - 2:  # (the last alone would be checked by the one before it)
                _scale(x, out, 0)
        return out
    x = np.zeros((128, 8 * 20), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).fallbacks == 1 and _stats(fast).loops == 0


@nki.jit
def rotating_banks(x):
    """Each iteration makes 8 PSUM tiles and uses tile i % 8: over iterations 1-4 the
    tile used looks affine (its id advances by 10 while each iteration makes 9)."""
    out = nl.ndarray((128, 128), nl.float32, buffer=nl.hbm)
    t = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    for i in nl.affine_range(16):
        banks = [nl.ndarray((128, 128), nl.float32, buffer=nl.psum) for _ in range(8)]
        nisa.nc_transpose(data=t, dst=banks[i % 8])
        o = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=o, src=banks[i % 8])
        nisa.dma_copy(dst=out, src=o)
    return out


def test_operands_must_be_tensors_of_a_fixed_iteration_or_from_before_the_loop(monkeypatch):
    _, fast = _both(monkeypatch, lambda: _run(rotating_banks, np.ones((128, 128), np.float32)))
    assert _stats(fast).loops == 0 and _stats(fast).declined == 1


@nki.jit
def indexed_tiles(x):
    """16 tiles loaded before the loop; the loop scales tile k twice and stores it (it
    makes two tiles an iteration while the tile it reads advances by one)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    tiles = []
    for k in range(16):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, k * 8:(k + 1) * 8])
        tiles.append(t)
    for k in nl.affine_range(16):
        o = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=o, data=tiles[k], op0=nl.multiply, operand0=2.0)
        o2 = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=o2, data=o, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out[:, k * 8:(k + 1) * 8], src=o2)
    return out


def test_a_loop_indexing_tiles_made_before_it_expands(monkeypatch):
    _, fast = _both(monkeypatch, lambda: _run(indexed_tiles, np.ones((128, 128), np.float32)))
    st = _stats(fast)
    # both loops append iterations 5-14: the loads (1 instruction each), then the scaled
    # stores (3 each)
    assert (st.loops, st.iterations, st.instructions) == (2, 20, 10 * 1 + 10 * 3)


def test_non_affine_operands_decline(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        n = x.shape[1] // 8
        for j in nl.affine_range(n):
            _scale(x, out, (j * j) % n)
        return out
    x = np.zeros((128, 8 * 20), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 0


def test_a_list_of_the_iterations_tiles_grows_by_copies_over_their_allocations(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        tiles = []
        for j in nl.affine_range(x.shape[1] // 8):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
            tiles.append(t[:, 0:4])
        for j, t in enumerate(tiles):
            nisa.dma_copy(dst=out[:, j * 8:j * 8 + 4], src=t)
        return out
    x = np.zeros((128, 8 * 20), np.float32)
    full, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 1
    stores = [i for i in fast.program if i.writes[0].space == "hbm"]
    assert len(stores) == 20
    # each store reads the tile its own iteration loaded
    loads = {i.writes[0].alloc: i.reads[0].offset for i in fast.program
             if i.reads[0].space == "hbm"}
    assert [loads[s.reads[0].alloc] for s in stores] == [8 * j for j in range(20)]


def test_a_list_growing_by_other_objects_declines(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        cols = []
        for j in nl.affine_range(x.shape[1] // 8):
            _scale(x, out, j)
            cols.append(j * 8)
        _scale(x, out, None, cols[-1])
        return out
    x = np.zeros((128, 8 * 20), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).declined == 1 and _stats(fast).loops == 0


def test_loops_that_are_not_a_for_statement_are_not_expanded(monkeypatch):
    """A comprehension (its result list is out of sight) and zip (it advances its
    iterators out of step with the body) run every iteration."""
    @nki.jit
    def kernel(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        n = x.shape[1] // 8
        tiles = [_load(x, j) for j in nl.affine_range(n)]
        for j, k in zip(nl.affine_range(n), nl.affine_range(n)):
            nisa.dma_copy(dst=out[:, k * 8:(k + 1) * 8], src=tiles[j])
        return out
    x = np.zeros((128, 8 * 16), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(kernel, x))
    assert _stats(fast).loops == 0 and len(fast.program) == 32


def test_state_the_record_does_not_hold_declines(monkeypatch):
    """Items replaced in a list, an object's counter, and a legacy nl.zeros block
    tensor filled on first touch (state of the run beside the record)."""
    class Cursor:
        def __init__(self):
            self.col = 0

    @nki.jit
    def replaced(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        tiles = [None] * (x.shape[1] // 8)
        for j in nl.affine_range(x.shape[1] // 8):
            tiles[j] = _load(x, j)
        for j, t in enumerate(tiles):
            nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=t)
        return out

    @nki.jit
    def counter(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        cur = Cursor()
        for _ in nl.affine_range(x.shape[1] // 8 - 1):
            cur.col += 8
        _scale(x, out, None, cur.col)
        return out

    def lazily_filled(a):
        out = lnl.ndarray((16, lnl.par_dim(128), 512), dtype=lnl.float32,
                          buffer=lnl.shared_hbm)
        acc = lnl.zeros((16, lnl.par_dim(128), 512), dtype=lnl.float32)
        for i in lnl.affine_range(16):
            acc[i] = lnl.add(acc[i], lnl.load(a[i]))  # block i's first touch fills it
        for i in range(16):
            lnl.store(out[i], value=acc[i])
        return out
    x = np.zeros((128, 8 * 16), np.float32)
    a = np.zeros((16, 128, 512), np.float32)
    for go in (lambda: _run(replaced, x), lambda: _run(counter, x),
               lambda: run_legacy(lazily_filled, (a,), {}, chip="trn2", numerics=False)[1]):
        _, fast = _both(monkeypatch, go)  # (the legacy kernel's store loop expands)
        assert _stats(fast).declined == 1


COUNTER = 0


def test_leaving_the_loop_or_state_outside_its_locals_is_not_expanded(monkeypatch):
    """A loop with `break` (leaving it in an iteration expansion stood in for could not be
    undone), and bodies that change a global, an object inside an object, or an
    iterator: all run every iteration."""
    class Row:
        def __init__(self):
            self.row = 0

    class Ctx:
        def __init__(self):
            self.cur = Row()

    @nki.jit
    def breaks(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for j in range(x.shape[1] // 8):
            if j >= 10:
                break
            _scale(x, out, j)
        return out

    @nki.jit
    def global_counter(x):
        global COUNTER
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        COUNTER = 0
        for _ in range(x.shape[1] // 8 - 1):
            COUNTER += 8
        _scale(x, out, None, COUNTER)
        return out

    @nki.jit
    def nested(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        ctx = Ctx()
        for _ in range(x.shape[1] // 8 - 1):
            ctx.cur.row += 8
        _scale(x, out, None, ctx.cur.row)
        return out

    @nki.jit
    def iterator(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        cols = iter(range(0, x.shape[1], 8))
        for _ in range(x.shape[1] // 8 - 1):
            next(cols)
        _scale(x, out, None, next(cols))
        return out
    x = np.zeros((128, 8 * 16), np.float32)
    for kernel in (breaks, global_counter, nested, iterator):
        _, fast = _both(monkeypatch, lambda: _run(kernel, x))
        assert _stats(fast).loops == 0


class Stop(Exception):
    pass


def test_a_loop_left_through_an_exception_runs_again_without_expansion(monkeypatch):
    """The exception of the last iteration may belong to an earlier one: the kernel
    runs again with every iteration, caught in the kernel or not."""
    @nki.jit
    def caught(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        try:
            for j in range(x.shape[1] // 8):
                if j >= 10:
                    raise Stop()
                _scale(x, out, j)
        except Stop:
            pass
        return out

    @nki.jit
    def uncaught(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        for j in range(x.shape[1] // 8):
            if j >= 10:
                raise Stop(f"stopped in iteration {j}")
            _scale(x, out, j)
        return out
    x = np.zeros((128, 8 * 16), np.float32)
    _, fast = _both(monkeypatch, lambda: _run(caught, x))
    assert len(fast.program) == 30 and not hasattr(fast, "expansion")  # the run again
    errors = _raised_both_ways(monkeypatch, lambda: _run(uncaught, x))
    assert [str(e) for e in errors] == ["stopped in iteration 10"] * 2


def test_state_of_slots_classes_and_partials_is_watched(monkeypatch):
    import functools

    class Slotted:
        __slots__ = ("col",)

    class Config:
        col = 0

    @nki.jit
    def slots(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        s = Slotted()
        s.col = 0
        for _ in range(x.shape[1] // 8 - 1):
            s.col += 8
        _scale(x, out, None, s.col)
        return out

    @nki.jit
    def class_attribute(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        Config.col = 0
        for _ in range(x.shape[1] // 8 - 1):
            Config.col += 8
        _scale(x, out, None, Config.col)
        return out

    @nki.jit
    def partial(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
        push = functools.partial(list.append, [])
        for j in range(x.shape[1] // 8 - 1):
            push(j)
        _scale(x, out, None, 8 * len(push.args[0]))
        return out
    x = np.zeros((128, 8 * 16), np.float32)
    for kernel in (slots, class_attribute, partial):
        _, fast = _both(monkeypatch, lambda: _run(kernel, x))
        assert _stats(fast).loops == 0


def test_lazily_filled_tiles_in_a_list_are_not_copied(monkeypatch):
    """Legacy nl.zeros tiles appended to a list: each keeps its own blocks to fill, which
    a copy would share with the tile it was copied from."""
    def kernel(a):
        out = lnl.ndarray((16, lnl.par_dim(128), 512), dtype=lnl.float32,
                          buffer=lnl.shared_hbm)
        tiles = []
        for i in lnl.affine_range(16):
            tiles.append(lnl.zeros((2, lnl.par_dim(128), 512), dtype=lnl.float32))
        for i in range(16):
            lnl.store(out[i], value=lnl.add(tiles[i][0], lnl.load(a[i])))
        return out
    a = np.zeros((16, 128, 512), np.float32)
    _, fast = _both(monkeypatch, lambda: run_legacy(kernel, (a,), {}, chip="trn2",
                                                    numerics=False)[1])


def _load(x, j):
    t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
    return t


def test_numerics_on_runs_every_iteration(monkeypatch):
    monkeypatch.setenv(expand.ENV, "1")
    x = np.arange(128 * 8 * 10, dtype=np.float32).reshape(128, -1)
    kernel = _columns(lambda x, out: [_scale(x, out, j)
                                      for j in nl.affine_range(x.shape[1] // 8)])
    got, run = trnsim.run_kernel(kernel, (x,), chip="trn2")
    assert not hasattr(run, "expansion")
    np.testing.assert_array_equal(got, 2 * x)


def test_an_error_in_the_last_iteration_points_at_its_line(monkeypatch):
    @nki.jit
    def kernel(x):
        out = nl.ndarray((128, 8 * 20), nl.float32, buffer=nl.hbm)
        for j in nl.affine_range(20):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])  # x is 4 columns short
            nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=t)
        return out
    x = np.zeros((128, 8 * 20 - 4), np.float32)
    expanded = _expanded_counts(monkeypatch)
    messages = [(type(e), str(e))
                for e in _raised_both_ways(monkeypatch, lambda: _run(kernel, x))]
    assert expanded == [20 - 6]  # iterations 5..18 expanded, then the last one failed
    assert messages[0] == messages[1]
    assert "x is 4 columns short" in messages[1][1]


def test_is_for_statement_sees_for_loops_only():
    seen = []

    class Probe:
        def __iter__(self):
            seen.append(expand.is_for_statement(sys._getframe(1)))
            return iter(())
    body = "\n".join(f"        v{i} = {i}" for i in range(200))  # jumps past 255 bytes
    ns = {"Probe": Probe}
    exec(f"def long_loop():\n    for _ in Probe():\n{body}\n", ns)
    for _ in Probe():
        pass
    ns["long_loop"]()
    list(zip(Probe(), Probe()))
    _ = [x for x in Probe()]
    assert seen == [True, True, False, False, False]


def test_loop_range_behaves_as_its_range():
    r = nl.affine_range(2, 11, 3)
    assert len(r) == 3 and r[1] == 5 and list(reversed(r)) == [8, 5, 2]
    assert 8 in r and 9 not in r and r == range(2, 11, 3)
    assert r.index(5) == 1 and r.count(8) == 1 and {r: 1}[range(2, 11, 3)] == 1
    assert isinstance(range(3), type(r)) and isinstance(r, type(r))  # range stands in
    assert list(r) == [2, 5, 8]  # outside a run: plain iteration
