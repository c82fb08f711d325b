"""Derived views of a profile that the Perfetto trace, the HTML report and the CLI share:
track names and order, lanes for overlapping events, HBM traffic over time, time per
kernel source line, and readable formatting of summary metrics.

Everything here reads only `profile.program` (the instruction record), `profile.timeline`
and `profile.chip` (plus `.summary` / `.insights` where present), so it also works on
hand-built objects with those attributes.
"""
from __future__ import annotations

import functools
import json
import linecache
import math
import os

import numpy as np

from ..timing.timeline import spans_of

ENGINE_ORDER = ("tensor", "vector", "scalar", "gpsimd", "sync")
ENGINE_LABELS = {"tensor": "Tensor", "vector": "Vector", "scalar": "Scalar",
                 "gpsimd": "GpSimd", "sync": "Sync"}
CC_TRACK = "cc"  # a rank's collectives (trnsim.timing.ranks), drawn after the engines
CC_LABEL = "Collectives"
DMA_PREFIX = "dma:"


# ---------------------------------------------------------------- tracks

def track_sort_key(track: str):
    """Engines first (Tensor, Vector, Scalar, GpSimd, Sync), then the collectives, then
    DMA queues by name."""
    if track in ENGINE_ORDER:
        return (0, ENGINE_ORDER.index(track), "")
    if track == CC_TRACK:
        return (0, len(ENGINE_ORDER), "")
    if track.startswith(DMA_PREFIX):
        return (1, 0, track[len(DMA_PREFIX):])
    return (2, 0, track)


def track_label(track: str) -> str:
    if track in ENGINE_LABELS:
        return ENGINE_LABELS[track]
    if track == CC_TRACK:
        return CC_LABEL
    if track.startswith(DMA_PREFIX):
        return "DMA " + track[len(DMA_PREFIX):]
    return track


def track_group(track: str) -> str:
    """'tensor' | 'vector' | ... | 'cc' | 'dma' | the track itself."""
    return "dma" if track.startswith(DMA_PREFIX) else track


def group_label(group) -> str:
    """"ranks 0-3,8-11": a replica group's ranks, runs of consecutive ranks shortened."""
    runs: list[list[int]] = []
    for r in sorted(group):
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return "ranks " + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def assign_lanes(events) -> list[int]:
    """Lane per event (same order as `events`, all on one track) such that events in a
    lane never overlap: engines run one instruction at a time (one lane), a DMA queue
    may have several transfers in flight (one lane per concurrent transfer)."""
    order = sorted(range(len(events)), key=lambda i: (events[i].start, events[i].end))
    lane_end: list[float] = []
    lanes = [0] * len(events)
    for i in order:
        e = events[i]
        for k, end in enumerate(lane_end):
            if e.start >= end:
                lane_end[k] = max(end, e.end)
                lanes[i] = k
                break
        else:
            lane_end.append(e.end)
            lanes[i] = len(lane_end) - 1
    return lanes


def cores_and_tracks(timeline) -> dict[int, list[str]]:
    """core -> its tracks in display order: every engine always, plus DMA queues used."""
    out: dict[int, set] = {}
    for core, track in spans_of(timeline).by_core_and_track():
        out.setdefault(core, set()).add(track)
    if not out:
        out[0] = set()
    return {c: sorted(set(ENGINE_ORDER) | t, key=track_sort_key) for c, t in sorted(out.items())}


# ---------------------------------------------------------------- HBM traffic

def hbm_bytes(ins) -> tuple[int, int]:
    """(bytes read from HBM, bytes written to HBM) by one instruction."""
    r = w = 0
    for a in ins.reads:
        if a.space == "hbm":
            r += a.bytes
    for a in ins.writes:
        if a.space == "hbm":
            w += a.bytes
    return r, w


