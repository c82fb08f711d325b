"""The unmasked shortcuts of the legacy matmul path record, compute and fail as the
general paths do: nisa.nc_matmul's (legacy/isa.py `_whole_matmul`: no mask, no operand
mask, each view made once, a whole tile operand taken as its core) against the
mask-narrowed spans of `_deferred` and `_run` (taken when an operand counts as masked),
nl.matmul's, nl.transpose's and nl.load_transpose2d's (legacy/compute.py `_run_whole`)
against the mapped spans (`_run_mapped`), nisa.nc_transpose's (`_run_whole_transpose`),
`t[...]` (LTensor.full) and destinations of plain slices (`_one_axis_per_dim`) against
the general indexing and spans: accumulated, assigned and used as an operand, into
whole, indexed, block, SBUF and narrower destinations, from loaded, indexed, block and
PSUM operands, over several shapes and dtypes, with numerics on and off and loop
expansion off (every instruction traced)."""
import ml_dtypes
import numpy as np
import pytest

import trnsim.legacy.isa as nisa
import trnsim.legacy.language as nl
from trnsim.legacy import compute as legacy_compute
from trnsim.legacy import isa as legacy_isa
from trnsim.legacy.jit import run_legacy
from trnsim.legacy.tensor import LTensor

SHAPES = [(128, 128, 512), (64, 32, 96), (128, 1, 7), (5, 128, 512)]  # K, M, N


def _operands(a, b):
    """(K, M, N, the output, mgrids over a, b and the result, a block tile holding a
    and b side by side, a and b loaded whole) of a matmul kernel of a [K, M], b [K, N]."""
    K, M = a.shape
    N = b.shape[1]
    out = nl.ndarray((M, N), dtype=nl.float32, buffer=nl.shared_hbm)
    s_p, s_f = nl.mgrid[0:K, 0:M]
    v_p, v_f = nl.mgrid[0:K, 0:N]
    r_p, r_f = nl.mgrid[0:M, 0:N]
    blk = nl.ndarray((2, nl.par_dim(K), M + N), dtype=a.dtype, buffer=nl.sbuf)
    blk[0, s_p, s_f] = nl.load(a[s_p, s_f])
    blk[1, v_p, M + v_f] = nl.load(b[v_p, v_f])
    at = nl.load(a)
    bt = nl.load(b)
    return K, M, N, out, (s_p, s_f), (v_p, v_f), (r_p, r_f), blk, at, bt


def _accumulations(a, b):
    """`+=`, `=` and use as an operand, into the destinations the tutorial and SDK
    kernels write."""
    K, M, N, out, (s_p, s_f), (v_p, v_f), (r_p, r_f), blk, at, bt = _operands(a, b)
    fresh = nl.ndarray((M, N), nl.float32, buffer=nl.psum)  # (first += overwrites)
    acc = nl.zeros((2, nl.par_dim(M), N), nl.float32, buffer=nl.psum)
    sb = nl.zeros((M, N), nl.float32, buffer=nl.sbuf)
    gram = nl.zeros((min(N, 128), N), nl.float32, buffer=nl.psum)
    for k in nl.affine_range(2):
        fresh += nisa.nc_matmul(at, bt)
        fresh += nisa.nc_matmul(blk[0, s_p, s_f], blk[1, v_p, M + v_f])
        acc[k] += nisa.nc_matmul(at[s_p, s_f], bt)
        acc[k, r_p, r_f] += nisa.nc_matmul(blk[0, :, 0:M], bt[:, 0:N])
        sb += nisa.nc_matmul(at, blk[1, v_p, M + v_f])  # (through a PSUM tile)
        sb[r_p, r_f] = nisa.nc_matmul(at, bt)
        acc[1 - k] = nisa.nc_matmul(at, bt, is_moving_onezero=False)
        used = nisa.nc_matmul(at, bt)  # (runs into a tile of its own, then is read)
        nl.store(out[r_p, r_f], value=nl.copy(used))
        staged = nisa.nc_matmul(at, bt)  # PSUM operands: each copied to SBUF first
        gram += nisa.nc_matmul(staged[:, 0:min(N, 128)], staged)
    nl.store(out, value=nl.add(nl.copy(fresh), sb))
    nl.store(out[r_p, r_f], value=nl.copy(acc[0]))
    return out


