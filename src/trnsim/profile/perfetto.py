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

from . import views
from ..machine.gc_pause import gc_paused

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
    with gc_paused():  # one dict per event, no cyclic garbage (see Profile.summary)
        return _trace_events(profile, scope)


def _trace_events(profile, scope: Scope) -> tuple[list[dict], dict]:
    program, timeline = profile.program, profile.timeline
    chip = getattr(profile, "chip", None) or getattr(timeline, "chip", None)
    chip_name = views.chip_name(chip)
    instructions = program.instructions
    events = timeline.events
    if len(events) != len(instructions):
        raise ValueError(f"timeline has {len(events)} events for {len(instructions)} "
                         "instructions; they must align (events[i].index == i)")

    out: list[dict] = []
    # --- tracks: (core, track) -> lanes -> tid
    by_key: dict[tuple[int, str], list] = {}
    for e in events:
        by_key.setdefault((e.core, e.track), []).append(e)
    tid_of: dict[int, int] = {}  # event index -> tid
    names: dict[tuple[int, int], tuple[str, int]] = {}  # (pid, tid) -> (name, sort)
    cores = views.cores_and_tracks(timeline)
    for core, tracks in cores.items():
        pid = scope.pid(core)
        out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
                    "args": {"name": scope.process_name(core, chip_name)}})
        out.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
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
        out += _thread_meta(pid, tid, name, sort)

    # --- one complete event per instruction
    slices: list[dict] = []
    loc_info: dict = {}  # location -> (file:line, source text)
    # the JSON of objects instructions and events share (expanded loops' attrs, cost
    # terms per cost signature), made once per object: id -> (object, its JSON form)
    shared: dict = {}
    for ins, e in zip(instructions, events):
        ts, te = _us(e.start), _us(e.end)
        key = views.location_key(ins.location)
        where = loc_info.get(key)
        if where is None:
            where = loc_info[key] = (views.short_location(ins.location),
                                     views.source_text(ins.location))
        args = {"index": ins.index,
                "operands": [views.operand_text(a) for a in ins.accesses],
                "bytes": int(ins.bytes_moved),
                "nki_source_location": where[0]}
        if where[1]:
            args["source"] = where[1]
        if ins.queue:
            args["queue"] = ins.queue
        if e.dma_engines:
            args["dma_engines"] = list(e.dma_engines)
        if e.cost:
            args["cost"] = _shared_json(shared, e.cost, views.jsonable)
        if e.ready and e.ready < e.start:
            args["queued_ns"] = round(e.start - e.ready, 3)
        if e.moved:  # the compiler's scheduler issued it this many places early (late: <0)
            args["moved_up"] = e.moved
        if ins.attrs.get("engines"):
            args["engine"] = f"{ins.engine}, chosen by the compiler from " \
                             f"{', '.join(ins.attrs['engines'])}"
        if e.waits:
            args["waits"] = [f"#{w.producer} {instructions[w.producer].opcode} "
                             f"({w.kind}{' ' + w.space if w.space else ''})"
                             for w in e.waits if 0 <= w.producer < len(instructions)]
        if ins.attrs:
            attrs = _shared_json(shared, ins.attrs, _attrs_json)
            if attrs:
                args["attrs"] = attrs
        slices.append({"ph": "X", "name": ins.opcode, "cat": views.track_group(e.track),
                       "pid": scope.pid(e.core), "tid": tid_of[e.index], "ts": ts,
                       "dur": round(te - ts, 3), "args": args})

    # --- flow arrows for waits across tracks (semaphores)
    flows: list[dict] = []
    flow_id = scope.flow_base
    for e in events:
        for w in e.waits:
            if not 0 <= w.producer < len(events):
                continue
            p = events[w.producer]
            if p.core == e.core and tid_of[p.index] == tid_of[e.index]:
                continue  # same track: program order, no semaphore
            flow_id += 1
            name = f"{w.kind} {w.space}".strip()
            flows.append({"ph": "s", "id": flow_id, "name": name, "cat": "semaphore",
                          "pid": scope.pid(p.core), "tid": tid_of[p.index],
                          "ts": _mid(p)})
            flows.append({"ph": "f", "bp": "e", "id": flow_id, "name": name,
                          "cat": "semaphore", "pid": scope.pid(e.core), "tid": tid_of[e.index],
                          "ts": _mid(e)})

    counters = _counters(profile, cores, scope.pid)
    body = sorted(slices + flows + counters, key=lambda ev: ev["ts"])
    total = float(getattr(timeline, "total_time", 0.0) or 0.0)
    meta = {"trnsim_version": _version(), "chip": chip_name,
            "kernel": views.kernel_name(profile), "instructions": len(instructions),
            "total_time_ns": total, "cores": sorted(cores)}
    return out + body, meta


