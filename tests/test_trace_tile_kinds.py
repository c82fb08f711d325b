"""nl.ndarray of a kind of tile declared before (Run.new_tensor's kept kinds: no checks,
Storage placed by OnChipMemory.place_virtual) makes what the general path makes: the
same tensors, at the same virtual addresses, with the same Allocation records. A shape
given as a list is never kept as a kind (unhashable): it takes the general path every
time, the reference here."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.language as nl

_KINDS = [((128, 64), nl.float32, nl.sbuf), ((128, 1), nl.float32, nl.sbuf),
          ((64, 4, 16), nl.bfloat16, nl.sbuf), ((128, 512), nl.float32, nl.psum),
          ((128, 2048), nl.bfloat16, nl.psum)]


def _declared(as_list: bool, numerics: bool):
    box = {}

    def kernel(x):
        live, out = [], []
        for i in range(40):
            shape, dtype, buffer = _KINDS[(i * 7) % len(_KINDS)]
            t = nl.ndarray(list(shape) if as_list else shape, dtype=dtype, buffer=buffer,
                           name=f"t{i % 3}")
            out.append((t.shape, t.strides, t.offset, t.dtype, t.buffer, t.name,
                        t.storage.address, t.storage.row_bytes, t.storage.partitions,
                        t.storage.base_shape, t.storage.buffer_name, t.storage.site,
                        _fields(t), _fields(t.storage)))
            live.append(t)
            if i % 4 == 3:  # some die, so that later tiles reuse their addresses
                del live[::2]
        box["tensors"] = out
    run = trnsim.run_kernel(kernel, (np.zeros((128, 4), np.float32),),
                            numerics=numerics)[1]
    allocs = [a.field_values() for a in run.program.allocations.values()]
    return box["tensors"], allocs


def _fields(obj) -> dict:
    """Every attribute of a tensor or its storage (a kept kind's are copied from a
    template), the objects of its run and the bytes of its own as what they hold."""
    out = dict(vars(obj))
    out["order"] = list(out)  # (the attributes' order, as loop expansion reads them)
    out.pop("storage", None)
    if "memory" in out:
        out["memory"] = (out["memory"].space, out["memory"].core)
    for name in ("own", "unfilled"):
        if out.get(name) is not None:
            out[name] = (out[name].shape, out[name].tobytes() if name == "unfilled" else b"")
    return out


@pytest.mark.parametrize("numerics", [False, True])
def test_kept_kinds_place_tiles_as_the_general_path(numerics):
    tensors, allocs = _declared(False, numerics)
    want_tensors, want_allocs = _declared(True, numerics)
    assert len(allocs) == 40
    assert tensors == want_tensors
    assert allocs == want_allocs
    assert len({t[6] for t in tensors}) < 40  # (addresses were reused)
