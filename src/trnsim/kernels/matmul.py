"""Matrix multiplication kernels (public NKI): bf16/fp32, fp8 double-row, MXFP8.

    result[M, N] = act(scale * (lhsT[K, M].T @ rhs[K, N]) + bias[N])

Layout: the contraction K runs on SBUF partitions for both operands (lhsT is the
"stationary" operand, rhs the "moving" one), so a linear layer y = x @ W takes
lhsT = x.T [hidden, tokens] and rhs = W [hidden, out]; result rows (M) land on PSUM
partitions, and `bias` (one value per output column, shape [N] or [1, N]) is broadcast
over them.

Tiling (chosen from the shapes):
- an output tile is [128, 512] (128 PSUM partitions x one 2 KiB fp32 PSUM bank);
- `matmul` / `matmul_fp8`: a block of TM = BM/128 stationary tiles (BM up to 512, as
  many as fit a 64 KiB-per-partition budget) is loaded once for the whole K, in a few
  large DMAs, and stays resident in SBUF while every 512-column strip of rhs streams past
  it in [K-chunk, 512] DMAs of ~2 MiB; each moving tile then serves TM matmuls into TM
  PSUM banks (so two output strips are in flight in the 8 banks), and each resident
  stationary tile serves N/512 matmuls. Arithmetic intensity per streamed byte is BM
  FLOPs (bf16), far above the DMA ridge point of a NeuronCore (~214 FLOP/B on trn2).
  When all of rhs fits 96 KiB per partition (a projection weight with K*N up to ~6M
  bf16 values), it is loaded once instead, column tile by column tile (each tile one
  contiguous block per partition, so the first matmuls wait for one tile only).
- `matmul_mxfp8` (trn3): the other way round, because quantizing costs Vector Engine
  time: a block of TB 512-column rhs tiles (whole K, as many as fit 96 KiB per
  partition) is loaded and MX-quantized once and stays resident; lhsT streams past it
  one [K, 128] column block at a time (one DMA), quantized once per rhs block, serving
  every output tile of the block, 4 PSUM banks at a time.
- the epilogue reads each PSUM bank once: a copy (or activation with the fp8 dequant
  scale) to SBUF in the output dtype, or, with a bias, one Vector Engine
  `scalar_tensor_tensor` (psum * scale + bias) followed by the activation on the Scalar
  Engine; the bias row is broadcast to the 128 partitions by one DMA (once, when it
  fits 16 KiB per partition); the output tiles of a block leave in one DMA.

Remainders: every kernel takes any M, N and K, the way nki-library kernels do: a
partial last tile. `matmul` / `matmul_fp8` split the output into at most four regions,
each tiled as above: the full 128-row x 512-column tiles, the last partial row tile
(M % 128 rows), the last partial column tile (N % 512 columns) and their corner;
`matmul_mxfp8` splits off the partial column tile only and ends each rhs block with a
partial row tile. A K remainder is one last, partial contraction tile: fewer partitions
for `matmul`; for double_row a [ceil(r/2), 2, .] tile whose odd last row's partner is
memset to zero; for MX a full [128, 4, .] tile, zero-padded before quantization (zeros
add nothing to the sum and do not raise a group's scale). An odd MX row tile gets one
zero stationary column (nc_matmul_mx needs an even M). A divisible shape emits exactly
the instructions it did before remainders were handled.
"""

import nki
import nki.isa as nisa
import nki.language as nl

P = 128            # SBUF / PSUM partitions, PE rows and columns
PSUM_N = 512       # fp32 elements per partition in one PSUM bank: the widest output tile
STRIP_BYTES = 64 * 1024   # per-partition SBUF budget of the resident operand block
CHUNK_BYTES = 16 * 1024   # per-partition bytes of one streamed DMA (2 MiB transfers)
RESIDENT_RHS_BYTES = 96 * 1024  # per-partition budget for keeping all of rhs in SBUF
BIAS_BYTES = 16 * 1024    # per-partition budget for keeping the broadcast bias row


def _dims(lhsT, rhs):
    K, M = lhsT.shape
    K2, N = rhs.shape
    assert K == K2, f"contraction sizes differ: lhsT is [{K}, {M}], rhs is [{K2}, {N}]"
    return K, M, N


