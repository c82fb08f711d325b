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
    (as the current NKI does), unless it returns a value of its own."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        run = _runtime._active[-1] if _runtime._active else None
        before = len(run.program) if run is not None else 0
        result = fn(*args, **kwargs)
        if result is None and run is not None and len(run.program) > before:
            return last_instruction()
        return result
    return call


def _wrap_instructions():
    import inspect
    for name, obj in list(globals().items()):
        if (inspect.isfunction(obj) and not name.startswith("_")
                and obj.__module__.startswith(__name__ + ".")
                and name not in ("get_nc_version", "get_nc_sub_version", "last_instruction")):
            globals()[name] = _returning_handle(obj)


import functools  # noqa: E402

from ..machine import runtime as _runtime  # noqa: E402
from .misc import last_instruction  # noqa: E402

_wrap_instructions()
