"""The allocation pass computed over columns with a numba walk
(trnsim/compiler/compiled_allocation.py) against the Python allocator
(trnsim/compiler/allocation.py): the same program (every physical access, indices,
order edges, fences) and the same MemoryPlan (placements in order, usage steps, peaks)
on kernels that fit, and the Python result where a block needs an eviction."""
import copy

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.compat as compat
import trnsim.compiler as compiler
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.compiler import allocation
from trnsim.machine.access import with_bytes
from trnsim.machine.record import Program
from trnsim.timing import access_columns

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation  # noqa: E402


@pytest.fixture
def legacy():
    was = compat.installed()
    compat.install()
    try:
        import neuronxcc.nki as nki
        import neuronxcc.nki.compiler as ncc
        import neuronxcc.nki.isa as lisa
        import neuronxcc.nki.language as lnl
        yield nki, lnl, lisa, ncc
    finally:
        if not was:
            compat.uninstall()


def _copy(p: Program) -> Program:
    """A program the passes can change without touching `p` (they set index, reads,
    writes and attrs of its instructions)."""
    ins = [copy.copy(i) for i in p.instructions]
    return Program(p.chip, p.lnc, ins, p.allocations, None, list(p.fences))


@pytest.fixture
def recorded(monkeypatch):
    """Runs a kernel (a callable) and returns the programs handed to `allocate`."""
    monkeypatch.setenv("TRNSIM_COMPILED", "0")
    seen = []

    def grab(program):
        seen.append(_copy(program))
        return allocation.allocate(program)

    monkeypatch.setattr(compiler, "allocate", grab)

    def run(go):
        seen.clear()
        go()
        assert seen
        return list(seen)
    return run


def _same(a: Program, b: Program) -> None:
    assert len(a.instructions) == len(b.instructions)
    for x, y in zip(a.instructions, b.instructions):
        assert (x.index, x.reads, x.writes, x.attrs) == (y.index, y.reads, y.writes, y.attrs)
    assert a.fences == b.fences and a.lnc == b.lnc
    pa, pb = a.memory, b.memory
    assert pa.placements == pb.placements
    assert pa.spills == pb.spills
    assert list(pa.usage) == list(pb.usage)
    assert all(list(pa.usage[k]) == list(pb.usage[k]) for k in pa.usage)
    assert pa.peak == pb.peak and pa.capacity == pb.capacity


def _check(program: Program) -> Program:
    """The compiled allocation of `program`, after checking it equals the Python one
    and hands over the access columns build() would make of it."""
    want = allocation._Allocator(_copy(program)).run()
    got = compiled_allocation.allocate_compiled(_copy(program))
    assert got is not None, "fell back"
    _same(want, got)
    cols = got.__dict__.get("_access_columns")
    assert cols is not None, "columns not handed over"
    same_columns(cols, access_columns.build(got.instructions))
    return got


def same_columns(got, want) -> None:
    assert got.instrs is want.instrs and got.n == want.n
    for name in ("acc", "ptr", "wptr", "forms"):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name
    assert got.spaces == want.spaces
    assert got.maps == want.maps
    assert got.depends_on == want.depends_on