def _thread_meta(pid: int, tid: int, name: str, sort: int) -> list[dict]:
    return [{"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
             "args": {"name": name}},
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
             "args": {"sort_index": sort}}]


def _shared_json(memo: dict, obj, to_json):
    """to_json(obj), computed once per object (the trace only reads what it returns)."""
    hit = memo.get(id(obj))
    if hit is None or hit[0] is not obj:
        hit = memo[id(obj)] = (obj, to_json(obj))
    return hit[1]


def _attrs_json(attrs: dict):
    return views.jsonable({k: v for k, v in attrs.items() if v is not None})


def _mid(e) -> float:
    """A point inside the event's slice that flow events bind to ("enclosing slice")."""
    return _us(e.start + (e.end - e.start) / 2)


def _counters(profile, cores, pid_of) -> list[dict]:
    program, timeline = profile.program, profile.timeline
    out: list[dict] = []
    for core in cores:
        pid = pid_of(core)
        times, rr, ww = views.hbm_rate_steps(program, timeline, core)
        if len(times):
            out.append({"ph": "C", "name": "HBM bandwidth (GB/s)", "pid": pid, "ts": 0.0,
                        "args": {"read": 0.0, "write": 0.0}})
            for t, r, w in zip(times, rr, ww):  # bytes/ns == GB/s
                out.append({"ph": "C", "name": "HBM bandwidth (GB/s)", "pid": pid,
                            "ts": _us(t), "args": {"read": round(float(r), 4),
                                                   "write": round(float(w), 4)}})
        # DMA transfers in flight
        deltas: dict[float, int] = {}
        for e in timeline.events:
            if e.core == core and e.track.startswith(views.DMA_PREFIX) and e.end > e.start:
                deltas[e.start] = deltas.get(e.start, 0) + 1
                deltas[e.end] = deltas.get(e.end, 0) - 1
        if deltas:
            n = 0
            out.append({"ph": "C", "name": "DMA transfers in flight", "pid": pid, "ts": 0.0,
                        "args": {"transfers": 0}})
            for t in sorted(deltas):
                n += deltas[t]
                out.append({"ph": "C", "name": "DMA transfers in flight", "pid": pid,
                            "ts": _us(t), "args": {"transfers": n}})
        for space in ("sbuf", "psum"):
            name = f"{space.upper()} in use (bytes per partition)"
            times, level = views.memory_steps(program, timeline, space, core)
            if times:
                out.append({"ph": "C", "name": name, "pid": pid, "ts": 0.0,
                            "args": {"bytes": 0}})
            out += [{"ph": "C", "name": name, "pid": pid, "ts": _us(t), "args": {"bytes": v}}
                    for t, v in zip(times, level)]
    throttle = list(getattr(timeline, "throttle", None) or [])
    if throttle:
        for core in cores:
            pid = pid_of(core)
            for s, t, frac in sorted(throttle):
                out.append({"ph": "C", "name": "TensorE throttle (% of peak)", "pid": pid,
                            "ts": _us(s), "args": {"allowed": round(100.0 * frac, 2)}})
                out.append({"ph": "C", "name": "TensorE throttle (% of peak)", "pid": pid,
                            "ts": _us(t), "args": {"allowed": 100.0}})
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
    events, meta = trace_events(profile)
    return _write_trace(
        views.output_path(path, f"{views.kernel_name(profile)}.trace.json"), events, meta)


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
    with open(path, "w") as f:
        f.write('{"displayTimeUnit": "ns", "otherData": ')
        json.dump(meta, f)
        f.write(', "traceEvents": [\n')
        for k in range(0, len(events), 20000):  # one C-encoder call per chunk
            if k:
                f.write(",\n")
            f.write(json.dumps(events[k:k + 20000], separators=(",", ":"))[1:-1])
        f.write("\n]}\n")
    return path


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
