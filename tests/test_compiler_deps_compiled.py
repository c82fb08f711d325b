"""The list scheduler's dependency edges (trnsim/compiler/schedule.py) from the compiled
maps over the access columns (trnsim/timing/compiled_deps.py `list_edges`,
trnsim/timing/access_columns.py) against its Python MemoryMaps pass: the same edges
(producer, kind) per consumer and the same issue order, on varied kernels; the access
columns against the Access tuples; the fallback where the compiled maps do not hold the
program."""
import copy

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from kernel_helpers import tutorial_run  # noqa: E402
import trnsim.nki.isa as nisa  # noqa: E402
import trnsim.nki.language as nl  # noqa: E402
from trnsim import nki  # noqa: E402
from trnsim.chips import load_chip  # noqa: E402
from trnsim.compiler import schedule  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing import access_columns, compiled_deps  # noqa: E402
from trnsim.timing.costs import itemsize  # noqa: E402
from trnsim.timing.deps import rows_form  # noqa: E402

from benchmarks.fidelity import strided_stores  # noqa: E402
from test_access_columns_shapes import rows_forms  # noqa: E402
from test_timing_compiled import mixed, random_tiles  # noqa: E402


def _succ(s) -> list:
    """The list scheduler's successor lists [(successor, kind), ...] per producer, from
    `succ` or, where the compiled list scheduler took the edges, its CSR arrays."""
    if s._csr is None:
        return [list(x) for x in s.succ]
    start, succ, kinds = (a.tolist() for a in s._csr)
    return [list(zip(succ[a:b], kinds[a:b])) for a, b in zip(start, start[1:])]


