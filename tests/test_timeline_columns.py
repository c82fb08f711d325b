"""Timelines kept as columns (timing/timeline.py EventColumns, made by
timing/compiled.py build_timeline): the Events made when first read are those the
Python scheduler makes, field by field; the profile's aggregates read off the arrays
(profile/summary.py Busy, cc_metrics, dma_queue_count, Timeline.busy_time,
profile/views.py cores_and_tracks, profile/report.py utilization, profile/insights.py
engine_imbalance) equal the ones that walk the events."""
import pickle
from collections import defaultdict

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.chips import load_chip
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.profile import insights, report, summary, views
from trnsim.timing.timeline import Event, Spans, Timeline, Wait, busy_time

numba = pytest.importorskip("numba")

from trnsim.timing import compiled  # noqa: E402
from trnsim.timing.scheduler import _Scheduler  # noqa: E402

from benchmarks.fidelity import strided_stores  # noqa: E402
from test_timing_compiled import barrier_kernel, mixed  # noqa: E402


def _tutorial(chip, variant="tiled", M=256, N=1024):
    kernel = load_example("legacy/matmul_tutorial").VARIANTS[variant]
    kw = {"TILES_IN_BLOCK_M": M // 128} if variant == "block_mnk" else {}
    bf = ml_dtypes.bfloat16
    return run_legacy(kernel.fn, (np.zeros((1024, M), bf), np.zeros((1024, N), bf)),
                      kw, chip=chip, numerics=False)[1]


def _mixed(chip, seed):
    bf = ml_dtypes.bfloat16
    x, w = np.zeros((128, 64 * 24), bf), np.zeros((128, 64), bf)
    return trnsim.run_kernel(mixed, (x, w), {"seed": seed, "dge": chip != "trn1"}, chip=chip,
                             numerics=False)[1]


def _strided(chip):
    return trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 64), np.float32),),
                             chip=chip, numerics=False)[1]


RUNS = {"tutorial trn1": lambda: _tutorial("trn1"), "tutorial trn2": lambda: _tutorial("trn2"),
        "blocked trn1": lambda: _tutorial("trn1", "block_mnk", 512, 2048),
        "mixed trn2": lambda: _mixed("trn2", 1), "mixed trn3": lambda: _mixed("trn3", 2),
        "strided trn2": lambda: _strided("trn2")}
_made: dict = {}


def _pair(name):
    """(the Python scheduler's timeline, the compiled one) of RUNS[name]."""
    if name not in _made:
        run = RUNS[name]()
        chip = load_chip(run.chip)
        ref = _Scheduler(run.program, chip, run.program.issue, {}).run()
        got = compiled.schedule_compiled(run.program, chip, run.program.issue)
        assert got is not None and got.columns is not None
        _made[name] = ref, got
    return _made[name]


def _fields(e: Event) -> tuple:
    return (e.index, e.core, e.track, e.start, e.end, e.ready, e.waits,
            list(e.cost.items()), e.dma_engines, e.done, e.moved)


def _sharing(events) -> list:
    """Which events share one cost dict: for each, the first event with that dict."""
    first: dict = {}
    return [first.setdefault(id(e.cost), e.index) for e in events]


@pytest.mark.parametrize("name", list(RUNS))
def test_lazy_events_are_the_python_schedulers(name):
    ref, got = _pair(name)
    assert "events" not in got.__dict__  # nothing made until read
    assert (got.total_time, got.throttle, got.order) == (ref.total_time, ref.throttle,
                                                        ref.order)
    events = got.events
    assert got.events is events  # made once
    assert [_fields(e) for e in events] == [_fields(e) for e in ref.events]
    for e in events:
        assert all(type(w) is Wait for w in e.waits)
        assert type(e.dma_engines) is type(ref.events[e.index].dma_engines)
    assert _sharing(events) == _sharing(ref.events)
    assert got == ref


def test_cost_additions_and_waits_are_covered():
    """The corpus has what the columns rebuild specially: Tensor Engine terms with
    load_stationary_ns and throttle, several waits per event, DMA engines, moves."""
    events = [e for name in RUNS for e in _pair(name)[1].events]
    assert any("load_stationary_ns" in e.cost for e in events)
    assert any("throttle" in e.cost for e in events)
    assert any(len(e.waits) > 1 for e in events)
    assert any(e.dma_engines for e in events)
    assert any(e.moved for e in events)


