"""On-chip allocation for legacy (`neuronxcc.nki`) kernels.

Compiler-managed allocation (trnsim.compiler.allocation): a tile allocated in a loop
body gets a different buffer in each iteration while free space lasts (next-fit), so
the rotation depth grows with the free space; live tiles that do not fit spill.

Direct allocation (`neuronxcc.nki.compiler`): `ncc.sbuf.mod_alloc` / `ncc.psum.mod_alloc`
/ `alloc(func)` place each logical block at the documented address (the modulo
scheme of the compiler reference: block idx -> base + lin(idx % tiles) * tile size),
blocks mapped to one physical tile share its bytes, invalid placements are rejected,
and `force_auto_alloc` turns direct allocation off.

Figures typed in from nki-api.md (the project's NKI notes) §3: trn2 has 212984 usable SBUF
bytes per partition; PSUM is 8 banks x 2 KiB per partition."""
import numpy as np
import pytest

import trnsim.compat as compat
from trnsim.machine.errors import CapacityError, NkiValidationError, OutOfBoundsError

KiB = 1024
USABLE_TRN2 = 212984
PSUM_BANK = 2048


def _line(tag: str) -> int:
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, tag
    return hits[0]


class Legacy:
    def __init__(self):
        import neuronxcc.nki as nki
        import neuronxcc.nki.compiler as ncc
        import neuronxcc.nki.isa as nisa
        import neuronxcc.nki.language as nl
        self.nki, self.nl, self.nisa, self.ncc = nki, nl, nisa, ncc


@pytest.fixture
def L():
    was = compat.installed()
    compat.install()
    try:
        yield Legacy()
    finally:
        if not was:
            compat.uninstall()


