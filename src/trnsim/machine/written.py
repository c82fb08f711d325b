"""Which bytes of each tensor were written, kept coarsely, for the default (not strict)
warning on a read of never-written memory (`UninitializedReadWarning`).

Strict mode keeps exact per-byte flags and raises (machine/access.py); this is the
cheap default that runs with numerics on. Each Storage keeps a short list of boxes
(partitions [p_lo, p_hi) x bytes [lo, hi), relative to the storage): a write adds the
bounding box of what it writes, which the instruction's record already computed,
merged with the boxes it touches or extends; a write that covers the whole storage sets
`wfull`, after which neither its writes nor its reads cost more than one attribute
test. HBM inputs and constants start full. A read is checked against the boxes: its
bounding box when that is all it reads, else its exact element addresses.

The boxes can only over-state what was written (a strided, masked, skipped or indirect
write counts its whole bounding box), so a read the check reports did read never-written
bytes (no false alarm); a read of a hole inside a strided write's span goes unreported.
Tensors whose bytes alias another live tensor (explicit addresses that overlap) and the
rare storage whose written pattern needs more than `MAX_BOXES` boxes are not tracked.
Runs without numerics never read values and track nothing. One warning per kernel run.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np

from .errors import SourceLocation, UninitializedReadWarning, describe

MAX_BOXES = 256  # past this many disjoint written boxes a storage is no longer tracked


def _hbm_row(st) -> int:
    """The bytes of one row of HBM storage `st` as tracked: its first dimension's rows
    (so that tiles of a matrix are boxes), or all of it for a 1-D tensor."""
    rb = st.__dict__.get("_wrow")
    if rb is None:
        shape = st.base_shape
        rb = st.row_bytes
        if len(shape) >= 2 and st.base_dtype is not None:
            r = math.prod(shape[1:]) * st.base_dtype.itemsize
            if r > 0 and st.row_bytes % r == 0:
                rb = r
        st.__dict__["_wrow"] = rb
    return rb


def _extent(st) -> tuple:
    if st.on_chip:
        return (0, st.partitions, 0, st.row_bytes)
    rb = _hbm_row(st)
    return (0, st.row_bytes // rb, 0, rb)


def _box(st, t, a) -> tuple:
    """The bounding box (rows or partitions [pl, ph) x bytes [lo, hi), relative to the
    storage) of view `t`, whose Access is `a`."""
    if st.on_chip:
        return (a.p_lo - st.partition, a.p_hi - st.partition, a.lo - st.address,
                a.hi - st.address)
    rb = _hbm_row(st)
    if t.dyn is None and rb < st.row_bytes:  # the rows and bytes within a row it spans
        isz = t.dtype.itemsize
        a0, b0 = divmod(t.offset * isz, rb)
        neg = pos = span = 0
        for s, n in zip(t.strides, t.shape):
            da, db = divmod(s * isz, rb)
            span += db * (n - 1)
            if da < 0:
                neg += da * (n - 1)
            else:
                pos += da * (n - 1)
        if b0 + span + isz <= rb:  # no element leaves its row
            return (a0 + neg, a0 + pos + 1, b0, b0 + span + isz)
    lo, hi = a.lo - st.address, a.hi - st.address  # the flat span, as whole rows
    if lo // rb == (hi - 1) // rb:
        return (lo // rb, lo // rb + 1, lo % rb, (hi - 1) % rb + 1)
    return (lo // rb, (hi - 1) // rb + 1, 0, rb)


def note_write(st, t, a) -> None:
    """View `t` of storage `st` was written (Access `a`): add its bounding box."""
    box = _box(st, t, a)
    full = _extent(st)
    if box == full:
        st.wfull, st.wboxes = True, None
        return
    boxes = st.wboxes
    if boxes is None:
        st.wboxes = [box]
        return
    pl, ph, lo, hi = box
    for bpl, bph, blo, bhi in boxes:  # already inside a written box (a rewrite)
        if bpl <= pl and ph <= bph and blo <= lo and hi <= bhi:
            return
    merged = True
    while merged:  # absorb every box it contains or extends along one axis
        merged = False
        for i, (bpl, bph, blo, bhi) in enumerate(boxes):
            if pl <= bpl and bph <= ph and lo <= blo and bhi <= hi:
                pass  # contained
            elif bpl == pl and bph == ph and blo <= hi and lo <= bhi:
                lo, hi = min(lo, blo), max(hi, bhi)
            elif blo == lo and bhi == hi and bpl <= ph and pl <= bph:
                pl, ph = min(pl, bpl), max(ph, bph)
            else:
                continue
            del boxes[i]
            merged = True
            break
    if (pl, ph, lo, hi) == full:
        st.wfull, st.wboxes = True, None
        return
    boxes.append((pl, ph, lo, hi))
    if len(boxes) > MAX_BOXES:
        st.wfull, st.wboxes = True, None  # give up: never report this storage


def _covered(boxes, q) -> bool:
    """Whether the union of `boxes` covers box `q` (exact, on a grid of their edges)."""
    pl, ph, lo, hi = q
    if pl >= ph or lo >= hi:
        return True
    hit = [b for b in boxes if b[0] < ph and pl < b[1] and b[2] < hi and lo < b[3]]
    for b in hit:
        if b[0] <= pl and ph <= b[1] and b[2] <= lo and hi <= b[3]:
            return True
    if not hit:
        return False
    ps = sorted({pl, ph, *(min(max(b[0], pl), ph) for b in hit),
                 *(min(max(b[1], pl), ph) for b in hit)})
    bs = sorted({lo, hi, *(min(max(b[2], lo), hi) for b in hit),
                 *(min(max(b[3], lo), hi) for b in hit)})
    grid = np.zeros((len(ps) - 1, len(bs) - 1), dtype=bool)
    for b in hit:
        grid[ps.index(max(b[0], pl)):ps.index(min(b[1], ph)),
             bs.index(max(b[2], lo)):bs.index(min(b[3], hi))] = True
    return bool(grid.all())


def _first_unwritten(t, boxes, skip_oob: bool):
    """The index (in t) of the first element of view `t` some byte of which lies
    outside every box, or None when every byte it reads is inside one."""
    from .access import element_offsets
    st, isz = t.storage, t.dtype.itemsize
    e, keep = element_offsets(t, skip_oob)
    if st.on_chip:
        p, r = np.divmod(e, t.row_elems)
        p, b = p[..., None], r[..., None] * isz + np.arange(isz)
    else:
        p, b = np.divmod(e[..., None] * isz + np.arange(isz), _hbm_row(st))
    ok = np.zeros(np.broadcast_shapes(p.shape, b.shape), dtype=bool)
    for pl, ph, lo, hi in boxes:
        ok |= (p >= pl) & (p < ph) & (b >= lo) & (b < hi)
    ok = ok.all(axis=-1)
    if keep is not None:
        ok |= ~keep.reshape((-1,) + (1,) * (t.ndim - 1))
    if ok.all():
        return None
    return tuple(int(i) for i in np.argwhere(~ok)[0])


def check_read(run, t, a, op: str, location: SourceLocation | None,
               skip_oob: bool = False) -> None:
    """Warn (once per run) when the read of view `t` (Access `a`) takes bytes no write
    covered. Call only when `t.storage.wfull` is False. `op` None: `t` is an output the
    kernel returns (read by the host)."""
    st = t.storage
    boxes = st.wboxes or ()
    if _covered(boxes, _box(st, t, a)):
        return
    first = _first_unwritten(t, boxes, skip_oob)
    if first is None:  # a strided / indirect read of written elements only
        return
    run.uninit_warned = True
    warn_uninitialized(t, op, location, first)


def check_returned(run, t) -> None:
    """Warn (once per run) when HBM tensor `t`, which the kernel returns, holds bytes
    no instruction wrote (a kernel that never stores its result returns the fill)."""
    if t.storage.wfull or run.uninit_warned:
        return
    from .access import describe_access
    check_read(run, t, describe_access(t, "output", "r"), None, None)


def warn_uninitialized(t, op: str | None, location: SourceLocation | None,
                       index=None) -> None:
    st = t.storage
    alloc = st.site
    name = t.name or st.name or _assigned_name(alloc)
    what = describe(t)
    if name and not t.name:
        what += f" {name!r}"
    at = (f" (element {list(index)}{' of the view read' if op is not None else ''})"
          if index is not None else "")
    verb = f"{op} reads" if op is not None else "the kernel returns"
    message = (f"{verb} never-written memory: {what}{at} holds the fill pattern "
               f"(NaN / {_int_fill()}), not data"
               f"\n  allocated at {_line(alloc) if alloc is not None else 'kernel entry'}"
               + (f"\n  first read at {_line(location)}" if location is not None else "")
               + "\n  Write it before reading it. Reported once per kernel run; strict mode "
               "(TRNSIM_STRICT=1) raises on every read of never-written memory by an "
               "instruction.")
    w = UninitializedReadWarning(message)
    w.tensor, w.op, w.allocated_at, w.read_at, w.index = name, op, alloc, location, index
    at = location or alloc  # where the warning points: the read, else the allocation
    if at is not None:
        warnings.warn_explicit(w, UninitializedReadWarning, at.file, at.line)
    else:
        warnings.warn(w, stacklevel=3)


def _line(loc: SourceLocation) -> str:
    text = loc.text
    return f"{loc}: {text}" if text else str(loc)


def _assigned_name(loc: SourceLocation | None) -> str:
    """`x` for an allocation line `x = nl.ndarray(...)` (unnamed tensors), else ''."""
    m = _ASSIGN.match(loc.text) if loc is not None else None
    return m.group(1) if m else ""


_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)\s*(?::[^=]*)?=[^=]")


def _int_fill() -> int:
    from .memory import INT_FILL
    return INT_FILL
