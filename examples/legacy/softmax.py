"""Row-wise softmax, y = exp(x - max(x)) / sum(exp(x - max(x))), in legacy NKI style
with return-style `nki.isa` instructions.

Rows are tiled by 128 partitions (`nl.arange` indices; the last row tile is masked
with `row < rows`), each row tile loaded as fp32 and kept whole along the free axis:
  1. -max per row on the Vector Engine (`nisa.tensor_reduce(np.max, ..., negate=True)`),
  2. exp(x - max) on the Scalar Engine with the row sums accumulated on the way
     (`nisa.activation_reduce(op=nl.exp, bias=-max, reduce_op=np.add, reduce_res=...)`),
  3. 1 / sum (`nisa.reciprocal`),
  4. exp * (1 / sum) (`nisa.tensor_scalar`), rounded once to the output dtype.

    python examples/legacy/softmax.py [trn1|trn2|trn3]
"""
import sys

import numpy as np

import trnsim.legacy.isa as nisa
import trnsim.legacy.jit as nki
import trnsim.legacy.language as nl


@nki.jit
def softmax_kernel(x):
    rows, cols = x.shape
    out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
    P = nl.tile_size.pmax

    i_p = nl.arange(P)[:, None]
    i_f = nl.arange(cols)[None, :]
    for r in nl.affine_range((rows + P - 1) // P):
        row = r * P + i_p
        live = row < rows
        xt = nl.load(x[row, i_f], mask=live, dtype=nl.float32)
        neg_max = nisa.tensor_reduce(np.max, data=xt, axis=(1,), negate=True, keepdims=True,
                                     mask=live)
        row_sum = nl.ndarray((P, 1), dtype=nl.float32, buffer=nl.sbuf)
        e = nisa.activation_reduce(op=nl.exp, data=xt, bias=neg_max, reduce_op=np.add,
                                   reduce_res=row_sum, mask=live)
        inv_sum = nisa.reciprocal(row_sum, mask=live)
        y = nisa.tensor_scalar(e, np.multiply, inv_sum, dtype=x.dtype, mask=live)
        nl.store(out[row, i_f], value=y, mask=live)
    return out


def reference(x):
    x32 = np.asarray(x, np.float32)
    e = np.exp(x32 - x32.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def main(chip=None):
    rng = np.random.default_rng(0)
    x = (3 * rng.standard_normal((300, 640))).astype(np.float32)
    y, _ = nki.run_legacy(softmax_kernel.fn, (x,), chip=chip)
    err = float(np.max(np.abs(y - reference(x))))
    print(f"legacy softmax {x.shape} {x.dtype}: max abs error vs NumPy = {err:.3g}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
