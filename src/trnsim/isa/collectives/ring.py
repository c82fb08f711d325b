"""The implicit ring (collective_permute_implicit[_reduce]) is one step per call: the rank
at place p of its rank list sends each channel's source to place p+1 and receives from
place p-1 (mod the list's length); the docs say "successor" and "predecessor" without
naming the order, so the rank list's order is our reading. All channels ride the same
ring here; at most 4 channels (the docs' lower limit of 2 for groups that do not span
a node is not enforced). collective_permute_implicit_current_processing_rank_id(k) is
then the rank at place p-k (mod the length): whose data a buffer forwarded k times
holds. It returns a rank id, as rank_id does (the docs say "rank ID" and publish no
formula), in a register, recorded on the sync engine as rank_id is.
"""
from __future__ import annotations

import numpy as np

from ...machine.tensor import NkiTensor
from ..base import Instr, describe
from .common import (ENGINE, HBM_OR_SBUF, check_priority, exchange, group_signature,
                     last_handle, my_group, nbytes, position, read_all, reduce_op,
                     reduce_values, shapes, tensors, write)


MAX_CHANNELS = 4


def collective_permute_implicit(srcs_by_channel, dsts_by_channel, replica_group,
                                channel_ids=(0,), priority=None, name=None):
    """One ring step: each channel's source goes to the next rank of the rank list, its
    destination receives the previous rank's."""
    kind = "collective_permute_implicit"
    with Instr(kind, None, default=ENGINE, name=name) as ins:
        srcs = _channels(ins, "srcs_by_channel", srcs_by_channel, channel_ids)
        dsts = _channels(ins, "dsts_by_channel", dsts_by_channel, channel_ids)
        _same_channels(ins, ("srcs_by_channel", srcs), ("dsts_by_channel", dsts))
        check_priority(ins, priority)
        group = my_group(ins, replica_group)
        _ring_step(ins, kind, group, read_all(ins, srcs, "srcs_by_channel"), srcs, dsts,
                   group_signature(replica_group, shapes(srcs)))
    return last_handle()


def collective_permute_implicit_reduce(srcs0_by_channel, srcs1_by_channel,
                                       dsts_by_channel, replica_group, op,
                                       channel_ids=(0,), priority=None, name=None):
    """One ring step of op(srcs0, srcs1), reduced the documented way on the sender."""
    kind = "collective_permute_implicit_reduce"
    with Instr(kind, None, default=ENGINE, name=name) as ins:
        srcs0 = _channels(ins, "srcs0_by_channel", srcs0_by_channel, channel_ids)
        srcs1 = _channels(ins, "srcs1_by_channel", srcs1_by_channel, channel_ids)
        dsts = _channels(ins, "dsts_by_channel", dsts_by_channel, channel_ids)
        _same_channels(ins, ("srcs0_by_channel", srcs0), ("srcs1_by_channel", srcs1),
                       ("dsts_by_channel", dsts))
        opn = reduce_op(ins, op)
        check_priority(ins, priority)
        group = my_group(ins, replica_group)
        a, b = read_all(ins, srcs0, "srcs0_by_channel"), read_all(ins, srcs1,
                                                                  "srcs1_by_channel")
        sent = None if a is None or b is None else [
            reduce_values(opn, [x, y], d.dtype) for x, y, d in zip(a, b, dsts)]
        _ring_step(ins, kind, group, sent, srcs0, dsts,
                   group_signature(replica_group, opn, shapes(srcs0)))
        ins.attrs["op"] = opn
    return last_handle()


def _channels(ins: Instr, role: str, by_channel, channel_ids) -> list[NkiTensor]:
    """One tensor per channel (HBM or SBUF), as many channels as channel_ids names."""
    try:
        lists = list(by_channel)
    except TypeError:
        ins.fail(f"{role} must be a list of one-tensor lists, one per channel")
    ids = _channel_ids(ins, channel_ids)
    ins.require(len(lists) == len(ids), f"{role} holds {len(lists)} channels but "
                f"channel_ids={ids} names {len(ids)}")
    return [tensors(ins, f"{role}[{c}]", ts, HBM_OR_SBUF, one=True)[0]
            for c, ts in enumerate(lists)]


def _channel_ids(ins: Instr, channel_ids) -> list[int]:
    try:
        ids = list(channel_ids)
    except TypeError:
        ids = None
    ok = ids is not None and all(isinstance(c, (int, np.integer)) for c in ids)
    ins.require(ok and ids == list(range(len(ids))) and ids,
                f"channel_ids={channel_ids!r} must be consecutive integers from 0")
    ins.require(len(ids) <= MAX_CHANNELS, f"channel_ids={ids} names {len(ids)} channels; "
                f"a ring has at most {MAX_CHANNELS}")
    return [int(c) for c in ids]


def _same_channels(ins: Instr, *named) -> None:
    """Each channel's tensors (one per role) have one shape and one dtype."""
    (role0, first), rest = named[0], named[1:]
    for role, ts in rest:
        for c, (s, t) in enumerate(zip(first, ts)):
            ins.require(s.shape == t.shape and s.dtype == t.dtype,
                        f"{role}[{c}] {describe(t)} must have the shape and dtype of "
                        f"{role0}[{c}] {describe(s)}")


def _ring_step(ins: Instr, kind: str, group: tuple, sent, srcs, dsts, signature) -> None:
    got = exchange(ins, kind, group, sent, signature)
    n = len(group)
    ins.attrs.update(nbytes=nbytes(srcs), channels=len(dsts),
                     pairs=tuple((group[i], group[(i + 1) % n]) for i in range(n)))
    pred = group[(position(group) - 1) % n]
    for c, d in enumerate(dsts):
        write(ins, c, d, None if got[pred] is None else (lambda c=c: got[pred][c]),
              role="dsts_by_channel")


def current_processing_rank_id(iteration_id, replica_group, channel_id=0, name=None):
    """The rank whose data a ring buffer holds after `iteration_id` implicit steps: the
    rank iteration_id places before this one in its rank list (our reading, see the
    module docstring), as a register."""
    from ..registers import VirtualRegister, as_int
    with Instr("collective_permute_implicit_current_processing_rank_id", None,
               default="sync", name=name) as ins:
        step = as_int(iteration_id, "iteration_id")
        ins.require(step >= 0, f"iteration_id={step} must be >= 0 (a ring step)")
        ins.require(isinstance(channel_id, (int, np.integer)) and not isinstance(
            channel_id, bool) and 0 <= channel_id < MAX_CHANNELS,
            f"channel_id={channel_id!r} must be 0..{MAX_CHANNELS - 1}")
        group = my_group(ins, replica_group)
        reg = VirtualRegister(group[(position(group) - step) % len(group)])
        ins.attrs.update(reg_writes=[reg.name], iteration_id=step,
                         channel_id=int(channel_id))
        if isinstance(iteration_id, VirtualRegister):
            ins.attrs["reg_reads"] = [iteration_id.name]
    return reg
