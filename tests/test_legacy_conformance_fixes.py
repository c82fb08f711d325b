"""Regression tests for the fixes that let the public legacy (`neuronxcc.nki`) kernels and
the SDK's legacy per-op tests run on trnsim. Each test is a small kernel of my own with
the pattern those kernels use, checked against a NumPy reference written here:

- `nki.jit(mode='trace')` (NKI 0.1 sub-kernels, SDK migration guide);
- an index tile on a dim after integer-indexed dims: `t[b, idx_tile, i_f]` gathers rows;
- `nl.mgrid` is dense like numpy.mgrid (every component has the whole grid's shape);
- an access of a block tensor keeps its partition dim: `t[h][i, :, 0]` is [P, 1];
- PSUM operands of affine_select / nc_matmul are staged through SBUF;
- compile-time bool masks (`mask=True` runs, `mask=False` skips);
- `buf[...] = nl.loop_reduce(x, ...)` reduces into buf (the destination is op's input);
- `nisa.tensor_tensor` broadcasts a [P, 1] operand along the free axes;
- nl arithmetic broadcasts a one-partition tile across partitions;
- a NumPy scalar kernel argument is a scalar, not an HBM tensor;
- ml_dtypes scalars (`nl.finfo(nl.bfloat16).min`) are numbers for immediates;
- SBUF overflow retried with compiler (last-use) liveness.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from trnsim.legacy import compiler as ncc  # noqa: F401 - the legacy import set
from trnsim.legacy import isa as nisa
from trnsim.legacy import jit as lj
from trnsim.legacy import language as nl
from trnsim.machine.errors import CapacityError, NkiValidationError

RNG = np.random.default_rng(77)


def rand(*shape, lo=-2.0, hi=2.0, dtype=np.float32):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def hbm(shape, dtype=nl.float32):
    return nl.ndarray(shape, dtype, buffer=nl.shared_hbm)


# -- entry points -----------------------------------------------------------------------
def test_jit_mode_trace_subkernel_is_inlined():
    @lj.jit(mode="trace")
    def scale_into(dst, src, k):
        dst[...] = nl.multiply(src, k)

    @lj.jit
    def k(a):
        out = hbm(a.shape)
        x = nl.load(a)
        y = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        scale_into(y, x, 3.0)
        nl.store(out, y)
        return out

    a = rand(16, 32)
    assert k.mode == "auto" and scale_into.mode == "trace"
    np.testing.assert_allclose(k(a), a * 3.0, rtol=1e-6)
    with pytest.raises(ValueError, match="mode='bogus'"):
        lj.jit(mode="bogus")(lambda a: a)


def test_numpy_scalar_argument_is_a_scalar():
    def k(a, s):
        assert isinstance(s, np.float32)  # not an HBM tensor
        out = hbm(a.shape)
        nl.store(out, nisa.tensor_scalar(nl.load(a), np.add, s))
        return out

    a = rand(8, 16)
    out, _ = lj.run_legacy(k, (a, np.float32(-1.5)))
    np.testing.assert_allclose(out, a - 1.5, rtol=1e-6)


# -- indexing ---------------------------------------------------------------------------
def test_index_tile_after_integer_dims_gathers_rows():
    data = rand(3, 40, 24)
    rows = np.array([5, 0, 39, 17, 17, 2], np.int32)

    def k(d, idx):
        out = hbm((6, 24))
        i_p = nl.arange(6)[:, None]
        i_f = nl.arange(24)[None, :]
        it = nl.load(idx[i_p, 0])
        nl.store(out, nl.load(d[2, it, i_f]))  # batch 2, rows picked at run time
        return out

    out, _ = lj.run_legacy(k, (data, rows.reshape(6, 1)))
    np.testing.assert_array_equal(out, data[2][rows])


def test_mgrid_components_are_dense():
    seen = {}

    def k(a):
        g = nl.mgrid[0:8, 0:3, 0:5]
        seen["shapes"] = [c.shape for c in g]
        # an iota over an expression of the last two components alone is [8, 3, 5]
        t = nisa.iota(5 * g.x + g.y, dtype=nl.int32)
        seen["tile"] = t.shape
        out = hbm((8, 15), nl.int32)
        nl.store(out, t.reshape((8, 15)) if hasattr(t, "reshape") else t)
        return out

    out, _ = lj.run_legacy(k, (rand(1, 1),))
    assert seen["shapes"] == [(8, 3, 5)] * 3 and seen["tile"] == (8, 3, 5)
    ref = np.broadcast_to((5 * np.arange(3)[:, None] + np.arange(5)).reshape(1, 15), (8, 15))
    np.testing.assert_array_equal(out, ref)


def test_block_tensor_access_keeps_partition_dim():
    col = rand(2, 3, 16, 1)

    def k(c):
        out = hbm((16, 6))
        blk = nl.ndarray((2, 3, nl.par_dim(16), 1), dtype=nl.float32)
        for h in nl.affine_range(2):
            for i in nl.affine_range(3):
                blk[h, i, :, :] = nl.load(c[h, i])
        one_head = blk[1]  # an Access of the remaining (3, P, 1) dims
        t = nl.ndarray((16, 6), dtype=nl.float32, buffer=nl.sbuf)
        for i in nl.affine_range(3):
            assert one_head[i, :, 0].shape == (16, 1)
            t[:, i:i + 1] = nl.copy(one_head[i, :, 0])
            t[:, 3 + i:4 + i] = nl.copy(blk[0][i, :, 0])
        nl.store(out, t)
        return out

    out, _ = lj.run_legacy(k, (col,))
    ref = np.concatenate([col[1, :, :, 0].T, col[0, :, :, 0].T], axis=1)
    np.testing.assert_array_equal(out, ref)


# -- operands in PSUM -------------------------------------------------------------------
def test_psum_operands_of_affine_select_and_matmul_go_through_sbuf():
    a, b = rand(32, 32), rand(32, 48)

    def k(x, y):
        out1, out2 = hbm((32, 32)), hbm((32, 48))
        xt = nisa.nc_transpose(nl.load(x))  # Tensor Engine: the result is in PSUM
        i_p, i_f = nl.mgrid[0:32, 0:32]
        sel = nl.ndarray((32, 32), dtype=nl.float32, buffer=nl.sbuf)
        sel[...] = nisa.affine_select(i_p >= i_f, xt, -5.0)  # on_true_tile in PSUM
        nl.store(out1, sel)
        res = nl.ndarray((32, 48), dtype=nl.float32, buffer=nl.psum)
        res[...] = nisa.nc_matmul(xt, nl.load(y))  # stationary in PSUM
        nl.store(out2, nl.copy(res))
        return out1, out2

    (o1, o2), r = lj.run_legacy(k, (a, b))
    np.testing.assert_array_equal(o1, np.where(np.tri(32, dtype=bool), a.T, -5.0))
    np.testing.assert_allclose(o2, a @ b, rtol=1e-5, atol=1e-5)
    ops = [i.opcode for i in r.program]
    gp = ops.index("affine_select")
    assert ops[gp - 1] == "tensor_copy"  # the staging copy, recorded


# -- masks --------------------------------------------------------------------------------
def test_compile_time_bool_masks():
    a = rand(16, 8)

    def k(x):
        out = hbm((16, 8))
        t = nl.load(x)
        r = nl.ndarray((16, 8), dtype=nl.float32, buffer=nl.sbuf)
        r[...] = nl.multiply(t, 2.0, mask=True)  # runs
        r[...] = nl.multiply(t, 100.0, mask=False)  # does not run
        r[...] = nl.add(r, 1.0, mask=(16 > 4) & (3 < 1))  # a False conjunction
        i_p = nl.arange(16)[:, None]
        r[...] = nl.add(r, 0.5, mask=(i_p < 4) & True)
        nl.store(out, r)
        return out

    out, run = lj.run_legacy(k, (a,))
    ref = a * 2.0
    ref[:4] += 0.5
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    assert sum(i.opcode == "tensor_scalar" for i in run.program) == 2


# -- loop_reduce into a destination -------------------------------------------------------
def test_loop_reduce_assigned_to_a_tile_reduces_into_it():
    x = rand(3, 4, 16, 8)  # (k loop, q tiles, P, F)

    def k(a):
        out = hbm((4, 16, 8))
        acc = nl.zeros((4, nl.par_dim(16), 8), dtype=nl.float32)
        for kk in nl.affine_range(3):
            for q in nl.affine_range(4):  # another loop inside the reduced one
                t = nl.load(a[kk, q])
                acc[q, :, :] = nl.loop_reduce(t, op=np.add, loop_indices=(kk,))
        for q in nl.affine_range(4):
            nl.store(out[q], acc[q, :, :])
        return out

    out, _ = lj.run_legacy(k, (x,))
    np.testing.assert_allclose(out, x.sum(axis=0), rtol=1e-6)


# -- broadcasting ---------------------------------------------------------------------------
def test_tensor_tensor_broadcasts_a_column_along_free_axes():
    a, c = rand(64, 40), rand(64, 1)

    def k(x, y):
        out1, out2 = hbm((64, 40)), hbm((64, 40))
        xt, yt = nl.load(x), nl.load(y)
        nl.store(out1, nisa.tensor_tensor(xt, yt, np.multiply))
        nl.store(out2, nisa.tensor_tensor(yt, xt, np.subtract))
        return out1, out2

    (o1, o2), r = lj.run_legacy(k, (a, c))
    np.testing.assert_allclose(o1, a * c, rtol=1e-6)
    np.testing.assert_allclose(o2, c - a, rtol=1e-6)
    assert [i.opcode for i in r.program].count("tensor_tensor") == 2


def test_one_partition_tile_broadcasts_across_partitions():
    a, row, one = rand(32, 24), rand(1, 24), rand(1, 1)

    def k(x, r, s):
        o1, o2, o3 = hbm((32, 24)), hbm((32, 24)), hbm((32, 24))
        xt, rt, st = nl.load(x), nl.load(r), nl.load(s)
        nl.store(o1, nl.add(xt, rt))
        nl.store(o2, nl.subtract(rt, xt))
        nl.store(o3, nl.multiply(xt[:, 0:1], rt) + st)
        return o1, o2, o3

    (o1, o2, o3), _ = lj.run_legacy(k, (a, row, one))
    np.testing.assert_allclose(o1, a + row, rtol=1e-6)
    np.testing.assert_allclose(o2, row - a, rtol=1e-6)
    np.testing.assert_allclose(o3, a[:, :1] * row + one, rtol=1e-6)


# -- immediates ---------------------------------------------------------------------------------
def test_ml_dtypes_scalar_immediates():
    lo = nl.finfo(nl.bfloat16).min
    assert isinstance(lo, ml_dtypes.bfloat16)

    def k(x):
        out = hbm((16, 8), nl.bfloat16)
        t = nl.full((16, 8), dtype=nl.bfloat16, fill_value=lo)
        t[0:4, :] = nl.load(x[0:4, :])
        nl.store(out, t)
        return out

    a = rand(4, 8).astype(ml_dtypes.bfloat16)
    out, _ = lj.run_legacy(k, (np.concatenate([a, np.zeros((12, 8), a.dtype)]),))
    ref = np.full((16, 8), lo, ml_dtypes.bfloat16)
    ref[:4] = a
    np.testing.assert_array_equal(out.view(np.uint16), ref.view(np.uint16))


# -- on-chip capacity: compiler liveness ----------------------------------------------------------
KIB = 1024
F = 18 * KIB  # fp32 elements: 72 KiB per partition; 3 tiles exceed trn2's 208 KiB, 2 fit


def test_tiles_python_still_holds_are_freed_after_their_last_use():
    a = rand(128, F)
    calls = []

    @lj.jit(platform_target="trn2")
    def k(x):
        calls.append(1)
        out = hbm((128, F))
        for i in nl.sequential_range(4):
            big = nl.load(x)  # Python keeps the previous big tile until this returns
            tmp = nl.multiply(big, float(i + 1))
            nl.store(out, tmp)
        return out

    out = k(a)  # 3 tiles live under Python liveness; at most 2 after their last use
    np.testing.assert_allclose(out, a * 4.0, rtol=1e-6)
    assert len(calls) == 1
    plan = k.last_run.program.memory
    assert plan.peak[("sbuf", 0)] == 2 * F * 4 and plan.spills == []


def test_live_tiles_loaded_from_hbm_that_do_not_fit_are_read_again():
    @lj.jit(platform_target="trn2")
    def k(x):
        keep = []
        for i in nl.affine_range(4):
            t = nl.load(x[i])  # a different tile each time (a repeated load is hoisted)
            keep.append(t)
        out = hbm((4, 128, F))
        for i, t in enumerate(keep):  # every tile is used at the end: all live
            nl.store(out[i], t)
        return out

    a = np.stack([rand(128, F) for _ in range(4)])
    np.testing.assert_array_equal(k(a), a)
    kinds = [i.attrs.get("spill") for i in k.last_run.program]
    # 2 of the 4 tiles fit; the others still equal x, so they are dropped, not saved
    assert kinds.count("save") == 0 and kinds.count("reload") == 2


def test_kernel_writing_its_argument_runs_once():
    calls = []

    @lj.jit(platform_target="trn2")
    def k(x):
        calls.append(1)
        nl.store(x, nl.multiply(nl.load(x), 2.0))  # writes the argument in place
        for i in nl.sequential_range(4):
            big = nl.load(x)
            tmp = nl.add(big, 0.0)
            nl.store(x, tmp)
        return x

    a = rand(128, F)
    want = a * 2.0
    np.testing.assert_array_equal(k(a), want)
    assert len(calls) == 1


def test_bad_mask_still_rejected():
    def k(x):
        nl.add(nl.load(x), 1.0, mask="yes")

    with pytest.raises(NkiValidationError, match="mask"):
        lj.run_legacy(k, (rand(4, 4),))


# -- reductions over non-trailing free axes --------------------------------------------------
def test_reduction_over_non_trailing_axes_of_an_access_pattern():
    x = rand(16, 6, 8)

    def k(a):
        o1, o2 = hbm((16, 3, 2)), hbm((16, 3, 2))
        t = nl.load(a)
        i0, i1, i2, i3, i4 = nl.mgrid[0:16, 0:3, 0:2, 0:2, 0:4]
        win = t[i0, 2 * i1 + i2, 4 * i3 + i4]  # [16, 3, 2, 2, 4] windows
        nl.store(o1, nl.sum(win, axis=[2, 4]))
        m = nl.max(win, axis=(2, 4), keepdims=True)  # [16, 3, 1, 2, 1]
        nl.store(o2, m.reshape((16, 3, 2)) if hasattr(m, "reshape") else m)
        return o1, o2

    (o1, o2), _ = lj.run_legacy(k, (x,))
    w = x.reshape(16, 3, 2, 2, 4)
    np.testing.assert_allclose(o1, w.sum(axis=(2, 4)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(o2, w.max(axis=(2, 4)))


def test_one_dimensional_access_loads_as_a_column_tile():
    a = rand(40, 6)

    def k(x):
        out = hbm((40, 1))
        col = nl.load(x[0:40, 4])  # a 1-D access: [40] -> a [40, 1] tile
        assert col.shape == (40, 1)
        nl.store(out, nl.multiply(col, 2.0))
        return out

    out, _ = lj.run_legacy(k, (a,))
    np.testing.assert_allclose(out[:, 0], a[:, 4] * 2.0, rtol=1e-6)


# -- tile methods on an indexed tile ----------------------------------------------------------
def test_tensor_methods_on_an_indexed_tile():
    a = rand(32, 4)

    def k(x):
        out = hbm((32, 16))
        t = nl.load(x)
        wide = t[:, 2].broadcast_to((32, 16))  # column 2 along the free axis
        nl.store(out, wide)
        assert t[:, 0:2].ndim == 2 and t[:, 0:2].astype(nl.bfloat16).dtype == nl.bfloat16
        return out

    out, _ = lj.run_legacy(k, (a,))
    np.testing.assert_array_equal(out, np.repeat(a[:, 2:3], 16, axis=1))


# -- direct allocation ------------------------------------------------------------------------
def test_alloc_func_called_with_documented_parameter_names():
    import functools

    seen = []

    def place(bank_map, idx, pdim_size, fdim_size):
        seen.append((idx, pdim_size, fdim_size))
        return (bank_map[idx], 0, 0)

    def k(x):
        out = hbm((2, 16, 64))
        ps = nl.ndarray((2, nl.par_dim(16), 64), dtype=nl.float32,
                        buffer=ncc.psum.alloc(functools.partial(place, bank_map={(0,): 3, (1,): 5})))
        for i in nl.affine_range(2):
            ps[i, :, :] = nl.multiply(nl.load(x[i]), float(i + 1))
            nl.store(out[i], nl.copy(ps[i, :, :]))
        return out

    a = rand(2, 16, 64)
    out, run = lj.run_legacy(k, (a,))
    assert seen == [((0,), 16, 256), ((1,), 16, 256)]
    np.testing.assert_allclose(out, a * np.array([1.0, 2.0])[:, None, None], rtol=1e-6)
    banks = {w.lo // 2048 for ins in run.program for w in ins.writes if w.space == "psum"}
    assert banks == {3, 5}


def test_direct_allocation_in_a_loop_is_placed_once():
    addrs = []

    def k(x):
        out = hbm((4, 16, 8))
        cur = 0
        for i in nl.affine_range(4):
            t = nl.ndarray((nl.par_dim(16), 8), dtype=nl.float32,
                           buffer=ncc.sbuf.mod_alloc(base_addr=cur))
            cur += 200 * 1024  # the body is traced once: this advance happens once
            t[...] = nl.add(nl.load(x[i]), 1.0)
            nl.store(out[i], t)
            addrs.append(t.core.storage.address)
        for j in range(2):  # a Python loop unrolls: each statement its own placement
            u = nl.ndarray((nl.par_dim(16), 8), dtype=nl.float32,
                           buffer=ncc.sbuf.mod_alloc(base_addr=1024 * (j + 1)))
            u[...] = nl.load(x[j])
            addrs.append(u.core.storage.address)
        return out

    a = rand(4, 16, 8)
    out, run = lj.run_legacy(k, (a,))
    np.testing.assert_allclose(out, a + 1.0, rtol=1e-6)
    assert addrs == [0, 0, 0, 0, 1024, 2048]


# -- PSUM accumulation -------------------------------------------------------------------------
def test_psum_accumulation_into_a_fresh_psum_tile_starts_the_group():
    a, b = rand(3, 32, 16), rand(3, 32, 24)

    def k(x, y):
        out = hbm((16, 24))
        ps = nl.ndarray((nl.par_dim(16), 24), dtype=nl.float32, buffer=nl.psum)  # never written
        for kk in nl.affine_range(3):
            ps[...] += nisa.nc_matmul(nl.load(x[kk]), nl.load(y[kk]))
        nl.store(out, nl.copy(ps))
        return out

    out, run = lj.run_legacy(k, (a, b))
    np.testing.assert_allclose(out, np.einsum("kpm,kpn->mn", a, b), rtol=1e-5, atol=1e-5)
    flags = [i.attrs.get("accumulate") for i in run.program if i.opcode == "nc_matmul"]
    assert flags == [False, True, True]


def test_psum_accumulation_onto_written_psum_adds():
    a, b = rand(32, 16), rand(32, 24)

    def k(x, y):
        out = hbm((16, 24))
        ps = nl.ndarray((nl.par_dim(16), 24), dtype=nl.float32, buffer=nl.psum)
        ps[...] = nl.full((16, 24), 2.5, dtype=nl.float32)  # a bias already in PSUM
        ps[...] += nisa.nc_matmul(nl.load(x), nl.load(y))
        nl.store(out, nl.copy(ps))
        return out

    out, _ = lj.run_legacy(k, (a, b))
    np.testing.assert_allclose(out, a.T @ b + 2.5, rtol=1e-5, atol=1e-5)


def test_mod_alloc_tile_counts_of_a_tensor_without_block_dims_are_ignored():
    def k(x):
        out = hbm((16, 8))
        t = nl.ndarray((nl.par_dim(16), 8), dtype=nl.float32,
                       buffer=ncc.sbuf.mod_alloc(base_addr=512, num_free_tiles=(4,)))
        t[...] = nl.load(x)
        nl.store(out, t)
        assert t.core.storage.address == 512
        return out

    a = rand(16, 8)
    out, _ = lj.run_legacy(k, (a,))
    np.testing.assert_array_equal(out, a)

    def bad(x):  # fewer counts than block dims
        nl.ndarray((2, 3, nl.par_dim(16), 8), dtype=nl.float32,
                   buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))

    with pytest.raises(NkiValidationError, match="one entry per block"):
        lj.run_legacy(bad, (a,))


def test_psum_block_dims_are_logical_tiles():
    a, b = rand(32, 64), rand(32, 512)

    def k(x, y):
        out = hbm((4, 16, 512))
        xs, ys = nl.load(x), nl.load(y)
        # 4 x 3 logical tiles of one bank each: 12 banks, more than PSUM's 8
        ps = nl.ndarray((4, 3, nl.par_dim(16), 512), dtype=nl.float32, buffer=nl.psum)
        for i in nl.affine_range(4):
            for j in nl.affine_range(3):
                ps[i, j] = nisa.nc_matmul(xs[:, nl.ds(16 * i, 16)], ys)
            acc = nl.add(nl.add(nl.copy(ps[i, 0]), ps[i, 1]), ps[i, 2])
            nl.store(out[i], acc)
        return out

    out, run = lj.run_legacy(k, (a, b))
    ref = np.stack([3 * (a[:, 16 * i:16 * i + 16].T @ b) for i in range(4)])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    banks = {w.lo // 2048 for ins in run.program for w in ins.writes if w.space == "psum"}
    assert len(banks) <= 8


# -- operand masking and masked writes past a tile's end -----------------------------------------
def test_operand_mask_narrows_a_matmul_operand():
    a, b = rand(8, 32), rand(8, 40)

    def k(x, y):
        out = hbm((32, 64))
        xs = nl.load(x)
        ys = nl.ndarray((8, 64), dtype=nl.float32, buffer=nl.sbuf)
        ys[:, 0:40] = nl.load(y)
        i_p, i_f = nl.mgrid[0:8, 0:64]
        ps = nl.zeros((32, 64), dtype=nl.float32, buffer=nl.psum)
        ps[...] = nisa.nc_matmul(xs, ys[i_p, i_f][i_f < 40])  # only the 40 valid columns
        nl.store(out, nl.copy(ps))
        return out

    out, _ = lj.run_legacy(k, (a, b))
    np.testing.assert_allclose(out[:, :40], a.T @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 40:], 0.0)  # untouched by the matmul


def test_masked_write_to_an_index_range_past_the_tile_end():
    a = rand(16, 40)

    def k(x):
        out = hbm((16, 40))
        t = nl.load(x)
        i_p, i_f = nl.mgrid[0:16, 0:32]
        for j in nl.affine_range(2):  # the second 32-wide tile runs past column 40
            col = 32 * j + i_f
            t[i_p, col] = nisa.tensor_scalar(t[i_p, col], np.multiply, 2.0, mask=(col < 40))
        nl.store(out, t)
        return out

    out, _ = lj.run_legacy(k, (a,))
    np.testing.assert_allclose(out, a * 2.0, rtol=1e-6)
