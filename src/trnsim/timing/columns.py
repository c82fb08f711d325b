"""Stage 1 of the compiled scheduler: the instruction record as columns (NumPy arrays)
for the timing core (compiled.py).

One pass over the instructions in issue order runs the Python scheduler's own
dependency collection (`_Scheduler._collect`: the MemoryMaps, track ids, folded
memsets, depends_on, track order), so the dependencies are those of the Python
scheduler by construction, and prices every instruction with the cost model. The
dependencies come out as CSR arrays in the order `_collect` found them (that order
decides the order of equal-time Waits); cost terms stay Python objects, one per
instruction (shared as the cost model shares them).
"""
from __future__ import annotations

import numpy as np

# dependency kinds, in the codes the timing core reads
KINDS = ("RAW", "WAW", "WAR", "order", "queue")
_KIND = {k: n for n, k in enumerate(KINDS)}
# what an instruction does on its track
COMPUTE, FOLDED, TENSOR, DMA = range(4)
_MATMULS = ("nc_matmul", "nc_matmul_mx", "nc_transpose")
MAX_BITS = 62  # PE cells and DMA engines are bitmasks in an int64


class Columns:
    """What the timing core needs, per instruction (indexed by instruction index unless
    said), per dependency (CSR over issue positions) and per track."""

    def __init__(self, n):
        self.n = n
        self.order = None  # issue order (instruction indices)
        self.dptr = [0]  # issue position k: deps dptr[k]:dptr[k+1]
        self.dprod: list = []
        self.dkind: list = []
        self.dspace: list = []
        self.spaces: dict = {"": 0}  # space name -> code
        z = [0] * n
        self.kind, self.track, self.tcore, self.dcore = list(z), list(z), list(z), list(z)
        self.stack, self.cells, self.dmask, self.swtrk = list(z), list(z), list(z), list(z)
        self.hashbm = list(z)
        f = [0.0] * n
        self.dur, self.mm, self.ls, self.dge_ns = list(f), list(f), list(f), list(f)
        self.data_ns, self.hbm_ns = list(f), list(f)
        self.terms: list = [None] * n  # cost terms (Python objects)
        self.dma_engines: list = [()] * n
        self.tensor_cores: dict = {}  # core -> dense index (Tensor Engine state)
        self.dma_cores: dict = {}  # core -> dense index (DMA engines, DGE units)
        self.stacks: dict = {}  # HBM stack -> dense index


def _dense(d: dict, key) -> int:
    v = d.get(key)
    if v is None:
        v = d[key] = len(d)
    return v


def supported(sched) -> bool:
    """Whether the timing core models everything `sched` (a fresh _Scheduler) would do:
    no synchronisation groups (deferral), no collectives, bitmasks wide enough."""
    if sched.groups or sched.fabric or sched.ncells > MAX_BITS:
        return False
    if sched.cost.dma.engines > MAX_BITS:
        return False
    return all(ins.engine != "cc" for ins in sched.instrs)


def build_columns(sched) -> Columns:
    """The columns of `sched`'s program (consumes `sched`'s dependency maps)."""
    col = Columns(len(sched.instrs))
    col.order = np.asarray(sched.order, dtype=np.int64)
    instrs = sched.instrs
    collect = sched._collect
    track = sched.track
    dprod, dkind, dspace, dptr = col.dprod, col.dkind, col.dspace, col.dptr
    spaces = col.spaces
    for i in sched.order:
        ins = instrs[i]
        for p, (kind, space) in collect(ins).items():
            dprod.append(p)
            dkind.append(_KIND[kind])
            code = spaces.get(space)
            dspace.append(code if code is not None else _dense(spaces, space))
        dptr.append(len(dprod))
        trk = track[i]
        col.track[i] = trk.id
        engine = ins.engine
        if engine == "dma":
            _dma(sched, col, ins, trk)
        elif engine == "tensor":
            _tensor(sched, col, ins)
        else:
            _compute(sched, col, ins)
    return col


def _compute(sched, col, ins):
    i = ins.index
    fold = sched.folded.get(i)
    if fold is not None:
        col.kind[i] = FOLDED
        col.terms[i] = {"cycles": 0, "folded_into": fold}
        return
    cost = sched.cost
    dur, terms = cost.compute(ins) if ins.engine in cost.eng else cost.sync(ins)
    if ins.opcode == "core_barrier":
        dur += cost.dma.fixed
        terms = {**terms, "barrier_ns": cost.dma.fixed}
    col.kind[i] = COMPUTE
    col.dur[i] = dur
    col.terms[i] = terms


def _tensor(sched, col, ins):
    i = ins.index
    cost = sched.cost
    if ins.opcode in _MATMULS:
        mm, ls, terms, cells = cost.matmul(ins)
    else:  # e.g. a core_barrier issued on the Tensor Engine
        mm, ls, terms, cells = cost.te_min_ii * cost.te_ns, 0.0, {}, ()
        if ins.opcode == "core_barrier":
            mm += cost.dma.fixed
    mask = 0
    for c in cells:
        mask |= 1 << c
    col.kind[i] = TENSOR
    col.tcore[i] = _dense(col.tensor_cores, ins.core)
    col.mm[i], col.ls[i], col.terms[i] = mm, ls, terms
    col.cells[i] = mask or (1 << sched.ncells) - 1


def _dma(sched, col, ins, trk):
    i = ins.index
    c = sched.cost.dma
    info = c.cost(ins)
    col.kind[i] = DMA
    col.dcore[i] = _dense(col.dma_cores, ins.core)
    dge = info["dge_ns"]
    col.dge_ns[i] = dge
    col.swtrk[i] = -1
    if dge and info["dge_mode"] == "swdge":  # the Python scheduler makes the track here
        col.swtrk[i] = sched._engine(ins.core, "gpsimd").id
    mask = 0
    for e in info["engines"]:
        mask |= 1 << e
    col.dmask[i] = mask
    col.dma_engines[i] = info["engines"]
    col.data_ns[i] = info["data_ns"]
    hbm = info["hbm_bytes"]
    if hbm:
        col.hashbm[i] = 1
        col.hbm_ns[i] = hbm / c.stack_bw
        col.stack[i] = _dense(col.stacks, ins.core // c.cores_per_stack)
    col.terms[i] = sched._dma_terms(trk, info)


def tracks(sched):
    """(names, semaphore ns, latency ns, is-DMA) per track id."""
    trks = sorted([*sched.engines.values(), *sched.queues.values()], key=lambda t: t.id)
    assert [t.id for t in trks] == list(range(len(trks)))
    return ([t.name for t in trks], np.array([t.sem for t in trks], dtype=np.float64),
            np.array([t.lat for t in trks], dtype=np.float64),
            np.array([t.engine == "dma" for t in trks], dtype=np.int64))


def arrays(col):
    """The per-instruction and dependency columns as NumPy arrays (timing core order)."""
    i64, f64 = np.int64, np.float64
    a = lambda x, t=i64: np.array(x, dtype=t)  # noqa: E731
    return (col.order, a(col.dptr), a(col.dprod), a(col.dkind), a(col.kind), a(col.track),
            a(col.tcore), a(col.dcore), a(col.stack), a(col.cells), a(col.dmask),
            a(col.swtrk), a(col.hashbm), a(col.dur, f64), a(col.mm, f64), a(col.ls, f64),
            a(col.dge_ns, f64), a(col.data_ns, f64), a(col.hbm_ns, f64))
