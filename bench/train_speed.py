"""Trainer speed: ``fsrt train`` against a plain PyTorch loop, and digits accuracy per CPU minute.

Run: ``python -m fsrt.bench.train_speed [--quick] [--json] [--device cpu|cuda]``.

1. Throughput (augmentation off: ``basic`` recipe, no crop/flip/mixup/EMA, synthetic data):
   images/s of the trainer's loop (``fsrt.train.loop.train``, what the CLI runs; its figure
   excludes evaluation) against a hand-written loop (same model, SGD settings, batches and
   batch size: forward, cross-entropy, backward, step). Runs alternate fsrt / plain and each
   figure is the median of per-epoch rates after a warm-up epoch; the ratio is the goal
   metric (>= 0.95). Rates are given per wall second and per CPU second of the process
   (``time.process_time``): on a shared machine the CPU-time ratio is the stable one.
2. Digits: top-1 of a small RegNetX after each epoch against the CPU time spent training
   (``time.process_time``, all threads), i.e. accuracy reached per minute of CPU time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

TINY = {
    "family": "regnetx", "name": "tiny-regnetx", "resolution": 32, "num_classes": 10,
    "stem": {"type": "simple", "widths": [16]},
    "stages": [{"depth": 1, "width": 32, "stride": 2, "block": "x", "group_w": 8},
               {"depth": 2, "width": 64, "stride": 2, "block": "x", "group_w": 8}],
}
AUG_OFF = {"augment": "none", "hflip": 0.0, "crop_min_scale": 1.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
           "label_smoothing": 0.0, "ema": False, "warmup_epochs": 0.0, "log_every": 50}


def _spec(name: str, resolution: int, num_classes: int):
    from fsrt.spec import ModelSpec
    from fsrt.zoo import zoo_spec

    base = ModelSpec.from_dict(TINY) if name == "tiny" else zoo_spec(name)
    return base.replace(resolution=resolution, num_classes=num_classes, eval_resolution=None)


def fsrt_rates(spec, source, batch: int, epochs: int, device: str) -> list[tuple[float, float]]:
    """Per-epoch (images per wall second, images per CPU second) of the trainer's loop."""
    from fsrt.train.loop import RunOptions, train
    from fsrt.train.recipe import load_recipe

    recipe = load_recipe("basic", {**AUG_OFF, "batch_size": batch, "epochs": epochs, "workers": 0})
    with tempfile.TemporaryDirectory() as tmp:
        train(spec, source, recipe, RunOptions(out=Path(tmp), device=device, progress=False))
        rows = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    return [(r["images_per_s"], r["images_per_s"] * r["epoch_time_s"] / r["epoch_cpu_s"]) for r in rows]


