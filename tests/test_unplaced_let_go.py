"""An allocated program's pending move (compiler/compiled_allocation.py `_PendingMove`)
lets go of what it keeps when the last of its instructions whose physical accesses are
not made yet is made or dies, not before, however they go (each one read alone, some
dying first), and once."""
import gc

import pytest

pytest.importorskip("numba")
from test_alloc3_unplaced import _pair, _unplaced  # noqa: E402


def test_let_go_at_the_last_one_made_or_dead():
    _pair()  # (a first run that compiles, numba's cache cold, was seen to leave some
    # of its instructions alive past the deaths below)
    gc.disable()
    try:
        _, want, got = _pair()
        mine = _unplaced(got)
        pending = type(mine[0])._pending
        got.instructions = got.instructions[::-1]  # (not where the pass left them:
        # each made as it is read)
        half = len(mine) // 2
        made = mine[:half]
        dead = mine[half:]
        del mine
        for ins in made[:-1]:
            ins.reads  # noqa: B018 (made, alone)
            assert pending.rows is not None
        del got  # (the program, and the lists that hold them)
        dead.clear()  # (they die)
        assert pending.rows is not None
        made[-1].writes  # noqa: B018 (the last)
        assert pending.rows is None and pending.cols is None and not pending.deferred
        for _ in range(3):  # (no more to let go of: nothing happens, however often)
            pending.let_go()
        assert pending.rows is None and not pending.deferred
        assert [(i.reads, i.writes) for i in made] == \
            [(want.instructions[i.index].reads, want.instructions[i.index].writes)
             for i in made]
    finally:
        gc.enable()
