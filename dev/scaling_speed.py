"""Speed of the scaler, the flops-target search, the design-space samplers and the bootstrap.

Pure Python/NumPy, CPU only. Each figure is the shortest of a few repeats
(``fsrt.bench.timing.best_of``): these are throughput probes, where the minimum is the figure
least disturbed by other work on the machine.

    python dev/scaling_speed.py [--quick] [--json]
"""

from __future__ import annotations

import time

from devcli import emit, parser


def _scale_spec_ms(reps: int, calls: int) -> dict:
    """One ``scale_spec`` call (quantize + exact complexity) on three model sizes, ms per call."""
    from fsrt.bench.timing import best_of
    from fsrt.complexity import complexity
    from fsrt.scaling import alpha_strategy, scale_spec
    from fsrt.zoo import zoo_spec

    fast, out = alpha_strategy(0.8), {}
    for name in ("RegNetY-400MF", "EfficientNet-B0", "ResNet-RS-420"):
        base = zoo_spec(name)
        cx = complexity(base)
        work = lambda b=base, c=cx: [scale_spec(b, fast, 4.0, base_complexity=c) for _ in range(calls)]
        out[name] = best_of(work, reps) / calls * 1e3
    return out


def _zoo_sweep(reps: int, names) -> dict:
    """The zoo (or ``names``) scaled by three alphas over s=1..32."""
    from fsrt.bench.timing import best_of
    from fsrt.complexity import complexity
    from fsrt.scaling import alpha_strategy, scale_spec
    from fsrt.sweep import parse_sweep
    from fsrt.zoo import zoo_spec

    _, s_values = parse_sweep("s=1..32")
    strategies = [alpha_strategy(a) for a in (0.33, 0.8, 1.0)]
    specs = [zoo_spec(n) for n in names]

    def sweep():
        for spec in specs:
            cx = complexity(spec)
            for st in strategies:
                for s in s_values:
                    scale_spec(spec, st, s, base_complexity=cx)

    t = best_of(sweep, reps)
    count = len(specs) * len(strategies) * len(s_values)
    return {"models": len(specs), "scaled_models": count, "seconds": t, "per_model_ms": t / count * 1e3}


def _target_search(reps: int, targets) -> dict:
    """``scale_to_flops`` on a few (model, strategy, flops target) cases."""
    from fsrt.bench.timing import best_of
    from fsrt.scaling import scale_to_flops
    from fsrt.zoo import zoo_spec

    out = {}
    for name, strat, target in targets:
        base = zoo_spec(name)
        res = scale_to_flops(base, strat, target)
        out[f"{name} {strat} {target:.3g}"] = {
            "ms": best_of(lambda b=base, s=strat, t=target: scale_to_flops(b, s, t), reps) * 1e3,
            "evaluations": res.evaluations, "miss_pct": res.miss * 100}
    return out


def _samplers(n_keep: int) -> dict:
    """``sample_band`` throughput in the 360-400MF band (one run each: a run is long and seeded)."""
    from fsrt.design_space import sample_band

    out = {}
    for space in ("regnetx", "anynetx_a", "anynetx_e"):
        t0 = time.perf_counter()
        res = sample_band(space, n_keep, 360e6, 400e6, seed=0)
        dt = time.perf_counter() - t0
        out[space] = {"kept": n_keep, "draws": res.draws, "seconds": dt, "draws_per_s": res.draws / dt,
                      "kept_per_s": n_keep / dt}
    return out


def run(quick: bool = False) -> dict:
    """Measure and return all figures as a dict."""
    import numpy as np

    from fsrt.bench.timing import best_of
    from fsrt.design_space import bootstrap_best
    from fsrt.zoo import zoo_names

    reps = 2 if quick else 7
    targets = [("RegNetY-400MF", "dWr", 4e9), ("EfficientNet-B0", "dWr", 1.6e9), ("ResNet-50", "w", 8e9),
               ("ResNet-RS-420", "dwr", 1e11)]
    rng = np.random.default_rng(0)
    vals, errs = rng.normal(size=100), rng.uniform(20, 40, size=100)
    boot_reps = 1_000 if quick else 10_000
    return {
        "scale_spec_ms": _scale_spec_ms(reps, 5 if quick else 50),
        "zoo_sweep": _zoo_sweep(max(1, reps // 2), zoo_names()[:3] if quick else zoo_names()),
        "target_flops_search": _target_search(reps, targets[:1] if quick else targets),
        "sample_band_360M_400M": _samplers(2 if quick else 32),
        "bootstrap_reps": boot_reps,
        "bootstrap_n100_ms": best_of(lambda: bootstrap_best(vals, errs, reps=boot_reps), reps) * 1e3,
    }


def print_text(res: dict) -> None:
    """A short plain-text report of the figures."""
    print("scale_spec (quantize + exact complexity), ms per call (best of repeats):")
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
    print(f"bootstrap_best, {res['bootstrap_reps']} reps over 100 models: {res['bootstrap_n100_ms']:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/scaling_speed.py``."""
    args = parser(__doc__).parse_args(argv)
    emit(run(args.quick), args.json, print_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
