"""The instruction columns (timing/instruction_columns.py): each instruction's core and
the identities of its engine, opcode, queue, location and attrs objects, a block of
loop copies' from its template's rows, equal to the fields read one by one; and the
engines and attrs the compiler model's passes hand on equal to those the instructions
hold when the next pass reads them."""
from __future__ import annotations

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
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
                  np.zeros((0, 6), np.int64), own_attrs=(0,) if moved_attrs else ())
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


# -- attrs: a copy's its template's object unless the loop moves them or one is replaced
def _attrs_as_read(p: Program) -> bool:
    cols = InstructionColumns(p.instructions, p.copied)
    return np.array_equal(cols.ids("attrs"), identities([i.attrs for i in p.instructions]))


def _holds(block, k: int) -> bool:
    """Whether a block of copies or its template holds position k."""
    t, w = block.template, len(block.template.reads)
    return t.start <= k < t.start + w or block.start <= k < block.stop


def test_replaced_attrs_are_read_where_noted():
    """A copy's attrs or its template's replaced after the block was noted: read only
    where attrs_replaced notes it (the columns would give the template's otherwise)."""
    from trnsim.machine.record import attrs_replaced
    for at in ("copy", "template"):
        p = _program()
        cols = InstructionColumns(p.instructions, p.copied)
        assert cols.attrs_row is not None
        block = next(b for b in p.copied if b.held_by(p.instructions) and b.copies == 4
                     and not b.template.own_attrs)
        k = block.start + 5 if at == "copy" else block.template.start + 1
        ins = p.instructions[k]
        ins.attrs = {**ins.attrs, "depends_on": [0]}
        assert not _attrs_as_read(p)
        attrs_replaced(p.copied, k)
        assert block.attrs_replaced
        assert _attrs_as_read(p)
        assert [b.attrs_replaced for b in p.copied] == [_holds(b, k) for b in p.copied]
        assert sum(b.attrs_replaced for b in p.copied) == (1 if at == "copy" else 2)
        _same_as_read(p.instructions, InstructionColumns(p.instructions, p.copied))


def _strided(x):
    """strided_stores, the first load's DMA priority moving with the loop (trn3)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for j in nl.affine_range(x.shape[1] // 8):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8], priority=j % 4)
        u = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=u, data=t, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=u)
    return out


def test_copies_whose_attrs_move_are_read(monkeypatch):
    """A DMA priority that moves with the loop: its copies' attrs are their own, read
    (CopyTemplate.own_attrs), the others' their template's."""
    x = np.ones((128, 8 * 80), np.float32)
    p = _recorded(monkeypatch, lambda: trnsim.run_kernel(_strided, (x,), chip="trn3",
                                                         numerics=False)[1])
    (block,) = p.copied
    assert block.template.own_attrs == (0,) and block.copies > 50
    cols = InstructionColumns(p.instructions, p.copied)
    assert len(cols.attrs_read) == len(cols.read) + block.copies
    _same_as_read(p.instructions, cols)
    block.template.own_attrs = ()
    assert not _attrs_as_read(p)


def test_depends_on_notes_the_blocks_whose_attrs_it_replaces(monkeypatch):
    """Order edges given after the loop to one of its copies and to an instruction of
    its template: their blocks' attrs are read (without the note, the columns give the
    template's)."""
    from trnsim.isa import misc
    from trnsim.machine import runtime

    def kernel(x):
        t0 = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t0, src=x[:, 0:8])
        first = misc.last_instruction()
        out = _strided(x)
        p = runtime.current_run().program
        (block,) = p.copied
        for k in (block.template.start + 1, block.start + 7):
            misc.NkiInstruction(p.instructions[k]).depends_on(first)
        return out

    x = np.ones((128, 8 * 80), np.float32)
    for noted in (True, False):
        if not noted:
            monkeypatch.setattr(misc, "attrs_replaced", lambda blocks, at: None)
        p = _recorded(monkeypatch, lambda: trnsim.run_kernel(kernel, (x,), chip="trn3",
                                                             numerics=False)[1])
        assert [b.attrs_replaced for b in p.copied] == [noted]
        assert _attrs_as_read(p) == noted


def test_hoisting_notes_the_blocks_whose_attrs_it_replaced():
    """compiler/hoist.py `_carried`: a block holding, or whose template holds, a
    position whose attrs were replaced notes it; the others do not."""
    from trnsim.compiler import hoist
    p = _program()
    instrs = p.instructions
    held = [b for b in p.copied if b.held_by(instrs)]
    position = list(range(len(instrs)))
    for k in (held[0].start + 4, held[1].template.start):
        carried = hoist._carried(p.copied, instrs, position, instrs, [k])
        marked = [b.attrs_replaced for b in carried]
        assert marked == [_holds(b, k) for b in held]
        assert any(marked) and not all(marked)


# -- indices: a block noted numbered holds its positions ---------------------------------
def test_blocks_of_recorded_kernels_are_noted_numbered(monkeypatch):
    """Loop expansion's copies are appended at their indices: their blocks are noted
    numbered, and only the other instructions' indices are read; blocks noted without
    their indices are not."""
    p = _recorded(monkeypatch, lambda: tutorial_run("tiled", "trn1", 2048, 512, 2048))
    held = [b for b in p.copied if b.held_by(p.instructions)]
    assert held and all(b.numbered for b in held)
    assert [ins.index for ins in p.instructions] == list(range(len(p.instructions)))
    cols = InstructionColumns(p.instructions, p.copied)
    assert len(cols.index_read) == len(p.instructions) - sum(b.stop - b.start for b in held)
    assert not any(b.numbered for b in _program().copied)
    assert InstructionColumns(_program().instructions, _program().copied).index_read is None


def test_the_allocation_renumbers_an_instruction_outside_the_numbered_blocks(monkeypatch):
    """An index not at its position outside the blocks: the compiled allocation sets
    every index to its position, as the Python pass does."""
    pytest.importorskip("numba")
    from trnsim.compiler import allocation, compiled_allocation
    x = np.ones((128, 8 * 80), np.float32)

    def recorded() -> Program:
        p = _recorded(monkeypatch, lambda: trnsim.run_kernel(
            strided_stores, (x,), chip="trn2", numerics=False)[1])
        (block,) = p.copied
        assert block.numbered and block.start > 0
        p.instructions[0].index = 10 ** 6
        return p

    got = compiled_allocation.allocate_compiled(recorded())
    want = allocation._Allocator(recorded()).run()
    assert [i.index for i in got.instructions] == list(range(len(got.instructions)))
    assert [(i.index, i.reads, i.writes, i.attrs) for i in got.instructions] == \
        [(i.index, i.reads, i.writes, i.attrs) for i in want.instructions]
