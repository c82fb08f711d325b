"""The four kernels of the NKI matrix-multiplication tutorial, in legacy
(`neuronxcc.nki`, NKI 0.1) style, written from the tutorial's algorithm:

    result[M, N] = lhsT[K, M].T @ rhs[K, N]          (bf16 in, lhsT's dtype out)

Tiles: K by 128 (nl.tile_size.pmax, the contraction on SBUF partitions), M by 128
(gemm_stationary_fmax) and N by 512 (gemm_moving_fmax, one fp32 PSUM bank).

1. `matmul_tiled`: for every output tile (m, n), for every k: load the lhsT and rhs
   tiles and accumulate `psum += nisa.nc_matmul(...)`; copy PSUM -> SBUF, store.
   2 * (M/128) * (N/512) * (K/128) loads.
2. `matmul_hoisted`: the loads leave the k loop: the lhsT column strip [K, 128] is
   loaded once per m, the rhs strip [K, 512] once per (m, n) (K/128 tile loads each).
3. `matmul_block_free`: M and N blocked by TILES_IN_BLOCK_M / _N tiles (2 and 2):
   a block's lhsT strips are loaded once per M block and its rhs strips once per
   (M block, N block), so every loaded rhs strip serves TILES_IN_BLOCK_M output tiles.
4. `matmul_block_mnk`: M, N and K blocked (16 / 2 / 8 tiles: 2048 / 1024 / 1024, the
   tutorial's sizes; parameters here). The loads are whole [128, BLOCK_N] and
   [128, BLOCK_M] rows (few large DMAs); each N block's result lives in SBUF
   (lhsT's dtype) for the whole K loop, each K block's PSUM partial sum being added to
   it, and is stored as [128, BLOCK_N] rows at the end.

Steps 2 and 3 allocate the tiles they refill in a loop (the hoisted strips, the blocks,
the result block) once, before the loop: on the simulator a tile lives as long as a
Python name refers to it, so allocating step 3's 128 KiB block inside its loop would keep
two of them live while the new one is allocated, more than Trn1's SBUF holds. Step 4
allocates its lhsT/rhs blocks per iteration, as the tutorial does: two of each fit, so
the allocator rotates them and the next block loads while the current one is used.

    python examples/legacy/matmul_tutorial.py        (small shapes, numerics on)
    python -m benchmarks.matmul_tutorial             (the tutorial's full shape on trn1)
"""
import numpy as np

import trnsim.legacy.isa as nisa
import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

TILE_K = nl.tile_size.pmax  # 128: contraction rows per matmul (SBUF partitions)
TILE_M = nl.tile_size.gemm_stationary_fmax  # 128: stationary free size
TILE_N = nl.tile_size.gemm_moving_fmax  # 512: moving free size (one PSUM bank of fp32)


def _shapes(lhsT, rhs):
    K, M = lhsT.shape
    K2, N = rhs.shape
    assert K == K2, f"contraction sizes differ: lhsT {lhsT.shape}, rhs {rhs.shape}"
    return K, M, N


