"""The HBM writes of a program in order, for the passes that ask whether bytes an
instruction read from HBM were overwritten before a later one (hoisting a repeated
load, dropping a spilled block that still equals its source)."""
from __future__ import annotations

from bisect import bisect_right


class HbmWrites:
    """(position, lo, hi) of every HBM write of `instructions`, by position."""

    def __init__(self, instructions):
        self.writes = [(i, a.lo, a.hi) for i, ins in enumerate(instructions)
                       for a in ins.writes if a.space == "hbm"]
        self.at = [w[0] for w in self.writes]
        # (lo, hi, since) -> how far past `since` no write touches [lo, hi): the repeats
        # of one load are all asked about from the same `since`
        self._clear: dict = {}

    def written(self, lo: int, hi: int, since: int, until: int) -> bool:
        """Whether an instruction strictly between positions `since` and `until` writes
        any of HBM bytes [lo, hi)."""
        key = (lo, hi, since)
        k = self._clear.get(key)
        if k is None:
            k = bisect_right(self.at, since)
        writes = self.writes
        while k < len(writes) and writes[k][0] < until:
            if writes[k][1] < hi and lo < writes[k][2]:
                return True
            k += 1
        self._clear[key] = k
        return False
