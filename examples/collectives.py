"""Two multi-rank kernels built on nki.collectives.

1. `ring_all_gather_matmul_kernel`: y = x @ w where the rows of x are sharded across
   the ranks. Each rank multiplies the x shard it holds on the Tensor Engine while the
   CC cores pass the shard on around the ring (collective_permute_implicit, SBUF to
   SBUF, double-buffered); collective_permute_implicit_current_processing_rank_id says
   whose shard a buffer holds at each step, and that register picks the output block
   (a dynamic access pattern), so the kernel never computes a rank number itself.
   After n steps every rank has all of y.

2. `token_dispatch_kernel`: the dispatch of a mixture-of-experts layer. Each rank holds
   its tokens sorted by the rank that owns their expert, and a metadata tensor with how
   many tokens go to each rank (uneven: routing is skewed) and where they start.
   all_to_all_v_prepare reads the metadata before the tokens are ready, then
   all_to_all_v_trigger moves them; every rank receives each sender's tokens in that
   sender's slot, and the counts it received in row 2 of its metadata.

    python examples/collectives.py      # 4 ranks, numerics checked
"""
import numpy as np

from trnsim import nki
import trnsim.nki.collectives as ncc
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

TILE_K = 128


@nki.jit
def ring_all_gather_matmul_kernel(x_t, w, replica_group):
    """x_t: this rank's shard of x, transposed (K, M_r); w: (K, N). Returns y as
    (ranks, M_r, N): block r is shard r of x times w."""
    K, rows = x_t.shape
    N = w.shape[1]
    ranks = len(replica_group.replica_groups[0])
    assert K == TILE_K and rows <= 128 and N <= 512
    y = nl.ndarray((ranks, rows, N), dtype=nl.float32, buffer=nl.shared_hbm)
    w_sb = nl.ndarray((K, N), dtype=w.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=w_sb, src=w)
    shards = [nl.ndarray((K, rows), dtype=x_t.dtype, buffer=nl.sbuf) for _ in range(2)]
    nisa.dma_copy(dst=shards[0], src=x_t)
    for step in range(ranks):
        held, incoming = shards[step % 2], shards[(step + 1) % 2]
        if step < ranks - 1:  # forward first: the CC cores move it while the PE computes
            ncc.collective_permute_implicit(srcs_by_channel=[[held]],
                                            dsts_by_channel=[[incoming]],
                                            replica_group=replica_group)
        owner = ncc.collective_permute_implicit_current_processing_rank_id(
            iteration_id=step, replica_group=replica_group)
        acc = nl.ndarray((rows, N), dtype=nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=acc, stationary=held, moving=w_sb)
        block = nl.ndarray((rows, N), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=block, src=acc)
        nisa.dma_copy(dst=y.ap([[N, rows], [1, N]], scalar_offset=owner, indirect_dim=0),
                      src=block)
    return y


@nki.jit
def token_dispatch_kernel(tokens, metadata, received, replica_group):
    """tokens: this rank's (T * H,) token rows, sorted by destination rank; metadata:
    (3, ranks) uint32 send counts / displacements in elements (row 2 receives the
    counts); received: (ranks * capacity * H,), slot s for the sender at place s."""
    prepared = ncc.all_to_all_v_prepare(srcs=[tokens], dsts=[received],
                                        replica_group=replica_group,
                                        metadata_tensor=metadata)
    ncc.all_to_all_v_trigger(prepared)
    return received


# -- inputs and references -------------------------------------------------------------
def matmul_inputs(ranks=4, rows=64, N=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ranks * rows, TILE_K)).astype(np.float32)
    w = rng.standard_normal((TILE_K, N)).astype(np.float32)
    group = ncc.ReplicaGroup([list(range(ranks))])
    per_rank = [((np.ascontiguousarray(x[r * rows:(r + 1) * rows].T), w, group), {})
                for r in range(ranks)]
    return per_rank, x @ w


def dispatch_inputs(ranks=4, tokens=16, hidden=8, capacity=12, seed=1):
    """Each rank routes its tokens to ranks with Zipf-like skew (rank 0 gets most)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, ranks + 1)
    group = ncc.ReplicaGroup([list(range(ranks))])
    per_rank, sent = [], []
    for r in range(ranks):
        dest = np.sort(rng.choice(ranks, size=tokens, p=weights / weights.sum()))
        counts = np.minimum(np.bincount(dest, minlength=ranks), capacity)  # over: dropped
        kept = int(counts.sum())
        x = np.full((tokens, hidden), np.nan, np.float32)  # the kept tokens come first
        x[:kept] = (100 * r + np.arange(kept))[:, None] + np.arange(hidden) / 10
        meta = np.zeros((3, ranks), np.uint32)
        meta[0] = counts * hidden
        meta[1] = np.concatenate([[0], np.cumsum(counts)[:-1]]) * hidden
        received = np.zeros(ranks * capacity * hidden, np.float32)
        per_rank.append(((x.reshape(-1), meta, received, group), {}))
        sent.append((x, counts))
    return per_rank, sent


def dispatch_reference(sent, ranks, hidden, capacity):
    out = []
    for me in range(ranks):
        got = np.zeros((ranks, capacity, hidden), np.float32)
        for s, (x, counts) in enumerate(sent):
            first = counts[:me].sum()
            got[s, :counts[me]] = x[first:first + counts[me]]
        out.append(got.reshape(-1))
    return out


def main(ranks=4):
    per_rank, want = matmul_inputs(ranks)
    ys = nki.multi_rank_simulate(ring_all_gather_matmul_kernel, world_size=ranks,
                                 per_rank_inputs=per_rank)
    err = max(float(np.abs(y.reshape(want.shape) - want).max()) for y in ys)
    assert err <= 1e-3 * float(np.abs(want).max()), err
    print(f"ring all-gather matmul on {ranks} ranks: max abs error {err:.3g} -- OK")

    hidden, capacity = 8, 12
    per_rank, sent = dispatch_inputs(ranks, hidden=hidden, capacity=capacity)
    got = nki.multi_rank_simulate(token_dispatch_kernel, world_size=ranks,
                                  per_rank_inputs=per_rank)
    for me, (out, ref) in enumerate(zip(got, dispatch_reference(sent, ranks, hidden,
                                                                capacity))):
        np.testing.assert_array_equal(out, ref)
        recv = per_rank[me][0][1][2]
        assert list(recv) == [counts[me] * hidden for _, counts in sent]
    print(f"token dispatch on {ranks} ranks: tokens received per rank "
          f"{[int(per_rank[r][0][1][2].sum()) // hidden for r in range(ranks)]} -- OK")
    return ys, got


if __name__ == "__main__":
    main()
