"""The compiler model's scheduling passes (trnsim/compiler/schedule.py, hoist.py): the
issue order interleaves independent iterations and keeps every dependency, fences keep
program order, loop-invariant loads are issued once, engine-agnostic work goes to an
idle engine. Dependencies are checked against a brute-force overlap test written here,
not the passes' interval maps."""
from __future__ import annotations

import ml_dtypes
import numpy as np

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.legacy import language as lnl
from trnsim.legacy.jit import run_legacy
from trnsim.timing import schedule

G = 6  # groups / iterations


@trnsim.nki.jit
def transpose_then_matmul(x, w):
    """Per group: transpose x[g] on the PE, copy it out of PSUM on Vector, matmul it with
    w. In program order the PE waits on each copy before its matmul."""
    out = nl.ndarray((x.shape[0], 128, 512), nl.float32, buffer=nl.shared_hbm)
    ws = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=ws, src=w)
    for g in range(x.shape[0]):
        xt = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=xt, src=x[g])
        tp = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.psum)
        nisa.nc_transpose(dst=tp, data=xt)
        ts = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.sbuf)
        nisa.tensor_copy(dst=ts, src=tp, engine=nisa.vector_engine)
        acc = nl.ndarray((128, 512), nl.float32, buffer=nl.psum)
        nisa.nc_matmul(dst=acc, stationary=ts, moving=ws)
        o = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=o, src=acc, engine=nisa.vector_engine)
        nisa.dma_copy(dst=out[g], src=o)
    return out


def _inputs():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((G, 128, 128)).astype(ml_dtypes.bfloat16)
    w = rng.standard_normal((128, 512)).astype(ml_dtypes.bfloat16)
    return x, w


def _conflicts(a, b) -> bool:
    """Two accesses share a byte (bounding boxes; HBM by byte range)."""
    if a.space != b.space or (a.space != "hbm" and a.core != b.core):
        return False
    if a.space != "hbm" and (a.p_hi <= b.p_lo or b.p_hi <= a.p_lo):
        return False
    return a.lo < b.hi and b.lo < a.hi


def _check_dependencies_kept(program):
    """Every pair of instructions that touch a common byte, one of them writing, is
    issued in program order (a brute-force reference to the pass's maps)."""
    pos = program.issue.position()
    ins = program.instructions
    for j, b in enumerate(ins):
        for i in range(j):
            a = ins[i]
            hit = any(_conflicts(x, y) for x in a.writes for y in b.reads + b.writes) or \
                any(_conflicts(x, y) for x in a.reads for y in b.writes)
            if hit:
                assert pos[i] < pos[j], (a, b)


def test_independent_iterations_interleave_and_dependencies_hold():
    x, w = _inputs()
    prof = trnsim.profile(transpose_then_matmul, x, w, chip="trn2")
    # nc_matmul: stationary.T @ moving, and the stationary is x[g] transposed
    ref = np.stack([x[g].astype(np.float32) @ w.astype(np.float32) for g in range(G)])
    np.testing.assert_allclose(prof.outputs, ref, rtol=1e-5, atol=1e-4)
    prog = prof.program
    _check_dependencies_kept(prog)
    pe = [i for i in prog.issue.order if prog.instructions[i].engine == "tensor"]
    ops = [prog.instructions[i].opcode for i in pe]
    # some group's transpose is issued before the previous group's matmul
    assert ops != ["nc_transpose", "nc_matmul"] * G
    assert any(ops[k:k + 2] == ["nc_transpose", "nc_transpose"] for k in range(len(ops)))
    moved = [e for e in prof.timeline.events if e.moved]
    assert moved and all(e.track == "tensor" or e.track == "vector" for e in moved)
    in_order = schedule(prog, order="program")
    assert not any(e.moved for e in in_order.events)
    assert prof.timeline.total_time < in_order.total_time
    assert prof.timeline.order == "compiler" and in_order.order == "program"


@trnsim.nki.jit
def running_sum(x):
    """Each iteration adds into the same accumulator: a chain, nothing to reorder."""
    out = nl.ndarray((128, 512), nl.float32, buffer=nl.shared_hbm)
    acc = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=acc, value=0.0, engine=nisa.vector_engine)
    for g in range(x.shape[0]):
        t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        nisa.tensor_tensor(dst=acc, data1=acc, data2=t, op=nl.add, engine=nisa.vector_engine)
    nisa.dma_copy(dst=out, src=acc)
    return out


