"""Trainer building blocks against hand-computed values and float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fsrt.errors import FsrtError
from fsrt.spec import ModelSpec
from fsrt.train.recipe import Recipe, coerce, load_recipe, recipe_names

TINY = {
    "family": "regnetx", "name": "tiny", "resolution": 32, "num_classes": 10,
    "stem": {"type": "simple", "widths": [16]},
    "stages": [{"depth": 1, "width": 32, "stride": 2, "block": "x", "group_w": 8},
               {"depth": 1, "width": 64, "stride": 2, "block": "x", "group_w": 8}],
}


def tiny_model():
    from fsrt.models import build_model

    return build_model(ModelSpec.from_dict(TINY))


# -- schedule ------------------------------------------------------------------------------
def test_exponential_schedule_with_warmup_hand_values():
    from fsrt.train.schedule import lr_at

    # lr 0.8 at batch 1024, batch 256 -> 0.2; 10 epochs of 4 steps; 2 warmup epochs from 0.1
    r = Recipe(epochs=10, lr=0.8, lr_ref_batch=1024, batch_size=256, schedule="exp", lr_beta=0.02,
               warmup_epochs=2, warmup_factor=0.1)
    assert r.batch_lr() == pytest.approx(0.2)
    assert lr_at(0, 4, r) == pytest.approx(0.02)                     # 0.2 * 1 * 0.1
    # step 1: t = 0.25 epochs: 0.2 * 0.02**0.025 * (0.1 * 0.875 + 0.125)
    assert lr_at(1, 4, r) == pytest.approx(0.038540263530038546, rel=1e-12)
    # step 4: t = 1: 0.2 * 0.02**0.1 (= 0.676243...) * 0.55
    assert lr_at(4, 4, r) == pytest.approx(0.07438676715868657, rel=1e-12)
    # step 8: warmup over; t = 2: 0.2 * 0.02**0.2; step 20: t = 5: 0.2 * sqrt(0.02)
    assert lr_at(8, 4, r) == pytest.approx(0.2 * 0.6762433378062414 ** 2, rel=1e-12)
    assert lr_at(20, 4, r) == pytest.approx(0.0282842712474619, rel=1e-12)
    assert lr_at(40, 4, r) == pytest.approx(0.004, rel=1e-12)        # final = beta * lr


def test_cosine_and_constant_schedules_hand_values():
    from fsrt.train.schedule import lr_at

    r = Recipe(epochs=10, lr=0.2, lr_ref_batch=256, batch_size=256, schedule="cos")
    assert lr_at(0, 4, r) == pytest.approx(0.2)
    assert lr_at(10, 4, r) == pytest.approx(0.17071067811865476, rel=1e-12)  # t = 2.5: 0.1 * (1 + cos(pi/4))
    assert lr_at(20, 4, r) == pytest.approx(0.1, rel=1e-12)                  # half way
    assert lr_at(40, 4, r) == pytest.approx(0.0, abs=1e-15)
    r2 = Recipe(epochs=10, lr=0.2, lr_ref_batch=128, batch_size=64, schedule="const")
    assert lr_at(17, 4, r2) == pytest.approx(0.1)                            # linear scaling only


# -- weight-decay groups -------------------------------------------------------------------
def test_no_decay_groups_hold_exactly_bn_and_bias():
    from fsrt.train.schedule import make_optimizer, param_groups

    model = tiny_model()
    groups = param_groups(model, 2e-5, True)
    decay, no_decay = set(groups[0]["names"]), set(groups[1]["names"])
    # independent rule: conv and FC weights are the only parameters with more than one dim
    all_names = {n for n, _ in model.named_parameters()}
    expect_decay = {n for n, p in model.named_parameters() if p.dim() > 1}
    assert decay == expect_decay and no_decay == all_names - expect_decay
    assert "head.fc.bias" in no_decay and "stem.0.1.weight" in no_decay and "head.fc.weight" in decay
    assert groups[0]["weight_decay"] == 2e-5 and groups[1]["weight_decay"] == 0.0
    assert len(param_groups(model, 5e-5, False)) == 1

    # one SGD step with zero gradients: only decayed weights move, by lr * wd * w exactly
    r = Recipe(lr=0.5, lr_ref_batch=256, batch_size=256, weight_decay=1e-2, momentum=0.9)
    opt = make_optimizer(model, r, "regnetx")
    before = {n: p.detach().clone().double() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        want = before[n] * (1 - 0.5 * 1e-2) if n in expect_decay else before[n]
        torch.testing.assert_close(p.detach().double(), want, rtol=1e-6, atol=1e-9)


# -- recipes -------------------------------------------------------------------------------
def test_named_recipes_hold_the_published_facts():
    assert set(recipe_names()) >= {"fast-scaling", "resnet-rs", "basic"}
    fs = load_recipe("fast-scaling")
    assert (fs.momentum, fs.label_smoothing, fs.mixup_alpha, fs.augment) == (0.9, 0.1, 0.2, "autoaugment")
    assert (fs.ema, fs.warmup_epochs, fs.schedule, fs.lr_beta) == (True, 5, "exp", 0.02)
    assert fs.weight_decay_for("regnety") == 2e-5 and fs.weight_decay_for("effnet") == 1e-5
    assert fs.no_decay_bn_bias
    assert load_recipe("fast-scaling", {"batch_size": 256}).batch_lr() == pytest.approx(0.5)  # 2.0 * 256/1024
    rs = load_recipe("resnet-rs")
    assert (rs.ema_decay, rs.weight_decay, rs.schedule, rs.augment) == (0.9999, 4e-5, "cos", "randaugment")
    assert rs.drop_path > 0 and rs.head_dropout > 0 and rs.label_smoothing == 0.1
    basic = load_recipe("basic", {"batch_size": 128})
    assert basic.batch_lr() == pytest.approx(0.1) and basic.weight_decay == 5e-5 and basic.schedule == "cos"
    assert (basic.mixup_alpha, basic.label_smoothing, basic.augment, basic.ema) == (0.0, 0.0, "none", False)


def test_recipe_overrides_are_typed_and_checked():
    assert coerce("weight_decay", "1e-5") == 1e-5
    assert coerce("ema", "false") is False and coerce("amp", "off") == "off" and coerce("epochs", "3") == 3
    with pytest.raises(FsrtError, match="unknown recipe key 'mixupp'"):
        load_recipe("basic", {"mixupp": 0.2})
    with pytest.raises(FsrtError, match="must be int"):
        coerce("epochs", "three")
    with pytest.raises(FsrtError, match="unknown recipe"):
        load_recipe("nope")


# -- mixup / cutmix / label smoothing ------------------------------------------------------
def _reference_loss(logits, y, eps, lam, perm):
    """float64 NumPy: -sum_k t_ik log softmax_ik, t = lam*smooth(y) + (1-lam)*smooth(y[perm])."""
    z = logits.astype(np.float64)
    n, k = z.shape
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    total = 0.0
    for i in range(n):
        t = np.full(k, eps / k)
        t[y[i]] += lam * (1 - eps)
        t[y[perm[i]]] += (1 - lam) * (1 - eps)
        total += -(t * logp[i]).sum()
    return total / n


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mixup_loss_matches_float64_reference(eps):
    from fsrt.train.loss import apply_mix, mixed_loss, sample_mix

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(16, 7, generator=g, dtype=torch.float64) * 3
    y = torch.randint(7, (16,), generator=g)
    mix = sample_mix(np.random.default_rng(1), 16, 8, 8, mixup_alpha=0.2, cutmix_alpha=0.0)
    assert mix.kind == "mixup" and 0 < mix.lam < 1
    ref = _reference_loss(logits.numpy(), y.numpy(), eps, mix.lam, mix.perm.numpy())
    assert mixed_loss(logits.float(), y, eps, mix).item() == pytest.approx(ref, rel=1e-5)
    ident = np.arange(16)
    assert mixed_loss(logits.float(), y, eps).item() == pytest.approx(_reference_loss(logits.numpy(), y.numpy(),
                                                                                      eps, 1.0, ident), rel=1e-5)
    x = torch.randn(16, 3, 8, 8, generator=g, dtype=torch.float64)
    xm = apply_mix(x, mix).numpy()
    xn = x.numpy()
    np.testing.assert_allclose(xm, mix.lam * xn + (1 - mix.lam) * xn[mix.perm.numpy()], rtol=1e-12)


def test_cutmix_box_and_lambda():
    from fsrt.train.loss import apply_mix, sample_mix

    mix = sample_mix(np.random.default_rng(5), 4, 10, 12, mixup_alpha=0.0, cutmix_alpha=1.0)
    assert mix.kind == "cutmix"
    y0, y1, x0, x1 = mix.box
    assert mix.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / 120)
    x = torch.arange(4 * 10 * 12, dtype=torch.float32).view(4, 1, 10, 12)
    out = apply_mix(x, mix)
    inside = torch.zeros(10, 12, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    for i in range(4):
        j = int(mix.perm[i])
        assert torch.equal(out[i, 0][inside], x[j, 0][inside])
        assert torch.equal(out[i, 0][~inside], x[i, 0][~inside])
    same = sample_mix(np.random.default_rng(5), 4, 10, 12, mixup_alpha=0.0, cutmix_alpha=1.0)
    assert same.box == mix.box and torch.equal(same.perm, mix.perm)


# -- EMA -----------------------------------------------------------------------------------
def test_ema_averages_weights_and_bn_buffers():
    from fsrt.train.ema import ModelEma

    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    ema = ModelEma(model, decay=0.9, warmup=False)
    e0 = {k: v.clone().double() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    sd = ema.state_dict()
    for key in ("0.weight", "0.bias", "1.running_mean", "1.running_var", "1.weight"):
        want = 0.9 * e0[key] + 0.1 * model.state_dict()[key].double()
        torch.testing.assert_close(sd[key].double(), want, rtol=1e-6, atol=1e-7)
    assert int(sd["1.num_batches_tracked"]) == 7
    warm = ModelEma(model, decay=0.9999, warmup=True)
    assert warm.current_decay() == pytest.approx(0.1)      # (1 + 0) / (10 + 0)
    warm.updates = 90
    assert warm.current_decay() == pytest.approx(0.91)     # 91 / 100


# -- data ----------------------------------------------------------------------------------
def test_crop_boxes_stay_inside_and_match_the_area_rule():
    from fsrt.train.data import center_box, rrc_box

    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = rrc_box(rng, 50, 30, 0.2)
        assert 0 <= x0 < x1 <= 50 and 0 <= y0 < y1 <= 30
        assert (x1 - x0) * (y1 - y0) >= 0.2 * 1500 * 0.9   # rounding slack
    assert center_box(200, 100, 0.875) == (56.25, 6.25, 143.75, 93.75)  # 87.5 px square, centred


def test_checkpoint_write_is_atomic_and_loadable(tmp_path):
    from fsrt.checkpoint import load_checkpoint, save_checkpoint
    from fsrt.train.rng import rng_state, set_rng_state

    state = rng_state()
    a = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), a)
    p = save_checkpoint({"spec": TINY, "model": {"w": torch.ones(2)}, "rng": state}, tmp_path / "c.pt")
    assert [f.name for f in tmp_path.iterdir()] == ["c.pt"]
    ck = load_checkpoint(p)
    assert ck["spec"]["name"] == "tiny" and torch.equal(ck["model"]["w"], torch.ones(2))
    assert math.isfinite(float(ck["model"]["w"].sum()))


@pytest.mark.parametrize("augment", ["autoaugment", "randaugment"])
def test_device_pipeline_shapes_and_normalization(augment):
    from fsrt.train.augment import MEAN, STD, DevicePipeline

    r = Recipe(augment=augment, crop_min_scale=0.35, hflip=0.5)
    pipe = DevicePipeline("small", 32, r, torch.device("cpu"))
    x = torch.rand(6, 1, 8, 8)
    out = pipe.train(x)
    assert out.shape == (6, 3, 32, 32) and torch.isfinite(out).all()
    ev = DevicePipeline("small", 32, Recipe(eval_crop=1.0), torch.device("cpu")).eval(torch.full((2, 1, 8, 8), 0.5))
    want = (0.5 - torch.tensor(MEAN)) / torch.tensor(STD)           # a flat image stays flat after resizing
    torch.testing.assert_close(ev, want.view(1, 3, 1, 1).expand(2, 3, 32, 32))
    crops = DevicePipeline("crops", 16, Recipe(), torch.device("cpu")).eval(torch.full((1, 3, 16, 16), 255,
                                                                                      dtype=torch.uint8))
    torch.testing.assert_close(crops[0, :, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD))


def _flag_worker(rank: int, port: int, out) -> None:
    import torch
    import torch.distributed as dist

    from fsrt.train.distributed import Dist, broadcast_flag

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        d, cpu = Dist(rank=rank, world=2, local_rank=rank), torch.device("cpu")
        out.put((rank, broadcast_flag(rank == 0, cpu, d), broadcast_flag(False, cpu, d)))
    finally:
        dist.destroy_process_group()


def test_nonfinite_loss_on_one_rank_stops_every_rank():
    # The loop stops when any rank's loss is non-finite; every rank must agree, or the one that
    # leaves the step loop alone hangs the others' gradient all-reduce.
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_flag_worker, args=(r, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == [(0, True, False), (1, True, False)]


def test_small_images_without_random_crop_are_plainly_resized():
    import torch.nn.functional as F

    from fsrt.train.augment import MEAN, STD, DevicePipeline

    x = torch.rand(4, 1, 8, 8)
    out = DevicePipeline("small", 32, Recipe(crop_min_scale=1.0, hflip=0.0), torch.device("cpu")).train(x)
    want = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    want = (want - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, want)
