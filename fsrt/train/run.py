"""One training run's state: what ``prepare_run`` builds, what a checkpoint saves and restores.

``Run`` holds the model, its EMA/SWA averages, the optimizer, the device and process group,
the data pipeline and the run's progress (epoch, step, history, best score). ``snapshot`` is
the checkpoint dict (the contract is in ``fsrt.checkpoint``) and ``restore`` reads one back,
turning anything that does not fit into a one-line error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fsrt.errors import FsrtError, first_line
from fsrt.spec import ModelSpec
from fsrt.train.recipe import Recipe


@dataclass
class Run:
    """Everything a training run holds between steps."""

    spec: ModelSpec
    source: Any
    recipe: Recipe
    opts: Any
    device: torch.device
    dist: Any
    model: torch.nn.Module
    net: torch.nn.Module                 # the model, wrapped by DDP under torchrun
    optimizer: torch.optim.Optimizer
    scaler: Any
    dtype: Any                           # autocast dtype or None
    pipe: Any                            # fsrt.train.augment.DevicePipeline
    batch: int                           # per-process batch
    steps_per_epoch: int
    config: dict
    ema: Any = None
    swa: Any = None
    start_epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    best: float = -1.0
    train_images: int = 0
    train_time: float = 0.0

    @property
    def out(self) -> Path:
        return Path(self.opts.out)

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    @property
    def loader_kw(self) -> dict:
        """Keyword arguments every data source's batch iterators take."""
        return {"resolution": self.spec.resolution, "recipe": self.recipe, "pin": self.device.type == "cuda"}

    @property
    def eval_batch(self) -> int:
        return max(self.batch, 64)

    def snapshot(self, epoch_done: int) -> dict:
        """The checkpoint dict after ``epoch_done`` epochs (see ``fsrt.checkpoint``)."""
        from fsrt.train.rng import rng_state

        ema, swa = self.ema, self.swa
        return {"spec": self.spec.to_dict(), "model": self.model.state_dict(),
                "ema": ema.state_dict() if ema else None, "ema_updates": ema.updates if ema else 0,
                "swa": swa.state_dict() if swa else None, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "scheduler": {"step": self.step}, "epoch": epoch_done,
                "rng": rng_state(), "config": self.config, "history": self.history, "best": self.best}

    def restore(self, ckpt: dict, where: Path) -> None:
        """Continue from a checkpoint ``snapshot`` wrote; a part that does not fit is one line."""
        from fsrt.checkpoint import checkpoint_weights, load_weights
        from fsrt.train.rng import set_rng_state

        load_weights(self.model, checkpoint_weights(ckpt, where), f"checkpoint {where} ['model']")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scaler.load_state_dict(ckpt["scaler"])
            if self.ema is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"], ckpt.get("ema_updates", 0))
            if self.swa is not None and ckpt.get("swa") is not None:
                self.swa.load_state_dict(ckpt["swa"])
            self.start_epoch, self.step = int(ckpt["epoch"]), int(ckpt["scheduler"]["step"])
            self.history, self.best = list(ckpt.get("history", [])), float(ckpt.get("best", -1.0))
            set_rng_state(ckpt["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise FsrtError(f"cannot resume from {where}: its training state does not fit this run "
                            f"({first_line(e)[:120]}); start a new --out") from None


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


def prepare_run(spec: ModelSpec, source, recipe: Recipe, opts, device: torch.device, dist) -> Run:
    """Build the model (seeded, from ``opts.init_state`` when given), its averages, optimizer,
    AMP and data pipeline; restore ``last.pt`` when resuming."""
    from fsrt.models import build_model
    from fsrt.train.amp import amp_setup
    from fsrt.train.augment import DevicePipeline
    from fsrt.train.ema import ModelEma
    from fsrt.train.schedule import make_optimizer

    if recipe.batch_size % dist.world:
        raise FsrtError(f"batch size {recipe.batch_size} is not divisible by the {dist.world} processes")
    batch = recipe.batch_size // dist.world
    torch.manual_seed(recipe.seed)
    model = build_model(spec, zero_init_last_bn=recipe.zero_init_last_bn)
    if opts.init_state is not None:
        from fsrt.checkpoint import load_weights

        load_weights(model, opts.init_state, f"checkpoint {opts.model_arg}")
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    dtype, scaler = amp_setup(recipe, device)
    ema = ModelEma(model, recipe.ema_decay, recipe.ema_warmup) if recipe.ema else None
    swa = None
    if recipe.swa:
        from torch.optim.swa_utils import AveragedModel

        swa = AveragedModel(model, use_buffers=True)
    steps = source.steps_per_epoch(batch, dist.world)
    steps = min(steps, opts.max_steps) if opts.max_steps else steps
    config = {"recipe": recipe.to_dict(), "data": opts.data, "model": opts.model_arg, "world_size": dist.world,
              "steps_per_epoch": steps, "max_steps": opts.max_steps, "device": device.type,
              "amp_dtype": str(dtype).replace("torch.", "") if dtype else "float32",
              "adaptations": list(opts.adaptations)}
    pipe = DevicePipeline(source.kind, spec.resolution, recipe, device, recipe.channels_last)
    run = Run(spec, source, recipe, opts, device, dist, model, model, make_optimizer(model, recipe, spec.family),
              scaler, dtype, pipe, batch, steps, config, ema=ema, swa=swa)
    if opts.resume:
        from fsrt.checkpoint import load_checkpoint

        run.restore(load_checkpoint(run.last_path), run.last_path)
    if dist.enabled:  # wrapped after restoring, so every rank starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        run.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return run
