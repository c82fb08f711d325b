"""The simulator's own memory: a timing-only run (numerics=False) keeps no data-sized
buffers (no HBM buffers or fills, no flags, no host copies, no arena bytes; outputs are
zero placeholders), initialized-flags are made only when something needs them, and
numerics runs still compute the same values. (Peak RSS per kernel: benchmarks/memory.py.)"""
import pathlib
import sys
import tracemalloc

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.legacy import jit as legacy_jit
from trnsim.machine.errors import UninitializedReadError
from trnsim.machine.memory import Storage

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from benchmarks.memory import lse_forward, lse_reference, random_bf16  # noqa: E402

MIB = 1 << 20
COLS = 64 * MIB // (128 * 4)  # 128 x COLS fp32 = 64 MiB
TILE = 8192


def _scale_through_scratch(x, seen):
    """x -> 2x stored in a kernel-declared HBM scratch tensor, returned with a small
    [128, 1] output (the column sums of the last tile). `seen` collects the kernel's HBM
    tensors for the test to inspect."""
    scratch = nl.ndarray(x.shape, nl.float32, buffer=nl.private_hbm, name="scratch")
    small = nl.ndarray((128, 1), nl.float32, buffer=nl.shared_hbm, name="small")
    seen += [x, scratch, small]
    for j in nl.affine_range(x.shape[1] // TILE):
        t = nl.ndarray((128, TILE), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * TILE:(j + 1) * TILE])
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=scratch[:, j * TILE:(j + 1) * TILE], src=t)
        s = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=s, op=nl.add, data=t, axis=1)
        nisa.dma_copy(dst=small, src=s)
    return scratch, small


def test_timing_only_run_has_no_buffers_flags_or_arena_bytes():
    x = np.ones((128, 4 * TILE), np.float32)
    seen = []
    (big, small), run = trnsim.run_kernel(
        lambda x: _scale_through_scratch(x, seen), (x,), chip="trn2", numerics=False)
    assert [t.name for t in seen] == ["x", "scratch", "small"]
    for t in seen:  # the input, a kernel-declared HBM tensor, an output
        assert t.storage.buf is None and t.storage.data is None
        assert t.storage.initialized is None
    for core in run.cores:
        for arena in (core.sbuf, core.psum):
            assert arena.data is None and arena.init is None and arena.nbytes == 0
            assert arena.width >= arena.capacity  # placement still works on widths
    assert run.hbm.placed_bytes == 2 * x.nbytes + 512  # addresses are still given out
    # outputs: zero placeholders of the right shapes and dtypes; the input is untouched
    assert big.shape == x.shape and big.dtype == np.float32 and not big.any()
    assert small.shape == (128, 1) and not small.any()
    assert (x == 1).all()
    # the record is complete: every HBM access has its address range
    hbm = [a for ins in run.program for a in ins.reads + ins.writes if a.space == "hbm"]
    assert len(hbm) == 2 * 4 + 4 and all(a.hi > a.lo for a in hbm)


