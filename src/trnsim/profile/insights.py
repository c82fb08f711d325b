"""Performance insights: Neuron Explorer's rules (overview-summary-page.rst, the timeline
warnings) plus Tensor Engine starvation, applied to a Program and its Timeline.

Each rule that fires gives an Insight with the kernel lines responsible and what to
change. `criticality` estimates the share of the kernel's time at stake (0-1), so rules
compare: insights are listed most critical first, and a profile shows the top four.

Rules (thresholds from the profiler docs unless marked as trnsim's choice):
- low_model_flops: model FLOPs < 50% of the FLOPs the Tensor Engine could do while
  active (BF16 peak x its active time).
- transpose_flops: transpose FLOPs > 10% of hardware FLOPs (BF16-equivalent).
- small_dma: DMA transfers under 4 KiB: the average is under 4 KiB, or at least half
  the transfers are (at least 2 of them).
- inefficient_dma: DMA transfers of at least 4 KiB whose contiguous runs are shorter
  than the chip's overhead-bound size (256 B per element, "severely overhead-bound",
  nki-dma-bandwidth-guide.rst), keeping the DMA queues busy >= 10% of the run (trnsim's
  choice): an element-wise gather (a transposing or interleaving load) that should
  load contiguous rows and rearrange on chip. Its criticality is at least the Tensor
  Engine stall those DMAs caused, so it ranks above engine_starvation for them.
- tensor_reload: one HBM byte range of a tensor read by more than 2 DMAs.
- throttling: Tensor Engine peak lost to throttling while active >= 1% of peak over the
  run (trnsim's choice for "detected").
- spill: compiler spill reloads (trnsim.compiler.allocation) > 25% of HBM reads.
- engine_starvation: the Tensor Engine idle between its instructions while waiting for
  DMA/Vector/Scalar/GpSimd >= 10% of the run (trnsim's choice; the wait before its
  first instruction, filling the pipeline, is not counted).
- engine_imbalance: work the kernel pinned to one of Vector/Scalar/GpSimd that another,
  idler one could run (isa/engines.py), where an even split would save >= 10% of the
  run (trnsim's choice); unpinned work is balanced by the compiler model.

A multi-rank run (trnsim.profile.ranks.RanksProfile) has a rule of its own
(ranks_insights):
- collective_outliers: Neuron Explorer's "collective outliers" ("an operation far from
  its group median"): a collective whose transfer took more than 2x the median of its
  kind's (trnsim's choice of "far").
"""
from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from ..timing.timeline import spans_of, union_length
from .summary import (SMALL_DMA_BYTES, HbmTraffic, core_count, matmul_flops, merged,
                      overlap, spill_dmas, throttle_spans, ThrottleIndex)

LOW_MODEL_FLOPS_PERCENT = 50.0
TRANSPOSE_FLOPS_PERCENT = 10.0
RELOAD_COUNT = 2
THROTTLE_PERCENT = 1.0
SPILL_PERCENT = 25.0
STARVATION_PERCENT = 10.0
INEFFICIENT_DMA_PERCENT = 10.0
IMBALANCE_PERCENT = 10.0  # share of the run a balanced split of pinned work could save
OUTLIER_FACTOR = 2.0  # a collective over this x its kind's median duration is an outlier
SHOWN = 4  # the profiler shows 2-4 insights
MAX_LINES = 5


