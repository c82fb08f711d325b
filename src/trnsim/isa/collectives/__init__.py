"""Collective communication across ranks (`nki.collectives`): checks, numerics and
record, one place per collective.

A collective runs in a multi-rank run (machine/ranks.py, `nki.multi_rank_simulate`):
every rank of a replica group issues it; each posts its sources to the group's
rendezvous and, once all have, computes its own destinations from everyone's. Every
rank checks its own operands; what must agree across the group (op, shapes, dtypes,
replica group, collective_dim) is compared there, and a mismatch names both ranks'
lines. A rank that never arrives ends the run with a deadlock report.

The family is split by kind: common.py (replica groups, the rendezvous, operand
checks, the reduction numerics), fixed.py (all_reduce, all_gather, reduce_scatter,
all_to_all, collective_permute, rank_id), variable.py (all_to_all_v, all_gather_v and
their prepare/trigger splits), ring.py (the implicit ring permutes).

Record: one instruction per collective on the rank's collective-communication track
(engine "cc": the CC cores that drive the DMA rings), reading every source and writing
every destination, with attrs the timing model reads: `collective` (the kind),
`group` (the rank's replica sub-group, in order), `group_seq` (which collective of
that group this is: the same on every member), `nbytes` (what the fabric model's plan
takes, see trnsim.fabric.algorithms: the bytes this rank contributes), and
- all_to_all_v / all_gather_v: `send_bytes` (a tuple: the bytes this rank sends to each
  member of its group, in group order, itself included; `nbytes` is their sum for
  all_to_all_v, the one chunk's bytes for all_gather_v); in a timing-only run
  (numerics=False) the metadata values are unknown, so equal slots are assumed (dst
  elements / group size to each member) and `counts_assumed` is True;
- collective_permute and the implicit ring: `pairs` (the (source, target) rank pairs
  of the step); the ring also `channels` (how many).
A prepare is recorded on "cc" too, with `prepare` (the kind) and `group` but no
`group_seq`: it moves nothing across the fabric.
"""
from .fixed import (all_gather, all_reduce, all_to_all, collective_permute,
                    rank_id, reduce_scatter)
from .ring import (collective_permute_implicit,
                   collective_permute_implicit_reduce, current_processing_rank_id)
from .variable import all_gather_v, all_to_all_v, prepare, trigger

__all__ = ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "collective_permute",
           "rank_id", "all_to_all_v", "all_gather_v", "prepare", "trigger",
           "collective_permute_implicit", "collective_permute_implicit_reduce",
           "current_processing_rank_id"]
