"""Flash attention backward (FlashAttention-2 style): the gradients of
out = softmax(scale * Q K^T [+ causal mask]) V with respect to Q, K and V.

Layout: that of attention.flash_attention_fwd, and each gradient in its input's layout:
  q, dq:   [batch, n_heads,    d, seq]     (Q transposed)
  k, dk:   [batch, n_kv_heads, d, seq_kv]  (K transposed)
  v, dv:   [batch, n_kv_heads, seq_kv, d]
  o, dout: [batch, n_heads,    seq, d]     (the forward's output and its gradient)
  lse:     [batch, n_heads,    seq] fp32   natural-log logsumexp of each query's scaled,
                                           masked scores: log sum_j exp(scale * q.k_j)
Softmax statistics: flash_attention_fwd returns only `out`, so `lse` is optional. Given
(as FlashAttention's forward saves it for its backward; a NumPy or framework forward
yields it), P is recomputed from Q, K and lse. With lse=None the kernel first recomputes
it per head from Q and K (an online max / sum over 512-key blocks, as the forward's
softmax: one more S = Q K^T pass, a sixth more Tensor Engine work but a serial
max -> exp -> sum chain per tile: 1267 instead of 953 us at causal 8K on trn2), so
flash_attention_bwd(q, k, v, flash_attention_fwd(q, k, v), dout) works on its own.

Algorithm, per (batch, KV head), per query head g of its group, per block j of 512 keys
(one PSUM bank of fp32 scores), over the 128-query tiles i that see it (causal: those
from the block's first key tile on; a tile whose diagonal falls inside the block uses
only the keys up to it, the last 128 of them masked):
  S   = Q_i K_j^T                    [128 q, 512 k] PSUM  (stationary Q^T_i, moving K^T_j)
  P   = exp(scale * S - lse_i)       bf16 (Scalar Engine, bias -lse_i)
  dP  = dO_i V_j^T                   PSUM                 (stationary dO^T_i, moving V^T_j)
  dS  = P * (dP - D_i)               bf16, D = rowsum(dO * O) per head; dP - D out of
                                     PSUM half by the Vector, half by the Scalar
                                     Engine, the product on GpSimd
  dV^T_j += dO_i^T P                 PSUM [d, 512]        (stationary dO_i, moving P)
  dK^T_j += Q_i^T dS                 PSUM [d, 512]        (stationary Q_i [q, d], moving dS)
  dQ^T_i += K_j^T dS^T               PSUM [d, 128 q], four 128-key matmuls (dS transposed
                                     on the PE, copied by the Vector Engine), added into an
                                     fp32 SBUF accumulator by the Vector Engine
dV^T and dK^T of a KV head accumulate in fp32 SBUF over the query heads of its group
(GQA: dk/dv are summed over them); scale is applied to dQ and dK once at the end, and
dV^T is transposed back to [S, d] on the PE. All matmul operands are bf16 (q's dtype),
all accumulation fp32. Q [q, d], dO^T, K [k, d] and V^T come from PE transposes.

Per head, SBUF holds Q^T, Q (transposed on the PE), dO, dO^T (transposed on the PE),
the fp32 dQ^T accumulator and, per KV head, the fp32 dK^T and dV^T accumulators; the
[d, seq] ones take seq elements on each of d partitions whatever d is, so about 20 bytes
per token on a partition (160 KiB of the 192 at seq 8K, d 128): seq and seq_kv <= 8K
(longer sequences would spill; a split over key ranges with dK/dV per range is the fix).

Performance (trnsim, causal, B=1 H=1 S=8192 d=128, bf16; docs/kernels.md rows "flash
attention backward"): 953 us on trn2 (MFU 58%, Tensor Engine active 74%), 904 us on
trn3 (MFU 61%, PE 77%). Two choices carry it: dS is computed off the Vector Engine
(which alone was 65% busy and held the PE at ~50%), and query tiles are software-
pipelined (tile i's scores and dS are issued before tile i-1's gradient matmuls), so
the in-order engines always hold independent work: at S=4096 on trn2, 514 -> 348 ->
271 us.

Shapes: d <= 128; seq and seq_kv multiples of 128; causal needs seq == seq_kv;
seq, seq_kv <= 8192 (SBUF, above).
"""
import math

