"""Hoisting (trnsim/compiler/hoist.py) reads loop expansion's blocks of copies to visit
fewer of them (`_visited`): the program it gives is the one it gives visiting every
instruction, on a loop whose loads repeat in every way the pass tells apart (the same
bytes into the same tile, into a fresh tile, a cast, bytes that move, that alternate,
that repeat in pairs, loads of one line interleaved, with casts)."""
from __future__ import annotations

import numpy as np

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.compiler import hoist
from trnsim.machine.runtime import Run

G = 24


def _load(dst, src):
    nisa.dma_copy(dst=dst, src=src)  # one source line for the plain and the cast load


def _tile():
    return nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)


def _either(dst, src):
    nisa.dma_copy(dst=dst, src=src)  # (a plain load and a cast, interleaved)


def _fresh(src):
    t = _tile()
    nisa.dma_copy(dst=t, src=src)  # (one line: its executions interleave)
    return t


@trnsim.nki.jit
def loads_of_every_kind(x, w):
    out = nl.ndarray((G, 128, 512), nl.float32, buffer=nl.shared_hbm)
    kept = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    for g in range(G):
        _load(kept, w)  # the same bytes into the same tile: hoisted
        wb = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
        _load(wb, w)  # a cast, between the repeats of its line
        f = _tile()
        nisa.dma_copy(dst=f, src=w)  # the same bytes into a fresh tile: hoisted
        v = _tile()
        nisa.dma_copy(dst=v, src=x[g // 2])  # bytes that repeat in pairs
        t = _tile()
        nisa.dma_copy(dst=t, src=x[g])  # bytes that move
        u = _tile()
        nisa.dma_copy(dst=u, src=x[g % 2])  # bytes that alternate
        s = _fresh(x[G + g])  # bytes that move, on one line with
        r = _fresh(x[g + 1])  # ... other bytes that move
        q = _tile()
        _either(q, x[g // 2])  # bytes that repeat in pairs, on one line with
        _either(nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf), x[G + g])  # casts
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=t, data2=kept, op=nl.add)
        for other in (wb, f, u, v, s, r, q):
            b = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
            nisa.tensor_tensor(dst=b, data1=a, data2=other, op=nl.add)
            a = b
        nisa.dma_copy(dst=out[g], src=a)
    return out


def _recorded(monkeypatch):
    """The program as recorded (expanded, not compiled)."""
    monkeypatch.setattr(Run, "compile", lambda self: None)
    x = np.zeros((2 * G, 128, 512), np.float32)
    w = np.zeros((128, 512), np.float32)
    return trnsim.run_kernel(loads_of_every_kind, (x, w), chip="trn2", numerics=False)[1].program


def _described(program):
    return [(i.index, i.opcode, i.reads, i.writes, sorted(i.attrs.items(), key=str))
            for i in program.instructions], program.fences


def test_hoisting_by_blocks_gives_the_program_of_visiting_every_copy(monkeypatch):
    monkeypatch.setattr(hoist, "_MANY", 2)
    by_blocks = _recorded(monkeypatch)
    copies = sum(b.copies for b in by_blocks.copied)
    assert copies >= G // 2
    visited = list(hoist._visited(by_blocks.copied, by_blocks.instructions,
                                  by_blocks.allocations, {}))
    # (of each copy: not its 8 adds and its store, nor most of its t, u, s, r loads)
    assert len(visited) <= len(by_blocks.instructions) - 12 * copies
    every = _recorded(monkeypatch)
    every.copied = []
    assert list(hoist._visited([], every.instructions, every.allocations, {})) \
        == every.instructions
    hoisted, reference = (hoist.hoist_invariant_loads(p) for p in (by_blocks, every))
    assert _described(hoisted) == _described(reference)
    repeats = sorted(i.attrs["hoisted_repeats"] for i in reference.instructions
                     if "hoisted_repeats" in i.attrs)
    assert repeats == [1] * G + [G - 1, G - 1]  # v's and q's pairs, kept, f
