"""Scalar Engine activations (activation, activation_reduce, activate2) and the
NeuronCore-v4 Vector Engine `exponential`.

    dst = op(data * scale + bias)            (fp32 math, RNE cast on write)

with an optional reduction of the fp32 results along the free axes into the engine's
accumulator registers (one fp32 register per compute lane), read out into a
`reduce_res[P, 1]` tile by a second instruction (`read_accumulator`), as the hardware
does. The registers live in `ins.core.accumulators["scalar"]`, indexed by the absolute
partition (compute lane) of `data`.
"""
from __future__ import annotations

import numpy as np

from ..machine.access import row_loops
from ..machine.errors import UnsupportedError, describe
from ..machine.tensor import NkiTensor
from ..numerics.cast import to_fp32
from . import accumulate as acc
from . import exp_fp32
from .accumulate import cmd_name, lane0
from .activation_funcs import activation_fn
from .base import UNKEPT, ChecksMemo, Instr, _readonly, flat, free_size, operand_key
from .enums import reduce_cmd as ReduceCmd
from .ops import alu

# -- shared helpers ---------------------------------------------------------------

def _fp32_view(raw: np.ndarray) -> np.ndarray:
    """Stored values as fp32, without a copy when they are fp32 already (a read-only
    view of the memory, used before the instruction writes)."""
    return _readonly(raw) if raw.dtype == np.float32 else to_fp32(raw)


_REDUCE_OPS = ("add", "maximum", "minimum", "abs_max", "abs_min")


def check_data_dst(ins: Instr, data, dst, data_role="data"):
    """Common checks for a unary engine instruction: on-chip tensors, equal partitions and
    elements per partition, no packed types, indirection only on v4+ (and a scattered
    dst not in PSUM on the Scalar Engine)."""
    ins.operand("dst", dst)
    ins.operand(data_role, data)
    ins.same_partitions((data_role, data), ("dst", dst))
    ins.same_elements(data_role, data, "dst", dst)
    for role, t in ((data_role, data), ("dst", dst)):
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed MX types are only "
                     "read by nc_matmul_mx / written by quantize_mx")
        if t.dyn is not None:
            ins.require_generation(4, f"tensor indirection on {role}")
    if dst.dyn is not None and ins.engine == "scalar":
        ins.require(dst.space != "psum", f"dst {describe(dst)}: a scattered (indirect) dst "
                    "of a Scalar Engine instruction cannot be in PSUM")


def per_partition(ins: Instr, role: str, value, partitions: int, *, fp32_only=False,
                  allow_const=True):
    """A constant or a [P, 1] tensor operand as fp32, broadcastable against (P, F).
    Returns (values, kind) with kind 'none' | 'const' | 'tensor'."""
    if value is None:
        return None, "none"
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "storage"):
        t = ins.operand(role, value)
        if t.dyn is not None:
            ins.fail(f"{role} {describe(t)} cannot use tensor indirection")
        if not (t.ndim >= 2 and t.shape[0] == partitions and free_size(t) == 1):
            ins.fail(f"{role} {describe(t)} must be a [{partitions}, 1] tensor (one value "
                     "per partition of data) or a constant")
        if fp32_only:
            if str(t.dtype) != "float32":
                ins.fail(f"{role} {describe(t)} must have dtype float32")
        if t.dtype.is_x4:
            ins.fail(f"{role} {describe(t)}: packed types not allowed")
        return partition_values(ins, role, "tensor", t, partitions), "tensor"
    if not allow_const:
        ins.fail(f"{role} must be a [{partitions}, 1] tensor here, got the constant "
                 f"{value!r}")
    try:
        return np.float32(float(value)), "const"
    except (TypeError, ValueError):
        ins.fail(f"operand {role!r} must be a tensor or a number, got {value!r}")


def partition_values(ins: Instr, role: str, kind: str, value, partitions: int):
    """The values `per_partition` gives for an operand of `kind` it checked: a tile's
    fp32 values (P, 1) (read now; None without numerics), a constant in fp32, or None."""
    if kind == "tensor":
        v = ins.read_fp32(role, value)
        return None if v is None else v.reshape(partitions, 1)
    return np.float32(float(value)) if kind == "const" else None