# -- compiler-managed allocation: rotation -------------------------------------------
def _rotating_kernel(L, hog_bytes, tile_bytes, iters):
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit(platform_target="trn2")
    def k(a):
        out = nl.ndarray((iters, 128, 8), dtype=nl.float32, buffer=nl.shared_hbm)
        hog = nl.ndarray((128, hog_bytes // 4), dtype=nl.float32, buffer=nl.sbuf,
                         name="hog") if hog_bytes else None
        if hog is not None:  # live across the loop: written before, read after
            hog[...] = nisa.memset(shape=(128, hog_bytes // 4), value=0.0, dtype=nl.float32)
        for i in nl.affine_range(iters):
            t = nl.ndarray((128, tile_bytes // 4), dtype=nl.float32, buffer=nl.sbuf)
            t[:, 0:8] = nl.load(a[i])
            nl.store(out[i], value=t[:, 0:8])
        if hog is not None:
            nl.store(out[0], value=nl.add(hog[:, 0:8], nl.load(a[0])))  # hog is zeros
        return out
    return k


@pytest.mark.parametrize("hog_kib", [0, 64, 128])
def test_loop_tile_rotation_depth_grows_with_free_space(L, hog_kib):
    tile, iters = 32 * KiB, 13
    hog = hog_kib * KiB
    a = np.arange(iters * 128 * 8, dtype=np.float32).reshape(iters, 128, 8)
    k = _rotating_kernel(L, hog, tile, iters)
    np.testing.assert_array_equal(k(a), a)
    addrs = [ins.writes[0].lo for ins in k.last_run.program
             if ins.opcode == "dma_copy" and ins.writes[0].space == "sbuf"][:iters]
    depth = (USABLE_TRN2 - hog) // tile  # 6, 4, 2 buffers
    assert len(set(addrs)) == depth
    assert addrs == [hog + (i % depth) * tile for i in range(iters)]


def test_rotation_depths_order():
    depths = [(USABLE_TRN2 - h * KiB) // (32 * KiB) for h in (0, 64, 128)]
    assert depths == [6, 4, 2]  # the expectations above: depth falls as the hog grows


def test_result_tiles_of_a_loop_rotate(L):
    """Tiles the kernel never names (results of nl.load / nisa calls) rotate too."""
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit
    def k(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        for i in nl.affine_range(a.shape[0]):
            x = nl.load(a[i])
            nl.store(out[i], value=nisa.tensor_tensor(x, x, op=np.add))
        return out

    a = np.arange(8 * 128 * 512, dtype=np.float32).reshape(8, 128, 512) % 1000
    np.testing.assert_array_equal(k(a), 2 * a)
    loads = [ins.writes[0] for ins in k.last_run.program
             if ins.opcode == "dma_copy" and ins.writes[0].space == "sbuf"]
    assert len(loads) == 8
    assert all(p.lo != q.lo for p, q in zip(loads, loads[1:]))
    assert len({w.lo for w in loads}) == 8  # 2 x 2 KiB tiles per iteration: no wrap yet


def test_psum_tiles_of_a_loop_cycle_through_the_banks(L):
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit
    def k(s, m):
        out = nl.ndarray((10, 128, 512), dtype=nl.float32, buffer=nl.shared_hbm)
        st, mv = nl.load(s), nl.load(m)
        for i in nl.affine_range(10):
            p = nisa.nc_matmul(st, mv)
            nl.store(out[i], value=nl.copy(p))
        return out

    rng = np.random.default_rng(0)
    s = rng.integers(-3, 4, (64, 128)).astype(np.float32)
    m = rng.integers(-3, 4, (64, 512)).astype(np.float32)
    out = k(s, m)
    np.testing.assert_array_equal(out, np.broadcast_to(s.T @ m, (10, 128, 512)))
    banks = [ins.writes[0].lo // PSUM_BANK for ins in k.last_run.program
             if ins.opcode == "nc_matmul"]
    assert banks == [i % 8 for i in range(10)]


# -- compiler-managed allocation: more live tiles than fit -----------------------------
def test_live_tiles_that_do_not_fit_spill(L):
    nki, nl, nisa = L.nki, L.nl, L.nisa

    @nki.jit(platform_target="trn2")
    def k(a):
        out = nl.ndarray((8, 128, 4), dtype=nl.float32, buffer=nl.shared_hbm)
        keep = []
        for i in nl.affine_range(8):
            t = nl.ndarray((128, 8 * KiB), dtype=nl.float32, buffer=nl.sbuf, name=f"keep{i}")
            t[...] = nisa.memset(shape=(128, 8 * KiB), value=float(i), dtype=nl.float32)
            keep.append(t)  # every tile stays live until the second loop reads it
        for i in nl.affine_range(8):
            nl.store(out[i], value=keep[i][:, 0:4])
        return out

    out = k(np.zeros((1, 1), np.float32))
    np.testing.assert_array_equal(out[:, 0, 0], np.arange(8))
    # 6 x 32 KiB fit in 212984 bytes: two tiles are saved to HBM and loaded back
    spills = [i for i in k.last_run.program if i.attrs.get("spill")]
    assert [i.attrs["spill"] for i in spills].count("save") == 2
    assert [i.attrs["spill"] for i in spills].count("reload") == 2
    assert all(i.bytes_moved == 32 * KiB * 128 for i in spills)


# -- direct allocation -----------------------------------------------------------------
def _addresses(t):
    """{block index: (start partition, byte address)} of a direct-allocated tensor."""
    return {idx: (tile.core.storage.partition, tile.core.storage.address)
            for idx, tile in t.tiles.items()}


def test_sbuf_mod_alloc_places_blocks_modulo(L):
    """The compiler reference's example: (4, par_dim(128), 512) bf16 with
    num_free_tiles=(2,) -> byte addresses 0, 1024, 0, 1024."""
    nki, nl, ncc = L.nki, L.nl, L.ncc
    got = {}

    @nki.jit
    def k(a):
        t = nl.ndarray((4, nl.par_dim(128), 512), dtype=nl.bfloat16,
                       buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
        got["1d"] = _addresses(t)
        t2 = nl.ndarray((2, 3, nl.par_dim(128), 16), dtype=nl.float32,
                        buffer=ncc.sbuf.mod_alloc(base_addr=4096, num_free_tiles=(2, 3)))
        got["2d"] = _addresses(t2)
        small = nl.ndarray((8, nl.par_dim(32), 64), dtype=nl.float32,
                           buffer=ncc.sbuf.mod_alloc(base_addr=8192, num_par_tiles=(4,)))
        got["par"] = _addresses(small)
        one = nl.ndarray((3, nl.par_dim(128), 64), dtype=nl.float32,
                         buffer=ncc.sbuf.mod_alloc(base_addr=12288))
        got["one"] = _addresses(one)
        flat = nl.ndarray((128, 64), dtype=nl.float32, buffer=ncc.sbuf.mod_alloc(base_addr=96))
        got["flat"] = (flat.core.storage.partition, flat.core.storage.address, flat.shape)
        return a

    k(np.zeros((1, 1), np.float32))
    assert got["1d"] == {(0,): (0, 0), (1,): (0, 1024), (2,): (0, 0), (3,): (0, 1024)}
    assert got["2d"] == {(i, j): (0, 4096 + (i * 3 + j) * 64) for i in range(2)
                         for j in range(3)}
    assert got["par"] == {(i,): (32 * (i % 4), 8192) for i in range(8)}
    assert got["one"] == {(i,): (0, 12288) for i in range(3)}  # no tile counts: one tile
    assert got["flat"] == (0, 96, (128, 64))


def test_blocks_sharing_a_physical_tile_share_its_bytes(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc

    @nki.jit
    def k(a):
        out = nl.ndarray((4, 128, 64), dtype=a.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray((4, nl.par_dim(128), 64), dtype=a.dtype,
                       buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
        for i in nl.affine_range(4):
            t[i] = nl.load(a[i])
        for i in nl.affine_range(4):  # blocks 0/1 now hold what blocks 2/3 wrote
            nl.store(out[i], value=t[i])
        return out

    a = np.arange(4 * 128 * 64, dtype=np.float32).reshape(4, 128, 64)
    out = k(a)
    np.testing.assert_array_equal(out, a[[2, 3, 2, 3]])


def test_double_buffered_loop_with_direct_allocation(L):
    """The usual pattern: one tensor with two physical tiles, block i per iteration."""
    nki, nl, nisa, ncc = L.nki, L.nl, L.nisa, L.ncc

    @nki.jit
    def k(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        n = a.shape[0]
        t = nl.ndarray((n, nl.par_dim(128), 64), dtype=a.dtype,
                       buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
        r = nl.ndarray((n, nl.par_dim(128), 64), dtype=a.dtype,
                       buffer=ncc.sbuf.mod_alloc(base_addr=512, num_free_tiles=(2,)))
        for i in nl.affine_range(n):
            t[i] = nl.load(a[i])
            r[i] = nisa.tensor_tensor(t[i], t[i], op=np.add)
            nl.store(out[i], value=r[i])
        return out

    a = np.arange(6 * 128 * 64, dtype=np.float32).reshape(6, 128, 64) % 101
    np.testing.assert_array_equal(k(a), 2 * a)
    loads = [ins.writes[0].lo for ins in k.last_run.program
             if ins.opcode == "dma_copy" and ins.writes[0].space == "sbuf"]
    assert loads == [0, 256] * 3


def test_psum_mod_alloc_and_alloc(L):
    nki, nl, nisa, ncc = L.nki, L.nl, L.nisa, L.ncc
    got = {}

    def bank_func(idx, pdim_size, fdim_size):
        got.setdefault("calls", []).append((idx, pdim_size, fdim_size))
        return (7 - idx[0], 0, 0)

    @nki.jit
    def k(s, m):
        out = nl.ndarray((6, 128, 512), dtype=nl.float32, buffer=nl.shared_hbm)
        ps = nl.ndarray((6, nl.par_dim(128), 512), dtype=nl.float32,
                        buffer=ncc.psum.mod_alloc(base_bank=2, num_bank_tiles=(3,)))
        got["mod"] = _addresses(ps)
        st, mv = nl.load(s), nl.load(m)
        for i in nl.affine_range(6):
            ps[i] = nisa.nc_matmul(st, mv)
            nl.store(out[i], value=nl.copy(ps[i]))
        custom = nl.ndarray((2, nl.par_dim(128), 256), dtype=nl.float32,
                            buffer=ncc.psum.alloc(bank_func))
        got["custom"] = _addresses(custom)
        return out

    rng = np.random.default_rng(1)
    s = rng.integers(-2, 3, (32, 128)).astype(np.float32)
    m = rng.integers(-2, 3, (32, 512)).astype(np.float32)
    out = k(s, m)
    np.testing.assert_array_equal(out, np.broadcast_to(s.T @ m, (6, 128, 512)))
    assert got["mod"] == {(i,): (0, (2 + i % 3) * PSUM_BANK) for i in range(6)}
    assert got["custom"] == {(0,): (0, 7 * PSUM_BANK), (1,): (0, 6 * PSUM_BANK)}
    assert got["calls"] == [((0,), 128, 1024), ((1,), 128, 1024)]
    banks = [ins.writes[0].lo // PSUM_BANK for ins in k.last_run.program
             if ins.opcode == "nc_matmul"]
    assert banks == [2, 3, 4, 2, 3, 4]


def test_sbuf_alloc_with_a_function(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc
    got = {}

    def back_to_back(idx, pdim_size, fdim_size):
        got.setdefault("calls", []).append((idx, pdim_size, fdim_size))
        (i,) = idx
        return (0, 2048 + i * fdim_size)

    @nki.jit
    def k(a):
        t = nl.ndarray((4, nl.par_dim(128), 512), dtype=nl.bfloat16,
                       buffer=ncc.sbuf.alloc(back_to_back))
        got["addr"] = _addresses(t)
        return a

    k(np.zeros((1, 1), np.float32))
    assert got["addr"] == {(i,): (0, 2048 + 1024 * i) for i in range(4)}
    assert got["calls"] == [((i,), 128, 1024) for i in range(4)]


def _at(loc):
    return lambda idx, pdim, fdim: loc


@pytest.mark.parametrize("module, fn, arg, shape, match", [
    ("sbuf", "alloc", _at((32, 0)), (128, 64),
     r"start_partition 32 is not allowed for a tile of 128 partitions"),
    ("sbuf", "alloc", _at((64, 0)), (64, 64), None),
    ("sbuf", "alloc", _at((96, 0)), (64, 64),
     r"start_partition 96 is not allowed for a tile of 64 partitions.*0 or 64"),
    ("sbuf", "alloc", _at((96, 0)), (32, 64), None),
    ("sbuf", "alloc", _at((0, 102)), (128, 64), r"byte_addr 102 is not aligned"),  # 4-byte rule
    ("sbuf", "alloc", _at(0), (128, 64), r"must return \(start_partition, byte_addr\)"),
    ("sbuf", "mod_alloc", dict(base_addr=212768), (128, 64),  # 32-aligned, 256 B tile
     r"ends at byte 213024, past the 212984 bytes of SBUF"),
    ("sbuf", "mod_alloc", dict(base_addr=0, base_partition=32), (32, 64),
     r"base_partition=32.*must be 0"),
    ("psum", "mod_alloc", dict(base_bank=0), (128, 1024),
     r"within one 2048-byte bank.*ends at byte 4096"),
    ("psum", "mod_alloc", dict(base_bank=8), (128, 512), r"PSUM bank 8 out of range"),
    ("psum", "mod_alloc", dict(base_bank=0, base_addr=512), (128, 128),
     r"base_addr=512.*must be 0"),
    ("psum", "mod_alloc", dict(base_bank=0, num_free_tiles=(2,)), (128, 128),
     r"num_free_tiles=\(2,\) must be empty or \(1, 1, \.\.\.\)"),
    ("psum", "alloc", _at((3, 0, 0)), (128, 128), None),
    ("psum", "alloc", _at((3, 0)), (128, 128),
     r"must return \(bank_id, start_partition, byte_addr\)"),
])
def test_invalid_direct_placements_are_rejected(L, module, fn, arg, shape, match):
    nki, nl, ncc = L.nki, L.nl, L.ncc
    make = getattr(getattr(ncc, module), fn)

    @nki.jit(platform_target="trn2")
    def k(a):
        buf = make(**arg) if isinstance(arg, dict) else make(arg)  # LINE-MARK: make
        t = nl.ndarray(shape, dtype=nl.float32, buffer=buf, name="placed")  # LINE-MARK: placed
        return t.core.storage.partition, t.core.storage.address

    if match is None:  # a valid placement lands where asked
        loc = arg(None, None, None)
        want = loc if module == "sbuf" else (loc[1], loc[0] * PSUM_BANK + loc[2])
        assert k(np.zeros((1, 1), np.float32)) == want
        return
    with pytest.raises(NkiValidationError, match=match) as ei:
        k(np.zeros((1, 1), np.float32))
    # arguments mod_alloc itself rejects fail where it is called; placements, at the tensor
    at_call = fn == "mod_alloc" and ("must be 0" in match or "must be empty" in match)
    assert ei.value.location.line == _line("make" if at_call else "placed")


def test_mod_alloc_tile_counts_must_match_block_dims(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc

    @nki.jit
    def k(a):
        nl.ndarray((4, nl.par_dim(128), 64), dtype=nl.float32,
                   buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2, 2)))

    with pytest.raises(NkiValidationError, match=r"num_free_tiles=\(2, 2\).*one entry per "
                                                 r"block dimension \(1\)"):
        k(np.zeros((1, 1), np.float32))


def test_block_indexing_of_direct_tensors(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc

    def kernel(key):
        @nki.jit
        def k(a):
            t = nl.ndarray((4, nl.par_dim(128), 64), dtype=nl.float32,
                           buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
            nl.store(a, value=t[key])
        return k

    a = np.zeros((128, 64), np.float32)
    with pytest.raises(OutOfBoundsError, match=r"on dimension 0: index range \[4, 4\] "
                                               r"exceed dimension size of 4"):
        kernel(4)(a)
    with pytest.raises(NkiValidationError, match="block dimension.*with integers"):
        kernel(slice(0, 2))(a)


def test_zeros_in_a_direct_tensor(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc

    @nki.jit
    def k(a):
        out = nl.ndarray((3, 128, 16), dtype=nl.float32, buffer=nl.shared_hbm)
        z = nl.zeros((3, nl.par_dim(128), 16), dtype=nl.float32,
                     buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(3,)))
        for i in nl.affine_range(3):
            nl.store(out[i], value=z[i])
        return out

    assert (k(np.zeros((1, 1), np.float32)) == 0).all()


def test_auto_alloc_markers_are_automatic_allocation(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc
    got = []

    @nki.jit
    def k(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        for buf in (ncc.sbuf, ncc.sbuf.auto_alloc(), nl.sbuf):
            t = nl.ndarray(a.shape, dtype=a.dtype, buffer=buf)
            t[...] = nl.load(a)
            got.append((str(t.buffer), t.core.storage.alloc))
        p = nl.ndarray((128, 512), dtype=nl.float32, buffer=ncc.psum.auto_alloc())
        q = nl.ndarray((128, 512), dtype=nl.float32, buffer=ncc.psum)
        got.append((str(p.buffer), str(q.buffer)))
        nl.store(out, value=t)
        return out

    a = np.arange(128 * 8, dtype=np.float32).reshape(128, 8)
    np.testing.assert_array_equal(k(a), a)
    assert [g[0] for g in got[:3]] == ["sbuf"] * 3 and got[3] == ("psum", "psum")
    allocations = k.last_run.program.allocations
    assert not any(allocations[g[1]].explicit for g in got[:3])  # placed by the allocator


def test_force_auto_alloc_ignores_direct_allocation(L):
    nki, nl, ncc = L.nki, L.nl, L.ncc
    kinds = []

    def body(a):
        out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
        t = nl.ndarray((4, nl.par_dim(128), 64), dtype=a.dtype,
                       buffer=ncc.sbuf.mod_alloc(base_addr=0, num_free_tiles=(2,)))
        kinds.append(type(t).__name__)
        for i in nl.affine_range(4):
            t[i] = nl.load(a[i])
        for i in nl.affine_range(4):
            nl.store(out[i], value=t[i])
        return out

    a = np.arange(4 * 128 * 64, dtype=np.float32).reshape(4, 128, 64)
    np.testing.assert_array_equal(nki.jit(body)(a), a[[2, 3, 2, 3]])  # blocks share tiles
    np.testing.assert_array_equal(ncc.force_auto_alloc(nki.jit(body))(a), a)  # they do not
    np.testing.assert_array_equal(nki.jit(ncc.force_auto_alloc(body))(a), a)
    np.testing.assert_array_equal(ncc.force_auto_alloc()(body)(a), a)
    assert kinds == ["BlockTensor", "LTensor", "LTensor", "LTensor"]
