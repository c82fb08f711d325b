"""The timing and compiler model tests run twice: with the compiled paths (numba,
trnsim/machine/compiled.py: TRNSIM_COMPILED=1) and with the Python passes (=0), which
must give the same results; test ids end in [compiled] or [python]. Without numba only
the Python passes run."""
import pytest

BOTH_PATHS = {"test_timing_scheduler", "test_compiler_schedule", "test_compiler_allocation",
              "test_engine_candidates", "test_lnc"}


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__.rpartition(".")[2] in BOTH_PATHS:
        from trnsim.machine import compiled
        paths = ["compiled", "python"] if compiled.numba_available() else ["python"]
        metafunc.fixturenames.append("passes")
        metafunc.parametrize("passes", paths, indirect=True)


@pytest.fixture
def passes(request, monkeypatch):
    """Which passes the test runs on (set by pytest_generate_tests)."""
    monkeypatch.setenv("TRNSIM_COMPILED", "1" if request.param == "compiled" else "0")
    return request.param
