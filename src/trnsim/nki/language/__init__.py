"""`nki.language` (current NKI API) on the simulated NeuronCore."""
from ...machine.tensor import DynamicSlice, MemoryRegion, NKIObject, NkiTensor  # noqa: F401
from .core import *  # noqa: F401,F403
from .core import tile_size  # noqa: F401
from .memory_ops import *  # noqa: F401,F403
from ...language.math import *  # noqa: F401,F403
from .control import *  # noqa: F401,F403
from .grid import *  # noqa: F401,F403
