"""Elementwise and select instructions on the Vector, Scalar and GpSimd engines:
tensor_tensor, tensor_scalar, scalar_tensor_tensor, tensor_copy, tensor_copy_predicated,
memset, iota, affine_select, range_select, select_reduce, reciprocal,
tensor_tensor_scan, tensor_scalar_cumulative, tensor_scalar_reduce.

Numerics (each choice is listed in docs/numerics.md):
- Arithmetic operators read every operand into fp32, compute in fp32 (IEEE, RNE) and
  cast the result to dst's dtype with RNE on write (fp8 overflow per format: inf for
  e4m3/e5m2, NaN for e4m3fn; float -> int saturates, NaN -> 0). Comparisons and logical
  operators give 1.0 / 0.0. Scalar operands (constants, [P, 1] tiles) are fp32.
- Bitvec operators (bitwise_and/or/xor, invert, left_shift, right_shift) need integer
  dtypes (view float data with `.view(nl.int32)`) and act on the stored bits: operands
  are value-extended to 64 bits, right_shift is logical on the shifted operand's own
  width, shift amounts >= 64 (or negative) give 0, and the result keeps the low bits of
  dst's width. Same-width operands are bit-exact.
- Integer-native arithmetic: `tensor_tensor` on GpSimd (its default engine when data1,
  data2 and dst are all int32/uint32 and none is in PSUM) with integer inputs and dst,
  and `tensor_scalar` address arithmetic (int32/uint32 data and dst, add/subtract/multiply
  by integer operands) compute exactly in 64 bits and wrap to dst's width (two's
  complement), like a native integer ALU. On the Vector/Scalar engines integer operands
  go through fp32 (exact below 2**24) and the cast to an integer dst saturates.
- Fused reductions fold the fp32 results (before the cast to dst) sequentially in
  element order into the engine's accumulator registers (see isa/accumulate.py); a
  `reduce_res` is written by a separate `read_accumulator` instruction on the same
  engine, as the hardware's read-out of its accumulators.
"""
from __future__ import annotations

import math

import numpy as np

from ..machine.access import row_loops
from ..machine.errors import UnsupportedError, describe
from ..machine.tensor import NkiTensor
from ..numerics.cast import to_fp32
from . import accumulate as acc
from .base import UNKEPT, ChecksMemo, Instr, _is_number, flat, free_size, operand_key
from .enums import engine as Engine, reduce_cmd as ReduceCmd
from .ops import alu

_COMPUTE_ENGINES = ("vector", "scalar", "gpsimd")
_CMP_OPS = ("equal", "not_equal", "greater", "greater_equal", "less", "less_equal")
_RANGE_CMP_OPS = ("equal", "less", "less_equal", "greater", "greater_equal")
_INT_NATIVE = {"add", "subtract", "multiply", "maximum", "minimum", "abs_max", "abs_min",
               "bypass", "logical_and", "logical_or", "logical_xor", *_CMP_OPS}
_ADDR_OPS = {"add", "subtract", "multiply"}
_INT32 = ("int32", "uint32")
FP32_MIN = float(np.finfo(np.float32).min)


class _Named(str):
    """An operator default given by name (`cmp_op=equal`, `reduce_op=maximum`), shown as
    that name; `ops.alu` resolves it like `nl.equal`."""

    @property
    def __name__(self):  # noqa: A003 - mirrors a function's __name__
        return str(self)


equal = _Named("equal")
maximum = _Named("maximum")


# -- shared checks ---------------------------------------------------------------

def _alu_op(ins: Instr, op, role: str, kinds=None, what: str = "", unary=None):
    """Resolve `op` (an nl function, a NumPy ufunc or a name) to an ALU operator of one
    of `kinds`; `unary` True/False requires a unary/binary operator."""
    if op is None:
        ins.fail(f"{role} is required (an ALU operator such as nl.add)")
    try:
        a = alu(op)
    except (KeyError, TypeError):
        ins.fail(f"{role}={getattr(op, '__name__', op)!r} is not an ALU operator (see the "
                 "nki.isa ALU table: add, subtract, multiply, maximum, bitwise_and, ...)")
    if kinds is not None and a.kind not in kinds:
        ins.fail(f"{role}={a.name} is a {a.kind} operator; {ins.opcode} takes "
                 f"{what or ' / '.join(kinds)} operators")
    if unary is True and not a.unary:
        ins.fail(f"{role}={a.name} is a binary operator; a unary one is expected here")
    if unary is False and a.unary:
        ins.fail(f"{role}={a.name} is a unary operator; {ins.opcode} needs a binary one "
                 "here")
    return a


def _op_in(ins: Instr, a, role: str, names):
    if a.name not in names:
        ins.fail(f"{role}={a.name} is not supported by {ins.opcode}; use "
                 f"{' / '.join('nl.' + n for n in names)}")


def _check_io(ins: Instr, *named, same_elements=True, buffers=("sbuf", "psum")):
    """Operands of an elementwise instruction: on chip, no packed MX types, equal
    partition counts and (unless told otherwise) equal elements per partition."""
    for role, t in named:
        ins.operand(role, t, buffers)
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed MX types are only "
                     "read by nc_matmul_mx / written by quantize_mx (and copied as-is)")
        if t.dyn is not None:
            ins.require_generation(4, f"tensor indirection on {role}")
    ins.same_partitions(*named)
    if same_elements:
        (r0, t0), *rest = named
        for r, t in rest:
            ins.same_elements(r0, t0, r, t)


def _not_both_psum(ins: Instr, a_role, a, b_role, b):
    if a.space == "psum" and b.space == "psum":
        ins.fail(f"{a_role} {describe(a)} and {b_role} {describe(b)} cannot both be in PSUM")


def _int_dtypes(ins: Instr, why: str, *named):
    for role, t in named:
        ins.require(t.dtype.is_int, f"{role} {describe(t)}: {why} need integer dtypes "
                    "(reinterpret float data with .view(nl.int32) / .view(nl.uint16))")


