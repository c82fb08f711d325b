"""Run.new_tensor's memo of tile kinds (machine/runtime.py `_tile_kinds`): a tensor
declared again with the same shape, dtype and buffer is made from the checked kind
and gets what the full path gives it (its Allocation record, storage and values)."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim import nki
from trnsim.machine.errors import NkiValidationError
from trnsim.machine.runtime import Run


class _Forgetful(dict):
    """A memo that never hits: every declaration takes the full path."""

    def get(self, key, default=None):
        return default


def _forgetful_runs(monkeypatch):
    init = Run.__init__

    def forgetful_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._tile_kinds = _Forgetful()

    monkeypatch.setattr(Run, "__init__", forgetful_init)


@nki.jit
def _kinds(x):
    out = nl.ndarray((128, 32), nl.float32, buffer=nl.shared_hbm)
    for i in range(3):
        t = nl.ndarray((128, 64), nl.float32, buffer=nl.sbuf, name=f"t{i}")
        u = nl.ndarray([128, 64], nl.float32, buffer=nl.sbuf)  # (a list: not memoized)
        h = nl.ndarray((np.int64(128), 32), "bfloat16", buffer=nl.sbuf)
        p = nl.ndarray((128, 64), nl.float32, buffer=nl.psum)
        nisa.dma_copy(dst=t, src=x)
        nisa.tensor_copy(dst=p, src=t)
        nisa.tensor_copy(dst=u, src=p)
        nisa.tensor_copy(dst=h, src=u[:, 0:32])
        nisa.dma_copy(dst=out, src=h)
    return out


def _record(run):
    storages = [(a.reads, a.writes) for a in run.program.instructions]
    return list(run.program.allocations.values()), storages


def test_memoized_kinds_give_what_the_full_path_gives():
    x = np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)
    memo_out, memo_run = trnsim.run_kernel(_kinds, (x,), chip="trn2")
    with pytest.MonkeyPatch.context() as mp:
        _forgetful_runs(mp)
        full_out, full_run = trnsim.run_kernel(_kinds, (x,), chip="trn2")
    assert len(memo_run._tile_kinds) == 3  # t, h and p's kinds; not u's (a list)
    assert type(full_run._tile_kinds) is _Forgetful
    assert _record(memo_run) == _record(full_run)
    assert memo_out.tobytes() == full_out.tobytes()


@nki.jit
def _too_big_twice(x):
    for _ in range(2):
        try:
            nl.ndarray((128, 1 << 20), nl.float32, buffer=nl.psum)
        except NkiValidationError as e:
            _messages.append(str(e))
    return x


_messages: list = []


def test_a_kind_that_fails_fails_every_time():
    _messages.clear()
    trnsim.run_kernel(_too_big_twice, (np.zeros((128, 1), np.float32),), chip="trn2",
                      numerics=False)
    assert len(_messages) == 2 and _messages[0] == _messages[1]
    assert "needs 4194304 bytes per partition" in _messages[0]
