"""A Profile: a finished kernel run with its timeline, summary metrics, insights,
benchmark result, trace and report. (`trnsim.profile(kernel, *args)`, which runs the
kernel and makes one, is trnsim/entry.py.)"""
from __future__ import annotations

import html
import os
from functools import cached_property

from ..machine.gc_pause import gc_paused
from .insights import SHOWN, Insight, find_insights
from .summary import HbmTraffic, summarize

PERCENTILES = (0, 1, 10, 25, 50, 90, 99, 100)  # the ones nki.benchmark offers


class Latency:
    """`nc_latency` of a benchmark result: the simulation is deterministic, so every
    percentile is the one predicted latency, in microseconds (nki.benchmark's unit)."""

    def __init__(self, latency_us: float):
        self.latency_us = float(latency_us)

    def get_latency_percentile(self, p) -> float:
        if p not in PERCENTILES:
            raise ValueError(f"get_latency_percentile({p!r}): available percentiles are "
                             f"{list(PERCENTILES)}")
        return self.latency_us

    def __repr__(self):
        return f"<nc_latency {self.latency_us:.3f} us at every percentile>"


def launch_overhead_ns(chip) -> float:
    """The per-launch time nki.benchmark-style latency adds to the device time (chip
    data `launch_overhead_ns`, a choice: see its source)."""
    return float((getattr(chip, "extras", None) or {}).get("launch_overhead_ns", 0) or 0)


class BenchmarkResult:
    """Shaped like nki.benchmark's `benchmark_result`: `.nc_latency.get_latency_percentile(p)`
    in microseconds: the device time plus the chip's per-launch overhead."""

    def __init__(self, latency_us: float):
        self.nc_latency = Latency(latency_us)


def schedule_run(run, order: str = "compiler"):
    """The Timeline of a finished Run (its program on its chip), the engines running the
    compiler model's issue order (or with order="program", the kernel's program order)."""
    from ..timing import schedule
    return schedule(run.program, run.chip, order)


