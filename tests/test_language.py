"""nki.language tile functions (trnsim/language/math.py) against NumPy references.

Each test runs a real kernel: inputs are DMA'd from HBM into SBUF tiles, the nl
function runs, and its result (SBUF or PSUM) is copied back out. Checked: values,
result dtype, shape and buffer, and which instructions were recorded.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa.activation_funcs import activation_fn
from trnsim.isa.ops import alu
from trnsim.machine.errors import NkiValidationError
from trnsim.machine.runtime import active_run

BF16 = ml_dtypes.bfloat16
RNG = np.random.default_rng(1234)


def run(fn, *arrays, chip=None, numerics=True):
    """fn(*tiles) inside a kernel, each array loaded into an SBUF tile (non-arrays are
    passed through). Returns (result array, info about the result tile, opcodes of the
    instructions fn issued)."""
    info = {}

    def kernel(*args):
        tiles = []
        for a in args:
            if isinstance(a, nl.NkiTensor):
                t = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=t, src=a)
                tiles.append(t)
            else:
                tiles.append(a)
        prog = active_run().program
        start = len(prog)
        res = fn(*tiles)
        info["ops"] = [(i.engine, i.opcode) for i in prog.instructions[start:]]
        info.update(shape=tuple(res.shape), dtype=str(res.dtype), buffer=str(res.buffer))
        src = res
        if res.space == "psum":
            src = nl.ndarray(res.shape, res.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(dst=src, src=res)
        out = nl.ndarray(res.shape, res.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=src)
        return out

    out, _ = trnsim.run_kernel(kernel, arrays, chip=chip, numerics=numerics)
    return out, info


def rand(shape, lo=-4.0, hi=4.0, dtype=np.float32):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def opcodes(info):
    return [op for _, op in info["ops"]]


# -- operator identities -----------------------------------------------------
ALU_NAMES = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "abs_max",
             "abs_min", "power", "fmod", "mod", "bypass", "equal", "not_equal", "greater",
             "greater_equal", "less", "less_equal", "logical_and", "logical_or",
             "logical_xor", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift",
             "right_shift"]
ACT_NAMES = ["copy", "square", "sigmoid", "relu", "prelu", "gelu", "gelu_dx",
             "gelu_apprx_tanh", "gelu_apprx_sigmoid", "gelu_apprx_sigmoid_dx", "silu",
             "silu_dx", "tanh", "softplus", "mish", "erf", "erf_dx", "exp", "log", "sin",
             "arctan", "sqrt", "rsqrt", "reciprocal", "sign", "abs"]


@pytest.mark.parametrize("name", ALU_NAMES)
def test_alu_operator_identity(name):
    op = getattr(nl, name)
    assert op.__name__ == name
    assert alu(op).name == name


@pytest.mark.parametrize("name", ACT_NAMES)
def test_activation_operator_identity(name):
    op = getattr(nl, name)
    assert op.__name__ == name
    assert activation_fn(op).name == name


def test_constants_are_named_ops():
    assert repr(nl.bypass) == "nl.bypass" and nl.average.__name__ == "average"
    assert nl.prelu.__name__ == "prelu"


def test_nl_function_as_isa_op():
    a, b = rand((64, 32)), rand((64, 32))

    def k(x, y):
        out = nl.ndarray(x.shape, nl.float32)
        nisa.tensor_tensor(dst=out, data1=x, data2=y, op=nl.maximum)
        return out
    out, info = run(k, a, b)
    np.testing.assert_array_equal(out, np.maximum(a, b))


# -- elementwise binary ------------------------------------------------------
BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "fmod": np.fmod, "mod": np.mod,
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_tile_tile(name):
    a = rand((128, 48))
    b = rand((128, 48))
    b[np.abs(b) < 0.25] = 0.5  # keep divisors away from 0
    out, info = run(getattr(nl, name), a, b)
    ref = BINARY[name](a, b).astype(np.float32)
    np.testing.assert_array_equal(out, ref)
    assert info["dtype"] == "float32" and info["buffer"] == "sbuf"
    assert info["shape"] == (128, 48)
    assert opcodes(info) == ["tensor_tensor"]


def test_power_tiles():
    a = rand((32, 16), 0.1, 3.0)
    b = rand((32, 16), -2.0, 2.0)
    out, _ = run(nl.power, a, b)
    np.testing.assert_allclose(out, np.power(a.astype(np.float64), b), rtol=2e-6)


@pytest.mark.parametrize("name", ["subtract", "divide", "power", "mod", "maximum"])
def test_binary_scalar_both_sides(name):
    a = rand((64, 16), 0.5, 3.0)
    ref_fn = {"subtract": np.subtract, "divide": np.divide, "power": np.power,
              "mod": np.mod, "maximum": np.maximum}[name]
    fn = getattr(nl, name)
    right, info = run(lambda x: fn(x, 2.0), a)
    left, info2 = run(lambda x: fn(2.0, x), a)
    np.testing.assert_allclose(right, ref_fn(a, np.float32(2.0)), rtol=1e-6)
    np.testing.assert_allclose(left, ref_fn(np.float32(2.0), a), rtol=1e-6)
    assert opcodes(info) == ["tensor_scalar"] and opcodes(info2) == ["tensor_scalar"]
    assert info["dtype"] == "float32"


def test_binary_column_operand_broadcasts_along_free_axis():
    a = rand((128, 40))
    col = rand((128, 1))
    out, info = run(nl.subtract, a, col)
    np.testing.assert_array_equal(out, a - col)
    out2, _ = run(nl.subtract, col, a)
    np.testing.assert_array_equal(out2, col - a)
    assert opcodes(info) == ["tensor_scalar"]


def test_binary_rejects_partition_broadcast():
    with pytest.raises(NkiValidationError, match="broadcast"):
        run(nl.add, rand((128, 64)), rand((1, 64)))
    with pytest.raises(NkiValidationError, match="same shape"):
        run(nl.multiply, rand((128, 64)), rand((128, 32)))


def test_binary_needs_a_tile():
    with pytest.raises(NkiValidationError, match="at least one"):
        run(lambda x: nl.add(1.0, 2.0), rand((4, 4)))


def test_binary_dtype_rules():
    a = rand((32, 8))
    b = rand((32, 8)).astype(BF16)
    out, info = run(nl.add, a, b)  # fp32 with bf16 -> fp32
    assert info["dtype"] == "float32"
    np.testing.assert_array_equal(out, a + b.astype(np.float32))
    out, info = run(lambda x, y: nl.add(x, y, dtype=nl.bfloat16), a, a)
    assert info["dtype"] == "bfloat16" and out.dtype == BF16
    np.testing.assert_array_equal(out, (a + a).astype(BF16))  # RNE cast on write
    ints = RNG.integers(-50, 50, size=(16, 8)).astype(np.int32)
    out, info = run(lambda x: nl.multiply(x, 0.5), ints)  # int tile, float scalar
    assert info["dtype"] == "float32"
    np.testing.assert_array_equal(out, ints * np.float32(0.5))
    out, info = run(lambda x: nl.add(x, 3), ints)  # int tile, int scalar: stays int32
    assert info["dtype"] == "int32"
    np.testing.assert_array_equal(out, ints + 3)
    u8 = RNG.integers(0, 200, size=(16, 8)).astype(np.uint8)
    i8 = RNG.integers(-100, 100, size=(16, 8)).astype(np.int8)
    out, info = run(nl.add, u8, i8)  # uint8 with int8 -> int16
    assert info["dtype"] == "int16"
    np.testing.assert_array_equal(out, u8.astype(np.int16) + i8)


def test_int32_add_is_exact():
    a = np.full((8, 4), 2 ** 25 + 1, np.int32)
    b = np.ones((8, 4), np.int32)
    out, _ = run(nl.add, a, b)
    np.testing.assert_array_equal(out, a + b)


@pytest.mark.parametrize("name,ref", [("equal", np.equal), ("not_equal", np.not_equal),
                                      ("greater", np.greater),
                                      ("greater_equal", np.greater_equal),
                                      ("less", np.less), ("less_equal", np.less_equal)])
def test_comparisons(name, ref):
    a = RNG.integers(-3, 3, size=(64, 16)).astype(np.float32)
    b = RNG.integers(-3, 3, size=(64, 16)).astype(np.float32)
    out, info = run(getattr(nl, name), a, b)
    assert info["dtype"] == "float32"  # defaults to the input dtype
    np.testing.assert_array_equal(out, ref(a, b).astype(np.float32))
    out, info = run(lambda x: getattr(nl, name)(x, 0.0, dtype=nl.uint8), a)
    assert info["dtype"] == "uint8"
    np.testing.assert_array_equal(out, ref(a, 0.0).astype(np.uint8))


def test_logical_ops():
    a = RNG.integers(0, 2, size=(32, 16)).astype(np.float32)
    b = RNG.integers(0, 2, size=(32, 16)).astype(np.float32)
    for name, ref in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                      ("logical_xor", np.logical_xor)):
        out, _ = run(getattr(nl, name), a, b)
        np.testing.assert_array_equal(out, ref(a, b).astype(np.float32), err_msg=name)
    out, info = run(nl.logical_not, a)
    np.testing.assert_array_equal(out, 1.0 - a)
    assert info["dtype"] == "float32"


def test_bitwise_ops():
    a = RNG.integers(-2 ** 31, 2 ** 31 - 1, size=(32, 16), dtype=np.int64).astype(np.int32)
    b = RNG.integers(-2 ** 31, 2 ** 31 - 1, size=(32, 16), dtype=np.int64).astype(np.int32)
    for name, ref in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                      ("bitwise_xor", np.bitwise_xor)):
        out, info = run(getattr(nl, name), a, b)
        assert info["dtype"] == "int32"
        np.testing.assert_array_equal(out, ref(a, b), err_msg=name)
    out, _ = run(nl.invert, a)
    np.testing.assert_array_equal(out, ~a)
    u8 = RNG.integers(0, 256, size=(8, 8)).astype(np.uint8)
    out, info = run(nl.invert, u8)
    assert info["dtype"] == "uint8"
    np.testing.assert_array_equal(out, ~u8)
    with pytest.raises(NkiValidationError, match="integer"):
        run(nl.bitwise_and, rand((4, 4)), rand((4, 4)))


def test_shifts_are_logical():
    a = np.array([[1, -8, 0x40000000, 7]], np.int32).repeat(4, axis=0)
    s = np.array([[3, 1, 1, 0]], np.int32).repeat(4, axis=0)
    out, _ = run(nl.left_shift, a, s)
    ref = (a.view(np.uint32).astype(np.uint64) << s.astype(np.uint64)).astype(np.uint32)
    np.testing.assert_array_equal(out, ref.view(np.int32))
    out, _ = run(nl.right_shift, a, s)
    ref = (a.view(np.uint32) >> s.astype(np.uint32)).view(np.int32)
    np.testing.assert_array_equal(out, ref)  # -8 >> 1 is a logical shift
    out, _ = run(lambda x: nl.left_shift(x, 2), a)
    np.testing.assert_array_equal(out, (a.view(np.uint32) << np.uint32(2)).view(np.int32))


def test_abs_max_abs_min_keep_the_sign():
    a = np.array([[-5.0, 1.0, 2.0, -0.5]], np.float32).repeat(8, axis=0)
    b = np.array([[3.0, -1.0, -7.0, 0.25]], np.float32).repeat(8, axis=0)
    out, _ = run(nl.abs_max, a, b, chip="trn3")
    np.testing.assert_array_equal(out, np.where(np.abs(a) > np.abs(b), a, b))
    out, _ = run(nl.abs_min, a, b, chip="trn3")
    np.testing.assert_array_equal(out, np.where(np.abs(a) < np.abs(b), a, b))


# -- unary ---------------------------------------------------------------------
def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


_ERF = np.vectorize(math.erf)
UNARY = {
    "exp": (np.exp, (-5, 5)),
    "log": (np.log, (0.01, 50)),
    "sqrt": (np.sqrt, (0.01, 50)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.01, 50)),
    "reciprocal": (lambda x: 1 / x, (0.1, 20)),
    "square": (np.square, (-5, 5)),
    "abs": (np.abs, (-5, 5)),
    "sign": (np.sign, (-5, 5)),
    "tanh": (np.tanh, (-5, 5)),
    "sigmoid": (_sig, (-8, 8)),
    "relu": (lambda x: np.maximum(x, 0), (-5, 5)),
    "gelu": (lambda x: 0.5 * x * (1 + _ERF(x / np.sqrt(2))), (-5, 5)),
    "gelu_apprx_tanh": (lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi)
                                                         * (x + 0.044715 * x ** 3))), (-5, 5)),
    "gelu_apprx_sigmoid": (lambda x: x * _sig(1.702 * x), (-5, 5)),
    "gelu_apprx_sigmoid_dx": (lambda x: _sig(1.702 * x) * (1 + 1.702 * x * (1 - _sig(1.702 * x))),
                              (-5, 5)),
    "gelu_dx": (lambda x: 0.5 * (1 + _ERF(x / np.sqrt(2)))
                + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi), (-5, 5)),
    "silu": (lambda x: x * _sig(x), (-5, 5)),
    "silu_dx": (lambda x: _sig(x) * (1 + x * (1 - _sig(x))), (-5, 5)),
    "softplus": (lambda x: np.log1p(np.exp(x)), (-5, 5)),
    "mish": (lambda x: x * np.tanh(np.log1p(np.exp(x))), (-5, 5)),
    "erf": (_ERF, (-3, 3)),
    "erf_dx": (lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x), (-3, 3)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_activation(name):
    ref, (lo, hi) = UNARY[name]
    a = rand((64, 32), lo, hi)
    out, info = run(getattr(nl, name), a)
    want = ref(a.astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=2e-6, atol=1e-6)
    assert info["dtype"] == "float32" and info["buffer"] == "sbuf"
    assert info["ops"] == [("scalar", "activation")]


def test_unary_dtype_argument_and_bf16_input():
    a = rand((32, 16)).astype(BF16)
    out, info = run(nl.exp, a)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_array_equal(out, np.exp(a.astype(np.float64)).astype(np.float32)
                                  .astype(BF16))
    out, info = run(lambda x: nl.square(x, dtype=nl.float32), a)
    assert info["dtype"] == "float32"
    np.testing.assert_array_equal(out, np.square(a.astype(np.float32)))


def test_negative():
    a = rand((32, 16))
    out, info = run(nl.negative, a)
    np.testing.assert_array_equal(out, -a)
    assert opcodes(info) == ["tensor_scalar"]


@pytest.mark.parametrize("name,ref", [("floor", np.floor), ("ceil", np.ceil),
                                      ("trunc", np.trunc)])
def test_rounding(name, ref):
    vals = np.array([3.7, 3.2, -3.2, -3.7, 0.0, -0.0, 1e-8, -1e-8, 2.0, -2.0, 0.5, -0.5,
                     123456.75, -123456.25, 2.0 ** 24 + 2, -(2.0 ** 30), 0.99999994,
                     -0.99999994], np.float32)
    a = np.concatenate([vals, rand(110, -100, 100)]).reshape(4, 32)
    out, info = run(getattr(nl, name), a)
    np.testing.assert_array_equal(out, ref(a))
    assert info["dtype"] == "float32"
    assert opcodes(info) == ["scalar_tensor_tensor"]  # x - mod(x, 1) in one pass
    out, info = run(lambda x: getattr(nl, name)(x, dtype=nl.int32), a)
    assert info["dtype"] == "int32"
    np.testing.assert_array_equal(out, ref(a).astype(np.int32))


@pytest.mark.parametrize("name,ref", [("sin", np.sin), ("cos", np.cos)])
def test_sin_cos_full_range(name, ref):
    a = np.concatenate([rand(1000, -40, 40), np.array([0.0, np.pi, -np.pi, 9.0, 100.0,
                                                        np.pi / 2, 2 * np.pi], np.float32),
                        rand(17, -1, 1)]).reshape(32, 32)
    out, info = run(getattr(nl, name), a)
    np.testing.assert_allclose(out, ref(a.astype(np.float64)), atol=3e-5)
    assert ("scalar", "activation") in info["ops"]


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_sin_cos_exact_at_zero_and_within_activation_range(chip):
    a = np.zeros((8, 8), np.float32)
    a[0, :4] = [np.pi, -np.pi, 2 * np.pi, -2 * np.pi]

    def k(x):
        return nl.add(nl.multiply(nl.sin(x), 10.0), nl.cos(x))
    out, info = run(k, a, chip=chip)
    ref = 10 * np.sin(a.astype(np.float64)) + np.cos(a.astype(np.float64))
    assert out[1, 0] == 1.0  # sin(0) == 0 and cos(0) == 1 exactly
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # NeuronCore-v2 takes no constant bias: the -pi shift comes from a memset tile
    assert ("memset" in opcodes(info)) == (chip == "trn1")


def test_tan():
    a = rand((16, 32), -1.4, 1.4)
    out, _ = run(nl.tan, a)
    np.testing.assert_allclose(out, np.tan(a.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_arctan_full_range():
    a = np.concatenate([rand(500, -3, 3), rand(500, -1e4, 1e4),
                        np.array([0.0, 1.0, -1.0, 1e6, -1e6, 1e-6], np.float32),
                        rand(18, -1, 1)]).reshape(32, 32)
    out, _ = run(nl.arctan, a)
    np.testing.assert_allclose(out, np.arctan(a.astype(np.float64)), atol=2e-6, rtol=1e-6)


def test_copy_and_cast():
    a = rand((64, 32))
    out, info = run(nl.copy, a)
    np.testing.assert_array_equal(out, a)
    assert info["buffer"] == "sbuf" and opcodes(info) == ["tensor_copy"]
    out, info = run(lambda x: nl.copy(x, dtype=nl.bfloat16), a)
    np.testing.assert_array_equal(out, a.astype(BF16))
    assert info["dtype"] == "bfloat16"


# -- reductions ----------------------------------------------------------------
REDUCE = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod, "mean": np.mean}


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("axis", [(2,), (1, 2), -1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, axis, keepdims):
    lo, hi = (0.8, 1.2) if name == "prod" else (-4, 4)
    a = rand((32, 4, 6), lo, hi)
    out, info = run(lambda x: getattr(nl, name)(x, axis=axis, keepdims=keepdims), a)
    ax = tuple(d % 3 for d in (axis if isinstance(axis, tuple) else (axis,)))
    ref = REDUCE[name](a.astype(np.float64), axis=ax, keepdims=keepdims)
    if ref.ndim < 2:
        ref = ref.reshape(ref.shape[0], 1)  # on-chip results stay 2-D
    assert info["shape"] == ref.shape
    assert info["dtype"] == "float32"
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_reduction_dtype_and_int():
    a = RNG.integers(-100, 100, size=(16, 64)).astype(np.int32)
    out, info = run(lambda x: nl.sum(x, axis=1), a)
    assert info["dtype"] == "int32" and info["shape"] == (16, 1)
    np.testing.assert_array_equal(out[:, 0], a.sum(axis=1))
    b = rand((16, 64))
    out, info = run(lambda x: nl.max(x, axis=1, dtype=nl.bfloat16, keepdims=True), b)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_array_equal(out, b.max(axis=1, keepdims=True).astype(BF16))


def test_mean_of_bf16_is_fp32_internally():
    a = np.full((8, 512), 1.0 + 2 ** -7, np.float32).astype(BF16)
    out, info = run(lambda x: nl.mean(x, axis=1, dtype=nl.float32), a)
    np.testing.assert_allclose(out[:, 0], 1.0 + 2 ** -7, rtol=1e-7)


def test_var_keeps_dims():
    a = rand((32, 5, 12))
    out, info = run(lambda x: nl.var(x, axis=2), a)
    assert info["shape"] == (32, 5, 1)
    np.testing.assert_allclose(out, a.astype(np.float64).var(axis=2, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    out, info = run(lambda x: nl.var(x, axis=(1, 2)), a)
    assert info["shape"] == (32, 1, 1)
    np.testing.assert_allclose(out, a.astype(np.float64).var(axis=(1, 2), keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_all():
    a = np.ones((16, 3, 8), np.float32)
    a[2, 1, 5] = 0.0
    a[7, :, 0] = 0.0
    out, info = run(lambda x: nl.all(x, axis=2), a)
    assert info["shape"] == (16, 3)
    np.testing.assert_array_equal(out, np.all(a != 0, axis=2).astype(np.float32))


@pytest.mark.parametrize("axis", [0, (0, 1), (1,)])
def test_reduction_axis_errors(axis):
    with pytest.raises(NkiValidationError, match="axis"):
        run(lambda x: nl.sum(x, axis=axis), rand((8, 4, 4)))


# -- softmax, rms_norm ------------------------------------------------------------
def _softmax(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_last_axis():
    a = rand((128, 200), -10, 10)
    out, info = run(lambda x: nl.softmax(x, axis=1), a)
    np.testing.assert_allclose(out, _softmax(a, 1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    assert info["dtype"] == "float32" and info["shape"] == a.shape
    # negated max; exp with that bias and a fused sum (read out by read_accumulator); divide
    assert opcodes(info) == ["tensor_reduce", "activation", "read_accumulator",
                             "tensor_scalar"]


def test_softmax_partial_axis_and_default_axis():
    a = rand((16, 6, 10), -5, 5)
    out, _ = run(nl.softmax, a)  # axis=-1
    np.testing.assert_allclose(out, _softmax(a, 2), rtol=1e-5, atol=1e-7)
    out, _ = run(lambda x: nl.softmax(x, axis=(1, 2)), a)
    np.testing.assert_allclose(out, _softmax(a.reshape(16, 60), 1).reshape(a.shape),
                               rtol=1e-5, atol=1e-7)


def test_softmax_bf16_output():
    a = rand((32, 64), -3, 3).astype(BF16)
    out, info = run(lambda x: nl.softmax(x, axis=1, dtype=nl.bfloat16), a)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_allclose(out.astype(np.float32), _softmax(a.astype(np.float32), 1),
                               rtol=1e-2)


def test_rms_norm():
    a = rand((64, 96))
    w = rand((64, 96), 0.5, 1.5)
    out, info = run(lambda x, y: nl.rms_norm(x, y, axis=1, n=96), a, w)
    x = a.astype(np.float64)
    ref = x / np.sqrt((x * x).sum(axis=1, keepdims=True) / 96 + 1e-6) * w
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-6)
    assert info["dtype"] == "float32"
    # explicit n and epsilon, bf16 output
    out, info = run(lambda x, y: nl.rms_norm(x, y, axis=1, n=128, epsilon=0.5,
                                             dtype=nl.bfloat16), a, w)
    ref = x / np.sqrt((x * x).sum(axis=1, keepdims=True) / 128 + 0.5) * w
    assert info["dtype"] == "bfloat16"
    np.testing.assert_allclose(out.astype(np.float32), ref, rtol=8e-3)


def test_rms_norm_rejects_partition_broadcast_weight():
    with pytest.raises(NkiValidationError, match="rms_norm"):
        run(lambda x, y: nl.rms_norm(x, y, axis=1, n=32), rand((16, 32)), rand((1, 32)))


# -- dropout ---------------------------------------------------------------------
def test_dropout():
    a = rand((128, 256), 1, 2)
    out, info = run(lambda x: nl.dropout(x, 0.0), a)
    np.testing.assert_array_equal(out, a)
    out, _ = run(lambda x: nl.dropout(x, 1.0), a)
    np.testing.assert_array_equal(out, 0.0)
    out, info = run(lambda x: nl.dropout(x, 0.3), a)
    kept = out != 0
    np.testing.assert_array_equal(out[kept], a[kept])  # no rescaling
    assert abs(1 - kept.mean() - 0.3) < 0.02
    assert opcodes(info) == ["dropout"]


# -- where, broadcast_to, expand_dims --------------------------------------------------
def test_where_tiles_and_scalars():
    cond = RNG.integers(0, 2, size=(64, 24)).astype(np.float32)
    x, y = rand((64, 24)), rand((64, 24))
    out, info = run(nl.where, cond, x, y)
    np.testing.assert_array_equal(out, np.where(cond != 0, x, y))
    assert info["dtype"] == "float32"
    out, _ = run(lambda c, a: nl.where(c, a, -1.0), cond, x)
    np.testing.assert_array_equal(out, np.where(cond != 0, x, np.float32(-1.0)))
    out, _ = run(lambda c, b: nl.where(c, 7.0, b), cond, y)
    np.testing.assert_array_equal(out, np.where(cond != 0, np.float32(7.0), y))
    bf = y.astype(BF16)
    out, info = run(lambda c, a, b: nl.where(c, a, b, dtype=nl.bfloat16), cond, x, bf)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_array_equal(out, np.where(cond != 0, x.astype(BF16), bf))


def test_broadcast_to_free_and_partition():
    a = rand((32, 1, 8))
    out, info = run(lambda x: nl.broadcast_to(x, (32, 5, 8)), a)
    np.testing.assert_array_equal(out, np.broadcast_to(a, (32, 5, 8)))
    assert info["shape"] == (32, 5, 8)
    row = rand((1, 16))
    out, info = run(lambda x: nl.broadcast_to(x, (128, 16)), row)
    np.testing.assert_array_equal(out, np.broadcast_to(row, (128, 16)))
    out, info = run(lambda x: nl.broadcast_to(x, (64, 16), dtype=nl.bfloat16), row)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_array_equal(out, np.broadcast_to(row.astype(BF16), (64, 16)))
    with pytest.raises(NkiValidationError, match="broadcast"):
        run(lambda x: nl.broadcast_to(x, (32, 5, 4)), a)


def test_expand_dims_is_a_view():
    a = rand((16, 12))

    def k(x):
        v = nl.expand_dims(x, 1)
        assert v.shape == (16, 1, 12) and v.storage is x.storage
        assert nl.expand_dims(x, -1).shape == (16, 12, 1)
        return nl.copy(v)
    out, info = run(k, a)
    np.testing.assert_array_equal(out, a.reshape(16, 1, 12))
    with pytest.raises(NkiValidationError):
        run(lambda x: nl.expand_dims(x, 0), a)


# -- matmul, transpose --------------------------------------------------------------
def test_matmul_transpose_x():
    x = rand((128, 64), -1, 1)  # [K, M]
    y = rand((128, 256), -1, 1)  # [K, N]
    out, info = run(lambda a, b: nl.matmul(a, b, transpose_x=True), x, y)
    assert info["buffer"] == "psum" and info["dtype"] == "float32"
    assert info["shape"] == (64, 256)
    np.testing.assert_allclose(out, x.T.astype(np.float64) @ y, rtol=1e-5, atol=1e-5)
    assert opcodes(info) == ["nc_matmul"]


def test_matmul_inserts_transpose():
    x = rand((64, 96), -1, 1).astype(BF16)  # [M, K]
    y = rand((96, 128), -1, 1).astype(BF16)  # [K, N]
    out, info = run(nl.matmul, x, y)
    ref = x.astype(np.float64) @ y.astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert info["shape"] == (64, 128) and info["buffer"] == "psum"
    assert opcodes(info) == ["nc_transpose", "tensor_copy", "nc_matmul"]
    with pytest.raises(NkiValidationError, match="contraction"):
        run(nl.matmul, rand((64, 32)), rand((64, 32)))


def test_transpose():
    a = rand((96, 40))
    out, info = run(nl.transpose, a)
    np.testing.assert_array_equal(out, a.T)
    assert info["buffer"] == "psum" and info["shape"] == (40, 96)
    assert info["dtype"] == "float32"
    b = a.astype(BF16)
    out, info = run(nl.transpose, b)
    assert info["dtype"] == "bfloat16"
    np.testing.assert_array_equal(out, b.T)


def test_identity_matrix_is_on_chip():
    def k():
        ident = nl.shared_identity_matrix(32, dtype=nl.float32)
        assert ident.buffer == nl.sbuf
        return nl.copy(ident)
    out, _ = run(k)
    np.testing.assert_array_equal(out, np.eye(32, dtype=np.float32))


# -- random seed -------------------------------------------------------------------
def test_random_seed_makes_dropout_reproducible():
    a = rand((64, 64), 1, 2)

    def k(x, s):
        nl.random_seed(s)
        d1 = nl.dropout(x, 0.5)
        nl.random_seed(s)
        d2 = nl.dropout(x, 0.5)
        return nl.subtract(d1, d2)
    out, _ = run(k, a, np.full((1, 1), 42, np.int32))
    np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_rand_uniform_and_seeded(chip):
    def k(seed):
        nl.random_seed(seed)
        a = nl.rand((128, 64), nl.float32)
        nl.random_seed(seed)
        b = nl.rand((128, 64), nl.float32)
        return nl.add(nl.multiply(a, 2.0), nl.subtract(a, b))  # 2a, checks a == b
    out, _ = run(k, np.full((1, 1), 7, np.int32), chip=chip)
    u = out / 2
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert len(np.unique(u)) > 8000


def test_rand_same_values_on_every_generation():
    def k(seed):
        nl.random_seed(seed)
        return nl.rand((16, 16), nl.float32)
    outs = [run(k, np.full((1, 1), 3, np.int32), chip=c)[0] for c in ("trn1", "trn3")]
    np.testing.assert_array_equal(outs[0], outs[1])


# -- timing-only mode ----------------------------------------------------------------
def test_numerics_off_records_everything():
    a, b = rand((64, 32)), rand((64, 32))

    def k(x, y):
        t = nl.add(x, y)
        t = nl.exp(nl.multiply(t, 0.5))
        t = nl.softmax(t, axis=1)
        nl.sum(t, axis=1, keepdims=True)
        nl.var(t, axis=1)
        f = nl.floor(t)
        nl.where(nl.greater(x, 0.0), f, y)
        m = nl.matmul(x, y, transpose_x=True)
        return nl.add(nl.copy(m), 1.0)
    out, info = run(k, a, b, numerics=False)
    ops = opcodes(info)
    for op in ("tensor_tensor", "tensor_scalar", "activation", "tensor_reduce",
               "scalar_tensor_tensor", "tensor_copy_predicated", "nc_matmul"):
        assert op in ops, op
