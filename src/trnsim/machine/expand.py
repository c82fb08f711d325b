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
whose first iteration recorded at least HEAVY_BODY instructions (the outer loop of a
blocked kernel, whose every sample runs its inner loops) samples only iterations
1..FEW when iteration 0's record continues their step; its last iteration then checks
the frame as below. A loop
entered again after it expanded (the inner loop of a blocked kernel) samples none
when its iteration 0 repeats its last model's structure (objects of its frame by their
state, not identity, and names the code after the loop bound since taken as they are:
`expand_plan.same_model`) and changes no object of the frame: it
appends iterations 1.. from iteration 0 by the model's step (iteration 0's reads of the
tiles made before the loop that the body carries to the next iteration taken for those
of the tiles one step back), and its last iteration
checks that step (the record's numbers, the frame's ints) and that the frame's objects
keep their state; if not, the entry is sampled afresh. Else (a first-iteration
special case: a matmul group's start) it samples iteration 1, which must repeat the
model's structure and is checked so in the last iteration, or iterations
1..RESAMPLES, which must repeat its structure and step. Either way it copies
with the layout it derived then (expand_copy.Layout) while it fits. Lists the
body appends its tiles to grow by copies over the expanded iterations' allocations, and
a tensor each iteration rebinds to one it made (`acc = nl.add(acc, t)`) is rebound to
the last expanded one's. Iteration 0 is not sampled (first-iteration special cases, a
matmul group's start) but by a loop entered again whose model it repeats (or, by
its record alone, a heavy loop's); the last runs for real, so its own special
cases, an access out of bounds there (affine ranges are extreme at their ends), and
the Python variables it leaves for the code after the loop are exactly those of a
full run. Where the last iteration misses the model, the iterations are appended
again up to the one before it, which then checks the model, and the last runs after
it: a loop whose last iteration differs alone (a tail, causal flash attention's
diagonal chunk) is checked so on its later entries straight away, until the tails of
its earlier entries predict this entry's (each structure they showed seen twice:
machine/expand_tail.py); its last iteration then checks the model by that prediction,
and the one before it is appended too. An entry of a short loop entered again with
none to append after iteration 0 and its samples (FEW + 2 iterations: `_learning`) runs
every iteration but makes the model for the later entries (the last tells whether it
differs alone): causal flash attention's entries of 4 key chunks. An entry whose
iteration 0 the loop's earlier entries predict (machine/expand_first.py: its numbers
an affine combination of theirs by the state at the entry) appends iteration 0 too,
and the iteration that checks its model (the last, or the one before a last that
differs alone) checks the prediction; a miss rolls the entry back to run as above
(block_mnk's loops of 16 M tiles in the tutorial; causal flash attention's key chunks
from its 18th pair of query tiles on, S=8192).

It runs every iteration when:
- numerics are on (values are computed per iteration), `TRNSIM_EXPAND=0`, the loop has
  fewer than `MIN_ITERATIONS` and its first iteration recorded fewer than `HEAVY_BODY`
  instructions (unless an entry of it expanded before, or it is entered again with a
  body of at least `REENTERED_BODY`: `_heavy_enough`; or it has too few iterations
  left to append: `_fewest_iterations`), its iterator is not taken by a `for`
  statement (zip, enumerate, list(), comprehensions), or its body can leave it
  (`break`, `return`, `yield`): `is_for_statement`; or the same loop declined or fell
  back `GIVE_UP` times already in this run (entries too short to sample fully do not
  count: `_short_declined`), or, entered with fewer than `MIN_ITERATIONS`, found its
  first iteration too light `GIVE_UP` times (`_too_light`);
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
- the last iteration's record does not match the prediction, nor the one before it's:
  the expanded iterations are then removed and iterations SAMPLES+1.. run for real
  (the last ones twice; the expansion's own state is rolled back, the Python side
  effects of the first runs of the last ones are not);
