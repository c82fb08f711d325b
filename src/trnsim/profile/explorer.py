"""Export a profile in Neuron Explorer's documented output schema, so that a simulated
profile can be read with the same scripts as a measured one and compared next to it.

    prof.to_explorer("out/kernel@trnsim")                  # <Table>.parquet per table
    prof.to_explorer("out/kernel@trnsim", format="json")   # <Table>.json, no pyarrow

Neuron Explorer (Neuron SDK 2.31+) writes a processed profile as a directory of Parquet
files named after the table they hold (Instruction.parquet, DmaPacket.parquet,
Summary.parquet, ...; "Analyze Profile Output", tools/neuron-explorer/
how-to-analyze-profile-output.rst). Tables, fields, types and units below are those of
the "Profile Parquet Schema Reference" (tools/neuron-explorer/profile-schema-reference.rst,
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-explorer/
profile-schema-reference.html), schema version 7.4.0, Neuron SDK 2.31.0: its field lists
for the tables written here are data in trnsim/profile/explorer_schema.py. Types: int64 / int32 ("integer (int64)"/"(int32)"), float ("number
(float)", written as 32-bit float), double ("number (double)"), string, bool.

The JSON form holds the same tables and fields: one <Table>.json per table, a JSON array
of row objects (pandas.read_json reads it). Explorer's own `--output-format json` is
"legacy" and not documented beyond one example (a "summary" list and an "instruction"
list with timestamp/duration/label/opcode/operands, archive/profiler/
neuron-profile-user-guide.rst), so it is not imitated.

What trnsim fills, and how (per table; `NOT_FILLED` lists every documented field left
null, with the reason; the Warning table of the export repeats it):

- Instruction: one row per compute-engine instruction (DMA transfers are DmaPacket rows,
  so Instruction + DmaPacketAggregated rows = the Program's instructions). `opcode` is
  the NKI ISA call (nc_matmul, tensor_tensor, activation, ...), not the hardware opcode
  (MATMUL, LDWEIGHTS, ACTIVATE, ...): trnsim does not lower to hardware instructions.
  `operands` is trnsim's operand text (`role: tensor dtype@space[shape] bytes`), not the
  hardware operand string. `pc` is the instruction's position on its engine in the
  order the engine ran them. Bytes per memory follow trnsim's summary rule
  (summary.moves_data). `evt_wait_time_ns` is how long the instruction waited for its
  dependencies after its engine was free (ready - previous end on the engine, if > 0).
- DmaPacket / DmaPacketAggregated: one row each per DMA transfer. trnsim models a
  transfer as a whole, split over the core's DMA engines by partition; it does not model
  the individual packets, so each transfer is one "packet" (packet_idx 0,
  packet_aggregation_id = the aggregated row's id = the instruction index) and
  `engine_idx` is set only when one engine moved it. `queue_type`: dge_mode swdge ->
  software_dynamic, hwdge -> hardware_dynamic, else "unknown" (a static transfer, but
  trnsim does not know which compiler queue class -- instruction / input / output /
  data -- it would be). `source` / `dest`: the memory in the documented bracket form,
  "[SB]" for the State Buffer as in the reference's example, "[PSUM]" and "[HBM]" for
  the others (Explorer's other location names are not documented). `read_steps` /
  `write_steps`: the access pattern's strides in elements, outermost first (the
  reference does not say which order it uses).
- SemaphoreUpdate: trnsim has no semaphore numbers; a wait of one track on another
  (what the hardware synchronizes with a semaphore, and what the Perfetto trace draws as
  a flow arrow) is modelled as one semaphore per (core, producing track, waiting track)
  named "<producer track> -> <waiting track>", incremented ("sem_inc", at "complete")
  when the producer's results are visible; `value` counts those increments. DMA queues'
  updates have update_source "AXI" (the reference: "AXI indicates the update came from
  the AXI bus"), engines' their engine name (Tensor, Vector, Scalar, GpSimd, Sync).
- Flow: one edge per wait (producer -> consumer), in/out_table "instruction" or
  "dma_block" (the reference's examples), dependency_type "FLOW_DEPENDENCE" (the
  reference's example) for a read-after-write; the reference names no other types, so
  WAR / WAW / order waits carry trnsim's names.
- ActiveTime, OpcodeSummary: merged busy spans per engine from the timeline (compute
  engines only, as the reference describes them). OpcodeSummary has no core column:
  its active time merges the cores' spans.
- HbmUsage / DmaUsage: a sample at every change of the HBM (DMA) transfer rate, each
  transfer's bytes spread evenly over its duration (as the Perfetto counters);
  total_transfer_bytes is cumulative, so the last sample is the run's total.
- SbufUsage / PsumUsage: a sample at every change of the compiler model's placements
  (trnsim.compiler.allocation): fullness of SBUF partitions 0/32/64/96 and the average
  over all partitions, of the allocator's capacity per partition; fullness of each PSUM
  bank (bytes of the bank's range held, over all partitions) and their average.
- Summary: one row. Every trnsim summary metric with an Explorer name
  (trnsim.profile.summary) plus those derivable from the same data (total_exec_time,
  dma_packet_time, dma_active_cycles, static / software / hardware DGE splits,
  mfu_inst_* = trnsim's mfu_* (an NKI kernel has no HLO: its model FLOPs are its
  non-transpose matmul FLOPs), activate_*, total_row_count, cc_op_* from the
  collectives on a rank's CC track, zero without). trnsim's own metrics
  (roofline_*, adjusted_model_flops, useful_read_percent, ...) have no Explorer column
  and are not exported; they stay in the summary JSON.
- Metadata: chip figures from the chip data; is_simulation true; timestamps start at 0.
- Warning: a "Simulated Data" row saying the profile is a trnsim prediction, and a
  "Missing Data" row per table naming its documented fields left null.
- SchemaFields: one row per (table, field) of the tables trnsim writes.

As the reference says of Explorer, a table with no rows is not written (a kernel with no
PSUM tiles has no PsumUsage file). Explorer's schema says nothing about Parquet
nullability; every column is written nullable. All timestamps are integer nanoseconds
since the kernel started (rounded; durations are end_ts - start_ts).

Not written: the compiler-hierarchy tables (FrameworkInstruction, HloInstruction,
PenguinInstruction, BirInstruction, KernelInstructions, ...: an NKI kernel run by trnsim
has no HLO/Penguin/BIR), NeffHeader, TensorInfo, DmaQueuesInfo, Throttle (trnsim's
throttle is a fraction of peak, not Explorer's k/n levels), collective tables, system-
profile tables.

Engine names: the reference's examples give `engine` in lower case ("tensor"), while the
"Analyze Profile Output" page shows "Tensor" / "Sync" / "Vector" in a groupby on
Instruction.parquet; this export follows the schema reference (lower case).
"""
from __future__ import annotations

