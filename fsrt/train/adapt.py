"""Recipe adaptations: what changes when a run is far from what a recipe was written for.

The shipped recipes (``fsrt/configs``) are the papers' ImageNet-1k recipes: 1000 classes and
100 (fast-scaling, basic) or 350 (resnet-rs) epochs. On such data they are used exactly as
written. Two of their choices only hold at that scale and are adapted otherwise (never a key
the user set explicitly); each change is stated in the run's log, ``--print-config``,
``summary.json`` and the checkpoint:

- ``head_lr_scale`` (fewer than 1000 classes): at the start the softmax is near uniform, so the
  cross-entropy's curvature in the classifier's weights is ``lambda = lambda_max(E[h h^T]) / K``
  (h: the classifier's input features, K classes). SGD with momentum mu is stable on it only
  for ``lr < 2 (1 + mu) / lambda``. With 1000 classes every zoo model is far inside that bound
  at the recipes' rates; with 10 classes lambda is 100x larger and, e.g., RegNetX-200MF on
  digits is unstable above lr ~0.02 while the recipe asks for 0.25: its loss explodes in the
  first epoch. fsrt measures lambda on one training batch with the freshly initialized model
  and scales the classifier's learning rate so that it stays at half that bound (the classic
  1/L step); the rest of the network keeps the recipe's rate. The measurement keeps the residual
  branches active even when they start at zero (below): that only delays the features' growth.
- ``warmup_epochs`` (fewer epochs than the recipe's): warm-up is a share of the schedule
  (5 of 100 epochs). A run shortened with ``--epochs`` keeps that share, otherwise 5 warm-up
  epochs of a 10-epoch exponential schedule hold the rate below a fifth of its peak for the
  whole run. Longer runs (the 2x/4x schedules) keep the paper's warm-up.
- ``zero_init_last_bn`` (fewer epochs than the recipe's): with little warm-up left, residual
  blocks start as identities (gamma 0 on the BN closing each residual branch, pycls's option and
  Goyal et al.'s remedy for unstable starts), so the network starts shallow and stable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fsrt.train.recipe import Recipe

RECIPE_CLASSES = 1000  # ImageNet-1k: the class count every shipped recipe was tuned on


@dataclass(frozen=True)
class Adaptation:
    """One recipe key changed from the recipe's value, and why."""

    key: str
    recipe_value: float | bool
    value: float | bool
    why: str

    def line(self) -> str:
        """``key a -> b (why)`` for the run's log."""
        return f"{self.key} {_show(self.recipe_value)} -> {_show(self.value)} ({self.why})"

    def to_dict(self) -> dict:
        """Plain dict (stored in checkpoints, summary.json and --print-config)."""
        return dataclasses.asdict(self)


def _show(value) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:.4g}"


def stable_lr(curvature: float, momentum: float, nesterov: bool) -> float:
    """The largest learning rate at which SGD (PyTorch's momentum form) is stable on a quadratic
    of this curvature: ``2 (1 + mu) / lambda``, or ``2 (1 + mu) / ((1 + 2 mu) lambda)`` with Nesterov."""
    edge = 2.0 * (1.0 + momentum) / curvature
    return edge / (1.0 + 2.0 * momentum) if nesterov else edge


def classifier_curvature(spec, source, recipe: Recipe, batch: int = 64, iterations: int = 100) -> float:
    """The cross-entropy's largest curvature in the classifier's weights for the freshly
    initialized model (seeded as the run is) on one augmented training batch: the top eigenvalue
    of ``E_i[(diag(p_i) - p_i p_i^T) (x) h_i h_i^T]`` (about ``lambda_max(E[h h^T]) / K`` while the
    softmax is near uniform), by power iteration on Hessian-vector products."""
    import torch

    from fsrt.models import build_model
    from fsrt.train.augment import DevicePipeline

    torch.manual_seed(recipe.seed)
    model = build_model(spec, zero_init_last_bn=recipe.zero_init_last_bn).train()
    pipe = DevicePipeline(source.kind, spec.resolution, recipe, torch.device("cpu"))
    kw = {"resolution": spec.resolution, "recipe": dataclasses.replace(recipe, workers=0), "pin": False}
    first = next(iter(source.train_batches(0, min(batch, source.n_train), recipe.seed, 0, 1, **kw)), None)
    if first is None:
        from fsrt.train.data import no_readable_images

        raise no_readable_images(source, "train")
    x = first[0]
    seen = {}

    def keep_input(module, inputs, output) -> None:
        seen["h"] = inputs[0]

    hook = model.head.fc.register_forward_hook(keep_input)
    with torch.no_grad():
        p = model(pipe.train(x)).double().softmax(1)
    hook.remove()
    h = seen["h"].double()

    def hvp(v):  # (K, C) -> (K, C): the Hessian of the mean cross-entropy in the FC weights times v
        a = h @ v.T
        return (p * a - p * (p * a).sum(1, keepdim=True)).T @ h / len(h)

    v = torch.randn(p.shape[1], h.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for _ in range(iterations):
        v = hvp(v)
        v /= v.norm()
    return float((v * hvp(v)).sum())


def adapt_recipe(recipe: Recipe, *, recipe_epochs: int, num_classes: int, curvature=None,
                 fixed: set[str] = frozenset()) -> tuple[Recipe, list[Adaptation]]:
    """``recipe`` adapted to a run with ``num_classes`` classes whose recipe was written for
    ``recipe_epochs`` epochs. ``curvature(recipe)`` returns ``classifier_curvature`` for the network
    that recipe builds (called only when it matters, with the residual branches active); keys in
    ``fixed`` (set by the user) are left alone."""
    changes: list[Adaptation] = []
    if recipe.epochs < recipe_epochs and recipe.warmup_epochs > 0 and "warmup_epochs" not in fixed:
        warmup = recipe.warmup_epochs * recipe.epochs / recipe_epochs
        changes.append(Adaptation(
            "warmup_epochs", recipe.warmup_epochs, warmup,
            f"{recipe.epochs} of the recipe's {recipe_epochs} epochs: warm-up keeps its share of the schedule"))
    if recipe.epochs < recipe_epochs and not recipe.zero_init_last_bn and "zero_init_last_bn" not in fixed:
        changes.append(Adaptation(
            "zero_init_last_bn", False, True,
            "a shortened schedule has little warm-up: residual blocks start as identities (zero gamma on "
            "their last BN), which keeps the start stable without a long warm-up"))
    recipe = dataclasses.replace(recipe, **{c.key: c.value for c in changes})
    if (num_classes < RECIPE_CLASSES and curvature is not None and "head_lr_scale" not in fixed
            and recipe.head_lr_scale == 1.0):
        # measured with the residual branches active: zero-gamma only delays the features'
        # growth, and the classifier must stay stable once the blocks contribute
        bound = stable_lr(curvature(dataclasses.replace(recipe, zero_init_last_bn=False)), recipe.momentum,
                          recipe.nesterov)
        scale = 0.5 * bound / recipe.batch_lr()
        if scale < 1.0:
            changes.append(Adaptation(
                "head_lr_scale", 1.0, scale,
                f"{num_classes} classes: the classifier is stable only below lr {bound:.3g} at the start, "
                f"the recipe's lr is {recipe.batch_lr():.3g}; its rate is held at half that bound"))
            recipe = dataclasses.replace(recipe, head_lr_scale=scale)
    return recipe, changes