def test_folded_memsets_share_one_row():
    """A blocked matmul zeroes each accumulator with a memset folded into its first
    matmul: one row serves them all, their cost terms (the matmul each folds into) made
    per event, a dict each, as the Python scheduler's."""
    ref, got = _pair("blocked trn1")
    cols = got.columns
    folded = [e.index for e in ref.events if "folded_into" in e.cost]
    assert len(folded) >= 16 and list(cols.folded) == folded
    assert len(set(cols.row[folded].tolist())) == 1
    assert len(cols.terms) < len(got.events) - len(folded) // 2
    for i in folded:
        assert got.events[i].cost == ref.events[i].cost == \
            {"cycles": 0, "folded_into": cols.folded[i]}
    assert len({id(got.events[i].cost) for i in folded}) == len(folded)


def test_pickled_without_events():
    ref, got = _pair("mixed trn2")
    got.events  # noqa: B018 - made, then left out of the pickle
    blob = pickle.dumps(got)
    again = pickle.loads(blob)
    assert "events" not in again.__dict__
    assert [_fields(e) for e in again.events] == [_fields(e) for e in ref.events]
    old = Timeline(ref.chip, ref.events, ref.total_time, ref.throttle, ref.order)
    state = dict(old.__dict__)  # as pickled before timelines had columns
    revived = Timeline.__new__(Timeline)
    revived.__dict__.update(state)
    assert revived.columns is None and revived == old


# -- the aggregates: as they were computed walking the events --------------------------
def _busy_by_events(timeline):
    groups: dict = defaultdict(list)
    instruction_time: dict = defaultdict(float)
    for e in timeline.events:
        g = "dma" if e.track.startswith("dma") else e.track
        groups[(e.core, g)].append((e.start, e.end))
        instruction_time[g] += e.end - e.start
    spans = {k: summary.merged(v) for k, v in groups.items()}
    total = summary.length(summary.merged(x for v in spans.values() for x in v))
    return list(spans.items()), list(instruction_time.items()), total


def _cc_by_events(timeline):
    spans = [(e.start, e.end) for e in timeline.events if e.track == "cc"]
    active = summary.length(summary.merged(spans))
    return {"cc_op_time": sum(e - s for s, e in spans) * 1e-9,
            "cc_op_active_time": active * 1e-9,
            "cc_op_active_time_percent": summary._pct(active, float(timeline.total_time)),
            "cc_op_count": len(spans)}


def _queues_by_events(timeline):
    return len({(e.core, e.track) for e in timeline.events if e.track.startswith("dma")})


def _aggregates(timeline):
    busy = summary.Busy(timeline)
    s = {"total_time": 1.0}
    prog = type("P", (), {"instructions": []})()
    summary._dma(s, prog, timeline, busy, 1)
    return ((list(busy.spans.items()), list(busy.instruction_time.items()), busy.total),
            summary.cc_metrics(timeline), s["dma_queue_count"],
            [timeline.busy_time(p, c) for p in ("dma", "tensor", "vector", "cc", "")
             for c in (None, 0, 1)])


def _by_events(timeline):
    return (_busy_by_events(timeline), _cc_by_events(timeline), _queues_by_events(timeline),
            [busy_time([e for e in timeline.events if e.track.startswith(p)
                        and (c is None or e.core == c)])
             for p in ("dma", "tensor", "vector", "cc", "") for c in (None, 0, 1)])


@pytest.mark.parametrize("name", list(RUNS))
def test_aggregates_from_columns_equal_walking_the_events(name):
    ref, got = _pair(name)
    fresh = compiled.schedule_compiled(*_program_of(name))
    expected = _by_events(ref)
    assert _aggregates(fresh) == expected
    assert "events" not in fresh.__dict__  # the aggregates read the columns only
    assert _aggregates(ref) == expected  # and from the Events


def _program_of(name):
    run = RUNS[name]()
    return run.program, load_chip(run.chip), run.program.issue


def test_aggregates_on_awkward_spans():
    """Overlapping, touching, nested, empty and reversed spans on two cores, DMA queues
    merged into one group, collectives; the sums' order matters (1e16 + 1 - 1e16)."""
    rng = np.random.default_rng(5)
    tracks = ["tensor", "vector", "dma:q0", "dma:q1", "cc", "scalar"]
    events = []
    for i in range(400):
        s = float(rng.choice([0.0, 1e16, rng.uniform(0, 100), round(rng.uniform(0, 100))]))
        d = float(rng.choice([0.0, 1.0, -0.5, 1e-7, rng.uniform(0, 20), 3.0]))
        events.append(Event(i, int(rng.integers(0, 2)), str(rng.choice(tracks)), s, s + d))
    tl = Timeline(None, events, max(e.end for e in events), [])
    assert _aggregates(tl) == _by_events(tl)
    empty = Timeline(None, [], 0.0, [])
    assert _aggregates(empty) == _by_events(empty)


