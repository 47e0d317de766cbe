"""Train mode of the benchmark: a timed call that is one real training step, its parity check against a
float64 step, its forward/backward split, and the CLI around it.

References are independent of the code under test: the SGD update and the label-smoothed
cross-entropy are written out by hand in numpy/float64, correlations come from numpy, and a
deliberately wrong step must fail the parity check.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import sweep_in_process

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench.points import Point, Status

RES, BATCH = 32, 4


def _model_and_batch(name: str = "RegNetX-200MF", res: int = RES, batch: int = BATCH):
    import torch

    from fsrt.bench.artifacts import calibrate_batchnorm
    from fsrt.bench.train_step import make_labels
    from fsrt.models import build_model
    from fsrt.zoo import zoo_spec

    spec = zoo_spec(name).replace(resolution=res)
    torch.manual_seed(0)
    model = build_model(spec)
    calibrate_batchnorm(model, res, 0)
    x = np.random.default_rng(0).standard_normal((batch, 3, res, res)).astype(np.float32)
    return spec, model, x, make_labels(0, batch, spec.num_classes)


def _ctx(spec, model, batch, precision="fp32"):
    from fsrt.bench.runners import PrepareContext

    return PrepareContext(spec=spec, batch=batch, precision=precision, device="cpu", threads=1, workdir=Path("."),
                          onnx_path=lambda p: None, load_model=lambda: model)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


# -- the timed call is a real training step ---------------------------------------------------------
def test_a_train_step_updates_the_weights_as_sgd_with_the_trainers_groups():
    import torch

    from fsrt.bench.train_step import TrainStepRunner, train_recipe

    spec, model, x, y = _model_and_batch()
    recipe = train_recipe("fp32", BATCH)
    runner = TrainStepRunner()
    runner.prepare(_ctx(spec, model, BATCH))
    names = {id(p): n for n, p in runner.model.named_parameters()}
    before = {n: p.detach().double().numpy().copy() for n, p in runner.model.named_parameters()}
    # the loss of this batch by hand: label-smoothed cross-entropy of the train-mode logits in float64
    ref_model = copy.deepcopy(model).double().train()
    with torch.no_grad():
        logp = _log_softmax(ref_model(torch.from_numpy(x).double()).numpy())
    eps, k = recipe.label_smoothing, spec.num_classes
    loss_by_hand = float(np.mean(-(1 - eps) * logp[np.arange(BATCH), y] - eps / k * logp.sum(axis=1)))

    step = runner.bind(x, y)
    step()
    loss, grad_norm, update_norm, skipped = runner.output()
    assert np.isfinite(loss) and loss == pytest.approx(loss_by_hand, rel=1e-4)
    assert grad_norm > 0 and update_norm > 0 and skipped == 0
    lr, wd = recipe.batch_lr(), recipe.weight_decay_for(spec.family)
    assert recipe.momentum == 0.9 and recipe.no_decay_bn_bias and wd > 0
    # BatchNorm parameters and biases carry no weight decay (the trainer's parameter groups)
    no_decay = {id(p) for m in runner.model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    no_decay |= {id(p) for n, p in runner.model.named_parameters() if n.endswith("bias")}
    assert 0 < len(no_decay) < len(runner.params)
    changed = 0
    for p in runner.params:
        name = names[id(p)]
        g = p.grad.double().numpy()
        decay = 0.0 if id(p) in no_decay else wd
        expected = before[name] - lr * (g + decay * before[name])  # first step: momentum buffer = d_p
        np.testing.assert_allclose(p.detach().double().numpy(), expected, rtol=1e-5, atol=1e-7, err_msg=name)
        changed += int(not np.array_equal(p.detach().double().numpy(), before[name]))
    assert changed == len(runner.params)
    # later calls keep training (momentum) and report their forward / backward split
    after_first = [p.detach().clone() for p in runner.params]
    runner.clear_parts()
    step()
    step()
    parts = runner.parts(2)
    assert len(parts["forward"]) == len(parts["backward"]) == 2
    assert all(v > 0 for v in parts["forward"] + parts["backward"])
    assert any(not torch.equal(a, p) for a, p in zip(after_first, runner.params))
    runner.close()


def test_fp32_step_matches_the_float64_step_and_ill_conditioning_widens_the_bound():
    from fsrt.bench.train_step import TRAIN_BOUNDS, TrainStepRunner, reference, step_error, train_bound

    for name, res, batch in (("RegNetY-400MF", 64, 8), ("RegNetX-200MF", 32, 4)):
        spec, model, x, y = _model_and_batch(name, res, batch)
        ref = reference(model, x, y, spec.family)
        runner = TrainStepRunner()
        runner.prepare(_ctx(spec, model, batch))
        runner.bind(x, y)()
        _, rel, _ = step_error(runner.output(), ref)
        assert rel <= train_bound("fp32", ref)
        if res == 64:  # a realistic step keeps the fixed bound
            assert train_bound("fp32", ref) == TRAIN_BOUNDS["fp32"] and rel < TRAIN_BOUNDS["fp32"] / 10
        else:  # BatchNorm over 4 values at 1x1: the step's own sensitivity sets the bound
            assert train_bound("fp32", ref) > TRAIN_BOUNDS["fp32"]


def test_a_step_the_gradient_scaler_skipped_is_judged_by_its_loss_alone():
    """An fp16 step that overflowed leaves inf in its gradients and makes no update: its gradient and
    update norms say nothing about the step's arithmetic, its loss does."""
    from fsrt.bench.train_step import step_error

    ref = np.array([2.5, 10.0, 0.3, 0.0])
    assert step_error(np.array([2.5 * (1 + 4e-3), np.inf, np.nan, 1.0]), ref)[1:] == (pytest.approx(4e-3), "loss")
    wrong = step_error(np.array([2.0, np.inf, np.nan, 1.0]), ref)
    assert wrong[1] == pytest.approx(0.2) and wrong[2] == "loss"
    # a step that was not skipped is judged on all three, inf gradients included
    assert step_error(np.array([2.5, np.inf, 0.3, 0.0]), ref)[1:] == (np.inf, "gradient norm")


