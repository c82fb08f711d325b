"""The compiled dependency maps' cache of Recs by exact box (timing/compiled_deps.py
`_cache_put`, `_cached`): sets of WAYS slots, the least recent key of a full set
leaving; a key is found only with its segment's version and the Rec's partitions."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.timing import compiled_deps as cd  # noqa: E402
from trnsim.timing.compiled_deps import PHI, PLO, WAYS  # noqa: E402


def _same_set(cache, count) -> list:
    """`count` keys (version, p_lo, p_hi) whose set is the first key's."""
    want = cd._cache_slot(cache, 1, 0, 1)
    keys = [(v, p, p + 1) for v in range(1, 2000) for p in range(4)]
    return [k for k in keys if cd._cache_slot(cache, *k) == want][:count]


def test_a_full_set_lets_its_least_recent_key_go():
    cache = np.full((256, 2), -1, np.int64)
    keys = _same_set(cache, WAYS + 1)
    assert len(keys) == WAYS + 1
    R = np.zeros((len(keys), 7), np.int32)
    gver = np.array([v for v, _, _ in keys], np.int64)  # (segment x: key x's version)
    for r, (v, p_lo, p_hi) in enumerate(keys):
        R[r, PLO], R[r, PHI] = p_lo, p_hi
        cd._cache_put(cache, v, p_lo, p_hi, r)
    found = [cd._cached(cache, gver, R, x, p_lo, p_hi)
             for x, (_, p_lo, p_hi) in enumerate(keys)]
    assert found == [-1] + list(range(1, WAYS + 1))  # (the first put: gone)
    gver[WAYS] += 1  # (a Rec left the segment: a new version)
    assert cd._cached(cache, gver, R, WAYS, *keys[WAYS][1:]) == -1
    R[1, PHI] += 1  # (another Rec than the key's box)
    assert cd._cached(cache, gver, R, 1, *keys[1][1:]) == -1