import datetime
import json
import os
from collections import defaultdict

from ..machine.gc_pause import gc_paused
from ..machine.record import ENGINES
from . import views
from .explorer_schema import (ENUMS, NOT_FILLED, REQUIRED, SCHEMA, SCHEMA_VERSION,
                              TABLE_DESCRIPTIONS, columns)

ACTIVATE_OPCODES = frozenset({"activation", "activation_reduce"})  # Explorer: ACTIVATE
_ARROW = {"int64": "int64", "int32": "int32", "float": "float32", "double": "float64",
          "string": "string", "bool": "bool_"}
_SPACE = {"sbuf": "SB", "psum": "PSUM", "hbm": "HBM"}
_DEP = {"RAW": "FLOW_DEPENDENCE"}
_ALWAYS = ("Summary", "Metadata", "Warning", "SchemaFields")


class MissingPyarrow(ImportError):
    """Parquet export without pyarrow installed."""



# -- building the tables ----------------------------------------------------------------
def _ns(t) -> int:
    return int(round(float(t)))


def _pct(x, whole) -> float:
    return 100.0 * x / whole if whole > 0 else 0.0


def _loc(loc):
    if loc is None:
        return None
    f = getattr(loc, "file", None)
    return f"{f}:{loc.line}" if f else str(loc)


