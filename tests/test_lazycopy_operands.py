"""Loop copies whose operands are made when first read (machine/expand_copy.py
`_PendingOperands`, machine/record.py `deferred_instructions`): a record, and the
allocated program made from it, equal the ones whose copies were made at once (== and
pickle bytes: the same objects shared), and a timing-only compile and schedule of a
kernel whose copies move on-chip tiles makes none of them."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine import compiled, expand_copy
from trnsim.machine.record import (Instruction, _Deferred, _kept_identities, held_reads,
                                   held_writes, identities, identities_of_copies)
from trnsim.machine.runtime import Run
from trnsim.timing import schedule

from test_copies_same_operands import tile_read_in_an_inner_loop
from test_expand import _run, partition_buffers, tiled_matmul

from benchmarks.fidelity import strided_stores


@nki.jit
def double_buffer(x):
    """Periodic operands: `bufs[:, j % 2]` moves with period 2."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    bufs = nl.ndarray((128, 2, 8), nl.float32, buffer=nl.sbuf)
    for j in nl.affine_range(x.shape[1] // 8):
        nisa.dma_copy(dst=bufs[:, j % 2], src=x[:, j * 8:(j + 1) * 8])
        u = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=u, data=bufs[:, j % 2], op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=u)
    return out


@nki.jit
def reloads(x):
    """Each iteration loads the same bytes (hoisting visits every copy of the load)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for j in nl.affine_range(x.shape[1] // 8):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, 0:8])
        u = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=u, data=t, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=u)
    return out


KERNELS = {
    "affine": (strided_stores, lambda: (np.zeros((128, 8 * 600), np.float32),)),
    "periodic": (double_buffer, lambda: (np.zeros((128, 8 * 300), np.float32),)),
    # (a DMA whose operand's partitions move: its copies made at once, as the cost model
    # reads a DMA's partitions)
    "partitions": (partition_buffers, lambda: (np.zeros((128, 8 * 300), np.float32),)),
    "reloads": (reloads, lambda: (np.zeros((128, 8 * 300), np.float32),)),
    "matmul": (tiled_matmul, lambda: (np.zeros((4096, 256), np.float32),
                                      np.zeros((4096, 1024), np.float32))),
    "same_operands": (tile_read_in_an_inner_loop, lambda: (np.ones((128, 128), np.float32),)),
}


def _deferred(instrs) -> list:
    return [i for i in instrs if isinstance(i, _Deferred)]


def _recorded(monkeypatch, name, lazy: bool, compile_it: bool = False):
    kernel, args = KERNELS[name]
    with monkeypatch.context() as m:
        if not lazy:
            m.setattr(expand_copy, "_LAZY", float("inf"))
        if not compile_it:
            m.setattr(Run, "compile", lambda self: None)
        return _run(kernel, *args())


@pytest.mark.parametrize("name", list(KERNELS))
def test_a_record_with_deferred_copies_is_the_eager_one(monkeypatch, name):
    eager = _recorded(monkeypatch, name, lazy=False).program
    lazy = _recorded(monkeypatch, name, lazy=True).program
    assert not _deferred(eager.instructions)
    # (made at once: a DMA whose partitions move, a load of the same bytes each copy)
    assert bool(_deferred(lazy.instructions)) == (name not in ("partitions", "reloads"))
    assert pickle.dumps(lazy.instructions) == pickle.dumps(eager.instructions)
    assert not _deferred(lazy.instructions)
    lazy = _recorded(monkeypatch, name, lazy=True).program
    assert lazy.instructions == eager.instructions
    # a copy of each block made alone first, then the rest of the block
    lazy = _recorded(monkeypatch, name, lazy=True).program
    blocks = {}
    for ins in _deferred(lazy.instructions):
        blocks.setdefault(type(ins)._pending, []).append(ins)
    for mine in blocks.values():
        mine[len(mine) // 2].reads
    assert pickle.dumps(lazy.instructions) == pickle.dumps(eager.instructions)


@pytest.mark.parametrize("flag", ["0", "1"])
@pytest.mark.parametrize("name", list(KERNELS))
def test_the_compiled_program_and_its_timeline_are_the_eager_ones(monkeypatch, name, flag):
    monkeypatch.setenv(compiled.ENV, flag)
    out = []
    for lazy in (False, True):
        run = _recorded(monkeypatch, name, lazy, compile_it=True)
        timeline = schedule(run.program, run.chip)
        events = list(timeline.events)
        out.append((events, list(run.program.issue.order),
                    pickle.dumps((run.program.instructions, run.program.allocations))))
    assert out[1] == out[0]


def test_a_timing_only_compile_and_schedule_make_no_copy_of_a_tile_loop(monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setenv(compiled.ENV, "1")
    compile_program = Run.compile
    run = _recorded(monkeypatch, "affine", lazy=True)
    made = _counted_makes(monkeypatch)
    compile_program(run)
    schedule(run.program, run.chip)
    assert sum(made) == 0  # (hoisting reads the loads it visits off their blocks)


def _one_block():
    """A record's deferred copies of one block (the first met), their pending operands
    and the program (which lists them where they were appended while it lives)."""
    x = np.zeros((128, 8 * 600), np.float32)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(Run, "compile", lambda self: None)
        program = _run(strided_stores, x).program
    deferred = _deferred(program.instructions)
    pending = type(deferred[0])._pending
    return [i for i in deferred if type(i)._pending is pending], pending, program


def test_operands_are_made_on_first_read_the_end_copies_alone_then_the_block():
    mine, pending, program = _one_block()
    width = pending.width
    first, last = mine[:width], mine[-width:]
    # held until read: the template's tuples
    assert all(held_reads(a) is b for a, b in zip(first, pending.operands.reads))
    assert all(held_writes(a) is b for a, b in zip(first, pending.operands.writes))
    first[1].reads
    assert all(type(i) is Instruction for i in first)  # the first copy, alone
    assert len(_deferred(mine)) == len(mine) - width
    last[0].writes
    assert len(_deferred(mine)) == len(mine) - 2 * width  # then the last, alone
    mine[5 * width].reads
    assert not _deferred(mine)  # then the rest of the block at once


def test_a_middle_copy_read_first_makes_the_block():
    mine, _, program = _one_block()
    mine[len(mine) // 2].reads
    assert not _deferred(mine)


def test_a_copy_renumbered_out_of_order_is_still_found():
    mine, pending, program = _one_block()
    width = pending.width
    for i, ins in enumerate(reversed(mine)):
        ins.index = i
    last = mine[-width:]
    last[-1].writes
    assert all(type(i) is Instruction for i in last)
    assert len(_deferred(mine)) == len(mine) - width


def test_the_summary_reads_pending_copies_own_places(monkeypatch):
    """profile/operands.py reads the held operands only where the access columns give
    their places: a recorded program (no columns) whose copies are pending has its own
    HBM bounds, and HbmTraffic hands out the copies' own operands."""
    from trnsim.profile import operands
    from trnsim.profile.summary import HbmTraffic
    eager = _recorded(monkeypatch, "affine", lazy=False).program
    lazy = _recorded(monkeypatch, "affine", lazy=True).program
    assert _deferred(lazy.instructions) and operands._columns(lazy)[0] is None
    got, want = operands.Operands(lazy), operands.Operands(eager)
    for side in ("reads", "writes"):
        mine, theirs = getattr(got, side), getattr(want, side)
        hbm = np.flatnonzero(theirs.space == operands.HBM)
        assert all(map(np.array_equal, mine.hbm_bounds(hbm), theirs.hbm_bounds(hbm)))
        for k in hbm[::97].tolist():
            ins, access = mine.own(lazy.instructions, side, k)
            assert (ins.index, access) == (lambda i, a: (i.index, a))(
                *theirs.own(eager.instructions, side, k))
    assert HbmTraffic(lazy).reload_bytes == HbmTraffic(eager).reload_bytes


