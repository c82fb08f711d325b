"""The instruction columns (timing/instruction_columns.py): each instruction's core and
the identities of its engine, opcode, queue, location and attrs objects, a block of
loop copies' from its template's rows, equal to the fields read one by one; and the
engines and attrs the compiler model's passes hand on equal to those the instructions
hold when the next pass reads them."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
from benchmarks.fidelity import strided_stores
from trnsim.machine.errors import SourceLocation
from trnsim.machine.record import Instruction, Program, identities
from trnsim.timing.instruction_columns import (FIELDS, InstructionColumns,
                                               instruction_columns, taken_ids)

from kernel_helpers import tutorial_run


def _same_as_read(instrs: list, cols: InstructionColumns) -> None:
    assert cols.core().tolist() == [ins.core for ins in instrs]
    for name in FIELDS:
        want = identities([getattr(ins, name) for ins in instrs])
        assert np.array_equal(cols.ids(name), want), name
        at = np.arange(0, len(instrs), 3)
        assert np.array_equal(cols.ids(name, at), want[at]), name


def _template(start: int, k: int) -> list:
    """Three instructions whose every field is an object of its own (template `k`)."""
    loc = [SourceLocation(f"k{k}.py", j) for j in range(3)]
    return [Instruction(start, k % 2, "tensor", f"mm{k}", (), (), loc[0], {"k": k}),
            Instruction(start + 1, 1 - k % 2, "vector", f"add{k}", (), (), loc[1], {}),
            Instruction(start + 2, 0, "dma", f"copy{k}", (), (), loc[2], {"q": k},
                        f"q{k}")]


def _copies(p: Program, templates: list, n: int, moved_attrs: bool = False) -> list:
    """Append and note `n` copies of `templates` (the fields their objects, as loop
    expansion makes them; with `moved_attrs` each copy's first attrs its own)."""
    made = []
    for c in range(n):
        for j, t in enumerate(templates):
            attrs = {"k": c} if moved_attrs and j == 0 else t.attrs
            made.append(Instruction(len(p.instructions) + len(made), t.core, t.engine,
                                    t.opcode, t.reads, t.writes, t.location, attrs,
                                    t.queue))
    p.instructions += made
    width = len(templates)
    p.note_copies(made, templates, [()] * width, [()] * width, [], [True] * 6,
                  np.zeros((0, 6), np.int64))
    return made


def _real(p: Program, k: int) -> list:
    made = _template(len(p.instructions), k)
    p.instructions += made
    return made


def _program() -> Program:
    """Real instructions, blocks of copies of two templates (one behind real
    instructions, one whose copies have attrs of their own), an outer loop whose
    template holds an inner block and whose copies copy those, and a block rolled back
    (the record cut back into it and other instructions recorded there)."""
    p = Program(None)
    _real(p, 0)
    a = _real(p, 1)
    _copies(p, a, 4)
    _real(p, 2)
    _copies(p, a, 2)
    b = _real(p, 3)
    _copies(p, b, 5, moved_attrs=True)
    outer = len(p.instructions)
    inner = _real(p, 4)
    _copies(p, inner, 3)
    _copies(p, p.instructions[outer:], 3)  # (its template: 4 rows, 3 of them copies)
    c = _real(p, 5)
    _copies(p, c, 4)
    del p.instructions[-5:]  # rolled back into the block
    _real(p, 6)
    _real(p, 7)
    return p


def test_columns_of_copies_real_instructions_and_rolled_back_blocks():
    p = _program()
    held = [b for b in p.copied if b.held_by(p.instructions)]
    assert len(held) == 5 and len(p.copied) == 6
    cols = InstructionColumns(p.instructions, p.copied)
    # (the copies of held blocks not read: their template's rows)
    assert cols.row is not None
    assert len(cols.read) == len(p.instructions) - sum(b.stop - b.start for b in held)
    _same_as_read(p.instructions, cols)
    _same_as_read(p.instructions, InstructionColumns(p.instructions))


def test_a_copy_changed_since_it_was_noted_is_read():
    """A block whose end instruction is another object than noted is read."""
    p = _program()
    big = max(p.copied, key=lambda b: b.copies)
    last = p.instructions[big.stop - 1]
    p.instructions[big.stop - 1] = Instruction(last.index, 1, "scalar", "other", (), (),
                                               None, {})
    _same_as_read(p.instructions, InstructionColumns(p.instructions, p.copied))


def _recorded(monkeypatch, go) -> Program:
    monkeypatch.setattr(trnsim.machine.runtime.Run, "compile", lambda self: None)
    return go().program


@pytest.mark.parametrize("kernel", ["tutorial", "strided"])
def test_columns_of_recorded_kernels(monkeypatch, kernel):
    """Loop expansion's blocks (the matmul tutorial's nested loops, strided stores'
    DMA queues) give the columns of reading every instruction."""
    if kernel == "tutorial":
        p = _recorded(monkeypatch, lambda: tutorial_run("tiled", "trn1", 2048, 512, 2048))
    else:
        x = np.ones((128, 8 * 80), np.float32)
        p = _recorded(monkeypatch, lambda: trnsim.run_kernel(
            strided_stores, (x,), chip="trn2", numerics=False)[1])
    cols = instruction_columns(p)
    assert cols.row is not None and len(cols.read) < len(p.instructions) // 4
    _same_as_read(p.instructions, cols)
    assert instruction_columns(p) is cols  # (kept while the list is the same)
    p.instructions = list(p.instructions)
    assert instruction_columns(p) is not cols


def test_passes_hand_on_the_engines_and_attrs_as_they_stand(monkeypatch):
    """Floating instructions given engines, order edges rewritten into new attrs: the
    compiled allocation hands the list scheduler the attrs and engines, the list
    scheduler the timing scheduler the engines it assigned; each equal to the fields
    then, and taken once."""
    pytest.importorskip("numba")
    from test_compiler_schedule_compiled import agnostic
    from trnsim.compiler import compiled_allocation, hoist_invariant_loads, order_instructions
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    x = np.zeros((128, 64 * 40), np.float32)
    p = _recorded(monkeypatch, lambda: trnsim.run_kernel(agnostic, (x,), chip="trn2",
                                                         numerics=False)[1])
    allocated = compiled_allocation.allocate_compiled(hoist_invariant_loads(p))
    instrs = allocated.instructions
    assert any(ins.attrs.get("depends_on") for ins in instrs)
    for name in ("attrs", "engine"):
        handed = instruction_columns(allocated)._handed[name]
        assert np.array_equal(handed, identities([getattr(i, name) for i in instrs]))
    engines = [ins.engine for ins in instrs]
    order_instructions(allocated)
    assert [ins.engine for ins in instrs] != engines  # (some moved to another engine)
    assert "attrs" not in instruction_columns(allocated)._handed  # (taken)
    want = identities([ins.engine for ins in instrs])
    assert np.array_equal(taken_ids(allocated, "engine"), want)
    assert "engine" not in instruction_columns(allocated)._handed


def test_a_copied_program_makes_its_own():
    """Copies of a program (deep, pickled) hold other objects: not the columns' ids."""
    import copy
    import pickle
    p = _program()
    cols = instruction_columns(p)
    cols.hand("engine", cols.ids("engine"))
    for q in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert q._instruction_columns is None
        assert np.array_equal(taken_ids(q, "engine"),
                              identities([ins.engine for ins in q.instructions]))
        _same_as_read(q.instructions, instruction_columns(q))
