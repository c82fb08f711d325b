"""What a loop body changes besides the record, as loop expansion (machine/expand.py)
watches it: the loop frame's locals and the globals its code names, deep enough to see
a change through containers, objects, arrays and iterators; the lists that grow by the
iteration's tensors; the tensors carried from one iteration to the next; and the copies
of an iteration's tensors over another iteration's allocations."""
from __future__ import annotations

import collections.abc
import copy
import copyreg
import ctypes
import itertools
import operator
import sys
import types

import numpy as np

from .tensor import NkiTensor

PLAIN = (str, bool, float, type(None))  # compared by value
_OPAQUE = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
           type)
_MISSING = object()
_DEPTH = 3  # how far into containers and objects
_ITEMS = 64  # items of a container looked into
_IDS = 4096  # items of a list or tuple compared by identity


def frame_values(frame, before: dict | None = None):
    """The frame's state that expansion must see unchanged or affine: ints as numbers;
    lists ({name: (list, length, ids of the items)}) may grow by the iteration's tensors;
    tensors ({name: tensor}) may be carried from one iteration to the next; everything
    else, and the globals its code names, by value (`_state`), so that a change
    declines. Modules, functions and classes are left out. An object bound to another
    object than at the state `before` (the previous one's values) is stated by its
    identity alone: one rebound at every state is left out (`rebound_locals`), and one
    rebound at some declines by its identity already. Also returns those objects: a
    state that holds them keeps their identities from being those of later objects."""
    out, lists, tensors, held = {}, {}, {}, []
    if frame is None:
        return out, lists, tensors, held
    classes = {}  # (see _state)
    for k, v in frame.f_locals.items():
        t = type(v)
        if t is int:
            out[k] = v
            continue
        if t is NkiTensor:  # (what the branches below do for them, without their checks)
            tensors[k] = v
            continue
        if t is list:
            lists[k] = _list_state(v)
            out[k] = _ITEMLESS if _ONLY_TILES.issuperset(map(type, v[:_ITEMS])) \
                else _list_items(v, classes)
            continue
        if _is_plain(t):
            attrs = v.__dict__
            if type(attrs) is dict and attrs:
                if isinstance(attrs.get("core"), NkiTensor):  # (tensor_core)
                    _TENSORS.add(t)
                    tensors[k] = v
                    continue
                out[k] = ("object", id(v), None if _rebound(before, k, v)
                          else _plain_state(t, attrs, classes))
                held.append(v)
                continue
        if tensor_core(v) is not None:
            tensors[k] = v
        elif type(v) in PLAIN or type(v) is bytes:
            out[k] = ("=", v)
        elif not isinstance(v, _OPAQUE):
            out[k] = ("object", id(v), None if _rebound(before, k, v)
                      else _state(v, _DEPTH, classes))
            held.append(v)
    glb = frame.f_globals
    for name in frame.f_code.co_names:
        v = glb.get(name, _MISSING)
        if v is _MISSING:  # an attribute's name, a builtin
            continue
        if isinstance(v, type) and not v.__module__.startswith(("trnsim.", "builtins")):
            out["class " + name] = ("class", tuple(  # a class attribute changing declines
                (a, _state(x, 1, classes)) for a, x in vars(v).items()
                if not isinstance(x, _OPAQUE)
                and not a.startswith("__")))
        elif type(v) is int:  # an int's state is itself (no _state call)
            out["global " + name] = ("global", v)
        elif not isinstance(v, _OPAQUE) and tensor_core(v) is None:  # a global changing declines
            out["global " + name] = ("global", _state(v, _DEPTH, classes))
    return out, lists, tensors, held


_ONLY_TILES = frozenset((NkiTensor,))
_ITEMLESS = ("list items", ())  # a list of tiles only (tiles have no item state)


def _list_items(v: list, classes: dict) -> tuple:
    """The state of a list's first items but its tensors (`frame_values`)."""
    return ("list items", tuple(_state(x, _DEPTH - 1, classes) for x in v[:_ITEMS]
                                if type(x) is not NkiTensor and tensor_core(x) is None))


def frame_lists(frame) -> dict:
    """The frame's lists as `frame_values` states them ({name: (list, length, ids of the
    items)}), alone."""
    return {k: _list_state(v) for k, v in frame.f_locals.items() if type(v) is list}


