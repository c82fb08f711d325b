"""`make bench`: the timing-model calibration (benchmarks/fidelity.py) at the published
shapes, written to docs/fidelity.md; then (not with --quick) the kernel library at LLM
shapes (benchmarks/kernels.py), written to docs/kernels.md, whole-model prediction
on the Qwen3 attention swap (benchmarks/models.py), written to docs/models.md, and the
collectives (benchmarks/collectives.py: all-reduce / all-gather on each fabric, nccom-test;
benchmarks/moe.py: MoE all-to-all), written into docs/collectives.md.

    python -m benchmarks.run [--quick] [--jobs N] [--out docs/fidelity.md]
"""
from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from . import fidelity, kernels

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes")
    ap.add_argument("--out", default=str(ROOT / "docs" / "fidelity.md"))
    args = ap.parse_args(argv)
    res = fidelity.run_all(quick=args.quick, jobs=args.jobs,
                           log=lambda s: print(s, flush=True))
    text = fidelity.render(res)
    pathlib.Path(args.out).write_text(text)
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")
    if not args.quick:
        out = ROOT / "docs" / "kernels.md"
        out.write_text(kernels.render(kernels.run(log=lambda s: print(s, flush=True))))
        print(f"wrote {out}")
        # a fresh process: its wall time is reported, and this one holds the kernel
        # profiles above (GBs, which slow the collector down)
        subprocess.run([sys.executable, "-m", "benchmarks.models"], cwd=ROOT, check=True)
        for module in ("benchmarks.collectives", "benchmarks.moe"):  # fresh processes too
            subprocess.run([sys.executable, "-m", module], cwd=ROOT, check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
