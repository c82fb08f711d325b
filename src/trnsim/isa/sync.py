"""Synchronisation between the NeuronCores of a logical core (LNC=2, NeuronCore-v3+):
`core_barrier` and `sendrecv`.

With `kernel[2]` the two cores run as cooperative threads (machine/runtime.py
CoreScheduler): one runs at a time and hands over only where it blocks here, so a
run is deterministic. A core that waits on a partner that finished or waits on
something else ends the run with a deadlock error naming what each core waits on.

Record: `core_barrier` on the chosen engine (default GpSimd) with attrs `cores` and
`barrier_seq` (the k-th barrier over that core set: the k-th of every core in the set
pair up); `data` is recorded as a read, so accesses to it order around the barrier.
`sendrecv` as a DMA (engine 'dma', queue qSyncIO, or qGpSimdDynamic for
dma_engine.gpsimd_dma) reading `src` and writing `dst` on the issuing core, with
attrs `send_to_rank`, `recv_from_rank`, `pipe_id`, `dma_engine`, `send_seq` and
`recv_seq` (message k from a core to its peer on a pipe pairs with the peer's
receive k).
"""
from __future__ import annotations

import weakref
from collections import deque

import numpy as np

from ..machine.access import describe_access
from ..machine.errors import NkiValidationError, describe
from ..machine.runtime import active_run, program_id
from ..machine.tensor import NkiTensor
from .base import Instr, free_size
from .enums import dma_engine as DmaEngine, engine as Engine
from .misc import last_instruction

_BARRIER_ENGINES = ("tensor", "vector", "scalar", "gpsimd", "sync")


class _SyncState:
    def __init__(self):
        self.barrier_count: dict = {}  # (core, cores) -> barriers entered
        self.arrivals: dict = {}  # (cores, seq) -> set of cores arrived
        self.mail: dict = {}  # (sender, receiver, pipe) -> deque of messages
        self.sent: dict = {}  # (sender, receiver, pipe) -> messages sent
        self.received: dict = {}  # (sender, receiver, pipe) -> messages received


_states: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _state(run) -> _SyncState:
    st = _states.get(run)
    if st is None:
        st = _states[run] = _SyncState()
    return st


def _cores_tuple(ins: Instr, cores) -> tuple:
    if isinstance(cores, (int, np.integer)) and not isinstance(cores, bool):
        cores = (int(cores),)
    try:
        out = tuple(sorted({int(c) for c in cores}))
    except TypeError:
        ins.fail(f"cores={cores!r} must be a tuple of core indices, e.g. (0, 1)")
    ins.require(out, "cores must name at least one core")
    return out


def core_barrier(data, cores, engine=Engine.gpsimd, name=None):
    """Block until every core in `cores` reaches its matching core_barrier."""
    with Instr("core_barrier", engine, default="gpsimd", allowed=_BARRIER_ENGINES,
               name=name) as ins:
        ins.require_generation(3, "core_barrier")
        if not isinstance(data, NkiTensor):
            ins.fail(f"data must be the tensor the cores synchronise on, got "
                     f"{type(data).__name__}")
        cs = _cores_tuple(ins, cores)
        run, me = active_run(), program_id()
        missing = [c for c in cs if not 0 <= c < run.lnc]
        if missing:
            ins.fail(f"cores={cs}: logical core {missing[0]} does not exist, the kernel runs "
                     f"with LNC={run.lnc}" + (" (launch it as kernel[2] for two cores)"
                                              if run.lnc == 1 else ""))
        ins.require(me in cs, f"core {me} issues a core_barrier over cores={cs}, which does "
                    "not include itself")
        # recorded as a read (orders accesses to data around the barrier), not read
        ins.reads.append(describe_access(data, "data", "r"))
        st = _state(run)
        seq = st.barrier_count.get((me, cs), 0)
        st.barrier_count[(me, cs)] = seq + 1
        arrived = st.arrivals.setdefault((cs, seq), set())
        arrived.add(me)
        ins.attrs.update(cores=cs, barrier_seq=seq)
        run.scheduler.block_until(lambda: arrived.issuperset(cs),
                                  f"core_barrier(cores={cs}) #{seq} at {ins.location}")
    return last_instruction()


