"""trnsim.torch.nki_op / wrap_nki: NKI kernels as torch.library custom operators on the
simulator, with torch-neuronx's API.

References are computed by PyTorch itself: torch.nn.functional.rms_norm and softmax
(float32; the kernels compute in fp32 with the Scalar Engine's rsqrt/exp, a few fp32
ulps away -> rtol 2e-5), x @ w (fp32 PSUM accumulation, a different summation order ->
rtol 1e-5), elementwise products and sums (exact in fp32: one rounding each, as torch's)."""
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import trnsim.kernels  # noqa: E402,F401  (installs compat: `import nki` -> trnsim)
import trnsim.nki.isa as nisa  # noqa: E402
import trnsim.nki.language as nl  # noqa: E402
from trnsim import nki  # noqa: E402
from trnsim.kernels import matmul, norms  # noqa: E402
from trnsim.nki.jit import default_chip  # noqa: E402
from trnsim.torch import nki_op, on_chip, wrap_nki  # noqa: E402

torch.manual_seed(0)


@nki.jit
def mul_kernel(a, b):
    out = nl.ndarray(a.shape, a.dtype, buffer=nl.shared_hbm)
    x = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    y = nl.ndarray(a.shape, a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=a)
    nisa.dma_copy(dst=y, src=b)
    nisa.tensor_tensor(dst=x, data1=x, data2=y, op=nl.multiply)
    nisa.dma_copy(dst=out, src=x)
    return out


@nki.jit
def accumulate_kernel(acc, x):
    """acc += x in place; returns nothing."""
    a = nl.ndarray(acc.shape, acc.dtype, buffer=nl.sbuf)
    b = nl.ndarray(x.shape, x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a, src=acc)
    nisa.dma_copy(dst=b, src=x)
    nisa.tensor_tensor(dst=a, data1=a, data2=b, op=nl.add)
    nisa.dma_copy(dst=acc, src=a)


@nki.jit
def version_kernel(x):
    """A [1, 1] fp32 holding the NeuronCore generation the kernel runs on."""
    out = nl.ndarray((1, 1), nl.float32, buffer=nl.shared_hbm)
    t = nl.ndarray((1, 1), nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=t, value=float(nisa.get_nc_version().value))
    nisa.dma_copy(dst=out, src=t)
    return out


