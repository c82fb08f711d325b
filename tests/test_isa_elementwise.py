"""Elementwise instructions (trnsim.isa.elementwise): tensor_tensor, tensor_scalar,
scalar_tensor_tensor, tensor_copy, memset, reciprocal, tensor_tensor_scan,
tensor_scalar_cumulative, tensor_scalar_reduce.

References are NumPy code written here. Every kernel also runs once with numerics off
(`run` below) and must produce the same record (engine, opcode, accesses, attrs).
"""
import os
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from kernel_helpers import bits, load, only, store

BF16, E4M3, E4M3FN, E5M2 = (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3,
                            ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)
HERE = os.path.basename(__file__)



def default_engine(ins):
    """The engine trnsim recorded the instruction on; the compiler model may have moved
    an unpinned one to another of its candidates (attrs["engines"], default first)."""
    return ins.attrs.get("engines", (ins.engine,))[0]

def OP(name):
    """The nki.language operator (nl.add, ...), or its name while nl lacks it."""
    return getattr(nl, name, name)


# -- harness ------------------------------------------------------------------------

def _sig(program):
    return [(i.engine, i.opcode, tuple((a.role, a.mode, a.space, a.dtype, a.shape)
                                       for a in i.accesses), dict(i.attrs))
            for i in program]


def run(kernel, *args, chip=None):
    """Run `kernel` with numerics off (record only), then on; the two records must
    match. Returns (outputs, program)."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    _, r0 = trnsim.run_kernel(kernel, copies, numerics=False, chip=chip)
    out, r1 = trnsim.run_kernel(kernel, args, chip=chip)
    assert _sig(r0.program) == _sig(r1.program)
    for i in r1.program:
        assert i.engine in ("vector", "scalar", "gpsimd", "tensor", "sync", "dma")
        assert i.writes, f"{i.opcode} recorded no write"
    return out, r1.program


# -- NumPy references -----------------------------------------------------------------

def bf16_rne(x):
    """fp32 -> bf16 bits with round-to-nearest-even, written on the bits."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, (u >> 16).astype(np.uint16) | 0x40, r).astype(np.uint16)


def to_int32_sat(f):
    f = np.asarray(f, np.float64)
    f = np.where(np.isnan(f), 0, np.rint(f))
    return np.clip(f, -2 ** 31, 2 ** 31 - 1).astype(np.int32)


def ref_cast(f32, dtype):
    f32 = np.asarray(f32, np.float32)
    if np.dtype(dtype) == np.int32:
        return to_int32_sat(f32)
    with np.errstate(over="ignore"):
        return f32.astype(dtype)


def wrap32(v):
    return (np.asarray(v, np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


F32_OPS = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply,
    "divide": np.divide, "maximum": np.maximum, "minimum": np.minimum,
    "equal": lambda a, b: (a == b).astype(np.float32),
    "not_equal": lambda a, b: (a != b).astype(np.float32),
    "greater": lambda a, b: (a > b).astype(np.float32),
    "greater_equal": lambda a, b: (a >= b).astype(np.float32),
    "less": lambda a, b: (a < b).astype(np.float32),
    "less_equal": lambda a, b: (a <= b).astype(np.float32),
    "logical_and": lambda a, b: ((a != 0) & (b != 0)).astype(np.float32),
    "logical_or": lambda a, b: ((a != 0) | (b != 0)).astype(np.float32),
    "logical_xor": lambda a, b: ((a != 0) ^ (b != 0)).astype(np.float32),
    "abs_max": lambda a, b: np.where(np.abs(a) > np.abs(b), a, b),   # signed, b on ties
    "abs_min": lambda a, b: np.where(np.abs(a) < np.abs(b), a, b),
    "power": np.power,
}


def f32op(name, a, b):
    with np.errstate(all="ignore"):
        return np.asarray(F32_OPS[name](np.float32(a) if np.isscalar(a) else a,
                                        np.float32(b) if np.isscalar(b) else b),
                          dtype=np.float32)


# -- kernels ----------------------------------------------------------------------------

def k_tt(a, b, op, dst_dtype, engine=nisa.engine.unknown, buf_a=nl.sbuf, buf_b=nl.sbuf):
    x, y = load(a, buf_a), load(b, buf_b)
    z = nl.ndarray(a.shape, dst_dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=z, data1=x, data2=y, op=OP(op), engine=engine)
    return store(z)


def tt(a, b, op, dst_dtype=nl.float32, **kw):
    return run(lambda a, b: k_tt(a, b, op, dst_dtype, **kw), a, b)


# -- tensor_tensor --------------------------------------------------------------------

@pytest.mark.parametrize("op", sorted(set(F32_OPS) - {"power"}))
def test_tensor_tensor_fp32_ops(op):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(64, 48)).astype(np.float32)
    b = rng.normal(size=(64, 48)).astype(np.float32)
    b[:, :4] = a[:, :4]                          # equal elements for the comparisons
    b[0, :3] = 0.0
    out, prog = tt(a, b, op)
    np.testing.assert_array_equal(out, f32op(op, a, b))
    ins = only(prog, "tensor_tensor")
    assert (default_engine(ins), ins.attrs["op"]) == ("vector", op)
    assert [(x.role, x.mode, x.space) for x in ins.accesses] == [
        ("data1", "r", "sbuf"), ("data2", "r", "sbuf"), ("dst", "w", "sbuf")]
    assert ins.reads[0].elems_per_partition == 48 and ins.writes[0].bytes == 64 * 48 * 4