def test_timing_only_run_of_64_mib_tensors_allocates_far_less_than_them():
    x = np.ones((128, COLS), np.float32)
    assert x.nbytes == 64 * MIB
    seen = []
    tracemalloc.start()
    try:
        _, run = trnsim.run_kernel(lambda x: _scale_through_scratch(x, seen)[1], (x,),
                                   chip="trn2", numerics=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(run.program) == 5 * (COLS // TILE)
    # 64 MiB input + 64 MiB scratch; before, the run allocated ~4x that (fill, flags,
    # arenas); now only the record, a few hundred KiB
    assert peak < 4 * MIB, peak


def test_timing_only_strided_input_is_not_copied():
    base = np.ones((128, 4 * 2 * TILE), np.float32)
    x = base[:, ::2]  # not contiguous: a numerics run copies it (and writes it back)
    assert not x.flags.c_contiguous
    tracemalloc.start()
    try:
        _, run = trnsim.run_kernel(lambda x: _scale_through_scratch(x, [])[1], (x,),
                                   chip="trn2", numerics=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 4


def test_timing_only_legacy_run_returns_placeholders():
    import trnsim.compat
    trnsim.compat.install()
    import neuronxcc.nki.language as lnl

    def copy_kernel(a):
        out = lnl.ndarray(a.shape, dtype=a.dtype, buffer=lnl.shared_hbm)
        t = lnl.load(a)
        lnl.store(out, value=t)
        return out

    def tile_kernel(a):  # returns an on-chip tile (the legacy simulator allowed it)
        return lnl.load(a)

    a = np.full((128, 512), 3, ml_dtypes.bfloat16)
    for kernel in (copy_kernel, tile_kernel):
        out, run = legacy_jit.run_legacy(kernel, (a,), chip="trn1", numerics=False)
        assert out.shape == a.shape and out.dtype == a.dtype and not out.astype(bool).any()
        assert all(c.sbuf.data is None for c in run.cores)
        out, _ = legacy_jit.run_legacy(kernel, (a,), chip="trn1")
        assert (out == a).all()  # with numerics the values are there


def test_timing_only_torch_input_is_not_converted():
    torch = pytest.importorskip("torch")
    a = torch.ones((128, 512), dtype=torch.bfloat16)

    def kernel(a):
        out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)
        nisa.dma_copy(dst=out, src=t)
        return out

    out, _ = trnsim.run_kernel(kernel, (a,), numerics=False)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    assert tuple(out.shape) == (128, 512) and not out.any()
    out, _ = trnsim.run_kernel(kernel, (a,))
    assert torch.equal(out, a)


# -- numerics runs --------------------------------------------------------------------
def test_numerics_results_unchanged():
    x = (np.arange(128 * 2 * TILE, dtype=np.float32).reshape(128, -1) % 97) / 7
    seen = []
    (big, small), _ = trnsim.run_kernel(lambda x: _scale_through_scratch(x, seen), (x,),
                                        chip="trn2")
    np.testing.assert_array_equal(big, 2 * x)
    last = (2 * x[:, -TILE:]).astype(np.float64).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(small, last, rtol=1e-5)
    logits = random_bf16((256, 2048), seed=3)
    out, _ = trnsim.run_kernel(lse_forward, (logits,), {"chunk": 512}, chip="trn2")
    np.testing.assert_allclose(out, lse_reference(logits), rtol=1e-5, atol=1e-5)


def test_initialized_flags_are_made_only_when_needed():
    x = np.ones((128, 2 * TILE), np.float32)
    seen = []
    trnsim.run_kernel(lambda x: _scale_through_scratch(x, seen), (x,), chip="trn2")
    x_st, scratch_st, _ = (t.storage for t in seen)
    assert x_st.buf is not None and x_st.init is None  # not strict: never made
    # made on demand: an input counts as written everywhere, a kernel tensor nowhere
    assert x_st.initialized.all() and x_st.init.size == x.nbytes
    fresh = Storage("hbm", "fresh", 0, 0, 16, buf=np.zeros(16, np.uint8))
    assert fresh.init is None and not fresh.initialized.any()


@pytest.mark.filterwarnings("ignore::trnsim.UninitializedReadWarning")  # reads on purpose
def test_strict_mode_still_checks_hbm_flags():
    def reads_unwritten(x):
        scratch = nl.ndarray((128, 64), nl.float32, buffer=nl.private_hbm,
                             name="never_written_hbm")
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x)  # an input: written from the start
        nisa.dma_copy(dst=scratch[:, 0:32], src=t[:, 0:32])
        nisa.dma_copy(dst=t, src=scratch)  # half of it was never written
        return x

    x = np.ones((128, 64), np.float32)
    with pytest.raises(UninitializedReadError, match="never_written_hbm"):
        trnsim.run_kernel(reads_unwritten, (x,), strict=True)
    trnsim.run_kernel(reads_unwritten, (x,))  # not strict: no check, no error


def test_numerics_output_hands_over_its_buffer_once():
    made = []

    def kernel(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        made.append(out)
        t = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x)
        nisa.dma_copy(dst=out, src=t)
        return out, out, x, out[:, 0:8]

    x = np.arange(128 * 64, dtype=np.float32).reshape(128, 64)
    (a, b, c, d), _ = trnsim.run_kernel(kernel, (x,))
    assert np.shares_memory(a, made[0].storage.buf)
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, x)
    np.testing.assert_array_equal(c, x)
    np.testing.assert_array_equal(d, x[:, 0:8])
    # the first return of `out` is its buffer (no copy); every other output is a copy
    assert all(not np.shares_memory(a, o) for o in (b, c, d, x))
    a[0, 0] = -1
    assert b[0, 0] == d[0, 0] == x[0, 0] == 0