def assert_declined_for_the_python_pass(program, monkeypatch):
    """The compiled list scheduler declines `program`'s dependencies (None) and the
    Python pass gives them: the same successors, some edges."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    s = schedule._ListScheduler(program, load_chip("trn2"), "asap", 64)
    assert s._compiled_dependencies() is None
    monkeypatch.setenv("TRNSIM_COMPILED", "0")
    ref = schedule._ListScheduler(program, load_chip("trn2"), "asap", 64)
    assert _succ(s) == _succ(ref) and any(ref.succ)


def _graph(program, chip, monkeypatch, compiled: bool):
    """(succ, npred, issue order) of the list scheduler, compiled edges or not (on a
    copy of the program: the scheduler assigns engines to floating instructions)."""
    program = copy.deepcopy(program)
    if compiled:
        monkeypatch.setenv("TRNSIM_COMPILED", "1")
    else:
        monkeypatch.setenv("TRNSIM_COMPILED", "0")
    s = schedule._ListScheduler(program, chip, "asap", schedule.DEFAULT_WINDOW)
    succ = _succ(s)
    npred = list(s.npred)
    if compiled:  # the compiled pass ran (no fallback)
        assert s._compiled_dependencies() is not None
    order = s.run().order
    return succ, npred, order


def _same_edges(program, chip_name, monkeypatch):
    chip = load_chip(chip_name)
    py = _graph(program, chip, monkeypatch, False)
    got = _graph(program, chip, monkeypatch, True)
    assert got[1] == py[1]
    assert got[0] == py[0]
    assert got[2] == py[2]
    assert sum(py[1])  # there were edges to compare


def _columns_match(program):
    cols = access_columns.access_columns(program)
    k = 0
    for i, ins in enumerate(program.instructions):
        assert (cols.ptr[i], cols.wptr[i]) == (k, k + len(ins.reads))
        for a in ins.reads + ins.writes:
            row = cols.acc[k]
            assert tuple(row) == (a.p_lo, a.p_hi, a.lo, a.hi)
            shared = cols.shared[:, cols.source[k]]
            assert shared[access_columns.BYTES] == a.bytes
            assert cols.spaces[shared[access_columns.SPACE]] == a.space
            if a.space == "hbm":
                f = rows_form(a, itemsize(a.dtype))
                assert rows_forms(cols, [k]) == [[int(f is not None), *(f or (0, 0, 0, 0))]]
                assert shared[access_columns.MAP] == -1
            else:
                assert cols.maps[shared[access_columns.MAP]] == (a.space, a.core)
            k += 1
    assert k == len(cols.acc)
    assert access_columns.access_columns(program) is cols  # kept on the program


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
@pytest.mark.parametrize("variant", ["tiled", "hoisted", "block_free", "block_mnk"])
def test_matmul_tutorial(variant, chip, monkeypatch):
    run = tutorial_run(variant, chip)
    _columns_match(run.program)
    _same_edges(run.program, chip, monkeypatch)


@pytest.mark.parametrize("seed", [0, 1])
def test_dma_queues_dge_and_depends_on(seed, monkeypatch):
    x = np.zeros((128, 64 * 24), ml_dtypes.bfloat16)
    w = np.zeros((128, 64), ml_dtypes.bfloat16)
    _, run = trnsim.run_kernel(mixed, (x, w), {"seed": seed}, chip="trn2", numerics=False)
    assert any(ins.attrs.get("depends_on") for ins in run.program)
    _same_edges(run.program, "trn2", monkeypatch)


@pytest.mark.parametrize("seed", range(3))
def test_partial_boxes_and_holey_writes(seed, monkeypatch):
    _, run = trnsim.run_kernel(random_tiles, (np.zeros((128, 512), np.float32),),
                               {"seed": seed}, chip="trn2", numerics=False)
    _same_edges(run.program, "trn2", monkeypatch)


@nki.jit
def column_blocks(x):
    """Stores of tiles into column blocks of HBM tensors of three row pitches, one
    with runs that wrap past a row end, read back by a strided load."""
    outs = [nl.ndarray((128, c), nl.float32, buffer=nl.shared_hbm) for c in (64, 96, 40)]
    for j in range(6):
        t = nl.ndarray((128, 16), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[:, j * 16:(j + 1) * 16])
        for o in outs:
            c0 = (j * 16) % (o.shape[1] - 15)
            nisa.dma_copy(dst=o[:, c0:c0 + 16], src=t)
    back = nl.ndarray((128, 32), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=back, src=outs[1][:, 8:40])
    wrap = nl.ndarray((64, 80), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=wrap, src=outs[2].reshape((64, 80)))
    nisa.dma_copy(dst=outs[0][:, 0:32], src=back)
    return outs[0]


def test_hbm_row_pitches(monkeypatch):
    _, run = trnsim.run_kernel(column_blocks, (np.zeros((128, 96), np.float32),),
                               chip="trn2", numerics=False)
    _columns_match(run.program)
    _same_edges(run.program, "trn2", monkeypatch)


def test_strided_stores(monkeypatch):
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 64), np.float32),),
                               chip="trn2", numerics=False)
    _same_edges(run.program, "trn2", monkeypatch)


@nki.jit
def explicit_and_fan_in(x):
    """Explicitly placed tiles; a tile read by many compute instructions, then by DMA
    queues, then rewritten (long reader lists)."""
    a = nl.ndarray((128, 64), nl.float32, address=4096, name="a")
    b = nl.ndarray((64, 32), nl.float32, address=(32, 1024), name="b")
    out = nl.ndarray((128, 64 * 3), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=a, src=x[:, 0:64])
    engines = [nisa.vector_engine, nisa.scalar_engine, nisa.gpsimd_engine]
    for r in range(3):
        for k in range(12):
            u = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=u, data=a, op0=nl.multiply, operand0=float(k),
                               engine=engines[k % 3])
            nisa.tensor_copy(dst=b[:, k % 4 * 8:k % 4 * 8 + 8], src=u[32:96, 0:8])
        nisa.dma_copy(dst=out[:, r * 64:(r + 1) * 64], src=a)
        nisa.dma_copy(dst=out[0:64, r * 64:r * 64 + 32], src=b)
        nisa.dma_copy(dst=a, src=x[:, (r + 1) * 64:(r + 2) * 64])
    return out


def test_explicit_addresses_and_long_reader_lists(monkeypatch):
    _, run = trnsim.run_kernel(explicit_and_fan_in, (np.zeros((128, 256), np.float32),),
                               chip="trn2", numerics=False)
    _columns_match(run.program)
    _same_edges(run.program, "trn2", monkeypatch)


def _access(mode, space, lo, hi, p_lo=0, p_hi=1, core=0):
    n = (hi - lo) // 4
    return Access("x", mode, space, core, "t", "float32", (p_hi - p_lo, n), ((n, 1),), 0,
                  p_lo, p_hi, lo, hi, n, (p_hi - p_lo) * n * 4, n * 4)


def _synthetic(base):
    """Collectives on two cores (order edges per core), DMAs and compute through HBM
    at `base` and SBUF, and a depends_on naming a later and an earlier instruction."""
    sb = lambda m, lo: _access(m, "sbuf", lo, lo + 256, 0, 64)  # noqa: E731
    hbm = lambda m, lo: _access(m, "hbm", base + lo, base + lo + 256)  # noqa: E731
    spec = [  # engine, core, reads, writes, attrs
        ("dma", 0, [hbm("r", 0)], [sb("w", 0)], {}),
        ("cc", 0, [hbm("r", 0)], [hbm("w", 512)], {}),
        ("vector", 0, [sb("r", 0)], [sb("w", 256)], {"depends_on": [5, 1]}),
        ("cc", 1, [], [hbm("w", 1024)], {}),
        ("cc", 0, [hbm("r", 768)], [hbm("w", 1280)], {}),
        ("dma", 0, [sb("r", 256)], [hbm("w", 256)], {}),
        ("cc", 1, [hbm("r", 2048)], [], {"depends_on": [0]}),
        ("scalar", 0, [sb("r", 0), sb("r", 256)], [sb("w", 0)], {}),
    ]
    instrs = [Instruction(i, core, eng, "op", tuple(r), tuple(w), None, attrs,
                          "qSyncIO" if eng == "dma" else None)
              for i, (eng, core, r, w, attrs) in enumerate(spec)]
    return Program(load_chip("trn2"), 2, instrs)


def test_collectives_and_depends_on(monkeypatch):
    program = _synthetic(0)
    _columns_match(program)
    _same_edges(program, "trn2", monkeypatch)
    chip = load_chip("trn2")
    succ = _graph(program, chip, monkeypatch, True)[0]
    order = schedule._ORDER
    assert (4, order) in succ[1] and (6, order) in succ[3]  # each core's collectives
    assert (2, order) in succ[1] and (6, order) in succ[0]  # depends_on (earlier ones)
    assert all(c != 2 for c, _ in succ[5])


def test_addresses_beyond_the_byte_axis_fall_back(monkeypatch):
    """HBM addresses past 2**48: the compiled maps do not hold them, the Python pass
    gives the edges."""
    program = _synthetic(1 << compiled_deps.MAP_SHIFT)
    with pytest.raises(OverflowError):
        compiled_deps.list_edges(program, list(range(len(program))), [])
    assert_declined_for_the_python_pass(program, monkeypatch)


def test_too_many_row_pitches_fall_back(monkeypatch):
    """Strided HBM stores of more row pitches than the compiled maps hold (each a map
    of its own): the Python pass gives the edges."""
    def rows(mode, lo, pitch):  # two rows of 16 bytes, `pitch` floats apart
        return Access("x", mode, "hbm", 0, "t", "float32", (2, 4), ((pitch, 2), (1, 4)), 0,
                      0, 1, lo, lo + pitch * 4 + 16, 8, 32, 16)
    pitches = range(8, 8 + compiled_deps.MAX_PITCHES + 1)
    instrs = [Instruction(i, 0, "dma", "dma_copy", (), (rows("w", 64 * i, p),), None, {},
                          "qSyncIO") for i, p in enumerate(pitches)]
    program = Program(load_chip("trn2"), 1, instrs)
    assert rows_form(instrs[0].writes[0], 4) == (32, 0, 2, 16)
    with pytest.raises(OverflowError):
        compiled_deps.list_edges(program, [len(instrs)] * len(instrs), [])
    assert_declined_for_the_python_pass(program, monkeypatch)


@pytest.mark.parametrize("small", ["every capacity", "the producer buffer"])
def test_retry_with_more_capacity(small):
    """Capacities too small for the program (or only the buffer of one access's
    producers): the compiled maps run again with more."""
    _, run = trnsim.run_kernel(random_tiles, (np.zeros((128, 512), np.float32),),
                               {"seed": 1}, chip="trn2", numerics=False)
    n = len(run.program)
    tkey = list(range(n))
    ref = compiled_deps.list_edges(run.program, tkey, [])
    big = 64 * n + 64
    caps = (2, 2, 2, 2, 2) if small == "every capacity" else (big, big, big, big, 1)
    if small == "the producer buffer":
        assert len(ref[1]) > n  # (accesses with producers: the buffer of 1 overflows)
    got = compiled_deps.list_edges(run.program, tkey, [], caps=caps)
    for a, b in zip(ref, got):
        assert a.tolist() == b.tolist()


def test_columns_are_rebuilt_for_another_instruction_list():
    _, run = trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 4), np.float32),),
                               chip="trn2", numerics=False)
    cols = access_columns.access_columns(run.program)
    run.program.instructions = run.program.instructions[:-1]
    again = access_columns.access_columns(run.program)
    assert again is not cols and again.n == cols.n - 1
