"""Lowering of nl.* calls to the instructions the compiler emits (both API generations):
broadcast_to across partitions stays on chip (Tensor Engine matmul with a ones vector
for float dtypes, Vector Engine partition shuffle for integers), and nl.matmul emits
the operand transpose, the matmul into PSUM and the PSUM -> SBUF copy, each on its
engine. Values are checked against NumPy; instruction sequences against the ones
written out in the functions' docstrings (nki/language/layout.py)."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.legacy import jit as lj
from trnsim.legacy import language as lnl
from trnsim.machine.runtime import active_run

BF16 = ml_dtypes.bfloat16
RNG = np.random.default_rng(77)


def run(fn, *arrays, chip=None):
    """fn(*sbuf tiles) in a current-API kernel; (result, instructions fn issued)."""
    info = {}

    def kernel(*args):
        tiles = []
        for a in args:
            t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=a)
            tiles.append(t)
        prog = active_run().program
        start = len(prog)
        res = fn(*tiles)
        info["ins"] = list(prog.instructions[start:])
        src = res
        if res.space == "psum":
            src = nl.ndarray(res.shape, res.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(dst=src, src=res)
        o = nl.ndarray(res.shape, res.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=src)
        return o

    out, _ = trnsim.run_kernel(kernel, arrays, chip=chip)
    return out, info["ins"]


def default_engine(i):
    """The engine the lowering recorded; the compiler model may move an unpinned
    instruction to another of its candidates (attrs["engines"], default first)."""
    return i.attrs.get("engines", (i.engine,))[0]


def ops(ins):
    return [(default_engine(i), i.opcode) for i in ins]


def no_hbm(ins):
    return not any(a.space == "hbm" for i in ins for a in i.reads + i.writes)


# -- broadcast_to ---------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_partition_broadcast_is_a_ones_matmul_on_chip(chip):
    row = RNG.standard_normal((1, 16)).astype(np.float32)
    row[0, :3] = [np.inf, -np.inf, 1e-40]  # inf and a subnormal go through x * 1 exactly
    out, ins = run(lambda x: nl.broadcast_to(x, (128, 16)), row, chip=chip)
    np.testing.assert_array_equal(out, np.broadcast_to(row, (128, 16)))
    assert ops(ins) == [("vector", "memset"), ("tensor", "nc_matmul"),
                        ("vector", "tensor_copy")]
    assert no_hbm(ins)  # no invented DMA traffic, nothing to count as a spill
    mm = ins[1]
    assert (mm.attrs["K"], mm.attrs["M"], mm.attrs["N"]) == (1, 128, 16)
    assert mm.attrs["is_stationary_onezero"]


def test_partition_broadcast_chunks_by_psum_bank_and_casts_on_eviction():
    row = RNG.standard_normal((1, 1300)).astype(BF16)
    out, ins = run(lambda x: nl.broadcast_to(x, (64, 1300), dtype=nl.float32), row)
    np.testing.assert_array_equal(out, np.broadcast_to(row.astype(np.float32), (64, 1300)))
    mms = [i for i in ins if i.opcode == "nc_matmul"]
    assert [m.attrs["N"] for m in mms] == [512, 512, 276]  # one PSUM bank (512 fp32) each
    assert [i.opcode for i in ins].count("tensor_copy") == 3
    assert all(m.attrs["M"] == 64 for m in mms) and no_hbm(ins)


def test_partition_and_free_broadcast_together():
    a = RNG.standard_normal((1, 1, 8)).astype(np.float32)
    out, ins = run(lambda x: nl.broadcast_to(x, (32, 5, 8)), a)
    np.testing.assert_array_equal(out, np.broadcast_to(a, (32, 5, 8)))
    # the matmul fills [32, 8]; a copy from its stride-0 view fills [32, 5, 8]
    assert ops(ins) == [("vector", "memset"), ("tensor", "nc_matmul"),
                        ("vector", "tensor_copy"), ("vector", "tensor_copy")]
    assert no_hbm(ins)


def test_integer_partition_broadcast_is_a_vector_shuffle():
    big = np.array([[2 ** 31 - 1, -(2 ** 31), 16777217, 3]], dtype=np.int32)  # > 2^24
    out, ins = run(lambda x: nl.broadcast_to(x, (100, 4)), big)
    np.testing.assert_array_equal(out, np.broadcast_to(big, (100, 4)))
    assert ops(ins) == [("vector", "nc_stream_shuffle")] * 4  # 32-partition groups
    assert no_hbm(ins)


def test_free_only_broadcast_is_one_copy():
    col = RNG.standard_normal((128, 1)).astype(np.float32)
    out, ins = run(lambda x: nl.broadcast_to(x, (128, 32)), col)
    np.testing.assert_array_equal(out, np.broadcast_to(col, (128, 32)))
    assert ops(ins) == [("vector", "tensor_copy")]


def test_legacy_broadcast_and_one_partition_binary_operand_stay_on_chip():
    row = RNG.standard_normal((1, 32)).astype(np.float32)
    a = RNG.standard_normal((128, 32)).astype(np.float32)

    def k(a, row):
        o1 = lnl.ndarray((128, 32), lnl.float32, buffer=lnl.shared_hbm)
        o2 = lnl.ndarray((128, 32), lnl.float32, buffer=lnl.shared_hbm)
        r_ = lnl.load(row)
        lnl.store(o1, lnl.broadcast_to(r_, shape=(128, 32)))
        lnl.store(o2, lnl.add(lnl.load(a), r_))  # [1, F] operand broadcast across partitions
        return o1, o2

    (o1, o2), r = lj.run_legacy(k, (a, row))
    np.testing.assert_array_equal(o1, np.broadcast_to(row, (128, 32)))
    np.testing.assert_array_equal(o2, a + row)
    dmas = [i for i in r.program if i.opcode.startswith("dma")]
    assert len(dmas) == 4  # two loads, two stores: no HBM round trip
    assert [i.opcode for i in r.program].count("nc_matmul") == 2
    assert r.program.memory.spills == []


# -- matmul ---------------------------------------------------------------------------
MATMUL_SEQ = [("tensor", "nc_transpose"), ("vector", "tensor_copy"),  # x.T to SBUF
              ("tensor", "nc_matmul")]


def test_matmul_lowering_current_api():
    x = RNG.standard_normal((64, 96)).astype(np.float32)  # [M, K]
    y = RNG.standard_normal((96, 200)).astype(np.float32)  # [K, N]
    out, ins = run(nl.matmul, x, y)
    ref = (x.astype(np.float64) @ y.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(out, ref)
    assert ops(ins) == MATMUL_SEQ  # result in PSUM: the caller evicts it
    tr, _, mm = ins
    assert tr.attrs["is_transpose"] and (tr.attrs["K"], tr.attrs["M"]) == (64, 96)
    assert (mm.attrs["K"], mm.attrs["M"], mm.attrs["N"]) == (96, 64, 200)
    assert tr.writes[0].space == "psum" and ins[1].writes[0].space == "sbuf"
    out, ins = run(lambda a, b: nl.matmul(a, b, transpose_x=True), x.T.copy(), y)
    np.testing.assert_array_equal(out, ref)
    assert ops(ins) == [("tensor", "nc_matmul")]


def test_matmul_lowering_legacy_into_sbuf():
    x = RNG.standard_normal((64, 96)).astype(np.float32)
    y = RNG.standard_normal((96, 200)).astype(np.float32)

    def k(x, y):
        o = lnl.ndarray((64, 200), lnl.float32, buffer=lnl.shared_hbm)
        res = lnl.ndarray((64, 200), lnl.float32, buffer=lnl.sbuf)
        res[...] = lnl.matmul(lnl.load(x), lnl.load(y))
        lnl.store(o, res)
        return o

    o, r = lj.run_legacy(k, (x, y))
    np.testing.assert_array_equal(o, (x.astype(np.float64) @ y.astype(np.float64))
                                  .astype(np.float32))
    seq = [(default_engine(i), i.opcode) for i in r.program
           if not i.opcode.startswith("dma")]
    assert seq == MATMUL_SEQ + [("vector", "tensor_copy")]  # PSUM -> SBUF eviction
