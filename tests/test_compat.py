"""trnsim.compat (`import nki` -> trnsim.nki) and the simulator entry points public
suites call: nki.simulate, @nki.jit calls, nki.cpu_simulate (nki-library),
nki.simulator.simulate_kernel (vLLM); chip and strict selection from the environment."""
import subprocess
import sys
import types
import warnings

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.compat as compat
import trnsim.nki as tnki
from trnsim.machine.errors import UninitializedReadError


@pytest.fixture
def nki_env(monkeypatch):
    """install() for one test, with the process-wide 'warned' flag reset; always undone."""
    for var in ("NKI_NC_VERSION", "NEURON_PLATFORM_TARGET_OVERRIDE", "TRNSIM_STRICT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(compat, "_warned", False)
    yield compat
    compat.uninstall()


def _add_kernel():
    """A tensor_add kernel written against the public `nki` names."""
    import nki
    import nki.isa as nisa
    import nki.language as nl

    @nki.jit
    def add(a, b):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        ta = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
        tb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=ta, src=a)
        nisa.dma_copy(dst=tb, src=b)
        nisa.tensor_tensor(dst=ta, data1=ta, data2=tb, op=nl.add)
        nisa.dma_copy(dst=out, src=ta)
        return out
    return add


def _inputs(shape=(64, 32), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype))


# -- module aliasing ----------------------------------------------------------
def test_readme_spelling_works_in_a_fresh_interpreter():
    """`import trnsim; trnsim.compat.install(); import nki` as the README writes it (the
    submodule must not need its own import)."""
    code = ("import trnsim; trnsim.compat.install(); import nki, nki.language as nl; "
            "print(nki.__name__, nl.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["trnsim.nki", "trnsim.nki.language"]


@pytest.mark.parametrize("name", ["nki", "neuronxcc.nki"])
def test_import_before_install_says_how(name):
    code = f"import trnsim\ntry:\n    import {name}\nexcept ModuleNotFoundError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "call trnsim.compat.install() before" in out.stdout, out.stdout + out.stderr


def test_install_aliases_public_module_names(nki_env):
    mod = nki_env.install()
    import nki
    import nki.collectives
    import nki.compiler
    import nki.dtype
    import nki.isa
    import nki.isa.constants
    import nki.language
    import nki.simulator
    import nki.tensor
    import nki.typing
    assert mod is nki is tnki
    assert nki.language is tnki.language and nki.isa is tnki.isa
    assert sys.modules["nki.typing"] is tnki.typing
    for name in compat.PUBLIC_MODULES:
        assert sys.modules[name].__name__ == "trnsim." + name
    assert nki_env.installed()


def test_constants_dtype_tensor_modules(nki_env):
    nki_env.install()
    from nki.isa.constants import dge_mode, matmul_perf_mode, oob_mode
    import nki.dtype as nt
    import nki.isa as nisa
    import nki.language as nl
    import nki.tensor
    assert oob_mode is nisa.oob_mode and dge_mode is nisa.dge_mode
    assert matmul_perf_mode.double_row is nisa.matmul_perf_mode.double_row
    assert nt.bfloat16 is nl.bfloat16 and nt.float8_e4m3 is nl.float8_e4m3
    # nki-library's tests build host arrays with these dtypes
    x = np.array([1.0, 300.0, -0.1], dtype=np.float32).astype(nt.float8_e4m3)
    assert x.dtype == np.dtype(ml_dtypes.float8_e4m3)
    assert np.zeros((2, 3), dtype=nt.bfloat16).dtype == np.dtype(ml_dtypes.bfloat16)
    assert nki.tensor.NkiTensor is nl.NkiTensor


def test_compiler_module_is_empty_with_clear_error(nki_env):
    nki_env.install()
    import nki.compiler
    with pytest.raises(AttributeError, match="no compiler"):
        nki.compiler.kernel_builder  # noqa: B018


def test_submodules_map_lazily_and_unknown_names_fail(nki_env):
    nki_env.install()
    import nki.language.core
    assert nki.language.core is sys.modules["trnsim.nki.language.core"]
    with pytest.raises(ModuleNotFoundError, match="nki.not_a_module"):
        import nki.not_a_module  # noqa: F401


def test_install_idempotent_and_uninstall_restores(nki_env):
    fake = types.ModuleType("nki")
    fake_sub = types.ModuleType("nki.language")
    sys.modules["nki"], sys.modules["nki.language"] = fake, fake_sub
    try:
        with pytest.warns(compat.TrnsimCompatWarning):  # a non-trnsim 'nki' was imported
            first = nki_env.install()
        snapshot = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "nki"}
        finders = list(sys.meta_path)
        assert nki_env.install() is first
        assert {k: v for k, v in sys.modules.items() if k.split(".")[0] == "nki"} == snapshot
        assert sys.meta_path == finders
        nki_env.uninstall()
        assert sys.modules["nki"] is fake and sys.modules["nki.language"] is fake_sub
        assert "nki.isa" not in sys.modules and not nki_env.installed()
        assert not any(type(f).__name__ == "_AliasFinder" for f in sys.meta_path)
        nki_env.uninstall()  # a second uninstall is a no-op
        assert sys.modules["nki"] is fake
    finally:
        sys.modules.pop("nki", None)
        sys.modules.pop("nki.language", None)


