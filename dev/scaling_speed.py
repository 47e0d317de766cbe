"""Speed of the scaler, the flops-target search, the design-space samplers and the bootstrap.

Run: ``python -m fsrt.bench.scaling_speed [--quick] [--json]``. Pure Python/NumPy, CPU only;
figures are medians over repeats (``time.perf_counter_ns``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e9)
    return statistics.median(times)


def run(quick: bool = False) -> dict:
    """Measure and return all figures as a dict."""
    import numpy as np

    from fsrt.complexity import complexity
    from fsrt.design_space import bootstrap_best, sample_band
    from fsrt.scaling import alpha_strategy, scale_spec, scale_to_flops
    from fsrt.sweep import parse_sweep
    from fsrt.zoo import zoo_names, zoo_spec

    reps = 3 if quick else 7
    out: dict = {}
    # 1. one scale_spec call (quantize + exact complexity) on three model sizes
    per_call = {}
    fast, n = alpha_strategy(0.8), 50
    for name in ("RegNetY-400MF", "EfficientNet-B0", "ResNet-RS-420"):
        base = zoo_spec(name)
        cx = complexity(base)
        per_call[name] = _median_s(lambda b=base, c=cx: [scale_spec(b, fast, 4.0, base_complexity=c)
                                                         for _ in range(n)], reps) / n * 1e3
    out["scale_spec_ms"] = per_call
    # 2. the whole zoo by a sweep: 3 alphas x s=1..32
    _, s_values = parse_sweep("s=1..32")
    strategies = [alpha_strategy(a) for a in (0.33, 0.8, 1.0)]
    specs = [zoo_spec(n) for n in zoo_names()]

    def zoo_sweep():
        for spec in specs:
            cx = complexity(spec)
            for st in strategies:
                for s in s_values:
                    scale_spec(spec, st, s, base_complexity=cx)

    t = _median_s(zoo_sweep, max(1, reps // 2))
    count = len(specs) * len(strategies) * len(s_values)
    out["zoo_sweep"] = {"models": len(specs), "scaled_models": count, "seconds": t, "per_model_ms": t / count * 1e3}
    # 3. flops-target search
    targets = [("RegNetY-400MF", "dWr", 4e9), ("EfficientNet-B0", "dWr", 1.6e9), ("ResNet-50", "w", 8e9),
               ("ResNet-RS-420", "dwr", 1e11)]
    search = {}
    for name, strat, target in targets:
        base = zoo_spec(name)
        res = scale_to_flops(base, strat, target)
        search[f"{name} {strat} {target:.3g}"] = {
            "ms": _median_s(lambda b=base, s=strat, t=target: scale_to_flops(b, s, t), reps) * 1e3,
            "evaluations": res.evaluations, "miss_pct": res.miss * 100}
    out["target_flops_search"] = search
    # 4. sampler throughput in the 360-400MF band
    n_keep = 8 if quick else 32
    samplers = {}
    for space in ("regnetx", "anynetx_a", "anynetx_e"):
        t0 = time.perf_counter()
        res = sample_band(space, n_keep, 360e6, 400e6, seed=0)
        dt = time.perf_counter() - t0
        samplers[space] = {"kept": n_keep, "draws": res.draws, "seconds": dt, "draws_per_s": res.draws / dt,
                           "kept_per_s": n_keep / dt}
    out["sample_band_360M_400M"] = samplers
    # 5. bootstrap of the best model: 10^4 repetitions over 100 models
    rng = np.random.default_rng(0)
    vals, errs = rng.normal(size=100), rng.uniform(20, 40, size=100)
    out["bootstrap_1e4_reps_n100_ms"] = _median_s(lambda: bootstrap_best(vals, errs, reps=10_000), reps) * 1e3
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the figures (a small report, or JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Fewer repeats and samples.")
    ap.add_argument("--json", action="store_true", help="Print one JSON document.")
    args = ap.parse_args(argv)
    res = run(args.quick)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("scale_spec (quantize + exact complexity), ms per call:")
    for k, v in res["scale_spec_ms"].items():
        print(f"  {k:18s} {v:.3f}")
    z = res["zoo_sweep"]
    print(f"zoo sweep: {z['models']} models x 3 alphas x s=1..32 = {z['scaled_models']} scaled models in "
          f"{z['seconds']:.2f} s ({z['per_model_ms']:.3f} ms each)")
    print("flops-target search:")
    for k, v in res["target_flops_search"].items():
        print(f"  {k:32s} {v['ms']:7.1f} ms  {v['evaluations']} evaluations  miss {v['miss_pct']:+.2f}%")
    print("design-space sampling, 360-400MF band:")
    for k, v in res["sample_band_360M_400M"].items():
        print(f"  {k:10s} {v['kept']} kept / {v['draws']} draws in {v['seconds']:.2f} s "
              f"({v['draws_per_s']:.0f} draws/s, {v['kept_per_s']:.1f} kept/s)")
    print(f"bootstrap_best, 10^4 reps over 100 models: {res['bootstrap_1e4_reps_n100_ms']:.1f} ms")


if __name__ == "__main__":
    main()