def _queue(dma_engine) -> tuple[str, str]:
    name = getattr(dma_engine, "name", str(dma_engine))
    if name == "gpsimd_dma":
        return name, "qGpSimdDynamic"
    if name == "dma":
        return name, "qSyncIO"
    raise NkiValidationError(f"dma_engine={dma_engine!r} must be nisa.dma_engine.dma or "
                             "nisa.dma_engine.gpsimd_dma", op="sendrecv")


def sendrecv(src, dst, send_to_rank, recv_from_rank, pipe_id, dma_engine=DmaEngine.dma,
             name=None):
    """Send `src` to core `send_to_rank` and receive into `dst` what core
    `recv_from_rank` sends on the same `pipe_id`; returns once both are done."""
    kind, queue = _queue(dma_engine)
    with Instr("sendrecv", None, default="dma", name=name) as ins:
        ins.queue = queue
        ins.require_generation(3, "sendrecv")
        ins.operand("src", src, buffers=("sbuf",))
        ins.operand("dst", dst, buffers=("sbuf",))
        ins.require(src.dtype == dst.dtype, f"src {describe(src)} and dst {describe(dst)} "
                    "must have the same dtype")
        ins.require(src.shape == dst.shape, f"src {describe(src)} and dst {describe(dst)} "
                    "must have the same shape")
        if kind == "gpsimd_dma":
            limit = 256 * src.dtype.itemsize
            nbytes = free_size(src) * src.dtype.itemsize
            ins.require(nbytes <= limit, f"dma_engine=gpsimd_dma moves at most {limit} bytes "
                        f"per partition for {src.dtype.itemsize * 8}-bit types; src "
                        f"{describe(src)} has {nbytes}")
        run, me = active_run(), program_id()
        ranks = {}
        for role, r in (("send_to_rank", send_to_rank), ("recv_from_rank", recv_from_rank)):
            ins.require(isinstance(r, (int, np.integer)) and not isinstance(r, bool)
                        and int(r) in (0, 1), f"{role}={r!r} must be 0 or 1")
            ranks[role] = int(r)
        if run.lnc == 1:
            ins.fail(f"the kernel runs with LNC=1, so core {me} has no peer to exchange with "
                     f"(send_to_rank={ranks['send_to_rank']}, recv_from_rank="
                     f"{ranks['recv_from_rank']}); sendrecv needs LNC=2: launch it as "
                     "kernel[2]")
        for role, r in ranks.items():
            ins.require(r != me, f"{role}={r} is this core ({me}); sendrecv exchanges with "
                        "the other core of the logical core")
        ins.require(isinstance(pipe_id, (int, np.integer)) and not isinstance(pipe_id, bool)
                    and pipe_id >= 0, f"pipe_id={pipe_id!r} must be a non-negative int")
        to, frm, pipe = ranks["send_to_rank"], ranks["recv_from_rank"], int(pipe_id)
        st = _state(run)
        payload = ins.read("src", src)
        out_key, in_key = (me, to, pipe), (frm, me, pipe)
        send_seq = st.sent.get(out_key, 0)
        st.sent[out_key] = send_seq + 1
        st.mail.setdefault(out_key, deque()).append(
            (None if payload is None else payload.copy(), src.dtype, src.shape, describe(src),
             ins.location))
        box = st.mail.setdefault(in_key, deque())
        ins.attrs.update(send_to_rank=to, recv_from_rank=frm, pipe_id=pipe, dma_engine=kind,
                         send_seq=send_seq)
        run.scheduler.block_until(lambda: len(box) > 0,
                                  f"sendrecv(recv_from_rank={frm}, pipe_id={pipe}) at "
                                  f"{ins.location}")
        values, dtype, shape, what, where = box.popleft()
        recv_seq = st.received.get(in_key, 0)
        st.received[in_key] = recv_seq + 1
        ins.attrs["recv_seq"] = recv_seq
        ins.require(dtype == dst.dtype and int(np.prod(shape)) == dst.size,
                    f"core {frm} sent {what} on pipe {pipe} (at {where}), which does not fit "
                    f"dst {describe(dst)}")
        ins.write("dst", dst, None if values is None else values.reshape(dst.shape), raw=True)
    return last_instruction()


__all__ = ["core_barrier", "sendrecv"]