@dataclass
class Insight:
    """One performance finding: what was measured, where, and what to change."""
    rule: str
    title: str
    criticality: float  # estimated share of the run's time at stake, 0-1
    message: str
    recommendation: str
    locations: list[str] = field(default_factory=list)  # "file:line", most responsible first
    value: float = 0.0  # the measured quantity the rule compares
    threshold: float = 0.0

    @property
    def severity(self) -> str:
        return "high" if self.criticality >= 0.3 else (
            "medium" if self.criticality >= 0.1 else "low")

    @property
    def source_lines(self) -> list[tuple[str, str]]:
        """(file:line, the source text) of each location."""
        import linecache
        out = []
        for loc in self.locations:
            path, _, line = loc.rpartition(":")
            text = linecache.getline(path, int(line)).strip() if line.isdigit() else ""
            out.append((loc, text))
        return out

    def to_dict(self) -> dict:
        return {"rule": self.rule, "title": self.title, "severity": self.severity,
                "criticality": self.criticality, "message": self.message,
                "recommendation": self.recommendation, "locations": list(self.locations),
                "value": self.value, "threshold": self.threshold}

    def __str__(self) -> str:
        where = ", ".join(_short(loc) for loc in self.locations) or "-"
        return (f"[{self.severity}] {self.title}: {self.message}\n"
                f"    lines: {where}\n    change: {self.recommendation}")


def _short(loc: str) -> str:
    path, _, line = loc.rpartition(":")
    return f"{os.path.basename(path)}:{line}" if path else loc


def _loc(ins) -> str:
    return str(ins.location) if ins.location is not None else f"<instruction {ins.index}>"


def _ranked(weighted) -> list[str]:
    """Locations by total weight, largest first, from (instruction, weight) pairs."""
    total: dict[str, float] = defaultdict(float)
    for ins, w in weighted:
        total[_loc(ins)] += w
    ranked = sorted(total.items(), key=lambda kv: -kv[1])
    return [loc for loc, w in ranked if w > 0][:MAX_LINES]


def _time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def _bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


class _Context:
    def __init__(self, program, timeline, summary, hbm=None):
        self.program, self.timeline, self.s = program, timeline, summary
        self.chip = timeline.chip if timeline.chip is not None else program.chip
        self.ncores = core_count(program)
        self.t = float(timeline.total_time)
        # the events' times by instruction index (arrays: a timeline kept as columns
        # makes no Events for them)
        self.spans = sp = spans_of(timeline)
        self.index = sp.index.tolist()
        self.at = dict(zip(self.index, range(len(self.index))))  # index -> position
        self.start, self.end, self.ready = sp.start.tolist(), sp.end.tolist(), \
            sp.ready.tolist()
        self.producer = sp.producer.tolist()  # of the first (latest-satisfied) wait, or -1
        self.ins = {i.index: i for i in program.instructions}
        self.tensor = [i for i in program.instructions
                       if i.engine == "tensor" and i.index in self.at]
        self._hbm = hbm

    @property
    def hbm(self) -> HbmTraffic:
        if self._hbm is None:
            self._hbm = HbmTraffic(self.program)
        return self._hbm

    def span(self, index: int) -> tuple[float, float]:
        """(start, end) of instruction `index`'s event."""
        p = self.at[index]
        return self.start[p], self.end[p]

    def duration(self, index: int) -> float:
        p = self.at[index]
        return self.end[p] - self.start[p]

    def frac(self, key: str) -> float:
        return self.s.get(key, 0.0) / 100.0


# -- rules -------------------------------------------------------------------------
def low_model_flops(c: _Context):
    if not c.tensor or c.s["tensor_engine_active_time"] <= 0:
        return None
    value = c.s["model_flops_active_percent"]
    if value >= LOW_MODEL_FLOPS_PERCENT:
        return None
    peak_per_ns = c.chip.core.tensor.peak_bf16_flops * 1e-9
    waste = []
    for ins in c.tensor:
        f = matmul_flops(ins, c.chip)
        useful = 0.0 if f is None or f[2] else f[1] / peak_per_ns
        waste.append((ins, max(0.0, c.duration(ins.index) - useful)))
    waste.sort(key=lambda iw: -iw[1])
    worst = waste[0][0]
    return Insight(
        "low_model_flops", "Low model FLOPs vs active FLOPs",
        (1 - value / 100) * c.frac("tensor_engine_active_time_percent"),
        f"model FLOPs are {value:.1f}% of what the Tensor Engine could compute while "
        f"active ({_time(c.s['tensor_engine_active_time'] * 1e9)} busy); the most time is "
        f"lost at {_short(_loc(worst))} ({worst.opcode} {_shape(worst)})",
        _matmul_advice(c, [i for i, _ in waste[:8]]), _ranked(waste), value,
        LOW_MODEL_FLOPS_PERCENT)


