"""Collective algorithms as plans: sequences of steps of point-to-point flows.

A plan says what moves, not when: ``network.simulate`` times it.  Within a
group of n ranks (in the order given: that order is the ring order and the
chunk order: nki.collectives ReplicaGroup and neuron-runtime/about/collectives.rst), index i is ``group[i]``.

* ring: rank i sends to i+1 (mod n).  all_reduce = reduce-scatter then
  all-gather, 2(n-1) steps of S/n; all_gather n-1 steps of the contribution;
  reduce_scatter n-1 steps of S/n; all_to_all n-1 steps, step k sending S/n
  from i to i+k (pairwise exchange).
* kangaring: the ring run both ways at once (each rank reads its chunk once
  and writes it to both neighbours, the "1R2W" of neuron-runtime/explore/intranode-collective-comm.rst): every
  chunk travels ceil((n-1)/2) hops one way and floor((n-1)/2) the other, so
  all_gather / reduce_scatter take ceil((n-1)/2) steps (the published "O(N/2)")
  and all_reduce twice that.  In reduce_scatter the partial sums of a chunk
  flow toward its owner from both sides.  KangaRing's choice of two
  Hamiltonian cycles is not modelled: the ring is the group order.
* rhd (n a power of two): recursive halving (reduce-scatter, partner i XOR
  n/2, n/4, ..., 1, sending S/2, S/4, ...) and recursive doubling (all-gather,
  partner i XOR 1, 2, ..., n/2, sending C, 2C, ...); all_reduce is both,
  2 log2 n steps.
* hierarchical (torus whose dimensions differ in bandwidth): the slowest
  dimension (the last of equals) joins "instances" (Trn2 UltraServer: z);
  inner groups are the group's ranks on one instance, outer groups the ranks at
  the same position of each inner group.  As the runtime's inter-node
  decomposition (neuron-runtime/explore/internode-collective-comm.rst): all_gather =
  outer all_gather then inner all_gather; reduce_scatter = inner then outer
  reduce_scatter; all_reduce = inner reduce_scatter, outer all_reduce, inner
  all_gather.  Each part uses the algorithm this module would choose for it.
* direct (mesh): every pair in one step: all_gather and all_to_all one step
  of n(n-1) flows; reduce_scatter one step of n(n-1) flows of S/n;
  all_reduce two (reduce-scatter then all-gather).

``Step.reduce_bytes`` is what each rank adds after the step (a reduction of
two buffers of that many bytes).

Algorithm choice when ``algorithm`` is None (``choose_algorithm``):
* all_to_all, all_to_all_v, collective_permute: direct.
* torus: the runtime's published "sweet ranges" for the intra-node 2D torus
  (neuron-runtime/explore/intranode-collective-comm.rst): Mesh below 1 MB,
  RDH for 1-56 MB, KangaRing above 56 MB; RDH needs a power of two and
  KangaRing groups that hold every rank of each chip they touch (same page),
  ring otherwise.  The size is the message size as nccom-test counts it
  (all_gather: the total output; all_reduce: the buffer; reduce_scatter:
  each rank's input); MB read as MiB (choice).
* torus, group over several instances (see hierarchical), 1 MiB and up:
  hierarchical (choice: the published decomposition is for EFA nodes; the
  UltraServer's instances are joined by slower NeuronLink instead).
* switch: direct at every size.  A choice (the SDK docs give no NeuronSwitch
  thresholds): on a single-hop switch the mesh over-subscribes no link, and
  its all-reduce sends the same bytes per rank as a ring.

``Plan.bus_bytes`` follows nccom-test's bus-bandwidth factors
(tools/neuron-sys-tools/nccom-test.rst), S being ``Plan.size_bytes`` (algorithm
bandwidth = S / time): all_reduce 2(n-1)/n * S; all_gather (n-1)/n * S, S the
total output (n * contribution); reduce_scatter and all_to_all (n-1)/n * S,
S each rank's input; all_to_all_v (n-1)/n * S, S the mean bytes a rank sends;
collective_permute 1 * S.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Flow", "Step", "Plan", "plan_collective", "choose_algorithm", "KINDS"]

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "all_to_all_v",
         "collective_permute")
_MIB = 1 << 20
MESH_BELOW = 1 * _MIB
RDH_UP_TO = 56 * _MIB


@dataclass(frozen=True)
class Flow:
    src: int
    dst: int
    nbytes: float


@dataclass
class Step:
    flows: list
    reduce_bytes: float = 0.0


@dataclass
class Plan:
    kind: str
    algorithm: str
    group: tuple
    steps: list
    size_bytes: float
    bus_bytes: float
    placement: object = field(default=None, repr=False)


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def choose_algorithm(topology_kind: str, kind: str, n: int, size_bytes: float,
                     whole_chips: bool = True, tiered: bool = False) -> str:
    if kind in ("all_to_all", "all_to_all_v", "collective_permute") or topology_kind == "switch":
        return "direct"
    if size_bytes < MESH_BELOW:
        return "direct"
    if tiered and kind in _HIERARCHICAL:
        return "hierarchical"
    if size_bytes <= RDH_UP_TO and _is_pow2(n):
        return "rhd"
    return "kangaring" if whole_chips else "ring"


def _whole_chips(place, group) -> bool:
    chips = {place.chip_of(r) for r in group}
    return len(group) == len(chips) * place.ranks_per_chip


def plan_collective(place, kind, group, nbytes=0, algorithm=None, send_matrix=None,
                    pairs=None) -> Plan:
    """The plan of one collective on one replica group (see the module docstring).
    Chunks are split in bytes (fractional bytes allowed: timing only)."""
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}; one of {', '.join(KINDS)}")
    group = tuple(int(r) for r in group)
    n = len(group)
    if n == 0 or len(set(group)) != n:
        raise ValueError(f"group must hold distinct ranks, got {group}")
    for r in group:
        place.chip_of(r)
    nbytes = float(nbytes)
    size, bus = _size_and_bus(kind, n, nbytes, send_matrix, pairs)
    if algorithm is None:
        algorithm = choose_algorithm(place.topology.kind, kind, n, size, _whole_chips(place, group),
                                     _tiers(place, group) is not None)
    if algorithm == "hierarchical":
        tiers = _tiers(place, group)
        if tiers is None or kind not in _HIERARCHICAL:
            raise ValueError(f"hierarchical needs a torus whose dimensions differ in bandwidth and a "
                             f"{kind} group spanning several instances in equal parts (all_reduce, "
                             f"all_gather, reduce_scatter only)")
        return Plan(kind, algorithm, group, _HIERARCHICAL[kind](place, *tiers, nbytes), size, bus, place)
    builder = _BUILDERS.get((kind, algorithm))
    if builder is None:
        have = sorted(a for k, a in _BUILDERS if k == kind)
        raise ValueError(f"no {algorithm!r} algorithm for {kind}; available: {', '.join(have)}")
    if algorithm == "rhd" and not _is_pow2(n):
        raise ValueError(f"rhd needs a power-of-two group, got {n} ranks")
    if kind == "all_to_all_v":
        steps = builder(group, send_matrix)
    elif kind == "collective_permute":
        steps = builder(group, pairs, nbytes)
    else:
        steps = builder(group, nbytes) if n > 1 else []
    return Plan(kind, algorithm, group, steps, size, bus, place)


def _size_and_bus(kind, n, nbytes, send_matrix, pairs):
    frac = (n - 1) / n
    if kind == "all_reduce":
        return nbytes, 2 * frac * nbytes
    if kind == "all_gather":
        return n * nbytes, frac * n * nbytes
    if kind in ("reduce_scatter", "all_to_all"):
        return nbytes, frac * nbytes
    if kind == "all_to_all_v":
        if send_matrix is None or len(send_matrix) != n or any(len(row) != n for row in send_matrix):
            raise ValueError(f"all_to_all_v needs an {n}x{n} send_matrix")
        mean = sum(sum(row) for row in send_matrix) / n
        return mean, frac * mean
    if pairs is None:
        raise ValueError("collective_permute needs pairs=[(src_rank, dst_rank), ...]")
    return nbytes, nbytes


def _ring_shift(group, nbytes, steps, reduce):
    n = len(group)
    flows = [Flow(group[i], group[(i + 1) % n], nbytes) for i in range(n)]
    return [Step(list(flows), nbytes if reduce else 0.0) for _ in range(steps)]


def _ring_all_reduce(group, s):
    n = len(group)
    return _ring_shift(group, s / n, n - 1, True) + _ring_shift(group, s / n, n - 1, False)


def _ring_all_gather(group, c):
    return _ring_shift(group, c, len(group) - 1, False)


def _ring_reduce_scatter(group, s):
    return _ring_shift(group, s / len(group), len(group) - 1, True)


def _ring_all_to_all(group, s):
    n = len(group)
    return [Step([Flow(group[i], group[(i + k) % n], s / n) for i in range(n)])
            for k in range(1, n)]


def _both_ways(group, nbytes, reduce):
    n = len(group)
    ahead, behind = n // 2, (n - 1) // 2          # hops each way: ceil, floor of (n-1)/2
    steps = []
    for k in range(1, ahead + 1):
        flows = [Flow(group[i], group[(i + 1) % n], nbytes) for i in range(n)]
        if k <= behind:
            flows += [Flow(group[i], group[(i - 1) % n], nbytes) for i in range(n)]
        steps.append(Step(flows, nbytes * (2 if k <= behind else 1) if reduce else 0.0))
    return steps


def _tiers(place, group):
    """(inner groups, outer groups) split on the torus's slowest dimension, or None."""
    topo = place.topology
    if topo.kind != "torus" or len(set(topo.dim_bandwidth)) < 2:
        return None
    slow = max(d for d, bw in enumerate(topo.dim_bandwidth) if bw == min(topo.dim_bandwidth))
    inner = {}
    for r in group:
        inner.setdefault(topo.coords(place.chip_of(r))[slow], []).append(r)
    inner = list(inner.values())
    if len(inner) < 2 or len({len(g) for g in inner}) != 1 or len(inner[0]) < 2:
        return None
    outer = [tuple(g[i] for g in inner) for i in range(len(inner[0]))]
    return [tuple(g) for g in inner], outer


