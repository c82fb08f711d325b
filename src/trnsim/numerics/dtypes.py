"""NKI dtypes: each is a `str` (as in the NKI stubs, `DType = str`) that also knows
its storage type, so `str(nl.bfloat16) == str(t.dtype)` holds the way kernels expect."""
from __future__ import annotations

import ml_dtypes
import numpy as np


class DType(str):
    """An NKI dtype. `np` is the NumPy/ml_dtypes type its bytes are stored as;
    for the x4 packed MX types it is the 32-bit container (`uint32`) and `element`
    is the type of each of the 4 packed values."""

    np: np.dtype
    kind: str  # 'float' | 'int' | 'uint' | 'bool' | 'x4'
    element: "np.dtype | None"
    name: str  # a plain str (one object per dtype: the record's accesses share it)
    itemsize: int

    def __new__(cls, name: str, storage, kind: str, element=None):
        obj = super().__new__(cls, name)
        obj.np = np.dtype(storage)
        obj.kind = kind
        obj.element = None if element is None else np.dtype(element)
        obj.name = str.__str__(obj)
        obj.itemsize = obj.np.itemsize
        return obj

    @property
    def bits(self) -> int:
        return self.np.itemsize * 8

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint", "bool")

    @property
    def is_x4(self) -> bool:
        return self.kind == "x4"

    @property
    def is_fp8(self) -> bool:
        return self.kind == "float" and self.itemsize == 1

    def __repr__(self) -> str:
        return f"nl.{str(self)}"

    def __eq__(self, other) -> bool:
        """Equal to its name, and to the NumPy type legacy kernels compare against
        (`t.dtype == np.float32`)."""
        if other is self:  # (dtypes are module singletons: the usual case, answered first)
            return True
        if isinstance(other, str):
            return str.__eq__(self, other)
        try:
            return str.__eq__(self, as_dtype(other))
        except TypeError:
            return NotImplemented

    def __ne__(self, other) -> bool:
        if other is self:
            return False
        if isinstance(other, str):
            return str.__ne__(self, other)
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = str.__hash__

    def __reduce__(self):
        return (as_dtype, (str(self),))


bool_ = DType("bool_", np.uint8, "bool")
int8 = DType("int8", np.int8, "int")
int16 = DType("int16", np.int16, "int")
int32 = DType("int32", np.int32, "int")
uint8 = DType("uint8", np.uint8, "uint")
uint16 = DType("uint16", np.uint16, "uint")
uint32 = DType("uint32", np.uint32, "uint")
float16 = DType("float16", np.float16, "float")
float32 = DType("float32", np.float32, "float")
bfloat16 = DType("bfloat16", ml_dtypes.bfloat16, "float")
# tf32 (1-8-10) is stored in 4 bytes; values are rounded to 10 mantissa bits on write.
tfloat32 = DType("tfloat32", np.float32, "float")
float8_e4m3 = DType("float8_e4m3", ml_dtypes.float8_e4m3, "float")
float8_e4m3fn = DType("float8_e4m3fn", ml_dtypes.float8_e4m3fn, "float")
float8_e5m2 = DType("float8_e5m2", ml_dtypes.float8_e5m2, "float")
float8_e8m0fnu = DType("float8_e8m0fnu", ml_dtypes.float8_e8m0fnu, "float")
float8_e5m2_x4 = DType("float8_e5m2_x4", np.uint32, "x4", ml_dtypes.float8_e5m2)
float8_e4m3fn_x4 = DType("float8_e4m3fn_x4", np.uint32, "x4", ml_dtypes.float8_e4m3fn)
float4_e2m1fn_x4 = DType("float4_e2m1fn_x4", np.uint16, "x4", ml_dtypes.float4_e2m1fn)

ALL = (bool_, int8, int16, int32, uint8, uint16, uint32, float16, float32, bfloat16,
       tfloat32, float8_e4m3, float8_e4m3fn, float8_e5m2, float8_e8m0fnu,
       float8_e5m2_x4, float8_e4m3fn_x4, float4_e2m1fn_x4)
_BY_NAME = {str(d): d for d in ALL}
_ALIASES = {
    "bool": bool_, "float": float32, "fp32": float32, "fp16": float16, "bf16": bfloat16,
    "half": float16, "tf32": tfloat32, "float8e4": float8_e4m3, "float8e5": float8_e5m2,
    "float8e3": float8_e4m3, "fp8_e4m3": float8_e4m3, "fp8_e5m2": float8_e5m2,
    "float8_e4m3fnuz": float8_e4m3fn, "float4_e2m1fn": float4_e2m1fn_x4,
}
_BY_NP = {}
for _d in ALL:
    if _d.kind not in ("x4",) and _d is not tfloat32 and _d is not bool_:
        _BY_NP.setdefault(_d.np, _d)
_BY_NP[np.dtype(np.bool_)] = bool_
_BY_NP[np.dtype(np.float64)] = float32  # Python floats are fp32 on the device
_BY_NP[np.dtype(np.int64)] = int32


def as_dtype(x) -> DType:
    """Normalise anything a kernel may pass as a dtype: an NKI dtype, its name, a
    NumPy/ml_dtypes type, a torch dtype, or the Python types float/int/bool."""
    if isinstance(x, DType):
        return x
    if x is None:
        raise TypeError("dtype is None")
    if isinstance(x, str):
        name = x.removeprefix("nl.").removeprefix("torch.")
        found = _BY_NAME.get(name) or _ALIASES.get(name)
        if found is None:
            raise TypeError(f"unknown NKI dtype {x!r}; known: {', '.join(_BY_NAME)}")
        return found
    if x is float:
        return float32
    if x is int:
        return int32
    if x is bool:
        return bool_
    mod = type(x).__module__
    if mod.startswith("torch"):
        return as_dtype(str(x))
    try:
        npd = np.dtype(x)
    except TypeError:
        raise TypeError(f"not a dtype: {x!r}") from None
    found = _BY_NP.get(npd)
    if found is None:
        raise TypeError(f"dtype {npd} has no NKI equivalent (int64/float64 are not device types)")
    return found


def dtype_of_array(a: np.ndarray) -> DType:
    """The NKI dtype a host array is stored as on the device (int64 and float64 are
    rejected: the device has no 64-bit types)."""
    npd = np.asarray(a).dtype
    if npd in (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.uint64)):
        raise TypeError(f"host array of dtype {npd}: the NeuronCore has no 64-bit types; "
                        "pass float32/int32 (or a narrower type)")
    return as_dtype(npd)
