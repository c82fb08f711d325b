"""Neuron Explorer summary metrics of one kernel run, read from its Program (the
instruction record) and its Timeline (when each instruction ran).

Names and units follow Neuron Explorer's Summary table (profile-schema-reference.rst):
times in seconds, `*_percent` in percent (0-100), bytes and FLOPs as integers.

Every metric, its definition and its source: docs/metrics.md. In short:

- FLOPs: every Tensor Engine matmul counts 2 * contraction * M * N, the logical FLOPs
  whatever the dtype (`hardware_flops`; an fp32 matmul is not multiplied: the hardware
  splits it into two FP32_LO_HI instructions of half the FLOPs each); the transposes
  among them (`is_transpose`, PE `nc_transpose`) are `transpose_flops`; `model_flops` =
  hardware - transpose (an NKI kernel has no HLO model, so the useful matmuls are the
  non-transpose ones). `adjusted_*` are BF16-equivalent: fp32 x4, fp8 x1 on Trn1 and
  x0.5 on Trn2/Trn3, 8-bit integers x0.5, MX x0.25 (chip data).
- Utilization: MFU/HFU = model/hardware FLOPs (not adjusted, as Explorer's
  `mfu_estimated_percent` = 2 * MAC_count / (tensor_engine_max_ops_per_sec *
  total_time)) over the Tensor Engine's BF16 peak (2 * PE rows * PE cols * clock) times
  `total_time`, times the cores run (LNC): an fp32 matmul stream peaks at 25%.
  MBU = HBM bytes / total_time / the bandwidth of one HBM stack (as the profiler, for
  LNC 1 and 2 alike).
- Roofline: Explorer's `peak_flops_bandwidth_ratio` is BF16 peak / one HBM stack's
  bandwidth; the bandwidth a core can actually reach is its DMA engines' ceiling
  (`roofline_bandwidth`), so the memory/compute classification uses
  `roofline_ridge_point` = peak / that bandwidth.
- Active time: at least one instruction running (waits excluded), per core, averaged
  over the cores; `total_active_time` is the union over every engine, queue and core.
- Collectives (`cc_op_*`): the events on the "cc" track (a multi-rank run's collectives,
  trnsim.timing.ranks), each from when the rank reached it to when the fabric transfer
  ended (the wait for the group's slowest member included); the active time is their
  union over the rank's cores. Zero for a kernel without collectives.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from operator import attrgetter, methodcaller

import numpy as np

from ..machine.record import ENGINES, distinct_rows, identities
from ..timing.timeline import (groups_of, merged_spans, running_sum, span_length,
                               spans_of)
from .operands import HBM, PSUM, SBUF, SPACES, Operands

SMALL_DMA_BYTES = 4096  # profiler advice: DMA transfers of at least 4 KiB


# -- intervals ---------------------------------------------------------------------
def merged(spans) -> list[tuple[float, float]]:
    """Disjoint, sorted union of (start, end) spans."""
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def overlap(a, b) -> float:
    """Total length of the intersection of two disjoint sorted span lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def core_count(program) -> int:
    return max(1, int(getattr(program, "lnc", 1) or 1))