def test_real_nki_on_path_is_replaced_with_one_warning(nki_env, tmp_path, monkeypatch):
    pkg = tmp_path / "nki"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("REAL = True\n")
    (pkg / "extra.py").write_text("EXTRA = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(compat.TrnsimCompatWarning, match="real 'nki' package"):
        nki_env.install()
    import nki
    assert nki is tnki and not hasattr(nki, "REAL")
    with pytest.raises(ModuleNotFoundError):  # nothing leaks in from the real package
        import nki.extra  # noqa: F401
    nki_env.uninstall()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process: no second warning
        nki_env.install()
    nki_env.uninstall()
    sys.modules.pop("nki", None)
    import nki as real  # after uninstall the real package imports again
    assert real.REAL
    sys.modules.pop("nki", None)


def test_no_warning_without_a_real_nki(nki_env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nki_env.install()


# -- entry points -----------------------------------------------------------
def test_jit_call_and_simulate_return_numpy(nki_env):
    nki_env.install()
    import nki
    add = _add_kernel()
    a, b = _inputs()
    out = add(a, b)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, a + b)
    sim = nki.simulate(add)
    np.testing.assert_array_equal(sim(a, b), a + b)
    assert sim.last_run.program.opcodes().count("dma_copy") == 3
    # a plain function is wrapped, as documented
    np.testing.assert_array_equal(nki.simulate(add.fn)(a, b), a + b)


def test_bf16_numpy_inputs_stay_bf16():
    from trnsim.nki import isa as nisa
    from trnsim.nki import language as nl

    def kern(a, b):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        ta = nl.ndarray(a.shape, dtype=a.dtype)
        tb = nl.ndarray(b.shape, dtype=b.dtype)
        nisa.dma_copy(dst=ta, src=a)
        nisa.dma_copy(dst=tb, src=b)
        nisa.tensor_tensor(dst=ta, data1=ta, data2=tb, op=nl.add)
        nisa.dma_copy(dst=out, src=ta)
        return out
    a, b = _inputs(dtype=ml_dtypes.bfloat16)
    out = tnki.simulate(kern)(a, b)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    want = (a.astype(np.float32) + b.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(out.view(np.uint16), want.view(np.uint16))


def test_lnc2_through_simulate_and_cpu_simulate(nki_env):
    nki_env.install()
    import nki
    import nki.isa as nisa
    import nki.language as nl

    @nki.jit
    def halves(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        n = x.shape[0] // nl.num_programs()
        lo = nl.program_id(0) * n
        t = nl.ndarray((n, x.shape[1]), dtype=x.dtype)
        nisa.dma_copy(dst=t, src=x[lo:lo + n, :])
        nisa.tensor_tensor(dst=t, data1=t, data2=t, op=nl.add)
        nisa.dma_copy(dst=out[lo:lo + n, :], src=t)
        return out

    x = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)
    np.testing.assert_array_equal(nki.simulate(halves[2])(x), 2 * x)
    sim = nki.cpu_simulate(halves)[2]
    np.testing.assert_array_equal(sim(x=x), 2 * x)
    assert sim.last_run.lnc == 2
    assert {i.core for i in sim.last_run.program} == {0, 1}
    with pytest.raises(ValueError, match="lnc 1 or 2"):
        halves[4]


def test_simulator_simulate_kernel_vllm_style(nki_env):
    nki_env.install()
    import nki.simulator
    add = _add_kernel()
    a, b = _inputs(seed=3)
    out = nki.simulator.simulate_kernel(add, (a,), {"b": b}, 1)
    np.testing.assert_array_equal(out, a + b)
    out = nki.simulator.simulate_kernel(add.fn, (), {"a": a, "b": b}, 1)  # a plain function
    np.testing.assert_array_equal(out, a + b)


def _sbuf_bytes_kernel():
    from trnsim.nki import language as nl

    def kern(x):
        return nl.tile_size.sbuf_fmax_bytes
    return kern


@pytest.mark.parametrize("env, value, want", [
    ("NEURON_PLATFORM_TARGET_OVERRIDE", "trn1", 180224),
    ("NEURON_PLATFORM_TARGET_OVERRIDE", "gen4", 245752),
    ("NKI_NC_VERSION", "gen2", 180224),
    ("NKI_NC_VERSION", "gen3", 212984),
    (None, None, 212984),  # default trn2
])
def test_chip_from_environment(nki_env, monkeypatch, env, value, want):
    if env:
        monkeypatch.setenv(env, value)
    kern = _sbuf_bytes_kernel()
    x = np.zeros((1, 1), np.float32)
    assert tnki.simulate(kern)(x) == want
    assert tnki.jit(kern)(x) == want
    assert tnki.cpu_simulate(kern)[1](x=x) == want


def test_nki_nc_version_wins_over_platform_override(nki_env, monkeypatch):
    monkeypatch.setenv("NEURON_PLATFORM_TARGET_OVERRIDE", "trn2")
    monkeypatch.setenv("NKI_NC_VERSION", "gen4")
    assert tnki.simulate(_sbuf_bytes_kernel())(np.zeros((1, 1), np.float32)) == 245752
    explicit = tnki.Simulated(_sbuf_bytes_kernel(), chip="trn1")
    assert explicit(np.zeros((1, 1), np.float32)) == 180224


def _uninit_kernel():
    from trnsim.nki import isa as nisa
    from trnsim.nki import language as nl

    def kern(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray(x.shape, dtype=x.dtype, name="never_written")
        nisa.dma_copy(dst=out, src=t)
        return out
    return kern


@pytest.mark.filterwarnings("ignore::trnsim.UninitializedReadWarning")  # reads on purpose
def test_strict_from_environment(nki_env, monkeypatch):
    x = np.ones((4, 4), np.float32)
    out = tnki.simulate(_uninit_kernel())(x)
    assert np.isnan(out).all()  # fresh memory holds NaN
    monkeypatch.setenv("TRNSIM_STRICT", "1")
    for call in (lambda: tnki.simulate(_uninit_kernel())(x),
                 lambda: tnki.jit(_uninit_kernel())(x),
                 lambda: trnsim.run_kernel(_uninit_kernel(), (x,))):
        with pytest.raises(UninitializedReadError, match="never_written"):
            call()
    # an explicit strict=False wins over the environment
    out, _ = trnsim.run_kernel(_uninit_kernel(), (x,), strict=False)
    assert np.isnan(out).all()


# -- torch ----------------------------------------------------------------------
def test_torch_inputs_return_torch(nki_env):
    torch = pytest.importorskip("torch")
    nki_env.install()
    import nki
    add = _add_kernel()
    a, b = _inputs(seed=5)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for out in (add(ta, tb), nki.simulate(add)(ta, tb)):
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
        np.testing.assert_array_equal(out.numpy(), a + b)
    ba, bb = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
    out = nki.simulate(add)(ba, bb)
    assert out.dtype == torch.bfloat16
    want = (ba.float() + bb.float()).to(torch.bfloat16)
    assert torch.equal(out, want)


# -- nki-library's simulation harness -------------------------------------------------
def test_nki_cpu_simulator_package_for_the_nkilib_harness(nki_env, monkeypatch):
    """The harness imports the simulator as nki_cpu_simulator.nki.*, aliases those
    modules to nki.* in sys.modules, sets NKI_NC_VERSION and calls
    nki.cpu_simulate(kernel)[lnc](**inputs). Replayed here step by step."""
    nki_env.install()
    import nki_cpu_simulator.nki.builtin as sim_builtin
    import nki_cpu_simulator.nki.compiler as sim_ncc
    import nki_cpu_simulator.nki.isa as sim_nisa
    import nki_cpu_simulator.nki.isa.constants as sim_consts
    import nki_cpu_simulator.nki.language as sim_nl
    import nki_cpu_simulator.nki.language.dtypes as sim_dtypes
    import nki_cpu_simulator.nki.tensor as sim_tensor
    import nki_cpu_simulator.nki.typing as sim_nt
    from nki_cpu_simulator import nki as sim_nki
    assert sim_nki is tnki and sim_nl is tnki.language and sim_nisa is tnki.isa
    assert sim_dtypes.bfloat16 is tnki.language.bfloat16 is tnki.dtype.bfloat16
    assert sim_consts.oob_mode is tnki.isa.oob_mode
    assert sim_nt is tnki.typing and sim_tensor.NkiTensor is tnki.language.NkiTensor
    assert sim_ncc is sys.modules["trnsim.nki.compiler"]
    assert sim_builtin is sys.modules["trnsim.nki.builtin"]
    for name, mod in (("nki", sim_nki), ("nki.language", sim_nl), ("nki.isa", sim_nisa),
                      ("nki.isa.constants", sim_consts), ("nki.typing", sim_nt),
                      ("nki.compiler", sim_ncc), ("nki.dtype", sim_dtypes),
                      ("nki.tensor", sim_tensor)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setenv("NKI_NC_VERSION", "gen2")
    import nki
    add = _add_kernel()
    a, b = _inputs(seed=7)
    result = nki.cpu_simulate(add)[1](a=a, b=b)
    np.testing.assert_array_equal(result, a + b)
    assert tnki.cpu_simulate(_sbuf_bytes_kernel())[1](x=a) == 180224  # gen2 = trn1
    monkeypatch.undo()
    nki_env.uninstall()
    assert not any(k.split(".")[0] in ("nki", "nki_cpu_simulator") for k in sys.modules)


def test_real_nki_cpu_simulator_is_left_alone(nki_env, tmp_path, monkeypatch):
    pkg = tmp_path / "nki_cpu_simulator"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("REAL_SIM = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    nki_env.install()
    import nki_cpu_simulator
    assert nki_cpu_simulator.REAL_SIM
    nki_env.uninstall()
    sys.modules.pop("nki_cpu_simulator", None)
