"""Instr.write stores a static view's values in place itself (machine/access.py's
write_raw for its usual case, inline). Each write is checked against write_raw's
bytes and initialized-flags for the same values on a twin of the tensor."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.language as nl
from trnsim.isa.base import Instr
from trnsim.machine.access import read_raw, write_raw
from trnsim.numerics.cast import cast


def _views(t):
    """Whole, sliced, strided and single-element views of `t`."""
    return [t, t[0:64, ...], t[1:100, 2:30:3], t[5:6, 7:8]]


@pytest.mark.parametrize("dtype", [nl.float32, nl.bfloat16, nl.int32])
@pytest.mark.parametrize("buffer", [nl.sbuf, nl.psum, nl.shared_hbm])
@pytest.mark.parametrize("strict", [False, True])
def test_inline_write_stores_what_write_raw_stores(dtype, buffer, strict):
    rng = np.random.default_rng(0)
    seen = []

    def kernel(x):
        for k in range(4):  # each view written over its twin's state so far
            a = nl.ndarray((128, 32), dtype, buffer=buffer)
            b = nl.ndarray((128, 32), dtype, buffer=buffer)
            for va, vb in zip(_views(a), _views(b)):
                values = (rng.standard_normal(va.shape) * 300).astype(np.float32)
                if k == 3:  # a 0-d value, broadcast
                    values = np.float32(values.flat[0])
                with Instr("tensor_copy", "vector") as ins:
                    ins.write("dst", va, values)
                write_raw(vb, cast(values, vb.dtype), flags=ins._keeps_flags(vb))
            seen.append((read_raw(a).view(np.uint8), read_raw(b).view(np.uint8),
                         a.storage.initialized.copy(), b.storage.initialized.copy()))

    trnsim.run_kernel(kernel, (np.zeros((1, 1), np.float32),), strict=strict)
    assert len(seen) == 4
    for got, want, got_flags, want_flags in seen:
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_flags, want_flags)
        assert got_flags.any() == (strict or buffer is nl.psum)
