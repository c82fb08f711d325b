"""The HTML report (trnsim.profile.report): self-contained (no external assets), its
embedded data and tables checked against values computed here from a hand-built
profile, decimation of large traces, and a render in headless Chromium (skipped where no
chromium is installed; CI installs Debian's): the screenshot must not be blank and the
rendered DOM must hold the drawn timeline."""
import html
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import types
import zlib

import numpy as np
import pytest

import trnsim
import trnsim.timing
from trnsim.machine.record import Instruction, Program
from trnsim.profile import report as rep
from trnsim.profile.report import render_report, timeline_data, write_report
from trnsim.timing.timeline import Event, Timeline

from test_profile_perfetto import KERNEL_SRC, _example, handmade  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _data(text):
    m = re.search(r'<script type="application/json" id="trnsim-data">(.*?)</script>', text,
                  re.S)
    assert m
    return json.loads(m.group(1).replace("<\\/", "</"))


def _insight():
    return types.SimpleNamespace(
        rule="small_dma", title="Small DMA transfers", criticality=0.42,
        message="3 of 4 DMA transfers move < 4 KiB", recommendation="batch loads to >= 4 KiB",
        locations=[], severity="high")


# ---------------------------------------------------------------- content

def test_self_contained_offline(tmp_path):
    prof = handmade(tmp_path)
    text = render_report(prof)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing fetched: no links, no external scripts/images/fonts, no url(...)
    assert not re.search(r"<link\b|<img\b|<iframe\b|\bsrc\s*=|@import|url\(", text)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace name only
    for section in ("insights", "timeline", "utilization", "roofline", "hbm",
                    "source-lines", "summary"):
        assert f'id="{section}"' in text


def test_embedded_timeline_data(tmp_path):
    prof = handmade(tmp_path)
    d = _data(render_report(prof))
    labels = [(r["core"], r["label"]) for r in d["rows"]]
    assert labels == [(0, "Tensor"), (0, "Vector"), (0, "Scalar"), (0, "GpSimd"), (0, "Sync"),
                      (0, "DMA qScalarIO"), (0, "DMA qSyncIO"),
                      (1, "Tensor"), (1, "Vector"), (1, "Scalar"), (1, "GpSimd"), (1, "Sync"),
                      (1, "DMA qSyncIO")]
    ev = d["events"]
    assert len(ev["row"]) == 9 and sum(ev["n"]) == 9 and not d["decimated"]
    got = sorted((d["rows"][r]["label"], d["rows"][r]["core"], s, du, d["opcodes"][o])
                 for r, s, du, o in zip(ev["row"], ev["s"], ev["d"], ev["op"]))
    want = sorted((("DMA " + e.track[4:]) if e.track.startswith("dma:") else
                   e.track.replace("gpsimd", "GpSimd").capitalize(), e.core, e.start,
                   e.end - e.start, i.opcode)
                  for i, e in zip(prof.program.instructions, prof.timeline.events))
    assert got == want
    assert d["total_ns"] == 3300.0 and d["cores"] == 2
    assert d["srcs"][d["locs"].index("kern.py:3")] == KERNEL_SRC.splitlines()[2]


def test_source_line_table(tmp_path):
    prof = handmade(tmp_path)
    text = render_report(prof)
    rows = re.findall(r"<tr class='src-line'>(.*?)</tr>", text, re.S)
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
              for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]
    by_loc = {c[0].split(" ")[0]: c for c in cells}
    # kern.py:4 holds matmul #3 (200 ns) and #8 (100 ns) on Tensor
    assert by_loc["kern.py:4"][1] == "acc2 = matmul(a, b)"
    assert "300 ns" in by_loc["kern.py:4"]
    # kern.py:6: two stores, 1000 ns (core 0) + 200 ns (core 1) of DMA
    assert "1.20 us" in by_loc["kern.py:6"] and by_loc["kern.py:6"][-1] == "2"
    # sorted by total engine time: kern.py:6 (1200) > kern.py:2 (1200 tie) / kern.py:1 (1000)
    totals = {c[0].split(" ")[0]: c for c in cells}
    assert list(totals)[0] in ("kern.py:2", "kern.py:6")
    share = sum(float(re.search(r"([\d.]+)%", c[-2]).group(1)) for c in cells)
    assert share == pytest.approx(100.0, abs=0.5)


