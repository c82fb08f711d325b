"""What the compiled paths (trnsim/machine/compiled.py) buy, stage by stage: the compiler
model (hoist, allocation, the list scheduler's dependency pass and issue loop) and the
timing scheduler (dependency maps, pricing, core, Timeline), in microseconds of CPU per
instruction with the Python passes (TRNSIM_COMPILED=0) and the compiled ones
(TRNSIM_COMPILED=1), on the kernels of benchmarks/speed.py. Each figure is the best of
`reps` runs with the garbage collector paused, as compile_program and schedule pause it.
Each stage's result is checked to be the same both ways: the allocated program and its
memory plan, the list scheduler's edges and issue order, the compiled record, the
timeline field by field. Needs numba on the path for the compiled column.

    python -m benchmarks.compiled_speed [step1 ko2 strided] [--reps N]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from .speed import CASES, environment  # noqa: E402

# (stage, label); a stage only one way is "-" the other way
STAGES = (
    ("hoist", "compiler model: hoist (no compiled form)"),
    ("allocation", "  allocation (compiled: + the access columns)"),
    ("list_deps", "  list scheduler: dependency pass"),
    ("access_columns", "    of it, access columns not handed over"),
    ("list_setup", "  list scheduler: successors, estimates"),
    ("issue_loop", "  list scheduler: issue loop"),
    ("compile_program", "  whole (compile_program)"),
    ("timing_setup", "timing scheduler: set-up (_Scheduler)"),
    ("timing_deps", "  dependency maps"),
    ("pricing", "  pricing (columns)"),
    ("core", "  core"),
    ("timeline", "  Timeline (of the core's arrays)"),
    ("timing_run", "  run (maps, pricing, core, Events at once)"),
    ("schedule", "  whole (schedule)"),
    ("events", "  Events, made when first read"),
)
NOTE = ("Python dependency maps: `_Scheduler._collect` alone (the run does it too). "
        "The whole rows are measured on their own (the best of each part need not add up "
        "to the best of the whole).")


def compiled_mode(flag: str):
    """TRNSIM_COMPILED set to `flag` ("0" or "1") while the block runs."""
    from trnsim.machine import compiled
    return environment(compiled.ENV, flag)


class _Laps:
    """CPU seconds per named lap of one run; `best` keeps each lap's minimum over runs."""

    def __init__(self):
        self.best: dict = {}
        self.now: dict = {}
        self._t = 0.0

    def start(self):
        self.now = {}
        self._t = time.process_time()

    def lap(self, name):
        t = time.process_time()
        self.now[name] = self.now.get(name, 0.0) + t - self._t
        self._t = t

    def add(self, name, seconds):
        self.now[name] = self.now.get(name, 0.0) + seconds

    def keep(self):
        for k, v in self.now.items():
            self.best[k] = min(self.best.get(k, float("inf")), v)


def _copy(p):
    """A program the passes may change (instructions copied, not their accesses), its
    blocks of copies (machine/record.py CopiedBlock) noted on the copied instructions
    as the record notes them, so that the allocation makes their access columns as it
    does in a profile."""
    from dataclasses import replace
    from trnsim.machine.record import Program
    instrs = [copy.copy(i) for i in p.instructions]
    out = Program(p.chip, p.lnc, instrs, p.allocations, None, list(p.fences))
    out.copied = [replace(b, first=instrs[b.start], last=instrs[b.stop - 1],
                          template=replace(b.template, first=instrs[b.template.start]))
                  for b in p.copied]
    return out


def recorded(go):
    """The program go() records, before the compiler model, and its chip."""
    from trnsim.machine.runtime import Run
    real, seen = Run.compile, []

    def keep(self):
        seen.append(_copy(self.program))
        real(self)
    Run.compile = keep
    try:
        run = go()
    finally:
        Run.compile = real
    return seen[0], run.chip


