"""Export a profile as Chrome Trace Event JSON, which Perfetto UI (ui.perfetto.dev) and
chrome://tracing open.

Layout:
- one process per NeuronCore ("NeuronCore 0 (trn2)"), and in it one thread (track) per
  engine -- Tensor, Vector, Scalar, GpSimd, Sync, always all five -- and one per DMA
  queue used ("DMA qSyncIO"). A queue with several transfers in flight at once gets
  extra tracks ("DMA qSyncIO #2"), because slices on one track must nest;
- one complete event ("ph": "X") per instruction: name = opcode, args = the operands
  (`role: tensor dtype@space[shape] bytes`), bytes moved, the kernel's file:line
  (`nki_source_location`, as Neuron Explorer names it) and source text, the cost-model
  terms, the instruction's attributes, how long it queued after its dependencies were
  satisfied, what it waited on, how many places the compiler model's scheduler moved it
  up its engine (`moved_up`) and, for engine-agnostic work, the engine it chose;
- flow arrows ("ph": "s" / "f", bound by id) from each producer to each instruction on
  another track that waited for it (a semaphore wait: RAW/WAR/WAW/order);
- counter tracks per core: HBM read and write bandwidth (GB/s), DMA transfers in flight,
  SBUF and PSUM bytes per partition in use (the compiler model's placements), and the
  Tensor Engine throttle (% of peak) where the timeline has one.

A multi-rank run (write_ranks_perfetto) has one process per rank's NeuronCore ("Rank 3
\u00b7 chip 0 \u00b7 NeuronCore (trn2)"), laid out as above with its "Collectives" track
after the engines (each collective from when the rank reached it to when its transfer
ended), and a "Fabric" process with a track per replica group: each collective as a
slice from its transfer's start to its end (args: kind, algorithm, bytes, algorithm and
bus bandwidth in GB/s, each member's arrival and wait for the slowest member) and an
arrow from each member's collective slice to it.

Timestamps ("ts", "dur") are in microseconds as the format requires, with nanosecond
precision (3 decimals).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import views
from ..machine.gc_pause import gc_paused
from ..timing.timeline import spans_of

_ENGINE_TID_BASE = 1  # engines: tid 1..5, collectives 6; DMA queue lanes from 100
_DMA_TID_BASE = 100
_FIXED_TRACKS = views.ENGINE_ORDER + (views.CC_TRACK,)  # tracks with a tid of their own


def _us(ns: float) -> float:
    return round(float(ns) / 1000.0, 3)


@dataclass(frozen=True)
class Scope:
    """Where one profile's events go in a trace: a single profile's cores are pids 1.. ,
    a multi-rank trace gives each rank's cores the pids after the previous rank's (and
    flow ids after its flows, as flow ids are global to a trace)."""
    pid_base: int = 0
    flow_base: int = 0
    process_name: Callable[[int, str], str] = \
        lambda core, chip: f"NeuronCore {core} ({chip})"

    def pid(self, core: int) -> int:
        return self.pid_base + int(core) + 1  # pid 0 is special in some viewers


def trace_events(profile, scope: Scope = Scope()) -> tuple[list[dict], dict]:
    """The trace's events and its metadata ("otherData")."""
    head, body, meta = _trace_parts(profile, scope)
    with gc_paused():  # a dict per event, no cyclic garbage
        return head + [json.loads(text) for _, text in body], meta


def _trace_parts(profile, scope: Scope) -> tuple[list[dict], list[tuple], dict]:
    """The metadata events, the timed events as (ts, their JSON text) in trace order,
    and the trace's metadata. The timed events are one per instruction and per wait,
    so they are written as JSON text directly (`_slice_text`) rather than built as
    dicts for the encoder: the same bytes in a fraction of the time."""
    with gc_paused():  # one text per event, no cyclic garbage (see Profile.summary)
        return _trace(profile, scope)


