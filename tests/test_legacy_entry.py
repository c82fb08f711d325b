"""Legacy (`neuronxcc.nki`, NKI 0.1) entry points, imported the way legacy code does
after `trnsim.compat.install()`: `nki.jit(mode=...)` for every mode, `nki.trace`,
SPMD grids (`kernel[g0, g1]`, `nl.nc`, `nl.spmd_dim`) with program_id / num_programs /
program_ndim, `nki.simulate_kernel` (including the samples' `simulate_kernel(
baremetal(k)[grid], ...)`), `nki.baremetal`, `nki.benchmark`, `nki.profile`, tuple
outputs, `nt.mutable_tensor` written in place, `nki.FrameworkKernel`, and the
compiler directives that change nothing on the simulator.

Kernels only use data movement (nl.load / nl.store / nl.copy) and nisa.tensor_tensor
with fp32 add, so every expected value is exact and computed here with NumPy."""
import importlib
import json
import sys

import numpy as np
import pytest

import trnsim.compat as compat
from trnsim.machine.errors import NkiValidationError, UnsupportedError

MODES = ("jax", "torchxla", "baremetal", "benchmark", "simulation", "auto")


class Legacy:
    """The legacy modules, imported by their public names."""

    def __init__(self):
        import neuronxcc.nki as nki
        import neuronxcc.nki.compiler as ncc
        import neuronxcc.nki.isa as nisa
        import neuronxcc.nki.language as nl
        import neuronxcc.nki.typing as nt
        self.nki, self.nl, self.nisa, self.nt, self.ncc = nki, nl, nisa, nt, ncc


@pytest.fixture
def L():
    was = compat.installed()
    compat.install()
    try:
        yield Legacy()
    finally:
        if not was:
            compat.uninstall()


def _line(tag: str) -> int:
    """The line of this file carrying the comment `# LINE-MARK: tag`."""
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, tag
    return hits[0]


def _inputs(shape=(128, 64), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32),
            rng.standard_normal(shape).astype(np.float32))


def _add_kernel(L):
    nl, nisa = L.nl, L.nisa

    def add(a, b):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        x = nl.load(a)
        y = nl.load(b)
        nl.store(out, value=nisa.tensor_tensor(x, y, op=np.add))
        return out
    return add


# -- imports -----------------------------------------------------------------------
def test_every_legacy_import_form(L):
    import neuronxcc
    import neuronxcc.nki as nki
    import neuronxcc.nki.compiler.psum as ncc_psum
    import neuronxcc.nki.compiler.sbuf as ncc_sbuf
    from neuronxcc import nki as nki2
    from neuronxcc.nki import baremetal, benchmark, simulate_kernel, trace  # noqa: F401
    from neuronxcc.nki.language import par_dim
    from neuronxcc.nki.typing import tensor
    assert nki is nki2 is neuronxcc.nki is L.nki
    assert nki.language is L.nl and nki.isa is L.nisa and nki.typing is L.nt
    assert nki.compiler is L.ncc and L.ncc.sbuf is ncc_sbuf and L.ncc.psum is ncc_psum
    assert trace is nki.trace and simulate_kernel is nki.simulate_kernel
    assert par_dim is L.nl.par_dim and tensor is L.nt.tensor is nki.tensor
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("neuronxcc.compiler_driver")  # not provided: no compiler
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("neuronxcc.nki.kernels")


def test_uninstall_removes_the_legacy_names():
    if compat.installed():
        pytest.skip("trnsim.compat was installed before this test")
    compat.install()
    import neuronxcc.nki  # noqa: F401
    compat.uninstall()
    assert not any(k.split(".")[0] == "neuronxcc" for k in sys.modules)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("neuronxcc.nki")


# -- nki.jit -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_jit_every_mode_runs_on_the_simulator(L, mode):
    a, b = _inputs()
    kernel = L.nki.jit(_add_kernel(L), mode=mode)
    out = kernel(a, b)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, a + b)
    assert kernel.last_run.program.opcodes() == ["dma_copy", "dma_copy", "tensor_tensor",
                                                 "dma_copy"]


def test_jit_decorator_forms_and_bad_mode(L):
    nki, nl = L.nki, L.nl
    a, b = _inputs()

    @nki.jit
    def plain(a, b):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        nl.store(out, value=nl.load(b))
        return out

    @nki.jit(mode="simulation", platform_target="trn1")
    def with_args(a, b):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        nl.store(out, value=nl.load(a))
        return out

    np.testing.assert_array_equal(plain(a, b), b)
    np.testing.assert_array_equal(with_args(a, b), a)
    assert with_args.last_run.chip.name == "trn1"
    assert plain.last_run.chip.name == "trn2"  # the default chip
    with pytest.raises(ValueError, match="mode='cuda'"):
        nki.jit(_add_kernel(L), mode="cuda")