def _per_partition(ins: Instr, role: str, value, partitions: int):
    """A constant or a [P, 1] tile operand. Returns (kind, value): ('none', None),
    ('const', the Python number) or ('tensor', stored values (P, 1) or None without
    numerics). The tile's dtype is kept in `ins.attrs` by the caller."""
    if value is None:
        return "none", None
    if isinstance(value, NkiTensor):
        t = ins.operand(role, value)
        if t.dyn is not None:
            ins.fail(f"{role} {describe(t)} cannot use tensor indirection")
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed MX type")
        if not (t.ndim >= 2 and t.shape[0] == partitions and free_size(t) == 1):
            ins.fail(f"{role} {describe(t)} must be a [{partitions}, 1] tile (one value per "
                     f"partition of the data) or a constant")
        return "tensor", _operand_values(ins, role, "tensor", t, partitions)
    if _is_number(value):
        return "const", value
    ins.fail(f"{role} must be a number or a [{partitions}, 1] tile, got {value!r}")


def _operand_values(ins: Instr, role: str, kind: str, value, partitions: int):
    """The values `_per_partition` gives for an operand of `kind` it checked: a tile's
    stored values (P, 1) (read now; None without numerics), a constant, or None."""
    if kind == "tensor":
        raw = ins.read(role, value)
        return None if raw is None else raw.reshape(partitions, 1)
    return value if kind == "const" else None


def _fp32(kind, value):
    """An operand from `_per_partition` as fp32 (None for none, or a tile without
    numerics)."""
    if value is None:
        return None
    if kind == "tensor":
        return to_fp32(value)
    if kind == "const":
        return np.float32(float(value))
    return None


def _is_integral(kind, value, t=None) -> bool:
    if kind == "const":
        return isinstance(value, (bool, int, np.integer)) or (
            isinstance(value, (float, np.floating)) and math.isfinite(value)
            and float(value).is_integer())
    if kind == "tensor":
        return t is not None and t.dtype.is_int
    return True


def _int_operand(ins: Instr, role: str, kind, value):
    """An integer operand: stored values of an integer tile, or an integral constant."""
    if kind == "tensor":
        return np.asarray(value).astype(np.int64)
    if kind == "const":
        ins.require(_is_integral(kind, value), f"{role}={value!r} must be an integer for "
                    "an integer (bitvec or address) operation")
        return int(value)
    return None


def _apply(a, lhs, rhs):
    with row_loops(lhs, rhs, errors="ignore"):
        return np.asarray(a(lhs, rhs), dtype=np.float32)


def _binary(a, x, s, reverse: bool):
    """a(x, s), or a(s, x) when reversed; a unary operator ignores s."""
    if a.unary:
        return _apply(a, x, None)
    return _apply(a, s, x) if reverse else _apply(a, x, s)


# Results computed straight into dst rows at least this long: NumPy's loop for a short
# strided row (a [P, 1] tile) picks another NaN than the contiguous loop where both
# operands are NaN; they agree from 16 elements on (tests/test_numerics_speed_*), and
# the threshold keeps a margin above that.
_INTO_MIN = 256


def _binary_into(a, x, s, reverse: bool, out):
    """`_binary` of fp32 operands, for an operator with a ufunc, computed into `out`:
    fp32 rows of the result's shape."""
    if out.strides[-1] != out.itemsize:  # (a strided loop: see _INTO_MIN)
        np.copyto(out, _binary(a, x, s, reverse))
        return out
    lhs, rhs = (s, x) if reverse else (x, s)
    with row_loops(lhs, rhs, out, errors="ignore"):
        return a.ufunc(lhs, rhs, out=out)


# -- integer arithmetic ------------------------------------------------------------

