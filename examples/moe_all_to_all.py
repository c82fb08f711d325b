"""Mixture-of-experts token dispatch and combine across ranks with
`nki.collectives.all_to_all_v`, Qwen3-30B-A3B-shaped: 128 experts, top-8, hidden 2048,
bf16, the experts spread over the ranks (expert parallelism).

Host side (NumPy, what a framework's router and placement code do):
- `popularity` / `route`: each token picks top_k distinct experts, with every expert
  equally likely ("uniform") or Zipf-skewed (expert of popularity rank i chosen with
  weight 1 / i**s; which experts are hot is a seeded permutation). Sampling without
  replacement by the Gumbel top-k trick; the gates are a softmax over the chosen
  experts' keys (they sum to 1, as Qwen3's normalized top-k probabilities do).
- `place_experts`: expert slots on ranks, with cost-aware replication of hot experts
  (the idea of "cost-aware expert replication", MLSys 2026; this code is ours): every
  rank has `slots_per_rank` expert slots, the spare ones (slots minus experts) go one by
  one to the expert with the largest expected load per copy; then every copy, heaviest
  first, goes to the least-loaded rank with a free slot that holds no copy of it
  (longest-processing-time placement). Expected loads come from a calibration batch of
  router decisions, not from the batch being measured.
- `plan_dispatch`: which copy of which expert each (token, k) goes to (a rank holding
  a copy of the expert itself keeps its tokens; other ranks split an expert's tokens
  round-robin over its copies), the send order (by destination rank, then expert, then
  token), and every rank's kernel inputs: the one-hot gather matrix, the gate-weighted
  combine matrix and the all_to_all_v metadata of both directions.

Device side (NKI, the same program on every rank):
- `dispatch_kernel`: the send buffer [T * top_k, H] = gather @ x on the Tensor Engine
  (one-hot rows: an exact copy of the token rows), then all_to_all_v into a packed
  receive buffer (has_rdispls: the rows from rank s start at recv_displs[s]).
- `combine_kernel`: all_to_all_v of the expert outputs back to their sources (the
  metadata of the dispatch, read the other way), each row landing where its copy left
  from, then out [T, H] = combine @ back on the Tensor Engine: the gate-weighted sum of
  each token's top_k expert outputs, accumulated in fp32 PSUM and rounded once to bf16.

The experts themselves are not run here (the expert FFN kernels are trnsim.kernels.moe);
between the two kernels a stand-in scales every row by its expert's factor
(`expert_stand_in`), so that the combine's result depends on which expert saw a row.
Metadata is uint32 in elements (rows * hidden), recv_counts_known=True (the router
knows them). On hardware, has_rdispls=True is documented for NeuronSwitch (Trn3) and
inter-node groups only; trnsim runs it on any topology.

    python examples/moe_all_to_all.py [--ranks 16] [--tokens 32] [--hidden 256]
        [--skew zipf] [--replicate] [--topology trn3-ultraserver-64]
"""

import argparse
import sys
from dataclasses import dataclass

import ml_dtypes
import numpy as np

import trnsim
from trnsim import nki
import trnsim.nki.collectives as ncc
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

EXPERTS, TOP_K, HIDDEN = 128, 8, 2048      # Qwen3-30B-A3B
ZIPF_S = 1.0
BF16 = ml_dtypes.bfloat16
P, N_TILE = 128, 512                       # partitions; one fp32 PSUM bank


# -- device side -------------------------------------------------------------------------
def _tiles(n):
    return [(i, min(P, n - i)) for i in range(0, n, P)]


def _matmul_into(dst, lhsT, rhs):
    """dst[M, N] (HBM) = lhsT[K, M].T @ rhs[K, N] (HBM, bf16): contraction in 128-row
    tiles accumulated in fp32 PSUM, 512 columns per bank, rounded once into dst."""
    K, M = lhsT.shape
    N = rhs.shape[1]
    lhs_sb, rhs_sb = [], []
    for k0, kp in _tiles(K):
        a = nl.ndarray((kp, M), dtype=lhsT.dtype, buffer=nl.sbuf)
        b = nl.ndarray((kp, N), dtype=rhs.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=a, src=lhsT[k0:k0 + kp, :])
        nisa.dma_copy(dst=b, src=rhs[k0:k0 + kp, :])
        lhs_sb.append(a)
        rhs_sb.append(b)
    for m0, mp in _tiles(M):
        out = nl.ndarray((mp, N), dtype=dst.dtype, buffer=nl.sbuf)
        for n0 in range(0, N, N_TILE):
            nn = min(N_TILE, N - n0)
            acc = nl.ndarray((mp, nn), dtype=nl.float32, buffer=nl.psum)
            for a, b in zip(lhs_sb, rhs_sb):
                nisa.nc_matmul(dst=acc, stationary=a[:, m0:m0 + mp], moving=b[:, n0:n0 + nn])
            nisa.tensor_copy(dst=out[:, n0:n0 + nn], src=acc)
        nisa.dma_copy(dst=dst[m0:m0 + mp, :], src=out)


