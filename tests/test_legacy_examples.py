"""The legacy-style example kernels in examples/legacy/ (neuronxcc.nki style: aranges,
masks, nl.load/nl.store, return-style isa) run on trn1/trn2/trn3 and match NumPy
references written here; the four NKI matmul tutorial variants match at reduced
shapes and their instruction records differ the way the tutorial says, with counts
and bytes derived by hand from the tutorial's loop nests."""
import importlib.util
import pathlib
from collections import Counter

import ml_dtypes
import numpy as np
import pytest

from trnsim.legacy import jit as lj
from trnsim.examples import load_example

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "legacy"
CHIPS = ["trn1", "trn2", "trn3"]
BF16 = ml_dtypes.bfloat16


def _load(name):
    return load_example(f"legacy/{name}")


@pytest.fixture(scope="module")
def tut():
    return _load("matmul_tutorial")


def _ex(name):
    return _load(name)


def _rand(rng, shape, dtype, scale=1.0, shift=0.0):
    return (shift + scale * rng.standard_normal(shape)).astype(np.float32).astype(dtype)


def _bf16_ulp(x):
    """One bf16 unit in the last place at |x| (8 significant bits)."""
    a = np.maximum(np.abs(np.asarray(x, np.float64)), 2.0 ** -100)
    return 2.0 ** (np.floor(np.log2(a)) - 7)


def _check(got, want64, dtype, ulps=1.0, atol=1e-6):
    """got (stored as dtype) against a float64 reference: fp32 to a few fp32 ulp;
    bf16 within `ulps` bf16 ulp of the reference (one rounding of an fp32 result)."""
    assert got.dtype == np.dtype(dtype)
    g = got.astype(np.float64)
    if np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(g, want64, rtol=4e-6, atol=atol)
    else:
        err = np.abs(g - want64)
        assert np.all(err <= ulps * _bf16_ulp(want64) + atol), float(err.max())


# ============================================================================
# The matmul tutorial
# ============================================================================
SMALL_BLOCKS = dict(TILES_IN_BLOCK_M=2, TILES_IN_BLOCK_N=2, TILES_IN_BLOCK_K=2)


def _kwargs(name, **blocks):
    if name == "block_mnk":
        return blocks or SMALL_BLOCKS
    if name == "block_free":
        return {k: v for k, v in (blocks or SMALL_BLOCKS).items() if k != "TILES_IN_BLOCK_K"}
    return {}


def _exact(lhsT, rhs):
    return lhsT.astype(np.float64).T @ rhs.astype(np.float64)


def _blocked_k_sum(lhsT, rhs, block_k):
    """My model of variant 4's SBUF accumulation: each K block's fp32 PSUM partial sum
    is added (fp32) to a running sum stored in bf16, rounded after every add."""
    acc = np.zeros((lhsT.shape[1], rhs.shape[1]), np.float32)
    for k0 in range(0, lhsT.shape[0], block_k):
        part = _exact(lhsT[k0:k0 + block_k], rhs[k0:k0 + block_k]).astype(np.float32)
        acc = (acc + part).astype(BF16).astype(np.float32)
    return acc.astype(np.float64)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("name", ["tiled", "hoisted", "block_free", "block_mnk"])
def test_tutorial_variant_numerics(tut, name, chip):
    K, M, N = 256, 256, 1024
    rng = np.random.default_rng([CHIPS.index(chip), len(name)])
    lhsT, rhs = _rand(rng, (K, M), BF16), _rand(rng, (K, N), BF16)
    blocks = dict(TILES_IN_BLOCK_M=2, TILES_IN_BLOCK_N=2, TILES_IN_BLOCK_K=1)
    out, _ = lj.run_legacy(tut.VARIANTS[name].fn, (lhsT, rhs), _kwargs(name, **blocks),
                           chip=chip)
    assert out.shape == (M, N) and out.dtype == BF16
    if name == "block_mnk":  # two K blocks of 128: the running sum is rounded to bf16
        want = _blocked_k_sum(lhsT, rhs, 128)
        _check(out, want, BF16, ulps=1.0, atol=1e-3)
        # ... which is not what one rounding of the whole sum gives everywhere
        assert not np.array_equal(out.astype(np.float64),
                                  _exact(lhsT, rhs).astype(np.float32).astype(BF16)
                                  .astype(np.float64))
    else:
        _check(out, _exact(lhsT, rhs), BF16, ulps=1.0, atol=1e-3)


