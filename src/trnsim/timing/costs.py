"""The cost model: how long one recorded instruction occupies its engine, from the
instruction record and the chip data only.

Every figure comes from the chip file (`trnsim/chips/*.json`, each constant with its
source); the formulas are those of hardware.md (ISA-old "Estimated instruction cost",
the architecture guides and the performance guide):

- Vector / Scalar / GpSimd: `max(MIN_II, passes * N / speedup)` engine cycles, N the
  elements per partition of the main input (one lane per partition, so a 64-partition
  instruction costs what a 128-partition one does); `passes` per instruction (two for a
  two-input `tensor_tensor`, 8 for `reciprocal`, ...); the NeuronCore-v3+ 16-bit
  performance modes (4x / 2x) as `speedup`; half rate for innermost strides > 16 B; a
  dynamic (register- or tensor-indexed) access floors at MIN_II_DYNAMIC; the results are
  visible `dependency_latency_cycles` after the instruction leaves the engine.
- Tensor Engine: LoadStationary + MultiplyMoving, `max(N_moving, MM_INIT_LATENCY,
  M_stationary / fast_LS)` cycles per matmul, 4x for fp32 (2x in v3+ transpose mode or
  with a 0/1 operand), double-row fp8 and MX at the same cycles for 2x / 4x the
  contraction; a LoadStationary that cannot be hidden behind the previous
  MultiplyMoving (the engine was idle) is added in front.
- DMA: see `DmaCost` (queue interval, fixed latency, per-engine bandwidth by contiguous
  bytes, HBM stack share).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter, itemgetter

import numpy as np

from ..machine.access import Access
from ..machine.record import held_reads, held_writes, identities
from ..numerics.dtypes import as_dtype

COMPUTE = ("vector", "scalar", "gpsimd")
MEMO_LIMIT = 1 << 16  # signatures kept per memo (cleared when full)
_FP32 = ("float32",)


def _memoized(memo: dict, key, compute, ins):
    """compute(ins), kept in `memo` under `key` (the fields it depends on); computed
    afresh when the key holds an unhashable attribute value."""
    try:
        hit = memo.get(key)
    except TypeError:
        return compute(ins)
    if hit is None:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        hit = memo[key] = compute(ins)
    return hit
_ITEMSIZE: dict = {}


def itemsize(dtype: str) -> int:
    n = _ITEMSIZE.get(dtype)
    if n is None:
        try:
            n = as_dtype(dtype).itemsize
        except Exception:  # noqa: BLE001 - an unknown name: assume 4 bytes
            n = 4
        _ITEMSIZE[dtype] = n
    return n


def _is16(dtype: str, gen: int) -> bool:
    """16-bit (or, on NeuronCore-v4, 8-bit float) data: the VectorE performance mode."""
    n = itemsize(dtype)
    return n == 2 or (gen >= 4 and n == 1 and dtype.startswith("float8"))


def _inner_stride_bytes(a) -> int:
    """Bytes between consecutive elements of the innermost dimension with more than one
    element (0 for a single element)."""
    for stride, count in reversed(a.pattern):
        if count > 1:
            return abs(stride) * itemsize(a.dtype)
    return 0


def _contiguous(a) -> bool:
    return _inner_stride_bytes(a) in (0, itemsize(a.dtype))


@dataclass
class EngineConst:
    clock_hz: float
    min_ii: int
    latency_cycles: float  # result visible this long after the instruction leaves
    semaphore_cycles: float  # waiting on another engine's semaphore
    min_ii_dynamic: int
    stride_threshold: int
    stride_slowdown: float
    start_cycles: int  # GpSimd instruction start-up
    perf4: float  # NC-v3+ VectorE performance mode, 16-bit contiguous SBUF->SBUF
    perf2: float  # ... other 16-bit cases
    exp_speedup: float  # NC-v4 VectorE exponential vs ScalarE activation
    quant_epc: float  # quantize_mx elements per partition per cycle
    act_reduce_cycles: int

    @property
    def ns_per_cycle(self) -> float:
        return 1e9 / self.clock_hz


def _engine_const(spec, gen: int) -> EngineConst:
    x = spec.extras
    return EngineConst(
        clock_hz=spec.clock_hz, min_ii=spec.min_ii_cycles,
        latency_cycles=float(x.get("dependency_latency_cycles", 0)),
        semaphore_cycles=float(spec.dependent_issue_overhead_cycles),
        min_ii_dynamic=int(x.get("min_ii_dynamic_cycles", spec.min_ii_cycles)),
        stride_threshold=int(x.get("strided_access_threshold_bytes", 16)),
        stride_slowdown=float(x.get("strided_access_slowdown", 1)),
        start_cycles=int(x.get("start_cycles", 0)),
        perf4=float(x.get("perf_mode_speedup_contiguous_16bit", x.get("perf_mode_speedup", 1))),
        perf2=float(x.get("perf_mode_speedup_other", x.get("perf_mode_speedup", 1))),
        exp_speedup=float(x.get("exponential_speedup_vs_scalar", 1)),
        quant_epc=float(x.get("quantize_mx_elements_per_partition_per_cycle", 1)),
        act_reduce_cycles=int(x.get("activation_reduce_extra_cycles", spec.min_ii_cycles)))


_MODELS: dict = {}  # id(chip) -> (chip, CostModel): the chip is kept, so its id stays its own


def cost_model(chip) -> "CostModel":
    """The CostModel of `chip`, shared by every scheduler run on it (its memos too)."""
    hit = _MODELS.get(id(chip))
    if hit is not None and hit[0] is chip:
        return hit[1]
    if len(_MODELS) >= 16:
        _MODELS.pop(next(iter(_MODELS)))
    model = CostModel(chip)
    _MODELS[id(chip)] = (chip, model)
    return model


class _Priced:
    """One program's costs by one cost model (see `priced`); pickled as an empty entry,
    which no model matches."""
    __slots__ = ("model", "instrs", "n", "dma", "dma_groups", "compute", "matmul")

    def __init__(self, model=None, instrs=None):
        self.model, self.instrs = model, instrs
        self.n = len(instrs) if instrs is not None else -1
        self.dma: list | None = None
        self.dma_groups = None  # (results, held) dma's grouped form, until taken
        self.compute = None
        self.matmul = None

    def __reduce__(self):
        return _Priced, ()


def priced(program, model) -> _Priced:
    """The costs of `program`'s instructions by `model` kept on the program (the
    compiler's list scheduler and the timing scheduler both price every instruction):
    `dma` (see `dma_costs`), `compute`, where a pass set it: (each instruction's group,
    -1 for none, the `model.compute` result of each group, an object array, and the
    engine it was priced on: the timing scheduler takes it where the engine is still
    that one), and `matmul`, where a pass set it: (each instruction's group, -1
    for none, the `model.matmul` result of each group, an object array) for the
    matmuls that stay on the Tensor Engine. Like timing/access_columns.py, it
    describes the instructions as they stand when first asked for, and is made afresh
    where the instruction list is another object or length."""
    instrs = program.instructions
    hit = getattr(program, "_priced", None)
    if hit is not None and hit.model is model and hit.instrs is instrs \
            and hit.n == len(instrs):
        return hit
    hit = program._priced = _Priced(model, instrs)
    return hit


def dma_costs(program, model, dma=None, ids=None, keep_groups=False) -> list:
    """Per instruction of `program`: `model.dma.cost` of it where its engine is "dma",
    else None (made once per program and model: see `priced`). `dma`: the positions of
    those instructions, where the caller has them; `ids`: the identities of each
    instruction's opcode and attrs (as machine/record.py `identities` gives them: the
    attrs' `.base` is their object array), where it has them. keep_groups: keep the
    grouped form, where made now, for dma_cost_identities (an int per instruction)."""
    from .access_columns import kept_columns  # (it imports this module)

    entry = priced(program, model)
    if entry.dma is None:
        cols = kept_columns(program)
        cost = model.dma.cost
        if cols is None:
            entry.dma = [cost(ins) if ins.engine == "dma" else None for ins in entry.instrs]
        else:
            results, held = _dma_costs_grouped(entry.instrs, cols, cost, dma, ids)
            entry.dma = results[held].tolist()
            if keep_groups:
                entry.dma_groups = results, held
    return entry.dma


def dma_cost_identities(program, model, at: np.ndarray) -> np.ndarray:
    """identities(dma_costs(program, model))[at], once dma_costs has run: read off its
    results by group where it kept them (keep_groups: a pass over those, not over
    every instruction; taken by the first call)."""
    entry = priced(program, model)
    groups, entry.dma_groups = entry.dma_groups, None
    if groups is None:
        return identities(entry.dma)[at]
    results, held = groups
    return identities(results)[held[at]]


def _dma_costs_grouped(instrs, cols, cost, dma=None, ids=None) -> tuple:
    """(results, held): dma_costs' list as results[held] (an object array of the
    distinct results, None first, and each instruction's number there), the transfers
    of one read and one write priced once per distinct (opcode object, the objects of
    the attrs values the cost reads, numbered, the fields of their accesses read off the
    access columns `cols`: compiled_deps.transfer_heads): equal such rows have equal memo keys, so the same
    dicts as one by one. A block of transfers at a time (its rows of keys at once)."""
    # (numba: loaded where columns are made)
    from .compiled_deps import transfer_heads, transfer_sides

    n = len(instrs)
    if dma is None:
        dma = np.flatnonzero(np.fromiter(map("dma".__eq__, map(_ENGINE, instrs)), bool, n))
    ops, attrs = np.zeros(n, np.int64), np.zeros(n, np.int64)
    if ids is None:
        transfers = list(map(instrs.__getitem__, dma.tolist()))
        ops[dma] = identities(list(map(_OPCODE, transfers)))
        attrs[dma] = _attrs_numbers(identities(list(map(_ATTRS, transfers))),
                                    slice(None), _DMA_ATTRS)
        del transfers
    else:
        ops = ids[0]
        attrs[dma] = _attrs_numbers(ids[1], dma, _DMA_ATTRS)
    sides = transfer_sides(cols.shared)
    # each transfer's result: results[held[k]] (one list: a fancy index makes the
    # object array once)
    results = [None]
    held = np.zeros(n, np.int64)
    for b in range(0, len(dma), _PRICED_AT_ONCE):
        block = dma[b:b + _PRICED_AT_ONCE]
        one, first = transfer_heads(block, cols.ptr, cols.wptr, cols.acc, cols.source,
                                    sides, ops, attrs)
        others = block[~one]
        held[others] = np.arange(len(results), len(results) + len(others))
        results += [cost(instrs[i]) for i in others.tolist()]
        heads = np.flatnonzero(first == np.arange(len(block)))
        number = np.empty(len(block), np.int64)
        number[heads] = np.arange(len(results), len(results) + len(heads))
        # (in program order, as one by one)
        results += [cost(instrs[i]) for i in block[heads].tolist()]
        held[block[one]] = number[first[one]]
    return np.fromiter(results, object, len(results)), held


_PRICED_AT_ONCE = 1 << 13  # transfers grouped at a time
_ENGINE, _OPCODE, _ATTRS = attrgetter("engine"), attrgetter("opcode"), attrgetter("attrs")

# The fields of an operand the compute cost reads (not where it lies), by position: an
# Access is a tuple (~7% of a compute memo hit, against attrgetter); the access
# columns' signature numbers (timing/access_columns.py) tell the same fields apart
_access_sig = itemgetter(*map(Access._fields.index, (
    "space", "role", "dtype", "elems_per_partition", "pattern", "indirect")))


def compute_costs(model, program, at, ids=None) -> np.ndarray:
    """model.compute of the instructions of `program` at positions `at` (an int
    array), as an object array: the same results, computed once per distinct row of
    (engine and opcode objects, the objects of the attrs values the cost reads, and
    each operand's signature number in the program's access columns,
    timing/access_columns.py: equal rows make equal memo keys, so each gets the memo's
    result as one by one). ids: the identities of each instruction of `program`'s
    engine, opcode and attrs (as machine/record.py `identities` gives them: the attrs'
    `.base` is their object array), where the caller has them.
    One by one where the program has no access columns, the memo could fill up
    meanwhile (its clearing would part equal keys' results) or a key is unhashable
    (computed afresh each time)."""
    instrs = program.instructions
    n = len(at)
    cols = None
    if n and getattr(program, "_access_columns", None) is not None:
        # (imported here: they import this module, and numba, which a small program's
        # Python passes never load)
        from .access_columns import SIGNATURE, kept_columns
        from .compiled_deps import numbered_rows
        cols = kept_columns(program)
    if cols is None:
        return _one_by_one(model.compute, instrs, at)
    lo, mid, hi = cols.ptr[at], cols.wptr[at], cols.ptr[at + 1]
    count = hi - lo
    rows = np.full((n, 4 + int(count.max())), -1, np.int64)
    if ids is None:
        picked = list(map(instrs.__getitem__, at.tolist()))
        ids = [identities(list(map(get, picked))) for get in (_ENGINE, _OPCODE, _ATTRS)]
        del picked
        at_ids = slice(None)
    else:
        at_ids = at
    rows[:, 0], rows[:, 1] = ids[0][at_ids], ids[1][at_ids]
    rows[:, 2] = _attrs_numbers(ids[2], at_ids, _COMPUTE_ATTRS)
    rows[:, 3] = mid - lo
    owner = np.repeat(np.arange(n), count)
    place = np.arange(len(owner)) - (np.cumsum(count) - count)[owner]
    rows[owner, 4 + place] = cols.shared[SIGNATURE, cols.source[lo[owner] + place]]
    del owner, place
    first, which = numbered_rows(rows)  # (first in program order, as one by one)
    del rows
    return _once_per_row(model.compute, model._compute_memo,
                         lambda ins: model._compute_attrs[id(ins.attrs)][1], instrs, at,
                         first, which)


def _once_per_row(cost, memo: dict, key_of, instrs, at, first, which) -> np.ndarray:
    """`cost` of the instructions `instrs` at positions `at`, computed for the first of
    each row (`first` and `which`, as numbered_rows gives them) and shared by the rest;
    one by one where the cost's `memo` could fill up meanwhile (its clearing would part
    equal keys' results) or a key (`key_of(ins)`) is unhashable."""
    if len(memo) + len(first) >= MEMO_LIMIT:
        return _one_by_one(cost, instrs, at)
    made = np.empty(len(first), object)
    for g, i in enumerate(at[first].tolist()):
        ins = instrs[i]
        made[g] = cost(ins)
        if not _hashable(key_of(ins)):
            return _one_by_one(cost, instrs, at)
    return made[which]


def _one_by_one(cost, instrs, at) -> np.ndarray:
    return np.fromiter(map(cost, map(instrs.__getitem__, at.tolist())), object, len(at))


def matmul_costs(model, instrs, at, fast: bool, attrs=None) -> np.ndarray:
    """model.matmul of the instructions `instrs` at positions `at` (an int array), as
    an object array: the same results, computed once per distinct row of the objects
    of the attrs values it reads (traced matmuls each have their own attrs dict, with
    the same few values: equal rows make equal memo keys, so each gets the memo's
    result as one by one). One by one where the compiled paths do not run (`fast`), the
    memo could fill up meanwhile or a key is unhashable (computed afresh each time).
    attrs: each instruction's attrs, an object array, where the caller has it."""
    n = len(at)
    if not (fast and n):
        return _one_by_one(model.matmul, instrs, at)
    from .compiled_deps import numbered_rows  # (numba: loaded where the paths run)

    dicts = [instrs[i].attrs for i in at.tolist()] if attrs is None else attrs[at].tolist()
    first, which = numbered_rows(_values(dicts, _MATMUL_READS))  # (first in order)
    del dicts
    return _once_per_row(model.matmul, model._matmul_memo,
                         lambda ins: _matmul_key(ins.attrs), instrs, at, first, which)


def _attrs_numbers(attrs_ids, at, names: tuple) -> np.ndarray:
    """A number per instruction at `at` (positions or a slice) for the objects of its
    attrs values of `names`: equal numbers, the same objects (attrs_ids: identities of
    each instruction's attrs, their `.base` the dicts; each distinct dict read once)."""
    from .compiled_deps import numbered_rows  # (numba: loaded where the paths run)

    of = attrs_ids[at]
    heads, which = numbered_rows(of.reshape(len(of), 1))  # (loop copies share theirs)
    dicts = attrs_ids.base[np.arange(len(attrs_ids))[at][heads]].tolist()
    return numbered_rows(_values(dicts, names))[1][which]


def _values(dicts: list, names: tuple) -> np.ndarray:
    """The identities of each dict's values of `names` (_ABSENT[0] where it has none),
    a row per dict (the objects are the dicts': equal ids, equal values)."""
    m = len(dicts)
    try:  # (itemgetter: ~4x quicker than a get per name, where each dict has them all)
        return identities(chain.from_iterable(map(itemgetter(*names), dicts)),
                          m * len(names)).reshape(m, len(names))
    except KeyError:
        out = np.full((m, len(names)), id(_ABSENT[0]), np.int64)
        present = set().union(*dicts)  # (a name no dict has: no pass over them)
        for c, name in enumerate(names):
            if name in present:
                out[:, c] = identities(map(dict.get, dicts, repeat(name),
                                           repeat(_ABSENT[0])), m)
        return out


def _hashable(x) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


_COMPUTE_ATTRS = ("op", "op0", "op1", "value", "num_elem_per_idx", "num_valid_indices",
                  "n", "k")
_MATMUL_ATTRS = ("N", "M", "K", "stationary_dtype", "moving_dtype", "is_transpose",
                 "is_stationary_onezero", "is_moving_onezero", "perf_mode")
_MATMUL_READS = (*_MATMUL_ATTRS, "tile_position", "tile_size")  # (all matmul's key reads)
_DMA_ATTRS = ("bytes", "dst_rmw_op", "dge_mode")  # (all DmaCost.cost's key reads of attrs)
_ABSENT = (object(),) * 9  # map(attrs.get, names, _ABSENT): absent != present-as-None


class CostModel:
    """Per-chip constants and the per-instruction cost functions.

    `compute`, `matmul` and `dma.cost` are pure functions of the instruction's fields;
    they are memoized on a signature of the fields they read (the operands' shapes,
    dtypes, strides and spaces, not their addresses), so a loop body's instructions are
    costed once. The terms dicts they return are shared by every instruction of the same
    signature (and end up in the timeline's events): copy one before changing it."""

    def __init__(self, chip):
        self.chip = chip
        core = chip.core
        gen = self.gen = chip.generation
        self.eng = {name: _engine_const(getattr(core, name), gen) for name in COMPUTE}
        te = core.tensor
        tx = te.extras
        self.te = te
        self.te_ns = 1e9 / te.clock_hz
        self.te_min_ii = te.min_ii_cycles
        self.te_fast_ls = max(1, te.fast_load_stationary_factor)
        self.te_fp32 = te.fp32_cost_factor
        self.te_transpose_fp32 = te.fp32_cost_factor / float(tx.get("transpose_mode_fp32_speedup", 1)) \
            if gen >= 3 else te.fp32_cost_factor
        self.te_onezero = float(tx.get("onezero_fp32_speedup", 1))
        self.te_latency_cycles = float(tx.get("dependency_latency_cycles", 0))
        self.te_semaphore_cycles = float(tx.get("dependent_issue_overhead_cycles", 0))
        self.te_cell = 32  # PE tiling granularity (tile sizes are multiples of 32)
        sync = core.extras.get("sync_engine", {}) or {}
        self.sync_clock = float(sync.get("clock_hz", chip.profiler_base_clock_hz or 1.2e9))
        self.sync_cycles = float(sync.get("instruction_cycles", 64))
        self.sync_semaphore_cycles = float(sync.get("dependent_issue_overhead_cycles", 0))
        self.dma = DmaCost(chip)
        self._compute_memo: dict = {}
        self._compute_attrs: dict = {}  # id(attrs) -> (attrs, the attrs' part of the key)
        self._matmul_memo: dict = {}
        self._matmul_by_attrs: dict = {}  # id(attrs) -> (attrs, matmul result)

    # -- semaphores and latencies -----------------------------------------
    def semaphore_ns(self, track: str) -> float:
        """Extra wait of an instruction on `track` for a producer on another engine."""
        if track in self.eng:
            e = self.eng[track]
            return e.semaphore_cycles * e.ns_per_cycle
        if track == "tensor":
            return self.te_semaphore_cycles * self.te_ns
        if track == "sync":
            return self.sync_semaphore_cycles * 1e9 / self.sync_clock
        return 0.0  # DMA: the fixed cost covers the semaphore-to-start

    def latency_ns(self, track: str) -> float:
        """How long after an instruction on `track` ends its results are visible."""
        if track in self.eng:
            e = self.eng[track]
            return e.latency_cycles * e.ns_per_cycle
        if track == "tensor":
            return self.te_latency_cycles * self.te_ns
        return 0.0

    # -- compute engines --------------------------------------------------
    def compute(self, ins) -> tuple[float, dict]:
        """(ns, cost terms) for an instruction on Vector / Scalar / GpSimd."""
        a = ins.attrs
        hit = self._compute_attrs.get(id(a))  # (loop copies share their attrs)
        if hit is None or hit[0] is not a:
            hit = (a, tuple(map(a.get, _COMPUTE_ATTRS, _ABSENT)))
            if len(self._compute_attrs) >= MEMO_LIMIT:
                self._compute_attrs.clear()
            self._compute_attrs[id(a)] = hit  # (the dict kept: its id stays its own)
        reads, writes = held_reads(ins), held_writes(ins)  # (one each, mostly: then no map)
        rs = (_access_sig(reads[0]),) if len(reads) == 1 else tuple(map(_access_sig, reads))
        ws = (_access_sig(writes[0]),) if len(writes) == 1 else tuple(map(_access_sig, writes))
        key = (ins.engine, ins.opcode, rs, ws, hit[1])
        try:
            return self._compute_memo[key]
        except (KeyError, TypeError):
            return _memoized(self._compute_memo, key, self._compute, ins)

    def _compute(self, ins) -> tuple[float, dict]:
        engine = ins.engine
        e = self.eng[engine]
        op = ins.opcode
        a = ins.attrs
        held = held_reads(ins)
        reads = [r for r in held if r.space != "hbm" and r.role != "indirect_offset"]
        writes = held_writes(ins)
        data = _main_input(reads, op)
        n = data.elems_per_partition if data is not None else (
            writes[0].elems_per_partition if writes else 1)
        dst = writes[0] if writes else None
        cycles, floor, speed = self._compute_cycles(ins, e, op, a, reads, dst, data, n)
        stride = 1.0
        for acc in reads + list(writes):
            if acc.space != "hbm" and _inner_stride_bytes(acc) > e.stride_threshold:
                stride = e.stride_slowdown
                break
        dynamic = any(r.indirect for r in held) or any(w.indirect for w in writes)
        cycles = cycles * stride / speed
        if dynamic:
            floor = max(floor, e.min_ii_dynamic)
        total = max(floor, cycles)
        terms = {"cycles": total, "N": n, "clock_hz": e.clock_hz}
        if speed != 1:
            terms["perf_mode"] = speed
        if stride != 1:
            terms["strided"] = stride
        if dynamic:
            terms["dynamic"] = True
        return total * e.ns_per_cycle, terms

    def _compute_cycles(self, ins, e, op, a, reads, dst, data, n):
        """(cycles before the speed-up, floor cycles, speed-up).

        Passes per element and floors, from the "Estimated instruction cost" notes of
        ISA-old (aws-neuron-sdk@1db4d74e nki/api/nki/isa/__init__.py; hardware.md §1),
        pinned by tests/test_timing_costs.py::test_published_vector_costs:
          activation / tensor_scalar / tensor_copy / dropout / range_select /
          nc_stream_shuffle / vector nc_transpose / bn_stats   max(MIN_II, N)
          activation_reduce  + MIN_II (the read_accumulator instruction)
          tensor_scalar_reduce  max(MIN_II, N) + MIN_II
          tensor_tensor  max(MIN_II, N) with a PSUM input or all-bf16 contiguous
                         add/multiply/subtract, else max(MIN_II, 2N): an ALU op without
                         its own figure (divide, power, max, compares ...) is "otherwise"
          tensor_tensor_scan  max(MIN_II, 2N);  bn_aggr  max(MIN_II, 13N/3)
          reciprocal  max(MIN_II, 8N)
          tensor_reduce  N/2 (bf16 in and out, add/max), else N, no floor
          memset  N/2 for a zero bf16/fp16 fill, else N
          scalar_tensor_tensor  N (data and operand1 bf16, subtract then multiply, N
                                even), else 2N, no floor
          tensor_copy_predicated  2N all in SBUF, else N
          iota / affine_select  GPSIMD_START + N;  local_gather  its formula
          max8 / nc_find_index8  N, no floor
          dynamic source or destination  floor MIN_II_DYNAMIC
          GpSimd tensor_scalar rsqrt  4N ("throughput of reverse square root on GpSIMD
                         Engine is 4x lower than Scalar Engine", @1db4d74e
                         nki/api/nki.api.shared.rst "NKI Engine Selection"; Vector
                         reciprocal 8N vs Scalar N is stated there too)
        Choices without a published figure: GpSimd and Scalar run the Vector formulas
        (one element per lane per cycle: GpSimd's 8 cores x 512 bits move 16 fp32 per
        core = one per partition, hardware.md §1); nc_match_replace8 is max(MIN_II, N)
        (ISA-old prints "min(MIN_II, N)", read as the usual floor); every other opcode
        one pass with the MIN_II floor."""
        gen = self.gen
        engine = ins.engine
        floor = e.min_ii
        passes = 1.0
        speed = 1.0
        if op in ("tensor_copy", "tensor_scalar", "tensor_copy_predicated"):
            speed = self._perf_mode(engine, e, reads, dst)
            if op == "tensor_scalar" and engine == "gpsimd" and "rsqrt" in (
                    a.get("op0"), a.get("op1")):
                passes = 4.0  # "4x lower than Scalar Engine" (ISA-old nki-engine-sel)
            if op == "tensor_copy_predicated":
                passes = 2.0 if all(r.space == "sbuf" for r in reads) else 1.0
        elif op == "tensor_tensor":
            ins_dt = [r.dtype for r in reads[:2]] + ([dst.dtype] if dst is not None else [])
            psum_in = any(r.space == "psum" for r in reads[:2])
            bf16 = all(d == "bfloat16" for d in ins_dt)
            simple = a.get("op") in ("add", "multiply", "subtract")
            contiguous = all(_contiguous(r) for r in reads[:2])
            if psum_in or (bf16 and simple and contiguous):
                passes = 1.0
            else:
                passes = 2.0
            if (engine == "vector" and gen >= 3 and not psum_in
                    and all(r.space == "sbuf" for r in reads[:2])
                    and all(_is16(d, gen) for d in ins_dt)):
                speed = e.perf2
        elif op in ("activation", "activation_reduce", "activate2"):
            passes = 1.0
        elif op == "exponential":
            passes = 1.0 / e.exp_speedup
        elif op == "read_accumulator":
            return float(e.act_reduce_cycles), floor, 1.0
        elif op == "tensor_scalar_reduce":
            return max(floor, n) + e.min_ii, floor, 1.0
        elif op == "tensor_reduce":
            bf16 = data is not None and data.dtype == "bfloat16" and (
                dst is None or dst.dtype == "bfloat16")
            passes = 0.5 if bf16 and a.get("op") in ("add", "max", "maximum") else 1.0
            floor = 0
        elif op in ("tensor_tensor_scan", "tensor_scalar_cumulative"):
            passes = 2.0
        elif op == "bn_stats":
            passes = 1.0
        elif op == "bn_aggr":
            passes = 13.0 / 3.0
        elif op == "reciprocal":
            passes = 8.0
        elif op == "memset":
            n = dst.elems_per_partition if dst is not None else n
            zero16 = (dst is not None and dst.dtype in ("bfloat16", "float16")
                      and float(a.get("value", 1)) == 0.0)  # not int16: ISA-old memset
            passes = 0.5 if zero16 else 1.0
        elif op == "scalar_tensor_tensor":
            ops = [r for r in reads if r.role in ("data", "operand1")]
            bf = len(ops) == 2 and all(r.dtype == "bfloat16" for r in ops)
            passes = 1.0 if (bf and a.get("op0") == "subtract" and a.get("op1") == "multiply"
                             and n % 2 == 0) else 2.0
            floor = 0
        elif op in ("iota", "affine_select"):
            n = dst.elems_per_partition if (op == "iota" and dst is not None) else n
            return float(e.start_cycles + n), 0, 1.0
        elif op == "local_gather":
            E = int(a.get("num_elem_per_idx", 1))
            nv = int(a.get("num_valid_indices", n))
            t = 4.0
            isz = itemsize(data.dtype) if data is not None else 4
            c = ((28 + t * E) / (t * E)) / min(4.0 / isz, E)
            return e.start_cycles + nv * E / c, 0, 1.0
        elif op == "topk":
            return 4.0 * int(a.get("n", n)) + int(a.get("k", 0)), 0, 1.0
        elif op in ("max8", "nc_find_index8"):
            floor = 0
        elif op == "quantize_mx":
            passes = 1.0 / e.quant_epc
        elif engine == "gpsimd" and op in ("tensor_partition_reduce", "nc_n_gather",
                                           "sequence_bounds", "nonzero_with_count"):
            return float(e.start_cycles + n), 0, 1.0
        elif op == "core_barrier":
            return float(e.min_ii), 0, 1.0
        return passes * n, floor, speed

    def _perf_mode(self, engine, e, reads, dst) -> float:
        """NeuronCore-v3+ performance mode for tensor_copy / tensor_scalar (VectorE; v4
        ScalarE too): 4x SBUF->SBUF 16-bit contiguous, 2x other 16-bit cases."""
        if e.perf4 <= 1 and e.perf2 <= 1:
            return 1.0
        if engine not in ("vector", "scalar") or dst is None or not reads:
            return 1.0
        src = reads[0]
        if not (_is16(src.dtype, self.gen) and _is16(dst.dtype, self.gen)):
            return 1.0
        if src.space == "sbuf" and dst.space == "sbuf" and _contiguous(src) and _contiguous(dst):
            return e.perf4
        return e.perf2

    # -- sync engine --------------------------------------------------------
    def sync(self, ins) -> tuple[float, dict]:
        return self.sync_cycles * 1e9 / self.sync_clock, {"cycles": self.sync_cycles,
                                                           "clock_hz": self.sync_clock}

    # -- Tensor Engine ------------------------------------------------------
    def matmul(self, ins) -> tuple[float, float, dict, tuple]:
        """(MultiplyMoving ns, exposed LoadStationary ns, terms, PE cells used)."""
        a = ins.attrs
        # it reads the attrs only, which loop copies share: first by the dict's identity
        hit = self._matmul_by_attrs.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        key = _matmul_key(a)
        try:
            res = self._matmul_memo[key]
        except (KeyError, TypeError):
            res = _memoized(self._matmul_memo, key, self._matmul, ins)
        by_attrs = self._matmul_by_attrs
        if len(by_attrs) >= MEMO_LIMIT:
            by_attrs.clear()
        by_attrs[id(a)] = (a, res)  # (the dict kept: its id stays its own)
        return res

    def _matmul(self, ins) -> tuple[float, float, dict, tuple]:
        a = ins.attrs
        n = int(a.get("N", 1))
        m = int(a.get("M", 1))
        sd, md = a.get("stationary_dtype", ""), a.get("moving_dtype", "")
        fp32 = sd in _FP32 or md in _FP32
        factor = 1.0
        if fp32:
            if a.get("is_transpose"):
                factor = self.te_transpose_fp32
            else:
                factor = float(self.te_fp32)
                if a.get("is_stationary_onezero") or a.get("is_moving_onezero"):
                    factor /= self.te_onezero
        mm = max(n, self.te_min_ii) * factor
        ls = math.ceil(m / self.te_fast_ls) * factor
        terms = {"cycles": mm, "N": n, "M": m, "K": int(a.get("K", 0)),
                 "clock_hz": self.te.clock_hz, "dtype_factor": factor,
                 "perf_mode": a.get("perf_mode", "none")}
        (sr, sc) = tuple(a.get("tile_position", (0, 0)) or (0, 0))
        (rs, cs) = tuple(a.get("tile_size", (self.te.rows, self.te.cols))
                         or (self.te.rows, self.te.cols))
        cell = self.te_cell
        rows = range(sr // cell, (sr + rs) // cell)
        cols = range(sc // cell, (sc + cs) // cell)
        ncol = self.te.cols // cell
        cells = tuple(r * ncol + c for r in rows for c in cols)
        return mm * self.te_ns, ls * self.te_ns, terms, cells


def _matmul_key(a: dict) -> tuple:
    """The memo key of a matmul's cost: the attrs values it reads (_MATMUL_READS)."""
    tp, ts = a.get("tile_position"), a.get("tile_size")
    return (tuple(map(a.get, _MATMUL_ATTRS, _ABSENT)), tuple(tp) if tp else tp,
            tuple(ts) if ts else ts)


def _main_input(reads, op):
    """The access whose elements per partition set N: the largest on-chip input (a
    [P, 1] scale or bias never is)."""
    best = None
    for r in reads:
        if best is None or r.elems_per_partition > best.elems_per_partition:
            best = r
    return best


class DmaCost:
    """DMA transfers (hardware.md §1 DMA).

    A transfer runs on the 16 DMA engines of its core, split by partition
    (`partitions_per_engine` each, so a 128-partition transfer uses all 16 and a
    4-partition one only the first); each engine moves its share at
    `bandwidth_per_engine * eff(contiguous bytes)`, eff(b) = b / (b + element overhead)
    (the descriptor-element overhead, fitted to the published throughput-vs-bytes figure).
    The transfer ends `fixed_cost_ns` (descriptor setup, synchronisation, semaphore to
    start) plus its data time after it is issued; its queue issues the next transfer
    `max(queue_issue_interval, data time)` later (the per-transfer overhead overlaps the
    previous transfer's data, so a stream of small transfers is bound by the issue rate:
    the "DMA packet rate" limit). HBM traffic goes through the core's HBM stack, shared
    with the other cores on that stack."""

    def __init__(self, chip):
        d = chip.core.dma
        x = d.extras
        self.engines = d.engines
        self.ppe = max(1, d.partitions_per_engine)
        self.bw = d.bandwidth_per_engine / 1e9  # bytes per ns
        self.fixed = float(d.fixed_cost_ns)
        self.dge = float(d.dge_cost_ns)
        self.dge_instances = int(x.get("dge_instances", 1))
        self.interval = float(x.get("queue_issue_interval_ns", d.fixed_cost_ns))
        self.elem_overhead = float(x.get("element_overhead_bytes", 0))
        self.transpose_hbm = float(x.get("transpose_efficiency_hbm_to_sbuf", 0) or 0)
        self.transpose_sbuf = float(x.get("transpose_efficiency_sbuf_to_sbuf", 0) or 0)
        self.rmw = float(x.get("sbuf_rmw_efficiency", 1.0))
        self.stack_bw = chip.hbm_stack_bandwidth / 1e9
        self.cores_per_stack = max(1, chip.cores_per_chip // max(1, chip.hbm_stacks))
        self.gen = chip.generation
        self._engine_sets: dict = {}
        self._memo: dict = {}

    def eff(self, contiguous: int) -> float:
        c = max(1, contiguous)
        return c / (c + self.elem_overhead)

    def cost(self, ins) -> dict:
        """The per-engine data times of one transfer and its HBM bytes (memoized on the
        operands' sizes, runs and partitions; the dict is shared: do not change it).
        dma_costs prices a program's one-read-one-write transfers once per row of
        compiled_deps.transfer_heads (opcode, attrs values `_DMA_ATTRS` and fields of
        the access columns): a field added to this key goes there too."""
        a = ins.attrs
        writes, reads = held_writes(ins), held_reads(ins)
        w0 = writes[0] if writes else None
        if len(writes) == 1 and len(reads) == 1:  # the usual transfer: one flat tuple
            r = reads[0]
            key = (ins.opcode, a.get("bytes"), a.get("dst_rmw_op"), a.get("dge_mode"),
                   w0.space, w0.bytes, w0.contiguous_bytes, w0.p_lo, w0.p_hi,
                   r.role, r.space, r.bytes, r.contiguous_bytes, r.p_lo, r.p_hi,
                   w0.shape[0] if w0.shape else None)
        else:
            key = (ins.opcode, a.get("bytes"), a.get("dst_rmw_op"), a.get("dge_mode"),
                   tuple([(x.space, x.bytes, x.contiguous_bytes, x.p_lo, x.p_hi)
                          for x in writes]),
                   tuple([(x.role, x.space, x.bytes, x.contiguous_bytes, x.p_lo, x.p_hi)
                          for x in reads]),
                   w0.shape[0] if w0 is not None and w0.shape else None)
        try:
            return self._memo[key]
        except (KeyError, TypeError):
            return _memoized(self._memo, key, self._cost, ins)

    def _cost(self, ins) -> dict:
        a = ins.attrs
        side = None
        nbytes_w = 0
        hbm = 0
        run = None
        writes, reads = held_writes(ins), held_reads(ins)
        for x in writes:
            nbytes_w += x.bytes
            if x.space == "hbm":
                hbm += x.bytes
            elif side is None:
                side = x
            c = x.contiguous_bytes
            if c > 0 and (run is None or c < run):
                run = c
        for x in reads:
            if x.role == "indirect_offset":
                continue
            if x.space == "hbm":
                hbm += x.bytes
            elif side is None:
                side = x
            c = x.contiguous_bytes
            if c > 0 and (run is None or c < run):
                run = c
        nbytes = int(a.get("bytes") or nbytes_w or 0)
        if side is not None:
            parts = max(1, side.p_hi - side.p_lo)
            p0 = side.p_lo
        else:  # HBM -> HBM: rows of the destination
            w = writes[0] if writes else None
            parts = max(1, w.shape[0] if w is not None and w.shape else 1)
            p0 = 0
        # contiguous run: the smaller of the two sides' innermost runs, within a row
        per_part = max(1, nbytes // parts)
        if run is None or run > per_part:
            run = per_part
        eff = self.eff(run)
        op = ins.opcode
        kind = "copy"
        if op == "dma_transpose":
            kind = "transpose"
            src_hbm = any(r.space == "hbm" for r in reads)
            f = self.transpose_hbm if src_hbm else self.transpose_sbuf
            if f > 0:  # the engines transpose at a fraction of their copy throughput
                eff = f * self.eff(per_part)
        elif op == "dma_compute" or a.get("dst_rmw_op"):
            kind = "compute"
            eff *= self.rmw
        # engines: partitions [p0, p0 + parts) in groups of `ppe`
        ppe = self.ppe
        n_eng = min(self.engines, -(-((p0 % ppe) + parts) // ppe))
        first = (p0 // ppe) % self.engines
        engines = self._engine_sets.get((first, n_eng))
        if engines is None:
            engines = self._engine_sets[(first, n_eng)] = tuple(
                (first + i) % self.engines for i in range(n_eng))
        share = -(-parts // n_eng)  # partitions on the busiest engine
        eng_bytes = nbytes * share / parts
        data_ns = eng_bytes / (self.bw * eff) if nbytes else 0.0
        mode = a.get("dge_mode")
        dge = self.dge if mode in ("hwdge", "swdge") else 0.0
        return {"bytes": nbytes, "engines": engines, "data_ns": data_ns, "eff": eff,
                "contiguous_bytes": run, "hbm_bytes": hbm, "dge_ns": dge, "dge_mode": mode,
                "kind": kind}