def _exchange(src, dst, metadata, replica_group):
    """all_to_all_v of the rows of src into dst as the host's metadata [4, n] says."""
    meta = nl.ndarray(metadata.shape, dtype=metadata.dtype, buffer=nl.private_hbm)
    nisa.dma_copy(dst=meta, src=metadata)
    ncc.all_to_all_v(srcs=[src], dsts=[dst], replica_group=replica_group,
                     metadata_tensor=meta, recv_counts_known=True, has_rdispls=True)


def _exchange_from(rows, metadata, replica_group, dst_rows):
    """_exchange of HBM `rows` (an input: copied to private HBM first) into a new
    [dst_rows, H] shared-HBM buffer, which it returns."""
    src = nl.ndarray(rows.shape, dtype=rows.dtype, buffer=nl.private_hbm)
    nisa.dma_copy(dst=src, src=rows)
    dst = nl.ndarray((dst_rows, rows.shape[1]), dtype=rows.dtype, buffer=nl.shared_hbm)
    _exchange(src, dst, metadata, replica_group)
    return dst


@nki.jit
def dispatch_kernel(x, gather_T, metadata, replica_group, recv_rows):
    """x [T, H] this rank's tokens; gather_T [T, S] one-hot (column j: the token of
    send row j, S = T * top_k); metadata [4, n] uint32. Returns the packed receive
    buffer [recv_rows, H] (rows from rank s at recv_displs[s]; the rest unwritten)."""
    H = x.shape[1]
    send = nl.ndarray((gather_T.shape[1], H), dtype=x.dtype, buffer=nl.private_hbm)
    _matmul_into(send, gather_T, x)
    recv = nl.ndarray((recv_rows, H), dtype=x.dtype, buffer=nl.shared_hbm)
    _exchange(send, recv, metadata, replica_group)
    return recv


@nki.jit
def combine_kernel(y, combine_T, metadata, replica_group):
    """y [R, H] the expert outputs in received order; combine_T [S, T] the gate of send
    row j in row j, column token(j); metadata [4, n] uint32 (the dispatch's, reversed).
    Returns out [T, H] = sum over each token's copies of gate * expert output."""
    S, T = combine_T.shape
    back = _exchange_from(y, metadata, replica_group, S)
    out = nl.ndarray((T, y.shape[1]), dtype=y.dtype, buffer=nl.shared_hbm)
    _matmul_into(out, combine_T, back)
    return out


@nki.jit
def exchange_kernel(rows, metadata, replica_group, dst_rows):
    """The all_to_all_v alone, HBM to HBM: rows [R, H] already in send order (the host
    did the gather) -> [dst_rows, H]. The benchmark's dispatch and combine at 64 and 144
    ranks: a run with numerics holds every rank's SBUF, which an HBM-only kernel never
    touches."""
    return _exchange_from(rows, metadata, replica_group, dst_rows)


# -- host side: routing --------------------------------------------------------------------
def popularity(skew, num_experts=EXPERTS, zipf_s=ZIPF_S, seed=0) -> np.ndarray:
    """Each expert's selection weight (sums to 1): equal, or Zipf over a seeded random
    order of the experts."""
    if skew == "uniform":
        return np.full(num_experts, 1.0 / num_experts)
    if skew != "zipf":
        raise ValueError(f"skew must be 'uniform' or 'zipf', got {skew!r}")
    w = 1.0 / np.arange(1, num_experts + 1) ** zipf_s
    return (w / w.sum())[np.random.default_rng(seed).permutation(num_experts)]


