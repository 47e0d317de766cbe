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
