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


def test_scheduler_changes_no_shared_cost_terms(programs):
    """The memos hand out one terms dict per signature; the scheduler copies it before
    adding an event's own terms (load_stationary_ns, throttle), so rescheduling gives
    the same terms and the memo's stay as computed."""
    from trnsim.timing import schedule
    for program, chip in programs:
        first = [dict(e.cost) for e in schedule(program, chip).events]
        assert [e.cost for e in schedule(program, chip).events] == first
        model, plain = cost_model(chip), CostModel(chip)
        for ins in program.instructions:
            if ins.engine in COMPUTE:
                assert model.compute(ins) == plain._compute(ins)
            elif ins.engine == "tensor" and ins.opcode.startswith("nc_"):
                assert model.matmul(ins) == plain._matmul(ins)


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


@pytest.mark.parametrize("seed", range(8))
def test_exact_range_index_gives_what_the_walk_gives(seed, monkeypatch):
    """Row tiles of a few column blocks (as in a row-pitch HBM map), read and written
    in a random order, some tiles misaligned: the indexed map returns the producers,
    in order, that a map walking every Rec returns, and ends up the same."""
    from trnsim.timing import deps
    rng = random.Random(seed)
    ops = []
    for idx in range(400):
        p_lo = rng.randrange(12) * 16 + (rng.random() < 0.1) * rng.randrange(1, 16)
        p_hi = min(p_lo + rng.choice((16, 16, 16, 32, 5)), 200)
        lo = rng.randrange(3) * 64 + (rng.random() < 0.05) * 32
        ops.append((rng.random() < 0.4, p_lo, p_hi, lo, lo + 64, idx, ("c", idx % 3),
                    rng.random() < 0.9))

    def replay():
        m, out = SpaceMap(), []
        for write, p_lo, p_hi, lo, hi, idx, tkey, dense in ops:
            if write:
                waw, war = [], []
                m.write(p_lo, p_hi, lo, hi, idx, tkey, waw, war, dense)
                out.append((waw, war))
            else:
                raw = []
                m.read(p_lo, p_hi, lo, hi, idx, tkey, raw)
                out.append(raw)
        state = [(lo, hi, [(r.p_lo, r.p_hi, r.writers, r.readers) for r in seg])
                 for lo, hi, seg in zip(m.los, m.his, m.recs)]
        return out, state

    indexed = replay()
    monkeypatch.setattr(deps, "_INDEXED", 10 ** 9)
    assert indexed == replay()


@pytest.mark.parametrize("seed", range(6))
def test_lane_books_the_first_gap_that_fits(seed):
    """_Lane.book (with its shortcut for a booking after all others) against a plain
    first-fit search over the intervals booked so far."""
    from trnsim.timing.scheduler import _Lane
    rng = random.Random(seed)
    lane, booked = _Lane(), []
    t = 0.0
    for _ in range(600):
        t = max(0.0, t + rng.choice((0.0, 1.0, 50.0, -30.0, 400.0)) * rng.random())
        if booked and rng.random() < 0.2:
            t = max(e for _, e in booked)  # exactly at the end of the latest booking
        d = rng.choice((1.0, 8.0, 64.0, 300.0 * rng.random() + 0.5))
        starts = sorted([t] + [e for _, e in booked if e > t])
        s = next(s for s in starts if all(not (a < s + d and s < e) for a, e in booked))
        assert lane.book(t, d) == s + d
        booked.append((s, s + d))


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



def test_what_a_pause_allocated_trips_no_young_collection_after_it():
    """The objects built while paused (kept alive, as a record is) join the oldest
    generation when it ends: the next few allocations start no collection (one that
    would walk them all). What the caller froze stays frozen."""
    import gc

    from trnsim.machine.gc_pause import gc_paused
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])
    gc.collect()
    gc.callbacks.append(count)
    try:
        with gc_paused():
            kept = [[i] for i in range(100_000)]
        after = [[i] for i in range(100)]  # (the young threshold is 700)
        assert runs == []
        gc.freeze()
        frozen = gc.get_freeze_count()
        with gc_paused():
            more = [[i] for i in range(1000)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
    assert len(kept) + len(after) + len(more) == 101_100

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