# -- parity in a sweep: a wrong step is caught, an honest one is timed with its split ----------------
def _train_sweep(tmp_path, make_train_runner):
    def points_and_windows(store, pts):
        return pts, store.windows("m", [pts[0].mkey, pts[0].mkey + "/forward", pts[0].mkey + "/backward"])

    return sweep_in_process(tmp_path, ["eager"], 7, make_train_runner=lambda name: make_train_runner(),
                            read=points_and_windows, batches=(4,), modes=("train",))


def _skipping_step_runner():
    from fsrt.bench.train_step import TrainStepRunner

    class ForgetsTheStep(TrainStepRunner):
        """Forward, loss and backward as the trainer, but the optimizer never steps."""

        def prepare(self, ctx):
            super().prepare(ctx)
            self.optimizer.step = lambda *a, **k: None

    return ForgetsTheStep()


def _unsmoothed_loss_runner():
    from fsrt.bench.train_step import TrainStepRunner

    class NoSmoothing(TrainStepRunner):
        """The step of a trainer that forgot label smoothing (and doubled its learning rate)."""

        def prepare(self, ctx):
            super().prepare(ctx)
            self.recipe = self.recipe.__class__(**{**self.recipe.to_dict(), "label_smoothing": 0.0})
            for g in self.optimizer.param_groups:
                g["lr"] *= 2

    return NoSmoothing()


