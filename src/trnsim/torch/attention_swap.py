"""The Trainium talks' attention swap: Hugging Face Qwen3-0.6B, truncated to a few
layers, with eager attention and with NKI flash attention, timed on one simulated
NeuronCore; accuracy of the NKI model against eager attention on the CPU.

Used by examples/qwen3_attention_swap.py, `make demo` and `make bench`
(docs/models.md). The model is built from Qwen3-0.6B's published config with random
weights: nothing is downloaded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .device import device
from .hf import register_flash_attention

# huggingface.co/Qwen/Qwen3-0.6B, config.json
QWEN3_0_6B = dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                  num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  vocab_size=151936, max_position_embeddings=40960, rms_norm_eps=1e-6,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                  tie_word_embeddings=True, hidden_act="silu", attention_bias=False)
# the talk's figures (one Trn2 NeuronCore, 4 layers, 16K tokens; seed-claims.md)
TALK = {"eager": (0.35, 2.8), "nki": (2.99, 0.25)}  # prompts/s, seconds per request


def qwen3(layers: int, attn: str, seed: int = 0):
    """Qwen3-0.6B's architecture, `layers` layers, random bf16 weights."""
    from transformers import Qwen3Config, Qwen3ForCausalLM
    cfg = Qwen3Config(**dict(QWEN3_0_6B, num_hidden_layers=layers),
                      attn_implementation=attn)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # (a fake model cannot be cast afterwards)
    try:
        return Qwen3ForCausalLM(cfg).eval()
    finally:
        torch.set_default_dtype(old)


@dataclass
class Timing:
    chip: str
    attention: str           # "eager" or "nki"
    tokens: int
    batch: int
    seconds: float           # predicted time for the batch (one forward pass)
    estimated_share: float   # of that time, charged by roofline estimates
    wall: float              # seconds trnsim took
    profile: object = None   # the ModelProfile

    @property
    def per_request(self) -> float:
        return self.seconds / self.batch

    @property
    def prompts_per_s(self) -> float:
        return self.batch / self.seconds


def predict(chip: str, tokens: int, batch: int = 1, layers: int = 4, progress=None):
    """{"eager": Timing, "nki": Timing}: one forward pass over `batch` prompts of
    `tokens` tokens, timing-only (fake tensors: no activation is computed)."""
    nki = register_flash_attention()
    out = {}
    for label, attn in (("eager", "eager"), ("nki", nki)):
        t = time.perf_counter()
        dev = device(chip, numerics=False, progress=progress)
        with dev.fake_mode:  # fake weights: nothing initialized or stored
            model = qwen3(layers, attn)
        ids = torch.zeros(batch, tokens, dtype=torch.long)
        with torch.no_grad(), dev:
            model(ids, use_cache=False)
        out[label] = Timing(chip, label, tokens, batch, dev.profile.total_time,
                            dev.profile.estimated_share, time.perf_counter() - t,
                            dev.profile)
    return out


def accuracy(tokens: int = 256, layers: int = 4, chip: str = "trn2") -> dict:
    """MSE and cosine similarity of the NKI model's logits (flash attention run on
    trnsim, numerics on) against eager attention on the CPU, same weights and prompt."""
    nki = register_flash_attention()
    ids = torch.randint(0, QWEN3_0_6B["vocab_size"], (1, tokens),
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = qwen3(layers, "eager")(ids, use_cache=False).logits.float()
        with device(chip):
            got = qwen3(layers, nki)(ids, use_cache=False).logits.float()
    ref, got = ref.double().flatten(), got.double().flatten()
    return {"tokens": tokens, "mse": float(torch.mean((ref - got) ** 2)),
            "cosine": float(ref @ got / (ref.norm() * got.norm()))}


def table(results: dict, acc: dict | None = None) -> str:
    """The talk's comparison: prompts/s and latency per request, eager vs NKI."""
    lines = [f"{'chip':<6}{'attention':<11}{'prompts/s':>10}{'s/request':>11}"
             f"{'estimated':>11}{'trnsim wall s':>15}"]
    for chip, r in results.items():
        for t in r.values():
            lines.append(f"{chip:<6}{t.attention:<11}{t.prompts_per_s:>10.2f}"
                         f"{t.per_request:>11.3f}{100 * t.estimated_share:>10.0f}%"
                         f"{t.wall:>15.1f}")
        lines.append(f"{chip:<6}{'speedup':<11}"
                     f"{r['nki'].prompts_per_s / r['eager'].prompts_per_s:>10.2f}x")
    if acc:
        lines.append(f"accuracy vs CPU eager ({acc['tokens']} tokens): MSE {acc['mse']:.3g}, "
                     f"cosine similarity {acc['cosine']:.6f}")
    return "\n".join(lines)
