"""timing/access_columns.py reads the accesses a chunk at a time and numbers the spaces
in order of first use; a space first met in a later chunk (as in a long program whose
first chunk touches no PSUM) must get the next number, and every access its own
space. Here with chunks of a few accesses, so that every space is met past the first."""
import pytest

pytest.importorskip("numba")

from kernel_helpers import tutorial_run  # noqa: E402
from trnsim.timing import access_columns  # noqa: E402

from test_compiler_deps_compiled import _columns_match  # noqa: E402


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_spaces_met_in_later_chunks(chunk, monkeypatch):
    program = tutorial_run("tiled", "trn1").program
    monkeypatch.setattr(access_columns, "_CHUNK", chunk)
    program.__dict__.pop("_access_columns", None)
    _columns_match(program)
    first_use = []
    for ins in program.instructions:
        for a in ins.reads + ins.writes:
            if a.space not in first_use:
                first_use.append(a.space)
    assert access_columns.access_columns(program).spaces == first_use
    assert len(first_use) == 3  # hbm, sbuf and psum all met
