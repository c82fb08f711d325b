"""trnsim.torch.device: an unmodified PyTorch model runs on the CPU while each aten
operation is charged to a simulated NeuronCore (a library kernel where one exists, a
labelled roofline estimate otherwise), in a model -> module -> op -> kernel tree.

References: the aten operations PyTorch dispatches for these small modules (linear on
a 2-D input is one addmm; on 3-D a view, an addmm and a view; nn.LayerNorm is
native_layer_norm), each library kernel's own timing-only profile at the layout the
charge documents, and the roofline estimate computed by hand from hardware.md's trn2
figures (one core's DMA engines: 368 GB/s; Vector Engine: 512 16-bit elements per
cycle at 0.96 GHz)."""
import json

import ml_dtypes
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import trnsim  # noqa: E402
from trnsim.kernels import attention, matmul, norms  # noqa: E402
from trnsim.torch.device import device  # noqa: E402

BF16 = ml_dtypes.bfloat16
DMA_BW_TRN2 = 368e9
VECTOR_16BIT_RATE_TRN2 = 512 * 0.96e9


def kernel_time(kernel, **inputs):
    return trnsim.profile(kernel, **inputs, chip="trn2", numerics=False).total_time


def z(*shape, dtype=BF16):
    return np.zeros(shape, dtype)


class Head(nn.Module):
    """linear -> softmax over the last dim -> + input."""

    def __init__(self, d=256):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        return torch.softmax(self.proj(x), -1) + x


def run(model, x, **kw):
    with device("trn2", **kw) as dev:
        y = model(x)
    return y, dev.profile


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return Head().to(torch.bfloat16), torch.randn(256, 256, dtype=torch.bfloat16)


def test_every_operation_is_charged_in_order(head):
    model, x = head
    _, prof = run(model, x)
    assert [n.charge.op for n in prof.ops] == [
        "aten.addmm.default", "aten._softmax.default", "aten.add.Tensor"]
    assert [n.charge.kernel for n in prof.ops] == [
        "trnsim.kernels.matmul.matmul", "trnsim.kernels.norms.softmax", "roofline estimate"]


def test_library_charges_are_the_kernels_own_profiles(head):
    model, x = head
    _, prof = run(model, x)
    addmm, softmax, _ = prof.ops
    # x [M, K] @ W^T [K, N]: the kernel takes lhsT [K, M] and the bias fused
    assert addmm.time == pytest.approx(kernel_time(matmul.matmul, lhsT=z(256, 256),
                                                   rhs=z(256, 256), bias=z(256)))
    assert softmax.time == pytest.approx(kernel_time(norms.softmax, x=z(256, 256)))
    assert addmm.flops == 2 * 256 * 256 * 256


def test_roofline_estimate_by_hand(head):
    model, x = head
    _, prof = run(model, x)
    add = prof.ops[2]
    assert add.charge.estimate and "no library kernel" in add.charge.note
    nbytes = 3 * 256 * 256 * 2  # two bf16 inputs read, one output written
    assert add.hbm_bytes == nbytes
    assert add.time == pytest.approx(max(nbytes / DMA_BW_TRN2,
                                         256 * 256 / VECTOR_16BIT_RATE_TRN2))


def test_values_are_the_cpu_model_and_fake_mode_charges_the_same(head):
    model, x = head
    ref = model(x)
    y, prof = run(model, x)
    assert torch.equal(y, ref)
    yf, prof_f = run(model, x, numerics=False)
    assert type(yf).__name__ == "FakeTensor" and yf.shape == ref.shape
    assert prof_f.total_time == pytest.approx(prof.total_time)


