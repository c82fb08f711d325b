"""DMA instructions (dma_copy, dma_transpose, dma_compute) and nl.load / store /
load_transpose2d / gather_flattened, against NumPy references written here."""

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.machine.errors import NkiValidationError, OutOfBoundsError, UnsupportedError
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

BF16 = ml_dtypes.bfloat16


def run(kernel, *args, chip=None, numerics=True):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)


def line_of(tag: str) -> int:
    """The line of this file that carries the comment `tag` (for file:line checks)."""
    for i, text in enumerate(open(__file__).read().splitlines(), 1):
        if text.rstrip().endswith(tag):
            return i
    raise AssertionError(tag)


def assert_located(err, op: str, tag: str):
    assert err.op == op and str(err).startswith(f"{op}: ")
    assert f"{__file__}:{line_of(tag)}" in str(err)


def rne_bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bits with round-to-nearest-even, on the bit pattern (finite x)."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def load_idx(idx_hbm, dtype=nl.int32):
    t = nl.ndarray(idx_hbm.shape, dtype, buffer=nl.sbuf, name="idx")
    nisa.dma_copy(dst=t, src=idx_hbm)
    return t


# -- plain copies -------------------------------------------------------------------------

def test_copy_hbm_sbuf_hbm_and_hbm_to_hbm_and_sbuf_to_sbuf():
    a = np.random.default_rng(1).standard_normal((64, 48)).astype(np.float32)

    def kernel(a):
        t = nl.ndarray((64, 48), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)
        u = nl.ndarray((64, 48), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=u[:, 0:24], src=t[:, 24:48])     # SBUF -> SBUF
        nisa.dma_copy(dst=u[:, 24:48], src=t[:, 0:24])
        o1 = nl.ndarray((64, 48), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o1, src=u)
        o2 = nl.ndarray((48, 64), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o2, src=a.reshape((48, 64)))     # HBM -> HBM, reshaped
        return o1, o2
    (o1, o2), r = run(kernel, a)
    np.testing.assert_array_equal(o1, np.concatenate([a[:, 24:], a[:, :24]], axis=1))
    np.testing.assert_array_equal(o2, a.reshape(48, 64))
    assert [i.opcode for i in r.program] == ["dma_copy"] * 5
    assert all(i.engine == "dma" and i.queue == "qSyncIO" for i in r.program)


def test_copy_equal_element_counts_different_shapes():
    a = np.arange(128 * 6, dtype=np.float32).reshape(128, 6)

    def kernel(a):
        t = nl.ndarray((32, 24), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)  # row-major correspondence
        o = nl.ndarray((4, 192), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=t)
        return o
    out, _ = run(kernel, a)
    np.testing.assert_array_equal(out, a.reshape(4, 192))


def test_psum_dst_allowed_psum_src_rejected_with_location():
    a = np.ones((8, 16), np.float32)

    def kernel(a):
        p = nl.ndarray((8, 16), nl.float32, buffer=nl.psum)
        nisa.dma_copy(dst=p, src=a)
        o = nl.ndarray((8, 16), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=p)  # <psum-src>
        return o
    with pytest.raises(NkiValidationError) as ei:
        run(kernel, a)
    assert "PSUM" in str(ei.value) and "tensor_copy" in str(ei.value)
    assert_located(ei.value, "dma_copy", "# <psum-src>")


def test_element_count_mismatch_error():
    def kernel(a):
        t = nl.ndarray((8, 15), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)  # <count>
    with pytest.raises(NkiValidationError) as ei:
        run(kernel, np.zeros((8, 16), np.float32))
    assert "(128 vs 120)" in str(ei.value)
    assert_located(ei.value, "dma_copy", "# <count>")


