"""Run code written for AWS's `nki` package unmodified: `trnsim.compat.install()` makes
`import nki` and its submodules resolve to `trnsim.nki`.

    import trnsim.compat
    trnsim.compat.install()
    import nki, nki.language as nl, nki.isa as nisa      # trnsim's modules
    nki.simulate(kernel)(a, b)                           # the documented simulator API
    nki.cpu_simulate(kernel)[lnc](**inputs)              # nki-library's entry point
    nki.simulator.simulate_kernel(func, args, kwargs, lnc)   # vLLM's entry point

Aliased names: `nki`, `nki.language`, `nki.isa`, `nki.isa.constants`, `nki.typing`,
`nki.collectives`, `nki.compiler`, `nki.dtype`, `nki.tensor` (the set nki-library's
simulation harness aliases), `nki.simulator` (vLLM's), `nki.language.dtypes`,
`nki.builtin`, and every other `trnsim.nki` submodule as `nki.<sub>`. Importing a `nki.*` name trnsim does not have
raises ModuleNotFoundError: nothing is taken from a real `nki` package while installed.

nki-library's simulation harness (test/utils/simulation_setup.py) imports its simulator
as `nki_cpu_simulator.nki.*` and aliases those modules to `nki.*`. Unless a real
`nki_cpu_simulator` is importable, `install()` also provides that package (its `nki` is
trnsim.nki, whose `language.dtypes` holds the dtypes and whose `builtin` is empty, as
its contents are not public), so the harness runs unmodified on trnsim.

Legacy NKI (`neuronxcc.nki`, NKI 0.1) kernels run unmodified too: `install()` also
provides a `neuronxcc` package whose `nki` is trnsim's legacy front end (trnsim.legacy):

    import neuronxcc.nki as nki                 # or: from neuronxcc import nki
    import neuronxcc.nki.language as nl         # from neuronxcc.nki.language import par_dim
    import neuronxcc.nki.isa as nisa
    import neuronxcc.nki.typing as nt           # nt.tensor, nt.mutable_tensor
    import neuronxcc.nki.compiler as ncc        # ncc.sbuf.mod_alloc(...), ncc.psum.alloc(...)
    from neuronxcc.nki import trace, baremetal, benchmark, simulate_kernel

Aliased legacy names: `neuronxcc`, `neuronxcc.nki`, `neuronxcc.nki.language`,
`neuronxcc.nki.isa`, `neuronxcc.nki.typing`, `neuronxcc.nki.compiler`,
`neuronxcc.nki.compiler.sbuf`, `neuronxcc.nki.compiler.psum`; any other `neuronxcc.*`
import (the Neuron compiler itself, `neuronxcc.nki.kernels`, ...) raises
ModuleNotFoundError while installed.

If a real `nki` (or `neuronxcc`) package is importable (or already imported),
`install()` still replaces it in `sys.modules` but warns, once per process.
`install()` is idempotent; `uninstall()` restores `sys.modules` as it was.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pkgutil
import sys
import types
import warnings

__all__ = ["install", "uninstall", "installed", "TrnsimCompatWarning"]

_PREFIX = "nki"
_TARGET = "trnsim.nki"
SIM_PACKAGE = "nki_cpu_simulator"  # nki-library's name for the simulator package
_SIM_PREFIX = SIM_PACKAGE + ".nki"
# The names public suites alias (nki-library's simulation_setup.py) and vLLM's module.
PUBLIC_MODULES = ("nki", "nki.language", "nki.isa", "nki.isa.constants", "nki.typing",
                  "nki.collectives", "nki.compiler", "nki.dtype", "nki.tensor",
                  "nki.simulator", "nki.language.dtypes", "nki.builtin")
LEGACY_PACKAGE = "neuronxcc"  # the legacy (NKI 0.1) API's package
# legacy module name -> trnsim module
LEGACY_MODULES = {
    "neuronxcc.nki": "trnsim.legacy.api",
    "neuronxcc.nki.language": "trnsim.legacy.language",
    "neuronxcc.nki.isa": "trnsim.legacy.isa",
    "neuronxcc.nki.typing": "trnsim.legacy.typing",
    "neuronxcc.nki.compiler": "trnsim.legacy.compiler",
    "neuronxcc.nki.compiler.sbuf": "trnsim.legacy.compiler.sbuf",
    "neuronxcc.nki.compiler.psum": "trnsim.legacy.compiler.psum",
}


class TrnsimCompatWarning(UserWarning):
    """trnsim.compat replaced a real `nki` package in sys.modules."""


_saved: dict[str, object] | None = None  # sys.modules entries replaced by install()
_finder: "_AliasFinder | None" = None
_warned = False
_warned_legacy = False


def _target_name(name: str) -> str:
    """trnsim's module for an aliased name (`nki.X` / `nki_cpu_simulator.nki.X`)."""
    for prefix in (_SIM_PREFIX, _PREFIX):
        if name == prefix or name.startswith(prefix + "."):
            return _TARGET + name[len(prefix):]
    raise KeyError(name)


