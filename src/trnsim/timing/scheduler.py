"""The scheduler: turns a Program (the instruction record) into a Timeline.

    timeline = trnsim.timing.schedule(run.program)          # chip: the program's

Model (hardware.md §1-2; every constant from the chip file, see costs.py):

- Engines. Each core's Tensor, Vector, Scalar, GpSimd and Sync engines execute their own
  instructions in program order, asynchronously to one another. An instruction starts
  when its engine is free and every instruction it depends on is done:
  read-after-write, write-after-read and write-after-write through overlapping bytes of
  SBUF, PSUM (partition range and byte range) and HBM (shared by the cores), explicit
  `attrs["depends_on"]`, and core_barrier / sendrecv across cores. A producer on another
  engine adds that engine's semaphore latency; a result is visible
  `dependency_latency_cycles` after its instruction leaves the engine (so dependent
  back-to-back instructions on one engine issue every MIN_II + that latency). Within one
  engine, write-after-read and write-after-write need no wait (in-order execution).
- Tensor Engine: PE tiles (row/column tiling) on disjoint parts of the array run
  concurrently; a LoadStationary is hidden behind the previous matmul unless the engine
  was idle; on Trn2/Trn3 the warm-up throttle caps the engine at `start_fraction` of peak,
  ramping to full over `ramp_ns`, and re-engages when utilization over the last
  `window_ns` falls below `reengage_utilization` (recorded in `Timeline.throttle`).
- DMA: each DMA instruction of the kernel source (queue name + source line) is one
  hardware queue, shown as `dma:<queue><n>` (qSyncIO0, qSyncIO1, ... as Neuron Explorer
  numbers them); queues are FIFO; a transfer is split over the core's 16 DMA engines by
  partition and shares the HBM stack bandwidth with the other queues and cores on that
  stack (see costs.DmaCost).
- Cores: all cores of the program (LNC=2) are scheduled together.

Implementation: one pass over the instructions in issue order. Each instruction's
dependencies come from the memory maps (deps.py) and its track's order (`_Track`: one
per engine of a core and per DMA queue, holding the track's last instruction, when it is
free, its semaphore and result latency); its start from the engine state (`_Track.free`,
`_TensorState`, `_DmaState` and the HBM stacks' `_Lane`s); one Event per instruction,
whose cost terms are shared by every instruction of the same cost signature. Only
members of a cross-core synchronisation group, and what depends on them, wait
(`_visit` defers them until their partners arrive).

Where the compiled paths run (trnsim/machine/compiled.py), `schedule` gives the program
to timing/compiled.py first: the same Timeline from a numba core, kept as columns; this
scheduler for what that core does not model (synchronisation groups, collectives).
"""
from __future__ import annotations

import heapq
from array import array
from bisect import bisect_right
from collections import deque
from functools import cached_property
from itertools import islice

import numpy as np

from ..chips import load_chip
from .costs import cost_model
from .deps import MemoryMaps
from ..machine import compiled
from ..machine.gc_pause import gc_paused
from ..machine.record import dma_site, identities
from .instruction_columns import instruction_columns, taken_ids
from .timeline import Event, Timeline, Wait, folded_cost

_new_wait = tuple.__new__  # Wait(p, kind, space) without the named tuple's Python __new__
_ORDER = ("order", "")
_QUEUE = ("queue", "")
_MATMULS = ("nc_matmul", "nc_matmul_mx", "nc_transpose")


class _TensorState:
    __slots__ = ("cells", "last_start", "last_end", "ramp", "busy", "throttle")

    def __init__(self, ncells):
        self.cells = [0.0] * ncells
        self.last_start = 0.0
        self.last_end = None
        self.ramp = None  # start of the current warm-up ramp
        self.busy = _BusyWindow()
        self.throttle: list = []


class _BusyWindow:
    """The Tensor Engine's recent busy intervals (start order) and their summed length,
    kept as they come and go, so that the throttle's utilization check reads the sum
    instead of walking the ~50 intervals of its window. The walk still decides where the
    sum is within float noise of the threshold or an interval may end after the time
    asked: the decisions are the walk's."""
    __slots__ = ("spans", "total")
    NOISE = 1e-3  # ns: far above the rounding of the running sum

    def __init__(self):
        self.spans: deque = deque()
        self.total = 0.0

    def add(self, s: float, e: float) -> None:
        self.spans.append((s, e))
        self.total += e - s

    def below(self, lo: float, t: float, threshold: float, last_end: float) -> bool:
        """Whether the intervals cover less than `threshold` ns of [lo, t] (none starts
        after t; `last_end`: the latest end of any)."""
        spans = self.spans
        while spans and spans[0][1] <= lo:
            s, e = spans.popleft()
            self.total -= e - s
        if last_end <= t:  # nothing reaches past t: only those starting before lo clip
            used = self.total
            for s, e in spans:
                if s >= lo:
                    break
                used -= (e - s) - (e - lo if e > lo else 0.0)
            if used < threshold - self.NOISE:
                return True
            if used > threshold + self.NOISE:
                return False
        used = 0.0
        for s, e in spans:
            used += min(e, t) - max(s, lo) if e > lo else 0.0
        return used < threshold


