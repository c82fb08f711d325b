"""Hoisting: a loop-invariant load is issued once.

A kernel that loads a weight inside a loop whose index the load does not use reloads the
same bytes every iteration; the compiler's loop-invariant code motion issues that load
once, before the loop, and every iteration reads the one copy. In the record the loop is
unrolled, so the pass sees it as a DMA load that repeats the previous execution of its
own source line exactly:

- a plain HBM -> SBUF `dma_copy` (no cast, no indirection) from the same HBM bytes in the
  same pattern, with no HBM write to those bytes since the previous execution;
- into the same bytes of the same on-chip tensor, not written since (the tensor declared
  outside the loop) -- the repeat is dropped; or into a fresh tensor of the same layout
  that nothing else writes, while the previous one was also written only by its load
  (the tensor declared inside the loop) -- the repeat is dropped and the fresh tensor's
  reads go to the previous copy, which the allocation pass then keeps live across the
  loop (spilling it if SBUF runs short, as the compiler would).

Only the immediately enclosing loop is hoisted out of: a load that changes with an inner
loop's index is not repeated back to back, so it stays (the matmul tutorial's tiled step
reloads its tiles on hardware: 51.80 ms against the hoisted step's 42.96 ms, hardware.md
§3.1). Loop-invariant computations are not hoisted (not modelled)."""
from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import replace
from operator import attrgetter, itemgetter

import numpy as np

from ..machine.access import Access, copy_with, with_bytes
from ..machine.allocations import allocation_columns
from ..machine.record import Program, compared_operands, identities
from .hbm_writes import HbmWrites

_PLAIN = ("dma_copy",)
_ATTRS = attrgetter("attrs")
# blocks of at least this many instructions are looked at as blocks (`_visited`): in
# smaller ones the template's analysis costs more than visiting the copies (which makes
# the operands of those not made yet: machine/expand_copy.py _PendingOperands)
_MANY = 32
_FEW_COPIES = 4  # ... and templates copied at least this many times (over their blocks)
# blocks within a template of at least this many instructions are read off their own
# templates
_INNER = 32


