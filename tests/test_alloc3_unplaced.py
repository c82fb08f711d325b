"""The compiled allocation (trnsim/compiler/compiled_allocation.py) makes an allocated
program's physical accesses when first read: until then its instructions hold their
virtual reads and writes (`_Unplaced`), which the cost model reads
(machine/record.py `held_reads`); any read of the fields or of a whole instruction
makes them, the Python allocator's, for every instruction of the program."""
import copy
import gc
import dataclasses
import pickle

import pytest

from trnsim.chips import load_chip
from trnsim.compiler import allocation
from trnsim.machine.record import Instruction, Program, held_reads, held_writes
from trnsim.timing.costs import cost_model

pytest.importorskip("numba")
from test_allocation_compiled import _copy, _random_program  # noqa: E402

from trnsim.compiler import compiled_allocation  # noqa: E402


def _pair(seed_from=0):
    """(a random program the compiled allocation takes, each instruction twice (the
    second a copy that holds the same Access objects: both get the same physical
    ones), the Python allocator's result, the compiled one, not read yet)."""
    for seed in range(seed_from, seed_from + 30):
        program = _twice(_random_program(seed))
        got = compiled_allocation.allocate_compiled(_copy(program))
        if got is not None and _unplaced(got):
            return program, allocation._Allocator(_copy(program)).run(), got
    raise AssertionError("no random program allocated")


def _twice(program):
    instrs = []
    for ins in program.instructions:
        instrs += [copy.copy(ins), copy.copy(ins)]
    for i, ins in enumerate(instrs):
        ins.index = i
    allocs = {k: dataclasses.replace(a, declared_at=2 * a.declared_at)
              for k, a in program.allocations.items()}
    return Program(program.chip, program.lnc, instrs, allocs, None, [])


def _unplaced(program) -> list:
    return [i for i in program.instructions if type(i) is not Instruction]


def _fields(program) -> list:
    return [(x.index, x.reads, x.writes, x.attrs) for x in program.instructions]


def test_accesses_are_made_at_the_first_read_for_the_whole_program():
    _, want, got = _pair()
    pending = _unplaced(got)
    assert all(isinstance(i, Instruction) for i in pending)
    # held: the virtual accesses, equal to the physical ones but for lo and hi
    virtual = [(held_reads(i), held_writes(i)) for i in got.instructions]
    pending[-1].writes  # noqa: B018 (one read)
    assert not _unplaced(got)
    assert _fields(got) == _fields(want)
    moved = 0
    for (reads, writes), ins in zip(virtual, got.instructions):
        for v, p in zip(reads + writes, ins.reads + ins.writes):
            assert v[:11] == p[:11] and v[13:] == p[13:]
            moved += v[11:13] != p[11:13]
    assert moved


@pytest.mark.parametrize("read", [
    lambda got, want: got.instructions[-1] == want.instructions[-1],
    lambda got, want: repr(got.instructions[-1]),
    lambda got, want: str(got.instructions[-1]),
    lambda got, want: copy.copy(got.instructions[-1]),
    lambda got, want: pickle.dumps(got.instructions),
])
def test_reading_a_whole_instruction_makes_them(read):
    _, want, got = _pair()
    read(got, want)
    assert not _unplaced(got)
    assert _fields(got) == _fields(want)


def test_equality_repr_pickle_and_copies_as_of_instructions():
    _, want, got = _pair()
    _, _, made = _pair()
    made.instructions[0].reads  # noqa: B018 (made now)
    assert _unplaced(got)
    # the pickle made while they are pending: the same bytes as of the ones made
    assert pickle.dumps(got.instructions) == pickle.dumps(made.instructions)
    _, _, got = _pair()
    assert got.instructions == want.instructions
    _, _, got = _pair()
    assert [repr(i) for i in got.instructions] == [repr(i) for i in want.instructions]
    _, _, got = _pair()
    ins = _unplaced(got)[0]
    twin = copy.copy(ins)
    assert type(twin) is Instruction and twin == ins
    _, _, got = _pair()
    ins = _unplaced(got)[0]
    other = dataclasses.replace(ins, reads=(), writes=())
    assert type(other) is Instruction and other.reads == () and other.index == ins.index


