"""Deliberately broken kernels: one test per hardware/API check. Each asserts the error
type and that the message names the instruction, the operand (with its shape and
buffer), the limit broken, and this file's name with the exact line of the offending
kernel statement (the line carrying `# LINE-MARK: <tag>`).

Where a check is not about an operand the operand part is replaced by what the check is
about: a static out-of-bounds slice is an indexing error raised before any instruction
runs (it names the tensor, its shape and buffer, the dimension and the bound); an
instruction missing on the target generation names the instruction, the generation it
needs and the target's."""
import numpy as np
import pytest

import trnsim
import trnsim.nki.isa as nisa
import trnsim.nki.language as nl
from trnsim.machine.errors import (CapacityError, NkiValidationError, OutOfBoundsError,
                                   UnsupportedError)

THIS_FILE = __file__.rsplit("/", 1)[-1]


def _line(tag: str) -> int:
    """The line of this file that ends with `# LINE-MARK: tag`."""
    with open(__file__) as f:
        hits = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# LINE-MARK: {tag}")]
    assert len(hits) == 1, f"LINE-MARK {tag!r} found {len(hits)} times"
    return hits[0]


def _expect(kernel, args, exc_type, tag, *parts, chip="trn2"):
    """Run `kernel` on `chip`; check the error type, each text part, and the location."""
    with pytest.raises(exc_type) as ei:
        trnsim.run_kernel(kernel, args, chip=chip)
    e = ei.value
    msg = str(e)
    for part in parts:
        assert part in msg, f"{part!r} not in error message:\n{msg}"
    line = _line(tag)
    assert f"{THIS_FILE}:{line}" in msg, f"{THIS_FILE}:{line} not in error message:\n{msg}"
    assert e.location is not None and e.location.file == __file__ and e.location.line == line
    return e


def _hbm(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype)


X = _hbm((128, 64))


# -- partitions -------------------------------------------------------------
def test_partition_dim_over_128_ndarray():
    def kern(x):
        nl.ndarray((256, 64), nl.float32, buffer=nl.sbuf, name="too_tall")  # LINE-MARK: p256

    e = _expect(kern, (X,), NkiValidationError, "p256",
                "ndarray", "256", "exceeds", "128", "'too_tall'", "float32", "[256, 64]", "sbuf")
    assert e.op == "ndarray"


def test_partition_dim_over_128_operand_view():
    def kern(x):
        t = nl.ndarray((128, 64), nl.float32, name="t")
        nisa.memset(dst=t, value=1.0)
        tall = t.ap(pattern=[[64, 200], [1, 64]])  # a 200-partition view of t
        out = nl.ndarray((128, 64), nl.float32, name="out")
        nisa.tensor_tensor(dst=out, data1=tall, data2=tall, op=nl.add)  # LINE-MARK: view200

    e = _expect(kern, (X,), NkiValidationError, "view200",
                "tensor_tensor", "data1", "partition dimension 200", "maximum 128",
                "float32[200, 64] in sbuf 't'")
    assert e.op == "tensor_tensor"


def test_operand_partition_count_mismatch():
    def kern(x):
        a = nl.ndarray((128, 64), nl.float32, name="a")
        b = nl.ndarray((64, 64), nl.float32, name="b")
        nisa.memset(dst=a, value=1.0)
        nisa.memset(dst=b, value=2.0)
        nisa.tensor_tensor(dst=a, data1=a, data2=b, op=nl.add)  # LINE-MARK: pmismatch

    _expect(kern, (X,), NkiValidationError, "pmismatch",
            "tensor_tensor", "number of partitions", "mismatch",
            "data1[128, 64]", "data2[64, 64]", "float32[64, 64] in sbuf 'b'",
            "float32[128, 64] in sbuf 'a'")


# -- buffers ----------------------------------------------------------------
def _matmul_operands(stat_buf=nl.sbuf, dst_buf=nl.psum, k=128, m=128, n=512,
                     sdt=nl.bfloat16, mdt=nl.bfloat16, ddt=nl.float32):
    s = nl.ndarray((k, m), sdt, buffer=stat_buf, name="stat")
    mv = nl.ndarray((k, n), mdt, buffer=nl.sbuf, name="mov")
    d = nl.ndarray((m, n), ddt, buffer=dst_buf, name="res")
    return s, mv, d


