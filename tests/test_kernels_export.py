"""fsrt.kernels: patch_model on real fsrt models, torch.export/compile tracing, the ONNX plugin node,
and the ahead-of-time (TensorRT plugin) compile of the kernels for sm_90 without a GPU.

Triton runs interpreted (TRITON_INTERPRET=1 via monkeypatch, per test) where kernels execute.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("triton")

from fsrt.kernels import GroupConv2d, KernelInputError, onnx_custom_translation_table, patch_model  # noqa: E402
from fsrt.models import build_model  # noqa: E402
from fsrt.zoo import zoo_spec  # noqa: E402


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _tiny(name: str):
    """A zoo architecture shrunk to two short stages (kernels are interpreted: keep it small)."""
    spec = zoo_spec(name)
    if spec.family.startswith("regnet"):
        stages = (dataclasses.replace(spec.stages[0], depth=1, width=24, group_w=8),
                  dataclasses.replace(spec.stages[1], depth=2, width=48, group_w=16))  # fmt: skip
        spec = spec.replace(stages=stages, num_classes=10)
    else:  # EfficientNet: depthwise 3x3 and 5x5 with expansion
        stages = tuple(dataclasses.replace(st, depth=1) for st in spec.stages[1:3])
        spec = spec.replace(stages=stages, num_classes=10, head=dataclasses.replace(spec.head, width=64))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def _grouped_convs(model) -> int:
    return sum(1 for m in model.modules() if type(m) is nn.Conv2d and m.groups > 1)


@pytest.mark.parametrize("name, fuse", [("RegNetY-200MF", False), ("RegNetY-200MF", True), ("EfficientNet-B0", True)])
def test_patched_model_matches_original(interpret, name, fuse):
    model = _tiny(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        ref64 = copy.deepcopy(model).double()(x.double())
    patched = copy.deepcopy(model)
    expected = _grouped_convs(model)
    assert expected > 0
    assert patch_model(patched, fuse_bn=fuse) == expected
    assert _grouped_convs(patched) == 0
    assert sum(isinstance(m, GroupConv2d) for m in patched.modules()) == expected
    with torch.no_grad():
        y = patched(x)
    scale = ref64.abs().max().item()
    assert (y.double() - ref64).abs().max().item() <= 1e-4 * scale
    assert (ref.double() - ref64).abs().max().item() <= 1e-4 * scale  # the fp32 original is as close


def test_patch_keeps_state_dict_keys_and_skips_ineligible():
    model = _tiny("RegNetY-200MF")
    odd = nn.Sequential(nn.Conv2d(8, 8, 3, groups=4, dilation=2), nn.Conv2d(8, 8, 3, groups=4, padding_mode="reflect"),
                        nn.Conv2d(8, 8, 1, groups=4), nn.Conv2d(8, 8, 3))  # fmt: skip
    keys = set(model.state_dict())
    assert patch_model(model) == _grouped_convs(_tiny("RegNetY-200MF"))
    assert set(model.state_dict()) == keys
    assert patch_model(odd) == 0  # dilation, padding mode, 1x1, dense: all stay nn.Conv2d
    assert patch_model(odd, include_dense=True) == 1


def test_bad_layers_and_modes_give_clear_errors():
    with pytest.raises(KernelInputError, match="dilation"):
        GroupConv2d(nn.Conv2d(8, 8, 3, groups=4, dilation=2))
    with pytest.raises(KernelInputError, match="padding_mode"):
        GroupConv2d(nn.Conv2d(8, 8, 3, groups=4, padding_mode="circular"))
    with pytest.raises(KernelInputError, match="eval"):
        patch_model(_tiny("RegNetY-200MF").train(), fuse_bn=True)


def test_bn_fold_against_hand_formula():
    """fuse_bn: scale = gamma / sqrt(var + eps), shift = beta - mean * scale (computed here in numpy)."""
    conv, bn = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    seq = nn.Sequential(conv, bn, nn.SiLU()).eval()
    patch_model(seq, fuse_bn=True)
    g, b, m, v = (t.detach().numpy().astype(np.float64) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
    scale = g / np.sqrt(v + bn.eps)
    np.testing.assert_allclose(seq[0].bn_scale.numpy(), scale, rtol=1e-6)
    np.testing.assert_allclose(seq[0].bn_shift.numpy(), b - m * scale, rtol=1e-6, atol=1e-7)
    assert isinstance(seq[1], nn.Identity) and isinstance(seq[2], nn.Identity) and seq[0].activation == "silu"


def test_export_and_compile_trace_the_custom_op(monkeypatch):
    """torch.export keeps fsrt.group_conv2d as one node (fake impl); torch.compile runs it."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # fallback path: fast, same contract
    model = _tiny("RegNetY-200MF")
    patch_model(model, fuse_bn=True)
    x = torch.randn(2, 3, 32, 32)
    ep = torch.export.export(model, (x,))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.fsrt.group_conv2d.default) == 3
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager)


