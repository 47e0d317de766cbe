"""The training loop: ``train``, used by ``fsrt train`` (also under torchrun).

Per iteration: device-side augmentation, mixup/cutmix, autocast forward, soft-target loss,
(scaled) backward, optional gradient clipping, SGD step with the per-iteration learning
rate, EMA update. Per epoch: top-1/top-5 of the model and its EMA on the validation split,
a JSONL log row, atomic ``last.pt`` (and ``best.pt``) checkpoints on rank 0.

Every ``log_every`` steps and at the end of each epoch the loss is checked: NaN/inf, or a
loss far above that of a uniform guess (``EXPLODED`` x ln K, K classes: the loss exploded,
typically because the learning rate is too high for this model and data), stops the run
with one line saying so and what to change, before anything is saved, so the last
checkpoint on disk is the last good one. All randomness is re-seeded from (seed, epoch,
rank) at each epoch start and from (seed, step, rank) for mixing, which makes ``--resume``
reproduce an uninterrupted run exactly (on CPU).
"""

from __future__ import annotations

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
from fsrt.train.run import Run, resolve_spec

__all__ = ["EXPLODED", "RunOptions", "TrainingDiverged", "resolve_device", "resolve_spec", "train"]

# A loss above EXPLODED x max(ln K, 1) has exploded: a fresh network starts near ln K (a uniform
# guess over K classes) and a learning one only goes down from there.
EXPLODED = 3.0


class TrainingDiverged(FsrtError):
    """The loss became NaN/infinite or exploded; the run stopped (exit 1)."""

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
    adaptations: tuple = ()           # fsrt.train.adapt.Adaptation records, kept in the run's config


@dataclass
class EpochStats:
    """What one pass over the training data did (this process's share)."""

    loss_sum: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    lr: float = 0.0
    failure: str = ""                 # "", "nonfinite" or "exploded"
    failed_loss: float = 0.0


@torch.no_grad()
def evaluate(run: Run, model: torch.nn.Module) -> tuple[float, float]:
    """(top-1, top-5) fractions of ``model`` over the validation split, summed over all ranks."""
    from fsrt.train.amp import autocast
    from fsrt.train.distributed import all_reduce_sum

    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64, device=run.device)  # top-1 hits, top-5 hits, images
    for x, y in run.source.val_batches(run.eval_batch, run.dist.rank, run.dist.world, **run.loader_kw):
        x, y = run.pipe.eval(x), y.to(run.device, non_blocking=True)
        with autocast(run.device, run.dtype):
            logits = model(x)
        k = min(5, logits.shape[1])
        hit = logits.float().topk(k, dim=1).indices == y[:, None]
        counts += torch.stack([hit[:, 0].sum(), hit.any(dim=1).sum(), torch.tensor(len(y), device=run.device)])
    model.train(was_training)
    c1, c5, n = all_reduce_sum([float(v) for v in counts.tolist()], run.device, run.dist)
    if not n:
        from fsrt.train.data import no_readable_images

        raise no_readable_images(run.source, "val")
    return c1 / n, c5 / n


def _train_step(run: Run, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
    """One optimizer step on a batch; returns the (detached) loss."""
    from fsrt.train.amp import autocast
    from fsrt.train.loss import Mix, apply_mix, mixed_loss, sample_mix
    from fsrt.train.schedule import set_lr

    recipe = run.recipe
    set_lr(run.optimizer, lr)
    x, y = run.pipe.train(x), y.to(run.device, non_blocking=True)
    mix = Mix()
    if recipe.mixup_alpha > 0 or recipe.cutmix_alpha > 0:
        mix = sample_mix(np.random.default_rng([recipe.seed, run.step, run.dist.rank]), len(y), x.shape[-2],
                         x.shape[-1], recipe.mixup_alpha, recipe.cutmix_alpha, recipe.mix_switch_prob)
        x = apply_mix(x, mix)
    with autocast(run.device, run.dtype):
        logits = run.net(x)
    loss = mixed_loss(logits, y, recipe.label_smoothing, mix)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if recipe.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), recipe.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.step += 1
    if run.ema is not None and run.step % recipe.ema_every == 0:
        run.ema.update(run.model)
    return loss.detach()


def _loss_failure(window_loss: float, num_classes: int) -> str:
    """"nonfinite", "exploded" or "" for the mean loss of the last few steps."""
    if not math.isfinite(window_loss):
        return "nonfinite"
    return "exploded" if window_loss > EXPLODED * max(math.log(num_classes), 1.0) else ""


