"""Elementwise and normalization kernels for LLMs, in public NKI.

Every kernel takes its tiling from the shapes it is given:

* rows (tokens) go on the 128 SBUF partitions, 128 at a time; a last partial tile takes
  whatever is left (any row count works);
* where the row count allows, `G` consecutive rows share one partition
  (x.reshape((rows // G, G * cols))), so one DMA moves G * 128 rows in a single large,
  per-partition-contiguous block; G is picked so a block stays well inside SBUF;
* the free dimension is kept whole in SBUF when it fits (up to RESIDENT_COLS elements);
  wider rows are streamed in chunks of CHUNK_COLS (one pass for the statistics, one more
  to normalize, re-reading the chunks from HBM); `nisa.bn_stats` always sees at most
  nl.tile_size.bn_stats_fmax (512) elements;
* work is split between engines: squares/exp with accumulate on the Scalar Engine
  (`nisa.activation(reduce_op=add)`), statistics and max on the Vector Engine, the
  elementwise scaling shared by the Vector Engine and GpSimd (and the Scalar Engine for
  per-row scales); on NeuronCore-v4 (trn3) softmax alternates its exp between the
  Scalar Engine and the Vector Engine's `nisa.exponential`.

Inputs are DMA'd in their own dtype (a casting DMA moves twice the bytes into SBUF);
the engines compute in fp32 whatever they read, intermediates are fp32, and each output
is rounded once to its dtype -- except where a kernel's doc says otherwise (rope's
torch_rounding, swiglu_mlp's intermediate activation).

Kernels: transpose, softmax, rmsnorm, layernorm, rmsnorm_quant_fp8, rope, swiglu_mlp.
"""

import nki
import nki.isa as nisa
import nki.language as nl

P = 128
RESIDENT_COLS = 8192       # widest row kept whole in SBUF (fp32: 32 KiB / partition)
CHUNK_COLS = 4096          # chunk width when a row is streamed
BLOCK_BYTES = 8192         # target bytes per partition of one grouped row DMA
MLP_WEIGHT_BYTES = 147456  # swiglu_mlp keeps its weights in SBUF up to this / partition
FP8_E4M3_MAX = 240.0       # largest finite nl.float8_e4m3 (IEEE-style e4m3, bias 7)


