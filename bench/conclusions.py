"""Every analysis of one run, and the plain-language summary the report opens with.

A sentence claims only what its interval supports: a best predictor, a fastest runtime or a
fastest strategy is named as such only when resolved (its interval excludes a tie); otherwise
the sentence says "not resolved" and gives the numbers.
"""

from __future__ import annotations

from collections import defaultdict

from fsrt.bench import analysis, train_analysis
from fsrt.bench.noise import describe_probe, run_noise
from fsrt.bench.points import Point, Status
from fsrt.bench.precision_costs import precision_costs, precision_lines
from fsrt.bench.rounds import Window


def _r(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def _ci(d: dict | None, fmt: str = "{:.2f}") -> str:
    """' (95% interval a-b)' for an interval dict, or ''."""
    if not d or d.get("lo") is None:
        return ""
    return f" (95% interval {fmt.format(d['lo'])}-{fmt.format(d['hi'])})"


def _predictor_lines(best: dict[str, dict], corr: list[dict]) -> list[str]:
    lines = []
    for series, row in best.items():
        r_ci = f" [{row['pearson_r_lo']:.3f}, {row['pearson_r_hi']:.3f}]" if row.get("pearson_r_lo") is not None else ""
        others = sorted((r for r in corr if r["series"] == series and r["metric"] != row["metric"]
                         and r["pearson_r"] is not None), key=lambda r: -r["pearson_r"])
        rest = ", ".join(f"{r['metric']} r={_r(r['pearson_r'])}" for r in others)
        if row["resolved"]:
            lines.append(f"On {series}, latency is best predicted by {row['metric']} (Pearson r={_r(row['pearson_r'])}"
                         f"{r_ci}{'; ' + rest if rest else ''}).")
        else:
            lead = (f"; the interval of its lead, {row['lead_lo']:+.3f} to {row['lead_hi']:+.3f}, includes 0"
                    if row.get("lead_lo") is not None else "")
            lines.append(f"On {series}, {row['metric']} and {row['runner_up']} predict latency about equally well "
                         f"(Pearson r={_r(row['pearson_r'])}{r_ci}; {rest}): not resolved{lead}.")
    resolved = {s: r for s, r in best.items() if r["resolved"]}
    if len(best) > 1 and resolved:
        wins: dict[str, list[str]] = defaultdict(list)
        for s, r in resolved.items():
            wins[r["metric"]].append(s)
        top = max(wins, key=lambda m: (len(wins[m]), m == "acts"))
        lines.append(f"Across runtimes, {top} is the best predictor of latency on {len(wins[top])} of {len(best)} "
                     "runtimes.")
    return lines


def _runtime_line(fastest: dict | None, n_series: int) -> list[str]:
    if not fastest or n_series < 2:
        return []
    if not fastest["resolved"]:
        return [f"No runtime is resolved as fastest: {fastest['series']} leads {fastest['closest']} by "
                f"{fastest['speedup_vs_closest']:.2f}x{_ci(fastest['speedup_vs_closest_ci'])}, not resolved."]
    text = (f"The fastest runtime is {fastest['series']}: fastest on {fastest['wins']} of {fastest['models']} models "
            f"({fastest['resolved_wins']} resolved)")
    if fastest["speedup_vs_reference"] is not None:
        text += (f", {fastest['speedup_vs_reference']:.2f}x faster than {fastest['reference']} (geometric mean"
                 f"{_ci(fastest['speedup_vs_reference_ci']).replace(' (', ', ').rstrip(')')})")
    if fastest["closest"] and fastest["closest"] != fastest["reference"]:
        text += (f" and {fastest['speedup_vs_closest']:.2f}x faster than the runner-up {fastest['closest']}"
                 f"{_ci(fastest['speedup_vs_closest_ci'])}")
    return [text + "."]


def _strategy_lines(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        where = f"At s={row['s']:g} ({row['base']}, on {row['series']})"
        lead = row["lead"]
        if row["resolved"]:
            lines.append(f"{where} the fastest strategy is {row['fastest']} at {row['fastest_ms']:.3g} ms, "
                         f"{row['speedup']:.2f}x faster than {row['slowest']} at {row['slowest_ms']:.3g} ms"
                         f"{_ci(row['speedup_ci'])}; it leads the next, {row['next']}, by {lead['value']:.2f}x"
                         f"{_ci(lead)}.")
        else:
            lines.append(f"{where} no strategy is resolved as fastest: {row['fastest']} and {row['next']} differ by "
                         f"{lead['value']:.3f}x{_ci(lead, '{:.3f}')}, not resolved; the slowest, {row['slowest']}, "
                         f"is {row['speedup']:.2f}x slower{_ci(row['speedup_ci'])}.")
    return lines


def _noise_line(noise: dict, probe: dict | None, movement: float | None = None) -> list[str]:
    lines = []
    if noise["windows"]:
        text = (f"Machine noise met by this run: {noise['windows']} timing windows over {noise['measurements']} "
                "measurements")
        if noise["spread_median"] is not None:
            text += (f"; a measurement's windows spread {100 * noise['spread_median']:.1f}% typically "
                     f"({100 * noise['spread_max']:.1f}% at worst)")
        if noise["drift_min"] is not None:
            text += (f"; the machine's speed drifted from {noise['drift_min']:.3f}x to {noise['drift_max']:.3f}x of "
                     "typical between rounds")
        lines.append(text + f"; {noise['dropped']} outlier window(s) were dropped and measured again.")
    if probe:
        lines.append(describe_probe(probe))
    if movement is not None:
        lines.append(f"Every comparison above includes this machine's measured movement between runs "
                     f"({100 * movement:.1f}% per point beyond its within-run error), so a resolved claim holds for "
                     "the machine, not only for this run's minutes.")
    else:
        lines.append("How far this machine's speed moves between runs is not measured yet, so the comparisons above "
                     "hold for this run's minutes; a second run into another database measures it.")
    return lines


def _roofline_lines(roof: list[dict]) -> list[str]:
    effs = [r for r in roof if r["eff_layer_median"] is not None]
    if not effs:
        return []
    top = max(effs, key=lambda r: r["eff_layer_median"])
    lines = [f"Closest to the roofline: {top['series']} at a median {100 * top['eff_layer_median']:.0f}% of its "
             "layer-wise floor (floor = max(flops/peak, bytes/bandwidth))."]
    above = [r["series"] for r in roof if (r["eff_compulsory_max"] or 0) > 1 or (r["eff_layer_max"] or 0) > 1]
    if above:
        lines.append(f"Some points beat their roofline floor ({', '.join(above)}): the measured ceilings "
                     "underestimate this machine (or the runtime skips work), so read efficiencies as relative.")
    return lines


def _status_lines(points: list[Point]) -> list[str]:
    lines = []
    failed = analysis.with_status(points, Status.PARITY_FAILED)
    if failed:
        lines.append(f"{len(failed)} point(s) failed the output-parity check against eager and are excluded from fits.")
    errors = analysis.with_status(points, Status.ERROR)
    if errors:
        lines.append(f"{len(errors)} point(s) could not be measured (errors) and are excluded.")
    unstable = analysis.with_status(points, Status.UNSTABLE)
    if unstable:
        lines.append(f"{len(unstable)} point(s) stayed unstable (95% interval wider than the target when the rounds "
                     "ended); they are kept with their wider interval.")
    return lines


def summarize(points: list[Point], windows: dict[str, list[Window]] | None = None, probe: dict | None = None,
              seed: int = 0, movement: float | None = None) -> dict:
    """Every analysis of one run's points plus a short plain-language summary (list of sentences).
    ``movement``: the machine's measured point-by-point movement between runs (``machine_history``),
    which every comparison between two points then includes, so that "resolved" holds beyond this
    run's minutes."""
    windows = windows or {}
    labels = analysis.series_labels(points)
    corr, best = analysis.correlations(points, labels, seed, movement)
    rank = analysis.ranking(points, labels, windows, movement)
    by_mode = {m: analysis.fastest_runtime([r for r in rank if r["mode"] == m], windows, movement)
               for m in dict.fromkeys(r["mode"] for r in rank)}  # inference and training steps apart
    fastest = by_mode.get("infer") or next(iter(by_mode.values()), None)
    strat = [row for f in by_mode.values() if f
             for row in analysis.fastest_strategy(points, labels, f["series"], windows, movement)]
    roof = analysis.roofline(points, labels)
    costs = precision_costs(points, windows, movement)
    train = train_analysis.analyze(points, labels, seed)
    noise = run_noise({m: w for m, w in windows.items()}).to_dict()
    lines = [] if analysis.counted(points) else ["No successfully measured points in this run, so there is nothing "
                                                 "to fit."]
    lines += _predictor_lines(best, corr)
    for mode, f in by_mode.items():
        mode_lines = _runtime_line(f, len({o["series"] for r in rank if r["mode"] == mode for o in r["order"]}))
        lines += [f"Training steps: {x[0].lower()}{x[1:]}" if mode == "train" else x for x in mode_lines]
    lines += _strategy_lines(strat)
    lines += precision_lines(costs)
    lines += train["summary"]
    lines += _roofline_lines(roof)
    lines += _status_lines(points)
    lines += _noise_line(noise, probe, movement)
    for r in rank:
        r.pop("_points", None)
    return {"labels": {label: dict(zip(analysis.SERIES_FIELDS, key)) for key, label in labels.items()},
            "correlations": corr, "best_predictors": best, "exponents": analysis.exponents(points, labels, seed),
            "ranking": rank, "fastest_runtime": fastest, "fastest_runtime_by_mode": by_mode,
            "fastest_strategy": strat, "roofline": roof, "memory": analysis.memory(points, labels), "noise": noise,
            "thread_probe": probe, "infer_vs_train": train["infer_vs_train"], "train_split": train["train_split"],
            "summary": lines, "precisions": costs}
