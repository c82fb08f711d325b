"""What a multi-rank profile (trnsim.profile_ranks) shows: the Perfetto trace (a process
per rank with its Collectives track, a Fabric process with a track per replica group),
Neuron Explorer's cc_op_* summary metrics against the CC track's events, and the HTML
report (per-rank table, collectives table, the scatter of collective durations with its
outliers marked). Small kernels on 3-4 ranks, numerics off."""
import json
import re
import statistics
from types import SimpleNamespace

import numpy as np
import pytest

import trnsim
import trnsim.nki.collectives as nccl
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.cli import format_summary
from trnsim.profile import views
from trnsim.profile.insights import collective_outliers, ranks_insights
from trnsim.profile.report import render_ranks_report

from test_profile_perfetto import validate_trace  # noqa: E402

LATE_RANK = 2


def _all_reduce(x, rg):
    src = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.private_hbm)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=src, src=x)
    nccl.all_reduce(srcs=[src], dsts=[out], replica_group=rg, op=nl.add)
    return out


def sizes_kernel(small, big, rg):
    """Three all-reduces of `small`, then one of `big`: the big one is an outlier."""
    for _ in range(3):
        out = _all_reduce(small, rg)
    _all_reduce(big, rg)
    return out


def late_rank_kernel(x, rg):
    """Rank LATE_RANK copies its operand 8 times before the all-reduce: the others wait."""
    src = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.private_hbm)
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    for _ in range(8 if nccl.rank_id().value == LATE_RANK else 1):
        nisa.dma_copy(dst=src, src=x)
    nccl.all_reduce(srcs=[src], dsts=[out], replica_group=rg, op=nl.add)
    return out


def _run(kernel, shapes, n):
    rg = nccl.ReplicaGroup([list(range(n))])
    args = tuple(np.ones(s, np.float32) for s in shapes)
    return trnsim.profile_ranks(kernel, world_size=n, topology="trn2-16", numerics=False,
                                per_rank_inputs=[((*args, rg), {}) for _ in range(n)])


@pytest.fixture(scope="module")
def sizes():
    return _run(sizes_kernel, [(128, 64), (128, 4096)], 4)


@pytest.fixture(scope="module")
def late():
    return _run(late_rank_kernel, [(128, 256)], 3)


def _cc_events(profile):
    return [e for e in profile.timeline.events if e.track == views.CC_TRACK]


# ---------------------------------------------------------------- the trace

def _trace(rp, tmp_path):
    with open(rp.to_perfetto(tmp_path / "ranks.json")) as f:
        return json.load(f)


def test_trace_has_a_process_per_rank_and_a_fabric_process(sizes, tmp_path):
    doc = _trace(sizes, tmp_path)
    v = validate_trace(doc)
    names = sorted(v["procs"].values())
    assert names == sorted([f"Rank {r} \u00b7 chip {r} \u00b7 NeuronCore (trn2)"
                            for r in range(4)] + ["Fabric (trn2-16)"])
    fabric = next(p for p, n in v["procs"].items() if n.startswith("Fabric"))
    assert v["threads"][fabric] == {1: "ranks 0-3"}
    for pid, name in v["procs"].items():
        if pid != fabric:
            tracks = [v["threads"][pid][t] for t in sorted(v["threads"][pid])]
            assert tracks[:6] == ["Tensor", "Vector", "Scalar", "GpSimd", "Sync",
                                  "Collectives"]
    meta = doc["otherData"]
    assert (meta["world_size"], meta["collectives"], meta["topology"]) == (4, 4, "trn2-16")


def test_rank_tracks_hold_the_collectives(sizes, tmp_path):
    v = validate_trace(_trace(sizes, tmp_path))
    by_rank = {}
    for s in v["slices"]:
        if v["threads"][s["pid"]][s["tid"]] == "Collectives":
            by_rank.setdefault(s["pid"], []).append(s)
    assert sorted(len(x) for x in by_rank.values()) == [4] * 4
    for pid, slices in by_rank.items():
        rank = int(v["procs"][pid].split()[1])
        events = _cc_events(sizes.ranks[rank])
        assert [s["ts"] for s in slices] == [round(e.start / 1000, 3) for e in events]
        assert all(s["name"] == "all_reduce" and s["args"]["cost"]["algorithm"]
                   for s in slices)