def _queue_type(ins) -> str:
    mode = ins.attrs.get("dge_mode")
    return {"swdge": "software_dynamic", "hwdge": "hardware_dynamic"}.get(mode, "unknown")


def _mem_bytes(ins) -> dict:
    from .summary import moves_data
    out = defaultdict(int)
    for mode, accs in (("read", ins.reads), ("write", ins.writes)):
        for a in accs:
            if moves_data(ins, a):
                out[f"{a.space}_{mode}_bytes"] += a.bytes
    return out


def instruction_rows(prof) -> list[dict]:
    from .summary import matmul_flops
    program, events, chip = prof.program, prof.timeline.events, prof.chip
    on_track = defaultdict(list)
    for ins, e in zip(program.instructions, events):
        if ins.engine != "dma":
            on_track[(e.core, e.track)].append(e)
    pc, free_at = {}, {}
    for evs in on_track.values():
        evs.sort(key=lambda e: (e.start, e.index))
        last = 0.0
        for n, e in enumerate(evs):
            pc[e.index], free_at[e.index] = n, last
            last = max(last, e.end)
    rows = []
    for ins, e in zip(program.instructions, events):
        if ins.engine == "dma":
            continue
        s, t = _ns(e.start), _ns(e.end)
        mem = _mem_bytes(ins)
        psum_to_sbuf = (sum(a.bytes for a in ins.writes if a.space == "sbuf")
                        if any(a.space == "psum" for a in ins.reads) else 0)
        row = {"start_ts": s, "end_ts": t, "duration_ns": t - s, "engine": ins.engine,
               "pcore_idx": e.core, "opcode": ins.opcode,
               "operands": "; ".join(views.operand_text(a) for a in ins.accesses),
               "id": ins.index, "pc": pc[ins.index],
               "evt_wait_time_ns": _ns(max(0.0, e.ready - free_at[ins.index])),
               "nki_source_location": _loc(ins.location),
               "hbm_read_bytes": mem["hbm_read_bytes"], "hbm_write_bytes": mem["hbm_write_bytes"],
               "sbuf_read_bytes": mem["sbuf_read_bytes"],
               "sbuf_write_bytes": mem["sbuf_write_bytes"],
               "spill_save_bytes": 0, "spill_reload_bytes": 0,  # spills are DMAs
               "psum_read_bytes": mem["psum_read_bytes"],
               "psum_write_bytes": mem["psum_write_bytes"],
               "psum_read_sbuf_write_bytes": psum_to_sbuf}
        f = matmul_flops(ins, chip)
        if f is not None:
            raw, adj, tr = f
            row.update(raw_flops=raw, adjusted_flops=adj, flops_transpose=raw if tr else 0,
                       adjusted_flops_transpose=adj if tr else 0,
                       tensor_instruction_type="TRANSPOSE" if tr else "REGULAR")
        if ins.opcode in ACTIVATE_OPCODES and ins.attrs.get("op") is not None:
            row["scalar_activation_fn"] = str(ins.attrs["op"])
        rows.append(row)
    return rows


def _partitions(a) -> tuple[str, int]:
    if a is None or a.space != "sbuf":
        return "", 0
    n = a.p_hi - a.p_lo
    return (str(a.p_lo) if n == 1 else f"{a.p_lo}-{a.p_hi - 1}"), n


def _side(prefix, a) -> dict:
    parts, n = _partitions(a)
    out = {f"{prefix}_sbuf_partitions": parts, f"{prefix}_num_sbuf_partitions": n}
    if a is not None:
        out[f"{prefix}_shape"] = "[" + ", ".join(str(int(x)) for x in a.shape) + "]"
        out[f"{prefix}_offset"] = f"[{hex(a.lo)}]"
        out[f"{prefix}_steps"] = "[" + ", ".join(str(int(st)) for st, _ in a.pattern) + "]"
    return out


