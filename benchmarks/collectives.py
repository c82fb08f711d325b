"""docs/collectives.md, section "bench": all-reduce and all-gather latency and bus
bandwidth from 1 KiB to 1 GiB on 2, 16 and 64 ranks of the Trn2 UltraServer torus and
the Trn3 64-chip NeuronSwitch UltraServer (and 144 ranks on the Trn3 Gen2 UltraServer),
the Trn3-vs-Trn2 latency ratios next to the claims, and the published nccom-test
figures next to the predicted ones. Every figure is a `trnsim.profile_ranks` run
(numerics off) of a small NKI kernel: DMA the input into a private-HBM buffer, the
collective, return.

    python -m benchmarks.collectives [--out docs/collectives.md]
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "collectives.md"
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
SIZES = [KiB << (2 * i) for i in range(11)]           # 1 KiB, 4 KiB, ... 1 GiB
KINDS = ("all_reduce", "all_gather")
TRN2, TRN3 = "trn2-ultraserver", "trn3-ultraserver-64"
FABRICS = {2: (TRN2, TRN3), 16: (TRN2, TRN3), 64: (TRN2, TRN3),
           144: ("trn3-ultraserver-144",)}
CLAIM = {"all_gather": 6.0, "all_reduce": 2.0}         # seed-claims.md: "up to" Trn2/Trn3
NCCOM_TOPOLOGIES = ("trn2-16", "trn1-16")

# nccom-test examples (aws-neuron-sdk tools/neuron-sys-tools/nccom-test.rst, via
# hardware.md "Collectives" and coll_spec.md §3): (label, kind, ranks, size as nccom-test
# counts it, dtype, time us, busbw GB/s or None)
NCCOM = [("-r 2 allr", "all_reduce", 2, s, "float32", t, bw) for s, t, bw in (
    (KiB, 58, None), (4 * KiB, 58, None), (16 * KiB, 58, None), (64 * KiB, 58, None),
    (256 * KiB, 60, None), (MiB, 68, 14.36), (4 * MiB, 107, 36.51), (16 * MiB, 332, 47.06),
    (64 * MiB, 1214, 51.48), (256 * MiB, 4750, 52.63), (GiB, 18930, 52.83))] + [
    ("-r 2 allr", "all_reduce", 2, 32 * MiB, "uint8", 768, 40.69)] + [
    ("-r 32 allg (newer)", "all_gather", 32, s, "float32", t, bw) for s, t, bw in (
        (KiB, 6.16, 0.16), (8 * KiB, 6.48, 1.23), (64 * KiB, 8.17, 7.77),
        (512 * KiB, 23.16, 21.93))] + [
    ("-r 32 allg (older)", "all_gather", 32, s, "float32", t, None) for s, t in (
        (KiB, 151), (8 * KiB, 149), (64 * KiB, 150), (512 * KiB, 179))] + [
    ("-r 8 allg", "all_gather", 8, s, "float32", t, None) for s, t in (
        (KiB, 10.0), (8 * KiB, 10.22), (64 * KiB, 11.31), (512 * KiB, 14.83))]
FITTED = ("-r 32 allg (newer)", KiB)   # launch_overhead_ns is fitted to it on trn2-16


def _kernels():
    import trnsim.nki.collectives as ncc
    import trnsim.nki.isa as nisa
    import trnsim.nki.language as nl

    def staged(x):
        src = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.private_hbm)
        nisa.dma_copy(dst=src, src=x)
        return src

    def all_reduce(x, replica_group):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        ncc.all_reduce(srcs=[staged(x)], dsts=[out], replica_group=replica_group, op=nl.add)
        return out

    def all_gather(x, replica_group):
        n = len(replica_group.replica_groups[0])
        out = nl.ndarray((n * x.shape[0], x.shape[1]), dtype=x.dtype, buffer=nl.shared_hbm)
        ncc.all_gather(srcs=[staged(x)], dsts=[out], replica_group=replica_group,
                       collective_dim=0)
        return out

    return {"all_reduce": all_reduce, "all_gather": all_gather}


def measure(kind, ranks, size, topology, dtype="float32") -> dict:
    """One collective of `size` bytes as nccom-test counts it (all_gather: the total
    output, each rank contributing size / ranks, rounded up to whole elements)."""
    import trnsim
    import trnsim.nki.collectives as ncc
    dt = np.dtype(dtype)
    per_rank = size if kind == "all_reduce" else -(-size // ranks)
    x = np.zeros((1, max(1, -(-per_rank // dt.itemsize))), dt)
    rg = ncc.ReplicaGroup([list(range(ranks))])
    c0 = time.process_time()
    prof = trnsim.profile_ranks(_kernels()[kind], world_size=ranks, topology=topology,
                                numerics=False, per_rank_inputs=[((x, rg), {})] * ranks)
    (c,) = prof.collectives
    return {"kind": kind, "ranks": ranks, "size": size, "topology": topology,
            "us": c.duration / 1e3, "busbw": c.bus_bandwidth, "algorithm": c.algorithm,
            "cpu_s": time.process_time() - c0}


def run(log=print) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    sweep = []
    for kind in KINDS:
        for ranks, topos in FABRICS.items():
            for topo in topos:
                for size in SIZES:
                    sweep.append(measure(kind, ranks, size, topo))
                log(f"  {kind} {ranks} ranks {topo}: {sweep[-1]['us']:.0f} us at 1 GiB")
    nccom = []
    for row in NCCOM:
        label, kind, ranks, size, dtype, _, _ = row
        nccom.append((row, {t: measure(kind, ranks, size, t, dtype) for t in NCCOM_TOPOLOGIES}))
    log(f"  nccom-test rows: {len(nccom)}")
    return {"sweep": sweep, "nccom": nccom, "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0}


# -- rendering ---------------------------------------------------------------------------
def _size(b) -> str:
    for unit, n in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if b >= n and b % n == 0:
            return f"{b // n} {unit}"
    return f"{b} B"


def _us(x) -> str:
    return f"{x:,.1f}" if x < 1000 else f"{x:,.0f}"


def stamp() -> str:
    """'on <UTC date> at commit <hash>' for a generated section."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(  # (docs/ holds what the benches write, this one too)
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
            cwd=ROOT, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev, dirty = "unknown", ""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"on {when} at commit {rev}{' (with uncommitted changes)' if dirty else ''}"


