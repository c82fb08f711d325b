"""On-chip memory: byte arenas and explicit addresses (trnsim.machine.memory), aliasing
views, where the compiler model places tensors and reuses their space
(trnsim.compiler.allocation), PSUM banks, capacity errors, fresh-memory fill and
strict-mode uninitialized reads.

Figures typed in from nki-api.md (the project's NKI notes) §3 (usable SBUF bytes per
partition 180224 / 212984 / 245752; PSUM 16 KiB per partition = 8 banks x 2 KiB)."""
import re

import ml_dtypes
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from kernel_helpers import chip_with_usable_sbuf
from trnsim.machine.errors import CapacityError, UninitializedReadError

KiB = 1024
USABLE = {"trn1": 180224, "trn2": 212984, "trn3": 245752}
PSUM_BANK, PSUM_BANKS = 2048, 8


def _line(tag: str) -> int:
    """The line of this file carrying the comment `# LINE-MARK: tag`."""
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, tag
    return hits[0]


def _run(kernel, *args, chip="trn2", **kw):
    return trnsim.run_kernel(kernel, args, chip=chip, **kw)


DUMMY = np.zeros((1, 1), np.float32)


# -- placement ------------------------------------------------------------
def test_explicit_address_and_partition_offset_are_honoured():
    def kern(x):
        a = nl.ndarray((128, 64), nl.float32, address=4096, name="a")
        b = nl.ndarray((16, 8), nl.int32, address=(32, 1024), name="b")
        nisa.memset(dst=a, value=1.5)
        nisa.memset(dst=b, value=0x01020304)
        return (a.storage.address, a.storage.partition, b.storage.address, b.storage.partition)

    (aa, ap, ba, bp), run = _run(kern, DUMMY)
    assert (aa, ap, ba, bp) == (4096, 0, 1024, 32)
    sbuf = run.cores[0].sbuf.data
    a_bytes = sbuf[:, 4096:4096 + 64 * 4].copy().view(np.float32)
    assert (a_bytes == 1.5).all()
    b_bytes = sbuf[32:48, 1024:1024 + 32].copy().view(np.int32)
    assert (b_bytes == 0x01020304).all()
    assert (sbuf[31, 1024:1056] != 0x04).any() or (sbuf[48, 1024:1056] != 0x04).any()
    w = [i for i in run.program if i.opcode == "memset"][1].writes[0]
    assert (w.p_lo, w.p_hi, w.lo, w.hi) == (32, 48, 1024, 1056)


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_explicit_address_limits(chip):
    usable = USABLE[chip]

    def past_end(x):
        nl.ndarray((128, 16), nl.float32, address=usable - 32, name="tail")

    with pytest.raises(CapacityError, match=rf"'tail'.*ends at byte {usable + 32}.*{usable}"):
        _run(past_end, DUMMY, chip=chip)

    def unaligned_psum(x):
        nl.ndarray((128, 16), nl.float32, buffer=nl.psum, address=1024, name="pt")

    with pytest.raises(CapacityError, match="'pt'.*not bank-aligned.*2048"):
        _run(unaligned_psum, DUMMY, chip=chip)

    def too_many_partitions(x):
        nl.ndarray((64, 16), nl.float32, address=(96, 0), name="hi")

    with pytest.raises(trnsim.NkiValidationError, match="'hi'.*partition 96.*128"):
        _run(too_many_partitions, DUMMY, chip=chip)


