"""Scaling strategies and the scaler.

Expected values come from hand computation (worked out step by step in the comments, with
Python's round-half-to-even where it matters), from float64 math written independently of
the code under test, and from a brute-force scan for the flops-target search.
"""

from __future__ import annotations

import math

import pytest

from fsrt.complexity import complexity
from fsrt.errors import FsrtError
from fsrt.scaling import (
    NAMED,
    alpha_strategy,
    loglog_slope,
    parse_strategies,
    parse_strategy,
    scale_spec,
    scale_to_flops,
    scaling_analysis,
)
from fsrt.spec import ModelSpec, StageSpec, StemSpec
from fsrt.zoo import zoo_names, zoo_spec


def layout(spec: ModelSpec) -> list[tuple[int, int, int]]:
    return [(st.depth, st.width, st.group_w) for st in spec.stages]


# -- strategies and their factors ---------------------------------------------------------------

def test_alpha_family_exponents_and_named_members():
    for alpha in (0.0, 0.25, 1 / 3, 0.5, 0.8, 1.0):
        st = alpha_strategy(alpha)
        assert st.e_w == pytest.approx(alpha)
        assert st.e_d == pytest.approx((1 - alpha) / 2) and st.e_r == pytest.approx((1 - alpha) / 2)
        assert st.params_exponent == pytest.approx((1 + alpha) / 2)
        assert st.acts_exponent == pytest.approx((2 - alpha) / 2)
        f = st.factors(7.0)
        assert f["d"] * f["w"] ** 2 * f["r"] ** 2 == pytest.approx(7.0)  # flops budget is exactly s
    # the paper's named members of the family
    assert parse_strategy("dWr").alpha == pytest.approx(0.8)
    assert parse_strategy("w").alpha == 1.0 and parse_strategy("dr").alpha == 0.0
    assert parse_strategy("dwr").alpha == pytest.approx(1 / 3)
    assert parse_strategy("d").alpha is None and parse_strategy("wr").alpha is None
    # alpha=0.8 scales exactly like dWr (same factors to the last bit)
    assert alpha_strategy(0.8).factors(4.0) == parse_strategy("dWr").factors(4.0)


def test_named_strategy_factors_by_hand():
    s = 16.0
    cases = {  # (d, w, r): flops shares e -> d = s**e_d, w = sqrt(s**e_w), r = sqrt(s**e_r)
        "d": (16.0, 1.0, 1.0), "w": (1.0, 4.0, 1.0), "r": (1.0, 1.0, 4.0),
        "dw": (4.0, 2.0, 1.0), "dr": (4.0, 1.0, 2.0), "wr": (1.0, 2.0, 2.0),
        "dwr": (16 ** (1 / 3), 16 ** (1 / 6), 16 ** (1 / 6)), "dWr": (16 ** 0.1, 16 ** 0.4, 16 ** 0.05),
    }
    for name, (d, w, r) in cases.items():
        f = parse_strategy(name).factors(s)
        assert (f["d"], f["w"], f["r"]) == pytest.approx((d, w, r), rel=1e-12), name
        assert f["g"] == pytest.approx(f["w"]), name  # fsrt: group width follows width
    assert parse_strategy("rwd") == NAMED["dwr"]  # letter order does not matter


def test_effnet_compound_rule_one_step():
    # one EfficientNet step is d x1.2, w x1.1, r x1.15, i.e. flops x 1.2 * 1.1^2 * 1.15^2
    step = 1.2 * 1.1**2 * 1.15**2
    f = parse_strategy("effnet").factors(step)
    assert (f["d"], f["w"], f["r"]) == pytest.approx((1.2, 1.1, 1.15), rel=1e-12)
    f2 = parse_strategy("efficientnet").factors(step**2)
    assert (f2["d"], f2["w"], f2["r"]) == pytest.approx((1.44, 1.21, 1.3225), rel=1e-12)