class Block(nn.Module):
    """A pre-norm attention block: layer norm, QKV projections, causal SDPA with GQA
    (4 query heads, 2 KV heads), output projection, residual."""

    def __init__(self, d=256, h=4, kvh=2):
        super().__init__()
        self.h, self.kvh, self.hd = h, kvh, d // h
        self.norm = nn.LayerNorm(d)
        self.q = nn.Linear(d, d, bias=False)
        self.kv = nn.Linear(d, 2 * kvh * self.hd, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, S, _ = x.shape
        y = self.norm(x)
        q = self.q(y).view(B, S, self.h, self.hd).transpose(1, 2)
        k, v = self.kv(y).view(B, S, 2, self.kvh, self.hd).unbind(2)
        a = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
        return x + self.o(a.transpose(1, 2).reshape(B, S, -1))


@pytest.fixture(scope="module")
def tiny_transformer():
    torch.manual_seed(1)
    model = nn.Sequential(Block(), Block()).to(torch.bfloat16)
    x = torch.randn(1, 256, 256, dtype=torch.bfloat16)
    y, prof = run(model, x, numerics=False)
    return model, prof


def test_hierarchy_sums_to_the_total(tiny_transformer):
    _, prof = tiny_transformer
    for _, n in prof.root.walk():
        if n.children:
            assert n.time == pytest.approx(sum(c.time for c in n.children))
            assert n.flops == pytest.approx(sum(c.flops for c in n.children))
    assert prof.total_time == pytest.approx(sum(n.time for n in prof.ops))
    # one core, one kernel after another
    t = 0.0
    for n in prof.ops:
        assert n.start == pytest.approx(t)
        t += n.time


def test_modules_are_nodes_per_forward_call(tiny_transformer):
    _, prof = tiny_transformer
    seq = prof.root.children[0]
    assert seq.name == "Sequential" and [c.name for c in seq.children] == ["0 (Block)",
                                                                          "1 (Block)"]
    names = [c.name for c in seq.children[1].children if c.kind == "module"]
    assert names == ["1.norm (LayerNorm)", "1.q (Linear)", "1.kv (Linear)", "1.o (Linear)"]


def test_attention_is_charged_to_flash_attention_with_gqa(tiny_transformer):
    _, prof = tiny_transformer
    att = [n for n in prof.ops if n.charge.kernel.endswith("flash_attention_fwd")]
    assert len(att) == 2
    ref = kernel_time(attention.flash_attention_fwd, q=z(1, 4, 64, 256), k=z(1, 2, 64, 256),
                      v=z(1, 2, 256, 64), causal=True)
    assert att[0].charge.repeat == 1 and att[0].time == pytest.approx(ref)


def test_long_attention_is_one_kv_head_group_repeated():
    q = torch.zeros(1, 4, 2048, 64, dtype=torch.bfloat16)
    kv = torch.zeros(1, 2, 2048, 64, dtype=torch.bfloat16)
    with device("trn2", numerics=False) as dev:
        F.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
    (att,) = dev.profile.ops
    group = kernel_time(attention.flash_attention_fwd, q=z(1, 2, 64, 2048),
                        k=z(1, 1, 64, 2048), v=z(1, 1, 2048, 64), causal=True)
    assert att.charge.repeat == 2 and att.time == pytest.approx(2 * group)
    whole = kernel_time(attention.flash_attention_fwd, q=z(1, 4, 64, 2048),
                        k=z(1, 2, 64, 2048), v=z(1, 2, 2048, 64), causal=True)
    assert att.time == pytest.approx(whole, rel=0.05)


def test_operations_without_a_kernel_fall_back_to_labelled_estimates():
    x = torch.randn(256, 256, dtype=torch.bfloat16)
    q = torch.randn(1, 2, 100, 64, dtype=torch.bfloat16)
    xd = x.double()
    with device("trn2") as dev:
        torch.softmax(x, 0)  # over the partition dim: no kernel route
        xd @ xd  # no float64 matmul kernel
        F.scaled_dot_product_attention(q, q, q)  # 100 tokens: flash needs multiples of 128
    sm, mm, att = dev.profile.ops
    assert sm.charge.estimate and "last" in sm.charge.note
    assert mm.charge.estimate and "float64" in mm.charge.note
    flops = 2 * 256 ** 3
    assert mm.flops == flops
    assert mm.time == pytest.approx(max(flops / 78.6432e12, 3 * 256 * 256 * 8 / DMA_BW_TRN2))
    assert att.charge.estimate and "flash_attention_fwd rejected the shape" in att.charge.note
    assert "multiples of 128" in att.charge.note


def test_trace_and_report(tiny_transformer, tmp_path):
    _, prof = tiny_transformer
    out = prof.save(tmp_path)
    ev = json.loads(open(out["trace"]).read())["traceEvents"]
    slices = [e for e in ev if e.get("ph") == "X" and e["pid"] == 1]
    assert slices[0]["name"] == "model"
    assert slices[0]["dur"] == pytest.approx(prof.total_time * 1e6)
    kinds = {e["cat"] for e in slices}
    assert kinds == {"model", "module", "op", "kernel"}
    # instructions of each distinct kernel, in their own processes, inside the model
    inner = [e for e in ev if e.get("ph") == "X" and e["pid"] > 1]
    assert inner and max(e["ts"] + e["dur"] for e in inner) <= slices[0]["dur"] + 1e-6
    html = open(out["report"]).read()
    assert "1.kv (Linear)" in html and "<details" in html and "estimate" in html


def test_an_embedding_lookup_reads_the_selected_rows_only():
    table = nn.Embedding(50000, 256).to(torch.bfloat16)
    ids = torch.tensor([[1, 5, 7, 9]])
    with device("trn2") as dev:
        table(ids)
    (emb,) = dev.profile.ops
    rows = 4 * 256 * 2
    assert emb.hbm_bytes == 2 * rows + 4 * 8  # rows read and written, int64 ids read
    assert emb.time == pytest.approx(emb.hbm_bytes / DMA_BW_TRN2)  # not the whole table


@pytest.fixture(scope="module")
def rms_and_matmul_op():
    from trnsim.torch import nki_op

    @nki_op("trnsim_device_test::rms_matmul", mutates_args=())
    def rms_matmul(x: torch.Tensor, gamma: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        y = norms.rmsnorm(x, gamma)
        return matmul.matmul(y.transpose(0, 1).contiguous(), w)
    return rms_matmul


@pytest.mark.parametrize("numerics", [True, False])
@pytest.mark.parametrize("chip", ["trn2", "trn3"])
def test_an_nki_custom_op_is_charged_as_the_kernels_it_runs(rms_and_matmul_op, chip,
                                                           numerics):
    x = torch.randn(256, 512, dtype=torch.bfloat16)
    gamma = torch.ones(512, dtype=torch.bfloat16)
    w = torch.randn(512, 512, dtype=torch.bfloat16)
    with device(chip, numerics=numerics) as dev:
        rms_and_matmul_op(x, gamma, w)
    (op,) = dev.profile.ops
    assert op.charge.op == "trnsim_device_test.rms_matmul.default"
    assert [k.name for k in op.children] == ["trnsim.kernels.norms.rmsnorm",
                                             "trnsim.kernels.matmul.matmul"]
    rms = trnsim.profile(norms.rmsnorm, z(256, 512), z(512), chip=chip,
                         numerics=False).total_time
    mm = trnsim.profile(matmul.matmul, z(512, 256), z(512, 512), chip=chip,
                        numerics=False).total_time
    # each kernel on the device's chip, back to back
    assert [k.time for k in op.children] == pytest.approx([rms, mm])
    assert op.time == pytest.approx(rms + mm) and not op.charge.estimate


def test_every_dispatched_operation_that_moves_data_is_in_the_profile():
    """An independent recorder under the device's mode sees every aten op it runs;
    all but views and allocations appear in the profile, in order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func)
            return func(*args, **(kwargs or {}))

    torch.manual_seed(2)
    model = nn.Sequential(Block(), Block()).to(torch.bfloat16)
    x = torch.randn(1, 128, 256, dtype=torch.bfloat16)
    with Recorder() as rec, device("trn2") as dev:
        model(x)
    moving = [str(f) for f in rec.ops if not f.is_view and f.overloadpacket not in (
        torch.ops.aten._unsafe_view, torch.ops.aten.empty, torch.ops.aten.detach)]
    assert moving and [n.charge.op for n in dev.profile.ops] == moving


def test_a_long_large_matmul_is_one_row_block_repeated(monkeypatch):
    from trnsim.torch import charges
    monkeypatch.setattr(charges, "SPLIT_MATMUL_FLOPS", 2 * 2048 * 256 * 1024)
    a = torch.zeros(8192, 256, dtype=torch.bfloat16)
    b = torch.zeros(256, 1024, dtype=torch.bfloat16)
    with device("trn2", numerics=False) as dev:
        a @ b
        a[:, :128] @ b[:128]  # a block of fewer FLOPs than the threshold: whole
    mm, small = dev.profile.ops
    block = kernel_time(matmul.matmul, lhsT=z(256, 2048), rhs=z(256, 1024))
    assert mm.charge.repeat == 4 and mm.time == pytest.approx(4 * block)
    assert small.charge.repeat == 1
