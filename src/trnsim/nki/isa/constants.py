"""`nki.isa.constants`: the enums of `nki.isa`, importable on their own
(`from nki.isa.constants import oob_mode, dge_mode`, as nki-library does).

Only the enums the public stubs document are here; they are the same objects as
`nki.isa.<name>`."""
from ...isa.enums import (dge_mode, dma_engine, engine, matmul_perf_mode,  # noqa: F401
                          nc_version, oob_mode, reduce_cmd)

__all__ = ["dge_mode", "dma_engine", "engine", "matmul_perf_mode", "nc_version", "oob_mode",
           "reduce_cmd"]
