"""The machine's movement between runs: measured from the runs kept for it, checked against the
levels the tests put in (numpy), by simulation, and end to end through two ``fsrt bench`` runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_fsrt
from fsrt.bench import analysis
from fsrt.bench import machine_history as mh
from fsrt.bench.points import Point, Status
from fsrt.bench.uncertainty import geomean_ratio, independent_ratio, with_movement

BASE_MS = [float(x) for x in np.geomspace(1.0, 40.0, 25)]  # 25 measurements, like the default sweep


def _record(name: str, level_log: float, at: float, noise=None, half_width: float = 0.0) -> dict:
    """A run that measured every base figure at the machine level exp(level_log), moved by ``noise``
    point by point, each measured apart, with within-run intervals of log half-width ``half_width``."""
    noise = np.zeros(len(BASE_MS)) if noise is None else noise
    return {"run": name, "at": at, "figures": {f"m{i}": [b * math.exp(level_log + e), at + i, half_width]
                                               for i, (b, e) in enumerate(zip(BASE_MS, noise))}}


def test_level_sd_is_the_sample_sd_of_the_runs_levels_and_factors_their_differences():
    levels = np.random.default_rng(3).normal(0.0, 0.05, 9)
    est = mh.estimate([_record(f"r{i}", lv, 1000.0 * i) for i, lv in enumerate(levels)])
    # sum over pairs of (Li - Lj)^2 is n * sum (Li - mean)^2: half the mean over pairs is the ddof=1 variance
    assert est.level_sd == pytest.approx(float(np.std(levels, ddof=1)), rel=1e-9)
    assert est.runs == 9 and est.pairs == 36 and est.since == 0.0
    assert est.factors == pytest.approx(list(np.exp(levels[-1] - levels[:-1])), rel=1e-9)
    assert est.point_sd == pytest.approx(0.0, abs=1e-7)  # every point moved with its run
    assert est.reproduce_rel == pytest.approx(math.exp(1.959964 * math.sqrt(2) * np.std(levels, ddof=1)) - 1, rel=1e-5)


def test_level_sd_recovers_the_machine_movement_through_point_noise():
    rng = np.random.default_rng(7)
    true_sd, found = 0.04, []
    for _ in range(40):
        levels = rng.normal(0.0, true_sd, 12)
        recs = [_record(f"r{i}", lv, 100.0 * i, rng.normal(0.0, 0.01, len(BASE_MS))) for i, lv in enumerate(levels)]
        found.append(mh.estimate(recs).level_sd)
    assert np.median(found) == pytest.approx(true_sd, rel=0.1)


def test_point_sd_is_what_moved_around_the_common_factor_beyond_the_within_run_error():
    rng = np.random.default_rng(5)
    moves = [rng.normal(0.0, 0.03, len(BASE_MS)) for _ in range(2)]
    est = mh.estimate([_record("a", 0.01, 0.0, moves[0]), _record("b", -0.02, 50.0, moves[1])])
    d = moves[1] - moves[0]  # the second run's log ratios over the first's, apart from the common factor
    assert est.point_sd == pytest.approx(math.sqrt(np.var(d, ddof=1) / 2), rel=1e-9)
    # by simulation: points moving by 2% per run, measured with correct +-2% intervals (sd 1.02%)
    found = []
    for _ in range(60):
        recs = [_record(f"r{i}", rng.normal(0, 0.04), 100.0 * i,
                        rng.normal(0, 0.02, len(BASE_MS)) + rng.normal(0, 0.02 / 1.959964, len(BASE_MS)), 0.02)
                for i in range(6)]
        found.append(mh.estimate(recs).point_sd)
    assert np.median(found) == pytest.approx(0.02, rel=0.1)


def test_a_later_runs_figures_fall_within_the_stated_band_about_95_percent_of_the_time():
    rng = np.random.default_rng(9)
    inside = total = 0
    for _ in range(150):
        recs = [_record(f"r{i}", rng.normal(0, 0.03), 100.0 * i, rng.normal(0, 0.02, len(BASE_MS))) for i in range(9)]
        est = mh.estimate(recs[:-1])  # what the eighth run states
        now, later = recs[-2]["figures"], recs[-1]["figures"]
        ratios = np.array([later[k][0] / now[k][0] for k in now])
        inside += int(np.sum(np.abs(np.log(ratios)) <= math.log1p(est.reproduce_rel)))
        total += len(ratios)
    assert 0.91 <= inside / total <= 0.99


def test_only_measurements_taken_apart_and_enough_of_them_make_a_pair():
    a = _record("a", 0.0, 0.0)
    reused = {"run": "b", "at": 5.0, "figures": dict(a["figures"])}  # the same measurements, read again
    assert mh.estimate([a, reused]) is None
    two = {"run": "c", "at": 9.0, "figures": {k: [v[0] * 1.1, 99.0, 0.0] for k, v in list(a["figures"].items())[:2]}}
    assert mh.estimate([a, two]) is None  # below MIN_SHARED
    three = {"run": "c", "at": 9.0, "figures": {k: [v[0] * 1.1, 99.0, 0.0] for k, v in list(a["figures"].items())[:3]}}
    assert mh.estimate([a, three]).factors == pytest.approx([1.1])


def _points(factor: float, created: float) -> list[Point]:
    return [Point(mkey=f"m{i}", latency_ms=b * factor, status=Status.OK, created=created + i)
            for i, b in enumerate(BASE_MS)] + [Point(mkey="failed", status=Status.ERROR, created=created)]


def test_record_run_keeps_each_run_once_and_at_most_keep_runs():
    assert mh.record_run("m", "db#1", _points(1.0, 0.0), now=1.0) is None  # the first run: nothing to compare
    second = mh.record_run("m", "db#2", _points(1.05, 100.0), now=2.0)
    assert second.pairs == 1 and second.factors == pytest.approx([1.05])
    assert second.level_sd == pytest.approx(math.log(1.05) / math.sqrt(2))
    resumed = mh.record_run("m", "db#2", _points(0.9, 200.0), now=3.0)  # re-measured: replaces its record
    assert resumed.pairs == 1 and resumed.factors == pytest.approx([0.9])
    for k in range(3, 3 + mh.KEEP_RUNS + 2):
        mh.record_run("m", f"db#{k}", _points(1.0 + k / 100, 100.0 * k), now=float(k))
    from fsrt.bench import machine_settings

    kept = machine_settings.load("m", mh.HISTORY)["runs"]
    assert len(kept) == mh.KEEP_RUNS and kept[-1]["run"] == f"db#{2 + mh.KEEP_RUNS + 2}"
    assert "failed" not in kept[-1]["figures"]


def test_a_foreign_history_file_is_left_alone(tmp_path):
    from fsrt.bench import machine_settings

    path = machine_settings.settings_path("m")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not json")
    assert mh.record_run("m", "db#1", _points(1.0, 0.0)) is None
    assert mh.record_run("m", "db#2", _points(1.1, 50.0)) is None  # nothing could be kept
    assert path.read_text() == "not json"


def test_machine_movement_widens_a_run_vs_run_interval_to_cover_it():
    """Two runs of the same points on a machine whose level moves (sd 4%) and points whose own
    intervals are correct 95% intervals of +-1%: nothing measured changed, so a correct interval of
    the run-vs-run ratio contains 1 about 95% of the time; the within-run intervals alone do not."""
    rng = np.random.default_rng(11)
    sd, h = 0.04, 0.01
    covered_with, covered_without = 0, 0
    trials = 400
    for _ in range(trials):
        runs = []
        for _run in range(2):
            level = rng.normal(0.0, sd)
            runs.append([Point(latency_ms=b * math.exp(level + rng.normal(0, h / 1.96)), status=Status.OK,
                               latency_lo_ms=b * math.exp(level - h), latency_hi_ms=b * math.exp(level + h))
                         for b in BASE_MS])
        g = geomean_ratio([independent_ratio(b, a) for a, b in zip(*runs)], shared_errors=True)
        covered_without += not g.excludes(1.0)
        covered_with += not with_movement(g, sd).excludes(1.0)
    assert covered_with / trials >= 0.93
    assert covered_without / trials < 0.5


def test_a_lead_that_only_this_run_shows_is_not_resolved_once_the_machine_movement_is_known():
    """Two runtimes equally fast on the machine, each run's figures moved point by point by 3% and
    measured with correct +-0.5% intervals: the within-run intervals call a winner almost every time
    (true of the run's minutes, not of the machine); with the movement the ranking claims one in
    about 5% of runs at most."""
    rng = np.random.default_rng(2)
    claims_without = claims_with = 0
    trials = 300
    for _ in range(trials):
        pts = [Point(model="M", runtime=rt, mode="infer", precision="fp32", batch=1, mkey=rt, status=Status.OK,
                     latency_ms=5.0 * math.exp(move), latency_lo_ms=5.0 * math.exp(move - 0.005),
                     latency_hi_ms=5.0 * math.exp(move + 0.005))
               for rt, move in zip(("ort", "openvino"), rng.normal(0, 0.03, 2))]
        labels = analysis.series_labels(pts)
        claims_without += analysis.ranking(pts, labels)[0]["resolved"]
        claims_with += analysis.ranking(pts, labels, movement=0.03)[0]["resolved"]
    assert claims_without / trials > 0.8
    assert claims_with / trials <= 0.07


THREE_NETWORKS = ("bench", "RegNetX-200MF", "--resolution", "32", "--strategy", "w", "--sweep", "s=1,2,4",
                  "--runtimes", "eager", "--precision", "fp32", "--measure-s", "0.02", "--warmup-s", "0.05",
                  "--max-rounds", "7", "--json")


def _figures(doc: dict) -> dict:
    return {(p["model"], p["s"]): p["latency_ms"] for p in doc["points"] if p["status"] in ("ok", "unstable")}


def test_two_runs_into_two_databases_measure_the_machine_movement(tmp_path):
    first = run_fsrt(*THREE_NETWORKS, "--db", str(tmp_path / "a.db"), "--out", str(tmp_path / "a"))
    assert first.code == 0, first.err
    doc_a = json.loads(first.out)
    assert doc_a["between_runs"] is None
    assert "not measured yet" in (tmp_path / "a" / "report" / "report.md").read_text()
    second = run_fsrt(*THREE_NETWORKS, "--db", str(tmp_path / "b.db"), "--out", str(tmp_path / "b"))
    assert second.code == 0, second.err
    doc_b = json.loads(second.out)
    fig_a, fig_b = _figures(doc_a), _figures(doc_b)
    assert len(fig_a) == len(fig_b) == 3
    expect = math.exp(np.mean([math.log(fig_b[k] / fig_a[k]) for k in fig_a]))
    between = doc_b["between_runs"]
    assert between["pairs"] == 1 and between["factors"] == pytest.approx([expect])
    assert between["level_sd"] == pytest.approx(abs(math.log(expect)) / math.sqrt(2))
    report = (tmp_path / "b" / "report" / "report.md").read_text()
    assert "Between runs, this machine's speed moved" in report and f"{expect:.3f}" in report
    kept = json.loads((Path(os.environ["FSRT_CACHE_DIR"]) / "machines" / f"{doc_b['machine_id']}.json").read_text())
    assert [r["run"] for r in kept[mh.HISTORY]["runs"]] == [f"{(tmp_path / 'a.db').resolve()}#1",
                                                           f"{(tmp_path / 'b.db').resolve()}#1"]


def test_the_best_predictors_lead_includes_the_machine_movement():
    """Latency follows acts, and flops only partly: the within-run bootstrap resolves acts as the
    best predictor; once each resample's figures may move by the machine's 30% per point, a lead
    that a later run could lose is not resolved, and r's interval only widens."""
    rng = np.random.default_rng(4)
    acts = rng.uniform(1e6, 1e7, 12)
    flops = acts * rng.uniform(0.6, 1.6, 12)
    pts = [Point(model=f"M{i}", runtime="ort", mode="infer", precision="fp32", batch=1, mkey=f"k{i}",
                 status=Status.OK, latency_ms=float(a) / 1e6, flops=int(f), acts=int(a), params=int(1e6 + i))
           for i, (a, f) in enumerate(zip(acts, flops))]
    labels = analysis.series_labels(pts)
    rows0, best0 = analysis.correlations(pts, labels)
    rows1, best1 = analysis.correlations(pts, labels, movement=0.3)
    assert best0["ort"]["metric"] == "acts" and best0["ort"]["resolved"]
    assert not best1["ort"]["resolved"]
    r0 = next(r for r in rows0 if r["metric"] == "acts")
    r1 = next(r for r in rows1 if r["metric"] == "acts")
    assert r1["pearson_r"] == r0["pearson_r"] and r1["pearson_r_lo"] < r0["pearson_r_lo"]


def test_two_runs_side_by_side_on_one_machine_read_a_common_factor_against_its_movement():
    """Every point 5% slower in the second run, each with +-1%: without the machine's movement the
    report calls the second run slower; on a machine measured to move 4% per run it is not resolved."""
    first = [Point(model=f"M{i}", runtime="ort", precision="fp32", batch=1, status=Status.OK, latency_ms=b,
                   latency_lo_ms=b * 0.99, latency_hi_ms=b * 1.01) for i, b in enumerate(BASE_MS)]
    second = [p.replace(latency_ms=p.latency_ms * 1.05, latency_lo_ms=p.latency_lo_ms * 1.05,
                        latency_hi_ms=p.latency_hi_ms * 1.05) for p in first]
    plain = analysis.compare([("a", first), ("b", second)], same_machine=True)
    moved = analysis.compare([("a", first), ("b", second)], same_machine=True, level_sd=0.04)
    assert plain["summary"][0].startswith("b is 1.05x slower than a")
    assert moved["summary"][0].startswith("b and a: not resolved, ratio 1.050")
    assert "measured standard deviation of 4.0% per run" in moved["summary"][0]
    lo, hi = moved["per_runtime"][0]["geomean_ci"][1]["lo"], moved["per_runtime"][0]["geomean_ci"][1]["hi"]
    assert lo < 1.0 < hi