def hoist_invariant_loads(program: Program) -> Program:
    """The program with each repeated loop-invariant load removed (see the module)."""
    instrs = program.instructions
    allocs = program.allocations
    writes_of: dict | None = None  # alloc id -> indices of the instructions writing it

    def writes_to(aid) -> list:
        """The instructions writing on-chip tensor `aid` (all listed at the first
        question: most programs repeat no load, and never ask)."""
        nonlocal writes_of
        if writes_of is None:
            writes_of = {}
            for ins in instrs:
                for a in ins.writes:
                    if a.space != "hbm" and a.alloc >= 0:
                        w = writes_of.setdefault(a.alloc, [])
                        if not w or w[-1] != ins.index:
                            w.append(ins.index)
        return writes_of.get(aid, [])

    hbm_writes = HbmWrites(instrs)
    dropped: set = set()

    clear: dict = {}  # alloc id -> (since, k): its writes after `since` up to k are dropped

    def written_between(aid, since, until) -> bool:
        """A write to the tensor between the two loads (other than a dropped repeat).
        The repeats of a load are all checked against the load that stays: each check
        resumes where the last one for that load stopped."""
        w = writes_to(aid)
        c = clear.get(aid)
        k = c[1] if c is not None and c[0] == since else bisect_right(w, since)
        while k < len(w) and w[k] < until:
            if w[k] not in dropped:
                return True
            k += 1
        clear[aid] = (since, k)
        return False

    # (core, source line) -> (index, instruction, its source's (lo, hi)) of its previous
    # execution
    last: dict = {}
    alias: dict = {}  # dropped tensor's alloc id -> the alloc id of the copy it reads
    kept_for: dict = {}  # dropped load's index -> the index of the load that stays
    vetted: dict = {}  # id of a copy _visited found a plain load -> its source's lo, hi
    for ins in _visited(program.copied, instrs, allocs, vetted):
        # a plain load into an automatic tensor: an HBM -> SBUF dma_copy, no cast, no
        # indirection, one source and one destination (as _load_ends and _all_reach
        # check a block's copies)
        if ins.opcode not in _PLAIN or ins.engine != "dma":
            continue
        bounds = vetted.get(id(ins))
        if bounds is None:
            ends = _ends(*compared_operands(ins))
            if ends is None:
                continue
            src, dst = ends
            if src.space != "hbm" or dst.space != "sbuf" or src.indirect or dst.indirect \
                    or dst.alloc < 0 or ins.location is None:
                continue
            attrs = ins.attrs
            if attrs.get("cast") or attrs.get("spill") or allocs[dst.alloc].explicit:
                continue
            bounds = src.lo, src.hi
        loc = ins.location
        key = (ins.core, loc.file, loc.line)
        prev = last.get(key)
        last[key] = (ins.index, ins, bounds)
        # (the first and last byte first: most loads of a line read other bytes; the
        # operands are compared only then, a vetted copy's not made before)
        if prev is None or bounds != prev[2]:
            continue
        src, dst = _ends(*compared_operands(ins))
        p_index, (p_src, p_dst) = prev[0], _ends(*compared_operands(prev[1]))
        if not _same_bytes(src, p_src) or hbm_writes.written(src.lo, src.hi, p_index,
                                                                 ins.index):
            continue
        if dst.alloc == p_dst.alloc:  # reloaded into the tensor it is still in
            if not _same_place(dst, p_dst) or written_between(dst.alloc, p_index, ins.index):
                continue
        elif _fresh_copy(ins.index, dst, p_dst, allocs, writes_to):
            alias[dst.alloc] = p_dst.alloc
        else:
            continue
        dropped.add(ins.index)
        kept_for[ins.index] = p_index
        last[key] = prev
    if not dropped:
        return program
    for p_index, repeats in Counter(kept_for.values()).items():
        first = instrs[p_index]
        first.attrs = {**first.attrs,
                       "hoisted_repeats": first.attrs.get("hoisted_repeats", 0) + repeats}
    out = []
    ordered = []  # the kept instructions with explicit order edges
    replaced = list(kept_for.values())  # (the positions of those whose attrs are)
    renumber = {}
    position = [-1] * len(instrs)  # by position: the new one, -1 where changed
    for at, ins in enumerate(instrs):
        i = ins.index
        if i in dropped:
            continue
        if alias:
            for a in ins.reads:  # (only the reads of a dropped copy change)
                if a.alloc in alias:
                    ins.reads = tuple([_redirect(r, alias, allocs) for r in ins.reads])
                    break
            else:
                position[at] = len(out)
        else:
            position[at] = len(out)
        if ins.attrs.get("depends_on"):
            ordered.append(ins)
            replaced.append(at)
        renumber[i] = ins.index = len(out)
        out.append(ins)
    for ins in ordered:  # an edge from a dropped repeat now comes from the load that stays
        ins.attrs = {**ins.attrs, "depends_on": list(dict.fromkeys(
            renumber[kept_for.get(d, d)] for d in ins.attrs["depends_on"]))}
    positions = sorted(renumber)
    fences = [(c, _next_kept(positions, renumber, at, len(out))) for c, at in program.fences]
    hoisted = Program(program.chip, program.lnc, out, allocs, program.memory, fences)
    hoisted.copied = _carried(program.copied, instrs, position, out, sorted(replaced),
                              numbered=True)
    program.copied = []
    return hoisted


def _ends(reads, writes):
    """(source, destination) of a DMA of these operands: its one write and its one read
    besides indirect offsets, else None."""
    if len(writes) != 1:
        return None
    if len(reads) != 1 or reads[0].role == "indirect_offset":
        reads = [a for a in reads if a.role != "indirect_offset"]
        if len(reads) != 1:
            return None
    return reads[0], writes[0]


def _load_ends(ins):
    """(source, destination) of a load that is plain by its opcode, engine, location and
    operands' roles, spaces and indirection (an HBM -> SBUF dma_copy with one source
    besides indirect offsets and one destination: the first checks of
    hoist_invariant_loads' loop), else None."""
    if ins.opcode not in _PLAIN or ins.engine != "dma" or ins.location is None:
        return None
    ends = _ends(ins.reads, ins.writes)
    if ends is None:
        return None
    src, dst = ends
    if src.space != "hbm" or dst.space != "sbuf" or src.indirect or dst.indirect:
        return None
    return ends


