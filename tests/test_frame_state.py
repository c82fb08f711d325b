"""machine/frame_state.py: what loop expansion sees of a loop frame between
iterations."""
from __future__ import annotations

import gc
import sys
import weakref

from trnsim.machine.frame_state import frame_values


class _Note:
    def __init__(self, scale):
        self.scale = scale


def test_a_state_holds_the_objects_it_states_by_identity():
    """A local rebound in an inner loop may get the address of the object an earlier
    state saw (its id), which would read as not rebound: the state keeps the object
    alive, so that ids of one loop's states name distinct objects."""
    note = _Note(1.0)
    seen = weakref.ref(note)
    out, _, _, held = frame_values(sys._getframe())
    assert out["note"][:2] == ("object", id(note))
    del note
    gc.collect()
    assert seen() is not None and any(x is seen() for x in held)
    del held
    sys._getframe().f_locals  # (refreshed: the frame's dict no longer names it)
    gc.collect()
    assert seen() is None
