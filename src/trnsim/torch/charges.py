"""What one aten operation costs on a simulated NeuronCore.

Every operation of an unfused PyTorch graph is a separate kernel: it reads its inputs
from HBM and writes its outputs back, so the HBM round trips between operators are
paid. An operation is charged, in this order:

1. **free**: views and aliases (`view`, `transpose`, `expand`, `detach`, ...) and
   `empty`: they move no data;
2. **a library kernel** (`trnsim.kernels`) where one implements the operation: the
   kernel is profiled timing-only at the operation's shapes and dtypes (zero-stride
   NumPy stand-ins: no data is allocated) and the operation costs the kernel's
   predicted time. Routes: `mm`, `addmm` (bias fused; a large one over 2048 rows: one
   2048-row block profiled and repeated, SPLIT_MATMUL_ROWS), `bmm` (one matmul per batch
   entry, back to back), `_softmax` over the last dimension, `native_layer_norm`,
   `_fused_rms_norm`, and scaled-dot-product attention (causal or not, GQA, no mask) to
   flash attention. From 2K x 2K scores per head on, attention is profiled for one
   (batch, KV head) group and repeated: the groups are independent, and what this drops
   (the overlap between consecutive groups) is ~1% of the time (Qwen3-0.6B's 16:8 heads
   on trn2: +1.2% at 2K tokens, -0.4% at 4K); below that, per-group fixed costs
   dominate and the whole call is profiled. Layout: the kernels take the contraction on partitions (`lhsT`
   [K, M]; q and k as [B, H, d, S]); the transposes a compiler would fold into the
   loads are not charged;
3. **a custom operator that runs NKI kernels** (`trnsim.torch.nki_op`, or any custom
   op whose implementation launches kernels on trnsim): the kernels it launched, each
   scheduled from its own run, back to back (identical calls are scheduled once);
4. **a roofline estimate** otherwise, labelled as such: its HBM bytes (inputs read,
   outputs written; a gather such as `embedding` reads only the rows it selects) at
   the bandwidth one core's DMA engines reach, or its elements at
   the Vector Engine's rate, whichever takes longer (matrix products not routed to a
   kernel: their FLOPs at the Tensor Engine's BF16 peak). A kernel that rejects a
   shape (an assertion in the kernel) falls back to the estimate, with its reason.

Not modelled: kernel launch overhead and fusion between operators (an unfused graph is
what this charges; a fused kernel is charged as itself through routes 2-3).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils._pytree import tree_leaves

from ..machine.errors import NkiValidationError
from ..machine.launch import torch_to_numpy_dtype
from ..profile.summary import roofline_bandwidth

aten = torch.ops.aten

# ops that move no data: the outputs alias the inputs (besides func.is_view) or hold none
_FREE = {aten._unsafe_view, aten.lift_fresh, aten.detach, aten.alias, aten.empty,
         aten.empty_strided, aten.empty_like, aten.new_empty, aten.new_empty_strided,
         aten._reshape_alias, aten.sym_size, aten.sym_stride, aten.sym_numel,
         aten.sym_storage_offset, aten.is_same_size, aten.resolve_conj, aten.resolve_neg}
# gathers read only the rows they select: as many bytes as they write
_GATHER = {aten.embedding, aten.index_select, aten.gather, aten.index}
_MATRIX = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.matmul, aten.linear,
           aten.dot, aten.mv, aten.addmv}


@dataclass
class Charge:
    """The cost of one operation on one NeuronCore."""
    op: str                  # "aten.mm.default"
    kernel: str              # "trnsim.kernels.matmul.matmul" or "roofline estimate"
    time: float              # seconds, all `repeat` kernel calls together
    flops: float             # Tensor Engine FLOPs (Neuron Explorer's model FLOPs)
    hbm_bytes: float
    estimate: bool
    repeat: int = 1          # back-to-back identical kernel calls (bmm batch entries)
    note: str = ""           # why an estimate, where a kernel was tried
    profile: object = None   # the kernel's Profile of one call (None with `parts`)
    shapes: tuple = ()
    parts: tuple = ()        # several kernels: (kernel, time, flops, hbm bytes, Profile)


# -- tensors --------------------------------------------------------------------------
def _tensors(x) -> list:
    return [t for t in tree_leaves(x) if isinstance(t, torch.Tensor)]


def _bytes(t: torch.Tensor) -> int:
    """Bytes the tensor's elements occupy: broadcast (stride-0) dimensions count once."""
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


