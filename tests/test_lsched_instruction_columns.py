"""The compiled list scheduler's per-instruction columns (compiler/compiled_schedule.py
`_instruction_columns`, one numba pass) against the same columns written one by one
in Python from their definitions."""
import numpy as np
import pytest

pytest.importorskip("numba")

from trnsim.compiler import compiled_schedule as cs  # noqa: E402


def _reference(stream, flt, npred, cand_at, cand_lens, nst, dmas, price_row):
    n = len(stream)
    ix = np.zeros((n, cs.X_COLS), np.int32)
    ready = np.zeros(n)
    lens = dict(zip(cand_at.tolist(), cand_lens.tolist()))
    by_stream = [[] for _ in range(nst)]
    rows = 0
    for i in range(n):
        k = int(stream[i])
        ix[i, cs.X_STREAM], ix[i, cs.X_NPRED] = k, npred[i]
        ix[i, cs.X_ARRIVAL] = ix[i, cs.X_NEXT] = -1
        ix[i, cs.X_CAND0] = rows
        rows += lens.get(i, 0)
        ix[i, cs.X_CAND1] = rows
        if not flt[i]:
            ix[i, cs.X_POS] = len(by_stream[k])
            by_stream[k].append(i)
    for d, r in zip(dmas.tolist(), price_row.tolist()):
        ix[d, cs.X_PRICE] = r
    nids = np.array(list(map(len, by_stream)), np.int64)
    idbase = np.concatenate(([0], np.cumsum(nids)[:-1]))
    return ix, ready, np.array(sum(by_stream, []), np.int32), nids, idbase


@pytest.mark.parametrize("seed", range(4))
def test_columns_match_their_definitions(seed):
    rng = np.random.default_rng(seed)
    n, nst = 300, 7
    stream = rng.integers(0, nst - 1, n)  # (the last stream: a candidate's only)
    flt = rng.random(n) < 0.2
    cand_at = np.flatnonzero(flt)
    cand_lens = rng.integers(1, 4, len(cand_at))
    dmas = np.flatnonzero(rng.random(n) < 0.3)
    args = (stream, flt, rng.integers(0, 5, n).astype(np.int32), cand_at, cand_lens,
            nst, dmas, rng.integers(0, 5, len(dmas)))
    for got, want in zip(cs._instruction_columns(*args), _reference(*args)):
        assert got.dtype == want.dtype and np.array_equal(got, want)
