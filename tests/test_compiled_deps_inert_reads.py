"""HBM reads the compiled dependency maps leave out (trnsim/timing/compiled_deps.py
inert_reads: reads whose rows, and those of every access chained to them by
overlapping rows in their map, no write reaches): kept on the access columns, so the
list scheduler's walk and the timing scheduler's read one mask. The edges of both walks
must be the Python maps' (trnsim/timing/deps.py, which record every read), where reads
are left out and where a read whose own bytes no write meets must stay in (a wider read
chains it to a write's rows: leaving it out reorders a write's WAR producers), and
after the program changes between the two walks."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.chips import load_chip  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing import compiled_deps  # noqa: E402
from trnsim.timing.access_columns import HI, LO, MAP, access_columns  # noqa: E402
from trnsim.timing.scheduler import _Scheduler  # noqa: E402

from test_compiled_deps_shortcuts import _same_both_ways, _tile  # noqa: E402
from test_timing_compiled import _python_dependencies  # noqa: E402

COLS = 64  # float32 columns of the matrices: a row pitch of 256 bytes
INPUT, OUTPUT = 0, 1 << 16  # two matrices, the output's rows past the input's


def _sb(mode, lo, rows=8, w=16):
    return Access("x", mode, "sbuf", 0, "t", "float32", (rows, w), ((w, 1),), 0, 0,
                  rows, lo, lo + 4 * w, w, 4 * rows * w, 4 * w)


def _dma(i, read, write, queue):
    return Instruction(i, 0, "dma", "op", (read,), (write,), None, {}, queue)


def _tiled_program(seed, n=300) -> Program:
    """Row tiles of INPUT loaded by two queues, some added on the vector engine and
    stored into OUTPUT: every INPUT read can be left out."""
    rng = np.random.default_rng(seed)
    instrs = []
    for i in range(n):
        sb = 512 * int(rng.integers(16))
        kind = rng.integers(4)
        if kind <= 1:
            r0, c0 = 8 * int(rng.integers(7)), 16 * int(rng.integers(4))
            instrs.append(_dma(i, _tile("r", INPUT, COLS, r0, 8, c0, 16), _sb("w", sb),
                               ("qSyncIO", "qAct")[kind]))
        elif kind == 2:
            r0, c0 = 8 * int(rng.integers(7)), 16 * int(rng.integers(4))
            instrs.append(_dma(i, _sb("r", sb), _tile("w", OUTPUT, COLS, r0, 8, c0, 16),
                               "qSyncIO"))
        else:
            instrs.append(Instruction(i, 0, "vector", "op", (_sb("r", sb),),
                                      (_sb("w", 512 * int(rng.integers(16))),), None, {},
                                      None))
    return Program(load_chip("trn2"), 1, instrs)


def _inputs_read(program) -> np.ndarray:
    cols = access_columns(program)
    hbm = cols.column(MAP) < 0
    return hbm & (cols.acc[:, HI] <= OUTPUT)


@pytest.mark.parametrize("seed", range(3))
def test_reads_no_write_reaches_are_left_out_with_the_same_edges(seed, monkeypatch):
    program = _tiled_program(seed)
    inert = compiled_deps.inert_reads(access_columns(program)).astype(bool)
    assert inert.any() and (inert == _inputs_read(program)).all()
    _same_both_ways(program, monkeypatch)
    # both walks read the one mask kept on the columns
    assert compiled_deps.inert_reads(access_columns(program)) is \
        access_columns(program).inert


def _chained_program() -> Program:
    """X (qAct) reads input rows 0-16, R (qSyncIO) rows 0-8, U (qPool) rows 0-16, R2
    (qSyncIO) rows 4-16, then rows 8-16 are written: R's bytes meet no write, but R
    shares X's Rec (rows 0-16), where R2 then takes R's place and keeps the order of
    R's first read among the readers (X, R2, U); without R it would come last."""
    reads = [(0, 16, "qAct"), (0, 8, "qSyncIO"), (0, 16, "qPool"), (4, 12, "qSyncIO")]
    instrs = [_dma(i, _tile("r", INPUT, COLS, r0, rows, 0, 16), _sb("w", 1024 * i, rows),
                   q) for i, (r0, rows, q) in enumerate(reads)]
    instrs.append(_dma(len(instrs), _sb("r", 8192), _tile("w", INPUT, COLS, 8, 8, 0, 16),
                       "qSyncIO"))
    return Program(load_chip("trn2"), 1, instrs)


def _bytes_no_write_meets(cols) -> np.ndarray:
    """The reads a rule by an access's own bytes alone would leave out (wrong)."""
    hbm = cols.column(MAP) < 0
    write = np.zeros(len(cols.acc), bool)
    for i in range(cols.n):
        write[cols.wptr[i]:cols.ptr[i + 1]] = True
    lo, hi = cols.acc[:, LO], cols.acc[:, HI]
    met = [((lo[write & hbm] < hi[a]) & (lo[a] < hi[write & hbm])).any()
           for a in range(len(lo))]
    return (hbm & ~write & ~np.array(met)).astype(np.uint8)


def test_a_read_chained_to_a_written_row_stays(monkeypatch):
    program = _chained_program()
    assert not compiled_deps.inert_reads(access_columns(program)).any()
    _same_both_ways(program, monkeypatch)
    # the rule by own bytes leaves R out, and the timing walk's WAR order changes: the
    # comparison above fails where the chain is not followed
    wrong = _chained_program()
    assert _bytes_no_write_meets(access_columns(wrong)).tolist() == \
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    monkeypatch.setattr(compiled_deps, "_inert_reads", _bytes_no_write_meets)
    chip = load_chip("trn2")
    ref = _python_dependencies(_Scheduler(wrong, chip, None, {}))
    got = compiled_deps.collect(_Scheduler(wrong, chip, None, {}), {"": 0})
    assert [x.tolist() for x in got[:3]] != list(ref[:3])


def test_a_program_changed_between_the_walks_gets_its_own_mask(monkeypatch):
    """The list scheduler's walk keeps the mask on its program's columns; a program
    made after it (a store into the input's rows added) has other columns and a mask
    of its own, so the timing walk leaves out none of the reads that now meet it."""
    program = _tiled_program(0)
    n = len(program.instructions)
    compiled_deps.list_edges(program, list(range(n)), [])
    assert compiled_deps.inert_reads(access_columns(program)).any()
    store = _dma(n, _sb("r", 0), _tile("w", INPUT, COLS, 0, 56, 0, 64), "qSyncIO")
    changed = Program(program.chip, 1, list(program.instructions) + [store])
    cols = access_columns(changed)
    assert cols is not access_columns(program)
    assert not compiled_deps.inert_reads(cols).any()
    _same_both_ways(changed, monkeypatch)
