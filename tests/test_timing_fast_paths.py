"""The schedulers' shortcuts give what the plain computations give: the cost memos
(trnsim/timing/costs.py) against an uncached CostModel, and the dependency maps'
bounding-box early exit (trnsim/timing/deps.py) against a walk of every segment."""
import random

import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim.chips import load_chip
from trnsim.examples import load_example
from trnsim.timing.costs import COMPUTE, CostModel, cost_model
from trnsim.timing.deps import SpaceMap


def _programs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 512)).astype(np.float32)
    bf = ml_dtypes.bfloat16
    cases = [("softmax", "softmax_kernel", (x,)),
             ("layernorm", "layernorm_kernel", (x, x[0], x[1])),
             ("tiled_matmul", "tiled_matmul_kernel",
              (rng.standard_normal((256, 128)).astype(bf),
               rng.standard_normal((256, 512)).astype(bf))),
             ("pe_transpose", "pe_transpose_kernel", (x[:, :320].copy(),))]
    for chip in ("trn1", "trn2", "trn3"):
        for name, attr, args in cases:
            kernel = getattr(load_example(name), attr)
            _, run = trnsim.run_kernel(kernel.fn, args, chip=chip, numerics=False)
            yield run.program, load_chip(chip)


@pytest.fixture(scope="module")
def programs():
    return list(_programs())


def test_cost_memos_return_what_an_uncached_model_computes(programs):
    seen = 0
    for program, chip in programs:
        memo, plain = cost_model(chip), CostModel(chip)
        for _ in range(2):  # the second pass answers from the memos
            for ins in program.instructions:
                if ins.engine in COMPUTE:
                    got, want = memo.compute(ins), plain._compute(ins)
                elif ins.engine == "tensor" and ins.opcode.startswith("nc_"):
                    got, want = memo.matmul(ins), plain._matmul(ins)
                elif ins.engine == "dma":
                    got, want = memo.dma.cost(ins), plain.dma._cost(ins)
                else:
                    continue
                assert got == want, ins
                seen += 1
    assert seen > 200


def test_cost_memo_hands_out_terms_the_caller_may_change(programs):
    program, chip = programs[0]
    model = cost_model(chip)
    ins = next(i for i in program.instructions if i.engine in COMPUTE)
    _, terms = model.compute(ins)
    terms["throttle"] = 0.5
    assert "throttle" not in model.compute(ins)[1]
    mm = next(i for p, _ in programs for i in p.instructions if i.opcode == "nc_matmul")
    chip = next(c for p, c in programs if mm in p.instructions)
    cost_model(chip).matmul(mm)[2]["load_stationary_ns"] = 1.0
    assert "load_stationary_ns" not in cost_model(chip).matmul(mm)[2]


def test_cost_model_is_shared_per_chip_object():
    chip = load_chip("trn2")
    assert cost_model(chip) is cost_model(chip)
    assert cost_model(load_chip("trn3")) is not cost_model(chip)


def _walk(m: SpaceMap, p_lo, p_hi, lo, hi, idx, with_readers):
    """SpaceMap.query without its bounding-box exit."""
    writers, readers = [], []
    for seg_lo, seg_hi, seg in zip(m.los, m.his, m.recs):
        if seg_lo < hi and lo < seg_hi:
            for r in seg:
                if r.p_lo < p_hi and p_lo < r.p_hi:
                    writers += [w for w in r.writers if w != idx]
                    readers += [v for v in r.readers.values() if v != idx]
    return writers, readers if with_readers else None


@pytest.mark.parametrize("seed", range(8))
def test_query_bounding_boxes_drop_nothing(seed):
    rng = random.Random(seed)
    m = SpaceMap()
    for idx in range(60):
        # accesses clustered in one corner, queries anywhere (mostly outside it)
        p_lo = rng.randrange(8)
        p_hi = rng.randrange(p_lo + 1, 9)
        lo = rng.randrange(64)
        hi = rng.randrange(lo + 1, 65)
        if rng.random() < 0.5:
            m.write(p_lo, p_hi, lo, hi, idx, ("c", idx % 3), [], [], rng.random() < 0.8)
        else:
            m.read(p_lo, p_hi, lo, hi, idx, ("c", idx % 3), [])
        for _ in range(4):
            q_lo = rng.randrange(128)
            q_hi = rng.randrange(q_lo + 1, 129)
            qp_lo = rng.randrange(16)
            qp_hi = rng.randrange(qp_lo + 1, 17)
            for with_readers in (False, True):
                w, r = [], [] if with_readers else None
                m.query(qp_lo, qp_hi, q_lo, q_hi, 1000, w, r)
                assert (w, r) == _walk(m, qp_lo, qp_hi, q_lo, q_hi, 1000, with_readers)


def test_gc_paused_restores_the_collector_as_it_was():
    import gc

    from trnsim.machine.gc_pause import gc_paused
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError):
        with gc_paused():
            raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_events_and_waits_built_directly_equal_the_constructors():
    from trnsim.timing.scheduler import _event, _wait
    from trnsim.timing.timeline import Event, Wait
    ev = _event(3, 0, "dma:qSyncIO0", 1.0, 2.5, 0.5, (_wait(1, "RAW", "sbuf"),),
                {"bytes": 64}, (0, 1), 2.5)
    want = Event(3, 0, "dma:qSyncIO0", 1.0, 2.5, 0.5, (Wait(1, "RAW", "sbuf"),),
                 {"bytes": 64}, (0, 1), done=2.5)
    assert ev == want and list(vars(ev)) == list(vars(want))
    assert hash(_wait(1, "RAW", "sbuf")) == hash(Wait(1, "RAW", "sbuf"))


def test_oracle_compare_flags_a_changed_event(tmp_path):
    import gzip
    import pickle

    from benchmarks.scheduler_oracle import compare
    ev = (0, 0, "vector", 0.0, 10.0, 10.5, 0.0, (), 0, (), (("cycles", 64),))
    base = {("k", 0, "timeline"): {"events": [ev], "total": 10.0, "throttle": [],
                                   "order": "compiler"}}
    near = {("k", 0, "timeline"): {**base[("k", 0, "timeline")],
                                   "events": [ev[:4] + (10.0 * (1 + 1e-12),) + ev[5:]]}}
    far = {("k", 0, "timeline"): {**base[("k", 0, "timeline")],
                                  "events": [ev[:4] + (10.001,) + ev[5:]]}}
    paths = {}
    for name, recs in (("a", base), ("b", near), ("c", far)):
        paths[name] = tmp_path / f"{name}.pkl.gz"
        with gzip.open(paths[name], "wb") as f:
            pickle.dump(recs, f)
    assert compare(paths["a"], paths["b"]) == 0  # float association noise
    assert compare(paths["a"], paths["c"]) == 1
