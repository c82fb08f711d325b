"""An outer loop's copies are made from a template that holds its inner loops' copies,
whose own operands may not be made yet (machine/expand_copy.py `Operands`): appending
the outer copies makes none of them, the outer copies hold the tuples the template
holds, and whatever order the copies are read in, the record and the compiled program
are the ones whose copies were all made at once (pickle bytes: the same objects
shared)."""
from __future__ import annotations

import gc
import pickle

import numpy as np
import pytest

from trnsim.machine import compiled, expand_copy
from trnsim.machine.record import Instruction, _Deferred, held_reads, identities
from trnsim.machine.runtime import Run
from trnsim.profile.profile import Profile

from test_copies_same_operands import tile_read_in_an_inner_loop
from test_expand import _run, tiled_matmul
from test_lazycopy_operands import _counted_makes

KERNELS = {
    # m (8) around n (8) around k (32): the tutorial's tiled step, small
    "matmul": (tiled_matmul, lambda: (np.zeros((4096, 1024), np.float32),
                                      np.zeros((4096, 4096), np.float32))),
    # equal operands of a copy made one Access (Layout.same_operands)
    "same_operands": (tile_read_in_an_inner_loop, lambda: (np.ones((128, 128), np.float32),)),
}


def _recorded(name, lazy: bool = True, compile_it: bool = False, copiers=None):
    kernel, args = KERNELS[name]
    with pytest.MonkeyPatch.context() as m:
        if not lazy:
            m.setattr(expand_copy, "_LAZY", float("inf"))
        if not compile_it:
            m.setattr(Run, "compile", lambda self: None)
        if copiers is not None:
            init = expand_copy.Copier.__init__

            def noted(self, *args):
                init(self, *args)
                copiers.append(self)
            m.setattr(expand_copy.Copier, "__init__", noted)
        return _run(kernel, *args())


def _pending_in_templates(program) -> list:
    """The copies not made yet within the templates of the program's blocks of copies
    whose template holds some (those of loops around others)."""
    instrs = program.instructions
    out = []
    for b in program.copied:
        t = b.template
        mine = [i for i in instrs[t.start:t.start + len(t.reads)] if isinstance(i, _Deferred)]
        out += mine
    return out


@pytest.mark.parametrize("name", list(KERNELS))
def test_an_outer_loop_copies_its_template_without_making_its_inner_copies(name):
    program = _recorded(name).program
    inner = _pending_in_templates(program)
    assert inner
    # (copies not made yet hold what their templates hold)
    for b in program.copied:
        copies = program.instructions[b.start:b.stop]
        if all(isinstance(i, _Deferred) for i in copies):
            held = identities(list(map(held_reads, copies)))
            assert np.array_equal(held, np.tile(identities(b.template.reads), b.copies))


def _read(instrs: list, order: str) -> None:
    if order == "reversed":
        for ins in reversed(instrs):
            ins.reads  # noqa: B018
    elif order == "outer first":
        for ins in instrs[::-1][:len(instrs) // 3]:
            ins.writes  # noqa: B018
    elif order == "templates first":
        for ins in instrs[:len(instrs) // 2:7]:
            ins.reads  # noqa: B018


@pytest.mark.parametrize("order", ["in order", "reversed", "outer first", "templates first"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_the_record_read_in_any_order_is_the_eager_one(name, order):
    eager = pickle.dumps(_recorded(name, lazy=False).program.instructions)
    program = _recorded(name).program
    _read(program.instructions, order)
    assert pickle.dumps(program.instructions) == eager
    assert not any(isinstance(i, _Deferred) for i in program.instructions)


@pytest.mark.parametrize("order", ["in order", "reversed"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_the_compiled_program_read_in_any_order_is_the_eager_one(monkeypatch, name, order):
    """Read after the allocation took the copies over (compiler/compiled_allocation.py
    `_Unplaced`): an outer copy's operands are made from its template's virtual ones,
    which the template's copies may no longer hold."""
    pytest.importorskip("numba")
    monkeypatch.setenv(compiled.ENV, "1")
    eager = _recorded(name, lazy=False, compile_it=True).program
    want = pickle.dumps((eager.instructions, eager.allocations))
    program = _recorded(name, compile_it=True).program
    _read(program.instructions, order)
    assert pickle.dumps((program.instructions, program.allocations)) == want


@pytest.mark.parametrize("name", list(KERNELS))
def test_the_copies_kinds_are_found_from_the_held_operands_as_from_their_own(name):
    """Copier.fields (what Layout.same_operands groups equal operands by) read off the
    tuples the template holds and its numbers equals what the template's own operands
    give, and the template is left as it was."""
    copiers = []
    program = _recorded(name, copiers=copiers).program
    assert _pending_in_templates(program)
    outer = [c for c in copiers if c.fields is not None and c.operands.waiting()]
    assert outer
    for c in copiers:
        if c.fields is None:
            continue
        kept = c.operands.kept  # (the template's own operands: made here)
        own = np.column_stack([*map(identities, kept[:8] + kept[13:17]), *kept[8:11]])
        assert np.array_equal(c.fields, own)


def _instructions() -> int:
    return sum(issubclass(type(o), Instruction) for o in gc.get_objects())


@pytest.mark.parametrize("read", [False, True])
@pytest.mark.parametrize("name", list(KERNELS))
def test_a_profile_dies_with_its_run_without_the_collector(name, read):
    """The outer copies' pending operands hold no instruction, and the inner blocks
    they count on let go once they do."""
    gc.collect()
    gc.disable()
    try:
        before = _instructions()
        run = _recorded(name, compile_it=True)
        p = Profile.from_run(run)
        p.summary  # noqa: B018
        if read:
            _read(run.program.instructions, "outer first")
        del run, p
        assert _instructions() == before
    finally:
        gc.enable()


def test_hoisting_makes_no_copy_of_a_small_block(monkeypatch):
    """Hoisting visits the end copies of a block from 64 instructions on
    (compiler/hoist.py `_visited`: 60 copies of a k loop's 3), and reads their loads'
    sources off the block's numbers: none is made (no load repeats)."""
    pytest.importorskip("numba")
    monkeypatch.setenv(compiled.ENV, "1")
    compile_program = Run.compile
    with monkeypatch.context() as m:
        m.setattr(Run, "compile", lambda self: None)
        run = _run(tiled_matmul, np.zeros((8192, 128), np.float32),
                   np.zeros((8192, 512), np.float32))
    made = _counted_makes(monkeypatch)
    compile_program(run)
    assert made == []


def test_a_pending_copy_that_dies_counts_its_block_down():
    instrs = _recorded("matmul").program.instructions
    k = max(k for k, i in enumerate(instrs) if isinstance(i, _Deferred))
    pending = type(instrs[k])._pending
    live = pending.live
    del instrs[k]
    assert pending.live == live - 1 and pending.operands is not None
