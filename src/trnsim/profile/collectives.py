"""Collective metrics of a multi-rank run (RanksProfile.summary), named as Neuron
Explorer and nccom-test name them: per rank the time its collectives were in flight
(`cc_op_time`, `cc_op_active_time(_percent)`, `cc_op_count`) and the time it waited for
the slowest member of a group; over the run, each kind's count, time, bytes and
nccom-test's algorithm and bus bandwidth (GB/s: bytes / duration, bus bytes as
nccom-test counts them, trnsim.fabric.algorithms)."""
from __future__ import annotations

from .summary import cc_metrics


def rank_metrics(timeline) -> dict:
    """One rank's collective metrics (summary.cc_metrics) and the time it waited for
    the slowest member of its groups."""
    waits = sum(e.cost.get("wait_ns", 0.0) for e in timeline.events if e.track == "cc")
    return {**cc_metrics(timeline), "cc_wait_time": waits * 1e-9}


def ranks_summary(rp) -> dict:
    per_rank = []
    for r, p in enumerate(rp.ranks):
        per_rank.append({"rank": r, "chip": rp.placement.chip_of(r),
                         "total_time": p.total_time, **rank_metrics(p.timeline)})
    # the rank finishing last; among ranks finishing together (a collective ends them
    # all), the one that waited least: the one the others waited for
    slowest = max(per_rank, key=lambda x: (round(x["total_time"] * 1e9, 3),
                                           -x["cc_wait_time"]), default=None)
    by_kind: dict = {}
    for c in rp.collectives:
        k = by_kind.setdefault(c.kind, {"count": 0, "time": 0.0, "bytes": 0,
                                        "bus_bytes": 0.0, "algorithms": set()})
        k["count"] += 1
        k["time"] += c.duration * 1e-9
        k["bytes"] += c.nbytes
        k["bus_bytes"] += c.bus_bytes
        k["algorithms"].add(c.algorithm)
    for k in by_kind.values():
        k["algorithms"] = sorted(k["algorithms"])
        k["algbw_GBps"] = k["bytes"] / (k["time"] * 1e9) if k["time"] else 0.0
        k["busbw_GBps"] = k["bus_bytes"] / (k["time"] * 1e9) if k["time"] else 0.0
    time = sum(c.duration for c in rp.collectives) * 1e-9
    nbytes = sum(c.nbytes for c in rp.collectives)
    bus = sum(c.bus_bytes for c in rp.collectives)
    busy = [x["cc_op_active_time_percent"] for x in per_rank]
    return {"world_size": rp.world_size, "topology": rp.topology.name,
            "chip": rp.ranks[0].chip.name if rp.ranks else None,
            "total_time": rp.total_time,
            "slowest_rank": slowest["rank"] if slowest else None,
            "cc_op_count": len(rp.collectives), "cc_op_time": time, "cc_bytes": nbytes,
            "cc_algbw_GBps": nbytes / (time * 1e9) if time else 0.0,
            "cc_busbw_GBps": bus / (time * 1e9) if time else 0.0,
            "cc_op_active_time_percent_mean": sum(busy) / len(busy) if busy else 0.0,
            "scheduling_rounds": rp.rounds, "by_kind": by_kind, "per_rank": per_rank}
