"""`make demo`: profile the example NKI kernels and the kernel library's flagships (fp8
and MX matmul, flash attention, MoE token generation; src/trnsim/kernels) on simulated
Trn2 and Trn3, a collective kernel on 16 ranks of each chip's fabric (the Trn2
UltraServer's torus and the Trn3 UltraServer's NeuronSwitch), then a whole Hugging
Face model: the Qwen3-0.6B attention swap at a short prompt
(trnsim.torch.attention_swap).

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


def _attention(q, k, v):
    """Causal softmax(Q K^T / sqrt(d)) V in float64 for the library's layout (q, k:
    [B, H, d, S] transposed, v: [B, KVH, S, d]; GQA by head // group)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, H, d, S = q.shape
    group = H // k.shape[1]
    out = np.empty((B, H, S, d))
    mask = np.triu(np.full((S, S), -np.inf), 1)
    for b in range(B):
        for h in range(H):
            s = q[b, h].T @ k[b, h // group] / np.sqrt(d) + mask
            p = np.exp(s - s.max(axis=1, keepdims=True))
            out[b, h] = (p / p.sum(axis=1, keepdims=True)) @ v[b, h // group]
    return out


def _moe(x, w_router, w_gate, w_up, w_down, top_k):
    """Softmax router, top-k renormalized, SwiGLU experts, weighted sum (float64)."""
    x, w_router, w_gate, w_up, w_down = (np.asarray(a, np.float64)
                                         for a in (x, w_router, w_gate, w_up, w_down))
    logits = x @ w_router
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        top = np.argsort(-p[t])[:top_k]
        for e, w in zip(top, p[t, top] / p[t, top].sum()):
            g, u = x[t] @ w_gate[e], x[t] @ w_up[e]
            y[t] += w * ((g / (1 + np.exp(-g)) * u) @ w_down[e])
    return y


def _library_cases(rng):
    """(label, kernel, inputs, reference, chips, tolerance on max|err| / max|ref|): the
    kernel library's flagships at demo sizes."""
    from . import kernels  # installs trnsim.compat: the library imports `nki`
    bf16, fp8 = ml_dtypes.bfloat16, ml_dtypes.float8_e4m3
    a8 = rng.standard_normal((512, 256)).astype(fp8)
    b8 = rng.standard_normal((512, 1024)).astype(fp8)
    yield ("matmul_fp8", kernels.matmul.matmul_fp8, (a8, b8),
           a8.astype(np.float64).T @ b8.astype(np.float64), CHIPS, 1e-2)
    a, b = (rng.standard_normal(s).astype(bf16) for s in ((1024, 256), (1024, 512)))
    yield ("matmul_mxfp8", kernels.matmul.matmul_mxfp8, (a, b),
           a.astype(np.float64).T @ b.astype(np.float64), ("trn3",), 0.1)
    q = rng.standard_normal((1, 2, 128, 512)).astype(bf16)
    k = rng.standard_normal((1, 1, 128, 512)).astype(bf16)
    v = rng.standard_normal((1, 1, 512, 128)).astype(bf16)
    yield "flash_attention", kernels.attention.flash_attention_fwd, (q, k, v), \
        _attention(q, k, v), CHIPS, 2e-2
    H, E, I = 256, 16, 128
    moe = (rng.standard_normal((1, H)).astype(bf16),
           rng.standard_normal((H, E)).astype(bf16),
           (rng.standard_normal((E, H, I)) / 16).astype(bf16),
           (rng.standard_normal((E, H, I)) / 16).astype(bf16),
           (rng.standard_normal((E, I, H)) / 16).astype(bf16), 4)
    yield "moe_tkg", kernels.moe.moe_tkg, moe, _moe(*moe), CHIPS, 2e-2


def _all_cases(rng):
    """(label, kernel function, inputs, reference, chips, lnc, tolerance): the examples
    (checked with allclose at 2e-2), then the library's flagships (max|err| against
    `tolerance` x max|ref|)."""
    for name, attr, args, chips in _cases(rng):
        mod = load_example(name)
        kernel = getattr(mod, attr.removesuffix("[2]"))
        yield (name, kernel.fn, args, mod.reference(*args), chips,
               2 if attr.endswith("[2]") else 1, None)
    for name, kernel, args, ref, chips, tol in _library_cases(rng):
        yield name, kernel.fn, args, ref, chips, 1, tol


def _fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:9.2f}"


def main(argv=None) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    print("trnsim demo: example NKI kernels and the kernel library's flagships profiled "
          "on simulated Trn2 and Trn3\n")
    head = (f"{'kernel':15} {'chip':5} {'time us':>9} {'MFU %':>6} {'PE %':>5} {'DVE %':>5} "
            f"{'ACT %':>5} {'POOL %':>6} {'DMA %':>5} {'MBU %':>5} {'HBM MiB':>8} "
            f"{'max|err|':>9}  top insight")
    print(head)
    print("-" * (len(head) + 30))
    failures, times = 0, {}
    for name, fn, args, ref, chips, lnc, tol in _all_cases(rng):
        ref = np.asarray(ref, dtype=np.float64)
        for chip in chips:
            out, run = run_kernel(fn, args, lnc=lnc, chip=chip)
            got = np.asarray(out, dtype=np.float64)
            err = float(np.abs(got - ref).max())
            if tol is None:
                ok = np.allclose(got, ref, rtol=2e-2, atol=2e-2)
            else:
                ok = err <= tol * float(np.abs(ref).max())
            failures += not ok
            prof = Profile.from_run(run, out, f"{name}-{chip}")
            s = prof.summary
            times[(name, chip)] = prof.total_time
            top = prof.insights[0].title if prof.insights else ""
            hbm = (s["hbm_read_bytes"] + s["hbm_write_bytes"]) / 2**20
            print(f"{name:15} {chip:5} {_fmt_us(prof.total_time)} "
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
            print(f"  {name:15} {times[(name, 'trn2')] / t:5.2f}x")
    failures += _collectives()
    failures += _attention_swap()
    print(f"\nTraces (open in ui.perfetto.dev) and HTML reports written to {OUT}/")
    print("PE/DVE/ACT/POOL = Tensor/Vector/Scalar/GpSimd engine active time (work the "
          "kernel left to the compiler is balanced over the last three); MBU = HBM "
          "bandwidth utilization of one stack.")
    return 1 if failures else 0


TOPOLOGIES = {"trn2": "trn2-ultraserver", "trn3": "trn3-ultraserver-64"}


def _collectives(ranks=16) -> int:
    """examples/tp_linear_all_reduce.py on `ranks` ranks (one per chip) of each chip's
    UltraServer: the same SPMD kernel, its all-reduces on the torus and on the switch."""
    from .entry import profile_ranks
    mod = load_example("tp_linear_all_reduce")
    per_rank = mod.inputs(ranks, K=128 * ranks)
    ref = mod.reference(per_rank)
    print(f"\nCollectives: tp_linear_all_reduce (row-parallel linear, each 128-row tile "
          f"all-reduced SBUF to SBUF while the next is computed) on {ranks} ranks")
    print(f"{'fabric':22} {'time us':>9} {'in CC %':>8} {'all-reduce us':>14} "
          f"{'algorithm':>10} {'busbw GB/s':>11} {'max|err|':>9}")
    failures = 0
    for chip, topology in TOPOLOGIES.items():
        prof = profile_ranks(mod.tp_linear_all_reduce_kernel, world_size=ranks,
                             per_rank_inputs=per_rank, topology=topology)
        err = max(float(np.abs(np.asarray(o, np.float64) - ref).max()) for o in prof.outputs)
        ok = err <= 1e-3 * float(np.abs(ref).max())
        failures += not ok
        first = prof.collectives[0]
        s = prof.summary
        print(f"{topology:22} {_fmt_us(prof.total_time)} "
              f"{s['cc_op_active_time_percent_mean']:8.1f} {first.duration / 1e3:14.2f} "
              f"{first.algorithm:>10} {first.bus_bandwidth:11.1f} {err:9.2e}"
              + ("" if ok else "  MISMATCH"))
        prof.to_perfetto(OUT / f"tp_linear_all_reduce-{chip}.trace.json")
        prof.report(OUT / f"tp_linear_all_reduce-{chip}.report.html")
    return failures


def _attention_swap(tokens=512, layers=4) -> int:
    """The talk's Qwen3-0.6B attention swap at a short prompt (examples/
    qwen3_attention_swap.py; --tokens 16384 reproduces the talk's setting)."""
    try:
        from .torch import attention_swap as swap
        import transformers  # noqa: F401
    except ImportError as e:
        print(f"\n(whole-model prediction skipped: {e}; `make demo` installs torch and "
              "transformers)")
        return 0
    print(f"\nWhole model on one NeuronCore: Hugging Face Qwen3-0.6B (random weights), "
          f"{layers} layers, {tokens} tokens, eager vs NKI flash attention")
    res = {chip: swap.predict(chip, tokens, 1, layers) for chip in CHIPS}
    acc = swap.accuracy(256, layers)
    print(swap.table(res, acc))
    written = res["trn2"]["nki"].profile.save(OUT / "qwen3-nki-trn2")
    print(f"model -> module -> op -> kernel trace and report: {written['trace']}, "
          f"{written['report']}")
    return int(not acc["cosine"] > 0.999)


if __name__ == "__main__":
    sys.exit(main())