def memory_steps(program, timeline, space: str, core: int = 0):
    """Bytes per partition of `space` on `core` held over time, as the compiler model
    placed them (trnsim.compiler.allocation): each placement holds its bytes from the
    start of its first instruction to the end of its last. Returns (times ns, bytes from
    each time to the next), or two empty lists without a memory plan."""
    plan = getattr(program, "memory", None)
    if plan is None or not timeline.events:
        return [], []
    events, deltas = timeline.events, {}
    for p in plan.placements:
        alloc = plan.allocations[p.alloc]
        if (alloc.space, alloc.core) != (space, core):
            continue
        last = len(events) - 1 if p.last is None else p.last
        for t, d in ((events[p.first].start, p.size), (events[last].end, -p.size)):
            deltas[t] = deltas.get(t, 0) + d
    times, level, out = sorted(deltas), 0, []
    for t in times:
        level += deltas[t]
        out.append(level)
    return times, out


def hbm_rate_steps(program, timeline, core=None):
    """HBM bandwidth as a step function: sorted change times (ns) and the read and write
    rates (bytes/ns) from each change time to the next. Each instruction's HBM bytes are
    spread evenly over its duration. Returns (times, read_rate, write_rate) arrays."""
    deltas: dict[float, list[float]] = {}
    for ins, e in zip(program.instructions, timeline.events):
        if core is not None and e.core != core:
            continue
        r, w = hbm_bytes(ins)
        if not (r or w):
            continue
        dur = e.end - e.start
        if dur <= 0:
            continue
        for t, sign in ((e.start, 1.0), (e.end, -1.0)):
            d = deltas.setdefault(t, [0.0, 0.0])
            d[0] += sign * r / dur
            d[1] += sign * w / dur
    if not deltas:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    times = np.array(sorted(deltas))
    dr = np.array([deltas[t][0] for t in times])
    dw = np.array([deltas[t][1] for t in times])
    rr, ww = np.cumsum(dr), np.cumsum(dw)
    rr[np.abs(rr) < 1e-9] = 0.0
    ww[np.abs(ww) < 1e-9] = 0.0
    return times, np.maximum(rr, 0.0), np.maximum(ww, 0.0)


def hbm_bins(program, timeline, bins: int, total: float | None = None, core=None):
    """HBM bytes read and written in each of `bins` equal slices of [0, total] ns.
    Exact integration of the step function (zero-duration transfers land in the bin of
    their start). Returns (edges, read_bytes, write_bytes)."""
    total = float(total if total is not None else timeline.total_time) or 1.0
    edges = np.linspace(0.0, total, bins + 1)
    times, rr, ww = hbm_rate_steps(program, timeline, core)
    read = np.zeros(bins)
    write = np.zeros(bins)
    if len(times):
        seg = np.diff(times)
        cum_r = np.concatenate([[0.0], np.cumsum(rr[:-1] * seg)])
        cum_w = np.concatenate([[0.0], np.cumsum(ww[:-1] * seg)])
        read = np.diff(np.interp(edges, times, cum_r))
        write = np.diff(np.interp(edges, times, cum_w))
    for ins, e in zip(program.instructions, timeline.events):  # instantaneous ones
        if e.end - e.start <= 0 and (core is None or e.core == core):
            r, w = hbm_bytes(ins)
            if r or w:
                k = min(bins - 1, max(0, int(e.start / total * bins)))
                read[k] += r
                write[k] += w
    return edges, np.maximum(read, 0.0), np.maximum(write, 0.0)


# ---------------------------------------------------------------- source lines

def location_key(loc):
    if loc is None:
        return None
    return (getattr(loc, "file", str(loc)), int(getattr(loc, "line", 0) or 0))


def short_location(loc) -> str:
    if loc is None:
        return "(no kernel line)"
    f = getattr(loc, "file", None)
    if f is None:
        return str(loc)
    return f"{os.path.basename(f)}:{loc.line}"


def source_text(loc) -> str:
    if loc is None or getattr(loc, "file", None) is None:
        return ""
    text = getattr(loc, "text", None)
    if isinstance(text, str):
        return text
    return linecache.getline(loc.file, loc.line).strip()


