"""NkiTensor views: shapes, strides, offsets and the data each view addresses.

Every data check copies a view out through nisa.dma_copy and compares it with a NumPy
expression written here (slicing, transpose, broadcast, reshape, bit manipulation)."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trnsim
from trnsim import nki
from trnsim.machine.errors import NkiValidationError, OutOfBoundsError
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

BF16 = ml_dtypes.bfloat16


def inside(fn, *arrays):
    """Run fn(*hbm_tensors) inside a kernel; return what fn returns (no outputs)."""
    box = {}

    def kernel(*args):
        box["r"] = fn(*args)
    trnsim.run_kernel(kernel, arrays)
    return box["r"]


def read_view(arr, make_view, on_chip=True):
    """arr -> (an SBUF tile when on_chip) -> make_view(tile) -> HBM output; returns the
    output array and the view's shape."""
    box = {}

    def kernel(a):
        t = a
        if on_chip:
            t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf, name="tile")
            nisa.dma_copy(dst=t, src=a)
        v = make_view(t)
        box["shape"] = v.shape
        out = nl.ndarray(v.shape, v.dtype, buffer=nl.shared_hbm, name="out")
        nisa.dma_copy(dst=out, src=v)
        return out
    out = nki.simulate(kernel)(arr)
    return out, box["shape"]


def arange(*shape, dtype=np.float32):
    return np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)


# -- attributes and the documented examples ------------------------------------------

def test_fresh_tensor_attributes():
    def body():
        t = nl.ndarray((128, 64), dtype=nl.float32, buffer=nl.sbuf)
        return t.shape, t.strides, t.offset, t.ndim, t.size, t.buffer, t.dtype
    shape, strides, offset, ndim, size, buf, dt = inside(body)
    assert shape == (128, 64) and strides == (64, 1) and offset == 0
    assert ndim == 2 and size == 128 * 64 and buf == nl.sbuf and dt == nl.float32


def test_slice_pattern_matches_ap_docs_example():
    def body():
        t = nl.ndarray((128, 64), dtype=nl.float32, buffer=nl.sbuf)
        u = t.slice(dim=1, start=8, end=24)
        v = t.ap(pattern=[[64, 128], [1, 16]], offset=8)
        return u.get_pattern(), u.offset, v.get_pattern(), v.offset, u.shape
    up, uo, vp, vo, ushape = inside(body)
    assert up == [[64, 128], [1, 16]] and uo == 8
    assert vp == up and vo == uo and ushape == (128, 16)


def test_on_chip_integer_indexing_rank_rules():
    def body():
        t = nl.ndarray((64, 64, 64), dtype=nl.float32, buffer=nl.sbuf)
        return [t[0, 0, 10].shape, t[:, 0].shape, t[:, 0, 10].shape, t[0:64, 0, 0:64].shape,
                t[:, 0, :].shape, t[:, :, ::2].shape, t[...].shape, t[0, ..., :].shape,
                t[0, ...][:, 0:32, :].shape, t[0, :, :].shape, t[:, :, 0].shape,
                # the last indexed free dim is the one kept at size 1
                t[:, 0, 10].strides, t[:, 0, 10].offset, t[5, 3, 10].get_pattern()]
    assert inside(body) == [(1, 1), (64, 64), (64, 1), (64, 64), (64, 64), (64, 64, 32),
                            (64, 64, 64), (1, 64, 64), (1, 32, 64), (1, 64, 64), (64, 64),
                            (4096, 1), 10, [[4096, 1], [1, 1]]]


def test_hbm_integer_indexing_drops_dims():
    def body():
        h = nl.ndarray((4, 128, 32), dtype=nl.float32, buffer=nl.shared_hbm)
        x = nl.ndarray((2, 128, 1024), dtype=nl.float32, buffer=nl.hbm)
        return [h[0, :, :].shape, h[1].shape, h[1, 2, 3].shape, h[:, 1, 0:2].shape,
                x[1, :, 0:512].shape, h[-1, -1].shape, h[1, 2, 3].get_pattern(),
                h[1, 2, 3].offset, h[:, 1, 0:2].strides]
    assert inside(body) == [(128, 32), (128, 32), (1,), (4, 2), (128, 512), (32,),
                            [[1, 1]], 1 * 4096 + 2 * 32 + 3, (4096, 1)]


