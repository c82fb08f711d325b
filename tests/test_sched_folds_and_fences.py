"""Set-up steps of the two schedulers against straightforward references: the folded
PSUM memsets found by the compiled walk (trnsim/timing/compiled_fold.py) against the
Python walk (timing/scheduler.py `_folded_memsets`), and the list scheduler's fence
segments (compiler/schedule.py `_ListScheduler._fences`) against a loop over the
instructions."""
import numpy as np
import pytest

from kernel_helpers import tutorial_run
from trnsim.compiler.schedule import _ListScheduler
from trnsim.machine.access import Access
from trnsim.machine.record import Instruction, Program
from trnsim.timing.scheduler import _MATMULS, _folded_memsets


def _psum(mode, core, p_lo, p_hi, lo, hi, indirect=False):
    role = "dst" if mode == "w" else "src"
    return Access(role, mode, "psum", core, "", "float32", (p_hi - p_lo, (hi - lo) // 4),
                  ((512, p_hi - p_lo), (1, (hi - lo) // 4)), 0, p_lo, p_hi, lo, hi,
                  (hi - lo) // 4, (p_hi - p_lo) * (hi - lo), hi - lo, indirect)


def _random_program(rng, n) -> Program:
    """Memsets (of 0 mostly; some of 1, of a string, indirect, of two writes) and
    matmuls writing PSUM boxes that cover, overlap or miss each other, other
    instructions reading them, on two cores; memsets of one box share their attrs, as
    loop copies do."""
    boxes = [(0, 128, 0, 2048), (0, 64, 0, 2048), (64, 128, 0, 1024), (0, 128, 1024, 2048),
             (0, 128, 0, 0), (32, 96, 512, 1536)]
    zero = [{"value": 0.0}, {"value": 0}, {"value": 1.0}, {"value": "x"}, {}]
    instrs = []
    for i in range(n):
        core = int(rng.integers(0, 2))
        box = boxes[int(rng.integers(0, len(boxes)))]
        kind = rng.choice(["memset", "matmul", "read", "other"], p=[0.35, 0.35, 0.2, 0.1])
        if kind == "memset":
            attrs = zero[int(rng.integers(0, len(zero)))]
            writes = (_psum("w", core, *box, indirect=bool(rng.random() < 0.1)),)
            if rng.random() < 0.05:
                writes += (_psum("w", core, *boxes[0]),)
            instrs.append(Instruction(i, core, "vector", "memset", (), writes, None, attrs))
        elif kind == "matmul":
            instrs.append(Instruction(i, core, "tensor", str(rng.choice(_MATMULS)), (),
                                      (_psum("w", core, *box),), None, {}))
        elif kind == "read":
            instrs.append(Instruction(i, core, "vector", "tensor_copy",
                                      (_psum("r", core, *box),), (), None, {}))
        else:
            instrs.append(Instruction(i, core, "scalar", "activation", (),
                                      (_psum("w", core, *box),), None, {}))
    return Program(chip="trn2", instructions=instrs)


def _both(program):
    pytest.importorskip("numba")
    from trnsim.timing.compiled_fold import folded_memsets
    instrs = program.instructions
    memsets = [i for i, ins in enumerate(instrs) if ins.opcode == "memset"]
    matmuls = [i for i, ins in enumerate(instrs) if ins.opcode in _MATMULS]
    return (list(_folded_memsets(instrs, memsets).items()),
            list(folded_memsets(program, memsets, matmuls).items()))


@pytest.mark.parametrize("seed", range(6))
def test_compiled_fold_against_python_walk(seed):
    ref, got = _both(_random_program(np.random.default_rng(seed), 1000))
    assert got == ref and len(ref) > 5


@pytest.mark.parametrize("variant", ["tiled", "block_mnk"])
def test_compiled_fold_on_the_matmul_tutorial(variant):
    ref, got = _both(tutorial_run(variant, "trn2").program)
    assert got == ref and len(ref) > 0


def _reference_fences(instrs, fences):
    """(seg, left, cur_seg, fenced) as a walk over the instructions gives them."""
    cuts: dict = {}
    for core, at in fences:
        cuts.setdefault(core, set()).add(at)
    for ins in instrs:
        if ins.opcode in ("core_barrier", "sendrecv"):
            cuts.setdefault(ins.core, set()).update((ins.index, ins.index + 1))
    seg, left, counter = [0] * len(instrs), {}, {}
    if not cuts:
        return seg, left, {}, False
    for ins in instrs:
        c = ins.core
        k = counter.get(c, 0)
        if ins.index in cuts.get(c, ()) and (c, k) in left:
            k += 1
        counter[c] = k
        seg[ins.index] = k
        left[(c, k)] = left.get((c, k), 0) + 1
    return seg, left, {c: 0 for c in counter}, True


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_fence_segments_against_a_walk(seed, fast):
    rng = np.random.default_rng(seed)
    n = 300
    ops = ["op"] * 20 + ["core_barrier", "sendrecv"]
    instrs = [Instruction(i, int(rng.integers(0, 3)), "vector",
                          str(rng.choice(ops)) if seed else "op", (), (), None, {})
              for i in range(n)]
    fences = [(int(rng.integers(0, 4)), int(rng.integers(0, 3 * n)))
              for _ in range(int(rng.integers(0, 30)))]
    ls = _ListScheduler.__new__(_ListScheduler)
    ls.instrs, ls.cores = instrs, np.array([ins.core for ins in instrs], np.int64)
    ls.program = Program(chip="trn2", instructions=instrs)
    ls.compiled = fast  # (the cores numbered by the hash table or by np.unique)
    ls._fences(fences)
    seg, left, cur_seg, fenced = _reference_fences(instrs, fences)
    assert ls.fenced == fenced
    # (the segments: an array where fenced, none read otherwise)
    assert ls.seg is None if not fenced else ls.seg.tolist() == seg
    assert (ls.left, ls.cur_seg) == (left, cur_seg)
