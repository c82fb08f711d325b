"""nki.isa random-number instructions: XORWOW streams checked against a reference
written here, seeding determinism, rand2 and dropout statistics, generation limits."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from kernel_helpers import load, store

M32 = 0xFFFFFFFF
RNG = np.random.default_rng(7)


def run(fn, *args, chip="trn2", numerics=True):
    return trnsim.run_kernel(fn, args, chip=chip, numerics=numerics)


class Xorwow:
    """Marsaglia's xorwow (2003): five xorshift words and a Weyl counter."""

    def __init__(self, words):
        self.x = [int(w) for w in words[:5]]
        self.d = int(words[5])

    def next(self):
        t, s = self.x[4], self.x[0]
        self.x = [0, s, self.x[1], self.x[2], self.x[3]]
        t ^= t >> 2
        t ^= (t << 1) & M32
        t ^= s ^ ((s << 4) & M32)
        self.x[0] = t
        self.d = (self.d + 362437) & M32
        return (t + self.d) & M32

    def words(self):
        return self.x + [self.d]


def random_states(p, words):
    return RNG.integers(0, 2 ** 32, (p, words), dtype=np.uint64).astype(np.uint32)


# ---------------------------------------------------------------- XORWOW streams

def test_gpsimd_rng_follows_xorwow_from_a_loaded_state():
    states = random_states(4, 6)

    def k(s):
        nisa.rand_set_state(src_seeds=load(s), engine=nisa.engine.gpsimd)
        r = nl.ndarray((4, 10), nl.uint32, buffer=nl.sbuf)
        nisa.rng(dst=r, engine=nisa.engine.gpsimd)
        st = nl.ndarray((4, 6), nl.uint32, buffer=nl.sbuf)
        nisa.rand_get_state(dst=st)
        return store(r), store(st)
    (r, st), prog = run(k, states, chip="trn2")
    for p in range(4):
        g = Xorwow(states[p])
        assert [int(v) for v in r[p]] == [g.next() for _ in range(10)]
        assert [int(v) for v in st[p]] == g.words()
    engines = {i.opcode: i.engine for i in prog.program}
    assert engines["rng"] == engines["rand_set_state"] == engines["rand_get_state"] == "gpsimd"


def test_vector_engine_has_four_states_per_lane_on_trn3():
    states = random_states(2, 24)

    def k(s):
        nisa.rand_set_state(src_seeds=load(s), engine=nisa.engine.vector)
        r = nl.ndarray((2, 9), nl.uint32, buffer=nl.sbuf)
        nisa.rng(dst=r)
        st = nl.ndarray((2, 24), nl.uint32, buffer=nl.sbuf)
        nisa.rand_get_state(dst=st, engine=nisa.engine.vector)
        return store(r), store(st)
    (r, st), _ = run(k, states, chip="trn3")
    for p in range(2):
        gens = [Xorwow(states[p, 6 * i:6 * i + 6]) for i in range(4)]
        assert [int(v) for v in r[p]] == [gens[j % 4].next() for j in range(9)]
        assert [int(v) for v in st[p]] == sum((g.words() for g in gens), [])


def test_rng_truncates_to_the_low_bits_of_the_dtype():
    states = random_states(3, 6)

    def k(s):
        nisa.rand_set_state(src_seeds=load(s))
        a = nl.ndarray((3, 5), nl.uint8, buffer=nl.sbuf)
        nisa.rng(dst=a, engine=nisa.engine.gpsimd)
        b = nl.ndarray((3, 5), nl.int16, buffer=nl.sbuf)
        nisa.rng(dst=b, engine=nisa.engine.gpsimd)
        return store(a), store(b)
    (a, b), _ = run(k, states)
    for p in range(3):
        g = Xorwow(states[p])
        assert [int(v) for v in a[p]] == [g.next() & 0xFF for _ in range(5)]
        assert [int(v) for v in b[p].view(np.uint16)] == [g.next() & 0xFFFF for _ in range(5)]


# ---------------------------------------------------------------- seeding

