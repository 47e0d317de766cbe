"""Recommend how to scale a network to a flops budget on one runtime: predict, rank, then measure.

``advise(question, store, ...)``:
1. fits the latency model (``fsrt.bench.latency_model``) on every point stored for this
   machine and runtime configuration, and validates it on held-out points;
2. builds the exact quantized model each candidate strategy gives at the target flops
   (``fsrt.scaling.scale_to_flops``): the alpha family on a grid and the named strategies,
   one candidate per distinct network;
3. predicts each one's latency and ranks them;
4. measures the predicted best, dWr and dwr with the real sweep (``run_sweep``: same store,
   interleaved rounds, parity checks) and compares them with paired intervals.

A recommendation is only called faster than dWr or dwr when the measured interval of the ratio
excludes 1; otherwise it is "not resolved". If the measurement shows one of the references
resolved faster than the predicted best, the measurement wins and the advice says so.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fsrt.bench.analysis import counted
from fsrt.bench.latency_model import MIN_POINTS, SeriesModel, fittable, model_series, series_of
from fsrt.bench.plan import BenchPlan, Variant
from fsrt.bench.points import Point
from fsrt.bench.rounds import RoundConfig, Window
from fsrt.bench.timing import WindowConfig
from fsrt.bench.uncertainty import Interval, ratio
from fsrt.complexity import complexity, layer_count
from fsrt.errors import FsrtError
from fsrt.scaling import NAMED, ScaledSpec, Strategy, alpha_strategy, scale_to_flops
from fsrt.spec import ModelSpec

ALPHAS = tuple(i / 10 for i in range(11))  # the alpha family on a 0.1 grid
NAMED_CANDIDATES = ("d", "w", "r", "dw", "dr", "wr", "dwr", "dWr")
REFERENCES = ("dWr", "dwr")  # always measured next to the recommendation
TOLERANCE = 0.05  # a candidate competes only if its flops land within this of the target


@dataclass(frozen=True)
class Question:
    """What to advise on: a base network, a flops target and one runtime configuration."""

    source: str
    target_flops: float
    runtime: str
    precision: str = "fp32"
    batch: int = 1
    threads: int = 1
    device: str = "cpu"
    resolution: int | None = None
    mode: str = "infer"
    tolerance: float = TOLERANCE

    def series(self, machine_id: str) -> tuple:
        """The latency-model series this question is answered in (``latency_model.series_of``)."""
        return machine_id, self.device, self.runtime, self.mode, self.precision, self.batch, self.threads

    @property
    def label(self) -> str:
        """How output names the runtime configuration."""
        return f"{self.runtime} {self.precision} b{self.batch}, {self.threads} thread(s) on {self.device}"


@dataclass(frozen=True)
class Candidate:
    """One distinct network at the target: the strategies that give it, and its predicted latency."""

    strategies: tuple[Strategy, ...]
    scaled: ScaledSpec
    layers: int
    predicted_ms: float

    @property
    def strategy(self) -> Strategy:
        """The strategy it is measured and stored under (a named one when several give it)."""
        return self.strategies[0]

    @property
    def miss(self) -> float:
        """Realized flops over the target, minus 1 (quantization keeps some strategies off the target)."""
        return self.scaled.miss or 0.0

    def eligible(self, tolerance: float) -> bool:
        """Whether it lands close enough to the target to compete."""
        return abs(self.miss) <= tolerance

    @property
    def label(self) -> str:
        """E.g. ``dWr (alpha=0.8)``: every strategy that gives this network."""
        first, rest = self.strategies[0].name, [s.name for s in self.strategies[1:]]
        return f"{first} ({', '.join(rest)})" if rest else first

    def to_dict(self) -> dict:
        """JSON-able: strategies, s, exact complexity, resolution and the prediction."""
        cx = self.scaled.complexity
        return {"label": self.label, "strategy": self.strategy.name, "strategies": [s.name for s in self.strategies],
                "alpha": self.strategy.alpha, "s": self.scaled.s, "name": self.scaled.spec.name, **cx.to_dict(),
                "layers": self.layers, "resolution": self.scaled.spec.resolution, "miss": self.miss,
                "predicted_ms": self.predicted_ms}


@dataclass
class Advice:
    """Everything ``fsrt advise`` shows: the model, its held-out checks, the ranking and what was measured."""

    question: Question
    base_name: str
    base_flops: int
    fitted: SeriesModel
    fit_flops: tuple[int, int]  # smallest and largest flops among the fitted models
    ranked: list[Candidate]
    fit_scope: str = ""  # which stored points the model was fitted on
    measured: dict[str, Point] = field(default_factory=dict)  # candidate label -> point
    comparisons: list[dict] = field(default_factory=list)
    recommendation: str | None = None
    note: str = ""
    run_id: int | None = None

    def to_dict(self) -> dict:
        """The JSON document of ``fsrt advise --json`` (and what the report shows)."""
        q = self.question
        cands = []
        for c in self.ranked:
            d = {**c.to_dict(), "eligible": c.eligible(q.tolerance)}
            p = self.measured.get(c.label)
            if p is not None:
                d.update(measured_ms=p.latency_ms, measured_lo_ms=p.latency_lo_ms, measured_hi_ms=p.latency_hi_ms,
                         status=str(p.status), error=p.latency_ms and c.predicted_ms / p.latency_ms - 1.0)
            cands.append(d)
        return {"base": self.base_name, "source": q.source, "base_flops": self.base_flops,
                "target_flops": q.target_flops, "runtime": q.runtime, "precision": q.precision, "batch": q.batch,
                "threads": q.threads, "device": q.device, "mode": q.mode, "resolution": q.resolution,
                "tolerance": q.tolerance, "model": self.fitted.to_dict(), "fit_flops": list(self.fit_flops),
                "fit_scope": self.fit_scope,
                "candidates": cands, "measure": [c.label for c in to_measure(self.ranked, q.tolerance)],
                "comparisons": self.comparisons,
                "recommendation": self.recommendation, "note": self.note, "run_id": self.run_id}


# -- candidates and prediction -------------------------------------------------------------------
def candidate_strategies(alphas=ALPHAS, named=NAMED_CANDIDATES) -> list[Strategy]:
    """Named strategies first (so a network two strategies share is stored under its name), then
    the alpha grid."""
    return [NAMED[n] for n in named] + [alpha_strategy(a) for a in alphas]


def _structure(spec: ModelSpec) -> str:
    d = spec.to_dict()
    d.pop("name", None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()


def candidates(base: ModelSpec, target_flops: float, strategies: list[Strategy]) -> list[tuple[tuple, ScaledSpec]]:
    """Each distinct quantized network the strategies reach at ``target_flops``, with every strategy
    that reaches it; strategies that cannot get there (e.g. an input below 8 px) are left out."""
    found: dict[str, tuple[list[Strategy], ScaledSpec]] = {}
    for st in strategies:
        try:
            scaled = scale_to_flops(base, st, target_flops)
        except FsrtError:
            continue
        entry = found.setdefault(_structure(scaled.spec), ([], scaled))
        entry[0].append(st)
    return [(tuple(sts), scaled) for sts, scaled in found.values()]


def rank(found: list[tuple[tuple, ScaledSpec]], fitted: SeriesModel) -> list[Candidate]:
    """Candidates with their predicted latency, fastest first."""
    out = []
    for sts, scaled in found:
        cx, layers = scaled.complexity, layer_count(scaled.spec)
        out.append(Candidate(sts, scaled, layers, fitted.model.predict(cx.flops, cx.params, cx.acts, layers)))
    return sorted(out, key=lambda c: (c.predicted_ms, c.label))


def to_measure(ranked: list[Candidate], tolerance: float = TOLERANCE) -> list[Candidate]:
    """The predicted best of the candidates on target (within ``tolerance``) and the references
    (dWr, dwr, measured even when off target: the table shows by how much), each network once."""
    chosen = [next(c for c in ranked if c.eligible(tolerance))] if ranked else []
    for name in REFERENCES:
        ref = next((c for c in ranked if any(s.name == name for s in c.strategies)), None)
        if ref is not None and ref not in chosen:
            chosen.append(ref)
    return chosen


def series_points(points: list[Point], question: Question, machine_id: str) -> list[Point]:
    """The stored points a question's model is fitted on (its machine and runtime configuration)."""
    key = question.series(machine_id)
    return [p for p in points if series_of(p) == key]


