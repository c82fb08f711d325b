"""Link sharing and event timing (trnsim.fabric.network) on hand-computable fabrics."""

import json
from pathlib import Path

import numpy as np
import pytest

from trnsim.fabric.algorithms import Flow, Plan, Step, plan_collective
from trnsim.fabric import network
from trnsim.fabric.network import Transfer, max_min_rates, simulate
from trnsim.fabric.topology import load_topology

EXAMPLE = Path(__file__).parent / "data" / "fabric_2x2_torus.json"


def ring_topology(tmp_path, n, bandwidth=1.0, latency=0.0, step=0.0, launch=0.0, reduce=1.0):
    """A hypothetical 1D ring of n chips, written as a user's topology file."""
    data = {"name": f"ring{n}", "chip": "trn2", "kind": "torus", "dims": [n],
            "link_bandwidth": bandwidth, "link_latency_ns": latency,
            "intra_chip_bandwidth": 100.0, "intra_chip_latency_ns": 0,
            "reduce_bandwidth": reduce, "step_overhead_ns": step, "launch_overhead_ns": launch}
    path = tmp_path / f"ring{n}.json"
    path.write_text(json.dumps(data))
    return load_topology(path)


def one_step(place, *flows, reduce_bytes=0.0):
    return Plan("collective_permute", "direct", (), [Step([Flow(*f) for f in flows], reduce_bytes)],
                0.0, 0.0, place)


def ends(place, *plans, starts=None):
    starts = starts or [0.0] * len(plans)
    return [r.end_ns for r in simulate(place, [Transfer(s, p) for s, p in zip(starts, plans)])]


def test_two_flows_on_one_link_take_twice_as_long(tmp_path):
    place = ring_topology(tmp_path, 4).placement(4)
    alone = ends(place, one_step(place, (0, 1, 1000)))
    assert alone == [1000.0]
    assert ends(place, one_step(place, (0, 1, 1000)), one_step(place, (0, 1, 1000))) == [2000.0, 2000.0]
    # disjoint links (0->1 and 2->3, or the two directions of one pair) do not slow each other
    assert ends(place, one_step(place, (0, 1, 1000)), one_step(place, (2, 3, 1000))) == [1000.0, 1000.0]
    assert ends(place, one_step(place, (0, 1, 1000), (1, 0, 1000))) == [1000.0]


def test_rates_are_recomputed_when_a_flow_finishes(tmp_path):
    place = ring_topology(tmp_path, 4).placement(4)
    # both at 1/2 until the short one is done at 1000 ns; then the long one alone at 1
    short, long = one_step(place, (0, 1, 500)), one_step(place, (0, 1, 1000))
    assert ends(place, short, long) == [1000.0, 1500.0]
    # a later start: alone for 400 ns (400 B), shared 1200 ns, alone again 0 ns
    assert ends(place, one_step(place, (0, 1, 1000)), one_step(place, (0, 1, 600)),
                starts=[0.0, 400.0]) == [1600.0, 1600.0]


def test_slow_link_sets_the_rate():
    place = load_topology(str(EXAMPLE)).placement(4)   # x links 1 B/ns, y links 4 B/ns
    assert ends(place, one_step(place, (0, 2, 1000))) == [250.0]       # y only
    assert ends(place, one_step(place, (0, 3, 1000))) == [1000.0]      # x then y


def test_max_min_three_flows_by_hand():
    # link 0 (capacity 1): flows A, B; link 1 (capacity 2): flows B, C.
    # Fill: all rise to 1/2, link 0 is full (A, B frozen); C rises alone to 2 - 1/2.
    rates = max_min_rates(3, np.array([0, 1, 1, 2]), np.array([0, 0, 1, 1]), np.array([1.0, 2.0]))
    assert rates.tolist() == [0.5, 0.5, 1.5]


def test_latency_overheads_and_reduction(tmp_path):
    topo = ring_topology(tmp_path, 4, bandwidth=2.0, latency=10.0, step=100.0, launch=1000.0, reduce=4.0)
    place = topo.placement(4)
    # launch, step overhead, 2 hops of latency (0 -> 2), bytes / bandwidth, reduction
    (result,) = simulate(place, [Transfer(50.0, one_step(place, (0, 2, 800), reduce_bytes=400))])
    assert result.steps == [(1050.0, 1050.0 + 100 + 400 + 20 + 100)]
    assert result.end_ns == 1670.0


