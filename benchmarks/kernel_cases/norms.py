"""Elementwise and norm kernels (trnsim.kernels.norms) at Qwen3-0.6B shapes: hidden 1024,
intermediate 3072, 16 query heads of head_dim 128, 4096 tokens (one prefill of 4096
tokens, or 8 x 512). Inputs are zeros: the rows are profiled timing-only."""
import ml_dtypes
import numpy as np

from trnsim.kernels import norms

from . import KernelCase

BF16 = ml_dtypes.bfloat16
T, H, I, HEADS, D = 4096, 1024, 3072, 16, 128
SHAPE = f"T={T} H={H}"


def _z(*shape, dtype=BF16):
    return np.zeros(shape, dtype)


CASES = [
    KernelCase("transpose (DMA transpose)", norms.transpose,
               lambda: {"x": _z(T, H)}, f"[{T}, {H}]", "bf16"),
    KernelCase("transpose (PE transpose)", norms.transpose,
               lambda: {"x": _z(T, H, dtype=np.float32)}, f"[{T}, {H}]", "fp32"),
    KernelCase("softmax", norms.softmax,
               lambda: {"x": _z(T, H)}, f"[{T}, {H}]", "bf16"),
    KernelCase("rmsnorm", norms.rmsnorm,
               lambda: {"x": _z(T, H), "gamma": _z(H, dtype=np.float32), "eps": 1e-6},
               SHAPE, "bf16"),
    KernelCase("layernorm", norms.layernorm,
               lambda: {"x": _z(T, H), "gamma": _z(H, dtype=np.float32),
                        "beta": _z(H, dtype=np.float32), "eps": 1e-5},
               SHAPE, "bf16"),
    KernelCase("rmsnorm + fp8 quant", norms.rmsnorm_quant_fp8,
               lambda: {"x": _z(T, H), "gamma": _z(H, dtype=np.float32), "eps": 1e-6},
               SHAPE, "bf16 -> fp8e4m3"),
    KernelCase("rope (q, 16 heads)", norms.rope,
               lambda: {"x": _z(T, HEADS * D), "cos": _z(T, D // 2, dtype=np.float32),
                        "sin": _z(T, D // 2, dtype=np.float32)},
               f"T={T} heads={HEADS} d={D}", "bf16"),
    KernelCase("swiglu mlp", norms.swiglu_mlp,
               lambda: {"x": _z(T, H), "w_gate": _z(H, I), "w_up": _z(H, I),
                        "w_down": _z(I, H)},
               f"T={T} H={H} I={I}", "bf16"),
]
