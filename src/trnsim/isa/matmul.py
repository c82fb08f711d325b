"""Tensor Engine instructions: `nc_matmul` and `nc_transpose` (the MX matmul is in mx.py).

Numerics. The PE array multiplies the exact input values (every matmul input type is
exact in fp32) and accumulates in fp32. trnsim forms the products and their sum in
float64 (products of two fp32 values are exact there) and rounds the sum once to fp32,
so the result does not depend on a summation order the hardware does not publish; it
can differ from a sequential fp32 sum in the last bits. tf32 operands are rounded to
tf32 (RNE) as they enter the array. The fp32 result then goes to PSUM: it overwrites the
destination, or is added to it in fp32 (bf16 PSUM on NeuronCore-v4: upcast, fp32 add,
RNE back to bf16), per `accumulate`.

Accumulation mode (`TRNSIM_MATMUL_ACCUMULATION`, read at each matmul):
- `exact` (the default): the float64 sum above.
- `fp32`: one fp32 GEMM (the host BLAS's sgemm): the products are exact (fp8, bf16,
  fp16 and tf32 products fit fp32; fp32 x fp32 products are exact inside the fused
  multiply-adds of the x86-64 AVX2/AVX-512 and ARM BLAS kernels) and are summed in fp32
  in the BLAS's order, as the PE sums in fp32 in an unpublished order. About twice as
  fast. For finite operands the result equals `exact` bit for bit whenever every
  partial sum is an fp32 number: e.g. every product a multiple of 2^q and the sum of
  |products| of each output at most 2^(24+q) (integers times a power of two), or one
  nonzero product per output (a one-hot / permutation operand). Otherwise each output
  may differ by the rounding errors of an fp32 sum of K terms, at most about
  K * 2^-24 * sum |products| and typically a few ulps, and then depends on the host
  CPU's BLAS kernels; partial sums can overflow to inf where the float64 sum does not.

Accumulation groups. `accumulate=None` means: the first matmul write to a PSUM location
overwrites, later ones accumulate. trnsim tracks this per PSUM byte (`CoreState.psum_group`):
a matmul marks the bytes of its `dst` with the id of dst's PSUM tensor; a write by any
other instruction (memset, tensor_copy, DMA, ...) clears the mark, and a new PSUM
tensor (even at a reused address) has a new id. An element accumulates iff all of its
bytes carry dst's id. `accumulate=True`/`False` are honoured as given.

Transpose. With `is_transpose=True` on NeuronCore-v3+ the PE routes values instead of
multiplying: where column n of `moving` is one-hot (a single 1.0, zeros elsewhere),
dst[:, n] is the selected row of `stationary`, bit-exact (NaN/Inf and -0.0 kept); other
columns are computed as a matmul (with a warning). On NeuronCore-v2 transpose mode is
only a profiler hint: the instruction is an ordinary fp32 matmul against the identity,
so a NaN/Inf in `stationary` spreads along its output row (0*Inf = NaN), -0.0 becomes
+0.0, and the fp32 result is rounded to dst's dtype.
"""
from __future__ import annotations

import functools
import itertools
import os
import threading

import numpy as np

from ..machine.access import (BOX, _byte_index, _decompose, _flag_view,
                              describe_access, element_offsets, read_converted)
from ..machine.errors import UnsupportedError, describe
from ..machine.tensor import NkiTensor
from ..numerics.cast import cast, round_tf32, to_fp32
from ..numerics.dtypes import (bfloat16, float8_e4m3, float8_e4m3fn, float8_e5m2, float16,
                               float32, tfloat32)
from .base import ChecksMemo, Instr, _fp32_copy, _readonly, engine_name, free_size
from .enums import engine as Engine, matmul_perf_mode

_FP8 = (float8_e4m3, float8_e5m2, float8_e4m3fn)
_FP32_CLASS = (float32, tfloat32)
_MATMUL_INPUTS = (float8_e4m3, float8_e5m2, bfloat16, float16, tfloat32, float32)
MATMUL_INPUTS = _MATMUL_INPUTS  # (before NeuronCore-v4's float8_e4m3fn) for lowerings
# the classes as sets, for the checks of every matmul: a set finds a DType by its str
# hash, where a tuple compares it with each member through DType.__eq__ (Python code)
_MATMUL_INPUT_SET = frozenset(_MATMUL_INPUTS)
_FP32_SET = frozenset(_FP32_CLASS)
_FP32_NP = np.dtype(np.float32)


# -- shared Tensor Engine helpers (also used by isa/mx.py) ------------------
def perf_mode_name(perf_mode) -> str:
    if type(perf_mode) is matmul_perf_mode:  # (`.value` is the enum's Python property)
        return perf_mode._value_
    if perf_mode is None:
        return "none"
    return perf_mode.value if isinstance(perf_mode, matmul_perf_mode) else str(perf_mode)


def _as_int(ins: Instr, what: str, v) -> int:
    try:
        return int(v.__index__()) if hasattr(v, "__index__") else int(v)
    except (TypeError, ValueError):
        ins.fail(f"{what} must be an integer, got {v!r}")


