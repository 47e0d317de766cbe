"""The bench's accuracy check at every precision: honest half-precision runtimes pass on every zoo
family, deliberately broken runtimes (tests/faults.py) fail, and a runtime that computes in
another precision than it is asked for is caught in both directions.

Runtimes run through the real sweep (``InProcessPool``): the check reads the outputs of the timed
call. The references are independent of the runtimes: the float64 model, and the error a
float64 emulation of the precision's rounding gives it (``fsrt.accuracy``, itself tested against
numpy in test_accuracy.py).
"""

from __future__ import annotations

import dataclasses

import faults
import numpy as np
import pytest

from fsrt.bench.points import Point, Status

RES = 64  # the families' check; the deliberate bugs run at 32 px (the same ratios, a quarter of the work)
BUG_RES = 32
FAMILIES = ["RegNetX-200MF", "RegNetY-400MF", "RegNetZ-500MF", "EfficientNet-B0", "ResNet-50", "ResNet-RS-50"]
ALL = ("fp32", "fp16", "bf16")


def sweep(tmp_path, make_runner, model="RegNetX-200MF", precisions=ALL, runtimes=("fake",), resolution=BUG_RES):
    """``{(runtime, precision): Point}`` of a one-model sweep through the in-process pool. One
    timing window per job: these tests are about the check, which runs before any timing."""
    import fsrt.bench.sweep_run as sr
    from fsrt.bench.plan import BenchPlan, plan_variants
    from fsrt.bench.rounds import RoundConfig
    from fsrt.bench.store import Store
    from fsrt.bench.timing import WindowConfig
    from fsrt.bench.worker import InProcessPool
    from fsrt.scaling import parse_strategy

    plan = BenchPlan(sources=(model,), strategies=(parse_strategy("w"),), s_values=(1.0,), precisions=precisions,
                     resolution=resolution, window=WindowConfig(warmup_s=0.0, min_warmup=1, window_s=0.0),
                     rounds=RoundConfig(min_rounds=1, max_rounds=1, cooldown_s=0.0))
    with Store(tmp_path / "fsrt.db") as store, pytest.MonkeyPatch.context() as mp:
        mp.setattr(sr, "get_ceilings", lambda *a: None)  # no roofline needed here
        store.add_machine("m", {})
        run = store.start_run("t", "m", {})
        pts = sr.run_sweep(plan, plan_variants(plan), list(runtimes), store, run, "m", tmp_path / "w",
                           make_pool=lambda cfg: InProcessPool(cfg, make_runner=make_runner))
    return {(p.runtime, p.precision): p for p in pts}


def broken(name, bug=None, computes=None):
    """An eager runner named ``name`` with ``bug`` applied to its model, computing in
    ``computes(asked precision)`` instead of the asked precision."""
    from fsrt.bench.runners import EagerRunner

    class Broken(EagerRunner):
        def prepare(self, ctx):
            if computes:
                ctx = dataclasses.replace(ctx, precision=computes(ctx.precision))
            super().prepare(ctx)
            if bug:
                bug(self.model)

    runner = Broken()
    runner.name = name
    return runner


BROKEN = {
    "kernel transposed": dict(bug=lambda m: faults.transpose_kernel(m, 0.5)),
    "padding shifted": dict(bug=lambda m: faults.shift_padding(m, 0.5)),
    "weights 1%": dict(bug=lambda m: faults.perturb_weights(m, 0.01)),
    "weights 10%": dict(bug=lambda m: faults.perturb_weights(m, 0.1)),
    "computes bf16": dict(computes=lambda p: "bf16"),  # e.g. OpenVINO's f16 hint running bf16
    "computes fp32": dict(computes=lambda p: "fp32"),  # e.g. OpenVINO's bf16 hint without bf16 units
    "computes fp16": dict(computes=lambda p: "fp16"),
}


