"""Does ``fsrt bench`` reproduce itself? Two runs of the same sweep into separate databases, compared.

Runs ``fsrt bench [ARGS]`` (default: the defaults of ``make bench``) twice, one after the other,
each into a fresh folder and database, then reruns the first (which must resume in seconds).
Prints per point the ratio of the two figures (mean and worst |log ratio|), the common shift all
points share (the machine's speed between the runs) and the deviation left around it, and compares the
conclusions the two reports draw: the best predictor of latency per runtime, the fastest runtime
per model and the fastest strategy at the largest s per runtime, and the run-vs-run claim the report
makes of the pair (the geometric mean of all matched points' ratios with its interval; two runs of
one sweep on one machine must not read as resolved, however many points they share; the interval
the independent-errors rule would give is printed beside it). A conclusion is *identical*
(same answer, both resolved), *unresolved in both*, *one-sided* (resolved in one run only, same
leader) or *contradictory* (both resolved, different answers: the failure this guards against).
Each run's conclusions are drawn as its report draws them, with the machine's movement between runs
that its database holds (``fsrt.bench.machine_history``; both runs and every earlier run on the
machine feed it), which is printed beside the run-vs-run claim.
It also recomputes every figure from the two runs' stored windows with other statistics
(``dev/statistic_choice.py``), to show how the choice of statistic alone changes the agreement.

    python dev/bench_repeatability.py                    # the default sweep, twice
    python dev/bench_repeatability.py --json -- EfficientNet-B0 --strategy dwr,w
    python dev/bench_repeatability.py --quick            # smoke: RegNetX-200MF at 32 px, s=1,2
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devcli import parser
from statistic_choice import compare, kept_windows

from fsrt.bench import analysis
from fsrt.bench.store import Store

BIN = Path(sys.executable).parent
QUICK = ["RegNetX-200MF", "--resolution", "32", "--strategy", "w,dwr", "--sweep", "s=1,2", "--runtimes", "eager",
         "--precision", "fp32", "--threads", "1", "--measure-s", "0.02", "--warmup-s", "0.05", "--max-rounds", "7",
         "--no-report"]


def run_bench(args: list[str], folder: Path) -> tuple[float, dict]:
    """One ``fsrt bench`` into ``folder``: (wall seconds, its --json document)."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "fsrt"), "bench", *args, "--out", str(folder / "bench"), "--db",
                           str(folder / "fsrt.db"), "--json"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fsrt bench failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t0, json.loads(proc.stdout)


def run_evidence(db: Path, run_id: int):
    """A run's points, windows and the machine's movement between runs its database holds (as the report reads them)."""
    from fsrt.bench.machine_history import SETTING, BetweenRuns

    with Store(db) as st:
        pts = st.run_points(run_id)
        mid = st.run(run_id)["machine_id"]
        wins = st.windows(mid, sorted({p.mkey for p in pts if p.mkey}))
        return pts, wins, BetweenRuns.from_dict(st.setting(mid, SETTING))


def conclusions(db: Path, run_id: int) -> dict[tuple, tuple[str, bool]]:
    """Every conclusion of a run: key -> (answer, resolved)."""
    from fsrt.bench.conclusions import summarize

    pts, wins, between = run_evidence(db, run_id)
    movement = between.point_sd if between else None
    a = summarize(pts, wins, movement=movement)
    out: dict[tuple, tuple[str, bool]] = {}
    for series, row in a["best_predictors"].items():
        out[("best predictor", series)] = (row["metric"], row["resolved"])
    for row in a["ranking"]:
        out[("fastest runtime", row["model"], row["batch"])] = (row["fastest"], row["resolved"])
    labels = analysis.series_labels(pts)
    for series in sorted(set(labels.values())):
        for row in analysis.fastest_strategy(pts, labels, series, wins, movement):
            out[("fastest strategy", series, row["base"], row["s"])] = (row["fastest"], row["resolved"])
    return out