class Profile:
    """A kernel run with its timeline and what the profiler would show about it.

    `outputs` (the kernel's host outputs), `program` (the instruction record), `timeline`,
    `chip`, `total_time` (seconds), `summary` (Neuron Explorer summary metrics),
    `insights` (the most critical findings, at most 4; `all_insights` has every one),
    `benchmark_result` (nki.benchmark's shape), `memory` (the compiler model's
    MemoryPlan: where each on-chip block lived when, peak use, spills; `memory_table()`
    per tensor), `to_perfetto(path)`, `report(path)`, `to_explorer(dir)` (Neuron
    Explorer's tables). `cache`: "hit" or "miss" when the
    profile cache (trnsim.profile.cache) was consulted, else None; `cache_key` its key."""

    def __init__(self, program, timeline, outputs=None, run=None, name=None):
        self.program = program
        self.timeline = timeline
        self.outputs = outputs
        self.run = run
        self.chip = timeline.chip if timeline.chip is not None else program.chip
        self.name = name or "kernel"
        self.cache = self.cache_key = None

    @classmethod
    def from_run(cls, run, outputs=None, name=None, order: str = "compiler") -> "Profile":
        """Schedule a finished Run (from trnsim.run_kernel or run_legacy)."""
        return cls(run.program, schedule_run(run, order), outputs, run, name)

    @property
    def total_time(self) -> float:
        """Predicted latency in seconds."""
        return float(self.timeline.total_time) * 1e-9

    @cached_property
    def _hbm(self) -> HbmTraffic:
        with gc_paused():  # allocates per instruction, no cyclic garbage (as below)
            return HbmTraffic(self.program)

    @cached_property
    def summary(self) -> dict:
        # the collector paused: with a long program's record and timeline alive (10^6
        # objects at 75K instructions), each full collection the summary's allocations
        # trip walks them all (Busy alone: 1.5 s with it on, 0.16 s off)
        with gc_paused():
            return summarize(self.program, self.timeline, self._hbm)

    @cached_property
    def all_insights(self) -> list[Insight]:
        with gc_paused():
            return find_insights(self.program, self.timeline, self.summary, self._hbm)

    @property
    def insights(self) -> list[Insight]:
        return self.all_insights[:SHOWN]

    @property
    def memory(self):
        """The compiler model's MemoryPlan (trnsim.compiler.allocation)."""
        return self.program.memory

    def memory_table(self) -> list[dict]:
        """Per on-chip tensor: its blocks' placements (block, address, first and last
        instruction), where it was allocated, and its spill bytes."""
        return self.program.memory.tensors() if self.program.memory is not None else []

    @cached_property
    def benchmark_result(self) -> BenchmarkResult:
        """nki.benchmark's shape: `total_time` plus the per-launch overhead (chip data)."""
        return BenchmarkResult(self.total_time * 1e6 + launch_overhead_ns(self.chip) * 1e-3)

    def to_perfetto(self, path):
        """Write a Chrome Trace Event JSON file that Perfetto UI opens."""
        from .perfetto import write_perfetto
        write_perfetto(self, os.fspath(path))
        return path

    def report(self, path):
        """Write a self-contained HTML report."""
        from .report import write_report
        write_report(self, os.fspath(path))
        return path

    def to_explorer(self, path, format: str = "parquet"):
        """Write the profile into directory `path` in Neuron Explorer's documented
        output schema (Instruction, DmaPacket, SemaphoreUpdate, HbmUsage, SbufUsage,
        PsumUsage, Summary, ... tables): <Table>.parquet (needs pyarrow: the
        `explorer` extra) or, with format="json", <Table>.json. See
        trnsim.profile.explorer."""
        from .explorer import write_explorer
        return write_explorer(self, path, format)

    def __repr__(self):
        s = self.summary
        return (f"<Profile {self.name} on {self.chip.name}: {_fmt_time(self.total_time)}, "
                f"MFU {s['mfu_estimated_percent']:.1f}%, MBU {s['mbu_estimated_percent']:.1f}%, "
                f"{len(self.program)} instructions>")

    def _repr_html_(self) -> str:
        s = self.summary
        rows = [("total_time", _fmt_time(s["total_time"])),
                ("mfu / hfu", f"{s['mfu_estimated_percent']:.1f}% / "
                              f"{s['hfu_estimated_percent']:.1f}%"),
                ("mbu", f"{s['mbu_estimated_percent']:.1f}%"),
                ("engine active (PE / DVE / ACT / Pool / DMA)",
                 " / ".join(f"{s[k]:.0f}%" for k in (
                     "tensor_engine_active_time_percent", "vector_engine_active_time_percent",
                     "scalar_engine_active_time_percent", "gpsimd_engine_active_time_percent",
                     "dma_active_time_percent"))),
                ("model_flops", f"{s['model_flops']:,}"),
                ("hbm read / write", f"{_fmt_bytes(s['hbm_read_bytes'])} / "
                                     f"{_fmt_bytes(s['hbm_write_bytes'])}"),
                ("dma transfers", f"{s['dma_transfer_count']} "
                                  f"(avg {_fmt_bytes(s['dma_transfer_average_bytes'])})"),
                ("arithmetic intensity", f"{s['mm_arithmetic_intensity']:.1f} FLOP/B "
                                         f"(ridge {s['roofline_ridge_point']:.1f}: "
                                         f"{'memory' if s['roofline_memory_bound'] else 'compute'}"
                                         f"-bound)")]
        body = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
                       f"<td style='text-align:right'>{html.escape(v)}</td></tr>"
                       for k, v in rows)
        items = "".join(
            f"<li><b>[{i.severity}] {html.escape(i.title)}</b>: {html.escape(i.message)}"
            f"<br><i>{html.escape(i.recommendation)}</i>"
            + (f"<br><code>{html.escape(', '.join(_basename(x) for x in i.locations[:3]))}"
               f"</code>" if i.locations else "") + "</li>"
            for i in self.insights)
        head = (f"<b>{html.escape(self.name)}</b> on {html.escape(self.chip.name)}, "
                f"{len(self.program)} instructions")
        return (f"<div>{head}<table>{body}</table>"
                + (f"<ul>{items}</ul>" if items else "<p>No performance insights.</p>")
                + "</div>")


def _basename(loc: str) -> str:
    path, _, line = loc.rpartition(":")
    return f"{os.path.basename(path)}:{line}" if path else loc


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"
