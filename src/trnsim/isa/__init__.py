"""The NeuronCore instruction set, one module per instruction family. Both NKI API
generations call these functions; each holds its checks, numerics and record."""
import os

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
    (as the current NKI does), unless it returns a value of its own; with the call
    that returns none (the legacy front end's).

    An instruction with a `dst` tensor also tolerates a redundant `dtype=` keyword
    (kernels written for earlier NKI releases pass `dtype=dst.dtype`, which NKI
    accepts): the output dtype of an ISA instruction is always `dst.dtype`, so a
    `dtype` equal to it is ignored and any other raises NkiValidationError. The
    documented signature (inspect.signature) is unchanged.

    Both calls are made with fn's own parameters (`_calls_source`): a wrapper taking
    *args and **kwargs spends more (~0.25 us) packing and unpacking a keyword call than
    the rest of it."""
    import inspect
    params = inspect.signature(fn).parameters
    takes_redundant_dtype = "dst" in params and "dtype" not in params
    space = {"_h_fn": fn, "_h_local": _local, "_h_active": _active,
             "_h_handle": NkiInstruction, "_h_last_instruction": last_instruction,
             "_h_unset": _UNSET, "_h_dtype": _check_redundant_dtype,
             "__name__": __name__}
    exec(compile(_calls_source(fn.__name__, params.values(), takes_redundant_dtype, space),
                 _CALLS_FILE, "exec"), space)
    return (functools.wraps(fn)(space["call"]),
            functools.wraps(fn)(space["call_without_handle"]))


_UNSET = object()  # `dtype` not given
# where tracebacks and kernel_location (machinery: trnsim's own) see the calls
_CALLS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "<instruction call>")


def _calls_source(name: str, params, takes_redundant_dtype: bool, defaults: dict) -> str:
    """The source of `call` and `call_without_handle` for instruction `name` with
    `params` (inspect.Parameter, positional-or-keyword or keyword-only); `defaults`
    gets the names their default values take there. (Names of its own start with _h_,
    which no parameter's does.)"""
    decl, forward, star = [], [], False
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise TypeError(f"instruction {name}: parameter {p} is not positional-or-"
                            "keyword or keyword-only")
        if p.kind is p.KEYWORD_ONLY and not star:
            decl.append("*")
            star = True
        if p.default is p.empty:
            decl.append(p.name)
        else:
            defaults[f"_h_default_{p.name}"] = p.default
            decl.append(f"{p.name}=_h_default_{p.name}")
        forward.append(p.name if p.kind is p.POSITIONAL_OR_KEYWORD else f"{p.name}={p.name}")
    check = "pass"
    if takes_redundant_dtype:
        decl += ([] if star else ["*"]) + ["dtype=_h_unset"]
        check = "if dtype is not _h_unset:\n        _h_dtype(_h_fn, dtype, dst)"
    decl, forward = ", ".join(decl), ", ".join(forward)
    return f"""\
def call({decl}):
    {check}
    _h_run = _h_local.run or (_h_active[-1] if _h_active else None)  # (current_run())
    if _h_run is None:
        return _h_fn({forward})
    _h_record = _h_run.program.instructions
    _h_before = len(_h_record)
    _h_result = _h_fn({forward})
    if _h_result is None and len(_h_record) > _h_before:
        _h_last = _h_record[-1]
        if _h_last.core == (_h_local.core_id or 0):  # (last_instruction's find)
            return _h_handle(_h_last)
        return _h_last_instruction()
    return _h_result


def call_without_handle({decl}):
    {check}
    return _h_fn({forward})
"""


def _check_redundant_dtype(fn, requested, dst):
    """A `dtype=` given to instruction fn: fine when it names dst's dtype (or is None),
    else ignored with a warning."""
    from ..machine.errors import NkiValidationError, describe, numerics_warning
    from ..machine.tensor import NkiTensor
    from ..numerics.dtypes import as_dtype
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
