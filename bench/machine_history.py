"""How far this machine's speed moves between runs, measured from the runs made on it.

A point's 95% interval is the jackknife over its run's timing windows: it covers the minutes that run
measured and nothing else. On the shared 2-vCPU VMs fsrt is developed on, the whole machine's speed
moves more than that between runs: two default sweeps minutes apart differed by a factor common to
every point of 0.95-1.02 (points agreeing to 1.2-2.2% around it), and two half an hour apart by
1.13-1.31x per runtime, where every interval was +-1-2%. No single run can see that movement, so it is
measured from the runs themselves: every finished sweep leaves its figures in the machine's file in
fsrt's cache folder (``machine_settings``), and two runs that measured the same things (the same
measurement keys, so the same model, runtime, settings and library versions, but measured apart)
differ by a common factor, the geometric mean of their points' ratios. Over every such pair of runs
kept for the machine, the spread of one run's level is

    sd = sqrt(mean(d^2) / 2),      d = log of a pair's common factor,

(two runs' levels differ by the difference of two draws, whose variance is twice one draw's), and a
run's common factor reproduces in a later run to within exp(+-1.96 sqrt(2) sd) (95%). Around each pair's
common factor the points also move one by one (``point_sd``, beyond their within-run error), which is
what can turn a comparison of two points of one run (runtime vs runtime, strategy vs strategy) in a
later run; a single figure reproduces to within exp(+-1.96 sqrt(2) hypot(sd, point_sd)), in addition
to the two runs' within-run intervals. The console, ``--json`` and the
report state both; every comparison between points of a run includes ``point_sd`` and a comparison
of two runs on one machine includes ``level_sd`` (``uncertainty.with_movement``).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from fsrt.bench import machine_settings
from fsrt.bench.points import Point
from fsrt.bench.uncertainty import Z95, log_half_width

SETTING = "between_runs"  # the estimate, kept in a results database as a machine setting
HISTORY = "run_history"  # the runs' figures, kept in the machine's file in the cache folder
KEEP_RUNS = 12  # runs kept per machine (the oldest go first)
MIN_SHARED = 3  # measurements two runs must share for their common factor to count
NOT_MEASURED = ("How far this machine's speed moves between runs is not measured yet: each run's intervals cover its "
                "own minutes only. A later run of the same sweep into another database (fsrt bench --db OTHER.db) "
                "measures it from the two runs.")


@dataclass(frozen=True)
class BetweenRuns:
    """The machine's measured movement between runs: how many runs and pairs of runs it rests on,
    the standard deviation of one run's level (log), of one point's movement around that level beyond
    its within-run error (log), this run's common factor against each earlier run
    it shares measurements with (its figures over theirs), and since when runs are kept."""

    runs: int
    pairs: int
    level_sd: float
    point_sd: float
    factors: tuple[float, ...]
    since: float

    @property
    def reproduce_rel(self) -> float:
        """How far a later run's figure may lie from this run's on this machine (95%, relative): both
        runs' levels and the point's own movement differ, beyond the two within-run errors."""
        return math.exp(Z95 * math.sqrt(2.0) * math.hypot(self.level_sd, self.point_sd)) - 1.0

    def to_dict(self) -> dict:
        """JSON-able form (stored in a results database and printed under ``--json``)."""
        return {**asdict(self), "factors": list(self.factors), "reproduce_rel": self.reproduce_rel}

    @classmethod
    def from_dict(cls, d: dict | None) -> BetweenRuns | None:
        """Back from ``to_dict`` (None for None or a malformed record)."""
        try:
            return cls(int(d["runs"]), int(d["pairs"]), float(d["level_sd"]), float(d["point_sd"]),
                       tuple(float(f) for f in d["factors"]), float(d["since"]))
        except (KeyError, TypeError, ValueError):
            return None

    def sentence(self) -> str:
        """One sentence for the report and the console."""
        fac = ", ".join(f"{f:.3f}" for f in self.factors) or "none shared"
        return (f"Between runs, this machine's speed moved with a standard deviation of {100 * self.level_sd:.1f}% "
                f"per run, and single points around that by {100 * self.point_sd:.1f}% beyond their within-run "
                f"error ({self.pairs} pair(s) of {self.runs} runs sharing measurements, kept since "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.since))}): a later run's figures are expected "
                f"within +-{100 * self.reproduce_rel:.1f}% of this run's (95%), in addition to their within-run "
                f"intervals, and comparisons between points include their movement. The latest run over each "
                f"earlier one: {fac}.")


def run_figures(points: Iterable[Point]) -> dict[str, list[float]]:
    """A run's figures for the history: measurement key -> [figure in ms, when it was measured, the log
    half-width of its within-run 95% interval (0 without one)]."""
    return {p.mkey: [p.latency_ms, p.created or 0.0, log_half_width(p) or 0.0]
            for p in points if p.measured and p.mkey}


def _shared_logs(a: dict[str, list[float]], b: dict[str, list[float]]) -> list[tuple[float, float]]:
    """(log of a/b, within-run variance of that log) for the measurements two runs took apart (a point
    reused from the same measurement is no evidence); empty below ``MIN_SHARED`` of them."""
    out = [(math.log(a[k][0] / b[k][0]), (a[k][2] ** 2 + b[k][2] ** 2) / Z95 ** 2)
           for k in sorted(a.keys() & b.keys()) if a[k][1] != b[k][1]]
    return out if len(out) >= MIN_SHARED else []


def estimate(records: list[dict]) -> BetweenRuns | None:
    """The machine's between-run movement from its kept runs (oldest first, this run last); None when
    no two runs share measurements.

    Every pair of runs sharing measurements gives log ratios d_k. Their mean D is the pair's common
    factor (``level_sd`` from all pairs' D). Around it, d_k - D is what moved point by point; its
    variance, corrected for the mean taken out (n/(n-1)) and less the two within-run errors (the
    intervals' half-widths over 1.96, squared), is twice one run's point-by-point movement
    (``point_sd``), pooled over all pairs.
    """
    levels, runs, factors, excess, count = [], set(), [], 0.0, 0
    for (i, a), (j, b) in itertools.combinations(enumerate(records), 2):
        logs = _shared_logs(a["figures"], b["figures"])
        if not logs:
            continue
        n, mid = len(logs), sum(d for d, _ in logs) / len(logs)
        levels.append(mid)
        runs.update((i, j))
        if j == len(records) - 1:  # the latest run's common factor over run i's
            factors.append(math.exp(-mid))
        excess += sum((d - mid) ** 2 * n / (n - 1) - var for d, var in logs)
        count += n
    if not levels:
        return None
    level_sd = math.sqrt(sum(d * d for d in levels) / len(levels) / 2.0)
    point_sd = math.sqrt(max(0.0, excess / count) / 2.0)
    return BetweenRuns(len(runs), len(levels), level_sd, point_sd, tuple(factors), min(r["at"] for r in records))


def record_run(machine_id: str, run_key: str, points: Iterable[Point], now: float | None = None) -> BetweenRuns | None:
    """Keep this run's figures in the machine's history (replacing its own earlier record, so a resumed
    run counts once) and estimate the machine's movement between runs from all kept runs. A cache
    that cannot be read or written only means the history does not grow."""
    figures = run_figures(points)
    if not figures:
        return None
    kept = (machine_settings.load(machine_id, HISTORY) or {}).get("runs")
    records = [r for r in kept if _valid(r) and r["run"] != run_key] if isinstance(kept, list) else []
    records.append({"run": run_key, "at": time.time() if now is None else now, "figures": figures})
    records = records[-KEEP_RUNS:]
    machine_settings.save(machine_id, HISTORY, {"runs": records})
    return estimate(records)


def _valid(r) -> bool:
    return (isinstance(r, dict) and isinstance(r.get("run"), str) and isinstance(r.get("at"), (int, float))
            and isinstance(r.get("figures"), dict)
            and all(isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v) and v[0] > 0
                    for v in r["figures"].values()))