class _Lane:
    """The busy intervals of one server (a DMA engine, an HBM stack), so a transfer
    booked later can still use an earlier idle gap: servers interleave the transfers of
    their queues (round-robin), they do not serve them in the order the kernel issued
    them."""
    __slots__ = ("starts", "ends")
    HORIZON = 2e6  # ns: intervals this far behind the latest booking are forgotten
    KEEP = 512  # ... once the lane holds more than this many

    def __init__(self):
        self.starts: list = []
        self.ends: list = []

    def book(self, t: float, d: float) -> float:
        """Book the earliest [s, s + d) with s >= t that fits; returns s + d."""
        starts, ends = self.starts, self.ends
        if not ends or t >= ends[-1]:  # after every booking (what the general path does)
            e = t + d
            if ends and ends[-1] == t:
                ends[-1] = e
            else:
                starts.append(t)
                ends.append(e)
            if len(ends) > self.KEEP and ends[0] <= e - self.HORIZON:
                self._forget()
            return e
        n = len(ends)
        i = bisect_right(ends, t)
        s = t
        while i < n and starts[i] < s + d:
            if ends[i] > s:
                s = ends[i]
            i += 1
        e = s + d
        # insert [s, e) at i, merging with touching neighbours
        if i > 0 and ends[i - 1] >= s:
            if i < n and starts[i] <= e:
                ends[i - 1] = ends[i]
                del starts[i], ends[i]
            else:
                ends[i - 1] = e
        elif i < n and starts[i] <= e:
            starts[i] = s
        else:
            starts.insert(i, s)
            ends.insert(i, e)
        if len(ends) > self.KEEP and ends[0] <= ends[-1] - self.HORIZON:
            self._forget()
        return e

    def _forget(self):
        """Drop the intervals more than HORIZON behind the latest booking (callers
        check that there is one)."""
        ends = self.ends
        cut = bisect_right(ends, ends[-1] - self.HORIZON)
        if cut:
            del self.starts[:cut], ends[:cut]


class _DmaState:
    """A core's DMA engines. While every transfer has used all of them their busy
    intervals are identical, kept once (`shared`); the first transfer on a subset gives
    each engine its own copy."""
    __slots__ = ("n", "shared", "engines", "dge")

    def __init__(self, engines, dge_units):
        self.n = engines
        self.shared: _Lane | None = _Lane()
        self.engines: list | None = None
        self.dge = [0.0] * max(1, dge_units)

    def book(self, engines, t: float, d: float) -> float:
        """Book d ns on each of `engines` from t on; returns the latest end."""
        if self.shared is not None:
            if len(engines) == self.n:
                return self.shared.book(t, d)
            lanes = []
            for _ in range(self.n):
                lane = _Lane()
                lane.starts = list(self.shared.starts)
                lane.ends = list(self.shared.ends)
                lanes.append(lane)
            self.engines, self.shared = lanes, None
        done = t
        for e in engines:
            x = self.engines[e].book(t, d)
            if x > done:
                done = x
        return done


class _Track:
    """One engine of a core, or one DMA queue: what runs its instructions in order.

    `free`: an engine's end of its last instruction, a queue's time it issues its next
    transfer; `last`: the last instruction visited on it (program order). `id` is the
    track key the dependency maps record readers under."""
    __slots__ = ("id", "core", "name", "engine", "sem", "lat", "free", "last", "terms")

    def __init__(self, id, core, name, engine, sem, lat):
        self.id = id
        self.core = core
        self.name = name  # the event's track: the engine, or "dma:<queue>"
        self.engine = engine
        self.sem = sem  # added to a producer on another track
        self.lat = lat  # results visible this long after an instruction ends
        self.free = 0.0
        self.last = None
        self.terms: dict = {}  # DMA: id(cost info) -> (info, event cost terms)


ORDERS = ("compiler", "program")


