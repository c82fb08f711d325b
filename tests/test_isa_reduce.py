"""nki.isa.tensor_reduce / tensor_partition_reduce / bn_stats / bn_aggr against NumPy
references written here."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError
from kernel_helpers import load, store

RNG = np.random.default_rng(99)


def run(fn, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(fn, args, chip=chip, numerics=numerics)


def op(name):
    return getattr(nl, name, None) or name


def reduce_kernel(opx, axis, dst_shape, dst_dtype=nl.float32, **kw):
    def k(x):
        d = nl.ndarray(dst_shape, dst_dtype, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=d, op=opx, data=load(x), axis=axis, **kw)
        return store(d)
    return k


# ---------------------------------------------------------------- tensor_reduce

def test_sum_over_last_axis():
    x = RNG.standard_normal((128, 300)).astype(np.float32)
    y, r = run(reduce_kernel(op("add"), 1, (128, 1)), x)
    np.testing.assert_allclose(y[:, 0], x.astype(np.float64).sum(1), rtol=1e-5, atol=1e-5)
    ins = r.program.by_engine("vector")[0]
    assert ins.opcode == "tensor_reduce"
    assert ins.attrs["op"] == "add" and ins.attrs["axes"] == (1,)


@pytest.mark.parametrize("name,ref", [
    ("maximum", np.max), ("minimum", np.min),
    ("abs_max", lambda a, axis: np.abs(a).max(axis=axis)),
])
def test_max_min_over_two_trailing_axes_keepdims(name, ref):
    x = RNG.standard_normal((16, 3, 5, 7)).astype(np.float32)
    y, _ = run(reduce_kernel(op(name), (2, 3), (16, 3, 1, 1), keepdims=True), x)
    np.testing.assert_array_equal(y, ref(x, axis=(2, 3)).reshape(16, 3, 1, 1))


def test_negative_axis_and_negate():
    x = RNG.standard_normal((8, 4, 6)).astype(np.float32)
    y, r = run(reduce_kernel(np.max, -1, (8, 4), negate=True), x)
    np.testing.assert_array_equal(y, -x.max(axis=2))
    assert r.program.by_engine("vector")[0].attrs["negate"] is True


def test_multiply_reduce_and_all_free_axes():
    x = RNG.uniform(0.5, 1.5, (8, 4, 6)).astype(np.float32)
    y, _ = run(reduce_kernel(np.multiply, (1, 2), (8, 1)), x)
    np.testing.assert_allclose(y[:, 0], x.astype(np.float64).reshape(8, -1).prod(1),
                               rtol=1e-5)


def test_sum_is_sequential_fp32():
    # 2^24 + 1 + 1 + ... : each +1 is lost in a sequential fp32 sum
    x = np.ones((1, 9), np.float32)
    x[0, 0] = 2.0 ** 24
    y, _ = run(reduce_kernel("add", 1, (1, 1)), x)
    assert y[0, 0] == np.float32(2.0 ** 24)


def test_bf16_input_and_output():
    x = RNG.standard_normal((32, 64)).astype(ml_dtypes.bfloat16)
    y, _ = run(reduce_kernel("max", 1, (32, 1), dst_dtype=nl.bfloat16), x)
    np.testing.assert_array_equal(y[:, 0], x.max(axis=1))
    y, _ = run(reduce_kernel("add", 1, (32, 1), dst_dtype=nl.bfloat16), x)
    ref = x.astype(np.float64).sum(1).astype(np.float32).astype(ml_dtypes.bfloat16)
    np.testing.assert_allclose(y[:, 0].astype(np.float32), ref.astype(np.float32),
                               rtol=1e-2, atol=1e-2)


def test_bitvec_reductions_on_raw_bits():
    x = RNG.integers(-2 ** 31, 2 ** 31 - 1, (16, 10), dtype=np.int64).astype(np.int32)
    for name, uf in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                     ("bitwise_xor", np.bitwise_xor)):
        y, _ = run(reduce_kernel(op(name), 1, (16, 1), dst_dtype=nl.int32), x)
        np.testing.assert_array_equal(y[:, 0], uf.reduce(x, axis=1))


def test_integer_sum_is_exact():
    x = RNG.integers(0, 2 ** 22, (8, 64), dtype=np.int64).astype(np.int32)
    y, _ = run(reduce_kernel("add", 1, (8, 1), dst_dtype=nl.int32), x)
    np.testing.assert_array_equal(y[:, 0], x.astype(np.int64).sum(1))


def test_axis_errors():
    x = np.ones((8, 4, 6), np.float32)
    with pytest.raises(NkiValidationError, match="partition axis"):
        run(reduce_kernel("add", 0, (1, 24)), x)
    with pytest.raises(NkiValidationError, match="partition axis"):
        run(reduce_kernel("add", (0, 1, 2), (8, 1)), x)
    with pytest.raises(NkiValidationError, match="last contiguous free axes"):
        run(reduce_kernel("add", 1, (8, 6)), x)
    with pytest.raises(NkiValidationError, match="out of range"):
        run(reduce_kernel("add", 3, (8, 4)), x)


def test_dst_size_and_op_errors():
    x = np.ones((8, 4, 6), np.float32)
    with pytest.raises(NkiValidationError, match="leaves 4"):
        run(reduce_kernel("add", 2, (8, 1)), x)
    with pytest.raises(NkiValidationError, match="not a reduction operator"):
        run(reduce_kernel(np.greater, 2, (8, 4)), x)
    xi = np.ones((8, 4), np.int32)
    with pytest.raises(NkiValidationError, match="negate"):
        run(reduce_kernel("bitwise_or", 1, (8, 1), dst_dtype=nl.int32, negate=True), xi)
    with pytest.raises(NkiValidationError, match="integer"):
        run(reduce_kernel("bitwise_or", 1, (8, 1)), x[:, :, 0].copy())


def test_numerics_off_records():
    x = np.ones((8, 4), np.float32)
    _, r = run(reduce_kernel("add", 1, (8, 1)), x, numerics=False)
    ins = r.program.by_engine("vector")[0]
    assert ins.opcode == "tensor_reduce" and ins.writes[0].shape == (8, 1)


_OPS = {
    "add": lambda a, axes: a.sum(axis=axes),
    "maximum": lambda a, axes: a.max(axis=axes),
    "minimum": lambda a, axes: a.min(axis=axes),
    "abs_max": lambda a, axes: np.abs(a).max(axis=axes),
    "multiply": lambda a, axes: a.prod(axis=axes),
}
_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16,
           "int32": np.int32}


@st.composite
def reduce_case(draw):
    p = draw(st.integers(1, 128))
    free = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
    shape = (p, *free)
    first = draw(st.integers(1, len(shape) - 1))
    axes = tuple(range(first, len(shape)))
    name = draw(st.sampled_from(sorted(_OPS)))
    dt = draw(st.sampled_from(sorted(_DTYPES)))
    if dt == "int32" and name == "multiply":
        dt = "float32"
    keep = draw(st.booleans())
    negate = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 31))
    return shape, axes, name, dt, keep, negate, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reduce_case())
def test_tensor_reduce_property(case):
    shape, axes, name, dt, keep, negate, seed = case
    g = np.random.default_rng(seed)
    lo, hi = (0.7, 1.3) if name == "multiply" else (-10, 10)
    if dt == "int32":  # integer data and dst: exact
        x = g.integers(-1000, 1000, shape).astype(np.int32)
    else:
        x = g.uniform(lo, hi, shape).astype(_DTYPES[dt])
    x64 = x.astype(np.float64)
    expect = _OPS[name](x64, axes) * (-1 if negate else 1)
    dst_shape = tuple(1 if d in axes else n for d, n in enumerate(shape)) if keep \
        else shape[:axes[0]]
    if len(dst_shape) < 2:
        dst_shape = (shape[0], 1)
    dst_dtype = nl.int32 if dt == "int32" else nl.float32
    y, _ = run(reduce_kernel(op(name), axes if len(axes) > 1 else axes[0], dst_shape,
                             dst_dtype, keepdims=keep, negate=negate), x)
    n = int(np.prod([shape[a] for a in axes]))
    assert y.shape == dst_shape
    got = y.reshape(expect.shape).astype(np.float64)
    if name in ("maximum", "minimum", "abs_max") or dt == "int32":
        np.testing.assert_array_equal(got, expect)
    elif name == "add":
        bound = n * 2.0 ** -23 * np.abs(x64).sum(axis=axes) + 1e-6
        assert (np.abs(got - expect) <= bound).all()
    else:
        np.testing.assert_allclose(got, expect, rtol=n * 2.0 ** -22)


# ---------------------------------------------------------------- tensor_partition_reduce

def partition_kernel(opx, dst_dtype=nl.float32):
    def k(x):
        d = nl.ndarray((1,) + x.shape[1:], dst_dtype, buffer=nl.sbuf)
        nisa.tensor_partition_reduce(dst=d, op=opx, data=load(x))
        return store(d)
    return k


def test_partition_reduce_add_max_average():
    x = RNG.standard_normal((64, 32)).astype(np.float32)
    y, r = run(partition_kernel(np.add), x)
    np.testing.assert_allclose(y[0], x.astype(np.float64).sum(0), rtol=1e-5, atol=1e-5)
    assert r.program.instructions[1].engine == "gpsimd"
    y, _ = run(partition_kernel(np.maximum), x)
    np.testing.assert_array_equal(y[0], x.max(0))
    y, _ = run(partition_kernel("average"), x)
    np.testing.assert_allclose(y[0], x.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)


def test_partition_reduce_bitwise_or():
    x = RNG.integers(0, 2 ** 16, (32, 8), dtype=np.int64).astype(np.int32)
    y, _ = run(partition_kernel("bitwise_or", nl.int32), x)
    np.testing.assert_array_equal(y[0], np.bitwise_or.reduce(x, axis=0))


def test_partition_reduce_errors():
    x = np.ones((8, 4), np.float32)

    def k(x):
        d = nl.ndarray((8, 4), nl.float32, buffer=nl.sbuf)
        nisa.tensor_partition_reduce(dst=d, op=np.add, data=load(x))
    with pytest.raises(NkiValidationError, match="one partition"):
        run(k, x)
    with pytest.raises(NkiValidationError, match="not supported"):
        run(partition_kernel(np.subtract), x)


# ---------------------------------------------------------------- bn_stats / bn_aggr

def stats_ref(row):
    """[count, mean, var*count] for even then odd elements of a 1-D row."""
    res = []
    for part in (row[0::2], row[1::2]):
        part = part.astype(np.float64)
        res += [len(part), part.mean(), ((part - part.mean()) ** 2).sum()]
    return np.array(res)


def test_bn_stats_layout_even_then_odd():
    x = (RNG.standard_normal((32, 300)) * 3 + 1).astype(np.float32)
    x[:, 1::2] += 5  # odd elements have a different mean

    def k(x):
        d = nl.ndarray((32, 6), nl.float32, buffer=nl.sbuf)
        nisa.bn_stats(dst=d, data=load(x))
        return store(d)
    y, r = run(k, x)
    expect = np.stack([stats_ref(row) for row in x])
    np.testing.assert_allclose(y, expect, rtol=1e-5)
    assert r.program.instructions[1].engine == "vector"


def test_bn_stats_then_bn_aggr_mean_and_variance():
    x = (RNG.standard_normal((128, 512)) * 2 - 3).astype(np.float32)

    def k(x):
        s = nl.ndarray((128, 6), nl.float32, buffer=nl.sbuf)
        nisa.bn_stats(dst=s, data=load(x))
        mv = nl.ndarray((128, 2), nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mv, data=s)
        return store(mv)
    y, _ = run(k, x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y[:, 0], x64.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[:, 1], x64.var(1), rtol=1e-5)


def test_bn_aggr_of_several_bn_stats_tiles():
    F = 1200  # 512 + 512 + 176
    x = (RNG.standard_normal((64, F)) * 0.5 + RNG.uniform(-2, 2, (64, 1))).astype(np.float32)
    x[:, :512] += 1.0  # chunks with different means

    def k(x):
        xs = load(x)
        stats = nl.ndarray((64, 3, 6), nl.float32, buffer=nl.sbuf)
        for i, (a, b) in enumerate(((0, 512), (512, 1024), (1024, F))):
            nisa.bn_stats(dst=stats[:, i, :], data=xs[:, a:b])
        mv = nl.ndarray((64, 2), nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mv, data=stats)
        return store(mv)
    y, _ = run(k, x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(y[:, 0], x64.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y[:, 1], x64.var(1), rtol=1e-5)


def test_bn_stats_single_element_has_empty_odd_group():
    x = np.full((4, 1), 7.0, np.float32)

    def k(x):
        s = nl.ndarray((4, 6), nl.float32, buffer=nl.sbuf)
        nisa.bn_stats(dst=s, data=load(x))
        mv = nl.ndarray((4, 2), nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mv, data=s)
        return store(s), store(mv)
    (s, mv), _ = run(k, x)
    np.testing.assert_array_equal(s, [[1, 7, 0, 0, 0, 0]] * 4)
    np.testing.assert_array_equal(mv, [[7, 0]] * 4)


def test_bn_stats_limits():
    def k(x):
        s = nl.ndarray((4, 6), nl.float32, buffer=nl.sbuf)
        nisa.bn_stats(dst=s, data=load(x))
        return store(s)
    run(k, np.ones((4, 512), np.float32))
    with pytest.raises(NkiValidationError, match="at most 512"):
        run(k, np.ones((4, 513), np.float32))

    def k_dst(x):
        s = nl.ndarray((4, 4), nl.float32, buffer=nl.sbuf)
        nisa.bn_stats(dst=s, data=load(x))
    with pytest.raises(NkiValidationError, match="6 elements"):
        run(k_dst, np.ones((4, 8), np.float32))

    def k_aggr(x):
        mv = nl.ndarray((4, 2), nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mv, data=load(x))
    with pytest.raises(NkiValidationError, match="multiple of 3"):
        run(k_aggr, np.ones((4, 8), np.float32))