def test_setting_a_field_makes_them_first():
    _, want, got = _pair()
    ins = _unplaced(got)[0]
    at = got.instructions.index(ins)
    ins.reads = ()
    assert not _unplaced(got) and ins.reads == ()
    assert ins.writes == want.instructions[at].writes


def test_pricing_reads_the_held_accesses_and_prices_as_the_physical_ones():
    program = _random_program(0)
    for ins in program.instructions[::3]:  # (some transfers too)
        ins.engine, ins.opcode = "dma", "dma_copy"
    got = compiled_allocation.allocate_compiled(_copy(program))
    want = allocation._Allocator(_copy(program)).run()
    model = cost_model(load_chip("trn2"))
    pending = len(_unplaced(got))
    priced = [_price(model, i) for i in got.instructions]
    assert pending and len(_unplaced(got)) == pending
    fresh = cost_model(load_chip("trn1"))  # (another model: nothing from the memos)
    assert priced == [_price(model, i) for i in want.instructions]
    assert [_price(fresh, i) for i in got.instructions] == \
        [_price(fresh, i) for i in want.instructions]


def _price(model, ins):
    if ins.engine == "dma":
        return model.dma.cost(ins)
    return model.compute(ins)


def test_listed_elsewhere_each_is_made_when_read_and_shares_the_accesses():
    """The program gone, or its list changed: each instruction is made when read."""
    for change in ("drop the program", "reverse its list"):
        program, want, got = _pair()
        instrs = got.instructions
        if change == "drop the program":
            del got
        else:
            instrs.reverse()
            instrs = instrs[::-1]
        first = _unplaced_of(instrs)[0]
        first.reads  # noqa: B018 (made now)
        assert type(first) is Instruction
        assert len(_unplaced_of(instrs)) > 1  # (the others still pending)
        got = [(x.index, x.reads, x.writes, x.attrs) for x in instrs]
        assert got == _fields(want)
        # one Access per (virtual Access, lo, hi), as when all are made at once
        _, _, made = _pair()
        made.instructions[0].reads  # noqa: B018
        assert _sharing(instrs) == _sharing(made.instructions)
        assert _sharing(instrs) != list(range(len(_sharing(instrs))))  # (some shared)


def _unplaced_of(instrs) -> list:
    return [i for i in instrs if type(i) is not Instruction]


def _sharing(instrs) -> list:
    """Each access as the number of the first access that is the same object."""
    flat = [a for i in instrs for a in i.reads + i.writes]
    first: dict = {}
    return [first.setdefault(id(a), n) for n, a in enumerate(flat)]


def test_a_dropped_programs_instructions_die_with_it_and_let_go_of_the_move():
    """No cycle: the pending move holds the program weakly, and no instruction; the
    last of them dying lets go of what it kept."""
    gc.disable()
    try:
        _, _, got = _pair()
        pending = type(_unplaced(got)[0])._pending
        assert pending.rows is not None
        del got
        assert not [o for o in gc.get_objects(0)
                    if isinstance(o, compiled_allocation._Unplaced)]
        assert pending.rows is None
    finally:
        gc.enable()


def test_a_timing_only_profile_leaves_them_pending(monkeypatch):
    """Nothing a profile runs reads the allocated operands (the schedulers read the
    access columns, the cost model the held ones): read after, they are the Python
    passes' and the timeline theirs."""
    import numpy as np

    import trnsim
    from benchmarks.fidelity import strided_stores

    x = np.zeros((128, 8 * 64), np.float32)
    runs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("TRNSIM_COMPILED", flag)
        runs[flag] = trnsim.profile(strided_stores, x, numerics=False, cache=False)
    lazy, python = runs["1"], runs["0"]
    assert len(_unplaced(lazy.program)) == len(lazy.program.instructions)
    assert lazy.total_time == python.total_time
    assert _fields(lazy.program) == _fields(python.program)
