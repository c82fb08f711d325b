"""The compiled timing scheduler's input: the instruction record as columns (NumPy
arrays) for the timing core (compiled.py).

The dependencies come from compiled_deps.collect: what the Python scheduler's own
dependency collection (`_Scheduler._collect`: the MemoryMaps, track ids, folded
memsets, depends_on, track order) finds, as CSR arrays in the order `_collect` finds
them (that order decides the order of equal-time Waits). A second
pass prices every instruction with the cost model: one row per (cost model result,
track), so a loop body's rows are made once and an instruction records only its track
and its row; cost terms stay Python objects, one per row (shared as the cost model
shares them).
"""
from __future__ import annotations

from itertools import chain

import numpy as np

from .costs import dma_costs, priced
from ..machine import compiled
from .scheduler import numbered, with_opcode

# dependency kinds, in the codes the timing core reads
KINDS = ("RAW", "WAW", "WAR", "order", "queue")
RAW, WAW, WAR, ORDER, QUEUE = range(5)
_KIND = {k: n for n, k in enumerate(KINDS)}
# what an instruction does on its track
COMPUTE, FOLDED, TENSOR, DMA = range(4)
_MATMULS = ("nc_matmul", "nc_matmul_mx", "nc_transpose")
MAX_BITS = 52  # PE cells and DMA engines are bitmasks (exact in the float64 table)


# a row: what the timing core needs of every instruction of one cost signature on one
# track (the cost model memoizes per signature, so a loop body's rows are made once)
ROW = ("kind", "tcore", "dcore", "stack", "cells", "dmask", "swtrk", "hbm", "dur", "mm",
       "ls", "dge_ns", "data_ns", "hbm_ns")
_INTS = 8  # ROW[:8] are integers, the rest floats
_ZEROS = (0,) * len(ROW)  # (what a row's dict leaves out)
_FOLDED_ROW = tuple(FOLDED if name == "kind" else 0 for name in ROW)
_FOLDED_KEY = -1  # the folded memsets' row's key (_price)


class Columns:
    """Per instruction (indexed by instruction index): its track and its row; per row
    (ROW, `terms`, `dma_engines`); the dependencies as CSR over issue positions."""

    def __init__(self, n):
        self.n = n
        self.order = None  # issue order (instruction indices)
        self.dptr = [0]  # issue position k: deps dptr[k]:dptr[k+1]
        self.dprod: list = []
        self.dkind: list = []
        self.dspace: list = []
        self.spaces: dict = {"": 0}  # space name -> code
        self.track = None  # per instruction (arrays)
        self.row = None
        self.table: list = []  # the rows (tuples in ROW order)
        self.terms: list = []  # per row: the events' cost terms (Python objects)
        self.dma_engines: list = []  # per row
        self.folded: dict = {}  # the folded memsets on their shared row -> their matmuls
        self.tensor_cores: dict = {}  # core -> dense index (Tensor Engine state)
        self.dma_cores: dict = {}  # core -> dense index (DMA engines, DGE units)
        self.stacks: dict = {}  # HBM stack -> dense index


def _dense(d: dict, key) -> int:
    """key's number in d (numbered in order of first use)."""
    v = d.get(key)
    if v is None:
        v = d[key] = len(d)
    return v


def supported(sched) -> bool:
    """Whether the timing core models everything `sched` (a fresh _Scheduler without
    fabric times) would do: no synchronisation groups (deferral), no collectives,
    bitmasks wide enough."""
    if sched.groups or sched.ncells > MAX_BITS:
        return False
    if sched.cost.dma.engines > MAX_BITS:
        return False
    engines = sched.engine_of  # (each distinct engine object once)
    return all(engines[i] != "cc" for i in sched.engine_numbers[0].tolist())


def build_columns(sched) -> Columns:
    """The columns of `sched`'s program: its dependencies by compiled_deps.collect (the
    same as `_Scheduler._collect` finds, in the same order), then its prices. Raises
    OverflowError where an address is beyond the compiled maps' byte axis."""
    from .compiled_deps import collect
    col = Columns(len(sched.instrs))
    col.order = sched.order_array
    col.dptr, col.dprod, col.dkind, col.dspace = collect(sched, col.spaces)
    _price(sched, col)
    return col


