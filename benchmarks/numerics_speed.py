"""Numerics-on speed: trnsim against the same arithmetic written directly in NumPy.

    python -m benchmarks.numerics_speed [--reps N] [--quick]

Each kernel runs with numerics on (values computed) and off (shapes, checks and the
record only), and its NumPy reference does the same tiling and arithmetic (the tile
loads as copies, one fp32 matmul per tile accumulated in fp32 / the same
max-exp-sum-reciprocal-multiply per row tile). Inputs are random (no all-ones
shortcuts) and made before the clock starts. Times are CPU seconds (process time), the
best of `reps`, each kernel alternating with its reference; set OPENBLAS_NUM_THREADS=1
for stable numbers.

Columns:
- `on`, `off`: trnsim CPU seconds with numerics on / off; `numpy`: the reference.
- `ratio`: on / numpy, the target being <= 2.
- `numerics_ratio`: (on - off) / numpy: what computing the values costs against NumPy,
  without the per-instruction recording that numerics-off runs also pay.
- `fixed_us`: off / instructions, the per-instruction bookkeeping (validation, access
  description, record, compiler model) in microseconds.
- `numerics_fixed_us`: (on - off - numpy) / instructions: what numerics add per
  instruction beyond the arithmetic itself.
- `unrolled_us`: (off with TRNSIM_EXPAND=0 - off) / instructions: the part of
  `numerics_fixed_us` that is recording every loop iteration for real, as a numerics
  run does (a run without numerics records a few iterations and expands the rest,
  machine/expand.py).
- `numpy64`, `ratio64` (matmul kernels in the exact accumulation mode): the reference
  with that mode's arithmetic instead (each tile's products and sums in float64, rounded once to
  fp32, then added in fp32), and on / numpy64. numpy64 / numpy is the floor of the
  exact mode's ratio: what its float64 GEMMs cost over fp32 ones on this CPU.

The matmul mode (`TRNSIM_MATMUL_ACCUMULATION`, see src/trnsim/isa/matmul.py) is as in
the environment; `--mode` runs the matmul kernels under each mode given.
"""
from __future__ import annotations

import argparse
import functools
import os
import time

import ml_dtypes
import numpy as np

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.examples import load_example
from trnsim.isa.matmul import accumulation_mode
from trnsim.legacy import jit as legacy_jit
from trnsim.machine import expand

from .fidelity import TILE_K, TILE_M, TILE_N, ko_tiled
from .speed import environment

MATMUL_SHAPE = (2048, 512, 2048)  # K, M, N
SOFTMAX_SHAPE = (4096, 2048)