- the last iteration leaves the loop through an exception: the whole kernel runs again
  without expansion (`rerun_if_left_early`), since a full run may have left it earlier.

Known limit: a body whose Python branches on the index in a way neither the sampled
iterations nor the last one show (`if i == 37:`, `if i == 3:` in a heavy loop,
or, in a loop entered again, a branch only this entry's iterations 1..SAMPLES take) is
expanded as if it did not branch; so is one only iteration 0 of a predicted entry
takes (`if i == 0 and kb == 5:`). (If
such a branch, in an entry expanded with no sample, changes an object of the frame in
the last iteration too, the last iteration catches it, but its own change stays, as
in any fallback.)
Legacy (`neuronxcc.nki`) affine and sequential loops cannot do this (their index is
symbolic to the real tracer); for a current-API kernel that does, set TRNSIM_EXPAND=0
(or TRNSIM_EXPAND=affine when only its plain `range` loops do). State reached only
through closures, deeper than frame_state's `_DEPTH`, or past the first `_ITEMS` items
of a container is not watched either.
"""
from __future__ import annotations

import contextlib
import dis
import os
import sys
from types import SimpleNamespace

from . import expand_tail, runtime, usercode
from .expand_first import FirstIterations, placements, restore_placements
from .expand_parts import Mark
from .expand_plan import Plan, same_model

SAMPLES = 4  # iterations sampled for an affine model (period 1)
RESAMPLES = 2  # ... for a loop entered again, checked against its last model
# iteration 0, the samples and the last run for real: expansion pays (the samples' state
# is watched at every mark) once it can append at least half of the loop
MIN_ITERATIONS = 2 * (SAMPLES + 2)
# ... or, for a shorter loop (at least SAMPLES + 3 iterations: one to append), once its
# first iteration recorded this many instructions: an outer loop of a blocked kernel
# (8 K blocks around loops of tiles) appends whole inner loops per iteration it saves
HEAVY_BODY = 64
# ... or, for a short loop entered again, this many: its model serves its later entries
# (flash attention's loop over key chunks, 54 instructions an iteration, entered for
# each pair of query tiles)
REENTERED_BODY = 32
_FEWEST = 3  # iterations: 0 runs, 1.. are appended, the last checks them
# a loop that declined or fell back this many times runs every iteration for the rest
# of the run: watching its samples cost as much again each time (nki-library's mlp:
# 145 declines made the timing-only run 20% slower than one without expansion)
GIVE_UP = 2
# (samples, periods tried): iterations whose numbers are affine per period p (a
# double-buffered `buf[i % 2]`, the allocator's rotation) need more samples
_SAMPLING = ((SAMPLES, (1,)), (8, (2, 4)))
# ... for a loop with a heavy body (entered for the first time), whose samples cost
# most of its run (an outer loop of 8 blocks around inner loops: block_mnk runs 6 of 8
# with SAMPLES, 4 with 2; block_free's 16 M blocks 6 and 4): this many, when
# iteration 0's record continues their step (Plan.derive's `first`); the last
# iteration checks the frame's ints, whose step the samples alone give, as that of a
# loop entered again does. (With 1, iteration 0 alone would confirm nothing: a
# double-buffered loop, moe_tkg's experts, is appended from a wrong step and run
# again, +30% on that kernel, for -17% on block_mnk)
FEW = 2
# iterations of an entry that samples a model it cannot use (iteration 0, FEW samples,
# the last: none left to append) for the loop's later entries: `_learning`
_LEARNING = FEW + 2
ENV = "TRNSIM_EXPAND"

_LOOP_FILES: set = set()  # front-end modules whose frames sit between a loop and its body


def register_loop_module(path: str) -> None:
    """Frames of this file are skipped when looking for the loop's own frame."""
    _LOOP_FILES.add(os.path.abspath(path))
    _IN_LOOP_FILES.clear()


_IN_LOOP_FILES: dict = {}  # code file name -> whether it is one of _LOOP_FILES


register_loop_module(__file__)


def enabled(run) -> bool:
    """Whether `run` expands loops, as its options and TRNSIM_EXPAND said when it first
    asked (read once a run: every loop entry asks)."""
    on = run.__dict__.get("expand_enabled")
    if on is None:
        on = run.expand_enabled = bool(run.options.expand and not run.options.numerics
                                       and os.environ.get(ENV, "1").strip() != "0")
    return on


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
    expansion looked at, the blocks of copies it noted and its layouts' positions are
    dropped."""
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
            stats.copied_blocks.clear()
            stats.copied_alloc_blocks.clear()
            layouts = [x[2] for x in stats.known.values()]
            layouts += [x.layout for x in stats.firsts.values()]
            for layout in layouts:
                if layout is not None:
                    layout.drop_positions()
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
    if run is None or not for_statement or total < _FEWEST or not enabled(run):
        yield from _plain(rng, before, 0)
        return
    frame = _loop_frame()
    site = (frame.f_code, frame.f_lasti)
    stats = run.__dict__.get("expansion")
    if stats is not None and (stats.failed_sites.get(site, 0) >= GIVE_UP
                              or _too_light(stats, site, total)) \
            or total < _fewest_iterations(stats, site):
        yield from _plain(rng, before, 0)
        return
    # marks[n]: the state before iteration n (before the first: none, or the record's
    # alone in a heavy loop or a short one)
    marks = [None]
    # a loop entered again with a model: the state before iteration 0 too, whose step to
    # iteration 1 may confirm the model's (Plan.derive)
    start = Mark(run, frame) if stats is not None and site in stats.known else None
    # one whose earlier entries predict its iteration 0 appends that too
    if start is not None and site in stats.firsts:
        stats.watching += 1
        try:
            done = yield from _predicted(run, rng, before, frame, site, stats.firsts[site],
                                         start, stats.known[site], stats)
        finally:
            stats.watching -= 1
        if done:
            return
        stats.firsts[site].fit()
    # a loop entered for the first time runs iteration 0 here: a heavy one samples FEW
    # iterations, and a short one expands only if it is heavy enough (`_heavy_enough`)
    # or has a model (whose entry runs iterations 0 and the last alone)
    if total < MIN_ITERATIONS or start is None:
        stats = run.__dict__.setdefault("expansion", ExpansionStats())
        if start is None and total < SAMPLES + 3 and site not in stats.short_sites:
            yield from _noting_body(run, rng, before, stats, site)
            return
        short = total < MIN_ITERATIONS
        # (the record alone, see FEW; where a short loop noted is entered without a
        # model, the tensors its body may carry to the next iteration: flash attention's
        # online-softmax state)
        marks[0] = Mark(run, frame, tensors_only=True) \
            if start is None and short and site in stats.short_sites else Mark(run, None)
        if before is not None:
            before(0)
        stats.watching += 1  # (iteration 0's snapshot takes its inner loops' copies)
        try:
            yield rng[0]
        finally:
            stats.watching -= 1
        body = len(run.program.instructions) - marks[0].instructions
        if start is None and short and not _heavy_enough(stats, site, body):
            stats.light_sites[site] = stats.light_sites.get(site, 0) + 1
            yield from _plain(rng, before, 1)
            return
        if start is None and not short and body < HEAVY_BODY:
            marks[0] = None  # (sampled as it would be from iteration 1 on)
        marks.append(Mark(run, frame))
    stats = run.__dict__.setdefault("expansion", ExpansionStats())
    stats.watching += 1
    try:
        n = yield from _expanding(run, rng, before, frame, site, marks, stats, start)
    finally:
        stats.watching -= 1
    yield from _plain(rng, before, n)


def _fewest_iterations(stats, site) -> int:
    """The fewest iterations an entry of the loop at `site` may sample: FEW + 2 (a short
    loop's samples and its last, none to append: `_learning`; `_heavy_enough` tells
    whether it is sampled); 3 for one with a model, whose entry samples none (iteration
    0 runs, 1.. are appended, the last checks them), or 4 when its last iteration
    differs alone (the one before it checks them): the key-chunk loop of causal flash
    attention, whose trip count grows with the query tile. More after a short entry
    declined (`_short_declined`)."""
    if stats is None:
        return _LEARNING
    fewest = stats.short_sites.get(site, 0)
    if site in stats.known:
        return max(fewest, _FEWEST + (site in stats.last_differs))
    return max(fewest, _LEARNING)


def _too_light(stats, site, total: int) -> bool:
    """Whether a short entry (fewer than MIN_ITERATIONS) of the loop at `site` runs
    every iteration at once: its iteration 0 was too light to sample (`_heavy_enough`)
    on GIVE_UP entries without a model already, and it has no model nor a body noted
    since. (The mark and look at iteration 0 that would decide so again cost ~3 us an
    entry: flash attention's loops over 8 key blocks of one instruction, 372 entries.
    A later entry whose iteration 0 is heavier runs every iteration too.)"""
    return total < MIN_ITERATIONS and stats.light_sites.get(site, 0) >= GIVE_UP \
        and site not in stats.known and site not in stats.short_sites


def _short_declined(stats, site, total: int, too_short: bool) -> None:
    """An entry of `total` iterations, fewer than SAMPLES + 3, declined: the loop's
    later entries need one more iteration where more samples than it had might have
    given a model (`too_short`), else SAMPLES + 3 (`GIVE_UP` counts these declines of
    entries that can sample fully only)."""
    stats.short_sites[site] = max(stats.short_sites.get(site, 0),
                                  total + 1 if too_short else SAMPLES + 3)


def _noting_body(run, rng: range, before, stats, site):
    """Every iteration of an entry too short to sample a loop not noted yet; iteration
    0's record tells whether it is noted (`stats.short_sites`: its body is at least
    REENTERED_BODY)."""
    at = len(run.program.instructions)
    if before is not None:
        before(0)
    yield rng[0]
    if len(run.program.instructions) - at >= REENTERED_BODY:
        stats.short_sites[site] = _LEARNING
    yield from _plain(rng, before, 1)


def _heavy_enough(stats, site, body: int) -> bool:
    """Whether a short loop (fewer than MIN_ITERATIONS) whose iteration 0 recorded
    `body` instructions is sampled: a heavy body, or, in a loop entered again, one of at
    least REENTERED_BODY, whose model its later entries reuse (`stats.short_sites`:
    where such bodies were seen)."""
    noted = site in stats.short_sites
    if not noted and body >= REENTERED_BODY:
        stats.short_sites[site] = _LEARNING
    return body >= HEAVY_BODY or noted and body >= REENTERED_BODY


def _expanding(run, rng: range, before, frame, site, marks: list, stats, start):
    """`iterate`'s samples, expansion and last iteration; returns the first iteration
    left to run for real (len(rng) when none is). `start`: the state before iteration
    0 of a loop entered again with a model (else None)."""
    total = len(rng)
    core = runtime.current_core().id
    known = stats.known.get(site)
    if known is None and marks[0] is not None and total == _LEARNING:
        return (yield from _learning(run, rng, before, frame, site, marks, stats, core))
    sampling = _SAMPLING
    if known is not None:  # no sample when iteration 0 repeats the model, else one
        sampling = ((RESAMPLES, (1,)), *_SAMPLING)
        if start is not None:
            sampling = ((1, (1,)), *sampling) if site in stats.zero_misses \
                else ((0, (1,)), (1, (1,)), *sampling)
    elif marks[0] is not None:  # a heavy loop: FEW samples where iteration 0 agrees
        sampling = ((FEW, (1,)), *_SAMPLING)
        if total < SAMPLES + 3:  # (a short loop entered again: FEW + 1 without iteration
            # 0 where its record is off the step other than by the tiles made before the
            # loop that a body carrying tiles to the next iteration reads there, which
            # stand for the tiles one step back: `expand_plan._carried_from_entry`)
            sampling = ((FEW, (1,)), (FEW + 1, (1,)))
    while True:
        plan = None
        too_short = False  # (more samples could give a plan than the loop has)
        for samples, periods in sampling:
            if total < samples + 3:
                too_short = True
                break
            yield from _marked(run, rng, before, frame, marks, samples + 1)
            if _sizes_differ(marks[1:]):  # (Plan.derive's answer, without its snapshots)
                plan, more = None, False
                break
            plan, more = Plan.derive(
                run, marks[1:], core, periods, known,
                (start, _loop_target(frame)) if samples == 0 else None,
                (marks[0], _loop_target(frame)) if samples == FEW and known is None
                and marks[0] is not None else None)
            if samples >= RESAMPLES:
                known = None  # (checked on RESAMPLES; more samples are modelled afresh)
            if not more:
                break
        n = len(marks) - 1  # the first iteration not run yet
        if plan is not None and not plan.indexes_made_before(n, total - 1):
            plan = None
        last_model = stats.known.get(site)
        if plan is not None and plan.layout is None and last_model is not None \
                and same_model(plan.key, last_model[0]):  # another step: the layout may fit
            plan.layout = last_model[2]
        if plan is None:
            stats.declined += 1
            if total < SAMPLES + 3:
                _short_declined(stats, site, total, too_short)
            else:
                stats.failed_sites[site] = stats.failed_sites.get(site, 0) + 1
            return n
        last = total - 1
        # the iteration that checks the model: the last, or the one before it in a loop
        # whose last iteration differs alone (a tail; flash attention's causal diagonal)
        # but where the tails of its earlier entries predict this one's (expand_tail)
        check = last - 1 if site in stats.last_differs else last
        tails = stats.tails.get(site) if check < last else None
        predicted = tails is not None and tails.predicts(plan, last)
        if predicted:
            check = last
        matched = yield from _checked(run, rng, before, frame, plan, n, check, stats,
                                      tails if predicted else None, marks[1])
        if not matched and check == last:
            if predicted:
                tails.misses += 1
            marks[-1].restore(run, frame)
            check = last - 1
            matched = yield from _checked(run, rng, before, frame, plan, n, check, stats)
        if matched:
            if check < last:  # (the last runs after the one that checked the model)
                yield from _tail(run, rng, before, frame, site, plan, check, stats,
                                 not predicted, marks[1])
            if plan.period == 1:
                stats.known[site] = (plan.key, plan.drift, plan.layout)
            if plan.last_sampled == 0:  # (iteration 0 alone: `start`)
                stats.firsts.setdefault(site, FirstIterations()).note(run, plan, start)
            stats.loops += 1
            stats.iterations += check - n
            stats.instructions += (check - n) * plan.per_iteration
            return total
        stats.last_differs.discard(site)
        marks[-1].restore(run, frame)
        if not plan.checks_frame:
            stats.fallbacks += 1
            stats.failed_sites[site] = stats.failed_sites.get(site, 0) + 1
            stats.known.pop(site, None)
            return n
        # the model of iteration 0 alone missed (another step than the last entry's):
        # this entry is sampled afresh from iteration 1 on
        stats.remodelled += 1
        if plan.last_sampled == 0 and plan.carried:
            stats.zero_misses.add(site)
        known, sampling = None, _SAMPLING


def _sizes_differ(marks: list) -> bool:
    """Whether the iterations between consecutive `marks` recorded different numbers of
    instructions, allocations or fences: their structures differ (a structure lists one
    key of its own length per instruction, allocation and fence), so Plan.derive would
    decline them (None, no more samples), which this tells without their snapshots:
    causal flash attention's loop over query tiles, whose key-chunk loops grow."""
    sizes = {(b.instructions - a.instructions, b.allocations - a.allocations,
              b.fences - a.fences) for a, b in zip(marks, marks[1:])}
    return len(sizes) > 1