def test_ring_all_reduce_matches_closed_form(tmp_path):
    n, size, bw, lat, step, launch, red = 4, 4096.0, 2.0, 10.0, 100.0, 1000.0, 4.0
    place = ring_topology(tmp_path, n, bw, lat, step, launch, red).placement(n)
    plan = plan_collective(place, "all_reduce", range(n), size, algorithm="ring")
    assert len(plan.steps) == 2 * (n - 1)
    assert all(f.nbytes == size / n for s in plan.steps for f in s.flows)
    (result,) = simulate(place, [Transfer(0.0, plan)])
    chunk = size / n
    expected = launch + 2 * (n - 1) * (step + chunk / bw + lat) + (n - 1) * chunk / red
    assert result.end_ns == pytest.approx(expected, rel=1e-12)
    assert result.busbw == pytest.approx(2 * (n - 1) / n * size / expected)


def test_overlapping_collectives_slow_each_other(tmp_path):
    place = ring_topology(tmp_path, 4).placement(4)
    plan = plan_collective(place, "all_gather", range(4), 1000.0, algorithm="ring")
    alone = ends(place, plan)[0]
    together = ends(place, plan, plan)
    assert alone == 3000.0 and together == [6000.0, 6000.0]
    later = ends(place, plan, plan, starts=[0.0, 10_000.0])
    assert later == [3000.0, 13_000.0]


def test_all_to_all_on_144_ranks_is_bound_by_each_ranks_dma_engines():
    place = load_topology("trn3-ultraserver-144").placement(144)
    plan = plan_collective(place, "all_to_all", range(144), 144 * 2 ** 20)
    assert sum(len(s.flows) for s in plan.steps) == 144 * 143 == 20_592
    (result,) = simulate(place, [Transfer(0.0, plan)])
    topo = place.topology
    # each rank's DMA engines (528 B/ns, below the 1280 B/ns up-link) send 143 MiB;
    # one step; 2 links of latency
    expected = (topo.launch_overhead_ns + topo.step_overhead_ns + 143 * 2 ** 20 / 528
                + 2 * topo.links[0].latency_ns)
    assert result.end_ns == pytest.approx(expected)


def test_one_rank_is_dma_bound_four_ranks_fill_the_switch_link():
    topo = load_topology("trn3-ultraserver-64")
    launch = topo.launch_overhead_ns + topo.step_overhead_ns + 2 * topo.links[0].latency_ns
    one = topo.placement(64)
    assert ends(one, one_step(one, (0, 1, 528_000))) == [pytest.approx(launch + 1000)]
    four = topo.placement(256)       # ranks 0-3 on chip 0, 4-7 on chip 1
    pairs = [(r, r + 4, 320_000) for r in range(4)]          # 1280 / 4 = 320 B/ns each
    assert ends(four, one_step(four, *pairs)) == [pytest.approx(launch + 1000)]


def test_empty_zero_byte_and_foreign_plans(tmp_path):
    topo = ring_topology(tmp_path, 4, latency=10.0, step=100.0, launch=1000.0)
    place = topo.placement(4)
    nothing = plan_collective(place, "all_reduce", (2,), 4096.0)           # one rank: no steps
    (result,) = simulate(place, [Transfer(5.0, nothing)])
    assert result.steps == [] and result.end_ns == 1005.0
    # a 0-byte flow still pays its route's latency; a flow to oneself costs nothing
    assert ends(place, one_step(place, (0, 2, 0), (1, 1, 64))) == [1000 + 100 + 20]
    other = ring_topology(tmp_path, 4).placement(4)
    with pytest.raises(ValueError, match="another placement"):
        simulate(place, [Transfer(0.0, plan_collective(other, "all_gather", range(4), 64.0))])


def random_network(rng, links=12, flows=60):
    capacity = rng.integers(1, 5, links).astype(float)
    entries = [(f, l) for f in range(flows)
               for l in rng.choice(links, rng.integers(1, min(links, 3) + 1), replace=False)]
    flow, link = (np.array(x) for x in zip(*entries))
    return capacity, flow, link


def is_max_min_fair(rates, flow, link, capacity, rtol=1e-9):
    """Feasible, and every flow has a bottleneck: a full link on which no flow is faster
    (the characterisation of the unique max-min fair allocation; no filling involved)."""
    load = np.bincount(link, rates[flow], len(capacity))
    if np.any(load > capacity * (1 + rtol)):
        return False
    fastest = np.zeros(len(capacity))
    np.maximum.at(fastest, link, rates[flow])
    full = load >= capacity * (1 - rtol)
    has_bottleneck = np.zeros(len(rates), dtype=bool)
    has_bottleneck[flow[full[link] & (rates[flow] >= fastest[link] * (1 - rtol))]] = True
    return bool(has_bottleneck[np.unique(flow)].all())


