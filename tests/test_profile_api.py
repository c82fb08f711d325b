"""`trnsim.profile(...)`: which kernels it takes, what the Profile holds, the
nki.benchmark-shaped result, the notebook view, and the trace/report delegation.

The plumbing tests replace the scheduler by a stand-in (100 ns per instruction, one
after another) so their expected values are exact; the end-to-end tests at the bottom
use the real timing model."""
import json
import sys
import types

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.timing
from trnsim import nki
from trnsim.timing.timeline import Event, Timeline
from trnsim.examples import load_example

STEP = 100.0  # ns per instruction in the stand-in scheduler
LAUNCH_US = 1.3  # nki.benchmark latency adds the chip files' launch_overhead_ns (1300 ns)


_example = load_example


def _serial(program, chip=None, order="compiler"):
    evs = [Event(i.index, i.core, f"dma:{i.queue}" if i.engine == "dma" else i.engine,
                 STEP * n, STEP * (n + 1), STEP * n) for n, i in enumerate(program)]
    return Timeline(chip or program.chip, evs, STEP * len(evs))


@pytest.fixture
def serial(monkeypatch):
    monkeypatch.setattr(trnsim.timing, "schedule", _serial, raising=False)


def _ab(shape=(256, 512), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype))


# -- entry point ---------------------------------------------------------------------
def test_trnsim_profile_is_callable_and_a_package():
    import trnsim.profile.summary as summary_mod
    assert callable(trnsim.profile)
    assert trnsim.profile.Profile is trnsim.profile.profile.__globals__["Profile"]
    assert summary_mod.summarize is trnsim.profile.summarize


def test_current_api_kernel(serial):
    ex = _example("tensor_add.py")
    a, b = _ab()
    prof = trnsim.profile(ex.tensor_add_kernel, a, b)
    np.testing.assert_array_equal(prof.outputs, a + b)
    # 2 row tiles x 1 column tile x (2 loads, add, store)
    assert prof.program.opcodes() == ["dma_copy", "dma_copy", "tensor_tensor", "dma_copy"] * 2
    assert prof.chip.name == "trn2" and prof.name == "tensor_add_kernel"
    assert prof.total_time == pytest.approx(8 * STEP * 1e-9)
    s = prof.summary
    assert s["total_time"] == pytest.approx(prof.total_time)
    assert s["hbm_read_bytes"] == a.nbytes + b.nbytes and s["hbm_write_bytes"] == a.nbytes
    # the adds are left to the compiler, which balances them over Vector and GpSimd
    assert s["vector_engine_instruction_count"] + s["gpsimd_engine_instruction_count"] == 2
    assert s["dma_transfer_count"] == 6
    assert s["dma_active_time_percent"] == pytest.approx(75.0)
    assert s["model_flops"] == 0 and s["mfu_estimated_percent"] == 0


def test_chip_numerics_and_kernel_forms(serial):
    ex = _example("tensor_add.py")
    a, b = _ab((128, 512))
    p1 = trnsim.profile(ex.tensor_add_kernel, a, b, chip="trn1", numerics=False)
    assert p1.chip.name == "trn1" and p1.outputs.shape == a.shape
    assert p1.program.opcodes() == ["dma_copy", "dma_copy", "tensor_tensor", "dma_copy"]
    # the plain function, and nki.simulate(kernel) with its chip
    p2 = trnsim.profile(ex.tensor_add_kernel.fn, a, b)
    np.testing.assert_array_equal(p2.outputs, a + b)
    sim = nki.Simulated(ex.tensor_add_kernel, chip="trn3")
    assert trnsim.profile(sim, a, b).chip.name == "trn3"
    # keyword arguments go to the kernel
    p3 = trnsim.profile(ex.tensor_add_kernel, a, b_input=b, chip="trn2")
    np.testing.assert_array_equal(p3.outputs, a + b)


def test_lnc2_kernel(serial):
    ex = _example("lnc2_add.py")
    a, b = _ab((256, 512))
    prof = trnsim.profile(ex.lnc2_add_kernel[2], a, b)
    np.testing.assert_array_equal(prof.outputs, a + b)
    assert prof.program.lnc == 2
    assert {i.core for i in prof.program} == {0, 1}
    assert trnsim.profile(ex.lnc2_add_kernel, a, b, lnc=2).program.lnc == 2
    assert trnsim.profile(ex.lnc2_add_kernel, a, b).program.lnc == 1