def _counted_makes(monkeypatch) -> list:
    """The numbers of copies Operands.make is asked for from now on."""
    made = []
    real = expand_copy.Operands.make

    def counted(self, nums, n, *args, **kwargs):
        made.append(n)
        return real(self, nums, n, *args, **kwargs)
    monkeypatch.setattr(expand_copy.Operands, "make", counted)
    return made


@pytest.mark.parametrize("name", ["affine", "periodic", "matmul", "same_operands"])
def test_copies_their_program_no_longer_lists_are_made_a_copy_at_a_time(monkeypatch, name):
    """The program gone (its list kept): a read makes the copy read, and the others of
    that copy take theirs from the stash; the record is the eager one."""
    eager = _recorded(monkeypatch, name, lazy=False).program.instructions
    instrs = _recorded(monkeypatch, name, lazy=True).program.instructions
    blocks = {}
    for ins in _deferred(instrs):
        blocks.setdefault(type(ins)._pending, []).append(ins)
    assert blocks
    made = _counted_makes(monkeypatch)
    assert pickle.dumps(instrs) == pickle.dumps(eager)
    assert made == [1] * sum(len(mine) // p.width for p, mine in blocks.items())


@pytest.mark.parametrize("name", ["affine", "same_operands"])
def test_allocated_copies_listed_elsewhere_are_made_one_by_one(monkeypatch, name):
    """The allocated program's list changed: each copy the allocation took (an
    _Unplaced) has its virtual accesses made when read, then its physical ones."""
    monkeypatch.setenv(compiled.ENV, "1")
    eager = _recorded(monkeypatch, name, lazy=False, compile_it=True).program
    lazy = _recorded(monkeypatch, name, lazy=True, compile_it=True).program
    instrs = lazy.instructions
    move = type(instrs[-1])._pending
    assert move.deferred
    instrs.reverse()
    instrs = instrs[::-1]
    assert pickle.dumps(instrs) == pickle.dumps(eager.instructions)
    assert not move.deferred  # (all made: their blocks count them no more)


def test_pending_operands_counts_each_blocks_copies_by_runs():
    """record.pending_operands: the runs of a block's copies not made yet among other
    instructions (and copies made), counted by hand."""
    from trnsim.machine.record import pending_operands
    assert pending_operands([]) == ([], None)
    mine, pending, program = _one_block()
    width = pending.width
    mine[0].reads  # (the first copy made alone)
    plain = program.instructions[0]
    instrs = [plain, *mine[:2 * width], plain, *mine[-width:], plain]
    assert [type(i) is Instruction for i in mine[:2 * width]] == \
        [True] * width + [False] * width
    pendings, runs = pending_operands(instrs)
    assert runs.tolist() == [[1 + width, 1 + 2 * width, 0], [2 + 2 * width, 2 + 3 * width, 0]]
    assert pendings == [[pending, 2 * width]]
    assert pending_operands([plain] * 3) == ([], None)


def test_pending_operands_of_a_few_instructions_reads_them_as_the_runs_do(monkeypatch):
    """record.pending_operands on a few instructions (a short loop's template), whose
    classes it reads as a set: the same answer as reading their runs (`_FEW` 0), with
    and without copies not made yet among them, and copies made."""
    from trnsim.machine import record
    mine, pending, program = _one_block()
    width = pending.width
    mine[0].reads  # (the first copy made alone)
    plain = program.instructions[0]
    cases = [[plain], [plain] * 3, [plain, mine[0]], mine[:width],
             [plain, *mine[width:width + 2], plain], [mine[-1]], [plain, mine[-1], plain]]
    assert all(len(c) <= record._FEW for c in cases)
    fast = [record.pending_operands(c) for c in cases]
    monkeypatch.setattr(record, "_FEW", 0)
    for got, c in zip(fast, cases):
        want = record.pending_operands(c)
        assert got[0] == want[0]
        assert (got[1] is None) == (want[1] is None)
        if want[1] is not None:
            assert got[1].tolist() == want[1].tolist()
    assert [r is None for _, r in fast] == [True, True, True, True, False, False, False]


def test_pending_operands_of_spans_known_of_one_class_are_those_read():
    """record.pending_operands given spans known to be of one class (not read again)
    gives what reading every instruction's class gives: runs split by a known span
    joined again, one class read around them, the copies made left out."""
    from trnsim.machine.record import pending_operands
    mine, pending, program = _one_block()
    width, cls = pending.width, type(mine[-1])
    mine[0].reads  # (the first copy made alone)
    plain = program.instructions[0]
    instrs = [plain, *mine[:3 * width], plain, *mine[-2 * width:], plain]
    read = pending_operands(instrs)
    assert read[1].tolist() == [[1 + width, 1 + 3 * width, 0],
                                [2 + 3 * width, 2 + 5 * width, 0]]
    for known in ([(1 + width, 1 + 2 * width, cls)],
                  [(1 + 2 * width, 1 + 3 * width, cls), (2 + 4 * width, 2 + 5 * width, cls)],
                  [(1 + width, 1 + 3 * width, cls), (2 + 3 * width, 2 + 5 * width, cls)]):
        given = pending_operands(instrs, known)
        assert given[0] == read[0]
        assert given[1].tolist() == read[1].tolist()


@pytest.mark.parametrize("name", list(KERNELS))
def test_the_allocation_reads_no_class_of_the_blocks_the_access_columns_read(
        monkeypatch, name):
    """The compiled allocation's pending move finds the copies not made yet by the
    classes the access columns read of whole blocks (AccessColumns.one_class): the same
    runs and counts as reading each instruction's class, and the compiled program the
    eager one."""
    from trnsim.compiler import compiled_allocation
    from trnsim.machine.record import pending_operands
    seen = []

    def checked(instrs, one_class=()):
        given = pending_operands(instrs, one_class)
        read = pending_operands(instrs)
        assert given[0] == read[0]
        assert (given[1] is None) == (read[1] is None)
        if read[1] is not None:
            assert given[1].tolist() == read[1].tolist()
        seen.append(len(one_class))
        return given

    pytest.importorskip("numba")
    kept = []

    def identities_checked(instrs, one_class):
        given = identities_of_copies(instrs, one_class)
        assert given.tolist() == identities(instrs).tolist()
        kept.append(sum(e - s for s, e, _ in _kept_identities(instrs, one_class)))
        return given

    monkeypatch.setenv(compiled.ENV, "1")
    monkeypatch.setattr(compiled_allocation, "pending_operands", checked)
    monkeypatch.setattr(compiled_allocation, "identities_of_copies", identities_checked)
    lazy = _recorded(monkeypatch, name, lazy=True, compile_it=True).program
    eager = _recorded(monkeypatch, name, lazy=False, compile_it=True).program
    assert pickle.dumps(lazy.instructions) == pickle.dumps(eager.instructions)
    if name not in ("partitions", "reloads"):  # (copies made at once: no such block)
        assert any(seen) and any(kept)


def test_identities_of_copies_read_those_their_block_does_not_hold_so():
    """record.identities_of_copies: a span's copies' ids taken from their block where
    its ends are its block's copies in a row, else read (a span cut short, a copy's
    order changed, copies of another block between)."""
    from trnsim.machine.record import identities_of_copies
    mine, pending, program = _one_block()
    width, cls = pending.width, type(mine[-1])
    plain = program.instructions[0]
    swapped = [*mine[:2 * width]]
    swapped[0], swapped[-1] = swapped[-1], swapped[0]
    for instrs, span in (([plain, *mine[:3 * width], plain], (1, 1 + 3 * width)),
                         ([plain, *mine[width:2 * width], plain], (1, 1 + width)),
                         ([plain, *swapped, plain], (1, 1 + 2 * width)),
                         ([*mine[:width], *mine[-width:]], (0, 2 * width))):
        given = identities_of_copies(instrs, [(*span, cls)])
        assert given.tolist() == identities(instrs).tolist()
    assert len(_kept_identities([plain, *swapped], [(1, 1 + 2 * width, cls)])) == 0
    assert len(_kept_identities([*mine[:width], *mine[-width:]], [(0, 2 * width, cls)])) == 0
    assert len(_kept_identities([plain, *mine[width:2 * width]], [(1, 1 + width, cls)])) == 1


def test_a_block_knows_which_runs_of_its_copies_are_still_of_its_class():
    """record.copies_of_one_class: a run of a block's copies is known of its class
    until one of them is given its operands (read), the others' runs still are; as
    reading their classes tells."""
    from trnsim.machine.record import copies_of_one_class
    mine, pending, program = _one_block()
    width, cls = pending.width, type(mine[-1])
    instrs = program.instructions
    s = next(at for at, ins in enumerate(instrs) if ins is mine[0])  # (== makes it)
    e = s + len(mine)

    def known(a, b):
        got = copies_of_one_class(instrs, a, b)
        assert (got is cls) == (set(map(type, instrs[a:b])) == {cls})
        return got is cls

    assert known(s, e) and known(s + width, s + 3 * width)
    mine[0].reads  # (the first copy made alone: not of the class any more)
    assert not known(s, e) and not known(s, s + width) and not known(s + 1, s + width)
    assert known(s + width, e) and known(s + width, s + 3 * width)
    mine[-1].reads  # (the last one too)
    assert not known(s + width, e) and known(s + width, e - width)
    assert copies_of_one_class(instrs, s + 2 * width, s + 2 * width + 2) is cls
    assert copies_of_one_class([*mine[:width], *mine[-width:]], 0, 2 * width) is None
    assert copies_of_one_class([program.instructions[0], *mine], 0, len(mine) + 1) is None
    # an allocation's move that does not take the block gives some copies its own class
    from trnsim.compiler.compiled_allocation import _PendingMove
    move = object.__new__(_PendingMove)
    move.deferred, move.runs, move.classes = [[pending, pending.alive - 1]], None, set()
    assert move.take_blocks() == []
    assert copies_of_one_class(instrs, s + width, e - width) is None


@pytest.mark.parametrize("name", ["affine", "periodic", "matmul", "same_operands"])
def test_the_access_columns_read_only_the_classes_of_blocks_with_copies_made(
        monkeypatch, name):
    """The access columns read the classes of a block's copies only where some were
    made; those they take for all of one class are (read again here), and the compiled
    program and its timeline are the eager ones, with some copies of each block made
    before the compile."""
    from trnsim.timing import access_columns
    from trnsim.machine.record import copies_of_one_class
    answers = []

    def checked(instrs, s, e):
        got = copies_of_one_class(instrs, s, e)
        if got is not None:
            assert set(map(type, instrs[s:e])) == {got}
        answers.append(got is not None)
        return got

    pytest.importorskip("numba")
    monkeypatch.setenv(compiled.ENV, "1")
    monkeypatch.setattr(access_columns, "copies_of_one_class", checked)
    out = []
    for lazy, read in ((False, False), (True, False), (True, True)):
        with monkeypatch.context() as m:
            compile_program = Run.compile
            m.setattr(Run, "compile", lambda self: None)
            run = _recorded(monkeypatch, name, lazy)
        if read:  # (the first copy of each block made: alone, in a block of many)
            blocks = {}
            for ins in _deferred(run.program.instructions):
                blocks.setdefault(type(ins)._pending, []).append(ins)
            for copies in blocks.values():
                copies[0].reads
        compile_program(run)
        timeline = schedule(run.program, run.chip)
        out.append((list(timeline.events), list(run.program.issue.order),
                    pickle.dumps((run.program.instructions, run.program.allocations))))
    assert out[1] == out[0] and out[2] == out[0]
    assert any(answers)
