"""`make demo` must keep working: every example matches its reference on every chip."""
import json

from trnsim import demo


def test_demo_runs_and_writes_records(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out
    assert "mx_matmul      trn3" in out
    record = tmp_path / "out/demo/tiled_matmul-trn2.record.jsonl"
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    # 2 M tiles x 2 N tiles x 4 K tiles of matmul, all on the Tensor Engine
    assert sum(r["opcode"] == "nc_matmul" for r in rows) == 16
    assert {r["engine"] for r in rows if r["opcode"] == "nc_matmul"} == {"tensor"}
    assert all(r["location"] and "tiled_matmul.py:" in r["location"] for r in rows)
