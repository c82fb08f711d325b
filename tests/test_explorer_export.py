"""Neuron Explorer export (trnsim.profile.explorer, Profile.to_explorer, `trnsim profile
--explorer`): the tables a small kernel's profile is written as, checked against Neuron
Explorer's documented schema and against the Profile itself.

DOC_COLUMNS is typed here from the "Profile Parquet Schema Reference" (Neuron SDK 2.31.0,
schema 7.4.0: awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-explorer/
profile-schema-reference.html), table by table, field by field, in the page's order, as
`field:type` with the page's types: int64 / int32 = "integer (int64)" / "(int32)",
float = "number (float)" (a 32-bit float in Parquet), double = "number (double)",
string, bool = "boolean". It does not read the writer's SCHEMA, so a field renamed,
dropped, reordered or retyped on either side fails here.
"""
import json
import os
import sys
from collections import Counter, defaultdict

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import cli
from trnsim.examples import load_example
from trnsim.profile import explorer_schema as schema

DOC_COLUMNS = {
    "Summary": ("total_time:float neuroncore_cycle_count:int64 model_flops:int64 "
        "hardware_flops:int64 transpose_flops:int64 adjusted_hardware_flops:int64 "
        "adjusted_transpose_flops:int64 mm_arithmetic_intensity:float "
        "peak_flops_bandwidth_ratio:float trace_count:int64 event_count:int64 "
        "total_row_count:int64 dma_active_cycles:int64 dma_active_time:float "
        "dma_active_time_percent:float static_dma_active_time:float "
        "dynamic_dma_active_time_percent:float static_dma_active_time_percent:float "
        "dma_transfer_average_bytes:float dma_packet_time:float dma_transfer_time:float "
        "dma_transfer_count:int64 dma_transfer_total_bytes:int64 dma_queue_count:int64 "
        "inputs_and_weights_size_bytes:int64 inputs_outputs_weights_size_bytes:int64 "
        "weight_size_bytes:int64 static_dma_packet_count:int64 static_dma_size:int64 "
        "dynamic_dma_packet_percent:float static_dma_packet_percent:float "
        "dynamic_dma_size_percent:float static_dma_size_percent:float "
        "mbu_estimated_percent:float mbu_min_read_util_percent:float "
        "hbm_write_bytes:int64 hbm_read_bytes:int64 sbuf_write_bytes:int64 "
        "sbuf_read_bytes:int64 spill_save_bytes:int64 spill_reload_bytes:int64 "
        "psum_write_bytes:int64 psum_read_bytes:int64 psum_read_sbuf_write_count:int64 "
        "psum_read_sbuf_write_bytes:int64 input_queue_bytes:int64 "
        "output_queue_bytes:int64 weight_queue_bytes:int64 "
        "software_dynamic_dma_active_time:float "
        "software_dynamic_dma_active_time_percent:float "
        "software_dynamic_dma_packet_count:int64 software_dynamic_dma_size:int64 "
        "software_dynamic_dma_packet_percent:float "
        "software_dynamic_dma_size_percent:float hardware_dynamic_dma_active_time:float "
        "hardware_dynamic_dma_active_time_percent:float "
        "hardware_dynamic_dma_packet_count:int64 hardware_dynamic_dma_size:int64 "
        "hardware_dynamic_dma_packet_percent:float "
        "hardware_dynamic_dma_size_percent:float tensor_engine_instruction_time:float "
        "tensor_engine_active_time:float tensor_engine_active_time_percent:float "
        "tensor_engine_instruction_count:int64 matmul_instruction_count:int64 "
        "mfu_estimated_percent:float mfu_max_achievable_estimated_percent:float "
        "mfu_hlo_estimated_percent:float mfu_hlo_max_achievable_estimated_percent:float "
        "mfu_inst_estimated_percent:float mfu_inst_max_achievable_estimated_percent:float "
        "hfu_estimated_percent:float vector_engine_instruction_time:float "
        "vector_engine_active_time:float vector_engine_active_time_percent:float "
        "vector_engine_instruction_count:int64 scalar_engine_instruction_time:float "
        "scalar_engine_active_time:float scalar_engine_active_time_percent:float "
        "scalar_engine_instruction_count:int64 activate_instruction_time:float "
        "activate_instruction_count:int64 sync_engine_instruction_time:float "
        "sync_engine_active_time:float sync_engine_active_time_percent:float "
        "sync_engine_instruction_count:int64 gpsimd_engine_instruction_time:float "
        "gpsimd_engine_active_time:float gpsimd_engine_active_time_percent:float "
        "gpsimd_engine_instruction_count:int64 cc_op_time:float cc_op_active_time:float "
        "cc_op_active_time_percent:float cc_op_count:int64 "
        "cc_cores_instruction_time:float cc_cores_instruction_active_time:float "
        "cc_cores_instruction_active_time_percent:float cc_cores_instruction_count:int64 "
        "total_exec_time:float total_active_time:float total_active_time_percent:float"),
    "Metadata": ("profile_schema_version:string ntff_version:int32 num_physical_cores:int32 "
        "vnc_enabled:bool first_hw_timestamp:int64 last_hw_timestamp:int64 "
        "first_ts:string last_ts:string dma_ddr_bandwidth:float "
        "num_dma_engines_per_neuroncore:int32 hbm_ddr_bandwidth:float "
        "tensor_engine_num_rows:int64 tensor_engine_num_cols:int64 "
        "tensor_engine_clock_freq:float vector_engine_clock_freq:float "
        "vector_engine_num_channels:int64 scalar_engine_clock_freq:float "
        "scalar_engine_num_channels:int64 gpsimd_engine_clock_freq:float "
        "gpsimd_engine_num_channels:int64 neuroncore_clock_freq:float "
        "ticks_per_nanosec:int64 instance_type:string runtime_version:string "
        "collectives_version:string driver_version:string explorer_version:string "
        "compiler_version:string neuroncore_idx:int64 neuron_device_idx:int64 "
        "ultraserver_id:int64 ultraserver_type:string ultraserver_size:int32 "
        "ultraserver_instance_index:int32 s3_bucket_path:string profile_name:string "
        "explorer_build_time:string is_simulation:bool"),
    "Instruction": ("start_ts:int64 end_ts:int64 duration_ns:int64 engine:string "
        "timeline_track:string pcore_idx:int64 opcode:string operands:string "
        "compiler_opcode:string compiler_operands:string id:int64 pc:int64 "
        "compiler_pc:int64 penguin_id:string raw_penguin_id:int64 bir_id:string "
        "raw_bir_id:int64 bir_instruction_name:string kernel_instruction_name:string "
        "crc_in:int64 crc_out:int64 evt_wait_time_ns:int64 hlo_attrs:string "
        "hlo_name:string raw_hlo_id:int64 raw_framework_id:int64 layer:string "
        "stack_frame_ids:string nki_source_location:string "
        "bir_debug_info_source_location:string dma_trigger_start_ts:int64 "
        "dma_trigger_end_ts:int64 dma_wait_time_ns:int64 instruction_chain:string "
        "hbm_read_bytes:int64 hbm_write_bytes:int64 sbuf_read_bytes:int64 "
        "sbuf_write_bytes:int64 spill_save_bytes:int64 spill_reload_bytes:int64 "
        "psum_read_bytes:int64 psum_write_bytes:int64 psum_read_sbuf_write_bytes:int64 "
        "input_queue_bytes:int64 output_queue_bytes:int64 weight_queue_bytes:int64 "
        "performance_mode:string tensor_instruction_type:string tensor_elements:int64 "
        "raw_flops:int64 adjusted_flops:int64 tensor_elements_transpose:int64 "
        "flops_transpose:int64 adjusted_flops_transpose:int64 scalar_activation_fn:string"),
    "DmaPacket": ("start_ts:int64 end_ts:int64 duration_ns:int64 pcore_idx:int64 id:int64 "
        "packet_idx:int32 packet_aggregation_id:int64 engine_idx:int64 read_bytes:int64 "
        "write_bytes:int64 transfer_bytes:int64 throughput:float queue_type:string "
        "variable:string queue_name:string queue_idx:int64 crc:int64"),
    "DmaPacketAggregated": (
        "start_ts:int64 end_ts:int64 duration_ns:int64 id:int64 pcore_idx:int64 "
        "block_id:int32 queue_idx:int64 queue_name:string queue_type:string op:string "
        "variable:string read_bytes:int64 write_bytes:int64 transfer_bytes:int64 "
        "throughput:float source:string dest:string semaphore_id:string "
        "modular_flow_function:string read_sbuf_partitions:string "
        "read_num_sbuf_partitions:int32 read_shape:string read_offset:string "
        "read_steps:string write_sbuf_partitions:string write_num_sbuf_partitions:int32 "
        "write_shape:string write_offset:string write_steps:string is_transpose_mode:bool "
        "transpose_element_size:string transpose_shape:string transpose_from_shape:string "
        "transpose_to_shape:string transpose_unroll_factor:string trigger:int64 "
        "completion:int64"),
    "SemaphoreUpdate": ("timestamp:int64 id:string value:int32 update_source:string "
        "double_set_or_clear:bool update_mode:int32 update_operation_type:string "
        "update_trigger_timing:string pcore_idx:int64"),
    "Flow": ("in_id:int64 out_id:int64 in_table:string out_table:string dependency_type:string "
        "gap_time:int64"),
    "ActiveTime": ("start_ts:int64 end_ts:int64 engine:string pcore_idx:int64 duration_ns:int64"),
    "OpcodeSummary": (
        "engine:string opcode:string instruction_count:int64 instruction_time_ns:int64 "
        "active_time_ns:int64 active_time_percent:float"),
    "HbmUsage": ("timestamp:int64 current_throughput:float total_transfer_bytes:int64 "
        "pcore_idx:int64"),
    "DmaUsage": ("timestamp:int64 current_throughput:float total_transfer_bytes:int64 "
        "pcore_idx:int64"),
    "SbufUsage": ("timestamp:int64 avg_util_percent:float partition_0_util_percent:float "
        "partition_32_util_percent:float partition_64_util_percent:float "
        "partition_96_util_percent:float pcore_idx:int64"),
    "PsumUsage": ("timestamp:int64 avg_util_percent:float bank_0_util_percent:float "
        "bank_1_util_percent:float bank_2_util_percent:float bank_3_util_percent:float "
        "bank_4_util_percent:float bank_5_util_percent:float bank_6_util_percent:float "
        "bank_7_util_percent:float pcore_idx:int64"),
    "Warning": ("message:string category:string"),
    "SchemaFields": ("table_name:string table_description:string field_name:string "
        "field_description:string field_example:string field_type:string "
        "field_required:bool field_format:string field_unit:string field_minimum:float "
        "field_maximum:float field_enum_values:string"),
}
ARROW = {"int64": "int64", "int32": "int32", "float": "float", "double": "double",
         "string": "string", "bool": "bool"}  # pyarrow's str() of each type
