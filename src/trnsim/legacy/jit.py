"""Legacy entry points: `nki.jit(mode=...)`, `trace`, `baremetal`, `simulate_kernel`,
`benchmark`, `profile`, and SPMD grids `kernel[g0, g1](...)`.

Every mode runs on the simulator (there is no device here): "jax", "torchxla",
"baremetal", "benchmark", "simulation" and "auto" all run the kernel and return its
outputs (NumPy for NumPy inputs, torch tensors for torch inputs). SPMD instances run one
after another on one simulated NeuronCore, in row-major grid order; each sees its own
`nl.program_id(axis)`, and `shared_hbm` tensors are shared by all of them. A grid
dimension spread over physical cores (`nl.nc(2)`, `nl.spmd_dim(nl.nc(2), 2)`) only
sets its size: which core runs an instance does not change any result.

Outputs: what the kernel returns (a tensor, or a tuple/list of them) comes back as host
arrays, from the first grid instance (all instances share `shared_hbm` outputs). A
returned on-chip tile is read back as it is (the legacy simulator accepted this, and
SDK samples rely on it; on a device, outputs are HBM tensors). NumPy
inputs are aliased in HBM, so a kernel writing an argument updates the caller's array
(the `nt.mutable_tensor` idiom, and the older output-parameter style of `nki.trace`
kernels run with `simulate_kernel(kernel, a, out)`).
"""
from __future__ import annotations

import functools
import itertools
import os

import numpy as np

from ..machine import expand, hooks, runtime
from ..machine.errors import NkiValidationError, SourceLocation
from ..machine.launch import HostArgs, param_names, placeholder
from ..machine.runtime import Options, Run, activate, strict_from_env
from .ops import flush
from .tensor import LTensor

# "trace": the mode NKI 0.1 sub-kernels were decorated with (`nki.jit(mode='trace')`, see
# the SDK's NKI migration guide); such a kernel is inlined when another kernel calls it.
MODES = ("jax", "torchxla", "baremetal", "benchmark", "simulation", "auto", "trace")
PERCENTILES = (0, 1, 10, 25, 50, 90, 99, 100)


class nc:
    """`nl.nc(n)`: a launch-grid dimension spread over n physical NeuronCores."""

    def __init__(self, n):
        self.n = int(n)

    def __mul__(self, k):
        return spmd_dim(self, k)

    __rmul__ = lambda self, k: spmd_dim(k, self)  # noqa: E731

    def __index__(self):
        return self.n

    def __repr__(self):
        return f"nc({self.n})"


class spmd_dim:
    """`nl.spmd_dim(a, b)`: a grid dimension of size a*b (one may be an `nc`)."""

    def __init__(self, *sizes):
        self.sizes = sizes

    def __index__(self):
        n = 1
        for s in self.sizes:
            n *= s.n if isinstance(s, nc) else int(s)
        return n

    def __repr__(self):
        return f"spmd_dim({', '.join(map(repr, self.sizes))})"


def _grid_size(g) -> int:
    if isinstance(g, nc):
        return g.n
    n = g.__index__() if hasattr(g, "__index__") else int(g)
    if n < 1:
        raise NkiValidationError(f"SPMD launch grid dimension {g!r}: sizes must be >= 1")
    return n