def frame_tensors(frame) -> dict:
    """The frame's tensors as `frame_values` states them ({name: tensor}), alone."""
    return {k: v for k, v in frame.f_locals.items()
            if type(v) in _TENSORS or type(v) not in _BY_VALUE and tensor_core(v) is not None}


def _list_state(v: list) -> tuple:
    return v, len(v), tuple(map(id, v))


def _state(v, depth: int, classes: dict):
    """A value's state, deep enough to see what a loop body changes through it: numbers
    and strings by value, containers by their items, objects by their attributes,
    arrays by their bytes, generators by where they are; tensors by identity.
    `classes`: type -> its plain class attributes, read once per state of the frame
    (nothing runs between its objects' reads that could set one; a frame holds a dozen
    objects of a class such as the legacy Index, whose class dict is most of the cost)."""
    t = type(v)
    if t in _BY_VALUE:
        return v
    if depth > 0 and _is_plain(t):  # (the common case below, without its checks)
        attrs = v.__dict__
        if attrs and type(attrs) is dict and not isinstance(attrs.get("core"), NkiTensor):
            return _plain_state(t, attrs, classes)
    if depth <= 0 or isinstance(v, (_OPAQUE, range)) or tensor_core(v) is not None:
        return ("id", id(v))
    if t.__module__.startswith("trnsim."):  # trnsim's own objects: their plain attributes
        depth = 1
    if isinstance(v, (list, tuple)):  # (tensor items: by the identities alone)
        return (t.__name__, len(v), tuple(map(id, v[:_IDS])),
                tuple(_state(x, depth - 1, classes) for x in v[:_ITEMS]
                      if type(x) not in _TENSORS))
    if isinstance(v, dict):
        return ("dict", tuple((_state(a, 1, classes), _state(b, depth - 1, classes))
                              for a, b in list(v.items())[:_ITEMS]), len(v))
    if isinstance(v, (set, frozenset)):
        return ("set", len(v), frozenset(map(id, v)))
    if isinstance(v, np.ndarray):  # (a large array by a sample of its bytes)
        flat = v.reshape(-1).view(np.uint8) if v.flags.c_contiguous else None
        data = v.tobytes() if v.nbytes <= 1 << 20 or flat is None else \
            flat[::max(1, flat.size // (1 << 16))].tobytes()
        return ("array", id(v), v.shape, str(v.dtype), hash(data))
    if isinstance(v, types.GeneratorType):
        f = v.gi_frame
        return ("generator", id(v), None if f is None else f.f_lasti,
                None if f is None else _state(dict(f.f_locals), depth - 1, classes))
    attrs = getattr(v, "__dict__", None)
    slots = _SLOTS.get(t)
    if slots is None:
        slots = _SLOTS[t] = tuple(a for c in t.__mro__ for a in getattr(c, "__slots__", ()))
    own = list(attrs.items() if isinstance(attrs, dict) else ()) + \
        [(a, getattr(v, a)) for a in slots if hasattr(v, a)]
    if own:  # (objects of builtin types such as partial have an empty __dict__)
        shared = _shared(t, classes)  # (plain values: their own states)
        if depth == 1:  # (the attributes' _state at depth 0, inline: a common case)
            return (t.__name__, tuple([(a, x if type(x) in _BY_VALUE else ("id", id(x)))
                                       for a, x in own]) + shared)
        return (t.__name__, tuple([(a, _state(x, depth - 1, classes))
                                   for a, x in own]) + shared)
    if isinstance(v, (collections.abc.Sequence, collections.abc.Set, bytearray)) \
            or t.__name__ == "deque":  # other containers: their items
        items = list(itertools.islice(v, _ITEMS))
        return (t.__name__, len(v), tuple(_state(x, depth - 1, classes) for x in items))
    try:  # builtin iterators, partials, ...: what would pickle them (where they are)
        parts = v.__reduce__()[1:]
    except Exception:  # noqa: BLE001 - no reduced form: by identity
        return ("id", id(v))
    return (t.__name__, id(v), tuple(_state(p, depth, classes) for p in parts))


_SLOTS: dict = {}  # type -> the slot names of its classes


def _shared(t: type, classes: dict) -> tuple:
    """The class attributes of `t` a body may set (plain values), read once per state
    of the frame (`classes`)."""
    shared = classes.get(t)
    if shared is None:
        shared = classes[t] = tuple([(a, x) for a, x in vars(t).items()
                                     if type(x) in _SHARED_TYPES])
    return shared


_SHARED_TYPES = frozenset((*PLAIN, int))  # class attributes stated by value


_PLAIN_OBJECTS: dict = {}  # type -> _plain_object's answer


def _is_plain(t: type) -> bool:
    """_plain_object(t), kept per type."""
    plain = _PLAIN_OBJECTS.get(t)
    if plain is None:
        plain = _PLAIN_OBJECTS[t] = _plain_object(t)
    return plain


def _plain_state(t: type, attrs: dict, classes: dict) -> tuple:
    """The state of an object of a plain type `t` (_plain_object) by its dict `attrs`:
    what _state gives at depth 1."""
    return (t.__name__, tuple([(a, x if type(x) in _BY_VALUE else ("id", id(x)))
                               for a, x in attrs.items()]) + _shared(t, classes))


def _rebound(before: dict | None, k: str, v) -> bool:
    """Whether local `k` held another object at the state `before`."""
    old = before.get(k) if before is not None else None
    return type(old) is tuple and old[0] == "object" and old[1] != id(v)


def _plain_object(t: type) -> bool:
    """Whether `_state` states every object of type `t` with a nonempty __dict__ (and no
    tensor as its `core`) by that dict at depth 1: trnsim's own types, but for tensors,
    containers and the types it states otherwise, and those with slots."""
    return (t.__module__.startswith("trnsim.")
            and not issubclass(t, (NkiTensor, *_OPAQUE, range, list, tuple, dict, set,
                                   frozenset, np.ndarray, types.GeneratorType))
            and not any("__slots__" in vars(c) for c in t.__mro__[:-1]))


_BY_VALUE = frozenset((*PLAIN, int, bytes))  # what _state returns as it is


def hashable(v):
    try:
        hash(v)
        return v
    except TypeError:
        return id(v)


def set_locals(frame, values: dict) -> None:
    if frame is None or not values:
        return
    if sys.version_info >= (3, 13):  # PEP 667: f_locals writes through
        for k, v in values.items():
            frame.f_locals[k] = v
        return
    loc = frame.f_locals
    loc.update(values)
    ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))