# -- NumPy references -------------------------------------------------------------------
def numpy_tiled_matmul(lhsT: np.ndarray, rhs: np.ndarray, out_dtype,
                       product=np.float32) -> np.ndarray:
    """result = lhsT.T @ rhs with the kernels' tiling: per output tile, per k, copy the
    two input tiles as `product`, multiply them there (float64: the exact accumulation
    mode's sums, rounded once to fp32) and add into an fp32 accumulator; round the
    accumulator once to the output dtype."""
    K, M = lhsT.shape
    N = rhs.shape[1]
    out = np.empty((M, N), dtype=out_dtype)
    for m in range(M // TILE_M):
        for n in range(N // TILE_N):
            acc = np.zeros((TILE_M, TILE_N), dtype=np.float32)
            for k in range(K // TILE_K):
                a = lhsT[k * TILE_K:(k + 1) * TILE_K, m * TILE_M:(m + 1) * TILE_M]
                b = rhs[k * TILE_K:(k + 1) * TILE_K, n * TILE_N:(n + 1) * TILE_N]
                acc += (a.astype(product).T @ b.astype(product)).astype(np.float32, copy=False)
            out[m * TILE_M:(m + 1) * TILE_M, n * TILE_N:(n + 1) * TILE_N] = acc.astype(out_dtype)
    return out


def numpy_softmax(x: np.ndarray, P: int = 128) -> np.ndarray:
    """examples/softmax.py's arithmetic per 128-row tile, in fp32."""
    out = np.empty_like(x)
    for r0 in range(0, x.shape[0], P):
        xt = x[r0:r0 + P].astype(np.float32)
        neg_max = -xt.max(axis=1, keepdims=True)
        e = np.exp(xt + neg_max)
        inv = np.float32(1) / e.sum(axis=1, keepdims=True)
        out[r0:r0 + P] = (e * inv).astype(x.dtype)
    return out


TINY_OPS = 1000


@nki.jit
def tiny_ops(x):
    """TINY_OPS dependent [128, 1] multiplies: almost no arithmetic, so the time with
    numerics on minus off is the per-instruction fixed cost of computing values."""
    t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    for _ in range(TINY_OPS):
        nisa.tensor_scalar(dst=t, data=t, op0=nl.multiply, operand0=1.0001)
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=t)
    return out


def numpy_tiny_ops(x: np.ndarray) -> np.ndarray:
    t = x.astype(np.float32)
    for _ in range(TINY_OPS):
        t = t * np.float32(1.0001)
    return t


# -- cases ------------------------------------------------------------------------------
def _inputs(kind: str, shape, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "tiny":
        return (rng.standard_normal((128, 1)).astype(np.float32),)
    if kind == "softmax":
        return ((3 * rng.standard_normal(shape)).astype(np.float32),)
    K, M, N = shape
    dt = np.float32 if kind == "ko_fp32" else ml_dtypes.bfloat16
    return (rng.standard_normal((K, M)).astype(dt), rng.standard_normal((K, N)).astype(dt))


@functools.cache
def _example(name: str):
    """The example module, loaded once per process as a user's import would be (a load
    compiles its source: no part of a kernel's run, which the NumPy side does not pay)."""
    return load_example(name)


def _trnsim(kind: str, args, numerics: bool):
    if kind == "legacy_bf16":
        fn = _example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
        return legacy_jit.run_legacy(fn, args, {}, chip="trn1", numerics=numerics)
    if kind == "softmax":
        return trnsim.run_kernel(_example("softmax").softmax_kernel, args, chip="trn2",
                                 numerics=numerics)
    if kind == "tiny":
        return trnsim.run_kernel(tiny_ops, args, chip="trn2", numerics=numerics)
    return trnsim.run_kernel(ko_tiled, args, chip="trn2", numerics=numerics)


def _numpy(kind: str, args):
    if kind == "softmax":
        return numpy_softmax(*args)
    if kind == "tiny":
        return numpy_tiny_ops(*args)
    return numpy_tiled_matmul(*args, out_dtype=args[0].dtype)


CASES = (
    ("ko_fp32", "tiled matmul fp32 (trn2, K=2048 M=512 N=2048)"),
    ("ko_bf16", "tiled matmul bf16 (trn2, K=2048 M=512 N=2048)"),
    ("legacy_bf16", "legacy tutorial tiled bf16 (trn1, K=2048 M=512 N=2048)"),
    ("softmax", "softmax fp32 (trn2, 4096x2048)"),
    ("tiny", f"{TINY_OPS} tensor_scalar on [128, 1] (fixed cost, trn2)"),
)


def _best(fs, reps: int) -> list:
    """(best CPU time of `reps` calls, the last call's result) for each of the
    functions `fs`, called in turn in every rep so that what they are compared on
    shares the machine's load (a shared machine's ratios swung ~10% when each ran its
    reps in a block). Each call starts with the previous one's result freed: a run
    holding another run's arenas and tensors page-faults fresh memory, which made the
    same run 1x-3x slower from one process to the next."""
    best, results = [None] * len(fs), [None] * len(fs)
    for _ in range(reps):
        for i, f in enumerate(fs):
            results[i] = None
            c0 = time.process_time()
            results[i] = f()
            dt = time.process_time() - c0
            if best[i] is None or dt < best[i]:
                best[i] = dt
    return list(zip(best, results))


def measure(kind: str, label: str, reps: int = 3, quick: bool = False) -> dict:
    if kind == "softmax":
        shape = (SOFTMAX_SHAPE[0] // 4, SOFTMAX_SHAPE[1]) if quick else SOFTMAX_SHAPE
    elif kind == "tiny":
        shape = None
    else:
        K, M, N = MATMUL_SHAPE
        shape = (K // 4, M, N // 2) if quick else MATMUL_SHAPE
    args = _inputs(kind, shape)
    (on, (out, run)), (ref_t, ref) = _best(
        (lambda: _trnsim(kind, args, True), lambda: _numpy(kind, args)), reps)
    [(off, _)] = _best((lambda: _trnsim(kind, args, False),), reps)
    exact = {}
    if kind not in ("softmax", "tiny") and accumulation_mode() == "exact":
        [(t64, _)] = _best((lambda: numpy_tiled_matmul(*args, args[0].dtype, np.float64),),
                           reps)
        exact = {"numpy64": t64, "ratio64": on / t64}
    with environment(expand.ENV, "0"):  # every iteration recorded, as numerics runs do
        [(unrolled, _)] = _best((lambda: _trnsim(kind, args, False),), reps)
    n = len(run.program)
    got = np.asarray(out, dtype=np.float32)
    want = ref.astype(np.float32)
    scale = float(np.max(np.abs(want))) or 1.0
    return {
        "kernel": label + (" [quick shapes]" if quick and shape is not None else ""),
        "case": kind, "instructions": n, "on": on, "off": off, "numpy": ref_t,
        "ratio": on / ref_t, "numerics_ratio": (on - off) / ref_t,
        "fixed_us": 1e6 * off / n, "numerics_fixed_us": 1e6 * (on - off - ref_t) / n,
        "unrolled_us": 1e6 * (unrolled - off) / n,
        "max_rel_diff": float(np.max(np.abs(got - want))) / scale,
        "matmul_mode": os.environ.get("TRNSIM_MATMUL_ACCUMULATION", "") or "default",
        **exact,
    }


def job_numerics_speed(reps: int = 3, quick: bool = False, modes=(None,)) -> list[dict]:
    """One row per kernel (see the module docstring for the columns); the matmul
    kernels once per accumulation mode in `modes` (None: as the environment says)."""
    rows = []
    saved = os.environ.get("TRNSIM_MATMUL_ACCUMULATION")
    try:
        for kind, label in CASES:
            for mode in (modes if kind.startswith(("ko", "legacy")) else (None,)):
                if mode is not None:
                    os.environ["TRNSIM_MATMUL_ACCUMULATION"] = mode
                try:
                    rows.append(measure(kind, label, reps, quick))
                finally:
                    if saved is None:
                        os.environ.pop("TRNSIM_MATMUL_ACCUMULATION", None)
                    else:
                        os.environ["TRNSIM_MATMUL_ACCUMULATION"] = saved
    finally:
        if saved is not None:
            os.environ["TRNSIM_MATMUL_ACCUMULATION"] = saved
    return rows


def render(rows: list[dict]) -> str:
    head = (f"{'kernel':72} {'mode':>7} {'instr':>6} {'on s':>7} {'off s':>7} "
            f"{'numpy s':>8} {'ratio':>6} {'num.ratio':>9} {'fixed us':>9} "
            f"{'num.fixed us':>12} {'unrolled us':>11} {'max rel diff':>12} "
            f"{'numpy64 s':>9} {'ratio64':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        nan = float("nan")  # (rows of runs before a column, and of kernels without it)
        unrolled = r.get("unrolled_us", nan)
        lines.append(
            f"{r['kernel']:72} {r['matmul_mode']:>7} {r['instructions']:6d} {r['on']:7.3f} "
            f"{r['off']:7.3f} {r['numpy']:8.3f} {r['ratio']:6.2f} {r['numerics_ratio']:9.2f} "
            f"{r['fixed_us']:9.0f} {r['numerics_fixed_us']:12.0f} {unrolled:11.0f} "
            f"{r['max_rel_diff']:12.2e} {r.get('numpy64', nan):9.3f} "
            f"{r.get('ratio64', nan):7.2f}")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smaller shapes (smoke run)")
    p.add_argument("--mode", action="append", choices=("exact", "fp32"),
                   help="matmul accumulation mode(s) to run the matmul kernels under")
    a = p.parse_args(argv)
    rows = job_numerics_speed(a.reps, a.quick, tuple(a.mode or (None,)))
    print(render(rows))
    return rows


if __name__ == "__main__":
    main()
