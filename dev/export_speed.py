"""Export time and ONNX Runtime CPU latency of exported models vs PyTorch eager.

Run: ``python -m fsrt.bench.export_speed [--quick] [--json] [--models A,B] [--resolution R]``.
For each model (default RegNetY-400MF and RegNetY-4.0GF at their 224 px): the wall time of
``export_onnx`` (split into its stages), then the median latency of ONNX Runtime (CPU EP,
graph optimizations on) and of PyTorch eager (``torch.inference_mode``) on the same input at
batch 1 and 8, timed with ``perf_counter_ns`` after a time-based warm-up. Also the output
difference between the two, relative to the output scale. CPU only; thread count recorded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _latency_ms(fn, min_seconds: float, min_repeats: int, warmup_seconds: float) -> dict:
    """Median and p90 latency of ``fn`` in ms: warm up by time, then repeat by time and count."""
    end = time.perf_counter() + warmup_seconds
    while time.perf_counter() < end:
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))], "n": len(times)}


def run(models=("RegNetY-400MF", "RegNetY-4.0GF"), batches=(1, 8), resolution: int | None = None,
        quick: bool = False, threads: int | None = None) -> dict:
    """Measure and return all figures as a dict (``threads``: intra-op threads of both runtimes)."""
    import os

    import numpy as np
    import onnxruntime as ort
    import torch

    if threads:
        torch.set_num_threads(threads)

    from fsrt.exporters.model_source import load_model
    from fsrt.exporters.onnx_export import export_onnx

    min_s, min_n, warm = (0.5, 5, 0.3) if quick else (2.0, 10, 1.0)
    out = {"torch_threads": torch.get_num_threads(), "onnxruntime": ort.__version__, "torch": torch.__version__,
           "load_average_before": os.getloadavg()[0], "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            model, spec = load_model(name)
            res = resolution or spec.resolution
            entry = {"resolution": res, "export": {}, "latency": {}}
            for dynamic in (False, True):
                path = Path(tmp) / f"{name}-{'dyn' if dynamic else 'static'}.onnx"
                t0 = time.perf_counter()
                result = export_onnx(model, path, resolution=res, dynamic_batch="1:8:32" if dynamic else None)
                entry["export"]["dynamic" if dynamic else "static"] = {
                    "seconds": time.perf_counter() - t0, "stages": result.stage_seconds,
                    "parity_max_rel": result.parity.max_rel, "nodes": result.node_count,
                    "size_mb": result.size_bytes / 1e6}
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])  # dynamic-batch graph
            for b in batches:
                x = torch.randn(b, 3, res, res)
                xn = x.numpy()
                with torch.inference_mode():
                    ref = model(x).numpy()
                    eager = _latency_ms(lambda m=model, a=x: m(a), min_s, min_n, warm)
                y = sess.run(None, {"input": xn})[0]
                onnx_t = _latency_ms(lambda s=sess, a=xn: s.run(None, {"input": a}), min_s, min_n, warm)
                entry["latency"][f"batch{b}"] = {
                    "eager": eager, "onnxruntime": onnx_t,
                    "speedup": eager["median_ms"] / onnx_t["median_ms"],
                    "max_rel_diff": float(np.abs(y - ref).max() / np.abs(ref).max())}
            out["models"][name] = entry
    out["load_average_after"] = os.getloadavg()[0]
    return out


def print_table(figures: dict) -> None:
    """Print the figures as two rich tables (export time, latency)."""
    from rich.console import Console
    from rich.table import Table

    con = Console(width=120)
    t = Table(title=f"export time (torch {figures['torch']}, {figures['torch_threads']} threads)")
    for col in ("model", "res", "batch", "total s", "export s", "slim s", "parity s", "nodes", "MB"):
        t.add_column(col, justify="right" if col != "model" else "left", no_wrap=True)
    for name, e in figures["models"].items():
        for kind, x in e["export"].items():
            st = x["stages"]
            t.add_row(name, str(e["resolution"]), kind, f"{x['seconds']:.1f}", f"{st['export']:.1f}",
                      f"{st['slim']:.2f}", f"{st['parity']:.2f}", str(x["nodes"]), f"{x['size_mb']:.1f}")
    con.print(t)
    t = Table(title=f"CPU latency, median ms (onnxruntime {figures['onnxruntime']}; load average "
                    f"{figures['load_average_before']:.1f} -> {figures['load_average_after']:.1f})")
    for col in ("model", "batch", "eager", "eager p90", "onnxruntime", "ort p90", "speedup", "rel diff"):
        t.add_column(col, justify="right" if col != "model" else "left", no_wrap=True)
    for name, e in figures["models"].items():
        for b, x in e["latency"].items():
            t.add_row(name, b.removeprefix("batch"), f"{x['eager']['median_ms']:.1f}", f"{x['eager']['p90_ms']:.1f}",
                      f"{x['onnxruntime']['median_ms']:.1f}", f"{x['onnxruntime']['p90_ms']:.1f}",
                      f"{x['speedup']:.2f}x", f"{x['max_rel_diff']:.1e}")
    con.print(t)


def main(argv=None) -> None:
    """Command-line entry: ``python -m fsrt.bench.export_speed``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing windows")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--models", default="RegNetY-400MF,RegNetY-4.0GF", help="comma-separated zoo names")
    ap.add_argument("--resolution", type=int, default=None, help="input size (default: each model's own)")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for PyTorch and ONNX Runtime (default: PyTorch's default); 1 is the "
                         "robust choice on a machine shared with other work")
    args = ap.parse_args(argv)
    figures = run(tuple(m.strip() for m in args.models.split(",")), resolution=args.resolution, quick=args.quick,
                  threads=args.threads)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
