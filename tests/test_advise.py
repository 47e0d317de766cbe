"""``fsrt advise``: candidates at a flops target, ranking by a fitted model, bad input, and a real
end-to-end run (bench, then advise measures and compares) on a tiny model."""

from __future__ import annotations

import json

import pytest
from test_latency_model import GFLOPS, synthetic_points, true_latency_ms

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench.advise import Question, candidate_strategies, candidates, judge, predict, to_measure
from fsrt.bench.fingerprint import fingerprint, machine_id
from fsrt.bench.points import Point
from fsrt.bench.rounds import Window
from fsrt.bench.store import Store
from fsrt.complexity import complexity, layer_count
from fsrt.errors import FsrtError
from fsrt.zoo import zoo_spec


def _base(resolution=128):
    return zoo_spec("RegNetY-400MF").replace(resolution=resolution)


def test_candidates_are_distinct_networks_at_the_target():
    base = _base()
    target = 8 * complexity(base).flops
    found = candidates(base, target, candidate_strategies())
    labels = {tuple(s.name for s in sts) for sts, _ in found}
    assert ("dWr", "alpha=0.8") in labels and ("w", "alpha=1") in labels and ("dr", "alpha=0") in labels
    structures = [sc.spec.to_dict() | {"name": None} for _, sc in found]
    assert all(a != b for i, a in enumerate(structures) for b in structures[i + 1:])
    for _, sc in found:
        assert abs(sc.complexity.flops / target - 1) < 0.05, sc.strategy.name


def test_ranking_follows_the_true_costs_of_a_synthetic_machine():
    mid = "m"
    stored = synthetic_points(bases=("RegNetY-400MF", "EfficientNet-B0"))
    q = Question("RegNetY-400MF", 3.2e9 * (128 / 224) ** 2, "ort", threads=1, resolution=128)
    advice = predict(q, _base(), stored, mid)
    assert advice.fitted.model.achieved["gflop_per_s"] == pytest.approx(GFLOPS, rel=1e-6)
    truth = [true_latency_ms(c.scaled.complexity.flops, c.scaled.complexity.params, c.scaled.complexity.acts,
                             layer_count(c.scaled.spec)) for c in advice.ranked]
    assert truth == sorted(truth)  # exact synthetic costs: the predicted order is the true order
    assert [c.predicted_ms for c in advice.ranked] == pytest.approx(truth, rel=1e-6)
    chosen = [c.label for c in to_measure(advice.ranked)]
    assert chosen[0] == advice.ranked[0].label and any("dWr" in c for c in chosen) and any(
        c.startswith("dwr") for c in chosen)
    doc = advice.to_dict()
    assert json.loads(json.dumps(doc))["candidates"][0]["label"] == advice.ranked[0].label
    with pytest.raises(FsrtError, match="not above"):
        predict(Question("RegNetY-400MF", 1e8, "ort", threads=1), _base(), stored, mid)
    with pytest.raises(FsrtError, match="needs at least 6"):
        predict(Question("RegNetY-400MF", 3e9, "openvino", threads=1), _base(), stored, mid)


def _windows(values, start=0.0):
    return [Window(i, (v,), start + i) for i, v in enumerate(values)]


def test_judge_names_the_winner_only_when_resolved():
    pts = [Point(model=m, status="ok", latency_ms=v, mkey=m) for m, v in (("best", 10.0), ("a", 12.0), ("b", 10.05))]
    windows = {"best": _windows([10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0]),
               "a": _windows([12.0, 12.1, 11.9, 12.0, 12.2, 11.8, 12.0]),
               "b": _windows([10.3, 9.8, 10.1, 9.9, 10.0, 10.2, 9.7])}
    measured, comps, rec, why = judge([("best", "best"), ("a", "a"), ("b", "b")], pts, windows)
    assert rec == "best" and why == "predicted best" and set(measured) == {"best", "a", "b"}
    assert comps[0]["resolved"] and comps[0]["speedup"]["value"] == pytest.approx(1.2, rel=0.02)
    assert not comps[1]["resolved"] and "not resolved" in comps[1]["verdict"]
    # A reference measured resolved faster than the predicted best wins.
    windows["a"] = _windows([8.0, 8.1, 7.9, 8.0, 8.2, 7.8, 8.0])
    _, comps, rec, why = judge([("best", "best"), ("a", "a"), ("b", "b")], pts, windows)
    assert rec == "a" and "measured faster" in why and comps[0]["resolved"]
    # ... and the new recommendation is compared with every other measured network.
    assert [(c["recommended"], c["reference"]) for c in comps[2:]] == [("a", "best"), ("a", "b")]
    assert comps[2]["speedup"]["value"] == pytest.approx(1 / comps[0]["speedup"]["value"], rel=0.02)