def schedule(program, chip=None, order: str = "compiler", fabric=None) -> Timeline:
    """The Timeline of `program` on `chip` (default: the program's chip).

    order: "compiler" runs each engine's instructions in the order the compiler model's
    scheduler issued them (`program.issue`, trnsim.compiler.schedule; program order where
    the program was not compiled), "program" in the kernel's program order (in-order
    mode). fabric: {instruction index: FabricTime} for the collectives of one rank of a
    multi-rank run (timing/ranks.py): when the group's transfer starts and ends."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: use one of {', '.join(ORDERS)}")
    chip = load_chip(chip if chip is not None else program.chip)
    issue = getattr(program, "issue", None) if order == "compiler" else None
    with gc_paused():
        if not fabric and compiled.wanted(len(program.instructions)):
            from .compiled import schedule_compiled  # None where not modelled
            timeline = schedule_compiled(program, chip, issue)
            if timeline is not None:
                return timeline
        return _Scheduler(program, chip, issue, fabric or {}).run()


class _Scheduler:
    def __init__(self, program, chip, issue=None, fabric=None):
        self.program = program
        self.fabric = fabric or {}
        self.instrs = program.instructions
        n = len(self.instrs)
        if issue is not None and len(issue.order) == n:
            self.order, self.moved, self.issue = issue.order, issue.moved, issue
        else:
            self.order, self.moved, self.issue = range(n), {}, None
        self.chip = chip
        self.cost = cost_model(chip)
        self.engines: dict = {}  # (core, engine) -> _Track
        self.queues: dict = {}  # (core, queue, source line) -> _Track
        self.queue_count: dict = {}
        self.sites: dict = {}  # record.dma_site -> its queue's _Track
        te = chip.core.tensor
        self.ncells = (te.rows // self.cost.te_cell) * (te.cols // self.cost.te_cell)
        self.allcells = tuple(range(self.ncells))
        self.tensor: dict = {}
        self.dma: dict = {}
        self.stacks: dict = {}
        cfg = te.warmup_throttle
        self.throttle_cfg = cfg and (
            float(cfg.get("start_fraction", 0.5)), float(cfg.get("ramp_ns", 3000.0)),
            float(cfg.get("window_ns", cfg.get("ramp_ns", 3000.0))),
            float(cfg.get("reengage_utilization", 0.5)))
        # deferral (cross-core synchronisation recorded out of order)
        self.waiting: dict = {}
        self.count: dict = {}
        self.group_of: dict = {}
        self.groups: dict = {}
        self.arrived: dict = {}
        self.deferred_deps: dict = {}
        self._find_groups()
        memsets = with_opcode(program, "memset")
        if len(memsets) and compiled.wanted(n):
            from .compiled_fold import folded_memsets
            matmuls = with_opcode(program, *_MATMULS)
            self.folded = folded_memsets(program, memsets, matmuls)
        else:
            self.folded = _folded_memsets(self.instrs, memsets.tolist())

    # -- the Python walk's state: made on first use (the compiled scheduler makes none
    # of it; `run` the rest) --------------------------------------------------------------
    @cached_property
    def track(self) -> list:
        """The _Track of each instruction (`_collect` sets it)."""
        return [None] * len(self.instrs)

    @cached_property
    def maps(self) -> MemoryMaps:
        return MemoryMaps()

    # -- per instruction, for the compiled scheduler (timing/compiled.py) --------------
    @cached_property
    def engine_of(self) -> np.ndarray:
        """Each instruction's engine name (an object array)."""
        return self.engine_ids.base

    @cached_property
    def engine_ids(self) -> np.ndarray:
        """identities of the instructions' engines (as the compiler's list scheduler
        handed them on, else read: timing/instruction_columns.py)."""
        return taken_ids(self.program, "engine")

    @cached_property
    def engine_numbers(self) -> tuple:
        """numbered(engine_ids): (each distinct engine object's first instruction, each
        instruction's engine number)."""
        return numbered(self.engine_ids, compiled.wanted(len(self.instrs)))

    @cached_property
    def core_of(self) -> np.ndarray:
        """Each instruction's core."""
        return cores_and_opcodes(self.program)[0]

    @cached_property
    def pos(self):
        """pos[i]: where instruction i comes in the issue order (made when the Python
        walk first asks: the compiled scheduler does not)."""
        return self.issue.position() if self.issue is not None else self.order

    @cached_property
    def order_array(self) -> np.ndarray:
        """The issue order (instruction indices) as an array."""
        order = self.order
        if isinstance(order, range):
            return np.arange(order.start, order.stop, order.step, dtype=np.int64)
        if isinstance(order, array):  # (an Indices: copied off its buffer)
            return np.array(order, np.int64)
        return np.fromiter(order, np.int64, len(order))

    @cached_property
    def track_ids(self) -> np.ndarray:
        """Each instruction's track id, its tracks made as a walk in issue order makes
        them (`_track_of`: ids in the order of their first instruction)."""
        instrs, order = self.instrs, self.order_array
        stream = streams(self.program, self.engine_of, self.core_of,
                         numbers=self.engine_numbers)[order]
        first, at = numbered(stream, compiled.wanted(len(instrs)))
        heads = order[first].tolist()  # each stream's first instruction
        tid = np.array([self._track_of(instrs[i]).id for i in heads], np.int64)
        out = np.empty(len(instrs), np.int64)
        out[order] = tid[at]
        return out

    # -- synchronisation groups ------------------------------------------------
    def _find_groups(self):
        parent = {}

        def find(x):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        barriers: dict = {}
        sends: dict = {}
        recvs: dict = {}
        instrs = self.instrs
        syncs = with_opcode(self.program, "core_barrier", "sendrecv").tolist()
        for ins in [instrs[i] for i in syncs]:
            a = ins.attrs
            if ins.opcode == "core_barrier" and "barrier_seq" in a:
                parent[ins.index] = ins.index
                barriers.setdefault((tuple(a.get("cores", ())), a["barrier_seq"]),
                                    []).append(ins.index)
            elif ins.opcode == "sendrecv" and "send_seq" in a:
                parent[ins.index] = ins.index
                sends[(ins.core, a["send_to_rank"], a.get("pipe_id", 0), a["send_seq"])] = ins.index
                if "recv_seq" in a:
                    recvs[(a["recv_from_rank"], ins.core, a.get("pipe_id", 0),
                           a["recv_seq"])] = ins.index
        for members in barriers.values():
            for m in members[1:]:
                parent[find(m)] = find(members[0])
        for key, s in sends.items():
            r = recvs.get(key)
            if r is not None:
                parent[find(r)] = find(s)
        groups: dict = {}
        for x in parent:
            groups.setdefault(find(x), []).append(x)
        for root, members in groups.items():
            if len(members) > 1:
                members.sort()
                for m in members:
                    self.group_of[m] = root
                self.groups[root] = members
        self._sync_order()

    def _sync_order(self):
        """Happens-before across cores from the synchronisation groups. The record
        interleaves the cores in the order the simulator ran them (a core runs on past
        a barrier before its partner records its own), so a cross-core dependency through
        HBM is dropped when its producer comes after a synchronisation that the consumer
        comes before (see `_after`)."""
        self.epoch = None
        if not self.groups:
            return
        instrs = self.instrs
        count: dict = {}
        epoch = [0] * len(instrs)
        order: dict = {}  # sync index -> its ordinal on its core
        syncs: dict = {}  # core -> its sync indices in order
        for ins in instrs:
            c = ins.core
            k = count.get(c, 0)
            epoch[ins.index] = k
            if ins.index in self.group_of:
                order[ins.index] = k
                syncs.setdefault(c, []).append(ins.index)
                count[c] = k + 1
        cores = sorted(count)
        self.prefix: dict = {}  # (core B, core A) -> prefix max of A-ordinals paired
        for b in cores:
            for a in cores:
                if a == b:
                    continue
                pm = [-1]
                for s in syncs.get(b, ()):
                    partner = -1
                    for m in self.groups[self.group_of[s]]:
                        if instrs[m].core == a:
                            partner = max(partner, order[m])
                    pm.append(max(pm[-1], partner))
                self.prefix[(b, a)] = pm
        self.epoch = epoch

    def _after(self, p, i) -> bool:
        """Producer p (another core) comes after a synchronisation that i comes before."""
        if self.epoch is None:
            return False
        b, a = self.instrs[p].core, self.instrs[i].core
        if a == b:
            return False
        pm = self.prefix.get((b, a))
        return pm is not None and pm[self.epoch[p]] >= self.epoch[i]

    # -- main loop -----------------------------------------------------------------
    def run(self) -> Timeline:
        instrs = self.instrs
        n = len(instrs)
        self.end, self.done = [0.0] * n, [0.0] * n
        self.events: list = [None] * n
        self.resolved = bytearray(n)
        visit = self._visit
        for i in self.order:
            visit(i)
        # anything still deferred (a partner that never came): schedule it as it stands
        leftover = [i for i in range(len(instrs)) if not self.resolved[i]]
        arrived = {m: v for g in self.arrived.values() for m, v in g.items()}
        for i in leftover:
            self.group_of.pop(i, None)
            self.count.pop(i, None)
            if i in arrived:
                r, w = arrived[i]
                self._run(i, r, w, ready_at=r)
            else:
                self._process(i, self.deferred_deps.pop(i))
        throttle = []
        for st in self.tensor.values():
            throttle.extend(st.throttle)
        throttle.sort()
        return Timeline(self.chip, self.events, max(self.end, default=0.0), throttle,
                        "program" if isinstance(self.order, range) else "compiler")

    def _visit(self, i):
        deps = self._collect(self.instrs[i])
        if not self.groups:  # nothing is ever deferred: every producer has run
            ready, waits = self._ready(deps, self.track[i])
            self._run(i, ready, waits, ready)
            return
        resolved = self.resolved
        unresolved = [p for p in deps if not resolved[p]]
        if unresolved:
            self.deferred_deps[i] = deps
            self.count[i] = len(unresolved)
            waiting = self.waiting
            for p in unresolved:
                w = waiting.get(p)
                if w is None:
                    waiting[p] = [i]
                else:
                    w.append(i)
            return
        released = self._process(i, deps)
        if released:
            self._ready_to_run(released)

    def _ready_to_run(self, released):
        """Process the instructions `released` (all dependencies done) and what they
        release in turn, in issue order."""
        pos = self.pos
        heap = [(pos[k], k) for k in released]
        heapq.heapify(heap)
        while heap:
            _, j = heapq.heappop(heap)
            released = self._process(j, self.deferred_deps.pop(j))
            for k in released:
                heapq.heappush(heap, (pos[k], k))

    def _release(self, i) -> list:
        waiters = self.waiting.pop(i, None)
        if waiters is None:
            return ()
        out = []
        for w in waiters:
            c = self.count[w] - 1
            if c:
                self.count[w] = c
            else:
                del self.count[w]
                out.append(w)
        return out

    # -- dependencies ----------------------------------------------------------------
    def _track_of(self, ins) -> _Track:
        """The engine track or DMA queue that runs `ins` (made on first use)."""
        if ins.engine != "dma":
            trk = self.engines.get((ins.core, ins.engine))
            return trk if trk is not None else self._engine(ins.core, ins.engine)
        site = dma_site(ins)
        trk = self.sites.get(site)
        if trk is None:
            trk = self.sites[site] = self._queue(ins)
        return trk

    def _queue(self, ins) -> _Track:
        """The DMA queue of `ins`: one per core, queue name and source line."""
        loc = ins.location
        key = (ins.core, ins.queue or "qSyncIO",
               (loc.file, loc.line) if loc is not None else None)
        trk = self.queues.get(key)
        if trk is None:
            base = key[1]
            k = self.queue_count.get((ins.core, base), 0)
            self.queue_count[(ins.core, base)] = k + 1
            trk = self.queues[key] = self._new_track(ins.core, f"dma:{base}{k}", "dma")
        return trk

    def _engine(self, core, engine) -> _Track:
        trk = self.engines.get((core, engine))
        if trk is None:
            trk = self.engines[(core, engine)] = self._new_track(core, engine, engine)
        return trk

    def _new_track(self, core, name, engine) -> _Track:
        return _Track(len(self.engines) + len(self.queues), core, name, engine,
                      self.cost.semaphore_ns(name), self.cost.latency_ns(name))

    def _collect(self, ins) -> dict:
        """{producer: (kind, space)} for instruction `ins` (the strongest kind per
        producer: RAW, then WAW / order, then WAR, then queue order); records its track."""
        i = ins.index
        trk = self._track_of(ins)
        self.track[i] = trk
        if i in self.folded:  # no access of its own: the matmul that replaces it writes
            return {}
        found: dict = {}
        get = found.get
        maps = self.maps
        tid = trk.id
        cross = self.epoch is not None
        for a in ins.reads:
            raw = maps.read(a, i, tid)
            if raw:
                space = a.space
                if cross and space == "hbm":
                    raw = [p for p in raw if not self._after(p, i)]
                note = ("RAW", space)
                for p in raw:
                    old = get(p)
                    if old is None or old[0] != "RAW":
                        found[p] = note
        for a in ins.writes:
            waw, war = maps.write(a, i, tid)
            if not (waw or war):
                continue
            space = a.space
            if cross and space == "hbm":
                waw = [p for p in waw if not self._after(p, i)]
                war = [p for p in war if not self._after(p, i)]
            note = ("WAW", space)
            for p in waw:
                old = get(p)
                if old is None or old[0] == "WAR":
                    found[p] = note
            note = ("WAR", space)
            for p in war:
                if p not in found:
                    found[p] = note
        deps_on = ins.attrs.get("depends_on")
        if deps_on:
            n = len(self.instrs)
            for p in deps_on:
                if 0 <= p < n and p != i:
                    old = get(p)
                    if old is None or old[0] == "WAR":
                        found[p] = _ORDER
        # program order on the engine / queue
        last = trk.last
        trk.last = i
        if last is not None and last not in found:
            found[last] = _QUEUE
        # the other members of a synchronisation group are waited for separately
        return found

    def _ready(self, deps, trk):
        """(time the dependencies allow a start, the Waits)."""
        ready = 0.0
        waits = None
        sem = trk.sem
        is_dma = trk.engine == "dma"
        track, end, done = self.track, self.end, self.done
        for p, note in deps.items():
            kind = note[0]
            if kind == "queue":
                continue  # engine / queue order: handled by the engine's state
            if track[p] is trk:
                if not is_dma and kind != "RAW":
                    continue
                t = end[p] if kind == "WAR" else done[p]
            else:
                t = (end[p] if kind == "WAR" else done[p]) + sem
            if t > ready:
                ready = t
            w = _new_wait(Wait, (p, kind, note[1]))
            if waits is None:
                waits = [(t, w)]
            else:
                waits.append((t, w))
        if waits is None:
            return ready, ()
        if len(waits) <= 2:  # the usual cases, sorted as the stable sort below sorts them
            if len(waits) == 1:
                return ready, (waits[0][1],)
            (t0, w0), (t1, w1) = waits
            return ready, ((w1, w0) if t1 > t0 else (w0, w1))
        waits.sort(key=_neg_time)
        return ready, tuple([w for _, w in waits])

    # -- one instruction ------------------------------------------------------------------
    def _process(self, i, deps) -> list:
        ready, waits = self._ready(deps, self.track[i])
        g = self.group_of.get(i)
        if g is not None:
            arrived = self.arrived.setdefault(g, {})
            arrived[i] = (ready, waits)
            members = self.groups[g]
            if len(arrived) < len(members):
                return []  # wait for the partners: resolved with the whole group
            t = max(self._arrival(m, arrived[m][0]) for m in members)
            out = []
            for m in members:
                self.group_of.pop(m, None)
                r, w = arrived[m]
                self._run(m, max(r, t), w, ready_at=r)
                out.extend(self._release(m))
            return out
        self._run(i, ready, waits, ready_at=ready)
        return self._release(i)

    def _arrival(self, i, ready) -> float:
        """When member i of a synchronisation group reaches its engine (or queue)."""
        ins = self.instrs[i]
        if ins.engine == "tensor":
            st = self.tensor.get(ins.core)
            return max(ready, st.last_start if st else 0.0,
                       max(st.cells) if st else 0.0)
        return max(ready, self.track[i].free)

    def _run(self, i, ready, waits, ready_at):
        ins = self.instrs[i]
        trk = self.track[i]
        engine = ins.engine
        if engine == "dma":
            start, end, done, terms, engines = self._dma(ins, trk, ready)
        elif engine == "tensor":
            start, end, done, terms, engines = self._tensor(ins, trk, ready)
        elif engine == "cc":
            start, end, done, terms, engines = self._collective(ins, trk, ready)
        else:
            start, end, done, terms, engines = self._compute(ins, trk, ready)
        self.events[i] = Event(i, ins.core, trk.name, start, end, ready_at, waits, terms,
                               engines, done, self.moved.get(i, 0))
        self.end[i] = end
        self.done[i] = done
        self.resolved[i] = 1

    # -- engines: each returns (start, end, done, cost terms, DMA engines) -------------
    def _compute(self, ins, trk, ready):
        fold = self.folded.get(ins.index)
        if fold is not None:  # folded into the matmul that overwrites it: no engine time
            t = max(ready, trk.free)
            return t, t, t, folded_cost(fold), ()
        dur, terms = self._compute_cost(ins)
        start = ready if ready > trk.free else trk.free
        end = start + dur
        trk.free = end
        return start, end, end + trk.lat, terms, ()

    def _compute_cost(self, ins):
        """(duration ns, cost terms) of a compute-engine or Sync-engine instruction
        (not folded)."""
        if ins.engine in self.cost.eng:
            dur, terms = self.cost.compute(ins)
        else:
            dur, terms = self.cost.sync(ins)
        if ins.opcode == "core_barrier":
            # the cores' semaphores cross through a DMA write (choice: the DMA fixed cost)
            dur += self.cost.dma.fixed
            terms = {**terms, "barrier_ns": self.cost.dma.fixed}
        return dur, terms

    def _other_tensor_cost(self, ins):
        """(matmul ns, LoadStationary ns, cost terms) of a Tensor Engine instruction
        that is not a matmul (e.g. a core_barrier issued there)."""
        mm = self.cost.te_min_ii * self.cost.te_ns
        if ins.opcode == "core_barrier":
            mm += self.cost.dma.fixed
        return mm, 0.0, {}

    def _collective(self, ins, trk, ready):
        """A collective on the rank's CC track (its collectives run one after another):
        it reaches the track at `start`, triggering the CC core costs a Sync-engine
        instruction, and it ends when the fabric model says its group's transfer does
        (none given: a rank on its own). What the rank sends also occupies its DMA
        engines, and for HBM operands what it sends and receives its HBM stack, from the
        transfer's start: the kernel's own DMAs contend with it."""
        issue, terms = self.cost.sync(ins)
        start = ready if ready > trk.free else trk.free
        end = start + issue
        fab = self.fabric.get(ins.index)
        if fab is not None:
            terms = {**terms, **fab.terms}
            c = self.cost.dma
            d = self.dma.get(ins.core)
            if d is None:
                d = self.dma[ins.core] = _DmaState(c.engines, c.dge_instances)
            sent = fab.terms.get("sent_bytes", 0)
            if sent:
                end = max(end, d.book(range(c.engines), fab.start, sent / (c.bw * c.engines)))
            hbm = fab.terms.get("rank_hbm_bytes", 0)
            if hbm:
                stack = ins.core // c.cores_per_stack
                lane = self.stacks.get(stack)
                if lane is None:
                    lane = self.stacks[stack] = _Lane()
                end = max(end, lane.book(fab.start, hbm / c.stack_bw))
            end = max(end, fab.end)
        trk.free = end
        return start, end, end + trk.lat, terms, ()

    def _tensor(self, ins, trk, ready):
        st = self.tensor.get(ins.core)
        if st is None:
            st = self.tensor[ins.core] = _TensorState(self.ncells)
        if ins.opcode in _MATMULS:
            mm, ls, terms, cells = self.cost.matmul(ins)
        else:
            mm, ls, terms = self._other_tensor_cost(ins)
            cells = self.allcells
        allcells = st.cells
        if not cells or cells == self.allcells:  # the whole array (the usual case)
            cells = self.allcells
            busy = max(allcells)
        else:
            busy = max(map(allcells.__getitem__, cells))
        start = max(ready, st.last_start, busy)
        idle = st.last_end is None or start > st.last_end + 1e-9
        occ = mm + (ls if idle else 0.0)
        if idle and ls:
            terms = {**terms, "load_stationary_ns": ls}
        frac = self._throttle(st, start, occ)
        dur = occ / frac
        if frac < 1.0:
            terms = {**terms, "throttle": frac}
        end = start + dur
        if cells is self.allcells:
            st.cells = [end] * self.ncells
        else:
            for c in cells:
                allcells[c] = end
        st.last_start = start
        if st.last_end is None or end > st.last_end:
            st.last_end = end
        st.busy.add(start, end)
        return start, end, end + trk.lat, terms, ()

    def _throttle(self, st: _TensorState, t: float, occ: float) -> float:
        """Fraction of peak the Tensor Engine runs at for an instruction starting at t."""
        if not self.throttle_cfg:
            return 1.0
        f0, ramp, window, floor = self.throttle_cfg
        if st.ramp is None:
            self._start_ramp(st, t, f0, ramp)
        elif t - st.ramp >= ramp and st.busy.below(t - window, t, floor * window,
                                                    st.last_end):
            self._start_ramp(st, t, f0, ramp)  # utilization over the last window fell
        x = t - st.ramp
        if x >= ramp:
            return 1.0
        f = f0 + (1.0 - f0) * x / ramp
        d = occ / f
        xm = min(ramp, x + d / 2)  # evaluate at the middle of the instruction
        return f0 + (1.0 - f0) * xm / ramp

    @staticmethod
    def _start_ramp(st, t, f0, ramp, steps=6):
        if st.throttle and st.throttle[-1][1] > t:  # cut a ramp still recorded ahead
            while st.throttle and st.throttle[-1][0] >= t:
                st.throttle.pop()
            if st.throttle:
                s, e, f = st.throttle[-1]
                st.throttle[-1] = (s, t, f)
        st.ramp = t
        step = ramp / steps
        for k in range(steps):
            frac = f0 + (1.0 - f0) * (k + 0.5) / steps
            st.throttle.append((t + k * step, t + (k + 1) * step, frac))

    def _dma(self, ins, trk, ready):
        c = self.cost.dma
        info = c.cost(ins)
        core = ins.core
        d = self.dma.get(core)
        if d is None:
            d = self.dma[core] = _DmaState(c.engines, c.dge_instances)
        issue = ready if ready > trk.free else trk.free
        t = issue
        dge_ns = info["dge_ns"]
        if dge_ns:
            if info["dge_mode"] == "swdge":  # descriptors written by GpSimd software
                gpsimd = self._engine(core, "gpsimd")
                s = max(t, gpsimd.free)
                gpsimd.free = s + dge_ns
            else:  # a hardware DGE unit
                u = min(range(len(d.dge)), key=d.dge.__getitem__)
                s = max(t, d.dge[u])
                d.dge[u] = s + dge_ns
            t = s + dge_ns
        data_ready = t + c.fixed
        dn = info["data_ns"]
        done = data_ready
        if dn > 0:
            done = d.book(info["engines"], data_ready, dn)
        hbm = info["hbm_bytes"]
        if hbm:
            stack = core // c.cores_per_stack
            lane = self.stacks.get(stack)
            if lane is None:
                lane = self.stacks[stack] = _Lane()
            sf = lane.book(data_ready, hbm / c.stack_bw)
            if sf > done:
                done = sf
        trk.free = issue + max(c.interval, dn)
        return issue, done, done, self._dma_terms(trk, info), info["engines"]

    def _dma_terms(self, trk, info) -> dict:
        """The event cost terms of a transfer of cost `info` on queue `trk` (one dict
        for every such transfer)."""
        hit = trk.terms.get(id(info))
        if hit is not None and hit[0] is info:
            return hit[1]
        c = self.cost.dma
        terms = {"bytes": info["bytes"], "data_ns": info["data_ns"], "fixed_ns": c.fixed,
                 "efficiency": info["eff"], "contiguous_bytes": info["contiguous_bytes"],
                 "hbm_bytes": info["hbm_bytes"], "queue": trk.name[4:]}
        if info["dge_ns"]:
            terms["dge_ns"] = info["dge_ns"]
            terms["dge_mode"] = info["dge_mode"]
        if info["kind"] != "copy":
            terms["kind"] = info["kind"]
        trk.terms[id(info)] = (info, terms)
        return terms


