"""Analytic complexity (flops, params, activations) of a ``ModelSpec``.

Follows the conventions of docs/architecture.md ("Complexity conventions") to the integer:
flops are multiply-adds, activations are the output elements of every conv, FC and spatial
pool, BN has two parameters per channel and nothing else, SE convs run at 1x1, projection
shortcuts count, activation functions, adds and the SE multiply count nothing. Block widths
and connections come from ``fsrt.block_shapes``, the same shapes the module builder uses.
``measure_complexity`` is an independent counter that hooks the real layers of a built
module; tests prove the two agree.

``layer_count`` counts the conv and fully connected layers (SE and shortcut convs included):
each is one kernel dispatch in every runtime, the per-layer cost term of a latency model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsrt.block_shapes import BottleneckShape, MBConvShape, block_shape
from fsrt.errors import FsrtError
from fsrt.spec import ModelSpec, StageSpec, StemSpec


@dataclass(frozen=True)
class Complexity:
    """Flops (multiply-adds), parameters and activations of a network or a part of it."""

    flops: int = 0
    params: int = 0
    acts: int = 0

    def __add__(self, other: Complexity) -> Complexity:
        return Complexity(self.flops + other.flops, self.params + other.params, self.acts + other.acts)

    def __sub__(self, other: Complexity) -> Complexity:
        return Complexity(self.flops - other.flops, self.params - other.params, self.acts - other.acts)

    def __mul__(self, n: int) -> Complexity:
        return Complexity(self.flops * n, self.params * n, self.acts * n)

    def to_dict(self) -> dict:
        """``{"flops", "params", "acts"}`` as integers."""
        return {"flops": self.flops, "params": self.params, "acts": self.acts}


@dataclass
class _Tally:
    """Running totals over a feature map of size h x w."""

    h: int
    w: int
    flops: int = 0
    params: int = 0
    acts: int = 0
    layers: int = 0  # conv and FC layers

    def conv(self, k: int, w_in: int, w_out: int, stride: int = 1, groups: int = 1, bias: bool = False) -> None:
        self.h = (self.h - 1) // stride + 1
        self.w = (self.w - 1) // stride + 1
        hw = self.h * self.w
        self.flops += k * k * w_in * w_out * hw // groups + (w_out * hw if bias else 0)
        self.params += k * k * w_in * w_out // groups + (w_out if bias else 0)
        self.acts += w_out * hw
        self.layers += 1

    def conv_bn(self, k: int, w_in: int, w_out: int, stride: int = 1, groups: int = 1) -> None:
        self.conv(k, w_in, w_out, stride, groups)
        self.params += 2 * w_out

    def pool(self, c: int, stride: int) -> None:
        self.h = (self.h - 1) // stride + 1
        self.w = (self.w - 1) // stride + 1
        self.acts += c * self.h * self.w

    def se(self, w: int, w_se: int) -> None:
        """Squeeze-excitation on w channels: two biased 1x1 convs at 1x1 spatial size."""
        sub = _Tally(1, 1)
        sub.conv(1, w, w_se, bias=True)
        sub.conv(1, w_se, w, bias=True)
        self.absorb(sub)

    def absorb(self, other: _Tally, times: int = 1) -> None:
        """Add another tally's totals (a side branch, or repeated blocks) without moving h x w."""
        self.flops += other.flops * times
        self.params += other.params * times
        self.acts += other.acts * times
        self.layers += other.layers * times

    def fc(self, w_in: int, w_out: int) -> None:
        self.flops += w_in * w_out + w_out
        self.params += w_in * w_out + w_out
        self.acts += w_out
        self.layers += 1

    def snapshot(self) -> Complexity:
        return Complexity(self.flops, self.params, self.acts)


def _stem(t: _Tally, stem: StemSpec) -> None:
    if stem.type == "simple":
        t.conv_bn(3, 3, stem.widths[0], stride=2)
    elif stem.type == "res":
        t.conv_bn(7, 3, stem.widths[0], stride=2)
    else:
        w0, w1, w2 = stem.widths
        t.conv_bn(3, 3, w0, stride=2)
        t.conv_bn(3, w0, w1)
        t.conv_bn(3, w1, w2)
    if stem.pool == "max":
        t.pool(stem.out_width, 2)
    elif stem.pool == "conv":
        t.conv_bn(3, stem.out_width, stem.out_width, stride=2)


def _mbconv(t: _Tally, s: MBConvShape) -> None:
    if s.expand:
        t.conv_bn(1, s.w_in, s.w_exp)
    t.conv_bn(s.kernel, s.w_exp, s.w_exp, s.stride, groups=s.w_exp)
    if s.w_se is not None:
        t.se(s.w_exp, s.w_se)
    t.conv_bn(1, s.w_exp, s.w_out)


