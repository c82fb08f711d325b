"""The timeline: when each recorded instruction ran, and why it waited.

The scheduler (`timing/scheduler.py`) turns a Program (the instruction record) into a
Timeline using only the record and the chip data; the profile (`trnsim/profile/`)
reads only the Program and the Timeline.

A Timeline holds either a list of Events or EventColumns (arrays per instruction, as
the compiled scheduler, compiled.py, makes them); from columns its `events` are made on
first read, and the profile's aggregates (busy time, per-track sums: `spans()`) read the
arrays without making them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import attrgetter
from typing import NamedTuple

import numpy as np

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


_new_wait = tuple.__new__


def _pick(names, codes: np.ndarray) -> list:
    """[names[c] for c in codes]."""
    table = np.empty(len(names), object)
    table[:] = list(names)
    return table[codes].tolist()


def folded_cost(matmul: int) -> dict:
    """The cost terms of a PSUM memset folded into the matmul at `matmul` (no engine
    time; a dict of its own per event)."""
    return {"cycles": 0, "folded_into": matmul}


class EventColumns:
    """A timeline's events as arrays indexed by instruction index (events[i].index == i).

    Per instruction: `core`, `track` (a code into `names`), `start`, `end`, `ready`,
    `done` (float64), `moved`, `row` (its cost row: the events of one row share
    `terms[row]` and `engines[row]`, but the folded memsets of `folded` (instruction ->
    the matmul it folds into), whose row is shared and whose terms are made per event,
    as the Python scheduler makes them); its waits are `dprod/dkind/dspace[wsel[x]]` for x
    in wfirst[i]:wfirst[i] + wcount[i] (kind and space as codes into `kinds`,
    `spaces`). A Tensor Engine instruction's terms gain "load_stationary_ns":
    ls_ns[row[i]] where ls_shown[i], then "throttle": throttle[i] where it is below 1 (as
    scheduler._Scheduler._tensor adds them; ls_ns per row, Python numbers)."""

    __slots__ = ("n", "core", "track", "names", "start", "end", "ready", "done", "moved",
                 "row", "terms", "engines", "folded", "wfirst", "wcount", "wsel", "dprod",
                 "dkind", "dspace", "kinds", "spaces", "ls_shown", "ls_ns", "throttle")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields[name])

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        for name, v in state.items():
            setattr(self, name, v)

    def events(self) -> list[Event]:
        """The Events, field by field those the Python scheduler makes."""
        n = self.n
        count = self.wcount
        # the waits' slots, instruction after instruction
        ends = np.cumsum(count)
        slots = np.arange(int(ends[-1]) if n else 0) + \
            np.repeat(self.wfirst - ends + count, count)
        sel = self.wsel[slots]
        waits = map(_new_wait, repeat(Wait), zip(
            np.asarray(self.dprod, np.int64)[sel].tolist(),
            _pick(self.kinds, np.asarray(self.dkind, np.int64)[sel]),
            _pick(self.spaces, np.asarray(self.dspace, np.int64)[sel])))
        row = self.row.tolist()
        terms, engines = self.terms, self.engines
        events = list(map(
            Event, range(n), self.core.tolist(), _pick(self.names, self.track),
            self.start.tolist(), self.end.tolist(), self.ready.tolist(),
            [tuple(islice(waits, c)) if c else () for c in count.tolist()],
            [terms[r] for r in row], [engines[r] for r in row], self.done.tolist(),
            self.moved.tolist()))
        for i, matmul in self.folded.items():
            events[i].cost = folded_cost(matmul)
        ls_ns, shown, frac = self.ls_ns, self.ls_shown, self.throttle
        for i in np.flatnonzero(shown | (frac < 1.0)).tolist():
            e = events[i]
            if shown[i]:
                e.cost = {**e.cost, "load_stationary_ns": ls_ns[row[i]]}
            if frac[i] < 1.0:
                e.cost = {**e.cost, "throttle": frac[i].item()}
        return events


class Spans:
    """The events' index, core, track (codes into `names`), start, end, ready and the
    producer of their first (latest-satisfied) wait (-1: none) as arrays, in the
    events' order: what the profile's aggregates read."""

    __slots__ = ("index", "core", "track", "names", "start", "end", "ready", "producer",
                 "_by_core_and_track")

    def __init__(self, index, core, track, names, start, end, ready, producer):
        self.index, self.core, self.track, self.names = index, core, track, names
        self.start, self.end, self.ready, self.producer = start, end, ready, producer
        self._by_core_and_track = None

    @classmethod
    def of_columns(cls, cols: EventColumns) -> "Spans":
        producer = np.full(cols.n, -1, np.int64)
        if cols.wsel.size:
            first = cols.wsel[np.minimum(cols.wfirst, cols.wsel.size - 1)]
            has = cols.wcount > 0
            producer[has] = np.asarray(cols.dprod, np.int64)[first[has]]
        return cls(np.arange(cols.n), cols.core, cols.track, cols.names, cols.start,
                   cols.end, cols.ready, producer)

    @classmethod
    def of_events(cls, events) -> "Spans":
        """The Spans of `events` (objects with track, start and end; without an index,
        a core, ready or waits: their position, core 0, 0.0, none)."""
        n = len(events)

        def column(name, dtype, default):
            try:
                return np.fromiter(map(attrgetter(name), events), dtype, n)
            except AttributeError:  # duck-typed events
                return np.array([getattr(e, name, x if default is None else default)
                                 for x, e in enumerate(events)], dtype)
        codes: dict = {}
        track = [codes.setdefault(e.track, len(codes)) for e in events]
        try:
            producer = np.fromiter((w[0][0] if w else -1
                                    for w in map(attrgetter("waits"), events)), np.int64, n)
        except AttributeError:
            producer = np.full(n, -1, np.int64)
        return cls(column("index", np.int64, None), column("core", np.int64, 0),
                   np.array(track, np.int64), list(codes), column("start", np.float64, 0.0),
                   column("end", np.float64, 0.0), column("ready", np.float64, 0.0),
                   producer)

    def code(self, track: str) -> int:
        """The code of `track`, or -1 (no event on it)."""
        return self.names.index(track) if track in self.names else -1

    def by_core_and_track(self) -> dict[tuple[int, str], np.ndarray]:
        """{(core, track): the positions of its events, in order}, in order of first
        event (made once: the report and the track list both read it)."""
        if self._by_core_and_track is None:
            out = self._by_core_and_track = {}
            for members in groups_of(self.core * max(1, len(self.names)) + self.track):
                first = members[0]
                out[(int(self.core[first]), self.names[self.track[first]])] = members
        return self._by_core_and_track

    def on_tracks(self, match) -> np.ndarray:
        """Which events are on a track whose name satisfies `match` (a predicate on the
        name), as a mask."""
        codes = [c for c, name in enumerate(self.names) if match(name)]
        return np.isin(self.track, np.array(codes, np.int64))


class Timeline:
    """When each instruction ran: `events` aligned with program.instructions
    (events[i].index == i), `total_time` (ns, end of the last event), `throttle`
    ((start ns, end ns, fraction of TensorE peak allowed) while throttled), `order`
    (engines ran in 'compiler' (issue) order or 'program' order). `columns`: the
    EventColumns the events are made from on first read, or None."""

    columns = None  # (a class attribute: timelines pickled before columns existed)

    def __init__(self, chip, events: list[Event], total_time: float,
                 throttle: list | None = None, order: str = "program"):
        self.chip = chip
        self.events = events
        self.total_time = total_time
        self.throttle = [] if throttle is None else throttle
        self.order = order

    @classmethod
    def of_columns(cls, chip, columns: EventColumns, total_time: float,
                   throttle: list, order: str) -> "Timeline":
        """A Timeline whose events are made from `columns` when first read."""
        tl = cls.__new__(cls)
        tl.chip, tl.columns, tl.total_time, tl.throttle, tl.order = \
            chip, columns, total_time, throttle, order
        return tl

    def __getattr__(self, name):  # only for attributes not set: `events` not made yet
        cols = self.__dict__.get("columns")
        if name != "events" or cols is None:
            raise AttributeError(name)
        events = self.__dict__["events"] = cols.events()
        return events

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_spans", None)
        if state.get("columns") is not None:
            state.pop("events", None)  # made again from the columns
        return state

    def __eq__(self, other):
        if not isinstance(other, Timeline):
            return NotImplemented
        return ((self.chip, self.total_time, self.throttle, self.order, self.events)
                == (other.chip, other.total_time, other.throttle, other.order, other.events))

    __hash__ = None

    def __repr__(self):
        return (f"Timeline(chip={self.chip!r}, events={self.events!r}, "
                f"total_time={self.total_time!r}, throttle={self.throttle!r}, "
                f"order={self.order!r})")

    def spans(self) -> Spans:
        """The events' times as arrays: from the columns until the events are read, then
        from the events (made once per events list and length: events are read, not
        changed)."""
        source = self.__dict__.get("events")
        if source is None:
            source = self.columns
        memo = self.__dict__.get("_spans")
        size = len(source) if isinstance(source, list) else source.n
        if memo is None or memo[0] is not source or memo[1] != size:
            spans = Spans.of_events(source) if isinstance(source, list) else \
                Spans.of_columns(source)
            memo = self.__dict__["_spans"] = (source, size, spans)
        return memo[2]

    def by_track(self) -> dict[str, list[Event]]:
        tracks: dict[str, list[Event]] = {}
        for e in self.events:
            tracks.setdefault(e.track, []).append(e)
        return tracks

    def busy_time(self, track_prefix: str, core: int | None = None) -> float:
        """Time (ns) during which at least one event on matching tracks was running."""
        sp = self.spans()
        keep = sp.on_tracks(lambda name: name.startswith(track_prefix))
        if core is not None:
            keep &= sp.core == core
        return union_length(sp.start[keep], sp.end[keep])


def spans_of(timeline) -> Spans:
    """timeline.spans(), or the Spans of the events of any object that has `events`."""
    spans = getattr(timeline, "spans", None)
    return spans() if spans is not None else Spans.of_events(timeline.events)


def busy_time(events) -> float:
    """The length of the union of the events' [start, end) intervals, in ns."""
    return _union_walk(sorted((e.start, e.end) for e in events))