def resolve_reduce_op(ins: Instr, reduce_op, allowed=_REDUCE_OPS, what=""):
    if reduce_op is None:
        return alu("add")
    try:
        op = alu(reduce_op)
    except (KeyError, TypeError):
        ins.fail(f"reduce_op={reduce_op!r} is not an ALU operator")
    if op.name not in allowed:
        ins.fail(f"reduce_op={op.name} is not supported{what}; use "
                 f"{' / '.join('nl.' + n for n in allowed)}")
    return op


def check_reduce_res(ins: Instr, reduce_res, partitions: int, float_only=False):
    if reduce_res is None:
        return
    ins.operand("reduce_res", reduce_res)
    if reduce_res.dyn is not None:
        ins.fail(f"reduce_res {describe(reduce_res)} cannot use tensor indirection")
    if not (reduce_res.shape[0] == partitions and free_size(reduce_res) == 1):
        ins.fail(f"reduce_res {describe(reduce_res)} must have shape ({partitions}, 1)")
    if reduce_res.dtype.is_x4:
        ins.fail(f"reduce_res {describe(reduce_res)}: packed type")
    if float_only:
        if not (reduce_res.dtype.is_float and str(reduce_res.dtype) != "float8_e8m0fnu"):
            ins.fail(f"reduce_res {describe(reduce_res)} must be a float type")


# -- activation -----------------------------------------------------------------

def reduce_cmd_of(ins: Instr, cmd) -> str:
    try:
        return cmd_name(cmd)
    except ValueError as e:
        ins.fail(str(e))


def _resolve_act(ins: Instr, op):
    try:
        return activation_fn(op)
    except (KeyError, TypeError) as e:
        ins.fail(str(e.args[0]) if e.args else f"op={op!r} is not an activation function")


def _activation(opcode, dst, op, data, bias, scale, reduce_op, reduce_res, cmd,
                reduce_ops):
    with Instr(opcode, None, default="scalar") as ins:
        key = _activation_key(opcode, dst, op, data, bias, scale, reduce_op, reduce_res,
                              cmd, reduce_ops)
        checked = _ACTIVATION_CHECKED.found(key, ins.chip)
        if checked is None:
            cmd, act, rop, s, scale_kind, b, bias_kind = _check_activation(
                ins, dst, op, data, bias, scale, reduce_op, reduce_res, cmd, reduce_ops)
            P = data.shape[0]
            _ACTIVATION_CHECKED.keep(key, ins.chip, (cmd, act, rop, scale_kind, bias_kind))
        else:  # (every check passed for these operands and settings: read the tiles)
            cmd, act, rop, scale_kind, bias_kind = checked
            P = data.shape[0]
            s = partition_values(ins, "scale", scale_kind, scale, P)
            b = partition_values(ins, "bias", bias_kind, bias, P)
        x = ins.read_as("data", data, _fp32_view)
        fused = cmd in ("reduce", "reset_reduce")
        ins.attrs.update(op=act.name, scale_kind=scale_kind, bias_kind=bias_kind,
                         reduce_cmd=cmd, reduce_op=rop.name if fused else None,
                         fused_reduce=fused, reads_accumulator=reduce_res is not None)
        lo = lane0(data)
        if x is None:
            ins.write("dst", dst, None)
        else:
            v = flat(x)
            scaled = scale_kind == "tensor" or (s is not None and s != 1.0)
            s = s if scaled else None
            y = ins.write_into("dst", dst, lambda out: _apply(ins, act, v, s, b, out))
            if cmd != "idle":  # idle leaves the Scalar Engine registers unchanged
                acc.accumulate(ins, "scalar", cmd, rop, y, lo, P)
    if reduce_res is not None:
        acc.read_out("scalar", reduce_res, lo, P)


_ACTIVATION_CHECKED = ChecksMemo()  # `_activation_key` -> what `_check_activation` found


