"""The Perfetto / Chrome Trace Event export (trnsim.profile.perfetto).

The hand-built profile below has known times, waits and bytes, so the trace's events,
tracks, flows and counters are checked against values computed here. The trace is
validated strictly against the Trace Event format (required keys per phase, metadata
naming one track per engine and DMA queue, flow ids paired and bound inside their
slices, no overlapping slices on a track). The perfetto Python package's TraceProcessor
needs a trace_processor_shell binary, which it downloads from the internet: that test
runs only where a binary is at hand ($TRNSIM_TRACE_PROCESSOR or trace_processor_shell on
PATH) and is skipped otherwise.
"""
import json
import os
import shutil
import types

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.timing
from trnsim.machine.access import Access
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program
from trnsim.profile.perfetto import write_perfetto
from trnsim.timing.timeline import Event, Timeline, Wait
from trnsim.examples import load_example

ENGINES = ("Tensor", "Vector", "Scalar", "GpSimd", "Sync")
PHASES = {"X", "M", "s", "f", "C"}

KERNEL_SRC = """\
a = load(A)
b = load(B)
acc = matmul(a, b)
acc2 = matmul(a, b)
out = copy(acc2)
store(out)
"""


def _acc(role, mode, space, nbytes, core=0, lo=0, shape=(128, 64), dtype="bfloat16",
         tensor=""):
    elems = int(np.prod(shape[1:])) if space != "hbm" else int(np.prod(shape))
    return Access(role, mode, space, core, tensor, dtype, tuple(shape), (), 0, 0,
                  128 if space != "hbm" else 1, lo, lo + nbytes, elems, nbytes,
                  nbytes // shape[0])


def handmade(tmp_path):
    """Two cores; DMA queues qSyncIO (two transfers in flight) and qScalarIO; waits
    within and across tracks and across cores; a throttle window."""
    src = tmp_path / "kern.py"
    src.write_text(KERNEL_SRC)
    loc = [SourceLocation(str(src), n, "kern") for n in range(1, 7)]
    chip = trnsim.load_chip("trn2")
    I = Instruction  # noqa: E741
    ins = [
        I(0, 0, "dma", "dma_copy", (_acc("src", "r", "hbm", 65536, tensor="A"),),
          (_acc("dst", "w", "sbuf", 65536),), loc[0], {}, "qSyncIO"),
        I(1, 0, "dma", "dma_copy", (_acc("src", "r", "hbm", 32768, lo=65536, tensor="B"),),
          (_acc("dst", "w", "sbuf", 32768, lo=65536),), loc[1], {}, "qSyncIO"),
        I(2, 0, "tensor", "nc_matmul", (_acc("stationary", "r", "sbuf", 65536),
                                        _acc("moving", "r", "sbuf", 32768, lo=65536)),
          (_acc("dst", "w", "psum", 4096, dtype="float32"),), loc[2], {"K": 128}),
        I(3, 0, "tensor", "nc_matmul", (), (_acc("dst", "w", "psum", 4096),), loc[3], {}),
        I(4, 0, "vector", "tensor_copy", (_acc("src", "r", "psum", 4096),),
          (_acc("dst", "w", "sbuf", 4096),), loc[4], {}),
        I(5, 0, "dma", "dma_copy", (_acc("src", "r", "sbuf", 16384),),
          (_acc("dst", "w", "hbm", 16384, lo=1 << 20, tensor="out"),), loc[5], {},
          "qScalarIO"),
        I(6, 1, "vector", "tensor_tensor", (), (_acc("dst", "w", "sbuf", 2048, core=1),),
          loc[4], {}),
        I(7, 1, "dma", "dma_copy", (_acc("src", "r", "sbuf", 2048, core=1),),
          (_acc("dst", "w", "hbm", 2048, lo=2 << 20),), loc[5], {}, "qSyncIO"),
        I(8, 0, "tensor", "nc_matmul", (), (), loc[3], {}),
    ]
    ev = [
        Event(0, 0, "dma:qSyncIO", 0.0, 1000.0, 0.0, (), {"fixed_ns": 1300}, (0, 1)),
        Event(1, 0, "dma:qSyncIO", 200.0, 1400.0, 0.0),
        Event(2, 0, "tensor", 1400.0, 1800.0, 1400.0,
              (Wait(0, "RAW", "sbuf"), Wait(1, "RAW", "sbuf")), {"cycles": 960}),
        Event(3, 0, "tensor", 1800.0, 2000.0, 1800.0, (Wait(2, "WAW", "psum"),)),
        Event(4, 0, "vector", 2000.0, 2300.0, 2000.0, (Wait(3, "RAW", "psum"),)),
        Event(5, 0, "dma:qScalarIO", 2300.0, 3300.0, 2300.0, (Wait(4, "RAW", "sbuf"),)),
        Event(6, 1, "vector", 0.0, 500.0),
        Event(7, 1, "dma:qSyncIO", 500.0, 700.0, 500.0, (Wait(6, "RAW", "sbuf"),)),
        Event(8, 0, "tensor", 2000.0, 2100.0, 700.0, (Wait(7, "order"),)),
    ]
    program = Program(chip, 2, ins)
    tl = Timeline(chip, ev, 3300.0, [(1400.0, 1600.0, 0.5)])
    return types.SimpleNamespace(program=program, timeline=tl, chip=chip, name="kern",
                                 total_time=3.3e-6, summary={}, insights=[])


# ---------------------------------------------------------------- a strict validator

def validate_trace(doc) -> dict:
    """Check a Chrome Trace Event document strictly; returns {pid: {tid: name}},
    {pid: process name}, the X events and the flow pairs."""
    assert isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list)
    assert doc.get("displayTimeUnit") in (None, "ms", "ns")
    threads, procs, slices, flows = {}, {}, [], {}
    for e in doc["traceEvents"]:
        ph = e.get("ph")
        assert ph in PHASES, e
        assert isinstance(e.get("pid"), int), e
        if ph == "M":
            assert e["name"] in ("process_name", "thread_name", "process_sort_index",
                                 "thread_sort_index"), e
            assert isinstance(e["args"], dict)
            if e["name"] == "thread_name":
                assert isinstance(e["tid"], int) and isinstance(e["args"]["name"], str)
                assert e["tid"] not in threads.setdefault(e["pid"], {}), "tid named twice"
                threads[e["pid"]][e["tid"]] = e["args"]["name"]
            elif e["name"] == "process_name":
                procs[e["pid"]] = e["args"]["name"]
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
        if ph == "X":
            assert isinstance(e["name"], str) and e["name"], e
            assert isinstance(e["tid"], int)
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
            assert isinstance(e.get("args", {}), dict)
            slices.append(e)
        elif ph in ("s", "f"):
            assert isinstance(e["id"], int) and e["cat"] and e["name"], e
            assert isinstance(e["tid"], int)
            if ph == "f":
                assert e.get("bp") == "e", e
            pair = flows.setdefault(e["id"], {})
            assert ph not in pair, f"flow id {e['id']} has two '{ph}' events"
            pair[ph] = e
        elif ph == "C":
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values())
    # every slice is on a named thread of a named process
    for s in slices:
        assert s["pid"] in procs and s["tid"] in threads.get(s["pid"], {}), s
    # flows: paired, same name/cat, each end inside a slice of its thread
    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, f"flow {fid} unpaired"
        assert pair["s"]["name"] == pair["f"]["name"] and pair["s"]["cat"] == pair["f"]["cat"]
        assert pair["s"]["ts"] <= pair["f"]["ts"] + 1e-9
        for end in pair.values():
            assert _slice_at(slices, end["pid"], end["tid"], end["ts"]) is not None, end
    # per track: slices sorted by ts never overlap (and so nest trivially)
    by_track = {}
    for s in slices:
        by_track.setdefault((s["pid"], s["tid"]), []).append(s)
    for key, evs in by_track.items():
        evs.sort(key=lambda s: s["ts"])
        for a, b in zip(evs, evs[1:]):
            assert a["ts"] + a["dur"] <= b["ts"] + 1e-9, f"overlap on {key}: {a} {b}"
    return {"threads": threads, "procs": procs, "slices": slices, "flows": flows}


