"""nki.language: dtypes, buffers, tensor creation, tile sizes, loops, program ids."""
from __future__ import annotations

import numpy as np

from ...chips import load_chip
from ...language.tensors import fill_hbm, ndarray, tile_size  # noqa: F401
from ...machine import expand, runtime
from ...machine.errors import NkiValidationError
from ...machine.tensor import DynamicSlice, MemoryRegion, NKIObject, NkiTensor
from ...numerics.dtypes import (DType, bfloat16, bool_, float4_e2m1fn_x4, float8_e4m3,  # noqa: F401
                                float8_e4m3fn, float8_e4m3fn_x4, float8_e5m2,
                                float8_e5m2_x4, float8_e8m0fnu, float16, float32, int8,
                                int16, int32, tfloat32, uint8, uint16, uint32)

sbuf = MemoryRegion.sbuf
psum = MemoryRegion.psum
private_hbm = MemoryRegion.private_hbm
shared_hbm = MemoryRegion.shared_hbm
hbm = MemoryRegion.private_hbm  # alias of private_hbm, as documented


def _run():
    return runtime.active_run()


# -- tensor creation ------------------------------------------------------
def _filled(shape, dtype, buffer, name, value):
    from ...isa import memset
    t = ndarray(shape, dtype, buffer, name)
    if t.on_chip:
        memset(dst=t, value=value)
    else:
        fill_hbm(t, value)
    return t


def zeros(shape, dtype, buffer=sbuf, name=""):
    return _filled(shape, dtype, buffer, name, 0)


def ones(shape, dtype, buffer=sbuf, name=""):
    return _filled(shape, dtype, buffer, name, 1)


def full(shape, fill_value, dtype, buffer=sbuf, name=""):
    return _filled(shape, dtype, buffer, name, fill_value)


def zeros_like(x, dtype=None, buffer=None, name=""):
    return zeros(x.shape, dtype or x.dtype, buffer or x.buffer, name)


def empty_like(x, dtype=None, buffer=None, name=""):
    """A new uninitialized tensor like `x`; for a tile or block grid selection (NKI 0.7),
    a new grid of the same geometry (alloc_tiles / alloc_blocks)."""
    from .grid import NkiGrid, grid_like
    if isinstance(x, NkiGrid):
        return grid_like(x, dtype, buffer, name)
    return ndarray(x.shape, dtype or x.dtype, buffer or x.buffer, name)


def rand(shape, dtype, buffer=sbuf, name=""):
    """Uniform [0, 1): rand2 on NeuronCore-v4; before v4 (no rand2) the documented
    recipe, Vector Engine rng bits normalised: the top 24 of 32 random bits times 2^-24
    (the same values rand2 would draw from the same PRNG state)."""
    from ...isa import rand2, rng, tensor_scalar
    t = ndarray(shape, dtype, buffer, name)
    if _run().chip.generation >= 4:
        rand2(dst=t, min=0.0, max=1.0)
        return t
    bits = ndarray(shape, uint32, buffer, (name or "rand") + ".bits")
    rng(dst=bits)
    from ...language.math import multiply, right_shift
    tensor_scalar(dst=bits, data=bits, op0=right_shift, operand0=8)
    tensor_scalar(dst=t, data=bits, op0=multiply, operand0=2.0 ** -24)
    return t


def shared_constant(constant):
    """An HBM tensor holding a host constant known at trace time: a NumPy array, or (as
    documented) the path of a `.npy` file holding one."""
    import os
    from ...numerics.dtypes import dtype_of_array
    if isinstance(constant, (str, bytes, os.PathLike)):
        try:
            constant = np.load(constant, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"shared_constant({constant!r}): cannot load a .npy array from "
                             f"this path ({e})") from None
    arr = np.ascontiguousarray(constant)
    dtype = dtype_of_array(arr)
    return _run().hbm_tensor(arr.copy().reshape(-1).view(np.uint8), arr.shape or (1,), dtype,
                             shared_hbm, "shared_constant", initialized=True)


def shared_identity_matrix(n, dtype=uint8, dst=None):
    """An n x n identity matrix in SBUF (or written into `dst`), as documented ("Create
    an identity matrix in SBUF") and as kernels use it (nc_matmul / tensor_copy
    operand): the constant lives in shared HBM and one DMA brings it on chip."""
    from ...isa import dma_copy
    from ...numerics.cast import cast
    from ...numerics.dtypes import as_dtype
    dtype = as_dtype(dtype)
    ident = cast(np.eye(n, dtype=np.float32), dtype)
    t = _run().hbm_tensor(ident.reshape(-1).view(np.uint8).copy(), (n, n), dtype, shared_hbm,
                          "identity", initialized=True)
    if dst is None:
        dst = ndarray((n, n), dtype, sbuf, "identity")
    dma_copy(dst=dst, src=t)
    return dst


def ds(start, size):
    return DynamicSlice(start, size)


# -- loops and programs ---------------------------------------------------
def affine_range(start, stop=None, step=1):
    """Deprecated alias of range in the current NKI (a range whose loop body the
    simulator may trace once and expand: trnsim/machine/expand.py)."""
    return expand.LoopRange(start, stop, step)


sequential_range = affine_range
static_range = affine_range


def program_id(axis=0):
    if axis != 0:
        raise NkiValidationError(f"program_id(axis={axis}): the current NKI has one axis "
                                 "(the logical core)")
    return runtime.program_id()


def num_programs(axes=0):
    return runtime.active_run().lnc


def program_ndim():
    return 1


def no_reorder():
    """`with nl.no_reorder():` the instructions issued inside keep their program order
    (the compiler model's scheduler fences each of them)."""
    return runtime.program_order()


def device_print(print_prefix, tensor):
    from ...machine.access import read_raw
    if runtime.active_run().options.numerics:
        print(print_prefix, read_raw(tensor))


def is_hbm(buffer):
    return MemoryRegion(str(buffer) if str(buffer) != "hbm" else "private_hbm").space == "hbm"


def is_psum(buffer):
    return str(buffer) == "psum"


def is_sbuf(buffer):
    return str(buffer) == "sbuf"


def is_on_chip(buffer):
    return str(buffer) in ("sbuf", "psum")


__all__ = [n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "contextlib", "np", "load_chip", "runtime", "expand", "fill_hbm")] + ["tile_size"]
