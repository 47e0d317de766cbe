"""Deliberate bugs for the accuracy check to catch: each turns a correct PyTorch model into the
kind of wrong one a broken runtime or exporter would run. Written independently of fsrt's
model code (they act on any ``nn.Module`` with convolutions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kxk_convs(model) -> list[torch.nn.Conv2d]:
    """The model's convolutions with a spatial kernel (k > 1), in module order."""
    return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]


def pick(model, where: float) -> torch.nn.Conv2d:
    """The k x k convolution at relative depth ``where`` (0 = first, 1 = last)."""
    convs = kxk_convs(model)
    return convs[round(where * (len(convs) - 1))]


def perturb_weights(model, frac: float, where: float = 0.0, seed: int = 1) -> None:
    """Multiply one conv's weights by ``1 + frac * N(0, 1)`` (in place): a layer's weights off by ``frac``."""
    conv = pick(model, where)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv.weight.mul_(1 + frac * torch.randn(conv.weight.shape, generator=gen))


def transpose_kernel(model, where: float = 0.5) -> None:
    """Swap one conv's kernel rows and columns (in place): a kernel read in the wrong layout."""
    conv = pick(model, where)
    with torch.no_grad():
        conv.weight.copy_(conv.weight.transpose(-1, -2).clone())


class ShiftedPadding(torch.nn.Module):
    """A conv whose 'same' padding all goes to the top and left: the output keeps its shape but
    is shifted by one pixel, as with an off-by-one padding in a kernel."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.pad = conv.padding[0]
        conv.padding = (0, 0)
        self.conv = conv

    def forward(self, x):
        return self.conv(F.pad(x, (2 * self.pad, 0, 2 * self.pad, 0)))


def shift_padding(model, where: float = 0.5) -> None:
    """Replace one conv by ``ShiftedPadding`` of itself (in place)."""
    conv = pick(model, where)
    parents = [(m, name) for m in model.modules() for name, child in m.named_children() if child is conv]
    for parent, name in parents:
        setattr(parent, name, ShiftedPadding(conv))
