"""ONNX export: every family exports and matches PyTorch (float64) in ONNX Runtime, static and
dynamic batch; half-precision graphs; metadata round trip; BN folding; failure paths."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
from export_helpers import ort_vs_float64, randomized_model, shallow

from fsrt.complexity import complexity
from fsrt.errors import CheckFailed, FsrtError
from fsrt.exporters.onnx_export import export_onnx, read_metadata
from fsrt.exporters.parity import widen_bf16
from fsrt.kernels.bn_fold import count_batchnorm, fold_batchnorm
from fsrt.models import build_model

FAMILIES = ["RegNetX-200MF", "RegNetY-200MF", "RegNetZ-500MF", "EfficientNet-B0", "ResNeXt-50-32x4d",
            "ResNet-RS-50"]
RES = 32


def op_types(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("name", FAMILIES)
def test_family_exports_and_matches_pytorch(tmp_path, name, dynamic):
    spec = shallow(name, RES)
    model = randomized_model(spec)
    path = tmp_path / "m.onnx"
    if dynamic:
        result = export_onnx(model, path, dynamic_batch="1:4:8")
    else:
        result = export_onnx(model, path, batch=2)
    assert result.parity.passed and result.parity.max_rel < 1e-4

    graph = onnx.load(str(path))
    dim0 = graph.graph.input[0].type.tensor_type.shape.dim[0]
    if dynamic:
        assert dim0.dim_param and not dim0.dim_value
        batches = (1, 5)  # neither is the export example batch (2)
    else:
        assert dim0.dim_value == 2
        batches = (2,)
    assert "BatchNormalization" not in op_types(path)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert result.bn_folded == n_bn > 0  # every BN was folded into its conv
    assert op_types(path)["Conv"] == n_conv  # ... and no conv was lost or added
    for b in batches:
        _, rel, y = ort_vs_float64(path, model, b, RES)
        assert y.shape == (b, spec.num_classes)
        assert rel < 1e-4, (name, b, rel)
    meta = read_metadata(path)
    assert meta["spec"] == spec
    assert meta["complexity"] == {**complexity(spec, RES).to_dict(), "resolution": RES}


def test_fp16_graph_is_half_and_runs_in_onnxruntime(tmp_path):
    spec = shallow("RegNetY-200MF", RES)
    model = randomized_model(spec, seed=1)
    path = tmp_path / "h.onnx"
    result = export_onnx(model, path, precision="fp16")
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    float_inits = {t.data_type for t in graph.initializer if t.data_type in (1, 10, 11, 16)}
    assert float_inits == {onnx.TensorProto.FLOAT16}  # a real half graph, not fp32 with casts
    _, rel, _ = ort_vs_float64(path, model, 1, RES, feed_dtype=np.float16)
    assert rel < 1e-2
    assert rel > 1e-6  # really computed in half precision (fp32 would be ~1e-7)
    assert result.parity.passed and result.parity.expected is not None  # judged against fp16's own rounding
    assert result.parity.lower <= result.parity.rel_l2 <= result.parity.upper
    # The CLI's rich summary shows the numbers.
    from rich.console import Console

    from fsrt.commands.export import summary_table

    con = Console(record=True, width=200)
    con.print(summary_table(result))
    text = con.export_text()
    assert "20 / fp16" in text and "passed" in text and f"{result.parity.max_rel:.3g}" in text


def test_bf16_graph_and_its_honest_parity(tmp_path):
    spec = shallow("EfficientNet-B0", RES)
    model = randomized_model(spec, seed=2)
    path = tmp_path / "b.onnx"
    result = export_onnx(model, path, precision="bf16")
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.BFLOAT16
    assert result.opset >= 22  # Conv allows bfloat16 from opset 22
    onnx.checker.check_model(proto, full_check=True)
    assert result.parity.passed and "widened" in result.parity.runtime and result.parity.note
    with pytest.raises(FsrtError, match="opset 20 cannot hold a bf16 graph"):
        export_onnx(model, tmp_path / "b20.onnx", precision="bf16", opset=20)


def test_a_never_trained_network_is_calibrated_before_export_and_checked_at_half_precision(tmp_path):
    """A fresh EfficientNet outputs ~1e-14 (below fp16's normal range, 2**-14 = 6.1e-5, IEEE 754
    binary16); export gives it BatchNorm statistics first, so its fp16 graph is checked for real."""
    spec = shallow("EfficientNet-B0", RES)
    torch.manual_seed(0)
    fresh = build_model(spec).eval()
    with torch.no_grad():
        tiny = fresh(torch.randn(2, 3, RES, RES)).abs().max().item()
    assert tiny < 2**-14  # the problem: nothing to compare at fp16
    result = export_onnx(fresh, tmp_path / "e.onnx", precision="fp16")
    assert result.bn_calibrated and result.parity.passed and result.parity.expected > 0
    trained_like = randomized_model(spec, seed=3)  # statistics already set: left alone
    assert not export_onnx(trained_like, tmp_path / "r.onnx").bn_calibrated


def test_widen_bf16_keeps_values_exactly():
    from onnx import TensorProto, helper, numpy_helper

    w = torch.tensor([1.0 / 3.0, -2.7, 1e-3]).to(torch.bfloat16)
    init = numpy_helper.from_array(w.view(torch.int16).numpy().view(np.uint16), "w")
    init.data_type = TensorProto.BFLOAT16
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3])], [init])
    wide = widen_bf16(helper.make_model(graph))
    assert wide.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    values = numpy_helper.to_array(wide.graph.initializer[0])
    assert values.dtype == np.float32 and np.array_equal(values, w.float().numpy())


def test_bn_fold_matches_unfolded_model_in_float64():
    spec = shallow("ResNet-RS-50", RES)
    model = randomized_model(spec, seed=3).double()
    folded, n = fold_batchnorm(model)
    assert n == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    assert count_batchnorm(folded) == 0 and count_batchnorm(model) == n  # the original is untouched
    x = torch.randn(2, 3, RES, RES, dtype=torch.float64)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert torch.allclose(a, b, rtol=0, atol=1e-12 * float(a.abs().max()))


def test_existing_output_needs_force(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(FsrtError, match="exists; pass --force"):
        export_onnx(shallow("RegNetX-200MF"), path)
    assert path.read_bytes() == b"keep me"


def test_unwritable_output_fails_before_export(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FsrtError, match="is a file, not a folder"):
        export_onnx(shallow("RegNetX-200MF"), tmp_path / "afile" / "sub" / "m.onnx")
    assert files_in(tmp_path) == ["afile"]


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("opset", [7, 17, 99])
def test_unsupported_opset_is_rejected(tmp_path, opset):
    with pytest.raises(FsrtError, match=f"opset {opset} is not supported"):
        export_onnx(shallow("RegNetX-200MF"), tmp_path / "x.onnx", opset=opset)
    assert not list(tmp_path.iterdir())


def test_int8_is_rejected_with_reason(tmp_path):
    with pytest.raises(FsrtError, match="int8.*not supported.*fp32, fp16, bf16"):
        export_onnx(shallow("RegNetX-200MF"), tmp_path / "x.onnx", precision="int8")


def test_parity_failure_raises_with_numbers_and_writes_nothing(tmp_path, monkeypatch):
    import fsrt.accuracy

    monkeypatch.setattr(fsrt.accuracy, "FP32_BOUND", 1e-15)
    with pytest.raises(CheckFailed, match=r"parity FAILED: relative error [0-9.e+-]+ > 1e-15 \(fp32 bound\) "
                                          r"\(relative L2 error [0-9.e+-]+, accepted <= 1e-15; max abs"):
        export_onnx(randomized_model(shallow("RegNetX-200MF")), tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())  # no output, no temp file left behind


def test_triton_group_conv_exports_custom_nodes(tmp_path):
    spec = shallow("RegNetX-200MF", RES)
    path = tmp_path / "k.onnx"
    result = export_onnx(spec, path, triton_group_conv=True)
    grouped = sum(1 for s in spec.stages)  # one grouped 3x3 per block, one block per stage
    assert result.nodes_by_type.get("fsrt::group_conv2d") == grouped
    assert result.parity.passed is None and "custom-domain" in result.parity.skipped
    assert path.exists()


def test_triton_group_conv_without_kernels_is_a_clear_error(tmp_path, monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "fsrt.kernels", types.ModuleType("fsrt.kernels"))
    with pytest.raises(FsrtError, match="--triton-group-conv needs fsrt.kernels.patch_model"):
        export_onnx(shallow("RegNetX-200MF", RES), tmp_path / "k.onnx", triton_group_conv=True)
    assert not list(tmp_path.iterdir())