def test_fabric_slices_carry_the_collective(late, tmp_path):
    v = validate_trace(_trace(late, tmp_path))
    (c,) = late.collectives
    (s,) = [s for s in v["slices"] if s["cat"] == "collective"]
    a = s["args"]
    assert (s["name"], a["kind"], a["algorithm"], a["bytes"]) == \
        ("all_reduce", "all_reduce", c.algorithm, c.nbytes)
    assert s["ts"] == round(c.start / 1000, 3) and a["duration_ns"] == round(c.duration, 3)
    assert a["busbw_GBps"] == pytest.approx(c.bus_bytes / c.duration, abs=1e-3)
    assert a["algbw_GBps"] == pytest.approx(c.nbytes / c.duration, abs=1e-3)
    waits = {m: x["wait_ns"] for m, x in a["members"].items()}
    assert waits[f"rank {LATE_RANK}"] == 0
    assert all(w == pytest.approx(c.start - c.arrivals[int(m.split()[1])], abs=1e-3)
               and w > 0 for m, w in waits.items() if m != f"rank {LATE_RANK}")
    # an arrow from each member's collective slice to the transfer
    arrows = [p for p in v["flows"].values() if p["s"]["cat"] == "collective"]
    assert len(arrows) == 3 and all(p["f"]["pid"] == s["pid"] for p in arrows)


def test_single_rank_trace_is_unchanged_by_the_rank_layout(late, tmp_path):
    """A rank's own trace: its core is pid 1, named as any profile's."""
    v = validate_trace(json.load(open(late.ranks[0].to_perfetto(tmp_path / "r0.json"))))
    assert v["procs"] == {1: "NeuronCore 0 (trn2)"}
    assert v["threads"][1][6] == "Collectives"


# ---------------------------------------------------------------- the summary

def test_cc_metrics_are_the_cc_events(late):
    for prof in late.ranks:
        events = _cc_events(prof)
        total = prof.timeline.total_time
        s = prof.summary
        assert s["cc_op_count"] == len(events) == 1
        assert s["cc_op_time"] == pytest.approx(sum(e.end - e.start for e in events) * 1e-9)
        assert s["cc_op_active_time"] == pytest.approx(s["cc_op_time"])
        assert s["cc_op_active_time_percent"] == pytest.approx(
            100 * (events[0].end - events[0].start) / total)
    rows = late.summary["per_rank"]
    assert [r["cc_op_time"] for r in rows] == [p.summary["cc_op_time"] for p in late.ranks]
    assert late.summary["slowest_rank"] == LATE_RANK  # the one the others waited for
    assert rows[LATE_RANK]["cc_wait_time"] == 0 < rows[0]["cc_wait_time"]


def test_cc_active_time_merges_overlapping_collectives():
    from trnsim.profile.summary import cc_metrics
    events = [SimpleNamespace(track="cc", start=s, end=e) for s, e in
              ((0, 40), (20, 60), (80, 90))]
    m = cc_metrics(SimpleNamespace(events=events, total_time=100))
    assert m["cc_op_count"] == 3
    assert m["cc_op_time"] == pytest.approx(90e-9)
    assert m["cc_op_active_time"] == pytest.approx(70e-9)
    assert m["cc_op_active_time_percent"] == pytest.approx(70.0)


def test_single_rank_profiles_have_zero_cc_metrics():
    x = np.ones((128, 64), np.float32)

    def copy(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=x)
        return out
    s = trnsim.profile(copy, x, numerics=False).summary
    assert [s[k] for k in ("cc_op_time", "cc_op_active_time", "cc_op_active_time_percent",
                           "cc_op_count")] == [0.0, 0.0, 0.0, 0]


def test_explorer_summary_exports_the_cc_metrics(late, tmp_path):
    late.ranks[0].to_explorer(tmp_path, format="json")
    (row,) = json.load(open(tmp_path / "Summary.json"))
    s = late.ranks[0].summary
    assert row["cc_op_count"] == 1 and row["cc_op_time"] == pytest.approx(s["cc_op_time"])
    assert row["cc_cores_instruction_count"] is None


def test_cli_summary_shows_no_collectives_engine(late):
    text = format_summary(late.ranks[0].summary)
    engines = text.split(" Engines\n")[1].split("\n\n")[0]
    assert "cc" not in engines and "cc_op_count" in text


# ---------------------------------------------------------------- the report

