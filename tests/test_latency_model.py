"""The latency model: NNLS against a brute-force reference, recovery of known costs from synthetic
points built on real scaled models, weighting, and the held-out scenarios."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fsrt.bench.latency_model import MIN_POINTS, fit, leave_one_out, model_series, validate
from fsrt.bench.nnls import nnls
from fsrt.bench.points import Point
from fsrt.complexity import complexity, layer_count
from fsrt.errors import FsrtError
from fsrt.scaling import scale_spec
from fsrt.zoo import zoo_spec


# -- NNLS ----------------------------------------------------------------------------------------------
def brute_force_nnls(a: np.ndarray, b: np.ndarray) -> float:
    """The NNLS optimum by enumeration: the solution is the unconstrained fit on its support, so the
    best feasible support fit over all 2^n supports is the optimum. Returns its residual norm."""
    n = a.shape[1]
    best = np.linalg.norm(b)
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            x = np.linalg.lstsq(a[:, support], b, rcond=None)[0]
            if np.all(x >= 0):
                best = min(best, np.linalg.norm(a[:, support] @ x - b))
    return best


def test_nnls_reaches_the_brute_force_optimum_on_random_problems():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m, n = int(rng.integers(2, 14)), int(rng.integers(1, 7))
        a, b = rng.standard_normal((m, n)), rng.standard_normal(m)
        x, r = nnls(a, b)
        assert np.all(x >= 0)
        assert r == pytest.approx(np.linalg.norm(a @ x - b))
        assert r == pytest.approx(brute_force_nnls(a, b), rel=1e-7, abs=1e-10)


def test_nnls_is_least_squares_when_the_optimum_is_positive_and_zero_where_ols_goes_negative():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 2.0, size=(30, 3))
    truth = np.array([1.0, 2.0, 3.0])
    x, r = nnls(a, a @ truth)
    assert x == pytest.approx(truth, rel=1e-10) and r < 1e-9
    # b pulls the third coefficient below zero in ordinary least squares
    b = a @ np.array([1.0, 2.0, 0.0]) - 0.8 * a[:, 2] + 0.01 * rng.standard_normal(30)
    assert np.linalg.lstsq(a, b, rcond=None)[0][2] < 0
    x, _ = nnls(a, b)
    assert x[2] == 0.0 and np.all(x >= 0)


def test_nnls_rejects_bad_shapes_and_values():
    with pytest.raises(ValueError, match="matrix"):
        nnls(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        nnls(np.array([[1.0], [np.nan]]), np.ones(2))


# -- synthetic points on real scaled models ------------------------------------------------------------
# Known costs, written as the rates they stand for: 60 GFLOP/s, 12 GB/s over activation bytes,
# 25 GB/s over weight bytes, 15 µs per layer, 40 µs per call.
GFLOPS, ACT_GBS, PARAM_GBS, US_LAYER, US_CALL = 60.0, 12.0, 25.0, 15.0, 40.0


def true_latency_ms(flops: int, params: int, acts: int, layers: int, batch: int = 1, elem: int = 4) -> float:
    """The synthetic machine, written out independently of the module under test."""
    seconds = (2 * flops * batch / (GFLOPS * 1e9) + 2 * acts * batch * elem / (ACT_GBS * 1e9)
               + params * elem / (PARAM_GBS * 1e9) + layers * US_LAYER * 1e-6 + US_CALL * 1e-6)
    return 1e3 * seconds


def synthetic_points(bases=("RegNetY-400MF",), strategies=("dwr", "dWr", "w"), s_values=(1, 2, 4, 8, 16, 32),
                     resolution=128, noise=0.0, seed=0, latency=true_latency_ms) -> list[Point]:
    """One point per (base, strategy, s) of real scaled models; the base model is one measurement
    listed under every strategy, as a sweep stores it."""
    rng = np.random.default_rng(seed)
    pts, measured = [], {}
    for base in bases:
        spec = zoo_spec(base).replace(resolution=resolution)
        for strategy in strategies:
            for s in s_values:
                scaled = scale_spec(spec, strategy, s).spec if s != 1 else spec
                cx, layers = complexity(scaled), layer_count(scaled)
                mkey = f"{base}|{s if s != 1 else 1}|{strategy if s != 1 else '*'}"
                if mkey not in measured:
                    measured[mkey] = latency(cx.flops, cx.params, cx.acts, layers) * (1 + noise * rng.standard_normal())
                lat = measured[mkey]
                pts.append(Point(model=scaled.name, base=base, family=spec.family, strategy=strategy, s=float(s),
                                 runtime="ort",
                                 mode="infer", precision="fp32", batch=1, device="cpu", threads=1, flops=cx.flops,
                                 params=cx.params, acts=cx.acts, layers=layers, status="ok", latency_ms=lat,
                                 latency_lo_ms=lat * 0.99, latency_hi_ms=lat * 1.01, mkey=mkey, machine_id="m"))
    return pts


def test_fit_recovers_known_costs_from_exact_points():
    pts = synthetic_points(bases=("RegNetY-400MF", "EfficientNet-B0"))
    model = fit(pts)
    a = model.achieved
    assert a["gflop_per_s"] == pytest.approx(GFLOPS, rel=1e-6)
    assert a["act_gb_per_s"] == pytest.approx(ACT_GBS, rel=1e-6)
    assert a["param_gb_per_s"] == pytest.approx(PARAM_GBS, rel=1e-6)
    assert a["us_per_layer"] == pytest.approx(US_LAYER, rel=1e-6)
    assert a["constant_us"] == pytest.approx(US_CALL, rel=1e-6)
    assert model.n == 1 + 3 * 5 + 1 + 3 * 5  # distinct measurements: the base once per network
    assert model.rms_rel < 1e-9
    p = pts[-1]
    assert model.predict(p.flops, p.params, p.acts, p.layers) == pytest.approx(p.latency_ms, rel=1e-9)
    assert sum(model.shares(p).values()) == pytest.approx(1.0)


def test_noisy_points_give_costs_near_the_truth_and_small_held_out_errors():
    pts = synthetic_points(bases=("RegNetY-400MF", "EfficientNet-B0"), noise=0.01, seed=3)
    a = fit(pts).achieved
    assert a["gflop_per_s"] == pytest.approx(GFLOPS, rel=0.1)
    assert a["act_gb_per_s"] == pytest.approx(ACT_GBS, rel=0.25)
    held = {h.scenario: h for h in validate(pts)}
    assert set(held) == {"extrapolate", "strategy", "leave-one-out", "base"}
    for h in held.values():
        assert h.median < 0.04 and h.p90 < 0.08, h.to_dict()  # 1% noise on the held-out point itself, too


def test_a_term_the_machine_does_not_pay_is_fitted_as_zero_not_negative():
    free_weights = lambda f, p, a, n: true_latency_ms(f, 0, a, n)  # noqa: E731  (weights cost nothing)
    pts = synthetic_points(noise=0.02, seed=5, latency=free_weights)
    model = fit(pts)
    assert all(c >= 0 for c in model.coef)
    assert model.coef[2] == 0.0 or model.achieved["param_gb_per_s"] > 500  # unused, or negligible


def test_a_wide_interval_counts_less():
    pts = synthetic_points()
    bad = pts[7]
    skewed = bad.replace(latency_ms=bad.latency_ms * 1.6)

    def with_interval(rel):
        p = skewed.replace(latency_lo_ms=skewed.latency_ms * (1 - rel), latency_hi_ms=skewed.latency_ms * (1 + rel))
        return [p if q.mkey == bad.mkey else q for q in pts]

    def error(model):
        return max(abs(model.predict_point(q) / q.latency_ms - 1) for q in pts if q.mkey != bad.mkey)

    assert error(fit(with_interval(0.5))) < error(fit(with_interval(0.01)))


def test_held_out_scenarios_split_as_described():
    pts = synthetic_points()
    held = {h.scenario: h for h in validate(pts)}
    ext = held["extrapolate"]
    assert ext.description == "fit on s <= 4, predict s = 8..32"
    assert sorted({p.s for p in ext.predictions}) == [8, 16, 32] and len(ext.predictions) == 9
    strat = held["strategy"]
    assert strat.fits == 3 and len(strat.predictions) == 15  # each strategy's own members; the base is shared
    assert {p.strategy for p in strat.predictions} == {"dwr", "dWr", "w"}
    loo = held["leave-one-out"]
    assert len(loo.predictions) == 16 and loo.fits == 16
    assert "base" not in held  # one base network: nothing to leave out
    # Nothing above s = 4 measured: the largest s is predicted from the rest.
    ext = {h.scenario: h for h in validate(synthetic_points(s_values=(1, 2, 3, 4)))}["extrapolate"]
    assert ext.description == "fit on s <= 3, predict s = 4" and len(ext.predictions) == 3
    # s = 1, 2, 4 of three strategies: four small models cannot fit five terms, so no extrapolation check.
    assert "extrapolate" not in {h.scenario for h in validate(synthetic_points(s_values=(1, 2, 4)))}


def test_a_model_per_family_when_a_series_holds_several():
    from fsrt.bench.advise import fit_points
    from fsrt.bench.latency_model import latency_models

    pts = synthetic_points(bases=("RegNetY-400MF", "EfficientNet-B0"))
    assert [sm.label for sm in latency_models(pts)] == ["ort (effnet)", "ort (regnety)"]
    assert [sm.label for sm in latency_models(pts[:18])] == ["ort"]  # one family: the plain series label
    own, scope = fit_points(pts, "effnet")
    assert {p.family for p in own} == {"effnet"} and scope == "effnet models only"
    few = [p for p in pts if p.family == "regnety" or p.s <= 2]  # 4 EfficientNet models: too few on their own
    mixed, scope = fit_points(few, "effnet")
    assert mixed == few and scope.startswith("every family")


def test_too_few_points_and_mixed_series_are_errors():
    pts = synthetic_points(strategies=("w",), s_values=(1, 2, 4, 8))
    assert len(pts) < MIN_POINTS
    with pytest.raises(FsrtError, match="at least"):
        fit(pts)
    sm = model_series("ort", pts)
    assert sm.model is None and "at least" in sm.reason
    assert leave_one_out(pts) is None
    mixed = synthetic_points() + [p.replace(runtime="eager", mkey=p.mkey + "e") for p in synthetic_points()]
    with pytest.raises(FsrtError, match="one runtime configuration"):
        fit(mixed)
    # Points stored without a layer count are not fitted.
    assert fit([p.replace(layers=None) if p.s == 32 else p for p in synthetic_points()]).n == 13


# -- the report ------------------------------------------------------------------------------------
def test_roofline_chart_coordinates_by_hand():
    from fsrt.bench.plots import arithmetic_intensity, attained_gflops

    p = Point(flops=10**9, params=10**7, acts=5 * 10**6, batch=2, precision="fp32", latency_ms=40.0)
    assert arithmetic_intensity(p) == pytest.approx(2 * 1e9 * 2 / ((1e7 + 2 * 5e6 * 2) * 4))  # 33.3 FLOP/byte
    assert attained_gflops(p) == pytest.approx(100.0)  # 4 GFLOP in 40 ms
    assert arithmetic_intensity(p.replace(precision="bf16")) == pytest.approx(2 * arithmetic_intensity(p))


def test_report_shows_the_fitted_costs_held_out_errors_and_roofline_chart(tmp_path):
    import json

    from fsrt.bench.report import write_report
    from fsrt.bench.store import Store

    with Store(tmp_path / "fsrt.db") as st:
        st.add_machine("m", {"cpu": "test"})
        st.put_ceiling("m", "cpu", "fp32", 1, 2e11, 2e10)
        run = st.start_run("synthetic", "m", {})
        for i, p in enumerate(synthetic_points()):
            st.put_point(run, "m", f"k{i}", p.replace(machine_id=None))
        written = write_report(st, [run], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    section = md[md.index("## Latency model"):]
    row = next(line for line in section.splitlines() if line.startswith("| ort | 16 |"))
    assert row.split(" | ")[2:7] == ["60", "12", "25", "15", "40"]  # the synthetic machine's rates, recovered
    assert "| ort | extrapolate | fit on s <= 4, predict s = 8..32 | 9 | 0.0% | 0.0% | yes |" in section
    assert {"plots/run1_latency_model.png", "plots/run1_roofline_chart.png"} <= set(written)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (model,) = summary["runs"][0]["latency_model"]["models"]
    assert model["model"]["gflop_per_s"] == pytest.approx(GFLOPS, rel=1e-6)
