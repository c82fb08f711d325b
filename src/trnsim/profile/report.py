"""The HTML report: one self-contained file (inline CSS, inline SVG, inline script and
data; no network) with

- headline figures (total time, MFU, MBU, engine activity, HBM traffic);
- the performance insights, each with the kernel lines responsible and what to change;
- the engine timeline (SVG drawn by the inline script from embedded JSON: wheel to zoom,
  drag to pan, hover for the instruction and its kernel line; nearby instructions merge
  into one bar below a pixel, and traces over `MAX_EVENTS` are pre-merged);
- engine utilization bars per core (engines and DMA queues);
- HBM read / write / idle over time, as a share of the HBM bandwidth;
- SBUF and PSUM bytes per partition in use over time against their capacity (the
  compiler model's placements), and the tensors that spilled;
- the kernel's point on the chip's roofline (peak Tensor Engine FLOP/s against HBM
  bandwidth; x = arithmetic intensity);
- time attributed to each kernel source line (summed instruction durations per engine);
- time by opcode, and the full summary table (Neuron Explorer metric names).

A multi-rank run (write_ranks_report) gets a page of its own: the run's headline
figures, the collective outliers insight, a scatter of each collective's transfer
duration against its start (a colour per kind, a dashed line at twice each kind's
median, outliers ringed), the per-rank table (time in collectives, wait for the slowest
member, the slowest rank highlighted), the collectives by kind and each collective
(algorithm, bytes, start, duration, algorithm and bus bandwidth).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os

import numpy as np

from ..machine.gc_pause import gc_paused
from ..timing.timeline import spans_of, union_length
from . import views
from .insights import OUTLIER_FACTOR, collective_outliers, kind_medians, ranks_insights
from .report_assets import CSS, JS, RANKS_CSS

MAX_EVENTS = 150_000  # events embedded as they are; above this they are pre-merged
HBM_BINS = 160
GROUP_LABEL = {"tensor": "Tensor", "vector": "Vector", "scalar": "Scalar",
               "gpsimd": "GpSimd", "sync": "Sync", "cc": "Collectives", "dma": "DMA"}
GROUP_COLOR = {"tensor": "#3d73c9", "vector": "#3f9d5a", "scalar": "#e08a2c",
               "gpsimd": "#9b6bb5", "sync": "#8a6d55", "cc": "#c2417a", "dma": "#2aa3a3"}
GROUPS = tuple(GROUP_LABEL)  # the order tables and legends list them in
_READ, _WRITE, _IDLE = "#3d73c9", "#e08a2c", "#e9edf2"


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _summary(profile) -> dict:
    s = getattr(profile, "summary", None)
    return dict(s) if isinstance(s, dict) else {}


def _total_ns(profile) -> float:
    tl = profile.timeline
    t = float(getattr(tl, "total_time", 0.0) or 0.0)
    if t <= 0 and tl.events:
        t = max(e.end for e in tl.events)
    return t


# ---------------------------------------------------------------- timeline data

def timeline_data(profile, max_events: int = MAX_EVENTS) -> dict:
    """Rows (core x track) and the events as columnar arrays. Above `max_events` they
    are pre-merged: consecutive events on a row become one bar while the bar spans at
    most total_time x rows / max_events (so at most about max_events bars remain)."""
    program, tl = profile.program, profile.timeline
    cores = views.cores_and_tracks(tl)
    rows, row_of = [], {}
    for core, tracks in cores.items():
        for track in tracks:
            row_of[(core, track)] = len(rows)
            rows.append({"core": core, "track": track, "label": views.track_label(track),
                         "group": views.track_group(track)})
    opcodes, op_idx = [], {}
    locs, srcs, loc_idx = [], [], {}
    per_row: list[list] = [[] for _ in rows]
    for ins, e in zip(program.instructions, tl.events):
        op = op_idx.get(ins.opcode)
        if op is None:
            op = op_idx[ins.opcode] = len(opcodes)
            opcodes.append(ins.opcode)
        key = views.location_key(ins.location)
        li = loc_idx.get(key)
        if li is None:
            li = loc_idx[key] = len(locs)
            locs.append(views.short_location(ins.location))
            srcs.append(views.source_text(ins.location))
        per_row[row_of[(e.core, e.track)]].append(
            (float(e.start), max(0.0, float(e.end - e.start)), op, li, 1))
    decimated = len(tl.events) > max_events
    if decimated:
        # one bar per `res` of time at most on each row: at most max_events bars in all
        busy_rows = sum(1 for evs in per_row if evs) or 1
        res = _total_ns(profile) * busy_rows / max_events
        merged_rows = []
        for evs in per_row:
            evs.sort()
            out = []
            for s, d, op, li, n in evs:
                if out and s - (out[-1][0] + out[-1][1]) < res and s + d - out[-1][0] <= res:
                    ps, pd, pop, pli, pn = out[-1]
                    end = max(ps + pd, s + d)
                    out[-1] = (ps, end - ps, pop if pd >= d else op, pli, pn + n)
                else:
                    out.append((s, d, op, li, n))
            merged_rows.append(out)
        per_row = merged_rows
    cols = {"row": [], "s": [], "d": [], "op": [], "loc": [], "n": []}
    for r, evs in enumerate(per_row):
        for s, d, op, li, n in evs:
            cols["row"].append(r)
            cols["s"].append(round(s, 3))
            cols["d"].append(round(d, 3))
            cols["op"].append(op)
            cols["loc"].append(li)
            cols["n"].append(n)
    return {"rows": rows, "events": cols, "opcodes": opcodes, "locs": locs, "srcs": srcs,
            "decimated": decimated, "cores": len(cores),
            "n_instructions": len(program.instructions), "total_ns": _total_ns(profile)}


# ---------------------------------------------------------------- derived figures

def _n_cores(profile) -> int:
    cores = {e.core for e in profile.timeline.events}
    return max(len(cores), int(getattr(profile.program, "lnc", 1) or 1), 1)


def _peak_flops(chip) -> float:
    try:
        return float(chip.core.tensor.peak_bf16_flops)
    except AttributeError:
        return 0.0


def _hbm_bw(chip) -> float:
    """Bytes/s: the per-stack HBM bandwidth (the MBU denominator), else chip / stacks."""
    for attr in ("hbm_stack_bandwidth",):
        v = getattr(chip, attr, None)
        if v:
            return float(v)
    bw, st = getattr(chip, "hbm_bandwidth", None), getattr(chip, "hbm_stacks", None)
    return float(bw) / float(st) if bw and st else 0.0


def _flops_and_traffic(profile):
    """(model FLOPs, HBM bytes read + written), from the summary where present, else
    from the record (2*K*M*N per non-transpose matmul)."""
    s = _summary(profile)
    flops = s.get("model_flops")
    rd, wr = s.get("hbm_read_bytes"), s.get("hbm_write_bytes")
    if flops is None:
        flops = 0.0
        for ins in profile.program.instructions:
            a = ins.attrs or {}
            if ins.engine == "tensor" and not a.get("is_transpose") and "K" in a:
                try:
                    flops += 2.0 * a["K"] * a["M"] * a["N"]
                except (TypeError, KeyError):
                    pass
    if rd is None or wr is None:
        rd = wr = 0
        for ins in profile.program.instructions:
            r, w = views.hbm_bytes(ins)
            rd += r
            wr += w
    return float(flops), float(rd) + float(wr)


def utilization(profile) -> list[dict]:
    """Per core, per track (engines, DMA queues, and all DMA): active % of total time."""
    tl = profile.timeline
    total = _total_ns(profile) or 1.0
    sp = spans_of(tl)
    groups = sp.by_core_and_track()
    none = np.zeros(0, np.int64)
    out = []
    for core, tracks in views.cores_and_tracks(tl).items():
        for track in tracks:
            members = groups.get((core, track), none)
            busy = union_length(sp.start[members], sp.end[members])
            out.append({"core": core, "label": views.track_label(track),
                        "group": views.track_group(track), "pct": 100.0 * busy / total,
                        "busy": busy})
        dma = [groups[(core, t)] for t in tracks
               if t.startswith(views.DMA_PREFIX) and (core, t) in groups]
        if dma:
            members = np.concatenate(dma)
            busy = union_length(sp.start[members], sp.end[members])
            out.append({"core": core, "label": "DMA (any queue)", "group": "dma",
                        "pct": 100.0 * busy / total, "busy": busy})
    return out


def opcode_table(profile) -> list[dict]:
    rows: dict = {}
    for ins, e in zip(profile.program.instructions, profile.timeline.events):
        g = views.track_group(e.track)
        r = rows.setdefault((g, ins.opcode), {"group": g, "opcode": ins.opcode, "count": 0,
                                              "time": 0.0, "bytes": 0})
        r["count"] += 1
        r["time"] += max(0.0, e.end - e.start)
        r["bytes"] += ins.bytes_moved
    return sorted(rows.values(), key=lambda r: -r["time"])


# ---------------------------------------------------------------- static SVG charts

def _hbm_svg(profile, width=720, height=220) -> str:
    total = _total_ns(profile) or 1.0
    edges, rd, wr = views.hbm_bins(profile.program, profile.timeline, HBM_BINS, total)
    bw = _hbm_bw(profile.chip) * _stacks_used(profile)  # bytes/s
    dt = (edges[1] - edges[0]) * 1e-9 if len(edges) > 1 else 1.0
    cap = bw * dt if bw else max(float((rd + wr).max(initial=0.0)), 1.0)
    L, R, T, B = 46, 10, 22, 30
    pw, ph = width - L - R, height - T - B
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="HBM read, write and idle over time">']
    for p in (0, 25, 50, 75, 100):
        y = T + ph * (1 - p / 100)
        parts.append(f'<line x1="{L}" x2="{width - R}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eceff3"/><text x="{L - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{p}%</text>')
    bw_px = pw / len(rd) if len(rd) else pw
    for k in range(len(rd)):
        fr = min(1.0, rd[k] / cap) if cap else 0.0
        fw = min(1.0 - fr, wr[k] / cap) if cap else 0.0
        x = L + k * bw_px
        hr, hw = ph * fr, ph * fw
        tip = (f"{views.fmt_time_ns(edges[k])} \u2013 {views.fmt_time_ns(edges[k + 1])}<br>"
               f"read {rd[k] / dt / 1e9:.1f} GB/s, write {wr[k] / dt / 1e9:.1f} GB/s<br>"
               f"idle {100 * (1 - fr - fw):.0f}%")
        parts.append(f'<g class="hbm-bin" data-tip="{_e(tip)}">'
                     f'<rect x="{x:.2f}" y="{T}" width="{bw_px + 0.3:.2f}" height="{ph - hr - hw:.2f}" '
                     f'fill="{_IDLE}"/>'
                     f'<rect x="{x:.2f}" y="{T + ph - hr - hw:.2f}" width="{bw_px + 0.3:.2f}" '
                     f'height="{hw:.2f}" fill="{_WRITE}"/>'
                     f'<rect x="{x:.2f}" y="{T + ph - hr:.2f}" width="{bw_px + 0.3:.2f}" '
                     f'height="{hr:.2f}" fill="{_READ}"/></g>')
    for k in range(5):
        t = total * k / 4
        x = L + pw * k / 4
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="'
                     f'{"start" if k == 0 else "end" if k == 4 else "middle"}">'
                     f'{_e(views.fmt_time_ns(t))}</text>')
    peak = f"{bw / 1e9:.0f} GB/s" if bw else "busiest bin"
    parts.append(f'<text class="ttl" x="{L}" y="14">share of {peak} HBM bandwidth '
                 f'({HBM_BINS} bins of {views.fmt_time_ns(edges[1] - edges[0])})</text>')
    parts.append("</svg>")
    rt, wt = float(rd.sum()), float(wr.sum())
    legend = (f'<div class="legend"><span><i style="background:{_READ}"></i>read '
              f'{_e(views.fmt_bytes(rt))}</span><span><i style="background:{_WRITE}"></i>write '
              f'{_e(views.fmt_bytes(wt))}</span><span><i style="background:{_IDLE};border:1px '
              f'solid #d5dbe3"></i>idle</span></div>')
    return "".join(parts) + legend


def _memory_svg(profile, space: str, width=720, height=200) -> str:
    """Bytes per partition of `space` (core 0) in use over time, with the capacity."""
    plan = profile.program.memory
    times, level = views.memory_steps(profile.program, profile.timeline, space)
    cap = plan.capacity.get((space, 0), 0) if plan is not None else 0
    if not times or not cap:
        return f'<p class="none">no {space.upper()} in use</p>'
    total = _total_ns(profile) or 1.0
    L, R, T, B = 46, 10, 22, 30
    pw, ph = width - L - R, height - T - B
    top = max(cap, max(level))

    def X(t):
        return L + pw * min(t, total) / total

    def Y(v):
        return T + ph * (1 - v / top)
    pts = [f"{X(0):.1f},{Y(0):.1f}"]
    prev = 0
    for t, v in zip(times, level):
        pts += [f"{X(t):.1f},{Y(prev):.1f}", f"{X(t):.1f},{Y(v):.1f}"]
        prev = v
    pts.append(f"{X(total):.1f},{Y(prev):.1f}")
    peak = max(level)  # explicitly placed tensors included
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="{space.upper()} in use over time">',
             f'<line x1="{L}" x2="{width - R}" y1="{Y(cap):.1f}" y2="{Y(cap):.1f}" '
             f'stroke="#c0392b" stroke-dasharray="4 3"/><text x="{width - R}" '
             f'y="{Y(cap) - 4:.1f}" text-anchor="end">capacity '
             f'{_e(views.fmt_bytes(cap))}</text>',
             f'<polyline fill="none" stroke="{_READ}" stroke-width="1.5" '
             f'points="{" ".join(pts)}"/>',
             f'<text class="ttl" x="{L}" y="14">bytes per partition in use; peak '
             f'{_e(views.fmt_bytes(peak))} ({100 * peak / cap:.0f}% of capacity)</text>']
    for k in range(5):
        parts.append(f'<text x="{L + pw * k / 4:.1f}" y="{height - 10}" text-anchor="'
                     f'{"start" if k == 0 else "end" if k == 4 else "middle"}">'
                     f'{_e(views.fmt_time_ns(total * k / 4))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _spills_html(profile) -> str:
    plan = profile.program.memory
    rows = [r for r in (plan.tensors() if plan is not None else ())
            if r["spill_save_bytes"] or r["spill_reload_bytes"]]
    if not rows:
        return '<p class="none">no spills: every live block fit on chip</p>'
    body = "".join(
        f"<tr><td>{_e(r['tensor'])}</td><td>{_e(r['shape'])}</td><td>{_e(r['space'])}</td>"
        f"<td>{_e(views.fmt_bytes(r['spill_save_bytes']))}</td>"
        f"<td>{_e(views.fmt_bytes(r['spill_reload_bytes']))}</td>"
        f"<td>{_e(os.path.basename(r['allocated_at']))}</td></tr>" for r in rows)
    return ("<table><tr><th>tensor</th><th>shape</th><th>memory</th><th>spill saved</th>"
            f"<th>spill reloaded</th><th>allocated at</th></tr>{body}</table>")


def _stacks_used(profile) -> int:
    """HBM stacks the kernel's cores draw on (the MBU denominator counts one per stack):
    one per core pair on chips with 2 NCs per stack, else one per core."""
    chip = profile.chip
    n = _n_cores(profile)
    try:
        per_stack = max(1, round(chip.cores_per_chip / chip.hbm_stacks))
    except (AttributeError, TypeError, ZeroDivisionError):
        per_stack = 1
    return max(1, math.ceil(n / per_stack))


def _roofline_svg(profile, width=720, height=300) -> tuple[str, dict]:
    chip = profile.chip
    peak = _peak_flops(chip) * _n_cores(profile)
    s = _summary(profile)
    # the memory roof is the HBM bandwidth the cores' DMA engines can reach (the
    # summary's roofline_bandwidth), not one stack's (Explorer's peak_flops_bandwidth_ratio);
    # FLOPs are BF16-equivalent, against the BF16 peak (docs/metrics.md)
    bw = float(s.get("roofline_bandwidth") or _hbm_bw(chip) * _stacks_used(profile))
    flops, traffic = _flops_and_traffic(profile)
    flops = float(s.get("adjusted_model_flops", flops))
    total_s = _total_ns(profile) * 1e-9
    ai = s.get("roofline_arithmetic_intensity", s.get("mm_arithmetic_intensity"))
    if ai is None or not ai:
        ai = flops / traffic if traffic else 0.0
    ai = float(ai)
    achieved = flops / total_s if total_s > 0 else 0.0
    info = {"peak": peak, "bw": bw, "ai": ai, "achieved": achieved,
            "ridge": peak / bw if bw else 0.0, "flops": flops}
    if not (peak and bw):
        return '<p class="none">The chip data has no Tensor Engine peak or HBM bandwidth.</p>', info
    ridge = peak / bw
    xs = [ridge]
    if ai > 0:
        xs.append(ai)
    xmin = 10 ** math.floor(math.log10(min(xs) / 30))
    xmax = 10 ** math.ceil(math.log10(max(xs) * 30))
    ymax = 10 ** math.ceil(math.log10(peak * 1.5))
    ylow = [peak / 1e4]
    if achieved > 0:
        ylow.append(achieved / 3)
    ymin = 10 ** math.floor(math.log10(min(ylow)))
    L, R, T, B = 64, 16, 24, 40
    pw, ph = width - L - R, height - T - B

    def X(v):
        return L + pw * (math.log10(v) - math.log10(xmin)) / (math.log10(xmax) - math.log10(xmin))

    def Y(v):
        v = max(v, ymin)
        return T + ph * (1 - (math.log10(v) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)))

    p = [f'<svg class="chart roofline" viewBox="0 0 {width} {height}" width="100%" role="img" '
         f'aria-label="roofline">']
    for dec in range(int(round(math.log10(xmin))), int(round(math.log10(xmax))) + 1):
        x = X(10 ** dec)
        p.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{T}" y2="{T + ph}" stroke="#eceff3"/>'
                 f'<text x="{x:.1f}" y="{T + ph + 14}" text-anchor="middle">{_e(_tick(10 ** dec))}</text>')
    for dec in range(int(round(math.log10(ymin))), int(round(math.log10(ymax))) + 1):
        y = Y(10 ** dec)
        p.append(f'<line x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff3"/>'
                 f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                 f'{_e(views.fmt_si(10 ** dec, "F/s"))}</text>')
    # the roof: bandwidth slope up to the ridge, then the compute peak
    x_lo = xmin
    y_lo = x_lo * bw
    p.append(f'<polyline fill="none" stroke="#18233a" stroke-width="2.2" points="'
             f'{X(x_lo):.1f},{Y(y_lo):.1f} {X(ridge):.1f},{Y(peak):.1f} {X(xmax):.1f},{Y(peak):.1f}"/>')
    fp8 = getattr(getattr(getattr(chip, "core", None), "tensor", None), "peak_fp8_flops", None)
    if fp8 and fp8 > _peak_flops(chip) * 1.01:
        pk8 = fp8 * _n_cores(profile)
        r8 = pk8 / bw
        p.append(f'<polyline fill="none" stroke="#7d8aa0" stroke-dasharray="5 4" points="'
                 f'{X(ridge):.1f},{Y(peak):.1f} {X(r8):.1f},{Y(pk8):.1f} {X(xmax):.1f},{Y(pk8):.1f}"/>'
                 f'<text x="{X(xmax) - 4:.1f}" y="{Y(pk8) - 6:.1f}" text-anchor="end">FP8 '
                 f'{_e(views.fmt_si(pk8, "FLOP/s"))}</text>')
    p.append(f'<text x="{X(xmax) - 4:.1f}" y="{Y(peak) + 15:.1f}" text-anchor="end">BF16 peak '
             f'{_e(views.fmt_si(peak, "FLOP/s"))}</text>')
    p.append(f'<line x1="{X(ridge):.1f}" x2="{X(ridge):.1f}" y1="{Y(peak):.1f}" y2="{T + ph}" '
             f'stroke="#9aa6b8" stroke-dasharray="2 3"/><text x="{X(ridge) + 4:.1f}" '
             f'y="{T + ph - 6}">ridge {ridge:.0f} FLOP/B</text>')
    slope_x = xmin * 3
    p.append(f'<text x="{X(slope_x) + 4:.1f}" y="{Y(slope_x * bw) - 8:.1f}" '
             f'transform="rotate(-{_slope_angle(X, Y, bw, slope_x):.1f} {X(slope_x):.1f} '
             f'{Y(slope_x * bw):.1f})">DMA to HBM {bw / 1e9:.0f} GB/s</text>')
    if ai > 0 and achieved > 0:
        roof = min(peak, ai * bw)
        frac = achieved / roof if roof else 0.0
        tip = (f"arithmetic intensity {ai:.1f} FLOP/B<br>achieved "
               f"{views.fmt_si(achieved, 'FLOP/s')} = {100 * frac:.1f}% of the roof "
               f"({views.fmt_si(roof, 'FLOP/s')})")
        cx, cy = X(ai), Y(achieved)
        p.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{Y(roof):.1f}" y2="{cy:.1f}" '
                 f'stroke="#c7362f" stroke-dasharray="3 3"/>')
        p.append(f'<circle class="kernel-point" data-tip="{_e(tip)}" cx="{cx:.1f}" cy="{cy:.1f}" '
                 f'r="6.5" fill="#c7362f" stroke="#fff" stroke-width="2"/>')
        near = cy - Y(roof) < 30
        p.append(f'<text class="ttl" x="{cx - 10:.1f}" y="{cy + (18 if near else -9):.1f}" '
                 f'text-anchor="end">kernel</text>')
        p.append(f'<circle cx="{L + 16}" cy="{T + 12}" r="5" fill="#c7362f"/>'
                 f'<text class="ttl" x="{L + 27}" y="{T + 16}">kernel: '
                 f'{_e(views.fmt_si(achieved, "FLOP/s"))}, {100 * frac:.1f}% of the roof</text>'
                 f'<text x="{L + 27}" y="{T + 32}">{ai:.1f} FLOP/B: '
                 f'{"memory" if ai < ridge else "compute"}-bound side</text>')
        info["roof_fraction"] = frac
    p.append(f'<text x="{L + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">arithmetic '
             f'intensity (model FLOPs per HBM byte)</text>')
    p.append("</svg>")
    note = ""
    if not (ai > 0 and achieved > 0):
        note = ('<p class="note">This kernel does no matmul FLOPs, so it has no point on the '
                'Tensor Engine roofline; its HBM traffic is in the chart beside.</p>')
    return "".join(p) + note, info


def _tick(v: float) -> str:
    for suffix, div in (("M", 1e6), ("k", 1e3)):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def _slope_angle(X, Y, bw, x) -> float:
    dx = X(x * 10) - X(x)
    dy = Y(x * bw) - Y(x * 10 * bw)
    return math.degrees(math.atan2(dy, dx))


# ---------------------------------------------------------------- HTML sections

def _cards(profile, roof) -> str:
    s = _summary(profile)
    total = _total_ns(profile)
    util = {(u["core"], u["label"]): u["pct"] for u in utilization(profile)}
    n = _n_cores(profile)

    def avg(label):
        vals = [util.get((c, label)) for c in range(n)]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else 0.0
    cards = [("total time", views.fmt_time_ns(total))]
    mfu = s.get("mfu_estimated_percent")
    if mfu is None and roof.get("peak") and total:
        mfu = 100.0 * roof["flops"] / (roof["peak"] * total * 1e-9)
    cards.append(("MFU (estimated)", f"{mfu:.1f} %" if mfu is not None else "-"))
    mbu = s.get("mbu_estimated_percent")
    cards.append(("MBU (estimated)", f"{mbu:.1f} %" if mbu is not None else "-"))
    te = s.get("tensor_engine_active_time_percent", avg("Tensor"))
    cards.append(("Tensor Engine active", f"{te:.1f} %"))
    dma = s.get("dma_active_time_percent", avg("DMA (any queue)"))
    cards.append(("DMA active", f"{dma:.1f} %"))
    _, traffic = _flops_and_traffic(profile)
    cards.append(("HBM traffic", views.fmt_bytes(traffic)))
    cards.append(("instructions", f"{len(profile.program.instructions):,}"))
    if s.get("cc_op_count"):
        cards.append(("in collectives", f"{s['cc_op_active_time_percent']:.1f} %"))
    return _cards_html(cards)


def _cards_html(cards) -> str:
    """A row of headline figures from (label, value) pairs."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="l">{_e(k)}</div></div>'
        for k, v in cards) + "</div>"


