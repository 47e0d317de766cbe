"""ModelSpec: validation, JSON/YAML round trips, regnet expansion, sources, sizes."""

import json

import pytest
import torch

from fsrt.errors import FsrtError
from fsrt.sizes import parse_bytes, parse_count
from fsrt.source import get_spec
from fsrt.spec import ModelSpec, StageSpec, StemSpec
from fsrt.zoo import canonical_name, zoo_names, zoo_spec


@pytest.mark.parametrize("name", zoo_names())
def test_json_and_yaml_round_trip(name):
    spec = zoo_spec(name)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert ModelSpec.from_yaml(spec.to_yaml()) == spec


def test_regnet_block_expands_like_the_zoo(tmp_path):
    p = tmp_path / "y400.yaml"
    p.write_text(
        "family: regnety\nresolution: 224\neval_resolution: 256\nname: RegNetY-400MF\n"
        "stem: {type: simple, widths: [32], pool: none}\n"
        "regnet: {depth: 16, w0: 48, wa: 27.89, wm: 2.09, group_w: 8, block: y, se_r: 0.25}\n"
    )
    assert get_spec(p) == zoo_spec("RegNetY-400MF")


def test_save_load_round_trip_both_formats(tmp_path):
    spec = zoo_spec("ResNet-RS-50")
    for suffix in (".json", ".yaml"):
        path = spec.save(tmp_path / f"spec{suffix}")
        assert get_spec(path) == spec
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.update(colour="red"), "unknown key"),
        (lambda d: d.pop("stages"), "missing required key 'stages'"),
        (lambda d: d["stages"][0].update(block="w"), "block 'w'"),
        (lambda d: d["stages"][0].update(group_w=7), "not a multiple of group width 7"),
        (lambda d: d["stages"][0].update(stride=3), "stride"),
        (lambda d: d["stages"][0].update(kernel=4), "odd"),
        (lambda d: d["stages"][0].update(depth=0), "depth"),
        (lambda d: d["stem"].update(pool="max"), "simple stem takes pool none"),
        (lambda d: d.update(resolution=-3), "resolution"),
        (lambda d: d.update(family="vit"), "family 'vit'"),
        (lambda d: d.update(stages="many"), "list"),
        (lambda d: d["stages"][1].update(se_r=0.0), "needs se_r > 0"),
    ],
)
def test_invalid_specs_raise_clear_errors(mutate, fragment):
    d = zoo_spec("RegNetY-400MF").to_dict()
    mutate(d)
    with pytest.raises(FsrtError, match=fragment):
        ModelSpec.from_dict(d)


def test_malformed_files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("family: [unclosed\n")
    with pytest.raises(FsrtError, match="not valid YAML"):
        get_spec(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"family\": ")
    with pytest.raises(FsrtError, match="not valid JSON"):
        get_spec(bad_json)
    with pytest.raises(FsrtError, match="does not exist"):
        get_spec(tmp_path / "missing.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(FsrtError, match="expected a mapping"):
        get_spec(scalar)


def test_checkpoint_source(tmp_path):
    spec = zoo_spec("RegNetX-200MF").replace(num_classes=10)
    good = tmp_path / "run.pt"
    torch.save({"spec": spec.to_dict(), "model": {}}, good)
    assert get_spec(good) == spec
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(FsrtError, match="corrupt or truncated"):
        get_spec(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(FsrtError, match="not an fsrt checkpoint"):
        get_spec(foreign)


@pytest.mark.parametrize("text", ["regnety-400mf", "RegNetY-400MF", "REGNETY_400MF", "regnety400mf"])
def test_names_are_case_and_separator_insensitive(text):
    assert canonical_name(text) == "RegNetY-400MF"


def test_unknown_name_suggests_close_matches():
    with pytest.raises(FsrtError, match="did you mean.*RegNetY-400MF"):
        canonical_name("regnety-400")
    assert canonical_name("resnext-50") == "ResNeXt-50-32x4d"
    assert canonical_name("efficientnet-b0") == "EfficientNet-B0"


def test_zoo_has_every_required_model():
    names = set(zoo_names())
    assert len(names) == 45
    sizes = ["200MF", "400MF", "600MF", "800MF", "1.6GF", "3.2GF", "4.0GF", "6.4GF", "8.0GF", "12GF", "16GF", "32GF"]
    required = {f"RegNet{f}-{s}" for f in "XY" for s in sizes}
    required |= {f"EfficientNet-B{i}" for i in range(6)} | {f"ResNet-{d}" for d in (50, 101, 152)}
    required |= {f"ResNeXt-{d}-32x4d" for d in (50, 101, 152)} | {"RegNetZ-500MF", "RegNetZ-4GF"}
    required |= {f"ResNet-RS-{d}" for d in (50, 101, 152, 200, 270, 350, 420)}
    assert required <= names


@pytest.mark.parametrize("text, value", [("400M", 4e8), ("4G", 4e9), ("4GF", 4e9), ("1.6e9", 1.6e9), ("250k", 2.5e5),
                                         (3, 3.0)])
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["", "abc", "4X", "-4G", "0"])
def test_parse_count_rejects(text):
    with pytest.raises(FsrtError):
        parse_count(text)


def test_stage_and_stem_direct_construction_validates():
    with pytest.raises(FsrtError, match="3 width"):
        StemSpec("deep", (32,), "max")
    with pytest.raises(FsrtError, match="y block"):
        StageSpec(1, 48, block="y")
    assert json.loads(zoo_spec("EfficientNet-B0").to_json())["stages"][0]["block"] == "mbconv"


@pytest.mark.parametrize("text, expected", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29),
                                            ("1024", 1024), (2048, 2048)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "4X"])
def test_parse_bytes_rejects(text):
    with pytest.raises(FsrtError):
        parse_bytes(text)


def test_the_two_size_units_say_which_they_are():
    assert parse_count("4G") == 4e9 and parse_bytes("4G") == 4 * 2**30
    with pytest.raises(FsrtError, match="decimal units"):
        parse_count("4X", "--target-flops")
    with pytest.raises(FsrtError, match=r"--workspace .*binary units"):
        parse_bytes("4X", "--workspace")
