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

Variable-length collectives (all_to_all_v, all_gather_v) take flat element buffers
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

The implicit ring (collective_permute_implicit[_reduce]) is one step per call: the rank
at place p of its rank list sends each channel's source to place p+1 and receives from
place p-1 (mod the list's length); the docs say "successor" and "predecessor" without
naming the order, so the rank list's order is our reading. All channels ride the same
ring here; at most 4 channels (the docs' lower limit of 2 for groups that do not span
a node is not enforced). collective_permute_implicit_current_processing_rank_id(k) is
then the rank at place p-k (mod the length): whose data a buffer forwarded k times
holds. It returns a rank id, as rank_id does (the docs say "rank ID" and publish no
formula), in a register, recorded on the sync engine as rank_id is.

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
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

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


# -- variable-length collectives: all_to_all_v, all_gather_v ---------------------------
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
    srcs, dsts = _begin(ins, srcs, dsts, _HBM, priority, one=True)
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
                 _signature(replica_group, known, rdispls, str(srcs[0].dtype)), known,
                 rdispls, ins.attrs.get("priority"))


def _flag(ins: Instr, role: str, value) -> bool:
    ins.require(isinstance(value, (bool, np.bool_)), f"{role}={value!r} must be True or "
                "False")
    return bool(value)


def _metadata(ins: Instr, meta, n: int, rows: int) -> NkiTensor:
    ins.operand("metadata_tensor", meta, _HBM_OR_SBUF)
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
    me, n, total = _position(a.group), len(a.group), elements(a.dst)
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
    return _handle()


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
    handle = _handle()
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
    return _handle()


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


# -- the implicit ring: collective_permute_implicit[_reduce] ---------------------------
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
                   _signature(replica_group, shapes(srcs)))
    return _handle()


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
                   _signature(replica_group, opn, shapes(srcs0)))
        ins.attrs["op"] = opn
    return _handle()


def _channels(ins: Instr, role: str, by_channel, channel_ids) -> list[NkiTensor]:
    """One tensor per channel (HBM or SBUF), as many channels as channel_ids names."""
    try:
        lists = list(by_channel)
    except TypeError:
        ins.fail(f"{role} must be a list of one-tensor lists, one per channel")
    ids = _channel_ids(ins, channel_ids)
    ins.require(len(lists) == len(ids), f"{role} holds {len(lists)} channels but "
                f"channel_ids={ids} names {len(ids)}")
    return [tensors(ins, f"{role}[{c}]", ts, _HBM_OR_SBUF, one=True)[0]
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
    pred = group[(_position(group) - 1) % n]
    for c, d in enumerate(dsts):
        write(ins, c, d, None if got[pred] is None else (lambda c=c: got[pred][c]),
              role="dsts_by_channel")


def current_processing_rank_id(iteration_id, replica_group, channel_id=0, name=None):
    """The rank whose data a ring buffer holds after `iteration_id` implicit steps: the
    rank iteration_id places before this one in its rank list (our reading, see the
    module docstring), as a register."""
    from .registers import VirtualRegister, as_int
    with Instr("collective_permute_implicit_current_processing_rank_id", None,
               default="sync", name=name) as ins:
        step = as_int(iteration_id, "iteration_id")
        ins.require(step >= 0, f"iteration_id={step} must be >= 0 (a ring step)")
        ins.require(isinstance(channel_id, (int, np.integer)) and not isinstance(
            channel_id, bool) and 0 <= channel_id < MAX_CHANNELS,
            f"channel_id={channel_id!r} must be 0..{MAX_CHANNELS - 1}")
        group = my_group(ins, replica_group)
        reg = VirtualRegister(group[(_position(group) - step) % len(group)])
        ins.attrs.update(reg_writes=[reg.name], iteration_id=step,
                         channel_id=int(channel_id))
        if isinstance(iteration_id, VirtualRegister):
            ins.attrs["reg_reads"] = [iteration_id.name]
    return reg


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