def test_an_honest_step_is_timed_with_its_forward_and_backward(tmp_path):
    from fsrt.bench.stats import interquartile_mean
    from fsrt.bench.train_step import TrainStepRunner

    (p,), windows = _train_sweep(tmp_path, TrainStepRunner)
    assert p.mode == "train" and p.status in (Status.OK, Status.UNSTABLE), p.reason
    assert p.latency_ms > 0 and p.forward_ms > 0 and p.backward_ms > 0
    assert p.forward_ms < p.latency_ms and p.backward_ms < p.latency_ms
    assert "SGD momentum 0.9" in p.note and "label smoothing 0.1" in p.note
    assert p.peak_mem_bytes and p.peak_mem_bytes > 3 * 4 * p.params  # weights, gradients, momentum
    assert p.floor_layer_ms is None  # roofline floors count one forward pass: none for a training step
    step, fwd, bwd = (windows[p.mkey + k] for k in ("", "/forward", "/backward"))
    # one part window per step window, from the same timed calls (re-warm calls left out)
    assert [w.round for w in fwd] == [w.round for w in bwd] == [w.round for w in step]
    for s, f, b in zip(step, fwd, bwd):
        assert len(f.times_ms) == len(b.times_ms) == len(s.times_ms)
        assert f.dropped == b.dropped == s.dropped
        for total, a, c in zip(s.times_ms, f.times_ms, b.times_ms):
            assert a + c <= total * 1.001 + 0.01  # the parts lie inside the timed call
    assert p.forward_ms == pytest.approx(interquartile_mean([t for w in fwd if not w.dropped for t in w.times_ms]))


@pytest.mark.parametrize("wrong", [_skipping_step_runner, _unsmoothed_loss_runner])
def test_the_parity_check_catches_a_wrong_training_step(tmp_path, wrong):
    (p,), _ = _train_sweep(tmp_path, wrong)
    assert p.status == Status.PARITY_FAILED and p.latency_ms is None
    assert "against the float64 step" in p.reason and p.parity_max_rel > 1e-2


# -- analysis of train points ------------------------------------------------------------------------
def _point(model, mode, flops, acts, params, ms, mem, **kw):
    return Point(model=model, base="B", strategy="w", s=1.0, runtime="eager", mode=mode, precision="fp32",
                 batch=1 if mode == "infer" else 32, device="cpu", threads=1, flops=flops, params=params, acts=acts,
                 status="ok", mkey=f"{model}-{mode}", latency_ms=ms, latency_lo_ms=ms * 0.99, latency_hi_ms=ms * 1.01,
                 peak_mem_bytes=mem, **kw)


def test_side_by_side_correlations_equal_numpy_and_label_train_series():
    from fsrt.bench import analysis, train_analysis

    rng = np.random.default_rng(3)
    flops = (np.array([1.0, 2.1, 3.9, 8.2, 15.5, 33.0]) * 1e8).astype(np.int64)
    acts = (np.array([1.0, 1.3, 2.2, 2.9, 4.1, 6.5]) * 1e6).astype(np.int64)
    params = (np.array([3.0, 5.5, 6.0, 12.0, 20.0, 41.0]) * 1e6).astype(np.int64)
    infer = 0.01 * flops / 1e6 * (1 + 0.05 * rng.standard_normal(6))
    train = 0.05 * acts / 1e4 * (1 + 0.05 * rng.standard_normal(6))
    pts = [_point(f"m{i}", "infer", int(flops[i]), int(acts[i]), int(params[i]), infer[i], int(4 * params[i]))
           for i in range(6)]
    pts += [_point(f"m{i}", "train", int(flops[i]), int(acts[i]), int(params[i]), train[i], int(200 * acts[i]),
                   forward_ms=train[i] / 3, backward_ms=2 * train[i] / 3) for i in range(6)]
    labels = analysis.series_labels(pts)
    assert sorted(labels.values()) == ["eager infer b1", "eager train b32"]
    only_train = analysis.series_labels([p for p in pts if p.mode == "train"])
    assert list(only_train.values()) == ["eager train"]  # a training series never reads as inference
    a = train_analysis.analyze(pts, labels)
    rows = {(r["quantity"], r["metric"]): r for r in a["infer_vs_train"]}
    for m, xs in (("flops", flops), ("params", params), ("acts", acts)):
        r = rows[("latency", m)]
        assert r["n"] == 6
        assert r["infer_r"] == pytest.approx(np.corrcoef(xs, infer)[0, 1], abs=1e-9)
        assert r["train_r"] == pytest.approx(np.corrcoef(xs, train)[0, 1], abs=1e-9)
        assert r["train_k"] == pytest.approx(np.polyfit(np.log(xs), np.log(train), 1)[0], abs=1e-9)
        assert r["train_r_lo"] <= r["train_r"] <= r["train_r_hi"]
    # memory proportional to acts: r = 1 for training
    assert rows[("peak memory", "acts")]["train_r"] == pytest.approx(1.0)
    split = a["train_split"]
    assert [s["backward_per_forward"] for s in split] == pytest.approx([2.0] * 6)
    assert any("backward plus optimizer step takes 2.00x the forward" in line for line in a["summary"])
    # ranking keeps inference and training apart
    rank = analysis.ranking(pts, labels)
    assert {r["mode"] for r in rank} == {"infer", "train"} and all(len(r["order"]) == 1 for r in rank)


