"""Trustworthy latency: interleaved rounds, outlier windows, intervals, the timed call as the checked
call, worker isolation, the measurement lock, store migration and bad timing input.

References are independent of the code under test: exact binomial tails, Student's t and trimmed
means from scipy, numpy's
median absolute deviation, and fake runtimes whose true latency is known by construction.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sweep_helpers import sweep_in_process

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench import analysis, stats
from fsrt.bench.noise import choose_threads, decide_threads, run_noise, spread
from fsrt.bench.points import Point, Status
from fsrt.bench.rounds import JobState, RoundConfig, Window, flag_outliers, run_rounds
from fsrt.bench.uncertainty import Interval, geomean_ratio, independent_ratio, paired_ratio

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1.db"


# -- the interval of a median -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 5, 6, 7, 10, 15, 30])
def test_median_ci_ranks_have_exact_binomial_coverage(n):
    ranks = stats.median_ci_ranks(n)
    if n < 6:
        assert ranks is None  # 2 * P(B <= 0) = 2 / 2^n > 5% for n <= 5
        return
    lo, hi = ranks
    assert hi == n - 1 - lo
    coverage = 1 - 2 * sps.binom.cdf(lo, n, 0.5)  # P(x_(lo) <= median <= x_(hi)), 0-based ranks
    assert coverage >= 0.95
    # the next narrower interval would fall below 95%
    assert 1 - 2 * sps.binom.cdf(lo + 1, n, 0.5) < 0.95


@pytest.mark.parametrize("n", [4, 8, 37, 100])
def test_interquartile_mean_is_the_mean_of_the_middle_half(n):
    xs = list(np.random.default_rng(n).lognormal(0, 0.3, n))
    # each value repeated 4 times: the middle half of the repeated sample cuts whole values,
    # so scipy's trimmed mean of it is the mean of the middle half with fractional edges
    assert stats.interquartile_mean(xs) == pytest.approx(sps.trim_mean(np.repeat(xs, 4), 0.25), rel=1e-12)
    if n % 4 == 0:
        assert stats.interquartile_mean(xs) == pytest.approx(sps.trim_mean(xs, 0.25), rel=1e-12)
    assert stats.window_statistic(xs) == stats.interquartile_mean(xs)


def test_interquartile_mean_of_three_calls_weights_the_edges_by_a_quarter():
    assert stats.interquartile_mean([30.0, 10.0, 20.0]) == pytest.approx((10 / 4 + 20 + 30 / 4) / 1.5)
    assert stats.interquartile_mean([5.0]) == 5.0


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 11, 29, 30, 100])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.975, 0.995])
def test_t_quantile_matches_scipy(df, p):
    assert stats.t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9)


def _job(windows: list[list[float]]) -> JobState:
    return JobState("x", [Window(i, tuple(w), 0.0) for i, w in enumerate(windows)])


def test_pooled_interval_covers_the_true_figure_about_95_percent_of_the_time():
    """Calls share their window's machine state (a factor per window) and jitter on their own; the
    distribution is symmetric about 10 ms, so the true interquartile mean is 10 ms exactly."""
    rng = np.random.default_rng(7)
    covered, trials = 0, 400
    for _ in range(trials):
        windows = [list(10.0 * (1 + rng.normal(0, 0.03) + rng.normal(0, 0.02, 4))) for _ in range(12)]
        st = _job(windows)
        figure, (lo, hi) = st.figure(), st.interval(0.95)
        assert lo < figure < hi
        covered += lo <= 10.0 <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_pooled_figure_needs_three_windows_for_an_interval():
    st = _job([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    figure, ci = st.figure(), st.interval(0.95)
    assert figure == pytest.approx(sps.trim_mean(np.repeat([1.0, 2.0, 3.0, 2.0, 2.0, 2.0], 4), 0.25)) and ci is None


# -- rounds against fake runtimes with known latency -----------------------------------------------
class FakeMachine:
    """Jobs with a true latency each; call times jitter by +-0.2%; during 'slow periods' (by window
    count) every call of the window is 4x slower, uniformly, so the window itself looks stable."""

    def __init__(self, true_ms: dict[str, float], slow: range = range(0), drift: list[float] | None = None):
        self.true_ms, self.slow, self.drift = true_ms, slow, drift
        self.count = 0
        self.rng = np.random.default_rng(1)
        self.rounds: list[str] = []

    def execute(self, job: str) -> list[float]:
        factor = 4.0 if self.count in self.slow else 1.0
        if self.drift:
            factor *= self.drift[self.count % len(self.drift)]
        self.count += 1
        self.rounds.append(job)
        return list(self.true_ms[job] * factor * (1 + 0.002 * self.rng.standard_normal(8)))


def _fast_cfg(**kw) -> RoundConfig:
    return RoundConfig(cooldown_s=0.0, **kw)


def test_a_uniformly_slow_window_is_caught_and_does_not_move_the_figure():
    machine = FakeMachine({"a": 5.0, "b": 12.0, "c": 40.0}, slow=range(7, 10))  # 3 slow windows in round 3
    states = run_rounds(["a", "b", "c"], machine.execute, _fast_cfg())
    for job, true in machine.true_ms.items():
        st = states[job]
        assert st.figure() == pytest.approx(true, rel=0.002)  # the middle of +-0.2% symmetric jitter
        assert len(st.kept) >= 6 and st.converged(_fast_cfg())
    assert sum(st.dropped for st in states.values()) == 3
    slow_windows = [w for st in states.values() for w in st.windows if w.value > 3 * machine.true_ms[st.job]]
    assert len(slow_windows) == 3 and all(w.dropped for w in slow_windows)
    # each job with a dropped window was measured again: one more window than the minimum
    for st in states.values():
        assert len(st.windows) == 6 + st.dropped


def test_without_outlier_rule_the_slow_window_would_have_counted():
    """The reference the test above relies on: the 4x window is far beyond the rule's limits."""
    wins = [Window(i, (5.0,), 0.0) for i in range(6)] + [Window(6, (20.0,), 0.0)]
    flag_outliers(wins, _fast_cfg())
    assert [w.dropped for w in wins] == [False] * 6 + [True]
    wins = [Window(i, (5.0 * (1 + 0.05 * (i % 2)),), 0.0) for i in range(7)]  # 5% alternation: not an outlier
    flag_outliers(wins, _fast_cfg())
    assert not any(w.dropped for w in wins)


