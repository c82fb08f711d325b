"""Reductions: tensor_reduce (Vector Engine, trailing free axes), tensor_partition_reduce
(GpSimd, across partitions), and the batch-norm statistics pair bn_stats / bn_aggr.

Arithmetic reductions fold in fp32 in element order (the streaming order of an engine
lane: ((x0 op x1) op x2) ...); when data and dst are both integer types they are
computed exactly instead (as the elementwise instructions do). Bitvec reductions act
on the stored bits. bn_stats / bn_aggr compute in float64 and round once to fp32.
"""
from __future__ import annotations

import math

import numpy as np

from ..machine.errors import describe
from ..machine.tensor import NkiTensor
from ..numerics.cast import to_fp32
from .accumulate import sequential_fold
from .base import ChecksMemo, Instr, free_size
from .ops import alu, op_name

_ARITH_REDUCE = ("add", "subtract", "multiply", "maximum", "minimum", "abs_max", "abs_min")
_LOGICAL_REDUCE = ("logical_and", "logical_or", "logical_xor")
_BITVEC_REDUCE = ("bitwise_and", "bitwise_or", "bitwise_xor")
BN_STATS_FMAX = 512


def fold_fp32(name: str, v: np.ndarray) -> np.ndarray:
    """Reduce the last axis of fp32 `v` with ALU operator `name`, in element order."""
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(all="ignore"):
        if name == "add":
            return _in_order(np.add, v)
        if name == "subtract":
            return _in_order(np.add, np.concatenate([v[..., :1], -v[..., 1:]], axis=-1))
        if name == "multiply":
            return _in_order(np.multiply, v)
        # (the ufuncs' reduce: what np.max / np.min call, without their Python wrapper)
        if name == "maximum":
            return np.maximum.reduce(v, axis=-1)
        if name == "minimum":
            return np.minimum.reduce(v, axis=-1)
        if name == "abs_max":
            return np.maximum.reduce(np.abs(v), axis=-1)
        if name == "abs_min":
            return np.minimum.reduce(np.abs(v), axis=-1)
        nz = v != 0
        if name == "logical_and":
            return nz.all(axis=-1).astype(np.float32)
        if name == "logical_or":
            return nz.any(axis=-1).astype(np.float32)
        if name == "logical_xor":
            return (nz.sum(axis=-1) % 2).astype(np.float32)
    raise ValueError(name)


def _in_order(ufunc, v: np.ndarray) -> np.ndarray:
    """`ufunc` folded along the last axis of fp32 `v` in element order."""
    return sequential_fold(ufunc, v.reshape(-1, v.shape[-1])).reshape(v.shape[:-1])


def fold_int(name: str, v: np.ndarray) -> np.ndarray:
    """Exact integer reduction of the last axis (int64)."""
    v = np.asarray(v).astype(np.int64)
    if name == "add":
        return v.sum(axis=-1)
    if name == "subtract":
        return v[..., 0] - v[..., 1:].sum(axis=-1)
    if name == "multiply":
        return np.prod(v, axis=-1)
    if name == "maximum":
        return v.max(axis=-1)
    if name == "minimum":
        return v.min(axis=-1)
    if name == "abs_max":
        return np.abs(v).max(axis=-1)
    if name == "abs_min":
        return np.abs(v).min(axis=-1)
    nz = v != 0
    if name == "logical_and":
        return nz.all(axis=-1).astype(np.int64)
    if name == "logical_or":
        return nz.any(axis=-1).astype(np.int64)
    if name == "logical_xor":
        return nz.sum(axis=-1) % 2
    raise ValueError(name)


def fold_bits(name: str, raw: np.ndarray) -> np.ndarray:
    ufunc = {"bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or,
             "bitwise_xor": np.bitwise_xor}[name]
    return ufunc.reduce(np.asarray(raw), axis=-1)