def test_dependent_iterations_keep_their_order():
    x = np.random.default_rng(4).standard_normal((G, 128, 512)).astype(np.float32)
    prof = trnsim.profile(running_sum, x, chip="trn2")
    np.testing.assert_allclose(prof.outputs, x.sum(0), rtol=1e-5)
    prog = prof.program
    vec = [i for i in prog.issue.order if prog.instructions[i].engine == "vector"]
    assert vec == sorted(vec)
    assert not any(e.moved for e in prof.timeline.events)


@trnsim.nki.jit
def transpose_then_matmul_in_order(x, w):
    with nl.no_reorder():
        return transpose_then_matmul.fn(x, w)


def test_no_reorder_keeps_program_order():
    x, w = _inputs()
    prof = trnsim.profile(transpose_then_matmul_in_order, x, w, chip="trn2")
    assert prof.program.issue.order == list(range(len(prof.program)))
    assert prof.timeline.total_time == schedule(prof.program, order="program").total_time


def _legacy_body(x, out, loop):
    for g in loop(x.shape[0]):
        t = lnl.load(x[g])
        u = lnl.multiply(t, 2.0)
        v = lnl.exp(u)
        lnl.store(out[g], value=v)


def _legacy_kernel(loop):
    def kernel(x):
        out = lnl.ndarray(x.shape, dtype=x.dtype, buffer=lnl.shared_hbm)
        _legacy_body(x, out, loop)
        return out
    return kernel


def test_sequential_range_iterations_are_fenced_affine_are_not():
    x = np.random.default_rng(5).standard_normal((G, 128, 256)).astype(np.float32)
    ref = np.exp(2 * x)
    seq_out, seq = run_legacy(_legacy_kernel(lnl.sequential_range), (x,), {}, chip="trn2")
    aff_out, aff = run_legacy(_legacy_kernel(lnl.affine_range), (x,), {}, chip="trn2")
    np.testing.assert_allclose(seq_out, ref, rtol=1e-5)
    np.testing.assert_allclose(aff_out, ref, rtol=1e-5)
    assert len(seq.program.fences) == G + 1 and not aff.program.fences
    for prog in (seq.program, aff.program):
        _check_dependencies_kept(prog)
    # sequential: an iteration's instructions all issue after the previous iteration's
    assert seq.program.issue.order == list(range(len(seq.program)))
    assert aff.program.issue.order != list(range(len(aff.program)))


# -- hoisting ------------------------------------------------------------------------------
@trnsim.nki.jit
def invariant_weight(x, w):
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    kept = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)  # declared outside
    for g in range(x.shape[0]):
        ws = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)  # declared inside
        nisa.dma_copy(dst=ws, src=w)
        nisa.dma_copy(dst=kept, src=w)
        t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=ws, data2=t, op=nl.add)
        b = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=b, data1=a, data2=kept, op=nl.multiply)
        nisa.dma_copy(dst=out[g], src=b)
    return out


def _loads_of(program, hbm_tensor_bytes):
    return [i for i in program.instructions if i.engine == "dma"
            and i.reads and i.reads[0].space == "hbm"
            and i.reads[0].hi - i.reads[0].lo == hbm_tensor_bytes]


def test_loop_invariant_load_is_issued_once():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((G, 128, 512)).astype(np.float32)
    w = rng.standard_normal((128, 512)).astype(np.float32)
    prof = trnsim.profile(invariant_weight, x, w, chip="trn2")
    np.testing.assert_allclose(prof.outputs, (x + w) * w, rtol=1e-6)
    prog = prof.program
    w_loads = [i for i in prog.instructions if i.engine == "dma" and i.reads
               and i.reads[0].space == "hbm" and i.location.line == i.location.line
               and i.attrs.get("hoisted_repeats")]
    assert [i.attrs["hoisted_repeats"] for i in w_loads] == [G - 1, G - 1]
    hbm_loads = [i for i in prog.instructions if i.engine == "dma" and i.reads
                 and i.reads[0].space == "hbm"]
    assert len(hbm_loads) == 2 + G  # the two weight loads once, one x tile per iteration
    assert prof.summary["hbm_read_bytes"] == x.nbytes + 2 * w.nbytes


@trnsim.nki.jit
def varying_and_rewritten(x, w):
    """x[g % 2] changes every iteration (an inner-loop index): reloaded. w is updated in
    place between two loads of it: reloaded."""
    out = nl.ndarray((2 * G, 128, 512), nl.float32, buffer=nl.shared_hbm)
    for g in range(2 * G):
        t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g % 2])
        ws = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=ws, src=w)
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=ws, data2=t, op=nl.add)
        nisa.dma_copy(dst=w, src=a)
        nisa.dma_copy(dst=out[g], src=a)
    return out


