"""Export a profile in Neuron Explorer's documented output schema, so that a simulated
profile can be read with the same scripts as a measured one and compared next to it.

    prof.to_explorer("out/kernel@trnsim")                  # <Table>.parquet per table
    prof.to_explorer("out/kernel@trnsim", format="json")   # <Table>.json, no pyarrow

Neuron Explorer (Neuron SDK 2.31+) writes a processed profile as a directory of Parquet
files named after the table they hold (Instruction.parquet, DmaPacket.parquet,
Summary.parquet, ...; "Analyze Profile Output", tools/neuron-explorer/
how-to-analyze-profile-output.rst). Tables, fields, types and units below are those of
the "Profile Parquet Schema Reference" (tools/neuron-explorer/profile-schema-reference.rst,
https://awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-explorer/
profile-schema-reference.html), schema version 7.4.0, Neuron SDK 2.31.0: `SCHEMA` is that
page's field lists for the tables written here, in its order, with the first sentence of
each description. Types: int64 / int32 ("integer (int64)"/"(int32)"), float ("number
(float)", written as 32-bit float), double ("number (double)"), string, bool.

The JSON form holds the same tables and fields: one <Table>.json per table, a JSON array
of row objects (pandas.read_json reads it). Explorer's own `--output-format json` is
"legacy" and not documented beyond one example (a "summary" list and an "instruction"
list with timestamp/duration/label/opcode/operands, archive/profiler/
neuron-profile-user-guide.rst), so it is not imitated.

What trnsim fills, and how (per table; `NOT_FILLED` lists every documented field left
null, with the reason; the Warning table of the export repeats it):

- Instruction: one row per compute-engine instruction (DMA transfers are DmaPacket rows,
  so Instruction + DmaPacketAggregated rows = the Program's instructions). `opcode` is
  the NKI ISA call (nc_matmul, tensor_tensor, activation, ...), not the hardware opcode
  (MATMUL, LDWEIGHTS, ACTIVATE, ...): trnsim does not lower to hardware instructions.
  `operands` is trnsim's operand text (`role: tensor dtype@space[shape] bytes`), not the
  hardware operand string. `pc` is the instruction's position on its engine in the
  order the engine ran them. Bytes per memory follow trnsim's summary rule
  (summary.moves_data). `evt_wait_time_ns` is how long the instruction waited for its
  dependencies after its engine was free (ready - previous end on the engine, if > 0).
- DmaPacket / DmaPacketAggregated: one row each per DMA transfer. trnsim models a
  transfer as a whole, split over the core's DMA engines by partition; it does not model
  the individual packets, so each transfer is one "packet" (packet_idx 0,
  packet_aggregation_id = the aggregated row's id = the instruction index) and
  `engine_idx` is set only when one engine moved it. `queue_type`: dge_mode swdge ->
  software_dynamic, hwdge -> hardware_dynamic, else "unknown" (a static transfer, but
  trnsim does not know which compiler queue class -- instruction / input / output /
  data -- it would be). `source` / `dest`: the memory in the documented bracket form,
  "[SB]" for the State Buffer as in the reference's example, "[PSUM]" and "[HBM]" for
  the others (Explorer's other location names are not documented). `read_steps` /
  `write_steps`: the access pattern's strides in elements, outermost first (the
  reference does not say which order it uses).
- SemaphoreUpdate: trnsim has no semaphore numbers; a wait of one track on another
  (what the hardware synchronizes with a semaphore, and what the Perfetto trace draws as
  a flow arrow) is modelled as one semaphore per (core, producing track, waiting track)
  named "<producer track> -> <waiting track>", incremented ("sem_inc", at "complete")
  when the producer's results are visible; `value` counts those increments. DMA queues'
  updates have update_source "AXI" (the reference: "AXI indicates the update came from
  the AXI bus"), engines' their engine name (Tensor, Vector, Scalar, GpSimd, Sync).
- Flow: one edge per wait (producer -> consumer), in/out_table "instruction" or
  "dma_block" (the reference's examples), dependency_type "FLOW_DEPENDENCE" (the
  reference's example) for a read-after-write; the reference names no other types, so
  WAR / WAW / order waits carry trnsim's names.
- ActiveTime, OpcodeSummary: merged busy spans per engine from the timeline (compute
  engines only, as the reference describes them). OpcodeSummary has no core column:
  its active time merges the cores' spans.
- HbmUsage / DmaUsage: a sample at every change of the HBM (DMA) transfer rate, each
  transfer's bytes spread evenly over its duration (as the Perfetto counters);
  total_transfer_bytes is cumulative, so the last sample is the run's total.
- SbufUsage / PsumUsage: a sample at every change of the compiler model's placements
  (trnsim.compiler.allocation): fullness of SBUF partitions 0/32/64/96 and the average
  over all partitions, of the allocator's capacity per partition; fullness of each PSUM
  bank (bytes of the bank's range held, over all partitions) and their average.
- Summary: one row. Every trnsim summary metric with an Explorer name
  (trnsim.profile.summary) plus those derivable from the same data (total_exec_time,
  dma_packet_time, dma_active_cycles, static / software / hardware DGE splits,
  mfu_inst_* = trnsim's mfu_* (an NKI kernel has no HLO: its model FLOPs are its
  non-transpose matmul FLOPs), activate_*, total_row_count). trnsim's own metrics
  (roofline_*, adjusted_model_flops, useful_read_percent, ...) have no Explorer column
  and are not exported; they stay in the summary JSON.
- Metadata: chip figures from the chip data; is_simulation true; timestamps start at 0.
- Warning: a "Simulated Data" row saying the profile is a trnsim prediction, and a
  "Missing Data" row per table naming its documented fields left null.
- SchemaFields: one row per (table, field) of the tables trnsim writes.

As the reference says of Explorer, a table with no rows is not written (a kernel with no
PSUM tiles has no PsumUsage file). Explorer's schema says nothing about Parquet
nullability; every column is written nullable. All timestamps are integer nanoseconds
since the kernel started (rounded; durations are end_ts - start_ts).

Not written: the compiler-hierarchy tables (FrameworkInstruction, HloInstruction,
PenguinInstruction, BirInstruction, KernelInstructions, ...: an NKI kernel run by trnsim
has no HLO/Penguin/BIR), NeffHeader, TensorInfo, DmaQueuesInfo, Throttle (trnsim's
throttle is a fraction of peak, not Explorer's k/n levels), collective tables, system-
profile tables.

Engine names: the reference's examples give `engine` in lower case ("tensor"), while the
"Analyze Profile Output" page shows "Tensor" / "Sync" / "Vector" in a groupby on
Instruction.parquet; this export follows the schema reference (lower case).
"""
from __future__ import annotations

import datetime
import json
import os
from collections import defaultdict

SCHEMA_VERSION = "7.4.0"  # the schema version profile-schema-reference.rst documents
DOC = ("https://awsdocs-neuron.readthedocs-hosted.com/en/latest/tools/neuron-explorer/"
       "profile-schema-reference.html")