def test_outliers_are_over_twice_their_kinds_median(sizes):
    durations = [c.duration for c in sizes.collectives]
    median = statistics.median(durations)
    (big,) = collective_outliers(sizes.collectives)
    assert big.nbytes == 128 * 4096 * 4 and big.duration > 2 * median
    (insight,) = ranks_insights(sizes)
    assert insight.rule == "collective_outliers" and "1 of 4" in insight.message
    assert insight.locations[0].endswith(":" + str(_all_reduce.__code__.co_firstlineno + 4))


def test_report_has_the_scatter_and_marks_the_outlier(sizes):
    text = render_ranks_report(sizes)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"<link\b|<img\b|<script\b|\bsrc\s*=|url\(", text)
    scatter = re.search(r'<svg class="chart scatter".*?</svg>', text, re.S).group(0)
    points = re.findall(r"<circle( class=\"outlier\")?[^>]*>", scatter)
    assert len(points) == 4 and sum(1 for p in points if p) == 1
    assert scatter.count('class="threshold"') == 1  # one kind: one 2x-median line
    outlier_rows = re.findall(r"<tr class='outlier'>(.*?)</tr>", text)
    assert len(outlier_rows) == 1 and "2.00 MiB" in outlier_rows[0]
    assert "Collective outliers" in text
    for section in ("scatter", "ranks", "kinds", "collectives", "insights"):
        assert f'id="{section}"' in text


def test_report_rank_table_highlights_the_slowest_rank(late, tmp_path):
    path = late.report(tmp_path / "late.html")
    text = open(path, encoding="utf-8").read()
    rows = re.findall(r"<tr class='(\w*)'><td class='l'>(\d+)</td>", text)
    assert [int(r) for cls, r in rows if cls == "slowest"] == [LATE_RANK]
    assert "3 ranks on trn2-16" in text and "scheduling rounds" in text
    assert not collective_outliers(late.collectives)
    assert "No collective stands out" in text


def test_rank_report_draws_the_collectives_track(late):
    from trnsim.profile.report import render_report, timeline_data
    prof = late.ranks[0]
    labels = [r["label"] for r in timeline_data(prof)["rows"]]
    assert labels.index("Collectives") == labels.index("Sync") + 1
    text = render_report(prof)
    assert ">Collectives</span>" in text and "in collectives" in text


def test_each_replica_group_has_a_fabric_track(tmp_path):
    rg = nccl.ReplicaGroup([[0, 2], [1, 3]])
    args = (np.ones((128, 64), np.float32), np.ones((128, 128), np.float32), rg)
    rp = trnsim.profile_ranks(sizes_kernel, world_size=4, topology="trn2-16",
                              numerics=False, per_rank_inputs=[(args, {})] * 4)
    v = validate_trace(_trace(rp, tmp_path))
    fabric = max(v["procs"])
    assert v["threads"][fabric] == {1: "ranks 0,2", 2: "ranks 1,3"}
    per_track = {}
    for s in v["slices"]:
        if s["pid"] == fabric:
            per_track.setdefault(s["tid"], []).append(s["args"]["group"])
    assert per_track == {1: [[0, 2]] * 4, 2: [[1, 3]] * 4}


def test_long_tables_fold_away(late, monkeypatch):
    from trnsim.profile import report
    monkeypatch.setattr(report, "MAX_ROWS", 2)
    text = render_ranks_report(late)
    assert "<summary>1 more ranks</summary>" in text
    assert text.count("<tr class='slowest'>") == 1


def test_overlapping_collectives_of_a_group_get_a_track_each():
    from trnsim.profile.perfetto import _fabric_events
    from trnsim.timing.ranks import Collective
    colls = [Collective("all_gather", (0, 1), seq, {0: seq, 1: seq}, 1024, "ring", 1024.0,
                        {0: 0.0, 1: 0.0}, start, end)
             for seq, (start, end) in enumerate(((0.0, 500.0), (100.0, 300.0)))]
    rp = SimpleNamespace(collectives=colls, topology=SimpleNamespace(name="t"))
    head, body = _fabric_events(rp, 9, {}, 0)
    tracks = {e["tid"]: e["args"]["name"] for e in head if e["name"] == "thread_name"}
    assert tracks == {1: "ranks 0-1", 2: "ranks 0-1 #2"}
    assert [(s["tid"], s["args"]["seq"]) for s in body] == [(1, 0), (2, 1)]
