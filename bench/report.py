"""The deployment-latency report: Markdown, a self-contained HTML page, PNG plots, CSV and JSON.

``write_report(store, run_ids, out_dir)`` reads runs from the results store, analyses them
(``fsrt.bench.analysis``), draws the plots (``fsrt.bench.plots``) and writes, each file atomically:

- ``report.md`` and ``report.html`` (plots embedded as data URIs, inline CSS, no network),
- ``plots/*.png``, ``points.csv`` (every point of the runs) and ``summary.json``.

Everything is rendered in memory first, so a failure never leaves a half-written report, and
nothing but these files is touched (other files in ``out_dir`` stay). Two or more runs (e.g. two
machines) are also put side by side.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from fsrt.accuracy import LOWER_FACTOR, UPPER_FACTOR
from fsrt.bench import analysis, plots, report_latency
from fsrt.bench.conclusions import summarize
from fsrt.bench.machine_history import NOT_MEASURED, BetweenRuns
from fsrt.bench.machine_history import SETTING as BETWEEN_RUNS
from fsrt.bench.noise import THREADS_SETTING, describe_probe
from fsrt.bench.points import POINT_FIELDS, Point, Status
from fsrt.bench.rounds import Window
from fsrt.errors import FsrtError
from fsrt.io import write_folder
from fsrt.sizes import human

CSV_COLUMNS = ("run_id", "run_name", "machine_id", "id", *POINT_FIELDS, "eff_compulsory", "eff_layer")


# -- a tiny document model rendered to both Markdown and HTML --------------------------------------
@dataclass
class Doc:
    """An ordered list of blocks (heading, paragraph, list, table, images) with two renderers."""

    blocks: list = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        """A heading."""
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        """A paragraph."""
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        """A bullet list (skipped when empty)."""
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, headers: list[str], rows: list[list], empty: str | None = None, numeric: bool = True) -> None:
        """A table (numbers right-aligned in HTML unless ``numeric`` is False); with no rows, the ``empty``
        sentence instead (or nothing)."""
        if rows:
            self.blocks.append(("table", list(headers), [[_cell(c) for c in r] for r in rows], numeric))
        elif empty:
            self.p(empty)

    def images(self, items: list[tuple[str, str]]) -> None:
        """Plots shown side by side in HTML: ``[(relative path, caption), ...]``."""
        if items:
            self.blocks.append(("img", list(items)))

    def to_markdown(self) -> str:
        """GitHub-flavoured Markdown; images link to the PNG files next to the report."""
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"{'#' * b[1]} {b[2]}")
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {i}" for i in b[1]))
            elif b[0] == "table":
                esc = lambda s: s.replace("|", "\\|").replace("\n", " ")
                lines = ["| " + " | ".join(esc(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in b[2]]
                out.append("\n".join(lines))
            elif b[0] == "img":
                out.append("\n\n".join(f"![{cap}]({path})" for path, cap in b[1]))
        return "\n\n".join(out) + "\n"

    def to_html(self, images: dict[str, bytes], title: str) -> str:
        """One self-contained page: inline CSS, PNGs as base64 data URIs, no scripts, no links out."""
        e = html.escape
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{e(h)}</th>" for h in b[1])
                numeric = b[3]
                rows = "".join("<tr>" + "".join(f"<td{' class=n' if numeric and _NUMERIC.match(c) else ''}>{e(c)}</td>"
                                                for c in r) + "</tr>" for r in b[2])
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                            "</table></div>")
            elif b[0] == "img":
                figs = []
                for path, cap in b[1]:
                    data = base64.b64encode(images[path]).decode("ascii")
                    figs.append(f'<figure><img src="data:image/png;base64,{data}" alt="{e(cap)}">'
                                f"<figcaption>{e(cap)}</figcaption></figure>")
                body.append('<div class="figs">' + "".join(figs) + "</div>")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
                f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1400px;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{border-bottom:1px solid #bbb;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;white-space:nowrap}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}.scroll{overflow-x:auto}
.figs{display:flex;flex-wrap:wrap;gap:1em}figure{margin:.5em 0}
img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
""".replace("\n", "")


_NUMERIC = re.compile(r"^[-+]?[0-9][0-9.,]*(e[-+]?[0-9]+)?(x|%| ms| MiB|[KMGT])?$|^-$")


