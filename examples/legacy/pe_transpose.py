"""Transposing a matrix on the Tensor Engine in legacy NKI style, 128x128 blocks at
a time: each block is loaded (a partial block at the edges is simply a smaller
slice), transposed by `nisa.nc_transpose(..., engine=nisa.tensor_engine)` into PSUM
(an identity matmul), copied back to SBUF and stored at the mirrored position.

On NeuronCore-v2 (trn1) the transpose is a real matmul, so NaN/Inf would spread along
a row; from NeuronCore-v3 on it is bit-exact for every value.

    python examples/legacy/pe_transpose.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.isa as nisa
import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

BLOCK = 128


@nki.jit
def pe_transpose_kernel(x):
    P, F = x.shape
    out = nl.ndarray((F, P), dtype=x.dtype, buffer=nl.shared_hbm)
    for i in nl.affine_range((P + BLOCK - 1) // BLOCK):
        r0, r1 = i * BLOCK, min(P, (i + 1) * BLOCK)
        for j in nl.affine_range((F + BLOCK - 1) // BLOCK):
            c0, c1 = j * BLOCK, min(F, (j + 1) * BLOCK)
            blk = nl.load(x[r0:r1, c0:c1])
            t_psum = nisa.nc_transpose(blk, engine=nisa.tensor_engine)
            t_sb = nl.copy(t_psum, dtype=x.dtype)
            nl.store(out[c0:c1, r0:r1], value=t_sb)
    return out


def reference(x):
    return np.ascontiguousarray(np.asarray(x).T)


def main(P=256, F=320, chip=None):
    import ml_dtypes
    rng = np.random.default_rng(0)
    x = rng.standard_normal((P, F)).astype(ml_dtypes.bfloat16)
    out, _ = nki.run_legacy(pe_transpose_kernel.fn, (x,), chip=chip)
    exact = np.array_equal(out.view(np.uint16), reference(x).view(np.uint16))
    print(f"legacy pe_transpose [{P}x{F}] -> [{F}x{P}]: bit-exact = {exact}")
    return exact


if __name__ == "__main__":
    main(chip=sys.argv[1] if len(sys.argv) > 1 else None)
