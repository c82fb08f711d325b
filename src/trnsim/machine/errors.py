"""Errors that speak the kernel author's language: the op, the operand, the limit,
and the kernel's own file:line (the first stack frame outside trnsim's machinery)."""
from __future__ import annotations

import linecache
import os
import sys
import warnings
from dataclasses import dataclass

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Kernels shipped with trnsim are user code as far as locations go.
_USER_DIRS = tuple(os.path.join(_PKG_DIR, d) + os.sep for d in ("kernels",))


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int
    function: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def text(self) -> str:
        return linecache.getline(self.file, self.line).strip()


def _is_machinery(path: str) -> bool:
    return path.startswith(_PKG_DIR + os.sep) and not path.startswith(_USER_DIRS)


_SKIPPED: dict = {}  # code file name -> whether kernel_location passes over its frames
# (file, line, function) -> its SourceLocation: one object per kernel line, made once
# (a frozen dataclass costs more to build than the whole frame walk)
_LOCATIONS: dict = {}
# (id of a code object, offset of one of its instructions) -> (the code object, kept
# alive so that its id is not reused, and the instruction's SourceLocation): a frame's
# f_lineno scans its code's line table up to the instruction (~1 us in the middle of a
# 50-line kernel function)
_SITES: dict = {}
_SITES_MAX = 1 << 16  # (the sites kept: the memo starts over past this)


def kernel_location(skip: int = 1) -> SourceLocation | None:
    """The innermost stack frame that belongs to the kernel (not to trnsim)."""
    f = sys._getframe(skip)
    skipped = _SKIPPED
    while f is not None:
        code = f.f_code
        name = code.co_filename
        s = skipped.get(name)
        if s is None:
            path = os.path.abspath(name)
            s = skipped[name] = _is_machinery(path) or path.startswith("<frozen")
        if not s:
            site = (id(code), f.f_lasti)
            hit = _SITES.get(site)
            if hit is not None and hit[0] is code:
                return hit[1]
            key = (name, f.f_lineno, code.co_name)
            loc = _LOCATIONS.get(key)
            if loc is None:
                loc = _LOCATIONS[key] = SourceLocation(*key)
            if len(_SITES) >= _SITES_MAX:
                _SITES.clear()
            _SITES[site] = (code, loc)
            return loc
        f = f.f_back
    return None


def interned(loc: SourceLocation) -> SourceLocation:
    """The one SourceLocation kept for `loc`'s place (kernel_location's), so that keys
    holding locations can compare them by identity (a dataclass's __eq__ runs Python
    code)."""
    return _LOCATIONS.setdefault((loc.file, loc.line, loc.function), loc)


def _issue_site():
    """The kernel line of a deferred instruction running now (legacy results), if any."""
    from . import runtime
    run = runtime.current_run()
    return run.issue_site if run is not None else None


def _where(loc: SourceLocation | None) -> str:
    if loc is None:
        return ""
    text = loc.text
    return f"\n  at {loc}" + (f": {text}" if text else "")


class NkiValidationError(Exception):
    """An instruction or tensor operation broke a hardware or API rule.
    `op` names the instruction and `location` the kernel line that issued it."""

    def __init__(self, message: str, op: str | None = None,
                 location: SourceLocation | None = None):
        self.op = op
        self.location = location if location is not None else _issue_site() or kernel_location(2)
        self.bare_message = message
        prefix = f"{op}: " if op else ""
        super().__init__(prefix + message + _where(self.location))


class CapacityError(NkiValidationError):
    """SBUF or PSUM cannot hold the tensors the kernel keeps live."""


class OutOfBoundsError(NkiValidationError):
    """An access reaches outside its tensor."""


class UninitializedReadError(NkiValidationError):
    """Strict mode: an instruction read memory no instruction had written."""


class UnsupportedError(NkiValidationError):
    """The instruction or feature does not exist on the target NeuronCore generation,
    or is not simulated yet."""


class NkiNumericsWarning(UserWarning):
    """A value outside an activation function's documented input range, or a similar
    numerics hazard; strict mode raises instead."""


class UninitializedReadWarning(UserWarning):
    """An instruction read memory no instruction had written (it holds the fill
    pattern, NaN / 4, not data). Given once per kernel run, naming the tensor, the line
    that allocated it and the first line that read it (attributes `tensor`, `op`,
    `allocated_at`, `read_at`: SourceLocations or None, `index`: the first such
    element of the view read); strict mode raises UninitializedReadError instead."""


def numerics_warning(message: str, op: str, strict: bool) -> None:
    loc = kernel_location(2)
    if strict:
        raise NkiValidationError(message, op=op, location=loc)
    warnings.warn(f"{op}: {message}{_where(loc)}", NkiNumericsWarning, stacklevel=3)


def describe(t) -> str:
    """`float32[128, 512] in sbuf 'name'` for error messages."""
    shape = ", ".join(str(s) for s in getattr(t, "shape", ()))
    name = getattr(t, "name", "")
    buf = getattr(t, "buffer", "?")
    label = f" {name!r}" if name else ""
    return f"{getattr(t, 'dtype', '?')}[{shape}] in {buf}{label}"