def test_legacy_kernels_with_grid_and_plain_function(serial):
    ex = _example("legacy/spmd_add.py")
    a, b = _ab((256, 512))
    prof = trnsim.profile(ex.spmd_add_kernel[4, 2], a, b, chip="trn1")
    np.testing.assert_array_equal(prof.outputs, a + b)
    assert prof.chip.name == "trn1"
    assert len(prof.program) == 8 * 4  # 8 instances x (2 loads, add, store)
    # a plain function written against the legacy API is recognized as legacy
    plain = trnsim.profile(_example("legacy/tensor_add.py").tensor_add_kernel.fn, a, b)
    np.testing.assert_array_equal(plain.outputs, a + b)
    assert plain.program.opcodes() == ["dma_copy", "dma_copy", "tensor_tensor", "dma_copy"] * 2
    with pytest.raises(ValueError, match="lnc"):
        trnsim.profile(ex.spmd_add_kernel, a, b, lnc=2)


def test_legacy_platform_target_picks_the_chip(serial):
    import trnsim.legacy.jit as lnki
    ex = _example("legacy/tensor_add.py")
    a, b = _ab((128, 512))
    k = lnki.jit(ex.tensor_add_kernel, platform_target="trn3")
    assert trnsim.profile(k, a, b).chip.name == "trn3"
    assert trnsim.profile(k, a, b, chip="trn1").chip.name == "trn1"


# -- benchmark result ----------------------------------------------------------------------
def test_benchmark_result_is_the_latency_in_microseconds(serial):
    ex = _example("tensor_add.py")
    a, b = _ab((128, 512))
    lat = trnsim.profile(ex.tensor_add_kernel, a, b).benchmark_result.nc_latency
    for p in (0, 1, 10, 25, 50, 90, 99, 100):
        assert lat.get_latency_percentile(p) == pytest.approx(4 * STEP / 1000 + LAUNCH_US)
    with pytest.raises(ValueError, match="available percentiles"):
        lat.get_latency_percentile(42)


def test_legacy_benchmark_and_profile_decorators(serial, tmp_path):
    import trnsim.legacy.jit as lnki
    ex = _example("legacy/tensor_add.py")
    a, b = _ab((128, 512))
    bench = lnki.benchmark(warmup=2, iters=3)(ex.tensor_add_kernel)
    np.testing.assert_array_equal(bench(a, b), a + b)
    n = len(bench.benchmark_result.run.program)
    assert bench.benchmark_result.nc_latency.get_latency_percentile(99) == pytest.approx(
        n * STEP / 1000 + LAUNCH_US)
    assert bench.benchmark_result.profile.summary["dma_transfer_count"] == 3
    prof = lnki.profile(working_directory=str(tmp_path))(ex.tensor_add_kernel)
    prof(a, b)
    data = json.loads((tmp_path / "trnsim.summary.json").read_text())
    assert data["summary"]["hbm_read_bytes"] == a.nbytes + b.nbytes
    assert prof.profile_result.total_time == pytest.approx(n * STEP * 1e-9)
    assert (tmp_path / "trnsim_record.jsonl").exists()
    assert (tmp_path / "trnsim.trace.json").exists() and (tmp_path / "trnsim.report.html").exists()
    prof(a, b)  # a second call does not overwrite
    assert (tmp_path / "trnsim_record.1.jsonl").exists()
    assert (tmp_path / "trnsim.1.summary.json").exists()


# -- presentation and delegation ------------------------------------------------------------------
def test_repr_html_and_repr(serial):
    ex = _example("tiled_matmul.py")
    lhsT = np.ones((256, 128), ml_dtypes.bfloat16)
    rhs = np.ones((256, 512), ml_dtypes.bfloat16)
    prof = trnsim.profile(ex.tiled_matmul_kernel, lhsT, rhs, numerics=False)
    page = prof._repr_html_()
    assert page.startswith("<div>") and "<table>" in page and "total_time" in page
    assert "tiled_matmul_kernel" in page and "trn2" in page
    for ins in prof.insights:
        assert ins.title in page
    assert "tiled_matmul_kernel on trn2" in repr(prof)


