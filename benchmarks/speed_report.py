"""Section 4 of docs/fidelity.md: the simulator's speed and memory against the targets of
the speed issue, from the jobs of benchmarks/speed.py, compiled_speed.py,
scheduler_speed.py, numerics_speed.py and memory.py (each also runnable alone) and the
full-shape Trn1 calibration runs of section 1. The target table also shows the figures
of the docs/fidelity.md it replaces."""
from __future__ import annotations

import pathlib
import re

from . import compiled_speed, memory, numerics_speed, scheduler_speed, speed

PREVIOUS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "fidelity.md"

SPEED_JOBS = {  # the suites fidelity.SPEED_SUITES names
    "speed": lambda: speed.job_speed(reps=3),
    "compiled_speed": lambda: compiled_speed.job_compiled_speed(reps=2),
    "compile_cost": compiled_speed.job_compile_cost,
    "scheduler_speed": lambda: scheduler_speed.job_scheduler_speed(reps=1),
    "numerics_speed": lambda: numerics_speed.job_numerics_speed(reps=3,
                                                                modes=("exact", "fp32")),
    "memory": memory.job_memory,
}

TIMING_RSS_GOAL = 1.5  # peak RSS a timing-only run adds, per input byte

# The issue's own figures (2-core machine, before this work), for the "then" column.
THEN = {"loop": "2.2k-4.2k/s", "strided": "74/s", "scheduler": "14k-19k/s",
        "calibration": "~525k instructions at ~3.5k/s: ~150 CPU-s",
        "numerics": "~4-5x (1.2 ms vs 0.27 ms per 128x128x512 nc_matmul)",
        "rss_timing": "~4x (1 GB for 256 MB of inputs)"}


def _rows(res, suite):
    return next((r["rows"] for r in res["results"] if r["suite"] == suite), [])


def _met(ok) -> str:
    return "yes" if ok else "**no**"


def _configuration(sizes) -> str:
    """What the rate rows measured (programs of `sizes` instructions): the default
    configuration, and what it ran."""
    from trnsim.machine import compiled
    if not compiled.numba_available():
        return ("Rates are of the default configuration, which here is the Python passes "
                "(numba is not installed: `pip install 'trnsim[fast]'` for the compiled "
                "paths).")
    import numba
    return ("Rates are of the default configuration: the compiled paths "
            "(`trnsim/machine/compiled.py`: allocation, list scheduler, dependency maps and "
            f"timing core in numba {numba.__version__}) for programs of "
            f"{compiled.MIN_INSTRUCTIONS:,} instructions or more"
            + (", which every rate row's programs have" if min(sizes, default=0)
               >= compiled.MIN_INSTRUCTIONS else
               ", the Python passes below (some rate rows' programs)")
            + "; numba's compiled code loaded before "
            "anything is timed (what compiling and loading it cost: the last row). The "
            "Python passes alone (`TRNSIM_COMPILED=0`): the stage tables below.")


