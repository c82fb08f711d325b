"""What every instruction does around its arithmetic: resolve its engine, validate its
operands with errors that name the op, operand, limit and kernel line, read operands
(recording the access), write results with the RNE cast, and append one record.

    with Instr("tensor_tensor", engine, default="vector") as ins:
        a = ins.read_fp32("data1", ins.operand("data1", data1))
        ...
        ins.write("dst", dst, result)
"""
from __future__ import annotations

import math

import numpy as np

from ..machine.access import (Access, _data, _layout, _strided, add_raw,
                              describe_access, mark_written, read_converted, read_raw,
                              read_raw_masked, writable_rows, write_raw)
from ..machine.errors import (NkiValidationError, UnsupportedError, describe,
                              kernel_location, numerics_warning)
from ..machine.record import Instruction
from ..machine.runtime import _active, _local, active_run
from ..machine.tensor import NkiTensor
from ..machine.written import check_read, note_write
from ..numerics.cast import cast, to_fp32
from ..numerics.dtypes import float32
from .engines import TABLE as ENGINE_RULES, candidates
from .enums import coerce, engine as Engine

_ON_CHIP = ("sbuf", "psum")
# Numbers an immediate operand may be: Python and NumPy numbers, and the ml_dtypes scalars
# (np.generic but not np.number), e.g. `nl.finfo(nl.bfloat16).min`.
_NUMBER = (bool, int, float, np.number)


def _is_number(v) -> bool:
    return isinstance(v, _NUMBER) or (isinstance(v, np.generic)
                                      and type(v).__module__.startswith("ml_dtypes"))


UNKEPT = object()  # `operand_key` of an operand whose checks are not kept


class ChecksMemo(dict):
    """What an instruction's checks found, kept per key of everything they read (an
    instruction family's `_key` function; None: not kept) with the chip they were made
    for, found for that chip only (by identity). Cleared once it holds 4,096 keys."""

    def found(self, key, chip):
        """The kept result for `key` on `chip`, else None."""
        hit = self.get(key) if key is not None else None
        return hit[1] if hit is not None and hit[0] is chip else None

    def keep(self, key, chip, result):
        """Keep `result` for `key` on `chip` (nothing where key is None); returns it."""
        if key is not None:
            if len(self) >= 4096:
                self.clear()
            self[key] = (chip, result)
        return result


def operand_key(value):
    """A constant or [P, 1] tile operand in the key under which an instruction keeps its
    checks: None, a static tile by shape, dtype and memory, a number by type and value
    (whether it is integral can decide the arithmetic), or UNKEPT for anything else."""
    if value is None:
        return None
    if type(value) is NkiTensor:
        return UNKEPT if value.dyn is not None else (value.shape, value.dtype,
                                                     value.buffer.space)
    if isinstance(value, NkiTensor) or not _is_number(value):
        return UNKEPT
    return type(value), value


_ENGINE_NAMES = {m.name: m._value_ for m in Engine}


def engine_name(e) -> str:
    """The engine as a name; accepts the enum, its name or its stub integer code."""
    if e is None:
        return "unknown"
    if type(e) is Engine:  # (the usual case; `.value` is the enum's Python property)
        return e._value_
    if type(e) is str:  # (a member's name, as nc_transpose passes it)
        name = _ENGINE_NAMES.get(e)
        if name is not None:
            return name
    member = coerce(Engine, e)
    return member.value if member is not None else str(e)


