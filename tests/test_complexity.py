"""Analytic complexity against published numbers and against an independent hook counter."""

import json
import random

import pytest

from conftest import SHARED_ZOO
from fsrt.complexity import complexity, complexity_breakdown, layer_count, measure_complexity
from fsrt.models import build_model
from fsrt.spec import HeadSpec, ModelSpec, StageSpec, StemSpec
from fsrt.zoo import zoo_names, zoo_records, zoo_spec

# Reference integers (flops, params, acts at 224 px; docs/architecture.md, "Complexity conventions").
REFERENCE = {
    "RegNetX-200MF": (199_040_872, 2_684_792, 2_164_056),
    "RegNetX-400MF": (397_678_568, 5_157_512, 3_143_272),
    "RegNetY-400MF": (401_849_056, 4_344_144, 3_892_496),
    "RegNetY-4.0GF": (3_973_301_344, 20_646_656, 12_287_200),
    "EfficientNet-B0": (385_825_092, 5_288_548, 6_748_036),
    "ResNet-50": (4_089_185_256, 25_557_032, 11_315_688),
}

# pycls MODEL_ZOO.md (latest revision): flops (B), params (M), acts (M), printed to one decimal.
PYCLS_TABLE = {
    "RegNetX-200MF": (0.2, 2.7, 2.2), "RegNetX-400MF": (0.4, 5.2, 3.1), "RegNetX-600MF": (0.6, 6.2, 4.0),
    "RegNetX-800MF": (0.8, 7.3, 5.1), "RegNetX-1.6GF": (1.6, 9.2, 7.9), "RegNetX-3.2GF": (3.2, 15.3, 11.4),
    "RegNetX-4.0GF": (4.0, 22.1, 12.2), "RegNetX-6.4GF": (6.5, 26.2, 16.4), "RegNetX-8.0GF": (8.0, 39.6, 14.1),
    "RegNetX-12GF": (12.1, 46.1, 21.4), "RegNetX-16GF": (15.9, 54.3, 25.5), "RegNetX-32GF": (31.7, 107.8, 36.3),
    "RegNetY-200MF": (0.2, 3.2, 2.2), "RegNetY-400MF": (0.4, 4.3, 3.9), "RegNetY-600MF": (0.6, 6.1, 4.3),
    "RegNetY-800MF": (0.8, 6.3, 5.2), "RegNetY-1.6GF": (1.6, 11.2, 8.0), "RegNetY-3.2GF": (3.2, 19.4, 11.3),
    "RegNetY-4.0GF": (4.0, 20.6, 12.3), "RegNetY-6.4GF": (6.4, 30.6, 16.4), "RegNetY-8.0GF": (8.0, 39.2, 18.0),
    "RegNetY-12GF": (12.1, 51.8, 21.4), "RegNetY-16GF": (15.9, 83.6, 23.0), "RegNetY-32GF": (32.3, 145.0, 30.3),
    "ResNet-50": (4.1, 25.6, 11.3), "ResNet-101": (7.8, 44.5, 16.4), "ResNet-152": (11.5, 60.2, 22.8),
    "ResNeXt-50-32x4d": (4.2, 25.0, 14.6), "ResNeXt-101-32x4d": (8.0, 44.2, 21.4),
    "ResNeXt-152-32x4d": (11.7, 60.0, 29.9),
    "EfficientNet-B0": (0.4, 5.3, 6.7), "EfficientNet-B1": (0.7, 7.8, 10.9), "EfficientNet-B2": (1.0, 9.1, 13.8),
    "EfficientNet-B3": (1.8, 12.2, 23.8), "EfficientNet-B4": (4.4, 19.3, 49.5), "EfficientNet-B5": (10.3, 30.4, 98.9),
}

# ResNet-RS paper (params in millions, published to one decimal).
RESNET_RS_PARAMS = {50: 35.7, 101: 63.6, 152: 86.8, 200: 93.2, 270: 130.1, 350: 164.3, 420: 191.9}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_design_reference_integers(name):
    c = complexity(zoo_spec(name))
    assert (c.flops, c.params, c.acts) == REFERENCE[name]


def test_every_reference_integer_in_the_zoo_file():
    checked = 0
    for name, rec in zoo_records().items():
        ref = rec.get("reference")
        if ref:
            c = complexity(zoo_spec(name), ref["at"])
            assert c.to_dict() == {k: ref[k] for k in ("flops", "params", "acts")}, name
            checked += 1
    assert checked >= 8


def test_packaged_zoo_matches_the_shared_reference_file():
    if not SHARED_ZOO.exists():
        pytest.skip("the shared reference zoo.json is not beside this checkout")
    assert json.loads(SHARED_ZOO.read_text()) == zoo_records()


@pytest.mark.parametrize("name", sorted(PYCLS_TABLE))
def test_published_pycls_rows_at_printed_precision(name):
    c = complexity(zoo_spec(name))
    flops_b, params_m, acts_m = PYCLS_TABLE[name]
    assert (round(c.flops / 1e9, 1), round(c.params / 1e6, 1), round(c.acts / 1e6, 1)) == (flops_b, params_m, acts_m)


def test_regnetz_500mf_published_row():
    pub = zoo_records()["RegNetZ-500MF"]["published"]
    c = complexity(zoo_spec("RegNetZ-500MF"))
    assert round(c.flops / 1e9, 1) == pub["flops_b"]
    assert round(c.params / 1e6, 1) == pub["params_m"]
    assert round(c.acts / 1e6, 1) == pub["acts_m"]


