"""Bench measurement side: statistics, timing harness, roofline arithmetic, store schema and
resume, fingerprint, runner selection and parity, and a small end-to-end sweep through the CLI."""

import json
import sqlite3

import numpy as np
import pytest

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench.ceilings import Ceilings, roofline_floors
from fsrt.bench.fingerprint import fingerprint, machine_id
from fsrt.bench.plan import BenchPlan, Variant, measurement_key, plan_variants, point_key
from fsrt.bench.points import Point
from fsrt.bench.runners import select_runners
from fsrt.bench.stats import LatencyStats
from fsrt.bench.store import SCHEMA_VERSION, Store
from fsrt.bench.timing import TimingConfig, measure
from fsrt.errors import FsrtError
from fsrt.scaling import parse_strategy


def test_latency_stats_against_numpy():
    rng = np.random.default_rng(0)
    xs = list(rng.lognormal(1.0, 0.3, size=101))
    st = LatencyStats.of(xs)
    assert st.median_ms == pytest.approx(np.median(xs))
    assert st.p90_ms == pytest.approx(np.percentile(xs, 90))
    assert st.p99_ms == pytest.approx(np.percentile(xs, 99))
    assert st.mean_ms == pytest.approx(np.mean(xs))
    assert st.cv == pytest.approx(np.std(xs, ddof=1) / np.mean(xs))
    assert st.min_ms == min(xs) and st.n == 101


def test_timing_harness_counts_and_remeasures_noisy_calls():
    calls = []
    res = measure(lambda: calls.append(1), TimingConfig(warmup_s=0.0, min_warmup=3, measure_s=0.0, min_runs=25,
                                                        retries=0))
    assert res.stats.n == 25 and len(calls) == 28  # 3 warm-up + 25 timed
    # A callable alternating between fast and ~2 ms calls is noisy: re-measured, then flagged.
    import time

    state = {"i": 0}

    def jittery():
        state["i"] += 1
        if state["i"] % 2:
            time.sleep(0.002)

    noisy = measure(jittery, TimingConfig(warmup_s=0.0, min_warmup=1, measure_s=0.0, min_runs=20, retries=1,
                                          cv_threshold=0.05))
    assert noisy.attempts == 2 and noisy.unstable


def test_roofline_floors_by_hand():
    # 1 GMAC per image, 10M params, 5M acts, batch 2, fp32; peak 100 GFLOP/s, 10 GB/s.
    ceil = Ceilings(peak_flops=100e9, copy_bytes_per_s=10e9)
    compulsory, layer = roofline_floors(10**9, 10**7, 5 * 10**6, 2, 3 * 224 * 224, 1000, "fp32", ceil)
    compute_ms = 2 * 1e9 * 2 / 100e9 * 1e3  # 40 ms
    compulsory_bytes = (1e7 + 2 * (3 * 224 * 224 + 1000)) * 4  # 41.2 MB -> 4.12 ms
    layer_bytes = (1e7 + 2 * 5e6 * 2) * 4  # 120 MB -> 12 ms
    assert compulsory == pytest.approx(max(compute_ms, compulsory_bytes / 10e9 * 1e3))
    assert layer == pytest.approx(max(compute_ms, layer_bytes / 10e9 * 1e3))
    # memory-bound case: tiny compute
    _, layer2 = roofline_floors(10**6, 10**7, 5 * 10**6, 2, 3 * 224 * 224, 1000, "fp16", ceil)
    assert layer2 == pytest.approx((1e7 + 2e7) * 2 / 10e9 * 1e3)


def test_fingerprint_is_stable_and_identity_based():
    fp = fingerprint()
    assert fp["cpu"] and fp["cpu_count"] >= 1 and "torch" in fp["libraries"]
    assert machine_id(fp) == machine_id(dict(fp))
    assert machine_id({**fp, "hostname": "elsewhere"}) == machine_id(fp)  # descriptive field
    assert machine_id({**fp, "libraries": {**fp["libraries"], "torch": "0.0"}}) != machine_id(fp)


def _record(**kw):
    base = {"model": "m", "strategy": "w", "s": 1.0, "runtime": "eager", "precision": "fp32", "batch": 1,
            "flops": 10, "params": 2, "acts": 3, "status": "ok", "latency_ms": 1.0}
    return Point(**{**base, **kw})


