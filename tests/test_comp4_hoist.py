"""Hoisting (trnsim/compiler/hoist.py) reads a template that holds blocks of copies off
those blocks' own templates (`_template_lines`' `inner`), and a block's numbers copy
by copy at once (`_copies_numbers`): on a loop nest, the template analysis equals the
one that reads every instruction, the numbers equal the ones read operand by operand,
and the hoisted program equals the one of visiting every instruction."""
from __future__ import annotations

import numpy as np

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.compiler import hoist
from trnsim.machine.runtime import Run

H, G = 8, 16


def _tile():
    return nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)


@trnsim.nki.jit
def nested_loads(x, w):
    out = nl.ndarray((H, G, 128, 512), nl.float32, buffer=nl.shared_hbm)
    kept = _tile()
    for h in range(H):
        for g in range(G):
            nisa.dma_copy(dst=kept, src=w)  # the same bytes into the same tile
            t = _tile()
            nisa.dma_copy(dst=t, src=x[g])  # bytes that move with the inner loop
            u = _tile()
            nisa.dma_copy(dst=u, src=x[G + h])  # ... with the outer one: repeats
            wb = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
            nisa.dma_copy(dst=wb, src=x[g % 2])  # a cast
            a = _tile()
            nisa.tensor_tensor(dst=a, data1=t, data2=kept, op=nl.add)
            b = _tile()
            nisa.tensor_tensor(dst=b, data1=a, data2=u, op=nl.add)
            c = _tile()
            nisa.tensor_tensor(dst=c, data1=b, data2=wb, op=nl.add)
            nisa.dma_copy(dst=out[h, g], src=c)
    return out


@trnsim.nki.jit
def fixed_tiles(x, w):
    out = nl.ndarray((H, G, 128, 512), nl.float32, buffer=nl.shared_hbm)
    t, a = _tile(), _tile()
    for h in range(H):
        for g in range(G):
            nisa.dma_copy(dst=t, src=x[g])  # (no alloc moves: CopyTemplate.kept -1)
            nisa.tensor_tensor(dst=a, data1=t, data2=t, op=nl.add)
            nisa.dma_copy(dst=out[h, g], src=a)
    return out


def _recorded(monkeypatch, kernel=nested_loads):
    """The program as recorded (expanded, not compiled)."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    x = np.zeros((G + H, 128, 512), np.float32)
    w = np.zeros((128, 512), np.float32)
    return trnsim.run_kernel(kernel, (x, w), chip="trn2", numerics=False)[1].program


def _held(program):
    return [b for b in program.copied if b.held_by(program.instructions)]


def _holding(program):
    """The templates holding a block of copies: (start, stop)."""
    held = _held(program)
    out = set()
    for b in held:
        s, e = b.template.start, b.template.start + len(b.template.reads)
        if any(s <= o.start and o.stop <= e for o in held):
            out.add((s, e))
    return out


def test_a_template_read_off_its_blocks_equals_it_read_instruction_by_instruction(
        monkeypatch):
    program = _recorded(monkeypatch)
    instrs = program.instructions
    assert _holding(program)
    read = {}
    real = hoist._template_lines

    def keep(instrs_, start, stop, inner, lines_of):
        read[start, stop] = out = real(instrs_, start, stop, inner, lines_of)
        return out
    monkeypatch.setattr(hoist, "_template_lines", keep)
    monkeypatch.setattr(hoist, "_MANY", 1)
    monkeypatch.setattr(hoist, "_FEW_COPIES", 1)
    monkeypatch.setattr(hoist, "_INNER", 1)
    list(hoist._visited(program.copied, instrs, program.allocations, {}))
    assert _holding(program) <= set(read)
    for (start, stop), lines in read.items():
        every = real(instrs, start, stop, [], None)
        assert list(lines) == list(every)
        for key, (where, places, numbers, plain) in lines.items():
            e_where, e_places, e_numbers, e_plain = every[key]
            assert (where == e_where).all() and (places == e_places).all()
            assert plain == e_plain
            assert (numbers[:, 2:] == e_numbers[:, 2:]).all()
            hbm = e_numbers[:, 2] < 0  # (lo and hi: absolute where the source has no alloc)
            assert (numbers[hbm, :2] == e_numbers[hbm, :2]).all()


def _numbers_one_by_one(block, places, template):
    t = block.template
    moving = t.moving.tolist()
    out = []
    for c in range(block.copies):
        for r in range(len(places)):
            row = []
            for col, side, field in ((0, 0, 2), (1, 0, 3), (2, 0, 4), (3, 1, 4)):
                p, k = int(places[r, side]), int(t.kept[field])
                if p in moving and k >= 0:
                    row.append(int(block.numbers[c * len(moving) + moving.index(p), k]))
                else:
                    row.append(int(template[r, col]))
            out.append(row)
    return np.array(out, np.int64).reshape(-1, 4)


def test_copies_numbers_equal_the_numbers_read_operand_by_operand(monkeypatch):
    programs = [_recorded(monkeypatch, k) for k in (nested_loads, fixed_tiles)]
    blocks = [(p.instructions, b) for p in programs for b in _held(p)]
    assert any((b.template.kept[hoist._FIELDS] < 0).any() for _, b in blocks)
    seen = 0
    for instrs, b in blocks:
        t = b.template
        lines = hoist._template_lines(instrs, t.start, t.start + len(t.reads), [], None)
        for _, places, template, _ in lines.values():
            got = hoist._copies_numbers(b, places, template)
            assert got.dtype == np.int64
            assert (got == _numbers_one_by_one(b, places, template)).all()
            seen += 1
    assert seen >= 4


def _described(program):
    return [(i.index, i.opcode, i.reads, i.writes, sorted(i.attrs.items(), key=str))
            for i in program.instructions], program.fences


def test_hoisting_a_loop_nest_by_blocks_gives_the_program_of_visiting_every_copy(
        monkeypatch):
    monkeypatch.setattr(hoist, "_MANY", 2)
    monkeypatch.setattr(hoist, "_FEW_COPIES", 1)
    monkeypatch.setattr(hoist, "_INNER", 1)
    by_blocks = _recorded(monkeypatch)
    visited = list(hoist._visited(by_blocks.copied, by_blocks.instructions,
                                  by_blocks.allocations, {}))
    # (of the outer block's 4 copies: not their 16 x 3 adds and 16 stores)
    assert len(visited) <= len(by_blocks.instructions) - 4 * 16 * 4
    every = _recorded(monkeypatch)
    every.copied = []
    hoisted, reference = (hoist.hoist_invariant_loads(p) for p in (by_blocks, every))
    assert _described(hoisted) == _described(reference)
    assert any("hoisted_repeats" in i.attrs for i in reference.instructions)
