"""trnsim's kernel library for LLMs, written in public NKI.

Every kernel module here imports only `nki`, `nki.language`, `nki.isa` (and numpy /
math for compile-time arithmetic): no trnsim name, so the same source compiles for a
real NeuronCore. Each kernel takes its tiling from the shapes it is given, as
nki-library's kernels do. Tests (tests/test_kernels_*.py) check each against a
reference written independently in NumPy; `make bench` writes docs/kernels.md with the
predicted latency, MFU or MBU and top insight of each on trn2 and trn3.

Importing this package calls `trnsim.compat.install()`, so that `import nki` inside the
kernel modules resolves to trnsim (install() warns once if a real `nki` package is
present, and replaces it for this process), and imports every kernel module at once, so
they keep working if compat is uninstalled later.
"""
from .. import compat as _compat

if not _compat.installed():
    _compat.install()

from importlib import import_module as _import  # noqa: E402
from pkgutil import iter_modules as _modules  # noqa: E402

KERNEL_MODULES = tuple(sorted(m.name for m in _modules(__path__) if not m.name.startswith("_")))
for _name in KERNEL_MODULES:
    globals()[_name] = _import(f"{__name__}.{_name}")