def test_hwdge_needs_equal_dtypes_gen3_and_sync_or_scalar():
    a = np.zeros((8, 16), np.float32)

    def mismatch(a):
        t = nl.ndarray((8, 16), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a, dge_mode=nisa.dge_mode.hwdge)  # <hwdge>
    with pytest.raises(NkiValidationError) as ei:
        run(mismatch, a)
    assert "equal dtypes" in str(ei.value) and ".view()" in str(ei.value)
    assert_located(ei.value, "dma_copy", "# <hwdge>")

    def ok(a, engine):
        t = nl.ndarray((8, 16), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a, dge_mode=nisa.dge_mode.hwdge, engine=engine)
    _, r = run(ok, a, nisa.engine.scalar)
    assert r.program.instructions[0].queue == "qScalarIO"
    assert r.program.instructions[0].attrs["dge_mode"] == "hwdge"
    with pytest.raises(UnsupportedError, match="NeuronCore-v3"):
        run(ok, a, nisa.engine.sync, chip="trn1")
    with pytest.raises(NkiValidationError, match="only nisa.engine.sync and"):
        run(ok, a, nisa.engine.gpsimd)

    def raw_int(a, code):
        t = nl.ndarray((8, 16), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a, dge_mode=code)
    _, r = run(raw_int, a, 3)  # the stub's integer code of dge_mode.none
    assert r.program.instructions[0].attrs["dge_mode"] == "none"
    with pytest.raises(NkiValidationError, match="not a dge_mode member"):
        run(raw_int, a, 9)


def test_priority_is_v4_only():
    def kernel(a):
        t = nl.ndarray((8, 16), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a, priority=1)
    a = np.zeros((8, 16), np.float32)
    _, r = run(kernel, a, chip="trn3")
    assert r.program.instructions[0].attrs["priority"] == 1
    with pytest.raises(UnsupportedError):
        run(kernel, a, chip="trn2")


# -- casts ----------------------------------------------------------------------------------

def test_fp32_to_bf16_cast_is_rne_with_ties_to_even():
    bits = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0xBF818000,   # exact ties
                     0x3F808001, 0x3F807FFF, 0x4049_0FDB, 0x0000_8000,  # near ties, pi, denorm
                     0x7F7F_FFFF, 0x3F80_0000, 0xC2F6_E979, 0x3380_0000],
                    dtype=np.uint32)
    x = np.tile(bits.view(np.float32), (4, 1))

    def kernel(x):
        t = nl.ndarray((4, 12), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x)
        o = nl.ndarray((4, 12), nl.bfloat16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=t)
        return o
    out, _ = run(kernel, x)
    got = out.view(np.uint16)
    want = rne_bf16_bits(x)
    want[:, 8] = 0x7F80  # the largest fp32 rounds up to +inf in bf16
    np.testing.assert_array_equal(got, want)
    assert list(got[0, :4]) == [0x3F80, 0x3F82, 0xBF80, 0xBF82]


def test_casts_go_through_fp32():
    i32 = np.array([[70000, -70000, 2 ** 24 + 1, 5, -3, 32767]], dtype=np.int32)
    f32 = np.array([[2.5, 3.5, -2.5, 1e10, np.nan, -0.4]], dtype=np.float32)
    b16 = np.array([[1.5, -2.25, 3e38, 1e-3]], dtype=BF16)

    def kernel(i32, f32, b16):
        outs = []
        for src, dt in ((i32, nl.int16), (i32, nl.float32), (f32, nl.int32), (b16, nl.float32),
                        (f32, nl.float8_e4m3)):
            t = nl.ndarray(src.shape, dt, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=src)
            o = nl.ndarray(src.shape, dt, buffer=nl.shared_hbm)
            nisa.dma_copy(dst=o, src=t)
            outs.append(o)
        return tuple(outs)
    (a, b, c, d, e), _ = run(kernel, i32, f32, b16)
    np.testing.assert_array_equal(a, [[32767, -32768, 32767, 5, -3, 32767]])  # saturate
    np.testing.assert_array_equal(b, i32.astype(np.float32))
    assert b[0, 2] == 2 ** 24  # 2**24 + 1 is not an fp32
    np.testing.assert_array_equal(c, [[2, 4, -2, 2 ** 31 - 1, 0, 0]])
    np.testing.assert_array_equal(d, b16.astype(np.float32))
    np.testing.assert_array_equal(e.astype(np.float32)[0, :3], [2.5, 3.5, -2.5])


