"""benchmarks/numerics_speed.py's float64 reference is the exact accumulation mode's
arithmetic: it gives trnsim's exact-mode tiled matmul bit for bit (and the fp32 one
differs from it, so the comparison can fail)."""
import numpy as np
import pytest

import trnsim
from benchmarks.fidelity import ko_tiled
from benchmarks.numerics_speed import numpy_tiled_matmul


@pytest.fixture
def operands():
    rng = np.random.default_rng(7)
    return (rng.standard_normal((512, 128)).astype(np.float32),
            rng.standard_normal((512, 512)).astype(np.float32))


def test_float64_reference_is_the_exact_mode(operands, monkeypatch):
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", "exact")
    got = np.asarray(trnsim.run_kernel(ko_tiled, operands, chip="trn2")[0])
    exact = numpy_tiled_matmul(*operands, np.float32, np.float64)
    assert np.array_equal(got.view(np.uint32), exact.view(np.uint32))
    assert not np.array_equal(exact, numpy_tiled_matmul(*operands, np.float32))
