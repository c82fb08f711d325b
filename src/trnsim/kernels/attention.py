"""Attention kernels: naive (graph-compiler style) attention, flash attention forward,
decode attention over a KV cache, and paged decode attention.

Layout (all kernels; chosen so the Tensor Engine needs no transposes of Q or K):
  q:  [batch, n_heads,    d, seq]   Q transposed: head dim on SBUF partitions, the
                                    contraction of S = Q K^T
  k:  [batch, n_kv_heads, d, seq]   K transposed likewise
  v:  [batch, n_kv_heads, seq, d]   V as is: keys on partitions, the contraction of P V
  out:[batch, n_heads,    seq, d]
GQA: n_kv_heads divides n_heads; query head h reads KV head h // (n_heads // n_kv_heads).
d (head dim) <= 128. dtype: that of q/k/v (bf16 in the tests and benchmarks; fp32 works;
fp8 for flash attention forward).

Flash attention forward tiling: 128 queries (the PE's stationary free size, on
partitions) x 1024 keys (two PSUM banks of fp32 scores, two 512-key matmuls) per
online-softmax step, with a running max and sum per query row; P transposed on the PE
in 128x128 blocks (copied PSUM -> SBUF half by the Vector, half by the Scalar Engine),
P V accumulated in PSUM per step and rescaled into an fp32 SBUF accumulator. Two query
tiles are processed together, stage by stage, so the in-order engines always hold
independent work (PSUM -- 2 x (2 + 1 + 1) banks -- allows no third). K^T and V of a KV
head stay resident in SBUF while all its query heads run (GQA reuse; seq_kv * d <= 4M
elements at bf16). Causal: key steps right of the diagonal are skipped; the step holding
the diagonal is narrowed to the keys some query of the tile sees (it is the loop's last,
so the other iterations are alike) and its last 128x128 block gets a precomputed
additive triangular mask. Shapes: seq and seq_kv multiples of 128, any length up to
the SBUF limit (512..32K at d=128).

NeuronCore-v4 (trn3): the exps run on the Vector Engine (`nisa.exponential`, 4x the
Scalar Engine's rate, subtract-max and row sum fused). It takes no scale, so the Scalar
Engine first moves the scores out of PSUM scaled, in fp32, taking their row max in the
same pass (`activation_reduce`); the Vector Engine, rid of the max, also takes half of
the P^T copies (the odd block of a narrowed diagonal step too). Tensor Engine active 91.6%
at causal 8K, 98% non-causal, against 70% with trn2's mix.

fp8: see flash_attention_fwd.

Performance (trnsim, causal 8K, d=128): Tensor Engine active 64% on trn2 (565 us), 91.6% on
trn3 (366 us); non-causal 66% (1022 us) and 98% (671 us); fp8 579 us on trn2, 327 us on
trn3. trn2: per 1024 keys the Tensor Engine needs ~1.45 us (QK^T, 8
transposes, P V); the Vector Engine ~1.5 us (row max over fp32 PSUM at one element per
cycle, half the P^T copy, the accumulator add) and the Scalar Engine ~1.5 us (exp, the
other half of the copy): the three are balanced, and with only two query tiles in flight
their dependency chains (max -> exp -> transpose -> copy -> P V) leave the PE waiting a
third of the time.

Decode: see decode_attention (all query heads of a sequence on partitions).
"""
import math

import numpy as np

import nki
import nki.isa as nisa
import nki.language as nl

Q_TILE = 128          # queries per tile: PE stationary free size / SBUF partitions
K_CHUNK = 1024        # keys per online-softmax step: two PSUM banks of fp32 scores
K_MM = 512            # keys per matmul: one PSUM bank of fp32
DECODE_CHUNK = 2048   # keys of the KV cache per K DMA in decode
V_DMA_BLOCKS = 16     # 128-key blocks of V per DMA (512 KiB of bf16 at d=128)
P = 128               # partitions / PE contraction
NEG = -30000.0        # additive mask value: exp(scale * NEG - m) == 0 for any sane scale


def _check_qkv(q, k, v):
    B, H, d, S = q.shape
    Bk, KVH, dk, Sk = k.shape
    assert (Bk, dk) == (B, d), f"k {k.shape} does not match q {q.shape}"
    assert tuple(v.shape) == (B, KVH, Sk, d), f"v {v.shape} must be [B, KVH, S_kv, d]"
    assert H % KVH == 0, f"n_kv_heads={KVH} must divide n_heads={H}"
    assert d <= P, f"head dim {d} > {P}"
    return B, H, KVH, d, S, Sk


def _causal_mask():
    """Additive mask of a diagonal 128x128 block: 0 where key j <= query p, else NEG."""
    zeros = nl.ndarray((P, P), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=zeros, value=0.0)
    mask = nl.ndarray((P, P), dtype=nl.float32, buffer=nl.sbuf)
    nisa.affine_select(dst=mask, pattern=[[-1, P]], channel_multiplier=1, on_true_tile=zeros,
                       on_false_value=NEG, cmp_op=nl.greater_equal, offset=0)
    return mask