def streams(program, engines: list, cores: np.ndarray, ids=None,
            numbers=None) -> np.ndarray:
    """A number per instruction of `program` (`engines`, `cores`: each one's engine and
    core), the same for two instructions only where they run on one track: its (core,
    engine) or, for a DMA, its (core, queue, location object) (record.dma_site). Engine
    and queue strings go by object too: equal strings that are other objects only make
    more numbers for one track. ids: identities(engines), where the caller has them;
    numbers: numbered(ids), where it has those."""
    instrs = program.instructions
    n = len(instrs)
    if not n:
        return np.zeros(0, np.int64)
    fast = compiled.wanted(n)
    if numbers is None:
        numbers = numbered(identities(engines) if ids is None else ids, fast)
    head, engine = numbers
    core = cores - cores.min()
    ncores, nengines = int(core.max()) + 1, head.size
    out = core * nengines + engine
    dma = [k for k, i in enumerate(head.tolist()) if engines[i] == "dma"]
    if dma:
        at = np.flatnonzero(engine == dma[0] if len(dma) == 1 else np.isin(engine, dma))
        out[at] = ncores * nengines + _queues(program, at, fast) * ncores + core[at]
    return out


def _queues(program, at: np.ndarray, fast: bool) -> np.ndarray:
    """A number per (queue, location) object pair of the DMAs `at` of `program`, kept on
    it for the next pass that asks (the compiler's list scheduler, then the timing
    scheduler: a DMA's engine, queue and location stay as recorded) while its
    instruction list is the same object and length and its DMAs the same."""
    instrs = program.instructions
    hit = getattr(program, "_dma_queues", None)
    if hit is not None and hit[0] is instrs and hit[1] == len(instrs) \
            and np.array_equal(hit[2], at):
        return hit[3]
    cols = instruction_columns(program)
    queue_ids, loc_ids = cols.ids("queue", at), cols.ids("location", at)
    queues = numbered(queue_ids, fast)[1]
    locs = numbered(loc_ids, fast)[1]
    numbers = locs * (int(queues.max()) + 1) + queues
    program._dma_queues = (instrs, len(instrs), at, numbers)
    return numbers


