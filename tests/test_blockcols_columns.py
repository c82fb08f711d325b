"""The access columns of loop expansion's copies made from the blocks the expansion
notes (machine/record.py CopiedBlock; timing/access_columns.py build_with_allocs with
blocks): the same arrays as reading every access (rows, pointers, spaces in order of
first use, maps, sizes, alloc, bytes), and the compiled allocation that reads them
the same program as the Python allocator. On kernels whose copies move on chip and in
HBM (strided rows), with odd tiles, a loop entered several times, after hoisting, and
where the record no longer holds a block as noted."""
from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.compiler as compiler
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from benchmarks.fidelity import strided_stores
from trnsim.compiler import allocation, hoist
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.machine.record import Instruction, Program, _Deferred
from trnsim.timing import access_columns

pytest.importorskip("numba")
from test_allocation_compiled import _copy, _same, same_columns  # noqa: E402

from trnsim.compiler import compiled_allocation  # noqa: E402


def _vaddrs(allocations: dict) -> np.ndarray:
    out = np.zeros(max(allocations, default=0) + 1, np.int64)
    for k, a in allocations.items():
        out[k] = a.vaddr
    return out


def _covered(program) -> float:
    """The share of the program's instructions in blocks whose columns are made."""
    spans = access_columns._spans(program.instructions, program.copied,
                                  _vaddrs(program.allocations))
    return sum(e - s for _, s, e in spans) / len(program.instructions)


def _same_both_ways(program) -> None:
    """build_with_allocs from the program's blocks gives what reading every access does."""
    read = access_columns.build_with_allocs(program.instructions)
    made = access_columns.build_with_allocs(program.instructions, list(program.copied),
                                            _vaddrs(program.allocations))
    (want, want_alloc), (got, alloc) = read, made
    for name in ("acc", "ptr", "wptr", "forms"):
        a, b = getattr(want, name), getattr(got, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    for k in range(len(access_columns.SHARED)):
        assert np.array_equal(want.column(k), got.column(k)), access_columns.SHARED[k]
    _numbered_as_read(got)
    assert got.spaces == want.spaces and got.maps == want.maps
    assert np.array_equal(alloc, want_alloc)


def _numbered_as_read(cols) -> None:
    """`source` numbers the accesses read in row order, a copy's as its template's, and
    `shared` holds one entry per number."""
    source = cols.source
    first = np.unique(source, return_index=True)[1]
    assert np.array_equal(source[np.sort(first)], np.arange(len(first)))
    assert cols.shared.shape[1] == len(first)


@pytest.fixture
def allocated(monkeypatch):
    """Runs `go` and checks each program handed to `allocate` (as hoisting leaves it,
    with its blocks) both ways, then allocates it on the compiled path (which reads
    the blocks) against the Python allocator; returns the share of the programs'
    instructions in blocks."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    covered = []

    def grab(program):
        covered.append(_covered(program))
        _same_both_ways(program)
        want = allocation._Allocator(_copy(program)).run()
        got = compiled_allocation.allocate_compiled(program)
        assert got is not None and not program.copied  # (taken: read once)
        _same(want, got)
        same_columns(got._access_columns, access_columns.build(got.instructions))
        return got

    monkeypatch.setattr(compiler, "allocate", grab)

    def run(go) -> float:
        covered.clear()
        go()
        assert covered
        return min(covered)
    return run


@pytest.mark.parametrize("variant, shape", [
    ("tiled", (2048, 512, 2048)), ("hoisted", (2048, 512, 2048)),
    ("block_free", (2048, 512, 2048)), ("block_mnk", (2048, 4096, 1024))])
def test_matmul_tutorial_steps(allocated, variant, shape):
    """(examples/legacy/matmul_tutorial.py; shapes whose loops run long enough to be
    expanded, block_mnk with its own blocking)"""
    kernel = load_example("legacy/matmul_tutorial").VARIANTS[variant].fn
    K, M, N = shape
    args = (np.zeros((K, M), ml_dtypes.bfloat16), np.zeros((K, N), ml_dtypes.bfloat16))
    go = lambda: run_legacy(kernel, args, {}, chip="trn1", numerics=False)  # noqa: E731
    assert allocated(go) > 0.7


def _run(kernel, *args):
    return trnsim.run_kernel(kernel, args, chip="trn2", numerics=False)


def test_strided_hbm_stores(allocated):
    """Every HBM access a moving strided rows form (its first byte moves)."""
    x = np.ones((128, 8 * 80), np.float32)
    assert allocated(lambda: _run(strided_stores, x)) > 0.8


@trnsim.nki.jit
def odd_tiles(x):
    """Tiles of 100 partitions by 37 columns, PSUM between: boxes that cover part of
    their tensors."""
    out = nl.ndarray((x.shape[0], 37), nl.float32, buffer=nl.hbm)
    for i in nl.affine_range(x.shape[0] // 100):
        t = nl.ndarray((100, 37), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[i * 100:(i + 1) * 100, 3:40])
        p = nl.ndarray((100, 37), nl.float32, buffer=nl.psum)
        nisa.tensor_scalar(dst=p, data=t, op0=nl.add, operand0=1.0)
        u = nl.ndarray((100, 37), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=u[:, 1:36], src=p[:, 1:36])
        nisa.tensor_copy(dst=u[:, 0:1], src=t[:, 0:1])
        nisa.tensor_copy(dst=u[:, 36:37], src=t[:, 36:37])
        nisa.dma_copy(dst=out[i * 100:(i + 1) * 100, :], src=u)
    return out


def test_odd_tiles(allocated):
    assert allocated(lambda: _run(odd_tiles, np.ones((100 * 60, 41), np.float32))) > 0.8


@trnsim.nki.jit
def entered_again(x):
    """An inner loop entered once per row block: a template, and its blocks, per entry."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for r in range(x.shape[0] // 128):
        for j in nl.affine_range(x.shape[1] // 8):
            t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[r * 128:(r + 1) * 128, j * 8:(j + 1) * 8])
            u = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=u, data=t, op0=nl.multiply, operand0=float(r + 1))
            nisa.dma_copy(dst=out[r * 128:(r + 1) * 128, j * 8:(j + 1) * 8], src=u)
    return out