def replace_section(path, name: str, text: str) -> None:
    """Put `text` between `<!-- begin generated: name -->` and its end marker in
    `path` (appended with its markers if absent): the rest of the file is hand-written."""
    path = pathlib.Path(path)
    begin, end = f"<!-- begin generated: {name} -->", f"<!-- end generated: {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else \
        old.rstrip() + ("\n\n" if old else "") + block + "\n"
    path.write_text(new)


def _lookup(rows) -> dict:
    return {(r["kind"], r["ranks"], r["topology"], r["size"]): r for r in rows}


def _sweep_table(rows, kind) -> list:
    by = _lookup(rows)
    L = ["| Ranks | Size | Trn2 torus (us) | busbw (GB/s) | algorithm | Trn3 switch (us) "
         "| busbw (GB/s) | algorithm | Trn2 / Trn3 |",
         "|---:|---:|---:|---:|---|---:|---:|---|---:|"]
    for ranks, topos in FABRICS.items():
        label = ranks if TRN2 in topos else f"{ranks} ({topos[-1]})"
        for size in SIZES:
            trn2 = by.get((kind, ranks, TRN2, size))
            trn3 = by[(kind, ranks, topos[-1], size)]
            cells = [[_us(r["us"]), f"{r['busbw']:.1f}", r["algorithm"]] if r else ["", "", ""]
                     for r in (trn2, trn3)]
            ratio = f"{trn2['us'] / trn3['us']:.2f}x" if trn2 else ""
            L.append(f"| {label} | {_size(size)} | {' | '.join(cells[0] + cells[1])} "
                     f"| {ratio} |")
    return L


def _ratio_summary(rows) -> list:
    by = _lookup(rows)
    L = ["| Collective | Ranks | Trn2/Trn3 latency: smallest | largest (at size) | Claimed "
         "| Largest / claim |",
         "|---|---:|---:|---:|---|---:|"]
    for kind in KINDS:
        for ranks, topos in FABRICS.items():
            if TRN2 not in topos:
                continue
            r = {s: by[(kind, ranks, TRN2, s)]["us"] / by[(kind, ranks, TRN3, s)]["us"]
                 for s in SIZES}
            best = max(r, key=r.get)
            L.append(f"| {kind} | {ranks} | {min(r.values()):.2f}x | {r[best]:.2f}x "
                     f"({_size(best)}) | up to {CLAIM[kind]:.0f}x | {r[best] / CLAIM[kind]:.2f} |")
    return L


