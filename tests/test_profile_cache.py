"""The kernel-profile cache (trnsim.profile.cache): a repeated timing-only profile of the
same kernel with the same shapes is simulated once; anything in the key that changes
(shape, dtype, scalar argument, chip, lnc, order, the kernel's code) is a miss."""
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.legacy.jit
import trnsim.machine.launch
from trnsim import cli, nki
from trnsim.examples import load_example
from trnsim.profile.cache import ProfileCache, kernel_key

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

ADD_SRC = """
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

@nki.jit
def add(a, b, reps=1):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    y = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=a)
    nisa.dma_copy(dst=y, src=b)
    for _ in range(reps):
        nisa.tensor_tensor(dst=x, data1=x, data2=y, op=OP)
    nisa.dma_copy(dst=out, src=x)
    return out
"""


def _kernel(op="nl.add", source=ADD_SRC):
    """`add` compiled from source (same file name each time, so only the code differs)."""
    ns = {}
    exec(compile(source.replace("OP", "OP_VALUE") + f"\nOP_VALUE = {op}\n",
                 "<profile_cache_kernel>", "exec"), ns)
    return ns["add"]


def _ab(shape=(128, 256), dtype=np.float32):
    return np.ones(shape, dtype), np.ones(shape, dtype)


@pytest.fixture
def sims(monkeypatch):
    """The number of real simulations (run_kernel and run_legacy calls)."""
    count = [0]
    for mod, name in ((trnsim.machine.launch, "run_kernel"), (trnsim.legacy.jit, "run_legacy")):
        real = getattr(mod, name)

        def counted(*a, _real=real, **k):
            count[0] += 1
            return _real(*a, **k)
        monkeypatch.setattr(mod, name, counted)
    return count


@pytest.fixture
def cache():
    return ProfileCache(maxsize=16)


def test_same_kernel_and_shapes_simulate_once(sims, cache):
    add = _kernel()
    a, b = _ab()
    first = trnsim.profile(add, a, b, numerics=False, cache=cache)
    again = trnsim.profile(add, *_ab(), numerics=False, cache=cache)
    assert sims[0] == 1
    assert (first.cache, again.cache) == ("miss", "hit")
    assert first.cache_key == again.cache_key
    assert again.total_time == first.total_time > 0
    assert again.summary == first.summary
    assert [i.title for i in again.all_insights] == [i.title for i in first.all_insights]
    assert again.name == "add" and again.chip.name == first.chip.name and again.run is None
    assert again.outputs.shape == (128, 256) and again.outputs.dtype == np.float32
    assert len(again.program) == len(first.program)
    s = cache.stats()
    assert (s["hits"], s["misses"], s["entries"]) == (1, 1, 1) and s["bytes"] > 0


def test_values_are_not_in_the_key(sims, cache):
    add = _kernel()
    trnsim.profile(add, *_ab(), numerics=False, cache=cache)
    rng = np.random.default_rng(0)
    other = rng.standard_normal((128, 256)).astype(np.float32)
    assert trnsim.profile(add, other, other, numerics=False, cache=cache).cache == "hit"
    assert sims[0] == 1


@pytest.mark.parametrize("change", [
    dict(args=_ab((128, 512))),                                   # shape
    dict(args=_ab(dtype=ml_dtypes.bfloat16)),                     # dtype
    dict(chip="trn3"),
    dict(order="program"),
    dict(reps=2),                                                 # scalar kwarg
    dict(lnc=2),
])
def test_a_change_in_the_key_is_a_miss(sims, cache, change):
    add = _kernel()
    base = dict(args=_ab(), chip="trn2", order="compiler")
    trnsim.profile(add, *base["args"], chip="trn2", numerics=False, cache=cache)
    call = {**base, **change}
    prof = trnsim.profile(add, *call.pop("args"), numerics=False, cache=cache, **call)
    assert prof.cache == "miss" and sims[0] == 2
    assert cache.stats()["entries"] == 2