DMA_QUEUE_TYPES = {"instruction", "input", "output", "data", "software_dynamic",
                   "hardware_dynamic", "unknown"}  # the DmaQueueType enum
ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")


def doc_fields(table):
    return [tuple(f.split(":")) for f in DOC_COLUMNS[table].split()]


# -- profiles (the real timing model; timing only) ------------------------------------------
@pytest.fixture(scope="module")
def matmul():
    ex = load_example("tiled_matmul")
    return trnsim.profile(ex.tiled_matmul_kernel, np.ones((256, 128), ml_dtypes.bfloat16),
                          np.ones((256, 512), ml_dtypes.bfloat16), numerics=False)


@pytest.fixture(scope="module")
def softmax():
    ex = load_example("softmax")
    x = np.random.default_rng(0).standard_normal((256, 512)).astype(np.float32)
    return trnsim.profile(ex.softmax_kernel, x, numerics=False)


@pytest.fixture(scope="module", params=["matmul", "softmax"])
def prof(request):
    return request.getfixturevalue(request.param)


def read_parquet(directory):
    pq = pytest.importorskip("pyarrow.parquet")
    return {f[:-len(".parquet")]: pq.read_table(os.path.join(directory, f))
            for f in os.listdir(directory) if f.endswith(".parquet")}


