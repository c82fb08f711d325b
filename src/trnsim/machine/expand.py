"""Trace a loop body a few times, then expand the rest of the loop into the record.

Timing-only runs (numerics off) spend nearly all their time executing the kernel's
Python once per instruction, yet a loop's iterations record the same instructions
with operands that move by a fixed step: the NKI tracer itself traces an
`affine_range` body once with a symbolic index. For the iterable of a `for` statement
(`nl.affine_range` / `sequential_range` / `static_range`, the legacy affine and
sequential loops, and plain `range` in kernel code: `while_kernel_runs`), `iterate` runs
iterations 0..SAMPLES for real. When iterations 1..SAMPLES recorded the same
instruction sequence (opcode, engine, queue, kernel line, operand shapes and dtypes,
other attributes) and every number of an iteration -- instruction and allocation ids,
byte ranges relative to their allocation, partitions, element offsets, fences, the HBM
cursor, the loop frame's ints and its lists' lengths -- is affine in the iteration
(period 1, or 2 or 4 after more samples: double buffers), it appends the middle
iterations from that model with NumPy and runs the last iteration for real. A loop
entered again after it expanded (the inner loop of a blocked kernel) samples only
iterations 1..RESAMPLES when they repeat its last model's structure and step. Lists the
body appends its tiles to grow by copies over the expanded iterations' allocations, and
a tensor each iteration rebinds to one it made (`acc = nl.add(acc, t)`) is rebound to
the last expanded one's. Iteration 0 is not sampled (first-iteration special cases, a
matmul group's start); the last runs for real, so its own special cases, an access out
of bounds there (affine ranges are extreme at their ends), and the Python variables it
leaves for the code after the loop are exactly those of a full run.

It runs every iteration when:
- numerics are on (values are computed per iteration), `TRNSIM_EXPAND=0`, the loop has
  fewer than `MIN_ITERATIONS` and its first iteration recorded fewer than `HEAVY_BODY`
  instructions (or it has fewer than SAMPLES + 3: nothing left to append), its iterator
  is not taken by a `for` statement (zip, enumerate, list(), comprehensions), or its
  body can leave it (`break`, `return`, `yield`): `is_for_statement`; or the same loop
  declined or fell back `GIVE_UP` times already in this run;
- the sampled iterations differ in structure, a number is not affine, an iteration
  records on another core (a cross-core handover), creates shared HBM tensors, leaves
  a deferred legacy result pending, or changes state beside the record in a tensor
  made before it (`Run.untracked_changes`: lazily filled or created legacy blocks,
  PSUM boxes first written);
- the loop's frame changes in a way expansion cannot reproduce (machine/frame_state.py,
  a few levels deep: items of containers, attributes of objects, bytes of arrays,
  positions of iterators and generators, the module-level objects and classes the
  loop's code names): list items replaced or a list growing by anything but the
  iteration's (not lazily filled) tensors, anything else but ints changing, except
  objects rebound each iteration;
- the last iteration's record does not match the prediction: the expanded iterations
  are then removed and iterations SAMPLES+1.. run for real (the last one twice; the
  expansion's own state is rolled back, the Python side effects of the first run of
  the last iteration are not);
- the last iteration leaves the loop through an exception: the whole kernel runs again
  without expansion (`rerun_if_left_early`), since a full run may have left it earlier.

Known limit: a body whose Python branches on the index in a way neither the sampled
iterations nor the last one show (`if i == 37:`, or, in a loop entered again, a branch
only this entry's iterations 3..SAMPLES take) is expanded as if it did not branch.
Legacy (`neuronxcc.nki`) affine and sequential loops cannot do this (their index is
symbolic to the real tracer); for a current-API kernel that does, set TRNSIM_EXPAND=0
(or TRNSIM_EXPAND=affine when only its plain `range` loops do). State reached only
through closures, deeper than frame_state's `_DEPTH`, or past the first `_ITEMS` items
of a container is not watched either.
"""
from __future__ import annotations

import collections
import contextlib
import dis
import itertools
import os
import sys

import numpy as np

from . import runtime, usercode
from .frame_state import (PLAIN, carried_tensors, frame_values, growing_lists, hashable,
                          rebound_locals, retarget, set_locals)
from .gc_pause import gc_paused
from .access import with_place
from .errors import SourceLocation
from .record import Allocation, Instruction

repeat = itertools.repeat

SAMPLES = 4  # iterations sampled for an affine model (period 1)
RESAMPLES = 2  # ... for a loop entered again, checked against its last model
# iteration 0, the samples and the last run for real: expansion pays (the samples' state
# is watched at every mark) once it can append at least half of the loop
MIN_ITERATIONS = 2 * (SAMPLES + 2)
# ... or, for a shorter loop (at least SAMPLES + 3 iterations: one to append), once its
# first iteration recorded this many instructions: an outer loop of a blocked kernel
# (8 K blocks around loops of tiles) appends whole inner loops per iteration it saves
HEAVY_BODY = 64
# a loop that declined or fell back this many times runs every iteration for the rest
# of the run: watching its samples cost as much again each time (nki-library's mlp:
# 145 declines made the timing-only run 20% slower than one without expansion)
GIVE_UP = 2
# (samples, periods tried): iterations whose numbers are affine per period p (a
# double-buffered `buf[i % 2]`, the allocator's rotation) need more samples
_SAMPLING = ((SAMPLES, (1,)), (8, (2, 4)))
ENV = "TRNSIM_EXPAND"

