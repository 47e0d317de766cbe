"""How long the report takes: analysis, plots and the full write for one run and two side by side.

Builds a synthetic results store in a temporary folder (real complexity of RegNetY-400MF scaled
by alpha-family strategies, synthetic latencies for five runtimes), then times each stage with
fsrt's harness (shortest of ``--repeat`` runs, ``fsrt.bench.timing.best_of``).

    python dev/report_speed.py [--s-max 32] [--repeat 3] [--quick] [--json]
"""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

from devcli import emit, parser

RUNTIMES = {"eager": 1.0, "torch.compile": 0.6, "onnxruntime": 0.5, "openvino": 0.33, "aotinductor": 0.55}


def synthetic_points(base: str = "RegNetY-400MF", s_max: float = 32, seed: int = 0, slow: float = 1.0) -> list:
    """Points for every runtime x alpha in (1/3, 0.8, 1) x s in 1, 2, ... s_max (latency = mix of acts and flops)."""
    from fsrt.bench.points import Point
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
            pts.append(Point(model=sc.name, base=base, family=sc.family, strategy=st.name, alpha=st.alpha,
                             e_d=st.e_d, e_w=st.e_w, e_r=st.e_r, s=s, flops_mult=cx.flops / models[0][3].flops,
                             runtime=runtime, mode="infer", precision="fp32", batch=1, resolution=sc.resolution,
                             device="cpu", threads=2, flops=cx.flops, params=cx.params, acts=cx.acts, status="ok",
                             latency_ms=med, latency_lo_ms=med * 0.98, latency_hi_ms=med * 1.02, rounds=6,
                             median_ms=med, p90_ms=med * 1.05, p99_ms=med * 1.1, mean_ms=med, min_ms=med * 0.97,
                             cv=0.02, n=30, peak_mem_bytes=8 * cx.acts + 4 * cx.params, l2="warm",
                             floor_compulsory_ms=2 * cx.flops / 1.8e11 * 1e3,
                             floor_layer_ms=max(2 * cx.flops / 1.8e11, 8 * cx.acts / 6.5e10) * 1e3))
    return pts


def run(s_max: float, repeat: int, quick: bool = False) -> dict:
    """Measure and return all figures as a dict (stage times in ms, sizes in KiB); ``quick`` times
    the analysis and the two report writes only (the plots are drawn inside the writes)."""
    from fsrt.bench import analysis, plots
    from fsrt.bench.conclusions import summarize
    from fsrt.bench.report import write_report
    from fsrt.bench.store import Store
    from fsrt.bench.timing import best_of

    with tempfile.TemporaryDirectory() as tmp:
        with Store(Path(tmp) / "fsrt.db") as store:
            ids = []
            for name, machine, slow in (("machine-a", "a", 1.0), ("machine-b", "b", 1.4)):
                store.add_machine(machine, {"cpu": f"synthetic {machine}"})
                store.put_ceiling(machine, "cpu", "fp32", 2, 1.8e11, 6.5e10)
                run_id = store.start_run(name, machine, {})
                for i, p in enumerate(synthetic_points(s_max=s_max, slow=slow)):
                    store.put_point(run_id, machine, str(i), p)
                ids.append(run_id)
            pts = store.run_points(ids[0])
            labels = analysis.series_labels(pts)
            stages = {
                "conclusions.summarize": lambda: summarize(pts),
                "plot latency_vs_metrics": lambda: plots.latency_vs_metrics(pts, labels),
                "plot latency_vs_s": lambda: plots.latency_vs_s(pts, labels),
                "plot roofline": lambda: plots.roofline_efficiency(pts, labels),
                "plot memory": lambda: plots.memory(pts, labels),
                "write_report, 1 run": lambda: write_report(store, ids[:1], Path(tmp) / "one"),
                "write_report, 2 runs side by side": lambda: write_report(store, ids, Path(tmp) / "two"),
            }
            if quick:
                stages = {k: v for k, v in stages.items() if not k.startswith("plot")}
            ms = {name: best_of(fn, repeat) * 1e3 for name, fn in stages.items()}
            folder = sum(f.stat().st_size for f in (Path(tmp) / "one").rglob("*") if f.is_file())
            html = (Path(tmp) / "one" / "report.html").stat().st_size
    return {"points_per_run": len(pts), "stage_ms": ms, "report_folder_kib": folder / 1024,
            "report_html_kib": html / 1024}


def print_text(res: dict) -> None:
    """A short plain-text report of the figures."""
    print(f"{'stage':36s} {'value':>10s}")
    print(f"{'points per run':36s} {res['points_per_run']:>10}")
    for name, ms in res["stage_ms"].items():
        print(f"{name:36s} {ms:7.0f} ms")
    print(f"{'report folder, 1 run':36s} {res['report_folder_kib']:6.0f} KiB")
    print(f"{'report.html, 1 run':36s} {res['report_html_kib']:6.0f} KiB")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/report_speed.py``."""
    ap = parser(__doc__)
    ap.add_argument("--s-max", type=float, default=None, help="largest flops multiplier (default 32; --quick: 2)")
    ap.add_argument("--repeat", type=int, default=None, help="repeats per stage (default 3; --quick: 1)")
    args = ap.parse_args(argv)
    s_max = args.s_max or (2 if args.quick else 32)
    repeat = args.repeat or (1 if args.quick else 3)
    emit(run(s_max, repeat, args.quick), args.json, print_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
