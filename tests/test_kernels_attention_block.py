"""trnsim.kernels.attention_block against an independent NumPy float64 reference:
x @ w_qkv, split into heads (columns: Q heads, K heads, V heads), causal softmax
attention with GQA (query head h reads KV head h // (H // KVH)), @ w_o. Inputs are bf16
(ml_dtypes); the reference rounds Q, K, V to bf16 where the kernel does (it keeps them
in SBUF in x's dtype), and keeps everything else in float64.

Tolerance. What the reference does not replay: the kernel rounds P (softmax
probabilities) to bf16 before P V, each head's attention output a to bf16 before the
output projection, and y to bf16 at the end (all sums fp32). As in
tests/test_kernels_attention.py, |da| <= 2^-8 (max|v| + |a|) elementwise (twice the
2^-9 bounds); through w_o that is |dy| <= 2^-8 ((max|v| + |a|) @ |w_o|), plus
2^-8 |y| for the final rounding (and fp32-vs-float64 sums flipping a Q/K/V rounding,
which moves a score by ~2^-9 of one term, well inside). This elementwise bound is
rigorous but loose (it adds |w_o| terms whose errors cancel), so the tests also require
the relative Frobenius error ||y - ref|| / ||ref|| <= 2^-7: independent roundings of
relative size <= 2^-9 give ~2^-9 in norm; a wrong mask, KV head, rescale or
projection is off by more than 2^-4 (test_check_catches_wrong_mask shows the causal
mask alone moves y by far more than that)."""
import ml_dtypes
import numpy as np
import pytest

from trnsim import nki
from trnsim.kernels import attention_block as AB

BF16 = ml_dtypes.bfloat16
CHIPS = ["trn2", "trn3"]


def _f64(a):
    return np.asarray(a, np.float64)