def _ours_name(name: str) -> bool:
    """Whether install() manages this sys.modules name."""
    return any(name == p or name.startswith(p + ".")
               for p in (_PREFIX, SIM_PACKAGE, LEGACY_PACKAGE))


def _is_ours(module) -> bool:
    name = getattr(module, "__name__", "") or ""
    return name == _TARGET or name.startswith(_TARGET + ".")


def installed() -> bool:
    """Whether `import nki` currently gives trnsim's module."""
    return _is_ours(sys.modules.get(_PREFIX))


def _real_location(top: str) -> str | None:
    """Where a real (non-trnsim) package `top` lives, if one is imported or importable."""
    current = sys.modules.get(top)
    if current is not None and not _is_ours(current) and not getattr(current, "_trnsim", 0):
        return getattr(current, "__file__", None) or repr(current)
    try:
        spec = importlib.machinery.PathFinder.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    where = spec.origin or (list(spec.submodule_search_locations or []) or [None])[0]
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    if where and os.path.abspath(where).startswith(pkg_dir + os.sep):
        return None
    return where or top


class _AliasLoader(importlib.abc.Loader):
    """Hands back an already-imported trnsim module under its `nki.*` name."""

    def __init__(self, module):
        self.module = module
        self.spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import machinery overwrote it with the alias's


class _AliasFinder(importlib.abc.MetaPathFinder):
    """`nki.X.Y` -> `trnsim.nki.X.Y` for submodules not aliased at install time."""

    def __init__(self, sim_alias: bool):
        self.prefixes = (_PREFIX + ".",) + ((_SIM_PREFIX + ".",) if sim_alias else ())

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(LEGACY_PACKAGE + ".") and installed() and getattr(
                sys.modules.get(LEGACY_PACKAGE), "_trnsim", False):
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: trnsim.compat provides the legacy API as "
                f"{', '.join(LEGACY_MODULES)} only (there is no Neuron compiler here)",
                name=fullname)
        if not fullname.startswith(self.prefixes) or not installed():
            return None
        try:
            module = importlib.import_module(_target_name(fullname))
        except ModuleNotFoundError as e:
            if e.name and (e.name == _target_name(fullname)
                           or _target_name(fullname).startswith(e.name + ".")):
                raise ModuleNotFoundError(
                    f"No module named {fullname!r}: trnsim.compat maps nki.* to trnsim.nki.*"
                    f", which has no {_target_name(fullname)!r}", name=fullname) from None
            raise
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module))


def _trnsim_modules() -> dict[str, object]:
    """nki.* name -> trnsim.nki module, importing every trnsim.nki submodule."""
    found = {}
    for name in PUBLIC_MODULES:  # these must import; let their errors through
        found[name] = importlib.import_module(_target_name(name))
    root = found[_PREFIX]

    def skip(_name):  # a submodule that fails to import is simply not pre-aliased
        pass

    for info in pkgutil.walk_packages(root.__path__, _TARGET + ".", onerror=skip):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - see skip()
            continue
        found[_PREFIX + info.name[len(_TARGET):]] = module
    return found


