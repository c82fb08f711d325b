"""Performance-insight rules on hand-built programs and timelines: each rule fires past
its threshold (and not below it), names the kernel lines responsible, and the profile
lists the most critical first."""

import pytest

from trnsim.chips import load_chip
from trnsim.machine.access import Access
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program
from trnsim.profile import Profile, find_insights, summarize
from trnsim.timing.timeline import Event, Timeline, Wait

FILE = "/kernels/k.py"


def acc(space, mode, nbytes, lo=0, tensor="t", dtype="bfloat16", contiguous=None):
    n = nbytes // (4 if dtype == "float32" else 2)
    return Access(mode, mode, space, 0, tensor, dtype, (n,), ((1, n),), 0, 0, 128, lo,
                  lo + nbytes, n, nbytes, contiguous or nbytes)


class Build:
    def __init__(self, chip="trn2"):
        self.chip = load_chip(chip)
        self.program = Program(self.chip, 1)
        self.events = []

    def add(self, engine, opcode, start, end, reads=(), writes=(), line=1, attrs=None,
            ready=None, waits=()):
        i = len(self.program)
        queue = "qSyncIO" if engine == "dma" else None
        self.program.append(Instruction(i, 0, engine, opcode, tuple(reads), tuple(writes),
                                        SourceLocation(FILE, line, "k"), attrs or {}, queue))
        self.events.append(Event(i, 0, f"dma:{queue}" if queue else engine, start, end,
                                 start if ready is None else ready, tuple(waits)))
        return i

    def dma(self, start, end, src, dst, line=1, **kw):
        return self.add("dma", "dma_copy", start, end, [src], [dst], line, {}, **kw)

    def load(self, start, end, nbytes=32768, lo=0, line=1, tensor="x", **kw):
        return self.dma(start, end, acc("hbm", "r", nbytes, lo, tensor), acc("sbuf", "w", nbytes),
                        line, **kw)

    def matmul(self, start, end, K=128, M=128, N=512, dtype="bfloat16", transpose=False,
               line=1, **kw):
        attrs = dict(perf_mode="none", K=K, contraction=K, M=M, N=N, stationary_dtype=dtype,
                     moving_dtype=dtype, is_transpose=transpose)
        return self.add("tensor", "nc_transpose" if transpose else "nc_matmul", start, end,
                        [acc("sbuf", "r", K * M * 2), acc("sbuf", "r", K * N * 2)],
                        [acc("psum", "w", M * N * 4, dtype="float32")], line, attrs, **kw)

    def timeline(self, total=None, throttle=()):
        total = max(e.end for e in self.events) if total is None else total
        return Timeline(self.chip, self.events, total, list(throttle))

    def insights(self, **kw):
        tl = self.timeline(**kw)
        return find_insights(self.program, tl, summarize(self.program, tl))

    def rules(self, **kw):
        return [i.rule for i in self.insights(**kw)]

    def rule(self, name, **kw):
        found = [i for i in self.insights(**kw) if i.rule == name]
        assert found, f"rule {name} did not fire"
        return found[0]


def loc(line):
    return f"{FILE}:{line}"


# -- low model FLOPs vs active FLOPs -----------------------------------------------------
def test_low_model_flops_fires_below_half_and_names_the_worst_matmul():
    b = Build()
    b.matmul(0, 200, K=64, line=10)  # 2*64*128*512 FLOPs in 200 ns: 53% of peak
    assert "low_model_flops" not in b.rules()
    b.matmul(200, 400, K=16, line=11)  # 13% of peak
    b.matmul(400, 600, K=16, line=11)
    ins = b.rule("low_model_flops")
    peak_per_ns = 2 * 128 * 128 * 2.4
    expected = 100 * 2 * 128 * 512 * (64 + 16 + 16) / (peak_per_ns * 600)
    assert ins.value == pytest.approx(expected) and ins.value < 50
    assert ins.threshold == 50
    assert ins.locations == [loc(11), loc(10)]  # the K=16 line wastes the most time
    assert "128 partitions" in ins.recommendation
    assert ins.criticality == pytest.approx(1 - expected / 100)  # TensorE active all run


def test_low_model_flops_advice_for_fp32_and_short_moving():
    b = Build()
    b.matmul(0, 200, N=32, dtype="float32", line=4)
    ins = b.rule("low_model_flops")
    assert "bf16" in ins.recommendation and "N=32" in ins.recommendation


