"""`nki.collectives`: collective communication across ranks.

Run a kernel that uses them on several ranks with `nki.multi_rank_simulate(kernel,
world_size=N, per_rank_inputs=...)` (or `trnsim.profile_ranks` for its timing). The
checks, numerics and record of each collective, and the choices where the public docs
are silent, are in trnsim/isa/collectives/.

NKI 0.7 splits the variable-length collectives into prepare + trigger
(`all_to_all_v_prepare` / `all_to_all_v_trigger`, `all_gather_v_prepare` /
`all_gather_v_trigger`): prepare takes all_to_all_v's / all_gather_v's arguments and
returns the NkiInstruction that its one trigger takes.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..isa import collectives as _isa
from ..machine.errors import NkiValidationError
from ..machine.tensor import NKIObject, NkiTensor


class rg_partition_op(enum.Enum):  # noqa: N801 - the public name
    """How `ReplicaGroup.from_partition_op` maps a rank to its rank-list id."""
    div = "div"
    mod = "mod"
    bitwise_and = "bitwise_and"


_PARTITION = {
    rg_partition_op.div: lambda rank, operand: rank // operand,
    rg_partition_op.mod: lambda rank, operand: rank % operand,
    rg_partition_op.bitwise_and: lambda rank, operand: rank & operand,
}


@dataclass
class ReplicaGroup(NKIObject):
    """The set of ranks a collective runs on, as a list of rank lists, e.g.
    `ReplicaGroup([[0, 1, 2, 3], [4, 5, 6, 7]])`: it runs independently within each
    list; the lists must not overlap. The order of a list is its chunk and ring order."""

    replica_groups: list = field(default_factory=list)

    @staticmethod
    def from_partition_op(world_size: int, op: rg_partition_op,
                          operand: int) -> "ReplicaGroup":
        """Ranks 0..world_size-1 sharing op(rank, operand) form one rank list (lists in
        ascending order of that id, ranks ascending): `mod, 4` on 8 ranks gives
        [[0, 4], [1, 5], [2, 6], [3, 7]]; `div, 4` [[0..3], [4..7]]; `bitwise_and, 0`
        one list of all."""
        fn = _PARTITION.get(_partition_op(op))
        if fn is None:
            raise NkiValidationError(f"op={op!r} must be an rg_partition_op (div, mod or "
                                     "bitwise_and)", op="from_partition_op")
        for what, v, low in (("world_size", world_size, 1), ("operand", operand, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise NkiValidationError(f"{what}={v!r} must be an int >= {low}",
                                         op="from_partition_op")
        if operand == 0 and fn is not _PARTITION[rg_partition_op.bitwise_and]:
            raise NkiValidationError(f"operand=0 with {_partition_op(op).name} divides by "
                                     "zero", op="from_partition_op")
        lists: dict = {}
        for rank in range(world_size):
            lists.setdefault(fn(rank, operand), []).append(rank)
        return ReplicaGroup([lists[k] for k in sorted(lists)])


def _partition_op(op):
    if isinstance(op, rg_partition_op):
        return op
    try:
        return rg_partition_op(getattr(op, "name", op))
    except ValueError:
        return None


def all_reduce(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup, op,
               priority: Optional[int] = None, name: Optional[str] = None):
    return _isa.all_reduce(srcs, dsts, replica_group, op, priority=priority, name=name)


def all_gather(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
               collective_dim: int, priority: Optional[int] = None,
               name: Optional[str] = None):
    return _isa.all_gather(srcs, dsts, replica_group, collective_dim, priority=priority, name=name)


def all_gather_v(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                 metadata_tensor: NkiTensor, recv_counts_known: bool = False,
                 has_rdispls: bool = False, priority: Optional[int] = None,
                 name: Optional[str] = None):
    return _isa.all_gather_v(srcs, dsts, replica_group, metadata_tensor, recv_counts_known,
                             has_rdispls, priority=priority, name=name)


def reduce_scatter(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                   collective_dim: int, op, priority: Optional[int] = None,
                   name: Optional[str] = None):
    return _isa.reduce_scatter(srcs, dsts, replica_group, collective_dim, op, priority=priority, name=name)


def all_to_all(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
               collective_dim: int, priority: Optional[int] = None,
               name: Optional[str] = None):
    return _isa.all_to_all(srcs, dsts, replica_group, collective_dim, priority=priority, name=name)


def all_to_all_v(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                 metadata_tensor: NkiTensor, recv_counts_known: bool = False,
                 has_rdispls: bool = False, priority: Optional[int] = None,
                 name: Optional[str] = None):
    return _isa.all_to_all_v(srcs, dsts, replica_group, metadata_tensor, recv_counts_known,
                             has_rdispls, priority=priority, name=name)


def all_to_all_v_prepare(srcs: List, dsts: List, replica_group: ReplicaGroup,
                         metadata_tensor, recv_counts_known: bool = False,
                         has_rdispls: bool = False, priority: Optional[int] = None,
                         name: Optional[str] = None):
    """Begin a split all_to_all_v (NKI 0.7): check the operands and read the metadata
    (it must be valid now; srcs need not be filled yet), returning the NkiInstruction
    for the paired all_to_all_v_trigger."""
    return _isa.prepare("all_to_all_v", srcs, dsts, replica_group, metadata_tensor,
                        recv_counts_known, has_rdispls, priority=priority, name=name)


def all_to_all_v_trigger(prepare_instr, name: Optional[str] = None):
    """Complete a split all_to_all_v (NKI 0.7): `prepare_instr` is what the paired
    all_to_all_v_prepare returned; it supplies every other operand. Each prepare takes
    exactly one trigger, with no other prepare in between."""
    _check_prepare(prepare_instr, "all_to_all_v_trigger")
    return _isa.trigger("all_to_all_v", prepare_instr, name=name)


def all_gather_v_prepare(srcs: List, dsts: List, replica_group: ReplicaGroup,
                         metadata_tensor, recv_counts_known: bool = False,
                         has_rdispls: bool = False, priority: Optional[int] = None,
                         name: Optional[str] = None):
    """Begin a split all_gather_v (NKI 0.7): check the operands and read the metadata
    (it must be valid now; srcs need not be filled yet), returning the NkiInstruction
    for the paired all_gather_v_trigger."""
    return _isa.prepare("all_gather_v", srcs, dsts, replica_group, metadata_tensor,
                        recv_counts_known, has_rdispls, priority=priority, name=name)


def all_gather_v_trigger(prepare_instr, name: Optional[str] = None):
    """Complete a split all_gather_v (NKI 0.7): `prepare_instr` is what the paired
    all_gather_v_prepare returned; it supplies every other operand. Each prepare takes
    exactly one trigger, with no other prepare in between."""
    _check_prepare(prepare_instr, "all_gather_v_trigger")
    return _isa.trigger("all_gather_v", prepare_instr, name=name)


def _check_prepare(prepare_instr, api: str):
    from ..isa.misc import NkiInstruction
    if not isinstance(prepare_instr, NkiInstruction):
        raise NkiValidationError(
            f"prepare_instr must be the NkiInstruction returned by "
            f"the paired {api.replace('_trigger', '_prepare')}, got "
            f"{type(prepare_instr).__name__}", op=api)


def collective_permute(srcs: List[NkiTensor], dsts: List[NkiTensor],
                       source_target_pairs: List[Tuple[int, int]],
                       priority: Optional[int] = None, name: Optional[str] = None):
    return _isa.collective_permute(srcs, dsts, source_target_pairs, priority=priority, name=name)


def collective_permute_implicit(srcs_by_channel: List[List[NkiTensor]],
                                dsts_by_channel: List[List[NkiTensor]],
                                replica_group: ReplicaGroup, channel_ids: List[int] = [0],  # noqa: B006 - public default
                                priority: Optional[int] = None,
                                name: Optional[str] = None):
    """One ring step: each rank sends srcs_by_channel[c][0] to the next rank of its
    rank list and receives the previous rank's into dsts_by_channel[c][0]."""
    return _isa.collective_permute_implicit(srcs_by_channel, dsts_by_channel, replica_group,
                                            channel_ids, priority=priority, name=name)