def dma_rows(prof) -> tuple[list[dict], list[dict]]:
    """(DmaPacket rows, DmaPacketAggregated rows): one of each per transfer."""
    packets, blocks = [], []
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            continue
        s, t = _ns(e.start), _ns(e.end)
        rb, wb, tb = (sum(a.bytes for a in ins.reads), sum(a.bytes for a in ins.writes),
                      int(ins.bytes_moved))
        dur = e.end - e.start
        var = next((a.tensor for a in ins.accesses if a.space == "hbm" and a.tensor),
                   next((a.tensor for a in ins.accesses if a.tensor), None))
        queue = e.track.split(":", 1)[1] if e.track.startswith("dma:") else (ins.queue or None)
        common = {"start_ts": s, "end_ts": t, "duration_ns": t - s, "pcore_idx": e.core,
                  "read_bytes": rb, "write_bytes": wb, "transfer_bytes": tb,
                  "throughput": tb / dur * 1e9 if dur > 0 else None,
                  "queue_type": _queue_type(ins), "variable": var, "queue_name": queue}
        packets.append({**common, "id": ins.index, "packet_idx": 0,
                        "packet_aggregation_id": ins.index,
                        "engine_idx": e.dma_engines[0] if len(e.dma_engines) == 1 else None})
        src = next((a for a in ins.reads if a.role == "src"), ins.reads[0] if ins.reads else None)
        dst = ins.writes[0] if ins.writes else None
        where = (lambda accs: "[" + ", ".join(dict.fromkeys(_SPACE.get(a.space, a.space.upper())
                                                            for a in accs)) + "]")
        blocks.append({**common, "id": ins.index, "source": where(ins.reads),
                       "dest": where(ins.writes), **_side("read", src), **_side("write", dst),
                       "is_transpose_mode": bool(ins.attrs.get("transpose"))})
    return packets, blocks


def dependency_rows(prof) -> tuple[list[dict], list[dict]]:
    """(SemaphoreUpdate rows, Flow rows) from the timeline's waits."""
    program, events = prof.program, prof.timeline.events
    flows, signals = [], defaultdict(set)
    for e in events:
        for w in e.waits:
            if not 0 <= w.producer < len(events):
                continue
            p = events[w.producer]
            flows.append({"in_id": p.index, "out_id": e.index,
                          "in_table": _flow_table(program.instructions[p.index]),
                          "out_table": _flow_table(program.instructions[e.index]),
                          "dependency_type": _DEP.get(w.kind, w.kind),
                          "gap_time": _ns(e.start - p.end)})
            if (p.core, p.track) != (e.core, e.track):
                signals[(p.core, p.track, e.core, e.track)].add(p.index)
    sems = []
    for (pc_, pt, wc, wt), producers in signals.items():
        name = f"{views.track_label(pt)} -> {views.track_label(wt)}"
        if pc_ != wc:
            name = f"core {pc_} {views.track_label(pt)} -> core {wc} {views.track_label(wt)}"
        times = sorted(max(events[i].done, events[i].end) for i in producers)
        source = "AXI" if pt.startswith("dma:") else views.track_label(pt)
        for n, t in enumerate(times, 1):
            sems.append({"timestamp": _ns(t), "id": name, "value": n, "update_source": source,
                         "update_operation_type": "sem_inc", "update_trigger_timing": "complete",
                         "pcore_idx": wc})
    sems.sort(key=lambda r: (r["timestamp"], r["id"], r["value"]))
    return sems, flows


def _flow_table(ins) -> str:
    return "dma_block" if ins.engine == "dma" else "instruction"


def active_rows(prof) -> list[dict]:
    from .summary import Busy
    busy = Busy(prof.timeline)
    rows = []
    for (core, group), spans in sorted(busy.spans.items()):
        if group in ENGINES:
            for s, t in spans:
                s, t = _ns(s), _ns(t)
                rows.append({"start_ts": s, "end_ts": t, "engine": group, "pcore_idx": core,
                             "duration_ns": t - s})
    rows.sort(key=lambda r: (r["pcore_idx"], ENGINES.index(r["engine"]), r["start_ts"]))
    return rows


