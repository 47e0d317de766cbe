"""Does fsrt's worker time a runtime's call as a bare loop in a fresh process does? Window by window.

``dev/bench_fidelity.py`` compares whole runs (tools, ``fsrt bench``, tools again): on a VM
whose speed swings by 10-30% within a minute, each such sandwich's ratio scatters by 5-20%, and
a 3% question needs more of them than a session has. This script asks the part of the question
that fine alternation can answer: given the same graph, input, thread count and statistic, does
fsrt's measuring machinery (its worker process, ``python -m fsrt.bench.worker``, the runner's
bound call, the window timer, the pipe) read the same as a bare synchronous loop in a fresh
process that loads nothing but the runtime?

All sides stay alive for the whole run: fsrt's worker per runtime (``fsrt.bench.worker``'s
``WorkerPool``, preparing the job exactly as a sweep does) and two bare processes per runtime
that time a window when asked (one untimed call, then calls for the window's seconds, as fsrt's
window does). Rounds visit all of them in a fresh random order, so every side is timed within
a couple of seconds of the others.

Why two bare processes: on these VMs identical processes alternated window by window differ by
a few percent, and which one is faster follows the order they were started in, not their code:
in 8 of 8 A/B runs of two identical bare OpenVINO loops the later-started one read faster (median
ratios 0.94-0.99), whichever was started first. One bare process is therefore started before
fsrt's workers and one after; fsrt is compared with their geometric mean, and their own ratio
(after / before, an A/A comparison of identical code) is the start-order effect in this run.

Per runtime and comparison, within one run: the ratio of the interquartile means of each round's
windows (their median over rounds with its distribution-free 95% interval), and the ratio of the
pooled interquartile means. Since one process pair is one draw of the start-order and process
effects, ``--repeats N`` starts every process afresh N times; the summary over repeats is the
geometric mean of the pooled ratios with its Student-t 95% interval (N - 1 degrees of freedom).

    python dev/fidelity_paired.py                         # RegNetY-400MF, ort and openvino, 1 thread, 4 repeats
    python dev/fidelity_paired.py --rounds 120 --window-s 0.2 --json
    python dev/fidelity_paired.py --quick --json          # smoke: RegNetX-200MF at 32 px, 4 rounds
"""

from __future__ import annotations

import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fidelity import BARE_CALL, fsrt_figures, timed_graph
from devcli import parser

from fsrt.bench.host import HostConfig, PrepareRequest
from fsrt.bench.stats import interquartile_mean, median_ci, t_quantile
from fsrt.bench.timing import WindowConfig
from fsrt.bench.worker import WorkerPool
from fsrt.zoo import zoo_spec

# A bare process: the runtime's plain synchronous call on fsrt's input; times a window per request.
BARE = """
import json, sys, time, numpy as np
runtime, path, inputs, threads, window = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
x = np.ascontiguousarray(np.load(inputs).astype(np.float32))
make_x = lambda shape: x
""" + BARE_CALL + """
end = time.perf_counter() + 1.0
while time.perf_counter() < end: call()
print("ready", flush=True)
for line in sys.stdin:
    call()
    ts, end = [], time.perf_counter() + window
    while len(ts) < 3 or time.perf_counter() < end:
        t0 = time.perf_counter_ns(); call(); ts.append((time.perf_counter_ns() - t0) / 1e6)
    print(json.dumps(ts), flush=True)
"""


