"""Program.allocations keeps loop copies' allocations as columns (machine/allocations.py):
it reads as the dict of the same Allocation objects would, makes one only when read,
and its columns give the fields the objects have."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import trnsim
from trnsim.machine import expand_copy
from trnsim.machine import allocations
from trnsim.machine.allocations import Allocations, allocation_columns, allocation_fields
from trnsim.machine.record import Allocation

from benchmarks import fidelity

_FIELDS = Allocation.__slots__


def _template(k: int, explicit: bool = False) -> list:
    return [Allocation(i, "sbuf" if i % 2 else "psum", 0, f"t{i}", "float32[128, 8]",
                       "float32", None, 4096 + 64 * i, 32, 16, 0, 128, explicit, i)
            for i in range(k)]


def _pair(copies: int = 5, width: int = 3, explicit: bool = False):
    """(an Allocations with a template and a block of its copies, the dict of the same
    allocations made one by one)."""
    tmpl = _template(width, explicit)
    allocs, want = Allocations((a.id, a) for a in tmpl), {a.id: a for a in tmpl}
    fields = [list(f) for f in zip(*([getattr(a, f) for f in _FIELDS] for a in tmpl))]
    n = copies * width
    declared = np.arange(100, 100 + 7 * n, 7, dtype=np.int64)
    vaddr = np.arange(n, dtype=np.int64) * 512 if explicit else None
    allocs.add_block(width, fields, declared, vaddr)
    for j in range(n):
        values = [f[j % width] for f in fields]
        values[0], values[-1] = width + j, int(declared[j])
        if explicit:
            values[_FIELDS.index("vaddr")] = int(vaddr[j])
        want[width + j] = Allocation(*values)
    return allocs, want


@pytest.mark.parametrize("explicit", [False, True])
def test_reads_as_the_dict_of_its_objects(explicit):
    allocs, want = _pair(explicit=explicit)
    assert not allocs._made
    assert len(allocs) == len(want) and list(allocs) == list(want)
    assert 7 in allocs and 99 not in allocs and allocs.get(99) is None
    assert allocs[7] == want[7] and allocs[7] is allocs[7]
    assert list(allocs._made) == [7]
    assert dict(allocs.items()) == want
    assert pickle.loads(pickle.dumps(allocs)) == want
    ids, columns = allocation_columns(allocs, {f: object for f in _FIELDS})
    assert sorted(ids.tolist()) == list(want)
    for k, key in enumerate(ids.tolist()):
        assert [c[k] for c in columns] == [getattr(want[key], f) for f in _FIELDS]
    vaddr, names = allocs.vaddrs_and_ids([1, 9, 4, 1])
    assert vaddr.tolist() == [want[k].vaddr for k in (1, 9, 4, 1)]
    assert names == [1, 9, 4, 1] and names[0] is want[1].id


def test_rolled_back_and_grown_as_a_dict():
    """Deleting from the middle and the end of a block, and adding after it (a rolled
    back expansion: machine/expand_parts.py Mark.restore)."""
    allocs, want = _pair(copies=6)
    for key in (10, 5, 20, 19, 18, 17):
        del allocs[key], want[key]
        assert list(allocs) == list(want) and dict(allocs.items()) == want
    assert allocs.top() == 17
    new = _template(18)[-1]
    allocs[17] = want[17] = new
    allocs[6] = want[6] = new
    assert list(allocs) == sorted(want) and dict(allocs.items()) == want
    with pytest.raises(KeyError):
        del allocs[10]


def test_places_read_the_columns_as_the_objects(monkeypatch):
    """expand_copy._places over the columns gives the byte ranges and ids it gives over
    the dict of the same allocations, making no Allocation."""
    allocs, want = _pair(copies=200, width=4)
    rng = np.random.default_rng(3)
    nums = rng.integers(0, 1000, size=(600, 6))
    nums[:, 5] = np.where(rng.random(600) < 0.3, -1, rng.integers(0, len(want), 600))
    for small in (256, 0):
        monkeypatch.setattr(expand_copy, "_SMALL_PLACES", small)
        assert expand_copy._places(nums, allocs) == expand_copy._places(nums, want)
    assert not allocs._made


def test_a_timing_only_run_keeps_its_copies_allocations_as_columns():
    x = np.ones((128, 4096), np.float32)
    _, run = trnsim.run_kernel(fidelity.strided_stores, (x,), chip="trn2", numerics=False)
    allocs = run.program.allocations
    assert isinstance(allocs, Allocations) and allocs._blocks
    assert len(allocs._made) < len(allocs) // 10
    assert run.program.memory.allocations is allocs


def test_copies_as_columns_read_as_copies_made_as_objects(monkeypatch):
    """A block of copies large enough to keep as columns gives the allocations (fields,
    declaration points) and the record the objects' path gives."""
    from test_expand import _record, _run
    from trnsim.machine.runtime import Run
    monkeypatch.setattr(Run, "compile", lambda self: None)
    iterations = expand_copy._ALLOCATION_COLUMNS + 50
    x = np.ones((128, 8 * iterations), np.float32)
    run = _run(fidelity.strided_stores, x)
    p = run.program
    assert isinstance(p.allocations, Allocations) and p.allocations._blocks
    for at in (0, 1):  # t before its load, u before the scaling
        made = [p.instructions[3 * j + at] for j in range(5, iterations - 1)]
        tiles = [p.allocations[i.writes[0].alloc] for i in made]
        assert [t.declared_at for t in tiles] == [i.index for i in made]
    monkeypatch.setattr(expand_copy, "_ALLOCATION_COLUMNS", 10 ** 9)
    objects = _run(fidelity.strided_stores, x)
    assert type(objects.program.allocations) is dict
    assert dict(p.allocations.items()) == objects.program.allocations
    assert _record(run) == _record(objects)


