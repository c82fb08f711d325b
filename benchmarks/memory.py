"""Peak memory of the simulator (`python -m benchmarks.memory`).

Each case runs in a fresh subprocess (ru_maxrss is a high-water mark): the child imports
trnsim and the kernels, loads the compiled paths' code where numba is installed (the
default configuration: trnsim/machine/compiled.py; the two timing-only cases take them),
notes its RSS (the baseline), builds the inputs without
temporaries larger than a row block, runs the kernel and reports its peak RSS. Rows:

- `strided_stores` (benchmarks/fidelity.py) over x = 128 x 262,144 fp32 (128 MiB), timing
  only: nothing data-sized should be allocated, only the instruction record.
- The legacy tiled matmul of the matmul tutorial on Trn1, timing only, at a mid shape
  (K=4096, M=2048, N=4096, bf16; the fidelity bench's full shape is twice each).
- `lse_forward` below with numerics on: the pattern of a large-vocabulary cross-entropy
  forward (nki-library's `cross_entropy_forward`, whose own simulation test ran out of
  memory): row blocks of bf16 logits [N, V] streamed through SBUF in vocabulary chunks
  with an online max and sum of exponentials. Its bound is about twice the kernel's HBM
  tensors plus the on-chip arenas.

`ratio` = (peak - baseline) / input bytes, where the peak is that of the run (recording
and the compiler model: `trnsim.run_kernel`); `profile ratio` the same with the run then
scheduled into a Profile (`trnsim.profile`'s peak). `tensors` are all the kernel's HBM
tensors (inputs, outputs, scratch); `arenas` the SBUF/PSUM arrays the run held at its end
(values and flags; none without numerics).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import numpy as np

import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki

MIB = 1 << 20
STRIDED_COLS = 262_144  # x = 128 x 262,144 fp32 = 128 MiB
MATMUL_SHAPE = (4096, 2048, 4096)  # K, M, N (the bench's full shape is 8192, 4096, 8192)
LSE_SHAPE = (4096, 32768, 8192)  # N, V, chunk: 256 MiB of bf16 logits


@nki.jit
def lse_forward(logits, chunk=8192):
    """Row-wise log-sum-exp of `logits` [N, V] -> [N, 1] fp32, 128 rows at a time, each
    row block streamed through SBUF in `chunk`-column pieces with an online maximum:
    d = d * exp(m - m_new) + sum(exp(x - m_new)), lse = m + log(d)."""
    N, V = logits.shape
    P = 128
    out = nl.ndarray((N, 1), nl.float32, buffer=nl.shared_hbm)
    for b in nl.affine_range(N // P):
        m = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        d = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=m, value=-float("inf"))
        nisa.memset(dst=d, value=0.0)
        for c in nl.sequential_range(V // chunk):
            x = nl.ndarray((P, chunk), logits.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=x, src=logits[b * P:(b + 1) * P, c * chunk:(c + 1) * chunk])
            cmax = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.tensor_reduce(dst=cmax, op=nl.maximum, data=x, axis=1)
            m_new = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=m_new, data1=m, data2=cmax, op=nl.maximum)
            corr = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=corr, data1=m, data2=m_new, op=nl.subtract)
            nisa.activation(dst=corr, op=nl.exp, data=corr)
            neg = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=neg, data=m_new, op0=nl.multiply, operand0=-1.0)
            e = nl.ndarray((P, chunk), nl.float32, buffer=nl.sbuf)
            s = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
            nisa.activation_reduce(dst=e, op=nl.exp, data=x, reduce_op=nl.add,
                                   reduce_res=s, bias=neg)
            nisa.tensor_tensor(dst=d, data1=d, data2=corr, op=nl.multiply)
            nisa.tensor_tensor(dst=d, data1=d, data2=s, op=nl.add)
            nisa.tensor_scalar(dst=m, data=m_new, op0=nl.add, operand0=0.0)
        lse = nl.ndarray((P, 1), nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=lse, op=nl.log, data=d)
        nisa.tensor_tensor(dst=lse, data1=lse, data2=m, op=nl.add)
        nisa.dma_copy(dst=out[b * P:(b + 1) * P, :], src=lse)
    return out


def lse_reference(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))).astype(np.float32)


def random_bf16(shape, seed=0, block=256) -> np.ndarray:
    """Normal bf16 values, made a row block at a time (no float64 array of the whole)."""
    import ml_dtypes
    rng = np.random.default_rng(seed)
    a = np.empty(shape, ml_dtypes.bfloat16)
    for i in range(0, shape[0], block):
        a[i:i + block] = rng.standard_normal((min(block, shape[0] - i),) + tuple(shape[1:]),
                                             dtype=np.float32)
    return a


def peak_rss_mib() -> float:
    """This process's peak RSS. (VmHWM, not ru_maxrss: on Linux ru_maxrss carries over
    exec from the process that forked this one, e.g. a large bench worker.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- the child: one case in this process --------------------------------------------------