def _visited(blocks: list, instrs: list, allocs: dict, vetted: dict):
    """The instructions hoisting must visit, in order: all but some copies of loop
    expansion's blocks (machine/record.py CopiedBlock), which share their template
    instruction's opcode, engine, core and location and its operands' roles, spaces and
    indirection. Of a block it visits no copy of a template instruction that is not a
    plain load (`_load_ends`); and of the executions of a source line in the block, where
    each may be dropped as a repeat (`_all_reach`) and none reads the bytes of the one
    before it (so none repeats one in the block), the first (which may repeat a load
    before the block) and the last (the line's previous execution for what follows):
    the others would only stand in as that. Those two are plain loads of the kind
    hoisting drops: `vetted` gets their sources' (lo, hi) by their id, so that their
    operands, which may not be made yet, are only made should a load repeat them."""
    parts, at = [], 0  # (the instructions up to each block looked at, then its visits)
    ids: list = []  # (of the explicitly placed tensors, listed at the first question)

    def explicit():
        if not ids:
            every, (placed,) = allocation_columns(allocs, {"explicit": np.bool_})
            ids.append(every[placed])
        return ids[0]

    held = [b for b in blocks if b.held_by(instrs)]
    lines_of = _TemplateLines(instrs, held).of
    copies = Counter()  # (start, width) of a template -> its copies (reading it costs
    for b in held:      # about as much as a few)
        copies[b.template.start, len(b.template.reads)] += b.copies
    for b in _joined(held, copies):
        t, w = b.template, len(b.template.reads)
        visit = []
        for where, places, template, plain in lines_of(t.start, w).values():
            runs = (b.start + np.arange(b.copies)[:, None] * w + where).ravel()
            if len(runs) > 2:
                numbers = _copies_numbers(b, places, template)
                # (HBM sources: lo, hi absolute)
                if (numbers[:, 2] < 0).all() and _each_moves(numbers) \
                        and _all_reach(runs, numbers[:, 3], plain, instrs, explicit):
                    runs = runs[[0, -1]]
                    for k, bounds in zip(runs.tolist(), numbers[[0, -1], :2].tolist()):
                        vetted[id(instrs[k])] = tuple(bounds)
            visit.append(runs)
        visit = np.sort(np.concatenate(visit)).tolist() if visit else []
        parts += [instrs[at:b.start], map(instrs.__getitem__, visit)]
        at = b.stop
    if not parts:
        return instrs
    parts.append(instrs[at:])
    return itertools.chain.from_iterable(parts)


def _each_moves(numbers) -> bool:
    """Whether each row of `numbers` (source lo, hi, ...: a line's loads in order) reads
    other bytes than the row before (lo or hi differs). Column by column: NumPy's diff
    and any(axis=1) over the two strided columns took ~1 ms per 64k rows, ~16x this
    (most of _visited on the matmul tutorial's tiled step)."""
    lo, hi = numbers[:, 0], numbers[:, 1]
    return bool(((lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])).all())


def _joined(held: list, copies: Counter) -> list:
    """The blocks `_visited` looks at (of `held`, in order: those of enough instructions
    and template copies, none within the one before), each run of blocks of one
    template that follow one another joined into one (their copies one after another:
    the line's executions in order, a pass over the run instead of one per block)."""
    runs, at = [], 0
    for b in held:
        t, w = b.template, len(b.template.reads)
        if b.copies * w < _MANY or copies[t.start, w] < _FEW_COPIES or b.start < at:
            continue
        if runs and runs[-1][-1].template is t and runs[-1][-1].stop == b.start:
            runs[-1].append(b)
        else:
            runs.append([b])
        at = b.stop
    return [run[0] if len(run) == 1 else replace(
        run[0], copies=sum(b.copies for b in run), last=run[-1].last,
        numbers=np.concatenate([b.numbers[:b.copies * len(b.template.moving)]
                                for b in run]))
        for run in runs]


class _TemplateLines:
    """_template_lines of the templates of blocks of copies `held` (in `instrs`), each
    read once (blocks may hold equal ones)."""

    def __init__(self, instrs: list, held: list):
        self.instrs, self.by_start = instrs, sorted(held, key=attrgetter("start"))
        self.starts = [b.start for b in self.by_start]
        self.lines: dict = {}  # (start, width) of a template -> its plain loads by line

    def of(self, start: int, width: int) -> dict:
        """Those of the template of `width` instructions at `start`."""
        if (start, width) not in self.lines:
            stop, inner, end = start + width, [], start
            # (the blocks of copies within it: their templates')
            for b in self.by_start[bisect_left(self.starts, start):
                                   bisect_left(self.starts, stop)]:
                if end <= b.start and b.stop <= stop and \
                        b.copies * len(b.template.reads) >= _INNER:
                    inner.append(b)
                    end = b.stop
            self.lines[start, width] = _template_lines(self.instrs, start, stop, inner,
                                                       self.of)
        return self.lines[start, width]