def time_by_line(program, timeline) -> list[dict]:
    """Per kernel source line: summed event durations (ns) per engine group ('tensor',
    ..., 'sync', 'dma'), instruction count and opcodes; sorted by total time."""
    rows: dict = {}
    for ins, e in zip(program.instructions, timeline.events):
        key = location_key(ins.location)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {"location": ins.location, "file": key[0] if key else None,
                               "line": key[1] if key else None,
                               "short": short_location(ins.location),
                               "text": source_text(ins.location),
                               "function": getattr(ins.location, "function", "") or "",
                               "time": {}, "count": 0, "opcodes": {}, "total": 0.0}
        g = track_group(e.track)
        d = max(0.0, e.end - e.start)
        row["time"][g] = row["time"].get(g, 0.0) + d
        row["total"] += d
        row["count"] += 1
        row["opcodes"][ins.opcode] = row["opcodes"].get(ins.opcode, 0) + 1
    return sorted(rows.values(), key=lambda r: (-r["total"], r["short"]))


# ---------------------------------------------------------------- operands

def operand_text(a) -> str:
    """`role: dtype@space[shape] bytes` (+ partitions for on-chip operands), like the
    profiler's `fp32@addr[strides][shape]` operand strings."""
    return _operand_text(a.role, a.tensor, a.dtype, a.space, a.p_lo, a.p_hi,
                         tuple(a.shape), a.bytes, getattr(a, "indirect", False))


@functools.lru_cache(maxsize=4096)  # (a loop's operands differ in their addresses only)
def _operand_text(role, tensor, dtype, space, p_lo, p_hi, shape, nbytes, indirect) -> str:
    where = space if space == "hbm" else f"{space} p{p_lo}:{p_hi}"
    dims = ",".join(str(int(s)) for s in shape)
    text = f"{role}: {tensor + ' ' if tensor else ''}{dtype}@{where}[{dims}] {nbytes} B"
    return text + " (indirect)" if indirect else text


_PLAIN_JSON = (str, int, bool, type(None))  # jsonable's identity (exact types)
# a str as JSON, as json.dumps writes it (ensure_ascii): for writers that build JSON text
json_str = json.encoder.encode_basestring_ascii


def jsonable(v):
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return jsonable(float(v))
    if isinstance(v, (list, tuple)):
        return [x if type(x) in _PLAIN_JSON else jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k if type(k) is str else str(k): x if type(x) in _PLAIN_JSON else jsonable(x)
                for k, x in v.items()}
    return str(getattr(v, "value", v))


# ---------------------------------------------------------------- naming and formatting

def output_path(path, name_in_dir: str) -> str:
    """Where an output goes: `path`, or `name_in_dir` inside `path` if it is a
    directory; its parent directory is made."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, name_in_dir)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def kernel_name(profile) -> str:
    for attr in ("kernel_name", "name"):
        v = getattr(profile, attr, None)
        if isinstance(v, str) and v:
            return v
    k = getattr(profile, "kernel", None)
    for obj in (k, getattr(k, "fn", None), getattr(k, "func", None)):
        n = getattr(obj, "__name__", None)
        if isinstance(n, str) and n:
            return n
    # the function most instructions were recorded in
    counts: dict[str, int] = {}
    for ins in getattr(profile.program, "instructions", []):
        f = getattr(ins.location, "function", "") if ins.location else ""
        if f:
            counts[f] = counts.get(f, 0) + 1
    return max(counts, key=counts.get) if counts else "kernel"


def chip_name(chip) -> str:
    return getattr(chip, "name", None) or str(chip)


def fmt_time_ns(ns: float) -> str:
    ns = float(ns)
    a = abs(ns)
    if a >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if a >= 1e6:
        return f"{ns / 1e6:.3f} ms"
    if a >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def fmt_bytes(b: float) -> str:
    b = float(b)
    for unit, div in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(b) >= div:
            return f"{b / div:.2f} {unit}"
    return f"{b:.0f} B"


def fmt_si(x: float, unit: str = "") -> str:
    x = float(x)
    for p, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g} {p}{unit}"
    return f"{x:.4g} {unit}".rstrip()


def metric_unit(name: str) -> str:
    """The unit a Neuron Explorer summary metric is given in."""
    if name.endswith("_percent"):
        return "%"
    if name.endswith("_bytes") or name.endswith("_size") or name == "total_bandwidth_available":
        return "B"
    if name.endswith("_flops"):
        return "FLOP"
    if name.endswith("_count") or name.endswith("_cycles"):
        return ""
    if name.endswith("_time") or name == "total_time":
        return "s"
    if name in ("mm_arithmetic_intensity", "peak_flops_bandwidth_ratio",
                "roofline_ridge_point", "roofline_arithmetic_intensity"):
        return "FLOP/B"
    if name.endswith("_bandwidth"):
        return "B/s"
    return ""


def fmt_metric(name: str, value) -> str:
    """A readable value for a summary metric (units from its name)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return str(value)
    unit = metric_unit(name)
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "B":
        return fmt_bytes(v) if abs(v) >= 1024 else f"{v:.0f} B"
    if unit == "FLOP":
        return fmt_si(v, "FLOP")
    if unit == "s":
        return fmt_time_ns(v * 1e9)
    if unit == "FLOP/B":
        return f"{v:.2f} FLOP/B"
    if unit == "B/s":
        return fmt_si(v, "B/s")
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.4g}"