def _trace(profile, scope: Scope) -> tuple[list[dict], list[tuple], dict]:
    program, timeline = profile.program, profile.timeline
    chip = getattr(profile, "chip", None) or getattr(timeline, "chip", None)
    chip_name = views.chip_name(chip)
    instructions = program.instructions
    events = timeline.events
    if len(events) != len(instructions):
        raise ValueError(f"timeline has {len(events)} events for {len(instructions)} "
                         "instructions; they must align (events[i].index == i)")

    head: list[dict] = []
    # --- tracks: (core, track) -> lanes -> tid
    by_key: dict[tuple[int, str], list] = {}
    for e in events:
        by_key.setdefault((e.core, e.track), []).append(e)
    tid_of: dict[int, int] = {}  # event index -> tid
    names: dict[tuple[int, int], tuple[str, int]] = {}  # (pid, tid) -> (name, sort)
    cores = views.cores_and_tracks(timeline)
    for core, tracks in cores.items():
        pid = scope.pid(core)
        head.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                     "args": {"name": scope.process_name(core, chip_name)}})
        head.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                     "args": {"sort_index": scope.pid_base + core}})
        next_dma_tid = _DMA_TID_BASE
        for sort, track in enumerate(tracks):
            evs = by_key.get((core, track), [])
            lanes = views.assign_lanes(evs) if evs else []
            n_lanes = max(lanes, default=0) + 1
            if track in _FIXED_TRACKS:
                base = _ENGINE_TID_BASE + _FIXED_TRACKS.index(track)
                tids = [base] + [200 + 10 * base + k for k in range(1, n_lanes)]
            else:
                tids = list(range(next_dma_tid, next_dma_tid + n_lanes))
                next_dma_tid += n_lanes
            label = views.track_label(track)
            for k, tid in enumerate(tids):
                names[(pid, tid)] = (label if k == 0 else f"{label} #{k + 1}", sort * 100 + k)
            for e, lane in zip(evs, lanes):
                tid_of[e.index] = tids[lane]
    for (pid, tid), (name, sort) in names.items():
        head += _thread_meta(pid, tid, name, sort)

    texts = _Texts()
    slices = [(_us(e.start), _slice_text(ins, e, scope.pid(e.core), tid_of[e.index],
                                         instructions, texts))
              for ins, e in zip(instructions, events)]
    flows = _flow_texts(events, tid_of, scope)
    counters = _counters(profile, cores, scope.pid)
    body = sorted(slices + flows + counters, key=_ts)
    total = float(getattr(timeline, "total_time", 0.0) or 0.0)
    meta = {"trnsim_version": _version(), "chip": chip_name,
            "kernel": views.kernel_name(profile), "instructions": len(instructions),
            "total_time_ns": total, "cores": sorted(cores)}
    return head, body, meta


def _ts(item) -> float:
    return item[0]


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(x, separators=...)
_js = views.json_str


class _Texts:
    """The JSON texts one trace's slices share, made once each: per source location
    its `nki_source_location` and `source` members, per operand its string, and per
    object (the cost terms of a cost signature, an expanded loop's attrs) its JSON."""
    __slots__ = ("where", "operand", "shared")

    def __init__(self):
        self.where: dict = {}
        self.operand: dict = {}
        self.shared: dict = {}

    def location(self, loc) -> str:
        key = views.location_key(loc)
        text = self.where.get(key)
        if text is None:
            text = f',"nki_source_location":{_js(views.short_location(loc))}'
            source = views.source_text(loc)
            if source:
                text += f',"source":{_js(source)}'
            self.where[key] = text
        return text

    def operands(self, accesses) -> str:
        get = self.operand.get
        parts = []
        for a in accesses:
            s = views.operand_text(a)
            t = get(s)
            if t is None:
                t = self.operand[s] = _js(s)
            parts.append(t)
        return ",".join(parts)

    def of(self, obj, to_json) -> str:
        """The JSON text of to_json(obj), computed once per object ('' where empty)."""
        hit = self.shared.get(id(obj))
        if hit is None or hit[0] is not obj:
            value = to_json(obj)
            hit = self.shared[id(obj)] = (obj, _dumps(value) if value else "")
        return hit[1]


