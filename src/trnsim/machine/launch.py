"""Launch a kernel function on a fresh Run: host arrays in, host arrays out.

NumPy inputs are aliased in HBM, so a kernel writing an input updates the caller's
array in place (as on the device); torch tensors are converted and written back.

Without numerics (timing only) no values exist: inputs are neither copied nor
aliased (only their shapes and dtypes are taken) and nothing is written back, and the
outputs are zero placeholders of the right types, shapes and dtypes -- as a
profile-cache hit's (profile/cache.py). Their zeros are mapped lazily by the OS, so
an output no caller reads takes no memory."""
from __future__ import annotations

import inspect

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
                    dtype = dtype_of_array(_torch_to_numpy(x.new_empty(0)))
                    return self._tensor(None, tuple(x.shape), dtype, name)
                arr = _torch_to_numpy(x)
                t = self._array(arr, name)
                self._writebacks.append((x, arr))
                return t
        if isinstance(x, np.ndarray) or (hasattr(x, "__array__") and hasattr(x, "dtype")
                                         and hasattr(x, "shape")):
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
            return st.buf.view(r.dtype.np).reshape(r.shape)
        return read_raw(r)

    def write_back(self):
        for host, arr in self._writebacks:
            if isinstance(host, np.ndarray):
                host[...] = arr.reshape(host.shape)
            else:
                import torch
                with torch.no_grad():
                    host.copy_(_numpy_to_torch(arr).reshape(host.shape))


def placeholder(shape, np_dtype, torch_mode=False):
    """A zero output of a timing-only run: np.zeros takes its pages from the OS lazily,
    so it costs no memory until written."""
    a = np.zeros(shape, np_dtype)
    if not torch_mode:
        return a
    import ml_dtypes
    import torch
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _torch_to_numpy(x) -> np.ndarray:
    import ml_dtypes
    import torch
    x = x.detach().cpu().contiguous()
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return x.numpy().copy()


def _numpy_to_torch(a: np.ndarray):
    import ml_dtypes
    import torch
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


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
    return rerun_if_left_early(lambda expanding: _run(
        fn, args, kwargs, lnc, chip, Options(numerics, bool(strict), expanding)))


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