# -- the records ------------------------------------------------------------------
# K=512, M=512, N=2048: KT = MT = NT = 4 tiles of 128 / 128 / 512; small blocks of 2
# tiles each for variants 3 and 4 (variant 4: NUM_M = NUM_N = NUM_K = 2 blocks).
RK, RM, RN = 512, 512, 2048
BYTES = 2  # bf16
LOAD_A = 128 * 128 * BYTES  # one lhsT tile
LOAD_B = 128 * 512 * BYTES  # one rhs tile
A_ALL, B_ALL, OUT_ALL = RK * RM * BYTES, RK * RN * BYTES, RM * RN * BYTES

EXPECTED = {
    # DMAs: loads + 16 stores of [128, 512]; HBM read; opcodes besides DMAs / matmuls
    "tiled": dict(
        dma=2 * 4 * 4 * 4 + 16,  # a pair of tile loads per matmul
        hbm_read=4 * 4 * 4 * (LOAD_A + LOAD_B),
        other={"memset": 16, "tensor_copy": 16}),
    "hoisted": dict(
        dma=4 * 4 + 4 * 4 * 4 + 16,  # lhsT strip per m, rhs strip per (m, n)
        hbm_read=A_ALL + 4 * B_ALL,  # rhs read once per m tile
        other={"memset": 16, "tensor_copy": 16}),
    "block_free": dict(
        dma=4 * 4 + 2 * 4 * 4 + 16,  # rhs strips once per (M block, n tile)
        hbm_read=A_ALL + 2 * B_ALL,  # rhs read once per M block (2 of them)
        other={"memset": 16, "tensor_copy": 16}),
    "block_mnk": dict(
        dma=2 * 2 * 2 + 2 * 2 * 2 * 2 + 2 * 2 * 2,  # rhs rows, lhsT rows, row stores
        hbm_read=B_ALL + 2 * A_ALL,  # rhs once, lhsT once per N block
        # memsets: the 8 result tiles of an N block zeroed (x2 N blocks) + 32 PSUM
        # tiles;
        # tensor_tensor: each PSUM partial added into SBUF (2 N x 2 K x 2 M x 4 tiles);
        # tensor_copy: the 8 result tiles of each N block gathered into output rows
        other={"memset": 2 * 2 * 2 * 2 + 2 * 2 * 2 * 2 * 2, "tensor_tensor": 32,
               "tensor_copy": 2 * 2 * 2 * 2}),
}


@pytest.fixture(scope="module")
def records(tut):
    lhsT = np.zeros((RK, RM), BF16)
    rhs = np.zeros((RK, RN), BF16)
    out = {}
    for name, kernel in tut.VARIANTS.items():
        _, run = lj.run_legacy(kernel.fn, (lhsT, rhs), _kwargs(name), chip="trn1",
                               numerics=False)
        out[name] = run.program
    return out


def _hbm_read(program):
    return sum(a.bytes for i in program for a in i.reads if a.space == "hbm")


def _hbm_written(program):
    return sum(a.bytes for i in program for a in i.writes if a.space == "hbm")


def _read_from(program, tensor):
    """HBM bytes read from the kernel argument named `tensor`."""
    return sum(a.bytes for i in program for a in i.reads
               if a.space == "hbm" and a.tensor == tensor)


@pytest.mark.parametrize("name", ["tiled", "hoisted", "block_free", "block_mnk"])
def test_tutorial_record_counts(records, name):
    prog = records[name]
    exp = EXPECTED[name]
    ops = Counter(i.opcode for i in prog)
    # the same compute in every variant: 4 x 4 output tiles x 4 K tiles of
    # [128,128] x [128,512] matmuls on the Tensor Engine, accumulating in PSUM
    mm = [i for i in prog if i.opcode == "nc_matmul"]
    assert len(mm) == 64 and all(i.engine == "tensor" for i in mm)
    for i in mm:
        shapes = {a.role: a.shape for a in i.accesses}
        assert shapes["stationary"] == (128, 128) and shapes["moving"] == (128, 512)
        assert shapes["dst"] == (128, 512)
    dmas = [i for i in prog if i.engine == "dma"]
    assert len(dmas) == ops["dma_copy"] == exp["dma"]
    assert _hbm_read(prog) == exp["hbm_read"]
    assert _hbm_written(prog) == OUT_ALL
    assert sum(i.bytes_moved for i in dmas) == exp["hbm_read"] + OUT_ALL
    rest = {op: n for op, n in ops.items() if op not in ("dma_copy", "nc_matmul")}
    assert rest == exp["other"]


