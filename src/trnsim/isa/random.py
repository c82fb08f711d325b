"""Random numbers: rng (raw bits), rand2 (uniform floats, v4), dropout, and the PRNG
state instructions set_rng_seed, rand_set_state, rand_get_state.

Generator: XORWOW (Marsaglia 2003) per compute lane, the algorithm the public docs
name for NeuronCore-v4 (VectorE: 4 states per lane, GpSimd: 1 state per lane, each 6
uint32). Pre-v4 VectorE uses an undocumented LFSR; trnsim uses the same XORWOW there
(so sequences are not bit-exact with any generation's hardware, only deterministic).

State layout (`ins.core.rng[engine]`, uint32 array (128, S, 6), S = 4 for 'vector',
1 for 'gpsimd'; rand_set_state / rand_get_state move it as S*6 uint32 per partition,
state-major): words 0..4 are the xorshift state x[0..4], word 5 the Weyl counter d.
One step: t = x4 ^ (x4 >> 2); t ^= t << 1; t ^= x0 ^ (x0 << 4); x4..x1 = x3..x0;
x0 = t; d += 362437; output t + d.

Element j (row-major over the free axes) of partition p takes the next output of
state j % S of lane p. Uniform floats use the top 24 bits: u = (r >> 8) * 2**-24 in
[0, 1). Seeding (set_rng_seed, and every engine's state at kernel start with seed 0)
expands (seed, engine, lane, state) through splitmix64 into the 6 words.
"""
from __future__ import annotations

import numpy as np

from ..machine.errors import describe
from .accumulate import lane0
from .activation import per_partition
from .base import Instr, flat, free_size
from .enums import engine as Engine