def read_json(directory):
    out = {}
    for f in os.listdir(directory):
        if f.endswith(".json"):
            with open(os.path.join(directory, f)) as fh:
                out[f[:-len(".json")]] = json.load(fh)
    return out


@pytest.fixture(scope="module")
def exported(prof, tmp_path_factory):
    """(profile, {table: pyarrow Table}, {table: rows as dicts})."""
    pytest.importorskip("pyarrow")
    d = tmp_path_factory.mktemp("explorer")
    assert prof.to_explorer(d / "kernel@trnsim") == str(d / "kernel@trnsim")
    tables = read_parquet(d / "kernel@trnsim")
    return prof, tables, {k: t.to_pylist() for k, t in tables.items()}


def compute(prof):
    return [(i, e) for i, e in zip(prof.program.instructions, prof.timeline.events)
            if i.engine != "dma"]


def dmas(prof):
    return [(i, e) for i, e in zip(prof.program.instructions, prof.timeline.events)
            if i.engine == "dma"]


# -- the schema ---------------------------------------------------------------------------------
def test_files_are_documented_tables_with_documented_fields_and_types(exported):
    _, tables, _ = exported
    assert {"Summary", "Metadata", "Instruction", "DmaPacket", "DmaPacketAggregated",
            "SemaphoreUpdate", "ActiveTime", "OpcodeSummary", "HbmUsage", "DmaUsage",
            "SbufUsage", "SchemaFields", "Warning", "Flow"} <= set(tables)
    for name, table in tables.items():
        assert name in DOC_COLUMNS, name
        got = [(f.name, str(f.type)) for f in table.schema]
        assert got == [(n, ARROW[t]) for n, t in doc_fields(name)], name


