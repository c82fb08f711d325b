"""What machine/access.py and machine/memory.py keep between accesses to save time:
the description of a view at a place first seen, made from one of the same view at
another address; the NumPy view of a tensor's values, kept on the tensor; the weak
references through which dead tensors give their space back. Each is checked against
what is made from scratch."""
import copy
import gc
import random

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import access
from trnsim.machine.access import _describe, _strided, describe_access, read_raw
from trnsim.machine.runtime import current_core


def _in_kernel(fn, numerics=True):
    box = {}

    def kernel(x):
        box["r"] = fn(x)
    trnsim.run_kernel(kernel, (np.arange(128 * 64, dtype=np.float32).reshape(128, 64),),
                      numerics=numerics)
    return box["r"]


@pytest.mark.parametrize("numerics", [True, False])
def test_fresh_tensors_are_described_as_from_scratch(numerics):
    """A loop's fresh tiles (each at its own address and allocation), explicitly placed
    tensors, PSUM tiles and HBM tensors, whole and as views, in several roles."""
    def body(x):
        out = []
        for i in range(6):
            tiles = [nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf),
                     nl.ndarray((64, 2, 32), nl.bfloat16, buffer=nl.sbuf),
                     nl.ndarray((128, 512), nl.float32, buffer=nl.psum),
                     nl.ndarray((32, 16), nl.int32, buffer=nl.sbuf, address=(8 * i, 64 * i)),
                     nl.ndarray((4, 64), nl.float32, buffer=nl.shared_hbm)]
            for t in tiles:
                views = [t, t[0:2, ...], t[1:3, ...]]
                for v in views:
                    for role, mode in (("dst", "w"), ("data", "r")):
                        out.append((v, role, mode, describe_access(v, role, mode)))
        return out

    accesses = _in_kernel(body, numerics)
    assert len({a.alloc for *_, a in accesses if a.space != "hbm"}) == 24
    for v, role, mode, a in accesses:
        assert a == _describe(v, role, mode)


def test_the_kept_values_view_is_the_tensors_own():
    """Values written and read through the kept view are the tensor's; a copy of the
    tensor over another storage (as loop expansion makes them) sees its own bytes."""
    def body(x):
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        u = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x)
        nisa.memset(dst=u, value=2.0)
        first = read_raw(t)
        assert _strided(t, t.storage.data) is _strided(t, t.storage.data)  # kept
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=3.0)
        again = read_raw(t)
        moved = copy.copy(t)
        moved.storage = u.storage
        return first, again, read_raw(moved), read_raw(u)

    x = np.arange(128 * 64, dtype=np.float32).reshape(128, 64)
    first, again, moved, u = _in_kernel(body)
    np.testing.assert_array_equal(first, x)
    np.testing.assert_array_equal(again, x * np.float32(3))
    np.testing.assert_array_equal(moved, np.full((128, 64), 2, np.float32))
    np.testing.assert_array_equal(moved, u)


def test_dead_tensors_give_their_space_back():
    def body(x):
        sbuf = current_core().sbuf
        keep = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        before = (len(sbuf._taken), len(sbuf._alive))
        tiles = [nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf) for _ in range(5)]
        del tiles
        gc.collect()
        dead = len(sbuf._dead)
        last = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)  # reaps the dead first
        return before, dead, (len(sbuf._taken), len(sbuf._alive)), keep, last

    before, dead, after, *_ = _in_kernel(body)
    assert dead == 5
    assert after == (before[0] + 1, before[1] + 1)


def test_the_second_memo_starts_over_when_full(monkeypatch):
    monkeypatch.setattr(access, "_DESCRIBED_MAX", 4)
    monkeypatch.setattr(access, "_SHAPES", {})  # (what earlier tests left)
    monkeypatch.setattr(access, "_PLACES", {})

    def body(x):
        return [(v, describe_access(v, "dst", "w"))
                for v in (nl.ndarray((128, 8 * (i % 6 + 1)), nl.float32, buffer=nl.sbuf)
                          for i in range(12))]

    for v, a in _in_kernel(body):
        assert a == _describe(v, "dst", "w")
    assert len(access._PLACES) <= 4 and len(access._SHAPES) <= 4


def _same_view(a, b):
    return (a.shape, a.strides, a.offset, a.dtype, a.storage, a.buffer, a.name, a.dyn) == \
        (b.shape, b.strides, b.offset, b.dtype, b.storage, b.buffer, b.name, b.dyn)


def test_plain_slices_make_the_views_the_general_indexing_makes():
    """NkiTensor._sliced (ints and unit-step slices with int bounds) against
    _index_static, on random keys over on-chip and HBM views, with negative, missing and
    out-of-range bounds and ints (which it leaves to the general path and its errors),
    and ints that leave fewer than 2 dims (the dims each keeps)."""
    rng = random.Random(3)

    def bound(n):
        return rng.choice([None, rng.randrange(-n, n + 3), 0, n, -1])

    def index(n):
        if rng.random() < 0.3:
            return rng.choice([0, n - 1, -1, -n, n, rng.randrange(-n - 2, n + 2)])
        return slice(bound(n), bound(n))

    def body(x):
        bases = [x, x[3:100, 5:60], nl.ndarray((128, 4, 16), nl.bfloat16, buffer=nl.sbuf),
                 nl.ndarray((64, 32), nl.float32, buffer=nl.psum),
                 nl.ndarray((8, 6, 5), nl.float32, buffer=nl.shared_hbm)]
        seen = ints = 0
        for _ in range(1000):
            t = rng.choice(bases)
            key = tuple(index(n) for n in t.shape[:rng.randrange(1, t.ndim + 1)])
            fast = t._sliced(key, True)
            slices_only = t._sliced(key)
            if any(type(k) is int for k in key):
                assert slices_only is None
            else:
                assert (slices_only is None) == (fast is None)
                assert slices_only is None or _same_view(slices_only, fast)
            try:
                slow = t._index_static(key + (slice(None),) * (t.ndim - len(key)))[0]
            except Exception as e:
                assert fast is None, (key, e)
                with pytest.raises(type(e)) as again:
                    t[key]
                assert str(again.value).split("\n")[0] == str(e).split("\n")[0]
                continue
            if fast is not None:
                seen += 1
                ints += any(type(k) is int for k in key)
                assert _same_view(fast, slow), key
            assert _same_view(t[key], slow)
        for t in bases:  # other index kinds go the general way
            assert t._sliced((slice(0, 2, 1),), True) is None and t._sliced((0,)) is None
            assert t._sliced((slice(np.int64(0), 2),), True) is None
            assert t._sliced((np.int64(0),), True) is None and t._sliced((True,), True) is None
        return seen, ints

    seen, ints = _in_kernel(body)
    assert seen > 100 and ints > 50