def test_report_has_train_sections(tmp_path):
    from fsrt.bench.report import write_report
    from fsrt.bench.store import Store

    with Store(tmp_path / "f.db") as st:
        st.add_machine("m", {})
        run = st.start_run("r", "m", {})
        for i, (fl, ac) in enumerate(((1e8, 1e6), (2e8, 1.5e6), (4e8, 2.5e6), (8e8, 3.1e6))):
            for mode, ms in (("infer", fl / 1e8), ("train", 30 * ac / 1e6)):
                st.put_point(run, "m", f"k{i}{mode}", _point(f"m{i}", mode, int(fl), int(ac), 10**6, ms, 10**8,
                                                             forward_ms=ms / 3, backward_ms=ms / 2))
        md = write_report(st, [run], tmp_path / "o")["markdown"].read_text()
    assert "## Training steps: forward and backward" in md and "## Inference vs training" in md
    assert "| eager infer b1 / eager train b32 | acts | 4 |" in md
    assert "Training step (eager train b32) vs inference (eager infer b1) on the same 4 models" in md


# -- CLI -------------------------------------------------------------------------------------------------
def test_bad_mode_is_a_one_line_error(tmp_path):
    res = run_fsrt("bench", "--mode", "fly", "--db", str(tmp_path / "x.db"), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "--mode must be infer, train or both")
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "o").exists()
    res = run_fsrt("bench", "--mode", "train", "--runtimes", "ort", "--db", str(tmp_path / "x.db"),
                   "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "no requested runtime can time training steps", "ort runs inference only")
    assert not (tmp_path / "x.db").exists()


def test_both_modes_end_to_end_with_a_runtime_that_cannot_train(tmp_path):
    res = run_fsrt("bench", "RegNetX-200MF", "--mode", "both", "--resolution", "32", "--batch", "2", "--strategy",
                   "w", "--sweep", "s=1", "--runtimes", "eager,ort", "--threads", "1", "--measure-s", "0.02",
                   "--warmup-s", "0.02", "--max-rounds", "7", "--out", str(tmp_path / "r"), "--db",
                   str(tmp_path / "f.db"), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["unavailable"]["ort (train)"].startswith("ort runs inference only")
    pts = {(p["model"], p["runtime"], p["mode"]): p for p in doc["points"]}
    assert set(pts) == {("RegNetX-200MF", "eager", "infer"), ("RegNetX-200MF", "ort", "infer"),
                        ("RegNetX-200MF", "eager", "train")}
    tr, inf = pts[("RegNetX-200MF", "eager", "train")], pts[("RegNetX-200MF", "eager", "infer")]
    assert tr["status"] in ("ok", "unstable") and tr["forward_ms"] > 0 and tr["backward_ms"] > 0
    assert tr["latency_ms"] > inf["latency_ms"]  # a step is a forward and more
    # a training step holds gradients and momentum beside the weights, and keeps activations
    assert tr["peak_mem_bytes"] > inf["peak_mem_bytes"] and tr["peak_mem_bytes"] >= 3 * 4 * tr["params"]
    md = (tmp_path / "r" / "report" / "report.md").read_text()
    assert "| ort (train) | ort runs inference only" in md and "## Training steps: forward and backward" in md
