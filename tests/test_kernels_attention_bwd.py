"""trnsim.kernels.attention_bwd against an independent NumPy float64 reference of the
attention gradients, derived by hand: with s = scale * Q K^T (masked to -inf above the
diagonal when causal), P = softmax(s) row-wise and O = P V,
  dV = P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(P * dP)),
  dQ = scale * dS K,  dK = scale * dS^T Q,
with rowsum(P * dP) = rowsum(dO * O); under GQA dK and dV of a KV head are summed over
its query heads. The reference also yields lse = max + log(sum exp) and O, which the
kernel takes as inputs (O rounded to bf16, as a bf16 forward would return it).

Tolerance: the kernel rounds P and dS to bf16 before their matmuls (2^-9 relative each),
uses the bf16 O in D = rowsum(dO * O), and rounds each gradient to bf16 at the end; all
sums are fp32. These are independent per-element errors of relative size ~2^-9, so the
gradients' error is ~2^-9..2^-8 of their norm (measured: 2.2e-3..3.0e-3 relative
Frobenius error, max error 2.5e-3..5.2e-3 of the largest |ref|). We allow
||err|| <= 2^-6 ||ref|| and max|err| <= 2^-5 max|ref|: four to six times the measured
error, while a wrong mask, a missing GQA sum, a wrong scale or a wrong D moves the
gradients by O(10%) or more of their norm."""
import ml_dtypes
import numpy as np
import pytest

from trnsim import nki
from trnsim.kernels import attention_bwd as AB

BF16 = ml_dtypes.bfloat16
CHIPS = ["trn1", "trn2", "trn3"]


def _f64(x):
    return np.asarray(np.asarray(x, np.float32), np.float64)


def ref_attention_grads(q, k, v, dout, causal, scale=None):
    """q [B,H,d,S], k [B,KVH,d,Sk], v [B,KVH,Sk,d], dout [B,H,S,d] -> (O, lse, dq, dk, dv)
    in float64, gradients in their inputs' layouts."""
    q, k, v, dout = _f64(q), _f64(k), _f64(v), _f64(dout)
    B, H, d, S = q.shape
    G = H // k.shape[1]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    O = np.zeros((B, H, S, d))
    lse = np.zeros((B, H, S))
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b in range(B):
        for h in range(H):
            Q, K, V, dO = q[b, h].T, k[b, h // G].T, v[b, h // G], dout[b, h]
            s = scale * (Q @ K.T)
            if causal:
                s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
            m = s.max(-1, keepdims=True)
            e = np.exp(s - m)
            z = e.sum(-1, keepdims=True)
            Pm = e / z
            O[b, h] = Pm @ V
            lse[b, h] = (m + np.log(z))[:, 0]
            dP = dO @ V.T
            dS = Pm * (dP - (Pm * dP).sum(-1, keepdims=True))
            dq[b, h] = (scale * dS @ K).T
            dk[b, h // G] += (scale * dS.T @ Q).T
            dv[b, h // G] += Pm.T @ dO
    return O, lse, dq, dk, dv


def check(out, ref, name):
    out = _f64(out)
    assert out.shape == ref.shape, (name, out.shape, ref.shape)
    err = np.abs(out - ref)
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel <= 2.0 ** -6, f"{name}: relative error {rel:.3g}"
    assert err.max() <= 2.0 ** -5 * np.abs(ref).max(), \
        f"{name}: max error {err.max():.4g} vs max|ref| {np.abs(ref).max():.4g}"


def run_bwd(chip, B, H, KVH, d, S, causal, seed=0, scale=None, Sk=None, pass_lse=True):
    rng = np.random.default_rng(seed)
    Sk = S if Sk is None else Sk
    q = rng.standard_normal((B, H, d, S)).astype(BF16)
    k = rng.standard_normal((B, KVH, d, Sk)).astype(BF16)
    v = rng.standard_normal((B, KVH, Sk, d)).astype(BF16)
    dout = rng.standard_normal((B, H, S, d)).astype(BF16)
    O, lse, rdq, rdk, rdv = ref_attention_grads(q, k, v, dout, causal, scale)
    dq, dk, dv = nki.Simulated(AB.flash_attention_bwd, chip=chip)(
        q, k, v, O.astype(BF16), dout, lse.astype(np.float32) if pass_lse else None,
        causal=causal, scale=scale)
    for name, out, ref in (("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        assert np.asarray(out).dtype == BF16, name
        check(out, ref, name)
    return rdq, rdk, rdv


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("d,S,H,KVH", [(64, 512, 2, 2), (128, 256, 2, 1)],
                         ids=["d64-mha", "d128-gqa"])
def test_flash_attention_bwd(chip, causal, d, S, H, KVH):
    run_bwd(chip, 1, H, KVH, d, S, causal)


def test_flash_attention_bwd_batch_gqa4_scale():
    """B=2, GQA 4:2, 640 tokens (a 512-key block and a narrower last one; causal
    diagonals inside both), explicit scale."""
    run_bwd("trn2", 2, 4, 2, 64, 640, True, seed=1, scale=0.2)


def test_flash_attention_bwd_cross_attention():
    """Non-causal with fewer queries than keys (256 x 640: two key blocks)."""
    run_bwd("trn3", 1, 2, 1, 128, 256, False, seed=2, Sk=640)


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_flash_attention_bwd_recomputes_lse(chip, causal):
    """lse=None: the kernel recomputes the row statistics (640 keys: two key blocks);
    GQA 2:1, explicit scale."""
    run_bwd(chip, 1, 2, 1, 64, 640, causal, seed=4, scale=0.15, pass_lse=False)


def test_flash_attention_bwd_after_library_forward():
    """End to end with the library's forward: o from attention.flash_attention_fwd (bf16),
    lse recomputed in the backward; same tolerance against the float64 reference."""
    from trnsim.kernels import attention as A
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 2, 128, 512)).astype(BF16)
    k = rng.standard_normal((1, 1, 128, 512)).astype(BF16)
    v = rng.standard_normal((1, 1, 512, 128)).astype(BF16)
    dout = rng.standard_normal((1, 2, 512, 128)).astype(BF16)
    o = nki.Simulated(A.flash_attention_fwd, chip="trn2")(q, k, v, causal=True)
    dq, dk, dv = nki.Simulated(AB.flash_attention_bwd, chip="trn2")(q, k, v, o, dout)
    _, _, rdq, rdk, rdv = ref_attention_grads(q, k, v, dout, True)
    for name, out, ref in (("dq", dq, rdq), ("dk", dk, rdk), ("dv", dv, rdv)):
        check(out, ref, name)


def test_tolerance_catches_a_wrong_mask():
    """The tolerance is tight enough: the non-causal gradients fail the causal check."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 1, 64, 256)).astype(BF16)
    k = rng.standard_normal((1, 1, 64, 256)).astype(BF16)
    v = rng.standard_normal((1, 1, 256, 64)).astype(BF16)
    dout = rng.standard_normal((1, 1, 256, 64)).astype(BF16)
    causal = ref_attention_grads(q, k, v, dout, True)
    full = ref_attention_grads(q, k, v, dout, False)
    for a, b in zip(causal[2:], full[2:]):
        with pytest.raises(AssertionError):
            check(b, a, "x")