def _insights_html(profile) -> str:
    return _insight_list(getattr(profile, "insights", None),
                         "No performance insight fired for this kernel.")


def _insight_list(insights, none_text: str) -> str:
    rows = views.sorted_insights(insights)
    if not rows:
        return f'<p class="none">{_e(none_text)}</p>'
    out = []
    for r in rows:
        crit = r["criticality"].lower() or "info"
        lines = ""
        if r["lines"]:
            items = []
            for ln in r["lines"][:8]:
                code = f' <code>{_e(ln["text"])}</code>' if ln.get("text") else ""
                note = f' \u2014 {_e(ln["note"])}' if ln.get("note") else ""
                items.append(f'<li><b>{_e(ln["where"])}</b>{code}{note}</li>')
            more = len(r["lines"]) - 8
            if more > 0:
                items.append(f"<li>and {more} more</li>")
            lines = "<ul>" + "".join(items) + "</ul>"
        advice = f'<div class="a">{_e(r["advice"])}</div>' if r["advice"] else ""
        stake = (f'<span class="stake">about {100 * r["share"]:.0f}% of the run at stake'
                 f'</span>' if r["share"] else "")
        out.append(f'<div class="ins {_e(crit)}" data-rule="{_e(r["rule"])}"><div class="t">'
                   f'<span class="badge {_e(crit)}">{_e(r["criticality"] or "info")}</span>'
                   f'{_e(r["title"])}{stake}</div>'
                   f'<div class="m">{_e(r["message"])}</div>{advice}{lines}</div>')
    return "".join(out)