def _shape(ins) -> str:
    a = ins.attrs
    dt = a.get("stationary_dtype", "")
    md = a.get("moving_dtype", dt)
    dts = dt if md == dt else f"{dt}x{md}"
    return f"K={a.get('contraction')} M={a.get('M')} N={a.get('N')} {dts}"


def _matmul_advice(c: _Context, worst) -> str:
    te = c.chip.core.tensor
    tips = []
    a = worst[0].attrs
    if any(i.attrs.get("is_transpose") for i in worst):
        tips.append("transposes are not model FLOPs: avoid them through layout")
    if int(a.get("contraction", te.rows)) < te.rows and a.get("perf_mode") == "none":
        tips.append(f"contract over all {te.rows} partitions (K={a.get('contraction')} uses "
                    f"part of the array's rows)")
    if int(a.get("M", te.cols)) < te.cols:
        tips.append(f"use stationary tiles with {te.cols} columns (M={a.get('M')})")
    if int(a.get("N", te.min_ii_cycles)) < te.min_ii_cycles:
        tips.append(f"a moving free size N={a.get('N')} is floored at {te.min_ii_cycles} "
                    f"cycles per matmul: use N up to {te.moving_fmax_16bit}, or put the "
                    "short operand on the moving side")
    if "float32" in (a.get("stationary_dtype"), a.get("moving_dtype")):
        tips.append("fp32 operands run at a quarter of the bf16 rate: cast them to bf16")
    if not tips:
        tips.append("issue matmuls back to back with full 128x128 stationary and 512-wide "
                    "moving tiles, and keep both operands resident so the engine never "
                    "runs partly idle")
    return "; ".join(tips)


def transpose_flops(c: _Context):
    hw = c.s["adjusted_hardware_flops"]
    if hw <= 0:
        return None
    value = 100.0 * c.s["adjusted_transpose_flops"] / hw
    if value <= TRANSPOSE_FLOPS_PERCENT:
        return None
    items = []
    for ins in c.tensor:
        f = matmul_flops(ins, c.chip)
        if f is not None and f[2]:
            items.append((ins, f[1]))
    return Insight(
        "transpose_flops", "Transpose FLOPs",
        value / 100 * c.frac("tensor_engine_active_time_percent"),
        f"transposes are {value:.1f}% of the Tensor Engine's hardware FLOPs "
        f"({len(items)} transpose instruction{'s' if len(items) != 1 else ''}), and each "
        "needs a PSUM-to-SBUF copy",
        "choose layouts that need no transpose: load the operand already transposed "
        "(a transposed DMA view, or dma_transpose for 2-byte types), or swap the "
        "stationary and moving operands so the matmul reads the natural layout",
        _ranked(items), value, TRANSPOSE_FLOPS_PERCENT)