def _side_by_side(place, kind, groups, nbytes):
    """The steps of one collective run on each group at once (merged step by step)."""
    plans = [plan_collective(place, kind, g, nbytes) for g in groups]
    if len({p.algorithm for p in plans}) != 1:   # groups of one size pick alike but for whole_chips
        plans = [plan_collective(place, kind, g, nbytes, algorithm="ring") for g in groups]
    return [Step([f for p in plans for f in p.steps[k].flows], plans[0].steps[k].reduce_bytes)
            for k in range(len(plans[0].steps))]


def _hier_all_reduce(place, inner, outer, s):
    part = s / len(inner[0])
    return (_side_by_side(place, "reduce_scatter", inner, s)
            + _side_by_side(place, "all_reduce", outer, part)
            + _side_by_side(place, "all_gather", inner, part))


def _hier_all_gather(place, inner, outer, c):
    return (_side_by_side(place, "all_gather", outer, c)
            + _side_by_side(place, "all_gather", inner, c * len(outer[0])))


def _hier_reduce_scatter(place, inner, outer, s):
    return (_side_by_side(place, "reduce_scatter", inner, s)
            + _side_by_side(place, "reduce_scatter", outer, s / len(inner[0])))


_HIERARCHICAL = {"all_reduce": _hier_all_reduce, "all_gather": _hier_all_gather,
                 "reduce_scatter": _hier_reduce_scatter}


