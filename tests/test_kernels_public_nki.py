"""The kernel library (src/trnsim/kernels) is public NKI: its kernel modules import only
nki, nki.language, nki.isa (and numpy / math / standard-library helpers for
compile-time arithmetic), never trnsim, so the same source compiles for hardware."""
import ast
import pathlib

import pytest

import trnsim.kernels

KERNELS = pathlib.Path(trnsim.kernels.__file__).parent
ALLOWED = {"nki", "nki.language", "nki.isa", "nki.typing", "numpy", "math", "functools",
           "itertools", "dataclasses", "typing", "enum", "__future__"}
MODULES = sorted(p for p in KERNELS.glob("*.py") if p.name != "__init__.py")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_kernel_module_imports_only_public_nki(path):
    bad = [m for m in _imports(path) if m not in ALLOWED and not m.startswith(".")]
    assert not bad, f"{path.name} imports {bad}"


def test_every_kernel_module_is_imported():
    assert sorted(trnsim.kernels.KERNEL_MODULES) == sorted(p.stem for p in MODULES)
    for name in trnsim.kernels.KERNEL_MODULES:
        assert hasattr(trnsim.kernels, name)