def _nccom_table(nccom) -> list:
    t_main, t_alt = NCCOM_TOPOLOGIES
    L = [f"| nccom-test | Size | Dtype | Published (us) | Published busbw (GB/s) "
         f"| {t_main} (us) | busbw (GB/s) | algorithm | {t_main} / published "
         f"| {t_alt} (us) | {t_alt} / published |",
         "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for (label, kind, ranks, size, dtype, pub, pub_bw), got in nccom:
        a, b = got[t_main], got[t_alt]
        note = " (fitted)" if (label, size) == FITTED else ""
        L.append(f"| {label} | {_size(size)} | {dtype} | {pub:,} | "
                 f"{'' if pub_bw is None else pub_bw} | {_us(a['us'])} | {a['busbw']:.1f} "
                 f"| {a['algorithm']} | {a['us'] / pub:.2f}{note} | {_us(b['us'])} "
                 f"| {b['us'] / pub:.2f} |")
    return L


def render(res) -> str:
    rows = res["sweep"]
    L = ["## Collectives bench: all-reduce and all-gather", "",
         f"Generated by `make bench` (`python -m benchmarks.collectives`) {stamp()}; do not "
         "edit by hand. Each figure is `trnsim.profile_ranks` (numerics off) of a kernel "
         "that DMAs its fp32 input into a private-HBM buffer and runs the collective into a "
         "shared-HBM output; the latency is the collective's (from the moment the last "
         "rank reaches it to the end of its transfer), as nccom-test times it. Size as "
         "nccom-test counts it: all-reduce the buffer, all-gather the total output (each "
         "rank contributes size / ranks, rounded up to whole fp32 elements at 144 ranks). "
         "Bus bandwidth: nccom-test's (all-reduce 2(n-1)/n x size, all-gather (n-1)/n x "
         "size, over the time). Ranks are one per chip (placement fills chips in order: "
         "2 ranks are two x-neighbours of the torus, 16 ranks one 4x4 plane, 64 ranks the "
         "whole 4x4x4 UltraServer); the algorithm is the one the fabric model picks as the "
         "runtime would (fabric/algorithms.py). Trn2 torus: `trn2-ultraserver`; Trn3 "
         "switch: `trn3-ultraserver-64` (`trn3-ultraserver-144` for 144 ranks, which has no "
         "Trn2 counterpart).", ""]
    for kind in KINDS:
        L += [f"### {kind.replace('_', '-')}", ""] + _sweep_table(rows, kind) + [""]
    L += ["### Trn3 vs Trn2 against the claims", "",
          "Trn2 latency over Trn3 latency, same kernel, same ranks, every size of the "
          "sweep (seed-claims.md: \"all-gather latency up to 6x lower, all-reduce up to 2x "
          "lower\"; the claims do not say at which size or rank count).", ""]
    L += _ratio_summary(rows) + [""]
    L += ["### nccom-test: published vs predicted", "",
          "The published `nccom-test` examples (nccom-test.rst, via hardware.md "
          "\"Collectives\"; the docs do not state the instance type and warn that the "
          f"numbers are not up to date). Compared on `{NCCOM_TOPOLOGIES[0]}`, one "
          "trn2.48xlarge (16 chips, 4x4 torus): the instance nccom-test ships on today and "
          "the topology whose launch overhead is fitted to the 32-rank 1 KiB all-gather "
          "(marked fitted: not a check); 32 ranks put 2 ranks on each chip, 2 and 8 ranks "
          f"one per chip. `{NCCOM_TOPOLOGIES[1]}` (Trn1, 2D torus) beside it, because the "
          "older 32-rank all-gather example (~150 us) predates Trn2. Ratio = predicted / "
          "published: 1.00 is a hit, the misses are shown as they come out.", ""]
    L += _nccom_table(res["nccom"]) + [""]
    L += [f"Runtime of this section: {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} CPU s "
          f"({len(rows) + 2 * len(res['nccom'])} profiles)."]
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    res = run(log=lambda s: print(s, flush=True))
    replace_section(args.out, "collectives bench", render(res))
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
