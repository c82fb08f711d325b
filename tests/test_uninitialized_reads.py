"""Reads of never-written memory (machine/written.py, machine/access.py).

By default a kernel run gives one `trnsim.UninitializedReadWarning` for the first
instruction that reads bytes no instruction wrote (naming the tensor, the line that
allocated it and the line that read it), and one for an output it returns unwritten;
strict mode (`strict=True`, TRNSIM_STRICT=1) raises UninitializedReadError on every such
read. The default check keeps written boxes per tensor (no per-byte flags) and may miss
a read of a hole inside a strided write's span, but never reports a read of written
bytes: the property tests below compare it with strict mode's exact flags.
"""
import contextlib
import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import UninitializedReadWarning, nki
from trnsim.examples import load_example
from trnsim.machine.errors import UninitializedReadError
from kernel_helpers import load, store

HERE = __file__


def _line(tag: str) -> int:
    """The line of this file that carries the comment `# <tag>`."""
    with open(HERE) as f:
        for i, text in enumerate(f, 1):
            if text.rstrip().endswith(f"# {tag}"):
                return i
    raise LookupError(tag)


def _run(kernel, *args, **kw):
    """Run with numerics on; returns (outputs, [warnings given])."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out, _ = trnsim.run_kernel(kernel, args, chip="trn2", **kw)
    return out, [w for w in seen if issubclass(w.category, UninitializedReadWarning)]


def _clean(kernel, *args, **kw):
    """Run with every warning an error (a correct kernel gives none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return trnsim.run_kernel(kernel, args, chip="trn2", **kw)[0]


# -- the warning -------------------------------------------------------------------------
def forgot_the_load(x):
    x_sb = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf, name="x_sb")  # alloc-x
    other = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)  # alloc-other
    y = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=y, data=x_sb, op0=nl.multiply, operand0=2.0)  # first-read
    nisa.tensor_tensor(dst=y, data1=x_sb, data2=other, op=nl.add)  # second-read
    nisa.activation(dst=y, op=nl.exp, data=other)
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=y)
    return out


def test_warns_once_naming_the_tensor_and_lines():
    x = np.ones((128, 64), np.float32)
    out, seen = _run(forgot_the_load, x)
    assert np.isnan(out).all()  # the fill pattern, as before
    assert len(seen) == 1  # three reads of never-written tiles, one warning
    w = seen[0].message
    assert isinstance(w, UninitializedReadWarning) and isinstance(w, UserWarning)
    assert w.tensor == "x_sb" and w.op == "tensor_scalar"
    assert (w.allocated_at.file, w.allocated_at.line) == (HERE, _line("alloc-x"))
    assert (w.read_at.file, w.read_at.line) == (HERE, _line("first-read"))
    assert w.index == (0, 0)
    # the warning points at the kernel line that read, and says all of it
    assert (seen[0].filename, seen[0].lineno) == (HERE, _line("first-read"))
    text = str(w)
    assert "tensor_scalar reads never-written memory" in text and "'x_sb'" in text
    assert "float32[128, 64] in sbuf" in text
    assert f"allocated at {HERE}:{_line('alloc-x')}: x_sb = nl.ndarray(" in text
    assert f"first read at {HERE}:{_line('first-read')}: nisa.tensor_scalar(" in text
    assert "TRNSIM_STRICT=1" in text


def test_each_run_warns_again():
    x = np.ones((128, 64), np.float32)
    assert len(_run(forgot_the_load, x)[1]) == 1
    assert len(_run(forgot_the_load, x)[1]) == 1


def test_unnamed_tensor_is_named_by_its_assignment():
    def kern(x):
        scratch = nl.ndarray(x.shape, nl.float32, buffer=nl.sbuf)  # alloc-scratch
        return store(scratch)
    _, seen = _run(kern, np.ones((4, 4), np.float32))
    assert len(seen) == 1 and seen[0].message.tensor == "scratch"
    assert seen[0].message.op == "dma_copy"
    assert seen[0].message.allocated_at.line == _line("alloc-scratch")
    assert "in sbuf 'scratch'" in str(seen[0].message)


def test_partly_written_tile_names_the_first_unwritten_element():
    def kern(x):
        t = nl.ndarray((128, 8), nl.float32, buffer=nl.sbuf, name="half")
        nisa.dma_copy(dst=t[:, 0:4], src=x)
        nisa.dma_copy(dst=t[0:64, 4:8], src=x[0:64])
        return store(t)
    out, seen = _run(kern, np.ones((128, 4), np.float32))
    assert len(seen) == 1 and seen[0].message.index == (64, 4)
    assert np.isnan(out[64:, 4:]).all() and not np.isnan(out[:64]).any()