def _util_html(profile) -> str:
    out = ['<div class="util">']
    util = utilization(profile)
    multi = len({u["core"] for u in util}) > 1
    last = None
    for u in util:
        if multi and u["core"] != last:
            out.append(f'<div class="core">NeuronCore {u["core"]}</div>')
        last = u["core"]
        pct = max(0.0, min(100.0, u["pct"]))
        out.append(f'<div class="name" title="{_e(u["label"])}">{_e(u["label"])}</div>'
                   f'<div class="bar" data-tip="{_e(u["label"])}: busy '
                   f'{_e(views.fmt_time_ns(u["busy"]))}"><span style="width:{pct:.2f}%;'
                   f'background:{GROUP_COLOR.get(u["group"], "#889")}"></span></div>'
                   f'<div class="pct">{u["pct"]:.1f} %</div>')
    out.append("</div>")
    return "".join(out)


def _lines_html(profile) -> str:
    rows = views.time_by_line(profile.program, profile.timeline)
    if not rows:
        return '<p class="none">No instructions.</p>'
    groups = [g for g in GROUPS if any(r["time"].get(g) for r in rows)]
    grand = sum(r["total"] for r in rows) or 1.0
    head = ("<tr><th class='l'>line</th><th class='l'>source</th>" +
            "".join(f"<th>{GROUP_LABEL[g]}</th>" for g in groups) +
            "<th>total</th><th>share of engine time</th><th>instr.</th></tr>")

    def row(r):
        cells = "".join(f"<td>{_e(views.fmt_time_ns(r['time'][g])) if r['time'].get(g) else ''}"
                        "</td>" for g in groups)
        share = 100.0 * r["total"] / grand
        ops = ", ".join(f"{k} \u00d7{v}" for k, v in sorted(r["opcodes"].items(),
                                                           key=lambda kv: -kv[1]))
        where = r["short"] + (f" ({r['function']})" if r["function"] else "")
        main_group = max(r["time"], key=r["time"].get) if r["time"] else "dma"
        return (f"<tr class='src-line'><td class='loc' title='{_e(r['file'] or '')}'>{_e(where)}</td>"
                f"<td class='code l' title='{_e(ops)}'>{_e(r['text'])}</td>{cells}"
                f"<td><b>{_e(views.fmt_time_ns(r['total']))}</b></td>"
                f"<td><div class='share'><div class='bar'><span style='width:{share:.2f}%;"
                f"background:{GROUP_COLOR.get(main_group, '#889')}'></span></div>"
                f"{share:.1f}%</div></td><td>{r['count']:,}</td></tr>")
    top, rest = rows[:25], rows[25:]
    out = [f"<table class='lines'><thead>{head}</thead><tbody>",
           "".join(row(r) for r in top), "</tbody></table>"]
    if rest:
        out.append(f"<details><summary>{len(rest)} more lines</summary><table class='lines'>"
                   f"<thead>{head}</thead><tbody>{''.join(row(r) for r in rest)}</tbody>"
                   "</table></details>")
    out.append("<p class='note'>Engine time: the summed durations of each line's "
               "instructions per engine (engines run in parallel, so the total can exceed "
               "the kernel's time). Hover a line's source for its opcodes.</p>")
    return "".join(out)


