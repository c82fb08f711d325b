"""Summary metrics on small hand-built programs and timelines, checked against values
computed by hand from the definitions in hardware.md §4 / Neuron Explorer's schema."""
import pytest

from trnsim.chips import load_chip
from trnsim.machine.access import Access
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program
from trnsim.profile import summarize
from trnsim.timing.timeline import Event, Timeline

FILE = "/kernels/k.py"
ISZ = {"bfloat16": 2, "float32": 4, "float8_e4m3": 1, "float8_e4m3fn_x4": 4, "int8": 1}


def acc(space, mode, nbytes, lo=0, tensor="t", dtype="bfloat16", core=0, contiguous=None,
        pattern=None):
    n = nbytes // ISZ[dtype]
    return Access(mode, mode, space, core, tensor, dtype, (n,), pattern or ((1, n),), 0,
                  0, 128, lo, lo + nbytes, n, nbytes, contiguous or nbytes)


class Build:
    """A Program and its Timeline, one instruction (and event) at a time."""

    def __init__(self, chip="trn2", lnc=1):
        self.chip = load_chip(chip)
        self.program = Program(self.chip, lnc)
        self.events = []

    def add(self, engine, opcode, start, end, reads=(), writes=(), line=1, attrs=None,
            core=0, ready=None, waits=()):
        i = len(self.program)
        queue = "qSyncIO" if engine == "dma" else None
        self.program.append(Instruction(i, core, engine, opcode, tuple(reads), tuple(writes),
                                        SourceLocation(FILE, line, "kernel"), attrs or {},
                                        queue))
        self.events.append(Event(i, core, f"dma:{queue}" if queue else engine, start, end,
                                 start if ready is None else ready, tuple(waits)))
        return i

    def dma(self, start, end, src, dst, line=1, core=0, **kw):
        return self.add("dma", "dma_copy", start, end, [src], [dst], line,
                        {"bytes": dst.bytes}, core, **kw)

    def matmul(self, start, end, K=128, M=128, N=512, dtype="bfloat16", mdtype=None,
               transpose=False, perf_mode="none", line=1, core=0, **kw):
        mdtype = mdtype or dtype
        kk = 2 * K if perf_mode == "double_row" else (4 * K if perf_mode == "mx" else K)
        attrs = dict(perf_mode=perf_mode, K=K, contraction=kk, M=M, N=N,
                     stationary_dtype=dtype, moving_dtype=mdtype, dst_dtype="float32",
                     is_transpose=transpose)
        op = "nc_matmul_mx" if perf_mode == "mx" else (
            "nc_transpose" if transpose else "nc_matmul")
        return self.add("tensor", op, start, end,
                        [acc("sbuf", "r", K * M * ISZ[dtype], dtype=dtype),
                         acc("sbuf", "r", K * N * ISZ[mdtype], dtype=mdtype)],
                        [acc("psum", "w", M * N * 4, dtype="float32")], line, attrs, core,
                        **kw)

    def timeline(self, total=None, throttle=()):
        total = max(e.end for e in self.events) if total is None else total
        return Timeline(self.chip, self.events, total, list(throttle))

    def summary(self, **kw):
        return summarize(self.program, self.timeline(**kw))


def _small_kernel():
    """load lhsT, load rhs, matmul, PE transpose, PSUM->SBUF copy, store; 10 us."""
    b = Build("trn2")
    b.dma(0, 2000, acc("hbm", "r", 32768, lo=0), acc("sbuf", "w", 32768), line=3)
    b.dma(0, 3000, acc("hbm", "r", 131072, lo=32768), acc("sbuf", "w", 131072), line=4)
    b.matmul(3000, 3000 + 512 / 2.4, line=5)  # 512 cycles at 2.4 GHz
    b.add("tensor", "nc_transpose", 3300, 3400, [acc("sbuf", "r", 32768)],
          [acc("psum", "w", 32768)], 6,
          dict(perf_mode="none", K=128, contraction=128, M=128, N=128,
               stationary_dtype="bfloat16", moving_dtype="bfloat16", is_transpose=True))
    b.add("vector", "tensor_copy", 3400, 4000, [acc("psum", "r", 262144, dtype="float32")],
          [acc("sbuf", "w", 262144, dtype="float32")], 7)
    b.dma(4000, 10000, acc("sbuf", "r", 262144, dtype="float32"),
          acc("hbm", "w", 262144, lo=1 << 20, dtype="float32"), line=8)
    return b