def test_the_writers_schema_is_the_documented_one():
    for table, fields in schema.SCHEMA.items():
        assert [(c, t) for c, t, _, _ in fields] == doc_fields(table), table
        for _, _, unit, meaning in fields:
            assert unit in ("", "nanoseconds", "seconds", "bytes", "bytes_per_second",
                            "percent", "cycles", "flops", "gigahertz") and meaning
    for table, nulls in schema.NOT_FILLED.items():
        assert set(nulls) <= set(schema.columns(table)), table
    spot = {("Instruction", "duration_ns"): "nanoseconds", ("Summary", "total_time"): "seconds",
            ("DmaPacket", "throughput"): "bytes_per_second",
            ("SbufUsage", "avg_util_percent"): "percent",
            ("Metadata", "tensor_engine_clock_freq"): "gigahertz"}
    for (table, col), unit in spot.items():
        assert dict((c, u) for c, _, u, _ in schema.SCHEMA[table])[col] == unit


def test_documented_fields_are_filled_unless_listed_as_null(exported):
    _, _, rows = exported
    for table, rs in rows.items():
        nulls = set(schema.NOT_FILLED.get(table, ()))
        sometimes = schema.CONDITIONAL.get(table, set())
        for col, _ in doc_fields(table):
            values = [r[col] for r in rs]
            if col in nulls:
                assert all(v is None for v in values), (table, col)
            elif col not in sometimes:
                assert all(v is not None for v in values), (table, col)
    warned = " ".join(r["message"] for r in rows["Warning"] if r["category"] == "Missing Data")
    for table in rows:
        for col in schema.NOT_FILLED.get(table, ()):
            assert col in warned


def test_schema_fields_table_describes_every_written_field(exported):
    _, _, rows = exported
    described = {(r["table_name"], r["field_name"]): r for r in rows["SchemaFields"]}
    kinds = {"int64": ("integer", "int64"), "int32": ("integer", "int32"),
             "float": ("number", "float"), "double": ("number", "double"),
             "string": ("string", None), "bool": ("boolean", None)}
    for table in rows:
        for col, typ in doc_fields(table):
            r = described[(table, col)]
            assert (r["field_type"], r["field_format"]) == kinds[typ]
            assert r["field_description"]
    assert described[("Instruction", "start_ts")]["field_unit"] == "nanoseconds"
    assert described[("Instruction", "start_ts")]["field_required"] is True
    assert described[("Instruction", "hlo_name")]["field_required"] is False
    assert set(described[("DmaPacket", "queue_type")]["field_enum_values"].split(",")) \
        == DMA_QUEUE_TYPES


