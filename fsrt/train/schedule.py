"""Learning-rate schedule (per iteration) and optimizer parameter groups.

The schedule is a pure function of the iteration, so resuming needs only the step count:
``t = step / steps_per_epoch`` (epochs, fractional), ``T`` = total epochs and

- ``exp``:   ``lr * beta ** (t / T)``                         (beta = final / initial lr)
- ``cos``:   ``lr * (min_lr + (1 - min_lr) * (1 + cos(pi t / T)) / 2)``
- ``const``: ``lr``

During warmup (``t < warmup_epochs``) the rate is multiplied by
``warmup_factor * (1 - a) + a`` with ``a = t / warmup_epochs`` (linear from warmup_factor to 1),
as pycls does.
"""

from __future__ import annotations

import math

from torch import nn

from fsrt.train.recipe import Recipe


def lr_at(step: int, steps_per_epoch: int, recipe: Recipe, base_lr: float | None = None) -> float:
    """Learning rate for iteration ``step`` (0-based) of a run of ``recipe.epochs`` epochs."""
    lr = recipe.batch_lr() if base_lr is None else base_lr
    t, total = step / steps_per_epoch, float(recipe.epochs)
    if recipe.schedule == "exp":
        factor = recipe.lr_beta ** (t / total)
    elif recipe.schedule == "cos":
        factor = recipe.min_lr + (1.0 - recipe.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t / total))
    else:
        factor = 1.0
    if t < recipe.warmup_epochs:
        a = t / recipe.warmup_epochs
        factor *= recipe.warmup_factor * (1.0 - a) + a
    return lr * factor


def param_groups(model: nn.Module, weight_decay: float, no_decay_bn_bias: bool,
                 head_lr_scale: float = 1.0) -> list[dict]:
    """Optimizer groups: decayed weights and (if ``no_decay_bn_bias``) BN parameters and biases
    without weight decay; with ``head_lr_scale`` != 1 the classifier (``head.fc``) gets groups of
    its own whose ``lr_scale`` multiplies the scheduled rate. Each group also lists its parameter
    names under ``names`` (removed before building the optimizer) so they can be inspected."""
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)
    buckets: dict[tuple[bool, bool], list] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            skip = no_decay_bn_bias and (isinstance(module, norm_types) or p_name == "bias")
            head = head_lr_scale != 1.0 and mod_name == "head.fc"
            buckets.setdefault((head, skip), []).append((full, p))
    groups = []
    for head, skip in sorted(buckets):
        items = buckets[(head, skip)]
        groups.append({"params": [p for _, p in items], "names": [n for n, _ in items],
                       "weight_decay": 0.0 if skip else weight_decay, "lr_scale": head_lr_scale if head else 1.0})
    return groups


def make_optimizer(model: nn.Module, recipe: Recipe, family: str):
    """SGD with momentum (nesterov option) over ``param_groups``."""
    import torch

    groups = param_groups(model, recipe.weight_decay_for(family), recipe.no_decay_bn_bias, recipe.head_lr_scale)
    for g in groups:
        g.pop("names")
    return torch.optim.SGD(groups, lr=recipe.batch_lr(), momentum=recipe.momentum, nesterov=recipe.nesterov)


def set_lr(optimizer, lr: float) -> None:
    """Give every parameter group the scheduled rate ``lr`` times its ``lr_scale``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
