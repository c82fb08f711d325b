"""The remaining instructions: top-8 search and replace (Vector), cross-partition
shuffles (Vector), gathers, segment bounds, nonzero compaction and top-k (GpSimd);
`NkiInstruction` handles with explicit scheduling dependencies; and the target's
NeuronCore version.

Choices the public documents leave open (also in the lead's docs/numerics.md):
- max8 / nc_find_index8 / nc_match_replace8 compare in fp32; NaN ranks above +inf in
  max8 and topk; a NaN in `vals` never matches.
- nc_match_replace8 writes the all-ones sentinel (as nc_find_index8 does) to `dst_idx`
  for a value it does not find, and replaces nothing for it.
- topk's output is an ascending 16-partition snake (position i of the K results at
  partition i % 16, column i // 16 of its group); ties rank the lower snake index
  higher; slots past K are left unwritten.
- local_gather's index tile is read partition-first per GpSimd core (its free dims
  flattened row-major); out-of-range indices (undefined on hardware) are errors.
"""
from __future__ import annotations

import math

import numpy as np

from ..chips import load_chip
from ..machine import runtime
from ..machine.errors import NkiValidationError, OutOfBoundsError, describe
from ..machine.record import attrs_replaced
from ..machine.tensor import NKIObject, NkiTensor
from ..numerics.cast import cast
from ..numerics.dtypes import bfloat16, float32, int32, uint16, uint32
from .base import Instr, flat, free_size
from .enums import nc_version as NcVersion
from .registers import loop_path


# -- instruction handles ----------------------------------------------------------
class NkiInstruction(NKIObject):
    """Handle to a recorded instruction (`handle` is its record entry). ISA calls in
    this family return one; `c.depends_on(a, b)` records that `c` runs after `a` and
    `b` in the consumer's record attrs as `depends_on: [producer record indices]`."""

    def __init__(self, handle):
        self.handle = handle
        self.loops = loop_path()

    @property
    def index(self) -> int:
        return self.handle.index

    def depends_on(self, *producers: "NkiInstruction") -> "NkiInstruction":
        for p in producers:
            if not isinstance(p, NkiInstruction):
                raise NkiValidationError(f"depends_on: producers must be NkiInstruction "
                                         f"handles, got {type(p).__name__}", op="depends_on")
            if p.handle.core != self.handle.core:
                raise NkiValidationError(
                    f"depends_on: producer {p.handle.opcode} (#{p.index}) runs on logical "
                    f"core {p.handle.core} and consumer {self.handle.opcode} (#{self.index}) "
                    f"on core {self.handle.core}; cross-core order needs core_barrier or "
                    "sendrecv", op="depends_on")
            if p.loops != self.loops[:len(p.loops)]:
                raise NkiValidationError(
                    f"depends_on: producer {p.handle.opcode} (#{p.index}) and consumer "
                    f"{self.handle.opcode} (#{self.index}) are at different dynamic-loop "
                    "nesting (an edge cannot go into or out of a fori_loop/while_loop/"
                    "dynamic_range body; the producer may only be in an enclosing scope)",
                    op="depends_on")
            attrs = self.handle.attrs  # shared by expanded copies: replaced, not changed
            deps = attrs.get("depends_on", [])
            if p.index not in deps:
                self.handle.attrs = {**attrs, "depends_on": deps + [p.index]}
                run = runtime.current_run()
                if run is not None:  # (its blocks of copies read their attrs now)
                    attrs_replaced(run.program.copied, self.handle.index)
        return self

    def __repr__(self) -> str:
        return f"NkiInstruction(#{self.index} core{self.handle.core} " \
               f"{self.handle.engine}.{self.handle.opcode})"


def last_instruction() -> NkiInstruction:
    """A handle to the instruction the current core recorded last."""
    run = runtime.active_run()
    core = runtime.program_id()
    for ins in reversed(run.program.instructions):
        if ins.core == core:
            return NkiInstruction(ins)
    raise NkiValidationError("no instruction has been recorded on this core yet")


def _target_chip():
    run = runtime.current_run()
    return run.chip if run is not None else load_chip()


def get_nc_version():
    """The nc_version of the target (the running kernel's chip, else the default
    target: $NEURON_PLATFORM_TARGET_OVERRIDE or trn2)."""
    return NcVersion(_target_chip().generation)


def get_nc_sub_version():
    """The silicon revision within the generation: the chip file's
    `extras.nc_sub_version`, 0 (first revision) when it does not say."""
    return int(_target_chip().extras.get("nc_sub_version", 0))