def stacks_used(chip, ncores: int) -> int:
    """HBM stacks `ncores` adjacent cores draw on (cores_per_chip / hbm_stacks per stack)."""
    per_stack = max(1, chip.cores_per_chip // max(1, chip.hbm_stacks))
    return max(1, -(-ncores // per_stack))


def roofline_bandwidth(chip, ncores: int = 1) -> float:
    """Bytes/s of HBM traffic `ncores` cores can reach: their DMA engines' aggregate
    bandwidth, at most the bandwidth of the HBM stacks they sit on."""
    dma = chip.core.dma.aggregate_bandwidth * ncores
    hbm = chip.hbm_stack_bandwidth * stacks_used(chip, ncores)
    return min(dma, hbm) if dma > 0 else hbm


def length(spans) -> float:
    return sum(e - s for s, e in spans)


class Busy:
    """When each engine was active: merged (start, end) spans per (core, group), where a
    group is an engine's track, or 'dma' for all of a core's DMA queues."""

    def __init__(self, timeline):
        sp = spans_of(timeline)  # arrays: the same sums, added in the events' order
        names = ["dma" if t.startswith("dma") else t for t in sp.names]
        groups = list(dict.fromkeys(names))
        group = np.array([groups.index(g) for g in names], np.int64)[sp.track] \
            if names else np.zeros(0, np.int64)
        dur = sp.end - sp.start
        self.spans, self.instruction_time = {}, defaultdict(float)  # group -> summed durations
        self.lengths = {}  # (core, group) -> length(its spans)
        every = []
        for members in groups_of(sp.core * len(groups) + group):
            core, g = int(sp.core[members[0]]), groups[group[members[0]]]
            every.append(merged_spans(sp.start[members], sp.end[members]))
            self.spans[(core, g)] = list(zip(every[-1][0].tolist(), every[-1][1].tolist()))
            self.lengths[(core, g)] = span_length(*every[-1])
            if g not in self.instruction_time:
                self.instruction_time[g] = running_sum(dur[group == group[members[0]]])
        starts = np.concatenate([s for s, _ in every]) if every else np.zeros(0)
        ends = np.concatenate([e for _, e in every]) if every else np.zeros(0)
        self.total = span_length(*merged_spans(starts, ends))

    def of(self, group: str, core: int) -> list:
        return self.spans.get((core, group), [])

    def mean(self, group: str, ncores: int) -> float:
        """Active time (ns) of `group`, per core, averaged over the cores."""
        return sum(self.lengths.get((c, group), 0) for c in range(ncores)) / ncores


# -- FLOPs -------------------------------------------------------------------------
def flops_weight(attrs: dict, chip) -> float:
    """BF16-equivalent multiplier of a matmul's FLOPs (the profiler's adjusted_flops)."""
    extras = getattr(chip, "extras", {}) or {}
    dts = (str(attrs.get("stationary_dtype", "")), str(attrs.get("moving_dtype", "")))
    if attrs.get("perf_mode") == "mx" or any(d.endswith("_x4") for d in dts):
        return float(extras.get("profiler_mx_flops_weight", 0.25))
    if "float32" in dts:
        return float(extras.get("profiler_fp32_flops_weight", 4.0))
    if all(d.startswith("float8") for d in dts):
        return float(extras.get("profiler_fp8_flops_weight",
                                1.0 if getattr(chip, "generation", 3) <= 2 else 0.5))
    if all(d in ("int8", "uint8") for d in dts):
        return 0.5
    return 1.0


def matmul_flops(ins, chip):
    """(raw FLOPs, BF16-equivalent FLOPs, is_transpose) of a Tensor Engine matmul or PE
    transpose, or None for any other instruction."""
    return attrs_flops(ins.attrs, chip) if ins.engine == "tensor" else None


def attrs_flops(a: dict, chip):
    """matmul_flops of a Tensor Engine instruction with attrs `a`."""
    if "contraction" not in a or "M" not in a:
        return None
    raw = 2 * int(a["contraction"]) * int(a["M"]) * int(a["N"])
    return raw, raw * flops_weight(a, chip), bool(a.get("is_transpose"))


# -- HBM traffic: repeated reads and round trips -------------------------------------
def moves_data(ins, acc) -> bool:
    """Whether an operand is memory traffic as the profiler counts it: HBM is read and
    written by DMAs only, SBUF by DMAs and compute instructions alike, PSUM by compute
    instructions only; a core_barrier's `data` only orders the cores."""
    if ins.opcode == "core_barrier":
        return False
    if acc.space == "hbm":
        return ins.engine == "dma"
    if acc.space == "psum":
        return ins.engine != "dma"
    return True


def spill_dmas(program, kind: str) -> list:
    """The DMAs the compiler model inserted to spill ('save') or reload ('reload') an
    on-chip block (trnsim.compiler.allocation)."""
    return [i for i in program.instructions if i.attrs.get("spill") == kind]


class _Spans:
    """A growing union of [lo, hi) byte ranges with an overlap query."""

    def __init__(self):
        self.starts: list[int] = []
        self.ends: list[int] = []

    def hits(self, lo: int, hi: int) -> bool:
        i = bisect.bisect_right(self.starts, lo) - 1
        if i >= 0 and self.ends[i] > lo:
            return True
        return i + 1 < len(self.starts) and self.starts[i + 1] < hi

    def add(self, lo: int, hi: int) -> None:
        i = bisect.bisect_left(self.starts, lo)
        if i > 0 and self.ends[i - 1] >= lo:
            i -= 1
            lo = self.starts[i]
        j = i
        while j < len(self.starts) and self.starts[j] <= hi:
            hi = max(hi, self.ends[j])
            j += 1
        self.starts[i:j] = [lo]
        self.ends[i:j] = [hi]


class HbmTraffic:
    """How the kernel's HBM reads relate to each other and to its HBM writes (DMAs).

    - reads of one exact byte range (same addresses, pattern and dtype), in program
      order: more than one is a reload. Indirect reads (gathers, runtime offsets) are
      left out: their access covers every row they might read, so two of them share a
      key whatever rows they actually read.
    - `round_trip_reads`: reads of bytes this kernel wrote to HBM earlier (program
      order): data saved from on-chip memory and loaded back (a spill reload).
      Kernel inputs are never written before they are read, so they never count.
    - `round_trip_writes`: HBM writes some later instruction reads back (spill saves).

    Both lists hold (instruction, access) pairs. `ops`: the program's Operands."""

    def __init__(self, program, ops: Operands | None = None):
        ops = self.ops = ops or Operands(program)
        side = []
        for s in (ops.reads, ops.writes):
            at = np.flatnonzero(ops.is_dma[s.at] & (s.space == HBM))
            side.append((at, list(map(s.accesses.__getitem__, at.tolist())),
                         *s.hbm_bounds(at)))
        (rat, reads, lo, hi), (wat, writes, wlo, whi) = side
        self._reads, self._read_at, self._read_ins = reads, rat, ops.reads.at[rat]
        self._read_bytes = ops.reads.bytes[rat]
        self._indirect = np.fromiter(map(_INDIRECT, reads), bool, len(reads))
        self._key = _read_keys(reads, lo, hi)
        self._trip = np.zeros(len(reads), bool)
        self.round_trip_reads, self.round_trip_writes = [], []
        # most kernels read back nothing they wrote: the exact program-order sweep runs
        # only where some read meets some write at all
        if (_hits(wlo, whi, lo, hi).any() or _hits(lo, hi, wlo, whi).any()):
            self._sweep(ops, (rat, reads, lo, hi), (wat, writes, wlo, whi))

    def _sweep(self, ops, read_side, write_side) -> None:
        instrs = ops.instrs
        (rat, reads, lo, hi), (wat, writes, wlo, whi) = read_side, write_side
        per: dict = defaultdict(lambda: ([], []))  # DMA position -> (its reads, writes)
        for side, at in ((0, ops.reads.at[rat]), (1, ops.writes.at[wat])):
            for k, i in enumerate(at.tolist()):
                per[i][side].append(k)
        order = sorted(per)
        lo, hi, wlo, whi = lo.tolist(), hi.tolist(), wlo.tolist(), whi.tolist()
        written = _Spans()
        for i in order:
            rk, wk = per[i]
            for k in rk:
                if written.hits(lo[k], hi[k]):
                    self._trip[k] = True
                    self.round_trip_reads.append(ops.reads.own(instrs, "reads", rat[k]))
            for k in wk:
                written.add(wlo[k], whi[k])
        later = _Spans()
        for i in reversed(order):
            rk, wk = per[i]
            for k in wk:
                if later.hits(wlo[k], whi[k]):
                    self.round_trip_writes.append(ops.writes.own(instrs, "writes",
                                                                 wat[k]))
            for k in rk:
                later.add(lo[k], hi[k])
        self.round_trip_writes.reverse()

    @property
    def reload_bytes(self) -> int:
        """HBM read bytes that are not the first read of data from outside the kernel:
        repeated reads of a range plus every round-trip (spill) reload."""
        direct = ~self._indirect
        code = self._key[direct]
        first = np.zeros(len(code), bool)
        first[np.unique(code, return_index=True)[1]] = True
        again = ~first | self._trip[direct]
        return int(self._read_bytes[direct][again].sum())

    def reloaded(self, more_than: int = 2):
        """{tensor name: (largest read count of one range, bytes read beyond the first
        read, [(instruction, access), ...] of the repeated ranges)} for tensors with a
        range read more than `more_than` times."""
        instrs, own = self.ops.instrs, self.ops.reads.own
        return {name: (count, extra, [own(instrs, "reads", k) for k in
                                      self._read_at[rows].tolist()])
                for name, (count, extra, rows) in self.repeated(more_than).items()}

    def repeated(self, more_than: int = 2) -> dict:
        """reloaded(), each tensor's reads as an int array: their numbers among the
        HBM reads of the DMAs (`read_instruction` and `read_bytes` by number)."""
        spill = np.array([bool(x) for x in self.ops.per_attrs(_SPILL)], bool)
        keep = ~self._indirect  # (the ranges in order of their first read, spills too)
        key = self._key
        ranges = key[keep][np.sort(np.unique(key[keep], return_index=True)[1])]
        keep &= ~spill[self.ops.attrs_code[self._read_ins]]
        counts = np.bincount(key[keep], minlength=int(key.max(initial=-1)) + 1)
        many = ranges[counts[ranges] > more_than]
        if not len(many):
            return {}
        rank = np.full(len(counts), -1, np.int64)  # range -> its number among `many`
        rank[many] = np.arange(len(many))
        rows = np.flatnonzero(keep & (rank[key] >= 0))  # (in program order)
        group = rank[key[rows]]
        first = rows[np.unique(group, return_index=True)[1]]  # each range's first read
        out: dict = {}
        tensor = [self._reads[k].tensor or "?" for k in first.tolist()]
        name = np.array([out.setdefault(t, len(out)) for t in tensor], np.int64)
        rows = rows[np.lexsort((group, name[group]))]  # by tensor, range, program order
        group = rank[key[rows]]
        nbytes = self._read_bytes
        sizes = np.bincount(name[group], minlength=len(out))
        ends = np.cumsum(sizes)
        count = np.zeros(len(out), np.int64)
        np.maximum.at(count, name, counts[many])
        extra = np.bincount(name[group], nbytes[rows], len(out)).astype(np.int64) - \
            np.bincount(name, nbytes[first], len(out)).astype(np.int64)
        for t, k in out.items():
            out[t] = (int(count[k]), int(extra[k]), rows[ends[k] - sizes[k]:ends[k]])
        return out

    @property
    def read_instruction(self) -> np.ndarray:
        return self._read_ins

    @property
    def read_bytes(self) -> np.ndarray:
        return self._read_bytes


_INDIRECT = attrgetter("indirect")
_SPILL = methodcaller("get", "spill")


def _read_keys(reads: list, lo, hi) -> np.ndarray:
    """Each read's number among the distinct read_key values (lo, hi, pattern, dtype):
    the patterns and dtypes told apart by object first (loop copies share theirs),
    then by value."""
    if not reads:
        return np.zeros(0, np.int64)
    objects = np.column_stack((identities(list(map(_PATTERN, reads))),
                               identities(list(map(_DTYPE, reads)))))
    first, inverse = distinct_rows(objects)
    by_value: dict = {}
    kinds = [by_value.setdefault((reads[i].pattern, reads[i].dtype), len(by_value))
             for i in first.tolist()]
    return distinct_rows(np.column_stack((lo, hi, np.array(kinds, np.int64)[inverse])))[1]


_PATTERN, _DTYPE = attrgetter("pattern"), attrgetter("dtype")


def _hits(slo, shi, lo, hi) -> np.ndarray:
    """Whether each [lo, hi) range hits the union of the spans [slo, shi] as
    _Spans.hits does (the spans added in any order give the same union)."""
    if not len(slo) or not len(lo):
        return np.zeros(len(lo), bool)
    o = np.lexsort((shi, slo))
    s, e = slo[o], shi[o]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), bool)
    new[1:] = s[1:] > reach[:-1]
    starts = s[new]
    ends = reach[np.append(np.flatnonzero(new)[1:] - 1, len(s) - 1)]
    i = np.searchsorted(starts, lo, "right") - 1
    hit = (i >= 0) & (ends[np.maximum(i, 0)] > lo)
    nxt = np.minimum(i + 1, len(starts) - 1)
    return hit | ((i + 1 < len(starts)) & (starts[nxt] < hi))


# -- the summary ---------------------------------------------------------------------
def _pct(x: float, whole: float) -> float:
    return 100.0 * x / whole if whole > 0 else 0.0


def throttle_spans(timeline):
    return [(s, e, f) for s, e, f in (timeline.throttle or ()) if e > s]


def active_throttled_ns(timeline, busy: Busy, ncores: int) -> float:
    """Peak-time lost to throttling while the Tensor Engine was active: the integral of
    (1 - allowed fraction) over throttled, active time, averaged over the cores."""
    spans = throttle_spans(timeline)
    lost = 0.0
    for c in range(ncores):
        active = busy.of("tensor", c)  # merged: disjoint, sorted, so ends sorted too
        ends = [e for _, e in active]
        starts = [s for s, _ in active]
        for s, e, f in spans:
            # only the active spans ending after s and starting before e can intersect
            # (the same terms, in the same order, as the whole list: bit-identical)
            part = active[bisect.bisect_right(ends, s):bisect.bisect_left(starts, e)]
            lost += overlap(part, [(s, e)]) * (1.0 - f)
    return lost / ncores


class ThrottleIndex:
    """Throttle spans (start, end, fraction) indexed by time, for the peak-time each
    instruction lost: `lost(start, end)` sums overlap * (1 - fraction) over the spans
    that intersect [start, end], in the spans' order (so exactly the sum over all of
    them), without walking every span per instruction (instructions x spans was minutes
    for long kernels: naive attention at 4K has ~10^4 of each)."""

    def __init__(self, spans):
        self.spans = list(spans)
        self.order = sorted(range(len(self.spans)), key=lambda i: self.spans[i][0])
        self.starts = [self.spans[i][0] for i in self.order]
        self.reach = []  # running max of the ends, in start order
        m = float("-inf")
        for i in self.order:
            m = max(m, self.spans[i][1])
            self.reach.append(m)

    def lost(self, start: float, end: float) -> float:
        # cannot intersect: spans starting at or after `end`, and those (in start
        # order) before the first where the running max of the ends passes `start`
        lo = bisect.bisect_right(self.reach, start)
        hi = bisect.bisect_left(self.starts, end)
        total = 0.0
        for i in sorted(self.order[lo:hi]):
            s, t, f = self.spans[i]
            total += overlap([(start, end)], [(s, t)]) * (1 - f)
        return total


def average_limit_percent(timeline) -> float:
    """Time-weighted Tensor Engine utilization limit over the run (100: never throttled)."""
    t = float(timeline.total_time)
    if t <= 0:
        return 100.0
    lost = sum((min(e, t) - max(s, 0.0)) * (1.0 - f)
               for s, e, f in throttle_spans(timeline) if min(e, t) > max(s, 0.0))
    return _pct(t - lost, t)


def summarize(program, timeline, hbm: HbmTraffic | None = None) -> dict:
    """The Neuron Explorer summary dict of a run (see the module docstring). `hbm`: the
    program's HbmTraffic, when the caller has it already."""
    chip = timeline.chip if timeline.chip is not None else program.chip
    ncores = core_count(program)
    t_ns = float(timeline.total_time)
    busy = Busy(timeline)
    hbm = hbm or HbmTraffic(program)
    ops = hbm.ops
    s: dict = {"total_time": t_ns * 1e-9, "total_active_time": busy.total * 1e-9,
               "total_active_time_percent": _pct(busy.total, t_ns)}
    if chip.profiler_base_clock_hz:
        s["neuroncore_cycle_count"] = int(round(t_ns * 1e-9 * chip.profiler_base_clock_hz))
    _flops(s, ops, chip, ncores)
    _engines(s, ops, timeline, chip, busy, ncores)
    s.update(cc_metrics(timeline))
    _dma(s, program, timeline, busy, ncores, ops)
    _traffic(s, ops, hbm)
    stack_bw = chip.hbm_stack_bandwidth
    hbm_bytes = s["hbm_read_bytes"] + s["hbm_write_bytes"]
    s["mbu_estimated_percent"] = _pct(hbm_bytes, s["total_time"] * stack_bw)
    s["total_bandwidth_available"] = int(s["total_time"] * stack_bw)
    _roofline(s, chip, ncores, hbm_bytes)
    return s


def _roofline(s, chip, ncores, hbm_bytes):
    """Explorer's roofline metrics (one HBM stack's bandwidth as the memory roof), and
    trnsim's (the bandwidth the cores can reach, BF16-equivalent FLOPs)."""
    peak = chip.core.tensor.peak_bf16_flops
    s["mm_arithmetic_intensity"] = s["model_flops"] / hbm_bytes if hbm_bytes else 0.0
    s["peak_flops_bandwidth_ratio"] = peak / chip.hbm_stack_bandwidth
    # the best utilization the HBM traffic allows: at most 100% (a compute-bound kernel
    # can reach the peak, not exceed it)
    s["mfu_max_achievable_estimated_percent"] = min(100.0, _pct(
        s["mm_arithmetic_intensity"], s["peak_flops_bandwidth_ratio"]))
    bw = roofline_bandwidth(chip, ncores)
    ai = s["adjusted_model_flops"] / hbm_bytes if hbm_bytes else 0.0
    s["roofline_bandwidth"] = bw
    s["roofline_ridge_point"] = peak * ncores / bw
    s["roofline_arithmetic_intensity"] = ai
    s["roofline_memory_bound"] = bool(hbm_bytes) and ai < s["roofline_ridge_point"]
    s["roofline_max_achievable_percent"] = (min(100.0, _pct(ai, s["roofline_ridge_point"]))
                                            if hbm_bytes else 0.0)
    # the shortest time the roofline allows for this kernel's FLOPs and HBM traffic
    s["roofline_time"] = max(s["adjusted_model_flops"] / (peak * ncores), hbm_bytes / bw)


def _flops(s, ops: Operands, chip, ncores):
    flops = ops.per_attrs(lambda a: attrs_flops(a, chip))  # (the same by attrs object)
    per = [f or (0, 0.0, False) for f in flops]
    code = ops.attrs_code
    mm = ops.engine_is("tensor") & np.array([f is not None for f in flops], bool)[code]
    raw = np.array([f[0] for f in per], np.int64)[code]
    adj = np.array([f[1] for f in per], np.float64)[code]
    transpose = mm & np.array([f[2] for f in per], bool)[code]
    hw, tr = int(raw[mm].sum()), int(raw[transpose].sum())
    # (the adjusted FLOPs added in program order, as one by one)
    hw_adj, tr_adj = running_sum(adj[mm]), running_sum(adj[transpose])
    matmuls = int(mm.sum() - transpose.sum())
    peak = chip.core.tensor.peak_bf16_flops * ncores  # FLOP/s of the Tensor Engines run
    s.update(model_flops=hw - tr, hardware_flops=hw, transpose_flops=tr,
             adjusted_model_flops=int(round(hw_adj - tr_adj)),
             adjusted_hardware_flops=int(round(hw_adj)),
             adjusted_transpose_flops=int(round(tr_adj)), matmul_instruction_count=matmuls)
    # Explorer: FLOPs (not BF16-adjusted) over the BF16 peak
    s["mfu_estimated_percent"] = _pct(hw - tr, peak * s["total_time"])
    s["hfu_estimated_percent"] = _pct(hw, peak * s["total_time"])


def _engines(s, ops: Operands, timeline, chip, busy: Busy, ncores):
    t_ns = float(timeline.total_time)
    counts = ops.engine_counts
    for eng in ENGINES:
        active = busy.mean(eng, ncores)
        s[f"{eng}_engine_active_time"] = active * 1e-9
        s[f"{eng}_engine_active_time_percent"] = _pct(active, t_ns)
        s[f"{eng}_engine_instruction_count"] = counts.get(eng, 0)
        s[f"{eng}_engine_instruction_time"] = busy.instruction_time.get(eng, 0.0) * 1e-9
    # model FLOPs as a share of what the Tensor Engines could do while active
    active_flops = chip.core.tensor.peak_bf16_flops * busy.mean("tensor", ncores) * ncores * 1e-9
    s["model_flops_active_percent"] = _pct(s["adjusted_model_flops"], active_flops)
    s["active_throttled_flops_percent"] = _pct(active_throttled_ns(timeline, busy, ncores),
                                               t_ns)
    s["average_utilization_limit_percent"] = average_limit_percent(timeline)


def cc_metrics(timeline) -> dict:
    """Neuron Explorer's collective metrics, from the events on the "cc" track."""
    sp = spans_of(timeline)
    on = sp.on_tracks(lambda t: t == "cc")
    start, end = sp.start[on], sp.end[on]
    total = float(timeline.total_time)
    active = span_length(*merged_spans(start, end))
    return {"cc_op_time": span_length(start, end) * 1e-9,
            "cc_op_active_time": active * 1e-9,
            "cc_op_active_time_percent": _pct(active, total),
            "cc_op_count": int(start.size)}


def _dma(s, program, timeline, busy: Busy, ncores, ops: Operands | None = None):
    ops = ops or Operands(program)
    count = int(ops.is_dma.sum())
    active = busy.mean("dma", ncores)
    s["dma_active_time"] = active * 1e-9
    s["dma_active_time_percent"] = _pct(active, s["total_time"] * 1e9)
    s["dma_transfer_count"] = count
    nbytes = int(ops.bytes_moved[ops.is_dma].sum())
    s["dma_transfer_total_bytes"] = nbytes
    s["dma_transfer_average_bytes"] = nbytes / count if count else 0.0
    s["dma_transfer_time"] = busy.instruction_time.get("dma", 0.0) * 1e-9
    # the queues the timeline draws (a track per queue per core)
    sp = spans_of(timeline)
    on = sp.on_tracks(lambda t: t.startswith("dma"))
    s["dma_queue_count"] = int(np.unique(sp.core[on] * len(sp.names) + sp.track[on]).size)


def _traffic(s, ops: Operands, hbm: HbmTraffic):
    dma, barrier = ops.is_dma, ops.is_barrier
    moves = {}
    for mode, side in (("read", ops.reads), ("write", ops.writes)):
        on_dma = dma[side.at]
        # moves_data, operand by operand
        moves[mode] = ~barrier[side.at] & np.where(side.space == HBM, on_dma,
                                                   (side.space != PSUM) | ~on_dma)
    for space in ("hbm", "sbuf", "psum"):
        for mode, side in (("read", ops.reads), ("write", ops.writes)):
            at = moves[mode] & (side.space == SPACES[space])
            s[f"{space}_{mode}_bytes"] = int(side.bytes[at].sum())
    psum_read = np.zeros(ops.n, bool)
    psum_read[ops.reads.at[ops.reads.space == PSUM]] = True
    sbuf_written = ops.writes.per_instruction(ops.writes.space == SBUF, ops.n)
    evacuate = psum_read & ~dma & (sbuf_written != 0)
    s["psum_read_sbuf_write_count"] = int(evacuate.sum())
    s["psum_read_sbuf_write_bytes"] = int(sbuf_written[evacuate].sum())
    kinds = ops.per_attrs(_SPILL)
    for kind in ("save", "reload"):
        spilled = np.array([k == kind for k in kinds], bool)[ops.attrs_code]
        s[f"spill_{kind}_bytes"] = int(ops.bytes_moved[spilled].sum())
    reload = hbm.reload_bytes
    s["hbm_reload_bytes"] = reload
    read = s["hbm_read_bytes"]
    s["useful_read_percent"] = _pct(read - reload, read) if read else 100.0