def test_matmul_stationary_in_psum():
    def kern(x):
        s, mv, d = _matmul_operands(stat_buf=nl.psum, sdt=nl.float32, mdt=nl.float32, n=256)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: stat-psum

    _expect(kern, (X,), NkiValidationError, "stat-psum",
            "nc_matmul", "'stationary'", "'sbuf'", "'psum'", "float32[128, 128] in psum 'stat'")


def test_matmul_dst_in_sbuf():
    def kern(x):
        s, mv, d = _matmul_operands(dst_buf=nl.sbuf)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: dst-sbuf

    _expect(kern, (X,), NkiValidationError, "dst-sbuf",
            "nc_matmul", "'dst'", "'psum'", "'sbuf'", "float32[128, 512] in sbuf 'res'")


def test_gpsimd_cannot_touch_psum():
    def kern(x):
        p = nl.ndarray((128, 64), nl.float32, buffer=nl.psum, name="acc")
        s = nl.ndarray((128, 64), nl.float32, name="s")
        nisa.memset(dst=s, value=1.0)
        nisa.tensor_copy(dst=s, src=p, engine=nisa.engine.gpsimd)  # LINE-MARK: gpsimd-psum

    _expect(kern, (X,), NkiValidationError, "gpsimd-psum",
            "tensor_copy", "'src'", "float32[128, 64] in psum 'acc'", "GpSimd", "PSUM")


def test_dma_copy_cannot_read_psum():
    def kern(x):
        p = nl.ndarray((128, 64), nl.float32, buffer=nl.psum, name="acc")
        out = nl.ndarray((128, 64), nl.float32, buffer=nl.shared_hbm, name="out")
        nisa.dma_copy(dst=out, src=p)  # LINE-MARK: dma-psum

    _expect(kern, (X,), NkiValidationError, "dma-psum",
            "dma_copy", "src", "float32[128, 64] in psum 'acc'", "PSUM")


# -- matmul limits ----------------------------------------------------------
def test_matmul_contraction_over_128():
    def kern(x):
        big = nl.ndarray((128, 256), nl.bfloat16, name="stat")
        mv = nl.ndarray((128, 512), nl.bfloat16, name="mov")
        d = nl.ndarray((128, 512), nl.float32, buffer=nl.psum, name="res")
        k256 = big.ap(pattern=[[256, 256], [1, 128]])  # K = 256 partitions
        nisa.nc_matmul(dst=d, stationary=k256, moving=mv)  # LINE-MARK: k256

    _expect(kern, (X,), NkiValidationError, "k256",
            "nc_matmul", "stationary", "256", "128", "bfloat16[256, 128] in sbuf 'stat'")


def test_matmul_contraction_over_row_tile():
    def kern(x):
        s, mv, d = _matmul_operands(m=64)
        tp, ts = (0, 0), (64, 128)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv, tile_position=tp, tile_size=ts)  # LINE-MARK: k-tile

    _expect(kern, (X,), NkiValidationError, "k-tile",
            "nc_matmul", "stationary bfloat16[128, 64] in sbuf 'stat'",
            "moving bfloat16[128, 512] in sbuf 'mov'", "K=128", "limit of 64", "row_size=64")


def test_matmul_stationary_free_over_128():
    def kern(x):
        s = nl.ndarray((128, 256), nl.bfloat16, name="stat")
        mv = nl.ndarray((128, 512), nl.bfloat16, name="mov")
        d = nl.ndarray((128, 512), nl.float32, buffer=nl.psum, name="res")
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: m256

    _expect(kern, (X,), NkiValidationError, "m256",
            "nc_matmul", "stationary bfloat16[128, 256] in sbuf 'stat'", "M=256",
            "limit of 128")


def test_matmul_moving_free_over_512_on_trn2_not_trn3():
    def kern(x):
        s, mv, d = _matmul_operands(n=1024)
        nisa.memset(dst=s, value=1.0)
        nisa.memset(dst=mv, value=2.0)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: n1024
        out = nl.ndarray((128, 1024), nl.float32, buffer=nl.shared_hbm)
        sb = nl.ndarray((128, 1024), nl.float32)
        nisa.tensor_copy(dst=sb, src=d)
        nisa.dma_copy(dst=out, src=sb)
        return out

    for chip in ("trn1", "trn2"):
        _expect(kern, (X,), NkiValidationError, "n1024",
                "nc_matmul", "moving bfloat16[128, 1024] in sbuf 'mov'", "N=1024",
                "limit of 512", chip, chip=chip)
    out, _ = trnsim.run_kernel(kern, (X,), chip="trn3")  # NeuronCore-v4: up to 4096 fp32
    assert (out == 128 * 2.0).all()


