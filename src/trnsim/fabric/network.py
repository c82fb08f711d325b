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

Computing it: while no two transfers' flows cross one link at the same time, each
transfer runs alone, step by step (``_alone``); from the last moment no flow moved
before two would share a link, an event loop over every moving flow takes over
(``_together``), and hands back once no flow moves and one transfer is left.  Both
give the same times.
"""

from __future__ import annotations

import copy
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


def max_min_rates(num_flows, entry_flow, entry_link, capacity):
    """Max-min fair rates of flows; entry_flow/entry_link list each (flow, link) use.
    Flows without entries get rate 0."""
    capacity = np.append(np.asarray(capacity, dtype=float), np.inf)
    order = np.argsort(entry_flow, kind="stable")
    routes = _padded(num_flows, np.asarray(entry_flow)[order], np.asarray(entry_link)[order],
                     len(capacity) - 1)
    routed = (routes < len(capacity) - 1).any(axis=0)
    rate = np.zeros(num_flows)
    rate[routed] = _fill(routes.compress(routed, axis=1), capacity)[0]
    return rate


_SAME = 1e-12   # a rate this close above another (relative) is float noise, not faster
# fewer moving flows than this are re-filled all together after a change: finding
# those that can move would cost more than filling them all
_REFILL_ALL_BELOW = 1024


def _padded(num_flows, entry_flow, entry_link, pad):
    """Each flow's links (its entries, grouped by flow) as a column, padded with ``pad``: row k
    holds every flow's k-th link (so reductions over a flow's links run along rows; take
    and compress keep it C-ordered, where ``routes[:, ids]`` would not)."""
    length = np.bincount(entry_flow, minlength=num_flows)
    routes = np.full((max(length.max(initial=0), 1), num_flows), pad, dtype=np.int64)
    first = np.cumsum(length) - length                     # each flow's first entry
    routes[np.arange(len(entry_flow)) - first[entry_flow], entry_flow] = entry_link
    return routes


def _per_link(routes, values, num_links):
    """Each link's sum of ``values`` (one per flow) over the flows (``routes``'s columns) on it."""
    return np.bincount(routes.ravel(), np.concatenate([values] * len(routes)), num_links)


def _fill(routes, residual):
    """Max-min fair rates of flows on links with ``residual`` capacity (used up in
    place); ``routes`` holds each flow's links as a column, padded with a link of
    infinite capacity.  Returns each flow's rate and bottleneck (the link it
    froze on).

    Progressive filling (raise every unfrozen flow's rate equally until a link
    fills, freeze that link's flows, repeat), many links at a time: a link's fill
    level (its residual over its unfrozen flows) only rises as flows elsewhere
    freeze, so a link whose level is the lowest among all links sharing a flow
    with it fills at exactly that level, whatever else freezes first.  Each round
    freezes every such link's flows at its level.
    """
    rate = np.zeros(routes.shape[1])
    bottleneck = np.zeros(routes.shape[1], dtype=np.int64)
    count = np.bincount(routes.ravel(), minlength=len(residual)).astype(float)
    flows = np.arange(routes.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):   # links no flow is left on
        while True:
            level = np.maximum(residual, 0.0) / count
            at = level[routes]
            lowest = at.min(axis=0)
            # a link some flow on it sees a lower level on does not fill at its own
            held = np.zeros(len(level), dtype=bool)
            held[routes[at > lowest]] = True
            fills = ~held[routes]
            done = fills.any(axis=0)
            if done.all():
                rate[flows] = lowest
                bottleneck[flows] = routes[fills.argmax(axis=0), np.arange(len(flows))]
                return rate, bottleneck
            frozen = routes.compress(done, axis=1)
            rate[flows[done]] = lowest[done]
            bottleneck[flows[done]] = frozen[fills.compress(done, axis=1).argmax(axis=0),
                                             np.arange(len(frozen[0]))]
            residual -= _per_link(frozen, lowest[done], len(residual))
            count -= np.bincount(frozen.ravel(), minlength=len(residual))
            flows, routes = flows[~done], routes.compress(~done, axis=1)


class _Sharing:
    """The max-min fair rates of the moving flows, kept up to date as flows start and stop.

    An allocation is max-min fair if and only if it is feasible and every flow
    has a bottleneck: a full link on which no flow is faster (Bertsekas &
    Gallager, Data Networks, 6.5.2); so it is unique.  Each flow keeps the link
    it froze on.  When flows start (seldom), or while few flows move, ``update``
    re-fills every flow.  Otherwise, when flows stop, it re-fills, on the capacity
    the other flows leave, the flows whose bottleneck may no longer hold: flows
    frozen on a link that lost a flow and, repeatedly, flows frozen on a link that
    a re-filled flow crosses.  Every other flow's bottleneck keeps its flows and
    their rates, so it still holds.  A re-filled flow's holds unless a flow that
    was not re-filled is faster on it; then that link's flows join and filling
    runs again (at worst over every flow: the plain solution).

    Link ids index ``capacity``, whose last link (infinite capacity) pads routes.
    """

    def __init__(self, routes, capacity):
        self.routes = routes
        self.capacity = capacity
        self.pad = len(capacity) - 1
        num_flows, num_links = routes.shape[1], len(self.capacity)
        self.moving = np.zeros(num_flows, dtype=bool)
        self.live = np.zeros(0, dtype=np.int64)   # moving flows (and some since stopped)
        self.link_index = None                    # see _moving_on
        self.moving_count = 0
        self.rate = np.zeros(num_flows)
        self.bottleneck = np.full(num_flows, self.pad)         # pad: not moving or not solved
        self.crossing = np.zeros(num_links, dtype=np.int64)   # moving flows on a link
        self.load = np.zeros(num_links)                       # their rates' sum
        self.bottlenecked = np.zeros(num_links, dtype=np.int64)   # flows frozen on it
        self.new = []                                         # flows started since update
        self.chosen = np.zeros(num_flows, dtype=bool)          # scratch for _closure
        self.touched = np.zeros(num_links, dtype=bool)        # links that lost flows

    def _moving_on(self, links):
        """Moving flows on any of ``links`` (with repeats), and the link of each."""
        if self.link_index is None:          # live flows by link: on l, flow[ptr[l]:ptr[l + 1]]
            on = self._links(self.live).ravel()
            by_link = np.argsort(on, kind="stable")
            self.link_index = (np.concatenate([self.live] * len(self.routes))[by_link],
                               np.searchsorted(on[by_link], np.arange(len(self.capacity) + 1)))
        link_flow, ptr = self.link_index
        starts, lengths = ptr[links], ptr[links + 1] - ptr[links]
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        flow = link_flow[offsets + np.arange(len(offsets))]
        link = np.repeat(links, lengths)
        on = self.moving[flow]
        return flow[on], link[on]

    def _links(self, ids):
        return self.routes.take(ids, axis=1)

    def start(self, ids):
        self.moving[ids] = True
        self.moving_count += len(ids)
        self.crossing += np.bincount(self._links(ids).ravel(), minlength=len(self.load))
        self.new.append(ids)

    def stop(self, ids):
        links = self._links(ids)
        self.load -= _per_link(links, self.rate[ids], len(self.load))
        self.crossing -= np.bincount(links.ravel(), minlength=len(self.load))
        self.bottlenecked -= np.bincount(self.bottleneck[ids], minlength=len(self.load))
        self.touched[links] = True
        self.moving[ids] = False
        self.moving_count -= len(ids)
        self.rate[ids] = 0.0
        self.bottleneck[ids] = self.pad

    def update(self):
        """Re-solve around the flows started and stopped since the last call; the flows
        whose rates were re-solved."""
        if self.new:
            self.live = np.concatenate([self.live[self.moving[self.live]]] + self.new)
            self.link_index = None
        if self.new or self.moving_count < _REFILL_ALL_BELOW:
            ids = self.live[self.moving[self.live]]
        else:
            ids = self._closure(np.zeros(0, dtype=np.int64), self.touched)
        self.new, self.touched = [], np.zeros(len(self.load), dtype=bool)
        while len(ids):
            links = self._links(ids)
            self.load -= _per_link(links, self.rate[ids], len(self.load))
            rate, bottleneck = _fill(links, self.capacity - self.load)
            self.load += _per_link(links, rate, len(self.load))
            self.bottlenecked += (np.bincount(bottleneck, minlength=len(self.load))
                                  - np.bincount(self.bottleneck[ids], minlength=len(self.load)))
            self.rate[ids], self.bottleneck[ids] = rate, bottleneck
            if len(ids) == self.moving_count:
                return ids
            failed = self._failed(links, rate, bottleneck)
            if not len(failed):
                return ids
            ids = np.concatenate([ids, self._moving_on(failed)[0]])
            ids = self._closure(ids, self.touched.copy())
        return ids

    def _closure(self, ids, crossed):
        """``ids`` (with repeats) and every moving flow frozen on a link in ``crossed`` or
        crossed by one of them, repeatedly, without repeats: a flow whose rate changes
        moves the level of each bottleneck it crosses.  Marks ``crossed`` as it goes."""
        chosen = self.chosen                 # all False between calls
        ids = np.unique(ids) if len(ids) else ids
        found = []
        chosen_on = np.zeros(len(crossed), dtype=np.int64)   # chosen flows frozen on a link
        while True:
            if len(ids):
                chosen[ids] = True
                found.append(ids)
                crossed[self._links(ids)] = True
                chosen_on += np.bincount(self.bottleneck[ids], minlength=len(crossed))
            crossed[self.pad] = False
            missing = np.flatnonzero(crossed & (self.bottlenecked > chosen_on))
            if not len(missing):
                break
            flow, link = self._moving_on(missing)
            ids = flow[(self.bottleneck[flow] == link) & ~chosen[flow]]
        ids = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
        chosen[ids] = False
        return ids

    def _failed(self, links, rate, bottleneck):
        """Links the re-filled flows (their ``links``, ``rate`` and ``bottleneck``) froze
        on that carry a faster flow, one not re-filled."""
        num_links = len(self.load)
        level = np.zeros(num_links)
        level[bottleneck] = rate
        shared = np.zeros(num_links, dtype=bool)
        shared[bottleneck] = True
        shared &= self.crossing > np.bincount(links.ravel(), minlength=num_links)
        if not shared.any():
            return np.zeros(0, dtype=np.int64)
        flow, link = self._moving_on(np.flatnonzero(shared))
        return np.unique(link[self.rate[flow] > level[link] * (1 + _SAME)])


class _Flows:
    """Every flow of every step of every transfer, as arrays: step s holds flows
    ``step_ranges[s]``; ``moving``: flows that take bandwidth (bytes on a route)."""

    def __init__(self, place, transfers):
        src, dst, nbytes, bounds = [], [], [], [0]
        self.step_reduce, self.step_transfer = [], []
        self.first_step = []          # per transfer: its first step's index
        for t, tr in enumerate(transfers):
            if tr.plan.placement is not None and tr.plan.placement != place:
                raise ValueError(f"transfer {t} ({tr.tag!r}) was planned on another placement")
            self.first_step.append(len(self.step_reduce))
            for step in tr.plan.steps:
                src += [f.src for f in step.flows]
                dst += [f.dst for f in step.flows]
                nbytes += [f.nbytes for f in step.flows]
                bounds.append(len(nbytes))
                self.step_reduce.append(step.reduce_bytes)
                self.step_transfer.append(t)
        self.step_ranges = list(zip(bounds[:-1], bounds[1:]))
        self.src, self.dst = np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64)
        self.nbytes = np.array(nbytes, dtype=float)
        self.routes, self.latency = place.routes(self.src, self.dst)
        self.moving = (self.nbytes > 0) & (self.routes[0] < place.num_links)
        self.step_of = np.repeat(np.arange(len(self.step_ranges)), np.diff(bounds))

    def step(self, s) -> "_Flows":
        """Step s alone: the one step of one transfer, without its reduction."""
        lo, hi = self.step_ranges[s]
        one = copy.copy(self)
        for name in ("src", "dst", "nbytes", "latency", "moving"):
            setattr(one, name, getattr(self, name)[lo:hi])
        one.routes = self.routes[:, lo:hi]
        one.step_ranges, one.step_reduce, one.step_transfer = [(0, hi - lo)], [0.0], [0]
        one.first_step, one.step_of = [0], np.zeros(hi - lo, dtype=np.int64)
        return one

    def key(self, s) -> tuple:
        """What step s's timing depends on: its flows."""
        lo, hi = self.step_ranges[s]
        return self.src[lo:hi].tobytes(), self.dst[lo:hi].tobytes(), self.nbytes[lo:hi].tobytes()


def simulate(place, transfers) -> list:
    """Run transfers (each a Transfer of a Plan on ``place``) together; one result each."""
    transfers = list(transfers)
    topo = place.topology
    flows = _Flows(place, transfers)
    capacity = np.append(place.bandwidths(), np.inf)    # and the padding's
    timing = [[tr.start_ns + topo.launch_overhead_ns, []] for tr in transfers]
    ready = [(end, t, flows.first_step[t]) for t, (end, _) in enumerate(timing)
             if flows.first_step[t] < len(flows.step_ranges)
             and flows.step_transfer[flows.first_step[t]] == t]
    solved = {}
    while ready:
        ready, shared_at = _alone(flows, capacity, topo, timing, ready, solved)
        if ready:
            ready = _together(flows, capacity, timing, ready, topo.step_overhead_ns,
                              topo.reduce_bandwidth, shared_at)
    return [TransferResult(tr.start_ns, end, [tuple(step) for step in steps], tr.tag, tr.plan)
            for tr, (end, steps) in zip(transfers, timing)]


def _alone(flows, capacity, topo, timing, ready, solved):
    """Run the steps ``ready`` to begin ((begin, transfer, step) each) and those after
    them, each transfer as if alone on the fabric, as long as no two transfers' flows
    cross one link at the same time (then they share it); adds each step run to its
    transfer's ``timing`` ([end, steps]).  Returns the steps left for the event loop
    (none if all ran): from the last time no flow moved before two would have shared;
    and when they would have.

    Alone, a step's flows start together and nothing else moves until they are done,
    so its time is a function of its flows: steps with the same flows (a ring's) are
    solved once (``solved``: by ``_Flows.key``).  Steps run in the order they start,
    each link keeping when the last step to use it stops moving: a step that starts
    before one of its links is free shares it with another transfer."""
    pad = len(capacity) - 1
    busy = np.full(len(capacity), -np.inf) if len(ready) > 1 else None   # link in use until
    ran = []                        # (begin, t, s) of each step run
    moved_until, quiet = -np.inf, 0   # when the flows of ran stop; ran[quiet] began with none
    heapq.heapify(ready)
    while ready:
        begin, t, s = heapq.heappop(ready)
        flows_start = begin + topo.step_overhead_ns
        if busy is not None:
            lo, hi = flows.step_ranges[s]
            links = flows.routes[:, lo:hi].compress(flows.moving[lo:hi], axis=1)
            if (busy[links] > flows_start).any():
                return _undo(timing, ready + [(begin, t, s)], ran[quiet:]), flows_start
        key = flows.key(s)
        if key not in solved:
            solved[key] = _alone_step(flows, s, capacity)
        span, moved = solved[key]
        if busy is not None:
            busy[links] = np.maximum(busy[links], flows_start + moved)
            busy[pad] = -np.inf
            quiet = len(ran) if moved_until <= flows_start else quiet
            moved_until = max(moved_until, flows_start + moved)
        end = flows_start + span + flows.step_reduce[s] / topo.reduce_bandwidth
        timing[t][0] = end = float(end)
        timing[t][1].append((float(begin), end))
        ran.append((begin, t, s))
        if s + 1 < len(flows.step_ranges) and flows.step_transfer[s + 1] == t:
            heapq.heappush(ready, (end, t, s + 1))
    return [], None


def _undo(timing, ready, undone):
    """Take the steps ``undone`` back from ``timing``; the steps to begin again: of those
    and the steps ``ready``, each transfer's earliest."""
    for _, t, _ in undone:
        timing[t][1].pop()
    earliest = {}
    for step in sorted(undone + ready, reverse=True):
        earliest[step[1]] = step
    return list(earliest.values())


def _together(flows, capacity, timing, ready, step_ns, reduce_bandwidth, after=np.inf):
    """Run the steps ``ready`` to begin ((begin, transfer, step) each) and those after
    them, all sharing the links (see the module docstring); adds each step run to its
    transfer's ``timing`` ([end, steps]).  Once past time ``after``, hands the steps
    left back (returns them) when no flow moves and at most one transfer is under way."""
    num_flows, num_steps = len(flows.nbytes), len(flows.step_ranges)
    pending = np.zeros(num_steps, dtype=np.int64)
    arrival = np.full(num_steps, -np.inf)
    events = []   # (time, order, step): step's flows begin at time
    order = 0
    under_way = set()   # transfers with a step begun here and steps left

    def begin_step(t, s, when):
        nonlocal order
        timing[t][1].append([float(when), None])
        heapq.heappush(events, (when + step_ns, order, s))
        order += 1

    def end_step(s, when):
        t = flows.step_transfer[s]
        when = max(when, arrival[s]) + flows.step_reduce[s] / reduce_bandwidth
        timing[t][1][-1][1] = when = float(when)
        timing[t][0] = when
        if s + 1 < num_steps and flows.step_transfer[s + 1] == t:
            begin_step(t, s + 1, when)
        else:
            under_way.discard(t)

    for when, t, s in sorted(ready, key=lambda step: step[1]):
        begin_step(t, s, when)

    def finish(done, now):
        steps = flows.step_of[done]
        np.maximum.at(arrival, steps, now + flows.latency[done])
        np.subtract.at(pending, steps, 1)
        for s in sorted(set(steps[pending[steps] == 0].tolist())):
            end_step(s, now)

    sharing = _Sharing(flows.routes, capacity)
    finish_at = np.full(num_flows, np.inf)
    # the rate each flow moves at; a flow about to start is taken to move at 1 B/ns
    # and finish after its bytes, so that bytes left = time left * rate for all
    rate = np.zeros(num_flows)
    now = 0.0
    while events or sharing.moving_count:
        changed = sharing.update()
        new_rate = sharing.rate[changed]
        finish_at[changed] = now + (finish_at[changed] - now) * (rate[changed] / new_rate)
        rate[changed] = new_rate
        live_finish = finish_at[sharing.live]
        next_finish = live_finish.min(initial=np.inf)
        next_event = events[0][0] if events else np.inf
        when = min(next_finish, next_event)
        if next_finish < np.inf:
            done = sharing.live[live_finish <= _due_by(now, next_finish - now,
                                                        next_finish <= next_event, when - now)]
            if len(done):
                finish_at[done] = np.inf
                sharing.stop(done)
                finish(done, when)
        now = when
        while events and events[0][0] <= now:
            _, _, s = heapq.heappop(events)
            lo, hi = flows.step_ranges[s]
            pending[s] = hi - lo
            under_way.add(flows.step_transfer[s])
            if hi == lo:
                end_step(s, now)
                continue
            ids = np.arange(lo, hi)
            moving = flows.moving[lo:hi]
            finish_at[ids[moving]] = now + flows.nbytes[ids[moving]]
            rate[ids[moving]] = 1.0
            sharing.start(ids[moving])
            if not moving.all():
                finish(ids[~moving], now)
        if now > after and not sharing.moving_count and len(under_way) <= 1:
            return [_take_back(timing, flows.step_transfer[s], s) for _, _, s in events]
    return []


def _take_back(timing, t, s):
    """Step s of transfer t, the last ``timing`` has begun, as ready to begin."""
    begin, _ = timing[t][1].pop()
    return begin, t, s


def _alone_step(flows, s, capacity):
    """(time from its flows' start to its end without reduction, time its flows move) of
    step s alone.  Flows that share no link move at their route's slowest link."""
    lo, hi = flows.step_ranges[s]
    moving = flows.moving[lo:hi]
    links = flows.routes[:, lo:hi].compress(moving, axis=1)
    if np.bincount(links.ravel(), minlength=len(capacity))[:-1].max(initial=0) > 1:
        timing = [[0.0, []]]
        _together(flows.step(s), capacity, timing, [(0.0, 0, 0)], 0.0, 1.0)
        return timing[0][0], timing[0][0]
    finished = np.zeros(hi - lo)
    finished[moving] = _finished_at(flows.nbytes[lo:hi][moving] / capacity[links].min(axis=0))
    span = (finished + flows.latency[lo:hi]).max(initial=0.0)
    return float(span), float(finished.max(initial=0.0))


def _finished_at(due):
    """When the event loop finishes flows due at ``due`` (from 0) when no other event comes
    between: with the first due, every flow due within a hair of it (see ``_due_by``)."""
    first = due.min(initial=np.inf)
    if due.max(initial=0.0) <= _due_by(0.0, first, True):
        return np.full_like(due, first)
    order = np.argsort(due, kind="stable")
    due_sorted = due[order]
    at = np.empty_like(due)
    now, i = 0.0, 0
    while i < len(due):
        j = np.searchsorted(due_sorted, _due_by(now, due_sorted[i] - now, True), side="right")
        at[order[i:j]] = now = due_sorted[i]
        i = j
    return at


def _due_by(now, soonest, finish_first, dt=None):
    """The event loop, at ``now`` with the next flow due ``soonest`` later and the next event
    (a finish if ``finish_first``) ``dt`` later, finishes the flows due by this time:
    flows due within a relative hair of the soonest (or of the event) go with it."""
    dt = soonest if dt is None else dt
    # by the time to finish, not dt alone: now + soonest may round to now when now is large
    horizon = soonest * (1 + 1e-9) if finish_first else dt
    return now + (max(horizon, dt * (1 + 1e-12)) + 1e-9)
