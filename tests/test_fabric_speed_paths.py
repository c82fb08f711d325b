"""The fabric model's shortcuts against its general path (trnsim.fabric.network): while
no two transfers cross one link at the same time, a call is timed transfer by transfer
and step by step (``_alone``), a step whose flows share no link without the event loop;
the event loop takes over from the last moment nothing moved and hands back once one
transfer is left; routes come from arrays (``Placement.routes``).  Each must give what
the event loop over every flow of every transfer gives (``_together``)."""

import numpy as np
import pytest

from trnsim.fabric import network
from trnsim.fabric.algorithms import Flow, Plan, Step, plan_collective
from trnsim.fabric.network import Transfer, simulate
from trnsim.fabric.topology import available_topologies, load_topology

CASES = [("trn2-16", 16), ("trn2-ultraserver", 64), ("trn2-ultraserver", 128),
         ("trn3-ultraserver-64", 128), ("trn1-16", 32), ("trn3-ultraserver-144", 144)]


def capacity(place):
    """Each link's bandwidth, then the padding's (as simulate passes them)."""
    return np.append(place.bandwidths(), np.inf)


def begin(place, transfers):
    """The flows, timing and first steps simulate starts from."""
    flows = network._Flows(place, transfers)
    timing = [[tr.start_ns + place.topology.launch_overhead_ns, []] for tr in transfers]
    ready = [(timing[t][0], t, flows.first_step[t]) for t, tr in enumerate(transfers)
             if tr.plan.steps]
    return flows, timing, ready


def general(place, transfers):
    """simulate with every transfer on the event loop together."""
    flows, timing, ready = begin(place, transfers)
    topo = place.topology
    network._together(flows, capacity(place), timing, ready, topo.step_overhead_ns,
                      topo.reduce_bandwidth)
    return [(end, [tuple(step) for step in steps]) for end, steps in timing]


def assert_same(place, transfers, rel=1e-12):
    got = [(r.end_ns, r.steps) for r in simulate(place, transfers)]
    want = general(place, transfers)
    for (end, steps), (end_want, steps_want) in zip(got, want):
        assert end == pytest.approx(end_want, rel=rel)
        assert np.allclose(steps, steps_want, rtol=rel, atol=0) and len(steps) == len(steps_want)


def left_over(place, transfers) -> list:
    """The steps the shortcut leaves to the event loop."""
    flows, timing, ready = begin(place, transfers)
    return network._alone(flows, capacity(place), place.topology, timing, ready, {})[0]


def shortcut_taken(place, transfers) -> bool:
    return not left_over(place, transfers)


def random_plan(rng, place):
    n = place.num_ranks
    kind = str(rng.choice(["all_reduce", "all_gather", "reduce_scatter", "all_to_all",
                           "all_to_all_v", "collective_permute"]))
    group = [int(r) for r in rng.choice(n, int(rng.integers(2, min(n, 16) + 1)), replace=False)]
    size = float(rng.choice([1024, 3 << 20, 100 << 20]) * rng.uniform(0.5, 2))
    matrix = (rng.zipf(1.5, (len(group), len(group))) * 1000.0).tolist()
    pairs = [(a, b) for a, b in zip(group, np.roll(group, int(rng.integers(1, len(group)))))]
    algorithm = rng.choice([None, "ring"]) if kind in ("all_reduce", "all_gather",
                                                       "reduce_scatter") else None
    return plan_collective(place, kind, group, size, algorithm=algorithm, send_matrix=matrix,
                           pairs=pairs)


@pytest.mark.parametrize("topology,ranks", CASES)
def test_one_transfer_alone_is_the_general_path(topology, ranks):
    place = load_topology(topology).placement(ranks)
    rng = np.random.default_rng(ranks)
    for _ in range(12):
        transfers = [Transfer(float(rng.uniform(0, 1e6)), random_plan(rng, place))]
        assert shortcut_taken(place, transfers)
        assert_same(place, transfers)


@pytest.mark.parametrize("topology,ranks", CASES)
def test_several_transfers_take_the_shortcut_only_when_they_never_share_a_link(topology, ranks):
    place = load_topology(topology).placement(ranks)
    rng = np.random.default_rng(ranks + 1)
    taken = {True: 0, False: 0}
    for _ in range(12):
        plans = [random_plan(rng, place) for _ in range(int(rng.integers(2, 5)))]
        # all at once (they share DMA engines when groups overlap), or one after another
        spread = float(rng.choice([0.0, 1e4, 1e9]))
        transfers = [Transfer(i * spread, p) for i, p in enumerate(plans)]
        taken[shortcut_taken(place, transfers)] += 1
        assert_same(place, transfers)
    assert taken[True] and taken[False]


@pytest.mark.parametrize("topology,ranks", CASES[:4])
def test_a_chain_of_transfers_some_overlapping_is_the_general_path(topology, ranks):
    # each starts near when the one before would end alone: some run alone, some share
    place = load_topology(topology).placement(ranks)
    rng = np.random.default_rng(ranks + 2)
    for _ in range(4):
        transfers, start = [], 0.0
        for _ in range(8):
            plan = random_plan(rng, place)
            transfers.append(Transfer(start, plan))
            start += (simulate(place, [Transfer(0.0, plan)])[0].end_ns
                      * float(rng.choice([0.3, 0.9, 1.0, 1.1])))
        assert_same(place, transfers)