# -- helpers ---------------------------------------------------------------------
def _start_partition(t: NkiTensor) -> int:
    """Absolute SBUF/PSUM partition of a view's first row."""
    return t.storage.partition + t.offset // t.row_elems


start_partition = _start_partition  # for lowerings (language/layout.py)


def _all_ones(dtype) -> int:
    return int(np.iinfo(dtype.np).max) if dtype.kind == "uint" else -1


def _elements(ins: Instr, role: str, t: NkiTensor, lo: int, hi: int):
    n = free_size(t)
    if not (lo <= n <= hi):
        ins.fail(f"{role} {describe(t)} has {n} elements per partition; "
                 f"{ins.opcode} reads between {lo} and {hi}")


def _rank(ins: Instr, role: str, t: NkiTensor, most: int):
    if t.ndim > most:
        ins.fail(f"{role} {describe(t)} has rank {t.ndim}; {ins.opcode} "
                 f"accepts at most rank {most}")


def _int32(ins: Instr, role: str, v) -> int:
    ins.require(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                and -(1 << 31) <= int(v) < (1 << 31),
                f"{role}={v!r} must be an int32 value")
    return int(v)


# -- Vector engine: top-8 ----------------------------------------------------------
def max8(dst, src, name=None):
    """dst[p, :] = the 8 largest values of src[p] (read as fp32), descending."""
    with Instr("max8", None, default="vector", name=name) as ins:
        ins.operand("dst", dst)
        ins.operand("src", src)
        ins.same_partitions(("src", src), ("dst", dst))
        _rank(ins, "src", src, 5)
        _elements(ins, "src", src, 8, 16384)
        ins.require(free_size(dst) == 8, f"dst {describe(dst)} must hold exactly 8 "
                    "elements per partition")
        a = ins.read_fp32("src", src)
        ins.write("dst", dst, lambda: _top8(flat(a)).reshape(dst.shape))
    return last_instruction()


def _top8(x: np.ndarray) -> np.ndarray:
    """Descending top 8 per row; NaN ranks above +inf (NumPy's sort order)."""
    return np.sort(x, axis=1)[:, ::-1][:, :8]


def _index_dtype(ins: Instr, role: str, t: NkiTensor, allowed=(uint16, uint32)):
    ins.require(t.dtype in allowed, f"{role} {describe(t)} must be "
                f"{' or '.join(str(a) for a in allowed)}")


def nc_find_index8(dst, data, vals, name=None):
    """dst[p, i] = position of the first occurrence of vals[p, i] in data[p] (a
    value repeated in vals takes the next occurrence each time); not found: all ones."""
    with Instr("nc_find_index8", None, default="vector", name=name) as ins:
        ins.operand("dst", dst)
        ins.operand("data", data)
        ins.operand("vals", vals)
        ins.same_partitions(("data", data), ("vals", vals), ("dst", dst))
        _rank(ins, "data", data, 5)
        _elements(ins, "data", data, 8, 16384)
        ins.require(free_size(vals) == 8, f"vals {describe(vals)} must hold exactly 8 "
                    "values per partition")
        ins.require(free_size(dst) == 8, f"dst {describe(dst)} must hold exactly 8 "
                    "indices per partition")
        _index_dtype(ins, "dst", dst)
        d, v = ins.read_fp32("data", data), ins.read_fp32("vals", vals)
        if d is None:
            ins.write("dst", dst, None)
        else:
            idx = _match(flat(d), flat(v), order=range(8), miss=_all_ones(dst.dtype))
            ins.write("dst", dst, idx.reshape(dst.shape))
    return last_instruction()


def _match(d: np.ndarray, v: np.ndarray, order, miss: int) -> np.ndarray:
    """For each row, pair vals (visited in `order`) with the first not-yet-taken
    position of an equal data value; `miss` where there is none."""
    out = np.full(v.shape, miss, dtype=np.int64)
    for p in range(d.shape[0]):
        taken: set[int] = set()
        row = d[p]
        for i in order:
            hits = np.flatnonzero(row == v[p, i])
            for j in hits:
                if int(j) not in taken:
                    taken.add(int(j))
                    out[p, i] = int(j)
                    break
    return out


