"""The allocation pass (trnsim/compiler/allocation.py) against its compiled form
(trnsim/compiler/compiled_allocation.py), in microseconds of CPU per instruction (best
of `reps`, the garbage collector paused as compile_program pauses it), with a check
that programs and memory plans are identical. Needs numba on the path.

    python -m benchmarks.compiled_allocation_speed [step1 strided ko2] [--reps N]
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _allocation_input(go):
    """The program compile_program hands to `allocate` when go() runs a kernel."""
    import trnsim.compiler as compiler
    from trnsim.compiler import allocation
    seen = []
    real = compiler.allocate

    def grab(program):
        seen.append(_copy(program))
        return allocation._Allocator(program).run()
    compiler.allocate = grab
    try:
        go()
    finally:
        compiler.allocate = real
    return seen[0]


def _copy(p):
    from trnsim.machine.record import Program
    return Program(p.chip, p.lnc, [copy.copy(i) for i in p.instructions], p.allocations,
                   None, list(p.fences))


def _best(f, program, reps):
    from trnsim.machine.gc_pause import gc_paused
    best, out = float("inf"), None
    for _ in range(reps):
        fresh = _copy(program)
        c = time.process_time()
        with gc_paused():
            out = f(fresh)
        best = min(best, time.process_time() - c)
    return best, out


def _same(a, b) -> bool:
    pa, pb = a.memory, b.memory
    return ([(i.index, i.reads, i.writes, i.attrs) for i in a.instructions]
            == [(i.index, i.reads, i.writes, i.attrs) for i in b.instructions]
            and a.fences == b.fences and pa.placements == pb.placements
            and pa.spills == pb.spills and pa.peak == pb.peak
            and {k: list(v) for k, v in pa.usage.items()}
            == {k: list(v) for k, v in pb.usage.items()})


def main(argv=None) -> None:
    from trnsim.compiler import allocation, compiled_allocation

    from .compiled_scheduler_speed import _cases

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=["step1", "strided", "ko2"])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    cases = _cases()
    for name in args.cases:
        label, go = cases[name]
        program = _allocation_input(go)
        n = len(program.instructions)
        compiled_allocation.allocate_compiled(_copy(program))  # numba: load or compile
        py, want = _best(lambda p: allocation._Allocator(p).run(), program, args.reps)
        co, got = _best(compiled_allocation.allocate_compiled, program, args.reps)
        verdict = "fell back" if got is None else \
            ("identical" if _same(want, got) else "DIFFERENT")
        print(f"{label} ({n} instructions): Python {py / n * 1e6:.2f} us/instr, "
              f"compiled {co / n * 1e6:.2f} us/instr ({py / co:.1f}x), {verdict}")


if __name__ == "__main__":
    main()
