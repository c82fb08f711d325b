"""Deliberately broken legacy (`neuronxcc.nki`) kernels: each error names the
instruction, the operand and the limit, and points at the kernel's own file:line.

Texts follow the legacy error reference (SDK-2.26 `nki.errors.rst`, quoted in
nki-api.md (the project's NKI notes) §3) where it has one:
- "Size of partition dimension 256 exceeds architecture limitation of 128"
- "number of partitions (dimension 0 size of a tile) mismatch in parameters (data1[128,
  512], data2[1, 512]) of 'tensor_tensor'"
- "Expected operand 'src' of 'load' to be in address space 'hbm', but got a tile in
  'sbuf' instead."
- "Out-of-bound access for tensor ... on dimension 1: index range [0, 4095] exceed
  dimension size of 4000"
- "Insufficient rank!" for a 1-D on-chip tile."""
import numpy as np
import pytest

import trnsim.compat as compat
from trnsim.machine.errors import CapacityError, NkiValidationError, OutOfBoundsError

KiB = 1024


def _line(tag: str) -> int:
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, tag
    return hits[0]


class Legacy:
    def __init__(self):
        import neuronxcc.nki as nki
        import neuronxcc.nki.isa as nisa
        import neuronxcc.nki.language as nl
        self.nki, self.nl, self.nisa = nki, nl, nisa


@pytest.fixture
def L():
    was = compat.installed()
    compat.install()
    try:
        yield Legacy()
    finally:
        if not was:
            compat.uninstall()


def _fails(L, kernel, *args, exc=NkiValidationError, tag):
    """Run `kernel` and return its error, checking it points at the LINE-MARK `tag`."""
    with pytest.raises(exc) as ei:
        L.nki.simulate_kernel(kernel, *args)
    e = ei.value
    assert e.location is not None and e.location.file == __file__, e
    assert e.location.line == _line(tag), (e.location, str(e))
    assert f"test_legacy_errors.py:{_line(tag)}" in str(e)  # the message carries file:line
    return e


ZEROS = np.zeros((256, 4096), np.float32)


# -- partition dimension ---------------------------------------------------------------
def test_partition_dim_over_128(L):
    nl = L.nl

    def declared(a):
        nl.ndarray((256, 64), dtype=nl.float32, buffer=nl.sbuf)  # LINE-MARK: p-declared

    def zeros(a):
        nl.zeros(shape=[256, 1024], dtype=np.float32, buffer=nl.sbuf)  # LINE-MARK: p-zeros

    def blocks(a):
        nl.ndarray((2, nl.par_dim(256), 64), dtype=nl.float32, buffer=nl.sbuf)  # LINE-MARK: p-blocks

    def loaded(a):
        nl.load(a[0:256, 0:64])  # LINE-MARK: p-load

    for kernel, tag in ((declared, "p-declared"), (zeros, "p-zeros"), (blocks, "p-blocks"),
                        (loaded, "p-load")):
        e = _fails(L, kernel, ZEROS, tag=tag)
        assert "Size of partition dimension 256 exceeds architecture limitation of 128" \
            in str(e)


def test_one_dimensional_tile_has_insufficient_rank(L):
    nl = L.nl

    def kernel(a):
        nl.ndarray((128,), dtype=nl.float32, buffer=nl.sbuf, name="flat")  # LINE-MARK: rank

    e = _fails(L, kernel, ZEROS, tag="rank")
    assert "Insufficient rank!" in str(e) and "'flat'" in str(e) and "(128,)" in str(e)


def test_partition_mismatch(L):
    nl, nisa = L.nl, L.nisa

    def kernel(a):
        x = nl.load(a[0:128, 0:512])
        y0 = nl.load(a[0:1, 0:512])
        nisa.tensor_tensor(x, y0, op=np.add)  # LINE-MARK: mismatch
        nl.load(a[0:1, 0:1])  # the next call issues the pending tensor_tensor

    e = _fails(L, kernel, ZEROS, tag="mismatch")
    assert e.op == "tensor_tensor"
    assert ("number of partitions (dimension 0 size of a tile) mismatch in parameters "
            "(data1[128, 512], data2[1, 512]") in str(e)
    assert "of 'tensor_tensor'" in str(e)


