"""The front ends' shortcuts answer as the long ways did: kernel locations made once per
line, dtype comparisons, buffer names, and the legacy modules' import cycle broken so
that any of them can be imported first."""
import subprocess
import sys

import numpy as np
import pytest

from trnsim.machine.errors import SourceLocation, kernel_location
from trnsim.machine.tensor import MemoryRegion
from trnsim.numerics import dtypes


def _here():
    return kernel_location(1)


def test_kernel_location_is_made_once_per_line():
    first, second = [_here() for _ in range(2)]
    line = _here.__code__.co_firstlineno + 1
    assert first == SourceLocation(__file__, line, "_here")
    assert first is second
    other = kernel_location(1)
    assert other.line != line and other.function == "test_kernel_location_is_made_once_per_line"


def test_dtype_comparisons_agree_with_their_names():
    for a in dtypes.ALL:
        for b in dtypes.ALL:
            assert (a == b) is (str(a) == str(b))
            assert (a != b) is (str(a) != str(b))
        assert a == str(a) and not (a != str(a))
        assert a != "not a dtype"
        assert a.__eq__(object()) is NotImplemented and a.__ne__(object()) is NotImplemented
    assert dtypes.float32 == np.float32 and not (dtypes.float32 != np.float32)
    assert dtypes.bfloat16 != np.float32


def test_buffer_names():
    assert [str(r) for r in MemoryRegion] == [r.value for r in MemoryRegion] == [
        "sbuf", "psum", "private_hbm", "shared_hbm"]
    assert f"{MemoryRegion.shared_hbm}" == "shared_hbm"


@pytest.mark.parametrize("module", ["tensor", "ops", "creation", "compiler", "language",
                                    "isa", "jit"])
def test_legacy_modules_import_first(module):
    """Each legacy module imported before any other (the cycle language -> ops ->
    creation -> ops, and tensor -> ops, is closed by imports at the ends of modules)."""
    code = (f"import trnsim.legacy.{module}\n"
            "from trnsim.legacy import language as nl, ops, tensor\n"
            "assert ops.ndarray is nl.ndarray and tensor.ops is ops\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
