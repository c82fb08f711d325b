"""Per-instruction costs of the timing model, computed here from the chip figures and the
formulas of hardware.md (ISA-old cost table, ARCH2/ARCH3 performance modes)."""
import ml_dtypes
import numpy as np
import pytest

import trnsim
from trnsim import nki
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.chips import load_chip
from trnsim.timing import schedule


def events(kernel, args, chip, **kwargs):
    _, run = trnsim.run_kernel(kernel, args, kwargs, chip=chip, numerics=False)
    tl = schedule(run.program)
    return run.program, tl


def ns(cycles, clock_hz):
    return cycles / clock_hz * 1e9


@nki.jit
def copy_kernel(a, out_dtype="same", engine="vector"):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    dt = a.dtype if out_dtype == "same" else out_dtype
    u = nl.ndarray(a.shape, dtype=dt, buffer=nl.sbuf)
    eng = {"vector": nisa.vector_engine, "scalar": nisa.scalar_engine,
           "gpsimd": nisa.gpsimd_engine}[engine]
    nisa.tensor_copy(dst=u, src=t, engine=eng)


def _op(program, tl, opcode):
    return [tl.events[i.index] for i in program if i.opcode == opcode]


@pytest.mark.parametrize("chip,dtype,speedup", [
    ("trn1", ml_dtypes.bfloat16, 1),   # no performance mode on NC-v2
    ("trn2", ml_dtypes.bfloat16, 4),   # 16-bit, SBUF -> SBUF, contiguous: 4x
    ("trn2", np.float32, 1),           # fp32: the base rate
    ("trn3", ml_dtypes.bfloat16, 4),
])
def test_vector_tensor_copy_performance_mode(chip, dtype, speedup):
    c = load_chip(chip)
    p, tl = events(copy_kernel, (np.zeros((128, 2048), dtype),), chip)
    (cp,) = _op(p, tl, "tensor_copy")
    assert cp.duration == pytest.approx(ns(max(64, 2048 / speedup), c.core.vector.clock_hz))


def test_scalar_tensor_copy_2x_only_on_trn3():
    for chip, speedup in (("trn2", 1), ("trn3", 2)):
        c = load_chip(chip)
        p, tl = events(copy_kernel, (np.zeros((128, 2048), ml_dtypes.bfloat16),), chip,
                       engine="scalar")
        (cp,) = _op(p, tl, "tensor_copy")
        assert cp.duration == pytest.approx(ns(2048 / speedup, c.core.scalar.clock_hz))


@nki.jit
def tt_kernel(a, b, psum_operand=False):
    ta = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    tb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=ta, src=a)
    nisa.dma_copy(dst=tb, src=b)
    if psum_operand:
        pb = nl.ndarray(b.shape, dtype=nl.float32, buffer=nl.psum)
        nisa.tensor_copy(dst=pb, src=tb)
        tb = pb
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=out, data1=ta, data2=tb, op=nl.maximum)


def test_tensor_tensor_two_passes_unless_one_operand_in_psum():
    c = load_chip("trn1")
    a = np.zeros((128, 512), np.float32)
    p, tl = events(tt_kernel, (a, a.copy()), "trn1")
    (tt,) = _op(p, tl, "tensor_tensor")
    assert tt.duration == pytest.approx(ns(2 * 512, c.core.vector.clock_hz))
    p, tl = events(tt_kernel, (a, a.copy()), "trn1", psum_operand=True)
    (tt,) = _op(p, tl, "tensor_tensor")
    assert tt.duration == pytest.approx(ns(512, c.core.vector.clock_hz))


@nki.jit
def exp_kernel(a, vector=False):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    u = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    if vector:
        nisa.exponential(dst=u, src=t)
    else:
        nisa.activation(dst=u, op=nl.exp, data=t)


def test_trn3_exponential_is_4x_activation():
    c = load_chip("trn3")
    a = np.zeros((128, 4096), np.float32)
    p, tl = events(exp_kernel, (a,), "trn3")
    (act,) = _op(p, tl, "activation")
    p, tl = events(exp_kernel, (a,), "trn3", vector=True)
    (ex,) = _op(p, tl, "exponential")
    assert act.duration == pytest.approx(ns(4096, c.core.scalar.clock_hz))
    assert ex.duration == pytest.approx(ns(4096 / 4, c.core.vector.clock_hz))
    assert act.duration / ex.duration == pytest.approx(4.0)


@nki.jit
def fused_activation(a, fused=True):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    u = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    bias = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=bias, value=0.5)
    if fused:
        nisa.activation(dst=u, op=nl.exp, data=t, bias=bias, scale=2.0)
    else:
        nisa.activation(dst=u, op=nl.exp, data=t)


def test_fused_scale_and_bias_cost_one_activation():
    a = np.zeros((128, 1024), np.float32)
    p1, t1 = events(fused_activation, (a,), "trn2")
    p2, t2 = events(fused_activation, (a,), "trn2", fused=False)
    (f,), (plain,) = _op(p1, t1, "activation"), _op(p2, t2, "activation")
    assert f.duration == pytest.approx(plain.duration)
    assert f.duration == pytest.approx(ns(1024, load_chip("trn2").core.scalar.clock_hz))


