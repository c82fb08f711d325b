"""An SPMD-grid kernel in legacy NKI style: c = a + b, launched as `kernel[4, 2](a, b)`.

The launch grid has 4 x 2 instances; each reads its position with `nl.program_id(0)`
and `nl.program_id(1)` and the grid size with `nl.num_programs(axis)`, and adds one
[rows / 4, cols / 2] tile of the inputs (rows / 4 <= 128), writing its tile of the
shared-HBM output. On the simulator the instances run one after another on one
NeuronCore; all of them write the same `shared_hbm` output tensor.

    python examples/legacy/spmd_add.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

GRID = (4, 2)


@nki.jit
def spmd_add_kernel(a_input, b_input):
    assert a_input.shape == b_input.shape
    c_output = nl.ndarray(a_input.shape, dtype=a_input.dtype, buffer=nl.shared_hbm)
    rows, cols = a_input.shape
    tile_rows = rows // nl.num_programs(0)
    tile_cols = cols // nl.num_programs(1)
    assert tile_rows * nl.num_programs(0) == rows and tile_cols * nl.num_programs(1) == cols
    assert tile_rows <= nl.tile_size.pmax

    r0 = nl.program_id(0) * tile_rows
    c0 = nl.program_id(1) * tile_cols
    i_p = nl.arange(tile_rows)[:, None]
    i_f = nl.arange(tile_cols)[None, :]
    a_tile = nl.load(a_input[r0 + i_p, c0 + i_f])
    b_tile = nl.load(b_input[r0 + i_p, c0 + i_f])
    c_tile = a_tile + b_tile
    nl.store(c_output[r0 + i_p, c0 + i_f], value=c_tile)
    return c_output


def reference(a, b):
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(a.dtype)


def main(chip=None):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 1024)).astype(np.float32)
    b = rng.standard_normal((512, 1024)).astype(np.float32)
    c, run = nki.run_legacy(spmd_add_kernel.fn, (a, b), grid=GRID, chip=chip)
    err = float(np.max(np.abs(c - reference(a, b))))
    print(f"legacy spmd_add {a.shape} on a {GRID[0]}x{GRID[1]} grid: {len(run.program)} "
          f"instructions, max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
