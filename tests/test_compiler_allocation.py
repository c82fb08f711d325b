"""The compiler model's on-chip allocator (trnsim.compiler.allocation): per-block
liveness, placement, spills to HBM, lazy initialization, and the memory plan.

Expected figures are worked out here from the chip's capacity (trn2: 212984 usable SBUF
bytes per partition, nki-api.md §3; PSUM 8 banks x 2 KiB) and the kernels' structure,
not read back from the allocator."""
import re

import numpy as np
import pytest

import trnsim
import trnsim.compat as compat
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from kernel_helpers import chip_with_usable_sbuf
from trnsim.legacy.jit import run_legacy
from trnsim.machine.errors import CapacityError

KiB = 1024
USABLE_TRN2 = 212984
BLOCK = 32 * KiB  # bytes per partition of one block in the spill kernels
FIT = USABLE_TRN2 // BLOCK  # 6 such blocks fit at once


def _line(tag: str) -> int:
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, tag
    return hits[0]


@pytest.fixture
def L():
    """The legacy API (block dimensions exist only there)."""
    was = compat.installed()
    compat.install()
    try:
        import neuronxcc.nki as nki
        import neuronxcc.nki.isa as lisa
        import neuronxcc.nki.language as lnl
        yield nki, lnl, lisa
    finally:
        if not was:
            compat.uninstall()


def _spills(program, kind):
    return [i for i in program if i.attrs.get("spill") == kind]


# -- liveness -------------------------------------------------------------------------
def test_current_api_tensor_is_freed_after_its_last_use_not_when_python_drops_it():
    n = 64 * KiB // 4  # 64 KiB per partition: eight of them are 512 KiB

    def kern(x):
        out = nl.ndarray((8, 128, 4), nl.float32, buffer=nl.shared_hbm)
        keep = []  # every tile stays referenced until the kernel returns
        for i in range(8):
            t = nl.ndarray((128, n), nl.float32, name=f"t{i}")
            nisa.memset(dst=t, value=float(i))
            nisa.dma_copy(dst=out[i], src=t[:, 0:4])
            keep.append(t)
        return out

    out, run = trnsim.run_kernel(kern, (np.zeros((1, 1), np.float32),), chip="trn2")
    np.testing.assert_array_equal(out, np.arange(8, dtype=np.float32)[:, None, None]
                                  * np.ones((8, 128, 4), np.float32))
    plan = run.program.memory
    assert plan.peak[("sbuf", 0)] == n * 4  # one tile at a time
    assert plan.spills == []


def test_block_tensor_far_larger_than_sbuf_holds_only_its_live_blocks(L):
    nki, nl_, nisa_ = L
    blocks, free = 64, 2048  # 64 blocks x 8 KiB = 512 KiB per partition, logically

    @nki.jit(platform_target="trn2")
    def k(x):
        out = nl_.ndarray(x.shape, dtype=x.dtype, buffer=nl_.shared_hbm)
        xs = nl_.ndarray((blocks, nl_.par_dim(128), free), dtype=np.float32, buffer=nl_.sbuf)
        ys = nl_.ndarray((blocks, nl_.par_dim(128), free), dtype=np.float32, buffer=nl_.sbuf,
                         name="ys")
        for i in nl_.affine_range(blocks):
            xs[i] = nl_.load(x[i])
            ys[i] = nisa_.activation(op=nl_.exp, data=xs[i])
            nl_.store(out[i], value=ys[i])
        return out

    x = np.random.default_rng(0).standard_normal((blocks, 128, free)).astype(np.float32)
    out = k(x)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-6)
    plan = k.last_run.program.memory
    assert plan.peak[("sbuf", 0)] == 2 * free * 4  # xs[i] and ys[i], nothing more
    assert plan.spills == []
    ys_places = [p for p in plan.placements if plan.allocations[p.alloc].name == "ys"]
    assert sorted(p.block for p in ys_places) == list(range(blocks))