def small_dma(c: _Context):
    dmas = [i for i in c.program.instructions if i.engine == "dma"]
    small = [i for i in dmas if i.bytes_moved < SMALL_DMA_BYTES]
    avg = c.s["dma_transfer_average_bytes"]
    if len(small) < 2 or not (avg < SMALL_DMA_BYTES or 2 * len(small) >= len(dmas)):
        return None
    spans = merged(c.span(i.index) for i in small if i.index in c.at)
    busy = sum(e - s for s, e in spans)
    per_part = sorted(min((a.contiguous_bytes for a in i.accesses), default=0)
                      for i in small)
    return Insight(
        "small_dma", "Small DMA transfers",
        min(1.0, busy / c.t) if c.t > 0 else 0.0,
        f"{len(small)} of {len(dmas)} DMA transfers move less than "
        f"{_bytes(SMALL_DMA_BYTES)} (average transfer {_bytes(avg)}, median contiguous run "
        f"{_bytes(per_part[len(per_part) // 2])}); each pays the fixed DMA cost, and "
        f"they keep the queues busy {_time(busy)}",
        "merge them into fewer, larger transfers: at least 4 KiB per transfer, spread "
        "over 128 partitions with 2-4 KiB contiguous per partition (load whole tiles "
        "rather than rows or single elements)",
        _ranked((i, 1.0) for i in small), avg, SMALL_DMA_BYTES)


def dma_run_bytes(ins) -> int:
    """The shortest contiguous run (bytes) of a DMA's data operands: what each
    descriptor element moves."""
    runs = [a.contiguous_bytes for a in ins.accesses
            if a.contiguous_bytes > 0 and a.role != "indirect_offset"]
    return min(runs) if runs else 0


def _overhead_bound_bytes(chip) -> int:
    x = getattr(chip.core.dma, "extras", {}) or {}
    return int(x.get("overhead_bound_bytes_per_partition", 256) or 256)


def _tensor_stalls(c: _Context):
    """(waiting instruction index, producer instruction index, idle ns) for each time the
    Tensor Engine sat idle between two of its instructions, charged to the wait
    satisfied last (the timeline lists waits latest-satisfied first; the wait before the
    first instruction, filling the pipeline, is not counted)."""
    start, end, ready, producer = c.start, c.end, c.ready, c.producer
    for core in range(c.ncores):
        evs = sorted((c.at[i.index] for i in c.tensor if i.core == core),
                     key=start.__getitem__)
        for prev, p in zip(evs, evs[1:]):
            idle = min(start[p], ready[p]) - end[prev]
            if idle <= 0 or producer[p] < 0:
                continue
            if producer[p] in c.at:
                yield c.index[p], producer[p], idle


def _stall_by_producer(c: _Context) -> dict:
    """{producer instruction index: ns the Tensor Engine sat idle waiting for it}."""
    out: dict = defaultdict(float)
    for _, last, idle in _tensor_stalls(c):
        out[last] += idle
    return out


def inefficient_dma(c: _Context):
    limit = _overhead_bound_bytes(c.chip)
    frag = [(i, dma_run_bytes(i)) for i in c.program.instructions
            if i.engine == "dma" and i.bytes_moved >= SMALL_DMA_BYTES and i.index in c.at]
    frag = [(i, r) for i, r in frag if 0 < r < limit]
    if not frag or c.t <= 0:
        return None
    busy = sum(e - s for s, e in merged(c.span(i.index) for i, _ in frag))
    value = 100.0 * busy / c.t
    if value < INEFFICIENT_DMA_PERCENT:
        return None
    stall = _stall_by_producer(c)
    stalled = sum(stall.get(i.index, 0.0) for i, _ in frag) / c.ncores
    runs = sorted(r for _, r in frag)
    worst = min(frag, key=lambda ir: ir[1])[0]
    nbytes = sum(i.bytes_moved for i, _ in frag)
    fix = ("load whole contiguous rows (at least 2 KiB per partition) and rearrange on "
           "chip: for an interleave (every k-th element) load the block and read it "
           "through a strided SBUF view (e.g. tensor_copy of tile[:, 0::k]); for a "
           "transpose, load untransposed and use nc_transpose, or dma_transpose for "
           "2-byte types; or store the data in HBM in the layout the kernel reads")
    return Insight(
        "inefficient_dma", "Inefficient DMA transfers (small contiguous runs)",
        max(busy, stalled) / c.t,
        f"{len(frag)} DMA transfer{'s' if len(frag) != 1 else ''} ({_bytes(nbytes)}) move "
        f"data in contiguous runs of {runs[0]}"
        + (f"-{runs[-1]}" if runs[-1] != runs[0] else "")
        + f" B (under {limit} B is overhead-bound: every run is one descriptor element); "
        f"they keep the DMA queues busy {_time(busy)} ({value:.0f}% of the run)"
        + (f" and the Tensor Engine waits {_time(stalled)} for them" if stalled > 0 else "")
        + f"; worst at {_short(_loc(worst))} ({worst.opcode})",
        fix, _ranked((i, c.duration(i.index)) for i, _ in frag), value,
        INEFFICIENT_DMA_PERCENT)