@pytest.fixture(scope="module")
def broken_points(tmp_path_factory):
    """Every deliberately broken runtime at every precision, in one sweep (one set of references)."""
    return sweep(tmp_path_factory.mktemp("broken"), lambda name: broken(name, **BROKEN[name]), runtimes=tuple(BROKEN))


def assert_caught(pts, runtime, precisions, above=True):
    for precision in precisions:
        p = pts[(runtime, precision)]
        assert p.status == Status.PARITY_FAILED and p.latency_ms is None, (runtime, precision, p.status, p.reason)
        if precision == "fp32":
            assert p.parity_rel_l2 > 1e-4 and "fp32 bound" in p.reason
        elif above:
            assert p.parity_rel_l2 > 3 * p.parity_expected and "more error than the precision explains" in p.reason
        else:
            assert p.parity_rel_l2 < p.parity_expected / 4 and f"did not compute in {precision}" in p.reason


@pytest.mark.parametrize("runtime", ["kernel transposed", "padding shifted"])
def test_a_wrong_kernel_fails_at_every_precision(broken_points, runtime):
    assert_caught(broken_points, runtime, ALL)


def test_one_layer_off_by_one_percent_fails_where_the_precision_can_see_it(broken_points):
    """1% of the first conv's weights is caught at fp32 and fp16. bf16 rounds every weight of every
    layer by up to 2^-8 = 0.39% and every activation likewise, a larger change than 1% of one layer,
    so at bf16 that bug stays within the precision's own error (1.5-1.9x it on the six families at
    64 px, dev/precision_check.py) and the check's resolution there is a few percent of one
    layer: 10% is caught."""
    assert_caught(broken_points, "weights 1%", ("fp32", "fp16"))
    p = broken_points[("weights 1%", "bf16")]
    assert p.parity_expected < p.parity_rel_l2 < 3 * p.parity_expected  # visible, but within bf16's own error
    assert_caught(broken_points, "weights 10%", ALL)


def test_computing_in_another_precision_is_caught_both_ways(broken_points):
    assert_caught(broken_points, "computes bf16", ("fp32", "fp16"))
    assert_caught(broken_points, "computes fp32", ("fp16", "bf16"), above=False)
    assert_caught(broken_points, "computes fp16", ("bf16",), above=False)
    assert_caught(broken_points, "computes fp16", ("fp32",))
    for runtime, precision in (("computes bf16", "bf16"), ("computes fp32", "fp32"), ("computes fp16", "fp16")):
        assert broken_points[(runtime, precision)].status in (Status.OK, Status.UNSTABLE)  # asked = computed: honest


@pytest.mark.parametrize("model", FAMILIES)
def test_honest_half_precision_passes_on_every_family(tmp_path, model):
    """Eager autocast and OpenVINO at fp16 and bf16, 64 px: each passes the check wherever it runs
    the precision (eager always does, emulated where the CPU lacks the units; OpenVINO where it has
    the capability, and it refuses a hint it would not honour). ONNX Runtime's fp16 is fp32
    arithmetic on CPU (next test)."""
    from fsrt.bench.precision_support import native_reason
    from fsrt.bench.runners import all_runners

    native = [p for p in ("fp16", "bf16") if native_reason("openvino", p, "cpu") is None]
    runtimes = ("eager", "openvino") if native else ("eager",)  # the refusal itself: test_accuracy.py
    pts = sweep(tmp_path, lambda name: all_runners()[name](), model=model, precisions=("fp16", "bf16"),
                runtimes=runtimes, resolution=RES)
    assert len(pts) == 2 * len(runtimes)
    for (runtime, precision), p in pts.items():
        if runtime == "eager" or precision in native:
            assert p.status in (Status.OK, Status.UNSTABLE), (runtime, precision, p.status, p.reason)
            assert p.parity_expected / 4 <= p.parity_rel_l2 <= 3 * p.parity_expected
        else:
            assert p.status == Status.ERROR and "OpenVINO runs" in p.reason, p.reason


