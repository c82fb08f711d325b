"""Byte-addressed memories: each core's SBUF and PSUM arenas (physical bytes for
explicitly placed tensors, virtual space past them for the rest), and HBM tensors with
their own buffers in one virtual address space (so accesses can be compared for
dependencies)."""
from __future__ import annotations

import bisect
import functools
import itertools
import math
import sys
import weakref
from dataclasses import dataclass

import numpy as np

from ..numerics.dtypes import DType
from .errors import CapacityError, SourceLocation
from .tensor import _row_major

INT_FILL = 4  # what the reference simulator writes into fresh integer tensors


@functools.lru_cache(maxsize=256)
def _fill_row(dtype: DType, nbytes: int) -> np.ndarray:
    """The fill pattern repeated over `nbytes` (read-only; shared)."""
    row = np.resize(fill_pattern(dtype), nbytes)
    row.flags.writeable = False
    return row


def fill_pattern(dtype: DType) -> np.ndarray:
    """The bytes fresh memory of this dtype holds: NaN for floats, a sentinel for ints."""
    if dtype.is_float:
        return np.array([np.nan], dtype=np.float32).astype(dtype.np).view(np.uint8)
    return np.array([INT_FILL], dtype=dtype.np).view(np.uint8)


class Unwritten:
    """The fill pattern a fresh HBM buffer holds, laid down lazily: per 4 KiB block, the
    blocks no access has touched yet still hold whatever `np.empty` gave. A read fills
    the blocks it touches first; a write of every byte of a byte range only marks the
    blocks inside it. (Filling a kernel's whole output at creation took a pass over
    memory that its writes then repeated: some 7 ms of a 32 MiB softmax output.)"""
    BLOCK = 4096

    def __init__(self, buf: np.ndarray, dtype: DType):
        self.buf = buf
        pattern = fill_pattern(dtype)  # (its size divides BLOCK: blocks start in phase)
        self.word = pattern.view(f"u{pattern.size}")[0]
        self.pending = np.ones(-(-buf.size // self.BLOCK), dtype=bool)
        self.left = self.pending.size

    def before(self, lo: int, hi: int, covered: bool = False) -> None:
        """Make bytes [lo, hi) hold their values before an access of them: fill the
        pending blocks they touch, except, with `covered` (every byte of [lo, hi) is
        about to be written), the blocks entirely inside, which are only marked."""
        B, n = self.BLOCK, self.pending.size
        b0, b1 = max(lo, 0) // B, min(-(-hi // B), n)
        if b0 >= b1:
            return
        if covered:
            i0 = -(-lo // B)
            i1 = b1 if hi >= self.buf.size else hi // B  # (the last block may be short)
            if i0 < i1:
                inside = self.pending[i0:i1]
                self.left -= int(np.count_nonzero(inside))
                inside[:] = False
        todo = np.flatnonzero(self.pending[b0:b1])
        if todo.size:
            todo += b0
            # runs of consecutive blocks, each filled with one assignment
            cut = np.flatnonzero(np.diff(todo) != 1)
            starts = todo[np.r_[0, cut + 1]]
            ends = todo[np.r_[cut, todo.size - 1]] + 1
            words = self.buf.view(self.word.dtype)
            per = B // self.word.itemsize
            for s, e in zip(starts.tolist(), ends.tolist()):
                words[s * per:e * per] = self.word
            self.pending[todo] = False
            self.left -= todo.size

    @property
    def done(self) -> bool:
        return self.left == 0


def fresh_hbm(nbytes: int, dtype: DType) -> tuple[np.ndarray, Unwritten]:
    """A new HBM buffer holding the fill pattern of `dtype` (lazily: its `Unwritten`)."""
    buf = np.empty(nbytes, dtype=np.uint8)
    return buf, Unwritten(buf, dtype)


def row_major(t) -> bool:
    """Whether the view t's elements are consecutive in memory, in row-major order."""
    if t.strides == _row_major(t.shape):  # (a whole tile: one C-level comparison)
        return True
    step = 1
    for s, n in zip(reversed(t.strides), reversed(t.shape)):
        if n != 1 and s != step:
            return False
        step *= n
    return True


@dataclass(eq=False)
class Storage:
    """The memory under a tensor and all its views.

    On-chip: partitions [partition, partition + partitions) x bytes [address,
    address + row_bytes) of `memory`. HBM: bytes [0, row_bytes) of its own buffer,
    placed at `address` in the core group's virtual HBM address space. On chip its
    bytes are columns [column, column + row_bytes) of rows [data_partition,
    data_partition + partitions) of `data`: the arena's, at its address, for a tensor
    placed explicitly; its own array `own` for a virtually placed one (its values do not
    depend on where they are kept; see OnChipMemory).

    A run without numerics never reads or writes values: its HBM tensors have no buffer
    (`buf` None) and its arenas no bytes (`data` None); only addresses and sizes exist.
    An HBM tensor's initialized-flags are made on first use (most runs never check
    them: only strict mode does), all set when it starts `born_initialized` (inputs,
    constants)."""
    space: str  # 'sbuf' | 'psum' | 'hbm'
    name: str
    core: int
    address: int
    row_bytes: int
    partition: int = 0
    partitions: int = 1
    memory: "OnChipMemory | None" = None
    buf: np.ndarray | None = None  # HBM only: this tensor's bytes (None without numerics)
    init: np.ndarray | None = None  # HBM only: which bytes were written (made lazily)
    born_initialized: bool = False  # HBM only: every byte counts as written from the start
    buffer_name: str = ""  # the NKI buffer it was created in (e.g. shared_hbm)
    base_shape: tuple = ()  # shape of the tensor it was created as
    base_dtype: DType | None = None
    site: SourceLocation | None = None
    alloc: int = -1  # on-chip: the id of its record.Allocation
    column: int = 0  # on-chip: where its bytes start in each row of the arena's data
    # lazy initialization: called with the byte range [lo, hi) (per partition, from the
    # tensor's start) of each access before it is recorded (legacy/language.py)
    lazy_fill: object = None
    # what was written, coarsely (machine/written.py): all of it (or not tracked), else
    # boxes (p_lo, p_hi, lo, hi) relative to the storage; kept only with numerics on
    wfull: bool = False
    wboxes: list | None = None
    # on chip, placed virtually: the fill pattern row its bytes hold but the arena does
    # not yet (written on the first use of `data`, or dropped by an instruction that
    # writes every byte first: isa/base.py)
    unfilled: np.ndarray | None = None
    # HBM, numerics on: the fill pattern its buffer holds but does not yet (`Unwritten`);
    # accesses go through machine/access.py, which fills only what they touch
    unwritten: Unwritten | None = None
    # on chip, placed virtually, numerics on: its own bytes, row_bytes per partition in
    # rows a cache line apart (`_tile`), instead of columns of the arena's `data`
    own: np.ndarray | None = None

    def __post_init__(self):
        if self.born_initialized:
            self.wfull = True

    @property
    def on_chip(self) -> bool:
        return self.space != "hbm"

    @property
    def data(self) -> np.ndarray:
        if not self.on_chip:
            if self.unwritten is not None:  # (a use of the whole buffer)
                self.unwritten.before(0, self.row_bytes)
                self.unwritten = None
            return self.buf
        if self.own is not None:
            if self.unfilled is not None:
                self.own[:, :self.row_bytes] = self.unfilled
                self.unfilled = None
            return self.own
        if self.unfilled is not None:
            self.memory.data[self.partition:self.partition + self.partitions,
                             self.column:self.column + self.row_bytes] = self.unfilled
            self.unfilled = None
        return self.memory.data

    def whole(self, t) -> bool:
        """Whether the static view `t` of this storage is every byte of it, each once
        (offset 0, C-contiguous, as many bytes as the storage)."""
        if t.dyn is not None or t.offset or \
                math.prod(t.shape) * t.dtype.itemsize != self.partitions * self.row_bytes:
            return False
        return row_major(t)

    @property
    def initialized(self) -> np.ndarray | None:
        if self.own is not None:
            if self.init is None:
                self.init = np.zeros(self.own.shape, dtype=bool)
            return self.init
        if self.on_chip:
            return self.memory.init
        if self.init is None and self.buf is not None:
            # np.zeros maps pages lazily: only the bytes written ever take memory
            self.init = (np.ones if self.born_initialized else np.zeros)(self.row_bytes, bool)
        return self.init

    @property
    def arena_row_bytes(self) -> int:
        """Bytes between consecutive partitions in `data` (on-chip only)."""
        return self.own.shape[1] if self.own is not None else self.memory.row_bytes

    @property
    def data_partition(self) -> int:
        """The row of `data` holding its first partition (on-chip only)."""
        return 0 if self.own is not None else self.partition


def next_fit(taken: list, size: int, cursor: int, base: int, limit: int,
             align: int) -> int | None:
    """Where `size` bytes fit in [base, limit) between the sorted, disjoint [start, end)
    spans of `taken`, at an `align`-byte boundary: the first place at or after `cursor`,
    else (wrapping around) the first from `base`; None when no gap fits."""
    start = _first_fit(taken, size, max(base, -(-cursor // align) * align), limit, align)
    return start if start is not None else _first_fit(taken, size, base, limit, align)


def _first_fit(taken: list, size: int, p: int, limit: int, align: int) -> int | None:
    """next_fit's search: the first place at or after `p` (then at `align`-byte
    boundaries past the spans in the way) where `size` bytes fit below `limit`."""
    i = bisect.bisect_left(taken, (p,))
    if i and taken[i - 1][1] > p:
        i -= 1
    n = len(taken)
    while p + size <= limit:
        if i == n or taken[i][0] - p >= size:
            return p
        p = max(p, -(-taken[i][1] // align) * align)
        i += 1
    return None


_PAGE, _CACHE_LINE = 4096, 64


def _row_pitch(nbytes: int) -> int:
    """The bytes between partitions in an arena holding `nbytes` per partition: whole
    pages plus one cache line. (With a pitch that is a multiple of 64 KiB the rows of a
    tile all fall in the same cache sets: a [128, 512] fp32 GEMM on arena views ran
    ~12% slower on the conflict misses.)"""
    return -(-nbytes // _PAGE) * _PAGE + _CACHE_LINE


_SPARE_ARENAS: list = []  # arena arrays of finished runs, oldest first
_MAX_SPARES = 4  # (one run of an LNC=2 kernel leaves four: SBUF and PSUM per core)


def _arena(partitions: int, row_bytes: int) -> np.ndarray:
    """A (partitions x row_bytes) byte array for an arena's `data`: one that a finished
    run left, else a fresh one. (Its bytes are never read before they are written: a
    placement fills its columns first. Reuse spares a run the page faults of the memory
    its tiles touch: zeroing the 2 MiB pages NumPy asks for, 4-9 ms a run.)"""
    for i in range(len(_SPARE_ARENAS) - 1, -1, -1):
        try:
            if _SPARE_ARENAS[i].shape == (partitions, row_bytes):
                return _SPARE_ARENAS.pop(i)
        except IndexError:  # (another core's thread took one meanwhile)
            break
    return np.zeros((partitions, row_bytes), dtype=np.uint8)


def _recycle(data: np.ndarray) -> None:
    """Keep an arena's `data`, which its memory no longer holds, for `_arena`, unless
    something else still refers to it (a view of it: every view's base is the array).
    Only the newest few are kept, bounding the memory held between runs."""
    if sys.getrefcount(data) > 3:  # (the caller's name, this frame's and the call's)
        return
    _SPARE_ARENAS.append(data)
    while len(_SPARE_ARENAS) > _MAX_SPARES:
        try:
            _SPARE_ARENAS.pop(0)
        except IndexError:
            break


_SPARE_TILES: dict[tuple, list] = {}  # shape -> byte arrays of dead virtual tensors
_SPARE_TILE_BYTES = 64 << 20  # (at most, in all)
_spare_bytes = [0]


def _tile(partitions: int, nbytes: int) -> np.ndarray:
    """A byte array for a virtual tensor's values, `nbytes` per partition: one a dead
    tensor left (of this run or an earlier one: a loop's tiles stay in the host's caches
    and mapped), else a new one. Its bytes are not read before they are written.

    Its rows are an odd number of cache lines apart: not adjacent, so that NumPy loops
    over a tile row by row as it did over the rows of an arena (which NaN an operation
    on two NaNs gives depends on where its inner loops start and end), and a row's lines
    do not share cache sets with the next row's."""
    pitch = -(-nbytes // 128) * 128 + _CACHE_LINE
    spare = _SPARE_TILES.get((partitions, pitch))
    if spare:
        try:
            a = spare.pop()
        except IndexError:  # (another core's thread took it)
            pass
        else:
            _spare_bytes[0] -= a.nbytes
            return a
    return np.empty((partitions, pitch), dtype=np.uint8)


def _spare_tile(a: np.ndarray) -> None:
    """Keep the bytes of a dead virtual tensor for `_tile`, unless a view of them is
    still alive (its base is the array) or the spares hold enough already."""
    if sys.getrefcount(a) > 3 or _spare_bytes[0] + a.nbytes > _SPARE_TILE_BYTES:
        return  # (the refcount: the caller's name, this frame's and the call's)
    _SPARE_TILES.setdefault(a.shape, []).append(a)
    _spare_bytes[0] += a.nbytes


@dataclass
class _Explicit:
    """A live explicitly placed tensor (for aliasing and capacity messages)."""
    start: int
    nbytes: int
    p_lo: int
    p_hi: int
    storage: object = None  # a weak reference to its Storage


class OnChipMemory:
    """One core's SBUF or PSUM while a kernel runs: a (partitions x width) byte arena.

    Its first `capacity` bytes per partition are the physical memory. A tensor with an
    explicit `address=` is placed there exactly, may overlap other tensors (that is how
    kernels alias memory), keeps the bytes of any live explicit tensor it overlaps, and
    raises a CapacityError when it ends past the capacity.

    A tensor without an address is logical, as it is to neuronx-cc: it gets its own
    virtual byte range past the physical bytes (the arena grows as needed), so a kernel
    may declare more than fits, and its values never depend on where it will live.
    Where each of its blocks lives physically, from its first access to its last, and
    what spills when the live blocks do not fit, is decided after the run from the
    recorded accesses by the compiler model (trnsim.compiler.allocation). Virtual space
    is reused once a tensor (and every view of it) is garbage-collected, which only
    bounds the simulator's own memory. Only a single block larger than the physical
    memory fails here, since no placement could ever hold it.

    The values of explicitly placed tensors are kept in `data` (and their written-flags
    in `init`), (partitions x row_bytes) arrays, at their addresses, so that overlapping
    tensors share bytes. A virtually placed tensor keeps its values in an array of its
    own (`Storage.own`, and its flags in `Storage.init`), its partitions' rows one cache
    line apart (`_tile`): NumPy copies into and out of a tile ran about 2x faster than
    on rows an arena row apart. The arrays of dead tensors are reused at once, so a
    loop's tiles stay in the host's caches.

    Fresh space holds the fill pattern (NaN / 4) and counts as unwritten for strict
    mode (the flags are made on first use). A run without numerics never reads or
    writes memory values: with `values=False` the arena keeps no bytes and no flags
    (`data` and `init` are None), only the placement bookkeeping and `width`."""

    def __init__(self, space: str, core: int, partitions: int, capacity: int,
                 align: int, chip_name: str, values: bool = True):
        self.space = space
        self.core = core
        self.partitions = partitions
        self.capacity = capacity
        self.align = align
        self.chip_name = chip_name
        self.virtual_base = self.aligned(capacity)
        self.width = self.virtual_base  # of the virtual address space
        self.values = values
        self.row_bytes = _row_pitch(capacity)  # of `data` and `init`
        self.data = _arena(partitions, self.row_bytes) if values else None
        self._init = None  # made on first use (`init`)
        self._explicit: dict[int, _Explicit] = {}  # by id
        self._taken: list[tuple[int, int]] = []  # live virtual [start, end) spans, sorted
        self._cursor = self.virtual_base
        self._owned: dict[tuple, np.ndarray] = {}  # span -> the bytes of a live virtual tensor
        # a weak reference to the Storage of each live tensor -> its span (virtual) or id
        # (explicit); the reference's callback, `_dead.append` itself (no Python call at a
        # death), queues it in `_dead`, reaped before each use (a weakref.finalize cost
        # 1 us more a tensor)
        self._alive: dict[weakref.ref, tuple | int] = {}
        self._dead: list[weakref.ref] = []
        self._ids = itertools.count()

    def __del__(self):
        data, self.data = self.data, None
        if data is not None:
            _recycle(data)
        while self._owned:
            _spare_tile(self._owned.popitem()[1])

    @property
    def nbytes(self) -> int:
        """The bytes this arena holds now (values and flags; 0 without values)."""
        return sum(a.nbytes for a in (self.data, self._init) if a is not None)

    @property
    def init(self) -> np.ndarray | None:
        """Which bytes were written (None without values). Made on first use: a run
        that is not strict reads only PSUM's (isa/matmul.py), and np.zeros takes pages
        from the OS only as they are written."""
        if self._init is None and self.values:
            self._init = np.zeros(self.data.shape, dtype=bool)
        return self._init

    def aligned(self, n: int) -> int:
        """n bytes rounded up to the alignment of a placement here."""
        return -(-n // self.align) * self.align

    def _reap(self) -> None:
        """Forget the tensors that died. (Their callbacks only queue the reference, so a
        collection during an iteration over the tables cannot change them.)"""
        dead, alive, taken = self._dead, self._alive, self._taken
        while dead:
            span = alive.pop(dead.pop())
            if type(span) is int:  # (an explicit tensor's id)
                del self._explicit[span]
                continue
            del taken[bisect.bisect_left(taken, span)]  # (spans are disjoint)
            if self.values:
                _spare_tile(self._owned.pop(span))

    def allocate(self, storage: Storage, dtype: DType, desc: str, block_bytes: int,
                 address=None) -> None:
        """Place `storage` (explicitly at `address`, else virtually); `desc`: its dtype
        and declared shape, `block_bytes`: the bytes per partition of one block (its unit
        of physical allocation)."""
        if address is None:
            self._check_block(storage, desc, block_bytes)
            self.place_virtual(storage, dtype, self.aligned(storage.row_bytes))
            return
        if self._dead:
            self._reap()
        key = self._place_explicit(storage, dtype, desc, address)
        self._alive[weakref.ref(storage, self._dead.append)] = key

    def _check_block(self, storage: Storage, desc: str, block_bytes: int) -> None:
        """Raise a CapacityError where one block of `storage` exceeds the memory."""
        if self.aligned(block_bytes) > self.capacity:
            what = "block" if block_bytes < storage.row_bytes else "tensor"
            raise CapacityError(
                f"{self.space.upper()} overflow on {self.chip_name}: {what} of "
                f"{storage.name or '<unnamed>'!r} {desc} needs {block_bytes} bytes per "
                f"partition, more than the {self.capacity} bytes of "
                f"{self.space.upper()} per partition; no placement or spill can hold it "
                f"(split it into smaller tiles)", op="ndarray", location=storage.site)

    def placement(self) -> tuple:
        """Where the next virtual placements start (`restore_placement` returns there: the
        tensors placed since are freed once their objects die, as every tensor is)."""
        return self._cursor, self.width

    def restore_placement(self, placement: tuple) -> None:
        self._cursor, self.width = placement

    def placed_in_turn(self, sizes: list) -> list | None:
        """Where `place_virtual` would put tensors of `sizes` (aligned bytes per
        partition) placed one after another now, none of them freed; None where one
        would need the arena to grow. Nothing is placed."""
        if self._dead:
            self._reap()  # (what a placement does first)
        taken, cursor, at = list(self._taken), self._cursor, []
        for size in sizes:
            start = next_fit(taken, size, cursor, self.virtual_base, self.width, self.align)
            if start is None:
                return None
            bisect.insort(taken, (start, start + size))
            cursor = start + size
            at.append(start)
        return at

    def place_virtual(self, storage: Storage, dtype: DType, size: int) -> None:
        """Place `storage` at a free virtual range of `size` (aligned) bytes per
        partition, its blocks checked (`allocate`), and free the range once it dies
        (the weak reference's callback queues it for `_reap`)."""
        if self._dead:
            self._reap()
        taken, align = self._taken, self.align
        # next_fit's first try, where it is the answer: no live span ends past it
        start = -(-self._cursor // align) * align
        if start < self.virtual_base:
            start = self.virtual_base
        end = start + size
        if end <= self.width and (not taken or taken[-1][1] <= start):
            span = (start, end)
            taken.append(span)
        else:
            start = self._virtual_fit(size)
            span = (start, start + size)
            bisect.insort(taken, span)
        storage.address = storage.column = start
        self._cursor = span[1]
        if self.values:  # (no other tensor shares these bytes: fill on first use)
            nbytes = storage.row_bytes
            storage.column = 0
            storage.own = self._owned[span] = _tile(storage.partitions, nbytes)
            storage.unfilled = _fill_row(dtype, nbytes)
        self._alive[weakref.ref(storage, self._dead.append)] = span

    def _place_explicit(self, storage: Storage, dtype: DType, desc: str, address) -> int:
        """Place `storage` at byte `address` of each of its partitions (the bytes of
        live explicit tensors it overlaps kept); its key."""
        nbytes = storage.row_bytes
        align = self.align
        name = storage.name or "<unnamed>"
        start = int(address)
        if start % align and self.space == "psum":
            raise CapacityError(
                f"PSUM tensor {name!r} {desc} at address {start} is not bank-aligned "
                f"(PSUM addresses are multiples of the {align}-byte bank per "
                "partition)", op="ndarray", location=storage.site)
        if start < 0 or start + nbytes > self.capacity:
            raise CapacityError(
                f"tensor {name!r} {desc} at address {start} with {nbytes} bytes per "
                f"partition ends at byte {start + nbytes}, past the {self.capacity} "
                f"bytes of {self.space.upper()} per partition on {self.chip_name}",
                op="ndarray", location=storage.site)
        storage.address = start
        key = next(self._ids)
        storage.column = column = start
        rows = slice(storage.partition, storage.partition + storage.partitions)
        cols = slice(column, column + nbytes)
        p_lo, p_hi = storage.partition, storage.partition + storage.partitions
        kept = []
        # keep the bytes of live explicit tensors it overlaps
        for b in self._explicit.values() if self.values else ():
            lo, hi = max(start, b.start), min(start + nbytes, b.start + b.nbytes)
            plo, phi = max(p_lo, b.p_lo), min(p_hi, b.p_hi)
            if lo < hi and plo < phi:
                r, c = slice(plo, phi), slice(lo, hi)
                init = None if self._init is None else self._init[r, c].copy()
                kept.append((r, c, self.data[r, c].copy(), init))
                # aliased bytes: written through either tensor; neither is tracked
                # for the never-written warning (machine/written.py)
                other = b.storage() if b.storage is not None else None
                storage.wfull = True
                if other is not None:
                    other.wfull = True
        self._explicit[key] = _Explicit(start, nbytes, p_lo, p_hi, weakref.ref(storage))
        if self.values:
            self.data[rows, cols] = _fill_row(dtype, nbytes)
            if self._init is not None:
                self._init[rows, cols] = False
            for r, c, data, init in kept:
                self.data[r, c] = data
                if init is not None:
                    self._init[r, c] = init
        return key

    def _virtual_fit(self, size: int) -> int:
        """A free virtual range for `size` bytes, aligned (next-fit; the arena grows when
        none is)."""
        start = next_fit(self._taken, size, self._cursor, self.virtual_base, self.width,
                         self.align)
        if start is None:
            start = max(self._taken[-1][1] if self._taken else 0, self.virtual_base)
            self._grow(start + size)
        return start

    def _grow(self, width: int) -> None:
        self.width = max(width, 2 * self.width)

class HbmSpace:
    """Virtual HBM addresses for a group of cores; each tensor keeps its own buffer."""

    ALIGN = 512

    def __init__(self):
        self._next = 0

    @property
    def placed_bytes(self) -> int:
        """The bytes of every HBM tensor placed so far (each rounded up to ALIGN)."""
        return self._next

    def place(self, nbytes: int) -> int:
        addr = self._next
        self._next += -(-max(nbytes, 1) // self.ALIGN) * self.ALIGN
        return addr
