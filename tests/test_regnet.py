"""RegNet generation against published stage layouts and hand-computed rounding cases."""

import pytest

from fsrt.errors import FsrtError
from fsrt.regnet import RegNetParams, block_compatible, group_runs, is_valid_regnet, regnet_block_widths
from fsrt.zoo import zoo_spec

# Stage depths and widths as published for the pycls/torchvision RegNet models.
PUBLISHED_LAYOUTS = {
    "RegNetX-200MF": ([1, 1, 4, 7], [24, 56, 152, 368]),
    "RegNetX-400MF": ([1, 2, 7, 12], [32, 64, 160, 384]),
    "RegNetX-1.6GF": ([2, 4, 10, 2], [72, 168, 408, 912]),
    "RegNetY-400MF": ([1, 3, 6, 6], [48, 104, 208, 440]),
    "RegNetY-4.0GF": ([2, 6, 12, 2], [128, 192, 512, 1088]),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_LAYOUTS))
def test_zoo_regnets_have_published_stage_layouts(name):
    spec = zoo_spec(name)
    depths, widths = PUBLISHED_LAYOUTS[name]
    assert [s.depth for s in spec.stages] == depths
    assert [s.width for s in spec.stages] == widths
    assert all(s.stride == 2 for s in spec.stages)


def test_block_widths_by_hand():
    # d=4, w0=24, wa=36, wm=2.5: u = 24, 60, 96, 132
    # s = round(log(u/24)/log(2.5)) = 0, round(1.0)=1, round(1.513)=2, round(1.861)=2
    # w = round(24*2.5**s/8)*8 = 24, round(7.5)*8 = 64 (half to even), round(18.75)*8 = 152, 152
    widths, n = regnet_block_widths(4, 24, 36, 2.5)
    assert widths == [24, 64, 152, 152]
    assert n == 3
    assert group_runs(widths) == [(24, 1), (64, 1), (152, 2)]


@pytest.mark.parametrize(
    "w, b, g, expected",
    [
        (100, 1.0, 24, (96, 24)),  # v=100 -> round(100/24)=4 -> 96
        (60, 1.0, 24, (48, 24)),  # 60/24 = 2.5 rounds half to even -> 2 -> 48
        (20, 1.0, 32, (20, 20)),  # g capped at the bottleneck width
        (256, 0.25, 64, (256, 64)),  # ResNet bottleneck: w_b = 64 = g
        (50, 4.0, 8, (50, 8)),  # RegNetZ: v=200, m=lcm(8,4)=8
        (52, 4.0, 24, (54, 24)),  # v=208, m=lcm(24,4)=24, round(8.67)=9 -> v=216 -> w=54
    ],
)
def test_block_compatibility_by_hand(w, b, g, expected):
    assert block_compatible(w, b, g) == expected


def test_block_compatibility_with_expansion_lcm():
    # w=52, b=4, g=6: v=208, g=6, m=lcm(6,4)=12, round(208/12)=round(17.33)=17 -> v=204 -> w=51
    assert block_compatible(52, 4.0, 6) == (51, 6)


def test_validity_rule_by_hand():
    # d=2, w0=8, wa=100, wm=1.5: s = [0, round(log(13.5)/log(1.5)) = 6]; only 2 distinct widths for 7 exponents
    assert not is_valid_regnet(2, 8, 100, 1.5)
    assert is_valid_regnet(16, 48, 27.89, 2.09)  # RegNetY-400MF


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(depth=16, w0=48, wa=27.89, wm=1.0, group_w=8), "wm"),
        (dict(depth=16, w0=50, wa=27.89, wm=2.09, group_w=8), "multiple of 8"),
        (dict(depth=16, w0=48, wa=-1, wm=2.09, group_w=8), "wa"),
        (dict(depth=0, w0=48, wa=27.89, wm=2.09, group_w=8), "depth"),
        (dict(depth=16, w0=48, wa=27.89, wm=2.09, group_w=0), "group width"),
    ],
)
def test_impossible_regnet_params_are_rejected(kwargs, fragment):
    with pytest.raises(FsrtError, match=fragment):
        RegNetParams(**kwargs)
