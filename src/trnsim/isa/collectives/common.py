"""What every collective shares: its replica group, the rendezvous with the other
ranks, operand checks, and the reduction numerics.

Numerics (documented choices; the public docs state no dtype or accumulation rules):
- all_reduce / reduce_scatter / collective_permute_implicit_reduce: floats are reduced
  in fp32 in the replica group's rank order (the DMA engines reduce through fp32) and
  rounded once (RNE) into the destination's dtype; integers in their own dtype with
  wraparound. The hardware's ring accumulates hop by hop in the buffer's dtype, so a
  bf16 all-reduce of more than two ranks may differ from it in the last place.
- Data movement is exact (bytes are copied); src and dst dtypes must be equal.
"""
from __future__ import annotations

import math

import numpy as np

from ...machine.errors import NkiValidationError, UnsupportedError
from ...machine.ranks import Arrival
from ...machine.runtime import active_run
from ...machine.tensor import NkiTensor
from ...numerics.cast import cast
from ..base import Instr, describe
from ..ops import op_name

ENGINE = "cc"
REDUCE_OPS = ("add", "minimum", "maximum")
HBM_ONLY = ("hbm",)
HBM_OR_SBUF = ("hbm", "sbuf")


# -- replica groups ---------------------------------------------------------------
def group_lists(replica_group) -> list[tuple[int, ...]]:
    """The rank-lists of a ReplicaGroup (or a plain list of lists)."""
    lists = getattr(replica_group, "replica_groups", replica_group)
    try:
        return [tuple(int(r) for r in g) for g in lists]
    except TypeError:
        raise NkiValidationError(f"replica_group={replica_group!r} must be a ReplicaGroup of "
                                 "rank lists, e.g. ReplicaGroup([[0, 1, 2, 3]])") from None


def world_of(ins: Instr):
    """The World of the multi-rank run this rank belongs to (a collective fails
    outside one)."""
    world = getattr(active_run(), "world", None)
    if world is None:
        ins.fail("a collective needs several ranks: run the kernel with "
                 "nki.multi_rank_simulate(kernel, world_size=N, per_rank_inputs=...) or "
                 "trnsim.profile_ranks", UnsupportedError)
    return world


def my_group(ins: Instr, replica_group) -> tuple[int, ...]:
    """This rank's rank-list, after checking the replica group partitions the ranks it
    names into disjoint lists of ranks that exist."""
    run = active_run()
    world = world_of(ins)
    lists = group_lists(replica_group)
    shown = [list(g) for g in lists]
    ins.require(lists and all(lists), f"replica_group {shown} must hold non-empty rank lists")
    seen = set()
    for g in lists:
        for r in g:
            ins.require(0 <= r < world.size, f"replica_group {shown} names rank {r}, but the "
                        f"run has world_size={world.size}")
            ins.require(r not in seen, f"replica_group {shown} names rank {r} twice: its "
                        "rank lists must not overlap")
            seen.add(r)
    mine = [g for g in lists if run.rank in g]
    ins.require(mine, f"rank {run.rank} is in no rank list of replica_group {shown}")
    return mine[0]


# -- the rendezvous ------------------------------------------------------------------
def exchange(ins: Instr, kind: str, group: tuple, values, signature: tuple) -> dict:
    """Post this rank's `values` for this collective of `group` and return every member's
    {rank: values}. Records the attrs that pair the members (group, group_seq)."""
    run = active_run()
    world = run.world
    seq = world.next_seq(run.rank, group)
    ins.attrs.update(collective=kind, group=group, group_seq=seq)
    arrival = Arrival(run.rank, values, (kind,) + signature, ins.location,
                      f"{kind}({', '.join(map(str, signature))})")
    slot = world.exchange(group, seq, arrival,
                          f"{kind} #{seq} of replica group {list(group)} at {ins.location}")
    return {r: a.values for r, a in slot.items()}