# -- the whole advice ------------------------------------------------------------------------------
def predict(question: Question, base: ModelSpec, stored: list[Point], machine_id: str,
            strategies: list[Strategy] | None = None) -> Advice:
    """Fit, validate, build and rank the candidates (nothing measured). Raises ``FsrtError`` when
    the stored points cannot fit a model."""
    base_cx = complexity(base)
    if not question.target_flops > base_cx.flops:
        raise FsrtError(f"target {question.target_flops:.4g} flops is not above {base.name or question.source}'s "
                        f"{base_cx.flops:.4g}: advise scales a network up; give a larger --target-flops")
    pts, scope = fit_points(series_points(stored, question, machine_id), base.family)
    fitted = model_series(question.label, pts)
    if fitted.model is None:
        raise FsrtError(f"{len(fittable(pts))} stored model(s) measured on {question.label} on this machine; "
                        f"the latency model needs at least 6")
    flops = [p.flops for p in fittable(pts)]
    found = candidates(base, question.target_flops, strategies or candidate_strategies())
    ranked = rank(found, fitted)
    if not any(c.eligible(question.tolerance) for c in ranked):
        raise FsrtError(f"no candidate strategy lands within {100 * question.tolerance:g}% of "
                        f"{question.target_flops:.4g} flops from {base.name or question.source} (the quantized "
                        "grid is too coarse there); give another target or a larger --tolerance")
    return Advice(question, base.name or Path(question.source).stem, base_cx.flops, fitted, (min(flops), max(flops)),
                  ranked, scope)


