"""Instruction scheduling: the order in which the compiler issues each engine's
instructions.

The kernel records its instructions in program order. neuronx-cc unrolls the loops and
schedules the whole instruction graph: iterations of `affine_range` (and, in the current
API, of any loop) are independent unless memory says otherwise, so an engine issues
whatever is ready instead of waiting on the instruction the source wrote next. This pass
is that list scheduler:

- Constraints are exact: every RAW / WAR / WAW through overlapping bytes of SBUF, PSUM
  and HBM (on the physical addresses the allocation pass gave), `depends_on` edges, each
  DMA queue's FIFO order, each core's collectives in program order (every rank must
  issue them in one order), and fences the compiler may not reorder across: a cross-core
  synchronisation (core_barrier, sendrecv), every instruction in an `nl.no_reorder()`
  block, and the iterations of a legacy `sequential_range` (`Program.fences`).
- Each engine issues from a window of its next `window` instructions in program order;
  among those whose dependencies are met, the heuristic picks
  (`nki.compiler.SchedulingHeuristic`, NKI 0.7 docs): `asap` (the default there: the one
  that can start first, program order among equals), `critical_path` (the one on the
  longest remaining path), `trivial` (program order: trnsim's in-order mode).
- Engine assignment: an instruction the kernel left to the compiler (`attrs["engines"]`,
  its candidate engines: trnsim/isa/engines.py) goes, once its dependencies are met, to
  the candidate where it would finish first given the work already waiting there
  (ties: the default engine, listed first), and the record's `engine` says which. Not
  between Vector and GpSimd on NeuronCore-v2, where they share the SBUF port.
- The times it reasons with are the compiler's estimates: each instruction's cost from
  the timing model without contention (no PE tiling, no warm-up throttle; a core's DMA
  transfers share its engines' bandwidth).

The result is `Program.issue` (IssueOrder): the order the timing model runs the engines
in (trnsim.timing.schedule follows it unless asked for program order).

Where the compiled paths run (trnsim/machine/compiled.py), the dependency pass is
timing/compiled_deps.py's and `_ListScheduler.run` is the compiled list scheduler
(trnsim/compiler/compiled_schedule.py): the same result, bit for bit; this loop where
it does not model a program."""
from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from operator import itemgetter

import numpy as np

from ..timing.costs import compute_costs, cost_model, matmul_costs, priced
from ..timing.deps import MemoryMaps
from ..timing.instruction_columns import instruction_columns, taken_ids
from ..timing.scheduler import cores_and_opcodes, identities, numbered, streams, with_opcode
from ..timing.timeline import Moved
from ..machine import compiled
from ..machine.gc_pause import gc_paused

HEURISTICS = ("asap", "critical_path", "trivial")
DEFAULT_HEURISTIC = "asap"  # nki.compiler.SchedulingHeuristic's default (NKI 0.7 docs)
# How many of an engine's next instructions (program order) the scheduler may choose
# from. No published figure: neuronx-cc schedules the whole graph, which the allocation
# (buffer reuse through WAR dependencies) bounds before any window does; 64 is a choice
# large enough to interleave a few iterations of a tiled loop body and small enough
# that an engine does not run far ahead of program order.
DEFAULT_WINDOW = 64
_SYNC_OPS = ("core_barrier", "sendrecv")
_RAW, _WAW, _WAR, _ORDER = range(4)  # the kinds of dependency edges
_LONG = np.dtype(f"i{array('l').itemsize}")  # array("l")'s items
_MATMULS = ("nc_matmul", "nc_matmul_mx", "nc_transpose")
_NS = itemgetter(0)  # a cost model result's time


class Indices(array):
    """Instruction indices as an array("l"), 8 bytes each where a list holds an int
    object each (3.7 MiB per 100k), equal to the list of the same ints."""
    __hash__ = None

    def __new__(cls, items=()):
        return super().__new__(cls, "l", items)

    def __eq__(self, other):
        if isinstance(other, list):
            return self.tolist() == other
        return array.__eq__(self, other)

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal


@dataclass
class IssueOrder:
    """The compiler's issue order: `order` lists every instruction index once, each
    engine's and DMA queue's instructions in the order they are issued there (an
    Indices, made of the sequence given)."""
    order: Indices
    heuristic: str = DEFAULT_HEURISTIC
    window: int = DEFAULT_WINDOW
    estimate_ns: float = 0.0  # the scheduler's own estimate of the kernel's time
    # index -> places it moved up its engine (a dict, or a Moved)
    moved: dict | Moved = field(default_factory=dict)

    def __post_init__(self):
        if type(self.order) is not Indices:
            self.order = Indices(self.order)

    def position(self) -> array:
        """position[i]: where instruction i comes in `order` (an array: no int object
        per instruction kept)."""
        n = len(self.order)
        pos = np.zeros(n, _LONG)
        pos[np.asarray(self.order, np.int64)] = np.arange(n, dtype=_LONG)
        return array("l", pos.tobytes())


def resource_of(ins) -> tuple:
    """The in-order stream an instruction is issued on: its engine, or for a DMA its
    queue (queue name and source line, as the timing model numbers queues)."""
    if ins.engine == "dma":
        loc = ins.location
        return (ins.core, "dma", ins.queue or "qSyncIO",
                (loc.file, loc.line) if loc is not None else None)
    return (ins.core, ins.engine)


def order_instructions(program, heuristic: str = DEFAULT_HEURISTIC,
                       window: int = DEFAULT_WINDOW, chip=None) -> IssueOrder:
    """The order the compiler's scheduler issues `program`'s instructions in."""
    if heuristic not in HEURISTICS:
        raise ValueError(f"scheduling heuristic {heuristic!r}: use one of "
                         f"{', '.join(HEURISTICS)}")
    n = len(program.instructions)
    if heuristic == "trivial" or n == 0:
        return IssueOrder(list(range(n)), heuristic, window)
    with gc_paused():
        ls = _ListScheduler(program, chip or program.chip, heuristic, max(1, window))
        issue = ls.run()
        ls.hand_engines()
        return issue


def successor_csr(prods, kinds, npred, n: int):
    """(start, successor, kind): for producer p its successors succ[start[p]:start[p+1]]
    and their edge kinds, from the edges listed by consumer (npred[i] of them for
    consumer i): grouped by producer by a stable sort, so each producer's successors
    come in program order. Successors int32 and kinds uint8, as the edges come."""
    by = np.argsort(prods, kind="stable")
    start = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(prods, minlength=n), out=start[1:])
    consumers = np.repeat(np.arange(n, dtype=np.int32), np.asarray(npred, np.int64))[by]
    return start, consumers, kinds[by]


