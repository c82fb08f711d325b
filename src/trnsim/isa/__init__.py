"""The NeuronCore instruction set, one module per instruction family. Both NKI API
generations call these functions; each holds its checks, numerics and record."""
from .enums import (dge_mode, dma_engine, engine, gpsimd_engine, matmul_perf_mode,  # noqa: F401
                    nc_version, oob_mode, reduce_cmd, scalar_engine, tensor_engine,
                    unknown_engine, vector_engine)
from .elementwise import *  # noqa: F401,F403
from .dma import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .random import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .mx import *  # noqa: F401,F403
from .misc import *  # noqa: F401,F403
from .registers import *  # noqa: F401,F403
from .sync import *  # noqa: F401,F403


def _returning_handle(fn):
    """Make an instruction call return an NkiInstruction handle to what it recorded
    (as the current NKI does), unless it returns a value of its own.

    An instruction with a `dst` tensor also tolerates a redundant `dtype=` keyword
    (kernels written for earlier NKI releases pass `dtype=dst.dtype`, which NKI
    accepts): the output dtype of an ISA instruction is always `dst.dtype`, so a
    `dtype` equal to it is ignored and any other raises NkiValidationError. The
    documented signature (inspect.signature) is unchanged."""
    import inspect
    params = inspect.signature(fn).parameters
    takes_redundant_dtype = "dst" in params and "dtype" not in params

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if takes_redundant_dtype and "dtype" in kwargs:
            _check_redundant_dtype(fn, params, args, kwargs)
        run = _local.run or (_active[-1] if _active else None)  # (current_run())
        if run is None:
            return fn(*args, **kwargs)
        record = run.program.instructions
        before = len(record)
        result = fn(*args, **kwargs)
        if result is None and len(record) > before:
            last = record[-1]
            if last.core == (_local.core_id or 0):  # (last_instruction's find)
                return NkiInstruction(last)
            return last_instruction()
        return result

    @functools.wraps(fn)
    def call_without_handle(*args, **kwargs):
        if takes_redundant_dtype and "dtype" in kwargs:
            _check_redundant_dtype(fn, params, args, kwargs)
        return fn(*args, **kwargs)

    return call, call_without_handle


def _check_redundant_dtype(fn, params, args, kwargs):
    """Pop `dtype` from kwargs: fine when it names dst's dtype, else ignored with a warning."""
    from ..machine.errors import NkiValidationError, describe, numerics_warning
    from ..machine.tensor import NkiTensor
    from ..numerics.dtypes import as_dtype
    requested = kwargs.pop("dtype")
    dst = kwargs.get("dst")
    if dst is None and "dst" not in kwargs:
        names = list(params)
        i = names.index("dst")
        dst = args[i] if i < len(args) else None
    if requested is None:
        return
    try:
        want = as_dtype(requested)
    except TypeError as e:
        raise NkiValidationError(f"dtype={requested!r}: {e}", op=fn.__name__) from None
    if isinstance(dst, NkiTensor) and want != dst.dtype:
        run = _runtime.current_run()
        numerics_warning(
            f"dtype={want} differs from dst {describe(dst)} and is ignored: an ISA "
            f"instruction writes dst.dtype; `dtype=` is not a parameter of nki.isa."
            f"{fn.__name__} (allocate dst with the dtype you want)", fn.__name__,
            strict=run is not None and run.options.strict)


def _wrap_instructions():
    import inspect
    import types
    without_handles = {}
    for name, obj in list(globals().items()):
        if (inspect.isfunction(obj) and not name.startswith("_")
                and obj.__module__.startswith(__name__ + ".")
                and name not in ("get_nc_version", "get_nc_sub_version", "last_instruction")):
            globals()[name], without_handles[name] = _returning_handle(obj)
    public = {k: v for k, v in globals().items() if not k.startswith("_")}
    return types.SimpleNamespace(**{**public, **without_handles})


import functools  # noqa: E402

from ..machine import runtime as _runtime  # noqa: E402
from ..machine.runtime import _active, _local  # noqa: E402
from .misc import NkiInstruction, last_instruction  # noqa: E402
from ..machine.tensor import NkiTensor as _NkiTensor  # noqa: E402

# the instructions without the handle: for the legacy front end, which discards it
without_handles = _wrap_instructions()


def _assign(dst, value):
    """`view[key] = value`: a copy into the view (tensor_copy on chip, else dma_copy) or,
    for a constant, a memset of the on-chip view."""
    if isinstance(value, _NkiTensor):
        if dst.on_chip and value.on_chip:
            tensor_copy(dst=dst, src=value)
        else:
            dma_copy(dst=dst, src=value)
    elif dst.on_chip:
        memset(dst=dst, value=value)
    else:
        dst._fail("assigning a constant to an HBM view: memset an SBUF tile and "
                  "dma_copy it")


_NkiTensor.assign = staticmethod(_assign)