def _compiler_stages(raw, reps, laps) -> tuple:
    """Hoist, allocation and the list scheduler one way (the mode set by the caller);
    (allocated program, list edges, issue order, compiled program)."""
    from trnsim.compiler import allocate, compile_program, hoist_invariant_loads
    from trnsim.compiler import schedule as cs
    from trnsim.machine.gc_pause import gc_paused
    from trnsim.timing import access_columns as ac

    real_deps, real_build = cs._ListScheduler._dependencies, ac.build
    edges: list = []

    def timed_deps(self):
        c = time.process_time()
        out = real_deps(self)
        laps.add("list_deps", time.process_time() - c)
        edges[:] = [out, list(self.npred)]
        return out

    def timed_build(instrs):
        c = time.process_time()
        out = real_build(instrs)
        laps.add("access_columns", time.process_time() - c)
        return out

    for _ in range(reps):
        src = _copy(raw)
        with gc_paused():
            laps.start()
            hoisted = hoist_invariant_loads(src)
            laps.lap("hoist")
            allocated = allocate(hoisted)
            laps.lap("allocation")
            cs._ListScheduler._dependencies, ac.build = timed_deps, timed_build
            try:
                ls = cs._ListScheduler(allocated, allocated.chip,
                                       cs.DEFAULT_HEURISTIC, cs.DEFAULT_WINDOW)
            finally:
                cs._ListScheduler._dependencies, ac.build = real_deps, real_build
            laps.lap("list_setup")
            issue = ls.run()
            laps.lap("issue_loop")
        laps.now["list_setup"] -= laps.now["list_deps"]
        laps.keep()
    for _ in range(reps):
        src = _copy(raw)
        c = time.process_time()
        whole = compile_program(src)
        laps.best["compile_program"] = min(laps.best.get("compile_program", float("inf")),
                                           time.process_time() - c)
    allocated.issue = issue
    return allocated, edges, issue, whole


@contextlib.contextmanager
def _fallbacks(fell: set):
    """Notes in `fell` each compiled pass that declined the program (the Python pass
    then ran in its place)."""
    from trnsim.compiler import compiled_allocation as ca
    from trnsim.compiler import compiled_schedule as csch
    from trnsim.compiler import schedule as cs
    real = (ca.allocate_compiled, csch.issue_order, cs._ListScheduler._compiled_dependencies)

    def watch(f, what):
        def g(*a):
            out = f(*a)
            if out is None:
                fell.add(what)
            return out
        return g
    ca.allocate_compiled = watch(real[0], "allocation")
    csch.issue_order = watch(real[1], "issue loop")
    cs._ListScheduler._compiled_dependencies = watch(real[2], "list dependency pass")
    try:
        yield
    finally:
        ca.allocate_compiled, csch.issue_order, cs._ListScheduler._compiled_dependencies = real


def _timing_stages(program, chip, reps, laps, compiled: bool):
    """The timing scheduler's stages one way; its Timeline."""
    from trnsim.machine.gc_pause import gc_paused
    from trnsim.timing import columns, schedule
    from trnsim.timing import compiled as tc
    from trnsim.timing.access_columns import access_columns
    from trnsim.timing.compiled_deps import collect
    from trnsim.timing.scheduler import _Scheduler

    if compiled:
        access_columns(program)  # as the list scheduler leaves them
    tl = None
    for _ in range(reps):
        with gc_paused():
            laps.start()
            s = _Scheduler(program, chip, program.issue, {})
            laps.lap("timing_setup")
            if compiled:
                col = columns.Columns(len(s.instrs))
                col.order = np.asarray(s.order, dtype=np.int64)
                col.dptr, col.dprod, col.dkind, col.dspace = collect(s, col.spaces)
                laps.lap("timing_deps")
                columns._price(s, col)
                laps.lap("pricing")
                names, sem, lat, tdma = columns.tracks(s)
                out = tc.run_core(s, col, sem, lat, tdma)
                laps.lap("core")
                tl = tc.build_timeline(s, col, out, names)
                laps.lap("timeline")
                tl.events  # noqa: B018 (made now)
                laps.lap("events")
            else:
                tl = s.run()
                laps.lap("timing_run")
                fresh = _Scheduler(program, chip, program.issue, {})
                c = time.process_time()
                for i in fresh.order:
                    fresh._collect(fresh.instrs[i])
                laps.add("timing_deps", time.process_time() - c)
        laps.keep()
    for _ in range(reps):
        c = time.process_time()
        schedule(program, chip)
        laps.best["schedule"] = min(laps.best.get("schedule", float("inf")),
                                    time.process_time() - c)
    return tl


