"""The repository's example kernels (examples/, examples/legacy/), loaded by path for
the demo, the benchmarks and the tests. They are not part of the installed package:
this works from a checkout (`make demo` installs trnsim editable)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    """A fresh module from examples/<name>.py (name like "tiled_matmul" or
    "legacy/matmul_tutorial")."""
    path = EXAMPLES / f"{name.removesuffix('.py')}.py"
    module_name = "trnsim_example_" + name.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # registered while it runs, as an import would: dataclasses (with postponed
    # annotations) and pickling look the module up by name
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