def _halving(group, s):
    n, steps, dist, chunk = len(group), [], len(group) // 2, s / 2
    while dist >= 1:
        steps.append(Step([Flow(group[i], group[i ^ dist], chunk) for i in range(n)], chunk))
        dist, chunk = dist // 2, chunk / 2
    return steps


def _doubling(group, c):
    n, steps, dist = len(group), [], 1
    while dist < n:
        steps.append(Step([Flow(group[i], group[i ^ dist], c * dist) for i in range(n)]))
        dist *= 2
    return steps


def _rhd_all_reduce(group, s):
    return _halving(group, s) + _doubling(group, s / len(group))


def _mesh(group, nbytes, reduce_bytes=0.0):
    return Step([Flow(a, b, nbytes) for a in group for b in group if a != b], reduce_bytes)


def _direct_all_reduce(group, s):
    n = len(group)
    return [_mesh(group, s / n, (n - 1) * s / n), _mesh(group, s / n)]


def _direct_reduce_scatter(group, s):
    n = len(group)
    return [_mesh(group, s / n, (n - 1) * s / n)]


def _direct_all_to_all_v(group, matrix):
    flows = [Flow(group[i], group[j], float(matrix[i][j]))
             for i in range(len(group)) for j in range(len(group))
             if i != j and matrix[i][j] > 0]
    return [Step(flows)] if flows else []


def _direct_permute(group, pairs, nbytes):
    members = set(group)
    flows = []
    for src, dst in pairs:
        if src not in members or dst not in members:
            raise ValueError(f"permute pair ({src}, {dst}) names a rank outside the group {group}")
        if src != dst:
            flows.append(Flow(int(src), int(dst), nbytes))
    return [Step(flows)] if flows else []


_BUILDERS = {
    ("all_reduce", "ring"): _ring_all_reduce,
    ("all_reduce", "rhd"): _rhd_all_reduce,
    ("all_reduce", "kangaring"): lambda g, s: (_both_ways(g, s / len(g), True)
                                               + _both_ways(g, s / len(g), False)),
    ("all_gather", "kangaring"): lambda g, c: _both_ways(g, c, False),
    ("reduce_scatter", "kangaring"): lambda g, s: _both_ways(g, s / len(g), True),
    ("all_reduce", "direct"): _direct_all_reduce,
    ("all_gather", "ring"): _ring_all_gather,
    ("all_gather", "rhd"): _doubling,
    ("all_gather", "direct"): lambda g, c: [_mesh(g, c)],
    ("reduce_scatter", "ring"): _ring_reduce_scatter,
    ("reduce_scatter", "rhd"): _halving,
    ("reduce_scatter", "direct"): _direct_reduce_scatter,
    ("all_to_all", "ring"): _ring_all_to_all,
    ("all_to_all", "direct"): lambda g, s: [_mesh(g, s / len(g))],
    ("all_to_all_v", "direct"): _direct_all_to_all_v,
    ("collective_permute", "direct"): _direct_permute,
}
