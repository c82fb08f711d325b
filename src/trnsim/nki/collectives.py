"""`nki.collectives`: collective communication across ranks.

Run a kernel that uses them on several ranks with `nki.multi_rank_simulate(kernel,
world_size=N, per_rank_inputs=...)` (or `trnsim.profile_ranks` for its timing). The
checks, numerics and record of each collective are in trnsim/isa/collectives.py.

NKI 0.7 splits the variable-length collectives into prepare + trigger
(`all_to_all_v_prepare` / `all_to_all_v_trigger`, `all_gather_v_prepare` /
`all_gather_v_trigger`): prepare takes all_to_all_v's / all_gather_v's arguments and
returns the NkiInstruction that its one trigger takes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..isa import collectives as _isa
from ..machine.errors import UnsupportedError
from ..machine.tensor import NKIObject, NkiTensor


@dataclass
class ReplicaGroup(NKIObject):
    """Groups of ranks taking part in a collective, e.g. `ReplicaGroup([[0, 1, 2, 3]])`;
    the sub-groups must not overlap."""

    replica_groups: list = field(default_factory=list)


def _unsupported(api: str):
    raise UnsupportedError(f"nki.collectives.{api} is not simulated yet: multi-chip "
                           "collectives are a later trnsim milestone", op=api)


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
                 name: Optional[str] = None) -> None:
    _unsupported("all_gather_v")


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
                 name: Optional[str] = None) -> None:
    _unsupported("all_to_all_v")


def all_to_all_v_prepare(srcs: List, dsts: List, replica_group: ReplicaGroup,
                         metadata_tensor, recv_counts_known: bool = False,
                         has_rdispls: bool = False, priority: Optional[int] = None,
                         name: Optional[str] = None):
    """Begin a split all_to_all_v (NKI 0.7): the metadata setup, returning the
    NkiInstruction for the paired all_to_all_v_trigger."""
    _unsupported("all_to_all_v_prepare")


def all_to_all_v_trigger(prepare_instr, name: Optional[str] = None):
    """Complete a split all_to_all_v (NKI 0.7): `prepare_instr` is what the paired
    all_to_all_v_prepare returned; it supplies every other operand."""
    _check_prepare(prepare_instr, "all_to_all_v_trigger")
    _unsupported("all_to_all_v_trigger")


def all_gather_v_prepare(srcs: List, dsts: List, replica_group: ReplicaGroup,
                         metadata_tensor, recv_counts_known: bool = False,
                         has_rdispls: bool = False, priority: Optional[int] = None,
                         name: Optional[str] = None):
    """Begin a split all_gather_v (NKI 0.7): the metadata setup, returning the
    NkiInstruction for the paired all_gather_v_trigger."""
    _unsupported("all_gather_v_prepare")


def all_gather_v_trigger(prepare_instr, name: Optional[str] = None):
    """Complete a split all_gather_v (NKI 0.7): `prepare_instr` is what the paired
    all_gather_v_prepare returned; it supplies every other operand."""
    _check_prepare(prepare_instr, "all_gather_v_trigger")
    _unsupported("all_gather_v_trigger")


def _check_prepare(prepare_instr, api: str):
    from ..isa.misc import NkiInstruction
    from ..machine.errors import NkiValidationError
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
                                name: Optional[str] = None) -> None:
    _unsupported("collective_permute_implicit")


def collective_permute_implicit_reduce(srcs0_by_channel: List[List[NkiTensor]],
                                       srcs1_by_channel: List[List[NkiTensor]],
                                       dsts_by_channel: List[List[NkiTensor]],
                                       replica_group: ReplicaGroup, op,
                                       channel_ids: List[int] = [0],  # noqa: B006 - public default
                                       priority: Optional[int] = None,
                                       name: Optional[str] = None) -> None:
    _unsupported("collective_permute_implicit_reduce")


def collective_permute_implicit_current_processing_rank_id(iteration_id: int,
                                                           replica_group: ReplicaGroup,
                                                           channel_id: int = 0,
                                                           name: Optional[str] = None):
    _unsupported("collective_permute_implicit_current_processing_rank_id")


def rank_id(name: Optional[str] = None):
    """The current rank (rank 0 outside a multi-rank run), as a VirtualRegister."""
    return _isa.rank_id(name=name)


__all__ = ["ReplicaGroup", "all_reduce", "all_gather", "all_gather_v", "reduce_scatter",
           "all_to_all", "all_to_all_v", "all_to_all_v_prepare", "all_to_all_v_trigger",
           "all_gather_v_prepare", "all_gather_v_trigger", "collective_permute", "collective_permute_implicit",
           "collective_permute_implicit_reduce",
           "collective_permute_implicit_current_processing_rank_id", "rank_id"]
