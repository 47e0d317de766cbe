"""Power-law fits in log-log space, shared by the scaling analysis and the latency report."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    """A power law ``y = coefficient * x**exponent`` fitted by least squares in log-log space."""

    exponent: float
    coefficient: float
    r2: float
    n: int

    def predict(self, x: float) -> float:
        """The fitted ``y`` at ``x``."""
        return self.coefficient * x ** self.exponent

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"exponent": self.exponent, "coefficient": self.coefficient, "r2": self.r2, "n": self.n}


def finite_positive(v) -> bool:
    """True for a real, finite, positive number (what a logarithm accepts)."""
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def loglog_fit(xs: Iterable[float], ys: Iterable[float]) -> Fit | None:
    """Least-squares fit of ``log y = k log x + log c``; r2 is measured in log space.

    Pairs with a missing or non-positive value are dropped (logs need positive numbers). Returns
    None with fewer than two usable pairs or when x does not vary (no slope is defined), including
    when x varies so little that the power law's coefficient over- or underflows.
    """
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if finite_positive(x) and finite_positive(y)]
    n = len(pairs)
    if n < 2:
        return None
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    if sxx <= 1e-18:
        return None
    k = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    b = my - k * mx
    ss_res = sum((y - (k * x + b)) ** 2 for x, y in pairs)
    ss_tot = sum((y - my) ** 2 for _, y in pairs)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 1e-30 else 1.0
    try:
        coefficient = math.exp(b)
    except OverflowError:
        return None
    if not 0.0 < coefficient < math.inf:  # x barely varies (models of nearly equal flops): no usable power law
        return None
    return Fit(k, coefficient, r2, n)
