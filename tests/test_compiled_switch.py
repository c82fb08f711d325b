"""trnsim/machine/compiled.py: which programs take the compiled paths, and its `jit`."""
import pytest

from trnsim.machine import compiled


@pytest.mark.parametrize("mode, small, large", [
    (None, False, True),  # unset: by size
    ("auto", False, True),
    ("1", True, True),
    ("0", False, False),
    (" 0 ", False, False),
])
def test_wanted_by_setting_and_size(monkeypatch, mode, small, large):
    monkeypatch.setattr(compiled, "numba_available", lambda: True)
    if mode is None:
        monkeypatch.delenv(compiled.ENV, raising=False)
    else:
        monkeypatch.setenv(compiled.ENV, mode)
    n = compiled.MIN_INSTRUCTIONS
    assert (compiled.wanted(n - 1), compiled.wanted(n)) == (small, large)


def test_never_without_numba(monkeypatch):
    monkeypatch.setattr(compiled, "numba_available", lambda: False)
    monkeypatch.setenv(compiled.ENV, "1")
    assert not compiled.wanted(10 ** 6)


def test_jit_without_numba_leaves_the_function(monkeypatch):
    monkeypatch.setattr(compiled, "numba_available", lambda: False)

    def f(x):
        return x + 1
    assert compiled.jit(f) is f


def test_jit_passes_numba_options():
    pytest.importorskip("numba")

    def halve(a, b):
        return a // b

    def halve_numpy(a, b):  # (another function: numba's disk cache keys no options)
        return a // b

    plain, numpy_errors = compiled.jit(halve), compiled.jit(error_model="numpy")(halve_numpy)
    assert numpy_errors.targetoptions["error_model"] == "numpy"
    assert "error_model" not in plain.targetoptions
    assert numpy_errors(7, 2) == plain(7, 2) == 3
    assert numpy_errors(7, 0) == 0  # numpy's model: no ZeroDivisionError
    with pytest.raises(ZeroDivisionError):
        plain(7, 0)