def test_tensor_tensor_power_runs_on_gpsimd():
    a = np.array([[2.0, 3.0, 0.5, -2.0]], np.float32)
    b = np.array([[10.0, 0.5, -1.0, 2.0]], np.float32)
    out, prog = tt(a, b, "power")
    np.testing.assert_array_equal(out, np.power(a, b))
    assert only(prog, "tensor_tensor").engine == "gpsimd"
    with pytest.raises(NkiValidationError, match="power"):
        tt(a, b, "power", engine=nisa.engine.vector)


def test_tensor_tensor_bf16_round_to_nearest_even():
    # sums exactly halfway between two bf16 values, and just above/below
    a = np.array([[1.0, 1.0078125, 1.0, -1.0078125, 3.0, 1.0]], np.float32)
    b = np.array([[2 ** -8, 2 ** -8, 2 ** -8 + 2 ** -20, -(2 ** -8), 2 ** -7, 2 ** -8 - 2 ** -20]],
                 np.float32)
    out, _ = tt(a, b, "add", nl.bfloat16)
    assert out.dtype == BF16
    expect = bf16_rne(a + b)
    np.testing.assert_array_equal(bits(out), expect)
    # ties go to the even mantissa: 1 + 2^-8 -> 1.0, 1.0078125 + 2^-8 -> 1.015625
    np.testing.assert_array_equal(out.astype(np.float32)[0, :4],
                                  [1.0, 1.015625, 1.0078125, -1.015625])


def test_tensor_tensor_fp8_overflow():
    a = np.array([[100.0, 200.0, 1000.0, -1000.0, 1.0, 7.0]], np.float32)
    b = np.array([[2.0, 2.0, 2.0, 2.0, 2.0, 2.0]], np.float32)
    prod = a * b
    e4m3, _ = tt(a, b, "multiply", nl.float8_e4m3)
    e4m3fn, _ = tt(a, b, "multiply", nl.float8_e4m3fn)
    e5m2, _ = tt(a, b, "multiply", nl.float8_e5m2)
    f = e4m3.astype(np.float32)[0]
    # float8_e4m3 (IEEE-style, max 240): 400 and beyond overflow to +-inf
    assert f[0] == 192.0                       # 200 is a tie between 192 and 208: even
    assert np.isposinf(f[1]) and np.isposinf(f[2]) and np.isneginf(f[3])
    assert f[4] == 2.0 and f[5] == 14.0
    g = e4m3fn.astype(np.float32)[0]
    # float8_e4m3fn (max 448, no inf): overflow gives NaN
    assert g[0] == 192.0 and g[1] == 384.0     # 400: tie between 384 and 416 -> even
    assert np.isnan(g[2]) and np.isnan(g[3])
    h = e5m2.astype(np.float32)[0]
    assert h[2] == 2048.0 and h[3] == -2048.0 and h[0] == 192.0
    np.testing.assert_array_equal(bits(e4m3), bits(prod.astype(E4M3)))


def test_tensor_tensor_nan_inf_propagation():
    inf, nan = np.inf, np.nan
    a = np.array([[inf, inf, nan, 1.0, -inf, 0.0, nan, 1.0]], np.float32)
    b = np.array([[-inf, 1.0, 0.0, nan, -inf, 0.0, 1.0, 0.0]], np.float32)
    add, _ = tt(a, b, "add")
    mul, _ = tt(a, b, "multiply")
    mx, _ = tt(a, b, "maximum")
    div, _ = tt(a, b, "divide")
    eq, _ = tt(a, b, "equal")
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(add, a + b)
        np.testing.assert_array_equal(mul, a * b)
        np.testing.assert_array_equal(div, a / b)
    assert np.isnan(add[0, 0]) and add[0, 1] == inf and np.isnan(add[0, 2])
    assert np.isnan(mx[0, 2]) and np.isnan(mx[0, 3])      # NaN propagates through max
    assert div[0, 7] == inf and np.isnan(div[0, 5])
    np.testing.assert_array_equal(eq, [[0, 0, 0, 0, 1, 1, 0, 0]])  # NaN != NaN
    # NaN into bf16 stays NaN; inf stays inf
    bf, _ = tt(a, b, "add", nl.bfloat16)
    assert np.isnan(bf.astype(np.float32)[0, 0]) and bf.astype(np.float32)[0, 1] == inf


def test_tensor_tensor_int32_exact_and_wraps_on_gpsimd():
    big = 2 ** 24 + 1
    a = np.array([[2 ** 31 - 1, -2 ** 31, 65536, big, 7, -7]], np.int32)
    b = np.array([[1, -1, 65536, 2, 3, 2]], np.int32)
    out, prog = tt(a, b, "add", nl.int32)
    assert only(prog, "tensor_tensor").engine == "gpsimd"        # int32 default engine
    assert only(prog, "tensor_tensor").attrs["int_exact"] is True
    np.testing.assert_array_equal(out, wrap32(a.astype(np.int64) + b))
    assert out[0, 0] == -2 ** 31 and out[0, 3] == big + 2         # wrapped / exact
    mul, _ = tt(a, b, "multiply", nl.int32)
    np.testing.assert_array_equal(mul, wrap32(a.astype(np.int64) * b))
    assert mul[0, 2] == 0
    sub, _ = tt(a, b, "subtract", nl.int32)
    np.testing.assert_array_equal(sub, wrap32(a.astype(np.int64) - b))
    gt, _ = tt(a, b, "greater", nl.int32)
    np.testing.assert_array_equal(gt, (a > b).astype(np.int32))


