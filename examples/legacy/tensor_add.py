"""Elementwise addition, c = a + b, in legacy NKI (`neuronxcc.nki`) style.

Rows are tiled by 128 partitions and columns by 512 with `nl.arange` index
expressions; the last tile of either may be partial, so every load, add and store
carries the mask `(row < rows) & (col < cols)`: masked-off elements are neither
read, computed nor written.

    python examples/legacy/tensor_add.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

TILE_F = 512


@nki.jit
def tensor_add_kernel(a_input, b_input):
    assert a_input.shape == b_input.shape
    c_output = nl.ndarray(a_input.shape, dtype=a_input.dtype, buffer=nl.shared_hbm)
    rows, cols = a_input.shape
    P = nl.tile_size.pmax

    i_p = nl.arange(P)[:, None]
    i_f = nl.arange(TILE_F)[None, :]
    for r in nl.affine_range((rows + P - 1) // P):
        for c in nl.affine_range((cols + TILE_F - 1) // TILE_F):
            row = r * P + i_p
            col = c * TILE_F + i_f
            inside = (row < rows) & (col < cols)
            a_tile = nl.load(a_input[row, col], mask=inside)
            b_tile = nl.load(b_input[row, col], mask=inside)
            c_tile = nl.add(a_tile, b_tile, mask=inside)
            nl.store(c_output[row, col], value=c_tile, mask=inside)
    return c_output


def reference(a, b):
    """a + b in fp32, rounded once to the input dtype."""
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(a.dtype)


def main(chip=None):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 700)).astype(np.float32)
    b = rng.standard_normal((200, 700)).astype(np.float32)
    c, _ = nki.run_legacy(tensor_add_kernel.fn, (a, b), chip=chip)
    err = float(np.max(np.abs(c - reference(a, b))))
    print(f"legacy tensor_add {a.shape} {a.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