class LegacyKernel:
    """A `neuronxcc.nki` kernel (`nki.jit`, `trace`, `baremetal`, `benchmark`, `profile`);
    `kernel[g0, g1, ...]` sets its SPMD launch grid.

    `entry` is the decorator it came from; `options` holds the decorator's keyword
    arguments (`platform_target` picks the chip; compiler/artifact options such as
    `save_neff_name` or `additional_compile_opt` are accepted and have no effect).
    After a call, `last_run` is the simulator Run (its `.program` is the instruction
    record), and a benchmark kernel has `benchmark_result`."""

    def __init__(self, fn, mode="auto", grid=(), entry="jit", **options):
        if mode not in MODES:
            raise ValueError(f"nki.jit mode={mode!r}; one of {', '.join(MODES)}")
        while isinstance(fn, LegacyKernel):
            fn = fn.fn
        self.fn, self.mode, self.grid, self.entry = fn, mode, tuple(grid), entry
        self.options = options
        self.last_run = None
        self._origin = None  # the kernel this grid-launched copy came from
        functools.update_wrapper(self, fn)

    def with_options(self, **options) -> "LegacyKernel":
        k = LegacyKernel(self.fn, self.mode, self.grid, self.entry,
                         **{**self.options, **options})
        return k

    def __getitem__(self, grid):
        grid = grid if isinstance(grid, tuple) else (grid,)
        k = LegacyKernel(self.fn, self.mode, tuple(_grid_size(g) for g in grid), self.entry,
                         **self.options)
        k._origin = self._origin or self
        return k

    def __repr__(self):
        grid = f"[{', '.join(map(str, self.grid))}]" if self.grid else ""
        return f"<legacy nki.{self.entry} kernel {self.fn.__name__}{grid}>"

    def __call__(self, *args, **kwargs):
        if runtime.current_run() is not None:  # a kernel calling another kernel: inline it
            if self.grid:
                raise NkiValidationError(
                    f"Calling a NKI kernel with a SPMD grid ({self.fn.__name__}"
                    f"[{', '.join(map(str, self.grid))}]) from another NKI kernel is not "
                    "supported; call it without a grid")
            run = runtime.active_run()
            saved = getattr(run, "legacy_force_auto_alloc", False)
            run.legacy_force_auto_alloc = saved or bool(self.options.get("force_auto_alloc"))
            try:
                return self.fn(*args, **kwargs)
            finally:
                run.legacy_force_auto_alloc = saved
        outputs, run = run_legacy(self.fn, args, kwargs, self.grid,
                                  chip=self.options.get("platform_target"),
                                  force_auto_alloc=bool(self.options.get("force_auto_alloc")))
        for k in (self, self._origin):
            if k is None:
                continue
            k.last_run = run
            if self.mode == "benchmark" or self.entry == "benchmark":
                k.benchmark_result = BenchmarkResult(run, self.options.get("warmup", 10),
                                                     self.options.get("iters", 100))
        if self.entry == "profile":
            prof = _write_profile(run, self.options, self.fn.__name__)
            for k in (self, self._origin):
                if k is not None:
                    k.profile_result = prof
        if os.environ.get("TRNSIM_PROFILE_DIR"):  # write this call's profile there
            hooks.autosave(run, self.fn, outputs)
        return outputs


def run_legacy(fn, args=(), kwargs=None, grid=(), *, chip=None, numerics=True, strict=None,
               force_auto_alloc=False):
    """Run a legacy kernel over its SPMD grid. Returns (host outputs, the Run).

    On-chip tensors without a direct allocation are logical: the compiler model
    (trnsim.compiler) places their blocks after the run, freeing each after its last
    use and spilling what does not fit, as neuronx-cc does."""
    from .typing import TensorType
    if strict is None:
        strict = strict_from_env()
    args = tuple(a.example() if isinstance(a, TensorType) else a for a in args)
    kwargs = {k: v.example() if isinstance(v, TensorType) else v
              for k, v in (kwargs or {}).items()}
    return expand.rerun_if_left_early(lambda expanding: _run(
        fn, args, kwargs, grid, chip, Options(numerics, bool(strict), expanding),
        force_auto_alloc))


def _run(fn, args, kwargs, grid, chip, options, force_auto_alloc):
    run = Run(chip, 1, options)
    run.legacy_force_auto_alloc = force_auto_alloc
    host = HostArgs(run)
    first_result = None
    with activate(run, fn):
        names = param_names(fn, len(args))
        dargs = [_device_arg(host, a, n) for a, n in zip(args, names)]
        dkwargs = {k: _device_arg(host, v, k) for k, v in kwargs.items()}
        mutable = _mutable_params(fn, names, dargs, dkwargs)
        for point in itertools.product(*(range(g) for g in grid)) if grid else [()]:
            run.instance = point
            run.grid = grid
            first = len(run.program)
            result = fn(*dargs, **dkwargs)
            flush(run)
            _check_mutable_returned(fn, mutable, result, run, first)
            if not point or not any(point):
                first_result = result
        # read back once every instance has run (they share the shared_hbm outputs)
        outputs = host.to_host(_unwrap(first_result))
    run.compile()
    host.write_back()
    return outputs, run


def _device_arg(host, a, name):
    """A kernel argument on the device: arrays (and torch tensors) become HBM tensors; a
    NumPy scalar (`np.float32(-inf)`) stays a compile-time scalar like a Python number
    (the SDK's legacy tests pass `imm: np.float32` arguments to ISA scalar operands)."""
    from .language import _wrap_arg
    if isinstance(a, np.generic):
        return a
    return _wrap_arg(host.to_device(a, name))


def _mutable_params(fn, names, dargs, dkwargs) -> dict:
    """name -> LTensor argument, for parameters annotated `nt.mutable_tensor`."""
    import inspect
    from .typing import is_mutable_annotation
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    bound = dict(zip(names, dargs))
    bound.update(dkwargs)
    return {n: bound[n] for n, p in params.items()
            if n in bound and isinstance(bound[n], LTensor)
            and is_mutable_annotation(p.annotation)}


