"""The timeline: when each recorded instruction ran, and why it waited.

The scheduler (`timing/scheduler.py`) turns a Program (the instruction record) into a
Timeline using only the record and the chip data; the profile (`trnsim/profile/`)
reads only the Program and the Timeline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

ENGINE_TRACKS = ("tensor", "vector", "scalar", "gpsimd", "sync")


class Wait(NamedTuple):
    """Instruction `producer` had to finish before this one could start. (A named tuple:
    a timeline holds one or more per instruction.)"""
    producer: int  # instruction index in the program
    kind: str  # 'RAW' | 'WAR' | 'WAW' | 'order' (explicit depends_on / barrier / sendrecv)
    space: str = ""  # memory space of the conflicting access ('sbuf', 'psum', 'hbm')


@dataclass(slots=True)
class Event:
    """One instruction's execution: on `track` (an engine name, or 'dma:<queue>' for a
    DMA transfer), from `start` to `end` in nanoseconds since the kernel started.

    Slotted (one per instruction: 120 bytes, not 520 with a dict). `cost` may be shared
    by the events of identical instructions: read it, do not change it."""
    index: int  # instruction index in the program
    core: int
    track: str
    start: float
    end: float
    ready: float = 0.0  # when its dependencies were satisfied (start - ready: queueing)
    waits: tuple[Wait, ...] = ()  # what it waited for, the latest-satisfied first
    cost: dict = field(default_factory=dict)  # cost-model terms (cycles, bytes, ...)
    dma_engines: tuple[int, ...] = ()  # for DMA: which of the core's DMA engines moved it
    done: float = 0.0  # when its results are visible to other instructions (>= end)
    moved: int = 0  # places the compiler's scheduler moved it up its engine or queue

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Timeline:
    chip: object
    events: list[Event]  # aligned with program.instructions (events[i].index == i)
    total_time: float  # ns, end of the last event
    throttle: list[tuple[float, float, float]] = field(default_factory=list)
    # (start ns, end ns, fraction of TensorE peak allowed) while throttled
    order: str = "program"  # engines ran in 'compiler' (issue) order or 'program' order

    def by_track(self) -> dict[str, list[Event]]:
        tracks: dict[str, list[Event]] = {}
        for e in self.events:
            tracks.setdefault(e.track, []).append(e)
        return tracks

    def busy_time(self, track_prefix: str, core: int | None = None) -> float:
        """Time (ns) during which at least one event on matching tracks was running."""
        return busy_time([e for e in self.events if e.track.startswith(track_prefix)
                          and (core is None or e.core == core)])


def busy_time(events) -> float:
    """The length of the union of the events' [start, end) intervals, in ns."""
    busy, cur_s, cur_e = 0.0, None, None
    for s, t in sorted((e.start, e.end) for e in events):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, t
        else:
            cur_e = max(cur_e, t)
    return busy + (cur_e - cur_s if cur_e is not None else 0.0)
