"""The packages import one way: front ends -> language -> isa -> machine -> numerics/chips,
the compiler and timing below the profile, and the glue that runs and profiles a kernel
(trnsim/entry.py, trnsim/__init__.py, cli, demo, the torch bridge) above everything.
Read from the source (every import, at module level or inside a function)."""
import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "trnsim"

# package -> the trnsim packages it may import
ALLOWED = {
    "chips": set(),
    "numerics": {"chips"},
    "machine": {"chips", "numerics", "compiler"},  # Run.compile: the end of every run
    "isa": {"chips", "numerics", "machine"},
    "language": {"chips", "numerics", "machine", "isa"},
    "nki": {"chips", "numerics", "machine", "isa", "language"},
    "legacy": {"chips", "numerics", "machine", "isa", "language"},
    "compiler": {"chips", "numerics", "machine", "timing"},  # timing's cost model
    "fabric": {"chips"},
    "timing": {"chips", "numerics", "machine", "fabric"},
    "profile": {"chips", "numerics", "machine", "isa", "timing", "fabric", "__init__"},
}


def _imports(path: pathlib.Path, package: str):
    rel = path.relative_to(SRC)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(rel.parts[:-1])
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = base + [p for p in (node.module or "").split(".") if p]
            if target:
                yield target[0]
            else:  # `from .. import x`: a subpackage, or a name of trnsim/__init__.py
                for a in node.names:
                    yield a.name if (SRC / a.name).is_dir() else "__init__"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trnsim."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("trnsim."):
                    yield a.name.split(".")[1]


def test_packages_import_one_way():
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((SRC / package).rglob("*.py")):
            for target in _imports(path, package):
                if target and target != package and target not in allowed:
                    wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_package_has_a_rule():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    glue = {"kernels", "torch"}
    assert packages - {"examples"} <= set(ALLOWED) | glue, packages - set(ALLOWED)
