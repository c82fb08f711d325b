"""Time collective plans on a topology's links, with contention.

Model (all numbers come from the topology file, see ``topology.py``):

* A flow moves ``nbytes`` from one rank to another over the links of
  ``Placement.route``.  Concurrent flows share links by max-min fairness
  (progressive filling: raise every unfrozen flow's rate equally until a link
  fills, freeze the flows on it, repeat).  Rates are recomputed exactly at
  every event (a flow starts or finishes): event-driven, not time-stepped.
* A flow *arrives* when its last byte has left (its bytes / rates) plus the
  latency of every link on its route.  A flow on an empty route (a rank to
  itself) or of 0 bytes takes no bandwidth.
* A collective (one ``Transfer``) starts ``launch_overhead_ns`` after its
  ``start_ns``.  Its steps run in sequence; each begins with
  ``step_overhead_ns`` (semaphores, descriptors) before its flows start, and
  ends when its last flow has arrived and each rank has reduced the step's
  ``reduce_bytes`` at ``reduce_bandwidth`` (the CC cores; ranks reduce in
  parallel, without contention between ranks of one chip).
* All transfers given to one ``simulate`` call contend for the same links.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Transfer", "TransferResult", "simulate", "max_min_rates"]


@dataclass
class Transfer:
    start_ns: float
    plan: object
    tag: object = None


@dataclass
class TransferResult:
    start_ns: float
    end_ns: float
    steps: list                    # (step_start, step_end) per step
    tag: object = None
    plan: object = field(default=None, repr=False)

    @property
    def duration_ns(self) -> float:
        return self.end_ns - self.start_ns

    @property
    def algbw(self) -> float:
        """Algorithm bandwidth, bytes/ns (== GB/s): size / duration."""
        return self.plan.size_bytes / self.duration_ns if self.duration_ns else 0.0

    @property
    def busbw(self) -> float:
        """Bus bandwidth, bytes/ns (== GB/s): nccom-test's bus bytes / duration."""
        return self.plan.bus_bytes / self.duration_ns if self.duration_ns else 0.0


def max_min_rates(num_flows, entry_flow, entry_link, capacity, keep_below=0.0, previous=None):
    """Max-min fair rates of flows; entry_flow/entry_link list each (flow, link) use.

    Progressive filling: every unfrozen flow's rate is the common ``level``;
    raise it until a link fills, freeze that link's flows at the level, drop
    their entries, repeat.  Flows without entries get rate 0.

    Warm start: when the flow set is an earlier one minus flows whose rates
    were >= ``keep_below`` in ``previous`` (that earlier solution), filling
    runs exactly as before up to that level (no link of a removed flow filled
    below its rate, and every other link sees the same flows), so flows with
    ``previous`` rates below it keep them and filling resumes at that level.
    """
    capacity = np.asarray(capacity, dtype=float)
    tolerance = 1e-9 * capacity
    rate = np.zeros(num_flows)
    frozen = np.zeros(num_flows, dtype=bool)
    flow, link = np.asarray(entry_flow), np.asarray(entry_link)
    residual = capacity.copy()
    level = 0.0
    if keep_below == np.inf:
        return previous.copy()
    if keep_below > 0:
        kept = previous[flow] < keep_below * (1 - 1e-9)
        residual -= np.bincount(link[kept], weights=previous[flow[kept]], minlength=len(residual))
        rate[flow[kept]] = previous[flow[kept]]
        frozen[flow[kept]] = True
        flow, link = flow[~kept], link[~kept]
        level = keep_below * (1 - 1e-9)
        residual -= level * np.bincount(link, minlength=len(residual))
    share = np.empty_like(capacity)
    while len(flow):
        count = np.bincount(link, minlength=len(residual))
        used = count > 0
        share.fill(np.inf)
        np.divide(residual, count, out=share, where=used)
        increment = share.min()
        if increment > 0:
            level += increment
            residual -= increment * count
        full = used & (residual <= tolerance)
        newly = flow[full[link]]
        rate[newly] = level
        frozen[newly] = True
        keep = ~frozen[flow]
        flow, link = flow[keep], link[keep]
    return rate