def _sim_package_modules(modules: dict) -> dict:
    """nki-library's `nki_cpu_simulator` names over the same trnsim modules."""
    pkg = types.ModuleType(SIM_PACKAGE, "trnsim standing in for nki-library's simulator "
                           "package (installed by trnsim.compat.install())")
    pkg.__path__ = []
    pkg._trnsim = True
    pkg.nki = modules[_PREFIX]
    found = {SIM_PACKAGE: pkg}
    for name, module in modules.items():
        found[SIM_PACKAGE + "." + name] = module
    return found


def _legacy_modules() -> dict[str, object]:
    """The `neuronxcc.*` names over trnsim's legacy front end."""
    found = {name: importlib.import_module(target) for name, target in LEGACY_MODULES.items()}
    pkg = types.ModuleType(LEGACY_PACKAGE, "trnsim standing in for the Neuron compiler "
                           "package: only its legacy NKI API (`neuronxcc.nki`) is provided "
                           "(installed by trnsim.compat.install())")
    pkg.__path__ = []
    pkg._trnsim = True
    pkg.nki = found["neuronxcc.nki"]
    found[LEGACY_PACKAGE] = pkg
    return found


def install():
    """Make `import nki` (and `nki.language`, `nki.isa`, ...) resolve to trnsim.nki.
    Idempotent. Returns the `nki` module."""
    global _saved, _finder, _warned, _warned_legacy
    if installed() and _saved is not None:
        return sys.modules[_PREFIX]
    where = _real_location(_PREFIX)
    if where is not None and not _warned:
        _warned = True
        warnings.warn(
            f"a real 'nki' package is installed ({where}); trnsim.compat.install() "
            "replaces it in sys.modules with trnsim's simulated NKI "
            "(trnsim.compat.uninstall() restores it)", TrnsimCompatWarning, stacklevel=2)
    legacy_where = _real_location(LEGACY_PACKAGE)
    if legacy_where is not None and not _warned_legacy:
        _warned_legacy = True
        warnings.warn(
            f"a real 'neuronxcc' package is installed ({legacy_where}); "
            "trnsim.compat.install() replaces it in sys.modules with trnsim's simulated "
            "legacy NKI (trnsim.compat.uninstall() restores it)", TrnsimCompatWarning,
            stacklevel=2)
    modules = _trnsim_modules()
    sim_alias = _real_location(SIM_PACKAGE) is None
    if sim_alias:
        modules.update(_sim_package_modules(modules))
    modules.update(_legacy_modules())
    saved = {}
    for name in list(sys.modules):  # a real nki's modules must not mix with ours
        if (name == _PREFIX or name.startswith(_PREFIX + ".")) or (
                name == LEGACY_PACKAGE or name.startswith(LEGACY_PACKAGE + ".")) or (
                sim_alias and (name == SIM_PACKAGE or name.startswith(SIM_PACKAGE + "."))):
            saved[name] = sys.modules.pop(name)
    for name in modules:
        saved.setdefault(name, None)
    sys.modules.update(modules)
    _finder = _AliasFinder(sim_alias)
    sys.meta_path.insert(0, _finder)
    importlib.invalidate_caches()
    _saved = saved
    return modules[_PREFIX]


def uninstall() -> None:
    """Undo `install()`: remove trnsim's `nki.*` entries and restore what they replaced."""
    global _saved, _finder
    if _finder is not None and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    _finder = None
    if _saved is None:
        return
    for name in list(sys.modules):
        if _ours_name(name) and name in _saved or (
                _ours_name(name) and _is_ours(sys.modules[name])):
            del sys.modules[name]
    for name, module in _saved.items():
        if module is not None:
            sys.modules[name] = module
    _saved = None
    importlib.invalidate_caches()


class _InstallHint(importlib.abc.MetaPathFinder):
    """Last on sys.meta_path: when nothing else provides `nki` or `neuronxcc` (no real
    package, install() not called), the ModuleNotFoundError says how to get trnsim's."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in (_PREFIX, LEGACY_PACKAGE) and not installed():
            what = "legacy NKI kernels" if fullname == LEGACY_PACKAGE else "NKI code"
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: call trnsim.compat.install() before "
                f"`import {fullname}` to run {what} on trnsim", name=fullname)
        return None


if not any(isinstance(f, _InstallHint) for f in sys.meta_path):
    sys.meta_path.append(_InstallHint())