def test_an_edited_kernel_is_a_miss(sims, cache):
    a, b = _ab()
    add_prof = trnsim.profile(_kernel("nl.add"), a, b, numerics=False, cache=cache)
    sub_prof = trnsim.profile(_kernel("nl.subtract"), a, b, numerics=False, cache=cache)
    assert sims[0] == 2 and sub_prof.cache == "miss"
    assert add_prof.cache_key != sub_prof.cache_key
    body = trnsim.profile(_kernel(source=ADD_SRC.replace("range(reps)", "range(reps + 1)")),
                          a, b, numerics=False, cache=cache)
    assert sims[0] == 3 and body.cache == "miss"
    assert len(body.program) == len(add_prof.program) + 1
    # the same source compiled again is the same kernel
    assert trnsim.profile(_kernel("nl.add"), a, b, numerics=False, cache=cache).cache == "hit"
    assert sims[0] == 3


def test_helpers_and_module_constants_the_kernel_names_are_in_the_key():
    src = """
def helper(x):
    return x * SCALE

def kernel(a):
    return helper(a)
"""
    ns = {"SCALE": 2}
    exec(compile(src, "<helper_kernel>", "exec"), ns)
    a = np.ones((4, 4), np.float32)

    def key(fn):
        return kernel_key(fn, (a,), {}, chip=trnsim.load_chip("trn2"), lnc=1, numerics=False,
                          strict=False, order="compiler")
    k0 = key(ns["kernel"])
    assert key(ns["kernel"]) == k0
    ns["SCALE"] = 3
    assert key(ns["kernel"]) != k0
    ns["SCALE"] = 2
    exec(compile("def helper(x):\n    return x * SCALE + 1\n", "<helper_kernel>", "exec"), ns)
    assert key(ns["kernel"]) != k0


def test_numerics_on_is_not_served_by_default(sims):
    add = _kernel()
    trnsim.profile_cache().clear()
    p1 = trnsim.profile(add, *_ab())
    p2 = trnsim.profile(add, *_ab())
    assert sims[0] == 2 and p1.cache is None and p2.cache is None
    np.testing.assert_array_equal(p2.outputs, 2 * np.ones((128, 256), np.float32))


def test_numerics_on_with_cache_true_serves_placeholders(sims):
    add = _kernel()
    trnsim.profile_cache().clear()
    p1 = trnsim.profile(add, *_ab(), cache=True)
    p2 = trnsim.profile(add, *_ab(), cache=True)
    assert sims[0] == 1 and p2.cache == "hit"
    np.testing.assert_array_equal(p1.outputs, 2 * np.ones((128, 256), np.float32))
    assert p2.outputs.shape == (128, 256) and not p2.outputs.any()  # no values on a hit
    # numerics is in the key: a timing-only call does not reuse the numerics run
    assert trnsim.profile(add, *_ab(), numerics=False).cache == "miss" and sims[0] == 2


def test_default_cache_serves_timing_only_calls(sims):
    add = _kernel()
    trnsim.profile_cache().clear()
    trnsim.profile(add, *_ab(), numerics=False)
    assert trnsim.profile(add, *_ab(), numerics=False).cache == "hit"
    assert trnsim.profile(add, *_ab(), numerics=False, cache=False).cache is None
    assert sims[0] == 2
    assert trnsim.profile_cache().stats()["hits"] == 1


def test_lru_eviction_bound(sims):
    cache = ProfileCache(maxsize=2)
    add = _kernel()
    shapes = [(128, 64), (128, 128), (128, 192)]
    for shape in shapes:
        trnsim.profile(add, *_ab(shape), numerics=False, cache=cache)
    assert len(cache) == 2 and sims[0] == 3
    assert trnsim.profile(add, *_ab(shapes[2]), numerics=False, cache=cache).cache == "hit"
    assert trnsim.profile(add, *_ab(shapes[0]), numerics=False, cache=cache).cache == "miss"
    assert sims[0] == 4 and len(cache) == 2
    cache.configure(maxsize=1)
    assert len(cache) == 1
    assert trnsim.profile(add, *_ab(shapes[0]), numerics=False, cache=cache).cache == "hit"


