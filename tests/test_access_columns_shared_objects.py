"""timing/access_columns.py reads each distinct Access object once: traced instructions
that read one tile whole share its Access object (causal flash attention's), and every
row of those gets the columns of the object. Checked against the columns of the same
instructions with every access its own (equal) object, which are read one by one."""
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

pytest.importorskip("numba")

import trnsim  # noqa: E402
from trnsim.kernels import attention  # noqa: E402
from trnsim.machine.access import Access  # noqa: E402
from trnsim.timing import access_columns  # noqa: E402

from test_compiler_deps_compiled import _columns_match  # noqa: E402


def _flash_program():
    bf = ml_dtypes.bfloat16
    d, s = 128, 1024
    kwargs = dict(q=np.zeros((1, 1, d, s), bf), k=np.zeros((1, 1, d, s), bf),
                  v=np.zeros((1, 1, s, d), bf), causal=True)
    return trnsim.run_kernel(attention.flash_attention_fwd, (), kwargs=kwargs,
                             chip="trn2", numerics=False)[1].program


def _apart(ins):
    """The instruction as build reads it, each access a new (equal) object."""
    return SimpleNamespace(reads=tuple(Access(*a) for a in ins.reads),
                           writes=tuple(Access(*a) for a in ins.writes), attrs=ins.attrs)


@pytest.mark.parametrize("chunk", [5, 4096])
def test_shared_access_objects_read_once(chunk, monkeypatch):
    monkeypatch.setattr(access_columns, "_CHUNK", chunk)
    program = _flash_program()
    program.__dict__.pop("_access_columns", None)
    instrs = program.instructions
    shared = access_columns.build(instrs)
    apart = access_columns.build([_apart(ins) for ins in instrs])
    rows = len(apart.acc)
    objects = len({id(a) for ins in instrs for a in ins.reads + ins.writes})
    assert objects < rows  # (the case this checks: shared objects)
    assert len(shared.shared[0]) == objects
    assert (apart.source == np.arange(rows)).all()
    assert sorted(np.unique(shared.source).tolist()) == list(range(objects))
    for name in ("acc", "ptr", "wptr", "forms"):
        assert np.array_equal(getattr(shared, name), getattr(apart, name)), name
    assert (shared.spaces, shared.maps) == (apart.spaces, apart.maps)
    for k in range(len(access_columns.SHARED)):  # (signatures: numbered in order met)
        assert np.array_equal(shared.column(k), apart.column(k)), k
    _columns_match(program)