def test_fallback_keeps_events(monkeypatch):
    """A program the compiled core does not model (a synchronisation group across the
    cores): the Python scheduler's timeline, of Events, and the aggregates read them."""
    from trnsim.timing import schedule
    _, run = trnsim.run_kernel(barrier_kernel, (np.zeros((128, 64), np.float32),),
                               chip="trn2", numerics=False, lnc=2)
    chip = load_chip("trn2")
    if not _Scheduler(run.program, chip).groups:
        pytest.skip("no synchronisation group recorded")
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    tl = schedule(run.program, chip)
    assert tl.columns is None and "events" in tl.__dict__
    assert _aggregates(tl) == _by_events(tl)


# -- the report's and the insights' per-track aggregates ---------------------------------
def _cores_and_tracks_by_events(timeline):
    out: dict = {}
    for e in timeline.events:
        out.setdefault(e.core, set()).add(e.track)
    if not out:
        out[0] = set()
    return {c: sorted(set(views.ENGINE_ORDER) | t, key=views.track_sort_key)
            for c, t in sorted(out.items())}


def _utilization_by_events(prof):
    tl = prof.timeline
    total = report._total_ns(prof) or 1.0
    groups: dict = {}
    for e in tl.events:
        groups.setdefault((e.core, e.track), []).append(e)
    out = []
    for core, tracks in _cores_and_tracks_by_events(tl).items():
        for track in tracks:
            busy = busy_time(groups.get((core, track), []))
            out.append({"core": core, "label": views.track_label(track),
                        "group": views.track_group(track), "pct": 100.0 * busy / total,
                        "busy": busy})
        dma = [e for t in tracks if t.startswith(views.DMA_PREFIX)
               for e in groups.get((core, t), [])]
        if dma:
            busy = busy_time(dma)
            out.append({"core": core, "label": "DMA (any queue)", "group": "dma",
                        "pct": 100.0 * busy / total, "busy": busy})
    return out


def _report_aggregates(prof):
    return views.cores_and_tracks(prof.timeline), report.utilization(prof)


@pytest.mark.parametrize("name", ["tutorial trn2", "mixed trn3", "strided trn2"])
def test_report_and_insight_aggregates(name):
    from trnsim.profile.profile import Profile
    program, chip, issue = _program_of(name)
    fresh = compiled.schedule_compiled(program, chip, issue)
    ref = _Scheduler(program, chip, issue, {}).run()
    got = _report_aggregates(Profile(program, fresh))
    assert "events" not in fresh.__dict__
    prof = Profile(program, ref)
    assert got == _report_aggregates(prof)
    assert got == (_cores_and_tracks_by_events(ref), _utilization_by_events(prof))
    ctx = [insights._Context(program, tl, Profile(program, tl).summary) for tl in (fresh, ref)]
    assert insights.engine_imbalance(ctx[0]) == insights.engine_imbalance(ctx[1])


def test_report_aggregates_on_awkward_spans():
    from trnsim.profile.profile import Profile
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 4), np.float32),),
                               chip="trn2", numerics=False)
    rng = np.random.default_rng(7)
    tracks = ["tensor", "vector", "dma:q0", "dma:q1", "gpsimd"]
    events = []
    for i in range(len(run.program)):
        s = float(rng.choice([0.0, 1e16, rng.uniform(0, 100)]))
        d = float(rng.choice([0.0, 1.0, -0.5, rng.uniform(0, 20)]))
        events.append(Event(i, int(rng.integers(0, 2)), str(rng.choice(tracks)), s, s + d))
    prof = Profile(run.program, Timeline(load_chip("trn2"), events, 50.0, []))
    assert _report_aggregates(prof) == (_cores_and_tracks_by_events(prof.timeline),
                                        _utilization_by_events(prof))


def _imbalance_by_events(c):
    """profile/insights.py engine_imbalance as it was, walking the events."""
    from trnsim.isa.engines import TABLE
    best = None
    for core in range(c.ncores):
        evs = [e for e in c.timeline.events if e.core == core]
        busy = {x: busy_time([e for e in evs if e.track == x])
                for x in ("vector", "scalar", "gpsimd")}
        for x in busy:
            movable = defaultdict(list)
            for e in evs:
                ins = c.ins[e.index]
                if e.track != x or ins.attrs.get("engines") or ins.opcode not in TABLE:
                    continue
                for y in TABLE[ins.opcode](ins, c.chip.generation) - {x}:
                    movable[y].append((ins, e.end - e.start))
            for y, items in movable.items():
                shed = min(sum(d for _, d in items), (busy[x] - busy[y]) / 2)
                value = 100.0 * shed / c.t if c.t > 0 else 0.0
                if value >= insights.IMBALANCE_PERCENT and (best is None or value > best[0]):
                    best = (value, x, y, busy, items)
    return best


