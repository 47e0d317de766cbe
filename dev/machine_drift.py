"""Does a fixed reference job follow the machine's drift as the models do? Minutes of interleaved windows.

On these shared VMs the whole machine changes speed over minutes: two default sweeps run one
after the other differed by a common 4-6% on almost every point, on every runtime. A fixed
reference job timed inside each run (an "anchor") could separate that drift from a real change
of the models, but only if the anchor slows down when the models do. This script measures that
before any such anchor enters the product.

Jobs, each in its own process started at the beginning, all kept alive: the model (RegNetY-400MF
by default) on eager PyTorch, ONNX Runtime and OpenVINO at 1 thread, and candidate anchors that
load no model runtime: ``gemm`` (numpy float32 matrix products, compute-bound), ``stream`` (numpy
adds over arrays far larger than the caches, memory-bound) and ``python`` (an interpreter loop).
Rounds visit every job in a fresh random order and time one window each (one untimed call, then
calls for ``--window-s``), for ``--minutes``.

Per job, calls are pooled into bins of ``--bin-s`` seconds; a bin's figure is the interquartile
mean of its calls and its deviation is the log ratio to the job's median bin. Printed per model
job: the standard deviation of its bin deviations (the drift to explain), the correlation with
each anchor's and what is left after dividing by the anchor; and the same against the geometric
mean of the *other* model jobs, the most any single reference could explain. The first-half /
second-half ratio of every job shows a slow drift the way two back-to-back runs would see it.

    python dev/machine_drift.py                      # 12 minutes, 30-s bins
    python dev/machine_drift.py --minutes 20 --json
    python dev/machine_drift.py --quick --json       # smoke: RegNetX-200MF at 32 px, seconds
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fidelity import BARE_CALL
from devcli import parser

from fsrt.bench.stats import interquartile_mean

MODEL_JOBS = ("eager", "ort", "openvino")
ANCHORS = ("gemm", "stream", "python")

# Each job's call, defined from (kind, model, resolution, graph path, input file).
_SETUP = {
    "eager": """
import torch
from fsrt.models import build_model
from fsrt.zoo import zoo_spec
torch.set_num_threads(1)
net = build_model(zoo_spec(model)).eval()
xt = torch.from_numpy(x)
def call():
    with torch.inference_mode():
        net(xt)
""",
    "gemm": """
a = np.random.default_rng(1).standard_normal((384, 384)).astype(np.float32)
def call():
    for _ in range(8): np.dot(a, a)
""",
    "stream": """
u, v, w = (np.ones(8 * 1024 * 1024, np.float32) for _ in range(3))
def call():
    np.add(u, v, out=w)
""",
    "python": """
def call():
    s = 0
    for i in range(150000): s += i
""",
}

JOB = """
import json, sys, time, numpy as np
kind, model, resolution, path, inputs, window = sys.argv[1:7]
resolution, window, threads = int(resolution), float(window), 1
x = np.ascontiguousarray(np.load(inputs).astype(np.float32))
make_x = lambda shape: x
runtime = kind
{setup}
end = time.perf_counter() + 1.0
while time.perf_counter() < end: call()
print("ready", flush=True)
cpu = lambda: int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[36])  # the vCPU it last ran on
for line in sys.stdin:
    call()
    c0, ts, end = cpu(), [], time.perf_counter() + window
    while len(ts) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter_ns(); call(); ts.append((time.perf_counter_ns() - t0) / 1e6)
    print(json.dumps([ts, c0, cpu()]), flush=True)
