"""A program's instructions and operands as arrays, for the summary and insights
(profile/summary.py, profile/insights.py): read once per profile, the figures are
NumPy sums over them instead of a Python loop per instruction.

Where the program keeps its access columns (timing/access_columns.py), the operands
are read as the instructions hold them (machine/record.py `held_reads`), and their
places off the columns: an allocated program's pending physical accesses and a loop
copy's pending operands differ from the held ones only in places, so reading them
makes none. Elsewhere they are read as they are (made where pending)."""
from __future__ import annotations

from itertools import chain, repeat
from functools import cached_property
from operator import attrgetter, ne

import numpy as np

from ..machine.record import held_reads, held_writes, identities, run_starts

SPACES = {"hbm": 0, "sbuf": 1, "psum": 2}
HBM, SBUF, PSUM, OTHER = 0, 1, 2, 3
_ENGINE, _OPCODE, _ATTRS = attrgetter("engine"), attrgetter("opcode"), attrgetter("attrs")
_SPACE, _BYTES = attrgetter("space"), attrgetter("bytes")
_CONTIGUOUS, _ROLE = attrgetter("contiguous_bytes"), attrgetter("role")
_READS, _WRITES = attrgetter("reads"), attrgetter("writes")


class Side:
    """An instruction side's operands (all their reads, or all their writes), flat in
    program order: `accesses` (a list), `at` (each one's instruction position),
    `space` (SPACES' numbers, OTHER for any other name) and `bytes`: `columns` where
    given (_columns), else read off the accesses."""

    def __init__(self, tuples: list, columns=None):
        n = len(tuples)
        self.accesses = list(chain.from_iterable(tuples))
        m = len(self.accesses)
        self._more = None  # (lo, hi, contiguous bytes, id of the role) by operand
        if columns is not None and len(columns[0]) == m:
            self.at, self.space, self.bytes, self._more = columns
            return
        counts = np.fromiter(map(len, tuples), np.int64, n)
        self.at = np.repeat(np.arange(n), counts)
        self.space = np.fromiter(map(SPACES.get, map(_SPACE, self.accesses), repeat(OTHER)),
                                 np.int64, m)
        self.bytes = np.fromiter(map(_BYTES, self.accesses), np.int64, m)

    def hbm_bounds(self, at) -> tuple:
        """(lo, hi) of the HBM operands at positions `at` (an int array): those the
        columns hold are the accesses' (allocation moves only on-chip ones)."""
        if self._more is not None:
            return self._more[0][at], self._more[1][at]
        accesses = list(map(self.accesses.__getitem__, at.tolist()))
        return tuple(np.fromiter(map(attrgetter(f), accesses), np.int64, len(at))
                     for f in ("lo", "hi"))

    def runs(self, at) -> tuple:
        """(contiguous bytes, whether a data operand: not a runtime offset) of the
        operands at positions `at` (an int array)."""
        if self._more is not None:
            role = self._more[3][at]  # (the roles told apart by object first)
            ids, first = np.unique(role, return_index=True)
            offset = [i for i, k in zip(ids.tolist(), at[first].tolist())
                      if self.accesses[k].role == "indirect_offset"]
            return self._more[2][at], ~np.isin(role, offset)
        accesses = list(map(self.accesses.__getitem__, at.tolist()))
        return (np.fromiter(map(_CONTIGUOUS, accesses), np.int64, len(at)),
                np.fromiter(map(ne, map(_ROLE, accesses), repeat("indirect_offset")),
                            bool, len(at)))

    def own(self, instrs: list, side: str, flat: int) -> tuple:
        """(instruction, operand) of the operand at position `flat`, the operand as the
        instruction gives it to readers (a held one may be a template's: module doc)."""
        i = int(self.at[flat])
        ins = instrs[i]
        return ins, getattr(ins, side)[flat - int(np.searchsorted(self.at, i))]

    def per_instruction(self, mask, n: int) -> np.ndarray:
        """The bytes of the operands where `mask`, summed per instruction (n of them)."""
        return np.bincount(self.at[mask], self.bytes[mask], n).astype(np.int64)


