"""On-chip allocation by liveness, with spills: the compiler's SBUF/PSUM allocator.

While a kernel runs, each automatically allocated on-chip tensor lives at virtual
addresses of its own (machine/memory.py) and its accesses name it (`Access.alloc`).
This pass walks the program in order and gives each *block* of such a tensor (the
whole tensor in the current API, one index of the block dims of a legacy
`nl.ndarray((B, nl.par_dim(P), F))`) physical space from its first access to its last,
the way neuronx-cc allocates logical tiles; then it rewrites every access to its
physical bytes, so the timing model sees the reuse (false) dependencies the hardware
has, and inserts the DMAs of spills.

Policy (neuronx-cc's own heuristics are not published; these are trnsim's, named):
- Placement, at the memory's alignment: never-used space first (next-fit: the search
  starts past the most recent placement and wraps), else the free space released
  longest ago. A loop's tiles thus rotate through free space (the rotating buffers that
  let iterations overlap), and the buffer the previous iteration just read is reused
  last. A PSUM block starts on a bank and holds the rest of its last bank.
- Explicitly placed tensors (`address=`, direct allocation) hold their bytes from their
  declaration to their last access; other blocks are kept out of them meanwhile.
- When a block does not fit, resident blocks not used by the instruction at hand are
  evicted: preferably a window whose blocks were last used, and are next needed, at
  least PREFETCH_DISTANCE instructions away (so the reload into it can run ahead of
  the instruction that needs it, under the work in between, instead of waiting for
  the instruction just before: the prefetch a spilling compiler schedules); among
  those, or failing any, the contiguous window whose soonest-needed block is needed
  last (Belady's furthest next use), then the fewest bytes to save. A block whose bytes still equal a
  copy in HBM (everything written into it since it was placed came from HBM by DMA, and
  that HBM was not written since; or its spill copy) is dropped without a save; any
  other block is saved to HBM scratch. Its next access reloads it from the copy.
  Spill DMAs run on queues of their own (qSpillSave, qSpillReload); a save is
  attributed to the line that allocated the tensor, a reload to the line whose access
  needed it. PSUM blocks spill through HBM the same way (the compiler's PSUM spill path
  is not documented).
- When an instruction's own blocks fit together but not around where those already
  placed sit, they are moved (evicted and loaded back side by side). An instruction
  whose own blocks cannot be resident together at all raises a CapacityError naming the
  op, its tensors and the kernel line.

Where the compiled paths run (trnsim/machine/compiled.py), programs in which no block
needs an eviction are allocated by trnsim/compiler/compiled_allocation.py, with the
same result; the rest here.
"""
from __future__ import annotations

import bisect

from ..machine import compiled
from ..machine.access import Access, copy_with, with_bytes
from ..machine.errors import CapacityError
from ..machine.memory import next_fit
from ..machine.record import Allocation, Instruction, Program
from ..numerics.dtypes import as_dtype
from .arena import Arena, merged
from .hbm_writes import HbmWrites
from .plan import MemoryPlan, Placement, Spill

_MAX_LISTED = 24  # resident blocks listed in a capacity error
# How far ahead (instructions) a reload should be able to start. No published figure
# (neuronx-cc's spill scheduling is not documented): a choice, a few matmuls' worth so
# a reload's fixed DMA cost (~1.3 us) hides under the compute in between.
PREFETCH_DISTANCE = 8
SCRATCH_ALIGN = 512  # HBM spill slots, as HbmSpace aligns tensors


class _Block:
    """The allocator's state of one block."""
    __slots__ = ("alloc", "index", "arena", "uses", "next", "placement", "dirty", "loads",
                 "copy_valid", "scratch", "written", "save_memo")

    def __init__(self, alloc: Allocation, index: int, arena: Arena):
        self.alloc, self.index, self.arena = alloc, index, arena
        self.uses: list[int] = []  # instruction indices (input program) that access it
        self.next = 0  # position in `uses` of the next access
        self.placement: Placement | None = None
        self.written = False  # anything ever written (else there is nothing to keep)
        self.dirty = False  # holds bytes no HBM copy has
        self.loads: list = []  # (input index, HBM source access, block write access)
        self.copy_valid = False  # the spill copy in `scratch` equals the bytes
        self.scratch: tuple[int, int] | None = None  # HBM [lo, hi) of its spill slot
        self.save_memo: tuple | None = None  # (next, needs a save) until it is written

    @property
    def nbytes(self) -> int:
        """Bytes of the block over all its partitions."""
        a = self.alloc
        per = min(a.block_bytes, a.row_bytes - self.index * a.block_bytes)
        return per * a.partitions

    def label(self) -> str:
        return self.alloc.label(self.index)