def test_regnetz_4gf_matches_acts_and_is_near_published_flops_params():
    # The public RegNetZ-4GF config reproduces the paper's activations (24.3M) exactly but lands at
    # 4.07 GF / 28.9M params against the printed 4.0 / 28.1: a 3% gap we document rather than tune away.
    pub = zoo_records()["RegNetZ-4GF"]["published"]
    c = complexity(zoo_spec("RegNetZ-4GF"))
    assert round(c.acts / 1e6, 1) == pub["acts_m"]
    assert abs(c.flops / 1e9 / pub["flops_b"] - 1) < 0.03
    assert abs(c.params / 1e6 / pub["params_m"] - 1) < 0.035


@pytest.mark.parametrize("depth", sorted(RESNET_RS_PARAMS))
def test_resnet_rs_params_near_paper(depth):
    # SE on the block output with 0.25 * width, deep stem, strided-conv stem pool: the paper's
    # parameter counts are matched within 0.25% (exactly at one decimal for 50/101/200/420).
    params_m = complexity(zoo_spec(f"ResNet-RS-{depth}")).params / 1e6
    assert abs(params_m / RESNET_RS_PARAMS[depth] - 1) < 0.0025


def test_breakdown_parts_sum_to_total_and_track_shapes():
    bd = complexity_breakdown(zoo_spec("RegNetY-400MF"), 224)
    assert [p.name for p in bd.parts] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert [p.shape for p in bd.parts[1:5]] == [(48, 56, 56), (104, 28, 28), (208, 14, 14), (440, 7, 7)]
    assert sum(p.cx.flops for p in bd.parts) == bd.total.flops == REFERENCE["RegNetY-400MF"][0]


def test_flops_scale_with_resolution_squared_for_even_sizes():
    # Only the FC head is resolution-independent; the rest scales exactly with the pixel count when every
    # downsampling divides evenly (224 and 448 are both multiples of 32).
    spec = zoo_spec("RegNetX-400MF")
    head = complexity_breakdown(spec, 224).parts[-1].cx.flops
    assert complexity(spec, 448).flops - head == 4 * (complexity(spec, 224).flops - head)


@pytest.mark.parametrize("name", zoo_names())
def test_analytic_equals_hook_counter_on_zoo(name):
    spec = zoo_spec(name)
    model = build_model(spec, device="meta")
    assert measure_complexity(model, spec.resolution) == complexity(spec)


def _built_layers(model) -> int:
    from torch import nn

    return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())


@pytest.mark.parametrize("name", zoo_names())
def test_layer_count_equals_the_built_modules_conv_and_linear_layers(name):
    spec = zoo_spec(name)
    assert layer_count(spec) == _built_layers(build_model(spec, device="meta"))


def test_layer_count_by_hand_and_per_part():
    # RegNetX-200MF: stem conv; stages of X blocks (3 convs each) with a projection shortcut in each first
    # block (all four change width and stride); no head conv; one FC.
    spec = zoo_spec("RegNetX-200MF")
    blocks = sum(st.depth for st in spec.stages)
    assert layer_count(spec) == 1 + 3 * blocks + len(spec.stages) + 1
    bd = complexity_breakdown(spec)
    assert [p.layers for p in bd.parts] == [1, *(3 * st.depth + 1 for st in spec.stages), 1]
    assert layer_count(spec.replace(resolution=64)) == layer_count(spec)  # resolution does not add layers


def random_spec(rng: random.Random) -> ModelSpec:
    """A random valid spec mixing every block, stem and shortcut type."""
    stem_type = rng.choice(["simple", "res", "deep"])
    stem = StemSpec(stem_type, (rng.choice([8, 16]),) if stem_type != "deep" else (8, 8, 16),
                    {"simple": "none", "res": "max", "deep": rng.choice(["max", "conv"])}[stem_type])
    stages = []
    for _ in range(rng.randint(1, 4)):
        block = rng.choice(["x", "y", "z", "mbconv", "rs"])
        act = rng.choice(["relu", "silu"])
        depth, stride, kernel = rng.randint(1, 3), rng.choice([1, 2]), rng.choice([3, 5])
        if block == "mbconv":
            stages.append(StageSpec(depth, 8 * rng.randint(1, 6), stride, "mbconv", kernel=kernel,
                                    exp_r=rng.choice([1.0, 4.0, 6.0]), se_r=rng.choice([0.0, 0.25]), activation=act))
            continue
        g = rng.choice([1, 2, 4, 8])
        b = rng.choice([0.25, 0.5, 1.0, 4.0] if block != "z" else [2.0, 4.0])
        w = 8 * rng.randint(1, 8)
        while round(w * b) % g:
            w += 8
        se_r = 0.0 if block == "x" else 0.25
        stages.append(StageSpec(depth, w, stride, block, bot_mul=b, group_w=g, kernel=kernel, se_r=se_r,
                                activation=act, shortcut=rng.choice(["conv", "avgpool"])))
    head = HeadSpec(rng.choice([0, 32]))
    return ModelSpec("anynet", rng.choice([33, 48, 57, 64]), stem, stages, head, num_classes=rng.choice([10, 17]))


@pytest.mark.parametrize("seed", range(40))
def test_analytic_equals_hook_counter_on_random_specs(seed):
    spec = random_spec(random.Random(seed))
    for res in (spec.resolution, spec.resolution + 7):
        model = build_model(spec, device="meta")
        assert measure_complexity(model, res) == complexity(spec, res), (spec, res)
    assert layer_count(spec) == _built_layers(build_model(spec, device="meta")), spec
