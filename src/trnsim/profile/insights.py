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
from functools import cached_property
from operator import attrgetter

import numpy as np

from ..machine.record import ENGINES, held_reads, held_writes, identities
from ..timing.timeline import merged_spans, running_sum, span_length, spans_of, union_length
from .summary import (SMALL_DMA_BYTES, HbmTraffic, attrs_flops, core_count, spill_dmas,
                      throttle_spans, ThrottleIndex)

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


def _ranked_at(c: "_Context", at, weights) -> list[str]:
    """_ranked of the instructions at positions `at` (an int array) with `weights`: the
    same sums (np.bincount adds each location's weights in their order, as the loop)."""
    codes = c.location_code[at]
    totals = np.bincount(codes, np.asarray(weights, np.float64), len(c.location_names))
    met = np.sort(np.unique(codes, return_index=True)[1])
    ranked = sorted(((c.location_names[k], totals[k]) for k in codes[met].tolist()),
                    key=lambda kv: -kv[1])
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
    """What the rules read: the run's events as arrays (a timeline kept as columns
    makes no Events for them) and its instructions' operands (profile/operands.py),
    instructions by position in the program."""

    def __init__(self, program, timeline, summary, hbm=None):
        self.program, self.timeline, self.s = program, timeline, summary
        self.chip = timeline.chip if timeline.chip is not None else program.chip
        self.ncores = core_count(program)
        self.t = float(timeline.total_time)
        self.spans = sp = spans_of(timeline)
        self.start, self.end, self.ready = sp.start, sp.end, sp.ready
        self.producer = sp.producer  # of the first (latest-satisfied) wait, or -1
        self._hbm = hbm
        instrs = program.instructions
        indices = np.fromiter(map(_INDEX, instrs), np.int64, len(instrs))
        # index -> event, and -> position: the last of each index, as dicts built over
        # them keep (-1: none)
        self._low = min(int(indices.min(initial=0)), int(sp.index.min(initial=0)), 0)
        size = max(int(indices.max(initial=-1)), int(sp.index.max(initial=-1))) + 1
        self._events = _last_of(sp.index, self._low, size)
        self._positions = _last_of(indices, self._low, size)
        self.indices = indices
        self.event = self.event_of(indices)  # by position
        self.tensor_at = np.flatnonzero(self.ops.engine_is("tensor") & (self.event >= 0))

    def event_of(self, index) -> np.ndarray:
        """The event of each instruction index (an int array), -1 where none."""
        return _lookup(self._events, index - self._low)

    def position_of(self, index) -> np.ndarray:
        return _lookup(self._positions, index - self._low)

    @property
    def hbm(self) -> HbmTraffic:
        if self._hbm is None:
            self._hbm = HbmTraffic(self.program)
        return self._hbm

    @cached_property
    def ops(self):
        return self.hbm.ops

    @cached_property
    def dma_runs(self) -> np.ndarray:
        """The shortest contiguous run of each DMA's data operands (bytes), by position:
        what each descriptor element moves (0 for other instructions)."""
        return self.ops.dma_runs()

    @cached_property
    def ins(self) -> dict:
        """{index: instruction}."""
        return {i.index: i for i in self.program.instructions}

    @cached_property
    def tensor(self) -> list:
        """The Tensor Engine instructions that ran, in program order."""
        return list(map(self.program.instructions.__getitem__, self.tensor_at.tolist()))

    @cached_property
    def location_code(self) -> np.ndarray:
        """Each instruction's number among `location_names` (_loc of each, told apart
        by location object first: loop copies share theirs)."""
        instrs = self.program.instructions
        locations = list(map(_LOCATION, instrs))
        first, inverse = np.unique(identities(locations), return_index=True,
                                   return_inverse=True)[1:]
        code: dict = {}
        per = [code.setdefault(str(locations[i]), len(code))
               if locations[i] is not None else -1 for i in first.tolist()]
        out = np.array(per, np.int64)[inverse.reshape(-1)]
        for i in np.flatnonzero(out < 0).tolist():
            out[i] = code.setdefault(_loc(instrs[i]), len(code))
        self.location_names = list(code)
        return out

    def span(self, index: int) -> tuple[float, float]:
        """(start, end) of instruction `index`'s event."""
        p = int(self.event_of(np.array([index]))[0])
        return float(self.start[p]), float(self.end[p])

    def frac(self, key: str) -> float:
        return self.s.get(key, 0.0) / 100.0


_INDEX, _LOCATION, _OPCODE = attrgetter("index"), attrgetter("location"), attrgetter("opcode")