def test_a_loop_entered_several_times(allocated):
    x = np.ones((128 * 4, 8 * 40), np.float32)
    assert allocated(lambda: _run(entered_again, x)) > 0.7


@trnsim.nki.jit
def invariant_reload(x, w):
    """`w` loaded into a fresh tile every iteration: hoisting drops the repeats and
    points the adds at the first copy (every copy changes: no block is carried)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    for j in nl.affine_range(x.shape[1] // 8):
        wt = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=wt, src=w)
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 8:(j + 1) * 8])
        u = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=u, data1=t, data2=wt, op=nl.add)
        nisa.dma_copy(dst=out[:, j * 8:(j + 1) * 8], src=u)
    return out


def test_hoisted_loads(allocated):
    allocated(lambda: _run(invariant_reload, np.ones((128, 8 * 60), np.float32),
                           np.ones((128, 8), np.float32)))


def _recorded(monkeypatch, kernel, *args):
    monkeypatch.setattr(trnsim.machine.runtime.Run, "compile", lambda self: None)
    return _run(kernel, *args)[1].program


def _hoisted(p, dropped: set, redirected: set):
    """`p` as hoisting leaves it where it drops the instructions at `dropped` and
    redirects those at `redirected`, with the blocks hoist._carried carries."""
    position, out = [], []
    for at, ins in enumerate(p.instructions):
        position.append(-1 if at in dropped | redirected else len(out))
        if at not in dropped:
            out.append(ins)
    kept = type(p)(p.chip, p.lnc, out, p.allocations)
    kept.copied = hoist._carried(p.copied, p.instructions, position, out)
    return kept


def test_hoisting_cuts_blocks_around_the_copies_it_changes(monkeypatch):
    """Blocks carried through hoisting (hoist._carried, on a record with instructions
    of two copies dropped and one of a third redirected) make the kept instructions'
    columns, the changed copies read; a template changed drops its blocks."""
    p = _recorded(monkeypatch, strided_stores, np.ones((128, 8 * 80), np.float32))
    big = max(p.copied, key=lambda b: b.copies)
    w = len(big.template.reads)
    kept = _hoisted(p, {big.start + 5 * w + 1, big.start + 9 * w}, {big.start + 20 * w + 2})
    cut = [b for b in kept.copied if b.template.first is big.template.first]
    assert [b.copies for b in cut] == [5, 3, 10, big.copies - 21]
    assert all(b.template is not big.template for b in cut)
    assert 0.5 < _covered(kept) < 1
    _same_both_ways(kept)
    assert not [b for b in _hoisted(p, {big.template.start + 1}, set()).copied
                if b.template.first is big.template.first]


def test_blocks_the_record_no_longer_holds_are_read(monkeypatch):
    """A block whose end instruction is another object, or one whose copies' accesses
    number otherwise than its template's, is read like any instruction."""
    p = _recorded(monkeypatch, strided_stores, np.ones((128, 8 * 80), np.float32))
    big = max(p.copied, key=lambda b: b.copies)
    instrs = p.instructions
    instrs[big.stop - 1] = copy.copy(instrs[big.stop - 1])
    _same_both_ways(p)
    q = _recorded(monkeypatch, strided_stores, np.ones((128, 8 * 80), np.float32))
    big = max(q.copied, key=lambda b: b.copies)
    middle = q.instructions[big.start + 3]
    middle.reads = middle.reads + middle.reads
    _same_both_ways(q)


