"""The compiled lane fold (isa/lane_fold.py) against the NumPy route it stands in
for (isa/accumulate.py's sequential_fold with TRNSIM_COMPILED=0), bit for bit, and the
softmax example (its fused row sum) both ways."""
import os
import subprocess
import sys

import numpy as np
import pytest

import trnsim
from trnsim.examples import load_example
from trnsim.isa.accumulate import sequential_fold
from trnsim.machine import compiled
from trnsim.isa import lane_fold

pytestmark = pytest.mark.skipif(not compiled.numba_available(), reason="needs numba")


def _bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


def _both_ways(monkeypatch, f):
    monkeypatch.setenv(compiled.ENV, "0")
    python = f()
    monkeypatch.setenv(compiled.ENV, "1")
    return python, f()


def _tile(rng, p, f, pitch):
    """A (p, f) fp32 view with rows `pitch` elements apart, as an arena tile is, holding
    normal values, the specials and NaNs with payloads."""
    base = np.zeros((p, pitch), np.float32)
    v = base[:, :f]
    v[...] = rng.standard_normal((p, f)) * 4
    specials = np.array([np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38, 1e-45, np.nan],
                        np.float32)
    payload_nans = np.array([0x7FC00001, 0xFFC00123], np.uint32).view(np.float32)
    pick = rng.random(v.shape)
    v[pick < 0.03] = rng.choice(specials, int((pick < 0.03).sum()))
    v[pick > 0.995] = rng.choice(payload_nans, int((pick > 0.995).sum()))
    v[p // 2] = -0.0
    return v


@pytest.mark.parametrize("ufunc", [np.add, np.subtract, np.multiply])
@pytest.mark.parametrize("p,f,pitch", [(2, 3, 3), (128, 2048, 2048), (128, 2048, 2064),
                                       (128, 512, 106512), (37, 100, 101), (128, 1, 16)])
@pytest.mark.parametrize("with_start", [False, True])
def test_compiled_fold_gives_the_numpy_route_bits(monkeypatch, ufunc, p, f, pitch,
                                                  with_start):
    rng = np.random.default_rng(p * 7 + f + pitch)
    v = _tile(rng, p, f, pitch)
    start = None
    if with_start:
        start = rng.standard_normal(p).astype(np.float32)
        start[0] = -0.0
    assert lane_fold.wanted(ufunc)
    with np.errstate(all="ignore"):
        python, fast = _both_ways(monkeypatch, lambda: sequential_fold(ufunc, v, start))
    np.testing.assert_array_equal(_bits(fast), _bits(python))


def test_compiled_fold_matches_a_scalar_chain_on_finite_rows():
    """Rows that stay finite and end nonzero are not chained again: the compiled result
    itself is the lane's fp32 chain."""
    rng = np.random.default_rng(5)
    v = (rng.standard_normal((16, 300)) * 1e3).astype(np.float32)
    got = lane_fold.fold_rows(np.add, v)
    for row, g in zip(v, got):
        reg = row[0]
        for x in row[1:]:
            reg = np.float32(reg + x)
        assert _bits(reg) == _bits(g)


def test_which_folds_are_compiled(monkeypatch):
    import numba  # noqa: F401 - loaded, as by a compiled pass
    monkeypatch.setenv(compiled.ENV, "auto")
    assert lane_fold.wanted(np.add) and lane_fold.wanted(np.multiply)
    assert not lane_fold.wanted(np.maximum)
    monkeypatch.setenv(compiled.ENV, "0")
    assert not lane_fold.wanted(np.add)


def test_importing_trnsim_does_not_load_numba():
    code = "import sys, trnsim, trnsim.isa.accumulate; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, compiled.ENV: "auto"})
    assert out.stdout.strip() == "False"


def test_softmax_gives_the_same_bits_both_ways(monkeypatch):
    softmax = load_example("softmax").softmax_kernel
    rng = np.random.default_rng(3)
    x = (3 * rng.standard_normal((256, 640))).astype(np.float32)
    x[5, 7] = np.nan

    def run():
        out, _ = trnsim.run_kernel(softmax, (x,), chip="trn2")
        return np.array(out)
    python, fast = _both_ways(monkeypatch, run)
    np.testing.assert_array_equal(_bits(fast), _bits(python))