def test_tensor_tensor_int32_on_vector_goes_through_fp32_and_saturates():
    a = np.array([[2 ** 31 - 1, 2 ** 24 + 1, -2 ** 31, 5]], np.int32)
    b = np.array([[1, 0, -1, 6]], np.int32)
    out, prog = tt(a, b, "add", nl.int32, engine=nisa.engine.vector)
    assert only(prog, "tensor_tensor").engine == "vector"
    expect = to_int32_sat(a.astype(np.float32) + b.astype(np.float32))
    np.testing.assert_array_equal(out, expect)
    assert out[0, 0] == 2 ** 31 - 1 and out[0, 1] == 2 ** 24 and out[0, 2] == -2 ** 31


def test_tensor_tensor_int32_with_psum_operand_falls_back_to_vector():
    a = np.array([[3, 4]], np.int32)
    out, prog = run(lambda a, b: k_tt(a, b, "add", nl.int32, buf_b=nl.psum), a, a)
    assert only(prog, "tensor_tensor").engine == "vector"
    np.testing.assert_array_equal(out, a * 2)


def test_bitwise_ops_on_float_bit_patterns():
    f = np.array([[1.5, -2.25, np.nan, -np.inf, -0.0, 3.4e38]], np.float32)
    f[0, 2] = np.frombuffer(np.uint32(0xFFC01234).tobytes(), np.float32)[0]  # -NaN payload
    mask = np.full_like(f, 0).view(np.uint32)
    mask[:] = 0x7FFFFFFF

    def k(f, m):
        x, y = load(f), load(m)
        z = nl.ndarray(f.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=z.view(nl.uint32), data1=x.view(nl.uint32), data2=y,
                           op=OP("bitwise_and"))
        w = nl.ndarray(f.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=w.view(nl.int32), data1=x.view(nl.int32),
                           data2=y.view(nl.int32), op=OP("bitwise_xor"))
        return store(z), store(w)
    (absf, xor), prog = run(k, f, mask)
    np.testing.assert_array_equal(bits(absf), bits(f) & 0x7FFFFFFF)      # |f|, NaN payload kept
    np.testing.assert_array_equal(bits(xor), bits(f) ^ 0x7FFFFFFF)
    assert bits(absf)[0, 2] == 0x7FC01234
    ins = [i for i in prog if i.opcode == "tensor_tensor"][0]
    assert ins.attrs["op_kind"] == "bitvec" and ins.attrs["int_exact"] is True


def test_bitvec_shifts_and_bf16_bits():
    a = np.array([[-8, 1, -1, 0x40000000, 12345]], np.int32)
    s = np.array([[1, 31, 4, 2, 40]], np.int32)
    rs, _ = tt(a, s, "right_shift", nl.int32)
    ls, _ = tt(a, s, "left_shift", nl.int32)
    ua = a.view(np.uint32).astype(np.uint64)
    sh = s.astype(np.uint64)
    np.testing.assert_array_equal(rs.view(np.uint32),
                                  np.where(sh < 32, ua >> sh, 0).astype(np.uint32))
    assert rs[0, 0] == 0x7FFFFFFC                                  # logical, not arithmetic
    np.testing.assert_array_equal(ls.view(np.uint32),
                                  np.where(sh < 64, (ua << sh) & 0xFFFFFFFF, 0).astype(np.uint32))
    # bf16 data through an int16 view: bit-exact OR with the sign bit
    h = np.array([[1.0, -3.5, np.inf, 0.0]], np.float32).astype(BF16)
    sign = np.full((1, 4), 0x8000, np.uint16).view(np.int16)

    def k(h, sgn):
        x, y = load(h), load(sgn)
        z = nl.ndarray(h.shape, nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=z.view(nl.int16), data1=x.view(nl.int16), data2=y,
                           op=OP("bitwise_or"))
        return store(z)
    neg, _ = run(k, h, sign)
    np.testing.assert_array_equal(bits(neg), bits(h) | 0x8000)


def test_bitvec_requires_integer_dtypes():
    a = np.ones((2, 2), np.float32)
    with pytest.raises(NkiValidationError, match="bitvec operators need integer dtypes"):
        tt(a, a, "bitwise_and")


# -- tensor_scalar --------------------------------------------------------------------

