"""examples/qwen3_attention_swap.py at a small sequence length: Qwen3-0.6B's config with
random weights, one layer, eager vs NKI flash attention on simulated trn2/trn3."""
import importlib.util
import pathlib

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from trnsim.torch import attention_swap as swap  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "qwen3_attention_swap.py"


def test_flash_attention_beats_eager_and_the_rest_is_identical():
    r = swap.predict("trn2", tokens=1024, layers=1)
    assert r["nki"].seconds < r["eager"].seconds
    # the swap changes the attention (and eager's mask building) only: the MLP, the
    # norms and the LM head cost the same in both models
    def cost(p, name):
        return [n.time for _, n in p.root.walk() if n.kind == "module" and
                n.name.startswith(name)]
    for name in ("model.layers.0.mlp ", "model.layers.0.input_layernorm", "lm_head"):
        e, n = cost(r["eager"].profile, name), cost(r["nki"].profile, name)
        assert len(e) == 1 and e == pytest.approx(n)


def test_example_prints_the_talks_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("qwen3_attention_swap", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--tokens", "256", "--layers", "1", "--chips", "trn2,trn3",
              "--check-tokens", "128", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for chip in ("trn2", "trn3"):
        assert f"{chip}  eager" in out and f"{chip}  nki" in out and f"{chip}  speedup" in out
    cosine = float(out.split("cosine similarity ")[1].split()[0])
    assert 0.999 < cosine <= 1.0
    assert (tmp_path / "trn2" / "model_trace.json").exists()
    assert (tmp_path / "trn2" / "model_report.html").exists()