def _splits(n, unit):
    """[0, n) as at most two ranges (start, size) of whole tiles: sizes a multiple of
    `unit` or at most `unit` (the last partial tile)."""
    full = n if n <= unit else n - n % unit
    return [(o, s) for o, s in ((0, full), (full, n - full)) if s]


def _regions(M, N):
    """The output split into at most four rectangles (m0, rows, n0, cols) that the
    tiling handles: rows a multiple of 128 or at most 128, cols a multiple of 512 or at
    most 512. A divisible shape is one region."""
    return [(m0, ms, n0, ns) for m0, ms in _splits(M, P) for n0, ns in _splits(N, PSUM_N)]


def _once(make):
    """make() on the first call, the same result afterwards."""
    memo = []

    def get():
        if not memo:
            memo.append(make())
        return memo[0]
    return get


def _itemsize(dtype):
    """Bytes per element of an NKI dtype (compile-time arithmetic only)."""
    if hasattr(dtype, "itemsize"):
        return int(dtype.itemsize)
    name = str(dtype)
    return 4 if "32" in name else (1 if "8" in name else 2)


def _largest_divisor(n, limit):
    """The largest power of two <= limit that divides n."""
    d = 1
    while d * 2 <= limit:
        d *= 2
    while n % d:
        d //= 2
    return d


def _bias_loader(bias, N):
    """bias [N] or [1, N] broadcast over the 128 partitions in SBUF: a function of
    (n0, nt) returning the [128, nt] tile of columns n0..n0+nt. The whole row is loaded
    once (one DMA) when it fits BIAS_BYTES per partition, else tile by tile at each use."""
    if bias is None:
        return None
    b2 = bias if len(bias.shape) == 2 else bias.reshape((1, bias.shape[0]))
    if N * _itemsize(b2.dtype) <= BIAS_BYTES:
        whole = nl.ndarray((P, N), dtype=b2.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=whole, src=b2[0:1, 0:N].broadcast(0, P))
        return lambda n0, nt: whole[:, n0:n0 + nt]

    def tile(n0, nt):
        t = nl.ndarray((P, nt), dtype=b2.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=b2[0:1, n0:n0 + nt].broadcast(0, P))
        return t
    return tile


def _load_k_rest(dst, src, k0, rows, c0, cols, double_row):
    """dst [ceil(rows / kr), (kr,) cols] <- src[k0:k0 + rows, c0:c0 + cols], the partial
    last contraction tile. double_row: row k0 + 2 p + j lands at [p, j]; with an odd
    row count the last partition's second row is zero (it adds nothing to the sum)."""
    if not double_row:
        nisa.dma_copy(dst=dst, src=src[k0:k0 + rows, c0:c0 + cols])
        return
    h = rows // 2
    if h:
        nisa.dma_copy(dst=dst[0:h], src=src[k0:k0 + 2 * h, c0:c0 + cols].reshape((h, 2, cols)))
    if rows % 2:
        nisa.dma_copy(dst=dst[h:h + 1, 0:1, :],
                      src=src[k0 + rows - 1:k0 + rows, c0:c0 + cols].reshape((1, 1, cols)))
        nisa.memset(dst=dst[h:h + 1, 1:2, :], value=0.0)


def _epilogue(dst, acc, rows, bias_sb, activation, scale):
    """dst[0:rows] = act(acc * scale + bias): PSUM -> SBUF, fused into one or two
    instructions."""
    if bias_sb is None:
        if activation is None and scale == 1.0:
            nisa.tensor_copy(dst=dst, src=acc)
        else:
            nisa.activation(dst=dst, op=activation if activation is not None else nl.copy,
                            data=acc, scale=float(scale))
        return
    if activation is None:
        nisa.scalar_tensor_tensor(dst=dst, data=acc, op0=nl.multiply, operand0=float(scale),
                                  op1=nl.add, operand1=bias_sb[0:rows])
        return
    tmp = nl.ndarray(acc.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=tmp, data=acc, op0=nl.multiply, operand0=float(scale),
                              op1=nl.add, operand1=bias_sb[0:rows])
    nisa.activation(dst=dst, op=activation, data=tmp)


