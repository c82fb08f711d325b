"""Elementwise instructions on the Vector/Scalar/GpSimd engines: fp32 arithmetic, cast
on write; bitvec operators on raw bits; integer-only operands computed exactly."""
from __future__ import annotations

import numpy as np

from ..machine.errors import describe
from .base import Instr, flat, free_size
from .enums import engine as Engine
from .ops import alu, apply_alu

_COMPUTE_ENGINES = ("vector", "scalar", "gpsimd")


def _int_exact(*dtypes) -> bool:
    return all(d.is_int for d in dtypes)


def _result(op, raw_a, raw_b, a_dtype, b_dtype):
    """Apply op to stored values: bits for bitvec ops, exact ints when every operand is
    an integer, fp32 otherwise."""
    if op.kind == "bitvec":
        return apply_alu(op, raw_a, raw_b)
    if _int_exact(a_dtype, b_dtype) and op.kind != "compare" and op.name not in (
            "divide", "power", "fmod", "mod"):
        res = op(raw_a.astype(np.float64), raw_b.astype(np.float64))
        return np.asarray(res).astype(np.int64)
    return op(np.asarray(raw_a).astype(np.float32), np.asarray(raw_b).astype(np.float32))


def _store_bits(ins: Instr, role, dst, bits: np.ndarray):
    """Store a bitvec result: raw when dst has the same width, else as an integer value."""
    if bits.dtype.itemsize == dst.dtype.itemsize:
        ins.write(role, dst, bits.view(dst.dtype.np), raw=True)
    else:
        ins.write(role, dst, bits.astype(np.int64))


def tensor_tensor(dst, data1, data2, op, engine=Engine.unknown, name=None):
    """dst = op(data1, data2), elementwise; equal partitions and element counts."""
    with Instr("tensor_tensor", engine, default="vector", allowed=_COMPUTE_ENGINES,
               op=getattr(op, "__name__", str(op))) as ins:
        ins.operand("dst", dst)
        ins.operand("data1", data1)
        ins.operand("data2", data2)
        ins.same_partitions(("data1", data1), ("data2", data2), ("dst", dst))
        ins.same_elements("data1", data1, "data2", data2)
        ins.same_elements("data1", data1, "dst", dst)
        ins.require(not (data1.space == "psum" and data2.space == "psum"),
                    f"data1 {describe(data1)} and data2 {describe(data2)} cannot both be "
                    "in PSUM")
        try:
            aop = alu(op)
        except (KeyError, TypeError):
            ins.fail(f"op={op!r} is not an ALU operator")
        ins.attrs["op_kind"] = aop.kind
        a, b = ins.read("data1", data1), ins.read("data2", data2)
        if not ins.numerics:
            ins.write("dst", dst, None)
            return
        res = _result(aop, flat(a), flat(b).reshape(flat(a).shape), data1.dtype, data2.dtype)
        if aop.kind == "bitvec":
            _store_bits(ins, "dst", dst, res.reshape(dst.shape))
        else:
            ins.write("dst", dst, res.reshape(dst.shape))


def tensor_copy(dst, src, engine=Engine.unknown, name=None):
    """dst = src: bit-exact when dtypes match, otherwise through fp32."""
    with Instr("tensor_copy", engine, default="vector", allowed=_COMPUTE_ENGINES) as ins:
        ins.operand("dst", dst)
        ins.operand("src", src)
        ins.same_partitions(("src", src), ("dst", dst))
        ins.same_elements("src", src, "dst", dst)
        raw = ins.read("src", src)
        if raw is None:
            ins.write("dst", dst, None)
        elif src.dtype.np == dst.dtype.np and src.dtype.kind == dst.dtype.kind:
            ins.write("dst", dst, raw.reshape(dst.shape), raw=True)
        elif src.dtype.is_int and dst.dtype.is_int:
            ins.write("dst", dst, raw.astype(np.int64).reshape(dst.shape))
        else:
            ins.write("dst", dst, raw.astype(np.float32).reshape(dst.shape))


def memset(dst, value, engine=Engine.unknown, name=None):
    """Fill dst with a constant (the value must be representable in dst's dtype)."""
    with Instr("memset", engine, default="vector", allowed=_COMPUTE_ENGINES) as ins:
        ins.operand("dst", dst)
        if dst.dtype.is_x4:
            ins.require(value == 0, f"memset of packed type {dst.dtype} accepts only 0")
            ins.write("dst", dst, np.zeros(dst.shape, dst.dtype.np), raw=True)
            return
        if dst.dtype.is_int:
            ins.require(float(value) == int(value),
                        f"value {value!r} does not match integer dtype {dst.dtype} of dst")
            ins.write("dst", dst, np.int64(int(value)))
        else:
            ins.write("dst", dst, np.float32(value))


__all__ = ["tensor_tensor", "tensor_copy", "memset", "free_size"]
