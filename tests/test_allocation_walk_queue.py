"""The compiled allocation's queue of cooling spans (trnsim/compiler/compiled_allocation.py
`_queue_open`, `_queue_close`, `_bisect_age`): a sorted window that drifts in its region
and is moved back to the middle, against a Python list kept sorted with bisect."""
import bisect

import numpy as np
import pytest

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation as ca  # noqa: E402


@pytest.mark.parametrize("seed", range(6))
def test_the_queue_stays_the_sorted_list_of_its_entries(seed):
    rng = np.random.default_rng(seed)
    room = (5, 12)  # arena 0 holds at most 5 entries, arena 1 at most 12
    qoff = np.array([0, 2 * room[0] + 2, 2 * (room[0] + room[1]) + 4], np.int64)
    qw, qlo, qhi = (np.full(qoff[-1], -7, np.int64) for _ in range(3))
    qh = (qoff[:2] + qoff[1:]) // 2
    qt = qh.copy()
    want = ([], [])
    for _ in range(3000):
        a = int(rng.integers(0, 2))
        ref = want[a]
        if ref and (len(ref) == room[a] or rng.random() < 0.45):
            # a removal, most often of the oldest (as a placement in the oldest span)
            j = 0 if rng.random() < 0.5 else int(rng.integers(0, len(ref)))
            w, lo, hi = ref.pop(j)
            k = ca._bisect_age(qw, qlo, qh[a], qt[a], w, lo)
            assert (qw[k], qlo[k], qhi[k]) == (w, lo, hi)
            ca._queue_close(qw, qlo, qhi, qh, qt, a, k)
        else:
            # an insertion, most often of the newest (a release)
            w = (ref[-1][0] + int(rng.integers(0, 2)) if ref and rng.random() < 0.7
                 else int(rng.integers(0, 50)))
            lo = int(rng.integers(0, 1000))
            item = (w, lo, lo + 1)
            if item in ref:
                continue
            j = bisect.bisect_left(ref, item)
            ref.insert(j, item)
            k = ca._bisect_age(qw, qlo, qh[a], qt[a], w, lo)
            assert k - qh[a] == j
            k = ca._queue_open(qw, qlo, qhi, qoff, qh, qt, a, k)
            qw[k], qlo[k], qhi[k] = item
        for b in (0, 1):
            assert qoff[b] <= qh[b] <= qt[b] <= qoff[b + 1]
            got = list(zip(*(x[qh[b]:qt[b]].tolist() for x in (qw, qlo, qhi))))
            assert got == want[b]
