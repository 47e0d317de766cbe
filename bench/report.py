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

from fsrt.bench import analysis, plots
from fsrt.bench.store import POINT_COLUMNS
from fsrt.errors import FsrtError
from fsrt.io import write_folder

CSV_COLUMNS = ("run_id", "run_name", "machine_id", "id", *[c for c in POINT_COLUMNS if c != "spec_json"],
               "eff_compulsory", "eff_layer")


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


_NUMERIC = re.compile(r"^[-+]?[0-9][0-9.,]*(e[-+]?[0-9]+)?(x|%| ms| MiB|[KMG])?$|^-$")


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
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


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
    points: list[dict]
    unavailable: dict[str, str]
    machine: dict
    ceilings: list[dict]
    analysis: dict

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
        out.append(RunData(r, label, pts, store.unavailable(r["id"]), machines.get(r["machine_id"], {}),
                           store.ceilings(r["machine_id"]), analysis.summarize(pts)))
    return out


def _distinct(points: list[dict], key: str) -> str:
    vals = sorted({p.get(key) for p in points if p.get(key) is not None}, key=str)
    return ", ".join(map(str, vals)) or "-"


def _status_counts(points: list[dict]) -> str:
    counts = {s: sum(1 for p in points if p.get("status") == s) for s in ("ok", "unstable", "parity_failed", "error")}
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none"


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
             ["precision", *[_distinct(rd.points, "precision") for rd in runs]],
             ["threads", *[_distinct(rd.points, "threads") for rd in runs]],
             ["batch", *[_distinct(rd.points, "batch") for rd in runs]],
             ["device", *[_distinct(rd.points, "device") for rd in runs]],
             ["L2 cache state", *[_distinct(rd.points, "l2") for rd in runs]],
             ["points", *[f"{len(rd.points)} ({_status_counts(rd.points)})" for rd in runs]]]
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


def _summary(doc: Doc, runs: list[RunData], comparison: dict | None) -> None:
    doc.h(2, "Summary")
    for rd in runs:
        if len(runs) > 1:
            doc.h(3, rd.label)
        doc.ul(rd.analysis["summary"])
    if comparison:
        doc.h(3, "Side by side")
        doc.ul(comparison["summary"])


def _run_sections(doc: Doc, rd: RunData, level: int, plot_paths: dict[str, str]) -> None:
    a = rd.analysis
    caption = (f" ({rd.label})" if level > 2 else "")
    doc.h(level, "Latency vs flops, params and activations" + caption)
    doc.p("Pearson r is computed on the linear scale, as in the scaling paper's Figure 2; the log-log r and the "
          "fitted power law latency ~ metric^k are shown beside it. Only ok and unstable points count.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("latency_vs_metrics",) if k in plot_paths])
    best = {s: r["metric"] for s, r in a["best_predictors"].items()}
    doc.table(["runtime", "metric", "n", "Pearson r", "r (log-log)", "exponent k", "r2 (log-log)", "best"],
              [[r["series"], r["metric"], r["n"], _r(r["pearson_r"]), _r(r["pearson_r_log"]),
                _r(r["exponent"]), _r(r["r2"]), "yes" if best.get(r["series"]) == r["metric"] else ""]
               for r in a["correlations"]], empty="No measured points to correlate.")

    doc.h(level, "Scaling exponents against flops" + caption)
    doc.p("Per strategy, least squares in log-log: latency ~ flops^k, acts ~ flops^k, params ~ flops^k. "
          "One-stage theory in the alpha family: acts (2-alpha)/2, params (1+alpha)/2. If latency follows "
          "activations, the latency exponent approaches the acts exponent.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("latency_vs_s",) if k in plot_paths])
    doc.table(["runtime", "base", "strategy", "n", "s range", "latency k", "latency r2", "acts k", "acts theory",
               "params k", "params theory"],
              [[r["series"], r["base"], r["strategy_label"], r["n"],
                "-" if r["s_min"] is None else f"{r['s_min']:g}..{r['s_max']:g}", _r(r["latency_exponent"]),
                _r(r["latency_r2"]), _r(r["acts_exponent"]), _r(r["acts_theory"]), _r(r["params_exponent"]),
                _r(r["params_theory"])] for r in a["exponents"]], empty="No strategy has two or more points.")

    doc.h(level, "Runtimes ranked per model" + caption)
    series = sorted({o["series"] for r in a["ranking"] for o in r["order"]})
    rows = []
    for r in a["ranking"]:
        ms = {o["series"]: o["median_ms"] for o in r["order"]}
        rows.append([r["model"], _count(r["flops"]), r["batch"], *[_ms(ms.get(s)) for s in series], r["fastest"],
                     _x(r["speedup"]), r["reference"]])
    doc.p("Median latency in ms per runtime; speedup of the fastest over the reference (eager PyTorch, or the "
          "slowest runtime when eager did not run).")
    doc.table(["model", "flops", "batch", *series, "fastest", "speedup", "vs"], rows, empty="No ranked models.")

    doc.h(level, "Roofline efficiency" + caption)
    doc.p("Efficiency = roofline floor / measured median (100% = running at the measured peak). The compulsory "
          "floor counts weights, input and output once; the layer-wise floor counts every layer's reads and writes.")
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("roofline",) if k in plot_paths])
    doc.table(["runtime", "n", "median (compulsory)", "max (compulsory)", "median (layer-wise)", "max (layer-wise)",
               "closest model"],
              [[r["series"], r["n_floor"], _pct(r["eff_compulsory_median"]), _pct(r["eff_compulsory_max"]),
                _pct(r["eff_layer_median"]), _pct(r["eff_layer_max"]), r["closest_model"]] for r in a["roofline"]],
              empty="No roofline floors (ceilings not measured).")

    doc.h(level, "Memory" + caption)
    doc.images([(plot_paths[k], k.replace("_", " ")) for k in ("memory",) if k in plot_paths])
    doc.table(["runtime", "n", "min peak", "median peak", "max peak", "r (acts)", "r (params)", "bytes per act"],
              [[r["series"], r["n"], _mib(r["peak_min_bytes"]), _mib(r["peak_median_bytes"]),
                _mib(r["peak_max_bytes"]), _r(r["r_acts"]), _r(r["r_params"]),
                _ms(r["bytes_per_act_median"])] for r in a["memory"]], empty="No peak memory was recorded.")

    doc.h(level, "Parity failures" + caption)
    doc.table(["model", "runtime", "precision", "batch", "max abs err", "max rel err", "reason"],
              [[p["model"], p["runtime"], p["precision"], p["batch"], p["parity_max_abs"], p["parity_max_rel"],
                p["reason"]] for p in analysis.with_status(rd.points, "parity_failed")],
              empty="None: every measured runtime matched eager within tolerance.")
    errors = analysis.with_status(rd.points, "error")
    if errors:
        doc.h(level, "Errors" + caption)
        doc.table(["model", "runtime", "precision", "batch", "reason"],
                  [[p["model"], p["runtime"], p["precision"], p["batch"], p["reason"]] for p in errors])
    doc.h(level, "Unstable points" + caption)
    doc.table(["model", "runtime", "precision", "batch", "median ms", "CV", "n"],
              [[p["model"], p["runtime"], p["precision"], p["batch"], _ms(p["median_ms"]), _r(p["cv"]), p["n"]]
               for p in rd.points if p.get("status") == "unstable" or (p.get("unstable") and p.get("status") == "ok")],
              empty="None: every point met the coefficient-of-variation rule.")


