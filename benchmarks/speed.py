"""How fast a timing-only profile is, stage by stage: recording the instructions (with
loop expansion, trnsim/machine/expand.py, and without: TRNSIM_EXPAND=0), the compiler
model (hoist, allocate, list-schedule) and the timing scheduler, in instructions per CPU
second, on loop-dominated kernels and on a generated kernel with strided stores.

    python -m benchmarks.speed [--reps N]

Each figure is the best of `reps` runs (CPU time: the machine is shared).
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

    f32 = np.float32
    bf16 = ml_dtypes.bfloat16
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    return [
        ("matmul tutorial step 1, tiled (trn1, bf16, K=8192 M=1024 N=4096)",
         lambda: run_legacy(tiled, (np.zeros((8192, 1024), bf16), np.zeros((8192, 4096), bf16)),
                            {}, chip="trn1", numerics=False)[1]),
        ("kernel-optimization step 2, hoisted loads (trn2, fp32, K=4096 M=1024 N=4096)",
         lambda: trnsim.run_kernel(fb.ko_hoisted, (np.zeros((4096, 1024), f32),
                                                   np.zeros((4096, 4096), f32)),
                                   chip="trn2", numerics=False)[1]),
        ("generated strided column stores (trn2, fp32, 128 x 65,536)",
         lambda: trnsim.run_kernel(fb.strided_stores, (np.zeros((128, 8 * 8192), f32),),
                                   chip="trn2", numerics=False)[1]),
    ]


def _timed(go):
    """(Run, record CPU s, compile CPU s) of go() -> Run (the compile step timed apart)."""
    from trnsim.machine.runtime import Run
    real = Run.compile
    spent = [0.0]

    def timed_compile(self):
        c = time.process_time()
        real(self)
        spent[0] += time.process_time() - c
    Run.compile = timed_compile
    try:
        c0 = time.process_time()
        run = go()
        total = time.process_time() - c0
    finally:
        Run.compile = real
    return run, total - spent[0], spent[0]


def measure(label, go, reps: int = 1) -> dict:
    from trnsim.machine import expand
    from trnsim.timing import schedule
    row = {"kernel": label}
    for flag in ("0", "1"):
        old = os.environ.get(expand.ENV)
        os.environ[expand.ENV] = flag
        try:
            best = None
            for _ in range(reps):
                run, rec, comp = _timed(go)
                if best is None or rec < best[1]:
                    best = (run, rec, comp)
        finally:
            if old is None:
                del os.environ[expand.ENV]
            else:
                os.environ[expand.ENV] = old
        run, rec, comp = best
        n = len(run.program)
        if flag == "0":
            row["record_full_s"] = rec
            continue
        c = time.process_time()
        schedule(run.program, run.chip)
        sched = time.process_time() - c
        st = getattr(run, "expansion", None)
        row.update(instructions=n, expanded=st.instructions if st else 0, record_s=rec,
                   compile_s=comp, schedule_s=sched)
    return row


def job_speed(reps: int = 1) -> list[dict]:
    return [measure(label, go, reps) for label, go in _cases()]


def rate(n, s) -> str:
    return f"{n / s:,.0f}/s" if s > 0 else "-"


def render(rows: list[dict]) -> str:
    lines = ["| Kernel | Instructions | Expanded | Record (expansion off) | Record | "
             "Compiler model | Scheduler | Whole profile |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = r["instructions"]
        whole = r["record_s"] + r["compile_s"] + r["schedule_s"]
        lines.append(f"| {r['kernel']} | {n:,} | {100 * r['expanded'] / n:.0f}% | "
                     f"{rate(n, r['record_full_s'])} | {rate(n, r['record_s'])} | "
                     f"{rate(n, r['compile_s'])} | {rate(n, r['schedule_s'])} | "
                     f"{rate(n, whole)} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args(argv)
    rows = job_speed(args.reps)
    print(render(rows))
    return rows


if __name__ == "__main__":
    main()
