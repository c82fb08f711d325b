"""Files in the repository name other files by their path in the repository: no path of
a development machine, nothing outside the clone (a new user's clone has neither)."""
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTSIDE = ("/work/", "../shared/", "/root/", "/home/")


def _tracked():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out if p.endswith((".py", ".md", ".json", ".toml", "Makefile"))
            and p != "tests/test_repository_paths.py"]


def test_no_file_names_a_path_outside_the_repository():
    hits = []
    for path in _tracked():
        if not path.exists():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            hits += [f"{path.relative_to(ROOT)}:{n}: {s}" for s in OUTSIDE if s in line]
    assert not hits, "\n".join(hits)
