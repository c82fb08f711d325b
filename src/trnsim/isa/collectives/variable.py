"""Variable-length collectives (all_to_all_v, all_gather_v) take flat element buffers
(a tensor's elements in row-major order) and a uint32 `metadata_tensor` of shape
(rows, group size) on HBM or (1, rows, group size) on SBUF, rows = 3, or 4 with
has_rdispls: send_counts, send_displs, recv_counts (written back unless
recv_counts_known), recv_displs. all_gather_v reads only column 0 of rows 0 and 1.
Without has_rdispls the chunk from the sender at place s of the rank list lands at
s * (dst elements / group size); a chunk larger than its slot, or one that runs past
the dst (with recv_displs), is an error; chunks that overlap through recv_displs land
in rank-list order (the later sender's elements win). recv_counts is never read (it may
be uninitialized). The hardware's limits on all_gather_v (LNC=2, rank lists of exactly
4 ranks, no has_rdispls) and the NeuronSwitch rules of all_to_all_v depend on the
machine and are not enforced: any group size works here.
A prepare (all_to_all_v_prepare / all_gather_v_prepare) checks its operands, reads the
metadata (its values are fixed then) and records a small instruction; its trigger does
the collective. Per rank, each prepare takes exactly one trigger, and no other prepare
may come in between. A prepare never followed by its trigger is not reported.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from ...machine.tensor import NkiTensor
from ..base import Instr, describe
from .common import (ENGINE, HBM_ONLY, HBM_OR_SBUF, begin, elements, exchange,
                     group_signature, last_handle, my_group, position)


METADATA_ROWS = ("send_counts", "send_displs", "recv_counts", "recv_displs")
_RECV_COUNTS = 2


@dataclass
class VArgs:
    """The checked operands of a variable-length collective (what a prepare hands its
    trigger)."""
    kind: str  # "all_to_all_v" or "all_gather_v"
    src: NkiTensor
    dst: NkiTensor
    meta: NkiTensor
    group: tuple
    signature: tuple
    recv_counts_known: bool
    has_rdispls: bool
    priority: int | None

    def send_column(self, receiver: int) -> int:
        """The metadata column of what a sender sends to the member at place
        `receiver`: all_gather_v sends one chunk to everyone (column 0)."""
        return receiver if self.kind == "all_to_all_v" else 0


def _v_operands(ins: Instr, kind: str, srcs, dsts, replica_group, metadata_tensor,
                recv_counts_known, has_rdispls, priority) -> VArgs:
    srcs, dsts = begin(ins, srcs, dsts, HBM_ONLY, priority, one=True)
    known = _flag(ins, "recv_counts_known", recv_counts_known)
    rdispls = _flag(ins, "has_rdispls", has_rdispls)
    group = my_group(ins, replica_group)
    meta = _metadata(ins, metadata_tensor, len(group), 4 if rdispls else 3)
    dst, n = dsts[0], len(group)
    ins.require(rdispls or elements(dst) % n == 0,
                f"dsts[0] {describe(dst)} has {elements(dst)} elements, which do not split "
                f"into {n} equal slots (one per rank of the rank list); pass has_rdispls="
                "True with recv_displs to place the chunks yourself")
    return VArgs(kind, srcs[0], dst, meta, group,
                 group_signature(replica_group, known, rdispls, str(srcs[0].dtype)), known,
                 rdispls, ins.attrs.get("priority"))


def _flag(ins: Instr, role: str, value) -> bool:
    ins.require(isinstance(value, (bool, np.bool_)), f"{role}={value!r} must be True or "
                "False")
    return bool(value)


def _metadata(ins: Instr, meta, n: int, rows: int) -> NkiTensor:
    ins.operand("metadata_tensor", meta, HBM_OR_SBUF)
    ins.require(str(meta.dtype) == "uint32", f"metadata_tensor {describe(meta)} must be "
                "uint32")
    want = (rows, n) if meta.space == "hbm" else (1, rows, n)
    ins.require(tuple(meta.shape) == want, f"metadata_tensor {describe(meta)} must have "
                f"shape {list(want)} on {meta.space.upper()}: rows "
                f"{', '.join(METADATA_ROWS[:rows])}, one column per rank of the {n}-rank "
                "rank list")
    return meta


def _read_metadata(ins: Instr, a: VArgs) -> np.ndarray | None:
    """The metadata as a (4, n) int64 array (None without numerics), after checking
    that each chunk this rank sends lies inside its source. recv_counts (row 2) is an
    output, never read: it may be uninitialized."""
    n = len(a.group)
    rows = {r: ins.read("metadata_tensor", _meta_row(a.meta, r))
            for r in ((0, 1, 3) if a.has_rdispls else (0, 1))}
    if not ins.numerics:
        return None
    meta = np.zeros((len(METADATA_ROWS), n), np.int64)
    for r, raw in rows.items():
        meta[r] = raw.reshape(n)
    have = elements(a.src)
    for j in sorted({a.send_column(p) for p in range(len(a.group))}):
        count, displ = meta[0, j], meta[1, j]
        ins.require(displ + count <= have, f"metadata_tensor: send_displs[{j}]={displ} + "
                    f"send_counts[{j}]={count} runs past srcs[0] {describe(a.src)} "
                    f"({have} elements)")
    return meta


def _run_v(ins: Instr, a: VArgs, meta: np.ndarray | None) -> None:
    """Exchange, record the timing attrs and write what arrives (and recv_counts)."""
    src = ins.read("srcs[0]", a.src)
    posted = None if src is None else (src.reshape(-1), meta)
    got = exchange(ins, a.kind, a.group, posted, a.signature)
    _v_attrs(ins, a, meta)
    placed = None if posted is None else _place(ins, a, got, meta)
    values, mask, counts = placed if placed is not None else (None, None, None)
    ins.write("dsts[0]", a.dst, values, raw=True, mask=mask)
    if not a.recv_counts_known:
        row = _meta_row(a.meta, _RECV_COUNTS)
        ins.write("metadata_tensor", row, None if counts is None else
                  np.asarray(counts, np.uint32).reshape(row.shape), raw=True)


def _v_attrs(ins: Instr, a: VArgs, meta) -> None:
    n = len(a.group)
    if meta is None:  # timing-only: the counts are unknown, assume equal slots
        counts = [elements(a.dst) // n] * n
        ins.attrs["counts_assumed"] = True
    else:
        counts = [int(meta[0, a.send_column(p)]) for p in range(n)]
    send = tuple(c * a.src.dtype.itemsize for c in counts)
    ins.attrs.update(send_bytes=send, nbytes=sum(send) if a.kind == "all_to_all_v"
                     else send[0])


def _place(ins: Instr, a: VArgs, got: dict, meta: np.ndarray):
    """(dst values, mask of the elements received, recv_counts): the chunk of the sender
    at place s lands at recv_displs[s], or at slot s without has_rdispls."""
    me, n, total = position(a.group), len(a.group), elements(a.dst)
    slot = total // n
    values = np.zeros(total, dtype=got[a.group[0]][0].dtype)
    mask = np.zeros(total, dtype=bool)
    counts, col = [], a.send_column(me)
    for s, rank in enumerate(a.group):
        src, theirs = got[rank]
        count, displ = int(theirs[0, col]), int(theirs[1, col])
        at = int(meta[3, s]) if a.has_rdispls else s * slot
        end = total if a.has_rdispls else at + slot
        if at + count > end:
            ins.fail(_overflow(a, rank, col, count, at, s, slot))
        values[at:at + count] = src[displ:displ + count]
        mask[at:at + count] = True
        counts.append(count)
    return values.reshape(a.dst.shape), mask.reshape(a.dst.shape), counts


def _overflow(a: VArgs, rank: int, col: int, count: int, at: int, s: int,
              slot: int) -> str:
    sent = f"rank {rank} sends {count} elements (its send_counts[{col}])"
    if a.has_rdispls:
        return (f"{sent}, which at recv_displs[{s}]={at} run past dsts[0] "
                f"{describe(a.dst)} ({elements(a.dst)} elements)")
    return (f"{sent}, more than the slot of {slot} elements each sender has in dsts[0] "
            f"{describe(a.dst)} ({elements(a.dst)} elements / {len(a.group)} ranks)")


def _meta_row(meta: NkiTensor, row: int) -> NkiTensor:
    return meta[row:row + 1, :] if meta.ndim == 2 else meta[:, row:row + 1, :]


def all_to_all_v(srcs, dsts, replica_group, metadata_tensor, recv_counts_known=False,
                 has_rdispls=False, priority=None, name=None):
    """Send src[send_displs[j] : + send_counts[j]] to the member at place j of the rank
    list; the chunk from place s lands at recv_displs[s] (has_rdispls) or at slot s."""
    return _variable("all_to_all_v", srcs, dsts, replica_group, metadata_tensor,
                     recv_counts_known, has_rdispls, priority, name)


def all_gather_v(srcs, dsts, replica_group, metadata_tensor, recv_counts_known=False,
                 has_rdispls=False, priority=None, name=None):
    """Send src[send_displs[0] : + send_counts[0]] to every member; the chunk from place
    s lands at recv_displs[s] (has_rdispls) or at slot s."""
    return _variable("all_gather_v", srcs, dsts, replica_group, metadata_tensor,
                     recv_counts_known, has_rdispls, priority, name)


def _variable(kind, srcs, dsts, replica_group, metadata_tensor, recv_counts_known,
              has_rdispls, priority, name):
    with Instr(kind, None, default=ENGINE, name=name) as ins:
        a = _v_operands(ins, kind, srcs, dsts, replica_group, metadata_tensor,
                        recv_counts_known, has_rdispls, priority)
        _run_v(ins, a, _read_metadata(ins, a))
    return last_handle()


# -- prepare / trigger ------------------------------------------------------------------
@dataclass
class Prepared:
    """What a prepare hands its trigger: the checked operands and the metadata values
    read at the prepare."""
    args: VArgs
    meta: np.ndarray | None
    location: object


# per rank (its Run): the prepare handle still waiting for its trigger
_waiting: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def prepare(kind, srcs, dsts, replica_group, metadata_tensor, recv_counts_known=False,
            has_rdispls=False, priority=None, name=None):
    """all_to_all_v_prepare / all_gather_v_prepare: check the operands, read the
    metadata; returns the NkiInstruction the one trigger takes."""
    with Instr(f"{kind}_prepare", None, default=ENGINE, name=name) as ins:
        a = _v_operands(ins, kind, srcs, dsts, replica_group, metadata_tensor,
                        recv_counts_known, has_rdispls, priority)
        _no_waiting_prepare(ins)
        meta = _read_metadata(ins, a)
        ins.attrs.update(prepare=kind, group=a.group)
    handle = last_handle()
    handle.prepared = Prepared(a, meta, ins.location)
    _waiting[ins.run] = handle
    return handle


def trigger(kind, prepare_instr, name=None):
    """all_to_all_v_trigger / all_gather_v_trigger: run the collective its prepare set
    up."""
    with Instr(f"{kind}_trigger", None, default=ENGINE, name=name) as ins:
        p = _take_prepared(ins, kind, prepare_instr)
        if p.args.priority is not None:
            ins.attrs["priority"] = p.args.priority
        _run_v(ins, p.args, p.meta)
    return last_handle()


def _take_prepared(ins: Instr, kind: str, handle) -> Prepared:
    p = getattr(handle, "prepared", None)
    ins.require(isinstance(p, Prepared), f"prepare_instr {handle!r} is not what a "
                f"{kind}_prepare returned")
    ins.require(p.args.kind == kind, f"prepare_instr is the {p.args.kind}_prepare at "
                f"{p.location}; {kind}_trigger takes a {kind}_prepare's")
    ins.require(_waiting.get(ins.run) is handle, f"the {kind}_prepare at {p.location} "
                "has been triggered already: each prepare takes exactly one trigger")
    del _waiting[ins.run]
    return p


def _no_waiting_prepare(ins: Instr) -> None:
    waiting = _waiting.get(ins.run)
    if waiting is not None:
        p = waiting.prepared
        ins.fail(f"the {p.args.kind}_prepare at {p.location} is still waiting for its "
                 f"trigger: each prepare must be followed by exactly one trigger (its "
                 f"{p.args.kind}_trigger) before any other prepare")