def nc_match_replace8(dst, data, vals, imm, dst_idx=None, name=None):
    """dst = data with the first occurrence of each of the 8 vals[p] replaced by imm;
    duplicates in vals are visited from i = 7 down to 0, each taking the next
    occurrence. dst_idx (optional) gets the matched positions."""
    with Instr("nc_match_replace8", None, default="vector", name=name) as ins:
        ins.operand("dst", dst)
        ins.operand("data", data)
        ins.operand("vals", vals)
        ins.same_partitions(("data", data), ("vals", vals), ("dst", dst))
        _rank(ins, "data", data, 5)
        _elements(ins, "data", data, 8, 16384)
        ins.same_elements("data", data, "dst", dst)
        ins.require(free_size(vals) == 8, f"vals {describe(vals)} must hold exactly 8 "
                    "values per partition")
        try:
            imm = float(imm)
        except (TypeError, ValueError):
            ins.fail(f"imm={imm!r} must be a number")
        if dst_idx is not None:
            ins.operand("dst_idx", dst_idx)
            ins.same_partitions(("data", data), ("dst_idx", dst_idx))
            ins.require(free_size(dst_idx) == 8, f"dst_idx {describe(dst_idx)} must hold "
                        "exactly 8 indices per partition")
            ins.require(dst_idx.dtype.is_int and dst_idx.dtype.itemsize >= 2,
                        f"dst_idx {describe(dst_idx)} must be an integer type of 16 or 32 "
                        "bits (uint32 as in the docs)")
        raw = ins.read("data", data)
        v = ins.read_fp32("vals", vals)
        if raw is None:
            ins.write("dst", dst, None)
            if dst_idx is not None:
                ins.write("dst_idx", dst_idx, None)
        else:
            d = flat(raw)
            miss = -1
            idx = _match(d.astype(np.float32), flat(v), order=range(7, -1, -1), miss=miss)
            rows = np.repeat(np.arange(d.shape[0]), 8).reshape(idx.shape)
            hit = idx >= 0
            if data.dtype.np == dst.dtype.np and data.dtype.kind == dst.dtype.kind:
                out = d.copy()
                out[rows[hit], idx[hit]] = cast(np.float32(imm), dst.dtype)
                ins.write("dst", dst, out.reshape(dst.shape), raw=True)
            else:
                out = d.astype(np.float32)
                out[rows[hit], idx[hit]] = np.float32(imm)
                ins.write("dst", dst, out.reshape(dst.shape))
            if dst_idx is not None:
                idx = np.where(hit, idx, _all_ones(dst_idx.dtype))
                ins.write("dst_idx", dst_idx, idx.reshape(dst_idx.shape))
    return last_instruction()


# -- Vector engine: cross-partition shuffle ------------------------------------------
_SHUFFLE_STARTS = {32: (0, 32, 64, 96), 64: (0, 64), 96: (0,), 128: (0,)}


