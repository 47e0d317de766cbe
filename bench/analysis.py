"""Statistics behind the deployment-latency report: pure functions on lists of ``Point``.

Only measured points (status ok or unstable, ``Point.measured``) count in fits and rankings;
parity failures and errors are listed, never fitted. A *series* is one runtime configuration
(runtime, precision, device, batch, threads); labels show only the fields that vary, so a plain
run reads ``eager``, ``openvino``. The unscaled base model is one measurement listed under every
strategy: correlations, rankings and tables count each measurement once (``distinct``), while
each strategy's own fit includes it.

Every figure carries an interval (``fsrt.bench.uncertainty``): comparisons are ratios with
intervals, paired over rounds where both were measured in one sweep; Pearson r and exponents
get bootstrap intervals over points. ``resolved`` says whether an interval supports a claim.
Everything here is plain float64 math (no plotting, no I/O) so it can be tested against numpy.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable

from fsrt.bench.points import Point, Status
from fsrt.bench.rounds import Window
from fsrt.bench.uncertainty import Interval, bootstrap, geomean_ratio, independent_ratio, ratio, with_movement
from fsrt.fitting import finite_positive, loglog_fit

METRICS = ("flops", "params", "acts")
SERIES_FIELDS = ("runtime", "mode", "precision", "device", "batch", "threads")


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
def counted(points: Iterable[Point]) -> list[Point]:
    """Points that count in fits and rankings: measured, with a positive figure."""
    return [p for p in points if p.measured]


def distinct(points: Iterable[Point]) -> list[Point]:
    """One point per measurement (the base model appears under every strategy; keep it once)."""
    seen: dict[str, Point] = {}
    for p in points:
        seen.setdefault(p.measurement_id, p)
    return list(seen.values())


def with_status(points: Iterable[Point], status: Status) -> list[Point]:
    """Distinct points with one status (e.g. parity failures for their table)."""
    return [p for p in distinct(points) if p.status == status]


def series_key(p: Point) -> tuple:
    """The runtime configuration a point belongs to."""
    return tuple(getattr(p, f) for f in SERIES_FIELDS)


def series_labels(points: Iterable[Point]) -> dict[tuple, str]:
    """Short, unique labels per series: the runtime plus only the fields that differ between series
    (and "train" on training-step series even when every series is one, so they never read as inference)."""
    keys = sorted({series_key(p) for p in points}, key=lambda k: tuple(str(v) for v in k))
    mode = SERIES_FIELDS.index("mode")
    varying = [i for i in range(1, len(SERIES_FIELDS)) if len({k[i] for k in keys}) > 1
               or (i == mode and any(k[i] not in (None, "infer") for k in keys))]
    labels = {}
    for k in keys:
        parts = [str(k[0])]
        for i in varying:
            f, v = SERIES_FIELDS[i], k[i]
            parts.append(f"b{v}" if f == "batch" else f"{v}t" if f == "threads" else str(v))
        labels[k] = " ".join(parts)
    return labels


def by_series(points: Iterable[Point], labels: dict[tuple, str]) -> dict[str, list[Point]]:
    """Points grouped by series label, labels in sorted order."""
    groups: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        groups[labels[series_key(p)]].append(p)
    return {k: groups[k] for k in sorted(groups)}


def group_by(points: Iterable, *fields: str) -> dict[tuple, list]:
    """Points (or row dicts) grouped by the values of ``fields`` (insertion order)."""
    groups: dict[tuple, list] = defaultdict(list)
    for p in points:
        get = p.get if isinstance(p, dict) else (lambda f, p=p: getattr(p, f))
        groups[tuple(get(f) for f in fields)].append(p)
    return dict(groups)


def strategy_label(strategy, alpha) -> str:
    """How a strategy is shown: its name, plus alpha when the name does not already say it."""
    name = str(strategy) if strategy else "base"
    if alpha is None:
        return name
    if name.startswith("alpha"):
        return f"alpha={alpha:.3g}"
    return f"{name} (alpha={alpha:.3g})"


def theory_exponents(p: Point) -> tuple[float | None, float | None]:
    """One-stage theory of (params, acts) exponents against flops from the point's strategy
    exponents: ``e_d + e_w`` and ``e_d + e_w/2 + e_r`` ((1+alpha)/2 and (2-alpha)/2 in the alpha family,
    which is all an alpha alone gives)."""
    if p.e_d is not None and p.e_w is not None and p.e_r is not None:
        return p.e_d + p.e_w, p.e_d + p.e_w / 2.0 + p.e_r
    if p.alpha is not None:
        return (1.0 + p.alpha) / 2.0, (2.0 - p.alpha) / 2.0
    return None, None


def _interval_dict(iv: Interval | None) -> dict | None:
    return iv.to_dict() if iv is not None else None


# -- correlations and fits --------------------------------------------------------------------
def _resampler(lat: list[float], movement: float | None, seed: int) -> Callable[[list[int]], list[float]]:
    """A bootstrap resample's latencies, each moved by a draw of the machine's point-by-point
    ``movement`` between runs (log sd) when it is known: the figures another run on this machine
    might have given, so that an interval holds for the machine, not only for this run."""
    rng = random.Random(seed + 1)

    def pick(idx: list[int]) -> list[float]:
        return [lat[i] * math.exp(rng.gauss(0.0, movement)) if movement else lat[i] for i in idx]

    return pick


def _series_correlations(label: str, pts: list[Point], seed: int, movement: float | None = None
                         ) -> tuple[list[dict], dict | None]:
    """Pearson r (with bootstrap interval) and log-log fits of latency against each metric, and the
    best predictor with the interval of its lead over the runner-up (same resamples)."""
    lat = [p.latency_ms for p in pts]
    pick = _resampler(lat, movement, seed)
    cols = {m: [getattr(p, m) for p in pts] for m in METRICS}
    rows = []
    for m in METRICS:
        xs = cols[m]
        fit = loglog_fit(xs, lat)
        r_ci = bootstrap(lambda idx, xs=xs: pearson([xs[i] for i in idx], pick(idx)), len(pts), seed)
        k_ci = bootstrap(lambda idx, xs=xs: _exponent([xs[i] for i in idx], pick(idx)), len(pts), seed)
        rows.append({"series": label, "metric": m, "n": len(pts), "pearson_r": pearson(xs, lat),
                     "pearson_r_lo": r_ci[0] if r_ci else None, "pearson_r_hi": r_ci[1] if r_ci else None,
                     "pearson_r_log": pearson(xs, lat, log=True),
                     "exponent": fit.exponent if fit else None, "exponent_lo": k_ci[0] if k_ci else None,
                     "exponent_hi": k_ci[1] if k_ci else None,
                     "coefficient": fit.coefficient if fit else None, "r2": fit.r2 if fit else None})
    ranked = sorted((r for r in rows if r["pearson_r"] is not None), key=lambda r: -r["pearson_r"])
    if not ranked:
        return rows, None
    best = {**ranked[0], "runner_up": None, "lead_lo": None, "lead_hi": None, "resolved": len(ranked) == 1}
    if len(ranked) > 1:
        a, b = cols[ranked[0]["metric"]], cols[ranked[1]["metric"]]

        def lead(idx):
            ys = pick(idx)
            ra, rb = pearson([a[i] for i in idx], ys), pearson([b[i] for i in idx], ys)
            return None if ra is None or rb is None else ra - rb

        ci = bootstrap(lead, len(pts), seed)
        best.update(runner_up=ranked[1]["metric"], lead_lo=ci[0] if ci else None, lead_hi=ci[1] if ci else None,
                    resolved=bool(ci and ci[0] > 0))
    return rows, best


def _exponent(xs, ys) -> float | None:
    fit = loglog_fit(xs, ys)
    return fit.exponent if fit else None


def correlations(points: list[Point], labels: dict[tuple, str], seed: int = 0, movement: float | None = None
                 ) -> tuple[list[dict], dict[str, dict]]:
    """Per series: correlation rows for each metric, and the best predictor (series -> row with
    ``resolved``), over distinct measured points (the scaling paper's Figure 2 for this machine);
    with the machine's ``movement`` between runs, each resample's latencies move by it."""
    rows, best = [], {}
    for label, pts in by_series(distinct(counted(points)), labels).items():
        r, b = _series_correlations(label, pts, seed, movement)
        rows += r
        if b is not None:
            best[label] = b
    return rows, best


def exponents(points: list[Point], labels: dict[tuple, str], seed: int = 0) -> list[dict]:
    """Per series, base and strategy: fitted exponents of latency (with a bootstrap interval), acts
    and params against flops, next to the one-stage theory."""
    rows = []
    for label, pts in by_series(counted(points), labels).items():
        for (base, strategy, alpha), grp in group_by(pts, "base", "strategy", "alpha").items():
            fl, lat = [p.flops for p in grp], [p.latency_ms for p in grp]
            lat_fit = loglog_fit(fl, lat)
            k_ci = bootstrap(lambda idx, fl=fl, lat=lat: _exponent([fl[i] for i in idx], [lat[i] for i in idx]),
                             len(grp), seed)
            acts_fit = loglog_fit(fl, [p.acts for p in grp])
            params_fit = loglog_fit(fl, [p.params for p in grp])
            p_theory, a_theory = theory_exponents(grp[0])
            ss = [p.s for p in grp if p.s is not None]
            rows.append({
                "series": label, "base": base, "strategy": strategy, "alpha": alpha,
                "strategy_label": strategy_label(strategy, alpha), "n": len(grp),
                "s_min": min(ss) if ss else None, "s_max": max(ss) if ss else None,
                "latency_exponent": lat_fit.exponent if lat_fit else None,
                "latency_exponent_lo": k_ci[0] if k_ci else None, "latency_exponent_hi": k_ci[1] if k_ci else None,
                "latency_r2": lat_fit.r2 if lat_fit else None,
                "acts_exponent": acts_fit.exponent if acts_fit else None, "acts_theory": a_theory,
                "params_exponent": params_fit.exponent if params_fit else None, "params_theory": p_theory,
            })
    rows.sort(key=lambda r: (r["series"], str(r["base"]), r["alpha"] if r["alpha"] is not None else -1,
                             str(r["strategy"])))
    return rows


def roofline(points: list[Point], labels: dict[tuple, str]) -> list[dict]:
    """Per series: how close measured latency gets to its roofline floors (efficiency = floor / figure;
    1.0 would mean running at the machine's measured peak), for compulsory and layer-wise bytes."""
    rows = []
    for label, pts in by_series(distinct(counted(points)), labels).items():
        comp = [p.floor_compulsory_ms / p.latency_ms for p in pts if finite_positive(p.floor_compulsory_ms)]
        layer = [p.floor_layer_ms / p.latency_ms for p in pts if finite_positive(p.floor_layer_ms)]
        best = max((p for p in pts if finite_positive(p.floor_layer_ms)),
                   key=lambda p: p.floor_layer_ms / p.latency_ms, default=None)
        rows.append({"series": label, "n": len(pts), "n_floor": len(layer) or len(comp),
                     "eff_compulsory_median": median(comp), "eff_compulsory_max": max(comp, default=None),
                     "eff_layer_median": median(layer), "eff_layer_max": max(layer, default=None),
                     "closest_model": best.model if best else None})
    return rows


def memory(points: list[Point], labels: dict[tuple, str]) -> list[dict]:
    """Per series: peak memory range and how it tracks activations and params (Pearson r, linear)."""
    rows = []
    for label, pts in by_series(distinct(counted(points)), labels).items():
        pts = [p for p in pts if finite_positive(p.peak_mem_bytes)]
        if not pts:
            continue
        mem = [p.peak_mem_bytes for p in pts]
        rows.append({"series": label, "n": len(pts), "kind": pts[0].mem_kind or "peak memory growth",
                     "peak_min_bytes": min(mem), "peak_max_bytes": max(mem), "peak_median_bytes": median(mem),
                     "r_acts": pearson([p.acts for p in pts], mem), "r_params": pearson([p.params for p in pts], mem),
                     "bytes_per_act_median": median(p.peak_mem_bytes / p.acts for p in pts if finite_positive(p.acts)),
                     "bytes_per_param_median": median(p.peak_mem_bytes / p.params for p in pts
                                                      if finite_positive(p.params))})
    return rows


# -- rankings and comparisons -----------------------------------------------------------------
def is_reference(label: str) -> bool:
    """Whether a series is the eager PyTorch baseline that speedups are measured against."""
    return "eager" in label.split(" ")[0].lower()


def ranking(points: list[Point], labels: dict[tuple, str], windows: dict[str, list[Window]] | None = None,
            movement: float | None = None) -> list[dict]:
    """Per model (and batch and mode): series ordered fastest first, each with its speedup over the reference
    (eager, else the slowest series) as an interval, and whether the fastest is resolved against the
    runner-up. ``movement``: the machine's measured point-by-point movement between runs, which every
    interval then includes (``uncertainty.ratio``)."""
    rows = []
    for (model, batch, mode), pts in group_by(distinct(counted(points)), "model", "batch", "mode").items():
        best: dict[str, Point] = {}
        for p in pts:
            lab = labels[series_key(p)]
            if lab not in best or p.latency_ms < best[lab].latency_ms:
                best[lab] = p
        order = sorted(best.items(), key=lambda kv: (kv[1].latency_ms, kv[0]))
        refs = sorted((lab for lab in best if is_reference(lab)), key=lambda lab: ("fp32" not in lab, lab))
        ref_label = refs[0] if refs else order[-1][0]
        ref = best[ref_label]
        items = []
        for lab, p in order:
            sp = ratio(ref, p, windows, movement)
            items.append({"series": lab, "latency_ms": p.latency_ms, "latency_lo_ms": p.latency_lo_ms,
                          "latency_hi_ms": p.latency_hi_ms, "speedup": sp.value, "speedup_ci": sp.to_dict()})
        lead = ratio(order[1][1], order[0][1], windows, movement) if len(order) > 1 else None
        rows.append({"model": model, "batch": batch, "mode": mode or "infer", "reference": ref_label, "order": items,
                     "fastest": order[0][0], "fastest_ms": order[0][1].latency_ms, "speedup": items[0]["speedup"],
                     "speedup_ci": items[0]["speedup_ci"], "runner_up": order[1][0] if len(order) > 1 else None,
                     "lead": _interval_dict(lead), "resolved": lead is None or lead.excludes(1.0),
                     "flops": pts[0].flops, "_points": dict(best)})
    rows.sort(key=lambda r: (r["mode"] != "infer", r["flops"] or 0, str(r["model"]), r["batch"] or 0))
    return rows


def fastest_runtime(rank_rows: list[dict], windows: dict[str, list[Window]] | None = None,
                    movement: float | None = None) -> dict | None:
    """The series that wins most models (resolved wins first); its geometric-mean speedup over the
    reference and over the closest competitor, each with an interval; ``resolved`` when the lead
    over the closest competitor excludes 1. The machine's ``movement`` is added once to each
    geometric mean, as if every model of a runtime moved together (a runtime can slow as a whole)."""
    if not rank_rows:
        return None
    wins: dict[str, int] = defaultdict(int)
    resolved_wins: dict[str, int] = defaultdict(int)
    for r in rank_rows:
        wins[r["fastest"]] += 1
        resolved_wins[r["fastest"]] += int(r["resolved"] and r["runner_up"] is not None)
    winner = max(sorted(wins), key=lambda s: (resolved_wins[s], wins[s]))
    series = sorted({lab for r in rank_rows for lab in r["_points"]})

    def versus(other: str) -> Interval | None:
        return with_movement(geomean_ratio([ratio(r["_points"][other], r["_points"][winner], windows)
                                            for r in rank_rows if other in r["_points"] and winner in r["_points"]],
                                           shared_errors=False), movement)

    others = [(s, versus(s)) for s in series if s != winner]
    others = [(s, iv) for s, iv in others if iv is not None]
    closest = min(others, key=lambda o: o[1].value, default=None)
    ref = min((o for o in others if is_reference(o[0])), key=lambda o: ("fp32" not in o[0], o[0]), default=None)
    return {"series": winner, "wins": wins[winner], "resolved_wins": resolved_wins[winner], "models": len(rank_rows),
            "speedup_vs_reference": ref[1].value if ref else None, "reference": ref[0] if ref else None,
            "speedup_vs_reference_ci": _interval_dict(ref[1]) if ref else None,
            "closest": closest[0] if closest else None, "speedup_vs_closest": closest[1].value if closest else None,
            "speedup_vs_closest_ci": _interval_dict(closest[1]) if closest else None,
            "resolved": bool(closest and closest[1].excludes(1.0))}


def fastest_strategy(points: list[Point], labels: dict[tuple, str], series: str,
                     windows: dict[str, list[Window]] | None = None, movement: float | None = None) -> list[dict]:
    """Per base model, on one series: strategies ordered by latency at the largest s that every
    strategy reached; the fastest's lead over the next (``resolved`` when its interval excludes 1)
    and over the slowest, both including the machine's ``movement`` between runs when given."""
    pts = [p for p in counted(points) if labels[series_key(p)] == series and p.s is not None]
    out = []
    for (base,), grp in group_by(pts, "base").items():
        strategies = group_by(grp, "strategy", "alpha")
        if len(strategies) < 2:
            continue
        common = set.intersection(*({p.s for p in g} for g in strategies.values()))
        # an s where every strategy gives the same network (the base at s=1) has nothing to compare
        common = {s for s in common if len({p.measurement_id for p in grp if p.s == s}) > 1}
        if not common:
            continue
        s = max(common)
        at = sorted(((min((p for p in g if p.s == s), key=lambda p: p.latency_ms), strategy_label(*key))
                     for key, g in strategies.items()), key=lambda t: t[0].latency_ms)
        lead = ratio(at[1][0], at[0][0], windows, movement)
        spread = ratio(at[-1][0], at[0][0], windows, movement)
        out.append({"series": series, "base": base, "s": s, "fastest": at[0][1], "fastest_ms": at[0][0].latency_ms,
                    "next": at[1][1], "lead": lead.to_dict(), "resolved": lead.excludes(1.0),
                    "same_model": at[0][0].measurement_id == at[1][0].measurement_id,
                    "slowest": at[-1][1], "slowest_ms": at[-1][0].latency_ms, "speedup": spread.value,
                    "speedup_ci": spread.to_dict(),
                    "order": [{"strategy": lab, "latency_ms": p.latency_ms} for p, lab in at]})
    return out


# -- comparing runs ---------------------------------------------------------------------------
COMPARE_FIELDS = ("model", "runtime", "precision", "batch")


def compare(runs: list[tuple[str, list[Point]]], same_machine: bool = False, level_sd: float | None = None) -> dict:
    """Side by side: the same model, runtime, precision and batch across runs (e.g. two machines).

    ``runs`` is ``[(run label, points), ...]``; ratios are each run's figure over the first run's
    (above 1 = slower than the first), with independent intervals; per runtime, a geometric mean.
    Each run's summary line also says how far its points differ around their common factor (the
    structure of the two runs, apart from a factor every point shares) and, when the runs share
    one machine (``same_machine``), that a common factor alone is that machine's level moving.
    ``level_sd``, the machine's measured movement between runs (``machine_history``), widens each
    geometric mean's interval by the level difference two runs on that machine can show.
    """
    tables = []
    for _, pts in runs:
        table: dict[tuple, Point] = {}
        for p in counted(pts):
            k = tuple(getattr(p, f) for f in COMPARE_FIELDS)
            if k not in table or p.latency_ms < table[k].latency_ms:
                table[k] = p
        tables.append(table)
    flops = {tuple(getattr(p, f) for f in COMPARE_FIELDS): p.flops for _, pts in runs for p in pts}
    keys = sorted(set().union(*tables) if tables else set(), key=lambda k: (flops.get(k) or 0, *(str(v) for v in k)))
    rows = []
    for k in keys:
        cells = [t.get(k) for t in tables]
        ivs = [None if (c is None or cells[0] is None) else independent_ratio(c, cells[0]) for c in cells]
        rows.append({**dict(zip(COMPARE_FIELDS, k)), "latency_ms": [c.latency_ms if c else None for c in cells],
                     "ratios": [iv.value if iv else None for iv in ivs],
                     "ratio_cis": [_interval_dict(iv) for iv in ivs],
                     "resolved": [bool(iv and iv.excludes(1.0)) for iv in ivs], "_ivs": ivs})
    per_runtime = []
    for (runtime, precision, batch), grp in group_by(rows, "runtime", "precision", "batch").items():
        entry = {"runtime": runtime, "precision": precision, "batch": batch, "matched": [], "geomean_ratio": [],
                 "geomean_ci": []}
        for i in range(len(runs)):
            ivs = [r["_ivs"][i] for r in grp if r["_ivs"][i] is not None]
            g = with_movement(geomean_ratio(ivs, shared_errors=True), level_sd)
            entry["matched"].append(len(ivs))
            entry["geomean_ratio"].append(g.value if g else None)
            entry["geomean_ci"].append(_interval_dict(g))
        per_runtime.append(entry)
    per_runtime.sort(key=lambda e: (str(e["runtime"]), str(e["precision"]), e["batch"] or 0))
    names = [name for name, _ in runs]
    lines = []
    structure = [None]
    for i in range(1, len(runs)):
        ivs = [r["_ivs"][i] for r in rows if r["_ivs"][i] is not None]
        structure.append(around_common_factor(ivs))
        g = with_movement(geomean_ratio(ivs, shared_errors=True), level_sd)
        if g is None:
            lines.append(f"{names[i]} and {names[0]} share no measured model/runtime/precision/batch.")
            continue
        lines.append(_run_vs_run_line(names[i], names[0], g, structure[i], same_machine, level_sd))
    for r in rows:
        del r["_ivs"]
    return {"runs": names, "rows": rows, "per_runtime": per_runtime, "summary": lines, "structure": structure}


def around_common_factor(ratios: list[Interval]) -> dict | None:
    """How far matched points' ratios differ around their geometric mean: the mean and the largest
    absolute log deviation, and the matched points. A factor every point shares (one machine faster
    during one run) moves the geometric mean and leaves these; a change of some points shows here."""
    if not ratios:
        return None
    logs = [math.log(r.value) for r in ratios]
    mid = sum(logs) / len(logs)
    dev = [abs(x - mid) for x in logs]
    return {"points": len(logs), "mean_abs_log_deviation": sum(dev) / len(dev), "worst_abs_log_deviation": max(dev)}


def _run_vs_run_line(name: str, first: str, g: Interval, structure: dict, same_machine: bool,
                     level_sd: float | None = None) -> str:
    n = structure["points"]
    ci = f" (95% interval {g.lo:.2f}-{g.hi:.2f})" if g.lo else ""
    if not g.excludes(1.0) and g.lo:
        line = f"{name} and {first}: not resolved, ratio {g.value:.3f}{ci} over {n} matched points"
    else:
        faster = "faster" if g.value < 1 else "slower"
        line = (f"{name} is {max(g.value, 1 / g.value):.2f}x {faster} than {first} (geometric mean over "
                f"{n} matched points{ci and ', ratio' + ci})")
    line += (f"; around that common factor the points differ by {100 * structure['mean_abs_log_deviation']:.1f}% "
             f"on average, {100 * structure['worst_abs_log_deviation']:.1f}% at most.")
    if same_machine and level_sd:
        line += (f" Both runs are on this machine, whose speed moves between runs with a measured standard deviation "
                 f"of {100 * level_sd:.1f}% per run; the interval includes that movement.")
    elif same_machine:
        line += (" Both runs are on this machine: a factor common to every point, with the points agreeing around "
                 "it, is the machine's speed moving between the runs (each run's intervals cover only its own "
                 "minutes), not a difference of what was measured.")
    return line