def _last_of(keys: np.ndarray, low: int, size: int) -> np.ndarray:
    """By key - low (0..size - low): the position of the last of `keys` equal to it."""
    out = np.full(size - low, -1, np.int64)
    last, first = np.unique(keys[::-1] - low, return_index=True)
    out[last] = len(keys) - 1 - first
    return out


def _lookup(table: np.ndarray, at) -> np.ndarray:
    inside = (at >= 0) & (at < len(table))
    out = np.full(len(at), -1, np.int64)
    out[inside] = table[at[inside]]
    return out


# -- rules -------------------------------------------------------------------------
def _tensor_flops(c: _Context):
    """(BF16-equivalent FLOPs, is_transpose, is a matmul) of each instruction of
    c.tensor_at (matmul_flops, once per attrs object)."""
    flops = c.ops.per_attrs(lambda a: attrs_flops(a, c.chip))
    code = c.ops.attrs_code[c.tensor_at]
    adjusted = np.array([f[1] if f else 0.0 for f in flops], np.float64)[code]
    transpose = np.array([bool(f and f[2]) for f in flops], bool)[code]
    return adjusted, transpose, np.array([f is not None for f in flops], bool)[code]


def low_model_flops(c: _Context):
    if not len(c.tensor_at) or c.s["tensor_engine_active_time"] <= 0:
        return None
    value = c.s["model_flops_active_percent"]
    if value >= LOW_MODEL_FLOPS_PERCENT:
        return None
    peak_per_ns = c.chip.core.tensor.peak_bf16_flops * 1e-9
    adjusted, transpose, matmul = _tensor_flops(c)
    useful = np.where(matmul & ~transpose, adjusted / peak_per_ns, 0.0)
    ev = c.event[c.tensor_at]
    lost = (c.end[ev] - c.start[ev]) - useful
    lost = np.where(lost > 0.0, lost, 0.0)
    order = np.argsort(-lost, kind="stable")
    at, lost = c.tensor_at[order], lost[order]
    worst = c.program.instructions[int(at[0])]
    return Insight(
        "low_model_flops", "Low model FLOPs vs active FLOPs",
        (1 - value / 100) * c.frac("tensor_engine_active_time_percent"),
        f"model FLOPs are {value:.1f}% of what the Tensor Engine could compute while "
        f"active ({_time(c.s['tensor_engine_active_time'] * 1e9)} busy); the most time is "
        f"lost at {_short(_loc(worst))} ({worst.opcode} {_shape(worst)})",
        _matmul_advice(c, [c.program.instructions[i] for i in at[:8].tolist()]),
        _ranked_at(c, at, lost), value, LOW_MODEL_FLOPS_PERCENT)


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
    adjusted, transpose, _ = _tensor_flops(c)
    count = int(transpose.sum())
    return Insight(
        "transpose_flops", "Transpose FLOPs",
        value / 100 * c.frac("tensor_engine_active_time_percent"),
        f"transposes are {value:.1f}% of the Tensor Engine's hardware FLOPs "
        f"({count} transpose instruction{'s' if count != 1 else ''}), and each "
        "needs a PSUM-to-SBUF copy",
        "choose layouts that need no transpose: load the operand already transposed "
        "(a transposed DMA view, or dma_transpose for 2-byte types), or swap the "
        "stationary and moving operands so the matmul reads the natural layout",
        _ranked_at(c, c.tensor_at[transpose], adjusted[transpose]), value,
        TRANSPOSE_FLOPS_PERCENT)


def small_dma(c: _Context):
    dmas = np.flatnonzero(c.ops.is_dma)
    small_at = dmas[c.ops.bytes_moved[dmas] < SMALL_DMA_BYTES]
    avg = c.s["dma_transfer_average_bytes"]
    if len(small_at) < 2 or not (avg < SMALL_DMA_BYTES or 2 * len(small_at) >= len(dmas)):
        return None
    small = list(map(c.program.instructions.__getitem__, small_at.tolist()))
    ev = c.event[small_at]
    ev = ev[ev >= 0]
    busy = span_length(*merged_spans(c.start[ev], c.end[ev]))
    per_part = sorted(min((a.contiguous_bytes for a in held_reads(i) + held_writes(i)),
                          default=0) for i in small)
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
        _ranked_at(c, small_at, np.ones(len(small_at))), avg, SMALL_DMA_BYTES)