def test_tensor_scalar_constants_vectors_and_reverse():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(32, 20)).astype(np.float32)
    v = rng.normal(size=(32, 1)).astype(np.float32) + 3.0

    def k(a, v):
        x, s = load(a), load(v)
        outs = []
        for kw in (dict(op0=OP("subtract"), operand0=s, reverse0=True,
                        op1=OP("divide"), operand1=2.0, reverse1=True),
                   dict(op0=OP("multiply"), operand0=s, op1=OP("add"), operand1=s),
                   dict(op0=OP("subtract"), operand0=0.5),
                   dict(op0=OP("maximum"), operand0=0.0, op1=OP("minimum"), operand1=s)):
            z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=z, data=x, **kw)
            outs.append(store(z))
        return tuple(outs)
    (r0, r1, r2, r3), prog = run(k, a, v)
    np.testing.assert_array_equal(r0, np.float32(2.0) / (v - a))
    np.testing.assert_array_equal(r1, a * v + v)
    np.testing.assert_array_equal(r2, a - np.float32(0.5))
    np.testing.assert_array_equal(r3, np.minimum(np.maximum(a, 0), v))
    ins = [i for i in prog if i.opcode == "tensor_scalar"]
    assert ins[0].attrs["op0"] == "subtract" and ins[0].attrs["op1"] == "divide"
    assert ins[0].attrs["operand0_kind"] == "tensor" and ins[0].attrs["num_ops"] == 2
    assert ins[2].attrs["num_ops"] == 1
    # the [P,1] operand is a recorded read
    assert [x.role for x in ins[1].reads] == ["operand0", "operand1", "data"]


def test_tensor_scalar_unary_ops():
    a = np.array([[-4.0, 0.25, 9.0, 0.0, -0.0]], np.float32)

    def k(a):
        x = load(a)
        outs = []
        for op in ("abs", "square", "relu", "reciprocal"):
            z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=z, data=x, op0=OP(op), operand0=None)
            outs.append(store(z))
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z, data=x, op0=OP("abs"), operand0=0, op1=OP("rsqrt"),
                           operand1=None)
        outs.append(store(z))
        return tuple(outs)
    (ab, sq, re, rc, rs), _ = run(k, a)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(ab, np.abs(a))
        np.testing.assert_array_equal(sq, a * a)
        np.testing.assert_array_equal(re, np.maximum(a, 0))
        np.testing.assert_array_equal(rc, np.float32(1) / a)
        np.testing.assert_array_equal(rs, np.float32(1) / np.sqrt(np.abs(a)))
    assert np.isneginf(rc[0, 4]) and np.isposinf(rc[0, 3])


def test_tensor_scalar_bitvec_constant_and_invert():
    f = np.array([[-1.5, 2.0, -np.inf, np.nan]], np.float32)

    def k(f):
        x = load(f)
        z = nl.ndarray(f.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z.view(nl.uint32), data=x.view(nl.uint32),
                           op0=OP("bitwise_and"), operand0=0x7FFFFFFF,
                           op1=OP("bitwise_xor"), operand1=0x80000000)
        w = nl.ndarray(f.shape, nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=w, data=x.view(nl.int32), op0=OP("invert"), operand0=None)
        r = nl.ndarray(f.shape, nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=r, data=x.view(nl.int32), op0=OP("right_shift"),
                           operand0=23, op1=OP("bitwise_and"), operand1=0xFF)
        return store(z), store(w), store(r)
    (neg_abs, inv, exp), prog = run(k, f)
    np.testing.assert_array_equal(bits(neg_abs), (bits(f) & 0x7FFFFFFF) ^ 0x80000000)
    np.testing.assert_array_equal(inv.view(np.uint32), ~bits(f))
    np.testing.assert_array_equal(exp, (bits(f) >> 23) & 0xFF)
    assert all(i.engine == "vector" for i in prog if i.opcode == "tensor_scalar")


def test_tensor_scalar_int32_address_arithmetic_is_exact():
    a = np.array([[0, 1, 2 ** 24 + 1, 2 ** 30, -5]], np.int32)

    def k(a):
        x = load(a)
        z = nl.ndarray(a.shape, nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z, data=x, op0=OP("multiply"), operand0=3, op1=OP("add"),
                           operand1=7)
        f = nl.ndarray(a.shape, nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=f, data=x, op0=OP("multiply"), operand0=0.5)
        return store(z), store(f)
    (z, f), prog = run(k, a)
    np.testing.assert_array_equal(z, wrap32(a.astype(np.int64) * 3 + 7))
    assert z[0, 2] == 3 * (2 ** 24 + 1) + 7
    np.testing.assert_array_equal(f, to_int32_sat(a.astype(np.float32) * np.float32(0.5)))
    ins = [i for i in prog if i.opcode == "tensor_scalar"]
    assert ins[0].attrs["int_exact"] and not ins[1].attrs["int_exact"]


def test_tensor_scalar_rules():
    a = np.ones((4, 4), np.int32)

    def k(a, **kw):
        x = load(a)
        z = nl.ndarray(a.shape, nl.int32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z, data=x, **kw)
        return store(z)
    with pytest.raises(NkiValidationError, match="both be bitvec or both arithmetic"):
        run(lambda a: k(a, op0=OP("add"), operand0=1, op1=OP("bitwise_and"), operand1=1), a)
    with pytest.raises(NkiValidationError, match="operand1 must be None"):
        run(lambda a: k(a, op0=OP("add"), operand0=1, operand1=2.0), a)
    with pytest.raises(NkiValidationError, match="Vector Engine"):
        run(lambda a: k(a, op0=OP("bitwise_and"), operand0=1, engine=nisa.engine.gpsimd), a)
    with pytest.raises(NkiValidationError, match="Scalar Engine"):
        run(lambda a: k(a, op0=OP("subtract"), operand0=1, engine=nisa.engine.scalar), a)
    with pytest.raises(NkiValidationError, match=r"\[4, 1\] tile"):
        run(lambda a: k(a, op0=OP("add"), operand0=load(a)), a)
    with pytest.raises(NkiValidationError, match="unary operator abs"):
        run(lambda a: k(a, op0=OP("abs"), operand0=2.0), a)
    # multiply+add on the Scalar Engine is fine
    out, prog = run(lambda a: k(a, op0=OP("multiply"), operand0=2.0, op1=OP("add"),
                                operand1=1.0, engine=nisa.engine.scalar), a)
    np.testing.assert_array_equal(out, np.full((4, 4), 3))
    assert only(prog, "tensor_scalar").engine == "scalar"