def _tail(run, rng: range, before, frame, site, plan, check: int, stats, noting: bool,
          entry):
    """The last iteration, run for real after `check`, the one before it, which checked
    the model: the loop's last iteration differs alone (`stats.last_differs`). Its tail
    is noted (`expand_tail.Tails`: with `entry`, the state after the entry's iteration
    0) where `noting` (a tail that missed the prediction is left out: the next is
    predicted from those that made it)."""
    last = check + 1
    tails = stats.tails.setdefault(site, expand_tail.Tails())
    noting = noting and tails.misses < expand_tail.GIVE_UP
    if noting:
        tails.note_ran(plan, check)
        mark = Mark(run, frame, lists_only=True)
    yield from _run_last(rng, before, last, stats)
    if noting:
        tails.note_state(run, plan, mark, Mark(run, frame), entry, last)
    stats.last_differs.add(site)


def _predicted(run, rng: range, before, frame, site, firsts, start, known, stats):
    """Append iterations 0.. of an entry whose iteration 0 its loop's earlier entries
    predict (machine/expand_first.py) up to the one that checks the model as
    `_expanding` chooses it (the last, or in a loop whose last iteration differs alone
    the one before it, the last run after it, unless the earlier entries' tails predict
    this one's), which runs for real; returns whether it matched (and made no change
    beside the record in a tensor made before the loop, which the appended iteration 0
    would not have made). Where not, the record and the memories' placements are
    rolled back to the entry, which then runs as one not predicted."""
    if firsts.template is None:
        return False
    saved = placements(run)
    plan = firsts.predict(run, start, known)
    last = len(rng) - 1
    if plan is None or not plan.indexes_made_before(0, last):
        restore_placements(saved)
        return False
    untracked = len(run.untracked_changes)
    entry = _counts_after_first(start, plan)
    check = last - 1 if site in stats.last_differs else last
    tails = stats.tails.get(site) if check < last else None
    by_tail = tails is not None and tails.predicts(plan, last)
    if by_tail:
        check = last
    matched = yield from _checked(run, rng, before, frame, plan, 0, check, stats,
                                  tails if by_tail else None, entry)
    if not matched and check == last:  # (as `_expanding` does: checked by the one before)
        if by_tail:
            tails.misses += 1
        start.restore(run, frame)
        check = last - 1
        matched = yield from _checked(run, rng, before, frame, plan, 0, check, stats)
    if matched and all(a >= start.allocations for a in run.untracked_changes[untracked:]):
        if check < last:
            yield from _tail(run, rng, before, frame, site, plan, check, stats, not by_tail,
                             entry)
        firsts.layout = plan.layout
        stats.loops += 1
        stats.predicted += 1
        stats.iterations += check
        stats.instructions += check * plan.per_iteration
        return True
    firsts.misses += 1
    start.restore(run, frame)
    restore_placements(saved)
    return False


