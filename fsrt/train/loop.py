"""The training loop: one function, ``train``, used by ``fsrt train`` (also under torchrun).

Per iteration: device-side augmentation, mixup/cutmix, autocast forward, soft-target loss,
(scaled) backward, optional gradient clipping, SGD step with the per-iteration learning
rate, EMA update. Per epoch: top-1/top-5 of the model and its EMA on the validation split,
a JSONL log row, atomic ``last.pt`` (and ``best.pt``) checkpoints on rank 0. The loss is
checked for NaN/inf every ``log_every`` steps and at the end of each epoch; a non-finite loss
stops the run with a clear message before anything is saved, so the last checkpoint on disk
is the last good one. All randomness is re-seeded from (seed, epoch, rank) at each epoch
start and from (seed, step, rank) for mixing, which makes ``--resume`` reproduce an
uninterrupted run exactly (on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fsrt.device import resolve_device
from fsrt.errors import FsrtError
from fsrt.spec import ModelSpec
from fsrt.train.recipe import Recipe


class TrainingDiverged(FsrtError):
    """The loss became NaN or infinite; the run stopped (exit 1)."""

    exit_code = 1


@dataclass
class RunOptions:
    """Run settings that are not part of the recipe."""

    out: Path
    data: str = "digits"
    resume: bool = False
    device: str = "auto"
    max_steps: int | None = None      # cap on optimizer steps per epoch (tests, smoke runs)
    stop_after: int | None = None     # stop after this many epochs in this invocation
    progress: bool = True             # rich progress bar on stderr (rank 0)
    init_state: dict | None = None    # model weights to start from (MODEL given as checkpoint)
    model_arg: str = ""


def amp_setup(recipe: Recipe, device: torch.device):
    """(autocast dtype or None, GradScaler). ``amp: on`` uses bf16 autocast on CPU and, on GPU,
    bf16 where supported unless ``amp_dtype`` is fp16 (fp16 gets a gradient scaler).
    ``amp: auto`` is on for GPU and off for CPU: on the 2-core EPYC used here bf16 autocast made
    a small RegNetX step 5x slower than fp32 (grouped convs have no fast bf16 CPU kernel)."""
    off = torch.amp.GradScaler(device.type, enabled=False)
    if recipe.amp == "off" or (recipe.amp == "auto" and device.type == "cpu"):
        return None, off
    if device.type == "cpu":
        return torch.bfloat16, off
    if recipe.amp_dtype == "fp16" or (recipe.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16, torch.amp.GradScaler(device.type, enabled=True)
    return torch.bfloat16, off


def autocast(device: torch.device, dtype):
    """Autocast context for ``dtype`` (a no-op context when AMP is off)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def resolve_spec(spec: ModelSpec, *, num_classes: int, resolution: int, recipe: Recipe, from_zoo: bool,
                 what: str) -> ModelSpec:
    """The spec to train: the data's class count (zoo models adapt; spec files and checkpoints
    must already match), the train resolution, and the recipe's stochastic depth / dropout."""
    if spec.num_classes != num_classes:
        if not from_zoo:
            raise FsrtError(f"{what} has num_classes {spec.num_classes} but the data has {num_classes} classes; "
                            f"set num_classes: {num_classes} in the spec or train a zoo model")
        spec = spec.replace(num_classes=num_classes)
    if resolution != spec.resolution:
        spec = spec.replace(resolution=resolution, eval_resolution=None)
    if recipe.drop_path is not None:
        spec = spec.replace(drop_path=recipe.drop_path)
    if recipe.head_dropout is not None:
        spec = spec.replace(head=dataclasses.replace(spec.head, dropout=recipe.head_dropout))
    return spec


@torch.no_grad()
def evaluate(model, source, pipe, batch: int, device, dtype, dist, **kw) -> tuple[float, float]:
    """(top-1, top-5) fractions over the validation split, summed over all ranks."""
    from fsrt.train.distributed import all_reduce_sum

    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64, device=device)  # top-1 hits, top-5 hits, images
    for x, y in source.val_batches(batch, dist.rank, dist.world, **kw):
        x, y = pipe.eval(x), y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(x)
        k = min(5, logits.shape[1])
        hit = logits.float().topk(k, dim=1).indices == y[:, None]
        counts += torch.stack([hit[:, 0].sum(), hit.any(dim=1).sum(), torch.tensor(len(y), device=device)])
    model.train(was_training)
    c1, c5, n = all_reduce_sum([float(v) for v in counts.tolist()], device, dist)
    return (c1 / n, c5 / n) if n else (float("nan"), float("nan"))