# -- scalar_tensor_tensor ----------------------------------------------------------------

def test_scalar_tensor_tensor():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(16, 3, 5)).astype(np.float32)
    b = rng.normal(size=(16, 15)).astype(np.float32)
    v = rng.normal(size=(16, 1)).astype(np.float32)

    def k(a, b, v):
        x, y, s = load(a), load(b), load(v, nl.psum)
        z1 = nl.ndarray(a.shape, nl.bfloat16, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=z1, data=x, op0=OP("subtract"), operand0=s,
                                  op1=OP("multiply"), operand1=y.reshape((16, 3, 5)))
        z2 = nl.ndarray(b.shape, nl.float32, buffer=nl.psum)
        nisa.scalar_tensor_tensor(dst=z2, data=x.reshape((16, 15)), op0=OP("divide"),
                                  operand0=4.0, op1=OP("subtract"), operand1=y,
                                  reverse0=True, reverse1=True)
        z3 = nl.ndarray(b.shape, nl.float32, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=z3, data=y, op0=OP("equal"), operand0=0.0,
                                  op1=OP("add"), operand1=y)
        return store(z1), store(z2), store(z3)
    (r1, r2, r3), prog = run(k, a, b, v)
    af = a.reshape(16, 15)
    np.testing.assert_array_equal(bits(r1).reshape(16, 15), bf16_rne((af - v) * b))
    np.testing.assert_array_equal(r2, b - np.float32(4.0) / af)
    np.testing.assert_array_equal(r3, (b == 0).astype(np.float32) + b)
    ins = [i for i in prog if i.opcode == "scalar_tensor_tensor"]
    assert all(i.engine == "vector" for i in ins)
    assert ins[0].attrs["operand0_kind"] == "tensor" and ins[1].attrs["reverse1"] is True
    with pytest.raises(NkiValidationError, match="bitvec operator"):
        run(lambda b: nisa.scalar_tensor_tensor(dst=load(b), data=load(b),
                                                op0=OP("bitwise_and"), operand0=1,
                                                op1=OP("add"), operand1=load(b)),
            b.view(np.int32))


# -- tensor_copy -------------------------------------------------------------------------

def k_copy(a, dst_dtype, engine=nisa.engine.unknown, src_buf=nl.sbuf):
    x = load(a, src_buf)
    z = nl.ndarray(a.shape, dst_dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=z, src=x, engine=engine)
    return store(z)


def test_tensor_copy_bit_exact_and_casts():
    f = np.array([[1.0, -0.0, np.inf, 3.0000002, 1e-45, 0.0]], np.float32)
    f.view(np.uint32)[0, 5] = 0x7F800123              # signalling-NaN payload
    out, prog = run(lambda a: k_copy(a, nl.float32), f)
    np.testing.assert_array_equal(bits(out), bits(f))
    assert only(prog, "tensor_copy").attrs["bit_exact"] is True
    out, _ = run(lambda a: k_copy(a, nl.float32, engine=nisa.engine.gpsimd), f)
    np.testing.assert_array_equal(bits(out), bits(f))
    h = np.array([[1.0078125, -3.0, 65504.0, 1e-3]], np.float32)
    bf, prog = run(lambda a: k_copy(a, nl.bfloat16), h)
    np.testing.assert_array_equal(bits(bf), bf16_rne(h))
    assert only(prog, "tensor_copy").attrs["bit_exact"] is False
    i = np.array([[70000, -70000, 2 ** 24 + 1, 12]], np.int32)
    i16, _ = run(lambda a: k_copy(a, nl.int16), i)             # via fp32: saturates
    np.testing.assert_array_equal(i16, [[32767, -32768, 32767, 12]])
    i32, _ = run(lambda a: k_copy(a, nl.int32), i)
    np.testing.assert_array_equal(i32, i)                       # same dtype: exact


def test_tensor_copy_engines():
    i = np.array([[2 ** 24 + 1, 3]], np.int32)
    out, prog = run(lambda a: k_copy(a, nl.int32, engine=nisa.engine.scalar), i)
    assert only(prog, "tensor_copy").engine == "scalar"
    np.testing.assert_array_equal(out, [[2 ** 24, 3]])          # ScalarE goes through fp32
    with pytest.raises(UnsupportedError, match="NeuronCore-v2"):
        run(lambda a: k_copy(a, nl.int32, engine=nisa.engine.scalar), i, chip="trn1")
    out, prog = run(lambda a: k_copy(a, nl.int32, src_buf=nl.psum), i)
    np.testing.assert_array_equal(out, i)


# -- memset / reciprocal -------------------------------------------------------------------