def test_judge_keeps_the_predicted_best_when_a_lead_is_within_the_machines_movement():
    """A reference 3% faster in this run's paired rounds, on a machine whose points move 4% between
    runs: within the run it is resolved and would replace the predicted best; with the movement the
    lead is not resolved and the prediction stands."""
    pts = [Point(model=m, status="ok", latency_ms=v, mkey=m) for m, v in (("best", 10.0), ("a", 9.7))]
    windows = {"best": _windows([10.0, 10.1, 9.9, 10.0, 10.2, 9.8, 10.0]),
               "a": _windows([9.7, 9.8, 9.6, 9.7, 9.9, 9.5, 9.7])}
    _, comps, rec, _ = judge([("best", "best"), ("a", "a")], pts, windows)
    assert rec == "a" and comps[0]["resolved"]
    _, comps, rec, why = judge([("best", "best"), ("a", "a")], pts, windows, movement=0.04)
    assert rec == "best" and why == "predicted best" and not comps[0]["resolved"]
    assert comps[0]["speedup"]["lo"] < 1.0 < comps[0]["speedup"]["hi"]


# -- the command line ------------------------------------------------------------------------------
def _synthetic_store(path, runtime="ort"):
    mid = machine_id(fingerprint())
    with Store(path) as st:
        st.add_machine(mid, fingerprint())
        run = st.start_run("synthetic", mid, {})
        for i, p in enumerate(synthetic_points()):
            st.put_point(run, mid, f"k{i}", p.replace(runtime=runtime, machine_id=None))
    return mid


