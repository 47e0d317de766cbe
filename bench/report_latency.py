"""The report's latency-model section: fitted costs, held-out errors, predicted vs measured, advice.

For a bench run, a model is fitted per series on the run's own points (``latency_model``). For a
run made by ``fsrt advise`` the run config holds the advice (its model, fitted on every stored
point of the series, and its ranked candidates); the measured candidates are the run's points,
and the speedups are recomputed from their stored windows (``advise.judge``).
"""

from __future__ import annotations

import math

from fsrt.bench import plots
from fsrt.bench.advise import judge
from fsrt.bench.latency_model import latency_models

GOAL_MEDIAN, GOAL_P90 = 0.10, 0.20  # what "good enough to rank strategies" means for held-out errors

EXPLANATION = (
    "A latency model per runtime configuration: latency = flops x batch / F + 2 x activations x batch x "
    "element bytes / B_act + weights x element bytes / B_w + layers x t_layer + t_call, each term from the "
    "network's exact complexity, every cost non-negative (Lawson-Hanson NNLS), fitted on relative error with "
    "points of wide intervals trusted less. F is shown in GFLOP/s (2 FLOP per multiply-add), B in GB/s, t in µs; "
    "'unused' means the fit put no cost on that term. Held-out checks predict models the fit never saw: "
    "'extrapolate' fits on the small members (s <= 4) and predicts the large ones, 'strategy' predicts each "
    "strategy's own members from the others, 'leave-one-out' each model from all others, 'base' each base network "
    "from the others. A series with several model families gets a model per family (their layer types run at "
    "different rates). Goal: median error <= 10% and 90th percentile <= 20%.")


def models_of(rd) -> tuple[list[dict], dict | None]:
    """The run's latency models (as dicts) and its advice (None for a bench run)."""
    advice = (rd.run.get("config") or {}).get("advise") if isinstance(rd.run.get("config"), dict) else None
    if advice:
        return [advice["model"]], advice
    return [sm.to_dict() for sm in latency_models(rd.points)], None


def plot_rows(models: list[dict], advice: dict | None, rd) -> list[dict]:
    """Rows for the predicted-vs-measured plot: every held-out prediction, and an advice's measured
    candidates."""
    rows = [{"series": m["series"], "scenario": h["scenario"], "measured_ms": p["measured_ms"],
             "predicted_ms": p["predicted_ms"]} for m in models for h in m["held_out"] for p in h["predictions"]]
    for c in _advice_candidates(advice, rd):
        if c.get("measured_ms"):
            rows.append({"series": advice["model"]["series"], "scenario": "advise (measured candidates)",
                         "measured_ms": c["measured_ms"], "predicted_ms": c["predicted_ms"]})
    return rows


def make_plot(rd, suffix: str = "") -> bytes | None:
    """The predicted-vs-measured PNG of a run (None when nothing was predicted)."""
    models, advice = models_of(rd)
    return plots.predicted_vs_measured(plot_rows(models, advice, rd),
                                       f"latency model: predicted vs measured, held-out{suffix}")


def section(doc, rd, level: int, caption: str, plot_paths: dict) -> dict:
    """Write the section into ``doc`` (the report's Doc); returns what it showed, for summary.json."""
    models, advice = models_of(rd)
    doc.h(level, "Latency model" + caption)
    doc.p(EXPLANATION)
    if advice:
        doc.p(f"Fitted by fsrt advise on the points stored for {advice['model']['series']} on this machine, "
              f"{advice.get('fit_scope') or 'every family'} ({advice['model']['points']} models, "
              f"{_count(advice['fit_flops'][0])} to {_count(advice['fit_flops'][1])} flops).")
    _coefficients(doc, models)
    _held_out(doc, models)
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("latency_model",) if k in plot_paths])
    _extrapolations(doc, models)
    shown = {"models": models}
    if advice:
        shown["advice"] = _advice(doc, level + 1, advice, rd)
    return shown


def _coefficients(doc, models: list[dict]) -> None:
    rows = []
    for m in models:
        f = m["model"]
        if f is None:
            rows.append([m["series"], m["points"], *["-"] * 7, m["reason"]])
            continue
        shares = m.get("largest_shares") or {}
        split = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items() if v >= 0.005)
        rows.append([m["series"], f["n"], _rate(f["gflop_per_s"]), _rate(f["act_gb_per_s"]),
                     _rate(f["param_gb_per_s"]), f"{f['us_per_layer']:.3g}", f"{f['constant_us']:.3g}",
                     _pct(f["rms_rel"]), f"{m.get('largest')}: {split}" if split else "-", ""])
    doc.table(["runtime", "models", "GFLOP/s", "activations GB/s", "weights GB/s", "µs / layer", "µs / call",
               "fit RMS error", "time split at the largest model", "note"], rows, empty="No series to model.")