def test_bn_stats_free_size_over_512():
    def kern(x):
        d = nl.ndarray((128, 1024), nl.float32, name="wide")
        nisa.memset(dst=d, value=1.0)
        st = nl.ndarray((128, 6), nl.float32, name="stats")
        nisa.bn_stats(dst=st, data=d)  # LINE-MARK: bn1024

    _expect(kern, (X,), NkiValidationError, "bn1024",
            "bn_stats", "data float32[128, 1024] in sbuf 'wide'", "1024", "at most 512")


# -- dtypes -----------------------------------------------------------------
def test_matmul_fp32_mixed_with_bf16():
    def kern(x):
        s, mv, d = _matmul_operands(sdt=nl.float32, mdt=nl.bfloat16)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: mix32

    _expect(kern, (X,), NkiValidationError, "mix32",
            "nc_matmul", "stationary float32[128, 128] in sbuf 'stat'",
            "moving bfloat16[128, 512] in sbuf 'mov'", "float32/tfloat32")


def test_matmul_e4m3_with_e4m3fn():
    def kern(x):
        s, mv, d = _matmul_operands(sdt=nl.float8_e4m3, mdt=nl.float8_e4m3fn)
        nisa.nc_matmul(dst=d, stationary=s, moving=mv)  # LINE-MARK: e4m3fn

    _expect(kern, (X,), NkiValidationError, "e4m3fn",
            "nc_matmul", "stationary float8_e4m3[128, 128] in sbuf 'stat'",
            "moving float8_e4m3fn[128, 512] in sbuf 'mov'", "cannot be mixed", chip="trn3")
    # and on trn2 float8_e4m3fn is not a matmul input at all
    _expect(kern, (X,), UnsupportedError, "e4m3fn",
            "nc_matmul", "moving float8_e4m3fn[128, 512] in sbuf 'mov'", "NeuronCore-v4",
            chip="trn2")


def test_mx_on_trn2():
    def quant(x):
        src = nl.ndarray((32, 64), nl.bfloat16, name="src")
        nisa.memset(dst=src, value=1.0)
        q = nl.ndarray((32, 16), nl.float8_e4m3fn_x4, name="q")
        sc = nl.ndarray((4, 16), nl.float8_e8m0fnu, name="q_scale")
        nisa.quantize_mx(dst=q, src=src, dst_scale=sc)  # LINE-MARK: qmx

    _expect(quant, (X,), UnsupportedError, "qmx",
            "quantize_mx", "MX", "NeuronCore-v4", "trn2", "NeuronCore-v3")

    def mm(x):
        s = nl.ndarray((32, 16), nl.float8_e4m3fn_x4, name="s")
        m = nl.ndarray((32, 64), nl.float8_e4m3fn_x4, name="m")
        ss = nl.ndarray((4, 16), nl.float8_e8m0fnu, name="ss")
        ms = nl.ndarray((4, 64), nl.float8_e8m0fnu, name="ms")
        d = nl.ndarray((16, 64), nl.float32, buffer=nl.psum, name="d")
        nisa.nc_matmul_mx(dst=d, stationary=s, moving=m, stationary_scale=ss, moving_scale=ms)  # LINE-MARK: mmx

    _expect(mm, (X,), UnsupportedError, "mmx",
            "nc_matmul_mx", "MX", "NeuronCore-v4", "trn2", chip="trn2")


# -- bounds -----------------------------------------------------------------
def test_static_out_of_bounds_slice():
    def hbm_slice(x):
        t = nl.ndarray((128, 64), nl.float32, name="t")
        nisa.dma_copy(dst=t, src=x[0:128, 32:96])  # LINE-MARK: oob-hbm

    _expect(hbm_slice, (X,), OutOfBoundsError, "oob-hbm",
            "Out-of-bound access", "tensor x", "dimension 1", "[32, 95]",
            "dimension size of 64", "float32[128, 64] in shared_hbm 'x'")

    def sbuf_slice(x):
        t = nl.ndarray((128, 64), nl.float32, name="tile")
        nisa.memset(dst=t[:, 60:70], value=0.0)  # LINE-MARK: oob-sbuf

    _expect(sbuf_slice, (X,), OutOfBoundsError, "oob-sbuf",
            "tensor tile", "dimension 1", "[60, 69]", "dimension size of 64",
            "float32[128, 64] in sbuf 'tile'")