def _opcodes_html(profile) -> str:
    rows = opcode_table(profile)[:20]
    if not rows:
        return '<p class="none">No instructions.</p>'
    out = ["<table><thead><tr><th class='l'>engine</th><th class='l'>opcode</th><th>count</th>"
           "<th>time</th><th>avg</th><th>bytes</th></tr></thead><tbody>"]
    for r in rows:
        out.append(f"<tr><td class='l'><span class='badge' style='background:"
                   f"{GROUP_COLOR.get(r['group'], '#889')}'>{_e(GROUP_LABEL.get(r['group'], r['group']))}"
                   f"</span></td><td class='l loc'>{_e(r['opcode'])}</td><td>{r['count']:,}</td>"
                   f"<td>{_e(views.fmt_time_ns(r['time']))}</td>"
                   f"<td>{_e(views.fmt_time_ns(r['time'] / r['count']))}</td>"
                   f"<td>{_e(views.fmt_bytes(r['bytes']))}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _summary_html(profile) -> str:
    s = _summary(profile)
    if not s:
        return '<p class="none">No summary.</p>'
    return '<div class="summary">' + "".join(
        f'<div><span class="n">{_e(k)}</span><span class="v" title="{_e(v)}">'
        f'{_e(views.fmt_metric(k, v))}</span></div>' for k, v in s.items()) + "</div>"


def _legend(profile) -> str:
    """The engines and DMA always, the collectives where the run has any."""
    used = {views.track_group(e.track) for e in profile.timeline.events}
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{GROUP_COLOR[g]}"></i>{GROUP_LABEL[g]}</span>'
        for g in GROUPS if g != "cc" or g in used) + "</div>"


