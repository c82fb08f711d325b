"""The compiled dependency maps' fixed buffers (trnsim/timing/compiled_deps.py: a
producer buffer too small for one access is retried with more, as the other
capacities are) and the numba options of trnsim/machine/compiled.py's `jit`."""
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from trnsim.machine.compiled import jit  # noqa: E402
from trnsim.timing import compiled_deps  # noqa: E402

from test_timing_compiled import random_tiles  # noqa: E402


def test_producer_buffer_too_small_is_retried():
    _, run = trnsim.run_kernel(random_tiles, (np.zeros((128, 512), np.float32),),
                               {"seed": 2}, chip="trn2", numerics=False)
    n = len(run.program)
    tkey = list(range(n))
    ref = compiled_deps.list_edges(run.program, tkey, [])
    big = 64 * n + 64
    got = compiled_deps.list_edges(run.program, tkey, [], caps=(big, big, big, big, 1))
    assert len(ref[1]) > n  # (accesses with producers: the buffer of 1 overflowed)
    for a, b in zip(ref, got):
        assert a.tolist() == b.tolist()


def test_jit_passes_numba_options():
    def halve(a, b):
        return a // b

    def halve_numpy(a, b):  # (another function: numba's disk cache keys no options)
        return a // b

    plain, numpy_errors = jit(halve), jit(error_model="numpy")(halve_numpy)
    assert numpy_errors.targetoptions["error_model"] == "numpy"
    assert "error_model" not in plain.targetoptions
    assert numpy_errors(7, 2) == plain(7, 2) == 3
    assert numpy_errors(7, 0) == 0  # numpy's model: no ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        plain(7, 0)