_KERNEL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)  # the library kernels'


def _np_dtype(t: torch.Tensor):
    """The NumPy dtype of a tensor the library kernels take, else None."""
    return torch_to_numpy_dtype(t.dtype) if t.dtype in _KERNEL_DTYPES else None


def _zeros(shape, dtype):
    """A zero array of `shape` that allocates one element (timing-only kernels read
    shapes and dtypes only)."""
    return np.broadcast_to(np.zeros((), dtype), tuple(int(s) for s in shape))


# -- library routes: (kernel, kwargs of stand-ins, repeat) or a reason string ----------
# rows (tokens) per profiled block of a long, large matmul, repeated: the blocks are
# independent, and what this drops (the overlap between consecutive blocks) is ~1% once
# a block is large (K=1024, N=16384, 16384 rows on trn2: 8 x 886.3 us against 7003 us,
# +1.2%; a small one's fixed costs would repeat: K=256, N=1024, 8192 rows, +21%), for
# an eighth of the simulation (Qwen3's LM head at 16K tokens: ~10 s instead of ~100 s)
SPLIT_MATMUL_ROWS = 2048
SPLIT_MATMUL_FLOPS = 2 ** 36  # a block's FLOPs from which a matmul is split (~0.9 ms)

def _mm(a, b, bias=None):
    from ..kernels import matmul as K
    dt = _np_dtype(a)
    if dt is None or a.dtype != b.dtype:
        return f"no matmul kernel for {a.dtype} x {b.dtype}"
    (M, Kd), N = a.shape, b.shape[-1]
    rep = 1
    if (M > SPLIT_MATMUL_ROWS and M % SPLIT_MATMUL_ROWS == 0
            and 2 * SPLIT_MATMUL_ROWS * Kd * N >= SPLIT_MATMUL_FLOPS):
        rep, M = M // SPLIT_MATMUL_ROWS, SPLIT_MATMUL_ROWS
    kw = dict(lhsT=_zeros((Kd, M), dt), rhs=_zeros((Kd, N), dt))
    if bias is not None:
        if bias.dim() > 1 and bias.shape[0] != 1 and bias.stride(0) != 0:
            return "addmm with a full bias matrix: no fused-bias kernel"
        kw["bias"] = _zeros((N,), _np_dtype(bias) or dt)
    return K.matmul, kw, rep


def _route_addmm(args, kw):
    bias, a, b = args[:3]
    return _mm(a, b, bias)


def _route_bmm(args, kw):
    a, b = args[:2]
    r = _mm(a[0], b[0])
    return r if isinstance(r, str) else (r[0], r[1], r[2] * int(a.shape[0]))


def _rows(x, dim):
    if dim not in (-1, x.dim() - 1):
        return None
    return (math.prod(x.shape[:-1]), x.shape[-1])


def _route_softmax(args, kw):
    from ..kernels import norms
    x, dim = args[0], args[1]
    rc, dt = _rows(x, dim), _np_dtype(x)
    if rc is None or dt is None:
        return "softmax over a dimension other than the last, or an unsupported dtype"
    return norms.softmax, dict(x=_zeros(rc, dt)), 1


def _route_layer_norm(args, kw):
    from ..kernels import norms
    x, shape, w, b = args[:4]
    eps = args[4] if len(args) > 4 else 1e-5
    dt = _np_dtype(x)
    if len(shape) != 1 or w is None or b is None or dt is None:
        return "layer norm over several dimensions or without weight and bias"
    rc = _rows(x, -1)
    return norms.layernorm, dict(x=_zeros(rc, dt), gamma=_zeros(rc[1:], _np_dtype(w)),
                                 beta=_zeros(rc[1:], _np_dtype(b)), eps=float(eps)), 1


