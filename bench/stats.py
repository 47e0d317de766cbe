"""Summary statistics of a latency sample (milliseconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


def window_statistic(times_ms: list[float]) -> float:
    """The figure of one timing window: its 10th percentile.

    On a shared machine the slow calls of a window are the machine's (another tenant, a
    descheduled vCPU), while the fast ones are the runtime's; a low percentile of each short
    window, combined over rounds by the median, reproduced within about 1% where window medians
    drifted by 4-20% (measured on the 2-vCPU machines this was built on).
    """
    return percentile(sorted(times_ms), 10)