def test_composition_example_from_language_guide():
    def body():
        t = nl.ndarray((128, 4, 16), dtype=nl.float32, buffer=nl.sbuf)
        u = t[0:64, :, :].permute((0, 2, 1))[:, 0, :]
        return u.shape, u.strides
    shape, strides = inside(body)
    assert shape == (64, 4) and strides == (64, 16)


# -- data through indexing --------------------------------------------------------------

A3 = arange(8, 6, 10)

# (key builder, NumPy key, expected on-chip shape)
ON_CHIP_CASES = [
    (lambda: (slice(None), 2), (slice(None), 2), (8, 10)),
    (lambda: (3,), (slice(3, 4),), (1, 6, 10)),
    (lambda: (slice(1, 7), -1, slice(None, None, 3)), (slice(1, 7), -1, slice(None, None, 3)),
     (6, 4)),
    (lambda: (Ellipsis, 4), (Ellipsis, 4), (8, 6)),
    (lambda: (slice(None), 1, 7), (slice(None), slice(1, 2), 7), (8, 1)),
    (lambda: (nl.ds(2, 3), nl.ds(1, 4), slice(-4, None)), (slice(2, 5), slice(1, 5),
                                                             slice(-4, None)), (3, 4, 4)),
    (lambda: (-8, slice(None), slice(0, 10, 4)), (slice(0, 1), slice(None), slice(0, 10, 4)),
     (1, 6, 3)),
]


@pytest.mark.parametrize("case", range(len(ON_CHIP_CASES)))
def test_on_chip_indexing_reads_the_right_elements(case):
    key, npkey, shape = ON_CHIP_CASES[case]
    out, got_shape = read_view(A3, lambda t: t[key()])
    assert got_shape == shape
    np.testing.assert_array_equal(out, A3[npkey].reshape(shape))


HBM_CASES = [
    (lambda: (2,), (6, 10)),
    (lambda: (slice(None), 3, slice(2, 9, 3)), (8, 3)),
    (lambda: (-1, -2, -3), (1,)),
    (lambda: (Ellipsis, nl.ds(4, 5)), (8, 6, 5)),
    (lambda: (slice(1, None, 2), Ellipsis, 0), (4, 6)),
]


@pytest.mark.parametrize("case", range(len(HBM_CASES)))
def test_hbm_indexing_reads_the_right_elements(case):
    key, shape = HBM_CASES[case]
    k = tuple(slice(x.start, x.start + x.size) if isinstance(x, nl.DynamicSlice) else x
              for x in key())
    out, got_shape = read_view(A3, lambda t: t[key()], on_chip=False)
    assert got_shape == shape
    np.testing.assert_array_equal(out, np.asarray(A3[k]).reshape(shape))


@pytest.mark.parametrize("key,msg", [
    (lambda: (slice(None), 6), "dimension 1: index range [6, 6] exceed dimension size of 6"),
    (lambda: (slice(None), slice(None), slice(3, 11)),
     "dimension 2: index range [3, 10] exceed dimension size of 10"),
    (lambda: (nl.ds(6, 3),), "dimension 0: index range [6, 8] exceed dimension size of 8"),
    (lambda: (slice(None), -7), "dimension 1: index range [-1, -1] exceed dimension size of 6"),
])
def test_static_out_of_bounds_names_tensor_dim_range_and_size(key, msg):
    def body(a):
        t = nl.ndarray((8, 6, 10), nl.float32, buffer=nl.sbuf, name="tile")
        with pytest.raises(OutOfBoundsError) as ei:
            t[key()]
        return str(ei.value)
    text = inside(body, A3)
    assert "tensor tile" in text and msg in text
    assert __file__ in text  # the kernel line


