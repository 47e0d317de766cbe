"""Smoke tests of the measurement benchmark scripts in dev/ (they run; their figures go in notes)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEV = Path(__file__).resolve().parents[1] / "dev"


def _run(script: str, *args: str, tmpdir: Path | None = None) -> dict:
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else None
    proc = subprocess.run([sys.executable, str(DEV / script), *args], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_repeatability_script_runs_twice_resumes_and_compares(tmp_path):
    doc = _run("bench_repeatability.py", "--quick", "--json", tmpdir=tmp_path)
    assert not list(tmp_path.glob("fsrt-*"))
    assert doc["resumed"] is True  # the rerun reused every stored point
    assert len(doc["points"]) == 3  # base (once), w s=2, dwr s=2 on eager
    assert all(math.isfinite(p["ratio"]) and p["ratio"] > 0 for p in doc["points"])
    assert sum(doc["verdict_counts"].values()) == len(doc["conclusions"]) > 0
    assert set(doc["verdict_counts"]) <= {"identical", "unresolved in both", "one-sided", "one-sided, other leader",
                                          "contradictory"}
    # recomputed from the stored windows, fsrt's own statistic gives back the stored figures' agreement
    ours = doc["statistics"]["interquartile mean of all calls (fsrt)"]
    assert ours["points"] == len(doc["points"])
    assert ours["mean_abs_log_ratio"] == pytest.approx(doc["mean_abs_log_ratio"], rel=1e-9)
    assert ours["worst_abs_log_ratio"] == pytest.approx(doc["worst_abs_log_ratio"], rel=1e-9)
    # the report's run-vs-run claim is about the geometric mean of the same per-point ratios
    geo = math.exp(sum(math.log(p["ratio"]) for p in doc["points"]) / len(doc["points"]))
    claim = doc["run_vs_run"]["claim"]
    assert claim.startswith("second") and (f"ratio {geo:.3f}" in claim or f"{max(geo, 1 / geo):.2f}x" in claim)


def test_common_shift_separates_the_machines_speed_from_the_runs_structure():
    sys.path.insert(0, str(DEV))
    try:
        from bench_repeatability import common_shift
    finally:
        sys.path.remove(str(DEV))
    # every point 5% slower in the second run, two of them also off by 2% and 4% on their own
    rows = [{"ratio": r} for r in (1.05, 1.05 * 1.02, 1.05 / 1.04, 1.05)]
    got = common_shift(rows)
    assert got["common_shift"] == pytest.approx(1.05)
    assert got["mean_abs_log_residual"] == pytest.approx((math.log(1.02) + math.log(1.04)) / 4)
    assert got["worst_abs_log_residual"] == pytest.approx(math.log(1.04))
    assert got["points_slower_in_second"] == 4


def test_fidelity_script_compares_with_the_runtimes_own_tools():
    doc = _run("bench_fidelity.py", "--quick", "--json")
    (rep,) = doc["reps"]
    assert {"fsrt_openvino", "fsrt_openvino_median", "benchmark_app", "fsrt_ort", "fsrt_ort_median", "ort_loop",
            "ort_loop_median", "ov_loop", "ov_loop_median"} <= set(rep)
    assert all(v > 0 for k, v in rep.items() if not k.endswith("_runs"))
    # the sandwich: the geometric mean of the runs around fsrt's
    for tool in ("benchmark_app", "benchmark_app_async", "ort_loop", "ov_loop"):
        before, after = rep[tool + "_runs"]
        assert rep[tool] == pytest.approx(math.sqrt(before * after))
    assert set(doc["summary"]) == {"openvino (median)", "ort (interquartile mean)", "ort (median)",
                                   "openvino vs a bare loop (interquartile mean)",
                                   "bare openvino loop vs benchmark_app (median)",
                                   "openvino vs benchmark_app's default async API (median)"}


def test_paired_fidelity_script_alternates_fsrt_workers_with_bare_processes():
    doc = _run("fidelity_paired.py", "--quick", "--json")
    assert len(doc["runs"]) == 2
    for rt in ("ort", "openvino"):
        both = "fsrt / bare (geometric mean of before and after)"
        for run in doc["runs"]:
            res = run[rt]
            assert res["rounds"] == 3 and all(ms > 0 for ms in res["ms"].values())
            # fsrt's worker timed the same graph as the bare processes (not, say, the tiny primer)
            assert 0.5 < res[both]["pooled_ratio"] < 2
            before, after = (res[f"fsrt / bare started {w} fsrt"]["pooled_ratio"] for w in ("before", "after"))
            assert res[both]["pooled_ratio"] == pytest.approx(math.sqrt(before * after))
        pooled = [run[rt][both]["pooled_ratio"] for run in doc["runs"]]
        summary = doc["summary"][rt][both]
        assert summary["ratio"] == pytest.approx(math.sqrt(pooled[0] * pooled[1]))
        assert summary["ci95"][0] < summary["ratio"] < summary["ci95"][1]


@pytest.mark.parametrize(("b", "cond", "statistic"), [("window=0.1,gap=0.05", {"window": 0.1, "gap": 0.05}, "iqm"),
                                                      ("app=1", {"app": 1.0}, "median")])
def test_loop_ab_script_compares_two_loop_conditions(b, cond, statistic):
    doc = _run("loop_ab.py", "--quick", "--json", "--b", b)
    (row,) = doc["pairs"]
    assert row["A"] > 0 and row["B"] > 0
    assert doc["conditions"]["B"] == {"warmup": 1.0, **cond}
    assert doc["statistic"] == statistic  # benchmark_app prints a median: both sides use it then
    assert doc["median_ratio_b_over_a"] == pytest.approx(row["B"] / row["A"])


def test_benchmark_app_median_is_read_in_either_unit():
    """benchmark_app switches to microseconds for fast graphs (seen in CI: '74.00 us')."""
    sys.path.insert(0, str(DEV))
    try:
        from bench_fidelity import median_latency_ms
    finally:
        sys.path.remove(str(DEV))
    report = "[ INFO ] Latency:\n[ INFO ]    Median:     {}\n[ INFO ]    Average:    9.99 ms\n"
    assert median_latency_ms(report.format("74.00 us")) == 0.074
    assert median_latency_ms(report.format("5.66 ms")) == 5.66


def test_precision_speed_script_gives_speedup_beside_accuracy():
    doc = _run("precision_speed.py", "--quick", "--json")
    (row,) = doc["rows"]  # eager bf16 against eager fp32 (asked by name: runs emulated where bf16 is)
    assert row["precision"] == "bf16" and row["runtime"] == "eager" and row["fp32_ms"] > 0
    assert row["speedup"]["value"] == pytest.approx(row["fp32_ms"] / row["latency_ms"], rel=0.5)
    assert 0 < row["rel_l2"] and 0 < row["expected"]


def test_precision_check_script_catches_its_broken_runtimes():
    doc = _run("precision_check.py", "--quick", "--json")
    honest = [r for r in doc["rows"] if r["kind"] == "honest"]
    assert honest and all(r["passed"] for r in honest)
    caught = [r for r in doc["rows"] if r["kind"] in ("kernel transposed (middle)", "padding shifted (middle)")
              or r["kind"].startswith("computes")]
    assert len(caught) == 9 and not any(r["passed"] for r in caught)


def test_train_step_latency_script_puts_training_next_to_inference(tmp_path):
    doc = _run("train_step_latency.py", "--quick", "--json", tmpdir=tmp_path)
    assert not list(tmp_path.glob("fsrt-*"))  # its temporary run folder (hundreds of MB) is gone
    assert set(doc["statuses"]) <= {"ok", "unstable"}  # every point passed its parity check and was measured
    assert [r["metric"] for r in doc["table"]] == ["flops", "params", "acts"]
    for r in doc["table"]:
        assert r["n"] == 3
        assert all(r[key][0] is not None for key in ("infer_k", "train_k"))
        assert all(-1 <= r[key][0] <= 1 for key in ("infer_r", "train_r", "forward_r", "backward_r"))
    assert len(doc["split"]) == 3 and all(s["forward_ms"] > 0 and s["backward_ms"] > 0 for s in doc["split"])
    assert doc["command"][:4] == ["fsrt", "bench", "--mode", "both"] and doc["load_avg_1m"]["start"] >= 0


def test_latency_model_script_fits_on_small_members_and_reports_held_out_errors(tmp_path):
    doc = _run("latency_model.py", "--quick", "--json", tmpdir=tmp_path)
    assert not list(tmp_path.glob("fsrt-*"))  # its temporary database and graphs are gone
    (rt,) = doc["runtimes"]
    assert rt["series"] == "eager" and rt["model"]["n"] == 10  # base + 3 strategies x s=2,4,8
    held = {h["scenario"]: h for h in rt["held_out"]}
    assert held["extrapolate"]["description"] == "fit on s <= 4, predict s = 8"
    assert held["extrapolate"]["n"] == 3 and held["leave-one-out"]["n"] == 10
    for h in held.values():
        assert all(p["measured_ms"] > 0 and p["predicted_ms"] > 0 for p in h["predictions"])
        assert 0 <= h["median_abs_error"] <= h["p90_abs_error"]
    assert len(doc["load"]["before"]) == 3 and doc["noise"]["windows"] > 0


def test_latency_model_form_extrapolates_a_simulated_per_layer_machine():
    # No measurement: each layer of each network costs max(compute at a shape-dependent rate, bytes moved)
    # plus a dispatch cost. The whole-network model, fitted on s <= 4, must carry that to s = 32.
    doc = _run("latency_model.py", "--simulate", "--bases", "RegNetY-400MF,EfficientNet-B0", "--json")
    assert [r["series"] for r in doc["runtimes"]] == ["simulated (effnet)", "simulated (regnety)"]
    for r in doc["runtimes"]:
        ext = next(h for h in r["held_out"] if h["scenario"] == "extrapolate")
        assert ext["n"] == 9 and ext["median_abs_error"] < 0.05 and ext["p90_abs_error"] < 0.08, r["series"]


def test_machine_drift_script_relates_each_models_drift_to_each_reference(tmp_path):
    doc = _run("machine_drift.py", "--quick", "--json", tmpdir=tmp_path)
    assert not list(tmp_path.glob("fsrt-*"))
    assert set(doc["explained"]) == {"eager", "ort", "openvino"} and all(n > 0 for n in doc["windows"].values())
    for e in doc["explained"].values():
        assert set(e["by_reference"]) == {"gemm", "stream", "python", "other models (mean)"}
        assert all(r["left_sd"] >= 0 for r in e["by_reference"].values())


def test_machine_drift_explain_on_known_series():
    sys.path.insert(0, str(DEV))
    try:
        from machine_drift import explain
    finally:
        sys.path.remove(str(DEV))
    drift = [0.05, -0.05, 0.02, -0.02]
    dev = {"a": drift, "b": [2 * d for d in drift], "ref": drift, "flat": [0.0] * 4, "anti": [-d for d in drift]}
    out = explain(dev, ["a", "b"], ["ref", "flat", "anti"])["a"]
    assert out["drift_sd"] == pytest.approx(math.sqrt((0.05**2 * 2 + 0.02**2 * 2) / 4))
    assert out["by_reference"]["ref"]["corr"] == pytest.approx(1.0)
    assert out["by_reference"]["ref"]["left_sd"] == pytest.approx(0.0, abs=1e-12)
    assert out["by_reference"]["flat"]["corr"] is None  # a reference that never moves explains nothing
    assert out["by_reference"]["anti"]["corr"] == pytest.approx(-1.0)
    assert out["by_reference"]["anti"]["left_sd"] == pytest.approx(2 * out["drift_sd"])
    assert out["by_reference"]["other models (mean)"]["left_sd"] == pytest.approx(out["drift_sd"])  # b - a = a