def _int_arith(name: str, a, b):
    """Exact integer arithmetic on int64 values (inputs within 32 bits)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    if name == "add":
        return a + b
    if name == "subtract":
        return a - b
    if name == "multiply":
        return a * b
    if name == "maximum":
        return np.maximum(a, b)
    if name == "minimum":
        return np.minimum(a, b)
    if name == "abs_max":  # the signed value of larger magnitude, b on a tie
        return np.where(np.abs(a) > np.abs(b), a, b)
    if name == "abs_min":
        return np.where(np.abs(a) < np.abs(b), a, b)
    if name == "bypass":
        return a + 0 * b
    if name in _CMP_OPS:
        return getattr(np, name)(a, b).astype(np.int64)
    if name == "logical_and":
        return ((a != 0) & (b != 0)).astype(np.int64)
    if name == "logical_or":
        return ((a != 0) | (b != 0)).astype(np.int64)
    if name == "logical_xor":
        return ((a != 0) ^ (b != 0)).astype(np.int64)
    raise ValueError(name)


def _unsigned_bits(x, width: int):
    """The low `width` bits of x (stored ints or a Python int) as uint64."""
    if isinstance(x, np.ndarray) and x.dtype.kind in "iub":
        u = np.dtype(f"u{x.dtype.itemsize}")
        return np.ascontiguousarray(x).view(u).astype(np.uint64)
    return np.asarray(np.asarray(x, np.int64) & ((1 << width) - 1)).astype(np.uint64)


def _bitvec(name: str, lhs, rhs, lhs_width: int):
    """A bitvec operator on stored integers: value-extended to 64 bits (right_shift:
    zero-extended from lhs_width bits). Returns uint64 bits."""
    if name == "invert":
        return np.invert(np.asarray(lhs, np.int64)).view(np.uint64)
    if name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        f = getattr(np, name)
        return f(np.asarray(lhs, np.int64), np.asarray(rhs, np.int64)).view(np.uint64)
    s = np.asarray(rhs, np.int64)
    ok = (s >= 0) & (s < 64)
    sh = np.where(ok, s, 0).astype(np.uint64)
    if name == "left_shift":
        v = np.asarray(lhs, np.int64).view(np.uint64) << sh
    else:  # logical right shift
        v = _unsigned_bits(lhs, lhs_width) >> sh
    return np.where(ok, v, np.uint64(0)).astype(np.uint64)


def _store_bits(bits, dst):
    """uint64 bits -> dst's storage type, keeping the low bits of dst's width."""
    u = np.dtype(f"u{dst.dtype.itemsize}")
    return np.asarray(bits, np.uint64).astype(u).view(dst.dtype.np)


# -- tensor_tensor -----------------------------------------------------------------

_IO_CHECKED = ChecksMemo()  # `_io_key` -> what the instruction's checks found


def _io_key(ins: Instr, *tensors, op=None):
    """What the checks of tensor_tensor, tensor_copy or reciprocal read of `ins`, its
    `tensors` and its operator, as a key (None where it is not kept: an operand that is
    not a static NkiTensor, an operator that does not hash)."""
    key = [ins.opcode, id(ins.chip), ins.engine, op]
    for t in tensors:
        if type(t) is not NkiTensor or t.dyn is not None:
            return None
        key.append((t.shape, t.dtype, t.buffer.space))
    key = tuple(key)
    if op is not None:
        try:
            hash(op)
        except TypeError:
            return None
    return key


def _kept_checks(ins: Instr, key, check):
    """What `check()` finds (it raises where a check fails), kept under `key`."""
    found = _IO_CHECKED.found(key, ins.chip)
    return found if found is not None else _IO_CHECKED.keep(key, ins.chip, check())


def _tt_default_engine(op, *tensors) -> str:
    try:
        name = alu(op).name
    except (KeyError, TypeError):
        return "vector"
    if name == "power":
        return "gpsimd"
    if all(str(getattr(t, "dtype", "")) in _INT32 for t in tensors) and not any(
            getattr(t, "space", None) == "psum" for t in tensors):
        return "gpsimd"
    return "vector"


def tensor_tensor(dst, data1, data2, op, engine=Engine.unknown, name=None):
    """dst = op(data1, data2), elementwise over equal partitions and equal elements per
    partition (no broadcasting). data1 and data2 cannot both be in PSUM."""
    default = _tt_default_engine(op, dst, data1, data2)
    with Instr("tensor_tensor", engine, default=default, allowed=("vector", "gpsimd"),
               name=name) as ins:
        a, bitvec, native = _kept_checks(
            ins, _io_key(ins, data1, data2, dst, op=op),
            lambda: _check_tensor_tensor(ins, dst, data1, data2, op))
        ins.attrs.update(op=a.name, op_kind=a.kind, int_exact=native or bitvec)
        r1, r2 = ins.read_view("data1", data1), ins.read_view("data2", data2)
        if r1 is None:
            ins.write("dst", dst, None)
            return
        x, y = flat(r1), flat(r2).reshape(flat(r1).shape)
        if bitvec:
            bits = _bitvec(a.name, x, y, data1.dtype.bits)
            ins.write("dst", dst, _store_bits(bits, dst).reshape(dst.shape), raw=True)
        elif native:
            ins.write("dst", dst, _int_arith(a.name, x, y).reshape(dst.shape))
        else:
            ins.write("dst", dst, _apply(a, to_fp32(x), to_fp32(y)).reshape(dst.shape))


def _check_tensor_tensor(ins: Instr, dst, data1, data2, op):
    """tensor_tensor's checks; (its ALU operator, whether it is a bitvec one, whether
    the GpSimd engine computes it natively in integers)."""
    _check_io(ins, ("data1", data1), ("data2", data2), ("dst", dst))
    _not_both_psum(ins, "data1", data1, "data2", data2)
    a = _alu_op(ins, op, "op", unary=False)
    if a.name == "power":
        ins.require(ins.engine == "gpsimd", f"op=power runs on the GpSimd engine, not "
                    f"engine={ins.engine}")
    bitvec = a.kind == "bitvec"
    if bitvec:
        _int_dtypes(ins, "bitvec operators", ("data1", data1), ("data2", data2),
                    ("dst", dst))
    native = (not bitvec and ins.engine == "gpsimd" and a.name in _INT_NATIVE
              and data1.dtype.is_int and data2.dtype.is_int and dst.dtype.is_int)
    return a, bitvec, native


# -- tensor_scalar -------------------------------------------------------------------

_SCALAR_ENGINE_PAIRS = {("multiply", "add"), ("multiply", None), ("add", None)}


def _check_operand_given(ins: Instr, a, role: str, value):
    if a.unary:
        if not (value is None or (not isinstance(value, NkiTensor) and value == 0)):
            ins.fail(f"{role} must be None or 0 with the unary operator {a.name}")
    elif value is None:
        ins.fail(f"{role} is required by the binary operator {a.name}")


def tensor_scalar(dst, data, op0, operand0, reverse0=False, op1=None, operand1=None,
                  reverse1=False, engine=Engine.unknown, name=None):
    """dst = (data op0 operand0) op1 operand1, each operand a constant or a [P, 1] tile
    broadcast along the free axes; reverse0/1 swap the operands of op0/op1."""
    with Instr("tensor_scalar", engine, default="vector", allowed=_COMPUTE_ENGINES,
               name=name) as ins:
        key = _scalar_key(ins, dst, data, op0, operand0, reverse0, op1, operand1, reverse1)
        checked = _SCALAR_CHECKED.found(key, ins.chip)
        if checked is None:
            a0, a1, k0, v0, k1, v1, bitvec, addr, attrs = _check_tensor_scalar(
                ins, dst, data, op0, operand0, reverse0, op1, operand1, reverse1)
            _SCALAR_CHECKED.keep(key, ins.chip, (a0, a1, k0, k1, bitvec, addr, attrs))
        else:  # (every check passed for these operands and settings: read the tiles)
            a0, a1, k0, k1, bitvec, addr, attrs = checked
            P = data.shape[0]
            v0 = _operand_values(ins, "operand0", k0, operand0, P)
            v1 = _operand_values(ins, "operand1", k1, operand1, P)
        ins.attrs.update(attrs)
        raw = ins.read_view("data", data)
        if raw is None:
            ins.write("dst", dst, None)
            return
        x = flat(raw)
        if bitvec:
            width = data.dtype.bits
            for a, k, v, rev, role in ((a0, k0, v0, reverse0, "operand0"),
                                       (a1, k1, v1, reverse1, "operand1")):
                if a is None:
                    continue
                s = _int_operand(ins, role, k, v)
                if rev and not a.unary:
                    bits = _bitvec(a.name, s, x, width)
                else:
                    bits = _bitvec(a.name, x, s, width)
                x = _store_bits(bits, dst)
                width = dst.dtype.bits
            ins.write("dst", dst, x.reshape(dst.shape), raw=True)
        elif addr:
            s0 = _int_operand(ins, "operand0", k0, v0)
            s1 = _int_operand(ins, "operand1", k1, v1)
            t = _int_arith(a0.name, *((s0, x) if reverse0 else (x, s0)))
            if a1 is not None:
                t = _int_arith(a1.name, *((s1, t) if reverse1 else (t, s1)))
            ins.write("dst", dst, t.reshape(dst.shape))
        else:
            t = to_fp32(x)
            a, s, rev = a0, _fp32(k0, v0), reverse0
            if a1 is not None:
                t = _binary(a, t, s, rev)
                a, s, rev = a1, _fp32(k1, v1), reverse1
            if a.ufunc is None or x.shape[1] < _INTO_MIN:
                ins.write("dst", dst, _binary(a, t, s, rev).reshape(dst.shape))
            else:
                ins.write_into("dst", dst, lambda out: _binary_into(a, t, s, rev, out))


_SCALAR_CHECKED = ChecksMemo()  # `_scalar_key` -> what `_check_tensor_scalar` found


def _scalar_key(ins: Instr, dst, data, op0, operand0, reverse0, op1, operand1, reverse1):
    """What `_check_tensor_scalar` reads, as a key (None where it is not kept: an operand
    that is not a static tensor or a number, an operator that does not hash)."""
    if type(dst) is not NkiTensor or type(data) is not NkiTensor or \
            dst.dyn is not None or data.dyn is not None:
        return None
    o0, o1 = operand_key(operand0), operand_key(operand1)
    if o0 is UNKEPT or o1 is UNKEPT:
        return None
    key = (ins.engine, dst.shape, dst.dtype, dst.buffer.space, data.shape, data.dtype,
           data.buffer.space, op0, o0, bool(reverse0), op1, o1, bool(reverse1))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _check_tensor_scalar(ins: Instr, dst, data, op0, operand0, reverse0, op1, operand1,
                         reverse1):
    """tensor_scalar's checks, and its operand tiles' reads: (a0, a1, k0, v0, k1, v1,
    bitvec, addr, the record's attributes)."""
    _check_io(ins, ("data", data), ("dst", dst))
    a0 = _alu_op(ins, op0, "op0")
    a1 = None if op1 is None else _alu_op(ins, op1, "op1")
    if a1 is None:
        ins.require(operand1 is None, "operand1 must be None when op1 is None")
    _check_operand_given(ins, a0, "operand0", operand0)
    if a1 is not None:
        _check_operand_given(ins, a1, "operand1", operand1)
    bitvec = a0.kind == "bitvec"
    if a1 is not None:
        ins.require((a1.kind == "bitvec") == bitvec,
                    f"op0={a0.name} and op1={a1.name} must both be bitvec or both "
                    "arithmetic operators")
    if bitvec:
        ins.require(ins.engine == "vector", f"bitvec operators run only on the Vector "
                    f"Engine, not engine={ins.engine}")
        _int_dtypes(ins, "bitvec operators", ("data", data), ("dst", dst))
    if ins.engine == "scalar" and ins.generation <= 3:
        pair = (a0.name, a1.name if a1 is not None else None)
        ins.require(pair in _SCALAR_ENGINE_PAIRS,
                    f"the Scalar Engine of {ins.chip.name} runs only op0=multiply, "
                    f"op1=add / op0=multiply / op0=add; got op0={a0.name}, "
                    f"op1={pair[1]} (use engine=nki.isa.engine.vector)")
    P = data.shape[0]
    k0, v0 = _per_partition(ins, "operand0", None if a0.unary else operand0, P)
    k1, v1 = (_per_partition(ins, "operand1", None if a1.unary else operand1, P)
              if a1 is not None else ("none", None))
    for role, k, operand in (("operand0", k0, operand0), ("operand1", k1, operand1)):
        if bitvec and k == "tensor":
            _int_dtypes(ins, "bitvec operators", (role, operand))
    ops = [a0] + ([a1] if a1 is not None else [])
    addr = (not bitvec and str(data.dtype) in _INT32 and str(dst.dtype) in _INT32
            and all(a.name in _ADDR_OPS for a in ops)
            and _is_integral(k0, operand0, operand0 if k0 == "tensor" else None)
            and _is_integral(k1, operand1, operand1 if k1 == "tensor" else None))
    attrs = dict(op0=a0.name, op1=a1.name if a1 is not None else None, op_kind=a0.kind,
                 num_ops=len(ops), operand0_kind=k0, operand1_kind=k1,
                 reverse0=bool(reverse0), reverse1=bool(reverse1), int_exact=bitvec or addr)
    return a0, a1, k0, v0, k1, v1, bitvec, addr, attrs


# -- scalar_tensor_tensor -----------------------------------------------------------

_ARITH = ("arith", "compare", "logical")


def scalar_tensor_tensor(dst, data, op0, operand0, op1, operand1, reverse0=False,
                         reverse1=False, name=None):
    """dst = (data op0 operand0) op1 operand1 on the Vector Engine: operand0 a constant
    or [P, 1] tile, operand1 a full tile like data. Arithmetic operators only."""
    with Instr("scalar_tensor_tensor", None, default="vector", name=name) as ins:
        ins.require(isinstance(operand1, NkiTensor), "operand1 must be a tile with the "
                    "shape of data")
        _check_io(ins, ("data", data), ("operand1", operand1), ("dst", dst))
        _not_both_psum(ins, "data", data, "operand1", operand1)
        a0 = _alu_op(ins, op0, "op0", _ARITH, "arithmetic")
        a1 = _alu_op(ins, op1, "op1", _ARITH, "arithmetic", unary=False)
        _check_operand_given(ins, a0, "operand0", operand0)
        P = data.shape[0]
        k0, v0 = _per_partition(ins, "operand0", None if a0.unary else operand0, P)
        ins.attrs.update(op0=a0.name, op1=a1.name, operand0_kind=k0,
                         reverse0=bool(reverse0), reverse1=bool(reverse1))
        x = ins.read_fp32("data", data)
        y = ins.read_fp32("operand1", operand1)
        if x is None:
            ins.write("dst", dst, None)
            return
        x = flat(x)
        t = _binary(a0, x, _fp32(k0, v0), reverse0)
        r = _binary(a1, t, y.reshape(x.shape), reverse1)
        ins.write("dst", dst, r.reshape(dst.shape))


# -- copies and fills --------------------------------------------------------------

def tensor_copy(dst, src, engine=Engine.unknown, name=None):
    """dst = src: bit-exact on Vector/GpSimd when the dtypes match, otherwise through
    fp32 (RNE on write). The Scalar Engine always goes through fp32 and is not
    available for tensor_copy on NeuronCore-v2."""
    with Instr("tensor_copy", engine, default="vector", allowed=_COMPUTE_ENGINES,
               name=name) as ins:
        exact = _kept_checks(ins, _io_key(ins, src, dst),
                             lambda: _check_tensor_copy(ins, dst, src))
        ins.attrs.update(bit_exact=exact)
        raw = ins.read_view("src", src)
        if raw is None:
            ins.write("dst", dst, None)
        elif exact:
            ins.write("dst", dst, raw.reshape(dst.shape), raw=True)
        else:
            ins.write("dst", dst, to_fp32(raw).reshape(dst.shape))


def _check_tensor_copy(ins: Instr, dst, src) -> bool:
    """tensor_copy's checks; whether the copy is bit-exact."""
    for role, t in (("src", src), ("dst", dst)):
        ins.operand(role, t)
        if t.dyn is not None and t.dyn.kind == "ti":
            ins.require_generation(4, f"tensor indirection on {role}")
    ins.same_partitions(("src", src), ("dst", dst))
    ins.same_elements("src", src, "dst", dst)
    if ins.engine == "scalar" and ins.generation < 3:
        ins.fail("tensor_copy is not supported on the Scalar Engine of NeuronCore-v2; "
                 "use nki.isa.activation(op=nl.copy) or engine=vector",
                 UnsupportedError)
    if any(t.dyn is not None and t.dyn.kind == "ti" for t in (src, dst)):
        ins.require(ins.engine in ("vector", "scalar"), "tensor indirection needs the "
                    f"Vector or Scalar engine, not engine={ins.engine}")
    if src.dtype.is_x4 or dst.dtype.is_x4:
        ins.require(src.dtype == dst.dtype, f"src {describe(src)} -> dst {describe(dst)}"
                    ": packed MX types are copied only to the same type")
    return src.dtype == dst.dtype and (ins.engine != "scalar" or src.dtype.is_x4)


_PRED_COPY = ("uint8", "uint16", "uint32", "bool_")


def tensor_copy_predicated(dst, src, predicate, reverse_pred=False, name=None):
    """dst = src where predicate is nonzero (zero with reverse_pred); other elements of
    dst keep their values. src is a tile of dst's dtype or a constant."""
    with Instr("tensor_copy_predicated", None, default="vector", name=name) as ins:
        named = [("predicate", predicate), ("dst", dst)]
        if isinstance(src, NkiTensor):
            named.insert(0, ("src", src))
        _check_io(ins, *named)
        ins.require(str(predicate.dtype) in _PRED_COPY, f"predicate {describe(predicate)} "
                    f"must have dtype uint8, uint16 or uint32")
        if isinstance(src, NkiTensor):
            ins.require(src.dyn is None, f"src {describe(src)} cannot use tensor indirection")
            ins.require(src.dtype == dst.dtype, f"src {describe(src)} and dst {describe(dst)}"
                        " must have the same dtype")
            _not_both_psum(ins, "src", src, "predicate", predicate)
            raw = ins.read("src", src)
        else:
            ins.require(_is_number(src), f"src must be a tile or a number, got {src!r}")
            raw = None
        pred = ins.read("predicate", predicate)
        ins.attrs.update(src_kind="tensor" if isinstance(src, NkiTensor) else "const",
                         reverse_pred=bool(reverse_pred))
        if pred is None:
            ins.write("dst", dst, None)
            return
        from ..numerics.cast import cast
        mask = ((pred != 0) ^ bool(reverse_pred)).reshape(dst.shape)
        new = raw.reshape(dst.shape) if raw is not None else cast(
            np.float32(float(src)), dst.dtype)
        ins.write("dst", dst, new, raw=True, mask=mask)  # other elements keep their bits


def memset(dst, value, engine=Engine.unknown, name=None):
    """Fill dst with a compile-time constant: an integer dtype takes an integer that
    fits it, a float dtype any number (RNE), a packed x4 type only 0."""
    with Instr("memset", engine, default="vector", allowed=("vector", "gpsimd"),
               name=name) as ins:
        ins.operand("dst", dst)
        ins.require(_is_number(value) and not isinstance(value, np.ndarray),
                    f"value must be a number, got {value!r}")
        ins.attrs.update(value=float(value))
        if dst.dtype.is_x4:
            ins.require(value == 0, f"memset of packed type {dst.dtype} accepts only 0")
            ins.write("dst", dst, np.zeros(dst.shape, dst.dtype.np), raw=True)
            return
        if dst.dtype.is_int:
            ins.require(_is_integral("const", value),
                        f"value {value!r} does not match the integer dtype {dst.dtype} of "
                        f"dst {describe(dst)}")
            info = np.iinfo(dst.dtype.np)
            v = int(value)
            ins.require(info.min <= v <= info.max, f"value {v} does not fit dst "
                        f"{describe(dst)} ({dst.dtype} holds {info.min}..{info.max})")
            ins.write("dst", dst, np.int64(v))
        else:
            ins.write("dst", dst, np.float32(value))


# -- generated patterns (GpSimd) -------------------------------------------------------

def _int32_imm(ins: Instr, role: str, value) -> int:
    ins.require(_is_integral("const", value) and not isinstance(value, bool),
                f"{role}={value!r} must be an int32 constant")
    v = int(value)
    ins.require(-2 ** 31 <= v < 2 ** 31, f"{role}={v} does not fit int32")
    return v


def _pattern(ins: Instr, pattern):
    """[[step, num], ...] (1 to 4 pairs, outermost first) -> (steps, nums)."""
    ok = isinstance(pattern, (list, tuple)) and 1 <= len(pattern) <= 4 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in pattern)
    ins.require(ok, f"pattern={pattern!r} must be a list of 1 to 4 [step, num] pairs")
    steps = [_int32_imm(ins, "pattern step", p[0]) for p in pattern]
    nums = [_int32_imm(ins, "pattern num", p[1]) for p in pattern]
    ins.require(all(n >= 1 for n in nums), f"pattern={pattern!r}: every num must be >= 1")
    return steps, nums