def tensor_reload(c: _Context):
    flagged = c.hbm.reloaded(RELOAD_COUNT)
    if not flagged:
        return None
    read = c.s["hbm_read_bytes"] or 1
    extra = sum(v[1] for v in flagged.values())
    hbm = (c.s["hbm_read_bytes"] + c.s["hbm_write_bytes"]) or 1
    worst = sorted(flagged.items(), key=lambda kv: -kv[1][1])
    parts = [f"'{name}' up to {count} times ({_bytes(x)} re-read)"
             for name, (count, x, _) in worst[:3]]
    items = [(ins, a.bytes) for _, (_, _, group) in worst for ins, a in group]
    return Insight(
        "tensor_reload", "Tensor reloaded more than 2 times",
        extra / hbm * c.frac("dma_active_time_percent"),
        f"the same HBM data is read again and again: {'; '.join(parts)}; "
        f"{100 * extra / read:.0f}% of all HBM reads are repeats",
        "keep reused tiles resident in SBUF: hoist the load out of the loop that re-reads "
        "it, or block the loops so every loaded tile serves several output tiles",
        _ranked(items), float(max(v[0] for v in flagged.values())), RELOAD_COUNT)


def throttling(c: _Context):
    value = c.s.get("active_throttled_flops_percent", 0.0)
    if value < THROTTLE_PERCENT:
        return None
    spans = throttle_spans(c.timeline)
    index = ThrottleIndex(spans)
    items = []
    for ins in c.tensor:
        items.append((ins, index.lost(*c.span(ins.index))))
    low = min(f for _, _, f in spans)
    return Insight(
        "throttling", "Active FLOPS throttling",
        value / 100,
        f"the Tensor Engine was throttled (down to {100 * low:.0f}% of peak) while it had "
        f"work: {value:.1f}% of the run's peak FLOPs lost",
        "keep the Tensor Engine at or above 50% utilization: it starts near 50% and "
        "ramps over ~3 us, and throttles again after any ~3 us window below 50%, so "
        "overlap loads with compute and issue matmuls back to back instead of in bursts",
        _ranked(items), value, THROTTLE_PERCENT)


def spill(c: _Context):
    read = c.s["hbm_read_bytes"]
    if read <= 0:
        return None
    value = 100.0 * c.s["spill_reload_bytes"] / read
    if value <= SPILL_PERCENT:
        return None
    dmas = spill_dmas(c.program, "save") + spill_dmas(c.program, "reload")
    moved: dict[str, int] = defaultdict(int)
    for ins in dmas:
        moved[ins.attrs["tensor_site"]] += ins.bytes_moved
    worst = sorted(moved, key=lambda k: -moved[k])[:3]
    hbm = (read + c.s["hbm_write_bytes"]) or 1
    return Insight(
        "spill", "Spill reload bytes",
        (c.s["spill_save_bytes"] + c.s["spill_reload_bytes"]) / hbm
        * c.frac("dma_active_time_percent"),
        f"{value:.0f}% of HBM reads ({_bytes(c.s['spill_reload_bytes'])}) reload on-chip "
        f"blocks the allocator had to evict ({_bytes(c.s['spill_save_bytes'])} saved "
        f"first): most from {'; '.join(worst)}",
        "the blocks live at the same time do not fit: consume each block in the loop "
        "that produces it instead of keeping them all for a later loop, tile smaller, or "
        "use a narrower dtype; a block loaded from HBM and not changed is re-read "
        "instead of saved, so keep inputs read-only",
        _ranked([(i, i.bytes_moved) for i in dmas]), value, SPILL_PERCENT)


