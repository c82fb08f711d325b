"""Tiled matrix multiplication on the Tensor Engine.

    result[M, N] = lhsT[K, M].T @ rhs[K, N]

K is tiled by 128 (the PE array's rows, the contraction on SBUF partitions) with the
partial products accumulated in one PSUM tile (`accumulate=None`: the first matmul of a
PSUM tile overwrites it, the following ones add to it), M by 128 (the stationary free
size) and N by 512 (one PSUM bank of fp32). Runs on trn1, trn2 and trn3.

    python examples/tiled_matmul.py
"""
import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

TILE_K, TILE_M, TILE_N = 128, 128, 512


@nki.jit
def tiled_matmul_kernel(lhsT, rhs):
    K, M = lhsT.shape
    K_, N = rhs.shape
    assert K == K_, "contraction sizes differ"
    assert K % TILE_K == 0 and M % TILE_M == 0 and N % TILE_N == 0
    result = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)

    for m in nl.affine_range(M // TILE_M):
        for n in nl.affine_range(N // TILE_N):
            res_psum = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum)
            for k in nl.sequential_range(K // TILE_K):
                lhsT_sb = nl.ndarray((TILE_K, TILE_M), dtype=lhsT.dtype, buffer=nl.sbuf)
                rhs_sb = nl.ndarray((TILE_K, TILE_N), dtype=rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=lhsT_sb, src=lhsT[k * TILE_K:(k + 1) * TILE_K,
                                                    m * TILE_M:(m + 1) * TILE_M])
                nisa.dma_copy(dst=rhs_sb, src=rhs[k * TILE_K:(k + 1) * TILE_K,
                                                  n * TILE_N:(n + 1) * TILE_N])
                nisa.nc_matmul(dst=res_psum, stationary=lhsT_sb, moving=rhs_sb)
            res_sb = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=res_sb, src=res_psum)
            nisa.dma_copy(dst=result[m * TILE_M:(m + 1) * TILE_M, n * TILE_N:(n + 1) * TILE_N],
                          src=res_sb)
    return result


def reference(lhsT, rhs):
    """The exact product of the input values, rounded to fp32."""
    return (np.asarray(lhsT, dtype=np.float64).T @ np.asarray(rhs, dtype=np.float64)
            ).astype(np.float32)


def main(K=512, M=256, N=1024, seed=0):
    import ml_dtypes
    rng = np.random.default_rng(seed)
    lhsT = rng.standard_normal((K, M)).astype(ml_dtypes.bfloat16)
    rhs = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    out = nki.simulate(tiled_matmul_kernel)(lhsT, rhs)
    ref = reference(lhsT, rhs)
    err = float(np.abs(out - ref).max())
    # fp32 accumulation over K/128 PSUM adds: a few fp32 ulps of the partial sums
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-4 * np.sqrt(K)), err
    print(f"tiled_matmul [{K}x{M}].T @ [{K}x{N}]: max abs error {err:.3g} -- OK")
    return out


if __name__ == "__main__":
    main()
