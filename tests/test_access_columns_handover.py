"""The compiled allocation pass (trnsim/compiler/compiled_allocation.py) hands the
program it makes over with its access columns (timing/access_columns.py `moved`, kept
as `_access_columns`), so the list and timing schedulers do not read the accesses
again: they must equal access_columns.build over the allocated instructions, field by
field (test_allocation_compiled.py's `_check` checks this on its kernels; here
`allocate`'s hand-over on random programs); where the pass falls back to the Python
allocator (spills) the columns are built on first use. Also what the pass keeps of the
record's memory: a virtual Access met several times at the same physical bytes becomes
one physical Access, and one int object per byte value."""

import pytest

from trnsim.compiler import allocation
from trnsim.machine.errors import CapacityError
from trnsim.machine.record import Instruction, Program
from trnsim.timing import access_columns

pytest.importorskip("numba")
from test_allocation_compiled import _copy, _random_program, same_columns  # noqa: E402

from trnsim.compiler import compiled_allocation  # noqa: E402


def _handed_over(program: Program, monkeypatch) -> Program:
    """The program `allocate` makes of `program` on the compiled path, after checking
    that its columns are handed over and equal build()'s."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    got = allocation.allocate(_copy(program))
    cols = got.__dict__.get("_access_columns")
    assert cols is not None, "not handed over"
    same_columns(cols, access_columns.build(got.instructions))
    assert access_columns.access_columns(got) is cols
    return got


def test_random_programs_and_fallbacks(monkeypatch):
    """Where the compiled pass declines (evictions), the Python allocator's program
    has no columns until asked, and then build()'s."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    handed = fell = 0
    for seed in range(80):
        program = _random_program(seed)
        if compiled_allocation.allocate_compiled(_copy(program)) is None:
            try:
                got = allocation.allocate(_copy(program))
            except CapacityError:
                continue
            assert "_access_columns" not in got.__dict__
            cols = access_columns.access_columns(got)
            same_columns(cols, access_columns.build(got.instructions))
            fell += 1
        else:
            _handed_over(program, monkeypatch)
            handed += 1
    assert handed >= 20 and fell >= 3, (handed, fell)


def _fits_and_writes_a_block_first(p: Program) -> bool:
    a = p.instructions[0].writes[0]
    return (a.alloc >= 0 and not p.allocations[a.alloc].explicit
            and compiled_allocation.allocate_compiled(_copy(p)) is not None)


def test_a_shared_access_stays_shared_and_byte_values_are_one_object():
    """The same virtual Access in several instructions (as loop expansion leaves an
    access that does not move), at the same physical bytes: one physical Access, as
    in the record it came from."""
    program = next(filter(_fits_and_writes_a_block_first, map(_random_program, range(40))))
    ins = program.instructions
    a = ins[0].writes[0]
    # instructions 1 and 2 write the same object as 0 (same block: same placement)
    for i in (1, 2):
        ins.insert(i, Instruction(i, 0, "vector", "memset", (), (a,), None, {}))
    for i, x in enumerate(ins):
        x.index = i
    want = allocation._Allocator(_copy(program)).run()
    got = compiled_allocation.allocate_compiled(_copy(program))
    assert [(x.reads, x.writes) for x in got.instructions] == \
        [(x.reads, x.writes) for x in want.instructions]
    first = got.instructions[0].writes[0]
    assert got.instructions[1].writes[0] is first and got.instructions[2].writes[0] is first
    values: dict = {}  # the moved accesses' bytes
    for x in got.instructions:
        for acc in x.reads + x.writes:
            if acc.space != "hbm" and acc.alloc >= 0 \
                    and not program.allocations[acc.alloc].explicit:
                for v in (acc.lo, acc.hi):
                    assert values.setdefault(v, v) is v


def test_depends_on_reads_each_attrs_dict_once_as_every_instruction():
    """access_columns.depends_on (read once per attrs dict) lists what reading every
    instruction's does."""
    shared, ordered, empty = {"op": "add"}, {"depends_on": [0, 1]}, {"depends_on": []}
    attrs = [shared, ordered, {"depends_on": [2]}, shared, ordered, empty, {}] * 20
    instrs = [Instruction(i, 0, "vector", "op", (), (), None, a) for i, a in enumerate(attrs)]
    want = [(i, a["depends_on"]) for i, a in enumerate(attrs) if a.get("depends_on")]
    got = access_columns.depends_on(instrs)
    assert got == want and all(g[1] is w[1] for g, w in zip(got, want))
    assert access_columns.depends_on(instrs[:1]) == [] and access_columns.depends_on([]) == []
