"""``fsrt train``: the compact AMP trainer on image folders, digits or synthetic data."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import click

from fsrt.commands.common import console, err_console, json_option, positive_int, print_json
from fsrt.errors import FsrtError
from fsrt.names import slug

EXAMPLES = """
\b
Examples:
  fsrt train RegNetX-200MF --data digits --epochs 10 --batch-size 128 --recipe basic
  fsrt train my_spec.yaml --data /data/imagenet --recipe fast-scaling --out runs/ry400
  fsrt train my_spec.yaml --data /data/imagenet --out runs/ry400 --resume
  fsrt train runs/ry400/best.pt --data /data/other --out runs/finetune   (start from weights)
  fsrt train RegNetY-400MF --data synthetic --recipe basic --epochs 1 --json
  torchrun --nproc-per-node 2 -m fsrt.cli train RegNetX-200MF --data digits --epochs 5
\b
Recipes (fsrt/configs/*.yaml): fast-scaling (scaling paper: exp schedule, label smoothing,
mixup, AutoAugment, EMA), resnet-rs (cosine, RandAugment, stochastic depth, dropout, EMA),
basic (pycls: cosine, crop + flip only). Override any key with --set KEY=VALUE.
"""


def _model_stem(model: str) -> str:
    """A file's stem for spec files and checkpoints, the name itself for zoo names (RegNetX-1.6GF)."""
    from fsrt.source import CHECKPOINT_SUFFIXES, SPEC_SUFFIXES

    p = Path(model)
    return p.stem if p.suffix.lower() in SPEC_SUFFIXES + CHECKPOINT_SUFFIXES else model


@click.command("train", epilog=EXAMPLES)
@click.argument("model")
@click.option("--data", "data", required=True, help="Image folder root (train/ and val/ with one folder per "
              "class), 'digits' (scikit-learn's 8x8 digits, offline) or 'synthetic[:N]' (random, throughput).")
@click.option("--recipe", default="fast-scaling", show_default=True,
              help="fast-scaling, resnet-rs, basic, or a recipe .yaml file.")
@click.option("--epochs", type=int, default=None, callback=positive_int("--epochs"), help="Override epochs.")
@click.option("--batch-size", "-b", type=int, default=None, callback=positive_int("--batch-size"),
              help="Global batch size (lr scales linearly with it unless --lr is given).")
@click.option("--lr", type=float, default=None, help="Learning rate at this batch size (overrides scaling).")
@click.option("--resolution", "-r", type=int, default=None, callback=positive_int("--resolution"),
              help="Train resolution in pixels (default: the spec's; 32 for digits).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any recipe key, e.g. --set mixup_alpha=0 --set ema=false (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder for checkpoints and logs (default runs/MODEL-DATA).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt exactly.")
@click.option("--seed", type=int, default=None, help="Random seed (recipe key 'seed').")
@click.option("--workers", type=int, default=None, help="Loader processes for image folders.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--max-steps", type=int, default=None, callback=positive_int("--max-steps"),
              help="Cap optimizer steps per epoch (smoke tests; the schedule uses the capped length).")
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="Stop after this many epochs of this invocation (simulates an interruption).")
@click.option("--print-config", is_flag=True, help="Print the resolved recipe and exit.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
def command(model, data, recipe, epochs, batch_size, lr, resolution, sets, out, resume, seed, workers, device,
            max_steps, stop_after, print_config, no_progress, as_json):
    """Train MODEL (zoo name, spec YAML/JSON, or checkpoint) with the compact AMP trainer.

    SGD with momentum, per-iteration warmup + exponential or cosine schedule, no weight decay
    on BN and biases, label smoothing, mixup/cutmix, AutoAugment/RandAugment, EMA and SWA,
    autocast (GPU: bf16, or fp16 + grad scaler with --set amp_dtype=fp16; CPU: bf16 with
    --set amp=on, off by default because it is slower there), NaN/inf detection. Every epoch
    reports top-1/top-5 of the model and its EMA and writes OUT/last.pt, OUT/best.pt,
    OUT/log.jsonl; the end writes OUT/summary.json. Under torchrun the same command runs DDP
    (gloo on CPU, NCCL on GPU; --batch-size is the global batch). With --resume the run
    continues from OUT/last.pt with its saved spec and recipe (only --epochs may change).
    """
    from fsrt.train.recipe import parse_sets

    explicit = parse_sets(sets)
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed), ("workers", workers)):
        if value is not None:
            explicit[key] = value
    if workers is not None and workers < 0:
        raise FsrtError("--workers must be >= 0")
    if lr is not None and lr <= 0:
        raise FsrtError(f"--lr must be > 0, got {lr}")
    default_dir = f"{slug(_model_stem(model), 'run')}-{slug(Path(data).name or data, 'run')}"
    out_dir = Path(out) if out else Path("runs") / default_dir
    main_rank = int(os.environ.get("RANK", "0")) == 0
    note = err_console().print if main_rank else (lambda *a, **k: None)
    if not print_config:
        _preflight(out_dir, resume, device)
    if resume:
        setup = _resume_setup(model, out_dir, data, explicit, lr)
    else:
        setup = _fresh_setup(model, data, recipe, explicit, lr, resolution)
    if print_config:
        _print_config(setup, as_json)
        return

    from fsrt.train.distributed import shutdown
    from fsrt.train.loop import RunOptions, train

    spec, rec, source = setup.spec, setup.recipe, setup.source
    note(f"[bold]fsrt train[/] {spec.name or model} on {source.name}: {source.n_train} train / {source.n_val} val "
         f"images, {source.num_classes} classes, {spec.resolution} px, batch {rec.batch_size}, "
         f"lr {rec.batch_lr():.4g}, {rec.epochs} epochs -> {out_dir}", highlight=False)
    for line in setup.notes():
        note(line, highlight=False)
    opts = RunOptions(out=out_dir, data=data, resume=resume, device=device, max_steps=max_steps,
                      stop_after=stop_after, progress=not no_progress and not as_json, init_state=setup.init_state,
                      model_arg=model, adaptations=tuple(a.to_dict() for a in setup.adaptations))
    try:
        summary = train(spec, source, rec, opts, log=lambda s: note(s, highlight=False))
    finally:
        shutdown()
    if not main_rank:
        return
    if summary["skipped_images"]:
        note(f"note: skipped {summary['skipped_images']} unreadable image(s) in the last epoch")
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _preflight(out_dir: Path, resume: bool, device: str) -> None:
    """What can fail without data or a model fails first: the device and the run folder."""
    from fsrt.device import resolve_device
    from fsrt.train.distributed import resolve_local_rank
    from fsrt.train.outdir import check_out_dir

    resolve_device(device, resolve_local_rank())
    check_out_dir(out_dir, resume)


@dataclass
class Setup:
    """What a run starts from: spec, resolved recipe, data, weights and the adaptations made."""

    spec: object
    recipe: object
    source: object
    init_state: dict | None = None
    adaptations: tuple = ()

    def notes(self) -> list[str]:
        """Lines for the run's log: the data's own defaults and each adapted recipe key."""
        lines = [f"note: {self.source.note} (override with --set)"] if self.source.note else []
        return lines + [f"adapted: {a.line()}" for a in self.adaptations]


def _print_config(setup: Setup, as_json: bool) -> None:
    rec = setup.recipe
    doc = {"spec": setup.spec.to_dict(), "recipe": rec.to_dict(), "batch_lr": rec.batch_lr(),
           "resolution": setup.spec.resolution,
           "adapted": [a.to_dict() for a in setup.adaptations]}
    if as_json:
        print_json(doc)
        return
    import yaml

    console().print(yaml.safe_dump(doc, sort_keys=False, width=100), markup=False, highlight=False)


def _fresh_setup(model, data, recipe_name, explicit, lr, resolution) -> Setup:
    from fsrt.source import get_spec, source_kind
    from fsrt.train.adapt import adapt_recipe, classifier_curvature
    from fsrt.train.data import open_source
    from fsrt.train.recipe import load_recipe
    from fsrt.train.run import resolve_spec

    kind = source_kind(model)
    base = get_spec(model)
    init_state = None
    if kind == "checkpoint":
        from fsrt.checkpoint import load_checkpoint

        init_state = _checked_weights(load_checkpoint(model), model, base, "its own spec")
    res = resolution or (32 if data == "digits" else base.resolution)
    source = open_source(data, num_classes=base.num_classes, resolution=res)
    overrides = {k: v for k, v in source.recipe_defaults.items() if k not in explicit}
    overrides.update(explicit)
    rec = load_recipe(recipe_name, overrides)
    if lr is not None:
        rec = dataclasses.replace(rec, lr=lr, lr_ref_batch=rec.batch_size)
    what = f"spec file {model}" if kind == "spec" else f"checkpoint {model}"
    spec = resolve_spec(base, num_classes=source.num_classes, resolution=res, recipe=rec, from_zoo=kind == "zoo",
                        what=what)
    fixed = set(explicit) | ({"lr", "lr_ref_batch"} if lr is not None else set())
    fresh_head = init_state is None  # a trained classifier is not at its starting curvature
    rec, adaptations = adapt_recipe(rec, recipe_epochs=load_recipe(recipe_name).epochs,
                                    num_classes=source.num_classes, fixed=fixed,
                                    curvature=(lambda r: classifier_curvature(spec, source, r)) if fresh_head else None)
    return Setup(spec, rec, source, init_state, tuple(adaptations))


def _checked_weights(ckpt: dict, where, spec, against: str) -> dict:
    """The checkpoint's model weights, checked against ``spec`` before any work starts."""
    from fsrt.checkpoint import checkpoint_weights, weights_mismatch
    from fsrt.models import build_model

    state = checkpoint_weights(ckpt, where)
    problem = weights_mismatch(build_model(spec, device="meta").state_dict(), state)
    if problem:
        raise FsrtError(f"weights in checkpoint {where} ['model'] do not match {against}: {problem}")
    return state


def _resume_setup(model: str, out_dir: Path, data, explicit, lr) -> Setup:
    from fsrt.checkpoint import checkpoint_spec, load_checkpoint
    from fsrt.train.data import open_source
    from fsrt.train.recipe import Recipe, coerce

    last = out_dir / "last.pt"
    if not last.exists():
        raise FsrtError(f"--resume: no checkpoint at {last} (give the run folder with --out)")
    ckpt = load_checkpoint(last)
    spec = checkpoint_spec(ckpt, last)
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    _check_same_model(model, spec, config, last)
    _checked_weights(ckpt, last, spec, "its own spec; the run cannot be resumed, start a new --out")
    saved = config.get("recipe")
    if not isinstance(saved, dict):
        raise FsrtError(f"{last} has no recipe in its config; it was not written by 'fsrt train'")
    rec = Recipe(**saved)
    for key, value in explicit.items():
        value = coerce(key, value)
        if key != "epochs" and getattr(rec, key) != value:
            raise FsrtError(f"--resume continues with the checkpoint's recipe, which has {key}={getattr(rec, key)!r} "
                            f"(not {value!r}); drop that option or start a new --out")
    if lr is not None and abs(rec.batch_lr() - lr) > 1e-12:
        raise FsrtError(f"--resume continues with the checkpoint's lr {rec.batch_lr():.4g}; drop --lr")
    if "epochs" in explicit:
        rec = dataclasses.replace(rec, epochs=int(explicit["epochs"]))
    source = open_source(data, num_classes=spec.num_classes, resolution=spec.resolution, seed=0)
    if source.num_classes != spec.num_classes:
        raise FsrtError(f"checkpoint {last} has num_classes {spec.num_classes} but the data has "
                        f"{source.num_classes} classes")
    return Setup(spec, rec, source, None, ())


def _check_same_model(model: str, spec, config: dict, last: Path) -> None:
    """``--resume`` continues the run's own model: MODEL must name the network it trains."""
    from fsrt.source import get_spec

    given = get_spec(model)
    same = given.replace(num_classes=spec.num_classes, resolution=spec.resolution,
                         eval_resolution=spec.eval_resolution, drop_path=spec.drop_path,
                         head=dataclasses.replace(given.head, dropout=spec.head.dropout))
    if same != spec:
        was = config.get("model") or spec.name or "another model"
        raise FsrtError(f"--resume: {last} is a run of {was}, not of {model}; give {was} as MODEL "
                        "or start a new --out")


def _print_summary(s: dict) -> None:
    from rich.table import Table

    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    table = Table(title=f"fsrt train: {s['model']} on {s['data']} ({s['epochs']}/{s['total_epochs']} epochs)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("top-1", pct(s["top1"])), ("top-5", pct(s["top5"])), ("EMA top-1", pct(s["ema_top1"])),
            ("EMA top-5", pct(s["ema_top5"])), ("best top-1", pct(s["best_top1"]))]
    if s["swa_top1"] is not None:
        rows.append(("SWA top-1", pct(s["swa_top1"])))
    rows += [("train loss", "-" if s["train_loss"] is None else f"{s['train_loss']:.4f}"),
             ("images/s", "-" if s["images_per_s"] is None else f"{s['images_per_s']:,.0f}"),
             ("train time", f"{s['train_time_s']:.1f} s"), ("resolution", f"{s['resolution']} px"),
             ("batch / lr", f"{s['batch_size']} / {s['lr']:.4g}"), ("device", f"{s['device']} ({s['amp_dtype']})"),
             ("checkpoint", s["checkpoint"] or "-")]
    for k, v in rows:
        table.add_row(k, v)
    console().print(table)