class BareLoop:
    """A fresh process with only the runtime loaded, timing one window per request."""

    def __init__(self, runtime: str, graph: Path, inputs: Path, threads: int, window_s: float):
        self.proc = subprocess.Popen([sys.executable, "-c", BARE, runtime, str(graph), str(inputs), str(threads),
                                      str(window_s)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the bare {runtime} loop did not start")

    def window(self) -> list[float]:
        """Time one window: its call times in ms."""
        self.proc.stdin.write("w\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        """End the process."""
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def sibling(graph: Path, suffix: str) -> Path:
    """A file the sweep wrote beside a ``<variant>-b1-fp32.onnx`` graph: ``.pt`` weights, ``-b1-x.npy`` input."""
    return graph.with_name(graph.name.removesuffix("-b1-fp32.onnx") + suffix)


def prepare_fsrt(pool: WorkerPool, runtime: str, model: str, graph: Path) -> str:
    """Prepare the graph's job in fsrt's worker for ``runtime`` as a sweep does; returns the job id."""
    req = PrepareRequest("fidelity", zoo_spec(model).to_dict(), str(sibling(graph, ".pt")),
                         str(sibling(graph, "-b1-x.npy")), {"fp32": str(graph)}, "fp32", 1)
    pool.prepare(runtime, req)
    return "fidelity"


def run_rounds(sides: dict[tuple[str, str], object], rounds: int, cooldown_s: float) -> dict:
    """Every side times one window per round, in a fresh random order; (runtime, side) -> windows."""
    rng = random.Random(0)
    windows: dict[tuple[str, str], list[list[float]]] = {key: [] for key in sides}
    for _ in range(rounds):
        order = list(sides)
        rng.shuffle(order)
        for key in order:
            windows[key].append(sides[key]())
            time.sleep(cooldown_s)
    return windows


COMPARISONS = {"fsrt / bare (geometric mean of before and after)": ("fsrt", ("before", "after")),
               "fsrt / bare started before fsrt": ("fsrt", ("before",)),
               "fsrt / bare started after fsrt": ("fsrt", ("after",)),
               "bare after / bare before (identical code: the start-order effect)": ("after", ("before",))}


def _ratio(num: list[float], dens: list[list[float]]) -> float:
    return interquartile_mean(num) / math.prod(interquartile_mean(d) for d in dens) ** (1 / len(dens))


def summarize(windows: dict, runtimes: list[str]) -> dict:
    """Per runtime and comparison: per-round ratios, their median and its interval, the pooled ratio."""
    out = {}
    for rt in runtimes:
        out[rt] = {"ms": {side: interquartile_mean([t for w in windows[(rt, side)] for t in w])
                          for side in ("fsrt", "before", "after")},
                   "rounds": len(windows[(rt, "fsrt")]),
                   "calls_per_window": statistics.median(len(w) for w in windows[(rt, "fsrt")])}
        for name, (num, dens) in COMPARISONS.items():
            rows = zip(windows[(rt, num)], *(windows[(rt, d)] for d in dens), strict=True)
            ratios = [_ratio(row[0], list(row[1:])) for row in rows]
            ci = median_ci(ratios)
            pooled = [[t for w in windows[(rt, side)] for t in w] for side in (num, *dens)]
            out[rt][name] = {"median_ratio": statistics.median(ratios), "ci95": list(ci) if ci else None,
                             "pooled_ratio": _ratio(pooled[0], pooled[1:])}
    return out


def measure(args, work: Path, runtimes: list[str]) -> dict:
    """Start the bare processes before and after fsrt's workers, then alternate all of them."""
    graph = timed_graph(work)
    inputs = sibling(graph, "-b1-x.npy")
    window = WindowConfig(window_s=args.window_s)
    pool = WorkerPool(lambda rt: HostConfig(rt, "cpu", args.threads, window, str(work / "w")), work / "logs")
    bare: list[BareLoop] = []
    try:
        sides = {}
        for rt in runtimes:
            bare.append(BareLoop(rt, graph, inputs, args.threads, args.window_s))
            sides[(rt, "before")] = bare[-1].window
        for rt in runtimes:
            job = prepare_fsrt(pool, rt, args.model, graph)
            sides[(rt, "fsrt")] = lambda rt=rt, job=job: pool.window(rt, job)
        for rt in runtimes:
            bare.append(BareLoop(rt, graph, inputs, args.threads, args.window_s))
            sides[(rt, "after")] = bare[-1].window
        return run_rounds(sides, args.rounds, args.cooldown_s)
    finally:
        pool.close()
        for b in bare:
            b.close()


def over_repeats(runs: list[dict], runtimes: list[str]) -> dict:
    """Per runtime and comparison: the geometric mean of the repeats' pooled ratios, its t interval."""
    out = {}
    for rt in runtimes:
        out[rt] = {}
        for name in COMPARISONS:
            logs = [math.log(run[rt][name]["pooled_ratio"]) for run in runs]
            mean = statistics.fmean(logs)
            half = (t_quantile(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
                    if len(logs) > 1 else None)
            out[rt][name] = {"ratio": math.exp(mean), "ci95": [math.exp(mean - half), math.exp(mean + half)]
                             if half is not None else None, "repeats": [math.exp(v) for v in logs]}
    return out


def main(argv: list[str] | None = None) -> dict:
    """Export the graph with ``fsrt bench``, alternate fsrt's workers and bare loops, print the ratios."""
    ap = parser(__doc__)
    ap.add_argument("--model", default="RegNetY-400MF")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runtimes", default="ort,openvino")
    ap.add_argument("--rounds", type=int, default=40, help="rounds per repeat")
    ap.add_argument("--repeats", type=int, default=4, help="runs, each with every process started afresh")
    ap.add_argument("--window-s", type=float, default=0.3, help="timed seconds per window, every side")
    ap.add_argument("--cooldown-s", type=float, default=0.02)
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.resolution, args.rounds, args.repeats, args.window_s = "RegNetX-200MF", 32, 3, 2, 0.05
    runtimes = args.runtimes.split(",")
    runs = []
    with tempfile.TemporaryDirectory(prefix="fsrt-paired-") as tmp:
        fsrt_figures(args.model, args.resolution, args.threads, Path(tmp), -1)  # exports the graph as a sweep does
        for i in range(args.repeats):
            runs.append(summarize(measure(args, Path(tmp), runtimes), runtimes))
            print(f"repeat {i + 1} of {args.repeats} done", file=sys.stderr, flush=True)
    doc = {"model": args.model, "threads": args.threads, "window_s": args.window_s, "rounds": args.rounds,
           "statistic": "interquartile mean", "runs": runs, "summary": over_repeats(runs, runtimes)}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for rt, res in doc["summary"].items():
            for name, r in res.items():
                ci = f" (95% interval {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})" if r["ci95"] else ""
                each = ", ".join(f"{v:.3f}" for v in r["repeats"])
                print(f"{rt}: {name}: {r['ratio']:.3f}{ci} over repeats {each}")
    return doc


if __name__ == "__main__":
    main()
