"""nki.isa.activation / activation_reduce / activate2 / exponential against NumPy
references written here (float64 math rounded to fp32)."""
import math
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiNumericsWarning, NkiValidationError, UnsupportedError
from kernel_helpers import load, store

RNG = np.random.default_rng(1234)
_erf = np.vectorize(math.erf)


def run(fn, *args, chip="trn2", strict=False, numerics=True):
    return trnsim.run_kernel(fn, args, chip=chip, strict=strict, numerics=numerics)


def op(name):
    """The nl function when nki.language already defines it, else the name."""
    return getattr(nl, name, None) or name


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


REFS = {
    "copy": (lambda x: x, (-5, 5)),
    "square": (lambda x: x ** 2, (-5, 5)),
    "sigmoid": (sigmoid, (-8, 8)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), (-5, 5)),
    "gelu": (lambda x: x * 0.5 * (1 + _erf(x / math.sqrt(2))), (-5, 5)),
    "gelu_dx": (lambda x: 0.5 * (1 + _erf(x / math.sqrt(2)))
                + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi), (-5, 5)),
    "gelu_apprx_tanh": (lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                        * (x + 0.044715 * x ** 3))), (-5, 5)),
    "gelu_apprx_sigmoid": (lambda x: x * sigmoid(1.702 * x), (-5, 5)),
    "gelu_apprx_sigmoid_dx": (lambda x: sigmoid(1.702 * x) + 1.702 * x * sigmoid(1.702 * x)
                              * (1 - sigmoid(1.702 * x)), (-5, 5)),
    "silu": (lambda x: x * sigmoid(x), (-5, 5)),
    "silu_dx": (lambda x: sigmoid(x) + x * sigmoid(x) * (1 - sigmoid(x)), (-5, 5)),
    "tanh": (np.tanh, (-4, 4)),
    "softplus": (lambda x: np.log1p(np.exp(x)), (-5, 5)),
    "mish": (lambda x: x * np.tanh(np.log1p(np.exp(x))), (-5, 5)),
    "erf": (_erf, (-3, 3)),
    "erf_dx": (lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x), (-3, 3)),
    "exp": (np.exp, (-5, 5)),
    "log": (np.log, (0.01, 100)),
    "sin": (np.sin, (-3.1, 3.1)),
    "arctan": (np.arctan, (-1.5, 1.5)),
    "sqrt": (np.sqrt, (0.01, 100)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.01, 100)),
    "reciprocal": (lambda x: 1 / x, (0.5, 100)),
    "sign": (np.sign, (-5, 5)),
    "abs": (np.abs, (-5, 5)),
}


def act_kernel(fn, out_dtype=nl.float32, **kw):
    def k(x):
        xs = load(x)
        y = nl.ndarray(x.shape, out_dtype, buffer=nl.sbuf)
        nisa.activation(dst=y, op=fn, data=xs, **kw)
        return store(y)
    return k