def test_times_flops_and_utilization_match_hand_computation():
    s = _small_kernel().summary()
    T = 10000e-9
    assert s["total_time"] == pytest.approx(T)
    # union of every event: only the gap between the matmul's end and the transpose is idle
    idle = 3300 - (3000 + 512 / 2.4)
    assert s["total_active_time"] == pytest.approx((10000 - idle) * 1e-9)
    mm, tr = 2 * 128 * 128 * 512, 2 * 128 * 128 * 128
    assert s["hardware_flops"] == mm + tr
    assert s["transpose_flops"] == tr
    assert s["model_flops"] == mm
    peak = 2 * 128 * 128 * 2.4e9  # trn2 TensorE BF16 peak, FLOP/s
    assert s["mfu_estimated_percent"] == pytest.approx(100 * mm / (peak * T))
    assert s["hfu_estimated_percent"] == pytest.approx(100 * (mm + tr) / (peak * T))
    assert s["tensor_engine_active_time_percent"] == pytest.approx(
        100 * (512 / 2.4 + 100) / 10000)
    assert s["vector_engine_active_time_percent"] == pytest.approx(6.0)
    assert s["scalar_engine_active_time_percent"] == 0
    assert s["tensor_engine_instruction_count"] == 2
    assert s["vector_engine_instruction_count"] == 1
    assert s["gpsimd_engine_instruction_count"] == s["sync_engine_instruction_count"] == 0
    assert s["matmul_instruction_count"] == 1


def test_dma_and_memory_traffic_match_hand_computation():
    s = _small_kernel().summary()
    assert s["dma_active_time_percent"] == pytest.approx(90.0)  # 0-3 us and 4-10 us
    assert s["dma_transfer_count"] == 3
    assert s["dma_transfer_average_bytes"] == pytest.approx((32768 + 131072 + 262144) / 3)
    assert s["hbm_read_bytes"] == 32768 + 131072
    assert s["hbm_write_bytes"] == 262144
    # SBUF: matmul operands, transpose input, store source / loads, PSUM eviction
    assert s["sbuf_read_bytes"] == 32768 + 131072 + 32768 + 262144
    assert s["sbuf_write_bytes"] == 32768 + 131072 + 262144
    assert s["psum_write_bytes"] == 262144 + 32768
    assert s["psum_read_bytes"] == 262144
    assert s["psum_read_sbuf_write_count"] == 1
    hbm = 32768 + 131072 + 262144
    assert s["mbu_estimated_percent"] == pytest.approx(100 * hbm / 10000e-9 / 725e9)
    assert s["mm_arithmetic_intensity"] == pytest.approx(2 * 128 * 128 * 512 / hbm)
    assert s["peak_flops_bandwidth_ratio"] == pytest.approx(2 * 128 * 128 * 2.4e9 / 725e9)
    assert s["spill_save_bytes"] == s["spill_reload_bytes"] == s["hbm_reload_bytes"] == 0
    assert s["useful_read_percent"] == 100


def test_trn1_ratio_is_the_published_profiler_figure():
    b = Build("trn1")
    b.dma(0, 1000, acc("hbm", "r", 4096), acc("sbuf", "w", 4096))
    s = b.summary()
    assert s["peak_flops_bandwidth_ratio"] == pytest.approx(223.78, abs=0.01)
    assert s["neuroncore_cycle_count"] == 1400  # 1 us at the 1.4 GHz profiler base clock


@pytest.mark.parametrize("chip,kind,weight", [
    ("trn2", "bf16", 1.0), ("trn2", "fp32", 4.0), ("trn2", "fp32xbf16", 4.0),
    ("trn1", "fp8", 1.0), ("trn2", "fp8", 0.5), ("trn2", "fp8xbf16", 1.0),
    ("trn2", "double_row", 0.5), ("trn3", "mx", 0.25), ("trn2", "int8", 0.5)])
def test_bf16_equivalent_flops_scaling(chip, kind, weight):
    b = Build(chip)
    K, M, N = 128, 128, 256
    if kind == "double_row":
        b.matmul(0, 100, K, M, N, "float8_e4m3", perf_mode="double_row")
        raw = 2 * 256 * M * N
    elif kind == "mx":
        b.matmul(0, 100, K, M, N, "float8_e4m3fn_x4", perf_mode="mx")
        raw = 2 * 512 * M * N
    else:
        dt, mdt = {"bf16": ("bfloat16", None), "fp32": ("float32", None),
                   "fp32xbf16": ("float32", "bfloat16"), "fp8": ("float8_e4m3", None),
                   "fp8xbf16": ("float8_e4m3", "bfloat16"), "int8": ("int8", None)}[kind]
        b.matmul(0, 100, K, M, N, dt, mdt)
        raw = 2 * K * M * N
    s = b.summary()
    assert s["model_flops"] == s["hardware_flops"] == raw
    assert s["adjusted_hardware_flops"] == pytest.approx(raw * weight)
    peak = 2 * 128 * 128 * b.chip.core.tensor.clock_hz
    # Explorer: MFU/HFU are the FLOPs themselves over the BF16 peak (not BF16-adjusted) ...
    assert s["mfu_estimated_percent"] == pytest.approx(100 * raw / (peak * 100e-9))
    assert s["hfu_estimated_percent"] == pytest.approx(100 * raw / (peak * 100e-9))
    # ... while the FLOPs-utilization chart's share is of the BF16-adjusted maximum
    assert s["model_flops_active_percent"] == pytest.approx(
        100 * raw * weight / (peak * 100e-9))


