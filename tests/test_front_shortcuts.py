"""The current front end's shortcuts against its general paths: a 2-D `t[:, a:b]` view
made inline in `NkiTensor.__getitem__` (machine/tensor.py) is the view the general
indexing makes, attribute for attribute; isa/engines.py's candidate engines are those
of the ISA rules written out here as plain sets."""
import itertools

import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.isa import engines
from trnsim.machine.errors import NkiValidationError


def _general(t, key):
    """t[key] through the general path (no 2-D shortcut)."""
    return t._index_static(tuple(key) + (slice(None),) * (t.ndim - len(key)))[0]


BOUNDS = [None, 0, 1, 5, 63, 64, -1, -3, -64, 65, -70, True]


def test_column_views_match_the_general_path():
    seen = {"fast": 0}

    def kernel():
        base = nl.ndarray((8, 64), dtype=nl.float32, buffer=nl.sbuf, name="tile")
        unnamed = nl.ndarray((4, 64), dtype=nl.bfloat16, buffer=nl.psum)
        # a view with an offset and a strided free dim
        inner = nl.ndarray((8, 4, 32), dtype=nl.float32, buffer=nl.sbuf)[:, 1, :]
        for t in (base, unnamed, inner):
            n = t.shape[1]
            for a, b in itertools.product(BOUNDS, BOUNDS):
                key = (slice(None), slice(a, b))
                try:
                    want = _general(t, key)
                except NkiValidationError as e:
                    want = e
                try:
                    got = t[key]
                except NkiValidationError as e:
                    got = e
                if isinstance(want, Exception):
                    assert isinstance(got, Exception), key
                    assert got.bare_message == want.bare_message, key
                    continue
                assert vars(got) == vars(want), key
                assert list(vars(got)) == list(vars(want)), key
                start = 0 if a is None else (a + n if type(a) is int and a < 0 else a)
                stop = n if b is None else (b + n if type(b) is int and b < 0 else b)
                if type(a) is not bool and 0 <= start < stop <= n:
                    seen["fast"] += 1
        # a stepped or partial-row key is not the shortcut's: the same as the general path
        for key in ((slice(None), slice(0, 8, 2)), (slice(0, 4), slice(0, 8)),
                    (slice(None, None, 1), slice(2, 9)), (slice(None), slice(-9, -2)),
                    (slice(1, 3), slice(None)), (0, slice(1, 4)), (slice(None), 3)):
            assert vars(base[key]) == vars(_general(base, key))
    trnsim.run_kernel(kernel, ())
    assert seen["fast"] > 50  # (the shortcut was exercised)


def _reference(opcode, attrs, gen, own, psum, indirect, src_dtype, dst_dtype):
    """The ISA engine rules (isa/engines.py's table) as sets."""
    ok = set()
    if opcode == "tensor_tensor":
        if attrs.get("op_kind") == "bitvec":
            ok = {"vector"}
        elif attrs.get("int_exact"):
            ok = {"gpsimd"}
        else:
            ok = {"vector"}
            if attrs["op"] in ("add", "multiply", "power") and not psum:
                ok.add("gpsimd")
            if attrs["op"] == "power":
                ok.discard("vector")
    elif opcode == "tensor_scalar":
        if attrs.get("op_kind") == "bitvec" or attrs.get("int_exact"):
            ok = {own}
        else:
            ops = [o for o in (attrs["op0"], attrs["op1"]) if o is not None]
            ok = {"vector"}
            if gen == 3 and (attrs["op0"], attrs["op1"]) in {
                    ("multiply", "add"), ("multiply", None), ("add", None)}:
                ok.add("scalar")
            elif gen >= 4 and all(o in {"add", "multiply", "rsqrt", "reciprocal", "abs"}
                                  for o in ops):
                ok.add("scalar")
            if all(o == "rsqrt" for o in ops) and not psum:
                ok.add("gpsimd")
    elif opcode == "tensor_copy":
        ok = {"vector"}
        if gen >= 3 and not (src_dtype == dst_dtype and src_dtype in ("int32", "uint32")):
            ok.add("scalar")
        if not psum and not indirect:
            ok.add("gpsimd")
    elif opcode == "memset":
        ok = {"vector"} if psum else {"vector", "gpsimd"}
    return (own, *[e for e in ("vector", "scalar", "gpsimd") if e in ok and e != own])


class _Acc:
    def __init__(self, role, space, dtype, indirect=False):
        self.role, self.space, self.dtype, self.indirect = role, space, dtype, indirect


class _Ins:
    def __init__(self, opcode, attrs, gen, own, reads, writes):
        self.opcode, self.attrs, self.generation, self.engine = opcode, attrs, gen, own
        self.reads, self.writes = reads, writes


OPS = ["add", "multiply", "power", "subtract", "rsqrt", "abs", "maximum", None]


def _cases():
    for gen, own, psum, indirect in itertools.product(
            (2, 3, 4), ("vector", "scalar", "gpsimd"), (False, True), (False, True)):
        for op, kind, exact in itertools.product(OPS[:-1], ("arith", "bitvec"),
                                                 (False, True)):
            yield "tensor_tensor", dict(op=op, op_kind=kind, int_exact=exact), gen, own, \
                psum, indirect, "float32", "float32"
        for op0, op1, kind in itertools.product(OPS[:-1], OPS, ("arith", "bitvec")):
            yield "tensor_scalar", dict(op0=op0, op1=op1, op_kind=kind, int_exact=False), \
                gen, own, psum, indirect, "float32", "float32"
        for s, d in itertools.product(("int32", "uint32", "float32"), repeat=2):
            yield "tensor_copy", {}, gen, own, psum, indirect, s, d
        yield "memset", {}, gen, own, psum, indirect, "float32", "float32"


def test_candidates_match_the_rules_as_sets():
    n = 0
    for opcode, attrs, gen, own, psum, indirect, sd, dd in _cases():
        space = "psum" if psum else "sbuf"
        reads = [_Acc("src", "sbuf", sd, indirect), _Acc("data", space, sd)]
        writes = [_Acc("dst", "sbuf", dd)]
        ins = _Ins(opcode, attrs, gen, own, reads, writes)
        want = _reference(opcode, attrs, gen, own, psum, indirect and opcode == "tensor_copy"
                          or indirect, sd, dd)
        assert engines.candidates(ins) == want, (opcode, attrs, gen, own, psum, indirect)
        n += 1
    assert n > 1000


def test_candidates_in_a_kernel_do_not_depend_on_the_memo():
    """The same unpinned instructions give the same candidates whether the memo of
    (own engine, rule's set) was filled before or not."""
    def body():
        x = nl.ndarray((128, 64), dtype=np.float32, buffer=nl.sbuf)
        p = nl.ndarray((128, 64), dtype=np.float32, buffer=nl.psum)
        nisa.memset(dst=x, value=1.0)
        nisa.memset(dst=p, value=0.0)
        nisa.tensor_copy(dst=x, src=p)
        nisa.tensor_tensor(dst=x, data1=x, data2=x, op=nl.multiply)
        nisa.tensor_scalar(dst=x, data=x, op0=nl.rsqrt, operand0=0.0)

    def engines_of():
        _, run = trnsim.run_kernel(body, (), chip="trn2", numerics=False)
        return [i.attrs.get("engines") for i in run.program]
    engines._ORDERED.clear()
    first = engines_of()
    assert engines._ORDERED  # (filled)
    assert engines_of() == first
    assert first[:2] == [("vector", "gpsimd"), ("vector",)]
