"""Mixture-of-experts kernels (trnsim.kernels.moe) at Qwen3-30B-A3B shapes: hidden 2048,
128 experts, top-8, expert intermediate 768; context encoding of 512 tokens and token
generation of 1 token. Inputs are zeros: the rows are profiled timing-only.

Routing does not change these kernels' timing, so zeros (which route every token to
experts 0..7) stand for uniform and skewed loads alike: moe_cte runs a static capacity
of C slots for every expert whatever the routing (empty slots are skipped by the
gather / scatter DMAs but still computed), and moe_tkg reads 8 experts' weights per
token wherever they are.

Bounds (one NeuronCore; bytes / bandwidth, FLOPs / bf16 peak):
- token generation: the 8 experts' weights, 8 * 3 * 2048 * 768 * 2 B = 75.5 MB. The
  issue's bound is one NeuronCore's roofline: a core's 16 DMA engines reach 368 GB/s
  (trn2: 205 us) and 528 GB/s (trn3: 143 us), trnsim's `roofline_bandwidth` and the
  table's "Roofline bound" column. A whole HBM stack (trn2 725 GB/s: 104 us; trn3
  1225 GB/s: 62 us) is shared by two cores (hardware.md, "Per-NC HBM share") and one
  core's DMA engines cannot drive it alone, so it bounds two cores (LNC=2), not one.
- context encoding, 512 tokens: 512 * 8 = 4096 (token, expert) pairs hit (nearly) all
  128 experts, so every expert's weights are read: 1.21 GB (trn2: 1666 us at the stack,
  3283 us at the DMA engines' ceiling; trn3: 986 / 2288 us); the useful FLOPs, 38.7 G,
  take less (trn2 ~490 us): memory-bound.
"""
import ml_dtypes
import numpy as np

from trnsim.kernels import moe

from . import KernelCase

BF16 = ml_dtypes.bfloat16
H, E, I, TOP_K = 2048, 128, 768, 8
T_CTE, T_TKG = 512, 1


def _z(*shape):
    return np.zeros(shape, BF16)


def _inputs(T, **extra):
    return lambda: {"x": _z(T, H), "w_router": _z(H, E), "w_gate": _z(E, H, I),
                    "w_up": _z(E, H, I), "w_down": _z(E, I, H), "top_k": TOP_K, **extra}


def _shape(T, extra=""):
    return f"T={T} H={H} E={E} top{TOP_K} I={I}{extra}"


CASES = [
    KernelCase("moe router (softmax top-8)", moe.router_topk,
               lambda: {"x": _z(T_CTE, H), "w_router": _z(H, E), "top_k": TOP_K},
               f"T={T_CTE} H={H} E={E}", "bf16"),
    KernelCase("moe token generation (router + 8 experts)", moe.moe_tkg, _inputs(T_TKG),
               _shape(T_TKG), "bf16",
               target="within 2x of one core's roofline bound (8 experts' weight "
                      "bytes at the core's DMA bandwidth: trn2 205 us, trn3 143 us; a "
                      "whole HBM stack: 104 / 62 us)"),
    KernelCase("moe context encoding (capacity 128 / expert)", moe.moe_cte,
               _inputs(T_CTE, capacity=128), _shape(T_CTE, " C=128"), "bf16",
               target="all experts' weight bytes / bandwidth (trn2 1666 us at the HBM "
                      "stack, 3283 us at the DMA engines; trn3 986 / 2288 us)"),
]