def test_disk_round_trip(sims, tmp_path):
    ex = load_example("tiled_matmul.py")
    lhsT = np.zeros((256, 128), ml_dtypes.bfloat16)
    rhs = np.zeros((256, 512), ml_dtypes.bfloat16)
    writer = ProfileCache(directory=tmp_path)
    first = trnsim.profile(ex.tiled_matmul_kernel, lhsT, rhs, numerics=False, cache=writer)
    assert writer.stats()["disk_entries"] == 1
    reader = ProfileCache(directory=tmp_path)  # a new process's cache: nothing in memory
    again = trnsim.profile(load_example("tiled_matmul.py").tiled_matmul_kernel, lhsT, rhs,
                           numerics=False, cache=reader)
    assert sims[0] == 1 and again.cache == "hit"
    assert reader.stats()["disk_hits"] == 1 and len(reader) == 1
    assert again.total_time == first.total_time
    assert again.summary == first.summary
    assert again.outputs.shape == (128, 512)
    assert [(e.track, e.start, e.end) for e in again.timeline.events] == \
        [(e.track, e.start, e.end) for e in first.timeline.events]
    again.to_perfetto(tmp_path / "t.json")  # the rebuilt profile still writes its views
    assert json.loads((tmp_path / "t.json").read_text())
    reader.clear()
    assert reader.stats()["disk_entries"] == 0 and len(reader) == 0


def test_env_var_sets_the_disk_directory(sims, tmp_path, monkeypatch):
    monkeypatch.setenv("TRNSIM_PROFILE_CACHE", str(tmp_path / "pc"))
    try:
        assert trnsim.profile_cache().directory == str(tmp_path / "pc")
        trnsim.profile_cache().clear()
        trnsim.profile(_kernel(), *_ab(), numerics=False)
        assert len(list((tmp_path / "pc").glob("*.pkl"))) == 1
        monkeypatch.setenv("TRNSIM_PROFILE_CACHE", "off")
        assert trnsim.profile(_kernel(), *_ab(), numerics=False).cache is None
    finally:
        monkeypatch.delenv("TRNSIM_PROFILE_CACHE")
        trnsim.profile_cache().clear()
    assert trnsim.profile_cache().directory is None and trnsim.profile_cache().enabled


def test_legacy_kernel_grid_is_in_the_key(sims, cache):
    ex = load_example("legacy/spmd_add.py")
    a, b = _ab((256, 512))
    trnsim.profile(ex.spmd_add_kernel[4, 2], a, b, numerics=False, cache=cache)
    assert trnsim.profile(ex.spmd_add_kernel[4, 2], a, b, numerics=False,
                          cache=cache).cache == "hit"
    assert trnsim.profile(ex.spmd_add_kernel[2, 2], a, b, numerics=False,
                          cache=cache).cache == "miss"
    assert sims[0] == 2


def test_an_argument_the_key_cannot_describe_runs_uncached(sims, cache):
    src = ADD_SRC.replace("def add(a, b, reps=1):", "def add(a, b, reps=1, tag=None):")
    add = _kernel(source=src)
    for _ in range(2):
        prof = trnsim.profile(add, *_ab(), numerics=False, cache=cache, tag=object())
        assert prof.cache is None
    assert sims[0] == 2 and cache.stats()["uncacheable"] == 2


def test_autosave_summary_says_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("TRNSIM_PROFILE_DIR", str(tmp_path))
    trnsim.profile_cache().clear()
    sim = nki.simulate(_kernel())
    out1, out2 = sim(*_ab()), sim(*_ab())
    np.testing.assert_array_equal(out1, out2)  # the kernel still runs: outputs are real
    first = json.loads((tmp_path / "add.summary.json").read_text())
    second = json.loads((tmp_path / "add-2.summary.json").read_text())
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert first["cache_key"] == second["cache_key"]
    assert second["total_time"] == first["total_time"]
    assert second["summary"] == first["summary"]
    assert (tmp_path / "add-2.trace.json").exists()


def test_cli_prints_hits_and_misses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRNSIM_PROFILE_CACHE", str(tmp_path / "pc"))
    argv = ["profile", f"{EXAMPLES}/tensor_add.py::tensor_add_kernel", "--no-numerics",
            "--arg", "a_input=float32[128,256]", "--arg", "b_input=float32[128,256]",
            "--no-write", "--no-progress"]
    try:
        trnsim.profile_cache().clear()
        assert cli.main(argv) == 0
        assert "profile cache: 0 hits, 1 miss\n" in capsys.readouterr().out
        trnsim.profile_cache().clear(disk=False)  # a new process: served from disk
        assert cli.main(argv) == 0
        assert "profile cache: 1 hit, 0 misses\n" in capsys.readouterr().out
        assert cli.main(argv + ["--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["cache"] == "hit" and out["profile_cache"] == {"hits": 1, "misses": 0}
    finally:
        monkeypatch.delenv("TRNSIM_PROFILE_CACHE")
        trnsim.profile_cache().clear()
