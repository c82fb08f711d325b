"""`nki.dtype`: the NKI data types as a module (kernels annotate parameters with
`nki.dtype`; nki-library's tests do `import nki.dtype as nt` and use
`nt.float8_e4m3` with NumPy). Each is the same object as `nki.language.<name>`: a
`str` naming the type, which NumPy also accepts as a dtype (ml_dtypes registers the
low-precision names)."""
from ..numerics.dtypes import (DType, bfloat16, bool_, float4_e2m1fn_x4,  # noqa: F401
                               float8_e4m3, float8_e4m3fn, float8_e4m3fn_x4, float8_e5m2,
                               float8_e5m2_x4, float8_e8m0fnu, float16, float32, int8,
                               int16, int32, tfloat32, uint8, uint16, uint32)

__all__ = ["DType", "bool_", "int8", "int16", "int32", "uint8", "uint16", "uint32",
           "float16", "float32", "bfloat16", "tfloat32", "float8_e4m3", "float8_e4m3fn",
           "float8_e5m2", "float8_e8m0fnu", "float8_e5m2_x4", "float8_e4m3fn_x4",
           "float4_e2m1fn_x4"]
