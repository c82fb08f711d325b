"""The legacy indexing shortcuts build what the general paths build: an affine key
(ints and arange expressions, `t[k, i_p, 128 * m + i_f]`) indexes a tensor as
`_dynamic_key` / `_indirect_key` / `key_to_indices` do, and an int offset added to an
index expression gives the Index that `Index.of(int)` would."""
import itertools
from types import SimpleNamespace

import numpy as np

import trnsim.legacy.language as nl
from trnsim.legacy import tensor as legacy_tensor
from trnsim.legacy.indexing import Index
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
        m.setattr(legacy_tensor, "_affine_key", lambda key, ndim: False)
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
        assert fast.__dict__.keys() == slow.__dict__.keys()
        assert _outcome(fast) == _outcome(slow)


def test_int_offsets_combine_as_index_of():
    i_p, i_f = nl.mgrid[0:64, 0:32]
    for expr, c in itertools.product([i_p, 3 * i_f, i_p + i_f - 4, Index({}, 2)],
                                     [0, 5, -7]):
        assert _layout([expr + c]) == _layout([expr._combine(Index.of(c))])
        assert _layout([expr - c]) == _layout([expr._combine(Index.of(c), -1)])
        assert _layout([c + expr]) == _layout([Index.of(c)._combine(expr)])
        assert (expr + c).terms is not expr.terms  # a copy: the operand is unchanged
