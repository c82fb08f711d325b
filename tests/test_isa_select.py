"""Select and generated-pattern instructions (trnsim.isa.elementwise): iota,
affine_select, tensor_copy_predicated, range_select, select_reduce, and the Vector
Engine accumulator registers they share (trnsim.isa.accumulate).

References are NumPy code written here. Every kernel also runs once with numerics off
(`run` below) and must produce the same record.
"""
import os
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from kernel_helpers import bits, load, only, store

BF16 = ml_dtypes.bfloat16
FP32_MIN = np.float32(np.finfo(np.float32).min)
HERE = os.path.basename(__file__)


def OP(name):
    """The nki.language operator (nl.equal, ...), or its name while nl lacks it."""
    return getattr(nl, name, name)


def _sig(program):
    return [(i.engine, i.opcode, tuple((a.role, a.mode, a.space, a.dtype, a.shape)
                                       for a in i.accesses), dict(i.attrs))
            for i in program]


def run(kernel, *args, chip=None, strict=False):
    """Numerics off (record only), then on; the records must match.
    Returns (outputs, Run)."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    _, r0 = trnsim.run_kernel(kernel, copies, numerics=False, chip=chip)
    out, r1 = trnsim.run_kernel(kernel, args, chip=chip, strict=strict)
    assert _sig(r0.program) == _sig(r1.program)
    assert all(i.writes for i in r1.program)
    return out, r1


def affine_ref(P, pattern, offset, cm):
    """offset + p*cm + sum(idx*step) in int32 (wrapping), independently of trnsim."""
    nums = [n for _, n in pattern]
    idx = np.indices(nums).reshape(len(nums), -1).astype(np.int64)
    v = sum(idx[d] * pattern[d][0] for d in range(len(nums)))
    full = offset + np.arange(P, dtype=np.int64)[:, None] * cm + v[None, :]
    return ((full + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


# -- iota -------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,offset,cm,dtype,shape", [
    ([[1, 64]], 0, 0, nl.int32, (8, 64)),
    ([[1, 16]], 5, 16, nl.float32, (128, 16)),
    ([[2, 3], [-1, 4], [10, 5]], -7, 3, nl.int32, (4, 60)),
    ([[1, 2], [2, 3], [6, 2], [12, 2]], 0, 1, nl.int16, (6, 2, 3, 2, 2)),
    ([[1, 16]], 2 ** 31 - 8, 1, nl.int32, (4, 16)),                  # int32 wrap-around
    ([[1, 300]], 2 ** 24 - 150, 0, nl.float32, (2, 300)),            # fp32 rounding
    ([[1, 300]], 0, 1, nl.bfloat16, (3, 300)),
])
def test_iota(pattern, offset, cm, dtype, shape):
    def k():
        z = nl.ndarray(shape, dtype, buffer=nl.sbuf)
        nisa.iota(dst=z, pattern=pattern, offset=offset, channel_multiplier=cm)
        return store(z)
    out, r = run(k)
    v = affine_ref(shape[0], pattern, offset, cm)
    npd = out.dtype
    expect = v.astype(np.float32).astype(npd) if npd.kind == "f" or npd == BF16 else \
        v.astype(np.int64).astype(npd)
    np.testing.assert_array_equal(out.reshape(shape[0], -1), expect)
    ins = only(r.program, "iota")
    assert ins.engine == "gpsimd" and not ins.reads
    assert ins.attrs["pattern"] == tuple(map(tuple, pattern))
    if offset == 2 ** 31 - 8:
        assert out[0, 8] == -2 ** 31                              # wrapped int32 math
    if offset == 2 ** 24 - 150:
        assert out[0, 151] == 2 ** 24 and out[0, 152] == 2 ** 24 + 2  # RNE into fp32


def test_iota_errors():
    def k(pattern, buffer=nl.sbuf, offset=0):
        def kern():
            z = nl.ndarray((4, 8), nl.int32, buffer=buffer)
            nisa.iota(dst=z, pattern=pattern, offset=offset)
        return kern
    with pytest.raises(NkiValidationError, match="pattern covers 6 elements") as e:
        run(k([[1, 6]]))
    assert f"{__file__}:" in str(e.value) and str(e.value).startswith("iota: ")
    with pytest.raises(NkiValidationError, match="1 to 4"):
        run(k([[1, 2]] * 3 + [[1, 1], [1, 1]]))
    with pytest.raises(NkiValidationError, match="address space 'sbuf'"):
        run(k([[1, 8]], nl.psum))
    with pytest.raises(NkiValidationError, match="int32 constant"):
        run(k([[1, 8]], offset=0.5))


# -- affine_select ------------------------------------------------------------------------

def test_affine_select_causal_mask():
    rng = np.random.default_rng(0)
    P, F = 64, 96
    a = rng.normal(size=(P, F)).astype(np.float32)

    def k(a):
        x = load(a)
        z = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        # keep j <= p: p - j >= 0
        nisa.affine_select(dst=z, pattern=[[-1, F]], channel_multiplier=1, on_true_tile=x,
                           on_false_value=-9984.0, cmp_op=OP("greater_equal"))
        w = nl.ndarray((P, F), nl.bfloat16, buffer=nl.sbuf)
        nisa.affine_select(dst=w, pattern=[[1, F]], channel_multiplier=-2, on_true_tile=x,
                           on_false_value=0.1, offset=-3)      # default cmp_op: equal
        return store(z), store(w)
    (z, w), r = run(k, a)
    p = np.arange(P)[:, None]
    j = np.arange(F)[None, :]
    np.testing.assert_array_equal(z, np.where(p - j >= 0, a, np.float32(-9984.0)))
    sel = (j - 2 * p - 3) == 0
    np.testing.assert_array_equal(w.astype(np.float32),
                                  np.where(sel, a, np.float32(0.1)).astype(BF16)
                                  .astype(np.float32))
    ins = [i for i in r.program if i.opcode == "affine_select"]
    assert [i.engine for i in ins] == ["gpsimd", "gpsimd"]
    assert ins[0].attrs["cmp_op"] == "greater_equal" and ins[1].attrs["cmp_op"] == "equal"
    assert [x.role for x in ins[0].accesses] == ["on_true_tile", "dst"]


def test_affine_select_same_dtype_is_bit_exact():
    h = np.array([[np.nan, -0.0, 1.0, 2.0]], np.float32)
    h.view(np.uint32)[0, 0] = 0x7F800001             # signalling NaN survives the copy

    def k(h):
        z = nl.ndarray(h.shape, nl.float32, buffer=nl.sbuf)
        nisa.affine_select(dst=z, pattern=[[1, 4]], channel_multiplier=0,
                           on_true_tile=load(h), on_false_value=5.0,
                           cmp_op=OP("less"), offset=-2)
        return store(z)
    out, _ = run(k, h)
    assert bits(out)[0, 0] == 0x7F800001 and bits(out)[0, 1] == 0x80000000
    np.testing.assert_array_equal(out[0, 2:], [5.0, 5.0])


def test_affine_select_errors():
    a = np.ones((4, 8), np.float32)

    def k(a, cmp_op=OP("equal"), buf=nl.sbuf):
        x = load(a, buf)
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        nisa.affine_select(dst=z, pattern=[[1, 8]], channel_multiplier=0, on_true_tile=x,
                           on_false_value=0.0, cmp_op=cmp_op)
    with pytest.raises(NkiValidationError, match="comparison") as e:
        run(lambda a: k(a, cmp_op=OP("add")), a)
    assert str(e.value).startswith("affine_select: ") and f"{HERE}:" in str(e.value)
    with pytest.raises(NkiValidationError, match="address space 'sbuf'"):
        run(lambda a: k(a, buf=nl.psum), a)


# -- tensor_copy_predicated ------------------------------------------------------------------

def test_tensor_copy_predicated():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(16, 40)).astype(np.float32)
    old = rng.normal(size=(16, 40)).astype(np.float32)
    pred = (rng.random(size=(16, 40)) < 0.5).astype(np.uint8) * rng.integers(1, 255, (16, 40),
                                                                              dtype=np.uint8)

    def k(src, old, pred):
        s, d, p = load(src), load(old), load(pred)
        nisa.tensor_copy_predicated(dst=d, src=s, predicate=p)
        e = load(old)
        nisa.tensor_copy_predicated(dst=e, src=-2.5, predicate=p, reverse_pred=True)
        return store(d), store(e)
    (d, e), r = run(k, src, old, pred)
    np.testing.assert_array_equal(d, np.where(pred != 0, src, old))
    np.testing.assert_array_equal(e, np.where(pred == 0, np.float32(-2.5), old))
    ins = [i for i in r.program if i.opcode == "tensor_copy_predicated"]
    assert [i.engine for i in ins] == ["vector", "vector"]
    assert [x.role for x in ins[0].accesses] == ["src", "predicate", "dst"]
    assert ins[1].attrs["src_kind"] == "const" and ins[1].attrs["reverse_pred"]


def test_tensor_copy_predicated_bit_exact_and_rules():
    src = np.array([[1.0, 2.0, 3.0]], np.float32).astype(BF16)
    src.view(np.uint16)[0, 1] = 0x7FC1                     # NaN payload
    old = np.zeros((1, 3), BF16)
    pred = np.array([[0, 65535, 1]], np.uint16)

    def k(src, old, pred):
        d = load(old)
        nisa.tensor_copy_predicated(dst=d, src=load(src), predicate=load(pred))
        return store(d)
    out, _ = run(k, src, old, pred)
    np.testing.assert_array_equal(bits(out), [[0, 0x7FC1, bits(src)[0, 2]]])
    with pytest.raises(NkiValidationError, match="predicate .* must have dtype uint8"):
        run(k, src, old, pred.astype(np.float32))
    with pytest.raises(NkiValidationError, match="must have the same dtype"):
        run(k, src.astype(np.float32), old, pred)


def test_tensor_copy_predicated_writes_only_selected_elements():
    src = np.arange(8, dtype=np.float32).reshape(2, 4)
    pred = np.array([[1, 0, 1, 0], [1, 1, 1, 1]], np.uint8)

    def k(src, pred, full):
        d = nl.ndarray(src.shape, nl.float32, buffer=nl.sbuf)   # never initialized
        nisa.tensor_copy_predicated(dst=d, src=load(src), predicate=load(pred))
        return store(d if full else d[1:2, :])
    out, _ = run(k, src, pred, False, strict=True)
    np.testing.assert_array_equal(out, src[1:2])
    with pytest.raises(trnsim.NkiValidationError, match="uninitialized"):
        run(k, src, pred, True, strict=True)      # row 0 still has unwritten elements


# -- range_select -------------------------------------------------------------------------

def rs_ref(x, b0, b1, c0, c1, start):
    j = (start + np.arange(x.shape[1])).astype(np.float32)[None, :]
    mask = c0(j, b0) & c1(j, b1)
    return np.where(mask, x.astype(np.float32), FP32_MIN)


def test_range_select_with_reduce():
    rng = np.random.default_rng(2)
    P, F = 128, 200
    x = rng.normal(size=(P, F)).astype(np.float32)
    b0 = rng.integers(0, 150, size=(P, 1)).astype(np.float32)
    b1 = b0 + rng.integers(0, 120, size=(P, 1)).astype(np.float32)

    def k(x, b0, b1):
        t, l0, l1 = load(x, nl.psum), load(b0), load(b1)
        z = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        red = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.range_select(dst=z, on_true_tile=t, comp_op0=OP("greater_equal"),
                          comp_op1=OP("less"), bound0=l0, bound1=l1, reduce_res=red,
                          range_start=10, on_false_value=FP32_MIN)
        return store(z), store(red)
    (z, red), r = run(k, x, b0, b1)
    ref = rs_ref(x, b0, b1, np.greater_equal, np.less, 10)
    np.testing.assert_array_equal(z, ref)
    np.testing.assert_array_equal(red[:, 0], ref.max(axis=1))
    assert (red[(b1 <= b0 + 0)[:, 0] | (b0[:, 0] >= F + 10), 0] == FP32_MIN).all()
    ops = [(i.engine, i.opcode) for i in r.program if i.opcode != "dma_copy"]
    assert ops == [("vector", "range_select"), ("vector", "read_accumulator")]
    ins = only(r.program, "range_select")
    assert ins.attrs["reduce_cmd"] == "reset_reduce" and ins.attrs["fused_reduce"]
    assert [x.role for x in ins.reads] == ["bound0", "bound1", "on_true_tile"]
    assert ins.reads[2].space == "psum"
    acc = r.cores[0].accumulators
    np.testing.assert_array_equal(acc["vector"], ref.max(axis=1))
    assert acc["vector:valid"].all()


def test_range_select_chain_bf16_fill_and_constants():
    rng = np.random.default_rng(3)
    P, F = 32, 64
    x = rng.normal(size=(P, F)).astype(np.float32)
    b1 = np.full((P, 1), 100.0, np.float32)

    def k(x, b1):
        t, l1 = load(x), load(b1)
        z = nl.ndarray((P, F), nl.bfloat16, buffer=nl.sbuf)
        red = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        for i in range(3):
            nisa.range_select(dst=z, on_true_tile=t, comp_op0=OP("greater_equal"),
                              comp_op1=OP("less"), bound0=0.0, bound1=l1,
                              reduce_cmd=nisa.reduce_cmd.reset_reduce if i == 0
                              else nisa.reduce_cmd.reduce,
                              reduce_res=red if i == 2 else None, range_start=i * F)
            nisa.tensor_scalar(dst=t, data=t, op0=OP("add"), operand0=1.0)
        return store(z), store(red)
    (z, red), r = run(k, x, b1)
    expect, cur = np.full(P, -np.inf, np.float32), x.copy()
    for i in range(3):
        sel = rs_ref(cur, 0.0, b1, np.greater_equal, np.less, i * F)
        expect = np.maximum(expect, sel.max(axis=1))
        cur = cur + np.float32(1)
    np.testing.assert_array_equal(red[:, 0], expect)
    # the last call selects j in [128, 192) < 100: nothing; FP32_MIN -> bf16 is -inf
    assert np.isneginf(z.astype(np.float32)).all()
    assert (expect > FP32_MIN).all()
    cmds = [i.attrs["reduce_cmd"] for i in r.program if i.opcode == "range_select"]
    assert cmds == ["reset_reduce", "reduce", "reduce"]
    assert [i.opcode for i in r.program].count("read_accumulator") == 1


def test_range_select_rules():
    x = np.ones((4, 8), np.float32)
    b = np.zeros((4, 1), np.float32)

    def k(x, b, **kw):
        t, l0 = load(x), load(b)
        z = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        args = dict(dst=z, on_true_tile=t, comp_op0=OP("greater_equal"),
                    comp_op1=OP("less"), bound0=l0, bound1=4.0)
        args.update(kw)
        nisa.range_select(**args)
    with pytest.raises(UnsupportedError, match="NeuronCore-v3") as e:
        run(k, x, b, chip="trn1")
    assert str(e.value).startswith("range_select: ") and f"{__file__}:" in str(e.value)
    with pytest.raises(NkiValidationError, match="FP32_MIN"):
        run(lambda x, b: k(x, b, on_false_value=-np.inf), x, b)
    with pytest.raises(NkiValidationError, match="comp_op0=not_equal is not supported"):
        run(lambda x, b: k(x, b, comp_op0=OP("not_equal")), x, b)
    with pytest.raises(NkiValidationError, match="reduce_op=add is not supported"):
        run(lambda x, b: k(x, b, reduce_op=OP("add")), x, b)
    with pytest.raises(NkiValidationError, match="float dtype"):
        run(k, x.astype(np.int32), b)
    with pytest.raises(NkiValidationError, match="must have dtype float32"):
        run(k, x, b.astype(BF16))


# -- select_reduce -------------------------------------------------------------------------

def test_select_reduce():
    rng = np.random.default_rng(4)
    P, F = 64, 50
    on_true = rng.normal(size=(P, F)).astype(np.float32).astype(BF16)
    pred = (rng.random(size=(P, F)) < 0.3).astype(np.int8)
    fill = rng.normal(size=(P, 1)).astype(np.float32)

    def k(on_true, pred, fill):
        t, p, f = load(on_true), load(pred, nl.psum), load(fill)
        z = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        red = nl.ndarray((P, 1), nl.bfloat16, buffer=nl.sbuf)
        nisa.select_reduce(dst=z, predicate=p, on_true=t, on_false=f, reduce_res=red,
                           reduce_cmd=nisa.reduce_cmd.reset_reduce)
        w = nl.ndarray((P, F), nl.bfloat16, buffer=nl.psum)
        nisa.select_reduce(dst=w, predicate=p, on_true=t, on_false=-1e30, reverse_pred=True)
        return store(z), store(red), store(w)
    (z, red, w), r = run(k, on_true, pred, fill)
    tf = on_true.astype(np.float32)
    ez = np.where(pred != 0, tf, fill)
    np.testing.assert_array_equal(z, ez)
    np.testing.assert_array_equal(red[:, 0], ez.max(axis=1).astype(BF16))
    np.testing.assert_array_equal(w.astype(np.float32),
                                  np.where(pred == 0, tf, np.float32(-1e30)).astype(BF16)
                                  .astype(np.float32))
    ins = [i for i in r.program if i.opcode == "select_reduce"]
    assert ins[0].attrs["fused_reduce"] and not ins[1].attrs["fused_reduce"]
    assert ins[1].attrs["reduce_cmd"] == "idle" and ins[0].attrs["on_false_kind"] == "tensor"
    # idle leaves the registers undefined
    assert not r.cores[0].accumulators["vector:valid"][:P].any()


def test_select_reduce_rules():
    t = np.ones((4, 8), np.float32)
    p = np.ones((4, 8), np.uint8)

    def k(t, p, bufs=(nl.sbuf, nl.sbuf), **kw):
        a, b = load(t, bufs[0]), load(p, bufs[1])
        z = nl.ndarray(t.shape, nl.float32, buffer=nl.sbuf)
        args = dict(dst=z, predicate=b, on_true=a, on_false=0.0)
        args.update(kw)
        nisa.select_reduce(**args)
    red = lambda: nl.ndarray((4, 1), nl.float32, buffer=nl.sbuf)  # noqa: E731
    with pytest.raises(NkiValidationError, match="reduce_res needs reduce_cmd") as e:
        run(lambda t, p: k(t, p, reduce_res=red()), t, p)
    assert str(e.value).startswith("select_reduce: ") and HERE in str(e.value)
    with pytest.raises(NkiValidationError, match="cannot both be in PSUM"):
        run(lambda t, p: k(t, p, bufs=(nl.psum, nl.psum)), t, p)
    with pytest.raises(NkiValidationError, match="int32 and uint32 are not supported"):
        run(k, t.astype(np.int32), p)
    with pytest.raises(NkiValidationError, match="predicate .* must have dtype int8"):
        run(k, t, p.astype(np.int32))
    with pytest.raises(NkiValidationError, match="load_reduce is not supported"):
        run(lambda t, p: k(t, p, reduce_cmd=nisa.reduce_cmd.load_reduce), t, p)


# -- shared Vector Engine accumulators ---------------------------------------------------------

def test_accumulators_are_shared_across_instructions():
    rng = np.random.default_rng(5)
    P, F = 16, 24
    a = rng.normal(size=(P, F)).astype(np.float32)
    pred = (rng.random(size=(P, F)) < 0.5).astype(np.uint8)
    b0 = np.zeros((P, 1), np.float32)

    def k(a, pred, b0):
        x, p, l0 = load(a), load(pred), load(b0)
        z = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_reduce(dst=z, data=x, op0=OP("multiply"), operand0=3.0,
                                  reduce_op=OP("maximum"))                 # reset_reduce
        nisa.select_reduce(dst=z, predicate=p, on_true=x, on_false=-5.0,
                           reduce_cmd=nisa.reduce_cmd.reduce)
        red = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.range_select(dst=z, on_true_tile=x, comp_op0=OP("greater_equal"),
                          comp_op1=OP("less"), bound0=l0, bound1=4.0,
                          reduce_cmd=nisa.reduce_cmd.reduce, reduce_res=red)
        c = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_cumulative(dst=c, src=x, op0=OP("add"), op1=OP("maximum"),
                                      imm0=0.0, reduce_cmd=nisa.reduce_cmd.reduce)
        return store(red), store(c)
    (red, c), r = run(k, a, pred, b0)
    m = np.maximum((a * np.float32(3)).max(1), np.where(pred != 0, a, np.float32(-5)).max(1))
    m = np.maximum(m, a[:, :4].max(1))
    np.testing.assert_array_equal(red[:, 0], m)
    np.testing.assert_array_equal(c, np.maximum.accumulate(
        np.concatenate([m[:, None], a], axis=1), axis=1)[:, 1:])
    np.testing.assert_array_equal(r.cores[0].accumulators["vector"][:P], c[:, -1])


def test_accumulator_lanes_are_absolute_partitions():
    a = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)

    def k(a):
        x = load(a)
        z = nl.ndarray((64, 4), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_reduce(dst=z[32:64], data=x[32:64], op0=OP("add"), operand0=0.0,
                                  reduce_op=OP("add"))
        red = nl.ndarray((64, 1), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar_reduce(dst=z[32:64], data=x[32:64], op0=OP("add"), operand0=0.0,
                                  reduce_op=OP("add"), reduce_res=red[0:32],
                                  reduce_cmd=nisa.reduce_cmd.reduce)
        return store(red[0:32])
    out, r = run(k, a)
    np.testing.assert_array_equal(out[:, 0], 2 * a[32:].sum(1))
    regs = r.cores[0].accumulators
    assert regs["vector:valid"][32:64].all() and not regs["vector:valid"][:32].any()


def test_reduce_after_idle_warns_and_strict_raises():
    a = np.ones((4, 8), np.float32)
    p = np.ones((4, 8), np.uint8)

    def k(a, p):
        x, q = load(a), load(p)
        z = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        red = nl.ndarray((4, 1), nl.float32, buffer=nl.sbuf)
        nisa.select_reduce(dst=z, predicate=q, on_true=x, on_false=0.0,
                           reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.select_reduce(dst=z, predicate=q, on_true=x, on_false=0.0)          # idle
        nisa.select_reduce(dst=z, predicate=q, on_true=x, on_false=0.0, reduce_res=red,
                           reduce_cmd=nisa.reduce_cmd.reduce)
        return store(red)
    with pytest.warns(UserWarning, match="hold no defined value") as w:
        out, _ = run(k, a, p)
    assert np.isnan(out).all()                   # clobbered lanes read as NaN
    assert any(HERE in str(x.message) for x in w)
    with pytest.raises(NkiValidationError, match="reduce_cmd=reduce reads"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(k, a, p, strict=True)


def test_accumulate_helper_api():
    """The helper other instructions (exponential, activation) build on."""
    from trnsim.isa import accumulate as acc
    from trnsim.isa.base import Instr
    from trnsim.machine.runtime import Run, activate
    run_ = Run()
    with activate(run_):
        with Instr("probe", None, default="vector") as ins:
            v = np.array([[1.0, 2.0, 3.0], [4.0, -1.0, 0.5]], np.float32)
            r = acc.accumulate(ins, "vector", nisa.reduce_cmd.reset_reduce, "add", v, 8, 2)
            np.testing.assert_array_equal(r, [6.0, 3.5])
            r = acc.accumulate(ins, "vector", "reduce", OP("multiply"), v, 8, 2)
            np.testing.assert_array_equal(r, [36.0, -7.0])
            r = acc.accumulate(ins, "vector", 4, "maximum", v, 8, 2, init=np.float32(10))
            np.testing.assert_array_equal(r, [10.0, 10.0])
            r = acc.accumulate(ins, "vector", "reset", "minimum", v, 8, 2)
            np.testing.assert_array_equal(r, [np.inf, np.inf])
            assert acc.accumulate(ins, "vector", "idle", "add", v, 8, 2) is None
            regs = run_.cores[0].accumulators
            assert not regs["vector:valid"][8:10].any()
            assert acc.cmd_name(3) == "reset_reduce" and acc.identity("multiply") == 1.0
            np.testing.assert_array_equal(acc.scan("subtract", v, np.zeros(2)),
                                          [[1, 1, 2], [4, -5, 5.5]])
            big = np.full((1, 2 ** 12), 2 ** -24, np.float32)
            # sequential fp32: 1 + 2^-24 + ... stays 1.0 (no pairwise regrouping)
            assert acc.fold("add", big, np.float32(1.0))[0] == 1.0
