"""RMSNorm, y = x / sqrt(mean(x^2) + eps) * weight over the last axis, in legacy NKI
style with `nki.language` compute functions.

The weight is loaded once as a [1, H] tile and broadcast to 128 partitions
(`nl.broadcast_to`). Rows are tiled by 128 partitions (the last tile masked with
`row < rows`); per row tile, in fp32: x^2 (`nl.square`), its row sum (`nl.sum`,
keepdims), mean + eps, 1/sqrt (`nl.rsqrt`), then x * rstd * weight, rounded once to
the output dtype.

    python examples/legacy/rmsnorm.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl

EPS = 1e-6


@nki.jit
def rmsnorm_kernel(x, weight, eps=EPS):
    rows, hidden = x.shape
    assert weight.shape == (hidden,)
    out = nl.ndarray((rows, hidden), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax

    i_p = nl.arange(P)[:, None]
    i_f = nl.arange(hidden)[None, :]
    one = nl.arange(1)[:, None]
    w_row = nl.load(weight.reshape((1, hidden))[one, i_f], dtype=nl.float32)
    w = nl.broadcast_to(w_row, shape=(P, hidden))

    for r in nl.affine_range((rows + P - 1) // P):
        row = r * P + i_p
        live = row < rows
        xt = nl.load(x[row, i_f], mask=live, dtype=nl.float32)
        sq = nl.square(xt, mask=live)
        sq_sum = nl.sum(sq, axis=[1], keepdims=True, mask=live)
        mean_eps = nl.add(nl.multiply(sq_sum, 1.0 / hidden, mask=live), eps, mask=live)
        rstd = nl.rsqrt(mean_eps, mask=live)
        y = nl.multiply(nl.multiply(xt, rstd, mask=live), w, dtype=x.dtype, mask=live)
        nl.store(out[row, i_f], value=y, mask=live)
    return out


def reference(x, weight, eps=EPS):
    x32 = np.asarray(x, np.float32)
    rstd = 1.0 / np.sqrt(np.mean(x32 * x32, axis=-1, keepdims=True) + np.float32(eps))
    return (x32 * rstd * np.asarray(weight, np.float32)).astype(x.dtype)


def main(chip=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 768)).astype(np.float32)
    w = (1 + 0.1 * rng.standard_normal(768)).astype(np.float32)
    y, _ = nki.run_legacy(rmsnorm_kernel.fn, (x, w), chip=chip)
    err = float(np.max(np.abs(y - reference(x, w))))
    print(f"legacy rmsnorm {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