# iterations whose numbers are made Python ints at once (their ints, a few dozen each,
# and the copies are built block by block: see _Plan.expand)
_ROWS = 1024
_VADDR = Allocation.__slots__.index("vaddr")
assert Allocation.__slots__[0] == "id" and Allocation.__slots__[-1] == "declared_at"
_LOOP_FILES: set = set()  # front-end modules whose frames sit between a loop and its body


def register_loop_module(path: str) -> None:
    """Frames of this file are skipped when looking for the loop's own frame."""
    _LOOP_FILES.add(os.path.abspath(path))


register_loop_module(__file__)


def enabled(run) -> bool:
    return (run.options.expand and not run.options.numerics
            and os.environ.get(ENV, "1").strip() != "0")


_left_early = [0]  # expanded loops left through an exception in their last iteration


def rerun_if_left_early(simulate):
    """`simulate(expand: bool) -> result`, once with loop expansion and again without it
    if a loop it expanded was left through an exception in its last iteration (raised
    there or by a function it called, caught in the kernel or not): a full run may have
    left it in an earlier iteration, so the iterations appended may never have run and
    the error may belong to another iteration. The run without expansion gives the
    kernel's own result or error."""
    before = _left_early[0]
    try:
        result = simulate(True)
    except Exception:
        if _left_early[0] == before:
            raise
        result = None  # (run again outside this handler: the error is the kernel's own)
    return simulate(False) if _left_early[0] != before else result


@contextlib.contextmanager
def while_kernel_runs(run, fn):
    """While kernel `fn` runs timing-only, its plain `range` loops and those of the user
    functions it calls (machine/usercode.py) may expand too: their modules' globals
    name LoopRange as `range` (unless a module defines its own). `TRNSIM_EXPAND=affine`
    keeps expansion to the nl.*_range loops. When it returns, the instructions' parts
    expansion looked at are dropped (`ExpansionStats.parts`: a tenth of a record)."""
    patched = []
    if fn is not None and enabled(run) and os.environ.get(ENV, "").strip() != "affine":
        for f in usercode.user_functions(fn):
            g = f.__globals__
            if "range" not in g:
                g["range"] = LoopRange
                patched.append(g)
    try:
        yield
    finally:
        stats = run.__dict__.get("expansion")
        if stats is not None:
            stats.parts.clear()
            stats.alloc_parts.clear()
            stats.copied_rows.clear()
        for g in patched:
            if g.get("range") is LoopRange:
                del g["range"]


def iterate(rng: range, before=None, for_statement: bool = False):
    """Yield the indices of `rng` (a range) for a loop body, expanding the record where
    it can (see the module docstring): only for the iterable of a `for` statement
    (`for_statement`, see `is_for_statement`). `before(n)` runs before the body of
    iteration n when that iteration runs for real (legacy loop frames, sequential
    fences)."""
    run = runtime.current_run()
    total = len(rng)
    if run is None or not for_statement or total < SAMPLES + 3 or not enabled(run):
        yield from _plain(rng, before, 0)
        return
    frame = _loop_frame()
    site = (frame.f_code, frame.f_lasti)
    stats = run.__dict__.get("expansion")
    if stats is not None and stats.failed_sites.get(site, 0) >= GIVE_UP:
        yield from _plain(rng, before, 0)
        return
    marks = [None]  # marks[n]: the state before iteration n (none needed before the first)
    if total < MIN_ITERATIONS:  # a short loop: expanded only if its body is heavy
        first = len(run.program.instructions)
        if before is not None:
            before(0)
        yield rng[0]
        if len(run.program.instructions) - first < HEAVY_BODY:
            yield from _plain(rng, before, 1)
            return
        marks.append(_Mark(run, frame))
    stats = run.__dict__.setdefault("expansion", ExpansionStats())
    stats.watching += 1
    try:
        n = yield from _expanding(run, rng, before, frame, site, marks, stats)
    finally:
        stats.watching -= 1
    yield from _plain(rng, before, n)


def _expanding(run, rng: range, before, frame, site, marks: list, stats):
    """`iterate`'s samples, expansion and last iteration; returns the first iteration
    left to run for real (len(rng) when none is)."""
    total = len(rng)
    core = runtime.current_core().id
    plan = None
    known = stats.known.get(site)
    sampling = ((RESAMPLES, (1,)), *_SAMPLING) if known is not None else _SAMPLING
    for samples, periods in sampling:
        if total < samples + 3:
            break
        while len(marks) <= samples + 1:
            n = len(marks) - 1
            if before is not None:
                before(n)
            yield rng[n]
            marks.append(_Mark(run, frame, marks[-1]))
        plan, more = _Plan.derive(run, marks[1:], core, periods, known)
        known = None  # (checked once; more samples are modelled afresh)
        if not more:
            break
    n = len(marks) - 1  # the first iteration not run yet
    if plan is not None and not plan.indexes_made_before(n, total - 1):
        plan = None
    if plan is None:
        stats.declined += 1
        stats.failed_sites[site] = stats.failed_sites.get(site, 0) + 1
    else:
        last = total - 1
        plan.expand(run, n, last)
        plan.prepare_last(run, frame, last)
        before_last = _Mark(run, frame)
        if before is not None:
            before(last)
        try:
            yield rng[last]
        except GeneratorExit:  # the body raised out of the loop: see rerun_if_left_early
            stats.left_early += 1
            _left_early[0] += 1
            raise
        if plan.matches(run, before_last, last):
            if plan.period == 1:
                stats.known[site] = (plan.key, plan.drift)
            stats.loops += 1
            stats.iterations += last - n
            stats.instructions += (last - n) * plan.per_iteration
            return total
        stats.fallbacks += 1
        stats.failed_sites[site] = stats.failed_sites.get(site, 0) + 1
        stats.known.pop(site, None)
        marks[-1].restore(run, frame)
    return n


