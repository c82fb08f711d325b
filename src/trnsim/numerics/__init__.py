"""Device dtypes and the casts between them and the engines' fp32 compute type."""
from .dtypes import DType, as_dtype, dtype_of_array  # noqa: F401
from .cast import cast, cast_like_storage, to_fp32, round_tf32  # noqa: F401