def measure(go, reps: int = 3) -> dict:
    """{"instructions", "python": {stage: CPU s}, "compiled": {...}, "same": {what: bool}}
    for the kernel go() records."""
    from trnsim.chips import load_chip

    from .scheduler_oracle import _issue_rec, _program_digest, _timeline_rec

    from trnsim.timing.columns import supported
    from trnsim.timing.scheduler import _Scheduler

    raw, chip = recorded(go)
    chip = load_chip(chip)
    out, got, fell = {}, {}, set()
    for name, flag in (("python", "0"), ("compiled", "1")):
        laps = _Laps()
        with compiled_mode(flag), (_fallbacks(fell) if flag == "1" else
                                   contextlib.nullcontext()):
            allocated, edges, issue, whole = _compiler_stages(raw, reps, laps)
            if flag == "1" and not supported(_Scheduler(allocated, chip, issue, {})):
                fell.add("timing scheduler")
            tl = _timing_stages(allocated, chip, reps, laps, flag == "1"
                                and "timing scheduler" not in fell)
        out[name] = laps.best
        got[name] = (allocated, edges, issue, whole, tl)
    (pa, pe, pi, pw, pt), (ca, ce, ci, cw, ct) = got["python"], got["compiled"]
    same = {"allocated program and memory plan": _same_allocation(pa, ca),
            "list edges": _edge_sets(*pe) == _edge_sets(*ce),
            "issue order": _issue_rec(pi) == _issue_rec(ci),
            "compiled record": _program_digest(pw) == _program_digest(cw),
            "timeline": _timeline_rec(pt) == _timeline_rec(ct)}
    return {"instructions": len(allocated.instructions), **out, "same": same,
            "python_in_compiled": sorted(fell)}


def _same_allocation(a, b) -> bool:
    pa, pb = a.memory, b.memory
    return ([(i.index, i.reads, i.writes, i.attrs) for i in a.instructions]
            == [(i.index, i.reads, i.writes, i.attrs) for i in b.instructions]
            and a.fences == b.fences and pa.placements == pb.placements
            and pa.spills == pb.spills and pa.peak == pb.peak
            and {k: list(v) for k, v in pa.usage.items()}
            == {k: list(v) for k, v in pb.usage.items()})


def _edge_sets(edges, npred):
    """Per consumer, its set of (producer, kind) (the two passes list them in other
    orders)."""
    prods, kinds = list(edges[0]), list(edges[1])
    out, k = [], 0
    for c in npred:
        out.append(set(zip(prods[k:k + c], kinds[k:k + c])))
        k += c
    return out


def _small_profiles():
    """The kernels of benchmarks/speed.py at small shapes, recorded and scheduled."""
    import ml_dtypes

    import trnsim
    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy
    from trnsim.timing import schedule

    from . import fidelity as fb

    f32, bf16 = np.float32, ml_dtypes.bfloat16
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    runs = [run_legacy(tiled, (np.zeros((1024, 256), bf16), np.zeros((1024, 1024), bf16)),
                       {}, chip="trn1", numerics=False)[1],
            trnsim.run_kernel(fb.ko_hoisted, (np.zeros((512, 256), f32),
                                              np.zeros((512, 1024), f32)),
                              chip="trn2", numerics=False)[1],
            trnsim.run_kernel(fb.strided_stores, (np.zeros((128, 8 * 256), f32),),
                              chip="trn2", numerics=False)[1]]
    for run in runs:
        schedule(run.program, run.chip)


def load_compiled() -> float:
    """Loads numba's compiled code for the compiled paths (compiles it where its cache
    is cold) by profiling small kernels with TRNSIM_COMPILED=1, so that figures taken
    after it are not the first profile's; the CPU seconds that took (0: no numba)."""
    from trnsim.machine import compiled
    if not compiled.numba_available():
        return 0.0
    c = time.process_time()
    with compiled_mode("1"):
        _small_profiles()
    return time.process_time() - c


def _first_profiles() -> dict:
    """In this (fresh) process: the CPU seconds of the small profiles the first time
    (numba imported and its code compiled or loaded) and the second."""
    first = load_compiled()
    return {"first_s": first, "again_s": load_compiled()}


