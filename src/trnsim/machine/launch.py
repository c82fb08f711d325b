"""Launch a kernel function on a fresh Run: host arrays in, host arrays out.

NumPy inputs are aliased in HBM, so a kernel writing an input updates the caller's
array in place (as on the device); torch tensors are converted, and those the kernel
changed are written back. Fake or meta torch tensors (torch.compile's tracing, a
custom op's fake kernel) run timing only and give fake (or meta) outputs of the kernel's
shapes and dtypes. JAX arrays (tracers under `jax.jit` too) go through jax_bridge.py.

Without numerics (timing only) no values exist: inputs are neither copied nor
aliased (only their shapes and dtypes are taken) and nothing is written back, and the
outputs are zero placeholders of the right types, shapes and dtypes -- as a
profile-cache hit's (profile/cache.py). Their zeros are mapped lazily by the OS, so
an output no caller reads takes no memory."""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import mmap

import numpy as np

from ..numerics.dtypes import dtype_of_array
from .access import read_raw
from .expand import rerun_if_left_early
from .runtime import Options, Run, activate, strict_from_env
from .tensor import MemoryRegion, NkiTensor
from .written import check_returned


class HostArgs:
    """Converts host arguments to HBM tensors and results back to host arrays."""

    def __init__(self, run: Run):
        self.run = run
        self.torch_mode = False
        self.fake_device = None  # the device of fake/meta torch inputs: outputs go there
        self._writebacks: list[tuple] = []  # (host object, ndarray copy)
        self._handed: set[int] = set()  # ids of the storages whose buffer an output is

    def to_device(self, x, name="arg"):
        if isinstance(x, NkiTensor):
            return x
        if type(x).__module__.startswith("torch"):
            import torch  # noqa: F401 - only when the caller passes torch tensors
            if isinstance(x, torch.Tensor):
                self.torch_mode = True
                if not self.run.options.numerics:  # its shape and dtype only: no copy
                    if _is_fake(x):
                        self.fake_device = x.device
                    dtype = dtype_of_array(np.empty(0, torch_to_numpy_dtype(x.dtype)))
                    # a symbolic size (dynamic shapes) is specialized: kernels are
                    # traced at concrete shapes, as the compiler builds them
                    return self._tensor(None, tuple(int(d) for d in x.shape), dtype, name)
                arr = _torch_to_numpy(x)
                t = self._array(arr, name)
                self._writebacks.append((x, arr))
                return t
        if isinstance(x, np.ndarray) or (  # array-likes; not a dtype class (np.float32)
                not isinstance(x, type) and hasattr(x, "__array__")
                and hasattr(x, "dtype") and hasattr(x, "shape")):
            return self._array(x, name)
        if isinstance(x, (list, tuple)):
            return type(x)(self.to_device(v, f"{name}_{i}") for i, v in enumerate(x))
        if isinstance(x, dict):
            return {k: self.to_device(v, str(k)) for k, v in x.items()}
        return x

    def _array(self, x, name):
        arr = np.asarray(x)
        dtype = dtype_of_array(arr)
        if not self.run.options.numerics:
            return self._tensor(None, arr.shape, dtype, name)
        if arr.flags.c_contiguous and arr.flags.writeable:
            host = arr
        else:
            host = np.array(arr, order="C")  # one copy (writable, contiguous)
            if isinstance(x, np.ndarray) and x.flags.writeable:
                self._writebacks.append((x, host))
        return self._tensor(host.reshape(-1).view(np.uint8), arr.shape, dtype, name)

    def _tensor(self, buf, shape, dtype, name):
        return self.run.hbm_tensor(buf, shape or (1,), dtype, MemoryRegion.shared_hbm,
                                   name, initialized=True)

    def to_host(self, r):
        if isinstance(r, NkiTensor):
            if r.on_chip:
                raise TypeError(f"kernel returned on-chip tensor {r.name!r}; return HBM "
                                "tensors (nl.ndarray(..., buffer=nl.shared_hbm))")
            if not self.run.options.numerics:
                if self.fake_device is not None:
                    import torch
                    return torch.empty(r.shape, dtype=numpy_to_torch_dtype(r.dtype.np),
                                       device=self.fake_device)
                return placeholder(r.shape, r.dtype.np, self.torch_mode)
            check_returned(self.run, r)
            out = self._take(r)
            return _numpy_to_torch(out) if self.torch_mode else out
        if isinstance(r, (list, tuple)):
            return type(r)(self.to_host(v) for v in r)
        if isinstance(r, dict):
            return {k: self.to_host(v) for k, v in r.items()}
        return r

    def _take(self, r: NkiTensor) -> np.ndarray:
        """The values of returned HBM tensor `r`. A whole tensor the kernel made hands
        over its buffer (the run has ended: nothing writes it any more) instead of a
        copy; anything else (a view, a host input, a tensor returned twice) is copied."""
        st = r.storage
        whole = (r.dyn is None and r.offset == 0 and r.shape == st.base_shape
                 and r.dtype == st.base_dtype and r.is_contiguous())
        if whole and not st.born_initialized and id(st) not in self._handed:
            self._handed.add(id(st))
            return st.data.view(r.dtype.np).reshape(r.shape)
        return read_raw(r)

    def write_back(self):
        for host, arr in self._writebacks:
            if isinstance(host, np.ndarray):
                host[...] = arr.reshape(host.shape)
            else:
                import torch
                new = _numpy_to_torch(arr).reshape(host.shape)
                old = host.detach().cpu().contiguous()
                if torch.equal(new.view(torch.uint8), old.view(torch.uint8)):
                    continue  # untouched: no write (no version bump for autograd)
                with torch.no_grad():
                    host.copy_(new)


