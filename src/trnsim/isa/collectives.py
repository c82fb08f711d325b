"""Collective communication across ranks (`nki.collectives`): checks, numerics and
record, one place per collective.

A collective runs in a multi-rank run (machine/ranks.py, `nki.multi_rank_simulate`):
every rank of a replica group issues it; each posts its sources to the group's
rendezvous and, once all have, computes its own destinations from everyone's. Every
rank checks its own operands; what must agree across the group (op, shapes, dtypes,
replica group, collective_dim) is compared there, and a mismatch names both ranks'
lines. A rank that never arrives ends the run with a deadlock report.

Numerics (documented choices; the public docs state no dtype or accumulation rules):
- all_reduce / reduce_scatter / collective_permute_implicit_reduce: floats are reduced
  in fp32 in the replica group's rank order (the DMA engines reduce through fp32) and
  rounded once (RNE) into the destination's dtype; integers in their own dtype with
  wraparound. The hardware's ring accumulates hop by hop in the buffer's dtype, so a
  bf16 all-reduce of more than two ranks may differ from it in the last place.
- Data movement is exact (bytes are copied); src and dst dtypes must be equal.

Record: one instruction per collective on the rank's collective-communication track
(engine "cc": the CC cores that drive the DMA rings), reading every source and writing
every destination, with attrs the timing model reads: `collective` (the kind),
`group` (the rank's replica sub-group, in order), `group_seq` (which collective of
that group this is: the same on every member), `nbytes` (what the fabric model's plan
takes, see trnsim.fabric.algorithms) and, for all_to_all_v, `send_bytes` (per peer).
"""
from __future__ import annotations

import math

import numpy as np

from ..machine.errors import NkiValidationError, UnsupportedError
from ..machine.ranks import Arrival
from ..machine.runtime import active_run
from ..machine.tensor import NkiTensor
from ..numerics.cast import cast
from .base import Instr, describe
from .ops import op_name

ENGINE = "cc"
REDUCE_OPS = ("add", "minimum", "maximum")
_HBM = ("hbm",)
_HBM_OR_SBUF = ("hbm", "sbuf")


# -- replica groups ---------------------------------------------------------------
def group_lists(replica_group) -> list[tuple[int, ...]]:
    """The rank-lists of a ReplicaGroup (or a plain list of lists)."""
    lists = getattr(replica_group, "replica_groups", replica_group)
    try:
        return [tuple(int(r) for r in g) for g in lists]
    except TypeError:
        raise NkiValidationError(f"replica_group={replica_group!r} must be a ReplicaGroup of "
                                 "rank lists, e.g. ReplicaGroup([[0, 1, 2, 3]])") from None


def my_group(ins: Instr, replica_group) -> tuple[int, ...]:
    """This rank's rank-list, after checking the replica group partitions the ranks it
    names into disjoint lists of ranks that exist."""
    run = active_run()
    world = getattr(run, "world", None)
    if world is None:
        ins.fail("a collective needs several ranks: run the kernel with "
                 "nki.multi_rank_simulate(kernel, world_size=N, per_rank_inputs=...) or "
                 "trnsim.profile_ranks", UnsupportedError)
    lists = group_lists(replica_group)
    ins.require(lists and all(lists), f"replica_group {lists} must hold non-empty rank lists")
    seen = set()
    for g in lists:
        for r in g:
            ins.require(0 <= r < world.size, f"replica_group {lists} names rank {r}, but the "
                        f"run has world_size={world.size}")
            ins.require(r not in seen, f"replica_group {lists} names rank {r} twice: its "
                        "rank lists must not overlap")
            seen.add(r)
    mine = [g for g in lists if run.rank in g]
    ins.require(mine, f"rank {run.rank} is in no rank list of replica_group {lists}")
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
    name = op_name(op) if op is not None else None
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


def read_all(ins: Instr, ts) -> list | None:
    vals = [ins.read(f"srcs[{k}]", t) for k, t in enumerate(ts)]
    return None if any(v is None for v in vals) else [v.reshape(t.shape) for v, t in
                                                      zip(vals, ts)]


def write(ins: Instr, k: int, t: NkiTensor, values) -> None:
    ins.write(f"dsts[{k}]", t, values, raw=True)


def elements(t: NkiTensor) -> int:
    return math.prod(t.shape)