def _json_script(data) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def render_report(profile) -> str:
    """The report as one HTML string."""
    chip = profile.chip
    name = views.kernel_name(profile)
    chip_name = views.chip_name(chip)
    total = _total_ns(profile)
    data = timeline_data(profile)
    roof_svg, roof = _roofline_svg(profile)
    lnc = int(getattr(profile.program, "lnc", 1) or 1)
    sub = (f"{_e(chip_name)} \u00b7 {_e(getattr(chip, 'core_name', '') or '')} \u00b7 "
           f"LNC={lnc} \u00b7 {len(profile.program.instructions):,} instructions \u00b7 "
           f"simulated {_e(views.fmt_time_ns(total))}")
    roof_caption = (f"BF16 peak {views.fmt_si(roof['peak'], 'FLOP/s')} against "
                    f"{roof['bw'] / 1e9:.0f} GB/s (the HBM bandwidth the DMA engines "
                    f"reach): the ridge is at "
                    f"{roof['ridge']:.0f} FLOP/B" if roof.get("bw") else "")
    body = f"""{_cards(profile, roof)}
<section id="insights"><h2>Performance insights</h2>{_insights_html(profile)}</section>
<section id="timeline"><h2>Engine timeline<span class="hint">wheel: zoom \u00b7 drag: pan \u00b7
double-click: reset \u00b7 hover: instruction and kernel line</span></h2>
<div class="tl-tools"><button id="tl-in">zoom in</button><button id="tl-out">zoom out</button>
<button id="tl-reset">reset</button><span id="tl-range"></span></div>
<div id="tl-wrap"><svg id="tl-svg" xmlns="http://www.w3.org/2000/svg"></svg></div>
{_legend(profile)}</section>
<div class="grid2">
<section id="utilization"><h2>Engine utilization<span class="hint">active time as a share of
the kernel's {_e(views.fmt_time_ns(total))}</span></h2>{_util_html(profile)}</section>
<section id="roofline"><h2>Roofline<span class="hint">{_e(roof_caption)}</span></h2>
{roof_svg}</section>
</div>
<div class="grid2">
<section id="hbm"><h2>HBM read / write / idle over time</h2>{_hbm_svg(profile)}</section>
<section id="opcodes"><h2>Time by opcode</h2>{_opcodes_html(profile)}</section>
</div>
<div class="grid2">
<section id="sbuf"><h2>SBUF in use over time<span class="hint">core 0, as the compiler model
placed each block</span></h2>{_memory_svg(profile, "sbuf")}</section>
<section id="psum"><h2>PSUM in use over time</h2>{_memory_svg(profile, "psum")}</section>
</div>
<section id="spills"><h2>Spills</h2>{_spills_html(profile)}</section>
<section id="source-lines"><h2>Time by kernel source line</h2>{_lines_html(profile)}</section>
<section id="summary"><h2>Summary<span class="hint">Neuron Explorer metric names</span></h2>
{_summary_html(profile)}</section>"""
    scripts = f"""<div id="tip"></div>
<script type="application/json" id="trnsim-data">{_json_script(data)}</script>
<script>{JS}</script>"""
    return _page(f"trnsim profile: {name} on {chip_name}", "trnsim profile", name, sub,
                 body, scripts)


