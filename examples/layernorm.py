"""LayerNorm, y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis, in
current-NKI style, with the Vector Engine's batch-norm statistics instructions.

Rows are tiled by 128 partitions; each row tile is loaded into SBUF as fp32:
  1. `nisa.bn_stats` on each chunk of at most nl.tile_size.bn_stats_fmax (512)
     elements of the row (the free dimension is tiled here), each writing its 6
     statistics into its own slot of one stats tile,
  2. one `nisa.bn_aggr` over all the slots -> [mean, variance] per row,
  3. rstd = 1 / sqrt(var + eps) (`nisa.tensor_scalar` then `nisa.activation` rsqrt),
  4. (x - mean) * rstd in one `nisa.tensor_scalar` (two fused ALU ops with
     per-partition operands), then * gamma + beta (`nisa.tensor_tensor` twice),
     rounded once to the output dtype.
gamma and beta are DMA'd once, broadcast to all 128 partitions.

    python examples/layernorm.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

EPS = 1e-5


@nki.jit
def layernorm_kernel(x, gamma, beta, eps=EPS):
    rows, hidden = x.shape
    out = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax
    FMAX = nl.tile_size.bn_stats_fmax
    n_chunks = (hidden + FMAX - 1) // FMAX

    g = nl.ndarray((P, hidden), dtype=nl.float32, buffer=nl.sbuf)
    b = nl.ndarray((P, hidden), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=g, src=gamma.reshape((1, hidden)).broadcast(0, P))
    nisa.dma_copy(dst=b, src=beta.reshape((1, hidden)).broadcast(0, P))

    for r0 in range(0, rows, P):
        p = min(P, rows - r0)
        xt = nl.ndarray((p, hidden), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[r0:r0 + p, :])

        stats = nl.ndarray((p, n_chunks * 6), dtype=nl.float32, buffer=nl.sbuf)
        for c in range(n_chunks):
            c0 = c * FMAX
            f = min(FMAX, hidden - c0)
            nisa.bn_stats(dst=stats[:, c * 6:(c + 1) * 6], data=xt[:, c0:c0 + f])
        mean_var = nl.ndarray((p, 2), dtype=nl.float32, buffer=nl.sbuf)
        nisa.bn_aggr(dst=mean_var, data=stats)

        rstd = nl.ndarray((p, 1), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=rstd, data=mean_var[:, 1:2], op0=nl.add, operand0=eps)
        nisa.activation(dst=rstd, op=nl.rsqrt, data=rstd)

        xn = nl.ndarray((p, hidden), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=xn, data=xt, op0=nl.subtract, operand0=mean_var[:, 0:1],
                           op1=nl.multiply, operand1=rstd)
        nisa.tensor_tensor(dst=xn, data1=xn, data2=g[0:p, :], op=nl.multiply)
        y = nl.ndarray((p, hidden), dtype=x.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=y, data1=xn, data2=b[0:p, :], op=nl.add)
        nisa.dma_copy(dst=out[r0:r0 + p, :], src=y)
    return out


def reference(x, gamma, beta, eps=EPS):
    """LayerNorm over the last axis in fp32 (biased variance), rounded once to x's dtype."""
    x32 = np.asarray(x, np.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x32 - mean) / np.sqrt(var + np.float32(eps))
    return (y * np.asarray(gamma, np.float32) + np.asarray(beta, np.float32)).astype(x.dtype)


def main(chip=None):
    """Run on `chip` (default: $NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)."""
    rng = np.random.default_rng(0)
    x = (2 + rng.standard_normal((200, 1100))).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(1100)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(1100)).astype(np.float32)
    y = nki.Simulated(layernorm_kernel, chip=chip)(x, gamma, beta)
    err = float(np.max(np.abs(y - reference(x, gamma, beta))))
    print(f"layernorm {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
