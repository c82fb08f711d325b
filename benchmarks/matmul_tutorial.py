"""The four kernels of the NKI matmul tutorial (examples/legacy/matmul_tutorial.py) at
the tutorial's full shape, [4096, 8192] @ [8192, 8192] in bf16 (lhsT [8192, 4096],
rhs [8192, 8192]), on trn1 with numerics off: only the instruction record is built.

Per variant it prints the instructions per engine, the DMA count and bytes, the HBM
bytes read (and their arithmetic intensity, matmul flops per HBM byte read), and the
simulator's wall time and instructions per second. (Latencies come from the timing
model, a later issue.)

    python -m benchmarks.matmul_tutorial [--chip trn1] [--variants tiled,hoisted,...]
                                         [--shape K M N]

Host memory: the inputs are np.zeros arrays (64 + 128 MiB), aliased by the simulated
HBM; the output is one 64 MiB HBM buffer per run. On-chip arenas are fixed-size.
At the full shape the four variants record 100k / 69k / 53k / 44k instructions; the
whole run takes about 4 minutes on one CPU core (roughly 1,000 instructions/s) and
peaks at about 0.75 GB resident.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import ml_dtypes
import numpy as np

from trnsim.legacy import jit as lj
from trnsim.examples import load_example

FULL_SHAPE = (8192, 4096, 8192)  # K, M, N
ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync", "dma")


def load_tutorial():
    return load_example("legacy/matmul_tutorial")


def record_stats(program) -> dict:
    """Counts and bytes from an instruction record."""
    engines = Counter(i.engine for i in program)
    opcodes = Counter((i.engine, i.opcode) for i in program)
    dmas = [i for i in program if i.engine == "dma"]
    hbm_read = sum(a.bytes for i in program for a in i.reads if a.space == "hbm")
    hbm_written = sum(a.bytes for i in program for a in i.writes if a.space == "hbm")
    return {
        "instructions": len(program),
        "engines": dict(engines),
        "opcodes": dict(opcodes),
        "dma_count": len(dmas),
        "dma_bytes": sum(i.bytes_moved for i in dmas),
        "hbm_bytes_read": hbm_read,
        "hbm_bytes_written": hbm_written,
    }


def run_variant(kernel, lhsT, rhs, chip="trn1", **kwargs) -> dict:
    t0 = time.perf_counter()
    _, run = lj.run_legacy(kernel.fn, (lhsT, rhs), kwargs, chip=chip, numerics=False)
    wall = time.perf_counter() - t0
    stats = record_stats(run.program)
    core = run.cores[0]
    stats["sbuf_peak_bytes"] = getattr(core.sbuf, "peak_bytes", None)  # per partition
    stats["psum_peak_bytes"] = getattr(core.psum, "peak_bytes", None)
    stats["wall_s"] = wall
    stats["instr_per_s"] = stats["instructions"] / wall if wall > 0 else float("inf")
    return stats


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _kib(n) -> str:
    return "?" if n is None else f"{n / 1024:,.1f} KiB"


def report(name: str, s: dict, flops: int) -> str:
    per_engine = ", ".join(f"{e} {s['engines'][e]:,}" for e in ENGINES if e in s["engines"])
    ops = ", ".join(f"{op} {n:,}" for (_, op), n in sorted(s["opcodes"].items()))
    return "\n".join([
        f"{name}",
        f"  instructions   {s['instructions']:,} ({per_engine})",
        f"  opcodes        {ops}",
        f"  DMA            {s['dma_count']:,} transfers, {_mib(s['dma_bytes'])}",
        f"  HBM read       {_mib(s['hbm_bytes_read'])} "
        f"({flops / max(s['hbm_bytes_read'], 1):,.0f} flop/byte); "
        f"written {_mib(s['hbm_bytes_written'])}",
        f"  on-chip peak   SBUF {_kib(s['sbuf_peak_bytes'])}, PSUM "
        f"{_kib(s['psum_peak_bytes'])} per partition",
        f"  simulator      {s['wall_s']:.1f} s, {s['instr_per_s']:,.0f} instructions/s",
    ])


def main(argv=None) -> dict:
    tut = load_tutorial()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chip", default="trn1")
    ap.add_argument("--variants", default=",".join(tut.VARIANTS),
                    help="comma-separated subset of " + ", ".join(tut.VARIANTS))
    ap.add_argument("--shape", nargs=3, type=int, metavar=("K", "M", "N"), default=FULL_SHAPE)
    args = ap.parse_args(argv)
    K, M, N = args.shape
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in tut.VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(tut.VARIANTS)}")

    lhsT = np.zeros((K, M), dtype=ml_dtypes.bfloat16)
    rhs = np.zeros((K, N), dtype=ml_dtypes.bfloat16)
    flops = 2 * M * N * K
    print(f"NKI matmul tutorial on {args.chip}, numerics off: lhsT [{K}, {M}] @ rhs "
          f"[{K}, {N}] bf16 -> [{M}, {N}] bf16 ({flops / 1e9:,.1f} GFLOP)\n")
    t0 = time.perf_counter()
    results = {}
    for name in names:
        s = run_variant(tut.VARIANTS[name], lhsT, rhs, chip=args.chip)
        results[name] = s
        print(report(name, s, flops), flush=True)
    total = time.perf_counter() - t0
    print(f"\ntotal simulator time {total:.1f} s")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