def previous_figures(path=PREVIOUS) -> dict:
    """{target: its Now} from the target table of section 4 of `path` (the last
    `make bench`'s), targets keyed without their parentheses (instruction counts)."""
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return {}
    sec = text.split("## 4.", 1)[-1]
    if "| Target |" not in sec:
        return {}
    out = {}
    for line in sec.split("| Target |", 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[_target_key(cells[0])] = cells[2]
    return out


def _target_key(target: str) -> str:
    return re.sub(r"\s*\([^()]*\)", "", target).strip()


def speed_section(res: dict, trn1: dict) -> list[str]:
    stages = _rows(res, "speed")
    comp = _rows(res, "compiled_speed")
    cost = _rows(res, "compile_cost")
    sched = _rows(res, "scheduler_speed")
    num = _rows(res, "numerics_speed")
    mem = _rows(res, "memory")
    prev = previous_figures()
    rows, sizes = [], []

    def row(target, goal, now, then, met):
        rows.append(f"| {target} | {goal} | {now} | {prev.get(_target_key(target), '-')} | "
                    f"{then} | {met} |")
    cal = [trn1[v] for v in ("tiled", "hoisted", "block_free", "block_mnk") if v in trn1]
    if cal:
        n = sum(r["instructions"] for r in cal)
        cpu = sum(r["sim_cpu"] + r["sched_cpu"] for r in cal)
        sch = sum(r["sched_cpu"] for r in cal)
        sizes += [r["instructions"] for r in cal]
        row(f"Timing-only profile, matmul tutorial steps (trn1, {n:,} instructions)",
            ">= 1,000,000/s", f"{n / cpu:,.0f}/s", THEN["loop"], _met(n / cpu >= 1e6))
        row("Full Trn1 tutorial calibration profiled", "< 5 CPU-s", f"{cpu:,.1f} CPU-s",
            THEN["calibration"], _met(cpu < 5))
        row("Scheduler alone (same runs)", ">= 1,000,000/s", f"{n / sch:,.0f}/s",
            THEN["scheduler"], _met(n / sch >= 1e6))
    for key, what, goal, then in (("strided", "generated strided-store kernel", 2e5,
                                   THEN["strided"]),
                                  ("flash", "causal flash attention (trn2, bf16)", 1e6, "-")):
        r = next((r for r in stages if key in r["kernel"]), None)
        if r:
            n = r["instructions"]
            sizes.append(n)
            whole = n / (r["record_s"] + r["compile_s"] + r["schedule_s"])
            row(f"Timing-only profile, {what} ({n:,} instructions)", f">= {goal:,.0f}/s",
                f"{whole:,.0f}/s", then, _met(whole >= goal))
    for r in num:
        if r["case"] in ("ko_fp32", "softmax"):
            mode = f", matmul {r['matmul_mode']}" if r["case"] != "softmax" else ""
            then = THEN["numerics"] if r["case"] != "softmax" else "-"
            now = f"{r['ratio']:.1f}x"
            if r["matmul_mode"] == "exact" and "numpy64" in r:
                now += (f" ({r['ratio64']:.1f}x of its float64 arithmetic in NumPy, which "
                        f"alone takes {r['numpy64'] / r['numpy']:.1f}x)")
            row(f"Numerics on vs the same arithmetic in NumPy: {r['kernel']}{mode}", "<= 2x",
                now, then, _met(r["ratio"] <= 2))
    for r in mem:
        timing = r["mode"] == "timing only"
        used = (r["peak_rss_mib"] - r["baseline_rss_mib"]) * memory.MIB
        if timing:
            ratio, goal = used / r["input_bytes"], TIMING_RSS_GOAL
            what = "of the inputs"
        else:
            ratio, goal = used / (r["tensor_bytes"] + r["arena_bytes"]), 2.0
            what = "of the kernel's tensors + arenas"
        row(f"Peak RSS, {r['kernel']}, {r['mode']}", f"<= {goal}x {what}", f"{ratio:.2f}x",
            THEN["rss_timing"] if timing else "-", _met(ratio <= goal))
    if cost:
        row("First profile of a process, compiled paths: numba compiling them (fresh "
            "install) / loading them (cached)", "-",
            f"{cost['cold_s']:.1f} / {cost['warm_s']:.1f} CPU-s", "-", "-")
    L = ["## 4. Simulator speed and memory", "",
         "CPU time (process time; the machine is shared, so ratios from one run are what "
         "to read). Timing only = numerics off: the record, the compiler model and the "
         "timeline. Peak RSS ratios count what the run added to the interpreter and its "
         "imports (the baseline column below). The numerics rows are measured after the "
         "other suites, alone on the machine. " + _configuration(sizes) + " Before: the "
         "previous `make bench`'s figures.", "",
         "| Target | Goal | Now | Before | The issue measured | Met |",
         "|---|---:|---:|---:|---:|:---:|", *rows, ""]
    if cost:
        L += [compiled_speed.render_compile_cost(cost), ""]
    L += _why_missed(stages, mem, num)
    if stages:
        L += ["### Stage by stage (`benchmarks/speed.py`)", "",
              "Recording with loop expansion (`trnsim/machine/expand.py`) and without "
              "(`TRNSIM_EXPAND=0`); Expanded: the share of the record appended by "
              "expansion instead of running the kernel's Python. The compiler model, the "
              "scheduler and the whole profile: with the Python passes "
              "(`TRNSIM_COMPILED=0`) -> by default (the compiled paths). Summary + "
              "insights: reading the profile's `summary` and `insights` afterwards (by "
              "default; not in the whole profile's rate).", "",
              speed.render(stages), ""]
    if comp:
        L += ["### The compiled paths, stage by stage (`benchmarks/compiled_speed.py`)", "",
              "```", compiled_speed.render(comp), "```", ""]
    if sched:
        L += ["### The compiler model and the scheduler (`benchmarks/scheduler_speed.py`)",
              "", "```", scheduler_speed.render(sched), "```", ""]
    if num:
        L += ["### Numerics on (`benchmarks/numerics_speed.py`)", "",
              "ratio = numerics on / NumPy; num.ratio = (on - off) / NumPy, what computing "
              "values costs beyond the record; matmul mode: `TRNSIM_MATMUL_ACCUMULATION` "
              "(exact, the default: float64 sums rounded once; fp32: one fp32 GEMM).", "",
              "```", numerics_speed.render(num), "```", ""]
    if mem:
        L += ["### Peak memory (`benchmarks/memory.py`)", "", memory.table(mem), ""]
    L.append(f"`make bench` took {res['wall_s']:,.0f} s wall on {res['workers']} worker "
             "process(es).")
    L.append("")
    return L


def _why_missed(stages, mem, num) -> list[str]:
    """What the rate and timing-only memory targets are missed by, per instruction, and
    why the exact matmul mode cannot meet the numerics target."""
    loop = next((r for r in stages if "tutorial" in r["kernel"]), None)
    if loop is None:
        return []
    n = loop["instructions"]
    us = {k: 1e6 * loop[k + "_s"] / n for k in ("record", "compile", "schedule",
                                                  "py_compile", "py_schedule")}
    total = us["record"] + us["compile"] + us["schedule"]
    text = (f"Why the rate targets are missed: per instruction of the {loop['kernel']}, "
            f"recording costs {us['record']:.1f} us (loops expanded), the compiler model "
            f"{us['compile']:.1f} us and the scheduler {us['schedule']:.1f} us by default "
            f"({us['py_compile']:.1f} and {us['py_schedule']:.1f} us with the Python "
            f"passes): {total:.1f} us in all, where 1,000,000 instructions/s allows 1 us. "
            "The compiled cores take a fraction of that; the rest is Python around them: "
            "recording each instruction as objects, reading them into columns (the access "
            "columns, the timing scheduler's pricing) and the passes the compiled paths "
            "leave in Python (hoist, the list scheduler's graph and estimates): "
            "`benchmarks/compiled_speed.py` below, stage by stage.")
    flash = next((r for r in stages if "flash" in r["kernel"]), None)
    if flash:
        n, copied = flash["instructions"], flash["expanded"]
        text += (f" The {flash['kernel']} row is further off: loop expansion appends "
                 f"{100 * copied / n:.0f}% of its {n:,} instructions (its loop over pairs "
                 "of query tiles records a different body each iteration: the loop over "
                 "key chunks inside has a trip count that grows with the pair, and the "
                 "diagonal chunk's width cycles every four pairs), so the rest run through "
                 f"the kernel's Python: recording costs {1e6 * flash['record_s'] / n:.1f} "
                 "us per instruction. Each entry of the key-chunk loop runs at least its "
                 "last iteration for real (what it leaves in the kernel's variables, its "
                 "special cases and its accesses at the end of the range are then a full "
                 "run's), and each pair's own instructions run too; appending whole pairs "
                 "needs a model of the pair loop over its inner loop's trip count, which "
                 "loop expansion (one loop's model at a time) does not make.")
    missed = [r for r in mem if r["mode"] == "timing only" and
              (r["peak_rss_mib"] - r["baseline_rss_mib"]) * memory.MIB
              > TIMING_RSS_GOAL * r["input_bytes"]]
    if missed:
        per = [((r["peak_rss_mib"] - r["baseline_rss_mib"]) * memory.MIB - r["input_bytes"])
               / r["instructions"] for r in missed]
        span = f"{min(per):,.0f}" + (f"-{max(per):,.0f}" if len(per) > 1 else "")
        text += (" Where a timing-only run misses its memory target, it is for the same "
                 f"reason: beyond the inputs, it holds {span} bytes per instruction (the "
                 "record, the compiler model's placements, the compiled paths' columns, and "
                 "what Python's allocator cannot give back between them).")
    exact = next((r for r in num if r["case"] == "ko_fp32" and r["matmul_mode"] == "exact"
                  and "numpy64" in r), None)
    if exact:
        floor = exact["numpy64"] / exact["numpy"]
        text += (" The exact matmul mode (the default) is held to fp32 arithmetic in NumPy, "
                 "as the target is written, but sums each tile in float64 (one rounding, "
                 "independent of summation order): that arithmetic alone, written in NumPy, "
                 f"takes {floor:.1f}x the fp32 reference on this CPU, "
                 + ("so no exact-mode run can meet 2x here. " if floor >= 2 else
                    f"leaving {2 - floor:.1f}x of it for everything else. ") + "The fp32 mode "
                 "(`TRNSIM_MATMUL_ACCUMULATION=fp32`: one fp32 GEMM, equal to exact bit for "
                 "bit wherever every partial sum is an fp32 number; trnsim/isa/matmul.py) "
                 "is the fast path.")
    return [text, ""]