def test_memset_values_and_limits():
    def k(v, dtype, engine=nisa.engine.unknown):
        def kern():
            z = nl.ndarray((4, 3), dtype, buffer=nl.sbuf)
            nisa.memset(dst=z, value=v, engine=engine)
            return store(z)
        return kern
    out, prog = run(k(1.0 + 2 ** -9, nl.bfloat16))
    np.testing.assert_array_equal(bits(out), np.full((4, 3), bf16_rne(1.0 + 2 ** -9)))
    assert default_engine(only(prog, "memset")) == "vector"
    out, prog = run(k(-2 ** 31, nl.int32, nisa.engine.gpsimd))
    assert (out == -2 ** 31).all() and only(prog, "memset").engine == "gpsimd"
    out, _ = run(k(np.inf, nl.float16))
    assert np.isposinf(out).all()
    with pytest.raises(NkiValidationError, match="does not fit"):
        run(k(300, nl.int8))
    with pytest.raises(NkiValidationError, match="does not match the integer dtype"):
        run(k(1.5, nl.int32))
    with pytest.raises(NkiValidationError, match="engine=scalar is not allowed"):
        run(k(0, nl.int32, nisa.engine.scalar))


def test_reciprocal():
    a = np.array([[2.0, -0.0, 0.0, 3.0, np.inf, 1e-40]], np.float32)

    def k(a):
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.reciprocal(dst=z, data=load(a))
        return store(z)
    out, prog = run(k, a)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out, np.float32(1) / a)
    assert only(prog, "reciprocal").engine == "vector"


# -- scans and fused reductions --------------------------------------------------------------