def engine_starvation(c: _Context):
    stall = defaultdict(float)  # producer engine -> ns
    items = []  # (producer instruction, ns)
    waiting = []  # (waiting instruction, ns)
    for e, last, idle in _tensor_stalls(c):
        track = c.spans.names[c.spans.track[c.at[last]]]
        eng = "dma" if track.startswith("dma") else track
        if eng == "tensor":
            continue
        stall[eng] += idle
        items.append((c.ins[last], idle))
        waiting.append((c.ins[e], idle))
    total = sum(stall.values()) / c.ncores
    value = 100.0 * total / c.t if c.t > 0 else 0.0
    if value < STARVATION_PERCENT:
        return None
    names = {"dma": "DMA", "vector": "VectorE", "scalar": "ScalarE", "gpsimd": "GpSimd",
             "sync": "Sync"}
    parts = ", ".join(f"{names.get(k, k)} {_time(v / c.ncores)}"
                      for k, v in sorted(stall.items(), key=lambda kv: -kv[1]))
    top = max(stall, key=stall.get)
    waits_at = _ranked(waiting)
    if top == "dma":
        advice = ("prefetch: issue the loads of the next tiles before the matmuls of the "
                  "current ones (allocate the load tiles inside the loop so iterations "
                  "overlap, i.e. multi-buffer them) and load larger blocks per DMA")
        limit = _overhead_bound_bytes(c.chip)
        runs = [dma_run_bytes(i) for i, _ in items if i.engine == "dma"]
        if any(0 < r < limit for r in runs):
            advice = (f"first fix the loads it waits for: they move {min(r for r in runs if r)}"
                      " B contiguous runs (see 'Inefficient DMA transfers'); then " + advice)
    else:
        advice = (f"the matmuls wait for {names.get(top, top)} (typically PSUM evacuation "
                  "or operand preparation): give the PSUM accumulator more buffers (up "
                  "to 8 banks) so one tile's evacuation overlaps the next matmuls, split "
                  "the work between VectorE and ScalarE, or issue it earlier")
    return Insight(
        "engine_starvation", "Tensor Engine starved",
        value / 100,
        f"the Tensor Engine sat idle {_time(total)} ({value:.0f}% of the run) between "
        f"instructions waiting for {parts}; waiting matmuls at "
        f"{', '.join(_short(x) for x in waits_at[:3])}",
        advice, _ranked(items), value, STARVATION_PERCENT)


def engine_imbalance(c: _Context):
    """A compute engine busy with work the kernel pinned to it while another engine that
    could run part of that work (isa/engines.py) idles. Unpinned work is balanced by
    the compiler model already; pinned work stays where the kernel put it."""
    from ..isa.engines import TABLE
    gen = c.chip.generation
    best = None
    sp = c.spans
    for core in range(c.ncores):
        on = {x: (sp.track == sp.code(x)) & (sp.core == core)
              for x in ("vector", "scalar", "gpsimd")}
        busy = {x: union_length(sp.start[m], sp.end[m]) for x, m in on.items()}
        for x in busy:
            movable = defaultdict(list)  # other engine -> [(instruction, ns)]
            m = on[x]
            for i, d in zip(sp.index[m].tolist(), (sp.end[m] - sp.start[m]).tolist()):
                ins = c.ins[i]
                if ins.attrs.get("engines") or ins.opcode not in TABLE:
                    continue
                for y in TABLE[ins.opcode](ins, gen) - {x}:
                    movable[y].append((ins, d))
            for y, items in movable.items():
                shed = min(sum(d for _, d in items), (busy[x] - busy[y]) / 2)
                value = 100.0 * shed / c.t if c.t > 0 else 0.0
                if value >= IMBALANCE_PERCENT and (best is None or value > best[0]):
                    best = (value, x, y, busy, items)
    if best is None:
        return None
    value, x, y, busy, items = best
    names = {"vector": "VectorE", "scalar": "ScalarE", "gpsimd": "GpSimd"}
    return Insight(
        "engine_imbalance", "Compute engines unbalanced",
        value / 100,
        f"{names[x]} was busy {100 * busy[x] / c.t:.0f}% of the run and {names[y]} "
        f"{100 * busy[y] / c.t:.0f}%; {len(items)} instructions pinned to {names[x]} "
        f"could run on {names[y]}: splitting them evenly would save up to {value:.0f}%",
        f"drop the engine= argument on these lines so the compiler balances them, or pin "
        f"part of them to {names[y]}",
        _ranked(items), value, IMBALANCE_PERCENT)