def _blocked(lhsT, rhs, bias, activation, scale, out_dtype, double_row):
    """The resident-stationary blocked kernel shared by `matmul` and `matmul_fp8`
    (double_row: each matmul contracts [128, 2, .] x [128, 2, .] fp8 operands), region
    by region of the output (one region unless M or N leaves a remainder)."""
    kr = 2 if double_row else 1             # contraction rows per partition per matmul
    K, M, N = _dims(lhsT, rhs)
    odt = out_dtype if out_dtype is not None else (nl.bfloat16 if double_row else lhsT.dtype)
    result = nl.ndarray((M, N), dtype=odt, buffer=nl.shared_hbm)
    bias_tile = _once(lambda: _bias_loader(bias, N))
    for m_off, rows, n_off, cols in _regions(M, N):
        _blocked_region(lhsT, rhs, result, m_off, rows, n_off, cols, K, kr, bias_tile,
                        activation, scale, odt, double_row)
    return result


def _blocked_region(lhsT, rhs, result, m_off, M, n_off, N, K, kr, bias_tile, activation,
                    scale, odt, double_row):
    """Output rows m_off..m_off+M, columns n_off..n_off+N (M a multiple of 128 or at
    most 128, N of 512 or at most 512)."""
    kp = min(K, P)                          # contraction partitions
    KT = K // (kp * kr)                     # full contraction tiles per output tile
    KR = K - KT * kp * kr                   # rows of a partial last contraction tile
    rp = -(-KR // kr)                       # its partitions
    KF = KT + (KR > 0)                      # matmuls per output tile
    mt = min(M, P)                          # stationary tile width
    NT = min(N, PSUM_N)                     # output tile width
    isz = _itemsize(lhsT.dtype)
    per_tile = KF * kr * mt * isz           # per-partition bytes of one stationary tile
    assert per_tile <= STRIP_BYTES, (
        f"K={K}: one resident [{K}, {mt}] stationary tile needs {per_tile} bytes per "
        f"partition, over the {STRIP_BYTES}-byte budget (K-blocking is not implemented)")
    TM = _largest_divisor(M // mt, min(4, STRIP_BYTES // per_tile))
    BM = TM * mt
    # streamed moving chunk: KC matmuls' worth of rhs per DMA
    KC = _largest_divisor(KT, max(1, CHUNK_BYTES // (kr * NT * isz)))
    SC = _largest_divisor(KT, max(1, CHUNK_BYTES // (kr * BM * isz)))  # strip DMA chunk

    # HBM views of the full contraction tiles, split as k = kt*kp*kr + p*kr + j
    Mf, Nf = lhsT.shape[1], rhs.shape[1]    # the whole operands' widths
    kfull = KT * kp * kr
    if KT:
        lv = lhsT[0:kfull].reshape((KT, kp, kr, Mf) if double_row else (KT, kp, Mf))
        rv = rhs[0:kfull].reshape((KT, kp, kr, Nf) if double_row else (KT, kp, Nf))

    def k_rest_tile(cols):
        return nl.ndarray((rp, kr, cols) if double_row else (rp, cols), dtype=rhs.dtype,
                          buffer=nl.sbuf)

    # a small rhs (e.g. a projection weight with K <= ~2k) is loaded once and kept
    # resident too, so that no byte of it is read from HBM twice
    rhs_whole = rhs_rest = None
    if KF * kr * N * isz <= RESIDENT_RHS_BYTES and M > BM:
        # [kp, N/NT, KT, (kr,) NT]: each column tile is one contiguous block per
        # partition, loaded by one DMA in the order the matmuls consume them (the first
        # matmuls wait for one tile of rhs, not all of it)
        if KT:
            rhs_whole = nl.ndarray((kp, N // NT, KT) + (kr,) * double_row + (NT,),
                                   dtype=rhs.dtype, buffer=nl.sbuf)
        for t in nl.affine_range(N // NT if KT else 0):
            c0 = n_off + t * NT
            if double_row:
                nisa.dma_copy(dst=rhs_whole[:, t, :, :, :],
                              src=rv[:, :, :, c0:c0 + NT].permute((1, 0, 2, 3)))
            else:
                nisa.dma_copy(dst=rhs_whole[:, t, :, :],
                              src=rv[:, :, c0:c0 + NT].permute((1, 0, 2)))
        if KR:
            rhs_rest = k_rest_tile(N)
            _load_k_rest(rhs_rest, rhs, kfull, KR, n_off, N, double_row)

    def mm(acc, stat, mov):
        if double_row:
            nisa.nc_matmul(dst=acc, stationary=stat, moving=mov,
                           perf_mode=nisa.matmul_perf_mode.double_row)
        else:
            nisa.nc_matmul(dst=acc, stationary=stat, moving=mov)

    bias_tile = bias_tile()
    for mb in nl.affine_range(M // BM):
        m0 = m_off + mb * BM
        if KT:
            strip = nl.ndarray((kp, KT) + (kr,) * double_row + (BM,), dtype=lhsT.dtype,
                               buffer=nl.sbuf)
        for s in nl.affine_range(KT // SC if KT else 0):
            if double_row:
                nisa.dma_copy(dst=strip[:, s * SC:(s + 1) * SC, :, :],
                              src=lv[s * SC:(s + 1) * SC, :, :, m0:m0 + BM]
                              .permute((1, 0, 2, 3)))
            else:
                nisa.dma_copy(dst=strip[:, s * SC:(s + 1) * SC, :],
                              src=lv[s * SC:(s + 1) * SC, :, m0:m0 + BM].permute((1, 0, 2)))
        if KR:
            strip_rest = k_rest_tile(BM)
            _load_k_rest(strip_rest, lhsT, kfull, KR, m0, BM, double_row)
        for nb in nl.affine_range(N // NT):
            n0 = n_off + nb * NT
            bias_sb = bias_tile(n0, NT) if bias_tile is not None else None
            accs = [nl.ndarray((mt, NT), dtype=nl.float32, buffer=nl.psum)
                    for _ in range(TM)]
            for c in nl.sequential_range(KT // KC if KT else 0):
                if rhs_whole is not None:
                    mv = rhs_whole[:, nb, c * KC:(c + 1) * KC]
                elif double_row:
                    mv = nl.ndarray((kp, KC, kr, NT), dtype=rhs.dtype, buffer=nl.sbuf)
                    nisa.dma_copy(dst=mv, src=rv[c * KC:(c + 1) * KC, :, :, n0:n0 + NT]
                                  .permute((1, 0, 2, 3)))
                else:
                    mv = nl.ndarray((kp, KC, NT), dtype=rhs.dtype, buffer=nl.sbuf)
                    nisa.dma_copy(dst=mv, src=rv[c * KC:(c + 1) * KC, :, n0:n0 + NT]
                                  .permute((1, 0, 2)))
                for kk in range(KC):
                    kt = c * KC + kk
                    for i in range(TM):
                        mm(accs[i], strip[:, kt, ..., i * mt:(i + 1) * mt], mv[:, kk])
            if KR:   # the partial last contraction tile
                if rhs_rest is not None:
                    mv = rhs_rest[:, ..., nb * NT:(nb + 1) * NT]
                else:
                    mv = k_rest_tile(NT)
                    _load_k_rest(mv, rhs, kfull, KR, n0, NT, double_row)
                for i in range(TM):
                    mm(accs[i], strip_rest[:, ..., i * mt:(i + 1) * mt], mv)
            out = nl.ndarray((mt, TM, NT), dtype=odt, buffer=nl.sbuf)
            for i in range(TM):
                _epilogue(out[:, i, :], accs[i], mt, bias_sb, activation, scale)
            nisa.dma_copy(dst=result[m0:m0 + BM, n0:n0 + NT].reshape((TM, mt, NT))
                          .permute((1, 0, 2)), src=out)


@nki.jit
def matmul(lhsT, rhs, bias=None, activation=None, out_dtype=None):
    """result[M, N] = activation(lhsT.T @ rhs + bias) for bf16, fp16 or fp32 lhsT [K, M]
    and rhs [K, N] (same dtype), accumulated in fp32 PSUM; result in `out_dtype`
    (default: the inputs' dtype; nl.float32 keeps the full accumulator). `bias`: [N] or
    [1, N], any float dtype; `activation`: an nl activation function (nl.relu, nl.gelu,
    nl.silu, ...). Any M, N and K. Runs on trn1, trn2, trn3."""
    assert lhsT.dtype == rhs.dtype, f"lhsT is {lhsT.dtype}, rhs is {rhs.dtype}"
    return _blocked(lhsT, rhs, bias, activation, 1.0, out_dtype, double_row=False)


@nki.jit
def matmul_fp8(lhsT, rhs, scale=1.0, bias=None, activation=None, out_dtype=None):
    """result[M, N] = activation(scale * (lhsT.T @ rhs) + bias) for fp8 lhsT [K, M] and
    rhs [K, N] (float8_e4m3 / float8_e5m2; float8_e4m3fn on trn3), pre-quantized by the
    caller with per-tensor scales whose product is `scale` (applied in the epilogue).
    Each matmul runs in `perf_mode=double_row`: [128, 2, 128] x [128, 2, 512] operands,
    a contraction of 256 in the time of a 128-row bf16 matmul, with
    k = 256 * t + 2 * partition + j. Result in `out_dtype` (default bf16).
    Any M, N and K (a partial last contraction tile of an odd K is zero-padded by one
    row). Needs NeuronCore-v3+ (trn2, trn3)."""
    assert lhsT.dtype == rhs.dtype, f"lhsT is {lhsT.dtype}, rhs is {rhs.dtype}"
    return _blocked(lhsT, rhs, bias, activation, scale, out_dtype, double_row=True)


MX_K = 4 * P   # values contracted by one nc_matmul_mx (128 partitions x 4 per x4 element)
MX_RESIDENT_BYTES = 96 * 1024  # per-partition budget of the resident quantized rhs block


def _quantize(raw, q_dst, s_dst):
    """MX-quantize a bf16 SBUF tile raw [128, 4, cols] (x4 component j of partition p is
    contraction index 128 j + p of its 512-row tile) into q_dst [128, cols] x4 and s_dst
    [128, cols] e8m0 (quadrant layout). The tile keeps HBM rows contiguous for its DMA;
    quantize_mx reads it through the permuted view [128, cols, 4]."""
    nisa.quantize_mx(dst=q_dst, src=raw.permute((0, 2, 1)), dst_scale=s_dst)


@nki.jit
def matmul_mxfp8(lhsT, rhs, bias=None, activation=None, out_dtype=None):
    """result[M, N] ~= activation(lhsT.T @ rhs + bias) in MXFP8 on trn3: bf16 (or fp16)
    lhsT [K, M] and rhs [K, N] are quantized on chip with `quantize_mx` (float8_e4m3fn,
    one e8m0 scale per 32 values: within each 512-row tile, contraction indices
    128 j + p for p in 8g..8g+7 and j = 0..3) and multiplied with `nc_matmul_mx`
    (4x the bf16 contraction per instruction, same PE time).

    Why bf16 inputs rather than pre-quantized ones: the kernel is a drop-in for the bf16
    matmul, and the MX group layout (tied to SBUF quadrants) stays private to it. Tiling:
    rhs is quantized once, in resident blocks of BN columns (as many 512-column tiles as
    fit 96 KiB per partition: all of a projection weight with K <= ~2k); for each
    128-row tile of the output, the whole [K, 128] lhsT column block is loaded in one DMA
    and quantized once per rhs block, then serves every 512-column output tile of the
    block, 4 PSUM banks (output tiles) at a time. Result in `out_dtype` (default the
    inputs' dtype). Any M, N and K: a partial last contraction tile is zero-padded to
    512 rows before quantization, an odd last row tile by one zero column (the
    instruction needs an even M); a partial last column tile is a region of its own."""
    K, M, N = _dims(lhsT, rhs)
    odt = out_dtype if out_dtype is not None else lhsT.dtype
    result = nl.ndarray((M, N), dtype=odt, buffer=nl.shared_hbm)
    bias_tile = _bias_loader(bias, N)
    for n_off, cols in _splits(N, PSUM_N):
        _mx_columns(lhsT, rhs, result, n_off, cols, K, M, bias_tile, activation, odt)
    return result


def _load_mx_rows(raw, src, k0, rows, c0, cols):
    """raw [128, 4, cols] <- src[k0 + 128 j + p, c0:c0 + cols] at [p, j]; rows past
    `rows` (a partial last contraction tile) are zero and quantize to zero."""
    jf, pr = divmod(rows, P)
    if jf:
        nisa.dma_copy(dst=raw[:, 0:jf, :], src=src[k0:k0 + jf * P, c0:c0 + cols]
                      .reshape((jf, P, cols)).permute((1, 0, 2)))
    if pr:
        nisa.dma_copy(dst=raw[0:pr, jf, :], src=src[k0 + jf * P:k0 + rows, c0:c0 + cols])
        nisa.memset(dst=raw[pr:P, jf, :], value=0.0)
    if -(-rows // P) < 4:
        nisa.memset(dst=raw[:, -(-rows // P):4, :], value=0.0)


def _mx_columns(lhsT, rhs, result, n_off, N, K, M, bias_tile, activation, odt):
    """matmul_mxfp8's output columns n_off..n_off+N (N a multiple of 512 or at most 512)."""
    KT = K // MX_K                          # full contraction tiles
    KR = K - KT * MX_K                      # rows of a partial last one
    KF = KT + (KR > 0)
    NT = min(N, PSUM_N)
    per_tile = KF * NT * 5                  # x4 data (4 B) + scale (1 B) per column
    assert per_tile <= MX_RESIDENT_BYTES, (
        f"K={K}: one resident quantized [{K}, {NT}] rhs tile needs {per_tile} bytes per "
        f"partition, over the {MX_RESIDENT_BYTES}-byte budget (K-blocking is not "
        "implemented)")
    TB = _largest_divisor(N // NT, MX_RESIDENT_BYTES // per_tile)   # tiles per rhs block
    TN = _largest_divisor(TB, 4)                                     # PSUM banks per group
    BN = TB * NT
    if KT:
        lv = lhsT[0:KT * MX_K].reshape((KT, 4, P, M))   # k = 512 kt + 128 j + p

    for nb in nl.affine_range(N // BN):
        n0 = n_off + nb * BN
        # [P, TB, KF, NT]: column tile by column tile, in the order the matmuls use them
        rq = nl.ndarray((P, TB, KF, NT), dtype=nl.float8_e4m3fn_x4, buffer=nl.sbuf)
        rs = nl.ndarray((P, TB, KF, NT), dtype=nl.float8_e8m0fnu, buffer=nl.sbuf)
        for t in nl.affine_range(TB):
            c0 = n0 + t * NT
            for kt in nl.affine_range(KF):
                raw = nl.ndarray((P, 4, NT), dtype=rhs.dtype, buffer=nl.sbuf)
                _load_mx_rows(raw, rhs, kt * MX_K, min(MX_K, K - kt * MX_K), c0, NT)
                _quantize(raw, rq[:, t, kt, :], rs[:, t, kt, :])

        def row_tile(m0, mt):
            mtp = mt + mt % 2               # nc_matmul_mx needs an even stationary width
            xraw = nl.ndarray((P, KF, 4, mtp), dtype=lhsT.dtype, buffer=nl.sbuf)
            if KT:
                nisa.dma_copy(dst=xraw[:, 0:KT, :, 0:mt],
                              src=lv[:, :, :, m0:m0 + mt].permute((2, 0, 1, 3)))
            if KR:
                _load_mx_rows(xraw[:, KT, :, 0:mt], lhsT, KT * MX_K, KR, m0, mt)
            if mtp > mt:
                nisa.memset(dst=xraw[:, :, :, mt:mtp], value=0.0)
            xq = nl.ndarray((P, KF, mtp), dtype=nl.float8_e4m3fn_x4, buffer=nl.sbuf)
            xs = nl.ndarray((P, KF, mtp), dtype=nl.float8_e8m0fnu, buffer=nl.sbuf)
            for kt in nl.affine_range(KF):
                _quantize(xraw[:, kt, :, :], xq[:, kt, :], xs[:, kt, :])
            for g in nl.affine_range(TB // TN):
                accs = [nl.ndarray((mtp, NT), dtype=nl.float32, buffer=nl.psum)
                        for _ in range(TN)]
                for kt in nl.sequential_range(KF):
                    for j in range(TN):
                        t = g * TN + j
                        nisa.nc_matmul_mx(dst=accs[j], stationary=xq[:, kt, :],
                                          moving=rq[:, t, kt, :],
                                          stationary_scale=xs[:, kt, :],
                                          moving_scale=rs[:, t, kt, :])
                out = nl.ndarray((mt, TN * NT), dtype=odt, buffer=nl.sbuf)
                c0 = n0 + g * TN * NT
                for j in range(TN):
                    bias_sb = (bias_tile(c0 + j * NT, NT) if bias_tile is not None
                               else None)
                    _epilogue(out[:, j * NT:(j + 1) * NT], accs[j][0:mt], mt, bias_sb,
                              activation, 1.0)
                nisa.dma_copy(dst=result[m0:m0 + mt, c0:c0 + TN * NT], src=out)

        for m_off, rows in _splits(M, P):
            mt = min(rows, P)
            for mb in nl.affine_range(rows // mt):
                row_tile(m_off + mb * mt, mt)
