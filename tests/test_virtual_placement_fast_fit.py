"""OnChipMemory.place_virtual's first try (the aligned cursor, taken where no live span
ends past it and the arena is wide enough) places every tensor where the general search
places it: next_fit over the live spans, from the cursor, wrapping to the virtual base,
and growing the arena when no gap fits (the model here). Random sizes and lifetimes make
both the first try and the search answer, with numerics on and off."""
import bisect
import random

import pytest

from trnsim.machine.memory import OnChipMemory, Storage, next_fit
from trnsim.numerics.dtypes import as_dtype

_ALIGN, _CAPACITY = 64, 4096


class _Model:
    """The general placement: next-fit over the live spans, the arena doubling."""

    def __init__(self, base: int):
        self.base = self.width = self.cursor = base
        self.taken: list = []

    def place(self, size: int) -> int:
        start = next_fit(self.taken, size, self.cursor, self.base, self.width, _ALIGN)
        if start is None:
            start = max(self.taken[-1][1] if self.taken else 0, self.base)
            self.width = max(start + size, 2 * self.width)
        bisect.insort(self.taken, (start, start + size))
        self.cursor = start + size
        return start

    def free(self, start: int) -> None:
        self.taken.pop(bisect.bisect_left(self.taken, (start,)))


@pytest.mark.parametrize("values", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_first_try_places_as_the_search(values, seed):
    rng = random.Random(seed)
    memory = OnChipMemory("sbuf", 0, 128, _CAPACITY, _ALIGN, "trn2", values)
    model = _Model(memory.virtual_base)
    dtype = as_dtype("float32")
    live, placed, first_tries = [], [], 0
    for i in range(600):
        row_bytes = rng.choice([4, 64, 200, 512, 1024, 2048, 4096])
        st = Storage("sbuf", f"t{i}", 0, 0, row_bytes, 0, 128, memory)
        cursor, taken = memory._cursor, list(memory._taken)
        memory.allocate(st, dtype, f"float32[128, {row_bytes // 4}]", row_bytes)
        want = model.place(memory.aligned(row_bytes))
        assert st.address == want, i
        first_tries += st.address == max(memory.virtual_base, cursor) and \
            all(end <= st.address for _, end in taken)
        placed.append(st.address)
        live.append(st)
        for _ in range(rng.randrange(3)):  # some die (freed at the next placement)
            if live:
                gone = live.pop(rng.randrange(len(live)))
                model.free(gone.address)
                del gone
        assert memory.width == model.width
    assert sorted(memory._taken) == memory._taken  # (still sorted, disjoint)
    assert 100 < first_tries < 590  # (both ways were taken)
    assert len(set(placed)) < len(placed)  # (addresses were reused)
