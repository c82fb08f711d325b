"""Tiled matrix multiplication in legacy NKI style:

    result[M, N] (fp32) = lhsT[K, M].T @ rhs[K, N]

K by 128 (the contraction on SBUF partitions), M by 128, N by 512. Each output tile
starts as a zeroed PSUM tile and `res_psum += nl.matmul(lhsT_tile, rhs_tile,
transpose_x=True)` accumulates the K tiles in place (fp32, in PSUM); the result goes
PSUM -> SBUF (`nl.copy`) -> HBM. Tiles are addressed with `nl.mgrid` index grids.

    python examples/legacy/tiled_matmul.py
"""
import sys

import numpy as np

import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

TILE_K, TILE_M, TILE_N = 128, 128, 512


@nki.jit
def tiled_matmul_kernel(lhsT, rhs):
    K, M = lhsT.shape
    K_, N = rhs.shape
    assert K == K_ and K % TILE_K == 0 and M % TILE_M == 0 and N % TILE_N == 0
    result = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)

    a_p, a_f = nl.mgrid[0:TILE_K, 0:TILE_M]
    b_p, b_f = nl.mgrid[0:TILE_K, 0:TILE_N]
    r_p, r_f = nl.mgrid[0:TILE_M, 0:TILE_N]
    for m in nl.affine_range(M // TILE_M):
        for n in nl.affine_range(N // TILE_N):
            res_psum = nl.zeros((TILE_M, TILE_N), nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // TILE_K):
                lhsT_tile = nl.load(lhsT[k * TILE_K + a_p, m * TILE_M + a_f])
                rhs_tile = nl.load(rhs[k * TILE_K + b_p, n * TILE_N + b_f])
                res_psum += nl.matmul(lhsT_tile, rhs_tile, transpose_x=True)
            res_sb = nl.copy(res_psum, dtype=result.dtype)
            nl.store(result[m * TILE_M + r_p, n * TILE_N + r_f], value=res_sb)
    return result


def reference(lhsT, rhs):
    return (np.asarray(lhsT, np.float64).T @ np.asarray(rhs, np.float64)).astype(np.float32)


def main(K=512, M=256, N=1024, chip=None):
    import ml_dtypes
    rng = np.random.default_rng(0)
    lhsT = rng.standard_normal((K, M)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    out, _ = nki.run_legacy(tiled_matmul_kernel.fn, (lhsT, rhs), chip=chip)
    err = float(np.abs(out - reference(lhsT, rhs)).max())
    print(f"legacy tiled_matmul [{K}x{M}].T @ [{K}x{N}]: max abs error {err:.3g}")
    return err


if __name__ == "__main__":
    main(chip=sys.argv[1] if len(sys.argv) > 1 else None)
