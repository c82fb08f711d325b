"""The kernel-profile cache: a kernel called again with the same shapes is simulated once.

A model calls the same kernel with the same shapes many times (every layer of a
transformer); its timing-only profile depends on the kernel's code, the shapes and dtypes
of its arrays and the values of its other arguments, never on the arrays' values. So
`trnsim.profile(..., numerics=False)` looks the call up here first; a hit returns the
profile without running the kernel.

The key of a `trnsim.profile` call (`kernel_key`) holds:
- the kernel: its code object (bytecode, constants, names, line numbers), its
  defaults and closure values, the content hash of its source file, and the same for
  every plain Python function or kernel it names in its globals (transitively: the
  helpers and sub-kernels it calls, from any module outside trnsim and the Python
  installation), plus the values of the plain constants it names (a module-level
  `TILE = 128`);
- each argument: an array (NumPy, torch, `nt.tensor[...]`, anything with `shape` and
  `dtype`) by its type, shape and dtype only; Python scalars, strings, None, enums,
  dtypes, functions (by name) and tuples/lists/dicts of them by value;
- the chip (its data, so an edited chip file is another chip), lnc, order, numerics,
  strict mode (resolved from $TRNSIM_STRICT), the legacy SPMD grid and
  `force_auto_alloc`, the scheduling function in use, and a hash of trnsim's own source
  and chip files (taken once per process).
Not in the key: array values, array strides or memory layout, and the code of library
functions (NumPy, the standard library) a kernel calls. An argument the key cannot
describe (an arbitrary object) makes the call uncacheable: it runs, and is counted in
`uncacheable`.

What is served: with numerics off the profile never holds values, so a hit is exact. With
numerics on the caller normally wants the outputs, which a hit cannot give: by default
(`cache=None`) such calls run and are not cached. `cache=True` (or a ProfileCache) with
numerics on means "outputs not needed": such runs are stored and served too. A hit's
`outputs` are placeholders of the right types, shapes and dtypes, filled with zeros, as a
timing-only run's are (None for outputs other than NumPy arrays, torch tensors and
tuples/lists of them), `run` is None, and `program` and `timeline` are
shared with the cached entry (read them, do not change them). `Profile.cache` is "hit" or
"miss" (None when the cache was not consulted) and `Profile.cache_key` the key.

`TRNSIM_PROFILE_DIR` autosave (the kernel has already run there, with numerics) looks up
the finished instruction record instead (`program_key`: the record, chip, order and
scheduler) and reuses the cached timeline, summary and insights; its summary JSON says
`"cache": "hit"` or `"miss"` and gives the key.

Storage: in memory, a bounded LRU (`maxsize` entries, default 128); optionally also on
disk (`directory`, one pickle per key; not bounded, `clear()` empties it).
$TRNSIM_PROFILE_CACHE sets the process-wide cache: a directory path (memory and disk),
`0`/`off`/`false`/`no` (no cache), or `1`/`on`/`memory` (memory only, the default);
$TRNSIM_PROFILE_CACHE_SIZE sets `maxsize`. `trnsim.profile_cache()` returns the
process-wide cache: `.stats()`, `.clear()`, `.configure(maxsize=, directory=,
enabled=)`.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import hashlib
import os
import pickle
import sys
import threading
import types
from functools import cached_property

from ..machine.usercode import code_names, is_user_function, unwrap
from .profile import Profile

ENV = "TRNSIM_PROFILE_CACHE"
SIZE_ENV = "TRNSIM_PROFILE_CACHE_SIZE"
DEFAULT_SIZE = 128
_FORMAT = 5  # bump when the pickled entry changes shape (2: slotted Event, tuple Wait;
# 3: slotted Placement and Spill, MemoryPlan.usage as plan.Steps; 4: MemoryPlan's
# placements as plan.PlacementColumns where the compiled allocator made them; 5:
# EventColumns.folded)
_OFF = ("0", "off", "false", "no")
_MEMORY = ("", "1", "on", "true", "yes", "memory")
_UNSET = object()


class Uncacheable(Exception):
    """A call whose key cannot be described (an argument of unknown kind)."""


# ---------------------------------------------------------------- the cache

class ProfileCache:
    """Profiles by key: a bounded in-memory LRU, and a directory of pickles if set.

    Counters: `hits` (`disk_hits` of them read from the directory), `misses`,
    `uncacheable` (calls whose key could not be made); `stats()` adds `entries`, `bytes`
    (the in-memory entries' pickled size, measured once per entry when first asked) and
    `disk_entries`."""

    def __init__(self, maxsize: int = DEFAULT_SIZE, directory=None, enabled: bool = True):
        self.maxsize = int(maxsize)
        self.directory = os.fspath(directory) if directory is not None else None
        self.enabled = enabled
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._pinned: set = set()  # settings configure() made, not the environment's
        self.hits = self.disk_hits = self.misses = self.uncacheable = 0

    def configure(self, maxsize=None, directory=_UNSET, enabled=None) -> "ProfileCache":
        """Change the size bound (evicting the oldest entries), the directory (None: memory
        only) or turn the cache off/on; returns the cache. What is set here is no longer
        taken from the environment (see `profile_cache`)."""
        self._set(maxsize, directory, enabled)
        self._pinned.update(k for k, v in (("maxsize", maxsize), ("enabled", enabled))
                            if v is not None)
        if directory is not _UNSET:
            self._pinned.add("directory")
        return self

    def _set(self, maxsize=None, directory=_UNSET, enabled=None):
        with self._lock:
            if maxsize is not None:
                self.maxsize = int(maxsize)
                self._evict()
            if directory is not _UNSET:
                self.directory = os.fspath(directory) if directory is not None else None
            if enabled is not None:
                self.enabled = bool(enabled)

    def get(self, key: str, outputs: bool = True):
        """The cached Profile for `key` (a copy sharing program and timeline; outputs
        rebuilt as placeholders unless `outputs=False`), or None. Counts a hit or miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        from_disk = False
        if entry is None and self.directory is not None:
            entry = self._read(key)
            if entry is not None:
                from_disk = True
                with self._lock:
                    self._insert(key, entry)
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self.disk_hits += from_disk
        return CachedProfile(entry, key, outputs)

    def put(self, key: str, prof) -> None:
        """Store a profile: not its run and outputs, only the outputs' types, shapes and
        dtypes (summary and insights are computed before a disk write, else when first
        needed)."""
        entry = _Entry.of(prof)
        with self._lock:
            self._insert(key, entry)
        if self.directory is not None:
            self._write(key, entry.pickled())

    def note_uncacheable(self) -> None:
        with self._lock:
            self.uncacheable += 1

    def clear(self, disk: bool = True) -> None:
        """Drop every entry and reset the counters; with `disk`, also delete the
        directory's entries."""
        with self._lock:
            self._entries.clear()
            self.hits = self.disk_hits = self.misses = self.uncacheable = 0
        if disk and self.directory is not None and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.endswith(".pkl"):
                    try:
                        os.remove(os.path.join(self.directory, name))
                    except OSError:
                        pass

    def stats(self) -> dict:
        with self._lock:
            out = {"hits": self.hits, "disk_hits": self.disk_hits, "misses": self.misses,
                   "uncacheable": self.uncacheable, "entries": len(self._entries),
                   "bytes": sum(e.size() for e in self._entries.values()),
                   "maxsize": self.maxsize, "directory": self.directory,
                   "enabled": self.enabled}
        d = self.directory
        out["disk_entries"] = (sum(n.endswith(".pkl") for n in os.listdir(d))
                               if d is not None and os.path.isdir(d) else 0)
        return out

    def __len__(self):
        return len(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def __repr__(self):
        s = self.stats()
        return (f"<ProfileCache {s['entries']}/{s['maxsize']} entries, {s['bytes']} bytes, "
                f"{s['hits']} hits, {s['misses']} misses"
                + (f", disk {s['directory']}" if s["directory"] else "")
                + ("" if s["enabled"] else ", off") + ">")

    # -- internals (called with the lock held where noted)
    def _insert(self, key, entry):  # lock held
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._evict()

    def _evict(self):  # lock held
        while len(self._entries) > max(self.maxsize, 0):
            self._entries.popitem(last=False)

    def _path(self, key):
        return os.path.join(self.directory, key + ".pkl")

    def _read(self, key):
        try:
            with open(self._path(key), "rb") as f:
                entry = pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception:  # written by another trnsim version, or truncated: a miss
            return None
        if not isinstance(entry, _Entry) or entry.format != _FORMAT:
            return None
        return entry

    def _write(self, key, blob):
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{self._path(key)}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, self._path(key))  # readers never see a partial file


class _Entry:
    """What is kept of a profile: a Profile without run and outputs (summary and insights
    computed when first needed, then kept) and the outputs' skeleton."""

    format = _FORMAT

    def __init__(self, kept, skeleton):
        self.kept = kept
        self.skeleton = skeleton
        self.nbytes = None

    @classmethod
    def of(cls, prof) -> "_Entry":
        kept = Profile(prof.program, prof.timeline, None, None, prof.name)
        kept.__dict__.update({k: prof.__dict__[k] for k in ("summary", "all_insights")
                              if k in prof.__dict__})
        return cls(kept, _skeleton(prof.outputs))

    def pickled(self) -> bytes:
        self.kept.summary  # noqa: B018 - a disk entry carries them
        self.kept.all_insights  # noqa: B018
        blob = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        self.nbytes = len(blob)
        return blob

    def size(self) -> int:
        if self.nbytes is None:
            self.nbytes = len(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        return self.nbytes

    def __getstate__(self):
        return {"format": self.format, "kept": self.kept, "skeleton": self.skeleton}

    def __setstate__(self, state):
        self.format = state.get("format")
        self.kept = state.get("kept")
        self.skeleton = state.get("skeleton")
        self.nbytes = None


class CachedProfile(Profile):
    """A cache hit: the entry's program and timeline (shared: read them, do not change
    them); its summary and insights are computed once per entry and copied."""

    def __init__(self, entry: _Entry, key: str, outputs=True):
        kept = entry.kept
        super().__init__(kept.program, kept.timeline,
                         _rebuild(entry.skeleton) if outputs else None, None, kept.name)
        self._kept = kept
        self.cache, self.cache_key = "hit", key

    @cached_property
    def summary(self) -> dict:
        return dict(self._kept.summary)

    @cached_property
    def all_insights(self) -> list:
        return list(self._kept.all_insights)


def _skeleton(x):
    """The types, shapes and dtypes of a kernel's outputs (None if not describable)."""
    if x is None:
        return ("none",)
    if isinstance(x, (tuple, list)):
        parts = [_skeleton(v) for v in x]
        return None if None in parts else (type(x).__name__, parts)
    if type(x).__module__ == "numpy" and hasattr(x, "shape"):
        return ("numpy", tuple(x.shape), x.dtype)
    if type(x).__module__.startswith("torch") and hasattr(x, "shape"):
        return ("torch", tuple(x.shape), str(x.dtype).removeprefix("torch."))
    return None


def _rebuild(skel):
    if skel is None or skel[0] == "none":
        return None
    kind = skel[0]
    if kind in ("tuple", "list"):
        parts = [_rebuild(s) for s in skel[1]]
        return tuple(parts) if kind == "tuple" else parts
    if kind == "numpy":
        import numpy as np
        return np.zeros(skel[1], skel[2])
    import torch
    return torch.zeros(skel[1], dtype=getattr(torch, skel[2]))


# ---------------------------------------------------------------- the process-wide cache

_default = ProfileCache(DEFAULT_SIZE)


def profile_cache(**settings) -> ProfileCache:
    """The process-wide cache `trnsim.profile` and autosave use. It follows
    $TRNSIM_PROFILE_CACHE and $TRNSIM_PROFILE_CACHE_SIZE, read at each call like the other
    TRNSIM_* variables, except for what `configure` (or keyword arguments here:
    `maxsize`, `directory`, `enabled`) set."""
    if settings:
        _default.configure(**settings)
    value = os.environ.get(ENV, "").strip()
    size = os.environ.get(SIZE_ENV, "").strip()
    env = {"enabled": value.lower() not in _OFF,
           "directory": (None if value.lower() in _OFF + _MEMORY else os.path.expanduser(value)),
           "maxsize": int(size) if size.isdigit() else DEFAULT_SIZE}
    changed = {k: v for k, v in env.items()
               if k not in _default._pinned and getattr(_default, k) != v}
    if changed:
        _default._set(**changed)
    return _default


def active_cache(cache, numerics: bool) -> ProfileCache | None:
    """The cache a `trnsim.profile(..., cache=cache)` call uses, or None.
    None: the process-wide cache for timing-only calls; True: the process-wide cache
    whatever `numerics` says (outputs not needed); False: none; a ProfileCache: that."""
    if cache is False:
        return None
    if isinstance(cache, ProfileCache):
        return cache if cache.enabled else None
    if cache is None and numerics:
        return None
    if cache is not None and cache is not True:
        raise TypeError(f"cache={cache!r}: expected None, True, False or a ProfileCache")
    c = profile_cache()
    return c if c.enabled else None


# ---------------------------------------------------------------- keys

def kernel_key(fn, args, kwargs, *, chip, lnc, numerics, strict, order, legacy=None) -> str:
    """The key of a `trnsim.profile` call (see the module docstring for what it holds).
    `chip` is a Chip; `legacy` is None or (grid, force_auto_alloc). Raises Uncacheable."""
    h = hashlib.sha256()
    _update(h, ("trnsim", _simulator_digest(), _scheduler_name(), "chip", _chip_digest(chip),
                "lnc", int(lnc), "numerics", bool(numerics), "strict", bool(strict),
                "order", str(order), "legacy", _describe(legacy)))
    _update(h, ("kernel", _function_digest(fn)))
    _update(h, ("args", _describe(tuple(args)), "kwargs", _describe(dict(kwargs or {}))))
    return "k" + h.hexdigest()[:40]


def program_key(program, chip, order: str = "compiler") -> str:
    """The key of scheduling a finished instruction record (autosave)."""
    h = hashlib.sha256()
    _update(h, ("trnsim", _simulator_digest(), _scheduler_name(), "chip", _chip_digest(chip),
                "order", order))
    h.update(pickle.dumps((program.lnc, program.instructions, program.fences, program.issue),
                          protocol=pickle.HIGHEST_PROTOCOL))
    return "p" + h.hexdigest()[:40]


def _update(h, token):
    h.update(repr(token).encode())
    h.update(b"\0")


_digests: dict = {}


def _simulator_digest() -> str:
    """A hash of trnsim's own .py and .json files, taken once per process."""
    if "trnsim" not in _digests:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        h = hashlib.sha256()
        for d, dirs, files in os.walk(root):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            for f in sorted(files):
                if f.endswith((".py", ".json")):
                    p = os.path.join(d, f)
                    h.update(os.path.relpath(p, root).encode() + b"\0")
                    with open(p, "rb") as fh:
                        h.update(fh.read())
        _digests["trnsim"] = h.hexdigest()
    return _digests["trnsim"]


def _scheduler_name() -> str:
    from .. import timing
    s = timing.schedule
    return f"{getattr(s, '__module__', '')}.{getattr(s, '__qualname__', repr(s))}"


_chips: dict = {}  # id -> (chip, digest); the chip kept alive so its id stays its own


def _chip_digest(chip) -> str:
    hit = _chips.get(id(chip))
    if hit is not None and hit[0] is chip:
        return hit[1]
    data = {f.name: getattr(chip, f.name) for f in dataclasses.fields(chip)
            if f.name not in ("sources", "path")}
    digest = hashlib.sha256(repr(data).encode()).hexdigest()
    _chips[id(chip)] = (chip, digest)
    return digest


_files: dict = {}  # path -> ((mtime_ns, size), sha256)


def _file_digest(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None  # exec'd or generated code: its code object is the whole source
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _files.get(path)
    if hit is None or hit[0] != stamp:
        with open(path, "rb") as f:
            hit = _files[path] = (stamp, hashlib.sha256(f.read()).hexdigest())
    return hit[1]


def _function_digest(fn) -> str:
    """The kernel's code and everything of the user's it names (see module docstring)."""
    h = hashlib.sha256()
    seen: set = set()
    todo = [unwrap(fn)]
    while todo:
        f = todo.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        if not isinstance(f, types.FunctionType):
            raise Uncacheable(f"kernel {f!r} is not a Python function")
        code = f.__code__
        _update(h, _code_token(code))
        _update(h, (f.__qualname__, _file_digest(code.co_filename)))
        _update(h, _describe_value(f.__defaults__, todo))
        _update(h, _describe_value(f.__kwdefaults__, todo))
        for cell in f.__closure__ or ():
            try:
                _update(h, _describe_value(cell.cell_contents, todo))
            except ValueError:  # an empty cell
                _update(h, "<empty>")
        glb = f.__globals__
        for name in sorted(code_names(code)):
            if name in glb:
                _update(h, (name, _describe_value(glb[name], todo)))
    return h.hexdigest()


def _code_token(co):
    """A code object by content (marshal's bytes depend on reference counts, so they
    differ between processes): bytecode, constants, names, line table."""
    consts = tuple(_code_token(c) if isinstance(c, types.CodeType)
                   else ("frozenset", sorted(map(repr, c))) if isinstance(c, frozenset)
                   else (type(c).__name__, repr(c)) for c in co.co_consts)
    return (co.co_code, consts, co.co_names, co.co_varnames, co.co_freevars,
            co.co_cellvars, co.co_argcount, co.co_posonlyargcount, co.co_kwonlyargcount,
            co.co_flags, co.co_filename, co.co_name, co.co_firstlineno,
            getattr(co, "co_linetable", None) or co.co_lnotab)


def _describe_value(v, todo):
    """A global, default or closure value of the kernel: user functions and kernels are
    queued for hashing; anything else described, by name when it has no value form."""
    inner = unwrap(v)
    if is_user_function(inner):
        todo.append(inner)
        return ("function", inner.__module__, inner.__qualname__)
    try:
        return _describe(v)
    except Uncacheable:
        return ("object", type(v).__module__, type(v).__qualname__)


_SCALARS = (bool, int, float, complex, str, bytes, type(None), type(Ellipsis), range, slice)


def _describe(v):
    """An argument as a hashable, repr-stable token: arrays by type, shape and dtype."""
    if isinstance(v, _SCALARS):
        return (type(v).__name__, repr(v))
    if isinstance(v, enum.Enum):
        return ("enum", type(v).__module__, type(v).__qualname__, v.name)
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_describe(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((repr(k), _describe(x)) for k, x in v.items())))
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, type)):
        return ("named", getattr(v, "__module__", None), getattr(v, "__qualname__", None))
    if isinstance(v, types.ModuleType):
        return ("module", v.__name__)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.generic):
            return ("np", v.dtype.name, repr(v.item()))
        if isinstance(v, np.dtype):
            return ("dtype", v.name)
    shape = getattr(v, "shape", None)
    if shape is not None and hasattr(v, "dtype"):
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise Uncacheable(f"argument {type(v).__name__} has shape {shape!r}") from None
        return ("array", type(v).__module__, type(v).__qualname__, dims, str(v.dtype))
    if type(v).__module__.split(".")[0] == "trnsim" and type(v).__repr__ is not object.__repr__:
        return ("trnsim", type(v).__qualname__, repr(v))  # nl.bfloat16 and the like
    raise Uncacheable(f"argument of type {type(v).__module__}.{type(v).__qualname__}")