def _plain(rng: range, before, start: int):
    """Iterations start.. of `rng`, each run for real."""
    for k in range(start, len(rng)):
        if before is not None:
            before(k)
        yield rng[k]


_FOR_STATEMENTS: dict = {}  # (code, offset) -> is_for_statement's answer
_LEAVES = ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE")


def is_for_statement(frame) -> bool:
    """Whether `frame` is taking an iterator for a `for` statement (at its GET_ITER,
    FOR_ITER next: not an iterator taken by zip/enumerate/list, which would advance it
    out of step with the body, nor a comprehension's, whose result is out of sight) whose
    body runs to its end every time: no `break`, `return` or `yield` in it, since
    leaving the loop in an iteration expansion stood in for cannot be undone."""
    code, at = frame.f_code, frame.f_lasti
    hit = _FOR_STATEMENTS.get((code, at))
    if hit is None:
        ins = list(dis.get_instructions(code))
        pos = {x.offset: i for i, x in enumerate(ins)}.get(at)
        hit = False
        if pos is not None and ins[pos].opname == "GET_ITER":
            nxt = pos + 1
            while nxt < len(ins) and ins[nxt].opname in ("EXTENDED_ARG", "NOP", "CACHE"):
                nxt += 1
            loop = ins[nxt] if nxt < len(ins) else None
            if loop is not None and loop.opname == "FOR_ITER":
                start = ins[pos + 1].offset  # the FOR_ITER, or its EXTENDED_ARG
                body = [x for x in ins if loop.offset < x.offset < loop.argval]
                hit = not any(_leaves(x, start, loop.argval) for x in body)
        _FOR_STATEMENTS[(code, at)] = hit
    return hit


def _leaves(x, start: int, end: int) -> bool:
    """Whether instruction `x` of the body of a loop from offset `start` (its FOR_ITER)
    to `end` (its exit) leaves the loop or the function."""
    if x.opname in _LEAVES:
        return True
    target = x.argval if x.opcode in dis.hasjrel or x.opcode in dis.hasjabs else None
    # a jump to the loop's exit or past it (break; only FOR_ITER itself ends the loop);
    # back to the FOR_ITER or within the body is the loop's own
    return isinstance(target, int) and not start <= target < end


class ExpansionStats:
    """What expansion did in one run (`run.expansion`)."""

    def __init__(self):
        self.loops = 0  # loops expanded
        self.iterations = 0  # iterations appended without running the body
        self.instructions = 0  # instructions appended that way
        self.declined = 0  # loops whose samples could not be expanded
        self.fallbacks = 0  # loops whose last iteration did not match the prediction
        self.left_early = 0  # expanded loops left through an exception (run again)
        # loop (code, offset of its for statement) -> times it declined or fell back
        self.failed_sites: dict = {}
        # loop -> (structure, drift) of its last expansion (period 1): a loop entered
        # again (the inner loop of a blocked kernel) is checked against it on fewer
        # samples (RESAMPLES)
        self.known: dict = {}
        # instruction index -> (instruction, structure, numbers), while the kernel runs
        self.parts: dict = {}
        self.alloc_parts: dict = {}  # allocation id -> (allocation, structure)
        # position of the first of a row of copies (one iteration's, made together) ->
        # (position and object of its last, their structures, block, row, start, stop)
        self.copied_rows: dict = {}
        # loops between their first sampled iteration and their end: while one is, the
        # copies a loop inside it appends get their parts (its snapshots read them)
        self.watching = 0

    def __repr__(self):
        return (f"<expansion: {self.loops} loops, {self.iterations} iterations, "
                f"{self.instructions} instructions expanded; {self.declined} declined, "
                f"{self.fallbacks} fallbacks>")


def _loop_frame():
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) in _LOOP_FILES:
        f = f.f_back
    return f


# -- the state at an iteration boundary ------------------------------------------------
class _Mark:
    __slots__ = ("instructions", "allocations", "fences", "hbm", "shared", "pending",
                 "untracked", "locals", "lists", "tensors")

    def __init__(self, run, frame, before: "_Mark | None" = None):
        """The state now; `before`: the mark before it (see frame_values)."""
        p = run.program
        self.instructions = len(p.instructions)
        self.allocations = len(p.allocations)
        self.fences = len(p.fences)
        self.hbm = run.hbm._next
        self.shared = len(run._shared)
        self.pending = getattr(run, "legacy_pending", None) is not None
        self.untracked = len(run.untracked_changes)
        self.locals, self.lists, self.tensors = frame_values(
            frame, before.locals if before is not None else None)

    def restore(self, run, frame):
        """Roll the record back to this mark (and the frame's numbers)."""
        p = run.program
        del p.instructions[self.instructions:]
        for k in [k for k in p.allocations if k >= self.allocations]:
            del p.allocations[k]
        del p.fences[self.fences:]
        run.hbm._next = self.hbm
        for lst, n, _ in self.lists.values():
            del lst[n:]
        set_locals(frame, {**{k: v for k, v in self.locals.items() if type(v) is int},
                           **self.tensors})


