"""The shape of one block: its widths and connections, derived from its ``StageSpec``.

This is the one place the block rules are written. The module builder
(``fsrt.models.blocks``) and the analytic complexity (``fsrt.complexity``) both read a block's
layout from here, so a rule changed here changes the built network and its counted flops,
params and acts together (the tests' hook counter then checks the two still agree).

Rules (docs/architecture.md, "The one spec" and "Complexity conventions"):

- bottleneck (``x``, ``y``, ``z``, ``rs``): 1x1 ``w_in -> w_b``, kxk group conv ``w_b -> w_b``
  (stride here, ``groups = w_b / group_w``), 1x1 ``w_b -> w_out``, with ``w_b = round(w_out * b)``.
  ``y`` and ``z`` put squeeze-excitation after the kxk conv, sized ``round(se_r * w_in)`` from the
  block *input* width; ``rs`` puts it on the output, sized ``round(se_r * w_out)``. When the
  shapes change (``w_in != w_out`` or stride 2) the shortcut is a projection (1x1 conv + BN,
  after a 2x2 average pool for the ResNet-D ``avgpool`` kind at stride 2), except for ``z``,
  which then has no residual at all and is linear (no activation after the last 1x1).
- MBConv: 1x1 expand to ``int(w_in * exp_r)`` (skipped when that equals ``w_in``), depthwise kxk
  (stride here), SE sized ``int(se_r * w_in)``, linear 1x1 project; the skip exists only at
  stride 1 with ``w_in == w_out``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsrt.spec import StageSpec


@dataclass(frozen=True)
class BottleneckShape:
    """Widths and connections of a bottleneck block (``x``, ``y``, ``z``, ``rs``).

    ``se_mid`` / ``se_out``: SE width after the kxk conv / on the output, ``None`` for no SE.
    ``projection``: ``None`` (identity or no shortcut), ``"conv"`` (strided 1x1 conv + BN) or
    ``"avgpool"`` (2x2 average pool with the stride, then 1x1 conv + BN).
    """

    w_in: int
    w_b: int
    w_out: int
    kernel: int
    stride: int
    groups: int
    se_mid: int | None
    se_out: int | None
    projection: str | None
    residual: bool
    linear: bool


@dataclass(frozen=True)
class MBConvShape:
    """Widths and connections of an MBConv block; ``w_se`` is ``None`` for no SE."""

    w_in: int
    w_exp: int
    w_out: int
    kernel: int
    stride: int
    expand: bool
    w_se: int | None
    residual: bool


def bottleneck_shape(st: StageSpec, w_in: int, stride: int) -> BottleneckShape:
    """The shape of a bottleneck block of stage ``st`` with input width ``w_in`` and ``stride``."""
    w_out, w_b = st.width, st.bottleneck_width
    has_se = st.se_r > 0
    se_mid = int(round(st.se_r * w_in)) if has_se and st.block in ("y", "z") else None
    se_out = int(round(st.se_r * w_out)) if has_se and st.block == "rs" else None
    linear = st.block == "z"
    shapes_change = w_in != w_out or stride != 1
    projection = None
    if shapes_change and not linear:
        projection = "avgpool" if st.shortcut == "avgpool" and stride > 1 else "conv"
    return BottleneckShape(w_in, w_b, w_out, st.kernel, stride, w_b // st.group_w, se_mid, se_out, projection,
                           residual=not (linear and shapes_change), linear=linear)


def mbconv_shape(st: StageSpec, w_in: int, stride: int) -> MBConvShape:
    """The shape of an MBConv block of stage ``st`` with input width ``w_in`` and ``stride``."""
    w_exp = int(w_in * st.exp_r)
    w_se = int(st.se_r * w_in) if st.se_r > 0 else None
    return MBConvShape(w_in, w_exp, st.width, st.kernel, stride, expand=w_exp != w_in, w_se=w_se,
                       residual=stride == 1 and w_in == st.width)


def block_shape(st: StageSpec, w_in: int, stride: int) -> BottleneckShape | MBConvShape:
    """The shape of one block of stage ``st`` (MBConv or bottleneck, by the stage's block type)."""
    return mbconv_shape(st, w_in, stride) if st.block == "mbconv" else bottleneck_shape(st, w_in, stride)
