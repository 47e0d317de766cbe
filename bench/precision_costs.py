"""What each half precision buys and costs: its speedup over fp32 and its accuracy, side by side.

For every half-precision point that has an fp32 partner in the same run (same model, runtime,
batch, device and threads), the speedup is the fp32 figure over the half-precision figure,
paired over the rounds both were timed in (``fsrt.bench.uncertainty``), so the machine's drift
cancels. The accuracy cost is the point's relative L2 error against the float64 model next to
the error the precision's rounding gives that model (``fsrt.accuracy``): a ratio near 1 is the
precision itself, not the runtime.
"""

from __future__ import annotations

from fsrt.bench import analysis
from fsrt.bench.points import Point
from fsrt.bench.rounds import Window
from fsrt.bench.uncertainty import ratio

PARTNER_FIELDS = ("model", "runtime", "mode", "batch", "device", "threads")


def precision_costs(points: list[Point], windows: dict[str, list[Window]] | None = None,
                    movement: float | None = None) -> list[dict]:
    """One row per half-precision measurement: its fp32 partner's figure, the speedup (an
    interval dict, None when either is unmeasured; with the machine's ``movement`` between runs when
    given), the errors and the outcome."""
    pts = analysis.distinct(points)
    fp32 = {tuple(getattr(p, f) for f in PARTNER_FIELDS): p for p in pts if p.precision == "fp32"}
    rows = []
    for p in pts:
        if p.precision == "fp32":
            continue
        base = fp32.get(tuple(getattr(p, f) for f in PARTNER_FIELDS))
        speedup = ratio(base, p, windows, movement).to_dict() if base and base.measured and p.measured else None
        rows.append({"model": p.model, "runtime": p.runtime, "batch": p.batch, "precision": p.precision,
                     "fp32_ms": base.latency_ms if base else None, "latency_ms": p.latency_ms,
                     "latency_lo_ms": p.latency_lo_ms, "latency_hi_ms": p.latency_hi_ms, "speedup": speedup,
                     "rel_l2": p.parity_rel_l2, "expected": p.parity_expected,
                     "vs_expected": (p.parity_rel_l2 / p.parity_expected
                                     if p.parity_rel_l2 is not None and p.parity_expected else None),
                     "status": str(p.status), "note": p.note, "reason": p.reason})
    rows.sort(key=lambda r: (r["model"], r["runtime"], r["precision"], r["batch"] or 0))
    return rows


def precision_lines(rows: list[dict]) -> list[str]:
    """Summary sentences: each measured half precision's speedup, resolved or not, with its cost."""
    lines = []
    for r in rows:
        sp = r["speedup"]
        if not sp:
            continue
        what = f"{r['precision']} on {r['runtime']} ({r['model']}, batch {r['batch']})"
        cost = (f" at a relative error of {r['rel_l2']:.2g} against the float64 model (its rounding alone gives "
                f"{r['expected']:.2g})" if r["rel_l2"] is not None and r["expected"] else "")
        interval = f" [{sp['lo']:.2f}, {sp['hi']:.2f}]" if sp.get("lo") is not None else ""
        resolved = sp.get("lo") is not None and (sp["lo"] > 1 or sp["hi"] < 1)
        if not resolved:
            lines.append(f"{what} and fp32 are not resolved apart: {sp['value']:.2f}x{interval}{cost}.")
        elif sp["value"] > 1:
            lines.append(f"{what} is {sp['value']:.2f}x faster than fp32{interval}{cost}.")
        else:
            lines.append(f"{what} is slower than fp32: {sp['value']:.2f}x{interval}{cost}.")
    return lines
