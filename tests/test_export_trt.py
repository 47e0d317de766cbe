"""Everything around the TensorRT build, tested without TensorRT: batch profiles, sizes, cache
paths, settings from an ONNX file, precision handling, the sidecar, and the build flow with a
fake builder. Also checks that ``trt_build`` is the only module importing tensorrt."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from onnx import TensorProto, helper, save

from fsrt.errors import FsrtError
from fsrt.exporters import trt_config, trt_engine
from fsrt.exporters.trt_config import BuiltEngine

EXPORTERS = Path(trt_config.__file__).parent
REPO = EXPORTERS.parent


def tiny_onnx(path, elem=TensorProto.FLOAT, batch="batch", chw=(3, 16, 16)):
    """A one-node NCHW graph with the given input type and batch dimension."""
    shape = [batch, *chw]
    node = helper.make_node("Relu", ["input"], ["logits"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", elem, shape)],
                              [helper.make_tensor_value_info("logits", elem, shape)])
    save(helper.make_model(graph), str(path))
    return path


def test_only_trt_build_imports_tensorrt():
    importers = []
    for folder in ("exporters", "fsrt"):  # fsrt.bench has its own TensorRT runner
        for f in (REPO / folder).rglob("*.py"):
            tree = ast.parse(f.read_text())
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(n == "tensorrt" or n.startswith("tensorrt.") for n in names):
                    importers.append(f.relative_to(REPO).as_posix())
    assert sorted(set(importers)) == ["exporters/trt_build.py"]


@pytest.mark.parametrize("text, expected", [("1:8:32", (1, 8, 32)), ("2:2:2", (2, 2, 2)), (" 1:1:4", (1, 1, 4))])
def test_parse_dynamic_batch(text, expected):
    assert trt_config.parse_dynamic_batch(text) == expected


@pytest.mark.parametrize("text", ["1:8", "a:b:c", "0:1:2", "4:2:8", "1:1:1", "1:2:3:4"])
def test_parse_dynamic_batch_rejects(text):
    with pytest.raises(FsrtError):
        trt_config.parse_dynamic_batch(text)


def test_batch_spec_and_profile_shapes():
    static = trt_config.batch_spec(4)
    assert (static.min, static.opt, static.max, static.dynamic) == (4, 4, 4, False)
    assert static.example == 4 and static.parity_batches() == (4,)
    assert trt_config.profile_shapes((3, 224, 224), static) == {
        "min": (4, 3, 224, 224), "opt": (4, 3, 224, 224), "max": (4, 3, 224, 224)}
    dyn = trt_config.batch_spec(None, "1:8:32")
    assert trt_config.profile_shapes((3, 160, 160), dyn) == {
        "min": (1, 3, 160, 160), "opt": (8, 3, 160, 160), "max": (32, 3, 160, 160)}
    assert dyn.example == 2 and dyn.parity_batches() == (1, 3)
    assert trt_config.batch_spec(None, "4:8:16").parity_batches() == (4, 5)
    one = trt_config.batch_spec(None, (1, 1, 2))
    assert one.example == 2  # never 1 for a dynamic export
    assert one.parity_batches() == (1, 2)
    assert trt_config.batch_spec().opt == 1
    with pytest.raises(FsrtError, match="not both"):
        trt_config.batch_spec(2, "1:2:4")
    with pytest.raises(FsrtError):
        trt_config.batch_spec(0)


def test_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("FSRT_CACHE_DIR", str(tmp_path / "c"))
    p = trt_config.timing_cache_path(None, "NVIDIA H100 80GB HBM3", "10.9.0.34")
    assert p == tmp_path / "c" / "trt" / "timing-nvidia-h100-80gb-hbm3-trt10.9.0.34.cache"
    assert trt_config.timing_cache_path("mine.cache", "x", "y") == Path("mine.cache")
    monkeypatch.delenv("FSRT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    from fsrt.io import cache_dir

    assert cache_dir() == tmp_path / "xdg" / "fsrt"
    assert trt_config.default_engine_path("out/m.onnx") == Path("out/m.engine")
    assert trt_config.sidecar_path("out/m.engine") == Path("out/m.engine.json")


def test_network_flags_follow_trt_version():
    flags = {"STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS"}
    assert trt_config.network_flag_names("10.9.0", flags) == ["STRONGLY_TYPED"]
    assert trt_config.network_flag_names("11.4.1", flags) == []  # always strongly typed on 11
    assert trt_config.network_flag_names("10.0.1", {"EXPLICIT_BATCH"}) == []


def test_make_settings_reads_the_graph(tmp_path):
    path = tiny_onnx(tmp_path / "h.onnx", TensorProto.FLOAT16)
    s = trt_config.make_settings(path, batch=trt_config.batch_spec(None, "1:4:8"), precision="fp16",
                                 workspace="2G", timing_cache=None, opt_level=5)
    assert (s.input_name, s.chw, s.precision, s.workspace_bytes, s.opt_level) == ("input", (3, 16, 16), "fp16",
                                                                                   2 * 2**30, 5)
    assert s.engine_path == tmp_path / "h.engine"
    assert s.shapes["max"] == (8, 3, 16, 16)


def test_make_settings_precision_comes_from_the_graph(tmp_path):
    path = tiny_onnx(tmp_path / "f.onnx", TensorProto.FLOAT)
    with pytest.raises(FsrtError, match="fp32 graph but a fp16 engine.*--precision fp16"):
        trt_config.make_settings(path, batch=trt_config.batch_spec(), precision="fp16")
    static = tiny_onnx(tmp_path / "s.onnx", TensorProto.FLOAT, batch=2)
    with pytest.raises(FsrtError, match="static batch 2"):
        trt_config.make_settings(static, batch=trt_config.batch_spec(None, "1:2:4"), precision="fp32")
    with pytest.raises(FsrtError, match="optimization level"):
        trt_config.make_settings(static, batch=trt_config.batch_spec(2), precision="fp32", opt_level=9)


def test_build_and_save_with_fake_builder(tmp_path, monkeypatch):
    monkeypatch.setenv("FSRT_CACHE_DIR", str(tmp_path / "cache"))
    path = tiny_onnx(tmp_path / "m.onnx", TensorProto.BFLOAT16)
    settings = trt_config.make_settings(path, batch=trt_config.batch_spec(None, "1:2:4"), precision="bf16")
    seen = []

    def fake_build(s, cache_in):
        seen.append(cache_in)
        return BuiltEngine(b"ENGINE" + bytes(10), (cache_in or b"") + b"+entry", "10.9.0", 1.25)

    first = trt_engine.build_and_save(settings, build=fake_build, gpu="Fake GPU", trt_version="10.9.0")
    assert (tmp_path / "m.engine").read_bytes() == b"ENGINE" + bytes(10)
    info = json.loads((tmp_path / "m.engine.json").read_text())
    assert info["input"]["shapes"] == {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}
    assert info["precision"] == "bf16" and info["tensorrt_version"] == "10.9.0" and info["gpu"] == "Fake GPU"
    assert info["build_seconds"] == 1.25 and info["engine_bytes"] == 16 and info["workspace_bytes"] == 4 * 2**30
    assert first.timing_cache == tmp_path / "cache" / "trt" / "timing-fake-gpu-trt10.9.0.cache"
    assert first.timing_cache.read_bytes() == b"+entry"
    # An existing engine needs force; with force the saved timing cache is loaded and grows.
    with pytest.raises(FsrtError, match="exists; pass --force"):
        trt_engine.build_and_save(settings, build=fake_build, gpu="Fake GPU", trt_version="10.9.0")
    trt_engine.build_and_save(settings, build=fake_build, gpu="Fake GPU", trt_version="10.9.0", force=True)
    assert seen == [None, b"+entry"]
    assert first.timing_cache.read_bytes() == b"+entry+entry"


def test_build_and_save_without_tensorrt_says_how_to_install(tmp_path, monkeypatch):
    path = tiny_onnx(tmp_path / "m.onnx")
    settings = trt_config.make_settings(path, batch=trt_config.batch_spec(None, "1:2:4"), precision="fp32")
    monkeypatch.setattr(trt_config.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FsrtError, match="TensorRT is not installed; install it with: pip install"):
        trt_engine.build_and_save(settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_custom_domains_need_a_known_plugin(tmp_path):
    shape = ["batch", 3, 8, 8]
    node = helper.make_node("group_conv2d", ["input"], ["logits"], domain="foo")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("foo", 1)])
    save(model, str(tmp_path / "c.onnx"))
    settings = trt_config.make_settings(tmp_path / "c.onnx", batch=trt_config.batch_spec(None, "1:2:4"),
                                        precision="fp32")
    assert settings.plugin_domains == ("foo",)
    with pytest.raises(FsrtError, match="custom domain 'foo'"):
        trt_engine.register_plugins(settings.plugin_domains)


def test_plugin_graphs_are_detected_for_tensorrt_registration(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    custom = helper.make_model(helper.make_graph(
        [helper.make_node("group_conv2d", ["x"], ["y"], domain="fsrt", plugin_namespace="fsrt")], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("fsrt", 1)])
    onnx.save(plain, tmp_path / "plain.onnx")
    onnx.save(custom, tmp_path / "custom.onnx")
    domains = {name: trt_config.make_settings(tmp_path / f"{name}.onnx", batch=trt_config.batch_spec(),
                                              precision="fp32").plugin_domains for name in ("plain", "custom")}
    assert domains == {"plain": (), "custom": ("fsrt",)}
