"""The rows of docs/kernels.md (benchmarks/kernel_cases) stay runnable: each names a
kernel of trnsim.kernels, its inputs are exactly that kernel's parameters, and its chips
exist. (`make bench` profiles them; this only checks that it can.)"""
import inspect

import pytest

import trnsim
import trnsim.kernels
from benchmarks.kernels import cases
from trnsim.cli import kernel_function

CASES = list(cases())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.name}[{c.shape}]")
def test_case_names_a_library_kernel_with_its_parameters(case):
    fn = kernel_function(case.kernel)
    assert fn.__module__.startswith("trnsim.kernels."), fn.__module__
    params = inspect.signature(fn).parameters
    given = set(case.inputs())
    required = {n for n, p in params.items() if p.default is p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    assert required <= given <= set(params), (sorted(required), sorted(given))
    assert set(case.chips) <= set(trnsim.available_chips())


def test_every_kernel_family_has_rows():
    families = {kernel_function(c.kernel).__module__.rsplit(".", 1)[1] for c in CASES}
    assert families == set(trnsim.kernels.KERNEL_MODULES)