def test_pycls_weight_grammar_factors_by_hand():
    s = 4.0
    # d1_w8_g8_r1: sum = 1+8+1 = 10; d = 4^(1/10), w = g = 4^(8/10/2), r = 4^(1/10/2)
    f = parse_strategy("d1_w8_g8_r1").factors(s)
    assert (f["d"], f["w"], f["g"], f["r"]) == pytest.approx((2**0.2, 2**0.8, 2**0.8, 2**0.1), rel=1e-12)
    # letters: pycls:dw = d1_w1_g0_r0; sum 2; d = 4^(1/2), w = 4^(1/4), g and r untouched
    f = parse_strategy("pycls:dw").factors(s)
    assert (f["d"], f["w"], f["g"], f["r"]) == pytest.approx((2.0, math.sqrt(2), 1.0, 1.0), rel=1e-12)
    # g only: W_d + W_w + W_r = 0 so sum = W_g/2 = 1/2; g = 4^(1/(1/2)/2) = 4
    f = parse_strategy("pycls:g").factors(s)
    assert (f["d"], f["w"], f["g"], f["r"]) == pytest.approx((1.0, 1.0, 4.0, 1.0), rel=1e-12)
    # w1_g1: sum 1; w = g = 4^(1/2)
    f = parse_strategy("w1_g1").factors(s)
    assert (f["d"], f["w"], f["g"], f["r"]) == pytest.approx((1.0, 2.0, 2.0, 1.0), rel=1e-12)
    # all weights zero: sum falls back to 1 and nothing scales
    f = parse_strategy("d0_w0").factors(s)
    assert (f["d"], f["w"], f["g"], f["r"]) == (1.0, 1.0, 1.0, 1.0)
    # pycls's dwgr equals fsrt's dwr (g follows w); d1_w8_g8_r1 is the alpha=0.8 member
    assert parse_strategy("pycls:dwgr").factors(s) == pytest.approx(parse_strategy("dwr").factors(s))
    assert parse_strategy("d1_w8_g8_r1").alpha == pytest.approx(0.8)
    assert parse_strategy("pycls:dw").alpha is None


@pytest.mark.parametrize("text", ["", "x", "DWR", "dwgr", "g", "dww", "d1_w", "d1_x2", "d1__w2", "d1_d2", "alpha=",
                                  "alpha=abc", "alpha=1.5", "alpha=-0.1", "pycls:", "pycls:dwx", "pycls:dd"])
def test_bad_strategies_raise(text):
    with pytest.raises(FsrtError):
        parse_strategy(text)


@pytest.mark.parametrize("alpha", [-0.01, 1.01, float("nan"), "a"])
def test_alpha_outside_range_raises(alpha):
    with pytest.raises(FsrtError, match="alpha"):
        alpha_strategy(alpha)


