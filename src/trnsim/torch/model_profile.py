"""A model's predicted time on one NeuronCore, as a tree: model -> module (each forward
call) -> aten operation -> kernel -> instruction (the kernel's own Profile).

Operations run one after another on the core (an unfused graph: each is a kernel that
starts when the previous one has finished), so a node's time is the sum of its
children's and the root's is the model's. FLOPs are Tensor Engine FLOPs (Neuron
Explorer's model FLOPs). An operation charged by a roofline estimate is marked as one
at every level above it (`estimated_time`).
"""
from __future__ import annotations

import html
import json
import pathlib
from collections import defaultdict
from dataclasses import dataclass, field, replace


@dataclass
class Node:
    name: str
    kind: str                       # "model", "module", "op" or "kernel"
    children: list = field(default_factory=list)
    charge: object = None           # an op's Charge
    start: float = 0.0              # seconds from the model's start
    time: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0
    estimated_time: float = 0.0     # the part of `time` charged by roofline estimates

    def walk(self, depth=0):
        yield depth, self
        for c in self.children:
            yield from c.walk(depth + 1)


def finish(node: Node, start: float = 0.0) -> float:
    """Lay `node`'s operations out back to back from `start`; totals bottom-up."""
    node.start = start
    if node.kind == "op":
        c = node.charge
        node.time, node.flops, node.hbm_bytes = c.time, c.flops, c.hbm_bytes
        node.estimated_time = c.time if c.estimate else 0.0
        # its kernels back to back: a custom op's several, else the one it was charged
        parts = c.parts or ((c.kernel, c.time, c.flops, c.hbm_bytes, c.profile),)
        node.children, t = [], start
        for kernel, time, flops, nbytes, prof in parts:
            part = replace(c, kernel=kernel, time=time, flops=flops, hbm_bytes=nbytes,
                           profile=prof, parts=())
            label = kernel + (f" x{c.repeat}" if c.repeat > 1 else "")
            node.children.append(Node(label, "kernel", start=t, time=time, flops=flops,
                                      hbm_bytes=nbytes, charge=part,
                                      estimated_time=time if c.estimate else 0.0))
            t += time
        return t
    t = start
    for c in node.children:
        t = finish(c, t)
    node.time = t - start
    node.flops = sum(c.flops for c in node.children)
    node.hbm_bytes = sum(c.hbm_bytes for c in node.children)
    node.estimated_time = sum(c.estimated_time for c in node.children)
    return t