def check_tiling(ins: Instr, tile_position, tile_size, row_only: bool = False):
    """Validate PE row/column tiling; returns ((start_row, start_col), (row_size,
    col_size)), the full array when both are unset."""
    te = ins.chip.core.tensor
    tp = tuple(tile_position) if tile_position not in (None, ()) else ()
    ts = tuple(tile_size) if tile_size not in (None, ()) else ()
    if not tp and not ts:
        return (0, 0), (te.rows, te.cols)
    if not tp or not ts:
        ins.fail(f"tile_position={tile_position!r} and tile_size={tile_size!r}: both must be "
                 "set to enable PE tiling (or neither, for the full 128x128 array)")
    if len(tp) != 2 or len(ts) != 2:
        ins.fail(f"tile_position={tile_position!r} and tile_size={tile_size!r} must be "
                 "2-tuples (start_row, start_column) and (row_size, column_size)")
    sr, sc = (_as_int(ins, "tile_position", v) for v in tp)
    rs, cs = (_as_int(ins, "tile_size", v) for v in ts)
    allowed = tuple(te.tile_sizes)
    for what, v in (("row_size", rs), ("column_size", cs)):
        if v not in allowed:
            cls = UnsupportedError if v in (32, 64, 128) else None
            msg = (f"tile_size {what}={v} is not supported on {ins.chip.name} "
                   f"(NeuronCore-v{ins.generation}); use one of {', '.join(map(str, allowed))}")
            ins.fail(msg, cls) if cls else ins.fail(msg)
    if row_only and cs != te.cols:
        ins.fail(f"tile_size column_size={cs}: {ins.opcode} supports only row tiling "
                 f"(column_size must be {te.cols})")
    if row_only and sc != 0:
        ins.fail(f"tile_position start_column={sc}: {ins.opcode} supports only row tiling "
                 "(start_column must be 0)")
    if sr < 0 or sr % rs or sr + rs > te.rows:
        ins.fail(f"tile_position start_row={sr} must be a multiple of row_size={rs} with "
                 f"start_row + row_size <= {te.rows}")
    if sc < 0 or sc % cs or sc + cs > te.cols:
        ins.fail(f"tile_position start_column={sc} must be a multiple of column_size={cs} "
                 f"with start_column + column_size <= {te.cols}")
    return (sr, sc), (rs, cs)


def check_moving_fmax(ins: Instr, moving: NkiTensor, n: int, dst: NkiTensor):
    te = ins.chip.core.tensor
    limit = te.moving_fmax_16bit if dst.dtype.itemsize == 2 else te.moving_fmax_fp32
    if n > limit:
        ins.fail(f"moving {describe(moving)} has free size N={n}, over the limit of {limit} "
                 f"for a {dst.dtype} dst on {ins.chip.name} (one matmul writes at most "
                 f"{limit} {dst.dtype} elements per PSUM partition)")


def check_dst(ins: Instr, dst: NkiTensor, m: int, n: int):
    if dst.shape[0] != m or free_size(dst) != n:
        ins.fail(f"dst {describe(dst)} must be [{m}, {n}] (M = stationary free size on "
                 f"partitions, N = moving free size)")
    check_psum_bank(ins, dst)


def check_psum_bank(ins: Instr, dst: NkiTensor):
    """The part of `check_dst` that depends on where dst lies: one PSUM bank."""
    core = ins.chip.core
    te = core.tensor
    if dst.dyn is None and te.moving_fmax_fp32 * 4 <= core.psum_bank_bytes:
        acc = ins.access("dst", dst, "w")
        bank = core.psum_bank_bytes
        if acc.lo // bank != (acc.hi - 1) // bank:
            ins.fail(f"dst {describe(dst)} spans PSUM bytes [{acc.lo}, {acc.hi}) of each "
                     f"partition, crossing a {bank}-byte PSUM bank boundary; on "
                     f"{ins.chip.name} a matmul output must lie within one bank")


def check_indirect(ins: Instr, tiled: bool, *named):
    for role, t in named:
        if t.dyn is not None:
            ins.require_generation(4, f"tensor indirection on {ins.opcode} operand {role!r}")
            ins.require(not tiled, f"operand {role!r} uses tensor indirection, which is "
                        "incompatible with PE tiling (tile_position must be (0, 0) or unset)")


# -- PSUM accumulation groups -------------------------------------------------
_next_group = itertools.count(1)


def _group_id(storage) -> int:
    """Storage's group id, made on its first matmul (kept in its own attributes, as
    machine/access.py keeps its written boxes: a weak dictionary's lookup costs more)."""
    gid = storage.__dict__.get("psum_group_id")
    if gid is None:
        gid = storage.psum_group_id = next(_next_group) & 0x7FFFFFFF or 1
    return gid