def _slice_text(ins, e, pid: int, tid: int, instructions, texts: _Texts) -> str:
    """The complete event ("ph": "X") of one instruction, as JSON text: name = opcode,
    args as the module docstring lists them (members in this order)."""
    ts = _us(e.start)
    args = [f'"index":{ins.index},"operands":[{texts.operands(ins.accesses)}],'
            f'"bytes":{int(ins.bytes_moved)}{texts.location(ins.location)}']
    if ins.queue:
        args.append(f',"queue":{_js(ins.queue)}')
    if e.dma_engines:
        args.append(f',"dma_engines":{texts.of(e.dma_engines, list)}')
    if e.cost:
        args.append(f',"cost":{texts.of(e.cost, views.jsonable)}')
    if e.ready and e.ready < e.start:
        args.append(f',"queued_ns":{round(e.start - e.ready, 3)!r}')
    if e.moved:  # the compiler's scheduler issued it this many places early (late: <0)
        args.append(f',"moved_up":{int(e.moved)}')
    engines = ins.attrs.get("engines")
    if engines:
        chosen = f"{ins.engine}, chosen by the compiler from {', '.join(engines)}"
        args.append(f',"engine":{_js(chosen)}')
    if e.waits:
        n = len(instructions)
        waits = [_js(f"#{w.producer} {instructions[w.producer].opcode} "
                     f"({w.kind}{' ' + w.space if w.space else ''})")
                 for w in e.waits if 0 <= w.producer < n]
        args.append(f',"waits":[{",".join(waits)}]')
    if ins.attrs:
        attrs = texts.of(ins.attrs, _attrs_json)
        if attrs:
            args.append(f',"attrs":{attrs}')
    return (f'{{"ph":"X","name":{_js(ins.opcode)},"cat":{_js(views.track_group(e.track))},'
            f'"pid":{pid},"tid":{tid},"ts":{ts!r},"dur":{round(_us(e.end) - ts, 3)!r},'
            f'"args":{{{"".join(args)}}}}}')


def _flow_texts(events, tid_of: dict, scope: Scope) -> list[tuple]:
    """Flow arrows for waits across tracks (semaphores): (ts, JSON text) of the start
    ("s") at the producer and the finish ("f") at the waiting instruction."""
    flows: list = []
    flow_id = scope.flow_base
    ends: dict = {}  # event index -> (ts, "pid":..,"tid":..) of a flow end bound to it
    names: dict = {}  # (kind, space) -> the flow's name as JSON
    n = len(events)
    for e in events:
        if not e.waits:
            continue
        i = e.index
        tid = tid_of[i]
        for w in e.waits:
            p = w.producer
            if not 0 <= p < n:
                continue
            if events[p].core == e.core and tid_of[p] == tid:
                continue  # same track: program order, no semaphore
            flow_id += 1
            name = names.get((w.kind, w.space))
            if name is None:
                name = names[(w.kind, w.space)] = _js(f"{w.kind} {w.space}".strip())
            ps, pwhere = ends.get(p) or _flow_end(ends, events[p], tid_of, scope)
            es, ewhere = ends.get(i) or _flow_end(ends, e, tid_of, scope)
            flows.append((ps, f'{{"ph":"s","id":{flow_id},"name":{name},"cat":"semaphore",'
                              f'{pwhere},"ts":{ps!r}}}'))
            flows.append((es, f'{{"ph":"f","bp":"e","id":{flow_id},"name":{name},'
                              f'"cat":"semaphore",{ewhere},"ts":{es!r}}}'))
    return flows


def _flow_end(ends: dict, e, tid_of: dict, scope: Scope) -> tuple:
    """(ts, its "pid" and "tid" members) of a flow event bound to event e's slice."""
    end = ends[e.index] = (_mid(e), f'"pid":{scope.pid(e.core)},"tid":{tid_of[e.index]}')
    return end


def _thread_meta(pid: int, tid: int, name: str, sort: int) -> list[dict]:
    return [{"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
             "args": {"name": name}},
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
             "args": {"sort_index": sort}}]


def _attrs_json(attrs: dict):
    return views.jsonable({k: v for k, v in attrs.items() if v is not None})


def _mid(e) -> float:
    """A point inside the event's slice that flow events bind to ("enclosing slice")."""
    return _us(e.start + (e.end - e.start) / 2)


def _counter(name: str, pid: int, ts: float, args: str) -> tuple:
    """(ts, JSON text) of a counter event ("ph": "C"); `args`: its members' JSON."""
    return ts, f'{{"ph":"C","name":{name},"pid":{pid},"ts":{ts!r},"args":{{{args}}}}}'


def dma_in_flight(sp, core: int) -> tuple[list[float], list[int]]:
    """(times, transfers in flight from each time on) of `core`'s DMA transfers (Spans
    `sp`; empty ones left out): every time a transfer starts or ends, in order."""
    on = (sp.core == core) & (sp.end > sp.start) & \
        sp.on_tracks(lambda t: t.startswith(views.DMA_PREFIX))
    edges = np.concatenate([sp.start[on], sp.end[on]])
    times, at = np.unique(edges, return_inverse=True)
    step = np.bincount(at.ravel(), np.repeat([1, -1], on.sum()), times.size)
    return times.tolist(), np.cumsum(step).astype(np.int64).tolist()