def test_rounds_interleave_every_pending_job_in_random_order():
    machine = FakeMachine({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    run_rounds(list(machine.true_ms), machine.execute, _fast_cfg(seed=3))
    rounds = [machine.rounds[i:i + 4] for i in range(0, len(machine.rounds), 4)]
    assert len(rounds) == 6 and all(sorted(r) == ["a", "b", "c", "d"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # a fresh order each round


def test_noisy_job_runs_to_max_rounds_and_is_not_converged():
    rng = np.random.default_rng(5)
    noisy = lambda job: list(10.0 * (1 + 0.2 * rng.random()) * np.ones(4))  # noqa: E731
    cfg = _fast_cfg(max_rounds=12, target_ci=0.01)
    st = run_rounds(["x"], noisy, cfg)["x"]
    assert len(st.windows) == 12 and not st.converged(cfg)
    lo, hi = st.interval(cfg.confidence)
    assert lo <= st.figure() <= hi and st.ci_rel(cfg.confidence) > 0.01


def test_budget_stops_rounds_once_every_job_has_its_minimum():
    clock = {"t": 0.0}

    def execute(job):
        clock["t"] += 1.0
        return [10.0 + (clock["t"] % 3)]  # 10% noise: never converges to 1%

    cfg = _fast_cfg(max_rounds=50, target_ci=0.001, budget_s=3.0)
    states = run_rounds(["a", "b"], execute, cfg, clock=lambda: clock["t"])
    n = [len(s.windows) for s in states.values()]
    assert min(n) >= 6 and max(n) <= 9  # minimum first (12 s of fake time), then at most one more round


def test_resume_continues_from_stored_windows():
    machine = FakeMachine({"a": 5.0})
    prior = {"a": [Window(r, tuple([5.0] * 4), 0.0) for r in (1, 2, 3, 4)]}
    st = run_rounds(["a"], machine.execute, _fast_cfg(), prior=prior)["a"]
    assert machine.count == 2 and [w.round for w in st.windows] == [1, 2, 3, 4, 5, 6]


def test_a_failing_job_stops_alone():
    def execute(job):
        if job == "bad":
            raise RuntimeError("runtime crashed")
        return [1.0, 1.0, 1.0]

    states = run_rounds(["ok", "bad"], execute, _fast_cfg())
    assert states["bad"].error == "RuntimeError: runtime crashed" and not states["bad"].windows
    assert len(states["ok"].kept) == 6


# -- paired and independent ratios ------------------------------------------------------------------
def test_paired_ratio_cancels_drift_that_independent_intervals_cannot():
    drift = [1.0, 1.3, 0.8, 1.1, 0.9, 1.25, 0.85, 1.05]
    a = [Window(r, (2.0 * d,), 100.0 + r) for r, d in enumerate(drift)]
    b = [Window(r, (4.0 * d,), 100.5 + r) for r, d in enumerate(drift)]
    paired = paired_ratio(a, b)
    assert paired.value == pytest.approx(0.5) and paired.lo == pytest.approx(0.5) and paired.hi == pytest.approx(0.5)
    pa = Point(latency_ms=2.0, latency_lo_ms=1.6, latency_hi_ms=2.6, status="ok")
    pb = Point(latency_ms=4.0, latency_lo_ms=3.2, latency_hi_ms=5.2, status="ok")
    ind = independent_ratio(pa, pb)
    h = math.hypot(math.log(2.6 / 2.0), math.log(5.2 / 4.0))  # log half-widths add in quadrature
    assert ind.value == pytest.approx(0.5) and ind.lo == pytest.approx(0.5 * math.exp(-h))
    assert ind.excludes(1.0) and not Point(status="ok", latency_ms=1.0).ci_rel
    # windows of the same round number measured far apart are not paired
    late = [Window(r, (4.0,), 10_000.0 + r) for r in range(8)]
    assert paired_ratio(a, late) is None


def _coverage_of_geomean(shared_sd: float, own_sd: float, shared_errors: bool, n_points: int = 25,
                         trials: int = 2000) -> float:
    """How often the geometric mean's interval holds the true ratio 1 when each of ``n_points`` log
    ratios errs by a shift shared by all of them plus its own error, every ratio's own interval being
    a correct marginal 95% interval (1.96 sigma of its total error)."""
    rng = np.random.default_rng(7)
    half = 1.959963984540054 * math.hypot(shared_sd, own_sd)
    hits = 0
    for _ in range(trials):
        logs = rng.normal(0, shared_sd) + rng.normal(0, own_sd, n_points)
        g = geomean_ratio([Interval(math.exp(x), math.exp(x - half), math.exp(x + half), "sim") for x in logs],
                          shared_errors)
        hits += g.lo <= 1.0 <= g.hi
    return hits / trials


@pytest.mark.parametrize("shared_sd, own_sd", [(0.03, 0.0), (0.02, 0.02), (0.0, 0.03)])
def test_geometric_mean_across_runs_keeps_its_coverage_when_errors_are_shared(shared_sd, own_sd):
    # one machine shift common to every point of a run is not averaged away by 25 points
    assert _coverage_of_geomean(shared_sd, own_sd, shared_errors=True) >= 0.93


def test_geometric_mean_of_independent_ratios_narrows_as_independent_errors_do():
    assert 0.93 <= _coverage_of_geomean(0.0, 0.03, shared_errors=False) <= 0.97
    # the same rule on a shared shift holds the truth about a third of the time: why runs use the other
    assert _coverage_of_geomean(0.03, 0.0, shared_errors=False) < 0.5


def _run(shift: float, own: tuple[float, ...] = (1.0,)) -> list[Point]:
    """25 points of +-5%, every figure times ``shift`` and the i-th also times ``own[i % len(own)]``."""
    return [Point(model=f"M{i}", runtime="ort", precision="fp32", batch=1, status="ok", flops=i + 1,
                  latency_ms=10.0 * (i + 1) * shift * own[i % len(own)],
                  latency_lo_ms=9.5 * (i + 1) * shift * own[i % len(own)],
                  latency_hi_ms=10.5 * (i + 1) * shift * own[i % len(own)]) for i in range(25)]


def test_run_vs_run_shift_within_the_points_intervals_is_not_resolved():
    same_machine = analysis.compare([("a", _run(1.0)), ("b", _run(1.04))], same_machine=True)
    line = same_machine["summary"][0]  # +-5% points, a 4% common shift
    assert line.startswith("b and a: not resolved, ratio 1.040")
    assert "the points differ by 0.0% on average, 0.0% at most" in line and "machine's speed moving" in line
    faster_machine = analysis.compare([("a", _run(1.0)), ("c", _run(0.6))])
    assert "c is 1.67x faster than a" in faster_machine["summary"][0]
    assert "machine's speed" not in faster_machine["summary"][0]


def test_run_vs_run_separates_the_common_factor_from_the_points_own_changes():
    own = (1.0, 1.1, 0.95, 1.0, 1.02)
    got = analysis.compare([("a", _run(1.0)), ("b", _run(1.3, own))])
    logs = np.log(1.3 * np.array([own[i % len(own)] for i in range(25)]))
    dev = np.abs(logs - logs.mean())
    (row,) = got["structure"][1:]
    assert row["points"] == 25 and row["mean_abs_log_deviation"] == pytest.approx(dev.mean(), rel=1e-12)
    assert row["worst_abs_log_deviation"] == pytest.approx(dev.max(), rel=1e-12)
    assert f"{np.exp(logs.mean()):.2f}x slower" in got["summary"][0]
    assert f"differ by {100 * dev.mean():.1f}% on average, {100 * dev.max():.1f}% at most" in got["summary"][0]


# -- machine noise figures --------------------------------------------------------------------------
def test_spread_is_a_robust_sigma_of_logs():
    xs = np.exp(np.random.default_rng(2).normal(0, 0.05, 400))
    logs = np.log(xs)
    mad = np.median(np.abs(logs - np.median(logs)))
    assert spread(list(xs)) == pytest.approx(1.4826 * mad)
    assert spread(list(xs)) == pytest.approx(0.05, rel=0.15)


def test_run_noise_sees_the_common_drift():
    drift = [1.0, 1.2, 0.9, 1.0, 1.1, 1.0]
    wins = {m: [Window(r + 1, (base * d,), 0.0) for r, d in enumerate(drift)] for m, base in (("a", 2.0), ("b", 7.0))}
    wins["a"][1].dropped = True
    noise = run_noise(wins)
    assert noise.windows == 12 and noise.dropped == 1 and noise.measurements == 2
    assert noise.drift_max == pytest.approx(1.2) and noise.drift_min == pytest.approx(0.9)


def test_thread_choice_rule():
    assert choose_threads(2, 0.006, 0.06, 10.0, 6.0)[0] == 1  # 10x noisier at 2 threads
    assert choose_threads(2, 0.003, 0.005, 10.0, 6.0)[0] == 2  # quiet machine: all cores
    assert choose_threads(2, 0.01, 0.035, 10.0, 6.0)[0] == 1  # over 3% and over twice 1 thread
    assert choose_threads(2, 0.02, 0.035, 10.0, 6.0)[0] == 2  # over 3%, but the machine's noise: 1 thread meets it too
    assert choose_threads(2, 0.003, 0.004, 10.0, 11.0)[0] == 1  # all cores no faster: not really free
    assert choose_threads(1, 0.0, 0.0, 1.0, 1.0) == (1, "one core")
    # a quiet machine (seen: 0.4% at 1 thread, 1.3% at 2 in one half of the probe, 2 threads 1.8x faster):
    # both spreads far under 3%, so the faster choice is kept, not flipped by their ratio
    assert choose_threads(2, 0.004, 0.013, 1.83, 1.01)[0] == 2
    # a noisier hour on the same machine (seen: 2.2% at 1 thread, 3.1% at 2): still the machine's noise
    assert choose_threads(2, 0.022, 0.031, 1.83, 0.99)[0] == 2


def test_all_cores_are_kept_only_when_both_halves_of_the_probe_agree():
    one = [10.0 * (1 + 0.004 * ((i % 3) - 1)) for i in range(24)]  # 1 thread: 0.4% wiggle
    quiet = [6.0 * (1 + 0.004 * ((i % 3) - 1)) for i in range(24)]  # all cores: as quiet, and faster
    assert decide_threads(2, one, quiet)[0] == 2
    # the same, but the machine got noisy during the second half: +-8% there
    noisy_end = quiet[:12] + [6.0 * (1 + 0.08 * ((i % 3) - 1)) for i in range(12)]
    assert spread(noisy_end) < 0.01  # the whole probe's robust spread still passes
    chosen, rule = decide_threads(2, one, noisy_end)
    assert chosen == 1 and "second half" in rule and "first half" not in rule


# -- the timed call is the checked call -------------------------------------------------------------
def _sweep_with(runner_cls, tmp_path, runtimes=("fake",)):
    return sweep_in_process(tmp_path, runtimes, 8, make_runner=lambda name: runner_cls())


class _EagerFake:
    """A real eager runner registered under a fake name (computes the right outputs)."""

    def __new__(cls):
        from fsrt.bench.runners import EagerRunner

        class Honest(EagerRunner):
            name = "fake"

        return Honest()


def _wrong_call_runner():
    from fsrt.bench.runners import EagerRunner

    class WrongCall(EagerRunner):
        """``infer`` (unused by fsrt) is right; the timed call skips the classifier bias."""

        name = "fake"

        def infer(self, x):
            return self._forward(self._to_device(x)).double().numpy()

        def bind(self, x):
            xt = self._to_device(x)
            bias = self.model.head.fc.bias

            def run():
                self._out = self._forward(xt) - bias.detach() - 0.1

            return run

    return WrongCall()


def test_parity_checks_the_outputs_of_the_timed_call(tmp_path):
    honest = _sweep_with(_EagerFake, tmp_path / "a")
    assert [p.status for p in honest] == [Status.OK] or honest[0].status == Status.UNSTABLE
    assert honest[0].parity_max_rel < 1e-4 and honest[0].latency_ms > 0
    (wrong,) = _sweep_with(_wrong_call_runner, tmp_path / "b")
    assert wrong.status == Status.PARITY_FAILED and wrong.parity_max_rel > 1e-3 and wrong.latency_ms is None


# -- worker processes: real runtimes, real memory ---------------------------------------------------
def test_workers_measure_each_runtime_in_its_own_process_with_meaningful_memory(tmp_path):
    res = run_fsrt("bench", "RegNetX-200MF", "--resolution", "32", "--strategy", "w", "--sweep", "s=1",
                   "--precision", "fp32", "--runtimes", "eager,ort,openvino", "--threads", "1", "--measure-s", "0.02",
                   "--warmup-s", "0.02",
                   "--max-rounds", "7", "--no-report", "--out", str(tmp_path / "r"), "--db", str(tmp_path / "f.db"),
                   "--json")
    assert res.code == 0, res.err
    pts = {p["runtime"]: p for p in res.json()["points"]}
    weights = 2_684_792 * 4  # RegNetX-200MF params in fp32
    for rt in ("eager", "ort", "openvino"):
        assert pts[rt]["mem_kind"].startswith("peak resident memory growth")
        assert pts[rt]["peak_mem_bytes"] >= weights, (rt, pts[rt]["peak_mem_bytes"])  # weights are resident
        assert pts[rt]["peak_mem_bytes"] < 40 * weights  # and not the whole interpreter
    logs = tmp_path / "r" / "work" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["eager.log", "openvino.log", "ort.log"]  # a process each
    # each worker carried its own runtime and nothing else: torch beside OpenVINO changed its speed
    loaded = {rt: (logs / f"{rt}.log").read_text().strip().splitlines()[-1] for rt in ("eager", "ort", "openvino")}
    assert "torch" in loaded["eager"], loaded
    assert loaded["ort"].endswith("libraries loaded in it: onnxruntime"), loaded
    assert loaded["openvino"].endswith("libraries loaded in it: openvino"), loaded


# -- the machine-wide measurement lock --------------------------------------------------------------
def test_a_second_measurement_waits_for_the_lock_holder(tmp_path):
    from fsrt.bench.lock import measurement_lock

    lock = tmp_path / "measure.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from fsrt.bench.lock import measurement_lock
        with measurement_lock():
            print("held", flush=True)
            time.sleep(1.5)
    """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "FSRT_MEASURE_LOCK": str(lock)})
    assert holder.stdout.readline().strip() == "held"
    told = []
    os.environ["FSRT_MEASURE_LOCK"], old = str(lock), os.environ.get("FSRT_MEASURE_LOCK")
    try:
        t0 = time.monotonic()
        with measurement_lock(on_wait=told.append, poll_s=0.05):
            waited = time.monotonic() - t0
        assert told == [f"PID {holder.pid}"] and waited > 0.5
        holder.wait()
        from fsrt.errors import FsrtError

        holder = subprocess.Popen([sys.executable, "-c", "from fsrt.bench.lock import measurement_lock\n"
                                   "import time\nwith measurement_lock():\n    print('held', flush=True)\n"
                                   "    time.sleep(3)"], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ})
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FsrtError, match="another fsrt measurement"), measurement_lock(timeout_s=0.2, poll_s=0.05):
            pass
    finally:
        holder.kill()
        holder.wait()
        if old is None:
            os.environ.pop("FSRT_MEASURE_LOCK")
        else:
            os.environ["FSRT_MEASURE_LOCK"] = old


# -- the store evolves ------------------------------------------------------------------------------
def test_schema_1_database_migrates_and_keeps_its_points(tmp_path):
    import sqlite3

    from fsrt.bench.store import SCHEMA_VERSION, Store

    db = tmp_path / "old.db"
    shutil.copy(FIXTURE_V1, db)
    con = sqlite3.connect(db)
    old = {r[0]: r for r in con.execute("SELECT key, median_ms, status, reason, strategy FROM points")}
    runs = con.execute("SELECT id, name FROM runs").fetchall()
    con.close()
    assert len(old) == 8 and SCHEMA_VERSION == 2
    with Store(db) as st:
        assert [(r["id"], r["name"]) for r in st.runs()] == runs
        pts = st.run_points(runs[0][0])
        assert len(pts) == 8
        for p in pts:
            key, median_ms, status, reason, strategy = old[p.key]
            assert p.latency_ms == median_ms and p.status == status  # the old figure stays the figure
            assert p.statistic == "median of one timing window (schema 1)" and p.latency_lo_ms is None
            assert p.note == reason and p.reason is None  # schema 1 kept precision notes in 'reason'
            assert p.mode == "infer"
            assert (p.e_d, p.e_w, p.e_r) == {"w": (0.0, 1.0, 0.0), "dwr": (1 / 3, 1 / 3, 1 / 3)}[strategy]
        # the migrated store takes new points and windows
        st.put_windows("m", "k", [Window(1, (1.0, 2.0), 5.0)])
        assert st.windows("m", ["k"])["k"][0].times_ms == (1.0, 2.0)
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    con.close()
    # a report of the old run renders
    from fsrt.bench.report import write_report

    with Store(db) as st:
        written = write_report(st, [runs[0][0]], tmp_path / "rep")
    assert "median of one timing window (schema 1)" in written["markdown"].read_text()


# -- report hygiene ---------------------------------------------------------------------------------
def test_a_measurement_listed_under_several_strategies_is_one_row(tmp_path):
    from fsrt.bench.report import write_report
    from fsrt.bench.store import Store

    with Store(tmp_path / "f.db") as st:
        st.add_machine("m", {})
        run = st.start_run("r", "m", {})
        for i, strategy in enumerate(("w", "dwr", "dWr")):  # the unscaled base model, one measurement
            st.put_point(run, "m", f"k{i}", Point(model="Base", base="Base", strategy=strategy, s=1.0,
                                                  runtime="eager", precision="fp32", batch=1, status="unstable",
                                                  mkey="same", latency_ms=3.0, latency_lo_ms=2.0,
                                                  latency_hi_ms=4.0, flops=1, params=1, acts=1))
        md = write_report(st, [run], tmp_path / "o")["markdown"].read_text()
    unstable = md.split("## Unstable points", 1)[1]
    assert unstable.count("| Base |") == 1
    assert "1 point(s) stayed unstable" in md


def test_the_console_table_lists_the_base_model_once_with_every_strategy_it_serves(monkeypatch, capsys):
    from fsrt.commands import bench

    monkeypatch.setenv("COLUMNS", "200")
    base = dict(base="Base", s=1.0, precision="fp32", batch=1, status="ok", mkey="same", latency_ms=3.0,
                latency_lo_ms=2.9, latency_hi_ms=3.1, flops=10**9, acts=10**6)
    points = [Point(model="Base", strategy=st, runtime=rt, **base) for st in ("w", "dwr") for rt in ("eager", "ort")]
    points += [Point(model=f"Base@{st}:s=2", strategy=st, runtime=rt, **{**base, "s": 2.0, "mkey": st + rt})
               for st in ("w", "dwr") for rt in ("eager", "ort")]
    bench._print_table(points)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "Base" in ln]
    assert len(lines) == 3  # Base once, and each scaled network
    assert "w, dwr" in lines[0] and lines[0].count("3.00") == 2


# -- bad timing input -------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, fragment", [
    (["--rounds", "0"], "--rounds must be at least 6"),
    (["--rounds", "5"], "--rounds must be at least 6"),
    (["--max-rounds", "3"], "--max-rounds"),
    (["--target-ci", "-0.1"], "--target-ci must be a positive number"),
    (["--target-ci", "1"], "--target-ci must be a positive number and below 1"),
    (["--target-ci", "nan"], "--target-ci"),
    (["--budget-s", "-5"], "--budget-s"),
    (["--measure-s", "inf"], "--measure-s"),
    (["--threads", "many"], "--threads must be auto or a positive integer"),
])
def test_bad_timing_input(tmp_path, extra, fragment):
    res = run_fsrt("bench", *extra, "--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, fragment)
    assert not (tmp_path / "x.db").exists()


def test_no_fastest_strategy_where_every_strategy_is_the_same_network():
    """Half precisions are measured at the smallest s only, where all strategies are the base model:
    naming a 'fastest strategy' there would compare a network with itself."""
    from fsrt.bench import analysis

    def pt(strategy, s, mkey, ms):
        return Point(model=f"B@{strategy}:s={s:g}" if s > 1 else "B", base="B", strategy=strategy, alpha=None, s=s,
                     runtime="eager", mode="infer", precision="bf16", batch=1, status="ok", mkey=mkey,
                     latency_ms=ms, latency_lo_ms=ms * 0.99, latency_hi_ms=ms * 1.01)

    only_base = [pt("w", 1.0, "base", 5.0), pt("dwr", 1.0, "base", 5.0)]
    labels = analysis.series_labels(only_base)
    assert analysis.fastest_strategy(only_base, labels, labels[analysis.series_key(only_base[0])]) == []
    # with a scaled member each, the comparison is made at the largest s where the networks differ
    grown = only_base + [pt("w", 2.0, "w2", 7.0), pt("dwr", 2.0, "dwr2", 9.0)]
    labels = analysis.series_labels(grown)
    (row,) = analysis.fastest_strategy(grown, labels, labels[analysis.series_key(grown[0])])
    assert (row["s"], row["fastest"].split()[0], row["next"].split()[0]) == (2.0, "w", "dwr")


def test_fastest_runtime_is_measured_against_eager_fp32_not_a_half_precision_eager():
    """With eager bf16 beside eager fp32 (precision auto), 'faster than eager' means fp32 eager."""
    from fsrt.bench import analysis

    def pt(runtime, precision, model, ms):
        return Point(model=model, base="B", strategy="w", s=1.0 if model == "B" else 2.0, runtime=runtime,
                     mode="infer", precision=precision, batch=1, status="ok", mkey=f"{runtime}-{precision}-{model}",
                     latency_ms=ms, latency_lo_ms=ms * 0.99, latency_hi_ms=ms * 1.01)

    pts = [pt("eager", "bf16", "B", 40.0), pt("eager", "fp32", "B", 20.0), pt("openvino", "fp32", "B", 10.0),
           pt("eager", "fp32", "B2", 30.0), pt("openvino", "fp32", "B2", 15.0)]
    labels = analysis.series_labels(pts)
    fast = analysis.fastest_runtime(analysis.ranking(pts, labels))
    assert fast["series"] == "openvino fp32" and fast["reference"] == "eager fp32"
    assert fast["speedup_vs_reference"] == pytest.approx(2.0)  # 20/10 and 30/15, geometric mean


# -- the machine's thread decision, kept for every database on it -----------------------------------
QUICK_BENCH = ("bench", "RegNetX-200MF", "--resolution", "32", "--strategy", "w", "--sweep", "s=1", "--runtimes",
               "eager", "--precision", "fp32", "--measure-s", "0.02", "--warmup-s", "0.05", "--max-rounds", "7",
               "--no-report", "--json")


def _threads_setting(db: Path) -> tuple[str, dict]:
    from fsrt.bench.noise import THREADS_SETTING
    from fsrt.bench.store import Store

    with Store(db) as st:
        (mid,) = list(st.machines())
        value = st.setting(mid, THREADS_SETTING)
    value.pop("measured")
    return mid, value


def test_a_second_database_on_the_machine_starts_from_its_thread_probe(tmp_path):
    first = run_fsrt(*QUICK_BENCH, "--db", str(tmp_path / "a.db"), "--out", str(tmp_path / "a"))
    assert first.code == 0, first.err
    mid, probed = _threads_setting(tmp_path / "a.db")
    kept = json.loads((Path(os.environ["FSRT_CACHE_DIR"]) / "machines" / f"{mid}.json").read_text())
    assert kept["threads"] == probed
    second = run_fsrt(*QUICK_BENCH, "--db", str(tmp_path / "b.db"), "--out", str(tmp_path / "b"))
    assert second.code == 0, second.err
    # a second probe would time its own windows: the spreads and medians would not repeat to the last digit
    assert _threads_setting(tmp_path / "b.db") == (mid, probed)
    assert json.loads(second.out)["threads"] == json.loads(first.out)["threads"] == probed["chosen"]


def test_machine_settings_leave_a_foreign_file_alone_and_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    from fsrt.bench import machine_settings

    monkeypatch.setenv("FSRT_CACHE_DIR", str(tmp_path / "cache"))
    assert machine_settings.save("m1", "threads", {"chosen": 2}) and machine_settings.load("m1", "threads") == {
        "chosen": 2}
    assert machine_settings.save("m1", "other", {"x": 1}) and machine_settings.load("m1", "threads") == {"chosen": 2}
    path = machine_settings.settings_path("m2")
    path.write_text("not json")
    assert machine_settings.load("m2", "threads") is None
    assert not machine_settings.save("m2", "threads", {"chosen": 1}) and path.read_text() == "not json"
    monkeypatch.setenv("FSRT_CACHE_DIR", str(path / "under-a-file"))  # not a folder: nothing can be written
    assert machine_settings.load("m3", "threads") is None and not machine_settings.save("m3", "threads", {"c": 1})
