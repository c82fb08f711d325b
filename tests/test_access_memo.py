"""describe_access memoizes its descriptions by place (machine/access.py): it must
describe a view as it is now, whatever changed since the description it kept, in
whatever role and mode it is asked for, and a new view of a place described before
exactly as a description from scratch would."""
import random

import trnsim.nki.language as nl
from trnsim.machine import access
from trnsim.machine.access import _describe, describe_access
from trnsim.machine.tensor import Indirect

from kernel_helpers import inside_a_kernel


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

    seen, v = inside_a_kernel(body)
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

    for v, role, mode, a in inside_a_kernel(body):
        assert a == _describe(v, role, mode)
        assert (a.role, a.mode) == (role, mode)
        # the dtype as a plain str (one object per dtype)
        assert type(a.dtype) is str and a.dtype == str(v.dtype)


def test_new_views_of_places_described_before_are_described_as_from_scratch():
    rng = random.Random(7)
    roles = [("data", "r"), ("dst", "w"), ("src", "r")]

    def views(x):
        sb = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        ps = nl.ndarray((128, 64), nl.float32, buffer=nl.psum)
        bf = nl.ndarray((64, 4, 32), nl.bfloat16, buffer=nl.sbuf)
        out = []
        for _ in range(60):  # (each built anew: the views of one place are new objects)
            lo = rng.randrange(0, 48)
            p = rng.randrange(1, 128)
            out += [sb[0:p, lo:lo + 8], ps[p - 1:p, lo:64], x[lo:lo + 4, 2:lo + 10],
                    bf[0:p // 2 + 1, lo % 4, 0:32], bf[:, 1:3, lo % 16:32]]
        return [(v, *rng.choice(roles)) for v in out]

    def body(x):
        asked = views(x)
        return [(v, r, m, describe_access(v, r, m)) for v, r, m in asked + asked[::-1]]

    for v, role, mode, a in inside_a_kernel(body):
        assert a == _describe(v, role, mode)


def test_the_memo_starts_over_when_full(monkeypatch):
    monkeypatch.setattr(access, "_DESCRIBED_MAX", 4)

    def body(x):
        return [(x[i:i + 1, :], describe_access(x[i:i + 1, :], "src", "r")) for i in range(9)]

    for v, a in inside_a_kernel(body):
        assert a == _describe(v, "src", "r")
    assert len(access._PLACES) <= 4 and len(access._SHAPES) <= 4
