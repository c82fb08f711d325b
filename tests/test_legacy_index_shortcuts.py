"""The legacy indexing shortcuts build what the general paths build: an affine key
(ints and arange expressions, `t[k, i_p, 128 * m + i_f]`) indexes a tensor as
`_dynamic_key` / `_indirect_key` / `key_to_indices` do, and an int offset added to an
index expression gives the Index that `Index.of(int)` would."""
import itertools
from types import SimpleNamespace

import numpy as np

import trnsim.legacy.language as nl
from trnsim.legacy import tensor as legacy_tensor
from trnsim.legacy.indexing import Index, resolve
from trnsim.legacy.tensor import LTensor
from trnsim.machine.errors import NkiValidationError
from trnsim.machine.tensor import MemoryRegion, NkiTensor


def _layout(indices):
    """Each Index as its terms (axis fields and coefficient, in order) and constant,
    with axes named by first appearance (the sharing between dims kept)."""
    names = {}
    return [([(names.setdefault(id(a), len(names)), a.size, a.position, a.ndim, a.start, c)
              for a, c in idx.terms.items()], idx.const) for idx in indices]


def _keys():
    i_p, i_f = nl.mgrid[0:64, 0:32]
    a_p = nl.arange(64)[:, None]
    a_f = nl.arange(8, 40)[None, :]
    exprs = [i_p, i_f, 3 * i_p + 5, i_f - 2, 96 + i_f, a_p, 2 + a_f, Index({}, 7)]
    for k, e0, e1 in itertools.product([0, 1, 3], exprs, exprs):
        yield (k, e0, e1)
    yield (2, 4, i_f)
    yield (1, i_p, 7)
    yield (1, 5, nl.arange(32)[:])  # 1-D grids: a free or a partition axis
    yield (2, nl.arange(64)[:], 3)
    yield (i_p, i_f)  # too few indices for a 3-D tensor: not the shortcut
    yield (0, 1, 2)  # constants only: not advanced


def _tensors():
    row = SimpleNamespace(row_bytes=4 * 160 * 4, name="t")  # a partition's 4 blocks
    sb = NkiTensor((4, 128, 160), np.float32, row, MemoryRegion.sbuf, "t",
                   strides=(160, 640, 1))
    hbm = NkiTensor((4, 200, 160), np.float32, None, MemoryRegion.shared_hbm, "h")
    return [LTensor(sb, par_axis=1), LTensor(hbm)]


def _outcome(access):
    """The access's view (shape, strides, offset), or its error (out of bounds)."""
    try:
        view = access.view()
    except NkiValidationError as e:
        return type(e), e.bare_message
    return view.shape, view.strides, view.offset


def _index(t, key):
    try:
        return t[key]
    except NkiValidationError as e:
        return type(e), e.bare_message