def test_trace_kernel_writes_output_parameter_in_place(L):
    """The samples' older style: `@nki.trace` kernels take the output as a parameter
    and `nki.simulate_kernel(kernel, a, out)` fills it."""
    nki, nl = L.nki, L.nl

    @nki.trace
    def copy_into(a_ptr, out_ptr):
        i_p = nl.arange(128)[:, None]
        i_f = nl.arange(64)[None, :]
        nl.store(out_ptr[i_p, i_f], value=nl.load(a_ptr[i_p, i_f]))

    a, _ = _inputs()
    out = np.zeros_like(a)
    assert nki.simulate_kernel(copy_into, a, out) is None
    np.testing.assert_array_equal(out, a)


def test_tuple_outputs(L):
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit
    def two(a, b):
        s = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        c = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        x = nl.load(a)
        nl.store(s, value=nisa.tensor_tensor(x, nl.load(b), op=np.add))
        nl.store(c, value=x)
        return s, c

    a, b = _inputs()
    out = two(a, b)
    assert isinstance(out, tuple) and len(out) == 2
    np.testing.assert_array_equal(out[0], a + b)
    np.testing.assert_array_equal(out[1], a)


def test_returned_on_chip_tile_is_read_back(L):
    """SDK samples return SBUF tiles (e.g. the range_select example); the legacy
    simulator gave their values back."""
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit
    def tile_out(a, b):
        r = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
        r[...] = nisa.tensor_tensor(nl.load(a), nl.load(b), op=np.add)
        return r

    a, b = _inputs()
    out = tile_out(a, b)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, a + b)