def _axes(ins: Instr, axis, ndim: int) -> tuple[int, ...]:
    if isinstance(axis, (list, tuple)):
        items = list(axis)
    else:
        items = [axis]
    ins.require(len(items) > 0, "axis must name at least one free axis")
    out = []
    for a in items:
        try:
            a = int(a)
        except (TypeError, ValueError):
            ins.fail(f"axis={axis!r}: axes must be integers")
        a = a + ndim if a < 0 else a
        if not 0 <= a < ndim:  # (each message made only where it is raised)
            ins.fail(f"axis {a} is out of range for a {ndim}-D data tile")
        out.append(a)
    out = sorted(out)
    if len(set(out)) != len(out):
        ins.fail(f"axis={axis!r} repeats an axis")
    if 0 in out:
        ins.fail(f"axis={axis!r}: axis 0 is the partition axis and cannot be reduced by "
                 "tensor_reduce (use nc_transpose, a matmul against ones, or "
                 "tensor_partition_reduce)")
    if out != list(range(out[0], ndim)):
        ins.fail(f"axis={axis!r}: the reduced axes must be the last contiguous free axes, "
                 f"ending at the final axis {ndim - 1} (e.g. ({ndim - 1},) or "
                 f"({', '.join(str(i) for i in range(max(1, ndim - 2), ndim))}))")
    return tuple(out)


def _store_int_or_bits(ins, dst, res, src_dtype, bits: bool):
    if bits and res.dtype.itemsize == dst.dtype.itemsize:
        ins.write("dst", dst, res.view(dst.dtype.np).reshape(dst.shape), raw=True)
    else:
        ins.write("dst", dst, res.astype(np.int64).reshape(dst.shape))


def tensor_reduce(dst, op, data, axis, negate=False, keepdims=False, name=None):
    """Reduce the trailing free axes `axis` of data with `op` on the Vector Engine."""
    with Instr("tensor_reduce", None, default="vector") as ins:
        key = _reduce_key(dst, op, data, axis, negate, keepdims)
        checked = _CHECKED.found(key, ins.chip)
        if checked is None:
            checked = _CHECKED.keep(key, ins.chip, _check_reduce(
                ins, dst, op, data, axis, negate, keepdims))
        attrs, aop, out_elems = checked
        ins.attrs.update(attrs)  # (every check passed for these operands and settings)
        raw = ins.read_view("data", data)
        if raw is None:
            ins.write("dst", dst, None)
            return
        P = data.shape[0]
        rows = raw.reshape(P, out_elems, -1)
        if aop.name in _BITVEC_REDUCE:
            _store_int_or_bits(ins, dst, fold_bits(aop.name, rows), data.dtype, True)
        elif data.dtype.is_int and dst.dtype.is_int:
            res = fold_int(aop.name, rows)
            _store_int_or_bits(ins, dst, -res if negate else res, data.dtype, False)
        else:
            res = fold_fp32(aop.name, to_fp32(rows))
            if negate:
                res = (res * np.float32(-1.0)).astype(np.float32)
            ins.write("dst", dst, res.reshape(dst.shape))


# `_reduce_key` -> (the record's attributes, the operator, out_elems)
_CHECKED = ChecksMemo()


def _reduce_key(dst, op, data, axis, negate, keepdims):
    """What `_check_reduce` reads, as a key (None where it is not kept: an operand that
    is not a plain static tensor, an axis or operator that does not hash)."""
    if type(dst) is not NkiTensor or type(data) is not NkiTensor or \
            dst.dyn is not None or data.dyn is not None:
        return None
    key = (dst.shape, dst.dtype, dst.buffer.space, data.shape, data.dtype,
           data.buffer.space, op, axis, bool(negate), bool(keepdims))
    try:
        hash(key)
    except TypeError:  # (an axis list, an unhashable operator)
        return None
    return key


