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
    ((3, 5), np.float32), ((0, 7), np.int8), ((), np.float64), ((4, 1024), np.uint16)])
def test_placeholder_is_a_writable_zero_array(shape, dtype):
    a, b = placeholder(shape, dtype), np.zeros(shape, dtype)
    assert (a.shape, a.dtype, a.tobytes()) == (b.shape, b.dtype, b.tobytes())
    assert a.flags.c_contiguous and a.flags.writeable
    a[...] = 1
    assert (a == 1).all()