def _affine(partitions: int, steps, nums, offset: int, cm: int) -> np.ndarray:
    """offset + p * cm + sum(idx_k * step_k) for every partition p and pattern position
    (row-major, first pair outermost), in wrapping int32 arithmetic. (P, N) int32."""
    v = np.zeros(nums, dtype=np.int64)
    for d, (s, n) in enumerate(zip(steps, nums)):
        shape = [1] * len(nums)
        shape[d] = n
        v = v + (np.arange(n, dtype=np.int64) * s).reshape(shape)
    p = np.arange(partitions, dtype=np.int64).reshape(-1, 1) * cm
    return (offset + p + v.reshape(1, -1)).astype(np.int32)  # int64 -> int32 wraps


def _pattern_size(ins: Instr, nums, role, t):
    n = int(np.prod(nums))
    if n != free_size(t):
        ins.fail(f"pattern covers {n} elements per partition but {role} "
                 f"{describe(t)} has {free_size(t)}")


def iota(dst, pattern, offset=0, channel_multiplier=0, name=None):
    """dst[p, i] = offset + p * channel_multiplier + sum(idx_k * step_k) over the
    pattern [[step, num], ...], in int32 arithmetic, cast to dst's dtype (GpSimd)."""
    with Instr("iota", None, default="gpsimd", name=name) as ins:
        _check_io(ins, ("dst", dst), buffers=("sbuf",))
        steps, nums = _pattern(ins, pattern)
        _pattern_size(ins, nums, "dst", dst)
        off = _int32_imm(ins, "offset", offset)
        cm = _int32_imm(ins, "channel_multiplier", channel_multiplier)
        ins.attrs.update(pattern=tuple(zip(steps, nums)), offset=off, channel_multiplier=cm)
        ins.write("dst", dst, lambda: _affine(dst.shape[0], steps, nums, off, cm)
                  .reshape(dst.shape))


