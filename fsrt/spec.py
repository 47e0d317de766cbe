"""``ModelSpec``: the single, immutable, serializable description of a network.

Everything in fsrt derives from a spec: the ``nn.Module`` (``fsrt.models``), the analytic
complexity (``fsrt.complexity``), the scaler and the export metadata. Specs are frozen
dataclasses that round-trip through JSON and YAML; validation happens on construction so a
bad spec fails with a clear message before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fsrt.errors import FsrtError
from fsrt.regnet import RegNetParams

BLOCKS = {
    "x": "bottleneck: 1x1, 3x3 group conv, 1x1 (RegNetX, ResNet, ResNeXt)",
    "y": "x block with squeeze-excitation after the 3x3 (RegNetY)",
    "z": "inverted bottleneck, SE, linear last 1x1, no shortcut on shape change (RegNetZ)",
    "mbconv": "1x1 expand, depthwise kxk, SE, linear 1x1 project (EfficientNet)",
    "rs": "bottleneck with squeeze-excitation on the block output (ResNet-RS)",
}
STEMS = ("simple", "res", "deep")
STEM_POOLS = ("none", "max", "conv")
SHORTCUTS = ("conv", "avgpool")
ACTIVATIONS = ("relu", "silu")
MIN_RESOLUTION = 8  # pixels: the smallest input every network here can take (stem and stage strides)
FAMILIES = ("anynet", "regnetx", "regnety", "regnetz", "effnet", "resnet", "resnext",
            "resnet_d", "resnet_rs")


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise FsrtError(f"invalid spec: {msg}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class StemSpec:
    """Stem: ``simple`` (3x3 s2 conv), ``res`` (7x7 s2 conv + 3x3 s2 max-pool) or ``deep``
    (three 3x3 convs, first with stride 2, then a max-pool or a strided 3x3 conv)."""

    type: str = "simple"
    widths: tuple[int, ...] = (32,)
    pool: str = "none"
    activation: str = "relu"

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        _need(self.type in STEMS, f"stem type {self.type!r} is not one of {', '.join(STEMS)}")
        _need(self.pool in STEM_POOLS, f"stem pool {self.pool!r} is not one of {', '.join(STEM_POOLS)}")
        _need(self.activation in ACTIVATIONS, f"stem activation {self.activation!r} is not one of {ACTIVATIONS}")
        _need(all(_is_int(w) and w > 0 for w in self.widths),
              f"stem widths must be positive integers, got {list(self.widths)}")
        n = 3 if self.type == "deep" else 1
        pools = {"simple": ("none",), "res": ("max",), "deep": ("max", "conv")}[self.type]
        _need(self.pool in pools, f"a {self.type} stem takes pool {' or '.join(pools)}, got {self.pool!r}")
        _need(len(self.widths) == n, f"a {self.type} stem has {n} width(s), got {list(self.widths)}")

    @property
    def out_width(self) -> int:
        """Channels the stem hands to the first stage."""
        return self.widths[-1]

    @property
    def stride(self) -> int:
        """Total downsampling of the stem."""
        return 2 if self.pool == "none" else 4


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` identical blocks of type ``block``; only the first has ``stride``.

    ``width`` is the block output width, ``bot_mul`` the bottleneck multiplier b
    (``w_b = round(width * b)``), ``group_w`` the group width g of the 3x3 conv (ignored for
    depthwise MBConv), ``kernel`` the spatial conv size, ``se_r`` the squeeze-excitation ratio,
    ``exp_r`` the MBConv expansion ratio and ``shortcut`` the projection type.
    """

    depth: int
    width: int
    stride: int = 2
    block: str = "x"
    bot_mul: float = 1.0
    group_w: int = 1
    kernel: int = 3
    se_r: float = 0.0
    exp_r: float = 1.0
    activation: str = "relu"
    shortcut: str = "conv"

    def __post_init__(self):
        _need(self.block in BLOCKS, f"block {self.block!r} is not one of {', '.join(BLOCKS)}")
        _need(_is_int(self.depth) and self.depth >= 1, f"stage depth must be an integer >= 1, got {self.depth}")
        _need(_is_int(self.width) and self.width >= 1, f"stage width must be an integer >= 1, got {self.width}")
        _need(self.stride in (1, 2), f"stage stride must be 1 or 2, got {self.stride}")
        _need(_is_int(self.kernel) and self.kernel >= 1 and self.kernel % 2 == 1,
              f"kernel must be a positive odd integer, got {self.kernel}")
        _need(self.activation in ACTIVATIONS, f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        _need(self.shortcut in SHORTCUTS, f"shortcut {self.shortcut!r} is not one of {SHORTCUTS}")
        _need(0 <= self.se_r < 1, f"se_r must be in [0, 1), got {self.se_r}")
        _need(self.bot_mul > 0, f"bot_mul must be > 0, got {self.bot_mul}")
        _need(self.exp_r >= 1, f"exp_r must be >= 1, got {self.exp_r}")
        _need(_is_int(self.group_w) and self.group_w >= 1, f"group_w must be an integer >= 1, got {self.group_w}")
        if self.block == "y":
            _need(self.se_r > 0, "a y block needs se_r > 0 (use block x for no SE)")
        if self.block == "x":
            _need(self.se_r == 0, "an x block has no SE (use block y for SE after the 3x3)")
        if self.block != "mbconv":
            w_b = self.bottleneck_width
            _need(w_b % self.group_w == 0,
                  f"bottleneck width {w_b} (= round({self.width} * {self.bot_mul})) is not a "
                  f"multiple of group width {self.group_w}")

    @property
    def bottleneck_width(self) -> int:
        """w_b = round(width * bot_mul), the width of the 3x3 conv."""
        return int(round(self.width * self.bot_mul))


@dataclass(frozen=True)
class HeadSpec:
    """Head: optional 1x1 conv+BN+act to ``width`` (0 = none), global pool, dropout, FC."""

    width: int = 0
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self):
        _need(_is_int(self.width) and self.width >= 0, f"head width must be an integer >= 0, got {self.width}")
        _need(0 <= self.dropout < 1, f"head dropout must be in [0, 1), got {self.dropout}")
        _need(self.activation in ACTIVATIONS, f"head activation {self.activation!r} is not one of {ACTIVATIONS}")