def run_vs_run(first: tuple[Path, int], second: tuple[Path, int]) -> dict:
    """The report's claim about the two runs (``fsrt report`` of both), and what the
    independent-errors rule would have said of the same matched points."""
    from fsrt.bench.uncertainty import Interval, geomean_ratio

    pts, wins, between = zip(*(run_evidence(db, run_id) for db, run_id in (first, second)))
    level_sd = between[1].level_sd if between[1] else None  # the machine's movement as the later run knows it
    cmp = analysis.compare([("first", pts[0]), ("second", pts[1])], same_machine=True, level_sd=level_sd)
    ivs = [Interval(**r["ratio_cis"][1]) for r in cmp["rows"] if r["ratio_cis"][1] and r["ratio_cis"][1]["lo"]]
    old = geomean_ratio(ivs, shared_errors=False)
    return {"claim": cmp["summary"][0], "between_runs": [b.to_dict() if b else None for b in between],
            "independent_rule": old.to_dict() if old else None,
            "independent_rule_resolved": bool(old and old.excludes(1.0))}


def classify(a: tuple[str, bool], b: tuple[str, bool]) -> str:
    """How two runs' versions of one conclusion relate."""
    if a[1] and b[1]:
        return "identical" if a[0] == b[0] else "contradictory"
    if not a[1] and not b[1]:
        return "unresolved in both"
    return "one-sided" if a[0] == b[0] else "one-sided, other leader"


def common_shift(rows: list[dict]) -> dict:
    """The machine's speed change between the runs, and what is left without it: the median ratio
    second / first over all points, and the mean and worst |log ratio| around that median. A
    shift every point shares (the VM was slower during one run) changes absolute figures but
    none of a run's comparisons; the residual is how far the runs' structure differs."""
    if not rows:
        return {"common_shift": None, "mean_abs_log_residual": None, "worst_abs_log_residual": None}
    logs = [math.log(r["ratio"]) for r in rows]
    mid = statistics.median(logs)
    residual = [abs(x - mid) for x in logs]
    return {"common_shift": math.exp(mid), "mean_abs_log_residual": sum(residual) / len(residual),
            "worst_abs_log_residual": max(residual), "points_slower_in_second": sum(x > 0 for x in logs)}


def compare_points(p1: list[dict], p2: list[dict]) -> dict:
    """Per point ratio of the two runs' figures."""
    key = lambda p: (p["model"], p["strategy"], p["s"], p["runtime"], p["precision"], p["batch"])  # noqa: E731
    second = {key(p): p for p in p2 if p["latency_ms"]}
    rows = []
    seen = set()
    for p in p1:
        k = key(p)
        q = second.get(k)
        mk = (p["model"], p["runtime"], p["precision"], p["batch"])  # the base model once, not per strategy
        if not p["latency_ms"] or q is None or mk in seen:
            continue
        seen.add(mk)
        rows.append({"model": p["model"], "runtime": p["runtime"], "precision": p["precision"],
                     "first_ms": p["latency_ms"],
                     "second_ms": q["latency_ms"], "ratio": q["latency_ms"] / p["latency_ms"],
                     "first_ci": [p["latency_lo_ms"], p["latency_hi_ms"]],
                     "second_ci": [q["latency_lo_ms"], q["latency_hi_ms"]]})
    logs = [abs(math.log(r["ratio"])) for r in rows]
    return {"points": rows, "mean_abs_log_ratio": sum(logs) / len(logs) if logs else None,
            "worst_abs_log_ratio": max(logs, default=None), **common_shift(rows),
            "overlapping_intervals": sum(1 for r in rows if None not in r["first_ci"] + r["second_ci"]
                                         and r["first_ci"][0] <= r["second_ci"][1]
                                         and r["second_ci"][0] <= r["first_ci"][1])}


