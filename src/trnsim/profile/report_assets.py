"""The HTML report's inline stylesheet and script (no external assets: the report is one
file that works offline)."""

CSS = r"""
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#5f6b7a;--line:#e3e7ec;--accent:#2f6fde;
--tensor:#3d73c9;--vector:#3f9d5a;--scalar:#e08a2c;--gpsimd:#9b6bb5;--sync:#8a6d55;--dma:#2aa3a3;
--crit:#c7362f;--high:#e0782c;--med:#d3a31a;--low:#5f8fc9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:linear-gradient(90deg,#18233a,#24365c);color:#fff;padding:18px 28px 16px}
header h1{margin:0;font-size:21px;font-weight:600;letter-spacing:.2px}
header h1 .k{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#ffd479}
header .sub{color:#b9c6dd;font-size:13px;margin-top:4px}
main{padding:18px 28px 40px;max-width:1600px;margin:0 auto}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 18px 16px;margin:0 0 16px;box-shadow:0 1px 2px rgba(20,30,50,.04)}
section h2{font-size:15px;margin:0 0 10px;font-weight:650;color:#24324a}
section h2 .hint{font-weight:400;color:var(--mute);font-size:12.5px;margin-left:8px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-bottom:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px}
.card .v{font-size:21px;font-weight:650;color:#18233a;white-space:nowrap}
.card .l{font-size:12px;color:var(--mute)}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}
@media (max-width:1100px){.grid2{grid-template-columns:1fr}}
.grid2>section{margin:0 0 16px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{font-weight:600;color:#3a475c;background:#f3f5f8;position:sticky;top:0}
td.l,th.l{text-align:left}
td.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;color:#223;white-space:pre;max-width:520px;overflow:hidden;text-overflow:ellipsis}
td.loc{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;white-space:nowrap}
.bar{position:relative;height:8px;background:#edf0f4;border-radius:4px;min-width:60px}
.bar>span{position:absolute;left:0;top:0;bottom:0;border-radius:4px}
.share{display:flex;align-items:center;gap:6px;justify-content:flex-end}
.share .bar{width:90px}
.util{display:grid;grid-template-columns:150px 1fr 70px;gap:5px 10px;align-items:center;font-size:13px}
.util .name{color:#2c3a52;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.util .bar{height:14px;border-radius:3px}
.util .bar>span{border-radius:3px}
.util .pct{text-align:right;font-variant-numeric:tabular-nums}
.util .core{grid-column:1/-1;font-weight:600;color:#3a475c;margin-top:4px;font-size:12.5px}
.ins{border-left:4px solid var(--low);background:#fafbfd;border-radius:6px;padding:9px 12px;margin:0 0 10px}
.ins.critical{border-color:var(--crit)}.ins.high{border-color:var(--high)}.ins.medium,.ins.warning{border-color:var(--med)}
.ins .t{font-weight:650}.ins .stake{font-weight:400;color:var(--mute);font-size:12.5px;margin-left:10px}.ins .m{margin-top:3px}.ins .a{margin-top:4px;color:#235;}
.ins .a:before{content:"\2192  ";color:var(--accent)}
.badge{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.4px;padding:1px 7px;border-radius:9px;color:#fff;background:var(--low);margin-right:8px;vertical-align:1px}
.badge.critical{background:var(--crit)}.badge.high{background:var(--high)}.badge.medium,.badge.warning{background:var(--med)}
.ins ul{margin:5px 0 0;padding-left:18px;font-size:12.5px}
.ins code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;background:#eef1f5;padding:0 4px;border-radius:3px}
.none{color:var(--mute);font-style:italic}
#tl-wrap{position:relative;user-select:none}
#tl-svg{display:block;width:100%;cursor:grab;background:#fff}
#tl-svg.drag{cursor:grabbing}
.tl-tools{display:flex;gap:8px;align-items:center;margin:-4px 0 8px;font-size:12.5px;color:var(--mute)}
.tl-tools button{font:inherit;border:1px solid var(--line);background:#f7f8fa;border-radius:6px;padding:2px 10px;cursor:pointer;color:#24324a}
.tl-tools button:hover{background:#eef2f8}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12.5px;color:#3a475c;margin-top:8px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;vertical-align:-1px}
#tip{position:fixed;pointer-events:none;background:rgba(22,29,43,.95);color:#eef3ff;font-size:12px;padding:7px 10px;border-radius:6px;max-width:460px;display:none;z-index:10;box-shadow:0 4px 14px rgba(0,0,0,.25)}
#tip b{color:#ffd479}#tip .c{font-family:ui-monospace,Menlo,Consolas,monospace;color:#b9d4ff;white-space:pre-wrap}
.chart{display:block;max-width:820px;margin:0 auto}
.chart text{font-size:11px;fill:#5f6b7a}
.chart .ttl{font-size:12px;fill:#24324a;font-weight:600}
.summary{columns:2 360px;column-gap:28px}
.summary div{display:flex;justify-content:space-between;border-bottom:1px dotted var(--line);padding:3px 0;break-inside:avoid;font-size:13px}
.summary .n{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;color:#3a475c}
.summary .v{font-variant-numeric:tabular-nums;font-weight:600}
details summary{cursor:pointer;color:var(--accent);margin:8px 0 0;font-size:13px}
footer{color:var(--mute);font-size:12px;text-align:center;padding:6px 0 24px}
.note{color:var(--mute);font-size:12.5px;margin:6px 0 0}
"""

