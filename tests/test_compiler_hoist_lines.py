"""Hoisting (trnsim/compiler/hoist.py) where one source line issues loads of several
kinds: a load repeats the previous *plain* load of its line, so a cast load from the
same line in between neither stays a candidate nor breaks the repeat; and a plain load
of other bytes in between does break it. Expectations worked out by hand from the
kernel."""
from __future__ import annotations

import ml_dtypes
import numpy as np

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl

G = 5


def _load(dst, src):
    nisa.dma_copy(dst=dst, src=src)  # the one source line of every load below


@trnsim.nki.jit
def cast_between_repeats(x, w):
    """Per iteration: w into `kept` (plain, the same bytes each time: hoisted), w into a
    bf16 tile (a cast: reloaded), x[g] from another line."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    kept = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
    for g in range(x.shape[0]):
        _load(kept, w)
        wb = nl.ndarray((128, 512), nl.bfloat16, buffer=nl.sbuf)
        _load(wb, w)
        t = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=t, src=x[g])
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=t, data2=kept, op=nl.add)
        b = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=b, data1=a, data2=wb, op=nl.multiply)
        nisa.dma_copy(dst=out[g], src=b)
    return out


@trnsim.nki.jit
def other_bytes_between(x, w):
    """Per iteration: w, then x[g], both through one line into `kept`: each load's
    previous execution read other bytes, so none is hoisted."""
    out = nl.ndarray(x.shape, nl.float32, buffer=nl.shared_hbm)
    for g in range(x.shape[0]):
        kw = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        _load(kw, w)
        kx = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        _load(kx, x[g])
        a = nl.ndarray((128, 512), nl.float32, buffer=nl.sbuf)
        nisa.tensor_tensor(dst=a, data1=kx, data2=kw, op=nl.add)
        nisa.dma_copy(dst=out[g], src=a)
    return out


def _hbm_loads(program):
    return [i for i in program.instructions if i.engine == "dma" and i.reads
            and i.reads[0].space == "hbm"]


def test_a_cast_load_between_repeats_keeps_neither_from_its_kind():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((G, 128, 512)).astype(np.float32)
    w = rng.standard_normal((128, 512)).astype(np.float32)
    prof = trnsim.profile(cast_between_repeats, x, w, chip="trn2")
    wb = w.astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_allclose(prof.outputs, (x + w) * wb, rtol=1e-6)
    loads = _hbm_loads(prof.program)
    helper = [i for i in loads if i.location.function == "_load"]
    plain = [i for i in helper if not i.attrs.get("cast")]
    casts = [i for i in helper if i.attrs.get("cast")]
    # the w load into `kept` once (repeated G - 1 times), every cast, every x tile
    assert [i.attrs.get("hoisted_repeats") for i in plain] == [G - 1]
    assert len(casts) == G and not any(i.attrs.get("hoisted_repeats") for i in casts)
    assert len(loads) == 1 + G + G
    # the kept load's index is where the first iteration issued it: before its cast
    assert plain[0].index < casts[0].index
    assert [i.index for i in prof.program.instructions] == \
        list(range(len(prof.program.instructions)))


def test_a_plain_load_of_other_bytes_between_breaks_the_repeat():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((G, 128, 512)).astype(np.float32)
    w = rng.standard_normal((128, 512)).astype(np.float32)
    prof = trnsim.profile(other_bytes_between, x, w, chip="trn2")
    np.testing.assert_allclose(prof.outputs, x + w, rtol=1e-6)
    loads = _hbm_loads(prof.program)
    assert len(loads) == 2 * G
    assert not any(i.attrs.get("hoisted_repeats") for i in loads)
