"""Inference against training: how well flops, params and activations predict each, on the same models.

The scaling paper's Figure 2 correlates *training* time with flops, params and activations; the
rest of the report correlates whatever the run measured per series. When a run has both modes,
this module puts them side by side: for every runtime configuration measured in both, over the
models measured in both, Pearson r (linear, as the paper) and the log-log exponent of latency
against each metric, for inference, the training step and its forward and backward parts, each
with a bootstrap interval, plus the training-minus-inference difference of r resampled over the
same models (resolved when its interval excludes 0). Peak memory gets the same treatment (a
training step keeps every activation for backward, so its memory should follow activations).

Pure functions over ``Point`` lists, like ``fsrt.bench.analysis``.
"""

from __future__ import annotations

from fsrt.bench.analysis import METRICS, by_series, counted, distinct, median, pearson
from fsrt.bench.points import Point
from fsrt.bench.uncertainty import bootstrap
from fsrt.fitting import finite_positive, loglog_fit

# What is correlated against the metrics, and how to read it from a training point (the inference
# side of forward and backward rows is inference latency).
QUANTITIES = {
    "latency": lambda p: p.latency_ms,
    "forward": lambda p: p.forward_ms,
    "backward": lambda p: p.backward_ms,
    "peak memory": lambda p: p.peak_mem_bytes,
}


def mode_of(p: Point) -> str:
    """A point's mode (points stored before modes existed are inference)."""
    return p.mode or "infer"


def _config(p: Point) -> tuple:
    """The runtime configuration a point's series shares with its other-mode twin (not mode, batch)."""
    return p.runtime, p.precision, p.device, p.threads


def pairs(points: list[Point], labels: dict[tuple, str]) -> list[tuple[str, str, list[Point], list[Point]]]:
    """(inference series, training series, their points on the common models) for every runtime
    configuration measured in both modes; the points are in the same model order."""
    series = by_series(distinct(counted(points)), labels)
    out = []
    for inf_label, inf in series.items():
        if mode_of(inf[0]) != "infer":
            continue
        for tr_label, tr in series.items():
            if mode_of(tr[0]) != "train" or _config(tr[0]) != _config(inf[0]):
                continue
            by_model = {p.model: p for p in tr}
            common = [p for p in inf if p.model in by_model]
            out.append((inf_label, tr_label, common, [by_model[p.model] for p in common]))
    return out


def _r_ci(xs: list, ys: list, seed: int) -> tuple:
    ci = bootstrap(lambda idx: pearson([xs[i] for i in idx], [ys[i] for i in idx]), len(xs), seed)
    return pearson(xs, ys), ci


def _k_ci(xs: list, ys: list, seed: int) -> tuple:
    def k(idx):
        fit = loglog_fit([xs[i] for i in idx], [ys[i] for i in idx])
        return fit.exponent if fit else None

    fit = loglog_fit(xs, ys)
    return (fit.exponent if fit else None), bootstrap(k, len(xs), seed)


def _diff_ci(xs: list, a: list, b: list, seed: int) -> tuple | None:
    """Interval of r(xs, b) - r(xs, a) over the same resamples of the models."""
    def diff(idx):
        ra, rb = pearson([xs[i] for i in idx], [a[i] for i in idx]), pearson([xs[i] for i in idx], [b[i] for i in idx])
        return None if ra is None or rb is None else rb - ra

    return bootstrap(diff, len(xs), seed)


def _lo_hi(ci) -> tuple:
    return (ci[0], ci[1]) if ci else (None, None)


def side_by_side(points: list[Point], labels: dict[tuple, str], seed: int = 0) -> list[dict]:
    """Rows per (inference series, training series, quantity, metric): Pearson r and log-log exponent
    with intervals for inference and for training, and the difference of r with its interval.

    Quantities: latency (inference latency against the training step; the step's forward and
    backward parts against inference too) and peak memory.
    """
    rows = []
    for inf_label, tr_label, inf, tr in pairs(points, labels):
        for quantity, get in QUANTITIES.items():
            a = [p.latency_ms if quantity in ("forward", "backward") else get(p) for p in inf]
            b = [get(p) for p in tr]
            if sum(1 for v in b if finite_positive(v)) < 3 or sum(1 for v in a if finite_positive(v)) < 3:
                continue
            for m in METRICS:
                xs = [getattr(p, m) for p in inf]
                (ri, ri_ci), (rt, rt_ci) = _r_ci(xs, a, seed), _r_ci(xs, b, seed)
                (ki, ki_ci), (kt, kt_ci) = _k_ci(xs, a, seed), _k_ci(xs, b, seed)
                d_ci = _diff_ci(xs, a, b, seed)
                rows.append({
                    "infer_series": inf_label, "train_series": tr_label, "quantity": quantity, "metric": m,
                    "n": len(inf), "infer_r": ri, "infer_r_lo": _lo_hi(ri_ci)[0], "infer_r_hi": _lo_hi(ri_ci)[1],
                    "train_r": rt, "train_r_lo": _lo_hi(rt_ci)[0], "train_r_hi": _lo_hi(rt_ci)[1],
                    "infer_k": ki, "infer_k_lo": _lo_hi(ki_ci)[0], "infer_k_hi": _lo_hi(ki_ci)[1],
                    "train_k": kt, "train_k_lo": _lo_hi(kt_ci)[0], "train_k_hi": _lo_hi(kt_ci)[1],
                    "r_diff": None if ri is None or rt is None else rt - ri,
                    "r_diff_lo": _lo_hi(d_ci)[0], "r_diff_hi": _lo_hi(d_ci)[1],
                    "resolved": bool(d_ci and (d_ci[0] > 0 or d_ci[1] < 0)),
                })
    return rows