_WEYL = np.uint32(362437)
_STREAMS = {"vector": 4, "gpsimd": 1}
_ENGINE_ID = {"vector": 1, "gpsimd": 2}
_M64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def seed_states(seed: int, engine: str, lanes: int) -> np.ndarray:
    """The (lanes, S, 6) uint32 XORWOW states seeded from a 32-bit seed."""
    s = _STREAMS[engine]
    lane = np.arange(lanes, dtype=np.uint64).reshape(-1, 1, 1)
    stream = np.arange(s, dtype=np.uint64).reshape(1, -1, 1)
    word = np.arange(6, dtype=np.uint64).reshape(1, 1, -1)
    key = (np.uint64(int(seed) & 0xFFFFFFFF) << np.uint64(32)) \
        | (np.uint64(_ENGINE_ID[engine]) << np.uint64(24)) \
        | (lane << np.uint64(8)) | (stream << np.uint64(3)) | word
    st = (_splitmix64(key) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    dead = ~st[..., :5].any(axis=-1)
    st[..., 0][dead] = 1  # an all-zero xorshift state never leaves zero
    return st


def engine_states(ins: Instr, engine: str) -> np.ndarray:
    rng = ins.core.rng
    if engine not in rng:
        rng[engine] = seed_states(0, engine, ins.chip.core.partitions)
    return rng[engine]


def xorwow_step(state: np.ndarray) -> np.ndarray:
    """Advance every XORWOW state in `state` (..., 6) in place; return the outputs."""
    x0 = state[..., 0].copy()
    t = state[..., 4].copy()
    state[..., 4] = state[..., 3]
    state[..., 3] = state[..., 2]
    state[..., 2] = state[..., 1]
    state[..., 1] = x0
    t ^= t >> np.uint32(2)
    t ^= t << np.uint32(1)
    t ^= x0 ^ (x0 << np.uint32(4))
    state[..., 0] = t
    with np.errstate(over="ignore"):
        state[..., 5] += _WEYL
        return t + state[..., 5]


def draw(states: np.ndarray, lo: int, partitions: int, n: int) -> np.ndarray:
    """n uint32 values for each of lanes [lo, lo+P): element j from state j % S."""
    s = states.shape[1]
    lanes = states[lo:lo + partitions]
    steps = -(-n // s)
    out = np.empty((partitions, steps * s), dtype=np.uint32)
    for k in range(steps):
        m = min(s, n - k * s)
        sub = lanes[:, :m]
        out[:, k * s:k * s + m] = xorwow_step(sub)
    return out[:, :n]


def uniform01(bits: np.ndarray) -> np.ndarray:
    """fp32 uniform in [0, 1) from the top 24 bits."""
    return ((bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24))


def _engine(ins_engine) -> str:
    e = getattr(ins_engine, "value", ins_engine)
    return "vector" if e in (None, "unknown") else str(e)


# -- instructions -------------------------------------------------------------

_RNG_DTYPES = ("int8", "int16", "int32", "uint8", "uint16", "uint32")


def rng(dst, engine=Engine.vector, name=None):
    """32 random bits per element of dst, truncated to dst's integer width (LSBs)."""
    with Instr("rng", engine, default="vector", allowed=("vector", "gpsimd")) as ins:
        if ins.engine == "gpsimd":
            ins.require_generation(3, "rng on the GpSimd engine")
        ins.operand("dst", dst)
        ins.require(str(dst.dtype) in _RNG_DTYPES, f"dst {describe(dst)} must be one of "
                    f"{', '.join(_RNG_DTYPES)}")
        ins.require(dst.dyn is None, f"dst {describe(dst)} cannot use tensor indirection")
        n = free_size(dst)
        ins.attrs.update(elements=n)
        states = engine_states(ins, ins.engine)
        if not ins.numerics:
            ins.write("dst", dst, None)
            return
        bits = draw(states, lane0(dst), dst.shape[0], n)
        width = np.dtype(f"u{dst.dtype.itemsize}")
        ins.write("dst", dst, bits.astype(width).view(dst.dtype.np).reshape(dst.shape),
                  raw=True)


_RAND2_DTYPES = ("float8_e4m3", "float8_e5m2", "float16", "bfloat16", "float32", "tfloat32",
                 "int8", "int16", "int32", "uint8", "uint16", "uint32")


def rand2(dst, min, max, name=None):  # noqa: A002 - NKI parameter names
    """Uniform random values in [min, max) (fp32, cast to dst) on the Vector Engine
    (NeuronCore-v4+)."""
    with Instr("rand2", None, default="vector") as ins:
        ins.require_generation(4, "rand2")
        ins.operand("dst", dst)
        ins.require(str(dst.dtype) in _RAND2_DTYPES, f"dst {describe(dst)} must be one of "
                    f"{', '.join(_RAND2_DTYPES)}")
        ins.require(dst.dyn is None, f"dst {describe(dst)} cannot use tensor indirection")
        P = dst.shape[0]
        lo_v, kmin = per_partition(ins, "min", min, P)
        hi_v, kmax = per_partition(ins, "max", max, P)
        if kmin == "const" and kmax == "const":
            ins.require(float(lo_v) < float(hi_v), f"min ({min!r}) must be less than max "
                        f"({max!r})")
        n = free_size(dst)
        ins.attrs.update(elements=n, min_kind=kmin, max_kind=kmax)
        states = engine_states(ins, "vector")
        if not ins.numerics:
            ins.write("dst", dst, None)
            return
        if not (np.asarray(lo_v) < np.asarray(hi_v)).all():
            ins.warn("min must be less than max in every partition")
        u = uniform01(draw(states, lane0(dst), P, n))
        with np.errstate(all="ignore"):
            span = (np.asarray(hi_v, np.float32) - np.asarray(lo_v, np.float32))
            val = (np.asarray(lo_v, np.float32) + (u * span).astype(np.float32))
        ins.write("dst", dst, val.astype(np.float32).reshape(dst.shape))


def dropout(dst, data, prob, name=None):
    """dst = data with each element replaced by zero with probability prob (per
    partition). Kept elements are copied unchanged: no 1/(1-prob) rescaling."""
    with Instr("dropout", None, default="vector") as ins:
        ins.operand("dst", dst)
        ins.operand("data", data)
        ins.same_partitions(("data", data), ("dst", dst))
        ins.same_elements("data", data, "dst", dst)
        ins.require(dst.dtype == data.dtype, f"dst {describe(dst)} must have the dtype of "
                    f"data {describe(data)}")
        ins.require(not data.dtype.is_x4, f"data {describe(data)}: packed types not allowed")
        P = data.shape[0]
        if hasattr(prob, "storage"):
            if data.dtype.is_int:
                ins.require(str(prob.dtype) == "float32", f"prob {describe(prob)} must be "
                            f"float32 for integer data {describe(data)}")
            else:
                ins.require(prob.dtype.is_float, f"prob {describe(prob)} must be a float "
                            "type")
        p, kind = per_partition(ins, "prob", prob, P)
        if kind == "const":
            ins.require(0.0 <= float(p) <= 1.0, f"prob={prob!r} must be in [0, 1]")
        n = free_size(data)
        ins.attrs.update(elements=n, prob_kind=kind)
        states = engine_states(ins, "vector")
        raw = ins.read("data", data)
        if raw is None:
            ins.write("dst", dst, None)
            return
        u = uniform01(draw(states, lane0(data), P, n))
        keep = ~(u < np.asarray(p, np.float32))
        out = np.where(keep, flat(raw), np.zeros((), dtype=raw.dtype))
        ins.write("dst", dst, out.astype(raw.dtype).reshape(dst.shape), raw=True)


def set_rng_seed(src_seeds, name=None):
    """Seed the Vector Engine PRNG (every lane and state) from a [1, 1] 32-bit value."""
    with Instr("set_rng_seed", None, default="vector") as ins:
        ins.operand("src_seeds", src_seeds)
        ins.require(src_seeds.shape[0] == 1 and free_size(src_seeds) == 1,
                    f"src_seeds {describe(src_seeds)} must be a [1, 1] tensor")
        ins.require(src_seeds.dtype.itemsize == 4 and not src_seeds.dtype.is_x4,
                    f"src_seeds {describe(src_seeds)} must hold a 32-bit value")
        raw = ins.read("src_seeds", src_seeds)
        if raw is None:
            return
        seed = int(np.asarray(raw).reshape(-1)[:1].view(np.uint32)[0])
        ins.attrs["seed"] = seed
        ins.core.rng["vector"] = seed_states(seed, "vector", ins.chip.core.partitions)


def _state_engine(ins: Instr) -> str:
    ins.require_generation(3, ins.opcode)
    if ins.engine == "vector":
        ins.require_generation(4, f"{ins.opcode} on the Vector engine")
    return ins.engine


def rand_set_state(src_seeds, engine=Engine.gpsimd, name=None):
    """Load per-lane XORWOW states (6 uint32 per state; GpSimd 1, Vector 4 states)."""
    with Instr("rand_set_state", engine, default="gpsimd",
               allowed=("gpsimd", "vector")) as ins:
        eng = _state_engine(ins)
        ins.operand("src_seeds", src_seeds, buffers=("sbuf",))
        need = 6 * _STREAMS[eng]
        ins.require(str(src_seeds.dtype) == "uint32",
                    f"src_seeds {describe(src_seeds)} must be uint32")
        ins.require(free_size(src_seeds) == need, f"src_seeds {describe(src_seeds)} must "
                    f"have {need} elements per partition (XORWOW state on {eng})")
        ins.require(src_seeds.dyn is None, "src_seeds cannot use tensor indirection")
        ins.attrs.update(state_words=need)
        states = engine_states(ins, eng)
        raw = ins.read("src_seeds", src_seeds)
        if raw is None:
            return
        lo, P = lane0(src_seeds), src_seeds.shape[0]
        states[lo:lo + P] = raw.reshape(P, _STREAMS[eng], 6).astype(np.uint32)


def rand_get_state(dst, engine=Engine.gpsimd, name=None):
    """Store per-lane XORWOW states (6 uint32 per state; GpSimd 1, Vector 4 states)."""
    with Instr("rand_get_state", engine, default="gpsimd",
               allowed=("gpsimd", "vector")) as ins:
        eng = _state_engine(ins)
        ins.operand("dst", dst, buffers=("sbuf", "psum") if eng == "vector" else ("sbuf",))
        need = 6 * _STREAMS[eng]
        ins.require(str(dst.dtype) == "uint32", f"dst {describe(dst)} must be uint32")
        ins.require(free_size(dst) == need, f"dst {describe(dst)} must have {need} "
                    f"elements per partition (XORWOW state on {eng})")
        ins.require(dst.dyn is None, "dst cannot use tensor indirection")
        ins.attrs.update(state_words=need)
        states = engine_states(ins, eng)
        lo, P = lane0(dst), dst.shape[0]
        ins.write("dst", dst, lambda: states[lo:lo + P].reshape(dst.shape).copy(), raw=True)


__all__ = ["rng", "rand2", "dropout", "set_rng_seed", "rand_set_state", "rand_get_state"]