def test_no_tensor_work_no_flops_insights():
    b = Build()
    b.load(0, 5000, nbytes=1 << 20)
    assert not {"low_model_flops", "transpose_flops", "engine_starvation"} & set(b.rules())


# -- transposes -----------------------------------------------------------------------------
def test_transpose_flops_over_ten_percent():
    b = Build()
    b.matmul(0, 214, line=5)
    b.matmul(214, 254, K=128, M=32, N=128, transpose=True, line=6)  # 5.9% of hw FLOPs
    assert "transpose_flops" not in b.rules()
    b.matmul(254, 300, K=128, M=128, N=128, transpose=True, line=7)
    ins = b.rule("transpose_flops")
    mm, t1, t2 = 2 * 128 * 128 * 512, 2 * 128 * 32 * 128, 2 * 128 * 128 * 128
    assert ins.value == pytest.approx(100 * (t1 + t2) / (mm + t1 + t2))
    assert ins.locations == [loc(7), loc(6)]  # by transpose FLOPs


# -- small DMAs -----------------------------------------------------------------------------
def test_many_tiny_dmas_fire_small_dma():
    b = Build()
    for k in range(10):
        b.load(100 * k, 100 * k + 2000, nbytes=512, lo=512 * k, line=20)
    b.load(0, 3000, nbytes=1 << 16, lo=1 << 20, line=21)
    ins = b.rule("small_dma")
    assert ins.locations == [loc(20)]
    assert ins.value == pytest.approx((10 * 512 + 65536) / 11)  # average bytes
    assert ins.criticality == pytest.approx(2900 / 3000)  # small DMAs busy 0-2900 ns


def test_few_small_dmas_among_large_ones_do_not_fire():
    b = Build()
    for k in range(3):
        b.load(1000 * k, 1000 * k + 900, nbytes=1 << 16, lo=(1 << 16) * k)
    b.load(3000, 3500, nbytes=256, lo=1 << 20)
    assert "small_dma" not in b.rules()


# -- reloads ------------------------------------------------------------------------------------
def test_range_read_three_times_is_a_reload():
    b = Build()
    b.load(0, 1000, lo=0, tensor="w", line=30)
    b.load(1000, 2000, lo=0, tensor="w", line=30)
    b.load(2000, 3000, lo=1 << 20, tensor="x", line=31)
    assert "tensor_reload" not in b.rules()  # read twice: one reload is allowed
    b.load(3000, 4000, lo=0, tensor="w", line=32)
    ins = b.rule("tensor_reload")
    assert ins.value == 3 and ins.threshold == 2
    assert set(ins.locations) == {loc(30), loc(32)} and ins.locations[0] == loc(30)
    assert "'w' up to 3 times" in ins.message


# -- throttling ------------------------------------------------------------------------------
def test_active_throttling_detected():
    b = Build()
    b.matmul(0, 2000, line=40)
    b.matmul(6000, 8000, line=41)
    assert "throttling" not in b.rules()
    # throttled only while idle: nothing lost
    assert "throttling" not in b.rules(throttle=[(2000, 6000, 0.5)])
    ins = b.rule("throttling", throttle=[(0, 1000, 0.5), (6000, 7000, 0.6)])
    assert ins.value == pytest.approx(100 * (1000 * 0.5 + 1000 * 0.4) / 8000)
    assert ins.locations == [loc(40), loc(41)]


# -- spill --------------------------------------------------------------------------------------
def test_spill_reloads_over_a_quarter_of_hbm_reads():
    site = "'ys' float32[8, 128, 8192] allocated at k.py:50"
    b = Build()
    b.load(0, 1000, nbytes=65536, lo=0, tensor="x", line=50)
    # the kernel's own HBM round trip is not a compiler spill
    b.dma(1000, 2000, acc("sbuf", "r", 16384), acc("hbm", "w", 16384, 1 << 20, "scratch"),
          line=51)
    b.dma(2000, 3000, acc("hbm", "r", 16384, 1 << 20, "scratch"), acc("sbuf", "w", 16384),
          line=52)
    assert "spill" not in b.rules()
    spill = {"tensor_site": site}
    b.add("dma", "dma_copy", 3000, 4000, [acc("sbuf", "r", 16384)],
          [acc("hbm", "w", 16384, 2 << 20, "ys")], 50, dict(spill, spill="save"))
    b.add("dma", "dma_copy", 4000, 5000, [acc("hbm", "r", 16384, 2 << 20, "ys")],
          [acc("sbuf", "w", 16384)], 53, dict(spill, spill="reload"))
    assert "spill" not in b.rules()  # 16 KiB of 96 KiB read: 17%
    b.add("dma", "dma_copy", 5000, 6000, [acc("hbm", "r", 16384, 2 << 20, "ys")],
          [acc("sbuf", "w", 16384)], 54, dict(spill, spill="reload"))
    ins = b.rule("spill")
    assert ins.value == pytest.approx(100 * 32768 / (65536 + 16384 + 32768))
    assert set(ins.locations) == {loc(50), loc(53), loc(54)}
    assert site in ins.message