def _price(sched, col):
    """Each instruction's track and row: a row per (cost model result, track), made
    and numbered in the issue order of its first instruction (as the Python
    scheduler's walk meets them); the folded memsets share one row (no engine time, no
    access of their own: their cost terms, which name the matmul each folds into, are
    made per event, `col.folded`); another instruction without a result has a row of
    its own."""
    instrs, n = sched.instrs, len(sched.instrs)
    tids = sched.track_ids
    res, own, shared = _results(sched)
    # the rows' keys: a number per (result, track), -1 for the folded memsets', one of
    # its own where no result
    rid = np.frombuffer(res, np.intp)  # (id() of each: the object array's pointers)
    span = int(tids.max()) + 1 if n else 1
    if n and int(rid.max()) >= (1 << 62) // span:  # (too large to pair in an int64)
        rid = np.unique(rid, return_inverse=True)[1].reshape(n)
    key = rid * span + tids
    key[shared] = _FOLDED_KEY
    if own:
        key[own] = _FOLDED_KEY - 1 - np.arange(len(own))
    order = sched.order_array
    # each row's first instruction's issue position (row order), each position's row
    made, at = numbered(key[order], compiled.wanted(n))
    trks = _by_id(sched)
    for i in order[made].tolist():
        if key[i] == _FOLDED_KEY:
            col.table.append(_FOLDED_ROW)
            col.terms.append(None)  # (per event: EventColumns.folded)
            col.dma_engines.append(())
        else:
            _new_row(sched, col, instrs[i], trks[tids[i]], res[i])
    col.track = tids
    col.row = np.empty(n, np.int64)
    col.row[order] = at
    folded = sched.folded
    col.folded = folded if len(shared) == len(folded) else \
        {i: folded[i] for i in shared.tolist()}


def _results(sched) -> tuple:
    """(each instruction's cost model result, the other instructions that have none (a
    core barrier), the folded memsets on the shared row (int64): those without one)."""
    instrs, cost = sched.instrs, sched.cost
    matmul, compute, eng = cost.matmul, cost.compute, cost.eng
    # (every DMA's, a dict; None elsewhere)
    res = np.fromiter(dma_costs(sched.program, cost), object, len(instrs))
    # the results the compiler's list scheduler made (where it ran)
    entry = priced(sched.program, cost)
    rest = np.flatnonzero(sched.engine_of != "dma") if entry.matmul is None else \
        _matmuls_priced(res, *entry.matmul)
    folded = _folded_mask(sched)
    if entry.compute is not None:
        rest = _computes_priced(sched, res, rest, folded, *entry.compute)
    rest, shared = _without_folded(sched, rest, folded)
    own = []
    by_attrs: dict = {}  # id(attrs) -> matmul result (the instructions keep the attrs)
    for i in rest:
        ins = instrs[i]
        engine = ins.engine
        if engine == "tensor":
            if ins.opcode in _MATMULS:  # (a result per attrs dict: see cost.matmul)
                r = by_attrs.get(id(ins.attrs))
                if r is None:
                    r = by_attrs[id(ins.attrs)] = matmul(ins)
                res[i] = r
            else:
                res[i] = ins.opcode
        elif ins.opcode == "core_barrier":
            own.append(i)
        elif engine in eng:
            res[i] = compute(ins)
        else:
            res[i] = "sync"
    return res, own, shared


def _without_folded(sched, rest, folded) -> tuple:
    """(the instructions of `rest` (int64) but the folded memsets (folded: a mask over
    the instructions) not on the Tensor Engine (priced as any other there), as a list;
    those, int64)."""
    folded = folded[rest]
    if folded.any():
        folded[folded] = sched.engine_of[rest[folded]] != "tensor"
    return rest[~folded].tolist(), rest[folded]


def _folded_mask(sched) -> np.ndarray:
    """Which instructions are folded memsets."""
    mask = np.zeros(len(sched.instrs), bool)
    mask[np.fromiter(sched.folded, np.int64, len(sched.folded))] = True
    return mask


def _computes_priced(sched, res, rest, folded, group, results, engines) -> np.ndarray:
    """Fill in `res` the compute results of the instructions of `rest` (int64) the
    list scheduler priced (group, results, engines: priced(...).compute), but a folded
    memset's (folded: a mask over the instructions) or a core barrier's: its result
    where the instruction is still on the engine it priced, else (it moved the
    instruction) the cost model's there, once per (result, engine) as every other of
    the same signature moved there costs the same; the instructions of `rest` left, in
    order (int64)."""
    rest = np.asarray(rest, np.int64)
    if not len(rest):
        return rest
    # a number per engine name (in order of first use), by the name objects met
    first, which = numbered(sched.engine_ids[rest], compiled.wanted(len(rest)))
    names = [sched.engine_of[i] for i in rest[first].tolist()]
    code = {name: k for k, name in enumerate(dict.fromkeys(names))}
    now = np.array([code[name] for name in names], np.int64)[which]
    folded = folded[rest]
    g = group[rest]
    on_eng = np.array([name in sched.cost.eng for name in code], bool)
    was = np.array([code.get(e, -1) for e in engines], np.int64)
    mine = (g >= 0) & on_eng[now] & ~folded
    barriers = with_opcode(sched.program, "core_barrier")
    if len(barriers):
        mine &= ~np.isin(rest, barriers)
    at, g, now = rest[mine], g[mine], now[mine]
    same = now == was[g]
    res[at[same]] = results[g[same]]
    moved, key = at[~same], g[~same] * len(code) + now[~same]
    if len(moved):
        _, head, which = np.unique(key, return_index=True, return_inverse=True)
        compute, instrs = sched.cost.compute, sched.instrs
        made = np.fromiter(map(compute, map(instrs.__getitem__, moved[head].tolist())),
                           object, len(head))
        res[moved] = made[which.reshape(-1)]
    return rest[~mine]


