"""`nki.isa` (current NKI API): the instruction set of trnsim.isa, plus NKI 0.7's
NkiScalar (scalar_load / scalar_store)."""
from ...isa import *  # noqa: F401,F403
from ...isa import (dge_mode, dma_engine, engine, gpsimd_engine, matmul_perf_mode,  # noqa: F401
                    nc_version, oob_mode, reduce_cmd, scalar_engine, tensor_engine,
                    unknown_engine, vector_engine)
from ...machine.errors import NkiValidationError  # noqa: F401
from ...isa.scalar import NkiScalar, scalar_load, scalar_store  # noqa: F401