def _counters(profile, cores, pid_of) -> list[tuple]:
    """The counter tracks' events as (ts, JSON text)."""
    program, timeline = profile.program, profile.timeline
    sp = spans_of(timeline)
    out: list[tuple] = []
    for core in cores:
        pid = pid_of(core)
        times, rr, ww = views.hbm_rate_steps(program, timeline, core)
        if len(times):
            name = _js("HBM bandwidth (GB/s)")
            out.append(_counter(name, pid, 0.0, '"read":0.0,"write":0.0'))
            for t, r, w in zip(times, rr, ww):  # bytes/ns == GB/s
                out.append(_counter(name, pid, _us(t), f'"read":{round(float(r), 4)!r},'
                                                       f'"write":{round(float(w), 4)!r}'))
        times, level = dma_in_flight(sp, core)
        if times:
            name = _js("DMA transfers in flight")
            out.append(_counter(name, pid, 0.0, '"transfers":0'))
            out += [_counter(name, pid, _us(t), f'"transfers":{n}')
                    for t, n in zip(times, level)]
        for space in ("sbuf", "psum"):
            name = _js(f"{space.upper()} in use (bytes per partition)")
            times, level = views.memory_steps(program, timeline, space, core)
            if times:
                out.append(_counter(name, pid, 0.0, '"bytes":0'))
            out += [_counter(name, pid, _us(t), f'"bytes":{v}') for t, v in zip(times, level)]
    throttle = list(getattr(timeline, "throttle", None) or [])
    if throttle:
        name = _js("TensorE throttle (% of peak)")
        for core in cores:
            pid = pid_of(core)
            for s, t, frac in sorted(throttle):
                out.append(_counter(name, pid, _us(s),
                                    f'"allowed":{round(100.0 * frac, 2)!r}'))
                out.append(_counter(name, pid, _us(t), '"allowed":100.0'))
    return out


def _version() -> str:
    try:
        from .. import __version__
        return __version__
    except Exception:  # pragma: no cover
        return "?"


def write_perfetto(profile, path) -> str:
    """Write `profile` as Chrome Trace Event JSON to `path` (a file, or a directory in
    which `<kernel>.trace.json` is written). Returns the path written."""
    head, body, meta = _trace_parts(profile, Scope())
    return _write_texts(views.output_path(path, f"{views.kernel_name(profile)}.trace.json"),
                        [_dumps(e) for e in head] + [text for _, text in body], meta)


def write_ranks_perfetto(ranks_profile, path) -> str:
    """Write a multi-rank run (trnsim.profile.ranks.RanksProfile) as Chrome Trace Event
    JSON to `path` (a file, or a directory in which `<kernel>.ranks.trace.json` is
    written): a process per rank's NeuronCore and the Fabric process (module
    docstring). Returns the path written."""
    events, meta = ranks_trace_events(ranks_profile)
    return _write_trace(
        views.output_path(path, f"{views.kernel_name(ranks_profile)}.ranks.trace.json"),
        events, meta)


def _write_trace(path: str, events: list[dict], meta: dict) -> str:
    return _write_chunks(path, (_dumps(events[k:k + _CHUNK])[1:-1]
                                for k in range(0, len(events), _CHUNK)), meta)


def _write_texts(path: str, texts: list[str], meta: dict) -> str:
    return _write_chunks(path, (",".join(texts[k:k + _CHUNK])
                                for k in range(0, len(texts), _CHUNK)), meta)


def _write_chunks(path: str, chunks, meta: dict) -> str:
    """The trace file: its metadata, then the events, a chunk of `_CHUNK` (their JSON
    texts joined by commas) to a line."""
    with open(path, "w") as f:
        f.write('{"displayTimeUnit": "ns", "otherData": ')
        json.dump(meta, f)
        f.write(', "traceEvents": [\n')
        f.write(",\n".join(chunks))
        f.write("\n]}\n")
    return path


_CHUNK = 20000


# ---------------------------------------------------------------- multi-rank traces

