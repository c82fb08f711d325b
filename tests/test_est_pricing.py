"""timing/costs.py: the compute memo key's access signature read by position (an
Access is a tuple) names the fields it says, and dma_costs given the DMA positions by
its caller (the compiled list scheduler, compiler/compiled_schedule.py) prices as when
it finds them itself."""
import numpy as np
import pytest

from trnsim.machine.access import Access
from trnsim.timing import access_columns
from trnsim.timing.costs import _access_sig, cost_model, dma_costs

pytest.importorskip("numba")
from kernel_helpers import tutorial_run  # noqa: E402


def test_access_signature_is_its_named_fields():
    a = Access("data", "r", "sbuf", 1, "t", "bfloat16", (64, 8), ((16, 2), (1, 4)), 3,
               0, 64, 0, 16, 8, 1024, 8, True, 5)
    assert _access_sig(a) == (a.space, a.role, a.dtype, a.elems_per_partition, a.pattern,
                              a.indirect) == ("sbuf", "data", "bfloat16", 8,
                                              ((16, 2), (1, 4)), True)


@pytest.mark.parametrize("variant, chip", [("tiled", "trn1"), ("block_mnk", "trn2")])
def test_dma_costs_with_the_callers_positions(variant, chip):
    program = tutorial_run(variant, chip).program
    assert access_columns.kept_columns(program) is not None
    model = cost_model(program.chip)
    program.__dict__.pop("_priced", None)
    found = dma_costs(program, model)
    program.__dict__.pop("_priced", None)
    at = np.flatnonzero([ins.engine == "dma" for ins in program.instructions])
    given = dma_costs(program, model, at)
    assert len(at) > 10 and len(given) == len(found)
    for i, (g, f) in enumerate(zip(given, found)):
        assert g is f, i
