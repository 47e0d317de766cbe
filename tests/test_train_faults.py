"""Training and checkpoint failures beyond bad arguments: each is one line on stderr, checked
before any work where it can be, and leaves nothing half-made (disk full, unwritable --out,
weights that do not fit, corrupt checkpoints, unreadable images, a resumed run with another
model, a missing GPU, a run folder given as the model, a loss that explodes)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from test_train_units import TINY

from conftest import CliResult, assert_one_line_error, run_fsrt
from fsrt.spec import ModelSpec

SMOKE = ("--data", "digits", "--recipe", "basic", "--epochs", "1", "--max-steps", "1", "--batch-size", "32",
         "--no-progress")


@pytest.fixture
def tiny_spec(tmp_path):
    p = tmp_path / "tiny.yaml"
    ModelSpec.from_dict(TINY).save(p)
    return p


@pytest.fixture
def fsrt(capsys):
    """Run ``fsrt.cli.main`` in this process (monkeypatched faults apply; real exit codes)."""
    from fsrt.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code or 0
        got = capsys.readouterr()
        return CliResult(code, got.out, got.err)

    return run


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- item 4: the run folder is checked first; a full disk is one line and leaves nothing ---------
def test_unwritable_out_fails_before_any_work(tiny_spec, tmp_path, fsrt, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.TemporaryFile

    def refuse_in_locked(*a, dir=None, **kw):  # a read-only folder, also for root
        if dir is not None and Path(dir).resolve() == locked.resolve():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse_in_locked)
    res = fsrt("train", tiny_spec, "--data", tmp_path / "no-data-either", "--out", locked / "run")
    assert_one_line_error(res, "not writable", "Permission denied")   # before the data is even looked at
    assert _files(locked) == []

    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(fsrt("train", tiny_spec, *SMOKE, "--out", afile), "is a file")
    assert_one_line_error(fsrt("train", tiny_spec, *SMOKE, "--out", afile / "run"), "cannot be created", "is a file")
    assert afile.read_text() == "x"


def test_disk_full_while_saving_is_one_line_and_leaves_nothing(tiny_spec, tmp_path, fsrt, monkeypatch, one_thread):
    def full_disk_save(obj, f, *a, **kw):
        f.write(b"PK" * 1000)                      # part of the archive reached the disk, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk_save)
    out = tmp_path / "runs" / "full"
    res = fsrt("train", tiny_spec, *SMOKE, "--out", out)
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert lines[-1].startswith("error: cannot write") and "disk is full" in lines[-1], res.err
    assert "last.pt" in lines[-1] and "Traceback" not in res.err
    assert not out.exists() and _files(tmp_path / "runs") == []   # no run folder, no temp file


def test_a_write_failure_after_good_epochs_keeps_the_last_good_checkpoint(tiny_spec, tmp_path, fsrt, monkeypatch,
                                                                         one_thread):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def fail_third(obj, f, *a, **kw):               # epoch 1 writes last.pt and best.pt, epoch 2 fails
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", fail_third)
    res = fsrt("train", tiny_spec, *SMOKE, "--epochs", "2", "--out", out)   # the last --epochs wins
    assert res.code == 2 and "disk is full" in res.err.strip().splitlines()[-1], res.err
    assert _files(out) == ["best.pt", "last.pt", "log.jsonl"]
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


class Foreign:
    """Not a tensor or plain value: a weights-only load refuses it."""


# -- items 7, 18, 20: checkpoints that do not fit, resumed with another model, or corrupt ------------
def _wider_tiny() -> ModelSpec:
    return ModelSpec.from_dict({**TINY, "stages": [{**TINY["stages"][0], "width": 48}, TINY["stages"][1]]})


def test_checkpoint_weights_that_do_not_fit_its_spec_are_one_line(tmp_path, fsrt):
    from fsrt.models import build_model

    bad = tmp_path / "bad.pt"
    torch.save({"spec": TINY, "model": build_model(_wider_tiny()).state_dict(), "ema": None}, bad)
    res = fsrt("train", bad, *SMOKE, "--out", tmp_path / "o")
    assert_one_line_error(res, "do not match its own spec", "shape of")
    assert not (tmp_path / "o").exists()
    assert_one_line_error(fsrt("export", bad, "-o", tmp_path / "x.onnx"), "do not match")


def test_resume_refuses_a_damaged_run_and_another_model(tiny_spec, tmp_path, fsrt, one_thread):
    from fsrt.models import build_model

    out = tmp_path / "run"
    assert fsrt("train", tiny_spec, *SMOKE, "--out", out).code == 0
    before = (out / "last.pt").read_bytes()
    res = fsrt("train", "RegNetX-200MF", *SMOKE, "--out", out, "--resume")
    assert_one_line_error(res, "is a run of", "not of RegNetX-200MF")
    other = tmp_path / "other.yaml"
    _wider_tiny().save(other)
    assert_one_line_error(fsrt("train", other, *SMOKE, "--out", out, "--resume"), "is a run of")
    assert (out / "last.pt").read_bytes() == before

    ck = torch.load(out / "last.pt", weights_only=True)
    ck["model"] = build_model(_wider_tiny()).state_dict()
    torch.save(ck, out / "last.pt")
    assert_one_line_error(fsrt("train", tiny_spec, *SMOKE, "--out", out, "--resume"), "do not match",
                          "cannot be resumed")


def test_corrupt_checkpoints_get_complete_lines_without_unsafe_advice(tmp_path, fsrt):
    good = tmp_path / "good.pt"
    torch.save({"spec": TINY, "model": {}}, good)
    data = good.read_bytes()

    cases = {"empty.pt": (b"", "is empty"),
             "trunc.pt": (data[: len(data) // 2], "corrupt or truncated"),
             "noise.pt": (os.urandom(3000), "not a torch checkpoint")}
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"spec": TINY, "model": Foreign()}, tmp_path / "foreign.pt")
    cases["foreign.pt"] = (None, "other than tensors")
    for name, (_, expect) in cases.items():
        for cmd in (("train", tmp_path / name, *SMOKE, "--out", tmp_path / "o"), ("complexity", tmp_path / name)):
            res = fsrt(*cmd)
            assert_one_line_error(res, expect)
            line = res.err.strip()
            assert "weights_only" not in line and "False" not in line, line
            assert line.endswith(("torch.save", "best.pt", "code from the file)", "written completely")), line


# -- item 10: unreadable images --------------------------------------------------------------------
def _image_folder(root: Path, corrupt_train: bool, corrupt_val: bool) -> None:
    import numpy as np
    from PIL import Image

    for split, bad in (("train", corrupt_train), ("val", corrupt_val)):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(4):
                path = root / split / f"c{c}" / f"{i}.png"
                if bad:
                    path.write_bytes(b"not an image")
                else:
                    arr = np.random.default_rng(c * 10 + i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
                    Image.fromarray(arr).save(path)


@pytest.mark.parametrize("bad_split", ["train", "val"])
def test_a_folder_of_unreadable_images_is_an_error_not_nan(tiny_spec, tmp_path, fsrt, bad_split, one_thread):
    root = tmp_path / "imgs"
    _image_folder(root, bad_split == "train", bad_split == "val")
    spec = ModelSpec.from_dict({**TINY, "num_classes": 2})
    spec.save(tmp_path / "two.yaml")
    out = tmp_path / "o"
    res = fsrt("train", tmp_path / "two.yaml", "--data", root, "--recipe", "basic", "--epochs", "1",
               "--batch-size", "4", "--workers", "0", "--resolution", "16", "--no-progress", "--out", out)
    assert res.code == 2, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("error: no readable") and bad_split in last and "8" in last, res.err
    assert "Traceback" not in res.err and not out.exists()   # no summary.json with NaN, no best.pt named


# -- item 19: device and run folder are checked before the banner and the data -----------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_missing_cuda_is_reported_before_anything_else(tiny_spec, tmp_path, fsrt):
    res = fsrt("train", tiny_spec, "--data", tmp_path / "missing", "--device", "cuda")
    assert_one_line_error(res, "no CUDA GPU")
    assert_one_line_error(fsrt("train", tiny_spec, "--data", "digits", "--device", "tpu"),
                          "--device must be auto, cpu, cuda")


def test_an_existing_run_is_reported_before_the_data_is_read(tiny_spec, tmp_path, fsrt):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"a previous run")
    res = fsrt("train", tiny_spec, "--data", tmp_path / "missing", "--out", out)
    assert_one_line_error(res, "last.pt exists", "--resume")
    assert (out / "last.pt").read_bytes() == b"a previous run"


# -- item 22: no DataLoader warnings on a 2-core machine ----------------------------------------------
def test_image_folders_on_two_cores_print_no_loader_warning(tiny_spec, tmp_path):
    root = tmp_path / "imgs"
    _image_folder(root, False, False)
    spec = tmp_path / "two.yaml"
    ModelSpec.from_dict({**TINY, "num_classes": 2}).save(spec)
    cores = sorted(os.sched_getaffinity(0))[:2]
    cmd = [sys.executable, "-c", "from fsrt.cli import main; main()", "train", str(spec), "--data", str(root),
           "--recipe", "basic", "--epochs", "1", "--batch-size", "4", "--workers", "4", "--resolution", "16",
           "--no-progress", "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=lambda: os.sched_setaffinity(0, cores))
    assert proc.returncode == 0, proc.stderr
    assert "warn" not in proc.stderr.lower() and "worker" not in proc.stderr.lower(), proc.stderr


# -- item 23: a run folder given as the model -------------------------------------------------------
def test_a_run_folder_as_the_model_points_to_its_checkpoint(tmp_path, fsrt):
    run = tmp_path / "rx200-digits"
    run.mkdir()
    torch.save({"spec": TINY, "model": {}}, run / "last.pt")
    for cmd in (("train", run, "--data", "digits"), ("complexity", run), ("export", run)):
        assert_one_line_error(fsrt(*cmd), "is a folder", str(run / "last.pt"))
    assert_one_line_error(fsrt("complexity", tmp_path), "is a folder", "zoo name")


# -- issue 12: a loss that explodes stops at once with the likely fix --------------------------------
def test_an_exploding_loss_stops_in_the_first_epoch_with_the_fix(tmp_path, one_thread):
    # RegNetX-200MF on digits with the classifier at the recipe's rate and residual blocks that do
    # not start as identities (both adaptations undone): its logits jump by tens per step and the
    # loss leaves ln 10 within a few steps.
    out = tmp_path / "boom"
    res = run_fsrt("train", "RegNetX-200MF", "--data", "digits", "--recipe", "basic", "--epochs", "10",
                   "--set", "head_lr_scale=1", "--set", "zero_init_last_bn=false", "--set", "log_every=2",
                   "--no-progress", "--out", str(out),
                   env={"OMP_NUM_THREADS": "1"})
    assert res.code == 1, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("error: the loss exploded in epoch 1 "), res.err
    assert "uniform guess over 10 classes" in last and "lower --lr (e.g. 0.025)" in last, last
    assert "Traceback" not in res.err and "epoch 1/10" not in res.err
    assert not (out / "summary.json").exists() and not out.exists()


def test_explosion_threshold_is_three_times_a_uniform_guess():
    import math

    from fsrt.train.loop import _loss_failure

    assert _loss_failure(3 * math.log(10) * 0.99, 10) == "" and _loss_failure(3 * math.log(10) * 1.01, 10) == "exploded"
    assert _loss_failure(3.0 * 1.01, 2) == "exploded" and _loss_failure(2.9, 2) == ""   # ln 2 < 1: floor of 1
    assert _loss_failure(float("nan"), 10) == "nonfinite" and _loss_failure(float("inf"), 1000) == "nonfinite"


def test_summary_is_strict_json_and_names_only_files_that_exist(tiny_spec, tmp_path, fsrt, one_thread):
    out = tmp_path / "ok"
    assert fsrt("train", tiny_spec, *SMOKE, "--out", out).code == 0
    s = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert Path(s["checkpoint"]).is_file() and Path(s["best_checkpoint"]).is_file()
