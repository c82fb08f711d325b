"""PsumGroups.member (whether a PSUM box is all in, all out of or partly in a matmul
accumulation group, with fills still pending) against the marks array with every fill
applied."""
from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import numpy as np

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


def test_fills_match_a_plain_array_of_marks():
    """Boxes that overlap pending ones in every way (covered, cut into what is left of
    them, or, past the pending limit, written to the array), marks never used before
    (a new group's first box), against the fills applied one by one to an array."""
    rng = random.Random(1)
    groups = PsumGroups(SimpleNamespace(partitions=8, width=64))
    marks = np.zeros((8, 64), np.int32)
    used = [1]
    seen = set()
    for step in range(3000):
        a, c = rng.randrange(8), rng.randrange(64)
        box = (a, rng.randint(a + 1, 8), c, rng.randint(c + 1, min(64, c + 24)))
        gid = rng.choice(used + [0, used[-1] + 1])
        if gid == used[-1] + 1:
            used.append(gid)
        if rng.random() < 0.5:  # ask first, as a matmul does before it marks its dst
            want = marks[box[0]:box[1], box[2]:box[3]] == gid
            got = groups.member(box, gid)
            assert got is (True if want.all() else False if not want.any() else None)
            seen.add(got)
        groups.fill(box, gid)
        marks[box[0]:box[1], box[2]:box[3]] = gid
        if step % 700 == 699:
            assert (groups.array() == marks).all()
    assert (groups.array() == marks).all()
    assert seen == {True, False, None}
