"""PNG plots for the deployment-latency report (matplotlib, Agg canvas, no display, no pyplot state).

Each function takes one run's points and series labels and returns PNG bytes, or None when the
run has nothing to draw. Output is deterministic for the same input and matplotlib version
(fixed size, dpi 100, sorted series, no timestamp in the PNG metadata).
"""

from __future__ import annotations

import io
import math

from fsrt.bench.analysis import METRICS, by_series, counted, distinct, group_by, loglog_fit, pearson, strategy_label
from fsrt.bench.latency_model import element_bytes
from fsrt.bench.points import Point
from fsrt.sizes import human

DPI = 100
_PNG_META = {"Software": None}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def _colors(names) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(sorted(names))}


def _eng(v: float, _pos=None) -> str:
    """Tick label in engineering units (plain text: mathtext tick labels are slow to lay out)."""
    return human(v) if v > 0 else ""


def _log_axes(ax, x: bool = True, y: bool = True, x_base: int = 10) -> None:
    """Log scales with 1-2-5 ticks and plain labels on the chosen axes."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, on, base in ((ax.xaxis, x, x_base), (ax.yaxis, y, 10)):
        if not on:
            continue
        (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log", base=base)
        axis.set_major_locator(LogLocator(base=base, subs=(1.0, 2.0, 5.0) if base == 10 else (1.0,)))
        axis.set_major_formatter(FuncFormatter(_eng))
        axis.set_minor_formatter(NullFormatter())


def _positive(v) -> bool:
    return v is not None and math.isfinite(v) and v > 0


AXIS_NAMES = {"flops": "flops (multiply-adds)", "params": "parameters", "acts": "activations"}


def latency_vs_metrics(points: list[dict], labels: dict, title: str = "") -> bytes | None:
    """Three log-log panels: latency against flops, params and activations per runtime, with the
    power-law fit line and Pearson r (linear, as the scaling paper's Figure 2) in the legend."""
    groups = by_series(distinct(counted(points)), labels)
    if not groups:
        return None
    colors = _colors(groups)
    fig = _figure(13, 4.2)
    axes = fig.subplots(1, 3, sharey=True, gridspec_kw={"left": 0.06, "right": 0.99, "bottom": 0.13, "top": 0.89,
                                                         "wspace": 0.06})
    for ax, metric in zip(axes, METRICS):
        for label, pts in groups.items():
            pts = [p for p in pts if _positive(getattr(p, metric))]
            if not pts:
                continue
            xs = [getattr(p, metric) for p in pts]
            ys = [p.latency_ms for p in pts]
            r = pearson(xs, ys)
            fit = loglog_fit(xs, ys)
            legend = f"{label} r={r:.3f}" if r is not None else label
            ax.errorbar(xs, ys, yerr=_yerr(pts), fmt="o", ms=3.5, color=colors[label], alpha=0.8, lw=0.8,
                        label=legend)
            if fit:
                lo, hi = min(xs), max(xs)
                ax.plot([lo, hi], [fit.predict(lo), fit.predict(hi)], color=colors[label], lw=1.2,
                        label=f"  fit ~{metric}^{fit.exponent:.2f}")
            flagged = [p for p in pts if p.status == "unstable"]
            if flagged:
                ax.scatter([getattr(p, metric) for p in flagged], [p.latency_ms for p in flagged], s=40,
                           facecolors="none", edgecolors="red", lw=0.8)
        _log_axes(ax)
        ax.set_xlabel(AXIS_NAMES[metric])
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("latency (ms, 95% interval)")
    fig.suptitle(title or "latency vs complexity (log-log; r = Pearson, linear)", fontsize=11)
    return _png(fig)


def _yerr(pts) -> list[list[float]]:
    """Asymmetric error bars from each point's interval (zero where it has none)."""
    lo = [p.latency_ms - p.latency_lo_ms if p.latency_lo_ms else 0.0 for p in pts]
    hi = [p.latency_hi_ms - p.latency_ms if p.latency_hi_ms else 0.0 for p in pts]
    return [lo, hi]


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def latency_vs_s(points: list[dict], labels: dict, title: str = "") -> bytes | None:
    """One panel per runtime: latency against the scale factor s, one line per strategy (and base)."""
    groups = {k: [p for p in v if _positive(p.s)] for k, v in by_series(counted(points), labels).items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        return None
    rows, cols = _grid(len(groups))
    fig = _figure(4.4 * cols, 3.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": 0.07 if cols > 1 else 0.15, "right": 0.98, "bottom": 0.5 / (3.6 * rows), "top": 1 - 0.55 / (3.6 * rows),
        "wspace": 0.28, "hspace": 0.45}).ravel()
    strategies = sorted({(str(p.base), strategy_label(p.strategy, p.alpha))
                         for v in groups.values() for p in v})
    multi_base = len({b for b, _ in strategies}) > 1
    colors = _colors([f"{b} {s}" for b, s in strategies])
    for ax, (label, pts) in zip(axes, groups.items()):
        for (base, strategy, alpha), grp in group_by(pts, "base", "strategy", "alpha").items():
            name = strategy_label(strategy, alpha)
            grp = sorted(grp, key=lambda p: p.s)
            ax.errorbar([p.s for p in grp], [p.latency_ms for p in grp], yerr=_yerr(grp), marker="o", ms=3, lw=1.2,
                        color=colors[f"{base} {name}"], label=f"{base} {name}" if multi_base else name)
        _log_axes(ax, x_base=2)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("scale factor s (flops multiplier)")
        ax.set_ylabel("latency (ms, 95% interval)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title or "latency vs s per strategy", fontsize=11)
    return _png(fig)


def roofline_efficiency(points: list[dict], labels: dict, title: str = "") -> bytes | None:
    """Roofline efficiency (floor / measured figure) against flops, per runtime, for the compulsory-
    bytes floor and the layer-wise-bytes floor; 1.0 means running at the machine's measured peak."""
    groups = by_series(distinct(counted(points)), labels)
    kinds = (("floor_compulsory_ms", "compulsory bytes"), ("floor_layer_ms", "layer-wise bytes"))
    if not any(_positive(getattr(p, k)) for v in groups.values() for p in v for k, _ in kinds):
        return None
    colors = _colors(groups)
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2, sharey=True, gridspec_kw={"left": 0.09, "right": 0.98, "bottom": 0.13, "top": 0.86,
                                                         "wspace": 0.06})
    for ax, (key, name) in zip(axes, kinds):
        for label, pts in groups.items():
            pts = [p for p in pts if _positive(getattr(p, key)) and _positive(p.flops)]
            if pts:
                ax.scatter([p.flops for p in pts], [getattr(p, key) / p.latency_ms for p in pts], s=14,
                           color=colors[label], label=label)
        _log_axes(ax)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_title(f"floor from {name}", fontsize=10)
        ax.set_xlabel("flops (multiply-adds)")
        ax.grid(True, which="both", alpha=0.25)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("efficiency = floor / latency")
    fig.suptitle(title or "roofline efficiency (floor = max(flops/peak, bytes/bandwidth))", fontsize=11)
    return _png(fig)


def _series_with(points, labels: dict, *fields: str) -> dict:
    """Each series' distinct points whose ``fields`` are all positive; series left empty are dropped."""
    groups = {k: [p for p in v if all(_positive(getattr(p, f)) for f in fields)]
              for k, v in by_series(distinct(counted(points)), labels).items()}
    return {k: v for k, v in groups.items() if v}


def memory(points: list[dict], labels: dict, title: str = "") -> bytes | None:
    """Peak memory against activations per runtime (log-log)."""
    groups = _series_with(points, labels, "peak_mem_bytes", "acts")
    if not groups:
        return None
    colors = _colors(groups)
    fig = _figure(6, 4)
    ax = fig.subplots(gridspec_kw={"left": 0.13, "right": 0.97, "bottom": 0.13, "top": 0.9})
    for label, pts in groups.items():
        ax.scatter([p.acts for p in pts], [p.peak_mem_bytes / 2**20 for p in pts], s=14,
                   color=colors[label], label=label)
    _log_axes(ax)
    ax.set_xlabel("activations")
    ax.set_ylabel("peak memory (MiB)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    fig.suptitle(title or "peak memory vs activations", fontsize=11)
    return _png(fig)


def compare_runs(rows: list[dict], names: list[str], title: str = "") -> bytes | None:
    """Each later run's figure against the first run's for matched points, with the y = x line."""
    if len(names) < 2:
        return None
    fig = _figure(5.5, 5)
    ax = fig.subplots(gridspec_kw={"left": 0.14, "right": 0.97, "bottom": 0.11, "top": 0.92})
    both = lambda r, i: r["latency_ms"][0] is not None and r["latency_ms"][i] is not None
    groups = sorted({(i, str(r["runtime"]), str(r["precision"])) for i in range(1, len(names)) for r in rows
                     if both(r, i)})
    colors = _colors([f"{names[i]}: {rt} {pr}" for i, rt, pr in groups])
    lo, hi = math.inf, 0.0
    drawn = False
    for i, runtime, precision in groups:
        key = f"{names[i]}: {runtime} {precision}"
        pairs = [(r["latency_ms"][0], r["latency_ms"][i]) for r in rows
                 if both(r, i) and (str(r["runtime"]), str(r["precision"])) == (runtime, precision)]
        drawn = True
        ax.scatter([a for a, _ in pairs], [b for _, b in pairs], s=14, color=colors[key], label=key)
        lo = min(lo, *(min(a, b) for a, b in pairs))
        hi = max(hi, *(max(a, b) for a, b in pairs))
    if not drawn:
        return None
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="same speed")
    _log_axes(ax)
    ax.set_xlabel(f"{names[0]}: latency (ms)")
    ax.set_ylabel("other run: latency (ms)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7)
    fig.suptitle(title or "runs side by side (same model, runtime, precision, batch)", fontsize=11)
    return _png(fig)


def roofline_chart(points: list[Point], labels: dict, ceilings: list[dict], title: str = "") -> bytes | None:
    """The roofline model itself: arithmetic intensity (FLOP per byte of weights plus activations
    written and read once) on x, attained GFLOP/s (2 FLOP per multiply-add) on y, every measured
    point placed, and the machine's measured compute and bandwidth roofs drawn for each
    (device, precision, threads) the points ran at."""
    groups = _series_with(points, labels, "flops", "acts", "params")
    if not groups:
        return None
    colors = _colors(groups)
    fig = _figure(7.5, 5)
    ax = fig.subplots(gridspec_kw={"left": 0.11, "right": 0.97, "bottom": 0.11, "top": 0.9})
    xs_all = []
    for label, pts in groups.items():
        xs = [arithmetic_intensity(p) for p in pts]
        ys = [attained_gflops(p) for p in pts]
        xs_all += xs
        ax.scatter(xs, ys, s=16, color=colors[label], label=label, zorder=3)
    lo, hi = min(xs_all) / 3, max(xs_all) * 3
    used = {(p.device, p.precision, p.threads) for v in groups.values() for p in v}
    for c in sorted(ceilings, key=lambda c: (c["device"], c["dtype"], c["threads"])):
        if (c["device"], c["dtype"], c["threads"]) not in used:
            continue
        peak, bw = c["peak_flops"] / 1e9, c["copy_bytes_per_s"] / 1e9
        ridge = peak / bw
        grid = sorted({lo, hi, min(max(ridge, lo), hi)})
        ax.plot(grid, [min(peak, x * bw) for x in grid], color="black", lw=1.2,
                label=f"roof {c['dtype']} {c['threads']}t: {peak:.0f} GFLOP/s, {bw:.0f} GB/s")
        if lo < ridge < hi:
            ax.axvline(ridge, color="black", lw=0.6, ls=":")
    _log_axes(ax)
    ax.set_xlabel("arithmetic intensity (FLOP / byte of weights + activations written and read)")
    ax.set_ylabel("attained GFLOP/s")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "roofline: attained throughput against arithmetic intensity", fontsize=11)
    return _png(fig)


def arithmetic_intensity(p: Point) -> float:
    """FLOP per byte moved: 2 x flops x batch over the layer-wise bytes (weights once, each activation
    written and read once), as the layer-wise roofline floor counts them."""
    e = element_bytes(p.precision)
    batch = p.batch or 1
    return 2.0 * p.flops * batch / ((p.params + 2 * p.acts * batch) * e)


def attained_gflops(p: Point) -> float:
    """Throughput the point achieved: 2 x flops x batch per second of its figure, in GFLOP/s."""
    return 2.0 * p.flops * (p.batch or 1) / (p.latency_ms * 1e-3) / 1e9


def predicted_vs_measured(rows: list[dict], title: str = "") -> bytes | None:
    """Held-out predictions against measurements, one panel per series: ``rows`` are dicts with
    ``series``, ``scenario``, ``measured_ms`` and ``predicted_ms``; y = x and +-10%/+-20% bands drawn."""
    rows = [r for r in rows if _positive(r["measured_ms"]) and _positive(r["predicted_ms"])]
    if not rows:
        return None
    series = sorted({r["series"] for r in rows})
    scenarios = sorted({r["scenario"] for r in rows})
    colors = _colors(scenarios)
    n_rows, cols = _grid(len(series))
    fig = _figure(4.4 * cols, 4.0 * n_rows)
    axes = fig.subplots(n_rows, cols, squeeze=False, gridspec_kw={
        "left": 0.08 if cols > 1 else 0.15, "right": 0.98, "bottom": 0.5 / (4.0 * n_rows),
        "top": 1 - 0.55 / (4.0 * n_rows), "wspace": 0.3, "hspace": 0.45}).ravel()
    for ax, label in zip(axes, series):
        mine = [r for r in rows if r["series"] == label]
        for sc in scenarios:
            pts = [r for r in mine if r["scenario"] == sc]
            if pts:
                ax.scatter([r["measured_ms"] for r in pts], [r["predicted_ms"] for r in pts], s=14, color=colors[sc],
                           label=sc, alpha=0.8, zorder=3)
        lo = min(min(r["measured_ms"], r["predicted_ms"]) for r in mine) / 1.3
        hi = max(max(r["measured_ms"], r["predicted_ms"]) for r in mine) * 1.3
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.9)
        for band, alpha in ((0.1, 0.18), (0.2, 0.08)):
            ax.fill_between([lo, hi], [lo * (1 - band), hi * (1 - band)], [lo * (1 + band), hi * (1 + band)],
                            color="gray", alpha=alpha, lw=0)
        _log_axes(ax)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("measured latency (ms)")
        ax.set_ylabel("predicted latency (ms)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(series):]:
        ax.set_visible(False)
    fig.suptitle(title or "latency model: predicted vs measured on held-out models (bands +-10%, +-20%)",
                 fontsize=11)
    return _png(fig)