def _write_log(path: Path, history: list[dict]) -> None:
    from fsrt.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in history))


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def train(spec: ModelSpec, source, recipe: Recipe, opts: RunOptions,
          log: Callable[[str], None] = lambda s: None) -> dict:
    """Train ``spec`` on ``source`` with ``recipe``; returns the summary dict (also written to
    ``summary.json``). Raises ``TrainingDiverged`` on a non-finite loss."""
    from fsrt.models import build_model
    from fsrt.source import load_checkpoint
    from fsrt.train.checkpoint import rng_state, save_checkpoint, set_rng_state
    from fsrt.train.distributed import (
        Dist,
        all_reduce_sum,
        barrier,
        broadcast_flag,
        init_distributed,
        resolve_local_rank,
        sync_buffers,
    )
    from fsrt.train.ema import ModelEma
    from fsrt.train.loss import Mix, apply_mix, mixed_loss, sample_mix
    from fsrt.train.schedule import lr_at, make_optimizer

    device = resolve_device(opts.device, resolve_local_rank())
    dist: Dist = init_distributed(device)
    main = dist.is_main
    say = log if main else (lambda s: None)
    out = Path(opts.out)
    if recipe.batch_size % dist.world:
        raise FsrtError(f"batch size {recipe.batch_size} is not divisible by the {dist.world} processes")
    batch = recipe.batch_size // dist.world
    last_path, best_path = out / "last.pt", out / "best.pt"
    if not opts.resume and last_path.exists():
        raise FsrtError(f"{last_path} exists: pass --resume to continue that run or choose another --out")
    if opts.resume and not last_path.exists():
        raise FsrtError(f"--resume: no checkpoint at {last_path}")

    torch.manual_seed(recipe.seed)
    model = build_model(spec, zero_init_last_bn=recipe.zero_init_last_bn)
    if opts.init_state is not None:
        model.load_state_dict(opts.init_state)
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe, spec.family)
    dtype, scaler = amp_setup(recipe, device)
    ema = ModelEma(model, recipe.ema_decay, recipe.ema_warmup) if recipe.ema else None
    swa = None
    if recipe.swa:
        from torch.optim.swa_utils import AveragedModel

        swa = AveragedModel(model, use_buffers=True)

    steps_per_epoch = source.steps_per_epoch(batch, dist.world)
    if opts.max_steps:
        steps_per_epoch = min(steps_per_epoch, opts.max_steps)
    config = {"recipe": recipe.to_dict(), "data": opts.data, "model": opts.model_arg, "world_size": dist.world,
              "steps_per_epoch": steps_per_epoch, "max_steps": opts.max_steps, "device": device.type,
              "amp_dtype": str(dtype).replace("torch.", "") if dtype else "float32"}
    start_epoch, step, history, best = 0, 0, [], -1.0
    if opts.resume:
        ckpt = load_checkpoint(last_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"], ckpt.get("ema_updates", 0))
        if swa is not None and ckpt.get("swa") is not None:
            swa.load_state_dict(ckpt["swa"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["scheduler"]["step"])
        history, best = list(ckpt.get("history", [])), float(ckpt.get("best", -1.0))
        set_rng_state(ckpt["rng"])
        say(f"resumed {last_path} at epoch {start_epoch} (step {step})")

    net = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    from fsrt.train.augment import DevicePipeline

    pipe = DevicePipeline(source.kind, spec.resolution, recipe, device, recipe.channels_last)
    pin = device.type == "cuda"
    loader_kw = {"resolution": spec.resolution, "recipe": recipe, "pin": pin}
    eval_batch = max(batch, 64)
    swa_from = int(recipe.swa_start * recipe.epochs)  # SWA averages at the end of later epochs
    train_images, train_time = 0, 0.0
    last_epoch = start_epoch
    end_epoch = recipe.epochs if opts.stop_after is None else min(recipe.epochs, start_epoch + opts.stop_after)

    def snapshot(epoch_done: int) -> dict:
        return {"spec": spec.to_dict(), "model": model.state_dict(), "ema": ema.state_dict() if ema else None,
                "ema_updates": ema.updates if ema else 0, "swa": swa.state_dict() if swa else None,
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "scheduler": {"step": step}, "epoch": epoch_done, "rng": rng_state(), "config": config,
                "history": history, "best": best}

    mixing, mix = recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0, Mix()
    total_steps = steps_per_epoch * recipe.epochs
    with _progress(main and opts.progress) as progress:
        task = progress.add_task("train", total=total_steps, completed=start_epoch * steps_per_epoch, info="")
        for epoch in range(start_epoch, end_epoch):
            torch.manual_seed(recipe.seed * 1_000_003 + epoch * 997 + dist.rank)
            net.train()
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            n_steps = n_images = 0
            bad = False
            t0, c0 = time.perf_counter(), time.process_time()
            lr = lr_at(step, steps_per_epoch, recipe)
            progress.update(task, description=f"epoch {epoch + 1}/{recipe.epochs}")
            for x, y in source.train_batches(epoch, batch, recipe.seed, dist.rank, dist.world, **loader_kw):
                if n_steps >= steps_per_epoch:
                    break
                lr = lr_at(step, steps_per_epoch, recipe)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                x, y = pipe.train(x), y.to(device, non_blocking=True)
                if mixing:
                    mix = sample_mix(np.random.default_rng([recipe.seed, step, dist.rank]), len(y), x.shape[-2],
                                     x.shape[-1], recipe.mixup_alpha, recipe.cutmix_alpha, recipe.mix_switch_prob)
                    x = apply_mix(x, mix)
                with autocast(device, dtype):
                    logits = net(x)
                loss = mixed_loss(logits, y, recipe.label_smoothing, mix)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if recipe.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                step += 1
                if ema is not None and step % recipe.ema_every == 0:
                    ema.update(model)
                loss_sum += loss.detach()
                n_steps += 1
                n_images += len(y)
                if n_steps % recipe.log_every == 0 or n_steps == steps_per_epoch:
                    mean_loss = loss_sum.item() / n_steps
                    # Decide together: a rank leaving the step loop alone would hang the others' all-reduce.
                    if broadcast_flag(not math.isfinite(mean_loss), device, dist):
                        bad = True
                        break
                    rate = n_images * dist.world / max(time.perf_counter() - t0, 1e-9)
                    progress.update(task, completed=epoch * steps_per_epoch + n_steps,
                                    info=f"loss {mean_loss:.3f} lr {lr:.4g} {rate:,.0f} im/s")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_time, epoch_cpu = time.perf_counter() - t0, time.process_time() - c0
            total_loss, total_steps_, bad_count = all_reduce_sum([loss_sum.item(), float(n_steps), float(bad)],
                                                                 device, dist)
            mean_loss = total_loss / max(total_steps_, 1.0)
            bad = bad_count > 0 or not math.isfinite(mean_loss)
            if bad:
                good = history[-1]["epoch"] if history else start_epoch
                kept = f"last good checkpoint: {last_path} (epoch {good})" if last_path.exists() \
                    else "no checkpoint was written yet"
                raise TrainingDiverged(f"loss became non-finite (nan/inf) in epoch {epoch + 1} near step {step} "
                                       f"at lr {lr:.4g}; stopped. {kept}. Lower --lr, add --set grad_clip=1, "
                                       f"or turn AMP off with --set amp=false")
            images = int(all_reduce_sum([float(n_images)], device, dist)[0])
            train_images += images
            train_time += epoch_time
            sync_buffers(model, dist)
            if swa is not None and epoch + 1 > swa_from:
                swa.update_parameters(model)
            top1, top5 = evaluate(model, source, pipe, eval_batch, device, dtype, dist, **loader_kw)
            row = {"epoch": epoch + 1, "step": step, "train_loss": mean_loss, "lr": lr, "top1": top1, "top5": top5,
                   "images_per_s": images / max(epoch_time, 1e-9), "epoch_time_s": epoch_time,
                   "epoch_cpu_s": epoch_cpu,
                   "skipped_images": source.skipped["train"] + source.skipped["val"]}
            if ema is not None:
                row["ema_top1"], row["ema_top5"] = evaluate(ema.module, source, pipe, eval_batch, device, dtype,
                                                            dist, **loader_kw)
            history.append(row)
            score = max(top1, row.get("ema_top1", -1.0))
            is_best = score > best
            best = max(best, score)
            last_epoch = epoch + 1
            if main:
                save_checkpoint(snapshot(epoch + 1), last_path)
                if is_best:
                    save_checkpoint(snapshot(epoch + 1), best_path)
                _write_log(out / "log.jsonl", history)
                ema_txt = f"  ema top1 {row['ema_top1']:.2%}" if ema is not None else ""
                line = (f"epoch {epoch + 1}/{recipe.epochs}  loss {mean_loss:.4f}  top1 {top1:.2%}  top5 {top5:.2%}"
                        f"{ema_txt}  {row['images_per_s']:,.0f} im/s")
                progress.console.print(line) if opts.progress else log(line)
            barrier(dist)

    swa_top1 = None
    if swa is not None and last_epoch == recipe.epochs and last_epoch > swa_from:
        swa_top1, _ = evaluate(swa.module, source, pipe, eval_batch, device, dtype, dist, **loader_kw)
    final = history[-1] if history else {}
    summary = {
        "model": spec.name or opts.model_arg, "data": opts.data, "num_classes": spec.num_classes,
        "resolution": spec.resolution, "epochs": last_epoch, "total_epochs": recipe.epochs,
        "finished": last_epoch == recipe.epochs, "top1": final.get("top1"), "top5": final.get("top5"),
        "ema_top1": final.get("ema_top1"), "ema_top5": final.get("ema_top5"), "swa_top1": swa_top1,
        "best_top1": best if history else None, "train_loss": final.get("train_loss"),
        "images_per_s": train_images / train_time if train_time else None, "train_time_s": train_time,
        "batch_size": recipe.batch_size, "lr": recipe.batch_lr(), "world_size": dist.world,
        "device": device.type, "amp_dtype": config["amp_dtype"],
        "skipped_images": final.get("skipped_images", 0),
        "checkpoint": str(last_path), "best_checkpoint": str(best_path), "out": str(out),
    }
    if main:
        from fsrt.io import atomic_write_text

        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
