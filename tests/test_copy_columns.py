"""record.copy_columns: the CopyTemplate arrays and kept number columns a Layout makes
once for all its blocks (machine/expand_copy.py), against hand-computed values and the
per-block computation Program.note_copies makes without them."""
import numpy as np

from trnsim.machine.record import Instruction, Program, copy_columns


def test_copy_columns_by_hand():
    # offset, p_hi, lo and alloc move (p_lo and hi keep the template's)
    moving, kept, taken = copy_columns([2, 5], [True, False, True, True, False, True])
    assert moving.dtype == np.int64 and moving.tolist() == [2, 5]
    assert kept.tolist() == [-1, 0, 1, -1, 2]  # (p_lo, p_hi, lo, hi, alloc)
    assert taken.tolist() == [2, 3, 5]  # (their columns among an operand's six numbers)


def test_note_copies_with_columns_as_without():
    def instruction(i):
        return Instruction(i, 0, "vector", "op", (), (), None)
    moves = [False, True, False, True, True, False]
    numbers = np.arange(36, dtype=np.int64).reshape(6, 6) * 7 - 100
    blocks = []
    for columns in (None, copy_columns([0, 1], moves)):
        p = Program(None, instructions=[instruction(i) for i in range(3)])
        made = [instruction(3 + i) for i in range(3)]
        p.instructions += made
        p.note_copies(made, p.instructions[:1], [()], [()], [0, 1], moves, numbers,
                      columns)
        blocks.append(p.copied[-1])
    plain, given = blocks
    reference = numbers[:, [1, 3, 4]]  # (p_lo, lo, hi: the numbers that move)
    for b in blocks:
        assert (b.start, b.copies) == (3, 3)
        assert b.numbers.dtype == np.int32 and np.array_equal(b.numbers, reference)
        assert b.numbers.flags.c_contiguous
    assert plain.template.moving.tolist() == given.template.moving.tolist() == [0, 1]
    assert plain.template.kept.tolist() == given.template.kept.tolist() == [0, -1, 1, 2, -1]