_MAPPED = 1 << 20  # bytes from which an output placeholder is mapped (a mapping each)


def placeholder(shape, np_dtype, torch_mode=False):
    """A zero output of a timing-only run; a large one over an anonymous mapping of its
    own, whose pages the OS gives as they are written, so it costs no memory or time
    until then. (np.zeros may instead clear memory the C heap kept: glibc's malloc
    raises its mmap threshold to the size of each large array freed, such as the last
    run's output.)"""
    dtype = np.dtype(np_dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    a = np.ndarray(shape, dtype, buffer=mmap.mmap(-1, nbytes)) if nbytes >= _MAPPED \
        else np.zeros(shape, dtype)
    return _numpy_to_torch(a, copy=False) if torch_mode else a


@functools.lru_cache(maxsize=1)
def _dtype_pairs():
    import ml_dtypes
    import torch
    pairs = [(torch.float32, np.float32), (torch.float16, np.float16),
             (torch.float64, np.float64), (torch.bfloat16, ml_dtypes.bfloat16),
             (torch.int8, np.int8), (torch.int16, np.int16), (torch.int32, np.int32),
             (torch.int64, np.int64), (torch.uint8, np.uint8), (torch.bool, np.bool_)]
    for t, n in (("float8_e4m3fn", "float8_e4m3fn"), ("float8_e5m2", "float8_e5m2"),
                 ("uint16", None), ("uint32", None)):
        if hasattr(torch, t):
            pairs.append((getattr(torch, t), getattr(ml_dtypes, n) if n else np.dtype(t)))
    return [(t, np.dtype(n)) for t, n in pairs]


def torch_to_numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype of torch dtype `dtype` (bf16 and fp8 as ml_dtypes'), without
    making a tensor (a fake tensor has no values to convert)."""
    for t, n in _dtype_pairs():
        if t == dtype:
            return n
    raise TypeError(f"torch dtype {dtype} has no NumPy counterpart trnsim knows")


def numpy_to_torch_dtype(dtype):
    for t, n in _dtype_pairs():
        if n == np.dtype(dtype):
            return t
    raise TypeError(f"NumPy dtype {dtype} has no torch counterpart trnsim knows")


def _torch_to_numpy(x) -> np.ndarray:
    import torch
    x = x.detach().cpu().contiguous()
    npd = torch_to_numpy_dtype(x.dtype)
    if npd.type.__module__.startswith("ml_dtypes"):  # bf16, fp8: through raw bits
        bits = torch.int16 if x.element_size() == 2 else torch.int8
        return x.view(bits).numpy().view(npd).copy()
    return x.numpy().copy()


def _numpy_to_torch(a: np.ndarray, copy=True):
    import torch
    t = numpy_to_torch_dtype(a.dtype)
    if a.dtype.type.__module__.startswith("ml_dtypes"):  # bf16, fp8: through raw bits
        bits = a.view(np.int16 if a.dtype.itemsize == 2 else np.int8)
        return torch.from_numpy(bits.copy() if copy else bits).view(t)
    return torch.from_numpy(np.ascontiguousarray(a))


def _is_fake(x) -> bool:
    from torch._subclasses.fake_tensor import is_fake
    return x.is_meta or is_fake(x)


def _find(tree, test) -> bool:
    if isinstance(tree, (list, tuple)):
        return any(_find(v, test) for v in tree)
    if isinstance(tree, dict):
        return any(_find(v, test) for v in tree.values())
    return test(tree)


def _fake_torch(x) -> bool:
    if not type(x).__module__.startswith("torch"):
        return False
    import torch
    return isinstance(x, torch.Tensor) and _is_fake(x)


def _jax_array(x) -> bool:
    if not type(x).__module__.startswith("jax"):
        return False
    import jax
    return isinstance(x, jax.Array)


def param_names(fn, n: int) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        params = []
    return [params[i] if i < len(params) else f"arg{i}" for i in range(n)]


def run_kernel(fn, args=(), kwargs=None, *, lnc: int = 1, chip=None, numerics=True,
               strict=None):
    """Run `fn(*args, **kwargs)` on a simulated chip with `lnc` logical cores.
    `strict=None` means $TRNSIM_STRICT. Returns (host outputs, the Run with its program)."""
    if strict is None:
        strict = strict_from_env()
    inputs = (args, kwargs or {})
    if _find(inputs, _jax_array):
        from .jax_bridge import run_jax
        return run_jax(run_kernel, fn, args, kwargs, lnc=lnc, chip=chip,
                       numerics=numerics, strict=strict)
    if numerics and _find(inputs, _fake_torch):
        numerics = False  # fake tensors have no values: shapes and dtypes only
    outputs, run = rerun_if_left_early(lambda expanding: _run(
        fn, args, kwargs, lnc, chip, Options(numerics, bool(strict), expanding)))
    for tell in _observers:
        tell(fn, run)
    return outputs, run


_observers: list = []  # callables told (kernel function, finished Run) of each launch


@contextlib.contextmanager
def observe(callback):
    """Inside, `callback(fn, run)` is called after each kernel launch finishes (the
    whole-model charger collects the kernels a custom operator runs)."""
    _observers.append(callback)
    try:
        yield
    finally:
        _observers.remove(callback)


def _run(fn, args, kwargs, lnc, chip, options):
    run = Run(chip, lnc, options)
    host = HostArgs(run)
    with activate(run, fn):
        names = param_names(fn, len(args))
        dargs = [host.to_device(a, n) for a, n in zip(args, names)]
        dkwargs = {k: host.to_device(v, k) for k, v in (kwargs or {}).items()}
        results = run.scheduler.run(lambda core: fn(*dargs, **dkwargs))
        outputs = host.to_host(results[0])
    run.compile()
    host.write_back()
    return outputs, run
