"""The compiled scheduler experiment (timing/columns.py, compiled.py, compiled_deps.py)
stage by stage against the Python scheduler, in microseconds of CPU per instruction
(best of `reps`, the garbage collector paused as `schedule` pauses it), with a check
that the timelines are identical. Needs numba on the path.

    python -m benchmarks.compiled_scheduler_speed [step1 strided ko2] [--reps N]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402


def _cases():
    import trnsim
    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy

    from . import fidelity as fb

    bf, f32 = ml_dtypes.bfloat16, np.float32
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    return {
        "step1": ("tutorial step 1, tiled (trn1, bf16, K=8192 M=1024 N=4096)",
                  lambda: run_legacy(tiled, (np.zeros((8192, 1024), bf),
                                             np.zeros((8192, 4096), bf)), {},
                                     chip="trn1", numerics=False)[1]),
        "strided": ("strided column stores (trn2, fp32, 128 x 65,536)",
                    lambda: trnsim.run_kernel(fb.strided_stores,
                                              (np.zeros((128, 8 * 8192), f32),),
                                              chip="trn2", numerics=False)[1]),
        "ko2": ("kernel-optimization step 2, hoisted (trn2, fp32, K=4096 M=1024 N=4096)",
                lambda: trnsim.run_kernel(fb.ko_hoisted, (np.zeros((4096, 1024), f32),
                                                          np.zeros((4096, 4096), f32)),
                                          chip="trn2", numerics=False)[1]),
    }


def _best(f, reps):
    from trnsim.machine.gc_pause import gc_paused
    best, out = float("inf"), None
    for _ in range(reps):
        c = time.process_time()
        with gc_paused():
            out = f()
        best = min(best, time.process_time() - c)
    return best, out


def _schedule(run, mode):
    from trnsim.timing import schedule
    os.environ["TRNSIM_COMPILED"] = mode
    try:
        return schedule(run.program, run.chip)
    finally:
        del os.environ["TRNSIM_COMPILED"]


def measure(run, reps: int) -> tuple[dict, bool]:
    """({stage: CPU seconds}, whether the three schedulers' timelines are identical)."""
    from trnsim.chips import load_chip
    from trnsim.timing import access_columns, columns, compiled, compiled_deps
    from trnsim.timing.scheduler import _Scheduler

    from .scheduler_oracle import _timeline_rec

    chip = load_chip(run.chip)
    fresh = lambda: _Scheduler(run.program, chip, run.program.issue, {})  # noqa: E731
    res = {}
    res["Python scheduler"], ref = _best(lambda: _schedule(run, "0"), reps)
    res["  of it _collect (deps)"], _ = _best(lambda: _collect_all(fresh()), reps)
    res["stage 1: deps (_collect) + rows"], (s, col) = _best(
        lambda: (lambda s: (s, columns.build_columns(s)))(fresh()), reps)
    res["stage 3: deps compiled"], _ = _best(
        lambda: compiled_deps.collect(fresh(), {}), reps)
    res["  access columns (made once per program)"], _ = _best(
        lambda: access_columns.build(run.program.instructions), reps)
    res["rows (pricing)"], _ = _best(
        lambda: columns._price(s, columns.Columns(len(s.instrs))), reps)
    res["stage 2: core (with its arrays)"], out = _best(
        lambda: compiled.run_core(s, col), reps)
    res["Events + Timeline"], _ = _best(lambda: compiled.build_timeline(s, col, out), reps)
    res["compiled, stages 1+2 (TRNSIM_COMPILED=1)"], a = _best(
        lambda: _schedule(run, "1"), reps)
    res["compiled, stages 3+2 (TRNSIM_COMPILED=2)"], b = _best(
        lambda: _schedule(run, "2"), reps)
    same = _timeline_rec(ref) == _timeline_rec(a) == _timeline_rec(b)
    return res, same


def _collect_all(sched):
    for i in sched.order:
        sched._collect(sched.instrs[i])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kernels", nargs="*", default=["step1", "strided", "ko2"])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cases = _cases()
    for key in args.kernels:
        label, record = cases[key]
        run = record()
        n = len(run.program)
        res, same = measure(run, args.reps)
        print(f"{label}: {n} instructions, timelines identical: {same}")
        for stage, t in res.items():
            print(f"  {stage:44s} {t * 1e6 / n:7.2f} us/instr {n / t:11,.0f} instr/s")


if __name__ == "__main__":
    main()
