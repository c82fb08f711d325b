"""How the compiled allocation (trnsim/compiler/compiled_allocation.py `_move`) gives
the instructions their physical accesses: a chunk of instructions at a time, each
moving reads or writes tuple made with the others of its size (zip over their
columns), one int object per byte value. With chunks of one and a few accesses every
boundary falls inside runs of tuples of mixed sizes and of sides that do not move
(HBM reads); the instructions must equal the Python allocator's."""
import numpy as np
import pytest

from trnsim.compiler import allocation

pytest.importorskip("numba")
from test_allocation_compiled import _copy, _random_program  # noqa: E402

from trnsim.compiler import compiled_allocation  # noqa: E402


@pytest.mark.parametrize("chunk", [1, 3, 2048])
def test_chunks_and_tuple_sizes_give_the_python_allocators_accesses(chunk, monkeypatch):
    monkeypatch.setattr(compiled_allocation, "_CHUNK", chunk)
    compared = 0
    for seed in range(30):
        program = _random_program(seed)
        got = compiled_allocation.allocate_compiled(_copy(program))
        if got is None:
            continue
        want = allocation._Allocator(_copy(program)).run()
        assert [(x.index, x.reads, x.writes) for x in got.instructions] == \
            [(x.index, x.reads, x.writes) for x in want.instructions]
        compared += 1
    assert compared >= 10


def test_int_objects_one_per_value():
    lo = np.array([300, 1000, 300, 0, 70000], np.int64)
    hi = np.array([1000, 2000, 1000, 300, 70400], np.int64)
    olo, ohi = compiled_allocation._int_objects(lo, hi)
    assert olo.tolist() == lo.tolist() and ohi.tolist() == hi.tolist()
    assert all(type(v) is int for v in olo.tolist() + ohi.tolist())
    assert olo[0] is olo[2] is ohi[3] and ohi[0] is olo[1] is ohi[2]


def test_set_tuples_groups_by_size():
    class Ins:
        __slots__ = ("reads",)

    instrs = [Ins() for _ in range(4)]
    objs = np.array(["a", "b", "c", "d", "e", "f", "g"], object)
    start = np.array([0, 1, 3, 6], np.int64)
    size = np.array([1, 2, 3, 1], np.int64)
    compiled_allocation._set_tuples(np.array(instrs, object), "reads", objs, start, size)
    assert [i.reads for i in instrs] == [("a",), ("b", "c"), ("d", "e", "f"), ("g",)]


def test_indices_not_at_their_positions_are_set_to_them():
    program = next(p for p in map(_random_program, range(30))
                   if compiled_allocation.allocate_compiled(_copy(p)) is not None)
    for i, ins in enumerate(program.instructions):
        ins.index = 1000 + 2 * i
    got = compiled_allocation.allocate_compiled(_copy(program))
    want = allocation._Allocator(_copy(program)).run()
    assert [x.index for x in got.instructions] == list(range(len(program.instructions)))
    assert [(x.index, x.reads, x.writes, x.attrs) for x in got.instructions] == \
        [(x.index, x.reads, x.writes, x.attrs) for x in want.instructions]
