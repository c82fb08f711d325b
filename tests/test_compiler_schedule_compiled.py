"""The compiled list scheduler (trnsim/compiler/compiled_schedule.py) against the Python
one (trnsim/compiler/schedule.py `_ListScheduler.run`): the same issue order, estimate,
`moved` (in its order), engine assignments and estimates, bit for bit, on tiled matmuls
under both heuristics and several windows, DMA queues, engine-agnostic work on trn1 /
trn2 / trn3, fences (no_reorder, sequential_range, core_barrier) and LNC=2; and the
fallback to the Python loop."""
from array import array
from contextlib import nullcontext

import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from kernel_helpers import tutorial_run  # noqa: E402
import trnsim.nki.isa as nisa  # noqa: E402
import trnsim.nki.language as nl  # noqa: E402
from trnsim import nki  # noqa: E402
from trnsim.chips import load_chip  # noqa: E402
from trnsim.compiler import compiled_schedule  # noqa: E402
from trnsim.compiler.schedule import _ListScheduler  # noqa: E402
from trnsim.legacy import language as lnl  # noqa: E402
from trnsim.legacy.jit import run_legacy  # noqa: E402
from trnsim.machine import compiled  # noqa: E402
from trnsim.machine.record import Instruction, Program  # noqa: E402
from trnsim.timing.costs import cost_model  # noqa: E402


def _python(program, chip, heuristic, window, monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "0")
    ls = _ListScheduler(program, chip, heuristic, window)
    return ls, ls.run()


def _compiled(program, chip, heuristic, window, monkeypatch):
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    ls = _ListScheduler(program, chip, heuristic, window)
    return ls, compiled_schedule.issue_order(ls)


def _same(program, chip_name, monkeypatch, heuristics=("asap", "critical_path"),
          windows=(64,)) -> dict:
    """Checks both schedulers agree on `program`; returns what was exercised."""
    chip = load_chip(chip_name)
    engines = [ins.engine for ins in program.instructions]
    seen = {"moved": 0, "reassigned": 0, "floating": 0, "fenced": False}
    for heuristic in heuristics:
        for window in windows:
            ref_ls, ref = _python(program, chip, heuristic, window, monkeypatch)
            ref_engines = [ins.engine for ins in program.instructions]
            for ins, e in zip(program.instructions, engines):
                ins.engine = e
            ls, got = _compiled(program, chip, heuristic, window, monkeypatch)
            got_engines = [ins.engine for ins in program.instructions]
            for ins, e in zip(program.instructions, engines):
                ins.engine = e
            assert got is not None, "the compiled scheduler fell back"
            assert got.order == ref.order, (heuristic, window)
            assert got.estimate_ns == ref.estimate_ns
            assert list(got.moved.items()) == list(ref.moved.items())
            assert (got.heuristic, got.window) == (ref.heuristic, ref.window)
            assert got_engines == ref_engines
            assert ls.est.tolist() == ref_ls.est and ls.res == ref_ls.res
            seen["moved"] += len(ref.moved)
            seen["reassigned"] += sum(a != b for a, b in zip(engines, ref_engines))
            seen["floating"] += sum(ls.floating)
            seen["fenced"] |= ls.fenced
    return seen


@pytest.mark.parametrize("chip", ["trn1", "trn3"])
@pytest.mark.parametrize("variant", ["tiled", "hoisted", "block_free", "block_mnk"])
def test_matmul_tutorial_heuristics_and_windows(variant, chip, monkeypatch):
    run = tutorial_run(variant, chip)
    seen = _same(run.program, chip, monkeypatch, windows=(1, 3, 64))
    # (trn3's tiled loops keep their order; block_mnk's loops are sequential_range)
    assert seen["moved"] > 0 or (chip, variant) in (("trn3", "tiled"), ("trn3", "hoisted"))
    assert seen["fenced"] == (variant == "block_mnk")


