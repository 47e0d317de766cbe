"""fsrt.accuracy (comparison, emulated rounding, the rule), fsrt.calibration, and how ``--precision
auto`` decides what a machine runs natively.

References are independent of the code under test: hand-computed errors, numpy with
ml_dtypes/IEEE half rounding for the emulation, the unit roundoffs of the formats, and BatchNorm
statistics recomputed from hooked inputs with numpy.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, run_fsrt
from fsrt.accuracy import compare, emulate, expected_error, judge, reference_outputs
from fsrt.calibration import calibrate_batchnorm, never_trained
from fsrt.errors import FsrtError
from fsrt.models import build_model
from fsrt.precision import get_precision
from fsrt.zoo import zoo_spec

FP16, BF16, FP32 = (get_precision(p) for p in ("fp16", "bf16", "fp32"))


def test_compare_by_hand():
    ref = np.array([[1.0, -4.0], [2.0, 0.5]])
    out = ref + np.array([[0.0, 0.01], [-0.02, 0.0]])
    e = compare(out, ref)
    assert e.max_abs == pytest.approx(0.02) and e.max_rel == pytest.approx(0.02 / 4.0)
    assert e.rel_l2 == pytest.approx(math.sqrt(0.01**2 + 0.02**2) / math.sqrt(1 + 16 + 4 + 0.25))
    assert compare([out[:1], out[1:]], [ref[:1], ref[1:]]) == e  # several batches are taken together
    assert compare(np.array([np.nan, 1.0]), np.array([1.0, 1.0])).rel_l2 == math.inf
    with pytest.raises(ValueError, match="shape"):
        compare(out[:1], ref)


class Tiny(torch.nn.Module):
    """1x1 conv (with bias) -> ReLU -> global mean -> linear: small enough to recompute in numpy."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 1), torch.nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _numpy_emulation(model: Tiny, x: np.ndarray, dtype) -> np.ndarray:
    r = lambda a: np.asarray(a, dtype=np.float64).astype(dtype).astype(np.float64)  # noqa: E731
    w, b = (r(t.detach().double().numpy()) for t in (model.conv.weight[:, :, 0, 0], model.conv.bias))
    y = r(np.einsum("oc,nchw->nohw", w, r(x)) + b[None, :, None, None])
    h = np.maximum(y, 0).mean(axis=(2, 3))
    fw, fb = (r(t.detach().double().numpy()) for t in (model.fc.weight, model.fc.bias))
    return r(r(h) @ fw.T + fb)


@pytest.mark.parametrize("precision, dtype", [(FP16, np.float16), (BF16, ml_dtypes.bfloat16)])
def test_emulation_rounds_every_layer_like_numpy(precision, dtype):
    model = Tiny().eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5))
    (got,) = emulate(model, [x], precision)
    np.testing.assert_allclose(got, _numpy_emulation(model, x, dtype), rtol=1e-12, atol=0)
    (ref,) = reference_outputs(model, [x])
    assert 0 < compare(got, ref).rel_l2 < 30 * precision.unit_roundoff
    weights_only = emulate(model, [x], precision, activations=False)[0]
    assert not np.array_equal(weights_only, got) and not np.array_equal(weights_only, ref)


def test_expected_error_follows_the_unit_roundoff():
    """bf16's unit roundoff is 8x fp16's (2^-8 vs 2^-11); rounding errors are small enough here to
    stay proportional, so the expected errors of a real network keep about that ratio."""
    spec = zoo_spec("RegNetX-200MF").replace(resolution=32)
    model = build_model(spec)
    calibrate_batchnorm(model, 32, 0)
    x = [np.random.default_rng(0).standard_normal((2, 3, 32, 32))]
    refs = reference_outputs(model, x)
    e16, e_bf16 = (expected_error(model, x, refs, p) for p in (FP16, BF16))
    assert expected_error(model, x, refs, FP32) is None
    assert 4 < e_bf16 / e16 < 16


