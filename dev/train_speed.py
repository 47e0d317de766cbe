"""Trainer speed: digits accuracy per CPU minute for one model per family, and the trainer's
images/s against a plain PyTorch loop on the same model.

Run from the repository root (developer tool, not installed with the package)::

    python dev/train_speed.py [--part digits|throughput|all] [--quick] [--json]

1. digits: ``fsrt train MODEL --data digits --epochs E --json`` exactly as a user runs it
   (default recipe, no other flags), one subprocess per model; from its ``log.jsonl``: top-1 and
   EMA top-1 after each epoch against the CPU time the training loop used (``epoch_cpu_s``, all
   threads; evaluation excluded), the CPU seconds to reach 90%, and the wall time of the command.
2. throughput: the trainer's loop (``fsrt.train.loop.train``, in process, ``basic`` recipe with
   augmentation, mixup, EMA and warm-up off, synthetic data) against a hand-written loop
   (same model, SGD settings, batches: forward, cross-entropy, backward, step). The two run
   alternately (ABBA order) for ``--rounds`` rounds; each round's figure is the median per-epoch
   rate after a warm-up epoch, and the ratio fsrt / plain is reported per round with its
   median and range. Rates are per wall second and per CPU second of the process
   (``time.process_time``): on a shared machine the CPU-time ratio is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAMILIES = ("RegNetX-200MF", "RegNetY-200MF", "RegNetZ-500MF", "EfficientNet-B0", "ResNet-50", "ResNet-RS-50")
# Throughput settings: no augmentation, mixing, EMA or warm-up; the classifier's rate is held low
# as fsrt's 10-class adaptation would (random labels at full rate make the loss explode, which the
# trainer stops; the rate does not change the cost of a step).
AUG_OFF = {"augment": "none", "hflip": 0.0, "crop_min_scale": 1.0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
           "label_smoothing": 0.0, "ema": False, "warmup_epochs": 0.0, "log_every": 50, "workers": 0,
           "head_lr_scale": 0.05}


# -- 1. digits: accuracy per CPU minute ----------------------------------------------------------------
def digits_run(model: str, epochs: int, max_steps: int | None = None) -> dict:
    """One ``fsrt train MODEL --data digits`` run as a user types it; its curve from log.jsonl."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fsrt.cli", "train", model, "--data", "digits", "--epochs", str(epochs),
               "--out", str(Path(tmp) / "run"), "--json"]
        if max_steps:
            cmd += ["--max-steps", str(max_steps)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode:
            return {"model": model, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        summary = json.loads(proc.stdout)
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    cpu, curve = 0.0, []
    for r in rows:
        cpu += r["epoch_cpu_s"]
        curve.append({"epoch": r["epoch"], "train_cpu_s": round(cpu, 1), "top1": r["top1"],
                      "ema_top1": r.get("ema_top1")})
    best = [max(c["top1"], c["ema_top1"] or 0.0) for c in curve]
    to90 = next((c["train_cpu_s"] for c, b in zip(curve, best) if b >= 0.9), None)
    return {"model": model, "resolution": summary["resolution"], "epochs": summary["epochs"],
            "top1": summary["top1"], "ema_top1": summary["ema_top1"], "train_cpu_min": round(cpu / 60, 2),
            "top1_per_cpu_min": round(max(best) / max(cpu / 60, 1e-9), 3), "cpu_s_to_90pct": to90,
            "wall_s": round(wall, 1), "adapted": [a["key"] for a in summary.get("adaptations", [])],
            "curve": curve}


# -- 2. throughput: trainer vs plain loop --------------------------------------------------------------
def _spec(name: str, resolution: int):
    from fsrt.zoo import zoo_spec

    return zoo_spec(name).replace(resolution=resolution, num_classes=10, eval_resolution=None)


def fsrt_rates(spec, source, batch: int, epochs: int) -> list[tuple[float, float]]:
    """Per-epoch (images per wall second, images per CPU second) of the trainer's loop."""
    from fsrt.train.loop import RunOptions, train
    from fsrt.train.recipe import load_recipe

    recipe = load_recipe("basic", {**AUG_OFF, "batch_size": batch, "epochs": epochs})
    with tempfile.TemporaryDirectory() as tmp:
        train(spec, source, recipe, RunOptions(out=Path(tmp) / "run", device="cpu", progress=False))
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()]
    return [(r["images_per_s"], r["images_per_s"] * r["epoch_time_s"] / r["epoch_cpu_s"]) for r in rows]


def plain_rates(spec, source, batch: int, epochs: int) -> list[tuple[float, float]]:
    """Per-epoch (images per wall second, per CPU second) of a minimal hand-written loop."""
    import torch
    import torch.nn.functional as F

    from fsrt.models import build_model
    from fsrt.train.augment import MEAN, STD

    torch.manual_seed(0)
    model = build_model(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    rates = []
    for epoch in range(epochs):
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for x, y in source.train_batches(epoch, batch, 0):
            loss = F.cross_entropy(model((x - mean) / std), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        loss.item()
        rates.append((n / (time.perf_counter() - t0), n / (time.process_time() - c0)))
    return rates


def throughput(name: str, resolution: int, batch: int, n_images: int, rounds: int, epochs: int) -> dict:
    """fsrt vs plain images/s, interleaved ABBA over ``rounds``; ratio per round, median and range."""
    from fsrt.train.data import synthetic_source

    spec = _spec(name, resolution)
    source = synthetic_source(10, resolution, n_train=n_images, n_val=batch)
    per_round = []
    for i in range(rounds):
        order = (fsrt_rates, plain_rates) if i % 2 == 0 else (plain_rates, fsrt_rates)
        got = {fn.__name__: fn(spec, source, batch, epochs)[1:] for fn in order}   # drop the warm-up epoch
        f, p = got["fsrt_rates"], got["plain_rates"]
        fw, pw = statistics.median(r[0] for r in f), statistics.median(r[0] for r in p)
        fc, pc = statistics.median(r[1] for r in f), statistics.median(r[1] for r in p)
        per_round.append({"fsrt_images_per_s": fw, "plain_images_per_s": pw, "ratio_wall": fw / pw,
                          "ratio_cpu": fc / pc})

    def spread(key: str) -> dict:
        vals = [r[key] for r in per_round]
        return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3)}

    return {"model": name, "resolution": resolution, "batch": batch, "rounds": rounds,
            "epochs_per_round": epochs, "fsrt_images_per_s": spread("fsrt_images_per_s"),
            "plain_images_per_s": spread("plain_images_per_s"), "ratio_wall": spread("ratio_wall"),
            "ratio_cpu": spread("ratio_cpu")}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print tables (or one JSON document)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("digits", "throughput", "all"), default="all")
    ap.add_argument("--models", default=",".join(FAMILIES), help="digits models (comma list)")
    ap.add_argument("--epochs", type=int, default=10, help="digits epochs")
    ap.add_argument("--max-steps", type=int, default=None, help="digits: cap steps per epoch (smoke runs)")
    ap.add_argument("--rounds", type=int, default=6, help="throughput: interleaved rounds")
    ap.add_argument("--round-epochs", type=int, default=4, help="throughput: epochs per loop and round (first dropped)")
    ap.add_argument("--images", type=int, default=1280, help="throughput: synthetic images per epoch")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3 epochs, digits for 3 epochs")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args(argv)
    import torch

    epochs, rounds, t_epochs = (3, 2, 3) if args.quick else (args.epochs, args.rounds, args.round_epochs)
    out = {"torch_threads": torch.get_num_threads(), "cpus": len(os.sched_getaffinity(0))}
    if args.part in ("digits", "all"):
        out["digits"] = [digits_run(m, epochs, args.max_steps) for m in args.models.split(",")]
    if args.part in ("throughput", "all"):
        out["throughput"] = [throughput("RegNetX-200MF", 32, 128, args.images, rounds, max(t_epochs, 2))]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    _print(out)


