"""The timing options every measuring command shares (``fsrt bench``, ``fsrt advise``): how long
each window is, how many interleaved rounds, the confidence target and the time budget.

One definition, so the two commands measure the same way by default (and reuse each other's
stored points, whose identity holds these settings) and validate them with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import click

TIMING_KEYS = ("l2", "rounds", "max_rounds", "target_ci", "budget_s", "measure_s", "warmup_s")


def timing_options(fn: Callable) -> Callable:
    """Add the shared timing options to a click command (keyword arguments named in ``TIMING_KEYS``)."""
    options = [
        click.option("--l2", type=click.Choice(["warm", "cold"]), default="warm", show_default=True,
                     help="GPU: time with a warm L2, or flush it before every call."),
        click.option("--rounds", type=int, default=6, show_default=True,
                     help="Minimum interleaved rounds per point (each round times every pending point once)."),
        click.option("--max-rounds", type=int, default=30, show_default=True, help="Most rounds per point."),
        click.option("--target-ci", type=float, default=0.02, show_default=True,
                     help="Stop a point when its 95%% interval is within this fraction of its figure."),
        click.option("--budget-s", type=float, default=60.0, show_default=True,
                     help="Seconds of rounds after which no new round starts once every point has its --rounds "
                          "minimum (points still above --target-ci are then reported unstable, with their wider "
                          "interval)."),
        click.option("--measure-s", type=float, default=0.1, show_default=True,
                     help="Seconds of timed calls per window (at least 3 calls)."),
        click.option("--warmup-s", type=float, default=0.3, show_default=True, help="Seconds of warm-up per point."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _positive(value: float, what: str, upper: float | None = None) -> float:
    from fsrt.errors import FsrtError

    if not (math.isfinite(value) and value > 0) or (upper is not None and value >= upper):
        bound = f" and below {upper:g}" if upper is not None else ""
        raise FsrtError(f"{what} must be a positive number{bound}, got {value!r}")
    return value


def timing_configs(opts: dict):
    """``(WindowConfig, RoundConfig)`` from the options, validated (one-line errors)."""
    from fsrt.bench.rounds import RoundConfig
    from fsrt.bench.timing import WindowConfig
    from fsrt.errors import FsrtError

    if opts["rounds"] < 6:
        raise FsrtError(f"--rounds must be at least 6 (the fewest rounds that give a paired comparison "
                        f"its 95% interval), got {opts['rounds']}")
    if opts["max_rounds"] < opts["rounds"]:
        raise FsrtError(f"--max-rounds ({opts['max_rounds']}) must be at least --rounds ({opts['rounds']})")
    budget = opts["budget_s"]
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise FsrtError(f"--budget-s must be zero or a positive number of seconds, got {budget!r}")
    window = WindowConfig(warmup_s=_positive(opts["warmup_s"], "--warmup-s"),
                          window_s=_positive(opts["measure_s"], "--measure-s"), l2=opts["l2"])
    rounds = RoundConfig(min_rounds=opts["rounds"], max_rounds=opts["max_rounds"],
                         target_ci=_positive(opts["target_ci"], "--target-ci", upper=1.0), budget_s=budget)
    return window, rounds
