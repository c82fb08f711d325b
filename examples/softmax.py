"""Row-wise softmax, y = exp(x - max(x)) / sum(exp(x - max(x))), in current-NKI style.

Rows are tiled by 128 partitions; each row tile is loaded into SBUF as fp32 (the DMA
casts on the fly) and kept whole along the free dimension:
  1. row max on the Vector Engine (`nisa.tensor_reduce`, op=nl.maximum, negated so it
     can serve directly as the activation bias),
  2. exp(x - max) on the Scalar Engine (`nisa.activation` with a per-partition bias),
     summing each row into the engine's accumulator registers on the way
     (reduce_op=nl.add, read out through `reduce_res`),
  3. 1 / sum on the Vector Engine (`nisa.reciprocal`),
  4. exp * (1 / sum) (`nisa.tensor_scalar` with a per-partition operand), rounded once
     to the output dtype, and written back.

    python examples/softmax.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl


@nki.jit
def softmax_kernel(x):
    rows, cols = x.shape
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax

    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        xt = nl.ndarray((p, cols), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + p, :])

        neg_max = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_reduce(dst=neg_max, op=nl.maximum, data=xt, axis=1, negate=True)

        e = nl.ndarray((p, cols), dtype=nl.float32, buffer=nl.sbuf)
        row_sum = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=e, op=nl.exp, data=xt, bias=neg_max, scale=1.0,
                        reduce_op=nl.add, reduce_res=row_sum,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)

        inv_sum = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.reciprocal(dst=inv_sum, data=row_sum)

        y = nl.ndarray((p, cols), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=y, data=e, op0=nl.multiply, operand0=inv_sum)
        nisa.dma_copy(dst=out[r0:r0 + p, :], src=y)
    return out


def reference(x):
    """Softmax over the last axis in fp32, rounded once to x's dtype."""
    x32 = np.asarray(x, np.float32)
    e = np.exp(x32 - x32.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def main(chip=None):
    """Run on `chip` (default: $NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)."""
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal((300, 640))).astype(np.float32)
    y = nki.Simulated(softmax_kernel, chip=chip)(x)
    err = float(np.max(np.abs(y - reference(x))))
    print(f"softmax {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