def test_max_min_rates_are_max_min_fair_on_random_networks():
    rng = np.random.default_rng(7)
    for _ in range(50):
        capacity, flow, link = random_network(rng, rng.integers(2, 15), rng.integers(1, 80))
        shuffled = rng.permutation(len(flow))                # entries in any order
        rates = max_min_rates(flow.max() + 1, flow[shuffled], link[shuffled], capacity)
        assert is_max_min_fair(rates, flow, link, capacity)
        assert rates.min() > 0                               # nobody starves


def reference_finish_times(place, starts, flows):
    """When each flow (src, dst, nbytes) starting at its own time has moved its last byte:
    max-min fair rates by textbook progressive filling over Python lists, re-solved from
    scratch at every start and finish."""
    routes = [place.route(src, dst) for src, dst, _ in flows]
    capacity = [link.bandwidth for link in place.links]
    left = [float(nbytes) for _, _, nbytes in flows]
    done = [None if nbytes > 0 and route else start
            for start, route, (_, _, nbytes) in zip(starts, routes, flows)]
    now = 0.0
    while any(d is None for d in done):
        moving = [i for i, d in enumerate(done) if d is None and starts[i] <= now]
        rate, frozen, level = {}, set(), 0.0
        residual = list(capacity)
        while len(frozen) < len(moving):
            users = {}
            for i in moving:
                if i not in frozen:
                    for link in routes[i]:
                        users.setdefault(link, []).append(i)
            step = min(residual[link] / len(u) for link, u in users.items())
            level += step
            for link, u in users.items():
                residual[link] -= step * len(u)
            for link, u in users.items():
                if residual[link] <= 1e-12 * capacity[link]:
                    for i in u:
                        if i not in frozen:
                            frozen.add(i)
                            rate[i] = level
        later = [starts[i] for i, d in enumerate(done) if d is None and starts[i] > now]
        finish = min([now + left[i] / rate[i] for i in moving], default=np.inf)
        when = min([finish] + later)
        for i in moving:
            left[i] -= rate[i] * (when - now)
            if left[i] <= 1e-9 * flows[i][2]:
                done[i] = when
        now = when
    return done


@pytest.mark.parametrize("refill_all_below", [0, network._REFILL_ALL_BELOW])
@pytest.mark.parametrize("topology,ranks", [("trn2-16", 16), ("trn3-ultraserver-64", 128),
                                            ("trn2-ultraserver", 64), ("trn1-16", 8)])
def test_every_flow_finishes_when_a_from_scratch_solution_says(topology, ranks, refill_all_below,
                                                                monkeypatch):
    # one transfer per flow: each result's end is its flow's finish plus fixed terms;
    # skewed sizes, ties, zero bytes and staggered starts exercise every kind of event;
    # 0: re-fill only the flows that can move, however few flows there are
    monkeypatch.setattr(network, "_REFILL_ALL_BELOW", refill_all_below)
    place = load_topology(topology).placement(ranks)
    topo = place.topology
    rng = np.random.default_rng(ranks)
    for case in range(6):
        n = int(rng.integers(5, 40))
        group = rng.choice(ranks, int(rng.integers(2, 9)), replace=False)   # contended links
        src, dst = rng.choice(group, n), rng.choice(group, n)
        sizes = lambda: [0.0, 4096.0, 4096.0, float(rng.zipf(1.5) * 1000), rng.uniform(1, 1e6)]
        nbytes = [rng.choice(sizes()) for _ in range(n)]
        starts = [float(rng.choice([0.0, 0.0, rng.uniform(0, 2000)])) for _ in range(n)]
        transfers = [Transfer(t, one_step(place, (int(a), int(b), s)))
                     for t, a, b, s in zip(starts, src, dst, nbytes)]
        results = simulate(place, transfers)
        begin = topo.launch_overhead_ns + topo.step_overhead_ns
        expected = reference_finish_times(place, [t + begin for t in starts],
                                          list(zip(src, dst, nbytes)))
        for r, a, b, when in zip(results, src, dst, expected):
            latency = sum(place.links[link].latency_ns for link in place.route(int(a), int(b)))
            assert r.end_ns == pytest.approx(when + latency, rel=1e-9), (case, a, b)


def test_a_flow_shorter_than_the_clock_resolution_still_finishes(tmp_path):
    # at 1e17 ns one ulp is 16 ns: "now + 1 ns" rounds back to now (this once looped forever)
    place = ring_topology(tmp_path, 4, bandwidth=1.0).placement(4)
    assert ends(place, one_step(place, (0, 1, 1.0)), starts=[1e17]) == [1e17]
