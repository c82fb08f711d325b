"""PsumGroups.member (whether a PSUM box is all in, all out of or partly in a matmul
accumulation group, with fills still pending) against the marks array with every fill
applied."""
from __future__ import annotations

import copy
import random
from types import SimpleNamespace

from trnsim.isa.matmul import PsumGroups


def _reference(groups: PsumGroups, box, gid):
    a, b, c, d = box
    eq = copy.deepcopy(groups).array()[a:b, c:d] == gid
    return True if eq.all() else False if not eq.any() else None


def test_member_matches_the_applied_marks():
    rng = random.Random(0)
    groups = PsumGroups(SimpleNamespace(partitions=8, width=64))
    boxes = [(0, 8, 0, 16), (0, 8, 16, 32), (0, 4, 0, 32), (4, 8, 8, 24), (0, 8, 0, 64),
             (2, 6, 30, 40), (0, 8, 32, 64)]
    seen = set()
    assert groups.member(boxes[0], 1) is False  # nothing marked yet
    for step in range(300):
        if step % 50 == 49:
            groups.array()  # (every pending fill applied, as a strided matmul dst does)
        groups.fill(rng.choice(boxes), rng.choice((0, 1, 2)))
        box, gid = rng.choice(boxes), rng.choice((1, 2))
        got = groups.member(box, gid)
        assert got is _reference(groups, box, gid)
        seen.add(got)
    assert seen == {True, False, None}