JS = r"""
(function(){
const D = JSON.parse(document.getElementById('trnsim-data').textContent);
const COLORS = {tensor:[214,55],vector:[139,43],scalar:[31,75],gpsimd:[282,36],sync:[26,25],cc:[330,50],dma:[180,60]};
const nOps = D.opcodes.length;
function color(group, op){
  const c = COLORS[group] || [210,10];
  const l = 38 + ((op * 37) % 5) * 5;
  return 'hsl(' + c[0] + ',' + c[1] + '%,' + l + '%)';
}
function fmtT(ns){
  const a = Math.abs(ns);
  if (a >= 1e9) return (ns/1e9).toFixed(3) + ' s';
  if (a >= 1e6) return (ns/1e6).toFixed(a >= 1e8 ? 1 : 3) + ' ms';
  if (a >= 1e3) return (ns/1e3).toFixed(a >= 1e5 ? 1 : 2) + ' us';
  return (+ns.toFixed(1)) + ' ns';
}
function esc(s){return String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
const SVGNS = 'http://www.w3.org/2000/svg';
function el(name, attrs, parent){
  const e = document.createElementNS(SVGNS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
// ---------------------------------------------------------------- timeline
const rows = D.rows;                 // [{label, group, core, header}]
const ev = D.events;                 // columnar: row, s, d, op, loc, n
const N = ev.row.length;
const perRow = rows.map(() => []);
for (let i = 0; i < N; i++) perRow[ev.row[i]].push(i);
const maxDur = rows.map(() => 0);
for (let r = 0; r < rows.length; r++) {
  perRow[r].sort((a, b) => ev.s[a] - ev.s[b]);
  for (const i of perRow[r]) if (ev.d[i] > maxDur[r]) maxDur[r] = ev.d[i];
}
const total = Math.max(D.total_ns, 1);
let t0 = 0, t1 = total;
const svg = document.getElementById('tl-svg');
const tip = document.getElementById('tip');
const LABEL = 132, ROW = 20, HEAD = 18, AXIS = 24, PAD = 8;
let segs = [];
function layout(){
  let y = AXIS, out = [];
  let lastCore = null;
  for (let r = 0; r < rows.length; r++) {
    if (rows[r].core !== lastCore && D.cores > 1) { out.push({header: rows[r].core, y: y}); y += HEAD; }
    lastCore = rows[r].core;
    out.push({row: r, y: y}); y += ROW;
  }
  return {items: out, height: y + PAD};
}
const L = layout();
function niceStep(span, px){
  const target = span / Math.max(2, px / 110);
  const p = Math.pow(10, Math.floor(Math.log10(target)));
  for (const m of [1, 2, 5, 10]) if (m * p >= target) return m * p;
  return 10 * p;
}
function draw(){
  const W = svg.clientWidth || svg.parentNode.clientWidth || 1200;
  const plotW = W - LABEL - PAD;
  const k = plotW / (t1 - t0);
  const X = t => LABEL + (t - t0) * k;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute('height', L.height);
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + L.height);
  // grid and axis
  const step = niceStep(t1 - t0, plotW);
  const g = el('g', {'class': 'axis'}, svg);
  for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
    const x = X(t);
    el('line', {x1: x, x2: x, y1: AXIS - 4, y2: L.height - PAD, stroke: '#eceff3'}, g);
    const tx = el('text', {x: x, y: AXIS - 8, 'text-anchor': 'middle', 'font-size': 11, fill: '#5f6b7a'}, g);
    tx.textContent = fmtT(t);
  }
  segs = [];
  const gl = el('g', {'class': 'labels'}, svg);
  const gr = el('g', {'class': 'events'}, svg);
  for (const it of L.items) {
    if (it.header !== undefined) {
      const t = el('text', {x: 6, y: it.y + 13, 'font-size': 12, 'font-weight': 600, fill: '#24324a'}, gl);
      t.textContent = 'NeuronCore ' + it.header;
      el('line', {x1: 0, x2: W, y1: it.y + 1, y2: it.y + 1, stroke: '#d5dbe3'}, gl);
      continue;
    }
    const r = it.row, row = rows[r];
    if (r % 2 === 0) el('rect', {x: LABEL, y: it.y, width: plotW, height: ROW, fill: '#f8f9fb'}, gl);
    const t = el('text', {x: 12, y: it.y + 14, 'font-size': 12, fill: '#2c3a52', 'class': 'tl-label'}, gl);
    t.textContent = row.label;
    const idx = perRow[r];
    // first event that may overlap t0
    let lo = 0, hi = idx.length, target = t0 - maxDur[r];
    while (lo < hi) { const m = (lo + hi) >> 1; if (ev.s[idx[m]] < target) lo = m + 1; else hi = m; }
    let cur = null;
    const alpha = row.group === 'dma' ? 0.75 : 1;
    const flush = () => {
      if (!cur) return;
      const w = Math.max(cur.x1 - cur.x0, 0.8);
      const attrs = {x: cur.x0, y: it.y + 3, width: w, height: ROW - 6, rx: w > 4 ? 1.5 : 0,
        fill: color(row.group, cur.op), 'fill-opacity': alpha, 'class': 'ev', 'data-s': segs.length};
      if (w > 4) { attrs.stroke = '#fff'; attrs['stroke-width'] = 0.6; }
      el('rect', attrs, gr);
      segs.push(cur);
    };
    for (let j = lo; j < idx.length; j++) {
      const i = idx[j];
      const s = ev.s[i], e = s + ev.d[i];
      if (s > t1) break;
      if (e < t0) continue;
      const x0 = Math.max(X(s), LABEL), x1 = Math.min(X(e), W - PAD);
      // merge into the current bar what would not show on its own: sub-2-pixel
      // instructions touching it, or anything touching a sub-2-pixel bar
      if (cur && x0 <= cur.x1 + 0.75 && (x1 - x0 < 2 || cur.x1 - cur.x0 < 2)) {
        cur.x1 = Math.max(cur.x1, x1); cur.n += ev.n[i]; cur.end = Math.max(cur.end, e);
        cur.ops[ev.op[i]] = (cur.ops[ev.op[i]] || 0) + ev.n[i];
        if (ev.d[i] > cur.dmax) { cur.dmax = ev.d[i]; cur.op = ev.op[i]; }
        continue;
      }
      flush();
      cur = {x0: x0, x1: x1, n: ev.n[i], first: i, start: s, end: e, op: ev.op[i], dmax: ev.d[i], ops: {}, row: r};
      cur.ops[ev.op[i]] = ev.n[i];
    }
    flush();
  }
  document.getElementById('tl-range').textContent = fmtT(t0) + ' \u2013 ' + fmtT(t1) +
    '  (' + segs.length + ' drawn segments of ' + D.n_instructions + ' instructions' + (D.decimated ? ', decimated' : '') + ')';
}
function showTip(evt, sg){
  const i = sg.first, row = rows[sg.row];
  let h;
  if (sg.n === 1) {
    h = '<b>' + esc(D.opcodes[ev.op[i]]) + '</b> on ' + esc(row.label) + '<br>' +
        fmtT(ev.s[i]) + ' + ' + fmtT(ev.d[i]) + '<br>' + esc(D.locs[ev.loc[i]] || '');
    const code = D.srcs[ev.loc[i]];
    if (code) h += '<div class="c">' + esc(code) + '</div>';
    if (ev.extra && ev.extra[i]) h += '<div>' + esc(ev.extra[i]) + '</div>';
  } else {
    const ops = Object.entries(sg.ops).sort((a, b) => b[1] - a[1]).slice(0, 5)
      .map(([o, c]) => esc(D.opcodes[o]) + ' \u00d7' + c).join(', ');
    h = '<b>' + sg.n + ' instructions</b> on ' + esc(row.label) + '<br>' + fmtT(sg.start) +
        ' \u2013 ' + fmtT(sg.end) + '<br>' + ops + '<br><i>zoom in for single instructions</i>';
  }
  tip.innerHTML = h;
  tip.style.display = 'block';
  const x = Math.min(evt.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(evt.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = x + 'px'; tip.style.top = y + 'px';
}
svg.addEventListener('mousemove', e => {
  const s = e.target.getAttribute && e.target.getAttribute('data-s');
  if (s !== null && s !== undefined && !dragging) showTip(e, segs[+s]); else tip.style.display = 'none';
});
svg.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
function zoom(factor, cx){
  const W = svg.clientWidth, plotW = W - LABEL - PAD;
  const tc = t0 + (Math.min(Math.max(cx - LABEL, 0), plotW) / plotW) * (t1 - t0);
  let span = Math.min(total, Math.max((t1 - t0) * factor, 1));
  t0 = Math.max(0, tc - (tc - t0) * span / (t1 - t0));
  t1 = Math.min(total, t0 + span); t0 = Math.max(0, t1 - span);
  draw();
}
svg.addEventListener('wheel', e => { e.preventDefault(); const r = svg.getBoundingClientRect(); zoom(e.deltaY > 0 ? 1.25 : 0.8, e.clientX - r.left); }, {passive: false});
let dragging = false, dragX = 0, dragT0 = 0;
svg.addEventListener('mousedown', e => { dragging = true; dragX = e.clientX; dragT0 = t0; svg.classList.add('drag'); tip.style.display = 'none'; });
window.addEventListener('mouseup', () => { dragging = false; svg.classList.remove('drag'); });
window.addEventListener('mousemove', e => {
  if (!dragging) return;
  const plotW = svg.clientWidth - LABEL - PAD, span = t1 - t0;
  let n0 = dragT0 - (e.clientX - dragX) / plotW * span;
  n0 = Math.min(Math.max(0, n0), total - span);
  t0 = n0; t1 = n0 + span; draw();
});
svg.addEventListener('dblclick', () => { t0 = 0; t1 = total; draw(); });
document.getElementById('tl-in').onclick = () => zoom(0.5, LABEL + (svg.clientWidth - LABEL) / 2);
document.getElementById('tl-out').onclick = () => zoom(2, LABEL + (svg.clientWidth - LABEL) / 2);
document.getElementById('tl-reset').onclick = () => { t0 = 0; t1 = total; draw(); };
window.addEventListener('resize', draw);
draw();
// hover tips for the static charts
document.querySelectorAll('[data-tip]').forEach(n => {
  n.addEventListener('mousemove', e => { tip.innerHTML = n.getAttribute('data-tip'); tip.style.display = 'block';
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8) + 'px'; tip.style.top = (e.clientY + 14) + 'px'; });
  n.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
});
document.body.setAttribute('data-rendered', '1');
})();
"""

# the multi-rank report's additions (report.render_ranks_report)
RANKS_CSS = r"""
tr.slowest td{background:#fff4e0;font-weight:600}
tr.outlier td{background:#fdeceb}
.badge.outlier{background:var(--crit)}
.scatter circle.outlier{stroke:var(--crit);stroke-width:2.5}
"""