def _matmuls_priced(res, group, results) -> np.ndarray:
    """Fill in `res` (an object array) the matmul results the list scheduler made
    (group: each instruction's, -1 for none; results: by group); the instructions
    left: neither those nor DMAs (res None), int64."""
    at = np.flatnonzero(group >= 0)
    res[at] = results[group[at]]
    return np.flatnonzero(np.frombuffer(res, np.intp) == id(None))


def _by_id(sched) -> list:
    """The tracks made so far, by id."""
    trks = sorted([*sched.engines.values(), *sched.queues.values()], key=lambda t: t.id)
    assert [t.id for t in trks] == list(range(len(trks)))
    return trks


def _new_row(sched, col, ins, trk, res):
    """Make the row of `ins` on `trk` (res: its cost model result, the row's key; None:
    a row of its own), but a folded memset's (_price)."""
    engine = ins.engine
    if engine == "dma":
        row, terms, engines = _dma(sched, col, ins, trk, res)
    elif engine == "tensor":
        row, terms, engines = _tensor(sched, col, ins, res)
    else:
        row, terms, engines = _compute(sched, ins)
    col.table.append(tuple(map(row.get, ROW, _ZEROS)))
    col.terms.append(terms)
    col.dma_engines.append(engines)


def _compute(sched, ins):
    dur, terms = sched._compute_cost(ins)
    return {"kind": COMPUTE, "dur": dur}, terms, ()


def _tensor(sched, col, ins, res):
    if ins.opcode in _MATMULS:
        mm, ls, terms, cells = res
    else:
        (mm, ls, terms), cells = sched._other_tensor_cost(ins), ()
    mask = 0
    for c in cells:
        mask |= 1 << c
    row = {"kind": TENSOR, "tcore": _dense(col.tensor_cores, ins.core), "mm": mm, "ls": ls,
           "cells": mask or (1 << sched.ncells) - 1}
    return row, terms, ()


def _dma(sched, col, ins, trk, info):
    c = sched.cost.dma
    dge = info["dge_ns"]
    swtrk = -1
    if dge and info["dge_mode"] == "swdge":  # the Python scheduler makes the track here
        swtrk = sched._engine(ins.core, "gpsimd").id
    mask = 0
    for e in info["engines"]:
        mask |= 1 << e
    row = {"kind": DMA, "dcore": _dense(col.dma_cores, ins.core), "dge_ns": dge,
           "swtrk": swtrk, "dmask": mask, "data_ns": info["data_ns"]}
    hbm = info["hbm_bytes"]
    if hbm:
        row.update(hbm=1, hbm_ns=hbm / c.stack_bw,
                   stack=_dense(col.stacks, ins.core // c.cores_per_stack))
    return row, sched._dma_terms(trk, info), info["engines"]


def tracks(sched):
    """(names, semaphore ns, latency ns, is-DMA) per track id."""
    trks = _by_id(sched)
    return ([t.name for t in trks], np.array([t.sem for t in trks], dtype=np.float64),
            np.array([t.lat for t in trks], dtype=np.float64),
            np.array([t.engine == "dma" for t in trks], dtype=np.int64))


def arrays(col):
    """The columns as NumPy arrays, in the timing core's argument order: issue order,
    the dependencies' CSR, track and row per instruction, then the rows' ROW columns."""
    i64 = np.int64
    table = np.fromiter(chain.from_iterable(col.table), np.float64,
                        len(col.table) * len(ROW)).reshape(len(col.table), len(ROW))
    ints = [np.ascontiguousarray(table[:, k]).astype(i64) for k in range(_INTS)]
    floats = [np.ascontiguousarray(table[:, k]) for k in range(_INTS, len(ROW))]
    return (col.order, np.asarray(col.dptr, i64), col.dprod, col.dkind,
            np.asarray(col.track, i64), np.asarray(col.row, i64),
            *ints, *floats)
