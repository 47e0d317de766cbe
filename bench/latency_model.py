"""A latency model per runtime configuration, fitted on measured points and checked on held-out ones.

For one *series* (machine, device, runtime, mode, precision, batch, threads) the latency of a
network is modelled as a sum of roofline-inspired costs of its exact complexity:

    latency = c_flops * flops * batch                 (compute: multiply-adds)
            + c_act   * 2 * acts * batch * e          (activation traffic: each written once, read once)
            + c_param * params * e                    (weights read once per call)
            + c_layer * layers                        (one dispatch per conv / FC layer)
            + c_0                                     (per call: input, output, runtime overhead)

with ``e`` the element size of the precision. Every coefficient is a cost, so it is fitted
with non-negative least squares (``fsrt.bench.nnls``): a negative cost would make a network
faster as it grows and poison extrapolation. The fit minimises *relative* error (each point
weighted by 1 / latency) and trusts a point less when its measurement interval is wide (the
interval's relative half-width added in quadrature to a 5% model-error floor, so no tight
interval dominates). Coefficients read as achieved GFLOP/s, GB/s over activation and weight
bytes, microseconds per layer and a constant: on the same scale as the machine's measured
ceilings.

The sums are exact per network, and a linear model with shared costs is the same whether it is
written per layer, per stage or for the whole network; the whole-network terms are what every
stored point carries (``Point.flops/params/acts/layers``), so any stored point can be fitted
and predicted without its spec. ``validate`` shows how well that holds on points the fit never
saw: extrapolation from small members to large ones, a strategy predicted from the others, each
model left out in turn, and each base network left out when there are several.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from fsrt.bench.analysis import by_series, counted, distinct, series_labels
from fsrt.bench.nnls import nnls
from fsrt.bench.points import Point
from fsrt.bench.stats import percentile
from fsrt.errors import FsrtError

TERMS = ("flops", "act_bytes", "param_bytes", "layers", "constant")
MIN_POINTS = 6  # distinct measured models needed to fit five non-negative terms with some redundancy
MODEL_ERROR_FLOOR = 0.05  # relative error the model is expected to have anyway (weights)
SMALL_S = 4.0  # extrapolation check: fit on s <= SMALL_S, predict the larger members


def element_bytes(precision: str | None) -> int:
    """Bytes per tensor element at a precision (``fsrt.precision``'s table; 4 for anything it does
    not name); the one place the latency model and the roofline chart read it."""
    from fsrt.precision import PRECISIONS

    known = PRECISIONS.get(str(precision))
    return known.element_bytes if known else 4


def terms(flops: int, params: int, acts: int, layers: int, batch: int, precision: str | None) -> np.ndarray:
    """The model's five term values for one network (flops in multiply-adds, bytes, layers, 1)."""
    e = element_bytes(precision)
    return np.array([float(flops) * batch, 2.0 * acts * batch * e, float(params) * e, float(layers), 1.0])


def point_terms(p: Point) -> np.ndarray:
    """The term values of a stored point (its exact complexity, batch and precision)."""
    return terms(p.flops, p.params, p.acts, p.layers, p.batch or 1, p.precision)


def fittable(points: Iterable[Point]) -> list[Point]:
    """One point per measurement that can be fitted: measured, with its complexity and layer count
    (points stored before layer counts were recorded have none)."""
    return [p for p in distinct(counted(points))
            if p.layers is not None and all(isinstance(v, int) and v > 0 for v in (p.flops, p.params, p.acts))]


def series_of(p: Point) -> tuple:
    """What one model covers: machine, device, runtime, mode, precision, batch, threads."""
    return p.machine_id, p.device, p.runtime, p.mode or "infer", p.precision, p.batch, p.threads


