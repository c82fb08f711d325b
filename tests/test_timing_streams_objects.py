"""_Scheduler.track_ids (timing/scheduler.py) where the fields that pick a track are
equal values held by other objects: engine and queue names built at run time, equal
source locations that are other objects, a queue of None (qSyncIO), two cores and an
issue order that is not program order. Reference: the walk that asks `_track_of` for
every instruction in issue order."""
import random

from trnsim.chips import load_chip
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program
from trnsim.timing.scheduler import _Scheduler


class _Issue:
    def __init__(self, order):
        self.order, self.moved = order, {}


def _fresh(text):
    return "".join(list(text))  # an equal string, another object


def _program(seed):
    rng = random.Random(seed)
    shared = [SourceLocation("k.py", line) for line in (10, 11, 12)]
    instrs = []
    for i in range(400):
        core = rng.randrange(2)
        if rng.random() < 0.5:
            engine = _fresh(rng.choice(["vector", "scalar", "tensor", "gpsimd"]))
            queue = None
        else:
            engine = _fresh("dma") if rng.random() < 0.5 else "dma"
            queue = rng.choice([None, "qSyncIO", _fresh("qSyncIO"), "qPoolIO"])
        if rng.random() < 0.5:
            loc = rng.choice(shared)
        else:  # an equal location, another object
            loc = SourceLocation("k.py", rng.choice((10, 11, 12)))
        instrs.append(Instruction(i, core, engine, "op", (), (), loc, {}, queue))
    return Program("trn2", 2, instrs)


def _walk(program, chip, issue):
    ref = _Scheduler(program, chip, issue, {})
    ids = [None] * len(ref.instrs)
    for i in ref.order:
        ids[i] = ref._track_of(ref.instrs[i]).id
    return ids, ref


def _tracks(sched):
    return sorted((t.id, t.name, t.core, t.engine)
                  for t in [*sched.engines.values(), *sched.queues.values()])


def test_equal_fields_held_by_other_objects():
    chip = load_chip("trn2")
    for seed in range(4):
        program = _program(seed)
        order = list(range(len(program.instructions)))
        random.Random(seed + 100).shuffle(order)
        for issue in (_Issue(order), None):
            want, ref = _walk(program, chip, issue)
            got = _Scheduler(program, chip, issue, {})
            assert got.track_ids.tolist() == want
            assert _tracks(got) == _tracks(ref)
            # the fields decide, not the objects: 2 cores x 4 engines, and per core
            # queues qSyncIO (None too) and qPoolIO at 3 source lines
            assert len(_tracks(ref)) == 2 * 4 + 2 * 2 * 3


def test_no_instructions():
    got = _Scheduler(Program("trn2", 1, []), load_chip("trn2"), None, {})
    assert got.track_ids.tolist() == []
