"""How fast the schedulers run: the compiler model (`compile_program`: hoist, allocate,
list-schedule) and the timing scheduler (`trnsim.timing.schedule`), in instructions per
CPU second, on kernels of the fidelity and spill benchmarks (numerics off), in the
default configuration: `path` says whether a kernel took the compiled paths
(trnsim/machine/compiled.py: programs of 64 instructions or more where numba is
installed) or the Python passes (benchmarks/compiled_speed.py compares the two).

    python -m benchmarks.scheduler_speed [--reps N]

Each figure is the best of `reps` runs (CPU time: the machine is shared). BEFORE holds
the figures of the code before the latest speed-ups of the Python passes, measured in
the same session as the figures after them, for comparison.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

# The code before the last round of scheduler speed-ups (commit b131f30; the round
# before it started from 425cc2f), measured in the same session as the figures after
# them (2026-12-04, 2 cores shared with other jobs, load 2-3, so absolute rates are
# low): best of 3 runs, instructions per CPU second (compile, schedule).
BEFORE_DATE = "2026-12-04, commit b131f30"
BEFORE = {"tiled matmul (trn2, fp32)": (25971, 42829),
          "tiled matmul, 8x larger (trn2, fp32)": (17480, 31147),
          "blocked M/N/K matmul (trn2, fp32)": (30421, 54157),
          "legacy tiled matmul (trn1, bf16)": (23255, 43425),
          "strided column stores (trn2)": (27956, 51625),
          "generated blocks with spills (trn2)": (32930, 56633)}


def _cases():
    import trnsim
    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy

    from . import fidelity as fb
    from . import spills

    f32 = np.float32
    K, M, N = 2048, 512, 2048
    yield ("tiled matmul (trn2, fp32)", lambda: trnsim.run_kernel(
        fb.ko_tiled, (np.zeros((K, M), f32), np.zeros((K, N), f32)), chip="trn2",
        numerics=False))
    yield ("tiled matmul, 8x larger (trn2, fp32)", lambda: trnsim.run_kernel(
        fb.ko_tiled, (np.zeros((2 * K, 2 * M), f32), np.zeros((2 * K, 2 * N), f32)),
        chip="trn2", numerics=False))
    yield ("blocked M/N/K matmul (trn2, fp32)", lambda: trnsim.run_kernel(
        fb.ko_block_mnk, (np.zeros((K, M), f32), np.zeros((K, N), f32)),
        {"TILES_IN_BLOCK_M": M // 128}, chip="trn2", numerics=False))
    tut = load_example("legacy/matmul_tutorial")
    bf = ml_dtypes.bfloat16
    yield ("legacy tiled matmul (trn1, bf16)", lambda: run_legacy(
        tut.VARIANTS["tiled"].fn, (np.zeros((K, M), bf), np.zeros((K, N), bf)), {},
        chip="trn1", numerics=False))
    yield ("strided column stores (trn2)", lambda: trnsim.run_kernel(
        fb.strided_stores, (np.zeros((128, 8 * 1024), f32),), chip="trn2",
        numerics=False))
    yield ("generated blocks with spills (trn2)", lambda: run_legacy(
        spills.generated_blocks, (np.zeros((16, 128, 8192), f32),), chip="trn2", numerics=False))


def _measure(record, reps: int) -> dict:
    import trnsim.compiler as comp
    from trnsim.machine import compiled
    from trnsim.timing import schedule

    orig = comp.compile_program
    spent: list = []

    def timed(program):
        c0 = time.process_time()
        out = orig(program)
        spent.append(time.process_time() - c0)
        return out

    best_c = best_s = float("inf")
    n = 0
    comp.compile_program = timed
    try:
        for _ in range(reps):
            spent.clear()
            _, run = record()
            n = len(run.program)
            best_c = min(best_c, sum(spent))
            c0 = time.process_time()
            schedule(run.program, run.chip)
            best_s = min(best_s, time.process_time() - c0)
    finally:
        comp.compile_program = orig
    return {"instructions": n, "path": "compiled" if compiled.wanted(n) else "Python",
            "compile_cpu_s": best_c, "schedule_cpu_s": best_s,
            "compile_per_s": n / best_c if best_c else float("inf"),
            "schedule_per_s": n / best_s if best_s else float("inf")}


def job_scheduler_speed(reps: int = 5) -> list[dict]:
    """One row per kernel: instructions, compile and schedule CPU seconds, instructions
    per second of each, and the BEFORE figures where recorded."""
    from .compiled_speed import load_compiled
    load_compiled()  # (not the first compiled row's figures: numba's load)
    rows = []
    for label, record in _cases():
        row = {"kernel": label, **_measure(record, reps)}
        before = BEFORE.get(label)
        if before:
            row["before_compile_per_s"], row["before_schedule_per_s"] = before
        rows.append(row)
    return rows


def render(rows) -> str:
    head = (f"{'kernel':36} {'instr':>6} {'path':>8} {'compile s':>9} {'compile/s':>10} "
            f"{'schedule s':>10} {'schedule/s':>10}")
    if any("before_compile_per_s" in r for r in rows):
        head += f"   before ({BEFORE_DATE}): compile/s schedule/s"
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r['kernel']:36} {r['instructions']:6d} {r.get('path', '-'):>8} "
                f"{r['compile_cpu_s']:9.3f} "
                f"{r['compile_per_s']:10.0f} {r['schedule_cpu_s']:10.3f} "
                f"{r['schedule_per_s']:10.0f}")
        if "before_compile_per_s" in r:
            line += (f"   {r['before_compile_per_s']:>10.0f} {r['before_schedule_per_s']:>10.0f}"
                     f"  (x{r['compile_per_s'] / r['before_compile_per_s']:.2f}, "
                     f"x{r['schedule_per_s'] / r['before_schedule_per_s']:.2f})")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    print(render(job_scheduler_speed(args.reps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