def job_compile_cost() -> dict:
    """The compiled paths' cost on a fresh install and then: the first profiles of a
    process with an empty numba cache (cold: compiled), of a second process with that
    cache (warm: loaded), and those profiles again once loaded (CPU seconds); {} without
    numba."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from trnsim.machine import compiled
    if not compiled.numba_available():
        return {}
    root = Path(__file__).resolve().parent.parent
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for name in ("cold", "warm"):
            r = subprocess.run([sys.executable, "-m", "benchmarks.compiled_speed",
                                "--first-profiles"], cwd=root, env=env, check=True,
                               capture_output=True, text=True)
            out[name] = json.loads(r.stdout.strip().splitlines()[-1])
    return {"cold_s": out["cold"]["first_s"], "warm_s": out["warm"]["first_s"],
            "loaded_s": min(out["cold"]["again_s"], out["warm"]["again_s"])}


def render_compile_cost(c: dict) -> str:
    return (f"The compiled paths on a fresh install: the first profile of a process "
            f"(small tutorial-step, hoisted-matmul and strided-store kernels, "
            f"{c['loaded_s']:.2f} CPU-s once loaded) takes {c['cold_s']:.1f} CPU-s while "
            f"numba compiles them into its cache (once per install), then "
            f"{c['warm_s']:.1f} CPU-s in each later process, which loads them from it.")


def job_compiled_speed(keys=("step1", "ko2", "strided"), reps: int = 3) -> list[dict]:
    from trnsim.machine import compiled
    if not compiled.numba_available():
        return []  # (nothing to compare: the compiled column would be the Python passes)
    cases = CASES()
    return [{"kernel": cases[k][0], **measure(cases[k][1], reps)} for k in keys]


def render(rows: list[dict]) -> str:
    """A table per kernel (us of CPU per instruction)."""
    blocks = []
    for r in rows:
        n, py, co = r["instructions"], r["python"], r["compiled"]
        same = r["same"]
        verdict = ("identical both ways: " + ", ".join(same)) if all(same.values()) else \
            "DIFFERENT: " + ", ".join(k for k, ok in same.items() if not ok)
        head = f"{'stage (us per instruction)':46} {'Python':>8} {'compiled':>9} {'x':>6}"
        if r.get("python_in_compiled"):
            verdict += ("; the Python pass ran in the compiled column for: "
                        + ", ".join(r["python_in_compiled"]))
        lines = [f"{r['kernel']}: {n:,} instructions; {verdict}", head, "-" * len(head)]
        for key, label in STAGES:
            a, b = py.get(key), co.get(key)
            if a is None and b is None:
                continue
            cell = lambda t: f"{t * 1e6 / n:.2f}" if t is not None else "-"  # noqa: E731
            x = f"{a / b:.1f}x" if a and b else ""
            lines.append(f"{label:46} {cell(a):>8} {cell(b):>9} {x:>6}")
        total_py = py["compile_program"] + py["schedule"]
        total_co = co["compile_program"] + co["schedule"]
        lines.append(f"{'compiler model + timing scheduler':46} {total_py * 1e6 / n:8.2f} "
                     f"{total_co * 1e6 / n:9.2f} {total_py / total_co:5.1f}x")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n" + NOTE


def main(argv=None):
    from trnsim.machine import compiled
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kernels", nargs="*", default=["step1", "ko2", "strided"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--first-profiles", action="store_true",
                    help="(job_compile_cost's child) time this process's first profiles")
    ap.add_argument("--compile-cost", action="store_true",
                    help="only the cold compile and warm load of the compiled paths")
    args = ap.parse_args(argv)
    if args.first_profiles:
        import json
        print(json.dumps(_first_profiles()))
        return
    if not compiled.numba_available():
        raise SystemExit("numba is not installed: nothing to compare (pip install "
                         "'trnsim[fast]')")
    if args.compile_cost:
        print(render_compile_cost(job_compile_cost()))
        return
    load_compiled()
    print(render(job_compiled_speed(args.kernels, args.reps)))


if __name__ == "__main__":
    main()