import nki
import nki.isa as nisa
import nki.language as nl

from .attention import _causal_mask  # additive mask of a diagonal block (NEG above it)

P = 128               # partitions / PE contraction / tile size (queries and keys)
DMA_BLOCKS = 16       # 128-row blocks per DMA of a [S, d] tensor
KB = 512              # keys per block: one PSUM bank of fp32 scores, one matmul


def _rows_view(t2d, r0, nb, d):
    """Rows r0 .. r0 + nb*128 of a [S, d] HBM tensor as [128, nb, d]: element [p, i, :]
    is row r0 + i*128 + p."""
    return t2d.ap([[d, P], [P * d, nb], [1, d]], offset=r0 * d)


def _load_rows(t2d, n, d, dtype):
    """A [S, d] HBM tensor (S = n * 128) into SBUF as [128, n, d]."""
    dst = nl.ndarray((P, n, d), dtype=dtype, buffer=nl.sbuf)
    for c in range(0, n, DMA_BLOCKS):
        nb = min(DMA_BLOCKS, n - c)
        nisa.dma_copy(dst=dst[:, c:c + nb, :], src=_rows_view(t2d, c * P, nb, d))
    return dst


def _store_rows(t2d, src, n, d):
    for c in range(0, n, DMA_BLOCKS):
        nb = min(DMA_BLOCKS, n - c)
        nisa.dma_copy(dst=_rows_view(t2d, c * P, nb, d), src=src[:, c:c + nb, :])


def _transpose_to(dst, src, rows, cols, dtype):
    """dst [cols, rows] (SBUF) = src [rows, cols]^T (SBUF), through PSUM on the PE."""
    t_ps = nl.ndarray((cols, rows), dtype=dtype, buffer=nl.psum)
    nisa.nc_transpose(dst=t_ps, data=src)
    nisa.tensor_copy(dst=dst, src=t_ps)


@nki.jit
def flash_attention_bwd(q, k, v, o, dout, lse=None, causal=True, scale=None):
    """Gradients (dq, dk, dv) of flash attention; layout and algorithm in the module
    docstring. Returns dq [B, H, d, S], dk [B, KVH, d, S_kv], dv [B, KVH, S_kv, d] in
    q's dtype."""
    B, H, d, S = q.shape
    Bk, KVH, dk_, Sk = k.shape
    assert (Bk, dk_) == (B, d), f"k {k.shape} does not match q {q.shape}"
    assert tuple(v.shape) == (B, KVH, Sk, d), f"v {v.shape} must be [B, KVH, S_kv, d]"
    assert tuple(o.shape) == (B, H, S, d) and tuple(dout.shape) == (B, H, S, d)
    assert lse is None or tuple(lse.shape) == (B, H, S), f"lse {lse.shape} must be [B, H, S]"
    assert H % KVH == 0, f"n_kv_heads={KVH} must divide n_heads={H}"
    assert d <= P, f"head dim {d} > {P}"
    assert S % P == 0 and Sk % P == 0, "sequence lengths must be multiples of 128"
    assert not causal or S == Sk, "causal attention needs as many keys as queries"
    assert max(S, Sk) <= 8192, "seq, seq_kv <= 8192 (SBUF holds ~20 bytes per token)"
    G = H // KVH
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    dt = q.dtype
    nq, nk = S // P, Sk // P

    dq = nl.ndarray((B, H, d, S), dtype=dt, buffer=nl.shared_hbm)
    dk = nl.ndarray((B, KVH, d, Sk), dtype=dt, buffer=nl.shared_hbm)
    dv = nl.ndarray((B, KVH, Sk, d), dtype=dt, buffer=nl.shared_hbm)
    mask = _causal_mask() if causal else None

    for b in nl.affine_range(B):
        for kvh in nl.affine_range(KVH):
            dkT_acc = nl.ndarray((d, Sk), dtype=nl.float32, buffer=nl.sbuf)
            dvT_acc = nl.ndarray((d, Sk), dtype=nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=dkT_acc, value=0.0)
            nisa.memset(dst=dvT_acc, value=0.0)
            for g in nl.sequential_range(G):
                h = kvh * G + g
                _head_bwd(q, k, v, o, dout, lse, dq, dkT_acc, dvT_acc, b, h, kvh, d, nq, Sk,
                          causal, mask, scale, dt)
            # dK = scale * (sum over the group), dV = the sum, transposed back to [S, d]
            dk_out = nl.ndarray((d, Sk), dtype=dt, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=dk_out, data=dkT_acc, op0=nl.multiply, operand0=scale)
            nisa.dma_copy(dst=dk[b, kvh, :, :], src=dk_out)
            dvT = nl.ndarray((d, Sk), dtype=dt, buffer=nl.sbuf)
            nisa.tensor_copy(dst=dvT, src=dvT_acc)
            dv_out = nl.ndarray((P, nk, d), dtype=dt, buffer=nl.sbuf)
            for t in nl.affine_range(nk):
                _transpose_to(dv_out[:, t, :], dvT[:, t * P:(t + 1) * P], d, P, dt)
            _store_rows(dv[b, kvh], dv_out, nk, d)
    return dq, dk, dv


