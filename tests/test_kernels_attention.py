"""trnsim.kernels.attention against an independent NumPy reference: fp32 softmax
attention computed from the same bf16 inputs (ml_dtypes), per head, with the causal
mask as -inf.

Tolerance: the kernels round P (the softmax probabilities; normalized ones for the
naive kernel) to bf16 before the P V matmul and the output to bf16 at the end; all
accumulation is fp32. Rounding P perturbs each product by at most 2^-9 relative, so
|sum_i dp_i v_i| <= 2^-9 * max|v| (sum p_i = 1); the output rounding adds 2^-9 |ref|.
We allow twice each: |out - ref| <= 2^-8 (max|v| + |ref|) elementwise -- a dropped
or misplaced mask, a wrong rescale or a wrong KV head is off by O(0.1) or more here."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
from trnsim.kernels import attention as A

BF16 = ml_dtypes.bfloat16
CHIPS = ["trn1", "trn2", "trn3"]


def _f32(x):
    return np.asarray(x, np.float32)


def ref_attention(q, k, v, causal, scale=None):
    """q [B,H,d,S], k [B,KVH,d,Sk], v [B,KVH,Sk,d] -> [B,H,S,d] fp32."""
    q, k, v = _f32(q), _f32(k), _f32(v)
    B, H, d, S = q.shape
    G = H // k.shape[1]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    out = np.zeros((B, H, S, d), np.float32)
    for b in range(B):
        for h in range(H):
            s = scale * (q[b, h].T.astype(np.float64) @ k[b, h // G])
            if causal:
                s = np.where(np.tril(np.ones(s.shape, bool)), s, -np.inf)
            p = np.exp(s - s.max(-1, keepdims=True))
            out[b, h] = (p / p.sum(-1, keepdims=True)) @ v[b, h // G]
    return out


def ref_decode(q, kT, v, n):
    """q [H,d], kT [KVH,d,>=n], v [KVH,>=n,d] -> [H,d] over the first n keys."""
    q, kT, v = _f32(q), _f32(kT), _f32(v)
    H, d = q.shape
    G = H // kT.shape[0]
    out = np.zeros((H, d), np.float32)
    for h in range(H):
        s = (q[h].astype(np.float64) @ kT[h // G][:, :n]) / np.sqrt(d)
        p = np.exp(s - s.max())
        out[h] = (p / p.sum()) @ v[h // G][:n]
    return out


def check(out, ref, v):
    out = _f32(out)
    assert out.shape == ref.shape
    tol = 2.0 ** -8 * (np.abs(_f32(v)).max() + np.abs(ref))
    err = np.abs(out - ref)
    assert (err <= tol).all(), f"max error {err.max():.4g} (tolerance there {tol.flat[err.argmax()]:.4g})"


def qkv(B, H, KVH, d, S, seed=0, Sk=None):
    rng = np.random.default_rng(seed)
    Sk = S if Sk is None else Sk
    q = rng.standard_normal((B, H, d, S)).astype(BF16)
    k = rng.standard_normal((B, KVH, d, Sk)).astype(BF16)
    v = rng.standard_normal((B, KVH, Sk, d)).astype(BF16)
    return q, k, v


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("d,S,H,KVH", [(64, 512, 2, 2), (128, 512, 2, 1)],
                         ids=["d64-mha", "d128-gqa"])
def test_flash_attention_fwd(chip, causal, d, S, H, KVH):
    q, k, v = qkv(1, H, KVH, d, S)
    out = nki.Simulated(A.flash_attention_fwd, chip=chip)(q, k, v, causal=causal)
    check(out, ref_attention(q, k, v, causal), v)


@pytest.mark.parametrize("chip", CHIPS)
def test_flash_attention_fwd_multi_chunk(chip):
    """1408 keys: two 1024-key steps (rescaling between them), a narrower last step,
    an odd query tile, causal diagonal in both halves of a query-tile pair; B=2, GQA 4:2,
    explicit scale."""
    q, k, v = qkv(2, 4, 2, 64, 1408, seed=1)
    out = nki.Simulated(A.flash_attention_fwd, chip=chip)(q, k, v, causal=True, scale=0.2)
    check(out, ref_attention(q, k, v, True, scale=0.2), v)


# -- fp8 ------------------------------------------------------------------------------
FP8 = {"trn2": ml_dtypes.float8_e4m3, "trn3": ml_dtypes.float8_e4m3fn}


def fp8_qkv(H, KVH, d, S, dt, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, H, d, S)).astype(dt),
            rng.standard_normal((1, KVH, d, S)).astype(dt),
            rng.standard_normal((1, KVH, S, d)).astype(dt))


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_flash_attention_fp8_roundings(chip):
    """One 512-key chunk, so the reference can follow the kernel's roundings exactly:
    fp32 scores, exp in fp32 rounded to bf16 (the transposes) and, on trn3, to fp8 (the
    double_row P V's operand; trn2 keeps P V in bf16), the row sum of the unrounded
    exps; what is left is the bf16 output."""
    dt = FP8[chip]
    q, k, v = fp8_qkv(2, 1, 128, 512, dt, seed=5)
    out = nki.Simulated(A.flash_attention_fwd, chip=chip)(q, k, v, causal=False)
    assert out.dtype == BF16
    Q, K, V = (np.asarray(t, np.float64) for t in (q, k, v))
    for h in range(2):
        s = (Q[0, h].T @ K[0, 0]).astype(np.float32) * np.float32(1 / np.sqrt(128))
        e = np.exp((s - s.max(1, keepdims=True)).astype(np.float64)).astype(np.float32)
        p = e.astype(BF16).astype(dt if chip == "trn3" else BF16).astype(np.float64)
        ref = (p @ V[0, 0]) / e.astype(np.float64).sum(1, keepdims=True)
        np.testing.assert_allclose(_f32(out[0, h]), ref, atol=2 ** -8 * np.abs(ref).max())


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_flash_attention_fp8_causal_gqa_with_scales(chip):
    """Against attention on the dequantized inputs: P's fp8 rounding (e4m3: 2^-4
    relative per probability) averages over the keys; 4% of the output's scale bounds it
    here (observed ~1.5%)."""
    dt = FP8[chip]
    q, k, v = fp8_qkv(2, 1, 64, 1536, dt, seed=6)  # two key chunks: the online rescaling
    out = nki.Simulated(A.flash_attention_fwd, chip=chip)(q, k, v, causal=True, q_scale=0.5,
                                                          k_scale=0.25, v_scale=2.0)
    ref = ref_attention(np.asarray(q, np.float32) * 0.5, np.asarray(k, np.float32) * 0.25,
                        np.asarray(v, np.float32) * 2.0, True)
    np.testing.assert_allclose(_f32(out), ref, atol=0.04 * np.abs(ref).max())


def test_flash_attention_fp8_is_faster_on_trn3_with_a_double_row_pv():
    """The talks' claim: trn3's fast exponential keeps the Tensor Engine fed when the
    attention matmuls go fp8; on trn2 the Vector and Scalar Engines bound the kernel, so
    fp8 leaves its time (within 3%)."""
    z = {n: np.zeros(s, ml_dtypes.float8_e4m3) for n, s in
         (("q", (1, 1, 128, 4096)), ("k", (1, 1, 128, 4096)), ("v", (1, 1, 4096, 128)))}
    t = {}
    for chip in ("trn2", "trn3"):
        for name, dt in (("fp8", None), ("bf16", BF16)):
            args = z if dt is None else {n: a.astype(dt) for n, a in z.items()}
            prof = trnsim.profile(A.flash_attention_fwd, **args, chip=chip, numerics=False,
                                  cache=False)
            t[chip, name] = prof.total_time
            if (chip, name) == ("trn3", "fp8"):
                assert "double_row" in {i.attrs.get("perf_mode")
                                        for i in prof.program.instructions}
    assert t["trn3", "fp8"] < 0.9 * t["trn3", "bf16"]
    assert t["trn2", "fp8"] == pytest.approx(t["trn2", "bf16"], rel=0.03)


def test_flash_attention_fwd_cross_attention():
    """Non-causal with fewer queries than keys (384 x 1152)."""
    q, k, v = qkv(1, 2, 1, 128, 384, seed=2, Sk=1152)
    out = nki.Simulated(A.flash_attention_fwd, chip="trn2")(q, k, v, causal=False)
    check(out, ref_attention(q, k, v, False), v)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_naive_attention(chip, causal):
    q, k, v = qkv(1, 2, 1, 128, 512, seed=3)
    out = nki.Simulated(A.naive_attention, chip=chip)(q, k, v, causal=causal)
    check(out, ref_attention(q, k, v, causal), v)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("n", [700, 1024])
def test_decode_attention(chip, n):
    rng = np.random.default_rng(4)
    B, H, KVH, d, Smax = 2, 8, 2, 128, 1024
    q = rng.standard_normal((B, H, d)).astype(BF16)
    kc = rng.standard_normal((B, KVH, d, Smax)).astype(BF16)
    vc = rng.standard_normal((B, KVH, Smax, d)).astype(BF16)
    out = nki.Simulated(A.decode_attention, chip=chip)(q, kc, vc, n)
    check(out, np.stack([ref_decode(q[b], kc[b], vc[b], n) for b in range(B)]), vc)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("page", [64, 128, 256])
def test_paged_decode_attention(chip, page):
    """Pages in a shuffled order, two sequences of different lengths (one ending
    mid-page, one using fewer pages than the table's width)."""
    rng = np.random.default_rng(5)
    B, H, KVH, d, MP, NPG = 2, 4, 2, 64, 4, 12
    q = rng.standard_normal((B, H, d)).astype(BF16)
    kp = rng.standard_normal((NPG, KVH, d, page)).astype(BF16)
    vp = rng.standard_normal((NPG, KVH, page, d)).astype(BF16)
    bt = np.stack([rng.permutation(NPG)[:MP] for _ in range(B)]).astype(np.int32)
    sl = np.array([[MP * page - 5], [page + 3]], np.int32)
    out = nki.Simulated(A.paged_decode_attention, chip=chip)(q, kp, vp, bt, sl)
    ref = []
    for b in range(B):
        kT = np.concatenate([kp[p] for p in bt[b]], axis=-1)
        v = np.concatenate([vp[p] for p in bt[b]], axis=1)
        ref.append(ref_decode(q[b], kT, v, int(sl[b, 0])))
    check(out, np.stack(ref), vp)


def test_flash_skips_masked_tiles_and_beats_naive():
    """Timing only: causal flash issues about half the QK^T matmul columns of the
    non-causal one and is faster than the naive three-pass kernel."""
    import trnsim
    q, k, v = (np.zeros(a.shape, BF16) for a in qkv(1, 2, 1, 128, 2048))

    def cols(prof):
        return sum(i.attrs.get("N", 0) for i in prof.program.instructions
                   if i.opcode == "nc_matmul" and i.attrs.get("M") == 128
                   and i.attrs.get("K") == 128 and i.attrs.get("N", 0) > 128)

    pc = trnsim.profile(A.flash_attention_fwd, q, k, v, causal=True, numerics=False)
    pf = trnsim.profile(A.flash_attention_fwd, q, k, v, causal=False, numerics=False)
    pn = trnsim.profile(A.naive_attention, q, k, v, causal=True, numerics=False)
    assert cols(pc) < 0.6 * cols(pf)
    assert pc.total_time < pn.total_time / 2


def test_flash_attention_trn3_exps_on_the_vector_engine_keep_the_pe_fed():
    """NeuronCore-v4: the exps are `exponential` on the Vector Engine (no Scalar Engine
    exp), and that is what lifts the Tensor Engine's active share over trn2's (causal
    2K: ~50% on trn2, ~73% on trn3 in trnsim; short sequences are diagonal-heavy)."""
    z = {n: np.zeros(s, BF16) for n, s in
         (("q", (1, 1, 128, 2048)), ("k", (1, 1, 128, 2048)), ("v", (1, 1, 2048, 128)))}
    pe = {}
    for chip in ("trn2", "trn3"):
        prof = trnsim.profile(A.flash_attention_fwd, **z, chip=chip, numerics=False,
                              cache=False)
        ops = {(i.opcode, i.engine) for i in prof.program.instructions}
        assert (("exponential", "vector") in ops) == (chip == "trn3")
        assert (("activation", "scalar") in ops) == (chip == "trn2")
        pe[chip] = prof.summary["tensor_engine_active_time_percent"]
    assert pe["trn3"] > pe["trn2"] + 15
