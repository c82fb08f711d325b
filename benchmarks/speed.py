"""How fast a timing-only profile is, stage by stage: recording the instructions (with
loop expansion, trnsim/machine/expand.py, and without: TRNSIM_EXPAND=0), the compiler
model (hoist, allocate, list-schedule) and the timing scheduler, with the Python passes
(TRNSIM_COMPILED=0) and as by default (the compiled paths of trnsim/machine/compiled.py
where numba is installed), in instructions per CPU second, on loop-dominated kernels
(matmul tutorial steps, causal flash attention) and on a generated kernel with strided
stores. benchmarks/compiled_speed.py splits the
compiler model and the scheduler further.

    python -m benchmarks.speed [--reps N]

Each figure is the best of `reps` runs (CPU time: the machine is shared), numba's
compiled code loaded beforehand.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402


def CASES() -> dict:
    """{key: (label, go)}: go() records the kernel (numerics off) and returns its Run."""
    import trnsim
    from trnsim.examples import load_example
    from trnsim.kernels.attention import flash_attention_fwd
    from trnsim.legacy.jit import run_legacy

    from . import fidelity as fb

    f32 = np.float32
    bf16 = ml_dtypes.bfloat16
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    return {
        "step1": ("matmul tutorial step 1, tiled (trn1, bf16, K=8192 M=1024 N=4096)",
                  lambda: run_legacy(tiled, (np.zeros((8192, 1024), bf16),
                                             np.zeros((8192, 4096), bf16)),
                                     {}, chip="trn1", numerics=False)[1]),
        "ko2": ("kernel-optimization step 2, hoisted loads (trn2, fp32, K=4096 M=1024 N=4096)",
                lambda: trnsim.run_kernel(fb.ko_hoisted, (np.zeros((4096, 1024), f32),
                                                          np.zeros((4096, 4096), f32)),
                                          chip="trn2", numerics=False)[1]),
        "strided": ("generated strided column stores (trn2, fp32, 128 x 65,536)",
                    lambda: trnsim.run_kernel(fb.strided_stores,
                                              (np.zeros((128, 8 * 8192), f32),),
                                              chip="trn2", numerics=False)[1]),
        "flash": ("flash attention fwd, causal (trn2, bf16, S=8192 d=128)",
                  lambda: trnsim.run_kernel(flash_attention_fwd, (), {
                      "q": np.zeros((1, 1, 128, 8192), bf16),
                      "k": np.zeros((1, 1, 128, 8192), bf16),
                      "v": np.zeros((1, 1, 8192, 128), bf16)},
                      chip="trn2", numerics=False)[1]),
    }


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


@contextlib.contextmanager
def environment(name: str, value):
    """Environment variable `name` set to `value` (None: unset) while the block runs."""
    old = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if old is not None:
            os.environ[name] = old


def measure(label, go, reps: int = 1) -> dict:
    """CPU seconds of recording with loop expansion off (record_full_s) and on
    (record_s), and of the compiler model and the scheduler with the Python passes
    (py_compile_s, py_schedule_s: TRNSIM_COMPILED=0) and as by default (compile_s,
    schedule_s: the compiled paths where numba is installed; `compiled` says whether
    they ran), and of the profile's summary and insights read after that (report_s,
    by default). Each the best of `reps` runs."""
    from trnsim.machine import compiled, expand
    from trnsim.profile.profile import Profile
    from trnsim.timing import schedule
    row = {"kernel": label}
    with environment(expand.ENV, "0"):
        row["record_full_s"] = min(_timed(go)[1] for _ in range(reps))
    record = []
    for prefix, flag in (("py_", "0"), ("", None)):
        comp = sched = report = float("inf")
        with environment(compiled.ENV, flag):
            for _ in range(reps):
                run, rec, c = _timed(go)
                record.append(rec)
                comp = min(comp, c)
                c = time.process_time()
                timeline = schedule(run.program, run.chip)
                sched = min(sched, time.process_time() - c)
                if flag is None:
                    c = time.process_time()
                    p = Profile(run.program, timeline, run=run)
                    p.summary, p.insights  # noqa: B018 - what is timed
                    report = min(report, time.process_time() - c)
            n = len(run.program)
            row[prefix + "compile_s"], row[prefix + "schedule_s"] = comp, sched
            if flag is None:
                row["compiled"], row["report_s"] = compiled.wanted(n), report
    st = getattr(run, "expansion", None)
    row.update(instructions=n, expanded=st.instructions if st else 0, record_s=min(record))
    return row


def job_speed(reps: int = 1) -> list[dict]:
    from .compiled_speed import load_compiled
    load_compiled()  # (not the first kernel's figures: numba's load, or its compile)
    return [measure(label, go, reps) for label, go in CASES().values()]


def rate(n, s) -> str:
    return f"{n / s:,.0f}/s" if s > 0 else "-"


def _both(n, py_s, s) -> str:
    return f"{rate(n, py_s)} -> {rate(n, s)} ({py_s / s:.1f}x)" if s > 0 else "-"


def render(rows: list[dict]) -> str:
    lines = ["| Kernel | Instructions | Expanded | Record (expansion off) | Record | "
             "Compiler model | Scheduler | Whole profile | Summary + insights |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = r["instructions"]
        whole = r["record_s"] + r["compile_s"] + r["schedule_s"]
        py_whole = r["record_s"] + r["py_compile_s"] + r["py_schedule_s"]
        lines.append(f"| {r['kernel']} | {n:,} | {100 * r['expanded'] / n:.0f}% | "
                     f"{rate(n, r['record_full_s'])} | {rate(n, r['record_s'])} | "
                     f"{_both(n, r['py_compile_s'], r['compile_s'])} | "
                     f"{_both(n, r['py_schedule_s'], r['schedule_s'])} | "
                     f"{_both(n, py_whole, whole)} | "
                     f"{rate(n, r.get('report_s', 0.0))} |")
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