def _bottleneck(t: _Tally, s: BottleneckShape) -> None:
    h_in, w_in_sp = t.h, t.w
    t.conv_bn(1, s.w_in, s.w_b)
    t.conv_bn(s.kernel, s.w_b, s.w_b, s.stride, groups=s.groups)
    if s.se_mid is not None:
        t.se(s.w_b, s.se_mid)
    t.conv_bn(1, s.w_b, s.w_out)
    if s.se_out is not None:
        t.se(s.w_out, s.se_out)
    if s.projection:
        sc = _Tally(h_in, w_in_sp)
        if s.projection == "avgpool":
            sc.pool(s.w_in, s.stride)
            sc.conv_bn(1, s.w_in, s.w_out)
        else:
            sc.conv_bn(1, s.w_in, s.w_out, s.stride)
        assert (sc.h, sc.w) == (t.h, t.w)
        t.absorb(sc)


def _block(t: _Tally, st: StageSpec, w_in: int, stride: int) -> None:
    s = block_shape(st, w_in, stride)
    (_mbconv if isinstance(s, MBConvShape) else _bottleneck)(t, s)


@dataclass(frozen=True)
class PartComplexity:
    """Complexity of one named part (stem, stage N, head) and its output shape (C, H, W)."""

    name: str
    cx: Complexity
    shape: tuple[int, int, int]
    depth: int = 0
    layers: int = 0  # conv and fully connected layers in this part


@dataclass(frozen=True)
class Breakdown:
    """Per-part and total complexity of a spec at a resolution."""

    resolution: int
    parts: tuple[PartComplexity, ...] = field(default_factory=tuple)

    @property
    def total(self) -> Complexity:
        tot = Complexity()
        for p in self.parts:
            tot = tot + p.cx
        return tot

    @property
    def layers(self) -> int:
        """Conv and fully connected layers of the whole network."""
        return sum(p.layers for p in self.parts)


def complexity_breakdown(spec: ModelSpec, resolution: int | None = None) -> Breakdown:
    """Stem, per-stage and head complexity of ``spec`` at ``resolution`` (default: train size)."""
    r = spec.resolution if resolution is None else resolution
    if not isinstance(r, int) or r < 1:
        raise FsrtError(f"resolution must be a positive integer, got {r}")
    t = _Tally(r, r)
    parts = []
    _stem(t, spec.stem)
    parts.append(PartComplexity("stem", t.snapshot(), (spec.stem.out_width, t.h, t.w), layers=t.layers))
    w_in = spec.stem.out_width
    for i, st in enumerate(spec.stages):
        before, layers_before = t.snapshot(), t.layers
        _block(t, st, w_in, st.stride)
        if st.depth > 1:
            one = _Tally(t.h, t.w)
            _block(one, st, st.width, 1)
            t.absorb(one, st.depth - 1)
        parts.append(PartComplexity(f"stage{i + 1}", t.snapshot() - before, (st.width, t.h, t.w), st.depth,
                                    t.layers - layers_before))
        w_in = st.width
    before, layers_before = t.snapshot(), t.layers
    if spec.head.width:
        t.conv_bn(1, w_in, spec.head.width)
        w_in = spec.head.width
    t.fc(w_in, spec.num_classes)
    parts.append(PartComplexity("head", t.snapshot() - before, (spec.num_classes, 1, 1),
                                layers=t.layers - layers_before))
    return Breakdown(r, tuple(parts))


def complexity(spec: ModelSpec, resolution: int | None = None) -> Complexity:
    """Total flops (multiply-adds), params and acts of ``spec`` at its train resolution."""
    return complexity_breakdown(spec, resolution).total


def layer_count(spec: ModelSpec) -> int:
    """Number of conv and fully connected layers of ``spec`` (SE convs and projection shortcuts
    included; resolution does not change it): one kernel dispatch each when the network runs."""
    return complexity_breakdown(spec).layers


def measure_complexity(model, resolution: int, in_channels: int = 3) -> Complexity:
    """Count flops/params/acts by running ``model`` and hooking its real layers.

    Independent of the spec: it reads each Conv2d/Linear's weights and actual output shape,
    and each spatial pool's output, so it checks ``complexity`` against what was built. Works
    on modules built on the ``meta`` device (no memory, no arithmetic).
    """
    import torch
    from torch import nn

    totals = {"flops": 0, "acts": 0}

    def on_conv(m: nn.Conv2d, inp, out):
        per_out = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        n = out[0].numel()
        totals["flops"] += n * per_out + (n if m.bias is not None else 0)
        totals["acts"] += n

    def on_linear(m: nn.Linear, inp, out):
        n = out[0].numel()
        totals["flops"] += n * m.in_features + (n if m.bias is not None else 0)
        totals["acts"] += n

    def on_pool(m, inp, out):
        totals["acts"] += out[0].numel()

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(on_linear))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            handles.append(m.register_forward_hook(on_pool))
    p = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, resolution, resolution, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(q.numel() for q in model.parameters())
    return Complexity(totals["flops"], params, totals["acts"])
