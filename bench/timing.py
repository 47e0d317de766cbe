"""The timing harness: warm up by time, measure by time and minimum count, re-measure if noisy.

CPU calls are timed with ``perf_counter_ns``; CUDA calls with device events around each call
(after an optional L2 flush that is not timed, for cold-cache numbers). A point whose
coefficient of variation exceeds the threshold is measured again and flagged if it stays noisy.
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
        l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 64 * 2**20) or 64 * 2**20
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


def _sample(fn: Callable[[], object], cfg: TimingConfig, device: str) -> list[float]:
    cuda = device.startswith("cuda")
    time_one = (_cuda_timer if cuda else _cpu_timer)(fn, cfg)
    deadline = time.perf_counter() + cfg.warmup_s
    done = 0
    while done < cfg.min_warmup or time.perf_counter() < deadline:
        fn()
        done += 1
    if cuda:
        _cuda_sync()
    times: list[float] = []
    end = time.perf_counter() + cfg.measure_s
    while len(times) < cfg.max_runs and (len(times) < cfg.min_runs or time.perf_counter() < end):
        times.append(time_one())
    return times


def measure(fn: Callable[[], object], cfg: TimingConfig = TimingConfig(), device: str = "cpu") -> Timing:
    """Time ``fn`` (a no-argument call with its inputs bound) and summarize.

    If the coefficient of variation exceeds ``cfg.cv_threshold`` the whole measurement is
    repeated up to ``cfg.retries`` times; the least noisy attempt is kept and flagged
    ``unstable`` if even that one is above the threshold.
    """
    best: tuple[LatencyStats, list[float]] | None = None
    attempts = 0
    for _ in range(1 + max(0, cfg.retries)):
        attempts += 1
        times = _sample(fn, cfg, device)
        stats = LatencyStats.of(times)
        if best is None or stats.cv < best[0].cv:
            best = (stats, times)
        if stats.cv <= cfg.cv_threshold:
            break
    stats, times = best
    l2 = cfg.l2 if device.startswith("cuda") else "n/a (CPU)"
    return Timing(stats, tuple(times), stats.cv > cfg.cv_threshold, attempts, l2)