def _blocks_of(alloc: Allocation, a: Access) -> range:
    lo, hi = a.lo - alloc.vaddr, a.hi - alloc.vaddr
    bb = alloc.block_bytes
    return range(lo // bb, -(-hi // bb))


def _block_access(blk: _Block, role: str, mode: str, space: str, lo: int,
                  p_lo: int, p_hi: int) -> Access:
    """An access to one whole block at byte `lo` of `space` (a spill DMA's operand)."""
    a = blk.alloc
    per = blk.nbytes // a.partitions
    n = per // as_dtype(a.dtype).itemsize
    return Access(role=role, mode=mode, space=space, core=a.core,
                  tensor=a.name, dtype=a.dtype, shape=(a.partitions, n),
                  pattern=((n, a.partitions), (1, n)), offset=0, p_lo=p_lo, p_hi=p_hi,
                  lo=lo, hi=lo + (per if space != "hbm" else blk.nbytes),
                  elems_per_partition=n, bytes=blk.nbytes, contiguous_bytes=per,
                  indirect=False, alloc=a.id if space != "hbm" else -1)


def _on_chip(blk: _Block, role: str, mode: str) -> Access:
    """The block where it is placed now."""
    a = blk.alloc
    return _block_access(blk, role, mode, a.space, blk.placement.start, a.partition,
                         a.partition + a.partitions)


def _spill_copy(blk: _Block, role: str, mode: str) -> Access:
    """The block's copy in its HBM spill slot."""
    return _block_access(blk, role, mode, "hbm", blk.scratch[0], 0, 1)


class _Allocator:
    def __init__(self, program: Program):
        self.program = program
        self.allocs = program.allocations
        chip = program.chip
        core = chip.core
        self.arenas: dict[tuple, Arena] = {}
        for c in range(program.lnc):
            self.arenas[("sbuf", c)] = Arena("sbuf", c, core.sbuf_usable_bytes_per_partition,
                                              core.sbuf_align_bytes, chip.name)
            self.arenas[("psum", c)] = Arena("psum", c, core.psum_bytes_per_partition,
                                              core.psum_bank_bytes, chip.name)
        self.plan = MemoryPlan(program.allocations,
                               {k: a.capacity for k, a in self.arenas.items()})
        self.out: list[Instruction] = []
        # alloc id -> its blocks by index (None: not used yet, or past its last use)
        self.blocks: dict[int, list] = {}
        self.touched: list[tuple | None] = []  # per instruction: its automatic blocks
        # physical byte offsets, one int object per value (the record keeps them)
        self.ints: dict[int, int] = {}
        self.at = 0  # len(self.out) as the one int object its instruction, placements
        # and usage steps share (`position`)
        self.explicit: dict[int, list] = {}  # alloc id -> [first, last] instruction
        self.hbm_writes = HbmWrites(program.instructions)
        self.scratch_next = 0

    # -- the uses of every block ----------------------------------------------------
    def scan(self) -> None:
        allocs, blocks, touched = self.allocs, self.blocks, self.touched
        hbm_end = 0
        for i, ins in enumerate(self.program.instructions):
            mine: dict[_Block, None] = {}
            for accesses in (ins.reads, ins.writes):
                for a in accesses:
                    if a.space == "hbm":
                        if a.hi > hbm_end:
                            hbm_end = a.hi
                        continue
                    aid = a.alloc
                    if aid < 0:
                        continue
                    alloc = allocs[aid]
                    if alloc.explicit:
                        span = self.explicit.setdefault(aid, [alloc.declared_at, i])
                        span[1] = i
                        continue
                    row = blocks.get(aid)
                    if row is None:
                        row = blocks[aid] = [None] * alloc.blocks
                    for b in _blocks_of(alloc, a):
                        blk = row[b]
                        if blk is None:
                            blk = row[b] = _Block(alloc, b,
                                                  self.arenas[(alloc.space, alloc.core)])
                        if blk not in mine:
                            mine[blk] = None
                            blk.uses.append(i)
            touched.append(tuple(mine) if mine else None)
        self.scratch_next = -(-hbm_end // SCRATCH_ALIGN) * SCRATCH_ALIGN + SCRATCH_ALIGN

    # -- the walk -------------------------------------------------------------------
    def run(self) -> Program:
        self.scan()
        for aid, (first, last) in self.explicit.items():
            a = self.program.allocations[aid]
            self.plan.placements.append(
                Placement(aid, 0, a.vaddr, a.row_bytes, first, last))
            self.arenas[(a.space, a.core)].explicit.append(
                (first, last, a.vaddr, a.vaddr + a.row_bytes))
        out, physical, touched = self.out, self.physical, self.touched
        renumbered = []
        for i, ins in enumerate(self.program.instructions):
            mine = touched[i]
            if mine is None:
                ins.index = len(out)
                renumbered.append(ins.index)
                out.append(ins)
                continue
            for blk in mine:
                if blk.placement is None:
                    self.bring_in(blk, i, ins, mine)
            index = ins.index = self.position()
            renumbered.append(index)
            out.append(ins)
            ins.reads = tuple(map(physical, ins.reads))
            virtual = ins.writes
            ins.writes = tuple(map(physical, virtual))
            self.note_writes(i, ins, virtual)
            touched[i] = None
            for blk in mine:  # free each block after its last use
                blk.next += 1
                if blk.next == len(blk.uses):
                    self.release(blk, index)
                    self.forget(blk)
        renumbered.append(len(out))
        for ins in out:  # explicit order edges name instructions by index
            dep = ins.attrs.get("depends_on")
            if dep:
                ins.attrs = {**ins.attrs, "depends_on": [renumbered[d] for d in dep]}
        prog = Program(self.program.chip, self.program.lnc, out,
                       self.program.allocations, self.plan,
                       [(c, renumbered[at]) for c, at in self.program.fences])
        for key, arena in self.arenas.items():
            self.plan.usage[key] = arena.usage
            self.plan.peak[key] = arena.peak
        return prog

    def bring_in(self, blk: _Block, i: int, ins: Instruction, mine: list) -> None:
        arena = blk.arena
        size = blk.alloc.block_bytes
        start = self.fit(arena, size, i, blk.uses[-1])
        if start is None:
            start = self.evict_for(arena, size, i, blk.uses[-1], mine, ins)
        if start is None:  # the instruction's own blocks sit where no window is left
            self.compact(arena, i, ins, mine)
            return
        self.place(arena, blk, start, ins)

    def compact(self, arena: Arena, i: int, ins: Instruction, mine: list) -> None:
        """Empty the arena and place the instruction's blocks in it side by side (those
        that were resident move: saved if needed and loaded back)."""
        for b in list(arena.resident):
            self.evict(b)
        for blk in mine:
            if blk.arena is not arena:
                continue
            reserved = self.reserved(arena, i, blk.uses[-1])
            start = next_fit(merged(arena.taken + reserved), blk.alloc.block_bytes, 0, 0,
                             arena.capacity, arena.align)
            if start is None:
                self.overflow(arena, i, mine, ins)
            self.place(arena, blk, start, ins)

    def place(self, arena: Arena, blk: _Block, start: int, ins: Instruction) -> None:
        """Put the block at `start` for `ins`; if it was spilled, load it back first."""
        index = self.position()
        ints = self.ints
        start = ints.setdefault(start, start)
        size = arena.footprint(start, blk.alloc.block_bytes)
        size = ints.setdefault(size, size)
        blk.placement = Placement(blk.alloc.id, blk.index, start, size, index)
        self.plan.placements.append(blk.placement)
        arena.resident[blk] = None
        arena.occupy(start, start + size)
        arena.cursor = start + size
        arena.used += size
        arena.note(index)
        if blk.written:
            self.reload(blk, ins)

    def release(self, blk: _Block, last: int) -> None:
        arena = blk.arena
        del arena.resident[blk]
        p = blk.placement
        arena.vacate(p.start, p.start + p.size, last)
        p.last = last
        arena.used -= p.size
        blk.placement = None
        arena.note(self.position())

    def position(self) -> int:
        """len(self.out), the same int object while it stays the same."""
        if self.at != len(self.out):
            self.at = len(self.out)
        return self.at

    def forget(self, blk: _Block) -> None:
        """Drop a block past its last use (its uses and loads go with it)."""
        self.blocks[blk.alloc.id][blk.index] = None

    def note_writes(self, i: int, ins: Instruction, virtual: tuple) -> None:
        """Note what `ins` (input index i; `virtual`: its write accesses before placement)
        wrote into its blocks."""
        source = False  # not looked for yet
        for a in virtual:
            row = self.blocks.get(a.alloc)
            if row is None or a.space == "hbm":
                continue
            if source is False:
                source = _hbm_source(ins)
            covered = _blocks_of(self.allocs[a.alloc], a)
            single = len(covered) == 1
            for b in covered:
                blk = row[b]
                if source is not None and not blk.dirty and single:
                    blk.loads.append((i, source, a))
                else:
                    blk.dirty, blk.loads = True, []
                blk.written = True
                blk.copy_valid = False
                blk.save_memo = None

    # -- placement ------------------------------------------------------------------
    @staticmethod
    def reserved(arena: Arena, now: int, until: int) -> list[tuple[int, int]]:
        """Bytes of explicit tensors in use at some point in [now, until]."""
        return [(lo, hi) for first, last, lo, hi in arena.explicit
                if first <= until and last >= now]

    def fit(self, arena: Arena, size: int, now: int, until: int) -> int | None:
        return arena.find(size, self.reserved(arena, now, until) if arena.explicit else [])

    def evict_for(self, arena: Arena, size: int, now: int, until: int, mine: list,
                  ins: Instruction) -> int | None:
        """Make room for `size` bytes by evicting the best window of blocks; returns its
        start, or None when the blocks of `mine` already placed leave no window."""
        pinned = set(mine)
        fixed = merged([(b.placement.start, b.placement.start + b.placement.size)
                         for b in arena.resident if b in pinned]
                        + self.reserved(arena, now, until))
        fixed_lo = [lo for lo, _ in fixed]
        movable = sorted((b for b in arena.resident if b not in pinned),
                         key=lambda b: b.placement.start)
        starts = [b.placement.start for b in movable]
        ends = [b.placement.start + b.placement.size for b in movable]
        soon = [b.uses[b.next] for b in movable]
        recent = [b.uses[b.next - 1] if b.next else now for b in movable]
        saves = [b.nbytes if self.needs_save(b) else 0 for b in movable]
        candidates = {0} | {-(-hi // arena.align) * arena.align for _, hi in fixed}
        best = None
        for s in sorted(candidates.union(starts)):
            e = s + size
            k = bisect.bisect_left(fixed_lo, e) - 1  # the last obstacle starting before e
            if e > arena.capacity or (k >= 0 and fixed[k][1] > s):
                continue
            lo, hi = bisect.bisect_right(ends, s), bisect.bisect_left(starts, e)
            first = min(soon[lo:hi], default=float("inf"))
            ahead = first - now >= PREFETCH_DISTANCE and \
                now - max(recent[lo:hi], default=-PREFETCH_DISTANCE) >= PREFETCH_DISTANCE
            score = (ahead, first, -sum(saves[lo:hi]), lo - hi)
            if best is None or score > best[0]:
                best = (score, s, movable[lo:hi])
        if best is None:
            return None
        for b in best[2]:
            self.evict(b)
        return best[1]

    # -- spills ---------------------------------------------------------------------
    def needs_save(self, blk: _Block) -> bool:
        if not blk.written or blk.copy_valid:
            return False
        if blk.dirty or not blk.loads:
            return True
        memo = blk.save_memo
        if memo is not None and memo[0] == blk.next:
            return memo[1]
        until = blk.uses[blk.next]  # where it will be reloaded
        save = any(self.hbm_writes.written(src.lo, src.hi, i, until)
                   for i, src, _ in blk.loads)
        blk.save_memo = (blk.next, save)
        return save

    def reserve_scratch(self, blk: _Block) -> None:
        """Give the block an HBM spill slot (once; it keeps it)."""
        if blk.scratch is None:
            lo = self.scratch_next
            blk.scratch = (lo, lo + blk.nbytes)
            self.scratch_next += -(-blk.nbytes // SCRATCH_ALIGN) * SCRATCH_ALIGN

    def evict(self, blk: _Block) -> None:
        if self.needs_save(blk):
            self.reserve_scratch(blk)
            self.emit_dma(blk, "save", (_on_chip(blk, "src", "r"),),
                          (_spill_copy(blk, "dst", "w"),), blk.alloc.site)
            blk.copy_valid = True
            blk.loads = []
        self.release(blk, len(self.out) - 1)

    def reload(self, blk: _Block, ins: Instruction) -> None:
        if blk.copy_valid:
            self.emit_dma(blk, "reload", (_spill_copy(blk, "src", "r"),),
                          (_on_chip(blk, "dst", "w"),), ins.location)
            return
        for _, source, wrote in blk.loads:  # clean: read it again from where it came
            self.emit_dma(blk, "reload", (copy_with(source, role="src"),),
                          (self.physical(wrote),), ins.location)

    def emit_dma(self, blk: _Block, kind: str, reads, writes, location) -> None:
        nbytes = sum(w.bytes for w in writes)
        elements = sum(w.bytes // as_dtype(w.dtype).itemsize for w in writes)
        ins = Instruction(
            len(self.out), blk.alloc.core, "dma", "dma_copy", tuple(reads), tuple(writes),
            location, {"dge_mode": "none", "transpose": False, "indirect": None,
                       "indirect_role": None, "bytes": nbytes, "src_bytes": nbytes,
                       "elements": elements, "oob_mode": "error", "name": None,
                       "cast": False, "spill": kind, "block": blk.label(),
                       "tensor_site": f"{blk.alloc.name or '<unnamed>'!r} {blk.alloc.shape_desc}"
                                      + (f" allocated at {blk.alloc.site}"
                                         if blk.alloc.site else "")},
            queue="qSpillSave" if kind == "save" else "qSpillReload")
        self.out.append(ins)
        self.plan.spills.append(Spill(kind, blk.alloc.id, blk.index, nbytes, ins.index))

    # -- addresses ------------------------------------------------------------------
    def physical(self, a: Access) -> Access:
        row = self.blocks.get(a.alloc)  # None: HBM, or an explicitly placed tensor
        if row is None or a.space == "hbm":
            return a
        alloc = self.allocs[a.alloc]
        bb = alloc.block_bytes
        n = a.hi - a.lo
        b0, off = divmod(a.lo - alloc.vaddr, bb)
        start = row[b0].placement.start
        ints = self.ints
        if off + n > bb:  # more than one block
            places = [row[b].placement for b in _blocks_of(alloc, a)]
            if not all(q.start == start + k * bb for k, q in enumerate(places)):
                lo = min(q.start for q in places)  # scattered blocks: their box
                hi = max(q.start + q.size for q in places)
                return with_bytes(a, ints.setdefault(lo, lo), ints.setdefault(hi, hi))
        lo, hi = start + off, start + off + n
        return with_bytes(a, ints.setdefault(lo, lo), ints.setdefault(hi, hi))

    def overflow(self, arena: Arena, i: int, mine: list, ins: Instruction):
        own = [b for b in mine if b.arena is arena]
        need = sum(arena.footprint(0, b.alloc.block_bytes) for b in own)
        allocs = self.program.allocations
        held = [allocs[aid] for aid, (first, last) in self.explicit.items()
                if (allocs[aid].space, allocs[aid].core) == (arena.space, arena.core)
                and first <= i <= last]
        lines = [f"    {b.label()} {b.alloc.shape_desc}: {b.alloc.block_bytes} B/partition"
                 + (f", allocated at {b.alloc.site}" if b.alloc.site else "")
                 for b in own[:_MAX_LISTED]]
        lines += [f"    {a.name or '<unnamed>'} {a.shape_desc}: explicit address {a.vaddr}, "
                  f"{a.row_bytes} B/partition" for a in held[:_MAX_LISTED]]
        unit = (f"{arena.capacity // arena.align} PSUM banks of {arena.align} bytes"
                if arena.space == "psum" else
                f"{arena.capacity} usable bytes per partition")
        raise CapacityError(
            f"{arena.space.upper()} overflow on {arena.chip_name} core {arena.core}: "
            f"{ins.opcode} needs its operand blocks resident at once ({need} bytes per "
            f"partition{' beside explicitly placed tensors' if held else ''}), more than "
            f"the {unit} hold even after spilling every other block:\n" + "\n".join(lines),
            op=ins.opcode, location=ins.location)


def _hbm_source(ins: Instruction) -> Access | None:
    """The HBM operand a DMA load copies from unchanged, else None."""
    if ins.engine != "dma" or ins.opcode != "dma_copy" or ins.attrs.get("cast"):
        return None
    srcs = [a for a in ins.reads if a.role != "indirect_offset"]
    if len(srcs) != 1 or srcs[0].space != "hbm" or srcs[0].indirect \
            or any(a.indirect for a in ins.writes):
        return None
    return srcs[0]


def allocate(program: Program) -> Program:
    """The program with physical on-chip addresses, spill DMAs and its MemoryPlan."""
    if compiled.wanted(len(program.instructions)):
        from .compiled_allocation import allocate_compiled  # None: not modelled there
        allocated = allocate_compiled(program)
        if allocated is not None:
            return allocated
    program.copied = []  # (its blocks of copies: this pass changes the accesses in place)
    return _Allocator(program).run()
