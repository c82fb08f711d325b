"""A row-parallel linear layer (tensor parallelism) with its all-reduce overlapped.

    y[M, N] = sum over ranks r of  x_r^T[K_r, M].T @ w_r[K_r, N]

Each rank holds its K shard of the activations and of the weights, computes its
partial product one 128-row tile of M at a time on the Tensor Engine, and all-reduces
each tile SBUF-to-SBUF (no HBM round trip) while the Tensor Engine already works on
the next tile: the collective runs on the CC cores, the matmuls on the PE array. Every
rank gets the whole sum.

    python examples/tp_linear_all_reduce.py      # 4 ranks, numerics checked
"""
import numpy as np

from trnsim import nki
import trnsim.nki.collectives as nccl
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

TILE_K, TILE_M = 128, 128


@nki.jit
def tp_linear_all_reduce_kernel(x_t, w, replica_group):
    K, M = x_t.shape
    N = w.shape[1]
    assert K % TILE_K == 0 and M % TILE_M == 0 and N <= 512
    y = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    w_sb = []
    for k in range(K // TILE_K):  # the weight shard stays on chip
        t = nl.ndarray((TILE_K, N), dtype=w.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=w[k * TILE_K:(k + 1) * TILE_K, :])
        w_sb.append(t)
    for m in nl.affine_range(M // TILE_M):
        acc = nl.ndarray((TILE_M, N), dtype=nl.float32, buffer=nl.psum)
        for k in nl.sequential_range(K // TILE_K):
            x_sb = nl.ndarray((TILE_K, TILE_M), dtype=x_t.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=x_sb, src=x_t[k * TILE_K:(k + 1) * TILE_K,
                                            m * TILE_M:(m + 1) * TILE_M])
            nisa.nc_matmul(dst=acc, stationary=x_sb, moving=w_sb[k])
        partial = nl.ndarray((TILE_M, N), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=partial, src=acc)
        total = nl.ndarray((TILE_M, N), dtype=nl.float32, buffer=nl.sbuf)
        nccl.all_reduce(srcs=[partial], dsts=[total], replica_group=replica_group,
                        op=nl.add)
        nisa.dma_copy(dst=y[m * TILE_M:(m + 1) * TILE_M, :], src=total)
    return y


def inputs(ranks=4, K=512, M=512, N=512, seed=0):
    """Each rank's (args, kwargs): its K/ranks shard of x^T and w (bf16)."""
    import ml_dtypes
    rng = np.random.default_rng(seed)
    x_t = rng.standard_normal((K, M)).astype(ml_dtypes.bfloat16)
    w = (rng.standard_normal((K, N)) / np.sqrt(K)).astype(ml_dtypes.bfloat16)
    group = nccl.ReplicaGroup([list(range(ranks))])
    kr = K // ranks
    return [((x_t[r * kr:(r + 1) * kr], w[r * kr:(r + 1) * kr], group), {})
            for r in range(ranks)]


def reference(per_rank_inputs):
    """The exact sum of the ranks' partial products, in fp64."""
    return sum(np.asarray(a[0], np.float64).T @ np.asarray(a[1], np.float64)
               for a, _ in per_rank_inputs)


def main(ranks=4):
    per_rank = inputs(ranks)
    outs = nki.multi_rank_simulate(tp_linear_all_reduce_kernel, world_size=ranks,
                                   per_rank_inputs=per_rank)
    ref = reference(per_rank)
    err = max(float(np.abs(o - ref).max()) for o in outs)
    assert err <= 1e-3 * float(np.abs(ref).max()), err
    print(f"tp_linear_all_reduce on {ranks} ranks: max abs error {err:.3g} -- OK")
    return outs


if __name__ == "__main__":
    main()
