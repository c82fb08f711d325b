"""Transposing a matrix on the Tensor Engine, 128x128 blocks at a time.

Each [<=128, <=128] SBUF block goes through `nisa.nc_transpose(engine=tensor)` (an
identity matmul in PE transpose mode) into PSUM, then back to SBUF and HBM. From
NeuronCore-v3 on the transpose is bit-exact for every value; on NeuronCore-v2 (trn1) it
is a real matmul, so NaN/Inf would spread along a row (keep the input finite there).

    python examples/pe_transpose.py
"""
import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

BLOCK = 128


@nki.jit
def pe_transpose_kernel(x):
    P, F = x.shape
    out = nl.ndarray((F, P), dtype=x.dtype, buffer=nl.shared_hbm)
    for i in nl.affine_range((P + BLOCK - 1) // BLOCK):
        rows = min(BLOCK, P - i * BLOCK)
        for j in nl.affine_range((F + BLOCK - 1) // BLOCK):
            cols = min(BLOCK, F - j * BLOCK)
            blk = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=blk, src=x[i * BLOCK:i * BLOCK + rows, j * BLOCK:j * BLOCK + cols])
            t_psum = nl.ndarray((cols, rows), dtype=x.dtype, buffer=nl.psum)
            nisa.nc_transpose(dst=t_psum, data=blk, engine=nisa.tensor_engine)
            t_sb = nl.ndarray((cols, rows), dtype=x.dtype, buffer=nl.sbuf)
            nisa.tensor_copy(dst=t_sb, src=t_psum)
            nisa.dma_copy(dst=out[j * BLOCK:j * BLOCK + cols, i * BLOCK:i * BLOCK + rows],
                          src=t_sb)
    return out


def reference(x):
    return np.ascontiguousarray(np.asarray(x).T)


def main(P=256, F=320, seed=0):
    import ml_dtypes
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((P, F)).astype(ml_dtypes.bfloat16)
    out = nki.simulate(pe_transpose_kernel)(x)
    assert out.shape == (F, P)
    assert np.array_equal(out.view(np.uint16), reference(x).view(np.uint16)), "not bit-exact"
    print(f"pe_transpose [{P}x{F}] -> [{F}x{P}]: bit-exact -- OK")
    return out


if __name__ == "__main__":
    main()
