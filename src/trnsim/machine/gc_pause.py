"""The cyclic garbage collector paused while a scheduler runs (or loop expansion
appends its iterations).

The schedulers allocate hundreds of thousands of small objects (map segments, waits,
events, moved operands) and keep most of them, so the collector's generation counts
keep tripping and each full collection walks the whole heap, the program's record
included: 10-25% of a scheduler's time on a tiled matmul. Nothing they build is cyclic
garbage; the collector runs again, as it was, when they return.

What the paused work allocated is then moved to the oldest generation at once
(gc.freeze / gc.unfreeze) instead of being walked by the young collection its
allocation count trips right away, and by the middle one after that: 1.35 of the 9 CPU-s
of a timing-only profile of 142k instructions. (The caller's young objects of that
moment wait for the next full collection too. Skipped when anything else is frozen:
unfreezing would release it.)

The other side of it: a full collection then seldom comes on its own (what froze and
thawed never counts towards one), so a cycle left by a profile is garbage that stays,
and one that reaches the record keeps every profile's in a loop of profiles. Passes
leave none (tests/test_no_cyclic_garbage.py); a per-program class (a type is a cycle)
must hold nothing large once its instructions are gone."""
from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def gc_paused():
    if not gc.isenabled():  # already paused (nested) or off by the caller's choice
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        gc.enable()
