"""Statistics behind the deployment-latency report: pure functions on lists of point dicts.

A *point* is one row of the results store (``fsrt.bench.store.POINT_COLUMNS``). Only points with
status ``ok`` or ``unstable`` (flagged) count in fits; parity failures and errors are listed,
never fitted. A *series* is one runtime configuration (runtime, precision, device, batch,
threads); labels show only the fields that vary, so a plain run reads ``eager``, ``openvino``.

Everything here is plain float64 math (no plotting, no I/O) so it can be tested against numpy.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from fsrt.fitting import finite_positive, loglog_fit

METRICS = ("flops", "params", "acts")
COUNTED = ("ok", "unstable")
SERIES_FIELDS = ("runtime", "precision", "device", "batch", "threads")


# -- basic statistics -------------------------------------------------------------------------
def pearson(xs: Iterable[float], ys: Iterable[float], log: bool = False) -> float | None:
    """Pearson correlation of y with x (linear scale as the scaling paper's Figure 2; ``log`` on log-log).

    Pairs with a missing value (or, on log scale, a non-positive one) are dropped. None when fewer
    than three pairs remain or either side is constant (r is undefined or trivially +-1).
    """
    ok = finite_positive if log else (lambda v: v is not None and math.isfinite(v))
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if ok(x) and ok(y)]
    if log:
        pairs = [(math.log(x), math.log(y)) for x, y in pairs]
    n = len(pairs)
    if n < 3:
        return None
    mx = sum(p[0] for p in pairs) / n
    my = sum(p[1] for p in pairs) / n
    sxy = sum((x - mx) * (y - my) for x, y in pairs)
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    syy = sum((y - my) ** 2 for _, y in pairs)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean of positive values (None if there are none): the fair average of ratios."""
    logs = [math.log(v) for v in values if finite_positive(v)]
    return math.exp(sum(logs) / len(logs)) if logs else None


def median(values: Iterable[float]) -> float | None:
    """Median of the non-missing values (None if there are none)."""
    vs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vs:
        return None
    mid = len(vs) // 2
    return vs[mid] if len(vs) % 2 else (vs[mid - 1] + vs[mid]) / 2.0


# -- selecting and grouping -------------------------------------------------------------------
def counted(points: Iterable[dict]) -> list[dict]:
    """Points that count in fits and rankings: status ok or unstable, with a positive median."""
    return [p for p in points if p.get("status") in COUNTED and finite_positive(p.get("median_ms"))]


def with_status(points: Iterable[dict], status: str) -> list[dict]:
    """Points with one status (e.g. 'parity_failed' for the failures table)."""
    return [p for p in points if p.get("status") == status]


def series_key(p: dict) -> tuple:
    """The runtime configuration a point belongs to."""
    return tuple(p.get(f) for f in SERIES_FIELDS)


def series_labels(points: Iterable[dict]) -> dict[tuple, str]:
    """Short, unique labels per series: the runtime plus only the fields that differ between series."""
    keys = sorted({series_key(p) for p in points}, key=lambda k: tuple(str(v) for v in k))
    varying = [i for i in range(1, len(SERIES_FIELDS)) if len({k[i] for k in keys}) > 1]
    labels = {}
    for k in keys:
        parts = [str(k[0])]
        for i in varying:
            f, v = SERIES_FIELDS[i], k[i]
            parts.append(f"b{v}" if f == "batch" else f"{v}t" if f == "threads" else str(v))
        labels[k] = " ".join(parts)
    return labels


def by_series(points: Iterable[dict], labels: dict[tuple, str]) -> dict[str, list[dict]]:
    """Points grouped by series label, labels in sorted order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        groups[labels[series_key(p)]].append(p)
    return {k: groups[k] for k in sorted(groups)}


def group_by(points: Iterable[dict], *fields: str) -> dict[tuple, list[dict]]:
    """Points grouped by the values of ``fields`` (insertion order)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in points:
        groups[tuple(p.get(f) for f in fields)].append(p)
    return dict(groups)


def strategy_label(strategy, alpha) -> str:
    """How a strategy is shown: its name, plus alpha when the name does not already say it."""
    name = str(strategy) if strategy else "base"
    if alpha is None:
        return name
    if name.startswith("alpha"):
        return f"alpha={alpha:.3g}"
    return f"{name} (alpha={alpha:.3g})"


def theory_exponents(strategy, alpha) -> tuple[float | None, float | None]:
    """One-stage theory of (params, acts) exponents against flops: ((1+alpha)/2, (2-alpha)/2) in the
    alpha family, ``e_d + e_w`` and ``e_d + e_w/2 + e_r`` for other named strategies, else (None, None)."""
    if alpha is not None:
        return (1.0 + alpha) / 2.0, (2.0 - alpha) / 2.0
    if not strategy:
        return None, None
    from fsrt.errors import FsrtError
    from fsrt.scaling import parse_strategy

    try:
        st = parse_strategy(strategy)
    except FsrtError:
        return None, None
    return st.params_exponent, st.acts_exponent


# -- analyses ---------------------------------------------------------------------------------
def correlations(points: list[dict], labels: dict[tuple, str]) -> list[dict]:
    """Per series and metric: Pearson r of latency against the metric (linear and log-log) and the
    log-log fit ``latency ~ metric**k`` (the scaling paper's Figure 2 for this machine)."""
    rows = []
    for label, pts in by_series(counted(points), labels).items():
        lat = [p["median_ms"] for p in pts]
        for m in METRICS:
            xs = [p.get(m) for p in pts]
            fit = loglog_fit(xs, lat)
            rows.append({"series": label, "metric": m, "n": len(pts), "pearson_r": pearson(xs, lat),
                         "pearson_r_log": pearson(xs, lat, log=True),
                         "exponent": fit.exponent if fit else None, "coefficient": fit.coefficient if fit else None,
                         "r2": fit.r2 if fit else None})
    return rows


def best_predictors(corr_rows: list[dict]) -> dict[str, dict]:
    """Per series, the metric whose linear Pearson r with latency is highest: series -> row."""
    best: dict[str, dict] = {}
    for row in corr_rows:
        if row["pearson_r"] is None:
            continue
        cur = best.get(row["series"])
        if cur is None or row["pearson_r"] > cur["pearson_r"]:
            best[row["series"]] = row
    return best


def exponents(points: list[dict], labels: dict[tuple, str]) -> list[dict]:
    """Per series, base and strategy: fitted exponents of latency, acts and params against flops,
    next to the one-stage theory. Latency following acts shows up as latency ~ acts theory."""
    rows = []
    for label, pts in by_series(counted(points), labels).items():
        for (base, strategy, alpha), grp in group_by(pts, "base", "strategy", "alpha").items():
            models = {p["model"]: p for p in grp}.values()  # complexity fits count each model once
            lat_fit = loglog_fit([p.get("flops") for p in grp], [p["median_ms"] for p in grp])
            acts_fit = loglog_fit([p.get("flops") for p in models], [p.get("acts") for p in models])
            params_fit = loglog_fit([p.get("flops") for p in models], [p.get("params") for p in models])
            p_theory, a_theory = theory_exponents(strategy, alpha)
            ss = [p["s"] for p in grp if p.get("s") is not None]
            rows.append({
                "series": label, "base": base, "strategy": strategy, "alpha": alpha,
                "strategy_label": strategy_label(strategy, alpha), "n": len(grp),
                "s_min": min(ss) if ss else None, "s_max": max(ss) if ss else None,
                "latency_exponent": lat_fit.exponent if lat_fit else None,
                "latency_r2": lat_fit.r2 if lat_fit else None,
                "acts_exponent": acts_fit.exponent if acts_fit else None, "acts_theory": a_theory,
                "params_exponent": params_fit.exponent if params_fit else None, "params_theory": p_theory,
            })
    rows.sort(key=lambda r: (r["series"], str(r["base"]), r["alpha"] if r["alpha"] is not None else -1,
                             str(r["strategy"])))
    return rows


def roofline(points: list[dict], labels: dict[tuple, str]) -> list[dict]:
    """Per series: how close measured latency gets to its roofline floors (efficiency = floor / median;
    1.0 would mean running at the machine's measured peak), for compulsory and layer-wise bytes."""
    rows = []
    for label, pts in by_series(counted(points), labels).items():
        comp = [p["floor_compulsory_ms"] / p["median_ms"] for p in pts
                if finite_positive(p.get("floor_compulsory_ms"))]
        layer = [p["floor_layer_ms"] / p["median_ms"] for p in pts if finite_positive(p.get("floor_layer_ms"))]
        best = max((p for p in pts if finite_positive(p.get("floor_layer_ms"))),
                   key=lambda p: p["floor_layer_ms"] / p["median_ms"], default=None)
        rows.append({"series": label, "n": len(pts), "n_floor": len(layer) or len(comp),
                     "eff_compulsory_median": median(comp), "eff_compulsory_max": max(comp, default=None),
                     "eff_layer_median": median(layer), "eff_layer_max": max(layer, default=None),
                     "closest_model": best["model"] if best else None})
    return rows


def memory(points: list[dict], labels: dict[tuple, str]) -> list[dict]:
    """Per series: peak memory range and how it tracks activations and params (Pearson r, linear)."""
    rows = []
    for label, pts in by_series(counted(points), labels).items():
        pts = [p for p in pts if finite_positive(p.get("peak_mem_bytes"))]
        if not pts:
            continue
        mem = [p["peak_mem_bytes"] for p in pts]
        rows.append({"series": label, "n": len(pts), "peak_min_bytes": min(mem), "peak_max_bytes": max(mem),
                     "peak_median_bytes": median(mem),
                     "r_acts": pearson([p.get("acts") for p in pts], mem),
                     "r_params": pearson([p.get("params") for p in pts], mem),
                     "bytes_per_act_median": median(p["peak_mem_bytes"] / p["acts"] for p in pts
                                                    if finite_positive(p.get("acts")))})
    return rows


def is_reference(label: str) -> bool:
    """Whether a series is the eager PyTorch baseline that speedups are measured against."""
    return "eager" in label.split(" ")[0].lower()


def ranking(points: list[dict], labels: dict[tuple, str]) -> list[dict]:
    """Per model (and batch): series ordered fastest first, with the speedup of each over eager
    (over the slowest series when no eager point exists for that model)."""
    rows = []
    for (model, batch), pts in group_by(counted(points), "model", "batch").items():
        best_of: dict[str, float] = {}
        for p in pts:
            lab = labels[series_key(p)]
            best_of[lab] = min(best_of.get(lab, math.inf), p["median_ms"])
        order = sorted(best_of.items(), key=lambda kv: (kv[1], kv[0]))
        refs = sorted((lab for lab in best_of if is_reference(lab)), key=lambda lab: ("fp32" not in lab, lab))
        ref_label = refs[0] if refs else order[-1][0]
        ref_ms = best_of[ref_label]
        rows.append({"model": model, "batch": batch, "reference": ref_label,
                     "order": [{"series": lab, "median_ms": ms, "speedup": ref_ms / ms} for lab, ms in order],
                     "fastest": order[0][0], "fastest_ms": order[0][1], "speedup": ref_ms / order[0][1],
                     "flops": pts[0].get("flops")})
    rows.sort(key=lambda r: (r["flops"] or 0, str(r["model"]), r["batch"] or 0))
    return rows


def fastest_runtime(rank_rows: list[dict]) -> dict | None:
    """The series that wins most models; its geometric-mean speedup over eager and over the closest
    competitor (the other series with the smallest geometric-mean latency ratio on shared models)."""
    if not rank_rows:
        return None
    wins: dict[str, int] = defaultdict(int)
    latency: dict[str, dict] = defaultdict(dict)
    for r in rank_rows:
        wins[r["fastest"]] += 1
        for o in r["order"]:
            latency[o["series"]][(r["model"], r["batch"])] = o["median_ms"]
    winner = max(sorted(wins), key=lambda s: wins[s])
    mine = latency[winner]

    def ratio(other: str) -> tuple[float | None, int]:
        shared = [k for k in latency[other] if k in mine]
        return geomean(latency[other][k] / mine[k] for k in shared), len(shared)

    others = [(s, *ratio(s)) for s in sorted(latency) if s != winner]
    others = [o for o in others if o[1] is not None]
    closest = min(others, key=lambda o: o[1], default=None)
    ref = next((o for o in others if is_reference(o[0])), None)
    return {"series": winner, "wins": wins[winner], "models": len(rank_rows),
            "speedup_vs_reference": ref[1] if ref else None, "reference": ref[0] if ref else None,
            "closest": closest[0] if closest else None, "speedup_vs_closest": closest[1] if closest else None}


def fastest_strategy(points: list[dict], labels: dict[tuple, str], series: str) -> list[dict]:
    """Per base model, on one series: the fastest strategy at the largest s that every strategy
    reached, and how much faster it is than the slowest one there."""
    pts = [p for p in counted(points) if labels[series_key(p)] == series and p.get("s") is not None]
    out = []
    for (base,), grp in group_by(pts, "base").items():
        strategies = group_by(grp, "strategy", "alpha")
        if len(strategies) < 2:
            continue
        common = set.intersection(*({p["s"] for p in g} for g in strategies.values()))
        if not common:
            continue
        s = max(common)
        at = sorted(((min(p["median_ms"] for p in g if p["s"] == s), strategy_label(*key))
                     for key, g in strategies.items()))
        out.append({"series": series, "base": base, "s": s, "fastest": at[0][1], "fastest_ms": at[0][0],
                    "slowest": at[-1][1], "slowest_ms": at[-1][0], "speedup": at[-1][0] / at[0][0],
                    "order": [{"strategy": lab, "median_ms": ms} for ms, lab in at]})
    return out


# -- plain-language summary -------------------------------------------------------------------
def _fmt_r(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def summarize(points: list[dict]) -> dict:
    """Every analysis of one run's points plus a short plain-language summary (list of sentences)."""
    labels = series_labels(points)
    corr = correlations(points, labels)
    best = best_predictors(corr)
    rank = ranking(points, labels)
    fastest = fastest_runtime(rank)
    strat = fastest_strategy(points, labels, fastest["series"]) if fastest else []
    roof = roofline(points, labels)
    lines = []
    if not counted(points):
        lines.append("No successfully measured points in this run, so there is nothing to fit.")
    metric_wins: dict[str, list[str]] = defaultdict(list)
    for series, row in best.items():
        metric_wins[row["metric"]].append(series)
    for series, row in best.items():
        others = sorted((r for r in corr if r["series"] == series and r["metric"] != row["metric"]
                         and r["pearson_r"] is not None), key=lambda r: -r["pearson_r"])
        rest = ", ".join(f"{r['metric']} r={_fmt_r(r['pearson_r'])}" for r in others)
        lines.append(f"On {series}, latency is best predicted by {row['metric']} (Pearson r={_fmt_r(row['pearson_r'])}"
                     f"{'; ' + rest if rest else ''}).")
    if len(best) > 1:
        top = max(metric_wins, key=lambda m: (len(metric_wins[m]), m == "acts"))
        lines.append(f"Across runtimes, {top} is the best predictor of latency on {len(metric_wins[top])} of "
                     f"{len(best)} runtimes.")
    if fastest and len({o["series"] for r in rank for o in r["order"]}) > 1:
        text = f"The fastest runtime is {fastest['series']}: fastest on {fastest['wins']} of {fastest['models']} models"
        if fastest["speedup_vs_reference"] is not None:
            text += f", {fastest['speedup_vs_reference']:.2f}x faster than {fastest['reference']} (geometric mean)"
        if fastest["closest"] and fastest["closest"] != fastest["reference"]:
            text += f" and {fastest['speedup_vs_closest']:.2f}x faster than the runner-up {fastest['closest']}"
        lines.append(text + ".")
    for row in strat:
        lines.append(f"At s={row['s']:g} ({row['base']}, on {row['series']}) the fastest strategy is {row['fastest']} "
                     f"at {row['fastest_ms']:.3g} ms, {row['speedup']:.2f}x faster than {row['slowest']} "
                     f"at {row['slowest_ms']:.3g} ms.")
    effs = [r for r in roof if r["eff_layer_median"] is not None]
    if effs:
        top = max(effs, key=lambda r: r["eff_layer_median"])
        lines.append(f"Closest to the roofline: {top['series']} at a median {100 * top['eff_layer_median']:.0f}% of "
                     "its layer-wise floor (floor = max(flops/peak, bytes/bandwidth)).")
        above = [r["series"] for r in roof if (r["eff_compulsory_max"] or 0) > 1 or (r["eff_layer_max"] or 0) > 1]
        if above:
            lines.append(f"Some points beat their roofline floor ({', '.join(above)}): the measured ceilings "
                         "underestimate this machine (or the runtime skips work), so read efficiencies as relative.")
    failed = with_status(points, "parity_failed")
    if failed:
        lines.append(f"{len(failed)} point(s) failed the output-parity check against eager and are excluded from fits.")
    errors = with_status(points, "error")
    if errors:
        lines.append(f"{len(errors)} point(s) could not be measured (errors) and are excluded.")
    unstable = [p for p in points if p.get("status") == "unstable" or (p.get("unstable") and p.get("status") == "ok")]
    if unstable:
        lines.append(f"{len(unstable)} point(s) stayed unstable after re-measuring (high CV); "
                     "they are kept but flagged.")
    return {"labels": {label: dict(zip(SERIES_FIELDS, key)) for key, label in labels.items()},
            "correlations": corr, "best_predictors": best, "exponents": exponents(points, labels),
            "ranking": rank, "fastest_runtime": fastest, "fastest_strategy": strat, "roofline": roof,
            "memory": memory(points, labels), "summary": lines}


# -- comparing runs ---------------------------------------------------------------------------
COMPARE_FIELDS = ("model", "runtime", "precision", "batch")


def compare(runs: list[tuple[str, list[dict]]]) -> dict:
    """Side by side: the same model, runtime, precision and batch across runs (e.g. two machines).

    ``runs`` is ``[(run label, points), ...]``; ratios are each run's median over the first run's
    (above 1 = slower than the first). Returns matched rows and a per-runtime geometric mean.
    """
    tables = []
    for _, pts in runs:
        table: dict[tuple, float] = {}
        for p in counted(pts):
            k = tuple(p.get(f) for f in COMPARE_FIELDS)
            table[k] = min(table.get(k, math.inf), p["median_ms"])
        tables.append(table)
    flops = {tuple(p.get(f) for f in COMPARE_FIELDS): p.get("flops") for _, pts in runs for p in pts}
    keys = sorted(set().union(*tables) if tables else set(),
                  key=lambda k: (flops.get(k) or 0, *(str(v) for v in k)))
    rows = []
    for k in keys:
        medians = [t.get(k) for t in tables]
        base = medians[0]
        ratios = [None if (m is None or base is None) else m / base for m in medians]
        rows.append({**dict(zip(COMPARE_FIELDS, k)), "medians_ms": medians, "ratios": ratios})
    per_runtime = []
    for (runtime, precision, batch), grp in group_by(rows, "runtime", "precision", "batch").items():
        entry = {"runtime": runtime, "precision": precision, "batch": batch, "matched": [], "geomean_ratio": []}
        for i in range(len(runs)):
            rs = [r["ratios"][i] for r in grp if r["ratios"][i] is not None]
            entry["matched"].append(len(rs))
            entry["geomean_ratio"].append(geomean(rs))
        per_runtime.append(entry)
    per_runtime.sort(key=lambda e: (str(e["runtime"]), str(e["precision"]), e["batch"] or 0))
    names = [name for name, _ in runs]
    lines = []
    for i in range(1, len(runs)):
        rs = [r["ratios"][i] for r in rows if r["ratios"][i] is not None]
        g = geomean(rs)
        if g is None:
            lines.append(f"{names[i]} and {names[0]} share no measured model/runtime/precision/batch.")
            continue
        faster = "faster" if g < 1 else "slower"
        lines.append(f"{names[i]} is {max(g, 1 / g):.2f}x {faster} than {names[0]} (geometric mean over "
                     f"{len(rs)} matched points).")
    return {"runs": names, "rows": rows, "per_runtime": per_runtime, "summary": lines}
