"""Compile the numba paths once, so that the first profile does not wait for them.

    python -m trnsim.precompile

numba compiles trnsim's compiled paths (trnsim/machine/compiled.py) the first time a
process runs them (about a minute of CPU) and keeps the machine code on disk, in
__pycache__ next to the sources or in NUMBA_CACHE_DIR. `make` runs this once after
installing, so that `make demo` and `make test` start warm. Without numba it says so and
does nothing: the Python passes need no compiling.
"""
from __future__ import annotations

import os
import sys
import time

import ml_dtypes
import numpy as np


def precompile() -> float | None:
    """Run a small kernel through every compiled path (allocation, list scheduling,
    dependency maps, timing core), fold a tile (isa/lane_fold.py) and take the exp of
    one (isa/exp_fp32.py); the CPU seconds it took, or None without numba."""
    from . import kernels
    from .isa import exp_fp32, lane_fold
    from .machine import compiled
    from .machine.launch import run_kernel
    from .timing import schedule
    if not compiled.numba_available():
        return None
    before = os.environ.get(compiled.ENV)
    os.environ[compiled.ENV] = "1"
    try:
        c = time.process_time()
        a = np.zeros((256, 256), ml_dtypes.bfloat16)
        _, run = run_kernel(kernels.matmul.matmul, (a, a), chip="trn2", numerics=False)
        schedule(run.program, run.chip)
        # a contraction long enough for loop expansion: the access columns of its
        # copies (timing/access_columns.py _copy_block)
        lhsT, rhs = np.zeros((2048, 256), a.dtype), np.zeros((2048, 512), a.dtype)
        run_kernel(kernels.matmul.matmul, (lhsT, rhs), chip="trn2", numerics=False)
        lane_fold.fold_rows(np.add, np.zeros((2, 2), np.float32))
        exp_fp32.exp_rows(np.zeros((2, 2), np.float32), np.empty((2, 2), np.float32))
        return time.process_time() - c
    finally:
        if before is None:
            del os.environ[compiled.ENV]
        else:
            os.environ[compiled.ENV] = before


def main() -> int:
    spent = precompile()
    if spent is None:
        print("trnsim: numba is not installed; the Python passes run (pip install "
              "'trnsim[fast]' for the compiled paths)")
    else:
        print(f"trnsim: compiled paths ready ({spent:.1f} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