def test_store_round_trip_resume_and_runs(tmp_path):
    db = tmp_path / "r.db"
    with Store(db) as st:
        st.add_machine("m1", {"cpu": "x"})
        run = st.start_run("sweep", "m1", {"a": 1})
        assert st.start_run("sweep", "m1", {"a": 1}) == run  # same config resumes the same run
        assert st.start_run("sweep", "m1", {"a": 2}) != run
        pid = st.put_point(run, "m1", "k1", _record())
        assert st.find_point("m1", "k1").latency_ms == 1.0 and st.find_point("m2", "k1") is None
        st.put_point(run, "m1", "k1", _record(latency_ms=2.0))  # replace, not duplicate
        assert [p.latency_ms for p in st.run_points(run)] == [2.0]
        run2 = st.start_run("other", "m1", {})
        st.link_point(run2, pid)
        assert len(st.run_points(run2)) == 1
        st.set_unavailable(run, "trt", "not installed")
        assert st.unavailable(run) == {"trt": "not installed"}
        st.put_ceiling("m1", "cpu", "fp32", 2, 1e11, 1e10)
        assert st.ceiling("m1", "cpu", "fp32", 2)["peak_flops"] == 1e11
        assert st.run("sweep")["id"] > 0
        with pytest.raises(FsrtError, match="no run"):
            st.run("missing")
        with pytest.raises(TypeError):
            st.put_point(run, "m1", "k2", {"bogus": 1})  # points are typed records, not dicts
    with Store(db) as st:  # reopening keeps everything
        assert st.find_point("m1", "k1").latency_ms == 2.0


def test_store_rejects_newer_schema_corrupt_and_foreign_files(tmp_path):
    newer = tmp_path / "newer.db"
    Store(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    before = newer.read_bytes()
    with pytest.raises(FsrtError, match="newer"):
        Store(newer)
    assert newer.read_bytes() == before
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database at all" * 100)
    with pytest.raises(FsrtError, match="corrupt"):
        Store(corrupt)
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(FsrtError, match="not an fsrt results store"):
        Store(foreign)


def test_point_keys_separate_what_changes_the_measurement():
    plan = BenchPlan(sources=("RegNetX-200MF",), strategies=(parse_strategy("w"), parse_strategy("dwr")),
                     s_values=(1.0, 2.0))
    vs = plan_variants(plan)
    assert [(v.strategy.name, v.s) for v in vs] == [("w", 1.0), ("w", 2.0), ("dwr", 1.0), ("dwr", 2.0)]
    base_w, base_dwr = vs[0], vs[2]
    assert base_w.spec_hash == base_dwr.spec_hash  # s=1 is the same model under both strategies
    mk = measurement_key(base_w, "eager", "fp32", 1, plan)
    assert mk == measurement_key(base_dwr, "eager", "fp32", 1, plan)
    assert point_key(base_w, mk) != point_key(base_dwr, mk)
    assert mk != measurement_key(base_w, "ort", "fp32", 1, plan)
    # every timing setting is part of what is measured
    from dataclasses import replace

    from fsrt.bench.rounds import RoundConfig
    from fsrt.bench.timing import WindowConfig

    for other in (replace(plan, threads=2), replace(plan, window=WindowConfig(window_s=0.2)),
                  replace(plan, window=WindowConfig(warmup_s=1.0)), replace(plan, rounds=RoundConfig(min_rounds=8)),
                  replace(plan, rounds=RoundConfig(target_ci=0.01)), replace(plan, rounds=RoundConfig(budget_s=10)),
                  replace(plan, channels_last=True), replace(plan, seed=1)):
        assert measurement_key(base_w, "eager", "fp32", 1, other) != mk, other
    assert measurement_key(base_w, "eager", "fp32", 1, replace(plan, sources=("x",))) == mk
    assert mk != measurement_key(base_w, "eager", "fp32", 8, plan)
    assert measurement_key(vs[1], "eager", "fp32", 1, plan) != mk
    assert isinstance(vs[1], Variant) and vs[1].flops_mult > 1.5


def test_runner_selection_lists_unavailable_with_reasons():
    runners, skipped = select_runners("auto", "cpu")
    names = [r.name for r in runners]
    assert "eager" in names and "ort" in names
    assert set(skipped) >= {"trt", "ort-trt", "compile", "aoti"}
    assert all(isinstance(v, str) and v for v in skipped.values())
    assert "TensorRT" in skipped["trt"]
    with pytest.raises(FsrtError, match="unknown runtime 'tvm'"):
        select_runners("eager,tvm", "cpu")
    runners, skipped = select_runners("eager,trt", "cpu")
    assert [r.name for r in runners] == ["eager"] and "trt" in skipped


def test_compiled_runtimes_on_cuda_name_the_build_tool_they_lack(monkeypatch):
    """Triton builds a C launcher for every compiled CUDA kernel and AOTInductor compiles C++ against
    the CUDA headers: without them compile and aoti are unavailable with the fix, not a failed build."""
    import shutil

    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    _, skipped = select_runners("eager,compile,aoti", "cuda")
    assert "C compiler" in skipped["compile"] and "C compiler" in skipped["aoti"] and "eager" not in skipped
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name if name in ("gcc", "g++") else None)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    _, skipped = select_runners("compile,aoti", "cuda")
    assert "compile" not in skipped and "CUDA_HOME" in skipped["aoti"]
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/usr/local/cuda")
    assert select_runners("compile,aoti", "cuda")[1] == {}