def test_onnx_node_carries_tensorrt_plugin_attributes(tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    from fsrt.kernels.onnx_symbolic import reference_evaluator_ops

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=2, bias=False), nn.BatchNorm2d(16)
    with torch.no_grad():
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Conv2d(16, 8, 5, padding=2, groups=8)).eval()
    x = torch.randn(3, 16, 9, 9)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double()).numpy()
    assert patch_model(model, fuse_bn=True) == 2
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(2, 16, 9, 9),), str(path), dynamic_shapes=({0: torch.export.Dim("batch")},),
                      dynamo=True, custom_translation_table=onnx_custom_translation_table())  # fmt: skip
    proto = onnx.load(str(path))
    nodes = [n for n in proto.graph.node if n.op_type == "group_conv2d"]
    assert len(nodes) == 2
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("fsrt", 1)}
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")  # dynamic batch
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert all(n.domain == "fsrt" and len(n.input) == 4 and len(n.output) == 1 for n in nodes)
    assert attrs[0] == {"plugin_namespace": b"fsrt", "aot": 1, "stride": [2, 2], "padding": [1, 1], "groups": 2,
                        "activation": b"relu"}  # fmt: skip
    assert attrs[1] == {"plugin_namespace": b"fsrt", "aot": 1, "stride": [1, 1], "padding": [2, 2], "groups": 8,
                        "activation": b"none"}  # fmt: skip
    # The folded-BN scale reaching the plugin equals gamma / sqrt(var + eps).
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    g, v = bn.weight.detach().double().numpy(), bn.running_var.double().numpy()
    np.testing.assert_allclose(consts[nodes[0].input[3]], g / np.sqrt(v + bn.eps), rtol=1e-6)
    onnx.checker.check_model(proto)  # the custom schema is registered in-process
    # The graph computes what the unpatched model computes (node semantics, input order, attributes):
    # run it with onnx's reference evaluator plus the plugin node's numpy implementation.
    sess = ReferenceEvaluator(proto, new_ops=reference_evaluator_ops())
    y = sess.run(None, {sess.input_names[0]: x.numpy()})[0]
    assert y.shape == ref.shape and np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_aot_compile_for_sm90_without_gpu_and_tensorrt_calling_convention(tmp_path):
    """The kernels compile to PTX for Hopper, the GEMM uses tensor-core MMA, and the PTX trimmed to
    TensorRT's (inputs, scalars, output) parameter list still assembles with ptxas."""
    import subprocess

    from triton.backends.nvidia.compiler import get_ptxas

    from fsrt.kernels import group_conv as gc

    common = dict(STRIDE_H=1, STRIDE_W=1, PAD_H=1, PAD_W=1, KH=3, KW=3, HAS_BIAS=True, HAS_SCALE=True, ACT=2)
    gemm = dict(common, DOT_F32=False, PRECISION="tf32", BLOCK_M=64, BLOCK_N=32, BLOCK_K=32)
    direct = dict(common, BLOCK_P=64, BLOCK_C=16)
    for path, dtype, consts in (("gemm", torch.float16, gemm), ("direct", torch.bfloat16, direct)):
        compiled = gc.aot_compile(path, dtype, consts, arch=90)
        ptx = compiled.asm["ptx"]
        if path == "gemm":
            assert "mma" in ptx  # tensor cores (wgmma / mma.sync)
        keep = gc.kernel_param_count(path, consts)
        assert keep == 4 + 20 + 1
        trimmed = gc.strip_trailing_params(ptx, compiled.metadata.name, keep)
        entry = trimmed[trimmed.index(".entry") : trimmed.index(")", trimmed.index(".entry"))]
        assert entry.count(".param") == keep
        src = str(tmp_path / f"{path}.ptx")
        with open(src, "w") as fh:
            fh.write(trimmed)
        res = subprocess.run([get_ptxas(90).path, "-arch=sm_90a", src, "-o", src + ".cubin"], capture_output=True,
                             text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr


def test_bench_takes_published_layer_shapes_and_refuses_without_gpu(capsys):
    from conftest import load_dev_script

    kernel_speed = load_dev_script("kernel_speed")
    layer_shapes = kernel_speed.layer_shapes
    regnet = layer_shapes("RegNetY-8.0GF")  # published: group width 56, widths 168/448/896/2016
    assert {lay["c"] // lay["groups"] for lay in regnet} == {56}
    assert (448, 28, 1) in {(lay["c"], lay["h"], lay["stride"]) for lay in regnet}
    effnet = layer_shapes("EfficientNet-B0")  # depthwise 3x3 and 5x5
    assert {lay["groups"] == lay["c"] for lay in effnet} == {True} and {lay["k"] for lay in effnet} == {3, 5}
    if not torch.cuda.is_available():
        assert kernel_speed.main([]) == 2
        assert "error: no CUDA GPU" in capsys.readouterr().err


def test_trt_plugin_registration_with_a_stand_in_tensorrt(monkeypatch):
    """Without TensorRT: a clear error. With a minimal stand-in ``tensorrt.plugin`` (records the
    decorated functions): the shape function gives the conv output shape, and the AOT function
    compiles real PTX whose parameter list matches the int32 arguments it declares."""
    import sys
    import types

    from fsrt.kernels import group_conv as gc
    from fsrt.kernels import trt_plugin

    if not trt_plugin.tensorrt_available():
        with pytest.raises(RuntimeError, match="TensorRT"):
            trt_plugin.register_trt_plugin()

    class Dim(int):
        is_constant = True

        def constant_value(self):
            return int(self)

    class Desc:
        def __init__(self, shape, dtype="half"):
            self.shape_expr, self.shape, self.dtype = list(shape), list(shape), dtype

        def like(self):
            return Desc(self.shape_expr, self.dtype)

    class Params:
        pass

    reg = {}
    trtp = types.ModuleType("tensorrt.plugin")
    trtp.TensorDesc = Desc
    for kind in ("register", "autotune", "aot_impl"):
        setattr(trtp, kind, lambda plugin_id, kind=kind: (lambda fn: reg.setdefault(kind, fn)))
    trtp.AutoTuneCombination = lambda *a: types.SimpleNamespace(tactics=lambda t: reg.setdefault("tactics", t))
    trtp.cdiv = lambda a, b: -(-a // b)
    trtp.SymInt32 = lambda e: e
    trtp.SymIntExprs = types.SimpleNamespace(from_tuple=list)
    trtp.KernelLaunchParams = Params
    trt = types.ModuleType("tensorrt")
    trt.float32, trt.float16, trt.bfloat16, trt.plugin = "float", "half", "bf16", trtp
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(trt_plugin, "_REGISTERED", False)
    real_compile = gc.aot_compile
    monkeypatch.setattr(gc, "aot_compile", lambda *a, **k: real_compile(*a, **dict(k, arch=90)))  # no GPU here
    trt_plugin.register_trt_plugin()

    x, w = Desc([8, 64, 28, 28]), Desc([Dim(v) for v in (64, 16, 3, 3)])
    vec = Desc([64])
    stride, padding = np.array([2, 2], dtype=np.int32), np.array([1, 1], dtype=np.int32)
    out = reg["register"](x, w, vec, vec, stride, padding, 4, "relu")
    assert out.shape_expr == [8, 64, 14, 14]
    for tactic in (trt_plugin.TACTIC_DIRECT, trt_plugin.TACTIC_GEMM):
        name, ptx, launch, extra = reg["aot_impl"](x, w, vec, vec, stride, padding, 4, "relu", [out], tactic)
        ptx = ptx.decode()
        entry = ptx[ptx.index(".entry") : ptx.index(")", ptx.index(".entry"))]
        assert name.decode() in entry and entry.count(".param") == 4 + len(extra) + 1
        assert extra[:8] == [28, 28, 64, 14, 14, 8 * 14 * 14, 16, 16]  # H, W, C_out, OH, OW, P, cin_g, cout_g
        assert launch.block_x % 32 == 0 and launch.grid_x >= 1 and launch.grid_y >= 1


def test_fuse_act_after_bn_already_folded(interpret):
    """Exporter-style model (BN folded into the conv bias, Identity left in its place): the
    activation is fused into the kernel and the output is unchanged."""
    torch.manual_seed(2)
    seq = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=4, bias=True), nn.Identity(), nn.SiLU()).eval()
    x = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        ref = seq.double()(x.double())
        seq.float()
        assert patch_model(seq, fuse_act=True) == 1
        y = seq(x)
    assert seq[0].activation == "silu" and isinstance(seq[2], nn.Identity)
    assert (y.double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()
