"""`neuronxcc.nki.typing` (legacy NKI 0.1): tensor annotations.

- `nt.tensor` is the legacy tensor class (`nki.tensor`): every tensor and tile a legacy
  kernel sees is an instance (`isinstance(t, nt.tensor)`), with shape, dtype, ndim,
  itemsize, reshape, view, astype, broadcast_to, expand_dims, assert_shape.
- `nt.tensor[128, 512]`, `nt.tensor[[8192, 4096], nl.bfloat16]`: a shape (and dtype)
  annotation. As a *kernel argument* (`nki.benchmark(...)(kernel)(nt.tensor[[M, K],
  nl.bfloat16], ...)`, the samples' idiom for benchmarking without data) it stands for
  an input of that shape and dtype: the simulator runs the kernel on zeros (float32 when
  no dtype is given).
- `nt.mutable_tensor` annotates a kernel parameter the kernel may write; the simulator
  writes it in place (NumPy inputs alias the caller's array) and, as the compiler does,
  rejects a kernel that writes a mutable parameter without returning it
  ("Mutable kernel parameter ... not returned by `return` statement").

Not enforced: annotations on local variables (`x: nt.tensor[128, 512] = ...`), since
Python does not evaluate them; and the rule that un-annotated parameters are immutable
(legacy kernels written for `nki.trace`/`simulate_kernel` write output parameters).
"""
from __future__ import annotations

import numpy as np

from ..machine.errors import NkiValidationError
from ..numerics.dtypes import as_dtype, float32
from .tensor import LTensor

__all__ = ["tensor", "mutable_tensor", "TensorType"]


class TensorType:
    """`nt.tensor[shape..., dtype]`: an annotation carrying a shape and maybe a dtype."""

    def __init__(self, base, params):
        params = params if isinstance(params, tuple) else (params,)
        self.base = base
        self.mutable = issubclass(base, mutable_tensor)
        dtype = None
        if params and not _is_dim(params[-1]) and not isinstance(params[-1], (list, tuple)):
            dtype, params = params[-1], params[:-1]
        if len(params) == 1 and isinstance(params[0], (list, tuple)):
            params = tuple(params[0])
        if not all(_is_dim(p) for p in params):
            raise NkiValidationError(f"nt.{base.__name__}[...]: expected a shape (integers) and "
                                     f"an optional dtype, got {params!r}")
        self.shape = tuple(int(p) for p in params)
        self.dtype = as_dtype(dtype) if dtype is not None else None

    def __repr__(self):
        dt = f", {self.dtype}" if self.dtype is not None else ""
        return f"nt.{self.base.__name__}[{list(self.shape)}{dt}]"

    def __eq__(self, other):
        return (isinstance(other, TensorType) and other.base is self.base
                and other.shape == self.shape and other.dtype == self.dtype)

    def __hash__(self):
        return hash((self.base.__name__, self.shape, str(self.dtype)))

    def example(self) -> np.ndarray:
        """Zeros of this shape and dtype (the input a shape-only argument stands for)."""
        return np.zeros(self.shape, dtype=(self.dtype or float32).np)


def _is_dim(p) -> bool:
    return isinstance(p, (int, np.integer)) and not isinstance(p, bool)


class _TensorMeta(type):
    def __getitem__(cls, params):
        return TensorType(cls, params)

    def __instancecheck__(cls, obj):
        return isinstance(obj, LTensor)


class tensor(LTensor, metaclass=_TensorMeta):
    r"""A tensor object represents a multidimensional, homogeneous array of fixed-size
    items (the legacy `nki.tensor`; every legacy tensor and tile is one)."""


class mutable_tensor(tensor):
    r"""A kernel parameter the kernel may write in place; it must also be returned."""


def is_mutable_annotation(annotation) -> bool:
    """Whether a parameter annotation (an object, or its string under PEP 563) marks a
    mutable tensor."""
    if isinstance(annotation, str):
        text = annotation.replace(" ", "")
        return text.split("[")[0].split(".")[-1] == "mutable_tensor"
    if isinstance(annotation, TensorType):
        return annotation.mutable
    return isinstance(annotation, type) and issubclass(annotation, mutable_tensor)
