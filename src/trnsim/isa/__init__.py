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