def _load_kv(k, v, b, kvh, Sk, d, k_too=True):
    """K^T [d, Sk] and V as [128, Sk/128, d] (key block i on free index i), in SBUF."""
    kT = None
    if k_too:
        kT = nl.ndarray((d, Sk), dtype=k.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=kT, src=k[b, kvh, :, :])
    nblk = Sk // P
    vs = nl.ndarray((P, nblk, d), dtype=v.dtype, buffer=nl.sbuf)
    for c in nl.affine_range((nblk + V_DMA_BLOCKS - 1) // V_DMA_BLOCKS):
        nb = min(V_DMA_BLOCKS, nblk - c * V_DMA_BLOCKS)
        nisa.dma_copy(dst=vs[:, c * V_DMA_BLOCKS:c * V_DMA_BLOCKS + nb, :],
                      src=_v_blocks_view(v[b, kvh], c * V_DMA_BLOCKS * P, nb, d))
    return kT, vs


def _is_fp8(dtype) -> bool:
    return "float8" in str(dtype)


def _widened(vs):
    """fp8 V as bf16 (GpSimd, once per KV head): before NeuronCore-v4 the Vector and
    Scalar Engines bound flash attention, and rounding P^T to fp8 for a double_row P V
    would cost them a slower cast (8-bit destination) to save Tensor Engine time that is
    not the bottleneck, so P V stays bf16 there."""
    wide = nl.ndarray(vs.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.tensor_copy(dst=wide, src=vs, engine=nisa.gpsimd_engine)
    return wide


def _v_blocks_view(v2d, k0, nb, d):
    """Rows k0 .. k0 + nb*128 of a [S, d] HBM tensor as [128, nb, d]: element
    [p, i, :] is row k0 + i*128 + p (one DMA for nb key blocks)."""
    return v2d.ap([[d, P], [P * d, nb], [1, d]], offset=k0 * d)


@nki.jit
def flash_attention_fwd(q, k, v, causal=True, scale=None, q_scale=1.0, k_scale=1.0,
                        v_scale=1.0):
    """softmax(scale * Q K^T [+ causal mask]) V with an online softmax; layout in the
    module docstring. seq (queries) and seq_kv multiples of 128; causal needs
    seq == seq_kv. Returns [batch, n_heads, seq, d] in q's dtype (bf16 for fp8 inputs).

    fp8 (q, k, v all float8_e4m3 / e5m2, or e4m3fn on trn3): the values are
    q_scale * q, k_scale * k, v_scale * v (per-tensor dequantization scales); K and V
    take half the HBM bytes and SBUF. Q K^T multiplies the fp8 values at the bf16 rate:
    double_row contracts 256 rows ([128, 2, .]) in the cycles of 128, and d <= 128 as
    [d/2, 2, .] would take as many cycles as the plain matmul. On trn3, P is rounded to
    fp8 (e4m3: 3 mantissa bits) on its way out of PSUM so that P V runs in double_row
    (256 keys per matmul, twice the bf16 rate); before NeuronCore-v4, P V stays bf16
    (see _widened)."""
    B, H, KVH, d, S, Sk = _check_qkv(q, k, v)
    fp8 = _is_fp8(q.dtype)
    assert fp8 == _is_fp8(k.dtype) == _is_fp8(v.dtype), \
        f"q, k, v must all be fp8 or none: {q.dtype}, {k.dtype}, {v.dtype}"
    assert S % Q_TILE == 0 and Sk % P == 0, "sequence lengths must be multiples of 128"
    assert not causal or S == Sk, "causal attention needs as many keys as queries"
    widen = fp8 and nisa.get_nc_version() < nisa.nc_version.gen4  # + a bf16 copy of V
    kv_bytes = Sk * d * (2 * np.dtype(k.dtype).itemsize + (2 if widen else 0)) // P
    assert kv_bytes <= 128 * 1024, \
        "K and V of one KV head must fit in half of SBUF (seq_kv * d <= 4M for bf16)"
    G = H // KVH
    scale = (1.0 / math.sqrt(d) if scale is None else float(scale)) * q_scale * k_scale
    assert scale > 0, "scale must be positive (the running max is kept scaled)"
    KC = min(K_CHUNK, Sk)
    out = nl.ndarray((B, H, S, d), dtype=nl.bfloat16 if fp8 else q.dtype,
                     buffer=nl.shared_hbm)
    mask = _causal_mask() if causal else None
    nq = S // Q_TILE
    npairs, odd = nq // 2, nq % 2

    for b in nl.affine_range(B):
        for kvh in nl.affine_range(KVH):
            kT, vs = _load_kv(k, v, b, kvh, Sk, d)
            if widen:
                vs = _widened(vs)
            for g in nl.affine_range(G):
                h = kvh * G + g
                # two query tiles at a time, interleaved stage by stage, so that the
                # in-order engines always have independent work from the other tile
                for qp in nl.affine_range(npairs):
                    _flash_tiles(q, out, kT, vs, b, h, 2 * qp * Q_TILE, 2, d, Sk, KC,
                                 scale, causal, mask, v_scale)
                if odd:
                    _flash_tiles(q, out, kT, vs, b, h, (nq - 1) * Q_TILE, 1, d, Sk, KC,
                                 scale, causal, mask, v_scale)
    return out


def _flash_tiles(q, out, kT, vs, b, h, q0, ntiles, d, Sk, KC, scale, causal, mask,
                 v_scale=1.0):
    """Query tiles [q0, q0 + ntiles*128) (ntiles 1 or 2) of head h against all keys."""
    two = ntiles == 2
    q1 = q0 + Q_TILE
    pdt = nl.bfloat16 if _is_fp8(q.dtype) else q.dtype  # P out of the exps and transposes
    # NeuronCore-v4: exps on the Vector Engine (nisa.exponential, 4x the Scalar Engine's
    # rate, subtract-max and row sum fused)
    v4 = nisa.get_nc_version() >= nisa.nc_version.gen4
    qa, nma, la, oa = _tile_init(q, b, h, q0, d, v4)
    if two:
        qb, nmb, lb, ob = _tile_init(q, b, h, q1, d, v4)
    # key chunks: all of them, or (causal) up to the one holding the diagonal, which is
    # the last of the loop, so that the loop's other iterations are alike
    last_a = q0 + Q_TILE if causal else Sk
    last_b = q1 + Q_TILE if causal else Sk
    nka = (last_a + KC - 1) // KC
    nk = (last_b + KC - 1) // KC if two else nka
    for ki in nl.sequential_range(nk):
        k0 = ki * KC
        if ki < nka:
            pa, nma, la, alpha_a, wa = _softmax_stage(qa, kT, k0, KC, last_a, q0, causal,
                                                      mask, scale, nma, la, pdt, v4)
        if two:
            pb, nmb, lb, alpha_b, wb = _softmax_stage(qb, kT, k0, KC, last_b, q1, causal,
                                                      mask, scale, nmb, lb, pdt, v4)
        if ki < nka:
            _pv_stage(pa, wa, vs, k0, d, alpha_a, oa, pdt, v4)
        if two:
            _pv_stage(pb, wb, vs, k0, d, alpha_b, ob, pdt, v4)
    _tile_store(out, b, h, q0, d, la, oa, out.dtype, v_scale)
    if two:
        _tile_store(out, b, h, q1, d, lb, ob, out.dtype, v_scale)


def _tile_init(q, b, h, q0, d, v4=False):
    """Q^T of the tile and the online-softmax state: the running max of the scaled
    scores (negated, except for v4), the running sum and the unnormalized output."""
    qT = nl.ndarray((d, Q_TILE), dtype=q.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=qT, src=q[b, h, :, q0:q0 + Q_TILE])
    nm = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    lsum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    o = nl.ndarray((P, d), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=nm, value=-1e30 if v4 else 1e30)
    nisa.memset(dst=lsum, value=0.0)
    nisa.memset(dst=o, value=0.0)
    return qT, nm, lsum, o


def _tile_store(out, b, h, q0, d, lsum, o, dtype, v_scale=1.0):
    inv = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv, data=lsum)
    res = nl.ndarray((P, d), dtype=dtype, buffer=nl.sbuf)
    if v_scale == 1.0:
        nisa.tensor_scalar(dst=res, data=o, op0=nl.multiply, operand0=inv)
    else:
        nisa.tensor_scalar(dst=res, data=o, op0=nl.multiply, operand0=inv,
                           op1=nl.multiply, operand1=float(v_scale))
    nisa.dma_copy(dst=out[b, h, q0:q0 + Q_TILE, :], src=res)


def _softmax_stage(qT, kT, k0, KC, last_key, q0, causal, mask, scale, nm_old, l_old, dtype,
                   v4=False):
    """Scores of one query tile against keys [k0, k0 + w) and their online softmax:
    returns exp(scale*s - m_new) [128, w] in `dtype`, the new -max and sum, the factor
    alpha = exp(m_old - m_new) for the output accumulated so far, and w. v4: the state
    holds +max; the Scalar Engine scales the scores out of PSUM (fp32) taking their row
    max in the same pass, and the exps run on the Vector Engine."""
    w = min(KC, last_key - k0)
    s = nl.ndarray((P, KC), dtype=nl.float32, buffer=nl.psum)
    for c in range(0, w, K_MM):
        nisa.nc_matmul(dst=s[:, c:c + min(K_MM, w - c)], stationary=qT,
                       moving=kT[:, k0 + c:k0 + c + min(K_MM, w - c)])
    if causal and k0 + w > q0:
        # the diagonal 128x128 block is the chunk's last; keys before it are all visible
        nisa.tensor_tensor(dst=s[:, w - P:w], data1=s[:, w - P:w], data2=mask, op=nl.add)
    m_tile = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    p = nl.ndarray((P, KC), dtype=dtype, buffer=nl.sbuf)
    if v4:
        ss = nl.ndarray((P, KC), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation_reduce(dst=ss[:, :w], op=nl.copy, data=s[:, :w], scale=scale,
                               reduce_op=nl.maximum, reduce_res=m_tile)
        return _softmax_v4(ss, p, w, m_tile, nm_old, l_old)
    nisa.tensor_reduce(dst=m_tile, op=nl.maximum, data=s[:, :w], axis=1)
    nm_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=nm_new, data=m_tile, op0=nl.multiply, operand0=-scale,
                       op1=nl.minimum, operand1=nm_old)
    alpha = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=alpha, op=nl.exp, data=nm_old, bias=nm_new, scale=-1.0)
    rsum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p[:, :w], op=nl.exp, data=s[:, :w], bias=nm_new, scale=scale,
                    reduce_op=nl.add, reduce_res=rsum, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    l_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=l_new, data=l_old, op0=nl.multiply, operand0=alpha,
                              op1=nl.add, operand1=rsum)
    return p, nm_new, l_new, alpha, w


