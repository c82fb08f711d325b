"""The list scheduler's dependency pass (trnsim/compiler/schedule.py `_dependencies`):
Python MemoryMaps against the compiled maps over the access columns
(trnsim/timing/compiled_deps.py `list_edges`, trnsim/timing/access_columns.py), in
microseconds of CPU per instruction (best of `reps`), with a check that the edges are
identical. Needs numba on the path.

    python -m benchmarks.list_deps_speed [step1 strided ko2] [--reps N]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .compiled_scheduler_speed import _best, _cases  # noqa: E402


def _bare(program):
    """A _ListScheduler with what _dependencies reads (the rest of __init__ left out)."""
    from trnsim.compiler.schedule import _ListScheduler, resource_of
    s = _ListScheduler.__new__(_ListScheduler)
    s.program, s.instrs, s._canon = program, program.instructions, {}
    s.res = [s._resource(r) for r in map(resource_of, s.instrs)]
    s.npred = [0] * len(s.instrs)
    return s


def _uncached(program):
    program.__dict__.pop("_access_columns", None)
    return program


def _order(program, mode):
    from trnsim.compiler.schedule import order_instructions
    os.environ["TRNSIM_COMPILED"] = mode
    try:
        return order_instructions(_uncached(program))
    finally:
        del os.environ["TRNSIM_COMPILED"]


def measure(program, reps: int) -> tuple[dict, bool]:
    """({stage: CPU seconds}, whether the two passes' edges are identical)."""
    from trnsim.timing import access_columns
    res = {}
    res["Python _dependencies"], py = _best(
        lambda: (lambda s: (s._python_dependencies(), s.npred))(_bare(program)), reps)
    res["access columns (made once per program)"], _ = _best(
        lambda: access_columns.build(program.instructions), reps)
    access_columns.access_columns(program)
    res["compiled _dependencies (columns made)"], got = _best(
        lambda: (lambda s: (s._compiled_dependencies(), s.npred))(_bare(program)), reps)
    res["compiled, with the columns"], _ = _best(
        lambda: _bare(_uncached(program))._compiled_dependencies(), reps)
    res["order_instructions, Python"], _ = _best(lambda: _order(program, "0"), reps)
    res["order_instructions, compiled (TRNSIM_COMPILED=2)"], _ = _best(
        lambda: _order(program, "2"), reps)
    same = _edge_sets(*py) == _edge_sets(*got)
    return res, same


def _edge_sets(edges, npred):
    """Per consumer, its set of (producer, kind)."""
    prods, kinds = edges[0].tolist(), edges[1].tolist()
    out, k = [], 0
    for c in npred:
        out.append(set(zip(prods[k:k + c], kinds[k:k + c])))
        k += c
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kernels", nargs="*", default=["step1", "strided", "ko2"])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cases = _cases()
    for key in args.kernels:
        label, record = cases[key]
        program = record().program
        n = len(program)
        res, same = measure(program, args.reps)
        print(f"{label}: {n} instructions, edges identical: {same}")
        for stage, t in res.items():
            print(f"  {stage:50s} {t * 1e6 / n:7.2f} us/instr")


if __name__ == "__main__":
    main()
