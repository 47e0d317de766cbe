"""Training recipes: named, documented presets (``fsrt/configs/*.yaml``) resolved into a ``Recipe``.

A recipe is a flat mapping of the keys of ``Recipe``; the YAML files hold the published
recipes (docs/architecture.md, "Training recipes") and every key can be overridden per run. Unknown keys and
values of the wrong type are rejected with a one-line ``FsrtError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fsrt.errors import FsrtError

SCHEDULES = ("exp", "cos", "const")
AUGMENTS = ("none", "autoaugment", "randaugment")
AMP_DTYPES = ("auto", "bf16", "fp16")
AMP_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Recipe:
    """Every knob of the trainer. ``lr`` is the learning rate at batch ``lr_ref_batch``; the
    rate used is ``lr * batch_size / lr_ref_batch`` (linear scaling rule)."""

    epochs: int = 100                 # full passes over the training data
    batch_size: int = 256             # global batch (split over DDP processes)
    lr: float = 0.1                   # learning rate at batch lr_ref_batch
    lr_ref_batch: int = 256           # batch the lr refers to
    head_lr_scale: float = 1.0        # lr multiplier of the classifier (head.fc)
    momentum: float = 0.9             # SGD momentum
    nesterov: bool = False            # Nesterov momentum
    weight_decay: float = 5e-5        # L2 weight decay
    weight_decay_by_family: dict = field(default_factory=dict)  # e.g. {effnet: 1e-5}
    no_decay_bn_bias: bool = True     # no weight decay on BN parameters and biases
    schedule: str = "cos"             # exp: lr*beta**(t/T); cos: half cosine; const
    lr_beta: float = 0.02             # exp schedule: final lr / initial lr
    min_lr: float = 0.0               # cos schedule: final lr as a fraction of lr
    warmup_epochs: float = 0.0        # linear warmup length (epochs, per iteration)
    warmup_factor: float = 0.1        # lr multiplier at the first warmup step
    label_smoothing: float = 0.0      # target = (1-eps)*onehot + eps/K
    mixup_alpha: float = 0.0          # mixup Beta(alpha, alpha); 0 = off
    cutmix_alpha: float = 0.0         # cutmix Beta(alpha, alpha); 0 = off
    mix_switch_prob: float = 0.5      # with both on: probability of cutmix for a batch
    augment: str = "none"             # none | autoaugment | randaugment (kornia)
    randaugment_n: int = 2            # RandAugment: ops per image
    randaugment_m: int = 9            # RandAugment: magnitude (0..30)
    hflip: float = 0.5                # horizontal flip probability
    crop_min_scale: float = 0.08      # random-resized-crop minimum area fraction (1 = no crop)
    eval_crop: float = 0.875          # eval: resize to R/eval_crop, center-crop R
    ema: bool = False                 # keep an EMA of weights and BN buffers
    ema_decay: float = 0.9999         # EMA decay per update
    ema_warmup: bool = True           # decay_t = min(decay, (1+t)/(10+t))
    ema_every: int = 1                # update the EMA every N steps
    swa: bool = False                 # stochastic weight averaging (epoch ends)
    swa_start: float = 0.75           # fraction of epochs after which SWA averages
    drop_path: float | None = None    # stochastic depth of the last block (None: keep the spec's)
    head_dropout: float | None = None  # dropout before the FC (None: keep the spec's)
    zero_init_last_bn: bool = False   # gamma 0 on the BN closing each residual branch
    grad_clip: float = 0.0            # max gradient norm; 0 = off
    amp: str = "auto"                 # on | off | auto (= on for GPU, off for CPU: see amp_setup)
    amp_dtype: str = "auto"           # auto | bf16 | fp16
    channels_last: bool = False       # NHWC memory format
    seed: int = 0                     # seeds init, data order and augmentation
    workers: int = 4                  # data-loader processes for image folders (at most the usable cores)
    log_every: int = 10               # progress / non-finite-loss check interval (steps)

    def __post_init__(self):
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0 and self.lr_ref_batch >= 1, "lr must be > 0 and lr_ref_batch >= 1")
        _check(0 < self.head_lr_scale <= 1, f"head_lr_scale must be in (0, 1], got {self.head_lr_scale}")
        _check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        _check(self.augment in AUGMENTS, f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        _check(self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        _check(self.amp_dtype in AMP_DTYPES, f"amp_dtype must be one of {', '.join(AMP_DTYPES)}")
        _check(0 < self.lr_beta <= 1, f"lr_beta must be in (0, 1], got {self.lr_beta}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(self.mixup_alpha >= 0 and self.cutmix_alpha >= 0, "mixup_alpha and cutmix_alpha must be >= 0")
        _check(0 < self.crop_min_scale <= 1, f"crop_min_scale must be in (0, 1], got {self.crop_min_scale}")
        _check(0 < self.eval_crop <= 1, f"eval_crop must be in (0, 1], got {self.eval_crop}")
        _check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _check(self.ema_every >= 1 and self.log_every >= 1, "ema_every and log_every must be >= 1")
        _check(self.warmup_epochs >= 0 and 0 < self.warmup_factor <= 1, "warmup_epochs >= 0, warmup_factor in (0, 1]")
        _check(self.grad_clip >= 0 and self.workers >= 0, "grad_clip and workers must be >= 0")
        for key in ("drop_path", "head_dropout"):
            v = getattr(self, key)
            _check(v is None or 0 <= v < 1, f"{key} must be in [0, 1), got {v}")
        _check(isinstance(self.weight_decay_by_family, dict), "weight_decay_by_family must be a mapping")

    def batch_lr(self) -> float:
        """The learning rate used at ``batch_size`` (linear scaling from ``lr_ref_batch``)."""
        return self.lr * self.batch_size / self.lr_ref_batch

    def weight_decay_for(self, family: str) -> float:
        """Weight decay for a model family (``weight_decay_by_family`` wins)."""
        return float(self.weight_decay_by_family.get(family, self.weight_decay))

    def to_dict(self) -> dict:
        """Plain dict of every key (stored in checkpoints and logs)."""
        return dataclasses.asdict(self)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise FsrtError(f"invalid recipe: {msg}")


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``fsrt/configs``."""
    folder = resources.files("fsrt").joinpath("configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_text(name_or_path: str) -> tuple[str, str]:
    """(YAML text, where it came from) of a named recipe or a recipe file."""
    if name_or_path in recipe_names():
        return resources.files("fsrt").joinpath(f"configs/{name_or_path}.yaml").read_text(), name_or_path
    p = Path(name_or_path)
    if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
        from fsrt.io import read_text_file

        return read_text_file(p, "recipe file"), str(p)
    raise FsrtError(f"unknown recipe {name_or_path!r}: use one of {', '.join(recipe_names())} or a .yaml file")


def coerce(key: str, value: Any) -> Any:
    """``value`` converted to the type of ``Recipe.<key>`` (ints accepted for floats, YAML
    strings parsed); unknown keys and wrong types raise ``FsrtError``."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    if key not in fields:
        raise FsrtError(f"unknown recipe key {key!r}; allowed: {', '.join(fields)}")
    default = getattr(Recipe(), key)
    if isinstance(value, str) and not isinstance(default, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise FsrtError(f"recipe key {key}: cannot parse {value!r}") from None
    if key == "amp" and isinstance(value, bool):  # YAML 1.1 reads on/off as booleans
        return "on" if value else "off"
    if key in ("drop_path", "head_dropout") and value is None:
        return None
    want = type(default) if default is not None else float
    if want is float and isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if want is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if want is bool and isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
        return value.lower() in ("true", "on")
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise FsrtError(f"recipe key {key} must be {want.__name__}, got {value!r}")
    return value


def load_recipe(name_or_path: str = "fast-scaling", overrides: dict | None = None) -> Recipe:
    """Resolve a named recipe (or YAML file) plus ``overrides`` into a validated ``Recipe``."""
    import yaml

    text, where = recipe_text(name_or_path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise FsrtError(f"recipe {where} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FsrtError(f"recipe {where} must be a mapping of keys to values")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        raise FsrtError(f"unknown recipe key(s) {', '.join(map(repr, unknown))} in {where}; "
                        f"see fsrt/train/recipe.py for the allowed keys")
    values = {k: coerce(k, v) for k, v in data.items()}
    values.update({k: coerce(k, v) for k, v in (overrides or {}).items()})
    return Recipe(**values)


def parse_sets(items: tuple[str, ...] | list[str]) -> dict:
    """``["key=value", ...]`` from ``--set`` into a dict (values parsed later by ``coerce``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FsrtError(f"--set takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
