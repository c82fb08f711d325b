"""Neuron Explorer's documented profile schema, as data: the tables trnsim writes, their
fields (name, type, unit, first sentence of the description), the required ones, the
enums, and the fields trnsim leaves null with the reason (trnsim/profile/explorer.py
writes the tables).

Source: the "Profile Parquet Schema Reference" (aws-neuron-sdk
tools/neuron-explorer/profile-schema-reference.rst, Neuron SDK 2.31.0, schema 7.4.0), in
its order.
"""
from __future__ import annotations

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
        # cc_op_* are computed (summary.cc_metrics)
        **{k: "trnsim models a collective as one operation on the rank's CC track, not "
              "as the instructions the CC cores run for it"
           for k in ("cc_cores_instruction_time", "cc_cores_instruction_active_time",
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


def columns(table: str) -> list[str]:
    return [c[0] for c in SCHEMA[table]]
