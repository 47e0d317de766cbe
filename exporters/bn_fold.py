"""Fold BatchNorm into the preceding convolution (inference only).

In eval mode ``BN(conv(x)) = gamma * (W*x + b - mean) / sqrt(var + eps) + beta``, which is one
conv with weight ``W * s`` and bias ``(b - mean) * s + beta`` where ``s = gamma / sqrt(var + eps)``.
Folding in PyTorch before export (rather than relying on an exporter pass) makes the exported
graph free of BatchNormalization nodes with any exporter version; the arithmetic is done in
float64 so the folded fp32 weights are correctly rounded.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``bn(conv(x))`` in eval mode."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    mean, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_((w * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_(((b - mean) * scale + beta).to(conv.weight.dtype))
    return fused


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, int]:
    """``(model with every Conv2d -> BatchNorm2d pair of an nn.Sequential fused, pairs folded)``.

    The BN is replaced by ``nn.Identity`` so module paths stay stable. The model is copied
    unless ``inplace``; it is put in eval mode (folding is wrong for training-mode BN).
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    folded = 0
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats \
                    and bn.num_features == conv.out_channels:
                parent._modules[a] = _fold_pair(conv, bn)
                parent._modules[b] = nn.Identity()
                folded += 1
    return model, folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm modules left in ``model`` (0 after a complete fold)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
