"""exp of an fp32 tile as trnsim's activations compute it, fp32(np.exp(float64(t))),
compiled: the same bits at about a third of np.exp's float64 time.

NumPy's float64 exp calls libm per element (it has SIMD code only for AVX-512), the
larger part of a softmax's time. isa/compiled_exp_fp32.py evaluates float64 exp in
vector steps instead and rounds it to fp32; where that rounding could differ from the
rounding of np.exp's float64 (a value near an fp32 rounding boundary) or the input is
NaN, it names the row, and the caller computes that row again by its NumPy route. The
fp32 `x * scale + bias` before the exp is computed in the same loop, one IEEE operation
each (no fused multiply-add), so it gives NumPy's bits too; a NaN in scale or bias
(whose payload against x's NaN NumPy's loop picks) keeps the NumPy route.
"""
from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import lane_fold

def applies(x: np.ndarray, out: np.ndarray, scale, bias) -> bool:
    """Whether `exp_rows` computes out = exp(x * scale + bias) here: the compiled numerics
    wanted (lane_fold.compiled_here), 2-D fp32 x and out with contiguous rows, in separate
    memory, and scale and bias (None, an fp32 constant or a (P, 1) column) free of NaN."""
    if not lane_fold.compiled_here():
        return False
    if not (_rows_contiguous(x) and _rows_contiguous(out)) or np.shares_memory(x, out):
        return False
    for v in (scale, bias):
        if v is not None and np.count_nonzero(np.isnan(v)):
            return False
    return True


def exp_rows(x: np.ndarray, out: np.ndarray, scale=None, bias=None) -> np.ndarray:
    """out = fp32(exp(float64(x * scale + bias))) (the fp32 product and sum, each only
    where given) where `applies`; returns the rows (indices) of out still to compute by
    the NumPy route."""
    core, affine_codes = _compiled()
    P, F = x.shape
    affine = affine_codes[scale is not None, bias is not None]
    redo = np.empty(P, np.int64)
    (xf, x_pitch), (outf, out_pitch) = _flat_rows(x), _flat_rows(out)
    n = core(xf, x_pitch, _per_row(scale, P), _per_row(bias, P), affine, outf, out_pitch,
             P, F, redo)
    return redo[:n]


def _rows_contiguous(a: np.ndarray) -> bool:
    return (a.ndim == 2 and a.dtype == np.float32 and a.strides[1] == 4 and
            a.strides[0] >= 0 and a.strides[0] % 4 == 0)


def _flat_rows(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(P, F) `a` with contiguous rows as (a 1-D view of the memory from its first to its
    last element, the elements from one row's start to the next's)."""
    P, F = a.shape
    pitch = a.strides[0] // 4
    return as_strided(a, shape=((P - 1) * pitch + F,), strides=(4,)), pitch


def _per_row(v, P: int) -> np.ndarray:
    """A constant or a (P, 1) column as a (P,) fp32 array (zeros for None: one
    signature of the compiled core for all four forms)."""
    if v is None:
        return np.zeros(P, np.float32)
    if type(v) is np.float32:
        return np.full(P, v, np.float32)
    if type(v) is np.ndarray and v.dtype == np.float32 and v.size == P:  # a column
        return v.reshape(P).copy()
    return np.array(np.broadcast_to(np.asarray(v, np.float32).reshape(-1), (P,)))


@functools.cache
def _compiled():
    """(the compiled core, its `affine` code by (scaled, biased)), imported at first use:
    importing trnsim does not load numba."""
    from .compiled_exp_fp32 import BIAS, NONE, SCALE, SCALE_BIAS, exp_rows as core
    return core, {(False, False): NONE, (True, False): SCALE, (False, True): BIAS,
                  (True, True): SCALE_BIAS}
