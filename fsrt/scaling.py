"""Scaling strategies and the scaler (docs/architecture.md, "Scaling").

A strategy spreads a flops multiplier ``s`` over depth, width and resolution with exponents
``e_d + e_w + e_r = 1``: depth factor ``s**e_d``, width factor ``s**(e_w/2)``, resolution
factor ``s**(e_r/2)`` (flops grow with d * w^2 * r^2, so each dimension contributes its share
of ``s``). Group width is scaled too, by ``s**(e_g/2)``.

Three ways to name a strategy (``parse_strategy``):

- fsrt's named strategies ``d w r dw dr wr dwr dWr`` (uniform in flops over the named
  dimensions; ``dWr`` puts 80% on width). Group width follows width, except for depthwise
  convs (g = 1, and MBConv), which stay depthwise.
- the alpha family ``alpha=A`` with ``e_w = A`` and ``e_d = e_r = (1-A)/2``: A=1 is ``w``,
  A=1/3 is ``dwr``, A=0.8 is ``dWr`` and A=0 is ``dr``. ``effnet`` is EfficientNet's compound
  rule (depth 1.2, width 1.1, resolution 1.15 per doubling step).
- pycls's scaler grammar, reproduced exactly: weighted ``d1_w8_g8_r1`` / ``w1_g1`` as written,
  and pycls's letter-only form spelled ``pycls:dwr`` (weight 1 per letter over d, w, g, r, so
  g is scaled only when ``g`` is named). pycls scales every AnyNet group width it is told to,
  including g = 1, and never touches EfficientNet's depthwise convs.

Quantization follows pycls: depth ``max(1, round(d*fd))``, width ``max(1, round(w*fw/8))*8``,
group width ``max(1, round(g*fg))`` snapped (kept if <= 2, 4 if <= 5, else ``round(g/8)*8``),
then block compatibility; EfficientNet also scales stem and head widths by the /8 rule;
resolution ``round(r*fr/4)*4`` (train and eval sizes). Because of quantization the realized
flops multiplier differs from ``s``; ``ScaledSpec`` records both, and ``scale_to_flops``
searches ``s`` to land a flops target.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from fsrt.complexity import Complexity, complexity
from fsrt.errors import FsrtError
from fsrt.fitting import loglog_fit
from fsrt.regnet import block_compatible
from fsrt.spec import HeadSpec, ModelSpec, StageSpec, StemSpec
from fsrt.sweep import parse_float_list

# EfficientNet's compound rule: per step depth x1.2, width x1.1, resolution x1.15 (~2x flops).
EFFNET_STEP = {"d": 1.2, "w": 1.1, "r": 1.15}


@dataclass(frozen=True)
class Strategy:
    """How a flops multiplier ``s`` is spread over depth, width, group width and resolution.

    Factors are ``d = s**e_d``, ``w = s**(e_w/2)``, ``g = s**(e_g/2)``, ``r = s**(e_r/2)``.
    ``e_g`` None means group width follows width (fsrt's rule; depthwise stays depthwise).
    ``pycls`` True means pycls's literal semantics (scale every non-EfficientNet group width by
    ``g``). ``alpha`` is set for members of the alpha family, else None.
    """

    name: str
    e_d: float
    e_w: float
    e_r: float
    e_g: float | None = None
    alpha: float | None = None
    pycls: bool = False
    description: str = ""

    def factors(self, s: float) -> dict[str, float]:
        """Continuous per-dimension factors ``{"d", "w", "g", "r"}`` for multiplier ``s``."""
        s = check_s(s)
        e_g = self.e_w if self.e_g is None else self.e_g
        return {"d": s ** self.e_d, "w": s ** (self.e_w / 2.0), "g": s ** (e_g / 2.0), "r": s ** (self.e_r / 2.0)}

    @property
    def params_exponent(self) -> float:
        """Theory: params grow as ``s**(e_d + e_w)`` (one stage; (1+alpha)/2 in the alpha family)."""
        return self.e_d + self.e_w

    @property
    def acts_exponent(self) -> float:
        """Theory: activations grow as ``s**(e_d + e_w/2 + e_r)`` ((2-alpha)/2 in the alpha family)."""
        return self.e_d + self.e_w / 2.0 + self.e_r

    @property
    def flops_exponent(self) -> float:
        """Theory: flops grow as ``s**(e_d + e_w + e_r)`` (1 for every strategy except degenerate pycls weights)."""
        return self.e_d + self.e_w + self.e_r

    def to_dict(self) -> dict:
        """JSON-able description of the strategy."""
        return {"name": self.name, "e_d": self.e_d, "e_w": self.e_w, "e_r": self.e_r,
                "e_g": self.e_w if self.e_g is None else self.e_g, "alpha": self.alpha,
                "group_follows_width": self.e_g is None, "pycls": self.pycls}


def check_s(s: float) -> float:
    """Validate a flops multiplier: a finite number > 0."""
    try:
        s = float(s)
    except (TypeError, ValueError):
        raise FsrtError(f"scale factor s must be a number, got {s!r}") from None
    if not math.isfinite(s) or s <= 0:
        raise FsrtError(f"scale factor s must be a finite number > 0, got {s:g}")
    return s


def _clean(x: float) -> float:
    """Round float noise away (``(1-0.8)/2`` -> ``0.1``) so equal strategies scale identically."""
    return round(x, 12)


def alpha_strategy(alpha: float) -> Strategy:
    """The alpha-family member: ``e_w = alpha``, ``e_d = e_r = (1-alpha)/2``; alpha in [0, 1]."""
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise FsrtError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not (0.0 <= alpha <= 1.0):
        raise FsrtError(f"alpha must be in [0, 1] (0 = dr, 1/3 = dwr, 0.8 = dWr, 1 = w), got {alpha:g}")
    e = _clean((1.0 - alpha) / 2.0)
    return Strategy(f"alpha={alpha:g}", e, _clean(alpha), e, alpha=alpha,
                    description=f"alpha family: width {alpha:g} of the flops, depth and resolution the rest equally")


def _named() -> dict[str, Strategy]:
    third = 1.0 / 3.0
    table = {
        "d": (1.0, 0.0, 0.0, None, "depth only"),
        "w": (0.0, 1.0, 0.0, 1.0, "width only (alpha=1)"),
        "r": (0.0, 0.0, 1.0, None, "resolution only"),
        "dw": (0.5, 0.5, 0.0, None, "depth and width, equal flops shares"),
        "dr": (0.5, 0.0, 0.5, 0.0, "depth and resolution, equal flops shares (alpha=0)"),
        "wr": (0.0, 0.5, 0.5, None, "width and resolution, equal flops shares"),
        "dwr": (third, third, third, third, "compound: equal flops shares (alpha=1/3)"),
        "dWr": (0.1, 0.8, 0.1, 0.8, "fast compound: 80% of the flops to width (alpha=0.8)"),
    }
    out = {name: Strategy(name, ed, ew, er, alpha=a, description=desc) for name, (ed, ew, er, a, desc) in table.items()}
    step = math.log(EFFNET_STEP["d"] * EFFNET_STEP["w"] ** 2 * EFFNET_STEP["r"] ** 2)
    out["effnet"] = Strategy(
        "effnet", math.log(EFFNET_STEP["d"]) / step, 2 * math.log(EFFNET_STEP["w"]) / step,
        2 * math.log(EFFNET_STEP["r"]) / step,
        description="EfficientNet compound rule: d x1.2, w x1.1, r x1.15 per step (step = x1.92 flops)")
    return out


NAMED = _named()
ALIASES = {"fast": "dWr", "efficientnet": "effnet", "compound": "dwr"}
_WEIGHTED_RE = re.compile(r"^[dwgr][0-9]*\.?[0-9]+(?:_[dwgr][0-9]*\.?[0-9]+)*$")
STRATEGY_HELP = ("d, w, r, dw, dr, wr, dwr, dWr (fast), effnet, alpha=A (A in [0,1]), "
                 "pycls weights such as d1_w8_g8_r1, or pycls letters such as pycls:dw")


def pycls_strategy(scale_type: str) -> Strategy:
    """A strategy from pycls's scaling-type string: letters (``dw``) or weights (``d1_w8_g8_r1``).

    Letters give weight 1 to each named dimension among d, w, g, r (others 0). With weights
    ``W``: ``sum = W_d + W_w + W_r``, or ``W_g/2`` if that is 0, or 1 if both are;
    exponents are ``W/sum`` (so ``d = s**(W_d/sum)`` and ``w = s**(W_w/sum/2)``).
    """
    text = scale_type.strip()
    if text and all(c in "dwgr" for c in text):
        if len(set(text)) != len(text):
            raise FsrtError(f"pycls scaling type {text!r} repeats a letter")
        weights = {c: 1.0 if c in text else 0.0 for c in "dwgr"}
    elif _WEIGHTED_RE.match(text):
        weights = {c: 0.0 for c in "dwgr"}
        seen = set()
        for token in text.split("_"):
            if token[0] in seen:
                raise FsrtError(f"pycls scaling type {text!r} gives {token[0]!r} twice")
            seen.add(token[0])
            weights[token[0]] = float(token[1:])
    else:
        raise FsrtError(f"cannot read pycls scaling type {text!r}: use letters from dwgr (pycls:dw) "
                        "or weights such as d1_w8_g8_r1")
    total = weights["d"] + weights["w"] + weights["r"] or weights["g"] / 2.0 or 1.0
    e = {k: v / total for k, v in weights.items()}
    alpha = None
    if e["d"] == e["r"] and e["g"] == e["w"] and math.isclose(e["d"] + e["w"] + e["r"], 1.0):
        alpha = e["w"]
    return Strategy(text if "_" in text or any(ch.isdigit() for ch in text) else f"pycls:{text}",
                    e["d"], e["w"], e["r"], e_g=e["g"], alpha=alpha, pycls=True,
                    description=f"pycls weights d={weights['d']:g} w={weights['w']:g} g={weights['g']:g} "
                                f"r={weights['r']:g}")


def parse_strategy(text: str) -> Strategy:
    """A strategy by name: fsrt's named ones, ``alpha=A``, ``effnet``, or pycls's grammar.

    Letter-only names over d, w, r are fsrt's named strategies (group width follows width);
    ``pycls:LETTERS`` is pycls's letter form; weighted forms (``d1_w8_g8_r1``) are pycls's.
    Raises ``FsrtError`` for anything else.
    """
    if text is None or not str(text).strip():
        raise FsrtError(f"strategy is empty: use one of {STRATEGY_HELP}")
    text = str(text).strip()
    if text in NAMED:
        return NAMED[text]
    if text.lower() in ALIASES:
        return NAMED[ALIASES[text.lower()]]
    low = text.lower()
    if low.startswith(("alpha=", "alpha:")):
        return alpha_strategy(_float(text[6:], "alpha"))
    if low.startswith("pycls:"):
        return pycls_strategy(text[6:])
    if _WEIGHTED_RE.match(text):
        return pycls_strategy(text)
    if text and all(c in "dwr" for c in text) and len(set(text)) == len(text):
        return NAMED["".join(c for c in "dwr" if c in text)]
    hint = ""
    if text and all(c in "dwgr" for c in text):
        hint = f" (fsrt's named strategies scale g with w; for pycls's letter form write pycls:{text})"
    raise FsrtError(f"unknown strategy {text!r}{hint}; use {STRATEGY_HELP}")


def parse_strategies(alpha: str | None = None, strategy: str | None = None) -> tuple[Strategy, ...]:
    """The strategies named by the CLI's ``--alpha A,B,...`` and ``--strategy NAME,...`` options.

    Alpha-family members first, then named strategies, each once (by name, first kept). An
    option that is given must name at least one strategy and no empty item (``"dwr,,w"``);
    an option that is ``None`` adds nothing, so the result is empty when neither is given
    and the caller decides what that means (a default, or an error).
    """
    out = [alpha_strategy(a) for a in parse_float_list(alpha, "--alpha")] if alpha is not None else []
    if strategy is not None:
        names = [n.strip() for n in str(strategy).split(",")]
        if not any(names):
            raise FsrtError(f"--strategy is empty: give names such as dwr,dWr,w ({STRATEGY_HELP})")
        if not all(names):
            raise FsrtError(f"--strategy {strategy!r} has an empty item: give names such as d,w,dWr")
        out += [parse_strategy(n) for n in names]
    unique: dict[str, Strategy] = {}
    for s in out:
        unique.setdefault(s.name, s)
    return tuple(unique.values())


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise FsrtError(f"cannot read {what} {text!r} as a number") from None


# -- quantization (pycls rules) ------------------------------------------------------------

def scale_depth(d: int, fd: float) -> int:
    """``max(1, round(d * fd))``."""
    return max(1, round(d * fd))


def scale_width(w: int, fw: float) -> int:
    """``max(1, round(w * fw / 8)) * 8``: widths stay multiples of 8."""
    return max(1, round(w * fw / 8)) * 8


def snap_group_width(g: int) -> int:
    """pycls's group-width snap: keep if <= 2, 4 if <= 5, else the nearest multiple of 8."""
    return g if g <= 2 else 4 if g <= 5 else round(g / 8) * 8