def test_the_rule():
    assert judge(9e-5, FP32, None).passed and not judge(2e-4, FP32, None).passed
    assert "fp32 bound" in judge(2e-4, FP32, None).reason
    assert judge(2.9e-2, BF16, 1e-2).passed and judge(2.6e-3, BF16, 1e-2).passed
    above = judge(3.1e-2, BF16, 1e-2)
    assert not above.passed and "more error than the precision explains" in above.reason
    below = judge(2.4e-3, BF16, 1e-2)
    assert not below.passed and "did not compute in bf16" in below.reason
    assert not judge(math.inf, FP16, 1e-3).passed and not judge(math.nan, FP16, 1e-3).passed
    assert not judge(1e-7, FP16, 1e-3).passed  # far more exact than fp16 allows: not fp16 arithmetic
    assert judge(9e-5, FP16, 2e-5).passed  # the upper end never drops below fp32's bound


def test_calibration_gives_every_batchnorm_unit_scale():
    spec = zoo_spec("EfficientNet-B0").replace(resolution=32)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    assert never_trained(model)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert model(x).abs().max() < 2**-14  # fresh statistics: below fp16's normal range (IEEE binary16)
    calibrate_batchnorm(model, 32, seed=5)
    assert not never_trained(model)
    seen = []
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    hooks = [bn.register_forward_hook(lambda m, i, o: seen.append((i[0].double().numpy(), o.double().numpy())))
             for bn in bns]
    with torch.no_grad():  # the calibration batch itself: same seed, same size
        model(torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(5)))
    for h in hooks:
        h.remove()
    for bn, (inp, out) in zip(bns, seen, strict=True):
        second_moment = (inp**2).mean(axis=(0, 2, 3))
        np.testing.assert_allclose(bn.running_var.double().numpy(), second_moment, rtol=1e-5)
        assert not bn.running_mean.any()
        live = second_moment > 1e-3
        rms = np.sqrt((out**2).mean(axis=(0, 2, 3)))[live]
        assert np.all((rms > 0.99) & (rms < 1.0 + 1e-6))  # unit scale (eps 1e-5 takes a hair off)
    with torch.no_grad():
        assert 1e-2 < model(x).abs().max() < 1e2


def test_parse_precisions():
    from fsrt.bench.precision_support import parse_precisions

    assert parse_precisions("auto") is None and parse_precisions(None) is None
    assert parse_precisions("fp32, bf16,fp32,half") == ("fp32", "bf16", "fp16")
    with pytest.raises(FsrtError, match="auto cannot be combined"):
        parse_precisions("auto,fp16")
    with pytest.raises(FsrtError, match="fp8 needs Q/DQ"):
        parse_precisions("fp32,fp8")


@pytest.mark.parametrize("extra, fragment", [(["--precision", "fp8"], "fp8 needs Q/DQ quantization"),
                                             (["--precision", "auto,bf16"], "auto cannot be combined"),
                                             (["--precision", ","], "names no precision")])