def _two_loop_kernel(L, dirty: bool, overwrite_input: bool = False):
    """Loop 1 makes 8 blocks of `ys` (exp of the input when `dirty`, else a plain load);
    loop 2 stores them: all 8 are live between the loops, 6 fit."""
    nki, nl_, nisa_ = L

    @nki.jit
    def k(x):
        out = nl_.ndarray(x.shape, dtype=x.dtype, buffer=nl_.shared_hbm)
        ys = nl_.ndarray((8, nl_.par_dim(128), BLOCK // 4), dtype=np.float32, buffer=nl_.sbuf, name="ys")  # LINE-MARK: ys
        for i in nl_.affine_range(8):
            if dirty:
                t = nl_.load(x[i])
                ys[i] = nisa_.activation(op=nl_.exp, data=t)
            else:
                ys[i] = nl_.load(x[i])
        if overwrite_input:
            zero = nl_.zeros((128, BLOCK // 4), dtype=np.float32, buffer=nl_.sbuf)
            for i in nl_.affine_range(8):
                nl_.store(x[i], value=zero)
        for i in nl_.affine_range(8):
            nl_.store(out[i], value=ys[i])  # LINE-MARK: ys-read
        return out
    return k


def test_blocks_live_across_loops_spill_exactly_what_does_not_fit(L, tmp_path):
    x = np.random.default_rng(1).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    k = _two_loop_kernel(L, dirty=True)
    prof = trnsim.profile(k, x, chip="trn2")
    program = prof.program
    # During loop 1's last activation its input tile and ys[7] take two of the six
    # slots, so at most FIT - 2 of ys[0..6] stay: the other 7 - (FIT - 2) = 3 blocks
    # are saved once and reloaded once, 32 KiB x 128 partitions each.
    out_blocks = 7 - (FIT - 2)
    block_bytes = BLOCK * 128
    saves, reloads = _spills(program, "save"), _spills(program, "reload")
    assert len(saves) == len(reloads) == out_blocks == 3
    assert all(i.bytes_moved == block_bytes for i in saves + reloads)
    assert prof.summary["spill_save_bytes"] == prof.summary["spill_reload_bytes"] \
        == out_blocks * block_bytes
    # the spill DMAs: SBUF -> HBM scratch and back, on their own queues, attributed to
    # the allocation (save) and to the read that needed the block (reload)
    for s in saves:
        assert [a.space for a in s.reads] == ["sbuf"] and [a.space for a in s.writes] == ["hbm"]
        assert s.queue == "qSpillSave" and s.location.line == _line("ys")
    for r in reloads:
        assert [a.space for a in r.reads] == ["hbm"] and [a.space for a in r.writes] == ["sbuf"]
        assert r.queue == "qSpillReload" and r.location.line == _line("ys-read")
        saved = next(s for s in saves if s.attrs["block"] == r.attrs["block"])
        assert (saved.writes[0].lo, saved.writes[0].hi) == (r.reads[0].lo, r.reads[0].hi)
    tracks = {e.track for e in prof.timeline.events}
    assert {"dma:qSpillSave0", "dma:qSpillReload0"} <= tracks
    # the insight names the tensor and the line that allocated it
    spill = next(i for i in prof.all_insights if i.rule == "spill")
    assert "'ys'" in spill.message and f":{_line('ys')}" in spill.message
    # bit-identical to the same kernel on a chip where everything fits
    roomy, run_roomy = run_legacy(k.fn, (x,), chip=chip_with_usable_sbuf(tmp_path, "trn2", 1 << 20))
    assert _spills(run_roomy.program, "save") == _spills(run_roomy.program, "reload") == []
    assert np.array_equal(prof.outputs.view(np.uint32), roomy.view(np.uint32))
    np.testing.assert_allclose(roomy, np.exp(x), rtol=1e-6)


def test_unchanged_loaded_blocks_are_dropped_and_read_again(L):
    x = np.random.default_rng(2).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    k = _two_loop_kernel(L, dirty=False)
    np.testing.assert_array_equal(k(x), x)
    program = k.last_run.program
    # nothing else is live in loop 1: FIT blocks stay, 8 - FIT are dropped (no save) and
    # read again from the input
    reloads = _spills(program, "reload")
    assert _spills(program, "save") == [] and len(reloads) == 8 - FIT
    inputs = {(a.lo, a.hi) for i in program if i.opcode == "dma_copy" and not i.attrs.get("spill")
              for a in i.reads if a.space == "hbm"}
    assert all((r.reads[0].lo, r.reads[0].hi) in inputs for r in reloads)


def test_a_block_whose_source_is_overwritten_is_saved(L):
    x = np.random.default_rng(3).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    k = _two_loop_kernel(L, dirty=False, overwrite_input=True)
    # with its source overwritten before loop 2, an evicted block needs a real save (the
    # zeros tile now takes a slot too, so one more block goes out)
    out = k(x.copy())
    program = k.last_run.program
    saves, reloads = _spills(program, "save"), _spills(program, "reload")
    assert len(saves) == len(reloads) >= 8 - FIT
    # every reload reads back a scratch copy some save wrote
    slots = {(s.writes[0].lo, s.writes[0].hi) for s in saves}
    assert all((r.reads[0].lo, r.reads[0].hi) in slots for r in reloads)
    np.testing.assert_array_equal(out, x)


def test_one_instruction_whose_operands_cannot_fit_names_op_tensors_and_line():
    n = 120 * KiB // 4

    def kern(x):
        out = nl.ndarray((128, 2), nl.float32, buffer=nl.shared_hbm)
        a = nl.ndarray((128, n), nl.float32, name="big_a")
        b = nl.ndarray((128, n), nl.float32, name="big_b")
        nisa.dma_copy(dst=a[:, 0:2], src=x)
        nisa.tensor_tensor(dst=b[:, n - 2:n], data1=a[:, 0:2], data2=a[:, 0:2], op=nl.add)  # LINE-MARK: both
        nisa.dma_copy(dst=out, src=b[:, n - 2:n])
        return out

    x = np.ones((128, 2), np.float32)
    for chip in ("trn1", "trn2", "trn3"):  # 2 x 122880 = 245760 > 245752 (trn3) too
        with pytest.raises(CapacityError) as ei:
            trnsim.run_kernel(kern, (x,), chip=chip)
        e, msg = ei.value, str(ei.value)
        assert e.op == "tensor_tensor" and e.location.line == _line("both")
        assert f"SBUF overflow on {chip}" in msg and "245760 bytes per partition" in msg
        assert "big_a float32[128, 30720]: 122880 B/partition" in msg
        assert "big_b float32[128, 30720]: 122880 B/partition" in msg


def test_a_block_larger_than_sbuf_fails_at_its_declaration(L):
    nki, nl_, _ = L

    @nki.jit(platform_target="trn2")
    def k(x):
        nl_.ndarray((2, nl_.par_dim(128), USABLE_TRN2 // 4 + 1), dtype=np.float32,  # LINE-MARK: huge
                    buffer=nl_.sbuf, name="huge")
        return x

    with pytest.raises(CapacityError, match=r"block of 'huge' float32\[2, 128, 53247\] needs "
                                            r"212988 bytes per partition.*212984") as ei:
        k(np.zeros((1, 1), np.float32))
    assert ei.value.location.line == _line("huge")


# -- PSUM -----------------------------------------------------------------------------
def _matmul_operands(seed):
    """Small-integer stationary [64, 128] and moving [64, 512] operands (exact in fp32)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-3, 4, (64, 128)).astype(np.float32),
            rng.integers(-3, 4, (64, 512)).astype(np.float32))


def test_psum_tiles_live_together_spill_what_does_not_fit(L):
    nki, nl_, nisa_ = L

    @nki.jit
    def k(s, m):
        out = nl_.ndarray((9, 128, 512), dtype=nl_.float32, buffer=nl_.shared_hbm)
        st, mv = nl_.load(s), nl_.load(m)
        ps = [nisa_.nc_matmul(st, mv) for _ in range(9)]  # nine 2 KiB results, 8 banks
        for i in range(9):
            nl_.store(out[i], value=nl_.copy(ps[i]))
        return out

    s, m = _matmul_operands(4)
    np.testing.assert_array_equal(k(s, m), np.broadcast_to(s.T @ m, (9, 128, 512)))
    program = k.last_run.program
    assert program.memory.peak[("psum", 0)] == 8 * 2048
    saves = _spills(program, "save")
    assert len(saves) == 1 and saves[0].reads[0].space == "psum"
    assert len(_spills(program, "reload")) == 1


def test_lazily_initialized_psum_block_tensor_uses_one_bank_per_live_block(L):
    nki, nl_, nisa_ = L

    @nki.jit
    def k(s, m):
        out = nl_.ndarray((16, 128, 512), dtype=nl_.float32, buffer=nl_.shared_hbm)
        acc = nl_.zeros((16, nl_.par_dim(128), 512), dtype=nl_.float32, buffer=nl_.psum,
                        lazy_initialization=True)  # 32 KiB logically: twice PSUM
        st, mv = nl_.load(s), nl_.load(m)
        for i in nl_.affine_range(16):
            acc[i] += nisa_.nc_matmul(st, mv)
            nl_.store(out[i], value=nl_.copy(acc[i]))
        return out

    s, m = _matmul_operands(5)
    np.testing.assert_array_equal(k(s, m), np.broadcast_to(s.T @ m, (16, 128, 512)))
    program = k.last_run.program
    assert program.memory.peak[("psum", 0)] <= 2 * 2048
    assert _spills(program, "save") == []


def test_sbuf_block_zeros_are_filled_when_each_block_is_first_used(L):
    nki, nl_, _ = L
    blocks, free = 64, 2048  # 512 KiB per partition of zeros, logically

    @nki.jit(platform_target="trn2")
    def k(x):
        out = nl_.ndarray(x.shape, dtype=x.dtype, buffer=nl_.shared_hbm)
        acc = nl_.zeros((blocks, nl_.par_dim(128), free), dtype=np.float32, buffer=nl_.sbuf)
        for i in nl_.affine_range(blocks):
            acc[i] += nl_.load(x[i])
            nl_.store(out[i], value=acc[i])
        return out

    x = np.random.default_rng(6).standard_normal((blocks, 128, free)).astype(np.float32)
    np.testing.assert_array_equal(k(x), x)
    program = k.last_run.program
    memsets = [i.index for i in program if i.opcode == "memset"]
    stores = [i.index for i in program if i.opcode == "dma_copy" and i.writes[0].space == "hbm"]
    assert len(memsets) == blocks
    # block i is zeroed after block i-1 was stored: only when it is first needed
    assert all(prev < m for prev, m in zip(stores, memsets[1:]))
    assert program.memory.spills == []


# -- what the plan says ---------------------------------------------------------------
def test_memory_plan_lists_placements_and_spills_per_tensor(L):
    x = np.random.default_rng(7).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    prof = trnsim.profile(_two_loop_kernel(L, dirty=True), x, chip="trn2")
    rows = {r["tensor"]: r for r in prof.memory_table()}
    ys = rows["ys"]
    assert ys["shape"] == "float32[8, 128, 8192]" and ys["blocks"] == 8
    assert ys["block_bytes_per_partition"] == BLOCK
    assert ys["allocated_at"].endswith(f":{_line('ys')}")
    assert ys["spill_save_bytes"] == ys["spill_reload_bytes"] == 3 * BLOCK * 128
    # every placement lies inside SBUF, and two stays overlapping in time never overlap
    # in bytes
    stays = [(p[1], p[1] + BLOCK, p[2], p[3]) for r in rows.values() if r["space"] == "sbuf"
             for p in r["placements"]]
    assert all(0 <= lo and hi <= USABLE_TRN2 for lo, hi, _, _ in stays)
    for a in stays:
        for b in stays:
            if a is not b and a[2] <= b[3] and b[2] <= a[3]:
                assert a[1] <= b[0] or b[1] <= a[0], (a, b)


def test_report_shows_memory_over_time_and_the_spills(L, tmp_path):
    x = np.random.default_rng(8).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    prof = trnsim.profile(_two_loop_kernel(L, dirty=True), x, chip="trn2")
    prof.report(tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert '<section id="sbuf">' in text and "capacity 207.99 KiB" in text  # 212984 B
    assert re.search(r"<td>ys</td><td>float32\[8, 128, 8192\]</td><td>sbuf</td>"
                     r"<td>12.00 MiB</td><td>12.00 MiB</td>", text)


def test_trace_has_spill_tracks_and_memory_counters(L, tmp_path):
    import json
    x = np.random.default_rng(9).standard_normal((8, 128, BLOCK // 4)).astype(np.float32)
    prof = trnsim.profile(_two_loop_kernel(L, dirty=True), x, chip="trn2")
    prof.to_perfetto(tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e.get("ph") == "M" and "name" in e.get("args", {})}
    assert {"DMA qSpillSave0", "DMA qSpillReload0"} <= names
    sbuf = [e["args"]["bytes"] for e in events
            if e.get("ph") == "C" and e["name"] == "SBUF in use (bytes per partition)"]
    # the plan's peak is in program order; the engines run in the compiler's issue order,
    # which the plan's reuse (WAR) dependencies keep within it
    assert 0 < max(sbuf) <= prof.memory.peak[("sbuf", 0)] == FIT * BLOCK and sbuf[-1] == 0


def test_operands_that_fit_together_are_moved_side_by_side():
    """Three 64000-byte operands fit in trn2's 212984 bytes, but not around where the
    first two sit: the allocator moves those two (save and reload) instead of failing."""
    n = 16000  # fp32: 64000 bytes per partition

    def kern(x):
        out = nl.ndarray((128, 4), nl.float32, buffer=nl.shared_hbm)
        a = nl.ndarray((128, n), nl.float32, name="a")
        gap = nl.ndarray((128, 9000), nl.float32, name="gap")  # 36000 bytes
        b = nl.ndarray((128, n), nl.float32, name="b")
        nisa.memset(dst=a, value=1.0)
        nisa.memset(dst=gap, value=0.0)
        nisa.memset(dst=b, value=2.0)  # a | gap | b | 48984 bytes free
        nisa.tensor_copy(dst=a[:, 0:1], src=gap[:, 0:1])  # gap's last use: 36000 free
        c = nl.ndarray((128, n), nl.float32, name="c")
        nisa.tensor_tensor(dst=c, data1=a, data2=b, op=nl.add)  # LINE-MARK: three
        nisa.dma_copy(dst=out, src=c[:, 0:4])
        return out

    out, run = trnsim.run_kernel(kern, (np.zeros((1, 1), np.float32),), chip="trn2")
    np.testing.assert_array_equal(out[:, 0], 2.0)  # a[:, 0] took gap's 0
    np.testing.assert_array_equal(out[:, 1:], 3.0)
    saves, reloads = _spills(run.program, "save"), _spills(run.program, "reload")
    assert sorted(s.attrs["block"] for s in saves) == ["a", "b"]
    assert sorted(r.attrs["block"] for r in reloads) == ["a", "b"]
    assert all(r.location.line == _line("three") for r in reloads)
    places = {name: [p.start for p in run.program.memory.placements
                     if run.program.memory.allocations[p.alloc].name == name]
              for name in "abc"}
    starts = sorted(places[k][-1] for k in "abc")
    assert starts == [0, 64000, 128000]  # side by side


def test_evicted_blocks_leave_room_to_reload_ahead():
    """Two passes over more tiles than fit (a cyclic reuse): Belady alone evicts the tile
    just read, so every reload would wait for the instruction right before its use. The
    pass prefers a victim last used, and next needed, PREFETCH_DISTANCE instructions away."""
    from trnsim.compiler.allocation import PREFETCH_DISTANCE

    @trnsim.nki.jit
    def two_passes(x):
        out = nl.ndarray((2, 128, 512), nl.float32, buffer=nl.shared_hbm)
        tiles = []
        for g in range(x.shape[0]):
            t = nl.ndarray((128, 4096), nl.float32, buffer=nl.sbuf)  # 16 KiB: 13 fit
            nisa.dma_copy(dst=t, src=x[g])
            tiles.append(t)
        for p in range(2):
            acc = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
            nisa.memset(dst=acc, value=0.0, engine=nisa.vector_engine)
            for t in tiles:
                nisa.tensor_tensor(dst=acc, data1=acc, data2=t[:, 0:512], op=nl.add,
                                   engine=nisa.vector_engine)
            nisa.dma_copy(dst=out[p], src=acc)
        return out

    x = np.random.default_rng(11).standard_normal((24, 128, 4096)).astype(np.float32)
    prof = trnsim.profile(two_passes, x, chip="trn2")
    np.testing.assert_allclose(prof.outputs, np.broadcast_to(x[:, :, :512].sum(0), (2, 128, 512)),
                               rtol=1e-4, atol=1e-4)
    prog = prof.program
    reloads = _spills(prog, "reload")
    assert reloads
    ev = {e.index: e for e in prof.timeline.events}
    adds = [i.index for i in prog.instructions if i.opcode == "tensor_tensor"]
    # pass 1's reloads make room by eviction (every resident tile is needed again); in
    # pass 2 each reload takes the space its predecessor just freed (not checked here)
    first_store = next(i.index for i in prog.instructions if i.opcode == "dma_copy"
                       and i.writes[0].space == "hbm")
    pass1 = [r for r in reloads if r.index < first_store]
    assert len(pass1) >= 8
    for r in pass1:
        consumer = next(a for a in adds if a > r.index)
        # what the reload had to wait for is an instruction well before its consumer
        war = [w.producer for w in ev[r.index].waits if w.kind == "WAR"]
        assert all(consumer - p > PREFETCH_DISTANCE for p in war), (r.index, war, consumer)


def test_explicit_order_edges_follow_the_renumbering_of_spills_and_hoisting():
    """depends_on names instructions by their index in the record; the passes insert
    (spills) and drop (hoisted loads) instructions, and the edges must still name the
    same producer."""
    import trnsim.nki.isa as nisa_
    n = 40 * KiB // 4  # 40 KiB tiles: five fit beside the rest

    @trnsim.nki.jit
    def k(x):
        out = nl.ndarray((8, 128, 8), nl.float32, buffer=nl.shared_hbm)
        tiles = []
        for g in range(8):
            t = nl.ndarray((128, n), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=t, src=x[g])
            tiles.append(t)
        for g in range(8):
            w = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            nisa.dma_copy(dst=w, src=x[0, :, 0:8])  # loop-invariant: issued once
            d = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf)
            first = nisa_.max8(dst=d, src=tiles[g])
            second = nisa_.max8(dst=d, src=tiles[g])
            second.depends_on(first)
            nisa.tensor_tensor(dst=d, data1=d, data2=w, op=nl.add)
            nisa.dma_copy(dst=out[g], src=d)
        return out

    x = np.random.default_rng(12).standard_normal((8, 128, n)).astype(np.float32)
    prof = trnsim.profile(k, x, chip="trn2")
    np.testing.assert_array_equal(prof.outputs, -np.sort(-x, axis=2)[:, :, :8] + x[0, :, :8])
    prog = prof.program
    assert _spills(prog, "reload")  # instructions were inserted before the edges
    assert sum(i.attrs.get("hoisted_repeats", 0) for i in prog.instructions) == 7
    maxes = [i for i in prog.instructions if i.opcode == "max8"]
    for a, b in zip(maxes[::2], maxes[1::2]):
        assert b.attrs["depends_on"] == [a.index]


def test_arena_reuses_the_space_released_longest_ago_keeping_out_of_reserved_bytes():
    from trnsim.compiler.arena import Arena
    arena = Arena("sbuf", 0, 4096, 64, "test")

    def place(size, reserved=()):
        start = arena.find(size, list(reserved))
        if start is not None:
            arena.occupy(start, start + size)
            arena.cursor = start + size
        return start

    assert [place(1024) for _ in range(4)] == [0, 1024, 2048, 3072]  # never used first
    for start, when in ((2048, 5), (0, 7), (1024, 9), (3072, 10)):
        arena.vacate(start, start + 1024, when)
    assert place(1024) == 2048  # the span released first, whole
    assert place(1024, reserved=[(0, 64)]) == 1024  # the next one holds reserved bytes
    assert place(512) == 0  # the oldest left, from its start
    assert place(512) == 512  # its rest
    assert place(1024) == 3072
    assert place(64) is None  # full