@nki.jit
def matmul_tiled(lhsT, rhs):
    """Variant 1: one lhsT and one rhs tile load per matmul."""
    K, M, N = _shapes(lhsT, rhs)
    assert K % TILE_K == 0 and M % TILE_M == 0 and N % TILE_N == 0
    result = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.shared_hbm)

    for m in nl.affine_range(M // TILE_M):
        for n in nl.affine_range(N // TILE_N):
            res_psum = nl.zeros((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // TILE_K):
                a_tile = nl.load(lhsT[k * TILE_K:(k + 1) * TILE_K, m * TILE_M:(m + 1) * TILE_M])
                b_tile = nl.load(rhs[k * TILE_K:(k + 1) * TILE_K, n * TILE_N:(n + 1) * TILE_N])
                res_psum += nisa.nc_matmul(a_tile, b_tile)
            res_sb = nl.copy(res_psum, dtype=result.dtype)
            nl.store(result[m * TILE_M:(m + 1) * TILE_M, n * TILE_N:(n + 1) * TILE_N],
                     value=res_sb)
    return result


@nki.jit
def matmul_hoisted(lhsT, rhs):
    """Variant 2: the lhsT strip loaded once per m, the rhs strip once per (m, n)."""
    K, M, N = _shapes(lhsT, rhs)
    assert K % TILE_K == 0 and M % TILE_M == 0 and N % TILE_N == 0
    KT = K // TILE_K
    result = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.shared_hbm)

    a_p, a_f = nl.mgrid[0:TILE_K, 0:TILE_M]
    b_p, b_f = nl.mgrid[0:TILE_K, 0:TILE_N]
    r_p, r_f = nl.mgrid[0:TILE_M, 0:TILE_N]
    # [K, 128] of lhsT and [K, 512] of rhs, as KT tiles of 128 partitions each
    a_strip = nl.ndarray((KT, nl.par_dim(TILE_K), TILE_M), dtype=lhsT.dtype, buffer=nl.sbuf)
    b_strip = nl.ndarray((KT, nl.par_dim(TILE_K), TILE_N), dtype=rhs.dtype, buffer=nl.sbuf)

    for m in nl.affine_range(M // TILE_M):
        for k in nl.affine_range(KT):
            a_strip[k, a_p, a_f] = nl.load(lhsT[k * TILE_K + a_p, m * TILE_M + a_f])
        for n in nl.affine_range(N // TILE_N):
            for k in nl.affine_range(KT):
                b_strip[k, b_p, b_f] = nl.load(rhs[k * TILE_K + b_p, n * TILE_N + b_f])
            res_psum = nl.zeros((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(KT):
                res_psum += nisa.nc_matmul(a_strip[k, a_p, a_f], b_strip[k, b_p, b_f])
            res_sb = nl.copy(res_psum, dtype=result.dtype)
            nl.store(result[m * TILE_M + r_p, n * TILE_N + r_f], value=res_sb)
    return result


@nki.jit
def matmul_block_free(lhsT, rhs, TILES_IN_BLOCK_M=2, TILES_IN_BLOCK_N=2):
    """Variant 3: M and N blocked; each loaded rhs strip serves a whole M block."""
    K, M, N = _shapes(lhsT, rhs)
    BLOCK_M, BLOCK_N = TILE_M * TILES_IN_BLOCK_M, TILE_N * TILES_IN_BLOCK_N
    assert K % TILE_K == 0 and M % BLOCK_M == 0 and N % BLOCK_N == 0
    KT = K // TILE_K
    result = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.shared_hbm)

    a_p, a_f = nl.mgrid[0:TILE_K, 0:TILE_M]
    b_p, b_f = nl.mgrid[0:TILE_K, 0:TILE_N]
    r_p, r_f = nl.mgrid[0:TILE_M, 0:TILE_N]
    a_block = nl.ndarray((TILES_IN_BLOCK_M, KT, nl.par_dim(TILE_K), TILE_M), dtype=lhsT.dtype,
                         buffer=nl.sbuf)
    b_block = nl.ndarray((TILES_IN_BLOCK_N, KT, nl.par_dim(TILE_K), TILE_N), dtype=rhs.dtype,
                         buffer=nl.sbuf)

    for mb in nl.affine_range(M // BLOCK_M):
        for i in nl.affine_range(TILES_IN_BLOCK_M):
            col = (mb * TILES_IN_BLOCK_M + i) * TILE_M
            for k in nl.affine_range(KT):
                a_block[i, k, a_p, a_f] = nl.load(lhsT[k * TILE_K + a_p, col + a_f])
        for nb in nl.affine_range(N // BLOCK_N):
            for j in nl.affine_range(TILES_IN_BLOCK_N):
                col = (nb * TILES_IN_BLOCK_N + j) * TILE_N
                for k in nl.affine_range(KT):
                    b_block[j, k, b_p, b_f] = nl.load(rhs[k * TILE_K + b_p, col + b_f])
            for i in nl.affine_range(TILES_IN_BLOCK_M):
                for j in nl.affine_range(TILES_IN_BLOCK_N):
                    res_psum = nl.zeros((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
                    for k in nl.affine_range(KT):
                        res_psum += nisa.nc_matmul(a_block[i, k, a_p, a_f],
                                                   b_block[j, k, b_p, b_f])
                    res_sb = nl.copy(res_psum, dtype=result.dtype)
                    nl.store(result[(mb * TILES_IN_BLOCK_M + i) * TILE_M + r_p,
                                    (nb * TILES_IN_BLOCK_N + j) * TILE_N + r_f],
                             value=res_sb)
    return result


@nki.jit
def matmul_block_mnk(lhsT, rhs, TILES_IN_BLOCK_M=16, TILES_IN_BLOCK_N=2,
                     TILES_IN_BLOCK_K=8):
    """Variant 4: M, N and K blocked (defaults: the tutorial's 2048 / 1024 / 1024)."""
    K, M, N = _shapes(lhsT, rhs)
    BLOCK_M = TILE_M * TILES_IN_BLOCK_M
    BLOCK_N = TILE_N * TILES_IN_BLOCK_N
    BLOCK_K = TILE_K * TILES_IN_BLOCK_K
    assert M % BLOCK_M == 0 and N % BLOCK_N == 0 and K % BLOCK_K == 0
    NUM_M, NUM_N, NUM_K = M // BLOCK_M, N // BLOCK_N, K // BLOCK_K
    result = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.shared_hbm)

    a_p, a_f = nl.mgrid[0:TILE_K, 0:BLOCK_M]  # one DMA: 128 rows x a whole M block
    b_p, b_f = nl.mgrid[0:TILE_K, 0:BLOCK_N]  # one DMA: 128 rows x a whole N block
    s_p, s_f = nl.mgrid[0:TILE_K, 0:TILE_M]  # a stationary tile inside an lhsT row
    v_p, v_f = nl.mgrid[0:TILE_K, 0:TILE_N]  # a moving tile inside an rhs row
    r_p, r_f = nl.mgrid[0:TILE_M, 0:TILE_N]
    o_p, o_f = nl.mgrid[0:TILE_M, 0:BLOCK_N]

    # the running sums of one N block of the result: every M tile x every N tile of it
    acc = nl.ndarray((NUM_M, TILES_IN_BLOCK_M, TILES_IN_BLOCK_N, nl.par_dim(TILE_M), TILE_N),
                     dtype=lhsT.dtype, buffer=nl.sbuf)
    out_row = nl.ndarray((nl.par_dim(TILE_M), BLOCK_N), dtype=lhsT.dtype, buffer=nl.sbuf)

    for nb in nl.affine_range(NUM_N):
        for mb in nl.affine_range(NUM_M):
            for i in nl.affine_range(TILES_IN_BLOCK_M):
                for j in nl.affine_range(TILES_IN_BLOCK_N):
                    acc[mb, i, j, r_p, r_f] = 0

        # K blocks in order: each adds its partial sums to `acc`
        for kb in nl.sequential_range(NUM_K):
            # blocks allocated per iteration, as the tutorial does: the compiler gives
            # them rotating buffers, so the next block loads while this one is used
            b_block = nl.ndarray((TILES_IN_BLOCK_K, nl.par_dim(TILE_K), BLOCK_N),
                                 dtype=rhs.dtype, buffer=nl.sbuf)
            for kk in nl.affine_range(TILES_IN_BLOCK_K):
                row = (kb * TILES_IN_BLOCK_K + kk) * TILE_K
                b_block[kk, b_p, b_f] = nl.load(rhs[row + b_p, nb * BLOCK_N + b_f])

            for mb in nl.affine_range(NUM_M):
                a_block = nl.ndarray((TILES_IN_BLOCK_K, nl.par_dim(TILE_K), BLOCK_M),
                                     dtype=lhsT.dtype, buffer=nl.sbuf)
                for kk in nl.affine_range(TILES_IN_BLOCK_K):
                    row = (kb * TILES_IN_BLOCK_K + kk) * TILE_K
                    a_block[kk, a_p, a_f] = nl.load(lhsT[row + a_p, mb * BLOCK_M + a_f])

                for j in nl.affine_range(TILES_IN_BLOCK_N):
                    for i in nl.affine_range(TILES_IN_BLOCK_M):
                        res_psum = nl.zeros((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
                        for kk in nl.affine_range(TILES_IN_BLOCK_K):
                            res_psum += nisa.nc_matmul(a_block[kk, s_p, i * TILE_M + s_f],
                                                       b_block[kk, v_p, j * TILE_N + v_f])
                        acc[mb, i, j, r_p, r_f] += res_psum[r_p, r_f]

        # the finished N block: gather each M tile's row of N tiles, one store per row
        for mb in nl.affine_range(NUM_M):
            for i in nl.affine_range(TILES_IN_BLOCK_M):
                for j in nl.affine_range(TILES_IN_BLOCK_N):
                    out_row[r_p, j * TILE_N + r_f] = nl.copy(acc[mb, i, j, r_p, r_f])
                nl.store(result[(mb * TILES_IN_BLOCK_M + i) * TILE_M + o_p,
                                nb * BLOCK_N + o_f], value=out_row[o_p, o_f])
    return result


VARIANTS = {
    "tiled": matmul_tiled,
    "hoisted": matmul_hoisted,
    "block_free": matmul_block_free,
    "block_mnk": matmul_block_mnk,
}


def reference(lhsT, rhs):
    """The exact product rounded once to lhsT's dtype (variants 1-3, and variant 4
    when K fits one K block)."""
    exact = np.asarray(lhsT, np.float64).T @ np.asarray(rhs, np.float64)
    return exact.astype(np.float32).astype(lhsT.dtype)


def reference_block_k(lhsT, rhs, block_k):
    """Variant 4 with several K blocks: each block's product (fp32) is added to a
    running sum kept in lhsT's dtype, rounding after every add."""
    K = lhsT.shape[0]
    acc = np.zeros((lhsT.shape[1], rhs.shape[1]), dtype=lhsT.dtype)
    for k0 in range(0, K, block_k):
        part = (np.asarray(lhsT[k0:k0 + block_k], np.float64).T
                @ np.asarray(rhs[k0:k0 + block_k], np.float64)).astype(np.float32)
        acc = (acc.astype(np.float32) + part).astype(lhsT.dtype)
    return acc


def main(K=512, M=512, N=2048, seed=0):
    import ml_dtypes
    rng = np.random.default_rng(seed)
    lhsT = rng.standard_normal((K, M)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    small = dict(TILES_IN_BLOCK_M=2, TILES_IN_BLOCK_N=2, TILES_IN_BLOCK_K=2)
    for name, kernel in VARIANTS.items():
        kwargs = small if name == "block_mnk" else {}
        out, run = nki.run_legacy(kernel.fn, (lhsT, rhs), kwargs)
        want = (reference_block_k(lhsT, rhs, 2 * TILE_K) if name == "block_mnk"
                else reference(lhsT, rhs))
        err = float(np.abs(out.astype(np.float32) - want.astype(np.float32)).max())
        dmas = sum(1 for i in run.program if i.engine == "dma")
        print(f"{name:10s} [{K}x{M}].T @ [{K}x{N}]: {len(run.program)} instructions, "
              f"{dmas} DMAs, max abs error vs NumPy {err:.3g}")


if __name__ == "__main__":
    main()