"""


class Job:
    """One job's process, timing one window per request."""

    def __init__(self, kind: str, model: str, resolution: int, graph: Path, inputs: Path, window_s: float,
                 cpu: int | None = None):
        setup = BARE_CALL if kind in ("ort", "openvino") else _SETUP[kind]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-c", JOB.format(setup=setup), kind, model, str(resolution),
                                      str(graph), str(inputs), str(window_s)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=pin)

    def wait_ready(self) -> None:
        """Block until the job has warmed up (jobs start in parallel, then each is waited for)."""
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {self.kind} job did not start")

    def window(self) -> tuple[list[float], int, int]:
        """Time one window: its call times in ms, and the vCPU the job ran on at its start and end."""
        self.proc.stdin.write("w\n")
        self.proc.stdin.flush()
        times, cpu_start, cpu_end = json.loads(self.proc.stdout.readline())
        return times, cpu_start, cpu_end

    def close(self) -> None:
        """End the process."""
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def export(model: str, resolution: int, work: Path) -> tuple[Path, Path]:
    """The model's fp32 ONNX graph (``fsrt export``) and a standard-normal input for it."""
    import numpy as np

    graph = work / "model.onnx"
    cmd = [str(Path(sys.executable).parent / "fsrt"), "export", model, "-o", str(graph)]
    subprocess.run([*cmd, "-r", str(resolution)] if resolution else cmd, check=True, capture_output=True)
    import onnx

    dims = [d.dim_value for d in onnx.load(graph, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    inputs = work / "x.npy"
    np.save(inputs, np.random.default_rng(0).standard_normal(dims).astype(np.float32))
    return graph, inputs


def measure(jobs: dict[str, Job], seconds: float, cooldown_s: float) -> tuple[dict, dict]:
    """Rounds in random order until ``seconds`` pass: job -> [(start time from the beginning, call
    times)], and job -> [(vCPU at the window's start, at its end)]."""
    rng = random.Random(0)
    out: dict[str, list[tuple[float, list[float]]]] = {k: [] for k in jobs}
    cpus: dict[str, list[tuple[int, int]]] = {k: [] for k in jobs}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        order = list(jobs)
        rng.shuffle(order)
        for k in order:
            start = time.perf_counter() - t0
            times, c0, c1 = jobs[k].window()
            out[k].append((start, times))
            cpus[k].append((c0, c1))
            time.sleep(cooldown_s)
    return out, cpus


def window_levels(windows: list[tuple[float, list[float]]], cpus: list[tuple[int, int]]) -> dict:
    """How much a job's windows differ beyond what their calls' spread explains, and whether the
    vCPU a window ran on accounts for it: the standard deviation of window log-figures, the one
    expected from within-window call spread alone, and the mean log level per vCPU (windows that
    stayed on one vCPU)."""
    logs = [math.log(interquartile_mean(ts)) for _, ts in windows]
    mid = statistics.median(logs)
    within = [statistics.pstdev([math.log(t) for t in ts]) / math.sqrt(len(ts)) for _, ts in windows]
    by_cpu: dict[int, list[float]] = {}
    for v, (c0, c1) in zip(logs, cpus):
        if c0 == c1:
            by_cpu.setdefault(c0, []).append(v - mid)
    return {"window_sd": statistics.pstdev(logs), "expected_from_calls_sd": math.sqrt(statistics.fmean(
        [w * w for w in within])), "moved": sum(c0 != c1 for c0, c1 in cpus) / len(cpus),
            "level_by_cpu": {str(c): {"windows": len(v), "mean": statistics.fmean(v), "sd": statistics.pstdev(v)}
                             for c, v in sorted(by_cpu.items())}}


def bin_deviations(windows: list[tuple[float, list[float]]], bin_s: float, bins: int) -> list[float]:
    """Per bin, log(interquartile mean of its calls / the job's median bin figure)."""
    pooled: list[list[float]] = [[] for _ in range(bins)]
    for start, times in windows:
        pooled[min(int(start // bin_s), bins - 1)] += times
    figures = [math.log(interquartile_mean(c)) for c in pooled]
    mid = statistics.median(figures)
    return [f - mid for f in figures]


def _sd(xs: list[float]) -> float:
    return statistics.pstdev(xs)


def _corr(a: list[float], b: list[float]) -> float | None:
    sa, sb = _sd(a), _sd(b)
    if sa == 0 or sb == 0:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    return sum((x - ma) * (y - mb) for x, y in zip(a, b)) / (len(a) * sa * sb)


def explain(dev: dict[str, list[float]], models: list[str], anchors: list[str]) -> dict:
    """Per model job: its drift, and per reference (each anchor, and the other models' mean) the
    correlation with it and the drift left after dividing by it."""
    out = {}
    for m in models:
        refs = {a: dev[a] for a in anchors}
        others = [o for o in models if o != m]
        if others:
            refs["other models (mean)"] = [statistics.fmean(dev[o][i] for o in others) for i in range(len(dev[m]))]
        out[m] = {"drift_sd": _sd(dev[m]),
                  "by_reference": {name: {"corr": _corr(dev[m], r), "left_sd": _sd([x - y for x, y in zip(dev[m], r)])}
                                   for name, r in refs.items()}}
    return out


def half_ratios(windows: dict[str, list[tuple[float, list[float]]]], seconds: float) -> dict[str, float]:
    """Per job: the interquartile mean of the second half's calls over the first half's."""
    out = {}
    for k, ws in windows.items():
        first = [t for s, ts in ws if s < seconds / 2 for t in ts]
        second = [t for s, ts in ws if s >= seconds / 2 for t in ts]
        out[k] = interquartile_mean(second) / interquartile_mean(first)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Start every job, alternate their windows for the given minutes, print how the drifts relate."""
    ap = parser(__doc__)
    ap.add_argument("--model", default="RegNetY-400MF")
    ap.add_argument("--resolution", type=int, default=0, help="input side (0: the model's own)")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--bin-s", type=float, default=30.0)
    ap.add_argument("--window-s", type=float, default=0.15)
    ap.add_argument("--cooldown-s", type=float, default=0.02)
    ap.add_argument("--pin", type=int, default=None, help="also run each model job confined to this vCPU")
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.resolution, args.minutes, args.bin_s, args.window_s = "RegNetX-200MF", 32, 0.1, 1.5, 0.03
    seconds = args.minutes * 60
    bins = max(2, int(seconds // args.bin_s))
    with tempfile.TemporaryDirectory(prefix="fsrt-drift-") as tmp:
        graph, inputs = export(args.model, args.resolution, Path(tmp))
        jobs = {k: Job(k, args.model, args.resolution, graph, inputs, args.window_s)
                for k in (*MODEL_JOBS, *ANCHORS)}
        if args.pin is not None:  # the model jobs again, each confined to one vCPU
            jobs |= {f"{k}@{args.pin}": Job(k, args.model, args.resolution, graph, inputs, args.window_s, args.pin)
                     for k in MODEL_JOBS}
        try:
            for job in jobs.values():
                job.wait_ready()
            windows, cpus = measure(jobs, seconds, args.cooldown_s)
        finally:
            for j in jobs.values():
                j.close()
    dev = {k: bin_deviations(ws, seconds / bins, bins) for k, ws in windows.items()}
    doc = {"model": args.model, "minutes": args.minutes, "bins": bins, "window_s": args.window_s,
           "windows": {k: len(ws) for k, ws in windows.items()},
           "figure_ms": {k: interquartile_mean([t for _, ts in ws for t in ts]) for k, ws in windows.items()},
           "half_ratio": half_ratios(windows, seconds), "bin_deviation": dev,
           "window_levels": {k: window_levels(windows[k], cpus[k]) for k in windows},
           "explained": explain(dev, list(MODEL_JOBS), list(ANCHORS))}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_text(doc)
    return doc


def print_text(doc: dict) -> None:
    """The drift table: per model job, its bin-to-bin spread and what each reference leaves of it."""
    print(f"{doc['model']}, {doc['minutes']} min, {doc['bins']} bins; second half / first half: "
          + ", ".join(f"{k} {v:.3f}" for k, v in doc["half_ratio"].items()))
    for m, e in doc["explained"].items():
        cells = "; ".join(f"{name}: r {r['corr']:.2f}, left {100 * r['left_sd']:.1f}%" if r["corr"] is not None
                          else f"{name}: -" for name, r in e["by_reference"].items())
        print(f"{m}: drift sd {100 * e['drift_sd']:.1f}% | {cells}")
    for k, w in doc["window_levels"].items():
        cpus = ", ".join(f"vCPU {c}: {v['windows']} windows, {100 * v['mean']:+.1f}% sd {100 * v['sd']:.1f}%"
                         for c, v in w["level_by_cpu"].items())
        print(f"{k}: window sd {100 * w['window_sd']:.1f}% (calls alone {100 * w['expected_from_calls_sd']:.1f}%), "
              f"moved during {100 * w['moved']:.0f}% of windows; {cpus}")


if __name__ == "__main__":
    main()