def check_priority(ins: Instr, priority) -> None:
    if priority is None:
        return
    ins.require(isinstance(priority, (int, np.integer)) and not isinstance(priority, bool)
                and 0 <= priority <= 3, f"priority={priority!r} must be 0..3 (lower is higher)")
    ins.require_generation(4, "collective priority")
    ins.attrs["priority"] = int(priority)


def _signature(replica_group, *rest) -> tuple:
    return (tuple(group_lists(replica_group)),) + rest


def _begin(ins: Instr, srcs, dsts, buffers, priority, one=False):
    srcs = tensors(ins, "srcs", srcs, buffers, one)
    dsts = tensors(ins, "dsts", dsts, buffers, one)
    pair_up(ins, srcs, dsts)
    check_priority(ins, priority)
    return srcs, dsts


def _position(group: tuple) -> int:
    return group.index(active_run().rank)


# -- the collectives -------------------------------------------------------------------
def all_reduce(srcs, dsts, replica_group, op, priority=None, name=None):
    """Every rank of each rank-list gets op-reduced sources of all its members."""
    with Instr("all_reduce", None, default=ENGINE, name=name) as ins:
        srcs, dsts = _begin(ins, srcs, dsts, _HBM_OR_SBUF, priority)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            ins.require(s.shape == d.shape, f"dsts[{k}] {describe(d)} must have the shape "
                        f"of srcs[{k}] {describe(s)}")
        opn = reduce_op(ins, op)
        group = my_group(ins, replica_group)
        got = exchange(ins, "all_reduce", group, read_all(ins, srcs),
                       _signature(replica_group, opn, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), op=opn)
        for k, d in enumerate(dsts):
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k: reduce_values(opn, [got[r][k] for r in group], d.dtype)))
    return _handle()


def all_gather(srcs, dsts, replica_group, collective_dim, priority=None, name=None):
    """dsts = the members' sources concatenated along collective_dim in rank-list order."""
    with Instr("all_gather", None, default=ENGINE, name=name) as ins:
        srcs, dsts = _begin(ins, srcs, dsts, _HBM_OR_SBUF, priority)
        group = my_group(ins, replica_group)
        dim = _collective_dim(ins, collective_dim, srcs, allow_free=True)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            want = list(s.shape)
            want[dim] *= len(group)
            ins.require(list(d.shape) == want, f"dsts[{k}] {describe(d)} must have shape "
                        f"{want}: srcs[{k}] {describe(s)} times the {len(group)} ranks of "
                        f"its rank list along collective_dim={dim}")
        got = exchange(ins, "all_gather", group, read_all(ins, srcs),
                       _signature(replica_group, dim, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), collective_dim=dim)
        for k, d in enumerate(dsts):
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k: np.concatenate([got[r][k] for r in group], axis=dim)))
    return _handle()


def reduce_scatter(srcs, dsts, replica_group, collective_dim, op, priority=None, name=None):
    """Rank i of a rank list gets block i (along dim 0) of the op-reduced sources."""
    with Instr("reduce_scatter", None, default=ENGINE, name=name) as ins:
        srcs, dsts = _begin(ins, srcs, dsts, _HBM_OR_SBUF, priority)
        group = my_group(ins, replica_group)
        dim = _collective_dim(ins, collective_dim, srcs, allow_free=False)
        n = len(group)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            want = [s.shape[0] // n] + list(s.shape[1:])
            ins.require(s.shape[0] % n == 0 and list(d.shape) == want,
                        f"dsts[{k}] {describe(d)} must be srcs[{k}] {describe(s)} split "
                        f"{n} ways along dim 0 (shape {want})")
        opn = reduce_op(ins, op)
        got = exchange(ins, "reduce_scatter", group, read_all(ins, srcs),
                       _signature(replica_group, dim, opn, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), op=opn, collective_dim=dim)
        me = _position(group)
        for k, d in enumerate(dsts):
            rows = slice(me * d.shape[0], (me + 1) * d.shape[0])
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k, rows=rows: reduce_values(
                      opn, [got[r][k][rows] for r in group], d.dtype)))
    return _handle()


