"""How long the report takes: analysis, plots and the full write for one run and for two runs side by side.

Builds a synthetic results store in a temporary folder (real complexity of RegNetY-400MF scaled by
alpha-family strategies, synthetic latencies for five runtimes), then times each stage.

    python -m fsrt.bench.report_speed [--s-max 32] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
from pathlib import Path

from fsrt.bench import analysis, plots
from fsrt.bench.report import write_report
from fsrt.bench.store import Store
from fsrt.bench.timing import best_of

RUNTIMES = {"eager": 1.0, "torch.compile": 0.6, "onnxruntime": 0.5, "openvino": 0.33, "aotinductor": 0.55}


def synthetic_points(base: str = "RegNetY-400MF", s_max: float = 32, seed: int = 0, slow: float = 1.0) -> list[dict]:
    """Points for every runtime x alpha in (1/3, 0.8, 1) x s in 1, 2, ... s_max (latency = mix of acts and flops)."""
    from fsrt.complexity import complexity
    from fsrt.scaling import alpha_strategy, scale_spec
    from fsrt.zoo import zoo_spec

    rng = random.Random(seed)
    spec = zoo_spec(base)
    models = []
    for alpha in (1 / 3, 0.8, 1.0):
        st = alpha_strategy(alpha)
        s = 1.0
        while s <= s_max:
            sc = spec if s == 1 else scale_spec(spec, st, s).spec
            models.append((st, s, sc, complexity(sc)))
            s *= 2
    pts = []
    for runtime, c in RUNTIMES.items():
        for st, s, sc, cx in models:
            med = slow * c * (3e-6 * cx.acts + 4e-8 * cx.flops) * math.exp(rng.gauss(0, 0.03))
            pts.append({"model": sc.name, "base": base, "family": sc.family, "strategy": st.name, "alpha": st.alpha,
                        "s": s, "flops_mult": cx.flops / models[0][3].flops, "runtime": runtime, "precision": "fp32",
                        "batch": 1, "resolution": sc.resolution, "device": "cpu", "threads": 2, "flops": cx.flops,
                        "params": cx.params, "acts": cx.acts, "status": "ok", "median_ms": med, "p90_ms": med * 1.05,
                        "p99_ms": med * 1.1, "mean_ms": med, "min_ms": med * 0.97, "cv": 0.02, "n": 30, "unstable": 0,
                        "peak_mem_bytes": 8 * cx.acts + 4 * cx.params, "l2": "warm",
                        "floor_compulsory_ms": 2 * cx.flops / 1.8e11 * 1e3,
                        "floor_layer_ms": max(2 * cx.flops / 1.8e11, 8 * cx.acts / 6.5e10) * 1e3})
    return pts


def main(argv: list[str] | None = None) -> None:
    """Print the time (best of ``--repeat``) of each report stage."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s-max", type=float, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fsrt.db"
        with Store(db) as store:
            ids = []
            for name, machine, slow in (("machine-a", "a", 1.0), ("machine-b", "b", 1.4)):
                store.add_machine(machine, {"cpu": f"synthetic {machine}"})
                store.put_ceiling(machine, "cpu", "fp32", 2, 1.8e11, 6.5e10)
                run = store.start_run(name, machine, {})
                pts = synthetic_points(s_max=args.s_max, slow=slow)
                for i, p in enumerate(pts):
                    store.put_point(run, machine, str(i), p)
                ids.append(run)
            pts = store.run_points(ids[0])
            labels = analysis.series_labels(pts)
            rows = [
                ("points per run", len(pts), None),
                ("analysis.summarize", None, best_of(lambda: analysis.summarize(pts), args.repeat)),
                ("plot latency_vs_metrics", None, best_of(lambda: plots.latency_vs_metrics(pts, labels), args.repeat)),
                ("plot latency_vs_s", None, best_of(lambda: plots.latency_vs_s(pts, labels), args.repeat)),
                ("plot roofline", None, best_of(lambda: plots.roofline_efficiency(pts, labels), args.repeat)),
                ("plot memory", None, best_of(lambda: plots.memory(pts, labels), args.repeat)),
                ("write_report, 1 run", None,
                 best_of(lambda: write_report(store, ids[:1], Path(tmp) / "one"), args.repeat)),
                ("write_report, 2 runs side by side", None,
                 best_of(lambda: write_report(store, ids, Path(tmp) / "two"), args.repeat)),
            ]
            size = sum(f.stat().st_size for f in (Path(tmp) / "one").rglob("*") if f.is_file())
            html = (Path(tmp) / "one" / "report.html").stat().st_size
    print(f"{'stage':36s} {'value':>10s}")
    for name, count, secs in rows:
        print(f"{name:36s} {count if count is not None else f'{secs * 1e3:8.0f} ms':>10}")
    print(f"{'report folder, 1 run':36s} {size / 1024:7.0f} KiB")
    print(f"{'report.html, 1 run':36s} {html / 1024:7.0f} KiB")


if __name__ == "__main__":
    main()