def test_tensor_tensor_scan():
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 1.0, size=(8, 2, 40)).astype(np.float32)
    b = rng.normal(size=(8, 80)).astype(np.float32)
    init = rng.normal(size=(8, 1)).astype(np.float32)

    def k(a, b, init):
        x, y, i = load(a), load(b), load(init)
        z = nl.ndarray((8, 80), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor_scan(dst=z, data0=x.reshape((8, 80)), data1=y, initial=i,
                                op0=OP("multiply"), op1=OP("add"))
        w = nl.ndarray((8, 80), nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_tensor_scan(dst=w, data0=y, data1=x.reshape((8, 80)), initial=1.5,
                                op0=OP("subtract"), op1=OP("subtract"), reverse0=True,
                                reverse1=True)
        return store(z), store(w)
    (z, w), prog = run(k, a, b, init)
    af = a.reshape(8, 80)
    r = init[:, 0].copy()
    ez = np.empty_like(b)
    for j in range(80):
        r = (af[:, j] * r + b[:, j]).astype(np.float32)
        ez[:, j] = r
    np.testing.assert_array_equal(z, ez)
    r = np.full(8, 1.5, np.float32)
    ew = np.empty_like(b)
    for j in range(80):
        r = (af[:, j] - (r - b[:, j])).astype(np.float32)   # op1(data1, op0(prev, data0))
        ew[:, j] = r
    np.testing.assert_array_equal(bits(w), bf16_rne(ew))
    assert {i.engine for i in prog if i.opcode == "tensor_tensor_scan"} == {"vector"}


def test_tensor_scalar_cumulative_chain():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(16, 30)).astype(np.float32)
    b = rng.normal(size=(16, 30)).astype(np.float32)

    def k(a, b):
        x, y = load(a), load(b)
        z1 = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_cumulative(dst=z1, src=x, op0=OP("multiply"), op1=OP("add"),
                                      imm0=2.0)
        z2 = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_cumulative(dst=z2, src=y, op0=OP("add"), op1=OP("add"),
                                      imm0=1.0, reduce_cmd=nisa.reduce_cmd.reduce)
        z3 = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_cumulative(dst=z3, src=x, op0=OP("subtract"),
                                      op1=OP("maximum"), imm0=0.5, imm1=-1.0,
                                      reduce_cmd=nisa.reduce_cmd.load_reduce)
        return store(z1), store(z2), store(z3)
    (z1, z2, z3), prog = run(k, a, b)
    e1 = np.cumsum(a * np.float32(2), axis=1, dtype=np.float32)
    np.testing.assert_array_equal(z1, e1)
    e2 = np.cumsum(np.concatenate([e1[:, -1:], b + np.float32(1)], axis=1), axis=1,
                   dtype=np.float32)[:, 1:]
    np.testing.assert_array_equal(z2, e2)                       # continues the registers
    e3 = np.maximum.accumulate(np.concatenate([np.full((16, 1), -1, np.float32),
                                               a - np.float32(0.5)], axis=1), axis=1)[:, 1:]
    np.testing.assert_array_equal(z3, e3)
    ins = [i for i in prog if i.opcode == "tensor_scalar_cumulative"]
    assert [i.attrs["reduce_cmd"] for i in ins] == ["reset_reduce", "reduce", "load_reduce"]
    with pytest.raises(NkiValidationError, match="int32/uint32 are not supported"):
        run(lambda a: nisa.tensor_scalar_cumulative(dst=load(a), src=load(a), op0=OP("add"),
                                                    op1=OP("add"), imm0=1), a.view(np.int32))


def test_tensor_scalar_reduce():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(32, 4, 25)).astype(np.float32)
    v = rng.normal(size=(32, 1)).astype(np.float32)

    def k(a, v):
        x, s = load(a), load(v)
        z = nl.ndarray(a.shape, nl.bfloat16, buffer=nl.sbuf)
        r1 = nl.ndarray((32, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_reduce(dst=z, data=x, op0=OP("multiply"), operand0=s,
                                  reduce_op=OP("add"), reduce_res=r1)
        r2 = nl.ndarray((32, 1), nl.float32, buffer=nl.psum)
        nisa.tensor_scalar_reduce(dst=z, data=x, op0=OP("add"), operand0=1.0,
                                  reduce_op=OP("maximum"), reduce_res=r2,
                                  reduce_res_negate=True)
        r3 = nl.ndarray((32, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_reduce(dst=z, data=x, op0=OP("subtract"), operand0=0.0,
                                  reduce_op=OP("minimum"),
                                  reduce_cmd=nisa.reduce_cmd.load_reduce, reduce_init=s)
        nisa.tensor_scalar_reduce(dst=z, data=x, op0=OP("multiply"), operand0=-1.0,
                                  reduce_op=OP("minimum"), reduce_res=r3,
                                  reduce_cmd=nisa.reduce_cmd.reduce)
        return store(z), store(r1), store(r2), store(r3)
    (z, r1, r2, r3), prog = run(k, a, v)
    af = a.reshape(32, 100)
    np.testing.assert_array_equal(r1[:, 0], np.cumsum(af * v, axis=1, dtype=np.float32)[:, -1])
    np.testing.assert_array_equal(r2[:, 0], -np.max(af + np.float32(1), axis=1))
    np.testing.assert_array_equal(r3[:, 0], np.minimum(v[:, 0], np.minimum(af.min(1),
                                                                         (-af).min(1))))
    np.testing.assert_array_equal(bits(z).reshape(32, 100), bf16_rne(-af))
    ops = [(i.engine, i.opcode) for i in prog if i.opcode.startswith(("tensor_scalar",
                                                                     "read_acc"))]
    assert ops == [("vector", "tensor_scalar_reduce"), ("vector", "read_accumulator")] * 2 + [
        ("vector", "tensor_scalar_reduce")] * 2 + [("vector", "read_accumulator")]
    ins = [i for i in prog if i.opcode == "tensor_scalar_reduce"]
    assert ins[0].attrs["fused_reduce"] and ins[0].attrs["reduce_op"] == "add"
    assert ins[1].attrs["reduce_res_negate"] and not ins[2].attrs["reads_accumulator"]
    with pytest.raises(NkiValidationError, match="reduce_init is only used"):
        run(lambda a: nisa.tensor_scalar_reduce(dst=load(a), data=load(a), op0=OP("add"),
                                                operand0=1.0, reduce_op=OP("add"),
                                                reduce_init=1.0), af)


# -- errors ---------------------------------------------------------------------------------

def _located(excinfo, opcode):
    """The error names the op and the kernel line (this file) that issued it."""
    msg = str(excinfo.value)
    assert msg.startswith(f"{opcode}: "), msg
    assert f"{__file__}:" in msg and HERE in msg
    loc = excinfo.value.location
    assert loc.file == __file__ and f"nisa.{opcode}(" in loc.text


def test_errors_partition_mismatch():
    def k(a, b):
        x, y = load(a), load(b)
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=z, data1=x, data2=y, op=OP("add"))
    with pytest.raises(NkiValidationError, match="number of partitions") as e:
        run(k, np.ones((4, 8), np.float32), np.ones((8, 4), np.float32))
    _located(e, "tensor_tensor")
    assert "data1[4, 8], data2[8, 4], dst[4, 8]" in str(e.value)


def test_errors_element_mismatch():
    def k(a, b):
        x, y = load(a), load(b)
        z = nl.ndarray((4, 6), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z, data=x, op0=OP("add"), operand0=1.0)
    with pytest.raises(NkiValidationError, match="elements per partition") as e:
        run(k, np.ones((4, 8), np.float32), np.ones((4, 8), np.float32))
    _located(e, "tensor_scalar")


def test_errors_both_inputs_in_psum():
    def k(a):
        x, y = load(a, nl.psum), load(a, nl.psum)
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=z, data1=x, data2=y, op=OP("multiply"))
    with pytest.raises(NkiValidationError, match="cannot both be in PSUM") as e:
        run(k, np.ones((4, 8), np.float32))
    _located(e, "tensor_tensor")


def test_errors_gpsimd_cannot_access_psum():
    def k(a):
        x = load(a, nl.psum)
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=z, src=x, engine=nisa.engine.gpsimd)
    with pytest.raises(NkiValidationError, match="GpSimd engine cannot access PSUM") as e:
        run(k, np.ones((4, 8), np.float32))
    _located(e, "tensor_copy")


def test_errors_bad_operator_and_engine():
    def k(a, **kw):
        x = load(a)
        nisa.tensor_tensor(dst=x, data1=x, data2=x, **kw)
    with pytest.raises(NkiValidationError, match="not an ALU operator") as e:
        run(lambda a: k(a, op="frobnicate"), np.ones((2, 2), np.float32))
    _located(e, "tensor_tensor")
    with pytest.raises(NkiValidationError, match="engine=scalar is not allowed"):
        run(lambda a: k(a, op=OP("add"), engine=nisa.engine.scalar), np.ones((2, 2), np.float32))
    with pytest.raises(NkiValidationError, match="unary operator"):
        run(lambda a: k(a, op=OP("abs")), np.ones((2, 2), np.float32))


# -- property tests -------------------------------------------------------------------------

DTYPES = {"float32": np.float32, "bfloat16": BF16, "float16": np.float16, "int32": np.int32}
PROP = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
shapes = st.tuples(st.integers(1, 128), st.integers(1, 600))
dtypes = st.sampled_from(sorted(DTYPES))


def rand(rng, shape, name):
    if name == "int32":
        return rng.integers(-2 ** 31, 2 ** 31, size=shape, dtype=np.int64).astype(np.int32)
    x = rng.normal(scale=100.0, size=shape).astype(np.float32)
    return x.astype(DTYPES[name])


def same(out, expect):
    """Equal values, NaN where NaN (bit patterns of NaNs may differ)."""
    o = np.asarray(out).astype(np.float64) if out.dtype != np.int32 else out
    e = np.asarray(expect).astype(np.float64) if expect.dtype != np.int32 else expect
    np.testing.assert_array_equal(o, e)


@PROP
@given(shape=shapes, d1=dtypes, d2=dtypes, dd=dtypes,
       op=st.sampled_from(["add", "subtract", "multiply", "maximum", "minimum", "less"]),
       seed=st.integers(0, 2 ** 16))
def test_property_tensor_tensor(shape, d1, d2, dd, op, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, shape, d1), rand(rng, shape, d2)
    out, prog = tt(a, b, op, getattr(nl, dd))
    ins = only(prog, "tensor_tensor")
    if d1 == d2 == dd == "int32":
        assert default_engine(ins) == "gpsimd"
        x, y = a.astype(np.int64), b.astype(np.int64)
        ref = {"add": x + y, "subtract": x - y, "multiply": x * y, "maximum": np.maximum(x, y),
               "minimum": np.minimum(x, y), "less": (x < y).astype(np.int64)}[op]
        expect = wrap32(ref)
    else:
        assert default_engine(ins) == "vector"
        expect = ref_cast(f32op(op, a.astype(np.float32), b.astype(np.float32)), DTYPES[dd])
    assert out.dtype == np.dtype(DTYPES[dd]) and out.shape == shape
    same(out, expect)
    assert ins.reads[0].dtype == d1 and ins.writes[0].dtype == dd
    assert ins.writes[0].elems_per_partition == shape[1]


@PROP
@given(shape=shapes, dd_in=dtypes, dd=dtypes,
       op0=st.sampled_from(["add", "subtract", "multiply", "maximum"]),
       op1=st.sampled_from([None, "add", "minimum", "multiply"]),
       c0=st.one_of(st.integers(-5, 5), st.floats(-4, 4, width=32)),
       vec=st.booleans(), rev=st.tuples(st.booleans(), st.booleans()),
       seed=st.integers(0, 2 ** 16))
def test_property_tensor_scalar(shape, dd_in, dd, op0, op1, c0, vec, rev, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, shape, dd_in)
    v = rng.normal(size=(shape[0], 1)).astype(np.float32)

    def k(a, v):
        x, s = load(a), load(v)
        z = nl.ndarray(a.shape, getattr(nl, dd), buffer=nl.sbuf)
        nisa.tensor_scalar(dst=z, data=x, op0=OP(op0), operand0=c0, reverse0=rev[0],
                           op1=OP(op1) if op1 else None,
                           operand1=(s if vec else 3.0) if op1 else None, reverse1=rev[1])
        return store(z)
    out, prog = run(k, a, v)
    ins = only(prog, "tensor_scalar")
    addr = (dd_in == dd == "int32" and op0 in ("add", "subtract", "multiply")
            and op1 in (None, "add", "multiply") and float(c0).is_integer()
            and not (op1 and vec))
    if addr:
        x = a.astype(np.int64)
        t = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply}
        r = t[op0](int(c0), x) if rev[0] else t[op0](x, int(c0))
        if op1:
            r = t[op1](3, r) if rev[1] else t[op1](r, 3)
        expect = wrap32(r)
    else:
        x = a.astype(np.float32)
        r = f32op(op0, c0, x) if rev[0] else f32op(op0, x, c0)
        if op1:
            s1 = v if vec else np.float32(3.0)
            r = f32op(op1, s1, r) if rev[1] else f32op(op1, r, s1)
        expect = ref_cast(r, DTYPES[dd])
    same(out, expect)
    assert ins.attrs["int_exact"] == addr and ins.attrs["num_ops"] == (2 if op1 else 1)


@PROP
@given(shape=shapes, ds=dtypes, dd=dtypes, seed=st.integers(0, 2 ** 16),
       engine=st.sampled_from(["vector", "gpsimd"]))
def test_property_tensor_copy(shape, ds, dd, seed, engine):
    rng = np.random.default_rng(seed)
    a = rand(rng, shape, ds)
    if ds != "int32":
        a.reshape(-1)[:: max(1, a.size // 3)] = np.nan
    out, prog = run(lambda a: k_copy(a, getattr(nl, dd), getattr(nisa.engine, engine)), a)
    ins = only(prog, "tensor_copy")
    assert ins.engine == engine and ins.attrs["bit_exact"] == (ds == dd)
    if ds == dd:
        np.testing.assert_array_equal(bits(out), bits(a))
    else:
        same(out, ref_cast(a.astype(np.float32), DTYPES[dd]))


def test_no_warnings_from_arithmetic():
    a = np.array([[1e38, 0.0, -1.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tt(a, a, "multiply")
        tt(a, np.zeros_like(a), "divide")
