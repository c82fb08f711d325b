"""The summary and insights read from arrays (profile/operands.py) give what reading
every instruction's operands one by one gives: the references below are the loops
profile/summary.py and profile/insights.py ran before, over the physical accesses."""
from collections import defaultdict
from operator import attrgetter

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.examples import load_example
from trnsim.legacy.jit import run_legacy
from trnsim.profile import insights, operands, summary
from trnsim.profile.profile import Profile

from benchmarks.fidelity import proj_kernel, strided_stores
from benchmarks.spills import two_pass


def _tutorial():
    kernel = load_example("legacy/matmul_tutorial").VARIANTS["tiled"]
    bf = ml_dtypes.bfloat16
    return run_legacy(kernel.fn, (np.zeros((1024, 256), bf), np.zeros((1024, 1024), bf)),
                      {}, chip="trn1", numerics=False)[1]


def _strided():
    return trnsim.run_kernel(strided_stores, (np.zeros((128, 8 * 64), np.float32),),
                             chip="trn2", numerics=False)[1]


def _spilling():
    return run_legacy(two_pass, (np.zeros((16, 128, 8192), np.float32),), chip="trn2",
                      numerics=False)[1]


def _fp8():
    f8 = ml_dtypes.float8_e4m3
    return trnsim.run_kernel(proj_kernel, (np.zeros((512, 512), f8), np.zeros((512, 1024), f8)),
                             {"double_row": True}, chip="trn2", numerics=False)[1]


RUNS = {"tutorial": _tutorial, "strided": _strided, "spilling": _spilling, "fp8": _fp8}


@pytest.fixture(scope="module", params=list(RUNS))
def prof(request):
    p = Profile.from_run(RUNS[request.param]())
    return p, p.summary, p.all_insights  # (the fast path first: no access made yet)


def _reference_figures(program, chip) -> dict:
    s, traffic = {}, defaultdict(int)
    hw = tr = matmuls = evac = evac_bytes = 0
    hw_adj = tr_adj = 0.0
    for ins in program.instructions:
        f = summary.matmul_flops(ins, chip)
        if f is not None:
            hw, hw_adj = hw + f[0], hw_adj + f[1]
            if f[2]:
                tr, tr_adj = tr + f[0], tr_adj + f[1]
            else:
                matmuls += 1
        for mode, side in (("read", ins.reads), ("write", ins.writes)):
            for a in side:
                if summary.moves_data(ins, a):
                    traffic[(a.space, mode)] += a.bytes
        if ins.engine != "dma" and any(a.space == "psum" for a in ins.reads):
            sb = sum(a.bytes for a in ins.writes if a.space == "sbuf")
            evac, evac_bytes = evac + bool(sb), evac_bytes + sb
    for space in ("hbm", "sbuf", "psum"):
        for mode in ("read", "write"):
            s[f"{space}_{mode}_bytes"] = traffic[(space, mode)]
    dmas = [i for i in program.instructions if i.engine == "dma"]
    s.update(model_flops=hw - tr, hardware_flops=hw, transpose_flops=tr,
             adjusted_model_flops=int(round(hw_adj - tr_adj)),
             adjusted_hardware_flops=int(round(hw_adj)),
             adjusted_transpose_flops=int(round(tr_adj)), matmul_instruction_count=matmuls,
             psum_read_sbuf_write_count=evac, psum_read_sbuf_write_bytes=evac_bytes,
             dma_transfer_count=len(dmas),
             dma_transfer_total_bytes=sum(i.bytes_moved for i in dmas),
             spill_save_bytes=sum(i.bytes_moved for i in summary.spill_dmas(program, "save")),
             spill_reload_bytes=sum(i.bytes_moved for i in
                                    summary.spill_dmas(program, "reload")))
    return s


def _reference_hbm(program):
    """(reload bytes, reloaded(2) with (index, lo, hi) per read, round trip reads and
    writes as (index, lo, hi))."""
    reads, trip_reads, trip_writes = defaultdict(list), [], []
    dmas = [i for i in program.instructions if i.engine == "dma"]
    written = summary._Spans()  # (the interval set: not what is under test)
    for ins in dmas:
        for a in ins.reads:
            if a.space == "hbm":
                if not a.indirect:
                    reads[(a.lo, a.hi, a.pattern, a.dtype)].append((ins, a))
                if written.hits(a.lo, a.hi):
                    trip_reads.append((ins, a))
        for a in ins.writes:
            if a.space == "hbm":
                written.add(a.lo, a.hi)
    later = summary._Spans()
    for ins in reversed(dmas):
        for a in ins.writes:
            if a.space == "hbm" and later.hits(a.lo, a.hi):
                trip_writes.append((ins, a))
        for a in ins.reads:
            if a.space == "hbm":
                later.add(a.lo, a.hi)
    trip = {(ins.index, id(a)) for ins, a in trip_reads}
    reload = sum(a.bytes for group in reads.values() for n, (ins, a) in enumerate(group)
                 if n > 0 or (ins.index, id(a)) in trip)
    out = {}
    for group in reads.values():
        group = [(ins, a) for ins, a in group if not ins.attrs.get("spill")]
        if len(group) <= 2:
            continue
        name = group[0][1].tensor or "?"
        count, extra, items = out.get(name, (0, 0, []))
        out[name] = (max(count, len(group)), extra + sum(a.bytes for _, a in group[1:]),
                     items + [(i.index, a.lo, a.hi) for i, a in group])
    return reload, out, _where(trip_reads), _where(trip_writes[::-1])


