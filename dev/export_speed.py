"""Export time and ONNX Runtime CPU latency of exported models against PyTorch eager.

For each model (default RegNetY-400MF and RegNetY-4.0GF at their own resolution): the wall
time of ``export_onnx`` for a static and a dynamic-batch graph (``--quick``: dynamic only),
split into its stages, with the export's own parity figure; then the latency of ONNX Runtime
(CPU EP, graph optimizations on, the dynamic graph) and of PyTorch eager
(``torch.inference_mode``) on the same input at batch 1 and 8, each timed by fsrt's harness
(``fsrt.bench.timing.measure``: median and p90 ms). CPU only; the thread count and the load
average around the run are recorded.

    python dev/export_speed.py [--models A,B] [--resolution R] [--threads N] [--quick] [--json]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from devcli import emit, parser

DEFAULT_MODELS = "RegNetY-400MF,RegNetY-4.0GF"
QUICK_MODEL, QUICK_RESOLUTION = "RegNetX-200MF", 32


def quick_spec():
    """``--quick``'s model: RegNetX-200MF cut to one block per stage (same block types and widths)."""
    import dataclasses

    from fsrt.zoo import zoo_spec

    spec = zoo_spec(QUICK_MODEL)
    return spec.replace(name=f"{QUICK_MODEL}-shallow", resolution=QUICK_RESOLUTION,
                        stages=tuple(dataclasses.replace(s, depth=1) for s in spec.stages))


def _timing(quick: bool):
    from fsrt.bench.timing import TimingConfig

    if quick:
        return TimingConfig(warmup_s=0.05, min_warmup=1, measure_s=0.1, min_runs=3, retries=0)
    return TimingConfig(warmup_s=1.0, measure_s=2.0, min_runs=10)


def _latency(fn, cfg) -> dict:
    from fsrt.bench.timing import measure

    stats = measure(fn, cfg, "cpu").stats
    return {"median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "n": stats.n}


def _exports(model, name: str, res: int, folder: Path, static: bool = True) -> tuple[dict, Path]:
    """Export ``model`` static (unless not ``static``) and with a dynamic batch; figures and the
    dynamic graph's path."""
    from fsrt.exporters.onnx_export import export_onnx

    out = {}
    for kind, dynamic in (("static", None), ("dynamic", "1:8:32"))[0 if static else 1:]:
        path = folder / f"{name}-{kind}.onnx"
        t0 = time.perf_counter()
        result = export_onnx(model, path, resolution=res, dynamic_batch=dynamic)
        out[kind] = {"seconds": time.perf_counter() - t0, "stages": result.stage_seconds,
                     "parity_max_rel": result.parity.max_rel, "nodes": result.node_count,
                     "size_mb": result.size_bytes / 1e6}
    return out, path


def _latencies(model, onnx_path: Path, res: int, batches, cfg) -> dict:
    """Eager and ONNX Runtime latency of one model per batch size."""
    import onnxruntime as ort
    import torch

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    out = {}
    for b in batches:
        x = torch.randn(b, 3, res, res)
        feed = {"input": x.numpy()}
        with torch.inference_mode():
            eager = _latency(lambda m=model, a=x: m(a), cfg)
        onnx_t = _latency(lambda s=sess, f=feed: s.run(None, f), cfg)
        out[f"batch{b}"] = {"eager": eager, "onnxruntime": onnx_t, "speedup": eager["median_ms"] / onnx_t["median_ms"]}
    return out


def run(models, batches=(1, 8), resolution: int | None = None, quick: bool = False,
        threads: int | None = None) -> dict:
    """Measure and return all figures as a dict (``threads``: intra-op threads of both runtimes)."""
    import onnxruntime as ort
    import torch

    from fsrt.exporters.model_source import load_model

    if threads:
        torch.set_num_threads(threads)
    cfg = _timing(quick)
    out = {"torch_threads": torch.get_num_threads(), "onnxruntime": ort.__version__, "torch": torch.__version__,
           "load_average_before": os.getloadavg()[0], "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for source in models:
            model, spec = load_model(source)
            name = spec.name or str(source)
            res = resolution or spec.resolution
            exports, dynamic_path = _exports(model, name, res, Path(tmp), static=not quick)
            out["models"][name] = {"resolution": res, "export": exports,
                                   "latency": _latencies(model, dynamic_path, res, batches, cfg)}
    out["load_average_after"] = os.getloadavg()[0]
    return out


def print_table(figures: dict) -> None:
    """Print the figures as two tables (export time, latency)."""
    from rich.console import Console
    from rich.table import Table

    con = Console(width=120)
    t = Table(title=f"export time (torch {figures['torch']}, {figures['torch_threads']} threads)")
    for col in ("model", "res", "batch", "total s", "export s", "slim s", "parity s", "parity rel", "nodes", "MB"):
        t.add_column(col, justify="right" if col != "model" else "left", no_wrap=True)
    for name, e in figures["models"].items():
        for kind, x in e["export"].items():
            st, rel = x["stages"], x["parity_max_rel"]
            t.add_row(name, str(e["resolution"]), kind, f"{x['seconds']:.1f}", f"{st['export']:.1f}",
                      f"{st['slim']:.2f}", f"{st['parity']:.2f}", "-" if rel is None else f"{rel:.1e}",
                      str(x["nodes"]), f"{x['size_mb']:.1f}")
    con.print(t)
    t = Table(title=f"CPU latency, median ms (onnxruntime {figures['onnxruntime']}; load average "
                    f"{figures['load_average_before']:.1f} -> {figures['load_average_after']:.1f})")
    for col in ("model", "batch", "eager", "eager p90", "onnxruntime", "ort p90", "speedup"):
        t.add_column(col, justify="right" if col != "model" else "left", no_wrap=True)
    for name, e in figures["models"].items():
        for b, x in e["latency"].items():
            t.add_row(name, b.removeprefix("batch"), f"{x['eager']['median_ms']:.1f}", f"{x['eager']['p90_ms']:.1f}",
                      f"{x['onnxruntime']['median_ms']:.1f}", f"{x['onnxruntime']['p90_ms']:.1f}",
                      f"{x['speedup']:.2f}x")
    con.print(t)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/export_speed.py``."""
    ap = parser(__doc__)
    ap.add_argument("--models", default=None,
                    help=f"comma-separated zoo names or spec files (default {DEFAULT_MODELS}; "
                         f"--quick: {QUICK_MODEL} with one block per stage)")
    ap.add_argument("--resolution", type=int, default=None,
                    help=f"input size (default: each model's own; --quick: {QUICK_RESOLUTION})")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for PyTorch and ONNX Runtime (default: PyTorch's default); 1 is the "
                         "robust choice on a machine shared with other work")
    args = ap.parse_args(argv)
    if args.models:
        models = tuple(m.strip() for m in args.models.split(","))
    else:
        models = (quick_spec(),) if args.quick else tuple(DEFAULT_MODELS.split(","))
    resolution = args.resolution or (QUICK_RESOLUTION if args.quick else None)
    figures = run(models, batches=(1,) if args.quick else (1, 8),
                  resolution=resolution, quick=args.quick, threads=args.threads)
    emit(figures, args.json, print_table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