# -- values against the Profile ---------------------------------------------------------------
def test_instruction_table_is_the_compute_instructions(exported):
    prof, _, rows = exported
    ins = rows["Instruction"]
    comp = compute(prof)
    assert len(ins) == len(comp) > 0
    s = prof.summary
    for r, (i, e) in zip(ins, comp):
        assert (r["id"], r["engine"], r["opcode"], r["pcore_idx"]) == \
            (i.index, i.engine, i.opcode, e.core)
        assert (r["start_ts"], r["end_ts"]) == (round(e.start), round(e.end))
        assert r["duration_ns"] == r["end_ts"] - r["start_ts"] >= 0
        assert r["nki_source_location"] == f"{i.location.file}:{i.location.line}"
    counts = Counter(r["engine"] for r in ins)
    for eng in ENGINES:
        assert counts.get(eng, 0) == s[f"{eng}_engine_instruction_count"]
        busy = sum(r["duration_ns"] for r in ins if r["engine"] == eng)
        assert busy == pytest.approx(s[f"{eng}_engine_instruction_time"] * 1e9,
                                     abs=counts.get(eng, 0) + 1e-9)
        # pc: 0, 1, 2, ... along each engine, in the order the engine ran them
        mine = sorted((r for r in ins if r["engine"] == eng), key=lambda r: r["pc"])
        assert [r["pc"] for r in mine] == list(range(len(mine)))
        assert [r["start_ts"] for r in mine] == sorted(r["start_ts"] for r in mine)
    assert sum(r["raw_flops"] or 0 for r in ins) == s["hardware_flops"]
    assert sum(r["adjusted_flops"] or 0 for r in ins) == s["adjusted_hardware_flops"]
    assert sum(r["flops_transpose"] or 0 for r in ins) == s["transpose_flops"]
    for key in ("psum_read_bytes", "psum_write_bytes", "psum_read_sbuf_write_bytes"):
        assert sum(r[key] for r in ins) == s[key]
    assert sum(1 for r in ins if r["psum_read_sbuf_write_bytes"]) == s["psum_read_sbuf_write_count"]
    assert all(r["evt_wait_time_ns"] >= 0 for r in ins)
    for r in ins:
        if r["tensor_instruction_type"] is not None:
            assert r["engine"] == "tensor" and r["tensor_instruction_type"] in ("REGULAR",
                                                                               "TRANSPOSE")


def test_dma_tables_are_the_transfers(exported):
    prof, _, rows = exported
    s = prof.summary
    pk, agg = rows["DmaPacket"], rows["DmaPacketAggregated"]
    d = dmas(prof)
    assert len(pk) == len(agg) == len(d) == s["dma_transfer_count"] > 0
    assert len(rows["Instruction"]) + len(agg) == len(prof.program)
    agg_ids = {r["id"] for r in agg}
    for r, a, (i, e) in zip(pk, agg, d):
        assert r["id"] == a["id"] == r["packet_aggregation_id"] == i.index
        assert r["packet_idx"] == 0 and r["packet_aggregation_id"] in agg_ids
        assert (r["start_ts"], r["end_ts"]) == (round(e.start), round(e.end))
        assert r["transfer_bytes"] == a["transfer_bytes"] == i.bytes_moved
        assert r["queue_name"] == e.track.split(":", 1)[1]
        assert r["queue_type"] in DMA_QUEUE_TYPES
        if r["duration_ns"] > 0:
            assert r["throughput"] == pytest.approx(i.bytes_moved / (e.end - e.start) * 1e9,
                                                    rel=1e-6)
    assert sum(r["transfer_bytes"] for r in pk) == s["dma_transfer_total_bytes"]
    # HBM bytes: reads of transfers from HBM plus writes of transfers into HBM
    hbm = sum(a["read_bytes"] for a in agg if a["source"] == "[HBM]") \
        + sum(a["write_bytes"] for a in agg if a["dest"] == "[HBM]")
    assert hbm == s["hbm_read_bytes"] + s["hbm_write_bytes"]
    # SBUF bytes: compute instructions' plus the transfers' SBUF side
    sb = sum(r["sbuf_read_bytes"] + r["sbuf_write_bytes"] for r in rows["Instruction"]) \
        + sum(a["read_bytes"] for a in agg if a["source"] == "[SB]") \
        + sum(a["write_bytes"] for a in agg if a["dest"] == "[SB]")
    assert sb == s["sbuf_read_bytes"] + s["sbuf_write_bytes"]
    for a in agg:
        if a["dest"] == "[SB]":
            lo, _, hi = a["write_sbuf_partitions"].partition("-")
            assert a["write_num_sbuf_partitions"] == (int(hi or lo) - int(lo) + 1)


