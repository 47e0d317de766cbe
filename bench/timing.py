"""The timing harness: warm-up by time, timing windows by time and minimum count.

CPU calls are timed with ``perf_counter_ns``; CUDA calls with device events around each call
(after an optional L2 flush that is not timed, for cold-cache numbers). A sweep times short
*windows* (``time_window``) that ``fsrt.bench.rounds`` interleaves across all its points;
``measure`` times one long window for a single callable (benchmark scripts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fsrt.bench.stats import LatencyStats


@dataclass(frozen=True)
class TimingConfig:
    """How long and how often to run. Defaults suit CPU models of 1-100 ms."""

    warmup_s: float = 0.5
    min_warmup: int = 3
    measure_s: float = 1.5
    min_runs: int = 10
    max_runs: int = 2000
    cv_threshold: float = 0.10
    retries: int = 1
    l2: str = "warm"  # GPU only: "warm" or "cold" (flush L2 before every timed call)


@dataclass(frozen=True)
class WindowConfig:
    """How one point is warmed up once, and how long each of its timing windows is."""

    warmup_s: float = 0.3  # once, after preparing (caches, allocator, thread pools, lazy compilation)
    min_warmup: int = 3
    window_s: float = 0.1  # timed seconds per window (at least ``min_calls`` calls)
    min_calls: int = 3
    max_calls: int = 2000
    rewarm_calls: int = 1  # untimed calls that start each window (another runtime ran in between)
    l2: str = "warm"  # GPU only: "warm" or "cold" (flush L2 before every timed call)

    def identity(self) -> dict:
        """The settings that change what is measured (stored in each point's identity)."""
        return {"warmup_s": self.warmup_s, "min_warmup": self.min_warmup, "window_s": self.window_s,
                "min_calls": self.min_calls, "max_calls": self.max_calls, "rewarm_calls": self.rewarm_calls,
                "l2": self.l2}


@dataclass(frozen=True)
class Timing:
    """The result of timing one callable."""

    stats: LatencyStats
    times_ms: tuple[float, ...]
    unstable: bool
    attempts: int
    l2: str


def best_of(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Shortest wall time in seconds of ``repeats`` calls (synchronizing around each on CUDA).

    For throughput probes (ceilings, benchmark scripts) where the minimum is the figure.
    """
    sync = _cuda_sync if device.startswith("cuda") else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def _cpu_timer(fn: Callable[[], object], cfg: TimingConfig) -> Callable[[], float]:
    def time_one() -> float:
        t0 = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - t0) / 1e6

    return time_one


def _cuda_timer(fn: Callable[[], object], cfg: TimingConfig) -> Callable[[], float]:
    import torch

    flush = None
    if cfg.l2 == "cold":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        l2 = getattr(props, "L2_cache_size", 64 * 2**20) or 64 * 2**20
        flush = torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda")

    def time_one() -> float:
        if flush is not None:
            flush.zero_()  # evict the model's data from L2; not inside the timed events
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)

    return time_one


def _timer(fn: Callable[[], object], device: str, l2: str) -> Callable[[], float]:
    if device.startswith("cuda"):
        return _cuda_timer(fn, TimingConfig(l2=l2))
    return _cpu_timer(fn, TimingConfig())


def warm_up(fn: Callable[[], object], seconds: float, min_calls: int, device: str = "cpu") -> int:
    """Call ``fn`` for ``seconds`` and at least ``min_calls`` times; returns the number of calls."""
    deadline = time.perf_counter() + seconds
    done = 0
    while done < min_calls or time.perf_counter() < deadline:
        fn()
        done += 1
    if device.startswith("cuda"):
        _cuda_sync()
    return done


def _timed_calls(time_one: Callable[[], float], seconds: float, min_calls: int, max_calls: int) -> list[float]:
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() < end):
        times.append(time_one())
    return times


def time_window(fn: Callable[[], object], cfg: WindowConfig, device: str = "cpu",
                time_one: Callable[[], float] | None = None) -> list[float]:
    """One timing window: ``cfg.rewarm_calls`` untimed calls, then timed calls for ``cfg.window_s``
    (at least ``cfg.min_calls``). Returns the call times in ms. ``time_one`` reuses a timer built
    once by ``window_timer`` (the CUDA one allocates its L2-flush buffer)."""
    for _ in range(cfg.rewarm_calls):
        fn()
    if device.startswith("cuda"):
        _cuda_sync()
    time_one = time_one or _timer(fn, device, cfg.l2)
    return _timed_calls(time_one, cfg.window_s, cfg.min_calls, cfg.max_calls)


def window_timer(fn: Callable[[], object], cfg: WindowConfig, device: str = "cpu") -> Callable[[], float]:
    """The per-call timer ``time_window`` uses for ``fn`` (build once per point, reuse per window)."""
    return _timer(fn, device, cfg.l2)


def measure(fn: Callable[[], object], cfg: TimingConfig = TimingConfig(), device: str = "cpu") -> Timing:
    """Time ``fn`` (a no-argument call with its inputs bound) in one long window and summarize.

    For benchmark scripts that time one thing at a time; a sweep uses interleaved windows
    (``fsrt.bench.rounds``). If the coefficient of variation exceeds ``cfg.cv_threshold`` the
    measurement is repeated up to ``cfg.retries`` times; the least noisy attempt is kept and
    flagged ``unstable`` if even that one is above the threshold.
    """
    time_one = _timer(fn, device, cfg.l2)
    best: tuple[LatencyStats, list[float]] | None = None
    attempts = 0
    for _ in range(1 + max(0, cfg.retries)):
        attempts += 1
        warm_up(fn, cfg.warmup_s, cfg.min_warmup, device)
        times = _timed_calls(time_one, cfg.measure_s, cfg.min_runs, cfg.max_runs)
        stats = LatencyStats.of(times)
        if best is None or stats.cv < best[0].cv:
            best = (stats, times)
        if stats.cv <= cfg.cv_threshold:
            break
    stats, times = best
    l2 = cfg.l2 if device.startswith("cuda") else "n/a (CPU)"
    return Timing(stats, tuple(times), stats.cv > cfg.cv_threshold, attempts, l2)