def opcode_rows(prof) -> list[dict]:
    from .summary import merged
    groups = defaultdict(list)
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            groups[(ins.engine, ins.opcode)].append((e.core, e.start, e.end))
    total = float(prof.timeline.total_time)
    rows = []
    for (engine, opcode), evs in groups.items():
        spans = merged((s, t) for _, s, t in evs)
        active = sum(t - s for s, t in spans)
        rows.append({"engine": engine, "opcode": opcode, "instruction_count": len(evs),
                     "instruction_time_ns": _ns(sum(t - s for _, s, t in evs)),
                     "active_time_ns": _ns(active), "active_time_percent": _pct(active, total)})
    rows.sort(key=lambda r: (ENGINES.index(r["engine"]) if r["engine"] in ENGINES else 9,
                             -r["instruction_time_ns"], r["opcode"]))
    return rows


def _rate_samples(items, core) -> list[dict]:
    """Samples of a transfer rate (bytes spread evenly over each (start, end, bytes)) at
    every change: timestamp, current_throughput (bytes/s) and the cumulative bytes."""
    rate, jump = defaultdict(float), defaultdict(float)
    total = 0
    for s, t, b in items:
        if b <= 0:
            continue
        total += b
        if t > s:
            rate[s] += b / (t - s)
            rate[t] -= b / (t - s)
        else:
            jump[s] += b
    times = sorted(set(rate) | set(jump))
    out: dict[int, dict] = {}
    r = cum = 0.0
    last = None
    for n, t in enumerate(times):
        if last is not None:
            cum += r * (t - last)
        cum += jump.get(t, 0.0)
        r += rate.get(t, 0.0)
        if abs(r) < 1e-9:
            r = 0.0
        last = t
        done = total if n == len(times) - 1 else min(total, int(round(cum)))
        out[_ns(t)] = {"timestamp": _ns(t), "current_throughput": max(r, 0.0) * 1e9,
                       "total_transfer_bytes": done, "pcore_idx": core}
    return list(out.values())


def usage_rows(prof) -> tuple[list[dict], list[dict]]:
    """(HbmUsage rows, DmaUsage rows)."""
    hbm, dma = defaultdict(list), defaultdict(list)
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            continue
        m = _mem_bytes(ins)
        hbm[e.core].append((e.start, e.end, m["hbm_read_bytes"] + m["hbm_write_bytes"]))
        dma[e.core].append((e.start, e.end, int(ins.bytes_moved)))
    return ([r for c in sorted(hbm) for r in _rate_samples(hbm[c], c)],
            [r for c in sorted(dma) for r in _rate_samples(dma[c], c)])


def memory_rows(prof) -> tuple[list[dict], list[dict]]:
    """(SbufUsage rows, PsumUsage rows) from the compiler model's placements."""
    import numpy as np
    plan, events, core_spec = prof.program.memory, prof.timeline.events, prof.chip.core
    if plan is None or not events:
        return [], []
    parts = core_spec.partitions
    nbanks, bank = core_spec.psum_banks, core_spec.psum_bank_bytes
    deltas = defaultdict(list)  # (space, core) -> [(time, sign, placement, alloc)]
    for p in plan.placements:
        a = plan.allocations[p.alloc]
        last = len(events) - 1 if p.last is None else p.last
        deltas[(a.space, a.core)] += [(events[p.first].start, 1, p, a),
                                      (events[last].end, -1, p, a)]
    sbuf, psum = [], []
    for (space, core), ds in sorted(deltas.items()):
        ds.sort(key=lambda d: (d[0], d[1]))
        if space == "sbuf":
            cap = plan.capacity.get(("sbuf", core)) or core_spec.sbuf_usable_bytes_per_partition
            level = np.zeros(parts)
        else:
            level = np.zeros(nbanks)  # bytes held in each bank, summed over partitions
        samples: dict[int, dict] = {}
        for k, (t, sign, p, a) in enumerate(ds):
            lo, hi = a.partition, min(parts, a.partition + a.partitions)
            if space == "sbuf":
                level[lo:hi] += sign * p.size
            else:
                for b in range(nbanks):
                    o = min(p.start + p.size, (b + 1) * bank) - max(p.start, b * bank)
                    if o > 0:
                        level[b] += sign * o * (hi - lo)
            if k + 1 < len(ds) and ds[k + 1][0] == t:
                continue  # sample once every change at this time is applied
            if space == "sbuf":
                u = 100.0 * level / cap
                samples[_ns(t)] = {"timestamp": _ns(t), "avg_util_percent": float(u.mean()),
                                   **{f"partition_{q}_util_percent": float(u[q])
                                      for q in (0, 32, 64, 96) if q < parts},
                                   "pcore_idx": core}
            elif space == "psum":
                u = 100.0 * level / (bank * parts)
                samples[_ns(t)] = {"timestamp": _ns(t), "avg_util_percent": float(u.mean()),
                                   **{f"bank_{b}_util_percent": float(u[b])
                                      for b in range(min(8, nbanks))},
                                   "pcore_idx": core}
        (sbuf if space == "sbuf" else psum).extend(samples.values())
    return sbuf, psum