def _route_rms_norm(args, kw):
    from ..kernels import norms
    x, shape, w = args[:3]
    eps = args[3] if len(args) > 3 and args[3] is not None else 1e-6
    dt = _np_dtype(x)
    if len(shape) != 1 or w is None or dt is None:
        return "rms norm over several dimensions or without weight"
    rc = _rows(x, -1)
    return norms.rmsnorm, dict(x=_zeros(rc, dt), gamma=_zeros(rc[1:], _np_dtype(w)),
                               eps=float(eps)), 1


def _route_sdpa(args, kw):
    q, k, v = args[:3]
    causal = bool(args[4] if len(args) > 4 else kw.get("is_causal", False))
    if kw.get("attn_mask") is not None or (len(args) > 5 and args[5] is not None):
        return "attention with an explicit mask: the flash kernel takes causal or none"
    return attention_call(q, k, v, causal, kw.get("scale"))


SPLIT_ATTENTION_AT = 2048 * 2048  # scores per head from which attention is split


def attention_call(q, k, v, causal, scale=None):
    """flash_attention_fwd for torch-layout q [B, H, S, d], k and v [B, KVH, S_kv, d]."""
    from ..kernels import attention
    dt = _np_dtype(q)
    if dt is None or q.dim() != 4:
        return f"attention on {q.dtype} [{tuple(q.shape)}]"
    B, H, S, d = q.shape
    KVH, Sk = k.shape[1], k.shape[2]
    if H % KVH:
        return f"{H} query heads over {KVH} KV heads"
    rep = 1
    if S * Sk >= SPLIT_ATTENTION_AT:  # one (batch, KV head) group, repeated
        B, H, KVH, rep = 1, H // KVH, 1, B * KVH
    call = dict(q=_zeros((B, H, d, S), dt), k=_zeros((B, KVH, d, Sk), dt),
                v=_zeros((B, KVH, Sk, d), dt), causal=causal)
    if scale is not None:
        call["scale"] = float(scale)
    return attention.flash_attention_fwd, call, rep


ROUTES = {
    aten.mm: lambda a, kw: _mm(a[0], a[1]),
    aten.addmm: _route_addmm,
    aten.bmm: _route_bmm,
    aten._softmax: _route_softmax,
    aten.native_layer_norm: _route_layer_norm,
    aten._fused_rms_norm: _route_rms_norm,
    aten._scaled_dot_product_flash_attention_for_cpu: _route_sdpa,
    aten._scaled_dot_product_flash_attention: _route_sdpa,
    aten._scaled_dot_product_efficient_attention: _route_sdpa,
}

# custom ops (torch op name "ns::name") -> route, as ROUTES' values
CUSTOM_ROUTES: dict = {}


def register_route(name: str, route) -> None:
    """Charge torch op `name` ("ns::name") through `route(args, kwargs)`, which returns
    (kernel, kernel kwargs of stand-ins, repeat) or a reason string for an estimate."""
    CUSTOM_ROUTES[name] = route