@nki.jit
def agnostic(x, seed=0, fence=False, barrier=False):
    """Engine-agnostic copies, scalar multiplies, memsets and adds beside pinned Vector
    work; loads of random partitions (DMA engine subsets) on two queues and, from
    NeuronCore-v3 on, DGE modes; explicit order; a no_reorder block; a core_barrier."""
    rng = np.random.default_rng(seed)
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    prev = None
    for j in range(x.shape[1] // 64):
        block = nl.no_reorder() if fence and 2 <= j < 5 else nullcontext()
        with block:
            p = int(rng.choice([16, 40, 128]))
            t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            if j % 2:
                nisa.dma_copy(dst=t[0:p, :], src=x[0:p, j * 64:(j + 1) * 64])
            else:
                nisa.dma_copy(dst=t[0:p, :], src=x[0:p, j * 64:(j + 1) * 64])
            a = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            ins = nisa.tensor_tensor(dst=a, data1=t, data2=t, op=nl.multiply,
                                     engine=nisa.vector_engine)
            if prev is not None and ins is not None and rng.random() < 0.3:
                ins.depends_on(prev)
            prev = ins
            b = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            nisa.tensor_copy(dst=b, src=t)
            c = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            nisa.tensor_scalar(dst=c, data=b, op0=nl.multiply, operand0=2.0)
            z = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=z, value=0.0)
            nisa.tensor_tensor(dst=a, data1=a, data2=c, op=nl.add)
            nisa.tensor_tensor(dst=a, data1=a, data2=z, op=nl.add)
            nisa.dma_copy(dst=out[:, j * 64:(j + 1) * 64], src=a)
        if barrier and j == 3:
            nisa.core_barrier(out, (0, 1))
    return out


@pytest.mark.parametrize("chip", ["trn1", "trn2", "trn3"])
@pytest.mark.parametrize("seed", [0, 1])
def test_engine_agnostic_work_and_dma_queues(seed, chip, monkeypatch):
    x = np.zeros((128, 64 * 12), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), {"seed": seed}, chip=chip, numerics=False)
    seen = _same(run.program, chip, monkeypatch, windows=(2, 64))
    assert seen["floating"] > 0
    if chip != "trn1":  # trn1: Vector and GpSimd share the SBUF port
        assert seen["reassigned"] > 0


@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_no_reorder_fences(chip, monkeypatch):
    x = np.zeros((128, 64 * 8), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), {"fence": True}, chip=chip, numerics=False)
    seen = _same(run.program, chip, monkeypatch, windows=(1, 64))
    assert seen["fenced"] and seen["floating"] > 0


@pytest.mark.parametrize("barrier", [False, True])
def test_lnc2_and_core_barrier(barrier, monkeypatch):
    x = np.zeros((128, 64 * 8), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), {"barrier": barrier, "seed": 3},
                               chip="trn2", numerics=False, lnc=2)
    assert {ins.core for ins in run.program.instructions} == {0, 1}
    seen = _same(run.program, "trn2", monkeypatch, windows=(3, 64))
    assert seen["fenced"] == barrier


def _legacy_kernel(loop):
    def kernel(x):
        out = lnl.ndarray(x.shape, dtype=x.dtype, buffer=lnl.shared_hbm)
        for g in loop(x.shape[0]):
            t = lnl.load(x[g])
            u = lnl.multiply(t, 2.0)
            v = lnl.exp(u)
            lnl.store(out[g], value=v)
        return out
    return kernel


@pytest.mark.parametrize("loop", ["sequential_range", "affine_range"])
def test_sequential_range_fences(loop, monkeypatch):
    x = np.zeros((6, 128, 256), np.float32)
    _, run = run_legacy(_legacy_kernel(getattr(lnl, loop)), (x,), {}, chip="trn2",
                        numerics=False)
    seen = _same(run.program, "trn2", monkeypatch, windows=(1, 64))
    assert seen["fenced"] == (loop == "sequential_range")