def _overhead_bound_bytes(chip) -> int:
    x = getattr(chip.core.dma, "extras", {}) or {}
    return int(x.get("overhead_bound_bytes_per_partition", 256) or 256)


def _tensor_stalls(c: _Context):
    """(waiting instruction index, producer instruction index, idle ns), arrays with an
    item for each time the Tensor Engine sat idle between two of its instructions,
    charged to the wait satisfied last (the timeline lists waits latest-satisfied
    first; the wait before the first instruction, filling the pipeline, is not
    counted); core by core, in the order the engine ran them."""
    ev = c.event[c.tensor_at]
    cores = np.fromiter(map(_CORE, c.tensor), np.int64, len(ev))
    start, end, ready, producer = c.start, c.end, c.ready, c.producer
    out = []
    for core in range(c.ncores):
        evs = ev[cores == core]
        evs = evs[np.argsort(start[evs], kind="stable")]
        prev, p = evs[:-1], evs[1:]
        idle = np.where(ready[p] < start[p], ready[p], start[p]) - end[prev]  # (as min)
        keep = (idle > 0) & (producer[p] >= 0)
        p, idle = p[keep], idle[keep]
        keep = c.event_of(producer[p]) >= 0
        out.append((c.spans.index[p[keep]], producer[p[keep]], idle[keep]))
    return tuple(np.concatenate(x) for x in zip(*out)) if out else \
        (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


_CORE = attrgetter("core")


def inefficient_dma(c: _Context):
    limit = _overhead_bound_bytes(c.chip)
    ops = c.ops
    runs = c.dma_runs
    at = np.flatnonzero(ops.is_dma & (ops.bytes_moved >= SMALL_DMA_BYTES) & (c.event >= 0)
                        & (runs > 0) & (runs < limit))
    if not len(at) or c.t <= 0:
        return None
    ev = c.event[at]
    busy = span_length(*merged_spans(c.start[ev], c.end[ev]))
    value = 100.0 * busy / c.t
    if value < INEFFICIENT_DMA_PERCENT:
        return None
    _, producers, idle = _tensor_stalls(c)
    stalled = 0.0
    if len(producers):  # the Tensor Engine's idle ns per producer, each added in order
        stalling, code = np.unique(producers, return_inverse=True)
        by_producer = np.bincount(code.reshape(-1), idle, len(stalling))
        k = np.minimum(np.searchsorted(stalling, c.indices[at]), len(stalling) - 1)
        stalled = running_sum(np.where(stalling[k] == c.indices[at], by_producer[k],
                                       0.0)) / c.ncores
    worst = c.program.instructions[int(at[np.argmin(runs[at])])]
    nbytes = int(ops.bytes_moved[at].sum())
    count = len(at)
    runs = sorted(runs[at].tolist())
    fix = ("load whole contiguous rows (at least 2 KiB per partition) and rearrange on "
           "chip: for an interleave (every k-th element) load the block and read it "
           "through a strided SBUF view (e.g. tensor_copy of tile[:, 0::k]); for a "
           "transpose, load untransposed and use nc_transpose, or dma_transpose for "
           "2-byte types; or store the data in HBM in the layout the kernel reads")
    return Insight(
        "inefficient_dma", "Inefficient DMA transfers (small contiguous runs)",
        max(busy, stalled) / c.t,
        f"{count} DMA transfer{'s' if count != 1 else ''} ({_bytes(nbytes)}) move "
        f"data in contiguous runs of {runs[0]}"
        + (f"-{runs[-1]}" if runs[-1] != runs[0] else "")
        + f" B (under {limit} B is overhead-bound: every run is one descriptor element); "
        f"they keep the DMA queues busy {_time(busy)} ({value:.0f}% of the run)"
        + (f" and the Tensor Engine waits {_time(stalled)} for them" if stalled > 0 else "")
        + f"; worst at {_short(_loc(worst))} ({worst.opcode})",
        fix, _ranked_at(c, at, c.end[ev] - c.start[ev]), value,
        INEFFICIENT_DMA_PERCENT)


def tensor_reload(c: _Context):
    flagged = c.hbm.repeated(RELOAD_COUNT)
    if not flagged:
        return None
    read = c.s["hbm_read_bytes"] or 1
    extra = sum(v[1] for v in flagged.values())
    hbm = (c.s["hbm_read_bytes"] + c.s["hbm_write_bytes"]) or 1
    worst = sorted(flagged.items(), key=lambda kv: -kv[1][1])
    parts = [f"'{name}' up to {count} times ({_bytes(x)} re-read)"
             for name, (count, x, _) in worst[:3]]
    rows = np.concatenate([r for _, (_, _, r) in worst])
    return Insight(
        "tensor_reload", "Tensor reloaded more than 2 times",
        extra / hbm * c.frac("dma_active_time_percent"),
        f"the same HBM data is read again and again: {'; '.join(parts)}; "
        f"{100 * extra / read:.0f}% of all HBM reads are repeats",
        "keep reused tiles resident in SBUF: hoist the load out of the loop that re-reads "
        "it, or block the loops so every loaded tile serves several output tiles",
        _ranked_at(c, c.hbm.read_instruction[rows], c.hbm.read_bytes[rows]),
        float(max(v[0] for v in flagged.values())), RELOAD_COUNT)


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
    waiting, producers, idle = _tensor_stalls(c)
    engines = list(dict.fromkeys("dma" if t.startswith("dma") else t for t in c.spans.names))
    of_track = np.array([engines.index("dma" if t.startswith("dma") else t)
                         for t in c.spans.names], np.int64)
    engine = of_track[c.spans.track[c.event_of(producers)]] if len(idle) else \
        np.zeros(0, np.int64)
    keep = engine != (engines.index("tensor") if "tensor" in engines else -1)
    engine, idle = engine[keep], idle[keep]
    items, waiting = c.position_of(producers[keep]), c.position_of(waiting[keep])
    stall = {}  # producer engine -> ns (in the order met; each added in order)
    for k in engine[np.sort(np.unique(engine, return_index=True)[1])].tolist():
        stall[engines[k]] = running_sum(idle[engine == k])
    total = sum(stall.values()) / c.ncores
    value = 100.0 * total / c.t if c.t > 0 else 0.0
    if value < STARVATION_PERCENT:
        return None
    names = {"dma": "DMA", "vector": "VectorE", "scalar": "ScalarE", "gpsimd": "GpSimd",
             "sync": "Sync"}
    parts = ", ".join(f"{names.get(k, k)} {_time(v / c.ncores)}"
                      for k, v in sorted(stall.items(), key=lambda kv: -kv[1]))
    top = max(stall, key=stall.get)
    waits_at = _ranked_at(c, waiting, idle)
    if top == "dma":
        advice = ("prefetch: issue the loads of the next tiles before the matmuls of the "
                  "current ones (allocate the load tiles inside the loop so iterations "
                  "overlap, i.e. multi-buffer them) and load larger blocks per DMA")
        limit = _overhead_bound_bytes(c.chip)
        runs = c.dma_runs[items[c.ops.is_dma[items]]]
        if ((runs > 0) & (runs < limit)).any():
            advice = (f"first fix the loads it waits for: they move {runs[runs > 0].min()}"
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
        advice, _ranked_at(c, items, idle), value, STARVATION_PERCENT)


def engine_imbalance(c: _Context):
    """A compute engine busy with work the kernel pinned to it while another engine that
    could run part of that work (isa/engines.py) idles. Unpinned work is balanced by
    the compiler model already; pinned work stays where the kernel put it."""
    from ..isa.engines import TABLE
    gen = c.chip.generation
    best = None
    sp = c.spans
    ops = c.ops
    pinned = np.array(ops.per_attrs(lambda a: bool(a.get("engines"))), bool)
    fixed = pinned[ops.attrs_code] | ~np.fromiter(
        map(TABLE.__contains__, map(_OPCODE, ops.instrs)), bool, ops.n)
    for core in range(c.ncores):
        on = {x: (sp.track == sp.code(x)) & (sp.core == core)
              for x in ("vector", "scalar", "gpsimd")}
        busy = {x: union_length(sp.start[m], sp.end[m]) for x, m in on.items()}
        for x in busy:
            movable = defaultdict(list)  # other engine -> [(instruction, ns)]
            m = on[x]
            at = c.position_of(sp.index[m])
            m = np.flatnonzero(m)[(at < 0) | ~fixed[at]]  # (the rest are skipped)
            for i, d in zip(sp.index[m].tolist(), (sp.end[m] - sp.start[m]).tolist()):
                ins = c.ins[i]
                if ins.attrs.get("engines") or ins.opcode not in TABLE:
                    continue
                for y in TABLE[ins.opcode](ins, gen) - {x}:
                    movable[y].append((ins, d))
            # (in ENGINES' order: the candidates are a set of strings, whose order
            # follows the process's string hash, and a tie goes to the first)
            for y, items in sorted(movable.items(), key=lambda kv: ENGINES.index(kv[0])):
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
