"""isa/exp_fp32.py's compiled core: fp32(exp(float64(t))) for every element t of a
(P, F) fp32 tile (t = x, x * scale or x * scale + bias, per row, in fp32), with the rows
whose fp32 result is not certain to be NumPy's.

exp is a Cody-Waite range reduction, x = k ln2 + r with |r| <= ln2 / 2, and the degree-12
Taylor polynomial of exp(r) by Horner's rule with fused multiply-adds, scaled by 2^k in
the exponent bits: within 2 float64 ulps of np.exp's float64 (measured over every fp32
input against glibc's exp, which NumPy calls without AVX-512; both are within 3 ulps of
exp). Every value within a relative 2^-46 of it (64 ulps or more) rounds to the same
fp32 when the two ends of that interval do (rounding is monotonic), so where they do,
that fp32 is np.exp's too; elsewhere (about one element in a million) and at NaN inputs
the row is left to NumPy. Below -104 the result is +0.0 and from 89 on +inf for any exp
whose error is under 3%. Over all 2^32 fp32 inputs the results, with NumPy's for the
rows left, are np.exp's bits.

The loop over a row has no branch and no call, so LLVM vectorizes it (AVX2: four
elements a step), about 3x as fast as np.exp's float64 loop, which calls libm per element.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ..machine.compiled import inline, jit

NONE, SCALE, BIAS, SCALE_BIAS = 0, 1, 2, 3  # how t is made from x (the `affine` codes)

_INV_LN2 = 1.4426950408889634
_SHIFT = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer in the low bits
_SHIFT_BITS = 0x4338000000000000
_LN2_HI = float.fromhex("0x1.62e42fefa3800p-1")  # (k * _LN2_HI is exact for |k| < 2^11)
_LN2_LO = float.fromhex("0x1.ef35793c76730p-45")
_C = tuple(1.0 / math.factorial(n) for n in range(13))
_C0, _C1, _C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12 = _C
_ABOVE, _BELOW = 1.0 + 2.0 ** -46, 1.0 - 2.0 ** -46  # (64 to 128 float64 ulps)
_UNDERFLOW = -104.0  # exp(-104) = 0.97 * 2^-150: rounds to +0.0
_OVERFLOW = 89.0  # exp(89) = 1.3 * fp32 max: rounds to +inf


@intrinsic
def _bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fma = builder.module.declare_intrinsic("llvm.fma", [f64],
                                               ir.FunctionType(f64, [f64, f64, f64]))
        return builder.call(fma, args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@inline
def _exp_bits(d):
    """The bits of float64 exp(d), for -104 < d < 89."""
    z = _fma(d, _INV_LN2, _SHIFT)
    kd = z - _SHIFT
    k = _bits(z) - _SHIFT_BITS
    r = _fma(-kd, _LN2_LO, _fma(-kd, _LN2_HI, d))
    q = _fma(_C12, r, _C11)
    q = _fma(q, r, _C10)
    q = _fma(q, r, _C9)
    q = _fma(q, r, _C8)
    q = _fma(q, r, _C7)
    q = _fma(q, r, _C6)
    q = _fma(q, r, _C5)
    q = _fma(q, r, _C4)
    q = _fma(q, r, _C3)
    q = _fma(q, r, _C2)
    q = _fma(q, r, _C1)
    q = _fma(q, r, _C0)
    return _bits(q) + (k << 52)


@inline
def _exp_fp32(t):
    """(fp32(exp(t)), whether that is surely np.exp's rounding) for fp32 t."""
    d = np.float64(t)
    y = _from_bits(_exp_bits(d))
    y32 = np.float32(y * _ABOVE)
    sure = y32 == np.float32(y * _BELOW)  # (False for NaN)
    if d <= _UNDERFLOW:
        y32 = np.float32(0.0)
        sure = True
    if d >= _OVERFLOW:
        y32 = np.float32(np.inf)
        sure = True
    return y32, sure


@inline
def _exp_rows_by(x, x_pitch, scale, bias, out, out_pitch, P, F, redo, scaled, biased):
    n = 0
    for p in range(P):
        s = scale[p]
        b = bias[p]
        row = x[p * x_pitch:p * x_pitch + F]
        out_row = out[p * out_pitch:p * out_pitch + F]
        unsure = False
        for i in range(F):
            t = row[i]
            if scaled:
                t = t * s
            if biased:
                t = t + b
            y, sure = _exp_fp32(t)
            out_row[i] = y
            unsure |= not sure
        if unsure:
            redo[n] = p
            n += 1
    return n


@jit
def exp_rows(x, x_pitch, scale, bias, affine, out, out_pitch, P, F, redo):
    """Row p of out (P, F) = fp32(exp(t)) for t = x, x * scale[p], x + bias[p] or
    x * scale[p] + bias[p] of row p of x (`affine`: NONE, SCALE, BIAS, SCALE_BIAS; fp32
    operations). x and out are flat: row p starts at p * pitch (the rows as contiguous
    arrays, which LLVM vectorizes; strided 2-D arrays it does not). Returns n: the rows
    redo[:n] hold elements to compute again."""
    if affine == NONE:  # one inlined copy per form, its flags folded into the loop
        return _exp_rows_by(x, x_pitch, scale, bias, out, out_pitch, P, F, redo, False,
                            False)
    if affine == SCALE:
        return _exp_rows_by(x, x_pitch, scale, bias, out, out_pitch, P, F, redo, True,
                            False)
    if affine == BIAS:
        return _exp_rows_by(x, x_pitch, scale, bias, out, out_pitch, P, F, redo, False,
                            True)
    return _exp_rows_by(x, x_pitch, scale, bias, out, out_pitch, P, F, redo, True, True)