def affine_select(dst, pattern, channel_multiplier, on_true_tile, on_false_value,
                  cmp_op=equal, offset=0, name=None):
    """dst = on_true_tile where cmp_op(offset + p * channel_multiplier + pattern, 0),
    else on_false_value (an fp32 constant), on GpSimd with both tiles in SBUF."""
    with Instr("affine_select", None, default="gpsimd", name=name) as ins:
        _check_io(ins, ("on_true_tile", on_true_tile), ("dst", dst), buffers=("sbuf",))
        steps, nums = _pattern(ins, pattern)
        _pattern_size(ins, nums, "dst", dst)
        off = _int32_imm(ins, "offset", offset)
        cm = _int32_imm(ins, "channel_multiplier", channel_multiplier)
        c = _alu_op(ins, cmp_op, "cmp_op", ("compare",), "comparison")
        ins.require(_is_number(on_false_value),
                    f"on_false_value must be a number (fp32), got {on_false_value!r}")
        exact = on_true_tile.dtype == dst.dtype
        ins.attrs.update(pattern=tuple(zip(steps, nums)), offset=off, channel_multiplier=cm,
                         cmp_op=c.name, bit_exact=exact)
        raw = ins.read("on_true_tile", on_true_tile)
        if raw is None:
            ins.write("dst", dst, None)
            return
        from ..numerics.cast import cast
        pred = getattr(np, c.name)(_affine(dst.shape[0], steps, nums, off, cm), 0)
        fill = np.float32(float(on_false_value))
        if exact:
            out = np.where(pred, flat(raw), cast(fill, dst.dtype))
            ins.write("dst", dst, out.astype(dst.dtype.np).reshape(dst.shape), raw=True)
        else:
            ins.write("dst", dst, np.where(pred, to_fp32(flat(raw)), fill).reshape(dst.shape))