class ModelProfile:
    """The result of `trnsim.torch.device`: `total_time` (s), `root` (the tree),
    `by_op()` / `by_kernel()` aggregates, `table()`, and the Perfetto trace and HTML
    report writers."""

    def __init__(self, root: Node, chip):
        self.root = root
        self.chip = chip
        finish(root)

    @property
    def total_time(self) -> float:
        return self.root.time

    @property
    def ops(self) -> list:
        return [n for _, n in self.root.walk() if n.kind == "op"]

    @property
    def estimated_share(self) -> float:
        return self.root.estimated_time / self.root.time if self.root.time else 0.0

    def _group(self, key) -> list:
        groups: dict = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
        for n in self.ops:
            g = groups[key(n)]
            g[0] += 1
            g[1] += n.time
            g[2] += n.flops
            g[3] += n.hbm_bytes
        return sorted(((k, *v) for k, v in groups.items()), key=lambda r: -r[2])

    def by_op(self) -> list:
        """[(aten op, calls, time, flops, hbm bytes)], longest first."""
        return self._group(lambda n: n.charge.op)

    def by_kernel(self) -> list:
        """[(kernel or 'roofline estimate', calls, time, flops, hbm bytes)]."""
        return self._group(lambda n: n.charge.kernel)

    def table(self, depth: int = 3, min_share: float = 0.01) -> str:
        """The tree down to `depth` levels, leaving out nodes under `min_share` of the
        total."""
        total = self.total_time or 1.0
        peak = self.chip.core.tensor.peak_bf16_flops
        lines = [f"{'':<56} {'time (us)':>12} {'share':>7} {'MFU':>6} {'est.':>6}"]
        for d, n in self.root.walk():
            if d > depth or (d and n.time / total < min_share):
                continue
            mfu = 100 * n.flops / (n.time * peak) if n.time else 0.0
            est = 100 * n.estimated_time / n.time if n.time else 0.0
            name = ("  " * d + n.name)[:56]
            lines.append(f"{name:<56} {n.time * 1e6:>12.1f} {100 * n.time / total:>6.1f}% "
                         f"{mfu:>5.1f}% {est:>5.0f}%")
        return "\n".join(lines)

    # -- outputs ------------------------------------------------------------------------
    def trace_events(self, instructions: str = "first") -> list[dict]:
        """Chrome/Perfetto trace events: the hierarchy as nested slices on one track
        (model, modules, ops, kernels) and, for `instructions="first"`, each distinct
        kernel profile's instructions at its first call (its own process); "none" or
        "all"."""
        from ..profile.perfetto import trace_events
        ev = [{"ph": "M", "name": "process_name", "pid": 1, "tid": 0,
               "args": {"name": f"model on one NeuronCore ({self.chip.name})"}},
              {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1,
               "args": {"name": "model / module / op / kernel"}}]
        seen: set = set()
        pid = 100
        for _, n in self.root.walk():
            if n.time <= 0:
                continue
            args = {"kind": n.kind, "flops": n.flops, "hbm_bytes": n.hbm_bytes}
            if n.kind == "kernel" and n.charge.estimate:
                args["estimate"] = n.charge.note
            ev.append({"ph": "X", "name": n.name, "cat": n.kind, "pid": 1, "tid": 1,
                       "ts": n.start * 1e6, "dur": n.time * 1e6, "args": args})
            prof = n.charge.profile if n.kind == "kernel" else None
            if prof is None or instructions == "none":
                continue
            if instructions == "first" and id(prof) in seen:
                continue
            seen.add(id(prof))
            pid += 1
            inner, _ = trace_events(prof)
            for e in inner:
                e = dict(e, pid=pid)
                if "ts" in e:
                    e["ts"] = e["ts"] + n.start * 1e6
                if e.get("name") == "process_name":
                    e["args"] = {"name": f"{n.name} at {n.start * 1e6:.1f} us"}
                ev.append(e)
        return ev

    def write_perfetto(self, path, instructions: str = "first") -> str:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"traceEvents": self.trace_events(instructions),
                                    "displayTimeUnit": "ns"}))
        return str(path)

    def write_html(self, path) -> str:
        """A collapsible tree (HTML <details>, the model's top three levels open) with
        time shares, MFU and the share of each node's time that is estimated."""
        total = self.total_time or 1.0
        peak = self.chip.core.tensor.peak_bf16_flops

        def row(n):
            mfu = 100 * n.flops / (n.time * peak) if n.time else 0.0
            est = (f", {100 * n.estimated_time / n.time:.0f}% estimated"
                   if n.estimated_time else "")
            note = (f" <i>({html.escape(n.charge.note)})</i>"
                    if n.kind == "kernel" and n.charge.estimate else "")
            bar = f'<span class="bar" style="width:{max(1, 200 * n.time / total):.0f}px"></span>'
            return (f"{bar} <b>{html.escape(n.name)}</b> [{n.kind}] "
                    f"{n.time * 1e6:.1f} us ({100 * n.time / total:.1f}%), MFU {mfu:.1f}%"
                    f"{est}{note}")

        def node(n, depth=0):
            if not n.children:
                return f"<div class='leaf'>{row(n)}</div>"
            inner = "".join(node(c, depth + 1) for c in n.children)
            open_ = " open" if depth < 3 and n.kind in ("model", "module") else ""
            return f"<details{open_}><summary>{row(n)}</summary>{inner}</details>"

        by_op = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{c}</td><td>{t * 1e6:.1f}</td>"
            f"<td>{100 * t / total:.1f}%</td></tr>" for k, c, t, _, _ in self.by_op())
        doc = f"""<!doctype html><meta charset="utf-8"><title>trnsim model profile</title>
<style>body{{font:13px sans-serif}} details{{margin-left:1.2em}} .leaf{{margin-left:2.4em}}
.bar{{display:inline-block;height:.7em;background:#4a7}} td{{padding:0 .6em}}</style>
<h1>Model on one NeuronCore ({html.escape(self.chip.name)}): {self.total_time * 1e3:.3f} ms</h1>
<p>{100 * self.estimated_share:.1f}% of the time is charged by roofline estimates
(operations without a library kernel); the rest by simulated kernels.</p>
{node(self.root)}
<h2>By operation</h2><table><tr><th>op</th><th>calls</th><th>us</th><th>share</th></tr>
{by_op}</table>"""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc)
        return str(path)

    def save(self, directory) -> dict:
        d = pathlib.Path(directory)
        return {"trace": self.write_perfetto(d / "model_trace.json"),
                "report": self.write_html(d / "model_report.html")}