def test_tutorial_records_differ_as_the_tutorial_says(records):
    dma = {n: sum(1 for i in p if i.engine == "dma") for n, p in records.items()}
    read = {n: _hbm_read(p) for n, p in records.items()}
    # Optimization 1 (hoisting) removes redundant loads: fewer DMAs, fewer HBM bytes
    assert dma["hoisted"] < dma["tiled"] and read["hoisted"] < read["tiled"]
    # Optimization 2 (blocking M and N) reuses each loaded rhs strip for a whole M block
    assert dma["block_free"] < dma["hoisted"] and read["block_free"] < read["hoisted"]
    # Optimization 3 (blocking K too, row-sized DMAs): the fewest and largest transfers
    assert dma["block_mnk"] < dma["block_free"] and read["block_mnk"] < read["block_free"]
    big = lambda p: max(i.bytes_moved for i in p if i.engine == "dma")  # noqa: E731
    assert big(records["block_mnk"]) == 128 * 1024 * BYTES  # [128, BLOCK_N] rows
    assert big(records["tiled"]) == LOAD_B
    # the matmul work itself is unchanged
    mm = {n: sum(1 for i in p if i.opcode == "nc_matmul") for n, p in records.items()}
    assert set(mm.values()) == {64}


def test_tutorial_arithmetic_intensity_and_default_blocks(tut):
    """The tutorial's numbers: 102 flop per HBM byte read for the tiled kernel (any
    shape: 2*128*128*512 flop per 160 KiB of tiles), 683 for the fully blocked one at
    its block sizes 2048 / 1024 / 1024 (2*2048*1024*1024 / ((2048 + 1024) * 1024 * 2))."""
    K, M, N = 256, 128, 512
    _, r1 = lj.run_legacy(tut.matmul_tiled.fn, (np.zeros((K, M), BF16), np.zeros((K, N), BF16)),
                          numerics=False)
    assert round(2 * K * M * N / _hbm_read(r1.program)) == 102

    K, M, N = 1024, 2048, 1024  # one block of each with the default block sizes
    _, r4 = lj.run_legacy(tut.matmul_block_mnk.fn,
                          (np.zeros((K, M), BF16), np.zeros((K, N), BF16)), numerics=False)
    assert round(2 * K * M * N / _hbm_read(r4.program)) == 683
    ops = Counter(i.opcode for i in r4.program)
    # 16 x 2 output tiles of 8 matmuls; 8 rhs rows [128, 1024] + 8 lhsT rows
    # [128, 2048] loaded, 16 output rows [128, 1024] stored
    assert ops["nc_matmul"] == 16 * 2 * 8
    assert ops["dma_copy"] == 8 + 8 + 16
    sizes = Counter(i.bytes_moved for i in r4.program if i.engine == "dma")
    assert sizes == {128 * 1024 * BYTES: 8 + 16, 128 * 2048 * BYTES: 8}


def test_tutorial_shape_checks(tut):
    lhsT, rhs = np.zeros((256, 256), BF16), np.zeros((256, 1024), BF16)
    with pytest.raises(AssertionError):  # M not a multiple of the default 2048 block
        lj.run_legacy(tut.matmul_block_mnk.fn, (lhsT, rhs), numerics=False)
    with pytest.raises(AssertionError):  # contraction sizes differ
        lj.run_legacy(tut.matmul_tiled.fn, (lhsT, np.zeros((384, 1024), BF16)),
                      numerics=False)


