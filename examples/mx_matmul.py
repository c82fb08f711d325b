"""MXFP8 matrix multiplication on NeuronCore-v4 (trn3): quantize on the Vector Engine,
multiply with on-the-fly dequantization on the Tensor Engine.

    result[M, N] ~= x[K, M].T @ y[K, N]      (K a multiple of 512)

An MX matmul contracts 512 values per instruction: 128 SBUF partitions x the 4 values
packed in each x4 element. The 4 values of an x4 element are taken 128 rows apart in the
logical matrix, so a [512, M] tile of x becomes an SBUF tile [128, M, 4] with
sbuf[p, m, j] = x[j*128 + p, m] (the "interleaved" layout); `quantize_mx` turns it into a
[128, M] float8_e4m3fn_x4 tile plus one e8m0 scale per 8 partitions x 4 values, stored in
the SBUF quadrant of its group. `nc_matmul_mx` consumes both data and scale tiles.

    python examples/mx_matmul.py          (runs on trn3)
"""
import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

P = 128  # partitions
TILE_K = 4 * P  # values contracted by one nc_matmul_mx
TILE_M, TILE_N = 128, 512


def _load_interleaved(src, k, cols, c0, dtype):
    """SBUF [128, cols, 4] tile with tile[p, c, j] = src[k*512 + j*128 + p, c0 + c]."""
    blk = src[k * TILE_K:(k + 1) * TILE_K, c0:c0 + cols]  # [512, cols] in HBM
    view = blk.reshape((4, P, cols)).permute((1, 2, 0))  # [128, cols, 4]
    tile = nl.ndarray((P, cols, 4), dtype=dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=view)
    return tile


@nki.jit
def mx_matmul_kernel(x, y):
    K, M = x.shape
    K_, N = y.shape
    assert K == K_ and K % TILE_K == 0 and M % TILE_M == 0 and N % TILE_N == 0
    result = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    for m in nl.affine_range(M // TILE_M):
        for n in nl.affine_range(N // TILE_N):
            acc = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.psum)
            for k in nl.sequential_range(K // TILE_K):
                xs = _load_interleaved(x, k, TILE_M, m * TILE_M, x.dtype)
                ys = _load_interleaved(y, k, TILE_N, n * TILE_N, y.dtype)
                xq = nl.ndarray((P, TILE_M), dtype=nl.float8_e4m3fn_x4, buffer=nl.sbuf)
                yq = nl.ndarray((P, TILE_N), dtype=nl.float8_e4m3fn_x4, buffer=nl.sbuf)
                # one scale tile holds both operands' scales: x's at offset 0 of each
                # quadrant, y's at offset 4
                scales = nl.ndarray((P, TILE_N), dtype=nl.float8_e8m0fnu, buffer=nl.sbuf)
                x_scale = scales[0:P, 0:TILE_M]
                y_scale = scales[4:P, 0:TILE_N]
                nisa.quantize_mx(dst=xq, src=xs, dst_scale=x_scale)
                nisa.quantize_mx(dst=yq, src=ys, dst_scale=y_scale)
                nisa.nc_matmul_mx(dst=acc, stationary=xq, moving=yq,
                                  stationary_scale=x_scale, moving_scale=y_scale)
            res = nl.ndarray((TILE_M, TILE_N), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=res, src=acc)
            nisa.dma_copy(dst=result[m * TILE_M:(m + 1) * TILE_M, n * TILE_N:(n + 1) * TILE_N],
                          src=res)
    return result


def _mx_e4m3fn(a):
    """NumPy MXFP8 (e4m3fn) quantize-dequantize along axis 0 in blocks of 32 values that
    are 128 rows apart inside each 512-row tile (8 partitions x 4 packed values), with the
    scale 2^(floor(log2 amax) - 7)."""
    import ml_dtypes
    a = np.asarray(a, dtype=np.float64)
    K, C = a.shape
    # [tile, j, p, c] -> groups over (8 consecutive p) x (4 j)
    t = a.reshape(K // TILE_K, 4, P // 8, 8, C)
    amax = np.abs(t).max(axis=(1, 3), keepdims=True)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(amax > 0, amax, 1.0)))
    scale = np.where(amax > 0, 2.0 ** np.maximum(e - 7, -127), 2.0 ** -127)
    q = np.clip(t / scale, -448, 448).astype(np.float32).astype(ml_dtypes.float8_e4m3fn)
    return (q.astype(np.float64) * scale).reshape(K, C)


def reference(x, y):
    """What the kernel computes: both operands MXFP8-quantized (e4m3fn), then an exact
    product rounded to fp32."""
    return (_mx_e4m3fn(x).T @ _mx_e4m3fn(y)).astype(np.float32)


def main(K=1024, M=128, N=512, seed=0):
    import ml_dtypes
    import os
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((K, M)).astype(ml_dtypes.bfloat16)
    y = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    old = os.environ.get("NEURON_PLATFORM_TARGET_OVERRIDE")
    os.environ["NEURON_PLATFORM_TARGET_OVERRIDE"] = "trn3"
    try:
        out = nki.simulate(mx_matmul_kernel)(x, y)
    finally:
        if old is None:
            del os.environ["NEURON_PLATFORM_TARGET_OVERRIDE"]
        else:
            os.environ["NEURON_PLATFORM_TARGET_OVERRIDE"] = old
    ref = reference(x, y)
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-4 * np.sqrt(K)), np.abs(out - ref).max()
    exact = x.astype(np.float64).T @ y.astype(np.float64)
    rel = np.abs(out - exact).max() / np.abs(exact).max()
    print(f"mx_matmul [{K}x{M}].T @ [{K}x{N}] in MXFP8: matches the MX reference; "
          f"error vs the bf16 product {rel:.2%} of its max -- OK")
    return out


if __name__ == "__main__":
    main()
