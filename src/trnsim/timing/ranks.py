"""Timing of a multi-rank run: every rank's program on its own NeuronCore, and its
collectives as traffic on the fabric (trnsim.fabric).

    result = schedule_ranks(programs, placement)      # one compiled Program per rank

Each rank is scheduled by the single-core scheduler (scheduler.py), where a collective
occupies the rank's CC track from when it reaches it until the fabric model says its
group's transfer ends. A collective's transfer starts when the last member of its
group has reached it (the CC cores synchronise before moving data), runs the plan the
runtime would pick (fabric/algorithms.py), and shares the links with every other
transfer in flight (fabric/network.py, max-min fair share).

The two depend on each other: when a rank reaches a collective depends on when its
earlier collectives ended. So the ranks are scheduled in rounds: round 1 with no
fabric times, each later round with the transfer times the previous round's arrivals
give, until the arrivals stop changing (a fixed point: usually two or three rounds, one
more per collective whose start depends on an earlier one's end). Ranks whose programs and
fabric times are identical (uniform SPMD) are scheduled once per round.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..chips import load_chip
from ..fabric.algorithms import plan_collective
from ..fabric.network import Transfer, simulate
from .scheduler import schedule

MAX_ROUNDS = 64
_PERMUTES = ("collective_permute", "collective_permute_implicit",
             "collective_permute_implicit_reduce")


@dataclass(frozen=True)
class FabricTime:
    """When a collective's transfer starts and ends on the fabric, and its event's
    cost terms."""
    start: float
    end: float
    terms: dict


@dataclass
class Collective:
    """One collective across its group: which instruction it is on each member, when
    each member reached it, and the fabric transfer."""
    kind: str
    group: tuple
    seq: int
    members: dict  # rank -> instruction index
    nbytes: int = 0
    algorithm: str = ""
    bus_bytes: float = 0.0
    arrivals: dict = field(default_factory=dict)  # rank -> ns
    start: float = 0.0
    end: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def bus_bandwidth(self) -> float:
        """nccom-test's bus bandwidth (bytes per ns = GB/s) of the transfer."""
        return self.bus_bytes / self.duration if self.duration > 0 else 0.0

    @property
    def algo_bandwidth(self) -> float:
        """nccom-test's algorithm bandwidth: the collective's bytes per ns."""
        return self.nbytes / self.duration if self.duration > 0 else 0.0


@dataclass
class RanksTimeline:
    timelines: list  # per rank
    collectives: list  # Collective, in start order
    rounds: int
    converged: bool

    @property
    def total_time(self) -> float:
        return max((t.total_time for t in self.timelines), default=0.0)


def schedule_ranks(programs, placement, chip=None, order: str = "compiler",
                   max_rounds: int = MAX_ROUNDS) -> RanksTimeline:
    """The timelines of `programs` (rank r's at index r) with their collectives on
    `placement`'s fabric (trnsim.fabric.topology)."""
    chip = load_chip(chip if chip is not None else programs[0].chip)
    collectives = _collectives(programs)
    plans = [_plan(programs, placement, c) for c in collectives]
    traffic = [_traffic(programs, c, plan) for c, plan in zip(collectives, plans)]
    fabric: list[dict] = [{} for _ in programs]
    signatures = [_signature(p) for p in programs]
    timelines, rounds, converged, starts = [], 0, False, None
    while rounds < max_rounds:
        rounds += 1
        timelines = _schedule_all(programs, signatures, fabric, chip, order)
        arrived = _arrivals(collectives, timelines)
        if arrived == starts:  # the fabric times the ranks were scheduled with hold
            converged = True
            break
        starts = arrived
        fabric = _on_fabric(len(programs), placement, collectives, plans, traffic)
    collectives.sort(key=lambda c: (c.start, c.group, c.seq))
    return RanksTimeline(timelines, collectives, rounds, converged)


def _collectives(programs) -> list[Collective]:
    """Pair the collective instructions of all ranks: one Collective per (group,
    group_seq)."""
    found: dict = {}
    for rank, program in enumerate(programs):
        for ins in program.instructions:
            if ins.engine != "cc" or ins.attrs.get("group_seq", -1) < 0:
                continue
            a = ins.attrs
            key = (tuple(a["group"]), a["group_seq"])
            c = found.get(key)
            if c is None:
                c = found[key] = Collective(a["collective"], key[0], key[1], {},
                                            int(a.get("nbytes", 0)))
            c.members[rank] = ins.index
    return list(found.values())


