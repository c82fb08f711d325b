"""Reading and writing a tensor view's bytes, and describing the access for the record.

Regular views become zero-copy NumPy strided views of the arena, so aliasing views
(`.view(dtype)`, overlapping slices) see the same bytes. Views whose addresses wrap
partitions, or that carry a runtime (indirect) offset, go through explicit element
addresses.
"""
from __future__ import annotations

import contextlib
import math
from itertools import repeat
from typing import NamedTuple

import numpy as np

from .errors import OutOfBoundsError, UninitializedReadError, describe
from .memory import row_major
from .tensor import NkiTensor


class Access(NamedTuple):
    """One operand of one instruction, as the timing model sees it.

    On chip, bytes [lo, hi) in each of partitions [p_lo, p_hi) of `space` on `core`;
    in HBM, bytes [lo, hi) of the core group's virtual HBM address space.

    A named tuple, not a dataclass: a record holds hundreds of thousands, and a tuple
    is 200 bytes where a dataclass instance with its dict is 530, and is built and
    copied with changes in one C call (`copy_with`)."""
    role: str
    mode: str  # 'r' or 'w'
    space: str
    core: int
    tensor: str
    dtype: str
    shape: tuple
    pattern: tuple  # ((stride, count), ...) in elements
    offset: int
    p_lo: int
    p_hi: int
    lo: int
    hi: int
    elems_per_partition: int
    bytes: int
    contiguous_bytes: int  # innermost contiguous run, bytes
    indirect: bool = False
    alloc: int = -1  # the automatic on-chip Allocation accessed (virtual lo/hi), or -1

    def overlaps(self, other: "Access") -> bool:
        if self.space != other.space:
            return False
        if self.space != "hbm" and (self.core != other.core or self.p_hi <= other.p_lo
                                    or other.p_hi <= self.p_lo):
            return False
        return self.lo < other.hi and other.lo < self.hi


def _decompose(t: NkiTensor):
    """(partition, within-row) parts of offset and strides, or None if they wrap."""
    row = t.row_elems
    a0, b0 = divmod(t.offset, row)
    parts = [divmod(s, row) for s in t.strides]
    bmax = b0 + sum(b * (n - 1) for (a, b), n in zip(parts, t.shape))
    if bmax >= row:
        return None
    return a0, b0, parts


