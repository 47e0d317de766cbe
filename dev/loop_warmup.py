"""Does a long-running process time faster than a fresh one? A bare loop after a short and a long warm-up.

fsrt's workers have been running for tens of seconds (preparing, checking, other windows) when
their windows are timed; a tool's fresh process is timed after about a second. This script times
the same bare synchronous loop (``dev/bench_fidelity.py``'s, ONNX Runtime or OpenVINO) in fresh
processes after a short and after a long warm-up, alternating in a random order per pair, and
reports the median ratio long / short over the pairs (the interquartile mean of each loop's
calls).

    python dev/loop_warmup.py GRAPH.onnx --runtime openvino --pairs 5 --long-s 30
    python dev/loop_warmup.py --quick --json       # smoke: exports a tiny graph, 1 pair, 0.5 s vs 1 s
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_fidelity import BIN, bare_loop
from devcli import parser


def tiny_graph(folder: Path) -> Path:
    """A small exported graph for the smoke setting."""
    path = folder / "tiny.onnx"
    subprocess.run([str(BIN / "fsrt"), "export", "RegNetX-200MF", "-r", "32", "-o", str(path)], check=True,
                   capture_output=True, text=True)
    return path


def main(argv: list[str] | None = None) -> dict:
    """Alternate short and long warm-ups and print (or return) the ratios."""
    ap = parser(__doc__)
    ap.add_argument("graph", type=Path, nargs="?")
    ap.add_argument("--runtime", choices=["ort", "openvino"], default="openvino")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per loop")
    ap.add_argument("--short-s", type=float, default=1.0)
    ap.add_argument("--long-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.graph, args.pairs, args.seconds, args.short_s, args.long_s = tiny_graph(Path(tmp)), 1, 0.5, 0.5, 1.0
        if args.graph is None:
            ap.error("a graph is needed (or --quick)")
        rng, rows = random.Random(0), []
        for _ in range(args.pairs):
            order = ["short", "long"]
            rng.shuffle(order)
            row = {k: bare_loop(args.runtime, args.graph, args.threads, args.seconds,
                                args.short_s if k == "short" else args.long_s)["iqm"] for k in order}
            rows.append(row)
            if not args.json:
                print(f"short {row['short']:.3f} ms, long {row['long']:.3f} ms", flush=True)
    ratios = [r["long"] / r["short"] for r in rows]
    doc = {"runtime": args.runtime, "short_s": args.short_s, "long_s": args.long_s, "pairs": rows,
           "median_ratio_long_over_short": statistics.median(ratios), "ratios": ratios}
    summary = f"long / short warm-up: median {doc['median_ratio_long_over_short']:.3f} (ratios " + \
        ", ".join(f"{r:.3f}" for r in ratios) + ")"
    print(json.dumps(doc, indent=2) if args.json else summary)
    return doc


if __name__ == "__main__":
    main()
