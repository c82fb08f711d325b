"""`make demo`: profile the example NKI kernels on simulated Trn2 and Trn3.

Each kernel runs with its numerics checked against a NumPy reference; its instruction
record is scheduled by the timing model; the demo prints predicted latency and the key
summary metrics side by side for the two chips, the top insight, and writes each
profile's Perfetto trace and HTML report under out/demo/.
"""
from __future__ import annotations

import sys
from pathlib import Path

import ml_dtypes
import numpy as np

from .examples import load_example
from .machine.launch import run_kernel
from .profile.profile import Profile

OUT = Path("out/demo")
CHIPS = ("trn2", "trn3")


def _cases(rng):
    """(example, kernel attribute, inputs, chips): the flagship kernels at demo sizes."""
    bf16, f32 = ml_dtypes.bfloat16, np.float32
    x = rng.standard_normal((256, 1024)).astype(f32)
    w = rng.standard_normal((1024,)).astype(f32)
    b = rng.standard_normal((1024,)).astype(f32)
    yield ("tiled_matmul", "tiled_matmul_kernel",
           (rng.standard_normal((1024, 512)).astype(bf16),
            rng.standard_normal((1024, 2048)).astype(bf16)), CHIPS)
    yield "softmax", "softmax_kernel", (x,), CHIPS
    yield "rmsnorm", "rmsnorm_kernel", (x, w), CHIPS
    yield "layernorm", "layernorm_kernel", (x, w, b), CHIPS
    yield "pe_transpose", "pe_transpose_kernel", (x[:, :320].copy(),), CHIPS
    yield "tensor_add", "tensor_add_kernel", (x, x[::-1].copy()), CHIPS
    yield "lnc2_add", "lnc2_add_kernel[2]", (x, x * 2), CHIPS
    yield ("mx_matmul", "mx_matmul_kernel",
           (rng.standard_normal((1024, 128)).astype(bf16),
            rng.standard_normal((1024, 512)).astype(bf16)), ("trn3",))


def _fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:9.2f}"


def main(argv=None) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print("trnsim demo: example NKI kernels profiled on simulated Trn2 and Trn3\n")
    head = (f"{'kernel':13} {'chip':5} {'time us':>9} {'MFU %':>6} {'PE %':>5} {'DVE %':>5} "
            f"{'ACT %':>5} {'POOL %':>6} {'DMA %':>5} {'MBU %':>5} {'HBM MiB':>8} "
            f"{'max|err|':>9}  top insight")
    print(head)
    print("-" * (len(head) + 30))
    failures, times = 0, {}
    for name, attr, args, chips in _cases(rng):
        mod = load_example(name)
        lnc = 2 if attr.endswith("[2]") else 1
        kernel = getattr(mod, attr.removesuffix("[2]"))
        ref = np.asarray(mod.reference(*args), dtype=np.float64)
        for chip in chips:
            out, run = run_kernel(kernel.fn, args, lnc=lnc, chip=chip)
            got = np.asarray(out, dtype=np.float64)
            err = float(np.abs(got - ref).max())
            ok = np.allclose(got, ref, rtol=2e-2, atol=2e-2)
            failures += not ok
            prof = Profile.from_run(run, out, f"{name}-{chip}")
            s = prof.summary
            times[(name, chip)] = prof.total_time
            top = prof.insights[0].title if prof.insights else ""
            hbm = (s["hbm_read_bytes"] + s["hbm_write_bytes"]) / 2**20
            print(f"{name:13} {chip:5} {_fmt_us(prof.total_time)} "
                  f"{s['mfu_estimated_percent']:6.1f} "
                  f"{s['tensor_engine_active_time_percent']:5.1f} "
                  f"{s['vector_engine_active_time_percent']:5.1f} "
                  f"{s['scalar_engine_active_time_percent']:5.1f} "
                  f"{s['gpsimd_engine_active_time_percent']:6.1f} "
                  f"{s['dma_active_time_percent']:5.1f} {s['mbu_estimated_percent']:5.1f} "
                  f"{hbm:8.2f} {err:9.2e}  {top}" + ("" if ok else "  MISMATCH"))
            prof.to_perfetto(OUT / f"{name}-{chip}.trace.json")
            prof.report(OUT / f"{name}-{chip}.report.html")
    print("\nTrn3 vs Trn2 predicted speed-up:")
    for (name, chip), t in times.items():
        if chip == "trn3" and (name, "trn2") in times:
            print(f"  {name:13} {times[(name, 'trn2')] / t:5.2f}x")
    print(f"\nTraces (open in ui.perfetto.dev) and HTML reports written to {OUT}/")
    print("PE/DVE/ACT/POOL = Tensor/Vector/Scalar/GpSimd engine active time (work the "
          "kernel left to the compiler is balanced over the last three); MBU = HBM "
          "bandwidth utilization of one stack.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