def test_a_block_rolled_back_is_let_go_at_the_next_note():
    """Blocks past the end of the record when a block is noted (the record rolled back
    to a mark: machine/expand_parts.py Mark.restore) are dropped then."""
    def instruction(i):
        return Instruction(i, 0, "vector", "op", (), (), None)
    p = Program(None, instructions=[instruction(i) for i in range(3)])
    numbers = np.arange(12).reshape(2, 6)  # (an operand of each copy whose offset moves)
    moves = [True] + [False] * 5
    for kept in (3, 1):  # a block of two copies of instruction 0, then one after a rollback
        del p.instructions[kept:]
        made = [instruction(len(p.instructions) + i) for i in range(2)]
        p.instructions += made
        p.note_copies(made, p.instructions[:1], [()], [()], [0], moves, numbers)
    assert [(b.start, b.copies, b.numbers.shape) for b in p.copied] == [(1, 2, (2, 0))]
    assert p.copied[0].held_by(p.instructions)


@trnsim.nki.jit
def fresh_tiles(x):
    """Each iteration's own tile, at the same place in it: only the copies' alloc moves
    (their bytes are their template's, relative to the tile)."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.hbm)
    acc = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=acc, src=x)
    for _ in nl.sequential_range(60):
        t = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
        nisa.tensor_scalar(dst=t, data=acc, op0=nl.multiply, operand0=2.0)
        nisa.tensor_copy(dst=acc, src=t)
    nisa.dma_copy(dst=out, src=acc)
    return out


def test_copies_whose_alloc_alone_moves(allocated, monkeypatch):
    noted = []
    real = Program.note_copies

    def note(self, *args):
        real(self, *args)
        noted.append(self.copied[-1].template.kept.tolist())
    monkeypatch.setattr(Program, "note_copies", note)
    assert allocated(lambda: _run(fresh_tiles, np.ones((128, 8), np.float32))) > 0.8
    assert noted and all(kept == [-1, -1, -1, -1, 0] for kept in noted)


def test_copies_not_made_yet_are_counted_off_their_template(monkeypatch):
    """A block whose copies all wait for their own operands (machine/record.py
    `deferred_instructions`: they hold their template's tuples) is counted off its template,
    without reading its copies, and its columns are those read access by access; a
    copy given its own (another class) has the block's copies read again."""
    x = np.ones((128, 8 * 600), np.float32)
    p = _recorded(monkeypatch, strided_stores, x)
    waiting = [i for i in p.instructions if isinstance(i, _Deferred)]
    assert len(waiting) > len(p.instructions) // 2
    read = []
    real = access_columns.held_reads
    monkeypatch.setattr(access_columns, "held_reads", lambda ins: read.append(ins) or real(ins))
    made = access_columns.build_with_allocs(p.instructions, list(p.copied),
                                            _vaddrs(p.allocations))
    assert not read and all(isinstance(i, _Deferred) for i in waiting)
    want = access_columns.build_with_allocs(p.instructions)  # (every access read)
    for a, b in ((made[0].acc, want[0].acc), (made[0].ptr, want[0].ptr), (made[1], want[1])):
        assert np.array_equal(a, b)
    q = _recorded(monkeypatch, strided_stores, x)
    big = max(q.copied, key=lambda b: b.copies)
    middle = q.instructions[big.start + 3]
    middle.reads = middle.reads + middle.reads  # (its own made first: an Instruction)
    access_columns.build_with_allocs(q.instructions, list(q.copied), _vaddrs(q.allocations))
    assert middle in read
