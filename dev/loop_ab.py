"""Does one condition of a bare loop time differently from another? Alternated A/B in fresh processes.

fsrt's figure sits a few percent below a continuous bare loop of the same call
(``dev/bench_fidelity.py``). This script isolates one difference between the two at a time on
the same bare synchronous loop (``dev/bench_fidelity.py``'s, ONNX Runtime or OpenVINO): each
condition is a warm-up length and, optionally, a burst shape (timed windows of ``window`` seconds,
each after ``gap`` seconds asleep and one untimed call, as a sweep's worker sees them), or
``app=1``: OpenVINO's own ``benchmark_app -api sync`` on the same graph instead of the loop. Pairs
run A and B in fresh processes in a random order; the summary is the median ratio B / A over the
pairs, with its distribution-free 95% interval, of the loops' interquartile means, or of medians
when a side is ``benchmark_app`` (the statistic it prints).

    python dev/loop_ab.py GRAPH.onnx --b warmup=30                  # long-running vs fresh process
    python dev/loop_ab.py GRAPH.onnx --b window=0.1,gap=0.15 --pairs 8   # sweep-like bursts vs continuous
    python dev/loop_ab.py GRAPH.onnx --b app=1 --pairs 20      # OpenVINO's benchmark_app -api sync vs the loop
    python dev/loop_ab.py --quick --json      # smoke: exports a tiny graph, 1 pair of 0.5 s loops
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_fidelity import BIN, bare_loop, benchmark_app
from devcli import parser

from fsrt.bench.stats import median_ci

KEYS = ("warmup", "window", "gap", "app")


def condition(text: str) -> dict[str, float]:
    """``warmup=1,window=0.1,gap=0.15`` -> its settings (warm-up 1 s and no bursts unless given)."""
    cond = {"warmup": 1.0}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in KEYS:
            raise SystemExit(f"unknown condition key {key!r}: use {', '.join(KEYS)}")
        cond[key] = float(value)
    if ("window" in cond) != ("gap" in cond):
        raise SystemExit("a burst needs both window= and gap=")
    return cond


def loop(runtime: str, graph: Path, threads: int, seconds: float, cond: dict[str, float], stat: str) -> float:
    """One bare loop under ``cond`` (or benchmark_app's run): the ``stat`` of its calls in ms."""
    if "app" in cond:
        return benchmark_app(graph, threads, seconds)
    burst = (cond["window"], cond["gap"]) if "window" in cond else None
    return bare_loop(runtime, graph, threads, seconds, cond["warmup"], burst)[stat]


def tiny_graph(folder: Path) -> Path:
    """A small exported graph for the smoke setting."""
    path = folder / "tiny.onnx"
    subprocess.run([str(BIN / "fsrt"), "export", "RegNetX-200MF", "-r", "32", "-o", str(path)], check=True,
                   capture_output=True, text=True)
    return path


def main(argv: list[str] | None = None) -> dict:
    """Alternate conditions A and B and print (or return) the ratios B / A."""
    ap = parser(__doc__)
    ap.add_argument("graph", type=Path, nargs="?")
    ap.add_argument("--runtime", choices=["ort", "openvino"], default="openvino")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per loop")
    ap.add_argument("--a", default="", help="condition A (default: continuous after 1 s of warm-up)")
    ap.add_argument("--b", default="warmup=30", help="condition B, e.g. warmup=30 or window=0.1,gap=0.15")
    args = ap.parse_args(argv)
    conds = {"A": condition(args.a), "B": condition(args.b)}
    stat = "median" if any("app" in c for c in conds.values()) else "iqm"
    if stat == "median" and args.runtime != "openvino":
        ap.error("app=1 (benchmark_app) needs --runtime openvino")
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.graph, args.pairs, args.seconds = tiny_graph(Path(tmp)), 1, 0.5
        if args.graph is None:
            ap.error("a graph is needed (or --quick)")
        rng, rows = random.Random(0), []
        for _ in range(args.pairs):
            order = ["A", "B"]
            rng.shuffle(order)
            row = {k: loop(args.runtime, args.graph, args.threads, args.seconds, conds[k], stat) for k in order}
            rows.append(row)
            if not args.json:
                print(f"A {row['A']:.3f} ms, B {row['B']:.3f} ms", flush=True)
    ratios = [r["B"] / r["A"] for r in rows]
    ci = median_ci(ratios)
    doc = {"runtime": args.runtime, "conditions": conds, "statistic": stat, "pairs": rows, "ratios": ratios,
           "median_ratio_b_over_a": statistics.median(ratios), "ci95": list(ci) if ci else None}
    summary = f"B / A: median {doc['median_ratio_b_over_a']:.3f}" + \
        (f" (95% interval {ci[0]:.3f}-{ci[1]:.3f})" if ci else "") + " over " + ", ".join(f"{r:.3f}" for r in ratios)
    print(json.dumps(doc, indent=2) if args.json else summary)
    return doc


if __name__ == "__main__":
    main()