def rebound_locals(marks) -> set:
    """The frame's locals bound to a new object at each mark (like its tensors, the last
    iteration rebinds them)."""
    out = set()  # (marks hold the objects: an id is not that of a dead one)
    later = [m.locals for m in marks[1:]]
    for k, v in marks[0].locals.items():
        if type(v) is tuple and v and v[0] == "object":
            was = v[1]
            for loc in later:
                now = loc.get(k, _NO_OBJECT)[1]
                if now == was:
                    break
                was = now
            else:
                out.add(k)
    return out


_NO_OBJECT = (None, None)


def _made_between(x, m0, m1):
    """The signature of tensor object `x` as one made between marks m0 and m1 (its type,
    position among their allocations, view), or None when it is not such a tensor or
    cannot be copied over another iteration's allocations (an indirect view; a lazily
    filled block, whose pending fills are its own)."""
    t = tensor_core(x)
    aid = t.storage.alloc if t is not None else -1
    if not m0.allocations <= aid < m1.allocations or t.dyn is not None \
            or t.storage.lazy_fill:
        return None
    return type(x), aid - m0.allocations, t.shape, t.strides, t.offset, str(t.dtype)


def growing_lists(marks, names):
    """[(list, the tensors its last sampled iteration appended)] for the frame's lists
    that grow; None when one grows by anything but tensors over the allocations of the
    iteration that appended them (always at the same position among them)."""
    out = []
    for name in names:
        lst = marks[0].lists[name][0]
        shapes = set()
        for m0, m1 in zip(marks, marks[1:]):
            lo, hi = m0.lists[name][1], m1.lists[name][1]
            if hi < lo or m1.lists[name][2][:lo] != m0.lists[name][2]:
                return None  # items removed or replaced
            shape = tuple(_made_between(x, m0, m1) for x in lst[lo:hi])
            if None in shape:
                return None
            shapes.add(shape)
        if len(shapes) > 1:
            return None
        lo, hi = marks[-2].lists[name][1], marks[-1].lists[name][1]
        if hi > lo:
            out.append((lst, list(lst[lo:hi])))
    return out