class PsumGroups:
    """The group mark of every PSUM byte of one core (`CoreState.psum_group`): a dense
    (partitions x bytes) int32 array, with recent fills of whole boxes kept as pending
    (box -> mark) entries that are applied to the array only when it is read. (A matmul
    or any other PSUM write fills the box of its destination; most of them rewrite a box
    filled before, which then costs a dict update instead of rewriting the array.)"""

    def __init__(self, memory):
        self.memory = memory  # the core's PSUM arena, whose width grows (memory.py)
        self._arr: np.ndarray | None = None
        self.pending: dict = {}  # (p_lo, p_hi, lo, hi) -> mark; boxes never overlap
        # every mark the array may hold (its zeros, and each mark written into it): a
        # mark not among them is only where a pending box holds it
        self.arrayed = {0}
        self.masked = False  # a matmul wrote under a legacy mask (not all its bytes)

    def _dense(self) -> np.ndarray:
        """The marks array, as wide as the PSUM arena is now."""
        shape = (self.memory.partitions, self.memory.width)
        if self._arr is None or self._arr.shape != shape:
            arr = np.zeros(shape, dtype=np.int32)
            if self._arr is not None:
                arr[:, :self._arr.shape[1]] = self._arr
            self._arr = arr
        return self._arr

    def array(self) -> np.ndarray:
        """The marks with every pending fill applied."""
        self._dense()
        if self.pending:
            arr = self._arr
            for (a, b, c, d), g in self.pending.items():
                arr[a:b, c:d] = g
            self.arrayed.update(self.pending.values())
            self.pending.clear()
        return self._arr

    def member(self, box, gid: int) -> bool | None:
        """Whether every byte of `box` is marked `gid` (True), none is (False), or only
        some are (None)."""
        g = self.pending.get(box)
        if g is not None:
            return g == gid
        over = self._overlapping(box)
        if gid not in self.arrayed and all(self.pending[k] != gid for k in over):
            return False  # (a new group's first box: no byte holds its mark)
        if self._arr is None and not over:
            return gid == 0
        a, b, c, d = box
        eq = self._dense()[a:b, c:d] == gid
        for k in over:  # (the pending fills there, in place of the array's marks)
            eq[max(k[0], a) - a:min(k[1], b) - a,
               max(k[2], c) - c:min(k[3], d) - c] = self.pending[k] == gid
        if not eq.any():
            return False
        return True if eq.all() else None

    def _overlapping(self, box) -> list:
        a, b, c, d = box
        return [k for k in self.pending if k[0] < b and a < k[1] and k[2] < d and c < k[3]]

    def fill(self, box, mark: int) -> None:
        """Set the mark of every byte of box (p_lo, p_hi, lo, hi)."""
        pending = self.pending
        if box not in pending:
            for k in self._overlapping(box):
                g = pending.pop(k)
                if len(pending) < _PENDING_MAX:  # what box leaves of k stays pending
                    for rest in _outside(k, box):
                        pending[rest] = g
                else:
                    self._dense()[k[0]:k[1], k[2]:k[3]] = g
                    self.arrayed.add(g)
        pending[box] = mark


_PENDING_MAX = 64  # pending boxes past which an overlapped one is written to the array


def _outside(k, box) -> list:
    """The boxes that cover the bytes of box k outside `box` (which overlaps it), apart."""
    (k0, k1, k2, k3), (a, b, c, d) = k, box
    rest = []
    if k0 < a:
        rest.append((k0, a, k2, k3))
    if b < k1:
        rest.append((b, k1, k2, k3))
    p0, p1 = max(k0, a), min(k1, b)
    if k2 < c:
        rest.append((p0, p1, k2, c))
    if d < k3:
        rest.append((p0, p1, d, k3))
    return rest


def _groups(core) -> PsumGroups:
    if core.psum_group is None:
        core.psum_group = PsumGroups(core.psum)
    return core.psum_group


class _Marks:
    """The group marks of each byte of each element of PSUM view `t` (shape t.shape +
    (itemsize,)): a strided view of the marks array for regular views, fancy indexing
    otherwise, or t's bounding box when its element addresses are unknown (an indirect
    view with numerics off)."""

    def __init__(self, ins: Instr, groups: np.ndarray, t: NkiTensor):
        self.groups, self.t, self.box = groups, t, False
        self.view = self.idx = None
        st, isz = t.storage, t.dtype.itemsize
        dec = _decompose(t) if t.dyn is None else None
        if dec is not None:
            a0, b0, parts = dec
            p_hi = a0 + sum(a * (n - 1) for (a, _), n in zip(parts, t.shape))
            if a0 >= 0 and p_hi < st.partitions and all(a >= 0 and b >= 0 for a, b in parts):
                rb, es = groups.shape[1], groups.itemsize
                start = (st.partition + a0) * rb + st.address + b0 * isz
                self.view = np.lib.stride_tricks.as_strided(
                    groups.reshape(-1)[start:], shape=t.shape + (isz,),
                    strides=[(a * rb + b * isz) * es for a, b in parts] + [es])
                return
        if t.dyn is not None and not ins.numerics:
            a = describe_access(t, "dst", "w")
            self.idx, self.box = (slice(a.p_lo, a.p_hi), slice(a.lo, a.hi)), True
            return
        e, _ = element_offsets(t)
        p, r = np.divmod(e, t.row_elems)
        self.idx = ((st.partition + p)[..., None],
                    st.address + r[..., None] * isz + np.arange(isz))

    def get(self) -> np.ndarray:
        return self.view if self.view is not None else self.groups[self.idx]

    def member(self, gid: int) -> np.ndarray:
        """Per element: all its bytes are marked `gid` (one bool for a bounding box)."""
        eq = self.get() == gid
        if self.box:
            return np.asarray(eq.all())
        isz = eq.shape[-1]
        if isz in (2, 4, 8):  # the itemsize bools of an element as one word (fast)
            eq = np.ascontiguousarray(eq)
            return eq.view(f"u{isz}")[..., 0] == int.from_bytes(b"\x01" * isz, "little")
        return eq.all(axis=-1)

    def set(self, gid: int) -> None:
        if self.view is not None:
            self.view[...] = gid
        else:
            self.groups[self.idx] = gid


