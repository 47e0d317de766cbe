"""How noisy this machine is, measured: the thread-count probe and the run's own noise figures.

On a shared 2-vCPU virtual machine a two-thread operator waits for the slower vCPU, so
window-to-window spread at two threads was measured at 6-11% where one thread gave about 1%.
fsrt does not assume this: ``probe_threads`` times a fixed convolution in interleaved windows at
one thread and at every core, and ``choose_threads`` keeps all cores only when they are faster
unless their window-to-window spread is both over 3% and over twice the one-thread spread, over
the whole probe and in each of its halves (``decide_threads``). Either limit alone flipped the
choice between two runs minutes apart on a machine where all cores were 1.8x faster (figures of
the two choices 1.2-1.9x apart): twice the one-thread spread on a quiet machine (1.3% against
0.4%), 3% alone on a noisier one (3.1% against 2.2%, in one half of the probe). Only noise that
comes from running on all cores, not the machine's noise that one thread meets too, decides.
The decision is stored per machine so later runs (and resumes) use the same thread count;
``--threads N`` overrides it.

``run_noise`` summarizes the noise a run actually met, from its stored windows: the spread of a
measurement's windows around its figure, and the common drift of the machine's speed from round
to round (what interleaving protects the figures from).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass

from fsrt.bench.rounds import Window
from fsrt.bench.stats import median, window_statistic

THREADS_SETTING = "threads"


@dataclass(frozen=True)
class ThreadProbe:
    """Window-to-window spread (robust, relative) of one workload at 1 thread and at all cores."""

    cores: int
    spread_1: float
    spread_all: float
    ms_1: float
    ms_all: float
    windows: int
    chosen: int
    rule: str

    def to_dict(self) -> dict:
        """JSON-able form (stored as a machine setting)."""
        return asdict(self)


def spread(values: list[float]) -> float:
    """Robust relative spread of positive values: 1.4826 x median absolute deviation of their
    logarithms (a normal sigma, as a fraction); 0 for fewer than 3 values."""
    if len(values) < 3:
        return 0.0
    logs = [math.log(v) for v in values]
    mid = median(logs)
    return 1.4826 * median([abs(x - mid) for x in logs])


ALL_CORES_MAX_SPREAD = 0.03  # all cores are refused only over this spread and over twice the 1-thread spread


def choose_threads(cores: int, spread_1: float, spread_all: float, ms_1: float, ms_all: float) -> tuple[int, str]:
    """Thread count for measurements, and the rule that chose it."""
    if cores <= 1:
        return 1, "one core"
    if ms_all >= ms_1:
        return 1, (f"1 thread: at {cores} threads the probe was no faster ({ms_all:.2f} vs {ms_1:.2f} ms), so the "
                   "cores are not really free")
    if spread_all <= max(ALL_CORES_MAX_SPREAD, 2.0 * spread_1):
        return cores, (f"all {cores} cores: {ms_1 / ms_all:.2f}x faster than 1 thread, windows spread "
                       f"{100 * spread_all:.1f}% (1 thread: {100 * spread_1:.1f}%), within 3% or twice 1 thread")
    return 1, (f"1 thread: at {cores} threads windows spread {100 * spread_all:.1f}% vs "
               f"{100 * spread_1:.1f}% at 1 thread (a multi-thread op waits for its slowest core; all cores "
               f"need a spread within 3% or twice the 1-thread spread)")


def decide_threads(cores: int, values_1: list[float], values_all: list[float]) -> tuple[int, str]:
    """``choose_threads`` on the whole probe, with all cores kept only if each half of the probe's
    windows (first and second) chooses them too: on a VM whose noise comes and goes, one passing
    look flipped the choice between two runs a few minutes apart (1-thread and 2-thread figures
    then differ by 40%), and a choice the machine's noise can flip is not taken."""
    whole = choose_threads(cores, spread(values_1), spread(values_all), median(values_1), median(values_all))
    if whole[0] == 1:
        return whole
    h1, ha = len(values_1) // 2, len(values_all) // 2
    halves = [choose_threads(cores, spread(v1), spread(va), median(v1), median(va))
              for v1, va in ((values_1[:h1], values_all[:ha]), (values_1[h1:], values_all[ha:]))]
    failed = [f"{name} half: {rule}" for name, (n, rule) in zip(("first", "second"), halves, strict=True) if n == 1]
    if failed:
        return 1, (f"1 thread: all {cores} cores passed over the whole probe but not in both of its halves "
                   f"({'; '.join(failed)})")
    return whole


def probe_threads(cores: int | None = None, windows: int = 24, window_s: float = 0.08) -> ThreadProbe:
    """Time a fixed 3x3 convolution in alternating windows at 1 thread and at ``cores`` threads."""
    import torch

    from fsrt.bench.timing import WindowConfig, time_window

    cores = cores or os.cpu_count() or 1
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 64, 56, 56, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen)
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
    cfg = WindowConfig(window_s=window_s, min_calls=5, rewarm_calls=2)
    old = torch.get_num_threads()
    values: dict[int, list[float]] = defaultdict(list)
    try:
        with torch.inference_mode():
            for i in range(2 * windows):
                n = 1 if i % 2 == 0 else cores
                torch.set_num_threads(n)
                values[n].append(window_statistic(time_window(conv, cfg)))
    finally:
        torch.set_num_threads(old)
    s1, sall = spread(values[1]), spread(values[cores])
    ms_1, ms_all = median(values[1]), median(values[cores])
    chosen, rule = decide_threads(cores, values[1], values[cores])
    return ThreadProbe(cores, s1, sall, ms_1, ms_all, windows, chosen, rule)


@dataclass(frozen=True)
class RunNoise:
    """The noise one run met: per-measurement window spread and the machine's drift over rounds."""

    measurements: int
    windows: int
    dropped: int
    spread_median: float | None  # typical robust spread of a measurement's windows
    spread_max: float | None
    drift_min: float | None  # common speed factor of the slowest / fastest round (1 = typical)
    drift_max: float | None
    drift_spread: float | None

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)


def run_noise(windows_by_measurement: dict[str, list[Window]]) -> RunNoise:
    """Noise figures of a run from its measurements' windows (see the module docstring)."""
    spreads, factors = [], defaultdict(list)
    n_windows = dropped = 0
    for wins in windows_by_measurement.values():
        n_windows += len(wins)
        dropped += sum(1 for w in wins if w.dropped)
        vals = [w.value for w in wins]
        if len(vals) >= 3:
            spreads.append(spread(vals))
        fig = median([w.value for w in wins if not w.dropped] or vals) if vals else None
        if fig:
            for w in wins:
                factors[w.round].append(w.value / fig)
    round_factor = [median(f) for _, f in sorted(factors.items()) if len(f) >= 2]
    return RunNoise(len(windows_by_measurement), n_windows, dropped,
                    median(spreads) if spreads else None, max(spreads) if spreads else None,
                    min(round_factor) if round_factor else None, max(round_factor) if round_factor else None,
                    spread(round_factor) if len(round_factor) >= 3 else None)


def describe_probe(p: dict | None) -> str:
    """One sentence about the stored thread probe (for the report)."""
    if not p:
        return "The thread count was given on the command line; no thread probe was needed."
    return (f"Thread probe on this machine: a fixed convolution's windows spread {100 * p['spread_1']:.1f}% at 1 "
            f"thread and {100 * p['spread_all']:.1f}% at {p['cores']} threads ({p['windows']} windows each, "
            f"median {p['ms_1']:.2f} vs {p['ms_all']:.2f} ms); chosen: {p['rule']}.")

