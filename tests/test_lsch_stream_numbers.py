"""timing/scheduler.py's numberings with the hash table (the compiled paths,
TRNSIM_COMPILED=1) and with np.unique (=0): cores_and_opcodes numbers the opcode
objects as np.unique numbers their identities, and streams puts two instructions on
one stream exactly where both ways do, against np.unique's numbering written out."""
import random

import numpy as np
import pytest

from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program, identities
from trnsim.timing.scheduler import cores_and_opcodes, streams

pytest.importorskip("numba")


def _fresh(text):
    return "".join(list(text))  # an equal string, another object


def _program(seed):
    rng = random.Random(seed)
    shared = [SourceLocation("k.py", line) for line in (10, 11)]
    instrs = []
    for i in range(300):
        op = rng.choice(["tensor_copy", "memset", _fresh("memset"), "dma_copy"])
        if rng.random() < 0.5:
            engine, queue = rng.choice(["vector", "scalar", _fresh("vector")]), None
        else:
            engine = _fresh("dma") if rng.random() < 0.3 else "dma"
            queue = rng.choice([None, "qSyncIO", _fresh("qSyncIO")])
        loc = rng.choice(shared) if rng.random() < 0.7 else SourceLocation("k.py", 10)
        instrs.append(Instruction(i, rng.randrange(2), engine, op, (), (), loc, {}, queue))
    return Program("trn2", 2, instrs)


def _partition(keys) -> list:
    """Each item's group, numbered in order of first occurrence."""
    seen: dict = {}
    return [seen.setdefault(x, len(seen)) for x in keys]


@pytest.mark.parametrize("seed", range(3))
def test_opcode_codes_as_np_unique_numbers_them(monkeypatch, seed):
    for flag in ("1", "0"):
        monkeypatch.setenv("TRNSIM_COMPILED", flag)
        program = _program(seed)
        _, head, inverse = np.unique(identities([i.opcode for i in program.instructions]),
                                     return_index=True, return_inverse=True)
        _, code, names = cores_and_opcodes(program)
        assert code.tolist() == inverse.reshape(-1).tolist()
        assert [id(x) for x in names] == [id(program.instructions[i].opcode)
                                         for i in head.tolist()]


@pytest.mark.parametrize("seed", range(3))
def test_streams_same_partition_both_ways(monkeypatch, seed):
    got = []
    for flag in ("1", "0"):
        monkeypatch.setenv("TRNSIM_COMPILED", flag)
        program = _program(seed)  # (afresh: no numbers kept from the other way)
        instrs = program.instructions
        cores = np.array([i.core for i in instrs], np.int64)
        got.append(_partition(streams(program, [i.engine for i in instrs], cores).tolist()))
    # the reference: core and engine object, or for a DMA its queue and location objects
    program = _program(seed)
    want = _partition([(i.core, "dma", id(i.queue), id(i.location)) if i.engine == "dma"
                       else (i.core, id(i.engine)) for i in program.instructions])
    assert got[0] == got[1] == want