@nki.jit
def strided_read(a):
    t = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=a)
    u = nl.ndarray((a.shape[0], a.shape[1] // 8), dtype=a.dtype, buffer=nl.sbuf)
    nisa.activation(dst=u, op=nl.exp, data=t[:, ::8])  # 32-byte innermost stride


def test_innermost_stride_over_16_bytes_halves_the_rate():
    c = load_chip("trn1")
    p, tl = events(strided_read, (np.zeros((128, 4096), np.float32),), "trn1")
    (act,) = _op(p, tl, "activation")
    assert act.duration == pytest.approx(ns(2 * 512, c.core.scalar.clock_hz))


def test_legacy_psum_zeros_are_folded_into_the_first_matmul():
    from trnsim.legacy import jit as lj
    import trnsim.legacy.isa as lisa
    import trnsim.legacy.language as lnl

    @lj.jit
    def k(lhsT, rhs):
        out = lnl.ndarray((128, 512), dtype=lnl.float32, buffer=lnl.shared_hbm)
        a = lnl.load(lhsT)
        b = lnl.load(rhs)
        acc = lnl.zeros((128, 512), lnl.float32, buffer=lnl.psum)
        acc += lisa.nc_matmul(a, b)
        acc += lisa.nc_matmul(a, b)
        lnl.store(out, value=acc)
        return out

    _, run = lj.run_legacy(k.fn, (np.zeros((128, 128), ml_dtypes.bfloat16),
                                  np.zeros((128, 512), ml_dtypes.bfloat16)), {},
                           chip="trn1", numerics=False)
    tl = schedule(run.program)
    prog = run.program.instructions
    (ms,) = [tl.events[i.index] for i in prog if i.opcode == "memset"]
    mms = [tl.events[i.index] for i in prog if i.opcode == "nc_matmul"]
    assert ms.duration == 0 and ms.cost.get("folded_into") == mms[0].index
    assert all(w.producer != ms.index for w in mms[0].waits)


# -- published per-instruction figures (ISA-old "Estimated instruction cost", hardware.md)
def _cycles(kernel, chip="trn1", **shapes):
    """{opcode: [cycles, ...]} of the compute instructions `kernel` records (trn1: no
    performance modes), from CostModel.compute directly."""
    from trnsim.timing.costs import CostModel
    _, run = trnsim.run_kernel(kernel, (), chip=chip, numerics=False)
    cm = CostModel(run.chip)
    out = {}
    for i in run.program:
        if i.engine in ("vector", "scalar", "gpsimd"):
            out.setdefault(i.opcode, []).append(cm.compute(i)[1]["cycles"])
    return out


def _sb(shape, dtype=np.float32):
    return nl.ndarray(shape, dtype, buffer=nl.sbuf)


def test_published_vector_costs():
    n = 1000
    BF = nl.bfloat16

    def k():
        x, y, d = _sb((128, n)), _sb((128, n)), _sb((128, n))
        xb, yb, db = _sb((128, n), BF), _sb((128, n), BF), _sb((128, n), BF)
        nisa.memset(dst=x, value=1.0)  # N (fp32)
        nisa.memset(dst=xb, value=0.0)  # N/2 (zero bf16)
        nisa.memset(dst=_sb((128, n), nl.int16), value=0)  # N: int16 is not bf16/fp16
        nisa.memset(dst=y, value=2.0)
        nisa.memset(dst=yb, value=2.0)
        nisa.reciprocal(dst=d, data=x)  # 8N
        nisa.tensor_tensor(dst=d, data1=x, data2=y, op=nl.divide)  # 2N ("otherwise")
        nisa.tensor_tensor(dst=d, data1=x, data2=y, op=nl.multiply)  # 2N (fp32)
        nisa.tensor_tensor(dst=db, data1=xb, data2=yb, op=nl.add)  # N (bf16 add)
        nisa.tensor_scalar(dst=d, data=x, op0=nl.divide, operand0=3.0)  # N
        nisa.tensor_tensor_scan(dst=d, data0=x, data1=y, initial=0.0, op0=nl.multiply,
                                op1=nl.add)  # 2N
        nisa.scalar_tensor_tensor(dst=db, data=xb, op0=nl.subtract, operand0=1.0,
                                  op1=nl.multiply, operand1=yb)  # N (bf16 sub->mul)
        nisa.scalar_tensor_tensor(dst=d, data=x, op0=nl.subtract, operand0=1.0,
                                  op1=nl.multiply, operand1=y)  # 2N
        nisa.tensor_reduce(dst=_sb((128, 1), BF), op=nl.add, data=xb, axis=1)  # N/2
        nisa.tensor_reduce(dst=_sb((128, 1)), op=nl.add, data=x, axis=1)  # N
        nisa.tensor_scalar(dst=_sb((128, 8)), data=x[:, 0:8], op0=nl.add, operand0=1.0)  # max(MIN_II, 8) = 64

    c = _cycles(k)
    assert c["memset"] == [n, n / 2, n, n, n]
    assert c["reciprocal"] == [8 * n]
    assert c["tensor_tensor"] == [2 * n, 2 * n, n]
    assert c["tensor_scalar"] == [n, 64]
    assert c["tensor_tensor_scan"] == [2 * n]
    assert c["scalar_tensor_tensor"] == [n, 2 * n]
    assert c["tensor_reduce"] == [n / 2, n]


def test_published_gpsimd_rsqrt_is_4x_scalar():
    n = 1000

    def k():
        x, d = _sb((128, n)), _sb((128, n))
        nisa.memset(dst=x, value=4.0)
        nisa.tensor_scalar(dst=d, data=x, op0=nl.rsqrt, operand0=0.0,
                           engine=nisa.gpsimd_engine)
        nisa.activation(dst=d, op=nl.rsqrt, data=x)

    c = _cycles(k)
    assert c["tensor_scalar"] == [4 * n] and c["activation"] == [n]
