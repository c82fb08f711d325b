"""The user's code a kernel runs: the kernel function and the plain Python functions it
names (its helpers and sub-kernels), transitively, from outside trnsim's machinery and
the Python installation. The kernel-profile cache hashes them; loop expansion lets
their plain `range` loops expand."""
from __future__ import annotations

import os
import sysconfig
import types

from .errors import _USER_DIRS

_dirs: list = []


def library_dirs() -> tuple:
    """trnsim's own package and the Python installation (stdlib, site-packages)."""
    if not _dirs:
        paths = sysconfig.get_paths()
        dirs = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # trnsim
        dirs.update(os.path.abspath(paths[k]) for k in ("stdlib", "platstdlib", "purelib",
                                                        "platlib") if k in paths)
        _dirs.append(tuple(d + os.sep for d in sorted(dirs)))
    return _dirs[0]


def is_user_function(f) -> bool:
    """A plain Python function whose code is the user's: not trnsim's machinery (kernels
    shipped with trnsim are user code) nor a library's."""
    code = getattr(f, "__code__", None)
    if not isinstance(f, types.FunctionType) or code is None:
        return False
    path = os.path.abspath(code.co_filename)
    return path.startswith(_USER_DIRS) or not path.startswith(library_dirs())


def unwrap(v):
    """The function inside a kernel wrapper (nki.jit Kernel, Simulated, legacy kernels)."""
    for _ in range(4):
        inner = getattr(v, "fn", None) or getattr(getattr(v, "kernel", None), "fn", None)
        if inner is None or inner is v:
            break
        v = inner
    return v


def code_names(code) -> set:
    """Every global name a code object (and the code nested in it) refers to."""
    names, stack = set(), [code]
    while stack:
        co = stack.pop()
        names.update(co.co_names)
        stack.extend(k for k in co.co_consts if isinstance(k, types.CodeType))
    return names


def user_functions(fn) -> list:
    """`fn` and the user functions it reaches through the globals it names, its closure
    and its defaults, transitively."""
    out, seen, todo = [], set(), [unwrap(fn)]
    while todo:
        f = todo.pop()
        if id(f) in seen or not is_user_function(f):
            continue
        seen.add(id(f))
        out.append(f)
        values = [f.__globals__[n] for n in code_names(f.__code__) if n in f.__globals__]
        for cell in f.__closure__ or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        values += list(f.__defaults__ or ()) + list((f.__kwdefaults__ or {}).values())
        todo.extend(unwrap(v) for v in values if callable(v))
    return out