@nki_op("trnsim_test::rmsnorm", mutates_args=())
def rmsnorm_op(x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return norms.rmsnorm(x, gamma, eps)


@nki_op("trnsim_test::softmax_matmul", mutates_args=())
def softmax_matmul_op(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    p = wrap_nki(norms.softmax)(x)
    return wrap_nki(matmul.matmul)[2](p.T.contiguous(), w)


@nki_op("trnsim_test::mul", mutates_args=())
def mul_op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return mul_kernel(a, b)


def _mul_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _mul_backward(ctx, grad):
    a, b = ctx.saved_tensors
    return mul_op(grad, b), mul_op(grad, a)  # the backward runs the NKI kernel too


mul_op.register_autograd(_mul_backward, setup_context=_mul_setup)


@nki_op("trnsim_test::accumulate", mutates_args={"acc"})
def accumulate_op(acc: torch.Tensor, x: torch.Tensor) -> None:
    wrap_nki(accumulate_kernel)(acc, x)


@nki_op("trnsim_test::version_trn3", mutates_args=(), chip="trn3")
def version_trn3(x: torch.Tensor) -> torch.Tensor:
    return version_kernel(x)


@nki_op("trnsim_test::version", mutates_args=())
def version_op(x: torch.Tensor) -> torch.Tensor:
    return version_kernel(x)


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def test_rmsnorm_op_matches_torch():
    x, g = randn(128, 256), randn(256)
    y = rmsnorm_op(x, g)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    torch.testing.assert_close(y, F.rms_norm(x, (256,), g, eps=1e-6), rtol=2e-5, atol=2e-5)


def test_two_kernels_and_lnc2_in_one_op():
    x, w = randn(128, 128), randn(128, 64)
    want = torch.softmax(x, -1) @ w
    torch.testing.assert_close(softmax_matmul_op(x, w), want, rtol=1e-5, atol=1e-5)


@nki_op("trnsim_test::two_products", mutates_args=())
def two_products(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return mul_kernel(a, b), mul_kernel(a, a)


def test_an_op_with_two_outputs():
    a, b = randn(128, 32), randn(128, 32)
    p, q = two_products(a, b)
    assert torch.equal(p, a * b) and torch.equal(q, a * a)
    torch.library.opcheck(two_products, (a, b))


def test_wrap_nki_indexes_by_lnc_and_calls_with_torch_tensors():
    a, b = randn(128, 64), randn(128, 64)
    for w in (wrap_nki(mul_kernel), wrap_nki(mul_kernel)[1], wrap_nki(mul_kernel)[(1,)]):
        assert torch.equal(w(a, b), a * b)
    with pytest.raises(ValueError):
        wrap_nki(mul_kernel)[3]


def test_opcheck():
    x, g = randn(128, 64), randn(64)
    torch.library.opcheck(rmsnorm_op, (x, g), {"eps": 1e-5})
    a = randn(128, 32).requires_grad_()
    torch.library.opcheck(mul_op, (a, randn(128, 32)))
    torch.library.opcheck(accumulate_op, (randn(128, 32), randn(128, 32)))


def test_fake_tensors_trace_shapes_only():
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    with FakeTensorMode():
        y = softmax_matmul_op(torch.empty(128, 128), torch.empty(128, 64))
    assert isinstance(y, FakeTensor) and y.shape == (128, 64) and y.dtype == torch.float32
    m = rmsnorm_op(torch.empty(128, 64, device="meta", dtype=torch.bfloat16),
                   torch.empty(64, device="meta", dtype=torch.bfloat16))
    assert m.is_meta and m.shape == (128, 64) and m.dtype == torch.bfloat16


def _count(gm, op):
    return sum(1 for n in gm.graph.nodes if n.target == op)


def test_compile_keeps_the_op_as_one_node():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def f(x, g):
        return rmsnorm_op(x * 2, g) + 1

    x, g = randn(128, 64), randn(64)
    got = torch.compile(f, backend=backend, fullgraph=True)(x, g)
    assert len(graphs) == 1
    assert _count(graphs[0], torch.ops.trnsim_test.rmsnorm.default) == 1
    torch.testing.assert_close(got, F.rms_norm(x * 2, (64,), g, eps=1e-6) + 1,
                               rtol=2e-5, atol=2e-5)


def test_compile_aot_eager_with_autograd():
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd
    fw, bw = [], []

    def keep(into):
        def compiler(gm, example_inputs):
            into.append(gm)
            return make_boxed_func(gm.forward)
        return compiler

    def f(a, b):
        return mul_op(a, b).sum()

    a, b = randn(128, 32).requires_grad_(), randn(128, 32)
    loss = torch.compile(f, backend=aot_autograd(fw_compiler=keep(fw), bw_compiler=keep(bw)),
                         fullgraph=True)(a, b)
    loss.backward()
    mul = torch.ops.trnsim_test.mul.default
    assert _count(fw[0], mul) == 1 and _count(bw[0], mul) == 1
    assert torch.equal(a.grad, b)  # d(sum(a * b))/da = b, through the backward kernel


def test_autograd_with_a_backward_kernel():
    x = randn(128, 64).requires_grad_()
    gy = randn(128, 64)
    y = mul_op(x, x)
    assert torch.equal(y, x * x)
    y.backward(gy)
    x2 = x.detach().clone().requires_grad_()
    (x2 * x2).backward(gy)
    assert torch.equal(x.grad, x2.grad)


def test_in_place_mutation():
    acc, x = randn(128, 32), randn(128, 32)
    want = acc + x
    before = acc.clone()
    assert accumulate_op(acc, x) is None
    assert torch.equal(acc, want)

    def f(acc, x):
        accumulate_op(acc, x)
        return acc * 2

    acc2 = before.clone()
    out = torch.compile(f, backend="aot_eager", fullgraph=True)(acc2, x)
    assert torch.equal(acc2, want) and torch.equal(out, want * 2)


def test_unwritten_inputs_are_not_written_back():
    a, b = randn(128, 32).requires_grad_(), randn(128, 32)
    v = a._version
    mul_op(a, b)
    assert a._version == v  # no in-place copy: autograd's saved tensors stay valid


def test_chip_selection():
    x = randn(1, 1)
    assert default_chip() is None or default_chip() == "trn2"
    assert version_op(x).item() == 3  # trn2 is NeuronCore v3 (gen3)
    assert version_trn3(x).item() == 4
    with on_chip("trn1"):
        assert version_op(x).item() == 2
    assert wrap_nki(version_kernel, chip="trn3")(x).item() == 4


def test_wrap_nki_legacy_kernel_with_an_spmd_grid():
    import neuronxcc.nki as lnki
    import neuronxcc.nki.language as lnl

    @lnki.jit
    def add_rows(a, b):  # one 128-row block per program
        out = lnl.ndarray(a.shape, dtype=a.dtype, buffer=lnl.shared_hbm)
        i = lnl.program_id(0)
        rows = i * 128 + lnl.arange(128)[:, None]
        cols = lnl.arange(a.shape[1])[None, :]
        lnl.store(out[rows, cols], value=lnl.load(a[rows, cols]) + lnl.load(b[rows, cols]))
        return out

    @nki_op("trnsim_test::legacy_add", mutates_args=())
    def legacy_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return wrap_nki(add_rows)[[a.shape[0] // 128]](a, b)

    a, b = randn(256, 64), randn(256, 64)
    assert torch.equal(legacy_add(a, b), a + b)
    torch.library.opcheck(legacy_add, (a, b))


@pytest.mark.parametrize("call", [lambda a, b: wrap_nki(mul_kernel)(a, b),
                                  lambda a, b: mul_kernel(a, b)])
def test_a_kernel_call_inside_compile_outside_an_op_is_one_graph_break(call):
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def f(a, b):
        return call(a + 1, b) * 2

    a, b = randn(128, 32), randn(128, 32)
    assert torch.equal(torch.compile(f, backend=backend)(a, b), (a + 1) * b * 2)
    assert len(graphs) == 2  # before and after the call: the simulator is not traced


def test_import_without_torch_names_the_extra():
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import trnsim.torch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout
    assert "trnsim[torch]" in out