def _check_mutable_returned(fn, mutable: dict, result, run, first: int):
    """A mutable parameter the kernel wrote must be among its return values."""
    if not mutable:
        return
    returned = {id(t.core.storage) for t in _tensors(result)}
    for name, t in mutable.items():
        st = t.core.storage
        if id(st) in returned:
            continue
        lo, hi = st.address, st.address + st.row_bytes
        written = any(w.space == "hbm" and w.lo < hi and lo < w.hi
                      for ins in run.program.instructions[first:] for w in ins.writes)
        if written:
            raise NkiValidationError(
                f"Mutable kernel parameter {name!r} not returned by `return` statement: "
                f"kernel {fn.__name__!r} writes it, so it must also be returned (e.g. "
                f"`return out, {name}`)", op="return", location=_def_location(fn))


def _def_location(fn) -> SourceLocation:
    """The `def` line of a kernel function (co_firstlineno is its first decorator)."""
    import linecache
    code = fn.__code__
    line = code.co_firstlineno
    for n in range(line, line + 50):
        text = linecache.getline(code.co_filename, n).lstrip()
        if text.startswith(("def ", "async def ")):
            line = n
            break
    return SourceLocation(code.co_filename, line, fn.__name__)


def _tensors(r):
    if isinstance(r, LTensor):
        yield r
    elif isinstance(r, (list, tuple)):
        for v in r:
            yield from _tensors(v)
    elif isinstance(r, dict):
        for v in r.values():
            yield from _tensors(v)


def _unwrap(r):
    if isinstance(r, LTensor):
        if r.core.on_chip:  # the legacy simulator read returned tiles back as they are
            from ..machine.access import read_raw
            v = r.view_all()
            if not runtime.active_run().options.numerics:
                return placeholder(v.shape, v.dtype.np)
            return read_raw(v).copy()
        return r.core
    if isinstance(r, (list, tuple)):
        return type(r)(_unwrap(v) for v in r)
    if isinstance(r, dict):
        return {k: _unwrap(v) for k, v in r.items()}
    return r


def _as_kernel(kernel) -> LegacyKernel:
    if isinstance(kernel, LegacyKernel):
        return kernel
    if not callable(kernel):
        raise TypeError(f"expected a kernel function, got {kernel!r}")
    return LegacyKernel(kernel)


def _rewrap(kernel, entry, mode, **options) -> LegacyKernel:
    k = _as_kernel(kernel)
    return LegacyKernel(k.fn, mode, k.grid, entry, **{**k.options, **options})


def jit(func=None, mode="auto", **kwargs):
    r"""Compile a kernel (here: run it on the simulator). `mode` is one of "jax",
    "torchxla", "baremetal", "benchmark", "simulation", "auto", or "trace" (NKI 0.1
    sub-kernels, inlined into the kernel that calls them); all run on the simulator."""
    if func is None:
        return lambda f: jit(f, mode, **kwargs)
    return _rewrap(func, "jit", mode, **kwargs)


def trace(func=None, **kwargs):
    r"""`nki.trace`: the older decorator for a traced kernel; runs on the simulator like
    `nki.jit` (callable directly, by `simulate_kernel`, or from another kernel)."""
    if func is None:
        return lambda f: trace(f, **kwargs)
    return _rewrap(func, "trace", "trace", **kwargs)


def baremetal(kernel=None, **kwargs):
    r"""NumPy in, NumPy out (here: on the simulator). NEFF/NTFF options
    (`save_neff_name`, `save_trace_name`, `additional_compile_opt`, `artifacts_dir`)
    are accepted and have no effect."""
    if kernel is None:
        return lambda k: baremetal(k, **kwargs)
    return _rewrap(kernel, "baremetal", "baremetal", **kwargs)


def simulate_kernel(kernel, *args, **kwargs):
    r"""Run a kernel (a function, or a `jit`/`baremetal`/... kernel, with its SPMD grid if
    it has one: `simulate_kernel(baremetal(k)[2, 4], a, b)`) on NumPy arrays."""
    k = _as_kernel(kernel)
    outputs, run = run_legacy(k.fn, args, kwargs, k.grid,
                              chip=k.options.get("platform_target"),
                              force_auto_alloc=bool(k.options.get("force_auto_alloc")))
    k.last_run = run
    if os.environ.get("TRNSIM_PROFILE_DIR"):  # write this call's profile there
        hooks.autosave(run, k.fn, outputs)
    return outputs


class _Latency:
    """The simulated latency, in microseconds (nki.benchmark's unit), at every percentile:
    the simulation is deterministic. The timeline is scheduled on the first query."""

    def __init__(self, result):
        self._result = result

    @property
    def run(self):
        return self._result.run

    def get_latency_percentile(self, p):
        if p not in PERCENTILES:
            raise ValueError(f"get_latency_percentile({p!r}): available percentiles are "
                             f"{list(PERCENTILES)}")
        return self._result.profile.benchmark_result.nc_latency.get_latency_percentile(p)