def _current_api_matmul(lhsT, rhs):
    K, M = lhsT.shape
    _, N = rhs.shape
    result = nl.ndarray((M, N), dtype=lhsT.dtype, buffer=nl.hbm)
    for m in nl.affine_range(M // 128):
        a_tiles = []
        for k in nl.affine_range(K // 128):
            a = nl.ndarray((128, 128), dtype=lhsT.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=a, src=lhsT[k * 128:(k + 1) * 128, m * 128:(m + 1) * 128])
            a_tiles.append(a)
        for n in nl.affine_range(N // 512):
            acc = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
            for k in nl.affine_range(K // 128):
                b = nl.ndarray((128, 512), dtype=rhs.dtype, buffer=nl.sbuf)
                nisa.dma_copy(dst=b, src=rhs[k * 128:(k + 1) * 128, n * 512:(n + 1) * 512])
                nisa.nc_matmul(dst=acc, stationary=a_tiles[k], moving=b)
            out = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=out, src=acc)
            nisa.dma_copy(dst=result[m * 128:(m + 1) * 128, n * 512:(n + 1) * 512], src=out)
    return result


def test_current_api_tiled_matmul_with_psum_accumulation(recorded):
    f32 = np.float32
    programs = recorded(lambda: trnsim.run_kernel(
        _current_api_matmul, (np.zeros((512, 256), f32), np.zeros((512, 2048), f32)),
        chip="trn2", numerics=False))
    got = _check(programs[0])
    assert got.memory.peak[("psum", 0)] > 0 and len(got.memory.usage[("psum", 0)]) > 2


def test_legacy_tutorial_matmul(recorded):
    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy
    tiled = load_example("legacy/matmul_tutorial").VARIANTS["tiled"].fn
    bf = ml_dtypes.bfloat16
    programs = recorded(lambda: run_legacy(
        tiled, (np.zeros((1024, 256), bf), np.zeros((1024, 1024), bf)), {},
        chip="trn1", numerics=False))
    _check(programs[0])


@pytest.mark.parametrize("scatter", [False, True])
def test_an_access_over_several_blocks(legacy, recorded, scatter):
    """An access over all the blocks of a legacy block tensor (the last store's read
    widened: kernels index one block per operand): blocks side by side give one
    range, blocks with another tile placed between them their box."""
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
    assert ys.blocks == 4
    whole = with_bytes(a, ys.vaddr, ys.vaddr + ys.row_bytes)._replace(bytes=128 * ys.row_bytes)
    store.reads = (whole,) + store.reads[1:]
    got = _check(program)
    places = [p for p in got.memory.placements if p.alloc == ys.id]
    starts = [p.start for p in places]
    assert (starts == list(range(starts[0], starts[0] + 4 * 256, 256))) != scatter
    read = got.instructions[-1].reads[0]
    assert (read.lo, read.hi) == (min(starts), max(p.start + p.size for p in places))
    # the handed-over columns: the scattered blocks' box is wider than the read's bytes
    cols = got._access_columns
    row = cols.ptr[len(got.instructions) - 1]
    p_lo, p_hi, lo, hi = cols.acc[row]
    dense = cols.column(access_columns.BYTES)[row] >= (p_hi - p_lo) * (hi - lo)
    assert dense == (not scatter)


def test_explicit_address_tensors_reserve_their_bytes(recorded):
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

    programs = recorded(lambda: trnsim.run_kernel(
        kern, (np.zeros((128, 384), np.float32),), chip="trn2", numerics=False))
    got = _check(programs[0])
    fixed = [p for p in got.memory.placements
             if got.memory.allocations[p.alloc].name == "fixed"]
    assert fixed and got.memory.placements[0] is fixed[0]
    others = got.memory.placements[1:]
    assert all(p.start + p.size <= 512 or p.start >= 768 for p in others)


def test_direct_allocation_mod_alloc(legacy, recorded):
    nki, lnl, lisa, ncc = legacy

    @nki.jit
    def k(a):
        out = lnl.ndarray(a.shape, dtype=a.dtype, buffer=lnl.shared_hbm)
        t = lnl.ndarray((a.shape[0], lnl.par_dim(128), 64), dtype=a.dtype,
                        buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
        for i in lnl.affine_range(a.shape[0]):
            t[i] = lnl.load(a[i])
            r = lisa.tensor_tensor(t[i], t[i], op=np.add)
            lnl.store(out[i], value=r)
        return out

    programs = recorded(lambda: k(np.ones((6, 128, 64), np.float32)))
    _check(programs[0])


def test_lnc2(recorded):
    def k(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        c = nl.program_id(0)
        for i in range(3):
            t = nl.ndarray((128, 256), nl.float32)
            nisa.dma_copy(dst=t, src=x[c * 128:(c + 1) * 128, :])
            nisa.activation(dst=t, op=nl.exp, data=t)
            nisa.dma_copy(dst=out[c * 128:(c + 1) * 128, :], src=t)
        return out

    programs = recorded(lambda: trnsim.run_kernel(
        k, (np.zeros((256, 256), np.float32),), lnc=2, chip="trn2", numerics=False))
    got = _check(programs[0])
    assert {("sbuf", 1), ("psum", 1)} <= set(got.memory.usage)
    assert got.memory.peak[("sbuf", 1)] == 1024
    assert {core for _, core in got._access_columns.maps} == {0, 1}


def test_a_kernel_that_spills_falls_back_to_the_python_allocator(legacy, recorded,
                                                                  monkeypatch):
    nki, lnl, lisa, _ = legacy
    block = 32 * 1024

    @nki.jit
    def k(x):
        out = lnl.ndarray(x.shape, dtype=x.dtype, buffer=lnl.shared_hbm)
        ys = lnl.ndarray((8, lnl.par_dim(128), block // 4), dtype=np.float32,
                         buffer=lnl.sbuf)
        for i in lnl.affine_range(8):
            t = lnl.load(x[i])
            ys[i] = lisa.activation(op=lnl.exp, data=t)
        for i in lnl.affine_range(8):
            lnl.store(out[i], value=ys[i])
        return out

    programs = recorded(lambda: k(np.zeros((8, 128, block // 4), np.float32)))
    program = programs[0]
    untouched = _copy(program)
    assert compiled_allocation.allocate_compiled(program) is None
    _same_input(program, untouched)  # nothing changed before falling back
    want = allocation._Allocator(_copy(program)).run()
    assert want.memory.spills
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    _same(want, allocation.allocate(_copy(program)))


def _same_input(a: Program, b: Program) -> None:
    assert [(i.index, i.reads, i.writes, i.attrs) for i in a.instructions] == \
        [(i.index, i.reads, i.writes, i.attrs) for i in b.instructions]


def test_order_edges_and_fences_are_kept(recorded):
    programs = recorded(lambda: trnsim.run_kernel(
        _current_api_matmul, (np.zeros((256, 128), np.float32),
                              np.zeros((256, 512), np.float32)),
        chip="trn2", numerics=False))
    program = programs[0]
    program.instructions[5].attrs = {**program.instructions[5].attrs, "depends_on": (1, 3)}
    program.fences.append((0, 4))
    got = _check(program)
    assert got.instructions[5].attrs["depends_on"] == [1, 3]
    assert got.fences[-1] == (0, 4)


# -- random programs on a small memory: every placement rule, and evictions ------------
def _random_program(seed: int) -> Program:
    """A program over a tiny SBUF and PSUM (1 to 3 KiB, 64-byte alignment; 4 banks of 128
    bytes): tensors of random sizes (some of several blocks, some at explicit
    addresses) come and go, each instruction reading one or two live ones and writing
    one, so that free space fragments and cools at different times; some programs need
    evictions."""
    from types import SimpleNamespace

    from trnsim.machine.access import Access
    from trnsim.machine.record import Allocation, Instruction

    rng = np.random.default_rng(seed)
    sbuf = 1000 + 24 * (seed % 2) + 1024 * (seed % 3)
    core = SimpleNamespace(sbuf_usable_bytes_per_partition=sbuf,
                           sbuf_align_bytes=64, psum_bytes_per_partition=512,
                           psum_bank_bytes=128)
    chip = SimpleNamespace(core=core, name="tiny")
    allocs, live, instrs = {}, [], []
    vaddr = {"sbuf": 1 << 20, "psum": 1 << 20}

    def new_alloc(i):
        space = "psum" if rng.random() < 0.25 else "sbuf"
        explicit = space == "sbuf" and rng.random() < 0.03
        blocks = int(rng.integers(1, 4)) if rng.random() < 0.3 else 1
        block = int(rng.integers(1, 5 if space == "psum" else 8)) * 32 - \
            (8 if rng.random() < 0.2 else 0)
        row = block * blocks - (int(rng.integers(0, block // 2)) if blocks > 1 else 0)
        if explicit:
            base = int(rng.integers(0, 12)) * 64 + (16 if rng.random() < 0.3 else 0)
        else:
            base = vaddr[space]
            vaddr[space] += -(-row // 64) * 64 + 64
        aid = len(allocs)
        allocs[aid] = Allocation(aid, space, 0, f"t{aid}", f"float32[{row}]", "float32",
                                 None, base, row, block, 0, 2, explicit, i)
        live.append(aid)

    def access(aid, mode):
        a = allocs[aid]
        n = a.blocks
        b = int(rng.integers(0, n))
        k = int(rng.integers(1, n - b + 1)) if rng.random() < 0.3 else 1
        lo = a.vaddr + b * a.block_bytes + (8 if rng.random() < 0.3 else 0)
        hi = min(a.vaddr + (b + k) * a.block_bytes, a.vaddr + a.row_bytes)
        hi = max(hi - (8 if rng.random() < 0.3 else 0), lo + 4)
        return Access("dst" if mode == "w" else "src", mode, a.space, 0, a.name, "float32",
                      (2, (hi - lo) // 4), (((hi - lo) // 4, 2), (1, (hi - lo) // 4)), 0, 0,
                      2, lo, hi, (hi - lo) // 4, 2 * (hi - lo), hi - lo, False,
                      -1 if a.explicit and rng.random() < 0.5 else aid)

    hbm = Access("src", "r", "hbm", 0, "x", "float32", (2, 8), ((8, 2), (1, 8)), 0, 0, 1,
                 0, 64, 8, 64, 64, False, -1)
    for i in range(160):
        while len(live) < 2 or (len(live) < 5 and rng.random() < 0.4):
            new_alloc(i)
        picked = rng.choice(live, size=min(len(live), int(rng.integers(1, 4))),
                            replace=False).tolist()
        reads = tuple(access(aid, "r") for aid in picked[1:]) + (hbm,)
        writes = (access(picked[0], "w"),)
        instrs.append(Instruction(i, 0, "vector", "tensor_copy", reads, writes, None, {}))
        for aid in picked:
            if rng.random() < 0.35:
                live.remove(aid)
    return Program(chip, 1, instrs, allocs, None, [])


def test_random_programs_place_as_the_python_allocator_or_fall_back():
    from trnsim.machine.errors import CapacityError
    compiled = fallbacks = 0
    for seed in range(80):
        program = _random_program(seed)
        got = compiled_allocation.allocate_compiled(_copy(program))
        try:
            want = allocation._Allocator(_copy(program)).run()
        except CapacityError:
            assert got is None
            fallbacks += 1
            continue
        if got is None:
            fallbacks += 1
            assert want.memory.spills or len(want.memory.placements) > len(
                {(p.alloc, p.block) for p in want.memory.placements})
        else:
            compiled += 1
            _same(want, got)
    assert compiled >= 20 and fallbacks >= 5, (compiled, fallbacks)


def test_an_instruction_listed_twice_falls_back():
    program = next(p for p in map(_random_program, range(20))
                   if compiled_allocation.allocate_compiled(_copy(p)) is not None)
    program.instructions.append(program.instructions[-1])
    assert compiled_allocation.allocate_compiled(program) is None


def test_programs_without_block_accesses():
    program = _random_program(2)
    hbm_only = Program(program.chip, 1, [copy.copy(i) for i in program.instructions], {},
                       None, [])
    for ins in hbm_only.instructions:
        ins.reads = ins.writes = ins.reads[-1:]
    for p in (hbm_only, Program(program.chip, 1, [], {}, None, [])):
        _check(p)