def route(pop, num_ranks, tokens_per_rank, top_k=TOP_K, seed=0):
    """(experts [N, T, top_k] int, gates [N, T, top_k] float32): top_k distinct experts per
    token drawn without replacement by weight `pop` (Gumbel top-k), gates a softmax over
    the chosen keys."""
    rng = np.random.default_rng(seed)
    keys = np.log(pop) + rng.gumbel(size=(num_ranks, tokens_per_rank, len(pop)))
    experts = np.argsort(-keys, axis=-1, kind="stable")[..., :top_k]
    chosen = np.take_along_axis(keys, experts, axis=-1)
    gates = np.exp(chosen - chosen.max(axis=-1, keepdims=True))
    return experts, (gates / gates.sum(axis=-1, keepdims=True)).astype(np.float32)


def expected_load(experts, num_experts=EXPERTS) -> np.ndarray:
    """Token copies per expert in a batch of router decisions."""
    return np.bincount(np.ravel(experts), minlength=num_experts).astype(float)


# -- host side: expert placement with replication ----------------------------------------
@dataclass
class ExpertPlacement:
    replicas: list        # expert -> tuple of the ranks holding a copy
    num_ranks: int
    slots_per_rank: int
    rank_load: np.ndarray  # expected token copies per rank (a replica's share of its expert)

    @property
    def copies(self) -> np.ndarray:
        return np.array([len(r) for r in self.replicas])


def place_experts(load, num_ranks, slots_per_rank, replicate=True) -> ExpertPlacement:
    """Expert copies on ranks (see the module docstring): with `replicate`, every spare
    slot holds one more copy of the expert with the largest expected load per copy."""
    load = np.asarray(load, float)
    E = len(load)
    spare = num_ranks * slots_per_rank - E
    if spare < 0:
        raise ValueError(f"{E} experts do not fit {num_ranks} ranks x {slots_per_rank} slots")
    copies = np.ones(E, dtype=int)
    for _ in range(spare if replicate else 0):
        per_copy = np.where(copies < num_ranks, load / copies, -1.0)
        e = int(np.argmax(per_copy))
        if per_copy[e] <= 0:
            break
        copies[e] += 1
    order = sorted(((load[e] / copies[e], e) for e in range(E) for _ in range(copies[e])),
                   key=lambda item: (-item[0], item[1]))
    free = np.full(num_ranks, slots_per_rank)
    rank_load = np.zeros(num_ranks)
    holders = [[] for _ in range(E)]
    for share, e in order:
        ok = [r for r in range(num_ranks) if free[r] and r not in holders[e]]
        r = min(ok, key=lambda r: (rank_load[r], r))
        holders[e].append(r)
        free[r] -= 1
        rank_load[r] += share
    return ExpertPlacement([tuple(sorted(h)) for h in holders], num_ranks, slots_per_rank,
                           rank_load)


def slots_for(num_ranks, num_experts=EXPERTS, headroom=0.125) -> int:
    """Expert slots per rank: room for every expert plus `headroom` spare copies."""
    return int(np.ceil(num_experts * (1 + headroom) / num_ranks))


# -- host side: the dispatch plan and the kernels' inputs ---------------------------------
@dataclass
class DispatchPlan:
    counts: np.ndarray      # [N, N] rows rank s sends to rank r
    send_token: list        # per rank: the token of each send row (send order)
    send_expert: list       # per rank: the expert of each send row
    send_gate: list         # per rank: the gate of each send row
    recv_expert: list       # per rank: the expert of each received row (packed order)
    recv_rows: int          # receive capacity (the largest rank's rows): equal on all ranks
    hidden: int
    tokens: int             # per rank

    @property
    def num_ranks(self) -> int:
        return len(self.counts)

    def send_displs(self) -> np.ndarray:
        """[N, N] first send row of rank s's chunk for rank r."""
        return np.cumsum(self.counts, axis=1) - self.counts

    def recv_displs(self) -> np.ndarray:
        """[N, N] first receive row on rank r of the chunk from rank s (indexed [r, s])."""
        c = self.counts.T
        return np.cumsum(c, axis=1) - c

    def recv_bytes(self, itemsize=2) -> np.ndarray:
        return self.counts.sum(axis=0) * self.hidden * itemsize


def _choose_replica(experts, placement):
    """[N, T, K] destination ranks: a rank holding the expert keeps its tokens, the
    others go round-robin over the expert's copies (per source rank and expert)."""
    N = experts.shape[0]
    dest = np.empty_like(experts)
    for s in range(N):
        seen = np.zeros(len(placement.replicas), dtype=int)
        for idx, e in np.ndenumerate(experts[s]):
            reps = placement.replicas[e]
            if s in reps:
                dest[(s,) + idx] = s
            else:
                dest[(s,) + idx] = reps[(seen[e] + s) % len(reps)]
                seen[e] += 1
    return dest


