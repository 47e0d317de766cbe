"""BatchNorm folding (inference only), torch only: the one implementation fsrt has.

In eval mode ``BN(conv(x) + b) = conv(x) * scale + shift`` per output channel, with
``scale = gamma / sqrt(running_var + eps)`` and ``shift = beta + (b - running_mean) * scale``.
Two users need it: the Triton kernel's fused epilogue (``patch.GroupConv2d`` keeps ``scale``
and ``shift`` as buffers) and ONNX export (``fold_batchnorm`` writes them into a plain conv so
the exported graph has no BatchNormalization node with any exporter version). It lives in
``fsrt.kernels`` because kernels may import only torch, and exporters may import kernels.

The arithmetic is done in float64, so the values cast afterwards to the model's dtype are
correctly rounded. A BN is folded only into the conv right before it in an ``nn.Sequential``
(``nn.Identity`` placeholders in between are skipped), with matching channels and running stats.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d, conv_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float64 ``(scale, shift)`` with ``bn(y + conv_bias) == y * scale + shift`` (running stats)."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        mean = bn.running_mean.double()
        if conv_bias is not None:
            mean = mean - conv_bias.double()
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
    return scale, shift


def next_module(children: list[tuple[str, nn.Module]], start: int) -> int | None:
    """Index of the first child at or after ``start`` that is not an ``nn.Identity`` placeholder."""
    return next((j for j in range(start, len(children)) if type(children[j][1]) is not nn.Identity), None)


def foldable_bn_after(children: list[tuple[str, nn.Module]], i: int) -> int | None:
    """Index of the BatchNorm2d that follows the conv ``children[i]`` and can be folded into it, or ``None``.

    ``children`` are an ``nn.Sequential``'s ``(name, module)`` pairs. The BN must have running
    statistics and as many channels as the conv has outputs.
    """
    j = next_module(children, i + 1)
    if j is None:
        return None
    conv, bn = children[i][1], children[j][1]
    ok = isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.num_features == conv.out_channels
    return j if ok else None


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv (with bias) equal to ``bn(conv(x))`` in eval mode."""
    scale, shift = bn_scale_shift(bn, conv.bias)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias.copy_(shift.to(conv.weight.dtype))
    return fused


def fold_batchnorm(model: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, int]:
    """``(model with every foldable Conv2d -> BatchNorm2d pair fused, number of pairs folded)``.

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
        children = list(parent.named_children())
        for i, (name, conv) in enumerate(children):
            j = foldable_bn_after(children, i) if isinstance(conv, nn.Conv2d) else None
            if j is not None:
                setattr(parent, name, fold_conv_bn(conv, children[j][1]))
                setattr(parent, children[j][0], nn.Identity())
                folded += 1
    return model, folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm modules left in ``model`` (0 after a complete fold)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