@pytest.mark.parametrize("name", sorted(REFS))
def test_activation_functions(name):
    ref, (lo, hi) = REFS[name]
    x = RNG.uniform(lo, hi, size=(32, 64)).astype(np.float32)
    if name == "reciprocal":
        x *= np.where(RNG.random(x.shape) < 0.5, -1, 1).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NkiNumericsWarning)
        y, _ = run(act_kernel(op(name)), x)
    expect = ref(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(y, expect, rtol=2e-6, atol=1e-7)


def test_op_spellings_numpy_string_and_named_function():
    x = RNG.uniform(-3, 3, size=(16, 8)).astype(np.float32)
    expect = np.tanh(x.astype(np.float64)).astype(np.float32)

    def tanh(x, dtype=None):  # stands in for nl.tanh: looked up by __name__
        raise AssertionError("never called")

    for spelling in (np.tanh, "tanh", tanh):
        y, _ = run(act_kernel(spelling), x)
        np.testing.assert_array_equal(y, expect)
    y, _ = run(act_kernel(np.abs), x)  # np.abs is named 'absolute'
    np.testing.assert_array_equal(y, np.abs(x))


def test_unknown_activation_is_an_error():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(NkiValidationError, match="not a Scalar Engine activation"):
        run(act_kernel("cosh"), x)


def test_tensor_scale_and_bias():
    x = RNG.standard_normal((128, 96)).astype(np.float32)
    s = RNG.uniform(0.5, 2, (128, 1)).astype(np.float32)
    b = RNG.standard_normal((128, 1)).astype(np.float32)

    def k(x, s, b):
        xs, ss, bs = load(x), load(s), load(b)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=op("gelu_apprx_tanh"), data=xs, bias=bs, scale=ss)
        return store(y)
    y, r = run(k, x, s, b)
    t = ((x * s).astype(np.float32) + b).astype(np.float32).astype(np.float64)
    expect = 0.5 * t * (1 + np.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t ** 3)))
    np.testing.assert_allclose(y, expect.astype(np.float32), rtol=2e-6, atol=1e-7)
    ins = [i for i in r.program if i.opcode == "activation"][0]
    assert ins.engine == "scalar"
    assert ins.attrs["op"] == "gelu_apprx_tanh"
    assert ins.attrs["scale_kind"] == "tensor" and ins.attrs["bias_kind"] == "tensor"
    assert ins.attrs["fused_reduce"] is False
    assert {a.role for a in ins.reads} == {"data", "scale", "bias"}


def test_constant_scale_and_bias_on_trn2():
    x = RNG.standard_normal((64, 32)).astype(np.float32)
    y, r = run(act_kernel(op("exp"), scale=0.5, bias=-1.0), x, chip="trn2")
    t = (x * np.float32(0.5)).astype(np.float32) + np.float32(-1.0)
    np.testing.assert_allclose(y, np.exp(t.astype(np.float64)).astype(np.float32), rtol=2e-6)
    ins = r.program.by_engine("scalar")[0]
    assert ins.attrs["scale_kind"] == "const" and ins.attrs["bias_kind"] == "const"


def test_bf16_output_is_rounded_to_nearest_even():
    x = RNG.uniform(-4, 4, (128, 128)).astype(np.float32)
    y, _ = run(act_kernel(op("exp"), out_dtype=nl.bfloat16), x)
    assert y.dtype == ml_dtypes.bfloat16
    expect = np.exp(x.astype(np.float64)).astype(np.float32).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.view(np.uint16), expect.view(np.uint16))


def test_bf16_input_is_read_exactly():
    x = RNG.uniform(-2, 2, (16, 16)).astype(ml_dtypes.bfloat16)
    y, _ = run(act_kernel(op("square")), x)
    xf = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(y, (xf * xf).astype(np.float32))


# ---------------------------------------------------------------- fused reduction