def _page(title: str, heading: str, name: str, sub: str, body: str,
          scripts: str = "", css: str = "") -> str:
    """A report page: the header (heading \u00b7 name, and `sub`, already HTML), `body`
    (HTML sections), the footer, then `scripts`."""
    try:
        from .. import __version__ as version
    except Exception:  # pragma: no cover
        version = "?"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}{css}</style></head>
<body>
<header><h1>{_e(heading)} \u00b7 <span class="k">{_e(name)}</span></h1>
<div class="sub">{sub}</div></header>
<main>
{body}
</main>
<footer>trnsim {_e(version)} \u00b7 simulated, not measured \u00b7 generated {_e(when)}</footer>
{scripts}
</body></html>
"""


def write_report(profile, path) -> str:
    """Write the report for `profile` to `path` (a file, or a directory in which
    `<kernel>.report.html` is written). Returns the path written."""
    with gc_paused():  # many small objects, no cyclic garbage (see Profile.summary)
        text = render_report(profile)
    return _write_html(text, path, f"{views.kernel_name(profile)}.report.html")


def _write_html(text: str, path, name_in_dir: str) -> str:
    """Write `text` to `path`, or to `name_in_dir` inside `path` if it is a directory."""
    path = views.output_path(path, name_in_dir)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


# ---------------------------------------------------------------- multi-rank report

KIND_COLORS = ("#3d73c9", "#e08a2c", "#3f9d5a", "#9b6bb5", "#2aa3a3", "#8a6d55", "#c2417a",
               "#5f6b7a")
MAX_ROWS = 50  # ranks or collectives listed before the rest fold away


def render_ranks_report(rp) -> str:
    """The multi-rank report (trnsim.profile.ranks.RanksProfile) as one HTML string."""
    s = rp.summary
    outliers = {id(c) for c in collective_outliers(rp.collectives)}
    topo = rp.topology
    sub = (f"{_e(s['chip'])} \u00b7 {rp.world_size} ranks on {_e(topo.name)} "
           f"({_e(topo.kind)}, {topo.num_chips} chips) \u00b7 simulated "
           f"{_e(views.fmt_time_ns(rp.total_time * 1e9))} \u00b7 "
           f"{s['scheduling_rounds']} scheduling rounds")
    body = f"""{_ranks_cards(rp)}