def test_utilization_and_hbm(tmp_path):
    prof = handmade(tmp_path)
    util = {(u["core"], u["label"]): u["pct"] for u in rep.utilization(prof)}
    total = 3300.0
    assert util[(0, "Tensor")] == pytest.approx(100 * (400 + 200 + 100) / total)
    assert util[(0, "DMA qSyncIO")] == pytest.approx(100 * 1400 / total)
    assert util[(0, "DMA (any queue)")] == pytest.approx(100 * 2400 / total)
    assert util[(1, "Vector")] == pytest.approx(100 * 500 / total)
    assert util[(0, "Scalar")] == 0.0
    from trnsim.profile import views
    edges, rd, wr = views.hbm_bins(prof.program, prof.timeline, 33)  # 100 ns bins
    assert rd.sum() == pytest.approx(65536 + 32768)
    assert wr.sum() == pytest.approx(16384 + 2048)
    assert rd[0] == pytest.approx(65536 / 10)  # 100 ns of the 1000 ns load
    assert rd[5] == pytest.approx(65536 / 10 + 32768 / 12)
    assert wr[6] == pytest.approx(2048 / 2)  # core 1's store, 600-700 ns of 500-700 ns
    text = render_report(prof)
    assert text.count('class="hbm-bin"') == rep.HBM_BINS


def test_roofline_point(tmp_path):
    prof = handmade(tmp_path)
    # give the matmul a size: 2*K*M*N model FLOPs, and a summary as the profile has
    prof.program.instructions[2].attrs.update(K=128, M=128, N=512)
    flops = 2 * 128 * 128 * 512
    traffic = 65536 + 32768 + 16384 + 2048
    svg, info = rep._roofline_svg(prof)
    assert info["ai"] == pytest.approx(flops / traffic)
    assert info["achieved"] == pytest.approx(flops / 3.3e-6)
    chip = prof.chip
    assert info["peak"] == pytest.approx(2 * chip.core.tensor.peak_bf16_flops)  # 2 cores
    assert info["bw"] == pytest.approx(chip.hbm_stack_bandwidth)  # both on one stack
    roof = min(info["peak"], info["ai"] * info["bw"])
    assert info["roof_fraction"] == pytest.approx(info["achieved"] / roof)
    assert 'class="kernel-point"' in svg
    # the summary's figures win where the profile has them
    prof.summary = {"model_flops": 2e9, "hbm_read_bytes": 1e6, "hbm_write_bytes": 1e6,
                    "mm_arithmetic_intensity": 1000.0}
    _, info = rep._roofline_svg(prof)
    assert info["ai"] == 1000.0 and info["achieved"] == pytest.approx(2e9 / 3.3e-6)


def test_insights_and_summary_rendered(tmp_path):
    prof = handmade(tmp_path)
    src = prof.program.instructions[0].location
    ins = _insight()
    ins.locations = [f"{src.file}:{src.line}"]
    prof.insights = [ins]
    prof.summary = {"total_time": 3.3e-6, "mfu_estimated_percent": 1.25,
                    "hbm_read_bytes": 98304, "dma_transfer_count": 4}
    text = render_report(prof)
    block = re.search(r'<section id="insights">(.*?)</section>', text, re.S).group(1)
    assert "Small DMA transfers" in block and "about 42% of the run at stake" in block
    assert "batch loads to &gt;= 4 KiB" in block and "kern.py:1" in block
    assert "a = load(A)" in block and 'class="badge high"' in block
    summ = re.search(r'<section id="summary">(.*?)</section>', text, re.S).group(1)
    assert "3.30 us" in summ and "1.25 %" in summ and "96.00 KiB" in summ
    prof.insights = []
    assert "No performance insight fired" in render_report(prof)


def test_large_trace_is_decimated(tmp_path):
    chip = trnsim.load_chip("trn2")
    n = 4000
    ins = [Instruction(i, 0, "vector", "tensor_tensor" if i % 2 else "activation", (), (),
                       None) for i in range(n)]
    ev = [Event(i, 0, "vector", 10.0 * i, 10.0 * i + 8.0) for i in range(n)]
    prof = types.SimpleNamespace(program=Program(chip, 1, ins),
                                 timeline=Timeline(chip, ev, 10.0 * n), chip=chip,
                                 summary={}, insights=[], name="many")
    full = timeline_data(prof)
    assert len(full["events"]["row"]) == n and not full["decimated"]
    # 1000 bars at most: each spans at most 40000 ns x 1 row / 1000 = 40 ns, so it
    # holds the 4 events starting at 40k, 40k+10, 40k+20, 40k+30 (8 ns each)
    small = timeline_data(prof, max_events=1000)
    ev = small["events"]
    assert small["decimated"] and len(ev["row"]) == 1000
    assert ev["n"] == [4] * 1000 and ev["s"] == [40.0 * k for k in range(1000)]
    assert ev["d"] == [38.0] * 1000
    # over several rows the budget is shared: 2 busy rows -> bars of up to 80 ns
    ins2 = ins + [Instruction(n + i, 0, "scalar", "activation", (), (), None)
                  for i in range(n)]
    ev_list = [Event(i, 0, "vector", 10.0 * i, 10.0 * i + 8.0) for i in range(n)] + \
        [Event(n + i, 0, "scalar", 10.0 * i, 10.0 * i + 8.0) for i in range(n)]
    prof2 = types.SimpleNamespace(program=Program(chip, 1, ins2),
                                  timeline=Timeline(chip, ev_list, 10.0 * n), chip=chip,
                                  summary={}, insights=[], name="many")
    d2 = timeline_data(prof2, max_events=1000)["events"]
    assert len(d2["row"]) == 1000 and set(d2["n"]) == {8}
    # events further apart than the bar span never merge
    sparse = [Event(i, 0, "vector", 100.0 * i, 100.0 * i + 8.0) for i in range(n)]
    prof.timeline = Timeline(chip, sparse, 100.0 * n)
    d3 = timeline_data(prof, max_events=n - 1)
    assert d3["decimated"] and len(d3["events"]["row"]) == n


