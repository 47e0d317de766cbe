"""Design spaces (docs/architecture.md, "Design spaces"): AnyNetX_A..E and RegNet samplers, error EDF, bootstrap.

AnyNetX_A: 4 stages, each with depth d_i <= 16, width w_i <= 1024 (multiple of 8), bottleneck
ratio b_i in {1, 2, 4} and group width g_i in {1, 2, 4, 8, 16, 32} (the paper's 16*128*3*6
choices per stage), all sampled log-uniformly. B shares b over stages, C also shares g,
D keeps widths non-decreasing, E also depths. RegNet: d < 64, w0 and wa < 256,
1.5 <= wm <= 3, b and g as before; configs whose widths do not form exactly the expected
number of stages (``is_valid_regnet``) or not 4 stages are rejected.

Samplers are seeded (``numpy.random.default_rng``), so the same seed gives the same models.
``sample_band`` keeps drawing until n models fall in a flops band and gives up with a clear
error after a bounded number of draws.

In fsrt the bottleneck is stored as ``bot_mul = 1/b`` (the 3x3 conv is ``width/b`` wide), and
every sampled stage passes block compatibility so its group width divides the bottleneck.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fsrt.complexity import Complexity, complexity
from fsrt.errors import FsrtError
from fsrt.regnet import RegNetParams, block_compatible, regnet_block_widths
from fsrt.spec import HeadSpec, ModelSpec, StageSpec, StemSpec, regnet_stages

BOTTLENECKS = (1, 2, 4)
GROUP_WIDTHS = (1, 2, 4, 8, 16, 32)
ANYNET_SPACES = ("anynetx_a", "anynetx_b", "anynetx_c", "anynetx_d", "anynetx_e")
REGNET_SPACES = ("regnetx", "regnety")
SPACES = ANYNET_SPACES + REGNET_SPACES
SPACE_ALIASES = {"regnet": "regnetx"}


def canonical_space(name: str) -> str:
    """The canonical space name (case-insensitive; ``regnet`` means ``regnetx``)."""
    key = str(name).strip().lower().replace("-", "_")
    key = SPACE_ALIASES.get(key, key)
    if key not in SPACES:
        raise FsrtError(f"unknown design space {name!r}; use one of {', '.join(SPACES)} (or regnet)")
    return key


def log_uniform_int(rng: np.random.Generator, low: int, high: int, q: int = 1) -> int:
    """A multiple of ``q`` in ``[low, high]`` drawn log-uniformly.

    Draws ``f`` log-uniformly in ``(low - q', high]`` with ``q' = min(q, low/2)`` and rounds up
    to a multiple of ``q``, so every grid point gets the log-measure of the interval below it.
    """
    if not (0 < low <= high):
        raise FsrtError(f"log-uniform range needs 0 < low <= high, got [{low}, {high}]")
    lo = low - min(q, low / 2)
    f = math.exp(rng.uniform(math.log(lo), math.log(high)))
    return int(min(high, max(low, math.ceil(f / q - 1e-9) * q)))


def log_uniform_float(rng: np.random.Generator, low: float, high: float, q: float) -> float:
    """A float in ``[low, high]`` drawn log-uniformly and rounded up to a multiple of ``q``."""
    lo = low - min(q, low / 2)
    f = math.exp(rng.uniform(math.log(lo), math.log(high)))
    steps = math.ceil(f / q - 1e-9)
    return float(min(high, max(low, round(steps * q, 6))))


def choice(rng: np.random.Generator, values: Sequence):
    """One of ``values`` uniformly (uniform over powers of two = log-uniform)."""
    return values[int(rng.integers(len(values)))]


@dataclass(frozen=True)
class Sample:
    """One sampled model: its space, draw index, the sampled parameters, spec and complexity."""

    space: str
    index: int
    draw: int
    params: dict
    spec: ModelSpec
    cx: Complexity

    def to_dict(self) -> dict:
        """JSON-able record (one line of ``samples.jsonl``)."""
        return {"name": self.spec.name, "space": self.space, "index": self.index, "draw": self.draw,
                **self.cx.to_dict(), "params_space": self.params, "spec": self.spec.to_dict()}


def _anynet_spec(ds, ws, bs, gs, name: str, resolution: int) -> ModelSpec:
    stages = []
    for d, w, b, g in zip(ds, ws, bs, gs):
        bot = 1.0 / b
        w2, g2 = block_compatible(w, bot, g)
        stages.append(StageSpec(depth=int(d), width=int(w2), stride=2, block="x", bot_mul=bot, group_w=int(g2)))
    return ModelSpec(family="anynet", resolution=resolution, stem=StemSpec("simple", (32,), "none"),
                     stages=tuple(stages), head=HeadSpec(), name=name)


def sample_anynet(rng: np.random.Generator, space: str = "anynetx_a", *, name: str = "anynet",
                  resolution: int = 224) -> tuple[dict, ModelSpec]:
    """Draw one AnyNetX_A..E model; returns (sampled parameters, spec)."""
    space = canonical_space(space)
    if space not in ANYNET_SPACES:
        raise FsrtError(f"{space} is not an AnyNet space")
    n = 4
    ds = [log_uniform_int(rng, 1, 16) for _ in range(n)]
    ws = [log_uniform_int(rng, 8, 1024, 8) for _ in range(n)]
    bs = [choice(rng, BOTTLENECKS) for _ in range(n)]
    gs = [choice(rng, GROUP_WIDTHS) for _ in range(n)]
    level = ANYNET_SPACES.index(space)  # 0 = A ... 4 = E; each adds one constraint
    if level >= 1:
        bs = [bs[0]] * n
    if level >= 2:
        gs = [gs[0]] * n
    if level >= 3:
        ws = sorted(ws)  # same law as rejecting non-increasing draws, without the rejections
    if level >= 4:
        ds = sorted(ds)
    params = {"ds": ds, "ws": ws, "bs": bs, "gs": gs}
    return params, _anynet_spec(ds, ws, bs, gs, name, resolution)


def sample_regnet(rng: np.random.Generator, space: str = "regnetx", *, name: str = "regnet",
                  resolution: int = 224, num_stages: int = 4, max_tries: int = 10_000) -> tuple[dict, ModelSpec]:
    """Draw one valid RegNet (X, or Y with SE 0.25): rejects configs whose widths do not form
    ``num_stages`` proper stages. Returns (sampled parameters, spec)."""
    space = canonical_space(space)
    if space not in REGNET_SPACES:
        raise FsrtError(f"{space} is not a RegNet space")
    for _ in range(max_tries):
        d = int(rng.integers(1, 64))  # uniform in [1, 63], as pycls's RegNet sampler
        w0 = log_uniform_int(rng, 8, 248, 8)
        wa = log_uniform_float(rng, 0.1, 255.9, 0.1)
        wm = log_uniform_float(rng, 1.5, 3.0, 0.001)
        b = choice(rng, BOTTLENECKS)
        g = choice(rng, GROUP_WIDTHS)
        widths, n_exps = regnet_block_widths(d, w0, wa, wm)
        if len(set(widths)) != n_exps or n_exps != num_stages:  # invalid (is_valid_regnet) or wrong stage count
            continue
        block, se_r = ("y", 0.25) if space == "regnety" else ("x", 0.0)
        rp = RegNetParams(depth=d, w0=w0, wa=wa, wm=wm, group_w=g, bot_mul=1.0 / b, block=block, se_r=se_r)
        spec = ModelSpec(family=space, resolution=resolution, stem=StemSpec("simple", (32,), "none"),
                         stages=regnet_stages(rp), head=HeadSpec(), name=name)
        return {"d": d, "w0": w0, "wa": wa, "wm": wm, "b": b, "g": g}, spec
    raise FsrtError(f"no valid {num_stages}-stage RegNet in {max_tries} draws")


@dataclass
class BandResult:
    """Samples that fell in the band and how many draws it took."""

    samples: list[Sample] = field(default_factory=list)
    draws: int = 0


def sample_band(space: str, n: int, flops_lo: float, flops_hi: float, *, seed: int = 0, resolution: int = 224,
                max_draws: int | None = None, progress: Callable[[int, int], None] | None = None) -> BandResult:
    """Draw models from ``space`` until ``n`` have flops in ``[flops_lo, flops_hi]``.

    A draw is one candidate model (for RegNet spaces, invalid configs are redrawn inside
    ``sample_regnet`` and do not count). Deterministic under ``seed``. Gives up with
    ``FsrtError`` after ``max_draws`` draws
    (default ``max(20000, 2000 * n)``), saying how many landed. ``progress(kept, draws)`` is
    called after every draw.
    """
    space = canonical_space(space)
    if n < 1:
        raise FsrtError(f"number of samples must be >= 1, got {n}")
    if not (0 < flops_lo <= flops_hi):
        raise FsrtError(f"flops band must satisfy 0 < low <= high, got {flops_lo:g}-{flops_hi:g}")
    max_draws = max_draws or max(20_000, 2000 * n)
    rng = np.random.default_rng(seed)
    out = BandResult()
    while len(out.samples) < n:
        if out.draws >= max_draws:
            raise FsrtError(f"gave up after {out.draws} draws from {space}: only {len(out.samples)} of {n} models "
                            f"fell in {flops_lo:.4g}-{flops_hi:.4g} flops; widen the band or raise --max-draws")
        out.draws += 1
        name = f"{space}-s{seed}-{len(out.samples):04d}"
        if space in ANYNET_SPACES:
            params, spec = sample_anynet(rng, space, name=name, resolution=resolution)
        else:
            params, spec = sample_regnet(rng, space, name=name, resolution=resolution)
        cx = complexity(spec)
        if flops_lo <= cx.flops <= flops_hi:
            out.samples.append(Sample(space, len(out.samples), out.draws, params, spec, cx))
        if progress:
            progress(len(out.samples), out.draws)
    return out


# -- analysis ----------------------------------------------------------------------------------

def error_edf(errors: Sequence[float], at: Sequence[float] | float) -> list[float] | float:
    """Empirical distribution of errors: ``F(e) = (1/n) * #{e_i < e}`` at each point of ``at``.

    Strictly below: a model whose error equals ``e`` is not counted. A scalar ``at`` gives a
    scalar. Used to compare design spaces (the space whose EDF is higher at low error is better).
    """
    errs = np.sort(np.asarray(errors, dtype=float))
    if errs.size == 0:
        raise FsrtError("error EDF needs at least one error value")
    pts = np.asarray(at, dtype=float)
    vals = np.searchsorted(errs, pts, side="left") / errs.size
    return float(vals) if pts.ndim == 0 else [float(v) for v in vals]


def edf_curve(errors: Sequence[float]) -> tuple[list[float], list[float]]:
    """The EDF as a step curve: sorted errors and the fraction strictly below-or-at each one
    (``F`` just after the step), ready to plot."""
    errs = sorted(float(e) for e in errors)
    n = len(errs)
    return errs, [(i + 1) / n for i in range(n)]


@dataclass(frozen=True)
class BootstrapResult:
    """Bootstrap estimate of the best model's statistic: median and 95% interval."""

    median: float
    lo: float
    hi: float
    reps: int
    sample_size: int

    def to_dict(self) -> dict:
        """JSON-able form."""
        return dict(self.__dict__)


def bootstrap_best(values: Sequence[float], errors: Sequence[float], *, frac: float = 0.25, reps: int = 10_000,
                   seed: int = 0, ci: float = 0.95) -> BootstrapResult:
    """Empirical bootstrap of the value of a statistic at the best (min-error) model.

    Each repetition draws ``round(frac * n)`` (at least 1) (value, error) pairs with
    replacement and keeps the value of the pair with the lowest error; the result is the
    median and the central ``ci`` interval over ``reps`` repetitions. Deterministic under ``seed``.
    """
    v = np.asarray(values, dtype=float)
    e = np.asarray(errors, dtype=float)
    if v.size == 0 or v.shape != e.shape:
        raise FsrtError(f"bootstrap needs equally many values and errors (>= 1), got {v.size} and {e.size}")
    if not (0 < frac <= 1) or reps < 1 or not (0 < ci < 1):
        raise FsrtError("bootstrap needs 0 < frac <= 1, reps >= 1 and 0 < ci < 1")
    m = max(1, int(round(frac * v.size)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(reps, m))
    best = idx[np.arange(reps), np.argmin(e[idx], axis=1)]
    picks = v[best]
    tail = (1 - ci) / 2
    lo, med, hi = np.quantile(picks, [tail, 0.5, 1 - tail])
    return BootstrapResult(float(med), float(lo), float(hi), reps, m)