@dataclass(frozen=True)
class LatencyModel:
    """Fitted costs in milliseconds per unit of each term (``TERMS``), and what they were fitted on."""

    coef: tuple[float, ...]
    n: int
    batch: int
    precision: str | None
    rms_rel: float  # weighted RMS relative residual of the fit itself (in-sample)

    def predict(self, flops: int, params: int, acts: int, layers: int) -> float:
        """Predicted latency (ms) of a network with this complexity, in this model's series."""
        return float(np.dot(self.coef, terms(flops, params, acts, layers, self.batch, self.precision)))

    def predict_point(self, p: Point) -> float:
        """Predicted latency (ms) of a stored point's network."""
        return float(np.dot(self.coef, point_terms(p)))

    def shares(self, p: Point) -> dict[str, float]:
        """Fraction of the predicted latency each term accounts for on ``p``'s network."""
        parts = np.asarray(self.coef) * point_terms(p)
        total = parts.sum()
        return {t: float(v / total) if total > 0 else 0.0 for t, v in zip(TERMS, parts)}

    @property
    def achieved(self) -> dict[str, float | None]:
        """The costs as rates: GFLOP/s (2 FLOP per multiply-add), GB/s for activation and weight
        bytes, microseconds per layer and per call; None for a term the fit did not use (cost 0)."""
        c_f, c_a, c_p, c_l, c_0 = self.coef
        rate = lambda c, scale: scale / c if c > 0 else None  # noqa: E731
        return {"gflop_per_s": rate(c_f, 2e-6), "act_gb_per_s": rate(c_a, 1e-6), "param_gb_per_s": rate(c_p, 1e-6),
                "us_per_layer": c_l * 1e3, "constant_us": c_0 * 1e3}

    def to_dict(self) -> dict:
        """JSON-able: raw costs (ms per unit), the achieved rates and the fit's size."""
        return {"terms": list(TERMS), "coef_ms": list(self.coef), **self.achieved, "n": self.n, "batch": self.batch,
                "precision": self.precision, "rms_rel": self.rms_rel}


def weights(points: list[Point]) -> np.ndarray:
    """Row weights: relative error (1 / latency), less for a point with a wide interval."""
    ci = np.array([p.ci_rel if p.ci_rel is not None else MODEL_ERROR_FLOOR for p in points])
    lat = np.array([p.latency_ms for p in points])
    return 1.0 / (lat * np.sqrt(ci**2 + MODEL_ERROR_FLOOR**2))


def fit(points: Iterable[Point], min_points: int = MIN_POINTS) -> LatencyModel:
    """Fit the model on measured points of one series (raises ``FsrtError`` with fewer than
    ``min_points`` distinct measured models, or with points from several series)."""
    pts = fittable(points)
    if len(pts) < min_points:
        raise FsrtError(f"{len(pts)} measured model(s) with a layer count; the latency model needs at least "
                        f"{min_points}")
    series = {series_of(p)[1:] for p in pts}
    if len(series) > 1:
        raise FsrtError(f"a latency model covers one runtime configuration; got {len(series)}")
    a = np.array([point_terms(p) for p in pts])
    y = np.array([p.latency_ms for p in pts])
    w = weights(pts)
    aw, yw = a * w[:, None], y * w
    scale = np.linalg.norm(aw, axis=0)
    scale[scale == 0] = 1.0
    x, _ = nnls(aw / scale, yw)
    coef = x / scale
    rel = (a @ coef) / y - 1.0
    rms = float(np.sqrt(np.sum((w * y * rel) ** 2) / np.sum((w * y) ** 2)))
    return LatencyModel(tuple(float(c) for c in coef), len(pts), pts[0].batch or 1, pts[0].precision, rms)


# -- held-out validation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """A measured model predicted by a fit that did not see it."""

    model: str | None
    base: str | None
    strategy: str | None
    s: float | None
    flops: int
    measured_ms: float
    predicted_ms: float

    @property
    def error(self) -> float:
        """Relative error of the prediction: predicted / measured - 1."""
        return self.predicted_ms / self.measured_ms - 1.0


