"""Swap eligible ``nn.Conv2d`` layers of a built model for the fsrt Triton grouped conv.

Eligible: a grouped conv (``groups > 1``; dense convs stay on cuDNN/GEMM unless asked) with a
square kernel in ``kernel_sizes``, dilation 1 and zero padding mode. With ``fuse_bn=True``
(eval mode only) a ``Conv2d -> BatchNorm2d [-> ReLU | SiLU]`` run inside an ``nn.Sequential``
(fsrt's ``ConvBN``) becomes one fused op: BN folded into the epilogue's scale/bias, activation
applied in-kernel, the BN and activation modules replaced by ``nn.Identity``. ``fuse_act=True``
alone fuses ``Conv2d [-> Identity] -> ReLU | SiLU`` (a model whose BN is already folded).
"""

from __future__ import annotations

import torch
from torch import nn

from .bn_fold import bn_scale_shift, foldable_bn_after, next_module
from .op import KernelInputError, group_conv2d

_ACT_NAMES = {nn.ReLU: "relu", nn.SiLU: "silu"}


class GroupConv2d(nn.Module):
    """Drop-in module for ``nn.Conv2d`` backed by ``fsrt::group_conv2d`` (inference).

    Shares the conv's ``weight``/``bias`` parameters, so state_dict keys are unchanged; a folded
    BatchNorm adds the buffers ``bn_scale``/``bn_shift``.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, activation: str = "none"):
        super().__init__()
        check_convertible(conv)
        self.stride = tuple(conv.stride)
        self.padding = tuple(conv.padding)
        self.groups = conv.groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.weight = conv.weight
        self.bias = conv.bias
        self.activation = activation
        if bn is None:
            self.register_buffer("bn_scale", None)
            self.register_buffer("bn_shift", None)
        else:
            scale, shift = bn_scale_shift(bn, conv.bias)
            self.register_buffer("bn_scale", scale.to(conv.weight.dtype))
            self.register_buffer("bn_shift", shift.to(conv.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn_scale is not None:
            return group_conv2d(x, self.weight, self.bn_shift, self.stride, self.padding, self.groups,
                                scale=self.bn_scale, activation=self.activation)  # fmt: skip
        return group_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups,
                            activation=self.activation)  # fmt: skip

    def extra_repr(self) -> str:
        fused = ", bn folded" if self.bn_scale is not None else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, activation={self.activation}{fused}")  # fmt: skip


def check_convertible(conv: nn.Module) -> None:
    """Raise ``KernelInputError`` (clear, one line) if ``conv`` cannot run on the fsrt kernel."""
    if not isinstance(conv, nn.Conv2d):
        raise KernelInputError(f"expected nn.Conv2d, got {type(conv).__name__}")
    if tuple(conv.dilation) != (1, 1):
        raise KernelInputError(f"dilation {tuple(conv.dilation)} is not supported by fsrt.kernels (only 1)")
    if conv.padding_mode != "zeros":
        raise KernelInputError(f"padding_mode '{conv.padding_mode}' is not supported by fsrt.kernels (only 'zeros')")
    if isinstance(conv.padding, str):
        raise KernelInputError(f"string padding '{conv.padding}' is not supported here; give numeric padding")


def is_eligible(conv: nn.Module, kernel_sizes=(3, 5), include_dense: bool = False) -> bool:
    """Whether ``patch_model`` would swap this module."""
    if not isinstance(conv, nn.Conv2d) or type(conv) is not nn.Conv2d:
        return False
    try:
        check_convertible(conv)
    except KernelInputError:
        return False
    k = tuple(conv.kernel_size)
    return k[0] == k[1] and k[0] in kernel_sizes and (conv.groups > 1 or include_dense)


def _fusable_followers(children, i: int, fuse_bn: bool, fuse_act: bool):
    """(name, module) of the BatchNorm and activation that follow child ``i`` (skipping Identity)."""
    bn = act = None
    j = foldable_bn_after(children, i) if fuse_bn else None
    if j is not None:
        bn = children[j]
    j = next_module(children, (i if j is None else j) + 1)
    if fuse_act and j is not None and type(children[j][1]) in _ACT_NAMES:
        act = children[j]
    return bn, act


def patch_model(model: nn.Module, *, fuse_bn: bool = False, fuse_act: bool | None = None, kernel_sizes=(3, 5),
                include_dense: bool = False) -> int:  # fmt: skip
    """Replace eligible convs of ``model`` in place with ``GroupConv2d``; returns how many were swapped.

    Inside an ``nn.Sequential``, ``fuse_bn`` folds a following BatchNorm into the kernel epilogue
    (needs ``model.eval()``: folding freezes the running statistics) and ``fuse_act`` (default:
    same as ``fuse_bn``) applies a following ReLU/SiLU in-kernel; ``nn.Identity`` modules in
    between are skipped (a model whose BN was already folded keeps them as placeholders), and
    the fused modules are replaced by ``nn.Identity``.
    """
    fuse_act = fuse_bn if fuse_act is None else fuse_act
    if fuse_bn and model.training:
        raise KernelInputError("fuse_bn=True needs an eval-mode model (call model.eval() first)")
    count = 0
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if not is_eligible(child, kernel_sizes, include_dense):
                continue
            bn = act = None
            if isinstance(parent, nn.Sequential):
                bn, act = _fusable_followers(children, i, fuse_bn, fuse_act)
            act_name = _ACT_NAMES[type(act[1])] if act else "none"
            setattr(parent, name, GroupConv2d(child, bn[1] if bn else None, act_name))
            for folded in (bn, act):
                if folded is not None:
                    setattr(parent, folded[0], nn.Identity())
            count += 1
    return count
