"""describe_access keeps one description per view whatever the role and mode it was
asked for (an instruction reads and writes the same PSUM view): asked again in another
role or mode, it must say what a description from scratch says."""
import numpy as np

import trnsim
import trnsim.nki.language as nl
from trnsim.machine.access import _describe, describe_access


def _in_kernel(fn):
    box = {}

    def kernel(x):
        box["r"] = fn(x)
    trnsim.run_kernel(kernel, (np.zeros((128, 64), np.float32),), numerics=False)
    return box["r"]


def test_a_view_described_in_other_roles_is_described_as_from_scratch():
    asked = [("dst", "r"), ("dst", "w"), ("data", "r"), ("dst", "w"), ("src", "r")]

    def body(x):
        out = []
        for buffer in (nl.sbuf, nl.psum):
            t = nl.ndarray((128, 64), nl.float32, buffer=buffer)
            v = t[:, 8:24]
            out += [(v, role, mode, describe_access(v, role, mode)) for role, mode in asked]
        hbm = x[:, 4:12]
        out += [(hbm, role, mode, describe_access(hbm, role, mode)) for role, mode in asked]
        return out

    for v, role, mode, a in _in_kernel(body):
        assert a == _describe(v, role, mode)
        assert (a.role, a.mode) == (role, mode)
        # the dtype as a plain str (one object per dtype)
        assert type(a.dtype) is str and a.dtype == str(v.dtype)