def _where(pairs) -> list:
    return [(i.index, a.lo, a.hi) for i, a in pairs]


def _reference_stalls(c):
    at = {i: p for p, i in enumerate(c.spans.index.tolist())}
    start, end, ready = c.start.tolist(), c.end.tolist(), c.ready.tolist()
    producer = c.producer.tolist()
    for core in range(c.ncores):
        evs = sorted((at[i.index] for i in c.program.instructions
                      if i.engine == "tensor" and i.index in at and i.core == core),
                     key=start.__getitem__)
        for prev, p in zip(evs, evs[1:]):
            idle = min(start[p], ready[p]) - end[prev]
            if idle > 0 and producer[p] >= 0 and producer[p] in at:
                yield c.spans.index[p], producer[p], idle


def test_figures_equal_reading_every_operand(prof):
    p, s, _ = prof
    expected = _reference_figures(p.program, p.chip)
    assert {k: s[k] for k in expected} == expected
    assert all(type(s[k]) is type(v) for k, v in expected.items())


def test_hbm_reloads_and_round_trips_equal_the_sweep(prof):
    p, s, _ = prof
    hbm = summary.HbmTraffic(p.program)
    reload, reloaded, trip_reads, trip_writes = _reference_hbm(p.program)
    assert s["hbm_reload_bytes"] == hbm.reload_bytes == reload
    assert {name: (n, x, _where(items)) for name, (n, x, items) in hbm.reloaded(2).items()} \
        == reloaded
    assert _where(hbm.round_trip_reads) == trip_reads
    assert _where(hbm.round_trip_writes) == trip_writes


def test_spilling_kernel_has_round_trips():
    """(so that the sweep above is exercised)"""
    hbm = summary.HbmTraffic(_spilling().program)
    assert hbm.round_trip_reads and hbm.round_trip_writes


def test_dma_runs_and_tensor_stalls_equal_the_loops(prof):
    p, _, _ = prof
    c = insights._Context(p.program, p.timeline, p.summary)
    for ins, run in zip(p.program.instructions, c.dma_runs.tolist()):
        if ins.engine == "dma":
            runs = [a.contiguous_bytes for a in ins.accesses
                    if a.contiguous_bytes > 0 and a.role != "indirect_offset"]
            assert run == (min(runs) if runs else 0)
    got = list(zip(*(x.tolist() for x in insights._tensor_stalls(c))))
    assert got == list(_reference_stalls(c))


def test_ranked_at_equals_ranked(prof):
    p, _, _ = prof
    c = insights._Context(p.program, p.timeline, p.summary)
    rng = np.random.default_rng(0)
    at = rng.integers(0, len(p.program), 500)
    weights = rng.choice([0.0, 1.0, rng.uniform(0, 3), 1e-9], 500)
    pairs = [(p.program.instructions[i], w) for i, w in zip(at.tolist(), weights.tolist())]
    assert insights._ranked_at(c, at, weights) == insights._ranked(pairs)


def test_insights_unchanged_by_making_the_accesses(prof):
    """The fast path read no physical access; with them all made it finds the same."""
    p, s, found = prof
    for ins in p.program.instructions:
        ins.reads  # noqa: B018 - makes the pending physical accesses
    again = insights.find_insights(p.program, p.timeline, summary.summarize(p.program,
                                                                            p.timeline))
    assert [i.to_dict() for i in again] == [i.to_dict() for i in found]


@pytest.mark.parametrize("name,kept", [("tutorial", True), ("strided", True), ("fp8", False)])
def test_operands_off_the_access_columns_equal_reading_them(name, kept):
    """(the fp8 kernel's program is small: priced without access columns; the
    reference reads each instruction's own operands, made where still pending)"""
    program = Profile.from_run(RUNS[name]()).program
    columns = operands._columns(program)
    assert (columns[0] is not None) == kept
    fast = operands.Operands(program)
    for operand, side in (("reads", fast.reads), ("writes", fast.writes)):
        plain = operands.Side(list(map(attrgetter(operand), program.instructions)))
        for field in ("at", "space", "bytes"):
            assert np.array_equal(getattr(side, field), getattr(plain, field))
        hbm = np.flatnonzero(side.space == operands.HBM)
        assert len(hbm) and all(map(np.array_equal, side.hbm_bounds(hbm),
                                    plain.hbm_bounds(hbm)))
        every = np.arange(len(side.at))
        assert all(map(np.array_equal, side.runs(every), plain.runs(every)))
