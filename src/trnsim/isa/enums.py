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


# The integer value each member has in the NKI stubs; kernels (and nki-library) pass
# these raw integers, e.g. `dge_mode=3`.
STUB_CODES = {
    engine: {1: "tensor", 5: "vector", 2: "scalar", 3: "gpsimd", 4: "dma", 6: "sync",
             0: "unknown"},
    reduce_cmd: {0: "idle", 1: "reset", 2: "reduce", 3: "reset_reduce", 4: "load_reduce"},
    dge_mode: {0: "unknown", 1: "swdge", 2: "hwdge", 3: "none"},
    oob_mode: {0: "error", 1: "skip"},
    dma_engine: {1: "dma", 2: "gpsimd_dma"},
}


def coerce(cls, value):
    """A member of enum `cls` from the member, its name, its stub integer code, or a
    same-named member of another enum class (the legacy IntEnums); None if none fits."""
    if isinstance(value, cls):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str) and name in cls.__members__:
        return cls[name]
    if isinstance(value, str) and value in cls.__members__:
        return cls[value]
    if isinstance(value, int) and not isinstance(value, bool):
        code = STUB_CODES.get(cls, {}).get(int(value))
        if code is not None:
            return cls[code]
    return None
