"""_Scheduler.track_ids (timing/scheduler.py), the compiled scheduler's tracks made once
per engine or DMA site, against the walk that asks `_track_of` for every instruction in
issue order: the same track per instruction, the same ids, names and cores."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
from kernel_helpers import tutorial_run
from test_timing_compiled import mixed
from trnsim.chips import load_chip
from trnsim.timing.scheduler import _Scheduler


def _tracks(sched):
    return sorted((t.id, t.name, t.core, t.engine)
                  for t in [*sched.engines.values(), *sched.queues.values()])


def _same_tracks(program, chip_name):
    chip = load_chip(chip_name)
    for issue in (getattr(program, "issue", None), None):
        ref = _Scheduler(program, chip, issue, {})
        walked = [None] * len(ref.instrs)
        for i in ref.order:
            walked[i] = ref._track_of(ref.instrs[i]).id
        got = _Scheduler(program, chip, issue, {})
        assert got.track_ids.tolist() == walked
        assert _tracks(got) == _tracks(ref)
        assert len({t[1:3] for t in _tracks(got)}) > 2  # (several tracks to tell apart)


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_kernel(seed, chip):
    x = np.zeros((128, 64 * 12), ml_dtypes.bfloat16)
    w = np.zeros((128, 64), ml_dtypes.bfloat16)
    _, run = trnsim.run_kernel(mixed, (x, w), {"seed": seed}, chip=chip, numerics=False)
    _same_tracks(run.program, chip)


@pytest.mark.parametrize("variant", ["tiled", "block_mnk"])
def test_matmul_tutorial(variant):
    _same_tracks(tutorial_run(variant, "trn1").program, "trn1")
