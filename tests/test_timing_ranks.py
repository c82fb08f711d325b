"""Multi-rank timing (trnsim.timing.ranks): collectives start when their group's last
member arrives, overlap compute on other engines, chain through the fixed point, and
share the fabric's links with each other."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.collectives as nccl
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.fabric.topology import load_topology
from trnsim.timing import ranks as timing_ranks

P, F = 128, 512


def _profile(kernel, world, per_rank, topology="trn2-16", **kw):
    return trnsim.profile_ranks(kernel, world_size=world, per_rank_inputs=per_rank,
                                topology=topology, numerics=False, **kw)


def _inputs(world, group, extra=(), x=None):
    x = np.zeros((P, F), np.float32) if x is None else x
    return [((x, nccl.ReplicaGroup(group)) + tuple(extra), {}) for _ in range(world)]


def _cc(profile, rank):
    return [e for e in profile.ranks[rank].timeline.events if e.track == "cc"]


def _delayed_all_reduce(x, group, slow_rank):
    """All-reduce of x; the rank `slow_rank` first runs a chain of Vector work."""
    t = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    if nccl.rank_id().value == slow_rank:
        for _ in range(20):
            nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
    out = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.sbuf)
    nccl.all_reduce(srcs=[t], dsts=[out], replica_group=group, op=nl.add)
    y = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=y, src=out)
    return y


def test_a_collective_starts_when_its_slowest_member_arrives():
    prof = _profile(_delayed_all_reduce, 4, _inputs(4, [[0, 1, 2, 3]], (2,)))
    (c,) = prof.collectives
    arrivals = {r: _cc(prof, r)[0].start for r in range(4)}
    assert c.arrivals == pytest.approx(arrivals)
    assert max(arrivals, key=arrivals.get) == 2  # the rank that did the extra work
    assert c.start == pytest.approx(arrivals[2])
    for r in range(4):
        (e,) = _cc(prof, r)
        assert e.end == pytest.approx(c.end)
        assert e.cost["wait_ns"] == pytest.approx(arrivals[2] - arrivals[r])
    assert prof.summary["per_rank"][0]["cc_wait_time"] > 0
    assert prof.summary["per_rank"][2]["cc_wait_time"] == 0


def _overlap(x, group, with_compute):
    """An HBM all-reduce and, independent of it, compute on another tile."""
    src = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.private_hbm)
    nisa.dma_copy(dst=src, src=x)
    out = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.shared_hbm)
    nccl.all_reduce(srcs=[src], dsts=[out], replica_group=group, op=nl.add)
    if with_compute:
        t = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=t, value=0.0)
        for _ in range(40):
            nisa.tensor_scalar(dst=t, data=t, op0=nl.add, operand0=1.0)
    return out


def test_compute_overlaps_a_collective_on_another_engine():
    alone = _profile(_overlap, 4, _inputs(4, [[0, 1, 2, 3]], (False,)))
    both = _profile(_overlap, 4, _inputs(4, [[0, 1, 2, 3]], (True,)))
    (cc,) = _cc(both, 0)
    compute = [e for e in both.ranks[0].timeline.events
               if e.track in ("vector", "scalar", "gpsimd")]
    during = sum(max(0.0, min(e.end, cc.end) - max(e.start, cc.start)) for e in compute)
    assert during > 0.5 * (cc.end - cc.start)  # the engines work while it is in flight
    work = sum(e.end - e.start for e in compute)
    # so the kernel takes far less than the collective and the compute one after another
    assert both.total_time * 1e9 < alone.total_time * 1e9 + work - 0.5 * (cc.end - cc.start)


def _two_all_reduces(x, group):
    a = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.private_hbm)
    nisa.dma_copy(dst=a, src=x)
    b = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.shared_hbm)
    nccl.all_reduce(srcs=[a], dsts=[b], replica_group=group, op=nl.add)
    c = nl.ndarray((P, F), dtype=nl.float32, buffer=nl.shared_hbm)
    nccl.all_reduce(srcs=[b], dsts=[c], replica_group=group, op=nl.add)
    return c


def test_chained_collectives_reach_a_fixed_point():
    prof = _profile(_two_all_reduces, 8, _inputs(8, [list(range(8))]))
    first, second = prof.collectives
    assert prof.timeline.converged and prof.rounds >= 3
    assert second.start >= first.end  # b is read only once the first has written it
    assert second.duration == pytest.approx(first.duration)
    assert prof.total_time * 1e9 >= second.end


def test_identical_ranks_are_scheduled_once_per_round(monkeypatch):
    calls = []
    real = timing_ranks.schedule
    monkeypatch.setattr(timing_ranks, "schedule",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    prof = _profile(_two_all_reduces, 8, _inputs(8, [list(range(8))]))
    assert len(calls) == prof.rounds


def _permute(x, pairs):
    src = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.private_hbm)
    nisa.dma_copy(dst=src, src=x)
    dst = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    nccl.collective_permute(srcs=[src], dsts=[dst], source_target_pairs=pairs)
    return dst


def _sharing_pairs(placement, world):
    """Two (source, target) pairs with distinct ranks whose routes share a link."""
    for a in range(world):
        for b in range(world):
            for c in range(world):
                for d in range(world):
                    if len({a, b, c, d}) == 4 and (set(placement.route(a, b))
                                                   & set(placement.route(c, d))):
                        return (a, b), (c, d)
    raise AssertionError("no two routes share a link")


def test_two_transfers_sharing_a_link_take_twice_as_long():
    world = 16
    placement = load_topology("trn2-16").placement(world)
    one, other = _sharing_pairs(placement, world)
    x = np.zeros((P, 64 * F), np.float32)  # 16 MiB: bandwidth-bound, fixed costs small
    alone = _profile(_permute, world, [((x, [one]), {})] * world)
    shared = _profile(_permute, world, [((x, [one, other]), {})] * world)
    t_alone = alone.collectives[0].duration
    t_shared = shared.collectives[0].duration
    assert t_shared == pytest.approx(2 * t_alone, rel=0.05)


def _decode_all_reduce(x, group, through_hbm):
    """A decode step's all-reduce of an on-chip tile: SBUF to SBUF, or the way a kernel
    without SBUF collectives does it (SBUF -> HBM, all-reduce in HBM, HBM -> SBUF)."""
    t = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=x)
    total = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.sbuf)
    if through_hbm:
        a = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.private_hbm)
        b = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=a, src=t)
        nccl.all_reduce(srcs=[a], dsts=[b], replica_group=group, op=nl.add)
        nisa.dma_copy(dst=total, src=b)
    else:
        nccl.all_reduce(srcs=[t], dsts=[total], replica_group=group, op=nl.add)
    y = nl.ndarray(x.shape, dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=y, src=total)
    return y


@pytest.mark.parametrize("topology", ["trn2-ultraserver", "trn3-ultraserver-64"])
def test_sram_to_sram_all_reduce_beats_the_hbm_round_trip(topology):
    x = np.zeros((P, 16), np.float32)  # 8 KiB: a decode-sized activation
    group = [list(range(8))]
    sbuf = _profile(_decode_all_reduce, 8, _inputs(8, group, (False,), x), topology)
    hbm = _profile(_decode_all_reduce, 8, _inputs(8, group, (True,), x), topology)
    assert sbuf.total_time < hbm.total_time
    # the same transfer on the fabric; the HBM path pays two more DMAs around it
    assert sbuf.collectives[0].duration == pytest.approx(hbm.collectives[0].duration,
                                                         rel=0.05)

