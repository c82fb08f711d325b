"""Checks of an API surface against a reference listing (tests/data/nki_api: the public
stubs of each NKI release, parsed into JSON; their sources in tests/data/nki_api/SOURCES.md),
shared by tests/test_api_surface.py and tests/test_legacy_api_surface.py.

Default values are compared through their spelling in the stubs:
- enum members as `<enum class>.<member>` (`reduce_cmd.idle`, `engine.unknown`);
- operator / function defaults by `__name__` (`maximum`, `equal`);
- dtypes and memory regions by `str()` (`uint8`, `sbuf`);
- numbers by value (`1e-06` == 1e-6), other literals by `repr()` (`''`, `()`, `[0]`);
- `...` in the stubs elides a non-literal default: any default is accepted, but one must
  exist.
"""
from __future__ import annotations

import enum
import importlib
import inspect
import json
from pathlib import Path

import pytest

LISTINGS = Path(__file__).parent / "data" / "nki_api"


class Surface:
    """A reference listing and the trnsim modules behind its module names."""

    def __init__(self, filename: str, modules: dict):
        self.path = LISTINGS / filename
        self.modules = modules
        self.spec = json.loads(self.path.read_text())

    def cases(self, kind: str) -> list:
        """One pytest case per name of `kind` (functions, classes, constants)."""
        out = []
        for mod in self.modules:
            section = self.spec.get(mod, {})
            names = sorted(section.get(kind, {}) if kind != "constants"
                           else section.get("constants", []))
            out += [pytest.param(mod, n, id=f"{mod}.{n}") for n in names]
        return out

    def module(self, mod: str):
        return importlib.import_module(self.modules[mod])


def spellings(value) -> set[str]:
    s = {repr(value), str(value)}
    if isinstance(value, enum.Enum):
        s.add(f"{type(value).__name__}.{value.name}")
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        s.add(name)
    if value is Ellipsis:
        s.add("...")
    return s


def default_matches(value, expected: str) -> bool:
    if expected == "...":
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(expected) == float(value)
        except ValueError:
            return False
    return expected in spellings(value)


def describe(p: inspect.Parameter) -> str:
    d = "" if p.default is inspect.Parameter.empty else f"={p.default!r}"
    return f"{p.name}({p.kind.name.lower()}){d}"


def check_signature(fn, expected: list[dict], what: str, matches=default_matches):
    """fn's parameters have exactly the listed names, kinds and defaults."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        pytest.fail(f"{what}: no inspectable signature ({e})")
    params = list(sig.parameters.values())
    got, want = [p.name for p in params], [p["name"] for p in expected]
    assert got == want, (f"{what}: parameters {got}, expected {want} "
                         f"(have: {', '.join(map(describe, params))})")
    for p, e in zip(params, expected):
        assert p.kind.name.lower() == e["kind"], (
            f"{what}: parameter {p.name!r} is {p.kind.name.lower()}, expected {e['kind']}")
        has_default = p.default is not inspect.Parameter.empty
        if "default" not in e:
            assert not has_default, (
                f"{what}: parameter {p.name!r} has default {p.default!r}; the API has none")
        else:
            assert has_default, f"{what}: parameter {p.name!r} needs the default {e['default']}"
            assert matches(p.default, e["default"]), (
                f"{what}: parameter {p.name!r} default {p.default!r} (spelled "
                f"{sorted(spellings(p.default))}) is not {e['default']}")


def check_function(surface: Surface, mod: str, name: str, matches=default_matches):
    m = surface.module(mod)
    assert hasattr(m, name), f"{mod}.{name} is missing"
    fn = getattr(m, name)
    assert callable(fn), f"{mod}.{name} is not callable ({fn!r})"
    check_signature(fn, surface.spec[mod]["functions"][name], f"{mod}.{name}", matches)


def check_class_shape(surface: Surface, mod: str, name: str, instance=None):
    """The class exists, derives from the listed bases and has the listed members
    (looked up on the class, else on `instance(cls)`). Returns (cls, spec)."""
    m = surface.module(mod)
    assert hasattr(m, name), f"class {mod}.{name} is missing"
    cls = getattr(m, name)
    assert inspect.isclass(cls), f"{mod}.{name} is not a class ({cls!r})"
    spec = surface.spec[mod]["classes"][name]
    mro = [c.__name__ for c in cls.__mro__]
    for base in spec.get("bases", []):
        assert base in mro, f"{mod}.{name} must derive from {base} (its MRO: {mro})"
    missing = [mem for mem in spec.get("members", []) if not hasattr(cls, mem)]
    if missing and instance is not None:
        inst = instance(cls)
        missing = [mem for mem in missing if inst is None or not hasattr(inst, mem)]
    assert not missing, f"{mod}.{name} lacks members {missing}"
    return cls, spec


def check_constant(surface: Surface, mod: str, name: str):
    assert hasattr(surface.module(mod), name), f"constant {mod}.{name} is missing"
