"""LNC=2: two cooperative cores (program_id 0 and 1), core_barrier, sendrecv, deadlock
detection, errors on trn1 / LNC=1; nki.collectives placeholders; examples/lnc2_add.py."""
from __future__ import annotations


import numpy as np
import pytest

import trnsim
import trnsim.nki.collectives as ncc
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from trnsim.machine.runtime import CoreDeadlockError
from trnsim.examples import load_example


def run(kernel, *args, lnc=2, chip="trn2", numerics=True):
    return trnsim.run_kernel(kernel, args, lnc=lnc, chip=chip, numerics=numerics)


def tile(shape, dtype=nl.float32):
    return nl.ndarray(shape, dtype, buffer=nl.sbuf)


# -- program_id work split -------------------------------------------------------------
def k_half_rows(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    n = a.shape[0] // nl.num_programs()
    r0 = nl.program_id() * n
    t = tile((n, a.shape[1]))
    nisa.dma_copy(dst=t, src=a[r0:r0 + n, :])
    nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=float(nl.program_id() + 2))
    nisa.dma_copy(dst=out[r0:r0 + n, :], src=t)
    return out


def test_each_core_handles_half_the_rows():
    a = np.arange(16 * 4, dtype=np.float32).reshape(16, 4)
    out, r = run(k_half_rows, a)
    np.testing.assert_array_equal(out[:8], a[:8] * 2)       # core 0 multiplies by 2
    np.testing.assert_array_equal(out[8:], a[8:] * 3)       # core 1 by 3
    assert r.program.lnc == 2
    assert sorted({i.core for i in r.program}) == [0, 1]
    stores = [i for i in r.program if i.opcode == "dma_copy" and i.writes[0].space == "hbm"]
    spans = {i.core: (i.writes[0].lo - stores[0].writes[0].lo, i.writes[0].hi - i.writes[0].lo)
             for i in stores}
    assert spans == {0: (0, 8 * 4 * 4), 1: (8 * 4 * 4, 8 * 4 * 4)}
    same, _ = run(k_half_rows, a, lnc=1)                    # LNC=1: one core, all rows x2
    np.testing.assert_array_equal(same, a * 2)


def test_simulate_kernel_bracket_lnc():
    a = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    out = nki.simulate(nki.jit(k_half_rows)[2])(a)
    np.testing.assert_array_equal(out, np.concatenate([a[:4] * 2, a[4:] * 3]))


# -- core_barrier ---------------------------------------------------------------------
def k_barrier_handoff(a, writer):
    """Core `writer` writes its rows of a shared tensor; after the barrier the other
    core copies those rows to the output."""
    shared = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    me = nl.program_id()
    t = tile(a.shape)
    if me == writer:
        nisa.dma_copy(dst=t, src=a)
        nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=100.0)
        nisa.dma_copy(dst=shared, src=t)
    nisa.core_barrier(shared, (0, 1))
    if me != writer:
        nisa.dma_copy(dst=t, src=shared)
        nisa.dma_copy(dst=out, src=t)
    return out


@pytest.mark.parametrize("writer", [0, 1])
def test_core_barrier_orders_shared_hbm(writer):
    a = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    out, r = run(lambda x: k_barrier_handoff(x, writer), a)
    np.testing.assert_array_equal(out, a + 100)
    bars = [i for i in r.program if i.opcode == "core_barrier"]
    assert sorted(i.core for i in bars) == [0, 1]
    assert all(i.engine == "gpsimd" and i.attrs["cores"] == (0, 1)
               and i.attrs["barrier_seq"] == 0 for i in bars)
    assert [acc.role for acc in bars[0].reads] == ["data"] and not bars[0].writes
    # the reader's load comes after the writer's store in the record
    store = next(i.index for i in r.program if i.core == writer and i.opcode == "dma_copy"
                 and i.writes[0].space == "hbm")
    load = next(i.index for i in r.program if i.core != writer and i.opcode == "dma_copy")
    assert store < load


def test_core_barrier_engine_and_sequence_numbers():
    def k(a):
        for _ in range(3):
            nisa.core_barrier(a, [0, 1], engine=nisa.engine.sync)
        return a
    _, r = run(k, np.zeros((2, 2), np.float32))
    bars = [i for i in r.program if i.opcode == "core_barrier"]
    assert {i.engine for i in bars} == {"sync"}
    for core in (0, 1):
        assert [i.attrs["barrier_seq"] for i in bars if i.core == core] == [0, 1, 2]


