"""`make demo`: run the example NKI kernels on simulated Trn2 and Trn3, check them
against NumPy references, and show what the simulated NeuronCore recorded.

Latency prediction and profiles (timeline, MFU, insights, HTML report) are the timing
milestone; until it lands, the demo prints the instruction record's summary and writes
each record as JSON lines under out/demo/.
"""
from __future__ import annotations

import collections
import importlib.util
import sys
from pathlib import Path

import ml_dtypes
import numpy as np

from .machine.launch import run_kernel

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OUT = Path("out/demo")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"trnsim_examples.{name}",
                                                  EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cases(rng):
    bf16 = ml_dtypes.bfloat16
    f32 = np.float32
    x = rng.standard_normal((256, 1024)).astype(f32)
    w = rng.standard_normal((1024,)).astype(f32)
    b = rng.standard_normal((1024,)).astype(f32)
    yield "tensor_add", "tensor_add_kernel", (x, x[::-1].copy()), ("trn2", "trn3")
    yield ("tiled_matmul", "tiled_matmul_kernel",
           (rng.standard_normal((512, 256)).astype(bf16),
            rng.standard_normal((512, 1024)).astype(bf16)), ("trn2", "trn3"))
    yield "pe_transpose", "pe_transpose_kernel", (x[:, :320].copy(),), ("trn2", "trn3")
    yield "softmax", "softmax_kernel", (x,), ("trn2", "trn3")
    yield "rmsnorm", "rmsnorm_kernel", (x, w), ("trn2", "trn3")
    yield "layernorm", "layernorm_kernel", (x, w, b), ("trn2", "trn3")
    yield "lnc2_add", "lnc2_add_kernel[2]", (x, x * 2), ("trn2", "trn3")
    yield ("mx_matmul", "mx_matmul_kernel",
           (rng.standard_normal((1024, 128)).astype(bf16),
            rng.standard_normal((1024, 512)).astype(bf16)), ("trn3",))


def _summary(program):
    engines = collections.Counter(i.engine for i in program)
    dma_bytes = sum(i.bytes_moved for i in program if i.engine == "dma")
    return engines, dma_bytes


def main(argv=None) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print("trnsim demo: example NKI kernels on simulated NeuronCores\n")
    header = (f"{'kernel':14} {'chip':5} {'max |err|':>10} {'instr':>6} "
              f"{'tensor':>6} {'vector':>6} {'scalar':>6} {'gpsimd':>6} {'dma':>5} "
              f"{'DMA MiB':>8} {'SBUF peak':>10} {'PSUM peak':>10}")
    print(header)
    print("-" * len(header))
    failures = 0
    for name, attr, args, chips in _cases(rng):
        mod = _example(name)
        lnc = 2 if attr.endswith("[2]") else 1
        kernel = getattr(mod, attr.removesuffix("[2]"))
        ref = np.asarray(mod.reference(*args), dtype=np.float64)
        for chip in chips:
            out, run = run_kernel(kernel.fn, args, lnc=lnc, chip=chip)
            err = float(np.abs(np.asarray(out, dtype=np.float64) - ref).max())
            ok = np.allclose(np.asarray(out, dtype=np.float64), ref, rtol=2e-2, atol=2e-2)
            failures += not ok
            engines, dma_bytes = _summary(run.program)
            sbuf = max(c.sbuf.peak_bytes for c in run.cores)
            psum = max(c.psum.peak_bytes for c in run.cores)
            print(f"{name:14} {chip:5} {err:10.2e} {len(run.program):6} "
                  f"{engines['tensor']:6} {engines['vector']:6} {engines['scalar']:6} "
                  f"{engines['gpsimd']:6} {engines['dma']:5} {dma_bytes / 2**20:8.2f} "
                  f"{sbuf:9}B {psum:9}B" + ("" if ok else "  MISMATCH"))
            run.program.write_jsonl(OUT / f"{name}-{chip}.record.jsonl")
    print(f"\nSBUF/PSUM peak = bytes per partition live at once (allocator high-water mark).")
    print(f"Instruction records written to {OUT}/ (one JSON object per instruction).")
    print("Latency prediction, Perfetto traces and HTML reports arrive with the timing "
          "milestone.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
