"""Summary statistics of a latency sample (milliseconds)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyStats:
    """Median, tail percentiles, mean, min and coefficient of variation of a sample."""

    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    cv: float
    n: int

    @classmethod
    def of(cls, times_ms: list[float]) -> LatencyStats:
        """Statistics of a sample; CV is the sample standard deviation over the mean."""
        xs = sorted(times_ms)
        n = len(xs)
        mean = sum(xs) / n
        var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
        return cls(percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), mean, xs[0],
                   math.sqrt(var) / mean if mean > 0 else 0.0, n)

    def to_dict(self) -> dict:
        """Fields as a dict (store column names)."""
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "mean_ms": self.mean_ms,
                "min_ms": self.min_ms, "cv": self.cv, "n": self.n}


def median(values: list[float]) -> float:
    """Median of a non-empty sample (the mean of the two middle values for an even count)."""
    return percentile(sorted(values), 50)


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks ``(lo, hi)`` of the sorted sample that bound its median with at least
    ``confidence`` coverage, or None when ``n`` is too small for any such interval.

    Distribution-free: the number of sample values below the true median is Binomial(n, 1/2),
    so ``[x_(k), x_(n-1-k)]`` covers it with probability ``1 - 2 P(B < k + 1)``; k is the
    largest rank that keeps that at or above ``confidence`` (n=6 gives min..max at 96.9%).
    """
    alpha = 1.0 - confidence
    tail, k = 0.0, -1
    for j in range(n):
        tail += math.comb(n, j) / 2.0**n  # P(B <= j)
        if tail > alpha / 2:
            break
        k = j
    if k < 0 or k > n - 1 - k:
        return None
    return k, n - 1 - k


def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median (see ``median_ci_ranks``)."""
    ranks = median_ci_ranks(len(values), confidence)
    if ranks is None:
        return None
    xs = sorted(values)
    return xs[ranks[0]], xs[ranks[1]]


# How the figure of a point is computed (stored with the point; shown in every report).
STATISTIC = "interquartile mean of all timed calls over the interleaved windows (jackknife 95% interval)"


def interquartile_mean(values: list[float]) -> float:
    """The mean of the middle half of a sample: the values between its 25th and 75th percentiles.

    Each of the n sorted values holds 1/n of the sample; the middle half is the mass from n/4 to
    3n/4, so a value straddling either edge counts with the part of it inside (n = 3 gives
    ``(a/4 + b + c/4) / 1.5``). Why this statistic: on a shared machine the slow calls are the
    machine's (another tenant, a descheduled vCPU) and a few calls are luckily fast; the middle half
    ignores both tails, yet uses half of all calls, where a median or a low percentile uses one.
    Measured on two pairs of repeated default sweeps on the 2-vCPU machines this was built on
    (``dev/bench_repeatability.py``), the run-to-run deviation of the interquartile mean of all
    calls was 2.7% (quiet) and 5.9% (loaded), against 4.1% and 6.7% for the median over windows of
    each window's 10th percentile that fsrt used before.
    """
    xs = np.sort(np.asarray(values, dtype=np.float64))
    n = len(xs)
    if n == 0:
        raise ValueError("interquartile mean of an empty sample")
    starts = np.arange(n, dtype=np.float64)
    weights = np.clip(np.minimum(starts + 1, 0.75 * n) - np.maximum(starts, 0.25 * n), 0.0, None)
    return float(np.dot(weights, xs) / weights.sum())


def window_statistic(times_ms: list[float]) -> float:
    """The figure of one timing window: the interquartile mean of its calls.

    Used where windows are compared one by one (outliers, paired ratios of two points measured in
    the same rounds, the machine-noise probe); a point's own figure pools all its windows' calls.
    """
    return interquartile_mean(times_ms)


def jackknife_figure(windows: list[list[float]]) -> tuple[float, float | None]:
    """A point's figure from its timing windows' call times, and the standard error of its logarithm.

    The figure is the interquartile mean of all calls. Calls of one window share the machine's
    state of that moment, so they are not independent: the standard error comes from the
    delete-one-window jackknife (the figure recomputed without each window in turn), in log space.
    None for fewer than 3 windows.
    """
    arrays = [np.asarray(w, dtype=np.float64) for w in windows]
    figure = interquartile_mean(np.concatenate(arrays)) if arrays else float("nan")
    n = len(arrays)
    if n < 3:
        return figure, None
    leave_one_out = np.log([interquartile_mean(np.concatenate(arrays[:i] + arrays[i + 1:])) for i in range(n)])
    return figure, math.sqrt((n - 1) / n * float(np.sum((leave_one_out - leave_one_out.mean()) ** 2)))


def jackknife_interval(figure: float, log_se: float, windows: int,
                       confidence: float = 0.95) -> tuple[float, float]:
    """The confidence interval of a jackknifed figure: Student's t on ``windows - 1`` degrees of
    freedom, in log space."""
    half = t_quantile(0.5 + confidence / 2, windows - 1) * log_se
    return figure * math.exp(-half), figure * math.exp(half)


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with an integer number of degrees of freedom (t >= 0).

    The closed forms for integer df (Abramowitz and Stegun 26.7.3 and 26.7.4): with
    theta = atan(t / sqrt(df)), a finite series in cos(theta)^2.
    """
    theta = math.atan2(t, math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return math.sin(theta) * total
    total = 0.0
    if df > 1:
        term = total = 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        total *= math.sin(theta) * math.cos(theta)
    return 2.0 / math.pi * (theta + total)


@functools.cache
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    target = 2 * p - 1  # P(|T| < t)
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf_two_sided(mid, df) < target else (lo, mid)
    return (lo + hi) / 2