@dataclass(frozen=True)
class ModelSpec:
    """A whole network: family, train resolution, classes, stem, stages, head.

    ``resolution`` is the train image size (complexity is reported there);
    ``eval_resolution`` the test size when it differs. ``drop_path`` is the stochastic-depth
    rate of the last block (linearly increasing over blocks), used by ResNet-RS and EfficientNet
    recipes. ``name`` is informational.
    """

    family: str
    resolution: int
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    num_classes: int = 1000
    name: str = ""
    eval_resolution: int | None = None
    drop_path: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        _need(self.family in FAMILIES, f"family {self.family!r} is not one of {', '.join(FAMILIES)}")
        _need(_is_int(self.resolution) and self.resolution >= MIN_RESOLUTION,
              f"resolution must be an integer >= {MIN_RESOLUTION} pixels, got {self.resolution}")
        _need(self.eval_resolution is None
              or (_is_int(self.eval_resolution) and self.eval_resolution >= MIN_RESOLUTION),
              f"eval_resolution must be an integer >= {MIN_RESOLUTION} pixels, got {self.eval_resolution}")
        _need(_is_int(self.num_classes) and self.num_classes >= 1, f"num_classes must be >= 1, got {self.num_classes}")
        _need(len(self.stages) >= 1, "a model needs at least one stage")
        _need(0 <= self.drop_path < 1, f"drop_path must be in [0, 1), got {self.drop_path}")

    # -- derived views -------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Total number of blocks."""
        return sum(s.depth for s in self.stages)

    def replace(self, **changes) -> ModelSpec:
        """A copy with some fields changed (specs are immutable)."""
        return dataclasses.replace(self, **changes)

    # -- serialization -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["stem"]["widths"] = list(self.stem.widths)
        return d

    def to_json(self, indent: int | None = None) -> str:
        """JSON text of ``to_dict``."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        """YAML text of ``to_dict``."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Build and validate a spec from a dict; a ``regnet:`` block may replace ``stages``."""
        if not isinstance(data, dict):
            raise FsrtError(f"invalid spec: expected a mapping, got {type(data).__name__}")
        data = dict(data)
        regnet = data.pop("regnet", None)
        if regnet is not None:
            if "stages" in data:
                raise FsrtError("invalid spec: give either 'stages' or 'regnet', not both")
            data["stages"] = [dataclasses.asdict(s) for s in regnet_stages(_build(RegNetParams, regnet, "regnet"))]
        _check_keys(cls, data, "spec")
        for key in ("family", "resolution", "stem", "stages"):
            if key not in data:
                raise FsrtError(f"invalid spec: missing required key {key!r}")
        if not isinstance(data["stages"], (list, tuple)):
            raise FsrtError("invalid spec: 'stages' must be a list of stage mappings")
        data["stem"] = _build(StemSpec, data["stem"], "stem")
        data["stages"] = tuple(_build(StageSpec, s, f"stage {i + 1}") for i, s in enumerate(data["stages"]))
        if "head" in data:
            data["head"] = _build(HeadSpec, data["head"], "head")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse JSON text into a spec."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise FsrtError(f"invalid spec: not valid JSON ({e.msg} at line {e.lineno})") from None

    @classmethod
    def from_yaml(cls, text: str) -> ModelSpec:
        """Parse YAML (or JSON, a subset) text into a spec."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise FsrtError(f"invalid spec: not valid YAML ({str(e).splitlines()[0]})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ModelSpec:
        """Read a ``.json``/``.yaml``/``.yml`` spec file."""
        from fsrt.io import read_text_file

        p = Path(path)
        text = read_text_file(p, "spec file")
        if p.suffix.lower() == ".json":
            return cls.from_json(text)
        return cls.from_yaml(text)

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON or YAML (by suffix), atomically."""
        from fsrt.io import atomic_write_text

        p = Path(path)
        text = self.to_json(indent=2) + "\n" if p.suffix.lower() == ".json" else self.to_yaml()
        return atomic_write_text(p, text)


def regnet_stages(params: RegNetParams) -> tuple[StageSpec, ...]:
    """The per-stage ``StageSpec`` tuple a RegNet's numbers expand to (every stage stride 2, as in RegNet).

    Lives here rather than on ``RegNetParams`` so that ``fsrt.regnet`` stays free of spec
    imports (the width rule needs no specs) and the two modules do not import each other.
    """
    return tuple(StageSpec(depth=d, width=w, stride=2, block=params.block, bot_mul=params.bot_mul, group_w=g,
                           se_r=params.se_r, activation=params.activation)
                 for d, w, g in params.stage_layout())


def _check_keys(cls, data: dict, where: str) -> None:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise FsrtError(f"invalid spec: unknown key(s) {', '.join(map(repr, unknown))} in {where}; "
                        f"allowed: {', '.join(sorted(allowed))}")


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise FsrtError(f"invalid spec: {where} must be a mapping, got {type(data).__name__}")
    _check_keys(cls, data, where)
    try:
        return cls(**data)
    except TypeError as e:
        raise FsrtError(f"invalid spec: {where}: {e}") from None
