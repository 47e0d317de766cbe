"""Recipe adaptations (fsrt.train.adapt): the stability bound against a simulated SGD, the measured
curvature against an autograd Hessian, and the recipes left exact on ImageNet-scale runs."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from test_train_units import TINY

from conftest import REPO, run_fsrt
from fsrt.spec import ModelSpec
from fsrt.train.adapt import RECIPE_CLASSES, adapt_recipe, classifier_curvature, stable_lr
from fsrt.train.recipe import load_recipe


def _sgd_blows_up(lr: float, lam: float, momentum: float, nesterov: bool, steps: int = 4000) -> bool:
    """Run torch's SGD on 0.5 * lam * w^2 and report whether |w| grew."""
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum, nesterov=nesterov)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * lam * w ** 2).sum().backward()
        opt.step()
    return abs(w.item()) > 1.0


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])  # nesterov needs momentum
def test_stable_lr_is_the_edge_where_torch_sgd_starts_to_diverge(momentum, nesterov):
    lam = 37.0
    edge = stable_lr(lam, momentum, nesterov)
    assert not _sgd_blows_up(edge * 0.99, lam, momentum, nesterov)
    assert _sgd_blows_up(edge * 1.01, lam, momentum, nesterov)


def test_measured_curvature_is_the_top_eigenvalue_of_the_classifier_hessian():
    from fsrt.models import build_model
    from fsrt.train.augment import DevicePipeline
    from fsrt.train.data import digits_source

    source = digits_source()
    recipe = load_recipe("basic", {**source.recipe_defaults, "seed": 3})
    spec = ModelSpec.from_dict(TINY)
    got = classifier_curvature(spec, source, recipe, batch=64)

    # independent: the same model and batch, the cross-entropy's Hessian in the FC weights by autograd
    torch.manual_seed(recipe.seed)
    model = build_model(spec).train()
    x, y = next(iter(source.train_batches(0, 64, recipe.seed, 0, 1)))
    feats = {}
    model.head.fc.register_forward_hook(lambda m, i, o: feats.update(h=i[0].detach()))
    with torch.no_grad():
        model(DevicePipeline(source.kind, spec.resolution, recipe, torch.device("cpu")).train(x))
    h, fc = feats["h"].double(), model.head.fc
    bias = fc.bias.detach().double()

    def loss(weight):
        return torch.nn.functional.cross_entropy(h @ weight.T + bias, y)

    hess = torch.autograd.functional.hessian(loss, fc.weight.detach().double())
    n = fc.weight.numel()
    top = torch.linalg.eigvalsh(hess.reshape(n, n))[-1].item()
    assert got == pytest.approx(top, rel=1e-3)


def test_adaptations_follow_the_class_count_and_the_schedule_length():
    r = load_recipe("fast-scaling", {"batch_size": 128})
    same, changes = adapt_recipe(r, recipe_epochs=100, num_classes=RECIPE_CLASSES, curvature=lambda rec: 1e9)
    assert same == r and changes == []                        # ImageNet-1k, full schedule: exact
    lam, seen = 50.0, []
    short = load_recipe("fast-scaling", {"batch_size": 128, "epochs": 10})
    got, changes = adapt_recipe(short, recipe_epochs=100, num_classes=10,
                                curvature=lambda rec: seen.append(rec.zero_init_last_bn) or lam)
    assert [c.key for c in changes] == ["warmup_epochs", "zero_init_last_bn", "head_lr_scale"]
    assert seen == [False]                                    # measured with the residual branches active
    assert got.head_lr_scale == pytest.approx(0.5 * 2 * 1.9 / lam / 0.25)    # half the edge 2(1+mu)/lam, at lr 0.25
    assert got.warmup_epochs == pytest.approx(0.5) and got.zero_init_last_bn   # 5 of 100 epochs -> 0.5 of 10
    pinned = {"head_lr_scale", "warmup_epochs", "zero_init_last_bn"}
    kept, changes = adapt_recipe(short, recipe_epochs=100, num_classes=10, curvature=lambda rec: lam, fixed=pinned)
    assert kept == short and changes == []                    # keys the user set are never adapted
    longer = load_recipe("fast-scaling", {"epochs": 400})
    assert adapt_recipe(longer, recipe_epochs=100, num_classes=1000)[1] == []   # the 4x schedule keeps 5 epochs
    calm, changes = adapt_recipe(r, recipe_epochs=100, num_classes=10, curvature=lambda rec: 0.1)
    assert changes == []                                      # a classifier already stable at the recipe's rate


def test_imagenet_scale_runs_use_the_recipe_as_written():
    res = run_fsrt("train", "RegNetY-400MF", "--data", "synthetic", "--print-config", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["adapted"] == [] and doc["spec"]["num_classes"] == 1000
    written = yaml.safe_load((REPO / "fsrt" / "configs" / "fast-scaling.yaml").read_text())
    synthetic_defaults = {"hflip", "crop_min_scale"}   # what the synthetic source sets (random images)
    for key, value in written.items():
        if key not in synthetic_defaults:
            assert doc["recipe"][key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert doc["recipe"]["head_lr_scale"] == 1.0


def test_digits_runs_state_what_was_adapted_and_why():
    res = run_fsrt("train", "EfficientNet-B0", "--data", "digits", "--epochs", "10", "--print-config", "--json")
    assert res.code == 0, res.err
    adapted = {a["key"]: a for a in json.loads(res.out)["adapted"]}
    assert set(adapted) == {"head_lr_scale", "warmup_epochs", "zero_init_last_bn"}
    assert 0 < adapted["head_lr_scale"]["value"] < 1 and "stable only below lr" in adapted["head_lr_scale"]["why"]
    assert adapted["warmup_epochs"]["value"] == pytest.approx(0.5) and adapted["zero_init_last_bn"]["value"] is True
    res = run_fsrt("train", "EfficientNet-B0", "--data", "digits", "--epochs", "10", "--print-config")
    assert "adapted:" in res.out and "head_lr_scale" in res.out         # the YAML form says it too
