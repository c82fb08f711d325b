"""NKI flash attention as a Hugging Face attention implementation (trnsim.torch.hf):
the custom op against PyTorch's own scaled-dot-product attention, torch.library's
opcheck, and a small Qwen3 built from a config (random weights, nothing downloaded)
whose outputs with "nki_attention" match eager attention on the CPU, and whose profile
charges the attention to the flash kernel instead of the eager matmul/softmax graph."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

from trnsim.torch import hf  # noqa: E402
from trnsim.torch.device import device  # noqa: E402

NAME = hf.register_flash_attention()


def qkv(B=1, H=4, KVH=2, S=256, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, S, d, generator=g).to(torch.bfloat16)
    k = torch.randn(B, KVH, S, d, generator=g).to(torch.bfloat16)
    v = torch.randn(B, KVH, S, d, generator=g).to(torch.bfloat16)
    return q, k, v


@pytest.mark.parametrize("causal", [True, False])
def test_flash_op_matches_torch_sdpa(causal):
    q, k, v = qkv()
    out = hf.flash_attention(q, k, v, causal, 0.125)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal,
                                         scale=0.125, enable_gqa=True)
    assert out.shape == q.shape and out.dtype == torch.bfloat16
    # bf16 inputs, fp32 softmax and accumulation, P rounded to bf16 for the P V matmul
    # (2^-8 relative per term) and the output to bf16: ~1e-2 of the outputs' scale
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_flash_op_passes_opcheck():
    q, k, v = qkv(S=128, H=2, KVH=1)
    torch.library.opcheck(hf.flash_attention, (q, k, v, True, 0.125),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_aot_dispatch_dynamic"))


def tiny_qwen3(attn):
    cfg = transformers.Qwen3Config(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, vocab_size=1000, max_position_embeddings=1024,
        tie_word_embeddings=True, attn_implementation=attn)
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(cfg).to(torch.bfloat16).eval()


@pytest.fixture(scope="module")
def logits():
    ids = torch.randint(0, 1000, (1, 256), generator=torch.Generator().manual_seed(1))
    out = {}
    for attn in ("eager", NAME):
        model = tiny_qwen3(attn)
        with torch.no_grad(), device("trn2") as dev:
            y = model(ids, use_cache=False).logits.float()
        out[attn] = (y, dev.profile)
    return out


def test_nki_attention_model_matches_eager_on_the_cpu(logits):
    eager, nki = logits["eager"][0], logits[NAME][0]
    cos = F.cosine_similarity(eager.flatten(), nki.flatten(), dim=0)
    assert cos > 0.999
    assert torch.mean((eager - nki) ** 2) < 1e-3 * torch.mean(eager ** 2)


def test_attention_is_charged_to_the_flash_kernel(logits):
    ops_e = [n.charge for n in logits["eager"][1].ops]
    ops_n = [n.charge for n in logits[NAME][1].ops]
    flash = [c for c in ops_n if c.op == "trnsim.flash_attention.default"]
    assert len(flash) == 2 and all(c.kernel.endswith("flash_attention_fwd") for c in flash)
    assert not any(c.op == "aten._softmax.default" for c in ops_n)
    # eager: per layer two batched matmuls (QK^T, PV) and a softmax, no flash kernel
    assert sum(c.op == "aten.bmm.default" for c in ops_e) == 4
    assert sum(c.op == "aten._softmax.default" for c in ops_e) == 2
    assert not any("flash" in c.kernel for c in ops_e)


def test_flash_op_gradients_match_torch_sdpa():
    q, k, v = (t.requires_grad_() for t in qkv(S=256, H=2, KVH=1, seed=3))
    g = torch.randn(q.shape, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    hf.flash_attention(q, k, v, True, 0.125).backward(g)
    refs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    F.scaled_dot_product_attention(*refs, is_causal=True, scale=0.125,
                                   enable_gqa=True).backward(g.float())
    for got, ref in zip((q.grad, k.grad, v.grad), refs):
        assert got.dtype == torch.bfloat16 and got.shape == ref.shape
        # bf16 operands (P, dS rounded to bf16) with fp32 accumulation over 256 keys
        torch.testing.assert_close(got.float(), ref.grad, atol=3e-2, rtol=3e-2)


def test_flash_op_autograd_passes_opcheck():
    q, k, v = (t.requires_grad_() for t in qkv(S=128, H=2, KVH=1))
    torch.library.opcheck(hf.flash_attention, (q, k, v, True, 0.125),
                          test_utils=("test_schema", "test_autograd_registration",
                                      "test_faketensor"))


def test_a_training_step_charges_the_backward_kernel():
    model = tiny_qwen3(NAME)
    ids = torch.randint(0, 1000, (1, 128), generator=torch.Generator().manual_seed(2))
    with device("trn2") as dev:
        model(ids, labels=ids, use_cache=False).loss.backward()
    bwd = [n for n in dev.profile.ops if n.charge.op == "trnsim.flash_attention_backward.default"]
    assert len(bwd) == 2
    assert [k.name for k in bwd[0].children] == ["trnsim.kernels.attention_bwd.flash_attention_bwd"]
    assert all(p.grad is not None for p in model.model.layers[0].self_attn.parameters())
