"""Intervals for everything the report compares or fits.

- A **ratio of two figures** measured in the same sweep is *paired*: both measurements had a
  window in the same rounds, moments apart, so the machine's drift cancels in the per-round
  ratio of window figures; its median over rounds gets the distribution-free interval of a median
  (``stats.median_ci``).
- A ratio of figures from different sweeps (two runs, two machines) is *independent*: the two
  intervals combine in log space (half-widths add in quadrature).
- A **geometric mean of ratios across runs** keeps the mean of its ratios' half-widths: the points
  of one run share the machine's level during that run, so averaging them does not narrow it.
- A **Pearson r or a fitted exponent** gets a bootstrap interval: the points are resampled
  with replacement (seeded, so a report is reproducible) and the statistic recomputed.

A comparison is *resolved* when its interval excludes 1 (ratios) or 0 (differences); the report
says "not resolved" otherwise and makes no claim.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from fsrt.bench.points import Point
from fsrt.bench.rounds import Window
from fsrt.bench.stats import median, median_ci, percentile

Z95 = 1.959963984540054
PAIR_WINDOW_S = 120.0  # windows of one round are seconds apart; more means they were not measured together
BOOTSTRAP_REPS = 2000
BOOTSTRAP_MIN_POINTS = 5  # fewer points make resamples of 1-2 distinct values: r = +-1, meaningless intervals


@dataclass(frozen=True)
class Interval:
    """A value with its 95% interval (``lo``/``hi`` None when it cannot be given)."""

    value: float
    lo: float | None
    hi: float | None
    method: str

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)

    @property
    def log_half_width(self) -> float | None:
        """Half-width in log space (the larger side), or None without an interval."""
        if not (self.lo and self.hi):
            return None
        return max(math.log(self.hi / self.value), math.log(self.value / self.lo))

    def excludes(self, x: float) -> bool:
        """Whether the interval lies wholly on one side of ``x``."""
        return self.lo is not None and self.hi is not None and (self.lo > x or self.hi < x)


def log_half_width(p: Point) -> float | None:
    """Half-width of a point's interval in log space (the larger side), or None."""
    if not (p.measured and p.latency_lo_ms and p.latency_hi_ms):
        return None
    return max(math.log(p.latency_hi_ms / p.latency_ms), math.log(p.latency_ms / p.latency_lo_ms))


def independent_ratio(a: Point, b: Point) -> Interval:
    """``a / b`` for figures measured apart: log half-widths add in quadrature."""
    value = a.latency_ms / b.latency_ms
    ha, hb = log_half_width(a), log_half_width(b)
    if ha is None or hb is None:
        return Interval(value, None, None, "independent (no interval)")
    h = math.hypot(ha, hb)
    return Interval(value, value * math.exp(-h), value * math.exp(h), "independent intervals")


def paired_ratio(a: list[Window], b: list[Window], confidence: float = 0.95) -> Interval | None:
    """Median over shared rounds of ``a``'s window figure over ``b``'s, with its interval; None when
    fewer than 6 rounds were measured together."""
    by_round = {w.round: w for w in b if not w.dropped}
    ratios = [w.value / by_round[w.round].value for w in a
              if not w.dropped and w.round in by_round and abs(w.started - by_round[w.round].started) <= PAIR_WINDOW_S]
    ci = median_ci(ratios, confidence)
    if ci is None:
        return None
    return Interval(median(ratios), ci[0], ci[1], f"paired rounds (n={len(ratios)})")


def ratio(a: Point, b: Point, windows: dict[str, list[Window]] | None = None,
          movement: float | None = None) -> Interval:
    """``a / b`` latency: paired over shared rounds where both have windows, else independent;
    ``movement`` (the machine's measured point-by-point movement between runs, log sd) widens it
    so that it holds for the machine, not only for this run's minutes."""
    if windows:
        wa, wb = windows.get(a.measurement_id), windows.get(b.measurement_id)
        if wa and wb:
            paired = paired_ratio(wa, wb)
            if paired is not None:
                return with_movement(paired, movement)
    return with_movement(independent_ratio(a, b), movement)


def with_movement(iv: Interval | None, sd: float | None) -> Interval | None:
    """A ratio of two figures with the machine's movement between runs added to its interval: each
    figure moves by a draw of log standard deviation ``sd`` independent of its within-run error, so
    their ratio by one of sqrt(2) sd, and the log half-widths add in quadrature. Unchanged without
    ``sd`` or without an interval."""
    if iv is None or not sd or iv.log_half_width is None:
        return iv
    h = math.hypot(iv.log_half_width, Z95 * math.sqrt(2.0) * sd)
    return Interval(iv.value, iv.value * math.exp(-h), iv.value * math.exp(h),
                    iv.method + ", with the machine's measured movement between runs")


def geomean_ratio(ratios: Sequence[Interval], shared_errors: bool) -> Interval | None:
    """Geometric mean of ratios, its interval from the ratios' own intervals (None when empty).

    ``shared_errors``: whether the ratios may err together. Two runs' figures do: every point of a
    run was measured at that run's level of the machine, which no point's interval can tell apart
    from its own error, and averaging n points would shrink the interval by sqrt(n) and turn the
    machine's 5% shift between two runs of +-5% points into a resolved "1.05x slower". Whatever the correlation,
    the standard error of a mean is at most the mean of the standard errors (Cauchy-Schwarz), so
    the log half-width is then the mean of the ratios' log half-widths: exact for one common
    shift, conservative for independent errors. Paired ratios within one sweep cancel the drift
    round by round and keep the independent rule: half-widths add in quadrature, divided by n.
    """
    if not ratios:
        return None
    logs = [math.log(r.value) for r in ratios]
    value = math.exp(sum(logs) / len(logs))
    halves = [r.log_half_width for r in ratios]
    if any(h is None for h in halves):
        return Interval(value, None, None, "geometric mean (some ratios without interval)")
    if shared_errors:
        h, method = sum(halves) / len(halves), f"geometric mean of {len(ratios)} ratios sharing their run's level"
    else:
        h, method = math.sqrt(sum(x * x for x in halves)) / len(halves), f"geometric mean of {len(ratios)} ratios"
    return Interval(value, value * math.exp(-h), value * math.exp(h), method)


def bootstrap(stat: Callable[[list[int]], float | None], n: int, seed: int = 0,
              reps: int = BOOTSTRAP_REPS) -> tuple[float, float] | None:
    """Percentile 95% interval of ``stat(indices)`` over ``reps`` resamples of ``range(n)`` with
    replacement; resamples where the statistic is undefined are skipped. None for fewer than
    ``BOOTSTRAP_MIN_POINTS`` points or when too few resamples give a value."""
    if n < BOOTSTRAP_MIN_POINTS:
        return None
    rng = random.Random(seed)
    values = []
    for _ in range(reps):
        v = stat([rng.randrange(n) for _ in range(n)])
        if v is not None and math.isfinite(v):
            values.append(v)
    if len(values) < reps // 2:
        return None
    values.sort()
    return percentile(values, 2.5), percentile(values, 97.5)