def ranks_trace_events(rp) -> tuple[list[dict], dict]:
    """The events of every rank's profile (each rank's cores under pids of their own)
    and of the Fabric process, and the trace's metadata."""
    head, body, cc_slices = [], [], {}
    pid_base = flow_base = 0
    for rank, prof in enumerate(rp.ranks):
        cores = views.cores_and_tracks(prof.timeline)
        scope = Scope(pid_base, flow_base, _rank_process_name(rp, rank, len(cores)))
        events, _ = trace_events(prof, scope)
        for ev in events:
            (head if ev["ph"] == "M" else body).append(ev)
            if ev["ph"] == "X" and ev["cat"] == views.CC_TRACK:
                cc_slices[(rank, ev["args"]["index"])] = ev
            elif ev["ph"] in ("s", "f"):
                flow_base = max(flow_base, ev["id"])
        pid_base = scope.pid(max(cores))
    fabric_head, fabric_body = _fabric_events(rp, pid_base + 1, cc_slices, flow_base)
    body = sorted(body + fabric_body, key=lambda ev: ev["ts"])
    return head + fabric_head + body, _ranks_meta(rp)


def _rank_process_name(rp, rank: int, ncores: int):
    chip = rp.placement.chip_of(rank)

    def name(core: int, chip_name: str) -> str:
        which = f" {core}" if ncores > 1 else ""  # a rank of LNC=2 has two cores
        return f"Rank {rank} \u00b7 chip {chip} \u00b7 NeuronCore{which} ({chip_name})"
    return name


def _ranks_meta(rp) -> dict:
    return {"trnsim_version": _version(),
            "chip": views.chip_name(rp.ranks[0].chip) if rp.ranks else None,
            "kernel": views.kernel_name(rp), "world_size": rp.world_size,
            "topology": rp.topology.name, "collectives": len(rp.collectives),
            "instructions": sum(len(p.program.instructions) for p in rp.ranks),
            "total_time_ns": rp.total_time * 1e9, "scheduling_rounds": rp.rounds}


def _fabric_events(rp, pid: int, cc_slices: dict, flow_base: int):
    """The Fabric process: a track per replica group (more where a group's collectives
    overlap), a slice per collective from its transfer's start to its end, and an
    arrow from each member's collective slice (its arrival) to the transfer."""
    head = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
             "args": {"name": f"Fabric ({rp.topology.name})"}},
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
             "args": {"sort_index": pid}}]
    by_group: dict = {}
    for c in rp.collectives:
        by_group.setdefault(c.group, []).append(c)
    body, flow_id, first_tid = [], flow_base, 1
    for group, colls in by_group.items():
        lanes = views.assign_lanes(colls)
        label = views.group_label(group)
        for lane in range(max(lanes) + 1):
            head += _thread_meta(pid, first_tid + lane, label if lane == 0 else
                                 f"{label} #{lane + 1}", first_tid + lane)
        for c, lane in zip(colls, lanes):
            transfer = _fabric_slice(c, pid, first_tid + lane)
            body.append(transfer)
            for rank, index in sorted(c.members.items()):
                flow_id += 1
                body += _arrival_flow(cc_slices.get((rank, index)), transfer, flow_id)
        first_tid += max(lanes) + 1
    return head, body


def _fabric_slice(c, pid: int, tid: int) -> dict:
    ts, te = _us(c.start), _us(c.end)
    members = {f"rank {r}": {"arrival_us": _us(a), "wait_ns": round(c.start - a, 3)}
               for r, a in sorted(c.arrivals.items())}
    return {"ph": "X", "name": c.kind, "cat": "collective", "pid": pid, "tid": tid,
            "ts": ts, "dur": round(te - ts, 3),
            "args": {"kind": c.kind, "algorithm": c.algorithm, "group": list(c.group),
                     "seq": c.seq, "bytes": int(c.nbytes), "bus_bytes": c.bus_bytes,
                     "algbw_GBps": round(c.algo_bandwidth, 3),
                     "busbw_GBps": round(c.bus_bandwidth, 3),
                     "duration_ns": round(c.duration, 3), "members": members}}


def _arrival_flow(rank_slice, fabric_slice, flow_id: int) -> list[dict]:
    """An arrow from when a member reached the collective to the transfer's start (a
    nanosecond inside each slice, so each binds to its enclosing slice)."""
    if rank_slice is None:
        return []
    inside = 0.001
    common = {"id": flow_id, "name": "arrival", "cat": "collective"}
    return [{"ph": "s", **common, "pid": rank_slice["pid"], "tid": rank_slice["tid"],
             "ts": round(rank_slice["ts"] + min(inside, rank_slice["dur"] / 2), 3)},
            {"ph": "f", "bp": "e", **common, "pid": fabric_slice["pid"],
             "tid": fabric_slice["tid"],
             "ts": round(fabric_slice["ts"] + min(inside, fabric_slice["dur"] / 2), 3)}]