def fit_points(points: list[Point], family: str) -> tuple[list[Point], str]:
    """The points to fit for a base of ``family``: that family's own when there are enough (its
    layer types set its costs, ``latency_model.by_family``), else every point of the series."""
    own = [p for p in points if p.family == family]
    if len(fittable(own)) >= MIN_POINTS:
        return own, f"{family} models only"
    return points, f"every family measured (fewer than {MIN_POINTS} {family} models stored)"


def variants(advice: Advice, base: ModelSpec) -> list[Variant]:
    """The networks to measure as sweep variants (stored under their strategy and realized s)."""
    return [Variant(c.scaled.spec.name, advice.base_name, c.strategy, c.scaled.s, c.scaled.flops_multiplier,
                    c.scaled.spec, c.scaled.complexity, advice.question.source)
            for c in to_measure(advice.ranked, advice.question.tolerance)]


def measure_plan(question: Question, vs: list[Variant], window: WindowConfig | None = None,
                 rounds: RoundConfig | None = None) -> BenchPlan:
    """The sweep plan that measures the chosen networks (bench defaults for windows and rounds, so
    ``fsrt bench`` would reuse these points and vice versa)."""
    return BenchPlan(sources=(question.source,), strategies=tuple(v.strategy for v in vs),
                     s_values=tuple(v.s for v in vs), batches=(question.batch,), precisions=(question.precision,),
                     device=question.device, threads=question.threads, resolution=question.resolution,
                     window=window or WindowConfig(), rounds=rounds or RoundConfig())


def compare_measured(advice: Advice, points: list[Point], windows: dict[str, list[Window]],
                     movement: float | None = None) -> None:
    """Attach the measured points, the recommendation's speedups over dWr and dwr and the final
    recommendation to ``advice`` (see ``judge``)."""
    chosen = [(c.label, c.scaled.spec.name) for c in to_measure(advice.ranked, advice.question.tolerance)]
    advice.measured, advice.comparisons, advice.recommendation, advice.note = judge(chosen, points, windows, movement)


def judge(chosen: list[tuple[str, str]], points: list[Point], windows: dict[str, list[Window]],
          movement: float | None = None) -> tuple[dict[str, Point], list[dict], str, str]:
    """``chosen`` is ``[(label, model name), ...]``, the predicted best first, then the references.

    Returns the measured point of each, the comparisons, the recommendation and why. The predicted
    best is compared with each reference (its speedup: the reference's latency over its own, paired
    over rounds where both were measured in one sweep); it stays the recommendation unless a
    reference was measured resolved faster, and then the fastest such reference is recommended and
    compared with every other measured network too. ``movement``: the machine's measured
    point-by-point movement between runs, which each speedup's interval then includes.
    """
    by_model = {p.model: p for p in counted(points)}
    measured = {label: by_model[name] for label, name in chosen if name in by_model}
    best = chosen[0][0]
    if best not in measured:
        return measured, [], best, "predicted best (its measurement failed: see the stored point)"
    comparisons = _compare(best, [label for label, _ in chosen[1:]], measured, windows, movement)
    faster = [(c["speedup"]["value"], c["reference"]) for c in comparisons if c["resolved"] and
              c["speedup"]["value"] < 1.0]
    if not faster:
        return measured, comparisons, best, "predicted best"
    winner = min(faster)[1]
    comparisons += _compare(winner, [label for label, _ in chosen if label != winner], measured, windows, movement)
    return measured, comparisons, winner, f"measured faster than the predicted best ({best})"


def _compare(label: str, others: list[str], measured: dict[str, Point], windows, movement: float | None = None
             ) -> list[dict]:
    """``label``'s speedup over each measured one of ``others``, with its interval and verdict."""
    out = []
    for other in others:
        if other in measured:
            iv = ratio(measured[other], measured[label], windows, movement)
            out.append({"recommended": label, "reference": other, "speedup": iv.to_dict(),
                        "resolved": iv.excludes(1.0), "verdict": _verdict(iv, label, other)})
    return out


def _verdict(iv: Interval, best: str, ref: str) -> str:
    ci = f" [{iv.lo:.3f}, {iv.hi:.3f}]" if iv.lo is not None else ""
    if not iv.excludes(1.0):
        return f"{best} vs {ref}: {iv.value:.3f}x{ci}, not resolved"
    if iv.value > 1.0:
        return f"{best} is {iv.value:.3f}x{ci} faster than {ref}"
    return f"{best} is {1 / iv.value:.3f}x slower than {ref} ({iv.value:.3f}x{ci})"


def run_config(advice: Advice, plan: BenchPlan) -> dict:
    """The advise run's identity in the store: the sweep's config plus the question and its ranking
    (so the report shows the recommendation of exactly this run)."""
    doc = advice.to_dict()
    return {**plan.to_config([advice.question.runtime]),
            "advise": {k: v for k, v in doc.items() if k not in ("comparisons", "recommendation", "note", "run_id")}}


def with_resolution(base: ModelSpec, resolution: int | None) -> ModelSpec:
    """The base network at ``resolution`` (as ``fsrt bench --resolution`` sets it before scaling)."""
    return base.replace(resolution=resolution) if resolution else base