# -- the documented schema -----------------------------------------------------------
# table -> [(field, type, unit, meaning)] for the tables trnsim writes, in the order of
# profile-schema-reference.rst (Neuron SDK 2.31.0, schema 7.4.0); meaning: the first
# sentence of the field's description there.
SCHEMA: dict[str, list[tuple[str, str, str, str]]] = {
    "Summary": [
        ("total_time", "float", "seconds",
         "Total duration of on device execution time for the run, as reported by the "
         "runtime from explicit TPB start/stop notifications stored in the NTFF."),
        ("neuroncore_cycle_count", "int64", "cycles",
         "Number of NeuronCore cycles over the duration of the profile i.e. the "
         "duration in seconds multiplied by the NeuronCore base clock rate The "
         "NeuronCore base clock rate for Inferentia1 is 1.0 GHz, Trainium1 is 1.4 GHz, "
         "and Trainium2 is 1.2 GHz."),
        ("model_flops", "int64", "flops",
         "Model FLOPs is the FLOP count of useful compute on the Tensor Engine i.e. the"
         " matrix multiplications from the HLO model definition, and excludes other "
         "instructions for data movement (i.e. transposes and partition broadcasts) "
         "inserted by the compiler to resolve memory layout conflicts."),
        ("hardware_flops", "int64", "flops",
         "Hardware FLOPs is the FLOP count calculated from all Tensor Engine "
         "instructions that Neuron Compiler emits for execution."),
        ("transpose_flops", "int64", "flops",
         "2x the number of MATMUL operations from transposes."),
        ("adjusted_hardware_flops", "int64", "flops",
         "BF16-equivalent hardware FLOPs."),
        ("adjusted_transpose_flops", "int64", "flops",
         "BF16-equivalent transpose FLOPs."),
        ("mm_arithmetic_intensity", "float", "",
         "The ratio of regular MATMUL flops to total DRAM transfer size."),
        ("peak_flops_bandwidth_ratio", "float", "",
         "The ratio of theoretical max Tensor Engine FLOPS to peak DRAM bandwidth."),
        ("trace_count", "int64", "",
         "Total number of trace events in the NTFF including instructions, "
         "events/semaphores, and DMAs."),
        ("event_count", "int64", "",
         "Total number of event notifications, such as for semaphore updates."),
        ("total_row_count", "int64", "",
         "Total number of data points written to the database."),
        ("dma_active_cycles", "int64", "cycles",
         "dma_active_time multiplied by TPB clock speed."),
        ("dma_active_time", "float", "seconds",
         "Duration of time when at least one DMA packet is transferring."),
        ("dma_active_time_percent", "float", "percent",
         "Percentage of time when at least one DMA packet is transferring."),
        ("static_dma_active_time", "float", "seconds",
         "Duration of time when at least one statically generated DMA packet is "
         "transferring."),
        ("dynamic_dma_active_time_percent", "float", "percent",
         "Percentage of time when at least one dynamically generated DMA packet is "
         "transferring."),
        ("static_dma_active_time_percent", "float", "percent",
         "Percentage of time when at least one statically generated DMA packet is "
         "transferring."),
        ("dma_transfer_average_bytes", "float", "bytes",
         "Total transfer size of all DMA packets divided by the total number of DMA "
         "transfers."),
        ("dma_packet_time", "float", "seconds",
         "Total duration of all DMA engine packets."),
        ("dma_transfer_time", "float", "seconds",
         "Total duration of all DMA transfers."),
        ("dma_transfer_count", "int64", "",
         "Number of DMA transfers."),
        ("dma_transfer_total_bytes", "int64", "bytes",
         "Total transfer size of all DMA transfers."),
        ("dma_queue_count", "int64", "",
         "Total number of DMA queues specified in the NEFF including all input, output,"
         " and weight DMA queues for different DMA engines."),
        ("inputs_and_weights_size_bytes", "int64", "bytes",
         "Size of input tensors and weight tensors."),
        ("inputs_outputs_weights_size_bytes", "int64", "bytes",
         "Size of input tensors, output tensors, and weight tensors."),
        ("weight_size_bytes", "int64", "bytes",
         "Total size of all weights defined in the NEFF."),
        ("static_dma_packet_count", "int64", "",
         "Number of DMA packets that are statically generated."),
        ("static_dma_size", "int64", "bytes",
         "Total transfer size of DMA packets that are statically generated."),
        ("dynamic_dma_packet_percent", "float", "percent",
         "Percentage of DMA packets that are dynamically generated during execution "
         "(generally higher means better performance)."),
        ("static_dma_packet_percent", "float", "percent",
         "Percentage of DMA packets that are statically generated."),
        ("dynamic_dma_size_percent", "float", "percent",
         "Percentage of total transfer size for DMA packets that are dynamically "
         "generated during execution."),
        ("static_dma_size_percent", "float", "percent",
         "Percentage of total transfer size for DMA packets that are statically "
         "generated."),
        ("mbu_estimated_percent", "float", "percent",
         "Memory Bandwidth Utilization (MBU) is the achieved HBM bandwidth utilization."),
        ("mbu_min_read_util_percent", "float", "percent",
         "Estimated minimum possible Memory Bandwidth Utilization (MBU) utilization "
         "assuming inputs and weights are read from HBM a single time (no repeat "
         "loads)."),
        ("hbm_write_bytes", "int64", "bytes",
         "Total bytes of data written to HBM using the DMA engines."),
        ("hbm_read_bytes", "int64", "bytes",
         "Total bytes of data read from HBM using the DMA engines."),
        ("sbuf_write_bytes", "int64", "bytes",
         "Total size of all writes to the State Buffer."),
        ("sbuf_read_bytes", "int64", "bytes",
         "Total size of all reads from the State Buffer."),
        ("spill_save_bytes", "int64", "bytes",
         "Total bytes of spilled data that was saved to HBM."),
        ("spill_reload_bytes", "int64", "bytes",
         "Total bytes of spilled data that was reloaded back to SBUF."),
        ("psum_write_bytes", "int64", "bytes",
         "Total bytes of data that are written to PSUM by compute engine instructions."),
        ("psum_read_bytes", "int64", "bytes",
         "Total bytes of data that are read from PSUM by compute engine instructions."),
        ("psum_read_sbuf_write_count", "int64", "",
         "Number of compute engine instructions that moved data from PSUM to SBUF."),
        ("psum_read_sbuf_write_bytes", "int64", "bytes",
         "Total bytes of data moved from PSUM to SBUF by compute engine instructions."),
        ("input_queue_bytes", "int64", "bytes",
         "Total transfer size of DMA blocks in \"input\" queues."),
        ("output_queue_bytes", "int64", "bytes",
         "Total transfer size of DMA blocks in \"output\" queues."),
        ("weight_queue_bytes", "int64", "bytes",
         "Total transfer size of DMA blocks in \"data\" queues."),
        ("software_dynamic_dma_active_time", "float", "seconds",
         "Duration of time when at least one software generated DMA packet is "
         "transferring."),
        ("software_dynamic_dma_active_time_percent", "float", "percent",
         "Percentage of time when at least one software generated DMA packet is "
         "transferring."),
        ("software_dynamic_dma_packet_count", "int64", "",
         "Number of DMA packets that are dynamically generated during execution via "
         "software backend."),
        ("software_dynamic_dma_size", "int64", "bytes",
         "Total transfer size of DMA packets that are dynamically generated during "
         "execution via software backend."),
        ("software_dynamic_dma_packet_percent", "float", "percent",
         "Percentage of DMA packets that are dynamically generated during execution via"
         " software backend."),
        ("software_dynamic_dma_size_percent", "float", "percent",
         "Percentage of total transfer size for DMA packets that are dynamically "
         "generated via software backend."),
        ("hardware_dynamic_dma_active_time", "float", "seconds",
         "Duration of time when at least one hardware generated DMA packet is "
         "transferring."),
        ("hardware_dynamic_dma_active_time_percent", "float", "percent",
         "Percentage of time when at least one hardware generated DMA packet is "
         "transferring."),
        ("hardware_dynamic_dma_packet_count", "int64", "",
         "Number of DMA packets that are dynamically generated during execution via "
         "dedicated hardware."),
        ("hardware_dynamic_dma_size", "int64", "bytes",
         "Total transfer size of DMA packets that are dynamically generated during "
         "execution via dedicated hardware."),
        ("hardware_dynamic_dma_packet_percent", "float", "percent",
         "Percentage of DMA packets that are dynamically generated during execution via"
         " dedicated hardware."),
        ("hardware_dynamic_dma_size_percent", "float", "percent",
         "Percentage of total transfer size for DMA packets that are dynamically "
         "generated via dedicated hardware."),
        ("tensor_engine_instruction_time", "float", "seconds",
         "Total duration of all Tensor engine instructions."),
        ("tensor_engine_active_time", "float", "seconds",
         "Duration of time when Tensor engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("tensor_engine_active_time_percent", "float", "percent",
         "Percentage of time when Tensor engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("tensor_engine_instruction_count", "int64", "",
         "Number of Tensor Engine instructions."),
        ("matmul_instruction_count", "int64", "",
         "Total number of MATMUL instructions."),
        ("mfu_estimated_percent", "float", "percent",
         "MFU is Model FLOPs Utilization."),
        ("mfu_max_achievable_estimated_percent", "float", "percent",
         "The best Tensor Engine Utilization you can achieve for this workload."),
        ("mfu_hlo_estimated_percent", "float", "percent",
         "MFU (HLO) is Model FLOPs Utilization based on HLO stats."),
        ("mfu_hlo_max_achievable_estimated_percent", "float", "percent",
         "The best Tensor Engine Utilization you can achieve for this workload based on"
         " HLO model FLOPs."),
        ("mfu_inst_estimated_percent", "float", "percent",
         "MFU (Instruction) is Model FLOPs Utilization based on instruction trace."),
        ("mfu_inst_max_achievable_estimated_percent", "float", "percent",
         "The best Tensor Engine Utilization you can achieve for this workload based on"
         " instruction trace FLOPs (excluding transposes)."),
        ("hfu_estimated_percent", "float", "percent",
         "HFU is Hardware FLOPs Utilization."),
        ("vector_engine_instruction_time", "float", "seconds",
         "Total duration of all Vector engine instructions."),
        ("vector_engine_active_time", "float", "seconds",
         "Duration of time when Vector engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("vector_engine_active_time_percent", "float", "percent",
         "Percentage of time when Vector engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("vector_engine_instruction_count", "int64", "",
         "Number of Vector Engine instructions."),
        ("scalar_engine_instruction_time", "float", "seconds",
         "Total duration of all Scalar engine instructions."),
        ("scalar_engine_active_time", "float", "seconds",
         "Duration of time when Scalar engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("scalar_engine_active_time_percent", "float", "percent",
         "Percentage of time when Scalar engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("scalar_engine_instruction_count", "int64", "",
         "Number of Scalar Engine instructions."),
        ("activate_instruction_time", "float", "seconds",
         "Total duration of all ACTIVATE/ACTIVATE_QUANTIZE instructions."),
        ("activate_instruction_count", "int64", "",
         "Number of ACTIVATE/ACTIVATE_QUANTIZE instructions."),
        ("sync_engine_instruction_time", "float", "seconds",
         "Total duration of all Sync engine instructions."),
        ("sync_engine_active_time", "float", "seconds",
         "Duration of time when Sync engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("sync_engine_active_time_percent", "float", "percent",
         "Percentage of time when Sync engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("sync_engine_instruction_count", "int64", "",
         "Number of Sync Engine instructions."),
        ("gpsimd_engine_instruction_time", "float", "seconds",
         "Total duration of all GpSimd engine instructions."),
        ("gpsimd_engine_active_time", "float", "seconds",
         "Duration of time when GpSimd engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("gpsimd_engine_active_time_percent", "float", "percent",
         "Percentage of time when GpSimd engine is processing at least one instruction "
         "(excluding semaphore waits)."),
        ("gpsimd_engine_instruction_count", "int64", "",
         "Number of GpSimd Engine instructions."),
        ("cc_op_time", "float", "seconds",
         "Total duration of all Collective Communication (CC) operations."),
        ("cc_op_active_time", "float", "seconds",
         "Duration of time when at least one Collective Communication (CC) operation is"
         " active."),
        ("cc_op_active_time_percent", "float", "percent",
         "Percentage of time when at least one Collective Communication (CC) operation "
         "is active."),
        ("cc_op_count", "int64", "",
         "Number of Collective Communication (CC) operations."),
        ("cc_cores_instruction_time", "float", "seconds",
         "Total duration of instructions on all Collective Communication (CC) cores."),
        ("cc_cores_instruction_active_time", "float", "seconds",
         "Duration of time when at least one Collective Communication (CC) core is "
         "processing an instruction (excluding semaphore waits)."),
        ("cc_cores_instruction_active_time_percent", "float", "percent",
         "Percentage of time when at least one Collective Communication (CC) core is "
         "processing an instruction (excluding semaphore waits)."),
        ("cc_cores_instruction_count", "int64", "",
         "Number of instructions on all Collective Communication (CC) cores."),
        ("total_exec_time", "float", "seconds",
         "Duration from the earliest non-setup instruction or DMA packet to the latest,"
         " excluding setup/teardown opcodes (NOP, SET_ORDERING_MODE, EVENT_SEMAPHORE, "
         "EVENT_SEMAPHORE_RANGE_CLEAR, NOTIFY, COMPARE_BRANCH, DRAIN, WRITE, "
         "TENSOR_LOAD, MODIFY_POOL_CONFIG)."),
        ("total_active_time", "float", "seconds",
         "Total duration of time when at least one engine, DMA, or CC operation is "
         "active."),
        ("total_active_time_percent", "float", "percent",
         "Percentage of total execution time when at least one engine, DMA, or CC "
         "operation is active."),
    ],
    "Metadata": [
        ("profile_schema_version", "string", "",
         "The version of the data schema, which is the layout of the data contained "
         "within this profile."),
        ("ntff_version", "int32", "",
         "Version of the NTFF format used."),
        ("num_physical_cores", "int32", "",
         "The number of physical NeuronCores in the Logical NeuronCore."),
        ("vnc_enabled", "bool", "",
         "Whether execution was on Logical NeuronCores consisting of multiple physical "
         "cores."),
        ("first_hw_timestamp", "int64", "nanoseconds",
         "First timestamp in the trace."),
        ("last_hw_timestamp", "int64", "nanoseconds",
         "Last timestamp in the trace."),
        ("first_ts", "string", "",
         "First timestamp in Unix time format."),
        ("last_ts", "string", "",
         "Last timestamp in Unix time format."),
        ("dma_ddr_bandwidth", "float", "bytes_per_second",
         "Maximum DMA DDR bandwidth available to a single physical NeuronCore on the "
         "system on which the profile was captured."),
        ("num_dma_engines_per_neuroncore", "int32", "",
         "Number of DMA engines per physical NeuronCore."),
        ("hbm_ddr_bandwidth", "float", "bytes_per_second",
         "Maximum HBM bandwidth on the system on which the profile was captured."),
        ("tensor_engine_num_rows", "int64", "",
         "The number of rows in the systolic array of the Tensor Engine."),
        ("tensor_engine_num_cols", "int64", "",
         "The number of columns in the systolic array of the Tensor Engine."),
        ("tensor_engine_clock_freq", "float", "gigahertz",
         "The clock frequency of the Tensor Engine."),
        ("vector_engine_clock_freq", "float", "gigahertz",
         "The clock frequency of the Vector Engine."),
        ("vector_engine_num_channels", "int64", "",
         "The number of channels in the Vector Engine."),
        ("scalar_engine_clock_freq", "float", "gigahertz",
         "The clock frequency of the Scalar Engine."),
        ("scalar_engine_num_channels", "int64", "",
         "The number of channels in the Scalar Engine."),
        ("gpsimd_engine_clock_freq", "float", "gigahertz",
         "The clock frequency of the GpSimd Engine."),
        ("gpsimd_engine_num_channels", "int64", "",
         "The number of channels in the GpSimd Engine."),
        ("neuroncore_clock_freq", "float", "gigahertz",
         "The clock frequency of the NeuronCore."),
        ("ticks_per_nanosec", "int64", "",
         "The number of ticks per nanosecond that the profile captures."),
        ("instance_type", "string", "",
         "The instance type on which this profile was captured."),
        ("runtime_version", "string", "",
         "The Neuron Runtime library version with which this profile was captured."),
        ("collectives_version", "string", "",
         "The Neuron Collectives library version with which this profile was captured."),
        ("driver_version", "string", "",
         "The Neuron driver version with which this profile was captured."),
        ("explorer_version", "string", "",
         "The Neuron Explorer version which post-processed this captured profile."),
        ("compiler_version", "string", "",
         "The Neuron Compiler version which built the NEFF that was executed during "
         "this profile."),
        ("neuroncore_idx", "int64", "",
         "The index of this NeuronCore."),
        ("neuron_device_idx", "int64", "",
         "The index of this NeuronDevice."),
        ("ultraserver_id", "int64", "",
         "Unique UltraServer ID if this profile was captured on an UltraServer "
         "instance."),
        ("ultraserver_type", "string", "",
         "The type of instances connectivity within an UltraServer."),
        ("ultraserver_size", "int32", "",
         "The total numbers of instance in an UltraServer."),
        ("ultraserver_instance_index", "int32", "",
         "The instance index within the UltraServer on which this profile was captured."),
        ("s3_bucket_path", "string", "",
         "Full S3 path where profile files (NEFF/NTFF/source/debug) are stored and "
         "uploaded."),
        ("profile_name", "string", "",
         "User chosen name for this profile."),
        ("explorer_build_time", "string", "",
         "The date and time when the `neuron-explorer` tool was built."),
        ("is_simulation", "bool", "",
         "Whether this profile is a post-scheduler simulation produced by the compiler."),
    ],
    "Instruction": [
        ("start_ts", "int64", "nanoseconds",
         "Timestamp when instruction started execution."),
        ("end_ts", "int64", "nanoseconds",
         "Timestamp when instruction finished execution."),
        ("duration_ns", "int64", "nanoseconds",
         "Duration of instruction execution."),
        ("engine", "string", "",
         "Compute engine that executed this instruction."),
        ("timeline_track", "string", "",
         "The name of the timeline track that this instruction appears on in the Neuron"
         " Explorer web UI."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
        ("opcode", "string", "",
         "Opcode for the instruction."),
        ("operands", "string", "",
         "Input operands for the instruction."),
        ("compiler_opcode", "string", "",
         "Opcode of the instruction at compile time."),
        ("compiler_operands", "string", "",
         "Operands of the instruction at compile time."),
        ("id", "int64", "",
         "Unique identifier for this instruction execution."),
        ("pc", "int64", "",
         "The runtime program counter is this instruction index on the given engine."),
        ("compiler_pc", "int64", "",
         "The compiler program counter is this instruction index on the given engine."),
        ("penguin_id", "string", "",
         "Penguin compiler ID containing both raw ID and context information."),
        ("raw_penguin_id", "int64", "",
         "Raw internal penguin compiler identifier."),
        ("bir_id", "string", "",
         "Binary Intermediate Representation instruction identifier."),
        ("raw_bir_id", "int64", "",
         "Unprocessed Binary Intermediate Representation ID containing both raw ID and "
         "context information."),
        ("bir_instruction_name", "string", "",
         "Name of the BIR instruction from the name in the BIR debug info."),
        ("kernel_instruction_name", "string", "",
         "Unique kernel instruction identifier formatted as "
         "'bir_instruction_name:parent_tensorizer_id', where parent_tensorizer_id is "
         "the parent penguin instruction ID for this instruction."),
        ("crc_in", "int64", "",
         "In CRC for integrity checking."),
        ("crc_out", "int64", "",
         "Out CRC for integrity verification."),
        ("evt_wait_time_ns", "int64", "nanoseconds",
         "Time spent waiting for events or synchronization."),
        ("hlo_attrs", "string", "",
         "The debug info associated with the HLO instruction that produced this "
         "instruction."),
        ("hlo_name", "string", "",
         "High-Level Optimizer (HLO) operation name."),
        ("raw_hlo_id", "int64", "",
         "Unique identifier for hlo level instruction."),
        ("raw_framework_id", "int64", "",
         "Unique identifier for framework level instruction."),
        ("layer", "string", "",
         "Here \"layer\" means the name from the framework level debug info."),
        ("stack_frame_ids", "string", "",
         "List of stack frame identifiers for debugging."),
        ("nki_source_location", "string", "",
         "Neuron Kernel Interface (NKI) source code location that generated this "
         "instruction."),
        ("bir_debug_info_source_location", "string", "",
         "Source code location recorded in BIR debug info."),
        ("dma_trigger_start_ts", "int64", "",
         "Start timestamp of the DMA that this instruction triggered."),
        ("dma_trigger_end_ts", "int64", "",
         "End timestamp of the DMA that this instruction triggered."),
        ("dma_wait_time_ns", "int64", "nanoseconds",
         "The amount of time delay between the end timestamp of the trigger compute "
         "engine instruction to the start timestamp of the DMA that was triggered."),
        ("instruction_chain", "string", "",
         "List of instructions in this chain."),
        ("hbm_read_bytes", "int64", "",
         "Number of bytes read from HBM by this instruction."),
        ("hbm_write_bytes", "int64", "",
         "Number of bytes written to HBM by this instruction."),
        ("sbuf_read_bytes", "int64", "",
         "Number of bytes read from SBUF by this instruction."),
        ("sbuf_write_bytes", "int64", "",
         "Number of bytes written to SBUF by this instruction."),
        ("spill_save_bytes", "int64", "",
         "Number of bytes saved to HBM from SBUF by this instruction due to spill (lack"
         " of space in SBUF)."),
        ("spill_reload_bytes", "int64", "",
         "Number of bytes loaded from HBM to SBUF by this instruction due to spill "
         "(lack of space in SBUF)."),
        ("psum_read_bytes", "int64", "",
         "Number of bytes read from PSUM by this instruction."),
        ("psum_write_bytes", "int64", "",
         "Number of bytes read from PSUM by this instruction."),
        ("psum_read_sbuf_write_bytes", "int64", "",
         "Number of bytes read from PSUM into SBUF by this instruction."),
        ("input_queue_bytes", "int64", "",
         "Number of bytes loaded from an INPUT DMA queue by this instruction."),
        ("output_queue_bytes", "int64", "",
         "Number of bytes loaded from an OUTPUT DMA queue by this instruction."),
        ("weight_queue_bytes", "int64", "",
         "Number of bytes loaded from a DATA / WEIGHT DMA queue by this instruction."),
        ("performance_mode", "string", "",
         "Performance mode for this instruction."),
        ("tensor_instruction_type", "string", "",
         "Instruction type name from the debug info."),
        ("tensor_elements", "int64", "",
         "Do not use this field, it will eventually be deprecated as it can be "
         "misleading depending on data type and architecture, instead use raw_flops and"
         " adjusted_flops."),
        ("raw_flops", "int64", "",
         "Number of floating-point operations (FLOPs) performed by this instruction."),
        ("adjusted_flops", "int64", "",
         "BF16-equivalent FLOPs for this instruction."),
        ("tensor_elements_transpose", "int64", "",
         "Number of data elements processed by this instruction, only set when "
         "tensor_instruction_type is TRANSPOSE."),
        ("flops_transpose", "int64", "",
         "Number of transpose floating-point operations (FLOPs) performed by this "
         "instruction, only set when tensor_instruction_type is TRANSPOSE."),
        ("adjusted_flops_transpose", "int64", "",
         "BF16-equivalent transpose FLOPs for this instruction, only set when "
         "tensor_instruction_type is TRANSPOSE and 0 otherwise."),
        ("scalar_activation_fn", "string", "",
         "Type of activation function used."),
    ],
    "DmaPacket": [
        ("start_ts", "int64", "nanoseconds",
         "Timestamp when instruction started execution."),
        ("end_ts", "int64", "nanoseconds",
         "Timestamp when instruction finished execution."),
        ("duration_ns", "int64", "nanoseconds",
         "Duration of instruction execution."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
        ("id", "int64", "",
         "Unique identifier for this DMA packet."),
        ("packet_idx", "int32", "",
         "Index of the DMA packet within the set of DMA packets which fulfill a "
         "transfer of one or more tensors."),
        ("packet_aggregation_id", "int64", "",
         "Unique identifier of the row in the DmaPacketAggregated table that this "
         "packet is aggregated in."),
        ("engine_idx", "int64", "",
         "Index of the DMA engine that executed this DMA packet."),
        ("read_bytes", "int64", "bytes",
         "Size in bytes of data read during this operation."),
        ("write_bytes", "int64", "bytes",
         "Size in bytes of data written during this operation."),
        ("transfer_bytes", "int64", "bytes",
         "Size in bytes of data transferred during this operation."),
        ("throughput", "float", "bytes_per_second",
         "The throughput of this DMA operation."),
        ("queue_type", "string", "",
         "The type of the DMA queue that this packet belongs to."),
        ("variable", "string", "",
         "Variable or tensor name associated with the data being transferred."),
        ("queue_name", "string", "",
         "Queue name where this DMA operation was queued."),
        ("queue_idx", "int64", "",
         "Queue index where this DMA operation was queued."),
        ("crc", "int64", "",
         "Cyclic Redundancy Check value for data integrity verification."),
    ],
    "DmaPacketAggregated": [
        ("start_ts", "int64", "nanoseconds",
         "Timestamp when instruction started execution."),
        ("end_ts", "int64", "nanoseconds",
         "Timestamp when instruction finished execution."),
        ("duration_ns", "int64", "nanoseconds",
         "Duration of instruction execution."),
        ("id", "int64", "",
         "Unique identifier for this aggregated set of DMA packets."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
        ("block_id", "int32", "",
         "A block_id is used by the compiler to logically identify the transfer of one "
         "or more tensors."),
        ("queue_idx", "int64", "",
         "Queue index where this DMA operation was queued."),
        ("queue_name", "string", "",
         "Queue name where this DMA operation was queued."),
        ("queue_type", "string", "",
         "The type of the DMA queue that this packet belongs to."),
        ("op", "string", "",
         "DMA operation type."),
        ("variable", "string", "",
         "Variable or tensor name associated with the data being transferred."),
        ("read_bytes", "int64", "bytes",
         "Size in bytes of data read during this operation."),
        ("write_bytes", "int64", "bytes",
         "Size in bytes of data written during this operation."),
        ("transfer_bytes", "int64", "bytes",
         "Size in bytes of data transferred during this operation."),
        ("throughput", "float", "bytes_per_second",
         "The throughput of this DMA operation in bytes per second."),
        ("source", "string", "",
         "Source memory location(s) for the DMA transfer."),
        ("dest", "string", "",
         "Destination memory location(s) for the DMA transfer."),
        ("semaphore_id", "string", "",
         "Identifier of semaphore used for synchronization."),
        ("modular_flow_function", "string", "",
         "Modular flow function name and instance associated with this DMA operation."),
        ("read_sbuf_partitions", "string", "",
         "State Buffer partitions read from during this DMA operation."),
        ("read_num_sbuf_partitions", "int32", "",
         "Number of State Buffer partitions read from during this DMA operation."),
        ("read_shape", "string", "",
         "Multi-dimensional shape read from source memory."),
        ("read_offset", "string", "",
         "Byte offset within the source memory region."),
        ("read_steps", "string", "",
         "Stride of reads from source location."),
        ("write_sbuf_partitions", "string", "",
         "State Buffer partitions written to during this DMA operation."),
        ("write_num_sbuf_partitions", "int32", "",
         "Number of State Buffer partitions written to during this DMA operation."),
        ("write_shape", "string", "",
         "Multi-dimensional shape written to destination memory."),
        ("write_offset", "string", "",
         "Byte offset within the destination memory region."),
        ("write_steps", "string", "",
         "The destination stride."),
        ("is_transpose_mode", "bool", "",
         "Indicates if transpose mode is enabled."),
        ("transpose_element_size", "string", "",
         "Element size for transpose operations."),
        ("transpose_shape", "string", "",
         "Shape descriptor for transpose operation."),
        ("transpose_from_shape", "string", "",
         "Source shape for transpose operations."),
        ("transpose_to_shape", "string", "",
         "Target shape for transpose operation."),
        ("transpose_unroll_factor", "string", "",
         "Unroll factor for transpose operation."),
        ("trigger", "int64", "",
         "Start timestamp of the instruction that triggered this DMA."),
        ("completion", "int64", "",
         "End timestamp of the instruction that triggered this DMA."),
    ],
    "SemaphoreUpdate": [
        ("timestamp", "int64", "nanoseconds",
         "Timestamp when the semaphore update occurred."),
        ("id", "string", "",
         "Unique identifier of the semaphore being updated."),
        ("value", "int32", "",
         "New value assigned to the semaphore."),
        ("update_source", "string", "",
         "The source that generated this semaphore update notification (e.g. Tensor, "
         "Scalar, Vector, Sync, GpSimd, AXI)."),
        ("double_set_or_clear", "bool", "",
         "Indicates a double event set or clear condition."),
        ("update_mode", "int32", "",
         "The raw semaphore update mode integer from the ISA TPB update mode enum."),
        ("update_operation_type", "string", "",
         "The decoded operation type from the update mode, describing what modification"
         " was applied to the semaphore or event."),
        ("update_trigger_timing", "string", "",
         "The decoded trigger timing from the update mode, indicating when the update "
         "fires relative to the instruction that requested it."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
    ],
    "Flow": [
        ("in_id", "int64", "",
         "Unique identifier for the input flow."),
        ("out_id", "int64", "",
         "Unique identifier for the output flow."),
        ("in_table", "string", "",
         "Table name for the input flow."),
        ("out_table", "string", "",
         "Table name for the output flow."),
        ("dependency_type", "string", "",
         "Type of dependency from the predecessor instruction."),
        ("gap_time", "int64", "nanoseconds",
         "The gap time between the end of the input event and the start of the output "
         "event."),
    ],
    "ActiveTime": [
        ("start_ts", "int64", "nanoseconds",
         "Timestamp when activity on this engine starts."),
        ("end_ts", "int64", "nanoseconds",
         "Timestamp when activity on this engine ends."),
        ("engine", "string", "",
         "Compute engine that this active time period corresponds to."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
        ("duration_ns", "int64", "nanoseconds",
         "The duration of the active time period."),
    ],
    "OpcodeSummary": [
        ("engine", "string", "",
         "Compute engine that executed the instructions."),
        ("opcode", "string", "",
         "Opcode of the instructions."),
        ("instruction_count", "int64", "",
         "Total number of instructions with this engine and opcode combination."),
        ("instruction_time_ns", "int64", "nanoseconds",
         "Total cumulative execution time of all instructions with this engine and "
         "opcode combination."),
        ("active_time_ns", "int64", "nanoseconds",
         "Duration of time when at least one instruction with this engine and opcode "
         "combination is executing."),
        ("active_time_percent", "float", "",
         "Percentage of total execution time when at least one instruction with this "
         "engine and opcode combination is executing."),
    ],
    "HbmUsage": [
        ("timestamp", "int64", "nanoseconds",
         "Timestamp for this measurement."),
        ("current_throughput", "float", "bytes_per_second",
         "Rate of data transfer to/from HBM in bytes per second at this point of time."),
        ("total_transfer_bytes", "int64", "bytes",
         "Total bytes transferred to/from HBM."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
    ],
    "DmaUsage": [
        ("timestamp", "int64", "nanoseconds",
         "Timestamp for this measurement."),
        ("current_throughput", "float", "bytes_per_second",
         "Rate of data transfer over DMA in bytes per second at this timestamp."),
        ("total_transfer_bytes", "int64", "bytes",
         "Total bytes transferred over DMA including transfers to/from HBM and State "
         "Buffer."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
    ],
    "SbufUsage": [
        ("timestamp", "int64", "nanoseconds",
         "Timestamp for this usage measurement."),
        ("avg_util_percent", "float", "percent",
         "Average utilization across all State Buffer partitions."),
        ("partition_0_util_percent", "float", "percent",
         "Fullness percentage of State Buffer partition 0."),
        ("partition_32_util_percent", "float", "percent",
         "Fullness percentage of State Buffer partition 32."),
        ("partition_64_util_percent", "float", "percent",
         "Fullness percentage of State Buffer partition 64."),
        ("partition_96_util_percent", "float", "percent",
         "Fullness percentage of State Buffer partition 96."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
    ],
    "PsumUsage": [
        ("timestamp", "int64", "nanoseconds",
         "Timestamp for this usage measurement."),
        ("avg_util_percent", "float", "percent",
         "Average fullness across all PSUM memory banks."),
        ("bank_0_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 0."),
        ("bank_1_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 1."),
        ("bank_2_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 2."),
        ("bank_3_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 3."),
        ("bank_4_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 4."),
        ("bank_5_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 5."),
        ("bank_6_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 6."),
        ("bank_7_util_percent", "float", "percent",
         "Fullness percentage of PSUM memory bank 7."),
        ("pcore_idx", "int64", "",
         "Index of the physical NeuronCore within a Logical NeuronCore (LNC)."),
    ],
    "Warning": [
        ("message", "string", "",
         "The message displayed to users to describe the warning."),
        ("category", "string", "",
         "The type of warning captured during profile processing."),
    ],
    "SchemaFields": [
        ("table_name", "string", "",
         "The table this field belongs to."),
        ("table_description", "string", "",
         "The description of the table this field belongs to."),
        ("field_name", "string", "",
         "The name of this field."),
        ("field_description", "string", "",
         "The description of this field."),
        ("field_example", "string", "",
         "One or more examples of what value this field may hold."),
        ("field_type", "string", "",
         "The data type of this field."),
        ("field_required", "bool", "",
         "Indicates whether this field is required according to the OpenAPI schema "
         "definition."),
        ("field_format", "string", "",
         "The format provides additional detail about the data type of this field."),
        ("field_unit", "string", "",
         "The unit of this field."),
        ("field_minimum", "float", "",
         "The minimum value that can be held by this field."),
        ("field_maximum", "float", "",
         "The maximum value that can be held by this field."),
        ("field_enum_values", "string", "",
         "Comma-separated list of allowed enum values for this field, if the field is "
         "an enum type."),
    ],
}

# The fields the reference marks Required ("always present").
REQUIRED: dict[str, frozenset] = {
    "Summary": frozenset(),
    "Metadata": frozenset({
        "profile_schema_version", "ntff_version", "num_physical_cores", "vnc_enabled",
        "first_hw_timestamp", "last_hw_timestamp", "first_ts", "last_ts",
        "dma_ddr_bandwidth", "num_dma_engines_per_neuroncore", "hbm_ddr_bandwidth",
        "tensor_engine_num_rows", "tensor_engine_num_cols", "tensor_engine_clock_freq",
        "vector_engine_clock_freq", "vector_engine_num_channels",
        "scalar_engine_clock_freq", "scalar_engine_num_channels",
        "gpsimd_engine_clock_freq", "gpsimd_engine_num_channels",
        "neuroncore_clock_freq", "ticks_per_nanosec"
    }),
    "Instruction": frozenset({
        "start_ts", "end_ts", "duration_ns", "engine", "opcode", "operands", "id", "pc",
        "bir_id"
    }),
    "DmaPacket": frozenset({
        "start_ts", "end_ts", "duration_ns", "id", "packet_idx",
        "packet_aggregation_id", "read_bytes", "write_bytes", "transfer_bytes",
        "throughput", "queue_type", "crc"
    }),
    "DmaPacketAggregated": frozenset({
        "start_ts", "end_ts", "duration_ns", "id", "block_id", "queue_idx",
        "queue_name", "op", "variable", "read_bytes", "write_bytes", "transfer_bytes",
        "throughput", "source", "dest", "semaphore_id", "read_sbuf_partitions",
        "read_num_sbuf_partitions", "read_shape", "read_offset", "read_steps",
        "write_sbuf_partitions", "write_num_sbuf_partitions", "write_shape",
        "write_offset", "write_steps"
    }),
    "SemaphoreUpdate": frozenset({
        "timestamp", "id", "value"
    }),
    "Flow": frozenset({
        "in_id", "out_id", "in_table", "out_table"
    }),
    "ActiveTime": frozenset({
        "start_ts", "end_ts", "engine", "pcore_idx", "duration_ns"
    }),
    "OpcodeSummary": frozenset({
        "engine", "opcode", "instruction_count", "instruction_time_ns",
        "active_time_ns", "active_time_percent"
    }),
    "HbmUsage": frozenset({
        "timestamp", "current_throughput", "total_transfer_bytes"
    }),
    "DmaUsage": frozenset({
        "timestamp", "current_throughput", "total_transfer_bytes"
    }),
    "SbufUsage": frozenset({
        "timestamp"
    }),
    "PsumUsage": frozenset({
        "timestamp"
    }),
    "Warning": frozenset({
        "message", "category"
    }),
    "SchemaFields": frozenset({
        "table_name", "table_description", "field_name", "field_description",
        "field_type", "field_required"
    }),
}

TABLE_DESCRIPTIONS: dict[str, str] = {
    "Summary": "Profile performance metrics which summarize execution.",
    "Metadata": (
        "Metadata associated with this profile, including details about the system "
        "configuration."),
    "Instruction": "Instructions executed on NeuronCore compute engines.",
    "DmaPacket": "A DMA packet transfers data within a Neuron Device.",
    "DmaPacketAggregated": (
        "Each row in this table represents an aggregation of a set DMA packets which "
        "together fulfil a transfer of one or more tensors."),
    "SemaphoreUpdate": (
        "Semaphore state changes used for synchronization between operations."),
    "Flow": (
        "Storing dependency information for rows in different or same table (such as "
        "between instructions and DMAs)."),
    "ActiveTime": "A timeline of when engines are active.",
    "OpcodeSummary": (
        "Summary of instruction counts and total execution time grouped by compute "
        "engine and opcode."),
    "HbmUsage": "HBM time-series usage metrics such as throughput over time.",
    "DmaUsage": "DMA time-series usage metrics such as throughput over time.",
    "SbufUsage": (
        "State Buffer (SB) memory partition utilization metrics during execution."),
    "PsumUsage": "PSUM memory bank utilization metrics during execution.",
    "Warning": "Warnings produced during profile processing.",
    "SchemaFields": "The schema describes the data contained within the profile.",
}


DMA_QUEUE_TYPES = ("instruction", "input", "output", "data", "software_dynamic",
                   "hardware_dynamic", "unknown")  # the DmaQueueType enum
PERFORMANCE_MODES = ("2x", "4x")  # the PerformanceMode enum
ENUMS = {("DmaPacket", "queue_type"): DMA_QUEUE_TYPES,
         ("DmaPacketAggregated", "queue_type"): DMA_QUEUE_TYPES,
         ("Instruction", "performance_mode"): PERFORMANCE_MODES}

_NO_IR = "an NKI kernel run by trnsim has no compiler IR (HLO / Penguin / BIR / NEFF debug info)"
_NO_NTFF = "no hardware trace (NTFF): the profile is predicted"
_NO_QUEUE_CLASS = ("trnsim does not know which compiler DMA queue class (input / output / "
                   "data) a static transfer would use")
# Documented fields trnsim leaves null, and why (also written to the Warning table).
NOT_FILLED: dict[str, dict[str, str]] = {
    "Summary": {
        "trace_count": _NO_NTFF,
        "event_count": _NO_NTFF,
        "inputs_and_weights_size_bytes": "trnsim does not classify a kernel's HBM tensors "
                                         "as inputs, outputs or weights",
        "inputs_outputs_weights_size_bytes": "as inputs_and_weights_size_bytes",
        "weight_size_bytes": "as inputs_and_weights_size_bytes",
        "mbu_min_read_util_percent": "needs inputs_and_weights_size_bytes",
        "input_queue_bytes": _NO_QUEUE_CLASS,
        "output_queue_bytes": _NO_QUEUE_CLASS,
        "weight_queue_bytes": _NO_QUEUE_CLASS,
        "mfu_hlo_estimated_percent": _NO_IR,
        "mfu_hlo_max_achievable_estimated_percent": _NO_IR,
        **{k: "collective communication is not mapped to Explorer's CC tables"
           for k in ("cc_op_time", "cc_op_active_time", "cc_op_active_time_percent",
                     "cc_op_count", "cc_cores_instruction_time",
                     "cc_cores_instruction_active_time",
                     "cc_cores_instruction_active_time_percent",
                     "cc_cores_instruction_count")},
    },
    "Metadata": {
        "ntff_version": _NO_NTFF,
        **{k: "not a measurement on an instance" for k in (
            "instance_type", "runtime_version", "collectives_version", "driver_version",
            "neuroncore_idx", "neuron_device_idx", "ultraserver_id", "ultraserver_type",
            "ultraserver_size", "ultraserver_instance_index", "s3_bucket_path")},
        "explorer_version": "written by trnsim, not by Neuron Explorer",
        "explorer_build_time": "written by trnsim, not by Neuron Explorer",
        "compiler_version": "no Neuron Compiler run (no NEFF)",
    },
    "Instruction": {
        "timeline_track": "Explorer's UI track names per engine are not documented",
        "compiler_opcode": "trnsim records the NKI calls, not compiled hardware instructions",
        "compiler_operands": "as compiler_opcode",
        "compiler_pc": "as compiler_opcode",
        **{k: _NO_IR for k in ("penguin_id", "raw_penguin_id", "bir_id", "raw_bir_id",
                               "bir_instruction_name", "kernel_instruction_name",
                               "hlo_attrs", "hlo_name", "raw_hlo_id", "raw_framework_id",
                               "layer", "stack_frame_ids", "bir_debug_info_source_location",
                               "instruction_chain")},
        "crc_in": "no data CRCs are computed",
        "crc_out": "no data CRCs are computed",
        **{k: "trnsim's DMA transfers are queued, not triggered by a compute instruction"
           for k in ("dma_trigger_start_ts", "dma_trigger_end_ts", "dma_wait_time_ns")},
        "input_queue_bytes": _NO_QUEUE_CLASS,
        "output_queue_bytes": _NO_QUEUE_CLASS,
        "weight_queue_bytes": _NO_QUEUE_CLASS,
        "performance_mode": "trnsim does not record a Vector / Scalar performance mode",
        "tensor_elements": "deprecated by the reference (use raw_flops)",
        "tensor_elements_transpose": "trnsim counts FLOPs, not the hardware's element count",
    },
    "DmaPacket": {
        "queue_idx": "trnsim names queues; it does not number them as the hardware does",
        "crc": "no data CRCs are computed",
    },
    "DmaPacketAggregated": {
        "block_id": "no compiler DMA blocks (no NEFF)",
        "queue_idx": "trnsim names queues; it does not number them as the hardware does",
        "op": "the reference does not define the values of op beyond one example",
        "semaphore_id": "trnsim does not number semaphores (see SemaphoreUpdate)",
        "modular_flow_function": _NO_IR,
        **{k: "trnsim does not model the DMA engines' transpose parameters"
           for k in ("transpose_element_size", "transpose_shape", "transpose_from_shape",
                     "transpose_to_shape", "transpose_unroll_factor")},
        "trigger": "trnsim's DMA transfers are queued, not triggered by a compute instruction",
        "completion": "as trigger",
    },
    "SemaphoreUpdate": {
        "double_set_or_clear": "trnsim does not model semaphore values beyond the count",
        "update_mode": "the ISA's raw update-mode numbers are not documented",
    },
    "SchemaFields": {
        "field_example": "trnsim does not carry the reference's examples",
        "field_minimum": "not given by the reference",
        "field_maximum": "not given by the reference",
    },
}
# Filled only on rows where they apply (null elsewhere): not listed above.
CONDITIONAL = {
    "Instruction": {"raw_flops", "adjusted_flops", "flops_transpose",
                    "adjusted_flops_transpose", "tensor_instruction_type",
                    "scalar_activation_fn", "nki_source_location", "evt_wait_time_ns"},
    "DmaPacket": {"engine_idx", "variable", "throughput"},
    "DmaPacketAggregated": {"variable", "throughput"},
    "SchemaFields": {"field_format", "field_unit", "field_enum_values"},
}

ACTIVATE_OPCODES = frozenset({"activation", "activation_reduce"})  # Explorer: ACTIVATE
_ARROW = {"int64": "int64", "int32": "int32", "float": "float32", "double": "float64",
          "string": "string", "bool": "bool_"}
_SPACE = {"sbuf": "SB", "psum": "PSUM", "hbm": "HBM"}
_DEP = {"RAW": "FLOW_DEPENDENCE"}
_ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")
_ALWAYS = ("Summary", "Metadata", "Warning", "SchemaFields")


class MissingPyarrow(ImportError):
    """Parquet export without pyarrow installed."""


def columns(table: str) -> list[str]:
    return [c[0] for c in SCHEMA[table]]


# -- building the tables ----------------------------------------------------------------
def _ns(t) -> int:
    return int(round(float(t)))


def _pct(x, whole) -> float:
    return 100.0 * x / whole if whole > 0 else 0.0


def _track_label(track: str) -> str:
    from . import views
    return views.track_label(track)


def _loc(loc):
    if loc is None:
        return None
    f = getattr(loc, "file", None)
    return f"{f}:{loc.line}" if f else str(loc)


def _queue_type(ins) -> str:
    mode = ins.attrs.get("dge_mode")
    return {"swdge": "software_dynamic", "hwdge": "hardware_dynamic"}.get(mode, "unknown")


def _mem_bytes(ins) -> dict:
    from .summary import moves_data
    out = defaultdict(int)
    for mode, accs in (("read", ins.reads), ("write", ins.writes)):
        for a in accs:
            if moves_data(ins, a):
                out[f"{a.space}_{mode}_bytes"] += a.bytes
    return out


def instruction_rows(prof) -> list[dict]:
    from .summary import matmul_flops
    from . import views
    program, events, chip = prof.program, prof.timeline.events, prof.chip
    on_track = defaultdict(list)
    for ins, e in zip(program.instructions, events):
        if ins.engine != "dma":
            on_track[(e.core, e.track)].append(e)
    pc, free_at = {}, {}
    for evs in on_track.values():
        evs.sort(key=lambda e: (e.start, e.index))
        last = 0.0
        for n, e in enumerate(evs):
            pc[e.index], free_at[e.index] = n, last
            last = max(last, e.end)
    rows = []
    for ins, e in zip(program.instructions, events):
        if ins.engine == "dma":
            continue
        s, t = _ns(e.start), _ns(e.end)
        mem = _mem_bytes(ins)
        psum_to_sbuf = (sum(a.bytes for a in ins.writes if a.space == "sbuf")
                        if any(a.space == "psum" for a in ins.reads) else 0)
        row = {"start_ts": s, "end_ts": t, "duration_ns": t - s, "engine": ins.engine,
               "pcore_idx": e.core, "opcode": ins.opcode,
               "operands": "; ".join(views.operand_text(a) for a in ins.accesses),
               "id": ins.index, "pc": pc[ins.index],
               "evt_wait_time_ns": _ns(max(0.0, e.ready - free_at[ins.index])),
               "nki_source_location": _loc(ins.location),
               "hbm_read_bytes": mem["hbm_read_bytes"], "hbm_write_bytes": mem["hbm_write_bytes"],
               "sbuf_read_bytes": mem["sbuf_read_bytes"],
               "sbuf_write_bytes": mem["sbuf_write_bytes"],
               "spill_save_bytes": 0, "spill_reload_bytes": 0,  # spills are DMAs
               "psum_read_bytes": mem["psum_read_bytes"],
               "psum_write_bytes": mem["psum_write_bytes"],
               "psum_read_sbuf_write_bytes": psum_to_sbuf}
        f = matmul_flops(ins, chip)
        if f is not None:
            raw, adj, tr = f
            row.update(raw_flops=raw, adjusted_flops=adj, flops_transpose=raw if tr else 0,
                       adjusted_flops_transpose=adj if tr else 0,
                       tensor_instruction_type="TRANSPOSE" if tr else "REGULAR")
        if ins.opcode in ACTIVATE_OPCODES and ins.attrs.get("op") is not None:
            row["scalar_activation_fn"] = str(ins.attrs["op"])
        rows.append(row)
    return rows


def _partitions(a) -> tuple[str, int]:
    if a is None or a.space != "sbuf":
        return "", 0
    n = a.p_hi - a.p_lo
    return (str(a.p_lo) if n == 1 else f"{a.p_lo}-{a.p_hi - 1}"), n


def _side(prefix, a) -> dict:
    parts, n = _partitions(a)
    out = {f"{prefix}_sbuf_partitions": parts, f"{prefix}_num_sbuf_partitions": n}
    if a is not None:
        out[f"{prefix}_shape"] = "[" + ", ".join(str(int(x)) for x in a.shape) + "]"
        out[f"{prefix}_offset"] = f"[{hex(a.lo)}]"
        out[f"{prefix}_steps"] = "[" + ", ".join(str(int(st)) for st, _ in a.pattern) + "]"
    return out


def dma_rows(prof) -> tuple[list[dict], list[dict]]:
    """(DmaPacket rows, DmaPacketAggregated rows): one of each per transfer."""
    packets, blocks = [], []
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            continue
        s, t = _ns(e.start), _ns(e.end)
        rb, wb, tb = (sum(a.bytes for a in ins.reads), sum(a.bytes for a in ins.writes),
                      int(ins.bytes_moved))
        dur = e.end - e.start
        var = next((a.tensor for a in ins.accesses if a.space == "hbm" and a.tensor),
                   next((a.tensor for a in ins.accesses if a.tensor), None))
        queue = e.track.split(":", 1)[1] if e.track.startswith("dma:") else (ins.queue or None)
        common = {"start_ts": s, "end_ts": t, "duration_ns": t - s, "pcore_idx": e.core,
                  "read_bytes": rb, "write_bytes": wb, "transfer_bytes": tb,
                  "throughput": tb / dur * 1e9 if dur > 0 else None,
                  "queue_type": _queue_type(ins), "variable": var, "queue_name": queue}
        packets.append({**common, "id": ins.index, "packet_idx": 0,
                        "packet_aggregation_id": ins.index,
                        "engine_idx": e.dma_engines[0] if len(e.dma_engines) == 1 else None})
        src = next((a for a in ins.reads if a.role == "src"), ins.reads[0] if ins.reads else None)
        dst = ins.writes[0] if ins.writes else None
        where = (lambda accs: "[" + ", ".join(dict.fromkeys(_SPACE.get(a.space, a.space.upper())
                                                            for a in accs)) + "]")
        blocks.append({**common, "id": ins.index, "source": where(ins.reads),
                       "dest": where(ins.writes), **_side("read", src), **_side("write", dst),
                       "is_transpose_mode": bool(ins.attrs.get("transpose"))})
    return packets, blocks


def dependency_rows(prof) -> tuple[list[dict], list[dict]]:
    """(SemaphoreUpdate rows, Flow rows) from the timeline's waits."""
    program, events = prof.program, prof.timeline.events
    flows, signals = [], defaultdict(set)
    for e in events:
        for w in e.waits:
            if not 0 <= w.producer < len(events):
                continue
            p = events[w.producer]
            flows.append({"in_id": p.index, "out_id": e.index,
                          "in_table": _flow_table(program.instructions[p.index]),
                          "out_table": _flow_table(program.instructions[e.index]),
                          "dependency_type": _DEP.get(w.kind, w.kind),
                          "gap_time": _ns(e.start - p.end)})
            if (p.core, p.track) != (e.core, e.track):
                signals[(p.core, p.track, e.core, e.track)].add(p.index)
    sems = []
    for (pc_, pt, wc, wt), producers in signals.items():
        name = f"{_track_label(pt)} -> {_track_label(wt)}"
        if pc_ != wc:
            name = f"core {pc_} {_track_label(pt)} -> core {wc} {_track_label(wt)}"
        times = sorted(max(events[i].done, events[i].end) for i in producers)
        source = "AXI" if pt.startswith("dma:") else _track_label(pt)
        for n, t in enumerate(times, 1):
            sems.append({"timestamp": _ns(t), "id": name, "value": n, "update_source": source,
                         "update_operation_type": "sem_inc", "update_trigger_timing": "complete",
                         "pcore_idx": wc})
    sems.sort(key=lambda r: (r["timestamp"], r["id"], r["value"]))
    return sems, flows


def _flow_table(ins) -> str:
    return "dma_block" if ins.engine == "dma" else "instruction"


def active_rows(prof) -> list[dict]:
    from .summary import Busy
    busy = Busy(prof.timeline)
    rows = []
    for (core, group), spans in sorted(busy.spans.items()):
        if group in _ENGINES:
            for s, t in spans:
                s, t = _ns(s), _ns(t)
                rows.append({"start_ts": s, "end_ts": t, "engine": group, "pcore_idx": core,
                             "duration_ns": t - s})
    rows.sort(key=lambda r: (r["pcore_idx"], _ENGINES.index(r["engine"]), r["start_ts"]))
    return rows


def opcode_rows(prof) -> list[dict]:
    from .summary import merged
    groups = defaultdict(list)
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            groups[(ins.engine, ins.opcode)].append((e.core, e.start, e.end))
    total = float(prof.timeline.total_time)
    rows = []
    for (engine, opcode), evs in groups.items():
        spans = merged((s, t) for _, s, t in evs)
        active = sum(t - s for s, t in spans)
        rows.append({"engine": engine, "opcode": opcode, "instruction_count": len(evs),
                     "instruction_time_ns": _ns(sum(t - s for _, s, t in evs)),
                     "active_time_ns": _ns(active), "active_time_percent": _pct(active, total)})
    rows.sort(key=lambda r: (_ENGINES.index(r["engine"]) if r["engine"] in _ENGINES else 9,
                             -r["instruction_time_ns"], r["opcode"]))
    return rows


def _rate_samples(items, core) -> list[dict]:
    """Samples of a transfer rate (bytes spread evenly over each (start, end, bytes)) at
    every change: timestamp, current_throughput (bytes/s) and the cumulative bytes."""
    rate, jump = defaultdict(float), defaultdict(float)
    total = 0
    for s, t, b in items:
        if b <= 0:
            continue
        total += b
        if t > s:
            rate[s] += b / (t - s)
            rate[t] -= b / (t - s)
        else:
            jump[s] += b
    times = sorted(set(rate) | set(jump))
    out: dict[int, dict] = {}
    r = cum = 0.0
    last = None
    for n, t in enumerate(times):
        if last is not None:
            cum += r * (t - last)
        cum += jump.get(t, 0.0)
        r += rate.get(t, 0.0)
        if abs(r) < 1e-9:
            r = 0.0
        last = t
        done = total if n == len(times) - 1 else min(total, int(round(cum)))
        out[_ns(t)] = {"timestamp": _ns(t), "current_throughput": max(r, 0.0) * 1e9,
                       "total_transfer_bytes": done, "pcore_idx": core}
    return list(out.values())


def usage_rows(prof) -> tuple[list[dict], list[dict]]:
    """(HbmUsage rows, DmaUsage rows)."""
    hbm, dma = defaultdict(list), defaultdict(list)
    for ins, e in zip(prof.program.instructions, prof.timeline.events):
        if ins.engine != "dma":
            continue
        m = _mem_bytes(ins)
        hbm[e.core].append((e.start, e.end, m["hbm_read_bytes"] + m["hbm_write_bytes"]))
        dma[e.core].append((e.start, e.end, int(ins.bytes_moved)))
    return ([r for c in sorted(hbm) for r in _rate_samples(hbm[c], c)],
            [r for c in sorted(dma) for r in _rate_samples(dma[c], c)])


def memory_rows(prof) -> tuple[list[dict], list[dict]]:
    """(SbufUsage rows, PsumUsage rows) from the compiler model's placements."""
    import numpy as np
    plan, events, core_spec = prof.program.memory, prof.timeline.events, prof.chip.core
    if plan is None or not events:
        return [], []
    parts = core_spec.partitions
    nbanks, bank = core_spec.psum_banks, core_spec.psum_bank_bytes
    deltas = defaultdict(list)  # (space, core) -> [(time, sign, placement, alloc)]
    for p in plan.placements:
        a = plan.allocations[p.alloc]
        last = len(events) - 1 if p.last is None else p.last
        deltas[(a.space, a.core)] += [(events[p.first].start, 1, p, a),
                                      (events[last].end, -1, p, a)]
    sbuf, psum = [], []
    for (space, core), ds in sorted(deltas.items()):
        ds.sort(key=lambda d: (d[0], d[1]))
        if space == "sbuf":
            cap = plan.capacity.get(("sbuf", core)) or core_spec.sbuf_usable_bytes_per_partition
            level = np.zeros(parts)
        else:
            level = np.zeros(nbanks)  # bytes held in each bank, summed over partitions
        samples: dict[int, dict] = {}
        for k, (t, sign, p, a) in enumerate(ds):
            lo, hi = a.partition, min(parts, a.partition + a.partitions)
            if space == "sbuf":
                level[lo:hi] += sign * p.size
            else:
                for b in range(nbanks):
                    o = min(p.start + p.size, (b + 1) * bank) - max(p.start, b * bank)
                    if o > 0:
                        level[b] += sign * o * (hi - lo)
            if k + 1 < len(ds) and ds[k + 1][0] == t:
                continue  # sample once every change at this time is applied
            if space == "sbuf":
                u = 100.0 * level / cap
                samples[_ns(t)] = {"timestamp": _ns(t), "avg_util_percent": float(u.mean()),
                                   **{f"partition_{q}_util_percent": float(u[q])
                                      for q in (0, 32, 64, 96) if q < parts},
                                   "pcore_idx": core}
            elif space == "psum":
                u = 100.0 * level / (bank * parts)
                samples[_ns(t)] = {"timestamp": _ns(t), "avg_util_percent": float(u.mean()),
                                   **{f"bank_{b}_util_percent": float(u[b])
                                      for b in range(min(8, nbanks))},
                                   "pcore_idx": core}
        (sbuf if space == "sbuf" else psum).extend(samples.values())
    return sbuf, psum


def _merged_mean(spans_by_core, ncores) -> float:
    from .summary import length, merged
    return sum(length(merged(v)) for v in spans_by_core.values()) / max(1, ncores)


def summary_row(prof) -> dict:
    from .summary import core_count
    s = dict(prof.summary)
    row = {c: s[c] for c in columns("Summary") if c in s}
    program, events = prof.program, prof.timeline.events
    ncores = core_count(program)
    t_ns = float(prof.timeline.total_time)
    row["total_exec_time"] = ((max(e.end for e in events) - min(e.start for e in events))
                              * 1e-9 if events else 0.0)
    row["dma_packet_time"] = s.get("dma_transfer_time")
    clock = prof.chip.profiler_base_clock_hz
    if clock and "dma_active_time" in s:
        row["dma_active_cycles"] = int(round(s["dma_active_time"] * clock))
    row["mfu_inst_estimated_percent"] = s.get("mfu_estimated_percent")
    row["mfu_inst_max_achievable_estimated_percent"] = s.get(
        "mfu_max_achievable_estimated_percent")
    # static / dynamic (DGE) DMA
    kinds = {"static": (), "software_dynamic": (), "hardware_dynamic": ()}
    count, size = dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0)
    spans = {k: defaultdict(list) for k in kinds}
    dyn = defaultdict(list)
    act_n, act_t = 0, 0.0
    for ins, e in zip(program.instructions, events):
        if ins.opcode in ACTIVATE_OPCODES and ins.engine != "dma":
            act_n += 1
            act_t += e.end - e.start
        if ins.engine != "dma":
            continue
        q = _queue_type(ins)
        k = q if q in kinds else "static"
        count[k] += 1
        size[k] += int(ins.bytes_moved)
        spans[k][e.core].append((e.start, e.end))
        if k != "static":
            dyn[e.core].append((e.start, e.end))
    n_all, b_all = sum(count.values()), sum(size.values())
    for k in kinds:
        active = _merged_mean(spans[k], ncores)
        row[f"{k}_dma_packet_count"] = count[k]
        row[f"{k}_dma_size"] = size[k]
        row[f"{k}_dma_packet_percent"] = _pct(count[k], n_all)
        row[f"{k}_dma_size_percent"] = _pct(size[k], b_all)
        row[f"{k}_dma_active_time"] = active * 1e-9
        row[f"{k}_dma_active_time_percent"] = _pct(active, t_ns)
    row["dynamic_dma_packet_percent"] = _pct(n_all - count["static"], n_all)
    row["dynamic_dma_size_percent"] = _pct(b_all - size["static"], b_all)
    row["dynamic_dma_active_time_percent"] = _pct(_merged_mean(dyn, ncores), t_ns)
    row["activate_instruction_count"] = act_n
    row["activate_instruction_time"] = act_t * 1e-9
    return {k: v for k, v in row.items() if k in set(columns("Summary"))}


def metadata_row(prof) -> dict:
    from . import views
    chip, core = prof.chip, prof.chip.core
    lnc = max(1, int(getattr(prof.program, "lnc", 1) or 1))
    total = _ns(prof.timeline.total_time)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    ghz = (lambda hz: float(hz) / 1e9 if hz else None)
    return {"profile_schema_version": SCHEMA_VERSION, "num_physical_cores": lnc,
            "vnc_enabled": lnc > 1, "first_hw_timestamp": 0, "last_hw_timestamp": total,
            "first_ts": str(epoch),
            "last_ts": str(epoch + datetime.timedelta(microseconds=total / 1000)),
            "dma_ddr_bandwidth": float(core.dma.aggregate_bandwidth),
            "num_dma_engines_per_neuroncore": int(core.dma.engines),
            "hbm_ddr_bandwidth": float(chip.hbm_stack_bandwidth),
            "tensor_engine_num_rows": int(core.tensor.rows),
            "tensor_engine_num_cols": int(core.tensor.cols),
            "tensor_engine_clock_freq": ghz(core.tensor.clock_hz),
            "vector_engine_clock_freq": ghz(core.vector.clock_hz),
            "vector_engine_num_channels": int(core.vector.lanes),
            "scalar_engine_clock_freq": ghz(core.scalar.clock_hz),
            "scalar_engine_num_channels": int(core.scalar.lanes),
            "gpsimd_engine_clock_freq": ghz(core.gpsimd.clock_hz),
            "gpsimd_engine_num_channels": int(core.gpsimd.lanes),
            "neuroncore_clock_freq": ghz(chip.profiler_base_clock_hz),
            "ticks_per_nanosec": 1, "profile_name": views.kernel_name(prof),
            "is_simulation": True}


def warning_rows(prof, written) -> list[dict]:
    from . import views
    from .perfetto import _version
    chip = prof.chip
    lnc = max(1, int(getattr(prof.program, "lnc", 1) or 1))
    rows = [{"category": "Simulated Data",
             "message": f"Predicted by trnsim {_version()} on a simulated "
                        f"{views.chip_name(chip)} ({getattr(chip, 'core_name', '')}, "
                        f"LNC={lnc}), not measured; kernel {views.kernel_name(prof)}."}]
    for table in written:
        nulls = NOT_FILLED.get(table)
        if nulls:
            why = defaultdict(list)
            for field_name, reason in nulls.items():
                why[reason].append(field_name)
            rows.append({"category": "Missing Data",
                         "message": f"{table}: trnsim leaves these documented fields null: "
                                    + "; ".join(f"{', '.join(v)} ({k})" for k, v in why.items())})
    return rows


def schema_rows() -> list[dict]:
    kind = {"int64": ("integer", "int64"), "int32": ("integer", "int32"),
            "float": ("number", "float"), "double": ("number", "double"),
            "string": ("string", None), "bool": ("boolean", None)}
    rows = []
    for table, fields in SCHEMA.items():
        for name, typ, unit, meaning in fields:
            enum = ENUMS.get((table, name))
            rows.append({"table_name": table, "table_description": TABLE_DESCRIPTIONS[table],
                         "field_name": name, "field_description": meaning,
                         "field_type": kind[typ][0], "field_format": kind[typ][1],
                         "field_required": name in REQUIRED[table],
                         "field_unit": unit or None,
                         "field_enum_values": ",".join(enum) if enum else None})
    return rows


def build_tables(prof) -> dict[str, list[dict]]:
    """Every table trnsim writes, as rows (dicts with every documented field; null where
    trnsim has no value). Tables without rows are left out, as Explorer does."""
    packets, blocks = dma_rows(prof)
    sems, flows = dependency_rows(prof)
    hbm, dma = usage_rows(prof)
    sbuf, psum = memory_rows(prof)
    tables = {"Summary": [summary_row(prof)], "Metadata": [metadata_row(prof)],
              "Instruction": instruction_rows(prof), "DmaPacket": packets,
              "DmaPacketAggregated": blocks, "SemaphoreUpdate": sems, "Flow": flows,
              "ActiveTime": active_rows(prof), "OpcodeSummary": opcode_rows(prof),
              "HbmUsage": hbm, "DmaUsage": dma, "SbufUsage": sbuf, "PsumUsage": psum}
    tables = {k: v for k, v in tables.items() if v}
    tables["Warning"] = warning_rows(prof, [*tables, "SchemaFields"])
    tables["SchemaFields"] = schema_rows()
    tables["Summary"][0]["total_row_count"] = sum(len(v) for v in tables.values())
    return {t: [_complete(t, r) for r in rows] for t, rows in tables.items()}


def _complete(table: str, row: dict) -> dict:
    """The row with every documented field, in the documented order, values coerced to
    the documented types (None stays None)."""
    out = {}
    for name, typ, _, _ in SCHEMA[table]:
        v = row.get(name)
        if v is not None:
            if typ in ("int64", "int32"):
                v = int(round(float(v)))
            elif typ in ("float", "double"):
                v = float(v)
                if v != v or v in (float("inf"), float("-inf")):
                    v = None
            elif typ == "bool":
                v = bool(v)
            else:
                v = str(v)
        out[name] = v
    return out


# -- writing ------------------------------------------------------------------------------
def write_explorer(prof, path, format: str = "parquet") -> str:
    """Write `prof` into directory `path` as Explorer's tables: <Table>.parquet (format
    "parquet", needs pyarrow) or <Table>.json (format "json"). Returns the directory."""
    if format not in ("parquet", "json"):
        raise ValueError(f"format={format!r}: 'parquet' or 'json'")
    if format == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingPyarrow("Parquet export needs pyarrow: pip install 'trnsim[explorer]' "
                                 "(or export with format='json')") from None
    path = os.fspath(path)
    tables = build_tables(prof)
    os.makedirs(path, exist_ok=True)
    for table in SCHEMA:  # tables of an earlier export that this one does not write
        for ext in (".parquet", ".json"):
            old = os.path.join(path, table + ext)
            if os.path.exists(old):
                os.remove(old)
    for table, rows in tables.items():
        target = os.path.join(path, f"{table}.{format}")
        if format == "json":
            with open(target, "w") as f:
                json.dump(rows, f, indent=0)
            continue
        schema = pa.schema([(name, getattr(pa, _ARROW[typ])())
                            for name, typ, _, _ in SCHEMA[table]])
        data = {name: [r[name] for r in rows] for name in schema.names}
        pq.write_table(pa.table(data, schema=schema), target)
    return path
