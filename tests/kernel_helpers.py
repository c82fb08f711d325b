"""Small kernel-side helpers the tests share: bring an HBM input on chip, return a tile
to HBM, look at the record, make a chip file variant, record a matmul tutorial
variant, run a kernel with and without the instructions' check memos, call a function
inside a kernel."""
import importlib.resources
import json

import numpy as np

import trnsim
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


def tutorial_run(variant: str, chip: str, K: int = 1024, M: int = 256, N: int = 1024):
    """The timing-only Run of a variant of the legacy matmul tutorial
    (examples/legacy/matmul_tutorial.py) at K x M x N in bf16."""
    import ml_dtypes

    from trnsim.examples import load_example
    from trnsim.legacy.jit import run_legacy
    kernel = load_example("legacy/matmul_tutorial").VARIANTS[variant]
    kw = {"TILES_IN_BLOCK_M": M // 128} if variant.startswith("block_mnk") else {}
    bf = ml_dtypes.bfloat16
    return run_legacy(kernel.fn, (np.zeros((K, M), bf), np.zeros((K, N), bf)), kw,
                      chip=chip, numerics=False)[1]


def kept_as_fresh(kernel, args, **options):
    """`kernel(*args, forget)` run with its instructions' check memos as they fill
    (forget=False) and with them cleared before each call it makes (forget=True):
    asserts both runs record the same instructions and, with numerics, write the same
    output bytes; returns the first run's (outputs, records), a record being an
    instruction's (engine, opcode, attrs, reads, writes)."""
    runs = []
    for forget in (False, True):
        out, run = trnsim.run_kernel(lambda *a: kernel(*a, forget), args, **options)
        runs.append((out, [(i.engine, i.opcode, i.attrs, i.reads, i.writes)
                           for i in run.program.instructions]))
    (kept, records), (fresh, fresh_records) = runs
    assert records == fresh_records
    if options.get("numerics", True):
        assert np.asarray(kept).tobytes() == np.asarray(fresh).tobytes()
    return kept, records


def inside_a_kernel(fn):
    """What fn(x) returns, called inside a timing-only kernel whose input x is an fp32
    [128, 64] HBM tensor."""
    box = {}

    def kernel(x):
        box["r"] = fn(x)
    trnsim.run_kernel(kernel, (np.zeros((128, 64), np.float32),), numerics=False)
    return box["r"]