def test_trace_and_report_delegate_to_their_writers(serial, monkeypatch, tmp_path):
    calls = []
    for mod, fn in (("perfetto", "write_perfetto"), ("report", "write_report")):
        fake = types.ModuleType(f"trnsim.profile.{mod}")
        setattr(fake, fn, lambda prof, path, _m=mod: calls.append((_m, prof, path)))
        monkeypatch.setitem(sys.modules, f"trnsim.profile.{mod}", fake)
    ex = _example("tensor_add.py")
    prof = trnsim.profile(ex.tensor_add_kernel, *_ab((128, 512)))
    prof.to_perfetto(tmp_path / "t.json")
    prof.report(str(tmp_path / "r.html"))
    assert calls == [("perfetto", prof, str(tmp_path / "t.json")),
                     ("report", prof, str(tmp_path / "r.html"))]


# -- end to end, with the real timing model ------------------------------------------------
def _inputs(kind):
    rng = np.random.default_rng(1)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    bf16 = lambda *s: rng.standard_normal(s).astype(ml_dtypes.bfloat16)  # noqa: E731
    return {"add": (f32(256, 512), f32(256, 512)), "norm": (f32(200, 768), f32(768)),
            "layernorm": (f32(200, 1100), f32(1100), f32(1100)), "softmax": (f32(300, 640),),
            "transpose": (bf16(256, 320),), "matmul": (bf16(512, 256), bf16(512, 1024)),
            "mx": (bf16(256, 128), bf16(256, 512))}[kind]


EXAMPLES = [("tensor_add.py", "tensor_add_kernel", "add"), ("rmsnorm.py", "rmsnorm_kernel", "norm"),
            ("layernorm.py", "layernorm_kernel", "layernorm"),
            ("softmax.py", "softmax_kernel", "softmax"),
            ("pe_transpose.py", "pe_transpose_kernel", "transpose"),
            ("tiled_matmul.py", "tiled_matmul_kernel", "matmul"),
            ("legacy/tensor_add.py", "tensor_add_kernel", "add"),
            ("legacy/rmsnorm.py", "rmsnorm_kernel", "norm"),
            ("legacy/layernorm.py", "layernorm_kernel", "layernorm"),
            ("legacy/softmax.py", "softmax_kernel", "softmax"),
            ("legacy/pe_transpose.py", "pe_transpose_kernel", "transpose"),
            ("legacy/tiled_matmul.py", "tiled_matmul_kernel", "matmul")]


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_examples_profile_with_consistent_metrics(chip):
    for path, attr, kind in EXAMPLES:
        args = _inputs(kind)
        prof = trnsim.profile(getattr(_example(path), attr), *args, chip=chip, numerics=False)
        s, T = prof.summary, prof.total_time
        where = f"{path} on {chip}"
        assert T > 0 and s["total_time"] == T, where
        assert s["total_active_time"] <= T * (1 + 1e-9), where
        for eng in ("tensor", "vector", "scalar", "gpsimd", "sync"):
            assert 0 <= s[f"{eng}_engine_active_time_percent"] <= 100 + 1e-6, where
        assert 0 <= s["dma_active_time_percent"] <= 100 + 1e-6, where
        assert sum(s[f"{e}_engine_instruction_count"] for e in
                   ("tensor", "vector", "scalar", "gpsimd", "sync")) \
            + s["dma_transfer_count"] == len(prof.program), where
        assert 0 <= s["mfu_estimated_percent"] <= s["hfu_estimated_percent"] <= 100, where
        # every input is read from HBM at least once; outputs are written
        assert s["hbm_read_bytes"] >= sum(a.nbytes for a in args), where
        assert s["hbm_write_bytes"] > 0, where
        assert prof.benchmark_result.nc_latency.get_latency_percentile(50) == \
            pytest.approx(T * 1e6 + LAUNCH_US), where


def test_single_pass_kernel_reads_its_inputs_once():
    ex = _example("tensor_add.py")
    a, b = _inputs("add")
    prof = trnsim.profile(ex.tensor_add_kernel, a, b, numerics=False)
    s = prof.summary
    assert s["hbm_read_bytes"] == a.nbytes + b.nbytes
    assert s["hbm_write_bytes"] == a.nbytes
    assert s["hbm_reload_bytes"] == 0 and s["useful_read_percent"] == 100
    assert s["model_flops"] == 0
    assert not {"tensor_reload", "spill"} & {i.rule for i in prof.all_insights}