def _check_reduce(ins: Instr, dst, op, data, axis, negate, keepdims):
    """tensor_reduce's checks of its operands and settings: (the record's attributes, the
    ALU operator, the output elements per partition)."""
    ins.operand("dst", dst)
    ins.operand("data", data)
    if data.ndim < 2:
        ins.fail(f"data {describe(data)} must have a free axis")
    axes = _axes(ins, axis, data.ndim)
    ins.same_partitions(("data", data), ("dst", dst))
    for role, t in (("data", data), ("dst", dst)):
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed types not allowed")
        if t.dyn is not None:
            ins.require_generation(4, f"tensor indirection on {role}")
    try:
        aop = alu(op)
    except (KeyError, TypeError):
        ins.fail(f"op={op!r} is not an ALU operator")
    legal = _ARITH_REDUCE + _LOGICAL_REDUCE + _BITVEC_REDUCE
    if aop.name not in legal:
        ins.fail(f"op={aop.name} is not a reduction operator; use one of "
                 f"{', '.join(legal)}")
    kept = data.shape[:axes[0]]
    out_elems = int(math.prod(kept[1:]))
    if free_size(dst) != out_elems:
        ins.fail(f"dst {describe(dst)} has {free_size(dst)} elements per partition; "
                 f"reducing axes {axes} of data {describe(data)} leaves {out_elems}")
    bitvec = aop.name in _BITVEC_REDUCE
    if bitvec:
        ins.require(data.dtype.is_int and dst.dtype.is_int,
                    f"bitvec op={aop.name} needs integer data and dst, got "
                    f"{describe(data)} and {describe(dst)}")
        ins.require(not negate, f"negate=True applies only to arithmetic operators, not "
                    f"{aop.name}")
    attrs = dict(op=aop.name, op_kind=aop.kind, axes=axes, negate=bool(negate),
                 keepdims=bool(keepdims),
                 reduced_elems=int(math.prod(data.shape[axes[0]:])))
    return attrs, aop, out_elems


_PARTITION_OPS = ("add", "average", "maximum", "bitwise_or", "bitwise_and")


def tensor_partition_reduce(dst, op, data, name=None):
    """Reduce across the partitions of data (GpSimd Engine): dst[1, F] = op over p of
    data[p, F]. Ops: add, average, maximum, bitwise_or, bitwise_and."""
    with Instr("tensor_partition_reduce", None, default="gpsimd") as ins:
        ins.operand("dst", dst)
        ins.operand("data", data)
        ins.require(dst.shape[0] == 1, f"dst {describe(dst)} must have one partition (the "
                    "reduction over the partitions of data)")
        ins.same_elements("data", data, "dst", dst)
        try:
            name_ = op_name(op)
        except TypeError:
            ins.fail(f"op={op!r} is not an ALU operator")
        if name_ in ("average", "mean"):
            opn = "average"
        else:
            try:
                opn = alu(op).name
            except (KeyError, TypeError):
                ins.fail(f"op={op!r} is not an ALU operator")
        ins.require(opn in _PARTITION_OPS, f"op={opn} is not supported by "
                    f"tensor_partition_reduce; use one of {', '.join(_PARTITION_OPS)}")
        bitvec = opn.startswith("bitwise")
        if bitvec:
            ins.require(data.dtype.is_int and dst.dtype.is_int,
                        f"bitvec op={opn} needs integer data and dst")
        ins.attrs.update(op=opn, partitions=data.shape[0])
        raw = ins.read("data", data)
        if raw is None:
            ins.write("dst", dst, None)
            return
        cols = raw.reshape(data.shape[0], -1).T  # (F, P): fold over partitions
        if bitvec:
            _store_int_or_bits(ins, dst, fold_bits(opn, cols), data.dtype, True)
            return
        if data.dtype.is_int and dst.dtype.is_int and opn != "average":
            _store_int_or_bits(ins, dst, fold_int(opn, cols), data.dtype, False)
            return
        v = cols.astype(np.float32)
        if opn == "average":
            res = (fold_fp32("add", v) / np.float32(data.shape[0])).astype(np.float32)
        else:
            res = fold_fp32(opn, v)
        ins.write("dst", dst, res.reshape(dst.shape))