def union_length(start: np.ndarray, end: np.ndarray) -> float:
    """busy_time of the spans [start, end) given as arrays: the same number."""
    if (end < start).any():  # busy_time counts a reversed span that opens a run
        return _union_walk(sorted(zip(start.tolist(), end.tolist())))
    return span_length(*merged_spans(start, end))


def _union_walk(pairs) -> float:
    busy, cur_s, cur_e = 0.0, None, None
    for s, t in pairs:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, t
        else:
            cur_e = max(cur_e, t)
    return busy + (cur_e - cur_s if cur_e is not None else 0.0)


def merged_spans(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends): the disjoint, sorted union of the [start, end) spans, empty ones
    left out; the spans profile/summary.py `merged` returns, as arrays."""
    keep = end > start
    s, e = start[keep], end[keep]
    o = np.lexsort((e, s))
    s, e = s[o], e[o]
    if not s.size:
        return s, e
    reach = np.maximum.accumulate(e)  # max is exact: the same ends as merging one by one
    first = np.empty(s.size, bool)
    first[0] = True
    first[1:] = s[1:] > reach[:-1]
    last = np.empty(s.size, bool)
    last[-1] = True
    last[:-1] = first[1:]
    return s[first], reach[last]


def groups_of(key: np.ndarray) -> list[np.ndarray]:
    """The positions of each distinct value of `key`, in order; the values in order of
    first occurrence."""
    if not key.size:
        return []
    order = np.argsort(key, kind="stable")
    parts = np.split(order, np.flatnonzero(np.diff(key[order])) + 1)
    parts.sort(key=lambda m: m[0])
    return parts


def span_length(start: np.ndarray, end: np.ndarray) -> float:
    """sum(end - start), added one after another as Python's sum adds them."""
    return float(running_sum(end - start))


