"""Does fsrt's figure agree with each runtime's own tool on the same graph?

Measures, in one run, the same ONNX graph (the one ``fsrt bench`` exports and times) at the same
thread count four ways, each compared with the same statistic on both sides: ``fsrt bench`` (its
figure, the interquartile mean of all its timed calls, and the median of those calls that it
stores beside it), OpenVINO's ``benchmark_app`` (``-hint none -nstreams 1 -nireq 1 -nthreads T
-infer_precision f32 -api sync``: the median it prints) and a bare ONNX Runtime
``InferenceSession.run`` loop in a fresh process (the interquartile mean and the median of its
calls), and a bare loop of OpenVINO's synchronous ``infer`` likewise (it separates fsrt's harness
from the tool's own). fsrt times OpenVINO's synchronous ``infer``, hence ``-api sync``;
benchmark_app's default asynchronous API (a request started, then its completion callback) is measured too, for
information: it adds a hand-off per inference that a synchronous call does not pay.

The machine's speed drifts by 10-20% over seconds on a shared VM, more than the 3% asked of the
comparison, so each repetition is a sandwich: tools, fsrt, tools again; its ratio is fsrt's figure
over the geometric mean of the two tool figures around it, which cancels a drift that is linear
over the sandwich. The summary is the median ratio over repetitions with its distribution-free
95% interval.

    python dev/bench_fidelity.py                      # RegNetY-400MF, 1 thread, 8 repetitions
    python dev/bench_fidelity.py --threads 2 --reps 4 --json
    python dev/bench_fidelity.py --quick              # smoke: RegNetX-200MF at 32 px, 1 repetition
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devcli import parser

from fsrt.bench.stats import interquartile_mean, median_ci, percentile

BIN = Path(sys.executable).parent

# The runtime's plain synchronous call in a bare process, nothing of fsrt's: needs ``runtime``,
# ``path``, ``threads`` and ``make_x(shape)`` (the input), defines ``call``. Shared by the bare
# processes of every dev script, so they all time the same call.
BARE_CALL = """
if runtime == "ort":
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL; o.log_severity_level = 3
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    feed = {i.name: make_x(list(i.shape))}
    call = lambda: s.run(None, feed)
else:
    import openvino as ov
    m = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                                              "PERFORMANCE_HINT": "LATENCY"})
    r = m.create_infer_request()
    x_in = make_x(list(m.input(0).shape))  # the tensor shares this memory: keep it alive
    r.set_input_tensor(ov.Tensor(x_in))
    call = r.infer
"""

# A bare loop in a fresh process, on a standard-normal input.
LOOP = """
import json, sys, time, numpy as np
runtime, path, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
warmup = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
make_x = lambda shape: np.random.default_rng(0).standard_normal(shape).astype(np.float32)
""" + BARE_CALL + """
window, gap = (float(sys.argv[6]), float(sys.argv[7])) if len(sys.argv) > 7 else (seconds, 0.0)
end = time.perf_counter() + warmup
while time.perf_counter() < end: call()
ts, timed = [], 0.0
while timed < seconds:  # windows of `window` timed seconds, each after one untimed call and `gap` s asleep
    if gap: time.sleep(gap); call()
    start = time.perf_counter(); end = start + min(window, seconds - timed)
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns(); call(); ts.append((time.perf_counter_ns() - t0) / 1e6)
    timed += time.perf_counter() - start
print(json.dumps(ts))
"""


def fsrt_figures(model: str, resolution: int | None, threads: int, work: Path, i: int) -> dict[str, dict]:
    """One fresh ``fsrt bench`` measurement (new database, cached graph files) -> runtime: its figure
    (interquartile mean) and its calls' median, in ms."""
    cmd = [str(BIN / "fsrt"), "bench", model, "--strategy", "w", "--sweep", "s=1", "--runtimes", "ort,openvino",
           "--precision", "fp32", "--threads", str(threads), "--out", str(work / "bench"), "--db",
           str(work / f"db-{i}.db"), "--no-report", "--json"]
    if resolution:
        cmd += ["--resolution", str(resolution)]
    doc = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return {p["runtime"]: {"iqm": p["latency_ms"], "median": p["median_ms"]} for p in doc["points"] if p["latency_ms"]}


def timed_graph(work: Path) -> Path:
    """The graph fsrt timed: the largest b1 fp32 graph (a sweep also exports a tiny 32 px model it
    runs first, so one-time runtime set-up is not billed to the first real point)."""
    return max((work / "bench" / "work" / "models").glob("*-b1-fp32.onnx"), key=lambda p: p.stat().st_size)


