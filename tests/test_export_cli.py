"""``fsrt export`` end to end: a trainer-contract checkpoint exports, JSON output, bad input
gives one-line errors with exit 2 and no files, --trt without TensorRT keeps the ONNX."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from export_helpers import ort_vs_float64, randomized_model, shallow

from conftest import assert_one_line_error, run_fsrt
from fsrt.complexity import complexity


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint written per the trainer contract, with non-default weights and BN stats."""
    folder = tmp_path_factory.mktemp("ckpt")
    spec = shallow("RegNetY-200MF", 32)
    model = randomized_model(spec, seed=7)
    ema = randomized_model(spec, seed=8)
    path = folder / "last.pt"
    torch.save({"spec": spec.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(), "epoch": 1}, path)
    return path, spec, model, ema


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_checkpoint_exports_with_its_weights(tmp_path, checkpoint):
    ckpt, spec, model, ema = checkpoint
    out = tmp_path / "y.onnx"
    res = run_fsrt("export", str(ckpt), "-o", str(out), "--dynamic-batch", "1:2:4", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)  # stdout is exactly one JSON document
    assert doc["parity"]["passed"] is True and doc["parity"]["max_rel"] < 1e-4
    assert doc["input_shape"] == ["batch", 3, 32, 32] and doc["dynamic_batch"] == [1, 2, 4]
    assert {k: doc["complexity"][k] for k in ("flops", "params", "acts")} == complexity(spec, 32).to_dict()
    assert "BatchNormalization" not in doc["nodes_by_type"]
    assert files(tmp_path) == ["y.onnx"]
    # The graph carries the checkpoint's weights, not a fresh init: compare with the model itself.
    _, rel, y = ort_vs_float64(out, model, 3, 32)
    assert rel < 1e-4
    _, rel_ema, _ = ort_vs_float64(out, ema, 3, 32)
    assert rel_ema > 1e-2  # clearly different weights


def test_truncated_checkpoint(tmp_path, checkpoint):
    data = checkpoint[0].read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    res = run_fsrt("export", str(bad), "-o", str(tmp_path / "x.onnx"))
    assert_one_line_error(res, "cannot read checkpoint")
    assert files(tmp_path) == ["cut.pt"]


def test_checkpoint_without_ema(tmp_path):
    spec = shallow("RegNetX-200MF", 32)
    path = tmp_path / "noema.pt"
    torch.save({"spec": spec.to_dict(), "model": randomized_model(spec).state_dict(), "ema": None, "epoch": 1}, path)
    res = run_fsrt("export", str(path), "--ema", "-o", str(tmp_path / "x.onnx"))
    assert_one_line_error(res, "no 'ema' weights")  # the EMA loading itself: test_export_source.py
    assert files(tmp_path) == ["noema.pt"]


def test_checkpoint_with_wrong_weights(tmp_path):
    spec = shallow("RegNetX-200MF", 32)
    other = shallow("RegNetY-200MF", 32)
    path = tmp_path / "mixed.pt"
    torch.save({"spec": spec.to_dict(), "model": randomized_model(other).state_dict(), "ema": None}, path)
    res = run_fsrt("export", str(path), "-o", str(tmp_path / "x.onnx"))
    assert_one_line_error(res, "do not match")


@pytest.mark.parametrize("args, fragment", [
    (["missing.pt"], "does not exist"),
    (["missing.yaml"], "does not exist"),
    (["NoSuchNet-1GF"], "nosuchnet"),
    (["RegNetX-200MF", "--opset", "7"], "opset 7 is not supported"),
    (["RegNetX-200MF", "--precision", "int8"], "int8"),
    (["RegNetX-200MF", "--dynamic-batch", "8:4:2"], "MIN <= OPT <= MAX"),
    (["RegNetX-200MF", "--batch", "2", "--dynamic-batch", "1:2:4"], "not both"),
    (["RegNetX-200MF", "--trt", "--workspace", "lots"], "memory size"),
])
def test_bad_input_one_line_exit_2_no_files(tmp_path, args, fragment):
    res = run_fsrt("export", *args, cwd=tmp_path)
    assert_one_line_error(res, fragment)
    assert files(tmp_path) == []


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    res = run_fsrt("export", "RegNetX-200MF", "-r", "32", "-o", str(out))
    assert_one_line_error(res, "exists; pass --force")
    assert out.read_bytes() == b"old"


def test_trt_without_tensorrt_keeps_onnx_and_exits_2(tmp_path):
    spec = shallow("RegNetX-200MF", 32)
    spec_file = tmp_path / "small.json"
    spec_file.write_text(spec.to_json())
    out = tmp_path / "small.onnx"
    res = run_fsrt("export", str(spec_file), "-o", str(out), "--precision", "fp16", "--trt", cwd=tmp_path)
    assert_one_line_error(res, "no TensorRT engine", "pip install")
    assert files(tmp_path) == ["small.json", "small.onnx"]  # the ONNX is complete, no engine or sidecar
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    onnx.checker.check_model(proto, full_check=True)
    x = np.zeros((1, 3, 32, 32), np.float16)
    import onnxruntime as ort

    assert ort.InferenceSession(str(out)).run(None, {"input": x})[0].shape == (1, spec.num_classes)


def test_help_teaches():
    res = run_fsrt("export", "--help")
    assert res.code == 0
    for word in ("--dynamic-batch", "--precision", "--trt", "--timing-cache", "--triton-group-conv", "Examples"):
        assert word in res.out