@pytest.mark.parametrize("s", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_s_raises(s):
    with pytest.raises(FsrtError, match="s must be"):
        scale_spec(zoo_spec("RegNetY-400MF"), "dWr", s)


# -- quantization: hand-computed scaled models -----------------------------------------------------

def test_regnety_400mf_pycls_fast_compound_by_hand():
    # base stages (d, w, g): (1,48,8) (3,104,8) (6,208,8) (6,440,8); train 224, test 256
    # d1_w8_g8_r1 at s=4: fd = 1.1487, fw = fg = 1.7411, fr = 1.0718
    # depths: round(1.149)=1, round(3.446)=3, round(6.892)=7, 7
    # widths /8: 48*1.7411/8 = 10.45 -> 80; 104 -> 22.63 -> 184; 208 -> 45.27 -> 360; 440 -> 95.77 -> 768
    # group: 8*1.7411 = 13.93 -> 14 -> snap round(14/8)*8 = 16
    # compatibility (b=1, g=16): 80 ok; 184/16 = 11.5 -> 12 (half to even) -> 192; 360/16 = 22.5 -> 22 -> 352; 768 ok
    # resolution: 224*1.0718/4 = 60.02 -> 240; 256*1.0718/4 = 68.59 -> 276
    r = scale_spec(zoo_spec("RegNetY-400MF"), "d1_w8_g8_r1", 4)
    assert layout(r.spec) == [(1, 80, 16), (3, 192, 16), (7, 352, 16), (7, 768, 16)]
    assert (r.spec.resolution, r.spec.eval_resolution) == (240, 276)
    assert r.spec.name == "RegNetY-400MF@d1_w8_g8_r1:s=4"
    # fsrt's dWr is the same strategy and gives the same model
    assert layout(scale_spec(zoo_spec("RegNetY-400MF"), "dWr", 4).spec) == layout(r.spec)


def test_regnety_400mf_pycls_letters_leave_groups():
    # pycls:dw at s=4: d = 2, w = sqrt(2), g untouched (8 stays 8 after the snap), r untouched
    # depths 2,6,12,12; widths 48*1.414/8 = 8.49 -> 64; 104 -> 18.38 -> 144; 208 -> 36.77 -> 296; 440 -> 77.78 -> 624
    r = scale_spec(zoo_spec("RegNetY-400MF"), "pycls:dw", 4)
    assert layout(r.spec) == [(2, 64, 8), (6, 144, 8), (12, 296, 8), (12, 624, 8)]
    assert r.spec.resolution == 224


def test_efficientnet_b0_fast_compound_by_hand():
    # fd = 4^0.1 = 1.1487: depths [1,2,2,3,3,4,1] -> 1.15,2.30,2.30,3.45,3.45,4.59,1.15 -> [1,2,2,3,3,5,1]
    # fw = 4^0.4 = 1.7411, /8 rule: 16->3.48->24, 24->5.22->40, 40->8.71->72, 80->17.41->136,
    #   112->24.38->192, 192->41.79->336, 320->69.64->560; stem 32->6.96->56; head 1280->278.6->2232
    # resolution 224 -> 240 (as above); kernels, strides and expansion ratios unchanged
    base = zoo_spec("EfficientNet-B0")
    for name in ("d1_w8_g8_r1", "dWr"):
        r = scale_spec(base, name, 4)
        assert [st.depth for st in r.spec.stages] == [1, 2, 2, 3, 3, 5, 1]
        assert [st.width for st in r.spec.stages] == [24, 40, 72, 136, 192, 336, 560]
        assert r.spec.stem.widths == (56,) and r.spec.head.width == 2232
        assert r.spec.resolution == 240
        for a, b in zip(base.stages, r.spec.stages):
            assert (a.kernel, a.stride, a.exp_r, a.group_w) == (b.kernel, b.stride, b.exp_r, b.group_w)
    # docs/architecture.md ("Scaling"): EN-B0 with dWr at s=4 realizes about 3.6x
    assert scale_spec(base, "dWr", 4).flops_multiplier == pytest.approx(3.6, abs=0.05)


def test_resnet50_width_and_groups_by_hand():
    # w1_g1 at s=2: w = g = sqrt(2); b = 0.25 so compatibility works on w_b = w/4
    # stage1: 256*1.4142/8 = 45.25 -> 360; g 64*1.4142 = 90.5 -> 91 -> snap round(11.375)*8 = 88
    #   v = int(360*0.25) = 90, g = min(88, 90) = 88, v = round(90/88)*88 = 88, w = 88/0.25 = 352
    # stage2: 512 -> 90.51 -> 728; g 181.02 -> 181 -> round(22.625)*8 = 184; v = 182, g = min(184,182) = 182, w = 728
    # stage3: 1024 -> 181.02 -> 1448; g 362.04 -> 362 -> round(45.25)*8 = 360; v = 362 -> 360, w = 1440
    # stage4: 2048 -> 362.04 -> 2896; g 724.08 -> 724 -> round(90.5) = 90 (half to even) -> 720;
    #   v = 724 -> 720, w = 2880
    r = scale_spec(zoo_spec("ResNet-50"), "w1_g1", 2)
    assert layout(r.spec) == [(3, 352, 88), (4, 728, 182), (6, 1440, 360), (3, 2880, 720)]
    assert r.spec.stem.widths == (64,) and r.spec.resolution == 224  # stems of AnyNet-style models are not scaled


def test_depthwise_groups_stay_depthwise_in_fsrt_but_not_in_pycls():
    # an x-block stage with g=1 (depthwise 3x3): at s=16 fw = fg = 16^0.4 = 3.03
    # width 64*3.03/8 = 24.25 -> 192; pycls scales g: 3.03 -> 3 -> snap 4; fsrt keeps g = 1
    spec = ModelSpec(family="anynet", resolution=64, stem=StemSpec("simple", (16,), "none"),
                     stages=(StageSpec(depth=2, width=64, block="x", group_w=1),), name="dw-net")
    assert layout(scale_spec(spec, "d1_w8_g8_r1", 16).spec) == [(3, 192, 4)]
    assert layout(scale_spec(spec, "dWr", 16).spec) == [(3, 192, 1)]


def test_quantization_free_cases_match_hand_built_models():
    # alpha=1, s=4: width x2 exactly (multiples of 8 stay on the grid), g 8 -> 16, nothing else moves
    base = zoo_spec("RegNetY-400MF")
    r = scale_spec(base, alpha_strategy(1.0), 4)
    hand = base.replace(stages=tuple(st.__class__(**{**st.__dict__, "width": 2 * st.width, "group_w": 16})
                                     for st in base.stages))
    assert r.spec.stages == hand.stages and r.spec.resolution == 224
    assert r.flops_multiplier == complexity(hand).flops / complexity(base).flops
    # alpha=0, s=16: depth x16^(1/2) = 4 and resolution x sqrt(16^(1/2)) = 2 exactly
    r = scale_spec(base, alpha_strategy(0.0), 16)
    assert layout(r.spec) == [(4 * d, w, g) for d, w, g in layout(base)]
    assert (r.spec.resolution, r.spec.eval_resolution) == (448, 512)


def test_tiny_s_that_shrinks_the_input_below_8px_raises():
    with pytest.raises(FsrtError, match="px"):
        scale_spec(zoo_spec("RegNetY-400MF"), "r", 0.0005)


# -- the alpha family tracks s within the quantization error -----------------------------------------

ALPHAS = (0.0, 1 / 3, 0.5, 0.8, 1.0)
S_VALUES = (2.0, 4.0, 8.0, 16.0, 32.0)


def test_every_dimension_lands_within_half_a_grid_step():
    """Rigorous per-dimension bound, from the rounding rules alone.

    depth: |d' - d*fd| <= 1/2 (nearest integer); resolution: |r' - r*fr| <= 2 (nearest
    multiple of 4); width: |w' - w*fw| <= 4 (nearest multiple of 8) plus half the step of
    block compatibility, which moves the bottleneck w*b to a multiple of m (m = g', or
    lcm(g', b) for b > 1), i.e. the width by at most m/(2b).
    """
    for name in zoo_names():
        base = zoo_spec(name)
        for alpha in ALPHAS:
            for s in S_VALUES:
                r = scale_spec(base, alpha_strategy(alpha), s)
                f = r.factors
                assert abs(r.spec.resolution - base.resolution * f["r"]) <= 2 + 1e-9
                for a, b in zip(base.stages, r.spec.stages):
                    assert abs(b.depth - a.depth * f["d"]) <= 0.5 + 1e-9, (name, alpha, s)
                    if b.block == "mbconv":
                        step = 0.0
                    else:
                        m = math.lcm(b.group_w, int(b.bot_mul)) if b.bot_mul > 1 else b.group_w
                        step = m / (2 * b.bot_mul)
                    assert abs(b.width - a.width * f["w"]) <= 4 + step + 1e-9, (name, alpha, s, a, b)


def test_flops_multiplier_tracks_s_on_the_zoo():
    """Stated bound: realized / requested within +-25% for every zoo model, alpha and s in 2..32.

    Why 25%: the multiplier is the flops-weighted mean of per-part multipliers, and the largest
    quantization effects on one part are depth rounding of 1-3 block stages (1.5 -> 2 is +33%,
    1.26 -> 1 is -21% on that stage), spatial rounding up at 1/32 resolution (240 px gives 8x8
    instead of 7.5x7.5: +14% on the last stage), widths snapped to 8 or to the group width on
    the narrow first stages, and for EfficientNet its depthwise convs, whose flops grow with w
    rather than w^2 (about -10% at s=32 with alpha=1). Mixed over stages these stay below 20%
    on the zoo; 25% leaves a margin. Larger models sit on a finer grid, so the mean absolute
    deviation is also checked to be small.
    """
    devs = []
    for name in zoo_names():
        base = zoo_spec(name)
        base_cx = complexity(base)
        for alpha in ALPHAS:
            for s in S_VALUES:
                r = scale_spec(base, alpha_strategy(alpha), s, base_complexity=base_cx)
                dev = math.log(r.flops_multiplier / s)
                assert abs(dev) <= math.log(1.25), (name, alpha, s, r.flops_multiplier)
                devs.append(abs(dev))
    assert sum(devs) / len(devs) < 0.06


# -- target flops ------------------------------------------------------------------------------------

def brute_force_best(base: ModelSpec, strategy: str, target: float, n: int = 1500) -> float:
    """Smallest |log(realized/target)| over a dense log grid of s within x2.7 of the naive guess."""
    m = target / complexity(base).flops
    best = math.inf
    for k in range(n + 1):
        s = m * math.exp(-1 + 2 * k / n)
        best = min(best, abs(math.log(scale_spec(base, strategy, s).complexity.flops / target)))
    return best


@pytest.mark.parametrize("model,strategy,target,reachable", [
    ("RegNetY-400MF", "dWr", 4e9, True), ("EfficientNet-B0", "dWr", 1.6e9, True), ("ResNet-50", "w", 8e9, True),
    ("RegNetX-200MF", "dwr", 8e8, False),  # the dense scan finds nothing closer than -1.47% either
])
def test_target_flops_is_as_close_as_a_brute_force_scan(model, strategy, target, reachable):
    base = zoo_spec(model)
    r = scale_to_flops(base, strategy, target)
    assert r.target_flops == target
    assert r.miss == pytest.approx(r.complexity.flops / target - 1)
    assert r.reached is reachable and (abs(r.miss) <= 0.01) is reachable
    assert abs(math.log(1 + r.miss)) <= brute_force_best(base, strategy, target) + 1e-12


def test_target_flops_reports_an_unreachable_target():
    # depth-only scaling of a 1-stage net moves flops in steps of a whole block (x4/3 from 3 to 4 blocks),
    # so a target between two depths cannot be met to 1%
    spec = ModelSpec(family="anynet", resolution=32, stem=StemSpec("simple", (16,), "none"),
                     stages=(StageSpec(depth=3, width=64, block="x", group_w=8),), name="tiny")
    c3 = complexity(spec).flops
    c4 = complexity(spec.replace(stages=(StageSpec(depth=4, width=64, block="x", group_w=8),))).flops
    target = math.sqrt(c3 * c4)
    r = scale_to_flops(spec, "d", target)
    assert not r.reached and abs(r.miss) > 0.01
    assert r.complexity.flops in (c3, c4)  # the nearest configs on either side


# -- scaling analysis: fitted exponents against theory ------------------------------------------------

def test_loglog_slope_on_exact_power_law():
    xs = [1, 2, 4, 8, 16]
    assert loglog_slope(xs, [3 * x**0.75 for x in xs]) == pytest.approx(0.75, rel=1e-12)
    assert loglog_slope([5, 5], [1, 2]) is None


@pytest.mark.parametrize("model", ["RegNetY-400MF", "EfficientNet-B0"])
def test_fitted_exponents_match_theory(model):
    """Params and acts exponents fitted on s=1..32 are within 0.1 of the one-stage theory
    (1+alpha)/2 and (2-alpha)/2.

    The tolerance covers what the one-stage theory leaves out: the stem (its width is not
    scaled for RegNets, so its acts grow only with r^2: 10% of RegNetY-400MF's acts), the first
    block of each stage (stride 2, acts-heavy, a shrinking share as depth grows), SE convs at
    1x1 and EfficientNet's depthwise convs (params linear in w). Measured worst gap: 0.075.
    """
    alphas = [0.0, 1 / 3, 0.8, 1.0]
    analysis = scaling_analysis(zoo_spec(model), [alpha_strategy(a) for a in alphas], [2, 4, 8, 16, 32])
    for alpha, fit in zip(alphas, analysis.fits):
        assert fit.points == 6
        assert fit.params_exponent == pytest.approx((1 + alpha) / 2, abs=0.1), (alpha, fit)
        assert fit.acts_exponent == pytest.approx((2 - alpha) / 2, abs=0.1), (alpha, fit)
        assert fit.flops_exponent == pytest.approx(1.0, abs=0.05)
    # theory's ordering: more width -> params grow faster, acts slower
    p = [f.params_exponent for f in analysis.fits]
    a = [f.acts_exponent for f in analysis.fits]
    assert p == sorted(p) and a == sorted(a, reverse=True)
    rows = [r for r in analysis.rows if r.strategy == analysis.fits[0].strategy.name]
    assert [r.s for r in rows] == [1, 2, 4, 8, 16, 32]
    assert rows[0].flops == complexity(zoo_spec(model)).flops


def test_strategy_lists_parse_once_for_every_command():
    """--alpha and --strategy lists: alpha members first, duplicates dropped, empty items refused."""
    got = parse_strategies("0.8,1", "dwr,alpha=0.8,w")
    assert [s.name for s in got] == ["alpha=0.8", "alpha=1", "dwr", "w"]
    assert got[0].e_w == 0.8 and got[0].e_d == got[0].e_r == pytest.approx(0.1)
    assert parse_strategies(None, None) == ()
    assert [s.name for s in parse_strategies(strategy="fast")] == ["dWr"]
    for alpha, strategy, fragment in (("0.3,,1", None, "empty item"), (None, "dwr,,w", "empty item"),
                                      (None, " , ", "empty"), ("2", None, "alpha"), (None, "zz", "unknown")):
        with pytest.raises(FsrtError, match=fragment):
            parse_strategies(alpha, strategy)
