"""A profile leaves no cyclic garbage holding its record. Python's cyclic collector
does not run on its own after a profile (machine/gc_pause.py moves what the schedulers
allocated to the oldest generation, whose full collections then wait), so a cycle
that reaches the instructions keeps every profile's record alive in a loop of profiles
(a sweep): +14-23 MiB a run on the strided-store kernel, never given back."""
import gc

import numpy as np
import pytest

import trnsim
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.machine.access import Access
from trnsim.machine.record import Instruction
from trnsim.profile.profile import Profile

from benchmarks.fidelity import strided_stores


def _strided():
    return trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 512), np.float32),),
                             chip="trn2", numerics=False)[1]


def _tutorial():
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    return run_legacy(tiled, (np.zeros((1024, 256), np.float32),
                              np.zeros((1024, 1024), np.float32)), {}, chip="trn1",
                      numerics=False)[1]


@pytest.mark.parametrize("go", [_strided, _tutorial])
def test_a_profile_leaves_no_cycle_holding_its_record(go):
    p = Profile.from_run(go())
    p.summary, p.insights  # noqa: B018 - the summary and insights run too
    del p
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        p = Profile.from_run(go())
        p.summary, p.insights  # noqa: B018
        del p
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, (Instruction, Access))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert not held, f"{len(held)} instructions and accesses in cycles"
