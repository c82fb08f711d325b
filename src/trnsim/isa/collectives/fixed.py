"""The collectives of fixed sizes: all_reduce, all_gather, reduce_scatter, all_to_all,
collective_permute, and rank_id."""
from __future__ import annotations

import numpy as np

from ...machine.runtime import active_run
from ..base import Instr, describe
from .common import (ENGINE, HBM_ONLY, HBM_OR_SBUF, begin, exchange, group_signature,
                     last_handle, my_group, nbytes, position, read_all, reduce_op,
                     reduce_values, shapes, world_of, write)


def all_reduce(srcs, dsts, replica_group, op, priority=None, name=None):
    """Every rank of each rank-list gets op-reduced sources of all its members."""
    with Instr("all_reduce", None, default=ENGINE, name=name) as ins:
        srcs, dsts = begin(ins, srcs, dsts, HBM_OR_SBUF, priority)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            ins.require(s.shape == d.shape, f"dsts[{k}] {describe(d)} must have the shape "
                        f"of srcs[{k}] {describe(s)}")
        opn = reduce_op(ins, op)
        group = my_group(ins, replica_group)
        got = exchange(ins, "all_reduce", group, read_all(ins, srcs),
                       group_signature(replica_group, opn, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), op=opn)
        for k, d in enumerate(dsts):
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k: reduce_values(opn, [got[r][k] for r in group], d.dtype)))
    return last_handle()


def all_gather(srcs, dsts, replica_group, collective_dim, priority=None, name=None):
    """dsts = the members' sources concatenated along collective_dim in rank-list order."""
    with Instr("all_gather", None, default=ENGINE, name=name) as ins:
        srcs, dsts = begin(ins, srcs, dsts, HBM_OR_SBUF, priority)
        group = my_group(ins, replica_group)
        dim = _collective_dim(ins, collective_dim, srcs, allow_free=True)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            want = list(s.shape)
            want[dim] *= len(group)
            ins.require(list(d.shape) == want, f"dsts[{k}] {describe(d)} must have shape "
                        f"{want}: srcs[{k}] {describe(s)} times the {len(group)} ranks of "
                        f"its rank list along collective_dim={dim}")
        got = exchange(ins, "all_gather", group, read_all(ins, srcs),
                       group_signature(replica_group, dim, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), collective_dim=dim)
        for k, d in enumerate(dsts):
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k: np.concatenate([got[r][k] for r in group], axis=dim)))
    return last_handle()


def reduce_scatter(srcs, dsts, replica_group, collective_dim, op, priority=None, name=None):
    """Rank i of a rank list gets block i (along dim 0) of the op-reduced sources."""
    with Instr("reduce_scatter", None, default=ENGINE, name=name) as ins:
        srcs, dsts = begin(ins, srcs, dsts, HBM_OR_SBUF, priority)
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
                       group_signature(replica_group, dim, opn, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), op=opn, collective_dim=dim)
        me = position(group)
        for k, d in enumerate(dsts):
            rows = slice(me * d.shape[0], (me + 1) * d.shape[0])
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k, rows=rows: reduce_values(
                      opn, [got[r][k][rows] for r in group], d.dtype)))
    return last_handle()


def all_to_all(srcs, dsts, replica_group, collective_dim, priority=None, name=None):
    """Block j (along dim 0) of a rank's source goes to member j, landing in block i of
    its destination, i being the sender's place in the rank list (a distributed
    transpose)."""
    with Instr("all_to_all", None, default=ENGINE, name=name) as ins:
        srcs, dsts = begin(ins, srcs, dsts, HBM_ONLY, priority)
        group = my_group(ins, replica_group)
        dim = _collective_dim(ins, collective_dim, srcs, allow_free=False)
        n = len(group)
        for k, (s, d) in enumerate(zip(srcs, dsts)):
            ins.require(s.shape == d.shape and s.shape[0] % n == 0,
                        f"srcs[{k}] {describe(s)} and dsts[{k}] {describe(d)} must have one "
                        f"shape whose dim 0 splits into {n} blocks (one per rank)")
        got = exchange(ins, "all_to_all", group, read_all(ins, srcs),
                       group_signature(replica_group, dim, shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), collective_dim=dim)
        me = position(group)
        for k, d in enumerate(dsts):
            b = d.shape[0] // n
            write(ins, k, d, None if got[group[0]] is None else
                  (lambda k=k, b=b: np.concatenate(
                      [got[r][k][me * b:(me + 1) * b] for r in group], axis=0)))
    return last_handle()


def collective_permute(srcs, dsts, source_target_pairs, priority=None, name=None):
    """Each (source, target) pair sends the source rank's src to the target rank's dst.
    Ranks in no pair only take part in the rendezvous; a rank that is no pair's target
    keeps its dst as it was (the docs leave it unstated)."""
    with Instr("collective_permute", None, default=ENGINE, name=name) as ins:
        srcs, dsts = begin(ins, srcs, dsts, HBM_ONLY, priority, one=True)
        s, d = srcs[0], dsts[0]
        ins.require(s.shape == d.shape, f"dsts[0] {describe(d)} must have the shape of "
                    f"srcs[0] {describe(s)}")
        pairs = _pairs(ins, source_target_pairs)
        run = active_run()
        group = tuple(sorted({r for p in pairs for r in p}))
        if run.rank not in group:
            ins.attrs.update(collective="collective_permute", group=(run.rank,),
                             group_seq=-1, nbytes=0, pairs=())
            return last_handle()
        got = exchange(ins, "collective_permute", group, read_all(ins, srcs),
                       (tuple(pairs), shapes(srcs)))
        ins.attrs.update(nbytes=nbytes(srcs), pairs=tuple(pairs))
        source = [a for a, b in pairs if b == run.rank]
        if source:
            write(ins, 0, d, None if got[source[0]] is None else
                  (lambda: got[source[0]][0]))
    return last_handle()


def rank_id(name=None):
    """This rank's id in a multi-rank run (0 in a single-rank run), as a register."""
    from ..registers import VirtualRegister
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
    world = world_of(ins)
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
