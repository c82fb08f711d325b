"""The public NKI API surface (current generation) against the reference list
../shared/reference/nki-api-new.json: every function of `nki`, `nki.isa`,
`nki.language` and `nki.collectives` exists with exactly the listed parameter names,
kinds and defaults; every class exists with its bases, members and method signatures;
every constant exists. One test case per name.

Default values are compared through their spelling in the stubs (normalisation):
- enum members as `<enum class>.<member>` (`reduce_cmd.idle`, `engine.unknown`);
- operator / function defaults by `__name__` (`maximum`, `equal`);
- dtypes and memory regions by `str()` (`uint8`, `sbuf`);
- numbers by value (`1e-06` == 1e-6), other literals by `repr()` (`''`, `()`, `[0]`);
- `...` in the stubs elides a non-literal default (e.g. range_select's
  `on_false_value`, an fp32 minimum): any default is accepted, but one must exist.
Class members that are instance attributes (NkiTensor.shape, ...) are looked up on a
sample instance.
"""
from __future__ import annotations

import enum
import importlib
import inspect
import json
from pathlib import Path

import pytest

SPEC_PATH = Path(__file__).parents[2] / "shared/reference/nki-api-new.json"
MODULES = {
    "nki": "trnsim.nki",
    "nki.isa": "trnsim.nki.isa",
    "nki.language": "trnsim.nki.language",
    "nki.collectives": "trnsim.nki.collectives",
}


def _load_spec():
    if not SPEC_PATH.exists():
        return None
    return json.loads(SPEC_PATH.read_text())


SPEC = _load_spec()
needs_spec = pytest.mark.skipif(SPEC is None, reason=f"API reference {SPEC_PATH} is missing "
                                                      "(it lives in ../shared/reference)")


def _cases(kind):
    if SPEC is None:
        return [pytest.param(None, None, id=f"{kind}-no-spec")]
    out = []
    for mod in MODULES:
        section = SPEC.get(mod, {})
        if kind == "functions":
            names = sorted(section.get("functions", {}))
        elif kind == "classes":
            names = sorted(section.get("classes", {}))
        else:
            names = sorted(section.get("constants", []))
        out += [pytest.param(mod, n, id=f"{mod}.{n}") for n in names]
    return out


def _module(mod):
    return importlib.import_module(MODULES[mod])


# -- default-value normalisation ------------------------------------------
def _spellings(value) -> set[str]:
    s = {repr(value), str(value)}
    if isinstance(value, enum.Enum):
        s.add(f"{type(value).__name__}.{value.name}")
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        s.add(name)
    if value is Ellipsis:
        s.add("...")
    return s


def _default_matches(value, expected: str) -> bool:
    if expected == "...":
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(expected) == float(value)
        except ValueError:
            return False
    return expected in _spellings(value)


def _describe(p: inspect.Parameter) -> str:
    d = "" if p.default is inspect.Parameter.empty else f"={p.default!r}"
    return f"{p.name}({p.kind.name.lower()}){d}"


def _check_signature(fn, expected: list[dict], what: str):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        pytest.fail(f"{what}: no inspectable signature ({e})")
    params = list(sig.parameters.values())
    got_names = [p.name for p in params]
    want_names = [p["name"] for p in expected]
    assert got_names == want_names, (
        f"{what}: parameters {got_names}, expected {want_names} "
        f"(have: {', '.join(map(_describe, params))})")
    for p, e in zip(params, expected):
        assert p.kind.name.lower() == e["kind"], (
            f"{what}: parameter {p.name!r} is {p.kind.name.lower()}, expected {e['kind']}")
        has_default = p.default is not inspect.Parameter.empty
        if "default" not in e:
            assert not has_default, (
                f"{what}: parameter {p.name!r} has default {p.default!r}; the API has none")
        else:
            assert has_default, (
                f"{what}: parameter {p.name!r} needs the default {e['default']}")
            assert _default_matches(p.default, e["default"]), (
                f"{what}: parameter {p.name!r} default {p.default!r} (spelled "
                f"{sorted(_spellings(p.default))}) is not {e['default']}")


def _sample_instance(cls):
    """An instance to look up instance attributes on (None when not constructible)."""
    if cls.__name__ == "NkiTensor":
        return cls((2, 4), "float32", None)
    try:
        return cls()
    except Exception:
        return None


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
    if missing:
        inst = _sample_instance(cls)
        missing = [mem for mem in missing if inst is None or not hasattr(inst, mem)]
    assert not missing, f"{mod}.{name} lacks members {missing}"
    for meth, params in sorted(spec.get("methods", {}).items()):
        assert hasattr(cls, meth), f"{mod}.{name}.{meth} is missing"
        _check_signature(getattr(cls, meth), params, f"{mod}.{name}.{meth}")


@needs_spec
@pytest.mark.parametrize("mod,name", _cases("constants"))
def test_constant(mod, name):
    m = _module(mod)
    assert hasattr(m, name), f"constant {mod}.{name} is missing"


# -- the normalisation itself -----------------------------------------------
def test_default_normalisation():
    class reduce_cmd(enum.Enum):
        idle = "idle"
        reset = "reset"

    def maximum(x, y):
        return x

    assert _default_matches(reduce_cmd.idle, "reduce_cmd.idle")
    assert not _default_matches(reduce_cmd.reset, "reduce_cmd.idle")
    assert _default_matches(maximum, "maximum")
    assert _default_matches(1e-6, "1e-06") and not _default_matches(1e-5, "1e-06")
    assert _default_matches("", "''") and not _default_matches("x", "''")
    assert _default_matches((), "()") and _default_matches([0], "[0]")
    assert _default_matches(None, "None") and not _default_matches(0, "None")
    assert _default_matches(False, "False") and not _default_matches(0, "False")
    assert _default_matches(object(), "...")