def test_matmul_tutorial_variants_order_as_published():
    """On trn1 the tutorial's four steps get faster and their MFU rises; the tiled
    variant re-reads its operands (a reload insight naming its load lines), the fully
    blocked one does not; bf16 model FLOPs are 2*M*N*K."""
    ex = _example("legacy/matmul_tutorial.py")
    K, M, N = 1024, 2048, 1024
    lhsT = np.ones((K, M), ml_dtypes.bfloat16)
    rhs = np.ones((K, N), ml_dtypes.bfloat16)
    profs = {name: trnsim.profile(k, lhsT, rhs, chip="trn1", numerics=False)
             for name, k in ex.VARIANTS.items()}
    for p in profs.values():
        assert p.summary["model_flops"] == 2 * M * N * K
        assert p.summary["transpose_flops"] == 0
    tiled, free, mnk = profs["tiled"], profs["block_free"], profs["block_mnk"]
    assert tiled.total_time > free.total_time > mnk.total_time
    mfu = [p.summary["mfu_estimated_percent"] for p in (tiled, free, mnk)]
    assert mfu == sorted(mfu) and mfu[0] < mfu[2]
    ai = [p.summary["mm_arithmetic_intensity"] for p in profs.values()]
    assert ai == sorted(ai)
    reload = next(i for i in tiled.all_insights if i.rule == "tensor_reload")
    load_lines = {str(i.location) for i in tiled.program if i.engine == "dma"
                  and any(a.space == "hbm" for a in i.reads)}
    assert reload.locations and set(reload.locations) <= load_lines
    assert mnk.summary["hbm_reload_bytes"] == 0
    assert "tensor_reload" not in {i.rule for i in mnk.all_insights}


def test_pe_transpose_counts_transpose_flops():
    ex = _example("pe_transpose.py")
    (x,) = _inputs("transpose")
    prof = trnsim.profile(ex.pe_transpose_kernel, x, numerics=False)
    s = prof.summary
    assert s["transpose_flops"] == s["hardware_flops"] > 0 and s["model_flops"] == 0
    assert s["mfu_estimated_percent"] == 0 < s["hfu_estimated_percent"]
    tr = next(i for i in prof.all_insights if i.rule == "transpose_flops")
    assert tr.value == pytest.approx(100.0)
    assert set(tr.locations) == {str(i.location) for i in prof.program
                                 if i.opcode == "nc_transpose"}


def test_lnc2_profile_runs_both_cores():
    ex = _example("lnc2_add.py")
    a, b = (np.ones((512, 512), np.float32),) * 2
    one = trnsim.profile(ex.lnc2_add_kernel, a, b, numerics=False)
    two = trnsim.profile(ex.lnc2_add_kernel[2], a, b, numerics=False)
    assert two.summary["hbm_read_bytes"] == one.summary["hbm_read_bytes"] == 2 * a.nbytes
    # each core's first loads start at once: the cores run concurrently
    first = {c: min(e.start for e in two.timeline.events if e.core == c) for c in (0, 1)}
    assert first == {0: 0.0, 1: 0.0}
    # the barrier's data operand orders the cores and moves no bytes
    assert two.summary["hbm_write_bytes"] == a.nbytes
    assert sorted((i.core, i.engine) for i in two.program if i.opcode == "core_barrier") == \
        [(0, "gpsimd"), (1, "gpsimd")]  # one barrier per core


def test_legacy_benchmark_latency_with_the_timing_model():
    import trnsim.legacy.jit as lnki
    ex = _example("legacy/tensor_add.py")
    a, b = _inputs("add")
    bench = lnki.benchmark(ex.tensor_add_kernel)
    bench(a, b)
    p99 = bench.benchmark_result.nc_latency.get_latency_percentile(99)
    assert p99 == bench.benchmark_result.nc_latency.get_latency_percentile(0)
    assert p99 == pytest.approx(
        trnsim.profile(ex.tensor_add_kernel, a, b).total_time * 1e6 + LAUNCH_US)
    assert 0.5 < p99 < 1000  # microseconds: a few DMAs of 512 KiB take a few us