def _gather_kernel(mode):
    def kern(table, idx):
        rows = nl.ndarray((4, 1), nl.int32, name="rows")
        nisa.dma_copy(dst=rows, src=idx)
        got = nl.ndarray((4, 8), nl.float32, name="got")
        nisa.memset(dst=got, value=-1.0)
        gathered = table.ap(pattern=[[8, 4], [1, 8]], vector_offset=rows)
        nisa.dma_copy(dst=got, src=gathered, oob_mode=mode)  # LINE-MARK: gather
        out = nl.ndarray((4, 8), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=got)
        return out
    return kern


def test_dynamic_index_out_of_bounds_error_vs_skip():
    table = np.arange(16 * 8, dtype=np.float32).reshape(16, 8)
    idx = np.array([[3], [15], [16], [0]], dtype=np.int32)  # 16 is past the 16 rows
    e = _expect(_gather_kernel(nisa.oob_mode.error), (table, idx), OutOfBoundsError, "gather",
                "dma_copy", "runtime index 16", "outside [0, 16)", "dimension 0",
                "float32[4, 8] in shared_hbm 'table'", "int32[4, 1] in sbuf 'rows'",
                "oob_mode")
    assert e.op == "dma_copy"
    out, _ = trnsim.run_kernel(_gather_kernel(nisa.oob_mode.skip), (table, idx), chip="trn2")
    np.testing.assert_array_equal(out[[0, 1, 3]], table[[3, 15, 0]])
    assert (out[2] == -1.0).all()  # the skipped row keeps what dst held


# -- generations ------------------------------------------------------------
def test_instruction_missing_on_target_generation():
    def kern(x):
        s = nl.ndarray((128, 64), nl.float32, name="s")
        nisa.memset(dst=s, value=0.5)
        d = nl.ndarray((128, 64), nl.float32, name="d")
        nisa.exponential(dst=d, src=s)  # LINE-MARK: exp-v4
        out = nl.ndarray((128, 64), nl.float32, buffer=nl.shared_hbm)
        nisa.dma_copy(dst=out, src=d)
        return out

    for chip, gen in (("trn1", 2), ("trn2", 3)):
        _expect(kern, (X,), UnsupportedError, "exp-v4",
                "exponential", "NeuronCore-v4", chip, f"NeuronCore-v{gen}", chip=chip)
    out, _ = trnsim.run_kernel(kern, (X,), chip="trn3")
    np.testing.assert_allclose(out, np.exp(np.float32(0.5)), rtol=1e-6)


# -- capacity ---------------------------------------------------------------
def test_sbuf_overflow():
    def kern(x):
        a = nl.ndarray((128, 30720), nl.float32, name="big_a")  # LINE-MARK: sbuf-a
        b = nl.ndarray((128, 30720), nl.float32, name="big_b")
        nisa.memset(dst=a, value=1.0)
        nisa.tensor_copy(dst=b, src=a)  # LINE-MARK: sbuf-both

    for chip, usable in (("trn1", 180224), ("trn2", 212984)):
        e = _expect(kern, (X,), CapacityError, "sbuf-both",
                    "tensor_copy", "SBUF overflow", chip, "245760 bytes per partition",
                    f"{usable} usable bytes per partition",
                    f"big_a float32[128, 30720]: 122880 B/partition, allocated at "
                    f"{__file__}:{_line('sbuf-a')}", "big_b float32[128, 30720]", chip=chip)
        assert e.op == "tensor_copy"


def test_psum_overflow():
    def kern(x):
        a = nl.ndarray((128, 2304), nl.float32, buffer=nl.psum, name="ps_a")  # 9 KiB: 5 banks
        b = nl.ndarray((128, 2304), nl.float32, buffer=nl.psum, name="ps_b")
        nisa.memset(dst=a, value=1.0)
        nisa.tensor_copy(dst=b, src=a)  # LINE-MARK: psum-both

    _expect(kern, (X,), CapacityError, "psum-both",
            "tensor_copy", "PSUM overflow", "20480 bytes per partition",
            "8 PSUM banks of 2048 bytes", "ps_a float32[128, 2304]: 9216 B/partition",
            "ps_b float32[128, 2304]")
