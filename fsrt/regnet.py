"""RegNet generation: the quantized linear width rule and block compatibility.

RegNet describes a whole network with six numbers (d, w0, wa, wm, g, b). ``RegNetParams``
holds them and expands them into the per-stage form that every other part of fsrt uses
(docs/architecture.md, "RegNet generation"). Rounding is Python's ``round`` (half to even), as in pycls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fsrt.errors import FsrtError


def regnet_block_widths(depth: int, w0: float, wa: float, wm: float, q: int = 8) -> tuple[list[int], int]:
    """Per-block widths of a RegNet and the number of stages its exponents imply.

    ``u_j = w0 + wa*j``; ``s_j = round(log(u_j/w0)/log(wm))``; ``w_j = round(w0*wm**s_j/q)*q``.
    Returns ``(widths, max(s_j) + 1)``; the config is valid when the number of distinct widths
    equals that count.
    """
    check_regnet_numbers(depth, w0, wa, wm, q)
    exps = [round(math.log((w0 + wa * j) / w0) / math.log(wm)) for j in range(depth)]
    widths = [int(round(w0 * wm**s / q) * q) for s in exps]
    return widths, max(exps) + 1


def check_regnet_numbers(depth: int, w0: float, wa: float, wm: float, q: int = 8) -> None:
    """Reject RegNet parameters that cannot generate a network, with the reason."""
    if int(depth) != depth or depth < 1:
        raise FsrtError(f"RegNet depth must be a positive integer, got {depth}")
    if w0 <= 0 or w0 % q:
        raise FsrtError(f"RegNet w0 must be a positive multiple of {q}, got {w0}")
    if wa < 0:
        raise FsrtError(f"RegNet wa (width slope) must be >= 0, got {wa}")
    if wm <= 1:
        raise FsrtError(f"RegNet wm (width multiplier) must be > 1, got {wm}")


def group_runs(widths: list[int]) -> list[tuple[int, int]]:
    """Collapse per-block widths into stages: runs of equal width as (width, count)."""
    runs: list[tuple[int, int]] = []
    for w in widths:
        if runs and runs[-1][0] == w:
            runs[-1] = (w, runs[-1][1] + 1)
        else:
            runs.append((w, 1))
    return runs


def block_compatible(w: int, b: float, g: int) -> tuple[int, int]:
    """Adjust one stage's width and group width so the bottleneck width is a multiple of g.

    Returns ``(width, group_width)``; follows pycls's rule, including the lcm with an integer
    expansion factor when ``b > 1`` (RegNetZ).
    """
    v = int(max(1, w * b))
    g = int(min(g, v))
    m = math.lcm(g, int(b)) if b > 1 else g
    v = max(m, int(round(v / m) * m))
    return int(v / b), g


def is_valid_regnet(depth: int, w0: float, wa: float, wm: float, q: int = 8) -> bool:
    """True when the RegNet's distinct widths match its exponent count (samplers reject others)."""
    widths, n_exps = regnet_block_widths(depth, w0, wa, wm, q)
    return len(set(widths)) == n_exps


@dataclass(frozen=True)
class RegNetParams:
    """The six RegNet numbers plus the block choices; ``stage_layout()`` expands them
    (``fsrt.spec.regnet_stages`` turns that layout into stage specs).

    block: ``x`` (RegNetX), ``y`` (X + SE after the 3x3, RegNetY), ``z`` (inverted bottleneck,
    RegNetZ). ``group_w`` is g, ``bot_mul`` is b.
    """

    depth: int
    w0: float
    wa: float
    wm: float
    group_w: int
    bot_mul: float = 1.0
    block: str = "x"
    se_r: float = 0.0
    activation: str = "relu"
    q: int = 8

    def __post_init__(self):
        check_regnet_numbers(self.depth, self.w0, self.wa, self.wm, self.q)
        if self.group_w < 1:
            raise FsrtError(f"RegNet group width must be >= 1, got {self.group_w}")
        if self.bot_mul <= 0:
            raise FsrtError(f"RegNet bottleneck multiplier must be > 0, got {self.bot_mul}")

    def stage_layout(self) -> list[tuple[int, int, int]]:
        """(depth, width, group width) per stage after block compatibility."""
        widths, _ = regnet_block_widths(self.depth, self.w0, self.wa, self.wm, self.q)
        layout = []
        for w, d in group_runs(widths):
            w2, g2 = block_compatible(w, self.bot_mul, self.group_w)
            layout.append((d, w2, g2))
        return layout

    def to_dict(self) -> dict:
        """Plain dict for JSON/YAML."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
