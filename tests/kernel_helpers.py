"""Small kernel-side helpers the ISA tests share: bring an HBM input on chip, return a
tile to HBM, look at the record, and make a chip file variant."""
import importlib.resources
import json

import numpy as np

import trnsim.nki.isa as nisa
import trnsim.nki.language as nl


def load(src, buffer=nl.sbuf, dtype=None):
    """A new on-chip tile holding the HBM tensor `src` (one dma_copy)."""
    t = nl.ndarray(src.shape, dtype or src.dtype, buffer=buffer)
    nisa.dma_copy(dst=t, src=src)
    return t


def store(t):
    """A new shared-HBM tensor holding tile `t` (PSUM goes through an SBUF copy)."""
    if t.buffer == nl.psum:
        s = nl.ndarray(t.shape, t.dtype, buffer=nl.sbuf)
        nisa.tensor_copy(dst=s, src=t)
        t = s
    out = nl.ndarray(t.shape, t.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=t)
    return out


def only(program, opcode):
    """The one instruction of `program` with `opcode`."""
    found = [i for i in program if i.opcode == opcode]
    assert len(found) == 1, [i.opcode for i in program]
    return found[0]


def bits(a):
    """The raw bits of an array, as unsigned integers of its width."""
    a = np.asarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def chip_with_usable_sbuf(tmp_path, base, usable):
    """A copy of built-in chip file `base` with `usable` SBUF bytes per partition."""
    data = json.loads(importlib.resources.files("trnsim.chips").joinpath(f"{base}.json")
                      .read_text())
    node = data["core"]["sbuf_usable_bytes_per_partition"]
    if isinstance(node, dict):
        node["value"] = usable
    else:
        data["core"]["sbuf_usable_bytes_per_partition"] = usable
    path = tmp_path / f"{base}_sbuf{usable}.json"
    path.write_text(json.dumps(data))
    return str(path)
