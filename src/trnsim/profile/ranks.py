"""A RanksProfile: a finished multi-rank run (`trnsim.profile_ranks`) with one Profile
per rank, the collectives as the fabric ran them, and what a profiler shows about them
(collective metrics, per-rank balance)."""
from __future__ import annotations

import os
from functools import cached_property

from .profile import Profile


class RanksProfile:
    """`ranks` (a Profile per rank: its timeline, summary, insights), `outputs` (each
    rank's host outputs), `collectives` (trnsim.timing.ranks.Collective, in start
    order: group, algorithm, when each member arrived, start, end, bandwidths),
    `total_time` (seconds, the slowest rank), `summary` (collective metrics),
    `topology` and `placement` (trnsim.fabric.topology), `rounds` (scheduling rounds to
    the fixed point), `to_perfetto(path)` and `report(path)`."""

    def __init__(self, ranks: list[Profile], timeline, placement, name=None):
        self.ranks = ranks
        self.timeline = timeline
        self.placement = placement
        self.topology = placement.topology
        self.name = name or (ranks[0].name if ranks else "kernel")

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def outputs(self) -> list:
        return [p.outputs for p in self.ranks]

    @property
    def collectives(self) -> list:
        return self.timeline.collectives

    @property
    def total_time(self) -> float:
        return float(self.timeline.total_time) * 1e-9

    @property
    def rounds(self) -> int:
        return self.timeline.rounds

    @cached_property
    def summary(self) -> dict:
        from .collectives import ranks_summary
        return ranks_summary(self)

    def to_perfetto(self, path):
        """A Chrome Trace Event JSON file: one process per rank (its engines, DMA
        queues and collectives track) and a fabric process with one track per
        replica group."""
        from .perfetto import write_ranks_perfetto
        write_ranks_perfetto(self, os.fspath(path))
        return path

    def report(self, path):
        """A self-contained HTML report: per-rank times, the collectives table and a
        scatter of collective durations (outliers stand out)."""
        from .report import write_ranks_report
        write_ranks_report(self, os.fspath(path))
        return path

    def __repr__(self):
        return (f"<RanksProfile {self.name}: {self.world_size} ranks on "
                f"{self.topology.name}, {self.total_time * 1e6:.4g} us, "
                f"{len(self.collectives)} collectives>")