# -- selects with the Vector Engine's accumulators ---------------------------------------

def _reduce_res(ins: Instr, reduce_res, partitions: int, cmd: str, float_only=True):
    if reduce_res is None:
        return
    ins.operand("reduce_res", reduce_res)
    ins.require(reduce_res.dyn is None, f"reduce_res {describe(reduce_res)} cannot use "
                "tensor indirection")
    ins.require(reduce_res.shape[0] == partitions and free_size(reduce_res) == 1,
                f"reduce_res {describe(reduce_res)} must have shape ({partitions}, 1)")
    ins.require(not reduce_res.dtype.is_x4, f"reduce_res {describe(reduce_res)}: packed "
                "MX type")
    if float_only:
        ins.require(reduce_res.dtype.is_float, f"reduce_res {describe(reduce_res)} must "
                    "have a float dtype")
    ins.require(cmd != "idle", "reduce_res needs reduce_cmd reset_reduce, reduce or "
                "load_reduce (with reduce_cmd=idle nothing is accumulated)")


def _cmd(ins: Instr, reduce_cmd, allowed):
    try:
        cmd = acc.cmd_name(reduce_cmd)
    except ValueError as e:
        ins.fail(str(e))
    ins.require(cmd in allowed, f"reduce_cmd={cmd} is not supported by {ins.opcode}; use "
                f"{', '.join(allowed)}")
    return cmd