def test_summary_row_is_the_profile_summary(exported):
    prof, tables, rows = exported
    (row,) = rows["Summary"]
    s = prof.summary
    shared = [c for c, _ in doc_fields("Summary") if c in s]
    assert len(shared) >= 50
    for c in shared:
        assert row[c] == pytest.approx(s[c], rel=1e-6, abs=1e-12), c
    assert row["total_time"] == pytest.approx(prof.total_time, rel=1e-6)
    ev = prof.timeline.events
    assert row["total_exec_time"] == pytest.approx(
        (max(e.end for e in ev) - min(e.start for e in ev)) * 1e-9, rel=1e-6)
    assert row["mfu_inst_estimated_percent"] == pytest.approx(s["mfu_estimated_percent"],
                                                              rel=1e-6)
    assert row["static_dma_packet_count"] + row["software_dynamic_dma_packet_count"] \
        + row["hardware_dynamic_dma_packet_count"] == s["dma_transfer_count"]
    assert row["static_dma_size"] + row["software_dynamic_dma_size"] \
        + row["hardware_dynamic_dma_size"] == s["dma_transfer_total_bytes"]
    assert row["total_row_count"] == sum(t.num_rows for t in tables.values())
    act = [(i, e) for i, e in compute(prof) if i.opcode in ("activation", "activation_reduce")]
    assert row["activate_instruction_count"] == len(act)
    assert row["trace_count"] is None and row["mfu_hlo_estimated_percent"] is None
    # trnsim's own metrics have no Explorer field
    assert "roofline_ridge_point" not in row and "useful_read_percent" not in row


def test_engine_active_time_and_opcode_summary(exported):
    prof, _, rows = exported
    s = prof.summary
    for eng in ENGINES:
        spans = [r for r in rows["ActiveTime"] if r["engine"] == eng]
        assert sum(r["duration_ns"] for r in spans) == pytest.approx(
            s[f"{eng}_engine_active_time"] * 1e9, abs=len(spans) + 1e-9)
        for a, b in zip(spans, spans[1:]):
            assert a["end_ts"] <= b["start_ts"]  # merged: disjoint, in order
    want = Counter((i.engine, i.opcode) for i, _ in compute(prof))
    got = {(r["engine"], r["opcode"]): r for r in rows["OpcodeSummary"]}
    assert {k: r["instruction_count"] for k, r in got.items()} == dict(want)
    t = prof.timeline.total_time
    for (eng, op), r in got.items():
        evs = [e for i, e in compute(prof) if (i.engine, i.opcode) == (eng, op)]
        assert r["instruction_time_ns"] == pytest.approx(sum(e.end - e.start for e in evs),
                                                         abs=1)
        assert r["active_time_ns"] <= r["instruction_time_ns"] + 1
        assert r["active_time_percent"] == pytest.approx(100 * r["active_time_ns"] / t,
                                                         abs=100 / t + 1e-4)  # ns rounding


def test_hbm_and_dma_usage_end_at_the_totals(exported):
    prof, _, rows = exported
    s = prof.summary
    for table, total in (("HbmUsage", s["hbm_read_bytes"] + s["hbm_write_bytes"]),
                         ("DmaUsage", s["dma_transfer_total_bytes"])):
        rs = rows[table]
        ts = [r["timestamp"] for r in rs]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
        cum = [r["total_transfer_bytes"] for r in rs]
        assert cum == sorted(cum) and cum[-1] == total
        assert rs[-1]["current_throughput"] == 0.0  # nothing in flight after the last end
        # the rate integrates to the cumulative bytes
        area = sum(a["current_throughput"] * 1e-9 * (b["timestamp"] - a["timestamp"])
                   for a, b in zip(rs, rs[1:]))
        assert area == pytest.approx(total, rel=0.01)


