"""The `trnsim` command (trnsim.cli) and the TRNSIM_PROFILE_DIR hook.

Most tests replace the scheduler by a stand-in (100 ns per instruction, one after
another) so the expected times are exact; the last tests use the real timing model
(skipped where it is not in the tree)."""
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import types
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.timing
from trnsim import cli
from trnsim.timing.timeline import Event, Timeline

ROOT = pathlib.Path(__file__).resolve().parent.parent
ADD = str(ROOT / "examples" / "tensor_add.py") + "::tensor_add_kernel"
SOFTMAX = str(ROOT / "examples" / "softmax.py") + "::softmax_kernel"
MATMUL = str(ROOT / "examples" / "tiled_matmul.py") + "::tiled_matmul_kernel"
STEP = 100.0


def _serial(program, chip=None, order="compiler"):
    evs = [Event(i.index, i.core, f"dma:{i.queue}" if i.engine == "dma" else i.engine,
                 STEP * n, STEP * (n + 1), STEP * n) for n, i in enumerate(program)]
    return Timeline(chip or program.chip, evs, STEP * len(evs))


@pytest.fixture
def serial(monkeypatch):
    monkeypatch.setattr(trnsim.timing, "schedule", _serial, raising=False)


def _run(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------- chips

def test_chips_table_and_json(capsys):
    rc, out, _ = _run(["chips"], capsys)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["trn1", "trn2", "trn3"]
    chips = [trnsim.load_chip(n) for n in ("trn1", "trn2", "trn3")]
    bf16 = next(ln for ln in lines if "peak TFLOPS/core BF16" in ln).split()[-3:]
    assert bf16 == [f"{c.core.tensor.peak_bf16_flops / 1e12:.1f}" for c in chips]
    cores = next(ln for ln in lines if "cores per chip" in ln).split()[-3:]
    assert cores == [str(c.cores_per_chip) for c in chips]
    rc, out, _ = _run(["chips", "--json"], capsys)
    figs = json.loads(out)
    for f, c in zip(figs, chips):
        assert f["name"] == c.name and f["hbm_bytes"] == c.hbm_bytes
        assert f["sbuf_bytes_per_core"] == c.core.partitions * c.core.sbuf_bytes_per_partition
        assert f["psum_bytes_per_core"] == 128 * 16 * 1024
        assert f["tensor_clock_hz"] == c.core.tensor.clock_hz
        assert f["dma_engines_per_core"] == 16
        assert f["peak_bf16_flops_per_chip"] == pytest.approx(
            c.core.tensor.peak_bf16_flops * c.cores_per_chip)


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "trnsim.cli", "chips"], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and "NeuronCore-v3" in r.stdout


# ---------------------------------------------------------------- inputs

def test_parse_arg_specs():
    rng = np.random.default_rng(0)
    name, a, desc = cli.parse_arg("x=bfloat16[128, 64]", rng)
    assert name == "x" and a.dtype == ml_dtypes.bfloat16 and a.shape == (128, 64)
    assert desc == "bfloat16[128, 64] random" and 0.5 < float(np.std(a.astype(np.float32))) < 1.5
    _, a, _ = cli.parse_arg("x=fp32[4x8]", rng)
    assert a.dtype == np.float32 and a.shape == (4, 8)
    _, a, _ = cli.parse_arg("idx=int32[1000]", rng)
    assert a.dtype == np.int32 and a.min() >= 0 and a.max() < 8
    _, a, _ = cli.parse_arg("q=float8_e4m3[16,16]", rng)
    assert a.dtype == ml_dtypes.float8_e4m3
    assert cli.parse_arg("eps=1e-5", rng)[1] == 1e-5
    assert cli.parse_arg("axes=(1, 0)", rng)[1] == (1, 0)
    assert cli.parse_arg("mode=fast", rng)[1] == "fast"
    # the seed decides the values
    a1 = cli.parse_arg("x=float32[8]", np.random.default_rng(3))[1]
    np.testing.assert_array_equal(a1, np.random.default_rng(3).standard_normal(8)
                                  .astype(np.float32))
    for bad in ("x", "x=float99[4]", "x=float32[]", "1x=float32[4]"):
        with pytest.raises(cli.CliError):
            cli.parse_arg(bad, rng)