def _nl_matmuls(a, b):
    """nl.matmul (x.T @ y with transpose_x, else x @ y through a transpose) in the same
    forms, and into destinations of another shape (the mapped spans then narrow it)."""
    K, M, N, out, (s_p, s_f), (v_p, v_f), (r_p, r_f), blk, at, bt = _operands(a, b)
    xt = nl.load_transpose2d(a) if K <= 128 else at  # [M, K]: x of x @ y
    fresh = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    acc = nl.zeros((2, nl.par_dim(M), N), nl.float32, buffer=nl.psum)
    sb = nl.zeros((M, N), nl.float32, buffer=nl.sbuf)
    for k in nl.affine_range(2):
        fresh += nl.matmul(at, bt, transpose_x=True)
        fresh += nl.matmul(blk[0, s_p, s_f], blk[1, v_p, M + v_f], transpose_x=True)
        acc[k] += nl.matmul(at[s_p, s_f], bt, transpose_x=True)
        acc[k, r_p, r_f] += nl.matmul(blk[0, :, 0:M], bt[:, 0:N], transpose_x=True)
        sb += nl.matmul(at, blk[1, v_p, M + v_f], transpose_x=True)
        sb[r_p, r_f] = nl.matmul(at, bt, transpose_x=True)
        if K <= 128:
            fresh += nl.matmul(xt, bt)
        acc[k, 0:(M + 1) // 2, :] += nl.matmul(at, bt, transpose_x=True)  # (narrowed)
        sb[:, 0:N // 2 + 1] += nl.matmul(at, bt, transpose_x=True)  # (narrowed)
        used = nl.matmul(at, bt, transpose_x=True)
        nl.store(out[r_p, r_f], value=nl.copy(used))
        staged = nl.matmul(at, bt, transpose_x=True)  # a PSUM operand
        acc[1 - k] += nl.matmul(staged[:, 0:M] if N >= M else at[0:M, :], staged,
                                transpose_x=True) if N >= M else nl.matmul(at, bt,
                                                                           transpose_x=True)
    nl.store(out, value=nl.add(nl.copy(fresh), sb))
    nl.store(out[r_p, r_f], value=nl.copy(acc[0]))
    return out


def _transposes(a, b):
    """nl.transpose and nl.load_transpose2d (the other mapped operations whose views are
    whole unless narrowed) into new tiles, whole and indexed destinations of their
    shape, and narrower ones."""
    K, M = a.shape
    out = nl.ndarray((M, K), dtype=nl.float32, buffer=nl.shared_hbm)
    t_p, t_f = nl.mgrid[0:M, 0:K]
    at = nl.load(a)
    blk = nl.ndarray((2, nl.par_dim(M), K), dtype=a.dtype, buffer=nl.sbuf)
    ps = nl.zeros((2, nl.par_dim(M), K), nl.float32, buffer=nl.psum)
    for k in nl.affine_range(2):
        blk[k] = nl.load_transpose2d(a)
        blk[1 - k, t_p, t_f] = nl.load_transpose2d(a[:, :])
        blk[k, 0:(M + 1) // 2, :] = nl.load_transpose2d(a)  # (narrowed)
        ps[k] = nl.transpose(at)
        ps[1 - k, t_p, t_f] = nl.transpose(at[:, :], dtype=nl.float32)
        ps[k, :, 0:(K + 1) // 2] = nl.transpose(at)  # (narrowed)
        nl.store(out[t_p, t_f], value=nl.copy(nl.transpose(at)))
        nl.store(out, value=nl.copy(blk[k]))
    nl.store(out, value=nl.copy(ps[0]))
    return out


def _nc_transposes(a, b):
    """nisa.nc_transpose (legacy/isa.py `_run_whole_transpose` unmasked) on the Tensor
    and the Vector Engine, into new, whole, block, indexed and SBUF destinations, cast or
    not."""
    K, M = a.shape
    out = nl.ndarray((M, K), dtype=nl.float32, buffer=nl.shared_hbm)
    at = nl.load(a)
    whole = nl.ndarray((M, K), a.dtype, buffer=nl.psum)
    ps = nl.zeros((2, nl.par_dim(M), K), nl.float32, buffer=nl.psum)
    wide = nl.zeros((M, K + 8), nl.float32, buffer=nl.psum)
    sb = nl.zeros((M, K), nl.float32, buffer=nl.sbuf)
    kv, mv = min(K, 32), min(M, 32)
    vec = nl.zeros((mv, kv), a.dtype, buffer=nl.sbuf)
    for k in nl.affine_range(2):
        whole[...] = nisa.nc_transpose(at)
        ps[k] = nisa.nc_transpose(at)
        ps[1 - k, :, :] = nisa.nc_transpose(at[...], dtype=nl.float32)
        wide[:, 0:K] = nisa.nc_transpose(at)
        wide[:, 8:K + 8] = nisa.nc_transpose(at)
        wide[:, :] = nisa.nc_transpose(at)  # (narrowed to the result)
        sb[...] = nisa.nc_transpose(at)  # (a PSUM result into SBUF: through a copy)
        vec[...] = nisa.nc_transpose(at[0:kv, 0:mv], engine=nisa.vector_engine)
        nl.store(out, value=nl.copy(nisa.nc_transpose(at)))
        nl.store(out[0:mv, 0:kv], value=nl.copy(vec))
    nl.store(out, value=nl.add(nl.copy(whole), sb))
    nl.store(out, value=nl.copy(ps[0]))
    return out


def _ellipses(a, b):
    """`t[...]` (LTensor.__getitem__'s whole-key shortcut: LTensor.full) as destination
    and operand of the matmul path, on HBM, PSUM, SBUF and block tiles."""
    K, M, N, out, _, _, _, blk, at, bt = _operands(a, b)
    ta = nl.load(a[...])
    ps = nl.ndarray((M, N), nl.float32, buffer=nl.psum)
    acc = nl.zeros((2, nl.par_dim(M), N), nl.float32, buffer=nl.psum)
    sb = nl.zeros((M, N), nl.float32, buffer=nl.sbuf)
    for k in nl.affine_range(2):
        ps[...] = nisa.nc_matmul(ta[...], bt[...])
        ps[...] += nisa.nc_matmul(blk[0][...][:, 0:M], bt)
        acc[k][...] = nisa.nc_matmul(at, bt)
        acc[1, :, :] += nisa.nc_matmul(at, bt)
        ps[0:M, :] = nisa.nc_matmul(at, bt)
        sb[...] = nisa.nc_matmul(at, bt)
        sb[...] += nisa.nc_matmul(ta, bt[...])
        nl.store(out[...], value=nl.copy(ps[...]))
        nl.store(out[...], value=nl.add(sb[...], acc[1 - k][...]))
    return out


def _int_keyed_rows(a, b):
    """Destinations whose partition dim an int indexes (`row[1, :]` is [1, N], its one
    axis at grid position 0 and at dim 1 of its shape: legacy/tensor.py front_padding)
    of results with M = 1, whole and narrower, accumulated and assigned."""
    K, N = a.shape[0], b.shape[1]
    out = nl.ndarray((2, N), nl.float32, buffer=nl.shared_hbm)
    row = nl.zeros((2, N), nl.float32, buffer=nl.psum)
    at, bt = nl.load(a), nl.load(b)
    row[1, :] += nisa.nc_matmul(at[:, 0:1], bt)
    row[1, 0:N // 2] += nisa.nc_matmul(at[:, 1:2], bt[:, 0:N // 2])
    row[0, :] = nisa.nc_matmul(at[:, 2:3], bt)
    nl.store(out, value=nl.copy(row))
    return out


def _int_keyed_others(a, b):
    """nl.matmul into int-keyed destinations (rows 0-1), elementwise operations between
    int-keyed views (rows 2-3) and an nc_matmul of int-keyed operands (K = 1: rows 4-6,
    the outer product of a's row 3 and b's row 5)."""
    K, M, N = a.shape[0], a.shape[1], b.shape[1]
    out = nl.ndarray((4 + M, N), nl.float32, buffer=nl.shared_hbm)
    row = nl.zeros((2, N), nl.float32, buffer=nl.psum)
    at, bt = nl.load(a), nl.load(b)
    row[1, :] += nl.matmul(at[:, 0:1], bt, transpose_x=True)
    row[0, 0:N // 2] += nl.matmul(at[:, 1:2], bt[:, 0:N // 2], transpose_x=True)
    nl.store(out[0:2, :], value=nl.copy(row))
    sb = nl.zeros((2, N), nl.float32, buffer=nl.sbuf)
    sb[0, :] = nl.multiply(bt[0, :], 2.0)
    sb[1, 0:N // 2] = nl.add(bt[1, 0:N // 2], bt[0, N // 2:N])
    nl.store(out[2:4, :], value=sb)
    outer = nl.zeros((M, N), nl.float32, buffer=nl.psum)
    outer[...] += nisa.nc_matmul(at[3, :], bt[5, :])
    nl.store(out[4:4 + M, :], value=nl.copy(outer))
    return out


def _general_getitem(real):
    """LTensor.__getitem__ with `t[...]` taken by the general path (as `t[..., ]`)."""
    return lambda self, key: real(self, (key,) if key is Ellipsis else key)


def _run(kernel, args, monkeypatch, general: bool, numerics: bool):
    monkeypatch.setenv("TRNSIM_EXPAND", "0")
    with monkeypatch.context() as m:
        if general:
            m.setattr(LTensor, "__getitem__", _general_getitem(LTensor.__getitem__))
            m.setattr(legacy_isa, "_operand_masked", lambda x: True)
            m.setattr(legacy_isa, "_one_axis_per_dim", lambda x: False)
            m.setattr(legacy_isa, "_whole_tile_core", lambda x: None)
            m.setattr(legacy_compute, "_whole_operands", lambda *accesses: False)
        try:
            out, run = run_legacy(kernel, args, chip="trn1", numerics=numerics)
        except Exception as e:  # noqa: BLE001 - the failure itself is compared
            return None, (type(e), str(e))
    return (None if out is None else np.asarray(out).tobytes()), [
        (i.opcode, i.engine, i.reads, i.writes, i.location, repr(i.attrs))
        for i in run.program.instructions]


@pytest.mark.parametrize("numerics", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16, np.float16])
@pytest.mark.parametrize("kmn", SHAPES)
@pytest.mark.parametrize("kernel", [_accumulations, _nl_matmuls, _transposes, _nc_transposes,
                                    _ellipses])
def test_unmasked_matmul_records_what_the_general_path_records(kernel, kmn, dtype, numerics,
                                                               monkeypatch):
    K, M, N = kmn
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((K, M)).astype(dtype),
            rng.standard_normal((K, N)).astype(dtype))
    fast_out, fast = _run(kernel, args, monkeypatch, False, numerics)
    slow_out, slow = _run(kernel, args, monkeypatch, True, numerics)
    assert isinstance(fast, list) and len(fast) > 20, fast
    if kernel in (_accumulations, _nl_matmuls, _ellipses):
        assert sum(op == "nc_matmul" for op, *_ in fast) >= 10
    assert fast == slow
    assert fast_out == slow_out


@pytest.mark.parametrize("general", [False, True])
def test_int_keyed_matmul_destination_gets_the_rows_numpy_computes(general, monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.integers(-4, 5, (128, 3)).astype(np.float32)  # (sums exact in fp32)
    b = rng.integers(-4, 5, (128, 512)).astype(np.float32)
    out, _ = _run(_int_keyed_rows, (a, b), monkeypatch, general, True)
    want = np.stack([a[:, 2] @ b, a[:, 0] @ b])
    want[1, :256] += a[:, 1] @ b[:, :256]
    assert out == want.astype(np.float32).tobytes()


@pytest.mark.parametrize("general", [False, True])
def test_int_keyed_views_elsewhere_get_what_numpy_computes(general, monkeypatch):
    rng = np.random.default_rng(2)
    a = rng.integers(-4, 5, (128, 3)).astype(np.float32)
    b = rng.integers(-4, 5, (128, 512)).astype(np.float32)
    out, _ = _run(_int_keyed_others, (a, b), monkeypatch, general, True)
    want = np.zeros((7, 512))
    want[1] = a[:, 0] @ b
    want[0, :256] = a[:, 1] @ b[:, :256]
    want[2] = 2 * b[0]
    want[3, :256] = b[1, :256] + b[0, 256:]
    want[4:] = np.outer(a[3], b[5])
    assert out == want.astype(np.float32).tobytes()


def _bad_dst(a, b, wide):
    ps = nl.zeros((64, 512), nl.float32, buffer=nl.psum)
    ps += nisa.nc_matmul(nl.load(a), nl.load(b))  # [128, 512] into [64, 512]
    return ps


def _bad_contraction(a, b, wide):
    ps = nl.zeros((128, 512), nl.float32, buffer=nl.psum)
    ps += nisa.nc_matmul(nl.load(a[0:64, :]), nl.load(b))  # K 64 against K 128
    return ps


def _bad_bank(a, b, wide):
    ps = nl.zeros((128, 1024), nl.float32, buffer=nl.psum)
    ps[:, 256:768] += nisa.nc_matmul(nl.load(a), nl.load(b))  # across two PSUM banks
    return ps


def _too_wide(a, b, wide):
    ps = nl.zeros((128, 1024), nl.float32, buffer=nl.psum)
    ps += nisa.nc_matmul(nl.load(a), nl.load(wide))  # N 1024 > 512
    return ps


def _bad_transpose_dst(a, b, wide):
    ps = nl.zeros((64, 128), nl.bfloat16, buffer=nl.psum)
    ps[...] = nisa.nc_transpose(nl.load(a))  # [128, 128] into [64, 128]
    return ps


def _transpose_too_big(a, b, wide):
    ps = nl.ndarray((512, 128), nl.bfloat16, buffer=nl.psum)
    ps[...] = nisa.nc_transpose(nl.load(b))  # [128, 512] on the Tensor Engine
    return ps


def _vector_transpose_too_big(a, b, wide):
    t = nl.load(a)
    sb = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.sbuf)
    sb[...] = nisa.nc_transpose(t, engine=nisa.vector_engine)  # over 32 x 32
    return sb


@pytest.mark.parametrize("kernel, error", [
    (_bad_dst, "OutOfBoundsError"), (_bad_contraction, "NkiValidationError"),
    (_bad_bank, "NkiValidationError"), (_too_wide, "NkiValidationError"),
    (_bad_transpose_dst, "OutOfBoundsError"),
    (_transpose_too_big, "NkiValidationError"), (_vector_transpose_too_big, "NkiValidationError")])
def test_unmasked_matmul_fails_as_the_general_path_fails(kernel, error, monkeypatch):
    args = tuple(np.ones((128, n), ml_dtypes.bfloat16) for n in (128, 512, 1024))
    fast = _run(kernel, args, monkeypatch, False, True)[1]
    slow = _run(kernel, args, monkeypatch, True, True)[1]
    assert isinstance(fast, tuple), "the kernel ran"
    assert fast == slow
    assert fast[0].__name__ == error


def test_unmasked_matmul_takes_the_shortcut(monkeypatch):
    """(The comparisons above compare two paths: the shortcut is the one taken.)"""
    calls = []
    real = legacy_isa._run_whole_matmul
    monkeypatch.setattr(legacy_isa, "_run_whole_matmul",
                        lambda *a: calls.append(1) or real(*a))
    args = (np.ones((128, 128), np.float32), np.ones((128, 512), np.float32))
    _run(_accumulations, args, monkeypatch, False, False)
    assert len(calls) >= 16
    calls.clear()
    _run(_accumulations, args, monkeypatch, True, False)
    assert calls == []


def test_unmasked_nl_matmul_takes_the_shortcut(monkeypatch):
    """nl.matmul into a destination of its shape runs straight; into another shape
    (two per iteration of `_nl_matmuls`) through the mapped spans."""
    mapped = []
    real = legacy_compute._run_mapped
    monkeypatch.setattr(legacy_compute, "_run_mapped", lambda core_fn, *a: (
        mapped.append(core_fn) or real(core_fn, *a)))
    args = (np.ones((128, 128), np.float32), np.ones((128, 512), np.float32))
    fast = _run(_nl_matmuls, args, monkeypatch, False, False)[1]
    assert mapped.count(legacy_compute.cm.matmul_into) == 4
    mapped.clear()
    _run(_nl_matmuls, args, monkeypatch, True, False)
    assert mapped.count(legacy_compute.cm.matmul_into) == sum(
        op == "nc_matmul" for op, *_ in fast) == 24


def test_unmasked_nc_transpose_and_whole_key_take_the_shortcut(monkeypatch):
    """nisa.nc_transpose without a mask runs `_run_whole_transpose`, and `t[...]` is
    `t.full()`; the general paths of the comparisons above take neither."""
    calls, fulls = [], []
    real, real_full = legacy_isa._run_whole_transpose, LTensor.full
    monkeypatch.setattr(legacy_isa, "_run_whole_transpose",
                        lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(LTensor, "full", lambda self: fulls.append(1) or real_full(self))
    args = (np.ones((128, 128), np.float32), np.ones((128, 512), np.float32))
    _run(_nc_transposes, args, monkeypatch, False, False)
    _run(_ellipses, args, monkeypatch, False, False)
    assert len(calls) == 18
    fast_fulls = len(fulls)
    calls.clear()
    fulls.clear()
    _run(_nc_transposes, args, monkeypatch, True, False)
    _run(_ellipses, args, monkeypatch, True, False)
    assert calls == []
    assert fast_fulls >= len(fulls) + 20