def _held_out(doc, models: list[dict]) -> None:
    rows = []
    for m in models:
        for h in m["held_out"]:
            met = h["median_abs_error"] <= GOAL_MEDIAN and h["p90_abs_error"] <= GOAL_P90
            rows.append([m["series"], h["scenario"], h["description"], h["n"], _pct(h["median_abs_error"]),
                         _pct(h["p90_abs_error"]), "yes" if met else "no"])
    doc.table(["runtime", "scenario", "what is held out", "predictions", "median |error|", "p90 |error|",
               "goal met"], rows,
              empty="Too few measured models for any held-out check (each needs 6 models to fit on).")


def _extrapolations(doc, models: list[dict]) -> None:
    rows = [[m["series"], p["model"], p["strategy"], f"{p['s']:g}" if p["s"] is not None else "-",
             f"{p['measured_ms']:.4g}", f"{p['predicted_ms']:.4g}", f"{100 * p['error']:+.1f}%"]
            for m in models for h in m["held_out"] if h["scenario"] == "extrapolate" for p in h["predictions"]]
    if rows:
        doc.p("Extrapolation, model by model (fitted on the small members only):")
        doc.table(["runtime", "model", "strategy", "s", "measured ms", "predicted ms", "error"], rows)


def _advice_candidates(advice: dict | None, rd) -> list[dict]:
    """The advice's candidates with the run's measurements attached."""
    if not advice:
        return []
    chosen = [(label, next(c["name"] for c in advice["candidates"] if c["label"] == label))
              for label in advice["measure"]]
    measured, _, _, _ = judge(chosen, rd.points, rd.windows)  # which point is which; the verdicts are not used
    out = []
    for c in advice["candidates"]:
        p = measured.get(c["label"])
        out.append({**c, "measured_ms": p.latency_ms if p else None, "measured_point": p})
    return out


def _advice(doc, level: int, advice: dict, rd) -> dict:
    chosen = [(label, next(c["name"] for c in advice["candidates"] if c["label"] == label))
              for label in advice["measure"]]
    movement = rd.between_runs.point_sd if rd.between_runs else None
    _, comparisons, recommendation, why = judge(chosen, rd.points, rd.windows, movement)
    doc.h(level, "Recommendation")
    doc.p(f"{advice['base']} scaled to {_count(advice['target_flops'])} flops on {advice['model']['series']}: "
          f"every candidate strategy's exact network at the target, ranked by predicted latency ('off': its quantized "
          f"flops miss the target by more than {100 * advice.get('tolerance', 0.05):g}%, so it does not compete); the "
          f"predicted best, dWr and dwr were measured together in interleaved rounds.")
    rows = []
    for i, c in enumerate(_advice_candidates(advice, rd), 1):
        p = c["measured_point"]
        meas = "-" if p is None else f"{p.latency_ms:.4g}" + (f" ±{100 * p.ci_rel:.1f}%" if p.ci_rel else "")
        err = "-" if p is None else f"{100 * (c['predicted_ms'] / p.latency_ms - 1):+.1f}%"
        off = f"{100 * (c['miss'] or 0):+.1f}%" + ("" if c.get("eligible", True) else " (off)")
        rows.append([i, c["label"], f"{c['s']:.3g}", _count(c["flops"]), off, _count(c["params"]), _count(c["acts"]),
                     c["layers"], c["resolution"], f"{c['predicted_ms']:.4g}", meas, err])
    doc.table(["#", "strategy", "s", "flops", "vs target", "params", "acts", "layers", "px", "predicted ms",
               "measured ms", "error"], rows)
    off = [f"{c['label']} lands {100 * c['miss']:+.1f}% from the target flops (its nearest quantized network): "
           "comparisons with it are not at equal flops." for c in advice["candidates"]
           if c["label"] in advice["measure"] and not c.get("eligible", True)]
    doc.ul([c["verdict"] + (" (paired over rounds)" if "paired" in c["speedup"]["method"] else "")
            for c in comparisons] + off + [f"Recommendation: {recommendation} ({why})."])
    return {"comparisons": comparisons, "recommendation": recommendation, "why": why}


def _rate(v) -> str:
    return "unused" if v is None else f"{v:.3g}"


def _pct(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def _count(n) -> str:
    from fsrt.sizes import human

    return "-" if n is None else human(n)