def test_slice_select_and_view_op_errors():
    def body():
        t = nl.ndarray((16, 8, 4), nl.float32, buffer=nl.sbuf, name="t")
        errs = {}
        for label, fn in [
            ("partition step", lambda: t[0:16:2]),
            ("empty", lambda: t[:, 5:5]),
            ("neg step", lambda: t[:, ::-1]),
            ("two ellipsis", lambda: t[..., 0, ...]),
            ("too many", lambda: t[0, 0, 0, 0]),
            ("permute p", lambda: t.permute((1, 0, 2))),
            ("broadcast p", lambda: t[0:1].broadcast(0, 4)),
            ("broadcast non1", lambda: t.broadcast(1, 4)),
            ("expand p", lambda: t.expand_dim(0)),
            ("squeeze non1", lambda: t.squeeze_dim(1)),
            ("squeeze p", lambda: t[0:1].squeeze_dim(0)),
            ("reshape p", lambda: t.reshape((8, 64))),
            ("reshape_dim p", lambda: t.reshape_dim(0, (4, 4))),
            ("flatten p", lambda: t.flatten_dims(0, 1)),
            ("dyn select p", lambda: t.select(0, nl.ndarray((1, 1), nl.int32))),
            ("vector_select sbuf", lambda: t.vector_select(0, nl.ndarray((4, 1), nl.int32))),
        ]:
            with pytest.raises(NkiValidationError) as ei:
                fn()
            errs[label] = str(ei.value)
        return errs
    errs = inside(body)
    assert "partition" in errs["partition step"]
    assert "empty slice 5:5" in errs["empty"]
    assert "only positive steps" in errs["neg step"]
    assert "partition dimension first" in errs["permute p"]
    assert "of size 1, it has 8" in errs["broadcast non1"]
    assert "cannot reshape" not in errs["reshape p"] and "partition" in errs["reshape p"]
    assert all("float32[16, 8, 4] in sbuf 't'" in e or "float32[1, 8, 4] in sbuf 't'" in e
               for e in errs.values() if "too many" not in e)


# -- select / vector_select ------------------------------------------------------------

def test_static_select_removes_dim_on_chip():
    out, shape = read_view(A3, lambda t: t.select(1, 3))
    assert shape == (8, 10)
    np.testing.assert_array_equal(out, A3[:, 3, :])
    out, shape = read_view(A3, lambda t: t.select(2, -1), on_chip=False)
    assert shape == (8, 6)
    np.testing.assert_array_equal(out, A3[:, :, -1])


def test_on_chip_select_keeps_two_dims():
    a = arange(16, 5)
    out, shape = read_view(a, lambda t: t.select(1, 2))
    assert shape == (16, 1)
    np.testing.assert_array_equal(out, a[:, 2:3])


def test_dynamic_select_on_hbm_reads_runtime_row():
    a = arange(4, 16, 8)
    idx = np.array([[3]], dtype=np.int32)
    box = {}

    def kernel(a, idx):
        i = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        v = a.select(0, i)
        box["v"] = (v.shape, v.is_indirect(), a.is_indirect())
        out = nl.ndarray((16, 8), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=v)
        return out
    out = nki.simulate(kernel)(a, idx)
    assert box["v"] == ((16, 8), True, False)
    np.testing.assert_array_equal(out, a[3])


def test_dynamic_select_on_free_dim_of_sbuf_tile():
    a = arange(16, 6, 4)
    idx = np.array([[4]], dtype=np.int32)

    def kernel(a, idx):
        i = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)
        out = nl.ndarray((16, 4), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t[:, i, :])  # tensor index in __getitem__
        return out
    np.testing.assert_array_equal(nki.simulate(kernel)(a, idx), a[:, 4, :])


