"""CLI: models, complexity, version, and one-line errors with exit code 2."""

import pytest

from conftest import assert_one_line_error, run_fsrt
from fsrt.zoo import zoo_records


def test_models_json_lists_the_whole_zoo():
    res = run_fsrt("models", "--json")
    assert res.code == 0, res.err
    rows = res.json()
    assert len(rows) == 45
    assert {r["name"] for r in rows} == set(zoo_records())
    by_name = {r["name"]: r for r in rows}
    assert by_name["RegNetY-400MF"]["flops"] == 401_849_056  # published reference integer (docs/architecture.md)
    assert by_name["ResNet-50"]["params"] == 25_557_032
    assert set(by_name["EfficientNet-B0"]) >= {"name", "family", "resolution", "flops", "params", "acts"}


def test_models_table_and_family_filter():
    res = run_fsrt("models", "--family", "effnet")
    assert res.code == 0
    assert "EfficientNet-B5" in res.out and "RegNetY" not in res.out


def test_complexity_json_breakdown():
    res = run_fsrt("complexity", "regnety-400mf", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert (doc["flops"], doc["params"], doc["acts"]) == (401_849_056, 4_344_144, 3_892_496)
    assert [p["name"] for p in doc["parts"]] == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
    assert sum(p["flops"] for p in doc["parts"]) == doc["flops"]


def test_complexity_at_other_resolution_and_from_spec_file(tmp_path):
    spec_file = tmp_path / "x.yaml"
    spec_file.write_text("family: regnetx\nresolution: 224\nstem: {type: simple, widths: [32], pool: none}\n"
                         "regnet: {depth: 13, w0: 24, wa: 36.44, wm: 2.49, group_w: 8}\n")
    res = run_fsrt("complexity", str(spec_file), "--json")
    assert res.json()["flops"] == 199_040_872  # RegNetX-200MF's reference integer
    small = run_fsrt("complexity", str(spec_file), "-r", "112", "--json").json()
    assert small["resolution"] == 112 and small["flops"] < 199_040_872 / 3
    table = run_fsrt("complexity", "ResNet-50")
    assert table.code == 0 and "4,089,185,256" in table.out


def test_version():
    res = run_fsrt("--version")
    assert res.code == 0 and "fsrt" in res.out
    doc = run_fsrt("version", "--json").json()
    assert doc["torch"] and "onnxruntime" in doc


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["complexity", "regnety-400"], ["unknown model", "RegNetY-400MF"]),
        (["complexity", "RegNetY-400MF", "--resolution", "-8"], ["resolution"]),
        (["complexity", "nope.yaml"], ["does not exist"]),
        (["modls"], ["models"]),
        (["complexity"], ["missing argument"]),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fragments):
    assert_one_line_error(run_fsrt(*args), *fragments)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("family: regnetx\nresolution: 224\nstem: {type: simple, widths: [32], pool: none}\n"
         "regnet: {depth: 13, w0: 24, wa: 36.44, wm: 1.0, group_w: 8}\n", "wm"),
        ("family: regnetx\nresolution: 224\nstem: {type: simple, widths: [32], pool: none}\n"
         "regnet: {depth: 13, w0: 20, wa: 36.44, wm: 2.49, group_w: 8}\n", "multiple of 8"),
        ("family: [regnetx\n", "not valid YAML"),
        ("family: regnetx\nresolution: 224\nstem: {type: simple, widths: [32], pool: none}\nstages: []\n",
         "at least one stage"),
    ],
)
def test_bad_spec_files_are_one_line_exit_2(tmp_path, content, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(content)
    assert_one_line_error(run_fsrt("complexity", str(p)), fragment)


def test_debug_shows_traceback():
    res = run_fsrt("--debug", "complexity", "regnety-400")
    assert res.code != 0 and "Traceback" in res.err
