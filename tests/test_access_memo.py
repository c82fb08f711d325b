"""describe_access keeps its last description on the view (machine/access.py): it must
describe the view as it is now, whatever changed since the description it kept, and in
whatever role and mode it is asked for (one description serves them all: an
instruction reads and writes the same PSUM view)."""
import numpy as np

import trnsim
import trnsim.nki.language as nl
from trnsim.machine.access import _describe, describe_access
from trnsim.machine.tensor import Indirect


def _in_kernel(fn):
    box = {}

    def kernel(x):
        box["r"] = fn(x)
    trnsim.run_kernel(kernel, (np.zeros((128, 64), np.float32),), numerics=False)
    return box["r"]


def test_a_view_described_again_is_described_as_it_is_now():
    def body(x):
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        v = t[:, 8:16]
        first = describe_access(v, "data", "r")
        assert describe_access(v, "data", "r") is first  # nothing changed: kept
        seen = [first]
        v.storage.address += 512  # its storage placed elsewhere
        seen.append(describe_access(v, "data", "r"))
        v.offset += 1  # the view itself changed
        seen.append(describe_access(v, "data", "r"))
        v.dyn = Indirect(0, 1, "scalar", 1, 8)  # made indirect
        seen.append(describe_access(v, "data", "r"))
        seen.append(describe_access(v, "dst", "w"))  # another role and mode
        return seen, v

    seen, v = _in_kernel(body)
    first, moved, shifted, indirect, other_role = seen
    assert (moved.lo, moved.hi) == (first.lo + 512, first.hi + 512)
    assert (shifted.offset, shifted.lo) == (moved.offset + 1, moved.lo + 4)
    assert indirect.indirect and not shifted.indirect
    assert indirect == _describe(v, "data", "r")  # what a description from scratch says
    assert other_role == _describe(v, "dst", "w")


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
