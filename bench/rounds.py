"""Interleaved measurement: rounds of short timing windows over every pending job.

Why: on a shared machine the speed drifts over seconds to minutes. Measuring one point after
another lets a slow minute land on a few points (a 4x figure that looks stable inside its own
window); measuring in rounds, each visiting every pending job once in a fresh random order,
spreads a slow period over all points, where a robust statistic ignores it. The same idea is
Google Benchmark's random interleaving of repetitions and pyperf's repeated worker runs.

Per job, each round contributes one *window* (a few calls timed back to back). A job's figure is
the interquartile mean of the calls of all its kept windows, with a 95% confidence interval from
the delete-one-window jackknife (``stats.jackknife_figure``). A window far
from the job's other windows (beyond ``outlier_sigmas`` robust deviations and at least
``outlier_min`` relative) is dropped and, since kept windows are what count, measured again in
a later round. A job stops when it has ``min_rounds`` kept windows and its interval's half-width
is within ``target_ci`` of the figure, or at ``max_rounds`` windows; no new round starts once
``budget_s`` seconds of rounds have passed and every job has its minimum.

Everything here is pure scheduling and statistics: the timing itself is the ``execute``
callable's (a worker process in a sweep, a fake in the tests).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fsrt.bench.stats import STATISTIC, jackknife_figure, jackknife_interval, median, window_statistic


@dataclass(frozen=True)
class RoundConfig:
    """When to stop measuring and what counts as an outlier."""

    min_rounds: int = 6  # the fewest kept windows whose jackknife interval is trusted
    max_rounds: int = 30
    target_ci: float = 0.02  # stop when the interval's half-width is within 2% of the figure
    budget_s: float | None = None  # seconds of rounds after which none starts, once every job has its minimum
    confidence: float = 0.95
    outlier_sigmas: float = 5.0
    outlier_min: float = 0.10
    cooldown_s: float = 0.02  # pause between windows so the last runtime's spinning threads settle
    seed: int = 0

    def identity(self) -> dict:
        """The settings that change what a point's figure is (stored in its identity)."""
        return {"statistic": STATISTIC, "min_rounds": self.min_rounds, "max_rounds": self.max_rounds,
                "target_ci": self.target_ci, "budget_s": self.budget_s, "confidence": self.confidence,
                "outlier_sigmas": self.outlier_sigmas,
                "outlier_min": self.outlier_min, "cooldown_s": self.cooldown_s}


@dataclass
class Window:
    """One timing window of one job: its call times and its statistic."""

    round: int
    times_ms: tuple[float, ...]
    started: float
    dropped: bool = False

    @property
    def value(self) -> float:
        """The window's own figure (the interquartile mean of its calls)."""
        return window_statistic(list(self.times_ms))


@dataclass
class JobState:
    """Every window measured for one job so far (including those carried over from a resume)."""

    job: str
    windows: list[Window] = field(default_factory=list)
    error: str | None = None  # set when timing a window failed: the job is measured no further
    _cache: tuple = field(default=(), init=False, repr=False, compare=False)  # (kept windows' flags, jackknife)

    @property
    def kept(self) -> list[Window]:
        """The windows that count."""
        return [w for w in self.windows if not w.dropped]

    @property
    def dropped(self) -> int:
        """How many windows were dropped as outliers."""
        return sum(1 for w in self.windows if w.dropped)

    def _jackknife(self) -> tuple[float, float | None]:
        """``stats.jackknife_figure`` of the kept windows, computed once per set of kept windows."""
        key = tuple(w.dropped for w in self.windows)
        if not self._cache or self._cache[0] != key:
            self._cache = (key, jackknife_figure([w.times_ms for w in self.kept]))
        return self._cache[1]

    def figure(self) -> float | None:
        """The interquartile mean of the kept windows' calls."""
        return self._jackknife()[0] if self.kept else None

    def interval(self, confidence: float) -> tuple[float, float] | None:
        """Confidence interval of the figure (None until there are enough kept windows)."""
        if not self.kept:
            return None
        figure, log_se = self._jackknife()
        return None if log_se is None else jackknife_interval(figure, log_se, len(self.kept), confidence)

    def ci_rel(self, confidence: float) -> float:
        """Half-width of the interval relative to the figure (the larger side; inf when undefined)."""
        ci, fig = self.interval(confidence), self.figure()
        if ci is None or not fig:
            return math.inf
        return max(ci[1] / fig - 1.0, 1.0 - ci[0] / fig)

    def done(self, cfg: RoundConfig) -> bool:
        """Whether this job needs no more windows."""
        return self.error is not None or len(self.windows) >= cfg.max_rounds or self.converged(cfg)

    def converged(self, cfg: RoundConfig) -> bool:
        """Whether the interval met the target (the point is ``ok`` rather than ``unstable``)."""
        return len(self.kept) >= cfg.min_rounds and self.ci_rel(cfg.confidence) <= cfg.target_ci


