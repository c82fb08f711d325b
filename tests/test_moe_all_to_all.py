"""examples/moe_all_to_all.py: MoE dispatch and combine with all_to_all_v on a few ranks
match NumPy references; the expert placement replicates hot experts first and balances
the ranks' loads; Zipf routing makes the all-to-all slower than uniform in the profile."""

import numpy as np
import pytest

from trnsim.examples import load_example


@pytest.fixture(scope="module")
def ex():
    return load_example("moe_all_to_all")


def _case(ex, ranks, tokens, skew, replicate, hidden):
    return ex.make_case(ranks, tokens, skew, replicate, hidden=hidden, seed=3)


@pytest.mark.parametrize("ranks,skew,replicate", [(4, "zipf", True), (8, "uniform", False)])
def test_dispatch_and_combine_match_numpy(ex, ranks, skew, replicate):
    plan, xs, _, (experts, gates) = _case(ex, ranks, 16, skew, replicate, hidden=256)
    d, c = ex.run(plan, xs, topology="trn3-ultraserver-64")
    for r, want in enumerate(ex.reference_dispatch(xs, plan)):
        n = plan.counts[:, r].sum()
        np.testing.assert_array_equal(np.asarray(d.outputs[r])[:n], want[:n])
    for r, want in enumerate(ex.reference_moe(xs, experts, gates)):
        got = np.asarray(c.outputs[r])
        assert got.shape == xs[r].shape and got.dtype == xs[r].dtype
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32),
                                   rtol=2 ** -7, atol=1e-6)


def test_exchange_only_returns_rows_to_their_sources_in_order(ex):
    plan, xs, _, _ = _case(ex, 4, 8, "zipf", True, hidden=128)
    d, c = ex.run(plan, xs, topology="trn2-ultraserver", exchange_only=True)
    for r in range(plan.num_ranks):
        # back on rank r, in send order: every copy's expert output, i.e. its token's
        # row scaled by its expert's factor
        want = ex.expert_stand_in(xs[r][plan.send_token[r]], plan.send_expert[r])
        np.testing.assert_array_equal(np.asarray(c.outputs[r]), want)


def test_plan_sends_every_copy_once_and_splits_replicas(ex):
    ranks, tokens = 8, 64
    plan, _, placement, (experts, _) = _case(ex, ranks, tokens, "zipf", True, hidden=128)
    assert (plan.counts.sum(axis=1) == tokens * ex.TOP_K).all()
    for s in range(ranks):
        pairs = sorted(zip(plan.send_token[s].tolist(), plan.send_expert[s].tolist()))
        assert pairs == sorted((t, int(e)) for t in range(tokens) for e in experts[s, t])
    received = np.zeros((len(placement.replicas), ranks), dtype=int)
    for r in range(ranks):
        np.add.at(received[:, r], plan.recv_expert[r], 1)
    for e, reps in enumerate(placement.replicas):
        assert set(np.flatnonzero(received[e])) <= set(reps), f"expert {e} sent off its copies"
        if len(reps) > 1 and received[e].sum() >= 8 * len(reps):
            share = received[e, list(reps)]
            assert share.min() > 0.5 * share.mean(), f"expert {e}: {share} not split"


def test_placement_replicates_hot_experts_first_and_balances(ex):
    load = ex.expected_load(ex.route(ex.popularity("zipf", seed=1), 16, 64, seed=2)[0])
    ranks, slots = 16, ex.slots_for(16)
    plain = ex.place_experts(load, ranks, slots, replicate=False)
    rep = ex.place_experts(load, ranks, slots, replicate=True)
    for p in (plain, rep):
        assert all(len(r) >= 1 for r in p.replicas)                  # every expert placed
        assert all(len(set(r)) == len(r) for r in p.replicas)        # one copy per rank
        held = np.bincount([r for reps in p.replicas for r in reps], minlength=ranks)
        assert held.max() <= slots
        np.testing.assert_allclose(p.rank_load.sum(), load.sum())
    assert (plain.copies == 1).all()
    assert rep.copies.sum() == ranks * slots                         # spare slots used
    order = np.argsort(-load, kind="stable")
    assert (np.diff(rep.copies[order]) <= 0).all(), "a cooler expert got more copies"
    assert rep.copies[order[0]] > 1
    assert rep.rank_load.max() < plain.rank_load.max()
    tight = ex.place_experts(load, 4, 32, replicate=True)            # no spare slot
    assert (tight.copies == 1).all()


def test_zipf_routing_is_slower_than_uniform_in_the_profile(ex):
    # 16 ranks: the hottest expert alone outweighs a rank's mean load, which a
    # load-aware placement cannot spread without replication (at 8 ranks it can)
    times = {}
    for skew in ("uniform", "zipf"):
        plan, xs, _, _ = _case(ex, 16, 32, skew, False, hidden=2048)
        d, _ = ex.run(plan, xs, topology="trn2-ultraserver", exchange_only=True)
        (coll,) = d.collectives
        times[skew] = (coll.duration, plan.recv_bytes().max() / plan.recv_bytes().mean())
    assert times["zipf"][1] > times["uniform"][1]
    assert times["zipf"][0] > 1.1 * times["uniform"][0], times


def test_per_rank_receive_times_end_with_the_profiles_all_to_all(ex):
    from benchmarks.moe import receive_times
    plan, xs, _, _ = _case(ex, 8, 16, "zipf", False, hidden=512)
    d, _ = ex.run(plan, xs, topology="trn3-ultraserver-64", exchange_only=True)
    t = receive_times("trn3-ultraserver-64", plan.counts * plan.hidden * 2)
    assert t.max() == pytest.approx(d.collectives[0].duration, rel=1e-6)
    assert np.median(t) <= t.max()


def test_bench_sections_keep_the_hand_written_text(tmp_path):
    from benchmarks.collectives import replace_section
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nhand-written\n")
    replace_section(doc, "a", "table 1")
    replace_section(doc, "b", "table 2")
    replace_section(doc, "a", "table 1, again")
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written\n")
    assert "table 1, again" in text and "table 1\n" not in text and "table 2" in text
    assert text.index("generated: a") < text.index("generated: b")