def _case(name: str) -> dict:
    import ml_dtypes
    import trnsim
    from trnsim.legacy import jit as legacy_jit
    from trnsim.profile.profile import Profile
    from . import fidelity
    from .compiled_speed import load_compiled
    load_compiled()  # numba and the compiled paths' code: in the baseline, as imports are
    base = peak_rss_mib()
    if name == "strided":
        x = np.ones((128, STRIDED_COLS), np.float32)
        args = (x,)
        out, run = trnsim.run_kernel(fidelity.strided_stores, args, chip="trn2",
                                     numerics=False)
        row = {"kernel": f"strided_stores x=fp32[128, {STRIDED_COLS}] (trn2)",
               "mode": "timing only"}
    elif name == "matmul":
        K, M, N = MATMUL_SHAPE
        args = (np.ones((K, M), ml_dtypes.bfloat16), np.ones((K, N), ml_dtypes.bfloat16))
        fn = fidelity._legacy_tutorial().VARIANTS["tiled"].fn
        out, run = legacy_jit.run_legacy(fn, args, {}, chip="trn1", numerics=False)
        row = {"kernel": f"legacy tiled matmul K={K} M={M} N={N} bf16 (trn1)",
               "mode": "timing only"}
    elif name == "lse":
        N, V, chunk = LSE_SHAPE
        args = (random_bf16((N, V)),)
        out, run = trnsim.run_kernel(lse_forward, args, {"chunk": chunk}, chip="trn2")
        if not np.isfinite(out).all():
            raise RuntimeError("lse_forward produced non-finite values")
        row = {"kernel": f"lse_forward logits=bf16[{N}, {V}] chunk {chunk} (trn2)",
               "mode": "numerics"}
    else:
        raise ValueError(f"unknown case {name!r}")
    peak = peak_rss_mib()
    Profile.from_run(run, out)
    profile_peak = peak_rss_mib()
    in_bytes = sum(a.nbytes for a in args)
    arenas = sum(m.nbytes for c in run.cores for m in (c.sbuf, c.psum))
    row.update(instructions=len(run.program), input_bytes=in_bytes,
               tensor_bytes=run.hbm.placed_bytes, arena_bytes=arenas,
               peak_rss_mib=peak, baseline_rss_mib=base,
               ratio=(peak - base) * MIB / in_bytes,
               profile_peak_rss_mib=profile_peak,
               profile_ratio=(profile_peak - base) * MIB / in_bytes)
    return row


def measure(name: str, timeout: float = 1800) -> dict:
    """Run case `name` in a fresh interpreter; its row."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--case", name],
                       capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
    if r.returncode:
        raise RuntimeError(f"memory case {name!r} failed:\n{r.stderr[-4000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


CASES = ("strided", "matmul", "lse")


def job_memory() -> list[dict]:
    """Peak RSS of each case, each in a fresh subprocess."""
    return [measure(name) for name in CASES]


def table(rows: list[dict]) -> str:
    head = ("| kernel | mode | instructions | inputs (MiB) | kernel tensors (MiB) | "
            "arenas (MiB) | baseline RSS (MiB) | peak RSS (MiB) | (peak - baseline) / inputs | "
            "profile peak RSS (MiB) | profile ratio |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['mode']} | {r['instructions']:,} | "
                     f"{r['input_bytes'] / MIB:,.0f} | {r['tensor_bytes'] / MIB:,.0f} | "
                     f"{r['arena_bytes'] / MIB:,.0f} | {r['baseline_rss_mib']:,.0f} | "
                     f"{r['peak_rss_mib']:,.0f} | {r['ratio']:.2f} | "
                     f"{r['profile_peak_rss_mib']:,.0f} | {r['profile_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--case"]:
        print(json.dumps(_case(argv[1])))
        return 0
    names = argv or list(CASES)
    print(table([measure(n) for n in names]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
