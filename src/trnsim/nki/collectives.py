"""`nki.collectives`: multi-rank collective communication.

trnsim simulates one chip's logical core (LNC=1 or 2), not a group of ranks, so the
collectives are placeholders with the public signatures: each raises UnsupportedError.
`rank_id()` is the exception: a simulation is a single rank, rank 0, and it returns a
VirtualRegister holding 0 (recorded as a `rank_id` instruction on the Sync engine), so
kernels that use it as a `scalar_offset` run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..isa.base import Instr
from ..isa.registers import VirtualRegister
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
               priority: Optional[int] = None, name: Optional[str] = None) -> None:
    _unsupported("all_reduce")


def all_gather(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
               collective_dim: int, priority: Optional[int] = None,
               name: Optional[str] = None) -> None:
    _unsupported("all_gather")


def all_gather_v(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                 metadata_tensor: NkiTensor, recv_counts_known: bool = False,
                 has_rdispls: bool = False, priority: Optional[int] = None,
                 name: Optional[str] = None) -> None:
    _unsupported("all_gather_v")


def reduce_scatter(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                   collective_dim: int, op, priority: Optional[int] = None,
                   name: Optional[str] = None) -> None:
    _unsupported("reduce_scatter")


def all_to_all(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
               collective_dim: int, priority: Optional[int] = None,
               name: Optional[str] = None) -> None:
    _unsupported("all_to_all")


def all_to_all_v(srcs: List[NkiTensor], dsts: List[NkiTensor], replica_group: ReplicaGroup,
                 metadata_tensor: NkiTensor, recv_counts_known: bool = False,
                 has_rdispls: bool = False, priority: Optional[int] = None,
                 name: Optional[str] = None) -> None:
    _unsupported("all_to_all_v")


def collective_permute(srcs: List[NkiTensor], dsts: List[NkiTensor],
                       source_target_pairs: List[Tuple[int, int]],
                       priority: Optional[int] = None, name: Optional[str] = None) -> None:
    _unsupported("collective_permute")


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
    """The current rank: a simulation is the single rank 0 (a VirtualRegister)."""
    with Instr("rank_id", None, default="sync", name=name) as ins:
        reg = VirtualRegister(0)
        ins.attrs["reg_writes"] = [reg.name]
    return reg


__all__ = ["ReplicaGroup", "all_reduce", "all_gather", "all_gather_v", "reduce_scatter",
           "all_to_all", "all_to_all_v", "collective_permute", "collective_permute_implicit",
           "collective_permute_implicit_reduce",
           "collective_permute_implicit_current_processing_rank_id", "rank_id"]