# -- starvation -----------------------------------------------------------------------------------
def test_tensor_engine_starved_by_dma():
    b = Build()
    d0 = b.load(0, 1000, line=60)
    m0 = b.matmul(1000, 1100, line=61, ready=1000, waits=(Wait(d0, "RAW", "sbuf"),))
    d1 = b.load(1000, 3000, lo=1 << 20, line=62)
    b.matmul(3000, 3100, line=63, ready=3000,
             waits=(Wait(d1, "RAW", "sbuf"), Wait(m0, "WAW", "psum")))
    ins = b.rule("engine_starvation")
    # idle 1100-3000 between the matmuls; the wait before the first one is not counted
    assert ins.value == pytest.approx(100 * 1900 / 3100)
    assert ins.locations == [loc(62)]
    assert "DMA" in ins.message and "k.py:63" in ins.message
    assert "prefetch" in ins.recommendation


def test_tensor_engine_starved_by_psum_evacuation():
    b = Build()
    m0 = b.matmul(0, 200, line=70)
    v0 = b.add("vector", "tensor_copy", 200, 1200, line=71, ready=200,
               waits=(Wait(m0, "RAW", "psum"),))
    b.matmul(1200, 1400, line=72, ready=1200, waits=(Wait(v0, "WAR", "psum"),))
    ins = b.rule("engine_starvation")
    assert ins.value == pytest.approx(100 * 1000 / 1400)
    assert ins.locations == [loc(71)]
    assert "PSUM" in ins.recommendation and "VectorE" in ins.message


def test_only_initial_wait_is_not_starvation():
    b = Build()
    d0 = b.load(0, 5000, line=80)
    m0 = b.matmul(5000, 5200, ready=5000, waits=(Wait(d0, "RAW", "sbuf"),))
    b.matmul(5200, 5400, ready=5000, waits=(Wait(d0, "RAW", "sbuf"), Wait(m0, "WAW", "psum")))
    assert "engine_starvation" not in b.rules()


# -- ordering and presentation --------------------------------------------------------------------
def test_profile_shows_at_most_four_most_critical_first(tmp_path):
    src = tmp_path / "kern.py"
    src.write_text("\n".join(f"line_{i} = {i}" for i in range(1, 100)) + "\n")
    global FILE
    old, FILE = FILE, str(src)
    try:
        b = Build()
        for k in range(12):  # tiny, repeated loads of one range
            b.load(100 * k, 100 * k + 90, nbytes=256, lo=0, line=2)
        b.matmul(1200, 1400, K=16, line=3)
        b.matmul(1400, 1500, K=128, M=128, N=128, transpose=True, line=4)
        d = b.load(1500, 5000, nbytes=256, lo=0, line=5)
        b.matmul(5000, 5200, K=16, line=6, ready=5000, waits=(Wait(d, "RAW", "sbuf"),))
        tl = b.timeline(throttle=[(1200, 1500, 0.5)])
        prof = Profile(b.program, tl, name="kern")
        found = prof.all_insights
        assert len(found) > 4
        crit = [i.criticality for i in found]
        assert crit == sorted(crit, reverse=True)
        assert prof.insights == found[:4]
        top = prof.insights[0]
        assert top.severity in ("high", "medium", "low")
        text = str(top)
        assert top.title in text and "kern.py:" in text
        assert prof.all_insights[-1].source_lines[0][1].startswith("line_")
    finally:
        FILE = old


def test_indirect_reads_are_not_reloads():
    """A gather or runtime-offset read's access spans every row it might read, so three
    of them share a key whatever rows they read: not evidence of a reload."""
    b = Build()
    for n in range(4):
        src = acc("hbm", "r", 32768, 0, "w")._replace(indirect=True)
        b.dma(n * 1000, n * 1000 + 1000, src, acc("sbuf", "w", 32768), line=33)
    assert "tensor_reload" not in b.rules()