def test_the_shortcut_is_refused_when_transfers_overlap_on_a_link():
    place = load_topology("trn2-16").placement(16)
    one = plan_collective(place, "all_gather", range(4), 1 << 20, algorithm="ring")
    other = plan_collective(place, "all_gather", range(8, 12), 1 << 20, algorithm="ring")
    alone = simulate(place, [Transfer(0.0, one)])[0]
    # other chips, other links: the same time together as alone
    assert shortcut_taken(place, [Transfer(0.0, one), Transfer(0.0, other)])
    assert [r.end_ns for r in simulate(place, [Transfer(0.0, one), Transfer(0.0, other)])] == \
        [alone.end_ns] * 2
    # the same links: after it, alone; its first flows starting 1 ns after the last
    # step's, shared
    assert shortcut_taken(place, [Transfer(0.0, one), Transfer(alone.end_ns, one)])
    launch = place.topology.launch_overhead_ns
    overlap = [Transfer(0.0, one), Transfer(alone.steps[-1][0] - launch + 1.0, one)]
    assert not shortcut_taken(place, overlap)
    assert simulate(place, overlap)[0].end_ns > alone.end_ns
    assert_same(place, overlap)


def test_the_event_loop_takes_over_from_the_last_time_nothing_moved():
    place = load_topology("trn2-16").placement(16)
    ring = plan_collective(place, "all_reduce", range(8), 1 << 20, algorithm="ring")
    steps = len(ring.steps)
    alone = simulate(place, [Transfer(0.0, ring)])[0]
    # three in a row on the same ranks, then a fourth starting half-way through the third:
    # the first two and the third's steps up to the last that began with nothing moving
    # are kept; the event loop runs the rest
    starts = [0.0, alone.end_ns, 2 * alone.end_ns, 2.5 * alone.end_ns]
    transfers = [Transfer(t, ring) for t in starts]
    (_, third, resumed), (_, fourth, first) = sorted(left_over(place, transfers),
                                                     key=lambda step: step[1])
    assert (third, fourth, first) == (2, 3, 3 * steps) and 2 * steps < resumed < 3 * steps
    assert_same(place, transfers)
    # the fourth's flows starting while the third's first step moves: from the third's start
    inside = alone.steps[0][0] + 1.0 - place.topology.launch_overhead_ns
    transfers[3] = Transfer(2 * alone.end_ns + inside, ring)
    assert sorted((t, s) for _, t, s in left_over(place, transfers)) == [(2, 2 * steps),
                                                                         (3, 3 * steps)]
    assert_same(place, transfers)


def test_the_event_loop_hands_back_once_one_transfer_is_left():
    place = load_topology("trn2-16").placement(16)
    ring = plan_collective(place, "all_reduce", range(8), 1 << 20, algorithm="ring")
    steps = len(ring.steps)
    end = simulate(place, [Transfer(0.0, ring)])[0].end_ns
    transfers = [Transfer(0.0, ring), Transfer(0.5 * end, ring), Transfer(10 * end, ring)]
    flows, timing, ready = begin(place, transfers)
    topo = place.topology
    ready, shared_at = network._alone(flows, capacity(place), topo, timing, ready, {})
    assert sorted(t for _, t, _ in ready) == [0, 1, 2]
    ready = network._together(flows, capacity(place), timing, ready, topo.step_overhead_ns,
                              topo.reduce_bandwidth, shared_at)
    # the first is done; the second is left with some of its steps, the third with all
    (_, second, resume), (_, third, first) = sorted(ready, key=lambda step: step[1])
    assert (second, third, first) == (1, 2, 2 * steps) and steps < resume < 2 * steps
    assert len(timing[0][1]) == steps and len(timing[1][1]) == resume - steps
    assert_same(place, transfers)


def test_flows_due_within_a_hair_finish_together_as_on_the_event_loop():
    place = load_topology("trn2-16").placement(16)
    for hair in (0.0, 1e-13, 4e-10, 2e-9, 1e-6):
        flows = [Flow(0, 1, 1e6), Flow(2, 3, 1e6 * (1 + hair)), Flow(4, 6, 5e5),
                 Flow(8, 9, 1e6 * (1 + 2 * hair))]
        plan = Plan("collective_permute", "direct", (), [Step(flows)], 0.0, 0.0, place)
        assert_same(place, [Transfer(0.0, plan)], rel=1e-15)


def test_steps_without_moving_flows_and_plans_without_steps():
    place = load_topology("trn2-16").placement(16)
    empty = Plan("collective_permute", "direct", (), [], 0.0, 0.0, place)
    still = Plan("collective_permute", "direct", (),
                 [Step([]), Step([Flow(0, 5, 0.0), Flow(3, 3, 64.0)], 128.0)], 0.0, 0.0, place)
    for transfers in ([Transfer(5.0, empty)], [Transfer(0.0, still), Transfer(0.0, still)],
                      [Transfer(0.0, still), Transfer(1.0, empty)]):
        assert shortcut_taken(place, transfers)
        assert_same(place, transfers, rel=0)


@pytest.mark.parametrize("topology", available_topologies())
def test_route_arrays_are_the_routes(topology):
    topo = load_topology(topology)
    for n in sorted({2, topo.num_chips, 2 * topo.num_chips}):
        place = topo.placement(n)
        rng = np.random.default_rng(n)
        src, dst = rng.integers(0, n, 300), rng.integers(0, n, 300)
        links, latency = place.routes(src, dst)
        pad = len(place.links)
        for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist())):
            route = place.route(a, b)
            assert links[:len(route), i].tolist() == list(route)
            assert (links[len(route):, i] == pad).all()
            assert latency[i] == sum(place.links[link].latency_ns for link in route)
        assert place.bandwidths().tolist() == [link.bandwidth for link in place.links]
    with pytest.raises(ValueError, match="out of range"):
        place.routes([0], [n])