def _print(out: dict) -> None:
    print(f"torch threads {out['torch_threads']}, usable cores {out['cpus']}")
    for d in out.get("digits", []):
        if "error" in d:
            print(f"{d['model']:<16} error: {d['error']}")
            continue
        print(f"{d['model']:<16} {d['resolution']:>3} px  top1 {d['top1']:.2%}  EMA {d['ema_top1'] or 0:.2%}  "
              f"train CPU {d['train_cpu_min']:.2f} min  top1/CPU-min {d['top1_per_cpu_min']:.3f}  "
              f"90% after {d['cpu_s_to_90pct']} CPU-s  wall {d['wall_s']:.0f} s  adapted {','.join(d['adapted'])}")
    for t in out.get("throughput", []):
        r, c = t["ratio_wall"], t["ratio_cpu"]
        print(f"{t['model']} {t['resolution']} px batch {t['batch']}: fsrt {t['fsrt_images_per_s']['median']:.0f} "
              f"im/s, plain {t['plain_images_per_s']['median']:.0f} im/s; ratio wall {r['median']:.3f} "
              f"[{r['min']:.3f}, {r['max']:.3f}], CPU {c['median']:.3f} [{c['min']:.3f}, {c['max']:.3f}] "
              f"over {t['rounds']} rounds")


if __name__ == "__main__":
    main()