def main(argv: list[str] | None = None) -> dict:
    """Run the sweep twice (and resume once) and print (or return) the comparison."""
    ap = parser(__doc__)
    ap.add_argument("--keep", type=Path, default=None, help="keep both runs' folders here")
    ap.add_argument("bench_args", nargs="*", help="arguments for fsrt bench (after --)")
    args = ap.parse_args(argv)
    bench_args = QUICK if args.quick else args.bench_args
    root = args.keep or Path(tempfile.mkdtemp(prefix="fsrt-repeat-"))
    try:
        t1, d1 = run_bench(bench_args, root / "first")
        t2, d2 = run_bench(bench_args, root / "second")
        t_resume, d3 = run_bench(bench_args, root / "first")
        resumed = [p["latency_ms"] for p in d3["points"]] == [p["latency_ms"] for p in d1["points"]]
        c1 = conclusions(root / "first" / "fsrt.db", d1["run_id"])
        c2 = conclusions(root / "second" / "fsrt.db", d2["run_id"])
        by_statistic = compare(kept_windows(root / "first" / "fsrt.db"), kept_windows(root / "second" / "fsrt.db"))
        runs = run_vs_run((root / "first" / "fsrt.db", d1["run_id"]), (root / "second" / "fsrt.db", d2["run_id"]))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    pts = compare_points(d1["points"], d2["points"])
    verdicts = {" / ".join(map(str, k)): {"first": c1[k], "second": c2[k], "verdict": classify(c1[k], c2[k])}
                for k in c1 if k in c2}
    counts: dict[str, int] = {}
    for v in verdicts.values():
        counts[v["verdict"]] = counts.get(v["verdict"], 0) + 1
    doc = {"args": bench_args, "seconds": {"first": t1, "second": t2, "resume": t_resume}, "resumed": resumed,
           "threads": [d1["threads"], d2["threads"]], **pts, "conclusions": verdicts, "verdict_counts": counts,
           "run_vs_run": runs,
           "statistics": by_statistic}
    if args.json:
        print(json.dumps(doc, indent=2))
        return doc
    for r in pts["points"]:
        print(f"{r['model']:28s} {r['runtime']:9s} {r['precision']:5s} {r['first_ms']:8.3f} {r['second_ms']:8.3f}"
              f"  x{r['ratio']:.4f}")
    print(f"mean |log ratio| {100 * pts['mean_abs_log_ratio']:.2f}%, worst {100 * pts['worst_abs_log_ratio']:.2f}%, "
          f"intervals overlap on {pts['overlapping_intervals']} of {len(pts['points'])} points")
    print(f"common shift second / first x{pts['common_shift']:.4f} ({pts['points_slower_in_second']} of "
          f"{len(pts['points'])} points slower in the second run); around it: mean "
          f"{100 * pts['mean_abs_log_residual']:.2f}%, worst {100 * pts['worst_abs_log_residual']:.2f}%")
    for k, v in verdicts.items():
        print(f"{k}: {v['first']} vs {v['second']}: {v['verdict']}")
    old = runs["independent_rule"]
    print(f"run vs run, as the report says it: {runs['claim']} (the independent-errors rule: "
          f"{old['value']:.3f}, 95% interval {old['lo']:.3f}-{old['hi']:.3f}, "
          f"{'resolved' if runs['independent_rule_resolved'] else 'not resolved'})" if old else runs["claim"])
    for name, row in by_statistic.items():
        if row["mean_abs_log_ratio"] is None:  # no measurement in common (e.g. other thread counts)
            continue
        print(f"figures recomputed as {name}: mean |log ratio| {100 * row['mean_abs_log_ratio']:.2f}%, "
              f"worst {100 * row['worst_abs_log_ratio']:.2f}%")
    print(f"verdicts: {counts}; wall: {t1:.0f} s, {t2:.0f} s, resume {t_resume:.1f} s (reused: {resumed}); "
          f"threads {d1['threads']}, {d2['threads']}")
    return doc


if __name__ == "__main__":
    main()