_INT = (None, 1)


def _attr_parts(attrs: dict, nums: list):
    """Structure key of an attrs dict; its int values (and nonempty lists or tuples of
    ints) go to nums, keyed (name, (None, 1)) or (name, (their type, length))."""
    key = []
    for k, v in attrs.items():
        t = type(v)
        if t is int:
            key.append((k, _INT))
            nums.append(v)
        elif t in PLAIN:
            key.append((k, "=", v))
        elif (t is list or t is tuple) and v and all(type(x) is int for x in v):
            key.append((k, (t, len(v))))
            nums.extend(v)
        elif t is np.ndarray:
            key.append((k, "nd", v.shape, str(v.dtype), v.tobytes()))
        else:
            key.append((k, "=", hashable(v)))
    return tuple(key)


def _instruction_parts(ins, allocs, cache: dict):
    """(structure, numbers) of one instruction, cached by index (nested loops look at
    the same instructions once per level; an expanded copy's are its template's
    structure and its row's numbers: `_Plan._append`)."""
    got = cache.get(ins.index)
    if got is not None and got[0] is ins:
        return got[1], got[2]
    acc = []
    nums = []
    for a in ins.reads + ins.writes:
        base = allocs[a.alloc].vaddr if a.alloc >= 0 else 0
        acc.append((a.role, a.mode, a.space, a.core, a.tensor, a.dtype, a.shape,
                    a.pattern, a.elems_per_partition, a.bytes, a.contiguous_bytes,
                    a.indirect, a.alloc >= 0))
        nums += (a.offset, a.p_lo, a.p_hi, a.lo - base, a.hi - base, a.alloc)
    nums.append(ins.index)
    key = (ins.core, ins.engine, ins.opcode, ins.queue, _site(ins.location), len(ins.reads),
           tuple(acc), _attr_parts(ins.attrs, nums))
    cache[ins.index] = (ins, key, nums)
    return key, nums


def _allocation_key(al, cache: dict):
    """Structure key of an allocation, cached by id (a copy's is its template's)."""
    got = cache.get(al.id)
    if got is not None and got[0] is al:
        return got[1]
    key = ("alloc", al.space, al.core, al.name, al.shape_desc, al.dtype, _site(al.site),
           al.row_bytes, al.block_bytes, al.partition, al.partitions, al.explicit)
    cache[al.id] = (al, key)
    return key


_SITES: dict = {}  # (file, line, function) -> the first SourceLocation seen there


def _site(loc):
    """One SourceLocation object per place in keys, so that keys compare them by
    identity (a dataclass's __eq__ runs Python code)."""
    if type(loc) is not SourceLocation:
        return loc
    return _SITES.setdefault((loc.file, loc.line, loc.function), loc)


def _snapshot(run, start: int, stop: int, a_start: int, a_stop: int, f_start: int,
              f_stop: int):
    """(structure, numbers: an int64 array) of the record between two marks (an Access's
    byte range relative to its automatic allocation)."""
    p = run.program
    allocs = p.allocations
    cache = run.expansion.parts
    key = []
    # the numbers, in order: lists, and (block, row, start, stop) where they are those
    # of copies made together (`_Copier.append`), gathered from the block at the end
    pieces, plain, rows = [], [], None
    instructions, copied = p.instructions, run.expansion.copied_rows
    at = start
    while at < stop:
        hit = copied.get(at)
        if hit is not None and hit[0] < stop and instructions[hit[0]] is hit[1]:
            key += hit[2]  # a whole row of copies, still in the record
            n = hit[3:]
            at = hit[0] + 1
        else:
            k, n = _instruction_parts(instructions[at], allocs, cache)
            key.append(k)
            at += 1
        if type(n) is list:
            if rows is not None:
                pieces.append(tuple(rows))
                rows = None
            plain += n
        elif rows is not None and rows[0] is n[0] and rows[1] == n[1] and rows[3] == n[2]:
            rows[3] = n[3]
        else:
            if rows is not None:
                pieces.append(tuple(rows))
            elif plain:
                pieces.append(plain)
                plain = []
            rows = list(n)
    nums = plain  # (the allocations' and fences' numbers follow the others')
    if rows is not None:
        pieces.append(tuple(rows))
        nums = []
    alloc_cache = run.expansion.alloc_parts
    for aid in range(a_start, a_stop):
        al = allocs[aid]
        key.append(_allocation_key(al, alloc_cache))
        nums += (al.id, al.declared_at, al.vaddr if al.explicit else 0)
    for core, idx in p.fences[f_start:f_stop]:
        key.append(("fence", core))
        nums.append(idx)
    pieces.append(nums)
    if len(pieces) == 1:
        return tuple(key), np.array(nums, np.int64)
    return tuple(key), np.concatenate([x[0][x[1], x[2]:x[3]] if type(x) is tuple
                                       else np.array(x, np.int64) for x in pieces])


def _size(nums) -> int:
    """How many numbers an instruction's parts have (a copy's: (block, row, start, stop)
    in the block of rows it was made from)."""
    return len(nums) if type(nums) is list else nums[3] - nums[2]