def seeded_kernel(seed_a, seed_b):
    def k():
        def seed(v):
            t = nl.ndarray((1, 1), nl.int32, buffer=nl.sbuf)
            nisa.memset(dst=t, value=v)
            nisa.set_rng_seed(src_seeds=t)
        outs = []
        for s in (seed_a, seed_b, seed_a):
            seed(s)
            r = nl.ndarray((128, 64), nl.uint32, buffer=nl.sbuf)
            nisa.rng(dst=r)
            outs.append(store(r))
        return tuple(outs)
    return k


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_rng_is_deterministic_per_seed(chip):
    (a, b, a2), r = run(seeded_kernel(42, 43), chip=chip)
    np.testing.assert_array_equal(a, a2)
    assert (a != b).mean() > 0.99
    (a3, _, _), _ = run(seeded_kernel(42, 7), chip=chip)
    np.testing.assert_array_equal(a, a3)  # same seed, another run
    assert len(np.unique(a)) > a.size * 0.99  # lanes and states differ
    assert abs(a.astype(np.float64).mean() / 2 ** 32 - 0.5) < 0.01
    seeds = [i for i in r.program if i.opcode == "set_rng_seed"]
    assert len(seeds) == 3 and seeds[0].engine == "vector" and seeds[0].attrs["seed"] == 42


def test_unseeded_generator_is_deterministic():
    def k():
        r = nl.ndarray((16, 16), nl.uint32, buffer=nl.sbuf)
        nisa.rng(dst=r)
        return store(r)
    a, _ = run(k)
    b, _ = run(k)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- rand2

def test_rand2_uniform_range_and_formula():
    states = random_states(128, 24)

    def k(s):
        nisa.rand_set_state(src_seeds=load(s), engine=nisa.engine.vector)
        r = nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)
        nisa.rand2(dst=r, min=-2.0, max=3.0)
        return store(r)
    r, prog = run(k, states, chip="trn3")
    assert r.min() >= -2.0 and r.max() < 3.0
    assert abs(r.mean() - 0.5) < 0.02
    assert abs(r.var() - 25 / 12) < 0.05
    g = [Xorwow(states[5, 6 * i:6 * i + 6]) for i in range(4)]
    bits = np.array([g[j % 4].next() for j in range(8)], np.uint32)
    u = (bits >> 8).astype(np.float32) * np.float32(2.0 ** -24)
    np.testing.assert_array_equal(r[5, :8], np.float32(-2) + (u * np.float32(5)))
    assert prog.program.by_engine("vector")[-1].opcode == "rand2"


def test_rand2_vector_bounds_and_errors():
    lo = RNG.uniform(-5, 0, (64, 1)).astype(np.float32)
    hi = lo + RNG.uniform(0.1, 3, (64, 1)).astype(np.float32)

    def k(lo, hi):
        r = nl.ndarray((64, 128), nl.float32, buffer=nl.sbuf)
        nisa.rand2(dst=r, min=load(lo), max=load(hi))
        return store(r)
    r, _ = run(k, lo, hi, chip="trn3")
    assert (r >= lo).all() and (r < hi).all()
    with pytest.raises(UnsupportedError, match="rand2"):
        run(k, lo, hi, chip="trn2")

    def k_bad():
        r = nl.ndarray((4, 4), nl.float32, buffer=nl.sbuf)
        nisa.rand2(dst=r, min=1.0, max=1.0)
    with pytest.raises(NkiValidationError, match="less than max"):
        run(k_bad, chip="trn3")


# ---------------------------------------------------------------- dropout

def dropout_kernel(prob):
    def k(x, *p):
        d = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.dropout(dst=d, data=load(x), prob=load(p[0]) if p else prob)
        return store(d)
    return k


def test_dropout_prob_zero_and_one_are_exact():
    x = RNG.standard_normal((128, 256)).astype(np.float32)
    y, r = run(dropout_kernel(0.0), x)
    np.testing.assert_array_equal(y, x)
    y, _ = run(dropout_kernel(1.0), x)
    np.testing.assert_array_equal(y, 0)
    assert r.program.by_engine("vector")[0].opcode == "dropout"