def plain_rates(spec, source, batch: int, epochs: int, device: str) -> list[tuple[float, float]]:
    """Per-epoch (images per wall second, per CPU second) of a minimal hand-written loop."""
    import torch
    import torch.nn.functional as F

    from fsrt.models import build_model
    from fsrt.train.augment import MEAN, STD

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(spec).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    mean, std = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1), torch.tensor(STD, device=dev).view(1, 3, 1, 1)
    steps = source.steps_per_epoch(batch, 1)
    rates = []
    for epoch in range(epochs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for x, y in source.train_batches(epoch, batch, 0):
            x, y = (x.to(dev) - mean) / std, y.to(dev)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rates.append((n / (time.perf_counter() - t0), n / (time.process_time() - c0)))
        assert n == steps * batch
    return rates


def throughput(name: str, resolution: int, batch: int, n_images: int, rounds: int, epochs: int, device: str) -> dict:
    """fsrt vs plain images/s on synthetic data with augmentation off."""
    from fsrt.train.data import synthetic_source

    spec = _spec(name, resolution, 10)
    source = synthetic_source(10, resolution, n_train=n_images, n_val=batch)
    f_all, p_all = [], []
    for _ in range(rounds):
        f_all += fsrt_rates(spec, source, batch, epochs, device)[1:]
        p_all += plain_rates(spec, source, batch, epochs, device)[1:]
    fw, pw = statistics.median(r[0] for r in f_all), statistics.median(r[0] for r in p_all)
    fc, pc = statistics.median(r[1] for r in f_all), statistics.median(r[1] for r in p_all)
    return {"model": name, "resolution": resolution, "batch": batch, "fsrt_images_per_s": round(fw, 1),
            "plain_images_per_s": round(pw, 1), "ratio_wall": round(fw / pw, 3),
            "fsrt_images_per_cpu_s": round(fc, 1), "plain_images_per_cpu_s": round(pc, 1),
            "ratio_cpu": round(fc / pc, 3), "epochs_measured": len(f_all)}


def digits_curve(epochs: int, batch: int, lr: float, device: str) -> dict:
    """Top-1 on digits after each epoch against cumulative training CPU time."""
    from fsrt.train.data import digits_source
    from fsrt.train.loop import RunOptions, resolve_spec, train
    from fsrt.train.recipe import load_recipe

    source = digits_source()
    recipe = load_recipe("basic", {**source.recipe_defaults, "batch_size": batch, "epochs": epochs, "lr": lr,
                                   "lr_ref_batch": batch, "ema": True})
    spec = resolve_spec(_spec("tiny", 32, 10), num_classes=10, resolution=32, recipe=recipe, from_zoo=True, what="")
    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(spec, source, recipe, RunOptions(out=Path(tmp), device=device, progress=False))
        rows = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    total_cpu = time.process_time() - c0
    cpu, curve = 0.0, []
    for r in rows:
        cpu += r["epoch_cpu_s"]
        curve.append({"epoch": r["epoch"], "train_cpu_s": round(cpu, 2), "top1": round(r["top1"], 4),
                      "ema_top1": round(r["ema_top1"], 4)})
    final = max(summary["top1"], summary["ema_top1"])
    first90 = next((c["train_cpu_s"] for c in curve if max(c["top1"], c["ema_top1"]) >= 0.9), None)
    return {"model": "tiny-regnetx (1.0 MF at 32 px)", "batch": batch, "lr": lr, "curve": curve,
            "final_top1": round(final, 4), "train_cpu_min": round(cpu / 60, 3),
            "process_cpu_min_incl_eval": round(total_cpu / 60, 3), "train_cpu_s_to_90pct": first90}


def run(quick: bool = False, device: str = "cpu") -> dict:
    """All figures as a dict."""
    import torch

    rounds, epochs = (1, 3) if quick else (3, 4)
    cases = [("tiny", 32, 64, 1024), ("RegNetX-200MF", 64, 32, 256)]
    if device.startswith("cuda"):
        cases = [("tiny", 32, 256, 16384), ("RegNetX-200MF", 224, 128, 4096)]
    out = {"device": device, "torch_threads": torch.get_num_threads(),
           "throughput": [throughput(n, r, b, k, rounds, epochs, device) for n, r, b, k in cases]}
    out["digits"] = digits_curve(6 if quick else 10, 64, 0.2, device)
    return out


def main() -> None:
    """Command-line entry: print a table (or JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and epochs")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    res = run(args.quick, args.device)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"device {res['device']}, torch threads {res['torch_threads']}")
    print(f"{'model':<16}{'res':>5}{'batch':>7}{'fsrt im/s':>12}{'plain im/s':>12}{'ratio':>8}"
          f"{'fsrt im/cpu-s':>15}{'plain im/cpu-s':>16}{'ratio':>8}")
    for t in res["throughput"]:
        print(f"{t['model']:<16}{t['resolution']:>5}{t['batch']:>7}{t['fsrt_images_per_s']:>12.1f}"
              f"{t['plain_images_per_s']:>12.1f}{t['ratio_wall']:>8.3f}{t['fsrt_images_per_cpu_s']:>15.1f}"
              f"{t['plain_images_per_cpu_s']:>16.1f}{t['ratio_cpu']:>8.3f}")
    d = res["digits"]
    print(f"\ndigits, {d['model']}, batch {d['batch']}, lr {d['lr']}:")
    for c in d["curve"]:
        print(f"  epoch {c['epoch']:>2}  train CPU {c['train_cpu_s']:>7.1f} s  top1 {c['top1']:.2%}  "
              f"EMA {c['ema_top1']:.2%}")
    print(f"  final top1 {d['final_top1']:.2%} after {d['train_cpu_min']:.2f} train-CPU minutes "
          f"({d['process_cpu_min_incl_eval']:.2f} incl. eval and setup); 90% top-1 (model or EMA) after "
          f"{d['train_cpu_s_to_90pct']} train-CPU seconds")


if __name__ == "__main__":
    main()
