"""A program's on-chip tensors by id (Program.allocations, machine/record.py), with loop
expansion's copies kept as columns: a block of copies of a template iteration's
allocations (machine/expand_copy.py `Copier`) is its template's fields and the copies'
declared_at (and vaddr, where explicit) as arrays, an Allocation made when one is first
read. A timing-only compile reads their fields as columns (`allocation_columns`), so it
makes none (at 65k copies the objects, their ids and the dict took 13 MiB)."""
from __future__ import annotations

import bisect
import collections
import itertools
from collections.abc import MutableMapping
from operator import attrgetter

import numpy as np

from .record import Allocation

_FIELDS = Allocation.__slots__
_ID, _VADDR, _DECLARED = (_FIELDS.index(f) for f in ("id", "vaddr", "declared_at"))
_ALLOCATION_FIELDS = attrgetter(*_FIELDS)
# fewer ids than this are looked up one by one (NumPy's calls cost more than the loop)
_FEW = 64


class _Block:
    """Copies with ids [start, stop): the one at position j = id - start + base of the
    columns is copy j // width of the template's allocation j % width."""
    __slots__ = ("start", "stop", "base", "template", "width", "declared", "vaddr")

    def __init__(self, start, stop, base, template, declared, vaddr):
        self.start, self.stop, self.base = start, stop, base
        # the template's allocations' fields, a list per field (not changed after)
        self.template, self.width = template, len(template[0])
        self.declared = declared  # an int64 array per position
        self.vaddr = vaddr  # an int64 array per position, None: the template's

    def made(self, key: int) -> Allocation:
        j = key - self.start + self.base
        values = [f[j % self.width] for f in self.template]
        values[_ID] = key
        values[_DECLARED] = int(self.declared[j])
        if self.vaddr is not None:
            values[_VADDR] = int(self.vaddr[j])
        return Allocation(*values)

    def fields(self, start: int, stop: int) -> list:
        """The fields of its allocations start..stop - 1 (lists, one per field), making
        none."""
        lo = start - self.start + self.base
        j = np.arange(lo, lo + stop - start)
        w, first = self.width, lo % self.width  # (each field's template column repeated)
        times = -(-(first + stop - start) // w)
        out = [(f * times)[first:first + stop - start] for f in self.template]
        out[_ID] = list(range(start, stop))
        out[_DECLARED] = self.declared[j].tolist()
        if self.vaddr is not None:
            out[_VADDR] = self.vaddr[j].tolist()
        return out

    def part(self, start: int, stop: int) -> "_Block":
        return _Block(start, stop, self.base + start - self.start, self.template,
                      self.declared, self.vaddr)

    def columns(self, fields, memo: dict) -> list:
        """Fields `fields` ((name, dtype) pairs) of its allocations, in id order: an
        array each, to read only (a template's field may be the one in `memo`, the
        template fields converted so far: `field`)."""
        n, w = self.stop - self.start, self.width
        at = slice(self.base, self.base + n)
        if self.base % w == 0 and n == w:  # (one copy of the template: all of it)
            of_template = slice(None)
        else:  # (each one's position in the template)
            of_template = np.arange(self.base, self.base + n) % w
        out = []
        for name, dtype in fields:
            if name == "id":
                out.append(np.arange(self.start, self.stop, dtype=dtype))
            elif name == "declared_at":
                out.append(self.declared[at].astype(dtype))
            elif name == "vaddr" and self.vaddr is not None:
                out.append(self.vaddr[at].astype(dtype))
            else:
                out.append(self.field(name, dtype, memo)[of_template])
        return out

    def field(self, name: str, dtype, memo: dict | None = None) -> np.ndarray:
        """Field `name` of the template's allocations. `memo`: (id of a template's field
        list, dtype) -> that list as an array, for a caller that keeps the blocks alive
        while it reads them (an outer loop's blocks of copies share their template's
        lists: on the matmul tutorial's tiled step, 26 blocks of 2,080)."""
        column = self.template[_FIELDS.index(name)]
        key = (id(column), dtype)
        values = memo.get(key) if memo is not None else None
        if values is None:
            values = np.empty(self.width, dtype)
            values[:] = column
            if memo is not None:
                memo[key] = values
        return values


class Allocations(MutableMapping):
    """id -> Allocation, as a dict (iterated in id order, the order they are added in),
    whose blocks of loop copies (`add_block`) are columns until read."""
    __slots__ = ("_own", "_blocks", "_starts", "_made", "_in_blocks", "_top")

    def __init__(self, items=()):
        self._own = dict(items)  # those added one by one
        self._blocks: list[_Block] = []  # by id, disjoint, apart from `_own`'s ids
        self._starts: list[int] = []
        self._made: dict = {}  # the blocks' allocations read so far (one object each)
        self._in_blocks = 0
        self._top: int | None = None  # the greatest id + 1 (None: not known)

    def _block_of(self, key) -> int:
        """The number of the block holding `key`, -1 for none."""
        if not self._blocks or not isinstance(key, (int, np.integer)):
            return -1
        k = bisect.bisect_right(self._starts, key) - 1
        return k if k >= 0 and key < self._blocks[k].stop else -1

    def __getitem__(self, key):
        got = self._own.get(key)
        if got is not None:
            return got
        got = self._made.get(key)
        if got is not None:
            return got
        k = self._block_of(key)
        if k < 0:
            raise KeyError(key)
        got = self._made[key] = self._blocks[k].made(int(key))
        return got

    def __contains__(self, key) -> bool:
        return key in self._own or self._block_of(key) >= 0

    def __setitem__(self, key, value) -> None:
        if self._blocks and self._block_of(key) >= 0:
            self._cut(key)
        self._own[key] = value
        if self._top is not None and key >= self._top:
            self._top = key + 1

    def __delitem__(self, key) -> None:
        if key in self._own:
            del self._own[key]
        elif self._block_of(key) >= 0:
            self._cut(key)
        else:
            raise KeyError(key)
        if self._top is not None and key + 1 == self._top:
            self._top = None

    def _cut(self, key) -> None:
        """Take `key` out of its block."""
        k = self._block_of(key)
        b = self._blocks[k]
        parts = [p for p in (b.part(b.start, key), b.part(key + 1, b.stop))
                 if p.start < p.stop]
        self._blocks[k:k + 1] = parts
        self._starts[k:k + 1] = [p.start for p in parts]
        self._in_blocks -= 1
        self._made.pop(key, None)

    def __len__(self) -> int:
        return len(self._own) + self._in_blocks

    def __iter__(self):
        if not self._blocks:
            return iter(self._own)
        own = sorted(self._own)
        pieces, at = [], 0
        for b in self._blocks:
            to = bisect.bisect_left(own, b.start, at)
            pieces += (own[at:to], range(b.start, b.stop))
            at = to
        pieces.append(own[at:])
        return itertools.chain.from_iterable(pieces)

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def top(self) -> int:
        """The greatest id + 1 (0 when empty)."""
        if self._top is None:
            self._top = max(max(self._own, default=-1) + 1,
                            self._blocks[-1].stop if self._blocks else 0)
        return self._top

    def add(self, ids: list, allocations: list) -> None:
        """self[k] = a for each id k of `ids` and a of `allocations` (objects), at once
        where all lie past the last block (loop expansion's copies made as objects:
        MutableMapping.update sets them one by one)."""
        if self._blocks and min(ids) < self._blocks[-1].stop:
            self.update(zip(ids, allocations))
            return
        self._own.update(zip(ids, allocations))
        if self._top is not None:
            self._top = max(self._top, max(ids) + 1)

    def add_block(self, start: int, template: list, declared: np.ndarray,
                  vaddr: np.ndarray | None) -> None:
        """Add copies of the template's allocations (`template`: per field, their
        values) with ids from `start` (at least `top()`), as many as `declared` (their
        declared_at) lists; `vaddr`: theirs, None where they are the template's."""
        stop = start + len(declared)
        self._blocks.append(_Block(start, stop, 0, template, declared, vaddr))
        self._starts.append(start)
        self._in_blocks += len(declared)
        self._top = stop

    def fields(self, ids: range) -> list:
        """`allocation_fields` of the allocations `ids`."""
        pieces, at, stop, starts = [], ids.start, ids.stop, self._starts
        while at < stop:
            k = bisect.bisect_right(starts, at) - 1
            if k >= 0 and at < self._blocks[k].stop:
                to = min(stop, self._blocks[k].stop)
                pieces.append(self._blocks[k].fields(at, to))
            else:  # (added one by one, up to the next block)
                to = min(stop, starts[k + 1]) if k + 1 < len(starts) else stop
                pieces.append(_fields_of(map(self._own.__getitem__, range(at, to))))
            at = to
        out = pieces[0]
        for piece in pieces[1:]:
            collections.deque(map(list.extend, out, piece), 0)
        return out

    def _place(self, key) -> tuple:
        """(vaddr, id object) of allocation `key` (`vaddrs_and_ids` of one)."""
        al = self._own.get(key)
        if al is not None:
            return al.vaddr, al.id
        k = self._block_of(key)
        if k < 0:
            raise KeyError(key)
        b = self._blocks[k]
        j = key - b.start + b.base
        return (int(b.vaddr[j]) if b.vaddr is not None else
                b.template[_VADDR][j % b.width]), key

    def vaddrs_and_ids(self, ids) -> tuple:
        """(vaddr of each of `ids`: an int64 array, their id objects: a list, an
        Allocation's own where it was added one by one), making none."""
        names = list(ids)
        if len(names) < _FEW:
            places = list(map(self._place, names))
            return np.array([v for v, _ in places], np.int64), [i for _, i in places]
        vaddr = np.empty(len(names), np.int64)
        rest = range(len(names))
        if self._blocks:
            keys = np.array(names, np.int64)
            k = np.searchsorted(self._starts, keys, "right") - 1
            stops = np.array([b.stop for b in self._blocks])
            inside = (k >= 0) & (keys < stops[k.clip(0)])
            for number in np.unique(k[inside]).tolist():
                b = self._blocks[number]
                at = np.flatnonzero(inside & (k == number))
                j = keys[at] - b.start + b.base
                vaddr[at] = b.vaddr[j] if b.vaddr is not None else \
                    b.field("vaddr", np.int64)[j % b.width]
            rest = np.flatnonzero(~inside).tolist()
        own = self._own
        for n in rest:
            al = own[names[n]]
            vaddr[n], names[n] = al.vaddr, al.id
        return vaddr, names


def allocation_fields(allocs, ids: range) -> list:
    """The fields of the allocations `ids` (a range of ids, at least one) of
    `allocs` (a dict or an Allocations, whose blocks' are read as columns, making
    none): a list per Allocation field, in order (what `Allocation(*values)` takes)."""
    if isinstance(allocs, Allocations):
        return allocs.fields(ids)
    return _fields_of(map(allocs.__getitem__, ids))


def _fields_of(allocations) -> list:
    """The fields of `allocations` (Allocation objects), a list per field."""
    return [list(f) for f in zip(*map(_ALLOCATION_FIELDS, allocations))]


def allocation_columns(allocs, fields: dict) -> tuple:
    """(ids, per name of `fields` (name -> dtype) that field of each allocation): the
    fields of every allocation of `allocs` (a dict or an Allocations, whose blocks'
    are read as columns) as arrays, in no particular order."""
    own = allocs._own if isinstance(allocs, Allocations) else allocs
    blocks = allocs._blocks if isinstance(allocs, Allocations) else []
    values = list(own.values())
    memo: dict = {}
    read = [b.columns([*fields.items(), ("id", np.int64)], memo) for b in blocks]
    columns = [np.concatenate([np.fromiter(map(attrgetter(name), values), dtype, len(values))]
                              + [r[k] for r in read])
               for k, (name, dtype) in enumerate(fields.items())]
    ids = np.concatenate([np.fromiter(own, np.int64, len(own))] + [r[-1] for r in read])
    return ids, columns
