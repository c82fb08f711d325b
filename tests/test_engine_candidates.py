"""Engine candidates of instructions whose engine the kernel left to the compiler
(src/trnsim/isa/engines.py): `attrs["engines"]`, the instruction's own engine first,
per the ISA docs' engine rules; none on pinned instructions; and a sensible cost on
every candidate engine (CostModel.compute after dataclasses.replace(engine=...))."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.timing.costs import CostModel


def record(body, chip):
    """The compute instructions `body()` records, in order."""
    def k():
        body()

    _, run = trnsim.run_kernel(k, (), chip=chip, numerics=False)
    return run, [i for i in run.program if i.engine in ("vector", "scalar", "gpsimd")]


def sb(shape=(128, 256), dtype=np.float32):
    return nl.ndarray(shape, dtype, buffer=nl.sbuf)


def ps(shape=(128, 256), dtype=np.float32):
    return nl.ndarray(shape, dtype, buffer=nl.psum)


def _body():
    x, y, d = sb(), sb(), sb()
    i, j = sb(dtype=np.int32), sb(dtype=np.int32)
    p = ps()
    nisa.memset(dst=x, value=1.0)                                     # 0
    nisa.memset(dst=p, value=0.0)                                     # 1 PSUM: no GpSimd
    nisa.tensor_copy(dst=d, src=x)                                    # 2
    nisa.tensor_copy(dst=d, src=p)                                    # 3 PSUM source
    nisa.tensor_tensor(dst=d, data1=x, data2=x, op=nl.multiply)       # 4
    nisa.tensor_tensor(dst=d, data1=x, data2=x, op=nl.subtract)       # 5 Vector only
    nisa.tensor_tensor(dst=d, data1=x, data2=p, op=nl.add)            # 6 PSUM operand
    nisa.tensor_scalar(dst=d, data=x, op0=nl.multiply, operand0=2.0,
                       op1=nl.add, operand1=1.0)                      # 7
    nisa.tensor_scalar(dst=d, data=x, op0=nl.maximum, operand0=0.0)   # 8 Vector only
    nisa.tensor_scalar(dst=d, data=x, op0=nl.rsqrt, operand0=0.0)     # 9
    nisa.memset(dst=i, value=3)                                       # 10
    nisa.memset(dst=j, value=4)                                       # 11
    nisa.tensor_tensor(dst=i, data1=i, data2=j, op=nl.add)            # 12 int32: GpSimd
    nisa.tensor_copy(dst=j, src=i)                                    # 13 int32 copy
    nisa.tensor_scalar(dst=i, data=j, op0=nl.bitwise_and, operand0=1)  # 14 bitvec
    nisa.tensor_copy(dst=d, src=x, engine=nisa.vector_engine)         # 15 pinned
    nisa.tensor_tensor(dst=d, data1=x, data2=x, op=nl.add,
                       engine=nisa.gpsimd_engine)                     # 16 pinned
    nisa.activation(dst=d, op=nl.exp, data=x)                         # 17 Scalar only
    r = nl.add(x, y)                                                  # 18 nl.* arithmetic
    del r


V, S, G = "vector", "scalar", "gpsimd"
EXPECTED = {  # index: {chip generation: candidates}
    0: {2: (V, G), 3: (V, G), 4: (V, G)},
    1: {2: (V,), 3: (V,), 4: (V,)},
    2: {2: (V, G), 3: (V, S, G), 4: (V, S, G)},
    3: {2: (V,), 3: (V, S), 4: (V, S)},
    4: {2: (V, G), 3: (V, G), 4: (V, G)},
    5: {2: (V,), 3: (V,), 4: (V,)},
    6: {2: (V,), 3: (V,), 4: (V,)},
    7: {2: (V,), 3: (V, S), 4: (V, S)},
    8: {2: (V,), 3: (V,), 4: (V,)},
    9: {2: (V, G), 3: (V, G), 4: (V, S, G)},
    10: {2: (V, G), 3: (V, G), 4: (V, G)},
    11: {2: (V, G), 3: (V, G), 4: (V, G)},
    12: {2: (G,), 3: (G,), 4: (G,)},
    13: {2: (V, G), 3: (V, G), 4: (V, G)},  # never Scalar: int32 through fp32
    14: {2: (V,), 3: (V,), 4: (V,)},
    15: None, 16: None, 17: None,
    18: {2: (V, G), 3: (V, G), 4: (V, G)},
}


@pytest.mark.parametrize("chip,gen", [("trn1", 2), ("trn2", 3), ("trn3", 4)])
def test_candidates_follow_the_isa_engine_rules(chip, gen):
    _, ins = record(_body, chip)
    assert len(ins) == len(EXPECTED)
    for k, i in enumerate(ins):
        want = EXPECTED[k] and EXPECTED[k][gen]
        assert i.attrs.get("engines") == want, (k, i.opcode, i.attrs.get("engines"))
        if want:  # the compiler model may have moved it, but only to a candidate
            assert i.engine in want


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
def test_every_candidate_engine_gets_a_sensible_cost(chip):
    run, ins = record(_body, chip)
    cm = CostModel(run.chip)
    checked = 0
    for i in ins:
        for e in i.attrs.get("engines", ()):
            moved = dataclasses.replace(i, engine=e)
            ns, terms = cm.compute(moved)
            spec = getattr(run.chip.core, e)
            n = terms["N"]
            # at least the engine's floor (or N cycles), at most a handful of passes
            lo = min(spec.min_ii_cycles, n) / spec.clock_hz * 1e9
            hi = (max(spec.min_ii_cycles, 8 * n) + 200) / spec.clock_hz * 1e9
            assert np.isfinite(ns) and lo <= ns <= hi, (i.opcode, e, ns, terms)
            assert terms["clock_hz"] == spec.clock_hz
            checked += 1
    assert checked > 20


def test_gpsimd_rsqrt_candidate_costs_four_times_vector_rate():
    run, ins = record(lambda: nisa.tensor_scalar(dst=sb(), data=sb(), op0=nl.rsqrt,
                                                  operand0=0.0), "trn2")
    (i,) = [x for x in ins if x.opcode == "tensor_scalar"]
    cm = CostModel(run.chip)
    _, g = cm.compute(dataclasses.replace(i, engine="gpsimd"))
    _, v = cm.compute(i)
    assert g["cycles"] == 4 * 256 and v["cycles"] == 256
