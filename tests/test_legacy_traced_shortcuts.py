"""The legacy front end's per-instruction shortcuts record what its general paths
record: an affine key's access and its Pattern, read or assigned to (legacy/tensor.py
`_affine_access`, legacy/indexing.py), an int added to an index, an unmasked nc_matmul's whole
spans (legacy/isa.py), an unmasked result run straight into its new tile
(legacy/ops.py `Pending.unmasked`), the unmasked grids kept per shape, a mask's ranges
that cut nothing left out of its grid (`_cutting`), a plain key's view made with its
access (legacy/tensor.py `_sliced_view`, `_int_key_view` for keys with ints) and a
pending result's whole-tile access (`Pending.full`), against the same kernels with them turned off:
every instruction's record and the numerics output bytes compared, with loop
expansion off (every instruction traced)."""
import numpy as np
import pytest

import trnsim.legacy.isa as nisa
import trnsim.legacy.language as nl
from trnsim.legacy import isa as legacy_isa
from trnsim.legacy import ops as legacy_ops
from trnsim.legacy import tensor as legacy_tensor
from trnsim.legacy.indexing import Index
from trnsim.legacy.jit import run_legacy
from trnsim.legacy.ops import Grid, Pending
from trnsim.legacy.tensor import LTensor


def _matmuls(a, b):
    """nc_matmul in the forms the tutorial and SDK kernels write: whole PSUM tiles and
    indexed ones, block tiles indexed by mgrid offsets and slices, masked and
    operand-masked operands, a 1-column result and an empty one."""
    out = nl.ndarray((128, 256), dtype=nl.float32, buffer=nl.shared_hbm)
    s_p, s_f = nl.mgrid[0:128, 0:64]
    v_p, v_f = nl.mgrid[0:128, 0:128]
    r_p, r_f = nl.mgrid[0:64, 0:128]
    c_p, c_f = nl.arange(128)[:, None], nl.arange(32, 96)[None, :]  # (axes from 32)
    blk = nl.ndarray((2, nl.par_dim(128), 256), dtype=a.dtype, buffer=nl.sbuf)
    for k in nl.affine_range(2):
        blk[k, v_p, 2 * v_f] = nl.load(a[k * 128 + v_p, v_f])
        blk[k, v_p, 2 * v_f + 1] = nl.load(b[k * 128 + v_p, 128 + v_f])
    bt = nl.load(b[0:128, 0:256])
    acc = nl.zeros((128, 256), nl.float32, buffer=nl.psum)
    for k in nl.affine_range(2):
        ps = nl.zeros((64, 128), nl.float32, buffer=nl.psum)
        for j in nl.affine_range(2):
            ps += nisa.nc_matmul(blk[k, s_p, j * 64 + s_f], blk[k, v_p, 128 + v_f])
        ps[r_p, r_f] += nisa.nc_matmul(blk[k, s_p, s_f], bt[v_p, v_f])
        acc[0:64, 0:128] += nisa.nc_matmul(blk[1 - k, s_p, 128 + s_f], bt[:, 128:256])
        acc[r_p, 128 + r_f] += nisa.nc_matmul(blk[k, s_p, s_f], bt[:, 0:128],
                                              mask=(r_f < 100))
        acc[r_p, r_f] += nisa.nc_matmul(blk[k, s_p, s_f][s_f < 40], bt[v_p, v_f])
        acc[r_p, r_f] += nisa.nc_matmul(blk[k, c_p, 100 + c_f], bt[c_p, 2 * c_f])
        acc[0:64, 5] += nisa.nc_matmul(blk[k, s_p, s_f], bt[:, 7])
        acc[64:128, 0:128] += nisa.nc_matmul(bt[:, 0:64], blk[k, v_p, v_f])
        acc[0:64, :] += nisa.nc_matmul(blk[k, :, 0:64], blk[k], mask=(s_f < 64 - k))
        acc[r_p, r_f] += nisa.nc_matmul(blk[k, s_p, s_f], bt[v_p, v_f], mask=(r_f < 128))
        acc[0:64, 0:0] += nisa.nc_matmul(blk[k, s_p, s_f], bt[:, 3:3])
        nl.store(out[r_p, r_f], value=nl.copy(ps[r_p, r_f]))
    nl.store(out, value=nl.copy(acc))
    return out