def test_onnx_runtime_computes_an_fp16_graph_in_fp32_on_cpu(tmp_path):
    """What the ORT note and ``--precision auto`` say about ONNX Runtime's fp16 on CPU, checked
    independently: its outputs match the graph's fp16 weights (BatchNorm folded, then rounded)
    computed at full precision far better than the same weights with fp16 activations."""
    from fsrt.accuracy import compare, emulate
    from fsrt.bench.runner_onnx import OrtRunner
    from fsrt.bench.runners import PrepareContext
    from fsrt.calibration import calibrate_batchnorm
    from fsrt.exporters.onnx_export import export_onnx
    from fsrt.kernels.bn_fold import fold_batchnorm
    from fsrt.models import build_model
    from fsrt.precision import get_precision
    from fsrt.zoo import zoo_spec

    spec = zoo_spec("RegNetX-200MF").replace(resolution=RES)
    model = build_model(spec)
    calibrate_batchnorm(model, RES, 0)
    path = tmp_path / "h.onnx"
    export_onnx(model, path, precision="fp16", parity=False)
    x = np.random.default_rng(0).standard_normal((1, 3, RES, RES)).astype(np.float16).astype(np.float32)
    runner = OrtRunner()
    runner.prepare(PrepareContext(spec, 1, "fp16", "cpu", 1, tmp_path, lambda p: path, lambda: model))
    runner.bind(x)()
    out = runner.output()
    fp16, folded = get_precision("fp16"), fold_batchnorm(model)[0]
    weights_only = emulate(folded, [x.astype(np.float64)], fp16, activations=False)[0]
    full = emulate(folded, [x.astype(np.float64)], fp16)[0]
    assert compare(out, weights_only).rel_l2 < compare(out, full).rel_l2 / 3
    assert "computed in fp32" in runner.precision_note()


def test_report_gives_each_half_precision_its_paired_speedup_beside_its_accuracy(tmp_path):
    """Two measurements timed in the same rounds: per-round ratios 2.0 (drift cancels) while each
    figure alone moves 30%; the report's speedup is that paired ratio, with the errors beside it."""
    from fsrt.bench.report import write_report
    from fsrt.bench.rounds import Window
    from fsrt.bench.store import Store

    drift = [1.0, 1.3, 0.8, 1.1, 0.9, 1.25, 0.85]
    common = dict(model="Base", base="Base", strategy="w", s=1.0, runtime="openvino", batch=1, device="cpu",
                  threads=1, flops=1, params=1, acts=1, status="ok", mode="infer")
    with Store(tmp_path / "f.db") as st:
        st.add_machine("m", {})
        run = st.start_run("r", "m", {})
        for precision, ms, err, exp in (("fp32", 6.0, 2e-6, None), ("bf16", 3.0, 3.1e-2, 3.0e-2)):
            st.put_point(run, "m", precision, Point(precision=precision, mkey=precision, latency_ms=ms,
                                                    latency_lo_ms=0.7 * ms, latency_hi_ms=1.3 * ms, parity_rel_l2=err,
                                                    parity_expected=exp, note=f"hint {precision}", **common))
            st.put_windows("m", precision, [Window(r, (ms * d,), 100.0 + r) for r, d in enumerate(drift)])
        st.set_unavailable(run, "ort bf16", "ONNX Runtime has no bf16 convolution kernels")
        md = write_report(st, [run], tmp_path / "o")["markdown"].read_text()
    section = md.split("## Half precision: speedup over fp32 and accuracy cost", 1)[1].split("\n## ", 1)[0]
    assert "| Base | openvino | bf16 | 1 | 6 | 3 " in section and "2.000x [2.000, 2.000]" in section
    assert "0.031 | 0.03 | 1.03x" in section and "hint bf16" in section
    assert "bf16 on openvino (Base, batch 1) is 2.00x faster than fp32 [2.00, 2.00]" in md
    assert "| ort bf16 | ONNX Runtime has no bf16 convolution kernels |" in md
