"""Without numerics, nc_matmul and the Tensor Engine's nc_transpose record their reads,
their write and its accumulation flag by a short path (nc_matmul's operands described
at once, isa/matmul.py psum_store's timing-only exit): their records must be those of a
run with numerics on (which computes the values), for accumulation groups that start,
go on, are cut by other writes, and strided or partial dst views that the short path
leaves to psum_store's general path."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

P = 128


def _kernel(k, v):
    kT = nl.ndarray((P, 1024), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=kT, src=k)
    vs = nl.ndarray((P, 4, P), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=vs, src=v)
    for it in range(3):
        s = nl.ndarray((P, 1024), dtype=nl.float32, buffer=nl.psum)
        for c in range(0, 1024, 512):
            nisa.nc_matmul(dst=s[:, c:c + 512], stationary=kT[:, 0:P], moving=kT[:, c:c + 512])
        # accumulate onto half of a group's box, then over all of it (partly in)
        nisa.nc_matmul(dst=s[:, 0:256], stationary=kT[:, 0:P], moving=kT[:, 0:256])
        nisa.nc_matmul(dst=s[:, 0:512], stationary=kT[:, 0:P], moving=kT[:, 0:512])
        # a strided dst, and an explicit accumulate
        nisa.nc_matmul(dst=s[:, 512:1024:2], stationary=kT[:, 0:P], moving=kT[:, 0:256])
        nisa.nc_matmul(dst=s[:, 512:768], stationary=kT[:, 0:P], moving=kT[:, 0:256],
                       accumulate=it == 1)
        p = nl.ndarray((P, 512), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_copy(dst=p, src=s[:, 0:512])
        pT = nl.ndarray((P, 512), dtype=nl.bfloat16, buffer=nl.psum)
        for i in range(4):
            nisa.nc_transpose(dst=pT[:, i * P:(i + 1) * P], data=p[:, i * P:(i + 1) * P])
        pTs = nl.ndarray((P, 512), dtype=nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_copy(dst=pTs, src=pT)
        o = nl.ndarray((P, P), dtype=nl.float32, buffer=nl.psum)
        for i in range(4):
            nisa.nc_matmul(dst=o, stationary=pTs[:, i * P:(i + 1) * P], moving=vs[:, i, :])
        nisa.memset(dst=o[:, 0:64], value=0.0)  # cuts the group in half
        nisa.nc_matmul(dst=o, stationary=pTs[:, 0:P], moving=vs[:, 0, :])
        nisa.nc_matmul(dst=o[:, 0:64], stationary=pTs[:, 0:P], moving=vs[:, 0, 0:64])


def _record(chip, numerics):
    rng = np.random.default_rng(0)
    k = rng.standard_normal((P, 1024)).astype(ml_dtypes.bfloat16)
    v = rng.standard_normal((P, 4, P)).astype(ml_dtypes.bfloat16)
    run = trnsim.run_kernel(_kernel, (k, v), chip=chip, numerics=numerics)[1]
    return [(i.opcode, i.engine, i.reads, i.writes, i.attrs)
            for i in run.program.instructions]


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_timing_only_matmul_records_match_numerics_on(chip):
    fast = _record(chip, numerics=False)
    full = _record(chip, numerics=True)
    assert len(fast) == len(full) == 2 + 3 * 19
    assert fast == full
    for r in fast:
        if r[0] == "nc_matmul":
            assert [k for k in r[4] if k in ("accumulate", "is_moving_onezero")] == \
                ["is_moving_onezero", "accumulate"]  # (the attrs in their order)
    accumulated = [r[4]["accumulate"] for r in fast if r[0] == "nc_matmul"]
    assert {True, False, "partial"} <= set(accumulated)