def test_sbuf_and_psum_usage_follow_the_memory_plan(exported):
    """The bytes per partition the compiler model's placements hold over time (the
    Perfetto trace's SBUF / PSUM counters, views.memory_steps), as fullness."""
    from trnsim.profile import views
    prof, _, rows = exported
    plan, core = prof.program.memory, prof.chip.core
    cap = plan.capacity[("sbuf", 0)]
    _, level = views.memory_steps(prof.program, prof.timeline, "sbuf", 0)
    sb = rows["SbufUsage"]
    # every tile of these kernels spans all 128 partitions: each partition holds it all
    for q in (0, 32, 64, 96):
        assert max(r[f"partition_{q}_util_percent"] for r in sb) == pytest.approx(
            100 * max(level) / cap, rel=1e-5)
    assert sb[-1]["avg_util_percent"] == 0.0  # everything freed by the end
    assert all(0.0 <= r["avg_util_percent"] <= 100.0 for r in sb)
    assert max(r["avg_util_percent"] for r in sb) >= 100 * plan.peak[("sbuf", 0)] / cap - 1e-4
    _, level = views.memory_steps(prof.program, prof.timeline, "psum", 0)
    if level:
        ps = rows["PsumUsage"]
        whole = core.psum_banks * core.psum_bank_bytes
        assert max(r["avg_util_percent"] for r in ps) == pytest.approx(
            100 * max(level) / whole, rel=1e-5)
        for r in ps:
            banks = [r[f"bank_{b}_util_percent"] for b in range(8)]
            assert r["avg_util_percent"] == pytest.approx(sum(banks) / 8, abs=1e-4)
    else:
        assert "PsumUsage" not in rows  # as Explorer: no rows, no table


def test_semaphores_and_flows_are_the_waits(exported):
    prof, _, rows = exported
    ev = prof.timeline.events
    waits = [(w.producer, e.index) for e in ev for w in e.waits]
    assert sorted((r["in_id"], r["out_id"]) for r in rows["Flow"]) == sorted(waits)
    by_id = {r["id"]: r for r in rows["Instruction"] + rows["DmaPacketAggregated"]}
    for r in rows["Flow"]:
        assert r["in_table"] == ("dma_block" if by_id[r["in_id"]].get("source") else "instruction")
        assert r["gap_time"] == round(ev[r["out_id"]].start - ev[r["in_id"]].end)
    cross = {(w.producer, (ev[w.producer].core, ev[w.producer].track, e.core, e.track))
             for e in ev for w in e.waits if (ev[w.producer].core, ev[w.producer].track)
             != (e.core, e.track)}
    sem = rows["SemaphoreUpdate"]
    assert len(sem) == len(cross) > 0
    seq = defaultdict(list)
    for r in sem:
        seq[r["id"]].append((r["timestamp"], r["value"]))
        assert r["update_operation_type"] == "sem_inc"
        assert r["update_source"] in ("Tensor", "Scalar", "Vector", "Sync", "GpSimd", "AXI")
    for ups in seq.values():
        assert [v for _, v in ups] == list(range(1, len(ups) + 1))
        assert [t for t, _ in ups] == sorted(t for t, _ in ups)


def test_metadata_says_simulated_and_gives_the_chip(exported):
    prof, _, rows = exported
    (m,) = rows["Metadata"]
    core = prof.chip.core
    assert m["is_simulation"] is True and m["profile_schema_version"] == "7.4.0"
    assert m["first_hw_timestamp"] == 0
    assert m["last_hw_timestamp"] == round(prof.timeline.total_time)
    assert (m["tensor_engine_num_rows"], m["tensor_engine_num_cols"]) == \
        (core.tensor.rows, core.tensor.cols)
    assert m["tensor_engine_clock_freq"] == pytest.approx(core.tensor.clock_hz / 1e9)
    assert m["num_dma_engines_per_neuroncore"] == core.dma.engines
    assert m["num_physical_cores"] == 1 and m["vnc_enabled"] is False
    assert m["profile_name"] == prof.name
    assert any(r["category"] == "Simulated Data" for r in rows["Warning"])


def test_softmax_activations_name_their_function(softmax, tmp_path):
    pytest.importorskip("pyarrow")
    rows = read_parquet(softmax.to_explorer(tmp_path / "x"))["Instruction"].to_pylist()
    fns = {r["scalar_activation_fn"] for r in rows if r["opcode"] == "activation"}
    assert fns == {"exp"}
    assert all(r["raw_flops"] is None for r in rows)  # no matmul