# -- SPMD grids ----------------------------------------------------------------------
def _grid_kernel(L, seen):
    nki, nl = L.nki, L.nl

    @nki.jit
    def blocks(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        i, j = nl.program_id(0), nl.program_id(1)
        seen.append((i, j, nl.num_programs(), nl.num_programs(0), nl.num_programs(1),
                     nl.num_programs((0, 1)), nl.program_ndim()))
        nl.store(out[i, j], value=nl.load(a[i, j]))
        return out
    return blocks


def test_grid_program_ids_and_counts(L):
    seen = []
    kernel = _grid_kernel(L, seen)
    a = np.arange(4 * 3 * 8 * 16, dtype=np.float32).reshape(4, 3, 8, 16)
    out = kernel[4, 3](a)
    np.testing.assert_array_equal(out, a)  # every instance wrote its own block
    assert [(i, j) for i, j, *_ in seen] == [(i, j) for i in range(4) for j in range(3)]
    assert {tuple(s[2:]) for s in seen} == {(12, 4, 3, 12, 2)}


@pytest.mark.parametrize("make_grid, size", [
    (lambda nl: (nl.nc(2), 3), (2, 3)),
    (lambda nl: (nl.spmd_dim(nl.nc(2), 2), 2), (4, 2)),
    (lambda nl: (nl.nc(2) * 2, 2), (4, 2)),
    (lambda nl: (nl.spmd_dim(2, nl.nc(2)), 2), (4, 2)),
    (lambda nl: (2 * nl.nc(2), 2), (4, 2)),
])
def test_grids_over_physical_cores(L, make_grid, size):
    seen = []
    kernel = _grid_kernel(L, seen)
    a = np.arange(size[0] * size[1] * 4 * 8, dtype=np.float32).reshape(*size, 4, 8)
    out = kernel[make_grid(L.nl)](a)
    np.testing.assert_array_equal(out, a)
    assert [(i, j) for i, j, *_ in seen] == [(i, j) for i in range(size[0])
                                             for j in range(size[1])]


def test_no_grid_is_one_program_and_bad_axes_fail(L):
    nki, nl = L.nki, L.nl
    seen = []

    @nki.jit
    def one(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        seen.append((nl.program_id(0), nl.num_programs(), nl.program_ndim()))
        nl.store(out, value=nl.load(a))
        return out

    a, _ = _inputs()
    np.testing.assert_array_equal(one(a), a)
    assert seen == [(0, 1, 0)]

    @nki.jit
    def bad_axis(a):
        nl.program_id(2)

    with pytest.raises(NkiValidationError, match=r"program_id\(2\).*\[2, 2\].*2 dimensions"):
        bad_axis[2, 2](a)


def test_kernel_calling_kernels(L):
    nki, nl = L.nki, L.nl

    @nki.trace
    def inner(a, out):
        nl.store(out, value=nl.load(a))

    @nki.jit
    def outer(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        inner(a, out)  # a kernel without a grid is inlined
        return out

    @nki.jit
    def outer_grid(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        inner[2, 2](a, out)
        return out

    a, _ = _inputs()
    np.testing.assert_array_equal(outer(a), a)
    with pytest.raises(NkiValidationError, match=r"SPMD grid \(inner\[2, 2\]\).*not supported"):
        outer_grid(a)


# -- simulate_kernel / baremetal ---------------------------------------------------
def test_simulate_kernel_on_functions_and_kernels(L):
    nki = L.nki
    a, b = _inputs()
    fn = _add_kernel(L)
    np.testing.assert_array_equal(nki.simulate_kernel(fn, a, b), a + b)
    np.testing.assert_array_equal(nki.simulate_kernel(nki.jit(fn), a, b), a + b)
    np.testing.assert_array_equal(nki.simulate_kernel(fn, a, b=b), a + b)
    assert nki.baremetal(fn).entry == "baremetal"


def test_simulate_kernel_of_baremetal_with_grid(L):
    """The samples' idiom: `simulate_kernel(baremetal(kernel)[grid], ...)`."""
    nki, nl, nisa = L.nki, L.nl, L.nisa

    def per_head(q, k):
        out = nl.ndarray(q.shape, dtype=q.dtype, buffer=nl.shared_hbm)
        b, h = nl.program_id(0), nl.program_id(1)
        s = nisa.tensor_tensor(nl.load(q[b, h]), nl.load(k[b, h]), op=np.add)
        nl.store(out[b, h], value=s)
        return out

    q, k = _inputs((2, 3, 16, 32), seed=1)
    out = nki.simulate_kernel(nki.baremetal(per_head)[2, 3], q, k)
    np.testing.assert_array_equal(out, q + k)
    # decorator form with NEFF options (accepted, no effect)
    bm = nki.baremetal(save_neff_name="file.neff", save_trace_name="profile.ntff")(per_head)
    np.testing.assert_array_equal(bm[2, 3](q, k), q + k)
    np.testing.assert_array_equal(nki.baremetal(nki.jit(per_head))[2, 3](q, k), q + k)


# -- benchmark / profile -----------------------------------------------------------
def test_benchmark_runs_and_reports_the_simulated_latency(L):
    nki, nl, nt = L.nki, L.nl, L.nt
    a, b = _inputs()
    bench = nki.benchmark(warmup=5, iters=10)(_add_kernel(L))
    np.testing.assert_array_equal(bench(a, b), a + b)
    latency = bench.benchmark_result.nc_latency
    p99 = latency.get_latency_percentile(99)  # microseconds, as nki.benchmark reports
    # the device time plus the chip file's per-launch overhead (launch_overhead_ns, 1300 ns)
    assert p99 == pytest.approx(bench.benchmark_result.profile.total_time * 1e6 + 1.3)
    assert p99 > 0 and latency.get_latency_percentile(50) == p99  # deterministic
    with pytest.raises(ValueError, match="available percentiles"):
        latency.get_latency_percentile(42)
    assert len(bench.benchmark_result.run.program) == 4
    # jit(mode="benchmark") gives a result too; so does a grid launch of a benchmark kernel
    jb = nki.jit(_add_kernel(L), mode="benchmark")
    jb(a, b)
    assert jb.benchmark_result.nc_latency.get_latency_percentile(50) > 0
    # shape-only arguments (the samples benchmark with nt.tensor[[shape], dtype]): zeros
    spec = nt.tensor[[128, 64], nl.float32]
    out = nki.benchmark(_add_kernel(L))(spec, spec)
    assert out.shape == (128, 64) and (out == 0).all()
    with pytest.raises(ValueError, match="iters"):
        nki.benchmark(iters=0)(_add_kernel(L))


def test_profile_writes_the_instruction_record(L, tmp_path):
    nki = L.nki
    a, b = _inputs()
    prof = nki.profile(working_directory=str(tmp_path), save_neff_name="file.neff",
                       profile_nth=2)(_add_kernel(L))
    np.testing.assert_array_equal(prof(a, b), a + b)
    lines = (tmp_path / "trnsim_record.jsonl").read_text().splitlines()
    assert [json.loads(x)["opcode"] for x in lines] == ["dma_copy", "dma_copy",
                                                         "tensor_tensor", "dma_copy"]
    prof(a, b)  # a second run does not overwrite without overwrite=True
    assert (tmp_path / "trnsim_record.1.jsonl").exists()
    with pytest.raises(ValueError, match="absolute path"):
        nki.profile(working_directory="relative/dir")(_add_kernel(L))
    with pytest.raises(ValueError, match="absolute path"):
        nki.profile(_add_kernel(L))


# -- nt.mutable_tensor ---------------------------------------------------------------
def test_mutable_tensor_written_in_place_and_returned(L):
    nki, nl, nisa, nt = L.nki, L.nl, L.nisa, L.nt

    @nki.jit
    def bump(in_tensor: nt.mutable_tensor, delta):
        out = nl.ndarray(in_tensor.shape, dtype=in_tensor.dtype, buffer=nl.shared_hbm)
        y = nisa.tensor_tensor(nl.load(in_tensor), nl.load(delta), op=np.add)
        nl.store(out, value=y)
        nl.store(in_tensor, value=y)
        return out, in_tensor

    a, d = _inputs()
    a0 = a.copy()
    out, back = bump(a, d)
    np.testing.assert_array_equal(out, a0 + d)
    np.testing.assert_array_equal(back, a0 + d)
    np.testing.assert_array_equal(a, a0 + d)  # the caller's array, updated in place


def test_mutable_tensor_not_returned_is_an_error(L):
    nki, nl, nt = L.nki, L.nl, L.nt

    @nki.jit
    def forgets(in_tensor: nt.mutable_tensor):  # LINE-MARK: forgets-def
        out = nl.ndarray(in_tensor.shape, dtype=in_tensor.dtype, buffer=nl.shared_hbm)
        x = nl.load(in_tensor)
        nl.store(out, value=x)
        nl.store(in_tensor, value=x)
        return out

    @nki.jit
    def reads_only(in_tensor: "nt.mutable_tensor"):  # string annotation (PEP 563 style)
        out = nl.ndarray(in_tensor.shape, dtype=in_tensor.dtype, buffer=nl.shared_hbm)
        nl.store(out, value=nl.load(in_tensor))
        return out

    @nki.jit
    def forgets_str(in_tensor: "nt.mutable_tensor"):
        nl.store(in_tensor, value=nl.load(in_tensor))

    a, _ = _inputs()
    with pytest.raises(NkiValidationError) as ei:
        forgets(a)
    assert "Mutable kernel parameter 'in_tensor' not returned by `return` statement" \
        in str(ei.value)
    assert (ei.value.location.file, ei.value.location.line) == (__file__,
                                                                _line("forgets-def"))
    assert f"test_legacy_entry.py:{_line('forgets-def')}" in str(ei.value)
    np.testing.assert_array_equal(reads_only(a), a)  # not written: nothing to return
    with pytest.raises(NkiValidationError, match="'in_tensor' not returned"):
        forgets_str(a)


def test_typing_annotations(L):
    nki, nl, nt = L.nki, L.nl, L.nt
    assert nt.tensor[128, 512].shape == (128, 512) and nt.tensor[128, 512].dtype is None
    spec = nt.tensor[[8, 4], nl.bfloat16]
    assert spec.shape == (8, 4) and spec.dtype == nl.bfloat16 and not spec.mutable
    assert nt.mutable_tensor[4, 4].mutable
    seen = []

    @nki.jit
    def check(a):
        t = nl.load(a)
        seen.append((isinstance(a, nt.tensor), isinstance(t, nt.tensor),
                     isinstance(3, nt.tensor), t.shape, t.dtype == np.float32))
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        nl.store(out, value=t)
        return out

    a, _ = _inputs()
    check(a)
    assert seen == [(True, True, False, (128, 64), True)]


# -- FrameworkKernel, directives -------------------------------------------------------
def test_framework_kernel(L):
    nki = L.nki
    a, b = _inputs()
    fk = nki.FrameworkKernel(func_name="add", func=_add_kernel(L))
    with pytest.raises(UnsupportedError, match="backend_config"):
        fk.dump_config(a, b)
    with pytest.raises(NotImplementedError):
        fk.translate_to_neuron_dtype(np.float32)
    np.testing.assert_array_equal(fk(a, b), a + b)


def test_compiler_directives_change_nothing(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc

    def body(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        with ncc.allocation_scope():
            for i in nl.affine_range(2, directives=ncc.multi_buffer(3)):
                nl.store(out[i], value=nl.load(a[i]))
        for i in nl.sequential_range(2, directives=ncc.no_reorder()):
            nl.store(out[i], value=nl.load(a[i]))
        return out

    stacked = ncc.enable_stack_allocator(ncc.skip_middle_end_transformations(nki.jit(body)))
    stacked2 = ncc.enable_stack_allocator(log_level=10)(
        ncc.skip_middle_end_transformations()(nki.jit(body)))
    plain = nki.jit(body)
    a = np.arange(2 * 16 * 8, dtype=np.float32).reshape(2, 16, 8)
    for k in (stacked, stacked2, plain):
        np.testing.assert_array_equal(k(a), a)
    assert [str(i).split(")")[0] for i in stacked.last_run.program] == \
        [str(i).split(")")[0] for i in plain.last_run.program]
    with pytest.raises(NkiValidationError, match="factor"):
        ncc.multi_buffer(0)