def inputs(S, hidden, H, KVH, d, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((S, hidden)).astype(BF16)
    w_qkv = (rng.standard_normal((hidden, (H + 2 * KVH) * d)) / np.sqrt(hidden)).astype(BF16)
    w_o = (rng.standard_normal((H * d, hidden)) / np.sqrt(H * d)).astype(BF16)
    return x, w_qkv, w_o


def reference(x, w_qkv, w_o, H, KVH, causal):
    """-> (y [S, hidden], a [S, H*d] attention outputs, max|v|), float64."""
    S = x.shape[0]
    d = w_qkv.shape[1] // (H + 2 * KVH)
    qkv = _f64((_f64(x) @ _f64(w_qkv)).astype(BF16))
    q = qkv[:, :H * d].reshape(S, H, d)
    k = qkv[:, H * d:(H + KVH) * d].reshape(S, KVH, d)
    v = qkv[:, (H + KVH) * d:].reshape(S, KVH, d)
    G = H // KVH
    a = np.zeros((S, H, d))
    for h in range(H):
        s = q[:, h] @ k[:, h // G].T / np.sqrt(d)
        if causal:
            s = np.where(np.tril(np.ones((S, S), bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        a[:, h] = (p / p.sum(-1, keepdims=True)) @ v[:, h // G]
    a = a.reshape(S, H * d)
    return a @ _f64(w_o), a, np.abs(v).max()


def check(y, ref, a, vmax, w_o):
    y = _f64(y)
    assert y.shape == ref.shape
    tol = 2.0 ** -8 * ((vmax + np.abs(a)) @ np.abs(_f64(w_o)) + np.abs(ref))
    err = np.abs(y - ref)
    assert (err <= tol).all(), \
        f"max error {err.max():.4g} (tolerance there {tol.flat[err.argmax()]:.4g})"
    rel = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert rel <= 2.0 ** -7, f"relative Frobenius error {rel:.3g} > 2^-7"


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("S,hidden,H,KVH,d", [(256, 256, 2, 1, 64), (512, 512, 4, 2, 128),
                                              (384, 384, 4, 1, 64)],
                         ids=["S256-h256-H2-KVH1-d64", "S512-h512-H4-KVH2-d128",
                              "S384-h384-H4-KVH1-d64"])
def test_attention_block(chip, causal, S, hidden, H, KVH, d):
    """S=384: three query tiles (one pair and an odd one); hidden=384: three chunks."""
    x, w_qkv, w_o = inputs(S, hidden, H, KVH, d)
    y = nki.Simulated(AB.attention_block, chip=chip)(x, w_qkv, w_o, H, KVH, causal=causal)
    ref, a, vmax = reference(x, w_qkv, w_o, H, KVH, causal)
    check(y, ref, a, vmax, w_o)


def test_check_catches_wrong_mask():
    """The check is tight enough: the causal kernel's output fails against the
    non-causal reference."""
    x, w_qkv, w_o = inputs(256, 256, 2, 1, 64, seed=1)
    y = nki.Simulated(AB.attention_block, chip="trn2")(x, w_qkv, w_o, 2, 1, causal=True)
    ref, a, vmax = reference(x, w_qkv, w_o, 2, 1, causal=False)
    with pytest.raises(AssertionError):
        check(y, ref, a, vmax, w_o)


def test_no_intermediate_hbm_tensors():
    """Timing-only profile: the kernel's only HBM write is y (Q, K, V and the attention
    output stay on chip), i.e. DMA bytes written to HBM == S * hidden * 2."""
    import trnsim
    S, hidden, H, KVH, d = 512, 256, 2, 1, 128
    x, w_qkv, w_o = (np.zeros(a.shape, BF16) for a in inputs(S, hidden, H, KVH, d))
    prof = trnsim.profile(AB.attention_block, x=x, w_qkv=w_qkv, w_o=w_o, n_heads=H,
                          n_kv_heads=KVH, causal=True, numerics=False, chip="trn2")
    assert prof.summary["hbm_write_bytes"] == S * hidden * 2


@pytest.mark.parametrize("chip", CHIPS)
def test_attention_block_multi_step(chip):
    """S=1408: two 1024-key online-softmax steps (the running max and sum rescaled
    between them), a narrower last step, an odd query tile; GQA 4:2, d=64."""
    x, w_qkv, w_o = inputs(1408, 256, 4, 2, 64, seed=3)
    y = nki.Simulated(AB.attention_block, chip=chip)(x, w_qkv, w_o, 4, 2, causal=True)
    ref, a, vmax = reference(x, w_qkv, w_o, 4, 2, True)
    check(y, ref, a, vmax, w_o)


@pytest.mark.parametrize("chip", CHIPS)
def test_attention_block_batch(chip):
    """x [3, S, hidden]: each sequence attends to itself only, with the shared weights."""
    xs, w_qkv, w_o = zip(*(inputs(256, 256, 2, 1, 64, seed=10 + b) for b in range(3)))
    x = np.stack(xs)
    y = nki.Simulated(AB.attention_block, chip=chip)(x, w_qkv[0], w_o[0], 2, 1, causal=True)
    assert y.shape == x.shape
    for b in range(3):
        ref, a, vmax = reference(x[b], w_qkv[0], w_o[0], 2, 1, True)
        check(y[b], ref, a, vmax, w_o[0])


def test_batch_loads_the_weights_once():
    import trnsim
    S, hidden, H, KVH, d = 256, 256, 2, 1, 64
    _, w_qkv, w_o = (np.zeros(a.shape, BF16) for a in inputs(S, hidden, H, KVH, d))
    reads = {}
    for B in (1, 4):
        prof = trnsim.profile(AB.attention_block, x=np.zeros((B, S, hidden), BF16),
                              w_qkv=w_qkv, w_o=w_o, n_heads=H, n_kv_heads=KVH,
                              numerics=False, chip="trn2", cache=False)
        reads[B] = prof.summary["hbm_read_bytes"]
    # the extra reads of a batch of 4 are the three more sequences' x, nothing else
    assert reads[4] - reads[1] == 3 * S * hidden * 2