def test_build_inputs_order_npz_and_errors(tmp_path):
    def k(a, b, scale=1.0):
        pass
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.savez(tmp_path / "in.npz", b=a, scale=np.float32(2.0))
    kwargs, desc = cli.build_inputs(k, ["a=float32[2,3]"], str(tmp_path / "in.npz"), 0)
    assert list(kwargs) == ["a", "b", "scale"]
    np.testing.assert_array_equal(kwargs["b"], a)
    assert kwargs["scale"] == 2.0 and isinstance(kwargs["scale"], float)
    assert desc[1] == "b float32[2, 3] from in.npz"
    with pytest.raises(cli.CliError, match=r"needs b: pass --arg b=bfloat16\[128,512\]"):
        cli.build_inputs(k, ["a=float32[2,3]"], None, 0)
    with pytest.raises(cli.CliError, match="c: not parameters"):
        cli.build_inputs(k, ["a=float32[2]", "b=float32[2]", "c=1"], None, 0)
    kwargs, _ = cli.build_inputs(k, ["a=float32[2]", "b=float32[2]", "c=1"], None, 0,
                                 only_known=True)
    assert list(kwargs) == ["a", "b"]


def test_load_kernel_errors(tmp_path):
    with pytest.raises(cli.CliError, match="FILE.py::KERNEL"):
        cli.load_kernel("examples/tensor_add.py")
    with pytest.raises(cli.CliError, match="no such file"):
        cli.load_kernel(str(tmp_path / "nope.py") + "::k")
    with pytest.raises(cli.CliError, match="has no 'nope'.*tensor_add_kernel"):
        cli.load_kernel(ADD.replace("tensor_add_kernel", "nope"))
    obj, fn, name = cli.load_kernel(ADD)
    assert name == "tensor_add_kernel" and fn is obj.fn


# ---------------------------------------------------------------- profile