def scale_resolution(r: int, fr: float) -> int:
    """``round(r * fr / 4) * 4``."""
    return round(r * fr / 4) * 4


@dataclass(frozen=True)
class ScaledSpec:
    """A scaled model and how it was obtained.

    ``s`` is the requested multiplier, ``factors`` the continuous d/w/g/r factors,
    ``flops_multiplier`` the realized flops ratio after quantization. For a flops target,
    ``target_flops`` and ``miss`` (realized / target - 1) are recorded.
    """

    spec: ModelSpec
    base: ModelSpec
    strategy: Strategy
    s: float
    factors: dict[str, float]
    complexity: Complexity
    base_complexity: Complexity
    flops_multiplier: float
    target_flops: float | None = None
    miss: float | None = None
    tolerance: float | None = None
    evaluations: int = 0

    @property
    def reached(self) -> bool | None:
        """For a flops target: whether the miss is within the tolerance."""
        if self.target_flops is None:
            return None
        return abs(self.miss) <= self.tolerance

    def to_dict(self) -> dict:
        """JSON-able summary: complexities, resolution, per-stage d/w/g, factors, multiplier."""
        out = {
            "name": self.spec.name, "base": self.base.name, "strategy": self.strategy.to_dict(),
            "s": self.s, "factors": self.factors, "flops_multiplier": self.flops_multiplier,
            **self.complexity.to_dict(), "resolution": self.spec.resolution,
            "eval_resolution": self.spec.eval_resolution,
            "stages": [{"d": st.depth, "w": st.width, "g": st.group_w, "stride": st.stride, "block": st.block}
                       for st in self.spec.stages],
            "stem_widths": list(self.spec.stem.widths), "head_width": self.spec.head.width,
            "base_complexity": {**self.base_complexity.to_dict(), "resolution": self.base.resolution},
        }
        if self.target_flops is not None:
            out.update(target_flops=self.target_flops, miss=self.miss, tolerance=self.tolerance,
                       reached=self.reached, evaluations=self.evaluations)
        return out