# -- sendrecv ----------------------------------------------------------------------------
def test_core1_reads_what_core0_sent_after_barrier():
    a = np.arange(8 * 5, dtype=np.float32).reshape(8, 5)

    def k(x):
        out = nl.ndarray(x.shape, x.dtype, buffer=nl.shared_hbm)
        me = nl.program_id()
        mine, recv = tile(x.shape), tile(x.shape)
        nisa.dma_copy(dst=mine, src=x)
        nisa.tensor_scalar(dst=mine, data=mine, op0=nl.multiply, operand0=float(10 ** me))
        nisa.core_barrier(out, (0, 1))
        nisa.sendrecv(src=mine, dst=recv, send_to_rank=1 - me, recv_from_rank=1 - me,
                      pipe_id=0)
        if me == 1:
            nisa.dma_copy(dst=out, src=recv)
        return out
    out, r = run(k, a)
    np.testing.assert_array_equal(out, a * 1)              # core 0's tile (x * 10**0)
    sr = {i.core: i for i in r.program if i.opcode == "sendrecv"}
    assert sr[1].attrs["send_to_rank"] == 0 and sr[1].attrs["recv_from_rank"] == 0
    assert sr[0].attrs["pipe_id"] == 0 and sr[0].engine == "dma" and sr[0].queue == "qSyncIO"
    assert (sr[0].attrs["send_seq"], sr[0].attrs["recv_seq"]) == (0, 0)
    assert [x.role for x in sr[0].reads] == ["src"] and [x.role for x in sr[0].writes] == ["dst"]


def test_sendrecv_swap_in_place_and_pipes():
    a = np.arange(2 * 4, dtype=np.float32).reshape(2, 4)

    def k(x):
        out = nl.ndarray((4, 4), x.dtype, buffer=nl.shared_hbm)
        me = nl.program_id()
        t, u = tile((1, 4)), tile((1, 4))
        nisa.dma_copy(dst=t, src=x[me:me + 1, :])
        nisa.tensor_copy(dst=u, src=t)
        nisa.sendrecv(src=t, dst=t, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=3)
        nisa.sendrecv(src=u, dst=u, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=1,
                      dma_engine=nisa.dma_engine.gpsimd_dma)
        nisa.dma_copy(dst=out[me:me + 1, :], src=t)
        nisa.dma_copy(dst=out[2 + me:3 + me, :], src=u)
        return out
    out, r = run(k, a)
    np.testing.assert_array_equal(out, np.concatenate([a[::-1], a[::-1]]))
    g = [i for i in r.program if i.opcode == "sendrecv" and i.attrs["pipe_id"] == 1]
    assert {i.queue for i in g} == {"qGpSimdDynamic"}
    assert {i.attrs["dma_engine"] for i in g} == {"gpsimd_dma"}


def test_sendrecv_checks():
    def k(shape, **kw):
        def f():
            me = nl.program_id()
            t = tile(shape)
            nisa.memset(dst=t, value=0.0)
            args = dict(src=t, dst=t, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=0)
            args.update(kw)
            nisa.sendrecv(**args)
        return f
    with pytest.raises(NkiValidationError, match="at most 1024 bytes"):
        run(k((2, 257), dma_engine=nisa.dma_engine.gpsimd_dma))
    with pytest.raises(NkiValidationError, match="is this core"):
        run(k((2, 4), send_to_rank=0, recv_from_rank=0))
    with pytest.raises(NkiValidationError, match="must be 0 or 1"):
        run(k((2, 4), send_to_rank=2))
    with pytest.raises(NkiValidationError, match="sbuf"):
        def hbm_src():
            h = nl.ndarray((2, 4), nl.float32, buffer=nl.shared_hbm)
            nisa.sendrecv(src=h, dst=tile((2, 4)), send_to_rank=1, recv_from_rank=1, pipe_id=0)
        run(hbm_src)


def test_sendrecv_size_mismatch_between_cores():
    def k():
        me = nl.program_id()
        t = tile((2, 4 + me))
        nisa.memset(dst=t, value=1.0)
        nisa.sendrecv(src=t, dst=t, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=0)
    with pytest.raises(NkiValidationError, match="does not fit dst"):
        run(k)


# -- deadlocks and errors ----------------------------------------------------------------
def test_deadlock_barrier_on_one_core_only():
    def k(a):
        if nl.program_id() == 0:
            nisa.core_barrier(a, (0, 1))
        return a
    with pytest.raises(CoreDeadlockError) as e:
        run(k, np.zeros((2, 2), np.float32))
    msg = str(e.value)
    assert "core 0 waits in core_barrier(cores=(0, 1)) #0" in msg
    assert "core 1 has finished the kernel" in msg
    assert "test_lnc.py" in msg