# ---------------------------------------------------------------- insights

def _parse_location(loc) -> dict:
    """{'where': short file:line, 'text': source line} from a SourceLocation, a
    "file:line" string, a (location, note) pair or a dict."""
    if hasattr(loc, "file") and hasattr(loc, "line"):
        return {"where": short_location(loc), "text": source_text(loc)}
    if isinstance(loc, (tuple, list)) and loc:
        d = _parse_location(loc[0])
        if len(loc) > 1 and loc[1]:
            if isinstance(loc[0], str) and isinstance(loc[1], str) and not d["text"]:
                d["text"] = loc[1]
            else:
                d["note"] = str(loc[1])
        return d
    if isinstance(loc, dict):
        return {"where": str(loc.get("where") or loc.get("location") or ""),
                "text": str(loc.get("text") or ""), "note": str(loc.get("note") or "")}
    text = str(loc)
    path, _, line = text.rpartition(":")
    if path and line.isdigit():
        return {"where": f"{os.path.basename(path)}:{line}",
                "text": linecache.getline(path, int(line)).strip()}
    return {"where": text, "text": ""}


def severity_of(crit) -> str:
    """'high' | 'medium' | 'low' from a criticality given as a word or as the share of
    the run at stake (0-1)."""
    if isinstance(crit, (int, float)) and not isinstance(crit, bool):
        return "high" if crit >= 0.3 else "medium" if crit >= 0.1 else "low"
    return str(getattr(crit, "value", getattr(crit, "name", crit)) or "info").lower()


def insight_fields(ins) -> dict:
    """A dict view of an insight object (or dict), tolerant of attribute names."""
    def get(*names, default=None):
        for n in names:
            v = ins.get(n) if isinstance(ins, dict) else getattr(ins, n, None)
            if v is not None:
                return v
        return default
    lines = get("locations", "lines", "source_lines", "where", default=()) or ()
    if isinstance(lines, (str, bytes)) or not hasattr(lines, "__iter__"):
        lines = [lines]
    crit = get("criticality", default=None)
    severity = get("severity", default=None) or severity_of(crit)
    share = float(crit) if isinstance(crit, (int, float)) and not isinstance(crit, bool) \
        else None
    return {"rule": str(get("rule", "name", default="insight")),
            "title": str(get("title", "rule", "name", default="insight")),
            "criticality": str(severity), "share": share,
            "message": str(get("message", "description", default="")),
            "advice": str(get("recommendation", "advice", "suggestion", default="")),
            "lines": [_parse_location(x) for x in lines]}


_CRIT_ORDER = {"critical": 0, "high": 1, "medium": 2, "warning": 2, "low": 3, "info": 4}


def sorted_insights(insights) -> list[dict]:
    """Most critical first (by the share at stake where given, else by severity)."""
    rows = [insight_fields(i) for i in (insights or [])]
    return sorted(rows, key=lambda r: (_CRIT_ORDER.get(r["criticality"].lower(), 5),
                                       -(r["share"] or 0.0)))
