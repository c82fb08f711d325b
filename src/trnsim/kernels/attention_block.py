"""The fused attention block: QKV projection -> flash attention -> output projection in
one kernel, with Q, K, V and the attention output never leaving the chip.

    y = concat_h( softmax(scale * Q_h K_{h//G}^T [+ causal mask]) V_{h//G} ) @ w_o
    [Q | K | V] = x @ w_qkv

Shapes: x [S, hidden] (or [B, S, hidden]: a batch, sequence after sequence), w_qkv [hidden, (H + 2*KVH) * d] with the columns
ordered Q heads 0..H-1, then K heads, then V heads (d columns each); w_o [H*d, hidden];
y [S, hidden] in x's dtype. GQA: query head h reads KV head h // (H // KVH). S and hidden
multiples of 128, d <= 128, KVH * d <= 512 is not required (V is produced 512 columns at
a time). Scale 1/sqrt(d).

Design (every product on the Tensor Engine, dst[M, N] = stationary[K, M]^T @ moving[K, N]):
  1. x^T [128, hidden/128, S] (hidden on partitions, chunk c on the free index): x is
     read from HBM 128 tokens at a time and transposed on the PE in 128x128 blocks. It
     is the only transpose of the projections.
  2. K^T per KV head, [d, S] = w_k^T x^T: stationary a [128, d] slice of w_k, moving 512
     tokens of x^T, accumulated over the hidden chunks in PSUM -- head dim on partitions,
     the layout QK^T wants, with no transpose. V [128 keys, S/128, d] per KV head =
     x w_v: stationary 128 tokens of x^T, moving 512 columns of w_v (all KV heads at
     once), keys on partitions, the layout P V wants. Both rounded to x's dtype in SBUF.
  3. Query tiles two at a time (as flash_attention_fwd, so the in-order engines hold
     independent work); per query head: the online-softmax loop over 1024-key steps
     using trnsim.kernels.attention's `_softmax_stage` / `_pv_stage` (importable helpers
     that take SBUF tiles; causal key steps right of the diagonal skipped), then the
     output normalized into a [128, d] tile of x's dtype. Q^T [d, 256] = w_q^T x^T of
     the *next* head is issued right after this head's first QK^T, where the Tensor
     Engine would otherwise wait for the max and exp before transposing P.
  4. Output projection, deferred by one pair into the same Tensor Engine gaps (a
     queue of steps, a few per head): the pair's normalized outputs transposed on the
     PE into attn^T [d, H, 256] (SBUF), then per tile and 512 output columns y = sum_h
     attn_h^T[d,128]^T @ w_o[h*d:(h+1)*d, columns], the heads accumulated in one PSUM
     bank, rounded and DMAed out -- the only HBM write of the kernel. The last pair's
     queue runs at the end.

Stays in SBUF for the whole kernel: x^T, K^T and V of every KV head, w_q and w_o (and
w_k / w_v until step 2 ends). At Qwen3-0.6B (hidden 1024, H 16, KVH 8, d 128, S 2048)
that is 32 KiB per partition each for x^T, K^T, V, w_q, w_o (160 of trn2's 192 KiB):
SBUF bounds S * (hidden + 2*KVH*d) and hidden * H * d. Per query-tile pair: Q^T of the
current and next head, the softmax state, the normalized outputs of all heads and, while
the next pair runs, their attn^T and y tiles (about 4 * H * d + 2 * hidden bytes per
partition at bf16).
HBM traffic: x, w_qkv, w_o in, y out. Larger shapes still run in trnsim (its allocator
spills to HBM, slower) but would not compile for hardware.

Performance (trnsim, Qwen3-0.6B layer above, causal): trn2 966 us (MFU 58%, PE 76%),
trn3 844 us (66%, 85%; with flash_attention_fwd's trn3 softmax, exps on the Vector
Engine), against 1094 us on trn2 for the three unfused library kernels (QKV matmul +
flash_attention_fwd + output matmul); a batch of 4 such sequences 3786 / 3292 us (the
weights are loaded once); see
benchmarks/kernel_cases/attention_block.py.

Limits: scale fixed at 1/sqrt(d); S <= the SBUF bound above;
K/V projected up front (~110 us of Tensor Engine work at the shape above before the
first score); `_softmax_stage` / `_pv_stage` are private helpers of attention.py, so a
change to their signatures must be mirrored here.
"""
import math

import nki
import nki.isa as nisa
import nki.language as nl

from .attention import K_CHUNK, P, Q_TILE, _causal_mask, _pv_stage, _softmax_stage