def _written(t: NkiTensor) -> bool:
    """Whether every byte of PSUM view `t` was ever written (its initialized-flags)."""
    flags, ones = _flag_view(t)
    if flags is not None:  # a regular view: the flags as one word per element
        return bool((flags == ones).all())
    init = t.storage.initialized
    return bool(init[_byte_index(t, element_offsets(t)[0])].all())


def psum_store(ins: Instr, dst: NkiTensor, compute, accumulate) -> None:
    """Write a Tensor Engine result to PSUM `dst`, overwriting or accumulating per
    `accumulate` (None: per element, accumulate where an earlier matmul of this
    accumulation group wrote). `compute()` returns (values, raw): fp32 values, or values
    already in dst's storage type when `raw` (bit-exact transposes)."""
    st = dst.storage
    core = ins.run.cores[st.core]
    pg = core.psum_group or _groups(core)
    gid = st.__dict__.get("psum_group_id") or _group_id(st)
    a = ins.access("dst", dst, "w")
    key = a[BOX]
    fast = dst.dyn is None and a.bytes == (a.p_hi - a.p_lo) * (a.hi - a.lo)
    member = None
    if fast:
        mark = pg.pending.get(key)  # (`member`'s first look, inline)
        member = mark == gid if mark is not None else pg.member(key, gid)
    if member is not None and not ins.numerics:  # timing only: the record and the marks
        ins.attrs["accumulate"] = member if accumulate is None else bool(accumulate)
        if ins.run.dst_mask is not None:
            pg.masked = True
        ins.writes.append(a)  # (Instr.write's record of a grouped PSUM write)
        pg.fill(key, gid)
        return
    if member is not None:  # dst is exactly a box all in or all out of this group
        marks = None
        prev = member  # (one bool for every element)
    else:
        fast = False
        groups = pg.array()
        marks = _Marks(ins, groups, dst)
        prev = marks.member(gid)
    if accumulate is None:
        acc = prev
    else:
        acc = bool(accumulate)
        if acc and ins.numerics and prev is not True and not np.all(prev):
            _warn_uninitialized(ins, dst, prev)
    every, some = _every_some(acc)
    ins.attrs["accumulate"] = every if every or not some else "partial"

    if ins.run.dst_mask is not None:
        pg.masked = True
    flagged = member is True and not pg.masked
    if fast:  # dst's bytes (all of its box) are marked: the write's clearing of the box
        # is replaced at once
        _write_dst(ins, dst, compute, acc, every, some, flagged, True)
        pg.fill(key, gid)
        return
    # The write clears the marks of dst's bounding box (the non-matmul rule); keep those
    # of bytes inside the box that are not dst's (a strided dst), then mark dst's own.
    box = (slice(a.p_lo, a.p_hi), slice(a.lo, a.hi))
    dense = marks.box or dst.size * dst.dtype.itemsize == (a.p_hi - a.p_lo) * (a.hi - a.lo)
    saved = None if dense else groups[box].copy()
    _write_dst(ins, dst, compute, acc, every, some, flagged)
    groups = pg.array()  # the write's clearing, applied
    if saved is not None:
        groups[box] = saved
    marks.set(gid)
    pg.arrayed.add(gid)


def _write_dst(ins: Instr, dst: NkiTensor, compute, acc, every: bool, some: bool,
               flagged: bool, grouped: bool = False) -> None:
    """`psum_store`'s write of dst (without numerics only its record: no values to
    compute); `flagged`: dst is all marked by this group, whose matmul writes set every
    byte's initialized-flag (unless one was masked); `grouped`: the caller marks dst's
    box (Instr.write)."""
    if not ins.numerics:
        ins.write("dst", dst, None, grouped=grouped)
        return
    if every and dst.dtype is float32 and ins.run.dst_mask is None:
        def added():  # fp32 dst: its fp32 values are its stored values, raw or not
            return np.asarray(compute()[0], dtype=np.float32).reshape(dst.shape)
        ins.write("dst", dst, added, add=True, flagged=flagged, grouped=grouped)
        return

    def values():
        # (ins.write copies the result into the memory at once, so it may be a scratch
        # buffer of compute() or a view of it)
        new, raw = compute()
        if not some:
            return new if raw else cast(new, dst.dtype, copy=False)
        new32 = to_fp32(new) if raw else np.asarray(new, dtype=np.float32)
        old32 = read_converted(dst, _fp32_copy).reshape(new32.shape)
        np.add(old32, new32, out=old32)
        total = cast(old32, dst.dtype, copy=False)
        if every:
            return total
        return np.where(acc, total, new if raw else cast(new, dst.dtype))

    ins.write("dst", dst, values, raw=True, grouped=grouped)


def _every_some(acc) -> tuple[bool, bool]:
    """Whether every / some element accumulates, per `acc`: one bool for all of them,
    or a bool per element."""
    if isinstance(acc, bool):
        return acc, acc
    every = bool(acc.all())
    return every, every or bool(acc.any())


def _warn_uninitialized(ins: Instr, dst: NkiTensor, prev):
    """accumulate=True adds to what PSUM holds; only never-written PSUM is undefined
    (as the docs say). Without numerics the written-flags are not kept: no check."""
    if np.all(prev) or not ins.numerics:
        return
    if not _written(dst):
        ins.warn(f"accumulate=True onto dst {describe(dst)}, which was never written: "
                 "undefined behavior (start the group with accumulate=False)")


# -- nc_matmul ------------------------------------------------------------------