def collective_permute_implicit_reduce(srcs0_by_channel: List[List[NkiTensor]],
                                       srcs1_by_channel: List[List[NkiTensor]],
                                       dsts_by_channel: List[List[NkiTensor]],
                                       replica_group: ReplicaGroup, op,
                                       channel_ids: List[int] = [0],  # noqa: B006 - public default
                                       priority: Optional[int] = None,
                                       name: Optional[str] = None):
    """One ring step of op(srcs0_by_channel[c][0], srcs1_by_channel[c][0]): sent to the
    next rank of the rank list, the previous rank's received into dsts_by_channel[c][0]."""
    return _isa.collective_permute_implicit_reduce(
        srcs0_by_channel, srcs1_by_channel, dsts_by_channel, replica_group, op, channel_ids,
        priority=priority, name=name)


def collective_permute_implicit_current_processing_rank_id(iteration_id: int,
                                                           replica_group: ReplicaGroup,
                                                           channel_id: int = 0,
                                                           name: Optional[str] = None):
    """The rank whose data is processed at ring step `iteration_id` (step 0: this rank;
    step k: the rank k places before it in its rank list), as a VirtualRegister."""
    return _isa.current_processing_rank_id(iteration_id, replica_group, channel_id, name=name)


def rank_id(name: Optional[str] = None):
    """The current rank (rank 0 outside a multi-rank run), as a VirtualRegister."""
    return _isa.rank_id(name=name)


__all__ = ["ReplicaGroup", "rg_partition_op", "all_reduce", "all_gather", "all_gather_v",
           "reduce_scatter", "all_to_all", "all_to_all_v", "all_to_all_v_prepare",
           "all_to_all_v_trigger", "all_gather_v_prepare", "all_gather_v_trigger",
           "collective_permute", "collective_permute_implicit",
           "collective_permute_implicit_reduce",
           "collective_permute_implicit_current_processing_rank_id", "rank_id"]