class _ListScheduler:
    def __init__(self, program, chip, heuristic, window):
        self.program = program
        self.instrs = program.instructions
        self.compiled = compiled.wanted(len(self.instrs))
        self.heuristic = heuristic
        self.window = window
        self.cost = cost_model(chip)
        # NeuronCore-v2: VectorE and GpSimd cannot access SBUF at the same time
        # (hardware.md §1, ARCH), so moving work between them gains nothing
        self.shared_port = chip.generation <= 2
        n = len(self.instrs)
        self._canon: dict = {}  # one tuple per resource, shared by its instructions
        self._resources()
        # engine-agnostic instructions float: no place in a stream until assigned
        # (a flag per instruction: a set of a third of them took 2 MiB per 100k)
        self.attrs_ids = taken_ids(program, "attrs")
        self.attrs = attrs = self.attrs_ids.base  # (the attrs, an object array)
        first, which = numbered(self.attrs_ids, self.compiled)  # (loop copies share attrs)
        engines = map(dict.get, attrs[first].tolist(), repeat("engines"))
        flags = np.zeros(len(first), np.uint8)  # (traced ones: a dict each, most without)
        flags[[k for k, e in enumerate(engines) if e and len(e) > 1]] = 1
        self.floating = bytearray(flags[which].tobytes())
        self.succ: list = []  # per instruction: its (successor, kind) pairs
        self.npred = [0] * n  # (an array where the compiled dependency pass made it)
        self._compiled = None
        # (the floating instructions the compiled list scheduler moved to another
        # engine, and those engines: hand_engines)
        self.reassigned = None
        if self.compiled:  # (imported only then: numba takes a while to load)
            from . import compiled_schedule
            self._compiled = compiled_schedule
        # the edges by producer (the memory maps are gone by then); the compiled list
        # scheduler takes them as these arrays, the Python loop as `succ`'s pairs, made
        # only should the compiled one not model the program
        prods, kinds = self._dependencies()
        if self._compiled is not None:
            self._csr = self._compiled.successor_csr(
                prods, kinds, np.asarray(self.npred, np.int32), n)
        else:
            self._csr = successor_csr(prods, kinds, self.npred, n)
            self._successors()
        # est[i]: the cost estimate of instruction i on its engine (the one assigned,
        # once a floating one is), a float64 array (the Python loop's list: `run`);
        # made once the memory maps are gone (a lower peak)
        self.est = self._estimates(first, which)
        del first, which
        self._lat: dict = {}  # engine -> result latency (ns)
        self._fences(getattr(program, "fences", ()) or ())
        self.prio = None  # critical_path's priorities (the Python loop's: `run`)

    # -- the graph ---------------------------------------------------------------------
    def _dependencies(self):
        """The edges by consumer: (producers, kinds) as int32 and uint8 arrays, npred[i]
        of them for consumer i (set here), each producer once with the first kind found
        (RAW, then per write WAW and WAR, then order). Compiled (timing/compiled_deps.py)
        where the compiled paths run: the same edges, in another order within a consumer
        (`successor_csr` sorts them by producer, stably)."""
        if self.compiled:
            edges = self._compiled_dependencies()
            if edges is not None:
                return edges
        return self._python_dependencies()

    def _compiled_dependencies(self):
        """_dependencies by the compiled maps, or None where they do not hold the
        program (addresses beyond their byte axis, too many HBM row pitches)."""
        from ..timing import compiled_deps
        instrs, stream = self.instrs, self.stream_no
        n = len(instrs)
        # reader keys as _python_dependencies': a compute instruction's own index, a
        # DMA queue's number past every index, in order of first use (an array, not a
        # list of ints: the maps below are the compiler model's peak of memory)
        dma_stream = self.dma_stream
        queue_no = np.cumsum(dma_stream) - 1
        tkey = np.arange(n, dtype=np.int64)
        dma = dma_stream[stream]
        tkey[dma] = n + queue_no[stream[dma]]
        del dma
        extra: dict = {}
        last_cc: dict = {}
        cc = np.array([r[1] == "cc" for r in self.stream_res], bool)[stream]
        for i in np.flatnonzero(cc).tolist():
            ins = instrs[i]
            p = last_cc.get(ins.core)
            if p is not None:
                extra[ins.index] = [p]
            last_cc[ins.core] = ins.index
        for i, order in compiled_deps.access_columns(self.program).depends_on:
            extra.setdefault(i, []).extend(p for p in order if 0 <= p < i)
        try:
            dptr, prods, kinds = compiled_deps.list_edges(self.program, tkey,
                                                          sorted(extra.items()))
        except OverflowError:
            return None
        self.npred = np.diff(dptr).astype(np.int32)  # (alive through the issue loop)
        # (the walk's own arrays, not copies: fresh pages fault in at some us each)
        return prods.astype(np.int32, copy=False), kinds.view(np.uint8)

    def _python_dependencies(self):
        maps = MemoryMaps()
        read, write = maps.read, maps.write
        npred, resources = self.npred, self.res
        prods, kinds = array("i"), bytearray()  # the edges, by consumer (npred each)
        last_cc: dict = {}  # core -> its latest collective
        for ins in self.instrs:
            i = ins.index
            res = resources[i]
            # readers on an in-order stream need only the latest kept (DMA queues are FIFO);
            # compute engines reorder, so each of their reads is kept (its own key: the
            # index, which no stream's key equals)
            tkey = i if ins.engine != "dma" else res
            found: dict = {}
            for a in ins.reads:
                for p in read(a, i, tkey):
                    found[p] = _RAW
            for a in ins.writes:
                waw, war = write(a, i, tkey)
                for p in waw:
                    found.setdefault(p, _WAW)
                for p in war:
                    found.setdefault(p, _WAR)
            if ins.engine == "cc":  # every rank issues its collectives in program order
                p = last_cc.get(ins.core)
                if p is not None:
                    found.setdefault(p, _ORDER)
                last_cc[ins.core] = i
            order = ins.attrs.get("depends_on")
            if order:
                for p in order:
                    if 0 <= p < i:
                        found.setdefault(p, _ORDER)
            found.pop(i, None)
            npred[i] = len(found)
            prods.extend(found)
            kinds.extend(found.values())
        return np.frombuffer(prods, np.int32), np.frombuffer(kinds, np.uint8)

    def _successors(self):
        """succ: the edges (successor, kind) by producer, each producer's successors in
        program order, from the CSR arrays (dropped then: the pairs, ~100 bytes an edge,
        are what the Python loop walks fastest)."""
        start, consumers, kinds = self._csr
        index = [ins.index for ins in self.instrs]  # (the record's ints: shared)
        pairs = list(zip(map(index.__getitem__, consumers.tolist()), kinds.tolist()))
        for lo, hi in zip(start.tolist(), start[1:].tolist()):
            self.succ.append(pairs[lo:hi] if hi != lo else ())
        self._csr = None

    def _fences(self, fences):
        """seg[i]: the fence segment of instruction i on its core; an instruction is only
        issued once every instruction of earlier segments of its core is. `fenced`: some
        core has more than one segment (else there is nothing to hold back). A cut (a
        fence's (core, index), a cross-core synchronisation and the instruction after
        it: a segment of its own) starts a segment at the instruction of that index
        where it is on that core and not its core's first."""
        n = len(self.instrs)
        cores = self.cores
        at = with_opcode(self.program, *_SYNC_OPS)
        # (core, index) as core * (n + 2) + index: a fence's beyond the last index
        # starts nothing
        cuts = np.concatenate([np.array([c * (n + 2) + k for c, k in fences if 0 <= k < n],
                                        np.int64).reshape(-1),
                               cores[at] * (n + 2) + at, cores[at] * (n + 2) + at + 1])
        self.fenced = bool(fences) or len(at) > 0
        self.seg = None  # (an int64 array where fenced: the Python loop's list, `run`)
        self.left: dict = {}  # (core, segment) -> instructions not yet issued
        self.cur_seg: dict = {}
        if not self.fenced:
            return
        # (the cuts at an index on its own core: of each cut's (core, index))
        cut = np.zeros(n, bool)
        core, k = np.divmod(cuts, n + 2)
        on = k < n
        core, k = core[on], k[on]
        cut[k[cores[k] == core]] = True
        seg = np.zeros(n, np.int64)
        for c in cores[numbered(cores, self.compiled)[0]].tolist():
            mine = np.flatnonzero(cores == c)
            mine_cut = cut[mine]
            mine_cut[0] = False  # a core's first instruction starts its first segment
            seg[mine] = np.cumsum(mine_cut)
            counts = np.bincount(seg[mine])
            self.left.update(((c, k), v) for k, v in enumerate(counts.tolist()))
            self.cur_seg[c] = 0
        self.seg = seg

    def _resource(self, r) -> tuple:
        return self._canon.setdefault(r, r)

    def _resources(self):
        """Sets `engines` and `cores`: each instruction's engine and core (a list, an
        array), `engine_ids` (identities of the engines); `stream_no`: each
        instruction's resource (resource_of) numbered in order of first use,
        `stream_res`: the resources by number, one tuple each (`res` reads them), and
        `dma_stream`: by number, whether the resource is a DMA queue (of
        the streams numbered here: the compiled issue loop adds compute streams only).
        resource_of is made once per track as timing/scheduler.py
        `streams` tells them apart (by the engine, queue and location objects)."""
        instrs = self.instrs
        self.engine_ids = taken_ids(self.program, "engine")
        self.engines = self.engine_ids.base  # (the engines, an object array)
        self.cores, self.opcode_codes, _ = cores_and_opcodes(self.program)
        first, which = numbered(streams(self.program, self.engines, self.cores,
                                        self.engine_ids), self.compiled)
        canon = self._canon.setdefault
        number: dict = {}  # resource -> its stream number
        site_no = np.empty(first.size, np.int64)
        for u, i in enumerate(first.tolist()):
            r = resource_of(instrs[i])
            site_no[u] = number.setdefault(canon(r, r), len(number))
        self.stream_no = site_no[which]
        self.stream_res = list(number)
        self.dma_stream = np.array([r[1] == "dma" for r in self.stream_res], bool)

    def hand_engines(self) -> None:
        """Hand the timing scheduler each instruction's engine (timing/
        instruction_columns.py): those the pass began with, a floating instruction's as
        it stands now (after the compiled list scheduler: those it moved, `reassigned`;
        the others kept theirs)."""
        engines = self.engines
        if self.reassigned is not None:  # (the compiled list scheduler's)
            at, assigned = self.reassigned
            if len(at):
                engines = engines.copy()
                engines[at] = assigned
        else:
            floating = np.flatnonzero(np.frombuffer(self.floating, np.uint8))
            if len(floating):
                engines = engines.copy()
                engines[floating] = [self.instrs[i].engine for i in floating.tolist()]
        instruction_columns(self.program).hand("engine", np.frombuffer(engines, np.intp))

    @cached_property
    def res(self) -> list:
        """resource_of each instruction, one tuple per resource (the Python passes')."""
        return list(map(self.stream_res.__getitem__, self.stream_no.tolist()))

    def _cost_of(self, ins) -> float:
        """The compiler's cost estimate of an instruction on its engine (ns)."""
        cost = self.cost
        if ins.engine == "tensor":
            if ins.opcode in _MATMULS:
                mm, _ls, _t, _c = cost.matmul(ins)
                return mm
            return cost.te_min_ii * cost.te_ns
        if ins.engine in cost.eng:
            return cost.compute(ins)[0]
        if ins.engine == "sync":
            return cost.sync(ins)[0]
        return 0.0

    def _estimates(self, heads, group) -> np.ndarray:
        """_cost_of of each instruction, a float64 array (a matmul's once per attrs
        dict, all that cost.matmul reads: the dicts' first instructions `heads` and each
        instruction's dict number `group`, as by_identity gives them; a compute
        instruction's once per cost model result). For the compiled list
        scheduler, keeps per floating instruction on a compute engine the id of the
        cost model's result (`signed`, else id(None): equal objects for equal cost
        signatures; it costs the other candidates once per signature), and for the
        timing scheduler every compute instruction's result (`priced(...).compute`,
        which keeps them alive: no id reused)."""
        cost_of = self._cost_of
        n = len(self.instrs)
        engine_ids = self.engine_ids
        est, matmul = self._matmul_estimates(heads, group, engine_ids)
        instrs = self.instrs
        rest = np.flatnonzero(~(self.dma_stream[self.stream_no] | matmul))
        # (a stream's instructions share their engine: stream_res's)
        eng = self.cost.eng
        on_compute = np.array([r[1] in eng for r in self.stream_res],
                              bool)[self.stream_no[rest]]
        at = rest[on_compute]
        results = compute_costs(self.cost, self.program, at,
                                (engine_ids, self.opcode_codes, self.attrs_ids))
        # (a time read once per result object: loop copies share them)
        ids = identities(results)
        first, which = numbered(ids, self.compiled)
        est[at] = np.fromiter(map(_NS, results[first]), np.float64, len(first))[which]
        self.signed = None
        if self.compiled:
            floats = np.frombuffer(self.floating, np.uint8)[at] != 0
            self.signed = np.full(n, id(None), np.intp)
            self.signed[at[floats]] = ids[floats]
            # the compiled timing scheduler takes these results (the engine still the
            # same), once per result object (the memo's: equal keys, equal engines)
            by_id = np.argsort(ids[first])  # (numbered as np.unique would: by id)
            rank = np.empty(len(by_id), np.int64)
            rank[by_id] = np.arange(len(by_id))
            first = first[by_id]
            kept = np.full(n, -1, np.int32)  # (kept with the program: int32)
            kept[at] = rank[which]
            priced(self.program, self.cost).compute = (
                kept, results[first], [self.engines[k] for k in at[first].tolist()])
        del at, results
        matmuls: dict = {}  # id(attrs) -> estimate (the instructions keep their attrs)
        for k in rest[~on_compute].tolist():
            ins = instrs[k]
            if ins.engine == "tensor" and ins.opcode in _MATMULS:
                c = matmuls.get(id(ins.attrs))
                if c is None:
                    c = matmuls[id(ins.attrs)] = cost_of(ins)
                est[k] = c
            else:
                est[k] = cost_of(ins)
        return est

    def _matmul_estimates(self, heads, group, engines) -> tuple:
        """(est, a float64 array: the matmuls' estimates, else 0.0 (as _cost_of: a
        DMA's is the issue loop's), which instructions it holds the estimate of): once
        per attrs dict (all cost.matmul reads), in the order of the dicts' first
        instructions, for the dicts whose instructions all have the first one's engine
        and opcode objects (as loop copies do; `_estimates` prices the others one by
        one; `engines`: identities of the instructions' engines)."""
        instrs = self.instrs
        est = np.zeros(len(instrs))
        ops = self.opcode_codes
        mixed = np.zeros(len(heads), bool)
        mixed[group[(engines != engines[heads][group]) | (ops != ops[heads][group])]] = True
        results = np.empty(len(heads), object)
        per_group = np.zeros(len(heads))
        matmul_code = np.array([op in _MATMULS for op in cores_and_opcodes(self.program)[2]],
                               bool)
        is_matmul = ~mixed & matmul_code[ops[heads]] & (self.engines[heads] == "tensor")
        results[is_matmul] = matmul_costs(self.cost, instrs, heads[is_matmul],
                                          self.compiled, self.attrs)  # (_cost_of's calls)
        per_group[is_matmul] = [r[0] for r in results[is_matmul]]
        matmul = is_matmul[group]
        est[matmul] = per_group[group[matmul]]
        # the timing scheduler takes these results (a matmul stays on its engine)
        stays = matmul & (np.frombuffer(self.floating, np.uint8) == 0)
        kept = np.full(len(instrs), -1, np.int32)  # (kept with the program: int32)
        kept[stays] = group[stays]
        priced(self.program, self.cost).matmul = (kept, results)
        return est, matmul

    def _critical_path(self) -> list:
        """Longest estimated path from each instruction to the end of the kernel."""
        n = len(self.instrs)
        prio = [0.0] * n
        est = self.est
        for i in range(n - 1, -1, -1):
            tail = 0.0
            for s, _ in self.succ[i]:
                if prio[s] > tail:
                    tail = prio[s]
            prio[i] = tail + est[i]
        return prio

    # -- the list scheduler ---------------------------------------------------------------
    def run(self) -> IssueOrder:
        if self._compiled is not None:
            issue = self._compiled.issue_order(self)
            if issue is not None:
                return issue
            self._successors()  # the Python loop below
            self.npred = np.asarray(self.npred).tolist()
        self.est = self.est.tolist()  # (floats: the loop's sums as Python's)
        if self.fenced:
            self.seg = self.seg.tolist()
        if self.heuristic == "critical_path":
            self.prio = self._critical_path()
        instrs = self.instrs
        n = len(instrs)
        streams: dict = {}  # resource -> its _Stream
        self.numbered: list = []  # the streams by number (heap entries carry the number)
        pos = [0] * n  # position of each instruction in its stream
        # the stream of each instruction (a floating one's default engine's until assigned)
        self.stream_of = stream_of = []
        for ins, r in zip(instrs, self.res):
            st = self._stream(r, streams)
            stream_of.append(st)
            if self.floating[ins.index]:
                for e in ins.attrs["engines"]:
                    self._stream((ins.core, e), streams)
                continue
            pos[ins.index] = len(st.ids)
            st.ids.append(ins.index)
        self.streams = streams
        self.pos = pos
        self.issued = bytearray(n)
        self.ready = [0.0] * n  # earliest start its dependencies allow
        self.done = [0.0] * n
        self.arrivals = 0
        self.held: dict = {}  # core -> indices waiting for their fence segment
        self.dma_free: dict = {}  # core -> when its DMA engines' share frees
        self.top: list = []  # (possible start, index, stream number): lazily validated
        for i in range(n):
            if self.npred[i] == 0:
                self._available(i)
        order: list = []
        end = 0.0
        top, numbered = self.top, self.numbered
        heappop = heapq.heappop
        while top:
            start, i, k = heappop(top)
            st = numbered[k]
            if st.best != (start, i):
                continue  # stale: the stream's best changed since
            heappop(st.now if st.now else st.waiting)
            order.append(i)
            fin = self._issue(i, st, start)
            if fin > end:
                end = fin
            self._after_issue(i, st)
        if len(order) != n:  # a fence or window cycle would be a bug: keep every instruction
            seen = set(order)
            order += [i for i in range(n) if i not in seen]
        moved = {}
        floating = self.floating
        issued_on = [0] * len(numbered)  # per stream: its instructions issued so far
        for i in order:
            if floating[i]:
                continue
            k = stream_of[i].number
            if pos[i] != issued_on[k]:
                moved[i] = pos[i] - issued_on[k]
            issued_on[k] += 1
        return IssueOrder(order, self.heuristic, self.window, end, moved)

    def _stream(self, r, streams) -> "_Stream":
        st = streams.get(r)
        if st is None:
            dma = r[1] == "dma"
            st = streams[r] = _Stream(len(self.numbered), dma, 1 if dma else self.window,
                                      self.cost.semaphore_ns(r[1]))
            self.numbered.append(st)
        return st

    def _push_best(self, st):
        """Work out (start, index) of the instruction stream `st` issues next (`best`)
        and offer it to the top heap if it changed. Every eligible instruction ready by
        the time the stream is free can start then, and the heuristic picks among those;
        otherwise the first to become ready goes. (`best` changes only here: an entry
        in the top heap is current while it equals its stream's `best`.)"""
        waiting, now, free = st.waiting, st.now, st.free
        if waiting and waiting[0][0] <= free:
            prio = self.prio
            while waiting and waiting[0][0] <= free:
                _, j = heapq.heappop(waiting)
                heapq.heappush(now, (-prio[j], j) if prio is not None else (j,))
        if now:
            b = (free, now[0][-1])
        elif waiting:
            b = waiting[0]
        else:
            st.best = None
            return
        if b != st.best:
            st.best = b
            heapq.heappush(self.top, (b[0], b[1], st.number))

    def _available(self, i):
        """All of i's producers are issued: eligible if its fence segment and its
        stream's window allow, else held."""
        if self.fenced:
            core = self.instrs[i].core
            if self.seg[i] != self.cur_seg.get(core, 0):
                self.held.setdefault(core, []).append(i)
                return
        if self.floating[i]:
            st = self._assign(i)
        else:
            st = self.stream_of[i]
            p = self.pos[i]
            if p >= st.head + st.limit:
                st.later[p] = (self.arrivals, i)
                self.arrivals += 1
                return
        heapq.heappush(st.waiting, (self.ready[i], i))
        st.queued += self.est[i]
        self._push_best(st)

    def _assign(self, i):
        """The stream of the candidate engine where instruction i would finish first."""
        ins = self.instrs[i]
        default = ins.engine
        best = None
        for e in ins.attrs["engines"]:
            if self.shared_port and {e, default} == {"vector", "gpsimd"}:
                continue
            r = (ins.core, e)
            st = self.streams[r]
            ins.engine = e  # (assigned once: each instruction becomes eligible once)
            est = self._cost_of(ins)
            fin = max(st.free, self.ready[i]) + st.queued + est
            if best is None or fin < best[0]:
                best = (fin, e, r, est)
        ins.engine = default
        _, e, r, est = best
        if e != default:
            ins.engine = e
            self.res[i] = self._resource(r)
        st = self.stream_of[i] = self.streams[r]
        self.est[i] = est
        return st

    def _issue(self, i, st, start) -> float:
        ins = self.instrs[i]
        est = self.est[i]
        st.queued -= est
        if st.dma:
            info = self.cost.dma.cost(ins)
            c = self.cost.dma
            t = max(start, st.qnext) + info["dge_ns"]
            share = info["data_ns"] * len(info["engines"]) / max(1, c.engines)
            d0 = max(t + c.fixed, self.dma_free.get(ins.core, 0.0))
            self.dma_free[ins.core] = d0 + share
            fin = max(d0 + share, t + c.fixed + info["data_ns"])
            st.qnext = st.free = start + max(c.interval, info["data_ns"])
            self.done[i] = fin
            return fin
        fin = start + est
        st.free = fin
        lat = self._lat.get(ins.engine)
        if lat is None:
            lat = self._lat[ins.engine] = self.cost.latency_ns(ins.engine)
        self.done[i] = fin + lat
        return fin

    def _after_issue(self, i, st):
        issued = self.issued
        issued[i] = 1
        # the stream's window slides past every issued instruction at its head
        ids = st.ids
        h0 = h = st.head
        while h < len(ids) and issued[ids[h]]:
            h += 1
        st.head = h
        later = st.later
        if later and h > h0:
            limit = st.limit
            if h - h0 < len(later):
                come = [later.pop(p) for p in range(h0 + limit, h + limit) if p in later]
                come.sort()
            else:
                come = [later.pop(p) for p in [p for p in later if p < h + limit]]
            ready, est, waiting = self.ready, self.est, st.waiting
            for _, j in come:
                heapq.heappush(waiting, (ready[j], j))
                st.queued += est[j]
                self._push_best(st)
        # successors
        stream_of, ready, npred = self.stream_of, self.ready, self.npred
        done = self.done[i]
        war, raw = _WAR, _RAW
        for s, kind in self.succ[i]:
            other = stream_of[s]
            if kind == war:
                t = done if other is not st else 0.0
            elif other is st:
                t = done if kind == raw else 0.0  # same stream: issue order suffices
            else:
                t = done + other.sem
            if t > ready[s]:
                ready[s] = t
            npred[s] -= 1
            if npred[s] == 0:
                self._available(s)
        if self.fenced:
            self._segment_done(self.instrs[i].core, self.seg[i])
        self._push_best(st)

    def _segment_done(self, core, seg):
        """One more instruction of the fence segment issued: when it was the last,
        release what the next segment held."""
        key = (core, seg)
        self.left[key] -= 1
        if self.left[key] == 0 and self.cur_seg.get(core) == seg:
            self.cur_seg[core] += 1
            for j in self.held.pop(core, []):
                self._available(j)


class _Stream:
    """One in-order stream (an engine or a DMA queue of a core) during list scheduling:
    its instructions in program order (`ids`), the first not yet issued (`head`), when
    it can issue again (`free`), its eligible instructions (`waiting`: a heap of (ready,
    index); `now`: ready by `free`, by pick), those beyond its window (`later`: position
    -> (arrival, index); every position there is >= head + limit, so a slide of the head
    releases exactly the positions it brings into the window, in the order they
    arrived), the estimated work eligible on it (`queued`), the semaphore wait of a
    producer on another stream (`sem`) and, for a DMA queue, when it may issue the next
    transfer (`qnext`)."""
    __slots__ = ("number", "dma", "limit", "sem", "ids", "head", "free", "waiting", "now",
                 "later", "queued", "qnext", "best")

    def __init__(self, number: int, dma: bool, limit: int, sem: float):
        self.number, self.dma, self.limit, self.sem = number, dma, limit, sem
        self.ids: list = []
        self.head = 0
        self.free = 0.0
        self.waiting: list = []
        self.now: list = []
        self.later: dict = {}
        self.queued = 0.0
        self.qnext = 0.0
        self.best = None