def test_lnc2_rows_carry_the_physical_core(tmp_path):
    pytest.importorskip("pyarrow")
    ex = load_example("lnc2_add")
    a = np.ones((256, 256), np.float32)
    prof = trnsim.profile(ex.lnc2_add_kernel, a, a, lnc=2, numerics=False)
    t = read_parquet(prof.to_explorer(tmp_path / "x"))
    cores = {e.core for e in prof.timeline.events}
    assert cores == {0, 1}
    assert {r["pcore_idx"] for r in t["DmaPacket"].to_pylist()} == cores
    assert {r["pcore_idx"] for r in t["HbmUsage"].to_pylist()} == cores
    (m,) = t["Metadata"].to_pylist()
    assert m["num_physical_cores"] == 2 and m["vnc_enabled"] is True


# -- JSON form, errors, CLI ---------------------------------------------------------------------
def test_json_form_holds_the_same_tables(matmul, tmp_path):
    pytest.importorskip("pyarrow")
    pq_tables = read_parquet(matmul.to_explorer(tmp_path / "p"))
    js = read_json(matmul.to_explorer(tmp_path / "j", format="json"))
    assert set(js) == set(pq_tables)
    for name, table in pq_tables.items():
        rows = table.to_pylist()
        assert len(js[name]) == len(rows), name
        for a, b in zip(js[name], rows):
            assert list(a) == [c for c, _ in doc_fields(name)]
            for k in a:
                if isinstance(a[k], float):
                    assert b[k] == pytest.approx(a[k], rel=1e-6), (name, k)  # float32
                else:
                    assert a[k] == b[k], (name, k)


def test_json_needs_no_pyarrow_and_parquet_says_how_to_get_it(matmul, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    d = matmul.to_explorer(tmp_path / "j", format="json")
    (row,) = read_json(d)["Summary"]
    assert row["total_time"] == pytest.approx(matmul.total_time)
    assert row["model_flops"] == matmul.summary["model_flops"] == 2 * 256 * 128 * 512
    with pytest.raises(ImportError, match=r"pip install 'trnsim\[explorer\]'") as err:
        matmul.to_explorer(tmp_path / "p")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="'parquet' or 'json'"):
        matmul.to_explorer(tmp_path / "x", format="csv")


def test_a_new_export_replaces_the_old_tables(matmul, tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "PsumUsage.json").write_text("[]")  # stale
    (d / "notes.txt").write_text("mine")
    load_example_add = load_example("tensor_add")
    a = np.ones((128, 512), np.float32)
    prof = trnsim.profile(load_example_add.tensor_add_kernel, a, a, numerics=False)
    prof.to_explorer(d, format="json")
    assert not (d / "PsumUsage.json").exists()  # tensor_add uses no PSUM
    assert (d / "notes.txt").read_text() == "mine"


MATMUL = os.path.join(os.path.dirname(__file__), "..", "examples",
                      "tiled_matmul.py") + "::tiled_matmul_kernel"
MATMUL_ARGS = ["--arg", "lhsT=bfloat16[256,128]", "--arg", "rhs=bfloat16[256,512]",
               "--no-numerics"]


def test_cli_explorer_flag(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    rc = cli.main(["profile", MATMUL, *MATMUL_ARGS, "--no-write", "--explorer",
                   str(tmp_path / "pq")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "explorer" in out and str(tmp_path / "pq") in out
    t = read_parquet(tmp_path / "pq")
    assert t["Summary"].to_pylist()[0]["model_flops"] == 2 * 256 * 128 * 512
    rc = cli.main(["profile", MATMUL, *MATMUL_ARGS, "--no-write", "--json", "--explorer",
                   str(tmp_path / "js"), "--explorer-format", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["files"] == {"explorer": str(tmp_path / "js")}
    assert (tmp_path / "js" / "Instruction.json").exists()


def test_cli_explorer_without_pyarrow_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    rc = cli.main(["profile", MATMUL, *MATMUL_ARGS, "--no-write", "--explorer",
                   str(tmp_path / "pq")])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.strip().count("\n") == 0 and "trnsim[explorer]" in err