def _counts_after_first(start, plan) -> SimpleNamespace:
    """The record's counts after the appended iteration 0 of an entry that starts at
    `start` (what a tail's basis reads of the state after iteration 0: expand_tail)."""
    i0, i1, a0, a1, f0, f1 = plan.template
    return SimpleNamespace(instructions=start.instructions + i1 - i0,
                           allocations=start.allocations + a1 - a0,
                           fences=start.fences + f1 - f0)


def _marked(run, rng: range, before, frame, marks: list, upto: int):
    """Run for real the iterations not yet marked (marks[0] is the entry's, marks[k]
    that of iteration k - 1's end), each marked as it ends, until `upto` are."""
    while len(marks) <= upto:
        n = len(marks) - 1
        if before is not None:
            before(n)
        yield rng[n]
        marks.append(Mark(run, frame, marks[-1]))


def _learning(run, rng: range, before, frame, site, marks: list, stats, core):
    """Every iteration of an entry with none to append after iteration 0 and the FEW
    samples (`_LEARNING`, a short loop entered again whose trip count grows: causal
    flash attention's key chunks, 4 of them for query tiles 24-31 of 64): their model
    serves the loop's later entries (`stats.known`) as one made where iterations were
    appended would. The last iteration, run for real, tells whether it differs alone
    (a tail, noted as `_expanding` notes one: `stats.last_differs`, `stats.tails`).
    Returns the first iteration left to run (the last, when the samples decline)."""
    yield from _marked(run, rng, before, frame, marks, FEW + 1)
    last = len(rng) - 1
    plan, _ = Plan.derive(run, marks[1:], core, (1,), None, None,
                          (marks[0], _loop_target(frame)))
    if plan is None:
        stats.declined += 1
        _short_declined(stats, site, len(rng), False)
        return last
    mark = Mark(run, frame, lists_only=True)
    if before is not None:
        before(last)
    yield rng[last]
    stats.known[site] = (plan.key, plan.drift, plan.layout)
    if plan.matches(run, mark, last, frame):
        stats.last_differs.discard(site)
        return len(rng)
    stats.last_differs.add(site)
    tails = stats.tails.setdefault(site, expand_tail.Tails())
    if tails.misses < expand_tail.GIVE_UP:
        tails.note_ran(plan, last - 1)
        tails.note_state(run, plan, mark, Mark(run, frame), marks[1], last)
    return len(rng)