def test_engine_imbalance_on_unpinned_work():
    """Compute instructions unpinned (no `engines` attribute) and crowded onto VectorE on
    two cores: the insight fires, with the busy times and durations walking the events
    gives."""
    from trnsim.profile.profile import Profile
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 16), np.float32),),
                               chip="trn2", numerics=False)
    rng = np.random.default_rng(3)
    events, t = [], 0.0
    for i, ins in enumerate(run.program.instructions):
        ins.attrs.pop("engines", None)
        compute = ins.engine in ("vector", "scalar", "gpsimd")
        d = float(rng.uniform(1, 20))
        track = ("scalar" if i % 7 == 0 else "vector") if compute else "dma:q0"
        events.append(Event(i, i % 2, track, t, t + d))
        t += d * 0.3
    prof = Profile(run.program, Timeline(load_chip("trn2"), events, t + 20.0, []))
    c = insights._Context(run.program, prof.timeline, prof.summary)
    got = insights.engine_imbalance(c)
    value, x, y, busy, items = _imbalance_by_events(c)
    assert got is not None and (got.value, got.criticality) == (value, value / 100)
    names = {"vector": "VectorE", "scalar": "ScalarE", "gpsimd": "GpSimd"}
    assert got.message.startswith(f"{names[x]} was busy {100 * busy[x] / c.t:.0f}% of the "
                                  f"run and {names[y]} {100 * busy[y] / c.t:.0f}%; "
                                  f"{len(items)} instructions")
    assert got.locations == insights._ranked(items)


@pytest.mark.parametrize("name", list(RUNS))
def test_summary_and_insights_read_the_columns(name):
    """A profile's summary and insights from a timeline kept as columns: no Events made,
    and what the Python scheduler's timeline (Events) gives."""
    from trnsim.profile.profile import Profile
    program, chip, issue = _program_of(name)
    fresh = compiled.schedule_compiled(program, chip, issue)
    got = Profile(program, fresh)
    ref = Profile(program, _Scheduler(program, chip, issue, {}).run())
    assert got.summary == ref.summary
    assert got.all_insights == ref.all_insights
    assert "events" not in fresh.__dict__
    a, b = fresh.spans(), Spans.of_events(ref.timeline.events)
    assert [a.names[t] for t in a.track] == [b.names[t] for t in b.track]
    for f in ("index", "core", "start", "end", "ready", "producer"):
        assert getattr(a, f).tolist() == getattr(b, f).tolist(), f


def test_spans_follow_the_events_once_read():
    """Timeline.spans: from the columns until the events are read, then from the events
    list (again when it is replaced or changes length)."""
    ref, _ = _pair("mixed trn2")
    program, chip, issue = _program_of("mixed trn2")
    tl = compiled.schedule_compiled(program, chip, issue)
    before = tl.spans()
    assert tl.spans() is before and before.index.tolist() == list(range(len(program)))
    events = tl.events
    after = tl.spans()
    assert after is not before and after.end.tolist() == before.end.tolist()
    events.pop()
    assert tl.spans().end.tolist() == before.end.tolist()[:-1]
    tl.events = ref.events[:3]
    assert tl.spans().index.tolist() == [0, 1, 2]


def _in_flight_by_events(timeline, core):
    deltas: dict = {}
    for e in timeline.events:
        if e.core == core and e.track.startswith(views.DMA_PREFIX) and e.end > e.start:
            deltas[e.start] = deltas.get(e.start, 0) + 1
            deltas[e.end] = deltas.get(e.end, 0) - 1
    n, times, level = 0, [], []
    for t in sorted(deltas):
        n += deltas[t]
        times.append(t)
        level.append(n)
    return times, level


def test_dma_in_flight_counter():
    """profile/perfetto.py dma_in_flight: the counter walking the events gave, on a
    compiled timeline and on shared, empty and reversed spans."""
    from trnsim.profile.perfetto import dma_in_flight
    _, got = _pair("mixed trn3")
    fresh = compiled.schedule_compiled(*_program_of("mixed trn3"))
    for core in (0, 1):
        assert dma_in_flight(fresh.spans(), core) == _in_flight_by_events(got, core)
    rng = np.random.default_rng(11)
    events = [Event(i, int(rng.integers(0, 2)), str(rng.choice(["dma:a", "dma:b", "vector"])),
                    s, s + float(rng.choice([0.0, -1.0, 2.0, 5.0])))
              for i, s in enumerate(rng.integers(0, 30, 300).astype(float).tolist())]
    tl = Timeline(None, events, 40.0, [])
    for core in (0, 1):
        times, level = dma_in_flight(tl.spans(), core)
        assert (times, level) == _in_flight_by_events(tl, core) and times
        assert all(type(n) is int for n in level)
