"""How well does fsrt's latency model predict networks it never measured?

Measures (or reuses from its database) a scaling sweep with the real ``fsrt bench`` machinery,
then per runtime fits the latency model (``fsrt.bench.latency_model``) on the small members
(s <= 4) and reports the error on the large ones (s = 8..32), plus the other held-out checks
(each strategy predicted from the others, each model left out, each base network left out
when several are measured): median and 90th percentile of |predicted / measured - 1|. The goal
on CPU runtimes is median <= 10% and p90 <= 20% for the s = 8..32 extrapolation.

Each runtime is swept on its own, so that all of its models are timed together in one set of
interleaved rounds (a sweep that does not fit in memory at once measures its groups minutes
apart, and a busy machine's drift between groups would bias large models against small ones).
The machine's load average and the sweep's own noise figures (window spread, round-to-round
drift) are printed with the errors: on a busy shared machine they say how much of an error is
the measurement's. Rerunning the same command reuses every stored point (refit in seconds).

    python dev/latency_model.py                  # RegNetY-400MF at 128 px, dwr/dWr/w, s=1..32,
                                                 # eager/ort/openvino, 1 thread (tens of minutes)
    python dev/latency_model.py --bases RegNetY-400MF,EfficientNet-B0 --json
    python dev/latency_model.py --quick          # smoke: RegNetX-200MF at 32 px, eager, s=1..8
    python dev/latency_model.py --simulate --bases RegNetY-400MF,EfficientNet-B0

``--simulate`` measures nothing: it times every network on a *simulated* machine where each conv
and FC layer costs max(compute at a rate that falls for narrow and grouped layers, bytes moved at a
fixed bandwidth) plus a dispatch cost, summed layer by layer. It separates the error of the
model's form (whole-network sums with shared costs) from measurement noise: a busy machine
cannot tell them apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fsrt.bench.latency_model import SMALL_S, by_family, model_series
from fsrt.bench.noise import run_noise
from fsrt.bench.plan import BenchPlan, plan_variants
from fsrt.bench.rounds import RoundConfig
from fsrt.bench.timing import WindowConfig
from fsrt.scaling import parse_strategy

GOAL_MEDIAN, GOAL_P90 = 0.10, 0.20


def measure(args) -> tuple[list, dict, dict]:
    """Run (or resume) the sweep; returns its points, windows by measurement and the load averages."""
    from fsrt.bench.fingerprint import fingerprint, machine_id
    from fsrt.bench.store import Store
    from fsrt.bench.sweep_run import SweepProgress, run_sweep

    window = WindowConfig(warmup_s=args.warmup_s, window_s=args.measure_s)
    plan = BenchPlan(sources=tuple(args.bases), strategies=tuple(parse_strategy(s) for s in args.strategies),
                     s_values=tuple(args.s), precisions=("fp32",), threads=args.threads, resolution=args.resolution,
                     window=window, rounds=RoundConfig(max_rounds=args.max_rounds))

    class Say(SweepProgress):
        def phase(self, name, total):
            print(f"  {name} ({total})", file=sys.stderr, flush=True)

        def waiting(self, holder):
            print(f"  waiting for another fsrt measurement ({holder}) to finish", file=sys.stderr, flush=True)

    fp = fingerprint()
    mid = machine_id(fp)
    load_before = os.getloadavg()
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    with Store(args.db) as store:
        store.add_machine(mid, fp)
        run = store.start_run("latency-model", mid, plan.to_config(args.runtimes))
        t0 = time.perf_counter()
        points = []
        for runtime in args.runtimes:  # one runtime at a time: its models share their rounds
            points += run_sweep(plan, plan_variants(plan), [runtime], store, run, mid, Path(args.work), Say())
        store.finish_run(run)
        windows = store.windows(mid, sorted({p.mkey for p in points if p.mkey}))
    load = {"before": load_before, "after": os.getloadavg(), "cores": os.cpu_count(),
            "sweep_s": time.perf_counter() - t0}
    return points, windows, load


def simulate(args) -> list:
    """The sweep's points timed on the simulated per-layer machine (see the module docstring)."""
    import torch
    from torch import nn

    from fsrt.bench.points import Point
    from fsrt.complexity import complexity, layer_count
    from fsrt.models import build_model

    peak, bandwidth, dispatch_s = 60e9, 15e9, 8e-6  # FLOP/s, bytes/s, seconds per layer

    def layer_seconds(m, inp, out) -> float:
        x = inp[0]
        if isinstance(m, nn.Conv2d):
            macs = out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            per_group = m.in_channels // m.groups
            eff = min(1.0, (per_group / 64) ** 0.5) * (min(1.0, (m.out_channels // m.groups / 32) ** 0.3)
                                                       if m.groups > 1 else 1.0)
        else:
            macs, eff = out.numel() * m.in_features, 0.5
        moved = (x.numel() + out.numel() + m.weight.numel()) * 4
        return max(2 * macs / (peak * max(eff, 0.05)), moved / bandwidth) + dispatch_s

    points = []
    for v in plan_variants(BenchPlan(sources=tuple(args.bases), s_values=tuple(args.s), resolution=args.resolution,
                                     strategies=tuple(parse_strategy(s) for s in args.strategies))):
        model, total = build_model(v.spec, device="meta"), []
        hooks = [m.register_forward_hook(lambda m, i, o, total=total: total.append(layer_seconds(m, i, o)))
                 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            model(torch.zeros(1, 3, v.spec.resolution, v.spec.resolution, device="meta"))
        for h in hooks:
            h.remove()
        cx = complexity(v.spec)
        points += [Point(model=v.name, base=v.base, family=v.spec.family, strategy=v.strategy.name, s=v.s,
                         runtime=runtime, mode="infer", precision="fp32", batch=1, device="cpu", threads=1,
                         flops=cx.flops, params=cx.params, acts=cx.acts, layers=layer_count(v.spec), status="ok",
                         latency_ms=1e3 * sum(total) + 0.05, mkey=v.spec_hash) for runtime in ("simulated",)]
    return points


def evaluate(points: list, small_s: float, pooled: bool = False) -> list[dict]:
    """Per runtime (and model family, unless ``pooled``): the fitted model and every held-out scenario."""
    out = []
    for runtime in sorted({p.runtime for p in points}):
        mine = [p for p in points if p.runtime == runtime]
        groups = {runtime: mine} if pooled else by_family(runtime, mine)
        out += [model_series(label, pts, small_s).to_dict() for label, pts in groups.items()]
    return out


def main(argv: list[str] | None = None) -> dict:
    """Measure or reuse the sweep, fit, validate, and print (or return) the errors."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bases", default="RegNetY-400MF", help="comma list of base networks")
    ap.add_argument("--strategies", default="dwr,dWr,w")
    ap.add_argument("--s", default="1,2,4,8,16,32", help="flops multipliers")
    ap.add_argument("--runtimes", default="eager,ort,openvino")
    ap.add_argument("--resolution", type=int, default=128, help="base resolution before scaling")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-rounds", type=int, default=12)
    ap.add_argument("--measure-s", type=float, default=0.1, help="seconds per timing window")
    ap.add_argument("--warmup-s", type=float, default=0.3)
    ap.add_argument("--small-s", type=float, default=SMALL_S, help="fit on s <= this, predict the rest")
    ap.add_argument("--pooled", action="store_true", help="one model per runtime across model families")
    ap.add_argument("--simulate", action="store_true", help="time on a simulated per-layer machine (no measurement)")
    ap.add_argument("--db", default="runs/latency_model/fsrt.db")
    ap.add_argument("--work", default="runs/latency_model/work")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny model, eager only, short windows")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.bases, args.s, args.runtimes, args.resolution = "RegNetX-200MF", "1,2,4,8", "eager", 32
        args.max_rounds, args.measure_s, args.warmup_s = 6, 0.02, 0.02
        if args.db == ap.get_default("db"):
            import atexit
            import shutil
            import tempfile

            tmp = Path(tempfile.mkdtemp(prefix="fsrt-latency-model-"))
            atexit.register(shutil.rmtree, tmp, True)  # a smoke run's graphs are hundreds of MB: not left in /tmp
            args.db, args.work = str(tmp / "fsrt.db"), str(tmp / "work")
    args.bases = [b.strip() for b in args.bases.split(",") if b.strip()]
    args.strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.s = [float(v) for v in args.s.split(",")]
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if args.simulate:
        points, windows, load = simulate(args), {}, {"before": os.getloadavg(), "after": os.getloadavg(),
                                                      "cores": os.cpu_count(), "sweep_s": 0.0}
    else:
        points, windows, load = measure(args)
    noise = run_noise(windows).to_dict()
    doc = {"simulated": args.simulate, "bases": args.bases, "strategies": args.strategies, "s": args.s,
           "resolution": args.resolution, "threads": args.threads, "load": load, "noise": noise,
           "runtimes": evaluate(points, args.small_s, args.pooled)}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        report(doc)
    return doc


def report(doc: dict) -> None:
    """The errors as text: per runtime its rates, then each scenario's median and p90."""
    ld = doc["load"]
    n = doc["noise"]
    if doc.get("simulated"):
        print("simulated per-layer machine: no measurement noise")
    else:
        print(f"load average {ld['before'][0]:.1f} before, {ld['after'][0]:.1f} after ({ld['cores']} cores); sweep "
              f"{ld['sweep_s']:.0f} s; window spread typical {100 * (n['spread_median'] or 0):.1f}%, round drift "
              f"{n['drift_min'] or 0:.2f}x..{n['drift_max'] or 0:.2f}x")
    for r in doc["runtimes"]:
        m = r["model"]
        if m is None:
            print(f"{r['series']}: no model ({r['reason']})")
            continue
        rate = lambda v, u: "unused" if v is None else f"{v:.3g} {u}"  # noqa: E731
        print(f"{r['series']}: {rate(m['gflop_per_s'], 'GFLOP/s')}, act {rate(m['act_gb_per_s'], 'GB/s')}, "
              f"weights {rate(m['param_gb_per_s'], 'GB/s')}, {m['us_per_layer']:.3g} us/layer, "
              f"{m['constant_us']:.3g} us/call; fit on {m['n']}")
        for h in r["held_out"]:
            ok = h["median_abs_error"] <= GOAL_MEDIAN and h["p90_abs_error"] <= GOAL_P90
            print(f"  {h['scenario']:14s} {h['description']:55s} n={h['n']:3d} "
                  f"median {100 * h['median_abs_error']:5.1f}%"
                  f"  p90 {100 * h['p90_abs_error']:5.1f}%  {'goal met' if ok else 'goal missed'}")
            if h["scenario"] == "extrapolate":
                for p in h["predictions"]:
                    print(f"      {p['model']:32s} measured {p['measured_ms']:8.3f} ms  predicted "
                          f"{p['predicted_ms']:8.3f} ms  {100 * p['error']:+6.1f}%")


if __name__ == "__main__":
    main()