def _softmax_v4(s, p, w, m_tile, m_old, l_old):
    m_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=m_new, data1=m_tile, data2=m_old, op=nl.maximum)
    alpha = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.exponential(dst=alpha, src=m_old, max_value=m_new)
    rsum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.exponential(dst=p[:, :w], src=s[:, :w], max_value=m_new, reduce_res=rsum,
                     reduce_cmd=nisa.reduce_cmd.reset_reduce)
    l_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=l_new, data=l_old, op0=nl.multiply, operand0=alpha,
                              op1=nl.add, operand1=rsum)
    return p, m_new, l_new, alpha, w


def _pv_stage(p, w, vs, k0, d, alpha, o, dtype, v4=False):
    """o = o * alpha + p V: p transposed on the PE in 128x128 blocks (keys onto
    partitions), the P V products accumulated in one PSUM tile."""
    nb = w // P
    KC = p.shape[1]
    pT_ps = nl.ndarray((P, KC), dtype=dtype, buffer=nl.psum)
    for i in range(nb):
        nisa.nc_transpose(dst=pT_ps[:, i * P:(i + 1) * P], data=p[:, i * P:(i + 1) * P])
    # PSUM -> SBUF, split between the Vector and Scalar Engines (both are busy with the
    # softmax; neither alone keeps up with the Tensor Engine)
    pT = nl.ndarray((P, KC), dtype=vs.dtype, buffer=nl.sbuf)  # (fp8 V: rounded to fp8)
    # an odd block goes to the Vector Engine on v4 (its exps are the faster), to the
    # Scalar Engine before (the Vector Engine's row max over PSUM is the slower)
    h = ((nb + 1) // 2 if v4 else nb // 2) * P
    if h:
        nisa.tensor_copy(dst=pT[:, :h], src=pT_ps[:, :h], engine=nisa.vector_engine)
    if h < w and nisa.get_nc_version() >= nisa.nc_version.gen3:
        nisa.tensor_copy(dst=pT[:, h:w], src=pT_ps[:, h:w], engine=nisa.scalar_engine)
    elif h < w:  # NeuronCore-v2's Scalar Engine copies through activation
        nisa.activation(dst=pT[:, h:w], op=nl.copy, data=pT_ps[:, h:w])
    o_ps = nl.ndarray((P, d), dtype=nl.float32, buffer=nl.psum)
    kb0 = k0 // P
    pairs = nb // 2 if _is_fp8(vs.dtype) else 0
    for i in range(pairs):  # fp8: two key blocks per matmul, [128, 2, .] double_row
        nisa.nc_matmul(dst=o_ps, stationary=pT[:, 2 * i * P:(2 * i + 2) * P].reshape((P, 2, P)),
                       moving=vs[:, kb0 + 2 * i:kb0 + 2 * i + 2, :],
                       perf_mode=nisa.matmul_perf_mode.double_row)
    for i in range(2 * pairs, nb):
        nisa.nc_matmul(dst=o_ps, stationary=pT[:, i * P:(i + 1) * P], moving=vs[:, kb0 + i, :])
    # o * alpha on GpSimd (SBUF only), + P V on the Vector Engine (reads PSUM)
    nisa.tensor_scalar(dst=o, data=o, op0=nl.multiply, operand0=alpha,
                       engine=nisa.gpsimd_engine)
    nisa.tensor_tensor(dst=o, data1=o, data2=o_ps, op=nl.add)


# -- naive attention: what a graph compiler emits without a fused kernel ------------------

@nki.jit
def naive_attention(q, k, v, causal=True, scale=None):
    """The unfused baseline, in three passes over HBM (layout as flash_attention_fwd):
      1. scores = scale * Q K^T (+ causal mask, every tile computed) -> HBM, fp32;
      2. probs = softmax(scores) row by row (HBM -> SBUF -> HBM, q's dtype);
      3. out = probs V (probs transposed on the PE in 128x128 blocks).
    Tiles: 128 queries x 512 keys for pass 1, whole rows of 128 queries for 2 and 3."""
    B, H, KVH, d, S, Sk = _check_qkv(q, k, v)
    assert S % Q_TILE == 0 and Sk % K_MM == 0, "seq multiple of 128, seq_kv of 512"
    assert not causal or S == Sk
    G = H // KVH
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    scores = nl.ndarray((B, H, S, Sk), dtype=nl.float32, buffer=nl.shared_hbm)
    probs = nl.ndarray((B, H, S, Sk), dtype=q.dtype, buffer=nl.shared_hbm)
    out = nl.ndarray((B, H, S, d), dtype=q.dtype, buffer=nl.shared_hbm)
    nq, nk = S // Q_TILE, Sk // K_MM

    # pass 1: scores
    for b in nl.affine_range(B):
        for h in nl.affine_range(H):
            for qi in nl.affine_range(nq):
                qT = nl.ndarray((d, Q_TILE), dtype=q.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=qT, src=q[b, h, :, qi * Q_TILE:(qi + 1) * Q_TILE])
                for ki in nl.affine_range(nk):
                    kT = nl.ndarray((d, K_MM), dtype=k.dtype, buffer=nl.sbuf)
                    nisa.dma_copy(dst=kT, src=k[b, h // G, :, ki * K_MM:(ki + 1) * K_MM])
                    s_ps = nl.ndarray((P, K_MM), dtype=nl.float32, buffer=nl.psum)
                    nisa.nc_matmul(dst=s_ps, stationary=qT, moving=kT)
                    s = nl.ndarray((P, K_MM), dtype=nl.float32, buffer=nl.sbuf)
                    nisa.activation(dst=s, op=nl.copy, data=s_ps, scale=scale)
                    if causal:
                        m = nl.ndarray((P, K_MM), dtype=nl.float32, buffer=nl.sbuf)
                        # keep where query qi*128 + p >= key ki*512 + j
                        nisa.affine_select(dst=m, pattern=[[-1, K_MM]], channel_multiplier=1,
                                           on_true_tile=s, on_false_value=NEG,
                                           cmp_op=nl.greater_equal,
                                           offset=qi * Q_TILE - ki * K_MM)
                        s = m
                    nisa.dma_copy(dst=scores[b, h, qi * Q_TILE:(qi + 1) * Q_TILE,
                                             ki * K_MM:(ki + 1) * K_MM], src=s)
    # pass 2: softmax
    for b in nl.affine_range(B):
        for h in nl.affine_range(H):
            for qi in nl.affine_range(nq):
                rows = scores[b, h, qi * Q_TILE:(qi + 1) * Q_TILE, :]
                x = nl.ndarray((P, Sk), dtype=nl.float32, buffer=nl.sbuf)
                nisa.dma_copy(dst=x, src=rows)
                neg_max = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
                nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=x, axis=1, negate=True)
                e = nl.ndarray((P, Sk), dtype=nl.float32, buffer=nl.sbuf)
                ssum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
                nisa.activation(dst=e, op=nl.exp, data=x, bias=neg_max, scale=1.0,
                                reduce_op=nl.add, reduce_res=ssum,
                                reduce_cmd=nisa.reduce_cmd.reset_reduce)
                inv = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
                nisa.reciprocal(dst=inv, data=ssum)
                pr = nl.ndarray((P, Sk), dtype=q.dtype, buffer=nl.sbuf)
                nisa.tensor_scalar(dst=pr, data=e, op0=nl.multiply, operand0=inv)
                nisa.dma_copy(dst=probs[b, h, qi * Q_TILE:(qi + 1) * Q_TILE, :], src=pr)
    # pass 3: probs V
    for b in nl.affine_range(B):
        for h in nl.affine_range(H):
            _, vs = _load_kv(k, v, b, h // G, Sk, d, k_too=False)
            for qi in nl.affine_range(nq):
                pr = nl.ndarray((P, Sk), dtype=q.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=pr, src=probs[b, h, qi * Q_TILE:(qi + 1) * Q_TILE, :])
                o_ps = nl.ndarray((P, d), dtype=nl.float32, buffer=nl.psum)
                for kb in nl.affine_range(Sk // P):
                    t_ps = nl.ndarray((P, P), dtype=q.dtype, buffer=nl.psum)
                    nisa.nc_transpose(dst=t_ps, data=pr[:, kb * P:(kb + 1) * P])
                    t = nl.ndarray((P, P), dtype=q.dtype, buffer=nl.sbuf)
                    nisa.tensor_copy(dst=t, src=t_ps)
                    nisa.nc_matmul(dst=o_ps, stationary=t, moving=vs[:, kb, :])
                o = nl.ndarray((P, d), dtype=q.dtype, buffer=nl.sbuf)
                nisa.tensor_copy(dst=o, src=o_ps)
                nisa.dma_copy(dst=out[b, h, qi * Q_TILE:(qi + 1) * Q_TILE, :], src=o)
    return out


# -- decode (token generation) ---------------------------------------------------------

def _decode_q(q, b, h0, G, d, dtype):
    """q[b, h0:h0+G, :] ([G, d]) transposed on the PE to [d, G] (the stationary)."""
    qg = nl.ndarray((G, d), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=qg, src=q[b, h0:h0 + G, :])
    qT_ps = nl.ndarray((d, G), dtype=dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=qT_ps, data=qg)
    qT = nl.ndarray((d, G), dtype=dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=qT, src=qT_ps)
    return qT


def _decode_softmax_pv(s, n, G, d, pv_blocks, dtype):
    """softmax over s [G, n] (fp32, already scaled and masked) then sum_i p_i v_i, with
    `pv_blocks` yielding (key offset, keys, V block [keys, d] in SBUF); returns the
    normalized [G, d] fp32 output tile."""
    neg_max = nl.ndarray((G, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=s[:, :n], axis=1, negate=True)
    p = nl.ndarray((G, n), dtype=dtype, buffer=nl.sbuf)
    ssum = nl.ndarray((G, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p, op=nl.exp, data=s[:, :n], bias=neg_max, scale=1.0,
                    reduce_op=nl.add, reduce_res=ssum, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    inv = nl.ndarray((G, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv, data=ssum)
    o_ps = nl.ndarray((G, d), dtype=nl.float32, buffer=nl.psum)
    group = []
    for blk in pv_blocks:
        group.append(blk)
        if len(group) == V_DMA_BLOCKS:
            _decode_pv_group(group, p, o_ps, G, dtype)
            group = []
    if group:
        _decode_pv_group(group, p, o_ps, G, dtype)
    o = nl.ndarray((G, d), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=o, data=o_ps, op0=nl.multiply, operand0=inv)
    return o


def _decode_pv_group(group, p, o_ps, G, dtype):
    """o_ps += p[:, keys] V for up to 16 key blocks: their P^T blocks transposed into
    one PSUM tile and copied to SBUF at once."""
    n = len(group)
    pT_ps = nl.ndarray((P, V_DMA_BLOCKS * G), dtype=dtype, buffer=nl.psum)
    for i, (k0, w, _) in enumerate(group):
        nisa.nc_transpose(dst=pT_ps[:w, i * G:(i + 1) * G], data=p[:, k0:k0 + w])
    pT = nl.ndarray((P, V_DMA_BLOCKS * G), dtype=dtype, buffer=nl.sbuf)
    wmax = max(w for _, w, _ in group)
    if wmax == P and all(w == P for _, w, _ in group):
        nisa.tensor_copy(dst=pT[:, :n * G], src=pT_ps[:, :n * G])
    else:
        for i, (_, w, _) in enumerate(group):
            nisa.tensor_copy(dst=pT[:w, i * G:(i + 1) * G], src=pT_ps[:w, i * G:(i + 1) * G])
    for i, (_, w, vblk) in enumerate(group):
        nisa.nc_matmul(dst=o_ps, stationary=pT[:w, i * G:(i + 1) * G], moving=vblk[:w, :])


def _exp_rows(s, H, n, dtype):
    """p = exp(s - rowmax) [H, n] in `dtype` and 1 / its row sums [H, 1] fp32: a
    softmax over the free dim, left unnormalized (the caller scales P V by `inv`)."""
    neg_max = nl.ndarray((H, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=s, axis=1, negate=True)
    p = nl.ndarray((H, n), dtype=dtype, buffer=nl.sbuf)
    ssum = nl.ndarray((H, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=p, op=nl.exp, data=s, bias=neg_max, scale=1.0,
                    reduce_op=nl.add, reduce_res=ssum, reduce_cmd=nisa.reduce_cmd.reset_reduce)
    inv = nl.ndarray((H, 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv, data=ssum)
    return p, inv


def _store_heads(o_ps, inv, out, b, KVH, G, d):
    """Normalize and store sequence b's heads: head kvh * G + g is o_ps[g, kvh, :], its
    1 / row sum inv[kvh * G + g] (moved to partitions 0..G-1, where its output is)."""
    for kvh in nl.affine_range(KVH):
        inv_g = nl.ndarray((G, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=inv_g, src=inv[kvh * G:(kvh + 1) * G, :])
        res = nl.ndarray((G, d), dtype=out.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=res, data=o_ps[:, kvh, :], op0=nl.multiply, operand0=inv_g)
        nisa.dma_copy(dst=out[b, kvh * G:(kvh + 1) * G, :], src=res)


@nki.jit
def decode_attention(q, k_cache, v_cache, seq_len, scale=None):
    """One new token per sequence attending to the first `seq_len` cached keys.

    q: [batch, n_heads, d]; k_cache: [batch, n_kv_heads, d, max_seq] (K transposed, as
    in flash_attention_fwd); v_cache: [batch, n_kv_heads, max_seq, d]; seq_len: a
    Python int (compile time), 1 <= seq_len <= max_seq; n_heads <= 128. Returns
    [batch, n_heads, d].

    Per sequence, all H query heads sit on H partitions: Q^T [d, H] is the stationary of
    every score matmul (the M free size costs no Tensor Engine time), so each KV head's
    K tile yields the scores of all heads, of which its G = H / n_kv_heads rows are
    kept; the softmax then runs once over [H, seq_len] (fp32, in SBUF) rather than once
    per KV head, and each P^T block (one PE transpose) serves all KV heads. K and V are
    each read once, in 2048-key DMAs split over two queues."""
    B, H, d = q.shape
    _, KVH, dk, Smax = k_cache.shape
    assert dk == d and tuple(v_cache.shape) == (B, KVH, Smax, d) and H % KVH == 0
    assert H <= P and d <= P
    n = int(seq_len)
    assert 1 <= n <= Smax
    G = H // KVH
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    out = nl.ndarray((B, H, d), dtype=q.dtype, buffer=nl.shared_hbm)
    for b in nl.affine_range(B):
        qT = _decode_q(q, b, 0, H, d, q.dtype)
        s = nl.ndarray((H, n), dtype=nl.float32, buffer=nl.sbuf)
        for kvh in nl.affine_range(KVH):
            r0 = kvh * G
            for c0 in range(0, n, DECODE_CHUNK):
                cw = min(DECODE_CHUNK, n - c0)
                kT = nl.ndarray((d, DECODE_CHUNK), dtype=k_cache.dtype, buffer=nl.sbuf)
                # two halves on two DMA queues (one queue per DMA statement)
                hw = cw // 2
                if hw:
                    nisa.dma_copy(dst=kT[:, :hw], src=k_cache[b, kvh, :, c0:c0 + hw])
                nisa.dma_copy(dst=kT[:, hw:cw], src=k_cache[b, kvh, :, c0 + hw:c0 + cw])
                for k0 in range(0, cw, K_MM):
                    w = min(K_MM, cw - k0)
                    s_ps = nl.ndarray((H, K_MM), dtype=nl.float32, buffer=nl.psum)
                    nisa.nc_matmul(dst=s_ps[:, :w], stationary=qT, moving=kT[:, k0:k0 + w])
                    # this KV head's G rows, scaled, PSUM -> SBUF (same partitions)
                    nisa.activation(dst=s[r0:r0 + G, c0 + k0:c0 + k0 + w], op=nl.copy,
                                    data=s_ps[r0:r0 + G, :w], scale=scale)
        p, inv = _exp_rows(s, H, n, q.dtype)
        # P^T of 128-key blocks, V_DMA_BLOCKS blocks per PSUM tile and per copy
        nblk = (n + P - 1) // P
        pT = nl.ndarray((P, nblk, H), dtype=q.dtype, buffer=nl.sbuf)
        for g0 in range(0, nblk, V_DMA_BLOCKS):
            g1 = min(nblk, g0 + V_DMA_BLOCKS)
            pT_ps = nl.ndarray((P, V_DMA_BLOCKS, H), dtype=q.dtype, buffer=nl.psum)
            for i in range(g0, g1):
                w = min(P, n - i * P)
                nisa.nc_transpose(dst=pT_ps[:w, i - g0, :], data=p[:, i * P:i * P + w])
            if n % P == 0 or g1 < nblk:
                nisa.tensor_copy(dst=pT[:, g0:g1, :], src=pT_ps[:, :g1 - g0, :])
            else:
                if g1 - 1 > g0:
                    nisa.tensor_copy(dst=pT[:, g0:g1 - 1, :], src=pT_ps[:, :g1 - 1 - g0, :])
                w = n % P
                nisa.tensor_copy(dst=pT[:w, g1 - 1, :], src=pT_ps[:w, g1 - 1 - g0, :])
        o_ps = nl.ndarray((G, KVH, d), dtype=nl.float32, buffer=nl.psum)
        for kvh in nl.affine_range(KVH):
            r0 = kvh * G
            nfull = n // P
            for c in range(0, nfull, V_DMA_BLOCKS):     # whole 128-key blocks
                nb = min(V_DMA_BLOCKS, nfull - c)
                vb = nl.ndarray((P, V_DMA_BLOCKS, d), dtype=v_cache.dtype, buffer=nl.sbuf)
                hb = nb // 2
                if hb:
                    nisa.dma_copy(dst=vb[:, :hb, :],
                                  src=_v_blocks_view(v_cache[b, kvh], c * P, hb, d))
                nisa.dma_copy(dst=vb[:, hb:nb, :],
                              src=_v_blocks_view(v_cache[b, kvh], (c + hb) * P, nb - hb, d))
                for i in range(nb):
                    nisa.nc_matmul(dst=o_ps[:, kvh, :], stationary=pT[:, c + i, r0:r0 + G],
                                   moving=vb[:, i, :])
            if n % P:
                w = n % P
                vt = nl.ndarray((P, d), dtype=v_cache.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=vt[:w, :], src=v_cache[b, kvh, n - w:n, :])
                nisa.nc_matmul(dst=o_ps[:, kvh, :], stationary=pT[:w, nfull, r0:r0 + G],
                               moving=vt[:w, :])
        _store_heads(o_ps, inv, out, b, KVH, G, d)
    return out


def _dma_spread(i, dst, src):
    """dma_copy on one of four DMA queues by i % 4 (a queue per DMA statement): the
    page-sized transfers of paged attention are many and small, one queue serializes
    them."""
    r = i % 4
    if r == 0:
        nisa.dma_copy(dst=dst, src=src)
    elif r == 1:
        nisa.dma_copy(dst=dst, src=src)
    elif r == 2:
        nisa.dma_copy(dst=dst, src=src)
    else:
        nisa.dma_copy(dst=dst, src=src)


@nki.jit
def paged_decode_attention(q, k_pages, v_pages, block_table, seq_lens, scale=None):
    """decode_attention over a paged KV cache.

    q: [batch, n_heads, d] (n_heads <= 128); k_pages: [n_pages, n_kv_heads, d,
    page_size] (each page's K transposed); v_pages: [n_pages, n_kv_heads, page_size, d];
    block_table: int32 [batch, max_pages] (page of each sequence's j-th block of keys);
    seq_lens: int32 [batch, 1] (keys per sequence, 1..max_pages*page_size). Both are
    device tensors read at run time: each page is a runtime indirect select of the page
    dim (`tensor.select(0, block_table tile)`) consumed by the DMA, and keys at or past
    seq_len get an additive mask from an iota compared against seq_len. Every sequence
    runs max_pages pages (entries past its length must still name valid pages, e.g. 0).
    page_size divides 128 or is a multiple of it, at most 512. As in decode_attention,
    all query heads of a sequence sit on partitions and share one softmax."""
    B, H, d = q.shape
    NPG, KVH, dk, PS = k_pages.shape
    _, MP = block_table.shape
    assert dk == d and tuple(v_pages.shape) == (NPG, KVH, PS, d) and H % KVH == 0
    assert PS <= K_MM and (P % PS == 0 or PS % P == 0) and H <= P
    assert (MP * PS) % P == 0 or MP * PS < P, "max_pages * page_size: a multiple of 128"
    G = H // KVH
    n = MP * PS
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    out = nl.ndarray((B, H, d), dtype=q.dtype, buffer=nl.shared_hbm)

    # key positions 0..n-1 on every head's partition (fp32, exact below 2^24)
    pos = nl.ndarray((H, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.iota(dst=pos, pattern=[[1, n]], offset=0, channel_multiplier=0)
    for b in nl.affine_range(B):
        bt = nl.ndarray((1, MP), dtype=nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=bt, src=block_table[b:b + 1, :])
        sl_i = nl.ndarray((H, 1), dtype=nl.int32, buffer=nl.sbuf)
        nisa.dma_copy(dst=sl_i, src=seq_lens.ap([[0, H], [1, 1]], offset=b))  # broadcast
        sl = nl.ndarray((H, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=sl, src=sl_i)
        # mask = NEG where pos >= seq_len, else 0
        mask = nl.ndarray((H, n), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=mask, data=pos, op0=nl.greater_equal, operand0=sl,
                           op1=nl.multiply, operand1=NEG)
        qT = _decode_q(q, b, 0, H, d, q.dtype)
        s = nl.ndarray((H, n), dtype=nl.float32, buffer=nl.sbuf)
        for kvh in nl.affine_range(KVH):
            r0 = kvh * G
            for j in range(MP):
                k0 = j * PS
                kT = nl.ndarray((d, PS), dtype=k_pages.dtype, buffer=nl.sbuf)
                _dma_spread(j, kT, k_pages[:, kvh, :, :].select(0, bt[0:1, j:j + 1]))
                s_ps = nl.ndarray((H, PS), dtype=nl.float32, buffer=nl.psum)
                nisa.nc_matmul(dst=s_ps, stationary=qT, moving=kT)
                # this KV head's G rows: s = scale * scores + mask (same partitions)
                nisa.scalar_tensor_tensor(dst=s[r0:r0 + G, k0:k0 + PS], data=s_ps[r0:r0 + G, :],
                                          op0=nl.multiply, operand0=scale, op1=nl.add,
                                          operand1=mask[r0:r0 + G, k0:k0 + PS])
        p, inv = _exp_rows(s, H, n, q.dtype)
        # P^T of 128-key blocks (n is a multiple of 128 or smaller than it)
        nblk = (n + P - 1) // P
        bw = min(P, n)
        pT = nl.ndarray((P, nblk, H), dtype=q.dtype, buffer=nl.sbuf)
        for g0 in range(0, nblk, V_DMA_BLOCKS):
            g1 = min(nblk, g0 + V_DMA_BLOCKS)
            pT_ps = nl.ndarray((P, V_DMA_BLOCKS, H), dtype=q.dtype, buffer=nl.psum)
            for i in range(g0, g1):
                nisa.nc_transpose(dst=pT_ps[:bw, i - g0, :], data=p[:, i * P:i * P + bw])
            nisa.tensor_copy(dst=pT[:bw, g0:g1, :], src=pT_ps[:bw, :g1 - g0, :])
        o_ps = nl.ndarray((G, KVH, d), dtype=nl.float32, buffer=nl.psum)
        per = max(1, P // PS)           # pages per 128-key block
        for kvh in nl.affine_range(KVH):
            r0 = kvh * G
            for i in range(nblk):
                vb = nl.ndarray((P, d), dtype=v_pages.dtype, buffer=nl.sbuf)
                if PS >= P:
                    j, c = (i * P) // PS, (i * P) % PS
                    _dma_spread(i, vb, v_pages[:, kvh, c:c + P, :].select(0, bt[0:1, j:j + 1]))
                else:
                    for jj in range(min(per, MP - i * per)):
                        j = i * per + jj
                        _dma_spread(j, vb[jj * PS:(jj + 1) * PS, :],
                                    v_pages[:, kvh, :, :].select(0, bt[0:1, j:j + 1]))
                nisa.nc_matmul(dst=o_ps[:, kvh, :], stationary=pT[:bw, i, r0:r0 + G],
                               moving=vb[:bw, :])
        _store_heads(o_ps, inv, out, b, KVH, G, d)
    return out