def test_returned_output_never_written_warns():
    def kern(x):
        out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm, name="result")  # alloc-out
        t = load(x)
        nisa.dma_copy(dst=out[0:64], src=t[0:64])  # the second half is never stored
        return out
    out, seen = _run(kern, np.ones((128, 8), np.float32))
    assert len(seen) == 1
    w = seen[0].message
    assert w.tensor == "result" and w.op is None and w.read_at is None and w.index == (64, 0)
    assert str(w).startswith("the kernel returns never-written memory")
    assert (seen[0].filename, seen[0].lineno) == (HERE, _line("alloc-out"))
    assert np.isnan(out[64:]).all()


def test_hbm_scratch_written_by_tiles_is_tracked_per_tile():
    def kern(x):
        h = nl.ndarray((256, 512), nl.float32, buffer=nl.private_hbm, name="h")
        t = load(x)
        for i in range(2):
            for j in range(4):
                if (i, j) != (1, 2):
                    nisa.dma_copy(dst=h[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128], src=t)
        u = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        for i in range(2):
            for j in range(4):
                nisa.dma_copy(dst=u, src=h[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128])
        return x
    _, seen = _run(kern, np.ones((128, 128), np.float32))
    assert len(seen) == 1 and seen[0].message.index == (0, 0)
    assert "'h'" in str(seen[0].message)