def test_sweep_end_to_end_resumes_and_checks_parity(tmp_path):
    args = ["bench", "RegNetX-200MF", "--resolution", "32", "--strategy", "w,dwr", "--sweep", "s=1,2",
            "--precision", "fp32", "--runtimes", "eager,ort,openvino,trt", "--measure-s", "0.02", "--warmup-s", "0.02",
            "--threads", "1",
            "--max-rounds", "8", "--out", str(tmp_path / "runs" / "t"), "--db", str(tmp_path / "runs" / "fsrt.db"),
            "--json"]
    first = run_fsrt(*args)
    assert first.code == 0, first.err
    doc = first.json()
    pts = doc["points"]
    assert len(pts) == 3 * 2 * 2  # runtimes x strategies x s
    assert {p["runtime"] for p in pts} == {"eager", "ort", "openvino"}
    for p in pts:
        assert p["status"] in ("ok", "unstable"), p
        assert p["latency_ms"] > 0 and p["floor_layer_ms"] > 0
        assert p["latency_lo_ms"] <= p["latency_ms"] <= p["latency_hi_ms"]  # every figure has its interval
        assert 6 <= p["rounds"] <= 8
        assert p["parity_max_rel"] < 1e-4  # fp32 bound, every runtime checked against a float64 reference
    assert doc["unavailable"]["trt"]
    html = (tmp_path / "runs" / "t" / "report" / "report.html").read_text()
    assert "RegNetX-200MF" in html
    # The s=1 model is measured once and reported under both strategies.
    base = [p for p in pts if p["s"] == 1 and p["runtime"] == "eager"]
    assert len(base) == 2 and base[0]["latency_ms"] == base[1]["latency_ms"]
    second = run_fsrt(*args)
    assert second.code == 0
    again = second.json()["points"]
    assert [p["latency_ms"] for p in again] == [p["latency_ms"] for p in pts]  # resumed, nothing re-measured
    assert json.loads((tmp_path / "runs" / "t" / "report" / "summary.json").read_text())


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--sweep", "s=1.."], "sweep"),
        (["--sweep", "s=0,1"], "s must be"),
        (["--runtimes", "eager,tvm"], "unknown runtime"),
        (["--alpha", "1.5"], "alpha"),
        (["--precision", "int8"], "int8"),
        (["--batch", "0"], "batch"),
        (["--threads", "0"], "--threads must be a positive integer"),
        (["--strategy", "zz"], "strategy"),
        (["NoSuchNet"], "unknown model"),
    ],
)
def test_bad_bench_input(tmp_path, extra, fragment):
    res = run_fsrt("bench", *extra, "--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, fragment)
    assert not (tmp_path / "x.db").exists()  # nothing written before the input is validated


def test_bench_out_is_a_file_and_corrupt_db(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run_fsrt("bench", "--out", str(f), "--db", str(tmp_path / "x.db")), "is a file")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 200)
    before = bad.read_bytes()
    res = run_fsrt("bench", "RegNetX-200MF", "--resolution", "32", "--sweep", "s=1", "--strategy", "w",
                   "--runtimes", "eager", "--db", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "corrupt")
    assert bad.read_bytes() == before


def test_checkpoint_source_runs_with_its_weights_unscaled_only(tmp_path):
    import torch

    from fsrt.bench.artifacts import build_variant_model
    from fsrt.models import build_model
    from fsrt.zoo import zoo_spec

    spec = zoo_spec("RegNetX-200MF").replace(num_classes=10, resolution=32)
    torch.manual_seed(123)
    trained = build_model(spec)
    with torch.no_grad():
        trained.head.fc.bias.fill_(0.5)  # a weight no initialization produces
        trained.train()(torch.randn(4, 3, 32, 32))  # BatchNorm statistics a training run would have moved
    ckpt = tmp_path / "last.pt"
    torch.save({"spec": spec.to_dict(), "model": trained.state_dict(), "ema": None}, ckpt)
    plan = BenchPlan(sources=(str(ckpt),), strategies=(parse_strategy("w"),), s_values=(1.0, 2.0))
    base, scaled = plan_variants(plan)
    assert base.trained_weights and not scaled.trained_weights
    loaded = build_variant_model(base, plan.seed).state_dict()
    for k, v in trained.state_dict().items():
        assert torch.equal(loaded[k], v), k
    fresh = build_variant_model(scaled, plan.seed)
    assert not torch.all(fresh.head.fc.bias == 0.5)
