"""Elementwise tensor addition, c = a + b, in current-NKI style.

The kernel tiles the rows by 128 partitions and the free dimension by 512 elements
(the last tile of either may be partial), moves each tile HBM -> SBUF with
`nisa.dma_copy`, adds on the Vector Engine with `nisa.tensor_tensor` (fp32 math, one
rounding to the output dtype) and writes the tile back.

    python examples/tensor_add.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

TILE_F = 512


@nki.jit
def tensor_add_kernel(a_input, b_input):
    assert a_input.shape == b_input.shape and a_input.dtype == b_input.dtype
    c_output = nl.ndarray(a_input.shape, dtype=a_input.dtype, buffer=nl.shared_hbm)
    rows, cols = a_input.shape
    P = nl.tile_size.pmax

    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        for c0 in range(0, cols, TILE_F):
            f = min(TILE_F, cols - c0)
            a_tile = nl.ndarray((p, f), dtype=a_input.dtype, buffer=nl.sbuf)
            b_tile = nl.ndarray((p, f), dtype=b_input.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=a_tile, src=a_input[r0:r0 + p, c0:c0 + f])
            nisa.dma_copy(dst=b_tile, src=b_input[r0:r0 + p, c0:c0 + f])

            c_tile = nl.ndarray((p, f), dtype=a_input.dtype, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=c_tile, data1=a_tile, data2=b_tile, op=nl.add)
            nisa.dma_copy(dst=c_output[r0:r0 + p, c0:c0 + f], src=c_tile)
    return c_output


def reference(a, b):
    """a + b computed in fp32 and rounded once to the input dtype."""
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(a.dtype)


def main(chip=None):
    """Run on `chip` (default: $NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 1024)).astype(np.float32)
    b = rng.standard_normal((256, 1024)).astype(np.float32)
    c = nki.Simulated(tensor_add_kernel, chip=chip)(a, b)
    err = float(np.max(np.abs(c - reference(a, b))))
    print(f"tensor_add {a.shape} {a.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