# ============================================================================
# The core examples, legacy style
# ============================================================================
@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(128, 512), (200, 700), (5, 3)])
def test_tensor_add(chip, dtype, shape):
    ex = _ex("tensor_add")
    rng = np.random.default_rng([CHIPS.index(chip), *shape])
    a, b = _rand(rng, shape, dtype), _rand(rng, shape, dtype)
    c, run = lj.run_legacy(ex.tensor_add_kernel.fn, (a, b), chip=chip)
    want = a.astype(np.float64) + b.astype(np.float64)
    _check(c, want, dtype)
    # masks: exactly the inputs are read from HBM and the output written, no more
    item = np.dtype(dtype).itemsize
    assert _hbm_read(run.program) == 2 * a.size * item
    assert _hbm_written(run.program) == a.size * item
    tiles = -(-shape[0] // 128) * -(-shape[1] // 512)
    ops = Counter(i.opcode for i in run.program)
    assert ops["dma_copy"] == 3 * tiles and ops["tensor_tensor"] == tiles


@pytest.mark.parametrize("chip", CHIPS)
def test_tiled_matmul(chip):
    ex = _ex("tiled_matmul")
    K, M, N = 256, 256, 1024
    rng = np.random.default_rng(CHIPS.index(chip))
    lhsT, rhs = _rand(rng, (K, M), BF16), _rand(rng, (K, N), BF16)
    out, run = lj.run_legacy(ex.tiled_matmul_kernel.fn, (lhsT, rhs), chip=chip)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _exact(lhsT, rhs), rtol=1e-5, atol=1e-4 * np.sqrt(K))
    assert Counter(i.opcode for i in run.program)["nc_matmul"] == 2 * 2 * 2


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("shape", [(256, 320), (100, 60)])
def test_pe_transpose(chip, shape):
    ex = _ex("pe_transpose")
    rng = np.random.default_rng([CHIPS.index(chip), *shape])
    x = _rand(rng, shape, BF16)
    out, run = lj.run_legacy(ex.pe_transpose_kernel.fn, (x,), chip=chip)
    assert out.shape == shape[::-1] and out.dtype == BF16
    assert np.array_equal(out.view(np.uint16), np.ascontiguousarray(x.T).view(np.uint16))
    blocks = -(-shape[0] // 128) * -(-shape[1] // 128)
    tr = [i for i in run.program if i.opcode == "nc_transpose"]
    assert len(tr) == blocks and all(i.engine == "tensor" for i in tr)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
def test_softmax(chip, dtype):
    ex = _ex("softmax")
    rng = np.random.default_rng(CHIPS.index(chip))
    x = _rand(rng, (300, 640), dtype, scale=3.0)
    y, run = lj.run_legacy(ex.softmax_kernel.fn, (x,), chip=chip)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=1, keepdims=True))
    _check(y, e / e.sum(axis=1, keepdims=True), dtype, ulps=1.0, atol=1e-7)
    # 3 row tiles, the last one masked to 44 rows: x is read once, exactly
    assert _read_from(run.program, "x") == x.nbytes
    assert _hbm_written(run.program) == y.nbytes
    loads = [a.shape for i in run.program for a in i.reads if a.tensor == "x"]
    assert loads == [(128, 640), (128, 640), (44, 640)]
    ops = Counter(i.opcode for i in run.program)
    assert ops["tensor_reduce"] == ops["reciprocal"] == ops["tensor_scalar"] == 3


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
def test_rmsnorm(chip, dtype):
    ex = _ex("rmsnorm")
    rng = np.random.default_rng(CHIPS.index(chip))
    x = _rand(rng, (200, 768), dtype)
    w = _rand(rng, (768,), np.float32, scale=0.1, shift=1.0)
    eps = 1e-6
    y, run = lj.run_legacy(ex.rmsnorm_kernel.fn, (x, w), chip=chip)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + eps) * w.astype(np.float64)
    _check(y, want, dtype, ulps=1.0, atol=1e-5)
    # the weight is loaded once; x once, the last row tile masked to 72 rows
    assert _read_from(run.program, "weight") == w.nbytes
    assert _read_from(run.program, "x") == x.nbytes


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("dtype", [np.float32, BF16], ids=["fp32", "bf16"])
def test_layernorm(chip, dtype):
    ex = _ex("layernorm")
    rng = np.random.default_rng(CHIPS.index(chip))
    x = _rand(rng, (200, 1100), dtype, shift=2.0)
    g = _rand(rng, (1100,), np.float32, scale=0.1, shift=1.0)
    b = _rand(rng, (1100,), np.float32, scale=0.1)
    eps = 1e-5
    y, run = lj.run_legacy(ex.layernorm_kernel.fn, (x, g, b), chip=chip)
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=1, keepdims=True)
    var = x64.var(axis=1, keepdims=True)
    want = (x64 - mu) / np.sqrt(var + eps) * g.astype(np.float64) + b.astype(np.float64)
    _check(y, want, dtype, ulps=1.0, atol=2e-5)
    ops = Counter(i.opcode for i in run.program)
    # 2 row tiles x 3 chunks (512, 512, 76) of bn_stats, one bn_aggr per row tile
    assert ops["bn_stats"] == 2 * 3 and ops["bn_aggr"] == 2
    chunks = [(a.shape, i.writes[0].shape) for i in run.program if i.opcode == "bn_stats"
              for a in i.reads if a.role == "data"]
    assert chunks == [((128, 512), (128, 6)), ((128, 512), (128, 6)), ((128, 76), (128, 6)),
                      ((72, 512), (72, 6)), ((72, 512), (72, 6)), ((72, 76), (72, 6))]
    aggr = [i for i in run.program if i.opcode == "bn_aggr"]
    assert [i.reads[0].shape for i in aggr] == [(128, 18), (72, 18)]
    assert _read_from(run.program, "x") == x.nbytes
    assert _read_from(run.program, "gamma") == _read_from(run.program, "beta") == g.nbytes