# -- operands ------------------------------------------------------------------------
def tensors(ins: Instr, role: str, ts, buffers, one: bool = False) -> list[NkiTensor]:
    """The tensors of a srcs/dsts list: all in `buffers`, not mixing HBM and SBUF, and
    (`one`, or anything on SBUF) exactly one."""
    if isinstance(ts, NkiTensor):
        ts = [ts]
    try:
        ts = list(ts)
    except TypeError:
        ins.fail(f"{role} must be a list of tensors, got {type(ts).__name__}")
    ins.require(ts, f"{role} is empty")
    for k, t in enumerate(ts):
        ins.operand(f"{role}[{k}]", t, buffers)
    spaces = {t.space for t in ts}
    ins.require(len(spaces) == 1, f"{role} mixes HBM and SBUF tensors; use one kind")
    if one or "sbuf" in spaces:
        ins.require(len(ts) == 1, f"{role} holds {len(ts)} tensors; "
                    + ("this collective takes one" if one else
                       "several tensors in one collective (coalesced) must be on HBM"))
    return ts


def pair_up(ins: Instr, srcs, dsts) -> None:
    ins.require(len(srcs) == len(dsts), f"srcs has {len(srcs)} tensors and dsts "
                f"{len(dsts)}; each source needs its destination")
    for k, (s, d) in enumerate(zip(srcs, dsts)):
        ins.require(s.dtype == d.dtype, f"srcs[{k}] {describe(s)} and dsts[{k}] "
                    f"{describe(d)} must have the same dtype (collectives move bytes)")


def reduce_op(ins: Instr, op) -> str:
    try:
        name = op_name(op) if op is not None else None
    except TypeError:
        name = None
    ins.require(name in REDUCE_OPS, f"op={op!r}: collectives reduce with nl.add, "
                "nl.minimum or nl.maximum")
    return name


def shapes(ts) -> tuple:
    return tuple((tuple(t.shape), str(t.dtype)) for t in ts)


def nbytes(ts) -> int:
    return sum(t.size * t.dtype.itemsize for t in ts)


# -- numerics ------------------------------------------------------------------------
def reduce_values(name: str, parts: list, dtype) -> np.ndarray:
    """Reduce `parts` (arrays of one dtype, in rank order) the documented way."""
    if np.issubdtype(parts[0].dtype, np.integer):
        acc = parts[0].copy()
        fn = {"add": np.add, "minimum": np.minimum, "maximum": np.maximum}[name]
        for p in parts[1:]:
            fn(acc, p, out=acc, casting="unsafe")
        return acc
    fn = {"add": np.add, "minimum": np.minimum, "maximum": np.maximum}[name]
    acc = parts[0].astype(np.float32)
    for p in parts[1:]:
        fn(acc, p.astype(np.float32), out=acc)
    return cast(acc, dtype, copy=False)


def read_all(ins: Instr, ts, role: str = "srcs") -> list | None:
    vals = [ins.read(f"{role}[{k}]", t) for k, t in enumerate(ts)]
    return None if any(v is None for v in vals) else [v.reshape(t.shape) for v, t in
                                                      zip(vals, ts)]


def write(ins: Instr, k: int, t: NkiTensor, values, role: str = "dsts") -> None:
    ins.write(f"{role}[{k}]", t, values, raw=True)


def elements(t: NkiTensor) -> int:
    return math.prod(t.shape)


def check_priority(ins: Instr, priority) -> None:
    if priority is None:
        return
    ins.require(isinstance(priority, (int, np.integer)) and not isinstance(priority, bool)
                and 0 <= priority <= 3, f"priority={priority!r} must be 0..3 (lower is higher)")
    ins.require_generation(4, "collective priority")
    ins.attrs["priority"] = int(priority)


def group_signature(replica_group, *rest) -> tuple:
    return (tuple(group_lists(replica_group)),) + rest


def begin(ins: Instr, srcs, dsts, buffers, priority, one=False):
    srcs = tensors(ins, "srcs", srcs, buffers, one)
    dsts = tensors(ins, "dsts", dsts, buffers, one)
    pair_up(ins, srcs, dsts)
    check_priority(ins, priority)
    return srcs, dsts


def position(group: tuple) -> int:
    return group.index(active_run().rank)


def last_handle():
    """The NkiInstruction of the collective just recorded (what each returns)."""
    from ..misc import last_instruction
    return last_instruction()