def _group(rows, cols, itemsize):
    """How many consecutive rows share one partition in a grouped DMA block: the
    largest G with G * 128 <= rows and G * cols * itemsize <= BLOCK_BYTES (1 for few
    or wide rows). Blocks of ~8 KiB per partition saturate the DMA engines' per-
    partition efficiency while leaving several blocks to pipeline load / compute /
    store."""
    return max(1, min(BLOCK_BYTES // (itemsize * cols), rows // P))


def _row_blocks(x):
    """Yields (view, r0, p, G): rows r0 .. r0 + p*G of x, as a [p, G*cols] HBM view in
    which partition i holds the G rows r0 + i*G .. r0 + i*G + G - 1 (row-major, so the
    view is contiguous per partition). Full blocks of G*128 rows first, then the
    remainder one row per partition."""
    rows, cols = x.shape
    g = _group(rows, cols, 2 if x.dtype in (nl.bfloat16, nl.float16) else 4)
    main = (rows // (g * P)) * g * P if g > 1 else 0
    if main:
        xv = x[0:main, :].reshape((main // g, g * cols))
        for b in range(main // (g * P)):
            yield xv[b * P:(b + 1) * P, :], b * g * P, P, g
    for r0 in range(main, rows, P):
        p = min(P, rows - r0)
        yield x[r0:r0 + p, :], r0, p, 1


def _out_view(out, r0, p, g):
    cols = out.shape[1]
    if g == 1:
        return out[r0:r0 + p, :]
    return out[r0:r0 + p * g, :].reshape((p, g * cols))


def _bcast_rows(vec, n):
    """An SBUF fp32 tile [128, n] holding the HBM vector `vec` [n] on every partition."""
    t = nl.ndarray((P, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=vec.reshape((1, n)).broadcast(0, P))
    return t


def _chunks(cols):
    """Free-dim chunks (c0, width) of a row: one when the row is resident."""
    if cols <= RESIDENT_COLS:
        return [(0, cols)]
    return [(c0, min(CHUNK_COLS, cols - c0)) for c0 in range(0, cols, CHUNK_COLS)]


# ----------------------------------------------------------------------------- transpose

@nki.jit
def transpose(x):
    """out = x.T for a 2-D HBM tensor x [R, C] (any R, C; any dtype).

    2-byte dtypes (bf16, fp16, int16) use the DMA engines' transpose (`nisa.dma_transpose`,
    HBM -> SBUF blocks of [<=128 cols, <=512 rows]); other dtypes go through the Tensor
    Engine (`nisa.nc_transpose`): a [<=128, C-chunk] strip of rows is loaded in one DMA,
    each 128x128 block transposed into a slot of one [128, 512] PSUM tile (four row
    strips per PSUM tile), copied back to SBUF in one instruction and stored in one DMA.
    """
    R, C = x.shape
    out = nl.ndarray((C, R), dtype=x.dtype, buffer=nl.shared_hbm)
    RB = 512  # rows per output block (PE path: the free size of one PSUM bank in fp32)
    if x.dtype in (nl.bfloat16, nl.float16, nl.int16, nl.uint16):
        DB = 2048  # rows per DMA-transposed block: 4 KiB per partition, efficient DMA
        for c0 in range(0, C, P):
            cb = min(P, C - c0)
            for r0 in range(0, R, DB):
                rb = min(DB, R - r0)
                t = nl.ndarray((cb, rb), dtype=x.dtype, buffer=nl.sbuf)
                nisa.dma_transpose(dst=t, src=x[r0:r0 + rb, c0:c0 + cb])
                nisa.dma_copy(dst=out[c0:c0 + cb, r0:r0 + rb], src=t)
        return out
    CC = 2048  # columns per loaded strip
    for r0 in range(0, R, RB):
        rb = min(RB, R - r0)
        for cc0 in range(0, C, CC):
            cw = min(CC, C - cc0)
            strips = []
            for s0 in range(0, rb, P):
                sp = min(P, rb - s0)
                st = nl.ndarray((sp, cw), dtype=x.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=st, src=x[r0 + s0:r0 + s0 + sp, cc0:cc0 + cw])
                strips.append((s0, sp, st))
            for c0 in range(0, cw, P):
                cb = min(P, cw - c0)
                ps = nl.ndarray((cb, rb), dtype=x.dtype, buffer=nl.psum)
                for s0, sp, st in strips:
                    nisa.nc_transpose(dst=ps[:, s0:s0 + sp], data=st[:, c0:c0 + cb],
                                      engine=nisa.tensor_engine)
                sb = nl.ndarray((cb, rb), dtype=x.dtype, buffer=nl.sbuf)
                nisa.tensor_copy(dst=sb, src=ps)
                nisa.dma_copy(dst=out[cc0 + c0:cc0 + c0 + cb, r0:r0 + rb], src=sb)
    return out


# ------------------------------------------------------------------------------- softmax

@nki.jit
def softmax(x):
    """Softmax over the last axis of a 2-D x [rows, cols], numerically stable:
    y = exp(x - max) / sum(exp(x - max)), fp32 inside, rounded once to x's dtype.

    Per row tile: max on the Vector Engine (`tensor_reduce`, negated so it serves as the
    exp bias), exp with the row sum accumulated on the Scalar Engine (`activation`,
    reduce_op=add) -- on trn3 every other block uses the Vector Engine's
    `nisa.exponential` instead, so both engines share the exps -- then 1/sum
    (`reciprocal`) and the scaling (`tensor_scalar`). Rows wider than RESIDENT_COLS are
    streamed: a max pass, an exp-sum pass and a normalize pass over HBM chunks.
    """
    rows, cols = x.shape
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
    v4 = nisa.get_nc_version() >= nisa.nc_version.gen4
    chunks = _chunks(cols)
    if len(chunks) > 1:
        for r0 in range(0, rows, P):
            p = min(P, rows - r0)
            maxes = nl.ndarray((p, len(chunks)), dtype=nl.float32, buffer=nl.sbuf)
            for i, (c0, w) in enumerate(chunks):
                xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
                nisa.tensor_reduce(dst=maxes[:, i:i + 1], op=nl.maximum, data=xt, axis=1)
            neg_max = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=maxes, axis=1, negate=True)
            sums = nl.ndarray((p, len(chunks)), dtype=nl.float32, buffer=nl.sbuf)
            for i, (c0, w) in enumerate(chunks):
                xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
                e = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
                nisa.activation(dst=e, op=nl.exp, data=xt, bias=neg_max, reduce_op=nl.add,
                                reduce_res=sums[:, i:i + 1],
                                reduce_cmd=nisa.reduce_cmd.reset_reduce)
            inv = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_reduce(dst=inv, op=nl.add, data=sums, axis=1)
            nisa.reciprocal(dst=inv, data=inv)
            for c0, w in chunks:
                xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
                e = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
                nisa.activation(dst=e, op=nl.exp, data=xt, bias=neg_max)
                y = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
                nisa.tensor_scalar(dst=y, data=e, op0=nl.multiply, operand0=inv)
                nisa.dma_copy(dst=out[r0:r0 + p, c0:c0 + w], src=y)
        return out

    n = 0
    for src, r0, p, g in _row_blocks(x):
        xt = nl.ndarray((p, g * cols), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=src)
        y = nl.ndarray((p, g * cols), dtype=x.dtype, buffer=nl.sbuf)
        for j in range(g):
            xs = xt[:, j * cols:(j + 1) * cols]
            use_dve = v4 and n % 2 == 1
            # the max of bf16 values is a bf16 value: reducing into x's dtype is exact
            # (and the Vector Engine reduces 16-bit data at twice the rate)
            m = nl.ndarray((p, 1), dtype=nl.float32 if use_dve else x.dtype, buffer=nl.sbuf)
            nisa.tensor_reduce(dst=m, op=nl.maximum, data=xs, axis=1, negate=not use_dve)
            e = nl.ndarray((p, cols), dtype=nl.float32, buffer=nl.sbuf)
            s = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
            if use_dve:  # exp(x - max) on the Vector Engine (trn3+)
                nisa.exponential(dst=e, src=xs, max_value=m, reduce_res=s,
                                 reduce_cmd=nisa.reduce_cmd.reset_reduce)
            else:
                neg_max = m
                nisa.activation(dst=e, op=nl.exp, data=xs, bias=neg_max, reduce_op=nl.add,
                                reduce_res=s, reduce_cmd=nisa.reduce_cmd.reset_reduce)
            n += 1
            nisa.reciprocal(dst=s, data=s)
            # the scaling on GpSimd: the Vector Engine has the max (and on trn3 half
            # the exps), the Scalar Engine the other exps
            nisa.tensor_scalar(dst=y[:, j * cols:(j + 1) * cols], data=e, op0=nl.multiply,
                               operand0=s, engine=nisa.gpsimd_engine)
        nisa.dma_copy(dst=_out_view(out, r0, p, g), src=y)
    return out


# ------------------------------------------------------------------------------ rmsnorm

def _rms_rstd(p, sq_sums, cols, eps):
    """rstd = 1 / sqrt(sum(x^2) / cols + eps) from per-chunk sums [p, n]."""
    rstd = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
    if sq_sums.shape[1] > 1:
        nisa.tensor_reduce(dst=rstd, op=nl.add, data=sq_sums, axis=1)
        sq_sums = rstd
    nisa.tensor_scalar(dst=rstd, data=sq_sums, op0=nl.multiply, operand0=1.0 / cols,
                       op1=nl.add, operand1=float(eps))
    nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd)
    return rstd


def _rmsnorm_rows(x, gamma, eps, emit, ydtype, on_vector):
    """Shared body of rmsnorm and rmsnorm_quant_fp8: for each row block, computes
    y = x * rstd * gamma into a `ydtype` tile and hands (y, rows) to `emit`.
    on_vector(n): whether the n-th row tile scales on the Vector Engine (one
    scalar_tensor_tensor) rather than the Scalar Engine (x * rstd) + GpSimd (* gamma)."""
    rows, cols = x.shape
    chunks = _chunks(cols)
    g_sb = _bcast_rows(gamma, cols) if len(chunks) == 1 else None
    if len(chunks) == 1:
        # rows alternate between two engine assignments (see on_vector)
        n_rows = 0
        for src, r0, p, g in _row_blocks(x):
            xt = nl.ndarray((p, g * cols), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=src)
            yt = nl.ndarray((p, g * cols), dtype=ydtype, buffer=nl.sbuf)
            for j in range(g):
                xs = xt[:, j * cols:(j + 1) * cols]
                sq = nl.ndarray((p, cols), dtype=nl.float32, buffer=nl.sbuf)
                ss = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
                nisa.activation(dst=sq, op=nl.square, data=xs, reduce_op=nl.add,
                                reduce_res=ss, reduce_cmd=nisa.reduce_cmd.reset_reduce)
                rstd = _rms_rstd(p, ss, cols, eps)
                ys = yt[:, j * cols:(j + 1) * cols]
                if on_vector(n_rows):  # (x * rstd) * gamma on the Vector Engine
                    nisa.scalar_tensor_tensor(dst=ys, data=xs, op0=nl.multiply,
                                              operand0=rstd, op1=nl.multiply,
                                              operand1=g_sb[0:p, :])
                else:  # x * rstd on the Scalar Engine, * gamma on GpSimd
                    xr = nl.ndarray((p, cols), dtype=nl.float32, buffer=nl.sbuf)
                    nisa.activation(dst=xr, op=nl.copy, data=xs, scale=rstd)
                    nisa.tensor_tensor(dst=ys, data1=xr, data2=g_sb[0:p, :], op=nl.multiply,
                                       engine=nisa.gpsimd_engine)
                n_rows += 1
            emit(yt, r0, p, g)
        return
    # wide rows: pass 1 sums squares chunk by chunk, pass 2 re-reads and scales
    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        ss = nl.ndarray((p, len(chunks)), dtype=nl.float32, buffer=nl.sbuf)
        for i, (c0, w) in enumerate(chunks):
            xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
            sq = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
            nisa.activation(dst=sq, op=nl.square, data=xt, reduce_op=nl.add,
                            reduce_res=ss[:, i:i + 1], reduce_cmd=nisa.reduce_cmd.reset_reduce)
        rstd = _rms_rstd(p, ss, cols, eps)
        yt = nl.ndarray((p, cols), dtype=ydtype, buffer=nl.sbuf)
        for c0, w in chunks:
            xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
            gt = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=gt, src=gamma[c0:c0 + w].reshape((1, w)).broadcast(0, p))
            nisa.scalar_tensor_tensor(dst=yt[:, c0:c0 + w], data=xt, op0=nl.multiply,
                                      operand0=rstd, op1=nl.multiply, operand1=gt)
        emit(yt, r0, p, 1)


@nki.jit
def rmsnorm(x, gamma, eps=1e-6):
    """RMSNorm over the last axis: y = x / sqrt(mean(x^2) + eps) * gamma, x [rows, hidden],
    gamma [hidden]; fp32 inside, rounded once to x's dtype.

    Sum of squares on the Scalar Engine (activation square with accumulate), rstd on
    Vector (+eps) and Scalar (rsqrt), then x * rstd * gamma: on some row tiles in one
    Vector Engine `scalar_tensor_tensor` (2 passes in fp32), on the others as x * rstd
    on the Scalar Engine and * gamma on GpSimd -- half the tiles each on trn2, 2/3 on
    the Vector Engine on trn3. Rows are DMA'd in grouped blocks (see the module doc)."""
    rows, cols = x.shape
    assert gamma.shape == (cols,), f"gamma {gamma.shape} must be ({cols},)"
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)

    def emit(y, r0, p, g):
        nisa.dma_copy(dst=_out_view(out, r0, p, g), src=y)

    # trn2: half the rows on the Vector Engine; trn3 (whose Vector Engine runs at
    # 1.2 GHz, not 0.96): two thirds
    if nisa.get_nc_version() >= nisa.nc_version.gen4:
        _rmsnorm_rows(x, gamma, eps, emit, x.dtype, lambda n: n % 3 != 2)
    else:
        _rmsnorm_rows(x, gamma, eps, emit, x.dtype, lambda n: n % 2 == 0)
    return out


@nki.jit
def rmsnorm_quant_fp8(x, gamma, eps=1e-6):
    """RMSNorm then per-row fp8 quantization: returns (q, scale) with
    q [rows, hidden] nl.float8_e4m3 and scale [rows, 1] fp32 such that
    y ~= q * scale, y = rmsnorm(x, gamma, eps) in fp32.

    Scale rule: scale = max(amax(|y|), 1e-12) / 240 per row, 240 being the largest
    finite nl.float8_e4m3 (IEEE-style e4m3, the Trainium fp8 format nki-library's
    quantizing kernels use); q = round_to_nearest_even(y * (1 / scale)), so |q| <= 240.
    The row amax is taken on the Vector Engine (`tensor_reduce` with abs_max) and the
    y * (1/scale) multiply-and-cast on GpSimd (`tensor_scalar`, per-partition operand)."""
    rows, cols = x.shape
    assert gamma.shape == (cols,), f"gamma {gamma.shape} must be ({cols},)"
    q = nl.ndarray((rows, cols), dtype=nl.float8_e4m3, buffer=nl.shared_hbm)
    scale = nl.ndarray((rows, 1), dtype=nl.float32, buffer=nl.shared_hbm)

    def emit(yt, r0, p, g):
        amax = nl.ndarray((p, g), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=amax, op=nl.abs_max, data=yt.reshape((p, g, cols)), axis=2)
        sc = nl.ndarray((p, g), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=sc, data=amax, op0=nl.maximum, operand0=1e-12,
                           op1=nl.multiply, operand1=1.0 / FP8_E4M3_MAX)
        inv = nl.ndarray((p, g), dtype=nl.float32, buffer=nl.sbuf)
        nisa.reciprocal(dst=inv, data=sc)
        qt = nl.ndarray((p, g * cols), dtype=nl.float8_e4m3, buffer=nl.sbuf)
        for j in range(g):
            nisa.tensor_scalar(dst=qt[:, j * cols:(j + 1) * cols],
                               data=yt[:, j * cols:(j + 1) * cols], op0=nl.multiply,
                               operand0=inv[:, j:j + 1], engine=nisa.gpsimd_engine)
        nisa.dma_copy(dst=_out_view(q, r0, p, g), src=qt)
        nisa.dma_copy(dst=scale[r0:r0 + p * g, :].reshape((p, g)), src=sc)

    # the Vector Engine also takes every row's amax: one row in three scales there
    _rmsnorm_rows(x, gamma, eps, emit, nl.float32, lambda n: n % 3 == 0)
    return q, scale


# ---------------------------------------------------------------------------- layernorm

@nki.jit
def layernorm(x, gamma, beta, eps=1e-5):
    """LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * gamma + beta
    (biased variance), x [rows, hidden]; fp32 inside, rounded once to x's dtype.

    Statistics on the Vector Engine (`bn_stats` per <=512-element chunk, one `bn_aggr`),
    (x - mean) * rstd on the Scalar Engine (activation copy with per-partition scale
    rstd and bias -mean*rstd), then * gamma + beta on the Vector Engine (two
    `tensor_tensor`). Rows wider than RESIDENT_COLS are streamed (stats pass, then a
    normalize pass re-reading HBM)."""
    rows, cols = x.shape
    assert gamma.shape == (cols,) and beta.shape == (cols,)
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
    FMAX = nl.tile_size.bn_stats_fmax
    chunks = _chunks(cols)
    n_bn = sum((w + FMAX - 1) // FMAX for _, w in chunks)

    def stats_of(p, tiles):
        """[mean, var] per row from the (c0, w, tile) pieces of a row."""
        st = nl.ndarray((p, n_bn * 6), dtype=nl.float32, buffer=nl.sbuf)
        k = 0
        for t, w in tiles:
            for f0 in range(0, w, FMAX):
                f = min(FMAX, w - f0)
                nisa.bn_stats(dst=st[:, k * 6:(k + 1) * 6], data=t[:, f0:f0 + f])
                k += 1
        mv = nl.ndarray((p, 2), dtype=nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mv, data=st)
        rstd = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=rstd, data=mv[:, 1:2], op0=nl.add, operand0=float(eps))
        nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd)
        nmr = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=nmr, data=mv[:, 0:1], op0=nl.multiply,
                                  operand0=-1.0, op1=nl.multiply, operand1=rstd)
        return rstd, nmr

    def normalize(dst, xs, rstd, nmr, gt, bt):
        xn = nl.ndarray(xs.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=xn, op=nl.copy, data=xs, scale=rstd, bias=nmr)
        nisa.tensor_tensor(dst=xn, data1=xn, data2=gt, op=nl.multiply)
        nisa.tensor_tensor(dst=dst, data1=xn, data2=bt, op=nl.add)

    if len(chunks) == 1:
        g_sb = _bcast_rows(gamma, cols)
        b_sb = _bcast_rows(beta, cols)
        for src, r0, p, g in _row_blocks(x):
            xt = nl.ndarray((p, g * cols), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=src)
            y = nl.ndarray((p, g * cols), dtype=x.dtype, buffer=nl.sbuf)
            for j in range(g):
                xs = xt[:, j * cols:(j + 1) * cols]
                rstd, nmr = stats_of(p, [(xs, cols)])
                normalize(y[:, j * cols:(j + 1) * cols], xs, rstd, nmr,
                          g_sb[0:p, :], b_sb[0:p, :])
            nisa.dma_copy(dst=_out_view(out, r0, p, g), src=y)
        return out
    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        pieces = []
        for c0, w in chunks:
            xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
            pieces.append((xt, w))
        rstd, nmr = stats_of(p, pieces)
        for c0, w in chunks:
            xt = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=xt, src=x[r0:r0 + p, c0:c0 + w])
            gt = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
            bt = nl.ndarray((p, w), dtype=nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=gt, src=gamma[c0:c0 + w].reshape((1, w)).broadcast(0, p))
            nisa.dma_copy(dst=bt, src=beta[c0:c0 + w].reshape((1, w)).broadcast(0, p))
            y = nl.ndarray((p, w), dtype=x.dtype, buffer=nl.sbuf)
            normalize(y, xt, rstd, nmr, gt, bt)
            nisa.dma_copy(dst=out[r0:r0 + p, c0:c0 + w], src=y)
    return out