RULES = (low_model_flops, transpose_flops, small_dma, inefficient_dma, tensor_reload,
         throttling, spill, engine_starvation, engine_imbalance)


def find_insights(program, timeline, summary, hbm: HbmTraffic | None = None) -> list[Insight]:
    """Every rule that fires, most critical first (`summary` from summarize; `hbm`: the
    program's HbmTraffic, when the caller has it already)."""
    c = _Context(program, timeline, summary, hbm)
    found = [i for i in (rule(c) for rule in RULES) if i is not None]
    return sorted(found, key=lambda i: -i.criticality)


# -- multi-rank runs -----------------------------------------------------------------
def kind_medians(collectives) -> dict[str, float]:
    """The median transfer duration (ns) of each kind of collective."""
    durations: dict[str, list] = defaultdict(list)
    for c in collectives:
        durations[c.kind].append(c.duration)
    return {k: statistics.median(v) for k, v in durations.items()}


def collective_outliers(collectives, factor: float = OUTLIER_FACTOR) -> list:
    """The collectives whose transfer took more than `factor` x their kind's median."""
    medians = kind_medians(collectives)
    return [c for c in collectives if 0 < factor * medians[c.kind] < c.duration]


def _collective_location(rp, c) -> str:
    rank, index = min(c.members.items())
    return _loc(rp.ranks[rank].program.instructions[index])


def collective_outlier_insight(rp):
    outliers = collective_outliers(rp.collectives)
    if not outliers:
        return None
    medians = kind_medians(rp.collectives)
    worst = max(outliers, key=lambda c: c.duration / medians[c.kind])
    excess = sum(c.duration - medians[c.kind] for c in outliers)
    total = rp.total_time * 1e9
    locations = list(dict.fromkeys(_collective_location(rp, c) for c in outliers))
    return Insight(
        "collective_outliers", "Collective outliers", min(1.0, excess / total) if total else 0.0,
        f"{len(outliers)} of {len(rp.collectives)} collectives took more than "
        f"{OUTLIER_FACTOR:g}x the median of their kind; the worst, {worst.kind} of "
        f"{_bytes(worst.nbytes)} on {len(worst.group)} ranks, took {_time(worst.duration)} "
        f"against a median of {_time(medians[worst.kind])}.",
        "Compare it with its peers: a larger message than the others (split it, or overlap "
        "it with compute), other transfers sharing its links at the time (move it away "
        "from concurrent collectives), or a slower algorithm for its size and group.",
        locations[:MAX_LINES], worst.duration / medians[worst.kind], OUTLIER_FACTOR)


RANKS_RULES = (collective_outlier_insight,)


def ranks_insights(rp) -> list[Insight]:
    """The multi-rank rules that fire for RanksProfile `rp`, most critical first."""
    found = [i for i in (rule(rp) for rule in RANKS_RULES) if i is not None]
    return sorted(found, key=lambda i: -i.criticality)