def cores_and_opcodes(program) -> tuple:
    """(each instruction's core, a number per instruction for its opcode, the opcode of
    each number: a number per opcode string object (see identities)) of `program`,
    kept on it for the next pass that asks (the compiler's list scheduler, then the
    timing scheduler: neither changes them) while its instruction list is the same
    object and length."""
    instrs = program.instructions
    hit = getattr(program, "_cores_and_opcodes", None)
    if hit is not None and hit[0] is instrs and hit[1] == len(instrs):
        return hit[2:]
    n = len(instrs)
    cols = instruction_columns(program)
    cores, ops = cols.core(), cols.ids("opcode")
    if n:
        first, which = numbered(ops, compiled.wanted(n))
        by_id = np.argsort(ops[first])  # (numbered as np.unique numbers them: by id)
        rank = np.empty(len(by_id), np.int32)  # (int32: kept with the program)
        rank[by_id] = np.arange(len(by_id))
        code, names = rank[which], [instrs[i].opcode for i in first[by_id].tolist()]
    else:
        code, names = np.zeros(0, np.int64), []
    program._cores_and_opcodes = (instrs, n, cores, code, names)
    return cores, code, names


def with_opcode(program, *names) -> np.ndarray:
    """The indices of `program`'s instructions whose opcode is one of `names`, in
    order."""
    _, code, opcodes = cores_and_opcodes(program)
    want = [k for k, op in enumerate(opcodes) if op in names]
    if not want:
        return np.zeros(0, np.int64)
    hit = code == want[0] if len(want) == 1 else np.isin(code, want)
    return np.flatnonzero(hit)