def _check_input_dtype(ins: Instr, role: str, t: NkiTensor):
    d = t.dtype
    if d in _MATMUL_INPUT_SET:
        return
    te = ins.chip.core.tensor
    if d is float8_e4m3fn:
        if not te.supports_e4m3fn:
            ins.fail(f"{role} {describe(t)}: float8_e4m3fn (OCP fp8) matmul inputs need "
                     f"NeuronCore-v4; {ins.chip.name} supports float8_e4m3 (legacy) and "
                     "float8_e5m2", UnsupportedError)
        return
    if d.is_x4:
        ins.fail(f"{role} {describe(t)}: packed MX data goes through nc_matmul_mx")
    ok = ", ".join(str(x) for x in _MATMUL_INPUTS + ((float8_e4m3fn,) if te.supports_e4m3fn
                                                     else ()))
    ins.fail(f"{role} {describe(t)}: dtype {d} is not a Tensor Engine input type "
             f"(use one of {ok})")


def _check_dtype_mix(ins: Instr, stationary: NkiTensor, moving: NkiTensor):
    s, m = stationary.dtype, moving.dtype
    if (s in _FP32_SET) != (m in _FP32_SET):
        ins.fail(f"stationary {describe(stationary)} and moving {describe(moving)}: a "
                 "float32/tfloat32 input needs the other input to be float32/tfloat32 too")
    if {s, m} == {float8_e4m3, float8_e4m3fn}:
        ins.fail(f"stationary {describe(stationary)} and moving {describe(moving)}: legacy "
                 "float8_e4m3 and OCP float8_e4m3fn cannot be mixed in one matmul")


def _check_matmul_dst_dtype(ins: Instr, dst: NkiTensor):
    te = ins.chip.core.tensor
    if dst.dtype is float32:
        return
    if dst.dtype is bfloat16:
        ins.require(te.supports_bf16_psum,
                    f"dst {describe(dst)}: a bfloat16 matmul output needs NeuronCore-v4; on "
                    f"{ins.chip.name} dst must be float32", UnsupportedError)
        return
    ok = "float32 or bfloat16" if te.supports_bf16_psum else "float32"
    ins.fail(f"dst {describe(dst)}: matmul output must be {ok}")


def _operand_values(ins: Instr, role: str, t: NkiTensor, shape):
    raw = ins.read(role, t)
    if raw is None:
        return None, None
    v = to_fp32(raw)
    if t.dtype is tfloat32:
        v = round_tf32(v)
    return raw.reshape(shape), v.reshape(shape)


def _matmul64(s32: np.ndarray, m32: np.ndarray) -> np.ndarray:
    """stationary[K, M].T @ moving[K, N]: exact products, float64 sum, one RNE to fp32."""
    with np.errstate(invalid="ignore", over="ignore"):
        return (s32.astype(np.float64).T @ m32.astype(np.float64)).astype(np.float32)


MODES = ("exact", "fp32")


def accumulation_mode() -> str:
    """The matmul accumulation mode: $TRNSIM_MATMUL_ACCUMULATION, default `exact`
    (see the module docstring)."""
    mode = os.environ.get("TRNSIM_MATMUL_ACCUMULATION", "").strip().lower() or "exact"
    if mode not in MODES:
        raise ValueError(f"TRNSIM_MATMUL_ACCUMULATION={mode!r}: use one of {', '.join(MODES)}")
    return mode


_scratch_local = threading.local()


def _scratch(key, shape, dtype) -> np.ndarray:
    """A reused buffer per (key, shape, dtype) and thread. Fresh arrays of a few hundred
    KiB cost the GEMM's time again in page faults; the matmul path fills these instead
    (its result is copied into PSUM before the next matmul runs)."""
    bufs = getattr(_scratch_local, "bufs", None)
    if bufs is None:
        bufs = _scratch_local.bufs = {}
    k = (key, shape, dtype)
    b = bufs.get(k)
    if b is None:
        if len(bufs) > 64:
            bufs.clear()
        b = bufs[k] = np.empty(shape, dtype)
    return b


