"""docs/collectives.md, section "moe bench": MoE token dispatch and combine
(examples/moe_all_to_all.py, Qwen3-30B-A3B-shaped: 128 experts, top-8, hidden 2048 bf16)
across 16, 64 and 144 ranks, uniform vs Zipf routing, with and without cost-aware
replication of hot experts, on the Trn2 torus and the Trn3 switch.

Each row profiles the two all_to_all_v (dispatch, combine) with `trnsim.profile_ranks`,
numerics on, since only then does a run know the router's counts (a timing-only run
assumes equal slots). The kernels are the example's `exchange_kernel` (HBM to HBM, the
gather and the weighted sum on the host): a run with numerics keeps every rank's SBUF
(tens of MB a rank), which 144 ranks cannot afford; tests/test_moe_all_to_all.py runs
the full kernels. Per-rank receive completion (tail vs median) comes from the same
fabric model (trnsim.fabric.network) with the row's send matrix split into one transfer
per receiving rank, all contending at once.

    python -m benchmarks.moe [--only 16] [--out docs/collectives.md]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .collectives import DOC, replace_section, stamp  # noqa: E402
from .memory import peak_rss_mib  # noqa: E402

# ranks -> (tokens per rank, topologies): a global batch of ~2k tokens; 144 ranks only
# on the Trn3 Gen2 UltraServer
CASES = {16: (128, ("trn2-ultraserver", "trn3-ultraserver-64")),
         64: (32, ("trn2-ultraserver", "trn3-ultraserver-64")),
         144: (16, ("trn3-ultraserver-144",))}
SKEWS = ("uniform", "zipf")


def _example():
    from trnsim.examples import load_example
    return load_example("moe_all_to_all")


def receive_times(topology, counts_bytes) -> np.ndarray:
    """ns from the start of an all_to_all_v until each rank has received its last byte:
    one transfer per receiving rank (its incoming flows), all on the fabric at once."""
    from trnsim.fabric.algorithms import Flow, Plan, Step
    from trnsim.fabric.network import Transfer, simulate
    from trnsim.fabric.topology import load_topology
    n = len(counts_bytes)
    place = load_topology(topology).placement(n)
    group = tuple(range(n))
    transfers = [Transfer(0.0, Plan("all_to_all_v", "direct", group,
                                    [Step([Flow(s, r, float(counts_bytes[s][r]))
                                           for s in group if s != r and counts_bytes[s][r]])],
                                    0.0, 0.0, place), tag=r) for r in group]
    return np.array([res.end_ns for res in simulate(place, transfers)])


def _digest(profile) -> dict:
    (c,) = profile.collectives
    return {"us": c.duration / 1e3, "algorithm": c.algorithm,
            "rank_us": np.array([r["total_time"] for r in profile.summary["per_rank"]]) * 1e6}


def measure(ranks, tokens, topology, skew, replicate) -> dict:
    ex = _example()
    c0 = time.process_time()
    plan, xs, placement, _ = ex.make_case(ranks, tokens, skew, replicate)
    d, c = ex.run(plan, xs, topology, exchange_only=True, keep=_digest)
    rb = plan.recv_bytes()
    sent = plan.counts * plan.hidden * 2
    ranks_us = d["rank_us"] + c["rank_us"]
    tails = {"profile": (float(ranks_us.max()), float(np.median(ranks_us)))}
    for name, matrix in (("dispatch", sent), ("combine", sent.T)):
        t = receive_times(topology, matrix) / 1e3
        tails[name] = (float(t.max()), float(np.median(t)))
    return {"ranks": ranks, "tokens": tokens, "topology": topology, "skew": skew,
            "replicate": replicate, "replicated": int((placement.copies > 1).sum()),
            "skew_ratio": rb.max() / rb.mean(), "max_recv": int(rb.max()),
            "dispatch": d, "combine": c, "tails": tails,
            "cpu_s": time.process_time() - c0,
            "rss_mb": peak_rss_mib()}


def run(only=None, log=print) -> dict:
    """Every row, each in a fresh process (forked): its CPU time and peak RSS are its own."""
    t0 = time.perf_counter()
    rows = []
    ctx = multiprocessing.get_context("fork")
    for ranks, (tokens, topos) in CASES.items():
        if only and ranks != only:
            continue
        for topo in topos:
            for skew in SKEWS:
                for replicate in (False, True):
                    with ctx.Pool(1) as pool:
                        r = pool.apply(measure, (ranks, tokens, topo, skew, replicate))
                    log(f"  {ranks} ranks {topo} {skew} repl={replicate}: dispatch "
                        f"{r['dispatch']['us']:.1f} us, combine {r['combine']['us']:.1f} us, "
                        f"skew {r['skew_ratio']:.2f}x ({r['cpu_s']:.1f} CPU s, "
                        f"peak RSS {r['rss_mb']:.0f} MB)")
                    rows.append(r)
    return {"rows": rows, "wall_s": time.perf_counter() - t0,
            "cpu_s": sum(r["cpu_s"] for r in rows)}


def render(res) -> str:
    ex = _example()
    rows = res["rows"]
    L = ["## MoE all-to-all bench: dispatch and combine", "",
         f"Generated by `make bench` (`python -m benchmarks.moe`) {stamp()}; do not edit "
         "by hand. `examples/moe_all_to_all.py`: Qwen3-30B-A3B-shaped routing "
         f"({ex.EXPERTS} experts, top-{ex.TOP_K}, hidden {ex.HIDDEN} bf16, a token copy is "
         f"{ex.HIDDEN * 2 // 1024} KiB), experts spread over the ranks with "
         "`slots_for(ranks)` slots each (room for every expert plus 12.5%: 9 slots a rank at "
         "16 ranks, 3 at 64, 1 at 144, where 16 ranks hold no expert without replication). "
         "Tokens per rank: 128 at 16 ranks, 32 at 64, 16 at 144 (a global batch of about "
         "2k tokens; chosen so that a 144-rank run with numerics stays under 4 GB). Routing "
         f"uniform or Zipf (s = {ex.ZIPF_S}, hot experts a seeded random set); placement "
         "from a calibration batch, the measured batch drawn anew. Replication: spare "
         "slots to the experts with the largest expected load per copy (cost-aware expert "
         "replication, MLSys 2026; our implementation), a replicated expert's tokens split "
         "over its copies; without it the same load-aware placement, one copy each. "
         "Kernels: the example's `exchange_kernel`, the two all_to_all_v HBM to HBM (the "
         "one-hot gather and the weighted sum on the host: a run with numerics holds every "
         "rank's SBUF; tests/test_moe_all_to_all.py runs the full kernels). "
         "Dispatch / combine: the all_to_all_v's latency in the profile (numerics on: the "
         "real counts), from the last rank's arrival to the end of the transfer; the "
         "combine sends the same rows back. Skew: the largest rank's receive bytes over "
         "the mean. Rank latency: each rank's dispatch kernel plus combine kernel time in "
         "the profiles (staging DMAs included), slowest rank vs the median rank; in the "
         "profile a collective ends on every member when its whole transfer ends, and a "
         "rank that sends more bytes than its DMA engines carry in that time, or whose HBM "
         "stack is busier, ends later. "
         "Receive done: when each rank has received its last byte, from the same fabric "
         "model with the send matrix split into one transfer per receiving rank, all at "
         "once (its tail is the profile's all_to_all_v latency).", "",
         "| Ranks | Topology | Tokens/rank | Routing | Replication | Experts replicated "
         "| Skew (max/mean recv) | Max recv (KiB) | Dispatch (us) | Combine (us) "
         "| Dispatch + combine (us) | Rank latency: tail / median (us) "
         "| Receive done, dispatch: tail / median (us) | Receive done, combine: tail / median "
         "(us) | Profile CPU (s) | Peak RSS (MB) |",
         "|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for r in rows:
        d, c = r["dispatch"]["us"], r["combine"]["us"]
        tails = [f"{t:.1f} / {m:.1f} ({t / m:.2f}x)" for t, m in
                 (r["tails"][k] for k in ("profile", "dispatch", "combine"))]
        L.append(f"| {r['ranks']} | {r['topology']} | {r['tokens']} | {r['skew']} "
                 f"| {'yes' if r['replicate'] else 'no'} | {r['replicated']} "
                 f"| {r['skew_ratio']:.2f}x | {r['max_recv'] / 1024:,.0f} | {d:.1f} | {c:.1f} "
                 f"| {d + c:.1f} | {' | '.join(tails)} | {r['cpu_s']:.1f} "
                 f"| {r['rss_mb']:,.0f} |")
    L += ["", _effects(rows), "",
          f"Runtime of this section: {res['wall_s']:.0f} s wall, {res['cpu_s']:.0f} CPU s "
          "(each row in a process of its own: its profile CPU time and peak RSS)."]
    return "\n".join(L) + "\n"


def _effects(rows) -> str:
    """One sentence per topology: what Zipf costs and what replication gives back."""
    key = {(r["ranks"], r["topology"], r["skew"], r["replicate"]): r for r in rows}
    out = []
    for (ranks, topo, skew, rep), r in key.items():
        if skew != "zipf" or rep:
            continue
        uni, fix = key.get((ranks, topo, "uniform", False)), key.get((ranks, topo, "zipf", True))
        if uni is None or fix is None:
            continue
        tot = lambda x: x["dispatch"]["us"] + x["combine"]["us"]  # noqa: E731
        out.append(f"{ranks} ranks on {topo}: Zipf routing {tot(r) / tot(uni):.2f}x the "
                   f"uniform dispatch + combine time (skew {r['skew_ratio']:.1f}x), "
                   f"replication brings it to {tot(fix) / tot(uni):.2f}x (skew "
                   f"{fix['skew_ratio']:.1f}x).")
    return " ".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", type=int, default=None, help="only this rank count")
    ap.add_argument("--out", default=str(DOC))
    args = ap.parse_args(argv)
    res = run(args.only, log=lambda s: print(s, flush=True))
    replace_section(args.out, "moe bench", render(res))
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
