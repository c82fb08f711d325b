"""RMSNorm, y = x / sqrt(mean(x^2, axis=-1) + eps) * weight, in current-NKI style.

Rows are tiled by 128 partitions; each row tile is loaded into SBUF as fp32:
  1. sum(x^2) per row on the Scalar Engine (`nisa.activation` with op=nl.square,
     accumulating each row into the engine's reduce registers, read out to `sq_sum`),
  2. mean + eps on the Vector Engine (`nisa.tensor_scalar`, two fused ALU ops),
  3. 1 / sqrt(.) on the Scalar Engine (`nisa.activation`, op=nl.rsqrt),
  4. (x * rstd) * weight in one Vector Engine instruction (`nisa.scalar_tensor_tensor`),
     rounded once to the output dtype.
The weight vector is DMA'd once, broadcast to all 128 partitions (a stride-0 HBM view).

    python examples/rmsnorm.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

EPS = 1e-6


@nki.jit
def rmsnorm_kernel(x, weight, eps=EPS):
    rows, hidden = x.shape
    assert weight.shape == (hidden,)
    out = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax

    # weight on every partition: (1, H) broadcast to (P, H) with a stride-0 view
    w = nl.ndarray((P, hidden), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=w, src=weight.reshape((1, hidden)).broadcast(0, P))

    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        xt = nl.ndarray((p, hidden), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + p, :])

        sq = nl.ndarray((p, hidden), dtype=nl.float32, buffer=nl.sbuf)
        sq_sum = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=sq, op=nl.square, data=xt, reduce_op=nl.add, reduce_res=sq_sum,
                        reduce_cmd=nisa.reduce_cmd.reset_reduce)

        rstd = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=rstd, data=sq_sum, op0=nl.multiply, operand0=1.0 / hidden,
                           op1=nl.add, operand1=eps)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd)

        y = nl.ndarray((p, hidden), dtype=x.dtype, buffer=nl.sbuf)
        nisa.scalar_tensor_tensor(dst=y, data=xt, op0=nl.multiply, operand0=rstd,
                                  op1=nl.multiply, operand1=w[0:p, :])
        nisa.dma_copy(dst=out[r0:r0 + p, :], src=y)
    return out


def reference(x, weight, eps=EPS):
    """RMSNorm over the last axis in fp32, rounded once to x's dtype."""
    x32 = np.asarray(x, np.float32)
    rstd = 1.0 / np.sqrt(np.mean(x32 * x32, axis=-1, keepdims=True) + np.float32(eps))
    return (x32 * rstd * np.asarray(weight, np.float32)).astype(x.dtype)


def main(chip=None):
    """Run on `chip` (default: $NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 768)).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(768)).astype(np.float32)
    y = nki.Simulated(rmsnorm_kernel, chip=chip)(x, w)
    err = float(np.max(np.abs(y - reference(x, w))))
    print(f"rmsnorm {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
