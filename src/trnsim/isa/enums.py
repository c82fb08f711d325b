"""The enums of `nki.isa`, as in the NKI stubs."""
from enum import Enum


class engine(Enum):
    tensor = "tensor"
    vector = "vector"
    scalar = "scalar"
    gpsimd = "gpsimd"
    dma = "dma"
    sync = "sync"
    unknown = "unknown"


class reduce_cmd(Enum):
    idle = "idle"
    reset = "reset"
    reduce = "reduce"
    reset_reduce = "reset_reduce"
    load_reduce = "load_reduce"


class dge_mode(Enum):
    unknown = "unknown"
    swdge = "swdge"
    hwdge = "hwdge"
    none = "none"


class dma_engine(Enum):
    dma = "dma"
    gpsimd_dma = "gpsimd_dma"


class matmul_perf_mode(Enum):
    none = "none"
    double_row = "double_row"


class nc_version(Enum):
    """Ordered by generation, as kernels compare it (`get_nc_version() >= nc_version.gen3`,
    or against the generation number: `get_nc_version() >= 3`)."""
    gen2 = 2
    gen3 = 3
    gen4 = 4

    def _order(self, other):
        if isinstance(other, nc_version):
            return other.value
        if isinstance(other, int) and not isinstance(other, bool):
            return other
        return NotImplemented

    def __lt__(self, other):
        o = self._order(other)
        return o if o is NotImplemented else self.value < o

    def __le__(self, other):
        o = self._order(other)
        return o if o is NotImplemented else self.value <= o

    def __gt__(self, other):
        o = self._order(other)
        return o if o is NotImplemented else self.value > o

    def __ge__(self, other):
        o = self._order(other)
        return o if o is NotImplemented else self.value >= o


class oob_mode(Enum):
    error = "error"
    skip = "skip"


tensor_engine = engine.tensor
vector_engine = engine.vector
scalar_engine = engine.scalar
gpsimd_engine = engine.gpsimd
unknown_engine = engine.unknown
