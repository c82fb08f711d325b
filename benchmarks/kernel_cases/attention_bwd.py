"""Flash attention backward rows of docs/kernels.md (trnsim.kernels.attention_bwd),
timing-only inputs (zeros; lse zeros too: timing does not depend on values).

Layout (see the kernel module): q [B, H, d, S], k [B, KVH, d, S], v [B, KVH, S, d],
o and dout [B, H, S, d], lse [B, H, S] fp32 (or left out: the kernel recomputes it).
"""
import numpy as np

try:
    import ml_dtypes
    _BF16 = ml_dtypes.bfloat16
except ImportError:  # pragma: no cover - ml_dtypes comes with trnsim
    _BF16 = np.float32

from trnsim.kernels import attention_bwd as AB

from . import KernelCase


def _bwd(B, H, KVH, d, S, causal, lse=True):
    def make():
        args = dict(q=np.zeros((B, H, d, S), _BF16), k=np.zeros((B, KVH, d, S), _BF16),
                    v=np.zeros((B, KVH, S, d), _BF16), o=np.zeros((B, H, S, d), _BF16),
                    dout=np.zeros((B, H, S, d), _BF16), causal=causal)
        if lse:
            args["lse"] = np.zeros((B, H, S), np.float32)
        return args
    return make


CASES = [
    KernelCase("flash attention backward, causal", AB.flash_attention_bwd,
               _bwd(1, 1, 1, 128, 8192, True), "B=1 H=1 S=8192 d=128", "bf16"),
    KernelCase("flash attention backward, causal, lse recomputed", AB.flash_attention_bwd,
               _bwd(1, 1, 1, 128, 8192, True, lse=False), "B=1 H=1 S=8192 d=128", "bf16",
               chips=("trn2",)),
    KernelCase("flash attention backward, GQA 2:1 causal", AB.flash_attention_bwd,
               _bwd(1, 2, 1, 128, 2048, True), "B=1 H=2 KVH=1 S=2048 d=128", "bf16",
               chips=("trn2",)),
]