def _template_lines(instrs: list, start: int, stop: int, inner: list, lines_of) -> dict:
    """The plain loads (`_load_ends`) of the template instrs[start:stop], by (core,
    source line): per line, their positions in it, their sources' and destinations'
    positions among its accesses (each instruction's reads, then its writes) and the
    template's source lo, hi and alloc and destination alloc (a row per load each); and
    whether their copies have no cast and no spill: True, False where one has, None
    where a cast or spill is an int (a copy's attrs are its template's but for their
    ints, which may move: expand_copy._attrs_with). The copies of the blocks `inner`
    (in order, within it) are read off their templates' lines (`lines_of`) and
    numbers (_copies_numbers: lo and hi relative where the source's alloc is not -1,
    which no source that `_visited` compares has)."""
    parts: dict = {}  # line -> its rows part by part, in order
    first, at = 0, start  # (the next instruction's first access, and its position)
    for b in inner + [None]:
        end = stop if b is None else b.start
        first = _plain_lines(instrs, at, end, start, first, parts)
        if b is None:
            break
        t, w = b.template, len(b.template.reads)
        width = sum(map(len, t.reads)) + sum(map(len, t.writes))  # (accesses a copy)
        copy = np.arange(b.copies)[:, None]
        for key, (where, places, numbers, plain) in lines_of(t.start, w).items():
            parts.setdefault(key, []).append((
                (b.start - start + copy * w + where).ravel(),
                (first + copy[:, :, None] * width + places).reshape(-1, 2),
                _copies_numbers(b, places, numbers), plain))
        first += b.copies * width
        at = b.stop
    return {key: (np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]),
                  np.concatenate([p[2] for p in ps]),
                  None if any(p[3] is None for p in ps) else all(p[3] for p in ps))
            for key, ps in parts.items()}


def _plain_lines(instrs: list, at: int, end: int, start: int, first: int,
                 parts: dict) -> int:
    """_template_lines' rows of instrs[at:end] (a part each line), read one by one;
    the access position after them."""
    by_line: dict = {}  # line -> ([7 numbers per load], [cast, spill, ...])
    for j in range(at, end):
        ins = instrs[j]
        reads = ins.reads
        ends = _load_ends(ins) if ins.opcode in _PLAIN else None
        if ends is not None:
            src, dst = ends
            loc = ins.location
            key = (ins.core, loc.file, loc.line)
            line = by_line.get(key)
            if line is None:
                line = by_line[key] = ([], [])
            attrs = ins.attrs
            # (a read equal to the source is an indirect offset: another role)
            line[0].extend((j - start, first + reads.index(src), first + len(reads),
                            src.lo, src.hi, src.alloc, dst.alloc))
            line[1].extend((attrs.get("cast"), attrs.get("spill")))
        first += len(reads) + len(ins.writes)
    for key, (numbers, flags) in by_line.items():
        table = np.array(numbers, dtype=np.int64).reshape(-1, 7)
        parts.setdefault(key, []).append((table[:, 0], table[:, 1:3], table[:, 3:7],
                                          None if int in map(type, flags) else
                                          not any(flags)))
    return first


# (the fields _copies_numbers gives: the side (source, destination) and the
# CopyTemplate.kept field of source lo, hi and alloc and destination alloc)
_SIDES = np.array([0, 0, 0, 1])
_FIELDS = np.array([2, 3, 4, 4])


def _copies_numbers(block, places, template):
    """Per copy of `block` and row of `places` (the positions of a load's source and
    destination among the template's accesses), copy by copy: the source's lo, hi and
    alloc and the destination's alloc, from the block's numbers where they move, else
    the template's (`template`: rows of the same four)."""
    t = block.template
    n, m = block.copies, len(t.moving)
    out = np.empty((n, len(template), 4), np.int64)
    if not m:
        out[:] = template
        return out.reshape(-1, 4)
    q = np.searchsorted(t.moving, places)
    np.minimum(q, m - 1, out=q)
    q = q[:, _SIDES]
    k = t.kept[_FIELDS]
    own = (t.moving[q] == places[:, _SIDES]) & (k >= 0)
    # (a field kept nowhere reads column -1: not copied). A field at a time, its
    # column of the numbers as (copy, moving operand): one gather along the rows,
    # ~5x faster than one over (copy, row, field) index arrays; the template's value
    # only where a row's field does not move, and a field that moves in every row
    # gathered into its whole column (a slice: ~3x faster than naming the rows)
    for j in range(4):
        rows = own[:, j]
        if not rows.all():
            out[:, :, j] = template[:, j]
            if not rows.any():
                continue
        by_copy = block.numbers[:n * m, k[j]].reshape(n, m)
        if rows.all():
            out[:, :, j] = by_copy[:, q[:, j]]
        else:
            rows = np.flatnonzero(rows)
            out[:, rows, j] = by_copy[:, q[rows, j]]
    return out.reshape(-1, 4)