def test_lnc2_uses_both_tensor_engines_and_averages_active_time():
    b = Build("trn2", lnc=2)
    b.matmul(0, 1000, core=0)
    b.matmul(0, 500, core=1)
    b.add("vector", "tensor_copy", 1000, 2000, core=1)
    s = b.summary()
    mm = 2 * 128 * 128 * 512
    peak2 = 2 * (2 * 128 * 128 * 2.4e9)
    assert s["mfu_estimated_percent"] == pytest.approx(100 * 2 * mm / (peak2 * 2000e-9))
    assert s["tensor_engine_active_time_percent"] == pytest.approx(100 * 750 / 2000)
    assert s["vector_engine_active_time_percent"] == pytest.approx(100 * 500 / 2000)
    assert s["total_active_time_percent"] == pytest.approx(100)


def test_throttle_metrics():
    b = Build("trn2")
    b.matmul(500, 1500)
    s = b.summary(total=2000, throttle=[(0, 1000, 0.5)])
    # 500 ns of active time under a 50% limit: 250 ns of peak lost over a 2000 ns run
    assert s["active_throttled_flops_percent"] == pytest.approx(12.5)
    assert s["average_utilization_limit_percent"] == pytest.approx(75.0)
    assert b.summary(total=2000)["active_throttled_flops_percent"] == 0


def test_reloads_and_round_trips():
    b = Build("trn2")
    x = dict(lo=0, tensor="x")
    for k in range(3):  # the same 4 KiB of input x, read three times
        b.dma(1000 * k, 1000 * k + 500, acc("hbm", "r", 4096, **x), acc("sbuf", "w", 4096))
    # the kernel's own scratch: saved to HBM, loaded back twice; a later write nobody reads
    b.dma(3000, 3500, acc("sbuf", "r", 8192), acc("hbm", "w", 8192, lo=65536, tensor="tmp"))
    b.dma(4000, 4500, acc("hbm", "r", 8192, lo=65536, tensor="tmp"), acc("sbuf", "w", 8192))
    b.dma(5000, 5500, acc("hbm", "r", 4096, lo=65536 + 4096, tensor="tmp"),
          acc("sbuf", "w", 4096))
    b.dma(6000, 6500, acc("sbuf", "r", 2048), acc("hbm", "w", 2048, lo=1 << 20, tensor="o"))
    s = b.summary()
    assert s["hbm_read_bytes"] == 3 * 4096 + 8192 + 4096
    # spill bytes count the compiler's spill DMAs only, not the kernel's own round trips
    assert s["spill_save_bytes"] == s["spill_reload_bytes"] == 0
    # reloads: x's 2nd and 3rd reads, plus both reads of the round-tripped data
    assert s["hbm_reload_bytes"] == 2 * 4096 + 8192 + 4096
    assert s["useful_read_percent"] == pytest.approx(100 * 4096 / (3 * 4096 + 8192 + 4096))
    b.add("dma", "dma_copy", 7000, 7500, [acc("sbuf", "r", 1024)],
          [acc("hbm", "w", 1024, lo=2 << 20, tensor="ys")], attrs={"spill": "save"})
    b.add("dma", "dma_copy", 8000, 8500, [acc("hbm", "r", 1024, lo=2 << 20, tensor="ys")],
          [acc("sbuf", "w", 1024)], attrs={"spill": "reload"})
    s = b.summary()
    assert s["spill_save_bytes"] == s["spill_reload_bytes"] == 1024


def test_empty_timeline_has_zero_rates():
    b = Build("trn2")
    b.add("sync", "core_barrier", 0, 0)
    s = b.summary(total=0)
    assert s["mfu_estimated_percent"] == s["mbu_estimated_percent"] == 0
    assert s["dma_transfer_average_bytes"] == 0 and s["mm_arithmetic_intensity"] == 0


def test_barrier_operand_is_not_traffic():
    b = Build("trn2", lnc=2)
    b.dma(0, 1000, acc("sbuf", "r", 4096), acc("hbm", "w", 4096, lo=0))
    for core in (0, 1):  # core_barrier(data=out): an ordering token on the output
        b.add("gpsimd", "core_barrier", 1000, 1200, [acc("hbm", "r", 4096, lo=0)], core=core)
    s = b.summary()
    assert s["hbm_read_bytes"] == 0 and s["hbm_write_bytes"] == 4096
    assert s["spill_reload_bytes"] == 0 and s["gpsimd_engine_instruction_count"] == 2


def test_throttle_index_sums_exactly_what_the_walk_over_all_spans_does():
    # the throttling insight's per-instruction lost peak-time, indexed (it was
    # instructions x spans: minutes for naive attention at 4K); overlapping spans as
    # with several cores, results bit-identical to the sum over every span
    import random

    from trnsim.profile.summary import ThrottleIndex, overlap
    rng = random.Random(7)
    spans = []
    for core in range(2):
        t = rng.uniform(0, 5)
        for _ in range(200):
            s = t + rng.uniform(0, 3)
            t = s + rng.uniform(0.1, 4)
            spans.append((s, t, rng.choice([0.5, 0.625, 0.75, 0.875])))
    spans.sort()
    index = ThrottleIndex(spans)
    for _ in range(500):
        a = rng.uniform(-5, t + 5)
        b = a + rng.uniform(0, 20)
        want = sum(overlap([(a, b)], [(s, e)]) * (1 - f) for s, e, f in spans)
        assert index.lost(a, b) == want
