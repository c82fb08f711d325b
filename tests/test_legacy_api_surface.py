"""The legacy NKI API surface (`neuronxcc.nki`, NKI 0.1) against the reference list
../shared/reference/nki-api-legacy.json: every function of `nki`, `nki.language`,
`nki.isa`, `nki.compiler`, `nki.compiler.sbuf` and `nki.compiler.psum` exists in trnsim's
legacy front end with exactly the listed parameter names, kinds and defaults; every
class exists with its bases, members and method signatures; every constant exists.
One test case per name.

Default values are compared as tests/test_api_surface.py does (its helpers are reused),
plus the spellings the legacy stubs use:
- `np.X` / `nl.X` defaults (`np.amax`, `np.float32`, `np.uint8`) by the name after the
  module prefix;
- `fp32.min` (range_select's on_false_value) by value: the most negative fp32.
Class "methods" that take only `self` are properties in the stubs (`tensor.shape`,
`tile_size.pmax`, `fp32.min`): a property is checked through its getter, and a plain
class attribute (`tile_size.pmax = 128`) stands in for a property.
"""
from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SPEC_PATH = Path(__file__).parents[2] / "shared/reference/nki-api-legacy.json"
MODULES = {
    "nki": "trnsim.legacy.api",
    "nki.language": "trnsim.legacy.language",
    "nki.isa": "trnsim.legacy.isa",
    "nki.compiler": "trnsim.legacy.compiler",
    "nki.compiler.sbuf": "trnsim.legacy.compiler.sbuf",
    "nki.compiler.psum": "trnsim.legacy.compiler.psum",
}
SPEC = json.loads(SPEC_PATH.read_text()) if SPEC_PATH.exists() else None
needs_spec = pytest.mark.skipif(SPEC is None, reason=f"API reference {SPEC_PATH} is missing "
                                                      "(it lives in ../shared/reference)")


def _current_surface_helpers():
    """tests/test_api_surface.py's normalisation, loaded from its file."""
    name = "_trnsim_test_api_surface_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("test_api_surface.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[name] = mod
    return sys.modules[name]


_base = _current_surface_helpers()
FP32_MIN = float(np.finfo(np.float32).min)


def _default_matches(value, expected: str) -> bool:
    if _base._default_matches(value, expected) or expected in _base._spellings(value):
        return True  # (the second: IntEnum members are ints, but spelled by name)
    if expected == "fp32.min":
        try:
            return float(value) == FP32_MIN
        except (TypeError, ValueError):
            return False
    for prefix in ("np.", "nl.", "numpy."):
        if expected.startswith(prefix):
            return _base._default_matches(value, expected[len(prefix):])
    return False


def _describe(p: inspect.Parameter) -> str:
    d = "" if p.default is inspect.Parameter.empty else f"={p.default!r}"
    return f"{p.name}({p.kind.name.lower()}){d}"


def _check_signature(fn, expected: list[dict], what: str):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        pytest.fail(f"{what}: no inspectable signature ({e})")
    params = list(sig.parameters.values())
    got, want = [p.name for p in params], [p["name"] for p in expected]
    assert got == want, (f"{what}: parameters {got}, expected {want} "
                         f"(have: {', '.join(map(_describe, params))})")
    for p, e in zip(params, expected):
        assert p.kind.name.lower() == e["kind"], (
            f"{what}: parameter {p.name!r} is {p.kind.name.lower()}, expected {e['kind']}")
        has_default = p.default is not inspect.Parameter.empty
        if "default" not in e:
            assert not has_default, (
                f"{what}: parameter {p.name!r} has default {p.default!r}; the API has none")
        else:
            assert has_default, f"{what}: parameter {p.name!r} needs the default {e['default']}"
            assert _default_matches(p.default, e["default"]), (
                f"{what}: parameter {p.name!r} default {p.default!r} (spelled "
                f"{sorted(_base._spellings(p.default))}) is not {e['default']}")


def _static_member(cls, name):
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _check_method(cls, meth, params, what):
    raw = _static_member(cls, meth)
    if raw is None:
        pytest.fail(f"{what} is missing")
    if isinstance(raw, property):
        _check_signature(raw.fget, params, what)
    elif isinstance(raw, (classmethod, staticmethod)):
        _check_signature(raw.__func__, params, what)
    elif callable(raw):
        _check_signature(raw, params, what)
    else:  # a plain value stands in for a property of the stubs
        assert [p["name"] for p in params] == ["self"], (
            f"{what} is a plain attribute ({raw!r}), but the API has a method with "
            f"parameters {[p['name'] for p in params]}")