def range_select(dst, on_true_tile, comp_op0, comp_op1, bound0, bound1,
                 reduce_cmd=ReduceCmd.reset_reduce, reduce_res=None, reduce_op=maximum,
                 range_start=0, on_false_value=FP32_MIN, name=None):
    """dst = on_true_tile where comp_op0(j, bound0) and comp_op1(j, bound1) for the free
    index j + range_start (in fp32), else FP32_MIN; the fp32 results are max-reduced
    into the Vector Engine accumulators (NeuronCore-v3+)."""
    with Instr("range_select", None, default="vector", name=name) as ins:
        ins.require_generation(3, "range_select")
        _check_io(ins, ("on_true_tile", on_true_tile), ("dst", dst))
        ins.require(on_true_tile.dtype.is_float, f"on_true_tile {describe(on_true_tile)} "
                    "must have a float dtype")
        c0 = _alu_op(ins, comp_op0, "comp_op0", ("compare",), "comparison")
        c1 = _alu_op(ins, comp_op1, "comp_op1", ("compare",), "comparison")
        _op_in(ins, c0, "comp_op0", _RANGE_CMP_OPS)
        _op_in(ins, c1, "comp_op1", _RANGE_CMP_OPS)
        rop = _alu_op(ins, reduce_op, "reduce_op")
        _op_in(ins, rop, "reduce_op", ("maximum",))
        cmd = _cmd(ins, reduce_cmd, acc.CMDS)
        if on_false_value is not ...:  # the stubs' elided default
            ok = _is_number(on_false_value) and not isinstance(on_false_value, bool) and \
                np.float32(on_false_value) == np.float32(FP32_MIN)
            ins.require(ok, f"on_false_value={on_false_value!r}: the hardware fills with "
                        f"FP32_MIN ({FP32_MIN!r}) only")
        ins.require(isinstance(range_start, (int, float, np.number)) and
                    _is_integral("const", range_start),
                    f"range_start={range_start!r} must be a compile-time integer")
        P = on_true_tile.shape[0]
        _reduce_res(ins, reduce_res, P, cmd)
        bounds = []
        for role, b in (("bound0", bound0), ("bound1", bound1)):
            k, v = _per_partition(ins, role, b, P)
            ins.require(k != "none", f"{role} is required")
            if k == "tensor":
                ins.require(str(b.dtype) == "float32", f"{role} {describe(b)} must have "
                            "dtype float32")
            bounds.append(_fp32(k, v))
        ins.attrs.update(comp_op0=c0.name, comp_op1=c1.name, reduce_op=rop.name,
                         reduce_cmd=cmd, fused_reduce=cmd != "idle",
                         reads_accumulator=reduce_res is not None,
                         range_start=int(range_start))
        raw = ins.read("on_true_tile", on_true_tile)
        lo = acc.lane0(on_true_tile)
        y = None
        if raw is not None:
            x = to_fp32(flat(raw))
            j = (int(range_start) + np.arange(x.shape[1], dtype=np.float64)).astype(
                np.float32).reshape(1, -1)
            mask = (getattr(np, c0.name)(j, bounds[0]) & getattr(np, c1.name)(j, bounds[1]))
            y = np.where(mask, x, np.float32(FP32_MIN)).astype(np.float32, copy=False)
            ins.write("dst", dst, y.reshape(dst.shape))
        else:
            ins.write("dst", dst, None)
        acc.vector_accumulate(ins, cmd, rop, lo, P, y)
    if reduce_res is not None:
        acc.vector_read(reduce_res, lo, P)


_PRED_SELECT = ("int8", "uint8", "int16", "uint16", "bool_")


def select_reduce(dst, predicate, on_true, on_false, reduce_res=None,
                  reduce_cmd=ReduceCmd.idle, reduce_op=maximum, reverse_pred=False,
                  name=None):
    """dst = on_true where predicate is nonzero (zero with reverse_pred) else on_false
    (a constant or [P, 1] tile), optionally max-reduced into the Vector Engine
    accumulators (reduce_cmd)."""
    with Instr("select_reduce", None, default="vector", name=name) as ins:
        _check_io(ins, ("on_true", on_true), ("predicate", predicate), ("dst", dst))
        _not_both_psum(ins, "on_true", on_true, "predicate", predicate)
        ins.require(str(predicate.dtype) in _PRED_SELECT, f"predicate {describe(predicate)}"
                    " must have dtype int8, uint8, int16 or uint16")
        ins.require(str(on_true.dtype) not in ("tfloat32", "int32", "uint32"),
                    f"on_true {describe(on_true)}: tfloat32, int32 and uint32 are not "
                    "supported")
        rop = _alu_op(ins, reduce_op, "reduce_op")
        _op_in(ins, rop, "reduce_op", ("maximum",))
        cmd = _cmd(ins, reduce_cmd, ("idle", "reset", "reset_reduce", "reduce"))
        P = on_true.shape[0]
        _reduce_res(ins, reduce_res, P, cmd)
        kf, vf = _per_partition(ins, "on_false", on_false, P)
        ins.require(kf != "none", "on_false is required")
        ins.attrs.update(reduce_op=rop.name, reduce_cmd=cmd, fused_reduce=cmd != "idle",
                         reads_accumulator=reduce_res is not None, on_false_kind=kf,
                         reverse_pred=bool(reverse_pred))
        pred = ins.read("predicate", predicate)
        raw = ins.read("on_true", on_true)
        lo = acc.lane0(on_true)
        y = None
        if raw is not None:
            x = to_fp32(flat(raw))
            mask = (flat(pred).reshape(x.shape) != 0) ^ bool(reverse_pred)
            y = np.where(mask, x, _fp32(kf, vf)).astype(np.float32, copy=False)
            ins.write("dst", dst, y.reshape(dst.shape))
        else:
            ins.write("dst", dst, None)
        acc.vector_accumulate(ins, cmd, rop, lo, P, y)
    if reduce_res is not None:
        acc.vector_read(reduce_res, lo, P)


# -- Vector Engine arithmetic ------------------------------------------------------

def reciprocal(dst, data, name=None):
    """dst = 1 / data in fp32 on the Vector Engine (IEEE division: 1/0 = inf)."""
    with Instr("reciprocal", None, default="vector", name=name) as ins:
        _kept_checks(ins, _io_key(ins, data, dst),
                     lambda: _check_io(ins, ("data", data), ("dst", dst)))
        x = ins.read_fp32("data", data)
        ins.write("dst", dst, None if x is None else
                  lambda: _apply(alu("reciprocal"), x, None).reshape(dst.shape))


def tensor_tensor_scan(dst, data0, data1, initial, op0, op1, reverse0=False,
                       reverse1=False, name=None):
    """Per partition, r[i] = op1(op0(data0[i], r[i-1]), data1[i]) with r[-1] = initial
    (reverse0: op0(r[i-1], data0[i]); reverse1: op1(data1[i], .)), in fp32 along the
    flattened free axes; the carried value is the fp32 result (before the dst cast)."""
    with Instr("tensor_tensor_scan", None, default="vector", name=name) as ins:
        _check_io(ins, ("data0", data0), ("data1", data1), ("dst", dst))
        _not_both_psum(ins, "data0", data0, "data1", data1)
        a0 = _alu_op(ins, op0, "op0", _ARITH, "arithmetic", unary=False)
        a1 = _alu_op(ins, op1, "op1", _ARITH, "arithmetic", unary=False)
        P = data0.shape[0]
        ki, vi = _per_partition(ins, "initial", initial, P)
        ins.require(ki != "none", "initial is required (a constant or a [P, 1] tile)")
        ins.attrs.update(op0=a0.name, op1=a1.name, initial_kind=ki,
                         reverse0=bool(reverse0), reverse1=bool(reverse1))
        x0, x1 = ins.read_fp32("data0", data0), ins.read_fp32("data1", data1)
        if x0 is None:
            ins.write("dst", dst, None)
            return
        x0 = flat(x0)
        x1 = flat(x1).reshape(x0.shape)
        out = np.empty_like(x0)
        r = np.broadcast_to(_fp32(ki, vi), (P, 1)).reshape(P).astype(np.float32)
        for i in range(x0.shape[1]):
            t = _apply(a0, r, x0[:, i]) if reverse0 else _apply(a0, x0[:, i], r)
            r = _apply(a1, x1[:, i], t) if reverse1 else _apply(a1, t, x1[:, i])
            out[:, i] = r
        ins.write("dst", dst, out.reshape(dst.shape))


