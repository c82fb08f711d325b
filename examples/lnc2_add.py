"""Elementwise addition, c = a + b, on a logical NeuronCore of two physical cores
(LNC=2), in current-NKI style.

Launched as `kernel[2](a, b)`, the kernel body runs once per core; `nl.program_id()`
(0 or 1) picks the half of the rows a core handles and `nl.num_programs()` says how
many cores share the work (1 when launched as `kernel(a, b)`, where one core does all
rows). Each core tiles its rows by 128 partitions, adds on its own Vector Engine and
writes its half of the shared-HBM output. A `nisa.core_barrier` on the output then
makes both halves visible to both cores before the kernel returns (the pattern of the
core_barrier documentation; core_barrier needs NeuronCore-v3+, so on trn1 run LNC=1).

    python examples/lnc2_add.py [trn2|trn3]
"""
import sys

import numpy as np

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl


@nki.jit
def lnc2_add_kernel(a_input, b_input):
    assert a_input.shape == b_input.shape and a_input.dtype == b_input.dtype
    c_output = nl.ndarray(a_input.shape, dtype=a_input.dtype, buffer=nl.shared_hbm)
    rows, cols = a_input.shape
    P = nl.tile_size.pmax

    n_cores = nl.num_programs()
    core = nl.program_id()
    rows_per_core = (rows + n_cores - 1) // n_cores
    first = core * rows_per_core
    last = min(rows, first + rows_per_core)

    for r0 in range(first, last, P):
        p = min(P, last - r0)
        a_tile = nl.ndarray((p, cols), dtype=a_input.dtype, buffer=nl.sbuf)
        b_tile = nl.ndarray((p, cols), dtype=b_input.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=a_tile, src=a_input[r0:r0 + p, :])
        nisa.dma_copy(dst=b_tile, src=b_input[r0:r0 + p, :])
        c_tile = nl.ndarray((p, cols), dtype=a_input.dtype, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=c_tile, data1=a_tile, data2=b_tile, op=nl.add)
        nisa.dma_copy(dst=c_output[r0:r0 + p, :], src=c_tile)

    if n_cores > 1:
        # Both halves of c_output are written once every core passes this point.
        nisa.core_barrier(data=c_output, cores=(0, 1))
    return c_output


def reference(a, b):
    """a + b computed in fp32 and rounded once to the input dtype."""
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(a.dtype)


def main(chip=None):
    """Run with LNC=2 on `chip` (default: $NEURON_PLATFORM_TARGET_OVERRIDE, else trn2)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 512)).astype(np.float32)
    b = rng.standard_normal((384, 512)).astype(np.float32)
    sim = nki.Simulated(lnc2_add_kernel[2], chip=chip)
    c = sim(a, b)
    err = float(np.max(np.abs(c - reference(a, b))))
    per_core = [sum(1 for i in sim.last_run.program if i.core == k) for k in (0, 1)]
    print(f"lnc2_add {a.shape} {a.dtype} on 2 cores: max abs error vs NumPy = {err:.3g}; "
          f"instructions per core {per_core}")
    return err


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
