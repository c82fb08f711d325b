"""The public NKI API surface (current generation) against the reference list
tests/data/nki_api/nki-0.7.json: every function of `nki`, `nki.isa`,
`nki.language` and `nki.collectives` exists with exactly the listed parameter names,
kinds and defaults; every class exists with its bases, members and method signatures;
every constant exists. One test case per name. How defaults are compared:
tests/api_surface.py. Class members that are instance attributes (NkiTensor.shape, ...)
are looked up on a sample instance.

NKI 0.7 removed names that 0.6 had (nl.dynamic_range); trnsim keeps them, with their
0.6 signatures, so 0.6 kernels still run: checked against nki-0.6.json below, along with
the DeprecationWarning that says what replaces them.
"""
from __future__ import annotations

import enum

import pytest

from api_surface import (Surface, check_class_shape, check_constant, check_function,
                         check_signature, default_matches)

MODULES = {
    "nki": "trnsim.nki",
    "nki.isa": "trnsim.nki.isa",
    "nki.language": "trnsim.nki.language",
    "nki.collectives": "trnsim.nki.collectives",
}
SURFACE = Surface("nki-0.7.json", MODULES)
SURFACE_06 = Surface("nki-0.6.json", MODULES)


def _removed_in_07(kind: str) -> list:
    """0.6 names of `kind` that the 0.7 listing no longer has."""
    now = {(p.values[0], p.values[1]) for p in SURFACE.cases(kind)}
    return [p for p in SURFACE_06.cases(kind) if (p.values[0], p.values[1]) not in now]


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


# -- 0.6 names that 0.7 removed: still accepted ------------------------------------
def test_removed_names_are_known():
    """The listing diff is what SOURCES.md says 0.7 removed (so a listing edit that drops
    a name by accident shows up here)."""
    assert [p.id for p in _removed_in_07("functions")] == ["nki.language.dynamic_range"]
    assert _removed_in_07("classes") == [] and _removed_in_07("constants") == []


@pytest.mark.parametrize("mod,name", _removed_in_07("functions"))
def test_removed_function_kept_with_06_signature(mod, name):
    check_function(SURFACE_06, mod, name)


def test_dynamic_range_warns_and_still_loops():
    import numpy as np

    import trnsim
    import trnsim.nki.isa as nisa
    import trnsim.nki.language as nl

    def k():
        out = nl.ndarray((1, 4), nl.int32, buffer=nl.sbuf)
        nisa.memset(dst=out, value=0)
        for i in nl.dynamic_range(1, 4):
            nisa.register_store(out[:, nl.ds(i, 1)], i)
        hbm = nl.ndarray((1, 4), nl.int32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=hbm, src=out)
        return hbm

    with pytest.warns(DeprecationWarning, match="removed in NKI 0.7.*fori_loop"):
        out, _ = trnsim.run_kernel(k, (), chip="trn2", numerics=True)
    np.testing.assert_array_equal(out, [[0, 1, 2, 3]])


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