def test_bad_precision_is_a_one_line_error(tmp_path, extra, fragment):
    res = run_fsrt("bench", *extra, "--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, fragment)
    assert not (tmp_path / "x.db").exists()


AVX2 = frozenset({"avx2", "fma"})
BF16_CPU = AVX2 | {"avx512f", "avx512_bf16"}


def _machine(monkeypatch, flags, capabilities):
    import fsrt.bench.fingerprint as fingerprint
    import fsrt.bench.precision_support as support

    monkeypatch.setattr(fingerprint, "cpu_flags", lambda: flags)
    monkeypatch.setattr(support, "openvino_capabilities", lambda: set(capabilities))
    return support


def test_auto_on_an_avx2_cpu_skips_emulated_half_precision_with_the_reason(monkeypatch):
    support = _machine(monkeypatch, AVX2, {"FP32", "INT8"})
    precisions, skipped = support.auto_precisions(["eager", "ort", "openvino"], "cpu")
    assert precisions == ("fp32",)
    assert "bf16 is emulated on this CPU (no avx512_bf16 or amx_bf16 units)" in skipped[("eager", "bf16")]
    assert "fp16 is emulated on this CPU" in skipped[("openvino", "fp16")]
    assert "no bf16 convolution kernels" in skipped[("ort", "bf16")]


def test_auto_on_a_bf16_cpu_measures_bf16_where_a_runtime_has_it(monkeypatch):
    support = _machine(monkeypatch, BF16_CPU, {"FP32", "BF16"})
    precisions, skipped = support.auto_precisions(["eager", "ort", "openvino"], "cpu")
    assert precisions == ("fp32", "bf16")
    assert set(skipped) == {("eager", "fp16"), ("ort", "fp16"), ("openvino", "fp16"), ("ort", "bf16")}
    assert "runs an fp16 graph in fp32" in skipped[("ort", "fp16")]
    support = _machine(monkeypatch, BF16_CPU, {"FP32"})  # an OpenVINO without the bf16 capability
    assert "OpenVINO lists no BF16" in support.native_reason("openvino", "bf16", "cpu")


def test_auto_plans_half_precision_at_the_smallest_s_only(monkeypatch):
    from fsrt.bench.plan import BenchPlan, plan_variants
    from fsrt.bench.sweep_run import plan_jobs
    from fsrt.scaling import parse_strategy

    support = _machine(monkeypatch, BF16_CPU, {"FP32", "BF16"})
    plan = BenchPlan(sources=("RegNetX-200MF",), strategies=(parse_strategy("w"), parse_strategy("dwr")),
                     s_values=(2.0, 4.0), resolution=32)
    plan, skipped = support.resolve_precisions(plan, None, ["eager", "ort", "openvino"])
    assert plan.precisions == ("fp32", "bf16") and plan.half_at_s == 2.0
    assert skipped["ort bf16"] and skipped["eager fp16"]
    jobs = [e.job for e in plan_jobs(plan, plan_variants(plan), ["eager", "ort", "openvino"])]
    fp32 = [j for j in jobs if j.precision == "fp32"]
    bf16 = [j for j in jobs if j.precision == "bf16"]
    assert len(fp32) == 4 * 3  # 2 strategies x 2 s x 3 runtimes
    assert {(j.runtime, j.variant.s) for j in bf16} == {("eager", 2.0), ("openvino", 2.0)} and len(bf16) == 4
    listed, none = support.resolve_precisions(plan, ("fp32", "fp16"), ["ort"])
    assert listed.precisions == ("fp32", "fp16") and none == {}   # asked by name: ort's fp32-computed fp16 too
    named, missing = support.resolve_precisions(plan, ("fp32", "bf16"), ["eager", "ort"])
    assert set(missing) == {"ort bf16"} and "no bf16" in missing["ort bf16"]   # no kernels: nothing to measure
    v = plan_variants(named)[0]
    assert named.measures(v, "eager", "bf16") and not named.measures(v, "ort", "bf16")


class _Node:
    def __init__(self, layer, precision):
        self.info = {"layerType": _Any(layer), "runtimePrecision": _Any(precision)}

    def get_rt_info(self):
        return self.info


class _Any:
    def __init__(self, v):
        self.v = v

    def astype(self, _t):
        return self.v


class _Compiled:
    """What OpenVINO's compiled model tells about the precision each node runs in."""

    def __init__(self, nodes):
        self.nodes = nodes

    def get_runtime_model(self):
        return self

    def get_ordered_ops(self):
        return self.nodes


def test_openvino_hint_that_runs_another_precision_is_refused():
    from fsrt.bench.precision_support import openvino_note

    bf16_run = _Compiled([_Node("Convolution", "bf16")] * 5 + [_Node("Convolution", "f32"), _Node("Eltwise", "f32")])
    with pytest.raises(FsrtError, match="OpenVINO runs bf16 for the f16 hint.*measure --precision bf16"):
        openvino_note("f16", "fp16", bf16_run)
    assert openvino_note("bf16", "bf16", bf16_run) == "hint bf16, convolutions run bf16 5 of 6, fp32 1 of 6"
