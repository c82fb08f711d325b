"""The in-order fold of an engine lane, compiled: reg = op(reg, x[i]) for i in order,
every row of a (P, F) fp32 tile at once, in fp32.

isa/accumulate.py's `sequential_fold` gets these bits from NumPy by reducing a
transposed copy of the tile; where numba is loaded (`wanted`) the core in
isa/compiled_lane_fold.py reads the tile as it lies instead, eight rows at a time (about
50 us on a [128, 2048] tile, against some 190 us for the NumPy route). Each step is one IEEE
fp32 add, subtract or multiply (no fast-math: nothing is reassociated or contracted),
so a row's result is that of the scalar chain; as on the NumPy route, the caller chains
again the rows that end in NaN (which NaN comes out of two NaN operands is the
compiler's choice) or zero (its sign, where the chain starts).
"""
from __future__ import annotations

import functools
import sys

import numpy as np

from ..machine import compiled

ADD, SUBTRACT, MULTIPLY = 0, 1, 2  # the operator codes of the compiled core
_OPS = {np.add: ADD, np.subtract: SUBTRACT, np.multiply: MULTIPLY}
_NO_START = np.empty(0, np.float32)


def wanted(ufunc) -> bool:
    """Whether `fold_rows` folds with `ufunc` here: an operator it compiles, where
    `compiled_here`."""
    return ufunc in _OPS and compiled_here()


def compiled_here() -> bool:
    """Whether the compiled numerics cores (this fold, isa/exp_fp32.py) run: numba
    installed, and TRNSIM_COMPILED=1, or unset with numba loaded already (by a compiled
    pass of this process: loading it costs ~0.3 s of CPU, more than the cores of a run
    save). Never with TRNSIM_COMPILED=0."""
    mode = compiled.mode()
    if mode == "0" or (mode != "1" and "numba" not in sys.modules):
        return False
    return compiled.numba_available()


def fold_rows(ufunc, v: np.ndarray, start=None) -> np.ndarray:
    """(P,) fp32: each row of fp32 `v` (P, F) folded in order with `ufunc` (see
    `wanted`), from `start` ((P,)) or, without one, from the row's first element.
    (Rows a multiple of 4 KiB apart evict each other from L1 here as in the NumPy
    route: pass them skewed, isa/accumulate.py's `_skewed_rows`.)"""
    v = np.asarray(v, dtype=np.float32)  # (as the NumPy route's copy into fp32 columns)
    out = np.empty(v.shape[0], np.float32)
    s = _NO_START if start is None else np.ascontiguousarray(start, dtype=np.float32)
    _compiled_fold()(v, s, _OPS[ufunc], out)
    return out


@functools.cache
def _compiled_fold():
    # (imported at first use: importing trnsim does not load numba)
    from .compiled_lane_fold import fold
    return fold