def _matmul(s32: np.ndarray, m32: np.ndarray, mode: str) -> np.ndarray:
    """stationary[K, M].T @ moving[K, N] as fp32 in a scratch buffer, per `mode`: the
    same values as `_matmul64` (exact) or one fp32 GEMM (fp32)."""
    (k, m), n = s32.shape, m32.shape[1]
    out = _scratch("out32", (m, n), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        if mode == "fp32":
            if m > 1 and n > 1:
                s32, m32 = _gemm_operand(s32), _gemm_operand(m32)
                if _same_array(s32, m32):  # (NumPy would call syrk, not sgemm)
                    m32 = np.array(m32)
            else:
                s32, m32 = np.ascontiguousarray(s32), np.ascontiguousarray(m32)
            np.matmul(s32.T, m32, out=out)
            return out
        s64 = _scratch("s64", (k, m), np.float64)
        m64 = _scratch("m64", (k, n), np.float64)
        out64 = _scratch("out64", (m, n), np.float64)
        np.copyto(s64, s32)
        np.copyto(m64, m32)
        np.matmul(s64.T, m64, out=out64)
        np.copyto(out, out64, casting="same_kind")
    return out


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether `a` and `b` are the same elements: the case where NumPy's matmul takes
    syrk for a.T @ b instead of sgemm. (Tiles of one arena overlap in their bounds, so
    np.may_share_memory says True for nearly every pair.)"""
    return (a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _gemm_operand(a: np.ndarray) -> np.ndarray:
    """A [K, M or N] fp32 operand (M, N > 1) that sgemm reads as it lies: rows of unit
    stride. Other views are copied: NumPy would multiply them with its own loop, in
    another order. (sgemm's sums do not depend on the row pitch; NumPy's vector cases
    go to gemv, whose strided kernels do, hence the copy above.)"""
    isz = a.itemsize
    if a.strides[1] == isz and a.strides[0] % isz == 0 and a.strides[0] >= a.shape[1] * isz:
        return a
    return np.ascontiguousarray(a)


@functools.lru_cache(maxsize=8)
def _identity(n: int) -> np.ndarray:
    eye = np.eye(n, dtype=np.float32)
    eye.flags.writeable = False
    return eye


def _fp32_operand(ins: Instr, role: str, t: NkiTensor, shape) -> np.ndarray | None:
    """A matmul operand's values as they enter the PE: fp32 (tf32 rounded), `shape`; may
    be a read-only view of the memory (an fp32 operand is not copied where the GEMM can
    read it as it lies: `_gemm_operand`)."""
    v = ins.read_as(role, t, _readonly_fp32)
    if v is None:
        return None
    if t.dtype is tfloat32:
        v = round_tf32(v)
    return v.reshape(shape)


def _readonly_fp32(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == _FP32_NP:  # (to_fp32 would hand back the memory itself)
        return _readonly(raw)
    return to_fp32(raw)


def _check_onezero(ins: Instr, role: str, flag: bool, values):
    if flag and values is not None:
        ok = (values == 0) | (values == 1)
        if not ok.all():
            ins.warn(f"is_{role}_onezero=True but {role} holds values other than 0 and 1 "
                     f"(e.g. {values[~ok].flat[0]!r}); the hint makes the hardware result "
                     "wrong for them")


_CHECKED = ChecksMemo()  # `_checks_key` -> (the checked attributes, kc, m, n)


def _checks_key(ins: Instr, pm: str, transpose: bool, dst, stationary, moving,
                tile_position, tile_size):
    """What the operand checks (`Instr.operand`: type, memory, shape, chip) and
    `_check_matmul` read, as a key (None where it is not kept: operands other than
    static NkiTensor views, or PE tiling given other than as int tuples)."""
    if type(dst) is not NkiTensor or type(stationary) is not NkiTensor or \
            type(moving) is not NkiTensor:
        return None
    if dst.dyn is not None or stationary.dyn is not None or moving.dyn is not None:
        return None
    tiling = (tile_position, tile_size)
    if type(tile_position) is not tuple or type(tile_size) is not tuple or \
            tile_position or tile_size:  # (not the default `()` both)
        for v in tiling:
            if v is not None:
                if type(v) is not tuple:
                    return None
                for i in v:
                    if type(i) is not int:
                        return None
    return (id(ins.chip), pm, transpose, tiling, dst.shape, dst.dtype, dst.buffer.space,
            stationary.shape, stationary.dtype, stationary.buffer.space, moving.shape,
            moving.dtype, moving.buffer.space)


def _check_matmul(ins: Instr, perf_mode, pm: str, transpose: bool, dst, stationary, moving,
                  tile_position, tile_size):
    """nc_matmul's checks of its shapes, dtypes and settings (`pm`: perf_mode's name);
    (the attributes they give, the contraction size, M, N)."""
    te = ins.chip.core.tensor
    if pm not in ("none", "double_row"):
        ins.fail(f"perf_mode={perf_mode!r}: use matmul_perf_mode.none or .double_row")
    ins.same_partitions(("stationary", stationary), ("moving", moving))
    (sr, sc), (rs, cs) = check_tiling(ins, tile_position, tile_size)
    tiled = (rs, cs) != (te.rows, te.cols)
    check_indirect(ins, tiled and (sr, sc) != (0, 0), ("dst", dst),
                   ("stationary", stationary), ("moving", moving))
    if transpose:
        ins.require(moving.dyn is None, "moving cannot use tensor indirection with "
                    "is_transpose=True")
    k = stationary.shape[0]
    double = pm == "double_row"
    if double:
        if not te.supports_double_row:
            ins.fail(f"perf_mode=double_row needs NeuronCore-v3 or newer; target "
                     f"{ins.chip.name} is NeuronCore-v{ins.generation}", UnsupportedError)
        ins.require(not transpose, "perf_mode=double_row cannot be combined with "
                    "transpose mode (is_transpose=True)")
        ins.require(cs == te.cols, f"perf_mode=double_row cannot be combined with column "
                    f"tiling (tile_size column_size={cs})")
        for role, t in (("stationary", stationary), ("moving", moving)):
            if not (t.ndim >= 3 and t.shape[1] == 2):
                ins.fail(f"perf_mode=double_row: {role} {describe(t)} must be [K, 2, ...] "
                         "(contraction split over partitions and a first free dim of 2)")
            if t.dtype not in _FP8:
                ins.fail(f"perf_mode=double_row: {role} {describe(t)} must be fp8 "
                         "(float8_e4m3 or float8_e5m2"
                         + (", float8_e4m3fn)" if te.supports_e4m3fn else ")"))
        m = int(np.prod(stationary.shape[2:]))
        n = int(np.prod(moving.shape[2:]))
        kc = 2 * k
    else:
        m, n, kc = free_size(stationary), free_size(moving), k
    limit_k = min(te.contraction_max, rs)
    if k > limit_k:
        ins.fail(f"stationary {describe(stationary)} and moving {describe(moving)}: "
                 f"contraction (partition) size K={k} exceeds the limit of {limit_k}"
                 + (f" (tile_size row_size={rs})" if rs < te.rows else ""))
    limit_m = min(te.stationary_fmax, cs)
    if m > limit_m:
        ins.fail(f"stationary {describe(stationary)}: free size M={m} exceeds the limit "
                 f"of {limit_m}" + (f" (tile_size column_size={cs})" if cs < te.cols
                                    else ""))
    check_moving_fmax(ins, moving, n, dst)
    check_dst(ins, dst, m, n)

    # dtypes
    if transpose and ins.generation >= 3:
        ins.require(not stationary.dtype.is_x4 and not moving.dtype.is_x4,
                    "transpose mode does not take packed MX (x4) data")
        ins.require(dst.dtype == stationary.dtype or (dst.dtype is float32
                                                      and stationary.dtype.is_float),
                    f"transpose mode: dst {describe(dst)} must have the dtype of "
                    f"stationary {describe(stationary)} (a bit-exact transpose), or be "
                    "float32 for a float stationary")
    else:
        _check_input_dtype(ins, "stationary", stationary)
        _check_input_dtype(ins, "moving", moving)
        _check_dtype_mix(ins, stationary, moving)
        if transpose and dst.dtype == stationary.dtype:
            pass  # v2 transpose hint: PE result rounded to the data's dtype
        else:
            _check_matmul_dst_dtype(ins, dst)

    attrs = dict(
        perf_mode=pm, K=k, contraction=kc, M=m, N=n,
        stationary_dtype=str(stationary.dtype), moving_dtype=str(moving.dtype),
        dst_dtype=str(dst.dtype), tile_position=(sr, sc), tile_size=(rs, cs),
        is_transpose=transpose)
    return attrs, kc, m, n


def nc_matmul(dst, stationary, moving, is_stationary_onezero=False, is_moving_onezero=False,
              is_transpose=False, accumulate=None, tile_position=(), tile_size=(),
              perf_mode=matmul_perf_mode.none, name=None):
    """dst[M, N] = stationary[K, M].T @ moving[K, N] on the Tensor Engine (SBUF -> PSUM),
    accumulated in fp32; `perf_mode=double_row` (fp8, v3+) contracts [K, 2, M] x [K, 2, N]."""
    pm = perf_mode_name(perf_mode)
    with Instr("nc_matmul", None, default="tensor") as ins:
        transpose = bool(is_transpose)
        key = _checks_key(ins, pm, transpose, dst, stationary, moving, tile_position,
                          tile_size)
        checked = _CHECKED.found(key, ins.chip)
        if checked is None:
            ins.operand("stationary", stationary, ("sbuf",))
            ins.operand("moving", moving, ("sbuf",))
            ins.operand("dst", dst, ("psum",))
            checked = _CHECKED.keep(key, ins.chip, _check_matmul(
                ins, perf_mode, pm, transpose, dst, stationary, moving, tile_position,
                tile_size))
        else:  # (every other check passed for these shapes, dtypes and settings)
            check_psum_bank(ins, dst)
        attrs, kc, m, n = checked
        ins.attrs = {**attrs, "is_stationary_onezero": bool(is_stationary_onezero),
                     "is_moving_onezero": bool(is_moving_onezero)}  # (it held none)
        if name is not None:
            ins.attrs["name"] = name

        if not ins.numerics and key is not None:  # timing only, static views: the
            # record of the reads and the write (what the calls below leave of them)
            ins.reads.append(describe_access(stationary, "stationary", "r"))
            ins.reads.append(describe_access(moving, "moving", "r"))
            psum_store(ins, dst, None, accumulate)
            return
        if transpose and ins.generation >= 3:
            s_raw, s32 = _operand_values(ins, "stationary", stationary, (kc, m))
            m_raw, m32 = _operand_values(ins, "moving", moving, (kc, n))
        else:
            s32 = _fp32_operand(ins, "stationary", stationary, (kc, m))
            m32 = _fp32_operand(ins, "moving", moving, (kc, n))
        if is_stationary_onezero or is_moving_onezero:
            _check_onezero(ins, "stationary", is_stationary_onezero, s32)
            _check_onezero(ins, "moving", is_moving_onezero, m32)

        if transpose and ins.generation >= 3:
            psum_store(ins, dst, lambda: _route(ins, s_raw, s32, m32, dst), accumulate)
        else:
            mode = accumulation_mode() if ins.numerics else "exact"
            psum_store(ins, dst, lambda: (_matmul(s32, m32, mode).reshape(dst.shape), False),
                       accumulate)


def _route(ins: Instr, s_raw, s32, m32, dst):
    """Transpose mode (v3+): bit-exact routing of stationary rows selected by one-hot
    moving columns; other columns fall back to a matmul rounded to dst's dtype."""
    one, zero = m32 == 1, m32 == 0
    onehot = (one.sum(axis=0) == 1) & (one | zero).all(axis=0)
    k_of_n = one.argmax(axis=0)
    out = s_raw[k_of_n, :].T.copy()  # [M, N] in stationary's storage type
    if dst.dtype.np != out.dtype:  # a float32 dst: the exact upcast of the routed values
        out = cast(to_fp32(out), dst.dtype)
    if not onehot.all():
        ins.warn("is_transpose=True with a moving tile that is not one-hot per column (an "
                 "identity or permutation): those columns are computed as a matmul")
        mm = cast(_matmul64(s32, m32), dst.dtype)
        out[:, ~onehot] = mm[:, ~onehot]
    return out.reshape(dst.shape), True