def _merged_mean(spans_by_core, ncores) -> float:
    from .summary import length, merged
    return sum(length(merged(v)) for v in spans_by_core.values()) / max(1, ncores)


def summary_row(prof) -> dict:
    from .summary import core_count
    s = dict(prof.summary)
    row = {c: s[c] for c in columns("Summary") if c in s}
    program, events = prof.program, prof.timeline.events
    ncores = core_count(program)
    t_ns = float(prof.timeline.total_time)
    row["total_exec_time"] = ((max(e.end for e in events) - min(e.start for e in events))
                              * 1e-9 if events else 0.0)
    row["dma_packet_time"] = s.get("dma_transfer_time")
    clock = prof.chip.profiler_base_clock_hz
    if clock and "dma_active_time" in s:
        row["dma_active_cycles"] = int(round(s["dma_active_time"] * clock))
    row["mfu_inst_estimated_percent"] = s.get("mfu_estimated_percent")
    row["mfu_inst_max_achievable_estimated_percent"] = s.get(
        "mfu_max_achievable_estimated_percent")
    # static / dynamic (DGE) DMA
    kinds = {"static": (), "software_dynamic": (), "hardware_dynamic": ()}
    count, size = dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0)
    spans = {k: defaultdict(list) for k in kinds}
    dyn = defaultdict(list)
    act_n, act_t = 0, 0.0
    for ins, e in zip(program.instructions, events):
        if ins.opcode in ACTIVATE_OPCODES and ins.engine != "dma":
            act_n += 1
            act_t += e.end - e.start
        if ins.engine != "dma":
            continue
        q = _queue_type(ins)
        k = q if q in kinds else "static"
        count[k] += 1
        size[k] += int(ins.bytes_moved)
        spans[k][e.core].append((e.start, e.end))
        if k != "static":
            dyn[e.core].append((e.start, e.end))
    n_all, b_all = sum(count.values()), sum(size.values())
    for k in kinds:
        active = _merged_mean(spans[k], ncores)
        row[f"{k}_dma_packet_count"] = count[k]
        row[f"{k}_dma_size"] = size[k]
        row[f"{k}_dma_packet_percent"] = _pct(count[k], n_all)
        row[f"{k}_dma_size_percent"] = _pct(size[k], b_all)
        row[f"{k}_dma_active_time"] = active * 1e-9
        row[f"{k}_dma_active_time_percent"] = _pct(active, t_ns)
    row["dynamic_dma_packet_percent"] = _pct(n_all - count["static"], n_all)
    row["dynamic_dma_size_percent"] = _pct(b_all - size["static"], b_all)
    row["dynamic_dma_active_time_percent"] = _pct(_merged_mean(dyn, ncores), t_ns)
    row["activate_instruction_count"] = act_n
    row["activate_instruction_time"] = act_t * 1e-9
    return {k: v for k, v in row.items() if k in set(columns("Summary"))}