def test_fused_reduce_chain_reset_reduce_reduce_and_readout():
    a = RNG.standard_normal((128, 40)).astype(np.float32)
    b = RNG.standard_normal((128, 24)).astype(np.float32)
    c = RNG.standard_normal((128, 8)).astype(np.float32)

    def k(a, b, c):
        tiles = [load(a), load(b), load(c)]
        res = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        first = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        ys = [nl.ndarray(t.shape, nl.float32, buffer=nl.sbuf) for t in tiles]
        nisa.activation(dst=ys[0], op=op("exp"), data=tiles[0], reduce_op=op("add"),
                        reduce_res=first, reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation(dst=ys[1], op=op("exp"), data=tiles[1], reduce_op=op("add"),
                        reduce_cmd=nisa.reduce_cmd.reduce)
        # idle leaves the registers alone
        nisa.activation(dst=ys[2], op=op("square"), data=tiles[2])
        nisa.activation(dst=ys[2], op=op("exp"), data=tiles[2], reduce_op=op("add"),
                        reduce_res=res, reduce_cmd=nisa.reduce_cmd.reduce)
        return store(first), store(res), store(ys[2])
    (first, res, y2), r = run(k, a, b, c)
    ex = [np.exp(t.astype(np.float64)) for t in (a, b, c)]
    np.testing.assert_allclose(first[:, 0], ex[0].sum(1), rtol=1e-5)
    np.testing.assert_allclose(res[:, 0], sum(e.sum(1) for e in ex), rtol=1e-5)
    np.testing.assert_allclose(y2, ex[2].astype(np.float32), rtol=2e-6)
    ops = [i.opcode for i in r.program if i.engine == "scalar"]
    assert ops == ["activation", "read_accumulator", "activation", "activation",
                   "activation", "read_accumulator"]
    acts = [i for i in r.program if i.opcode == "activation"]
    assert [i.attrs["fused_reduce"] for i in acts] == [True, True, False, True]
    assert [i.attrs["reduce_cmd"] for i in acts] == ["reset_reduce", "reduce", "idle", "reduce"]


def test_reset_then_reduce_and_reset_readout_is_zero():
    a = RNG.standard_normal((32, 16)).astype(np.float32)

    def k(a):
        t = load(a)
        y = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        r0 = nl.ndarray((32, 1), nl.float32, buffer=nl.sbuf)
        r1 = nl.ndarray((32, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=op("copy"), data=t, reduce_res=r0,
                        reduce_cmd=nisa.reduce_cmd.reset)
        nisa.activation(dst=y, op=op("copy"), data=t, reduce_op=np.add, reduce_res=r1,
                        reduce_cmd=nisa.reduce_cmd.reduce)
        return store(r0), store(r1)
    (r0, r1), _ = run(k, a)
    np.testing.assert_array_equal(r0, 0)
    np.testing.assert_allclose(r1[:, 0], a.astype(np.float64).sum(1), rtol=1e-5, atol=1e-5)


def test_reduce_on_uninitialized_registers_warns_and_strict_raises():
    a = np.ones((8, 4), np.float32)

    def k(a):
        t = load(a)
        y = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((8, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=op("copy"), data=t, reduce_op=op("add"), reduce_res=r, reduce_cmd=nisa.reduce_cmd.reduce)
        return store(r)
    with pytest.warns(NkiNumericsWarning, match="accumulator"):
        run(k, a)
    with pytest.raises(NkiValidationError, match="accumulator"):
        run(k, a, strict=True)


def test_registers_are_per_lane():
    """Tiles on partitions 0..31 and 32..63 accumulate into different registers."""
    a = RNG.standard_normal((64, 16)).astype(np.float32)

    def k(a):
        t = load(a)
        y = nl.ndarray(a.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((64, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y[0:32], op="copy", data=t[0:32], reduce_op="add",
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation(dst=y[32:64], op="square", data=t[32:64], reduce_op="add",
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation(dst=y[0:32], op="copy", data=t[0:32], reduce_op="add",
                        reduce_res=r[0:32], reduce_cmd=nisa.reduce_cmd.reduce)
        nisa.activation(dst=y[32:64], op="copy", data=t[32:64], reduce_op="add",
                        reduce_res=r[32:64], reduce_cmd=nisa.reduce_cmd.idle)
        return store(r)
    r, _ = run(k, a)
    a64 = a.astype(np.float64)
    np.testing.assert_allclose(r[:32, 0], 2 * a64[:32].sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r[32:, 0], (a64[32:] ** 2).sum(1), rtol=1e-5)


def test_activation_reduce_equals_reset_reduce_and_readout():
    x = RNG.standard_normal((128, 256)).astype(np.float32)
    b = RNG.standard_normal((128, 1)).astype(np.float32)

    def k(x, b):
        xs, bs = load(x), load(b)
        y = nl.ndarray(x.shape, nl.bfloat16, buffer=nl.sbuf)
        r = nl.ndarray((128, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation_reduce(dst=y, op=np.exp, data=xs, reduce_op=np.add, reduce_res=r,
                               bias=bs)
        return store(y), store(r)
    (y, r), run_ = run(k, x, b)
    e = np.exp((x + b).astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(y.view(np.uint16), e.astype(np.float32).astype(
        ml_dtypes.bfloat16).view(np.uint16))
    # the sum is of the fp32 results, not of the bf16 outputs
    np.testing.assert_allclose(r[:, 0], e.sum(1), rtol=1e-5)
    assert [i.opcode for i in run_.program.by_engine("scalar")] == [
        "activation_reduce", "read_accumulator"]


def test_activation_reduce_op_must_be_add():
    x = np.ones((4, 4), np.float32)

    def k(x):
        t = load(x)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((4, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op="exp", data=t, reduce_op=np.maximum, reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
    with pytest.raises(NkiValidationError, match="reduce_op=maximum"):
        run(k, x)


def test_bad_reduce_cmd_is_an_error():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(NkiValidationError, match="reduce_cmd"):
        run(act_kernel("exp", reduce_cmd="bogus"), x)
    with pytest.raises(NkiValidationError, match="load_reduce"):
        run(act_kernel("exp", reduce_cmd=nisa.reduce_cmd.load_reduce), x)


# ---------------------------------------------------------------- range warnings

def test_out_of_range_input_warns_and_strict_raises():
    x = np.full((4, 8), 2.0, np.float32)
    x[1, 3] = -1.0  # log of a negative number: outside [2^-64, 2^64]
    with pytest.warns(NkiNumericsWarning, match=r"op=log: 1 of 32 inputs"):
        run(act_kernel(op("log")), x)
    with pytest.raises(NkiValidationError, match="valid input range"):
        run(act_kernel(op("log")), x, strict=True)


def test_range_is_checked_after_scale_and_bias():
    x = np.full((4, 8), 1.0, np.float32)  # in range for sqrt, but 1*1 - 2 = -1 is not
    with pytest.warns(NkiNumericsWarning, match="sqrt"):
        run(act_kernel(op("sqrt"), bias=-2.0), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NkiNumericsWarning)
        run(act_kernel(op("sqrt"), scale=3.0), x)


def test_reciprocal_range_is_symmetric():
    x = np.array([[2.0 ** -50, -4.0, 4.0, -2.0 ** 50]], np.float32)
    with pytest.warns(NkiNumericsWarning, match=r"2 of 4 inputs"):
        run(act_kernel(op("reciprocal")), x)


def test_sin_outside_its_range_extrapolates_like_the_hardware():
    x = np.array([[9.0, -9.0, 1.0]], np.float32)
    with pytest.warns(NkiNumericsWarning, match="sin"):
        y, _ = run(act_kernel(op("sin")), x)
    # the public docs: sin(9.0) returns ~27.65 on the Scalar Engine (no range reduction)
    assert y[0, 0] == pytest.approx(27.65, abs=0.01)
    assert y[0, 1] == pytest.approx(-27.65, abs=0.01)
    assert y[0, 2] == pytest.approx(math.sin(1.0), rel=1e-6)


# ---------------------------------------------------------------- generations, errors

def test_constant_bias_is_an_error_on_trn1_but_tensor_bias_works():
    x = RNG.standard_normal((8, 8)).astype(np.float32)
    with pytest.raises(UnsupportedError, match="constant bias"):
        run(act_kernel(op("exp"), bias=1.0), x, chip="trn1")
    b = np.full((8, 1), 1.0, np.float32)

    def k(x, b):
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=op("exp"), data=load(x), bias=load(b))
        return store(y)
    y, _ = run(k, x, b, chip="trn1")
    np.testing.assert_allclose(y, np.exp(x.astype(np.float64) + 1).astype(np.float32),
                               rtol=2e-6)


def test_reciprocal_with_bias_is_an_error_on_trn1():
    x = np.full((8, 8), 2.0, np.float32)
    b = np.zeros((8, 1), np.float32)

    def k(x, b):
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=op("reciprocal"), data=load(x), bias=load(b))
        return store(y)
    with pytest.raises(UnsupportedError, match="reciprocal"):
        run(k, x, b, chip="trn1")
    y, _ = run(k, x, b, chip="trn2")
    np.testing.assert_array_equal(y, 0.5)


def test_scale_tensor_must_be_fp32_and_shapes_must_match():
    x = np.ones((8, 8), np.float32)

    def k_scale(x):
        s = nl.ndarray((8, 1), nl.bfloat16, buffer=nl.sbuf)
        nisa.memset(dst=s, value=1.0)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op="exp", data=load(x), scale=s)
    with pytest.raises(NkiValidationError, match="scale .* must have dtype float32"):
        run(k_scale, x)

    def k_bias(x):
        b = nl.ndarray((8, 2), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=b, value=1.0)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op="exp", data=load(x), bias=b)
    with pytest.raises(NkiValidationError, match=r"must be a \[8, 1\] tensor"):
        run(k_bias, x)

    def k_dst(x):
        y = nl.ndarray((4, 8), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op="exp", data=load(x))
    with pytest.raises(NkiValidationError, match="partitions"):
        run(k_dst, x)


def test_numerics_off_records_every_instruction():
    x = np.ones((16, 16), np.float32)

    def k(x):
        t = load(x)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((16, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op="exp", data=t, reduce_op="add", reduce_res=r,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)
        nisa.activation_reduce(dst=y, op="exp", data=t, reduce_op="add", reduce_res=r)
        return store(r)
    _, r = run(k, x, numerics=False)
    assert [i.opcode for i in r.program if i.engine == "scalar"] == [
        "activation", "read_accumulator", "activation_reduce", "read_accumulator"]
    assert r.program.instructions[-2].writes[0].role == "reduce_res"


# ---------------------------------------------------------------- activate2 (v4)

def a2_kernel(**kw):
    def k(x, *vecs):
        vs = [load(v) for v in vecs]
        named = {key: (vs[val] if isinstance(val, VecRef) else val) for key, val in kw.items()}
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((x.shape[0], 1), nl.float32, buffer=nl.sbuf)
        if named.get("reduce_cmd", nisa.reduce_cmd.idle) != nisa.reduce_cmd.idle:
            named["reduce_res"] = r
        else:
            nisa.memset(dst=r, value=0.0)
        nisa.activate2(dst=y, data=load(x), **named)
        return store(y), store(r)
    return k


class VecRef:
    def __init__(self, i):
        self.i = i

    def __index__(self):
        return self.i


def test_activate2_is_v4_only():
    x = np.ones((4, 4), np.float32)
    k = a2_kernel(op="exp", imm0=2.0, imm1=0.5, op0=np.multiply, op1=np.add)
    for chip in ("trn1", "trn2"):
        with pytest.raises(UnsupportedError, match="activate2"):
            run(k, x, chip=chip)


def test_activate2_scale_bias_gelu():
    x = RNG.standard_normal((64, 32)).astype(np.float32)
    (y, _), r = run(a2_kernel(op=op("gelu"), imm0=2.0, imm1=0.5, op0=op("multiply"),
                              op1=op("add")), x, chip="trn3")
    t = ((x * np.float32(2)).astype(np.float32) + np.float32(0.5)).astype(np.float64)
    np.testing.assert_allclose(y, (0.5 * t * (1 + _erf(t / math.sqrt(2)))).astype(np.float32),
                               rtol=2e-6, atol=1e-7)
    ins = r.program.by_engine("scalar")[0]
    assert ins.opcode == "activate2" and ins.attrs["op0"] == "multiply"


def test_activate2_reverse_subtract_with_vector_immediate():
    x = RNG.standard_normal((32, 16)).astype(np.float32)
    v = RNG.standard_normal((32, 1)).astype(np.float32)
    (y, _), _ = run(a2_kernel(op="copy", imm0=VecRef(0), imm1=0.0, op0="subtract",
                              op1="bypass", reverse0=True), x, v, chip="trn3")
    np.testing.assert_array_equal(y, (v - x).astype(np.float32))


def test_activate2_prelu_relu_param_and_max_reduce():
    x = RNG.standard_normal((32, 16)).astype(np.float32)
    alpha = RNG.uniform(0.01, 0.3, (32, 1)).astype(np.float32)
    (y, r), _ = run(a2_kernel(op="prelu", imm0=1.0, imm1=0.0, op0="bypass", op1="bypass",
                              relu_param=VecRef(0), reduce_op=np.maximum,
                              reduce_cmd=nisa.reduce_cmd.reset_reduce), x, alpha, chip="trn3")
    expect = np.where(x >= 0, x, (alpha.astype(np.float64) * x)).astype(np.float32)
    np.testing.assert_allclose(y, expect, rtol=1e-6)
    np.testing.assert_array_equal(r[:, 0], expect.max(1))


def test_activate2_rejects_unsupported_pairs_and_reverse_without_op():
    x = np.ones((4, 4), np.float32)
    with pytest.raises(NkiValidationError, match=r"\(op0, op1\) = \(add, multiply\)"):
        run(a2_kernel(op="exp", imm0=1.0, imm1=1.0, op0="add", op1="multiply"), x,
            chip="trn3")
    with pytest.raises(NkiValidationError, match="reverse1 requires op1"):
        run(a2_kernel(op="exp", imm0=1.0, imm1=1.0, op0="add", op1="bypass", reverse1=True),
            x, chip="trn3")


# ---------------------------------------------------------------- exponential (v4)

def exp_kernel(cmd=nisa.reduce_cmd.idle, with_max=True, reduce_init=0.0, chain=False):
    def k(x, m):
        xs, ms = load(x), load(m)
        y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        r = nl.ndarray((x.shape[0], 1), nl.float32, buffer=nl.sbuf)
        kw = dict(max_value=ms if with_max else 0.0)
        if chain:
            nisa.exponential(dst=y, src=xs, reduce_cmd=nisa.reduce_cmd.reset_reduce, **kw)
            nisa.exponential(dst=y, src=xs, reduce_res=r, reduce_cmd=nisa.reduce_cmd.reduce,
                             **kw)
        elif cmd == nisa.reduce_cmd.idle:
            nisa.exponential(dst=y, src=xs, **kw)
            nisa.memset(dst=r, value=0.0)
        else:
            nisa.exponential(dst=y, src=xs, reduce_res=r, reduce_cmd=cmd,
                             reduce_init=reduce_init, **kw)
        return store(y), store(r)
    return k


def test_exponential_is_v4_only():
    x, m = np.ones((4, 4), np.float32), np.ones((4, 1), np.float32)
    with pytest.raises(UnsupportedError, match="exponential"):
        run(exp_kernel(), x, m, chip="trn2")


def test_exponential_subtracts_max_and_sums():
    x = RNG.standard_normal((128, 64)).astype(np.float32)
    m = x.max(axis=1, keepdims=True)
    (y, r), run_ = run(exp_kernel(nisa.reduce_cmd.reset_reduce), x, m, chip="trn3")
    e = np.exp((x - m).astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(y, e.astype(np.float32), rtol=2e-6)
    np.testing.assert_allclose(r[:, 0], e.sum(1), rtol=1e-5)
    ins = run_.program.by_engine("vector")
    assert [i.opcode for i in ins] == ["exponential", "read_accumulator"]
    assert ins[0].attrs["fused_reduce"] is True


def test_exponential_load_reduce_and_chain():
    x = RNG.standard_normal((16, 8)).astype(np.float32)
    m = np.zeros((16, 1), np.float32)
    e = np.exp(x.astype(np.float64)).sum(1)
    (_, r), _ = run(exp_kernel(nisa.reduce_cmd.load_reduce, with_max=False, reduce_init=10.0),
                    x, m, chip="trn3")
    np.testing.assert_allclose(r[:, 0], e + 10, rtol=1e-5)
    (_, r), _ = run(exp_kernel(chain=True), x, m, chip="trn3")
    np.testing.assert_allclose(r[:, 0], 2 * e, rtol=1e-5)


def test_exponential_reduce_init_needs_load_reduce():
    x, m = np.ones((4, 4), np.float32), np.ones((4, 1), np.float32)
    with pytest.raises(NkiValidationError, match="reduce_init"):
        run(exp_kernel(nisa.reduce_cmd.reset_reduce, reduce_init=1.0), x, m, chip="trn3")
