"""Label smoothing, mixup and cutmix: mixed inputs and the soft-target cross-entropy.

Targets are ``lam * smooth(y) + (1 - lam) * smooth(y[perm])`` with
``smooth(y) = (1 - eps) * onehot(y) + eps / K``; the loss is ``-sum(target * log_softmax)``
averaged over the batch (computed in float32 even under autocast). Mixing randomness comes
from a NumPy generator the caller seeds per step, so a resumed run draws the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Mix:
    """One batch's mixing: ``kind`` (none|mixup|cutmix), weight ``lam`` of the original
    images, partner permutation ``perm`` and the cutmix box (y0, y1, x0, x1)."""

    kind: str = "none"
    lam: float = 1.0
    perm: torch.Tensor | None = None
    box: tuple[int, int, int, int] | None = None


def sample_mix(rng: np.random.Generator, n: int, height: int, width: int, mixup_alpha: float,
               cutmix_alpha: float, switch_prob: float = 0.5) -> Mix:
    """Draw mixup or cutmix parameters for a batch of ``n`` images (``none`` when both off).

    cutmix: a box of area ``(1 - lam) * H * W`` centred uniformly, clipped to the image;
    ``lam`` is then corrected to the clipped area.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return Mix()
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(n))
    if not use_cutmix:
        return Mix("mixup", lam, perm)
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    return Mix("cutmix", lam, perm, (y0, y1, x0, x1))


def apply_mix(x: torch.Tensor, mix: Mix) -> torch.Tensor:
    """The mixed batch (a new tensor; ``x`` is left alone)."""
    if mix.kind == "none":
        return x
    partner = x[mix.perm.to(x.device)]
    if mix.kind == "mixup":
        return x * mix.lam + partner * (1.0 - mix.lam)
    y0, y1, x0, x1 = mix.box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = partner[:, :, y0:y1, x0:x1]
    return out


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float, mix: Mix = Mix()) -> torch.Tensor:
    """Smoothed one-hot targets mixed by ``mix`` (float32, shape N x K)."""
    def smooth(labels):
        t = F.one_hot(labels, num_classes).float()
        return t * (1.0 - smoothing) + smoothing / num_classes

    t = smooth(y)
    if mix.kind != "none":
        t = t * mix.lam + smooth(y[mix.perm.to(y.device)]) * (1.0 - mix.lam)
    return t


def mixed_loss(logits: torch.Tensor, y: torch.Tensor, smoothing: float, mix: Mix = Mix()) -> torch.Tensor:
    """Cross-entropy against the smoothed, mixed targets (the fast built-in path when unmixed)."""
    logits = logits.float()
    if mix.kind == "none":
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    target = soft_targets(y, logits.shape[1], smoothing, mix)
    return torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