def step_split(points: list[Point], labels: dict[tuple, str]) -> list[dict]:
    """Per training-step point: the step, its forward and backward parts (each with its interval),
    backward over forward, and peak memory, ordered by flops within each series."""
    rows = []
    for label, pts in by_series(distinct(counted(points)), labels).items():
        for p in sorted((p for p in pts if mode_of(p) == "train"), key=lambda p: (p.flops or 0, str(p.model))):
            rows.append({"series": label, "model": p.model, "flops": p.flops, "acts": p.acts, "batch": p.batch,
                         "resolution": p.resolution, "step_ms": p.latency_ms, "step_lo_ms": p.latency_lo_ms,
                         "step_hi_ms": p.latency_hi_ms, "forward_ms": p.forward_ms,
                         "forward_lo_ms": p.forward_lo_ms, "forward_hi_ms": p.forward_hi_ms,
                         "backward_ms": p.backward_ms, "backward_lo_ms": p.backward_lo_ms,
                         "backward_hi_ms": p.backward_hi_ms,
                         "backward_per_forward": (p.backward_ms / p.forward_ms
                                                  if finite_positive(p.backward_ms) and finite_positive(p.forward_ms)
                                                  else None),
                         "peak_mem_bytes": p.peak_mem_bytes})
    return rows


def _r_text(r, lo, hi) -> str:
    if r is None:
        return "n/a"
    return f"{r:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def summary_lines(rows: list[dict], split: list[dict]) -> list[str]:
    """Sentences for the report's summary: r side by side per pair, what is resolved, the split."""
    lines = []
    latency = [r for r in rows if r["quantity"] == "latency"]
    for (inf, tr), grp in _grouped(latency).items():
        parts = "; ".join(f"{r['metric']} {_r_text(r['train_r'], r['train_r_lo'], r['train_r_hi'])} vs "
                          f"{_r_text(r['infer_r'], r['infer_r_lo'], r['infer_r_hi'])}" for r in grp)
        resolved = [r for r in grp if r["resolved"]]
        verdict = ("; resolved differences: " + ", ".join(
            f"{r['metric']} {r['r_diff']:+.3f} [{r['r_diff_lo']:+.3f}, {r['r_diff_hi']:+.3f}]" for r in resolved)
            if resolved else "; no difference between training and inference r is resolved")
        lines.append(f"Training step ({tr}) vs inference ({inf}) on the same {grp[0]['n']} models, Pearson r "
                     f"(95% interval): {parts}{verdict}.")
    memory = [r for r in rows if r["quantity"] == "peak memory" and r["metric"] == "acts"]
    for r in memory:
        train_r = _r_text(r["train_r"], r["train_r_lo"], r["train_r_hi"])
        infer_r = _r_text(r["infer_r"], r["infer_r_lo"], r["infer_r_hi"])
        lines.append(f"Peak memory against activations: r={train_r} for the training step ({r['train_series']}), "
                     f"r={infer_r} for inference ({r['infer_series']}).")
    by_series_ratio: dict[str, list[float]] = {}
    for s in split:
        if s["backward_per_forward"] is not None:
            by_series_ratio.setdefault(s["series"], []).append(s["backward_per_forward"])
    for series, ratios in by_series_ratio.items():
        lines.append(f"On {series}, backward plus optimizer step takes {median(ratios):.2f}x the forward "
                     f"(median over {len(ratios)} models; range {min(ratios):.2f}-{max(ratios):.2f}x).")
    return lines


def _grouped(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["infer_series"], r["train_series"]), []).append(r)
    return out


def analyze(points: list[Point], labels: dict[tuple, str], seed: int = 0) -> dict:
    """Everything this module computes for one run (empty lists without train points)."""
    if not any(mode_of(p) == "train" for p in points):
        return {"infer_vs_train": [], "train_split": [], "summary": []}
    rows, split = side_by_side(points, labels, seed), step_split(points, labels)
    return {"infer_vs_train": rows, "train_split": split, "summary": summary_lines(rows, split)}