# -- the charge -------------------------------------------------------------------------
class Charger:
    """Charges operations on one chip; identical kernel calls are profiled once."""

    def __init__(self, chip, progress=None):
        from ..chips import load_chip
        self.progress = progress
        self.chip = load_chip(chip) if isinstance(chip, str) else chip
        self.bandwidth = roofline_bandwidth(self.chip)
        self._kernels: dict = {}  # call key -> (Profile or None, reason)
        self._ops: dict = {}  # custom op call key -> its launched kernels' parts

    def __call__(self, func, args, kwargs, out, launched=()) -> Charge | None:
        """The charge of `func(*args, **kwargs) == out`; `launched`: the (kernel, Run)
        pairs its execution launched."""
        packet = func.overloadpacket
        if func.is_view or packet in _FREE or func.namespace == "prim":
            return None  # (prim: tensor metadata queries, e.g. a fake tensor's device)
        name = str(func)
        shapes = tuple(tuple(t.shape) for t in _tensors(args))
        note = ""
        route = ROUTES.get(packet) or CUSTOM_ROUTES.get(
            f"{func.namespace}::{packet.__name__.split('.')[-1]}")
        call = route(args, kwargs) if route is not None else None
        if isinstance(call, str):
            note, call = call, None
        if call is None and launched and func.namespace != "aten":
            return self._launched(name, launched, shapes)
        if call is not None:
            prof, why = self._profile(*call[:2])
            if prof is not None:
                s = prof.summary
                rep = call[2]
                return Charge(name, _qualname(call[0]), prof.total_time * rep,
                              s["model_flops"] * rep,
                              (s["hbm_read_bytes"] + s["hbm_write_bytes"]) * rep,
                              False, rep, "", prof, shapes)
            note = why
        return self._estimate(func, name, args, out, shapes, note)

    def _launched(self, name, launched, shapes) -> Charge:
        from ..profile.profile import Profile
        key = (name, shapes, tuple(_qualname(fn) for fn, _ in launched))
        parts = self._ops.get(key)
        if parts is None:
            parts = []
            for fn, run in launched:
                p = Profile.from_run(run)
                s = p.summary
                parts.append((_qualname(fn), p.total_time, s["model_flops"],
                              s["hbm_read_bytes"] + s["hbm_write_bytes"], p))
            self._ops[key] = parts = tuple(parts)
        return Charge(name, " + ".join(p[0] for p in parts), sum(p[1] for p in parts),
                      sum(p[2] for p in parts), sum(p[3] for p in parts), False, 1, "",
                      None, shapes, parts)

    def _profile(self, kernel, kw):
        from ..entry import profile
        key = (_qualname(kernel), tuple(sorted((k, _key(v)) for k, v in kw.items())))
        hit = self._kernels.get(key)
        if hit is None:
            t = time.perf_counter()
            try:
                hit = (profile(kernel, **kw, chip=self.chip, numerics=False), "")
            except (AssertionError, NkiValidationError) as e:
                hit = (None, f"{_qualname(kernel)} rejected the shape: {e}")
            self._kernels[key] = hit
            if self.progress is not None:
                shapes = [v.shape for v in kw.values() if isinstance(v, np.ndarray)]
                p = hit[0]
                how = ("profile cache hit" if getattr(p, "cache", None) == "hit" else
                       f"simulated in {time.perf_counter() - t:.1f} s")
                self.progress(f"{_qualname(kernel)} {shapes}: " + (
                    f"{p.total_time * 1e6:.1f} us ({how})" if p else hit[1]))
        return hit

    def _estimate(self, func, name, args, out, shapes, note) -> Charge:
        ins, outs = _tensors(args), _tensors(out)
        if func.overloadpacket in _GATHER:  # the source table is not read whole
            ins = [t for t in ins if not t.is_floating_point()] + outs  # indices, rows
        nbytes = sum(_bytes(t) for t in ins) + sum(_bytes(t) for t in outs)
        flops = _matrix_flops(func, ins, outs)
        if flops:
            compute = flops / self.chip.core.tensor.peak_bf16_flops
        else:
            v = self.chip.core.vector
            elems = max([t.numel() for t in ins + outs] or [0])
            sixteen = all(t.element_size() <= 2 for t in ins + outs)
            rate = (v.elements_per_cycle_16bit if sixteen else v.elements_per_cycle) * v.clock_hz
            compute = elems / rate
        time = max(nbytes / self.bandwidth, compute)
        return Charge(name, "roofline estimate", time, flops, nbytes, True, 1,
                      note or "no library kernel for this operation", None, shapes)


def _matrix_flops(func, ins, outs) -> float:
    """2 x (multiply-adds) of a matrix product not routed to a kernel, else 0."""
    if func.overloadpacket not in _MATRIX or not outs or len(ins) < 2:
        return 0.0
    a = ins[-2] if func.overloadpacket in (aten.addmm, aten.baddbmm, aten.addmv) else ins[0]
    return 2.0 * outs[0].numel() * a.shape[-1]


def _key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.shape, str(v.dtype))
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    return repr(v)


def _qualname(kernel) -> str:
    fn = getattr(kernel, "fn", None) or getattr(kernel, "func", None) or kernel
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