def train_epoch(run: Run, epoch: int, progress, task) -> EpochStats:
    """One pass over this rank's training batches, checking the loss as it goes."""
    from fsrt.train.distributed import all_reduce_sum
    from fsrt.train.schedule import lr_at

    recipe, st = run.recipe, EpochStats()
    torch.manual_seed(recipe.seed * 1_000_003 + epoch * 997 + run.dist.rank)
    run.net.train()
    loss_sum = torch.zeros((), device=run.device, dtype=torch.float64)
    window_start, window_steps = 0.0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    st.lr = lr_at(run.step, run.steps_per_epoch, recipe)
    for x, y in run.source.train_batches(epoch, run.batch, recipe.seed, run.dist.rank, run.dist.world,
                                         **run.loader_kw):
        if st.steps >= run.steps_per_epoch:
            break
        st.lr = lr_at(run.step, run.steps_per_epoch, recipe)
        loss_sum += _train_step(run, x, y, st.lr)
        st.steps, st.images, window_steps = st.steps + 1, st.images + len(y), window_steps + 1
        if st.steps % recipe.log_every == 0 or st.steps == run.steps_per_epoch:
            total = loss_sum.item()
            window = (total - window_start) / window_steps
            window_start, window_steps = total, 0
            failure = _loss_failure(window, run.spec.num_classes)
            # Decide together: a rank leaving the step loop alone would hang the others' all-reduce.
            nonfinite, exploded = all_reduce_sum([float(failure == "nonfinite"), float(failure == "exploded")],
                                                 run.device, run.dist)
            if nonfinite or exploded:
                st.failure, st.failed_loss = ("nonfinite" if nonfinite else "exploded"), window
                break
            rate = st.images * run.dist.world / max(time.perf_counter() - t0, 1e-9)
            progress.update(task, completed=epoch * run.steps_per_epoch + st.steps,
                            info=f"loss {total / st.steps:.3f} lr {st.lr:.4g} {rate:,.0f} im/s")
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    st.seconds, st.cpu_seconds, st.loss_sum = time.perf_counter() - t0, time.process_time() - c0, loss_sum.item()
    return st


def check_epoch(run: Run, epoch: int, st: EpochStats) -> float:
    """The epoch's mean loss over all ranks; raises when it diverged or saw no readable image."""
    from fsrt.train.distributed import all_reduce_sum

    loss, steps, images, failed = all_reduce_sum([st.loss_sum, float(st.steps), float(st.images),
                                                  float(bool(st.failure))], run.device, run.dist)
    mean = loss / max(steps, 1.0)
    if failed or not math.isfinite(mean):
        raise TrainingDiverged(_diverged_message(run, epoch, st, mean))
    if not images:
        from fsrt.train.data import no_readable_images

        raise no_readable_images(run.source, "train")
    return mean


def _diverged_message(run: Run, epoch: int, st: EpochStats, mean: float) -> str:
    good = run.history[-1]["epoch"] if run.history else run.start_epoch
    kept = (f"last good checkpoint: {run.last_path} (epoch {good})" if run.last_path.exists()
            else "no checkpoint was written yet")
    where = f"in epoch {epoch + 1} near step {run.step} at lr {st.lr:.4g}"
    if st.failure == "exploded":
        k = run.spec.num_classes
        return (f"the loss exploded {where}: {st.failed_loss:.3g}, {st.failed_loss / math.log(max(k, 2)):.1f}x "
                f"that of a uniform guess over {k} classes; stopped ({kept}). The learning rate is too high "
                f"for this model and data: lower --lr (e.g. {run.recipe.batch_lr() / 4:.3g}) or lengthen "
                "the warm-up (--set warmup_epochs=N)")
    return (f"loss became non-finite (nan/inf) {where}; stopped. {kept}. Lower --lr, add --set grad_clip=1, "
            f"or turn AMP off with --set amp=false")


def end_epoch(run: Run, epoch: int, st: EpochStats, mean_loss: float) -> dict:
    """Evaluate, append the log row, and (rank 0) write ``last.pt``/``best.pt`` and ``log.jsonl``."""
    from fsrt.train.distributed import all_reduce_sum, sync_buffers

    images = int(all_reduce_sum([float(st.images)], run.device, run.dist)[0])
    run.train_images += images
    run.train_time += st.seconds
    sync_buffers(run.model, run.dist)
    if run.swa is not None and epoch + 1 > int(run.recipe.swa_start * run.recipe.epochs):
        run.swa.update_parameters(run.model)
    top1, top5 = evaluate(run, run.model)
    skipped = run.source.skipped["train"] + run.source.skipped["val"]
    row = {"epoch": epoch + 1, "step": run.step, "train_loss": mean_loss, "lr": st.lr, "top1": top1, "top5": top5,
           "images_per_s": images / max(st.seconds, 1e-9), "epoch_time_s": st.seconds,
           "epoch_cpu_s": st.cpu_seconds, "skipped_images": skipped}
    if run.ema is not None:
        row["ema_top1"], row["ema_top5"] = evaluate(run, run.ema.module)
    run.history.append(row)
    score = max(top1, row.get("ema_top1", -1.0))
    is_best, run.best = score > run.best, max(run.best, score)
    if run.dist.is_main:
        _save(run, epoch + 1, is_best)
    return row