def test_profile_prints_summary_insights_and_writes_files(serial, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, out, err = _run(["profile", ADD, "--arg", "a_input=float32[256,512]",
                         "--arg", "b_input=float32[256,512]", "--out", str(out_dir)], capsys)
    assert rc == 0, err
    # 2 row tiles x (2 loads, add, store) = 8 instructions at 100 ns
    assert "tensor_add_kernel on trn2" in out and "predicted time 800 ns for 8 instructions" in out
    assert re.search(r"total_time\s+800 ns", out)
    assert re.search(r"hbm_read_bytes\s+1.00 MiB", out)  # 2 x 256x512 fp32
    # the two adds left to the compiler: one each on Vector and GpSimd (engine balancing)
    assert re.search(r"vector\s+12.50 %\s+100 ns\s+100 ns\s+1", out)
    assert re.search(r"gpsimd\s+12.50 %\s+100 ns\s+100 ns\s+1", out)
    assert "Insights" in out and "Wrote" in out
    stem = out_dir / "tensor_add_kernel-trn2"
    for ext in (".trace.json", ".report.html", ".summary.json"):
        assert (stem.parent / (stem.name + ext)).exists()
    s = json.loads((out_dir / "tensor_add_kernel-trn2.summary.json").read_text())
    assert s["total_time"] == pytest.approx(800e-9) and s["instructions"] == 8
    assert s["summary"]["dma_transfer_count"] == 6
    assert s["inputs"] == ["a_input float32[256, 512] random", "b_input float32[256, 512] random"]
    trace = json.loads((out_dir / "tensor_add_kernel-trn2.trace.json").read_text())
    assert sum(1 for e in trace["traceEvents"] if e["ph"] == "X") == 8


def test_profile_options(serial, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, _ = _run(["profile", ADD, "--arg", "a_input=bf16[128,512]", "--arg",
                       "b_input=bf16[128,512]", "--chip", "trn1", "--no-numerics", "--json",
                       "--no-report"], capsys)
    assert rc == 0
    d = json.loads(out)
    assert d["chip"] == "trn1" and d["total_time"] == pytest.approx(400e-9)
    assert set(d["files"]) == {"summary", "trace"}  # --no-report
    assert (tmp_path / "trnsim-out" / "tensor_add_kernel-trn1.trace.json").exists()
    lnc = str(ROOT / "examples" / "lnc2_add.py") + "::lnc2_add_kernel"
    rc, out, _ = _run(["profile", lnc, "--lnc", "2", "--arg", "a_input=float32[256,256]",
                       "--arg", "b_input=float32[256,256]", "--no-write", "--json"], capsys)
    d = json.loads(out)
    assert d["lnc"] == 2 and d["files"] == {}


def test_profile_uses_npz_inputs(serial, tmp_path):
    a = np.arange(128 * 512, dtype=np.float32).reshape(128, 512)
    b = np.full((128, 512), 0.5, np.float32)
    np.savez(tmp_path / "in.npz", a_input=a, b_input=b)
    prof, desc = cli.run_profile(ADD, None, [], str(tmp_path / "in.npz"), None, True, 0)
    np.testing.assert_array_equal(prof.outputs, a + b)
    assert desc[0] == "a_input float32[128, 512] from in.npz"


def test_profile_usage_errors(capsys):
    rc, _, err = _run(["profile", ADD, "--arg", "a_input=float32[128,512]"], capsys)
    assert rc == 2 and "--arg b_input=" in err
    rc, _, err = _run(["profile", ADD, "--arg", "a_input=nonsense[4]"], capsys)
    assert rc == 2 and "unknown NKI dtype" in err
    assert cli.main([]) == 2


@pytest.mark.parametrize("argv,says", [
    (["profile", SOFTMAX, "--chip", "trn4", "--arg", "x=float32[128,512]"],
     "unknown chip 'trn4'; valid names: trn1, inf2, gen2, trn2, gen3, trn3, gen4"),
    (["compare", SOFTMAX, "--chip", "trn2", "--chip", "trn9", "--arg", "x=float32[128,512]"],
     "unknown chip 'trn9'"),
    (["profile", SOFTMAX, "--arg", "x=float32[128,512]", "--inputs", "missing.npz"],
     "--inputs missing.npz: no such file"),
    (["profile", SOFTMAX, "--arg", "x=float32[a,b]"], "the shape takes integers"),
])
def test_usage_errors_are_one_line(argv, says, capsys):
    rc, out, err = _run(argv, capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and says in err, err


def test_a_kernel_error_prints_its_line_without_a_traceback(tmp_path, capsys):
    src = tmp_path / "bad.py"
    src.write_text("import trnsim.nki as nki\nimport trnsim.nki.language as nl\n\n"
                   "@nki.jit\ndef bad(a):\n"
                   "    x = nl.ndarray((256, 512), a.dtype, buffer=nl.sbuf)\n"
                   "    return x\n")
    rc, _, err = _run(["profile", f"{src}::bad", "--arg", "a=float32[128,512]", "--no-write"],
                      capsys)
    assert rc == 1 and "Traceback" not in err
    assert "partition dimension 256" in err and f"{src}:6" in err


def test_compare_two_kernels_and_two_chips(serial, capsys):
    rc, out, _ = _run(["compare", ADD, SOFTMAX, "--arg", "a_input=float32[128,512]",
                       "--arg", "b_input=float32[128,512]", "--arg", "x=float32[128,512]",
                       "--no-numerics"], capsys)
    assert rc == 0
    add = trnsim.profile(cli.load_kernel(ADD)[0], np.zeros((128, 512), np.float32),
                         np.zeros((128, 512), np.float32), numerics=False)
    sm = trnsim.profile(cli.load_kernel(SOFTMAX)[0], np.zeros((128, 512), np.float32),
                        numerics=False)
    ratio = len(sm.program) / len(add.program)
    row = next(ln for ln in out.splitlines() if ln.split()[:1] == ["total_time"])
    assert row.split()[-1] == f"{ratio:.2f}x"
    assert "A = tensor_add_kernel@trn2, B = softmax_kernel@trn2" in out
    rc, out, _ = _run(["compare", ADD, "--chip", "trn2", "--chip", "trn3", "--arg",
                       "a_input=float32[128,512]", "--arg", "b_input=float32[128,512]"], capsys)
    assert rc == 0 and "B = tensor_add_kernel@trn3" in out
    assert re.search(r"total_time\s+400 ns\s+400 ns\s+1.00x", out)
    rc, out, _ = _run(["compare", ADD + "@trn1", ADD + "@trn3", "--arg",
                       "a_input=float32[128,512]", "--arg", "b_input=float32[128,512]"], capsys)
    assert "A = tensor_add_kernel@trn1, B = tensor_add_kernel@trn3" in out
    rc, _, err = _run(["compare", ADD], capsys)
    assert rc == 2 and "two" in err


def test_compare_one_kernel_in_program_and_compiler_order(capsys):
    rc, out, _ = _run(["compare", ADD, "--order", "program", "--order", "compiler",
                       "--arg", "a_input=float32[512,512]", "--arg", "b_input=float32[512,512]",
                       "--no-numerics"], capsys)
    assert rc == 0
    assert ("A = tensor_add_kernel@trn2 (program order), "
            "B = tensor_add_kernel@trn2 (compiler order)") in out
    rc, _, err = _run(["compare", ADD, "--order", "program"], capsys)
    assert rc != 0 and "in two orders" in err


def test_progress_line():
    buf = io.StringIO()
    p = cli.Progress(enabled=True, delay=0.0, stream=buf)
    from trnsim.machine import runtime
    fake = types.SimpleNamespace(program=[0] * 1234)
    runtime._active.append(fake)
    try:
        line = p.line()
    finally:
        runtime._active.remove(fake)
    assert "simulating" in line and "1,234 instructions" in line
    assert "scheduling" in p.line()  # the run is over: its timeline is being built
    p.set("writing")
    assert re.match(r"\r\[#{18}.\.{5}\] writing", p.line())
    with cli.Progress(enabled=True, delay=0.0, stream=buf):
        import time
        time.sleep(0.25)
    assert buf.getvalue().count("\r[") >= 1


# ---------------------------------------------------------------- TRNSIM_PROFILE_DIR

def test_profile_dir_hook_for_every_entry_point(serial, tmp_path, monkeypatch):
    from test_profile_perfetto import _example
    import trnsim.legacy.jit as lnki
    from trnsim import nki
    d = tmp_path / "profiles"
    a = np.ones((128, 512), np.float32)
    ex = _example("tensor_add.py")
    lex = _example("legacy/tensor_add.py")
    nki.simulate(ex.tensor_add_kernel)(a, a)  # unset: nothing written
    assert not d.exists()
    monkeypatch.setenv("TRNSIM_PROFILE_DIR", str(d))
    out = nki.simulate(ex.tensor_add_kernel)(a, a)
    np.testing.assert_array_equal(out, a + a)
    ex.tensor_add_kernel(a, a)  # a direct @nki.jit call
    lex.tensor_add_kernel(a, a)  # a legacy kernel call
    lnki.simulate_kernel(lex.tensor_add_kernel, a, a)
    names = sorted(os.listdir(d))
    stems = ["tensor_add_kernel", "tensor_add_kernel-2", "tensor_add_kernel-3",
             "tensor_add_kernel-4"]
    assert names == sorted(s + e for s in stems
                           for e in (".report.html", ".summary.json", ".trace.json"))
    s = json.loads((d / "tensor_add_kernel.summary.json").read_text())
    assert s["instructions"] == 4 and s["total_time"] == pytest.approx(400e-9)


def test_profile_dir_hook_never_breaks_the_script(tmp_path, monkeypatch):
    from test_profile_perfetto import _example
    from trnsim import nki

    def broken(program, chip=None, order=None):
        raise RuntimeError("no timing today")
    monkeypatch.setattr(trnsim.timing, "schedule", broken, raising=False)
    monkeypatch.setenv("TRNSIM_PROFILE_DIR", str(tmp_path))
    a = np.ones((128, 512), np.float32)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = nki.simulate(_example("tensor_add.py").tensor_add_kernel)(a, a)
    np.testing.assert_array_equal(out, a + a)
    assert any("could not write the profile" in str(x.message) and "no timing today"
               in str(x.message) for x in w)


# ---------------------------------------------------------------- the real timing model

def test_profile_real_timing_model(tmp_path, capsys):
    if getattr(trnsim.timing, "schedule", None) is None:
        pytest.skip("the timing model (trnsim.timing.schedule) is not in this tree")
    rc, out, err = _run(["profile", MATMUL, "--arg", "lhsT=bfloat16[256,128]", "--arg",
                         "rhs=bfloat16[256,512]", "--no-numerics", "--out", str(tmp_path)],
                        capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "tiled_matmul_kernel-trn2.summary.json").read_text())
    ex = cli.load_kernel(MATMUL)[0]
    prof = trnsim.profile(ex, np.zeros((256, 128), ml_dtypes.bfloat16),
                          np.zeros((256, 512), ml_dtypes.bfloat16), numerics=False)
    assert s["total_time"] == pytest.approx(prof.total_time)
    assert s["summary"]["model_flops"] == 2 * 256 * 128 * 512
    assert f"for {len(prof.program)} instructions" in out


def test_default_output_folder_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"{cli.DEFAULT_OUT}/" in ignored or f"/{cli.DEFAULT_OUT}/" in ignored
