"""The HBM writes of a program in order, for the passes that ask whether bytes an
instruction read from HBM were overwritten before a later one (hoisting a repeated
load, dropping a spilled block that still equals its source)."""
from __future__ import annotations

from bisect import bisect_right


class HbmWrites:
    """(position, lo, hi) of every HBM write of `instructions`, by position: listed at
    the first question (most programs never ask one), so the instructions' HBM writes
    must stay as they are until then."""

    def __init__(self, instructions):
        self.instructions = instructions
        self.writes: list | None = None
        self.at: list = []
        # (lo, hi, since) -> how far past `since` no write touches [lo, hi): the repeats
        # of one load are all asked about from the same `since`
        self._clear: dict = {}

    def _list(self) -> list:
        self.writes = [(i, a.lo, a.hi) for i, ins in enumerate(self.instructions)
                       for a in ins.writes if a.space == "hbm"]
        self.at = [w[0] for w in self.writes]
        return self.writes

    def written(self, lo: int, hi: int, since: int, until: int) -> bool:
        """Whether an instruction strictly between positions `since` and `until` writes
        any of HBM bytes [lo, hi)."""
        writes = self.writes
        if writes is None:
            writes = self._list()
        key = (lo, hi, since)
        k = self._clear.get(key)
        if k is None:
            k = bisect_right(self.at, since)
        while k < len(writes) and writes[k][0] < until:
            if writes[k][1] < hi and lo < writes[k][2]:
                return True
            k += 1
        self._clear[key] = k
        return False