def _scale_stage(st: StageSpec, f: dict[str, float], strategy: Strategy) -> StageSpec:
    depth = scale_depth(st.depth, f["d"])
    width = scale_width(st.width, f["w"])
    if st.block == "mbconv":
        width, _ = block_compatible(width, st.exp_r, 1)
        return _replace_stage(st, depth=depth, width=width)
    g = st.group_w
    if strategy.pycls or g > 1:  # fsrt keeps depthwise (g = 1) depthwise; pycls scales as told
        g = snap_group_width(max(1, round(g * f["g"])))
    width, g = block_compatible(width, st.bot_mul, g)
    return _replace_stage(st, depth=depth, width=width, group_w=g)


def _replace_stage(st: StageSpec, **changes) -> StageSpec:
    return dataclasses.replace(st, **changes)


def scaled_name(base: ModelSpec, strategy: Strategy, s: float) -> str:
    """Name of a scaled model, e.g. ``RegNetY-400MF@dWr:s=4``."""
    return f"{base.name or base.family}@{strategy.name}:s={s:.4g}"


def apply_strategy(spec: ModelSpec, strategy: Strategy, s: float) -> ModelSpec:
    """The quantized scaled spec (no complexity): stages, EfficientNet stem/head, resolutions."""
    f = strategy.factors(s)
    stages = tuple(_scale_stage(st, f, strategy) for st in spec.stages)
    stem, head = spec.stem, spec.head
    if spec.family == "effnet":
        stem = StemSpec(stem.type, tuple(scale_width(w, f["w"]) for w in stem.widths), stem.pool, stem.activation)
        if head.width:
            head = HeadSpec(scale_width(head.width, f["w"]), head.dropout, head.activation)
    res = scale_resolution(spec.resolution, f["r"])
    eval_res = None if spec.eval_resolution is None else scale_resolution(spec.eval_resolution, f["r"])
    if res < 8 or (eval_res is not None and eval_res < 8):
        raise FsrtError(f"s={s:g} shrinks the input of {spec.name or spec.family} to {res}px (minimum 8); "
                        "use a larger s or a strategy without resolution scaling")
    return spec.replace(stages=stages, stem=stem, head=head, resolution=res, eval_resolution=eval_res,
                        name=scaled_name(spec, strategy, s))