def test_advise_predicts_from_stored_points_without_measuring(tmp_path):
    db = tmp_path / "fsrt.db"
    _synthetic_store(db)
    res = run_fsrt("advise", "RegNetY-400MF", "--resolution", "128", "--target-flops", "1.05G", "--runtime", "ort",
                   "--threads", "1", "--no-measure", "--db", str(db), "--out", str(tmp_path / "adv"), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["model"]["model"]["gflop_per_s"] == pytest.approx(GFLOPS, rel=1e-6)
    preds = [c["predicted_ms"] for c in doc["candidates"]]
    assert preds == sorted(preds) and len(preds) >= 10
    assert {h["scenario"] for h in doc["model"]["held_out"]} >= {"extrapolate", "strategy", "leave-one-out"}
    assert doc["run_id"] is None and not (tmp_path / "adv").exists()  # nothing measured, nothing written
    text = run_fsrt("advise", "RegNetY-400MF", "--resolution", "128", "-t", "1.05G", "--threads", "1",
                    "--no-measure", "--db", str(db))
    assert text.code == 0 and "GFLOP/s" in text.out and "dWr" in text.out


@pytest.mark.parametrize("extra, fragments", [
    (["-t", "3.2G", "--runtime", "tvm"], ["unknown runtime"]),
    (["-t", "100M"], ["not above", "402M"]),
    (["-t", "3.2G", "--alpha", "1.5"], ["alpha"]),
    (["-t", "3.2G", "--runtime", "trt"], ["cannot run here"]),
])
def test_bad_advise_input(tmp_path, extra, fragments):
    assert_one_line_error(run_fsrt("advise", "RegNetY-400MF", *extra, "--db", str(tmp_path / "x.db")), *fragments)
    assert not (tmp_path / "x.db").exists()


def test_advise_without_enough_points_says_what_to_run_first(tmp_path):
    res = run_fsrt("advise", "RegNetY-400MF", "-t", "3.2G", "--db", str(tmp_path / "none.db"))
    assert_one_line_error(res, "no results database", "run first: fsrt bench RegNetY-400MF --runtimes ort")
    assert not (tmp_path / "none.db").exists()
    db = tmp_path / "fsrt.db"
    _synthetic_store(db, runtime="eager")  # points, but for another runtime
    res = run_fsrt("advise", "RegNetY-400MF", "-t", "3.2G", "--runtime", "openvino", "--threads", "1",
                   "--db", str(db))
    assert_one_line_error(res, "needs at least 6", "run first: fsrt bench RegNetY-400MF --runtimes openvino")


def test_advise_end_to_end_measures_and_compares(tmp_path):
    db, out = tmp_path / "fsrt.db", tmp_path / "adv"
    bench = run_fsrt("bench", "RegNetX-200MF", "--resolution", "32", "--runtimes", "eager", "--sweep", "s=1..4",
                     "--threads", "1", "--measure-s", "0.02", "--warmup-s", "0.02", "--max-rounds", "8",
                     "--db", str(db), "--out", str(tmp_path / "b"), "--no-report", "--json")
    assert bench.code == 0, bench.err
    base_flops = complexity(zoo_spec("RegNetX-200MF").replace(resolution=32)).flops
    args = ["advise", "RegNetX-200MF", "--resolution", "32", "-t", str(4 * base_flops), "--runtime", "eager",
            "--threads", "1", "--alpha", "0.5", "--strategy", "dwr,dWr", "--db", str(db), "--out", str(out),
            "--json"]
    res = run_fsrt(*args)
    assert res.code == 0, res.err
    doc = res.json()
    measured = [c for c in doc["candidates"] if c.get("measured_ms")]
    assert {c["label"] for c in measured} == set(doc["measure"]) and 2 <= len(measured) <= 3
    # the predicted best of the candidates on target is measured first (a reference such as dWr may be
    # predicted faster but miss the target: it is measured as a reference, not as the pick)
    assert doc["measure"][0] == next(c["label"] for c in doc["candidates"] if c["eligible"])
    for comp in doc["comparisons"]:
        sp = comp["speedup"]
        assert sp["lo"] <= sp["value"] <= sp["hi"] and "paired" in sp["method"]  # measured in the same rounds
        assert comp["resolved"] == (sp["lo"] > 1 or sp["hi"] < 1)
    assert doc["recommendation"] in doc["measure"]
    html = (out / "report" / "report.html").read_text()
    assert "Recommendation" in html and "Latency model" in html
    with Store(db) as st:  # stored like any other point
        run = st.run(out.name)
        assert {p.model for p in st.run_points(run["id"])} == {c["name"] for c in measured}


def test_models_of_nearly_equal_flops_have_no_power_law_rather_than_a_crash():
    from fsrt.fitting import loglog_fit

    # An advise run measures networks of (nearly) the same flops: log x barely varies, the slope explodes.
    assert loglog_fit([18_000_000, 18_050_000], [50.0, 70.0]) is None  # coefficient underflows to 0
    assert loglog_fit([18_000_000, 18_050_000], [70.0, 50.0]) is None  # coefficient overflows
    assert loglog_fit([1.0, 2.0, 4.0], [3.0, 6.0, 12.0]).exponent == pytest.approx(1.0)


def test_alpha_grid_option():
    from fsrt.commands.advise import _alpha_grid

    assert _alpha_grid("0..1x0.1") == pytest.approx([i / 10 for i in range(11)])
    assert _alpha_grid("0.2..0.8x0.3") == pytest.approx([0.2, 0.5, 0.8])
    assert _alpha_grid("0.5,0.8") == [0.5, 0.8] and _alpha_grid("") == []
    for bad, match in (("0..2x0.5", "alpha must be in"), ("a..bx1", "cannot read"), ("0..1x0", "step")):
        with pytest.raises(FsrtError, match=match):
            _alpha_grid(bad)