def test_write_report_into_a_directory(tmp_path):
    prof = handmade(tmp_path)
    path = write_report(prof, tmp_path)
    assert os.path.basename(path) == "kern.report.html"
    assert os.path.getsize(path) > 10000


# ---------------------------------------------------------------- headless Chromium

def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _chrome(args, tmp_path, timeout=90):
    exe = _chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def read_png(path) -> np.ndarray:
    """Decode an 8-bit non-interlaced RGB/RGBA PNG (what Chromium writes) to an array."""
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, hdr
    bpp = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), np.int32)
    prev = np.zeros(w * bpp, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        elif f == 1:
            cur = line.copy()
            for x in range(bpp, len(cur)):
                cur[x] = (cur[x] + cur[x - bpp]) & 255
        else:
            cur = line.copy()
            for x in range(len(cur)):
                a = cur[x - bpp] if x >= bpp else 0
                b = prev[x]
                if f == 3:
                    cur[x] = (cur[x] + ((a + b) >> 1)) & 255
                else:
                    c = prev[x - bpp] if x >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[x] = (cur[x] + pred) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if _chromium() is None:
        pytest.skip("no chromium here (CI installs Debian's chromium through .ci/run)")
    tmp = tmp_path_factory.mktemp("chromium")
    prof = handmade(tmp)
    path = write_report(prof, tmp / "report.html")
    shot = tmp / "shot.png"
    r = _chrome([f"--screenshot={shot}", "--window-size=1000,700", f"file://{path}"], tmp)
    assert shot.exists(), r.stderr[-2000:]
    dom = _chrome(["--dump-dom", "--virtual-time-budget=3000", "--window-size=1400,1000",
                   f"file://{path}"], tmp)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return types.SimpleNamespace(prof=prof, shot=shot, dom=dom.stdout)


def test_chromium_screenshot_is_not_blank(rendered):
    img = read_png(rendered.shot)
    assert img.shape[:2] == (700, 1000)
    assert img.std() > 20  # a blank page has no variance
    colors = np.unique(img.reshape(-1, 3)[::7], axis=0)
    assert len(colors) > 50
    # the dark header band is drawn at the top, the light page below it
    assert img[10:40, :, :].mean() < 90 and img[200:, :, :].mean() > 150


def test_chromium_dom_has_the_drawn_timeline(rendered):
    dom = rendered.dom
    assert 'data-rendered="1"' in dom  # the script ran to its end
    svg = re.search(r'<svg id="tl-svg".*?</svg>', dom, re.S).group(0)
    bars = re.findall(r'<rect [^>]*class="ev"', svg)
    # 9 instructions, each wider than 2 pixels at 1400 px: one bar each
    assert len(bars) == 9
    labels = re.findall(r'class="tl-label"[^>]*>([^<]+)<', svg)
    assert labels.count("Tensor") == 2 and labels.count("DMA qSyncIO") == 2
    assert "NeuronCore 1" in svg
    assert re.search(r"\d+ drawn segments of 9 instructions", dom)


def test_chromium_renders_a_real_kernel_report(tmp_path):
    if _chromium() is None:
        pytest.skip("no chromium here (CI installs Debian's chromium through .ci/run)")
    if getattr(trnsim.timing, "schedule", None) is None:
        pytest.skip("the timing model (trnsim.timing.schedule) is not in this tree")
    import ml_dtypes
    ex = _example("tiled_matmul.py")
    lhsT = np.zeros((256, 128), ml_dtypes.bfloat16)
    rhs = np.zeros((256, 1024), ml_dtypes.bfloat16)
    prof = trnsim.profile(ex.tiled_matmul_kernel, lhsT, rhs, chip="trn2", numerics=False)
    path = prof.report(tmp_path / "mm.html")
    dom = _chrome(["--dump-dom", "--virtual-time-budget=3000", "--window-size=1400,1000",
                   f"file://{path}"], tmp_path)
    assert dom.returncode == 0 and 'data-rendered="1"' in dom.stdout
    assert len(re.findall(r'<rect [^>]*class="ev"', dom.stdout)) >= 3
    assert 'class="kernel-point"' in dom.stdout