class Instr:
    __slots__ = ("run", "core", "chip", "opcode", "location", "numerics", "strict",
                 "pinned", "engine", "queue", "attrs", "reads", "writes", "_last_access")

    def __init__(self, opcode: str, engine=None, default: str = "vector",
                 allowed: tuple[str, ...] | None = None, **attrs):
        run = _local.run or (_active[-1] if _active else None)
        if run is None:
            run = active_run()  # (raises: no kernel runs)
        self.run = run
        self.core = run.cores[_local.core_id or 0]  # (current_core())
        self.chip = run.chip
        self.opcode = opcode
        self.location = run.issue_site or kernel_location(2)
        options = run.options
        self.numerics = options.numerics
        self.strict = options.strict
        if engine is None:
            name = "unknown"
        elif type(engine) is Engine:  # (engine_name's usual case, inline)
            name = engine._value_
        else:
            name = engine_name(engine)
        self.pinned = name != "unknown"  # else the compiler picks: see isa/engines.py
        if name == "unknown":
            name = default
        if allowed is not None and name not in allowed:
            self.fail(f"engine={name} is not allowed; use one of {', '.join(allowed)}")
        self.engine = name
        self.queue: str | None = None
        self.attrs = attrs
        self.reads: list[Access] = []
        self.writes: list[Access] = []
        self._last_access = None  # (view, role, mode, Access): see `access`

    def __enter__(self) -> "Instr":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            if not self.pinned and self.opcode in ENGINE_RULES:
                self.attrs["engines"] = candidates(self)
            # the record's list itself: Program.append and len are a Python call each
            record = self.run.program.instructions
            record.append(Instruction(
                len(record), self.core.id, self.engine, self.opcode,
                tuple(self.reads), tuple(self.writes), self.location, self.attrs, self.queue))
        elif isinstance(exc, NkiValidationError) and exc.op is None:
            # raised by a helper (a register or tensor check): name this instruction
            # and its kernel line
            raise type(exc)(exc.bare_message, op=self.opcode,
                            location=self.location) from None
        return False

    # -- errors -----------------------------------------------------------
    def fail(self, message: str, cls=NkiValidationError):
        raise cls(message, op=self.opcode, location=self.location)

    def require(self, cond, message: str, cls=NkiValidationError):
        if not cond:
            self.fail(message, cls)

    @property
    def generation(self) -> int:
        return self.chip.generation

    def require_generation(self, minimum: int, what: str | None = None):
        if self.generation < minimum:
            self.fail(f"{what or self.opcode} needs NeuronCore-v{minimum} or newer "
                      f"(gen{minimum}+); target {self.chip.name} is NeuronCore-v"
                      f"{self.generation}", UnsupportedError)

    # -- operands ---------------------------------------------------------
    def operand(self, role: str, t, buffers=_ON_CHIP) -> NkiTensor:
        """Check an operand is a tensor in one of `buffers` with a legal partition count."""
        if not isinstance(t, NkiTensor):
            self.fail(f"operand {role!r} must be an NKI tensor, got {type(t).__name__}")
        space = t.buffer.space
        if space not in buffers:
            self.fail(f"Expected operand {role!r} of {self.opcode!r} to be in address space "
                      f"{' or '.join(repr(b) for b in buffers)}, but got a tile in "
                      f"{space!r} instead ({describe(t)})")
        if self.engine == "gpsimd" and space == "psum":
            self.fail(f"operand {role!r} {describe(t)}: the GpSimd engine cannot access PSUM")
        if math.prod(t.shape) == 0:
            self.fail(f"operand {role!r} {describe(t)} is empty")
        if space != "hbm":
            pmax = self.chip.core.partitions
            if t.shape[0] > pmax:
                self.fail(f"{role} partition dimension {t.shape[0]} exceeds maximum {pmax} "
                          f"({describe(t)})")
        return t

    def same_partitions(self, *named):
        """named: (role, tensor) pairs that must cover the same number of partitions."""
        counts = [(r, t) for r, t in named if t is not None]
        if len({t.shape[0] for _, t in counts}) > 1:
            desc = ", ".join(f"{r}[{', '.join(map(str, t.shape))}]" for r, t in counts)
            full = "; ".join(f"{r}: {describe(t)}" for r, t in counts)
            self.fail(f"number of partitions (dimension 0 size of a tile) mismatch in "
                      f"parameters ({desc}) of {self.opcode!r} ({full})")

    def same_elements(self, a_role, a, b_role, b, per_partition=True):
        na = free_size(a) if per_partition else a.size
        nb = free_size(b) if per_partition else b.size
        if na != nb:
            what = "elements per partition" if per_partition else "elements"
            self.fail(f"{a_role} {describe(a)} and {b_role} {describe(b)} differ in "
                      f"{what} ({na} vs {nb})")

    # -- data -------------------------------------------------------------
    def access(self, role: str, t: NkiTensor, mode: str) -> Access:
        """describe_access(t, role, mode), reused when the same view is described again
        next (a matmul's dst: its bank check, its accumulation group, its write)."""
        last = self._last_access
        if last is not None and last[0] is t and last[1] == role and last[2] == mode:
            return last[3]
        a = describe_access(t, role, mode)
        self._last_access = (t, role, mode, a)
        return a

    def read(self, role: str, t: NkiTensor) -> np.ndarray | None:
        """Record a read of `t`; return its stored values (None without numerics)."""
        if t.dyn is not None:
            self._note_indirect(t)
        a = describe_access(t, role, "r")
        self.reads.append(a)
        if not self.numerics:
            return None
        if not t.storage.wfull and not self.run.uninit_warned:
            check_read(self.run, t, a, self.opcode, self.location)
        return read_raw(t, self.strict, self.opcode)

    def read_skipping(self, role: str, t: NkiTensor):
        """Like `read` for oob_mode=skip: (values, keep) where `keep` marks the dim-0
        rows whose runtime index is in bounds (None: all), or (None, None)."""
        if t.dyn is not None:
            self._note_indirect(t)
        a = describe_access(t, role, "r")
        self.reads.append(a)
        if not self.numerics:
            return None, None
        if not t.storage.wfull and not self.run.uninit_warned:
            check_read(self.run, t, a, self.opcode, self.location, skip_oob=True)
        return read_raw_masked(t, self.strict, self.opcode, skip_oob=True)

    def read_fp32(self, role: str, t: NkiTensor) -> np.ndarray | None:
        """Like `read`, in fp32 (a new array, converted straight from the memory)."""
        return self.read_as(role, t, _fp32_copy)

    def read_view(self, role: str, t: NkiTensor) -> np.ndarray | None:
        """Like `read`, without the copy: a read-only array that may be a view of the
        memory itself, so only valid until this instruction's first write (compute the
        results from it first; `write` handles a result that overlaps its dst)."""
        return self.read_as(role, t, _readonly)

    def read_as(self, role: str, t: NkiTensor, convert) -> np.ndarray | None:
        """Like `read`, returning `convert(stored values)`; `convert` must return a new
        array (it may be handed a view of the memory itself)."""
        if t.dyn is not None:
            self._note_indirect(t)
        a = describe_access(t, role, "r")
        self.reads.append(a)
        if not self.numerics:
            return None
        if not t.storage.wfull and not self.run.uninit_warned:
            check_read(self.run, t, a, self.opcode, self.location)
        return read_converted(t, convert, self.strict, self.opcode)

    def write(self, role: str, t: NkiTensor, values, *, raw: bool = False,
              skip_oob: bool = False, mask=None, add: bool = False,
              flagged: bool = False, grouped: bool = False) -> None:
        """Record a write of `t` and store `values` (cast to t's dtype with RNE unless
        `raw`, meaning already in its storage type). `values` may be a callable,
        evaluated only when numerics are on. `mask` (bool, broadcastable to t.shape):
        store only where True. `add` (a float32 `t`, no mask): t = t + values in fp32,
        in place (PSUM accumulation). `flagged`: every byte of `t` is known to be
        written before (its initialized-flags are all set already). `grouped`: a PSUM
        `t` whose accumulation-group marks the caller sets itself (a matmul's dst)."""
        self._record_write(role, t, grouped)
        if not self.numerics:
            return
        if role == "dst" and self.run.dst_mask is not None:  # a legacy non-rectangular mask
            legacy = np.broadcast_to(self.run.dst_mask, t.shape)
            mask = legacy if mask is None else np.broadcast_to(mask, t.shape) & legacy
        if callable(values):
            values = values()
        flags = self._keeps_flags(t) and not flagged
        if add:
            if mask is not None or skip_oob or t.dtype.np != np.float32:
                raise ValueError("write(add=True) takes a float32 tensor and no mask")
            add_raw(t, np.asarray(values, dtype=np.float32), op=self.opcode, flags=flags)
            return
        v = np.asarray(values)
        if not raw and not (v.dtype == np.float32 and t.dtype is float32):
            v = cast(v, t.dtype, copy=False)  # write_raw copies it into the memory
        if v.shape != t.shape and v.ndim:  # (write_raw stores a 0-d value as it is)
            try:
                v = np.broadcast_to(v, t.shape)
            except ValueError:
                self.fail(f"result of shape {v.shape} does not fit {role} {describe(t)}")
        if mask is None:
            _drop_fill(t)
            if t.dyn is None and v.dtype == t.dtype.np:  # write_raw's usual case, inline
                view = _strided(t, _data(t, writes_all=True))
                if view is not None:
                    view[...] = v
                    if flags:
                        mark_written(t)
                    return
        write_raw(t, v, skip_oob=skip_oob, mask=mask, op=self.opcode, flags=flags)

    def copy(self, src_role: str, src: NkiTensor, dst_role: str, dst: NkiTensor) -> bool:
        """dst = src, bit for bit, for views of one dtype and shape: what `read_view`
        then `write(raw=True)` record and store, as one NumPy copy from memory to memory
        (no read-only view, no checks of the values) where both are static strided
        views, numerics on, not strict, no legacy mask. False where it does nothing
        (then read and write)."""
        if not self.numerics or self.strict or src.dtype is not dst.dtype or \
                src.shape != dst.shape or src.dyn is not None or dst.dyn is not None or \
                self.run.dst_mask is not None or _layout(src) is None or \
                _layout(dst) is None:
            return False
        a = describe_access(src, src_role, "r")
        self.reads.append(a)
        if not src.storage.wfull and not self.run.uninit_warned:
            check_read(self.run, src, a, self.opcode, self.location)
        values = _strided(src, _data(src))
        self._record_write(dst_role, dst)
        _drop_fill(dst)
        _strided(dst, _data(dst, writes_all=True))[...] = values
        if self._keeps_flags(dst):
            mark_written(dst)
        return True

    def write_into(self, role: str, t: NkiTensor, fill) -> np.ndarray | None:
        """Like `write` for fp32 results that `fill(out)` computes into `out`, a (P, F)
        fp32 array it returns: t's own memory where t is fp32 and one strided view (no
        temporary, no copy), else a new array then stored with `write`. Returns the
        values (t's memory: read them before the next write), or None without numerics."""
        out = self._fp32_memory(role, t)
        if out is None:
            if not self.numerics:
                self.write(role, t, None)
                return None
            values = fill(np.empty((t.shape[0], free_size(t)), np.float32))
            self.write(role, t, values.reshape(t.shape))
            return values
        self._record_write(role, t)
        fill(out)
        if self._keeps_flags(t):
            mark_written(t)
        return out

    def _keeps_flags(self, t: NkiTensor) -> bool:
        """Whether writes of `t` set its initialized-flags. They are read by strict-mode
        reads and, in any mode, by the check of accumulate=True onto never-written PSUM
        (isa/matmul.py): a run that is not strict keeps them for PSUM only."""
        return self.strict or t.space == "psum"

    def _fp32_memory(self, role: str, t: NkiTensor) -> np.ndarray | None:
        """t's memory as a writable (P, F) fp32 array, where `write_into` can compute
        into it (numerics on, an fp32 view that is one strided array, no legacy mask)."""
        if not self.numerics or t.dtype is not float32 or t.dyn is not None or (
                role == "dst" and self.run.dst_mask is not None):
            return None
        _drop_fill(t)
        return writable_rows(t)

    def _record_write(self, role: str, t: NkiTensor, grouped: bool = False) -> None:
        """Record a write of `t`; with numerics on, note what it writes. (`grouped`: see
        `write`.)"""
        if t.dyn is not None:
            self._note_indirect(t)
        a = self.access(role, t, "w")
        self.writes.append(a)
        if a.space == "psum" and not grouped:  # ends matmul accumulation there
            self.run.cores[a.core].end_psum_groups(a.p_lo, a.p_hi, a.lo, a.hi)
        if self.numerics and not t.storage.wfull and not self.run.uninit_warned:
            note_write(t.storage, t, a)

    def _note_indirect(self, t: NkiTensor):
        """Record the read of an indirect view's index tensor (called where t.dyn is set:
        the check is made inline, a method call per operand costing more)."""
        if isinstance(t.dyn.index, NkiTensor):  # not a register
            self.reads.append(describe_access(t.dyn.index, "indirect_offset", "r"))

    def warn(self, message: str):
        numerics_warning(message, self.opcode, self.strict)


def _drop_fill(t: NkiTensor) -> None:
    """A write of every byte of t's storage need not have its fill pattern written
    first (memory.py)."""
    st = t.storage
    if st.unfilled is not None and st.whole(t):
        st.unfilled = None


def _readonly(raw: np.ndarray) -> np.ndarray:
    v = raw.view()
    v.setflags(write=False)  # (the `flags` object took longer)
    return v


def _fp32_copy(raw: np.ndarray) -> np.ndarray:
    v = to_fp32(raw)
    return np.array(v) if v is raw else v


def free_size(t: NkiTensor) -> int:
    """Elements per partition of an on-chip view."""
    return math.prod(t.shape[1:])


def flat(values: np.ndarray) -> np.ndarray:
    """(P, F...) -> (P, F) for per-partition arithmetic."""
    return values.reshape(values.shape[0], -1)
