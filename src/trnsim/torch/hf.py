"""NKI flash attention (trnsim.kernels.attention.flash_attention_fwd) as an attention
implementation for Hugging Face transformers models:

    trnsim.torch.hf.register_flash_attention()          # name "nki_attention"
    model = AutoModelForCausalLM.from_config(config, attn_implementation="nki_attention")

(The name avoids "flash": transformers takes any implementation named like that for a
flash-attn package to import.)

The attention runs as one torch custom op, `trnsim::flash_attention`: on the CPU it runs
the NKI kernel on trnsim (numerics on), on fake tensors it only gives the output's shape,
and under `trnsim.torch.device` it is charged to the kernel's profile. Its backward is the
library's flash attention backward (`trnsim::flash_attention_backward`, sequences up to
8K), so the model trains through it too. Its mask function is flash attention's (transformers' `flash_attention_mask`): no mask tensor is built for
plain causal attention. Limits: causal attention without padding (a padding mask raises
NotImplementedError) and no dropout; sequence lengths multiples of 128; the layout
changes between the model's [B, H, S, d] and the kernel's q^T / k^T are not charged (a
production kernel loads them with transposing DMAs).
"""
from __future__ import annotations

import torch

from .charges import attention_call, register_route

OP = "trnsim::flash_attention"


# plain torch.library ops rather than trnsim.torch.nki_op: nki_op's fake implementation
# traces the kernel at every fake call (seconds at 16K tokens); these give the shapes only
@torch.library.custom_op(OP, mutates_args=())
def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool,
                    scale: float) -> torch.Tensor:
    """softmax(scale * q k^T [+ causal mask]) v for q [B, H, S, d], k and v
    [B, KVH, S_kv, d] (GQA: KVH divides H); returns [B, H, S, d] in q's dtype."""
    from ..kernels.attention import flash_attention_fwd
    return flash_attention_fwd(_host(q, True), _host(k, True), _host(v), causal=is_causal,
                               scale=scale)


def _host(t, transpose=False):
    """`t` as the kernels take it: contiguous, [.., d, S] for q and k."""
    t = t.detach()
    return (t.transpose(-1, -2) if transpose else t).contiguous()


@flash_attention.register_fake
def _(q, k, v, is_causal, scale):
    return q.new_empty(q.shape)


@torch.library.custom_op(OP + "_backward", mutates_args=())
def flash_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             out: torch.Tensor, dout: torch.Tensor, is_causal: bool,
                             scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv) of flash_attention through the library's backward kernel
    (trnsim.kernels.attention_bwd.flash_attention_bwd), in the forward's layouts."""
    from ..kernels.attention_bwd import flash_attention_bwd
    dq, dk, dv = flash_attention_bwd(_host(q, True), _host(k, True), _host(v), _host(out),
                                     _host(dout), causal=is_causal, scale=scale)
    return dq.transpose(-1, -2).contiguous(), dk.transpose(-1, -2).contiguous(), dv


@flash_attention_backward.register_fake
def _(q, k, v, out, dout, is_causal, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup(ctx, inputs, output):
    q, k, v, ctx.is_causal, ctx.scale = inputs
    ctx.save_for_backward(q, k, v, output)


def _backward(ctx, dout):
    q, k, v, out = ctx.saved_tensors
    dq, dk, dv = flash_attention_backward(q, k, v, out, dout.contiguous(), ctx.is_causal,
                                          ctx.scale)
    return dq, dk, dv, None, None


flash_attention.register_autograd(_backward, setup_context=_setup)


register_route(OP, lambda args, kw: attention_call(args[0], args[1], args[2],
                                                  bool(args[3]), float(args[4])))


def nki_flash_attention_forward(module, query, key, value, attention_mask, scaling=None,
                                dropout=0.0, **kwargs):
    """transformers' attention-interface signature: returns ([B, S, H, d], None)."""
    if attention_mask is not None:
        raise NotImplementedError("nki_attention: padding masks are not supported (the kernel "
                                  "takes causal or no mask)")
    if dropout:
        raise NotImplementedError("nki_attention: attention dropout is not supported")
    causal = bool(getattr(module, "is_causal", True))
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    out = flash_attention(query, key, value, causal, scale)
    return out.transpose(1, 2).contiguous(), None


def register_flash_attention(name: str = "nki_attention") -> str:
    """Register NKI flash attention with transformers' attention and mask interfaces
    under `name`; returns the name to pass as `attn_implementation`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    AttentionInterface.register(name, nki_flash_attention_forward)
    AttentionMaskInterface.register(name, flash_attention_mask)
    return name