def _general(tensor, key, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(legacy_tensor, "_affine_access", lambda tensor, key: None)
        return _index(tensor, key)


def test_affine_keys_index_as_the_general_path(monkeypatch):
    for t, key in itertools.product(_tensors(), _keys()):
        fast, slow = _index(t, key), _general(t, key, monkeypatch)
        if type(slow) is tuple:  # an error: the same one
            assert fast == slow
            continue
        assert _layout(fast.indices) == _layout(slow.indices)
        assert fast.advanced == slow.advanced
        assert (fast.indirect, fast.indirect_dim) == (slow.indirect, slow.indirect_dim)
        assert fast.shape == slow.shape
        kept = {"shares_terms", "_pattern"}  # (the shortcut's Pattern, kept with it)
        assert fast.__dict__.keys() - kept == slow.__dict__.keys()
        assert _outcome(fast) == _outcome(slow)
        if type(_outcome(fast)[0]) is tuple:  # a view: of the access's shape
            assert _outcome(fast)[0] == fast.shape


def test_int_offsets_combine_as_index_of():
    i_p, i_f = nl.mgrid[0:64, 0:32]
    for expr, c in itertools.product([i_p, 3 * i_f, i_p + i_f - 4, Index({}, 2)],
                                     [0, 5, -7]):
        assert _layout([expr + c]) == _layout([expr._combine(Index.of(c))])
        assert _layout([expr - c]) == _layout([expr._combine(Index.of(c), -1)])
        assert _layout([c + expr]) == _layout([Index.of(c)._combine(expr)])
        before = _layout([expr])
        assert (expr + c).terms is expr.terms  # shared (no Index changes its terms)
        assert _layout([expr]) == before  # the operand unchanged


def _element_offsets(view):
    """The flat element offset of every element of a core view, in row-major order."""
    grid = np.indices(view.shape).reshape(len(view.shape), -1)
    return view.offset + np.asarray(view.strides) @ grid


def _values(index, ranges):
    """An index's values over its 2-D grid, each axis over its range (maybe empty)."""
    out = np.full((1, 1), index.const)
    for a, c in index.terms.items():
        lo, hi = ranges.get(a, (0, a.size))
        out = out + c * (a.start + np.arange(lo, hi)).reshape((-1, 1) if a.position == 0
                                                                else (1, -1))
    return out


def test_resolve_picks_the_elements_the_index_values_name():
    """resolve's view against numpy: each dim's index values over the (narrowed) grid,
    times the tensor's strides; out of bounds exactly where a value is."""
    rng = np.random.default_rng(3)
    hbm = NkiTensor((6, 40, 50), np.float32, SimpleNamespace(row_bytes=4, name="h"),
                    MemoryRegion.shared_hbm, "h")
    tile = NkiTensor((32, 50), np.float32, SimpleNamespace(row_bytes=200, name="s"),
                     MemoryRegion.sbuf, "s")
    for _ in range(300):
        i_p, i_f = nl.mgrid[0:int(rng.integers(1, 9)), 0:int(rng.integers(1, 12))]
        parts = [i_p, i_f, 0 * i_p]
        t = hbm if rng.integers(2) else tile
        key = [int(rng.integers(-1, 4)) * parts[rng.integers(3)]
               + int(rng.integers(-1, 3)) * parts[rng.integers(3)] + int(rng.integers(0, 12))
               for _ in t.shape]
        if rng.integers(3) == 0:
            key[0] = Index({}, int(rng.integers(0, 5)))  # a fixed row
        ranges = {}
        for a in (next(iter(i_p.terms)), next(iter(i_f.terms))):
            if rng.integers(2):
                lo = int(rng.integers(0, a.size))
                ranges[a] = (lo, int(rng.integers(lo, a.size + 1)))
        values = np.broadcast_arrays(*[_values(k, ranges) for k in key])
        inside = all(((v >= 0) & (v < n)).all() for v, n in zip(values, t.shape))
        try:
            view = resolve(t, key, ranges)
        except NkiValidationError:
            assert not inside and values[0].size
            continue
        assert inside or not values[0].size
        if values[0].size:
            want = sum(int(s) * v for s, v in zip(t.strides, values)).reshape(-1)
            assert (_element_offsets(view) == want).all()


def test_a_destination_viewed_over_whole_ranges_is_viewed_as_over_every_range():
    """legacy/isa.py `_view_spans` leaves out the ranges that cover a whole axis: the
    view is the one made with every range given."""
    from trnsim.legacy.isa import _view_spans
    store = SimpleNamespace(row_bytes=4 * 3 * 64, name="t")
    flat = NkiTensor((128, 64), np.float32, store, MemoryRegion.psum, "p")
    blocks = NkiTensor((3, 128, 64), np.float32, store, MemoryRegion.sbuf, "b",
                       strides=(64, 192, 1))
    i_p, i_f = nl.mgrid[0:128, 0:64]
    accesses = [LTensor(flat).full(), LTensor(flat)[0:128, 0:32], LTensor(flat)[i_p, i_f],
                LTensor(blocks, par_axis=1)[2, i_p, i_f], LTensor(flat)[0:64, 5]]
    for x in accesses:
        for spans in ([(0, n) for n in x.shape], [(0, x.shape[0]), (3, 9)],
                      [(1, 2), (0, x.shape[1])], [(0, 0), (0, x.shape[1])]):
            every = {a: spans[a.position] for idx in x.indices for a in idx.terms
                     if a.position < len(spans)}
            got, want = _view_spans(x, spans), x.view(every)
            assert (got.shape, got.strides, got.offset) == (want.shape, want.strides,
                                                            want.offset)
            assert (got.storage, got.dtype, got.name, got.dyn) == (want.storage, want.dtype,
                                                                   want.name, want.dyn)


def _plain_keys(shape):
    """Keys of ints and slices for a 3-D tensor of `shape`: in bounds, negative, open,
    stepped, shorter than the rank, out of bounds and empty."""
    rng = np.random.default_rng(5)
    for _ in range(400):
        key = []
        for n in shape[:int(rng.integers(1, 4))]:
            kind = rng.integers(6)
            lo, hi = sorted(int(v) for v in rng.integers(-n - 2, n + 3, 2))
            if kind == 0:
                key.append(int(rng.integers(0, n)))
            elif kind == 1:
                key.append(slice(None))
            elif kind == 2:
                key.append(slice(lo, hi, int(rng.integers(1, 4))))
            else:
                key.append(slice(lo if kind != 3 else None, hi if kind != 4 else None))
        yield tuple(key)


def test_plain_keys_view_as_resolve_does():
    """`t[ints and slices]` keeps its key, and its view comes from it (the core's
    `_sliced`) where that applies: the same view (or error) as resolving its indices."""
    for t in _tensors():
        for key in _plain_keys(t.shape):
            access = _index(t, key)
            if type(access) is tuple:  # an error of the key itself
                continue
            assert access.plain_key == key
            try:
                want = resolve(t.core, access.indices, {}, t.par_axis)
            except NkiValidationError as e:
                assert _outcome(access) == (type(e), e.bare_message)
                continue
            got = access.view()
            _assert_same_view(got, want)
            assert got.shape == access.shape


def _assert_same_view(got, want):
    """`got` views what `want` views, as `want` does."""
    assert (got.shape, got.strides, got.offset) == (want.shape, want.strides, want.offset)
    assert (got.storage, got.dtype, got.name, got.dyn, got.buffer) == \
        (want.storage, want.dtype, want.name, want.dyn, want.buffer)


def test_whole_tile_accesses():
    """A whole tile's access views the tile's own core tensor; tiles of one shape share
    their whole-tile indices, laid out as `t[:, :]`'s, each viewing its own tile."""
    store = SimpleNamespace(row_bytes=4 * 64, name="t")
    a, b = (LTensor(NkiTensor((128, 64), np.float32, store, MemoryRegion.sbuf, name))
            for name in ("a", "b"))
    fa, fb = a.full(), b.full()
    assert fa.view() is a.core and fb.view() is b.core
    assert fa.tensor is a and fb.tensor is b
    assert _layout(fa.indices) == _layout(a[:, :].indices)
    assert [i.terms for i in fa.indices] == [i.terms for i in fb.indices]
    assert fa.indices is not fb.indices  # (lists of their own)
    assert fa.shape == a.shape == (128, 64) and fa.whole
    masked = fa.view({next(iter(fa.indices[1].terms)): (3, 9)})
    assert (masked.shape, masked.offset) == ((128, 6), 3) and masked.storage is store


def test_plain_key_indices_are_made_when_asked_as_key_to_indices_makes_them():
    """An access by ints and unit-step slices makes its indices only when first asked (a
    load asks for its shape and view alone): then they and its shape are
    key_to_indices's and resolve_shape's; keys it cannot take (steps, too many) index
    eagerly, raising where they did."""
    from trnsim.legacy.indexing import key_to_indices
    lazy = 0
    for t in _tensors():
        for key in list(_plain_keys(t.shape)) + [(slice(0, 2),) * 4, (slice(0, 2, 0),)]:
            try:
                want = key_to_indices(key, t.shape)
            except NkiValidationError as e:
                assert _index(t, key) == (type(e), e.bare_message)
                continue
            access = t[key]
            lazy += "indices" not in access.__dict__
            shape = access.shape
            assert _layout(access.indices) == _layout(want)
            assert shape == legacy_tensor.resolve_shape(legacy_tensor.Access(t, want))
            assert (access.indirect, access.indirect_dim, access.advanced) == (None, 0, False)
    assert lazy > 100
    try:
        legacy_tensor.Access(_tensors()[0], []).nothing
    except AttributeError as e:
        assert "nothing" in str(e)
    else:
        raise AssertionError("an attribute an Access lacks must raise AttributeError")


def _int_keys(shape):
    """Keys of ints and slices, at least one int, or a bare int: ints in and out of
    bounds (negative ones too), whole, open, negative, stepped, empty and out-of-bounds
    slices, keys shorter and longer than the rank."""
    rng = np.random.default_rng(7)
    for _ in range(600):
        key = []
        for d in range(int(rng.integers(1, len(shape) + 2))):
            n = shape[d] if d < len(shape) else 4
            kind = rng.integers(6)
            lo, hi = sorted(int(v) for v in rng.integers(-n - 2, n + 3, 2))
            if kind < 2:
                key.append(int(rng.integers(0, n)) if kind else int(rng.integers(-n - 2, n + 2)))
            elif kind == 2:
                key.append(slice(None))
            elif kind == 3:
                key.append(slice(lo, hi, int(rng.integers(1, 3))))
            else:
                key.append(slice(lo if kind == 4 else None, hi))
        key[int(rng.integers(len(key)))] = int(rng.integers(-1, shape[0] + 1))
        yield tuple(key)
    yield from range(-shape[0] - 1, shape[0] + 1)


def test_int_keys_view_as_the_general_path():
    """`blk[k, 0:128, 0:512]` and `blk[k]` on tiles (block ones too) and HBM tensors: the
    view is made when indexing where the key is in range; the access's view or error,
    shape and (made when asked) indices are those of resolving key_to_indices's indices,
    and a key key_to_indices rejects raises its error when indexing."""
    from trnsim.legacy.indexing import key_to_indices
    store = SimpleNamespace(row_bytes=4 * 64, name="p")
    tensors = _tensors() + [
        LTensor(NkiTensor((128, 64), np.float32, store, MemoryRegion.sbuf, "s")),
        LTensor(NkiTensor((2, 128, 64), np.float32, store, MemoryRegion.psum, "q",
                          strides=(64, 128, 1)), par_axis=1),
        LTensor(NkiTensor((6, 7), np.float32, None, MemoryRegion.shared_hbm, "v"))]
    taken = 0
    for t in tensors:
        for key in _int_keys(t.shape):
            try:
                indices = key_to_indices(key, t.shape)
            except NkiValidationError as e:
                assert _index(t, key) == (type(e), e.bare_message)
                continue
            access = t[key]
            taken += "_view" in access.__dict__
            general = legacy_tensor.Access(t, indices)
            assert access.shape == legacy_tensor.resolve_shape(general)
            try:
                want = resolve(t.core, indices, {}, t.par_axis)
            except NkiValidationError as e:
                assert "_view" not in access.__dict__
                assert _outcome(access) == (type(e), e.bare_message)
                continue
            got = access.view()
            _assert_same_view(got, want)
            assert got.shape == access.shape
            assert _layout(access.indices) == _layout(indices)
            assert (access.indirect, access.indirect_dim, access.advanced) == (None, 0, False)
    assert taken > 300


def _random_affine_keys(rng, shape):
    """Affine keys of a tensor of `shape`: ints and sums of mgrid components (each of
    any coefficient, zero and negative ones too) and aranges, with int offsets."""
    i_p, i_f = nl.mgrid[0:int(rng.integers(0, 9)), 0:int(rng.integers(1, 12))]
    parts = [i_p, i_f, 0 * i_p, nl.arange(int(rng.integers(1, 6)))[:, None],
             nl.arange(2, int(rng.integers(3, 9)))[None, :]]
    for _ in range(40):
        key = []
        for _n in shape:
            if rng.integers(4) == 0:
                key.append(int(rng.integers(0, 5)))
                continue
            k = int(rng.integers(-2, 4)) * parts[rng.integers(len(parts))]
            for _ in range(int(rng.integers(0, 2))):
                k = k + parts[rng.integers(len(parts))]
            key.append(k + int(rng.integers(-3, 12)))
        yield tuple(key)


def test_patterned_accesses_view_and_shape_as_the_general_path():
    """An affine key's access keeps its indices' Pattern (shared by every offset of the
    same mgrid components): its shape, its view (or out-of-bounds error) and the spans
    of an unmasked instruction are those of the same indices without it."""
    from trnsim.legacy.indexing import pattern_of
    from trnsim.legacy.isa import _spans
    from trnsim.legacy.ops import Grid
    rng = np.random.default_rng(11)
    row = SimpleNamespace(row_bytes=4 * 3 * 50, name="s")
    tensors = [LTensor(NkiTensor((6, 40, 50), np.float32, None, MemoryRegion.shared_hbm,
                                 "h")),
               LTensor(NkiTensor((3, 32, 50), np.float32, row, MemoryRegion.sbuf, "s",
                                 strides=(50, 150, 1)), par_axis=1),
               LTensor(NkiTensor((32, 50), np.float32, row, MemoryRegion.sbuf, "t"))]
    patterned = 0
    for t in tensors:
        for key in _random_affine_keys(rng, t.shape):
            fast = _index(t, key)
            if type(fast) is tuple or fast.pattern() is None:
                continue
            patterned += 1
            plain = legacy_tensor.Access(t, list(fast.indices))  # no Pattern
            assert plain.pattern() is None
            assert fast.pattern() is pattern_of(fast.indices)  # (kept per terms)
            assert fast.shape == plain.shape
            assert _outcome(fast) == _outcome(plain)
            assert _spans(Grid(fast.shape), fast) == _spans(Grid(plain.shape), plain)
    assert patterned > 50


def test_single_axis_clauses_narrow_to_the_values_that_satisfy_them():
    """A mask's single-axis clause (`k * 128 + i_p < 1000`, any coefficient, offset and
    comparison) narrows its axis's range to exactly the values that satisfy it,
    counted by evaluating it at every value (an empty range where none does)."""
    import operator
    from trnsim.legacy.indexing import Axis, Predicate
    compare = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
    rng = np.random.default_rng(13)
    for _ in range(4000):
        size, start = int(rng.integers(0, 40)), int(rng.integers(-6, 7))
        a, other = Axis(size, 0, 2, start), Axis(5, 1, 2)
        c = int(rng.choice([-5, -3, -2, -1, 1, 2, 3, 7]))
        const, op = int(rng.integers(-90, 90)), str(rng.choice(list(compare)))
        expr = Index({a: c, other: 0} if rng.integers(2) else {a: c}, const)
        ranges = {}
        if rng.integers(2):
            lo = int(rng.integers(0, size + 1))
            ranges[a] = (lo, int(rng.integers(lo, size + 1)))
        lo, hi = ranges.get(a, (0, size))
        ok = [j for j in range(lo, hi) if compare[op](c * (start + j) + const, 0)]
        assert ok == list(range(ok[0], ok[-1] + 1)) if ok else True  # (one run)
        assert Predicate([(expr, op)]).restrict(ranges) == []
        assert ranges[a] == ((ok[0], ok[-1] + 1) if ok else (lo, lo))