def test_vector_select_gathers_rows_and_freezes_dim0():
    a = arange(10, 4, 8)
    idx = np.array([[7], [0], [9], [2], [2], [5]], dtype=np.int32)
    box = {}

    def kernel(a, idx):
        i = nl.ndarray((6, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        v = a.vector_select(0, i)
        box["shape"], box["ind"] = v.shape, v.is_indirect()
        errs = []
        for fn in (lambda: v[0:3], lambda: v.select(0, 1), lambda: v.vector_select(0, i),
                   lambda: v.select(1, i), lambda: v.permute((1, 0, 2)), lambda: v.view(nl.int32),
                   lambda: v.expand_dim(0), lambda: v.reshape((3, 2, 32))):
            with pytest.raises(NkiValidationError) as ei:
                fn()
            errs.append(str(ei.value))
        box["errs"] = errs
        w = v[:, 1:3, :].reshape((6, 16))  # free dims stay viewable
        out = nl.ndarray((6, 16), a.dtype, buffer=nl.shared_hbm)
        sb = nl.ndarray((6, 16), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sb, src=w)
        nisa.dma_copy(dst=out, src=sb)
        return out
    out = nki.simulate(kernel)(a, idx)
    assert box["shape"] == (6, 4, 8) and box["ind"]
    assert "runtime" in box["errs"][0] and "already indirect" in box["errs"][2]
    np.testing.assert_array_equal(out, a[idx[:, 0], 1:3, :].reshape(6, 16))


# -- reshaping ------------------------------------------------------------------------

def test_reshape_views_share_storage_and_read_right_data():
    a = arange(16, 4, 6)
    out, shape = read_view(a, lambda t: t.reshape((16, 24)))
    assert shape == (16, 24)
    np.testing.assert_array_equal(out, a.reshape(16, 24))
    out, _ = read_view(a, lambda t: t.reshape((16, 2, 12))[:, 1, 3:9])
    np.testing.assert_array_equal(out, a.reshape(16, 2, 12)[:, 1, 3:9])
    out, _ = read_view(a, lambda t: t.reshape((16, -1, 3)))
    np.testing.assert_array_equal(out, a.reshape(16, 8, 3))
    # a sliced free dim still reshapes within itself
    out, _ = read_view(a, lambda t: t.reshape((16, 24))[:, 6:18].reshape((16, 3, 4)))
    np.testing.assert_array_equal(out, a.reshape(16, 24)[:, 6:18].reshape(16, 3, 4))
    # HBM reshape may move the leading dim
    out, shape = read_view(a, lambda t: t.reshape((64, 6)), on_chip=False)
    np.testing.assert_array_equal(out, a.reshape(64, 6))


def test_reshape_requires_a_no_copy_layout():
    def body():
        t = nl.ndarray((16, 4, 6), nl.float32, buffer=nl.sbuf)
        h = nl.ndarray((8, 10), nl.float32, buffer=nl.shared_hbm)
        msgs = []
        for fn in (lambda: t.permute((0, 2, 1)).reshape((16, 24)),
                   lambda: t[:, :, 0:3].reshape((16, 12)),
                   lambda: h[:, 0:5].reshape((40,)),
                   lambda: t.reshape((16, 5, 5))):
            with pytest.raises(NkiValidationError) as ei:
                fn()
            msgs.append(str(ei.value))
        ok = h[0:4].reshape((40,)).shape, h[:, ::2].reshape((8, 5, 1)).shape
        return msgs, ok
    msgs, ok = inside(body)
    assert all("cannot reshape" in m for m in msgs)
    assert ok == ((40,), (8, 5, 1))


def test_reshape_dim_and_flatten_dims():
    a = arange(8, 24)
    out, shape = read_view(a, lambda t: t.reshape_dim(1, (4, -1)))
    assert shape == (8, 4, 6)
    np.testing.assert_array_equal(out, a.reshape(8, 4, 6))
    b = arange(8, 2, 3, 4)
    out, shape = read_view(b, lambda t: t.flatten_dims(1, 2))
    assert shape == (8, 6, 4)
    np.testing.assert_array_equal(out, b.reshape(8, 6, 4))
    # unit dims (expand_dim) do not break contiguity
    out, shape = read_view(b, lambda t: t.expand_dim(2).flatten_dims(1, 4))
    assert shape == (8, 24)
    np.testing.assert_array_equal(out, b.reshape(8, 24))

    def body():
        t = nl.ndarray((8, 2, 3, 4), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="not contiguous"):
            t.permute((0, 2, 1, 3)).flatten_dims(1, 2)
        with pytest.raises(NkiValidationError, match="not contiguous"):
            t[:, :, 0:2, :].flatten_dims(1, 2)
        return t.reshape_dim(0, (8,)).shape, t.flatten_dims(2, 3).strides
    assert inside(body) == ((8, 2, 3, 4), (24, 12, 1))


def test_permute_on_chip_and_in_hbm():
    a = arange(4, 3, 5)
    out, shape = read_view(a, lambda t: t.permute((0, 2, 1)))
    assert shape == (4, 5, 3)
    np.testing.assert_array_equal(out, a.transpose(0, 2, 1))
    out, shape = read_view(a, lambda t: t.permute((2, 0, 1)), on_chip=False)
    np.testing.assert_array_equal(out, a.transpose(2, 0, 1))

    def body():
        t = nl.ndarray((128, 4, 8), nl.float32, buffer=nl.sbuf)
        p = t.permute((0, 2, 1))
        return p.shape, p.strides, p.is_contiguous(), t.is_contiguous()
    assert inside(body) == ((128, 8, 4), (32, 1, 8), False, True)


def test_broadcast_expand_squeeze():
    a = arange(6, 1, 5)
    out, shape = read_view(a, lambda t: t.broadcast(1, 3))
    assert shape == (6, 3, 5)
    np.testing.assert_array_equal(out, np.broadcast_to(a, (6, 3, 5)))
    out, shape = read_view(a, lambda t: t.squeeze_dim(1))
    assert shape == (6, 5)
    np.testing.assert_array_equal(out, a[:, 0, :])
    b = arange(6, 5)
    out, shape = read_view(b, lambda t: t.expand_dim(1))
    assert shape == (6, 1, 5)
    np.testing.assert_array_equal(out, b[:, None, :])
    out, shape = read_view(b, lambda t: t.expand_dim(-1).broadcast(2, 4))
    assert shape == (6, 5, 4)
    np.testing.assert_array_equal(out, np.broadcast_to(b[:, :, None], (6, 5, 4)))
    # HBM: broadcast the leading dim (a stride-0 read)
    c = arange(1, 7)
    out, shape = read_view(c, lambda t: t.broadcast(0, 3), on_chip=False)
    np.testing.assert_array_equal(out, np.broadcast_to(c, (3, 7)))


def test_rearrange_docs_example_and_merge():
    a = arange(16, 24)
    out, shape = read_view(a, lambda t: t.rearrange(('b', ('h', 'w')), ('b', 'w', 'h'),
                                                    {'h': 4}))
    assert shape == (16, 6, 4)
    np.testing.assert_array_equal(out, a.reshape(16, 4, 6).transpose(0, 2, 1))
    b = arange(16, 4, 6)
    out, shape = read_view(b, lambda t: t.rearrange(('b', 'h', 'w'), ('b', ('h', 'w'))))
    assert shape == (16, 24)
    np.testing.assert_array_equal(out, b.reshape(16, 24))
    out, shape = read_view(b, lambda t: t.rearrange(('b', 'h', 'w'), ('w', 'b', 'h')),
                           on_chip=False)
    np.testing.assert_array_equal(out, b.transpose(2, 0, 1))

    def body():
        t = nl.ndarray((16, 4, 6), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="not contiguous"):
            t.rearrange(('b', 'h', 'w'), ('b', ('w', 'h')))
        with pytest.raises(NkiValidationError, match="ambiguous"):
            nl.ndarray((16, 24), nl.float32).rearrange(('b', ('h', 'w')), ('b', 'h', 'w'))
        with pytest.raises(NkiValidationError, match="exactly the names"):
            t.rearrange(('b', 'h', 'w'), ('b', 'h'))
        return True
    assert inside(body)


# -- reinterpretation --------------------------------------------------------------------

def test_view_dtype_shapes():
    def body():
        t = nl.ndarray((128, 64), dtype=nl.float32, buffer=nl.sbuf)
        u = nl.ndarray((128, 256), dtype=nl.uint8, buffer=nl.sbuf)
        r = [t.view(nl.uint8).shape, t.view(nl.int32).shape, u.view(nl.float32).shape,
             t[:, 8:16].view(nl.bfloat16).offset, t.reinterpret_cast(nl.int16).shape]
        for fn in (lambda: nl.ndarray((128, 6), nl.uint8).view(nl.float32),
                   lambda: t[:, ::2].view(nl.bfloat16),
                   lambda: u[:, 1:9].view(nl.float32)):
            with pytest.raises(NkiValidationError):
                fn()
        return r
    assert inside(body) == [(128, 256), (128, 64), (128, 64), 16, (128, 128)]


def test_view_bf16_writes_alias_fp32_bits():
    """Writing the high halves of an fp32 tile through a bf16 view replaces the top 16
    bits of each fp32 value (little-endian: element 2j+1 of the view)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 16)).astype(np.float32)
    hi = rng.standard_normal((8, 16)).astype(BF16)

    def kernel(base, hi):
        t = nl.ndarray((8, 16), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=base)
        v = t.view(nl.bfloat16)
        nisa.dma_copy(dst=v[:, 1::2], src=hi)
        out = nl.ndarray((8, 16), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t)
        return out
    out = nki.simulate(kernel)(base, hi)
    want = (hi.view(np.uint16).astype(np.uint32) << 16) | (base.view(np.uint32) & 0xFFFF)
    np.testing.assert_array_equal(out.view(np.uint32), want)


def test_view_uint8_reads_bytes_and_ap_dtype_reinterprets():
    a = np.arange(4 * 8, dtype=np.int32).reshape(4, 8) * 65539 - 7
    out, shape = read_view(a, lambda t: t.view(nl.uint8))
    assert shape == (4, 32)
    np.testing.assert_array_equal(out, a.view(np.uint8))
    # the deep dive's int32 -> bf16 reinterpret through .ap(dtype=)
    out, shape = read_view(a, lambda t: t.ap(pattern=[[16, 4], [1, 16]], offset=0,
                                             dtype=nl.bfloat16))
    assert shape == (4, 16)
    np.testing.assert_array_equal(out.view(np.uint16), a.view(np.uint16))
    # ap offset counts elements of the new dtype
    out, _ = read_view(a, lambda t: t.ap(pattern=[[16, 4], [2, 4]], offset=3,
                                         dtype=nl.int16), on_chip=True)
    np.testing.assert_array_equal(out, a.view(np.int16)[:, 3:11:2])


# -- ap ----------------------------------------------------------------------------------

def test_ap_on_hbm_is_a_strided_loop_over_the_flat_storage():
    a = arange(6, 16)
    out, shape = read_view(a, lambda t: t.ap([[16, 4], [2, 8]], offset=3), on_chip=False)
    flat = a.reshape(-1)
    want = np.array([[flat[3 + 16 * i + 2 * j] for j in range(8)] for i in range(4)])
    assert shape == (4, 8)
    np.testing.assert_array_equal(out, want)
    # the docs' concrete example: t[0:16, 8:16]
    b = arange(16, 16)
    out, _ = read_view(b, lambda t: t.ap(pattern=[[16, 16], [1, 8]], offset=8))
    np.testing.assert_array_equal(out, b[:, 8:16])


def test_ap_offset_none_inherits_and_int_composes_with_view_offset():
    b = arange(16, 16)
    # pattern is against storage (the view's strides are ignored), offsets compose
    out, _ = read_view(b, lambda t: t[2:6, 4:].ap(pattern=[[16, 4], [1, 3]]))
    np.testing.assert_array_equal(out, b.reshape(-1)[36 + np.arange(4)[:, None] * 16
                                                      + np.arange(3)])
    out, _ = read_view(b, lambda t: t[2:6, 4:].ap(pattern=[[16, 4], [1, 3]], offset=5))
    np.testing.assert_array_equal(out, b.reshape(-1)[41 + np.arange(4)[:, None] * 16
                                                      + np.arange(3)])

    def body():
        t = nl.ndarray((16, 32), nl.float32, buffer=nl.sbuf)
        with pytest.raises(NkiValidationError, match="partition"):
            t.ap(pattern=[[64, 8], [1, 32]], offset=0)  # every other partition: illegal
        with pytest.raises(NkiValidationError, match="mutually exclusive"):
            h = nl.ndarray((16, 32), nl.float32, buffer=nl.shared_hbm)
            i = nl.ndarray((16, 1), nl.int32)
            h.ap([[32, 16], [1, 32]], scalar_offset=i[0:1], vector_offset=i)
        with pytest.raises(NkiValidationError, match="HBM"):
            t.ap([[32, 16], [1, 32]], vector_offset=nl.ndarray((16, 1), nl.int32))
        p = t.get_pattern()
        p[0][1] = 8
        return t.ap(pattern=p).shape
    assert inside(body) == (8, 32)


def test_ap_scalar_offset_scales_by_indirect_dim_stride():
    a = arange(32, 16)  # rows of 16
    idx = np.array([[8]], dtype=np.int32)

    def kernel(a, idx):
        i = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        out = nl.ndarray((4, 8), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=a.ap(pattern=[[16, 4], [1, 8]], offset=2,
                                        scalar_offset=i, indirect_dim=0))
        out2 = nl.ndarray((1, 1), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out2, src=a.ap([[1, 1], [1, 1]], scalar_offset=i, indirect_dim=1))
        return out, out2
    out, out2 = nki.simulate(kernel)(a, idx)
    np.testing.assert_array_equal(out, a[8:12, 2:10])  # 2 + 8 * 16 start
    assert out2[0, 0] == a[0, 8]


def test_ap_scalar_offset_with_dtype_and_register_on_sbuf():
    """indirect_dim counts steps of the indexed tensor's own dim (fp32 columns here),
    expressed in elements of the ap dtype (2 bf16 per fp32)."""
    a = (np.arange(4 * 8, dtype=np.float32).reshape(4, 8) + 0.3) * 1.7
    idx = np.array([[3]], dtype=np.int32)

    def kernel(a, idx):
        i = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        sb = nl.ndarray((4, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=sb, src=a)
        o1 = nl.ndarray((4, 4), nl.bfloat16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o1, src=sb.ap(pattern=[[16, 4], [1, 4]], dtype=nl.bfloat16,
                                        scalar_offset=i, indirect_dim=1))
        reg = nisa.register_alloc(2)
        o2 = nl.ndarray((4, 3), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o2, src=sb.ap(pattern=[[8, 4], [2, 3]], scalar_offset=reg,
                                        indirect_dim=1))
        return o1, o2
    o1, o2 = nki.simulate(kernel)(a, idx)
    np.testing.assert_array_equal(o1.view(np.uint16), a.view(np.uint16)[:, 6:10])
    np.testing.assert_array_equal(o2, a[:, 2:8:2])


def test_ap_vector_offset_ignores_leading_stride():
    a = arange(20, 8)
    idx = np.array([[19], [4], [4], [0]], dtype=np.int32)

    def kernel(a, idx):
        i = nl.ndarray((4, 1), nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=i, src=idx)
        outs = []
        for lead in (8, 999):
            sb = nl.ndarray((4, 8), a.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=sb, src=a.ap([[lead, 4], [1, 8]], vector_offset=i))
            out = nl.ndarray((4, 8), a.dtype, buffer=nl.shared_hbm)
            nisa.dma_copy(dst=out, src=sb)
            outs.append(out)
        return tuple(outs)
    o1, o2 = nki.simulate(kernel)(a, idx)
    np.testing.assert_array_equal(o1, a[idx[:, 0]])
    np.testing.assert_array_equal(o2, a[idx[:, 0]])


# -- queries ---------------------------------------------------------------------------

def test_is_contiguous_get_pattern_is_indirect():
    def body():
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
        h = nl.ndarray((8, 16), nl.float32, buffer=nl.shared_hbm)
        i = nl.ndarray((1, 1), nl.int32)
        return dict(
            fresh=t.is_contiguous(), part=t[0:64, :].is_contiguous(),
            step=t[:, ::2].is_contiguous(), cols=t[:, 0:32].is_contiguous(),
            hrows=h[2:5, :].is_contiguous(), hcols=h[:, 0:4].is_contiguous(),
            exp=t.expand_dim(1).is_contiguous(), bc=t[:, 0:1].broadcast(1, 4).is_contiguous(),
            pat=t[3:7, 5:50:5].get_pattern(), off=t[3:7, 5:50:5].offset,
            hpat=h[1, 2:10:3].get_pattern(), ind=(t.is_indirect(), h.select(0, i).is_indirect(),
                                                 h.ap([[16, 1], [1, 16]], scalar_offset=i)
                                                 .is_indirect()))
    r = inside(body)
    assert r["fresh"] and r["part"] and not r["step"] and r["cols"]
    assert r["hrows"] and not r["hcols"] and r["exp"] and not r["bc"]
    assert r["pat"] == [[64, 4], [5, 9]] and r["off"] == 3 * 64 + 5
    assert r["hpat"] == [[3, 3]]
    assert r["ind"] == (False, True, True)


def test_setitem_copies_and_fills():
    a = arange(8, 12)
    b = arange(8, 4) + 1000

    def kernel(a, b):
        t = nl.ndarray((8, 12), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)
        s = nl.ndarray((8, 4), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=b)
        t[:, 4:8] = s          # tensor_copy
        t[2:3, 0:2] = -5.0     # memset
        out = nl.ndarray((8, 12), nl.float32, buffer=nl.shared_hbm)
        out[...] = t           # dma_copy
        return out
    want = a.copy()
    want[:, 4:8] = b
    want[2, 0:2] = -5
    np.testing.assert_array_equal(nki.simulate(kernel)(a, b), want)


def test_tensor_indirection_view_shape():
    def body():
        t = nl.ndarray((16, 64), nl.float32, buffer=nl.sbuf)
        i = nl.ndarray((16, 2), nl.uint32)
        v = t.indirect(i)
        w = t.indirect(i, num_elem=20)
        with pytest.raises(NkiValidationError):
            v.reshape((16, 4, 8))
        return v.shape, w.shape, v.is_indirect()
    assert inside(body) == ((16, 32), (16, 20), True)


def test_tensor_indirection_reads_snake_ordered_free_offsets():
    """Column i of t.indirect(idx) is free offset idx[i % 16, i // 16] of each partition."""
    a = np.arange(16 * 64, dtype=np.float32).reshape(16, 64)
    idx = np.random.default_rng(0).integers(0, 64, size=(16, 2)).astype(np.uint32)

    def kernel(a, idx):
        t, i = nl.load(a), nl.load(idx)
        d = nl.ndarray((16, 32), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=d, src=t.indirect(i))
        o = nl.ndarray((16, 32), nl.float32, buffer=nl.shared_hbm)
        nl.store(o, d)
        return o
    out, _ = trnsim.run_kernel(kernel, (a, idx), chip="trn3")
    cols = [idx[i % 16, i // 16] for i in range(32)]
    np.testing.assert_array_equal(out, a[:, cols])


# -- property: random HBM slicing equals NumPy ----------------------------------------

@st.composite
def _shape_and_key(draw):
    nd = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=nd, max_size=nd)))
    key, npkey = [], []
    for n in shape:
        kind = draw(st.sampled_from(["full", "int", "slice", "ds"]))
        if kind == "int":
            i = draw(st.integers(-n, n - 1))
            key.append(i), npkey.append(i)
        elif kind == "slice":
            start = draw(st.integers(0, n - 1))
            stop = draw(st.integers(start + 1, n))
            step = draw(st.integers(1, 3))
            neg = draw(st.booleans())
            s = slice(start - n if neg else start, stop, step)
            key.append(s), npkey.append(s)
        elif kind == "ds":
            start = draw(st.integers(0, n - 1))
            size = draw(st.integers(1, n - start))
            key.append(("ds", start, size)), npkey.append(slice(start, start + size))
        else:
            key.append(slice(None)), npkey.append(slice(None))
    return shape, key, npkey


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_shape_and_key())
def test_random_hbm_slicing_round_trip_matches_numpy(case):
    shape, key, npkey = case
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * 3 - 5

    def kernel(a):
        k = tuple(nl.ds(x[1], x[2]) if isinstance(x, tuple) else x for x in key)
        v = a[k]
        n = v.size
        sb = nl.ndarray((1, n), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=sb, src=v)
        out = nl.ndarray(v.shape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=sb)
        return out
    out = nki.simulate(kernel)(a)
    want = np.asarray(a[tuple(npkey)])
    assert out.shape == (want.shape or (1,))
    np.testing.assert_array_equal(out.reshape(-1), want.reshape(-1))