# --------------------------------------------------------------------------------- rope

@nki.jit
def rope(x, cos, sin, head_dim=None, torch_rounding=None):
    """Rotary position embedding, half-rotation layout (HF Llama / Qwen `rotate_half`):
    for each head vector v = [v1, v2] (the two halves of head_dim D) of token t,
        out = [v1 * c - v2 * s,  v2 * c + v1 * s],   c = cos[t, :D/2], s = sin[t, :D/2].

    x: [tokens, heads * D] (or [tokens, D], one head). cos, sin: [tokens, D/2], or
    [tokens, D] as HF builds them (cat(freqs, freqs)): then pass head_dim=D and only the
    first half is read. head_dim defaults to 2 * cos.shape[1].

    Rounding. torch_rounding=False: fp32 inside, rounded once to x's dtype.
    torch_rounding=True (the default when x is bf16 / fp16): cos and sin are cast to
    x's dtype and each product and each sum is rounded to x's dtype, exactly as HF's
    `q * cos + rotate_half(q) * sin` runs in PyTorch eager on a bf16 model -- bit for
    bit -- and the 16-bit operands let the Vector Engine run the six elementwise ops in
    its fast 16-bit mode (about 4x the fp32 rate).

    All heads of a token tile are done together with 3-D views ([p, heads, D/2] halves,
    cos/sin broadcast over heads with stride 0): six `tensor_tensor` per token tile
    (fp32: the four products split between the Vector Engine and GpSimd)."""
    tokens, width = x.shape
    assert cos.shape == sin.shape and cos.shape[0] == tokens, (cos.shape, sin.shape)
    D = 2 * cos.shape[1] if head_dim is None else int(head_dim)
    if D % 2 or cos.shape[1] not in (D // 2, D):
        raise ValueError(f"cos/sin width {cos.shape[1]} must be head_dim/2 or head_dim "
                         f"(head_dim {D}, even)")
    if width % D:
        raise ValueError(f"x width {width} is not a multiple of head_dim {D}")
    sixteen = x.dtype in (nl.bfloat16, nl.float16)
    if torch_rounding is None:
        torch_rounding = sixteen
    if torch_rounding and not sixteen:
        raise ValueError("torch_rounding=True needs a bf16 / fp16 x")
    wdt = x.dtype if torch_rounding else nl.float32
    # fp32: spread the products over two engines; 16-bit: the Vector Engine's fast
    # mode outruns GpSimd, so every op goes there
    side = nisa.vector_engine if torch_rounding else nisa.gpsimd_engine
    H = width // D
    h2 = D // 2
    out = nl.ndarray((tokens, width), dtype=x.dtype, buffer=nl.shared_hbm)
    for t0 in range(0, tokens, P):
        p = min(P, tokens - t0)
        xt = nl.ndarray((p, width), dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[t0:t0 + p, :])
        ct = nl.ndarray((p, h2), dtype=wdt, buffer=nl.sbuf)
        st = nl.ndarray((p, h2), dtype=wdt, buffer=nl.sbuf)
        nisa.dma_copy(dst=ct, src=cos[t0:t0 + p, 0:h2])
        nisa.dma_copy(dst=st, src=sin[t0:t0 + p, 0:h2])
        c3 = ct.expand_dim(1).broadcast(1, H)
        s3 = st.expand_dim(1).broadcast(1, H)
        xv = xt.reshape((p, H, D))
        x1, x2 = xv[:, :, 0:h2], xv[:, :, h2:D]
        y = nl.ndarray((p, width), dtype=x.dtype, buffer=nl.sbuf)
        yv = y.reshape((p, H, D))
        a = nl.ndarray((p, H, h2), dtype=wdt, buffer=nl.sbuf)
        b = nl.ndarray((p, H, h2), dtype=wdt, buffer=nl.sbuf)
        c = nl.ndarray((p, H, h2), dtype=wdt, buffer=nl.sbuf)
        d = nl.ndarray((p, H, h2), dtype=wdt, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=x1, data2=c3, op=nl.multiply,
                           engine=nisa.vector_engine)
        nisa.tensor_tensor(dst=b, data1=x2, data2=s3, op=nl.multiply, engine=side)
        nisa.tensor_tensor(dst=c, data1=x2, data2=c3, op=nl.multiply,
                           engine=nisa.vector_engine)
        nisa.tensor_tensor(dst=d, data1=x1, data2=s3, op=nl.multiply, engine=side)
        nisa.tensor_tensor(dst=yv[:, :, 0:h2], data1=a, data2=b, op=nl.subtract,
                           engine=nisa.vector_engine)
        nisa.tensor_tensor(dst=yv[:, :, h2:D], data1=c, data2=d, op=nl.add,
                           engine=nisa.vector_engine)
        nisa.dma_copy(dst=out[t0:t0 + p, :], src=y)
    return out


# --------------------------------------------------------------------------- swiglu_mlp

@nki.jit
def swiglu_mlp(x, w_gate, w_up, w_down):
    """Fused SwiGLU MLP: out = (silu(x @ w_gate) * (x @ w_up)) @ w_down.

    x [T, H], w_gate / w_up [H, I], w_down [I, H]; out [T, H] in x's dtype. H and I must
    be multiples of 128; T is any size. Matmuls run in x's dtype with fp32 PSUM
    accumulation; the intermediate act = silu(g) * u is rounded to x's dtype (as a bf16
    model does), everything else stays fp32 until the output.

    Layout: the intermediate is computed transposed, actT [I, T], so it is directly the
    stationary operand of the down projection:
      for each block of up to 512 tokens:
        xT [H, tb] (DMA transpose for 2-byte dtypes, else Tensor Engine transpose),
        for each 128-row block i of I: gT, uT [128, tb] in PSUM, accumulated over H/128
          (stationary w_gate[k-block, i-block], moving xT[k-block]);
          silu(gT) on the Scalar Engine straight from PSUM, * uT on the Vector Engine;
        for each 128-token sub-block and 512-column block of H: out accumulated over
          I/128 in PSUM (stationary actT[i-block, tokens], moving w_down[i-block, cols]).
    The three weights stay resident in SBUF when they fit (3 * H * I * itemsize / 128
    bytes per partition <= MLP_WEIGHT_BYTES, 144 KiB: Qwen3-0.6B's bf16 MLP just fits);
    otherwise they are re-read for every block of 512 tokens (correct, but 3 * H * I
    * itemsize bytes of HBM traffic per block).
    """
    T, H = x.shape
    I = w_gate.shape[1]
    assert w_gate.shape == (H, I) and w_up.shape == (H, I) and w_down.shape == (I, H)
    if H % P or I % P:
        raise ValueError(f"swiglu_mlp needs hidden ({H}) and intermediate ({I}) to be "
                         "multiples of 128")
    dt = x.dtype
    out = nl.ndarray((T, H), dtype=dt, buffer=nl.shared_hbm)
    KH, KI = H // P, I // P
    TB = 512  # tokens per block: the moving free size of one matmul
    NB = 512  # output columns per PSUM tile
    itemsize = 2 if dt in (nl.bfloat16, nl.float16) else 4
    resident = 3 * H * I * itemsize // P <= MLP_WEIGHT_BYTES
    two_byte = itemsize == 2

    def load_weights():
        wg = nl.ndarray((P, KH, I), dtype=dt, buffer=nl.sbuf)
        wu = nl.ndarray((P, KH, I), dtype=dt, buffer=nl.sbuf)
        wd = nl.ndarray((P, KI, H), dtype=dt, buffer=nl.sbuf)
        # row k*128 + p of w_gate -> partition p, slot k
        nisa.dma_copy(dst=wg, src=w_gate.reshape((KH, P, I)).permute((1, 0, 2)))
        nisa.dma_copy(dst=wu, src=w_up.reshape((KH, P, I)).permute((1, 0, 2)))
        nisa.dma_copy(dst=wd, src=w_down.reshape((KI, P, H)).permute((1, 0, 2)))
        return wg, wu, wd

    weights = load_weights() if resident else None
    for t0 in range(0, T, TB):
        tb = min(TB, T - t0)
        wg, wu, wd = weights if resident else load_weights()
        # xT [H, tb] as [128, KH, tb]
        xT = nl.ndarray((P, KH, tb), dtype=dt, buffer=nl.sbuf)
        if two_byte:
            for k in range(KH):
                nisa.dma_transpose(dst=xT[:, k, :], src=x[t0:t0 + tb, k * P:(k + 1) * P])
        else:
            for s0 in range(0, tb, P):
                sp = min(P, tb - s0)
                xs = nl.ndarray((sp, H), dtype=dt, buffer=nl.sbuf)
                nisa.dma_copy(dst=xs, src=x[t0 + s0:t0 + s0 + sp, :])
                for k in range(KH):
                    ps = nl.ndarray((P, sp), dtype=dt, buffer=nl.psum)
                    nisa.nc_transpose(dst=ps, data=xs[:, k * P:(k + 1) * P],
                                      engine=nisa.tensor_engine)
                    nisa.tensor_copy(dst=xT[:, k, s0:s0 + sp], src=ps)
        actT = nl.ndarray((P, KI, tb), dtype=dt, buffer=nl.sbuf)
        for i in range(KI):
            gp = nl.ndarray((P, tb), dtype=nl.float32, buffer=nl.psum)
            up = nl.ndarray((P, tb), dtype=nl.float32, buffer=nl.psum)
            for k in range(KH):
                nisa.nc_matmul(dst=gp, stationary=wg[:, k, i * P:(i + 1) * P],
                               moving=xT[:, k, :], accumulate=k > 0)
            for k in range(KH):
                nisa.nc_matmul(dst=up, stationary=wu[:, k, i * P:(i + 1) * P],
                               moving=xT[:, k, :], accumulate=k > 0)
            sg = nl.ndarray((P, tb), dtype=nl.float32, buffer=nl.sbuf)
            nisa.activation(dst=sg, op=nl.silu, data=gp)
            nisa.tensor_tensor(dst=actT[:, i, :], data1=sg, data2=up, op=nl.multiply)
        for s0 in range(0, tb, P):
            sp = min(P, tb - s0)
            for n0 in range(0, H, NB):
                nb = min(NB, H - n0)
                op_ = nl.ndarray((sp, nb), dtype=nl.float32, buffer=nl.psum)
                for i in range(KI):
                    nisa.nc_matmul(dst=op_, stationary=actT[:, i, s0:s0 + sp],
                                   moving=wd[:, i, n0:n0 + nb], accumulate=i > 0)
                ot = nl.ndarray((sp, nb), dtype=dt, buffer=nl.sbuf)
                if (n0 // NB) % 2 == 0:
                    nisa.activation(dst=ot, op=nl.copy, data=op_)
                else:
                    nisa.tensor_copy(dst=ot, src=op_, engine=nisa.vector_engine)
                nisa.dma_copy(dst=out[t0 + s0:t0 + s0 + sp, n0:n0 + nb], src=ot)
    return out