def _activation_key(opcode, dst, op, data, bias, scale, reduce_op, reduce_res, cmd,
                    reduce_ops):
    """What `_check_activation` reads, as a key (None where it is not kept: an operand
    that is not a static tensor or a number, a setting that does not hash)."""
    if type(dst) is not NkiTensor or type(data) is not NkiTensor or \
            dst.dyn is not None or data.dyn is not None:
        return None
    operands = (operand_key(bias), operand_key(scale), operand_key(reduce_res))
    if any(k is UNKEPT for k in operands):
        return None
    key = (opcode, dst.shape, dst.dtype, dst.buffer.space, data.shape, data.dtype,
           data.buffer.space, op, operands, reduce_op, type(cmd), cmd, reduce_ops)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _check_activation(ins: Instr, dst, op, data, bias, scale, reduce_op, reduce_res, cmd,
                      reduce_ops):
    """An activation's checks, and its scale and bias tiles' reads: (the reduce_cmd's
    name, the function, the reduce operator, scale, its kind, bias, its kind)."""
    cmd = reduce_cmd_of(ins, cmd)
    check_data_dst(ins, data, dst)
    act = _resolve_act(ins, op)
    P = data.shape[0]
    ins.require(cmd != "load_reduce", "reduce_cmd=load_reduce is not supported by the "
                "Scalar Engine activation; use reset, reduce or reset_reduce")
    rop = resolve_reduce_op(ins, reduce_op, reduce_ops,
                            " by the Scalar Engine activation instruction")
    check_reduce_res(ins, reduce_res, P)
    if bias is not None and not hasattr(bias, "storage"):
        ins.require_generation(3, "a constant bias (NeuronCore-v2 needs a [N, 1] bias "
                               "tensor)")
    if bias is not None and act.name == "reciprocal" and ins.generation < 3:
        ins.fail("activation(op=reciprocal) does not support a bias on NeuronCore-v2",
                 UnsupportedError)
    if hasattr(bias, "storage"):
        if str(bias.dtype) == "tfloat32":
            ins.fail(f"bias {describe(bias)} cannot be tfloat32")
    s, scale_kind = per_partition(ins, "scale", scale, P, fp32_only=True)
    b, bias_kind = per_partition(ins, "bias", bias, P)
    return cmd, act, rop, s, scale_kind, b, bias_kind


def _apply(ins: Instr, act, v: np.ndarray, s, b, out: np.ndarray) -> np.ndarray:
    """out = act(v * s + b) (the fp32 product and sum where s, b are not None): exp by
    the compiled core where it applies (isa/exp_fp32.py), the rows it leaves and every
    other function by `_apply_numpy`."""
    if act.name != "exp" or not exp_fp32.applies(v, out, s, b):
        return _apply_numpy(ins, act, v, s, b, out)
    rest = exp_fp32.exp_rows(v, out, s, b)
    if rest.size:
        out[rest] = _apply_numpy(ins, act, v[rest], _rows_of(s, rest), _rows_of(b, rest),
                                 np.empty((rest.size, v.shape[1]), np.float32))
    return out


def _rows_of(operand, rows):
    """A per-partition operand (None, a constant or a (P, 1) column) for `rows` only."""
    return operand[rows] if isinstance(operand, np.ndarray) and operand.ndim else operand


def _apply_numpy(ins: Instr, act, v: np.ndarray, s, b, out: np.ndarray) -> np.ndarray:
    """`_apply` by NumPy ufuncs, all in `out`."""
    t = v
    with row_loops(v, s, b, errors="ignore"):
        if s is not None:
            t = np.multiply(t, s, out=out)
        if b is not None:
            t = np.add(t, b, out=out)
    return act(t, 0.0, ins, out=out)


def activation(dst, op, data, bias=None, scale=1.0, reduce_op=None, reduce_res=None,
               reduce_cmd=ReduceCmd.idle, name=None):
    """dst = op(data * scale + bias) on the Scalar Engine, with an optional add-reduction
    into the engine's accumulator registers (reduce_cmd) read out into reduce_res."""
    _activation("activation", dst, op, data, bias, scale, reduce_op, reduce_res, reduce_cmd,
                ("add",))