def carried_tensors(marks):
    """[(local, its tensor at the last mark)] for the frame's tensors that each iteration
    rebinds to a tensor it made (at the same position among its allocations): the next
    iteration may read them (`acc = nl.add(acc, t)`), so before the last iteration
    they are made over the allocations of the expanded iteration before it."""
    out = []
    for name, x in marks[-1].tensors.items():
        seen = [m.tensors.get(name) for m in marks]
        if all(v is x for v in seen):
            continue  # the same tensor throughout
        shapes = {_made_between(v, m0, m1) for m0, m1, v in zip(marks, marks[1:], seen[1:])}
        if len(shapes) == 1 and None not in shapes:
            out.append((name, x))
    return out


def tensor_core(x):
    """The NkiTensor of a tensor object of either front end (a legacy LTensor holds one
    as its `core` attribute), or None. (Only an instance attribute: a property such as
    a pending legacy result's would run it.)"""
    if isinstance(x, NkiTensor):
        return x
    d = getattr(x, "__dict__", None)
    core = d.get("core") if type(d) is dict else None
    if isinstance(core, NkiTensor):
        _TENSORS.add(type(x))
        return core
    return None


_TENSORS = {NkiTensor}  # the tensor types seen (skipped fast in containers' items)


def retarget(x, ids: dict, storages: dict):
    """A copy of tensor object `x` over the allocation `ids` maps its own to (copies of
    one storage shared through `storages`)."""
    t = tensor_core(x)
    st = storages.get(id(t.storage))
    if st is None:
        st = storages[id(t.storage)] = copied_storage(t.storage)
        st.alloc = ids[t.storage.alloc]
    return over_storage(x, st)


def copied_storage(st):
    """A copy of storage `st` with PSUM boxes written of its own, not the original's."""
    own = _copy(st)
    if "written_boxes" in own.__dict__:
        own.written_boxes = set(own.written_boxes)
    return own


def over_storage(x, st):
    """A copy of tensor object `x` over storage `st`."""
    t = tensor_core(x)
    nt = _copy(t)
    nt.storage = st
    if t is x:
        return nt
    y = _copy(x)
    y.core = nt
    return y


def retarget_block(x, columns: dict, storages: dict) -> list:
    """`retarget` for a block of iterations at once: copies of tensor object `x`, the
    r-th over allocation `columns[a][r]` where `x`'s own is `a` (the copies of one
    storage shared through `storages`: its id -> its copies)."""
    t = tensor_core(x)
    sts = storages.get(id(t.storage))
    if sts is None:
        sts = storages[id(t.storage)] = _copies(t.storage, "alloc", columns[t.storage.alloc])
        if "written_boxes" in t.storage.__dict__:
            for st in sts:
                st.written_boxes = set(st.written_boxes)
    copies = _copies(t, "storage", sts)
    return copies if t is x else _copies(x, "core", copies)


def _copies(x, name: str, values: list) -> list:
    """A copy of `x` (`_copy`) for each of `values`, its attribute `name` set to it."""
    t = type(x)
    if _plain_copy(t):
        out = list(map(object.__new__, itertools.repeat(t, len(values))))
        collections.deque(map(dict.update, map(_DICT, out), itertools.repeat(x.__dict__)),
                          maxlen=0)
    else:
        out = [copy.copy(x) for _ in values]
    collections.deque(map(setattr, out, itertools.repeat(name), values), maxlen=0)
    return out


_DICT = operator.attrgetter("__dict__")
_PLAIN_COPY: dict = {}  # type -> whether copy.copy would copy its __dict__ alone


def _copy(x):
    """copy.copy(x), without its reduce protocol for objects whose state is their
    __dict__ (what it would do for them: a new object of the type, the dict copied)."""
    t = type(x)
    if not _plain_copy(t):
        return copy.copy(x)
    y = object.__new__(t)
    y.__dict__.update(x.__dict__)
    return y


def _plain_copy(t: type) -> bool:
    """Whether copy.copy would copy an object of type `t` by its __dict__ alone."""
    plain = _PLAIN_COPY.get(t)
    if plain is None:
        plain = _PLAIN_COPY[t] = (
            t.__reduce_ex__ is object.__reduce_ex__ and t.__reduce__ is object.__reduce__
            and t.__getstate__ is object.__getstate__ and t.__new__ is object.__new__
            and not hasattr(t, "__copy__") and not hasattr(t, "__setstate__")
            and t not in copyreg.dispatch_table
            and not any("__slots__" in vars(c) for c in t.__mro__[:-1]))
    return plain