def nc_stream_shuffle(dst, src, shuffle_mask, name=None):
    """Per 32-partition quadrant q: dst[q*32 + i] = src[q*32 + shuffle_mask[i]];
    mask value 255 leaves dst[q*32 + i] unmodified."""
    with Instr("nc_stream_shuffle", None, default="vector", name=name) as ins:
        ins.operand("dst", dst)
        ins.operand("src", src)
        ins.require(dst.dtype == src.dtype, f"dst {describe(dst)} must have the dtype of "
                    f"src {describe(src)}")
        ins.same_elements("src", src, "dst", dst)
        try:
            mask = [int(m) for m in shuffle_mask]
        except (TypeError, ValueError):
            ins.fail(f"shuffle_mask must be a list of 32 integers, got {shuffle_mask!r}")
        ins.require(len(mask) == 32, f"shuffle_mask must have 32 elements, got {len(mask)}")
        bad = [m for m in mask if not (0 <= m < 32 or m == 255)]
        ins.require(not bad, f"shuffle_mask values must be in [0, 32) or 255 (keep); got "
                    f"{bad[:4]}")
        sp, dp = src.shape[0], dst.shape[0]
        active = -(-max(sp, dp) // 32) * 32
        s0, d0 = _start_partition(src), _start_partition(dst)
        for role, start in (("src", s0), ("dst", d0)):
            ins.require(start in _SHUFFLE_STARTS[active],
                        f"{role} starts at partition {start}; with {active} active "
                        f"partitions it must start at one of {_SHUFFLE_STARTS[active]}")
        plan = {}
        for d in range(dp):
            q, i = divmod(d, 32)
            if mask[i] == 255:
                continue
            s = q * 32 + mask[i]
            ins.require(s < sp, f"dst partition {d} takes src partition {s} "
                        f"(shuffle_mask[{i}]={mask[i]} in quadrant {q}), but src "
                        f"{describe(src)} has {sp} partitions")
            plan[d] = s
        ins.attrs["active_partitions"] = active
        raw = ins.read("src", src)
        for a, b in _runs(sorted(plan)):
            view = dst[a:b]
            if raw is None:
                ins.write("dst", view, None)
            else:
                rows = flat(raw)[[plan[d] for d in range(a, b)]]
                ins.write("dst", view, rows.reshape(view.shape), raw=True)
    return last_instruction()


def _runs(ps):
    """[(start, stop)] of consecutive runs in a sorted list of ints."""
    out = []
    for p in ps:
        if out and out[-1][1] == p:
            out[-1][1] = p + 1
        else:
            out.append([p, p + 1])
    return [tuple(r) for r in out]


# -- GpSimd engine: gathers --------------------------------------------------------
_LOCAL_GATHER_ELEMS = (1, 2, 4, 8, 16, 32)


def local_gather(dst, src_buffer, index, num_elem_per_idx=1, num_valid_indices=None,
                 name=None):
    """Per GpSimd core (16 partitions): indices = its index slice read partition-first;
    dst[p, k*E:(k+1)*E] = src_buffer[p, idx[k] : idx[k]+E] for each partition p of the
    core (idx is an element offset in the flattened free dims)."""
    with Instr("local_gather", None, default="gpsimd", name=name) as ins:
        ins.operand("dst", dst, buffers=("sbuf",))
        ins.operand("src_buffer", src_buffer, buffers=("sbuf",))
        ins.operand("index", index, buffers=("sbuf",))
        P = src_buffer.shape[0]
        ins.require(index.shape[0] == P and P % 16 == 0,
                    f"src_buffer {describe(src_buffer)} and index {describe(index)} must "
                    "have the same partition count, a multiple of 16")
        ins.same_partitions(("src_buffer", src_buffer), ("dst", dst))
        ins.require(index.dtype == uint16, f"index {describe(index)} must be uint16")
        ins.require(dst.dtype == src_buffer.dtype, f"dst {describe(dst)} must have the "
                    f"dtype of src_buffer {describe(src_buffer)} (no casting)")
        E = num_elem_per_idx
        ins.require(E in _LOCAL_GATHER_ELEMS, f"num_elem_per_idx={E!r} must be one of "
                    f"{_LOCAL_GATHER_ELEMS}")
        per_core = 16 * free_size(index)
        nv = per_core if num_valid_indices is None else num_valid_indices
        ins.require(isinstance(nv, (int, np.integer)) and 1 <= nv <= per_core,
                    f"num_valid_indices={nv!r} must be in [1, {per_core}] (the indices in "
                    "each 16-partition slice of index)")
        ins.require(nv <= 4096, f"num_valid_indices={nv} exceeds 4096 indices per GpSimd "
                    "core")
        ins.require(free_size(dst) == nv * E, f"dst {describe(dst)} must hold "
                    f"num_valid_indices * num_elem_per_idx = {nv * E} elements per partition")
        ins.attrs.update(num_elem_per_idx=E, num_valid_indices=int(nv))
        src = ins.read("src_buffer", src_buffer)
        idx = ins.read("index", index)
        if src is None:
            ins.write("dst", dst, None)
        else:
            ins.write("dst", dst, _local_gather(ins, flat(src), flat(idx), nv, E, src_buffer)
                      .reshape(dst.shape), raw=True)
    return last_instruction()


def _local_gather(ins, src, idx, nv, E, src_buffer):
    P, F = src.shape
    out = np.empty((P, nv * E), dtype=src.dtype)
    for c in range(P // 16):
        rows = slice(c * 16, (c + 1) * 16)
        ix = idx[rows].T.reshape(-1)[:nv].astype(np.int64)
        bad = ix + E > F
        if bad.any():
            k = int(np.argmax(bad))
            ins.fail(f"GpSimd core {c}: index {int(ix[k])} (+{E} elements) is outside "
                     f"the {F} elements per partition of src_buffer "
                     f"{describe(src_buffer)}", OutOfBoundsError)
        cols = (ix[:, None] + np.arange(E)).reshape(-1)
        out[rows] = src[rows][:, cols]
    return out


def nc_n_gather(dst, data, indices, name=None):
    """dst[p, j] = data[p, indices[p, j]] over data's flattened free dims."""
    with Instr("nc_n_gather", None, default="gpsimd", name=name) as ins:
        ins.operand("dst", dst, buffers=("sbuf",))
        ins.operand("data", data, buffers=("sbuf",))
        ins.operand("indices", indices, buffers=("sbuf",))
        ins.same_partitions(("data", data), ("indices", indices), ("dst", dst))
        ins.require(indices.dtype == uint32, f"indices {describe(indices)} must be uint32")
        ins.require(dst.dtype == data.dtype, f"dst {describe(dst)} must have the dtype of "
                    f"data {describe(data)}")
        ins.same_elements("indices", indices, "dst", dst)
        F = free_size(data)
        ins.attrs["groups"] = math.ceil(free_size(dst) / 512)
        d = ins.read("data", data)
        ix = ins.read("indices", indices)
        if d is None:
            ins.write("dst", dst, None)
        else:
            ix = flat(ix).astype(np.int64)
            bad = ix >= F
            if bad.any():
                p, j = (int(x) for x in np.argwhere(bad)[0])
                ins.fail(f"indices[{p}, {j}] = {int(ix[p, j])} is outside [0, {F}) (the "
                         f"elements per partition of data {describe(data)})",
                         OutOfBoundsError)
            ins.write("dst", dst, np.take_along_axis(flat(d), ix, axis=1).reshape(dst.shape),
                      raw=True)
    return last_instruction()


# -- GpSimd engine: segments, nonzero, top-k -----------------------------------------
def sequence_bounds(dst, segment_ids, name=None):
    """For each element, [start, end) of the run of equal segment ids it belongs to
    (dst[..., 0, :] = start, dst[..., 1, :] = end); id 0 is padding (start n, end -1)."""
    with Instr("sequence_bounds", None, default="gpsimd", name=name) as ins:
        ins.operand("dst", dst, buffers=("sbuf",))
        ins.operand("segment_ids", segment_ids, buffers=("sbuf",))
        for role, t in (("segment_ids", segment_ids), ("dst", dst)):
            ins.require(t.dtype in (float32, int32), f"{role} {describe(t)} must be "
                        "float32 or int32")
        ins.require(segment_ids.shape[0] == 1, f"segment_ids {describe(segment_ids)}: the "
                    "partition dimension must be 1")
        ins.same_partitions(("segment_ids", segment_ids), ("dst", dst))
        n = free_size(segment_ids)
        ins.require(free_size(dst) == 2 * n, f"dst {describe(dst)} must hold 2 x {n} "
                    "elements per partition (start and end of each element's segment)")
        raw = ins.read("segment_ids", segment_ids)
        if raw is None:
            ins.write("dst", dst, None)
        else:
            s = flat(raw).astype(np.float64)
            if (s < 0).any():
                ins.fail(f"segment_ids {describe(segment_ids)} holds negative ids; ids must "
                         "be non-negative (0 marks padding)")
            ins.write("dst", dst, _bounds(s).reshape(dst.shape))
    return last_instruction()


def _bounds(s: np.ndarray) -> np.ndarray:
    P, n = s.shape
    out = np.empty((P, 2, n), dtype=np.int64)
    for p in range(P):
        row = s[p]
        new = np.ones(n, dtype=bool)
        new[1:] = row[1:] != row[:-1]
        run = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], n)
        start, end = starts[run], ends[run]
        pad = row == 0
        out[p, 0] = np.where(pad, n, start)
        out[p, 1] = np.where(pad, -1, end)
    return out.reshape(P, 2 * n)