def activation_reduce(dst, op, data, reduce_op, reduce_res, bias=None, scale=1.0, name=None):
    """activation with reduce_cmd=reset_reduce, then reduce_res = the registers."""
    from ..machine.runtime import active_run
    gen = active_run().chip.generation
    allowed = ("add",) if gen < 3 else _REDUCE_OPS
    _activation("activation_reduce", dst, op, data, bias, scale, reduce_op, reduce_res,
                ReduceCmd.reset_reduce, allowed)


# -- activate2 (NeuronCore-v4) -----------------------------------------------------------

_ACT2_PAIRS = {("multiply", "add"), ("multiply", "subtract"), ("multiply", "bypass"),
               ("add", "bypass"), ("subtract", "bypass"), ("bypass", "bypass")}


def _alu_or_bypass(ins: Instr, role, op):
    if op is None:
        return alu("bypass")
    try:
        return alu(op)
    except (KeyError, TypeError):
        ins.fail(f"{role}={op!r} is not an ALU operator")


def activate2(dst, op, data, imm0, imm1, op0, op1, relu_param=0.0, reverse0=False,
              reverse1=False, reduce_op=None, reduce_res=None, reduce_cmd=ReduceCmd.idle,
              name=None):
    """dst = op((data op0 imm0) op1 imm1, relu_param) on the Scalar Engine
    (NeuronCore-v4+), with an optional reduction into the accumulator registers."""
    with Instr("activate2", None, default="scalar") as ins:
        cmd = reduce_cmd_of(ins, reduce_cmd)
        ins.require_generation(4, "activate2")
        check_data_dst(ins, data, dst)
        act = _resolve_act(ins, op)
        P = data.shape[0]
        a0, a1 = _alu_or_bypass(ins, "op0", op0), _alu_or_bypass(ins, "op1", op1)
        pair = (a0.name, a1.name)
        ins.require(pair in _ACT2_PAIRS, f"(op0, op1) = ({a0.name}, {a1.name}) is not "
                    "supported; use one of " + ", ".join(
                        f"({x}, {y})" for x, y in sorted(_ACT2_PAIRS)))
        ins.require(not reverse0 or a0.name != "bypass", "reverse0 requires op0 to be set")
        ins.require(not reverse1 or a1.name != "bypass", "reverse1 requires op1 to be set")
        ins.require(cmd != "load_reduce", "reduce_cmd=load_reduce is not supported by "
                    "activate2; use reset, reduce or reset_reduce")
        rop = resolve_reduce_op(ins, reduce_op, _REDUCE_OPS, " by activate2")
        check_reduce_res(ins, reduce_res, P)
        if hasattr(imm0, "storage") and hasattr(imm1, "storage"):
            ins.require(imm0.dtype == imm1.dtype, f"imm0 {describe(imm0)} and imm1 "
                        f"{describe(imm1)} must have the same dtype")
        i0, k0 = per_partition(ins, "imm0", imm0 if a0.name != "bypass" else None, P)
        i1, k1 = per_partition(ins, "imm1", imm1 if a1.name != "bypass" else None, P)
        rp, kp = per_partition(ins, "relu_param", relu_param, P)
        x = ins.read_as("data", data, _fp32_view)
        fused = cmd in ("reduce", "reset_reduce")
        ins.attrs.update(op=act.name, op0=a0.name, op1=a1.name, imm0_kind=k0, imm1_kind=k1,
                         relu_param_kind=kp, reduce_cmd=cmd,
                         reduce_op=rop.name if fused else None, fused_reduce=fused,
                         reads_accumulator=reduce_res is not None)
        lo = lane0(data)
        if x is None:
            ins.write("dst", dst, None)
        else:
            v = flat(x)
            with np.errstate(all="ignore"):
                if a0.name != "bypass":
                    v = np.asarray(a0(i0, v) if reverse0 else a0(v, i0), np.float32)
                if a1.name != "bypass":
                    v = np.asarray(a1(i1, v) if reverse1 else a1(v, i1), np.float32)
            param = 0.0 if rp is None else rp
            y = ins.write_into("dst", dst, lambda out: act(v, param, ins, out=out))
            if cmd != "idle":
                acc.accumulate(ins, "scalar", cmd, rop, y, lo, P)
    if reduce_res is not None:
        acc.read_out("scalar", reduce_res, lo, P)