def test_dropout_half_drops_about_half_without_rescaling():
    x = RNG.uniform(1, 2, (128, 512)).astype(np.float32)
    y, _ = run(dropout_kernel(0.5), x)
    dropped = y == 0
    assert abs(dropped.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(y[~dropped], x[~dropped])  # kept values unchanged
    # no row or column pattern: every partition drops some
    assert (dropped.mean(axis=1) > 0.35).all() and (dropped.mean(axis=1) < 0.65).all()


def test_dropout_per_partition_probability_and_int_data():
    x = RNG.integers(1, 100, (64, 200), dtype=np.int64).astype(np.int32)
    p = np.where(np.arange(64) % 2 == 0, 0.0, 1.0).astype(np.float32).reshape(64, 1)
    y, _ = run(dropout_kernel(None), x, p)
    np.testing.assert_array_equal(y[0::2], x[0::2])
    np.testing.assert_array_equal(y[1::2], 0)
    p25 = np.full((64, 1), 0.25, np.float32)
    y, _ = run(dropout_kernel(None), x, p25)
    assert abs((y == 0).mean() - 0.25) < 0.02


def test_dropout_errors():
    x = np.ones((8, 8), np.int32)
    pb = np.full((8, 1), 0.5, np.float32)

    def k_prob_dtype(x, p):
        d = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
        nisa.dropout(dst=d, data=load(x), prob=load(p, dtype=nl.bfloat16))
    with pytest.raises(NkiValidationError, match="float32 for integer data"):
        run(k_prob_dtype, x, pb)

    def k_dst(x):
        d = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.dropout(dst=d, data=load(x), prob=0.5)
    with pytest.raises(NkiValidationError, match="dtype of data"):
        run(k_dst, x)
    with pytest.raises(NkiValidationError, match=r"\[0, 1\]"):
        run(dropout_kernel(1.5), x)


# ---------------------------------------------------------------- generations, shapes

def test_state_instructions_need_v3_and_vector_state_needs_v4():
    s6, s24 = random_states(4, 6), random_states(4, 24)

    def k(s, engine):
        nisa.rand_set_state(src_seeds=load(s), engine=engine)
    with pytest.raises(UnsupportedError, match="NeuronCore-v3"):
        run(lambda s: k(s, nisa.engine.gpsimd), s6, chip="trn1")
    with pytest.raises(UnsupportedError, match="Vector"):
        run(lambda s: k(s, nisa.engine.vector), s24, chip="trn2")
    with pytest.raises(NkiValidationError, match="24 elements"):
        run(lambda s: k(s, nisa.engine.vector), s6, chip="trn3")
    with pytest.raises(NkiValidationError, match="6 elements"):
        run(lambda s: k(s, nisa.engine.gpsimd), s24, chip="trn3")

    def k_gp():
        r = nl.ndarray((4, 4), nl.uint32, buffer=nl.sbuf)
        nisa.rng(dst=r, engine=nisa.engine.gpsimd)
    with pytest.raises(UnsupportedError, match="GpSimd"):
        run(k_gp, chip="trn1")

    def k_float():
        r = nl.ndarray((4, 4), nl.float32, buffer=nl.sbuf)
        nisa.rng(dst=r)
    with pytest.raises(NkiValidationError, match="must be one of"):
        run(k_float)


def test_numerics_off_records_random_instructions():
    def k():
        s = nl.ndarray((1, 1), nl.uint32, buffer=nl.sbuf)
        nisa.memset(dst=s, value=3)
        nisa.set_rng_seed(src_seeds=s)
        r = nl.ndarray((8, 8), nl.uint32, buffer=nl.sbuf)
        nisa.rng(dst=r)
        d = nl.ndarray((8, 8), nl.float32, buffer=nl.sbuf)
        nisa.rand2(dst=d, min=0.0, max=1.0)
        nisa.dropout(dst=d, data=d, prob=0.3)
        st = nl.ndarray((8, 24), nl.uint32, buffer=nl.sbuf)
        nisa.rand_get_state(dst=st, engine=nisa.engine.vector)
        nisa.rand_set_state(src_seeds=st, engine=nisa.engine.vector)
    _, r = run(k, chip="trn3", numerics=False)
    assert r.program.opcodes() == ["memset", "set_rng_seed", "rng", "rand2", "dropout",
                                   "rand_get_state", "rand_set_state"]
