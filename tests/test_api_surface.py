"""The public NKI API surface (current generation) against the reference list
tests/data/nki_api/nki-0.6.json: every function of `nki`, `nki.isa`,
`nki.language` and `nki.collectives` exists with exactly the listed parameter names,
kinds and defaults; every class exists with its bases, members and method signatures;
every constant exists. One test case per name. How defaults are compared:
tests/api_surface.py. Class members that are instance attributes (NkiTensor.shape, ...)
are looked up on a sample instance.
"""
from __future__ import annotations

import enum

import pytest

from api_surface import (Surface, check_class_shape, check_constant, check_function,
                         check_signature, default_matches)

SURFACE = Surface("nki-0.6.json", {
    "nki": "trnsim.nki",
    "nki.isa": "trnsim.nki.isa",
    "nki.language": "trnsim.nki.language",
    "nki.collectives": "trnsim.nki.collectives",
})


def _sample_instance(cls):
    """An instance to look up instance attributes on (None when not constructible)."""
    if cls.__name__ == "NkiTensor":
        return cls((2, 4), "float32", None)
    try:
        return cls()
    except Exception:
        return None


# -- tests ------------------------------------------------------------------
@pytest.mark.parametrize("mod,name", SURFACE.cases("functions"))
def test_function(mod, name):
    check_function(SURFACE, mod, name)


@pytest.mark.parametrize("mod,name", SURFACE.cases("classes"))
def test_class(mod, name):
    cls, spec = check_class_shape(SURFACE, mod, name, instance=_sample_instance)
    for meth, params in sorted(spec.get("methods", {}).items()):
        assert hasattr(cls, meth), f"{mod}.{name}.{meth} is missing"
        check_signature(getattr(cls, meth), params, f"{mod}.{name}.{meth}")


@pytest.mark.parametrize("mod,name", SURFACE.cases("constants"))
def test_constant(mod, name):
    check_constant(SURFACE, mod, name)


# -- the normalisation itself -----------------------------------------------
def test_default_normalisation():
    class reduce_cmd(enum.Enum):
        idle = "idle"
        reset = "reset"

    def maximum(x, y):
        return x

    assert default_matches(reduce_cmd.idle, "reduce_cmd.idle")
    assert not default_matches(reduce_cmd.reset, "reduce_cmd.idle")
    assert default_matches(maximum, "maximum")
    assert default_matches(1e-6, "1e-06") and not default_matches(1e-5, "1e-06")
    assert default_matches("", "''") and not default_matches("x", "''")
    assert default_matches((), "()") and default_matches([0], "[0]")
    assert default_matches(None, "None") and not default_matches(0, "None")
    assert default_matches(False, "False") and not default_matches(0, "False")
    assert default_matches(object(), "...")
