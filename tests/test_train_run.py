"""The trainer end to end: learning on digits, exact resume, DDP on CPU, NaN stop, the
checkpoint contract, image folders with corrupt files, and bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fault_helpers import run_main
from test_train_units import TINY

from conftest import assert_one_line_error, run_fsrt
from fsrt.spec import ModelSpec

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_spec(tmp_path):
    p = tmp_path / "tiny.yaml"
    ModelSpec.from_dict(TINY).save(p)
    return p


def _run_in_process(out: Path, recipe_overrides: dict, *, stop_after=None, resume=False, max_steps=None, source=None):
    from fsrt.train.data import digits_source
    from fsrt.train.loop import RunOptions, resolve_spec, train
    from fsrt.train.recipe import load_recipe

    source = source or digits_source()
    recipe = load_recipe("basic", {**source.recipe_defaults, **recipe_overrides})
    spec = resolve_spec(ModelSpec.from_dict(TINY), num_classes=10, resolution=32, recipe=recipe, from_zoo=False,
                        what="tiny")
    opts = RunOptions(out=out, data="digits", resume=resume, stop_after=stop_after, max_steps=max_steps,
                      progress=False)
    return train(spec, source, recipe, opts)


def test_small_regnet_learns_digits_from_the_cli(tiny_spec, tmp_path):
    out = tmp_path / "run"
    res = run_fsrt("train", str(tiny_spec), "--data", "digits", "--recipe", "basic", "--epochs", "4",
                   "--batch-size", "64", "--lr", "0.2", "--set", "ema=true", "--out", str(out), "--json",
                   env=ONE_THREAD)
    assert res.code == 0, res.err
    s = res.json()
    assert s["epochs"] == 4 and s["finished"] and s["resolution"] == 32
    assert s["top1"] > 0.5, s            # chance is 0.1
    assert s["ema_top1"] is not None and s["ema_top1"] > 0.3
    assert s["top1"] <= s["top5"] <= 1.0 and s["images_per_s"] > 0
    assert "32 px" in res.err
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and rows[-1]["top1"] == s["top1"]
    assert json.loads((out / "summary.json").read_text())["top1"] == s["top1"]

    # the checkpoint contract: spec + model + ema, readable by fsrt.source, and an independent
    # evaluation (plain resize + normalize, own top-1 count) reproduces the logged accuracy
    from fsrt.models import build_model
    from fsrt.source import get_spec, load_checkpoint
    from fsrt.train.data import digits_source

    ck = load_checkpoint(out / "last.pt")
    assert {"spec", "model", "ema", "optimizer", "scaler", "epoch", "rng", "config"} <= set(ck)
    spec = get_spec(out / "last.pt")
    assert (spec.num_classes, spec.resolution, ck["epoch"]) == (10, 32, 4)
    model = build_model(spec)
    model.load_state_dict(ck["model"])
    model.eval()
    src = digits_source()
    x = F.interpolate(src.x_val, size=(32, 32), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = model((x - mean) / std).argmax(1)
    assert (pred == src.y_val).float().mean().item() == pytest.approx(s["top1"], abs=1.5 / len(src.y_val))
    assert (out / "best.pt").exists()


def test_resume_reproduces_the_uninterrupted_run(tmp_path, one_thread):
    overrides = {"epochs": 3, "batch_size": 64, "lr": 0.2, "lr_ref_batch": 64, "ema": True,
                 "mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing": 0.1, "warmup_epochs": 1.0,
                 "swa": True, "swa_start": 0.5}
    full = _run_in_process(tmp_path / "full", overrides, max_steps=6)
    part = _run_in_process(tmp_path / "part", overrides, max_steps=6, stop_after=1)
    assert part["epochs"] == 1 and not part["finished"]
    resumed = _run_in_process(tmp_path / "part", overrides, max_steps=6, resume=True)
    assert resumed["finished"] and resumed["swa_top1"] == full["swa_top1"] is not None
    log_full = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    log_res = [json.loads(x) for x in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    keys = ("epoch", "step", "train_loss", "lr", "top1", "top5", "ema_top1", "ema_top5")
    assert [[r[k] for k in keys] for r in log_res] == [[r[k] for k in keys] for r in log_full]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert int(a["swa"]["n_averaged"]) == 2        # epochs 2 and 3 are after swa_start * epochs = 1.5
    for part_name in ("model", "ema", "swa"):
        for k, v in a[part_name].items():
            assert torch.equal(v, b[part_name][k]), (part_name, k)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, one_thread):
    from fsrt.train.data import TensorSource, digits_source
    from fsrt.train.loop import TrainingDiverged

    class PoisonedDigits(TensorSource):
        """Digits whose second epoch feeds NaN images."""

        def train_batches(self, epoch, *a, **kw):
            for x, y in super().train_batches(epoch, *a, **kw):
                yield (x * float("nan") if epoch == 1 else x), y

    d = digits_source()
    src = PoisonedDigits("digits", "small", d.x_train, d.y_train, d.x_val, d.y_val, 10,
                         recipe_defaults=d.recipe_defaults)
    with pytest.raises(TrainingDiverged, match="non-finite") as err:
        _run_in_process(tmp_path / "nan", {"epochs": 3, "batch_size": 64, "log_every": 2}, source=src, max_steps=4)
    assert "epoch 2" in str(err.value) and "last.pt (epoch 1)" in str(err.value)
    ck = torch.load(tmp_path / "nan" / "last.pt", weights_only=True)
    assert ck["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    assert err.value.exit_code == 1


def test_two_process_gloo_ddp_end_to_end(tiny_spec, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "fsrt.cli",
           "train", str(tiny_spec), "--data", "digits", "--recipe", "basic", "--epochs", "2", "--batch-size", "64",
           "--lr", "0.2", "--max-steps", "5", "--set", "ema=true", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **ONE_THREAD})
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)           # one JSON document: only rank 0 prints
    assert s["world_size"] == 2 and s["epochs"] == 2 and 0 <= s["top1"] <= 1
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["config"]["world_size"] == 2 and ck["scheduler"]["step"] == 10
    assert not any(k.startswith("module.") for k in ck["model"])
    rows = (out / "log.jsonl").read_text().splitlines()
    assert len(rows) == 2


def _png(path: Path, seed: int) -> None:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def test_image_folders_skip_and_count_corrupt_files(tiny_spec, tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 6), ("val", 3)):
        for c in range(10):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                _png(root / split / f"c{c}" / f"{i}.png", c * 100 + i)
    (root / "train" / "c0" / "bad.jpg").write_bytes(b"not an image at all")
    (root / "val" / "c1" / "trunc.png").write_bytes((root / "val" / "c1" / "0.png").read_bytes()[:60])
    res = run_fsrt("train", str(tiny_spec), "--data", str(root), "--recipe", "basic", "--epochs", "1",
                   "--batch-size", "61", "--workers", "1", "--resolution", "32", "--out", str(tmp_path / "o"),
                   "--json", env=ONE_THREAD)
    assert res.code == 0, res.err
    s = res.json()
    assert s["skipped_images"] == 2 and s["num_classes"] == 10   # all 61 train and 31 val files seen once
    assert "skipped 2 unreadable" in res.err


def test_bad_input_gives_one_line_errors(tiny_spec, tmp_path, capsys):
    res = run_fsrt("train", str(tiny_spec), "--data", str(tmp_path / "missing"))   # real process once
    assert_one_line_error(res, "does not exist")

    def fsrt(*args):
        return run_main(capsys, *args)

    root = tmp_path / "d"
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        (root / split / "b").mkdir(parents=True)
        _png(root / split / "a" / "0.png", 1)
    _png(root / "val" / "b" / "0.png", 2)
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", str(root)), "empty class folder", "b")
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", str(tmp_path / "nodir")), "does not exist")
    # a spec file with 1000 classes does not fit the 10 digit classes
    wrong = tmp_path / "wrong.yaml"
    ModelSpec.from_dict({**TINY, "num_classes": 1000}).save(wrong)
    assert_one_line_error(fsrt("train", str(wrong), "--data", "digits"), "num_classes 1000", "10 classes")
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", "digits", "--set", "mixupp=0.1"),
                          "unknown recipe key 'mixupp'")
    bad_recipe = tmp_path / "r.yaml"
    bad_recipe.write_text("epochs: 3\nlr_warmup: 5\n")
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", "digits", "--recipe", str(bad_recipe)),
                          "unknown recipe key", "lr_warmup")
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", "digits", "--recipe", "fastest"),
                          "unknown recipe 'fastest'")
    assert_one_line_error(fsrt("train", str(tiny_spec), "--data", "digits", "--out", str(tmp_path / "x"),
                                   "--resume"), "no checkpoint")
