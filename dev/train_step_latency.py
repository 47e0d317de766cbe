"""Training-step latency against flops, params and activations, next to inference, on the same models.

Runs ``fsrt bench --mode both`` into a fresh folder and database (default: RegNetY-400MF, strategies
dwr,dWr,w, s=1..4, eager only, 128 px, training batch 32, inference batch 1), then prints, per
metric, Pearson r of inference latency and of the training step (and of its forward and backward
parts) with 95% bootstrap intervals, and the fitted log-log exponents, as the report's "Inference
vs training" section computes them (``fsrt.bench.train_analysis``); then each training step's
forward/backward split and peak memory. The machine's load average at start and end is recorded:
on a shared machine read the intervals, not the figures alone.

    python dev/train_step_latency.py                    # the sweep above (minutes on 2 cores)
    python dev/train_step_latency.py --json --out runs/train-latency -- --max-rounds 10
    python dev/train_step_latency.py --quick --json     # smoke: RegNetX-200MF at 32 px, batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
DEFAULT = ["RegNetY-400MF", "--strategy", "dwr,dWr,w", "--sweep", "s=1..4", "--resolution", "128", "--runtimes",
           "eager", "--threads", "1", "--precision", "fp32"]
QUICK = ["RegNetX-200MF", "--resolution", "32", "--strategy", "w", "--sweep", "s=1,2,4", "--runtimes", "eager",
         "--precision", "fp32", "--threads", "1", "--batch", "4", "--measure-s", "0.02", "--warmup-s", "0.05",
         "--max-rounds", "6"]


def run_bench(args: list[str], folder: Path) -> tuple[float, dict]:
    """``fsrt bench --mode both`` into ``folder``: (wall seconds, its --json document)."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(BIN / "fsrt"), "bench", "--mode", "both", *args, "--out", str(folder / "bench"),
                           "--db", str(folder / "fsrt.db"), "--json"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"fsrt bench failed: {proc.stderr.strip()[-800:]}")
    return time.perf_counter() - t0, json.loads(proc.stdout)


def tables(db: Path, run_id: int) -> dict:
    """The side-by-side rows, the step split and the summary sentences of a run (from the store)."""
    from fsrt.bench import analysis, train_analysis
    from fsrt.bench.store import Store

    with Store(db) as st:
        pts = st.run_points(run_id)
    a = train_analysis.analyze(pts, analysis.series_labels(pts))
    by_metric: dict[str, dict] = {}
    for r in a["infer_vs_train"]:
        row = by_metric.setdefault(f"{r['metric']} ({r['train_series']})", {
            "metric": r["metric"], "series": f"{r['infer_series']} / {r['train_series']}", "n": r["n"],
            "infer_r": [r["infer_r"], r["infer_r_lo"], r["infer_r_hi"]],
            "infer_k": [r["infer_k"], r["infer_k_lo"], r["infer_k_hi"]]})
        key = {"latency": "train", "forward": "forward", "backward": "backward", "peak memory": "memory"}[r["quantity"]]
        row[f"{key}_r"] = [r["train_r"], r["train_r_lo"], r["train_r_hi"]]
        row[f"{key}_k"] = [r["train_k"], r["train_k_lo"], r["train_k_hi"]]
        if key == "train":
            row["r_diff"] = [r["r_diff"], r["r_diff_lo"], r["r_diff_hi"]]
        if key == "memory":
            row["infer_memory_r"] = [r["infer_r"], r["infer_r_lo"], r["infer_r_hi"]]
    return {"table": list(by_metric.values()), "split": a["train_split"], "summary": a["summary"]}


def _ci(v: list | None) -> str:
    if not v or v[0] is None:
        return "-"
    return f"{v[0]:.3f}" + (f" [{v[1]:.3f}, {v[2]:.3f}]" if v[1] is not None else "")


def main() -> None:
    """Command-line entry: run the sweep and print the table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny sweep (smoke test)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--out", type=Path, default=None, help="keep the run folder and database here")
    ap.add_argument("bench_args", nargs="*", help="more fsrt bench arguments after -- (a repeated option wins)")
    args = ap.parse_args()
    bench_args = [*(QUICK if args.quick else DEFAULT), *args.bench_args]
    if args.quick:
        bench_args = [*bench_args, "--no-report"]
    folder = args.out or Path(tempfile.mkdtemp(prefix="fsrt-train-latency-"))
    load0 = os.getloadavg()
    try:
        wall, doc = run_bench(bench_args, folder)
        out = {"command": ["fsrt", "bench", "--mode", "both", *bench_args], "wall_s": round(wall, 1),
               "cpus": os.cpu_count(), "load_avg_1m": {"start": load0[0], "end": os.getloadavg()[0]},
               "unavailable": doc["unavailable"], "folder": str(args.out) if args.out else "(removed; --out keeps it)",
               "statuses": {s: sum(1 for p in doc["points"] if p["status"] == s)
                            for s in sorted({p["status"] for p in doc["points"]})},
               **tables(folder / "fsrt.db", doc["run_id"])}
    finally:
        if args.out is None:  # a temporary run folder holds hundreds of MB of graphs: do not leave it in /tmp
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{' '.join(out['command'])}\n{out['wall_s']} s on {out['cpus']} CPUs, load average "
          f"{out['load_avg_1m']['start']:.1f} -> {out['load_avg_1m']['end']:.1f}; folder {out['folder']}")
    print(f"\n{'metric':<8}{'inference r':>26}{'training step r':>26}{'train - infer r':>26}{'inference k':>26}"
          f"{'training k':>26}")
    for r in out["table"]:
        print(f"{r['metric']:<8}{_ci(r['infer_r']):>26}{_ci(r.get('train_r')):>26}{_ci(r.get('r_diff')):>26}"
              f"{_ci(r['infer_k']):>26}{_ci(r.get('train_k')):>26}")
    print(f"\n{'metric':<8}{'forward r':>26}{'backward+step r':>26}{'train memory r':>26}{'infer memory r':>26}")
    for r in out["table"]:
        print(f"{r['metric']:<8}{_ci(r.get('forward_r')):>26}{_ci(r.get('backward_r')):>26}"
              f"{_ci(r.get('memory_r')):>26}{_ci(r.get('infer_memory_r')):>26}")
    print(f"\n{'model':<28}{'step ms':>10}{'forward':>10}{'backward':>10}{'bwd/fwd':>9}{'peak MiB':>10}")
    for s in out["split"]:
        ratio = f"{s['backward_per_forward']:.2f}" if s["backward_per_forward"] else "-"
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        mem = "-" if s["peak_mem_bytes"] is None else f"{s['peak_mem_bytes'] / 2**20:.0f}"
        print(f"{s['model']:<28}{fmt(s['step_ms']):>10}{fmt(s['forward_ms']):>10}{fmt(s['backward_ms']):>10}"
              f"{ratio:>9}{mem:>10}")
    print()
    for line in out["summary"]:
        print(f"- {line}")


if __name__ == "__main__":
    main()