def _head_bwd(q, k, v, o, dout, lse, dq, dkT_acc, dvT_acc, b, h, kvh, d, nq, Sk, causal,
              mask, scale, dt):
    """One query head: writes dq[b, h], adds its dK^T and dV^T into the accumulators."""
    S = nq * P
    # per-query-tile operands, resident for the head
    qT = nl.ndarray((d, S), dtype=dt, buffer=nl.sbuf)
    nisa.dma_copy(dst=qT, src=q[b, h, :, :])
    do_rows = _load_rows(dout[b, h], nq, d, dt)          # dO  [128 q, i, d]
    o_rows = _load_rows(o[b, h], nq, d, dt)              # O   [128 q, i, d]
    # -lse and -D = -rowsum(dO * O), query i*128 + p at [p, i]
    if lse is None:
        nlse = _neg_lse(qT, k, b, kvh, nq, Sk, d, causal, mask, scale, dt)
    else:
        nlse = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=nlse, src=lse[b, h].ap([[1, P], [P, nq]]))
        nisa.tensor_scalar(dst=nlse, data=nlse, op0=nl.multiply, operand0=-1.0)
    prod = nl.ndarray((P, nq, d), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=prod, data1=do_rows, data2=o_rows, op=nl.multiply)
    nD = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_reduce(dst=nD, op=nl.add, data=prod, axis=2, negate=True)
    q_rows = nl.ndarray((P, nq, d), dtype=dt, buffer=nl.sbuf)   # Q   [128 q, i, d]
    doT = nl.ndarray((d, S), dtype=dt, buffer=nl.sbuf)          # dO^T [d, S]
    for i in nl.affine_range(nq):
        _transpose_to(q_rows[:, i, :], qT[:, i * P:(i + 1) * P], d, P, dt)
        _transpose_to(doT[:, i * P:(i + 1) * P], do_rows[:, i, :], P, d, dt)
    dqT_acc = nl.ndarray((d, S), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=dqT_acc, value=0.0)

    for J in nl.sequential_range((Sk + KB - 1) // KB):
        k0 = J * KB
        kw = min(KB, Sk - k0)
        nt = kw // P
        kT = nl.ndarray((d, KB), dtype=dt, buffer=nl.sbuf)               # K^T block
        nisa.dma_copy(dst=kT[:, :kw], src=k[b, kvh, :, k0:k0 + kw])
        vb = nl.ndarray((P, KB // P, d), dtype=dt, buffer=nl.sbuf)       # V, 128-key tiles
        nisa.dma_copy(dst=vb[:, :nt, :], src=_rows_view(v[b, kvh], k0, nt, d))
        k_rows = nl.ndarray((P, KB // P, d), dtype=dt, buffer=nl.sbuf)   # K, 128-key tiles
        vT = nl.ndarray((d, KB), dtype=dt, buffer=nl.sbuf)               # V^T block
        for t in range(nt):
            _transpose_to(k_rows[:, t, :], kT[:, t * P:(t + 1) * P], d, P, dt)
            _transpose_to(vT[:, t * P:(t + 1) * P], vb[:, t, :], P, d, dt)
        dvT_ps = nl.ndarray((d, KB), dtype=nl.float32, buffer=nl.psum)
        dkT_ps = nl.ndarray((d, KB), dtype=nl.float32, buffer=nl.psum)
        i0 = k0 // P if causal else 0
        # software-pipelined: the scores and dS of tile i are issued before the
        # dV / dK / dQ matmuls of tile i - 1, so every engine has independent work
        prev = None
        for i in range(i0, nq):
            # causal: keys up to the query tile's diagonal, which ends the block's span
            w = min(kw, (i + 1) * P - k0) if causal else kw
            diag = causal and (i + 1) * P - k0 <= kw
            cur = _pair_scores(qT, doT, nlse, nD, kT, vT, i, w, diag, mask, scale, dt)
            if prev is not None:
                _pair_grads(q_rows, do_rows, k_rows, dvT_ps, dkT_ps, dqT_acc, d, dt, *prev)
            prev = cur
        _pair_grads(q_rows, do_rows, k_rows, dvT_ps, dkT_ps, dqT_acc, d, dt, *prev)
        nisa.tensor_tensor(dst=dvT_acc[:, k0:k0 + kw], data1=dvT_acc[:, k0:k0 + kw],
                           data2=dvT_ps[:, :kw], op=nl.add)
        nisa.tensor_tensor(dst=dkT_acc[:, k0:k0 + kw], data1=dkT_acc[:, k0:k0 + kw],
                           data2=dkT_ps[:, :kw], op=nl.add)

    dq_out = nl.ndarray((d, S), dtype=dt, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=dq_out, data=dqT_acc, op0=nl.multiply, operand0=scale)
    nisa.dma_copy(dst=dq[b, h, :, :], src=dq_out)


def _neg_lse(qT, k, b, kvh, nq, Sk, d, causal, mask, scale, dt):
    """-lse of every query of the head, [128, nq] (query i*128 + p at [p, i]), recomputed
    from Q and K when the caller has no forward statistics: per 512-key block and query
    tile, an online max / sum as in the forward (running -max scaled, sums fp32)."""
    nm = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)     # -(running max), scaled
    lsum = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)   # running sum
    nisa.memset(dst=nm, value=1e30)
    nisa.memset(dst=lsum, value=0.0)
    for J in nl.sequential_range((Sk + KB - 1) // KB):
        k0 = J * KB
        kw = min(KB, Sk - k0)
        kT = nl.ndarray((d, KB), dtype=dt, buffer=nl.sbuf)
        nisa.dma_copy(dst=kT[:, :kw], src=k[b, kvh, :, k0:k0 + kw])
        for i in range(k0 // P if causal else 0, nq):
            w = min(kw, (i + 1) * P - k0) if causal else kw
            s_ps = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.psum)
            nisa.nc_matmul(dst=s_ps[:, :w], stationary=qT[:, i * P:(i + 1) * P],
                           moving=kT[:, :w])
            if causal and (i + 1) * P - k0 <= kw:
                nisa.tensor_tensor(dst=s_ps[:, w - P:w], data1=s_ps[:, w - P:w], data2=mask,
                                   op=nl.add)
            m_tile = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_reduce(dst=m_tile, op=nl.maximum, data=s_ps[:, :w], axis=1)
            nm_new = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=nm_new, data=m_tile, op0=nl.multiply, operand0=-scale,
                               op1=nl.minimum, operand1=nm[:, i:i + 1])
            alpha = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.activation(dst=alpha, op=nl.exp, data=nm[:, i:i + 1], bias=nm_new, scale=-1.0)
            e = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.sbuf)
            rsum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.activation(dst=e[:, :w], op=nl.exp, data=s_ps[:, :w], bias=nm_new, scale=scale,
                            reduce_op=nl.add, reduce_res=rsum,
                            reduce_cmd=nisa.reduce_cmd.reset_reduce)
            nisa.scalar_tensor_tensor(dst=lsum[:, i:i + 1], data=lsum[:, i:i + 1],
                                      op0=nl.multiply, operand0=alpha, op1=nl.add,
                                      operand1=rsum)
            nisa.tensor_copy(dst=nm[:, i:i + 1], src=nm_new)
    logl = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=logl, op=nl.log, data=lsum)
    nlse = nl.ndarray((P, nq), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=nlse, data1=nm, data2=logl, op=nl.subtract)
    return nlse


def _pair_scores(qT, doT, nlse, nD, kT, vT, i, w, diag, mask, scale, dt):
    """Query tile i against the first w keys of the current key block (see the module
    docstring), first half: P and dS; `diag`: the last 128 keys hold the diagonal."""
    qs = slice(i * P, (i + 1) * P)
    nt = w // P
    s_ps = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=s_ps[:, :w], stationary=qT[:, qs], moving=kT[:, :w])
    if diag:
        nisa.tensor_tensor(dst=s_ps[:, w - P:w], data1=s_ps[:, w - P:w], data2=mask, op=nl.add)
    p = nl.ndarray((P, KB), dtype=dt, buffer=nl.sbuf)
    nisa.activation(dst=p[:, :w], op=nl.exp, data=s_ps[:, :w], bias=nlse[:, i:i + 1],
                    scale=scale)
    dp_ps = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=dp_ps[:, :w], stationary=doT[:, qs], moving=vT[:, :w])
    # dS = (dP - D) * P: dP - D read out of PSUM by the Vector (first half of the keys)
    # and the Scalar Engine (the rest, as the bias of an activation); the product on
    # GpSimd (SBUF only), so that no engine carries all of the elementwise work
    dpd = nl.ndarray((P, KB), dtype=nl.float32, buffer=nl.sbuf)
    hw = (nt // 2) * P
    if hw:
        nisa.tensor_scalar(dst=dpd[:, :hw], data=dp_ps[:, :hw], op0=nl.add,
                           operand0=nD[:, i:i + 1], engine=nisa.vector_engine)
    nisa.activation(dst=dpd[:, hw:w], op=nl.copy, data=dp_ps[:, hw:w], bias=nD[:, i:i + 1])
    ds = nl.ndarray((P, KB), dtype=dt, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=ds[:, :w], data1=dpd[:, :w], data2=p[:, :w], op=nl.multiply,
                       engine=nisa.gpsimd_engine)
    return i, w, p, ds


def _pair_grads(q_rows, do_rows, k_rows, dvT_ps, dkT_ps, dqT_acc, d, dt, i, w, p, ds):
    """Second half: dV^T, dK^T and dQ^T of query tile i against the w keys."""
    qs = slice(i * P, (i + 1) * P)
    nt = w // P
    nisa.nc_matmul(dst=dvT_ps[:, :w], stationary=do_rows[:, i, :], moving=p[:, :w])
    nisa.nc_matmul(dst=dkT_ps[:, :w], stationary=q_rows[:, i, :], moving=ds[:, :w])
    dsT_ps = nl.ndarray((P, KB // P, P), dtype=dt, buffer=nl.psum)
    for t in range(nt):
        nisa.nc_transpose(dst=dsT_ps[:, t, :], data=ds[:, t * P:(t + 1) * P])
    dsT = nl.ndarray((P, KB // P, P), dtype=dt, buffer=nl.sbuf)
    nisa.tensor_copy(dst=dsT[:, :nt, :], src=dsT_ps[:, :nt, :], engine=nisa.vector_engine)
    dq_ps = nl.ndarray((d, P), dtype=nl.float32, buffer=nl.psum)
    for t in range(nt):
        nisa.nc_matmul(dst=dq_ps, stationary=k_rows[:, t, :], moving=dsT[:, t, :])
    nisa.tensor_tensor(dst=dqT_acc[:, qs], data1=dqT_acc[:, qs], data2=dq_ps, op=nl.add)
