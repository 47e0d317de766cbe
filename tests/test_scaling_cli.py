"""``fsrt scale``, ``fsrt scaling`` and ``fsrt sample`` end to end through the real entry point."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error, run_fsrt
from fsrt.spec import ModelSpec


def test_scale_json_reports_the_hand_computed_model(tmp_path):
    out = tmp_path / "scaled.yaml"
    res = run_fsrt("scale", "RegNetY-400MF", "--strategy", "dWr", "--s", "4", "-o", str(out), "--json")
    assert res.code == 0, res.err
    doc = res.json()
    # the hand computation of tests/test_scaling.py::test_regnety_400mf_pycls_fast_compound_by_hand
    assert [(st["d"], st["w"], st["g"]) for st in doc["stages"]] == [(1, 80, 16), (3, 192, 16), (7, 352, 16),
                                                                      (7, 768, 16)]
    assert doc["resolution"] == 240 and doc["s"] == 4
    assert doc["name"] == "RegNetY-400MF@dWr:s=4"
    assert doc["flops_multiplier"] == pytest.approx(doc["flops"] / doc["base_complexity"]["flops"])
    assert set(doc) >= {"flops", "params", "acts", "factors", "strategy"}
    spec = ModelSpec.load(out)
    assert spec.name == doc["name"] and [st.width for st in spec.stages] == [80, 192, 352, 768]


def test_scale_table_and_target_flops():
    res = run_fsrt("scale", "EfficientNet-B0", "--alpha", "0.8", "--target-flops", "1.6G")
    assert res.code == 0, res.err
    assert "reached" in res.out and "stem / head width" in res.out
    doc = run_fsrt("scale", "EfficientNet-B0", "--alpha", "0.8", "--target-flops", "1.6G", "--json").json()
    assert abs(doc["flops"] / 1.6e9 - 1) <= 0.01 and doc["reached"] is True
    assert doc["miss"] == pytest.approx(doc["flops"] / 1.6e9 - 1)


def test_scaling_json_and_table():
    res = run_fsrt("scaling", "RegNetY-400MF", "--alpha", "0.33,0.8,1", "--sweep", "s=1..32", "--json")
    assert res.code == 0, res.err
    doc = res.json()
    assert [f["strategy"] for f in doc["fits"]] == ["alpha=0.33", "alpha=0.8", "alpha=1"]
    assert [f["params_theory"] for f in doc["fits"]] == pytest.approx([0.665, 0.9, 1.0])
    assert [f["acts_theory"] for f in doc["fits"]] == pytest.approx([0.835, 0.6, 0.5])
    assert len(doc["rows"]) == 3 * 6
    table = run_fsrt("scaling", "EfficientNet-B0", "--strategy", "d,dWr,d1_w8_g8_r1", "--sweep", "s=1,3,9")
    assert table.code == 0, table.err
    assert "fitted exponents" in table.out and "d1_w8_g8_r1" in table.out


def test_sample_writes_jsonl_reproducibly(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        res = run_fsrt("sample", "--space", "regnet", "--flops", "360M-400M", "-n", "4", "--seed", "0", "-o", str(path))
        assert res.code == 0, res.err
    assert a.read_text() == b.read_text()
    lines = [json.loads(line) for line in a.read_text().splitlines()]
    assert len(lines) == 4
    for rec in lines:
        assert 360e6 <= rec["flops"] <= 400e6
        assert ModelSpec.from_dict(rec["spec"]).name == rec["name"]
    doc = run_fsrt("sample", "--space", "anynetx_e", "--flops", "360M-400M", "-n", "3", "--json").json()
    assert len(doc["samples"]) == 3 and doc["space"] == "anynetx_e"


@pytest.mark.parametrize("args,fragment", [
    (["scale", "RegNetY-400MF", "--alpha", "1.5", "--s", "4"], "alpha"),
    (["scale", "RegNetY-400MF", "--alpha", "-0.2", "--s", "4"], "alpha"),
    (["scale", "RegNetY-400MF", "--strategy", "dWr", "--s", "0"], "s must"),
    (["scale", "RegNetY-400MF", "--strategy", "dWr", "--s", "-2"], "s must"),
    (["scale", "RegNetY-400MF", "--strategy", "zzz", "--s", "2"], "unknown strategy"),
    (["scale", "RegNetY-400MF", "--strategy", "dWr"], "--s"),
    (["scale", "RegNetY-400MF", "--s", "2"], "--alpha"),
    (["scale", "RegNetY-400MF", "--alpha", "0.8", "--strategy", "dWr", "--s", "2"], "exactly one"),
    (["scale", "RegNetY-400MF", "--strategy", "dWr", "--target-flops", "lots"], "target-flops"),
    (["scale", "NoSuchNet", "--strategy", "dWr", "--s", "2"], "unknown model"),
    (["scaling", "RegNetY-400MF", "--alpha", "0.8", "--sweep", ""], "sweep"),
    (["scaling", "RegNetY-400MF", "--alpha", "0.8", "--sweep", "s=1..x"], "sweep"),
    (["scaling", "RegNetY-400MF", "--alpha", "0.8", "--sweep", "s=0,1"], "s must"),
    (["scaling", "RegNetY-400MF", "--alpha", "0.8", "--sweep", "alpha=1,2"], "sweep"),
    (["scaling", "RegNetY-400MF", "--alpha", "0.3,,1"], "empty"),
    (["scaling", "RegNetY-400MF", "--alpha", "2"], "alpha"),
    (["scaling", "RegNetY-400MF"], "--alpha"),
    (["sample", "--space", "regnet", "--flops", "1-2", "-n", "2", "--max-draws", "50"], "gave up after 50 draws"),
    (["sample", "--space", "regnet", "--flops", "400M", "-n", "2"], "band"),
    (["sample", "--space", "nope", "-n", "2"], "design space"),
])
def test_bad_input_is_one_line_exit_2(args, fragment, tmp_path):
    out = tmp_path / "never.yaml"
    res = run_fsrt(*args, "-o", str(out)) if args[0] in ("scale", "sample") else run_fsrt(*args)
    assert_one_line_error(res, fragment)
    assert not out.exists()