def _operand_allocations(run, start: int, stop: int) -> list:
    """Where the allocation ids of the operands of instructions start..stop lie in
    their numbers (as `_snapshot` lists them: six numbers per operand, the id last, then
    the instruction's index and its attributes' numbers)."""
    p = run.program
    cols, pos = [], 0
    for ins in p.instructions[start:stop]:
        n = len(ins.reads) + len(ins.writes)
        cols += range(pos + 5, pos + 6 * n, 6)
        pos += _size(_instruction_parts(ins, p.allocations, run.expansion.parts)[1])
    return cols


def _iteration(run, m0: "_Mark", m1: "_Mark", int_names: list, list_names: list,
               rebound: set):
    """(structure, numbers) of the iteration between two marks, with the HBM cursor, the
    frame's ints and its lists' lengths at its start (the state of its other locals but
    those it rebinds to new objects); (None, None) when its frame changed otherwise."""
    key, nums = _snapshot(run, m0.instructions, m1.instructions, m0.allocations,
                          m1.allocations, m0.fences, m1.fences)
    loc = m0.locals
    if set(loc) != set(m1.locals):
        return None, None
    others = tuple(sorted((k, v) for k, v in loc.items()
                          if type(v) is not int and k not in rebound))
    if any(type(loc[k]) is not int for k in int_names):
        return None, None
    return ((key, others, tuple(list_names)), np.concatenate((nums, np.array(
        [m0.hbm] + [loc[k] for k in int_names] + [m0.lists[k][1] for k in list_names],
        np.int64))))