def nonzero_with_count(dst, src, index_offset=0, padding_val=-1, name=None):
    """On partitions 0, 16, ..., 112 only: dst[p] = [positions of nonzero src[p] +
    index_offset..., padding_val..., count]. Other partitions are not touched."""
    with Instr("nonzero_with_count", None, default="gpsimd", name=name) as ins:
        ins.require_generation(3, "nonzero_with_count")
        ins.operand("dst", dst, buffers=("sbuf",))
        ins.operand("src", src, buffers=("sbuf",))
        ins.require(src.dtype in (float32, int32), f"src {describe(src)} must be float32 "
                    "or int32")
        ins.require(dst.dtype == int32, f"dst {describe(dst)} must be int32")
        ins.same_partitions(("src", src), ("dst", dst))
        n = free_size(src)
        ins.require(free_size(dst) == n + 1, f"dst {describe(dst)} must have one more "
                    f"element per partition than src {describe(src)} ({n + 1}, the last "
                    "holds the count)")
        off = _int32(ins, "index_offset", index_offset)
        pad = _int32(ins, "padding_val", padding_val)
        for role, t in (("src", src), ("dst", dst)):
            ins.require(_start_partition(t) % 16 == 0,
                        f"{role} {describe(t)} starts at partition {_start_partition(t)}; "
                        "it must start on a GpSimd core boundary (a multiple of 16)")
        ins.attrs.update(index_offset=off, padding_val=pad)
        for p in range(0, src.shape[0], 16):
            raw = ins.read("src", src[p:p + 1])
            if raw is None:
                ins.write("dst", dst[p:p + 1], None)
                continue
            row = flat(raw)[0]
            nz = np.flatnonzero(row != 0)
            out = np.full(n + 1, pad, dtype=np.int64)
            out[:len(nz)] = nz + off
            out[n] = len(nz)
            ins.write("dst", dst[p:p + 1], out.reshape(dst[p:p + 1].shape))
    return last_instruction()


