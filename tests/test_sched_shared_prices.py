"""What the compiler's list scheduler prices once and hands on (compiler/schedule.py,
timing/costs.py `priced`, timing/scheduler.py `cores_and_opcodes`): its estimates
against `_cost_of` one instruction at a time, the matmul results the timing scheduler
takes against its own pricing, the DMA prices with the caller's opcode and attrs
numbers against those without, and each instruction's core and opcode number against
the record."""
import numpy as np
import pytest

from kernel_helpers import tutorial_run
from trnsim.chips import load_chip
from trnsim.compiler.schedule import _ListScheduler
from trnsim.machine.record import Instruction, Program
from trnsim.timing import columns
from trnsim.timing.costs import cost_model, dma_costs, priced
from trnsim.timing.scheduler import _Scheduler, cores_and_opcodes, identities, with_opcode


def _fresh(program):
    """`program` without what an earlier pass kept on it."""
    for name in ("_priced", "_dma_queues", "_cores_and_opcodes"):
        vars(program).pop(name, None)
    return program


@pytest.mark.parametrize("variant", ["tiled", "block_mnk"])
def test_estimates_are_cost_of_one_by_one(variant):
    program = _fresh(tutorial_run(variant, "trn2").program)
    ls = _ListScheduler(program, load_chip("trn2"), "asap", 64)
    assert ls.est.tolist() == [ls._cost_of(ins) for ins in ls.instrs]


def _mixed_program():
    """Matmuls of two attrs dicts, one of them shared with a vector copy (a dict of
    instructions of two opcodes and engines), a DMA and a sync instruction."""
    shared = {"N": 64, "M": 128, "K": 128}
    own = {"N": 512, "M": 128, "K": 128, "stationary_dtype": "float32"}
    instrs = []
    for k in range(12):
        if k % 3 == 0:
            instrs.append(Instruction(k, 0, "tensor", "nc_matmul", (), (), None, shared))
        elif k % 3 == 1:
            instrs.append(Instruction(k, 0, "tensor", "nc_matmul", (), (), None, own))
        else:
            instrs.append(Instruction(k, 0, "vector", "tensor_copy", (), (), None, shared))
    instrs.append(Instruction(12, 0, "dma", "dma_copy", (), (), None, {}))
    instrs.append(Instruction(13, 0, "sync", "sync_op", (), (), None, {}))
    return Program(chip="trn2", instructions=instrs)


def test_a_dict_shared_across_opcodes_is_priced_one_by_one():
    program = _mixed_program()
    ls = _ListScheduler(program, load_chip("trn2"), "asap", 64)
    assert ls.est.tolist() == [ls._cost_of(ins) for ins in ls.instrs]
    group, results = priced(program, ls.cost).matmul
    kept = [i for i in range(len(ls.instrs)) if group[i] >= 0]
    assert kept == [k for k in range(12) if k % 3 == 1]  # the shared dict's are not
    assert all(results[group[i]] == ls.cost.matmul(ls.instrs[i]) for i in kept)


@pytest.mark.parametrize("variant", ["hoisted", "block_mnk"])
def test_timing_takes_the_list_schedulers_matmul_results(variant):
    program = tutorial_run(variant, "trn2").program
    chip = load_chip("trn2")
    handed = columns._results(_Scheduler(program, chip, program.issue, {}))
    assert priced(program, cost_model(chip)).matmul is not None
    _fresh(program)  # (the timing scheduler prices every matmul itself)
    alone = columns._results(_Scheduler(program, chip, program.issue, {}))
    assert priced(program, cost_model(chip)).matmul is None
    assert handed[1] == alone[1] and handed[2].tolist() == alone[2].tolist()
    assert identities(handed[0]).tolist() == identities(alone[0]).tolist()


def test_dma_prices_with_the_callers_numbers():
    program = _fresh(tutorial_run("hoisted", "trn2").program)
    model = cost_model(load_chip("trn2"))
    alone = dma_costs(program, model)
    _fresh(program)
    instrs = program.instructions
    attrs = identities([ins.attrs for ins in instrs])
    given = dma_costs(program, model, None, (cores_and_opcodes(program)[1], attrs))
    assert given == alone and any(x is not None for x in given)


def test_cores_and_opcodes_against_the_record():
    rng = np.random.default_rng(0)
    ops = ["memset", "nc_matmul", "tensor_copy", "core_barrier"]
    instrs = [Instruction(k, int(rng.integers(0, 3)), "vector",
                          "".join(str(rng.choice(ops))),  # (equal strings, other objects)
                          (), (), None, {}) for k in range(200)]
    program = Program(chip="trn2", instructions=instrs)
    cores, code, names = cores_and_opcodes(program)
    assert cores.tolist() == [ins.core for ins in instrs]
    assert [names[c] for c in code.tolist()] == [ins.opcode for ins in instrs]
    assert cores_and_opcodes(program)[0] is cores  # (kept on the program)
    for picked in (("memset",), ("nc_matmul", "core_barrier"), ("absent",)):
        assert with_opcode(program, *picked).tolist() == [
            k for k, ins in enumerate(instrs) if ins.opcode in picked]
    program.instructions = instrs[:-1]  # another list: made again
    assert cores_and_opcodes(program)[0].tolist() == [ins.core for ins in instrs[:-1]]
