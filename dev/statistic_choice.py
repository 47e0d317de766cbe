"""Which statistic makes a figure reproduce? Two runs' stored windows, summarized several ways.

Reads the timing windows that two runs of the same sweep stored (for example the two databases
``dev/bench_repeatability.py --keep DIR`` leaves) and recomputes every point's figure from its kept
windows with each candidate statistic; for each, the mean and worst |log ratio| between the runs.
The calls are the same for every statistic, so the table compares the statistics alone, not two
measurements. This is how fsrt's figure (the interquartile mean of all calls) was chosen.

    python dev/statistic_choice.py DIR/first/fsrt.db DIR/second/fsrt.db
    python dev/statistic_choice.py A.db B.db --json
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from devcli import parser

from fsrt.bench.rounds import Window
from fsrt.bench.stats import interquartile_mean, median, percentile
from fsrt.bench.store import Store

Windows = list[list[float]]


def _pooled(windows: Windows) -> list[float]:
    return sorted(t for w in windows for t in w)


STATISTICS: dict[str, Callable[[Windows], float]] = {
    "interquartile mean of all calls (fsrt)": lambda ws: interquartile_mean(_pooled(ws)),
    "median of all calls": lambda ws: percentile(_pooled(ws), 50),
    "10th percentile of all calls": lambda ws: percentile(_pooled(ws), 10),
    "median over windows of each window's 10th percentile": lambda ws: median([percentile(sorted(w), 10) for w in ws]),
    "median over windows of each window's median": lambda ws: median([percentile(sorted(w), 50) for w in ws]),
}


def kept_windows(db: Path) -> dict[str, Windows]:
    """Every measured point's kept windows (call times), by measurement key, from every run stored."""
    wins: dict[str, list[Window]] = {}
    with Store(db) as st:
        for machine_id in st.machines():
            mkeys = sorted({p.mkey for p in st.machine_points(machine_id) if p.measured and p.mkey})
            wins.update(st.windows(machine_id, mkeys))
    return {k: [list(w.times_ms) for w in ws if not w.dropped] for k, ws in wins.items() if ws}


def compare(first: dict[str, Windows], second: dict[str, Windows]) -> dict[str, dict]:
    """Per statistic: mean and worst |log ratio| over the points both runs measured."""
    common = sorted(set(first) & set(second))
    out = {}
    for name, stat in STATISTICS.items():
        logs = [abs(math.log(stat(second[k]) / stat(first[k]))) for k in common]
        out[name] = {"points": len(logs), "mean_abs_log_ratio": sum(logs) / len(logs) if logs else None,
                     "worst_abs_log_ratio": max(logs, default=None)}
    return out


def main(argv: list[str] | None = None) -> dict:
    """Print (or return) the comparison of the statistics on two databases."""
    ap = parser(__doc__)
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    args = ap.parse_args(argv)
    doc = compare(kept_windows(args.first), kept_windows(args.second))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name, row in sorted(doc.items(), key=lambda kv: kv[1]["mean_abs_log_ratio"] or 0):
            mean, worst = 100 * row["mean_abs_log_ratio"], 100 * row["worst_abs_log_ratio"]
            print(f"{name:55s} mean {mean:5.2f}%  worst {worst:5.2f}%  ({row['points']} points)")
    return doc


if __name__ == "__main__":
    main()