def by_identity(objects: list, ids=None) -> tuple:
    """(first, inverse): the distinct objects of `objects` by identity, each as the
    index of its first occurrence (in increasing order), and each item's number among
    them. One Python step per distinct object, not per item (loop copies share them).
    ids: identities(objects), where the caller has them."""
    if not len(objects):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first, inverse = np.unique(identities(objects) if ids is None else ids,
                                  return_index=True, return_inverse=True)
    return numbered_as_met(first, inverse.reshape(-1))


def numbered(keys, fast: bool) -> tuple:
    """(first, which): the distinct values of the int array `keys`, each as the index of
    its first occurrence (in increasing order), and each item's number among them (as
    by_identity numbers identities): by a hash table where the compiled paths run
    (fast: timing/compiled_deps.py numbered_rows), else by np.unique."""
    if fast:
        from .compiled_deps import numbered_rows
        return numbered_rows(keys.reshape(len(keys), 1))
    _, first, which = np.unique(keys, return_index=True, return_inverse=True)
    return numbered_as_met(first, which.reshape(-1))


def numbered_as_met(first, inverse) -> tuple:
    """(first, inverse) of distinct items (each group's first index, each item's group
    number) with the groups renumbered in order of first occurrence: (their first
    indices in increasing order, each item's new number)."""
    rank = np.argsort(first)
    number = np.empty(first.size, np.int64)
    number[rank] = np.arange(first.size)
    return first[rank], number[inverse]