# -- exponential (NeuronCore-v4 Vector Engine) -----------------------------------------

_EXP_SRC = ("float8_e4m3", "float8_e5m2", "float16", "bfloat16", "float32", "int8", "int16",
            "int32", "uint8", "uint16", "uint32")
_EXP_DST = ("float8_e4m3", "float8_e5m2", "float16", "bfloat16", "float32", "tfloat32",
            "int8", "int16", "int32", "uint8", "uint16")


def _exp(v: np.ndarray) -> np.ndarray:
    """fp32(exp(float64(v))) of fp32 (P, F) v, by the compiled core where it applies
    (isa/exp_fp32.py) and NumPy for the rows it leaves."""
    out = np.empty(v.shape, np.float32)
    rest = exp_fp32.exp_rows(v, out) if exp_fp32.applies(v, out, None, None) else slice(None)
    out[rest] = np.exp(v[rest].astype(np.float64)).astype(np.float32)
    return out


def exponential(dst, src, max_value=0.0, reduce_res=None, reduce_cmd=ReduceCmd.idle,
                reduce_init=0.0, name=None):
    """dst = exp(src - max_value) on the Vector Engine (NeuronCore-v4+), optionally
    summing the results into the Vector Engine's accumulator registers."""
    with Instr("exponential", None, default="vector") as ins:
        cmd = reduce_cmd_of(ins, reduce_cmd)
        ins.require_generation(4, "exponential")
        check_data_dst(ins, src, dst, data_role="src")
        if not (src.ndim <= 4 and dst.ndim <= 4):
            ins.fail(f"src {describe(src)} and dst "
                     f"{describe(dst)} can have at most 4 dimensions")
        if str(src.dtype) not in _EXP_SRC:
            ins.fail(f"src {describe(src)}: dtype not supported; "
                     f"use one of {', '.join(_EXP_SRC)}")
        if str(dst.dtype) not in _EXP_DST:
            ins.fail(f"dst {describe(dst)}: dtype not supported; "
                     f"use one of {', '.join(_EXP_DST)}")
        ins.require(cmd in ("idle", "reset_reduce", "reduce", "load_reduce"),
                    f"reduce_cmd={cmd} is not supported by exponential; use idle, "
                    "reset_reduce, reduce or load_reduce")
        P = src.shape[0]
        check_reduce_res(ins, reduce_res, P, float_only=True)
        if cmd != "load_reduce":
            ins.require(not hasattr(reduce_init, "storage") and
                        (reduce_init is None or float(reduce_init) == 0.0),
                        f"reduce_init must be unset or 0.0 unless reduce_cmd=load_reduce "
                        f"(got {reduce_init!r} with reduce_cmd={cmd})")
        m, mk = per_partition(ins, "max_value", max_value, P, fp32_only=True)
        init, ik = (per_partition(ins, "reduce_init", reduce_init, P, fp32_only=True)
                    if cmd == "load_reduce" else (None, "none"))
        x = ins.read_fp32("src", src)
        ins.attrs.update(op="exp", max_value_kind=mk, reduce_cmd=cmd,
                         fused_reduce=cmd != "idle", reads_accumulator=reduce_res is not None)
        lo = lane0(src)
        y = None
        if x is not None:
            with np.errstate(all="ignore"):
                v = flat(x) - (m if m is not None else np.float32(0))
                y = _exp(v.astype(np.float32, copy=False))
            ins.write("dst", dst, y.reshape(dst.shape))
        else:
            ins.write("dst", dst, None)
        if cmd == "load_reduce" and init is None:
            init = np.float32(0.0)  # numerics off: the value is not used
        acc.vector_accumulate(ins, cmd, "add", lo, P, y, init)
    if reduce_res is not None:
        acc.vector_read(reduce_res, lo, P)


__all__ = ["activation", "activation_reduce", "activate2", "exponential"]
