"""The legacy `neuronxcc.nki.isa` surface (trnsim.legacy.isa): return-style instructions
with `mask=` and `dtype=`, in-place outputs, legacy IntEnums, and errors that name the
kernel line.

Each kernel is legacy NKI code; references are NumPy code written here. Every kernel
also runs once with numerics off (`run` below) and must produce the same record.
"""
import enum
import os

import ml_dtypes
import numpy as np
import pytest

from trnsim.legacy import isa as nisa
from trnsim.legacy import jit as lj
from trnsim.legacy import language as nl
from trnsim.machine.errors import NkiValidationError, UnsupportedError

BF16 = ml_dtypes.bfloat16
FP32_MIN = np.float32(np.finfo(np.float32).min)
HERE = os.path.basename(__file__)
RNG = np.random.default_rng(7)


def _sig(program):
    return [(i.engine, i.opcode, tuple((a.role, a.mode, a.space, a.dtype, a.shape)
                                       for a in i.accesses)) for i in program]


def run(kernel, *args, chip=None):
    """Numerics off (record only), then on; the records must match. Returns (outputs,
    Run)."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    _, r0 = lj.run_legacy(kernel, copies, numerics=False, chip=chip)
    out, r1 = lj.run_legacy(kernel, args, chip=chip)
    assert _sig(r0.program) == _sig(r1.program)
    assert all(i.writes for i in r1.program)
    return out, r1


def opcodes(r):
    return [i.opcode for i in r.program]


def rand(*shape, lo=-2.0, hi=2.0, dtype=np.float32):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def bf16(x):
    return np.asarray(x, np.float32).astype(BF16).astype(np.float32)


# -- enums, constants, signatures -----------------------------------------------------
def test_enums_are_intenums_with_the_legacy_values():
    expect = {
        "engine": {"tensor": 1, "vector": 5, "scalar": 2, "gpsimd": 3, "sync": 6, "unknown": 0},
        "reduce_cmd": {"idle": 0, "reset": 1, "reset_reduce": 3, "reduce": 2},
        "dge_mode": {"none": 0, "swdge": 1, "hwdge": 2, "unknown": 3},
        "oob_mode": {"error": 0, "skip": 1},
        "nc_version": {"gen2": 2, "gen3": 3},
    }
    for name, members in expect.items():
        cls = getattr(nisa, name)
        assert issubclass(cls, enum.IntEnum)
        assert {m.name: m.value for m in cls} == members
    assert nisa.tensor_engine is nisa.engine.tensor
    assert nisa.vector_engine is nisa.engine.vector
    assert nisa.scalar_engine is nisa.engine.scalar
    assert nisa.gpsimd_engine is nisa.engine.gpsimd
    assert nisa.unknown_engine is nisa.engine.unknown
    assert nisa.dma_engine is not None
    assert nisa.fp32.min == FP32_MIN and nisa.fp32().min == FP32_MIN
    assert np.float32(nisa.fp32.min) == FP32_MIN


@pytest.mark.parametrize("chip,gen", [("trn1", 2), ("trn2", 3)])
def test_get_nc_version(chip, gen):
    seen = []

    def k():
        seen.append(nisa.get_nc_version())

    lj.run_legacy(k, (), chip=chip)
    assert seen == [nisa.nc_version(gen)] and isinstance(seen[0], nisa.nc_version)


def test_get_nc_version_on_trn3_is_unsupported():
    def k():
        nisa.get_nc_version()

    with pytest.raises(UnsupportedError, match="gen2"):
        lj.run_legacy(k, (), chip="trn3")


def test_builtin_custom_op_is_unsupported():
    def k():
        nisa.builtin_custom_op("f", "lib.so", 1, 1, [], [])

    with pytest.raises(UnsupportedError, match=HERE):
        lj.run_legacy(k, ())


# -- Scalar Engine ----------------------------------------------------------------------
def k_activation(a, b):
    out = nl.ndarray(a.shape, nl.bfloat16, buffer=nl.shared_hbm)
    sums = nl.ndarray((a.shape[0], 1), nl.float32, buffer=nl.shared_hbm)
    x = nl.load(a)
    bias = nl.load(b)
    red = nl.ndarray((a.shape[0], 1), nl.float32)
    y = nisa.activation(op=np.exp, data=x, bias=bias, scale=0.5, reduce_op=np.add,
                        reduce_res=red, reduce_cmd=nisa.reduce_cmd.reset_reduce,
                        dtype=nl.bfloat16)
    nl.store(out, y)
    nl.store(sums, red)
    return out, sums


def test_activation_bias_scale_dtype_and_reduce():
    a, b = rand(128, 64), rand(128, 1)
    (out, sums), r = run(k_activation, a, b)
    v = np.exp(a * np.float32(0.5) + b).astype(np.float32)
    assert out.dtype == BF16
    np.testing.assert_allclose(out.astype(np.float32), bf16(v), rtol=1e-2)
    np.testing.assert_allclose(sums, v.sum(axis=1, keepdims=True), rtol=1e-4)
    assert opcodes(r)[2:4] == ["activation", "read_accumulator"]


def k_activation_reduce(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    mx = nl.ndarray((a.shape[0], 1), nl.float32, buffer=nl.shared_hbm)
    x = nl.load(a)
    red = nl.ndarray((a.shape[0], 1), nl.float32)
    y = nisa.activation_reduce(op=np.square, data=x, reduce_op=np.add, reduce_res=red)
    nl.store(out, y)
    nl.store(mx, red)
    return out, mx


def test_activation_reduce():
    a = rand(64, 32)
    (out, red), r = run(k_activation_reduce, a)
    np.testing.assert_allclose(out, a * a, rtol=1e-6)
    np.testing.assert_allclose(red, (a * a).sum(axis=1, keepdims=True), rtol=1e-5)
    assert "activation_reduce" in opcodes(r)


def k_masked_activation(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    i_p = nl.arange(128)[:, None]
    i_f = nl.arange(64)[None, :]
    x = nl.load(a)
    buf = nl.full((128, 64), -7.0, nl.float32)
    buf[i_p, i_f] = nisa.activation(op=np.square, data=x, mask=(i_p < 100) & (i_f >= 8))
    nl.store(out, buf)
    return out


def test_mask_narrows_the_instruction_and_leaves_the_rest():
    a = rand(128, 64)
    out, r = run(k_masked_activation, a)
    ref = np.full_like(a, -7.0)
    ref[:100, 8:] = a[:100, 8:] ** 2
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    act = [i for i in r.program if i.opcode == "activation"][0]
    assert act.writes[0].shape == (100, 56)
    assert str(act.location).endswith(
        f"{HERE}:{k_masked_activation.__code__.co_firstlineno + 6}")


def k_triangle(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    i_p = nl.arange(32)[:, None]
    i_f = nl.arange(32)[None, :]
    x = nl.load(a)
    buf = nl.zeros((32, 32), nl.float32)
    buf[i_p, i_f] = nisa.tensor_copy(x, mask=(i_f <= i_p))
    nl.store(out, buf)
    return out


def test_non_rectangular_mask_restricts_the_write():
    a = rand(32, 32)
    out, _ = run(k_triangle, a)
    np.testing.assert_array_equal(out, np.tril(a))


# -- elementwise -------------------------------------------------------------------------
def k_tensor_tensor(a, b):
    o1 = nl.ndarray(a.shape, nl.float32, buffer=nl.shared_hbm)
    o2 = nl.ndarray(a.shape, nl.bfloat16, buffer=nl.shared_hbm)
    x = nl.load(a)
    y = nl.load(b)
    r1 = nisa.tensor_tensor(x, y, np.subtract)
    assert r1.dtype == nl.float32  # fp32 with bf16 promotes to fp32
    nl.store(o1, r1)
    nl.store(o2, nisa.tensor_tensor(x, y, op=np.multiply, dtype=nl.bfloat16,
                                    engine=nisa.gpsimd_engine))
    return o1, o2


def test_tensor_tensor_promotion_dtype_and_engine():
    a, b = rand(64, 128), rand(64, 128).astype(BF16)
    (o1, o2), r = run(k_tensor_tensor, a, b)
    bf = b.astype(np.float32)
    np.testing.assert_array_equal(o1, a - bf)
    np.testing.assert_array_equal(o2.astype(np.float32), bf16(a * bf))
    engines = [i.engine for i in r.program if i.opcode == "tensor_tensor"]
    assert engines == ["vector", "gpsimd"]


def k_tensor_scalar(a, s):
    o = nl.ndarray((3,) + a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    v = nl.load(s)
    nl.store(o[0], nisa.tensor_scalar(x, np.multiply, v, op1=np.subtract, operand1=2.0,
                                      reverse1=True))
    nl.store(o[1], nisa.tensor_scalar(x, np.subtract, 1.0, True))
    nl.store(o[2], nisa.tensor_scalar(data=x, op0=np.add, operand0=3.0,
                                      engine=nisa.scalar_engine))
    return o


def test_tensor_scalar():
    a, s = rand(128, 32), rand(128, 1)
    o, r = run(k_tensor_scalar, a, s)
    np.testing.assert_allclose(o[0], 2.0 - a * s, rtol=1e-6)
    np.testing.assert_allclose(o[1], 1.0 - a, rtol=1e-6)
    np.testing.assert_allclose(o[2], a + 3.0, rtol=1e-6)
    assert [i.engine for i in r.program if i.opcode == "tensor_scalar"][2] == "scalar"


def k_stt(a, s, b):
    o = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x, v, y = nl.load(a), nl.load(s), nl.load(b)
    nl.store(o, nisa.scalar_tensor_tensor(data=x, op0=np.subtract, operand0=v,
                                          op1=np.multiply, operand1=y, reverse0=True))
    return o


def test_scalar_tensor_tensor():
    a, s, b = rand(32, 16), rand(32, 1), rand(32, 16)
    o, _ = run(k_stt, a, s, b)
    np.testing.assert_allclose(o, (s - a) * b, rtol=1e-6)


def k_scan(a, b):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x, y = nl.load(a), nl.load(b)
    c = nl.ndarray((32, 64), dtype=nl.float32)
    c[:, 0:32] = nisa.tensor_tensor_scan(x[:, 0:32], y[:, 0:32], initial=0.5,
                                         op0=np.multiply, op1=np.add)
    c[:, 32:64] = nisa.tensor_tensor_scan(x[:, 32:64], y[:, 32:64], initial=c[:, 31],
                                          op0=np.multiply, op1=np.add)
    nl.store(out, c)
    return out


def test_tensor_tensor_scan_with_a_tile_initial():
    a, b = rand(32, 64, lo=0, hi=1), rand(32, 64, lo=0, hi=1)
    out, _ = run(k_scan, a, b)
    ref = np.zeros_like(a)
    prev = np.full(32, 0.5, np.float32)
    for i in range(64):
        prev = (a[:, i] * prev + b[:, i]).astype(np.float32)
        ref[:, i] = prev
    np.testing.assert_allclose(out, ref, rtol=1e-5)


def k_tensor_scalar_reduce(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    mx = nl.ndarray((a.shape[0], 1), a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    red = nl.ndarray((a.shape[0], 1), nl.float32)
    nl.store(out, nisa.tensor_scalar_reduce(data=x, op0=np.multiply, operand0=2.0,
                                            reduce_op=np.max, reduce_res=red))
    nl.store(mx, red)
    return out, mx


def test_tensor_scalar_reduce():
    a = rand(64, 48)
    (out, mx), _ = run(k_tensor_scalar_reduce, a)
    np.testing.assert_array_equal(out, a * 2)
    np.testing.assert_array_equal(mx, (a * 2).max(axis=1, keepdims=True))


def k_copies(a, p):
    o1 = nl.ndarray(a.shape, nl.bfloat16, buffer=nl.shared_hbm)
    o2 = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    nl.store(o1, nisa.tensor_copy(x, dtype=nl.bfloat16, engine=nisa.gpsimd_engine))
    pred = nl.load(p)
    dst = nl.full(a.shape, 9.0, a.dtype)
    nisa.tensor_copy_predicated(src=x, dst=dst, predicate=pred)
    nisa.tensor_copy_predicated(src=-1.0, dst=dst, predicate=pred, reverse_pred=True,
                                mask=(nl.arange(64)[:, None] < 16))
    nl.store(o2, dst)
    return o1, o2


def test_tensor_copy_and_copy_predicated():
    a = rand(64, 32)
    p = (RNG.uniform(size=(64, 32)) < 0.5).astype(np.uint8)
    (o1, o2), r = run(k_copies, a, p)
    np.testing.assert_array_equal(o1.astype(np.float32), bf16(a))
    ref = np.where(p != 0, a, 9.0).astype(np.float32)
    ref[:16] = np.where(p[:16] == 0, -1.0, ref[:16])
    np.testing.assert_array_equal(o2, ref)
    assert [i.engine for i in r.program if i.opcode == "tensor_copy"][0] == "gpsimd"


def k_memset():
    o1 = nl.ndarray((64, 32), nl.bfloat16, buffer=nl.shared_hbm)
    o2 = nl.ndarray((8, 4), nl.int32, buffer=nl.shared_hbm)
    t = nisa.memset(shape=(nl.par_dim(64), 32), value=2.5, dtype=nl.bfloat16)
    assert t.shape == (64, 32) and t.dtype == nl.bfloat16
    nl.store(o1, t)
    nl.store(o2, nisa.memset((8, 4), -3, np.int32, engine=nisa.gpsimd_engine))
    return o1, o2


def test_memset_allocates_and_fills():
    (o1, o2), r = run(k_memset)
    assert (o1.astype(np.float32) == 2.5).all() and (o2 == -3).all() and o2.dtype == np.int32
    # recorded on its default engine (the compiler model may then move it: attrs["engines"])
    assert [i.attrs.get("engines", (i.engine,))[0] for i in r.program
            if i.opcode == "memset"] == ["vector", "gpsimd"]


def k_iota():
    out = nl.ndarray((6, 128, 64), nl.float32, buffer=nl.shared_hbm)
    ea = nl.arange(0, 64)[None, :]
    eb = nl.arange(0, 128)[:, None]
    nl.store(out[0, 0:1, 0:64], nisa.iota(ea, dtype=nl.int32))
    nl.store(out[1, 0:128, 0:1], nisa.iota(eb, dtype=nl.int32))
    nl.store(out[2, 0:1, 0:64], nisa.iota(ea * -1, dtype=nl.int32))
    nl.store(out[3, 0:128, 0:1], nisa.iota(5 + eb * 2, dtype=nl.float32))
    nl.store(out[4], nisa.iota(ea + 3 * eb - 7, dtype=nl.int32))
    ix, iy = nl.mgrid[0:128, 0:64]
    buf = nl.full((128, 64), -1.0, nl.float32)
    buf[ix, iy] = nisa.iota(2 * ix - iy, dtype=nl.float32, mask=(ix >= 32) & (iy < 40))
    nl.store(out[5], buf)
    return out


@pytest.mark.filterwarnings("ignore::trnsim.UninitializedReadWarning")  # out: written in parts
def test_iota_translates_index_expressions():
    out, r = run(k_iota)
    p = np.arange(128)[:, None]
    f = np.arange(64)[None, :]
    np.testing.assert_array_equal(out[0, 0], np.arange(64))
    np.testing.assert_array_equal(out[1, :, 0], np.arange(128))
    np.testing.assert_array_equal(out[2, 0], -np.arange(64))
    np.testing.assert_array_equal(out[3, :, 0], 5 + 2 * np.arange(128))
    np.testing.assert_array_equal(out[4], f + 3 * p - 7)
    ref = np.full((128, 64), -1.0)
    ref[32:, :40] = (2 * p - f)[32:, :40]
    np.testing.assert_array_equal(out[5], ref)
    iotas = [i for i in r.program if i.opcode == "iota"]
    assert iotas[-1].attrs["offset"] == 64 and iotas[-1].attrs["channel_multiplier"] == 2


def k_affine_select(a):
    out = nl.ndarray((2,) + a.shape, a.dtype, buffer=nl.shared_hbm)
    ix, iy = nl.mgrid[0:64, 0:64]
    x = nl.load(a[ix, iy])
    nl.store(out[0], nisa.affine_select(pred=(iy < ix), on_true_tile=x[ix, iy],
                                        on_false_value=nisa.fp32.min))
    buf = nl.zeros((64, 64), nl.bfloat16)
    buf[ix, iy] = nisa.affine_select((2 * ix - iy + 5 >= 0), x, -3.0, dtype=nl.bfloat16,
                                     mask=(ix >= 16) & (iy >= 8))
    nl.store(out[1], buf)
    return out


def test_affine_select_translates_the_predicate():
    a = rand(64, 64)
    out, r = run(k_affine_select, a)
    p, f = np.arange(64)[:, None], np.arange(64)[None, :]
    np.testing.assert_array_equal(out[0], np.where(f < p, a, FP32_MIN))
    ref = np.zeros((64, 64), np.float32)
    ref[16:, 8:] = np.where(2 * p - f + 5 >= 0, bf16(a), -3.0)[16:, 8:]
    np.testing.assert_array_equal(out[1], ref)
    sel = [i for i in r.program if i.opcode == "affine_select"]
    assert [i.engine for i in sel] == ["gpsimd", "gpsimd"]
    assert sel[1].attrs["cmp_op"] == "greater_equal" and sel[1].attrs["offset"] == 2 * 16 - 8 + 5


def test_affine_select_rejects_a_compound_predicate():
    def k(a):
        ix, iy = nl.mgrid[0:8, 0:8]
        nisa.affine_select((iy < ix) & (iy > 1), nl.load(a), 0.0)

    with pytest.raises(NkiValidationError, match="nl.where"):
        lj.run_legacy(k, (rand(8, 8),))


def k_range_select(a, b0, b1):
    out = nl.ndarray((2,) + a.shape, a.dtype, buffer=nl.shared_hbm)
    red = nl.ndarray((a.shape[0], 1), nl.float32, buffer=nl.shared_hbm)
    x, lo, hi = nl.load(a), nl.load(b0), nl.load(b1)
    r = nl.ndarray((a.shape[0], 1), nl.float32)
    nl.store(out[0], nisa.range_select(on_true_tile=x, comp_op0=np.greater_equal,
                                       comp_op1=np.less, bound0=lo, bound1=hi,
                                       reduce_cmd=nisa.reduce_cmd.reset_reduce,
                                       reduce_res=r, reduce_op=np.max, range_start=8))
    nl.store(red, r)
    i_f = nl.arange(64)[None, :]
    buf = nl.zeros(a.shape, a.dtype)
    buf[...] = nisa.range_select(on_true_tile=x, comp_op0=np.greater_equal, comp_op1=np.less,
                                 bound0=lo, bound1=hi, range_start=8, mask=(i_f >= 16))
    nl.store(out[1], buf)
    return out, red


def test_range_select_reduce_and_masked_range_start():
    a = rand(32, 64)
    b0, b1 = np.zeros((32, 1), np.float32), np.full((32, 1), 40.0, np.float32)
    (out, red), r = run(k_range_select, a, b0, b1, chip="trn2")
    j = 8 + np.arange(64)[None, :]
    sel = np.where((j >= 0) & (j < 40), a, FP32_MIN)
    np.testing.assert_array_equal(out[0], sel)
    np.testing.assert_array_equal(red, sel.max(axis=1, keepdims=True))
    ref = np.zeros_like(a)
    ref[:, 16:] = sel[:, 16:]
    np.testing.assert_array_equal(out[1], ref)
    cmds = [i.attrs["reduce_cmd"] for i in r.program if i.opcode == "range_select"]
    assert cmds == ["reset_reduce", "idle"]


def test_range_select_needs_gen3():
    a = rand(32, 64)
    b0, b1 = np.zeros((32, 1), np.float32), np.full((32, 1), 40.0, np.float32)
    with pytest.raises(UnsupportedError, match=HERE):
        lj.run_legacy(k_range_select, (a, b0, b1), chip="trn1")


def k_select_reduce(p, a, f):
    out = nl.ndarray(a.shape, nl.float32, buffer=nl.shared_hbm)
    mx = nl.ndarray((a.shape[0], 1), nl.float32, buffer=nl.shared_hbm)
    pred, x, off = nl.load(p), nl.load(a), nl.load(f)
    dst = nl.ndarray(a.shape, nl.float32)
    r = nl.ndarray((a.shape[0], 1), nl.float32)
    nisa.select_reduce(dst=dst, predicate=pred, on_true=x, on_false=off,
                       reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=r, reduce_op=nl.max
                       if hasattr(nl, "max") else np.max, reverse_pred=True)
    nl.store(out, dst)
    nl.store(mx, r)
    return out, mx


def test_select_reduce():
    p = (RNG.uniform(size=(64, 48)) < 0.5).astype(np.uint8)
    a, f = rand(64, 48), rand(64, 1)
    (out, mx), _ = run(k_select_reduce, p, a, f)
    ref = np.where(p == 0, a, f)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(mx, ref.max(axis=1, keepdims=True))


def k_recip_dropout(a, pr):
    out = nl.ndarray((4,) + a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    nl.store(out[0], nisa.reciprocal(x))
    nl.store(out[1], nisa.dropout(x, prob=0.0))
    nl.store(out[2], nisa.dropout(x, 1.0, dtype=nl.bfloat16))
    nl.store(out[3], nisa.dropout(x, prob=nl.load(pr)))
    return out


def test_reciprocal_and_dropout():
    a = rand(32, 16, lo=0.5, hi=4.0)
    pr = np.zeros((32, 1), np.float32)
    pr[8:] = 1.0
    out, r = run(k_recip_dropout, a, pr)
    np.testing.assert_array_equal(out[0], (np.float32(1) / a).astype(np.float32))
    np.testing.assert_array_equal(out[1], a)
    np.testing.assert_array_equal(out[2], np.zeros_like(a))
    np.testing.assert_array_equal(out[3][:8], a[:8])
    np.testing.assert_array_equal(out[3][8:], 0.0)
    # the bf16 dropout result is a dropout into fp32 followed by a cast
    ops = opcodes(r)
    i = ops.index("dropout", ops.index("dropout") + 1)
    assert ops[i + 1] == "tensor_copy"


# -- reductions and statistics ------------------------------------------------------
def k_reduce(a):
    o1 = nl.ndarray((a.shape[0], 1), a.dtype, buffer=nl.shared_hbm)
    o2 = nl.ndarray((a.shape[0], a.shape[1]), nl.bfloat16, buffer=nl.shared_hbm)
    o3 = nl.ndarray((1, a.shape[1], a.shape[2]), a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    s = nisa.tensor_reduce(np.add, x, axis=(1, 2))
    assert s.shape == (a.shape[0], 1)
    nl.store(o1, s)
    m = nisa.tensor_reduce(np.max, x, 2, negate=True, dtype=nl.bfloat16)
    assert m.shape == (a.shape[0], a.shape[1])
    nl.store(o2, m)
    k = nisa.tensor_reduce(np.add, x, axis=[2], keepdims=True)
    assert k.shape == (a.shape[0], a.shape[1], 1)
    pr = nisa.tensor_partition_reduce(np.add, x)
    assert pr.shape == (1, a.shape[1], a.shape[2])
    nl.store(o3, pr)
    return o1, o2, o3


def test_tensor_reduce_and_partition_reduce():
    a = rand(64, 4, 16)
    (o1, o2, o3), _ = run(k_reduce, a)
    np.testing.assert_allclose(o1, a.sum(axis=(1, 2))[:, None], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(o2.astype(np.float32), bf16(-a.max(axis=2)))
    np.testing.assert_allclose(o3, a.sum(axis=0, keepdims=True), rtol=1e-5, atol=1e-5)


def k_masked_reductions(a):
    o1 = nl.ndarray((a.shape[0], 1), a.dtype, buffer=nl.shared_hbm)
    o2 = nl.ndarray((a.shape[0], 8), a.dtype, buffer=nl.shared_hbm)
    o3 = nl.ndarray((1, a.shape[1]), a.dtype, buffer=nl.shared_hbm)
    i_p = nl.arange(a.shape[0])[:, None]
    i_f = nl.arange(a.shape[1])[None, :]
    x = nl.load(a)
    # the mask narrows the data's free axis, not the [P, 1] / [P, 8] / [1, F] results
    nl.store(o1, nisa.tensor_reduce(np.add, x[i_p, i_f], axis=[1], mask=(i_f < 20)))
    nl.store(o2, nisa.max8(src=x[i_p, i_f], mask=(i_f < 20)))
    part = nl.zeros((1, a.shape[1]), a.dtype)
    part[...] = nisa.tensor_partition_reduce(np.maximum, x, mask=(i_p < 10))
    nl.store(o3, part)
    return o1, o2, o3


def test_masks_on_reductions_narrow_the_data():
    a = rand(32, 48)
    (o1, o2, o3), _ = run(k_masked_reductions, a)
    np.testing.assert_allclose(o1, a[:, :20].sum(axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_array_equal(o2, -np.sort(-a[:, :20], axis=1)[:, :8])
    np.testing.assert_array_equal(o3, a[:10].max(axis=0, keepdims=True))


def k_bn(a):
    mean = nl.ndarray((a.shape[0], 1), a.dtype, buffer=nl.shared_hbm)
    var = nl.ndarray((a.shape[0], 1), a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    stats = nl.ndarray((a.shape[0], 12), dtype=nl.float32)
    ix, iy = nl.mgrid[0:a.shape[0], 0:64]
    iz, iw = nl.mgrid[0:a.shape[0], 0:6]
    for i in range(2):
        stats[iz, i * 6 + iw] = nisa.bn_stats(x[ix, i * 64 + iy], dtype=nl.float32)
    mv = nisa.bn_aggr(stats)
    assert mv.shape == (a.shape[0], 2)
    nl.store(mean, mv[:, 0])
    nl.store(var, mv[:, 1])
    return mean, var


def test_bn_stats_bn_aggr():
    a = rand(32, 128, lo=0, hi=10)
    (mean, var), r = run(k_bn, a)
    np.testing.assert_allclose(mean, a.mean(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(var, a.var(axis=1, keepdims=True), rtol=1e-4)
    assert opcodes(r).count("bn_stats") == 2


def k_top8(a):
    vals = nl.ndarray((a.shape[0], 8), a.dtype, buffer=nl.shared_hbm)
    idx = nl.ndarray((a.shape[0], 8), nl.uint32, buffer=nl.shared_hbm)
    rep = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    idx2 = nl.ndarray((a.shape[0], 8), nl.uint32, buffer=nl.shared_hbm)
    x = nl.load(a)
    m = nisa.max8(src=x)
    nl.store(vals, m)
    found = nisa.nc_find_index8(data=x, vals=m)
    assert found.dtype == nl.uint32
    nl.store(idx, found)
    di = nl.ndarray((a.shape[0], 8), nl.uint32)
    nl.store(rep, nisa.nc_match_replace8(data=x, vals=m, imm=-1.0, dst_idx=di))
    nl.store(idx2, di)
    return vals, idx, rep, idx2


def test_max8_find_index8_match_replace8():
    a = np.stack([RNG.permutation(40).astype(np.float32) for _ in range(16)])
    (vals, idx, rep, idx2), r = run(k_top8, a)
    top = -np.sort(-a, axis=1)[:, :8]
    np.testing.assert_array_equal(vals, top)
    ref_idx = np.array([[list(row).index(v) for v in t] for row, t in zip(a, top)])
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(idx2, ref_idx)
    ref = a.copy()
    np.put_along_axis(ref, ref_idx, -1.0, axis=1)
    np.testing.assert_array_equal(rep, ref)
    assert {"max8", "nc_find_index8", "nc_match_replace8"} <= set(opcodes(r))


# -- Tensor Engine ------------------------------------------------------------------
def k_matmul(a, b, c, d):
    o1 = nl.ndarray((64, 512), nl.float32, buffer=nl.shared_hbm)
    o2 = nl.ndarray((128, 256), nl.float32, buffer=nl.shared_hbm)
    o3 = nl.ndarray((64, 512), nl.float32, buffer=nl.shared_hbm)
    x, y = nl.load(a), nl.load(b)
    r = nisa.nc_matmul(x, y)
    assert r.shape == (64, 512) and r.buffer == nl.psum
    nl.store(o1, r)
    acc = nl.zeros((128, 256), nl.float32, buffer=nl.psum)
    acc += nisa.nc_matmul(nl.load(c[0:128, :]), nl.load(d[0:128, :]))
    i_p, i_f = nl.mgrid[0:128, 0:256]
    acc[i_p, i_f] += nisa.nc_matmul(nl.load(c[128:256, :]), nl.load(d[128:256, :]))
    nl.store(o2, acc)
    i_k = nl.arange(128)[:, None]
    i_m = nl.arange(64)[None, :]
    i_n = nl.arange(512)[None, :]
    res = nl.zeros((64, 512), nl.float32, buffer=nl.psum)
    res[...] = nisa.nc_matmul(x[i_k, i_m], y[i_k, i_n], mask=(i_m < 32))
    nl.store(o3, res)
    o4 = nl.ndarray((64, 512), nl.float32, buffer=nl.shared_hbm)
    nl.store(o4, nisa.nc_matmul(x, y, mask=(i_k < 48)))  # by position: the K axis
    return o1, o2, o3, o4


def test_nc_matmul_returns_psum_accumulates_and_masks_operands():
    a, b = rand(128, 64), rand(128, 512)
    c, d = rand(256, 128), rand(256, 256)
    (o1, o2, o3, o4), r = run(k_matmul, a, b, c, d)
    ref = a.astype(np.float64).T @ b
    np.testing.assert_allclose(o1, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(o2, c.astype(np.float64).T @ d, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(o3[:32], ref[:32], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(o3[32:], 0.0)
    np.testing.assert_allclose(o4, a[:48].astype(np.float64).T @ b[:48], rtol=1e-4, atol=1e-4)
    mm = [i for i in r.program if i.opcode == "nc_matmul"]
    assert len(mm) == 5 and mm[3].writes[0].shape == (32, 512)
    assert mm[4].reads[0].shape == (48, 64) and mm[4].writes[0].shape == (64, 512)
    # the accumulating matmuls ran straight into the PSUM tile: no extra adds or copies
    assert "tensor_tensor" not in opcodes(r)
    assert not [i for i in r.program if i.opcode == "tensor_copy"
                and i.reads[0].space == i.writes[0].space == "psum"]


def k_psum_results_into_sbuf(a, b):
    out = nl.ndarray((64, 128), nl.float32, buffer=nl.shared_hbm)
    out2 = nl.ndarray((64, 128), nl.bfloat16, buffer=nl.shared_hbm)
    x, y = nl.load(a), nl.load(b)
    s = nl.ndarray((64, 128), nl.float32)
    s[...] = nisa.nc_matmul(x, y)
    s[...] += nisa.nc_matmul(x, y)
    nl.store(out, s)
    t = nl.ndarray((64, 128), nl.bfloat16)
    t[...] = nisa.nc_transpose(y[:, 0:64])
    nl.store(out2, t)
    return out, out2


def test_psum_results_assigned_to_sbuf_tiles():
    a, b = rand(128, 64), rand(128, 128)
    (out, out2), r = run(k_psum_results_into_sbuf, a, b)
    np.testing.assert_allclose(out, 2 * (a.astype(np.float64).T @ b), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out2.astype(np.float32), bf16(b[:, :64].T))
    ops = opcodes(r)
    assert ops.count("nc_matmul") == 2 and "tensor_tensor" in ops
    assert all(i.writes[0].space == "psum" for i in r.program
               if i.opcode in ("nc_matmul", "nc_transpose"))


def k_transpose(a, b):
    at = nl.ndarray((a.shape[1], a.shape[0]), a.dtype, buffer=nl.shared_hbm)
    bt = nl.ndarray((b.shape[1], b.shape[0]), nl.bfloat16, buffer=nl.shared_hbm)
    ct = nl.ndarray((b.shape[1], b.shape[0]), b.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    t = nisa.nc_transpose(x)
    assert t.buffer == nl.psum and t.shape == (a.shape[1], a.shape[0])
    nl.store(at, t)
    y = nl.load(b)
    u = nisa.nc_transpose(y, engine=nisa.vector_engine, dtype=nl.bfloat16)
    assert u.buffer == nl.sbuf
    nl.store(bt, u)
    i_p = nl.arange(b.shape[0])[:, None]
    buf = nl.zeros((b.shape[1], b.shape[0]), b.dtype)
    buf[...] = nisa.nc_transpose(y, engine=nisa.vector_engine, mask=(i_p < 16))
    nl.store(ct, buf)
    return at, bt, ct


def test_nc_transpose_engines_cast_and_mask():
    a, b = rand(128, 64), rand(32, 8)
    (at, bt, ct), r = run(k_transpose, a, b)
    np.testing.assert_array_equal(at, a.T)
    np.testing.assert_array_equal(bt.astype(np.float32), bf16(b.T))
    ref = np.zeros((8, 32), np.float32)
    ref[:, :16] = b.T[:, :16]
    np.testing.assert_array_equal(ct, ref)
    tr = [(i.attrs.get("engines", (i.engine,))[0], i.opcode) for i in r.program
          if i.opcode in ("nc_transpose", "tensor_copy")]
    assert tr[0] == ("tensor", "nc_transpose")
    assert ("vector", "nc_transpose") in tr and ("vector", "tensor_copy") in tr


# -- data movement -------------------------------------------------------------------
def k_shuffle(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    out2 = nl.ndarray((32, a.shape[1]), a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    g = nl.mgrid[0:64, 0:16]
    nisa.nc_stream_shuffle(src=x[g.p, g.x], dst=x[g.p, g.x],
                           shuffle_mask=[(i - 1) % 32 for i in range(32)])
    nl.store(out, x)
    b = nl.full((32, a.shape[1]), -1.0, a.dtype)
    i_p = nl.arange(32)[:, None]
    nisa.nc_stream_shuffle(nl.load(a[0:32, :]), b, [0] * 32, mask=(i_p >= 4) & (i_p < 8))
    nl.store(out2, b)
    return out, out2


def test_nc_stream_shuffle():
    a = rand(64, 16)
    (out, out2), _ = run(k_shuffle, a)
    src = [(i - 1) % 32 + 32 * q for q in range(2) for i in range(32)]
    np.testing.assert_array_equal(out, a[src])
    ref = np.full((32, 16), -1.0, np.float32)
    ref[4:8] = a[0]
    np.testing.assert_array_equal(out2, ref)


def k_local_gather(src, idx):
    out = nl.ndarray((32, 2, 16, 2), src.dtype, buffer=nl.shared_hbm)
    t = nisa.local_gather(nl.load(src), nl.load(idx), 2)
    assert t.shape == (32, 2, 16, 2)
    nl.store(out, t)
    return out


def test_local_gather():
    src = rand(32, 8, 4)
    idx = RNG.integers(0, 15, size=(32, 2)).astype(np.uint16)
    out, _ = run(k_local_gather, src, idx)
    flat = src.reshape(32, -1)
    ref = np.empty((32, 2, 16, 2), np.float32)
    for core in range(2):
        rows = slice(16 * core, 16 * core + 16)
        offsets = idx[rows].T.reshape(-1)  # partition-first within the core's slice
        for k, off in enumerate(offsets):
            ref[rows, k // 16, k % 16, :] = flat[rows, off:off + 2]
    np.testing.assert_array_equal(out, ref)


def k_dma(a):
    o1 = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    o2 = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=o1, src=a)
    nl.store(o2, nl.full(a.shape, 1.0, a.dtype))
    t = nl.load(a)
    nisa.dma_copy(dst=o2, src=t, dst_rmw_op=np.add)
    i_p = nl.arange(a.shape[0])[:, None]
    i_f = nl.arange(a.shape[1])[None, :]
    nisa.dma_copy(dst=o1[i_p, i_f], src=nisa.memset(a.shape, 0.0, a.dtype),
                  mask=(i_p < 8), dge_mode=nisa.dge_mode.none, oob_mode=nisa.oob_mode.error)
    return o1, o2


def test_dma_copy_and_read_modify_write():
    a = rand(32, 16)
    (o1, o2), r = run(k_dma, a)
    ref = a.copy()
    ref[:8] = 0.0
    np.testing.assert_array_equal(o1, ref)
    np.testing.assert_array_equal(o2, a + 1.0)
    assert "dma_compute" in opcodes(r)


def test_dma_copy_rmw_rejects_oob_skip():
    def k(a):
        o = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=o, src=a, dst_rmw_op=np.add, oob_mode=nisa.oob_mode.skip)
        return o

    with pytest.raises(NkiValidationError, match="oob_mode") as e:
        lj.run_legacy(k, (rand(4, 4),))
    assert HERE in str(e.value)


def k_dma_transpose(a):
    out = nl.ndarray((a.shape[1], a.shape[0]), a.dtype, buffer=nl.shared_hbm)
    out2 = nl.ndarray((a.shape[1], a.shape[0]), nl.float32, buffer=nl.shared_hbm)
    t = nisa.dma_transpose(a)
    assert t.shape == (a.shape[1], a.shape[0]) and t.buffer == nl.sbuf
    nl.store(out, t)
    nl.store(out2, nisa.dma_transpose(nl.load(a), axes=(1, 0), dtype=nl.float32))
    return out, out2


def test_dma_transpose():
    a = rand(64, 32).astype(BF16)
    (out, out2), r = run(k_dma_transpose, a)
    np.testing.assert_array_equal(out, a.T)
    np.testing.assert_array_equal(out2, a.T.astype(np.float32))
    assert opcodes(r).count("dma_transpose") == 2


def k_seq(s):
    out = nl.ndarray((1, 2, s.shape[1]), s.dtype, buffer=nl.shared_hbm)
    b = nisa.sequence_bounds(segment_ids=nl.load(s))
    assert b.shape == (1, 2, s.shape[1])
    nl.store(out, b)
    return out


def test_sequence_bounds():
    s = np.array([[0, 1, 1, 2, 2, 2, 0, 3]], np.float32)
    out, _ = run(k_seq, s)
    start = [8, 1, 1, 3, 3, 3, 8, 7]
    end = [-1, 3, 3, 6, 6, 6, -1, 8]
    np.testing.assert_array_equal(out, np.array([[start, end]], np.float32))


# -- deferred results, errors ---------------------------------------------------------
def k_in_place(a):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    buf = nl.ndarray(a.shape, a.dtype)
    buf[...] = nisa.tensor_scalar(x, np.add, 1.0)
    nl.store(out, buf)
    return out


def test_assigned_result_runs_into_the_target():
    a = rand(16, 8)
    out, r = run(k_in_place, a)
    np.testing.assert_array_equal(out, a + 1)
    assert opcodes(r) == ["dma_copy", "tensor_scalar", "dma_copy"]


def _raises_at(kernel, args, marker, match=None, cls=NkiValidationError, chip=None):
    with pytest.raises(cls, match=match) as e:
        lj.run_legacy(kernel, args, chip=chip)
    assert HERE in str(e.value) and marker in str(e.value), str(e.value)
    return e.value


def test_partition_mismatch_names_the_kernel_line():
    def k(a, b):
        x, y = nl.load(a), nl.load(b)
        z = nisa.tensor_tensor(x, y, np.add)  # the failing call
        nl.store(a, z)

    e = _raises_at(k, (rand(128, 8), rand(64, 8)), "# the failing call",
                   match="number of partitions")
    assert e.op == "tensor_tensor"


def test_matmul_operand_in_the_wrong_buffer():
    def k(a, b):
        x = nl.load(a)
        return nisa.nc_matmul(x, b)  # moving in HBM

    _raises_at(k, (rand(128, 64), rand(128, 64)), "# moving in HBM", match="'moving'.*'sbuf'")


def test_matmul_stationary_free_size_over_128():
    def k(a, b):
        x, y = nl.load(a), nl.load(b)
        nl.store(b, nisa.nc_matmul(x, y))  # M = 256

    _raises_at(k, (rand(128, 256), rand(128, 64)), "# M = 256", match="nc_matmul")


def test_matmul_contraction_over_128_partitions():
    def k(a, b):
        x = nl.load(a)  # K = 256
        nisa.nc_matmul(x, nl.load(b))

    _raises_at(k, (rand(256, 64), rand(256, 64)), "# K = 256", match="exceeds")


def test_bad_enum_is_rejected():
    def k(a):
        nisa.tensor_copy(nl.load(a), engine="warp")  # bad engine

    _raises_at(k, (rand(4, 4),), "# bad engine", match="engine")


def test_numerics_off_records_every_instruction():
    a, b = rand(128, 64), rand(128, 512)
    _, r = lj.run_legacy(k_matmul, (a, b, rand(256, 128), rand(256, 256)), numerics=False)
    assert opcodes(r).count("nc_matmul") == 5
    assert all(i.location is not None and i.location.file.endswith(HERE) for i in r.program)


# -- dynamic (runtime) offsets ---------------------------------------------------------
def k_dynamic(a, offs):
    out = nl.ndarray((a.shape[0], 8), a.dtype, buffer=nl.shared_hbm)
    out2 = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.load(a)
    o = nl.load(offs)
    g = nl.ndarray((a.shape[0], 8), a.dtype)
    ix, iy = nl.mgrid[0:a.shape[0], 0:1]
    for i in range(8):
        g[ix, i + iy] = nisa.tensor_copy_dynamic_src(x[ix, o[0, i] + iy])
    nl.store(out, g)
    s = nl.zeros(a.shape, a.dtype)
    jx, jy = nl.mgrid[0:a.shape[0], 0:2]
    for i in range(2):
        nisa.tensor_copy_dynamic_dst(dst=s[jx, o[0, i] + jy], src=x[jx, 2 * i + jy],
                                     engine=nisa.gpsimd_engine)
    nl.store(out2, s)
    return out, out2


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_tensor_copy_dynamic_src_and_dst(chip):
    a = rand(32, 40)
    offs = np.array([[5, 30, 0, 39, 7, 7, 12, 1]], np.int32)
    (out, out2), r = run(k_dynamic, a, offs, chip=chip)
    np.testing.assert_array_equal(out, a[:, offs[0]])
    ref = np.zeros_like(a)
    ref[:, 5:7] = a[:, 0:2]
    ref[:, 30:32] = a[:, 2:4]
    np.testing.assert_array_equal(out2, ref)
    copies = [i for i in r.program if i.opcode == "tensor_copy"]
    assert all(any(a.role == "indirect_offset" for a in i.reads) for i in copies)
    assert [i.engine for i in copies][-1] == "gpsimd"


def test_runtime_offset_out_of_bounds():
    def k(a, offs):
        x = nl.load(a)
        o = nl.load(offs)
        ix, iy = nl.mgrid[0:4, 0:4]
        nl.store(a, nisa.tensor_copy_dynamic_src(x[ix, o[0, 0] + iy]))  # offset 6 + 4 > 8

    from trnsim.machine.errors import OutOfBoundsError
    _raises_at(k, (rand(4, 8), np.array([[6]], np.int32)), "# offset 6", match="outside",
               cls=OutOfBoundsError)


def test_legacy_enum_members_map_to_the_core_member_of_their_name_every_time():
    """legacy/isa.py `_enum` keeps each legacy member's core member: the same on every
    call (the first one works it out), other values (ints, names, core members, the DMA
    engine, bad values) worked out each time."""
    from trnsim.isa import enums as core_enums
    from trnsim.legacy.isa import _engine, _enum

    for legacy_cls, core_cls in ((nisa.engine, core_enums.engine),
                                 (nisa.reduce_cmd, core_enums.reduce_cmd),
                                 (nisa.dge_mode, core_enums.dge_mode),
                                 (nisa.oob_mode, core_enums.oob_mode)):
        for _ in range(2):
            for m in legacy_cls:
                assert _enum(m, legacy_cls, core_cls, "p") is core_cls[m.name]
                assert _enum(int(m), legacy_cls, core_cls, "p") is core_cls[m.name]
                assert _enum(m.name, legacy_cls, core_cls, "p") is core_cls[m.name]
    for _ in range(2):
        assert _engine(nisa.vector_engine) is core_enums.engine.vector
        assert _engine(nisa.dma_engine) is core_enums.engine.dma
        assert _engine(core_enums.engine.gpsimd) is core_enums.engine.gpsimd
        with pytest.raises(NkiValidationError, match="engine=7 is not a engine member"):
            _engine(7)
