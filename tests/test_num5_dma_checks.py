"""dma_copy's memo of its checks (isa/dma.py `_CHECKED`): a call whose operands and
settings were checked before takes the checked record's attributes and queue; the
record, the values and the errors are those of the checks made every time."""
import warnings

import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import dma
from trnsim.machine.errors import NkiValidationError

from kernel_helpers import bits


@nki.jit
def _loads(x, y):
    """Copies of several kinds, each made more than once (a loop, as kernels load)."""
    out = nl.ndarray((256, 128), nl.float32, buffer=nl.shared_hbm)
    for i in range(2):
        a = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=a, src=x[i * 128:(i + 1) * 128, :])
        b = nl.ndarray((128, 128), nl.bfloat16, buffer=nl.sbuf)
        nisa.dma_copy(dst=b, src=y[i * 128:(i + 1) * 128, :], name="cast")
        c = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=c, src=b, dge_mode=nisa.dge_mode.swdge)  # a cast, another queue
        nisa.dma_copy(dst=c[:, 0:64], src=a[:, 64:128], engine=nisa.engine.scalar)
        nisa.dma_copy(dst=a, src=c, dge_mode=nisa.dge_mode.hwdge)
        nisa.dma_copy(dst=out[i * 128:(i + 1) * 128, :], src=a)
    return out


def _run(kernel, args, chip="trn2", numerics=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out, run = trnsim.run_kernel(kernel, args, chip=chip, numerics=numerics)
    return out, [(i.opcode, i.reads, i.writes, i.attrs, i.queue)
                 for i in run.program.instructions]


@pytest.mark.parametrize("numerics", [True, False])
def test_memo_gives_the_checked_record(monkeypatch, numerics):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((256, 128)).astype(np.float32)
    x.view(np.uint32)[[0, 3, 200], [1, 2, 3]] = [0x7FC01234, 0x80000000, 0x00000007]
    y = rng.standard_normal((256, 128)).astype(np.float32)
    dma._CHECKED.clear()
    checks = []
    check = dma._check_copy

    def counting(*args):
        checks.append(args[2].shape)
        return check(*args)
    monkeypatch.setattr(dma, "_check_copy", counting)
    out, record = _run(_loads, (x, y), numerics=numerics)
    assert len(checks) < len(record) - 2  # (the second iteration's copies hit the memo)
    monkeypatch.setattr(dma, "_copy_key", lambda *args: None)
    out2, record2 = _run(_loads, (x, y), numerics=numerics)
    assert record == record2
    if numerics:
        np.testing.assert_array_equal(bits(out), bits(out2))


@nki.jit
def _hw_copy(x):
    a = nl.ndarray((128, 128), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=x, dge_mode=nisa.dge_mode.hwdge)
    out = nl.ndarray((128, 128), nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=a)
    return out


@nki.jit
def _bad_copy(x):
    a = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=x)
    return x


def _error(kernel, x, chip):
    with pytest.raises(NkiValidationError) as e:
        _run(kernel, (x,), chip=chip)
    return str(e.value)


def test_memo_keeps_the_errors(monkeypatch):
    """A setting checked on one chip is checked again on another (hwdge needs
    NeuronCore-v3); a shape never checked fails with its message."""
    x = np.ones((128, 128), np.float32)
    dma._CHECKED.clear()
    _run(_hw_copy, (x,), chip="trn2")
    on_trn1 = _error(_hw_copy, x, "trn1")
    bad = _error(_bad_copy, x, "trn2")
    monkeypatch.setattr(dma, "_copy_key", lambda *args: None)
    assert _error(_hw_copy, x, "trn1") == on_trn1 and "hwdge" in on_trn1
    assert _error(_bad_copy, x, "trn2") == bad