def _cases(kind):
    if SPEC is None:
        return [pytest.param(None, None, id=f"{kind}-no-spec")]
    out = []
    for mod in MODULES:
        section = SPEC.get(mod, {})
        names = sorted(section.get(kind, {}) if kind != "constants"
                       else section.get("constants", []))
        out += [pytest.param(mod, n, id=f"{mod}.{n}") for n in names]
    return out


def _module(mod):
    return importlib.import_module(MODULES[mod])


# -- tests ------------------------------------------------------------------
@needs_spec
@pytest.mark.parametrize("mod,name", _cases("functions"))
def test_function(mod, name):
    m = _module(mod)
    assert hasattr(m, name), f"{mod}.{name} is missing"
    fn = getattr(m, name)
    assert callable(fn), f"{mod}.{name} is not callable ({fn!r})"
    _check_signature(fn, SPEC[mod]["functions"][name], f"{mod}.{name}")


@needs_spec
@pytest.mark.parametrize("mod,name", _cases("classes"))
def test_class(mod, name):
    m = _module(mod)
    assert hasattr(m, name), f"class {mod}.{name} is missing"
    cls = getattr(m, name)
    assert inspect.isclass(cls), f"{mod}.{name} is not a class ({cls!r})"
    spec = SPEC[mod]["classes"][name]
    mro = [c.__name__ for c in cls.__mro__]
    for base in spec.get("bases", []):
        assert base in mro, f"{mod}.{name} must derive from {base} (its MRO: {mro})"
    missing = [mem for mem in spec.get("members", []) if not hasattr(cls, mem)]
    assert not missing, f"{mod}.{name} lacks members {missing}"
    for meth, params in sorted(spec.get("methods", {}).items()):
        _check_method(cls, meth, params, f"{mod}.{name}.{meth}")


@needs_spec
@pytest.mark.parametrize("mod,name", _cases("constants"))
def test_constant(mod, name):
    m = _module(mod)
    assert hasattr(m, name), f"constant {mod}.{name} is missing"


# -- the modules behind the names -------------------------------------------
def test_compat_names_are_the_legacy_modules():
    import trnsim.compat as compat
    was = compat.installed()
    compat.install()
    try:
        for mod, target in MODULES.items():
            assert importlib.import_module("neuronxcc." + mod) is importlib.import_module(target)
        ncc = importlib.import_module("neuronxcc.nki.compiler")
        assert ncc.sbuf is importlib.import_module("neuronxcc.nki.compiler.sbuf")
        assert ncc.psum is importlib.import_module("neuronxcc.nki.compiler.psum")
    finally:
        if not was:
            compat.uninstall()


# -- the normalisation itself -----------------------------------------------
def test_legacy_default_normalisation():
    assert _default_matches(np.amax, "np.amax") and not _default_matches(np.amin, "np.amax")
    assert _default_matches(np.uint8, "np.uint8") and not _default_matches(np.int8, "np.uint8")
    assert _default_matches(np.float32, "np.float32")
    assert _default_matches(FP32_MIN, "fp32.min") and not _default_matches(-1e30, "fp32.min")
    assert _default_matches(None, "None") and not _default_matches(0, "None")

    class engine(enum.IntEnum):
        unknown = 0
        vector = 1

    assert _default_matches(engine.unknown, "engine.unknown")
    assert not _default_matches(engine.vector, "engine.unknown")
    assert not _default_matches("auto", "'jax'") and _default_matches("auto", "'auto'")

    class tile:
        pmax = 128

        @property
        def shape(self):
            return ()

        def method(self, x):
            return x

    _check_method(tile, "pmax", [{"kind": "positional_or_keyword", "name": "self"}], "pmax")
    _check_method(tile, "shape", [{"kind": "positional_or_keyword", "name": "self"}], "shape")
    with pytest.raises(AssertionError, match="parameters"):
        _check_method(tile, "method", [{"kind": "positional_or_keyword", "name": "self"}], "m")
    with pytest.raises(AssertionError, match="plain attribute"):
        _check_method(tile, "pmax", [{"kind": "positional_or_keyword", "name": "self"},
                                     {"kind": "positional_or_keyword", "name": "x"}], "p")