def scale_spec(spec: ModelSpec, strategy: Strategy | str, s: float, *,
               base_complexity: Complexity | None = None) -> ScaledSpec:
    """Scale ``spec`` by ``strategy`` to flops multiplier ``s`` and record what was realized."""
    strategy = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    s = check_s(s)
    base_cx = base_complexity or complexity(spec)
    scaled = apply_strategy(spec, strategy, s)
    cx = complexity(scaled)
    return ScaledSpec(spec=scaled, base=spec, strategy=strategy, s=s, factors=strategy.factors(s), complexity=cx,
                      base_complexity=base_cx, flops_multiplier=cx.flops / base_cx.flops)


def scale_to_flops(spec: ModelSpec, strategy: Strategy | str, target_flops: float, *,
                   tolerance: float = 0.01) -> ScaledSpec:
    """Search ``s`` so the quantized scaled model's flops land as close to ``target_flops`` as the grid allows.

    Realized flops are a step function of ``s``. The search iterates ``s <- s * target/realized``
    from ``s = target/base``, scans a fine log grid around the best point, and bisects every
    interval whose ends straddle the target down to the jump, so the configs just below and
    just above the target are both seen. The result records ``target_flops`` and ``miss``
    (realized/target - 1); ``reached`` says whether ``|miss| <= tolerance``.
    """
    strategy = parse_strategy(strategy) if isinstance(strategy, str) else strategy
    try:
        target = float(target_flops)
    except (TypeError, ValueError):
        raise FsrtError(f"target flops must be a number, got {target_flops!r}") from None
    if not math.isfinite(target) or target <= 0:
        raise FsrtError(f"target flops must be > 0, got {target_flops!r}")
    base_cx = complexity(spec)
    cache: dict[float, ScaledSpec | None] = {}

    def evaluate(s: float) -> ScaledSpec | None:
        if s not in cache:
            try:
                cache[s] = scale_spec(spec, strategy, s, base_complexity=base_cx)
            except FsrtError:  # e.g. a resolution below 8 px: not a candidate
                cache[s] = None
        return cache[s]

    def miss(r: ScaledSpec | None) -> float:
        return math.inf if r is None else abs(math.log(r.complexity.flops / target))

    m0 = target / base_cx.flops
    s = m0
    for _ in range(8):  # fixed-point iteration in log space
        r = evaluate(s)
        if r is None or r.complexity.flops == target:
            break
        step = target / r.complexity.flops
        if abs(math.log(step)) < 1e-6:
            break
        s = s * step
    best = min((v for v in cache.values() if v is not None), key=miss, default=None)
    centre = best.s if best is not None else m0
    grid = [centre * 1.3 ** (k / 20.0) for k in range(-20, 21)]
    results = [(g, evaluate(g)) for g in grid]
    for (s_lo, r_lo), (s_hi, r_hi) in zip(results, results[1:]):
        if r_lo is None or r_hi is None:
            continue
        below_lo, below_hi = r_lo.complexity.flops < target, r_hi.complexity.flops < target
        if below_lo == below_hi:
            continue
        a, b = s_lo, s_hi
        for _ in range(40):
            mid = math.sqrt(a * b)
            rm = evaluate(mid)
            if rm is None:
                break
            if (rm.complexity.flops < target) == below_lo:
                a = mid
            else:
                b = mid
            if b / a - 1 < 1e-9:
                break
    candidates = [v for v in cache.values() if v is not None]
    if not candidates:
        raise FsrtError(f"no valid scaled model of {spec.name or spec.family} near {target:.4g} flops")
    best = min(candidates, key=lambda v: (miss(v), abs(math.log(v.s / m0))))
    return ScaledSpec(**{**best.__dict__, "target_flops": target, "miss": best.complexity.flops / target - 1.0,
                         "tolerance": tolerance, "evaluations": len(cache)})


