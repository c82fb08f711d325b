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
"""
from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque

from ..chips import load_chip
from .costs import cost_model
from .deps import MemoryMaps
from ..machine.gc_pause import gc_paused
from .timeline import Event, Timeline, Wait

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
        self.busy: deque = deque()  # recent (start, end) intervals
        self.throttle: list = []


class _Lane:
    """The busy intervals of one server (a DMA engine, an HBM stack), so a transfer
    booked later can still use an earlier idle gap: servers interleave the transfers of
    their queues (round-robin), they do not serve them in the order the kernel issued
    them."""
    __slots__ = ("starts", "ends")
    HORIZON = 2e6  # ns: intervals this far behind the latest booking are forgotten

    def __init__(self):
        self.starts: list = []
        self.ends: list = []

    def book(self, t: float, d: float) -> float:
        """Book the earliest [s, s + d) with s >= t that fits; returns s + d."""
        starts, ends = self.starts, self.ends
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
        if len(ends) > 512:
            cut = bisect_right(ends, ends[-1] - self.HORIZON)
            if cut:
                del starts[:cut], ends[:cut]
        return e


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


class _Queue:
    __slots__ = ("name", "next", "last")

    def __init__(self, name):
        self.name = name
        self.next = 0.0
        self.last = None  # index of the previous transfer in this queue


ORDERS = ("compiler", "program")


def schedule(program, chip=None, order: str = "compiler") -> Timeline:
    """The Timeline of `program` on `chip` (default: the program's chip).

    order: "compiler" runs each engine's instructions in the order the compiler model's
    scheduler issued them (`program.issue`, trnsim.compiler.schedule; program order where
    the program was not compiled), "program" in the kernel's program order (in-order
    mode)."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r}: use one of {', '.join(ORDERS)}")
    chip = load_chip(chip if chip is not None else program.chip)
    issue = getattr(program, "issue", None) if order == "compiler" else None
    with gc_paused():
        return _Scheduler(program, chip, issue).run()


