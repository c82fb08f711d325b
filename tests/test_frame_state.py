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


class _Settings:
    count = 3
    on = True
    label = "a"
    scale = 0.5
    nothing = None
    items = [1, 2]  # (not a plain value: left out)

    def __init__(self):
        self.mine = 1

    def method(self):  # (left out)
        return self


def test_an_objects_state_holds_its_class_plain_attributes():
    """An object's state lists its class attributes of a plain type (ints, bools,
    strings, floats, None; its module name and docstring among them), in the class's
    order, so that a body setting one declines; other class attributes are left out."""
    settings = _Settings()
    before = frame_values(sys._getframe())[0]["settings"][2]
    assert before == ("_Settings", (("mine", 1), ("__module__", __name__), ("count", 3),
                                    ("on", True), ("label", "a"), ("scale", 0.5),
                                    ("nothing", None), ("__doc__", None)))
    try:
        _Settings.count = 4
        after = frame_values(sys._getframe())[0]["settings"][2]
    finally:
        _Settings.count = 3
    assert after != before and after[1][2] == ("count", 4)
    assert settings.mine == 1