def _save(run: Run, epoch_done: int, is_best: bool) -> None:
    """Checkpoints and the log, each atomic; a failed write (disk full) is one line."""
    from fsrt.checkpoint import save_checkpoint

    save_checkpoint(run.snapshot(epoch_done), run.last_path)
    if is_best:
        save_checkpoint(run.snapshot(epoch_done), run.best_path)
    write_text(run.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in run.history))


def write_text(path: Path, text: str) -> None:
    """``atomic_write_text`` with a failed write (disk full, read-only) turned into one line."""
    from fsrt.checkpoint import write_error
    from fsrt.io import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise write_error(path, e) from None


def _epoch_line(run: Run, row: dict) -> str:
    ema = f"  ema top1 {row['ema_top1']:.2%}" if "ema_top1" in row else ""
    return (f"epoch {row['epoch']}/{run.recipe.epochs}  loss {row['train_loss']:.4f}  top1 {row['top1']:.2%}  "
            f"top5 {row['top5']:.2%}{ema}  {row['images_per_s']:,.0f} im/s")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def train(spec: ModelSpec, source, recipe: Recipe, opts: RunOptions,
          log: Callable[[str], None] = lambda s: None) -> dict:
    """Train ``spec`` on ``source`` with ``recipe``; returns the summary dict (also written to
    ``summary.json``). Raises ``TrainingDiverged`` when the loss becomes non-finite or explodes."""
    from fsrt.train.distributed import barrier, init_distributed, resolve_local_rank
    from fsrt.train.outdir import check_out_dir, removing_new_empty_folder
    from fsrt.train.run import prepare_run

    device = resolve_device(opts.device, resolve_local_rank())
    check_out_dir(Path(opts.out), opts.resume)
    dist = init_distributed(device)
    say = log if dist.is_main else (lambda s: None)
    with removing_new_empty_folder(Path(opts.out)):
        run = prepare_run(spec, source, recipe, opts, device, dist)
        if opts.resume:
            say(f"resumed {run.last_path} at epoch {run.start_epoch} (step {run.step})")
        stop = recipe.epochs if opts.stop_after is None else min(recipe.epochs, run.start_epoch + opts.stop_after)
        with _progress(dist.is_main and opts.progress) as progress:
            task = progress.add_task("train", total=run.steps_per_epoch * recipe.epochs,
                                     completed=run.start_epoch * run.steps_per_epoch, info="")
            for epoch in range(run.start_epoch, stop):
                progress.update(task, description=f"epoch {epoch + 1}/{recipe.epochs}")
                st = train_epoch(run, epoch, progress, task)
                row = end_epoch(run, epoch, st, check_epoch(run, epoch, st))
                if dist.is_main:
                    progress.console.print(_epoch_line(run, row)) if opts.progress else log(_epoch_line(run, row))
                barrier(dist)
        return summarize(run)


def summarize(run: Run) -> dict:
    """The run's summary (written to ``summary.json`` on rank 0): finite numbers or null, and
    ``best_checkpoint`` only when that file exists."""
    recipe, history = run.recipe, run.history
    done = history[-1]["epoch"] if history else run.start_epoch
    swa_top1 = None
    if run.swa is not None and done == recipe.epochs and done > int(recipe.swa_start * recipe.epochs):
        swa_top1, _ = evaluate(run, run.swa.module)
    final = history[-1] if history else {}
    summary = {
        "model": run.spec.name or run.opts.model_arg, "data": run.opts.data, "num_classes": run.spec.num_classes,
        "resolution": run.spec.resolution, "epochs": done, "total_epochs": recipe.epochs,
        "finished": done == recipe.epochs, "top1": final.get("top1"), "top5": final.get("top5"),
        "ema_top1": final.get("ema_top1"), "ema_top5": final.get("ema_top5"), "swa_top1": swa_top1,
        "best_top1": run.best if history else None, "train_loss": final.get("train_loss"),
        "images_per_s": run.train_images / run.train_time if run.train_time else None,
        "train_time_s": run.train_time, "batch_size": recipe.batch_size, "lr": recipe.batch_lr(),
        "world_size": run.dist.world, "device": run.device.type, "amp_dtype": run.config["amp_dtype"],
        "skipped_images": final.get("skipped_images", 0), "adaptations": run.config["adaptations"],
        "checkpoint": str(run.last_path) if run.last_path.exists() else None,
        "best_checkpoint": str(run.best_path) if run.best_path.exists() else None, "out": str(run.out),
    }
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    if run.dist.is_main:
        write_text(run.out / "summary.json", json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