@pytest.mark.parametrize("chip", CHIPS)
def test_spmd_grid(chip):
    ex = _ex("spmd_add")
    rng = np.random.default_rng(CHIPS.index(chip))
    a, b = _rand(rng, (512, 1024), np.float32), _rand(rng, (512, 1024), np.float32)
    c, run = lj.run_legacy(ex.spmd_add_kernel.fn, (a, b), grid=(4, 2), chip=chip)
    _check(c, a.astype(np.float64) + b.astype(np.float64), np.float32)
    # 8 instances, each 2 loads + 1 add + 1 store of its own [128, 512] tile
    ops = Counter(i.opcode for i in run.program)
    assert ops["dma_copy"] == 8 * 3 and len(run.program) == 8 * 4
    stores = [i for i in run.program if any(a.space == "hbm" for a in i.writes)]
    ranges = sorted((a.lo, a.hi) for i in stores for a in i.writes)
    assert len(set(ranges)) == 8
    assert sum(a.bytes for i in stores for a in i.writes) == c.nbytes


def test_spmd_grid_launch_syntax():
    """`kernel[4, 2](a, b)`: the grid launch returns the full result."""
    ex = _ex("spmd_add")
    rng = np.random.default_rng(3)
    a, b = _rand(rng, (256, 512), np.float32), _rand(rng, (256, 512), np.float32)
    c = ex.spmd_add_kernel[4, 2](a, b)
    _check(c, a.astype(np.float64) + b.astype(np.float64), np.float32)


# ============================================================================
# The benchmark script (at a small shape)
# ============================================================================
def test_benchmark_script_small_shape(capsys):
    path = EXAMPLES.parent.parent / "benchmarks" / "matmul_tutorial.py"
    spec = importlib.util.spec_from_file_location("bench_matmul_tutorial", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    K, M, N = 256, 256, 1024  # KT = MT = NT = 2 tiles
    res = bench.main(["--shape", str(K), str(M), str(N),
                      "--variants", "tiled,hoisted,block_free"])
    assert list(res) == ["tiled", "hoisted", "block_free"]
    a_all, b_all = K * M * 2, K * N * 2
    # (DMAs, HBM bytes read): a tile pair per matmul; lhsT per m + rhs per (m, n);
    # rhs once per M block of 2 tiles; + 4 stores each
    want = {"tiled": (2 * 8 + 4, 8 * (128 * 128 + 128 * 512) * 2),
            "hoisted": (4 + 8 + 4, a_all + 2 * b_all),
            "block_free": (4 + 4 + 4, a_all + b_all)}
    for name, (dmas, read) in want.items():
        s = res[name]
        assert s["engines"]["tensor"] == 8 and s["engines"]["dma"] == s["dma_count"] == dmas
        assert s["hbm_bytes_read"] == read and s["hbm_bytes_written"] == M * N * 2
        assert s["dma_bytes"] == read + M * N * 2
        assert s["instructions"] == sum(s["engines"].values()) == sum(s["opcodes"].values())
        assert s["wall_s"] > 0 and s["instr_per_s"] > 0
    text = capsys.readouterr().out
    assert "(102 flop/byte)" in text  # the tutorial's figure for the tiled kernel
    assert text.count("instructions/s") == 3