def test_deadlock_mismatched_pipes():
    def k():
        me = nl.program_id()
        t = tile((1, 2))
        nisa.memset(dst=t, value=0.0)
        nisa.sendrecv(src=t, dst=t, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=me)
    with pytest.raises(CoreDeadlockError) as e:
        run(k)
    msg = str(e.value)
    assert "core 0 waits in sendrecv(recv_from_rank=1, pipe_id=0)" in msg
    assert "core 1 waits in sendrecv(recv_from_rank=0, pipe_id=1)" in msg


def test_error_on_one_core_is_reraised_not_deadlock():
    def k(a):
        if nl.program_id() == 1:
            raise ValueError("kernel bug on core 1")
        nisa.core_barrier(a, (0, 1))
        return a
    with pytest.raises(ValueError, match="kernel bug on core 1"):
        run(k, np.zeros((2, 2), np.float32))


def test_trn1_is_rejected():
    a = np.zeros((2, 2), np.float32)
    with pytest.raises(UnsupportedError, match="NeuronCore-v3"):
        run(lambda x: nisa.core_barrier(x, (0, 1)), a, chip="trn1")

    def sr():
        t = tile((1, 2))
        nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)
    with pytest.raises(UnsupportedError, match="NeuronCore-v3"):
        run(sr, chip="trn1")


def test_lnc1_peer_does_not_exist():
    a = np.zeros((2, 2), np.float32)
    with pytest.raises(NkiValidationError, match="core 1 does not exist.*LNC=1"):
        run(lambda x: nisa.core_barrier(x, (0, 1)), a, lnc=1)

    def sr():
        t = tile((1, 2))
        nisa.sendrecv(src=t, dst=t, send_to_rank=1, recv_from_rank=1, pipe_id=0)
    with pytest.raises(NkiValidationError, match="LNC=1.*kernel\\[2\\]"):
        run(sr, lnc=1)
    # A barrier over the current core alone (as NKI-library kernels issue with one
    # shard: cores=(0)) passes straight through.
    _, r = run(lambda x: nisa.core_barrier(x, (0)), a, lnc=1)
    assert [i.attrs["cores"] for i in r.program if i.opcode == "core_barrier"] == [(0,)]


def test_numerics_off_lnc2_record():
    def k(a):
        me = nl.program_id()
        t = tile((2, 2))
        nisa.dma_copy(dst=t, src=a)
        nisa.core_barrier(a, (0, 1))
        nisa.sendrecv(src=t, dst=t, send_to_rank=1 - me, recv_from_rank=1 - me, pipe_id=0)
        return a
    _, r = run(k, np.zeros((2, 2), np.float32), numerics=False)
    ops = sorted((i.core, i.opcode) for i in r.program)
    assert ops == [(c, op) for c in (0, 1) for op in ("core_barrier", "dma_copy", "sendrecv")]


# -- nki.collectives -----------------------------------------------------------------------
def test_rank_id_of_a_single_rank_run_is_zero():
    def k(a):
        r = ncc.rank_id()
        out = nl.ndarray((1, 3), a.dtype, buffer=nl.shared_hbm)
        t = tile((1, 3))
        nisa.dma_copy(dst=t, src=a.ap([[3, 1], [1, 3]], scalar_offset=r, indirect_dim=0))
        nisa.dma_copy(dst=out, src=t)
        return out
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    out, r = run(k, a, lnc=1)
    np.testing.assert_array_equal(out, a[0:1])
    assert r.program.instructions[0].opcode == "rank_id"


# -- examples/lnc2_add.py ---------------------------------------------------------------------
def _example():
    return load_example("lnc2_add")


@pytest.mark.parametrize("lnc,rows", [(2, 300), (1, 130), (2, 7)])
def test_example_lnc2_add(lnc, rows):
    ex = _example()
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((rows, 48)).astype(np.float32)
    b = rng.standard_normal((rows, 48)).astype(np.float32)
    sim = nki.simulate(ex.lnc2_add_kernel[lnc])
    c = sim(a, b)
    np.testing.assert_array_equal(c, (a.astype(np.float32) + b).astype(np.float32))
    cores = {i.core for i in sim.last_run.program if i.opcode == "tensor_tensor"}
    assert cores == set(range(lnc))
    assert sum(i.opcode == "core_barrier" for i in sim.last_run.program) == (2 if lnc == 2 else 0)


def test_example_main(capsys):
    assert _example().main("trn2") == 0.0
    assert "on 2 cores" in capsys.readouterr().out
