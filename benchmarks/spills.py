"""Kernels whose tensors do not fit on chip as declared, for `make bench`: what the
compiler model (trnsim.compiler.allocation) makes of them, with spill bytes beside the
time. Written in the style of generated kernels: every intermediate one block-dimension
tensor over the whole problem, placement left to the compiler.
"""
from __future__ import annotations

import time

import numpy as np

from trnsim.legacy import isa as nisa
from trnsim.legacy import language as nl
from trnsim.legacy.jit import run_legacy
from trnsim.timing import schedule


def generated_blocks(x):
    """tanh(x) for x [16, 128, 8192] fp32 through two block tensors of 512 KiB per
    partition each; every block is used within one iteration."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    xs = nl.ndarray((16, 4, nl.par_dim(128), 2048), dtype=np.float32, buffer=nl.sbuf,
                    name="xs")
    ys = nl.ndarray((16, 4, 4, nl.par_dim(128), 512), dtype=np.float32, buffer=nl.sbuf,
                    name="ys")
    ip, i2k, i512 = nl.arange(128)[:, None], nl.arange(2048)[None, :], nl.arange(512)[None, :]
    for i in nl.affine_range(16):
        for j in nl.affine_range(4):
            xs[i, j, ip, i2k] = nl.load(x[i, ip, 2048 * j + i2k])
            for k in nl.affine_range(4):
                ys[i, j, k, ip, i512] = nisa.activation(op=nl.tanh,
                                                        data=xs[i, j, ip, 512 * k + i512])
                nl.store(out[i, ip, 2048 * j + 512 * k + i512], value=ys[i, j, k, ip, i512])
    return out


def two_pass(x):
    """exp(x) * 2 for x [16, 128, 8192] fp32: the first loop keeps all 16 blocks of
    exp(x) (512 KiB per partition) for the second."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    ys = nl.ndarray((16, nl.par_dim(128), 8192), dtype=np.float32, buffer=nl.sbuf,
                    name="ys")
    for i in nl.affine_range(16):
        ys[i] = nisa.activation(op=nl.exp, data=nl.load(x[i]))
    for i in nl.affine_range(16):
        nl.store(out[i], value=nl.multiply(ys[i], 2.0))
    return out


KERNELS = {"generated block tensors (tanh)": generated_blocks,
           "two-pass (exp, then scale)": two_pass}


def job_spills(chips=("trn2", "trn3")) -> list[dict]:
    """Record (numerics off) and schedule each kernel on each chip."""
    rows = []
    x = np.zeros((16, 128, 8192), np.float32)
    for label, fn in KERNELS.items():
        for chip in chips:
            c0 = time.process_time()
            _, run = run_legacy(fn, (x,), chip=chip, numerics=False)
            tl = schedule(run.program, run.chip)
            plan = run.program.memory
            rows.append({"kernel": label, "chip": chip, "instructions": len(run.program),
                         "ms": tl.total_time / 1e6,
                         "spill_save_bytes": plan.spill_bytes("save"),
                         "spill_reload_bytes": plan.spill_bytes("reload"),
                         "peak_sbuf": plan.peak[("sbuf", 0)],
                         "sbuf_capacity": plan.capacity[("sbuf", 0)],
                         "cpu_s": time.process_time() - c0})
    return rows