def _results(a, b):
    """Results kept in names and used later (each runs into a tile of its own when the
    next call comes), masked and not, of loads, copies and compute."""
    out = nl.ndarray((128, 256), dtype=nl.float32, buffer=nl.shared_hbm)
    i_p, i_f = nl.mgrid[0:128, 0:256]
    blk = nl.ndarray((2, nl.par_dim(128), 256), dtype=nl.float32, buffer=nl.sbuf)
    blk[...] = 0
    for k in nl.affine_range(2):
        x = nl.load(a[k * 128 + i_p, i_f])
        y = nl.load(b[k * 128:(k + 1) * 128, 0:256], mask=(i_f < 200))
        col = nl.load(a[0:128, k])  # a [128, 1] tile
        z = nl.add(x, y, mask=(i_f < 200))
        w = nl.multiply(z, col, mask=(i_p < 100) & (i_f < 200))
        e = nl.exp(w, mask=(i_p < 100) & (i_f < 200))
        nl.store(out[i_p, i_f], value=nl.copy(x, dtype=nl.float32))
        nl.store(out[i_p, i_f], value=e, mask=(i_p < 100) & (i_f < 200))
        # block tiles indexed by ints and slices, and masks that cut nothing (k = 0)
        blk[k, 0:128, 0:256] = nl.load(a[k * 128:(k + 1) * 128, 0:256],
                                       mask=(i_f < 256 - 56 * k))
        v = nl.multiply(blk[k], blk[k, :, 7], mask=(i_p < 128 - 28 * k) & (i_f >= 0))
        nl.store(out[i_p, i_f], value=v, mask=(i_p < 128 - 28 * k) & (i_f < 256 - k))
        nl.store(out[0:128, 0:256], value=nl.copy(blk[1 - k]))
    return out


def _recorded(kernel, args, monkeypatch, general: bool):
    monkeypatch.setenv("TRNSIM_EXPAND", "0")
    with monkeypatch.context() as m:
        if general:
            m.setattr(legacy_tensor, "pattern_of", lambda indices, key=None: None)
            # affine keys through key_to_indices (reads and `t[key] = x` alike), and an
            # int added to an index through Index.of
            m.setattr(legacy_tensor, "_affine_access", lambda tensor, key: None)
            m.setattr(Index, "__add__", Index._combine)
            m.setattr(Index, "__radd__", Index._combine)
            m.setattr(legacy_isa, "_operand_masked", lambda x: True)
            m.setattr(Pending, "unmasked", property(lambda self: None, lambda self, v: None))
            m.setattr(Grid, "unmasked", staticmethod(Grid))  # a grid of its own each time
            m.setattr(legacy_tensor, "_sliced_view", lambda key, core: None)
            m.setattr(legacy_tensor, "_int_key_view", lambda key, core, par_axis: None)
            m.setattr(legacy_ops, "_cutting", dict)  # ranges left whole kept
            m.setattr(Pending, "full", LTensor.full)
        out, run = run_legacy(kernel, args, chip="trn1")
    return out, [(i.opcode, i.engine, i.reads, i.writes, i.location, repr(i.attrs))
                 for i in run.program.instructions]


@pytest.mark.parametrize("kernel", [_matmuls, _results])
def test_shortcuts_record_what_the_general_paths_record(kernel, monkeypatch):
    rng = np.random.default_rng(0)
    args = tuple(rng.standard_normal((256, 256)).astype(np.float32) for _ in range(2))
    fast_out, fast = _recorded(kernel, args, monkeypatch, general=False)
    slow_out, slow = _recorded(kernel, args, monkeypatch, general=True)
    assert len(fast) > 15
    assert fast == slow
    assert fast_out.tobytes() == slow_out.tobytes()


def test_accumulates_reads_the_signature_and_keeps_one_entry_per_code():
    """`_accumulates` answers what inspect.signature does, for instruction functions,
    per-call closures and wrappers that share one code object but not one signature;
    a compute op's closure made on every call adds no entry after the first."""
    import functools
    import inspect

    from trnsim.isa import without_handles as core_isa
    from trnsim.legacy import compute

    def wrapped(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            return fn(*args, **kwargs)
        return call

    def takes(dst, x, accumulate=False):
        return None

    def closure(k):
        def run(dst, x):
            return k
        return run

    fns = [core_isa.dma_copy, core_isa.tensor_tensor, core_isa.tensor_copy, wrapped(takes),
           wrapped(closure(1)), takes, closure(2), closure(3),
           legacy_ops._accumulates]
    for fn in fns:
        assert legacy_ops._accumulates(fn) == ("accumulate" in
                                               inspect.signature(fn).parameters), fn
    assert legacy_ops._accumulates(wrapped(takes)) and not legacy_ops._accumulates(
        wrapped(closure(4)))  # (one code, two signatures)

    def reduced(x):
        return compute._reduce("all", x, [1], None, None, True)

    i_p, i_f = nl.mgrid[0:128, 0:64]
    kept = []

    def kernel(a):
        t = nl.load(a[i_p, i_f])
        for _ in range(3):
            reduced(t)
            kept.append(len(legacy_ops._ACCUMULATES))
        return a

    run_legacy(kernel, (np.zeros((128, 64), np.float32),), chip="trn1", numerics=False)
    assert kept[0] == kept[1] == kept[2]