def metadata_row(prof) -> dict:
    chip, core = prof.chip, prof.chip.core
    lnc = max(1, int(getattr(prof.program, "lnc", 1) or 1))
    total = _ns(prof.timeline.total_time)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    ghz = (lambda hz: float(hz) / 1e9 if hz else None)
    return {"profile_schema_version": SCHEMA_VERSION, "num_physical_cores": lnc,
            "vnc_enabled": lnc > 1, "first_hw_timestamp": 0, "last_hw_timestamp": total,
            "first_ts": str(epoch),
            "last_ts": str(epoch + datetime.timedelta(microseconds=total / 1000)),
            "dma_ddr_bandwidth": float(core.dma.aggregate_bandwidth),
            "num_dma_engines_per_neuroncore": int(core.dma.engines),
            "hbm_ddr_bandwidth": float(chip.hbm_stack_bandwidth),
            "tensor_engine_num_rows": int(core.tensor.rows),
            "tensor_engine_num_cols": int(core.tensor.cols),
            "tensor_engine_clock_freq": ghz(core.tensor.clock_hz),
            "vector_engine_clock_freq": ghz(core.vector.clock_hz),
            "vector_engine_num_channels": int(core.vector.lanes),
            "scalar_engine_clock_freq": ghz(core.scalar.clock_hz),
            "scalar_engine_num_channels": int(core.scalar.lanes),
            "gpsimd_engine_clock_freq": ghz(core.gpsimd.clock_hz),
            "gpsimd_engine_num_channels": int(core.gpsimd.lanes),
            "neuroncore_clock_freq": ghz(chip.profiler_base_clock_hz),
            "ticks_per_nanosec": 1, "profile_name": views.kernel_name(prof),
            "is_simulation": True}


def warning_rows(prof, written) -> list[dict]:
    from .perfetto import _version
    chip = prof.chip
    lnc = max(1, int(getattr(prof.program, "lnc", 1) or 1))
    rows = [{"category": "Simulated Data",
             "message": f"Predicted by trnsim {_version()} on a simulated "
                        f"{views.chip_name(chip)} ({getattr(chip, 'core_name', '')}, "
                        f"LNC={lnc}), not measured; kernel {views.kernel_name(prof)}."}]
    for table in written:
        nulls = NOT_FILLED.get(table)
        if nulls:
            why = defaultdict(list)
            for field_name, reason in nulls.items():
                why[reason].append(field_name)
            rows.append({"category": "Missing Data",
                         "message": f"{table}: trnsim leaves these documented fields null: "
                                    + "; ".join(f"{', '.join(v)} ({k})" for k, v in why.items())})
    return rows


def schema_rows() -> list[dict]:
    kind = {"int64": ("integer", "int64"), "int32": ("integer", "int32"),
            "float": ("number", "float"), "double": ("number", "double"),
            "string": ("string", None), "bool": ("boolean", None)}
    rows = []
    for table, fields in SCHEMA.items():
        for name, typ, unit, meaning in fields:
            enum = ENUMS.get((table, name))
            rows.append({"table_name": table, "table_description": TABLE_DESCRIPTIONS[table],
                         "field_name": name, "field_description": meaning,
                         "field_type": kind[typ][0], "field_format": kind[typ][1],
                         "field_required": name in REQUIRED[table],
                         "field_unit": unit or None,
                         "field_enum_values": ",".join(enum) if enum else None})
    return rows


def build_tables(prof) -> dict[str, list[dict]]:
    """Every table trnsim writes, as rows: dicts of the documented fields trnsim has a
    value for (the writers complete them: every other field is null, `_columns` and
    `_json_lines`). Tables without rows are left out, as Explorer does."""
    packets, blocks = dma_rows(prof)
    sems, flows = dependency_rows(prof)
    hbm, dma = usage_rows(prof)
    sbuf, psum = memory_rows(prof)
    tables = {"Summary": [summary_row(prof)], "Metadata": [metadata_row(prof)],
              "Instruction": instruction_rows(prof), "DmaPacket": packets,
              "DmaPacketAggregated": blocks, "SemaphoreUpdate": sems, "Flow": flows,
              "ActiveTime": active_rows(prof), "OpcodeSummary": opcode_rows(prof),
              "HbmUsage": hbm, "DmaUsage": dma, "SbufUsage": sbuf, "PsumUsage": psum}
    tables = {k: v for k, v in tables.items() if v}
    tables["Warning"] = warning_rows(prof, [*tables, "SchemaFields"])
    tables["SchemaFields"] = schema_rows()
    tables["Summary"][0]["total_row_count"] = sum(len(v) for v in tables.values())
    return tables