_ACC_OPS = ("add", "subtract", "multiply", "maximum", "minimum")
_NO_INT32 = ("int32", "uint32")


def tensor_scalar_cumulative(dst, src, op0, op1, imm0, imm1=None,
                             reduce_cmd=ReduceCmd.reset_reduce, name=None):
    """reg = op1(op0(src[i], imm0), reg); dst[i] = reg, per partition along the
    flattened free axes, starting from the Vector Engine accumulator registers as set
    by reduce_cmd (reset_reduce: op1's identity, load_reduce: imm1, reduce: current)."""
    with Instr("tensor_scalar_cumulative", None, default="vector", name=name) as ins:
        _check_io(ins, ("src", src), ("dst", dst))
        for role, t in (("src", src), ("dst", dst)):
            ins.require(str(t.dtype) not in _NO_INT32 and str(t.dtype) != "tfloat32",
                        f"{role} {describe(t)}: int32/uint32 are not supported; use bf16, "
                        "fp16, fp32, fp8, (u)int8 or (u)int16")
        a0 = _alu_op(ins, op0, "op0", _ARITH, "arithmetic")
        a1 = _alu_op(ins, op1, "op1", ("arith",), "arithmetic", unary=False)
        _op_in(ins, a1, "op1", _ACC_OPS)
        cmd = _cmd(ins, reduce_cmd, ("reset_reduce", "reduce", "load_reduce"))
        _check_operand_given(ins, a0, "imm0", imm0)
        if cmd != "load_reduce":
            ins.require(imm1 is None, f"imm1 initializes the accumulators only with "
                        f"reduce_cmd=load_reduce (got reduce_cmd={cmd})")
        else:
            ins.require(imm1 is not None, "reduce_cmd=load_reduce needs imm1")
        P = src.shape[0]
        k0, v0 = _per_partition(ins, "imm0", None if a0.unary else imm0, P)
        k1, v1 = _per_partition(ins, "imm1", imm1, P)
        ins.attrs.update(op0=a0.name, op1=a1.name, imm0_kind=k0, imm1_kind=k1,
                         reduce_cmd=cmd, fused_reduce=True)
        x = ins.read_fp32("src", src)
        lo = acc.lane0(src)
        start = acc.begin(ins, "vector", cmd, a1, lo, P, _fp32(k1, v1))
        if x is None:
            ins.write("dst", dst, None)
            return
        y = _binary(a0, flat(x), _fp32(k0, v0), False)
        out = acc.scan(a1, y, start, value_first=True)
        ins.write("dst", dst, out.reshape(dst.shape))
        acc.commit(ins, "vector", lo, out[:, -1])


def tensor_scalar_reduce(dst, data, op0, operand0, reduce_op, reduce_res=None,
                         reverse0=False, reduce_cmd=ReduceCmd.reset_reduce,
                         reduce_init=None, reduce_res_negate=False, name=None):
    """dst = data op0 operand0 (fp32, one arithmetic operator), and its fp32 results
    reduced with reduce_op (add/multiply/maximum/minimum) over all free axes into the
    Vector Engine accumulators; reduce_res (optionally negated) receives them."""
    with Instr("tensor_scalar_reduce", None, default="vector", name=name) as ins:
        _check_io(ins, ("data", data), ("dst", dst))
        a0 = _alu_op(ins, op0, "op0", _ARITH, "arithmetic")
        rop = _alu_op(ins, reduce_op, "reduce_op")
        _op_in(ins, rop, "reduce_op", ("add", "multiply", "maximum", "minimum"))
        cmd = _cmd(ins, reduce_cmd, ("reset_reduce", "reduce", "load_reduce"))
        _check_operand_given(ins, a0, "operand0", operand0)
        if cmd == "load_reduce":
            ins.require(reduce_init is not None, "reduce_cmd=load_reduce needs reduce_init")
        else:
            ins.require(reduce_init is None, f"reduce_init is only used with "
                        f"reduce_cmd=load_reduce (got reduce_cmd={cmd})")
        P = data.shape[0]
        _reduce_res(ins, reduce_res, P, cmd, float_only=False)
        k0, v0 = _per_partition(ins, "operand0", None if a0.unary else operand0, P)
        ki, vi = _per_partition(ins, "reduce_init", reduce_init, P)
        ins.attrs.update(op0=a0.name, operand0_kind=k0, reverse0=bool(reverse0),
                         reduce_op=rop.name, reduce_cmd=cmd, fused_reduce=True,
                         reads_accumulator=reduce_res is not None,
                         reduce_res_negate=bool(reduce_res_negate))
        x = ins.read_fp32("data", data)
        lo = acc.lane0(data)
        y = None
        if x is not None:
            y = _binary(a0, flat(x), _fp32(k0, v0), bool(reverse0))
            ins.write("dst", dst, y.reshape(dst.shape))
        else:
            ins.write("dst", dst, None)
        acc.vector_accumulate(ins, cmd, rop, lo, P, y, _fp32(ki, vi))
    if reduce_res is not None:
        acc.read_out("vector", reduce_res, lo, P, negate=bool(reduce_res_negate))


__all__ = ["tensor_tensor", "tensor_scalar", "scalar_tensor_tensor", "tensor_copy",
           "tensor_copy_predicated", "memset", "iota", "affine_select", "range_select",
           "select_reduce", "reciprocal", "tensor_tensor_scan", "tensor_scalar_cumulative",
           "tensor_scalar_reduce"]
