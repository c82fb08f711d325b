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
unfreezing would release it.)"""
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