def flag_outliers(windows: list[Window], cfg: RoundConfig) -> None:
    """Mark as dropped the windows that disagree strongly with the job's other windows.

    Deviation is measured in log space from the median of all windows; the scale is the median
    absolute deviation (x1.4826, a normal sigma). A window is an outlier beyond both
    ``outlier_sigmas`` sigmas and ``outlier_min`` relative. At most a third of the windows are
    dropped (the most deviant first): a job noisier than that is unstable, not an outlier.
    """
    if len(windows) < 3:
        for w in windows:
            w.dropped = False
        return
    logs = [math.log(w.value) for w in windows]
    mid = median(logs)
    dev = [abs(x - mid) for x in logs]
    sigma = 1.4826 * median(dev)
    limit = max(cfg.outlier_sigmas * sigma, math.log1p(cfg.outlier_min))
    order = sorted(range(len(windows)), key=lambda i: -dev[i])
    budget = (len(windows) - 1) // 3
    flagged = {i for i in order[:budget] if dev[i] > limit}
    for i, w in enumerate(windows):
        w.dropped = i in flagged


def run_rounds(jobs: Iterable[str], execute: Callable[[str], list[float]], cfg: RoundConfig,
               prior: dict[str, list[Window]] | None = None,
               on_window: Callable[[str, Window, JobState], None] | None = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               ) -> dict[str, JobState]:
    """Measure ``jobs`` in interleaved rounds until each is done (see the module docstring).

    ``execute(job)`` times one window and returns its call times in ms; an exception it raises
    ends that job (``JobState.error``) unless it is a ``BaseException`` such as Ctrl-C, which
    ends the loop. ``prior`` holds windows
    measured before (a resumed sweep). ``on_window(job, window, state)`` is called after each
    window, with outlier flags already updated, so the caller can store it at once.
    """
    states = {j: JobState(j, list((prior or {}).get(j, []))) for j in jobs}
    for st in states.values():
        flag_outliers(st.windows, cfg)
    rng = random.Random(cfg.seed)
    next_round = 1 + max((w.round for st in states.values() for w in st.windows), default=0)
    start = clock()
    while True:
        pending = [j for j, st in states.items() if not st.done(cfg)]
        if not pending:
            break
        minimum_met = all(len(st.kept) >= cfg.min_rounds for st in states.values() if st.error is None)
        if cfg.budget_s is not None and minimum_met and clock() - start >= cfg.budget_s:
            break
        rng.shuffle(pending)
        for j in pending:
            st = states[j]
            try:
                window = Window(next_round, tuple(execute(j)), time.time())
            except Exception as e:  # the runtime failed mid-sweep: a recorded result, not a crash
                st.error = f"{type(e).__name__}: {e}"
                continue
            st.windows.append(window)
            flag_outliers(st.windows, cfg)
            if on_window:
                on_window(j, window, st)
            if cfg.cooldown_s > 0:
                sleep(cfg.cooldown_s)
        next_round += 1
    return states