<section id="insights"><h2>Insights</h2>{_insight_list(
        ranks_insights(rp), "No collective stands out from its kind's median.")}</section>
<section id="scatter"><h2>Collective durations<span class="hint">each collective's transfer,
from when its group's last member reached it; ringed: over 2x its kind's median</span></h2>
{_scatter_svg(rp, outliers)}</section>
<section id="ranks"><h2>Ranks<span class="hint">time in collectives includes the wait for
the slowest member of each group</span></h2>{_ranks_table(rp)}</section>
<section id="kinds"><h2>Collectives by kind</h2>{_kinds_table(s["by_kind"])}</section>
<section id="collectives"><h2>Collectives<span class="hint">in start order</span></h2>
{_collectives_table(rp, outliers)}</section>"""
    return _page(f"trnsim collectives: {rp.name} on {rp.world_size} ranks",
                 "trnsim collectives", rp.name, sub, body, css=RANKS_CSS)


def write_ranks_report(rp, path) -> str:
    """Write the multi-rank report to `path` (a file, or a directory in which
    `<kernel>.ranks.report.html` is written). Returns the path written."""
    return _write_html(render_ranks_report(rp), path,
                       f"{views.kernel_name(rp)}.ranks.report.html")


def _gbps(x: float) -> str:
    return f"{x:.1f} GB/s"


def _ranks_cards(rp) -> str:
    s = rp.summary
    return _cards_html([
        ("total time", views.fmt_time_ns(rp.total_time * 1e9)),
        ("ranks", f"{rp.world_size}"),
        ("collectives", f"{s['cc_op_count']:,}"),
        ("time in collectives (mean)", f"{s['cc_op_active_time_percent_mean']:.1f} %"),
        ("algorithm bandwidth", _gbps(s["cc_algbw_GBps"])),
        ("bus bandwidth", _gbps(s["cc_busbw_GBps"])),
        ("slowest rank", str(s["slowest_rank"]))])


def _table(head: list[str], rows: list[tuple[str, list]]) -> str:
    """A table from column titles (a leading '<' aligns left) and (row class, cells)."""
    th = "".join(f"<th class='l'>{_e(h[1:])}</th>" if h.startswith("<") else f"<th>{_e(h)}</th>"
                 for h in head)
    left = [h.startswith("<") for h in head]
    body = "".join(
        f"<tr class='{cls}'>" + "".join(f"<td class='l'>{c}</td>" if lft else f"<td>{c}</td>"
                                        for c, lft in zip(cells, left)) + "</tr>"
        for cls, cells in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _ranks_table(rp) -> str:
    s = rp.summary
    rows = []
    for r in s["per_rank"]:
        cls = "slowest" if r["rank"] == s["slowest_rank"] else ""
        rows.append((cls, [r["rank"], r["chip"],
                           _e(views.fmt_time_ns(r["total_time"] * 1e9)),
                           _e(views.fmt_time_ns(r["cc_op_time"] * 1e9)),
                           _e(views.fmt_time_ns(r["cc_wait_time"] * 1e9)),
                           f"{r['cc_op_active_time_percent']:.1f} %", r["cc_op_count"]]))
    return _folded_table(["<rank", "<chip", "total time", "collectives time",
                          "wait for slowest", "% in collectives", "collectives"], rows, "ranks")


def _kinds_table(by_kind: dict) -> str:
    if not by_kind:
        return '<p class="none">No collectives.</p>'
    rows = [("", [_e(k), v["count"], _e(views.fmt_time_ns(v["time"] * 1e9)),
                  _e(views.fmt_bytes(v["bytes"])), _e(", ".join(v["algorithms"])),
                  _gbps(v["algbw_GBps"]), _gbps(v["busbw_GBps"])])
            for k, v in sorted(by_kind.items())]
    return _table(["<kind", "count", "time", "bytes", "<algorithms", "algbw", "busbw"], rows)


def _collectives_table(rp, outliers: set) -> str:
    if not rp.collectives:
        return '<p class="none">No collectives.</p>'
    head = ["<#", "<kind", "<ranks", "group size", "<algorithm", "bytes", "start",
            "duration", "max wait", "algbw", "busbw"]
    rows = [_collective_row(n, c, id(c) in outliers) for n, c in enumerate(rp.collectives)]
    return _folded_table(head, rows, "collectives")


def _folded_table(head: list[str], rows: list, what: str) -> str:
    """_table of the first MAX_ROWS rows, the rest folded away."""
    out = _table(head, rows[:MAX_ROWS])
    rest = rows[MAX_ROWS:]
    if rest:
        out += (f"<details><summary>{len(rest)} more {what}</summary>"
                f"{_table(head, rest)}</details>")
    return out


def _collective_row(n: int, c, outlier: bool) -> tuple[str, list]:
    wait = max((c.start - a for a in c.arrivals.values()), default=0.0)
    badge = " <span class='badge outlier'>outlier</span>" if outlier else ""
    return ("outlier" if outlier else "", [
        n, _e(c.kind) + badge, _e(views.group_label(c.group)), len(c.group), _e(c.algorithm),
        _e(views.fmt_bytes(c.nbytes)), _e(views.fmt_time_ns(c.start)),
        _e(views.fmt_time_ns(c.duration)), _e(views.fmt_time_ns(wait)),
        _gbps(c.algo_bandwidth), _gbps(c.bus_bandwidth)])


def _scatter_svg(rp, outliers: set, width=760, height=280) -> str:
    """Each collective's duration (y) against its start (x), a colour per kind, a dashed
    line at 2x each kind's median, outliers ringed."""
    colls = rp.collectives
    if not colls:
        return '<p class="none">No collectives.</p>'
    medians = kind_medians(colls)
    color = {k: KIND_COLORS[i % len(KIND_COLORS)] for i, k in enumerate(sorted(medians))}
    L, R, T, B = 64, 14, 24, 34
    pw, ph = width - L - R, height - T - B
    x_max = max(rp.total_time * 1e9, max(c.start for c in colls)) or 1.0
    y_max = 1.1 * max(max(c.duration for c in colls),
                      OUTLIER_FACTOR * max(medians.values())) or 1.0

    def X(t):
        return L + pw * t / x_max

    def Y(d):
        return T + ph * (1 - d / y_max)
    p = [f'<svg class="chart scatter" viewBox="0 0 {width} {height}" width="100%" role="img" '
         f'aria-label="collective durations over time">']
    p += _scatter_axes(L, T, pw, ph, height, x_max, y_max)
    for kind, m in sorted(medians.items()):
        y = Y(OUTLIER_FACTOR * m)
        p.append(f'<line class="threshold" x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                 f'stroke="{color[kind]}" stroke-dasharray="5 4" opacity=".7">'
                 f'<title>{_e(kind)}: {OUTLIER_FACTOR:g}x median '
                 f'{_e(views.fmt_time_ns(m))}</title></line>')
    for c in colls:
        p.append(_scatter_point(c, X(c.start), Y(c.duration), color[c.kind],
                                id(c) in outliers, medians[c.kind]))
    p.append(f'<text class="ttl" x="{L}" y="14">collective duration against its start '
             f'time</text></svg>')
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{color[k]}"></i>{_e(k)} (median '
        f'{_e(views.fmt_time_ns(m))})</span>' for k, m in sorted(medians.items())) + \
        f'<span>{len(outliers)} outlier{"" if len(outliers) == 1 else "s"}</span></div>'
    return "".join(p) + legend