class BenchmarkResult:
    """Shaped like nki.benchmark's result: `.nc_latency.get_latency_percentile(p)` (the
    predicted on-device latency in microseconds; neuron-bench's figure also includes host
    transfers, which are not simulated). `.profile` is the trnsim Profile of the run."""

    def __init__(self, run, warmup=10, iters=100):
        self.run, self.warmup, self.iters = run, warmup, iters
        self._profile = None
        self.nc_latency = _Latency(self)

    @property
    def profile(self):
        if self._profile is None:
            self._profile = hooks.profile_run(self.run)
        return self._profile


def benchmark(kernel=None, **kwargs):
    r"""`@nki.benchmark(warmup=10, iters=100, ...)`: runs the kernel once on the simulator
    (with the inputs given; shape-only `nt.tensor[[shape], dtype]` arguments become
    zeros). Afterwards `kernel.benchmark_result.nc_latency.get_latency_percentile(p)` is
    the predicted latency in microseconds (the same at every percentile: the simulation
    is deterministic), and `kernel.benchmark_result.profile` the full trnsim Profile."""
    if kernel is None:
        return lambda k: benchmark(k, **kwargs)
    kwargs.setdefault("warmup", 10)
    kwargs.setdefault("iters", 100)
    for key in ("warmup", "iters"):
        if int(kwargs[key]) < 0 or (key == "iters" and int(kwargs[key]) < 1):
            raise ValueError(f"nki.benchmark {key}={kwargs[key]!r} must be a "
                             f"{'positive' if key == 'iters' else 'non-negative'} integer")
    return _rewrap(kernel, "benchmark", "benchmark", **kwargs)


def profile(func=None, **kwargs):
    r"""`@nki.profile(working_directory=...)`: runs the kernel on the simulator and writes
    to `working_directory` its instruction record (`trnsim_record.jsonl`) and, from
    trnsim's timing model, its summary metrics and insights (`trnsim.summary.json`), a
    Perfetto trace (`trnsim.trace.json`) and an HTML report (`trnsim.report.html`) in
    place of the NEFF/NTFF a device would give. A second run writes `trnsim_record.1.jsonl`,
    `trnsim.1.summary.json`, ... unless `overwrite=True`. After a call,
    `kernel.profile_result` is the Profile."""
    if func is None:
        return lambda f: profile(f, **kwargs)
    wd = kwargs.get("working_directory")
    if wd is None or not os.path.isabs(str(wd)):
        raise ValueError(f"nki.profile: working_directory must be given as an absolute path "
                         f"(got {wd!r})")
    return _rewrap(func, "profile", "baremetal", **kwargs)


def _write_profile(run, options, name=None):
    wd = str(options["working_directory"])
    os.makedirs(wd, exist_ok=True)
    stem, n = "trnsim", 0
    exts = ("_record.jsonl", ".summary.json", ".trace.json", ".report.html")
    while not options.get("overwrite", False) and any(
            os.path.exists(os.path.join(wd, stem + e)) for e in exts):
        n += 1
        stem = f"trnsim.{n}"
    record = os.path.join(wd, f"trnsim_record.{n}.jsonl" if n else "trnsim_record.jsonl")
    run.program.write_jsonl(record)
    run.profile_path = record
    prof = hooks.profile_run(run, name=name)
    hooks.save_profile(prof, wd, stem=stem)
    return prof


def program_id(axis):
    r"""The index of this SPMD instance along launch-grid dimension `axis` (0 without a
    grid)."""
    run = runtime.active_run()
    axis = int(axis)
    if not run.grid:
        if axis != 0:
            raise NkiValidationError(f"program_id({axis}): the kernel was launched without a "
                                     "grid (one instance, axis 0 only)")
        return 0
    if not 0 <= axis < len(run.grid):
        raise NkiValidationError(f"program_id({axis}): the launch grid {list(run.grid)} has "
                                 f"{len(run.grid)} dimensions")
    return run.instance[axis]


def num_programs(axes=None):
    r"""The number of instances along `axes` (an int or a tuple), or in the whole grid."""
    run = runtime.active_run()
    grid = run.grid or (1,)
    if axes is None:
        axes = tuple(range(len(grid)))
    one = not isinstance(axes, (tuple, list))
    n = 1
    for a in ((axes,) if one else axes):
        a = int(a)
        if not 0 <= a < len(grid):
            raise NkiValidationError(f"num_programs({axes}): the launch grid {list(grid)} "
                                     f"has {len(grid)} dimensions")
        n *= grid[a]
    return n


def program_ndim():
    r"""The number of dimensions of the SPMD launch grid (0 without one)."""
    return len(runtime.active_run().grid)