def _random_graph(rng, n, chip_name, monkeypatch, cycle=False):
    """A program of n instructions on two cores whose dependency edges (every kind),
    estimates (few values: many ties) and DMA figures are drawn at random; some left to
    the compiler's engine choice, some fences and barriers. cycle: two instructions
    that wait on each other (never issued, nor what waits on them)."""
    compute = ("vector", "scalar", "gpsimd")
    instrs, est, dma = [], {}, {}
    shared = [{"dge_ns": float(g), "data_ns": float(d), "engines": tuple(range(e))}
              for g in (0, 30) for d in (0, 64, 200.5) for e in (1, 4, 16)]
    for i in range(n):
        core = int(rng.integers(0, 2))
        engine = str(rng.choice(["vector", "scalar", "gpsimd", "tensor", "sync", "dma"]))
        opcode = "core_barrier" if rng.random() < 0.01 else \
            "nc_matmul" if engine == "tensor" else "tensor_copy"
        attrs, queue = {}, None
        if engine in compute and rng.random() < 0.4:
            others = [e for e in compute if e != engine]
            attrs["engines"] = (engine, *others[:int(rng.integers(1, 3))])
        if engine == "dma":
            queue = str(rng.choice(["qSyncIO", "qAct", "qPool"]))
            dma[i] = shared[int(rng.integers(0, len(shared)))]
        if engine == "tensor":  # (matmul's answer depends on its attrs only, as the model's)
            attrs["N"] = i
        for e in (engine, *attrs.get("engines", ())):
            est[(i, e)] = float(rng.choice([0.0, 0.1, 50.0, 64.3, 100.5, 1000 / 3]))
        instrs.append(Instruction(i, core, engine, opcode, (), (), None, attrs, queue))
    fences = [(int(rng.integers(0, 2)), int(rng.integers(1, n))) for _ in range(3)]
    program = Program(chip_name, lnc=2, instructions=instrs, fences=fences)

    edges = [sorted(set(rng.integers(max(0, i - 40), i, int(rng.integers(0, 4)))
                        .tolist())) if i else [] for i in range(n)]
    if cycle:
        i = n // 2
        edges[i] = sorted({*edges[i], i + 7})
        edges[i + 7] = sorted({*edges[i + 7], i})
    edge_kinds = [rng.integers(0, 4, len(found)).tolist() for found in edges]

    def dependencies(self):
        prods, kinds = array("i"), bytearray()
        for i, (found, k) in enumerate(zip(edges, edge_kinds)):
            self.npred[i] = len(found)
            prods.extend(found)
            kinds.extend(k)
        return np.frombuffer(prods, np.int32), np.frombuffer(kinds, np.uint8)
    monkeypatch.setattr(_ListScheduler, "_dependencies", dependencies)
    # the cost model's answers: one object per instruction and engine (as its memo
    # keeps one per signature)
    answers = {key: (ns, {}) for key, ns in est.items()}
    cost = cost_model(load_chip(chip_name))
    monkeypatch.setattr(cost, "compute", lambda ins: answers[(ins.index, ins.engine)])
    monkeypatch.setattr(cost, "sync", lambda ins: answers[(ins.index, ins.engine)])
    monkeypatch.setattr(cost, "matmul", lambda ins: (est[(ins.index, ins.engine)], 0.0,
                                                     {}, ()))
    monkeypatch.setattr(cost.dma, "cost", lambda ins: dma[ins.index])
    return program


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
@pytest.mark.parametrize("seed", range(4))
def test_random_graphs(seed, chip, monkeypatch):
    """Every edge kind on the same and another stream, ties everywhere, windows that
    hold most instructions in `later`, DMA queues sharing the core's engines."""
    rng = np.random.default_rng(seed)
    for window in (1, 2, 5):
        program = _random_graph(rng, 400, chip, monkeypatch)
        seen = _same(program, chip, monkeypatch, windows=(window,))
        assert seen["fenced"] and seen["floating"] > 0
        assert seen["moved"] > 0 or window == 1