@dataclass(frozen=True)
class HeldOut:
    """One validation scenario: its predictions and their absolute relative errors."""

    scenario: str  # extrapolate | strategy | leave-one-out | base
    description: str
    fits: int  # how many fits it took (folds)
    predictions: tuple[Prediction, ...]

    @property
    def median(self) -> float | None:
        """Median absolute relative error."""
        return _abs_error_percentile(self.predictions, 50)

    @property
    def p90(self) -> float | None:
        """90th percentile of the absolute relative error."""
        return _abs_error_percentile(self.predictions, 90)

    def to_dict(self) -> dict:
        """JSON-able, with each prediction and the summary errors."""
        return {"scenario": self.scenario, "description": self.description, "fits": self.fits,
                "n": len(self.predictions), "median_abs_error": self.median, "p90_abs_error": self.p90,
                "predictions": [{**asdict(p), "error": p.error} for p in self.predictions]}


def _abs_error_percentile(preds: tuple[Prediction, ...], q: float) -> float | None:
    return percentile(sorted(abs(p.error) for p in preds), q) if preds else None


def _predict(train: list[Point], test: list[Point]) -> list[Prediction]:
    model = fit(train)
    return [Prediction(p.model, p.base, p.strategy, p.s, p.flops, p.latency_ms, model.predict_point(p)) for p in test]


def extrapolation(points: list[Point], small_s: float = SMALL_S) -> HeldOut | None:
    """Fit on the small members (s <= ``small_s``), predict every larger one. With no member above
    ``small_s``, the largest s is predicted from the rest. None when either side is too small."""
    pts = fittable(points)
    ss = sorted({p.s for p in pts if p.s is not None})
    if len(ss) < 2:
        return None
    cut = small_s if ss[-1] > small_s else ss[-2]
    train = [p for p in pts if p.s is not None and p.s <= cut]
    test = [p for p in pts if p.s is not None and p.s > cut]
    if len(train) < MIN_POINTS or not test:
        return None
    big = sorted({p.s for p in test})
    span = f"{big[0]:.3g}" if len(big) == 1 else f"{big[0]:.3g}..{big[-1]:.3g}"
    return HeldOut("extrapolate", f"fit on s <= {cut:.3g}, predict s = {span}", 1,
                   tuple(_predict(train, test)))


def _labels_by_measurement(points: Iterable[Point], field: str) -> dict[str, set]:
    """For each measurement, every value of ``field`` it is listed under (the base model is listed
    under every strategy)."""
    out: dict[str, set] = defaultdict(set)
    for p in counted(points):
        out[p.measurement_id].add(getattr(p, field))
    return out


def leave_group_out(points: list[Point], field: str, scenario: str, what: str, whats: str) -> HeldOut | None:
    """For each value of ``field`` (strategy or base): fit on every measurement not listed only
    under it, predict those that are. None when fewer than two values can be held out."""
    pts = fittable(points)
    labels = _labels_by_measurement(points, field)
    values = sorted({v for p in pts for v in labels[p.measurement_id]}, key=str)
    preds, folds = [], 0
    for v in values:
        test = [p for p in pts if labels[p.measurement_id] == {v}]
        train = [p for p in pts if labels[p.measurement_id] != {v}]
        if test and len(train) >= MIN_POINTS:
            preds += _predict(train, test)
            folds += 1
    if folds < 2:
        return None
    return HeldOut(scenario, f"fit on the other {whats}, predict each {what}'s own models", folds, tuple(preds))


def leave_one_out(points: list[Point]) -> HeldOut | None:
    """Each measured model predicted by a fit on all the others."""
    pts = fittable(points)
    if len(pts) <= MIN_POINTS:
        return None
    preds = []
    for i, p in enumerate(pts):
        preds += _predict(pts[:i] + pts[i + 1:], [p])
    return HeldOut("leave-one-out", "fit on all other models, predict the one left out", len(pts), tuple(preds))


