"""A kernel run: the chip, its cores' memories, the program being recorded, and the
options (numerics on/off, strict). Logical cores (LNC=2) run as cooperative threads
that hand over only where they block (core_barrier, sendrecv), so a run is
deterministic and the record interleaves the cores in a reproducible order."""
from __future__ import annotations

import contextlib
import math
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from ..chips import Chip, load_chip
from ..numerics.dtypes import DType, as_dtype
from .errors import NkiValidationError, kernel_location
from .gc_pause import gc_paused
from .memory import HbmSpace, OnChipMemory, Storage, fresh_hbm
from .record import Allocation, Program
from .tensor import MemoryRegion, NkiTensor, as_region


@dataclass
class Options:
    numerics: bool = True
    strict: bool = False
    expand: bool = True  # loop expansion where it applies (machine/expand.py)


STRICT_ENV = "TRNSIM_STRICT"


def strict_from_env() -> bool:
    """Strict mode as $TRNSIM_STRICT sets it (for runs that do not say)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class CoreState:
    id: int
    sbuf: OnChipMemory
    psum: OnChipMemory
    accumulators: dict = field(default_factory=dict)  # engine -> [P] fp32 registers
    rng: dict = field(default_factory=dict)  # engine -> generator state
    # Matmul accumulation groups, per PSUM byte (partitions x bytes, created by the first
    # matmul): the id of the group (PSUM tensor) a matmul last wrote the byte in, 0 where
    # none did or a non-matmul write came since. See isa/matmul.py (PsumGroups).
    psum_group: "object | None" = None

    def end_psum_groups(self, p_lo: int, p_hi: int, lo: int, hi: int) -> None:
        """A non-matmul write to PSUM bytes [lo, hi) of partitions [p_lo, p_hi) ends
        any matmul accumulation group there (the next accumulate=None matmul overwrites)."""
        if self.psum_group is not None:
            self.psum_group.fill((p_lo, p_hi, lo, hi), 0)


# (dtype, declared shape) -> the allocation's description ("float32[128, 512]"): a few
# kinds of tile are declared thousands of times
_DESCRIPTIONS: dict = {}


class Run:
    def __init__(self, chip=None, lnc: int = 1, options: Options | None = None):
        self.chip: Chip = load_chip(chip)
        self.lnc = lnc
        self.options = options or Options()
        self.dst_mask = None  # bool array restricting instruction results (legacy masks)
        self.legacy_pending = None  # a legacy result not yet written (legacy/ops.py)
        self.issue_site = None  # kernel line of a deferred instruction being run now
        # the once-per-run warning on a read of never-written memory was given (or is
        # not wanted: strict mode raises instead, without numerics nothing is read)
        self.uninit_warned = self.options.strict or not self.options.numerics
        self.program = Program(self.chip, lnc)
        self.hbm = HbmSpace()
        core = self.chip.core
        values = self.options.numerics  # without numerics memory values are never used
        self.cores = [
            CoreState(i,
                      OnChipMemory("sbuf", i, core.partitions, core.sbuf_usable_bytes_per_partition,
                                   core.sbuf_align_bytes, self.chip.name, values),
                      OnChipMemory("psum", i, core.partitions, core.psum_bytes_per_partition,
                                   core.psum_bank_bytes, self.chip.name, values))
            for i in range(lnc)]
        # shared_hbm tensors in creation order: every program instance (logical core, or
        # legacy SPMD grid point) gets the k-th one on its k-th creation
        self._shared: list[NkiTensor] = []
        self._shared_seen: dict = {}
        # (shape, dtype, buffer) as a kernel passed them -> (shape, DType, region, row
        # bytes, description, buffer name, row bytes aligned in its memory, strides) of
        # an on-chip tensor they declared, checked
        self._tile_kinds: dict = {}
        self.grid: tuple = ()  # the legacy SPMD launch grid
        self.instance: tuple = ()  # the legacy SPMD grid point being run
        self.scheduler = CoreScheduler(lnc)
        # state that recording changes besides the record (lazily filled or created
        # blocks, PSUM boxes first written): the allocation id of each tensor so changed,
        # so that loop expansion (machine/expand.py) declines a loop whose iterations
        # change it in a tensor older than themselves
        self.untracked_changes: list = []

    def compile(self) -> None:
        """Put the recorded program through the compiler model (trnsim.compiler): its
        on-chip tensors get physical space, and spills their DMAs. Raises a
        CapacityError when one instruction's operands cannot fit even then."""
        from ..compiler import compile_program
        self.program = compile_program(self.program)

    # -- tensors ------------------------------------------------------------
    def new_tensor(self, shape, dtype, buffer, name="", address=None,
                   block_bytes=None, declared_shape=None) -> NkiTensor:
        """A tensor in `buffer`. On chip, `block_bytes` is the bytes per partition of one
        block the compiler allocates on its own (default: the whole tensor), and
        `declared_shape` the shape the kernel declared, where it differs (block dims)."""
        plain = address is None and block_bytes is None and declared_shape is None
        kind = None
        if plain:
            try:
                kind = self._tile_kinds.get((shape, dtype, buffer))
            except TypeError:  # (an unhashable shape: a list)
                pass
        if kind is not None:  # a kind of tile declared before: checked, described
            dtype, region, desc, size, storage_fields, tensor_fields = kind
            core = self.cores[_local.core_id or 0]  # (current_core() of this run)
            site = self.issue_site or kernel_location(2)
            memory = core.sbuf if region is MemoryRegion.sbuf else core.psum
            st = object.__new__(Storage)  # (its fields: the kind's, and these)
            st.__dict__.update(storage_fields)
            st.name, st.core, st.memory, st.site = name, memory.core, memory, site
            memory.place_virtual(st, dtype, size)
            self._record_allocation(st, name, desc, dtype, site, st.row_bytes, False)
            t = object.__new__(NkiTensor)
            t.__dict__.update(tensor_fields)
            t.storage, t.name = st, name
            return t
        given = (shape, dtype, buffer)
        dtype = as_dtype(dtype)
        region = as_region(buffer)
        shape = tuple(map(int, shape if isinstance(shape, (tuple, list)) else (shape,)))
        if min(shape, default=1) <= 0:
            raise NkiValidationError(f"tensor {name!r} shape {shape}: sizes must be positive",
                                     op="ndarray")
        core = current_core()
        # a deferred legacy result is allocated at the kernel line that asked for it
        site = self.issue_site or kernel_location(2)
        if region.space == "hbm":
            if region is MemoryRegion.shared_hbm:
                key = (core.id, self.instance)
                k = self._shared_seen.get(key, 0)
                self._shared_seen[key] = k + 1
                if k < len(self._shared):
                    return self._shared[k]
            buf = unwritten = None
            if self.options.numerics:
                buf, unwritten = fresh_hbm(math.prod(shape) * dtype.itemsize, dtype)
            t = self.hbm_tensor(buf, shape, dtype, region, name, site)
            t.storage.unwritten = unwritten
            if region is MemoryRegion.shared_hbm:
                self._shared.append(t)
            return t
        if len(shape) < 2:
            raise NkiValidationError(
                f"on-chip tensor {name!r} must be at least 2-D (partition, free...); got "
                f"shape {shape} (Insufficient rank!)", op="ndarray")
        pmax = self.chip.core.partitions
        if shape[0] > pmax:
            raise NkiValidationError(
                f"Size of partition dimension {shape[0]} exceeds architecture limitation of "
                f"{pmax} (tensor {name!r} {dtype}{list(shape)} in {region})", op="ndarray")
        memory = core.sbuf if region is MemoryRegion.sbuf else core.psum
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        p0 = 0
        if address is not None:
            if isinstance(address, (tuple, list)):
                p0, address = int(address[0]), int(address[1])
            if p0 + shape[0] > pmax:
                raise NkiValidationError(
                    f"tensor {name!r} at partition {p0} with {shape[0]} partitions ends past "
                    f"partition {pmax}", op="ndarray")
        block_bytes = row_bytes if block_bytes is None else int(block_bytes)
        if region is MemoryRegion.psum and block_bytes > memory.capacity:
            raise NkiValidationError(
                f"PSUM tensor {name!r} {dtype}{list(shape)} needs {block_bytes} bytes per "
                f"partition; PSUM has {memory.capacity}", op="ndarray")
        key = (dtype, declared_shape or shape)
        desc = _DESCRIPTIONS.get(key)
        if desc is None:
            desc = _DESCRIPTIONS[key] = f"{dtype}[{', '.join(map(str, key[1]))}]"
        buffer_name = str(region)
        t = self._placed(memory, site, shape, dtype, region, name, desc, buffer_name,
                         row_bytes, p0, block_bytes, address)
        if plain:
            try:
                self._tile_kinds[given] = _tile_kind(memory, shape, dtype, region, desc,
                                                     row_bytes, t.strides)
            except TypeError:
                pass
        return t

    def _placed(self, memory, site, shape, dtype, region, name, desc, buffer_name,
                row_bytes, p0, block_bytes, address) -> NkiTensor:
        """A checked on-chip tensor placed in `memory` (explicitly at `address`, else
        virtually), with its Allocation recorded."""
        st = Storage(region.space, name, memory.core, 0, row_bytes, p0, shape[0], memory,
                     buffer_name=buffer_name, site=site, base_shape=shape, base_dtype=dtype)
        memory.allocate(st, dtype, desc, block_bytes, address)
        self._record_allocation(st, name, desc, dtype, site, block_bytes, address is not None)
        return NkiTensor.over(st, shape, dtype, region, name)

    def _record_allocation(self, st, name, desc, dtype, site, block_bytes,
                           explicit: bool) -> None:
        """The Allocation of on-chip storage `st`, just placed."""
        program = self.program
        allocations = program.allocations
        st.alloc = alloc = len(allocations)
        allocations[alloc] = Allocation(
            alloc, st.space, st.core, name, desc, dtype.name, site, st.address,
            st.row_bytes, block_bytes, st.partition, st.partitions, explicit,
            len(program.instructions))

    def hbm_tensor(self, buf: np.ndarray | None, shape, dtype: DType, region, name,
                   site=None, initialized=False) -> NkiTensor:
        """An HBM tensor over `buf` (a flat uint8 array it aliases). Without numerics
        the tensor keeps no buffer (`buf` is dropped, and may be None)."""
        nbytes = math.prod(shape) * dtype.itemsize
        if buf is not None and buf.nbytes != nbytes:
            raise ValueError(f"HBM tensor {name!r}: buffer of {buf.nbytes} bytes for "
                             f"{dtype}{list(shape)} ({nbytes} bytes)")
        if not self.options.numerics:
            buf = None
        st = Storage("hbm", name, _local.core_id or 0, self.hbm.place(nbytes), nbytes,
                     buf=buf, born_initialized=initialized, buffer_name=str(region),
                     site=site, base_shape=tuple(shape), base_dtype=dtype)
        return NkiTensor(shape, dtype, st, region, name)