def plan_dispatch(experts, gates, placement, hidden=HIDDEN) -> DispatchPlan:
    """Where every (token, k) copy goes and in which order each rank sends and receives
    (see the module docstring)."""
    N, T, K = experts.shape
    dest = _choose_replica(experts, placement)
    counts = np.zeros((N, N), dtype=np.int64)
    tokens, exps, gts = [], [], []
    for s in range(N):
        d, e = dest[s].ravel(), experts[s].ravel()
        order = np.lexsort((np.arange(T * K), e, d))   # by destination, expert, copy
        tokens.append(order // K)
        exps.append(e[order])
        gts.append(gates[s].ravel()[order])
        counts[s] = np.bincount(d, minlength=N)
    plan = DispatchPlan(counts, tokens, exps, gts, [], int(counts.sum(axis=0).max()), hidden, T)
    sd = plan.send_displs()
    plan.recv_expert = [np.concatenate([exps[s][sd[s, r]:sd[s, r] + counts[s, r]]
                                        for s in range(N)]) for r in range(N)]
    return plan


def _metadata(send_counts, send_displs, recv_counts, recv_displs, hidden) -> np.ndarray:
    """all_to_all_v metadata [4, n] uint32 in elements (rows of `hidden` elements)."""
    rows = np.stack([send_counts, send_displs, recv_counts, recv_displs]) * hidden
    return rows.astype(np.uint32)


def kernel_inputs(plan: DispatchPlan, rank: int) -> dict:
    """This rank's gather_T [T, S], combine_T [S, T] (bf16) and the metadata of both
    directions."""
    S, T = len(plan.send_token[rank]), plan.tokens
    gather_T = np.zeros((T, S), dtype=BF16)
    gather_T[plan.send_token[rank], np.arange(S)] = 1
    combine_T = np.zeros((S, T), dtype=BF16)
    combine_T[np.arange(S), plan.send_token[rank]] = plan.send_gate[rank].astype(BF16)
    sd, rd = plan.send_displs(), plan.recv_displs()
    c = plan.counts
    dispatch = _metadata(c[rank], sd[rank], c[:, rank], rd[rank], plan.hidden)
    combine = _metadata(c[:, rank], rd[rank], c[rank], sd[rank], plan.hidden)
    return {"gather_T": gather_T, "combine_T": combine_T, "dispatch_meta": dispatch,
            "combine_meta": combine}


def expert_stand_in(recv, recv_expert, num_experts=EXPERTS) -> np.ndarray:
    """What the experts would return, stand-in: each row times 1 + expert / num_experts
    (in fp32, rounded to the rows' dtype); rows past the received ones stay as they are."""
    out = np.array(recv, copy=True)
    n = len(recv_expert)
    scale = (1.0 + recv_expert / num_experts).astype(np.float32)[:, None]
    out[:n] = (recv[:n].astype(np.float32) * scale).astype(recv.dtype)
    return out


# -- references --------------------------------------------------------------------------
def reference_dispatch(xs, plan: DispatchPlan) -> list:
    """Each rank's received rows [recv_rows, H] (unreceived rows zero)."""
    out, sd = [], plan.send_displs()
    for r in range(plan.num_ranks):
        rows = [xs[s][plan.send_token[s][sd[s, r]:sd[s, r] + plan.counts[s, r]]]
                for s in range(plan.num_ranks)]
        got = np.concatenate(rows) if rows else np.zeros((0, plan.hidden), xs[0].dtype)
        buf = np.zeros((plan.recv_rows, plan.hidden), dtype=xs[0].dtype)
        buf[:len(got)] = got
        out.append(buf)
    return out


def reference_moe(xs, experts, gates, num_experts=EXPERTS) -> list:
    """Each rank's combined output straight from the routing, no plan: out[t] = sum_k
    bf16(gate) * bf16(x[t] * (1 + e / E)) in fp32, rounded to x's dtype."""
    out = []
    for x, e, g in zip(xs, experts, gates):
        xf = x.astype(np.float32)
        scaled = (xf[:, None, :] * (1.0 + e / num_experts)[..., None].astype(np.float32))
        y = scaled.astype(x.dtype).astype(np.float32)
        w = g.astype(BF16).astype(np.float32)[..., None]
        out.append((w * y).sum(axis=1).astype(x.dtype))
    return out


# -- running it --------------------------------------------------------------------------
def run(plan: DispatchPlan, xs, topology=None, numerics=True, exchange_only=False,
        keep=lambda profile: profile):
    """Profile the dispatch, the stand-in experts (host) and the combine on
    plan.num_ranks ranks: (keep(dispatch RanksProfile), keep(combine RanksProfile));
    `keep` may return a digest, so that a large run's profile is let go early. With
    `exchange_only`, the gather and the weighted sum run on the host and the kernels are
    the two all_to_all_v alone (`exchange_kernel`: the combine's outputs are then the
    returned rows in send order)."""
    N = plan.num_ranks
    rg = ncc.ReplicaGroup([list(range(N))])
    inputs = [kernel_inputs(plan, r) for r in range(N)]

    def profile(kernel, args):
        return trnsim.profile_ranks(kernel, world_size=N, topology=topology,
                                    numerics=numerics, per_rank_inputs=[(a, {}) for a in args])

    if exchange_only:
        d = profile(exchange_kernel, [(xs[r][plan.send_token[r]], inputs[r]["dispatch_meta"],
                                       rg, plan.recv_rows) for r in range(N)])
    else:
        d = profile(dispatch_kernel, [(xs[r], inputs[r]["gather_T"], inputs[r]["dispatch_meta"],
                                       rg, plan.recv_rows) for r in range(N)])
    ys = [expert_stand_in(np.asarray(d.outputs[r]), plan.recv_expert[r]) if numerics
          else np.zeros((plan.recv_rows, plan.hidden), BF16) for r in range(N)]
    d = keep(d)
    if exchange_only:
        c = profile(exchange_kernel, [(ys[r], inputs[r]["combine_meta"], rg,
                                       len(plan.send_token[r])) for r in range(N)])
    else:
        c = profile(combine_kernel, [(ys[r], inputs[r]["combine_T"], inputs[r]["combine_meta"],
                                      rg) for r in range(N)])
    return d, keep(c)


def make_case(num_ranks, tokens_per_rank, skew, replicate, hidden=HIDDEN, seed=0):
    """(plan, xs, placement, (experts, gates)) for one configuration: the popularity from
    `seed`, the calibration batch (the placement's expected loads) and the measured batch
    from other seeds, the tokens x [T, hidden] bf16 per rank."""
    pop = popularity(skew, seed=seed)
    calibration, _ = route(pop, num_ranks, tokens_per_rank, seed=seed + 1000)
    placement = place_experts(expected_load(calibration), num_ranks, slots_for(num_ranks),
                              replicate)
    experts, gates = route(pop, num_ranks, tokens_per_rank, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    xs = [rng.standard_normal((tokens_per_rank, hidden)).astype(BF16) for _ in range(num_ranks)]
    return plan_dispatch(experts, gates, placement, hidden), xs, placement, (experts, gates)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32, help="tokens per rank")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--skew", choices=("uniform", "zipf"), default="zipf")
    ap.add_argument("--replicate", action="store_true")
    ap.add_argument("--topology", default="trn3-ultraserver-64")
    a = ap.parse_args(argv)
    plan, xs, placement, (experts, gates) = make_case(a.ranks, a.tokens, a.skew, a.replicate,
                                                      a.hidden)
    d, c = run(plan, xs, a.topology)
    for r, want in enumerate(reference_dispatch(xs, plan)):
        n = plan.counts[:, r].sum()
        assert np.array_equal(np.asarray(d.outputs[r])[:n], want[:n]), f"dispatch rank {r}"
    for r, want in enumerate(reference_moe(xs, experts, gates)):
        np.testing.assert_allclose(np.asarray(c.outputs[r], np.float32),
                                   want.astype(np.float32), rtol=2 ** -7, atol=1e-6)
    rb = plan.recv_bytes()
    print(f"{a.ranks} ranks on {a.topology}, {a.tokens} tokens/rank, hidden {a.hidden}, "
          f"{a.skew} routing, replication {'on' if a.replicate else 'off'} "
          f"({int((placement.copies > 1).sum())} experts replicated)")
    print(f"  receive bytes: max {rb.max():,} / mean {rb.mean():,.0f} "
          f"= {rb.max() / rb.mean():.2f}x")
    for name, p in (("dispatch", d), ("combine", c)):
        coll = p.collectives[0]
        print(f"  {name}: all_to_all_v {coll.duration / 1e3:.1f} us ({coll.algorithm}), "
              f"kernel {p.total_time * 1e6:.1f} us; matches the NumPy reference")


if __name__ == "__main__":
    main(sys.argv[1:])
