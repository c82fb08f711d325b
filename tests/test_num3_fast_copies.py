"""The one-copy DMA (`Instr.copy` in isa/base.py) and the matmul's in-place PSUM add
(machine/access.py `_tile_rows`) against the general paths they stand in for (read then
write; row_loops):
the same memory bytes (NaN payloads, signed zeros, subnormals, inf), record, and
warnings, with each fast path checked to be taken."""
import warnings

import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import base
from trnsim.machine import access

from kernel_helpers import bits


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for var in ("NEURON_PLATFORM_TARGET_OVERRIDE", "TRNSIM_MATMUL_ACCUMULATION",
                "TRNSIM_STRICT"):
        monkeypatch.delenv(var, raising=False)


def _special_fp32(shape, seed):
    """Random fp32 values with NaNs of several payloads and signs, infs, signed zeros
    and subnormals sprinkled in."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape).astype(np.float32)
    u = v.view(np.uint32)
    specials = np.array([0x7FC01234, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000,
                         0x80000000, 0x00000000, 0x00000007, 0x80400000], np.uint32)
    pick = rng.random(shape) < 0.05
    u[pick] = rng.choice(specials, size=int(pick.sum()))
    return v


@nki.jit
def _copies(x, y):
    """DMAs of every kind the one-copy path takes (and a few it leaves)."""
    a = nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=x[0:128, 0:256])
    nisa.dma_copy(dst=a[:, 32:160], src=a[:, 0:128])  # overlapping, same tile
    p = nl.ndarray((128, 256), nl.float32, buffer=nl.psum)
    nisa.dma_copy(dst=p, src=a)  # PSUM: the initialized-flags are kept
    b = nl.ndarray((64, 128), nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=b, src=y)
    c = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=c, src=x[128:256, 0:256:2])  # strided source
    nisa.dma_copy(dst=c[0:64, :], src=b)  # a cast: the general path
    half = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=c[:, 0:64], src=half)  # reads never-written memory: a warning
    out = nl.ndarray((256, 256), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out[0:128, :], src=a)
    nisa.dma_copy(dst=out[128:256, 0:128], src=c)
    s = nl.ndarray((128, 256), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=s, src=p)
    nisa.dma_copy(dst=out[128:256, 128:256], src=s[:, 0:128])
    return out


def _run(kernel, args, strict=False):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, run = trnsim.run_kernel(kernel, args, chip="trn2", strict=strict)
    record = [(i.opcode, i.reads, i.writes, i.attrs) for i in run.program.instructions]
    return out, record, [(w.category, str(w.message)) for w in caught]


@pytest.mark.parametrize("strict", [False, True])
def test_one_copy_dma_is_the_read_and_write(monkeypatch, strict):
    x = _special_fp32((256, 256), 1)
    with np.errstate(invalid="ignore"):
        y = _special_fp32((64, 128), 2).astype(nl.bfloat16.np)
    taken = []
    copy = base.Instr.copy

    def counting(self, *a):
        done = copy(self, *a)
        taken.append(done)
        return done
    monkeypatch.setattr(base.Instr, "copy", counting)
    if strict:
        with pytest.raises(Exception) as fast:
            _run(_copies, (x, y), strict=True)
    else:
        out, record, caught = _run(_copies, (x, y))
    assert any(taken) != strict and not all(taken)
    monkeypatch.setattr(base.Instr, "copy", lambda self, *a: False)
    if strict:
        with pytest.raises(type(fast.value)) as general:
            _run(_copies, (x, y), strict=True)
        assert str(general.value) == str(fast.value)
        return
    out2, record2, caught2 = _run(_copies, (x, y))
    np.testing.assert_array_equal(bits(out), bits(out2))
    assert record == record2
    assert caught == caught2 and caught


@nki.jit
def _accumulating(a, b, f):
    """Four matmuls into one PSUM tile of `f` columns, then its values out."""
    acc = nl.ndarray((128, f), nl.float32, buffer=nl.psum)
    for k in range(4):
        s = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        m = nl.ndarray((128, f), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=s, src=a[k * 128:(k + 1) * 128, :])
        nisa.dma_copy(dst=m, src=b[k * 128:(k + 1) * 128, :])
        nisa.nc_matmul(dst=acc, stationary=s, moving=m)
    o = nl.ndarray((128, f), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=o, src=acc)
    out = nl.ndarray((128, f), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=o)
    return out


@pytest.mark.parametrize("mode", ["fp32", "exact"])
@pytest.mark.parametrize("f", [512, 128])
def test_psum_tile_add_is_the_row_loops_add(monkeypatch, mode, f):
    """Sums that overflow to inf, inf - inf, NaN operands of several payloads, signed
    zeros and subnormals; F=512 takes the tile's settings, F=128 row_loops'."""
    monkeypatch.setenv("TRNSIM_MATMUL_ACCUMULATION", mode)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((512, 128)).astype(np.float32)
    b = rng.standard_normal((512, f)).astype(np.float32)
    b.view(np.uint32)[[5, 200, 300], [7, 8, 7]] = [0x7FC01234, 0xFFC00001, 0x7F800001]
    a[[130, 260], [9, 9]] = [np.inf, -np.inf]  # row 9: inf, then inf - inf
    a[[3, 400], [20, 21]] = 3e38  # rows 20, 21: sums that overflow
    a[:, 30] = -0.0  # row 30: signed zeros
    a[:, 31] = 1e-41  # row 31: subnormal products, mostly flushed to zero in fp32
    tiles = []
    tile_rows = access._tile_rows

    def counting(*args):
        settings = tile_rows(*args)
        tiles.append(settings is not None)
        return settings
    monkeypatch.setattr(access, "_tile_rows", counting)
    out, record, caught = _run(_accumulating, (a, b, f))
    assert tiles == [f == 512] * 3
    monkeypatch.setattr(access, "_tile_rows", lambda view, values: None)
    out2, record2, caught2 = _run(_accumulating, (a, b, f))
    assert np.isnan(out).any() and np.isinf(out).any() and np.isfinite(out).any()
    np.testing.assert_array_equal(bits(out), bits(out2))
    assert record == record2
    assert caught == caught2