def _tile_kind(memory, shape, dtype, region, desc, row_bytes, strides) -> tuple:
    """What `Run.new_tensor` keeps of a plain on-chip tensor, checked, to make the next
    of its kind: (dtype, region, description, bytes per partition aligned in `memory`,
    and the attributes of a fresh Storage and NkiTensor of the kind, in their order, the
    few that differ between tensors of a kind to be set per tensor, or by the placement)."""
    st = Storage(region.space, "", memory.core, 0, row_bytes, 0, shape[0], None,
                 buffer_name=str(region), base_shape=shape, base_dtype=dtype)
    t = NkiTensor.view_of(shape, dtype, None, region, "", strides, 0)
    return (dtype, region, desc, memory.aligned(row_bytes), dict(vars(st)),
            dict(vars(t)))


class CoreDeadlockError(NkiValidationError):
    """Every logical core that has not finished waits on another (an unmatched
    core_barrier or sendrecv)."""


class _Aborted(BaseException):
    """Unwinds a core's thread after another core failed or the cores deadlocked
    (a BaseException so that kernel code catching Exception does not swallow it)."""


class CoreScheduler:
    """Runs one thread per logical core, one at a time: a core runs until it finishes
    or blocks, then the lowest-id runnable core takes over. When a core raises, the
    others are unwound at their next wait and the first error is re-raised; when no
    core can run, the run ends with a CoreDeadlockError naming what each core waits on."""

    def __init__(self, n: int, label=None, between: str = "logical cores"):
        self.n = n
        # how the deadlock report names worker i (a logical core, or a rank) and them all
        self.label = label or (lambda i: f"core {i}")
        self.between = between
        self.cond = threading.Condition()
        self.running = 0
        self.done = [False] * n
        self.blocked: dict[int, tuple] = {}  # core -> (ready predicate, description)
        self.aborted = False
        self.deadlock: CoreDeadlockError | None = None

    def run(self, body, setup=None):
        """`body(i)` for every worker i, one thread each; `setup(i)`, if given, sets the
        worker's thread state (default: it runs logical core i)."""
        setup = setup or _run_core
        if self.n == 1:
            setup(0)
            return [body(0)]
        results, errors = [None] * self.n, []

        def worker(i):
            setup(i)
            with self.cond:
                self.cond.wait_for(lambda: self.running == i or self.aborted)
                start = not self.aborted
            try:
                if start:
                    results[i] = body(i)
            except _Aborted:
                pass
            except BaseException as e:  # noqa: BLE001 - reraised in the caller
                errors.append(e)
                with self.cond:
                    self.aborted = True
            finally:
                with self.cond:
                    self.done[i] = True
                    self._hand_over()
        threads = [threading.Thread(target=worker, args=(i,), daemon=True,
                                    name=f"trnsim-core{i}") for i in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if self.deadlock is not None:
            raise self.deadlock
        return results

    def _hand_over(self):
        """Pick the next core to run (called with the lock held); never raises."""
        if not self.aborted:
            for i in range(self.n):
                if self.done[i]:
                    continue
                if i in self.blocked:
                    try:
                        ready = self.blocked[i][0]()
                    except Exception:  # noqa: BLE001 - a broken predicate cannot run
                        ready = False
                    if not ready:
                        continue
                self.running = i
                self.cond.notify_all()
                return
            if all(self.done):
                self.running = -1
                self.cond.notify_all()
                return
            self.deadlock = self._deadlock_error()
            self.aborted = True
        self.running = -1
        self.cond.notify_all()

    def _deadlock_error(self) -> CoreDeadlockError:
        lines = []
        for i in range(self.n):
            if i in self.blocked:
                lines.append(f"{self.label(i)} waits in "
                             f"{self.blocked[i][1] or 'a cross-core wait'}")
            elif self.done[i]:
                lines.append(f"{self.label(i)} has finished the kernel")
        return CoreDeadlockError(
            f"deadlock between {self.between}: " + "; ".join(lines) + ". Every core must "
            "issue the same sequence of core_barrier (same cores) and sendrecv (matching "
            "ranks and pipe_id) calls, and every rank the same sequence of collectives "
            "(same replica groups).", op=None,
            location=next((self.blocked[i][2] for i in sorted(self.blocked)), None))

    def block_until(self, ready, what: str = "") -> None:
        """Yield this core until `ready()` holds (another core makes it so). `what`
        describes the wait for the deadlock message."""
        i = _local.worker
        if self.n == 1:
            if not ready():
                raise CoreDeadlockError(f"{what or 'this instruction'} waits on another "
                                        "logical core, but the kernel runs with LNC=1")
            return
        with self.cond:
            if ready():
                return
            self.blocked[i] = (ready, what, kernel_location(2))
            self._hand_over()
            self.cond.wait_for(lambda: self.running == i or self.aborted)
            del self.blocked[i]
            if self.aborted:
                raise _Aborted()


class _Local(threading.local):
    core_id: int | None = None
    worker: int = 0  # this thread's index in its CoreScheduler
    run: Run | None = None  # a rank's Run in a multi-rank run (else the active one)


def _run_core(i: int) -> None:
    _local.core_id = _local.worker = i


_local = _Local()
_active: list[Run] = []


def current_run() -> Run | None:
    """The run this thread records into (a rank's, in a multi-rank run), or None
    outside a kernel."""
    run = _local.run
    if run is not None:
        return run
    return _active[-1] if _active else None


def active_run() -> Run:
    run = _local.run
    if run is not None:
        return run
    if not _active:
        raise NkiValidationError("NKI instructions run only inside a kernel: call it through "
                                 "nki.simulate(kernel)(...) or trnsim.profile(kernel, ...)")
    return _active[-1]


def current_core() -> CoreState:
    run = active_run()
    return run.cores[_local.core_id or 0]


def program_id() -> int:
    return _local.core_id or 0


class activate:
    """Context manager making `run` the active run (while kernel `fn`, if given, runs:
    its plain loops may expand, machine/expand.py).

    The cyclic garbage collector is paused meanwhile: the record grows by hundreds of
    thousands of long-lived objects that each collection walks again (10-25% of a
    timing-only recording); cyclic garbage the kernel leaves is collected after."""

    def __init__(self, run: Run, fn=None):
        self.run = run
        self.fn = fn
        self._expansion = None
        self._gc = None

    def __enter__(self):
        from .expand import while_kernel_runs
        self._gc = gc_paused()
        self._gc.__enter__()
        _active.append(self.run)
        self._expansion = while_kernel_runs(self.run, self.fn)
        self._expansion.__enter__()
        return self.run

    def __exit__(self, *exc):
        try:
            self._expansion.__exit__(*exc)
            _active.pop()
            _local.core_id = None
        finally:
            self._gc.__exit__(None, None, None)


@contextlib.contextmanager
def program_order():
    """`no_reorder`: the instructions recorded inside keep their program order (the
    compiler model's scheduler may move none of them past another, nor anything from
    outside into the block)."""
    run = current_run()
    if run is None:
        yield
        return
    core = current_core().id
    start = len(run.program)
    try:
        yield
    finally:
        run.program.fences.extend((core, k) for k in range(start, len(run.program) + 1))