N_MM = 512   # moving free size of one matmul: one PSUM bank of fp32


def _copy(dst, src, i):
    """PSUM -> SBUF copy, alternating between the Vector and Scalar Engines by i."""
    if i % 2 == 0:
        nisa.tensor_copy(dst=dst, src=src, engine=nisa.vector_engine)
    else:
        nisa.activation(dst=dst, op=nl.copy, data=src)


@nki.jit
def attention_block(x, w_qkv, w_o, n_heads, n_kv_heads, causal=True):
    """Fused QKV projection, flash attention (GQA, online softmax) and output
    projection of one sequence x [S, hidden] or a batch x [B, S, hidden] (the weights
    loaded once, the sequences one after another); see the module docstring. Returns y
    of x's shape."""
    batched = len(x.shape) == 3
    B, S, hidden = x.shape if batched else (1, *x.shape)
    H, KVH = int(n_heads), int(n_kv_heads)
    assert H % KVH == 0, f"n_kv_heads={KVH} must divide n_heads={H}"
    ncols = w_qkv.shape[1]
    assert w_qkv.shape[0] == hidden and ncols % (H + 2 * KVH) == 0, \
        f"w_qkv {w_qkv.shape} must be [hidden={hidden}, (H + 2*KVH) * d]"
    d = ncols // (H + 2 * KVH)
    assert d <= P, f"head dim {d} > {P}"
    assert tuple(w_o.shape) == (H * d, hidden), f"w_o {w_o.shape} must be [{H * d}, {hidden}]"
    assert S % Q_TILE == 0 and hidden % P == 0, "S and hidden must be multiples of 128"
    dt = x.dtype
    G = H // KVH
    scale = 1.0 / math.sqrt(d)
    KC = min(K_CHUNK, S)
    nc = hidden // P          # hidden chunks (contraction of the projections)
    nblk = S // P             # 128-token blocks
    y = nl.ndarray((B, S, hidden), dtype=dt, buffer=nl.shared_hbm)
    x3 = x if batched else x.reshape((1, S, hidden))

    # weights into SBUF, hidden rows c*128 + p at [p, c, :]
    wq = nl.ndarray((P, nc, H * d), dtype=dt, buffer=nl.sbuf)
    nisa.dma_copy(dst=wq, src=w_qkv.ap([[ncols, P], [P * ncols, nc], [1, H * d]], offset=0))
    nkv = KVH * d
    wkv = nl.ndarray((P, nc, 2 * nkv), dtype=dt, buffer=nl.sbuf)
    nisa.dma_copy(dst=wkv, src=w_qkv.ap([[ncols, P], [P * ncols, nc], [1, 2 * nkv]],
                                        offset=H * d))
    # w_o rows h*d + p at [p, h, :]
    wo = nl.ndarray((d, H, hidden), dtype=dt, buffer=nl.sbuf)
    nisa.dma_copy(dst=wo, src=w_o.ap([[hidden, d], [d * hidden, H], [1, hidden]], offset=0))

    for b in nl.affine_range(B):
        _sequence(x3[b], y[b], wq, wkv, wo, H, KVH, G, d, S, KC, nc, nblk, hidden, scale,
                  causal, dt)
    return y if batched else y.reshape((S, hidden))


