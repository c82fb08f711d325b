"""nki.isa misc instructions: max8, nc_find_index8, nc_match_replace8,
nc_stream_shuffle, local_gather, nc_n_gather, sequence_bounds, nonzero_with_count,
topk; NkiInstruction.depends_on; get_nc_version / get_nc_sub_version.

Every expected value comes from a NumPy reference written here from the public
docstrings (not from trnsim).
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError, OutOfBoundsError, UnsupportedError
from kernel_helpers import load, store

BF16 = ml_dtypes.bfloat16


def run(kernel, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)


def opcodes(r):
    return [i.opcode for i in r.program]


# -- max8 ------------------------------------------------------------------------
def ref_max8(x):
    x = x.reshape(x.shape[0], -1).astype(np.float32)
    return np.array([sorted(row.tolist(), reverse=True)[:8] for row in x], np.float32)


def k_max8(a, dst_dtype=nl.float32):
    s = load(a)
    d = nl.ndarray((a.shape[0], 8), dst_dtype, buffer=nl.sbuf)
    nisa.max8(dst=d, src=s)
    return store(d)


def test_max8_random_and_ties():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 40)).astype(np.float32)
    a[3, :] = 5.0                       # all equal: eight 5s
    a[4, [1, 7, 9]] = 100.0             # a tie among the top values
    out, r = run(k_max8, a)
    np.testing.assert_array_equal(out, ref_max8(a))
    assert out[3].tolist() == [5.0] * 8
    assert out[4, :3].tolist() == [100.0] * 3
    assert "max8" in opcodes(r) and r.program.by_engine("vector")[0].opcode == "max8"


def test_max8_bf16_in_3d_and_cast_out():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 4, 5)).astype(BF16)
    out, _ = run(lambda x: k_max8(x, nl.bfloat16), a)
    exp = ref_max8(a.astype(np.float32)).astype(BF16)
    np.testing.assert_array_equal(out.astype(np.float32), exp.astype(np.float32))


@pytest.mark.parametrize("free", [7, 16385])
def test_max8_element_limits(free):
    a = np.zeros((2, free), np.float32)
    with pytest.raises(NkiValidationError, match="between 8 and 16384"):
        run(k_max8, a)


def test_max8_dst_must_hold_8():
    def k(a):
        s = load(a)
        d = nl.ndarray((a.shape[0], 4), nl.float32, buffer=nl.sbuf)
        nisa.max8(dst=d, src=s)
    with pytest.raises(NkiValidationError, match="exactly 8"):
        run(k, np.zeros((2, 16), np.float32))


# -- nc_find_index8 ------------------------------------------------------------------
def ref_find_index8(data, vals, miss):
    out = np.full(vals.shape, miss, dtype=np.int64)
    for p in range(data.shape[0]):
        for i in range(8):
            occurrence = sum(1 for j in range(i) if vals[p, j] == vals[p, i])
            pos = [j for j in range(data.shape[1]) if data[p, j] == vals[p, i]]
            if occurrence < len(pos):
                out[p, i] = pos[occurrence]
    return out


def k_find(data, vals, dtype=nl.uint32):
    d, v = load(data), load(vals)
    idx = nl.ndarray((data.shape[0], 8), dtype, buffer=nl.sbuf)
    nisa.nc_find_index8(dst=idx, data=d, vals=v)
    return store(idx)


def test_find_index8_first_occurrence_duplicates_and_misses():
    data = np.array([[4, 1, 4, 2, 9, 4, 3, 3, 7, 0],
                     [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], np.float32)
    vals = np.array([[4, 4, 3, 99, 4, 4, 0, 7],      # 4th '4' does not exist -> miss
                     [10, 1, 55, 5, 5, 2, 3, 4]], np.float32)
    out, _ = run(k_find, data, vals)
    exp = ref_find_index8(data, vals, 0xFFFFFFFF)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out.astype(np.int64), exp)
    assert out[0].tolist()[:4] == [0, 2, 6, 0xFFFFFFFF]
    assert out[0, 5] == 0xFFFFFFFF and out[1, 2] == 0xFFFFFFFF


def test_find_index8_of_max8_uint16():
    rng = np.random.default_rng(2)
    data = rng.permutation(64 * 4).reshape(4, 64).astype(np.float32)

    def k(a):
        d = load(a)
        m = nl.ndarray((4, 8), nl.float32, buffer=nl.sbuf)
        nisa.max8(dst=m, src=d)
        idx = nl.ndarray((4, 8), nl.uint16, buffer=nl.sbuf)
        nisa.nc_find_index8(dst=idx, data=d, vals=m)
        return store(idx)
    out, _ = run(k, data)
    exp = np.argsort(-data, axis=1)[:, :8]
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, exp)

    miss, _ = run(lambda d, v: k_find(d, v, nl.uint16), data, np.full((4, 8), -1, np.float32))
    assert (miss == 0xFFFF).all()


def test_find_index8_rejects_int32_dst():
    with pytest.raises(NkiValidationError, match="uint16 or uint32"):
        run(lambda d, v: k_find(d, v, nl.int32), np.zeros((1, 8), np.float32),
            np.zeros((1, 8), np.float32))


# -- nc_match_replace8 ------------------------------------------------------------------
def k_replace(data, vals, imm, with_idx=True):
    d, v = load(data), load(vals)
    out = nl.ndarray(data.shape, data.dtype, buffer=nl.sbuf)
    idx = nl.ndarray((data.shape[0], 8), nl.uint32, buffer=nl.sbuf) if with_idx else None
    nisa.nc_match_replace8(dst=out, data=d, vals=v, imm=imm, dst_idx=idx)
    return (store(out), store(idx)) if with_idx else store(out)


def test_match_replace8_doc_example_duplicates_reverse_order():
    data = np.array([[1, 2, 3, 4, 8, 8, 8, 8, 8, 8, 8]], np.float32)
    vals = np.array([[3, 8, 8, 8, 8, 8, 8, 8]], np.float32)
    (out, idx), _ = run(k_replace, data, vals, -1.0)
    assert idx.tolist() == [[2, 10, 9, 8, 7, 6, 5, 4]]
    assert out.tolist() == [[1, 2, -1, 4] + [-1] * 7]


def test_match_replace8_top8_to_minus_inf():
    rng = np.random.default_rng(3)
    a = rng.random((8, 32)).astype(np.float32)

    def k(x):
        d = load(x)
        m = nl.ndarray((8, 8), nl.float32, buffer=nl.sbuf)
        nisa.max8(dst=m, src=d)
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        idx = nl.ndarray((8, 8), nl.uint32, buffer=nl.sbuf)
        nisa.nc_match_replace8(dst=out, data=d, vals=m, imm=float("-inf"), dst_idx=idx)
        return store(out), store(idx)
    (out, idx), _ = run(k, a)
    top = np.argsort(-a, axis=1)[:, :8]
    exp = a.copy()
    np.put_along_axis(exp, top, -np.inf, axis=1)
    np.testing.assert_array_equal(out, exp)
    np.testing.assert_array_equal(idx, top)


def test_match_replace8_miss_leaves_data_and_bf16_dst():
    data = np.arange(16, dtype=np.float32).reshape(1, 16).astype(BF16)
    vals = np.array([[3, 100, 5, 200, 7, 300, 9, 400]], np.float32)

    def k(d_, v_):
        d, v = load(d_), load(v_)
        out = nl.ndarray(d_.shape, nl.bfloat16, buffer=nl.sbuf)
        idx = nl.ndarray((1, 8), nl.uint32, buffer=nl.sbuf)
        nisa.nc_match_replace8(dst=out, data=d, vals=v, imm=0.5, dst_idx=idx)
        return store(out), store(idx)
    (out, idx), _ = run(k, data, vals)
    exp = np.arange(16, dtype=np.float32)
    exp[[3, 5, 7, 9]] = 0.5
    np.testing.assert_array_equal(out.astype(np.float32)[0], exp)
    assert idx[0].tolist() == [3, 0xFFFFFFFF, 5, 0xFFFFFFFF, 7, 0xFFFFFFFF, 9, 0xFFFFFFFF]


# -- nc_stream_shuffle ------------------------------------------------------------------
def test_stream_shuffle_rotate_each_quadrant():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((128, 6)).astype(np.float32)
    mask = [(i - 1) % 32 for i in range(32)]

    def k(x):
        s = load(x)
        d = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.nc_stream_shuffle(dst=d, src=s, shuffle_mask=mask)
        return store(d)
    out, r = run(k, a)
    exp = np.empty_like(a)
    for q in range(4):
        for i in range(32):
            exp[q * 32 + i] = a[q * 32 + mask[i]]
    np.testing.assert_array_equal(out, exp)
    assert r.program.instructions[-2].engine == "vector"


def test_stream_shuffle_broadcast_and_keep_255():
    a = np.arange(8, dtype=np.float32).reshape(1, 8)
    mask = [0] * 32
    mask[5] = 255
    mask[6] = 255

    def k(x):
        s = load(x)
        d = nl.ndarray((32, 8), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=d, value=-7.0)
        nisa.nc_stream_shuffle(dst=d, src=s, shuffle_mask=mask)
        return store(d)
    out, _ = run(k, a)
    exp = np.tile(a, (32, 1))
    exp[5] = exp[6] = -7.0
    np.testing.assert_array_equal(out, exp)


def test_stream_shuffle_start_partition_rule():
    def k(x):
        s = load(x)
        big = nl.ndarray((128, 4), nl.float32, buffer=nl.sbuf)
        nisa.nc_stream_shuffle(dst=big[16:48, :], src=s, shuffle_mask=list(range(32)))
    with pytest.raises(NkiValidationError, match="must start at one of"):
        run(k, np.zeros((32, 4), np.float32))


def test_stream_shuffle_bad_mask():
    def k(x):
        s = load(x)
        nisa.nc_stream_shuffle(dst=s, src=s, shuffle_mask=[40] * 32)
    with pytest.raises(NkiValidationError, match="255"):
        run(k, np.zeros((32, 4), np.float32))


# -- local_gather / nc_n_gather -----------------------------------------------------------
def ref_local_gather(src, index, E, nv):
    P = src.shape[0]
    flat = src.reshape(P, -1)
    out = np.empty((P, nv * E), src.dtype)
    for c in range(P // 16):
        idx1d = index[c * 16:(c + 1) * 16].reshape(16, -1).flatten(order="F")[:nv]
        for p in range(c * 16, (c + 1) * 16):
            out[p] = np.concatenate([flat[p, i:i + E] for i in idx1d])
    return out


@pytest.mark.parametrize("E,nv", [(1, None), (2, 40), (4, 7)])
def test_local_gather(E, nv):
    rng = np.random.default_rng(5)
    src = (rng.random((32, 16, 4)) * 100).astype(np.float32)
    per_core = rng.integers(0, 64 // E, size=(16, 3)).astype(np.uint16) * E
    index = np.concatenate([per_core, (per_core + E) % 64]).astype(np.uint16)
    n = nv or 48

    def k(s_, i_):
        s, i = load(s_), load(i_)
        d = nl.ndarray((32, n * E), nl.float32, buffer=nl.sbuf)
        nisa.local_gather(dst=d, src_buffer=s, index=i, num_elem_per_idx=E,
                          num_valid_indices=nv)
        return store(d)
    out, r = run(k, src, index)
    np.testing.assert_array_equal(out, ref_local_gather(src, index, E, n))
    assert [i.engine for i in r.program if i.opcode == "local_gather"] == ["gpsimd"]


def test_local_gather_limits():
    def k(s_, i_, E=3):
        s, i = load(s_), load(i_)
        d = nl.ndarray((16, 16), nl.float32, buffer=nl.sbuf)
        nisa.local_gather(dst=d, src_buffer=s, index=i, num_elem_per_idx=E)
    with pytest.raises(NkiValidationError, match="num_elem_per_idx"):
        run(k, np.zeros((16, 8), np.float32), np.zeros((16, 1), np.uint16))
    with pytest.raises(NkiValidationError, match="uint16"):
        run(lambda s, i: k(s, i, 1), np.zeros((16, 8), np.float32),
            np.zeros((16, 1), np.int32))
    with pytest.raises(OutOfBoundsError):
        run(lambda s, i: k(s, i, 1), np.zeros((16, 8), np.float32),
            np.full((16, 1), 8, np.uint16))


def test_nc_n_gather():
    rng = np.random.default_rng(6)
    data = rng.standard_normal((8, 4, 10)).astype(np.float32)
    ind = rng.integers(0, 40, size=(8, 24)).astype(np.uint32)

    def k(d_, i_):
        d, i = load(d_), load(i_)
        out = nl.ndarray((8, 24), nl.float32, buffer=nl.sbuf)
        nisa.nc_n_gather(dst=out, data=d, indices=i)
        return store(out)
    out, _ = run(k, data, ind)
    flat = data.reshape(8, 40)
    np.testing.assert_array_equal(out, np.array([flat[p, ind[p]] for p in range(8)]))
    with pytest.raises(OutOfBoundsError):
        run(k, data, np.full((8, 24), 40, np.uint32))


# -- sequence_bounds ------------------------------------------------------------------
def ref_bounds(seq):
    n = len(seq)
    start, end = [0] * n, [0] * n
    for i in range(n):
        if seq[i] == 0:
            start[i], end[i] = n, -1
            continue
        j = i
        while j > 0 and seq[j - 1] == seq[i]:
            j -= 1
        k = i
        while k + 1 < n and seq[k + 1] == seq[i]:
            k += 1
        start[i], end[i] = j, k + 1
    return np.array([start, end])


def k_bounds(ids):
    s = load(ids)
    d = nl.ndarray((1, 2, ids.shape[1]), ids.dtype, buffer=nl.sbuf)
    nisa.sequence_bounds(dst=d, segment_ids=s)
    return store(d)


def test_sequence_bounds_doc_example():
    ids = np.array([[0, 1, 1, 2, 2, 2, 0, 3, 3]], np.int32)
    out, _ = run(k_bounds, ids)
    assert out[0].tolist() == [[9, 1, 1, 3, 3, 3, 9, 7, 7], [-1, 3, 3, 6, 6, 6, -1, 9, 9]]


def test_sequence_bounds_random_float32():
    rng = np.random.default_rng(7)
    ids = np.sort(rng.integers(0, 12, size=48)).astype(np.float32).reshape(1, 48)
    out, _ = run(k_bounds, ids)
    np.testing.assert_array_equal(out[0], ref_bounds(ids[0].tolist()).astype(np.float32))


def test_sequence_bounds_partition_must_be_1():
    with pytest.raises(NkiValidationError, match="partition dimension must be 1"):
        run(k_bounds, np.ones((2, 8), np.int32))


# -- nonzero_with_count -----------------------------------------------------------------
def k_nonzero(x, offset=0, pad=-1):
    s = load(x)
    d = nl.ndarray((x.shape[0], x.shape[1] + 1), nl.int32, buffer=nl.sbuf)
    nisa.memset(dst=d, value=77)
    nisa.nonzero_with_count(dst=d, src=s, index_offset=offset, padding_val=pad)
    return store(d)


def test_nonzero_with_count_doc_example_and_partitions():
    rng = np.random.default_rng(8)
    x = (rng.random((128, 8)) < 0.4).astype(np.float32) * rng.standard_normal((128, 8))
    x = x.astype(np.float32)
    x[0] = [0, 1, 1, 0, 0, 1, 0, 0]
    x[16] = 0.0                       # no nonzero: all padding, count 0
    x[32] = [0, -0.0, np.nan, 0, 0, 0, 0, 3]
    out, r = run(k_nonzero, x, 16, -1)
    assert out[0].tolist() == [17, 18, 21, -1, -1, -1, -1, -1, 3]
    for p in range(128):
        if p % 16:
            assert (out[p] == 77).all(), p          # other partitions untouched
            continue
        nz = [i + 16 for i in range(8) if x[p, i] != 0 or np.isnan(x[p, i])]
        assert out[p].tolist() == nz + [-1] * (8 - len(nz)) + [len(nz)], p
    assert out[16].tolist() == [-1] * 8 + [0]
    assert out[32].tolist() == [18, 23] + [-1] * 6 + [2]
    assert [i.engine for i in r.program if i.opcode == "nonzero_with_count"] == ["gpsimd"]


def test_nonzero_with_count_int32_padding_and_trn1():
    x = np.array([[5, 0, 0, -2]] * 16, np.int32)
    out, _ = run(lambda a: k_nonzero(a, 0, 99), x)
    assert out[0].tolist() == [0, 3, 99, 99, 2]
    with pytest.raises(UnsupportedError, match="NeuronCore-v3"):
        run(k_nonzero, x, chip="trn1")


# -- topk ----------------------------------------------------------------------------
def ref_topk_snake(src, n, K):
    """Ascending top-K of each 16-partition snake, written back as a snake:
    (values[P, ceil(K/16)], indices, written-mask)."""
    P = src.shape[0]
    cols = -(-K // 16)
    vals = np.zeros((P, cols), np.float32)
    idxs = np.zeros((P, cols), np.int64)
    written = np.zeros((P, cols), bool)
    for g in range(P // 16):
        elems = [float(src[g * 16 + e % 16, e // 16]) for e in range(n)]
        ranked = sorted(range(n), key=lambda e: (-elems[e], e))[:K]   # descending
        asc = ranked[::-1]
        for pos, e in enumerate(asc):
            vals[g * 16 + pos % 16, pos // 16] = elems[e]
            idxs[g * 16 + pos % 16, pos // 16] = e
            written[g * 16 + pos % 16, pos // 16] = True
    return vals, idxs, written


@pytest.mark.parametrize("n,K", [(42, 8), (64, 20), (40, 16)])
def test_topk_snake(n, K):
    rng = np.random.default_rng(9)
    src = rng.standard_normal((32, -(-n // 16))).astype(BF16)
    src[0, 0] = src[1, 0] = BF16(9.0)            # tie inside group 0

    def k(s_):
        s = load(s_)
        v = nl.ndarray((32, K), nl.bfloat16, buffer=nl.sbuf)
        i = nl.ndarray((32, K), nl.uint32, buffer=nl.sbuf)
        nisa.memset(dst=v, value=-5.0)
        nisa.memset(dst=i, value=12345)
        nisa.topk(val_dst=v, idx_dst=i, src=s, n=n)
        return store(v), store(i)
    (v, i), r = run(k, src)
    ev, ei, w = ref_topk_snake(src, n, K)
    cols = ev.shape[1]
    np.testing.assert_array_equal(v[:, :cols].astype(np.float32)[w], ev[w])
    np.testing.assert_array_equal(i[:, :cols].astype(np.int64)[w], ei[w])
    assert (v[:, :cols].astype(np.float32)[~w] == -5.0).all()   # unwritten slots kept
    assert (v[:, cols:].astype(np.float32) == -5.0).all()
    assert (i[:, cols:] == 12345).all()
    top = next(x for x in r.program if x.opcode == "topk")
    assert top.engine == "gpsimd" and top.attrs["n"] == n and top.attrs["k"] == K


def test_topk_constraints():
    def k(s_, n, K=8, P=32):
        s = load(s_)
        v = nl.ndarray((P, K), nl.bfloat16, buffer=nl.sbuf)
        i = nl.ndarray((P, K), nl.uint32, buffer=nl.sbuf)
        nisa.topk(val_dst=v, idx_dst=i, src=s, n=n)
    src = np.zeros((32, 3), BF16)
    with pytest.raises(NkiValidationError, match="8 <= n"):
        run(lambda s: k(s, 7), src)
    with pytest.raises(NkiValidationError, match="ceil"):
        run(lambda s: k(s, 64), src)
    with pytest.raises(NkiValidationError, match="multiple of 16"):
        run(lambda s: k(s, 40, P=24), np.zeros((24, 3), BF16))
    with pytest.raises(NkiValidationError, match="bfloat16"):
        run(lambda s: k(s, 40), np.zeros((32, 3), np.float32))


# -- handles, dependencies, versions, numerics off ---------------------------------------
def test_depends_on_records_edges_and_checks_loop_nesting():
    def k(a):
        s = load(a)
        d = nl.ndarray((a.shape[0], 8), nl.float32, buffer=nl.sbuf)
        first = nisa.max8(dst=d, src=s)
        second = nisa.max8(dst=d, src=s)
        assert isinstance(first, nisa.NkiInstruction)
        assert second.depends_on(first) is second
        inner = []
        nl.fori_loop(0, 1, lambda i: inner.append(nisa.max8(dst=d, src=s)))
        inner[0].depends_on(first)          # producer in an enclosing scope: allowed
        with pytest.raises(NkiValidationError, match="dynamic-loop nesting"):
            first.depends_on(inner[0])
        return store(d)
    _, r = run(k, np.ones((2, 16), np.float32))
    m = [i for i in r.program if i.opcode == "max8"]
    assert m[1].attrs["depends_on"] == [m[0].index]
    assert m[2].attrs["depends_on"] == [m[0].index]
    assert "depends_on" not in m[0].attrs


@pytest.mark.parametrize("chip,gen", [("trn1", 2), ("trn2", 3), ("trn3", 4)])
def test_get_nc_version(chip, gen):
    seen = {}

    def k(a):
        seen["v"], seen["sub"] = nisa.get_nc_version(), nisa.get_nc_sub_version()
        return a
    run(k, np.zeros(1, np.float32), chip=chip)
    assert seen["v"] is nisa.nc_version(gen) and seen["v"].value == gen
    assert seen["sub"] == 0


def test_numerics_off_records_every_instruction():
    def tile(shape, dtype):
        t = nl.ndarray(shape, dtype, buffer=nl.sbuf)
        nisa.memset(dst=t, value=0)
        return t

    def k(a, ids, idx16):
        s = load(a)
        m = nl.ndarray((16, 8), nl.float32, buffer=nl.sbuf)
        nisa.max8(dst=m, src=s)
        i = nl.ndarray((16, 8), nl.uint32, buffer=nl.sbuf)
        nisa.nc_find_index8(dst=i, data=s, vals=m)
        o = nl.ndarray((16, 32), nl.float32, buffer=nl.sbuf)
        nisa.nc_match_replace8(dst=o, data=s, vals=m, imm=0.0, dst_idx=i)
        nisa.nc_stream_shuffle(dst=o, src=s, shuffle_mask=[255] * 16 + list(range(16)))
        g = nl.ndarray((16, 32), nl.float32, buffer=nl.sbuf)
        nisa.nc_n_gather(dst=g, data=s, indices=tile((16, 32), nl.uint32))
        nisa.local_gather(dst=g[:, 0:16], src_buffer=s, index=load(idx16))
        sb = nl.ndarray((1, 2, 8), nl.int32, buffer=nl.sbuf)
        nisa.sequence_bounds(dst=sb, segment_ids=load(ids))
        nz = nl.ndarray((16, 33), nl.int32, buffer=nl.sbuf)
        nisa.nonzero_with_count(dst=nz, src=s)
        nisa.topk(val_dst=tile((16, 4), nl.bfloat16), idx_dst=tile((16, 4), nl.uint32),
                  src=tile((16, 3), nl.bfloat16), n=40)
    args = (np.zeros((16, 32), np.float32), np.zeros((1, 8), np.int32),
            np.zeros((16, 1), np.uint16))
    _, r = run(k, *args, numerics=False)
    ops = opcodes(r)
    for name in ("max8", "nc_find_index8", "nc_match_replace8", "nc_stream_shuffle",
                 "nc_n_gather", "local_gather", "sequence_bounds", "nonzero_with_count",
                 "topk"):
        assert name in ops, name
    mr = next(i for i in r.program if i.opcode == "nc_match_replace8")
    assert [a.role for a in mr.writes] == ["dst", "dst_idx"]