def _checked(run, rng: range, before, frame, plan, first: int, check: int, stats,
             tails=None, entry=None):
    """Append iterations first..check - 1 from `plan`, run iteration `check` for real;
    returns whether it recorded the prediction (Plan.matches), or, by `tails` (the last
    iteration's: `entry`, the state after iteration 0), the tail they predict."""
    plan.expand(run, first, check)
    plan.prepare_last(run, frame, check)
    mark = Mark(run, frame, lists_only=True)
    yield from _run_last(rng, before, check, stats)
    if tails is not None:
        return expand_tail.matches(run, plan, tails, mark, entry, check, frame)
    return plan.matches(run, mark, check, frame)


def _run_last(rng: range, before, k: int, stats):
    """Iteration k, after iterations that expansion appended."""
    if before is not None:
        before(k)
    try:
        yield rng[k]
    except GeneratorExit:  # the body raised out of the loop: see rerun_if_left_early
        stats.left_early += 1
        _left_early[0] += 1
        raise


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
        ins, pos, nxt = _after(code, at, "GET_ITER")
        hit = False
        if nxt is not None and ins[nxt].opname == "FOR_ITER":
            loop = ins[nxt]
            start = ins[pos + 1].offset  # the FOR_ITER, or its EXTENDED_ARG
            body = [x for x in ins if loop.offset < x.offset < loop.argval]
            hit = not any(_leaves(x, start, loop.argval) for x in body)
        _FOR_STATEMENTS[(code, at)] = hit
    return hit


