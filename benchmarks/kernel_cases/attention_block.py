"""The fused attention block (trnsim.kernels.attention_block): one Qwen3-0.6B layer's
attention -- hidden 1024, 16 query heads, 8 KV heads, head dim 128 -- over 2048 tokens
of one sequence, causal, on trn2 and trn3. Inputs are zeros (timing-only rows).

Fused vs unfused, trnsim timing-only, this shape. Unfused = three library kernels, each
reading its inputs from and writing its output to HBM: matmul (QKV projection, lhsT =
x^T [1024, 2048], rhs = w_qkv [1024, 4096]), flash_attention_fwd (B=1 H=16 KVH=8
S=2048 d=128, the Qwen3 row of attention.py) and matmul (output projection, lhsT =
attn^T [2048, 2048], rhs = w_o [2048, 1024]); it does not count rearranging the QKV
output into flash's transposed layout, nor flash's output into attn^T. Unfused MFU / PE
are the three kernels' figures weighted by their time.

  chip  kernel                    latency us   MFU %   PE %   HBM bytes (read + written)
  trn2  QKV matmul                     231.0    94.6   94.9   12.0 + 16.0 MiB
  trn2  flash_attention_fwd            735.2    31.6   58.1   16.0 +  8.0 MiB
  trn2  out-proj matmul                128.2    85.2   85.8   12.0 +  4.0 MiB
  trn2  unfused total                 1094.4    51.2   69.1   40.0 + 28.0 MiB
  trn2  attention_block (fused)        966.5    57.9   75.9   16.0 +  4.0 MiB   (-12%)
  trn3  QKV matmul                     228.2    95.7   96.1
  trn3  flash_attention_fwd            604.0    38.4   64.9
  trn3  out-proj matmul                123.5    88.4   89.0
  trn3  unfused total                  955.8    58.5   75.5
  trn3  attention_block (fused)        892.3    62.7   81.0                     (-7%)

The fused kernel saves the HBM round trips (48 MiB less traffic) and fills the
attention's Tensor Engine gaps with the projections (next head's Q^T, the previous
pair's output projection); what remains is flash's own limit -- the softmax's Vector /
Scalar work per key block, which the projections do not reduce -- plus the K/V
projection done up front (~110 us of PE work before the first score).
"""
import ml_dtypes
import numpy as np

from trnsim.kernels import attention_block as AB

from . import KernelCase

BF16 = ml_dtypes.bfloat16
S, HIDDEN, H, KVH, D = 2048, 1024, 16, 8, 128


def _inputs(B=None):
    return lambda: {"x": np.zeros((S, HIDDEN) if B is None else (B, S, HIDDEN), BF16),
            "w_qkv": np.zeros((HIDDEN, (H + 2 * KVH) * D), BF16),
            "w_o": np.zeros((H * D, HIDDEN), BF16),
            "n_heads": H, "n_kv_heads": KVH, "causal": True}


CASES = [
    KernelCase("attention block (QKV + flash + out proj), Qwen3-0.6B layer",
               AB.attention_block, _inputs(),
               f"S={S} hidden={HIDDEN} H={H} KVH={KVH} d={D}", "bf16",
               chips=("trn2", "trn3")),
    KernelCase("attention block, a batch of 4 sequences", AB.attention_block, _inputs(4),
               f"B=4 S={S} hidden={HIDDEN} H={H} KVH={KVH} d={D}", "bf16",
               chips=("trn2", "trn3")),
]
