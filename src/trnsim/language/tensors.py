"""Tensors as the language layer of both front ends makes them: new tensors in the
active run, an HBM tensor filled through SBUF, and the chip's tile-size constants."""
from __future__ import annotations

from ..chips import load_chip
from ..machine import runtime
from ..machine.runtime import _active, _local
from ..machine.tensor import MemoryRegion, NkiTensor

sbuf = MemoryRegion.sbuf
private_hbm = MemoryRegion.private_hbm


def _run():
    return runtime.active_run()


def ndarray(shape, dtype, buffer=sbuf, name="", address=None) -> NkiTensor:
    run = _local.run or (_active[-1] if _active else None)  # (active_run(), inline)
    if run is None:
        run = runtime.active_run()  # (raises: no kernel runs)
    return run.new_tensor(shape, dtype, buffer, name, address)


def fill_hbm(t: NkiTensor, value):
    """Fill an HBM tensor through SBUF (memset + DMA), as a kernel would."""
    from ..isa import dma_copy, memset
    rows = t.reshape((t.size,)) if t.ndim > 1 else t
    n = rows.shape[0]
    pmax = _run().chip.core.partitions
    f = -(-n // pmax)
    chunk = ndarray((pmax, f), t.dtype, sbuf, (t.name or "hbm") + "_fill")
    memset(dst=chunk, value=value)
    full = (n // f) * f
    if full:
        dma_copy(dst=rows[0:full].reshape((full // f, f)), src=chunk[0:full // f, :])
    if n - full:
        dma_copy(dst=rows[full:n].reshape((1, n - full)), src=chunk[0:1, 0:n - full])


class _TileSize:
    """Hardware tile size constants for the target chip (read when accessed)."""

    @property
    def _chip(self):
        run = runtime.current_run()
        return run.chip if run is not None else load_chip()

    pmax = property(lambda self: self._chip.core.partitions)
    psum_bank_fmax_bytes = property(lambda self: self._chip.core.psum_bank_bytes)
    psum_bank_fmax = property(lambda self: self._chip.core.psum_bank_bytes // 4)
    psum_fmax = psum_bank_fmax
    psum_num_banks = property(lambda self: self._chip.core.psum_banks)
    gemm_stationary_fmax = property(lambda self: self._chip.core.tensor.stationary_fmax)
    # The tile-size constant is one PSUM bank of fp32 (512) on every generation, as the
    # docs state (tiling-overview: `gemm_moving_fmax == 512`) and trn3 kernels assume;
    # NeuronCore-v4's larger nc_matmul moving limit (4096 fp32 / 8192 bf16, several
    # banks) is an instruction limit, checked by nc_matmul, not this constant.
    gemm_moving_fmax = property(lambda self: self._chip.core.psum_bank_bytes // 4)
    bn_stats_fmax = property(lambda self: 512)
    sbuf_size_bytes = property(
        lambda self: self._chip.core.sbuf_bytes_per_partition * self._chip.core.partitions)
    sbuf_fmax_bytes = property(lambda self: self._chip.core.sbuf_usable_bytes_per_partition)
    sbuf_fmax = property(lambda self: self._chip.core.sbuf_usable_bytes_per_partition // 4)
    total_available_sbuf_size = sbuf_fmax_bytes
    psum_min_align = property(lambda self: self._chip.core.psum_bank_bytes)
    sbuf_min_align = property(lambda self: self._chip.core.sbuf_align_bytes)


tile_size = _TileSize()