# -- nc_transpose -------------------------------------------------------------
def nc_transpose(dst, data, engine=Engine.unknown, name=None):
    """dst[F, P] = data[P, F] (free dims flattened): on the Tensor Engine (SBUF -> PSUM,
    <= 128x128, an identity matmul in transpose mode) or the Vector Engine (<= 32x32,
    SBUF/PSUM). Default: Tensor Engine when data is in SBUF and dst in PSUM, else Vector."""
    e = engine_name(engine)
    if e == "unknown":
        e = ("tensor" if isinstance(data, NkiTensor) and isinstance(dst, NkiTensor)
             and data.space == "sbuf" and dst.space == "psum" else "vector")
    with Instr("nc_transpose", e, allowed=("tensor", "vector")) as ins:
        if ins.engine == "tensor":
            _pe_transpose(ins, dst, data)
        else:
            _vector_transpose(ins, dst, data)
        if name is not None:
            ins.attrs["name"] = name


def _transpose_shapes(ins: Instr, dst, data, limit: int, engine: str):
    p, f = data.shape[0], free_size(data)
    if p > limit or f > limit:
        ins.fail(f"data {describe(data)} is [{p}, {f}] (free dims flattened); the {engine} "
                 f"Engine transposes at most [{limit}, {limit}]")
    if dst.shape[0] != f or free_size(dst) != p:
        ins.fail(f"dst {describe(dst)} must be [{f}, {p}], the transpose of data "
                 f"{describe(data)}")
    if dst.dtype != data.dtype:
        ins.fail(f"dst {describe(dst)} must have the dtype of data {describe(data)}")
    return p, f