class Operands:
    """The instructions of `program` (`instrs`) with their engines, opcodes and attrs
    (lists by position), the attrs told apart by object (`attrs_code`, `attrs_first`:
    loop copies share their template's), and their `reads` and `writes` (Side)."""

    def __init__(self, program):
        instrs = self.instrs = program.instructions
        n = self.n = len(instrs)
        self.engine_names, self.engine_code = _named(list(map(_ENGINE, instrs)))
        self.engine_counts = dict(zip(self.engine_names, np.bincount(
            self.engine_code, minlength=len(self.engine_names)).tolist()))
        self.is_dma = self.engine_is("dma")
        opcodes, opcode_code = _named(list(map(_OPCODE, instrs)))
        self.is_barrier = opcode_code == (opcodes.index("core_barrier")
                                          if "core_barrier" in opcodes else -1)
        attrs = self.attrs = list(map(_ATTRS, instrs))
        _, self.attrs_first, self.attrs_code = np.unique(
            identities(attrs, n), return_index=True, return_inverse=True)
        reads, writes = _columns(program)
        kept = reads is not None  # (the places off the columns: the held operands serve)
        self.reads = Side(list(map(held_reads if kept else _READS, instrs)), reads)
        self.writes = Side(list(map(held_writes if kept else _WRITES, instrs)), writes)

    @cached_property
    def bytes_moved(self) -> np.ndarray:
        """Instruction.bytes_moved of each instruction."""
        return self.writes.per_instruction(slice(None), self.n)

    def dma_runs(self) -> np.ndarray:
        """The shortest contiguous run (bytes, over 0) of each DMA's operands but its
        runtime offsets (0 for any other instruction, or none)."""
        runs = np.full(self.n, np.iinfo(np.int64).max, np.int64)
        for side in (self.reads, self.writes):
            at = np.flatnonzero(self.is_dma[side.at])
            run, data = side.runs(at)
            ok = (run > 0) & data
            of, run = side.at[at[ok]], run[ok]  # (in instruction order)
            if len(of):
                first = run_starts(of)
                runs[of[first]] = np.minimum(runs[of[first]],
                                             np.minimum.reduceat(run, first))
        runs[runs == np.iinfo(np.int64).max] = 0
        return runs

    def engine_is(self, engine: str) -> np.ndarray:
        names = self.engine_names
        return self.engine_code == (names.index(engine) if engine in names else -1)

    def per_attrs(self, fn) -> list:
        """fn(attrs) of each distinct attrs object, by attrs_code."""
        attrs = self.attrs
        return [fn(attrs[i]) for i in self.attrs_first.tolist()]


def _columns(program) -> tuple:
    """((at, space, bytes, (lo, hi, contiguous bytes, id of the role)) of the reads,
    and of the writes) off the columns (timing/access_columns.py) `program` keeps,
    else (None, None)."""
    if getattr(program, "_access_columns", None) is None:
        return None, None
    from ..timing.access_columns import (BYTES, CONTIGUOUS, HI, LO, ROLE, SPACE,
                                         kept_columns)  # (loaded: they were made)
    cols = kept_columns(program)
    if cols is None:
        return None, None
    ptr, wptr = cols.ptr, cols.wptr
    at = np.repeat(np.arange(len(wptr)), np.diff(ptr))
    write = np.arange(int(ptr[-1])) >= wptr[at]
    spaces = np.array([SPACES.get(name, OTHER) for name in cols.spaces] + [OTHER], np.int64)
    acc = cols.acc
    space = spaces[cols.column(SPACE)]
    nbytes, cbytes, role = (cols.column(k) for k in (BYTES, CONTIGUOUS, ROLE))
    return tuple((at[side], space[side], nbytes[side],
                  (acc[side, LO], acc[side, HI], cbytes[side], role[side]))
                 for side in (~write, write))


def _named(objects: list) -> tuple:
    """(the distinct values of `objects`, each one's number among them): told apart by
    object first (the record's instructions share their engine and opcode strings)."""
    first, inverse = np.unique(identities(objects), return_index=True,
                               return_inverse=True)[1:]
    names: dict = {}
    codes = [names.setdefault(objects[i], len(names)) for i in first.tolist()]
    return list(names), np.array(codes, np.int64)[inverse.reshape(-1)]