def _scatter_axes(L, T, pw, ph, height, x_max, y_max) -> list[str]:
    out = []
    for k in range(5):
        y = T + ph * (1 - k / 4)
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff3"/>'
                   f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f'{_e(views.fmt_time_ns(y_max * k / 4))}</text>')
        x = L + pw * k / 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        out.append(f'<text x="{x:.1f}" y="{height - 12}" text-anchor="{anchor}">'
                   f'{_e(views.fmt_time_ns(x_max * k / 4))}</text>')
    out.append(f'<text x="{L + pw / 2:.1f}" y="{height - 1}" text-anchor="middle">start of '
               f'the transfer</text>')
    return out


def _scatter_point(c, x: float, y: float, color: str, outlier: bool, median: float) -> str:
    tip = (f"{c.kind} #{c.seq} on {len(c.group)} ranks, {views.fmt_bytes(c.nbytes)}, "
           f"{c.algorithm}: {views.fmt_time_ns(c.duration)} from "
           f"{views.fmt_time_ns(c.start)} ({c.duration / median:.2f}x the median)"
           if median else c.kind)
    cls = ' class="outlier"' if outlier else ""
    return (f'<circle{cls} cx="{x:.1f}" cy="{y:.1f}" r="{6 if outlier else 4.5}" '
            f'fill="{color}" fill-opacity=".85"><title>{_e(tip)}</title></circle>')