# -- formatting ---------------------------------------------------------------------------------
def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _r(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _count(n) -> str:
    """A large count in engineering units (flops, params, acts, bytes)."""
    return "-" if n is None else human(n)


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MiB"


def _time(t) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(map(str, v))
        else:
            out[key] = str(v)
    return out


def _jsonable(v):
    """Replace non-finite floats by None and tuples by lists so the JSON is strict."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


# -- loading runs -------------------------------------------------------------------------------
@dataclass
class RunData:
    """One run as the report needs it."""

    run: dict
    label: str
    points: list[Point]
    windows: dict[str, list[Window]]
    unavailable: dict[str, str]
    machine: dict
    ceilings: list[dict]
    probe: dict | None
    analysis: dict
    between_runs: BetweenRuns | None = None  # the machine's measured movement between runs
    latency_model: dict = field(default_factory=dict)  # what the latency-model section showed

    @property
    def slug(self) -> str:
        """A file-name-safe name for this run's plots."""
        return f"run{self.run['id']}"


def _load(store, run_ids: list) -> list[RunData]:
    runs = [store.run(r) for r in run_ids]
    seen = set()
    for r in runs:
        if r["id"] in seen:
            raise FsrtError(f"run {r['name']!r} (id {r['id']}) was given twice; name each run once")
        seen.add(r["id"])
    names = [r["name"] for r in runs]
    machines = store.machines()
    out = []
    for r in runs:
        label = r["name"] if names.count(r["name"]) == 1 else f"{r['name']}#{r['id']}"
        pts = store.run_points(r["id"])
        windows = store.windows(r["machine_id"], sorted({p.mkey for p in pts if p.mkey}))
        probe = store.setting(r["machine_id"], THREADS_SETTING)
        between = BetweenRuns.from_dict(store.setting(r["machine_id"], BETWEEN_RUNS))
        analysis_ = summarize(pts, windows, probe, movement=between.point_sd if between else None)
        out.append(RunData(r, label, pts, windows, store.unavailable(r["id"]), machines.get(r["machine_id"], {}),
                           store.ceilings(r["machine_id"]), probe, analysis_, between_runs=between))
    return out


def _distinct(points: list[Point], key: str) -> str:
    vals = sorted({getattr(p, key) for p in points if getattr(p, key) is not None}, key=str)
    return ", ".join(map(str, vals)) or "-"


def _status_counts(points: list[Point]) -> str:
    pts = analysis.distinct(points)
    counts = {str(s): sum(1 for p in pts if p.status == s) for s in Status}
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none"


def _latency(p) -> str:
    """A figure with its interval, e.g. '5.42 ms +-0.8%'."""
    if isinstance(p, dict):
        ms, lo, hi = p.get("latency_ms"), p.get("latency_lo_ms"), p.get("latency_hi_ms")
    else:
        ms, lo, hi = p.latency_ms, p.latency_lo_ms, p.latency_hi_ms
    if ms is None:
        return "-"
    if lo and hi:
        return f"{ms:.3g} ±{100 * max(hi / ms - 1, 1 - lo / ms):.1f}%"
    return f"{ms:.3g}"


def _ratio(iv: dict | None) -> str:
    """'1.234x [1.201, 1.262]' for an interval dict (three decimals near 1, where ties are decided)."""
    if not iv:
        return "-"
    f = (lambda v: f"{v:.3f}") if iv["value"] < 10 else (lambda v: f"{v:.1f}")
    if iv.get("lo") is None:
        return f"{f(iv['value'])}x"
    return f"{f(iv['value'])}x [{f(iv['lo'])}, {f(iv['hi'])}]"


def _rounds_range(points: list[Point]) -> str:
    rs = [p.rounds for p in points if p.rounds]
    return "-" if not rs else (f"{min(rs)}" if min(rs) == max(rs) else f"{min(rs)}-{max(rs)}")


# -- sections -----------------------------------------------------------------------------------
def _header(doc: Doc, runs: list[RunData]) -> None:
    fp_keys: list[str] = []
    for rd in runs:
        for k in _flatten(rd.machine):
            if k not in fp_keys:
                fp_keys.append(k)
    rows = [["run id", *[rd.run["id"] for rd in runs]],
            ["created", *[_time(rd.run.get("created")) for rd in runs]],
            ["finished", *[_time(rd.run.get("finished")) if rd.run.get("finished") else "not finished" for rd in runs]],
            ["machine id", *[rd.run["machine_id"] for rd in runs]]]
    rows += [[k, *[_flatten(rd.machine).get(k, "-") for rd in runs]] for k in fp_keys]
    rows += [["runtimes measured", *[_distinct(rd.points, "runtime") for rd in runs]],
             ["runtimes unavailable", *[", ".join(sorted(rd.unavailable)) or "none" for rd in runs]],
             ["mode", *[_distinct(rd.points, "mode") for rd in runs]],
             ["precision", *[_distinct(rd.points, "precision") for rd in runs]],
             ["threads", *[_distinct(rd.points, "threads") for rd in runs]],
             ["batch", *[_distinct(rd.points, "batch") for rd in runs]],
             ["device", *[_distinct(rd.points, "device") for rd in runs]],
             ["L2 cache state", *[_distinct(rd.points, "l2") for rd in runs]],
             ["figure", *[_distinct(rd.points, "statistic") for rd in runs]],
             ["rounds per point", *[_rounds_range(rd.points) for rd in runs]],
             ["points", *[f"{len(analysis.distinct(rd.points))} measurements ({_status_counts(rd.points)})"
                          for rd in runs]]]
    doc.h(2, "Runs and machines")
    doc.table(["", *[rd.label for rd in runs]], rows, numeric=False)
    unavailable = [[rd.label, rt, why] for rd in runs for rt, why in sorted(rd.unavailable.items())]
    doc.h(3, "Unavailable runtimes")
    doc.table(["run", "runtime", "reason"], unavailable, empty="Every requested runtime ran.")
    ceil_rows = [[rd.label, c["device"], c["dtype"], c["threads"], f"{c['peak_flops'] / 1e9:.1f}",
                  f"{c['copy_bytes_per_s'] / 1e9:.1f}", _time(c.get("measured"))]
                 for rd in runs for c in sorted(rd.ceilings, key=lambda c: (c["device"], c["dtype"], c["threads"]))]
    doc.h(3, "Machine ceilings")
    doc.p("Measured on the machine: matmul peak in GFLOP/s (1 multiply-add = 2 FLOP) and copy bandwidth in GB/s "
          "(read + write). Roofline floors are max(flops / peak, bytes / bandwidth).")
    doc.table(["run", "device", "dtype", "threads", "peak GFLOP/s", "copy GB/s", "measured"], ceil_rows,
              empty="No ceilings were measured, so no roofline floors are available.")


def _noise_section(doc: Doc, rd: RunData, level: int, caption: str) -> None:
    n = rd.analysis["noise"]
    doc.h(level, "Measurement and machine noise" + caption)
    doc.p("Every point was timed in interleaved rounds: each round visits every point still being measured, in a "
          "fresh random order, for one short window (untimed re-warm calls, then timed calls). A point's figure is "
          "the interquartile mean of all its timed calls (the mean of their middle half); its 95% interval is the "
          "delete-one-window jackknife of that figure. Windows far from a point's others (beyond 5 robust sigmas "
          "and 10%) are dropped and measured again. Comparisons within this run pair the two points' windows round "
          "by round; comparisons between runs combine their intervals. An interval describes this run's "
          "minutes only: on a shared virtual machine the machine's speed can move more between runs minutes "
          "apart (seen: 5% on every point, and 1.1-1.3x per runtime between two default runs half an hour "
          "apart), which no single run can see. That movement is measured from the runs kept for this "
          "machine:")
    doc.p(rd.between_runs.sentence() if rd.between_runs else NOT_MEASURED)
    doc.table(["figure", "value"], [
        ["timing windows", n["windows"]], ["measurements", n["measurements"]],
        ["outlier windows dropped (and measured again)", n["dropped"]],
        ["window spread around the figure, typical", _pct(n["spread_median"])],
        ["window spread around the figure, worst", _pct(n["spread_max"])],
        ["machine speed between rounds, slowest", "-" if n["drift_min"] is None else f"{n['drift_min']:.3f}x"],
        ["machine speed between rounds, fastest", "-" if n["drift_max"] is None else f"{n['drift_max']:.3f}x"],
    ], numeric=True)
    doc.p(describe_probe(rd.probe))


def _summary(doc: Doc, runs: list[RunData], comparison: dict | None) -> None:
    doc.h(2, "Summary")
    for rd in runs:
        if len(runs) > 1:
            doc.h(3, rd.label)
        doc.ul(rd.analysis["summary"])
    if comparison:
        doc.h(3, "Side by side")
        doc.ul(comparison["summary"])


def _range(lo, hi, fmt="{:.3f}") -> str:
    return "-" if lo is None or hi is None else f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def _correlation_section(doc: Doc, a: dict, level: int, caption: str, plot_paths: dict) -> None:
    doc.h(level, "Latency vs flops, params and activations" + caption)
    doc.p("Pearson r is computed on the linear scale, as in the scaling paper's Figure 2, with a 95% bootstrap "
          "interval over the measured models; the log-log r and the fitted power law latency ~ metric^k are shown "
          "beside it. 'best' names the metric with the highest r only when its lead over the next is resolved.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("latency_vs_metrics",) if k in plot_paths])
    best = {s: r for s, r in a["best_predictors"].items()}
    doc.table(["runtime", "metric", "n", "Pearson r", "r interval", "r (log-log)", "exponent k", "k interval",
               "r2 (log-log)", "best"],
              [[r["series"], r["metric"], r["n"], _r(r["pearson_r"]), _range(r["pearson_r_lo"], r["pearson_r_hi"]),
                _r(r["pearson_r_log"]), _r(r["exponent"]), _range(r["exponent_lo"], r["exponent_hi"]), _r(r["r2"]),
                ("yes" if best[r["series"]]["resolved"] else "not resolved")
                if r["series"] in best and best[r["series"]]["metric"] == r["metric"] else ""]
               for r in a["correlations"]], empty="No measured points to correlate.")


def _exponent_section(doc: Doc, a: dict, level: int, caption: str, plot_paths: dict) -> None:
    doc.h(level, "Scaling exponents against flops" + caption)
    doc.p("Per strategy, least squares in log-log: latency ~ flops^k (95% bootstrap interval), acts ~ flops^k, "
          "params ~ flops^k. One-stage theory: acts e_d + e_w/2 + e_r, params e_d + e_w ((2-alpha)/2 and (1+alpha)/2 "
          "in the alpha family). If latency follows activations, the latency exponent approaches the acts exponent.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("latency_vs_s",) if k in plot_paths])
    doc.table(["runtime", "base", "strategy", "n", "s range", "latency k", "k interval", "latency r2", "acts k",
               "acts theory", "params k", "params theory"],
              [[r["series"], r["base"], r["strategy_label"], r["n"],
                "-" if r["s_min"] is None else f"{r['s_min']:g}..{r['s_max']:g}", _r(r["latency_exponent"]),
                _range(r["latency_exponent_lo"], r["latency_exponent_hi"]), _r(r["latency_r2"]),
                _r(r["acts_exponent"]), _r(r["acts_theory"]), _r(r["params_exponent"]), _r(r["params_theory"])]
               for r in a["exponents"]], empty="No strategy has two or more points.")


def _ranking_section(doc: Doc, a: dict, level: int, caption: str) -> None:
    doc.h(level, "Runtimes ranked per model" + caption)
    series = sorted({o["series"] for r in a["ranking"] for o in r["order"]})
    modes = len({r.get("mode") for r in a["ranking"]}) > 1  # inference and training steps ranked apart
    rows = []
    for r in a["ranking"]:
        cells = {o["series"]: o for o in r["order"]}
        fastest = r["fastest"] if r["resolved"] else f"not resolved ({r['fastest']} vs {r['runner_up']})"
        rows.append([r["model"], *([r["mode"]] if modes else []), _count(r["flops"]), r["batch"],
                     *[_latency(cells[s]) if s in cells else "-" for s in series],
                     fastest, _ratio(r["lead"]), _ratio(r["speedup_ci"]), r["reference"]])
    doc.p("Figure in ms with its 95% interval per runtime. 'lead' is the runner-up's latency over the fastest's "
          "(paired over rounds); the fastest is named only when that interval excludes 1. 'speedup' is the "
          "reference's latency (eager PyTorch, or the slowest runtime) over the fastest's.")
    doc.table(["model", *(["mode"] if modes else []), "flops", "batch", *series, "fastest", "lead", "speedup", "vs"],
              rows, empty="No ranked models.")


def _strategy_section(doc: Doc, a: dict, level: int, caption: str) -> None:
    if not a["fastest_strategy"]:
        return
    doc.h(level, "Strategies at the largest common s" + caption)
    doc.table(["runtime", "base", "s", "order (fastest first, ms)", "lead over next", "resolved",
               "slowest / fastest"],
              [[r["series"], r["base"], f"{r['s']:g}", ", ".join(f"{o['strategy']} {o['latency_ms']:.3g}"
                                                                 for o in r["order"]),
                _ratio(r["lead"]), "yes" if r["resolved"] else "not resolved", _ratio(r["speedup_ci"])]
               for r in a["fastest_strategy"]])


def _precision_section(doc: Doc, a: dict, level: int, caption: str) -> None:
    rows = a.get("precisions") or []
    if not rows:
        return
    doc.h(level, "Half precision: speedup over fp32 and accuracy cost" + caption)
    doc.p(f"Speedup = fp32 figure / half-precision figure, paired over the rounds both were timed in. Error = "
          f"relative L2 distance of the timed call's outputs from the float64 model; 'from rounding' is the error "
          f"the precision's own rounding gives this model (float64 emulation); a point passes when its error is "
          f"between 1/{LOWER_FACTOR:g} and {UPPER_FACTOR:g}x that (below: the runtime did not compute in that "
          f"precision; above: more error than the precision explains).")
    doc.table(["model", "runtime", "precision", "batch", "fp32 ms", "ms", "speedup", "error", "from rounding",
               "ratio", "status", "ran"],
              [[r["model"], r["runtime"], r["precision"], r["batch"], _ms(r["fp32_ms"]), _latency(r),
                _ratio(r["speedup"]), _cell(r["rel_l2"]), _cell(r["expected"]), _x(r["vs_expected"]),
                r["reason"] or r["status"], r["note"] or "-"] for r in rows], numeric=False)


def _roofline_section(doc: Doc, a: dict, level: int, caption: str, plot_paths: dict) -> None:
    doc.h(level, "Roofline efficiency" + caption)
    doc.p("Efficiency = roofline floor / measured figure (100% = running at the measured peak). The compulsory "
          "floor counts weights, input and output once; the layer-wise floor counts every layer's reads and writes.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("roofline",) if k in plot_paths])
    doc.p("The roofline chart places every measured point at its arithmetic intensity (FLOP per byte of weights "
          "plus activations written and read once) and its attained GFLOP/s, under the machine's measured compute "
          "roof and bandwidth slope: a point under the slope is memory-bound here, under the flat roof compute-bound; "
          "its distance below the roof is what the runtime leaves on the table.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("roofline_chart",) if k in plot_paths])
    doc.table(["runtime", "n", "median (compulsory)", "max (compulsory)", "median (layer-wise)", "max (layer-wise)",
               "closest model"],
              [[r["series"], r["n_floor"], _pct(r["eff_compulsory_median"]), _pct(r["eff_compulsory_max"]),
                _pct(r["eff_layer_median"]), _pct(r["eff_layer_max"]), r["closest_model"]] for r in a["roofline"]],
              empty="No roofline floors (ceilings not measured).")


def _memory_section(doc: Doc, a: dict, level: int, caption: str, plot_paths: dict) -> None:
    doc.h(level, "Memory" + caption)
    doc.p("On CPU: the growth of the runtime's worker process's peak resident memory while it prepared, checked and "
          "warmed up the model (its weights, the runtime's copies and arenas, the activations it keeps); each "
          "runtime runs in its own process, so figures never mix runtimes. On CUDA: the allocator's peak.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("memory",) if k in plot_paths])
    doc.table(["runtime", "measure", "n", "min peak", "median peak", "max peak", "r (acts)", "r (params)",
               "bytes per param"],
              [[r["series"], r["kind"], r["n"], _mib(r["peak_min_bytes"]), _mib(r["peak_median_bytes"]),
                _mib(r["peak_max_bytes"]), _r(r["r_acts"]), _r(r["r_params"]), _ms(r["bytes_per_param_median"])]
               for r in a["memory"]], empty="No peak memory was recorded.")


def _failure_sections(doc: Doc, rd: RunData, level: int, caption: str) -> None:
    doc.h(level, "Parity failures" + caption)
    doc.table(["model", "runtime", "precision", "batch", "max abs err", "max rel err", "rel. L2 err", "from rounding",
               "reason"],
              [[p.model, _runtime(p), p.precision, p.batch, p.parity_max_abs, p.parity_max_rel, p.parity_rel_l2,
                p.parity_expected, p.reason]
               for p in analysis.with_status(rd.points, Status.PARITY_FAILED)],
              empty="None: every measured runtime matched eager within tolerance.")
    errors = analysis.with_status(rd.points, Status.ERROR)
    if errors:
        doc.h(level, "Errors" + caption)
        doc.table(["model", "runtime", "precision", "batch", "reason"],
                  [[p.model, _runtime(p), p.precision, p.batch, p.reason] for p in errors])
    doc.h(level, "Unstable points" + caption)
    doc.table(["model", "runtime", "precision", "batch", "latency ms", "rounds", "dropped", "CV (pooled)"],
              [[p.model, _runtime(p), p.precision, p.batch, _latency(p), p.rounds, p.dropped_rounds, _r(p.cv)]
               for p in analysis.with_status(rd.points, Status.UNSTABLE)],
              empty="None: every point's 95% interval met the target.")


def _runtime(p: Point) -> str:
    """A point's runtime as the failure tables name it ("eager train" for a training step)."""
    return p.runtime if (p.mode or "infer") == "infer" else f"{p.runtime} {p.mode}"


def _part(row: dict, part: str) -> str:
    """'12.3 ±1.2%' for a part of a training step (``step``, ``forward``, ``backward``) in a split row."""
    return _latency({"latency_ms": row[f"{part}_ms"], "latency_lo_ms": row[f"{part}_lo_ms"],
                     "latency_hi_ms": row[f"{part}_hi_ms"]})


def _train_sections(doc: Doc, a: dict, level: int, caption: str) -> None:
    """Inference against training steps side by side, and each training step's forward/backward split."""
    if not a.get("train_split"):
        return
    from fsrt.bench.train_step import RECIPE

    split = a["train_split"]
    doc.h(level, "Training steps: forward and backward" + caption)
    doc.p(f"A training step is one iteration of fsrt train on a fixed batch already in memory: forward under the "
          f"trainer's autocast policy, its loss ({RECIPE} recipe: label smoothing), backward through its gradient "
          "scaler and an SGD-with-momentum step over its parameter groups (no weight decay on BatchNorm and biases). "
          "Data loading, augmentation, mixup, the learning-rate schedule and EMA are not in it. Every timed call "
          "records where its forward ends, so forward (with the loss) and backward (with the optimizer step) come "
          "from the same calls as the step, each with its own figure and 95% interval. Batch "
          f"{', '.join(sorted({str(r['batch']) for r in split}))} at "
          f"{', '.join(sorted({str(r['resolution']) for r in split}))} px base resolution. Parity: the first step "
          "matched a float64 step (loss, gradient norm, update norm) before timing.")
    doc.table(["runtime", "model", "flops", "acts", "step ms", "forward ms", "backward + step ms",
               "backward / forward", "peak memory"],
              [[r["series"], r["model"], _count(r["flops"]), _count(r["acts"]), _part(r, "step"),
                _part(r, "forward"), _part(r, "backward"), _x(r["backward_per_forward"]), _mib(r["peak_mem_bytes"])]
               for r in split])
    rows = a.get("infer_vs_train") or []
    if not rows:
        return
    doc.h(level, "Inference vs training" + caption)
    doc.p("The same models measured in both modes on the same runtime: Pearson r (linear, as the scaling paper's "
          "Figure 2, which plots training time) and the log-log exponent k of latency ~ metric^k, each with a 95% "
          "bootstrap interval over the models; 'train - infer r' resamples the same models for both, and is "
          "resolved when its interval excludes 0. Forward and backward are the training step's parts.")
    names = {"latency": "training step", "forward": "training forward", "backward": "training backward + step",
             "peak memory": "peak memory (train vs infer)"}
    doc.table(["runtimes", "metric", "n", "inference r", "training", "training r", "train - infer r", "resolved",
               "inference k", "training k"],
              [[f"{r['infer_series']} / {r['train_series']}", r["metric"], r["n"],
                _r_ci(r["infer_r"], r["infer_r_lo"], r["infer_r_hi"]), names[r["quantity"]],
                _r_ci(r["train_r"], r["train_r_lo"], r["train_r_hi"]),
                _r_ci(r["r_diff"], r["r_diff_lo"], r["r_diff_hi"], "{:+.3f}"), "yes" if r["resolved"] else "no",
                _r_ci(r["infer_k"], r["infer_k_lo"], r["infer_k_hi"]),
                _r_ci(r["train_k"], r["train_k_lo"], r["train_k_hi"])] for r in rows])


def _r_ci(v, lo, hi, fmt: str = "{:.3f}") -> str:
    """'0.912 [0.850, 0.970]', or the value alone without an interval."""
    if v is None:
        return "-"
    return fmt.format(v) + ("" if lo is None or hi is None else f" [{fmt.format(lo)}, {fmt.format(hi)}]")


def _run_sections(doc: Doc, rd: RunData, level: int, plot_paths: dict[str, str]) -> None:
    a = rd.analysis
    caption = (f" ({rd.label})" if level > 2 else "")
    _correlation_section(doc, a, level, caption, plot_paths)
    _exponent_section(doc, a, level, caption, plot_paths)
    _ranking_section(doc, a, level, caption)
    _strategy_section(doc, a, level, caption)
    _precision_section(doc, a, level, caption)
    _roofline_section(doc, a, level, caption, plot_paths)
    rd.latency_model = report_latency.section(doc, rd, level, caption, plot_paths)
    _memory_section(doc, a, level, caption, plot_paths)
    _train_sections(doc, a, level, caption)
    _noise_section(doc, rd, level, caption)
    _failure_sections(doc, rd, level, caption)


def _comparison_sections(doc: Doc, runs: list[RunData], cmp: dict, plot_path: str | None) -> None:
    names = [rd.label for rd in runs]
    doc.h(2, "Runs side by side")
    doc.p(f"Same model, runtime, precision and batch in each run; ratio = run figure / {names[0]} figure "
          "(above 1 = slower), with a 95% interval combining both points' intervals. A geometric mean over "
          "points keeps its points' typical interval: the points of one run share the machine's level "
          "during that run, so averaging them does not cancel it.")
    if plot_path:
        doc.images([(plot_path, "runs side by side")])
    preds = sorted({s for rd in runs for s in rd.analysis["best_predictors"]})
    doc.h(3, "Best predictor of latency per runtime")
    doc.table(["runtime", *names],
              [[s, *[(lambda r: f"{r['metric']} (r={r['pearson_r']:.3f}"
                      f"{'' if r['resolved'] else ', not resolved'})" if r else "-")(
                  rd.analysis["best_predictors"].get(s)) for rd in runs]] for s in preds])
    doc.h(3, "Per runtime (geometric mean of ratios)")
    doc.table(["runtime", "precision", "batch", *[f"{n}: matched" for n in names[1:]],
               *[f"{n} / {names[0]}" for n in names[1:]]],
              [[e["runtime"], e["precision"], e["batch"], *e["matched"][1:],
                *[_ratio(g) for g in e["geomean_ci"][1:]]]
               for e in cmp["per_runtime"]], empty="No runtime was measured in more than one run.")
    doc.h(3, "Per model")
    doc.table(["model", "runtime", "precision", "batch", *[f"{n} ms" for n in names],
               *[f"{n} / {names[0]}" for n in names[1:]]],
              [[r["model"], r["runtime"], r["precision"], r["batch"], *[_ms(m) for m in r["latency_ms"]],
                *[_ratio(x) for x in r["ratio_cis"][1:]]] for r in cmp["rows"]], empty="No points to compare.")


# -- files --------------------------------------------------------------------------------------
def _points_csv(runs: list[RunData]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for rd in runs:
        for p in rd.points:
            med = p.latency_ms
            eff = {k: (getattr(p, f"floor_{k}_ms") / med if getattr(p, f"floor_{k}_ms") and med else None)
                   for k in ("compulsory", "layer")}
            row = {"run_id": rd.run["id"], "run_name": rd.run["name"], **p.to_dict(),
                   "status": str(p.status) if p.status is not None else None,
                   "eff_compulsory": eff["compulsory"], "eff_layer": eff["layer"]}
            w.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])
    return buf.getvalue()


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Check the report folder can be used, creating nothing: a file at ``out_dir`` or in its
    path is an FsrtError. The folder appears only when the whole report is written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FsrtError(f"report folder {out} is a file; pass --out a folder (nothing was written)")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise FsrtError(f"cannot create the report folder {out}: a file is in the way (nothing was written)")
    return out


def _plots_for(rd: RunData, multi: bool) -> dict[str, bytes]:
    labels = analysis.series_labels(rd.points)
    suffix = f" ({rd.label})" if multi else ""
    makers = {
        "latency_vs_metrics": lambda: plots.latency_vs_metrics(
            rd.points, labels, f"latency vs complexity{suffix} (log-log; r = Pearson, linear)"),
        "latency_vs_s": lambda: plots.latency_vs_s(rd.points, labels, f"latency vs s per strategy{suffix}"),
        "roofline": lambda: plots.roofline_efficiency(rd.points, labels, f"roofline efficiency{suffix}"),
        "roofline_chart": lambda: plots.roofline_chart(rd.points, labels, rd.ceilings, f"roofline{suffix}"),
        "latency_model": lambda: report_latency.make_plot(rd, suffix),
        "memory": lambda: plots.memory(rd.points, labels, f"peak memory vs activations{suffix}"),
    }
    return {k: png for k, make in makers.items() if (png := make()) is not None}


def write_report(store, run_ids: list, out_dir: str | Path) -> dict[str, Path]:
    """Write the report of ``run_ids`` (ids or names) from ``store`` into ``out_dir``.

    Returns ``{"markdown", "html", "csv", "json", "plots/<name>.png"...: path}``. All content is
    rendered before anything is written, then written all or nothing (``fsrt.io.write_folder``); other
    files in the folder stay.
    """
    if not run_ids:
        raise FsrtError("no run to report; give a run id or name (see the runs in the database)")
    out = prepare_out_dir(out_dir)
    runs = _load(store, run_ids)
    multi = len(runs) > 1
    images: dict[str, bytes] = {}
    per_run_paths: list[dict[str, str]] = []
    for rd in runs:
        paths = {}
        for kind, png in _plots_for(rd, multi).items():
            rel = f"plots/{rd.slug}_{kind}.png"
            images[rel] = png
            paths[kind] = rel
        per_run_paths.append(paths)
    same_machine = len({rd.run["machine_id"] for rd in runs}) == 1
    level_sd = runs[0].between_runs.level_sd if same_machine and runs[0].between_runs else None
    comparison = analysis.compare([(rd.label, rd.points) for rd in runs], same_machine, level_sd) if multi else None
    cmp_plot = None
    if comparison:
        png = plots.compare_runs(comparison["rows"], comparison["runs"])
        if png:
            cmp_plot = "plots/compare_" + "_".join(rd.slug for rd in runs) + ".png"
            images[cmp_plot] = png

    title = "fsrt deployment-latency report: " + " vs ".join(rd.label for rd in runs)
    doc = Doc()
    doc.h(1, title)
    doc.p(f"How scaling strategies turn into deployed latency on {'each' if multi else 'this'} machine: latency "
          "against flops, parameters "
          "and activations per runtime, fitted exponents, roofline floors and memory. Generated by fsrt from the "
          "results database; points.csv holds every point, summary.json the numbers.")
    _summary(doc, runs, comparison)
    _header(doc, runs)
    for rd, paths in zip(runs, per_run_paths):
        if multi:
            doc.h(2, f"Run {rd.label}")
        _run_sections(doc, rd, 3 if multi else 2, paths)
    if comparison:
        _comparison_sections(doc, runs, comparison, cmp_plot)

    summary = {
        "runs": [{"id": rd.run["id"], "name": rd.run["name"], "label": rd.label, "machine_id": rd.run["machine_id"],
                  "machine": rd.machine, "created": rd.run.get("created"), "finished": rd.run.get("finished"),
                  "config": rd.run.get("config"), "points": len(rd.points), "unavailable": rd.unavailable,
                  "ceilings": rd.ceilings, "analysis": rd.analysis, "latency_model": rd.latency_model,
                  "between_runs": rd.between_runs.to_dict() if rd.between_runs else None}
                 for rd in runs],
        "comparison": comparison,
        "summary": [f"{rd.label}: {line}" if multi else line for rd in runs for line in rd.analysis["summary"]]
        + (comparison["summary"] if comparison else []),
        "files": ["report.md", "report.html", "points.csv", "summary.json", *sorted(images)],
    }
    files = {
        "csv": ("points.csv", _points_csv(runs).encode("utf-8")),
        "json": ("summary.json", (json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n").encode("utf-8")),
        "markdown": ("report.md", doc.to_markdown().encode("utf-8")),
        "html": ("report.html", doc.to_html(images, title).encode("utf-8")),
    }
    paths = write_folder(out, {**images, **dict(files.values())}, "the report folder")  # all or nothing
    return {**{rel: paths[rel] for rel in images}, **{key: paths[name] for key, (name, _) in files.items()}}
