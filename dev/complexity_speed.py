"""Benchmark: analytic complexity of the whole zoo and of many generated RegNet specs.

    python -m fsrt.bench.complexity_speed [--n 10000] [--seed 0]

Prints wall times (best of 3) for: building and evaluating every zoo spec, and generating,
expanding and evaluating N random RegNets (the sampler's inner loop: spec from six numbers,
block compatibility, exact flops/params/acts).
"""

from __future__ import annotations

import argparse
import math
import random

from fsrt.bench.timing import best_of
from fsrt.complexity import complexity
from fsrt.regnet import RegNetParams, is_valid_regnet
from fsrt.spec import ModelSpec, StemSpec, regnet_stages
from fsrt.zoo import zoo_names, zoo_spec


def random_regnets(n: int, seed: int) -> list[RegNetParams]:
    """``n`` valid RegNetY-style parameter sets drawn log-uniformly (as in the RegNet space)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        d = rng.randint(12, 28)
        w0 = 8 * round(math.exp(rng.uniform(math.log(8), math.log(256))) / 8) or 8
        wa = math.exp(rng.uniform(math.log(8), math.log(256)))
        wm = math.exp(rng.uniform(math.log(1.5), math.log(3)))
        g = rng.choice([1, 2, 4, 8, 16, 32])
        if is_valid_regnet(d, w0, wa, wm):
            out.append(RegNetParams(d, w0, wa, wm, g, 1.0, "y", 0.25))
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    names = zoo_names()
    t_zoo_spec = best_of(lambda: [zoo_spec(n) for n in names], 3)
    specs = [zoo_spec(n) for n in names]
    t_zoo_cx = best_of(lambda: [complexity(s) for s in specs], 3)
    print(f"zoo ({len(names)} models): build specs {t_zoo_spec * 1e3:.1f} ms, complexity {t_zoo_cx * 1e3:.1f} ms, "
          f"together {(t_zoo_spec + t_zoo_cx) * 1e3:.1f} ms")

    params = random_regnets(args.n, args.seed)
    stem = StemSpec("simple", (32,), "none")

    def generate_and_count():
        return [complexity(ModelSpec("regnety", 224, stem, regnet_stages(p))) for p in params]

    t_gen = best_of(generate_and_count, 1 if args.n > 20_000 else 3)
    flops = sorted(c.flops for c in generate_and_count())
    print(f"{args.n} random RegNetY specs: generate + expand + complexity {t_gen:.2f} s "
          f"({t_gen / args.n * 1e6:.0f} us per spec); median flops {flops[len(flops) // 2] / 1e9:.2f} G")


if __name__ == "__main__":
    main()