def all_to_all(srcs, dsts, replica_group, collective_dim, priority=None, name=None):
    """Block j (along dim 0) of a rank's source goes to member j, landing in block i of
    its destination, i being the sender's place in the rank list (a distributed
    transpose)."""
    with Instr("all_to_all", None, default=ENGINE, name=name) as ins:
        srcs, dsts = _begin(ins, srcs, dsts, _HBM, priority)
        group = my_group(ins, replica_group)
        dim = _collective_dim(ins, collective_dim, srcs, allow_free=False)
        n = len(group)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            ins.require(s.shape == d.shape and s.shape[0] % n == 0,
                        f"srcs[{k}] {describe(s)} and dsts[{k}] {describe(d)} must have one "
                        f"shape whose dim 0 splits into {n} blocks (one per rank)")
        got = exchange(ins, "all_to_all", group, read_all(ins, srcs),
                       _signature(replica_group, dim, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), collective_dim=dim)
        me = _position(group)
        for k, d in enumerate(dsts):
            b = d.shape[0] // n
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k, b=b: np.concatenate(
                      [got[r][k][me * b:(me + 1) * b] for r in group], axis=0)))
    return _handle()


def collective_permute(srcs, dsts, source_target_pairs, priority=None, name=None):
    """Each (source, target) pair sends the source rank's src to the target rank's dst.
    Ranks in no pair only take part in the rendezvous; a rank that is no pair's target
    keeps its dst as it was (the docs leave it unstated)."""
    with Instr("collective_permute", None, default=ENGINE, name=name) as ins:
        srcs, dsts = _begin(ins, srcs, dsts, _HBM, priority, one=True)
        s, d = srcs[0], dsts[0]
        ins.require(s.shape == d.shape, f"dsts[0] {describe(d)} must have the shape of "
                    f"srcs[0] {describe(s)}")
        pairs = _pairs(ins, source_target_pairs)
        run = active_run()
        group = tuple(sorted({r for p in pairs for r in p}))
        if run.rank not in group:
            ins.attrs.update(collective="collective_permute", group=(run.rank,),
                             group_seq=-1, nbytes=0, pairs=())
            return _handle()
        got = exchange(ins, "collective_permute", group, read_all(ins, srcs),
                       (tuple(pairs), shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), pairs=tuple(pairs))
        source = [a for a, b in pairs if b == run.rank]
        if source:
            write(ins, 0, d, None if got[source[0]] is None else
                  (lambda: got[source[0]][0]))
    return _handle()


def rank_id(name=None):
    """This rank's id in a multi-rank run (0 in a single-rank run), as a register."""
    from .registers import VirtualRegister
    with Instr("rank_id", None, default="sync", name=name) as ins:
        reg = VirtualRegister(getattr(active_run(), "rank", 0))
        ins.attrs["reg_writes"] = [reg.name]
    return reg


def _pairs(ins: Instr, source_target_pairs) -> list[tuple[int, int]]:
    try:
        pairs = [(int(a), int(b)) for a, b in source_target_pairs]
    except (TypeError, ValueError):
        ins.fail(f"source_target_pairs={source_target_pairs!r} must be (source, target) "
                 "rank pairs")
    world = getattr(active_run(), "world", None)
    if world is None:
        ins.fail("a collective needs several ranks: run the kernel with "
                 "nki.multi_rank_simulate(kernel, world_size=N, per_rank_inputs=...)",
                 UnsupportedError)
    for a, b in pairs:
        ins.require(0 <= a < world.size and 0 <= b < world.size,
                    f"source_target_pairs names rank {a if not 0 <= a < world.size else b}; "
                    f"the run has world_size={world.size}")
    for k, what in ((0, "source"), (1, "target")):
        ranks = [p[k] for p in pairs]
        dup = {r for r in ranks if ranks.count(r) > 1}
        ins.require(not dup, f"rank {min(dup) if dup else ''} is the {what} of more than "
                    f"one pair in source_target_pairs={pairs}")
    return pairs


def _collective_dim(ins: Instr, collective_dim, srcs, allow_free: bool) -> int:
    ok = isinstance(collective_dim, (int, np.integer)) and not isinstance(collective_dim,
                                                                          bool)
    dim = int(collective_dim) if ok else -1
    if srcs[0].space == "sbuf" and allow_free:
        ins.require(dim in (0, 1) and srcs[0].ndim == 2,
                    f"collective_dim={collective_dim!r}: SBUF collectives take 2-D tensors "
                    "and collective_dim 0 or 1")
    else:
        ins.require(dim == 0, f"collective_dim={collective_dim!r}: only 0 is supported "
                    f"for {'SBUF' if srcs[0].space == 'sbuf' else 'HBM'} tensors here")
    return dim


def _handle():
    from .misc import last_instruction
    return last_instruction()