def _columns(table: str, rows: list[dict]) -> dict[str, list]:
    """Every documented field of the table as a column, values coerced to the
    documented types (None, or no value: null)."""
    return {name: [None if (v := r.get(name)) is None else coerce(v) for r in rows]
            for name, coerce in _COERCIONS[table]}


def _json_lines(table: str, rows: list[dict]):
    """Each row as the JSON object json.dumps makes of it completed: every documented
    field in the documented order, coerced, null where it has no value. Only the fields
    a row has are encoded (most of a table's are null in every row)."""
    coercions = _COERCIONS[table]
    at = {name: k for k, (name, _) in enumerate(coercions)}
    keys = [json.dumps(name) + ": " for name, _ in coercions]
    nulls = [key + "null" for key in keys]
    for row in rows:
        parts = nulls.copy()
        for name, v in row.items():
            k = at.get(name)
            if k is not None and v is not None:
                parts[k] = keys[k] + _json_value(coercions[k][1](v))
        yield "{" + ", ".join(parts) + "}"


_JSON_BOOL = {True: "true", False: "false"}


def _json_value(v) -> str:
    """json.dumps of a coerced value (see _COERCE)."""
    t = type(v)
    if t is str:
        return views.json_str(v)
    if t is int:
        return int.__repr__(v)
    if t is float:
        return float.__repr__(v)
    if t is bool:
        return _JSON_BOOL[v]
    return json.dumps(v)



def _as_int(v):
    return v if type(v) is int else int(round(float(v)))


def _as_float(v):
    v = float(v)
    return None if v != v or v in (_INF, -_INF) else v


def _as_str(v):
    return v if type(v) is str else str(v)


_INF = float("inf")
_COERCE = {"int64": _as_int, "int32": _as_int, "float": _as_float, "double": _as_float,
           "bool": bool}
_COERCIONS = {table: [(name, _COERCE.get(typ, _as_str)) for name, typ, _, _ in fields]
              for table, fields in SCHEMA.items()}


# -- writing ------------------------------------------------------------------------------
def write_explorer(prof, path, format: str = "parquet") -> str:
    """Write `prof` into directory `path` as Explorer's tables: <Table>.parquet (format
    "parquet", needs pyarrow) or <Table>.json (format "json"). Returns the directory."""
    if format not in ("parquet", "json"):
        raise ValueError(f"format={format!r}: 'parquet' or 'json'")
    arrow = _pyarrow() if format == "parquet" else None
    path = os.fspath(path)
    with gc_paused():  # a dict per row, no cyclic garbage (see Profile.summary)
        tables = build_tables(prof)
        os.makedirs(path, exist_ok=True)
        for table in SCHEMA:  # tables of an earlier export that this one does not write
            for ext in (".parquet", ".json"):
                old = os.path.join(path, table + ext)
                if os.path.exists(old):
                    os.remove(old)
        for table, rows in tables.items():
            target = os.path.join(path, f"{table}.{format}")
            if arrow is None:  # one row per line
                with open(target, "w") as f:
                    f.write("[\n" + ",\n".join(_json_lines(table, rows)) + "\n]\n")
                continue
            pa, pq = arrow
            schema = pa.schema([(name, getattr(pa, _ARROW[typ])())
                                for name, typ, _, _ in SCHEMA[table]])
            pq.write_table(pa.table(_columns(table, rows), schema=schema), target)
    return path


def _pyarrow():
    """(pyarrow, pyarrow.parquet), or MissingPyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingPyarrow("Parquet export needs pyarrow: pip install 'trnsim[explorer]' "
                             "(or export with format='json')") from None
    return pa, pq