def validate(points: list[Point], small_s: float = SMALL_S) -> list[HeldOut]:
    """Every held-out scenario the points allow (one series): extrapolation, strategy out, each
    model out, base network out."""
    found = [extrapolation(points, small_s), leave_group_out(points, "strategy", "strategy", "strategy", "strategies"),
             leave_one_out(points), leave_group_out(points, "base", "base", "base network", "base networks")]
    return [h for h in found if h is not None]


# -- per series, for the report and the CLI ---------------------------------------------------------
@dataclass(frozen=True)
class SeriesModel:
    """One series' model (None with ``reason`` when it cannot be fitted) and its held-out checks."""

    label: str
    model: LatencyModel | None
    held_out: tuple[HeldOut, ...]
    points: int
    reason: str | None = None
    largest: str | None = None  # the fitted model with the most flops
    largest_shares: dict | None = None  # how its predicted latency splits over the terms

    def to_dict(self) -> dict:
        """JSON-able."""
        return {"series": self.label, "points": self.points, "reason": self.reason,
                "model": self.model.to_dict() if self.model else None, "largest": self.largest,
                "largest_shares": self.largest_shares, "held_out": [h.to_dict() for h in self.held_out]}


def model_series(label: str, points: list[Point], small_s: float = SMALL_S) -> SeriesModel:
    """Fit one series and validate it; a series too small to fit gets the reason instead."""
    usable = fittable(points)
    try:
        model = fit(usable)
    except FsrtError as e:
        return SeriesModel(label, None, (), len(usable), str(e))
    big = max(usable, key=lambda p: p.flops)
    return SeriesModel(label, model, tuple(validate(points, small_s)), len(usable), None, big.model, model.shares(big))


def latency_models(points: list[Point], small_s: float = SMALL_S) -> list[SeriesModel]:
    """A model per series of one run's points (one machine), labelled as the report labels series,
    and per model family within a series that holds several (``by_family``)."""
    labels = series_labels(points)
    return [model_series(label, pts, small_s) for series, grp in by_series(points, labels).items()
            for label, pts in by_family(series, grp).items()]


def by_family(label: str, points: list[Point]) -> dict[str, list[Point]]:
    """Points split by model family (regnety, effnet, ...), labels suffixed with the family when there
    are several. One family's networks share their layer types (grouped vs depthwise convs run at very
    different rates), so one set of costs fits them; across families a single flops rate does not."""
    families: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        families[str(p.family)].append(p)
    if len(families) <= 1:
        return {label: points}
    return {f"{label} ({fam})": pts for fam, pts in sorted(families.items())}


def held_out_rows(models: list[SeriesModel]) -> list[dict]:
    """Every held-out prediction as a flat row (series, scenario, model, s, measured, predicted, error)."""
    return [{"series": sm.label, "scenario": h.scenario, "model": p.model, "strategy": p.strategy, "s": p.s,
             "measured_ms": p.measured_ms, "predicted_ms": p.predicted_ms, "error": p.error}
            for sm in models for h in sm.held_out for p in h.predictions]


def summary_line(sm: SeriesModel) -> str:
    """One sentence on a series' model: its rates and its held-out errors."""
    if sm.model is None:
        return f"{sm.label}: no latency model ({sm.reason})."
    a = sm.model.achieved
    rate = lambda v, unit: "unused" if v is None else f"{v:.3g} {unit}"  # noqa: E731
    parts = [f"{sm.label}: {rate(a['gflop_per_s'], 'GFLOP/s')}, activations {rate(a['act_gb_per_s'], 'GB/s')}, "
             f"weights {rate(a['param_gb_per_s'], 'GB/s')}, {a['us_per_layer']:.3g} µs/layer, "
             f"{a['constant_us']:.3g} µs/call (fit on {sm.model.n} models)"]
    for h in sm.held_out:
        parts.append(f"{h.scenario} median {_pct(h.median)}, p90 {_pct(h.p90)} (n={len(h.predictions)})")
    return "; ".join(parts) + "."


def _pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"
