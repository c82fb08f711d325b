"""Attention rows of docs/kernels.md (trnsim.kernels.attention), timing-only inputs.

Layout (see the kernel module): q [B, H, d, S], k [B, KVH, d, S], v [B, KVH, S, d];
decode: q [B, H, d], caches k [B, KVH, d, S_max], v [B, KVH, S_max, d].

The issue's naive-vs-flash target is for one Qwen3-0.6B layer (16 query heads, 8 KV
heads, head dim 128) at 16K tokens on trn2, which the pair of rows measures (a few CPU
minutes each). The ratio grows with the length (flash's per-tile overheads and causal
diagonal steps shrink): 3.9x at 2K, 4.7x at 4K, 5.5x at 8K.
"""
import numpy as np

import ml_dtypes

_BF16 = ml_dtypes.bfloat16

from trnsim.kernels import attention as A

from . import KernelCase


def _prefill(B, H, KVH, d, S, causal, dtype=_BF16):
    def make():
        return dict(q=np.zeros((B, H, d, S), dtype), k=np.zeros((B, KVH, d, S), dtype),
                    v=np.zeros((B, KVH, S, d), dtype), causal=causal)
    return make


def _decode(B, H, KVH, d, Smax, n):
    def make():
        return dict(q=np.zeros((B, H, d), _BF16), k_cache=np.zeros((B, KVH, d, Smax), _BF16),
                    v_cache=np.zeros((B, KVH, Smax, d), _BF16), seq_len=n)
    return make


def _paged(B, H, KVH, d, page, max_pages, n_pages):
    def make():
        bt = (np.arange(B * max_pages) % n_pages).reshape(B, max_pages).astype(np.int32)
        return dict(q=np.zeros((B, H, d), _BF16),
                    k_pages=np.zeros((n_pages, KVH, d, page), _BF16),
                    v_pages=np.zeros((n_pages, KVH, page, d), _BF16),
                    block_table=bt,
                    seq_lens=np.full((B, 1), max_pages * page, np.int32))
    return make


CASES = [
    KernelCase("flash attention fwd, causal", A.flash_attention_fwd,
               _prefill(1, 1, 1, 128, 8192, True), "B=1 H=1 S=8192 d=128", "bf16",
               target="TE active >= 75% (trn2), >= 92% (trn3)"),
    KernelCase("flash attention fwd, causal, fp8", A.flash_attention_fwd,
               _prefill(1, 1, 1, 128, 8192, True, ml_dtypes.float8_e4m3),
               "B=1 H=1 S=8192 d=128", "fp8e4m3 -> bf16",
               target="faster than bf16 on trn3 (fast exp keeps the PE fed)"),
    KernelCase("flash attention fwd, non-causal", A.flash_attention_fwd,
               _prefill(1, 1, 1, 128, 8192, False), "B=1 H=1 S=8192 d=128", "bf16"),
    KernelCase("flash attention fwd, causal, d=64", A.flash_attention_fwd,
               _prefill(1, 2, 2, 64, 4096, True), "B=1 H=2 S=4096 d=64", "bf16"),
    KernelCase("flash attention fwd, Qwen3-0.6B layer (GQA 16:8)", A.flash_attention_fwd,
               _prefill(1, 16, 8, 128, 16384, True), "B=1 H=16 KVH=8 S=16384 d=128", "bf16",
               chips=("trn2",), target=">= 6x faster than naive"),
    KernelCase("naive attention, Qwen3-0.6B layer (GQA 16:8)", A.naive_attention,
               _prefill(1, 16, 8, 128, 16384, True), "B=1 H=16 KVH=8 S=16384 d=128", "bf16",
               chips=("trn2",), target="baseline for the row above"),
    KernelCase("decode attention", A.decode_attention,
               _decode(4, 16, 8, 128, 8192, 8192), "B=4 H=16 KVH=8 S=8192 d=128", "bf16"),
    KernelCase("paged decode attention", A.paged_decode_attention,
               _paged(4, 16, 8, 128, 128, 64, 256),
               "B=4 H=16 KVH=8 page=128 pages=64/seq d=128", "bf16"),
]
