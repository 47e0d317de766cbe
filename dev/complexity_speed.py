"""Analytic complexity of the whole zoo and of many sampled RegNets.

Times (shortest of a few repeats, ``fsrt.bench.timing.best_of``): building every zoo spec and
computing its exact flops/params/acts; drawing N RegNetY models with the design-space sampler
(``fsrt.design_space.sample_regnet``: six numbers, validity check, expansion into stages and
block compatibility); and the complexity of those N specs (the sampler's inner loop).

    python dev/complexity_speed.py [--n 10000] [--seed 0] [--quick] [--json]
"""

from __future__ import annotations

from devcli import emit, parser


def run(n: int, seed: int, repeats: int) -> dict:
    """Measure and return all figures as a dict."""
    import numpy as np

    from fsrt.bench.timing import best_of
    from fsrt.complexity import complexity
    from fsrt.design_space import sample_regnet
    from fsrt.zoo import zoo_names, zoo_spec

    names = zoo_names()
    t_zoo_spec = best_of(lambda: [zoo_spec(m) for m in names], repeats)
    specs = [zoo_spec(m) for m in names]
    t_zoo_cx = best_of(lambda: [complexity(s) for s in specs], repeats)

    def draw():
        rng = np.random.default_rng(seed)
        return [sample_regnet(rng, "regnety")[1] for _ in range(n)]

    t_draw = best_of(draw, repeats)
    sampled = draw()
    t_cx = best_of(lambda: [complexity(s) for s in sampled], repeats)
    flops = sorted(complexity(s).flops for s in sampled)
    return {"zoo": {"models": len(names), "specs_ms": t_zoo_spec * 1e3, "complexity_ms": t_zoo_cx * 1e3},
            "sampled": {"n": n, "seed": seed, "draw_s": t_draw, "complexity_s": t_cx,
                        "us_per_spec": (t_draw + t_cx) / n * 1e6, "median_flops": flops[len(flops) // 2]}}


def print_text(res: dict) -> None:
    """A short plain-text report of the figures."""
    z, s = res["zoo"], res["sampled"]
    print(f"zoo ({z['models']} models): build specs {z['specs_ms']:.1f} ms, complexity {z['complexity_ms']:.1f} ms, "
          f"together {z['specs_ms'] + z['complexity_ms']:.1f} ms")
    print(f"{s['n']} sampled RegNetY specs: draw + expand {s['draw_s']:.2f} s, complexity {s['complexity_s']:.2f} s "
          f"({s['us_per_spec']:.0f} us per spec); median flops {s['median_flops'] / 1e9:.2f} G")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/complexity_speed.py``."""
    ap = parser(__doc__)
    ap.add_argument("--n", type=int, default=None, help="RegNets to sample (default 10000; --quick: 50)")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    args = ap.parse_args(argv)
    n = args.n or (50 if args.quick else 10_000)
    emit(run(n, args.seed, 1 if args.quick or n > 20_000 else 3), args.json, print_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