def benchmark_app(graph: Path, threads: int, seconds: float, api: str = "sync") -> float:
    """OpenVINO's own tool: the median latency it reports, in ms (``api``: "sync" or "async")."""
    cmd = [str(BIN / "benchmark_app"), "-m", str(graph), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-nireq", "1",
           "-nthreads", str(threads), "-infer_precision", "f32", "-api", api, "-t", str(max(1, round(seconds)))]
    return median_latency_ms(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def median_latency_ms(out: str) -> float:
    """The median latency from benchmark_app's report in ms; it prints us for fast graphs, ms otherwise."""
    m = re.search(r"Median:\s+([0-9.]+) (ms|us)", out)
    if not m:
        raise RuntimeError("benchmark_app printed no median latency:\n" + out[-800:])
    return float(m.group(1)) * (1e-3 if m.group(2) == "us" else 1.0)


def bare_loop(runtime: str, graph: Path, threads: int, seconds: float, warmup_s: float = 1.0,
              burst: tuple[float, float] | None = None) -> dict[str, float]:
    """A bare loop of the runtime's synchronous call (``ort`` InferenceSession.run, else OpenVINO's
    infer) in a fresh process, after ``warmup_s`` of untimed calls: the interquartile mean and the
    median of its calls. ``burst=(window_s, gap_s)`` times in windows like a sweep does: each
    window of ``window_s`` timed seconds follows ``gap_s`` seconds asleep and one untimed call."""
    extra = [str(burst[0]), str(burst[1])] if burst else []
    out = subprocess.run([sys.executable, "-c", LOOP, runtime, str(graph), str(threads), str(seconds), str(warmup_s),
                          *extra], check=True, capture_output=True, text=True).stdout
    times = json.loads(out)
    return {"iqm": interquartile_mean(times), "median": percentile(sorted(times), 50)}


def tools(graph: Path, threads: int, seconds: float) -> dict[str, float]:
    """One measurement by each runtime's own tool."""
    ort, ov = bare_loop("ort", graph, threads, seconds), bare_loop("openvino", graph, threads, seconds)
    return {"benchmark_app": benchmark_app(graph, threads, seconds), "ort_loop": ort["iqm"],
            "ort_loop_median": ort["median"], "ov_loop": ov["iqm"], "ov_loop_median": ov["median"],
            "benchmark_app_async": benchmark_app(graph, threads, seconds, "async")}


def repetition(args, work: Path, i: int) -> dict:
    """Tools, fsrt, tools again: fsrt's figures and the geometric mean of the tools' around them."""
    if i == 0:  # export the graph once (its files are cached for the repetitions)
        fsrt_figures(args.model, args.resolution, args.threads, work, -1)
    graph = timed_graph(work)
    before = tools(graph, args.threads, args.seconds)
    fs = fsrt_figures(args.model, args.resolution, args.threads, work, i)
    after = tools(graph, args.threads, args.seconds)
    rep = {"fsrt_openvino_median": fs["openvino"]["median"], "fsrt_openvino": fs["openvino"]["iqm"],
           "fsrt_ort": fs["ort"]["iqm"], "fsrt_ort_median": fs["ort"]["median"]}
    for key in before:
        rep[key] = math.sqrt(before[key] * after[key])
        rep[key + "_runs"] = [before[key], after[key]]
    return rep


COMPARISONS = (("openvino (median)", "fsrt_openvino_median", "benchmark_app"),
               ("openvino vs a bare loop (interquartile mean)", "fsrt_openvino", "ov_loop"),
               ("bare openvino loop vs benchmark_app (median)", "ov_loop_median", "benchmark_app"),
               ("ort (interquartile mean)", "fsrt_ort", "ort_loop"),
               ("ort (median)", "fsrt_ort_median", "ort_loop_median"),
               ("openvino vs benchmark_app's default async API (median)", "fsrt_openvino_median",
                "benchmark_app_async"))


def summarize(rows: list[dict]) -> dict:
    """Per comparison: the median ratio fsrt / tool over repetitions, its 95% interval and range."""
    summary = {}
    for name, a, b in COMPARISONS:
        ratios = [r[a] / r[b] for r in rows]
        ci = median_ci(ratios)
        summary[name] = {"median_ratio": statistics.median(ratios), "ci95": list(ci) if ci else None,
                         "min_ratio": min(ratios), "max_ratio": max(ratios)}
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Run the repetitions and print (or return) the comparison."""
    ap = parser(__doc__)
    ap.add_argument("--model", default="RegNetY-400MF")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=8, help="repetitions (sandwiches)")
    ap.add_argument("--seconds", type=float, default=4.0, help="seconds each tool measures, per side")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.resolution, args.reps, args.seconds = "RegNetX-200MF", 32, 1, 1.0
    work = Path(tempfile.mkdtemp(prefix="fsrt-fidelity-"))
    rows = []
    try:
        for i in range(args.reps):
            rows.append(rep := repetition(args, work, i))
            if not args.json:
                print(f"rep {i + 1}: openvino median fsrt {rep['fsrt_openvino_median']:.3f} ms vs benchmark_app "
                      f"{rep['benchmark_app']:.3f} ms; ort interquartile mean fsrt {rep['fsrt_ort']:.3f} ms vs bare "
                      f"loop {rep['ort_loop']:.3f} ms (medians {rep['fsrt_ort_median']:.3f} vs "
                      f"{rep['ort_loop_median']:.3f} ms)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(rows)
    doc = {"model": args.model, "threads": args.threads,
           "statistic": "interquartile mean; median against benchmark_app", "reps": rows, "summary": summary}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for name, s in summary.items():
            ci = f"95% interval {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}, " if s["ci95"] else ""
            print(f"{name}: fsrt / own tool = {s['median_ratio']:.3f} ({ci}range {s['min_ratio']:.3f}-"
                  f"{s['max_ratio']:.3f})")
    return doc


if __name__ == "__main__":
    main()