# -- strict mode -----------------------------------------------------------------------
def test_strict_mode_raises(monkeypatch):
    x = np.ones((128, 64), np.float32)
    with pytest.raises(UninitializedReadError, match="x_sb") as ei:
        trnsim.run_kernel(forgot_the_load, (x,), strict=True)
    assert ei.value.op == "tensor_scalar" and ei.value.location.line == _line("first-read")
    monkeypatch.setenv("TRNSIM_STRICT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # strict raises; it does not also warn
        with pytest.raises(UninitializedReadError, match="x_sb"):
            trnsim.run_kernel(forgot_the_load, (x,))


def test_timing_only_run_tracks_nothing():
    x = np.ones((128, 64), np.float32)
    seen_st = []

    def kern(x):
        out = forgot_the_load(x)
        seen_st.append(out.storage)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trnsim.run_kernel(kern, (x,), numerics=False)
    assert seen_st[0].wboxes is None and not seen_st[0].wfull


# -- no false alarms ---------------------------------------------------------------------
def written_in_pieces(x, w):
    """Tiles written piecewise (column chunks, partition chunks, interleaved strided
    columns, a PSUM tile by matmuls, HBM scratch by tiles), then read whole."""
    P, F = x.shape
    xs = load(x)
    a = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    for j in range(0, F, 16):  # column chunks
        nisa.tensor_copy(dst=a[:, j:j + 16], src=xs[:, j:j + 16])
    b = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    for p in range(0, P, 32):  # partition chunks, the last first
        q = P - 32 - p
        nisa.tensor_copy(dst=b[q:q + 32, :], src=xs[q:q + 32, :])
    c = nl.ndarray((P, F // 2, 2), nl.float32, buffer=nl.sbuf)
    c2 = c.reshape((P, F))
    nisa.tensor_copy(dst=c[:, :, 1], src=xs[:, 0:F // 2])  # odd columns, then even ones
    nisa.tensor_copy(dst=c[:, :, 0], src=xs[:, F // 2:F])
    ws = load(w)
    ps = nl.ndarray((P, F), nl.float32, buffer=nl.psum)
    for j in range(0, F, 32):
        nisa.nc_matmul(dst=ps[:, j:j + 32], stationary=ws, moving=xs[:, j:j + 32])
    h = nl.ndarray((2 * P, F), nl.float32, buffer=nl.private_hbm)
    nisa.dma_copy(dst=h[P:2 * P, :], src=a)
    nisa.dma_copy(dst=h[0:P, :], src=b)
    hs = nl.ndarray((2 * P, F), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=hs[0:P, 0:F // 2], src=c2[:, 0:F // 2])
    nisa.dma_copy(dst=hs[0:P, F // 2:F], src=c2[:, F // 2:F])
    nisa.dma_copy(dst=hs[P:2 * P, :], src=h[0:P, :])
    r = nl.ndarray((P, F), nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=r, src=ps)
    nisa.tensor_tensor(dst=r, data1=r, data2=a, op=nl.add)
    nisa.tensor_tensor(dst=r, data1=r, data2=b, op=nl.add)
    nisa.tensor_tensor(dst=r, data1=r, data2=c2, op=nl.add)
    t = nl.ndarray((2 * P // 2, 2, F), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=t[:, 0, :], src=h[P:2 * P, :])
    nisa.dma_copy(dst=t[:, 1, :], src=h[0:P, :])
    nisa.tensor_tensor(dst=r, data1=r, data2=t[:, 1, :], op=nl.add)
    return store(r), hs


def test_piecewise_writes_give_no_warning():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 64)).astype(np.float32)
    w = rng.standard_normal((128, 128)).astype(np.float32)
    r, hs = _clean(written_in_pieces, x, w)
    c = np.empty((128, 32, 2), np.float32)
    c[:, :, 1], c[:, :, 0] = x[:, :32], x[:, 32:]
    c = c.reshape(128, 64)
    want = (w.astype(np.float64).T @ x).astype(np.float32) + x + x + c + x
    np.testing.assert_allclose(r, want, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(hs, np.concatenate([c, x]))


def test_matmul_groups_and_accumulate_give_no_warning():
    def kern(a, b):
        sa, sb = load(a), load(b)
        ps = nl.ndarray((128, 64), nl.float32, buffer=nl.psum)
        for k in range(3):
            nisa.nc_matmul(dst=ps, stationary=sa, moving=sb, accumulate=k > 0)
        return store(ps)
    a = np.ones((128, 128), np.float32)
    out = _clean(kern, a, np.ones((128, 64), np.float32))
    assert (out == 3 * 128).all()


def test_explicit_addresses_that_alias_give_no_warning():
    def kern(x):
        a = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, address=0)
        nisa.dma_copy(dst=a, src=x)
        b = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, address=0)  # a's bytes
        return store(b)
    x = np.arange(128 * 64, dtype=np.float32).reshape(128, 64)
    np.testing.assert_array_equal(_clean(kern, x), x)


EXAMPLES = ["tensor_add", "softmax", "rmsnorm", "layernorm", "tiled_matmul", "lnc2_add",
            "mx_matmul", "pe_transpose"] + [
    f"legacy/{n}" for n in ("tensor_add", "softmax", "rmsnorm", "layernorm", "tiled_matmul",
                            "matmul_tutorial", "pe_transpose", "spmd_add")]


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_run_without_the_warning(name):
    mod = load_example(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UninitializedReadWarning)
        with contextlib.redirect_stdout(io.StringIO()):
            mod.main()


# -- against strict mode's exact flags ----------------------------------------------------
P3, A3, B3 = 8, 4, 6  # an SBUF tile (P3, A3, B3) and an HBM tensor of the same shape


@st.composite
def _view(draw, hbm: bool):
    """A slice (tuple) of the (P3, A3, B3) tensor: partitions consecutive on chip."""
    key = []
    for d, n in enumerate((P3, A3, B3)):
        lo = draw(st.integers(0, n - 1))
        hi = draw(st.integers(lo + 1, n))
        step = 1 if (d == 0 and not hbm) else draw(st.integers(1, 3))
        key.append(slice(lo, hi, step))
    return tuple(key)


def _shape(key):
    return tuple(len(range(*s.indices(n))) for s, n in zip(key, (P3, A3, B3)))


def _ops(hbm):
    return st.lists(st.tuples(st.sampled_from("wr"), _view(hbm)), min_size=1, max_size=8)


def _replay(ops, hbm: bool, strict: bool):
    """Runs the ops (writes and reads of views of one tensor); returns the index of the
    op that first raised (strict) or warned (not strict), or None."""
    hit = []

    def kern(x):
        src = nl.ndarray((P3, A3, B3), nl.float32, buffer=nl.sbuf)
        nisa.memset(dst=src, value=1.0)
        t = nl.ndarray((P3, A3, B3), nl.float32,
                       buffer=nl.private_hbm if hbm else nl.sbuf, name="target")
        for i, (kind, key) in enumerate(ops):
            shape = _shape(key)
            n = len(seen)
            try:
                if kind == "w" and hbm:
                    nisa.dma_copy(dst=t[key], src=src[0:shape[0], 0:shape[1], 0:shape[2]])
                elif kind == "w":
                    nisa.memset(dst=t[key], value=2.0)
                else:
                    u = nl.ndarray(shape, nl.float32, buffer=nl.sbuf)
                    if hbm:
                        nisa.dma_copy(dst=u, src=t[key])
                    else:
                        nisa.tensor_copy(dst=u, src=t[key])
            except UninitializedReadError:
                hit.append(i)
                return x
            if len(seen) > n and not hit:
                hit.append(i)
        return x

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trnsim.run_kernel(kern, (np.zeros((1, 1), np.float32),), chip="trn2", strict=strict)
    assert len([w for w in seen if w.category is UninitializedReadWarning]) <= 1
    return hit[0] if hit else None


def _dense(key):
    """Whether the view is every byte of its bounding box: partitions (on chip) or rows
    (HBM: its first dim) consecutive, each holding one run of consecutive bytes."""
    (n0, n1, n2), (s0, s1, s2) = _shape(key), (k.step for k in key)
    return ((n0 == 1 or s0 == 1) and (n1 == 1 or s1 == 1) and (n2 == 1 or s2 == 1)
            and (n1 == 1 or n2 == B3))


@pytest.mark.parametrize("hbm", [False, True], ids=["sbuf", "hbm"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_never_a_false_alarm(hbm, data):
    ops = data.draw(_ops(hbm))
    warned = _replay(ops, hbm, strict=False)
    raised = _replay(ops, hbm, strict=True)
    if warned is not None:  # a warning is always right, and never early
        assert raised is not None and raised <= warned
    if all(_dense(k) for _, k in ops):  # boxes written and read: exact
        assert warned == raised