def _sequence(x, y, wq, wkv, wo, H, KVH, G, d, S, KC, nc, nblk, hidden, scale, causal, dt):
    """Steps 1-4 of the module docstring for one sequence x [S, hidden] -> y."""
    # 1. x^T [128, nc, S]
    xT = nl.ndarray((P, nc, S), dtype=dt, buffer=nl.sbuf)
    CB = 8  # hidden chunks per PSUM tile of transposes (8 x 128 bf16 = one bank)
    for i in nl.affine_range(nblk):
        xs = nl.ndarray((P, hidden), dtype=dt, buffer=nl.sbuf)
        nisa.dma_copy(dst=xs, src=x[i * P:(i + 1) * P, :])
        for c0 in range(0, nc, CB):
            cb = min(CB, nc - c0)
            t_ps = nl.ndarray((P, CB, P), dtype=dt, buffer=nl.psum)
            for c in range(cb):
                nisa.nc_transpose(dst=t_ps[:, c, :], data=xs[:, (c0 + c) * P:(c0 + c + 1) * P])
            _copy(xT[:, c0:c0 + cb, i * P:(i + 1) * P], t_ps[:, :cb, :], i + c0 // CB)

    # 2. K^T [d, S] and V [128, nblk, d] of every KV head, 512 tokens at a time (up
    # front: w_k / w_v are then dead, leaving SBUF to the rest)
    kTs = [nl.ndarray((d, S), dtype=dt, buffer=nl.sbuf) for _ in range(KVH)]
    vss = [nl.ndarray((P, nblk, d), dtype=dt, buffer=nl.sbuf) for _ in range(KVH)]
    for t0 in range(0, S, N_MM):
        _kv_proj(xT, wkv, kTs, vss, t0, min(N_MM, S - t0), KVH, d, nc)

    # 3 + 4. attention and output projection, two query tiles at a time
    mask = _causal_mask() if causal else None
    nq = S // Q_TILE
    pending = []  # a pair's output work, run during the next pair (see _out_work)
    for qp in nl.affine_range((nq + 1) // 2):
        _pair(qp, nq, xT, wq, wo, kTs, vss, y, H, G, d, S, KC, nc, hidden, scale, causal,
              mask, dt, pending)
    for step in pending:  # the last pair's output work
        step()


def _pair(qp, nq, xT, wq, wo, kTs, vss, y, H, G, d, S, KC, nc, hidden, scale, causal,
          mask, dt, pending):
    """Attention of query tiles [q0, q0 + 256) (or the last, odd one) for every head;
    runs the previous pair's queued output work (`pending`) in its Tensor Engine gaps
    and queues its own."""
    q0 = 2 * qp * Q_TILE
    ntiles = min(2, nq - 2 * qp)
    # Q^T of head h for the pair, computed one head ahead (so QK^T never waits for it)
    qnext = _q_proj(xT, wq, h=0, q0=q0, ntiles=ntiles, d=d, nc=nc, dt=dt)
    res = []  # normalized outputs [128, d] per (head, tile), transposed after all heads
    per_head = (len(pending) + H - 1) // H
    v4 = nisa.get_nc_version() >= nisa.nc_version.gen4  # flash_attention_fwd's trn3 softmax
    for h in range(H):
        kT, vs = kTs[h // G], vss[h // G]
        qts = qnext
        state = []
        for t in range(ntiles):
            nm = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)   # (-)running max
            lsum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)  # running sum
            o = nl.ndarray((P, d), dtype=nl.float32, buffer=nl.sbuf)     # unnormalized
            nisa.memset(dst=nm, value=-1e30 if v4 else 1e30)
            nisa.memset(dst=lsum, value=0.0)
            nisa.memset(dst=o, value=0.0)
            state.append([nm, lsum, o])
        # key steps: all, or (causal) up to the one holding each tile's diagonal
        lasts = [(q0 + (t + 1) * Q_TILE) if causal else S for t in range(ntiles)]
        nks = [(last + KC - 1) // KC for last in lasts]
        for ki in nl.sequential_range(max(nks)):
            k0 = ki * KC
            staged = []
            for t in range(ntiles):
                if ki < nks[t]:
                    nm, lsum, o = state[t]
                    p, nm, lsum, alpha, w = _softmax_stage(
                        qts[t], kT, k0, KC, lasts[t], q0 + t * Q_TILE, causal, mask, scale,
                        nm, lsum, dt, v4)
                    state[t] = [nm, lsum, o]
                    staged.append((t, p, w, alpha))
            if ki == 0 and h + 1 < H:
                # the next head's Q^T, placed where the Tensor Engine would otherwise
                # wait for this step's max and exp before transposing P
                qnext = _q_proj(xT, wq, h + 1, q0, ntiles, d, nc, dt)
            if ki == 0:
                # and a share of the previous pair's output work (transposes first)
                for _ in range(min(len(pending), per_head)):
                    pending.pop(0)()
            for t, p, w, alpha in staged:
                _pv_stage(p, w, vs, k0, d, alpha, state[t][2], dt, v4)
        for t in range(ntiles):
            nm, lsum, o = state[t]
            inv = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.reciprocal(dst=inv, data=lsum)
            r = nl.ndarray((P, d), dtype=dt, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=r, data=o, op0=nl.multiply, operand0=inv,
                               engine=nisa.gpsimd_engine)
            res.append(r)
    # the pair's output work, queued: run in the next pair's Tensor Engine gaps
    pending.extend(_out_work(res, wo, y, q0, ntiles, H, d, hidden, dt))


def _out_work(res, wo, y, q0, ntiles, H, d, hidden, dt):
    """The output work of a query-tile pair as a list of steps (callables), in order:
    the attention outputs transposed on the PE to attn^T [d, H, 256] (head dim on
    partitions, the contraction of the output projection; still SBUF), then per tile
    and 512 output columns y = sum_h attn_h^T[d, 128]^T @ w_o[h*d:(h+1)*d, columns],
    the heads accumulated in one PSUM bank, rounded, and each finished tile DMAed to y."""
    attnT = nl.ndarray((d, H, 2 * Q_TILE), dtype=dt, buffer=nl.sbuf)
    ys = [nl.ndarray((P, hidden), dtype=dt, buffer=nl.sbuf) for _ in range(ntiles)]
    steps = []

    def transpose(h, t):
        aT_ps = nl.ndarray((d, Q_TILE), dtype=dt, buffer=nl.psum)
        nisa.nc_transpose(dst=aT_ps, data=res[h * ntiles + t])
        _copy(attnT[:, h, t * Q_TILE:(t + 1) * Q_TILE], aT_ps, h + t)

    def project(t, n0):
        n = min(N_MM, hidden - n0)
        y_ps = nl.ndarray((P, N_MM), dtype=nl.float32, buffer=nl.psum)
        for h in range(H):
            nisa.nc_matmul(dst=y_ps[:, :n], stationary=attnT[:, h, t * Q_TILE:(t + 1) * Q_TILE],
                           moving=wo[:, h, n0:n0 + n])
        _copy(ys[t][:, n0:n0 + n], y_ps[:, :n], t + n0 // N_MM)
        if n0 + n == hidden:
            nisa.dma_copy(dst=y[q0 + t * Q_TILE:q0 + (t + 1) * Q_TILE, :], src=ys[t])

    for h in range(H):
        for t in range(ntiles):
            steps.append(lambda h=h, t=t: transpose(h, t))
    for t in range(ntiles):
        for n0 in range(0, hidden, N_MM):
            steps.append(lambda t=t, n0=n0: project(t, n0))
    return steps


def _q_proj(xT, wq, h, q0, ntiles, d, nc, dt):
    """Q^T of head h for query tiles [q0, q0 + ntiles*128): [d, 128] tiles in SBUF,
    w_q[:, h]^T x^T accumulated over the hidden chunks in one PSUM bank."""
    nqc = ntiles * Q_TILE
    q_ps = nl.ndarray((d, 2 * Q_TILE), dtype=nl.float32, buffer=nl.psum)
    for c in range(nc):
        nisa.nc_matmul(dst=q_ps[:, :nqc], stationary=wq[:, c, h * d:(h + 1) * d],
                       moving=xT[:, c, q0:q0 + nqc])
    qts = []
    for t in range(ntiles):
        qT = nl.ndarray((d, Q_TILE), dtype=dt, buffer=nl.sbuf)
        _copy(qT, q_ps[:, t * Q_TILE:(t + 1) * Q_TILE], h + t)
        qts.append(qT)
    return qts


def _kv_proj(xT, wkv, kTs, vss, t0, ntok, KVH, d, nc):
    """K^T[:, t0:t0+ntok] (w_k^T x^T: head dim on partitions) and V blocks of tokens
    [t0, t0 + ntok) (x w_v, all KV heads per matmul: keys on partitions) of every KV
    head, rounded into SBUF. ntok <= 512, a multiple of 128."""
    nkv = KVH * d
    for kvh in range(KVH):
        k_ps = nl.ndarray((d, N_MM), dtype=nl.float32, buffer=nl.psum)
        for c in range(nc):
            nisa.nc_matmul(dst=k_ps[:, :ntok], stationary=wkv[:, c, kvh * d:(kvh + 1) * d],
                           moving=xT[:, c, t0:t0 + ntok])
        _copy(kTs[kvh][:, t0:t0 + ntok], k_ps[:, :ntok], kvh)
    for i in range(t0 // P, (t0 + ntok) // P):
        for n0 in range(0, nkv, N_MM):
            n = min(N_MM, nkv - n0)
            v_ps = nl.ndarray((P, N_MM), dtype=nl.float32, buffer=nl.psum)
            for c in range(nc):
                nisa.nc_matmul(dst=v_ps[:, :n], stationary=xT[:, c, i * P:(i + 1) * P],
                               moving=wkv[:, c, nkv + n0:nkv + n0 + n])
            for kvh in range(n0 // d, (n0 + n) // d):
                j = kvh * d - n0
                _copy(vss[kvh][:, i, :], v_ps[:, j:j + d], i + kvh)
