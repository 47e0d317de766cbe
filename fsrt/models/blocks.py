"""Building blocks: conv+BN, squeeze-excitation, bottleneck (X/Y/Z/RS) and MBConv.

Widths are explicit arguments; every block is constructed from the shape
``fsrt.block_shapes`` derives from one ``StageSpec`` plus its input width and stride, the same
shape ``fsrt.complexity`` counts, so the module mirrors the spec and its complexity exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from fsrt.block_shapes import bottleneck_shape, mbconv_shape
from fsrt.spec import StageSpec

BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def make_act(name: str) -> nn.Module:
    """The activation module for ``relu`` or ``silu``."""
    return nn.ReLU(inplace=True) if name == "relu" else nn.SiLU(inplace=True)


class ConvBN(nn.Sequential):
    """k x k conv (no bias, 'same' padding) followed by BatchNorm, optionally an activation."""

    def __init__(self, w_in: int, w_out: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None):
        layers = [
            nn.Conv2d(w_in, w_out, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(w_out, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        if act:
            layers.append(make_act(act))
        super().__init__(*layers)

    @property
    def bn(self) -> nn.BatchNorm2d:
        return self[1]


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 conv to ``w_se``, act, 1x1 conv back, sigmoid, channel-wise multiply."""

    def __init__(self, w: int, w_se: int, act: str):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(w, w_se, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(w_se, w, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.expand(self.act(self.reduce(self.pool(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample during training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Shortcut(nn.Module):
    """Projection shortcut: ``conv`` (1x1 strided conv + BN) or ``avgpool`` (ResNet-D: 2x2 avg-pool
    with the stride, then 1x1 conv + BN)."""

    def __init__(self, w_in: int, w_out: int, stride: int, kind: str):
        super().__init__()
        use_pool = kind == "avgpool"
        self.pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if use_pool else nn.Identity()
        self.proj = ConvBN(w_in, w_out, 1, stride=1 if use_pool else stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x))


class Bottleneck(nn.Module):
    """1x1 -> kxk group conv (stride here) -> 1x1 with a residual connection.

    ``x``: RegNetX/ResNet(X)t; ``y``: SE after the kxk sized from the block input width;
    ``z``: RegNetZ (inverted bottleneck, no activation after the last 1x1 nor after the add,
    residual only when shapes match); ``rs``: SE on the block output (ResNet-RS).
    """

    def __init__(self, st: StageSpec, w_in: int, stride: int, drop_path: float = 0.0):
        super().__init__()
        s, act = bottleneck_shape(st, w_in, stride), st.activation
        self.a = ConvBN(s.w_in, s.w_b, 1, act=act)
        self.b = ConvBN(s.w_b, s.w_b, s.kernel, stride=s.stride, groups=s.groups, act=act)
        self.se = SqueezeExcite(s.w_b, s.se_mid, act) if s.se_mid is not None else nn.Identity()
        self.c = ConvBN(s.w_b, s.w_out, 1)
        self.se_out = SqueezeExcite(s.w_out, s.se_out, act) if s.se_out is not None else nn.Identity()
        self.linear = s.linear
        self.has_residual = s.residual
        self.shortcut = Shortcut(s.w_in, s.w_out, s.stride, s.projection) if s.projection else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.has_residual else nn.Identity()
        self.act = nn.Identity() if self.linear else make_act(act)

    def last_bn(self) -> nn.BatchNorm2d:
        """BN closing the residual branch (zero-initialized on request)."""
        return self.c.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.se_out(self.c(self.se(self.b(self.a(x)))))
        if not self.has_residual:
            return f
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(skip + self.drop_path(f))


class MBConv(nn.Module):
    """EfficientNet block: 1x1 expand (skipped at expansion 1), depthwise kxk, SE, linear 1x1."""

    def __init__(self, st: StageSpec, w_in: int, stride: int, drop_path: float = 0.0):
        super().__init__()
        s, act = mbconv_shape(st, w_in, stride), st.activation
        self.expand = ConvBN(s.w_in, s.w_exp, 1, act=act) if s.expand else nn.Identity()
        self.dwise = ConvBN(s.w_exp, s.w_exp, s.kernel, stride=s.stride, groups=s.w_exp, act=act)
        self.se = SqueezeExcite(s.w_exp, s.w_se, act) if s.w_se is not None else nn.Identity()
        self.project = ConvBN(s.w_exp, s.w_out, 1)
        self.has_residual = s.residual
        self.drop_path = DropPath(drop_path) if drop_path > 0 and self.has_residual else nn.Identity()

    def last_bn(self) -> nn.BatchNorm2d:
        """BN closing the residual branch (zero-initialized on request)."""
        return self.project.bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.project(self.se(self.dwise(self.expand(x))))
        return x + self.drop_path(f) if self.has_residual else f


def make_block(st: StageSpec, w_in: int, stride: int, drop_path: float = 0.0) -> nn.Module:
    """The block module for a stage's block type."""
    if st.block == "mbconv":
        return MBConv(st, w_in, stride, drop_path)
    return Bottleneck(st, w_in, stride, drop_path)