def element_offsets(t: NkiTensor, skip_oob=False, op=""):
    """Element addresses of every element of `t` (int64, shape t.shape), with the
    runtime indirect offset applied, and the rows (positions along dim 0) to keep.

    A runtime index outside [0, bound) of the dim it selects, or one that takes an
    element outside the storage, is out of bounds: an OutOfBoundsError naming the index
    (default), or with `skip_oob` its rows are dropped (`keep` is False there and their
    addresses are parked at 0) -- every row for a scalar (whole-view) offset. A static
    view reaching outside its storage is always an error. `keep` is None when every
    row is kept."""
    e = np.full(t.shape, t.offset, dtype=np.int64)
    for d, (s, n) in enumerate(zip(t.strides, t.shape)):
        shape = [1] * t.ndim
        shape[d] = n
        e = e + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    limit = _limit(t)
    dyn = t.dyn
    if dyn is None:
        bad = (e < 0) | (e >= limit)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise OutOfBoundsError(
                f"access at index {first} of {describe(t)} reaches element {int(e[first])}, "
                f"outside the {limit} elements of its storage", op=op or None)
        return e, None
    n0 = t.shape[0]
    if dyn.kind == "ti":
        idx = index_values(dyn.index)
        i = np.arange(t.shape[-1])  # the offsets run along the last dim of the view
        offs = idx[i % dyn.group, i // dyn.group]
        e = e + (offs * dyn.scale).reshape((1,) * (t.ndim - 1) + (-1,))
        rows_idx, pos = offs, [(int(a), int(b)) for a, b in zip(i % dyn.group, i // dyn.group)]
        bad_idx = (offs < 0) | (offs >= dyn.bound) if dyn.bound is not None else offs < 0
        if bad_idx.any() or ((e < 0) | (e >= limit)).any():
            k = int(np.argmax(bad_idx)) if bad_idx.any() else 0
            raise OutOfBoundsError(
                f"runtime offset {int(rows_idx[k])} (index{list(pos[k])} of "
                f"{describe(dyn.index)}) is outside [0, {dyn.bound}) for the free "
                f"dimension of {describe(t)}", op=op or None)
        return e, None
    if dyn.kind == "scalar":
        v = int(index_values(dyn.index).reshape(-1)[0]) if dyn.index_is_tensor \
            else int(dyn.index.__index__())
        rows = np.full(n0, v, dtype=np.int64)
        e = e + v * dyn.scale
    else:
        flat = index_values(dyn.index).T.reshape(-1)
        rows = flat[:n0]
        e = e + (rows * dyn.scale).reshape((-1,) + (1,) * (t.ndim - 1))
    idx_bad = (rows < 0) | (rows >= dyn.bound) if dyn.bound is not None \
        else np.zeros(n0, dtype=bool)
    addr_bad = ((e < 0) | (e >= limit)).reshape(n0, -1).any(axis=1)
    bad = idx_bad | addr_bad
    if not bad.any():
        return e, None
    if dyn.kind == "scalar":
        bad[:] = True
    if not skip_oob:
        r = int(np.argmax(bad))
        where = _index_position(dyn, r)
        why = (f"outside [0, {dyn.bound}) for dimension {dyn.dim}" if idx_bad[r] else
               f"takes the access outside the {limit} elements of the storage")
        raise OutOfBoundsError(
            f"runtime index {int(rows[r])} ({where}) {why} of {describe(t)}; pass "
            "oob_mode=nisa.oob_mode.skip to skip out-of-bounds rows", op=op or None)
    e = np.where(bad.reshape((-1,) + (1,) * (t.ndim - 1)), 0, e)
    return e, ~bad


def _index_position(dyn, row: int) -> str:
    if not dyn.index_is_tensor:
        return f"register {dyn.index!r}"
    idx = dyn.index
    if dyn.kind == "scalar":
        return f"the value of scalar offset {describe(idx)}"
    p, c = row % idx.shape[0], row // idx.shape[0]
    return f"row {row}: element [{p}, {c}] of index tensor {describe(idx)}"


def index_values(index) -> np.ndarray:
    """The runtime values of an index tensor as int64, shape (P, K) (free dims
    flattened)."""
    raw = read_raw(index).astype(np.int64)
    return raw.reshape(raw.shape[0], -1) if raw.ndim > 1 else raw.reshape(-1, 1)


def _limit(t: NkiTensor) -> int:
    st = t.storage
    return st.partitions * t.row_elems if st.on_chip else t.row_elems


def _data(t: NkiTensor, writes_all: bool = False) -> np.ndarray:
    """The data array of t's storage, for an access of `t`. An HBM buffer whose fill
    pattern is laid down lazily (memory.py's `Unwritten`) gets it first in the blocks the
    access touches; `writes_all`: every element of `t` is about to be written, so a
    row-major contiguous `t` leaves the blocks it covers whole unfilled."""
    st = t.storage
    lazy = st.unwritten
    if lazy is None:
        own = st.own
        if own is not None and st.unfilled is None:  # (Storage.data's usual case)
            return own
        return st.data
    lay = _layout(t) if t.dyn is None else None
    if lay is None:
        lazy.before(0, st.row_bytes)
    else:
        isz = t.dtype.itemsize
        lo = lay[0]
        hi = lo + isz + sum(s * (n - 1) for s, n in zip(lay[1], t.shape))
        lazy.before(lo, hi, covered=writes_all and row_major(t))
    if lazy.done:
        st.unwritten = None
    return st.buf


def _strided(t: NkiTensor, data: np.ndarray, dtype=None):
    """A NumPy view aliasing the bytes of `t` in `data` (its arena or buffer, or the
    same-shaped initialized-flags array), typed `dtype` (t's storage type), or None.
    The view of its values is kept on `t` for its storage's data array: a placement
    does not change once made, and an instruction's operand is accessed two or three
    times (the record, the check, the values; the next instruction reads a tile the
    last one wrote)."""
    if t.dyn is not None:
        return None
    if dtype is None:
        kept = t.__dict__.get("_np_view")
        if kept is not None and kept[0] is data and kept[1] is t.storage:
            return kept[2]
    lay = _layout(t)
    if lay is None:
        return None
    # (positional arguments: the keyword form took twice as long)
    view = np.ndarray(t.shape, dtype or t.dtype.np, data, lay[0], lay[1])
    if dtype is None:
        t.__dict__["_np_view"] = (data, t.storage, view)
    return view


_LAYOUTS: dict = {}  # `_layout_parts` by its arguments
_MAX_LAYOUTS = 4096


def _layout(t: NkiTensor):
    """(byte offset, byte strides) of the static view `t` in its storage's data array,
    or None when it is not one strided view (it wraps partitions or leaves the storage).
    Kept on the tensor for its storage and place there: an instruction asks for it for
    every read and write of the operand, and loops reuse their tiles. A loop's fresh
    views (a new tile, the next slice of an input) share their strides and shape with
    the last iteration's: what depends on those alone is looked up, and only the offset
    and place applied (working it all out took 5-10 us, twice per DMA)."""
    st = t.storage
    hit = t.__dict__.get("_np_layout")
    if hit is not None and hit[0] is st and hit[1] == st.column:
        return hit[2]
    lay = _work_out_layout(t, _LAYOUTS)
    t.__dict__["_np_layout"] = (st, st.column, lay)
    return lay


def _work_out_layout(t: NkiTensor, memo: dict | None = None):
    """`_layout`, from scratch; with `memo`, the parts that depend on the strides and
    shape alone (`_layout_parts`) looked up there."""
    st, isz = t.storage, t.dtype.itemsize
    row = st.row_bytes // isz
    offset = t.offset
    on_chip = st.space != "hbm"
    own = st.own if on_chip else None
    rb = (own.shape[1] if own is not None else st.memory.row_bytes) if on_chip else 0
    key = (t.strides, t.shape, isz, row if on_chip else -1, rb)
    parts = memo.get(key) if memo is not None else None
    if parts is None:
        parts = _layout_parts(*key)
        if memo is not None:
            if len(memo) >= _MAX_LAYOUTS:
                memo.clear()
            memo[key] = parts
    span, strides = parts
    if strides is None:
        return None
    if not on_chip:  # span: the elements from the first to the last
        return (offset * isz, strides) if offset >= 0 and offset + span < row else None
    asum, bsum = span  # partitions / elements within a row from the first to the last
    a0, b0 = divmod(offset, row)
    if b0 + bsum >= row or a0 < 0 or a0 + asum >= st.partitions:
        return None
    dp = 0 if own is not None else st.partition
    return (dp + a0) * rb + st.column + b0 * isz, strides


def _layout_parts(strides, shape, isz, row, rb):
    """What a layout takes from a view's strides and shape alone: its span from its
    first element (on chip, `row` >= 0: partitions and elements within a row, as
    `_decompose` splits them; in HBM, elements) and its byte strides in an arena of `rb`
    bytes a partition, or None where no layout exists (an empty on-chip view, a negative
    HBM stride)."""
    if row < 0:
        span = sum(s * (n - 1) for s, n in zip(strides, shape))
        ok = all(s >= 0 for s in strides)
        return span, (tuple(s * isz for s in strides) if ok else None)
    parts = [divmod(s, row) for s in strides]
    asum = sum(a * (n - 1) for (a, b), n in zip(parts, shape))
    bsum = sum(b * (n - 1) for (a, b), n in zip(parts, shape))
    ok = min(shape, default=1) > 0
    return (asum, bsum), (tuple(a * rb + b * isz for a, b in parts) if ok else None)


_FLAG_WORDS = {n: np.dtype(f"u{n}") for n in (1, 2, 4, 8)}
_ONES = {n: int.from_bytes(b"\x01" * n, "little") for n in (1, 2, 4, 8)}


def _flag_view(t: NkiTensor):
    """The initialized-flags of t's elements as one unsigned int per element (each
    byte flag is 0 or 1, so an element is fully written when it equals ONES)."""
    isz = t.dtype.itemsize
    return _strided(t, t.storage.initialized, _FLAG_WORDS[isz]), _ONES[isz]


def _byte_index(t: NkiTensor, e: np.ndarray):
    """(rows, cols) into the storage's data for each byte of each element."""
    st, isz = t.storage, t.dtype.itemsize
    k = np.arange(isz, dtype=np.int64)
    if st.on_chip:
        p, r = np.divmod(e, t.row_elems)
        return (st.data_partition + p)[..., None], st.column + r[..., None] * isz + k
    return None, e[..., None] * isz + k


def read_raw(t: NkiTensor, strict=False, op="") -> np.ndarray:
    """A copy of the stored values of `t`, in its dtype's storage type."""
    return read_raw_masked(t, strict, op)[0]


def read_converted(t: NkiTensor, convert, strict=False, op="") -> np.ndarray:
    """`convert(stored values)`, where `convert` returns a new array (a cast): for a
    regular view it is applied to the zero-copy view of the memory (one pass instead of
    a copy and then the cast)."""
    view = _strided(t, _data(t))
    if view is None:
        return convert(read_raw(t, strict, op))
    if strict:
        _check_initialized(t, op)
    return convert(view)


def _check_initialized(t: NkiTensor, op: str):
    flags, ones = _flag_view(t)
    if not (flags == ones).all():
        _uninitialized(t, op)


def read_raw_masked(t: NkiTensor, strict=False, op="", skip_oob=False):
    """(values, keep): like read_raw; with `skip_oob`, rows whose runtime index is out
    of bounds read as zero bytes and `keep` (bool per dim-0 row) marks the others
    (None when all rows are kept)."""
    st = t.storage
    data = _data(t)
    view = _strided(t, data)
    if view is not None:
        if strict:
            _check_initialized(t, op)
        return np.array(view), None
    e, keep = element_offsets(t, skip_oob, op)
    rows, cols = _byte_index(t, e)
    raw = data[rows, cols] if rows is not None else data[cols]
    gone = None if keep is None else ~keep.reshape((-1,) + (1,) * t.ndim)
    if gone is not None:
        raw = np.where(gone, 0, raw).astype(np.uint8)
    if strict:  # (the flags are made on first use: only strict mode reads them here)
        init = st.initialized[rows, cols] if rows is not None else st.initialized[cols]
        if not (init if gone is None else init | gone).all():
            _uninitialized(t, op)
    return np.ascontiguousarray(raw).view(t.dtype.np).reshape(t.shape), keep


def _uninitialized(t: NkiTensor, op: str):
    raise UninitializedReadError(
        f"reads uninitialized memory of {describe(t)} (allocated at "
        f"{t.storage.site or 'kernel entry'}); write it before reading "
        "(strict mode)", op=op or None)


def write_raw(t: NkiTensor, values: np.ndarray, skip_oob=False, mask=None, op="",
              flags=True) -> None:
    """Store `values` (already in t's storage type, broadcastable to t.shape).
    `mask` (bool, broadcastable to t.shape): write only where True. With `skip_oob`,
    rows whose runtime index is out of bounds are not written. `flags=False` leaves the
    initialized-flags alone (for a run whose reads never check them)."""
    st = t.storage
    values = np.asarray(values, dtype=t.dtype.np)
    if values.shape != t.shape and values.ndim:
        values = np.broadcast_to(values, t.shape)
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, dtype=bool), t.shape)
        if mask.all():
            mask = None
    data = _data(t, writes_all=mask is None)
    view = _strided(t, data)
    if view is not None and mask is None:
        view[...] = values  # (a 0-d value as it is: the assignment broadcasts it)
        if flags:
            fl, ones = _flag_view(t)
            fl[...] = ones
        return
    if values.shape != t.shape:
        values = np.broadcast_to(values, t.shape)
    if view is not None:
        view[mask] = values[mask]
        if flags:
            fl, ones = _flag_view(t)
            fl[mask] = ones
        return
    e, keep = element_offsets(t, skip_oob, op)
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(t.shape + (t.dtype.itemsize,))
    sel = None
    if keep is not None:
        sel = np.broadcast_to(keep.reshape((-1,) + (1,) * (t.ndim - 1)), t.shape)
    if mask is not None:
        sel = mask if sel is None else sel & mask
    if sel is not None:
        e, raw = e[sel], raw[sel]
    rows, cols = _byte_index(t, e)
    if rows is not None:
        data[rows, cols] = raw
        if flags:
            st.initialized[rows, cols] = True
    else:
        data[cols] = raw
        if flags:
            st.initialized[cols] = True


def writable_rows(t: NkiTensor) -> np.ndarray | None:
    """t's memory as a writable (P, F) NumPy array of its storage type, a partition's
    elements in order along F; None where that is not one strided view of the memory
    (then write through `write_raw`). Whoever writes through it sets the
    initialized-flags where they are kept (`mark_written`)."""
    view = _strided(t, _data(t))
    if view is None or (view.ndim > 2 and _contiguous_run(view) < math.prod(view.shape[1:])):
        return None  # (the (P, F) reshape would be a copy)
    return view.reshape(view.shape[0], -1)


def mark_written(t: NkiTensor) -> None:
    """Set the initialized-flags of every byte of the regular view `t`."""
    fl, ones = _flag_view(t)
    fl[...] = ones


def add_raw(t: NkiTensor, values: np.ndarray, op="", flags=True) -> None:
    """t = t + values for a float32 `t` (values fp32, broadcastable to t.shape), in fp32
    with RNE: in place for a regular view, else a read and a write."""
    view = _strided(t, _data(t))
    if view is None:
        write_raw(t, read_raw(t) + values, op=op, flags=flags)
        return
    with _tile_rows(view, values) or row_loops(view, values):
        np.add(view, values, out=view)
    if flags:
        mark_written(t)


def _tile_rows(view: np.ndarray, values) -> numpy_settings | None:
    """row_loops(view, values) for the usual add, a [P, F] tile whose rows are not
    adjacent plus a C-contiguous fp32 array of its shape (a matmul's PSUM accumulation),
    without row_loops' tests of every operand (~9 us of a ~35 us add after a
    [128, 512] GEMM); None for any other."""
    if isinstance(values, np.ndarray) and view.ndim == 2 and view.shape == values.shape \
            and values.dtype == np.float32 and values.flags.c_contiguous:
        (p, f), (pitch, step) = view.shape, view.strides
        if p > 1 and step == 4 and pitch != 4 * f and _MIN_ROW <= f < _UFUNC_BUFFER:
            return numpy_settings(bufsize=f // 16 * 16)
    return None


_UFUNC_BUFFER = 8192  # NumPy's default ufunc buffer, in elements
_MIN_ROW = 256  # (shorter rows: the ufunc call costs more than the buffering)
_UNCHANGED = contextlib.nullcontext()


try:  # NumPy 2: the ufunc settings (buffer size, error modes) are one context variable
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
    _extobj_contextvar.reset(_extobj_contextvar.set(_make_extobj(bufsize=8192)))
except Exception:  # (older NumPy, or a private API that changed: np.errstate, np.setbufsize)
    _extobj_contextvar = _make_extobj = None


class numpy_settings:
    """NumPy's ufunc settings with `changes` inside the context: np.errstate's error
    modes (all=, divide=, over=, under=, invalid=) and `bufsize`, the ufunc buffer in
    elements. It sets NumPy's settings variable to a copy of the current settings with
    the changes, and resets it on exit: the state np.errstate and np.setbufsize give,
    in one step (np.errstate's entry and exit, and np.setbufsize's, which reads the
    settings into a dict and rebuilds them, took 1-5 us a pair, paid by every
    elementwise instruction on a tile)."""
    __slots__ = ("changes", "saved")

    def __init__(self, **changes):
        self.changes = changes

    def __enter__(self):
        if _extobj_contextvar is not None:
            self.saved = _extobj_contextvar.set(_make_extobj(**self.changes))
            return
        changes = dict(self.changes)
        size = changes.pop("bufsize", None)
        errors = np.errstate(**changes)
        errors.__enter__()
        self.saved = (errors, None if size is None else np.setbufsize(size))

    def __exit__(self, *exc):
        if _extobj_contextvar is not None:
            _extobj_contextvar.reset(self.saved)
            return
        errors, size = self.saved
        if size is not None:
            np.setbufsize(size)
        errors.__exit__(*exc)


def row_loops(*arrays, errors: str | None = None):
    """A context in which NumPy's elementwise ufuncs over `arrays` run row by row, with
    every floating-point error mode set to `errors` where given (np.errstate(all=)).

    A ufunc over a 2-D view whose rows are not adjacent in memory (a tile in an arena)
    fills its buffers with several rows and copies them in and out: 2-4x the time of the
    same ufunc over contiguous arrays. With the buffer no longer than a row it calls
    the inner loop on each row in place. Elementwise results do not depend on the
    buffering; a float add reduction does (its pairwise blocks), so use it around
    elementwise ufuncs only. Nor does a NaN's payload, except where both operands are
    NaN and one is broadcast (a [P, 1] column, a constant): NumPy's loop for a
    broadcast operand can pick the other NaN, so with a NaN there the buffers stay."""
    row = _UFUNC_BUFFER
    for a in arrays:
        if isinstance(a, np.ndarray) and a.size >= _MIN_ROW and not a.flags.c_contiguous:
            row = min(row, _contiguous_run(a))
    if not _MIN_ROW <= row < _UFUNC_BUFFER or _broadcast_nan(arrays):
        return _UNCHANGED if errors is None else numpy_settings(all=errors)
    size = row // 16 * 16  # (NumPy takes multiples of 16)
    if errors is None:
        return numpy_settings(bufsize=size)
    return numpy_settings(all=errors, bufsize=size)


def _broadcast_nan(operands) -> bool:
    """Whether an operand smaller than the largest (broadcast) holds a NaN."""
    sizes = [a.size if isinstance(a, np.ndarray) else 1 if a is None else np.size(a)
             for a in operands]
    largest = max(sizes)
    for a, size in zip(operands, sizes):
        if a is not None and size < largest:
            a = np.asarray(a)
            if a.dtype.kind == "f" and np.isnan(a).any():
                return True
    return False


def _contiguous_run(a: np.ndarray) -> int:
    """Elements in the innermost run of `a` that is contiguous in memory."""
    run, step = 1, a.itemsize
    for s, n in zip(reversed(a.strides), reversed(a.shape)):
        if n == 1:
            continue
        if s != step:
            break
        run *= n
        step *= n
    return run


def describe_access(t: NkiTensor, role: str, mode: str) -> Access:
    """The record's description of an access of `t` in `role` and `mode` ('r'/'w'),
    after the first-touch effects on its storage (a lazy fill, the PSUM boxes written).
    Memoized by everything `_describe` reads: loops read the same places again through
    new views (an instruction may also read and write one view, a PSUM accumulation).
    A place first seen is the description of the same view of an earlier storage (a
    loop's fresh tile) moved to this storage's address and allocation, where there is
    one: the rest of a description does not depend on them."""
    st = t.storage
    place = (role, mode, t.shape, t.strides, t.offset, t.dtype, t.name, t.dyn is None,
             st.space, st.core, st.partition, st.partitions, st.row_bytes, st.address,
             st.alloc)
    a = _PLACES.get(place)
    if a is None:
        if len(_PLACES) >= _DESCRIBED_MAX:
            _forget()
        shape = place[:13]
        kept = _SHAPES.get(shape)
        if kept is None:
            a = _describe(t, role, mode)
            _SHAPES[shape] = (a, st.address)
        else:
            first, address = kept
            shift = st.address - address
            a = _new_access(Access, first[:11] + (first[11] + shift, first[12] + shift)
                            + first[13:17] + (st.alloc,))
        _PLACES[place] = a
    if st.lazy_fill is not None:  # fill the blocks this access is the first to touch
        st.lazy_fill(a.lo - st.address, a.hi - st.address)
    if mode == "w" and st.space == "psum":  # boxes written (legacy `psum += matmul`)
        boxes = st.__dict__.get("written_boxes")
        if boxes is None:
            boxes = st.written_boxes = set()
        box = a[BOX]
        if box not in boxes:
            boxes.add(box)
            _note_untracked_change(st.alloc)
    return a


# a place (an access of a view of a storage: everything `_describe` reads) -> its Access
# (immutable tuples: the record's instructions may share one)
_PLACES: dict = {}
# a place without its address and allocation -> (its first Access, the address there)
_SHAPES: dict = {}
_DESCRIBED_MAX = 1 << 14  # places kept in all (the memo starts over past this)


def _forget() -> None:
    _PLACES.clear()
    _SHAPES.clear()


def _describe(t: NkiTensor, role: str, mode: str) -> Access:
    st, dtype = t.storage, t.dtype
    isz = dtype.itemsize
    shape, strides, offset = t.shape, t.strides, t.offset
    on_chip = st.space != "hbm"
    size = math.prod(shape)
    elems_pp = math.prod(shape[1:]) if (on_chip or len(shape) > 1) else size
    inner = 1
    for s, n in zip(reversed(strides), reversed(shape)):
        if n == 1:
            continue
        if s != inner:
            break
        inner *= n
    dyn = t.dyn is not None
    if on_chip:
        box = True
        if not dyn:  # as _decompose: partition / within-row parts of offset and strides
            row = st.row_bytes // isz
            a0, b0 = divmod(offset, row)
            neg = pos = bsum = 0
            for s, n in zip(strides, shape):
                a, b = divmod(s, row)
                bsum += b * (n - 1)
                am = a * (n - 1)
                if am < 0:
                    neg += am
                else:
                    pos += am
            if b0 + bsum < row:
                box = False
                p_lo = st.partition + a0 + neg
                p_hi = st.partition + a0 + 1 + pos
                lo = st.address + b0 * isz
                hi = st.address + (b0 + 1 + bsum) * isz
        if box:
            p_lo, p_hi = st.partition, st.partition + st.partitions
            lo, hi = st.address, st.address + st.row_bytes
    else:
        p_lo, p_hi = 0, 1
        if not dyn:
            span = 0
            for s, n in zip(strides, shape):
                span += s * (n - 1)
            lo, hi = st.address + offset * isz, st.address + (offset + span + 1) * isz
        else:
            lo, hi = st.address, st.address + st.row_bytes
    return _new_access(Access, (
        role, mode, st.space, st.core, t.name, dtype.name, shape,
        tuple(zip(strides, shape)), offset, p_lo, p_hi, lo, hi, elems_pp, size * isz,
        min(inner, elems_pp) * isz, dyn, st.alloc))


def _note_untracked_change(alloc: int):
    run = _runtime.current_run()
    if run is not None:
        run.untracked_changes.append(alloc)


# Access(...) without the keyword-parsing __new__ of a named tuple: the fields in order
_new_access = tuple.__new__
_FIELD = {name: i for i, name in enumerate(Access._fields)}


def with_bytes(a: Access, lo: int, hi: int) -> Access:
    """`a` over bytes [lo, hi) of its memory instead (a physical placement, a shift)."""
    return _new_access(Access, a[:11] + (lo, hi) + a[13:])


# the slices of with_bytes and describe_access
assert Access._fields[11:13] == ("lo", "hi") and Access._fields[17:] == ("alloc",)
BOX = slice(9, 13)  # `a[BOX]`: an Access's (p_lo, p_hi, lo, hi), as a plain tuple
assert Access._fields[BOX] == ("p_lo", "p_hi", "lo", "hi")


def with_bytes_all(accesses: list, los: list, his: list):
    """map(with_bytes, accesses, los, his), over the fields as columns (the accesses
    transposed, their lo and hi replaced, transposed back) in C calls."""
    if not accesses:
        return iter(())
    fields = list(zip(*accesses))
    fields[11], fields[12] = los, his
    return map(_new_access, repeat(Access), zip(*fields))


def copy_with(a: Access, **changes) -> Access:
    """`a` with the fields `changes` names changed (Access._replace, without its keyword
    round trip: the record's copies go through here)."""
    values = list(a)
    for name, v in changes.items():
        values[_FIELD[name]] = v
    return _new_access(Access, values)


from . import runtime as _runtime  # noqa: E402  (it imports this module)