def _all_reach(runs, dst, plain, instrs: list, explicit) -> bool:
    """Whether every plain load at `runs` (positions; `dst`: their destinations' allocs;
    `plain`: whether they have no cast and no spill, None where their attrs tell) is
    one into an automatic tensor with no cast and no spill (the last checks of
    hoist_invariant_loads' loop): one it may drop as a repeat. `explicit()`: the ids
    of the explicitly placed tensors (an int64 array)."""
    placed = explicit()
    if (dst < 0).any() or (len(placed) and np.isin(dst, placed).any()):
        return False
    if plain is not None:
        return plain
    attrs = list(map(_ATTRS, map(instrs.__getitem__, runs.tolist())))
    _, first = np.unique(identities(attrs), return_index=True)
    return not any(attrs[k].get("cast") or attrs[k].get("spill") for k in first.tolist())


def _fresh_copy(index, dst, p_dst, allocs, writes_to) -> bool:
    """dst is a tensor only this load writes, laid out as the previous copy, which only
    its own load wrote: the same value in the same place of an equal tensor."""
    new, old = allocs[dst.alloc], allocs[p_dst.alloc]
    shift = new.vaddr - old.vaddr  # (the previous copy's bytes, moved into dst's tensor)
    return (writes_to(dst.alloc) == [index] and len(writes_to(p_dst.alloc)) == 1
            and _same_layout(old, new)
            and _same_place(dst, with_bytes(p_dst, p_dst.lo + shift, p_dst.hi + shift)))


# the fields two accesses must share to read the same bytes / lie in the same place
# (one C call each: Access is a tuple)
_BYTES = itemgetter(*map(Access._fields.index, ("lo", "hi", "offset", "pattern", "dtype",
                                                "shape")))
_PLACE = itemgetter(*map(Access._fields.index, ("lo", "hi", "p_lo", "p_hi", "pattern",
                                                "dtype")))


def _same_bytes(a, b) -> bool:
    return _BYTES(a) == _BYTES(b)


def _same_place(a, b) -> bool:
    return _PLACE(a) == _PLACE(b)


def _same_layout(a, b) -> bool:
    return (a.space, a.core, a.row_bytes, a.block_bytes, a.partition, a.partitions,
            a.dtype) == (b.space, b.core, b.row_bytes, b.block_bytes, b.partition,
                         b.partitions, b.dtype)


def _redirect(a, alias, allocs):
    to = alias.get(a.alloc)
    if to is None:
        return a
    shift = allocs[to].vaddr - allocs[a.alloc].vaddr
    return copy_with(a, lo=a.lo + shift, hi=a.hi + shift, alloc=to)


def _carried(blocks: list, instrs: list, position: list, out: list,
             replaced: list = (), numbered: bool = False) -> list:
    """The blocks of copies (machine/record.py CopiedBlock) of `instrs` as they lie in
    `out` (`position`: each instruction's position there, -1 where dropped or its reads
    redirected): a block whose template changed is dropped, and one with changed copies
    cut around them; one that holds, or whose template holds, an instruction whose
    attrs were replaced (at the positions `replaced`, ascending) notes it
    (CopiedBlock.attrs_replaced). `numbered`: each instruction of `out` is numbered
    by its position there (CopiedBlock.numbered)."""
    templates: dict = {}  # id(old template) -> it renumbered, or None
    kept = []
    for b in blocks:
        if not b.held_by(instrs):
            continue
        t, w = b.template, len(b.template.reads)
        if id(t) not in templates:
            templates[id(t)] = None if -1 in position[t.start:t.start + w] else \
                replace(t, start=position[t.start])
        new = templates[id(t)]
        if new is None:
            continue
        m, c = len(t.moving), 0
        marked = b.attrs_replaced or any(
            bisect_left(replaced, lo) < bisect_left(replaced, hi) for lo, hi in b.spans)
        for stop in [k // w for k, p in enumerate(position[b.start:b.stop]) if p < 0] + \
                [b.copies]:
            if stop > c:
                s = position[b.start + c * w]
                kept.append(replace(b, start=s, copies=stop - c, template=new,
                                    numbers=b.numbers[c * m:stop * m], first=out[s],
                                    last=out[s + (stop - c) * w - 1],
                                    attrs_replaced=marked, numbered=numbered))
            c = max(c, stop + 1)
    return kept


def _next_kept(positions, renumber, at, end) -> int:
    """The new index of the first kept instruction at or after old index `at`."""
    k = bisect_right(positions, at - 1)
    return renumber[positions[k]] if k < len(positions) else end