@pytest.mark.parametrize("heuristic", ["asap", "critical_path"])
def test_instructions_never_issued_come_last(heuristic, monkeypatch):
    """run() keeps every instruction: those a cycle holds back follow in program order
    (and count in `moved`)."""
    program = _random_graph(np.random.default_rng(7), 300, "trn2", monkeypatch, cycle=True)
    ref_ls, ref = _python(program, load_chip("trn2"), heuristic, 4, monkeypatch)
    assert not ref_ls.issued[150] and not ref_ls.issued[157]
    _same(program, "trn2", monkeypatch, (heuristic,), (4,))


def test_successor_arrays_list_the_python_successors(monkeypatch):
    x = np.zeros((128, 64 * 6), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), {"seed": 1}, chip="trn3", numerics=False)
    chip = load_chip("trn3")
    ref, _ = _python(run.program, chip, "asap", 64, monkeypatch)
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    start, succ, kind = _ListScheduler(run.program, chip, "asap", 64)._csr
    assert len(start) == len(ref.succ) + 1
    assert len(succ) == sum(map(len, ref.succ)) > 0
    for p, pairs in enumerate(ref.succ):
        lo, hi = start[p], start[p + 1]
        assert list(zip(succ[lo:hi].tolist(), kind[lo:hi].tolist())) == list(pairs)


def test_non_finite_estimate_falls_back_to_the_python_loop(monkeypatch):
    x = np.zeros((128, 64 * 6), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), chip="trn2", numerics=False)
    program, chip = run.program, load_chip("trn2")
    engines = [ins.engine for ins in program.instructions]
    j = next(ins.index for ins in program.instructions if ins.engine == "vector"
             and not ins.attrs.get("engines"))
    monkeypatch.setenv("TRNSIM_COMPILED", "0")
    ref_ls = _ListScheduler(program, chip, "asap", 64)
    ref_ls.est[j] = float("inf")
    ref = ref_ls.run()
    ref_engines = [ins.engine for ins in program.instructions]
    for ins, e in zip(program.instructions, engines):
        ins.engine = e
    monkeypatch.setenv("TRNSIM_COMPILED", "1")
    ls = _ListScheduler(program, chip, "asap", 64)
    ls.est[j] = float("inf")
    assert compiled_schedule.issue_order(ls) is None
    got = ls.run()  # the Python loop, after the compiled core declined
    assert (got.order, got.estimate_ns, got.moved) == (ref.order, ref.estimate_ns,
                                                        ref.moved)
    assert [ins.engine for ins in program.instructions] == ref_engines
    for ins, e in zip(program.instructions, engines):
        ins.engine = e


def test_order_instructions_uses_the_compiled_core(monkeypatch):
    """With TRNSIM_COMPILED=1 order_instructions goes through issue_order; with 0 not,
    nor by default for a program below compiled.MIN_INSTRUCTIONS."""
    x = np.zeros((128, 64 * 4), np.float32)
    _, run = trnsim.run_kernel(agnostic, (x,), chip="trn3", numerics=False)
    calls = []
    real = compiled_schedule.issue_order

    def spy(ls):
        out = real(ls)
        calls.append(out is not None)
        return out
    monkeypatch.setattr(compiled_schedule, "issue_order", spy)
    from trnsim.compiler import order_instructions
    engines = [ins.engine for ins in run.program.instructions]
    assert len(run.program.instructions) < compiled.MIN_INSTRUCTIONS
    for mode in ("0", "1", "auto"):
        monkeypatch.setenv("TRNSIM_COMPILED", mode)
        order_instructions(run.program, chip=load_chip("trn3"))
        for ins, e in zip(run.program.instructions, engines):
            ins.engine = e
    assert calls == [True]