def _after(code, at: int, opname: str) -> tuple:
    """(code's instructions, the position of the one at offset `at`, the position of
    the next one past EXTENDED_ARG, NOP and CACHE), the last two None where the one at
    `at` is not `opname` or nothing follows it."""
    ins = list(dis.get_instructions(code))
    pos = {x.offset: i for i, x in enumerate(ins)}.get(at)
    if pos is None or ins[pos].opname != opname:
        return ins, None, None
    nxt = pos + 1
    while nxt < len(ins) and ins[nxt].opname in ("EXTENDED_ARG", "NOP", "CACHE"):
        nxt += 1
    return ins, pos, (nxt if nxt < len(ins) else None)


_TARGETS: dict = {}  # (code, offset) -> _loop_target's answer


def _loop_target(frame):
    """The local a `for` statement whose FOR_ITER `frame` is at binds (the loop index,
    whose value before iteration 0 is that of an earlier entry: `Plan.derive`), or None
    when it binds something else (names unpacked, an attribute)."""
    code, at = frame.f_code, frame.f_lasti
    key = (code, at)
    if key not in _TARGETS:
        ins, _, nxt = _after(code, at, "FOR_ITER")
        target = None
        if nxt is not None and ins[nxt].opname in ("STORE_FAST", "STORE_DEREF"):
            target = ins[nxt].argval  # (a local, or one a closure in the body reads)
        _TARGETS[key] = target
    return _TARGETS[key]


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
        # entries of a loop modelled from iteration 0 alone whose last iteration missed
        # the model: sampled afresh (their iterations 1.. and the last one run again)
        self.remodelled = 0
        # loop (code, offset of its for statement) -> times it declined or fell back
        self.failed_sites: dict = {}
        # loops whose last iteration differs alone: their model is checked by the one
        # before it (`_expanding`)
        self.last_differs: set = set()
        # those loops -> the last iterations of their entries (expand_tail.Tails), which
        # predict a later entry's: its last iteration then checks its model
        self.tails: dict = {}
        # loops entered again whose model from iteration 0 alone missed, with a tile the
        # body carries to the next iteration (which iteration 0 reads from the code
        # before the loop, taken for the tile one step back): their later entries sample
        # iteration 1
        self.zero_misses: set = set()
        # short loops entered with a body of at least REENTERED_BODY instructions ->
        # the fewest iterations of an entry that may expand (`_fewest_iterations`)
        self.short_sites: dict = {}
        # short loops -> entries whose iteration 0 was too light to sample (`_too_light`)
        self.light_sites: dict = {}
        # loop -> (structure, drift, Copier layout) of its last expansion (period 1): a
        # loop entered again (the inner loop of a blocked kernel) is checked against it
        # on fewer samples (RESAMPLES) and reuses its layout
        self.known: dict = {}
        # loops entered again -> the entries whose iteration 0 their model had alone,
        # which predict a later entry's (expand_first.FirstIterations)
        self.firsts: dict = {}
        self.predicted = 0  # entries whose iteration 0 was appended so
        # instruction index -> (instruction, structure, numbers) of the instructions
        # snapshots looked at one by one (not the copies), while the kernel runs
        self.parts: dict = {}
        self.alloc_parts: dict = {}  # allocation id -> (allocation, structure)
        # position of the first of a block of copies (made together) -> (position and
        # object of its last, the template's structures and numbers' sizes, rows,
        # block, start, stop)
        self.copied_blocks: dict = {}
        # id of the first allocation of a block of copies -> (id and object of its
        # last, the template's structures, rows, block, start, stop)
        self.copied_alloc_blocks: dict = {}
        # loops between their first sampled iteration (a first entry: its iteration 0)
        # and their end: while one is, the copies a loop inside it appends are noted as
        # blocks (its snapshots read them)
        self.watching = 0

    def __repr__(self):
        return (f"<expansion: {self.loops} loops, {self.iterations} iterations, "
                f"{self.instructions} instructions expanded; {self.declined} declined, "
                f"{self.fallbacks} fallbacks, {self.remodelled} remodelled>")


def _loop_frame():
    f = sys._getframe(2)
    while f is not None and _in_loop_files(f.f_code.co_filename):
        f = f.f_back
    return f


def _in_loop_files(name: str) -> bool:
    hit = _IN_LOOP_FILES.get(name)
    if hit is None:
        hit = os.path.abspath(name) in _LOOP_FILES
        if os.path.isabs(name):  # (a relative one's answer follows the working directory)
            _IN_LOOP_FILES[name] = hit
    return hit


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
