"""LayerNorm, y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis, in
legacy NKI style with the Vector Engine's batch-norm statistics instructions.

gamma and beta are loaded once as [1, H] tiles and broadcast to 128 partitions. Rows
are tiled by 128 partitions (the last tile masked with `row < rows`); per row tile:
  1. `nisa.bn_stats` on each chunk of at most nl.tile_size.bn_stats_fmax (512)
     elements, each result assigned into its own 6-element slot of one stats tile,
  2. one `nisa.bn_aggr` over all slots -> [mean, variance] per row,
  3. rstd = 1 / sqrt(var + eps) (`nisa.tensor_scalar`, then `nl.rsqrt`),
  4. (x - mean) * rstd in one `nisa.tensor_scalar` (two fused ALU ops with
     per-partition operands), then * gamma + beta, rounded once to the output dtype.

    python examples/legacy/layernorm.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.isa as nisa
import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

EPS = 1e-5


@nki.jit
def layernorm_kernel(x, gamma, beta, eps=EPS):
    rows, hidden = x.shape
    out = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax
    FMAX = nl.tile_size.bn_stats_fmax
    n_chunks = (hidden + FMAX - 1) // FMAX

    i_p = nl.arange(P)[:, None]
    i_f = nl.arange(hidden)[None, :]
    one = nl.arange(1)[:, None]
    i_s = nl.arange(6)[None, :]
    col0 = nl.arange(1)[None, :]
    g = nl.broadcast_to(nl.load(gamma.reshape((1, hidden))[one, i_f], dtype=nl.float32),
                        shape=(P, hidden))
    b = nl.broadcast_to(nl.load(beta.reshape((1, hidden))[one, i_f], dtype=nl.float32),
                        shape=(P, hidden))

    for r in nl.affine_range((rows + P - 1) // P):
        row = r * P + i_p
        live = row < rows
        xt = nl.load(x[row, i_f], mask=live, dtype=nl.float32)

        stats = nl.ndarray((P, 6 * n_chunks), dtype=nl.float32, buffer=nl.sbuf)
        for c in nl.affine_range(n_chunks):
            i_c = nl.arange(min(FMAX, hidden - c * FMAX))[None, :]
            stats[i_p, c * 6 + i_s] = nisa.bn_stats(xt[i_p, c * FMAX + i_c], mask=live,
                                                    dtype=nl.float32)
        mean_var = nisa.bn_aggr(stats, mask=live)

        var_eps = nisa.tensor_scalar(mean_var[i_p, 1 + col0], np.add, eps, mask=live)
        rstd = nl.rsqrt(var_eps, mask=live)
        xn = nisa.tensor_scalar(xt, np.subtract, mean_var[i_p, col0], op1=np.multiply,
                                operand1=rstd, mask=live)
        y = nl.add(nl.multiply(xn, g, mask=live), b, dtype=x.dtype, mask=live)
        nl.store(out[row, i_f], value=y, mask=live)
    return out


def reference(x, gamma, beta, eps=EPS):
    x32 = np.asarray(x, np.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x32 - mean) / np.sqrt(var + np.float32(eps))
    return (y * np.asarray(gamma, np.float32) + np.asarray(beta, np.float32)).astype(x.dtype)


def main(chip=None):
    rng = np.random.default_rng(0)
    x = (2 + rng.standard_normal((200, 1100))).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(1100)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(1100)).astype(np.float32)
    y, _ = nki.run_legacy(layernorm_kernel.fn, (x, gamma, beta), chip=chip)
    err = float(np.max(np.abs(y - reference(x, gamma, beta))))
    print(f"legacy layernorm {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
