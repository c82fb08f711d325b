"""The record's set-up around loop expansion: whether a run expands (read once a run)
and the zero outputs of a timing-only run (trnsim/machine/launch.py placeholder)."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import expand
from trnsim.machine.launch import placeholder
from trnsim.machine.runtime import Options, Run


@nki.jit
def _copy_rows(a):
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.hbm)
    for i in nl.affine_range(a.shape[0] // 128):
        t = nl.ndarray((128, a.shape[1]), dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a[i * 128:(i + 1) * 128, :])
        nisa.dma_copy(dst=out[i * 128:(i + 1) * 128, :], src=t)
    return out


@pytest.mark.parametrize("numerics, flag, expected", [
    (False, "1", True), (False, "0", False), (True, "1", False)])
def test_enabled_follows_options_and_environment(monkeypatch, numerics, flag, expected):
    monkeypatch.setenv(expand.ENV, flag)
    run = Run("trn2", options=Options(numerics))
    assert expand.enabled(run) is expected
    monkeypatch.setenv(expand.ENV, "0" if expected else "1")  # (read once a run)
    assert expand.enabled(run) is expected
    assert expand.enabled(Run("trn2", options=Options(numerics))) is (
        not numerics and not expected)


@pytest.mark.parametrize("flag", ["0", "1"])
def test_timing_only_run_expands_as_the_environment_says(monkeypatch, flag):
    monkeypatch.setenv(expand.ENV, flag)
    out, run = trnsim.run_kernel(_copy_rows, (np.ones((128 * 16, 64), np.float32),),
                                 chip="trn2", numerics=False)
    assert len(run.program.instructions) == 32
    stats = run.__dict__.get("expansion")
    assert (stats is not None and stats.loops == 1) is (flag == "1")
    assert isinstance(out, np.ndarray) and out.shape == (128 * 16, 64)
    assert out.dtype == np.float32 and not out.any()


@pytest.mark.parametrize("shape, dtype", [
    ((3, 5), np.float32), ((0, 7), np.int8), ((), np.float64), ((4, 1024), np.uint16),
    ((1024, 256), np.float32), ((1024, 1024), np.float32)])  # (the last two mapped)
def test_placeholder_is_a_writable_zero_array(shape, dtype):
    a, b = placeholder(shape, dtype), np.zeros(shape, dtype)
    assert (a.shape, a.dtype, a.tobytes()) == (b.shape, b.dtype, b.tobytes())
    assert a.flags.c_contiguous and a.flags.writeable
    a[...] = 1
    assert (a == 1).all()


@nki.jit
def _blocked_matmul(lhsT, rhs):
    K, M = lhsT.shape
    _, N = rhs.shape
    out = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.hbm)
    for m in nl.affine_range(M // 128):
        for n in nl.affine_range(N // 512):
            acc = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // 128):
                a = nl.ndarray((128, 128), dtype=lhsT.dtype, buffer=nl.sbuf)
                b = nl.ndarray((128, 512), dtype=rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, m * 128:(m + 1) * 128])
                nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, n * 512:(n + 1) * 512])
                nisa.nc_matmul(dst=acc, stationary=a, moving=b)
            t = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=t, src=acc)
            nisa.dma_copy(dst=out[m * 128:(m + 1) * 128, n * 512:(n + 1) * 512], src=t)
    return out


def test_plan_operand_ids_are_the_template_operands_allocation_columns(monkeypatch):
    """Plan._made finds each template operand's allocation column from the structure's
    operands: the same as counting the template instructions' reads and writes."""
    from trnsim.machine.expand_parts import operand_columns
    from trnsim.machine.expand_plan import Plan
    made = Plan.__dict__["_made"].__func__
    checked = []

    def checking(cls, run, marks, rows, period, drift, key, sizes, names, list_names,
                 rebound, layout=None):
        plan = made(cls, run, marks, rows, period, drift, key, sizes, names, list_names,
                    rebound, layout)
        if plan is not None and layout is None:
            start, stop = plan.template[:2]
            n_ops = [len(t.reads) + len(t.writes)
                     for t in run.program.instructions[start:stop]]
            assert plan.operand_ids.tolist() == operand_columns(sizes, n_ops)[:, 5].tolist()
            checked.append(stop - start)
        return plan

    monkeypatch.setattr(Plan, "_made", classmethod(checking))
    monkeypatch.setenv(expand.ENV, "1")
    trnsim.run_kernel(_blocked_matmul, (np.zeros((128 * 16, 128 * 8), np.float32),
                                        np.zeros((128 * 16, 512 * 8), np.float32)),
                      chip="trn2", numerics=False)
    assert len(checked) >= 2 and max(checked) > 3  # (an inner loop's and an outer one's)