def test_packed_x4_types_do_not_cast():
    def kernel(a):
        t = nl.ndarray((4, 4), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a)  # <x4>
    with pytest.raises(NkiValidationError, match="packed") as ei:
        run(kernel, np.zeros((4, 4), np.float32))
    assert_located(ei.value, "dma_copy", "# <x4>")

    def same(a):
        t = nl.ndarray((4, 4), nl.float8_e4m3fn_x4, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=a.view(nl.float8_e4m3fn_x4))
        o = nl.ndarray((4, 16), nl.uint8, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o.view(nl.float8_e4m3fn_x4), src=t)
        return o
    a = np.arange(64, dtype=np.uint8).reshape(4, 16)
    out, _ = run(same, a)
    np.testing.assert_array_equal(out, a)


# -- gather / scatter ---------------------------------------------------------------------

def test_gather_rows_with_per_partition_vector_offsets():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((300, 24)).astype(np.float32)
    idx = rng.integers(0, 300, size=(128, 1)).astype(np.uint32)

    def kernel(data, idx):
        P, F = idx.shape[0], data.shape[1]
        i = load_idx(idx, nl.uint32)
        dst = nl.ndarray((P, F), data.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=dst, src=data.ap(pattern=[[F, P], [1, F]], vector_offset=i,
                                           indirect_dim=0))
        out = nl.ndarray((P, F), data.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    out, r = run(kernel, data, idx)
    np.testing.assert_array_equal(out, data[idx[:, 0]])
    g = r.program.instructions[1]
    assert g.queue == "qGpSimdDynamic" and g.attrs["dge_mode"] == "swdge"
    assert g.attrs["indirect"] == "vector" and g.attrs["bytes"] == 128 * 24 * 4
    assert [a.role for a in g.reads] == ["indirect_offset", "src"]
    assert g.reads[1].indirect and g.reads[1].contiguous_bytes == 24 * 4


def test_gather_with_vector_select_and_column_slice_into_bf16():
    data = np.arange(50 * 16, dtype=np.float32).reshape(50, 16) / 7
    idx = np.array([[49], [0], [10], [10], [33], [1]], dtype=np.int32)

    def kernel(data, idx):
        i = load_idx(idx)
        dst = nl.ndarray((6, 8), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=dst, src=data.vector_select(0, i)[:, 4:12])
        out = nl.ndarray((6, 8), nl.bfloat16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    out, _ = run(kernel, data, idx)
    np.testing.assert_array_equal(out.view(np.uint16), rne_bf16_bits(data[idx[:, 0], 4:12]))


def test_scatter_rows_into_hbm():
    src = np.arange(5 * 12, dtype=np.float32).reshape(5, 12) + 100
    idx = np.array([[3], [0], [7], [5], [1]], dtype=np.int32)
    out = np.full((8, 12), -1.0, np.float32)

    def kernel(src, idx, out):
        i = load_idx(idx)
        s = nl.ndarray((5, 12), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=src)
        nisa.dma_copy(dst=out.ap(pattern=[[12, 5], [1, 12]], vector_offset=i, indirect_dim=0),
                      src=s)
    _, r = run(kernel, src, idx, out)
    want = np.full((8, 12), -1.0, np.float32)
    want[idx[:, 0]] = src
    np.testing.assert_array_equal(out, want)
    assert r.program.instructions[-1].attrs["indirect_role"] == "dst"


def _oob_gather(data, idx, prefill, mode):
    P, F = idx.shape[0], data.shape[1]
    i = load_idx(idx)
    dst = nl.ndarray((P, F), data.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=dst, src=prefill)
    nisa.dma_copy(dst=dst, src=data.ap([[F, P], [1, F]], vector_offset=i), oob_mode=mode)  # <oob>
    out = nl.ndarray((P, F), data.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=dst)
    return out


def test_oob_gather_error_names_the_index_and_skip_drops_rows():
    data = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    idx = np.array([[2], [10], [9], [-1], [0]], dtype=np.int32)
    prefill = np.full((5, 4), -7.0, np.float32)
    with pytest.raises(OutOfBoundsError) as ei:
        run(lambda d, i, p: _oob_gather(d, i, p, nisa.oob_mode.error), data, idx, prefill)
    msg = str(ei.value)
    assert "runtime index 10" in msg and "row 1" in msg and "[0, 10)" in msg
    assert "oob_mode" in msg
    assert_located(ei.value, "dma_copy", "# <oob>")
    out, _ = run(lambda d, i, p: _oob_gather(d, i, p, nisa.oob_mode.skip), data, idx, prefill)
    want = prefill.copy()
    for r, j in enumerate(idx[:, 0]):
        if 0 <= j < 10:
            want[r] = data[j]
    np.testing.assert_array_equal(out, want)


def test_oob_scatter_skip_leaves_destination_rows():
    src = np.arange(4 * 3, dtype=np.float32).reshape(4, 3) + 1
    idx = np.array([[1], [6], [0], [100]], dtype=np.int32)
    out = np.zeros((6, 3), np.float32)

    def kernel(src, idx, out, mode):
        i = load_idx(idx)
        s = nl.ndarray((4, 3), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=src)
        nisa.dma_copy(dst=out.vector_select(0, i), src=s, oob_mode=mode)
    run(kernel, src, idx, out, nisa.oob_mode.skip)
    want = np.zeros((6, 3), np.float32)
    want[1], want[0] = src[0], src[2]
    np.testing.assert_array_equal(out, want)
    with pytest.raises(OutOfBoundsError, match="runtime index 6"):
        run(kernel, src, idx, out, nisa.oob_mode.error)


def test_scalar_offset_dynamic_row_select_and_skip():
    a = np.arange(16 * 8, dtype=np.float32).reshape(16, 8)

    def kernel(a, idx, mode):
        i = load_idx(idx)
        dst = nl.ndarray((4, 8), a.dtype, buffer=nl.sbuf)
        nisa.memset(dst=dst, value=-1.0)
        nisa.dma_copy(dst=dst, src=a.ap([[8, 4], [1, 8]], offset=0, scalar_offset=i,
                                        indirect_dim=0), oob_mode=mode)
        out = nl.ndarray((4, 8), a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    out, r = run(kernel, a, np.array([[6]], np.int32), nisa.oob_mode.error)
    np.testing.assert_array_equal(out, a[6:10])
    assert r.program.instructions[2].attrs["indirect"] == "scalar"
    # row 13 + 4 rows runs past the tensor: the whole transfer is skipped
    out, _ = run(kernel, a, np.array([[13]], np.int32), nisa.oob_mode.skip)
    np.testing.assert_array_equal(out, np.full((4, 8), -1.0, np.float32))
    with pytest.raises(OutOfBoundsError, match="outside the 128 elements"):
        run(kernel, a, np.array([[13]], np.int32), nisa.oob_mode.error)
    # dge hwdge rejects vector offsets but takes scalar ones
    def vec_hw(a, idx):
        i = load_idx(idx)
        dst = nl.ndarray((4, 8), a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=dst, src=a.vector_select(0, i), dge_mode=nisa.dge_mode.hwdge)
    with pytest.raises(NkiValidationError, match="vector_offset"):
        run(vec_hw, a, np.zeros((4, 1), np.int32))


# -- dma_transpose ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axes", [((16, 40), (1, 0)), ((4, 3, 24), (2, 1, 0)),
                                        ((4, 2, 3, 16), (3, 1, 2, 0))])
@pytest.mark.parametrize("from_sbuf", [False, True])
def test_dma_transpose_axes(shape, axes, from_sbuf):
    a = (np.arange(np.prod(shape)).reshape(shape) % 251 - 100).astype(BF16)

    def kernel(a):
        src = a
        if from_sbuf:
            src = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=src, src=a)
        tshape = tuple(shape[i] for i in axes)
        dst = nl.ndarray(tshape, a.dtype, buffer=nl.sbuf)
        nisa.dma_transpose(dst=dst, src=src, axes=axes if len(shape) != 3 else None)
        out = nl.ndarray(tshape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    out, r = run(kernel, a)
    np.testing.assert_array_equal(out.view(np.uint16), np.transpose(a, axes).view(np.uint16))
    t = [i for i in r.program if i.opcode == "dma_transpose"][0]
    assert t.attrs["transpose"] is True and t.attrs["axes"] == axes


def test_dma_transpose_errors():
    def kernel(a, b, what):
        t = nl.ndarray((40, 16), nl.bfloat16, buffer=nl.sbuf)
        if what == "dtype":
            f = nl.ndarray((16, 16), nl.float32, buffer=nl.sbuf)
            nisa.dma_transpose(dst=f, src=b[0:16, 0:16],  # <tr-dtype>
                               dge_mode=nisa.dge_mode.hwdge)
        elif what == "rank":
            nisa.dma_transpose(dst=t.reshape((40, 4, 4)), src=a)
        elif what == "axes":
            nisa.dma_transpose(dst=t, src=a, axes=(0, 1))
        elif what == "shape":
            nisa.dma_transpose(dst=nl.ndarray((16, 40), nl.bfloat16), src=a)
        elif what == "hwdge":
            nisa.dma_transpose(dst=nl.ndarray((16, 8), nl.bfloat16), src=a[0:8, 0:16],
                               dge_mode=nisa.dge_mode.hwdge)
        elif what == "skip":
            nisa.dma_transpose(dst=t, src=a, oob_mode=nisa.oob_mode.skip)
    a = np.zeros((16, 40), BF16)
    b = np.zeros((16, 40), np.float32)
    with pytest.raises(NkiValidationError, match="2-byte") as ei:
        run(kernel, a, b, "dtype")
    assert_located(ei.value, "dma_transpose", "# <tr-dtype>")
    for what, pat in [("rank", "same rank"), ("axes", "not supported"),
                      ("shape", "transposed shape"), ("hwdge", "src.shape\\[0\\] == 16"),
                      ("skip", "only valid when src uses indirect")]:
        with pytest.raises(NkiValidationError, match=pat):
            run(kernel, a, b, what)


@pytest.mark.parametrize("ncols", [1, 2])
def test_indirect_gather_transpose(ncols):
    rows = 128 * ncols if ncols > 1 else 32
    P = 32
    rng = np.random.default_rng(3)
    src = rng.standard_normal((300, P)).astype(BF16)
    idx = rng.integers(0, 300, size=(128 if ncols > 1 else 32, ncols)).astype(np.uint32)

    def kernel(src, idx):
        i = load_idx(idx, nl.uint32)
        dst = nl.ndarray((P, rows), src.dtype, buffer=nl.sbuf)
        view = src.ap(pattern=[[P, rows], [1, P]], vector_offset=i, indirect_dim=0)
        nisa.dma_transpose(dst=dst, src=view, axes=(1, 0))
        out = nl.ndarray((P, rows), src.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    out, r = run(kernel, src, idx)
    flat = idx.T.reshape(-1)[:rows]  # column-major flattening of the indices
    np.testing.assert_array_equal(out.view(np.uint16), src[flat].T.view(np.uint16))
    t = r.program.instructions[1]
    assert t.attrs["dge_mode"] == "swdge" and t.queue == "qGpSimdDynamic"
    with pytest.raises(UnsupportedError):
        run(kernel, src, idx, chip="trn1")


# -- dma_compute --------------------------------------------------------------------------

def test_dma_compute_sums_in_fp32_and_casts_once():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((16, 32)).astype(np.float32)
    b = rng.standard_normal((16, 32)).astype(BF16)
    c = (rng.standard_normal((16, 32)) * 1e-3).astype(np.float32)

    def kernel(a, b, c, scales):
        sb = nl.ndarray((16, 32), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=sb, src=b)
        dst = nl.ndarray((16, 32), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_compute(dst=dst, srcs=[a, sb, c], reduce_op=nl.add, scales=scales)
        out = nl.ndarray((16, 32), nl.bfloat16, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=dst)
        return out
    want = rne_bf16_bits((a + b.astype(np.float32)) + c)
    for scales in (None, [1.0, 1.0, 1.0]):
        out, r = run(kernel, a, b, c, scales)
        np.testing.assert_array_equal(out.view(np.uint16), want)
    ins = r.program.instructions[1]
    assert ins.opcode == "dma_compute" and ins.attrs["dge_mode"] == "none"
    assert [x.role for x in ins.reads] == ["srcs[0]", "srcs[1]", "srcs[2]"]
    with pytest.raises(UnsupportedError, match="scale 1.0"):
        run(kernel, a, b, c, [0.5, 1.0, 1.0])

    def bad_op(a):
        d = nl.ndarray((16, 32), nl.float32, buffer=nl.sbuf)
        nisa.dma_compute(dst=d, srcs=[a, a], reduce_op=nl.multiply)  # <mul>
    with pytest.raises(UnsupportedError, match="only nl.add") as ei:
        run(bad_op, a)
    assert_located(ei.value, "dma_compute", "# <mul>")


def test_dma_compute_scatter_and_gather_read_modify_write():
    src = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    idx = np.array([[5], [2], [0], [3]], dtype=np.int32)
    table = np.arange(8 * 6, dtype=np.float32).reshape(8, 6) * 10

    def scatter(src, idx, table):
        i = load_idx(idx)
        s = nl.ndarray((4, 6), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=src)
        rows = table.ap([[6, 4], [1, 6]], vector_offset=i, indirect_dim=0)
        nisa.dma_compute(dst=rows, srcs=[rows, s], reduce_op=nl.add)
    t = table.copy()
    _, r = run(scatter, src, idx, t)
    want = table.copy()
    want[idx[:, 0]] += src
    np.testing.assert_array_equal(t, want)
    assert r.program.instructions[-1].attrs["rmw"] is True
    assert r.program.instructions[-1].queue == "qGpSimdDynamic"

    def gather(src, idx, table):
        i = load_idx(idx)
        acc = nl.ndarray((4, 6), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=acc, src=src)
        nisa.dma_compute(dst=acc, srcs=[table.vector_select(0, i), acc], reduce_op=nl.add)
        out = nl.ndarray((4, 6), src.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=acc)
        return out
    out, _ = run(gather, src, idx, table)
    np.testing.assert_array_equal(out, src + table[idx[:, 0]])

    def nonunique(src, idx, table):
        i = load_idx(idx)
        rows = table.vector_select(0, i)
        s = nl.ndarray((4, 6), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=src)
        nisa.dma_compute(dst=rows, srcs=[rows, s], reduce_op=nl.add, unique_indices=False)
    with pytest.raises(UnsupportedError, match="unique"):
        run(nonunique, src, idx, table.copy())


def test_dma_compute_skip_leaves_oob_rows():
    src = np.ones((3, 4), np.float32)
    idx = np.array([[1], [9], [2]], dtype=np.int32)
    table = np.zeros((4, 4), np.float32)

    def kernel(src, idx, table):
        i = load_idx(idx)
        s = nl.ndarray((3, 4), src.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=src)
        rows = table.vector_select(0, i)
        nisa.dma_compute(dst=rows, srcs=[rows, s], reduce_op=nl.add,
                         oob_mode=nisa.oob_mode.skip)
    run(kernel, src, idx, table)
    np.testing.assert_array_equal(table, [[0] * 4, [1] * 4, [1] * 4, [0] * 4])


# -- timing-only runs ---------------------------------------------------------------------

def test_numerics_off_records_the_same_instructions():
    data = np.zeros((40, 8), np.float32)
    idx = np.zeros((4, 1), np.int32)

    def kernel(data, idx):
        i = load_idx(idx)
        t = nl.ndarray((4, 8), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=data.vector_select(0, i))
        u = nl.ndarray((8, 4), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_transpose(dst=u, src=t)
        nisa.dma_compute(dst=t, srcs=[t, t], reduce_op=nl.add)
    _, on = run(kernel, data, idx)
    _, off = run(kernel, data, idx, numerics=False)
    assert [(i.opcode, i.queue, i.reads, i.writes) for i in on.program] == \
        [(i.opcode, i.queue, i.reads, i.writes) for i in off.program]


# -- nki.language memory ops --------------------------------------------------------------

def test_load_store_and_load_with_cast():
    a = np.random.default_rng(5).standard_normal((64, 20)).astype(np.float32)

    def kernel(a):
        t = nl.load(a)
        u = nl.load(a[0:32, 4:12], dtype=nl.bfloat16)
        o1 = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        nl.store(o1, value=t)
        o2 = nl.ndarray((32, 8), nl.bfloat16, buffer=nl.shared_hbm)
        nl.store(dst=o2, value=u)
        return o1, o2, t.buffer, u.dtype
    (o1, o2, buf, dt), r = run(kernel, a)
    np.testing.assert_array_equal(o1, a)
    np.testing.assert_array_equal(o2.view(np.uint16), rne_bf16_bits(a[0:32, 4:12]))
    assert buf == nl.sbuf and dt == nl.bfloat16
    assert r.program.opcodes() == ["dma_copy"] * 4

    def bad(a, which):
        t = nl.load(a)
        if which == "load":
            nl.load(t)
        else:
            nl.store(t, t)
    for which in ("load", "store"):
        with pytest.raises(NkiValidationError, match="HBM"):
            run(bad, a, which)


def test_load_transpose2d():
    a = np.arange(40 * 24, dtype=np.float32).reshape(40, 24)

    def kernel(a):
        t = nl.load_transpose2d(a)
        u = nl.load_transpose2d(a[0:16, :], dtype=nl.bfloat16)
        o = nl.ndarray((24, 40), a.dtype, buffer=nl.shared_hbm)
        nl.store(o, t)
        o2 = nl.ndarray((24, 16), nl.bfloat16, buffer=nl.shared_hbm)
        nl.store(o2, u)
        return o, o2
    (o, o2), r = run(kernel, a)
    np.testing.assert_array_equal(o, a.T)
    np.testing.assert_array_equal(o2.view(np.uint16), rne_bf16_bits(a[0:16].T))
    assert r.program.instructions[0].reads[0].contiguous_bytes == 4  # element-strided


def test_gather_flattened():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((32, 4, 16)).astype(np.float32)
    idx = rng.integers(0, 64, size=(32, 10)).astype(np.uint32)

    def kernel(data, idx):
        d = nl.load(data)
        i = nl.load(idx)
        g = nl.gather_flattened(data=d, indices=i)
        h = nl.gather_flattened(d, i, dtype=nl.bfloat16)
        o = nl.ndarray((32, 10), nl.float32, buffer=nl.shared_hbm)
        nl.store(o, g)
        o2 = nl.ndarray((32, 10), nl.bfloat16, buffer=nl.shared_hbm)
        nl.store(o2, h)
        return o, o2
    (o, o2), _ = run(kernel, data, idx)
    want = np.take_along_axis(data.reshape(32, 64), idx.astype(np.int64), axis=1)
    np.testing.assert_array_equal(o, want)
    np.testing.assert_array_equal(o2.view(np.uint16), rne_bf16_bits(want))