def test_exact_usable_size_fits_and_one_more_element_does_not():
    for chip, usable in USABLE.items():
        def full(x):
            t = nl.ndarray((128, usable // 4), nl.float32, name="full")
            nisa.memset(dst=t, value=0.0)

        assert _placed(_run(full, DUMMY, chip=chip)[1], "full") == [0]

        def over(x):
            nl.ndarray((128, usable // 4 + 1), nl.float32, name="over")

        with pytest.raises(CapacityError, match=rf"'over'.*needs {usable + 4 - usable % 4} bytes"):
            _run(over, DUMMY, chip=chip)


# -- aliasing -------------------------------------------------------------
def test_view_dtype_aliases_bytes():
    def kern(x):
        t = nl.ndarray((4, 8), nl.float32, name="t")
        nisa.memset(dst=t, value=1.0)
        out_i = nl.ndarray((4, 8), nl.int32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out_i, src=t.view(nl.int32))
        h = t.view(nl.bfloat16)  # (4, 16): the two halves of each fp32
        nisa.memset(dst=h[:, 0:2], value=2.0)  # low half of t[:, 0] = bf16 2.0 bits
        out_f = nl.ndarray((4, 8), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out_f, src=t)
        return out_i, out_f, h.shape

    (oi, of, hshape), _ = _run(kern, DUMMY)
    assert hshape == (4, 16)
    assert (oi == 0x3F800000).all()
    two_bf16 = int(np.array(2.0, ml_dtypes.bfloat16).view(np.uint16))
    want = np.uint32(two_bf16 << 16 | two_bf16).view(np.float32)  # both halves written
    np.testing.assert_array_equal(of[:, 0], np.full(4, want))
    assert (of[:, 1:] == 1.0).all()


def test_overlapping_views_alias():
    def kern(x):
        t = nl.ndarray((8, 16), nl.float32, name="t")
        nisa.memset(dst=t, value=0.0)
        nisa.memset(dst=t[:, 0:8], value=1.0)
        nisa.memset(dst=t[:, 4:12], value=2.0)
        nisa.memset(dst=t[2:4, 6:7], value=3.0)
        out = nl.ndarray((8, 16), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=t)
        return out

    out, _ = _run(kern, DUMMY)
    want = np.zeros((8, 16), np.float32)
    want[:, 0:4], want[:, 4:12], want[2:4, 6] = 1, 2, 3
    np.testing.assert_array_equal(out, want)


def test_explicit_address_overlapping_a_live_tensor_keeps_its_bytes():
    def kern(x):
        a = nl.ndarray((4, 4), nl.float32, address=256, name="a")
        nisa.memset(dst=a, value=1.0)
        b = nl.ndarray((4, 8), nl.int32, address=256, name="b")  # covers a and 16 more bytes
        out = nl.ndarray((4, 4), nl.int32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=b[:, 0:4])
        fresh = nl.ndarray((4, 4), nl.int32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=fresh, src=b[:, 4:8])
        return out, fresh

    (out, fresh), _ = _run(kern, DUMMY)
    assert (out == 0x3F800000).all()  # a's bytes, seen through b
    assert (fresh == 4).all()  # the part no live tensor held is fresh (int fill 4)


# -- liveness and reuse (the compiler model places blocks: trnsim.compiler.allocation) --
def _placed(run, name):
    """Physical start of each placement of the tensors named `name`, in order."""
    plan = run.program.memory
    return [p.start for p in plan.placements if plan.allocations[p.alloc].name == name]


def test_space_is_reused_after_the_last_use():
    # 64 KiB tiles on trn2 (212984 usable bytes per partition): three fit beside each
    # other; b is dead after its last use, so d takes b's space (next-fit wraps around)
    # while a, used again at the end, keeps its own.
    def kern(x):
        n = 64 * KiB // 4
        out = nl.ndarray((128, 4), nl.float32, buffer=nl.shared_hbm)
        a = nl.ndarray((128, n), nl.float32, name="a")
        nisa.memset(dst=a, value=1.0)
        for name in ("b", "c", "d"):
            t = nl.ndarray((128, n), nl.float32, name=name)
            nisa.memset(dst=t, value=2.0)
            nisa.tensor_tensor(dst=a[:, 0:4], data1=a[:, 0:4], data2=t[:, 0:4], op=nl.add)
        nisa.dma_copy(dst=out, src=a[:, 0:4])
        return out

    out, run = _run(kern, DUMMY, chip="trn2")
    assert (out == 7.0).all()
    assert [_placed(run, n) for n in "abcd"] == [[0], [64 * KiB], [128 * KiB], [64 * KiB]]


@pytest.mark.filterwarnings("ignore::trnsim.UninitializedReadWarning")  # reads the fill on purpose
def test_reused_space_is_refilled():
    def kern(x):
        n = 30000  # 120000 bytes per partition: two do not fit in trn2's 212984
        a = nl.ndarray((4, n), nl.float32, name="a")
        nisa.memset(dst=a, value=7.0)
        addr = a.storage.address
        del a
        b = nl.ndarray((4, n), nl.float32, name="b")
        assert b.storage.address == addr
        out = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=b[:, 0:4])
        return out

    out, _ = _run(kern, DUMMY, chip="trn2")
    assert np.isnan(out).all()  # not a's stale 7.0


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_loop_reallocating_a_tile_rotates(chip):
    tile_bytes = 64 * KiB  # 100 live copies would need 6.4 MiB per partition

    def kern(x):
        out = nl.ndarray((128, 4), nl.float32, buffer=nl.shared_hbm)
        acc = nl.ndarray((128, 4), nl.float32, name="acc")
        nisa.memset(dst=acc, value=0.0)
        for i in range(100):
            t = nl.ndarray((128, tile_bytes // 4), nl.float32, name="t")
            nisa.memset(dst=t[:, 0:4], value=float(i))
            nisa.tensor_tensor(dst=acc, data1=acc, data2=t[:, 0:4], op=nl.add)
        nisa.dma_copy(dst=out, src=acc)
        return out

    out, run = _run(kern, DUMMY, chip=chip)
    assert (out == sum(range(100))).all()
    addrs = _placed(run, "t")
    # next-fit: consecutive iterations get different buffers, cycling through the arena
    assert all(a != b for a, b in zip(addrs, addrs[1:]))
    assert len(set(addrs)) == (USABLE[chip] - 16) // tile_bytes  # acc holds the first 16 B
    assert run.program.memory.peak[("sbuf", 0)] == tile_bytes + 16


def test_helper_function_tiles_die_on_return():
    def helper(src):
        t = nl.ndarray((128, 40 * KiB), nl.float32, name="scratch")  # 160 KiB/partition
        nisa.memset(dst=t[:, 0:1], value=1.0)
        nisa.tensor_copy(dst=src, src=t[:, 0:1])

    def kern(x):
        out = nl.ndarray((128, 1), nl.float32, buffer=nl.shared_hbm)
        r = nl.ndarray((128, 1), nl.float32, name="r")
        for _ in range(3):
            helper(r)
        nisa.dma_copy(dst=out, src=r)
        return out

    out, _ = _run(kern, DUMMY, chip="trn1")
    assert (out == 1.0).all()


# -- PSUM banks -----------------------------------------------------------
def _all_live(tiles):
    """Write every tile, then read every one: all are live at once."""
    for t in tiles:
        nisa.memset(dst=t, value=1.0)
    sink = nl.ndarray((128, 1), nl.float32, name="sink")
    for t in tiles:
        nisa.tensor_copy(dst=sink, src=t[:, 0:1])


def test_psum_eight_banks():
    def kern(x):
        _all_live([nl.ndarray((128, 512), nl.float32, buffer=nl.psum, name="ps")
                   for _ in range(8)])

    _, run = _run(kern, DUMMY)
    assert _placed(run, "ps") == [i * PSUM_BANK for i in range(PSUM_BANKS)]
    assert run.program.memory.spills == []


def test_small_psum_tile_takes_a_whole_bank():
    def kern(x):
        _all_live([nl.ndarray((128, 1), nl.float32, buffer=nl.psum, name="s") for _ in range(9)])

    _, run = _run(kern, DUMMY)
    assert _placed(run, "s")[:8] == [i * PSUM_BANK for i in range(8)]
    assert len(run.program.memory.spills) == 2  # the ninth tile: one save, one reload

    def two_bank(x):
        a = nl.ndarray((128, 1), nl.float32, buffer=nl.psum, name="a")
        b = nl.ndarray((128, 1024), nl.float32, buffer=nl.psum, name="b")  # 4 KiB = 2 banks
        c = nl.ndarray((128, 1), nl.bfloat16, buffer=nl.psum, name="c")
        _all_live([a, b, c])

    _, run = _run(two_bank, DUMMY)
    assert [_placed(run, n) for n in "abc"] == [[0], [2048], [6144]]


def test_psum_tile_larger_than_psum_is_rejected():
    def kern(x):
        nl.ndarray((128, 4097), nl.float32, buffer=nl.psum, name="huge")

    with pytest.raises(trnsim.NkiValidationError, match="'huge'.*16388 bytes.*16384"):
        _run(kern, DUMMY, chip="trn3")


# -- SBUF capacity ----------------------------------------------------------
def _two_tiles_kernel(kib):
    def kern(x):
        n = kib * KiB // 4
        out = nl.ndarray((128, 2), nl.float32, buffer=nl.shared_hbm)
        a = nl.ndarray((128, n), nl.float32, name="big_a")  # LINE-MARK: big-a
        b = nl.ndarray((128, n), nl.float32, name="big_b")  # LINE-MARK: big-b
        nisa.dma_copy(dst=a[:, 0:2], src=x)
        nisa.tensor_tensor(dst=b[:, n - 2:n], data1=a[:, 0:2], data2=a[:, 0:2], op=nl.add)
        nisa.dma_copy(dst=out, src=b[:, n - 2:n])
        return out
    return kern


@pytest.mark.parametrize("chip", ["trn1", "trn2"])
def test_two_120kib_tiles_overflow_sbuf(chip, tmp_path):
    x = np.arange(256, dtype=np.float32).reshape(128, 2)
    with pytest.raises(CapacityError) as ei:
        _run(_two_tiles_kernel(120), x, chip=chip)
    msg = str(ei.value)
    assert f"SBUF overflow on {chip}" in msg
    assert "tensor_tensor needs its operand blocks resident at once (245760 bytes" in msg
    assert f"the {USABLE[chip]} usable bytes per partition" in msg
    assert re.search(rf"big_a float32\[128, 30720\]: 122880 B/partition, "
                     rf"allocated at \S+test_memory.py:{_line('big-a')}", msg)
    assert re.search(rf"big_b float32\[128, 30720\]: 122880 B/partition, "
                     rf"allocated at \S+test_memory.py:{_line('big-b')}", msg)
    assert ei.value.op == "tensor_tensor"
    # 2 x 60 KiB fits, and the kernel computes what it should
    out, _ = _run(_two_tiles_kernel(60), x, chip=chip)
    np.testing.assert_array_equal(out, 2 * x)
    # The 120 KiB kernel is otherwise valid: it is exactly the kind a simulator that
    # allocates every tensor independently (AWS's nki.simulate: "without ... validating
    # against SBUF/PSUM capacity limits") runs to completion. With capacity checks lifted
    # (the same chip with a large usable SBUF), it does run and gives the right values.
    big = chip_with_usable_sbuf(tmp_path, chip, 1 << 20)
    out, _ = _run(_two_tiles_kernel(120), x, chip=big)
    np.testing.assert_array_equal(out, 2 * x)


def test_two_120kib_tiles_also_overflow_trn3_by_8_bytes():
    # 2 x 122880 = 245760 = trn3's 245752 usable bytes + 8
    with pytest.raises(CapacityError, match="245760 bytes per partition.*245752 usable"):
        _run(_two_tiles_kernel(120), np.zeros((128, 2), np.float32), chip="trn3")


# -- fresh memory and strict mode -------------------------------------------
@pytest.mark.parametrize("dtype, check", [
    (nl.float32, lambda v: np.isnan(v).all()),
    (nl.bfloat16, lambda v: np.isnan(v.astype(np.float32)).all()),
    (nl.float16, lambda v: np.isnan(v.astype(np.float32)).all()),
    (nl.float8_e4m3, lambda v: np.isnan(v.astype(np.float32)).all()),
    (nl.int32, lambda v: (v == 4).all()),
    (nl.int8, lambda v: (v == 4).all()),
    (nl.uint16, lambda v: (v == 4).all()),
])
@pytest.mark.parametrize("buffer", ["sbuf", "psum", "shared_hbm"])
@pytest.mark.filterwarnings("ignore::trnsim.UninitializedReadWarning")  # reads the fill on purpose
def test_fresh_memory_fill(dtype, check, buffer):
    def kern(x):
        out = nl.ndarray((4, 8), dtype, buffer=nl.shared_hbm)
        if buffer == "shared_hbm":
            return out
        t = nl.ndarray((4, 8), dtype, buffer=getattr(nl, buffer))
        if buffer == "psum":
            s = nl.ndarray((4, 8), dtype)
            nisa.tensor_copy(dst=s, src=t)
            t = s
        nisa.dma_copy(dst=out, src=t)
        return out

    out, _ = _run(kern, DUMMY)
    assert check(out)


def _strict_kernel(x):
    out = nl.ndarray((128, 8), nl.float32, buffer=nl.shared_hbm)
    t = nl.ndarray((128, 8), nl.float32, name="half_written")  # LINE-MARK: strict-alloc
    nisa.dma_copy(dst=t[:, 0:4], src=x)
    nisa.dma_copy(dst=out[:, 0:4], src=t[:, 0:4])  # written part: fine
    nisa.tensor_copy(dst=t[:, 4:8], src=t[:, 2:6])  # LINE-MARK: strict-read
    nisa.dma_copy(dst=out[:, 4:8], src=t[:, 4:8])
    return out


def test_uninitialized_read_is_nan_by_default():
    x = np.ones((128, 4), np.float32)
    with pytest.warns(trnsim.UninitializedReadWarning, match="half_written"):
        out, _ = _run(_strict_kernel, x)
    assert (out[:, 0:4] == 1).all()
    assert (out[:, 4:6] == 1).all() and np.isnan(out[:, 6:8]).all()


def test_strict_mode_raises_naming_tensor_and_line(monkeypatch):
    x = np.ones((128, 4), np.float32)
    for run in (lambda: _run(_strict_kernel, x, strict=True),
                lambda: (monkeypatch.setenv("TRNSIM_STRICT", "1"), _run(_strict_kernel, x))):
        with pytest.raises(UninitializedReadError) as ei:
            run()
        e = ei.value
        assert e.op == "tensor_copy"
        assert "'half_written'" in str(e) and "float32[128, 4]" in str(e)
        assert f"test_memory.py:{_line('strict-alloc')}" in str(e)  # where it was allocated
        assert e.location.file == __file__ and e.location.line == _line("strict-read")


def test_strict_mode_hbm_output_never_written():
    def kern(x):
        out = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm, name="scratch_hbm")
        t = nl.ndarray((4, 4), nl.float32)
        nisa.dma_copy(dst=t, src=out)
        return t

    with pytest.raises(UninitializedReadError, match="scratch_hbm"):
        _run(kern, DUMMY, strict=True)


def test_strict_mode_after_reuse_sees_fresh_memory():
    def kern(x):
        a = nl.ndarray((4, 4), nl.float32)
        nisa.memset(dst=a, value=1.0)
        del a
        b = nl.ndarray((4, 4), nl.float32, name="reborn")
        out = nl.ndarray((4, 4), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=b)
        return out

    with pytest.raises(UninitializedReadError, match="reborn"):
        _run(kern, DUMMY, strict=True)