# -- scaling analysis ------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalingRow:
    """One scaled model in an analysis sweep."""

    strategy: str
    s: float
    name: str
    flops: int
    params: int
    acts: int
    flops_multiplier: float
    resolution: int


@dataclass(frozen=True)
class ExponentFit:
    """Fitted exponents of params and acts against flops for one strategy, with theory."""

    strategy: Strategy
    params_exponent: float | None
    acts_exponent: float | None
    flops_exponent: float | None
    params_theory: float
    acts_theory: float
    points: int

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"strategy": self.strategy.name, "alpha": self.strategy.alpha, "points": self.points,
                "params_exponent": self.params_exponent, "params_theory": self.params_theory,
                "acts_exponent": self.acts_exponent, "acts_theory": self.acts_theory,
                "flops_vs_s_exponent": self.flops_exponent}


@dataclass(frozen=True)
class ScalingAnalysis:
    """A sweep table (base model x strategies x s) and the fitted exponents per strategy."""

    base: ModelSpec
    base_complexity: Complexity
    rows: tuple[ScalingRow, ...]
    fits: tuple[ExponentFit, ...]

    def to_dict(self) -> dict:
        """JSON-able form."""
        return {"name": self.base.name, **self.base_complexity.to_dict(), "resolution": self.base.resolution,
                "rows": [r.__dict__ for r in self.rows], "fits": [f.to_dict() for f in self.fits]}


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``log y`` against ``log x`` (None when x does not vary)."""
    fit = loglog_fit(xs, ys)
    return fit.exponent if fit else None


def scaling_analysis(spec: ModelSpec, strategies: list[Strategy], s_values: list[float],
                     progress=None) -> ScalingAnalysis:
    """Scale ``spec`` by every strategy and s; fit params and acts against flops (log-log LSQ).

    The base model (s = 1) is always part of each fit. Theory for one stage is
    ``p ~ f**(e_d + e_w)`` and ``a ~ f**(e_d + e_w/2 + e_r)``, i.e. ``(1+alpha)/2`` and
    ``(2-alpha)/2`` in the alpha family. ``progress`` is called once per scaled model.
    """
    if not strategies:
        raise FsrtError("no strategies to analyse: give --alpha and/or --strategy")
    if not s_values:
        raise FsrtError("no s values to sweep: give e.g. --sweep s=1..32")
    s_values = [check_s(s) for s in s_values]
    base_cx = complexity(spec)
    rows: list[ScalingRow] = []
    fits: list[ExponentFit] = []
    for strat in strategies:
        points = {1.0: (base_cx, spec.resolution, spec.name)}
        for s in s_values:
            if s != 1.0:  # s = 1 is the base model itself
                sc = scale_spec(spec, strat, s, base_complexity=base_cx)
                points[s] = (sc.complexity, sc.spec.resolution, sc.spec.name)
            if progress:
                progress()
        for s in sorted(points):
            cx, res, name = points[s]
            rows.append(ScalingRow(strat.name, s, name, cx.flops, cx.params, cx.acts, cx.flops / base_cx.flops, res))
        ss = sorted(points)
        f = [points[s][0].flops for s in ss]
        fits.append(ExponentFit(
            strat, loglog_slope(f, [points[s][0].params for s in ss]), loglog_slope(f, [points[s][0].acts for s in ss]),
            loglog_slope(ss, f), strat.params_exponent, strat.acts_exponent, len(ss)))
    return ScalingAnalysis(spec, base_cx, tuple(rows), tuple(fits))
