"""record.pending_operands: the runs of loop copies whose operands are not made yet
(their block's deferred class) among a program's instructions, each class's pending
operands with its copies' count, for the compiled allocation."""
from __future__ import annotations

from trnsim.machine.record import (Instruction, _Deferred, deferred_instructions,
                                    pending_operands)


def test_pending_operands_runs_as_read_one_by_one():
    """record.pending_operands (the types read in one C pass, by run) gives the runs of
    deferred copies a pass over each instruction's type finds."""
    class Pending:
        def let_go(self, count: int = 1):
            pass

    def fields(k):
        return [list(range(k)), [0] * k, ["vector"] * k, ["op"] * k, [()] * k, [()] * k,
                [None] * k, [{}] * k, [None] * k]

    a, b = Pending(), Pending()
    first, _ = deferred_instructions(a, fields(3))
    second, _ = deferred_instructions(b, fields(4))
    more, _ = deferred_instructions(a, fields(2))  # (another class of the same pending)
    plain = [Instruction(k, 0, "dma", "copy", (), (), None, {}) for k in range(3)]
    instrs = plain[:1] + first + second[:2] + plain[1:] + second[2:] + more + plain
    got = pending_operands(instrs)
    want_runs, kinds = [], {}  # (a number per deferred class)
    for at, ins in enumerate(instrs):
        if isinstance(ins, _Deferred):
            j = kinds.setdefault(type(ins), len(kinds))
            if want_runs and want_runs[-1][1] == at and \
                    type(instrs[at - 1]) is type(ins):
                want_runs[-1][1] += 1
            else:
                want_runs.append([at, at + 1, j])
    assert got[0] == [(a, 3), (b, 4), (a, 2)]
    assert got[1].tolist() == want_runs
    assert pending_operands(plain) == ([], None) and pending_operands([]) == ([], None)
