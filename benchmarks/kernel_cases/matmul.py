"""The matmul family (trnsim.kernels.matmul): the issue's three targets plus the bf16
baselines they are measured against. Inputs are zeros (timing-only rows).

- bf16 GEMM M=4096, K=8192, N=8192 on one trn2 NeuronCore: target >= 90% of the Tensor
  Engine's peak.
- QKV projection of a Qwen3-0.6B-like layer: 4096 tokens x hidden 1024 -> 16 query
  heads + 2 x 8 KV heads of head_dim 128 = 2048 + 2 x 1024 = 4096 outputs
  (lhsT = x.T [1024, 4096], rhs = W_qkv [1024, 4096]); fp8 (e4m3, double row) vs bf16
  on trn2: target ~2x.
- MXFP8 vs bf16 on trn3, K=M=N=4096 (bf16 inputs quantized on chip): target
  approaching 4x. The QKV shape on trn3 is also listed: with K=1024 its bf16 output
  (32 MiB) and inputs make the MX kernel DMA-bound, so it stays further from 4x.

mfu_estimated_percent counts FLOPs over the bf16 peak, so a perfect fp8 double-row
kernel reads 200% and a perfect MX one 400%.
"""
import ml_dtypes
import numpy as np

from trnsim.kernels import matmul as mm

from . import KernelCase

BF16, FP8 = ml_dtypes.bfloat16, ml_dtypes.float8_e4m3
T, H, QKV = 4096, 1024, 2048 + 2 * 1024


def _ab(K, M, N, dtype=BF16):
    return lambda: {"lhsT": np.zeros((K, M), dtype), "rhs": np.zeros((K, N), dtype)}


CASES = [
    KernelCase("matmul (GEMM)", mm.matmul, _ab(8192, 4096, 8192),
               "M=4096 K=8192 N=8192", "bf16", chips=("trn2",),
               target=">= 90% of Tensor Engine peak on trn2"),
    KernelCase("matmul (QKV projection)", mm.matmul, _ab(H, T, QKV),
               f"T={T} H={H} -> {QKV}", "bf16", chips=("trn2", "trn3")),
    KernelCase("matmul_fp8 (QKV projection)", mm.matmul_fp8, _ab(H, T, QKV, FP8),
               f"T={T} H={H} -> {QKV}", "fp8e4m3 -> bf16", chips=("trn2", "trn3"),
               target="~2x the bf16 QKV projection on trn2"),
    KernelCase("matmul (GEMM)", mm.matmul, _ab(4096, 4096, 4096),
               "M=K=N=4096", "bf16", chips=("trn3",)),
    KernelCase("matmul_mxfp8 (GEMM)", mm.matmul_mxfp8, _ab(4096, 4096, 4096),
               "M=K=N=4096", "bf16 -> MXFP8 -> bf16", chips=("trn3",),
               target="approaching 4x the bf16 GEMM on trn3"),
    KernelCase("matmul_mxfp8 (QKV projection)", mm.matmul_mxfp8, _ab(H, T, QKV),
               f"T={T} H={H} -> {QKV}", "bf16 -> MXFP8 -> bf16", chips=("trn3",)),
]