class _Flows:
    """Every flow of every step of every transfer, as arrays."""

    def __init__(self, place, transfers):
        links = place.links
        latency_of = [float(link.latency_ns) for link in links]
        routes = {}
        nbytes, latency, step_of, e_flow, e_link = [], [], [], [], []
        self.step_ranges, self.step_reduce, self.step_transfer = [], [], []
        self.first_step = []          # per transfer: its first step's index
        self.step_entries = []        # per step: its range in entry_flow / entry_link
        for t, tr in enumerate(transfers):
            if tr.plan.placement is not None and tr.plan.placement != place:
                raise ValueError(f"transfer {t} ({tr.tag!r}) was planned on another placement")
            self.first_step.append(len(self.step_ranges))
            for step in tr.plan.steps:
                s = len(self.step_ranges)
                lo, entries_lo = len(nbytes), len(e_flow)
                for f in step.flows:
                    key = (f.src, f.dst)
                    if key not in routes:
                        route = place.route(f.src, f.dst)
                        routes[key] = route, sum(latency_of[i] for i in route)
                    route, route_latency = routes[key]
                    e_flow.extend([len(nbytes)] * len(route))
                    e_link.extend(route)
                    nbytes.append(f.nbytes)
                    latency.append(route_latency)
                    step_of.append(s)
                self.step_ranges.append((lo, len(nbytes)))
                self.step_entries.append((entries_lo, len(e_flow)))
                self.step_reduce.append(step.reduce_bytes)
                self.step_transfer.append(t)
        self.nbytes = np.array(nbytes, dtype=float)
        self.latency = np.array(latency, dtype=float)
        self.step_of = np.array(step_of, dtype=np.int64)
        self.entry_flow = np.array(e_flow, dtype=np.int64)
        self.entry_link = np.array(e_link, dtype=np.int64)
        self.routed = np.bincount(self.entry_flow, minlength=len(nbytes)) > 0
        self.capacity = np.array([link.bandwidth for link in links], dtype=float)


def simulate(place, transfers) -> list:
    """Run transfers (each a Transfer of a Plan on ``place``) together; one result each."""
    transfers = list(transfers)
    topo = place.topology
    flows = _Flows(place, transfers)
    num_flows, num_steps = len(flows.nbytes), len(flows.step_ranges)
    remaining = np.zeros(num_flows)
    active = np.zeros(num_flows, dtype=bool)
    pending = np.zeros(num_steps, dtype=np.int64)
    arrival = np.full(num_steps, -np.inf)
    results = [TransferResult(tr.start_ns, tr.start_ns + topo.launch_overhead_ns, [], tr.tag, tr.plan)
               for tr in transfers]
    events = []   # (time, order, step): step's flows begin at time
    order = 0

    def begin_step(t, s, when):
        nonlocal order
        results[t].steps.append([float(when), None])
        heapq.heappush(events, (when + topo.step_overhead_ns, order, s))
        order += 1

    def end_step(s, when):
        t = flows.step_transfer[s]
        when = max(when, arrival[s]) + flows.step_reduce[s] / topo.reduce_bandwidth
        results[t].steps[-1][1] = when = float(when)
        results[t].end_ns = when
        if s + 1 < num_steps and flows.step_transfer[s + 1] == t:
            begin_step(t, s + 1, when)

    for t, tr in enumerate(transfers):
        if tr.plan.steps:
            begin_step(t, flows.first_step[t], tr.start_ns + topo.launch_overhead_ns)

    def finish(done, now):
        steps = flows.step_of[done]
        np.maximum.at(arrival, steps, now + flows.latency[done])
        np.subtract.at(pending, steps, 1)
        for s in np.unique(steps):
            if pending[s] == 0:
                end_step(int(s), now)

    now = 0.0
    live_flow = np.zeros(0, dtype=np.int64)     # the (flow, link) entries of moving flows
    live_link = np.zeros(0, dtype=np.int64)
    rates, keep_below = np.zeros(num_flows), 0.0   # keep_below: warm start, see max_min_rates
    while events or len(live_flow):
        if len(live_flow):
            idx = np.flatnonzero(active)
            rates = max_min_rates(num_flows, live_flow, live_link, flows.capacity, keep_below, rates)
            keep_below = np.inf
            rate = rates[idx]
            to_finish = remaining[idx] / rate
            soonest = to_finish.min()
            next_finish = now + soonest
        else:
            next_finish = np.inf
        next_event = events[0][0] if events else np.inf
        when = min(next_finish, next_event)
        if len(live_flow):
            dt = when - now
            remaining[idx] -= rate * dt
            # by to_finish, not dt alone: now + soonest may round to now when now is large
            horizon = soonest * (1 + 1e-9) if next_finish <= next_event else dt
            done = idx[to_finish <= max(horizon, dt * (1 + 1e-12)) + 1e-9]
            if len(done):
                remaining[done] = 0.0
                active[done] = False
                keep_below = min(keep_below, rates[done].min())
                keep = active[live_flow]
                live_flow, live_link = live_flow[keep], live_link[keep]
                finish(done, when)
        now = when
        while events and events[0][0] <= now:
            _, _, s = heapq.heappop(events)
            lo, hi = flows.step_ranges[s]
            pending[s] = hi - lo
            if hi == lo:
                end_step(s, now)
                continue
            ids = np.arange(lo, hi)
            moving = (flows.nbytes[ids] > 0) & flows.routed[ids]
            remaining[ids[moving]] = flows.nbytes[ids[moving]]
            active[ids[moving]] = True
            a, b = flows.step_entries[s]
            take = active[flows.entry_flow[a:b]]
            live_flow = np.concatenate([live_flow, flows.entry_flow[a:b][take]])
            live_link = np.concatenate([live_link, flows.entry_link[a:b][take]])
            keep_below = 0.0
            if not moving.all():
                finish(ids[~moving], now)
    for r in results:
        r.steps = [tuple(step) for step in r.steps]
    return results