def running_sum(x: np.ndarray) -> float:
    """x[0] + x[1] + ... in that order (cumsum adds sequentially; np.sum pairwise would
    round differently)."""
    return float(np.cumsum(x)[-1]) if x.size else 0.0


class Moved(Mapping):
    """An issue order's `moved` (compiler/schedule.py IssueOrder) as the compiled list
    scheduler makes it: index -> places moved up its engine, kept as its two int64
    arrays (`at`, `by`, in issue order: a dict's order) and made a dict only where read
    as one (the timing scheduler reads the arrays: `columns`)."""
    __slots__ = ("at", "by", "_items")

    def __init__(self, at: np.ndarray, by: np.ndarray):
        self.at, self.by, self._items = at, by, None

    def __reduce__(self):
        return Moved, (self.at, self.by)

    def _dict(self) -> dict:
        if self._items is None:
            self._items = dict(zip(self.at.tolist(), self.by.tolist()))
        return self._items

    def __getitem__(self, i):
        return self._dict()[i]

    def get(self, i, default=None):
        return self._dict().get(i, default)

    def __iter__(self):
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self.at)

    def __repr__(self) -> str:
        return repr(self._dict())

    @staticmethod
    def columns(moved) -> tuple:
        """(indices, places moved) of an IssueOrder's `moved` (a Moved or a dict), as
        int64 arrays."""
        if isinstance(moved, Moved):
            return moved.at, moved.by
        return (np.fromiter(moved.keys(), np.int64, len(moved)),
                np.fromiter(moved.values(), np.int64, len(moved)))