# -- memory placement --------------------------------------------------------------------
def test_load_from_sbuf_and_store_to_sbuf(L):
    nl = L.nl

    def load_sbuf(a):
        tmp = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.sbuf)
        nl.load(tmp)  # LINE-MARK: load-sbuf

    def store_sbuf(a):
        tmp = nl.ndarray((4, 4), dtype=nl.float32, buffer=nl.sbuf)
        nl.store(tmp, value=nl.load(a[0:4, 0:4]))  # LINE-MARK: store-sbuf

    e = _fails(L, load_sbuf, ZEROS, tag="load-sbuf")
    assert e.op == "load"
    assert ("Expected operand 'src' of 'load' to be in address space 'hbm', but got a tile "
            "in 'sbuf' instead.") in str(e)
    e = _fails(L, store_sbuf, ZEROS, tag="store-sbuf")
    assert ("Expected operand 'dst' of 'store' to be in address space 'hbm', but got a tile "
            "in 'sbuf' instead.") in str(e)


# -- out-of-bounds indices -----------------------------------------------------------------
def test_out_of_bound_index_range(L):
    nl = L.nl

    def whole_range(a):
        i_p = nl.arange(128)[:, None]
        i_f = nl.arange(4096)[None, :]
        nl.load(a[i_p, i_f])  # LINE-MARK: oob-load

    a = np.zeros((128, 4000), np.float32)
    e = _fails(L, whole_range, a, exc=OutOfBoundsError, tag="oob-load")
    assert ("Out-of-bound access for tensor a on dimension 1: index range [0, 4095] exceed "
            "dimension size of 4000") in str(e)