class _Plan:
    """The model of a loop's iterations from its sampled ones: every number of an
    iteration (its record's, the HBM allocation cursor, the frame's ints and its lists'
    lengths at its start) is that of the sampled iteration `period` iterations back plus
    `drift`. A list that grows gets, for each expanded iteration, copies of the tensors
    the iteration's template appended, over that iteration's allocations."""

    def __init__(self, rows, period, drift, key, template, local_names, growing, carried):
        self.rows = rows  # (samples, numbers) of the sampled iterations 1..samples
        self.period = period
        self.drift = drift
        self.key = key
        self.template = template  # (start, stop, a_start, a_stop, f_start, f_stop)
        self.per_iteration = template[1] - template[0]
        self.local_names = local_names
        self.growing = growing  # [(list, [tensor the template iteration appended])]
        self.list_count = len(key[2])
        self.carried = carried  # [(local, tensor of the template iteration)]
        self.last_ids = None  # template allocation id -> that of the last expanded one
        self.indexing = np.zeros(0, dtype=np.int64)  # see indexes_made_before
        self.operand_ids = np.zeros(0, dtype=np.int64)  # operands' allocation columns
        self.made_before = 0  # allocations made before the sampled iterations

    @classmethod
    def derive(cls, run, marks, core, periods, known=None):
        """(plan or None, whether more samples could give a plan) from the iterations
        between `marks` (the states before iterations 1, 2, ..., samples + 1). `known`:
        (key, drift) of this loop's last expansion (period 1), which the samples must
        repeat."""
        older = marks[0].allocations  # tensors made before the sampled iterations
        changed = run.untracked_changes[marks[0].untracked:marks[-1].untracked]
        if any(m.pending for m in marks) or len({m.shared for m in marks}) > 1 \
                or any(a < older for a in changed):
            return None, False
        p = run.program
        for ins in p.instructions[marks[0].instructions:marks[-1].instructions]:
            if ins.core != core:
                return None, False
        names = sorted(k for k, v in marks[0].locals.items() if type(v) is int)
        rebound = rebound_locals(marks)
        first = marks[0].lists  # lists rebound by each iteration are like its tensors
        list_names = sorted(k for k in first if all(
            k in m.lists and m.lists[k][0] is first[k][0] for m in marks))
        keys, rows = [], []
        for m0, m1 in zip(marks, marks[1:]):
            if m1.instructions == m0.instructions:
                return None, False  # an empty body: nothing to gain
            k, n = _iteration(run, m0, m1, names, list_names, rebound)
            if k is None:
                return None, False
            keys.append(k)
            rows.append(n)
        if any(k != keys[0] for k in keys[1:]) or len({len(r) for r in rows}) > 1:
            return None, False
        a = np.array(rows, dtype=np.int64)
        if known is not None:  # the model this loop had when it last expanded
            key, drift = known
            d = a[1:] - a[:-1]
            if keys[0] != key or a.shape[1] != len(drift) or not (d == drift).all():
                return None, True
            return cls._made(run, marks, a, 1, drift, key, names, list_names), False
        for period in periods:
            if len(a) - period < 2:
                continue
            d = a[period:] - a[:-period]
            if (d == d[0]).all():
                return cls._made(run, marks, a, period, d[0], keys[0], names,
                                 list_names), False
        return None, True

    @classmethod
    def _made(cls, run, marks, rows, period, drift, key, names, list_names):
        """The plan of a loop whose sampled iterations (`rows`) are affine, or None."""
        growing = growing_lists(marks, list_names)
        if growing is None:
            return None
        m0, m1 = marks[-2], marks[-1]
        plan = cls(rows, period, drift, key,
                   (m0.instructions, m1.instructions, m0.allocations, m1.allocations,
                    m0.fences, m1.fences), names, growing, carried_tensors(marks))
        # an operand's tensor is the same one every time, one an iteration a fixed
        # number back made (its id advances by what each makes), or else one of the
        # tensors made before the samples that the loop indexes (tiles[k]):
        # `indexes_made_before` checks those ids name such tensors
        made = marks[1].allocations - marks[0].allocations  # each iteration's
        ops = np.asarray(_operand_allocations(run, m0.instructions, m1.instructions),
                         dtype=np.int64)
        step = drift[ops]  # (np.isin may build a table spanning the values)
        plan.indexing = ops[(step != 0) & (step != period * made)]
        plan.operand_ids = ops
        plan.made_before = marks[0].allocations
        return plan

    def indexes_made_before(self, first: int, last: int) -> bool:
        """Whether, in every iteration first..last, the operands that index tensors made
        before the samples name one of them. (Ids that merely look affine over the
        samples -- a list of 8 tiles made each iteration, tile i % 8 used -- name other
        tensors, or none, later; an indexing the samples cannot tell from i % 8 is left
        to the last iteration's check.) Each phase of the period is affine, so the
        first and last period of iterations bound it."""
        if not len(self.indexing):
            return True
        ids = self._ends(first, last)[:, self.indexing]
        return bool(((ids >= 0) & (ids < self.made_before)).all())

    def _ends(self, first: int, last: int) -> np.ndarray:
        """The numbers of the first and last period of iterations first..last, which
        bound those of all of them (each phase of the period is affine)."""
        p = self.period
        ends = set(range(first, min(first + p, last + 1)))
        ends.update(range(max(first, last + 1 - p), last + 1))
        return self.row(np.array(sorted(ends), dtype=np.int64))

    def row(self, iterations: np.ndarray) -> np.ndarray:
        """The numbers of each iteration in `iterations` (loop positions)."""
        samples, p = len(self.rows), self.period
        s = samples - (samples - iterations) % p  # a sampled iteration in phase
        return self.rows[s - 1] + self.drift * ((iterations - s) // p)[:, None]

    # -- expansion ---------------------------------------------------------------------
    def expand(self, run, first: int, stop: int) -> None:
        """Append iterations first .. stop - 1."""
        if stop <= first:
            return
        stats = run.expansion
        copier = _Copier(run, self)
        # the copies' parts are kept for the snapshots of a loop around this one (an
        # operand's structure says whether it has an allocation: its id keeps its sign)
        ids = self.operand_ids
        keep = stats.watching > 1 and bool(
            ((self._ends(first, stop - 1)[:, ids] >= 0) == (self.rows[-1, ids] >= 0)).all())
        with gc_paused():  # (only new, acyclic objects: a collection would find nothing)
            # a block of iterations at a time: the Python ints of a row that the record
            # does not keep are freed, and their memory reused, before the next block
            for lo in range(first, stop, _ROWS):
                values = self.row(np.arange(lo, min(lo + _ROWS, stop), dtype=np.int64))
                made = copier.append(run.program, values, stats if keep else None)
                self._grow(copier.template_ids, made)

    def _grow(self, template_ids: list, made: list) -> None:
        """Note the last iteration's allocations; extend the growing lists by each
        iteration's copies of what the template appended (`made`: the copies' ids)."""
        k = len(template_ids)
        if not k:
            return
        self.last_ids = dict(zip(template_ids, made[-k:]))
        if self.growing:
            for at in range(0, len(made), k):
                now = dict(zip(template_ids, made[at:at + k]))
                storages = {}
                for lst, appended in self.growing:
                    lst.extend(retarget(x, now, storages) for x in appended)

    @property
    def record_numbers(self) -> int:
        return self.rows.shape[1] - 1 - len(self.local_names) - self.list_count

    def prepare_last(self, run, frame, last: int) -> None:
        """The HBM cursor and the frame's ints as iteration `last` starts with them."""
        row = self.row(np.array([last]))[0].tolist()
        k = self.record_numbers
        run.hbm._next = row[k]
        values = dict(zip(self.local_names, row[k + 1:k + 1 + len(self.local_names)]))
        if self.last_ids is not None:  # tensors the iteration before the last one made
            storages = {}
            values.update((name, retarget(x, self.last_ids, storages))
                          for name, x in self.carried)
        set_locals(frame, values)

    def matches(self, run, mark: "_Mark", last: int) -> bool:
        """Whether iteration `last`, run for real after `mark`, recorded the prediction."""
        names = self.key[2]
        expected = self.row(np.array([last]))[0]
        lengths = [mark.lists[k][1] if k in mark.lists else -1 for k in names]
        if lengths != expected[len(expected) - len(names):].tolist():
            return False
        end = _Mark(run, None)
        if end.pending or end.shared != mark.shared:
            return False
        key, nums = _snapshot(run, mark.instructions, end.instructions, mark.allocations,
                              end.allocations, mark.fences, end.fences)
        return key == self.key[0] and np.array_equal(nums, expected[:self.record_numbers])


class _Copier:
    """Makes the copies of a plan's template iteration -- its allocations, fences and
    instructions -- from blocks of rows of numbers (in the order `_snapshot` lists
    them), as flat lists in record order (the template's items for one iteration, then
    for the next): a copy's field is its template's unless the row gives it. An operand
    a copy has at the template's place is the template's (immutable) Access, and so is
    its tuple of reads or writes when no operand there can move."""

    def __init__(self, run, plan: "_Plan"):
        p, stats = run.program, run.expansion
        start, end, a_start, a_stop, f_start, f_stop = plan.template
        tmpl = self.templates = p.instructions[start:end]
        parts = [_instruction_parts(ins, p.allocations, stats.parts) for ins in tmpl]
        self.keys = [key for key, _ in parts]
        size = np.array([_size(nums) for _, nums in parts], dtype=np.int64)
        at = np.cumsum(size) - size  # where each instruction's numbers start
        self.starts, self.stops = at.tolist(), (at + size).tolist()
        n_read = np.array([len(t.reads) for t in tmpl], dtype=np.int64)
        n_ops = n_read + [len(t.writes) for t in tmpl]
        self.index_cols = at + 6 * n_ops
        # a number moves unless it has no drift and every phase of the period sampled
        # the same
        moves = ~((plan.drift == 0) & (plan.rows == plan.rows[-1]).all(axis=0))
        self._operands_moving(plan, moves, at, n_read, n_ops)
        # (instruction, its attributes' numbers, the template's, their key) where they move
        moved = np.concatenate(([0], np.cumsum(moves)))
        lo, hi = (self.index_cols + 1).tolist(), (at + size).tolist()
        self.moving_attrs = [(b, slice(lo[b], hi[b]), plan.rows[-1][lo[b]:hi[b]].tolist(),
                              self.keys[b][-1])
                             for b in np.flatnonzero(moved[hi] > moved[lo]).tolist()]
        self.statics = [list(f) for f in zip(*[
            (t.core, t.engine, t.opcode, t.reads, t.writes, t.location, t.attrs, t.queue)
            for t in tmpl])] if tmpl else [[]] * 8
        self._allocations_and_fences(p, stats, plan, range(a_start, a_stop),
                                     p.fences[f_start:f_stop])

    def _operands_moving(self, plan, moves, at, n_read, n_ops) -> None:
        """Every template operand, instruction by instruction (`accesses`), and those
        that may move: their numbers' columns, positions, templates and template
        numbers; the instructions whose reads or writes they are in, and where."""
        tmpl = self.templates
        self.accesses = list(itertools.chain.from_iterable(
            t.reads + t.writes for t in tmpl))
        owner = np.repeat(np.arange(len(tmpl)), n_ops)
        base = np.cumsum(n_ops) - n_ops
        nth = np.arange(len(owner)) - base[owner]
        cols = (at[owner] + 6 * nth)[:, None] + np.arange(6)
        moving = np.flatnonzero(moves[cols].any(axis=1))
        self.moving = cols[moving]
        self.moving_at = moving
        self.moving_tmpl = [self.accesses[i] for i in moving.tolist()]
        self.moving_same = plan.rows[-1][self.moving]
        read = nth[moving] < n_read[owner[moving]]
        b = _distinct(owner[moving][read])
        self.read_spans = (b, base[b], base[b] + n_read[b])
        b = _distinct(owner[moving][~read])
        self.write_spans = (b, base[b] + n_read[b], base[b] + n_ops[b])

    def _allocations_and_fences(self, p, stats, plan, ids: range, fences: list) -> None:
        """The template's allocations and fences, and where their numbers lie: (id,
        declared_at, vaddr) for each allocation, then each fence's, after the
        instructions'."""
        tmpl = [p.allocations[i] for i in ids]
        self.template_ids = [al.id for al in tmpl]
        self.alloc_keys = [_allocation_key(al, stats.alloc_parts) for al in tmpl]
        self.alloc_fields = [list(f) for f in zip(*(al.field_values() for al in tmpl))]
        first = plan.record_numbers - 3 * len(tmpl) - len(fences)
        self.alloc_cols = first + 3 * np.arange(len(tmpl), dtype=np.int64)
        self.explicit = np.array([al.explicit for al in tmpl], dtype=bool)
        self.vaddrs = np.array([al.vaddr for al in tmpl], dtype=np.int64)
        self.fence_cores = [core for core, _ in fences]
        self.fence_cols = first + 3 * len(tmpl) + np.arange(len(fences))

    def append(self, p, values: np.ndarray, stats) -> list:
        """Append the copies for the rows of `values` (keeping their parts in `stats`
        when given); returns the ids of the allocations made."""
        n = len(values)
        ids = self._allocations(p, values, stats)
        if len(self.fence_cores):
            p.fences.extend(zip(self.fence_cores * n,
                                values[:, self.fence_cols].ravel().tolist()))
        core, engine, opcode, reads, writes, location, attrs, queue = self.statics
        reads, writes, attrs = self._operands(values, p.allocations, reads, writes, attrs)
        index = values[:, self.index_cols].ravel().tolist()
        made = list(map(Instruction, index, core * n, engine * n, opcode * n, reads, writes,
                        location * n, attrs, queue * n))
        p.instructions.extend(made)
        if stats is not None and made:  # (numbers: where they lie in `values`)
            width = len(self.templates)
            rows = np.repeat(np.arange(n), width).tolist()
            stats.parts.update(zip(index, zip(made, self.keys * n, zip(
                repeat(values), rows, self.starts * n, self.stops * n))))
            at = range(len(p.instructions) - len(made), len(p.instructions), width)
            stats.copied_rows.update(zip(at, zip(
                [a + width - 1 for a in at], made[width - 1::width], repeat(self.keys),
                repeat(values), range(n), repeat(self.starts[0]), repeat(self.stops[-1]))))
        return ids

    def _allocations(self, p, values: np.ndarray, stats) -> list:
        if not self.template_ids:
            return []
        n = len(values)
        cols = values[:, self.alloc_cols]
        ids = cols.ravel().tolist()
        args = [f * n for f in self.alloc_fields]
        args[0] = ids
        args[-1] = values[:, self.alloc_cols + 1].ravel().tolist()
        if self.explicit.any():
            args[_VADDR] = np.where(self.explicit, values[:, self.alloc_cols + 2],
                                    self.vaddrs).ravel().tolist()
        made = list(map(Allocation, *args))
        p.allocations.update(zip(ids, made))
        if stats is not None:
            stats.alloc_parts.update(zip(ids, zip(made, self.alloc_keys * n)))
        return ids

    def _operands(self, values: np.ndarray, allocs: dict, reads: list, writes: list,
                  attrs: list):
        """The copies' reads, writes and attrs (flat lists)."""
        n, width = len(values), len(self.templates)
        reads, writes, attrs = reads * n, writes * n, attrs * n
        rows = np.arange(n)[:, None]
        if len(self.moving):
            ops = self.accesses * n
            # the operands whose numbers are not the template's, at their places
            nums = values[:, self.moving]
            moved = np.flatnonzero((nums != self.moving_same).any(axis=2))
            placed = _places(nums.reshape(-1, 6)[moved], allocs)
            tmpl = map(self.moving_tmpl.__getitem__, (moved % len(self.moving)).tolist())
            first = rows * len(self.accesses)
            _put(ops, (first + self.moving_at).ravel()[moved],
                 map(with_place, tmpl, *placed))
            for out, (b, lo, hi) in ((reads, self.read_spans), (writes, self.write_spans)):
                spans = map(slice, (first + lo).ravel().tolist(),
                            (first + hi).ravel().tolist())
                _put(out, rows * width + b, map(tuple, map(ops.__getitem__, spans)))
        for b, span, same, key in self.moving_attrs:
            template = attrs[b]
            for r, nums in enumerate(values[:, span].tolist()):
                if nums != same:
                    attrs[r * width + b] = _attrs_with(template, key, nums)
        return reads, writes, attrs


def _distinct(x: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (np.unique hashes them first)."""
    return x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x


def _put(out: list, where: np.ndarray, items) -> None:
    """out[i] = item for each position of `where` (flattened) and item of `items`."""
    collections.deque(map(out.__setitem__, where.ravel().tolist(), items), maxlen=0)


def _attrs_with(attrs: dict, key: tuple, numbers: list) -> dict:
    """A copy of `attrs` with its numbers (keyed as `_attr_parts` keys them) replaced."""
    out = dict(attrs)
    at = 0
    for k, *entry in key:
        if len(entry) == 1:  # (name, (None or sequence type, length))
            seq, n = entry[0]
            out[k] = numbers[at] if seq is None else seq(numbers[at:at + n])
            at += n
    return out


def _places(nums: np.ndarray, allocs: dict) -> list:
    """Columns (offset, p_lo, p_hi, lo, hi, allocation) of operands from their numbers
    (rows of offset, partitions, byte range relative to the allocation, its id): the
    byte range made absolute, and one int object per allocation for its id."""
    aid = nums[:, 5]
    owned = np.flatnonzero(aid >= 0)
    out = nums.T.tolist()
    if len(owned):
        ids, at = _lookup(aid[owned])
        made = [allocs[i] for i in ids]
        base = np.array([al.vaddr for al in made], dtype=np.int64)[at]
        for col in (3, 4):
            _put(out[col], owned, (nums[owned, col] + base).tolist())
        _put(out[5], owned, map([al.id for al in made].__getitem__, at.tolist()))
    return out


def _lookup(x: np.ndarray):
    """(values, where each item of `x` is among them): the range x spans when it is
    dense (allocation ids are: every id below the record's count is an allocation), its
    distinct values otherwise (np.unique sorts)."""
    lo = int(x.min())
    span = int(x.max()) - lo + 1
    if span <= 4 * len(x) + 64:
        return range(lo, lo + span), x - lo
    ids, at = np.unique(x, return_inverse=True)
    return ids.tolist(), at


class _RangeType(type):
    def __instancecheck__(cls, x):  # `isinstance(x, range)` where range is LoopRange
        return isinstance(x, range) or type.__instancecheck__(cls, x)


class LoopRange(metaclass=_RangeType):
    """A range whose iteration may expand (`iterate`): what the current API's
    `nl.affine_range` / `sequential_range` / `static_range` return, and `range` in
    kernel code while it runs timing-only. It behaves as the range it wraps (len,
    indexing, `in`, reversed, equality, hash, index, count; real ranges are instances)."""

    def __init__(self, start, stop=None, step=1):
        self.range = range(start) if stop is None else range(start, stop, step)

    def __iter__(self):
        return iterate(self.range, for_statement=is_for_statement(sys._getframe(1)))

    def __len__(self):
        return len(self.range)

    def __getitem__(self, i):
        return self.range[i]

    def __contains__(self, x):
        return x in self.range

    def __reversed__(self):
        return reversed(self.range)

    def __eq__(self, other):
        return self.range == (other.range if type(other) is LoopRange else other)

    def __hash__(self):
        return hash(self.range)

    def index(self, x):
        return self.range.index(x)

    def count(self, x):
        return self.range.count(x)

    start = property(lambda self: self.range.start)
    stop = property(lambda self: self.range.stop)
    step = property(lambda self: self.range.step)

    def __repr__(self):
        return repr(self.range)
