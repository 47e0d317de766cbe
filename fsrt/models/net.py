"""The network: stem -> stages -> head, built from a ``ModelSpec``."""

from __future__ import annotations

import math

import torch
from torch import nn

from fsrt.models.blocks import ConvBN, make_block
from fsrt.spec import HeadSpec, ModelSpec, StemSpec


class Stem(nn.Sequential):
    """``simple``: 3x3 s2 conv; ``res``: 7x7 s2 conv + 3x3 s2 max-pool; ``deep``: three 3x3
    convs (first stride 2) then a max-pool or a strided 3x3 conv (ResNet-RS)."""

    def __init__(self, stem: StemSpec, in_channels: int = 3):
        act = stem.activation
        if stem.type == "simple":
            layers = [ConvBN(in_channels, stem.widths[0], 3, stride=2, act=act)]
        elif stem.type == "res":
            layers = [ConvBN(in_channels, stem.widths[0], 7, stride=2, act=act)]
        else:
            w0, w1, w2 = stem.widths
            layers = [ConvBN(in_channels, w0, 3, stride=2, act=act), ConvBN(w0, w1, 3, act=act),
                      ConvBN(w1, w2, 3, act=act)]
        if stem.pool == "max":
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        elif stem.pool == "conv":
            layers.append(ConvBN(stem.out_width, stem.out_width, 3, stride=2, act=act))
        super().__init__(*layers)


class Head(nn.Module):
    """Optional 1x1 conv+BN+act, global average pool, dropout, FC with bias."""

    def __init__(self, head: HeadSpec, w_in: int, num_classes: int):
        super().__init__()
        self.conv = ConvBN(w_in, head.width, 1, act=head.activation) if head.width else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(head.dropout) if head.dropout > 0 else nn.Identity()
        self.fc = nn.Linear(head.width or w_in, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.fc(self.dropout(x))


class Net(nn.Module):
    """A network built from a spec; ``self.spec`` keeps the spec it came from."""

    def __init__(self, spec: ModelSpec, in_channels: int = 3):
        super().__init__()
        self.spec = spec
        self.stem = Stem(spec.stem, in_channels)
        n_blocks, idx = spec.depth, 0
        stages, w_in = [], spec.stem.out_width
        for st in spec.stages:
            blocks = []
            for j in range(st.depth):
                rate = spec.drop_path * idx / max(1, n_blocks - 1)
                blocks.append(make_block(st, w_in, st.stride if j == 0 else 1, rate))
                w_in, idx = st.width, idx + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = Head(spec.head, w_in, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def init_weights(model: nn.Module, zero_init_last_bn: bool = False) -> None:
    """pycls initialization: conv ~ N(0, sqrt(2/(k*k*w_out))), BN gamma 1 / beta 0, FC ~
    N(0, 0.01), biases 0; optionally gamma 0 on the BN closing each residual branch."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            nn.init.zeros_(m.bias)
    if zero_init_last_bn:
        for m in model.modules():
            if getattr(m, "has_residual", False) and hasattr(m, "last_bn"):
                nn.init.zeros_(m.last_bn().weight)