def _signature(program):
    """What decides a rank's timeline besides its fabric times (None: not comparable)."""
    issue = getattr(program, "issue", None)
    try:
        return hash((tuple((i.engine, i.opcode, i.reads, i.writes, i.queue, i.location,
                            tuple(sorted(i.attrs.get("depends_on", ()) or ())))
                           for i in program.instructions),
                     tuple(issue.order) if issue is not None else None))
    except TypeError:
        return None


def _schedule_all(programs, signatures, fabric, chip, order) -> list:
    done: dict = {}
    out = []
    for rank, program in enumerate(programs):
        sig = signatures[rank]
        key = None
        if sig is not None:
            key = (sig, tuple(sorted((i, f.start, f.end, f.terms["sent_bytes"],
                                      f.terms["rank_hbm_bytes"])
                                     for i, f in fabric[rank].items())))
            if key in done:
                out.append(done[key])
                continue
        timeline = schedule(program, chip, order, fabric=fabric[rank])
        if key is not None:
            done[key] = timeline
        out.append(timeline)
    return out


def _arrivals(collectives, timelines) -> list[float]:
    """When each member reaches each collective, and so when its transfer starts."""
    for c in collectives:
        c.arrivals = {r: timelines[r].events[i].start for r, i in c.members.items()}
        c.start = max(c.arrivals.values())
    return [c.start for c in collectives]


def _on_fabric(nranks, placement, collectives, plans, traffic) -> list[dict]:
    """Each collective's transfer on the fabric from its start: its FabricTime on each
    member."""
    transfers = [Transfer(c.start, plan, tag=(c.group, c.seq))
                 for c, plan in zip(collectives, plans)]
    results = simulate(placement, transfers) if transfers else []
    fabric: list[dict] = [{} for _ in range(nranks)]
    for c, plan, res, moved in zip(collectives, plans, results, traffic):
        c.algorithm, c.bus_bytes, c.end = plan.algorithm, float(plan.bus_bytes), res.end_ns
        for r, i in c.members.items():
            terms = {"collective": c.kind, "algorithm": plan.algorithm,
                     "group_size": len(c.group), "bytes": c.nbytes,
                     "bus_bytes": c.bus_bytes, "wait_ns": c.start - c.arrivals[r],
                     "transfer_ns": c.end - c.start, **moved[r]}
            fabric[r][i] = FabricTime(c.start, c.end, terms)
    return fabric


def _traffic(programs, c: Collective, plan) -> dict:
    """Each member's bytes in the plan: sent, received, and through its HBM stack."""
    sent, received = _bytes_per_rank(plan)
    out = {}
    for r, i in c.members.items():
        ins = programs[r].instructions[i]
        in_hbm = any(a.space == "hbm" for a in ins.reads + ins.writes)
        s, into = sent.get(r, 0), received.get(r, 0)
        # its DMA engines write what it sends to the peers' memory; its HBM is read for
        # what it sends and written with what it receives
        out[r] = {"sent_bytes": s, "received_bytes": into,
                  "rank_hbm_bytes": s + into if in_hbm else 0}
    return out


def _plan(programs, placement, c: Collective):
    """The fabric plan of collective `c`, from its members' records."""
    kind = c.kind
    if kind in _PERMUTES:
        pairs = set()
        for r, i in c.members.items():
            pairs.update(tuple(p) for p in programs[r].instructions[i].attrs.get("pairs", ()))
        return plan_collective(placement, "collective_permute", c.group, c.nbytes,
                               pairs=sorted(pairs))
    if kind in ("all_to_all_v", "all_gather_v"):
        rows = []
        for r in c.group:
            i = c.members.get(r)
            send = programs[r].instructions[i].attrs.get("send_bytes") if i is not None else None
            rows.append(list(send) if send is not None else [0] * len(c.group))
        return plan_collective(placement, "all_to_all_v", c.group, c.nbytes, send_matrix=rows)
    return plan_collective(placement, kind, c.group, c.nbytes)


def _bytes_per_rank(plan) -> tuple[dict, dict]:
    """The bytes each rank sends, and receives, over the whole plan."""
    sent: dict = {}
    received: dict = {}
    for step in plan.steps:
        for f in step.flows:
            sent[f.src] = sent.get(f.src, 0) + f.nbytes
            received[f.dst] = received.get(f.dst, 0) + f.nbytes
    return sent, received

