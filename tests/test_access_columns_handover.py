"""The compiled allocation pass (trnsim/compiler/compiled_allocation.py) hands the
program it makes over with its access columns (timing/access_columns.py `moved`, kept
as `_access_columns`), so the list and timing schedulers do not read the accesses
again: they must equal access_columns.build over the allocated instructions, field by
field, on the kernels of test_allocation_compiled.py and on random programs; where
the pass falls back to the Python allocator (spills) the columns are built on first
use. Also what the pass keeps of the record's memory: a virtual Access met several
times at the same physical bytes becomes one physical Access, and one int object per
byte value."""
import copy

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.compiler import allocation
from trnsim.machine.access import with_bytes
from trnsim.machine.errors import CapacityError
from trnsim.machine.record import Instruction, Program
from trnsim.timing import access_columns

pytest.importorskip("numba")
from test_allocation_compiled import (_copy, _current_api_matmul,  # noqa: E402,F401
                                      _random_program, legacy, recorded)

from trnsim.compiler import compiled_allocation  # noqa: E402


def _same_columns(got, want) -> None:
    assert got.instrs is want.instrs and got.n == want.n
    for name in ("acc", "ptr", "wptr"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name
    assert got.spaces == want.spaces
    assert got.maps == want.maps
    assert got.depends_on == want.depends_on


def _handed_over(program: Program, monkeypatch) -> Program:
    """The program `allocate` makes of `program` on the compiled path, after checking
    that its columns are handed over and equal build()'s."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    got = allocation.allocate(_copy(program))
    cols = got.__dict__.get("_access_columns")
    assert cols is not None, "not handed over"
    _same_columns(cols, access_columns.build(got.instructions))
    assert access_columns.access_columns(got) is cols
    return got


def test_tiled_matmul_with_psum_accumulation(recorded, monkeypatch):
    f32 = np.float32
    programs = recorded(lambda: trnsim.run_kernel(
        _current_api_matmul, (np.zeros((512, 256), f32), np.zeros((512, 2048), f32)),
        chip="trn2", numerics=False))
    _handed_over(programs[0], monkeypatch)


def test_legacy_tutorial_matmul(recorded, monkeypatch):
    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    bf = ml_dtypes.bfloat16
    programs = recorded(lambda: run_legacy(
        tiled, (np.zeros((1024, 256), bf), np.zeros((1024, 1024), bf)), {},
        chip="trn1", numerics=False))
    _handed_over(programs[0], monkeypatch)


@pytest.mark.parametrize("scatter", [False, True])
def test_an_access_over_several_blocks(legacy, recorded, monkeypatch, scatter):
    """The last store reads every block of a block tensor: side by side one range,
    scattered their box (wider than the access's bytes: not dense)."""
    nki, lnl, lisa, _ = legacy

    @nki.jit(platform_target="trn2")
    def k(x):
        out = lnl.ndarray(x.shape, dtype=x.dtype, buffer=lnl.shared_hbm)
        ys = lnl.ndarray((4, lnl.par_dim(128), 64), dtype=np.float32, buffer=lnl.sbuf)
        for i in lnl.affine_range(4):
            if scatter:
                t = lnl.load(x[i])
                ys[i] = lisa.activation(op=lnl.exp, data=t)
            else:
                ys[i] = lnl.load(x[i])
        for i in lnl.affine_range(4):
            lnl.store(out[i], value=ys[i])
        return out

    program = recorded(lambda: k(np.ones((4, 128, 64), np.float32)))[0]
    store = program.instructions[-1]
    a = store.reads[0]
    ys = program.allocations[a.alloc]
    wide = with_bytes(a, ys.vaddr, ys.vaddr + ys.row_bytes)
    store.reads = (wide._replace(bytes=128 * ys.row_bytes),) + store.reads[1:]
    got = _handed_over(program, monkeypatch)
    cols = got._access_columns
    row = cols.ptr[len(got.instructions) - 1]
    assert cols.acc[row, access_columns.DENSE] == (not scatter)


def test_explicit_address_tensors_and_order_edges(recorded, monkeypatch):
    def kern(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        fixed = nl.ndarray((128, 64), nl.float32, address=512, name="fixed")
        nisa.dma_copy(dst=fixed, src=x[:, 0:64])
        for i in range(6):
            t = nl.ndarray((128, 64), nl.float32, name=f"t{i}")
            nisa.dma_copy(dst=t, src=x[:, i * 64:(i + 1) * 64])
            nisa.tensor_tensor(dst=t, data1=t, data2=fixed, op=nl.add)
            nisa.dma_copy(dst=out[:, i * 64:(i + 1) * 64], src=t)
        return out

    program = recorded(lambda: trnsim.run_kernel(
        kern, (np.zeros((128, 384), np.float32),), chip="trn2", numerics=False))[0]
    program.instructions[5].attrs = {**program.instructions[5].attrs, "depends_on": (1, 3)}
    got = _handed_over(program, monkeypatch)
    assert got._access_columns.depends_on == [(5, [1, 3])]


def test_lnc2(recorded, monkeypatch):
    def k(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        c = nl.program_id(0)
        for i in range(3):
            t = nl.ndarray((128, 256), nl.float32)
            nisa.dma_copy(dst=t, src=x[c * 128:(c + 1) * 128, :])
            nisa.activation(dst=t, op=nl.exp, data=t)
            nisa.dma_copy(dst=out[c * 128:(c + 1) * 128, :], src=t)
        return out

    program = recorded(lambda: trnsim.run_kernel(
        k, (np.zeros((256, 256), np.float32),), lnc=2, chip="trn2", numerics=False))[0]
    got = _handed_over(program, monkeypatch)
    assert {core for _, core in got._access_columns.maps} == {0, 1}


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
            _same_columns(cols, access_columns.build(got.instructions))
            fell += 1
        else:
            _handed_over(program, monkeypatch)
            handed += 1
    assert handed >= 20 and fell >= 3, (handed, fell)


def test_programs_without_block_accesses(monkeypatch):
    program = _random_program(2)
    hbm_only = Program(program.chip, 1, [copy.copy(i) for i in program.instructions], {},
                       None, [])
    for ins in hbm_only.instructions:
        ins.reads = ins.writes = ins.reads[-1:]
    for p in (hbm_only, Program(program.chip, 1, [], {}, None, [])):
        _handed_over(p, monkeypatch)


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
    values: dict = {}  # the moved accesses' bytes, and the placements'
    for x in got.instructions:
        for acc in x.reads + x.writes:
            if acc.space != "hbm" and acc.alloc >= 0 \
                    and not program.allocations[acc.alloc].explicit:
                for v in (acc.lo, acc.hi):
                    assert values.setdefault(v, v) is v
    for p in got.memory.placements:
        if not program.allocations[p.alloc].explicit:
            assert values.get(p.start, p.start) is p.start