def _neg_time(w):
    return -w[0]


def _folded_memsets(instrs, memsets: list) -> dict:
    """{memset index: matmul index} for the zero-initialisations of PSUM that the
    compiler folds into the first matmul of an accumulation group: a memset of 0 whose
    bytes are next written, all of them and before any read, by a matmul (overwriting, or
    adding to the zeros: the same values) -- the legacy `res = nl.zeros(...,
    buffer=nl.psum)` followed by `res += nc_matmul(...)`. The matmul's
    start-accumulation flag does the zeroing, so the memset costs nothing and orders
    nothing. (`memsets`: the memsets' indices: the walk starts at each and goes on while
    one is pending.)"""
    pending: dict = {}  # (core, p_lo, p_hi, lo, hi) -> memset index
    folded: dict = {}
    walk, done = iter(instrs), 0  # `walk` is at instruction `done`
    for start in memsets:
        if start < done:
            continue
        next(islice(walk, start - done, start - done), None)  # (skips to `start`)
        for done, ins in enumerate(walk, start + 1):
            for a in ins.reads:
                if a.space == "psum":
                    for k in [k for k in pending if _over(k, a)]:
                        del pending[k]
            overwrite = ins.opcode in _MATMULS
            for a in ins.writes:
                if a.space != "psum":
                    continue
                for k in [k for k in pending if _over(k, a)]:
                    m = pending.pop(k)
                    if overwrite and a.p_lo <= k[1] and k[2] <= a.p_hi and a.lo <= k[3] \
                            and k[4] <= a.hi:
                        folded[m] = ins.index
            if ins.opcode == "memset" and len(ins.writes) == 1 \
                    and ins.writes[0].space == "psum":
                try:
                    zero = float(ins.attrs.get("value", 1)) == 0.0
                except (TypeError, ValueError):
                    zero = False
                w = ins.writes[0]
                if zero and not w.indirect:
                    pending[(w.core, w.p_lo, w.p_hi, w.lo, w.hi)] = ins.index
            if not pending:
                break
    return folded


def _over(k, a) -> bool:
    return k[0] == a.core and k[1] < a.p_hi and a.p_lo < k[2] and k[3] < a.hi and a.lo < k[4]