def _comparison_sections(doc: Doc, runs: list[RunData], cmp: dict, plot_path: str | None) -> None:
    names = [rd.label for rd in runs]
    doc.h(2, "Runs side by side")
    doc.p(f"Same model, runtime, precision and batch in each run; ratio = run median / {names[0]} median "
          "(above 1 = slower).")
    if plot_path:
        doc.images([(plot_path, "runs side by side")])
    preds = sorted({s for rd in runs for s in rd.analysis["best_predictors"]})
    doc.h(3, "Best predictor of latency per runtime")
    doc.table(["runtime", *names],
              [[s, *[(lambda r: f"{r['metric']} (r={r['pearson_r']:.3f})" if r else "-")(
                  rd.analysis["best_predictors"].get(s)) for rd in runs]] for s in preds])
    doc.h(3, "Per runtime (geometric mean of ratios)")
    doc.table(["runtime", "precision", "batch", *[f"{n}: matched" for n in names[1:]],
               *[f"{n} / {names[0]}" for n in names[1:]]],
              [[e["runtime"], e["precision"], e["batch"], *e["matched"][1:], *[_x(g) for g in e["geomean_ratio"][1:]]]
               for e in cmp["per_runtime"]], empty="No runtime was measured in more than one run.")
    doc.h(3, "Per model")
    doc.table(["model", "runtime", "precision", "batch", *[f"{n} ms" for n in names],
               *[f"{n} / {names[0]}" for n in names[1:]]],
              [[r["model"], r["runtime"], r["precision"], r["batch"], *[_ms(m) for m in r["medians_ms"]],
                *[_x(x) for x in r["ratios"][1:]]] for r in cmp["rows"]], empty="No points to compare.")


# -- files --------------------------------------------------------------------------------------
def _points_csv(runs: list[RunData]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for rd in runs:
        for p in rd.points:
            med = p.get("median_ms")
            eff = {k: (p[f"floor_{k}_ms"] / med if p.get(f"floor_{k}_ms") and med else None)
                   for k in ("compulsory", "layer")}
            row = {"run_id": rd.run["id"], "run_name": rd.run["name"], **p,
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
        "memory": lambda: plots.memory(rd.points, labels, f"peak memory vs activations{suffix}"),
    }
    return {k: png for k, make in makers.items() if (png := make()) is not None}


def write_report(store, run_ids: list, out_dir: str | Path) -> dict[str, Path]:
    """Write the report of ``run_ids`` (ids or names) from ``store`` into ``out_dir``.

    Returns ``{"markdown", "html", "csv", "json", "plots/<name>.png"...: path}``. All content is
    rendered before anything is written; each file is replaced atomically; other files stay.
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
    comparison = analysis.compare([(rd.label, rd.points) for rd in runs]) if multi else None
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
                  "ceilings": rd.ceilings, "analysis": rd.analysis} for rd in runs],
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