def _slice_at(slices, pid, tid, ts):
    for s in slices:
        if s["pid"] == pid and s["tid"] == tid and s["ts"] - 1e-9 <= ts <= s["ts"] + s["dur"] + 1e-9:
            return s
    return None


def _load(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- the hand-built profile

def test_tracks_one_per_engine_and_queue_grouped_by_core(tmp_path):
    prof = handmade(tmp_path)
    v = validate_trace(_load(write_perfetto(prof, tmp_path / "t.json")))
    assert v["procs"] == {1: "NeuronCore 0 (trn2)", 2: "NeuronCore 1 (trn2)"}
    names0 = sorted(v["threads"][1].values())
    assert names0 == sorted(ENGINES + ("DMA qScalarIO", "DMA qSyncIO", "DMA qSyncIO #2"))
    assert sorted(v["threads"][2].values()) == sorted(ENGINES + ("DMA qSyncIO",))


def test_one_slice_per_instruction_with_times_operands_and_line(tmp_path):
    prof = handmade(tmp_path)
    v = validate_trace(_load(write_perfetto(prof, tmp_path / "t.json")))
    slices = {s["args"]["index"]: s for s in v["slices"]}
    assert sorted(slices) == list(range(len(prof.program.instructions)))
    names = v["threads"]
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        s = slices[ins.index]
        assert s["name"] == ins.opcode
        assert s["ts"] == pytest.approx(e.start / 1000.0, abs=1e-6)  # microseconds
        assert s["dur"] == pytest.approx((e.end - e.start) / 1000.0, abs=1e-6)
        assert s["pid"] == e.core + 1
        assert s["args"]["nki_source_location"] == f"kern.py:{ins.location.line}"
        assert s["args"]["source"] == KERNEL_SRC.splitlines()[ins.location.line - 1]
        assert s["args"]["bytes"] == sum(a.bytes for a in ins.writes)
        track = names[s["pid"]][s["tid"]]
        if e.track.startswith("dma:"):
            assert track.startswith("DMA " + e.track[4:])
        else:
            assert track == e.track.replace("gpsimd", "GpSimd").capitalize()
    s0 = slices[0]
    assert s0["args"]["operands"] == ["src: A bfloat16@hbm[128,64] 65536 B",
                                      "dst: bfloat16@sbuf p0:128[128,64] 65536 B"]
    assert s0["args"]["cost"] == {"fixed_ns": 1300} and s0["args"]["dma_engines"] == [0, 1]
    # the second transfer overlaps the first on qSyncIO: it goes to the queue's 2nd track
    assert names[1][slices[1]["tid"]] == "DMA qSyncIO #2"
    assert names[1][slices[0]["tid"]] == "DMA qSyncIO"
    assert slices[8]["args"]["queued_ns"] == pytest.approx(1300.0)
    assert slices[2]["args"]["waits"] == ["#0 dma_copy (RAW sbuf)", "#1 dma_copy (RAW sbuf)"]


def test_flow_arrows_for_waits_across_tracks(tmp_path):
    prof = handmade(tmp_path)
    v = validate_trace(_load(write_perfetto(prof, tmp_path / "t.json")))
    slices = {s["args"]["index"]: s for s in v["slices"]}
    got = set()
    for pair in v["flows"].values():
        src = _slice_at(v["slices"], pair["s"]["pid"], pair["s"]["tid"], pair["s"]["ts"])
        dst = _slice_at(v["slices"], pair["f"]["pid"], pair["f"]["tid"], pair["f"]["ts"])
        got.add((src["args"]["index"], dst["args"]["index"], pair["s"]["name"]))
    # 3 <- 2 is on the same track (program order): no arrow
    assert got == {(0, 2, "RAW sbuf"), (1, 2, "RAW sbuf"), (3, 4, "RAW psum"),
                   (4, 5, "RAW sbuf"), (6, 7, "RAW sbuf"), (7, 8, "order")}
    assert slices[8]["pid"] == 1 and slices[7]["pid"] == 2  # across cores


def test_hbm_bandwidth_and_throttle_counters(tmp_path):
    prof = handmade(tmp_path)
    doc = _load(write_perfetto(prof, tmp_path / "t.json"))
    validate_trace(doc)

    def value_at(pid, name, key, t_us):
        pts = sorted((e["ts"], e["args"][key]) for e in doc["traceEvents"]
                     if e["ph"] == "C" and e["pid"] == pid and e["name"] == name)
        val = None
        for ts, x in pts:  # a counter holds its value until the next sample
            if ts <= t_us:
                val = x
        return val
    bw = "HBM bandwidth (GB/s)"
    r0, r1 = 65536 / 1000.0, 32768 / 1200.0  # bytes/ns == GB/s
    assert value_at(1, bw, "read", 0.1) == pytest.approx(r0, rel=1e-4)
    assert value_at(1, bw, "read", 0.5) == pytest.approx(r0 + r1, rel=1e-4)
    assert value_at(1, bw, "read", 1.2) == pytest.approx(r1, rel=1e-4)
    assert value_at(1, bw, "read", 2.0) == 0
    assert value_at(1, bw, "write", 2.5) == pytest.approx(16384 / 1000.0, rel=1e-4)
    assert value_at(2, bw, "write", 0.6) == pytest.approx(2048 / 200.0, rel=1e-4)
    assert value_at(1, "DMA transfers in flight", "transfers", 0.5) == 2
    assert value_at(1, "DMA transfers in flight", "transfers", 1.7) == 0
    thr = "TensorE throttle (% of peak)"
    assert value_at(1, thr, "allowed", 1.5) == 50.0
    assert value_at(1, thr, "allowed", 1.7) == 100.0


def test_write_into_a_directory_and_metadata(tmp_path):
    prof = handmade(tmp_path)
    path = write_perfetto(prof, tmp_path)
    assert os.path.basename(path) == "kern.trace.json"
    doc = _load(path)
    assert doc["otherData"]["chip"] == "trn2" and doc["otherData"]["instructions"] == 9
    assert doc["otherData"]["total_time_ns"] == 3300.0


def test_misaligned_timeline_is_an_error(tmp_path):
    prof = handmade(tmp_path)
    prof.timeline.events.pop()
    with pytest.raises(ValueError, match="align"):
        write_perfetto(prof, tmp_path / "t.json")


# ---------------------------------------------------------------- real kernels

_example = load_example


def _needs_scheduler():
    if getattr(trnsim.timing, "schedule", None) is None:
        pytest.skip("the timing model (trnsim.timing.schedule) is not in this tree")


def test_real_matmul_trace(tmp_path):
    _needs_scheduler()
    ex = _example("tiled_matmul.py")
    lhsT = np.zeros((256, 128), ml_dtypes.bfloat16)
    rhs = np.zeros((256, 512), ml_dtypes.bfloat16)
    prof = trnsim.profile(ex.tiled_matmul_kernel, lhsT, rhs, chip="trn2", numerics=False)
    path = prof.to_perfetto(tmp_path / "mm.json")
    v = validate_trace(_load(path))
    names = set(v["threads"][1].values())
    assert set(ENGINES) <= names and any(n.startswith("DMA q") for n in names)
    by_name = {}
    for s in v["slices"]:
        by_name.setdefault(s["name"], []).append(s)
    n_mm = sum(1 for i in prof.program.instructions if i.opcode == "nc_matmul")
    assert len(by_name["nc_matmul"]) == n_mm == 2
    assert all(v["threads"][1][s["tid"]] == "Tensor" for s in by_name["nc_matmul"])
    assert all(s["args"]["nki_source_location"].startswith("tiled_matmul.py:")
               for s in v["slices"])
    # the first matmul waits for its loads: an arrow from a DMA track into it
    first_mm = min(by_name["nc_matmul"], key=lambda s: s["ts"])
    into = [p for p in v["flows"].values()
            if _slice_at([first_mm], p["f"]["pid"], p["f"]["tid"], p["f"]["ts"])]
    assert into and all(v["threads"][1][p["s"]["tid"]].startswith("DMA") for p in into)
    end = max(s["ts"] + s["dur"] for s in v["slices"])
    assert end == pytest.approx(prof.total_time * 1e6, abs=2e-3)  # ns precision


def test_real_lnc2_trace_has_a_process_per_core(tmp_path):
    _needs_scheduler()
    ex = _example("lnc2_add.py")
    a = np.ones((256, 256), np.float32)
    prof = trnsim.profile(ex.lnc2_add_kernel[2], a, a, chip="trn2", numerics=False)
    v = validate_trace(_load(prof.to_perfetto(tmp_path / "lnc2.json")))
    assert v["procs"] == {1: "NeuronCore 0 (trn2)", 2: "NeuronCore 1 (trn2)"}
    for pid in (1, 2):
        assert set(ENGINES) <= set(v["threads"][pid].values())
        assert any(s["pid"] == pid and s["name"] == "tensor_tensor" for s in v["slices"])


def _trace_processor_bin():
    path = os.environ.get("TRNSIM_TRACE_PROCESSOR") or shutil.which("trace_processor_shell") \
        or shutil.which("trace_processor")
    return path if path and os.access(path, os.X_OK) else None


def test_perfetto_trace_processor_finds_one_track_per_engine(tmp_path):
    tp_mod = pytest.importorskip("perfetto.trace_processor",
                                 reason="the perfetto Python package is not installed")
    binary = _trace_processor_bin()
    if binary is None:
        pytest.skip("no trace_processor_shell binary here (the perfetto package downloads "
                    "one from the internet); set $TRNSIM_TRACE_PROCESSOR to run this test")
    prof = handmade(tmp_path)
    path = write_perfetto(prof, tmp_path / "t.json")
    tp = tp_mod.TraceProcessor(trace=str(path),
                               config=tp_mod.TraceProcessorConfig(bin_path=binary))
    try:
        rows = list(tp.query("select thread.name as t, process.name as p from thread "
                             "join process using (upid) where thread.name is not null"))
        n_slices = list(tp.query("select count(*) as n from slice where dur >= 0"))[0].n
    finally:
        tp.close()
    per_core = {}
    for r in rows:
        per_core.setdefault(r.p, []).append(r.t)
    for core in ("NeuronCore 0 (trn2)", "NeuronCore 1 (trn2)"):
        for eng in ENGINES:
            assert per_core[core].count(eng) == 1
    assert n_slices == len(prof.program.instructions)
