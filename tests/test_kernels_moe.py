"""trnsim.kernels.moe against an independent NumPy reference (float64 math on the same
bf16 inputs), numerics on, on trn2 and trn3, at small shapes: hidden 256, 8-16 experts,
top-2..8, intermediate 128-256, up to 256 tokens, with uniform and skewed routing.

Tolerances. Router: the logits are sums of exact bf16 x bf16 products accumulated in
fp32 PSUM (relative error ~ H * 2^-24), then fp32 exp / reciprocal (a few fp32 ulps):
probabilities to rtol 1e-5; expert ids exactly, on inputs whose top_k-th and next logits
differ by far more than that (asserted, so a tie can never decide a test). Experts: the
kernel rounds the SwiGLU activation to bf16 before the down projection (a matmul input),
which the reference does too; what can differ is an fp32-ulp difference of silu * up
that flips one bf16 rounding (2^-8 relative on one of I terms) plus fp32 accumulation
over H and I and over the top_k experts in another order: atol 2e-4 of the output's
scale covers these by > 10x (observed ~1e-5)."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.kernels import moe

BF16 = ml_dtypes.bfloat16
CHIPS = ("trn2", "trn3")


# -- reference ---------------------------------------------------------------------
def ref_route(x, w_router, top_k):
    logits = np.asarray(x, np.float64) @ np.asarray(w_router, np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)                   # softmax over all experts
    ids = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    p = np.take_along_axis(probs, ids, 1)
    return ids, p / p.sum(1, keepdims=True), logits


def ref_moe(x, w_router, w_gate, w_up, w_down, top_k, capacity=None):
    """y[t] = sum_k p[t, k] * expert_{ids[t, k]}(x[t]); an expert takes at most
    `capacity` (token, expert) pairs, in token order."""
    T, E = x.shape[0], w_router.shape[1]
    ids, p, _ = ref_route(x, w_router, top_k)
    cap = T if capacity is None else capacity
    xf = np.asarray(x, np.float64)
    y = np.zeros((T, x.shape[1]))
    taken = np.zeros(E, int)
    for t in range(T):
        for j in range(top_k):
            e = ids[t, j]
            taken[e] += 1
            if taken[e] > cap:
                continue
            g = xf[t] @ np.asarray(w_gate[e], np.float64)
            u = xf[t] @ np.asarray(w_up[e], np.float64)
            a = (g / (1.0 + np.exp(-g)) * u).astype(np.float32).astype(BF16)
            y[t] += p[t, j] * (np.asarray(a, np.float64) @ np.asarray(w_down[e], np.float64))
    return y, ids


def make(T, H, E, I, top_k, seed=0, skew=False, ordered=False):
    """bf16 inputs. skew: every token shares a direction that experts 0..2 align with,
    so (nearly) every token routes to them. ordered: the top_k are also well separated
    from each other (the router's ids come in descending order)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, H))
    w_router = rng.standard_normal((H, E)) / np.sqrt(H)
    if skew:
        d = rng.standard_normal(H)
        x += 0.7 * d
        w_router[:, :3] += (4.0 - np.arange(3)[None, :] * 0.5) * d[:, None] / H
    x = x.astype(BF16)
    w_router = w_router.astype(BF16)
    w_gate = (rng.standard_normal((E, H, I)) / np.sqrt(H)).astype(BF16)
    w_up = (rng.standard_normal((E, H, I)) / np.sqrt(H)).astype(BF16)
    w_down = (rng.standard_normal((E, I, H)) / np.sqrt(I)).astype(BF16)
    # no near-tie at the top_k boundary (see the module docstring)
    logits = np.sort(np.asarray(x, np.float64) @ np.asarray(w_router, np.float64), 1)[:, ::-1]
    gaps = -np.diff(logits[:, :top_k + 1], axis=1)
    gaps = gaps if ordered else gaps[:, top_k - 1:]
    assert (gaps > 1e-4).all(), "near-tie in the routing: pick another seed"
    return x, w_router, w_gate, w_up, w_down


def run(kernel, *args, chip, **kw):
    out, _ = trnsim.run_kernel(kernel, args, kw, chip=chip)
    return out


def check_y(y, ref):
    assert y.shape == ref.shape and y.dtype == np.float32
    scale = np.abs(ref).max()
    np.testing.assert_allclose(y, ref, rtol=0, atol=2e-4 * scale)


# -- router ------------------------------------------------------------------------
@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("T,E,top_k", [(64, 16, 2), (200, 8, 8), (32, 16, 8)])
def test_router_topk(chip, T, E, top_k):
    x, w_router, *_ = make(T, 256, E, 128, top_k, seed=T + E, ordered=True)
    ids, probs = run(moe.router_topk, x, w_router, top_k, chip=chip)
    rids, rp, _ = ref_route(x, w_router, top_k)
    assert ids.shape == (T, top_k) and probs.shape == (T, top_k)
    np.testing.assert_array_equal(ids.astype(np.int64), rids)
    np.testing.assert_allclose(probs, rp, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


# -- token generation ----------------------------------------------------------------
@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("T,E,I,top_k,skew", [(1, 16, 128, 8, False), (2, 8, 256, 2, False),
                                              (3, 16, 128, 4, True)])
def test_moe_tkg(chip, T, E, I, top_k, skew):
    args = make(T, 256, E, I, top_k, seed=7 + T, skew=skew)
    y = run(moe.moe_tkg, *args, top_k, chip=chip)
    ref, _ = ref_moe(*args, top_k)
    check_y(y, ref)


# -- context encoding ----------------------------------------------------------------
@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("T,E,I,top_k", [(128, 16, 128, 4), (256, 8, 256, 2)])
def test_moe_cte_uniform(chip, T, E, I, top_k):
    args = make(T, 256, E, I, top_k, seed=T + I)
    y = run(moe.moe_cte, *args, top_k, chip=chip)
    ref, ids = ref_moe(*args, top_k)
    counts = np.bincount(ids.ravel(), minlength=E)
    assert counts.max() < 2.5 * T * top_k / E       # roughly balanced
    check_y(y, ref)


@pytest.mark.parametrize("chip", CHIPS)
def test_moe_cte_skewed(chip):
    T, E, I, top_k = 256, 16, 128, 4
    args = make(T, 256, E, I, top_k, seed=4, skew=True)
    y = run(moe.moe_cte, *args, top_k, chip=chip)    # capacity T: nothing dropped
    ref, ids = ref_moe(*args, top_k)
    counts = np.bincount(ids.ravel(), minlength=E)
    assert (counts[:3] > 0.75 * T).all()           # experts 0..2 take most tokens
    check_y(y, ref)


@pytest.mark.parametrize("chip", CHIPS)
def test_moe_cte_capacity_drops_later_tokens(chip):
    """capacity 32 with skewed routing: experts 0..2 keep their first 32 tokens only."""
    T, E, I, top_k, cap = 128, 8, 128, 2, 32
    args = make(T, 256, E, I, top_k, seed=5, skew=True)
    y = run(moe.moe_cte, *args, top_k, chip=chip, capacity=cap)
    ref, ids = ref_moe(*args, top_k, capacity=cap)
    assert np.bincount(ids.ravel(), minlength=E).max() > 2 * cap   # drops happen
    check_y(y, ref)
    full, _ = ref_moe(*args, top_k)
    assert np.abs(full - ref).max() > 0.1 * np.abs(full).max()     # and they matter


def test_moe_tkg_expert_weight_reads_are_not_reported_as_reloads():
    """Each expert's weights are read once, by runtime offset (scalar_offset DMAs into
    one weight tensor); the profile must not call that a reload of the tensor."""
    x, w_router, w_gate, w_up, w_down = make(1, 256, 8, 128, 4)
    prof = trnsim.profile(moe.moe_tkg, x, w_router, w_gate, w_up, w_down, top_k=4,
                          chip="trn2", numerics=False, cache=False)
    assert any(a.indirect for i in prof.program.instructions for a in i.reads)
    assert "tensor_reload" not in [i.rule for i in prof.insights]
