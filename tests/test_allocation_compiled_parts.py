"""Parts of the compiled allocation (compiler/compiled_allocation.py) against the NumPy
they stand for: the explicit tensors in order of first access and their last uses, the
blocks each access covers, each block's first and last use and the walk's events
(`_Uses`, as NumPy's unique, minimum.at / maximum.at and a stable sort give them, on
random programs; each access row's instruction as a search of the pointers)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
from trnsim.compiler import compiled_allocation  # noqa: E402

from test_allocation_compiled import _random_program  # noqa: E402


def _numpy_uses(cols, al):
    """_Uses' block columns and events by NumPy (its columns before `_block_uses`):
    each (instruction, block) at its first access there, by np.unique; first and last
    uses by np.minimum.at / np.maximum.at; the events by a stable sort of (instruction,
    placement before release)."""
    aid = cols.alloc
    onchip = (cols.space[cols.source] != cols.hbm) & (aid >= 0)

    def instruction_of(rows):
        return np.searchsorted(cols.access.ptr, rows, "right") - 1

    safe = np.where(onchip, aid, 0)
    ex_pos = np.flatnonzero(onchip & al.explicit[safe])
    ex_ids, first_pos = np.unique(aid[ex_pos], return_index=True)
    ex_last = np.zeros(len(al.blocks), np.int64)
    np.maximum.at(ex_last, aid[ex_pos], instruction_of(ex_pos))
    pos = np.flatnonzero(onchip & ~al.explicit[safe])
    a_id = aid[pos]
    assert (al.arena[a_id] >= 0).all()
    rel_lo = cols.lo[pos] - al.vaddr[a_id]
    width = cols.hi[pos] - cols.lo[pos]
    bb = al.block_bytes[a_id]
    b0 = rel_lo // bb
    nb = -(-(rel_lo + width) // bb) - b0
    base = np.zeros(len(al.blocks) + 1, np.int64)
    np.cumsum(al.blocks, out=base[1:])
    fb = base[a_id] + b0
    ins = instruction_of(pos)
    nbl = int(base[-1])
    rep = np.repeat(np.arange(len(pos)), nb)
    gblock = fb[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(nb) - nb, nb))
    g_ins = ins[rep]
    first = np.unique(g_ins * max(nbl, 1) + gblock, return_index=True)[1]
    first.sort(kind="stable")
    m_block, m_ins = gblock[first], g_ins[first]
    first_use = np.full(nbl, np.iinfo(np.int64).max)
    np.minimum.at(first_use, m_block, m_ins)
    first_use[first_use == np.iinfo(np.int64).max] = -1
    last_use = np.full(nbl, -1)
    np.maximum.at(last_use, m_block, m_ins)
    is_first, is_last = m_ins == first_use[m_block], m_ins == last_use[m_block]
    block = np.concatenate((m_block[is_first], m_block[is_last]))
    at = np.concatenate((m_ins[is_first], m_ins[is_last]))
    place = np.concatenate((np.ones(is_first.sum(), np.int64),
                            np.zeros(is_last.sum(), np.int64)))
    order = np.argsort(at * 2 + (1 - place), kind="stable")
    multi = np.flatnonzero(nb > 1)
    return dict(ex_ids=ex_ids[np.argsort(first_pos, kind="stable")], ex_last=ex_last,
                pos=pos, first_block=fb, offset=rel_lo - b0 * bb, width=width,
                multi=multi, multi_nb=nb[multi], multi_bb=bb[multi], touched=np.unique(ins),
                first=first_use, last=last_use, placements=int(is_first.sum()),
                ev_block=block[order], ev_at=at[order], ev_place=place[order])


# (rows, instructions, blocks and bytes in a block: int32)
_DTYPES = dict.fromkeys(("pos", "first_block", "offset", "width", "multi", "touched",
                         "first", "last", "ev_block", "ev_at", "ev_place"), np.int32)


def test_block_uses_are_the_numpy_ones():
    multi = reused = explicit = 0  # (programs with accesses over several blocks, blocks
    # used again, explicit tensors)
    for seed in range(40):
        program = _random_program(seed)
        if seed % 4 == 0:  # (an instruction that names a block twice)
            ins = program.instructions[5]
            ins.reads = ins.reads + ins.writes[:1]
        al = compiled_allocation._Allocs(program.allocations, [("sbuf", 0), ("psum", 0)])
        cols = compiled_allocation._Columns(program, al.vaddr)
        got = compiled_allocation._Uses(cols, al)
        assert got.valid
        for name, want in _numpy_uses(cols, al).items():
            value = getattr(got, name)
            if name == "placements":
                assert value == want
            else:
                assert value.dtype == _DTYPES.get(name, np.int64), name
                assert np.array_equal(value, want), name
        multi += bool(got.multi.size)
        explicit += bool(got.ex_ids.size)
        reused += len(got.ev_block) < 2 * got.multi_nb.sum() + 2 * (len(got.pos) - len(
            got.multi))
    assert multi >= 10 and reused >= 10 and explicit >= 5, (multi, reused, explicit)


def test_in_spaces_are_the_equal_items():
    """By identity where an item is the name's object, by value otherwise (a name made
    at run time is another object)."""
    literal, made = "sbuf", "".join(["sb", "uf"])
    assert made == literal and made is not literal
    space = np.array(["sbuf", "psum", made, "hbm", "psum", made], object)
    got = compiled_allocation._in_spaces(space, ["sbuf", "psum"])
    assert set(got) == {"sbuf", "psum"}
    for name, hits in got.items():
        assert np.array_equal(hits, space == name), name
    alone = compiled_allocation._in_spaces(np.array(["psum", "sbuf"], object), ["sbuf"])
    assert alone["sbuf"].tolist() == [False, True]


def test_usage_steps_are_the_arena_notes():
    """The walk's notes as each arena's Steps (plan.py) notes them one by one."""
    from trnsim.compiler.plan import Steps
    rng = np.random.default_rng(7)
    for trial in range(30):
        na = int(rng.integers(1, 5))
        n = int(rng.integers(0, 200))
        arena = rng.integers(0, na, n).astype(np.int32)
        at = np.sort(rng.integers(0, 40, n)).astype(np.int32)  # (repeats: replaced)
        used = rng.integers(0, 1 << 17, n).astype(np.int32)
        if trial % 3 == 0 and n:
            at[:3] = 0  # (notes at 0 replace the first step)
        want = [Steps([(0, 0)]) for _ in range(na)]
        for a, i, u in zip(arena.tolist(), at.tolist(), used.tolist()):
            want[a].note(i, u)
        got_at, got_used, bounds = compiled_allocation._usage_steps(arena, at, used, na)
        for a in range(na):
            part = slice(bounds[a], bounds[a + 1])
            assert list(zip(got_at[part].tolist(), got_used[part].tolist())) == list(want[a])


def test_allocs_tables_are_the_same_for_ids_in_any_order():
    """_Allocs' tables by id where the ids are 0..n-1 in order (the columns taken as
    they are) and where they come in another order or with gaps (scattered by id)."""
    names = ("arena", "explicit", "vaddr", "block_bytes", "row_bytes", "declared", "blocks")
    keys = [("sbuf", 0), ("psum", 0)]
    for seed in range(6):
        allocs = _random_program(seed).allocations
        dense = compiled_allocation._Allocs(allocs, keys)
        assert dense.valid and dense.explicit.any() == any(a.explicit for a in
                                                           allocs.values())
        ids = list(allocs)
        shuffled = compiled_allocation._Allocs(
            {k: allocs[k] for k in reversed(ids)}, keys)
        gaps = compiled_allocation._Allocs({k: allocs[k] for k in ids if k % 3}, keys)
        for name in names:
            want = getattr(dense, name)
            assert np.array_equal(getattr(shuffled, name), want), name
            got = getattr(gaps, name)
            kept = [k for k in ids if k % 3]
            assert np.array_equal(got[kept], want[kept]), name
        dropped = [k for k in ids if not k % 3 and k < gaps.width]
        assert (gaps.arena[dropped] == -1).all() and (gaps.blocks[dropped] == 0).all()
        for k in ids:
            a = allocs[k]
            assert dense.arena[k] == keys.index((a.space, a.core))
            assert dense.blocks[k] == a.blocks and dense.vaddr[k] == a.vaddr
            assert dense.declared[k] == (a.declared_at if a.explicit else 0)
