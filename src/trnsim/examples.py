"""The repository's example kernels (examples/, examples/legacy/), loaded by path for
the demo, the benchmarks and the tests. They are not part of the installed package:
this works from a checkout (`make demo` installs trnsim editable)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    """A fresh module from examples/<name>.py (name like "tiled_matmul" or
    "legacy/matmul_tutorial")."""
    path = EXAMPLES / f"{name.removesuffix('.py')}.py"
    spec = importlib.util.spec_from_file_location(
        "trnsim_example_" + name.removesuffix(".py").replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