_PE_TRANSPOSE_CHECKED = ChecksMemo()  # `_pe_transpose_key` -> (p, f, the attributes)


def _pe_transpose_key(dst, data):
    """What `_pe_transpose_checks` reads but dst's place (its PSUM bank), as a key (None
    where it is not kept: operands other than static NkiTensor views)."""
    if type(dst) is not NkiTensor or type(data) is not NkiTensor or \
            dst.dyn is not None or data.dyn is not None:
        return None
    return (dst.shape, dst.dtype, dst.buffer.space, data.shape, data.dtype,
            data.buffer.space)


def _pe_transpose(ins: Instr, dst, data):
    key = _pe_transpose_key(dst, data)
    checked = _PE_TRANSPOSE_CHECKED.found(key, ins.chip)
    if checked is None:
        checked = _PE_TRANSPOSE_CHECKED.keep(key, ins.chip, _pe_transpose_checks(ins, dst, data))
    else:  # (every other check passed for these shapes, dtypes and memories)
        check_psum_bank(ins, dst)
    p, f, attrs = checked
    ins.attrs.update(attrs)
    bit_exact = ins.generation >= 3
    raw = ins.read("data", data)

    def compute():
        r = raw.reshape(p, f)
        if bit_exact:
            return r.T.reshape(dst.shape), True
        v = to_fp32(r)
        if data.dtype is tfloat32:
            v = round_tf32(v)
        return _matmul(v, _identity(p), "exact").reshape(dst.shape), False

    psum_store(ins, dst, compute, False)


def _pe_transpose_checks(ins: Instr, dst, data):
    """The Tensor Engine transpose's checks of its operands; (p, f, the attributes)."""
    ins.operand("data", data, ("sbuf",))
    ins.operand("dst", dst, ("psum",))
    te = ins.chip.core.tensor
    p, f = _transpose_shapes(ins, dst, data, min(te.rows, te.stationary_fmax), "Tensor")
    if data.dtype.is_x4:
        ins.fail(f"data {describe(data)}: packed MX (x4) data cannot "
                 "be transposed")
    bit_exact = ins.generation >= 3
    if not bit_exact:
        if data.dtype not in _MATMUL_INPUT_SET:
            ins.fail(f"data {describe(data)}: on {ins.chip.name} the Tensor Engine transposes "
                     f"by a matmul, so data must be a matmul input type; use "
                     f"engine=nisa.vector_engine for {data.dtype}")
    check_dst(ins, dst, f, p)
    return p, f, dict(perf_mode="none", K=p, contraction=p, M=f, N=p,
                      stationary_dtype=str(data.dtype), moving_dtype=str(data.dtype),
                      dst_dtype=str(dst.dtype), tile_position=(0, 0),
                      tile_size=(te.rows, te.cols), is_transpose=True,
                      is_stationary_onezero=False, is_moving_onezero=True)


def _vector_transpose(ins: Instr, dst, data):
    ins.operand("data", data)
    ins.operand("dst", dst)
    limit = ins.chip.core.vector.extras.get("transpose_max", 32)
    p, f = _transpose_shapes(ins, dst, data, limit, "Vector")
    raw = ins.read("data", data)
    ins.write("dst", dst, None if raw is None else raw.reshape(p, f).T.reshape(dst.shape),
              raw=True)


__all__ = ["nc_matmul", "nc_transpose"]