def _tiled_copy(L, masked_store):
    """The reference's example: a [128, 4000] tensor in 512-column tiles (the last one
    partial), loaded with a mask; the store is masked or not."""
    nl = L.nl

    def kernel(a):
        x = nl.ndarray([128, 4000], dtype=a.dtype, buffer=nl.shared_hbm, name="x")
        for i in nl.affine_range((4000 + 512 - 1) // 512):
            tile = nl.mgrid[0:128, 0:512]
            t = nl.load(a[tile.p, i * 512 + tile.x], mask=i * 512 + tile.x < 4000)
            if masked_store:
                nl.store(x[tile.p, i * 512 + tile.x], value=t, mask=i * 512 + tile.x < 4000)
            else:
                nl.store(x[tile.p, i * 512 + tile.x], value=t)  # LINE-MARK: oob-store
        return x
    return kernel


def test_out_of_bound_store_and_its_mask_fix(L):
    a = np.arange(128 * 4000, dtype=np.float32).reshape(128, 4000)
    e = _fails(L, _tiled_copy(L, masked_store=False), a, exc=OutOfBoundsError,
               tag="oob-store")
    # the simulator reports the failing iteration (i = 7): columns 3584..4095
    assert ("Out-of-bound access for tensor x on dimension 1: index range [3584, 4095] "
            "exceed dimension size of 4000") in str(e)
    out = L.nki.simulate_kernel(_tiled_copy(L, masked_store=True), a)
    np.testing.assert_array_equal(out, a)


# -- index forms ---------------------------------------------------------------------------
def test_one_dimensional_arange(L):
    nl = L.nl

    def kernel(a):
        tmp = nl.zeros((128, 1), dtype=nl.float32, buffer=nl.sbuf)
        i = nl.arange(64)
        nl.copy(tmp[i, 0])  # LINE-MARK: arange-1d

    def arith(a):
        i = nl.arange(64)
        return i * 2 + 1  # LINE-MARK: arange-1d-arith

    for k, tag in ((kernel, "arange-1d"), (arith, "arange-1d-arith")):
        e = _fails(L, k, ZEROS, tag=tag)
        assert "arange to be at least 2-D" in str(e)
        assert "nl.arange(n)[:, None]" in str(e) and "nl.arange(n)[None, :]" in str(e)


def test_mixing_basic_and_advanced_indexing(L):
    nl = L.nl

    def kernel(a):
        x = nl.zeros((4, 4), dtype=nl.float32, buffer=nl.sbuf)
        i = nl.arange(4)[:, None]
        nl.copy(x[i, :])  # LINE-MARK: mixed

    e = _fails(L, kernel, ZEROS, tag="mixed")
    assert "mixing basic indexing" in str(e) and "advanced indexing" in str(e)
    assert "not supported" in str(e)


# -- matmul limits -----------------------------------------------------------------------
def test_matmul_contraction_over_128(L):
    """K is the partition dim of both operands: a K = 256 stationary cannot be loaded,
    and HBM operands cannot be handed to the Tensor Engine."""
    nl, nisa = L.nl, L.nisa

    def loaded(a):
        s = nl.load(a[0:256, 0:128])  # LINE-MARK: k-load
        m = nl.load(a[0:256, 0:512])
        nl.copy(nisa.nc_matmul(s, m))

    def from_hbm(a):
        nl.copy(nisa.nc_matmul(a[0:256, 0:128], a[0:256, 0:512]))  # LINE-MARK: k-hbm

    e = _fails(L, loaded, ZEROS, tag="k-load")
    assert "Size of partition dimension 256 exceeds architecture limitation of 128" in str(e)
    e = _fails(L, from_hbm, ZEROS, tag="k-hbm")
    assert e.op == "nc_matmul"
    assert ("Expected operand 'stationary' of 'nc_matmul' to be in address space 'sbuf', "
            "but got a tile in 'hbm'") in str(e) and "float32[256, 128]" in str(e)


def test_matmul_free_sizes_over_the_limits(L):
    nl, nisa = L.nl, L.nisa

    def wide_stationary(a):
        s = nl.load(a[0:128, 0:256])
        m = nl.load(a[0:128, 0:512])
        nl.copy(nisa.nc_matmul(s, m))  # LINE-MARK: m-wide

    def wide_moving(a):
        s = nl.load(a[0:128, 0:128])
        m = nl.load(a[0:128, 0:1024])
        nl.copy(nisa.nc_matmul(s, m))  # LINE-MARK: n-wide

    e = _fails(L, wide_stationary, ZEROS, tag="m-wide")
    assert "256" in str(e) and "128" in str(e)  # M = 256 output partitions, limit 128
    e = _fails(L, wide_moving, ZEROS, tag="n-wide")
    assert e.op == "nc_matmul" and "moving float32[128, 1024]" in str(e)
    assert "N=1024" in str(e) and "limit of 512" in str(e)


# -- capacity ------------------------------------------------------------------------------
def test_sbuf_overflow_names_the_instruction_and_its_tiles(L):
    """An add of two 120 KiB tiles into a third needs 360 KiB at once: no spill helps."""
    nl = L.nl

    def kernel(a):
        x = nl.load(a[0])  # LINE-MARK: overflow-x
        y = nl.load(a[1])
        return nl.add(x, y)  # LINE-MARK: overflow-add

    a = np.zeros((2, 128, 30 * KiB), np.float32)
    e = _fails(L, kernel, a, exc=CapacityError, tag="overflow-add")
    msg = str(e)
    assert "SBUF overflow on trn2" in msg and e.op == "tensor_tensor"
    assert "(368640 bytes per partition)" in msg and "212984 usable bytes" in msg
    assert msg.count("float32[128, 30720]: 122880 B/partition") == 3
    assert f"allocated at {__file__}:{_line('overflow-x')}" in msg
