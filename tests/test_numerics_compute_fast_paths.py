"""The shortcuts of the numerics compute paths against their general routes: nc_matmul's
checks kept per (shapes, dtypes, settings) (isa/matmul.py `_CHECKED`), the accumulator
fold started from the registers' own (P,) values (isa/accumulate.py `fold`), and the
per-row scale and bias of the compiled exp (isa/exp_fp32.py `_per_row`)."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import accumulate as acc, exp_fp32, matmul
from trnsim.machine import compiled
from trnsim.machine.errors import NkiValidationError


def _matmul_twice(dst_cols, dst_dtype=nl.float32, moving_dtype=nl.float32, first=True):
    """Two matmuls of the same shapes and dtypes (the first left out unless `first`):
    dst[:, 0:512], then dst[:, dst_cols]."""
    def kernel():
        s = nl.ndarray((128, 8), dtype=nl.float32, buffer=nl.sbuf)
        m = nl.ndarray((128, 512), dtype=moving_dtype, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1)
        nisa.memset(dst=m, value=2)
        d = nl.ndarray((8, 1024), dtype=dst_dtype, buffer=nl.psum)  # two banks
        if first:
            nisa.nc_matmul(dst=d[:, 0:512], stationary=s, moving=m)
        nisa.nc_matmul(dst=d[:, dst_cols], stationary=s, moving=m)
        return None
    return kernel


def _error(kernel, chip="trn2"):
    with pytest.raises(NkiValidationError) as e:
        trnsim.run_kernel(kernel, (), chip=chip)
    return str(e.value)


def test_kept_checks_give_the_attributes_of_the_full_checks():
    matmul._CHECKED.clear()
    _, run = trnsim.run_kernel(_matmul_twice(slice(512, 1024)), (), chip="trn2")
    first, second = [i.attrs for i in run.program if i.opcode == "nc_matmul"]
    assert list(first) == list(second)  # (the same keys in the same order)
    assert first == second
    assert first["M"] == 8 and first["N"] == 512 and first["K"] == 128


def test_a_kept_check_still_rejects_a_dst_across_a_bank():
    matmul._CHECKED.clear()
    hit = _error(_matmul_twice(slice(256, 768)))  # shapes checked by the first matmul
    matmul._CHECKED.clear()
    assert "bank" in hit
    assert hit == _error(_matmul_twice(slice(256, 768), first=False))


def test_failed_checks_are_not_kept():
    bad = _matmul_twice(slice(512, 1024), dst_dtype=nl.int32)
    matmul._CHECKED.clear()
    assert _error(bad) == _error(bad)
    assert not matmul._CHECKED


def test_kept_checks_are_per_chip():
    matmul._CHECKED.clear()
    bf16_dst = _matmul_twice(slice(512, 1024), dst_dtype=nl.bfloat16,
                             moving_dtype=nl.bfloat16)
    with pytest.raises(NkiValidationError):  # fp32 stationary, bf16 moving: no mix
        trnsim.run_kernel(bf16_dst, (), chip="trn3")
    ok = _matmul_twice(slice(512, 1024))
    trnsim.run_kernel(ok, (), chip="trn3")
    trnsim.run_kernel(ok, (), chip="trn2")
    assert len(matmul._CHECKED) == 2


@pytest.mark.parametrize("name", ["add", "multiply", "subtract", "maximum", "abs_max"])
def test_fold_from_lane_values_equals_the_broadcast_start(name):
    rng = np.random.default_rng(1)
    v = rng.standard_normal((16, 40)).astype(np.float32)
    v[3, 5], v[4, :] = np.nan, -0.0
    v[5, 7] = np.inf
    start = rng.standard_normal(16).astype(np.float32)
    start[4] = -0.0
    got = acc.fold(name, v, start)  # a (P,) fp32 array: used as it is
    want = acc.fold(name, v, start.astype(np.float64).reshape(16, 1))  # broadcast route
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.skipif(not compiled.numba_available(), reason="needs numba")
@pytest.mark.parametrize("form", ["column", "constant"])
def test_exp_rows_scale_and_bias_forms_agree(monkeypatch, form):
    monkeypatch.setenv(compiled.ENV, "1")
    rng = np.random.default_rng(2)
    x = (4 * rng.standard_normal((8, 64))).astype(np.float32)
    x[0, :4] = [-0.0, np.inf, -np.inf, 88.7]
    col = rng.standard_normal((8, 1)).astype(np.float32)
    scale, bias = ((col, -col) if form == "column"
                   else (np.float32(0.75), np.float32(-1.5)))
    general = (col.astype(np.float64).tolist(), (-col).astype(np.float64).tolist()) \
        if form == "column" else (np.array([0.75]), np.array([-1.5]))
    outs = []
    for s, b in ((scale, bias), general):
        out = np.empty_like(x)
        assert exp_fp32.applies(x, out, s, b)
        redo = exp_fp32.exp_rows(x, out, s, b)
        outs.append((out.view(np.uint32).copy(), list(redo)))
    assert outs[0][1] == outs[1][1]
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
