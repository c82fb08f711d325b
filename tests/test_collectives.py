"""nki.collectives on multi-rank runs: every collective against a NumPy reference written
here, across rank counts and replica groups (one list, several, non-contiguous, out of
order), HBM and SBUF, fp32 / bf16 / int32, coalesced lists; the variable-length ops and
their prepare/trigger split; the implicit ring composing into a ring all-gather; the
errors; and what a timing-only run records.

Reductions: floats are summed in fp32 in rank-list order and rounded once into the
destination dtype (so a bf16 all-reduce is the fp32 sum rounded once to bf16); integers
wrap around in their own dtype."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import trnsim.nki.collectives as ncc
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki
from trnsim.examples import load_example
from trnsim.machine.errors import NkiValidationError, UnsupportedError
from trnsim.machine.ranks import run_ranks
from trnsim.machine.runtime import CoreDeadlockError

BF16 = ml_dtypes.bfloat16
DTYPES = [np.float32, BF16, np.int32]
# (world size, rank lists)
GROUPS = [
    (2, [[0, 1]]),
    (3, [[0, 1, 2]]),
    (4, [[0, 1], [2, 3]]),
    (4, [[0, 2], [1, 3]]),
    (4, [[2, 0, 3, 1]]),
    (8, [list(range(8))]),
    (8, [[0, 1, 2, 3], [4, 5, 6, 7]]),
]
GROUP_IDS = [f"w{w}-{'|'.join(''.join(map(str, g)) for g in gs)}" for w, gs in GROUPS]
NP_OPS = {"add": np.add, "minimum": np.minimum, "maximum": np.maximum}
NL_OPS = {"add": nl.add, "minimum": nl.minimum, "maximum": nl.maximum}


# -- helpers ------------------------------------------------------------------------------
def ranks(kernel, per_rank_args, numerics=True):
    """Run `kernel` on len(per_rank_args) ranks; (outputs, runs)."""
    return run_ranks(kernel, [(args, {}) for args in per_rank_args],
                     world_size=len(per_rank_args), chip="trn2", numerics=numerics)


def data(world, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.int32:  # the whole range: sums wrap around
        return [rng.integers(-2**31, 2**31, shape, dtype=np.int64).astype(np.int32)
                for _ in range(world)]
    return [rng.standard_normal(shape).astype(np.float32).astype(dtype)
            for _ in range(world)]


def group_of(groups, rank):
    return next(g for g in groups if rank in g)


def reduce_ref(parts, op, dtype):
    """Reduce in list order: floats in fp32, rounded once; integers in their dtype."""
    fn = NP_OPS[op]
    if np.issubdtype(np.dtype(dtype), np.integer):
        acc = parts[0].copy()
        for p in parts[1:]:
            acc = fn(acc, p)
        return acc
    acc = parts[0].astype(np.float32)
    for p in parts[1:]:
        acc = fn(acc, p.astype(np.float32))
    return acc.astype(dtype)


def staged(x, space):
    """x copied into a fresh tensor on `space` ("sbuf" or "hbm": private HBM)."""
    buffer = nl.sbuf if space == "sbuf" else nl.private_hbm
    t = nl.ndarray(x.shape, dtype=x.dtype, buffer=buffer)
    nisa.dma_copy(dst=t, src=x)
    return t


def out_tensor(shape, dtype, space):
    return nl.ndarray(shape, dtype=dtype, buffer=nl.sbuf if space == "sbuf" else nl.shared_hbm)


def to_hbm(t):
    if t.space == "hbm":
        return t
    out = nl.ndarray(t.shape, dtype=t.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=t)
    return out


def collective_records(run, engine="cc"):
    return [i for i in run.program.instructions if i.engine == engine]


# -- all_reduce / all_gather / reduce_scatter / all_to_all ----------------------------------
@pytest.mark.parametrize("world,groups", GROUPS, ids=GROUP_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "int32"])
def test_all_reduce(world, groups, dtype):
    def k(x):
        src, dst = staged(x, "hbm"), out_tensor(x.shape, x.dtype, "hbm")
        ncc.all_reduce([src], [dst], ncc.ReplicaGroup(groups), op=nl.add)
        return dst
    xs = data(world, (4, 6), dtype)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(world):
        want = reduce_ref([xs[m] for m in group_of(groups, r)], "add", dtype)
        np.testing.assert_array_equal(outs[r], want)


@pytest.mark.parametrize("op", ["add", "minimum", "maximum"])
@pytest.mark.parametrize("space", ["hbm", "sbuf"])
def test_all_reduce_ops_and_sbuf(op, space):
    groups = [[1, 3], [0, 2]]

    def k(x):
        src, dst = staged(x, space), out_tensor(x.shape, x.dtype, space)
        ncc.all_reduce([src], [dst], ncc.ReplicaGroup(groups), op=NL_OPS[op])
        return to_hbm(dst)
    xs = data(4, (8, 5), np.float32, seed=1)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(4):
        np.testing.assert_array_equal(
            outs[r], reduce_ref([xs[m] for m in group_of(groups, r)], op, np.float32))


def test_bf16_all_reduce_rounds_the_fp32_sum_once():
    """Three bf16 values whose pairwise bf16 rounding would lose the small ones."""
    xs = [np.full((1, 4), v, BF16) for v in (256.0, 0.75, 0.75)]

    def k(x):
        dst = out_tensor(x.shape, x.dtype, "hbm")
        ncc.all_reduce([staged(x, "hbm")], [dst], ncc.ReplicaGroup([[0, 1, 2]]), op=nl.add)
        return dst
    outs, _ = ranks(k, [(x,) for x in xs])
    assert float(outs[0][0, 0]) == 258.0           # fp32 257.5 rounded once (RNE) to bf16
    assert float((BF16(256.0) + BF16(0.75)) + BF16(0.75)) == 256.0   # hop-by-hop bf16


@pytest.mark.parametrize("world,groups", GROUPS, ids=GROUP_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "int32"])
def test_all_gather_hbm(world, groups, dtype):
    n = len(groups[0])

    def k(x):
        dst = out_tensor((x.shape[0] * n, x.shape[1]), x.dtype, "hbm")
        ncc.all_gather([staged(x, "hbm")], [dst], ncc.ReplicaGroup(groups), collective_dim=0)
        return dst
    xs = data(world, (3, 4), dtype, seed=2)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(world):
        want = np.concatenate([xs[m] for m in group_of(groups, r)], axis=0)
        np.testing.assert_array_equal(outs[r], want)


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("world,groups", [(2, [[1, 0]]), (4, [[0, 2], [1, 3]]), (3, [[0, 1, 2]])])
def test_all_gather_sbuf(dim, world, groups):
    n = len(groups[0])

    def k(x):
        shape = list(x.shape)
        shape[dim] *= n
        dst = out_tensor(tuple(shape), x.dtype, "sbuf")
        ncc.all_gather([staged(x, "sbuf")], [dst], ncc.ReplicaGroup(groups),
                       collective_dim=dim)
        return to_hbm(dst)
    xs = data(world, (4, 6), BF16, seed=3)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(world):
        want = np.concatenate([xs[m] for m in group_of(groups, r)], axis=dim)
        np.testing.assert_array_equal(outs[r], want)


@pytest.mark.parametrize("world,groups", GROUPS, ids=GROUP_IDS)
@pytest.mark.parametrize("space", ["hbm", "sbuf"])
def test_reduce_scatter(world, groups, space):
    n = len(groups[0])

    def k(x):
        dst = out_tensor((x.shape[0] // n, x.shape[1]), x.dtype, space)
        ncc.reduce_scatter([staged(x, space)], [dst], ncc.ReplicaGroup(groups),
                           collective_dim=0, op=nl.add)
        return to_hbm(dst)
    xs = data(world, (2 * n, 5), np.float32, seed=4)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(world):
        g = group_of(groups, r)
        block = slice(g.index(r) * 2, g.index(r) * 2 + 2)
        np.testing.assert_array_equal(
            outs[r], reduce_ref([xs[m][block] for m in g], "add", np.float32))


@pytest.mark.parametrize("world,groups", GROUPS, ids=GROUP_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=["fp32", "int32"])
def test_all_to_all(world, groups, dtype):
    n = len(groups[0])

    def k(x):
        dst = out_tensor(x.shape, x.dtype, "hbm")
        ncc.all_to_all([staged(x, "hbm")], [dst], ncc.ReplicaGroup(groups), collective_dim=0)
        return dst
    xs = data(world, (2 * n, 3), dtype, seed=5)
    outs, _ = ranks(k, [(x,) for x in xs])
    for r in range(world):
        g = group_of(groups, r)
        me = g.index(r)
        want = np.concatenate([xs[m][2 * me:2 * me + 2] for m in g])
        np.testing.assert_array_equal(outs[r], want)


def test_coalesced_lists_on_hbm():
    """Several tensors in one collective: each pair independent."""
    groups = [[0, 1, 2]]

    def k(a, b):
        sa, sb = staged(a, "hbm"), staged(b, "hbm")
        ra, rb = out_tensor(a.shape, a.dtype, "hbm"), out_tensor(b.shape, b.dtype, "hbm")
        ga = out_tensor((a.shape[0] * 3, a.shape[1]), a.dtype, "hbm")
        gb = out_tensor((b.shape[0] * 3, b.shape[1]), b.dtype, "hbm")
        ncc.all_reduce([sa, sb], [ra, rb], ncc.ReplicaGroup(groups), op=nl.maximum)
        ncc.all_gather([sa, sb], [ga, gb], ncc.ReplicaGroup(groups), collective_dim=0)
        return ra, rb, ga, gb
    a_s, b_s = data(3, (2, 3), np.float32, 6), data(3, (5, 1), np.int32, 7)
    outs, runs = ranks(k, list(zip(a_s, b_s)))
    for r in range(3):
        ra, rb, ga, gb = outs[r]
        np.testing.assert_array_equal(ra, reduce_ref(a_s, "maximum", np.float32))
        np.testing.assert_array_equal(rb, reduce_ref(b_s, "maximum", np.int32))
        np.testing.assert_array_equal(ga, np.concatenate(a_s))
        np.testing.assert_array_equal(gb, np.concatenate(b_s))
    rec = collective_records(runs[0])
    assert [i.opcode for i in rec] == ["all_reduce", "all_gather"]
    assert rec[0].attrs["nbytes"] == 2 * 3 * 4 + 5 * 4 and len(rec[0].writes) == 2


@pytest.mark.parametrize("world,pairs", [
    (2, [(0, 1), (1, 0)]),
    (3, [(0, 1), (1, 0)]),                       # rank 2 takes no part: keeps its dst
    (4, [(0, 1), (1, 2), (2, 3), (3, 0)]),
    (8, [(0, 1), (1, 0), (2, 3), (3, 2), (4, 4), (5, 7), (7, 6), (6, 5)]),
])
def test_collective_permute(world, pairs):
    def k(x):
        dst = out_tensor(x.shape, x.dtype, "hbm")
        nisa.dma_copy(dst=dst, src=x)
        ncc.collective_permute([staged(x, "hbm")], [dst], pairs)
        return dst
    xs = data(world, (2, 2), np.int32, 8)
    outs, _ = ranks(k, [(x,) for x in xs])
    source = {b: a for a, b in pairs}
    for r in range(world):
        np.testing.assert_array_equal(outs[r], xs[source.get(r, r)])


# -- all_to_all_v / all_gather_v -------------------------------------------------------
SRC_ELEMS, SLOT = 12, 5


def a2av_meta(world, n, seed, kind="all_to_all_v"):
    """Per rank: (metadata rows 0-1, uneven counts and displacements inside the source);
    the same counts to every peer for all_gather_v (only column 0 is read)."""
    rng = np.random.default_rng(seed)
    metas = []
    for _ in range(world):
        cols = n if kind == "all_to_all_v" else 1
        counts = rng.integers(0, SLOT + 1, cols)
        displs = np.array([rng.integers(0, SRC_ELEMS - c + 1) for c in counts])
        if kind == "all_gather_v":
            counts, displs = np.repeat(counts, n), np.repeat(displs, n)
        meta = np.zeros((3, n), np.uint32)
        meta[0], meta[1] = counts, displs
        meta[2] = 777                                    # overwritten unless counts known
        metas.append(meta)
    return metas


def v_reference(kind, xs, metas, groups, rdispls=None, fill=-1):
    """Each rank's dst and recv_counts, from the senders' metadata."""
    outs, recv = [], []
    for r in range(len(xs)):
        g = group_of(groups, r)
        me = g.index(r)
        dst = np.full(SLOT * len(g), fill, xs[r].dtype)
        counts = []
        for s, sender in enumerate(g):
            col = me if kind == "all_to_all_v" else 0
            c, d = int(metas[sender][0, col]), int(metas[sender][1, col])
            at = s * SLOT if rdispls is None else int(rdispls[r][s])
            dst[at:at + c] = xs[sender][d:d + c]
            counts.append(c)
        outs.append(dst)
        recv.append(np.array(counts, np.uint32))
    return outs, recv


def v_kernel(kind, groups, meta_space="hbm", recv_counts_known=False, has_rdispls=False,
             split=False):
    def k(x, meta, dst):
        m = meta
        if meta_space == "sbuf":
            m = nl.ndarray((1,) + meta.shape, dtype=meta.dtype, buffer=nl.sbuf)
            nisa.dma_copy(dst=m, src=meta.reshape((1,) + meta.shape))
        args = ([x], [dst], ncc.ReplicaGroup(groups), m, recv_counts_known, has_rdispls)
        if split:
            prepared = getattr(ncc, kind + "_prepare")(*args)
            getattr(ncc, kind + "_trigger")(prepared)
        else:
            getattr(ncc, kind)(*args)
        if meta_space == "sbuf":
            nisa.dma_copy(dst=meta.reshape((1,) + meta.shape), src=m)
        return dst
    return k


def v_inputs(kind, world, groups, dtype=np.float32, seed=10):
    n = len(groups[0])
    xs = data(world, (SRC_ELEMS,), dtype, seed)
    metas = a2av_meta(world, n, seed, kind)
    dsts = [np.full(SLOT * n, -1, dtype) for _ in range(world)]
    return xs, metas, dsts


@pytest.mark.parametrize("kind", ["all_to_all_v", "all_gather_v"])
@pytest.mark.parametrize("world,groups", [(2, [[0, 1]]), (3, [[0, 1, 2]]), (4, [[0, 2], [1, 3]]),
                                          (8, [[7, 6, 5, 4], [0, 1, 2, 3]])])
@pytest.mark.parametrize("dtype", [np.float32, np.int32], ids=["fp32", "int32"])
def test_variable_length(kind, world, groups, dtype):
    xs, metas, dsts = v_inputs(kind, world, groups, dtype)
    outs, _ = ranks(v_kernel(kind, groups), list(zip(xs, metas, dsts)))
    want, recv = v_reference(kind, xs, metas, groups)
    for r in range(world):
        np.testing.assert_array_equal(outs[r], want[r])
        np.testing.assert_array_equal(metas[r][2], recv[r])     # recv_counts written back


@pytest.mark.parametrize("kind", ["all_to_all_v", "all_gather_v"])
@pytest.mark.parametrize("meta_space", ["hbm", "sbuf"])
def test_variable_length_recv_displs_and_counts_known(kind, meta_space):
    """has_rdispls: chunks packed in reverse sender order; recv_counts_known leaves row 2."""
    world, groups = 3, [[0, 1, 2]]
    xs, metas, dsts = v_inputs(kind, world, groups, seed=11)
    rdispls = []
    for r, meta in enumerate(metas):
        col = r if kind == "all_to_all_v" else 0
        counts = [int(metas[s][0, col]) for s in range(world)]
        at, where = 0, [0] * world
        for s in reversed(range(world)):
            where[s], at = at, at + counts[s]
        rdispls.append(where)
    metas = [np.vstack([m, np.array(d, np.uint32)]) for m, d in zip(metas, rdispls)]
    kernel = v_kernel(kind, groups, meta_space, recv_counts_known=True, has_rdispls=True)
    outs, _ = ranks(kernel, list(zip(xs, metas, dsts)))
    want, _ = v_reference(kind, xs, metas, groups, rdispls)
    for r in range(world):
        np.testing.assert_array_equal(outs[r], want[r])
        assert (metas[r][2] == 777).all()


@pytest.mark.parametrize("kind", ["all_to_all_v", "all_gather_v"])
def test_prepare_trigger_equals_the_plain_op(kind):
    world, groups = 4, [[0, 1, 2, 3]]
    xs, metas, dsts = v_inputs(kind, world, groups, seed=12)
    outs, runs = ranks(v_kernel(kind, groups, split=True), list(zip(xs, metas, dsts)))
    want, recv = v_reference(kind, xs, metas, groups)
    for r in range(world):
        np.testing.assert_array_equal(outs[r], want[r])
        np.testing.assert_array_equal(metas[r][2], recv[r])
    prep, trig = collective_records(runs[1])
    assert (prep.opcode, trig.opcode) == (kind + "_prepare", kind + "_trigger")
    assert [a.role for a in prep.reads] == ["metadata_tensor"] * 2 and not prep.writes
    assert "group_seq" not in prep.attrs and prep.attrs["prepare"] == kind
    assert trig.attrs["collective"] == kind and trig.attrs["group_seq"] == 0
    assert [a.role for a in trig.writes] == ["dsts[0]", "metadata_tensor"]


def test_prepare_reads_the_metadata_when_issued():
    """The trigger moves what the metadata said at the prepare, not later."""
    groups = [[0, 1]]

    def k(x, meta, dst):
        p = ncc.all_to_all_v_prepare([x], [dst], ncc.ReplicaGroup(groups), meta)
        zeros = nl.ndarray((1, 2), dtype=meta.dtype, buffer=nl.sbuf)
        nisa.memset(dst=zeros, value=0)
        nisa.dma_copy(dst=meta[0:1, :], src=zeros)      # send_counts zeroed after prepare
        ncc.all_to_all_v_trigger(p)
        return dst
    xs, metas, dsts = v_inputs("all_to_all_v", 2, groups, seed=13)
    want, _ = v_reference("all_to_all_v", xs, [m.copy() for m in metas], groups)
    outs, _ = ranks(k, list(zip(xs, metas, dsts)))
    for r in range(2):
        np.testing.assert_array_equal(outs[r], want[r])


def _split_misuse(kind, misuse):
    groups = [[0, 1]]

    def k(x, meta, dst):
        args = ([x], [dst], ncc.ReplicaGroup(groups), meta)
        other = "all_gather_v" if kind == "all_to_all_v" else "all_to_all_v"
        p = getattr(ncc, kind + "_prepare")(*args)
        if misuse == "second prepare":
            getattr(ncc, other + "_prepare")(*args)
        if misuse == "wrong trigger":
            getattr(ncc, other + "_trigger")(p)
        getattr(ncc, kind + "_trigger")(p)
        if misuse == "second trigger":
            getattr(ncc, kind + "_trigger")(p)
        return dst
    return k


@pytest.mark.parametrize("kind", ["all_to_all_v", "all_gather_v"])
@pytest.mark.parametrize("misuse,message", [
    ("second prepare", r"_prepare at .*test_collectives.py:\d+ is still waiting for its "
                       "trigger"),
    ("wrong trigger", r"prepare_instr is the \w+_prepare at .*; \w+_trigger takes"),
    ("second trigger", "has been triggered already: each prepare takes exactly one trigger"),
])
def test_prepare_trigger_pairing_errors(kind, misuse, message):
    xs, metas, dsts = v_inputs("all_gather_v", 2, [[0, 1]], seed=14)
    with pytest.raises(NkiValidationError, match=message):
        ranks(_split_misuse(kind, misuse), list(zip(xs, metas, dsts)))


@pytest.mark.parametrize("change,message", [
    (lambda m: m.astype(np.int32), "metadata_tensor .* must be uint32"),
    (lambda m: m[:2], r"metadata_tensor .* must have shape \[3, 2\] on HBM: rows "
                      "send_counts, send_displs, recv_counts"),
    (lambda m: np.vstack([m[:1], m[1:2] + 13, m[2:]]),
     r"send_displs\[\d\]=\d+ \+ send_counts\[\d\]=\d+ runs past srcs\[0\]"),
    (lambda m: np.vstack([m[:1] * 0 + 6, m[1:2] * 0, m[2:]]),
     r"rank 0 sends 6 elements \(its send_counts\[\d\]\), more than the slot of 5"),
])
def test_variable_length_metadata_errors(change, message):
    xs, metas, dsts = v_inputs("all_to_all_v", 2, [[0, 1]], seed=15)
    metas = [change(m) for m in metas]
    with pytest.raises(NkiValidationError, match=message):
        ranks(v_kernel("all_to_all_v", [[0, 1]]), list(zip(xs, metas, dsts)))


def test_variable_length_needs_hbm_buffers_and_equal_slots():
    def on_sbuf(x, meta, dst):
        t = staged(x.reshape((1, SRC_ELEMS)), "sbuf")
        ncc.all_gather_v([t], [dst], ncc.ReplicaGroup([[0, 1]]), meta)
    xs, metas, dsts = v_inputs("all_gather_v", 2, [[0, 1]], seed=16)
    with pytest.raises(NkiValidationError, match="operand 'srcs\\[0\\]' .* address space 'hbm'"):
        ranks(on_sbuf, list(zip(xs, metas, dsts)))
    odd = [np.zeros(SLOT * 2 + 1, np.float32) for _ in range(2)]
    with pytest.raises(NkiValidationError, match="do not split into 2 equal slots"):
        ranks(v_kernel("all_to_all_v", [[0, 1]]), list(zip(xs, metas, odd)))


# -- the implicit ring ------------------------------------------------------------------
def ring_all_gather(groups, world, space, channels=1):
    """A ring all-gather from n-1 implicit steps: at step k each rank stores the buffer it
    holds at the row of current_processing_rank_id(k), then forwards it."""
    n = len(groups[0])
    rg = ncc.ReplicaGroup(groups)

    def k(x):
        rows, cols = world, x.shape[1]
        out = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.shared_hbm)
        zero = nl.ndarray((rows, cols), dtype=x.dtype, buffer=nl.sbuf)
        nisa.memset(dst=zero, value=0.0)
        nisa.dma_copy(dst=out, src=zero)
        bufs = [staged(x, space), out_tensor(x.shape, x.dtype, space)]
        width = cols // channels
        for step in range(n):
            cur, nxt = bufs[step % 2], bufs[(step + 1) % 2]
            who = ncc.collective_permute_implicit_current_processing_rank_id(step, rg)
            nisa.dma_copy(dst=out.ap([[cols, 1], [1, cols]], scalar_offset=who,
                                     indirect_dim=0), src=cur)
            if step < n - 1:
                ncc.collective_permute_implicit(
                    [[cur[:, c * width:(c + 1) * width]] for c in range(channels)],
                    [[nxt[:, c * width:(c + 1) * width]] for c in range(channels)],
                    rg, channel_ids=list(range(channels)))
        return out
    return k


@pytest.mark.parametrize("world,groups", [(2, [[0, 1]]), (3, [[0, 1, 2]]), (4, [[0, 2], [1, 3]]),
                                          (8, [list(range(8))]), (4, [[3, 1, 0, 2]])])
@pytest.mark.parametrize("space,channels", [("sbuf", 1), ("hbm", 1), ("sbuf", 2), ("sbuf", 4)])
def test_implicit_ring_all_gather(world, groups, space, channels):
    xs = data(world, (1, 8), np.float32, seed=20)
    outs, runs = ranks(ring_all_gather(groups, world, space, channels), [(x,) for x in xs])
    for r in range(world):
        want = np.zeros((world, 8), np.float32)
        for m in group_of(groups, r):
            want[m] = xs[m][0]
        np.testing.assert_array_equal(outs[r], want)
    g = group_of(groups, 0)
    steps = collective_records(runs[0])
    assert len(steps) == len(g) - 1
    assert steps[0].attrs["pairs"] == tuple((g[i], g[(i + 1) % len(g)]) for i in range(len(g)))
    assert steps[0].attrs["channels"] == channels and steps[0].attrs["nbytes"] == 8 * 4


@pytest.mark.parametrize("op", ["add", "maximum"])
def test_implicit_ring_reduce_scatter(op):
    """n-1 steps of collective_permute_implicit_reduce: step k sends op(received, own
    chunk p-k-1); rank p ends with chunk p reduced over every other rank."""
    world = 4
    groups = [list(range(world))]
    rg = ncc.ReplicaGroup(groups)

    def k(x):                                      # x: (world, cols), chunk j = row j
        cols = x.shape[1]
        acc = [out_tensor((1, cols), x.dtype, "sbuf") for _ in range(2)]
        nisa.memset(dst=acc[0], value=0)
        own = out_tensor((1, cols), x.dtype, "sbuf")
        for step in range(world - 1):
            chunk = ncc.collective_permute_implicit_current_processing_rank_id(step + 1, rg)
            nisa.dma_copy(dst=own, src=x.ap([[cols, 1], [1, cols]], scalar_offset=chunk,
                                            indirect_dim=0))
            ncc.collective_permute_implicit_reduce([[acc[step % 2]]], [[own]],
                                                   [[acc[(step + 1) % 2]]], rg, op=NL_OPS[op])
        return to_hbm(acc[(world - 1) % 2])
    xs = data(world, (world, 6), np.int32, seed=21)
    xs = [x % 1000 for x in xs]
    outs, _ = ranks(k, [(x,) for x in xs])
    for p in range(world):
        others = [xs[(p - j) % world][p] for j in range(world - 1, 0, -1)]
        want = reduce_ref([np.zeros(6, np.int32)] + others, op, np.int32)  # acc starts 0
        np.testing.assert_array_equal(outs[p][0], want)


def test_current_processing_rank_id_steps_upstream():
    groups = [[0, 2, 3, 1]]

    def k(x):
        out = nl.ndarray((1, 6), dtype=nl.int32, buffer=nl.shared_hbm)
        t = nl.ndarray((1, 6), dtype=nl.int32, buffer=nl.sbuf)
        for step in range(6):
            reg = ncc.collective_permute_implicit_current_processing_rank_id(
                step, ncc.ReplicaGroup(groups), channel_id=1)
            nisa.register_store(t[0:1, step:step + 1], reg)
        nisa.dma_copy(dst=out, src=t)
        return out
    outs, runs = ranks(k, [(np.zeros(1, np.float32),) for _ in range(4)])
    g = groups[0]
    for r in range(4):
        p = g.index(r)
        assert list(outs[r][0]) == [g[(p - s) % 4] for s in range(6)]
    assert runs[0].program.instructions[0].engine == "sync"


@pytest.mark.parametrize("call,message", [
    (lambda s, d, rg: ncc.collective_permute_implicit([[s]], [[d]], rg, channel_ids=[1]),
     r"channel_ids=\[1\] must be consecutive integers from 0"),
    (lambda s, d, rg: ncc.collective_permute_implicit([[s]] * 5, [[d]] * 5, rg,
                                                      channel_ids=list(range(5))),
     "names 5 channels; a ring has at most 4"),
    (lambda s, d, rg: ncc.collective_permute_implicit([[s], [s]], [[d]], rg),
     r"srcs_by_channel holds 2 channels but channel_ids=\[0\] names 1"),
    (lambda s, d, rg: ncc.collective_permute_implicit([[s, s]], [[d]], rg),
     r"srcs_by_channel\[0\] holds 2 tensors; this collective takes one"),
    (lambda s, d, rg: ncc.collective_permute_implicit([[s]], [[d[:, 0:2]]], rg),
     r"dsts_by_channel\[0\] .* must have the shape and dtype of srcs_by_channel\[0\]"),
    (lambda s, d, rg: ncc.collective_permute_implicit_reduce([[s]], [[s]], [[d]], rg,
                                                             op=nl.multiply),
     "collectives reduce with nl.add, nl.minimum or nl.maximum"),
    (lambda s, d, rg: ncc.collective_permute_implicit_current_processing_rank_id(-1, rg),
     "iteration_id=-1 must be >= 0"),
    (lambda s, d, rg: ncc.collective_permute_implicit_current_processing_rank_id(0, rg, 4),
     "channel_id=4 must be 0..3"),
])
def test_implicit_ring_errors(call, message):
    def k(x):
        s, d = staged(x, "sbuf"), out_tensor(x.shape, x.dtype, "sbuf")
        call(s, d, ncc.ReplicaGroup([[0, 1]]))
        return x
    with pytest.raises(NkiValidationError, match=message):
        ranks(k, [(np.zeros((2, 4), np.float32),)] * 2)


# -- ReplicaGroup.from_partition_op ---------------------------------------------------------
@pytest.mark.parametrize("op,operand,want", [
    (ncc.rg_partition_op.bitwise_and, 0, [list(range(8))]),
    (ncc.rg_partition_op.div, 4, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (ncc.rg_partition_op.mod, 4, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    ("mod", 2, [[0, 2, 4, 6], [1, 3, 5, 7]]),
])
def test_from_partition_op(op, operand, want):
    assert ncc.ReplicaGroup.from_partition_op(8, op, operand).replica_groups == want


@pytest.mark.parametrize("args,message", [
    ((8, "xor", 1), "must be an rg_partition_op"),
    ((8, ncc.rg_partition_op.mod, 0), "divides by zero"),
    ((0, ncc.rg_partition_op.div, 2), "world_size=0 must be an int >= 1"),
])
def test_from_partition_op_errors(args, message):
    with pytest.raises(NkiValidationError, match=message):
        ncc.ReplicaGroup.from_partition_op(*args)


# -- errors -----------------------------------------------------------------------------
def _all_reduce_of(shape_of_rank, dtype_of_rank=lambda r: nl.float32):
    def k(x):
        r = int(ncc.rank_id())
        src = nl.ndarray(shape_of_rank(r), dtype=dtype_of_rank(r), buffer=nl.shared_hbm)
        dst = nl.ndarray(shape_of_rank(r), dtype=dtype_of_rank(r), buffer=nl.shared_hbm)
        ncc.all_reduce([src], [dst], ncc.ReplicaGroup([[0, 1]]), op=nl.add)
        return x
    return k


@pytest.mark.parametrize("kernel", [
    _all_reduce_of(lambda r: (2, 3 + r)),
    _all_reduce_of(lambda r: (2, 3), lambda r: nl.float32 if r == 0 else nl.bfloat16),
], ids=["shape", "dtype"])
def test_ranks_disagreeing_on_shapes_or_dtypes(kernel):
    with pytest.raises(NkiValidationError,
                       match=r"rank 1 issues all_reduce\(.*\) while rank 0 issued "
                             r"all_reduce\(.*\) at .*test_collectives.py:\d+") as e:
        ranks(kernel, [(np.zeros(1, np.float32),)] * 2, numerics=False)
    assert str(e.value).count("test_collectives.py:") == 2      # both ranks' lines


def test_a_rank_that_never_joins_is_a_deadlock_naming_each_rank():
    def k(x):
        dst = out_tensor(x.shape, x.dtype, "hbm")
        if int(ncc.rank_id()) != 1:
            ncc.all_reduce([x], [dst], ncc.ReplicaGroup([[0, 1, 2]]), op=nl.add)
        return dst
    with pytest.raises(CoreDeadlockError) as e:
        ranks(k, [(np.zeros((2, 2), np.float32),)] * 3)
    msg = str(e.value)
    assert "rank 0 waits in all_reduce #0 of replica group [0, 1, 2] at" in msg
    assert "rank 1 has finished the kernel" in msg and "rank 2 waits in all_reduce" in msg


@pytest.mark.parametrize("world,groups,message", [
    (3, [[0, 1], [1, 2]], r"names rank 1 twice: its rank lists must not overlap"),
    (2, [[0, 5]], r"replica_group \[\[0, 5\]\] names rank 5, but the run has world_size=2"),
    (3, [[0, 1]], r"rank 2 is in no rank list of replica_group \[\[0, 1\]\]"),
    (2, [[0, 1], []], "must hold non-empty rank lists"),
])
def test_bad_replica_groups(world, groups, message):
    def k(x):
        dst = out_tensor(x.shape, x.dtype, "hbm")
        ncc.all_reduce([x], [dst], ncc.ReplicaGroup(groups), op=nl.add)
        return dst
    with pytest.raises(NkiValidationError, match=message):
        ranks(k, [(np.zeros((2, 2), np.float32),)] * world)


def _one_collective(call, space="hbm"):
    def k(x):
        src = staged(x, space)
        call(src, out_tensor(x.shape, x.dtype, space), ncc.ReplicaGroup([[0, 1]]))
        return x
    return k


@pytest.mark.parametrize("call,space,message", [
    (lambda s, d, rg: ncc.all_gather([s], [d], rg, collective_dim=1), "hbm",
     "collective_dim=1: only 0 is supported for HBM tensors"),
    (lambda s, d, rg: ncc.reduce_scatter([s], [d], rg, collective_dim=1, op=nl.add), "sbuf",
     "collective_dim=1: only 0 is supported for SBUF tensors"),
    (lambda s, d, rg: ncc.all_gather([s], [d], rg, collective_dim=2), "sbuf",
     "SBUF collectives take 2-D tensors and collective_dim 0 or 1"),
    (lambda s, d, rg: ncc.all_to_all([s], [d], rg, collective_dim=0), "sbuf",
     "operand 'srcs\\[0\\]' of 'all_to_all' to be in address space 'hbm'"),
    (lambda s, d, rg: ncc.collective_permute([s], [d], [(0, 1), (1, 0)]), "sbuf",
     "operand 'srcs\\[0\\]' of 'collective_permute' to be in address space 'hbm'"),
    (lambda s, d, rg: ncc.all_reduce([s], [d], rg, op=nl.multiply), "hbm",
     "op=.*multiply.*: collectives reduce with nl.add, nl.minimum or nl.maximum"),
    (lambda s, d, rg: ncc.all_reduce([s], [d], rg, op=np.subtract), "sbuf",
     "collectives reduce with nl.add"),
    (lambda s, d, rg: ncc.all_reduce([s, s], [d, d], rg, op=nl.add), "sbuf",
     "several tensors in one collective \\(coalesced\\) must be on HBM"),
    (lambda s, d, rg: ncc.all_reduce([s], [d[0:1, :]], rg, op=nl.add), "hbm",
     "dsts\\[0\\] .* must have the shape of srcs\\[0\\]"),
])
def test_operand_errors(call, space, message):
    with pytest.raises(NkiValidationError, match=message):
        ranks(_one_collective(call, space), [(np.zeros((2, 4), np.float32),)] * 2)


@pytest.mark.parametrize("call", [
    lambda s, d, rg: ncc.all_reduce([s], [d], rg, op=nl.add),
    lambda s, d, rg: ncc.collective_permute_implicit([[s]], [[d]], rg),
    lambda s, d, rg: ncc.collective_permute_implicit_current_processing_rank_id(0, rg),
], ids=["all_reduce", "implicit", "processing_rank"])
def test_a_collective_outside_a_multi_rank_run(call):
    with pytest.raises(UnsupportedError, match="needs several ranks: run the kernel with "
                                               "nki.multi_rank_simulate"):
        nki.simulate(_one_collective(call))(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("second,message", [
    ((np.zeros((2, 5), np.float32), 3), r"rank 1's argument 'x' is a tensor of shape \(2, 5\) "
                                        r"and dtype float32, rank 0's a tensor of shape \(2, 4\)"),
    ((np.zeros((2, 4), np.int32), 3), "dtype int32, rank 0's a tensor of shape .* float32"),
    ((np.zeros((2, 4), np.float32), 4), "rank 1's argument 'n' is 4, rank 0's 3: arguments "
                                        "other than tensors must be equal on every rank"),
])
def test_per_rank_inputs_must_agree(second, message):
    def k(x, n):
        return x
    with pytest.raises(ValueError, match=message):
        nki.multi_rank_simulate(k, world_size=2,
                                per_rank_inputs=[((np.zeros((2, 4), np.float32), 3), {}),
                                                 (second, {})])


# -- timing-only runs ------------------------------------------------------------------
def _every_collective(x, meta, dst):
    rg = ncc.ReplicaGroup([[0, 1]])
    n = 2
    src = staged(x, "hbm")
    ncc.all_reduce([src], [out_tensor(x.shape, x.dtype, "hbm")], rg, op=nl.add)
    ncc.all_gather([src], [out_tensor((x.shape[0] * n,), x.dtype, "hbm")], rg, 0)
    ncc.reduce_scatter([src], [out_tensor((x.shape[0] // n,), x.dtype, "hbm")], rg, 0, nl.add)
    ncc.all_to_all([src], [out_tensor(x.shape, x.dtype, "hbm")], rg, 0)
    ncc.collective_permute([src], [out_tensor(x.shape, x.dtype, "hbm")], [(0, 1), (1, 0)])
    ncc.all_to_all_v([x], [dst], rg, meta)
    ncc.all_gather_v_trigger(ncc.all_gather_v_prepare([x], [dst], rg, meta))
    ncc.collective_permute_implicit([[src]], [[out_tensor(x.shape, x.dtype, "hbm")]], rg)
    ncc.collective_permute_implicit_reduce([[src]], [[src]],
                                           [[out_tensor(x.shape, x.dtype, "hbm")]], rg, nl.add)
    ncc.collective_permute_implicit_current_processing_rank_id(1, rg)
    return dst


def test_timing_only_records_the_same_instructions():
    xs, metas, dsts = v_inputs("all_to_all_v", 2, [[0, 1]], seed=30)
    inputs = list(zip(xs, metas, dsts))
    _, timed = ranks(_every_collective, inputs, numerics=False)
    _, full = ranks(_every_collective, inputs)
    for a, b in zip(timed, full):
        assert [(i.engine, i.opcode, len(i.reads), len(i.writes)) for i in a.program] == \
               [(i.engine, i.opcode, len(i.reads), len(i.writes)) for i in b.program]
    cc = {i.opcode: i.attrs for i in collective_records(timed[1])}
    assert cc["all_reduce"]["collective"] == "all_reduce" and cc["all_reduce"]["group"] == (0, 1)
    assert [cc[k]["group_seq"] for k in ("all_reduce", "all_gather", "reduce_scatter",
                                         "all_to_all")] == [0, 1, 2, 3]
    assert cc["all_reduce"]["nbytes"] == SRC_ELEMS * 4
    assert cc["collective_permute"]["pairs"] == ((0, 1), (1, 0))
    slot_bytes = SLOT * 4                        # dst elements / group size, assumed
    for kind in ("all_to_all_v", "all_gather_v_trigger"):
        assert cc[kind]["send_bytes"] == (slot_bytes, slot_bytes)
        assert cc[kind]["counts_assumed"] is True
    assert cc["all_to_all_v"]["nbytes"] == 2 * slot_bytes
    assert cc["all_gather_v_trigger"]["nbytes"] == slot_bytes
    assert cc["all_gather_v_prepare"]["prepare"] == "all_gather_v"
    for kind in ("collective_permute_implicit", "collective_permute_implicit_reduce"):
        assert cc[kind]["collective"] == kind
        assert cc[kind]["pairs"] == ((0, 1), (1, 0)) and cc[kind]["nbytes"] == SRC_ELEMS * 4
    assert cc["collective_permute_implicit_reduce"]["op"] == "add"


def test_send_bytes_follow_the_metadata():
    xs, metas, dsts = v_inputs("all_to_all_v", 2, [[0, 1]], seed=31)
    _, runs = ranks(_every_collective, list(zip(xs, metas, dsts)))
    for r, run in enumerate(runs):
        cc = {i.opcode: i.attrs for i in collective_records(run)}
        a2av, agv = cc["all_to_all_v"], cc["all_gather_v_trigger"]
        assert a2av["send_bytes"] == tuple(int(c) * 4 for c in metas[r][0])
        assert agv["send_bytes"] == (int(metas[r][0, 0]) * 4,) * 2
        assert "counts_assumed" not in a2av


def test_recv_counts_row_may_start_uninitialized():
    """Row 2 is an output: a strict run does not flag it as read before written."""
    def k(x, counts):
        meta = nl.ndarray((3, 2), dtype=nl.uint32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=meta[0:2, :], src=counts)
        dst = nl.ndarray((2 * SLOT,), dtype=x.dtype, buffer=nl.shared_hbm)
        ncc.all_gather_v([x], [dst], ncc.ReplicaGroup([[0, 1]]), meta)
        return meta
    xs = data(2, (SRC_ELEMS,), np.float32, seed=17)
    counts = np.array([[SLOT, SLOT], [0, 0]], np.uint32)
    outs = nki.multi_rank_simulate(k, world_size=2, per_rank_inputs=[((x, counts), {})
                                                                      for x in xs], strict=True)
    assert outs[0][2].tolist() == [SLOT, SLOT]


# -- examples/collectives.py ----------------------------------------------------------------
def test_example_ring_all_gather_matmul():
    ex = load_example("collectives")
    per_rank, _ = ex.matmul_inputs(ranks=3, rows=32, N=64)
    x = np.concatenate([args[0].T for args, _ in per_rank])       # the shards, in rank order
    w = per_rank[0][0][1]
    ys = nki.multi_rank_simulate(ex.ring_all_gather_matmul_kernel, world_size=3,
                                 per_rank_inputs=per_rank)
    for y in ys:
        np.testing.assert_allclose(y.reshape(-1, 64), x.astype(np.float64) @ w, rtol=1e-4,
                                   atol=1e-4)


def test_example_token_dispatch():
    ex = load_example("collectives")
    per_rank, _ = ex.dispatch_inputs(ranks=4, hidden=8, capacity=12)
    sends = [(args[0].reshape(-1, 8), args[1][0] // 8) for args, _ in per_rank]
    got = nki.multi_rank_simulate(ex.token_dispatch_kernel, world_size=4,
                                  per_rank_inputs=per_rank)
    for me in range(4):
        want = np.zeros((4, 12, 8), np.float32)
        for s, (tokens, counts) in enumerate(sends):
            start = int(counts[:me].sum())
            want[s, :counts[me]] = tokens[start:start + counts[me]]
        np.testing.assert_array_equal(got[me].reshape(4, 12, 8), want)
        assert list(per_rank[me][0][1][2]) == [int(c[me]) * 8 for _, c in sends]


def test_example_main(capsys):
    load_example("collectives").main()
    assert "token dispatch on 4 ranks" in capsys.readouterr().out


def test_trigger_keeps_its_prepares_priority_on_trn3():
    def k(x, meta, dst):
        p = ncc.all_to_all_v_prepare([x], [dst], ncc.ReplicaGroup([[0, 1]]), meta, priority=2)
        ncc.all_to_all_v_trigger(p)
        return dst
    xs, metas, dsts = v_inputs("all_to_all_v", 2, [[0, 1]], seed=32)
    _, runs = run_ranks(k, [(a, {}) for a in zip(xs, metas, dsts)], world_size=2,
                        chip="trn3")
    assert [i.attrs.get("priority") for i in collective_records(runs[0])] == [2, 2]
