"""The legacy NKI API surface (`neuronxcc.nki`, NKI 0.1) against the reference list
tests/data/nki_api/nki-legacy.json: every function of `nki`, `nki.language`,
`nki.isa`, `nki.compiler`, `nki.compiler.sbuf` and `nki.compiler.psum` exists in trnsim's
legacy front end with exactly the listed parameter names, kinds and defaults; every
class exists with its bases, members and method signatures; every constant exists.
One test case per name.

Default values are compared as tests/api_surface.py does,
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

import numpy as np
import pytest

from api_surface import (Surface, check_class_shape, check_constant, check_function,
                         check_signature, default_matches, spellings)

SURFACE = Surface("nki-legacy.json", {
    "nki": "trnsim.legacy.api",
    "nki.language": "trnsim.legacy.language",
    "nki.isa": "trnsim.legacy.isa",
    "nki.compiler": "trnsim.legacy.compiler",
    "nki.compiler.sbuf": "trnsim.legacy.compiler.sbuf",
    "nki.compiler.psum": "trnsim.legacy.compiler.psum",
})
MODULES = SURFACE.modules
FP32_MIN = float(np.finfo(np.float32).min)


def _default_matches(value, expected: str) -> bool:
    if default_matches(value, expected) or expected in spellings(value):
        return True  # (the second: IntEnum members are ints, but spelled by name)
    if expected == "fp32.min":
        try:
            return float(value) == FP32_MIN
        except (TypeError, ValueError):
            return False
    for prefix in ("np.", "nl.", "numpy."):
        if expected.startswith(prefix):
            return default_matches(value, expected[len(prefix):])
    return False


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
        check_signature(raw.fget, params, what, _default_matches)
    elif isinstance(raw, (classmethod, staticmethod)):
        check_signature(raw.__func__, params, what, _default_matches)
    elif callable(raw):
        check_signature(raw, params, what, _default_matches)
    else:  # a plain value stands in for a property of the stubs
        assert [p["name"] for p in params] == ["self"], (
            f"{what} is a plain attribute ({raw!r}), but the API has a method with "
            f"parameters {[p['name'] for p in params]}")


# -- tests ------------------------------------------------------------------
@pytest.mark.parametrize("mod,name", SURFACE.cases("functions"))
def test_function(mod, name):
    check_function(SURFACE, mod, name, _default_matches)


@pytest.mark.parametrize("mod,name", SURFACE.cases("classes"))
def test_class(mod, name):
    cls, spec = check_class_shape(SURFACE, mod, name)
    for meth, params in sorted(spec.get("methods", {}).items()):
        _check_method(cls, meth, params, f"{mod}.{name}.{meth}")


@pytest.mark.parametrize("mod,name", SURFACE.cases("constants"))
def test_constant(mod, name):
    check_constant(SURFACE, mod, name)


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