def test_loads_that_change_are_not_hoisted():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 128, 512)).astype(np.float32)
    w = rng.standard_normal((128, 512)).astype(np.float32)
    w0 = w.copy()
    prof = trnsim.profile(varying_and_rewritten, x, w, chip="trn2")
    ref, cur = [], w0
    for g in range(2 * G):
        cur = cur + x[g % 2]
        ref.append(cur)
    np.testing.assert_allclose(prof.outputs, np.stack(ref), rtol=1e-5)
    loads = [i for i in prof.program.instructions if i.engine == "dma"
             and i.reads and i.reads[0].space == "hbm"]
    assert len(loads) == 2 * 2 * G
    assert not any(i.attrs.get("hoisted_repeats") for i in loads)


# -- engine assignment ----------------------------------------------------------------------
@trnsim.nki.jit
def busy_vector(x):
    """Vector is loaded with pinned work; the unpinned copies can go elsewhere."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    for g in range(x.shape[0]):
        t = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        a = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=t, data2=t, op=nl.multiply, engine=nisa.vector_engine)
        nisa.tensor_tensor(dst=a, data1=a, data2=t, op=nl.subtract, engine=nisa.vector_engine)
        b = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.tensor_copy(dst=b, src=t)  # engine left to the compiler
        c = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=c, data1=a, data2=b, op=nl.add, engine=nisa.vector_engine)
        nisa.dma_copy(dst=out[g], src=c)
    return out


def test_engine_agnostic_work_lands_on_an_idle_engine():
    x = np.random.default_rng(8).standard_normal((G, 128, 2048)).astype(np.float32)
    prof = trnsim.profile(busy_vector, x, chip="trn2")
    np.testing.assert_allclose(prof.outputs, x * x - x + x, rtol=1e-5, atol=1e-5)
    copies = [i for i in prof.program.instructions if i.opcode == "tensor_copy"]
    assert len(copies) == G
    for ins in copies:
        assert ins.attrs["engines"][0] == "vector"  # recorded on its default
        assert ins.engine in ins.attrs["engines"] and ins.engine != "vector"
    pinned = [i for i in prof.program.instructions if i.opcode == "tensor_tensor"]
    assert all(i.engine == "vector" and "engines" not in i.attrs for i in pinned)
    # NeuronCore-v2: Vector and GpSimd share the SBUF port, so nothing moves between them
    prof = trnsim.profile(busy_vector, x, chip="trn1")
    copies = [i for i in prof.program.instructions if i.opcode == "tensor_copy"]
    assert all(i.attrs["engines"] == ("vector", "gpsimd") and i.engine == "vector"
               for i in copies)


def test_trace_shows_moves_and_engine_choices(tmp_path):
    import json
    x, w = _inputs()
    prof = trnsim.profile(transpose_then_matmul, x, w, chip="trn2")
    prof.to_perfetto(tmp_path / "t.json")
    slices = [e for e in json.loads((tmp_path / "t.json").read_text())["traceEvents"]
              if e.get("ph") == "X"]
    moved = {e["args"]["index"]: e["args"]["moved_up"] for e in slices
             if "moved_up" in e["args"]}
    assert moved == {e.index: e.moved for e in prof.timeline.events if e.moved}
    y = np.random.default_rng(8).standard_normal((G, 128, 2048)).astype(np.float32)
    prof = trnsim.profile(busy_vector, y, chip="trn2")
    prof.to_perfetto(tmp_path / "b.json")
    chosen = [e["args"]["engine"] for e in json.loads((tmp_path / "b.json").read_text())[
        "traceEvents"] if e.get("ph") == "X" and "engine" in e["args"]]
    assert len(chosen) == G and all("chosen by the compiler from vector" in c for c in chosen)


@trnsim.nki.jit
def pinned_to_vector(x):
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    for g in range(x.shape[0]):
        t = nl.ndarray((128, 2048), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        for _ in range(4):
            nisa.tensor_tensor(dst=t, data1=t, data2=t, op=nl.add, engine=nisa.vector_engine)
        nisa.dma_copy(dst=out[g], src=t)
    return out


def test_imbalance_insight_names_the_pinned_lines_and_the_idle_engine():
    x = np.random.default_rng(9).standard_normal((G, 128, 2048)).astype(np.float32)
    prof = trnsim.profile(pinned_to_vector, x, chip="trn2")
    np.testing.assert_allclose(prof.outputs, 16 * x, rtol=1e-6)
    found = {i.rule: i for i in prof.all_insights}
    imb = found["engine_imbalance"]
    assert "VectorE" in imb.message and "GpSimd" in imb.message
    assert "engine=" in imb.recommendation
    line = next(i.location for i in prof.program.instructions if i.opcode == "tensor_tensor")
    assert imb.locations == [str(line)]
