"""A memory plan the compiled allocator makes keeps its placements as columns
(trnsim.compiler.plan.PlacementColumns) and makes the Placement objects when they are
first read: the same placements, in the same order, as the Python allocator's
(trnsim.compiler.allocation, which appends them one at a time), the same list each read,
and the same after a pickle round trip (the profile cache's)."""
import copy
import pickle

import numpy as np
import pytest

import trnsim
import trnsim.compiler as compiler
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.compiler import allocation
from trnsim.machine.record import Program

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation  # noqa: E402


def _copy(p: Program) -> Program:
    return Program(p.chip, p.lnc, [copy.copy(i) for i in p.instructions], p.allocations,
                   None, list(p.fences))


def _recorded(monkeypatch, kernel, args) -> Program:
    """The program `kernel` records, before the compiler model's allocation."""
    monkeypatch.setenv("TRNSIM_COMPILED", "0")
    seen = []

    def grab(program):
        seen.append(_copy(program))
        return allocation.allocate(program)

    monkeypatch.setattr(compiler, "allocate", grab)
    trnsim.run_kernel(kernel, args, chip="trn2", numerics=False)
    return seen[0]


def _matmul(lhsT, rhs):
    """Blocks in SBUF and PSUM, several placements per block's tensor."""
    K, M = lhsT.shape
    result = nl.ndarray((M, rhs.shape[1]), dtype=lhsT.dtype, buffer=nl.hbm)
    for n in nl.affine_range(rhs.shape[1] // 512):
        acc = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
        for k in nl.affine_range(K // 128):
            a = nl.ndarray((128, 128), dtype=lhsT.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, 0:128])
            b = nl.ndarray((128, 512), dtype=rhs.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, n * 512:(n + 1) * 512])
            nisa.nc_matmul(dst=acc, stationary=a, moving=b)
        out = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=out, src=acc)
        nisa.dma_copy(dst=result[0:128, n * 512:(n + 1) * 512], src=out)
    return result


def _explicit(x):
    """An explicitly placed tensor (its placement comes first) beside automatic ones."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    fixed = nl.ndarray((128, 64), nl.float32, address=512, name="fixed")
    nisa.dma_copy(dst=fixed, src=x[:, 0:64])
    for i in range(5):
        t = nl.ndarray((128, 64), nl.float32, name=f"t{i}")
        nisa.dma_copy(dst=t, src=x[:, i * 64:(i + 1) * 64])
        nisa.tensor_tensor(dst=t, data1=t, data2=fixed, op=nl.add)
        nisa.dma_copy(dst=out[:, i * 64:(i + 1) * 64], src=t)
    return out


KERNELS = {
    "matmul": (_matmul, (np.zeros((512, 128), np.float32), np.zeros((512, 1536), np.float32))),
    "explicit": (_explicit, (np.zeros((128, 320), np.float32),)),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_columns_make_the_python_allocators_placements(monkeypatch, name):
    program = _recorded(monkeypatch, *KERNELS[name])
    want = allocation._Allocator(_copy(program)).run().memory
    got = compiled_allocation.allocate_compiled(_copy(program))
    assert got is not None, "fell back"
    plan = got.memory
    assert want.placement_columns is None and plan.placement_columns is not None
    assert plan._placements is None  # not made until read
    assert len(plan.placement_columns) == len(want.placements) > 1
    placements = plan.placements
    assert placements == want.placements
    assert all(type(v) is int for p in placements for v in (p.alloc, p.block, p.start,
                                                            p.size, p.first, p.last))
    assert plan.placements is placements  # read twice: the same objects
    assert all(a is b for a, b in zip(plan.placements, placements))
    assert plan == want and plan.tensors() == want.tensors()
    again = pickle.loads(pickle.dumps(plan))
    assert again._placements is None and again.placements == want.placements
    assert again == want