def bn_stats(dst, data, name=None):
    """Per partition, for the even then the odd elements of data (flattened free axes,
    at most 512): [count, mean, variance * count] (6 values)."""
    with Instr("bn_stats", None, default="vector") as ins:
        check_data_dst_free(ins, data, dst)
        n = free_size(data)
        if n > BN_STATS_FMAX:
            ins.fail(f"data {describe(data)} has {n} elements per "
                     f"partition; bn_stats accepts at most {BN_STATS_FMAX} "
                     "(nl.tile_size.bn_stats_fmax): split it and aggregate with bn_aggr")
        if free_size(dst) != 6:
            ins.fail(f"dst {describe(dst)} must hold 6 elements per "
                     f"partition (count, mean, var*count for even then odd elements), has "
                     f"{free_size(dst)}")
        ins.attrs.update(elements=n)
        x = ins.read_fp32("data", data)
        if x is None:
            ins.write("dst", dst, None)
            return
        v = x.reshape(data.shape[0], -1).astype(np.float64)
        out = np.zeros((data.shape[0], 6), dtype=np.float64)
        for k, part in enumerate((v[:, 0::2], v[:, 1::2])):
            c = part.shape[1]
            if c == 0:
                continue
            with np.errstate(all="ignore"):
                mean = part.mean(axis=1)
                m2 = ((part - mean[:, None]) ** 2).sum(axis=1)
            out[:, 3 * k] = c
            out[:, 3 * k + 1] = mean
            out[:, 3 * k + 2] = m2
        ins.write("dst", dst, out.astype(np.float32).reshape(dst.shape))


def check_data_dst_free(ins: Instr, data, dst):
    ins.operand("dst", dst)
    ins.operand("data", data)
    ins.same_partitions(("data", data), ("dst", dst))
    for role, t in (("data", data), ("dst", dst)):
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed types not allowed")
        if t.dyn is not None:
            ins.fail(f"{role} {describe(t)} cannot use tensor indirection")


def bn_aggr(dst, data, name=None):
    """Combine (count, mean, var*count) triples (one or more bn_stats outputs) into
    [mean, variance] per partition."""
    with Instr("bn_aggr", None, default="vector") as ins:
        check_data_dst_free(ins, data, dst)
        n = free_size(data)
        if n % 3 != 0:
            ins.fail(f"data {describe(data)} has {n} elements per partition; "
                     "bn_aggr needs a multiple of 3 (count, mean, var*count triples from "
                     "bn_stats)")
        if free_size(dst) != 2:
            ins.fail(f"dst {describe(dst)} must hold 2 elements per "
                     f"partition (mean, variance), has {free_size(dst)}")
        ins.attrs.update(elements=n, groups=n // 3)
        x = ins.read_fp32("data", data)
        if x is None:
            ins.write("dst", dst, None)
            return
        t = x.reshape(data.shape[0], -1, 3).astype(np.float64)
        cnt, mean, m2 = t[..., 0], t[..., 1], t[..., 2]
        with np.errstate(all="ignore"):
            use = cnt > 0
            total = np.where(use, cnt, 0.0).sum(axis=1)
            safe = np.where(total > 0, total, 1.0)
            mu = np.where(use, cnt * mean, 0.0).sum(axis=1) / safe
            dev = np.where(use, m2 + cnt * (mean - mu[:, None]) ** 2, 0.0).sum(axis=1)
            var = dev / safe
        out = np.stack([mu, var], axis=1)
        ins.write("dst", dst, out.astype(np.float32).reshape(dst.shape))


__all__ = ["tensor_reduce", "tensor_partition_reduce", "bn_stats", "bn_aggr"]