def topk(val_dst, idx_dst, src, n, name=None):
    """Per group of 16 partitions, the K = val_dst free size largest of the n bf16
    values of src's 16-partition snake (element e at partition e % 16, column e // 16),
    written as an ascending snake: val_dst gets the values, idx_dst their positions e."""
    with Instr("topk", None, default="gpsimd", name=name) as ins:
        ins.operand("val_dst", val_dst, buffers=("sbuf",))
        ins.operand("idx_dst", idx_dst, buffers=("sbuf",))
        ins.operand("src", src, buffers=("sbuf",))
        ins.require(src.dtype == bfloat16, f"src {describe(src)} must be bfloat16")
        ins.require(val_dst.dtype == bfloat16, f"val_dst {describe(val_dst)} must be "
                    "bfloat16")
        ins.require(idx_dst.dtype == uint32, f"idx_dst {describe(idx_dst)} must be uint32")
        P = src.shape[0]
        ins.require(P % 16 == 0, f"src {describe(src)}: the partition dimension must be a "
                    "multiple of 16")
        ins.same_partitions(("src", src), ("val_dst", val_dst), ("idx_dst", idx_dst))
        for role, t in (("val_dst", val_dst), ("idx_dst", idx_dst)):
            ins.require(t.ndim == 2, f"{role} {describe(t)} must be 2-D [par_dim, k]")
        K = free_size(val_dst)
        ins.require(free_size(idx_dst) == K, f"idx_dst {describe(idx_dst)} and val_dst "
                    f"{describe(val_dst)} must have the same k")
        ins.require(isinstance(n, (int, np.integer)) and 8 <= n < 65536,
                    f"n={n!r} must be an int with 8 <= n < 65536")
        ins.require(1 <= K < 32768 and K <= n, f"k={K} (val_dst free size) must satisfy "
                    f"1 <= k < 32768 and k <= n={n}")
        ins.require(free_size(src) >= -(-n // 16), f"src {describe(src)} must hold at "
                    f"least ceil(n/16) = {-(-n // 16)} elements per partition")
        ins.attrs.update(n=int(n), k=K)
        raw = ins.read("src", src)
        vals = idxs = None
        if raw is not None:
            cols = -(-K // 16)
            vals = np.zeros((P, cols), dtype=bfloat16.np)
            idxs = np.zeros((P, cols), dtype=np.uint32)
            r = flat(raw)
            for g in range(P // 16):
                snake = r[g * 16:(g + 1) * 16].T.reshape(-1)[:n]
                v = snake.astype(np.float32)
                e = np.arange(n)
                order = np.lexsort((-e, v))[-K:]  # ascending; ties: lower e ranks higher
                pos = np.arange(K)
                vals[g * 16 + pos % 16, pos // 16] = snake[order]
                idxs[g * 16 + pos % 16, pos // 16] = order
        full, rem = divmod(K, 16)
        pieces = []
        if full:
            pieces.append((slice(0, P), slice(0, full)))
        if rem:
            pieces += [(slice(g * 16, g * 16 + rem), slice(full, full + 1))
                       for g in range(P // 16)]
        for rows, cols_ in pieces:
            for role, t, data in (("val_dst", val_dst, vals), ("idx_dst", idx_dst, idxs)):
                view = t[rows, cols_]
                ins.write(role, view, None if data is None else data[rows, cols_], raw=True)
    return last_instruction()


__all__ = ["NkiInstruction", "get_nc_version", "get_nc_sub_version", "max8",
           "nc_find_index8", "nc_match_replace8", "nc_stream_shuffle", "local_gather",
           "nc_n_gather", "sequence_bounds", "nonzero_with_count", "topk"]