class _Scheduler:
    def __init__(self, program, chip, issue=None):
        self.program = program
        self.instrs = program.instructions
        n = len(self.instrs)
        if issue is not None and len(issue.order) == n:
            self.order, self.moved, self.pos = issue.order, issue.moved, issue.position()
        else:
            self.order, self.moved = range(n), {}
            self.pos = self.order
        self.chip = chip
        self.cost = cost_model(chip)
        self.start = [0.0] * n
        self.end = [0.0] * n
        self.done = [0.0] * n
        self.tkey = [None] * n  # (core, track) of each instruction
        self.events: list = [None] * n
        self.resolved = bytearray(n)
        self.maps = MemoryMaps()
        self.engine_free: dict = {}  # (core, engine) -> end of its last instruction
        self.engine_last: dict = {}  # (core, engine) -> index of its last instruction
        te = chip.core.tensor
        self.ncells = (te.rows // self.cost.te_cell) * (te.cols // self.cost.te_cell)
        self.allcells = tuple(range(self.ncells))
        self.tensor: dict = {}
        self.dma: dict = {}
        self.queues: dict = {}
        self.qof: dict = {}  # DMA instruction -> its queue
        self.queue_count: dict = {}
        self.stacks: dict = {}
        self.throttle_cfg = te.warmup_throttle
        self._sem = {}
        self._lat = {}
        self._waits: dict = {}  # (producer, kind, space) -> Wait (immutable: shared)
        # deferral (cross-core synchronisation recorded out of order)
        self.waiting: dict = {}
        self.count: dict = {}
        self.group_of: dict = {}
        self.groups: dict = {}
        self.arrived: dict = {}
        self.deferred_deps: dict = {}
        self._find_groups()
        self.folded = _folded_memsets(self.instrs)

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
        for ins in self.instrs:
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
        for i in self.order:
            self._visit(i)
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
                self._process(i)
        events = self.events
        total = max((e.end for e in events), default=0.0)
        throttle = []
        for st in self.tensor.values():
            throttle.extend(st.throttle)
        throttle.sort()
        return Timeline(self.chip, events, total, throttle,
                        "program" if isinstance(self.order, range) else "compiler")

    def _visit(self, i):
        ins = self.instrs[i]
        deps = self._collect(ins)
        self.deferred_deps[i] = deps
        resolved = self.resolved
        unresolved = {p for p, _, _ in deps if not resolved[p]}
        if unresolved:
            self.count[i] = len(unresolved)
            waiting = self.waiting
            for p in unresolved:
                w = waiting.get(p)
                if w is None:
                    waiting[p] = [i]
                else:
                    w.append(i)
            return
        released = self._process(i)
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
            released = self._process(j)
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
    def _track_of(self, ins) -> str:
        if ins.engine == "dma":
            return "dma:" + self._queue(ins).name
        return ins.engine

    def _queue(self, ins) -> _Queue:
        q = self.qof.get(ins.index)
        if q is not None:
            return q
        loc = ins.location
        key = (ins.core, ins.queue or "qSyncIO",
               (loc.file, loc.line) if loc is not None else None)
        q = self.queues.get(key)
        if q is None:
            base = key[1]
            k = self.queue_count.get((ins.core, base), 0)
            self.queue_count[(ins.core, base)] = k + 1
            q = self.queues[key] = _Queue(f"{base}{k}")
        self.qof[ins.index] = q
        return q

    def _collect(self, ins) -> list:
        """[(producer, kind, space)] for instruction `ins` (the strongest kind per
        producer: RAW, then WAW / order, then WAR, then queue order), and its (core,
        track) key."""
        i = ins.index
        track = self._track_of(ins)
        tkey = (ins.core, track)
        self.tkey[i] = tkey
        if i in self.folded:  # no access of its own: the matmul that replaces it writes
            return []
        found: dict = {}
        get = found.get
        maps = self.maps
        cross = self.epoch is not None
        for a in ins.reads:
            raw = maps.read(a, i, tkey)
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
            waw, war = maps.write(a, i, tkey)
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
        if ins.engine == "dma":
            q = self._queue(ins)
            last = q.last
            q.last = i
        else:
            last = self.engine_last.get(tkey)
            self.engine_last[tkey] = i
        if last is not None and last not in found:
            found[last] = _QUEUE
        # the other members of a synchronisation group are waited for separately
        return [(p, k, s) for p, (k, s) in found.items()]

    def _ready(self, i, deps, track, core):
        """(time the dependencies allow a start, the Waits)."""
        ready = 0.0
        waits = None
        sem = self._sem.get(track)
        if sem is None:
            sem = self._sem[track] = self.cost.semaphore_ns(track)
        is_dma = track.startswith("dma:")
        mykey = (core, track)
        tkey, end, done = self.tkey, self.end, self.done
        for p, kind, space in deps:
            if kind == "queue":
                continue  # engine / queue order: handled by the engine's state
            if tkey[p] == mykey:
                if not is_dma and kind != "RAW":
                    continue
                t = end[p] if kind == "WAR" else done[p]
            else:
                t = (end[p] if kind == "WAR" else done[p]) + sem
            if t > ready:
                ready = t
            if waits is None:
                waits = [(t, p, kind, space)]
            else:
                waits.append((t, p, kind, space))
        if waits is None:
            return ready, ()
        if len(waits) > 1:
            waits.sort(key=_neg_time)
        cache = self._waits
        out = []
        for _, p, kind, space in waits:
            key = (p, kind, space)
            w = cache.get(key)
            if w is None:
                w = cache[key] = _wait(p, kind, space)
            out.append(w)
        return ready, tuple(out)

    # -- one instruction ------------------------------------------------------------------
    def _process(self, i) -> list:
        ins = self.instrs[i]
        deps = self.deferred_deps.pop(i)
        track = self.tkey[i][1]
        ready, waits = self._ready(i, deps, track, ins.core)
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
        if ins.engine == "dma":
            return max(ready, self._queue(ins).next)
        if ins.engine == "tensor":
            st = self.tensor.get(ins.core)
            return max(ready, st.last_start if st else 0.0,
                       max(st.cells) if st else 0.0)
        return max(ready, self.engine_free.get((ins.core, ins.engine), 0.0))

    def _run(self, i, ready, waits, ready_at):
        ins = self.instrs[i]
        engine = ins.engine
        if engine == "dma":
            ev = self._dma(ins, ready, waits)
        elif engine == "tensor":
            ev = self._tensor(ins, ready, waits)
        else:
            ev = self._compute(ins, ready, waits)
        ev.ready = ready_at
        ev.moved = self.moved.get(i, 0)
        self.events[i] = ev
        self.start[i] = ev.start
        self.end[i] = ev.end
        self.done[i] = ev.done
        self.resolved[i] = 1

    # -- engines --------------------------------------------------------------------------
    def _compute(self, ins, ready, waits) -> Event:
        engine = ins.engine
        key = (ins.core, engine)
        fold = self.folded.get(ins.index)
        if fold is not None:  # folded into the matmul that overwrites it: no engine time
            t = max(ready, self.engine_free.get(key, 0.0))
            return _event(ins.index, ins.core, engine, t, t, ready, waits,
                          {"cycles": 0, "folded_into": fold}, (), t)
        if engine in self.cost.eng:
            dur, terms = self.cost.compute(ins)
        else:
            dur, terms = self.cost.sync(ins)
        if ins.opcode == "core_barrier":
            # the cores' semaphores cross through a DMA write (choice: the DMA fixed cost)
            dur += self.cost.dma.fixed
            terms["barrier_ns"] = self.cost.dma.fixed
        start = max(ready, self.engine_free.get(key, 0.0))
        end = start + dur
        self.engine_free[key] = end
        lat = self._lat.get(engine)
        if lat is None:
            lat = self._lat[engine] = self.cost.latency_ns(engine)
        return _event(ins.index, ins.core, engine, start, end, ready, waits, terms, (),
                      end + lat)

    def _tensor(self, ins, ready, waits) -> Event:
        st = self.tensor.get(ins.core)
        if st is None:
            st = self.tensor[ins.core] = _TensorState(self.ncells)
        if ins.opcode in _MATMULS:
            mm, ls, terms, cells = self.cost.matmul(ins)
        else:  # e.g. a core_barrier issued on the Tensor Engine
            mm, ls, terms = self.cost.te_min_ii * self.cost.te_ns, 0.0, {}
            cells = self.allcells
            if ins.opcode == "core_barrier":
                mm += self.cost.dma.fixed
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
            terms["load_stationary_ns"] = ls
        frac = self._throttle(st, start, occ)
        dur = occ / frac
        if frac < 1.0:
            terms["throttle"] = frac
        end = start + dur
        for c in cells:
            allcells[c] = end
        st.last_start = start
        st.last_end = end if st.last_end is None else max(st.last_end, end)
        st.busy.append((start, end))
        lat = self._lat.get("tensor")
        if lat is None:
            lat = self._lat["tensor"] = self.cost.latency_ns("tensor")
        return _event(ins.index, ins.core, "tensor", start, end, ready, waits, terms, (),
                      end + lat)

    def _throttle(self, st: _TensorState, t: float, occ: float) -> float:
        """Fraction of peak the Tensor Engine runs at for an instruction starting at t."""
        cfg = self.throttle_cfg
        if not cfg:
            return 1.0
        f0 = float(cfg.get("start_fraction", 0.5))
        ramp = float(cfg.get("ramp_ns", 3000.0))
        window = float(cfg.get("window_ns", ramp))
        floor = float(cfg.get("reengage_utilization", 0.5))
        if st.ramp is None:
            self._start_ramp(st, t, f0, ramp)
        elif t - st.ramp >= ramp:
            # utilization over the last window
            lo = t - window
            busy = st.busy
            while busy and busy[0][1] <= lo:
                busy.popleft()
            used = 0.0
            for s, e in busy:
                used += min(e, t) - max(s, lo) if e > lo else 0.0
            if used < floor * window:
                self._start_ramp(st, t, f0, ramp)
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

    def _dma(self, ins, ready, waits) -> Event:
        c = self.cost.dma
        info = c.cost(ins)
        q = self._queue(ins)
        core = ins.core
        d = self.dma.get(core)
        if d is None:
            d = self.dma[core] = _DmaState(c.engines, c.dge_instances)
        issue = max(ready, q.next)
        t = issue
        if info["dge_ns"]:
            if info["dge_mode"] == "swdge":  # descriptors written by GpSimd software
                key = (core, "gpsimd")
                s = max(t, self.engine_free.get(key, 0.0))
                self.engine_free[key] = s + info["dge_ns"]
            else:  # a hardware DGE unit
                u = min(range(len(d.dge)), key=d.dge.__getitem__)
                s = max(t, d.dge[u])
                d.dge[u] = s + info["dge_ns"]
            t = s + info["dge_ns"]
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
        q.next = issue + max(c.interval, dn)
        terms = {"bytes": info["bytes"], "data_ns": dn, "fixed_ns": c.fixed,
                 "efficiency": info["eff"], "contiguous_bytes": info["contiguous_bytes"],
                 "hbm_bytes": hbm, "queue": q.name}
        if info["dge_ns"]:
            terms["dge_ns"] = info["dge_ns"]
            terms["dge_mode"] = info["dge_mode"]
        if info["kind"] != "copy":
            terms["kind"] = info["kind"]
        return _event(ins.index, core, "dma:" + q.name, issue, done, ready, waits, terms,
                      tuple(info["engines"]), done)


def _neg_time(w):
    return -w[0]


def _folded_memsets(instrs) -> dict:
    """{memset index: matmul index} for the zero-initialisations of PSUM that the
    compiler folds into the first matmul of an accumulation group: a memset of 0 whose
    bytes are next written, all of them and before any read, by a matmul (overwriting, or
    adding to the zeros: the same values) -- the legacy `res = nl.zeros(...,
    buffer=nl.psum)` followed by `res += nc_matmul(...)`. The matmul's
    start-accumulation flag does the zeroing, so the memset costs nothing and orders
    nothing."""
    pending: dict = {}  # (core, p_lo, p_hi, lo, hi) -> memset index
    folded: dict = {}
    for ins in instrs:
        if not pending and ins.opcode != "memset":
            continue
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
        if ins.opcode == "memset" and len(ins.writes) == 1 and ins.writes[0].space == "psum":
            try:
                zero = float(ins.attrs.get("value", 1)) == 0.0
            except (TypeError, ValueError):
                zero = False
            w = ins.writes[0]
            if zero and not w.indirect:
                pending[(w.core, w.p_lo, w.p_hi, w.lo, w.hi)] = ins.index
    return folded


def _over(k, a) -> bool:
    return k[0] == a.core and k[1] < a.p_hi and a.p_lo < k[2] and k[3] < a.hi and a.lo < k[4]


def _event(index, core, track, start, end, ready, waits, cost, dma_engines, done) -> Event:
    """Event(...), built without the dataclass's __init__ (one per instruction); equal to
    the constructor's."""
    ev = object.__new__(Event)
    ev.__dict__ = {"index": index, "core": core, "track": track, "start": start,
                   "end": end, "ready": ready, "waits": waits, "cost": cost,
                   "dma_engines": dma_engines, "done": done, "moved": 0}
    return ev


def _wait(producer, kind, space) -> Wait:
    """Wait(producer, kind, space), built without the frozen dataclass's field-by-field
    __init__ (hundreds of thousands per timeline); equal to the constructor's."""
    w = object.__new__(Wait)
    w.__dict__.update(producer=producer, kind=kind, space=space)
    return w
