"""`make demo` must keep working: every example and library flagship matches its
reference on every chip, and each profile's trace and report are written."""
import json

from trnsim import demo


def test_demo_profiles_examples_and_writes_outputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out
    assert "mx_matmul       trn3" in out
    for name, chips in (("matmul_fp8", ("trn2", "trn3")), ("matmul_mxfp8", ("trn3",)),
                        ("flash_attention", ("trn2", "trn3")), ("moe_tkg", ("trn2", "trn3"))):
        for chip in chips:
            assert f"{name:15} {chip}" in out
            assert (tmp_path / f"out/demo/{name}-{chip}.report.html").exists()
    out_dir = tmp_path / "out/demo"
    for chip in ("trn2", "trn3"):
        trace = json.loads((out_dir / f"tiled_matmul-{chip}.trace.json").read_text())
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        # lhsT [1024, 512], rhs [1024, 2048]: 4 M tiles x 4 N tiles x 8 K tiles of matmul
        assert sum(e.get("name") == "nc_matmul" and e.get("ph") == "X" for e in events) == 128
        html = (out_dir / f"tiled_matmul-{chip}.report.html").read_text()
        assert "<html" in html.lower() and "nc_matmul" in html
    # the collective kernel on both fabrics: a process per rank and the Fabric's
    for chip, topology in demo.TOPOLOGIES.items():
        assert f"{topology:22}" in out
        trace = json.loads((out_dir / f"tp_linear_all_reduce-{chip}.trace.json").read_text())
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        names = {e["args"]["name"] for e in events if e.get("name") == "process_name"}
        assert sum(n.startswith("Rank ") for n in names) == 16
        assert any(n.startswith("Fabric") for n in names)
        assert (out_dir / f"tp_linear_all_reduce-{chip}.report.html").exists()