@pytest.mark.parametrize("explicit", [False, True])
def test_fields_of_a_range_are_the_objects_fields_made_none(explicit):
    """allocation_fields over a range mixing allocations added one by one and a block's
    copies (cut apart by a rolled back one) gives the fields the objects have."""
    allocs, want = _pair(copies=6, width=3, explicit=explicit)
    del allocs[10], want[10]
    allocs[21] = want[21] = _template(22)[-1]
    for ids in (range(0, 22), range(2, 5), range(5, 10), range(8, 13), range(11, 12),
                range(20, 22)):
        ids = [k for k in ids if k != 10] if 10 in ids else ids
        if isinstance(ids, list):  # (allocation_fields takes ranges: around the gap)
            continue
        expected = [[getattr(want[k], f) for k in ids] for f in _FIELDS]
        assert allocation_fields(allocs, ids) == expected
        assert allocation_fields(want, ids) == expected
    assert not allocs._made


def test_few_places_looked_up_one_by_one_as_by_numpy(monkeypatch):
    allocs, want = _pair(copies=20, width=4, explicit=True)
    keys = [1, 70, 4, 33, 1, 83, 2]
    few = allocs.vaddrs_and_ids(keys)
    monkeypatch.setattr(allocations, "_FEW", 0)
    many = allocs.vaddrs_and_ids(keys)
    assert few[0].tolist() == many[0].tolist() == [want[k].vaddr for k in keys]
    assert few[1] == many[1] == keys and few[1][0] is want[1].id
    with pytest.raises(KeyError):
        allocs.vaddrs_and_ids([500])
    assert not allocs._made


def test_an_outer_loop_copies_inner_copies_kept_as_columns_making_none(monkeypatch):
    """An outer loop whose template holds an inner loop's copies kept as columns reads
    their fields as columns (Copier), and records what the objects' path records."""
    from test_copies_same_operands import tile_read_in_an_inner_loop
    from test_expand import _record, _run
    from trnsim.machine.runtime import Run
    monkeypatch.setattr(Run, "compile", lambda self: None)
    monkeypatch.setattr(expand_copy, "_ALLOCATION_COLUMNS", 16)
    made, lasts = [], []
    real, add = allocations._Block.made, Allocations.add_block
    monkeypatch.setattr(allocations._Block, "made",
                        lambda self, key: made.append(key) or real(self, key))
    monkeypatch.setattr(Allocations, "add_block", lambda self, start, template, declared,
                        vaddr: lasts.append(start + len(declared) - 1)
                        or add(self, start, template, declared, vaddr))
    x = np.ones((128, 128), np.float32)
    run = _run(tile_read_in_an_inner_loop, x)
    allocs = run.program.allocations
    assert isinstance(allocs, Allocations) and len(lasts) > 2
    # (an append noted for the snapshots of a loop around it reads its last copy alone)
    assert made and len(set(made)) == len(made) and set(made) <= set(lasts)
    monkeypatch.setattr(expand_copy, "_ALLOCATION_COLUMNS", 10 ** 9)
    objects = _run(tile_read_in_an_inner_loop, x)
    assert type(objects.program.allocations) is dict
    assert dict(allocs.items()) == objects.program.allocations
    assert _record(run) == _record(objects)


def test_objects_added_at_once_read_as_set_one_by_one():
    """Allocations.add: past the last block at once, else as MutableMapping.update."""
    allocs, want = _pair(copies=4, width=3)
    more = _template(20)[15:]  # (ids 15..19: past the block's 3..14)
    allocs.add([a.id for a in more], more)
    want.update((a.id, a) for a in more)
    assert list(allocs) == list(want) and dict(allocs.items()) == want
    assert allocs.top() == 20 and len(allocs) == len(want)
    again = _template(8)[6:8]  # (ids 6, 7: inside the block, which they replace)
    allocs.add([7, 6], again[::-1])
    want[7], want[6] = again[1], again[0]
    assert list(allocs) == sorted(want) and dict(allocs.items()) == want
    assert allocs[6] is again[0] and allocs.top() == 20


def test_blocks_sharing_a_template_read_as_their_objects():
    """Blocks of copies of one template (its field lists shared, as an outer loop's
    blocks share them: converted once per call) read as the objects: one copy of the
    template, several, and parts of them cut at other positions."""
    width = 4
    tmpl = _template(width)
    fields = [list(f) for f in zip(*([getattr(a, f) for f in _FIELDS] for a in tmpl))]

    def made() -> Allocations:
        allocs = Allocations((a.id, a) for a in tmpl)
        for copies in (1, 3, 1, 2):
            declared = np.arange(copies * width, dtype=np.int64) + 1000 * copies
            allocs.add_block(allocs.top(), fields, declared, None)
        del allocs[width + 2]  # (the first block cut into parts)
        del allocs[width * 2 + 5]
        return allocs

    want = dict(made().items())
    allocs = made()
    assert len(allocs._blocks) == 6 and not allocs._made
    dtypes = {"space": object, "core": np.int64, "vaddr": np.int64,
              "block_bytes": np.int64, "declared_at": np.int64, "explicit": np.bool_}
    ids, columns = allocation_columns(allocs, dtypes)
    assert not allocs._made
    assert sorted(ids.tolist()) == sorted(want)
    for (name, dtype), column in zip(dtypes.items(), columns):
        assert column.dtype == dtype
        assert column.tolist() == [getattr(want[k], name) for k in ids.tolist()], name
