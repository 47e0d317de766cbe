"""Does fsrt's figure agree with each runtime's own tool on the same graph?

Alternates, in one run, three measurements of the same ONNX graph (the one fsrt bench exports
and times) at the same thread count and the same statistic (10th percentile of per-call
latency): ``fsrt bench`` (its figure: median over rounds of each window's 10th percentile),
OpenVINO's ``benchmark_app`` (``-hint none -nstreams 1 -nireq 1 -nthreads T -infer_precision
f32 -latency_percentile 10``) and a bare ONNX Runtime ``InferenceSession.run`` loop in a fresh
process. Each alternation gives a ratio fsrt / tool; the script prints their median and range.

    python dev/bench_fidelity.py                      # RegNetY-400MF, 1 thread, 5 alternations
    python dev/bench_fidelity.py --threads 2 --reps 3 --json
    python dev/bench_fidelity.py --quick              # smoke: RegNetX-200MF at 32 px, 1 alternation
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devcli import parser

BIN = Path(sys.executable).parent

ORT_LOOP = """
import sys, time, numpy as np, onnxruntime as ort
path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL; o.log_severity_level = 3
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
x = np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
feed = {i.name: x}
end = time.perf_counter() + 1.0
while time.perf_counter() < end: s.run(None, feed)
ts = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter_ns(); s.run(None, feed); ts.append((time.perf_counter_ns() - t0) / 1e6)
print(np.percentile(ts, 10), np.median(ts), len(ts))
"""


def fsrt_figures(model: str, resolution: int | None, threads: int, work: Path, i: int) -> dict[str, float]:
    """One fresh ``fsrt bench`` measurement (new database, cached graph files) -> runtime: figure ms."""
    cmd = [str(BIN / "fsrt"), "bench", model, "--strategy", "w", "--sweep", "s=1", "--runtimes", "ort,openvino",
           "--precision", "fp32", "--threads", str(threads), "--out", str(work / "bench"), "--db",
           str(work / f"db-{i}.db"), "--no-report", "--json"]
    if resolution:
        cmd += ["--resolution", str(resolution)]
    doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {p["runtime"]: p["latency_ms"] for p in doc["points"] if p["latency_ms"]}


def benchmark_app(graph: Path, threads: int, seconds: float) -> float:
    """OpenVINO's own tool: the 10th percentile it reports, in ms."""
    cmd = [str(BIN / "benchmark_app"), "-m", str(graph), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nireq", "1",
           "-nthreads", str(threads), "-infer_precision", "f32", "-latency_percentile", "10",
           "-t", str(max(1, round(seconds)))]
    return tenth_percentile_ms(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def tenth_percentile_ms(out: str) -> float:
    """The 10th percentile from benchmark_app's report in ms; it prints us for fast graphs, ms otherwise."""
    m = re.search(r"10 percentile:\s+([0-9.]+) (ms|us)", out)
    if not m:
        raise RuntimeError("benchmark_app printed no 10th percentile:\n" + out[-800:])
    return float(m.group(1)) * (1e-3 if m.group(2) == "us" else 1.0)


def ort_loop(graph: Path, threads: int, seconds: float) -> float:
    """A bare InferenceSession.run loop in a fresh process: its 10th percentile in ms."""
    out = subprocess.run([sys.executable, "-c", ORT_LOOP, str(graph), str(threads), str(seconds)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0])


def main(argv: list[str] | None = None) -> dict:
    """Run the alternations and print (or return) the comparison."""
    ap = parser(__doc__)
    ap.add_argument("--model", default="RegNetY-400MF")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="alternations")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds each tool measures")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.resolution, args.reps, args.seconds = "RegNetX-200MF", 32, 1, 1.0
    work = Path(tempfile.mkdtemp(prefix="fsrt-fidelity-"))
    rows = []
    try:
        for i in range(args.reps):
            fs = fsrt_figures(args.model, args.resolution, args.threads, work, i)
            graph = next((work / "bench" / "work" / "models").glob("*-b1-fp32.onnx"))
            ov, ort_ = benchmark_app(graph, args.threads, args.seconds), ort_loop(graph, args.threads, args.seconds)
            rows.append({"fsrt_openvino": fs["openvino"], "benchmark_app": ov, "fsrt_ort": fs["ort"], "ort_loop": ort_})
            if not args.json:
                print(f"rep {i + 1}: openvino fsrt {fs['openvino']:.3f} ms vs benchmark_app {ov:.3f} ms "
                      f"({fs['openvino'] / ov:.3f}x); ort fsrt {fs['ort']:.3f} ms vs bare loop {ort_:.3f} ms "
                      f"({fs['ort'] / ort_:.3f}x)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = {}
    for name, a, b in (("openvino", "fsrt_openvino", "benchmark_app"), ("ort", "fsrt_ort", "ort_loop")):
        ratios = [r[a] / r[b] for r in rows]
        summary[name] = {"median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)}
    doc = {"model": args.model, "threads": args.threads, "statistic": "10th percentile", "reps": rows,
           "summary": summary}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name, s in summary.items():
            print(f"{name}: fsrt / own tool = {s['median_ratio']:.3f} "
                  f"(range {s['min_ratio']:.3f}-{s['max_ratio']:.3f})")
    return doc


if __name__ == "__main__":
    main()
